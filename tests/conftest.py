"""Shared helpers for the engine's tests: comparisons whose failure messages name the quantity, the
worst index and both values; problem builders; hypothesis settings.

The helpers are plain functions (imported as `from conftest import ...`, which pytest's default
import mode allows) so that a failing assertion points at the test that called them.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, settings

from gradlab.nn import LSTM, MLP, RNN, activations, gradcheck, losses

# Hypothesis settings for the engine's property tests (applied per test with @ENGINE, so other
# suites keep their own): a fixed, derandomised set of 50 examples keeps the suite fast and
# reproducible on 2 shared cores; no deadline, because a shared machine's timing is noise.
ENGINE = settings(max_examples=50, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

ACTIVATIONS = activations.NAMES  # identity, sigmoid, tanh, relu, leaky_relu
LOSSES = losses.NAMES  # mse, sum_squares, cross_entropy, bce
OUTPUTS = ("last", "all")
TRUNCATIONS = (None, 1, 2, 4)  # full BPTT and BPTT(k); T = 5 below, so 2 and 4 leave a short first chunk


def worst_index(actual: np.ndarray, expected: np.ndarray) -> tuple:
    """The index of the largest absolute difference (NaN counts as largest)."""
    diff = np.abs(np.asarray(actual, dtype=np.float64) - np.asarray(expected, dtype=np.float64))
    diff = np.where(np.isnan(diff), np.inf, diff)
    return np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.size else ()


def describe(name: str, actual: np.ndarray, expected: np.ndarray, extra: str = "") -> str:
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape:
        return f"{name}: shape {actual.shape} != expected {expected.shape} {extra}"
    idx = worst_index(actual, expected)
    a, e = (actual[idx], expected[idx]) if actual.ndim else (actual.item(), expected.item())
    where = f"index {tuple(int(i) for i in idx)}" if actual.ndim else "scalar"
    return f"{name}: worst at {where}: got {a!r}, expected {e!r} {extra}".rstrip()


def assert_rel(actual, expected, tol: float, name: str, atol: float = 0.0) -> None:
    """Norm-wise relative error ||a - e|| / max(||a||, ||e||) below tol (gradcheck's measure), or,
    when atol > 0, ||a - e|| <= atol: a gradient that is exactly 0 (beyond a truncation cut) has a
    finite-difference estimate of pure rounding noise, about 1e-12 for an O(1) loss at h = 1e-4."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, describe(name, actual, expected)
    assert np.all(np.isfinite(actual)), describe(name, actual, expected, "(non-finite value)")
    err = gradcheck.relative_error(actual, expected)
    if atol and float(np.linalg.norm(actual - expected)) <= atol:
        return
    assert err < tol, describe(name, actual, expected, f"(relative error {err:.3g} >= {tol:g})")


def assert_close(actual, expected, name: str, rtol: float = 0.0, atol: float = 0.0) -> None:
    """Elementwise |a - e| <= atol + rtol |e|, naming the worst index on failure."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, describe(name, actual, expected)
    ok = np.abs(actual.astype(np.float64) - expected.astype(np.float64)) <= atol + rtol * np.abs(expected)
    assert ok.all(), describe(name, actual, expected, f"(rtol={rtol:g}, atol={atol:g})")


def make_target(loss_name: str, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    """A target for `loss_name` for outputs of `shape`: integer labels for cross_entropy (the shape
    without its last axis), probabilities in [0, 1] for bce, Gaussian values otherwise."""
    if loss_name == "cross_entropy":
        return rng.integers(0, shape[-1], size=shape[:-1])
    if loss_name == "bce":
        return rng.uniform(size=shape)
    return rng.normal(size=shape)


def output_shape(model, x: np.ndarray) -> tuple:
    if isinstance(model, MLP):
        return (x.shape[0], model.sizes[-1])
    N, T = x.shape[:2]
    return (N, model.output_size) if model.output == "last" else (N, T, model.output_size)


def build(
    kind: str,
    activation: str = "tanh",
    *,
    output: str = "last",
    truncate=None,
    depth: int = 2,
    sizes=(2, 5, 3, 4),
    dtype="float64",
    seed: int = 0,
    bias_scale: float = 0.1,
):
    """A small model of `kind` (mlp, rnn, lstm) with xavier_normal weights and a random bias (so that
    zero biases do not hide a bias-gradient bug). sizes = (N, T, D, H) for sequences; an MLP has
    `depth` weight layers, inputs D and widths H, H+1, ..."""
    rng = np.random.default_rng(seed)
    N, T, D, H = sizes
    O = 3
    if kind == "mlp":
        widths = [D] + [H + l for l in range(depth - 1)] + [O]
        model = MLP(widths, activation, rng=rng, init="xavier_normal", dtype=dtype)
        for l in range(model.depth):
            model.params[f"layers.{l}.bias"] += rng.normal(scale=bias_scale, size=widths[l + 1]).astype(dtype)
    elif kind == "rnn":
        model = RNN(D, H, O, activation, output=output, truncate=truncate, rng=rng, init="xavier_normal", dtype=dtype)
    elif kind == "lstm":
        model = LSTM(D, H, O, output=output, truncate=truncate, rng=rng, init="xavier_normal", dtype=dtype)
    else:
        raise AssertionError(kind)
    for name in ("bias", "readout.bias"):
        if name in model.params:
            model.params[name] += rng.normal(scale=bias_scale, size=model.params[name].shape).astype(dtype)
    return model


def draw_x(model, sizes=(2, 5, 3, 4), seed: int = 1, dtype="float64") -> np.ndarray:
    N, T, D, _ = sizes
    rng = np.random.default_rng(seed)
    shape = (N, D) if isinstance(model, MLP) else (N, T, D)
    return rng.normal(size=shape).astype(dtype)


def margin_of(model, x) -> float:
    """gradcheck.preactivation_margin, except that a one-layer MLP has no hidden activation and so no
    kink (preactivation_margin raises on it: see test_gradients.test_preactivation_margin_one_layer_mlp)."""
    if isinstance(model, MLP) and model.depth == 1:
        return float("inf")
    return gradcheck.preactivation_margin(model, x)


def off_the_kink(make, margin: float = 20 * gradcheck.STEP, attempts: int = 200):
    """Call make(seed) -> (model, x, ...) with seeds 0, 1, ... until every ReLU pre-activation is at
    least `margin` from 0 (gradcheck.preactivation_margin), so central differences never straddle
    the kink; smooth activations pass at the first seed."""
    for seed in range(attempts):
        case = make(seed)
        if margin_of(case[0], case[1]) > margin:
            return case
    raise AssertionError(f"no draw in {attempts} kept the ReLU pre-activations {margin} from 0")


# ---------------------------------------------------------------- reproductions


def quick_reproduction(name: str, tmp_path_factory):
    """Run reproduction `name` with --quick, serially and silently, into a fresh temporary folder (the
    tests call it once per module, from a module-scoped fixture); returns the driver's Outcome."""
    from gradlab.reproduce import driver

    out = tmp_path_factory.mktemp(f"{name}_quick")
    return driver.reproduce(name, quick=True, out=out, executor="serial", progress=False, echo=lambda s: None)


def claim_starting(claims: dict, start: str):
    """The one claim (of claims, by their text) whose text starts with `start`."""
    found = [c for text, c in claims.items() if text.startswith(start)]
    assert len(found) == 1, f"expected one claim starting {start!r}, got {list(claims)}"
    return found[0]
