"""Experiment configs: parse a TOML file, validate every key and value before anything runs, and
expand the grid (the product of the sweep axes, plus explicit extra cases) into resolved runs.

    name = "mlp_depth"                      # optional; default: the file's stem
    description = "..."
    [model]  kind = "mlp" ...               # the base: any field of gradlab.sweep.schema.FIELDS
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
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradlab.sweep.schema import FIELDS, IRRELEVANT, SECTIONS, SEQUENCE_TASKS, SHORT, defaults

TOP_LEVEL = ("name", "description", *SECTIONS, "sweep", "case", "part", "reproduce")  # [reproduce]: see gradlab.reproduce
PART_KEYS = ("name", *SECTIONS, "sweep", "case")


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
    name: str
    description: str
    base: dict[str, Any]  # dotted key -> value, every field present
    axes: dict[str, list[Any]] = field(default_factory=dict)
    cases: list[dict[str, Any]] = field(default_factory=list)
    parts: list[Part] = field(default_factory=list)

    def grid(self) -> list[dict[str, Any]]:
        """The resolved runs: per part (or for the whole experiment), the product of the axes (in file
        order), then the cases; duplicates (runs equal once irrelevant fields are reset) appear once."""
        runs: dict[str, dict[str, Any]] = {}
        for part in self.parts or [Part("", {}, self.axes, self.cases)]:
            base = {**self.base, **part.overrides, "experiment.part": part.name}
            keys = list(part.axes)
            for values in itertools.product(*(part.axes[k] for k in keys)):
                self._add(runs, {**base, **dict(zip(keys, values))})
            for case in part.cases:
                self._add(runs, {**base, **case})
        return list(runs.values())

    @staticmethod
    def _add(runs: dict[str, dict[str, Any]], config: dict[str, Any]) -> None:
        config = resolve(config)
        runs.setdefault(run_id(config), config)


def canonical_key(key: str, where: str) -> str:
    """'depth' or 'model.depth' -> 'model.depth', or a ConfigError with a did-you-mean."""
    if key in FIELDS:
        return key
    if key in SHORT:
        return SHORT[key]
    close = difflib.get_close_matches(key, list(FIELDS) + list(SHORT), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else f"; allowed: {', '.join(SHORT)}"
    raise ConfigError(f"{where}{key}: unknown key{hint}")


def check_value(key: str, value: Any) -> Any:
    """The value if it fits the field (ints accepted for numbers, "none" for optional fields)."""
    f = FIELDS[key]
    if f.optional and (value is None or value == "none"):
        return None
    ok_type = isinstance(value, f.type) and not (isinstance(value, bool) and f.type is not bool)
    if not ok_type:
        kind = {int: "an integer", str: "a string", bool: "true or false"}.get(f.type, "a number")  # type: ignore[arg-type]
        raise ConfigError(f"{key} = {value!r}: must be {kind}" + (" or \"none\"" if f.optional else ""))
    if f.choices is not None and value not in f.choices:
        raise ConfigError(f"{key} = {value!r}: must be one of {', '.join(f.choices)}")
    if f.positive and value <= 0:
        raise ConfigError(f"{key} = {value!r}: must be > 0")
    if f.minimum is not None and value < f.minimum:
        raise ConfigError(f"{key} = {value!r}: must be >= {f.minimum}")
    if f.maximum is not None and value > f.maximum:
        raise ConfigError(f"{key} = {value!r}: must be <= {f.maximum}")
    return float(value) if f.type == (int, float) else value


def resolve(config: dict[str, Any]) -> dict[str, Any]:
    """Check combinations and reset the fields that do not apply to this run to their defaults."""
    kind, task = config["model.kind"], config["task.name"]
    if (kind == "mlp") == (task in SEQUENCE_TASKS):
        need = "an rnn or lstm" if task in SEQUENCE_TASKS else "an mlp"
        raise ConfigError(f"model.kind = {kind!r} cannot run task.name = {task!r}: that task needs {need}")
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
    return out


def run_id(config: dict[str, Any]) -> str:
    """A stable 12-hex-digit hash of a resolved config."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def parse_override(text: str) -> tuple[str, Any]:
    """'train.steps=200' -> ('train.steps', 200); the value is read as TOML, else taken as a string."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: must be key=value, e.g. train.steps=200")
    key, raw = (part.strip() for part in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return canonical_key(key, "--set "), value


def load(path: str | Path, overrides: list[str] = ()) -> Experiment:
    """Read and validate a config file; `overrides` ("key=value") replace the value everywhere: in the
    base, the parts, the axes and the cases."""
    path = Path(path)
    return from_dict(read(path), path.stem, overrides)


def read(path: Path) -> dict[str, Any]:
    """The parsed TOML file, or a one-line ConfigError if it is missing or not valid TOML."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None


def from_dict(data: dict[str, Any], default_name: str = "experiment", overrides: list[str] = ()) -> Experiment:
    """Validate a parsed config (see the module docstring) into an Experiment."""
    for key in data:
        if key not in TOP_LEVEL:
            close = difflib.get_close_matches(key, TOP_LEVEL, n=1)
            raise ConfigError(f"{key}: unknown section" + (f"; did you mean {close[0]}?" if close else f"; allowed: {', '.join(TOP_LEVEL)}"))
    if "reproduce" in data and not any(key in data for key in (*SECTIONS, "sweep", "case", "part")):
        raise ConfigError(f"{default_name}: has no runs, only a reproduction's [reproduce] table; use gradlab reproduce {default_name}")
    base = {**defaults(), **_sections(data, "")}
    axes, cases = _axes(data, ""), _cases(data, "")
    parts = []
    for i, part in enumerate(_list_of_tables(data, "part")):
        where = f"part[{i}]."
        for key in part:
            if key not in PART_KEYS:
                raise ConfigError(f"{where}{key}: unknown key; allowed: {', '.join(PART_KEYS)}")
        label = part.get("name", f"part{i}")
        if not isinstance(label, str) or not label:
            raise ConfigError(f"{where}name = {label!r}: must be a non-empty string")
        parts.append(Part(label, _sections(part, where), _axes(part, where), _cases(part, where)))
    if parts and (axes or cases):
        raise ConfigError("sweep / case: a config with [[part]] sweeps inside its parts ([part.sweep], [[part.case]])")
    for text in overrides:
        key, value = parse_override(text)
        base[key] = check_value(key, value)
        for part in [*parts, Part("", {}, axes, cases)]:  # --set wins everywhere
            part.overrides.pop(key, None)
            part.axes.pop(key, None)
            for case in part.cases:
                case.pop(key, None)
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name or any(c in name for c in "/\\ "):
        raise ConfigError(f"name = {name!r}: must be a non-empty string without spaces or slashes")
    experiment = Experiment(name, str(data.get("description", "")), base, axes, cases, parts)
    experiment.grid()  # an impossible combination anywhere in the grid fails now, before anything runs
    return experiment


def _sections(data: dict[str, Any], where: str) -> dict[str, Any]:
    """The [model] / [task] / [train] values of data, checked, by dotted key."""
    out = {}
    for section in SECTIONS:
        for key, value in _table(data, section, where).items():
            dotted = canonical_key(f"{section}.{key}", where)
            out[dotted] = check_value(dotted, value)
    return out


def _axes(data: dict[str, Any], where: str) -> dict[str, list[Any]]:
    axes = {}
    for key, values in _table(data, "sweep", where).items():
        dotted = canonical_key(key, f"{where}sweep.")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}sweep.{key} = {values!r}: must be a non-empty list of values")
        axes[dotted] = [check_value(dotted, v) for v in values]
    return axes


def _cases(data: dict[str, Any], where: str) -> list[dict[str, Any]]:
    return [
        {(d := canonical_key(k, f"{where}case[{i}].")): check_value(d, v) for k, v in case.items()}
        for i, case in enumerate(_list_of_tables(data, "case", where))
    ]


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
        own = {k: v for k, v in values.items() if k.startswith(section + ".")}
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
