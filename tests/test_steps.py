"""Each reference step function and block on its own, against central finite differences (gradcheck's
fourth-order stencil, float64, norm-wise relative error per array below gradcheck.TOLERANCE = 1e-7):
the dense block, layer norm, batch norm in training mode (through the batch statistics) and in evaluation
mode, the MLP layer (dense, normalization, activation, residual), and one step of the RNN, LSTM and GRU
cells with respect to every input of the step (xw_t, h_prev, c_prev, W_hh through dz^T h_prev, b_hh). The
LSTM's gate_derivatives are checked against elementwise finite differences of c_t and h_t in the gate
pre-activations. Each block also runs with a leading member axis (an ensemble of R = 2), its forward is
compared with its defining formula, and neither forward nor backward writes into its inputs or its cache.

A step's scalar test loss is L = sum(U * output) for fixed random upstream gradients U, so that the
backward given U must return dL/d(input).
"""

import copy

import numpy as np
import pytest
from conftest import ACTIVATIONS, assert_close, assert_rel

from gradlab.nn import activations, gradcheck
from gradlab.nn import norm as nrm
from gradlab.nn.cells import gru as gru_cell
from gradlab.nn.cells import lstm as lstm_cell
from gradlab.nn.cells import rnn as rnn_cell
from gradlab.nn.dense import dense_backward, dense_forward
from gradlab.nn.mlp import layer_backward, layer_forward

TOL = gradcheck.TOLERANCE
LEADS = [(), (2,)]
LEAD_ID = lambda lead: f"R{lead[0]}" if lead else "single"  # noqa: E731
N, D, H = 4, 3, 5
MARGIN = 1e-2  # the ReLU family's inputs are kept this far from the kink (the stencil reaches 2e-4)


def numeric(loss, array):
    return gradcheck.numerical_gradient(loss, array)


def weighted(outputs, upstream):
    """L = sum_k sum(U_k * output_k)."""
    return float(sum(np.vdot(u, o) for u, o in zip(upstream, outputs)))


def snapshot(obj):
    """A deep copy of the arrays in obj (a tuple, NamedTuple or array), to compare after a call."""
    return copy.deepcopy(obj)


def assert_unchanged(before, after, label):
    """Every array in `after` (nested tuples) equals its copy in `before`."""
    if isinstance(after, np.ndarray):
        assert np.array_equal(before, after, equal_nan=True), f"{label}: an input or cache array was written to"
    elif isinstance(after, (tuple, list)):
        for k, (b, a) in enumerate(zip(before, after)):
            assert_unchanged(b, a, f"{label}[{k}]")


def kink_free(act, u):
    return act.name not in ("relu", "leaky_relu") or float(np.abs(u).min()) > MARGIN


# ---------------------------------------------------------------- dense


@pytest.mark.parametrize("lead,shared_input", [((), False), ((2,), False), ((2,), True)],
                         ids=["single", "R2", "R2-shared-input"])  # fmt: skip
def test_dense_step(lead, shared_input):
    """z = a_prev W^T + b; (da_prev, dW, db) = dL/d(a_prev, W, b). With members and a shared input
    (N, in), each member's da_prev is returned, whose sum over members is dL/da_prev of the sum."""
    rng = np.random.default_rng(0)
    a_prev = rng.normal(size=(N, D) if shared_input else (*lead, N, D))
    W, b = rng.normal(size=(*lead, H, D)), rng.normal(size=(*lead, H))
    z, cache = dense_forward(a_prev, W, b)
    assert_close(z, np.einsum("...ni,...ji->...nj", a_prev, W) + b[..., None, :], "dense z", rtol=1e-13, atol=1e-14)
    U = rng.normal(size=z.shape)
    loss = lambda: weighted([dense_forward(a_prev, W, b)[0]], [U])  # noqa: E731
    before = snapshot((a_prev, W, b, tuple(cache)))
    da_prev, dW, db = dense_backward(U, cache)
    assert_unchanged(before, (a_prev, W, b, tuple(cache)), "dense")
    label = f"dense {LEAD_ID(lead)} shared={shared_input}"
    da_total = da_prev.sum(axis=0) if shared_input else da_prev
    assert da_prev.shape == (*lead, N, D), f"{label}: da_prev shape {da_prev.shape}"
    assert_rel(da_total, numeric(loss, a_prev), TOL, f"{label} da_prev")
    assert_rel(dW, numeric(loss, W), TOL, f"{label} dW")
    assert_rel(db, numeric(loss, b), TOL, f"{label} db")
    none, dW2, db2 = dense_backward(U, cache, input_grad=False)
    assert none is None and np.array_equal(dW2, dW) and np.array_equal(db2, db), f"{label}: input_grad=False"


# ---------------------------------------------------------------- normalization


def by_hand(z, gain, bias, mean, var):
    return gain[..., None, :] * (z - mean) / np.sqrt(var + 1e-5) + bias[..., None, :]


def norm_case(lead, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(*lead, N, H)) * 2 + 0.5
    return rng, z, rng.normal(size=(*lead, H)) + 1, rng.normal(size=(*lead, H))


def check_norm_backward(forward, z, gain, bias, rng, label):
    y, cache = forward(z, gain, bias)[:2]
    U = rng.normal(size=y.shape)
    loss = lambda: weighted([forward(z, gain, bias)[0]], [U])  # noqa: E731
    before = snapshot((z, gain, bias, tuple(cache)))
    dz, dgain, dbias = nrm.norm_backward(U, cache)
    assert_unchanged(before, (z, gain, bias, tuple(cache)), label)
    assert_rel(dz, numeric(loss, z), TOL, f"{label} dz")
    assert_rel(dgain, numeric(loss, gain), TOL, f"{label} dgain")
    assert_rel(dbias, numeric(loss, bias), TOL, f"{label} dbias")
    return y


@pytest.mark.parametrize("lead", LEADS, ids=LEAD_ID)
def test_layer_norm_step(lead):
    """Over each example's features (the last axis), biased variance, eps 1e-5."""
    rng, z, gain, bias = norm_case(lead)
    y = check_norm_backward(nrm.layer_norm_forward, z, gain, bias, rng, f"layer norm {LEAD_ID(lead)}")
    mean = z.mean(-1, keepdims=True)
    want = by_hand(z, gain, bias, mean, ((z - mean) ** 2).mean(-1, keepdims=True))
    assert_close(y, want, "layer norm y", rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("lead", LEADS, ids=LEAD_ID)
def test_batch_norm_train_step(lead):
    """Over the batch (axis -2), through the batch statistics (the full backward: dz would differ by the
    mean and variance terms with constant statistics); the statistics returned are the batch mean and the
    biased variance."""
    rng, z, gain, bias = norm_case(lead, 1)
    label = f"batch norm train {LEAD_ID(lead)}"
    y = check_norm_backward(nrm.batch_norm_forward, z, gain, bias, rng, label)
    mean, var = z.mean(-2, keepdims=True), ((z - z.mean(-2, keepdims=True)) ** 2).mean(-2, keepdims=True)
    assert_close(y, by_hand(z, gain, bias, mean, var), f"{label} y", rtol=1e-12, atol=1e-13)
    stats = nrm.batch_norm_forward(z, gain, bias)[2]
    assert_close(stats.mean, mean[..., 0, :], f"{label} stats.mean", rtol=1e-13, atol=1e-15)
    assert_close(stats.var, var[..., 0, :], f"{label} stats.var (biased)", rtol=1e-13, atol=1e-15)
    # the constant-statistics backward (dy gain / std) is not the gradient: the test would see it
    U = rng.normal(size=y.shape)
    naive = U * gain[..., None, :] / np.sqrt(var + 1e-5)
    assert gradcheck.relative_error(naive, nrm.norm_backward(U, nrm.batch_norm_forward(z, gain, bias)[1])[0]) > 0.1


@pytest.mark.parametrize("lead", LEADS, ids=LEAD_ID)
def test_batch_norm_eval_step(lead):
    """With the running statistics: affine in z, so dz = dy gain / sqrt(running_var + eps)."""
    rng, z, gain, bias = norm_case(lead, 2)
    rm, rv = rng.normal(size=(*lead, H)), rng.uniform(0.5, 2.0, size=(*lead, H))
    forward = lambda z_, g_, b_: nrm.batch_norm_eval(z_, g_, b_, rm, rv)  # noqa: E731
    label = f"batch norm eval {LEAD_ID(lead)}"
    y = check_norm_backward(forward, z, gain, bias, rng, label)
    assert_close(y, by_hand(z, gain, bias, rm[..., None, :], rv[..., None, :]), f"{label} y", rtol=1e-12, atol=1e-13)
    one = forward(z[..., :1, :], gain, bias)[0]  # a batch of one is fine in evaluation mode
    assert_close(one, y[..., :1, :], f"{label} N=1", rtol=1e-14, atol=1e-15)


def test_batch_norm_running_statistics_are_pytorchs():
    """running = 0.9 running + 0.1 batch, with the unbiased (n / (n - 1)) variance of the batch."""
    rng, z, gain, bias = norm_case((), 3)
    rm, rv = rng.normal(size=H), rng.uniform(0.5, 2, size=H)
    want_m, want_v = 0.9 * rm + 0.1 * z.mean(0), 0.9 * rv + 0.1 * z.var(0, ddof=1)
    stats = nrm.batch_norm_forward(z, gain, bias)[2]
    nrm.update_running(rm, rv, stats, N)
    assert_close(rm, want_m, "running_mean", rtol=1e-14, atol=1e-15)
    assert_close(rv, want_v, "running_var", rtol=1e-14, atol=1e-15)


def test_batch_norm_needs_two_examples_in_training_mode():
    with pytest.raises(ValueError, match=r"N >= 2.*N = 1"):
        nrm.batch_norm_forward(np.ones((1, 3)), np.ones(3), np.zeros(3))


# ---------------------------------------------------------------- the MLP layer


NORMS = {None: None, "layer": nrm.layer_norm_forward, "batch": nrm.batch_norm_forward}


@pytest.mark.parametrize("lead", LEADS, ids=LEAD_ID)
@pytest.mark.parametrize("residual_scale", [None, 1.0, 0.5], ids=lambda s: "plain" if s is None else f"res{s}")
@pytest.mark.parametrize("norm", list(NORMS), ids=lambda n: n or "nonorm")
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "leaky_relu", "relu"])
def test_mlp_layer_step(activation, norm, residual_scale, lead):
    """a = [a_prev + s] phi(norm(W a_prev + b)): dL/da_prev, dW, db, the norm's dgain and dbias, and
    delta = dL/dz (z the dense output, before the normalization), perturbed at z."""
    act = activations.get(activation)
    for seed in range(100):
        rng = np.random.default_rng(seed)
        a_prev = rng.normal(size=(*lead, N, H))
        W, b = rng.normal(size=(*lead, H, H)) / np.sqrt(H), rng.normal(size=(*lead, H)) * 0.3
        gain, beta = rng.normal(size=(*lead, H)) * 0.3 + 1, rng.normal(size=(*lead, H)) * 0.3
        pert = np.zeros((*lead, N, H))
        base = NORMS[norm]
        normalize = (lambda z: (z + pert, None)) if base is None else (lambda z: base(z + pert, gain, beta)[:2])
        a, cache = layer_forward(a_prev, W, b, act, normalize, residual_scale)
        if kink_free(act, cache.u):
            break
    label = f"layer {activation} norm={norm} residual={residual_scale} {LEAD_ID(lead)}"
    # the forward is its definition
    z = a_prev @ W.mT + b[..., None, :]
    u = z if norm is None else by_hand(z, gain, beta, z.mean(-1 if norm == "layer" else -2, keepdims=True),
                                       z.var(-1 if norm == "layer" else -2, keepdims=True))  # fmt: skip
    want = act.forward(u) if residual_scale is None else a_prev + residual_scale * act.forward(u)
    assert_close(a, want, f"{label} a", rtol=1e-12, atol=1e-13)
    assert_close(cache.z, z, f"{label} cache.z", rtol=1e-13, atol=1e-14)
    U = rng.normal(size=a.shape)
    loss = lambda: weighted([layer_forward(a_prev, W, b, act, normalize, residual_scale)[0]], [U])  # noqa: E731
    before = snapshot((a_prev, W, b, gain, beta))
    g = layer_backward(U, cache)
    assert_unchanged(before, (a_prev, W, b, gain, beta), label)
    assert_rel(g.da_prev, numeric(loss, a_prev), TOL, f"{label} da_prev")
    assert_rel(g.weight, numeric(loss, W), TOL, f"{label} dW")
    assert_rel(g.bias, numeric(loss, b), TOL, f"{label} db", zero=gradcheck.ZERO)  # 0 before batch norm
    assert_rel(g.delta, numeric(loss, pert), TOL, f"{label} delta = dL/dz")
    if norm is None:
        assert g.norm_weight is None and g.norm_bias is None, f"{label}: norm gradients without a norm"
    else:
        assert_rel(g.norm_weight, numeric(loss, gain), TOL, f"{label} dgain")
        assert_rel(g.norm_bias, numeric(loss, beta), TOL, f"{label} dbias")
    lean = layer_backward(U, cache, input_grad=False)
    if residual_scale is None:
        assert lean.da_prev is None, f"{label}: da_prev with input_grad=False"
    assert np.array_equal(lean.weight, g.weight) and np.array_equal(lean.delta, g.delta), f"{label}: input_grad=False"


# ---------------------------------------------------------------- recurrent cells, one step


def rnn_inputs(lead, act, seed=0):
    for s in range(seed, seed + 100):
        rng = np.random.default_rng(s)
        xw, h_prev = rng.normal(size=(*lead, N, H)), rng.normal(size=(*lead, N, H)) * 0.7
        W = rng.normal(size=(*lead, H, H)) / np.sqrt(H)
        if kink_free(act, xw + h_prev @ W.mT):
            return rng, xw, h_prev, W
    raise AssertionError("no draw kept the pre-activations off the kink")


@pytest.mark.parametrize("lead", LEADS, ids=LEAD_ID)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_rnn_step(activation, lead):
    """h = phi(xw_t + W_hh h_prev): dz = dL/dxw_t, dh_prev, and dW_hh = dz^T h_prev."""
    act = activations.get(activation)
    rng, xw, h_prev, W = rnn_inputs(lead, act)
    h, cache = rnn_cell.rnn_step_forward(xw, h_prev, W, act)
    assert_close(h, act.forward(xw + h_prev @ W.mT), f"rnn {activation} h", rtol=1e-14, atol=1e-15)
    U = rng.normal(size=h.shape)
    loss = lambda: weighted([rnn_cell.rnn_step_forward(xw, h_prev, W, act)[0]], [U])  # noqa: E731
    before = snapshot((xw, h_prev, W, tuple(cache[:3])))
    dh_prev, dz = rnn_cell.rnn_step_backward(U, cache)
    assert_unchanged(before, (xw, h_prev, W, tuple(cache[:3])), f"rnn {activation}")
    label = f"rnn step {activation} {LEAD_ID(lead)}"
    assert_rel(dz, numeric(loss, xw), TOL, f"{label} dz = dL/dxw_t")
    assert_rel(dh_prev, numeric(loss, h_prev), TOL, f"{label} dh_prev")
    assert_rel(dz.mT @ h_prev, numeric(loss, W), TOL, f"{label} dW_hh = dz^T h_prev")


def lstm_inputs(lead, seed=0):
    rng = np.random.default_rng(seed)
    xw = rng.normal(size=(*lead, N, 4 * H))
    h_prev, c_prev = rng.normal(size=(*lead, N, H)) * 0.7, rng.normal(size=(*lead, N, H))
    return rng, xw, h_prev, c_prev, rng.normal(size=(*lead, 4 * H, H)) / np.sqrt(H)


def sig(z):
    return 1 / (1 + np.exp(-z))


@pytest.mark.parametrize("lead", LEADS, ids=LEAD_ID)
def test_lstm_step(lead):
    """(h, c) from (xw_t, h_prev, c_prev, W_hh); L = sum(U_h h) + sum(U_c c), so dh = U_h and dc_next = U_c:
    dz = dL/dxw_t, dh_prev, dc_prev, dW_hh = dz^T h_prev, and dc = dL/dc_t (through h_t = o tanh(c_t) and
    directly), perturbed at c_t."""
    rng, xw, h_prev, c_prev, W = lstm_inputs(lead)
    h, c, cache = lstm_cell.lstm_step_forward(xw, h_prev, c_prev, W)
    zi, zf, zg, zo = np.split(xw + h_prev @ W.mT, 4, axis=-1)  # PyTorch's gate order i, f, g, o
    want_c = sig(zf) * c_prev + sig(zi) * np.tanh(zg)
    assert_close(c, want_c, "lstm c", rtol=1e-13, atol=1e-14)
    assert_close(h, sig(zo) * np.tanh(want_c), "lstm h", rtol=1e-13, atol=1e-14)
    gates = np.concatenate([sig(zi), sig(zf), np.tanh(zg), sig(zo)], -1)
    assert_close(cache.gates, gates, "lstm gates", rtol=1e-13, atol=1e-14)
    Uh, Uc = rng.normal(size=h.shape), rng.normal(size=c.shape)
    loss = lambda: weighted(lstm_cell.lstm_step_forward(xw, h_prev, c_prev, W)[:2], [Uh, Uc])  # noqa: E731
    before = snapshot((xw, h_prev, c_prev, W, tuple(cache)))
    dh_prev, dc_prev, dz, dc = lstm_cell.lstm_step_backward(Uh, Uc, cache)
    assert_unchanged(before, (xw, h_prev, c_prev, W, tuple(cache)), "lstm")
    label = f"lstm step {LEAD_ID(lead)}"
    assert_rel(dz, numeric(loss, xw), TOL, f"{label} dz = dL/dxw_t")
    assert_rel(dh_prev, numeric(loss, h_prev), TOL, f"{label} dh_prev")
    assert_rel(dc_prev, numeric(loss, c_prev), TOL, f"{label} dc_prev")
    assert_rel(dz.mT @ h_prev, numeric(loss, W), TOL, f"{label} dW_hh = dz^T h_prev")
    o, pc = sig(zo), np.zeros_like(c)
    at_c = lambda: weighted([o * np.tanh(c + pc), c + pc], [Uh, Uc])  # noqa: E731  h_t = o tanh(c_t), c_t itself
    assert_rel(dc, numeric(at_c, pc), TOL, f"{label} dc = dL/dc_t")


def gru_inputs(lead, seed=0):
    rng = np.random.default_rng(seed)
    xw, h_prev = rng.normal(size=(*lead, N, 3 * H)), rng.normal(size=(*lead, N, H)) * 0.7
    return rng, xw, h_prev, rng.normal(size=(*lead, 3 * H, H)) / np.sqrt(H), rng.normal(size=(*lead, 3 * H)) * 0.5


@pytest.mark.parametrize("lead", LEADS, ids=LEAD_ID)
def test_gru_step(lead):
    """PyTorch's equations (r, z, n): dxw = dL/dxw_t, dh_prev, dW_hh = dhw^T h_prev, db_hh = sum_n dhw, and
    dhw = dL/d(W_hh h_prev + b_hh) per example (each example given its own b_hh, as a member axis)."""
    rng, xw, h_prev, W, b = gru_inputs(lead)
    h, cache = gru_cell.gru_step_forward(xw, h_prev, W, b)
    x_r, x_z, x_n = np.split(xw, 3, axis=-1)
    h_r, h_z, h_n = np.split(h_prev @ W.mT + b[..., None, :], 3, axis=-1)
    r, z = sig(x_r + h_r), sig(x_z + h_z)
    n = np.tanh(x_n + r * h_n)
    assert_close(h, (1 - z) * n + z * h_prev, "gru h", rtol=1e-13, atol=1e-14)
    assert_close(cache.gates, np.concatenate([r, z, n], -1), "gru gates", rtol=1e-13, atol=1e-14)
    U = rng.normal(size=h.shape)
    loss = lambda: weighted([gru_cell.gru_step_forward(xw, h_prev, W, b)[0]], [U])  # noqa: E731
    before = snapshot((xw, h_prev, W, b, tuple(cache)))
    dh_prev, dxw, dhw = gru_cell.gru_step_backward(U, cache)
    assert_unchanged(before, (xw, h_prev, W, b, tuple(cache)), "gru")
    label = f"gru step {LEAD_ID(lead)}"
    assert_rel(dxw, numeric(loss, xw), TOL, f"{label} dxw = dL/dxw_t")
    assert_rel(dh_prev, numeric(loss, h_prev), TOL, f"{label} dh_prev")
    assert_rel(dhw.mT @ h_prev, numeric(loss, W), TOL, f"{label} dW_hh = dhw^T h_prev")
    assert_rel(dhw.sum(axis=-2), numeric(loss, b), TOL, f"{label} db_hh = sum_n dhw")
    # per example: example n as its own member, with its own copy of b_hh
    xe, he, be = xw[..., :, None, :], h_prev[..., :, None, :], np.repeat(b[..., None, :], N, axis=-2)
    We = W[..., None, :, :]
    per = lambda: weighted([gru_cell.gru_step_forward(xe, he, We, be)[0]], [U[..., :, None, :]])  # noqa: E731
    assert_rel(dhw, numeric(per, be), TOL, f"{label} dhw = dL/d(W_hh h_prev + b_hh)")


# ---------------------------------------------------------------- the LSTM's gate derivatives


STENCIL = gradcheck.STENCIL


def elementwise_derivative(f, z, step=gradcheck.STEP):
    """Central differences of an elementwise map f at z, every entry at once (autograd-free)."""
    return sum(w * f(z + o * step) for o, w in STENCIL) / (12 * step)


@pytest.mark.parametrize("lead", [(), (2, 3)], ids=["one-step", "R2-T3"])
def test_gate_derivatives_against_finite_differences_of_c_and_h(lead):
    """gate_derivatives(gates, tanh(c_t), c_prev): dc_t/dz_i, dc_t/dz_f, dc_t/dz_g, dh_t/dz_o and dh_t/dc_t
    (at fixed gates), against central differences of c_t = f c_prev + i g and h_t = o tanh(c_t) in the gate
    pre-activations z = (z_i, z_f, z_g, z_o); for many steps at once ((..., T, N, .)) as for one."""
    rng = np.random.default_rng(4)
    zi, zf, zg, zo = (rng.normal(size=(*lead, N, H)) * 1.5 for _ in range(4))
    c_prev = rng.normal(size=(*lead, N, H))
    cell = lambda zi, zf, zg: sig(zf) * c_prev + sig(zi) * np.tanh(zg)  # noqa: E731
    c = cell(zi, zf, zg)
    gates = np.concatenate([sig(zi), sig(zf), np.tanh(zg), sig(zo)], axis=-1)
    d = lstm_cell.gate_derivatives(gates, np.tanh(c), c_prev)
    label = f"gate_derivatives {lead}"
    assert_rel(d.i, elementwise_derivative(lambda v: cell(v, zf, zg), zi), TOL, f"{label} dc/dz_i")
    assert_rel(d.f, elementwise_derivative(lambda v: cell(zi, v, zg), zf), TOL, f"{label} dc/dz_f")
    assert_rel(d.g, elementwise_derivative(lambda v: cell(zi, zf, v), zg), TOL, f"{label} dc/dz_g")
    assert_rel(d.o, elementwise_derivative(lambda v: sig(v) * np.tanh(c), zo), TOL, f"{label} dh/dz_o")
    assert_rel(d.dc_dh, elementwise_derivative(lambda v: sig(zo) * np.tanh(v), c), TOL, f"{label} dh/dc (fixed gates)")
    # through c_t: dh_t/dz_i = dh/dc dc/dz_i
    h_of_zi = lambda v: sig(zo) * np.tanh(cell(v, zf, zg))  # noqa: E731
    assert_rel(d.dc_dh * d.i, elementwise_derivative(h_of_zi, zi), TOL, f"{label} dh/dz_i")
    if lead:  # many steps at once equal each step alone
        one = lstm_cell.gate_derivatives(gates[1, 2], np.tanh(c)[1, 2], c_prev[1, 2])
        for name, a, b in zip(d._fields, d, one):
            assert np.array_equal(a[1, 2], b), f"{label}: {name} of step (1, 2) differs when computed alone"


def test_lstm_step_backward_uses_the_gate_derivatives():
    """dz = (dc d.i, dc d.f, dc d.g, dh d.o) and dc = dc_next + dh d.dc_dh, with d = gate_derivatives(...)."""
    rng, xw, h_prev, c_prev, W = lstm_inputs((), 5)
    _, _, cache = lstm_cell.lstm_step_forward(xw, h_prev, c_prev, W)
    dh, dc_next = rng.normal(size=(N, H)), rng.normal(size=(N, H))
    d = lstm_cell.gate_derivatives(cache.gates, cache.tanh_c, cache.c_prev)
    _, dc_prev, dz, dc = lstm_cell.lstm_step_backward(dh, dc_next, cache)
    assert_close(dc, dc_next + dh * d.dc_dh, "dc", rtol=1e-15, atol=1e-16)
    assert_close(dz, np.concatenate([dc * d.i, dc * d.f, dc * d.g, dh * d.o], -1), "dz", rtol=1e-15, atol=1e-16)
