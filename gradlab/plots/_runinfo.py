"""Small helpers shared by the training figures (dead_units, saturation, clipping, loss_curves): which
columns of the runs table are config fields, whether runs are plain nets (the theory drawn over them needs
it), a caption wrapped to the figure, colour shades, losses by step, and the checks that turn missing data
into a SkipFigure."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from matplotlib.colors import to_rgb

from gradlab.plots import style
from gradlab.schema import CONFIG_COLUMNS

def need(
    tables: dict[str, pd.DataFrame], table: str, columns: Iterable[str], what: str, rows: bool = False
) -> pd.DataFrame:
    """tables[table], or SkipFigure naming the missing table or columns (`what`: the figure's need);
    rows=True also asks for at least one row."""
    df = tables.get(table)
    if df is None:
        raise style.SkipFigure(f"no {table} table ({what})")
    if rows and df.empty:
        raise style.SkipFigure(f"no {table} rows for {what}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise style.SkipFigure(f"the {table} table has no column {', '.join(missing)} ({what})")
    return df


def config_fields(runs: pd.DataFrame) -> list[str]:
    """The runs table's config columns (gradlab.schema's), but the part, which names a group of runs."""
    return [c for c in runs.columns if c in CONFIG_COLUMNS and c != "part"]


def caption(fig, text: str) -> None:
    """style.caption with the text wrapped to the figure's width (about 15 characters per inch)."""
    import textwrap

    width = max(40, int(fig.get_figwidth() * 15))
    style.caption(fig, textwrap.fill(text, width))


def shade(color: str, amount: float) -> tuple[float, float, float]:
    """color mixed with white: amount 0 is the colour itself, 1 is white."""
    rgb = np.array(to_rgb(color))
    return tuple(rgb + (1.0 - rgb) * float(np.clip(amount, 0.0, 1.0)))


def shades(color: str, n: int, lightest: float = 0.6) -> list[tuple[float, float, float]]:
    """n shades of color, from the colour itself (first) to `lightest` of the way to white (last)."""
    if n <= 1:
        return [shade(color, 0.0)]
    return [shade(color, lightest * i / (n - 1)) for i in range(n)]


def spans_decades(values, decades: float = 2.0) -> bool:
    """The finite positive values span at least `decades` orders of magnitude (then use log y)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    return v.size > 1 and np.log10(v.max() / v.min()) >= decades


def finite(series: pd.Series) -> pd.Series:
    """The series as float with inf turned into NaN (so lines stop where a run diverged)."""
    s = pd.to_numeric(series, errors="coerce").astype(float)
    return s.where(np.isfinite(s))


def wide_by_step(steps: pd.DataFrame, runs: pd.DataFrame, column: str) -> pd.DataFrame:
    """step x run_id of steps[column], +inf for a diverged run (runs.status) after its last finite
    value (so that medians over runs count it as off the scale rather than ignore it)."""
    wide = steps.pivot_table(index="step", columns="run_id", values=column, aggfunc="last", dropna=False)
    wide = wide.astype(float)
    status = runs.set_index("run_id")["status"] if "status" in runs else pd.Series(dtype=str)
    for run_id in wide.columns:
        if status.get(run_id) == "diverged":
            col = wide[run_id]
            ok = np.isfinite(col)
            end = col[ok].index.max() if ok.any() else -1
            wide.loc[wide.index > end, run_id] = np.inf
    return wide


def smooth(wide: pd.DataFrame, window: int) -> pd.DataFrame:
    """Centred rolling mean over `window` steps of the finite values; inf and NaN entries kept as they are."""
    if window <= 1:
        return wide
    finite_part = wide.where(np.isfinite(wide))
    return finite_part.rolling(window, center=True, min_periods=1).mean().where(np.isfinite(wide), wide)


def log_y(ax, values, top: float = np.inf, bottom: float = 0.0) -> bool:
    """Log y on ax with limits set from the finite positive values (5% margins in log space), the top
    cut at `top` and the bottom at least `bottom` (the limits are set before the scale, so values
    near 1e300 cannot overflow matplotlib's autoscaling). Returns whether the axis was cut."""
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v) & (v > 0)]
    if not v.size:
        ax.set_yscale("log")
        return False
    lo, hi = float(v.min()), float(v.max())
    cut = hi > top
    hi = min(hi, top)
    lo = min(max(lo, bottom) if bottom > 0 else lo, hi)
    span = max(np.log10(hi / lo), 1.0)
    margin = 10 ** (0.05 * span)
    ax.set_ylim(max(lo / margin, 1e-300), hi if cut else min(hi * margin, 1e300))
    ax.set_yscale("log")
    return cut


def plain(runs: pd.DataFrame) -> bool:
    """Whether every run is a plain MLP stack: model.norm "none", no residual connections and, for a torch
    model, no other modules between its layers (other_modules empty: a Dropout is not the plain stack). A runs
    table without those columns: gradlab's defaults, which are all three."""
    norm = runs["norm"].astype(str) if "norm" in runs else pd.Series("none", index=runs.index)
    residual = runs["residual"].eq(True) if "residual" in runs else pd.Series(False, index=runs.index)
    other = runs["other_modules"].fillna("").astype(str) if "other_modules" in runs else pd.Series("", index=runs.index)
    return bool(((norm == "none") & ~residual & (other == "")).all())
