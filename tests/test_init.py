"""Initialisers: empirical variances against their formulas, orthogonality, identity, exact spectral
rescaling, the LSTM forget-gate bias, He's gain with the leaky slope, and how models apply them.

Statistical checks use a fixed seed and a (400, 500) matrix: 200,000 draws, whose sample variance
has a relative standard error of sqrt(2 / n) = 0.32% for a Gaussian and sqrt(0.8 / n) = 0.2% for a
uniform; the tolerance of 2% is more than 6 standard errors, so a wrong formula (a factor of 2, a
fan_in / fan_out swap: 400 vs 500 is 25%) fails and a right one passes.
"""

import math

import numpy as np
import pytest
from conftest import assert_close

from gradlab.nn import LSTM, MLP, RNN, init

SHAPE = (400, 500)  # (fan_out, fan_in)
FAN_OUT, FAN_IN = SHAPE
VAR_RTOL = 0.02
MEAN_ATOL = 4  # standard errors of the mean

# (name, kwargs, expected variance, distribution)
VARIANCES = [
    ("standard", {}, 1 / (3 * FAN_IN), "uniform"),
    ("xavier_uniform", {}, 2 / (FAN_IN + FAN_OUT), "uniform"),
    ("xavier_uniform", {"gain": 2.0}, 4 * 2 / (FAN_IN + FAN_OUT), "uniform"),
    ("xavier_normal", {}, 2 / (FAN_IN + FAN_OUT), "normal"),
    ("xavier_normal", {"gain": 0.5}, 0.25 * 2 / (FAN_IN + FAN_OUT), "normal"),
    ("he_normal", {}, 2 / FAN_IN, "normal"),
    ("he_normal", {"slope": 0.2}, 2 / (1 + 0.04) / FAN_IN, "normal"),
    ("he_uniform", {}, 2 / FAN_IN, "uniform"),
    ("he_uniform", {"slope": 1.0}, 1 / FAN_IN, "uniform"),
    ("mean_field", {}, 1 / FAN_IN, "normal"),
    ("mean_field", {"sigma_w2": 2.5}, 2.5 / FAN_IN, "normal"),
]


@pytest.mark.parametrize("name,kwargs,var,dist", VARIANCES, ids=[f"{v[0]}{v[1] or ''}" for v in VARIANCES])
def test_empirical_variance_matches_formula(name, kwargs, var, dist):
    w = init.WEIGHT_INITS[name](np.random.default_rng(0), SHAPE, **kwargs)
    assert w.shape == SHAPE and w.dtype == np.float64, f"{name}: {w.shape} {w.dtype}"
    got = float(w.var())
    assert abs(got / var - 1) < VAR_RTOL, f"{name} {kwargs}: variance {got:.6g}, formula {var:.6g} (rtol {VAR_RTOL})"
    se = math.sqrt(var / w.size)
    assert abs(float(w.mean())) < MEAN_ATOL * se, f"{name} {kwargs}: mean {w.mean():.3g} (> {MEAN_ATOL} s.e.)"
    if dist == "uniform":  # U[-b, b] with b^2 = 3 var: every draw inside, the extremes near b
        b = math.sqrt(3 * var)
        assert np.abs(w).max() <= b, f"{name}: a draw {np.abs(w).max()} outside the bound {b}"
        assert np.abs(w).max() > 0.999 * b, f"{name}: max |w| {np.abs(w).max()} far inside the bound {b}"
    else:  # a Gaussian's excess kurtosis is 0 (a uniform's is -1.2): tolerance 0.05, s.e. sqrt(24 / n) = 0.011
        kurt = float(((w - w.mean()) ** 4).mean() / w.var() ** 2 - 3)
        assert abs(kurt) < 0.05, f"{name}: excess kurtosis {kurt:.3f}, not Gaussian"


@pytest.mark.parametrize("slope", [0.0, 0.01, 0.2, 1.0])
def test_he_gain_with_leaky_slope(slope):
    assert init.relu_gain(slope) == pytest.approx(math.sqrt(2 / (1 + slope**2)), rel=1e-15), f"slope {slope}"


def test_mean_field_bias_variance():
    b = init.mean_field_bias(np.random.default_rng(1), 200_000, sigma_b2=0.3)
    assert abs(b.var() / 0.3 - 1) < VAR_RTOL, f"bias variance {b.var():.5g}, want 0.3 (rtol {VAR_RTOL})"
    assert not init.mean_field_bias(np.random.default_rng(1), 5, 0.0).any(), "sigma_b2 = 0 must give zeros"


@pytest.mark.parametrize("shape", [(6, 6), (8, 3), (3, 8)])
@pytest.mark.parametrize("gain", [1.0, 0.5, 3.0])
def test_orthogonal_is_orthogonal_times_gain(shape, gain):
    w = init.orthogonal(np.random.default_rng(2), shape, gain=gain)
    assert w.shape == shape
    gram = w.T @ w if shape[0] >= shape[1] else w @ w.T  # the smaller Gram matrix is gain^2 I
    assert_close(gram, gain**2 * np.eye(min(shape)), f"orthogonal {shape} gain={gain} Gram", atol=1e-12 * gain**2)
    sv = np.linalg.svd(w, compute_uv=False)
    assert_close(sv, np.full(min(shape), gain), f"orthogonal {shape} singular values", rtol=1e-12)


def test_orthogonal_draws_differ_by_seed_and_repeat_by_seed():
    a, b = (init.orthogonal(np.random.default_rng(s), (5, 5)) for s in (0, 0))
    c = init.orthogonal(np.random.default_rng(1), (5, 5))
    assert np.array_equal(a, b) and not np.allclose(a, c)


@pytest.mark.parametrize("shape,gain", [((4, 4), 1.0), ((3, 3), 0.7), ((3, 5), 2.0)])
def test_identity(shape, gain):
    w = init.identity(np.random.default_rng(0), shape, gain=gain)
    assert np.array_equal(w, gain * np.eye(*shape)), f"identity {shape} gain={gain}: {w}"


@pytest.mark.parametrize("target", [0.5, 1.0, 1.7])
def test_spectral_rescaling_is_exact(target):
    w = np.random.default_rng(3).normal(size=(7, 7))
    r = init.scale_to_spectral_radius(w, target)
    assert max(abs(np.linalg.eigvals(r))) == pytest.approx(target, rel=1e-12), f"radius {target}"
    n = init.scale_to_spectral_norm(w, target)
    assert np.linalg.svd(n, compute_uv=False)[0] == pytest.approx(target, rel=1e-12), f"norm {target}"
    # a rescaling: the direction of the matrix is unchanged
    assert_close(r / np.linalg.norm(r), w / np.linalg.norm(w), "radius-rescaled direction", atol=1e-15)
    assert init.spectral_radius(w) == pytest.approx(max(abs(np.linalg.eigvals(w))), rel=1e-14)
    assert init.spectral_norm(w) == pytest.approx(np.linalg.svd(w, compute_uv=False)[0], rel=1e-14)


@pytest.mark.parametrize("option", ["spectral_radius", "spectral_norm"])
@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_recurrent_models_rescale_each_gate_block(kind, option):
    rng = np.random.default_rng(4)
    H = 6
    model = RNN(2, H, 1, rng=rng, **{option: 0.9}) if kind == "rnn" else LSTM(2, H, 1, rng=rng, **{option: 0.9})
    w = model.params["weight_hh"]
    measure = init.spectral_radius if option == "spectral_radius" else init.spectral_norm
    for k in range(w.shape[0] // H):
        got = measure(w[k * H : (k + 1) * H])
        assert got == pytest.approx(0.9, rel=1e-12), f"{kind} {option}: gate block {k} has {got}"


def test_lstm_forget_bias_block():
    H = 3
    bias = np.arange(4 * H, dtype=float)
    out = init.lstm_forget_bias(bias, 2.0)
    want = bias.copy()
    want[H : 2 * H] = 2.0  # PyTorch order i, f, g, o: the forget gate is the second block
    assert np.array_equal(out, want), f"forget bias: {out}"
    assert np.array_equal(bias, np.arange(4 * H)), "lstm_forget_bias modified its input"
    model = LSTM(2, H, 1, forget_bias=1.5, rng=np.random.default_rng(0))
    b = model.params["bias"]
    assert np.all(b[H : 2 * H] == 1.5) and not b[:H].any() and not b[2 * H :].any(), f"LSTM(forget_bias=1.5) bias {b}"


def test_models_pass_the_leaky_slope_to_he_init():
    """MLP(activation=leaky_relu, slope=a, init=he_normal) draws with Var = 2 / ((1 + a^2) fan_in)."""
    slope = 0.5
    model = MLP([FAN_IN, FAN_OUT, 1], "leaky_relu", slope=slope, init="he_normal", rng=np.random.default_rng(5))
    w = model.params["layers.0.weight"]
    want = 2 / (1 + slope**2) / FAN_IN
    assert abs(w.var() / want - 1) < VAR_RTOL, f"MLP he_normal slope {slope}: variance {w.var():.5g}, want {want:.5g}"
    relu = MLP([FAN_IN, FAN_OUT, 1], "relu", init="he_normal", rng=np.random.default_rng(5))
    assert abs(relu.params["layers.0.weight"].var() * FAN_IN / 2 - 1) < VAR_RTOL, "MLP relu he_normal variance"


def test_model_init_options_reach_the_initialiser():
    rng = np.random.default_rng(6)
    mlp = MLP([FAN_IN, FAN_OUT, 2], init="mean_field", sigma_w2=3.0, sigma_b2=0.5, rng=rng)
    assert abs(mlp.params["layers.0.weight"].var() * FAN_IN / 3.0 - 1) < VAR_RTOL, "MLP mean_field sigma_w2"
    assert mlp.params["layers.0.bias"].var() > 0.2, "MLP mean_field sigma_b2 ignored"
    rnn = RNN(3, 5, 1, init="standard", recurrent_init="orthogonal", gain=1.3, rng=rng)
    assert_close(
        rnn.params["weight_hh"] @ rnn.params["weight_hh"].T, 1.69 * np.eye(5), "RNN orthogonal gain", atol=1e-12
    )
    irnn = RNN(3, 5, 1, "relu", recurrent_init="identity", rng=rng)
    assert np.array_equal(irnn.params["weight_hh"], np.eye(5)), "IRNN recurrent matrix"
    assert not rnn.params["bias"].any() and not rnn.params["readout.bias"].any(), "biases must start at zero"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_models_cast_parameters_to_their_dtype(dtype):
    for model in (MLP([3, 4, 2], dtype=dtype), RNN(3, 4, 2, dtype=dtype), LSTM(3, 4, 2, dtype=dtype)):
        for name, p in model.params.items():
            assert p.dtype == np.dtype(dtype), f"{type(model).__name__} {name} is {p.dtype}, want {dtype}"
