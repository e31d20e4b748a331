"""log10 of the first-to-last hidden layer delta_norm ratio, depth x activation, at initialisation and
at the end of training."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import Normalize

from gradlab.plots import _gradients as g
from gradlab.plots import select_runs, split, style

PART = "depth"
CAPTION = (
    "How many decades the backpropagated error loses between the last hidden layer and the first: each cell is "
    "log10(||dL/dz_0|| / ||dL/dz_(L-1)||) for an MLP with L hidden layers (rows) and an activation (columns), "
    "left at initialisation (step 0), right at each run's last logged step; with several seeds the median, "
    "and under it in brackets the seeds' band. Blue (< 0): the gradient vanishes toward the input, -3 means the "
    "first layer gets a thousandth of the last layer's gradient; red (> 0): it grows; white: preserved. Each "
    "cell also shows, after 'mf', mean field's prediction (L-1) log10 sqrt(chi_1) when the init is one "
    "gradlab.theory knows and the nets are plain (no norm layer, no residual connections). Grey cells: not "
    "computable (a norm that is inf/NaN or 0 in the last hidden layer); -inf: the first layer's gradient is "
    "exactly 0."
)
CMAP = "RdBu_r"  # ColorBrewer's diverging red-blue: colour-blind safe; blue = vanishing, red = exploding
DRAWS = ("model", "depth", "activation", "leaky_slope")
ROLES = {"depth": "rows of cells", "activation": "columns of cells", "leaky_slope": "a column per slope"}
MAX_FACETS = 4


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


def cell(values) -> tuple[float, float, float]:
    """(median, band low, band high) of a cell's runs: over the finite values (split.band's quantiles);
    -inf when there are none but some -inf; NaN otherwise."""
    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    if finite.size:
        med, lo, hi = split.band(finite[:, None])
        return float(med[0]), float(lo[0]), float(hi[0])
    x = -math.inf if np.any(v == -np.inf) else math.nan
    return x, x, x


def grid(ratios: pd.DataFrame, runs: pd.DataFrame, depths: list[int], keys: list) -> tuple[np.ndarray, ...]:
    """(median, low, high, runs per cell), each a (depth x line key) array."""
    out = np.full((3, len(depths), len(keys)), np.nan)
    counts = np.zeros((len(depths), len(keys)), dtype=int)
    by_run = ratios.groupby("run_id")["log10_ratio"]
    values = {rid: v.to_numpy() for rid, v in by_run}
    for j, key in enumerate(keys):
        for i, d in enumerate(depths):
            ids = runs.loc[(runs["depth"] == d) & g.key_mask(runs, key), "run_id"]
            v = [x for rid in ids if rid in values for x in values[rid]]
            if v:
                out[:, i, j] = cell(v)
                counts[i, j] = len(v)
    return out[0], out[1], out[2], counts


def _label(v: float) -> str:
    if v == -math.inf:
        return "-inf"
    return "n/a" if math.isnan(v) else f"{v:.1f}"


def _predicted(runs: pd.DataFrame, key, depth: int) -> float | None:
    """Mean field's log10 ratio, (depth - 1)/2 log10 chi_1, when the cell's runs share a known init."""

    chi = g.chi1_of(runs, key[0])
    if chi is None or chi <= 0:
        return None
    return (depth - 1) / 2 * math.log10(chi)


def _select(tables):
    t = select_runs(tables, PART, model="mlp", skip="no MLP runs (model = mlp) to compare depths and activations")
    runs = t["runs"]
    layers = g.need(t, "layers", g.LAYER_COLUMNS, "the MLP runs")
    ratios = run_ratios(layers, runs)
    at0 = set(ratios.loc[ratios["step"] == 0, "run_id"])
    if not at0:
        raise style.SkipFigure("the MLP runs have no delta_norm at step 0 in their first and last hidden layers")
    missing = runs[~runs["run_id"].isin(at0)]
    notes = []
    if len(missing):
        notes.append(f"{len(missing)} MLP run{'s' if len(missing) != 1 else ''} with no delta_norm at step 0 in "
                     "their first and last hidden layers")  # fmt: skip
    return t, runs[runs["run_id"].isin(at0)], notes


@style.styled
def draw(tables: dict[str, pd.DataFrame], by: str | None = None):
    t, runs, notes = _select(tables)
    return split.draw_files(t, runs, DRAWS, _draw, guide=CAPTION, roles=ROLES, max_facets=MAX_FACETS, by=by,
                            notes=notes, what="MLP runs")  # fmt: skip


def _draw(ctx: split.Context):
    runs = ctx.runs
    ratios = run_ratios(ctx.tables["layers"], runs)
    init = ratios[ratios["step"] == 0]
    final = g.last_steps(ratios)
    final = final[final["step"] > 0]
    depths = sorted(int(d) for d in runs["depth"].unique())
    keys = g.line_keys(runs)
    moments = [("at initialisation (step 0)", init, True)]
    if not final.empty:
        steps = sorted(final["step"].unique())
        when = f"step {steps[-1]}" if len(steps) == 1 else f"steps {steps[0]}-{steps[-1]}"
        moments.append((f"end of training ({when})", final, False))
    panels = []  # (facet, title, median, lo, hi, counts, with theory)
    for facet in ctx.facets:
        for title, rows, theory_too in moments:
            med, lo, hi, counts = grid(rows, facet.runs, depths, keys)
            panels.append((facet, title, med, lo, hi, counts, theory_too))
    finite = np.concatenate([p[2][np.isfinite(p[2])] for p in panels])
    vmax = max(1.0, float(np.max(np.abs(finite)))) if finite.size else 1.0
    norm = Normalize(-vmax, vmax)
    cmap = colormaps[CMAP].with_extremes(bad="0.8")
    several = ctx.plan.seeds > 1
    height = max(2.0, (0.5 if several else 0.4) * len(depths) + 1.1)
    width = max(2.6, 0.75 * len(keys) + 1.0)
    fig, axes = style.figure(len(ctx.facets), len(moments), width=width, height=height, layout="constrained")
    numbers = []
    for k, (facet, title, med, lo, hi, counts, theory_too) in enumerate(panels):
        ax = axes.flat[k]
        shown = np.where(med == -np.inf, -vmax, med)  # -inf cells take the most vanishing colour
        image = ax.imshow(np.ma.masked_invalid(shown), cmap=cmap, norm=norm, aspect="auto")
        for i, depth in enumerate(depths):
            for j, key in enumerate(keys):
                v = med[i, j]
                dark = np.isfinite(shown[i, j]) and abs(shown[i, j]) > 0.6 * vmax
                color = "white" if dark else "black"
                name = g.key_label(key, keys)
                lines = [_label(v)]
                if counts[i, j] > 1 and np.isfinite(lo[i, j]):
                    band = f"[{lo[i, j]:.1f}, {hi[i, j]:.1f}]"
                    ax.text(j, i + 0.3, band, ha="center", va="center", fontsize=6, color=color,
                            gid=f"band:{depth}:{name}")  # fmt: skip
                pred = _predicted(facet.runs[(facet.runs["depth"] == depth) & g.key_mask(facet.runs, key)], key, depth)
                if theory_too and pred is not None and counts[i, j]:
                    ax.text(j, i - 0.3, f"mf {pred:.1f}", ha="center", va="center", fontsize=6, color=color,
                            gid=f"theory:{depth}:{name}")  # fmt: skip
                    if np.isfinite(v):
                        numbers.append((facet.label, name, depth, v, pred))
                elif theory_too and counts[i, j] and np.isfinite(v):
                    numbers.append((facet.label, name, depth, v, None))
                ax.text(j, i, lines[0], ha="center", va="center", fontsize=8, color=color, gid=f"cell:{depth}:{name}")
        ax.set_xticks(range(len(keys)), [g.key_label(key, keys).replace("_", " ") for key in keys])
        ax.set_yticks(range(len(depths)), [str(d) for d in depths])
        ax.set_xlabel("activation")
        ax.set_ylabel("depth $L$ (hidden layers)")
        ax.set_title(f"{facet.label}\n{title}" if facet.label else title)
        for side in ("top", "right"):
            ax.spines[side].set_visible(True)
    bar = fig.colorbar(image, ax=list(axes.flat), shrink=0.9 if len(ctx.facets) == 1 else 0.6)
    bar.set_label(r"$\log_{10}(\|\partial L/\partial z_0\| \,/\, \|\partial L/\partial z_{L-1}\|)$"
                  "\n(decades; < 0: vanishing)")  # fmt: skip
    g.title(fig, ctx.title("First-to-last hidden layer gradient ratio", skip=("activation",)))
    return fig, _text(numbers)


def _text(numbers) -> str:
    if not numbers:
        return ""
    deepest = max(n[2] for n in numbers)
    items = []
    for label, name, depth, v, pred in numbers:
        if depth == deepest:
            text = f"{name} {v:+.1f}" + (f" (mean field {pred:+.1f})" if pred is not None else "")
            items.append((f"{label}: " if label else "") + text)
    return f"Decades at step 0 in the deepest nets (L = {deepest}): " + "; ".join(items) + "."
