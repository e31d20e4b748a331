"""dL/dh_t against the time step t for RNNs and LSTMs at initialisation, a panel per sequence length,
with Pascanu et al.'s bound dashed over the RNNs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from gradlab import theory
from gradlab.plots import _gradients as g
from gradlab.plots import select_runs, style

PART = "recurrent"
CAPTION = (
    "The gradient reaching each time step, ||dL/dh_t|| (batch mean, log scale) against t, for the RNN and the "
    "LSTM, a panel per sequence length T; solid at initialisation (step 0), faint at the last logged step. "
    "The loss sits on the last step (t = T-1), so read each line from right to left, back in time: a line "
    "that falls toward t = 0 is vanishing (early inputs get almost no gradient), one that rises is exploding. "
    "The RNN's changes by a roughly constant factor per step (a straight line on the log scale) and loses more "
    "decades the longer the sequence; compare the LSTM's slope, before and after training. Dashed: Pascanu "
    "et al.'s bound (gamma ||W_hh||_2)^(T-1-t) "
    "||dL/dh_(T-1)|| for the RNN, with W_hh the run's initial recurrent weights (gamma ||W_hh||_2 as the run "
    "stored it) and the measured gradient at the last step; it is an upper bound, and when gamma ||W_hh||_2 > 1 "
    "(legend) it grows back in time and leaves the plot: it allows exploding but does not predict it."
)


def _key(run: pd.Series) -> tuple[str, str | None]:
    return ("lstm", None) if run["model"] == "lstm" else (str(run["model"]), str(run["activation"]))


def _style_of(key, rnn_acts: list[str]) -> tuple[str, str]:
    """(colour, label): the model's colour, or the activation's when several RNN activations are present."""
    model, act = key
    if model == "lstm":
        return style.MODEL_COLORS["lstm"], "LSTM"
    color = style.color_of(act) if len(rnn_acts) > 1 else style.MODEL_COLORS.get(model, "#777777")
    return color, f"{model.upper()} ({act})"


def bound_of(run: pd.Series, first_run_rows: pd.DataFrame) -> tuple[np.ndarray, float] | None:
    """(bound per t, (T,), anchored at the run's measured dh_norm at t = T-1; gamma ||W_hh||_2), from the
    runs table's gamma_norm and loss_on; None where it does not apply (not an RNN, the loss not on the
    last step) or the run stored no gamma_norm."""
    rate = float(run.get("gamma_norm", math.nan))
    if run["model"] != "rnn" or run.get("loss_on") != "last" or not math.isfinite(rate):
        return None
    T = int(run["T"])
    anchor = float(first_run_rows.set_index("t")["dh_norm"].get(T - 1, math.nan))
    if not (math.isfinite(anchor) and anchor > 0):
        return None
    return theory.pascanu_factors(rate, T) * anchor, rate


def draw(tables: dict[str, pd.DataFrame]):
    t = select_runs(tables, PART, model=["rnn", "lstm"],
                    skip="no RNN or LSTM runs to draw gradients through time from")
    runs = t["runs"]
    steps = g.need(t, "timesteps", g.TIME_COLUMNS, "the RNN and LSTM runs")
    steps = steps[steps["run_id"].isin(runs["run_id"])]
    first = steps[steps["step"] == 0]
    if first.empty:
        raise style.SkipFigure("the RNN and LSTM runs have no timesteps rows at step 0 (initialisation)")
    final = g.last_steps(steps)
    final = final[final["step"] > 0]
    runs = runs[runs["run_id"].isin(first["run_id"])]

    lengths = sorted(int(T) for T in runs["T"].unique())
    keys = sorted({_key(r) for _, r in runs.iterrows()}, key=lambda k: (k[0] == "lstm", str(k[1])))
    rnn_acts = g.activations_in([k[1] for k in keys if k[0] != "lstm"])
    ncols = min(4, len(lengths))
    nrows = math.ceil(len(lengths) / ncols)
    single = len(lengths) == 1  # one panel: larger, with the legend beside it
    size = dict(width=6.4, height=3.4) if single else dict(width=2.8, height=2.6)
    fig, axes = style.figure(nrows, ncols, **size, sharey=True, layout="constrained")
    measured = []
    rates: dict[tuple, set] = {}
    for i, T in enumerate(lengths):
        ax = axes.flat[i]
        ax.set_yscale("log")
        for key in keys:
            group = runs[(runs["T"] == T) & runs.apply(lambda r: _key(r) == key, axis=1)]
            at0 = first[first["run_id"].isin(group["run_id"])]
            if at0.empty:
                continue
            color, label = _style_of(key, rnn_acts)
            name = label.lower().replace(" ", "")
            y0 = g.mean_over_runs(at0, "t", "dh_norm")
            ax.plot(y0.index, g.positive(y0.values), color=color, gid=f"init:{name}", label=label)
            measured.append(y0.values)
            atN = final[final["run_id"].isin(group["run_id"])]
            if not atN.empty:
                yN = g.mean_over_runs(atN, "t", "dh_norm")
                ax.plot(yN.index, g.positive(yN.values), color=color, alpha=0.35, linewidth=1.0, gid=f"final:{name}")
                measured.append(yN.values)
            bounds = [bound_of(run, at0[at0["run_id"] == run["run_id"]]) for _, run in group.iterrows()]
            bounds = [b for b in bounds if b is not None]
            if bounds:
                with np.errstate(over="ignore", divide="ignore"):
                    curve = np.exp(np.mean(np.log([b[0] for b in bounds]), axis=0))
                ax.plot(np.arange(T), curve, color=color, linestyle="--", linewidth=1.0, gid=f"theory:{name}")
                rates.setdefault(key, set()).update(round(b[1], 2) for b in bounds)
        ax.set_title(f"T = {T}")
        ax.set_xlabel("time step t (loss at t = T-1)")
        if i % ncols == 0:
            ax.set_ylabel("||dL/dh_t||, batch mean\n(loss / unit of h)")
    for ax in axes.flat[len(lengths):]:
        ax.set_visible(False)
    values = g.positive(np.concatenate(measured)) if measured else np.array([np.nan])
    if np.isfinite(values).any():
        lo, hi = np.nanmin(values), np.nanmax(values)
        axes.flat[0].set_ylim(lo / 5, hi * 30)  # the data, with room: a bound that grows leaves the frame
    handles = []
    for key in keys:
        color, label = _style_of(key, rnn_acts)
        handles.append(Line2D([], [], color=color, label=label))
        if key in rates:
            r = sorted(rates[key])
            rate = f"{r[0]:.2f}" if len(r) == 1 else f"{r[0]:.2f}-{r[-1]:.2f}"
            handles.append(Line2D([], [], color=color, linestyle="--", linewidth=1.0,
                                  label=f"  bound, gamma ||W_hh||_2 = {rate}"))
    handles.append(Line2D([], [], color="0.3", alpha=0.35, label="last logged step"))
    if single:
        fig.legend(handles=handles, loc="outside right center", frameon=False)
    else:
        fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), frameon=False)
    config = g.describe(runs, skip=("model", "T", "seed"))
    g.title(fig, "Gradient through time at initialisation (step 0)", config)
    return fig
