"""Experiment configs: parse a TOML file, validate every key and value before anything runs, and
expand the grid (the product of the sweep axes, plus explicit extra cases) into resolved runs.

    name = "mlp_depth"                      # optional; default: the file's stem
    description = "..."
    [model]  kind = "mlp" ...               # the base: any field of gradlab.schema.FIELDS
    [task]   name = "teacher_student" ...
    [train]  steps = 200 ...
    [sweep]  depth = [2, 4, 8]              # axes: short ("depth") or dotted ("model.depth") names
             "model.activation" = ["tanh", "relu"]
    [[case]] depth = 32                     # extra runs: the base with these fields changed

An experiment may instead be made of parts, each a grid of its own on the common base (the tour is):

    [[part]]
    name = "depth"                          # becomes the runs' `part` column
    [part.model] kind = "mlp"               # this part's changes to the base
    [part.sweep] depth = [2, 4, 8]
    [[part.case]] ...

A field written "none" (or omitted) is None where the schema allows it. A [reproduce] table holds the
parameters of a reproduction's check (gradlab.reproduce); the grid ignores it.

Every problem is one ConfigError line, raised by load() / from_dict() before anything runs, and
without expanding the grid: values are checked one by one, and the combinations (model.kind vs
task.name, each task's minimum T) over the product of only the axes those checks read (CHECKED).
Experiment.count() sizes a grid without expanding it; iter_grid() and preview() expand it lazily.

From the command line (load's overrides), `--set key=value` replaces a field everywhere (base, parts,
axes, cases) and `--set key=a,b,c` runs the experiment once per value: the key becomes an axis of every
part (in the place of the file's axis of that key, else last) and every case runs once per value; its
values are checked like a [sweep] axis's (no empty item, none repeated). A string holding a comma is
quoted: --set 'name="a,b"'.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import itertools
import json
import math
import re
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradlab import tasks
from gradlab.schema import FIELDS, IRRELEVANT, NUM, SECTIONS, SEQUENCE_TASKS, SHORT, bounds, defaults, hashed, number
from gradlab.sweep import datafile

TOP_LEVEL = ("name", "description", *SECTIONS, "sweep", "case", "part", "reproduce")  # [reproduce]: see gradlab.reproduce
PART_KEYS = ("name", *SECTIONS, "sweep", "case")
RUN_KEYS = (*SECTIONS, "sweep", "case", "part")  # a config file with none of these has nothing to run
MAX_RUNS = 100_000  # the largest grid (Experiment.count()) `gradlab run` starts without --max-runs
CHECKED = ("model.kind", "task.name", "task.T", "task.variant", "model.norm", "train.batch",  # what check_combination reads
           "task.path", "task.loss", "task.input_size", "task.classes", "train.probe_size", "train.schedule", "train.lr",
           "train.min_lr")  # fmt: skip
NOT_WRITTEN = {"experiment.part": "the [[part]] names", "task.sha256": "task.path's file"}  # never written in a config or --set
NAME_MAX = 100  # characters of an experiment name, which names its results folder
NAME_FORBIDDEN = '/\\<>:"|?*'  # path separators and the characters Windows refuses in file names


class ConfigError(ValueError):
    """A config problem, in one line that names the key, the value and what is allowed."""


@dataclass
class Part:
    """One grid of an experiment: changes to the experiment's base, sweep axes and extra cases."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, list[Any]] = field(default_factory=dict)
    cases: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Experiment:
    """A validated config: a base run with sweep axes and cases, or parts; grid() expands it, count() sizes it."""

    name: str
    description: str
    base: dict[str, Any]  # dotted key -> value, every field present
    axes: dict[str, list[Any]] = field(default_factory=dict)
    cases: list[dict[str, Any]] = field(default_factory=list)
    parts: list[Part] = field(default_factory=list)

    def grid(self) -> list[dict[str, Any]]:
        """The resolved runs: per part (or for the whole experiment), the product of the axes (in file
        order), then the cases; duplicates (runs equal once irrelevant fields are reset) appear once."""
        return list(self.iter_grid())

    def iter_grid(self) -> Iterator[dict[str, Any]]:
        """The runs of grid(), in its order, one at a time: the first few cost only themselves."""
        seen: set[str] = set()
        for config in self._unresolved():
            config = resolve(config)
            rid = run_id(config)
            if rid not in seen:
                seen.add(rid)
                yield config

    def preview(self, limit: int = 10) -> list[dict[str, Any]]:
        """The first `limit` runs of grid(), without expanding the rest."""
        return list(itertools.islice(self.iter_grid(), limit))

    def count(self) -> int:
        """The runs before merging, in microseconds for any grid: per part, the product of the axis
        lengths plus the cases. An upper bound on len(grid()): runs equal once irrelevant fields are
        reset (e.g. the slope of a tanh run) merge into one."""
        return sum(math.prod(len(values) for values in part.axes.values()) + len(part.cases) for part in self._parts())

    def validate(self) -> None:
        """Raise the ConfigError of any impossible run without expanding the grid: per part, the product
        of only the axes check_combination reads (CHECKED), then every case."""
        for part in self._parts():
            base = self._base(part)
            keys = [key for key in part.axes if key in CHECKED]
            for values in itertools.product(*(dict.fromkeys(part.axes[key]) for key in keys)):
                check_combination({**base, **dict(zip(keys, values))})
            for case in part.cases:
                check_combination({**base, **case})

    def _parts(self) -> list[Part]:
        return self.parts or [Part("", {}, self.axes, self.cases)]

    def _base(self, part: Part) -> dict[str, Any]:
        return {**self.base, **part.overrides, "experiment.part": part.name}

    def _unresolved(self) -> Iterator[dict[str, Any]]:
        """Every run before resolve(): per part, the product of the axes, then the cases."""
        for part in self._parts():
            base = self._base(part)
            keys = list(part.axes)
            for values in itertools.product(*(part.axes[k] for k in keys)):
                yield {**base, **dict(zip(keys, values))}
            for case in part.cases:
                yield {**base, **case}


def canonical_key(key: str, where: str) -> str:
    """'depth' or 'model.depth' -> 'model.depth', or a ConfigError with a did-you-mean."""
    dotted = key if key in FIELDS else SHORT.get(key)
    if dotted in NOT_WRITTEN:
        raise ConfigError(f"{where}{key}: {dotted} is set from {NOT_WRITTEN[dotted]}, not written by hand")
    if dotted:
        return dotted
    close = difflib.get_close_matches(key, list(FIELDS) + list(SHORT), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else f"; allowed: {', '.join(SHORT)}"
    raise ConfigError(f"{where}{key}: unknown key{hint}")


def check_value(key: str, value: Any) -> Any:
    """The value if it fits the field's type, choices and bounds (ints accepted for numbers, which must
    be finite; "none" for optional fields)."""
    f = FIELDS[key]
    if f.optional and (value is None or value == "none"):
        return None
    ok_type = isinstance(value, f.type) and not (isinstance(value, bool) and f.type is not bool)
    if not ok_type:
        kind = {int: "an integer", str: "a string", bool: "true or false"}.get(f.type, "a number")  # type: ignore[arg-type]
        raise ConfigError(f"{key} = {value!r}: must be {kind}" + (" or \"none\"" if f.optional else ""))
    if f.choices is not None and value not in f.choices:
        raise ConfigError(f"{key} = {value!r}: must be one of {', '.join(f.choices)}")
    if f.type == NUM:
        _check_finite(key, value)
    _check_bounds(key, value)
    return float(value) if f.type == NUM else value


def _check_finite(key: str, value: float) -> None:
    """A number field's value must be finite (TOML can write nan and inf; huge ints overflow a float)."""
    try:
        finite = math.isfinite(float(value))
    except OverflowError:
        finite = False
    if not finite:
        rule = " and ".join(bounds(FIELDS[key]))
        raise ConfigError(f"{key} = {value!r}: must be a finite number" + (f" {rule}" if rule else ""))


def _check_bounds(key: str, value: float) -> None:
    """The value must lie within the field's bounds; a half-open range is named whole ("must be >= 0 and < 1")."""
    f = FIELDS[key]
    if f.positive and value <= 0:
        raise ConfigError(f"{key} = {value!r}: must be > 0")
    low = f.minimum is not None and value < f.minimum
    if f.below is not None and (low or value >= f.below):
        raise ConfigError(f"{key} = {value!r}: must be " + " and ".join(bounds(f)))
    if low:
        raise ConfigError(f"{key} = {value!r}: must be >= {number(f.minimum)}")
    if f.maximum is not None and value > f.maximum:
        raise ConfigError(f"{key} = {value!r}: must be <= {number(f.maximum)}")


def check_combination(config: dict[str, Any]) -> None:
    """The model must be able to run the task, T must reach the task's minimum (Task.min_T), and an MLP's
    batch norm needs batches of 2 or more (PyTorch refuses 1: the batch variance is 0); reads only CHECKED."""
    kind, task = config["model.kind"], config["task.name"]
    if config["train.schedule"] == "cosine" and config["train.min_lr"] > config["train.lr"]:
        raise ConfigError(f"train.min_lr = {config['train.min_lr']!r}: must be <= train.lr = {config['train.lr']!r} "
                          "(schedule = 'cosine' decays from train.lr towards train.min_lr)")  # fmt: skip
    if task == "file":
        try:
            datafile.check(config)  # x's shape for the model, the loss's targets, the sizes, the held-out rows
        except tasks.DataError as err:
            raise ConfigError(str(err)) from None
    elif (kind == "mlp") == (task in SEQUENCE_TASKS):
        need = "an rnn, lstm or gru" if task in SEQUENCE_TASKS else "an mlp"
        raise ConfigError(f"model.kind = {kind!r} cannot run task.name = {task!r}: that task needs {need}")
    if kind == "mlp" and config["model.norm"] == "batch" and config["train.batch"] < 2:
        raise ConfigError(f"train.batch = {config['train.batch']}: model.norm = 'batch' needs train.batch >= 2 "
                          "(the statistics of one example are its own value)")
    if task in SEQUENCE_TASKS:
        cls, T, variant = tasks.TASKS[task], config["task.T"], config["task.variant"]
        if T < cls.min_T(variant):
            raise ConfigError(f"task.T = {T}: {cls.label(variant)} needs T >= {cls.min_T(variant)}")


def resolve(config: dict[str, Any]) -> dict[str, Any]:
    """Check combinations and reset the fields that do not apply to this run to their defaults."""
    check_combination(config)
    task = config["task.name"]
    out = dict(config)
    for key, by_value in IRRELEVANT.items():
        for name in by_value.get(out[key], ()):
            out[name] = FIELDS[name].default
    if task not in SEQUENCE_TASKS:
        out["task.T"] = FIELDS["task.T"].default
    if task != "adding":
        out["task.variant"] = FIELDS["task.variant"].default
    if task not in ("teacher_student", "gaussian_blobs"):
        out["task.input_size"] = FIELDS["task.input_size"].default
    if task != "gaussian_blobs":
        out["task.classes"] = FIELDS["task.classes"].default
    if task == "file":
        out.update(datafile.resolved(config))  # its sizes and SHA-256, from the file
    return out


def run_id(config: dict[str, Any]) -> str:
    """A stable 12-hex-digit hash of a resolved config: of gradlab.schema.hashed(config), which leaves out
    the fields added after the first release (model.layers, model.norm, model.residual,
    model.residual_scale) while at their defaults, so that a run written before they existed keeps its
    id and its results (schema.RUN_ID_FORMAT); any other value of them changes the id. A file task's
    path is not hashed, its content hash task.sha256 is (schema.UNHASHED)."""
    text = json.dumps(hashed(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def parse_set(text: str) -> tuple[str, list[Any]]:
    """'train.steps=200' -> ('train.steps', [200]); 'seed=0,1,2' (or 'seed=[0,1,2]') -> ('train.seed', [0, 1, 2]).
    The value is split at the commas outside quotes (name="a,b" is one string) and each item is read as
    TOML, else taken as a string; an empty item is a ConfigError."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: must be key=value, e.g. train.steps=200")
    key, raw = (part.strip() for part in text.split("=", 1))
    key = canonical_key(key, "--set ")
    items = _split_items(raw[1:-1] if raw.startswith("[") and raw.endswith("]") else raw)
    if len(items) == 1 and raw == items[0]:
        return key, [_read_value(raw)]  # no comma, no brackets: one value, read as before axes existed
    for i, item in enumerate(items):
        if not item:
            raise ConfigError(f"--set {text!r}: item {i + 1} of {len(items)} is empty; write key=a,b,c "
                              '(quote a string holding a comma: key="a,b")')  # fmt: skip
    return key, [_read_value(item) for item in items]


def _split_items(raw: str) -> list[str]:
    """raw split at the commas outside '...' and "..." (a backslash escapes inside "..."), each item stripped."""
    items, start, quote, escaped = [], 0, "", False
    for i, c in enumerate(raw):
        if quote:
            if c == quote and not escaped:
                quote = ""
            escaped = quote == '"' and c == "\\" and not escaped
        elif c in "'\"":
            quote = c
        elif c == ",":
            items.append(raw[start:i].strip())
            start = i + 1
    return [*items, raw[start:].strip()]


def _read_value(raw: str) -> Any:
    """One --set value: read as TOML, else taken as the string itself."""
    try:
        parsed = tomllib.loads(f"v = {raw}")
        return parsed["v"] if list(parsed) == ["v"] else raw  # "1\nw = 2" is a string, not two keys
    except tomllib.TOMLDecodeError:
        return raw


def load(path: str | Path, overrides: list[str] = ()) -> Experiment:
    """Read and validate a config file; `overrides` ("key=value") replace the value everywhere: in the
    base, the parts, the axes and the cases."""
    path = Path(path)
    data = read(path)
    if "name" in data:
        check_name(data["name"])  # the more specific complaint about a file holding only a bad name
    if set(data) <= {"name", "description"}:
        raise ConfigError(
            f"{path}: nothing to run: no [model], [task], [train], [sweep], [[case]] or [[part]]; "
            "to run the defaults, write an empty [train] table"
        )
    return from_dict(data, path.stem, overrides, folder=path.parent)


def read(path: Path) -> dict[str, Any]:
    """The parsed TOML file, or a one-line ConfigError if it is missing, not UTF-8 or not valid TOML."""
    if path.is_dir():
        raise ConfigError(f"{path}: a folder, not a config file; give a TOML file such as experiments/tour.toml")
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: byte {err.start}: not UTF-8 text: not valid TOML") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(toml_error(path, text, err)) from None


_AT = re.compile(r"(.*) \(at (?:line (\d+), column (\d+)|end of document)\)", re.S)
_DUPLICATE = ("Cannot overwrite a value", "Cannot declare", "Duplicate inline table key")  # tomllib's words
_BARE_OR_QUOTED = r"""(?:[A-Za-z0-9_-]+|"[^"\n]*"|'[^'\n]*')"""
_KEY_LINE = re.compile(rf"\s*({_BARE_OR_QUOTED}(?:\s*\.\s*{_BARE_OR_QUOTED})*)\s*=")


def toml_error(path: Path, text: str, err: tomllib.TOMLDecodeError) -> str:
    """tomllib's error as one line naming the file and the line; a key or table written twice is named."""
    match = _AT.fullmatch(str(err))
    message, line, column = match.groups() if match else (str(err), None, None)
    if message.startswith(_DUPLICATE):
        line, what = _duplicate(text, message)
        return f"{path}: line {line}: {what} is written twice: not valid TOML"
    where = f"line {line}, column {column}" if line else f"line {max(1, len(text.splitlines()))} (end of file)"
    return f"{path}: {where}: not valid TOML: {message}"


def _duplicate(text: str, message: str) -> tuple[int, str]:
    """(line, "key depth" or "table [model]") of the first key or table written twice in text."""
    lines = text.splitlines()
    end = _first_duplicate_line(lines)
    try:
        if message.startswith("Cannot declare"):  # "Cannot declare ('part', 'model') twice"
            return end, "table [" + ".".join(ast.literal_eval(message.split(" ", 2)[2].rsplit(" ", 1)[0])) + "]"
        if message.startswith("Duplicate inline table key"):  # "Duplicate inline table key 'b'"
            return end, f"key {ast.literal_eval(message.rsplit(' ', 1)[1])}"
    except (ValueError, SyntaxError, TypeError):
        return end, "a key"
    for i in range(end - 1, -1, -1):  # the value may span lines: its key is on the last `key =` line
        match = _KEY_LINE.match(lines[i])
        if match:
            return i + 1, f"key {match.group(1)}"
    return end, "a key"


def _first_duplicate_line(lines: list[str]) -> int:
    """The first line n such that lines[:n] already writes something twice (tomllib reports where the
    value ends, or only "end of document")."""
    for n in range(1, len(lines) + 1):
        try:
            tomllib.loads("\n".join(lines[:n]))
        except tomllib.TOMLDecodeError as err:
            if str(err).startswith(_DUPLICATE):
                return n
    return max(1, len(lines))


def from_dict(data: dict[str, Any], default_name: str = "experiment", overrides: list[str] = (),
              folder: Path | None = None) -> Experiment:  # fmt: skip
    """Validate a parsed config (see the module docstring) into an Experiment; the grid is not expanded.
    An empty dict is the defaults (load() refuses an empty file). folder: where the config's relative
    task.path values start (the config file's folder; default the current one; --set's: the current one)."""
    _check_top_level(data, default_name)
    base = {**defaults(), **_sections(data, "")}
    axes, cases = _axes(data, ""), _cases(data, "")
    parts = _parts(data)
    if parts and (axes or cases):
        raise ConfigError("sweep / case: a config with [[part]] sweeps inside its parts ([part.sweep], [[part.case]])")
    grids = parts or [Part("", {}, axes, cases)]  # the Part shares axes and cases
    datafile.absolute_paths(folder or Path.cwd(), base, grids)  # the config's own relative task.path values
    _apply_overrides(overrides, base, grids)
    datafile.absolute_paths(Path.cwd(), base, grids)  # those --set wrote
    name = check_name(data.get("name", default_name))
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"description = {description!r}: must be a string")
    experiment = Experiment(name, description, base, axes, cases, parts)
    experiment.validate()  # an impossible combination anywhere in the grid fails now, before anything runs
    return experiment


def _check_top_level(data: dict[str, Any], default_name: str) -> None:
    """Only the known sections, and not only a reproduction's [reproduce] table."""
    for key in data:
        if key not in TOP_LEVEL:
            close = difflib.get_close_matches(key, TOP_LEVEL, n=1)
            raise ConfigError(f"{key}: unknown section" + (f"; did you mean {close[0]}?" if close else f"; allowed: {', '.join(TOP_LEVEL)}"))
    if "reproduce" in data and not any(key in data for key in RUN_KEYS):
        raise ConfigError(f"{default_name}: has no runs, only a reproduction's [reproduce] table; use gradlab reproduce {default_name}")


def _parts(data: dict[str, Any]) -> list[Part]:
    """The [[part]]s, checked; part names must be non-empty strings, each used once."""
    parts: list[Part] = []
    for i, part in enumerate(_list_of_tables(data, "part")):
        where = f"part[{i}]."
        for key in part:
            if key not in PART_KEYS:
                raise ConfigError(f"{where}{key}: unknown key; allowed: {', '.join(PART_KEYS)}")
        label = part.get("name", f"part{i}")
        if not isinstance(label, str) or not label:
            raise ConfigError(f"{where}name = {label!r}: must be a non-empty string")
        taken = [j for j, other in enumerate(parts) if other.name == label]
        if taken:
            raise ConfigError(f"{where}name = {label!r}: must differ from the other parts' names; part[{taken[0]}] has it")
        parts.append(Part(label, _sections(part, where), _axes(part, where), _cases(part, where)))
    return parts


def _apply_overrides(overrides: Iterable[str], base: dict[str, Any], parts: list[Part]) -> None:
    """--set wins everywhere (the last --set of a key wins). key=value: checked, written into the base and
    removed from every part, axis and case. key=a,b,c: the experiment once per value, i.e. an axis of every
    part (replacing the part's own axis in its place, else added last), and every case once per value."""
    for key, values in _parse_sets(overrides).items():
        if len(values) == 1:
            base[key] = values[0]
        for part in parts:
            _set_in_part(part, key, values)


def _set_in_part(part: Part, key: str, values: list[Any]) -> None:
    """One --set in one part: one value removes the key from the part's changes, axes and cases (the base's
    value wins); more make it the part's axis and run each case once per value."""
    part.overrides.pop(key, None)
    if len(values) == 1:
        part.axes.pop(key, None)
        for case in part.cases:
            case.pop(key, None)
    else:
        part.axes[key] = list(values)
        part.cases[:] = [{**case, key: value} for case in part.cases for value in values]


def _parse_sets(overrides: Iterable[str]) -> dict[str, list[Any]]:
    """Dotted key -> the checked values of its last --set (one value: an override; more: an axis)."""
    out: dict[str, list[Any]] = {}
    for text in overrides:
        key, values = parse_set(text)
        out.pop(key, None)  # the last --set of a key takes its place in the order
        out[key] = _axis_values(key, values, f"--set {text!r}")
    return out


def _axis_values(key: str, values: list[Any], where: str) -> list[Any]:
    """An axis's values, each checked (check_value), none repeated: `where` names the axis in the error."""
    checked, seen = [], set()
    for raw, value in zip(values, (check_value(key, v) for v in values)):
        if value in seen:
            raise ConfigError(f"{where}: {raw!r} is repeated; an axis lists each value once")
        seen.add(value)
        checked.append(value)
    return checked


def check_name(name: Any) -> str:
    """The name if it is a safe folder name: 1 to 100 printable characters, no whitespace, none of
    / \\ < > : " | ? *, not . or .., no leading dot."""
    problem = _name_problem(name)
    if problem:
        raise ConfigError(f"name = {name!r}: must be {problem}")
    return name


def _name_problem(name: Any) -> str | None:
    """What is wrong with a name as a folder name, or None."""
    if not isinstance(name, str) or not name:
        return "a non-empty string"
    if len(name) > NAME_MAX:
        return f"a folder name of at most {NAME_MAX} characters, not {len(name)}"
    if name in (".", ".."):
        return "a folder name, not . or .."
    if name.startswith("."):
        return "a folder name without a leading dot"
    if any(c.isspace() or not c.isprintable() for c in name):
        return "a folder name without whitespace or control characters"
    if any(c in NAME_FORBIDDEN for c in name):
        return "a folder name without any of " + " ".join(NAME_FORBIDDEN)
    return None


def _sections(data: dict[str, Any], where: str) -> dict[str, Any]:
    """The [model] / [task] / [train] values of data, checked, by dotted key."""
    out = {}
    for section in SECTIONS:
        for key, value in _table(data, section, where).items():
            dotted = canonical_key(f"{section}.{key}", where)
            out[dotted] = check_value(dotted, value)
    return out


def _axes(data: dict[str, Any], where: str) -> dict[str, list[Any]]:
    """The [sweep] axes of data, checked, by dotted key."""
    table = _table(data, "sweep", where)
    axes = {}
    for dotted, key in _spellings(table, f"{where}sweep.").items():
        values = table[key]
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}sweep.{key} = {values!r}: must be a non-empty list of values")
        axes[dotted] = _axis_values(dotted, values, f"{where}sweep.{key} = {values!r}")
    return axes


def _cases(data: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """The [[case]]s of data, checked, by dotted key."""
    cases = []
    for i, case in enumerate(_list_of_tables(data, "case", where)):
        keys = _spellings(case, f"{where}case[{i}].")
        cases.append({dotted: check_value(dotted, case[key]) for dotted, key in keys.items()})
    return cases


def _spellings(table: dict[str, Any], where: str) -> dict[str, str]:
    """Dotted key -> the key as written; one field written under two names (depth, model.depth) is an error."""
    seen: dict[str, str] = {}
    for key in table:
        dotted = canonical_key(key, where)
        if dotted in seen:
            raise ConfigError(f"{where.rstrip('.')}: {seen[dotted]} and {key} are the same field, {dotted}; write it once")
        seen[dotted] = key
    return seen


def _table(data: dict[str, Any], key: str, where: str = "") -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}{key}: must be a table ([{key}])")
    return value


def _list_of_tables(data: dict[str, Any], key: str, where: str = "") -> list[dict[str, Any]]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{where}{key}: must be an array of tables ([[{key}]])")
    return value


def to_toml(experiment: Experiment) -> str:
    """The experiment as TOML (the resolved base, the axes, the cases), for results/<name>/config.toml."""
    lines = [f"name = {json.dumps(experiment.name)}", f"description = {json.dumps(experiment.description)}"]
    lines += _grid_toml("", experiment.base, experiment.axes, experiment.cases, blank="\n")
    for part in experiment.parts:
        lines += ["\n[[part]]", f"name = {json.dumps(part.name)}"]
        lines += _grid_toml("part.", part.overrides, part.axes, part.cases)
    return "\n".join(lines) + "\n"


def _grid_toml(prefix: str, values: dict[str, Any], axes: dict[str, list[Any]], cases: list[dict[str, Any]],
               blank: str = "") -> list[str]:  # fmt: skip
    """TOML lines of one grid: its [section] values, [sweep] axes and [[case]]s, under `prefix`."""
    lines = []
    for section in SECTIONS:
        own = {k: v for k, v in values.items() if k.startswith(section + ".") and k not in NOT_WRITTEN}
        if own:
            lines.append(f"{blank}[{prefix}{section}]")
            lines += [f"{k.split('.', 1)[1]} = {_toml_value(v)}" for k, v in own.items()]
    if axes:
        lines.append(f"{blank}[{prefix}sweep]")
        lines += [f'"{k}" = [{", ".join(_toml_value(v) for v in vs)}]' for k, vs in axes.items()]
    for case in cases:
        lines.append(f"{blank}[[{prefix}case]]")
        lines += [f'"{k}" = {_toml_value(v)}' for k, v in case.items()]
    return lines


def _toml_value(value: Any) -> str:
    if value is None:
        return '"none"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)
