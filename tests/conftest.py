"""Shared helpers for the engine's tests: comparisons whose failure messages name the quantity, the
worst index and both values; problem builders; hypothesis settings.

The helpers are plain functions (imported as `from conftest import ...`, which pytest's default
import mode allows) so that a failing assertion points at the test that called them.
"""

from __future__ import annotations

import signal

import numpy as np
from hypothesis import HealthCheck, settings

from gradlab.nn import GRU, LSTM, MLP, RNN, activations, gradcheck, losses

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


def assert_rel(actual, expected, tol: float, name: str, atol: float = 0.0, zero: float = 0.0) -> None:
    """Norm-wise relative error ||a - e|| / max(||a||, ||e||) below tol (gradcheck's measure), or,
    when atol > 0, ||a - e|| <= atol: a gradient that is exactly 0 (beyond a truncation cut) has a
    finite-difference estimate of pure rounding noise, about 1e-12 for an O(1) loss at h = 1e-4; or,
    when zero > 0, both norms at most zero (gradcheck.relative_error's `zero`, e.g. gradcheck.ZERO for the
    dense bias before batch norm, whose exact gradient is 0)."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, describe(name, actual, expected)
    assert np.all(np.isfinite(actual)), describe(name, actual, expected, "(non-finite value)")
    err = gradcheck.relative_error(actual, expected, zero)
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
    """The output's shape for input x (the member axis first in an ensemble, whether or not x has it)."""
    lead = () if model.ensemble is None else (model.ensemble,)
    if isinstance(model, MLP):
        return (*lead, x.shape[-2], model.sizes[-1])
    N, T = x.shape[-3:-1]
    return (*lead, N, model.output_size) if model.output == "last" else (*lead, N, T, model.output_size)


MODELS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


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
    layers: int = 1,
    norm=None,
    residual: bool = False,
    residual_scale: float = 1.0,
    ensemble=None,
    reference: bool = False,
    weight_gain: float = 1.0,
):
    """A small model of `kind` (mlp, rnn, lstm, gru) with xavier_normal weights and a random bias (so
    that zero biases do not hide a bias-gradient bug; every bias: the GRU's bias_ih and bias_hh, every
    layer's, the readout's, the norm layers' bias, and the norm layers' gain moves off 1 too). sizes =
    (N, T, D, H) for sequences; an MLP has `depth` weight layers, inputs D and widths H, H+1, ... (all H
    with residual=True, so that every hidden layer after the first has a residual connection). weight_gain
    multiplies every weight matrix after the draw (stacked gated cells attenuate the bottom layer's
    gradients towards the central differences' rounding noise at gain 1)."""
    rng = np.random.default_rng(seed)
    N, T, D, H = sizes
    O = 3
    if kind == "mlp":
        widths = [D] + [H if residual else H + l for l in range(depth - 1)] + [O]
        model = MLP(widths, activation, rng=rng, init="xavier_normal", dtype=dtype, norm=norm, residual=residual,
                    residual_scale=residual_scale, ensemble=ensemble)  # fmt: skip
    elif kind in MODELS:
        opts = dict(output=output, truncate=truncate, rng=rng, init="xavier_normal", dtype=dtype, layers=layers,
                    ensemble=ensemble, reference=reference)  # fmt: skip
        model = RNN(D, H, O, activation, **opts) if kind == "rnn" else MODELS[kind](D, H, O, **opts)
    else:
        raise AssertionError(kind)
    member_axes = 0 if ensemble is None else 1
    for name, p in model.params.items():
        if "weight" in name and p.ndim - member_axes == 2:  # a matrix (not a norm layer's gain)
            p *= weight_gain
        if "bias" in name or name.endswith("norm.weight"):
            p += rng.normal(scale=bias_scale, size=p.shape).astype(dtype)
    return model


def draw_x(model, sizes=(2, 5, 3, 4), seed: int = 1, dtype="float64", shared: bool = False) -> np.ndarray:
    """x for model: (N, D) or (N, T, D), with the member axis first in an ensemble unless shared."""
    N, T, D, _ = sizes
    rng = np.random.default_rng(seed)
    lead = () if model.ensemble is None or shared else (model.ensemble,)
    shape = (*lead, N, D) if isinstance(model, MLP) else (*lead, N, T, D)
    return rng.normal(size=shape).astype(dtype)


def loss_lead(model) -> int:
    """The losses' `lead`: 1 for an ensemble (one loss per member), else 0."""
    return 0 if model.ensemble is None else 1


def states(model, h0, c0) -> dict:
    """forward's keyword arguments for per-layer initial states h0, c0 (layers, ..., N, H): a one-layer
    model takes them without the layer axis (both forms are accepted; tests/test_validation.py tests both)."""
    one = lambda s: s[0] if model.num_layers == 1 else s  # noqa: E731
    return {"h0": one(h0), "c0": one(c0)} if model.cell_state else {"h0": one(h0)}


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
    """Run reproduction `name` with --quick, silently, into a fresh temporary folder (the tests call it once
    per module, from a module-scoped fixture); returns the driver's Outcome. Its runs go to two worker
    processes, which give the serial tables bit for bit (tests/test_runner.py)."""
    from gradlab.reproduce import driver

    out = tmp_path_factory.mktemp(f"{name}_quick")
    return driver.reproduce(name, quick=True, out=out, executor="process", workers=2, progress=False, echo=lambda s: None)


def claim_starting(claims: dict, start: str):
    """The one claim (of claims, by their text) whose text starts with `start`."""
    found = [c for text, c in claims.items() if text.startswith(start)]
    assert len(found) == 1, f"expected one claim starting {start!r}, got {list(claims)}"
    return found[0]


def default_sigint():
    """In a child before exec: SIGINT as a terminal's Ctrl-C finds it. A shell script's background job (`make test &`)
    starts with SIGINT ignored, and an ignored signal stays ignored across exec, so without this the child would
    never see the SIGINT the test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
