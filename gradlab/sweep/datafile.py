"""The file task in a config: task.path made absolute, the data checked against each run's model, loss and
sizes before anything runs, and what the file gives the resolved config (its sizes and its SHA-256).

task.path, when relative, is relative to the folder of the config file that writes it; one given with
--set (or to from_dict without a file) is relative to the current folder. task.T, task.input_size and
task.classes are taken from the file; a value of them other than the field's default must agree with it
(task.classes: is the class count of a cross_entropy file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gradlab.schema import FIELDS
from gradlab.tasks import file as data_file

Config = dict[str, Any]
KEY = "task.path"


def _given(config: Config) -> dict[str, int]:
    """task.T (sequence models), task.input_size and task.classes (cross_entropy), where they are off their defaults."""
    keys = ["input_size"] + (["T"] if config["model.kind"] != "mlp" else []) + (
        ["classes"] if config["task.loss"] in data_file.CLASSIFICATION else [])  # fmt: skip
    return {k: config[f"task.{k}"] for k in keys if config[f"task.{k}"] != FIELDS[f"task.{k}"].default}


def check(config: Config) -> data_file.Sizes:
    """The sizes the config's data file gives its run, or a one-line DataError naming the file and the problem."""
    if not config[KEY]:
        raise data_file.DataError("task.path = '': task.name = 'file' needs the data file, "
                                  'e.g. task.path = "data.npz"')  # fmt: skip
    data = data_file.read(config[KEY])
    kind = "vector" if config["model.kind"] == "mlp" else "sequence"
    return data_file.check(data, config["task.loss"], kind, config["train.probe_size"], _given(config))


def resolved(config: Config) -> Config:
    """The fields the data file sets in a resolved config: task.T (sequences; else its default), task.input_size,
    task.classes (cross_entropy; else its default) and task.sha256."""
    sizes = check(config)
    return {
        "task.T": sizes.T if sizes.T is not None else FIELDS["task.T"].default,
        "task.input_size": sizes.input_size,
        "task.classes": sizes.classes if sizes.classes is not None else FIELDS["task.classes"].default,
        "task.sha256": data_file.read(config[KEY]).sha256,
    }


def absolute_paths(folder: Path, base: Config, parts: list) -> None:
    """Every relative task.path in the base and in the parts' overrides, axes and cases (gradlab.sweep.config.Part),
    made absolute against `folder`, in place; absolute ones are left as they are."""
    def absolute(value: Any) -> Any:
        relative = isinstance(value, str) and value and not Path(value).is_absolute()
        return str((folder / value).resolve()) if relative else value

    for table in (base, *(p.overrides for p in parts), *(c for p in parts for c in p.cases)):
        if KEY in table:
            table[KEY] = absolute(table[KEY])
    for part in parts:
        if KEY in part.axes:
            part.axes[KEY] = [absolute(v) for v in part.axes[KEY]]
