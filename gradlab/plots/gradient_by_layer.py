"""Gradient norm per layer of the MLPs at initialisation, a panel per depth, with the mean-field
prediction dashed over the backpropagated error."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from gradlab import theory
from gradlab.nn.activations import DEFAULT_SLOPE
from gradlab.plots import _gradients as g
from gradlab.plots import select_runs, style

PART = "depth"
CAPTION = (
    "Gradient norm per layer (layer 0 nearest the input; grey band: the output layer), measured at "
    "initialisation (step 0, solid with markers) and at the last logged step (faint), a line per activation and "
    "a column per depth; y is logarithmic and shared along each row. Top: ||dL/dz_l||, the backpropagated "
    "error; bottom: ||dL/dW_l||. Dashed grey: the mean-field prediction, a factor sqrt(chi_1) per layer (in the "
    "legend), anchored at the last hidden layer's measured value, with sigma_w2 from the init (1/3 for the "
    "standard init U[-1/sqrt(n), 1/sqrt(n)]). Look at the slopes: a line that falls toward the input is "
    "vanishing, and the deeper the net, the more decades it loses. At the standard init every activation "
    "has chi_1 < 1: sigmoid falls fastest (x0.14 per layer), ReLU and leaky ReLU next (x0.41), tanh slowest "
    "(x0.58); with He init ReLU would be flat. A triangle on the bottom edge marks a gradient that is exactly 0."
)
MARKERS = {"sigmoid": "o", "tanh": "s", "relu": "^", "leaky_relu": "v", "identity": "D"}

ROWS = (
    ("delta_norm", "||dL/dz_l||, batch mean\n(loss / unit of z)"),
    ("weight_grad_norm", "||dL/dW_l||, Frobenius\n(loss / unit of W)"),
)


def _line(ax, x, y, **kw):
    """Plot the positive finite values; mark exact zeros with a triangle on the bottom edge."""
    y = np.asarray(y, dtype=np.float64)
    line = ax.plot(x, g.positive(y), **kw)[0]
    zeros = np.asarray(x)[y == 0]
    if zeros.size and kw.get("alpha", 1) == 1:
        ax.plot(zeros, np.zeros_like(zeros, dtype=float), marker="v", linestyle="none", color=kw.get("color"),
                transform=ax.get_xaxis_transform(), clip_on=False, markersize=5, gid=f"zero:{kw.get('gid', '')}")
    return line


def _prediction(group_runs: pd.DataFrame, activation: str, depth: int, anchor: float) -> np.ndarray | None:
    """Mean-field delta_norm for hidden layers 0..depth-1 anchored at the last one, or None."""
    if not (np.isfinite(anchor) and anchor > 0):
        return None
    sigma = g.hidden_sigma(group_runs.iloc[0])
    if sigma is None:
        return None
    slope = float(group_runs.iloc[0].get("leaky_slope", DEFAULT_SLOPE))
    try:
        return theory.predicted_delta_norms(activation, sigma[0], sigma[1], depth, slope=slope, last=anchor)
    except ValueError:
        return None


def _factor(runs: pd.DataFrame, activation: str) -> str:
    """' (x0.41 / layer predicted)': sqrt(chi_1) when the activation's runs share one init, else ''."""
    group = runs[runs["activation"] == activation]
    sigmas = {g.hidden_sigma(row) for _, row in group.iterrows()}
    slopes = set(group["leaky_slope"]) if "leaky_slope" in group else {DEFAULT_SLOPE}
    if len(sigmas) != 1 or None in sigmas or len(slopes) != 1:
        return ""
    (sw2, sb2), slope = sigmas.pop(), float(slopes.pop())
    try:
        return f" (x{theory.chi1(activation, sw2, sb2, slope) ** 0.5:.2f}/layer)"
    except ValueError:
        return ""


def draw(tables: dict[str, pd.DataFrame]):
    t = select_runs(tables, PART, model="mlp",
                    skip="no MLP runs (model = mlp) to draw gradients per layer from")
    runs = t["runs"]
    layers = g.need(t, "layers", g.LAYER_COLUMNS, "the MLP runs")
    layers = layers.merge(runs[["run_id", "depth", "activation"]], on="run_id")
    first = layers[layers["step"] == 0]
    if first.empty:
        raise style.SkipFigure("the MLP runs have no layers rows at step 0 (initialisation)")
    final = g.last_steps(layers)
    final = final[final["step"] > 0]
    final_steps = sorted(final["step"].unique())

    depths = sorted(int(d) for d in first["depth"].unique())
    acts = g.activations_in(first["activation"])
    fig, axes = style.figure(len(ROWS), len(depths), width=2.35, height=2.0, sharey="row", layout="constrained")
    for col, depth in enumerate(depths):
        for row, (value, label) in enumerate(ROWS):
            ax = axes[row, col]
            ax.set_yscale("log")
            ax.axvspan(depth - 0.5, depth + 0.5, color="0.92", zorder=0, linewidth=0)
            for act in acts:
                ids = runs[(runs["depth"] == depth) & (runs["activation"] == act)]
                at0 = first[first["run_id"].isin(ids["run_id"])]
                if at0.empty:
                    continue
                color = style.color_of(act)
                y0 = g.mean_over_runs(at0, "layer", value)
                _line(ax, y0.index, y0.values, color=color, marker=MARKERS.get(act, "o"), markersize=3,
                      markerfacecolor="none" if act == "leaky_relu" else color, gid=f"init:{act}", label=act)
                atN = final[final["run_id"].isin(ids["run_id"])]
                if not atN.empty:
                    yN = g.mean_over_runs(atN, "layer", value)
                    _line(ax, yN.index, yN.values, color=color, alpha=0.35, linewidth=1.0, gid=f"final:{act}")
                if value == "delta_norm":
                    pred = _prediction(ids, act, depth, float(y0.get(depth - 1, np.nan)))
                    if pred is not None:
                        ax.plot(np.arange(depth), g.positive(pred), **{**style.THEORY, "linewidth": 1.0}, zorder=5,
                                gid=f"theory:{act}")
            if row == 0:
                ax.set_title(f"depth L = {depth}")
            if row == len(ROWS) - 1:
                ax.set_xlabel("layer l (0 = input side)")
            if col == 0:
                ax.set_ylabel(label)
            ax.xaxis.get_major_locator().set_params(integer=True)
    handles = [
        Line2D([], [], color=style.color_of(a), marker=MARKERS.get(a, "o"), markersize=3.5,
               markerfacecolor="none" if a == "leaky_relu" else style.color_of(a), label=a + _factor(runs, a))
        for a in acts
    ]
    handles += [
        Line2D([], [], color="0.3", alpha=0.35,
               label="last logged step" + (f" ({final_steps[-1]})" if len(final_steps) == 1 else "")),
        Line2D([], [], **{**style.THEORY, "linewidth": 1.0}, label="mean-field prediction"),
        Patch(color="0.92", label="output layer"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)
    per_line = int(runs.groupby(["depth", "activation"]).size().max())
    note = f"; each line the geometric mean of up to {per_line} runs" if per_line > 1 else ""
    config = g.describe(runs, skip=("activation", "seed"))
    g.title(fig, "Gradient per layer at initialisation (step 0)", config + note)
    return fig
