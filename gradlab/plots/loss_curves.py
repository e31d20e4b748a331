"""Loss curves of every run, grouped by a config field: a thin line per run, the median of the group
thick, diverged runs marked where they end; a panel per part of the experiment, else per task (losses
of different tasks do not share a scale)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.lines import Line2D

from gradlab.plots import _runinfo, select_runs, style

PART = ""  # every run of every part (select_runs with "" would keep only the runs without a part)
CAPTION = (
    "Training loss over steps for every run, a panel per part of the experiment (or per task), grouped by the"
    " config field named in the legend (by default the activation, in its colour throughout; the LSTM in its "
    "own; when the activation is not swept, the swept field with the most values): thin lines are single "
    "runs, the thick line the group's median over runs (a run that diverged counts as off the scale from then"
    " on), a cross marks where a run diverged, and the dotted grey line is the loss of the task's best "
    "constant prediction. Losses are per-batch training losses, averaged over a few steps when there are "
    "many. A group that stays at the dotted line has learned nothing; a curve that leaves through the top is "
    "exploding."
)

CUT = 1e4  # the axis ends this many times above the best constant prediction's loss
NOT_GROUPS = {"seed"}  # replicates, never a default grouping


def default_by(runs: pd.DataFrame) -> str:
    """activation when it is swept (its colours mean the same in every figure); else the swept config
    field with the most distinct values (seed excluded; ties in the caption's order of fields); else
    activation."""
    counts = {}
    for field in _runinfo.config_fields(runs):
        if field in NOT_GROUPS or (field == "clip_mode" and "clip" in runs):
            continue
        groups = _groups(runs, field)
        n = groups[groups != NA].astype(str).nunique()
        if n > 1:
            counts[field] = n
    if not counts or "activation" in counts:
        return "activation"
    rank = {f: i for i, f in enumerate(_runinfo.CAPTION_FIELDS)}
    return max(counts, key=lambda f: (counts[f], -rank.get(f, len(rank))))


CLIP = ("clip", "clip_mode")  # grouped together: the threshold means nothing without clipping


def _clipping(runs: pd.DataFrame, by: str) -> bool:
    return by in CLIP and all(c in runs for c in CLIP)


NA = "n/a"  # the group of runs for which the field means nothing (an RNN's depth, an MLP's T)


def _groups(runs: pd.DataFrame, by: str) -> pd.Series:
    """Per run, its group: the value of `by`; for clip or clip_mode the threshold label ("none", "0.1",
    "value 1") from the clipping figure; for activation, "lstm" for the LSTM (its activations are
    fixed); "n/a" where the field does not apply to the run (depth of an RNN, T of an MLP, the slope
    of a non-leaky activation)."""
    if _clipping(runs, by):
        from gradlab.plots.clipping import thresholds

        return thresholds(runs)
    groups = runs[by].astype(object)
    model = runs["model"] if "model" in runs else pd.Series("", index=runs.index)
    if by == "activation":
        groups = groups.where(model != "lstm", "lstm")
    elif by == "depth":
        groups = groups.where(model.isin(["mlp", ""]), NA)
    elif by in ("T", "truncate", "recurrent_init", "forget_bias"):
        groups = groups.where(model != "mlp", NA)
    elif by == "leaky_slope" and "activation" in runs:
        groups = groups.where(runs["activation"] == "leaky_relu", NA)
    return groups


def _order(runs: pd.DataFrame, by: str) -> list:
    if _clipping(runs, by):
        from gradlab.plots.clipping import _order as clip_order

        return clip_order(runs)
    values = [v for v in runs["_group"].unique() if v != NA]
    if by == "activation":  # the palette's order: sigmoid, tanh, relu, leaky_relu, identity, then the LSTM
        known = [*style.ACTIVATION_COLORS, "lstm"]
        return sorted(values, key=lambda v: (known.index(v) if v in known else len(known), str(v)))
    order = sorted(values, key=lambda v: (isinstance(v, str), v))
    return order + [NA] * (NA in set(runs["_group"]))


def _legend_title(runs: pd.DataFrame, by: str) -> str:
    return "clipping threshold" if _clipping(runs, by) else by


def _colors(by: str, values: list) -> dict:
    if by == "activation":
        return {v: style.MODEL_COLORS["lstm"] if v == "lstm" else style.color_of(v) for v in values}
    if by == "model":
        return {v: style.MODEL_COLORS.get(v, "#777777") for v in values}
    values = [v for v in values if v != NA]
    numeric = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in values)
    if numeric and len(values) > 2:
        cmap = colormaps["viridis"]
        return {v: cmap(x) for v, x in zip(values, np.linspace(0.0, 0.85, len(values)))} | {NA: "#999999"}
    return {v: "#999999" if v == NA else style.SEQUENCE[i % len(style.SEQUENCE)] for i, v in enumerate(values)}


def draw(tables: dict[str, pd.DataFrame], by: str | None = None):
    _runinfo.need(tables, "runs", ["run_id"], "loss curves need runs")
    _runinfo.need(tables, "steps", ["run_id", "step", "loss"], "loss curves need the loss per step")
    t = select_runs(tables, PART) if PART else tables  # every run, whatever its part
    runs, steps = t["runs"], t["steps"]
    if "status" in runs:
        runs = runs[runs["status"] != "failed"]
    runs = runs[runs["run_id"].isin(steps["run_id"])]
    if runs.empty:
        raise style.SkipFigure("no runs with logged steps (all failed, or the steps table is empty)")
    by = default_by(runs) if by is None else by
    if by not in runs.columns:
        fields = ", ".join(_runinfo.config_fields(runs))
        raise ValueError(f"by={by!r}: not a column of the runs table; one of {fields}")
    if "status" not in runs:
        runs = runs.assign(status="ok")
    runs = runs.assign(_group=_groups(runs, by))
    values = _order(runs, by)
    if _clipping(runs, by):
        from gradlab.plots.clipping import _colors as clip_colors

        colors = clip_colors(values)
    else:
        colors = _colors(by, values)
    steps = steps[steps["run_id"].isin(runs["run_id"])]
    # a panel per part of the experiment (each one task and one question), else per task (losses of
    # different tasks do not share a scale), else one
    key, panels = None, ["all"]
    if "part" in runs and runs["part"].nunique() > 1:
        key, panels = "part", list(dict.fromkeys(runs["part"]))
    elif "task" in runs and by != "task" and runs["task"].nunique() > 1:
        key, panels = "task", sorted(runs["task"].unique())
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = style.figure(nrows, ncols, width=3.6 if len(panels) > 1 else 4.2, height=2.9)
    flat = list(axes.ravel())
    for ax in flat[len(panels):]:
        fig.delaxes(ax)
    any_diverged = False
    for ax, panel in zip(flat, panels):
        prun = runs if key is None else runs[runs[key] == panel]
        loss = _runinfo.wide_by_step(steps[steps["run_id"].isin(prun["run_id"])], prun, "loss")
        window = max(1, len(loss) // 40)
        smooth = _runinfo.smooth(loss, window)
        raw = loss.to_numpy()
        finite_loss = raw[np.isfinite(raw)]
        baseline = prun["baseline_loss"].dropna().unique() if "baseline_loss" in prun else []
        baseline = float(baseline[0]) if len(baseline) == 1 else None
        log = _runinfo.spans_decades(finite_loss)
        ref = baseline if baseline else (float(np.median(finite_loss)) if finite_loss.size else 1.0)
        cut = CUT * ref if log else np.inf
        for value in values:
            ids = [i for i in prun.loc[prun["_group"] == value, "run_id"] if i in smooth.columns]
            if not ids:
                continue
            for run_id in ids:
                y = smooth[run_id].to_numpy()
                (line,) = ax.plot(smooth.index, np.where(np.isfinite(y), y, np.nan), color=colors[value], lw=0.6,
                                  alpha=0.3)  # fmt: skip
                line.set_gid(f"run:{_runinfo.fmt(value)}")
            (line,) = ax.plot(smooth.index, _runinfo.median_over_runs(smooth[ids]), color=colors[value], lw=2)
            line.set_gid(f"median:{_runinfo.fmt(value)}")
            for run_id in prun.loc[(prun["_group"] == value) & (prun["status"] == "diverged"), "run_id"]:
                col = loss[run_id] if run_id in loss.columns else pd.Series(dtype=float)
                ok = col[np.isfinite(col)]
                last_step = ok.index[-1] if len(ok) else col.index.min()
                last = ok.iloc[-1] if len(ok) else ref
                (line,) = ax.plot([last_step], [min(last, cut)], marker="x", color=colors[value], ms=7, mew=2,
                                  linestyle="none", clip_on=False)  # fmt: skip
                line.set_gid("diverged")
                any_diverged = True
        if baseline:
            ax.axhline(baseline, color="0.5", linestyle=":", linewidth=1)
        if log:
            _runinfo.log_y(ax, np.append(finite_loss, baseline or np.nan), top=cut)
        ax.set_xlabel("training step")
        ax.set_ylabel("training loss (per batch)")
        name = ""
        if key == "part":
            tasks = ", ".join(sorted(prun["task"].unique())) if "task" in prun else ""
            name = f"part: {panel}" + (f" ({tasks})" if tasks else "")
        elif key == "task":
            name = f"task: {panel}"
        note = f"running mean over {window} steps" if window > 1 else ""
        ax.set_title("\n".join(x for x in (name, note) if x), loc="left", fontsize=8)
    counts = runs["_group"].value_counts()
    handles = [Line2D([], [], color=colors[v], lw=2) for v in values]
    labels = [f"{_runinfo.fmt(v)} ({counts[v]})" for v in values]
    handles.append(Line2D([], [], color="0.5", linestyle=":", linewidth=1))
    labels.append("best constant")
    if any_diverged:
        handles.append(Line2D([], [], marker="x", color="0.2", mew=2, linestyle="none"))
        labels.append("diverged")
    flat[ncols - 1].legend(handles, labels, title=f"{_legend_title(runs, by)} (runs)", loc="upper left",
                           bbox_to_anchor=(1.0, 1.0), frameon=False, ncol=1 if len(handles) <= 12 else 2)  # fmt: skip
    _runinfo.caption(fig, _runinfo.title(f"Loss curves by {by}", runs, skip=(by, *(CLIP if by in CLIP else ()))))
    fig.tight_layout()
    return fig
