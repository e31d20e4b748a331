"""Every config field, its type, default, allowed values and meaning: the one source the validator,
the grid, the run table's columns and the README's config reference are built from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gradlab.nn import activations, clip, init, losses, optim, schedule
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
    below: float | None = None  # exclusive upper bound (momentum < 1)
    since: int = 1  # the run-id format that added the field (see RUN_ID_FORMAT)
    ensemble: bool = False  # may differ between the members of one ensemble (see ENSEMBLE_FIELDS)


INT, NUM = int, (int, float)  # numbers (NUM) must also be finite: no nan, inf or -inf
INT64_MAX = 2**63 - 1  # the runs table's int64 and numpy's Generator seeds
MAX_LAYERS = 100  # stacked recurrent cells: each is a full BPTT of its own, so more is no sane experiment
# Run ids (gradlab.sweep.config.run_id) hash the resolved config. A field added after the first release
# carries since = the format that added it, and is left out of the hash while at its default, so that
# every run written before it existed keeps its id (the committed results are keyed by them): format 2
# added the cures (model.layers, model.norm, model.residual, model.residual_scale; model.kind "gru"); format 3
# the file task (task.path, task.loss, task.sha256; task.name "file") and the learning-rate schedules
# (train.schedule, train.decay_every, train.decay, train.warmup_steps, train.min_lr). UNHASHED fields are
# never hashed: a data file's path is not (its content hash task.sha256 is), so moving the data keeps the ids.
RUN_ID_FORMAT = 3
UNHASHED = ("task.path",)
NORMS = ("none", "layer", "batch")  # model.norm ("none": gradlab.nn.MLP's norm=None)


def _min_T_help() -> str:
    """task.T's help, with every sequence task's minimum length read from the task classes."""
    rules = [
        f"{cls.min_T(v)} for {cls.label(v)}"
        for cls in tasks.TASKS.values() if cls.kind == "sequence"
        for v in getattr(cls, "VARIANTS", (None,)) if cls.min_T(v) > 1
    ]  # fmt: skip
    return ("sequence length (sequence tasks; file: x's axis 1, a value other than the default must match it); at least "
            + ", ".join(rules))


FIELDS: dict[str, Field] = {
    # model
    "model.kind": Field(str, "mlp", "the model", ("mlp", "rnn", "lstm", "gru")),
    "model.depth": Field(INT, 4, "hidden layers of the MLP (weight layers = depth + 1)", minimum=1, maximum=10**4),
    "model.layers": Field(INT, 1, "stacked recurrent cells (RNN, LSTM, GRU; layer 0 reads the input)", minimum=1,
                          maximum=MAX_LAYERS, since=2),
    "model.width": Field(INT, 64, "units per hidden layer (MLP) or hidden size H (RNN, LSTM, GRU)", minimum=1, maximum=10**6),
    "model.activation": Field(str, "tanh", "hidden activation (MLP, RNN; the LSTM's and GRU's are fixed)", activations.NAMES),
    "model.slope": Field(NUM, activations.DEFAULT_SLOPE, "leaky_relu's negative slope", minimum=0, maximum=1, ensemble=True),
    "model.output_activation": Field(str, "identity", "the MLP's last activation", activations.NAMES),
    "model.norm": Field(str, "none", "normalization of each hidden layer's dense output, before its activation (MLP)",
                        NORMS, since=2),
    "model.residual": Field(bool, False, "residual hidden layers a_l = a_(l-1) + s phi(.) where the widths match "
                            "(MLP: all but the first, unless task.input_size = model.width)", since=2),
    "model.residual_scale": Field(NUM, 1.0, "s, the residual branch's scale (model.residual = true)", since=2),
    "model.init": Field(str, "standard", "weight initialiser", init.NAMES, ensemble=True),
    "model.recurrent_init": Field(str, None, "initialiser of W_hh (default: model.init)", init.NAMES, optional=True, ensemble=True),
    "model.gain": Field(NUM, None, "gain of orthogonal / identity / xavier inits", positive=True, optional=True, ensemble=True),
    "model.sigma_w2": Field(NUM, 1.0, "mean_field weight variance x fan_in", positive=True, ensemble=True),
    "model.sigma_b2": Field(NUM, 0.0, "mean_field bias variance", minimum=0, ensemble=True),
    "model.spectral_radius": Field(NUM, None, "rescale W_hh to this spectral radius", positive=True, optional=True, ensemble=True),
    "model.forget_bias": Field(NUM, 0.0, "LSTM forget-gate bias", ensemble=True),
    "model.truncate": Field(INT, None, "truncated BPTT length k (none: full BPTT)", minimum=1, maximum=10**6, optional=True),
    # task
    "task.name": Field(str, "teacher_student", "the task", tasks.NAMES),
    "task.T": Field(INT, 50, _min_T_help(), minimum=1, maximum=10**6),
    "task.variant": Field(str, "le2015", "adding problem variant", tasks.Adding.VARIANTS),
    "task.input_size": Field(INT, 16, "input dimension (teacher_student, gaussian_blobs; file: x's last axis, "
                             "a value other than the default must match it)", minimum=1, maximum=10**6),
    "task.classes": Field(INT, 4, "classes (gaussian_blobs; file with loss cross_entropy: a value other than the "
                          "default is the class count, else the largest label + 1)", minimum=2, maximum=10**6),
    "task.path": Field(str, "", "the data file of task.name = file: .npz (arrays x and y), NAME_x.npy (y in NAME_y.npy "
                       "beside it) or .csv (vectors; the last column y, a header line optional); relative to the config "
                       "file's folder (from --set: the current folder); shown in the runs table as data_path, not in "
                       "the run id (the content hash task.sha256 is)", since=3),
    "task.loss": Field(str, "mse", "the file task's loss (cross_entropy: y integer labels (N,); mse, sum_squares: "
                       "y (N,) or (N, O); bce: y in [0, 1])", losses.NAMES, since=3),
    "task.sha256": Field(str, "", "the file task's SHA-256 of its bytes (an .npy pair: of the two files' digests); "
                         "set from task.path, not written by hand; in the run id (runs table: data_sha256)", since=3),
    # train
    "train.steps": Field(INT, 200, "optimizer steps", minimum=0, maximum=10**8, ensemble=True),
    "train.batch": Field(INT, 32, "examples per step", minimum=1, maximum=10**7),
    "train.optimizer": Field(str, "sgd", "optimizer", optim.NAMES),
    "train.lr": Field(NUM, 0.01, "learning rate", positive=True, ensemble=True),
    "train.momentum": Field(NUM, 0.9, "momentum (optimizer = momentum)", minimum=0, below=1, ensemble=True),
    "train.schedule": Field(str, "constant", "learning-rate schedule of step t: constant lr; step lr decay^floor(t / "
                            "decay_every); cosine min_lr + (lr - min_lr) (1 + cos(pi t / steps)) / 2; warmup lr min(1, "
                            "(t + 1) / warmup_steps)", schedule.NAMES, since=3, ensemble=True),
    "train.decay_every": Field(INT, 100, "steps between two decays of the lr (schedule = step)", minimum=1,
                               maximum=10**8, since=3, ensemble=True),
    "train.decay": Field(NUM, 0.1, "the factor the lr is multiplied by every decay_every steps (schedule = step)",
                         positive=True, maximum=1, since=3, ensemble=True),
    "train.warmup_steps": Field(INT, 100, "steps of the linear warmup to train.lr (schedule = warmup)", minimum=1,
                                maximum=10**8, since=3, ensemble=True),
    "train.min_lr": Field(NUM, 0.0, "the lr cosine decays towards, at most train.lr (schedule = cosine)", minimum=0,
                          since=3, ensemble=True),
    "train.clip_mode": Field(str, "none", "gradient clipping", clip.MODES, ensemble=True),
    "train.clip": Field(NUM, 1.0, "clipping threshold c (norm or value)", positive=True, ensemble=True),
    "train.log_every": Field(INT, 10, "log probes every k steps (step 0 and the last step always)", minimum=1, maximum=10**8, ensemble=True),
    "train.probe_size": Field(INT, 512, "held-out examples for evaluation and dead-unit probes", minimum=1, maximum=10**7, ensemble=True),
    "train.jacobian": Field(bool, False, "measure the step Jacobian norms (RNN, LSTM, GRU)"),
    "train.seed": Field(INT, 0, "seed of the weights and the batches", minimum=0, maximum=INT64_MAX, ensemble=True),
    "train.dtype": Field(str, "float64", "float32 or float64", ("float32", "float64")),
    # set from [[part]] names, not written by hand
    "experiment.part": Field(str, "", "the [[part]] of the experiment a run belongs to (empty without parts)", ensemble=True),
}
SECTIONS = ("model", "task", "train")  # the sections a config writes; experiment.part comes from [[part]]
SHORT = {key.split(".", 1)[1]: key for key in FIELDS}  # "depth" -> "model.depth"
assert len(SHORT) == len(FIELDS), "short field names must be unique"
SEQUENCE_TASKS = tuple(name for name, cls in tasks.TASKS.items() if cls.kind == "sequence")

# The fields that may differ between the members of one ensemble (gradlab.sweep.groups): those that
# change neither an array's shape nor the code a member runs inside the ensemble's one computation: a
# member's own draws (seed, init kind and scales: each member's model is built as it would be alone), a
# leaky ReLU's slope (one per member), its optimizer's per-member lr (and lr schedule) and momentum, its own clipping
# (clipped member by member), how long it trains and what it logs. Everything else (kind, sizes,
# activation, norm, residual, optimizer, batch, dtype, the task) is the same for every member, but that
# ReLU and leaky ReLU members share one (gradlab.sweep.groups.key).
ENSEMBLE_FIELDS = tuple(key for key, f in FIELDS.items() if f.ensemble)

MLP_ONLY = ("model.norm", "model.residual", "model.residual_scale")

# Fields that do not apply to a run are reset to their defaults, so that runs that differ only there
# are one run (one id): e.g. the LSTM's activation, an MLP's truncation, the threshold of clip_mode none.
IRRELEVANT = {
    "model.kind": {
        "mlp": ("model.recurrent_init", "model.spectral_radius", "model.forget_bias", "model.truncate", "model.layers"),
        "rnn": ("model.depth", "model.output_activation", "model.forget_bias", *MLP_ONLY),
        "lstm": ("model.depth", "model.output_activation", "model.activation", "model.slope", *MLP_ONLY),
        "gru": ("model.depth", "model.output_activation", "model.activation", "model.slope", "model.forget_bias", *MLP_ONLY),
    },
    "model.residual": {False: ("model.residual_scale",)},  # after model.kind, which resets residual first
    "model.activation": {a: ("model.slope",) for a in activations.NAMES if a != "leaky_relu"},
    "train.clip_mode": {"none": ("train.clip",)},
    "train.optimizer": {"sgd": ("train.momentum",), "adam": ("train.momentum",)},
    "task.name": {name: ("task.path", "task.loss", "task.sha256") for name in tasks.NAMES if name != "file"},
    "train.schedule": {
        "constant": ("train.decay_every", "train.decay", "train.warmup_steps", "train.min_lr"),
        "step": ("train.warmup_steps", "train.min_lr"),
        "cosine": ("train.decay_every", "train.decay", "train.warmup_steps"),
        "warmup": ("train.decay_every", "train.decay", "train.min_lr"),
    },
}

# Column names in the runs table (DESIGN.md's): the short name, except for these.
COLUMNS = {"model.kind": "model", "model.slope": "leaky_slope", "task.name": "task", "task.path": "data_path",
           "task.loss": "task_loss", "task.sha256": "data_sha256"}  # task_loss: the steps table has a loss column
SHORT.update({col: key for key, col in COLUMNS.items()})  # the column names work as short names too


def column(key: str) -> str:
    """The runs-table column of a config field."""
    return COLUMNS.get(key, key.split(".", 1)[1])


CONFIG_COLUMNS = frozenset(column(key) for key in FIELDS)  # the runs table's config columns; the rest are results


def defaults() -> dict[str, Any]:
    """Every field's default, by dotted key."""
    return {key: f.default for key, f in FIELDS.items()}


def hashed(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a resolved config its run id hashes: every field, except those added after the first
    release (Field.since > 1) while they are at their default, and UNHASHED (see RUN_ID_FORMAT)."""
    return {k: v for k, v in config.items()
            if k not in UNHASHED and not (k in FIELDS and FIELDS[k].since > 1 and v == FIELDS[k].default)}  # fmt: skip


def number(x: float) -> str:
    """A bound as written in messages and the reference: integers in full (9223372036854775807), floats by :g."""
    return str(x) if isinstance(x, int) else f"{x:g}"


def bounds(f: Field) -> list[str]:
    """The field's bounds as text, e.g. ["> 0"] or [">= 0", "< 1"]; empty for unbounded fields."""
    out = ["> 0"] if f.positive else []
    out += [f"{op} {number(x)}" for op, x in ((">=", f.minimum), ("<=", f.maximum), ("<", f.below)) if x is not None]
    return out


def reference() -> str:
    """The config reference as a Markdown table (the README carries it; a test keeps them equal)."""
    rows = ["| field | default | allowed | meaning |", "| --- | --- | --- | --- |"]
    for key, f in FIELDS.items():
        if f.choices:
            allowed = ", ".join(f.choices)
        elif f.type is bool:
            allowed = "true, false"
        elif f.type is str:
            allowed = "string"
        else:
            allowed = " ".join(["integer" if f.type is int else "number", ", ".join(bounds(f))]).strip()
        if f.optional:
            allowed += ', or "none"'
        rows.append(f"| `{key}` | {_default_text(f)} | {allowed} | {f.help} |")
    return "\n".join(rows)


def _default_text(f: Field) -> str:
    """The reference's default cell: "none", `false`, `""` or the value in backticks."""
    if f.default is None:
        return '"none"'
    if f.type is bool:
        return f"`{str(f.default).lower()}`"
    return '`""`' if f.default == "" else f"`{f.default}`"
