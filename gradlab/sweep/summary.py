"""Text summaries of a results folder, for `gradlab run` and `gradlab show`."""

from __future__ import annotations

import pandas as pd

from gradlab.sweep.config import Experiment
from gradlab.schema import FIELDS, column


EXACT_COUNT_BELOW = 10_000  # grids up to this size are expanded to count merged runs exactly (~0.2 s)


def grid_preview(experiment: Experiment, limit: int = 10) -> str:
    """The grid size and its first runs, showing the fields that vary; never expands a large grid."""
    upper = experiment.count()
    first = experiment.preview(limit)
    if not first:
        return "0 runs"
    total = len(experiment.grid()) if upper <= EXACT_COUNT_BELOW else None
    swept = {key for part in experiment.parts or [experiment] for key in [*part.axes, *(k for c in part.cases for k in c)]}
    varying = [k for k in FIELDS if k in swept or len({repr(c[k]) for c in first}) > 1]
    frame = pd.DataFrame([{column(k): c[k] for k in varying} for c in first])
    head = f"{total} runs" if total is not None else f"{upper:,} runs at most (runs that differ only in fields that do not apply count once)"
    head += f" (first {limit} shown)" if (total or upper) > limit else ""
    return head + ("\n" + frame.to_string(index=False) if varying else "")


def counts(runs: pd.DataFrame) -> str:
    """Runs by status (and by diagnosis when diagnosed)."""
    lines = ["status:    " + ", ".join(f"{n} {s}" for s, n in runs["status"].value_counts().items())]
    if "diagnosis" in runs and runs["diagnosis"].astype(bool).any():
        lines.append("diagnosis: " + ", ".join(f"{n} {d}" for d, n in runs["diagnosis"].value_counts().items() if d))
    return "\n".join(lines)


def show(tables: dict[str, pd.DataFrame], worst: int = 5) -> str:
    """Runs by status and diagnosis, failures, and the runs with the most extreme gradient ratios."""
    runs = tables["runs"]
    parts = [counts(runs)]
    failed = runs[runs["status"] == "failed"]
    if len(failed):
        parts.append("failed runs:\n" + "\n".join(f"  {r.run_id}: {r.error}" for r in failed.itertuples()))
    if "diagnosis_text" in runs:
        for label in ("vanishing", "exploding", "dying", "diverged"):
            rows = runs[runs["diagnosis"] == label].head(worst)
            if len(rows):
                parts.append(f"{label}:\n" + "\n".join(f"  {r.run_id}: {r.diagnosis_text}" for r in rows.itertuples()))
    return "\n\n".join(parts)
