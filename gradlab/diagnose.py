"""Diagnosis: one label per run (healthy, stalled, vanishing, exploding, dying, diverged), the numbers
behind it and one plain sentence, from the run's tidy tables (gradlab.probes) and a few facts about it.

The rules, in order (the first that applies wins):

    diverged   a loss or gradient norm is inf/NaN: the step of the first one (steps table; the layers
               table's norms as a fallback).
    dying      on the last step measured on the probe set, the mean dead fraction over the hidden
               layers (cell layers) is >= Thresholds.dying_dead_frac, or some hidden layer is entirely
               dead (then the network is constant on the probe set: Lu et al. 2019's dead network).
    exploding  the gradient grows by >= 10^Thresholds.exploding_decades from the output side to the
               input side (MLP: delta_norm over the hidden layers) or back in time (RNN/LSTM/GRU: the
               long-range gradient from the last step to the first, see below), or, for stacked cells,
               from the top cell layer down to layer 0 at the last step.
    vanishing  it shrinks by >= 10^Thresholds.vanishing_decades the same way (or is exactly 0 in some
               hidden layers / time steps while not in others).
    stalled    the held-out loss ends no better than Thresholds.stalled_fraction (STALLED_FRACTION = 0.9)
               x the best constant prediction's loss: final_loss >= 0.9 baseline_loss (facts final_loss,
               baseline_loss; the runs table has both).
    healthy    none of the above.

Stalled ranks below the gradient labels: a run whose gradient vanishes (explodes, dies) and whose loss
also stalled is labelled by the cause, and its sentence adds that it stalled, naming both losses; a run
labelled stalled learned nothing although no gradient pathology was measured.

Layers are compared with each other at each logged step (a gradient that is tiny from the first
step is vanishing), never a layer with its own history. The per-layer growth factor is the exp of the
least-squares slope of ln delta_norm against the layer index, read from the output toward the input
(< 1: shrinks toward the input); the output layer is left out (its width, and so its norm, differs:
the hidden layers are assumed to be of equal width). Each logged step gives a fit; the run's number is
the median over logged steps. The change over the network is factor^(span), span = the number of layer
(step) gaps fitted.

Through time, the long-range gradient is dh_last_norm, the gradient of the last step's loss alone
(dL_T/dh_t), when the loss is on every step: there dh_norm is dominated by each step's own loss and
cannot show what reaches far back. With the loss on the last step the two are the same, and the
sentence names dh_norm. Tables without dh_last_norm (written before it existed) fall back to dh_norm.
The per-step factor is the same fit as the layers' against t, read from the last step back to the first.

Stacked cells (model.layers >= 2) are diagnosed through time and through depth: the time fit is made per
cell layer, and the run's dh_factor / dh_log10_change are cell layer 0's, the layer the inputs enter: every
path from the loss to an early input x_t passes through h_t of layer 0 (dL/dx_t = (dh_t/dx_t)^T dL/dh_t), so
its total gradient is what long-range learning needs. An upper layer's own recurrence may forget (a stacked
LSTM that solves the adding problem at T = 50 keeps 10^-0.8 in layer 0 and 10^-6.4 in layer 1, the tour's
cures part): the sentence names every other layer's change and where the gradient dies first, but the label
follows layer 0. Through depth, dh_depth_log10_change is log10 of the long-range
gradient at the first step (t = 0) in cell layer 0 over the top layer's (median over logged steps; < 0:
it shrinks on the way down to the input).

The mean-field prediction of the per-layer factor is sqrt(chi_1) (gradlab.theory.chi1), shown when the
run's init (or sigma_w2) is known and the MLP is plain (no normalization, no residual connections, where
mean field's recursion does not hold); for the RNN, gamma ||W_hh||_2 (Pascanu et al. 2013's per-step
bound; layer 0's W_hh) when the facts carry weight_hh.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gradlab import theory
from gradlab.nn.activations import DEFAULT_SLOPE

LABELS = ("healthy", "stalled", "vanishing", "exploding", "dying", "diverged")  # least to most alarming
SEQUENCE_MODELS = ("rnn", "lstm", "gru")
# A run that ends with a held-out loss of at least 0.9 x the best constant prediction's has learned at most
# a tenth of what separates a constant from the target: no more than the task's marginal statistics (the
# mean, the class frequencies), which the baseline already has. 0.9, not 1: a model that fits the mean
# only ends near the baseline from either side (its held-out loss on 512 examples scatters by a few
# percent), and a tenth is well above that scatter and well below what a run that learns gains: of the
# committed tour's 187 finished runs, 105 end below 0.7 x the baseline, 81 at or above 0.9, one between (0.83).
STALLED_FRACTION = 0.9


@dataclass(frozen=True)
class Thresholds:
    """When a run gets which label.

    vanishing_decades: the gradient shrinking by at least 10^vanishing_decades from the output side to
        the input side of the hidden layers (MLP, fitted delta_norm), or from the last time step back
        to the first (RNN/LSTM/GRU, the fitted long-range gradient; for stacked cells also from the top
        cell layer down to layer 0), is vanishing. Default 2: a hundredfold.
    exploding_decades: growing by at least 10^exploding_decades the same way is exploding. Default 2.
    dying_dead_frac: a mean dead fraction over the hidden layers (on the probe set, at the last step it
        was measured) at or above this is dying; so is any hidden layer entirely dead. Default 0.3.
    min_fit_points: fewer hidden layers (time steps) with a positive finite norm than this and no
        factor is fitted (it is NaN and cannot give vanishing or exploding). Default 2.
    stalled_fraction: a held-out final_loss >= stalled_fraction x baseline_loss (the best constant
        prediction's) is stalled. Default STALLED_FRACTION = 0.9 (see there).
    """

    vanishing_decades: float = 2.0
    exploding_decades: float = 2.0
    dying_dead_frac: float = 0.3
    min_fit_points: int = 2
    stalled_fraction: float = STALLED_FRACTION

    def __post_init__(self) -> None:
        for name in ("vanishing_decades", "exploding_decades"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a number > 0, got {v!r}")
        if not (isinstance(self.dying_dead_frac, (int, float)) and 0 < self.dying_dead_frac <= 1):
            raise ValueError(f"dying_dead_frac must be a number in (0, 1], got {self.dying_dead_frac!r}")
        if not (isinstance(self.min_fit_points, int) and self.min_fit_points >= 2):
            raise ValueError(f"min_fit_points must be an integer >= 2, got {self.min_fit_points!r}")
        v = self.stalled_fraction
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0):
            raise ValueError(f"stalled_fraction must be a number > 0, got {v!r}")


@dataclass(frozen=True)
class Diagnosis:
    """label: one of LABELS; sentence: the reason in one plain sentence; numbers: see NUMBERS."""

    label: str
    sentence: str
    numbers: dict[str, Any] = field(default_factory=dict)


# The keys of Diagnosis.numbers (NaN, or None for a step, where they do not apply).
NUMBERS = {
    "delta_factor": "fitted per-layer factor of delta_norm, output toward input (< 1 shrinks toward the input)",
    "delta_log10_change": "log10 of the fitted change of delta_norm from the last hidden layer to the first",
    "delta_ratio_first_last": "delta_norm of the first hidden layer / of the last hidden layer (measured)",
    "delta_layers": "number of hidden layers in the fit",
    "predicted_factor": "mean field's per-layer factor sqrt(chi_1), when the init is known",
    "chi1": "mean field's chi_1, when the init is known",
    "dh_factor": "fitted per-step factor of the long-range gradient (dh_last_norm, or dh_norm) going back in time "
                 "(< 1 shrinks); of the deciding cell layer for stacked cells",
    "dh_log10_change": "log10 of its fitted change from the last step back to the first",
    "dh_ratio_first_last": "it at the first step / at the last step (measured)",
    "dh_steps": "number of time steps in the fit",
    "dh_column": "the timesteps column fitted: dh_last_norm (loss on every step) or dh_norm ('' for an MLP)",
    "dh_layer": "the cell layer whose fit gives dh_factor (0, the layer the inputs enter; None for an MLP)",
    "dh_log10_change_by_layer": "dh_log10_change of every cell layer, layer 0 first (a tuple; () for an MLP)",
    "dh_depth_log10_change": "log10 of the long-range gradient at the last step in cell layer 0 over the top "
                             "layer's (stacked cells; < 0 shrinks toward the input)",
    "final_loss": "the held-out loss after training (facts; NaN unknown)",
    "baseline_loss": "the best constant prediction's loss (facts; NaN unknown)",
    "loss_ratio": "final_loss / baseline_loss",
    "stalled": "loss_ratio >= Thresholds.stalled_fraction (None: unknown)",
    "gamma_norm": "gamma ||W_hh||_2, Pascanu et al.'s per-step bound (RNN, when weight_hh is given)",
    "dead_frac": "mean dead fraction over the hidden layers on the probe set",
    "born_dead_frac": "the part of dead_frac dead since step 0",
    "died_frac": "the part of dead_frac that died during training",
    "fully_dead_layers": "hidden layers with every unit dead",
    "collapsed": "the output is constant on the probe set (None: not measured)",
    "dead_step": "the step of these dead-unit numbers (None: no probe set)",
    "diverged_step": "the first step with an inf/NaN loss or gradient norm (None: none)",
    "fit_steps": "logged steps whose fits the medians are taken over",
}


# ----------------------------------------------------------------------------------------- fitting


def fit_factor(values: np.ndarray, positions: np.ndarray) -> tuple[float, int]:
    """(exp(-slope), points) of the least-squares line of ln(values) against positions
    (gradlab.theory.log_slope), over the positive finite values: the factor per unit step toward
    *smaller* positions (< 1: values shrink toward the start). NaN with fewer than 2 such points."""
    values, positions = np.asarray(values, dtype=np.float64), np.asarray(positions, dtype=np.float64)
    ok = np.isfinite(values) & (values > 0)
    if ok.sum() < 2:
        return math.nan, int(ok.sum())
    return float(math.exp(-theory.log_slope(values[ok], positions[ok]))), int(ok.sum())


def _by_step(table: pd.DataFrame, pos: str, value: str, keep: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(value, pos) of the kept rows of each logged step, in step order, each sorted by pos (arrays, not
    a groupby of frames: a sweep diagnoses every run, and pandas' per-group work was most of it)."""
    step = table["step"].to_numpy()[keep]
    x, v = table[pos].to_numpy(np.float64)[keep], table[value].to_numpy(np.float64)[keep]
    order = np.lexsort((x, step))  # by step, then by position
    step, x, v = step[order], x[order], v[order]
    cuts = np.flatnonzero(step[1:] != step[:-1]) + 1
    return zip(np.split(v, cuts), np.split(x, cuts)) if len(step) else iter(())


def _fits(table: pd.DataFrame, pos: str, value: str, keep: np.ndarray, min_points: int) -> dict[str, float]:
    """Per logged step, over the rows `keep` (a boolean mask of the table's): the fitted factor, the span,
    the measured first/last ratio and zero count; the medians over steps."""
    logf, ratios, spans, points, zeros = [], [], [], [], 0
    for v, x in _by_step(table, pos, value, np.asarray(keep, dtype=bool)):
        fac, n = fit_factor(v, x)
        ok = np.isfinite(v) & (v > 0)
        zeros = max(zeros, int(np.count_nonzero(v == 0)) if ok.any() else 0)
        if n < min_points or not np.isfinite(fac):
            continue
        logf.append(math.log(fac))
        spans.append(float(x[ok].max() - x[ok].min()))
        points.append(n)
        ratios.append(v[0] / v[-1] if v[0] > 0 and v[-1] > 0 else math.nan)
    if not logf:
        return {"factor": math.nan, "log10_change": math.nan, "ratio": math.nan, "points": 0, "steps": 0,
                "zeros": zeros}
    lf = float(np.median(logf))
    span = float(np.median(spans))
    return {
        "factor": math.exp(lf),
        "log10_change": lf * span / math.log(10),
        "ratio": float(np.nanmedian(ratios)) if np.any(np.isfinite(ratios)) else math.nan,
        "points": int(np.median(points)),
        "steps": len(logf),
        "zeros": zeros,
    }


# ----------------------------------------------------------------------------------------- theory


def _init_sigma_w2(facts: dict) -> tuple[float | None, float]:
    """(sigma_w2, sigma_b2) of the run's hidden layers, or (None, 0) when unknown. Assumes square
    hidden layers (fan_in = fan_out), where n Var[W] does not depend on n."""
    init = facts.get("init")
    sigma_w2 = facts.get("sigma_w2")
    if init is None and sigma_w2 is None:
        return None, 0.0
    if init is None or init == "mean_field":
        return (float(sigma_w2) if sigma_w2 is not None else 1.0), float(facts.get("sigma_b2") or 0.0)
    act = facts.get("activation", "tanh")
    slope = float(facts.get("slope", DEFAULT_SLOPE)) if act == "leaky_relu" else 0.0
    return theory.init_variance(init, 1, 1, gain=facts.get("gain"), slope=slope), 0.0


def mean_field_prediction(facts: dict) -> tuple[float, float]:
    """(sqrt(chi_1), chi_1) for an MLP run whose init or sigma_w2 is known; (NaN, NaN) otherwise."""
    try:
        sigma_w2, sigma_b2 = _init_sigma_w2(facts)
        if sigma_w2 is None:
            return math.nan, math.nan
        act = facts.get("activation", "tanh")
        c = float(theory.chi1(act, sigma_w2, sigma_b2, float(facts.get("slope", DEFAULT_SLOPE))))
    except (AttributeError, ValueError, TypeError):
        return math.nan, math.nan
    return math.sqrt(c), c


def _gamma_norm(facts: dict) -> float:
    w = facts.get("weight_hh")
    if w is None or facts.get("model") != "rnn":
        return math.nan
    try:
        return theory.gamma_norm(w, facts.get("activation", "tanh"), float(facts.get("slope", DEFAULT_SLOPE)))
    except (AttributeError, ValueError, TypeError, np.linalg.LinAlgError):
        return math.nan


# ----------------------------------------------------------------------------------------- diagnosis


def _first_nonfinite(steps: pd.DataFrame | None, layers: pd.DataFrame | None) -> tuple[int | None, str]:
    found: list[tuple[int, str]] = []
    if steps is not None and len(steps):
        for col in ("loss", "grad_norm"):
            mask = ~np.isfinite(steps[col].to_numpy(np.float64))
            if mask.any():  # (a mask first: selecting rows of a frame costs more than the check)
                row = steps[mask].sort_values("step").iloc[0]
                found.append((int(row["step"]), f"the {'loss' if col == 'loss' else 'gradient norm'} is {row[col]}"))
    if layers is not None and len(layers):
        for col in ("weight_grad_norm", "delta_norm"):
            mask = ~np.isfinite(layers[col].to_numpy(np.float64))
            if mask.any():
                row = layers[mask].sort_values("step").iloc[0]
                found.append((int(row["step"]), f"{col} of layer {int(row['layer'])} is {row[col]}"))
    if not found:
        return None, ""
    return min(found, key=lambda f: f[0])


def _hidden(layers: pd.DataFrame, kind: str, depth: int | None) -> pd.Series:
    """The hidden layers' rows: an MLP's all but the output layer, a recurrent model's cell layers (all
    but the readout, the last row)."""
    if kind == "mlp":
        L = depth if depth is not None else int(layers["layer"].max()) + 1
        return layers["layer"] < L - 1
    return layers["layer"] < int(layers["layer"].max())


def _dead(layers: pd.DataFrame, steps: pd.DataFrame | None, hidden: pd.Series) -> dict[str, Any]:
    out: dict[str, Any] = {"dead_frac": math.nan, "born_dead_frac": math.nan, "died_frac": math.nan,
                           "fully_dead_layers": 0, "collapsed": None, "dead_step": None}  # fmt: skip
    measured = hidden.to_numpy() & np.isfinite(layers["dead_frac"].to_numpy(np.float64))
    if not measured.any():
        return out
    at = layers["step"].to_numpy()
    step = int(at[measured].max())
    rows = measured & (at == step)  # the last measured step's hidden layers
    d = {c: layers[c].to_numpy(np.float64)[rows] for c in ("dead_frac", "born_dead_frac", "died_frac")}
    out.update(
        dead_frac=_nanmean(d["dead_frac"]),
        born_dead_frac=_nanmean(d["born_dead_frac"]),
        died_frac=_nanmean(d["died_frac"]),
        fully_dead_layers=int(np.count_nonzero(d["dead_frac"] >= 1.0)),
        dead_step=step,
    )
    if steps is not None and "collapsed" in steps and len(steps):
        c = steps.loc[steps["step"] == step, "collapsed"]
        if len(c) and not pd.isna(c.iloc[0]):
            out["collapsed"] = bool(c.iloc[0])
    return out


def _nanmean(a: np.ndarray) -> float:
    """The mean of a's non-NaN entries (NaN if none), as pandas' Series.mean computes it: the sum with NaN
    read as 0, over the count (the same bits, without a Series)."""
    nan = np.isnan(a)
    count = a.size - np.count_nonzero(nan)
    return float(np.where(nan, 0.0, a).sum() / count) if count else math.nan


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%" if x >= 0.01 or x == 0 else f"{100 * x:.1g}%"


def _long_range_column(timesteps: pd.DataFrame, loss_on: str | None) -> str:
    """dh_last_norm where the loss is on every step and the table has it (loss_on unknown: where it differs
    from dh_norm somewhere), else dh_norm."""
    if "dh_last_norm" not in timesteps or not np.isfinite(timesteps["dh_last_norm"].to_numpy(np.float64)).any():
        return "dh_norm"
    if loss_on is None or loss_on == "":
        last, total = timesteps["dh_last_norm"].to_numpy(np.float64), timesteps["dh_norm"].to_numpy(np.float64)
        return "dh_last_norm" if np.any(np.isfinite(last) & (last != total)) else "dh_norm"
    return "dh_last_norm" if loss_on == "all" else "dh_norm"


def _time_fits(timesteps: pd.DataFrame, column: str, min_points: int) -> dict[int, dict[str, float]]:
    """The fit through time per cell layer (a table without `layer` is one layer, 0)."""
    if "layer" not in timesteps:
        return {0: _fits(timesteps, "t", column, np.ones(len(timesteps), bool), min_points)}
    return {
        int(j): _fits(g, "t", column, np.ones(len(g), bool), min_points)
        for j, g in timesteps.groupby("layer", sort=True)
    }  # fmt: skip


def _depth_change(timesteps: pd.DataFrame, column: str) -> float:
    """log10 of column at the last step in cell layer 0 over the top layer's: the median over logged steps."""
    if "layer" not in timesteps or timesteps["layer"].nunique() < 2:
        return math.nan
    top = int(timesteps["layer"].max())
    changes = []
    for _, g in timesteps[timesteps["t"] == timesteps["t"].max()].groupby("step", sort=True):
        bottom, upper = g.loc[g["layer"] == 0, column], g.loc[g["layer"] == top, column]
        if len(bottom) and len(upper):
            b, u = float(bottom.iloc[0]), float(upper.iloc[0])
            if np.isfinite(b) and np.isfinite(u) and b > 0 and u > 0:
                changes.append(math.log10(b / u))
    return float(np.median(changes)) if changes else math.nan


def _stalled(n: dict[str, Any], facts: dict, th: Thresholds) -> None:
    final, baseline = facts.get("final_loss"), facts.get("baseline_loss")
    final = math.nan if final is None else float(final)
    baseline = math.nan if baseline is None else float(baseline)
    n.update(final_loss=final, baseline_loss=baseline)
    if math.isfinite(final) and math.isfinite(baseline) and baseline > 0:
        n["loss_ratio"] = final / baseline
        n["stalled"] = bool(final >= th.stalled_fraction * baseline)


def _stall_text(n: dict[str, Any], th: Thresholds) -> str:
    """The clause naming both losses: "the held-out loss 0.47 is 2.72x the best constant prediction's 0.173"."""
    ratio = f"{n['loss_ratio']:.2f}" if n["loss_ratio"] < 100 else f"{n['loss_ratio']:.2g}"  # 1.01x, but 7.3e+58x
    return (f"the held-out loss {n['final_loss']:.3g} is {ratio}x the best constant prediction's "
            f"{n['baseline_loss']:.3g} (stalled at >= {th.stalled_fraction:g}x)")  # fmt: skip


def diagnose(
    steps: pd.DataFrame | None,
    layers: pd.DataFrame | None,
    timesteps: pd.DataFrame | None,
    facts: dict | None = None,
    thresholds: Thresholds = Thresholds(),
) -> Diagnosis:
    """Label one run from its tables (one run_id each; any may be None or empty) and facts:
    model ("mlp", "rnn", "lstm", "gru"; inferred from the tables when absent), activation, init, sigma_w2,
    sigma_b2, slope, depth (weight layers of the MLP), norm ("none", "layer", "batch") and residual (MLP),
    loss_on ("last", "all"; inferred from the timesteps table when absent), for the RNN optionally
    weight_hh, and final_loss and baseline_loss for the stalled label."""
    facts = dict(facts or {})
    th = thresholds
    empty = pd.DataFrame()
    layers = layers if layers is not None else empty
    kind = facts.get("model") or ("mlp" if timesteps is None or not len(timesteps) else "rnn")
    seq = kind in SEQUENCE_MODELS
    facts["model"] = kind
    n: dict[str, Any] = {k: math.nan for k in NUMBERS}
    n.update(diverged_step=None, dead_step=None, collapsed=None, fully_dead_layers=0, fit_steps=0,
             delta_layers=0, dh_steps=0, dh_column="", dh_layer=None, dh_log10_change_by_layer=(),
             stalled=None)  # fmt: skip
    _stalled(n, facts, th)

    # the measurements
    zeros = 0  # hidden layers (time steps) whose norm is exactly 0 while others' is not
    by_layer: dict[int, dict[str, float]] = {}
    if len(layers):
        hidden = _hidden(layers, kind, facts.get("depth"))
        n.update(_dead(layers, steps, hidden))
        if kind == "mlp":
            depth = facts.get("depth")
            fit = _fits(layers, "layer", "delta_norm", _hidden(layers, kind, depth).to_numpy(), th.min_fit_points)
            n.update(delta_factor=fit["factor"], delta_log10_change=fit["log10_change"],
                     delta_ratio_first_last=fit["ratio"], delta_layers=fit["points"],
                     fit_steps=fit["steps"])  # fmt: skip
            zeros = fit["zeros"]
    if seq and timesteps is not None and len(timesteps):
        column = _long_range_column(timesteps, facts.get("loss_on"))
        by_layer = _time_fits(timesteps, column, th.min_fit_points)
        changes = {j: f["log10_change"] for j, f in by_layer.items()}
        deciding = min(by_layer)  # layer 0: the one the inputs enter (see the module docstring)
        fit = by_layer[deciding]
        n.update(dh_factor=fit["factor"], dh_log10_change=fit["log10_change"], dh_ratio_first_last=fit["ratio"],
                 dh_steps=fit["points"], fit_steps=fit["steps"], dh_column=column, dh_layer=deciding,
                 dh_log10_change_by_layer=tuple(changes[j] for j in sorted(changes)),
                 dh_depth_log10_change=_depth_change(timesteps, column))  # fmt: skip
        zeros = max(f["zeros"] for f in by_layer.values())
    plain = facts.get("norm", "none") in (None, "none") and not facts.get("residual", False)
    if kind == "mlp" and plain:
        n["predicted_factor"], n["chi1"] = mean_field_prediction(facts)
    if kind == "rnn":
        n["gamma_norm"] = _gamma_norm(facts)

    # the rules
    step, what = _first_nonfinite(steps, layers if len(layers) else None)
    if step is not None:
        n["diverged_step"] = step
        return Diagnosis("diverged", f"{what} at step {step}, the first non-finite value: the run diverged.", n)

    stall = f"; {_stall_text(n, th)}" if n["stalled"] else ""
    dead = n["dead_frac"]
    if np.isfinite(dead) and (dead >= th.dying_dead_frac or n["fully_dead_layers"] > 0):
        parts = [f"{_pct(dead)} of hidden units are dead on the probe set at step {n['dead_step']}"]
        parts[0] += f" ({_pct(n['born_dead_frac'])} born dead, {_pct(n['died_frac'])} died in training)"
        if n["fully_dead_layers"]:
            k = n["fully_dead_layers"]
            parts.append(f"{k} hidden layer{'s are' if k > 1 else ' is'} entirely dead")
        if n["collapsed"]:
            parts.append("the network is a constant function on the probe set")
        return Diagnosis("dying", "; ".join(parts) + stall + ".", n)

    what, unit, change, factor, count = (
        (n["dh_column"] or "dh_norm", "step", n["dh_log10_change"], n["dh_factor"], n["dh_steps"]) if seq
        else ("delta_norm", "layer", n["delta_log10_change"], n["delta_factor"], n["delta_layers"])
    )  # fmt: skip
    stacked = seq and len(by_layer) >= 2
    span = f"over {count} {unit}s" + (" back in time" if seq else "")
    if stacked:
        span += f" in cell layer {n['dh_layer']}"
    extra = ""
    if np.isfinite(n["predicted_factor"]):
        extra = f"; mean field predicts x{n['predicted_factor']:.2f}"
    elif np.isfinite(n["gamma_norm"]) and n["dh_layer"] in (None, 0):  # layer 0's W_hh: its bound only
        extra = f"; Pascanu's bound gamma ||W_hh||_2 = {n['gamma_norm']:.2f}"
    detail = f"(x{factor:.2f} per {unit}{extra})"
    depth_change = n["dh_depth_log10_change"]
    layers_text = lambda first: _depth_text(n, by_layer, what, first) if stacked else ""  # noqa: E731
    if np.isfinite(change) and change >= th.exploding_decades:
        return Diagnosis("exploding", f"{what} grows 10^{change:.1f} {span} {detail}{layers_text(False)}{stall}.", n)
    if np.isfinite(change) and change <= -th.vanishing_decades:
        return Diagnosis("vanishing", f"{what} falls 10^{change:.1f} {span} {detail}{layers_text(True)}{stall}.", n)
    through_time = f"; through time it changes 10^{change:+.1f} {span}" if np.isfinite(change) else ""
    top = len(by_layer) - 1
    if stacked and np.isfinite(depth_change) and depth_change >= th.exploding_decades:
        return Diagnosis("exploding", f"{what} at the last step grows 10^{depth_change:.1f} through depth, from cell "
                         f"layer {top} down to layer 0{through_time}{stall}.", n)  # fmt: skip
    if stacked and np.isfinite(depth_change) and depth_change <= -th.vanishing_decades:
        return Diagnosis("vanishing", f"{what} at the last step falls 10^{depth_change:.1f} through depth, from cell "
                         f"layer {top} down to layer 0: it dies first in layer 0{through_time}{stall}.", n)  # fmt: skip
    if zeros:
        return Diagnosis("vanishing", f"{what} is exactly 0 in {zeros} of the {unit}s {span} while not in others{stall}.", n)
    if np.isfinite(change):
        sentence = f"{what} changes 10^{change:+.1f} {span} {detail}{layers_text(False)}"
    else:
        sentence = f"too few {unit}s to fit how {what} changes"
    if np.isfinite(dead):
        sentence += f"; {_pct(dead)} of hidden units dead"
    if n["stalled"]:
        text = _stall_text(n, th)
        return Diagnosis("stalled", f"{text[0].upper()}{text[1:]}, though no gradient pathology was measured: {sentence}.", n)
    return Diagnosis("healthy", sentence + ".", n)


def _depth_text(n: dict[str, Any], by_layer: dict[int, dict[str, float]], what: str, dies: bool) -> str:
    """Stacked cells: the other layers' changes through time, where the gradient dies first, and the
    comparison through depth; dies: layer 0's gradient vanishes."""
    others = {j: f["log10_change"] for j, f in sorted(by_layer.items())
              if j != n["dh_layer"] and np.isfinite(f["log10_change"])}  # fmt: skip
    mine = n["dh_log10_change"]
    faster = [j for j, c in others.items() if not np.isfinite(mine) or c < mine]
    first = min(faster, key=lambda j: others[j]) if faster else None
    if dies and first is None:
        text = ", where it dies first"
    elif first is not None:
        text = f", the layer the inputs enter; it {'dies first' if dies else 'falls most'} in layer {first}"
    else:
        text = ", the layer the inputs enter"
    listed = [f"layer {j}: 10^{c:+.1f}" for j, c in others.items()]
    text += f" ({', '.join(listed)})" if listed else ""
    d = n["dh_depth_log10_change"]
    if np.isfinite(d):
        text += f"; through depth, at the last step, layer 0's is 10^{d:+.1f} of layer {len(by_layer) - 1}'s"
    return text


def diagnose_tables(tables: dict[str, pd.DataFrame], facts: dict | None = None,
                    thresholds: Thresholds = Thresholds()) -> Diagnosis:  # fmt: skip
    """diagnose() on Recorder.frames()'s dict."""
    return diagnose(tables.get("steps"), tables.get("layers"), tables.get("timesteps"), facts, thresholds)
