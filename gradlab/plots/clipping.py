"""Gradient clipping: loss curves per threshold, the gradient norm before and after clipping, and the
final loss and divergence rate against the threshold (Pascanu et al. 2013's norm clipping)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from gradlab.plots import _runinfo, select_runs, split, style

PART = "clipping"
CAPTION = (
    "Gradient clipping, a colour per clipping threshold c (none in black); with several seeds a line is their "
    "median and its band their spread (any other field that differs gives a file each). "
    "(a) Training loss over steps, a running mean when there are many; a cross marks "
    "where a run diverged (loss or gradient inf/NaN); the axis is cut far above the best constant "
    "prediction, so exploding runs leave through the top. (b) The global gradient norm before "
    "clipping (solid) and after it (dotted), log scale: without clipping the norm explodes; with norm "
    "clipping the step's norm is held at c. (c) Final held-out loss per run (dots; median as a bar) and "
    "the fraction of runs that diverged (black squares, right axis) against c, no clipping on the right."
)

CUT = 1e4  # the loss axes end this many times above the best constant prediction's loss


def thresholds(runs: pd.DataFrame) -> pd.Series:
    """Per run, its threshold label: "none" or the threshold c ("value c" for value clipping)."""
    mode = runs["clip_mode"].astype(str)
    clip = runs["clip"].astype(float)
    label = clip.map(lambda c: f"{c:g}")
    label = label.where(mode != "value", "value " + label)
    return label.where(mode != "none", "none")


def _order(runs: pd.DataFrame) -> list[str]:
    """Threshold labels from the smallest c to the largest (norm before value), "none" last."""
    keys = {}
    for label, mode, clip in zip(thresholds(runs), runs["clip_mode"], runs["clip"].astype(float)):
        keys[label] = (2, 0.0) if mode == "none" else (0 if mode == "norm" else 1, clip)
    return sorted(keys, key=keys.get)


def _colors(order: list[str]) -> dict[str, tuple]:
    clipped = [t for t in order if t != "none"]
    cmap = colormaps["viridis"]
    out = {t: cmap(x) for t, x in zip(clipped, np.linspace(0.0, 0.78, max(len(clipped), 1)))}
    out["none"] = "#000000"
    return out


def _select(tables):
    _runinfo.need(tables, "runs", ["run_id", "clip_mode", "clip", "status"], "clipping needs the clipping config")
    _runinfo.need(tables, "steps", ["run_id", "step", "loss", "grad_norm", "grad_norm_clipped"], "clipping")
    t = select_runs(tables, PART)
    runs, steps = t["runs"], t["steps"]
    notes = []
    failed = runs[runs["status"] == "failed"]
    if len(failed):
        notes.append(f"{len(failed)} failed run{'s' if len(failed) != 1 else ''} (nothing logged to draw)")
    logged = steps["run_id"].unique()  # isin(steps["run_id"]) itself: 0.28 s for the tour's 46k rows, this 1 ms
    silent = runs[~runs["run_id"].isin(logged) & (runs["status"] != "failed")]
    if len(silent):
        notes.append(f"{len(silent)} run{'s' if len(silent) != 1 else ''} with no steps rows")
    runs = runs[runs["run_id"].isin(logged) & (runs["status"] != "failed")]
    if runs.empty:
        raise style.SkipFigure("no runs with logged steps")
    order = _order(runs)
    if len(order) < 2:
        raise style.SkipFigure(f"needs runs at two or more clipping thresholds; all runs have clip {order[0]}")
    return t, runs, notes


DRAWS = ("clip_mode", "clip")
ROLES = {"clip_mode": "colour (no clipping in black)", "clip": "colour (viridis, by threshold)"}


@style.styled
def draw(tables: dict[str, pd.DataFrame], by: str | None = None):
    t, runs, notes = _select(tables)
    return split.draw_files(t, runs, DRAWS, _draw, guide=CAPTION, roles=ROLES, max_facets=0, by=by, notes=notes,
                            what="runs")  # fmt: skip


def _draw(ctx: split.Context):
    runs, steps = ctx.runs, ctx.tables["steps"]
    runs = runs.assign(threshold=thresholds(runs))
    order = _order(runs)
    colors = _colors(order)
    several = ctx.plan.seeds > 1
    steps = steps[steps["run_id"].isin(runs["run_id"])]
    baseline = runs["baseline_loss"].dropna().unique() if "baseline_loss" in runs else []
    baseline = float(baseline[0]) if len(baseline) == 1 else None

    fig, axes = style.figure(1, 3, width=3.5, height=2.9)
    ax_loss, ax_norm, ax_final = axes[0]

    # -- (a) loss curves (per-batch losses are noisy: a centred rolling mean over `window` steps)
    loss = _runinfo.wide_by_step(steps, runs, "loss")
    window = max(1, len(loss) // 40)
    smooth = _runinfo.smooth(loss, window)
    finite_loss = loss.to_numpy()[np.isfinite(loss.to_numpy())]
    cut = CUT * (baseline if baseline else float(np.median(finite_loss))) if finite_loss.size else np.inf
    for thr in order:
        ids = runs.loc[runs["threshold"] == thr, "run_id"]
        part = smooth[[i for i in ids if i in smooth.columns]]
        med, lo, hi = split.band(part.to_numpy().T)
        med = np.where(np.isfinite(med), med, np.nan)
        (line,) = ax_loss.plot(part.index, med, color=colors[thr], linewidth=1.8,
                               label=f"$c = {thr}$" if thr != "none" else "no clipping")  # fmt: skip
        line.set_gid(f"median:{thr}")
        if several and part.shape[1] > 1:
            style.fill_band(ax_loss, part.index, np.minimum(lo, cut), np.minimum(hi, cut), colors[thr],
                            gid=f"band:{thr}")  # fmt: skip
    diverged = runs[runs["status"] == "diverged"]
    for _, run in diverged.iterrows():
        col = loss[run["run_id"]] if run["run_id"] in loss.columns else pd.Series(dtype=float)
        ok = col[np.isfinite(col)]
        if ok.empty:
            continue
        (line,) = ax_loss.plot([ok.index[-1]], [min(ok.iloc[-1], cut)], marker="x", color=colors[run["threshold"]],
                               ms=7, mew=2, linestyle="none", clip_on=False)  # fmt: skip
        line.set_gid("diverged")
    if baseline:
        ax_loss.axhline(baseline, color="0.5", linestyle=":", linewidth=1, label="best constant")
    if _runinfo.spans_decades(finite_loss):
        _runinfo.log_y(ax_loss, finite_loss, top=cut)
    ax_loss.set_title("(a) training loss" + (f", mean over {window} steps" if window > 1 else ""), loc="left")
    ax_loss.set_xlabel("training step")
    ax_loss.set_ylabel("training loss (batch)")
    handles, labels = ax_loss.get_legend_handles_labels()
    if len(diverged):
        handles.append(Line2D([], [], marker="x", color="0.2", mew=2, linestyle="none"))
        labels.append("diverged")
    legend_below = (handles, labels)  # one legend for all panels, under them

    # -- (b) gradient norm before and after clipping
    before = _runinfo.wide_by_step(steps, runs, "grad_norm")
    after = _runinfo.wide_by_step(steps, runs, "grad_norm_clipped")
    for thr in order:
        ids = [i for i in runs.loc[runs["threshold"] == thr, "run_id"] if i in before.columns]
        med, lo, hi = split.band(before[ids].to_numpy().T)
        (line,) = ax_norm.plot(before.index, np.where(np.isfinite(med), med, np.nan), color=colors[thr], lw=1.3)
        line.set_gid(f"before:{thr}")
        if several and len(ids) > 1:
            style.fill_band(ax_norm, before.index, lo, np.minimum(hi, 1e300), colors[thr], gid=f"band:before:{thr}")
        if thr != "none":
            amed, _, _ = split.band(after[ids].to_numpy().T)
            (line,) = ax_norm.plot(after.index, np.where(np.isfinite(amed), amed, np.nan), color=colors[thr], lw=2.2,
                                   linestyle=":")  # fmt: skip
            line.set_gid(f"after:{thr}")
    # an exploding norm reaches 1e300: cut the axis 10^6 above the start so the clipped runs stay readable
    norms = np.concatenate([before.to_numpy().ravel(), after.to_numpy().ravel()])
    norms = norms[np.isfinite(norms) & (norms > 0)]
    first = before.iloc[0].to_numpy() if len(before) else np.array([])
    start = float(np.nanmedian(first[np.isfinite(first)])) if np.isfinite(first).any() else 1.0
    norm_cut = 1e6 * max(start, float(runs.loc[runs["threshold"] != "none", "clip"].max()))
    if _runinfo.log_y(ax_norm, norms, top=norm_cut):
        ax_norm.annotate(f"cut: reaches {norms.max():.0e}", (0.98, 0.97), xycoords="axes fraction",
                         ha="right", va="top", fontsize=7, color="0.3")  # fmt: skip
    ax_norm.set_title("(b) gradient norm" + (", median over seeds" if several else ""), loc="left")
    ax_norm.set_xlabel("training step")
    ax_norm.set_ylabel(r"global gradient norm $\|g\|$")
    styles = [Line2D([], [], color="0.2", linewidth=1.3), Line2D([], [], color="0.2", linewidth=2.2, linestyle=":")]
    legend_below[0].extend(styles)
    legend_below[1].extend(["norm before clipping", "norm after clipping"])

    # -- (c) final loss and divergence rate against the threshold
    x = {thr: i for i, thr in enumerate(order)}
    rng = np.random.default_rng(0)
    final = runs[runs["status"] == "ok"]
    values = final["final_loss"].astype(float).to_numpy() if "final_loss" in final else np.array([])
    top = cut if np.isfinite(cut) else np.inf
    for thr in order:
        v = final.loc[final["threshold"] == thr, "final_loss"].astype(float) if "final_loss" in final else pd.Series()
        v = v[np.isfinite(v)]
        if v.empty:
            ax_final.annotate("no run\nfinished", (x[thr], 0.04), xycoords=("data", "axes fraction"), ha="center",
                              va="bottom", fontsize=7, color="0.3")  # fmt: skip
            continue
        jitter = rng.uniform(-0.12, 0.12, len(v))
        inside = (v <= top).to_numpy()
        (line,) = ax_final.plot(x[thr] + jitter[inside], v[inside], "o", color=colors[thr], ms=4, alpha=0.8)
        line.set_gid(f"final:{thr}")
        if (~inside).any():
            (line,) = ax_final.plot(x[thr] + jitter[~inside], np.full((~inside).sum(), top), "^", color=colors[thr],
                                    ms=6, clip_on=False)  # fmt: skip
            line.set_gid(f"offscale:{thr}")
            ax_final.annotate(f"{(~inside).sum()} off scale\n(max {v.max():.0e})", (x[thr], top), xytext=(0, -22),
                              textcoords="offset points", ha="center", fontsize=6.5, color="0.3")  # fmt: skip
        med = float(np.median(v))
        ax_final.plot([x[thr] - 0.25, x[thr] + 0.25], [min(med, top)] * 2, color=colors[thr], linewidth=2)
    if baseline:
        ax_final.axhline(baseline, color="0.5", linestyle=":", linewidth=1)
    finite_final = values[np.isfinite(values)]
    if _runinfo.spans_decades(finite_final, 1.0):
        _runinfo.log_y(ax_final, np.append(finite_final, baseline or np.nan), top=top)
    ax_final.set_xticks(range(len(order)), order)
    ax_final.set_xlim(-0.5, len(order) - 0.5)
    ax_final.set_xlabel("clipping threshold $c$ (global norm)")
    ax_final.set_ylabel("final held-out loss (runs not diverged)")
    ax_final.set_title("(c) final loss and divergence", loc="left")
    rate = runs.groupby("threshold")["status"].apply(lambda s: float((s == "diverged").mean())).reindex(order)
    twin = ax_final.twinx()
    (line,) = twin.plot(range(len(order)), rate.to_numpy(), "s-", color="black", ms=5, linewidth=1, alpha=0.8)
    line.set_gid("divergence_rate")
    twin.set_ylim(-0.03, 1.03)
    twin.set_ylabel("fraction of runs diverged (squares)")
    twin.spines["right"].set_visible(True)

    if several:
        legend_below[0].append(Patch(color="0.3", alpha=style.BAND_ALPHA))
        legend_below[1].append(f"median, band: {split.band_name(ctx.plan.seeds)} of seeds")
    _runinfo.caption(fig, ctx.title("Gradient clipping", skip=("clip_mode", "clip")))
    fig.tight_layout(rect=(0, 0.09, 1, 1))
    fig.legend(*legend_below, loc="lower center", ncol=len(legend_below[0]), frameon=False, fontsize=7.5,
               bbox_to_anchor=(0.5, 0.0))  # fmt: skip
    return fig, _text(runs, steps, order)


def _text(runs: pd.DataFrame, steps: pd.DataFrame, order: list[str]) -> str:
    items = []
    for thr in order:
        sel = runs[runs["threshold"] == thr]
        n, dead = len(sel), int((sel["status"] == "diverged").sum())
        ok = sel.loc[sel["status"] == "ok", "final_loss"] if "final_loss" in sel else pd.Series(dtype=float)
        ok = ok.astype(float)
        ok = ok[np.isfinite(ok)]
        text = ("no clipping" if thr == "none" else f"c = {thr}") + f": {dead}/{n} diverged"
        if "diverged_step" in sel and dead:
            at = sel.loc[sel["status"] == "diverged", "diverged_step"].astype(int)
            text += f" (at step {at.min()}" + (f"-{at.max()}" if at.max() != at.min() else "") + ")"
        if len(ok):
            text += f", median final loss {float(np.median(ok)):.3g}"
        if thr != "none" and "clipped" in steps:
            share = steps.loc[steps["run_id"].isin(sel["run_id"]), "clipped"].astype(float).mean()
            text += f", {share:.0%} of steps clipped"
        items.append(text)
    baseline = runs["baseline_loss"].dropna().unique() if "baseline_loss" in runs else []
    tail = f" The best constant prediction's loss: {float(baseline[0]):.3g}." if len(baseline) == 1 else ""
    return "Measured per threshold: " + "; ".join(items) + "." + tail
