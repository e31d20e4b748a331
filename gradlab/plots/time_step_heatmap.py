"""log10 dL/dh_t over training step x time step for a few recurrent runs, so that an explosion episode
shows where (which steps back in time) and when (which training steps) it happens.

Drawn from the clipping part, where the explosions are: with a clipping sweep, a panel per threshold (no
clipping first), all of one seed, the seed of the most explosive unclipped run. Without one, a panel per
model (and RNN activation), each the longest T's first seed. A panel is one run, never a pooled one: the
runs not drawn are named in the caption and the notes. Any other field that differs gives a file each."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import SymLogNorm
from matplotlib.patches import Patch

from gradlab.plots import _gradients as g
from gradlab.plots import select_runs, split, style

PART = "clipping"
CAPTION = (
    "Where and when the gradient explodes or vanishes: each panel is one run, colour the size of ||dL/dh_t|| "
    "(batch mean) at each logged training step (y) and time step t (x; with the loss on the last step, the "
    "left edge is furthest back in time). One colour scale for all panels, diverging at a norm of 1: red is "
    "above 1 (exploding), blue below (vanishing), white about 1; the scale is logarithmic in the number of "
    "decades beyond one decade (10, 10^10 and 10^100 are equal steps of colour), so that a gradient of "
    "10^150 and one of 10^-5 both show. Grey: exactly 0 (no gradient reaches t: every unit it passes through "
    "is saturated); black: inf/NaN (overflow); a dashed line marks a divergence (nothing is logged after "
    "it); a star marks each panel's largest gradient (when above 10). With a clipping sweep the panels are "
    "the runs without clipping and at each threshold of one seed; "
    "clipping bounds the update, not dL/dh_t, so a clipped run may keep an exploding profile. Without one, a "
    "panel per model."
)
MAX_PANELS = 4
CMAP = "RdBu_r"  # diverging, colour-blind safe: blue = below 1 (vanishing), red = above 1 (exploding)
BAD = "#000000"  # inf/NaN cells
ZERO = "0.6"  # a gradient that is exactly 0 (e.g. every unit saturated)
LINEAR_DECADES = 1.0  # the colour scale is linear in log10 ||dL/dh_t|| within this many decades of 1
DRAWS = ("model", "activation", "leaky_slope", "T", "clip_mode", "clip", "seed")
ROLES = {"clip_mode": "a panel per setting", "clip": "a panel per threshold", "model": "a panel per model",
         "activation": "a panel per RNN activation", "seed": "one seed drawn"}  # fmt: skip


def colour_norm(logs: np.ndarray) -> SymLogNorm:
    """The colour scale of log10 norms: symmetric about 0 (a norm of 1), linear within LINEAR_DECADES,
    logarithmic in the decades beyond, out to the largest |log10 norm| (at least 2 decades)."""
    top = max(2.0, float(np.max(np.abs(logs)))) if logs.size else 2.0
    return SymLogNorm(linthresh=LINEAR_DECADES, linscale=1.0, vmin=-top, vmax=top, base=10)


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


def choose(runs: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> tuple[list[tuple[pd.Series, str]], list[str]]:
    """The runs to draw, each with its panel title (at most MAX_PANELS), and what was left out and why."""
    settings = {_setting(r)[1] for _, r in runs.iterrows()}
    several_seeds = "seed" in runs and runs["seed"].nunique() > 1
    notes = []
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
            kept = [chosen[0]] + chosen[1:][:: max(1, math.ceil((len(chosen) - 1) / (MAX_PANELS - 1)))]
            dropped = [label for _, label in chosen if label not in {lab for _, lab in kept[:MAX_PANELS]}]
            chosen = kept[:MAX_PANELS]
            notes.append(f"the settings {', '.join(dropped)} (at most {MAX_PANELS} panels)")
        if several_seeds:
            others = split.seeds_text(runs[runs["seed"] != worst["seed"]])
            why = "the most explosive unclipped run's" if not unclipped.empty else "the most explosive run's"
            notes.append(f"{others}: one seed per panel is drawn, {why} (seed {split.fmt(worst['seed'])})")
        seed = f", seed {split.fmt(worst['seed'])}" if several_seeds else ""
        return [(r, label + seed) for r, label in chosen], notes
    out = []
    for model in ("rnn", "lstm", "gru"):
        group = runs[runs["model"] == model]
        for act in g.activations_in(group["activation"]) if model == "rnn" else [None]:
            sub = group if act is None else group[group["activation"] == act]
            if sub.empty:
                continue
            order = ["T", "seed"] if "seed" in sub else ["T"]
            r = sub.sort_values(order, ascending=[False, True][: len(order)]).iloc[0]  # longest T, first seed
            out.append((r, f"{model.upper()}" + (f" ({act})" if act else "") + f", $T = {int(r['T'])}$"))
            rest = sub[sub["run_id"] != r["run_id"]]
            if len(rest):
                what = model.upper() + (f" ({act})" if act else "")
                notes.append(f"{len(rest)} other {what} run{'s' if len(rest) != 1 else ''} (one run per panel: the "
                             f"longest T, {int(r['T'])}, and the first seed)")  # fmt: skip
    if len(out) > MAX_PANELS:
        notes.append(f"the panels {', '.join(t for _, t in out[MAX_PANELS:])} (at most {MAX_PANELS} panels)")
    return out[:MAX_PANELS], notes


def _step_edges(steps: np.ndarray, total: int) -> np.ndarray:
    """Row edges: a logged step's row runs until the next logged step (the last one until `total`,
    the run's number of steps, or one logging interval when that is not later)."""
    v = np.asarray(steps, dtype=np.float64)
    gap = v[-1] - v[-2] if v.size > 1 else 1.0
    end = total if total > v[-1] else v[-1] + max(gap, 1.0)
    return np.append(v, end)


def matrix(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logged steps, t, log10 dh_norm[step, t]) of one run; inf/NaN norms give NaN, 0 gives -inf."""
    table = rows.pivot_table(index="step", columns="t", values="dh_norm", aggfunc="first", dropna=False)
    x = table.to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(np.isfinite(x) & (x >= 0), np.log10(np.where(x > 0, x, 1.0)), np.nan)
    logs = np.where(x == 0, -np.inf, logs)
    return table.index.to_numpy(), table.columns.to_numpy(), logs


def _select(tables):
    t = select_runs(tables, PART, model=["rnn", "lstm", "gru"],
                    skip="no RNN or LSTM runs to draw gradients over training and time from")  # fmt: skip
    runs = t["runs"]
    ts = g.need(t, "timesteps", g.TIME_COLUMNS, "the RNN and LSTM runs")
    counts = ts.groupby("run_id")["step"].nunique()
    ok = runs["run_id"].isin(counts[counts >= 2].index)
    if not ok.any():
        raise style.SkipFigure(
            "no recurrent run has timesteps rows at two or more logged steps (a heatmap over training needs them)")
    notes = []
    if (~ok).sum():
        n = int((~ok).sum())
        notes.append(f"{n} recurrent run{'s' if n != 1 else ''} with timesteps rows at fewer than two logged steps")
    return t, runs[ok], notes


@style.styled
def draw(tables: dict[str, pd.DataFrame], by: str | None = None):
    t, runs, notes = _select(tables)
    return split.draw_files(t, runs, DRAWS, _draw, guide=CAPTION, roles=ROLES, max_facets=0, by=by, notes=notes,
                            what="recurrent runs")  # fmt: skip


def _tick(v: float) -> str:
    return "$1$" if v == 0 else f"$10^{{{v:g}}}$"


def _draw(ctx: split.Context):
    ts, stacked = g.top_layer(ctx.tables["timesteps"])
    chosen, notes = choose(ctx.runs, ctx.tables)
    ctx.notes.extend(notes)
    data = [(run, title, *matrix(ts[ts["run_id"] == run["run_id"]])) for run, title in chosen]
    finite = np.concatenate([d[4][np.isfinite(d[4])] for d in data])
    norm = colour_norm(finite)
    cmap = colormaps[CMAP].with_extremes(bad=BAD, under=ZERO, over=colormaps[CMAP](1.0))

    fig, axes = style.figure(1, len(data), width=2.7, height=2.8, sharey=False, layout="constrained")
    any_bad = any_zero = False
    mesh = None
    peaks = []
    for i, (ax, (run, title, steps, times, logs)) in enumerate(zip(axes[0], data)):
        # an exactly-zero gradient is drawn below the scale (grey); inf/NaN as bad (black)
        shown = np.where(logs == -np.inf, norm.vmin - 1.0, logs)
        any_bad |= bool(np.isnan(shown).any())
        any_zero |= bool((logs == -np.inf).any())
        total = int(run["steps"]) if "steps" in run and pd.notna(run["steps"]) else int(steps.max()) + 1
        diverged = run.get("status") == "diverged" and int(run.get("diverged_step", -1)) >= 0
        # a diverged run's last logged row ends at its divergence: nothing was measured after it
        y_edges = _step_edges(steps, int(run["diverged_step"]) + 1 if diverged else total)
        mesh = ax.pcolormesh(np.append(times - 0.5, times[-1] + 0.5), y_edges, np.ma.masked_invalid(shown), cmap=cmap,
                             norm=norm, shading="flat", rasterized=True)
        mesh.set_gid(f"heatmap:{run['run_id']}")
        ax.set_ylim(y_edges[0], max(total, y_edges[-1]))
        if diverged:
            k = int(run["diverged_step"])
            ax.axhline(k, color="black", linestyle="--", linewidth=1.0, gid="diverged")
            ax.text(0.02, k, f" diverged at step {k}", transform=ax.get_yaxis_transform(), va="bottom", ha="left",
                    fontsize=7, color="black", bbox=dict(facecolor="white", edgecolor="none", alpha=0.7, pad=1))
        ax.set_title(title)
        loss_on = run.get("loss_on")
        ax.set_xlabel("time step $t$" + (" (loss at $t = T-1$)" if loss_on == "last" else ""))
        if i == 0:
            ax.set_ylabel("training step (optimizer steps)")
        for side in ("top", "right"):
            ax.spines[side].set_visible(True)
        ok = logs[np.isfinite(logs)]
        if ok.size and ok.max() > LINEAR_DECADES:  # where the gradient is largest: the explosion's place
            r, c = np.unravel_index(np.nanargmax(np.where(np.isfinite(logs), logs, -np.inf)), logs.shape)
            y = (y_edges[r] + y_edges[r + 1]) / 2
            ax.plot([times[c]], [y], marker="*", color="white", markeredgecolor="black", markersize=9,
                    linestyle="none", gid="peak", clip_on=False)  # fmt: skip
            ax.annotate(f"peak $10^{{{ok.max():.0f}}}$\nt = {times[c]:g}, step {steps[r]:g}", (times[c], y),
                        xytext=(0.5, 0.86), textcoords="axes fraction", ha="center", va="top", fontsize=7,
                        bbox=dict(facecolor="white", edgecolor="none", alpha=0.8, pad=1),
                        arrowprops=dict(arrowstyle="-", color="black", linewidth=0.6))  # fmt: skip
        peaks.append((title, float(ok.max()) if ok.size else math.nan, float(ok.min()) if ok.size else math.nan,
                      int((logs == -np.inf).sum()), int(np.isnan(logs).sum()), logs.size))  # fmt: skip
    bar = fig.colorbar(mesh, ax=list(axes[0]), shrink=0.9)
    top = norm.vmax
    ticks = [v for v in (-1000, -100, -10, -1, 0, 1, 10, 100, 1000) if -top <= v <= top]
    bar.set_ticks(ticks, labels=[_tick(v) for v in ticks])
    bar.set_label(r"$\|\partial L/\partial h_t\|$, batch mean"
                  + "\n(red above 1, blue below; decades past 10 compressed)")  # fmt: skip
    handles = []
    if any_zero:
        handles.append(Patch(color=ZERO, label="exactly 0 (no gradient reaches t)"))
    if any_bad:
        handles.append(Patch(color=BAD, label="inf/NaN (overflow)"))
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)
    picked = pd.DataFrame([c[0] for c in chosen])
    moving = set(split.varying(picked)) - {"seed"}
    head = ctx.title("Gradient over training and time", skip=moving)
    g.title(fig, head)
    text = _text(peaks)
    if stacked:
        text += " Stacked cells: each panel is the top cell layer's dL/dh_t, the layer the readout reads."
    return fig, text


def _text(peaks) -> str:
    items = []
    for title, hi, lo, zeros, bad, n in peaks:
        text = f"{title.replace('$', '')}: ||dL/dh_t|| from 10^{lo:.0f} to 10^{hi:.0f}"
        if zeros:
            text += f", exactly 0 in {zeros / n:.0%} of the cells"
        if bad:
            text += f", inf/NaN in {bad / n:.0%}"
        items.append(text)
    return ("Measured per panel: " + "; ".join(items) + ".") if items else ""
