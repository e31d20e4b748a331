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

A field written "none" (or omitted) is None where the schema allows it.
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

TOP_LEVEL = ("name", "description", *SECTIONS, "sweep", "case")


class ConfigError(ValueError):
    """A config problem, in one line that names the key, the value and what is allowed."""


@dataclass
class Experiment:
    name: str
    description: str
    base: dict[str, Any]  # dotted key -> value, every field present
    axes: dict[str, list[Any]] = field(default_factory=dict)
    cases: list[dict[str, Any]] = field(default_factory=list)

    def grid(self) -> list[dict[str, Any]]:
        """The resolved runs: product of the axes (in file order), then the cases; duplicates (runs
        equal once irrelevant fields are reset) appear once."""
        runs: dict[str, dict[str, Any]] = {}
        keys = list(self.axes)
        for values in itertools.product(*(self.axes[k] for k in keys)):
            self._add(runs, {**self.base, **dict(zip(keys, values))})
        for case in self.cases:
            self._add(runs, {**self.base, **case})
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
    """Read and validate a config file; `overrides` ("key=value") replace base values and axes."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    return from_dict(data, path.stem, overrides)


def from_dict(data: dict[str, Any], default_name: str = "experiment", overrides: list[str] = ()) -> Experiment:
    """Validate a parsed config (see the module docstring) into an Experiment."""
    for key in data:
        if key not in TOP_LEVEL:
            close = difflib.get_close_matches(key, TOP_LEVEL, n=1)
            raise ConfigError(f"{key}: unknown section" + (f"; did you mean {close[0]}?" if close else f"; allowed: {', '.join(TOP_LEVEL)}"))
    base = defaults()
    for section in SECTIONS:
        table = _table(data, section)
        for key, value in table.items():
            dotted = canonical_key(f"{section}.{key}", "")
            base[dotted] = check_value(dotted, value)
    axes: dict[str, list[Any]] = {}
    for key, values in _table(data, "sweep").items():
        dotted = canonical_key(key, "sweep.")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep.{key} = {values!r}: must be a non-empty list of values")
        axes[dotted] = [check_value(dotted, v) for v in values]
    cases = []
    for i, case in enumerate(_list_of_tables(data, "case")):
        cases.append({(d := canonical_key(k, f"case[{i}].")): check_value(d, v) for k, v in case.items()})
    for text in overrides:
        key, value = parse_override(text)
        base[key] = check_value(key, value)
        axes.pop(key, None)
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name or any(c in name for c in "/\\ "):
        raise ConfigError(f"name = {name!r}: must be a non-empty string without spaces or slashes")
    experiment = Experiment(name, str(data.get("description", "")), base, axes, cases)
    experiment.grid()  # an impossible combination anywhere in the grid fails now, before anything runs
    return experiment


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: must be a table ([{key}])")
    return value


def _list_of_tables(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{key}: must be an array of tables ([[{key}]])")
    return value


def to_toml(experiment: Experiment) -> str:
    """The experiment as TOML (the resolved base, the axes, the cases), for results/<name>/config.toml."""
    lines = [f"name = {json.dumps(experiment.name)}", f"description = {json.dumps(experiment.description)}"]
    for section in SECTIONS:
        lines.append(f"\n[{section}]")
        for key, value in experiment.base.items():
            if key.startswith(section + "."):
                lines.append(f"{key.split('.', 1)[1]} = {_toml_value(value)}")
    if experiment.axes:
        lines.append("\n[sweep]")
        lines += [f'"{k}" = [{", ".join(_toml_value(v) for v in vs)}]' for k, vs in experiment.axes.items()]
    for case in experiment.cases:
        lines.append("\n[[case]]")
        lines += [f'"{k}" = {_toml_value(v)}' for k, v in case.items()]
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if value is None:
        return '"none"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)
