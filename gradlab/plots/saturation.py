"""Saturation: the fraction of sigmoid and tanh units whose derivative is below 1% of its maximum, per
hidden layer, at initialisation and at the end of training."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from gradlab.plots import _runinfo, select_runs, style

PART = "saturation"  # the tour's part at a too-large init (the depth part's standard init saturates nothing)
CAPTION = (
    "Saturated units per hidden layer of sigmoid and tanh MLPs, at initialisation (left) and at the end "
    "of training (right): the fraction of units x examples where phi'(z) is below 1% of its maximum "
    "(sigmoid |z| > 6.0, tanh |z| > 3.0), where almost no gradient passes. A line per activation "
    "(its colour) and depth (darker is deeper), mean over the runs of that pair. Saturated layers pass "
    "almost no gradient back; where every line stays at 0 the units work in their near-linear range, "
    "and a vanishing gradient there comes from phi' <= 1/4 (sigmoid) and small weights, not from "
    "saturation."
)

ACTIVATIONS = ("sigmoid", "tanh")


def draw(tables: dict[str, pd.DataFrame]):
    _runinfo.need(tables, "runs", ["run_id", "model", "activation", "depth"], "saturation needs MLP runs")
    _runinfo.need(tables, "layers", ["run_id", "step", "layer", "saturated_frac"], "saturation")
    t = select_runs(tables, PART, model="mlp", activation=list(ACTIVATIONS),
                    skip="no MLP runs with sigmoid or tanh activation")
    runs = t["runs"]
    layers = t["layers"].merge(runs[["run_id", "activation", "depth"]], on="run_id")
    hidden = layers[(layers["layer"] < layers["depth"]) & np.isfinite(layers["saturated_frac"].astype(float))]
    if hidden.empty:
        raise style.SkipFigure("no saturated_frac for hidden layers of the sigmoid/tanh MLPs")
    runs = runs[runs["run_id"].isin(hidden["run_id"])]

    first = hidden.groupby("run_id")["step"].transform("min")
    last = hidden.groupby("run_id")["step"].transform("max")
    moments = [
        ("(a) at initialisation", hidden[(hidden["step"] == 0) & (first == 0)]),
        (f"(b) end of training (step {int(hidden['step'].max())})", hidden[(hidden["step"] == last) & (last > 0)]),
    ]
    fig, axes = style.figure(1, 2, width=3.6, height=2.9, sharey=True)
    depths = sorted(int(d) for d in runs["depth"].unique())
    acts = [a for a in ACTIVATIONS if (runs["activation"] == a).any()]
    colors = {a: dict(zip(depths, reversed(_runinfo.shades(style.color_of(a), len(depths), 0.65)))) for a in acts}
    peak = 0.0
    for ax, (name, rows) in zip(axes[0], moments):
        for a in acts:
            for d in reversed(depths):  # the shallow (lighter) lines on top, where they overlap
                sel = rows[(rows["activation"] == a) & (rows["depth"] == d)]
                if sel.empty:
                    continue
                curve = sel.groupby("layer")["saturated_frac"].mean()
                peak = max(peak, float(curve.max()))
                (line,) = ax.plot(curve.index, curve.to_numpy(), color=colors[a][d], marker="o", ms=2.5,
                                  linewidth=1.3)  # fmt: skip
                line.set_gid(f"{a}:{d}")
        if rows.empty:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
        elif rows["saturated_frac"].max() == 0:
            ax.text(0.5, 0.55, "no unit saturated in any layer\n(phi' >= 1% of its max everywhere)",
                    ha="center", va="center", transform=ax.transAxes, color="0.3")  # fmt: skip
        ax.set_title(name, loc="left")
        ax.set_xlabel("hidden layer (0 = nearest the input)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0][0].set_ylabel("fraction saturated (phi' < 1% of max)")
    top = 1.0 if peak > 0.3 else max(0.1, 1.2 * peak)
    axes[0][0].set_ylim(-0.03 * top, 1.03 * top)
    handles = [Line2D([], [], color=style.color_of(a), label=a) for a in acts]
    handles += [Line2D([], [], color=_runinfo.shade("0.2", s), label=f"{d} hidden layers")
                for d, s in zip(depths, reversed(np.linspace(0, 0.65, len(depths))))]  # fmt: skip
    axes[0][1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    _runinfo.caption(fig, _runinfo.title("Saturation, sigmoid and tanh", runs, skip=("activation", "depth")))
    fig.tight_layout()
    return fig
