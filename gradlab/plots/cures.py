"""The cures beside the disease, in two files. cures__depth: the backpropagated error per layer of one MLP
plain, residual, layer- and batch-normed (mean field's prediction dashed over the plain net); cures__time:
dL/dh_t of the RNN, the GRU and the LSTM, one and several stacked layers (Pascanu's bound dashed over the
one-layer RNN). A row of panels at initialisation and one at the last logged step; any other field that
differs is a row of panels (or a file), seeds a median with a band."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from gradlab.plots import _gradients as g
from gradlab.plots import select_runs, split, style
from gradlab.plots.gradient_through_time import GATED, _keys, _mask, _style_of, bound_of, value_column

PART = "cures"
HEAD = (
    "What cures vanishing gradients, beside the net it cures; log y. Top row: at initialisation (step 0); bottom "
    "row: at the last logged step. "
)
DEPTH_GUIDE = HEAD + (
    "All panels share one y range. The backpropagated error ||dL/dz_l|| (batch mean) against the layer l (0 nearest the input; grey band: "
    "the output layer), a column of panels without and with residual connections (a_l = a_(l-1) + s phi(z_l)), "
    "a line per normalization (black none, orange layer norm, purple batch norm); dashed grey over the plain "
    "net: mean field's prediction, a factor sqrt(chi_1) per layer, anchored at its last hidden layer (no closed "
    "form is drawn for the residual or normed nets). A line that stays level carries the gradient to the first "
    "layer; one that falls toward l = 0 vanishes."
)
TIME_GUIDE = HEAD + (
    "Each panel has its own y range (a vanished gradient spans tens of decades). ||dL/dh_t|| against the time step t, a column of panels per number of stacked cell layers, a line per "
    "cell (an RNN in its activation's colour with circles, the LSTM vermillion with squares, the GRU sky blue "
    "with diamonds); solid: cell layer 0, whose gradient reaches the inputs; dash-dotted: the top cell layer, "
    "which the readout reads. Read it from right to left, back in time: a line that falls toward t = 0 "
    "vanishes. Dashed, over the one-layer RNN: Pascanu et al.'s bound (gamma ||W_hh||_2)^(T-1-t) "
    "||dL/dh_(T-1)||."
)
CAPTION = f"Two files. cures__depth: {DEPTH_GUIDE} cures__time: {TIME_GUIDE}"
NORM_COLORS = {"none": "#000000", "layer": "#E69F00", "batch": "#CC79A7"}
NORM_NAMES = {"none": "no norm", "layer": "layer norm", "batch": "batch norm"}
DEPTH_DRAWS = ("model", "depth", "norm", "residual")
DEPTH_ROLES = {"depth": "columns of panels", "norm": "lines, in its colour", "residual": "columns of panels"}
TIME_DRAWS = ("model", "activation", "leaky_slope", "layers", "T")
TIME_ROLES = {"model": "lines, colour and marker", "activation": "an RNN's colour", "leaky_slope": "shades",
              "layers": "columns of panels", "T": "columns of panels"}  # fmt: skip
MAX_FACETS = 2
UPPER = dict(linestyle="-.", linewidth=1.1)  # a stacked net's top cell layer, in its cell's colour
DEFAULTS = {"norm": "none", "residual": False, "layers": 1}  # tables written before the cures


@style.styled
def draw(tables: dict[str, pd.DataFrame], by: str | None = None):
    t = select_runs(tables, PART)
    runs = t["runs"].assign(**{k: t["runs"].get(k, v) for k, v in DEFAULTS.items()})
    runs = runs.assign(residual=runs["residual"].fillna(False).astype(bool), layers=runs["layers"].fillna(1).astype(int))
    t = {**t, "runs": runs}
    out, why = [], []
    for name, select, draw_one, draws, roles, guide, what in (
        ("depth", _depth_runs, _draw_depth, DEPTH_DRAWS, DEPTH_ROLES, DEPTH_GUIDE, "MLP runs"),
        ("time", _time_runs, _draw_time, TIME_DRAWS, TIME_ROLES, TIME_GUIDE, "recurrent runs"),
    ):
        chosen, notes, reason = select(t)
        if chosen is None:
            why.append(reason)
            continue
        drawn = split.draw_files(t, chosen, draws, draw_one, guide=guide, roles=roles, max_facets=MAX_FACETS,
                                 by=by, notes=notes, what=what)  # fmt: skip
        for d in drawn:
            d.suffix = name + (f"__{d.suffix}" if d.suffix else "")
        out += drawn
    if not out:
        raise style.SkipFigure("; ".join(why))
    return out


# ---- which runs ---------------------------------------------------------------------------------


def _at_init(runs: pd.DataFrame, table: pd.DataFrame | None, what: str) -> tuple[pd.DataFrame, list[str]]:
    """The runs with rows at step 0 in `table`, and a note naming those without."""
    at0 = set() if table is None else set(table.loc[table["step"] == 0, "run_id"])
    missing = runs[~runs["run_id"].isin(at0)]
    notes = [f"{len(missing)} {what} with no rows at step 0"] if len(missing) else []
    return runs[runs["run_id"].isin(at0)], notes


def _depth_runs(t):
    """(MLP runs, notes, None), or (None, None, why) when no MLP run has a cure (norm or residual)."""
    mlp = t["runs"][t["runs"]["model"] == "mlp"]
    cured = (mlp["norm"] != "none") | mlp["residual"]
    return _chosen(t, mlp, cured, "no MLP run with a cure (model.norm layer or batch, or model.residual)",
                   "layers", g.LAYER_COLUMNS, "MLP runs")  # fmt: skip


def _time_runs(t):
    """(recurrent runs, notes, None), or (None, None, why) when none is gated or stacked."""
    cells = t["runs"][t["runs"]["model"].isin(["rnn", *GATED])]
    cured = cells["model"].isin(GATED) | (cells["layers"] > 1)
    return _chosen(t, cells, cured, "no GRU, LSTM or stacked (model.layers > 1) recurrent run", "timesteps",
                   g.TIME_COLUMNS, "recurrent runs")  # fmt: skip


def _chosen(t, runs: pd.DataFrame, cured: pd.Series, none: str, table: str, columns, what: str):
    """(runs with rows at step 0 in `table`, notes, None), or (None, None, why): no run is `cured`, the
    table lacks the columns, or no run has rows at step 0."""
    if not cured.any():
        return None, None, none
    rows = t.get(table)
    if rows is None or not set(columns) <= set(rows.columns):
        return None, None, f"no {table} table with {', '.join(columns)} for the {what}"
    chosen, notes = _at_init(runs, rows, what)
    return (chosen, notes, None) if len(chosen) else (None, None, f"the {what} have no {table} rows at step 0")


# ---- the two rows: at initialisation and at the last logged step --------------------------------


def _rows(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(rows at step 0, rows at each run's last logged step after 0, the bottom row's title)."""
    final = g.last_steps(df)
    final = final[final["step"] > 0]
    steps = sorted(int(s) for s in final["step"].unique())
    when = f"step {steps[0]}" if len(steps) == 1 else f"steps {steps[0]}-{steps[-1]}" if steps else "none logged"
    return df[df["step"] == 0], final, f"last logged step ({when})"


def _legend(fig, handles, seeds: int) -> None:
    if seeds > 1:
        handles.append(Patch(color="0.3", alpha=style.BAND_ALPHA, label=f"median, band: {split.band_name(seeds)} of seeds"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), frameon=False)


def _share_y(axes, limits: dict) -> None:
    """Every panel in one y range, over all lines drawn (limits: panel -> its lines)."""
    drawn = [d for ds in limits.values() for d in ds]
    if drawn:
        for ax in np.ravel(axes):
            g.log_ylim(ax, drawn)


# ---- cures__depth -------------------------------------------------------------------------------


def _draw_depth(ctx: split.Context):
    runs = ctx.runs
    first, final, last_title = _rows(ctx.tables["layers"])
    columns = sorted({(int(d), bool(r)) for d, r in zip(runs["depth"], runs["residual"])})
    norms = [n for n in NORM_COLORS if (runs["norm"] == n).any()] + sorted(set(runs["norm"]) - set(NORM_COLORS))
    fig, axes = style.figure(2 * len(ctx.facets), len(columns), width=3.0, height=2.2, layout="constrained")
    limits: dict[int, list] = {}
    numbers = []  # (row, facet label, column label, norm, decades, predicted decades or None)
    for f, facet in enumerate(ctx.facets):
        for c, (depth, residual) in enumerate(columns):
            scale = facet.runs.loc[facet.runs["residual"], "residual_scale"] if residual else pd.Series(dtype=float)
            where = f"residual, $s = {split.fmt(scale.iloc[0])}$" if residual and scale.nunique() == 1 else (
                "residual" if residual else "no residual")  # fmt: skip
            label = f"depth $L = {depth}$, {where}"
            for r, (rows, title) in enumerate(((first, "initialisation (step 0)"), (final, last_title))):
                ax = axes[2 * f + r, c]
                ax.set_yscale("log")
                ax.axvspan(depth - 0.5, depth + 0.5, color="0.92", zorder=0, linewidth=0)
                ax.set_xlim(-0.5, depth + 0.5)
                for norm in norms:
                    group = facet.runs[(facet.runs["depth"] == depth) & (facet.runs["residual"] == residual)
                                       & (facet.runs["norm"] == norm)]  # fmt: skip
                    mine = rows[rows["run_id"].isin(group["run_id"])]
                    if mine.empty:
                        continue
                    color = NORM_COLORS.get(norm, "#777777")
                    wide = g.wide(mine, "layer", "delta_norm")
                    x = wide.columns.to_numpy()
                    med = g.line(ax, x, wide.to_numpy(), color, f"{'init' if r == 0 else 'final'}:{norm}:{residual}",
                                 marker="o", markersize=2.5, markevery=max(1, (depth + 1) // 12))  # fmt: skip
                    limits.setdefault(c, []).append(med)
                    pred = None
                    if norm == "none" and not residual and r == 0:  # mean field is a statement about init
                        anchor = float(dict(zip(x, med)).get(depth - 1, math.nan))
                        act = str(group["activation"].iloc[0]) if group["activation"].nunique() == 1 else None
                        pred = g.mean_field_deltas(group, act, depth, anchor) if act else None
                        if pred is not None:
                            ax.plot(np.arange(depth), g.positive(pred), **{**style.THEORY, "linewidth": 1.0},
                                    zorder=5, gid=f"theory:{r}")  # fmt: skip
                    predicted = g.decades(np.arange(depth), pred, 0, depth - 1) if pred is not None else None
                    numbers.append((r, facet.label, where, norm, g.decades(x, med, 0, depth - 1), predicted))
                head = f"{title}\n{label}"
                ax.set_title(f"{facet.label}\n{head}" if facet.label and r == 0 else head)
                if c == 0:
                    ax.set_ylabel(r"$\|\partial L/\partial z_l\|$, batch mean")
                if 2 * f + r == 2 * len(ctx.facets) - 1:
                    ax.set_xlabel("layer $l$ (0 = input side)")
                ax.xaxis.get_major_locator().set_params(integer=True)
    _share_y(axes, limits)
    handles = [Line2D([], [], color=NORM_COLORS.get(n, "#777777"), marker="o", markersize=3, label=NORM_NAMES.get(n, n))
               for n in norms]  # fmt: skip
    handles += [Line2D([], [], **{**style.THEORY, "linewidth": 1.0}, label="mean field (plain net)"),
                Patch(color="0.92", label="output layer")]  # fmt: skip
    _legend(fig, handles, ctx.plan.seeds)
    g.title(fig, ctx.title("Cures with depth, the gradient per layer", skip=("norm", "residual", "residual_scale")))
    return fig, _depth_text(numbers, last_title)


def _depth_text(numbers, last_title: str) -> str:
    out = []
    for r, when in ((0, "at step 0"), (1, f"at the {last_title}")):
        items = []
        for row, facet, where, norm, dec, pred in numbers:
            if row != r or not math.isfinite(dec):
                continue
            text = f"{where.replace('$', '').replace(' = ', ' ')}, {NORM_NAMES.get(norm, norm)} {dec:+.1f}"
            if pred is not None and math.isfinite(pred):
                text += f" (mean field {pred:+.1f})"
            items.append((f"{facet}: " if facet else "") + text)
        if items:
            out.append(f"{when}: " + "; ".join(items))
    if not out:
        return ""
    return "Measured decades from the last hidden layer to layer 0 (median over seeds), " + "; ".join(out) + "."


# ---- cures__time --------------------------------------------------------------------------------


def _draw_time(ctx: split.Context):
    runs = ctx.runs
    steps = ctx.tables["timesteps"]
    steps = steps.assign(layer=steps["layer"].fillna(0).astype(int)) if "layer" in steps else steps.assign(layer=0)
    value = value_column(runs, steps)
    first, final, last_title = _rows(steps)
    columns = sorted({(int(n), int(T)) for n, T in zip(runs["layers"], runs["T"])})
    keys = _keys(runs)
    fig, axes = style.figure(2 * len(ctx.facets), len(columns), width=3.0, height=2.2, layout="constrained")
    limits: dict[int, list] = {}
    numbers = []  # (row, facet label, layers, cell label, layer, decades)
    rates: set[float] = set()
    for f, facet in enumerate(ctx.facets):
        for c, (n, T) in enumerate(columns):
            for r, (rows, title) in enumerate(((first, "initialisation (step 0)"), (final, last_title))):
                ax = axes[2 * f + r, c]
                ax.set_yscale("log")
                for key in keys:
                    group = facet.runs[(facet.runs["layers"] == n) & (facet.runs["T"] == T) & _mask(facet.runs, key)]
                    mine = rows[rows["run_id"].isin(group["run_id"])]
                    if mine.empty:
                        continue
                    color, marker, label = _style_of(key, keys)
                    for layer in sorted({0, n - 1}):
                        wide = g.wide(mine[mine["layer"] == layer], "t", value)
                        if wide.empty:
                            continue
                        x = wide.columns.to_numpy()
                        look = dict(marker=marker, markersize=3, markevery=max(1, T // 10),
                                    markerfacecolor="white" if key[0] in GATED else color) if layer == 0 else UPPER
                        med = g.line(ax, x, wide.to_numpy(), color, f"{'init' if r == 0 else 'final'}:{key[0]}:{layer}",
                                     **look)  # fmt: skip
                        limits.setdefault(ax, []).append(med)
                        numbers.append((r, facet.label, n, label, layer, g.decades(x, med, 0, T - 1)))
                    if r == 0 and n == 1 and value == "dh_norm":
                        bounds = [bound_of(run, mine[mine["run_id"] == run["run_id"]]) for _, run in group.iterrows()]
                        bounds = [b for b in bounds if b is not None]
                        if bounds:
                            curve, _, _ = split.band(np.array([b[0] for b in bounds]))
                            ax.plot(np.arange(T), curve, color=color, linestyle="--", linewidth=1.0, gid=f"theory:{key[0]}")
                            rates.update(round(b[1], 2) for b in bounds)
                head = f"{title}\n{n} cell layer{'s' if n > 1 else ''}, $T = {T}$"
                ax.set_title(f"{facet.label}\n{head}" if facet.label and r == 0 else head)
                if c == 0:
                    ax.set_ylabel((r"$\|\partial L_{T-1}/\partial h_t\|$" if value == "dh_last_norm"
                                   else r"$\|\partial L/\partial h_t\|$") + ", batch mean")  # fmt: skip
                if 2 * f + r == 2 * len(ctx.facets) - 1:
                    ax.set_xlabel("time step $t$")
    for ax, drawn in limits.items():  # each panel its own range: a bound that grows leaves the frame
        g.log_ylim(ax, drawn)
    handles = []
    for key in keys:
        color, marker, label = _style_of(key, keys)
        handles.append(Line2D([], [], color=color, marker=marker, markersize=3.5,
                              markerfacecolor="white" if key[0] in GATED else color, label=label))  # fmt: skip
    if (runs["layers"] > 1).any():
        handles += [Line2D([], [], color="0.3", label="cell layer 0 (input side)"),
                    Line2D([], [], color="0.3", **UPPER, label="top cell layer")]  # fmt: skip
    if rates:
        r = sorted(rates)
        handles.append(Line2D([], [], color="0.3", linestyle="--", linewidth=1.0,
                              label=rf"bound, $\gamma\,\|W_{{hh}}\|_2 = {r[0]:.2f}$" + (f"-{r[-1]:.2f}" if len(r) > 1 else "")))
    _legend(fig, handles, ctx.plan.seeds)
    g.title(fig, ctx.title("Cures through time, the gradient reaching each step", skip=("model", "activation", "layers")))
    return fig, _time_text(numbers, last_title, rates)


def _time_text(numbers, last_title: str, rates: set[float]) -> str:
    out = []
    for r, when in ((0, "at step 0"), (1, f"at the {last_title}")):
        items = []
        for row, facet, n, label, layer, dec in numbers:
            if row != r or not math.isfinite(dec):
                continue
            which = "" if n == 1 else (" layer 0" if layer == 0 else " top layer")
            items.append((f"{facet}: " if facet else "") + f"{label}{f' x{n}' if n > 1 else ''}{which} {dec:+.1f}")
        if items:
            out.append(f"{when}: " + "; ".join(items))
    if not out:
        return ""
    text = "Measured decades from t = T-1 back to t = 0 (median over seeds; x2: two stacked layers), " + "; ".join(out) + "."
    if rates:
        text += f" The one-layer RNN's gamma ||W_hh||_2 = {', '.join(f'{v:.2f}' for v in sorted(rates))}."
    return text
