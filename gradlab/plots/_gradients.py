"""Helpers shared by the gradient figures (gradient_by_layer, depth_activation_heatmap,
gradient_through_time, time_step_heatmap): logs of norms that may be 0 or inf, a line per activation
(and leaky slope) in its colour, the median over seeds with its band, and the hidden layers' weight
variance of a runs-table row."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from gradlab import theory
from gradlab.nn.activations import DEFAULT_SLOPE
from gradlab.plots import _runinfo, split, style
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


def wide(df: pd.DataFrame, by: str, value: str) -> pd.DataFrame:
    """run_id x `by` (layer or t) of value: one row per run, for split.band."""
    df = df.drop_duplicates(["run_id", by])
    return df.pivot(index="run_id", columns=by, values=value).sort_index(axis=1).astype(float)


def line(ax, x, rows: np.ndarray, color, gid: str, band: bool = True, **kw) -> np.ndarray:
    """The median over the runs (rows) drawn as a line (zeros and inf hidden: positive()), with the seeds'
    band (gid 'band:' + gid) when there are several runs; returns the median."""
    med, lo, hi = split.band(rows)
    ax.plot(x, positive(med), color=color, gid=gid, **kw)
    if band and np.asarray(rows).shape[0] > 1:
        style.fill_band(ax, x, positive(lo), positive(hi), color, gid=f"band:{gid}")
    return med


def decades(x, values, at: float, base: float) -> float:
    """log10(value at x = at / value at x = base): the decades a norm gains from `base` to `at` (negative:
    it falls); NaN when either is missing, 0 or not finite."""
    by = dict(zip(np.asarray(x).tolist(), np.asarray(values, dtype=np.float64)))
    a, b = by.get(at, math.nan), by.get(base, math.nan)
    if not (a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b)):
        return math.nan
    return math.log10(a / b)


def line_key(run) -> tuple[str, float | None]:
    """(activation, slope): a line per activation, and per slope for leaky ReLU."""
    act = str(run["activation"])
    slope = run.get("leaky_slope") if act == "leaky_relu" else None
    return act, (None if slope is None or pd.isna(slope) else float(slope))


def line_keys(runs: pd.DataFrame) -> list[tuple[str, float | None]]:
    keys = {line_key(r) for _, r in runs.iterrows()}
    order = {a: i for i, a in enumerate(activations_in({k[0] for k in keys}))}
    return sorted(keys, key=lambda k: (order[k[0]], k[1] if k[1] is not None else -1.0))


def key_mask(runs: pd.DataFrame, key: tuple[str, float | None]) -> pd.Series:
    act, slope = key
    mask = runs["activation"] == act
    if slope is not None:
        mask &= np.isclose(runs["leaky_slope"].astype(float), slope)
    return mask


def key_label(key: tuple[str, float | None], keys) -> str:
    """'relu', 'leaky_relu' or 'leaky_relu (slope 0.1)' when several slopes are drawn."""
    act, slope = key
    slopes = {k[1] for k in keys if k[0] == act}
    return f"{act} (slope {slope:g})" if slope is not None and len(slopes) > 1 else act


def key_color(key: tuple[str, float | None], keys):
    """The activation's colour; leaky slopes as its shades (the smallest slope darkest)."""
    from gradlab.plots._runinfo import shades

    act, slope = key
    slopes = sorted({k[1] for k in keys if k[0] == act and k[1] is not None})
    if slope is None or len(slopes) < 2:
        return style.color_of(act)
    return shades(style.color_of(act), len(slopes), 0.5)[slopes.index(slope)]


def top_layer(timesteps: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """The timesteps rows of each run's top cell layer (the one the readout reads; 0 is nearest the
    input), and whether any run has stacked cells (several layers)."""
    if "layer" not in timesteps.columns or timesteps.empty:
        return timesteps, False
    layer = timesteps["layer"].fillna(0)
    top = layer.groupby(timesteps["run_id"]).transform("max")
    return timesteps[layer == top], bool((top > 0).any())


def last_steps(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of each run's last logged step."""
    last = df.groupby("run_id")["step"].transform("max")
    return df[df["step"] == last]


def title(fig, text: str) -> None:
    """style.caption with 'head: config' (Context.title), wrapped after the head and then to the
    figure's width (about 15 characters per inch at the caption's 9 points)."""
    import textwrap

    width = max(40, int(15 * fig.get_figwidth()))
    if len(text) > width and ": " in text:
        head, config = text.split(": ", 1)
        text = head + "\n" + "\n".join(textwrap.wrap(config, width))
    style.caption(fig, text)


def hidden_sigma(run: pd.Series) -> tuple[float, float] | None:
    """(sigma_w2, sigma_b2) of an MLP run's hidden layers: Var[W] = sigma_w2 / fan_in.

    mean_field: the run's sigma_w2 and sigma_b2; any other init: fan_in x theory.init_variance on
    square hidden layers (standard 1/3, xavier 1 x gain^2, he 2/(1 + slope^2), orthogonal gain^2) with
    zero biases (gradlab.nn.dense). None when the init is not known to gradlab.theory."""
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


def sigma_of(runs: pd.DataFrame):
    """(sigma_w2, sigma_b2, slope) of the hidden layers, shared by the runs, or None (unknown init, they
    differ, or a run is no plain net: mean field's recursion is the plain stack's, not one with a norm layer
    or residual connections)."""
    if not _runinfo.plain(runs):
        return None
    sigmas = {hidden_sigma(row) for _, row in runs.iterrows()}
    slopes = set(runs["leaky_slope"].astype(float)) if "leaky_slope" in runs else {DEFAULT_SLOPE}
    if len(sigmas) != 1 or None in sigmas or len(slopes) != 1:
        return None
    (sw2, sb2), slope = sigmas.pop(), slopes.pop()
    return sw2, sb2, slope


def mean_field_deltas(runs: pd.DataFrame, activation: str, depth: int, anchor: float) -> np.ndarray | None:
    """Mean-field delta_norm for hidden layers 0..depth-1 anchored at the last one, or None."""
    sigma = sigma_of(runs)
    if sigma is None or not (np.isfinite(anchor) and anchor > 0):
        return None
    try:
        return theory.predicted_delta_norms(activation, sigma[0], sigma[1], depth, slope=sigma[2], last=anchor)
    except ValueError:
        return None


def chi1_of(runs: pd.DataFrame, activation: str) -> float | None:
    """Mean field's chi_1 of the runs' shared init for `activation`, or None."""
    sigma = sigma_of(runs)
    if sigma is None:
        return None
    try:
        return theory.chi1(activation, *sigma)
    except ValueError:
        return None

def log_ylim(ax, drawn) -> None:
    """A log y range over the positive finite values of the lines `drawn`, with a margin of 8% of its
    decades (at least one decade)."""
    v = positive(np.concatenate([np.asarray(d, dtype=float).ravel() for d in drawn]))
    v = v[np.isfinite(v)]
    if v.size:
        lo, hi = float(v.min()), float(v.max())
        span = max(math.log10(hi / lo), 1.0)
        ax.set_ylim(lo / 10 ** (0.08 * span), hi * 10 ** (0.08 * span))


def need(tables: dict[str, pd.DataFrame], name: str, columns, what: str) -> pd.DataFrame:
    """tables[name] with at least one row and the columns, or SkipFigure naming what is missing."""
    return _runinfo_need(tables, name, columns, what, rows=True)
