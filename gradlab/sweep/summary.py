"""Text summaries of a results folder, for `gradlab run` and `gradlab show`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gradlab.sweep.config import Experiment
from gradlab.schema import FIELDS, column
from gradlab.sweep.terminal import MIN_WIDTH, Col, table, wrap, width as terminal_width


EXACT_COUNT_BELOW = 10_000  # grids up to this size are expanded to count merged runs exactly (~0.2 s)


def grid_preview(experiment: Experiment, limit: int = 10, width: int = MIN_WIDTH, title: str = "") -> str:
    """"TITLE: " and the grid size, then its first runs as a table of the fields that vary, one row per run
    numbered from 1, at most `width` columns wide (in blocks of columns, each repeating the run's number, when
    they do not fit side by side); never expands a large grid."""
    upper = experiment.count()
    first = experiment.preview(limit)
    title = f"{title}: " if title else ""
    if not first:
        return title + "0 runs"
    total = len(experiment.grid()) if upper <= EXACT_COUNT_BELOW else None
    swept = {key for part in experiment.parts or [experiment] for key in [*part.axes, *(k for c in part.cases for k in c)]}
    varying = [k for k in FIELDS if k in swept or len({repr(c[k]) for c in first}) > 1]
    head = f"{total} runs" if total is not None else f"{upper:,} runs at most (runs that differ only in fields that do not apply count once)"
    head = wrap(title + head + (f" (first {limit} shown)" if (total or upper) > limit else ""), width)
    if not varying:
        return head
    cols = [Col("run", number=True)] + [Col(column(k), number=_is_number(first[0][k])) for k in varying]
    rows = [[n, *(str(c[k]) for k in varying)] for n, c in enumerate(first, 1)]  # str: a float's every digit
    return head + "\n" + table(cols, rows, width, key=1)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def counts(runs: pd.DataFrame, width: int = MIN_WIDTH) -> str:
    """Runs by status (and by diagnosis when diagnosed), wrapped at `width` columns."""
    lines = ["status:    " + ", ".join(f"{n} {s}" for s, n in runs["status"].value_counts().items())]
    if "diagnosis" in runs and runs["diagnosis"].astype(bool).any():
        lines.append("diagnosis: " + ", ".join(f"{n} {d}" for d, n in runs["diagnosis"].value_counts().items() if d))
    return "\n".join(wrap(line, width, " " * 11) for line in lines)


# How bad a run of each label is (larger is worse), from the runs table's diagnosis numbers.
SEVERITY = {
    "vanishing": ("decades lost", lambda r: -np.fmin(r["delta_log10_change"], r["dh_log10_change"])),
    "exploding": ("decades gained", lambda r: np.fmax(r["delta_log10_change"], r["dh_log10_change"])),
    "dying": ("dead fraction", lambda r: r["dead_frac"]),
    "diverged": ("earliest divergence", lambda r: -r["diverged_step"].astype(float)),
    "stalled": ("final loss / baseline", lambda r: r["final_loss"] / r["baseline_loss"]),
}


def show(tables: dict[str, pd.DataFrame], worst: int = 5, width: int | None = None) -> str:
    """Runs by status and diagnosis, what the sweep varied, failures, and per pathology the worst runs
    (by SEVERITY) with the config fields in which they differ, wrapped to `width` (default: the terminal's,
    80 columns at least; 80 when stdout is not a terminal)."""
    width = width or terminal_width()
    runs = tables["runs"]
    swept = varying(runs)
    parts = [counts(runs, width)]
    if swept:
        parts[0] += "\n" + wrap("swept:     " + ", ".join(swept), width, "           ")
    failed = runs[runs["status"] == "failed"]
    if len(failed):
        parts.append("failed runs:\n" + "\n".join(wrap(f"  {r.run_id}: {r.error}", width, "    ") for r in failed.itertuples()))
    if "diagnosis" in runs:
        fields = _fields_of(runs)
        for label in [lab for lab in runs["diagnosis"].dropna().unique() if lab and lab != "healthy"]:
            parts.append(_worst(label, runs[runs["diagnosis"] == label], worst, fields, width))
    return "\n\n".join(parts)


def varying(runs: pd.DataFrame) -> list[str]:
    """The config columns whose values differ among these runs, in the schema's order."""
    ordered = [column(key) for key in FIELDS]
    return [c for c in ordered if c in runs and runs[c].astype(str).nunique() > 1]


def _fields_of(runs: pd.DataFrame) -> dict[str, list[str]]:
    """Per part (one key "" without parts), the fields a run is told apart by: its part, and what varies in it."""
    if "part" not in runs or runs["part"].astype(str).nunique() <= 1:
        return {"": [c for c in varying(runs) if c != "part"]}
    return {part: ["part", *(c for c in varying(group) if c != "part")] for part, group in runs.groupby("part")}


def _worst(label: str, group: pd.DataFrame, worst: int, fields: dict[str, list[str]], width: int) -> str:
    """A label's heading and its `worst` worst runs: run id, differing fields, the diagnosis sentence."""
    measure = SEVERITY.get(label)
    head = f"{label}: {len(group)} run{'s' if len(group) > 1 else ''}"
    if measure is not None and all(c in group for c in _columns(label)):
        name, key = measure
        group = group.assign(_key=key(group)).sort_values("_key", ascending=False, na_position="last", kind="stable")
        head += f"; the {min(worst, len(group))} worst by {name}" if len(group) > worst else f", worst first by {name}"
    lines = [head]
    for r in group.head(worst).itertuples():
        config = " ".join(f"{f}={_value(getattr(r, f))}" for f in fields[getattr(r, "part", "") if len(fields) > 1 else ""])
        lines.append(wrap(f"  {r.run_id}  {config}", width, "    "))
        lines.append(wrap(f"    {r.diagnosis_text}", width, "    "))
    return "\n".join(lines)


def _columns(label: str) -> tuple[str, ...]:
    return {"vanishing": ("delta_log10_change", "dh_log10_change"), "exploding": ("delta_log10_change", "dh_log10_change"),
            "dying": ("dead_frac",), "diverged": ("diverged_step",), "stalled": ("final_loss", "baseline_loss")}.get(label, ())  # fmt: skip


def _value(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
