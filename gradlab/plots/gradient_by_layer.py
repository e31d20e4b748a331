"""Gradient norm per layer of the MLPs at initialisation, a column of panels per depth, a line per
activation, with the mean-field prediction dashed over the backpropagated error; any other field that
differs is a row of panels (or a file), seeds a median with a band."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from gradlab.plots import _gradients as g
from gradlab.plots import select_runs, split, style

PART = "depth"
CAPTION = (
    "Gradient norm per layer (layer 0 nearest the input; grey band: the output layer): solid with markers at "
    "initialisation (step 0), dotted in the same colour at the last logged step; a line per activation, a "
    "column of panels per depth L, log y. Top row of each pair: the backpropagated error ||dL/dz_l||; bottom: "
    "the weight gradient ||dL/dW_l||. Dashed grey: the mean-field prediction for a plain net (no norm layer, "
    "no residual connections), a factor sqrt(chi_1) per layer toward the input (chi_1 from the activation "
    "and the init's weight variance n Var[W] = sigma_w^2), anchored at the last hidden layer's measured "
    "value. A line that falls toward the input is vanishing, one that rises is exploding; panels of different "
    "depths have their own y range (panels of one depth share theirs), so compare slopes by the decades on "
    "their axes. A triangle on the bottom edge marks a gradient that is exactly 0."
)
MARKERS = {"sigmoid": "o", "tanh": "s", "relu": "^", "leaky_relu": "v", "identity": "D"}
DRAWS = ("model", "depth", "activation", "leaky_slope")
ROLES = {"depth": "columns of panels", "activation": "lines, in its colour", "leaky_slope": "shades of a line"}
MAX_FACETS = 3  # rows of panel pairs before the other values go to files

ROWS = (
    ("delta_norm", r"$\|\partial L/\partial z_l\|$" + "\nbatch mean"),
    ("weight_grad_norm", r"$\|\partial L/\partial W_l\|_F$"),
)


def _zeros(ax, x, y, color, gid: str) -> None:
    """Mark exact zeros (which a log axis cannot show) with a triangle on the bottom edge."""
    y = np.asarray(y, dtype=np.float64)
    zeros = np.asarray(x)[y == 0]
    if zeros.size:
        ax.plot(zeros, np.zeros_like(zeros, dtype=float), marker="v", linestyle="none", color=color,
                transform=ax.get_xaxis_transform(), clip_on=False, markersize=5, gid=f"zero:{gid}")  # fmt: skip


def _select(tables):
    t = select_runs(tables, PART, model="mlp", skip="no MLP runs (model = mlp) to draw gradients per layer from")
    runs = t["runs"]
    layers = g.need(t, "layers", g.LAYER_COLUMNS, "the MLP runs")
    at0 = set(layers.loc[layers["step"] == 0, "run_id"])
    missing = runs[~runs["run_id"].isin(at0)]
    notes = []
    if len(missing):
        ids = ", ".join(missing["run_id"].astype(str)[:3]) + (", ..." if len(missing) > 3 else "")
        notes.append(f"{len(missing)} MLP run{'s' if len(missing) != 1 else ''} with no layers rows at step 0 ({ids})")
    runs = runs[runs["run_id"].isin(at0)]
    if runs.empty:
        raise style.SkipFigure("the MLP runs have no layers rows at step 0 (initialisation)")
    return t, runs, notes


@style.styled
def draw(tables: dict[str, pd.DataFrame], by: str | None = None):
    t, runs, notes = _select(tables)
    return split.draw_files(t, runs, DRAWS, _draw, guide=CAPTION, roles=ROLES, max_facets=MAX_FACETS, by=by,
                            notes=notes, what="MLP runs")  # fmt: skip


def _draw(ctx: split.Context):
    runs, facets = ctx.runs, ctx.facets
    layers = ctx.tables["layers"].merge(runs[["run_id", "depth"]], on="run_id")
    first = layers[layers["step"] == 0]
    final = g.last_steps(layers)
    final = final[final["step"] > 0]
    final_steps = sorted(final["step"].unique())
    depths = sorted(int(d) for d in runs["depth"].unique())
    keys = g.line_keys(runs)
    nrows = len(ROWS) * len(facets)
    fig, axes = style.figure(nrows, len(depths), width=2.35, height=1.9, layout="constrained")
    limits: dict[tuple[int, int], list] = {}  # (quantity row, depth) -> values drawn, for one y range
    numbers = []  # (facet label, key, depth, measured factor, predicted sqrt chi1, decades, predicted decades)
    for f, facet in enumerate(facets):
        for col, depth in enumerate(depths):
            for r, (value, label) in enumerate(ROWS):
                ax = axes[f * len(ROWS) + r, col]
                ax.set_yscale("log")
                ax.axvspan(depth - 0.5, depth + 0.5, color="0.92", zorder=0, linewidth=0)
                ax.set_xlim(-0.5, depth + 0.5)
                if not (facet.runs["depth"] == depth).any():  # a combination that was not run
                    ax.text(0.5, 0.5, "no runs", ha="center", va="center", transform=ax.transAxes, color="0.4")
                for key in keys:
                    group = facet.runs[(facet.runs["depth"] == depth) & g.key_mask(facet.runs, key)]
                    at0 = first[first["run_id"].isin(group["run_id"])]
                    if at0.empty:
                        continue
                    color, name = g.key_color(key, keys), g.key_label(key, keys)
                    rows0 = g.wide(at0, "layer", value)
                    x = rows0.columns.to_numpy()
                    med = g.line(ax, x, rows0.to_numpy(), color, f"init:{name}", marker=MARKERS.get(key[0], "o"),
                                 markersize=3, markerfacecolor="none" if key[0] == "leaky_relu" else color,
                                 markevery=max(1, (depth + 1) // 17))  # fmt: skip
                    _zeros(ax, x, med, color, name)
                    limits.setdefault((r, col), []).append(med)
                    atN = final[final["run_id"].isin(group["run_id"])]
                    if not atN.empty:
                        rowsN = g.wide(atN, "layer", value)
                        medN = g.line(ax, rowsN.columns.to_numpy(), rowsN.to_numpy(), color, f"final:{name}",
                                      band=False, **style.LATER)  # fmt: skip
                        limits[(r, col)].append(medN)
                    if value == "delta_norm":
                        anchor = float(dict(zip(x, med)).get(depth - 1, math.nan))
                        pred = g.mean_field_deltas(group, key[0], depth, anchor)
                        if pred is not None:
                            ax.plot(np.arange(depth), g.positive(pred), **{**style.THEORY, "linewidth": 1.0},
                                    zorder=5, gid=f"theory:{name}")  # fmt: skip
                        numbers.append((facet.label, name, depth, _measured(x, med, depth), g.chi1_of(group, key[0]),
                                        pred))  # fmt: skip
                title = f"depth $L = {depth}$"
                if facet.label and r == 0:
                    title = f"{facet.label}\n{title}"
                if r == 0:
                    ax.set_title(title)
                if f * len(ROWS) + r == nrows - 1:
                    ax.set_xlabel("layer $l$ (0 = input side)")
                if col == 0:
                    ax.set_ylabel(label)
                ax.xaxis.get_major_locator().set_params(integer=True)
    for f in range(len(facets)):  # panels of one quantity and depth share a y range; depths do not
        for (r, col), drawn in limits.items():
            g.log_ylim(axes[f * len(ROWS) + r, col], drawn)
    handles = []
    for key in keys:
        color = g.key_color(key, keys)
        chi = g.chi1_of(runs[g.key_mask(runs, key)], key[0])
        factor = rf" ($\sqrt{{\chi_1}} = {chi ** 0.5:.2f}$)" if chi is not None else ""
        handles.append(Line2D([], [], color=color, marker=MARKERS.get(key[0], "o"), markersize=3.5,
                              markerfacecolor="none" if key[0] == "leaky_relu" else color,
                              label=g.key_label(key, keys) + factor))  # fmt: skip
    handles.append(Line2D([], [], color="0.3", **style.LATER,
                          label="last logged step" + (f" ({final_steps[-1]})" if len(final_steps) == 1 else "")))  # fmt: skip
    if any(n[-1] is not None for n in numbers):  # no legend entry for a prediction drawn nowhere
        handles.append(Line2D([], [], **{**style.THEORY, "linewidth": 1.0}, label="mean-field prediction"))
    handles.append(Patch(color="0.92", label="output layer"))
    if ctx.plan.seeds > 1:
        handles.append(Patch(color="0.3", alpha=style.BAND_ALPHA,
                             label=f"median, band: {split.band_name(ctx.plan.seeds)} of seeds"))  # fmt: skip
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4, 2 * len(depths)), frameon=False)
    g.title(fig, ctx.title("Gradient per layer at initialisation (step 0)", skip=("activation",)))
    return fig, _text(numbers)


def _measured(x, med, depth: int) -> float:
    """The measured factor per layer, (delta_0 / delta_(L-1))^(1/(L-1)); NaN when not computable."""
    return 10 ** (g.decades(x, med, 0, depth - 1) / (depth - 1)) if depth >= 2 else math.nan


def _text(numbers) -> str:
    """The measured per-layer factors and decades of the deepest nets beside mean field's."""
    if not numbers:
        return ""
    deepest = max(n[2] for n in numbers)
    items = []
    for label, name, depth, factor, chi, pred in numbers:
        if depth != deepest or not math.isfinite(factor):
            continue
        decades = (depth - 1) * math.log10(factor)
        text = f"{name} x{factor:.2f} per layer, {decades:+.1f} decades"
        if chi is not None:
            text += f" (mean field: x{chi ** 0.5:.2f}, {(depth - 1) * 0.5 * math.log10(chi):+.1f})"
        items.append((f"{label}: " if label else "") + text)
    if not items:
        return ""
    return (f"Measured at step 0 from layer L-1 to layer 0 of the deepest nets (L = {deepest}, median over seeds): "
            + "; ".join(items) + ".")  # fmt: skip
