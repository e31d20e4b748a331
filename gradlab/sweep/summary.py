"""Text summaries of a results folder, for `gradlab run` and `gradlab show`."""

from __future__ import annotations

import pandas as pd

from gradlab.sweep.schema import FIELDS, column


def grid_preview(grid: list[dict], limit: int = 10) -> str:
    """The grid size and its first runs, showing only the fields that vary."""
    if not grid:
        return "0 runs"
    varying = [k for k in FIELDS if len({repr(c[k]) for c in grid}) > 1]
    frame = pd.DataFrame([{column(k): c[k] for k in varying} for c in grid[:limit]])
    head = f"{len(grid)} runs" + (f" (first {limit} shown)" if len(grid) > limit else "")
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
