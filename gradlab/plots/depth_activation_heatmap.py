"""log10 of the first-to-last hidden layer delta_norm ratio, depth x activation, at initialisation and
at the end of training."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.colors import Normalize

from gradlab.plots import _gradients as g
from gradlab.plots import select_runs, style

PART = "depth"
CAPTION = (
    "How many decades the backpropagated error loses between the last hidden layer and the first: each cell is "
    "log10(||dL/dz_0|| / ||dL/dz_(L-1)||) for an MLP with L hidden layers (rows) and an activation (columns), "
    "left at initialisation (step 0), right at each run's last logged step; the median over seeds when there "
    "are several. Blue (< 0): the gradient vanishes toward the input, -3 means the first layer gets a "
    "thousandth of the last layer's gradient; red (> 0): it grows; white: preserved. Look down a column: at the "
    "standard init the loss grows roughly linearly with depth, fastest for sigmoid. Grey cells: not "
    "computable (a norm that is inf/NaN or 0 in the last hidden layer); -inf: the first layer's gradient is "
    "exactly 0."
)
CMAP = "RdBu_r"  # ColorBrewer's diverging red-blue: colour-blind safe; blue = vanishing, red = exploding


def log10_ratio(first: float, last: float) -> float:
    """log10(first / last): -inf when only first is 0, NaN when last is 0 or either is inf/NaN."""
    if not (math.isfinite(first) and math.isfinite(last)) or last <= 0 or first < 0:
        return math.nan
    return -math.inf if first == 0 else math.log10(first / last)


def run_ratios(layers: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run and logged step: log10 of delta_norm at layer 0 over layer depth-1."""
    depth = runs.set_index("run_id")["depth"]
    df = layers[layers["run_id"].isin(depth.index)]
    last_hidden = df["run_id"].map(depth) - 1
    first = df[df["layer"] == 0].set_index(["run_id", "step"])["delta_norm"]
    last = df[df["layer"] == last_hidden].set_index(["run_id", "step"])["delta_norm"]
    both = pd.concat({"first": first, "last": last}, axis=1).dropna(how="all").reset_index()
    both["log10_ratio"] = [log10_ratio(f, l) for f, l in zip(both["first"], both["last"])]
    return both


def _cell(values: pd.Series) -> float:
    """The median of the finite values; -inf when there are none but some -inf; NaN otherwise."""
    v = values.to_numpy(dtype=np.float64)
    finite = v[np.isfinite(v)]
    if finite.size:
        return float(np.median(finite))
    return -math.inf if np.any(v == -np.inf) else math.nan


def grid(ratios: pd.DataFrame, runs: pd.DataFrame, depths: list[int], acts: list[str]) -> np.ndarray:
    """(depth x activation) array of the cell values."""
    info = runs.set_index("run_id")[["depth", "activation"]]
    df = ratios.join(info, on="run_id")
    out = np.full((len(depths), len(acts)), np.nan)
    for (d, a), cell in df.groupby(["depth", "activation"])["log10_ratio"]:
        if int(d) in depths and a in acts:
            out[depths.index(int(d)), acts.index(a)] = _cell(cell)
    return out


def _label(v: float) -> str:
    if v == -math.inf:
        return "-inf"
    return "n/a" if math.isnan(v) else f"{v:.1f}"


def draw(tables: dict[str, pd.DataFrame]):
    t = select_runs(tables, PART, model="mlp",
                    skip="no MLP runs (model = mlp) to compare depths and activations")
    runs = t["runs"]
    layers = g.need(t, "layers", g.LAYER_COLUMNS, "the MLP runs")
    ratios = run_ratios(layers, runs)
    init = ratios[ratios["step"] == 0]
    if init.empty:
        raise style.SkipFigure("the MLP runs have no delta_norm at step 0 in their first and last hidden layers")
    final = g.last_steps(ratios)
    final = final[final["step"] > 0]

    depths = sorted(int(d) for d in runs.loc[runs["run_id"].isin(init["run_id"]), "depth"].unique())
    acts = g.activations_in(runs.loc[runs["run_id"].isin(init["run_id"]), "activation"])
    panels = [("at initialisation (step 0)", grid(init, runs, depths, acts))]
    if not final.empty:
        steps = sorted(final["step"].unique())
        when = f"step {steps[-1]}" if len(steps) == 1 else f"steps {steps[0]}-{steps[-1]}"
        panels.append((f"end of training ({when})", grid(final, runs, depths, acts)))

    finite = np.concatenate([p[1][np.isfinite(p[1])] for p in panels])
    vmax = max(1.0, float(np.max(np.abs(finite)))) if finite.size else 1.0
    norm = Normalize(-vmax, vmax)
    cmap = style.plt.get_cmap(CMAP).with_extremes(bad="0.8")
    height = max(2.0, 0.34 * len(depths) + 1.0)
    width = max(2.6, 0.62 * len(acts) + 0.9)
    fig, axes = style.figure(1, len(panels), width=width, height=height, layout="constrained")
    for ax, (title, values) in zip(axes[0], panels):
        shown = np.where(values == -np.inf, -vmax, values)  # -inf cells take the most vanishing colour
        image = ax.imshow(np.ma.masked_invalid(shown), cmap=cmap, norm=norm, aspect="auto")
        for i in range(len(depths)):
            for j in range(len(acts)):
                v = values[i, j]
                dark = np.isfinite(shown[i, j]) and abs(shown[i, j]) > 0.6 * vmax
                ax.text(j, i, _label(v), ha="center", va="center", fontsize=8, color="white" if dark else "black",
                        gid=f"cell:{depths[i]}:{acts[j]}")
        ax.set_xticks(range(len(acts)), [a.replace("_", " ") for a in acts])
        ax.set_yticks(range(len(depths)), [str(d) for d in depths])
        ax.set_xlabel("activation")
        ax.set_ylabel("depth L (hidden layers)")
        ax.set_title(title)
        for side in ("top", "right"):
            ax.spines[side].set_visible(True)
    bar = fig.colorbar(image, ax=list(axes[0]), shrink=0.9)
    bar.set_label("log10(||dL/dz_0|| / ||dL/dz_(L-1)||)\n(decades; < 0: vanishing)")
    g.title(fig, "First-to-last hidden layer gradient ratio", g.describe(runs, skip=("activation", "seed")))
    return fig
