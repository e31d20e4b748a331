"""Diagnosis: one label per run (healthy, vanishing, exploding, dying, diverged), the numbers behind
it and one plain sentence, from the run's tidy tables (gradlab.probes) and a few facts about it.

The rules, in order (the first that applies wins):

    diverged   a loss or gradient norm is inf/NaN: the step of the first one (steps table; the layers
               table's norms as a fallback).
    dying      on the last step measured on the probe set, the mean dead fraction over the hidden
               layers is >= Thresholds.dying_dead_frac, or some hidden layer is entirely dead (then the
               network is constant on the probe set: Lu et al. 2019's dead network).
    exploding  the gradient grows by >= 10^Thresholds.exploding_decades from the output side to the
               input side (MLP: delta_norm over the hidden layers) or back in time (RNN/LSTM: dh_norm
               from the last step to the first).
    vanishing  it shrinks by >= 10^Thresholds.vanishing_decades (or is exactly 0 in some hidden layer
               while not 0 in others).
    healthy    none of the above.

Layers are compared with each other at each logged step (a gradient that is tiny from the first
step is vanishing), never a layer with its own history. The per-layer growth factor is the exp of the
least-squares slope of ln delta_norm against the layer index, read from the output toward the input
(< 1: shrinks toward the input); the output layer is left out (its width, and so its norm, differs:
the hidden layers are assumed to be of equal width). The per-step factor of dh_norm is the same fit
against t, read from the last step back to the first. Each logged step gives a fit; the run's number
is the median over logged steps. The change over the network is factor^(span), span = the number of
layer (step) gaps fitted.

The mean-field prediction of the per-layer factor is sqrt(chi_1) (gradlab.theory.chi1), shown when the
run's init (or sigma_w2) is known; for the RNN, gamma ||W_hh||_2 (Pascanu et al. 2013's per-step
bound) when the facts carry weight_hh.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gradlab import theory
from gradlab.nn.activations import DEFAULT_SLOPE

LABELS = ("healthy", "vanishing", "exploding", "dying", "diverged")


@dataclass(frozen=True)
class Thresholds:
    """When a run gets which label.

    vanishing_decades: the gradient shrinking by at least 10^vanishing_decades from the output side to
        the input side of the hidden layers (MLP, fitted delta_norm), or from the last time step back
        to the first (RNN/LSTM, fitted dh_norm), is vanishing. Default 2: a hundredfold.
    exploding_decades: growing by at least 10^exploding_decades the same way is exploding. Default 2.
    dying_dead_frac: a mean dead fraction over the hidden layers (on the probe set, at the last step it
        was measured) at or above this is dying; so is any hidden layer entirely dead. Default 0.3.
    min_fit_points: fewer hidden layers (time steps) with a positive finite norm than this and no
        factor is fitted (it is NaN and cannot give vanishing or exploding). Default 2.
    """

    vanishing_decades: float = 2.0
    exploding_decades: float = 2.0
    dying_dead_frac: float = 0.3
    min_fit_points: int = 2

    def __post_init__(self) -> None:
        for name in ("vanishing_decades", "exploding_decades"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a number > 0, got {v!r}")
        if not (isinstance(self.dying_dead_frac, (int, float)) and 0 < self.dying_dead_frac <= 1):
            raise ValueError(f"dying_dead_frac must be a number in (0, 1], got {self.dying_dead_frac!r}")
        if not (isinstance(self.min_fit_points, int) and self.min_fit_points >= 2):
            raise ValueError(f"min_fit_points must be an integer >= 2, got {self.min_fit_points!r}")


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
    "dh_factor": "fitted per-step factor of dh_norm going back in time (< 1 shrinks)",
    "dh_log10_change": "log10 of the fitted change of dh_norm from the last step back to the first",
    "dh_ratio_first_last": "dh_norm at the first step / at the last step (measured)",
    "dh_steps": "number of time steps in the fit",
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


def _fits(table: pd.DataFrame, pos: str, value: str, keep, min_points: int) -> dict[str, float]:
    """Per logged step: the fitted factor, the span, the measured first/last ratio and zero count;
    the medians over steps."""
    logf, ratios, spans, points, zeros = [], [], [], [], 0
    for _, g in table.groupby("step", sort=True):
        g = g[keep(g)].sort_values(pos)
        v, x = g[value].to_numpy(np.float64), g[pos].to_numpy(np.float64)
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
            bad = steps[~np.isfinite(steps[col].to_numpy(np.float64))]
            if len(bad):
                row = bad.sort_values("step").iloc[0]
                found.append((int(row["step"]), f"the {'loss' if col == 'loss' else 'gradient norm'} is {row[col]}"))
    if layers is not None and len(layers):
        for col in ("weight_grad_norm", "delta_norm"):
            bad = layers[~np.isfinite(layers[col].to_numpy(np.float64))]
            if len(bad):
                row = bad.sort_values("step").iloc[0]
                found.append((int(row["step"]), f"{col} of layer {int(row['layer'])} is {row[col]}"))
    if not found:
        return None, ""
    return min(found, key=lambda f: f[0])


def _hidden(layers: pd.DataFrame, kind: str, depth: int | None) -> pd.Series:
    if kind == "mlp":
        L = depth if depth is not None else int(layers["layer"].max()) + 1
        return layers["layer"] < L - 1
    return layers["layer"] == 0


def _dead(layers: pd.DataFrame, steps: pd.DataFrame | None, hidden: pd.Series) -> dict[str, Any]:
    out: dict[str, Any] = {"dead_frac": math.nan, "born_dead_frac": math.nan, "died_frac": math.nan,
                           "fully_dead_layers": 0, "collapsed": None, "dead_step": None}  # fmt: skip
    d = layers[hidden & np.isfinite(layers["dead_frac"].to_numpy(np.float64))]
    if not len(d):
        return out
    step = int(d["step"].max())
    d = d[d["step"] == step]
    out.update(
        dead_frac=float(d["dead_frac"].mean()),
        born_dead_frac=float(d["born_dead_frac"].mean()),
        died_frac=float(d["died_frac"].mean()),
        fully_dead_layers=int((d["dead_frac"] >= 1.0).sum()),
        dead_step=step,
    )
    if steps is not None and "collapsed" in steps and len(steps):
        c = steps.loc[steps["step"] == step, "collapsed"]
        if len(c) and not pd.isna(c.iloc[0]):
            out["collapsed"] = bool(c.iloc[0])
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%" if x >= 0.01 or x == 0 else f"{100 * x:.1g}%"


def diagnose(
    steps: pd.DataFrame | None,
    layers: pd.DataFrame | None,
    timesteps: pd.DataFrame | None,
    facts: dict | None = None,
    thresholds: Thresholds = Thresholds(),
) -> Diagnosis:
    """Label one run from its tables (one run_id each; any may be None or empty) and facts:
    model ("mlp", "rnn", "lstm"; inferred from the tables when absent), activation, init, sigma_w2,
    sigma_b2, slope, depth (weight layers of the MLP), and for the RNN optionally weight_hh."""
    facts = dict(facts or {})
    th = thresholds
    empty = pd.DataFrame()
    layers = layers if layers is not None else empty
    kind = facts.get("model") or ("mlp" if timesteps is None or not len(timesteps) else "rnn")
    seq = kind in ("rnn", "lstm")
    facts["model"] = kind
    n: dict[str, Any] = {k: math.nan for k in NUMBERS}
    n.update(diverged_step=None, dead_step=None, collapsed=None, fully_dead_layers=0, fit_steps=0,
             delta_layers=0, dh_steps=0)  # fmt: skip

    # the measurements
    zeros = 0  # hidden layers (time steps) whose norm is exactly 0 while others' is not
    if len(layers):
        hidden = _hidden(layers, kind, facts.get("depth"))
        n.update(_dead(layers, steps, hidden))
        if kind == "mlp":
            depth = facts.get("depth")
            fit = _fits(layers, "layer", "delta_norm", lambda g: _hidden(g, kind, depth), th.min_fit_points)
            n.update(delta_factor=fit["factor"], delta_log10_change=fit["log10_change"],
                     delta_ratio_first_last=fit["ratio"], delta_layers=fit["points"],
                     fit_steps=fit["steps"])  # fmt: skip
            zeros = fit["zeros"]
    if seq and timesteps is not None and len(timesteps):
        fit = _fits(timesteps, "t", "dh_norm", lambda g: np.ones(len(g), bool), th.min_fit_points)
        n.update(dh_factor=fit["factor"], dh_log10_change=fit["log10_change"], dh_ratio_first_last=fit["ratio"],
                 dh_steps=fit["points"], fit_steps=fit["steps"])  # fmt: skip
        zeros = fit["zeros"]
    if kind == "mlp":
        n["predicted_factor"], n["chi1"] = mean_field_prediction(facts)
    if kind == "rnn":
        n["gamma_norm"] = _gamma_norm(facts)

    # the rules
    step, what = _first_nonfinite(steps, layers if len(layers) else None)
    if step is not None:
        n["diverged_step"] = step
        return Diagnosis("diverged", f"{what} at step {step}, the first non-finite value: the run diverged.", n)

    dead = n["dead_frac"]
    if np.isfinite(dead) and (dead >= th.dying_dead_frac or n["fully_dead_layers"] > 0):
        parts = [f"{_pct(dead)} of hidden units are dead on the probe set at step {n['dead_step']}"]
        parts[0] += f" ({_pct(n['born_dead_frac'])} born dead, {_pct(n['died_frac'])} died in training)"
        if n["fully_dead_layers"]:
            k = n["fully_dead_layers"]
            parts.append(f"{k} hidden layer{'s are' if k > 1 else ' is'} entirely dead")
        if n["collapsed"]:
            parts.append("the network is a constant function on the probe set")
        return Diagnosis("dying", "; ".join(parts) + ".", n)

    what, unit, change, factor, count = (
        ("dh_norm", "step", n["dh_log10_change"], n["dh_factor"], n["dh_steps"]) if seq
        else ("delta_norm", "layer", n["delta_log10_change"], n["delta_factor"], n["delta_layers"])
    )  # fmt: skip
    span = f"over {count} {unit}s" + (" back in time" if seq else "")
    extra = ""
    if np.isfinite(n["predicted_factor"]):
        extra = f"; mean field predicts x{n['predicted_factor']:.2f}"
    elif np.isfinite(n["gamma_norm"]):
        extra = f"; Pascanu's bound gamma ||W_hh||_2 = {n['gamma_norm']:.2f}"
    detail = f"(x{factor:.2f} per {unit}{extra})"
    if np.isfinite(change) and change >= th.exploding_decades:
        return Diagnosis("exploding", f"{what} grows 10^{change:.1f} {span} {detail}.", n)
    if np.isfinite(change) and change <= -th.vanishing_decades:
        return Diagnosis("vanishing", f"{what} falls 10^{change:.1f} {span} {detail}.", n)
    if zeros:
        return Diagnosis("vanishing", f"{what} is exactly 0 in {zeros} of the {unit}s {span} while not in others.", n)
    if np.isfinite(change):
        sentence = f"{what} changes 10^{change:+.1f} {span} {detail}"
    else:
        sentence = f"too few {unit}s to fit how {what} changes"
    if np.isfinite(dead):
        sentence += f"; {_pct(dead)} of hidden units dead"
    return Diagnosis("healthy", sentence + ".", n)


def diagnose_tables(tables: dict[str, pd.DataFrame], facts: dict | None = None,
                    thresholds: Thresholds = Thresholds()) -> Diagnosis:  # fmt: skip
    """diagnose() on Recorder.frames()'s dict."""
    return diagnose(tables.get("steps"), tables.get("layers"), tables.get("timesteps"), facts, thresholds)
