"""Helpers shared by the gradient figures (gradient_by_layer, depth_activation_heatmap,
gradient_through_time, time_step_heatmap): naming a config, logs of norms that may be 0 or inf,
averaging over repeated runs, and the hidden layers' weight variance of a runs-table row."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from gradlab.plots import style
from gradlab.plots._runinfo import fmt as _fmt
from gradlab.plots._runinfo import need as _runinfo_need

LAYER_COLUMNS = ("step", "layer", "delta_norm", "weight_grad_norm")
TIME_COLUMNS = ("step", "t", "dh_norm")
ACTIVATION_ORDER = tuple(style.ACTIVATION_COLORS)  # sigmoid, tanh, relu, leaky_relu, identity


def activations_in(values) -> list[str]:
    """The activations present, in the palette's order (unknown ones last, sorted)."""
    present = set(values)
    return [a for a in ACTIVATION_ORDER if a in present] + sorted(present - set(ACTIVATION_ORDER))


def positive(values) -> np.ndarray:
    """float array with entries that are not finite and > 0 replaced by NaN (log axes hide them)."""
    x = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(x) & (x > 0), x, np.nan)


def geomean(values) -> float:
    """Geometric mean of the finite positive values; 0.0 when every value is exactly 0; NaN if none."""
    x = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(x) & (x > 0)
    if ok.any():
        return float(np.exp(np.mean(np.log(x[ok]))))
    return 0.0 if x.size and np.all(x == 0) else math.nan


def mean_over_runs(df: pd.DataFrame, by: str, value: str) -> pd.Series:
    """value per `by` (layer or t), the geometric mean over the runs in df (seeds)."""
    return df.groupby(by)[value].agg(geomean).sort_index()


def last_steps(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of each run's last logged step."""
    last = df.groupby("run_id")["step"].transform("max")
    return df[df["step"] == last]


def constant(runs: pd.DataFrame, column: str):
    """The column's one value over the runs, or None when absent or varying."""
    if column not in runs or runs.empty:
        return None
    values = runs[column].dropna().unique()
    return values[0] if len(values) == 1 else None


def describe(runs: pd.DataFrame, skip: tuple[str, ...] = ()) -> str:
    """The config fields the runs share, in words:
    'MLP, width 64, init standard, teacher_student, sgd lr 0.01, no clipping, 200 steps'."""
    parts = []

    def has(col):
        return col not in skip and constant(runs, col) is not None

    if has("model"):
        parts.append(str(constant(runs, "model")).upper())
    if has("width"):
        recurrent = "model" in runs and runs["model"].isin(["rnn", "lstm"]).all()
        parts.append(("H " if recurrent else "width ") + _fmt(constant(runs, "width")))
    if has("activation") and constant(runs, "model") != "lstm":
        parts.append(str(constant(runs, "activation")))
    if has("init"):
        init = str(constant(runs, "init"))
        rec = constant(runs, "recurrent_init") if constant(runs, "model") in ("rnn", "lstm") else None
        text = f"init {init}"
        if rec not in (None, "", init):
            text += f", W_hh {rec}"
        if "mean_field" in (init, rec) and constant(runs, "sigma_w2") is not None:
            text += f" (sigma_w2 {_fmt(float(constant(runs, 'sigma_w2')))}"
            sb2 = constant(runs, "sigma_b2")
            text += f", sigma_b2 {_fmt(float(sb2))})" if sb2 not in (None, 0, 0.0) else ")"
        parts.append(text)
    if has("task"):
        task = str(constant(runs, "task"))
        if task in ("adding", "temporal_order", "copy_memory") and has("T"):
            task += f" T={_fmt(constant(runs, 'T'))}"
        parts.append(task)
    if has("optimizer"):
        text = str(constant(runs, "optimizer"))
        if has("lr"):
            text += f" lr {_fmt(float(constant(runs, 'lr')))}"
        parts.append(text)
    if has("clip_mode"):
        mode = constant(runs, "clip_mode")
        if mode == "none":
            parts.append("no clipping")
        elif has("clip"):
            parts.append(f"{mode} clip {_fmt(float(constant(runs, 'clip')))}")
    if has("steps"):
        parts.append(f"{_fmt(constant(runs, 'steps'))} steps")
    seeds = runs["seed"].nunique() if "seed" in runs else 1
    if seeds > 1 and "seed" not in skip:
        parts.append(f"{seeds} seeds (geometric mean)")
    return ", ".join(parts)


def title(fig, head: str, config: str) -> None:
    """style.caption with 'head: config', the config on a second line when one line would be wider
    than the figure (about 14 characters per inch at the caption's 9 points)."""
    text = f"{head}: {config}"
    if len(text) > 14 * fig.get_figwidth():
        text = f"{head}\n{config}"
    style.caption(fig, text)


def hidden_sigma(run: pd.Series) -> tuple[float, float] | None:
    """(sigma_w2, sigma_b2) of an MLP run's hidden layers: Var[W] = sigma_w2 / fan_in.

    mean_field: the run's sigma_w2 and sigma_b2; any other init: fan_in x theory.init_variance on
    square hidden layers (standard 1/3, xavier 1 x gain^2, he 2/(1 + slope^2), orthogonal gain^2) with
    zero biases (gradlab.nn.dense). None when the init is not known to gradlab.theory."""
    from gradlab import theory

    init = run.get("init")
    if init == "mean_field":
        return float(run.get("sigma_w2", 1.0)), float(run.get("sigma_b2", 0.0) or 0.0)
    slope = float(run.get("leaky_slope", 0.0)) if run.get("activation") == "leaky_relu" else 0.0
    gain = run.get("gain")
    gain = None if gain is None or (isinstance(gain, float) and math.isnan(gain)) else float(gain)
    try:
        return float(theory.init_variance(str(init), 1, 1, gain=gain, slope=slope)), 0.0
    except (ValueError, TypeError):
        return None



def need(tables: dict[str, pd.DataFrame], name: str, columns, what: str) -> pd.DataFrame:
    """tables[name] with at least one row and the columns, or SkipFigure naming what is missing."""
    return _runinfo_need(tables, name, columns, what, rows=True)
