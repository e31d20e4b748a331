"""Figures: each a function from the tidy tables of a results folder to one or more matplotlib Figures.

A figure lives in gradlab/plots/<name>.py and defines
    draw(tables, by=None) -> list[style.Drawn]        one Drawn per file (a Figure is accepted too: one
                                                      file captioned by CAPTION); raises
                                                      style.SkipFigure("why") when the tables do not
                                                      hold what it needs
    CAPTION: str                                      how to read it, whatever the experiment (each
                                                      Drawn's caption adds what the data say)
    PART: str                                         the tour part it is drawn from: when the runs
                                                      table's `part` column has this value, only those
                                                      runs are used (see select_runs); else all runs

Every figure separates the runs it draws with gradlab.plots.split: a field it does not draw that differs
between runs it would pool becomes rows of panels or separate files, seeds a median with a band. Tables of
several results folders are drawn together after combine(), which names each run's folder.
"""

from __future__ import annotations

import importlib

import pandas as pd

from gradlab.plots.split import combine  # noqa: F401 - the tables of several folders as one

NAMES = (
    "gradient_by_layer",
    "depth_activation_heatmap",
    "gradient_through_time",
    "time_step_heatmap",
    "dead_units",
    "saturation",
    "clipping",
    "cures",
    "loss_curves",
)


def figures(name: str, tables: dict[str, pd.DataFrame], by: str | None = None) -> list:
    """Figure `name` as matplotlib Figures, one per file, that display inline in Jupyter (see
    gradlab.plots.draw.figures); e.g. gradlab.plots.figures("gradient_by_layer", gradlab.load(path))[0]."""
    from gradlab.plots.draw import figures as draw_figures

    return draw_figures(name, tables, by=by)


def module(name: str):
    """The module of figure `name` (one of NAMES)."""
    if name not in NAMES:
        raise ValueError(f"figure must be one of {', '.join(NAMES)}; got {name!r}")
    return importlib.import_module(f"gradlab.plots.{name}")


def select_runs(tables: dict[str, pd.DataFrame], part: str, skip: str | None = None, **equal) -> dict[str, pd.DataFrame]:
    """The tables restricted to the runs of `part` (when the runs table has such a part; with several
    results folders, each folder's runs by this rule on their own) whose columns equal the given values
    (e.g. model="mlp"); every table keeps only those run_ids. With `skip`, no such run raises
    SkipFigure(skip)."""
    runs = tables["runs"]
    if "part" in runs:
        keep = pd.Series(True, index=runs.index)
        folders = runs["folder"] if "folder" in runs else pd.Series("", index=runs.index)
        for folder in folders.unique():
            mine = folders == folder
            if (runs.loc[mine, "part"] == part).any():
                keep &= ~mine | (runs["part"] == part)
        runs = runs[keep]
    for column, value in equal.items():
        runs = runs[runs[column].isin(value if isinstance(value, (list, tuple, set)) else [value])]
    if skip is not None and runs.empty:
        from gradlab.plots.style import SkipFigure

        raise SkipFigure(skip)
    ids = set(runs["run_id"])
    return {name: (df if name == "runs" else df[df["run_id"].isin(ids)]) for name, df in {**tables, "runs": runs}.items()}
