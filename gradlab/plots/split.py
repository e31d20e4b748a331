"""What a figure must not pool: the one mechanism every figure uses to keep apart runs that differ in a
field it does not draw, and to say so.

A figure names the fields it draws (`drawn`: its axes, its lines, its panels). Among the runs it draws,
every other field whose values differ between runs that would share one line (runs with equal values in
every drawn field) is split off (plan()):

  facets  rows or panels of the same figure, each labelled "field=value", when the figure has room for
          them (at most `max_facets` combinations), else
  files   separate figure files, <figure>__<field>=<value>[__<field>=<value> ...].png (file_name()),
          each titled with its "field=value".

Fields that go together (a [[part]] per init: `part` and `init` change at once) form one split, labelled
by both. Seeds are the one exception: runs that differ only in `seed` are one line, the median over the
seeds with a band (band(): the interquartile range for fewer than BAND_95_SEEDS seeds, the central 95%
from then on), labelled as such. The fields are the runs table's config columns (gradlab.schema's),
`part`, and `folder` (the results folder a run came from, when combine() put several together). A field
that does not apply to a run (gradlab.schema.IRRELEVANT: an MLP's truncation, the threshold without
clipping, the LSTM's activation) is n/a for that run, never a difference.

draw_files() is the driver a figure calls: it plans, draws one figure per file with the figure's own
function, and writes each one's caption from the data (what the runs share, what varies and how it is
drawn, the figure's measured and predicted numbers, and what was left out and why).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gradlab.schema import CONFIG_COLUMNS, IRRELEVANT, column

FOLDER = "folder"  # the results folder of a run when several are drawn together (combine())
PART = "part"
OTHER = "other_modules"  # a torch model's modules between its layers (a Dropout): no config field, but what the net is
SEED = "seed"
NA = None  # the value of a field that does not apply to a run
BAND_95_SEEDS = 20  # from this many seeds on, the band is the central 95% of the seeds, else their IQR

# The order fields are named in (captions, file names, facet labels): where the run came from, then the
# model, the task and the training, then any other config field in the schema's order.
FIELD_ORDER = (
    FOLDER, PART, "model", "layers", "depth", "width", "activation", "leaky_slope", "norm", "residual",
    "residual_scale", OTHER, "output_activation", "init", "recurrent_init", "gain", "sigma_w2", "sigma_b2",
    "spectral_radius", "forget_bias", "truncate", "task", "variant", "T", "input_size", "classes", "optimizer",
    "lr", "momentum", "batch", "clip_mode", "clip", "steps", "dtype", "log_every", "probe_size", "jacobian",
    SEED,
)  # fmt: skip
BOOKKEEPING = ("log_every", "probe_size", "jacobian")  # how a run was measured, not what it is


# ---- fields and their values ------------------------------------------------------------------


def fields(runs: pd.DataFrame) -> list[str]:
    """The runs table's fields a figure may pool over, in FIELD_ORDER (config columns, part, folder, a torch
    model's other_modules)."""
    present = [c for c in runs.columns if c in CONFIG_COLUMNS or c in (PART, FOLDER, OTHER)]
    rank = {f: i for i, f in enumerate(FIELD_ORDER)}
    return sorted(present, key=lambda f: (rank.get(f, len(rank)), f))


def canon(value: Any) -> Any:
    """A value as fields are compared: NaN and None -> NA, numpy scalars -> Python, integral floats -> int
    (a column that became float when tables were concatenated still says depth 2, not 2.0)."""
    if value is None or value is pd.NA:
        return NA
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return NA
        if value.is_integer() and abs(value) < 2**53:
            return int(value)
    return value


def applicable(runs: pd.DataFrame, names: Iterable[str] | None = None) -> pd.DataFrame:
    """runs' fields (all, or `names`) as canonical values, NA where the field does not apply to the run."""
    names = [f for f in (fields(runs) if names is None else names) if f in runs.columns]
    cols = {f: np.array([canon(v) for v in runs[f].tolist()], dtype=object) for f in names}
    for f in (PART, FOLDER):  # an empty part is no part
        if f in cols:
            cols[f][cols[f] == ""] = NA
    if OTHER in cols:  # no other module is a value of its own ("none"), not a field that does not apply
        cols[OTHER][np.array([v is NA or v == "" for v in cols[OTHER]], dtype=bool)] = "none"
    for key, by_value in IRRELEVANT.items():
        col = column(key)
        if col not in runs.columns:
            continue
        controller = runs[col].to_numpy(dtype=object)
        for value, keys in by_value.items():
            targets = [column(k) for k in keys if column(k) in cols]
            if not targets:
                continue
            mask = controller == value
            if mask.any():
                for c in targets:
                    cols[c][mask] = NA
    return pd.DataFrame(cols, index=runs.index, dtype=object) if names else pd.DataFrame(index=runs.index)


def sort_key(value: Any) -> tuple:
    """Numbers in order, then strings, then booleans, NA last."""
    if value is NA:
        return (3, 0, "")
    if isinstance(value, bool):
        return (2, int(value), "")
    if isinstance(value, (int, float)):
        return (0, value, "")
    return (1, 0, str(value))


def fmt(value: Any) -> str:
    """A value as figures and captions print it: %g for floats, "n/a" for NA, lower-case booleans."""
    value = canon(value)
    if value is NA:
        return "n/a"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def values_of(runs: pd.DataFrame, name: str) -> list:
    """The distinct applicable values of a field, sorted (NA last)."""
    if name not in runs.columns:
        return []
    found = set(applicable(runs, [name])[name])
    if name == "activation":  # the palette's order, as every figure draws them
        from gradlab.plots.style import ACTIVATION_COLORS

        known = list(ACTIVATION_COLORS)
        return sorted(found, key=lambda v: (v is NA, known.index(v) if v in known else len(known), str(v)))
    return sorted(found, key=sort_key)


def _keys(table: pd.DataFrame, names: Sequence[str]) -> list[tuple]:
    return list(zip(*(table[f].tolist() for f in names))) if names else [()] * len(table)


def differing(runs: pd.DataFrame, drawn: Iterable[str]) -> list[str]:
    """The fields (not drawn, not seed) whose values differ between runs that agree on every drawn field:
    the fields a figure drawing only `drawn` would pool over. A field that does not apply to some of them
    (NA) differs only where two of its values do (what makes it not apply differs too)."""
    table = applicable(runs)
    drawn = [f for f in drawn if f in table.columns]
    others = [f for f in table.columns if f not in drawn and f != SEED]
    buckets: dict[tuple, list[int]] = {}
    for i, key in enumerate(_keys(table, drawn)):
        buckets.setdefault(key, []).append(i)
    out = []
    for f in others:
        col = table[f].tolist()
        if any(len({col[i] for i in rows} - {NA}) > 1 for rows in buckets.values()):
            out.append(f)
    return out


def varying(runs: pd.DataFrame) -> list[str]:
    """Every field with more than one value among the runs (NA not counted), seed included."""
    table = applicable(runs)
    return [f for f in table.columns if len(set(table[f]) - {NA}) > 1]


# ---- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """How a figure separates its runs: the fields it draws itself, those split into facets and into
    files, the fields that differ only together with drawn ones (drawn apart, named in the caption), and
    the most seeds one line pools (1: none)."""

    drawn: tuple[str, ...]
    facets: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    along: tuple[str, ...] = ()
    seeds: int = 1


def _combinations(runs: pd.DataFrame, names: Sequence[str]) -> int:
    return len(set(_keys(applicable(runs, names), names))) if names else 1


def plan(
    runs: pd.DataFrame,
    drawn: Iterable[str],
    max_facets: int = 0,
    by: str | None = None,
    files_first: Iterable[str] = (),
) -> Plan:
    """The plan for drawing `runs` with `drawn` fields: every other field that differs among runs that
    would share a line becomes a facet (while there are at most max_facets combinations; `by` first, even
    the seed or a field that changes together with a drawn one) or a file (files_first fields always, then those that leave the fewest facet
    combinations behind)."""
    drawn = tuple(f for f in drawn if f in runs.columns)
    extras = differing(runs, drawn)
    if by is not None and by not in drawn and by not in extras and by in varying(runs):
        extras.append(by)  # asked for: split off even the seeds, or a field that changes with a drawn one
    files = [f for f in files_first if f in extras and f != by]
    rest = [f for f in extras if f not in files]
    if by in rest:  # the field asked for is faceted first, the others fill the room it leaves
        rest.remove(by)
        rest.insert(0, by)
    while rest and (max_facets <= 0 or _combinations(runs, rest) > max_facets):
        if max_facets <= 0:
            files += rest
            rest = []
            break
        candidates = [f for f in rest if f != by] or rest
        def cost(f: str) -> tuple:  # leaving room for the rest first, then the fewest files
            over = _combinations(runs, [g for g in rest if g != f]) > max_facets
            return over, len(values_of(runs, f)), -FIELD_ORDER.index(f) if f in FIELD_ORDER else 0

        best = min(candidates, key=cost)
        rest.remove(best)
        files.append(best)
    split = set(drawn) | set(files) | set(rest) | {SEED}
    along = tuple(f for f in varying(runs) if f not in split)
    order = {f: i for i, f in enumerate(fields(runs))}
    files.sort(key=lambda f: order.get(f, 0))
    seeds = 1
    if SEED in runs.columns and len(runs):
        key = [*drawn, *files, *rest]
        table = applicable(runs, list(dict.fromkeys([*key, SEED])))
        if SEED in key:  # --by seed: each seed apart
            seeds = 1
        else:
            seeds = int(table.groupby(key, dropna=False)[SEED].nunique().max()) if key else int(table[SEED].nunique())
    return Plan(drawn, tuple(rest), tuple(files), along, max(seeds, 1))


# ---- groups of runs ---------------------------------------------------------------------------


@dataclass
class Group:
    """The runs with given values of some fields (a file's, a facet's or a line's)."""

    values: dict[str, Any]
    runs: pd.DataFrame

    def _shown(self) -> dict[str, Any]:
        """The values to name: those that apply (all of them, as n/a, when none does)."""
        shown = {k: v for k, v in self.values.items() if v is not NA}
        return shown or dict(self.values)

    @property
    def label(self) -> str:
        """'init=he_normal, part=he' (fields that do not apply left out); '' for no fields."""
        return ", ".join(f"{k}={fmt(v)}" for k, v in self._shown().items())

    @property
    def suffix(self) -> str:
        """The file-name part: 'init=he_normal__part=he' (safe characters only)."""
        return "__".join(f"{k}={_safe(fmt(v))}" for k, v in self._shown().items())

    @property
    def ids(self) -> list[str]:
        return list(self.runs["run_id"])


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-") or "x"


def groups(runs: pd.DataFrame, names: Sequence[str]) -> list[Group]:
    """The runs split by the values of `names`, in sorted order; one group of all runs for no names."""
    names = [f for f in names if f in runs.columns]
    if not names:
        return [Group({}, runs)]
    table = applicable(runs, names)
    keys = _keys(table, names)
    rank = [{v: i for i, v in enumerate(values_of(runs, f))} for f in names]  # each field's own order
    order = sorted(set(keys), key=lambda k: tuple(r[v] for r, v in zip(rank, k)))
    out = []
    for key in order:
        mask = [k == key for k in keys]
        out.append(Group(dict(zip(names, key)), runs[np.array(mask, dtype=bool)]))
    return out


def file_name(figure: str, suffix: str) -> str:
    """The stem of a figure's file: '<figure>' or '<figure>__<field>=<value>[__...]'."""
    return f"{figure}__{suffix}" if suffix else figure


def figure_of(stem: str) -> str:
    """The figure a file stem belongs to (file_name's inverse)."""
    return stem.split("__", 1)[0]


def subset(tables: dict[str, pd.DataFrame], runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every table restricted to the run_ids of `runs` (the runs table becomes `runs`)."""
    ids = set(runs["run_id"])
    out = {}
    for name, df in tables.items():
        if name == "runs":
            out[name] = runs
        elif isinstance(df, pd.DataFrame) and "run_id" in df.columns:
            out[name] = df[df["run_id"].isin(ids)]
        else:
            out[name] = df
    return out


# ---- seeds: a median and a band ---------------------------------------------------------------


def band_quantiles(n: int) -> tuple[float, float]:
    """The band's quantiles over n seeds: (0.25, 0.75), or (0.025, 0.975) from BAND_95_SEEDS seeds on."""
    return (0.025, 0.975) if n >= BAND_95_SEEDS else (0.25, 0.75)


def band_name(n: int) -> str:
    """'interquartile range' or 'central 95%' (the band over n seeds)."""
    return "central 95%" if n >= BAND_95_SEEDS else "interquartile range"


def band(values) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(median, lo, hi) over the runs (rows) of a runs x points array, NaN ignored (inf counted), with
    numpy's linear quantiles at band_quantiles(number of runs)."""
    x = np.atleast_2d(np.asarray(values, dtype=np.float64))
    if x.shape[0] == 1:
        return x[0].copy(), x[0].copy(), x[0].copy()
    qs = (0.5, *band_quantiles(x.shape[0]))
    with np.errstate(all="ignore"), _quiet():
        if np.isnan(x).any():
            med, lo, hi = np.nanquantile(x, qs, axis=0)
        else:
            med, lo, hi = np.quantile(x, qs, axis=0)
    return med, lo, hi


class _quiet:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN, as they should

    def __exit__(self, *exc):
        return self._w.__exit__(*exc)


def seeds_text(runs: pd.DataFrame) -> str:
    """'seeds 0-4' / 'seeds 0, 2, 5' / 'seed 0'."""
    seeds = values_of(runs, SEED)
    if len(seeds) == 1:
        return f"seed {fmt(seeds[0])}"
    ints = all(isinstance(s, int) for s in seeds)
    if ints and seeds == list(range(seeds[0], seeds[0] + len(seeds))) and len(seeds) > 2:
        return f"seeds {seeds[0]}-{seeds[-1]}"
    return "seeds " + ", ".join(fmt(s) for s in seeds)


# ---- words: what the runs share and what varies -----------------------------------------------

_MATH = {  # (caption text, figure mathtext)
    "sigma_w2": ("σ_w²", r"$\sigma_w^2$"),
    "sigma_b2": ("σ_b²", r"$\sigma_b^2$"),
    "recurrent_init": ("W_hh init", r"$W_{hh}$ init"),
    "T": ("T", r"$T$"),
}
_DEFAULTS: dict[str, Any] | None = None


def _default(name: str) -> Any:
    global _DEFAULTS
    if _DEFAULTS is None:
        from gradlab import schema

        _DEFAULTS = {column(k): canon(v) for k, v in schema.defaults().items()}
    return _DEFAULTS.get(name, NA)


def name_of(name: str, math: bool = False) -> str:
    """A field's name as a caption (math=False) or a figure (mathtext) writes it."""
    pair = _MATH.get(name)
    return pair[int(math)] if pair else name


# each lr schedule's own parameters (runs-table names), from the schema's rule of which apply (constant: none)
SCHEDULE_FIELDS = {name: tuple(column(f) for f in IRRELEVANT["train.schedule"]["constant"] if f not in off)
                   for name, off in IRRELEVANT["train.schedule"].items()}  # fmt: skip


def _schedules(table: pd.DataFrame, one: dict[str, Any]) -> list[str]:
    """The lr schedules in words, each with its own parameters where its runs share them: 'cosine schedule
    (min_lr 0.0001)' when every run has it, 'cosine (min_lr 0.0001), warmup (warmup_steps 50)' when the
    schedules differ (those without parameters are named by the panels); nothing for constant alone."""
    if "schedule" not in table.columns or one.get("schedule") == "constant":
        return []
    texts = []
    for name in sorted(set(table["schedule"]) - {NA}):
        rows = table[table["schedule"] == name]
        values = {f: set(rows[f]) - {NA} for f in SCHEDULE_FIELDS.get(name, ()) if f in rows}
        own = ", ".join(f"{f} {fmt(next(iter(v)))}" for f, v in values.items() if len(v) == 1)
        label = f"{name} schedule" if "schedule" in one else name
        if own or "schedule" in one:
            texts.append(label + (f" ({own})" if own else ""))
    return texts


def shared(runs: pd.DataFrame, skip: Iterable[str] = (), math: bool = False, brief: bool = False) -> str:
    """The fields every run shares, in words: 'MLP, depth 50, width 32, relu, init he_normal,
    teacher_student, sgd lr 0.01, no clipping, 200 steps'. The main fields always; any other config field
    when its shared value is not the default; brief=True (titles) leaves out batch, the task's sizes and
    the seed. math=True writes sigma_w^2 and the like in mathtext."""
    skip = set(skip)
    table = applicable(runs)
    one: dict[str, Any] = {}
    for f in table.columns:
        vals = set(table[f]) - {NA}
        if len(vals) == 1 and f not in skip:
            one[f] = vals.pop()
    parts: list[str] = []
    used: set[str] = {FOLDER, PART}

    def take(*names):
        used.update(names)

    model = one.get("model")
    recurrent = "model" in runs and len(runs) and bool(runs["model"].isin(["rnn", "lstm", "gru"]).all())
    if FOLDER in one:
        parts.append(f"folder {one[FOLDER]}")
    if model is not None:
        parts.append(str(model).upper())
        take("model")
    if "layers" in one and recurrent and one["layers"] != 1:
        parts.append(f"{one['layers']} layers")
    take("layers")
    if "depth" in one and not recurrent:
        parts.append(f"depth {fmt(one['depth'])}")
    take("depth")
    if "width" in one:
        parts.append(("H " if recurrent else "width ") + fmt(one["width"]))
    take("width")
    if "activation" in one:
        text = str(one["activation"])
        if one["activation"] == "leaky_relu" and "leaky_slope" in one:
            text += f" (slope {fmt(one['leaky_slope'])})"
        parts.append(text)
    take("activation", "leaky_slope")
    if "init" in one:
        text = f"init {one['init']}"
        rec = one.get("recurrent_init")
        if rec is not NA and rec is not None and rec != one["init"]:
            text += f", {name_of('recurrent_init', math)} {rec}"
        inits = {one["init"], rec}
        if "mean_field" in inits and "sigma_w2" in one:
            text += f" ({name_of('sigma_w2', math)} = {fmt(one['sigma_w2'])}"
            sb2 = one.get("sigma_b2", 0)
            text += f", {name_of('sigma_b2', math)} = {fmt(sb2)})" if sb2 not in (0, NA) else ")"
        parts.append(text)
        take("init", "recurrent_init", "sigma_w2", "sigma_b2")
    elif "recurrent_init" in one:
        parts.append(f"{name_of('recurrent_init', math)} {one['recurrent_init']}")
        take("recurrent_init")
    if not any(str(one.get(k)) == "mean_field" for k in ("init", "recurrent_init")):
        take("sigma_w2", "sigma_b2")  # they mean nothing without the mean-field init
    if one.get("task") == "file":  # the file's name, its loss, its content hash (as git abbreviates one)
        text = "file" + (f" {Path(str(one['data_path'])).name}" if "data_path" in one else "")
        text += f" ({one['task_loss']})" if "task_loss" in one else ""
        text += f", sha256 {str(one['data_sha256'])[:12]}" if "data_sha256" in one and not brief else ""
        parts.append(text)
        take("task", "data_path", "data_sha256", "task_loss")
    if "task" in one and one["task"] != "file":
        text = str(one["task"])
        if "T" in one and runs.get("model", pd.Series(dtype=object)).isin(["rnn", "lstm", "gru"]).all():
            text += f" {name_of('T', math)} = {fmt(one['T'])}"
        parts.append(text)
    take("task", "T")
    if "optimizer" in one:
        text = str(one["optimizer"])
        if "lr" in one:
            text += f" lr {fmt(one['lr'])}"
        if one["optimizer"] == "momentum" and "momentum" in one:
            text += f" (momentum {fmt(one['momentum'])})"
        parts.append(text)
    take("optimizer", "lr", "momentum")
    parts += _schedules(table, one)
    take("schedule", *(f for fs in SCHEDULE_FIELDS.values() for f in fs))
    if "clip_mode" in one:
        if one["clip_mode"] == "none":
            parts.append("no clipping")
        elif "clip" in one:
            parts.append(f"{one['clip_mode']} clip {fmt(one['clip'])}")
    take("clip_mode", "clip")
    if "steps" in one:
        parts.append(f"{fmt(one['steps'])} steps")
    take("steps")
    if not brief and "batch" in one:
        parts.append(f"batch {fmt(one['batch'])}")
    take("batch", SEED, *BOOKKEEPING)
    if brief:
        take("input_size", "classes", "variant")
    for f in fields(runs):  # anything else the runs share that is not the default
        if f in used or f not in one:
            continue
        if one[f] != _default(f):
            parts.append(f"{name_of(f, math)} {fmt(one[f])}")
    if not brief and SEED in one:
        parts.append(f"seed {fmt(one[SEED])}")
    return ", ".join(parts)


def values_text(runs: pd.DataFrame, name: str, limit: int = 8) -> str:
    """'2, 4, 8, 16, 32' (the first and last few when there are more than `limit`)."""
    vals = [v for v in values_of(runs, name) if v is not NA]
    texts = [fmt(v) for v in vals]
    if len(texts) > limit:
        texts = texts[: limit - 2] + ["...", texts[-1]]
    return ", ".join(texts)


def varies(runs: pd.DataFrame, p: Plan, roles: dict[str, str], facet_role: str = "facets") -> str:
    """'depth 2, 4, 8 (columns); activation relu, tanh (lines, colour); init he_normal, xavier_normal (a
    file each); seed 0-2 (one line per setting: the median, band the interquartile range)'."""
    items = []
    table_fields = set(varying(runs))
    for f in p.drawn:
        if f in table_fields and f in roles and len([v for v in values_of(runs, f) if v is not NA]) > 1:
            items.append(f"{f} {values_text(runs, f)} ({roles[f]})")
    for f in p.facets:
        items.append(f"{f} {values_text(runs, f)} ({facet_role}, one per value)")
    for f in p.files:
        items.append(f"{f} {values_text(runs, f)} (a figure file per value)")
    if p.seeds > 1:
        items.append(f"{seeds_text(runs)} (up to {p.seeds} per setting: drawn as their median, the band their "
                     f"{band_name(p.seeds)})")  # fmt: skip
    elif SEED in table_fields and SEED not in (*p.drawn, *p.facets, *p.files):
        items.append(f"{seeds_text(runs)} (one per setting, drawn apart)")
    for f in p.along:
        items.append(f"{f} {values_text(runs, f)} (changing together with the fields drawn)")
    return "; ".join(items)


# ---- the driver -------------------------------------------------------------------------------


@dataclass
class Context:
    """What a figure's draw function gets for one file: its tables and runs, the facets (one Group per
    facet, a single unlabelled one without facets), the plan, the file's group (its label names the
    file's values), and the whole figure's runs (for the caption's "of N")."""

    tables: dict[str, pd.DataFrame]
    runs: pd.DataFrame
    facets: list[Group]
    plan: Plan
    file: Group
    all_runs: pd.DataFrame
    notes: list[str] = field(default_factory=list)  # what this file leaves out (the figure adds to it)

    def title(self, head: str, skip: Iterable[str] = ()) -> str:
        """'head: shared config' with the file's values first when the figure is split into files."""
        moving = set(varying(self.runs))
        skip = [f for f in (*skip, *self.plan.drawn, *self.plan.facets) if f in moving] + list(self.plan.files)
        config = shared(self.runs, skip=skip, math=True, brief=True)
        if self.file.label:
            config = f"{self.file.label} (a file per {', '.join(self.plan.files)}); " + config
        return f"{head}: {config}" if config else head


def draw_files(
    tables: dict[str, pd.DataFrame],
    runs: pd.DataFrame,
    drawn: Iterable[str],
    draw_one: Callable[[Context], tuple[Any, str]],
    *,
    guide: str,
    roles: dict[str, str],
    max_facets: int = 0,
    facet_role: str = "rows of panels",
    by: str | None = None,
    files_first: Iterable[str] = (),
    notes: Iterable[str] = (),
    what: str = "runs",
):
    """Plan `runs` (the figure's runs, already selected), and draw one figure per file with
    draw_one(context) -> (Figure, the figure's own caption text: its measured and predicted numbers).
    Returns [style.Drawn], each with its caption: the guide (how to read the figure), the runs it draws,
    what they share, what varies and how it is drawn, the figure's text and what was left out."""
    from gradlab.plots.style import Drawn

    notes = list(notes)
    p = plan(runs, drawn, max_facets=max_facets, by=by, files_first=files_first)
    out = []
    for file in groups(runs, p.files):
        sub = subset(tables, file.runs)
        ctx = Context(sub, file.runs, groups(file.runs, p.facets), p, file, runs)
        fig, own = draw_one(ctx)
        left = notes + ctx.notes
        n, total = len(file.runs), len(runs)
        head = f"{n} {what}" + (f" (this file: {file.label}; {total} in all)" if file.label else "")
        text = [guide, f"Drawn: {head}."]
        common = shared(file.runs, skip=[f for f in p.drawn if f in varying(file.runs)])
        if common:
            text.append(f"Shared by all: {common}.")
        change = varies(file.runs, Plan(p.drawn, p.facets, (), p.along, p.seeds), roles, facet_role)
        if p.files:
            by_file = "; ".join(f"{f} {values_text(runs, f)} (a figure file per value)" for f in p.files)
            change = "; ".join(x for x in (change, by_file) if x)
        if change:
            text.append(f"Varies: {change}.")
        if own:
            text.append(own)
        if left:
            text.append("Left out: " + "; ".join(left) + ".")
        out.append(Drawn(fig, " ".join(t.strip() for t in text if t.strip()), tuple(left), file.suffix))
    return out


# ---- several results folders ------------------------------------------------------------------


def combine(folders: dict[str, dict[str, pd.DataFrame]]) -> dict[str, pd.DataFrame]:
    """The tables of several results folders as one set: each runs table gains a `folder` column (the
    dict's key, e.g. the folder's name), and when there is more than one folder every table's run_id
    becomes '<folder>/<run_id>' (the same config run in two folders has the same id)."""
    several = len(folders) > 1
    names = sorted({name for tables in folders.values() for name in tables})
    out: dict[str, list[pd.DataFrame]] = {name: [] for name in names}
    for folder, tables in folders.items():
        for name in names:
            df = tables.get(name)
            if df is None:
                continue
            df = df.copy()
            if several and "run_id" in df.columns:
                df["run_id"] = f"{folder}/" + df["run_id"].astype(str)
            if name == "runs":
                df[FOLDER] = str(folder)
            out[name].append(df)
    return {name: (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()) for name, frames in out.items()}


def unique_ids(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The tables with unique run ids: as they are when the runs table's run_id is unique; when it repeats
    across folders and every table says its folder (a `folder` column), the ids become '<folder>/<run_id>'
    everywhere; else ValueError (the rows could not be told apart)."""
    runs = tables.get("runs")
    if runs is None or "run_id" not in runs or not runs["run_id"].duplicated().any():
        return tables
    if FOLDER in runs and all(FOLDER in df.columns for n, df in tables.items() if "run_id" in df.columns):
        out = {}
        for n, df in tables.items():
            if "run_id" in df.columns:
                df = df.assign(run_id=df[FOLDER].astype(str) + "/" + df["run_id"].astype(str))
            out[n] = df
        if not out["runs"]["run_id"].duplicated().any():
            return out
    dup = runs.loc[runs["run_id"].duplicated(), "run_id"].iloc[0]
    raise ValueError(f"run_id {dup!r} appears more than once in the runs table: tables of several folders must be "
                     "put together with gradlab.plots.combine (which names each run's folder)")  # fmt: skip
