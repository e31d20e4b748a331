"""log10 dL/dh_t over training step x time step for a few recurrent runs, so that an explosion episode
shows where (which steps back in time) and when (which training steps) it happens.

Drawn from the clipping part, where the explosions are: its RNN is initialised to explode
(gamma ||W_hh||_2 ~ 4) and run with and without clipping; the recurrent part's runs (Adam, clipped)
only vanish, which gradient_through_time already shows. Without a clipping part (or in a results folder
of recurrent runs without a clipping sweep) it draws one RNN and one LSTM (the longest T)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.patches import Patch

from gradlab.plots import _gradients as g
from gradlab.plots import select_runs, style

PART = "clipping"
CAPTION = (
    "Where and when the gradient explodes: colour is log10 ||dL/dh_t|| (batch mean) at each logged training "
    "step (y) and time step t (x; the loss sits at t = T-1, so the left edge is furthest back in time), one "
    "panel per run, on one colour scale (it spans the 1st-99th percentile; colours saturate beyond). With a "
    "clipping sweep the panels are one seed's runs without clipping and at each threshold, the unclipped run "
    "chosen as the most explosive. Brighter toward the left means the gradient grows back in time (exploding). "
    "Without clipping, look for the first rows: the huge early updates saturate the tanh units, after which no "
    "gradient reaches the earlier steps at all (grey: exactly 0), while the gradient at the last step keeps "
    "growing until it overflows (red: inf/NaN) and the run diverges (dashed line; nothing is logged after it). "
    "Clipping bounds the update, not dL/dh_t: the clipped runs stay finite and keep the exploding profile, and "
    "the loosest threshold lets through episodes in which the gradient collapses (dark bands). Without a "
    "clipping sweep the panels are an RNN and an LSTM: a dark left edge is vanishing."
)
MAX_PANELS = 4
CMAP = "viridis"  # perceptually uniform and colour-blind safe
BAD = "#D55E00"  # vermillion: inf/NaN cells
ZERO = "0.82"  # light grey: a gradient that is exactly 0 (e.g. every unit saturated)
CLIP_PERCENTILES = (1.0, 99.0)  # the colour scale spans these percentiles of the finite log norms


def colour_range(logs: np.ndarray) -> tuple[float, float]:
    """(lo, hi) of the colour scale: the 1st to 99th percentile of the finite log10 norms, so that one
    overflowing column does not wash out the rest (colours saturate beyond); at least one decade wide."""
    if not logs.size:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(logs, CLIP_PERCENTILES))
    if hi - lo < 1.0:
        mid = (hi + lo) / 2
        lo, hi = mid - 0.5, mid + 0.5
    return lo, hi


def _setting(run: pd.Series) -> tuple:
    """Sort key and label of a run's clipping: no clipping first, then norm / value by threshold."""
    mode = str(run.get("clip_mode", "none"))
    if mode == "none":
        return (0, 0.0), "no clipping"
    return (1 if mode == "norm" else 2, float(run["clip"])), f"{mode} clip {float(run['clip']):g}"


def _peak(runs: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> pd.Series:
    """How explosive each run is: log10 of its largest gradient norm (inf if it overflowed)."""
    steps = tables.get("steps")
    if steps is not None and not steps.empty and "grad_norm" in steps:
        col, df = "grad_norm", steps
    else:
        col, df = "dh_norm", tables["timesteps"]
    peak = df[df["run_id"].isin(runs["run_id"])].groupby("run_id")[col].agg(
        lambda v: np.inf if (~np.isfinite(v.to_numpy(dtype=float))).any() else float(np.max(v)))
    bonus = runs.set_index("run_id")["status"].eq("diverged") if "status" in runs else False
    return peak.reindex(runs["run_id"]).fillna(0.0).where(~bonus.reindex(runs["run_id"]).fillna(False), np.inf)


def choose(runs: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> list[tuple[pd.Series, str]]:
    """The runs to draw, each with its panel title (at most MAX_PANELS)."""
    settings = {_setting(r)[1] for _, r in runs.iterrows()}
    if len(settings) > 1:
        peak = _peak(runs, tables)
        unclipped = runs[runs["clip_mode"] == "none"]
        pool = unclipped if not unclipped.empty else runs
        worst = pool.iloc[int(np.argmax(peak.reindex(pool["run_id"]).to_numpy()))]
        same = runs[runs["seed"] == worst["seed"]] if "seed" in runs else runs
        picked = {}
        for _, r in same.iterrows():
            key, label = _setting(r)
            if key not in picked or r["run_id"] == worst["run_id"]:
                picked[key] = (r, label)
        chosen = [picked[k] for k in sorted(picked)]
        if len(chosen) > MAX_PANELS:  # keep the unclipped run, the smallest and largest thresholds
            chosen = [chosen[0]] + chosen[1:][:: max(1, math.ceil((len(chosen) - 1) / (MAX_PANELS - 1)))]
            chosen = chosen[:MAX_PANELS]
        seed = f", seed {worst['seed']}" if "seed" in runs and runs["seed"].nunique() > 1 else ""
        return [(r, label + seed) for r, label in chosen]
    out = []
    for model in ("rnn", "lstm"):
        group = runs[runs["model"] == model]
        for act in g.activations_in(group["activation"]) if model == "rnn" else [None]:
            sub = group if act is None else group[group["activation"] == act]
            if sub.empty:
                continue
            order = ["T", "seed"] if "seed" in sub else ["T"]
            r = sub.sort_values(order, ascending=[False, True][: len(order)]).iloc[0]  # longest T, first seed
            out.append((r, f"{model.upper()}" + (f" ({act})" if act else "") + f", T = {int(r['T'])}"))
    return out[:MAX_PANELS]


def _step_edges(steps: np.ndarray, total: int) -> np.ndarray:
    """Row edges: a logged step's row runs until the next logged step (the last one until `total`,
    the run's number of steps, or one logging interval when that is not later)."""
    v = np.asarray(steps, dtype=np.float64)
    gap = v[-1] - v[-2] if v.size > 1 else 1.0
    end = total if total > v[-1] else v[-1] + max(gap, 1.0)
    return np.append(v, end)


def matrix(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logged steps, t, log10 dh_norm[step, t]) of one run; inf/NaN/0 norms give NaN (-inf for 0)."""
    table = rows.pivot_table(index="step", columns="t", values="dh_norm", aggfunc="first", dropna=False)
    x = table.to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(np.isfinite(x) & (x >= 0), np.log10(np.where(x > 0, x, 1.0)), np.nan)
    logs = np.where(x == 0, -np.inf, logs)
    return table.index.to_numpy(), table.columns.to_numpy(), logs


def draw(tables: dict[str, pd.DataFrame]):
    t = select_runs(tables, PART, model=["rnn", "lstm"],
                    skip="no RNN or LSTM runs to draw gradients over training and time from")
    runs = t["runs"]
    ts = g.need(t, "timesteps", g.TIME_COLUMNS, "the RNN and LSTM runs")
    counts = ts.groupby("run_id")["step"].nunique()
    runs = runs[runs["run_id"].isin(counts[counts >= 2].index)]
    if runs.empty:
        raise style.SkipFigure(
            "no recurrent run has timesteps rows at two or more logged steps (a heatmap over training needs them)")
    chosen = choose(runs, t)
    data = [(run, title, *matrix(ts[ts["run_id"] == run["run_id"]])) for run, title in chosen]
    finite = np.concatenate([d[4][np.isfinite(d[4])] for d in data])
    lo, hi = colour_range(finite)
    cmap = style.plt.get_cmap(CMAP).with_extremes(bad=BAD, under=ZERO)

    fig, axes = style.figure(1, len(data), width=2.7, height=2.8, sharey=False, layout="constrained")
    any_bad = any_zero = False
    for i, (ax, (run, title, steps, times, logs)) in enumerate(zip(axes[0], data)):
        # colours saturate outside [lo, hi]; an exactly-zero gradient is drawn below the scale (grey)
        shown = np.where(logs == -np.inf, lo - 1.0, np.clip(logs, lo, hi))
        any_bad |= bool(np.isnan(shown).any())
        any_zero |= bool((logs == -np.inf).any())
        total = int(run["steps"]) if "steps" in run and pd.notna(run["steps"]) else int(steps.max()) + 1
        diverged = run.get("status") == "diverged" and int(run.get("diverged_step", -1)) >= 0
        # a diverged run's last logged row ends at its divergence: nothing was measured after it
        y_edges = _step_edges(steps, int(run["diverged_step"]) + 1 if diverged else total)
        mesh = ax.pcolormesh(np.append(times - 0.5, times[-1] + 0.5), y_edges, np.ma.masked_invalid(shown), cmap=cmap,
                             vmin=lo, vmax=hi, shading="flat", rasterized=True)
        mesh.set_gid(f"heatmap:{run['run_id']}")
        ax.set_ylim(y_edges[0], max(total, y_edges[-1]))
        if diverged:
            k = int(run["diverged_step"])
            ax.axhline(k, color="black", linestyle="--", linewidth=1.0, gid="diverged")
            ax.text(0.02, k, f" diverged at step {k}", transform=ax.get_yaxis_transform(), va="bottom", ha="left",
                    fontsize=7, color="black", bbox=dict(facecolor="white", edgecolor="none", alpha=0.7, pad=1))
        ax.set_title(title)
        ax.set_xlabel("time step t (loss at t = T-1)")
        if i == 0:
            ax.set_ylabel("training step (optimizer steps)")
        for side in ("top", "right"):
            ax.spines[side].set_visible(True)
    extend = {(False, False): "neither", (True, False): "min", (False, True): "max", (True, True): "both"}[
        (bool(finite.size and finite.min() < lo), bool(finite.size and finite.max() > hi))]
    scale = ScalarMappable(Normalize(lo, hi), style.plt.get_cmap(CMAP))  # the arrows show clipping, not the zero grey
    bar = fig.colorbar(scale, ax=list(axes[0]), shrink=0.9, extend=extend)
    bar.set_label("log10 ||dL/dh_t||, batch mean\n(loss / unit of h)")
    handles = []
    if any_bad:
        handles.append(Patch(color=BAD, label="inf/NaN (overflow)"))
    if any_zero:
        handles.append(Patch(color=ZERO, label="exactly 0 (no gradient reaches t)"))
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)
    picked = pd.DataFrame([c[0] for c in chosen])
    g.title(fig, "Gradient over training and time", g.describe(picked, skip=("clip_mode", "seed")))
    return fig
