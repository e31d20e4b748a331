"""Every config field, its type, default, allowed values and meaning: the one source the validator,
the grid, the run table's columns and the README's config reference are built from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gradlab.nn import activations, clip, init, optim
from gradlab import tasks


@dataclass(frozen=True)
class Field:
    type: type | tuple[type, ...]
    default: Any
    help: str
    choices: tuple | None = None
    minimum: float | None = None  # inclusive
    maximum: float | None = None  # inclusive
    positive: bool = False  # strictly > 0
    optional: bool = False  # None allowed (written as omitted / "none" in TOML)


INT, NUM = int, (int, float)
FIELDS: dict[str, Field] = {
    # model
    "model.kind": Field(str, "mlp", "the model", ("mlp", "rnn", "lstm")),
    "model.depth": Field(INT, 4, "hidden layers of the MLP (weight layers = depth + 1)", minimum=1),
    "model.width": Field(INT, 64, "units per hidden layer (MLP) or hidden size H (RNN, LSTM)", minimum=1),
    "model.activation": Field(str, "tanh", "hidden activation (MLP, RNN; the LSTM's are fixed)", activations.NAMES),
    "model.slope": Field(NUM, activations.DEFAULT_SLOPE, "leaky_relu's negative slope", minimum=0, maximum=1),
    "model.output_activation": Field(str, "identity", "the MLP's last activation", activations.NAMES),
    "model.init": Field(str, "standard", "weight initialiser", init.NAMES),
    "model.recurrent_init": Field(str, None, "initialiser of W_hh (default: model.init)", init.NAMES, optional=True),
    "model.gain": Field(NUM, None, "gain of orthogonal / identity / xavier inits", positive=True, optional=True),
    "model.sigma_w2": Field(NUM, 1.0, "mean_field weight variance x fan_in", positive=True),
    "model.sigma_b2": Field(NUM, 0.0, "mean_field bias variance", minimum=0),
    "model.spectral_radius": Field(NUM, None, "rescale W_hh to this spectral radius", positive=True, optional=True),
    "model.forget_bias": Field(NUM, 0.0, "LSTM forget-gate bias"),
    "model.truncate": Field(INT, None, "truncated BPTT length k (none: full BPTT)", minimum=1, optional=True),
    # task
    "task.name": Field(str, "teacher_student", "the task", tasks.NAMES),
    "task.T": Field(INT, 50, "sequence length (sequence tasks)", minimum=1),
    "task.variant": Field(str, "le2015", "adding problem variant", ("le2015", "hochreiter1997")),
    "task.input_size": Field(INT, 16, "input dimension (teacher_student, gaussian_blobs)", minimum=1),
    "task.classes": Field(INT, 4, "classes (gaussian_blobs)", minimum=2),
    # train
    "train.steps": Field(INT, 200, "optimizer steps", minimum=0),
    "train.batch": Field(INT, 32, "examples per step", minimum=1),
    "train.optimizer": Field(str, "sgd", "optimizer", optim.NAMES),
    "train.lr": Field(NUM, 0.01, "learning rate", positive=True),
    "train.momentum": Field(NUM, 0.9, "momentum (optimizer = momentum)", minimum=0),
    "train.clip_mode": Field(str, "none", "gradient clipping", clip.MODES),
    "train.clip": Field(NUM, 1.0, "clipping threshold c (norm or value)", positive=True),
    "train.log_every": Field(INT, 10, "log probes every k steps (step 0 and the last step always)", minimum=1),
    "train.probe_size": Field(INT, 512, "held-out examples for evaluation and dead-unit probes", minimum=1),
    "train.jacobian": Field(bool, False, "measure the step Jacobian norms (RNN, LSTM)"),
    "train.seed": Field(INT, 0, "seed of the weights and the batches", minimum=0),
    "train.dtype": Field(str, "float64", "float32 or float64", ("float32", "float64")),
    # set from [[part]] names, not written by hand
    "experiment.part": Field(str, "", "the [[part]] of the experiment a run belongs to (empty without parts)"),
}
SECTIONS = ("model", "task", "train")  # the sections a config writes; experiment.part comes from [[part]]
SHORT = {key.split(".", 1)[1]: key for key in FIELDS}  # "depth" -> "model.depth"
assert len(SHORT) == len(FIELDS), "short field names must be unique"
SEQUENCE_TASKS = tuple(name for name, cls in tasks.TASKS.items() if cls.kind == "sequence")

# Fields that do not apply to a run are reset to their defaults, so that runs that differ only there
# are one run (one id): e.g. the LSTM's activation, an MLP's truncation, the threshold of clip_mode none.
IRRELEVANT = {
    "model.kind": {
        "mlp": ("model.recurrent_init", "model.spectral_radius", "model.forget_bias", "model.truncate"),
        "rnn": ("model.depth", "model.output_activation", "model.forget_bias"),
        "lstm": ("model.depth", "model.output_activation", "model.activation", "model.slope"),
    },
    "model.activation": {a: ("model.slope",) for a in activations.NAMES if a != "leaky_relu"},
    "train.clip_mode": {"none": ("train.clip",)},
    "train.optimizer": {"sgd": ("train.momentum",), "adam": ("train.momentum",)},
}

# Column names in the runs table (DESIGN.md's): the short name, except for these.
COLUMNS = {"model.kind": "model", "model.slope": "leaky_slope", "task.name": "task"}
SHORT.update({col: key for key, col in COLUMNS.items()})  # the column names work as short names too


def column(key: str) -> str:
    """The runs-table column of a config field."""
    return COLUMNS.get(key, key.split(".", 1)[1])


def defaults() -> dict[str, Any]:
    return {key: f.default for key, f in FIELDS.items()}


def reference() -> str:
    """The config reference as a Markdown table (the README carries it; a test keeps them equal)."""
    rows = ["| field | default | allowed | meaning |", "| --- | --- | --- | --- |"]
    for key, f in FIELDS.items():
        if f.choices:
            allowed = ", ".join(f.choices)
        elif f.type is bool:
            allowed = "true, false"
        else:
            kind = "integer" if f.type is int else "number"
            bounds = " > 0" if f.positive else "".join(
                [f" >= {f.minimum:g}" if f.minimum is not None else "", f", <= {f.maximum:g}" if f.maximum is not None else ""]
            )
            allowed = kind + bounds
        if f.optional:
            allowed += ', or "none"'
        default = '"none"' if f.default is None else f"`{str(f.default).lower() if f.type is bool else f.default}`"
        rows.append(f"| `{key}` | {default} | {allowed} | {f.help} |")
    return "\n".join(rows)
