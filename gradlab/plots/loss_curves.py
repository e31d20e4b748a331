"""Loss curves of every run: a file per part of the experiment, a line per value of one config field
(the activation by default), a panel per combination of the other fields that differ, seeds a median with
a band; diverged runs marked where they end."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from gradlab.plots import _runinfo, split, style

PART = ""  # every run of every part
CAPTION = (
    "Training loss over steps, a figure file per part of the experiment; in each, a line per value of one "
    "config field (the activation when it is swept, in its colour throughout; else the swept field with the "
    "most values) and a panel per combination of the other fields that differ, so no line pools runs that "
    "differ in anything but the seed. With several seeds a line is their median (a run that diverged counts as "
    "off the scale from then on) and its band their spread; a cross marks where a run diverged; the dotted "
    "grey line is the loss of the task's best constant prediction. Losses are per-batch training losses, a "
    "running mean over a few steps when there are many. A line that stays at the dotted line has learned "
    "nothing; one that leaves through the top is exploding."
)

CUT = 1e4  # the axis ends this many times above the best constant prediction's loss
NOT_GROUPS = {"seed", "part", "folder"}  # replicates and origins, never a default line grouping
CLIP = ("clip", "clip_mode")  # grouped together: the threshold means nothing without clipping
MAX_PANELS = 10  # panels per file (a grid of at most 5 columns); more combinations give more files
NA = "n/a"


def default_by(runs: pd.DataFrame) -> str:
    """activation when it is swept (its colours mean the same in every figure); else the swept config
    field with the most distinct values (seed excluded; ties in the caption's order of fields); else
    activation."""
    counts = {}
    for f in split.varying(runs):
        if f in NOT_GROUPS or f in split.BOOKKEEPING or (f == "clip_mode" and "clip" in runs):
            continue
        counts[f] = len([v for v in split.values_of(runs, f) if v is not split.NA])
    if not counts or "activation" in counts:
        return "activation"
    rank = {f: i for i, f in enumerate(split.FIELD_ORDER)}
    return max(counts, key=lambda f: (counts[f], -rank.get(f, len(rank))))


def line_fields(by: str) -> tuple[str, ...]:
    """The fields a line stands for: the activation with its slope and model (an LSTM's activation is
    its model), the clipping mode with its threshold, else `by` alone."""
    if by == "activation":
        return ("activation", "leaky_slope", "model")
    if by in CLIP:
        return ("clip_mode", "clip")
    return (by,)


def _label(values: dict) -> str:
    """A line's label from its varying fields' values: 'relu', 'leaky_relu, slope 0.1', 'lstm', 'c = 1'."""
    v = {k: x for k, x in values.items() if x is not split.NA}
    if "clip_mode" in values:
        if v.get("clip_mode") == "none":
            return "no clipping"
        return f"{v.get('clip_mode')} clip {split.fmt(v.get('clip'))}"
    parts = []
    model = v.get("model")
    if "activation" in v:
        parts.append(str(v["activation"]))
        if "model" in values and model not in (None, "mlp"):
            parts[-1] = f"{str(model).upper()} ({v['activation']})"
    elif model is not None:
        parts.append(str(model).upper())
    if "leaky_slope" in v and v.get("activation") == "leaky_relu":
        parts.append(f"slope {split.fmt(v['leaky_slope'])}")
    for k, x in v.items():
        if k not in ("activation", "model", "leaky_slope"):
            parts.append(f"{split.fmt(x)}" if len(v) == 1 else f"{k} {split.fmt(x)}")
    return ", ".join(parts) or "all runs"


def _colors(by: str, lines: list[split.Group]) -> list:
    """A colour per line: the activation's (the gated cells their model's), the model's, a threshold's
    (clipping's viridis, no clipping black), viridis for more than two numbers, else the sequence; lines
    that would share a colour get dashes."""
    out = []
    numeric = [g.values.get(by) for g in lines]
    is_num = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in numeric if x is not split.NA)
    for i, g in enumerate(lines):
        v = g.values
        if by == "activation":
            model, act = v.get("model"), v.get("activation")
            if model in ("lstm", "gru"):
                out.append(style.MODEL_COLORS[model])
            elif act == "leaky_relu" and v.get("leaky_slope") is not split.NA:
                leaky = [x.values for x in lines if x.values.get("activation") == "leaky_relu"]
                slopes = sorted({x.get("leaky_slope") for x in leaky})
                shades = _runinfo.shades(style.color_of(act), len(slopes), 0.5)
                out.append(shades[slopes.index(v.get("leaky_slope"))])
            else:
                out.append(style.color_of(act))
        elif by == "model":
            out.append(style.MODEL_COLORS.get(v.get("model"), "#777777"))
        elif by in CLIP:
            from gradlab.plots.clipping import _colors as clip_colors

            labels = ["none" if x.values.get("clip_mode") == "none" else split.fmt(x.values.get("clip")) for x in lines]
            out.append(clip_colors(labels)[labels[i]])
        elif is_num and len(lines) > 2:
            out.append(colormaps["viridis"](np.linspace(0.0, 0.85, len(lines))[i]))
        else:
            out.append(style.SEQUENCE[i % len(style.SEQUENCE)])
    return out


def _dashes(colors: list) -> list[str]:
    seen: dict = {}
    out = []
    for c in colors:
        key = tuple(np.round(_rgb(c), 3))
        n = seen.get(key, 0)
        seen[key] = n + 1
        out.append(("-", "--", "-.", ":")[n % 4])
    return out


def _rgb(color):
    from matplotlib.colors import to_rgb

    return to_rgb(color)


def _select(tables):
    _runinfo.need(tables, "runs", ["run_id"], "loss curves need runs")
    _runinfo.need(tables, "steps", ["run_id", "step", "loss"], "loss curves need the loss per step")
    runs, steps = tables["runs"], tables["steps"]
    notes = []
    if "status" in runs:
        failed = runs[runs["status"] == "failed"]
        if len(failed):
            notes.append(f"{len(failed)} failed run{'s' if len(failed) != 1 else ''} (nothing logged to draw)")
        runs = runs[runs["status"] != "failed"]
    logged = steps["run_id"].unique()  # isin(steps["run_id"]) itself: 0.28 s for the tour's 46k rows, this 1 ms
    silent = runs[~runs["run_id"].isin(logged)]
    if len(silent):
        notes.append(f"{len(silent)} run{'s' if len(silent) != 1 else ''} with no steps rows")
    runs = runs[runs["run_id"].isin(logged)]
    if runs.empty:
        raise style.SkipFigure("no runs with logged steps (all failed, or the steps table is empty)")
    if "status" not in runs:
        runs = runs.assign(status="ok")
    return tables, runs, notes


@style.styled
def draw(tables: dict[str, pd.DataFrame], by: str | None = None):
    if by is not None and by not in tables["runs"].columns:
        fields = ", ".join(split.fields(tables["runs"]))
        raise ValueError(f"by={by!r}: not a column of the runs table; one of {fields}")
    t, runs, notes = _select(tables)
    out = []
    parts = split.groups(runs, ["part"] if "part" in split.varying(runs) else [])
    for part in parts:
        line_by = by or default_by(part.runs)
        sub = split.subset(t, part.runs)
        drawn = split.draw_files(
            sub, part.runs, line_fields(line_by), lambda ctx, b=line_by, p=part: _draw(ctx, b, p), guide=CAPTION,
            roles={f: "lines" for f in line_fields(line_by)}, max_facets=MAX_PANELS, facet_role="panels",
            files_first=("folder",), notes=notes,
            what="runs" + (f" of part {part.values['part']}" if part.label else ""),
        )  # fmt: skip
        for d in drawn:
            d.suffix = "__".join(x for x in (part.suffix, d.suffix) if x)
        out += drawn
    return out


def _grid(ctx: split.Context) -> tuple[list[split.Group], int, int]:
    """The facets in a grid: with two faceted fields a row per value of the one with fewer values and a
    column per value of the other (when they fit in 5 columns), else row by row, at most 5 columns."""
    names = list(ctx.plan.facets)
    facets = ctx.facets
    if len(names) == 2:
        counts = {f: len(split.values_of(ctx.runs, f)) for f in names}
        outer, inner = sorted(names, key=lambda f: counts[f])
        if counts[inner] <= 5:
            facets = split.groups(ctx.runs, [outer, inner])
            by_cell = {(g.values[outer], g.values[inner]): g for g in facets}
            rows, cols = split.values_of(ctx.runs, outer), split.values_of(ctx.runs, inner)
            empty = split.Group({}, ctx.runs.iloc[0:0])
            return [by_cell.get((r, c), empty) for r in rows for c in cols], len(rows), len(cols)
    ncols = min(5, len(facets))
    return facets, -(-len(facets) // ncols), ncols


def _draw(ctx: split.Context, by: str, part: split.Group):
    runs, steps = ctx.runs, ctx.tables["steps"]
    fields = [f for f in line_fields(by) if f in runs.columns]
    lines_all = split.groups(runs, fields)
    colors = dict(zip([g.label for g in lines_all], _colors(by, lines_all)))
    dashes = dict(zip([g.label for g in lines_all], _dashes(list(colors.values()))))
    facets, nrows, ncols = _grid(ctx)
    one_task = "task" not in runs or runs["task"].nunique() == 1
    one_length = "steps" not in runs or runs["steps"].nunique() == 1  # else a short run is squeezed
    big = len(facets) == 1
    fig, axes = style.figure(nrows, ncols, width=6.2 if big else 3.4 if len(facets) <= 3 else 2.7,
                             height=2.9 if big else 2.4 if len(facets) <= 3 else 2.2,
                             sharey=one_task and not big, sharex=one_length)  # fmt: skip
    flat = list(axes.ravel())
    for ax in flat[len(facets):]:
        fig.delaxes(ax)
    any_diverged = False
    several = ctx.plan.seeds > 1
    finals = []
    windows = set()
    all_loss = []
    for ax, facet in zip(flat, facets):
        prun = facet.runs
        if prun.empty:  # a combination of the faceted fields that was not run
            ax.text(0.5, 0.5, "no runs", ha="center", va="center", transform=ax.transAxes, color="0.4")
            continue
        loss = _runinfo.wide_by_step(steps[steps["run_id"].isin(prun["run_id"])], prun, "loss")
        window = max(1, len(loss) // 40)
        windows.add(window)
        smooth = _runinfo.smooth(loss, window)
        raw = loss.to_numpy()
        finite_loss = raw[np.isfinite(raw)]
        all_loss.append(finite_loss)
        baseline = prun["baseline_loss"].dropna().unique() if "baseline_loss" in prun else []
        baseline = float(baseline[0]) if len(baseline) == 1 else None
        log = _runinfo.spans_decades(finite_loss)
        ref = baseline if baseline else (float(np.median(finite_loss)) if finite_loss.size else 1.0)
        cut = CUT * ref if log else np.inf
        for line in split.groups(prun, fields):
            key = line.label
            ids = [i for i in line.ids if i in smooth.columns]
            if not ids:
                continue
            med, lo, hi = split.band(smooth[ids].to_numpy().T)
            med = np.where(np.isfinite(med), med, np.nan)
            (drawn,) = ax.plot(smooth.index, med, color=colors[key], lw=1.6, linestyle=dashes[key])
            drawn.set_gid(f"median:{_label(line.values)}")
            if several and len(ids) > 1:
                style.fill_band(ax, smooth.index, np.minimum(lo, cut), np.minimum(hi, cut), colors[key],
                                gid=f"band:{_label(line.values)}")  # fmt: skip
            ok = med[np.isfinite(med)]
            if ok.size:
                finals.append((facet.label, _label(line.values), float(ok[-1]), baseline))
            for run_id in prun.loc[prun["run_id"].isin(ids) & (prun["status"] == "diverged"), "run_id"]:
                col = loss[run_id]
                good = col[np.isfinite(col)]
                last_step = good.index[-1] if len(good) else col.index.min()
                last = good.iloc[-1] if len(good) else ref
                (mark,) = ax.plot([last_step], [min(last, cut)], marker="x", color=colors[key], ms=7, mew=2,
                                  linestyle="none", clip_on=False)  # fmt: skip
                mark.set_gid("diverged")
                any_diverged = True
        if baseline:
            ax.axhline(baseline, color="0.5", linestyle=":", linewidth=1)
        if log:
            _runinfo.log_y(ax, np.append(finite_loss, baseline or np.nan), top=cut)
        ax.set_title(facet.label, loc="left", fontsize=8)
    for i, ax in enumerate(flat[: len(facets)]):
        if i // ncols == nrows - 1 or i + ncols >= len(facets):
            ax.set_xlabel("training step")
            ax.xaxis.set_tick_params(labelbottom=True)
        if i % ncols == 0:
            ax.set_ylabel("training loss (per batch)")
    handles = [Line2D([], [], color=colors[g.label], lw=2, linestyle=dashes[g.label]) for g in lines_all]
    labels = [f"{_label(g.values)} ({len(g.runs)})" for g in lines_all]
    handles.append(Line2D([], [], color="0.5", linestyle=":", linewidth=1))
    labels.append("best constant")
    if any_diverged:
        handles.append(Line2D([], [], marker="x", color="0.2", mew=2, linestyle="none"))
        labels.append("diverged")
    if several:
        handles.append(Patch(color="0.3", alpha=style.BAND_ALPHA))
        labels.append(f"median, band: {split.band_name(ctx.plan.seeds)}\nof seeds")
    title = f"{'clipping threshold' if by in CLIP else by} (runs)" if fields else "runs"
    flat[min(ncols, len(facets)) - 1].legend(handles, labels, title=title, loc="upper left", bbox_to_anchor=(1.0, 1.0),
                                             frameon=False, ncol=1 if len(handles) <= 12 else 2)  # fmt: skip
    where = f"part {part.values['part']}" if part.label else ""
    head = "Loss curves" + (f", {where}" if where else "")
    head += f", by {'clipping' if by in CLIP else by}" if fields else ""
    if windows != {1}:
        head += f" (running mean over {max(windows)} steps)"
    _runinfo.caption(fig, ctx.title(head, skip=line_fields(by)))
    _space(fig, sharey=one_task and not big)
    return fig, _text(finals)


def _space(fig, sharey: bool) -> None:
    """Margins and gaps in inches, set by hand: tight_layout measures every tick of every panel, seconds for
    a file of ten panels (savefig's tight bounding box still takes in the legend and the labels)."""
    w, h = fig.get_size_inches()
    lines = fig._suptitle.get_text().count("\n") + 1 if fig._suptitle is not None else 0
    top = 0.3 + 0.17 * lines
    fig.subplots_adjust(left=0.75 / w, right=1 - 0.1 / w, bottom=0.55 / h, top=1 - top / h,
                        wspace=0.12 if sharey else 0.35, hspace=0.45)  # fmt: skip


def _text(finals, limit: int = 40) -> str:
    if not finals:
        return ""
    panels: dict[str, list[str]] = {}
    for label, name, value, _ in finals[:limit]:
        panels.setdefault(label, []).append(f"{name} {value:.3g}")
    items = [(f"{label}: " if label else "") + ", ".join(v) for label, v in panels.items()]
    more = f" (the first {limit} of {len(finals)} lines)" if len(finals) > limit else ""
    baselines = {b for *_, b in finals if b}
    tail = f"; the best constant prediction's: {min(baselines):.3g}" if len(baselines) == 1 else ""
    return f"The loss at the last step, median over seeds{more}: " + "; ".join(items) + tail + "."
