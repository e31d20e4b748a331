"""dL/dh_t against the time step t for RNNs, LSTMs and GRUs at initialisation, a column of panels per
sequence length, with Pascanu et al.'s bound dashed over the RNNs; any other field that differs is a row
of panels (or a file), seeds a median with a band."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from gradlab import theory
from gradlab.plots import _gradients as g
from gradlab.plots import select_runs, split, style

PART = "recurrent"
CAPTION = (
    "The gradient reaching each time step, ||dL/dh_t|| (batch mean, log scale) against t, a line per model "
    "(an RNN in its activation's colour with circles, the LSTM vermillion with squares, the GRU sky blue with "
    "diamonds), a column of panels per sequence length T; solid at initialisation (step 0), dotted in the same "
    "colour at the last logged step. With the loss on the last step, read each line from right to left, back "
    "in time: a line that falls toward t = 0 is vanishing (early inputs get almost no gradient), one that "
    "rises is exploding; with the loss on every step the line is ||dL_(T-1)/dh_t||, the last step's loss "
    "alone, when the tables hold it (dh_last_norm), else the whole loss's gradient, which each step's own "
    "loss props up. Dashed, in the colour of an RNN of one cell layer with the loss on its last step: Pascanu "
    "et al.'s bound (gamma ||W_hh||_2)^(T-1-t) "
    "||dL/dh_(T-1)||, with gamma ||W_hh||_2 of the run's initial recurrent weights (legend) and the measured "
    "gradient at the last step; it is an upper bound, and when gamma ||W_hh||_2 > 1 it grows back in time and "
    "leaves the plot: it allows exploding but does not predict it. Panels of one T share a y range."
)
DRAWS = ("model", "activation", "leaky_slope", "T")
ROLES = {"model": "lines, colour and marker", "activation": "an RNN's colour", "leaky_slope": "shades",
         "T": "columns of panels"}  # fmt: skip
MAX_FACETS = 3
GATED = ("lstm", "gru")


def _key(run) -> tuple[str, str | None, float | None]:
    model = str(run["model"])
    if model in GATED:
        return model, None, None
    act, slope = g.line_key(run)
    return model, act, slope


def _keys(runs: pd.DataFrame) -> list:
    keys = {_key(r) for _, r in runs.iterrows()}
    acts = g.activations_in({k[1] for k in keys if k[1] is not None})
    return sorted(keys, key=lambda k: (k[0] in GATED, k[0], acts.index(k[1]) if k[1] in acts else -1, k[2] or 0.0))


def _mask(runs: pd.DataFrame, key) -> pd.Series:
    model, act, slope = key
    mask = runs["model"] == model
    if act is not None:
        mask &= g.key_mask(runs, (act, slope))
    return mask


def _style_of(key, keys) -> tuple[str, str, str]:
    """(colour, marker, label): an RNN in its activation's colour; the LSTM and the GRU in their own."""
    model, act, slope = key
    if model in GATED:
        return style.MODEL_COLORS[model], style.MODEL_MARKERS[model], model.upper()
    acts = [(k[1], k[2]) for k in keys if k[0] == model]
    return (g.key_color((act, slope), acts), style.MODEL_MARKERS.get(model, "o"),
            f"{model.upper()} ({g.key_label((act, slope), acts)})")  # fmt: skip


def _gid(label: str) -> str:
    return label.lower().replace(" ", "")


def value_column(runs: pd.DataFrame, timesteps: pd.DataFrame) -> str:
    """dh_last_norm when every run's loss is on every step and the table holds it, else dh_norm."""
    every = "loss_on" in runs and len(runs) and (runs["loss_on"] == "all").all()
    if every and "dh_last_norm" in timesteps and timesteps["dh_last_norm"].notna().any():
        return "dh_last_norm"
    return "dh_norm"


def bound_of(run: pd.Series, first_run_rows: pd.DataFrame) -> tuple[np.ndarray, float] | None:
    """(bound per t, (T,), anchored at the run's measured dh_norm at t = T-1; gamma ||W_hh||_2), from the
    runs table's gamma_norm and loss_on; None where it does not apply (not an RNN, the loss not on the
    last step, stacked cells: the line is the top layer's dL/dh_t, the stored gamma_norm layer 0's W_hh's)
    or the run stored no gamma_norm."""
    rate = float(run.get("gamma_norm", math.nan))
    if run["model"] != "rnn" or run.get("loss_on") != "last" or not math.isfinite(rate):
        return None
    if pd.notna(run.get("layers", 1)) and int(run.get("layers", 1)) > 1:  # stacked cells
        return None
    T = int(run["T"])
    anchor = float(first_run_rows.set_index("t")["dh_norm"].get(T - 1, math.nan))
    if not (math.isfinite(anchor) and anchor > 0):
        return None
    return theory.pascanu_factors(rate, T) * anchor, rate


def _select(tables):
    t = select_runs(tables, PART, model=["rnn", *GATED], skip="no RNN or LSTM runs to draw gradients through time from")
    runs = t["runs"]
    steps = g.need(t, "timesteps", g.TIME_COLUMNS, "the RNN and LSTM runs")
    at0 = set(steps.loc[steps["step"] == 0, "run_id"])
    if not at0:
        raise style.SkipFigure("the RNN and LSTM runs have no timesteps rows at step 0 (initialisation)")
    missing = runs[~runs["run_id"].isin(at0)]
    notes = []
    if len(missing):
        notes.append(f"{len(missing)} recurrent run{'s' if len(missing) != 1 else ''} with no timesteps rows at step 0")
    return t, runs[runs["run_id"].isin(at0)], notes


@style.styled
def draw(tables: dict[str, pd.DataFrame], by: str | None = None):
    t, runs, notes = _select(tables)
    return split.draw_files(t, runs, DRAWS, _draw, guide=CAPTION, roles=ROLES, max_facets=MAX_FACETS, by=by,
                            notes=notes, what="recurrent runs")  # fmt: skip


def _draw(ctx: split.Context):
    runs = ctx.runs
    steps, stacked = g.top_layer(ctx.tables["timesteps"])
    value = value_column(runs, steps)
    first = steps[steps["step"] == 0]
    final = g.last_steps(steps)
    final = final[final["step"] > 0]
    lengths = sorted(int(T) for T in runs["T"].unique())
    keys = _keys(runs)
    nrows, ncols = len(ctx.facets), len(lengths)
    single = nrows * ncols == 1  # one panel: larger, with the legend beside it
    size = dict(width=5.0, height=3.4) if single else dict(width=2.8, height=2.5)
    fig, axes = style.figure(nrows, ncols, **size, layout="constrained")
    measured: dict[int, list] = {}
    rates: dict[tuple, set] = {}
    numbers = []
    for f, facet in enumerate(ctx.facets):
        for c, T in enumerate(lengths):
            ax = axes[f, c]
            ax.set_yscale("log")
            if not (facet.runs["T"] == T).any():  # a combination that was not run
                ax.text(0.5, 0.5, "no runs", ha="center", va="center", transform=ax.transAxes, color="0.4")
            for key in keys:
                group = facet.runs[(facet.runs["T"] == T) & _mask(facet.runs, key)]
                at0 = first[first["run_id"].isin(group["run_id"])]
                if at0.empty:
                    continue
                color, marker, label = _style_of(key, keys)
                rows0 = g.wide(at0, "t", value)
                x = rows0.columns.to_numpy()
                every = max(1, T // 10)
                med = g.line(ax, x, rows0.to_numpy(), color, f"init:{_gid(label)}", marker=marker, markersize=3.5,
                             markevery=every, markerfacecolor="white" if key[0] in GATED else color)  # fmt: skip
                measured.setdefault(c, []).append(med)
                numbers.append((facet.label, label, T, med, x, set()))  # set: the bounds drawn in this panel
                atN = final[final["run_id"].isin(group["run_id"])]
                if not atN.empty:
                    rowsN = g.wide(atN, "t", value)
                    medN = g.line(ax, rowsN.columns.to_numpy(), rowsN.to_numpy(), color, f"final:{_gid(label)}",
                                  band=False, **style.LATER)  # fmt: skip
                    measured[c].append(medN)
                if value != "dh_norm":
                    continue
                bounds = [bound_of(run, at0[at0["run_id"] == run["run_id"]]) for _, run in group.iterrows()]
                bounds = [b for b in bounds if b is not None]
                if bounds:
                    curve, _, _ = split.band(np.array([b[0] for b in bounds]))
                    ax.plot(np.arange(T), curve, color=color, linestyle="--", linewidth=1.0,
                            gid=f"theory:{_gid(label)}")  # fmt: skip
                    drawn = {round(b[1], 2) for b in bounds}
                    rates.setdefault(key, set()).update(drawn)
                    numbers[-1][5].update(drawn)
            title = f"$T = {T}$"
            ax.set_title(f"{facet.label}\n{title}" if facet.label else title)
            if f == nrows - 1:
                loss_on = set(facet.runs.get("loss_on", pd.Series(dtype=object)).dropna())
                where = {frozenset({"last"}): " (loss at $t = T-1$)", frozenset({"all"}): " (loss on every step)"}
                ax.set_xlabel("time step $t$" + where.get(frozenset(loss_on), ""))
            if c == 0:
                ax.set_ylabel((r"$\|\partial L_{T-1}/\partial h_t\|$" if value == "dh_last_norm"
                               else r"$\|\partial L/\partial h_t\|$") + ", batch mean")  # fmt: skip
    for c, drawn in measured.items():  # the data with room: a bound that grows leaves the frame
        v = g.positive(np.concatenate(drawn))
        if np.isfinite(v).any():
            for f in range(nrows):
                axes[f, c].set_ylim(np.nanmin(v) / 5, np.nanmax(v) * 30)
    handles = []
    for key in keys:
        color, marker, label = _style_of(key, keys)
        handles.append(Line2D([], [], color=color, marker=marker, markersize=4,
                              markerfacecolor="white" if key[0] in GATED else color, label=label))  # fmt: skip
        if key in rates:
            r = sorted(rates[key])
            rate = f"{r[0]:.2f}" if len(r) == 1 else f"{r[0]:.2f}-{r[-1]:.2f}"
            handles.append(Line2D([], [], color=color, linestyle="--", linewidth=1.0,
                                  label=rf"  bound, $\gamma\,\|W_{{hh}}\|_2 = {rate}$"))  # fmt: skip
    handles.append(Line2D([], [], color="0.3", **style.LATER, label="last logged step"))
    if ctx.plan.seeds > 1:
        handles.append(Patch(color="0.3", alpha=style.BAND_ALPHA,
                             label=f"median, band: {split.band_name(ctx.plan.seeds)} of seeds"))  # fmt: skip
    if single:
        fig.legend(handles=handles, loc="outside right center", frameon=False)
    else:
        fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), frameon=False)
    g.title(fig, ctx.title("Gradient through time at initialisation (step 0)", skip=("model", "activation")))
    text = _text(numbers)
    if stacked:
        text += " Stacked cells: the line is the top cell layer's dL/dh_t, the layer the readout reads."
    return fig, text


def _text(numbers) -> str:
    items = []
    longest = max((n[2] for n in numbers), default=0)
    for label, name, T, med, x, drawn in numbers:
        if T != longest:
            continue
        decades = g.decades(x, med, 0, T - 1)
        if T < 2 or not math.isfinite(decades):
            continue
        text = f"{name} x{10 ** (decades / (T - 1)):.2f} per step back, {decades:+.1f} decades"
        if drawn:  # the bound of this panel's runs, where it is drawn
            r = sorted(drawn)
            text += f" (bound: x{r[0]:.2f}" + (f"-{r[-1]:.2f}" if len(r) > 1 else "") + ")"
        items.append((f"{label}: " if label else "") + text)
    if not items:
        return ""
    return (f"Measured at step 0 from t = T-1 back to t = 0 (T = {longest}, median over seeds): " + "; ".join(items)
            + ".")  # fmt: skip
