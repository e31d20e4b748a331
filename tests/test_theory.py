"""gradlab.theory against quadrature, closed forms and the engine (issue 3: Theory, Mean field, Pascanu, Lu)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradlab import theory
from gradlab.nn import MLP, RNN, activations, init
from gradlab.reproduce._meanfield import measured_log_chi1
from gradlab.reproduce.lu2019 import dead_at_a_point, symmetric_nets

# ---------------------------------------------------------------- quadrature sanity


@pytest.mark.parametrize("sigma_w2", [0.3, 0.7, 0.99, 1.0])
def test_tanh_chi1_is_sigma_w2_in_the_ordered_phase_without_bias(sigma_w2):
    # sigma_b2 = 0, sigma_w2 <= 1: q* = 0 and tanh'(0) = 1, so chi_1 = sigma_w2 (to rounding)
    assert theory.q_star("tanh", sigma_w2, 0.0) == 0.0
    assert theory.chi1("tanh", sigma_w2, 0.0) == pytest.approx(sigma_w2, rel=1e-12)
    # and q -> 0 continuously: the quadrature at a tiny q gives the same (error O(q) = 1e-8)
    assert theory._slope_map(activations.get("tanh"), sigma_w2, 1e-8) == pytest.approx(sigma_w2, rel=1e-7)


@pytest.mark.parametrize(
    "activation, slope, sigma_w2, sigma_b2",
    [
        ("identity", 0.01, 0.7, 0.1),
        ("relu", 0.01, 1.8, 0.05),
        ("leaky_relu", 0.2, 1.5, 0.3),
        ("leaky_relu", 0.01, 1.2, 0.0),  # q* = 0
    ],
)
def test_closed_forms_agree_with_generic_quadrature(activation, slope, sigma_w2, sigma_b2):
    act = activations.get(activation, slope)
    q = theory.q_star(activation, sigma_w2, sigma_b2, slope)
    assert 0.0 <= q < math.inf
    # q* is a fixed point of the quadrature length map, chi_1 the quadrature slope map at q*: 1e-10 relative
    assert theory._length_map(act, sigma_w2, sigma_b2, q) == pytest.approx(q, rel=1e-10, abs=1e-14)
    closed = theory.chi1(activation, sigma_w2, sigma_b2, slope)
    # the closed form holds at any q > 0 (positive homogeneity; at q = 0 phi'(0) is the left derivative);
    # q = 7.0 goes through the midpoint rule instead of Gauss-Hermite
    for qq in {q, 0.5, 7.0} - {0.0}:
        assert theory._slope_map(act, sigma_w2, qq) == pytest.approx(closed, rel=1e-10)
    # and the fixed-point iteration itself lands on the closed form
    assert theory._q_star_quadrature(act, sigma_w2, sigma_b2) == pytest.approx(q, rel=1e-9, abs=1e-14)


@pytest.mark.parametrize("q", [0.3, 1.4, 1.6, 25.0])  # both sides of GH_MAX_Q = 1.5
def test_quadrature_rules_agree_with_a_fine_reference(q):
    # E[tanh^2] and E[tanh'^2] against a 4e5-point midpoint grid of |z| <= 40 (itself good to ~1e-11): 1e-10
    z = (np.arange(-200_000, 200_000) + 0.5) * 2e-4
    density = np.exp(-z * z / 2) * 2e-4 / math.sqrt(2 * math.pi)
    for f in (lambda x: np.tanh(x) ** 2, lambda x: (1 - np.tanh(x) ** 2) ** 2):
        ref = np.sum(f(math.sqrt(q) * z) * density)
        assert theory.gaussian_expectation(f, q) == pytest.approx(ref, abs=1e-10)


def test_tanh_critical_sigma_w2_at_sigma_b2_005():
    # Schoenholz et al. 2017's edge of chaos for sigma_b^2 = 0.05: sigma_w^2 = 1.761 +- 0.002
    crit = theory.critical_sigma_w2("tanh", 0.05)
    assert crit == pytest.approx(1.761, abs=0.002)
    assert theory.chi1("tanh", crit, 0.05) == pytest.approx(1.0, abs=1e-9)
    assert theory.chi1("tanh", crit - 0.05, 0.05) < 1.0 < theory.chi1("tanh", crit + 0.05, 0.05)


def test_closed_form_critical_points_and_depth_scale():
    assert theory.critical_sigma_w2("relu", 0.3) == 2.0
    assert theory.critical_sigma_w2("leaky_relu", 0.0, slope=0.5) == pytest.approx(1.6)
    assert theory.critical_sigma_w2("tanh", 0.0) == 1.0
    assert theory.depth_scale(1.0) == math.inf
    assert theory.depth_scale(math.exp(-0.1)) == pytest.approx(10.0)
    assert theory.depth_scale(math.exp(0.1)) == pytest.approx(-10.0)  # negative: exploding
    d = theory.predicted_delta_norms("relu", 1.8, 0.05, depth=5, last=2.0)
    assert d[-1] == 2.0 and d[0] == pytest.approx(2.0 * 0.9**2)


def test_q_star_at_the_edges_of_the_homogeneous_activations():
    assert theory.q_star("relu", 1.8, 0.05) == pytest.approx(0.5)
    assert theory.q_star("relu", 2.5, 0.0) == math.inf
    assert theory.q_star("relu", 2.0, 0.05) == math.inf
    assert math.isnan(theory.q_star("relu", 2.0, 0.0))  # every q is a fixed point
    assert theory.q_star("identity", 0.5, 0.0) == 0.0


# ---------------------------------------------------------------- mean field against the engine

SIGMA_B2 = 0.05  # measured_log_chi1: width 500, depth 60, 16 examples, the fit over layers 2..57 of 0..59


# What makes the estimate noisy, measured on 48 networks per case (width 500, 16 examples, layers 2..57):
# one network's slope scatters about ln chi_1 with sd ~0.006 for tanh (finite width: the phi' of a unit and
# ||W^T d|| fluctuate by O(1/sqrt(width)) per layer and the fit integrates a random walk) and ~0.008 for
# ReLU, whose 0/1 masks are shared by all examples once their correlations reach 1, so neither the batch
# size nor the layer range averages them away; the bias is below 0.001. Hence the test pools K networks
# (E over examples and networks): sd ~0.002 for K = 8 (tanh) and K = 16 (ReLU), so 0.01 is > 4 sd.
# The loss at the top: dL/d(output) is i.i.d. per example over a wide output, so each example carries an
# independent direction (a scalar output would give every example the same W_out row).
@pytest.mark.parametrize(
    "activation, sigma_w2, networks",
    [("tanh", 1.0, 8), ("tanh", 1.761, 8), ("tanh", 2.5, 8), ("relu", 1.8, 16), ("relu", 2.0, 16)],
)
def test_mean_field_slope_matches_log_chi1(activation, sigma_w2, networks):
    predicted = math.log(theory.chi1(activation, sigma_w2, SIGMA_B2))
    measured = measured_log_chi1(activation, sigma_w2, networks, seed=2017, sigma_b2=SIGMA_B2)
    assert measured == pytest.approx(predicted, abs=0.01)  # the tolerance, not widened


# ---------------------------------------------------------------- Pascanu et al. 2013


def _last_step_trace(rnn: RNN, rng: np.random.Generator, n: int, T: int):
    x = rng.normal(size=(n, T, rnn.input_size))
    y, cache = rnn.forward(x, trace=True)
    return rnn.backward(rng.normal(size=y.shape), cache).trace


@pytest.mark.parametrize("activation, norm", [("tanh", 0.9), ("tanh", 0.99), ("sigmoid", 3.6), ("sigmoid", 3.96)])
def test_pascanu_bound_holds_for_every_example_and_step(activation, norm):
    rng = np.random.default_rng(13)
    T = 30
    rnn = RNN(4, 32, 3, activation, output="last", init="xavier_normal", spectral_norm=norm, rng=rng)
    w = rnn.params["weight_hh"]
    assert theory.gamma(activation) * np.linalg.norm(w, 2) < 1.0
    assert theory.pascanu_verdict(w, activation) == theory.VANISHING
    bound = theory.pascanu_bound(w, activation, T)
    assert bound[-1] == 1.0 and np.all(np.diff(bound) > 0)
    dh = np.linalg.norm(_last_step_trace(rnn, rng, 64, T).dh, axis=2)  # (N, T) per-example ||dL/dh_t||
    assert np.all(dh <= bound * dh[:, -1:] * (1 + 1e-12))  # 1e-12: rounding only


@pytest.mark.parametrize("rho", [0.8, 0.95, 1.05])
def test_linear_orthogonal_rnn_decays_by_rho_per_step(rho):
    rng = np.random.default_rng(5)
    T = 40
    rnn = RNN(3, 24, 2, "identity", output="last", recurrent_init="orthogonal", gain=rho, rng=rng)
    w = rnn.params["weight_hh"]
    dh = np.linalg.norm(_last_step_trace(rnn, rng, 16, T).dh, axis=2)
    per_step = dh[:, :-1] / dh[:, 1:]  # ||dh_t|| / ||dh_(t+1)||, every example and step
    np.testing.assert_allclose(per_step, rho, rtol=0.01)  # the 1% (here exact to rounding)
    bound = np.broadcast_to(theory.pascanu_bound(w, "identity", T), dh.shape)
    np.testing.assert_allclose(dh / dh[:, -1:], bound, rtol=1e-9)  # orthogonal W: the bound is attained
    assert init.spectral_radius(w) == pytest.approx(rho, rel=1e-9)
    expected = theory.VANISHING if rho < 1 else theory.EXPLODING
    assert theory.pascanu_verdict(w, "identity") == expected


def test_pascanu_verdict_boundary_and_gamma():
    assert theory.gamma("sigmoid") == 0.25 and theory.gamma("tanh") == 1.0 and theory.gamma("leaky_relu") == 1.0
    q = init.orthogonal(np.random.default_rng(0), (8, 8))
    assert theory.pascanu_verdict(q, "tanh") == theory.NEITHER  # ||Q||_2 = 1 up to rounding
    assert theory.pascanu_verdict(4 * q, "sigmoid") == theory.NEITHER
    assert theory.pascanu_verdict(5 * q, "sigmoid") == theory.EXPLODING
    assert theory.pascanu_verdict(3 * q, "sigmoid") == theory.VANISHING


# ---------------------------------------------------------------- Glorot and Bengio 2010


def test_glorot_variance_ratio():
    assert theory.glorot_variance_ratio("standard", 256, 256) == pytest.approx(1 / 3)
    assert theory.glorot_variance_ratio("xavier_normal", 300, 100) == pytest.approx(0.5)  # 100 * 2/400
    assert theory.glorot_variance_ratio("xavier_normal", 300, 100, direction="forward") == pytest.approx(1.5)
    assert theory.glorot_variance_ratio("he_normal", 200, 200, direction="forward") == pytest.approx(2.0)
    # against the engine's draws: empirical n Var[W] within 3% (sd of a variance estimate from 1.2e5 entries ~0.4-0.6%)
    rng = np.random.default_rng(3)
    for name, options in [("standard", {}), ("xavier_uniform", {"gain": 2.0}), ("he_uniform", {"slope": 0.1}),
                          ("orthogonal", {"gain": 1.5}), ("mean_field", {"sigma_w2": 1.7})]:  # fmt: skip
        w = init.weight(name, rng, (400, 300), **options)
        assert 400 * np.mean(w**2) == pytest.approx(theory.glorot_variance_ratio(name, 300, 400, **options), rel=0.03)


# ---------------------------------------------------------------- Lu et al. 2019


def _symmetric_nets(rng, m: int, width: int, hidden: int):
    """m stacked nets 3 -> width x hidden -> 1: W ~ N(0, 2/fan_in), b ~ N(0, 0.1^2) (symmetric, continuous)."""
    return symmetric_nets(rng, m, width, hidden, d_in=3, bias_std=0.1)


def test_lu_dead_definition_matches_the_engine():
    # "dead at x" (some hidden layer all zero) <=> the engine's dL/dx is exactly 0 (output constant near x)
    rng = np.random.default_rng(2019)
    sizes, ws, bs = _symmetric_nets(rng, 300, 2, 10)
    x = rng.normal(size=3)
    dead = dead_at_a_point(ws, bs, x, activations.get("relu"))
    for k in range(300):
        net = MLP(sizes, "relu", rng=rng)
        for l in range(len(ws)):
            net.params[f"layers.{l}.weight"][...] = ws[l][k]
            net.params[f"layers.{l}.bias"][...] = bs[l][k]
        out, cache = net.forward(x[None], trace=True)
        grads = net.backward(np.ones_like(out), cache)
        assert dead[k] == bool(np.any([np.all(a == 0) for a in grads.trace.a[:-1]]))
        assert dead[k] == bool(np.all(grads.dx == 0))
    assert 0 < dead.sum() < 300


@pytest.mark.parametrize("width", [2, 5])
def test_lu_monte_carlo_matches_formula(width):
    rng = np.random.default_rng(1903 + width)
    m, hidden = 20_000, 10
    _, ws, bs = _symmetric_nets(rng, m, width, hidden)
    dead = dead_at_a_point(ws, bs, rng.normal(size=3), activations.get("relu"))
    p = theory.lu_dead_probability(width, hidden)
    se = math.sqrt(p * (1 - p) / m)  # binomial standard error of the estimate
    assert abs(dead.mean() - p) < 3 * se


def test_leaky_relu_networks_are_never_dead_at_initialisation():
    rng = np.random.default_rng(7)
    _, ws, bs = _symmetric_nets(rng, 20_000, 2, 10)
    leaky = activations.get("leaky_relu", 0.01)
    assert not dead_at_a_point(ws, bs, rng.normal(size=3), leaky).any()


# ---------------------------------------------------------------- argument checks


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: theory.q_star("softplus", 1.0, 0.0), "activation"),
        (lambda: theory.q_star("tanh", -1.0, 0.0), "sigma_w2"),
        (lambda: theory.chi1("tanh", 1.0, -0.1), "sigma_b2"),
        (lambda: theory.chi1("leaky_relu", 1.0, 0.0, slope=2.0), "slope"),
        (lambda: theory.depth_scale(0.0), "chi1_value"),
        (lambda: theory.predicted_delta_norms("tanh", 1.0, 0.0, 0), "depth"),
        (lambda: theory.pascanu_bound(np.ones((2, 3)), "tanh", 5), "weight_hh"),
        (lambda: theory.pascanu_bound(np.eye(2), "tanh", 0), "T"),
        (lambda: theory.glorot_variance_ratio("lecun", 3, 3), "init"),
        (lambda: theory.glorot_variance_ratio("standard", 3, 3, direction="up"), "direction"),
        (lambda: theory.glorot_variance_ratio("standard", 3, 3, gian=1.0), "options"),
        (lambda: theory.lu_dead_probability(0, 3), "width"),
        (lambda: theory.lu_dead_probability(2, 1.5), "hidden_layers"),
    ],
)
def test_bad_arguments_raise_one_line_value_errors(call, name):
    with pytest.raises(ValueError) as err:
        call()
    assert str(err.value).startswith(name) and "\n" not in str(err.value)


# ---------------------------------------------------------------- Balduzzi et al. 2017: shattered gradients


def _masked_backward(rng: np.random.Generator, architecture: str, depth: int, width: int, samples: int) -> tuple[float, float]:
    """The finite computation behind theory.shattered_correlation: the input gradients at two inputs are
    the same top gradient sent back through the same He weights W_l ~ N(0, 2 / width) and independent
    ReLU masks D_l ~ Bernoulli(1/2) (one per input): delta <- W_l^T D_l delta (feedforward), or
    delta <- delta + c_l W_l^T D_l delta with c_l = 1 (resnet) or 1 / sqrt(l) (resnet_bn, Theorem 3's
    model). Returns (the mean of delta_i . delta_j / width, its standard error) over `samples` nets,
    with E[|delta|^2] / width = 1 at the top."""
    top = rng.standard_normal((samples, width))
    di, dj = top.copy(), top.copy()
    for l in range(depth, 0, -1):
        w = rng.normal(0.0, math.sqrt(2.0 / width), size=(samples, width, width))
        mi, mj = rng.random((2, samples, width)) < 0.5
        step_i, step_j = np.einsum("sk,skj->sj", mi * di, w), np.einsum("sk,skj->sj", mj * dj, w)
        if architecture == "feedforward":
            di, dj = step_i, step_j
        else:
            c = 1.0 if architecture == "resnet" else 1.0 / math.sqrt(l)
            di, dj = di + c * step_i, dj + c * step_j
    cov = np.einsum("sk,sk->s", di, dj) / width
    return float(cov.mean()), float(cov.std(ddof=1) / math.sqrt(samples))


def _variance_scale(architecture: str, depth: int) -> float:
    """C(i): 1 (feedforward), 2^L (resnet), prod (1 + 1/l) = L + 1 (resnet_bn's model)."""
    return {"feedforward": 1.0, "resnet": 2.0**depth, "resnet_bn": depth + 1.0}[architecture]


@pytest.mark.parametrize("architecture, depth", [("feedforward", 1), ("feedforward", 3), ("resnet", 2), ("resnet", 4),
                                                 ("resnet_bn", 4)])  # fmt: skip
def test_shattered_correlation_matches_the_masked_products_it_describes(architecture, depth):
    # Balduzzi et al. 2017, Theorems 1-3: covariance of the two gradients = C(i) x shattered_correlation.
    # 4000 nets of width 32; the tolerance is 4 standard errors of the Monte Carlo mean (seeded).
    cov, se = _masked_backward(np.random.default_rng([2017, depth]), architecture, depth, 32, 4000)
    want = _variance_scale(architecture, depth) * theory.shattered_correlation(architecture, depth)
    assert abs(cov - want) < 4 * se, f"{architecture}, depth {depth}: Monte Carlo covariance {cov:.4f} +- {se:.4f}, theory {want:.4f}"


def test_shattered_correlation_rates():
    # Theorem 1 halves the correlation per layer, Theorem 2 takes 3/4, Theorem 3's model falls as L^(-1/2)
    assert theory.shattered_correlation("feedforward", 7) / theory.shattered_correlation("feedforward", 6) == 0.5
    assert math.isclose(theory.shattered_correlation("resnet", 5) / theory.shattered_correlation("resnet", 4), 0.75)
    big = [theory.shattered_correlation("resnet_bn", L) for L in (1000, 4000)]
    assert abs(math.log(big[1] / big[0]) / math.log(4.0) + 0.5) < 1e-3


# ---------------------------------------------------------------- Saxe, McClelland and Ganguli 2014


def _decoupled_one_hidden_layer(lr: float, s: np.ndarray, u0: float, t_end: float) -> tuple[np.ndarray, np.ndarray]:
    """The finite computation behind theory.saxe_mode_strength: gradient descent (step lr, mse loss) on
    the engine's linear net N -> N -> N from decoupled balanced weights W21 = sqrt(u0) V^T,
    W32 = sqrt(u0) U, onto the teacher U diag(s) V^T with whitened, centred inputs (X^T X / P = I).
    Returns (t = lr x step, u_a(t) = u_a^T W32 W21 v_a) of shapes (steps + 1,) and (steps + 1, N)."""
    from gradlab.nn import losses, optim

    n, rng = len(s), np.random.default_rng(3)
    q, _ = np.linalg.qr(np.column_stack([np.ones(2 * n), rng.standard_normal((2 * n, n))]))
    x = math.sqrt(2 * n) * q[:, 1:]  # centred (biases get no gradient) and whitened
    u, _ = np.linalg.qr(rng.standard_normal((n, n)))
    v, _ = np.linalg.qr(rng.standard_normal((n, n)))
    y = x @ (u @ np.diag(s) @ v.T).T
    net = MLP([n, n, n], "identity", init="identity")
    net.params["layers.0.weight"][...] = math.sqrt(u0) * v.T
    net.params["layers.1.weight"][...] = math.sqrt(u0) * u
    opt, strengths = optim.SGD(net.params, lr), []
    for _ in range(int(round(t_end / lr)) + 1):
        strengths.append(np.einsum("ia,ij,ja->a", u, net.params["layers.1.weight"] @ net.params["layers.0.weight"], v))
        out, cache = net.forward(x)
        _, dout = losses.mse(out, y)
        opt.step(net.backward(dout, cache, input_grad=False).params)
    return lr * np.arange(len(strengths)), np.array(strengths)


def test_saxe_mode_strength_is_the_gradient_flow_of_a_decoupled_one_hidden_layer_net():
    # Saxe et al. 2014, Sec. 2: tau du/dt = 2 u (s - u), tau = 1 / lr steps. Gradient descent is the Euler
    # step of that flow, so the gap to the closed form is first order in lr: below lr x s per mode
    # (relative to s; ~0.75 lr s measured) and halving lr halves it.
    s, u0 = np.array([3.0, 2.0, 1.0, 0.5]), 1e-3
    gaps = []
    for lr in (0.02, 0.01):
        t, u = _decoupled_one_hidden_layer(lr, s, u0, 4.0)
        want = np.stack([theory.saxe_mode_strength(t, si, u0) for si in s], axis=1)
        gap = np.abs(u - want).max(axis=0) / s
        assert np.all(gap < lr * s), f"lr {lr}: max |u - u_theory| / s = {gap}, bound lr s = {lr * s}"
        gaps.append(gap)
    assert np.allclose(gaps[0] / gaps[1], 2.0, rtol=0.1), f"gap ratio lr 0.02 / 0.01 = {gaps[0] / gaps[1]}, first order: 2"


def test_saxe_learning_time_inverts_the_mode_strength():
    t = theory.saxe_learning_time(2.0, 0.01, 1.5)
    assert math.isclose(theory.saxe_mode_strength(t, 2.0, 0.01), 1.5, rel_tol=1e-12)
    assert math.isclose(theory.saxe_learning_time(4.0, 0.02, 2.0), 0.5 * theory.saxe_learning_time(2.0, 0.01, 1.0))


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: theory.shattered_correlation("densenet", 3), "architecture"),
        (lambda: theory.shattered_correlation("resnet", 0), "depth"),
        (lambda: theory.saxe_mode_strength(1.0, -1.0, 0.1), "s"),
        (lambda: theory.saxe_mode_strength(1.0, 1.0, 0.0), "u0"),
        (lambda: theory.saxe_learning_time(1.0, 0.1, 1.5), "u0 and uf"),
    ],
)
def test_shattered_and_saxe_bad_arguments_raise_one_line_value_errors(call, name):
    with pytest.raises(ValueError) as err:
        call()
    assert str(err.value).startswith(name) and "\n" not in str(err.value)


# ---------------------------------------------------------------- an RNN at initialisation, driven by inputs


def test_rnn_input_variance_is_var_w_times_the_inputs_second_moments():
    # W_ih (H, 2) of variance 1/6 (standard init, fan_in 2) times adding-problem inputs: E[x^2] = 1/3 and 2/T
    w = np.random.default_rng(11).uniform(-1, 1, size=(400, 2)) / math.sqrt(2)
    from gradlab.tasks.adding import Adding

    x, _ = Adding(50).sample(np.random.default_rng(12), 2000)  # (N, T, 2)
    measured = np.mean((x @ w.T) ** 2)  # Var of (W_ih x_t)_i over units, examples and steps
    predicted = theory.rnn_input_variance(1 / 6, [1 / 3, 2 / 50])
    # 400 units x 2000 x 50 samples, but only 400 x 2 weights: their mean square has a relative error of
    # sqrt(0.8 / 800) ~ 3% (uniform entries: Var[w^2] / E[w^2]^2 = 0.8); 10% is 3 of those
    assert measured == pytest.approx(predicted, rel=0.10), f"Var[W_ih x] {measured:.4f}, predicted {predicted:.4f}"
    with pytest.raises(ValueError, match="input_second_moments"):
        theory.rnn_input_variance(1 / 6, [])


@pytest.mark.parametrize("sigma_w2", [0.5, 4.0])
def test_rnn_step_factor_against_a_wide_rnn(sigma_w2):
    # Chen, Pennington, Schoenholz 2018 (mean field of RNNs), Pascanu et al. 2013 Sec. 2.1: the RMS of
    # dL/dh_t changes by sqrt(chi_1) per step back, at the bias Var[W_ih] E||x||^2. A tanh RNN with H = 1000
    # on adding-problem inputs (T = 50): the fitted per-step factor of sqrt(mean_n ||dL/dh_t||^2) over
    # t = 10..39 (away from h_0 = 0 and the loss). Finite width biases it by ~1/H relative (measured ~3%
    # at H = 50, 0.5% at 200); the fit over 30 steps of 128 examples scatters by ~0.3%: 1.5% tolerance.
    from gradlab.nn import losses
    from gradlab.tasks.adding import Adding

    H, T = 1000, 50
    rnn = RNN(2, H, 1, "tanh", recurrent_init="mean_field", sigma_w2=sigma_w2, rng=np.random.default_rng(13))
    x, y = Adding(T).sample(np.random.default_rng(14), 128)
    out, cache = rnn.forward(x, trace=True)
    dh = rnn.backward(losses.mse(out, y)[1], cache, input_grad=False).trace.dh  # (N, T, H)
    rms = np.sqrt(np.mean(np.sum(dh**2, axis=2), axis=0))  # (T,)
    t = np.arange(10, 40)
    measured = float(np.exp(theory.log_slope(rms[t], T - 1 - t)))
    predicted = theory.rnn_step_factor("tanh", sigma_w2, theory.rnn_input_variance(theory.init_variance("standard", 2, H), [1 / 3, 2 / T]))
    assert measured == pytest.approx(predicted, rel=0.015), f"sigma_w2 = {sigma_w2}: per-step factor {measured:.4f}, mean field {predicted:.4f}"


# ---------------------------------------------------------------- input-output Jacobians (Pennington 2017, Yang 2019, Hanin 2018)
# Each closed form beside the finite computation it predicts; seeds fixed, tolerances stated per test.


@pytest.mark.parametrize("activation, q", [("tanh", 0.3), ("tanh", 2.0), ("sigmoid", 1.0), ("relu", 1.0), ("leaky_relu", 0.7)])
def test_derivative_moments_match_monte_carlo(activation, q):
    # mu_k = E[phi'(sqrt(q) z)^(2k)] by 10^6 draws: phi'^(2k) is in [0, 1], so the standard error is < 5e-4
    act = activations.get(activation, 0.2)
    d = act.derivative(act.forward(math.sqrt(q) * np.random.default_rng(0).standard_normal(1_000_000)))
    for k in (1, 2):
        assert theory.derivative_moment(act, q, k) == pytest.approx(np.mean(d ** (2 * k)), abs=2.5e-3), f"mu_{k}"


@pytest.mark.parametrize("q", [1 / 64, 0.25, 1.0])
def test_critical_point_has_the_fixed_point_and_chi1_one(q):
    sigma_w2, sigma_b2 = theory.critical_point("tanh", q)
    assert theory.q_star("tanh", sigma_w2, sigma_b2) == pytest.approx(q, rel=1e-9)
    assert theory.chi1("tanh", sigma_w2, sigma_b2) == pytest.approx(1.0, rel=1e-9)


def test_jjt_moments_closed_forms():
    # Pennington 2017's cases at criticality: var = L (mu_2/mu_1^2 - 1 - s_1)
    L = 7
    assert theory.jjt_moments("identity", 1.0, 0.0, L, "orthogonal")[2] == pytest.approx(0.0, abs=1e-12)
    assert theory.jjt_moments("identity", 1.0, 0.0, L, "gaussian") == pytest.approx((1.0, L + 1.0, L))
    assert theory.jjt_moments("relu", 2.0, 0.0, L, "orthogonal")[2] == pytest.approx(L)
    assert theory.jjt_moments("relu", 2.0, 0.0, L, "gaussian")[2] == pytest.approx(2 * L)
    m1, m2, _ = theory.jjt_moments("identity", 0.8, 0.0, 3, "orthogonal")  # off criticality: m1 = chi^L
    assert (m1, m2) == pytest.approx((0.8**3, 0.8**6))


@pytest.mark.parametrize("activation, weights, sigma_w2", [("identity", "gaussian", 1.0), ("relu", "gaussian", 2.0), ("relu", "orthogonal", 2.0)])
def test_jjt_moments_match_finite_jacobians(activation, weights, sigma_w2):
    # J = prod D_l W_l of 3 layers, width 300, 12 networks: m2 / m1^2 - 1 (the spectrum's variance, m1 ~ 1)
    # measured 3.0-6.1 with standard error ~0.06-0.1; finite width biases it by O(L / width) ~ 1%: 0.35 tolerance
    rng = np.random.default_rng(4)
    width, depth, found = 300, 3, []
    for _ in range(12):
        a, jac = rng.standard_normal(width), np.eye(width)
        for _ in range(depth):
            if weights == "orthogonal":
                w = init.orthogonal(rng, (width, width), gain=math.sqrt(sigma_w2))
            else:
                w = init.mean_field(rng, (width, width), sigma_w2=sigma_w2)
            z = w @ a
            act = activations.get(activation)
            a = act.forward(z)
            jac = act.derivative(a)[:, None] * (w @ jac)
        lam = np.linalg.svd(jac, compute_uv=False) ** 2
        found.append(np.mean(lam**2) / np.mean(lam) ** 2 - 1.0)
    expected = theory.jjt_moments(activation, sigma_w2, 0.0, depth, weights)[2]
    assert np.mean(found) == pytest.approx(expected, abs=0.35), f"{activation} {weights}: {np.mean(found):.3f} vs {expected}"


@pytest.mark.parametrize("batch", [4, 5, 8])
def test_batchnorm_linear_rate_matches_one_wide_layer(batch):
    # one linear layer and batch norm, 4000 units, at the fixed point (the batch's inputs centred with covariance
    # B/(B-1) G) and an upstream gradient isotropic in the centred subspace: sigma_w^2 E||dL/dz||^2 / E||dL/dy||^2.
    # The per-unit ratio has a heavy tail at B = 4 (E[1/chi^2_3]); 4000 units x 25 draws: standard error ~2-4%
    from gradlab.nn import norm

    rng, units, sigma_w2 = np.random.default_rng(1), 4000, 1.7
    centre = np.eye(batch) - 1.0 / batch
    ratios = []
    for _ in range(25):
        z = centre @ rng.normal(0.0, math.sqrt(sigma_w2 * batch / (batch - 1)), size=(batch, units))
        y, cache, _ = norm.batch_norm_forward(z, np.ones(units), np.zeros(units))
        dy = centre @ rng.standard_normal((batch, units))
        dz = norm.norm_backward(dy, cache)[0]
        ratios.append(sigma_w2 * np.sum(dz**2) / np.sum(dy**2))
    assert np.mean(ratios) == pytest.approx(theory.batchnorm_linear_rate(batch), rel=0.1)
    assert theory.batchnorm_linear_rate(32) == pytest.approx(30 / 29)


@pytest.mark.parametrize("hidden", [[6], [8, 8], [4, 16]])
def test_hanin_ratio_matches_random_relu_nets(hidden):
    # E[J^4] / E[J^2]^2 of the entries of 20000 He-normal ReLU nets (one ensemble), 3 inputs, 8 outputs;
    # the estimate's relative standard error is ~3-5% here (sqrt(kurtosis / 20000)): 15% tolerance
    from gradlab.probes.io_jacobian import input_output_jacobian, squared_entry_moments

    R = 20_000
    net = MLP([3, *hidden, 8], "relu", init="he_normal", rng=np.random.default_rng(2), ensemble=R)
    jac = input_output_jacobian(net, np.random.default_rng(3).normal(size=(R, 1, 3)))
    ez, ez2 = squared_entry_moments(jac)
    assert ez2 / ez**2 == pytest.approx(theory.hanin_entry_moment_ratio(hidden), rel=0.15)
    assert theory.hanin_beta(hidden) == pytest.approx(sum(1 / n for n in hidden))
