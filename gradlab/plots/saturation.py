"""Saturation: the fraction of sigmoid and tanh units whose derivative is below 1% of its maximum, per
hidden layer, at initialisation and at the end of training; any other field that differs is a row of
panels (or a file), seeds a median with a band."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from gradlab.plots import _runinfo, select_runs, split, style
from gradlab.probes import SATURATION

PART = "saturation"  # the tour's part at a too-large init (the depth part's standard init saturates nothing)
CAPTION = (
    f"Saturated units per hidden layer of MLPs with a squashing activation, at initialisation (left) and at "
    f"the end of training (right): the fraction of units x examples where phi'(z) is below {SATURATION:.0%} of "
    "its maximum, where almost no gradient passes. A line per activation (its colour) and depth (darker is "
    "deeper); with several seeds the median over them, with a band. Where every line stays at 0 the units work "
    "in their near-linear range, and a vanishing gradient there comes from phi' itself and the weights' scale, "
    "not from saturation."
)

ACTIVATIONS = ("sigmoid", "tanh")
DRAWS = ("model", "activation", "depth")
ROLES = {"activation": "lines, in its colour", "depth": "shades of a line (darker is deeper)"}
MAX_FACETS = 4


def threshold(activation: str) -> float:
    """|z| beyond which phi'(z) < SATURATION max phi' (sigmoid about 6.0, tanh about 3.0)."""
    if activation == "sigmoid":  # s (1 - s) = SATURATION / 4
        s = (1 - math.sqrt(1 - SATURATION)) / 2
        return math.log((1 - s) / s)
    if activation == "tanh":  # 1 - tanh^2 = SATURATION
        return math.atanh(math.sqrt(1 - SATURATION))
    raise ValueError(activation)


def _select(tables):
    _runinfo.need(tables, "runs", ["run_id", "model", "activation", "depth"], "saturation needs MLP runs")
    _runinfo.need(tables, "layers", ["run_id", "step", "layer", "saturated_frac"], "saturation")
    t = select_runs(tables, PART, model="mlp", activation=list(ACTIVATIONS),
                    skip="no MLP runs with sigmoid or tanh activation")  # fmt: skip
    runs = t["runs"]
    layers = t["layers"].merge(runs[["run_id", "depth"]], on="run_id")
    hidden = layers[(layers["layer"] < layers["depth"]) & np.isfinite(layers["saturated_frac"].astype(float))]
    if hidden.empty:
        raise style.SkipFigure("no saturated_frac for hidden layers of the sigmoid/tanh MLPs")
    ok = runs["run_id"].isin(hidden["run_id"].unique())
    notes = []
    if (~ok).sum():
        n = int((~ok).sum())
        notes.append(f"{n} sigmoid/tanh MLP run{'s' if n != 1 else ''} with no saturated_frac for their hidden layers")
    return t, runs[ok], notes


@style.styled
def draw(tables: dict[str, pd.DataFrame], by: str | None = None):
    t, runs, notes = _select(tables)
    return split.draw_files(t, runs, DRAWS, _draw, guide=CAPTION, roles=ROLES, max_facets=MAX_FACETS, by=by,
                            notes=notes, what="sigmoid/tanh MLP runs")  # fmt: skip


def _draw(ctx: split.Context):
    runs = ctx.runs
    layers = ctx.tables["layers"].merge(runs[["run_id", "activation", "depth"]], on="run_id")
    hidden = layers[(layers["layer"] < layers["depth"]) & np.isfinite(layers["saturated_frac"].astype(float))]
    first = hidden.groupby("run_id")["step"].transform("min")
    last = hidden.groupby("run_id")["step"].transform("max")
    end_steps = sorted(hidden.loc[(hidden["step"] == last) & (last > 0), "step"].unique())
    when = ""
    if end_steps:
        when = f" (step {end_steps[-1]})" if len(end_steps) == 1 else f" (steps {end_steps[0]}-{end_steps[-1]})"
    moments = [
        ("(a) at initialisation", hidden[(hidden["step"] == 0) & (first == 0)]),
        (f"(b) end of training{when}", hidden[(hidden["step"] == last) & (last > 0)]),
    ]
    facets = ctx.facets
    fig, axes = style.figure(len(facets), 2, width=3.6, height=2.7, sharey=True)
    depths = sorted(int(d) for d in runs["depth"].unique())
    acts = [a for a in ACTIVATIONS if (runs["activation"] == a).any()]
    colors = {a: dict(zip(depths, reversed(_runinfo.shades(style.color_of(a), len(depths), 0.65)))) for a in acts}
    several = ctx.plan.seeds > 1
    peak = 0.0
    numbers = []
    for f, facet in enumerate(facets):
        ids = set(facet.runs["run_id"])
        for c, (name, rows) in enumerate(moments):
            ax = axes[f, c]
            rows = rows[rows["run_id"].isin(ids)]
            for a in acts:
                for d in reversed(depths):  # the shallow (lighter) lines on top, where they overlap
                    sel = rows[(rows["activation"] == a) & (rows["depth"] == d)]
                    if sel.empty:
                        continue
                    wide = sel.pivot_table(index="run_id", columns="layer", values="saturated_frac")
                    med, lo, hi = split.band(wide.to_numpy())
                    x = wide.columns.to_numpy()
                    peak = max(peak, float(np.nanmax(hi)))
                    (line,) = ax.plot(x, med, color=colors[a][d], marker="o", ms=2.5, linewidth=1.3)
                    line.set_gid(f"{a}:{d}")
                    if several and wide.shape[0] > 1:
                        style.fill_band(ax, x, lo, hi, colors[a][d], gid=f"band:{a}:{d}")
                    numbers.append((facet.label, c, a, d, float(np.nanmean(med))))
            if rows.empty:
                ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
            elif rows["saturated_frac"].max() == 0:
                text = f"no unit saturated in any layer\n($\\phi' \\geq$ {SATURATION:.0%} of its max everywhere)"
                ax.text(0.5, 0.55, text,
                        ha="center", va="center", transform=ax.transAxes, color="0.3")  # fmt: skip
            ax.set_title(f"{name}\n{facet.label}" if facet.label else name, loc="left")
            ax.set_xlabel("hidden layer (0 = nearest the input)")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[f, 0].set_ylabel(f"fraction saturated\n($\\phi' <$ {SATURATION:.0%} of its max)")
    top = 1.0 if peak > 0.3 else max(0.1, 1.2 * peak)
    axes[0][0].set_ylim(-0.03 * top, 1.03 * top)
    handles = [Line2D([], [], color=style.color_of(a), label=f"{a} ($|z| > {threshold(a):.1f}$)") for a in acts]
    handles += [Line2D([], [], color=_runinfo.shade("0.2", s), label=f"{d} hidden layers")
                for d, s in zip(depths, reversed(np.linspace(0, 0.65, len(depths))))]  # fmt: skip
    if several:
        handles.append(Patch(color="0.3", alpha=style.BAND_ALPHA,
                             label=f"median, band:\n{split.band_name(ctx.plan.seeds)} of seeds"))  # fmt: skip
    axes[0][1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    _runinfo.caption(fig, ctx.title("Saturation", skip=("activation", "depth")))
    fig.tight_layout()
    return fig, _text(numbers, acts)


def _text(numbers, acts) -> str:
    if not numbers:
        return ""
    thresholds = ", ".join(f"{a} |z| > {threshold(a):.1f}" for a in acts)
    items = []
    for label, moment, a, d, mean in sorted(numbers, key=lambda n: (n[0], n[1], ACTIVATIONS.index(n[2]), n[3])):
        items.append((f"{label}: " if label else "") + f"{a}, depth {d}, {'start' if moment == 0 else 'end'} "
                     f"{mean:.0%}")  # fmt: skip
    return (f"Saturated where {thresholds}. Mean over the hidden layers (median over seeds): " + "; ".join(items)
            + ".")  # fmt: skip
