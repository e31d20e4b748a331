"""Closed forms and quadratures that the probes, plots and diagnosis compare measured gradients with.

- Mean field (Poole et al. 2016, Schoenholz et al. 2017): the length fixed point q*, chi_1, the
  critical sigma_w^2, the depth scale and the predicted delta_norm per layer.
- Pascanu et al. 2013: gamma = max |phi'|, the bound (gamma ||W_hh||_2)^(T-1-t), the verdict.
- Glorot and Bengio 2010: the per-layer variance ratio n Var[W] of each initialiser.
- Lu et al. 2019: probability that a symmetric-init ReLU net is dead at a point.
- The fit that reads a measured factor per layer or step to compare with them: log_slope, the
  least-squares slope of ln(values) against positions (the diagnosis, the reproductions).

Conventions: weights Var[W] = sigma_w2 / fan_in, biases Var[b] = sigma_b2 (gradlab.nn.init.mean_field);
z ~ N(0, 1); q is the variance of one pre-activation. Every bad argument raises a one-line ValueError.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
from numpy.polynomial.hermite_e import hermegauss

from gradlab.nn import _checks, activations
from gradlab.nn import init as initialisers
from gradlab.nn.activations import Activation

Array = np.ndarray

GH_POINTS = 200  # Gauss-Hermite nodes: error < 1e-11 for E[tanh^2], E[tanh'^4], sigmoid while q <= GH_MAX_Q
GH_MAX_Q = 1.5  # beyond, phi(sqrt(q) z) bends on a scale 1/sqrt(q) that Gauss-Hermite resolves only with O(q) nodes
_HOMOGENEOUS = ("identity", "relu", "leaky_relu")  # phi(c z) = c phi(z) for c > 0: closed forms
_TOL = 1e-13  # relative convergence tolerance of the q* iteration and the bisections


# ---------------------------------------------------------------- argument checks


def _act(activation: str, slope: float) -> Activation:
    if isinstance(activation, Activation):
        return activation
    return activations.get(activation, slope)  # raises ValueError naming activation / slope


def _positive(name: str, value: float) -> float:
    """value as a float, or one ValueError line if it is not a finite number > 0."""
    try:
        return _checks.positive(name, value)
    except ValueError:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}") from None


def _sigma_w2(value: float) -> float:
    return _positive("sigma_w2", value)


def _sigma_b2(value: float) -> float:
    return _checks.non_negative("sigma_b2", value)


def _homogeneous_factor(act: Activation) -> float:
    """m with E[phi(sqrt(q) z)^2] = m q and E[phi'(sqrt(q) z)^2] = m: 1, 1/2, (1 + a^2)/2."""
    return {"identity": 1.0, "relu": 0.5, "leaky_relu": (1.0 + act.slope**2) / 2.0}[act.name]


# ---------------------------------------------------------------- Gaussian expectations


@lru_cache(maxsize=None)
def _gauss_hermite() -> tuple[Array, Array]:
    nodes, weights = hermegauss(GH_POINTS)
    return nodes, weights / math.sqrt(2.0 * math.pi)  # weights of E over z ~ N(0, 1)


def _midpoint(q: float) -> tuple[Array, Array]:
    """Midpoint rule on |z| <= 10, step <= 0.25 / sqrt(q): exponentially accurate for integrands
    analytic in a strip (tanh, sigmoid), error < 1e-10 for every q; no node at z = 0."""
    h = max(min(0.1, 0.25 / math.sqrt(q)), 1e-5)  # the floor only bites for q > 6e8
    m = math.ceil(10.0 / h)
    z = (np.arange(-m, m) + 0.5) * h
    w = np.exp(-0.5 * z * z) * (h / math.sqrt(2.0 * math.pi))
    return z, w / w.sum()


def gaussian_expectation(f: Callable[[Array], Array], q: float) -> float:
    """E[f(sqrt(q) z)], z ~ N(0, 1): Gauss-Hermite (GH_POINTS nodes) for q <= GH_MAX_Q, else the
    midpoint rule of _midpoint (Gauss-Hermite would need O(q) nodes and hermegauss overflows past ~350)."""
    q = _checks.non_negative("q", q)
    z, w = _gauss_hermite() if q <= GH_MAX_Q else _midpoint(q)
    with np.errstate(over="ignore"):  # sigmoid's exp(-x) overflows to inf for x << 0, giving exactly 0
        return float(np.dot(w, f(math.sqrt(q) * z)))


def _length_map(act: Activation, sigma_w2: float, sigma_b2: float, q: float) -> float:
    """q -> sigma_w2 E[phi(sqrt(q) z)^2] + sigma_b2, by quadrature (any activation)."""
    return sigma_w2 * gaussian_expectation(lambda x: act.forward(x) ** 2, q) + sigma_b2


def _slope_map(act: Activation, sigma_w2: float, q: float) -> float:
    """sigma_w2 E[phi'(sqrt(q) z)^2], by quadrature (any activation)."""
    return sigma_w2 * gaussian_expectation(lambda x: act.derivative(act.forward(x)) ** 2, q)


# ---------------------------------------------------------------- bisection (no scipy)


def _bisect(g: Callable[[float], float], lo: float, hi: float) -> float:
    """A root of g in [lo, hi] where g(lo) and g(hi) have opposite signs (or one is 0)."""
    g_lo = g(lo)
    if g_lo == 0.0:
        return lo
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        g_mid = g(mid)
        if g_mid == 0.0 or hi - lo <= _TOL * max(1.0, abs(mid)):
            return mid
        if (g_mid > 0) == (g_lo > 0):
            lo, g_lo = mid, g_mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


# ---------------------------------------------------------------- mean field


def q_star(activation: str, sigma_w2: float, sigma_b2: float, slope: float = activations.DEFAULT_SLOPE) -> float:
    """The fixed point q* of q = sigma_w2 E[phi(sqrt(q) z)^2] + sigma_b2 reached from any q_0 > 0.

    Identity / ReLU / leaky ReLU (closed form, m = 1, 1/2, (1 + a^2)/2, c = sigma_w2 m): q* =
    sigma_b2 / (1 - c) for c < 1 (0 when sigma_b2 = 0); inf for c > 1, or c = 1 with sigma_b2 > 0
    (the length grows without bound); nan for c = 1 and sigma_b2 = 0 (every q is a fixed point).
    tanh with sigma_b2 = 0 and sigma_w2 <= 1: 0 (tanh^2(x) < x^2 drives q to 0). Otherwise (tanh,
    sigmoid) the unique positive fixed point, by iteration with a convergence check (relative
    change < 1e-13), finished by bisection on [0, sigma_w2 + sigma_b2] if it converges slowly.
    """
    act, sigma_w2, sigma_b2 = _act(activation, slope), _sigma_w2(sigma_w2), _sigma_b2(sigma_b2)
    if act.name in _HOMOGENEOUS:
        c = sigma_w2 * _homogeneous_factor(act)
        if c < 1.0:
            return sigma_b2 / (1.0 - c)
        return math.nan if (c == 1.0 and sigma_b2 == 0.0) else math.inf
    if act.name == "tanh" and sigma_b2 == 0.0 and sigma_w2 <= 1.0:
        return 0.0
    return _q_star_quadrature(act, sigma_w2, sigma_b2)


def _q_star_quadrature(act: Activation, sigma_w2: float, sigma_b2: float) -> float:
    """Fixed-point iteration of the length map, bisection as a fallback (phi bounded by 1, so the
    map sends [0, inf) into [sigma_b2, sigma_w2 + sigma_b2], and F(q) - q changes sign there)."""
    q = max(sigma_b2 + sigma_w2 * 0.25, 1e-3)  # any positive start
    for _ in range(500):
        q_new = _length_map(act, sigma_w2, sigma_b2, q)
        if abs(q_new - q) <= _TOL * max(q_new, 1e-300):
            return q_new
        q = q_new
    hi, lo = sigma_w2 + sigma_b2, 0.0
    if _length_map(act, sigma_w2, sigma_b2, 0.0) == 0.0:  # q = 0 is a fixed point: attracting or not?
        lo = 1e-12 * hi
        if _length_map(act, sigma_w2, sigma_b2, lo) <= lo:
            return 0.0  # small q shrink: q -> 0
    return _bisect(lambda x: _length_map(act, sigma_w2, sigma_b2, x) - x, lo, hi)


def chi1(
    activation: str, sigma_w2: float, sigma_b2: float = 0.0, slope: float = activations.DEFAULT_SLOPE
) -> float:
    """chi_1 = sigma_w2 E[phi'(sqrt(q*) z)^2]: the mean ratio E||delta_l||^2 / E||delta_(l+1)||^2.

    Closed forms: identity sigma_w2, ReLU sigma_w2 / 2, leaky ReLU sigma_w2 (1 + a^2) / 2 (for any q,
    so also where q* is 0 or inf); tanh and sigmoid by quadrature at q* (tanh at q* = 0: sigma_w2).
    """
    act, sigma_w2, sigma_b2 = _act(activation, slope), _sigma_w2(sigma_w2), _sigma_b2(sigma_b2)
    if act.name in _HOMOGENEOUS:
        return sigma_w2 * _homogeneous_factor(act)
    return _slope_map(act, sigma_w2, q_star(act, sigma_w2, sigma_b2))


def critical_sigma_w2(activation: str, sigma_b2: float, slope: float = activations.DEFAULT_SLOPE) -> float:
    """The sigma_w2 with chi_1(sigma_w2, sigma_b2) = 1 (edge of chaos), by bisection.

    Closed forms: identity 1, ReLU 2, leaky ReLU 2 / (1 + a^2), tanh at sigma_b2 = 0: 1. Otherwise
    bisection between 0.5 / gamma^2 (where chi_1 <= sigma_w2 gamma^2 < 1) and an upper end doubled
    until chi_1 >= 1 (ValueError past 1e8).
    """
    act, sigma_b2 = _act(activation, slope), _sigma_b2(sigma_b2)
    if act.name in _HOMOGENEOUS:
        return 1.0 / _homogeneous_factor(act)
    if act.name == "tanh" and sigma_b2 == 0.0:
        return 1.0  # chi_1 = sigma_w2 up to 1 (q* = 0), above 1 at the q* > 0 beyond
    lo = 0.5 / act.max_derivative**2
    hi = 2.0 * lo
    while chi1(act, hi, sigma_b2) < 1.0:
        lo, hi = hi, 2.0 * hi
        if hi > 1e8:
            raise ValueError(f"sigma_b2 = {sigma_b2!r} gives no critical sigma_w2 below 1e8 for {act.name}")
    return _bisect(lambda s: chi1(act, s, sigma_b2) - 1.0, lo, hi)


def depth_scale(chi1_value: float) -> float:
    """xi = -1 / ln chi_1: gradients change by a factor e every |xi| layers.

    Positive for chi_1 < 1 (vanishing), inf at chi_1 = 1, negative for chi_1 > 1 (exploding: the
    magnitude is the number of layers over which E||delta||^2 grows by e).
    """
    c = _positive("chi1_value", chi1_value)
    return math.inf if c == 1.0 else -1.0 / math.log(c)


def predicted_delta_norms(
    activation: str,
    sigma_w2: float,
    sigma_b2: float,
    depth: int,
    slope: float = activations.DEFAULT_SLOPE,
    last: float = 1.0,
) -> Array:
    """delta_norm_l = last chi_1^((depth - 1 - l) / 2), l = 0 (input side) .. depth - 1 (= last).

    Mean field: E||delta_l||^2 = chi_1 E||delta_(l+1)||^2 assuming wide layers of equal width (with
    Var[W] = sigma_w2 / fan_in the squared-norm ratio holds for any widths), pre-activation variance
    at its fixed point q* in every layer, and backward weights independent of the forward.
    The square root of E||delta||^2 stands in for the batch mean of ||delta||.
    """
    depth = _checks.positive_int("depth", depth)
    last = _checks.non_negative("last", last)
    c = chi1(activation, sigma_w2, sigma_b2, slope)
    return last * np.power(c, (depth - 1 - np.arange(depth)) / 2.0)


# ---------------------------------------------------------------- Pascanu et al. 2013


def gamma(activation: str, slope: float = activations.DEFAULT_SLOPE) -> float:
    """gamma = sup |phi'|: 1/4 sigmoid, 1 tanh / ReLU / leaky ReLU / identity."""
    return float(_act(activation, slope).max_derivative)


def _square(name: str, w: Array) -> Array:
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2 or w.shape[0] != w.shape[1] or w.shape[0] == 0:
        raise ValueError(f"{name} must be a square (H, H) matrix, got shape {tuple(w.shape)}")
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{name} must be finite, got a matrix with inf/NaN entries")
    return w


def gamma_norm(weight_hh: Array, activation: str, slope: float = activations.DEFAULT_SLOPE) -> float:
    """gamma ||W_hh||_2 of a square (H, H) W_hh, the per-step bound on ||dh_(t-1)|| / ||dh_t||."""
    return gamma(activation, slope) * float(np.linalg.norm(_square("weight_hh", weight_hh), 2))


def pascanu_factors(rate: float, T: int) -> Array:
    """factor[t] = rate^(T-1-t), t = 0..T-1, (T,): Pascanu's bound at the per-step rate gamma ||W_hh||_2."""
    T = _checks.positive_int("T", T)
    return np.power(rate, np.arange(T - 1, -1, -1, dtype=np.float64))


def pascanu_bound(
    weight_hh: Array, activation: str, T: int, slope: float = activations.DEFAULT_SLOPE
) -> Array:
    """factor[t] = (gamma ||W_hh||_2)^(T-1-t), t = 0..T-1: with the loss on the last step,
    ||dL/dh_t|| <= factor[t] ||dL/dh_(T-1)|| for every example (dh_(t-1) = W^T (phi'(z_t) * dh_t))."""
    return pascanu_factors(gamma_norm(weight_hh, activation, slope), T)


VANISHING = "sufficient for vanishing"
EXPLODING = "necessary condition for exploding met"
NEITHER = "neither"
BOUNDARY_RTOL = 1e-9  # gamma ||W_hh||_2 within this of 1 counts as the boundary


def pascanu_verdict(weight_hh: Array, activation: str, slope: float = activations.DEFAULT_SLOPE) -> str:
    """VANISHING if gamma ||W_hh||_2 < 1, EXPLODING if ||W_hh||_2 > 1 / gamma, else NEITHER.

    The boundary gamma ||W_hh||_2 = 1 (within BOUNDARY_RTOL, so that an orthogonal W_hh with
    gamma = 1 is not judged by rounding) is NEITHER: no decay is guaranteed and growth needs > 1.
    """
    g = gamma_norm(weight_hh, activation, slope)
    if abs(g - 1.0) <= BOUNDARY_RTOL:
        return NEITHER
    return VANISHING if g < 1.0 else EXPLODING


# ---------------------------------------------------------------- an RNN at initialisation, driven by inputs
# Mean field of a vanilla RNN h_t = phi(W_hh h_(t-1) + W_ih x_t + b) with W_hh ~ N(0, sigma_w2 / H)
# (Poole et al. 2016's length map, applied per step as in Chen, Pennington, Schoenholz 2018, "Dynamical
# isometry and a mean field theory of RNNs", Sec. 3): the input term W_ih x_t acts as a bias of variance
# Var[W_ih] sum_d E[x_d^2], so the per-step factor of ||dL/dh_t|| back in time (Pascanu et al. 2013's
# vanishing and exploding, Sec. 2.1) is sqrt(chi_1) at that bias.


def rnn_input_variance(weight_ih_variance: float, input_second_moments: Array | list[float]) -> float:
    """Var[(W_ih x_t)_i] = Var[W_ih] sum_d E[x_d^2] for W_ih of i.i.d. zero-mean entries independent of x."""
    moments = np.asarray(input_second_moments, dtype=np.float64)
    if moments.ndim != 1 or moments.size == 0 or not np.all(np.isfinite(moments)) or np.any(moments < 0):
        raise ValueError(f"input_second_moments must be a non-empty list of finite values >= 0, got {input_second_moments!r}")
    return _sigma_b2(weight_ih_variance) * float(moments.sum())


def rnn_step_factor(activation: str, sigma_w2: float, input_variance: float, slope: float = activations.DEFAULT_SLOPE) -> float:
    """sqrt(chi_1) at sigma_b2 = input_variance: the mean-field factor by which the RMS of dL/dh_t changes
    per step back in time in an RNN with W_hh ~ N(0, sigma_w2 / H), W_hh fresh per step (H -> infinity)."""
    return math.sqrt(chi1(activation, sigma_w2, input_variance, slope))


# ---------------------------------------------------------------- Glorot and Bengio 2010

_INIT_OPTIONS = {"gain": 1.0, "slope": 0.0, "sigma_w2": 1.0}  # gradlab.nn.init's defaults


def init_variance(init: str, fan_in: int, fan_out: int, **options: float) -> float:
    """Var[W_ij] of gradlab.nn.init's initialiser `init` for a (fan_out, fan_in) weight.

    standard 1/(3 fan_in); xavier_* gain^2 2/(fan_in + fan_out); he_* 2/((1 + slope^2) fan_in);
    mean_field sigma_w2/fan_in; orthogonal and identity (not random entries: the mean square)
    gain^2 / max(fan_in, fan_out). Options: gain, slope, sigma_w2 (None or unused ones ignored).
    """
    _checks.choice("init", init, initialisers.NAMES)
    fan_in, fan_out = _checks.positive_int("fan_in", fan_in), _checks.positive_int("fan_out", fan_out)
    for key in options:
        if key not in _INIT_OPTIONS:
            raise ValueError(f"options must be among {', '.join(_INIT_OPTIONS)}; got {key!r}")
    opt = {k: (_INIT_OPTIONS[k] if options.get(k) is None else options[k]) for k in _INIT_OPTIONS}
    gain2 = _positive("gain", opt["gain"]) ** 2
    if init == "standard":
        return 1.0 / (3.0 * fan_in)
    if init in ("xavier_uniform", "xavier_normal"):
        return gain2 * 2.0 / (fan_in + fan_out)
    if init in ("he_normal", "he_uniform"):
        return initialisers.relu_gain(opt["slope"]) ** 2 / fan_in
    if init == "mean_field":
        return _sigma_w2(opt["sigma_w2"]) / fan_in
    return gain2 / max(fan_in, fan_out)  # orthogonal, identity


def glorot_variance_ratio(init: str, fan_in: int, fan_out: int, direction: str = "backward", **options: float) -> float:
    """n Var[W]: the factor by which one linear layer scales the per-unit variance of the
    backpropagated gradient (direction="backward", n = fan_out, the size dL/da_prev = W^T delta sums
    over) or of the activations (direction="forward", n = fan_in). 1/3 for "standard", square layers."""
    _checks.choice("direction", direction, ("backward", "forward"))
    n = fan_out if direction == "backward" else fan_in
    return n * init_variance(init, fan_in, fan_out, **options)


# ---------------------------------------------------------------- Lu et al. 2019


def lu_dead_probability(width: int, hidden_layers: int) -> float:
    """P(dead at a point) = 1 - (1 - 2^-N)^k for a ReLU net with k hidden layers of width N and
    weights and biases from symmetric continuous distributions, at a point x != 0: each hidden layer,
    given a nonzero input, is all zero with probability 2^-N, and then the net is constant near x."""
    n = _checks.positive_int("width", width)
    k = _checks.positive_int("hidden_layers", hidden_layers)
    return float(-np.expm1(k * np.log1p(-(0.5**n))))


# ---------------------------------------------------------------- fitting measured curves


def log_slope(values: Array, positions: Array) -> Array:
    """Least-squares slope b of ln(values) against positions x along the last axis, (..., n) -> (...):
    b = sum_i (x_i - mean x) ln y_i / sum_i (x_i - mean x)^2 (values > 0, at least 2 distinct x)."""
    x = np.asarray(positions, dtype=np.float64)
    x = x - x.mean()
    return np.log(values) @ x / (x @ x)


# ---------------------------------------------------------------- Balduzzi et al. 2017 (shattered gradients)

SHATTERED_ARCHITECTURES = ("feedforward", "resnet", "resnet_bn")


def shattered_correlation(architecture: str, depth: int) -> float:
    """Correlation C(i, j) / C(i) of the input gradients f'(x_i), f'(x_j) of a ReLU net (He weights,
    Var = 2 / fan_in) after `depth` layers, for two inputs whose units switch on independently (each
    with probability 1/2, so together with 1/4). Balduzzi et al. 2017, Sec. 3:
        feedforward  Theorem 1: C(i) = 1, C(i, j) = 2^-L                          -> 2^-L
        resnet       Theorem 2 (no batch norm, x_l = x_(l-1) + W_l relu(.)): 2^L and (3/2)^L -> (3/4)^L
        resnet_bn    Theorem 3's model: batch norm divides block l's branch by the stream's standard
                     deviation sqrt(l), so the factors are 1 + 1/l and 1 + 1/(2l):
                     prod_(l=1..L) (1 + 1/(2l)) / (1 + 1/l), which falls as L^(-1/2) (the theorem's rate)."""
    _checks.choice("architecture", architecture, SHATTERED_ARCHITECTURES)
    L = _checks.positive_int("depth", depth)
    if architecture == "feedforward":
        return 0.5**L
    if architecture == "resnet":
        return 0.75**L
    l = np.arange(1, L + 1, dtype=np.float64)
    return float(np.exp(np.sum(np.log1p(0.5 / l) - np.log1p(1.0 / l))))


# ---------------------------------------------------------------- Saxe, McClelland and Ganguli 2014


def saxe_mode_strength(t: Array | float, s: float, u0: float, tau: float = 1.0) -> Array | float:
    """Strength u(t) of one input-output mode of a one-hidden-layer linear net under gradient flow from
    decoupled, balanced initial conditions (Saxe et al. 2014, Sec. 2): tau du/dt = 2 u (s - u), so
        u(t) = s e^(2 s t / tau) / (e^(2 s t / tau) - 1 + s / u0),
    the sigmoid from u0 > 0 to the mode's singular value s > 0 of the input-output correlation."""
    s, u0, tau = _positive("s", s), _positive("u0", u0), _positive("tau", tau)
    e = np.exp(np.minimum(2.0 * s * np.asarray(t, dtype=np.float64) / tau, 700.0))
    return s * e / (e - 1.0 + s / u0)


def saxe_learning_time(s: float, u0: float, uf: float, tau: float = 1.0) -> float:
    """Time for a mode to grow from u0 to uf (0 < u0, uf < s) under saxe_mode_strength's dynamics:
    t = tau / (2 s) ln(uf (s - u0) / (u0 (s - uf))) (Saxe et al. 2014, Sec. 2)."""
    s, u0, uf, tau = _positive("s", s), _positive("u0", u0), _positive("uf", uf), _positive("tau", tau)
    if not (u0 < s and uf < s):
        raise ValueError(f"u0 and uf must be below s = {s}, got u0 = {u0}, uf = {uf}")
    return tau / (2.0 * s) * math.log(uf * (s - u0) / (u0 * (s - uf)))


# ---------------------------------------------------------------- input-output Jacobians (Pennington 2017, Yang 2019, Hanin 2018)
# Pennington, Schoenholz and Ganguli (2017), "Resurrecting the sigmoid in deep learning through dynamical
# isometry", NeurIPS; Yang, Pennington, Rao, Sohl-Dickstein and Schoenholz (2019), "A mean field theory of
# batch normalization", ICLR; Hanin (2018), "Which neural net architectures give rise to exploding and
# vanishing gradients?", NeurIPS. The reproductions gradlab.reproduce.{pennington2017, yang2019, hanin2018}
# measure them.

JACOBIAN_S1 = {"orthogonal": 0.0, "gaussian": -1.0}  # s_1: the S-transform of W W^T, S(z) = 1 + s_1 z + ...


def derivative_moment(activation: str, q: float, k: int, slope: float = activations.DEFAULT_SLOPE) -> float:
    """mu_k = E[phi'(sqrt(q) z)^(2k)], z ~ N(0, 1) (Pennington 2017's mu_k): closed forms 1 (identity),
    1/2 (ReLU: phi' is 0 or 1), (1 + a^(2k)) / 2 (leaky ReLU), else quadrature (gaussian_expectation)."""
    act, k = _act(activation, slope), _checks.positive_int("k", k)
    if act.name in _HOMOGENEOUS:
        return {"identity": 1.0, "relu": 0.5, "leaky_relu": (1.0 + act.slope ** (2 * k)) / 2.0}[act.name]
    return gaussian_expectation(lambda x: act.derivative(act.forward(x)) ** (2 * k), q)


def critical_point(activation: str, q: float, slope: float = activations.DEFAULT_SLOPE) -> tuple[float, float]:
    """(sigma_w2, sigma_b2) on the critical line chi_1 = 1 whose length fixed point is q* = q:
    sigma_w2 = 1 / mu_1(q), sigma_b2 = q - sigma_w2 E[phi(sqrt(q) z)^2] (a ValueError where that is < 0)."""
    act, q = _act(activation, slope), _positive("q", q)
    sigma_w2 = 1.0 / derivative_moment(act, q, 1)
    sigma_b2 = q - sigma_w2 * gaussian_expectation(lambda x: act.forward(x) ** 2, q)
    if sigma_b2 < -1e-12:
        raise ValueError(f"q = {q!r}: no critical point of {act.name} has this fixed point (sigma_b2 would be {sigma_b2:.3g} < 0)")
    return sigma_w2, max(sigma_b2, 0.0)


def jjt_moments(
    activation: str, sigma_w2: float, sigma_b2: float, depth: int, weights: str,
    slope: float = activations.DEFAULT_SLOPE, q: float | None = None,
) -> tuple[float, float, float]:  # fmt: skip
    """(m1, m2, variance) of the spectrum of J J^T, J = prod_l D_l W_l the input-output Jacobian of `depth`
    layers (each dense then phi) in the wide limit (Pennington 2017, Sec. 2.5):
        m1 = (sigma_w2 mu_1)^L,  m2 = (sigma_w2 mu_1)^(2L) L (mu_2 / mu_1^2 + 1/L - 1 - s_1),  var = m2 - m1^2,
    s_1 = 0 for orthogonal and -1 for Gaussian weights; mu_k at q (default q*; 1 where q* is not finite,
    for the homogeneous activations whose mu_k do not depend on q). At criticality var = L (mu_2/mu_1^2 - 1 - s_1)."""
    weights = _checks.choice("weights", weights, JACOBIAN_S1)
    depth = _checks.positive_int("depth", depth)
    if q is None:
        q = q_star(activation, sigma_w2, sigma_b2, slope)
        q = q if math.isfinite(q) and q > 0 else 1.0
    mu1, mu2 = derivative_moment(activation, q, 1, slope), derivative_moment(activation, q, 2, slope)
    chi = _sigma_w2(sigma_w2) * mu1
    m1 = chi**depth
    m2 = chi ** (2 * depth) * depth * (mu2 / mu1**2 + 1.0 / depth - 1.0 - JACOBIAN_S1[weights])
    return m1, m2, m2 - m1**2


BATCHNORM_RELU_RATE = math.pi / (math.pi - 1.0)  # Yang 2019: ReLU's per-layer factor of ||grad||^2, batch -> inf


def batchnorm_linear_rate(batch: int) -> float:
    """(B - 2) / (B - 3): the per-layer factor of E||dL/dz_l||^2 (toward the input) in a wide linear MLP
    with batch norm after every dense layer, batch B >= 4, at its fixed point (Yang 2019's linear case).
    One layer: the batch-centred z of a unit is N(0, sigma_w^2 B/(B-1) G) in the (B-1)-dimensional centred
    subspace; its backward (sqrt(B) / ||z||)(G - u u^T) keeps (B-2)/(B-1) of a gradient isotropic there,
    E[B / ||z||^2] = (B-1) / (sigma_w^2 (B-3)) and W^T multiplies by sigma_w^2: (B-2)/(B-3), for any sigma_w."""
    batch = _checks.positive_int("batch", batch)
    if batch < 4:
        raise ValueError(f"batch must be at least 4 (E[1 / chi^2_(B-1)] is finite for B > 3), got {batch}")
    return (batch - 2.0) / (batch - 3.0)


def hanin_beta(hidden_widths: list[int]) -> float:
    """beta = sum over hidden layers j of 1 / n_j (Hanin 2018)."""
    return float(sum(1.0 / _checks.positive_int("hidden width", n) for n in hidden_widths))


def hanin_entry_moment_ratio(hidden_widths: list[int]) -> float:
    """E[J_pq^4] / E[J_pq^2]^2 = 3 prod_j (1 + 5 / n_j) for an entry of the input-output Jacobian of a ReLU
    net with i.i.d. Gaussian weights (any variances), zero biases and a linear output layer.

    Hanin 2018's setting: each hidden layer multiplies ||dx_j / dx_p||^2 by (2 / n_(j-1)) chi^2 with
    k_j ~ Binomial(n_j, 1/2) degrees of freedom (the active units; by the weights' sign symmetry the mask is
    independent of the squared projections), independently across layers, and the output entry adds a
    chi^2_1. E[(chi^2_k)^2] / E[chi^2_k]^2 averaged over k: (n^2/4 + 5n/4) / (n^2/4) = 1 + 5/n; chi^2_1: 3.
    So the ratio is ~3 exp(5 beta) for wide layers: exponential in beta, not in the depth alone."""
    ratio = 3.0
    for n in hidden_widths:
        ratio *= 1.0 + 5.0 / _checks.positive_int("hidden width", n)
    return ratio
