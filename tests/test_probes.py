"""Probes against direct NumPy computations on small hand-made cases.

Every expected number here is computed in the test itself (a hand-written forward and backward, or
PyTorch's autograd for the LSTM, or finite differences), never by calling gradlab.probes. Tolerances:
1e-12 relative for float64 quantities computed two ways (rounding only); exact equality for counts,
fractions and flags.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gradlab import LSTM, MLP, RNN, probes
from gradlab.nn import clip, losses, optim

RTOL = 1e-12


def close(actual, expected, rtol=RTOL, atol=0.0, name=""):
    np.testing.assert_allclose(np.asarray(actual, dtype=float), np.asarray(expected, dtype=float), rtol=rtol,
                               atol=atol, err_msg=name)  # fmt: skip


def per_example_norm_mean(d: np.ndarray) -> float:
    return float(np.mean([np.linalg.norm(d[n].ravel()) for n in range(d.shape[0])]))


# ----------------------------------------------------------------------------------------- MLP


def hand_mlp(activation: str) -> tuple[MLP, np.ndarray, np.ndarray]:
    """3 -> 4 -> 4 -> 2 with hand-set weights: big enough that some tanh units saturate and some
    ReLU units are off."""
    model = MLP([3, 4, 4, 2], activation, rng=np.random.default_rng(0))
    p = model.params
    p["layers.0.weight"][...] = [[2.0, -1.0, 0.5], [-3.0, 4.0, 1.0], [0.1, 0.2, -0.3], [5.0, 5.0, -5.0]]
    p["layers.0.bias"][...] = [0.5, -1.0, 0.0, 2.0]
    p["layers.1.weight"][...] = [
        [1.0, -2.0, 0.5, 0.3], [0.7, 0.1, -0.4, 2.0], [-1.5, 0.2, 3.0, -0.6], [0.0, 1.0, 1.0, 1.0]
    ]  # fmt: skip
    p["layers.1.bias"][...] = [-0.2, 0.1, 0.3, -4.0]
    p["layers.2.weight"][...] = [[0.3, -0.7, 1.1, 0.4], [-0.5, 0.9, 0.2, -1.3]]
    p["layers.2.bias"][...] = [0.05, -0.1]
    x = np.array([[1.0, 0.5, -1.0], [-0.3, 2.0, 0.1], [0.7, -1.2, 0.4], [2.0, 1.0, 3.0], [-1.0, -1.0, -1.0]])
    y = np.array([[0.1, -0.2], [1.0, 0.5], [-0.4, 0.3], [0.0, 0.0], [0.2, 0.9]])
    return model, x, y


def manual_mlp(model: MLP, x: np.ndarray, y: np.ndarray, activation: str):
    """Forward and backward written out in NumPy: per layer (z, a, delta, dW, db) for 1/2 MSE."""
    phi = {"tanh": np.tanh, "relu": lambda z: np.maximum(z, 0)}[activation]
    dphi = {"tanh": lambda z: 1 - np.tanh(z) ** 2, "relu": lambda z: (z > 0).astype(float)}[activation]
    Ws = [model.params[f"layers.{l}.weight"].copy() for l in range(3)]
    bs = [model.params[f"layers.{l}.bias"].copy() for l in range(3)]
    a, zs, As, inputs = x, [], [], []
    for l in range(3):
        inputs.append(a)
        z = a @ Ws[l].T + bs[l]
        a = phi(z) if l < 2 else z
        zs.append(z)
        As.append(a)
    N = x.shape[0]
    dout = (As[-1] - y) / N
    deltas = [None, None, dout]
    for l in (1, 0):
        deltas[l] = (deltas[l + 1] @ Ws[l + 1]) * dphi(zs[l])
    dWs = [deltas[l].T @ inputs[l] for l in range(3)]
    dbs = [deltas[l].sum(axis=0) for l in range(3)]
    return zs, As, deltas, dWs, dbs, Ws, dphi


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_mlp_layer_columns_equal_direct_numpy(activation):
    model, x, y = hand_mlp(activation)
    zs, As, deltas, dWs, dbs, Ws, dphi = manual_mlp(model, x, y, activation)
    out, cache = model.forward(x, trace=True)
    _, dout = losses.mse(out, y)
    grads = model.backward(dout, cache)
    s = probes.layer_stats(model, grads)
    close(s["layer"], [0, 1, 2])
    close(s["weight_grad_norm"], [np.linalg.norm(d) for d in dWs], name="weight_grad_norm")
    close(s["bias_grad_norm"], [np.linalg.norm(d) for d in dbs], name="bias_grad_norm")
    close(s["delta_norm"], [per_example_norm_mean(d) for d in deltas], name="delta_norm")
    close(s["act_mean"], [a.mean() for a in As], name="act_mean")
    close(s["act_std"], [a.std() for a in As], name="act_std")
    # saturated: phi'(z) < 1% of max phi' (1 for tanh and ReLU); the output layer is the identity
    expected_sat = [np.mean(dphi(zs[l]) < 0.01) for l in range(2)] + [0.0]
    assert s["saturated_frac"].tolist() == expected_sat
    assert 0 < expected_sat[0] < 1 or 0 < expected_sat[1] < 1, "the hand-made case should saturate some units"
    assert np.isnan(s["dead_frac"]).all() and np.isnan(s["update_ratio"]).all()  # no probe set, no update here

    # update ratio after an SGD step of lr 0.1: ||W_after - W_before|| / ||W_after||
    before = probes.snapshot(model)
    optim.SGD(model.params, lr=0.1).step(grads.params)
    expected = [np.linalg.norm(0.1 * dWs[l]) / np.linalg.norm(Ws[l] - 0.1 * dWs[l]) for l in range(3)]
    close(probes.update_ratios(model, before), expected, name="update_ratio")
    assert before["layers.0.weight"] is not model.params["layers.0.weight"]


def test_tanh_saturation_threshold_is_one_percent_of_max_derivative():
    """A tanh unit at z = 2.99 (phi' = 0.0100...) is not saturated, at z = 3.0 (phi' = 0.00987) it is."""
    model = MLP([1, 2, 1], "tanh", rng=np.random.default_rng(0))
    model.params["layers.0.weight"][...] = [[1.0], [1.0]]
    model.params["layers.0.bias"][...] = [0.0, 0.0]
    x = np.array([[2.99], [3.0]])
    assert 1 - np.tanh(2.99) ** 2 > 0.01 > 1 - np.tanh(3.0) ** 2
    out, cache = model.forward(x, trace=True)
    s = probes.layer_stats(model, model.backward(np.ones_like(out), cache))
    assert s["saturated_frac"][0] == 0.5


def test_sigmoid_saturation_uses_max_derivative_quarter():
    """sigmoid' = s(1-s) has max 1/4: saturated below 0.0025 (z beyond about +-5.99), not below 0.01."""
    model = MLP([1, 3, 1], "sigmoid", rng=np.random.default_rng(0))
    model.params["layers.0.weight"][...] = [[1.0], [1.0], [1.0]]
    model.params["layers.0.bias"][...] = [0.0, 4.0, 7.0]  # sigmoid' = 0.25, 0.0177, 0.0009
    out, cache = model.forward(np.zeros((2, 1)), trace=True)
    s = probes.layer_stats(model, model.backward(np.ones_like(out), cache))
    assert s["saturated_frac"][0] == pytest.approx(1 / 3)


def test_step_record_and_clipping_flag():
    model, x, y = hand_mlp("tanh")
    out, cache = model.forward(x)
    loss, dout = losses.mse(out, y)
    grads = model.backward(dout, cache).params
    expected_norm = np.sqrt(sum(np.sum(g**2) for g in grads.values()))
    before, after = clip.clip_norm(grads, 0.01)
    assert expected_norm > 0.01
    frame = probes.steps_frame([probes.step_record(7, loss, before, after, 0.1)], run_id="r")
    row = frame.iloc[0]
    assert row["step"] == 7 and row["run_id"] == "r"
    close(row["grad_norm"], expected_norm)
    close(row["grad_norm_clipped"], 0.01)
    assert bool(row["clipped"]) and pd.isna(row["collapsed"])
    not_clipped = probes.step_record(8, loss, 0.5, 0.5, 0.1)
    assert not_clipped[4] is False
    assert probes.step_record(9, np.nan, np.nan, np.nan, 0.1)[4] is False  # NaN: no clipping happened


# ----------------------------------------------------------------------------------------- RNN


def hand_rnn(activation="tanh", output="last") -> tuple[RNN, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    model = RNN(2, 3, 2, activation, output=output, rng=rng)
    model.params["weight_ih"][...] = [[0.5, -1.0], [2.0, 0.3], [-0.7, 0.8]]
    model.params["weight_hh"][...] = [[0.9, -0.4, 0.2], [0.3, 1.1, -0.5], [-0.6, 0.2, 0.8]]
    model.params["bias"][...] = [0.1, -0.2, 0.3]
    model.params["readout.weight"][...] = [[1.0, -0.5, 0.25], [0.3, 0.6, -0.9]]
    model.params["readout.bias"][...] = [0.0, 0.1]
    x = rng.normal(size=(3, 4, 2)) * 1.5
    y = rng.normal(size=(3, 2) if output == "last" else (3, 4, 2))
    return model, x, y


def manual_rnn(model: RNN, x, y):
    """h_t = tanh(W_ih x_t + W_hh h_(t-1) + b), loss 1/2 MSE on y_T; BPTT by hand. Returns h (N,T,H),
    dh (N,T,H) = total dL/dh_t, dz (N,T,H), output y, dout."""
    p = model.params
    N, T, _ = x.shape
    H = p["weight_hh"].shape[0]
    h = np.zeros((N, T, H))
    prev = np.zeros((N, H))
    for t in range(T):
        prev = np.tanh(x[:, t] @ p["weight_ih"].T + prev @ p["weight_hh"].T + p["bias"])
        h[:, t] = prev
    out = h[:, -1] @ p["readout.weight"].T + p["readout.bias"]
    dout = (out - y) / N
    dh = np.zeros_like(h)
    dz = np.zeros_like(h)
    dh[:, -1] = dout @ p["readout.weight"]
    for t in reversed(range(T)):
        dz[:, t] = dh[:, t] * (1 - h[:, t] ** 2)
        if t:
            dh[:, t - 1] = dz[:, t] @ p["weight_hh"]
    return h, dh, dz, out, dout


def test_rnn_layer_and_timestep_columns_equal_direct_numpy():
    model, x, y = hand_rnn()
    h, dh, dz, out_expected, dout_expected = manual_rnn(model, x, y)
    out, cache = model.forward(x, trace=True)
    _, dout = losses.mse(out, y)
    grads = model.backward(dout, cache)
    close(out, out_expected, name="test's own forward")
    s = probes.layer_stats(model, grads, dout=dout, output=out)
    # layer 0: the cell (weight_ih and weight_hh together), layer 1: the readout
    dW_ih = np.einsum("nth,ntd->hd", dz, x)
    dW_hh = np.einsum("nth,ntj->hj", dz[:, 1:], h[:, :-1])
    dW_out = dout_expected.T @ h[:, -1]
    close(s["weight_grad_norm"], [np.sqrt(np.sum(dW_ih**2) + np.sum(dW_hh**2)), np.linalg.norm(dW_out)])
    close(s["bias_grad_norm"], [np.linalg.norm(dz.sum(axis=(0, 1))), np.linalg.norm(dout_expected.sum(axis=0))])
    close(s["delta_norm"], [per_example_norm_mean(dz), per_example_norm_mean(dout_expected)], name="delta_norm")
    close(s["act_mean"], [h.mean(), out_expected.mean()])
    close(s["act_std"], [h.std(), out_expected.std()])
    assert s["saturated_frac"].tolist() == [np.mean(1 - h**2 < 0.01), 0.0]
    ts = probes.timestep_stats(model, grads)
    assert ts["t"].tolist() == [0, 1, 2, 3]
    close(ts["dh_norm"], [np.linalg.norm(dh[:, t], axis=1).mean() for t in range(4)], name="dh_norm")
    assert np.isnan(ts["dc_norm"]).all() and np.isnan(ts["jacobian_norm"]).all()
    # without dout / output the readout's delta and activation are unknown
    s2 = probes.layer_stats(model, grads)
    assert np.isnan(s2["delta_norm"][1]) and np.isnan(s2["act_mean"][1])


def fd_jacobian(f, h_prev: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central-difference Jacobian of f: (H,) -> (H,)."""
    H = h_prev.size
    J = np.empty((H, H))
    for j in range(H):
        e = np.zeros(H)
        e[j] = eps
        J[:, j] = (f(h_prev + e) - f(h_prev - e)) / (2 * eps)
    return J


def test_rnn_jacobian_norm_exact_power_and_finite_differences():
    model, x, y = hand_rnn()
    p = model.params
    h, *_ = manual_rnn(model, x, y)
    out, cache = model.forward(x, trace=True)
    grads = model.backward(losses.mse(out, y)[1], cache)
    N, T, H = h.shape
    per_example = np.zeros((N, T))
    for t in range(T):
        for n in range(N):
            xw = x[n, t] @ p["weight_ih"].T + p["bias"]
            prev = h[n, t - 1] if t else np.zeros(H)
            J = fd_jacobian(lambda v: np.tanh(xw + p["weight_hh"] @ v), prev)
            per_example[n, t] = np.linalg.norm(J, 2)
    exact = probes.timestep_stats(model, grads, jacobian=True, method="exact")["jacobian_norm"]
    power = probes.timestep_stats(model, grads, jacobian=True, method="power")["jacobian_norm"]
    close(exact, per_example.mean(axis=0), rtol=1e-8, name="exact vs finite differences")
    close(power, exact, rtol=1e-8, name="power iteration vs exact SVD")
    first = probes.timestep_stats(model, grads, jacobian=True, examples=1)["jacobian_norm"]
    close(first, per_example[0], rtol=1e-8, name="jacobian over the first example only")


def lstm_step(xw, h_prev, c_prev, W_hh):
    """The LSTM step written out (gates i, f, g, o)."""
    H = h_prev.size
    z = xw + W_hh @ h_prev
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    i, f, g, o = sig(z[:H]), sig(z[H : 2 * H]), np.tanh(z[2 * H : 3 * H]), sig(z[3 * H :])
    c = f * c_prev + i * g
    return o * np.tanh(c), c


def test_lstm_jacobian_norm_matches_finite_differences():
    rng = np.random.default_rng(5)
    model = LSTM(2, 3, 1, rng=rng, init="xavier_normal")
    model.params["weight_hh"] *= 3.0  # gates away from 1/2, so every term of the Jacobian matters
    model.params["bias"][...] = rng.normal(size=12)
    x = rng.normal(size=(2, 3, 2))
    c0 = rng.normal(size=(2, 3))
    out, cache = model.forward(x, c0=c0, trace=True)
    grads = model.backward(np.ones_like(out), cache)
    p = model.params
    N, T, H = grads.trace.h.shape
    expected = np.zeros(T)
    for n in range(N):
        h_prev, c_prev = np.zeros(H), c0[n]
        for t in range(T):
            xw = x[n, t] @ p["weight_ih"].T + p["bias"]
            J = fd_jacobian(lambda v: lstm_step(xw, v, c_prev, p["weight_hh"])[0], h_prev)
            expected[t] += np.linalg.norm(J, 2) / N
            h_prev, c_prev = lstm_step(xw, h_prev, c_prev, p["weight_hh"])
    exact = probes.timestep_stats(model, grads, jacobian=True, method="exact", c0=c0)["jacobian_norm"]
    power = probes.timestep_stats(model, grads, jacobian=True, method="power", c0=c0)["jacobian_norm"]
    close(exact, expected, rtol=1e-8, name="LSTM exact vs finite differences")
    close(power, exact, rtol=1e-8, name="LSTM power vs exact")
    wrong_c0 = probes.timestep_stats(model, grads, jacobian=True, method="exact")["jacobian_norm"]
    assert abs(wrong_c0[0] - exact[0]) > 1e-6  # c0 enters the first step's Jacobian (through f')


def test_power_iteration_beyond_exact_limit_agrees_with_svd():
    """H = 80 > EXACT_MAX_H: "auto" uses power iteration, a lower bound within 1e-4 of the SVD's value
    (after POWER_ITERS products when the top two singular values are close, as for some rows here)."""
    rng = np.random.default_rng(2)
    H = 80
    assert H > probes.EXACT_MAX_H
    W = rng.normal(size=(H, H)) / np.sqrt(H)
    coef = rng.uniform(0.0, 1.0, size=(6, H))
    auto = probes.spectral_norms(coef, W)
    svd = np.array([np.linalg.norm(np.diag(c) @ W, 2) for c in coef])
    close(auto, svd, rtol=1e-4)
    assert np.all(auto <= svd * (1 + 1e-12))


@pytest.mark.torch
def test_lstm_columns_equal_torch_autograd():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    N, T, D, H = 3, 4, 2, 3
    model = LSTM(D, H, 2, output="all", rng=rng, init="xavier_normal")
    model.params["bias"][...] = rng.normal(size=4 * H)
    x = rng.normal(size=(N, T, D))
    y = rng.normal(size=(N, T, 2))
    out, cache = model.forward(x, trace=True)
    _, dout = losses.mse(out, y)
    grads = model.backward(dout, cache)
    s = probes.layer_stats(model, grads, dout=dout, output=out)
    ts = probes.timestep_stats(model, grads)

    p = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
    h, c = torch.zeros(N, H, dtype=torch.float64), torch.zeros(N, H, dtype=torch.float64)
    hs, cs, zs, gates = [], [], [], []
    for t in range(T):
        z = torch.tensor(x[:, t]) @ p["weight_ih"].T + h @ p["weight_hh"].T + p["bias"]
        z.retain_grad()
        i, f, o = (torch.sigmoid(z[:, k * H : (k + 1) * H]) for k in (0, 1, 3))
        g = torch.tanh(z[:, 2 * H : 3 * H])
        c = f * c + i * g
        h = o * torch.tanh(c)
        h.retain_grad(), c.retain_grad()
        hs.append(h), cs.append(c), zs.append(z), gates.append((i, f, g, o))
    ys = torch.stack([hh @ p["readout.weight"].T + p["readout.bias"] for hh in hs], dim=1)
    loss = 0.5 * ((ys - torch.tensor(y)) ** 2).sum() / (N * T)
    loss.backward()
    dz = np.stack([z.grad.numpy() for z in zs], axis=1)  # (N, T, 4H)
    close(s["delta_norm"][0], per_example_norm_mean(dz), rtol=1e-10, name="LSTM delta_norm")
    close(ts["dh_norm"], [np.linalg.norm(hh.grad.numpy(), axis=1).mean() for hh in hs], rtol=1e-10, name="dh_norm")
    close(ts["dc_norm"], [np.linalg.norm(cc.grad.numpy(), axis=1).mean() for cc in cs], rtol=1e-10, name="dc_norm")
    h_np = np.stack([hh.detach().numpy() for hh in hs], axis=1)
    close(s["act_mean"][0], h_np.mean())
    close(s["act_std"][0], h_np.std())
    cell = np.sqrt(sum((p[k].grad ** 2).sum().item() for k in ("weight_ih", "weight_hh")))
    close(s["weight_grad_norm"][0], cell)
    close(s["weight_grad_norm"][1], p["readout.weight"].grad.norm().item())
    close(s["delta_norm"][1], per_example_norm_mean(dout), name="readout delta")
    sat = 0
    for i, f, g, o in gates:
        sat += sum(int((v * (1 - v) < 0.0025).sum()) for v in (t.detach().numpy() for t in (i, f, o)))
        sat += int((1 - g.detach().numpy() ** 2 < 0.01).sum())
    assert s["saturated_frac"][0] == sat / (N * T * 4 * H)


def test_lstm_saturated_frac_counts_saturated_gates():
    """Forget gates driven to sigmoid(+-20) (saturated), the rest near 1/2: 1/4 of the gate units saturated."""
    model = LSTM(1, 2, 1, rng=np.random.default_rng(0))
    model.params["weight_ih"][...] = 0.0
    model.params["weight_hh"][...] = 0.0
    model.params["bias"][...] = [0.1, -0.1, 20.0, -20.0, 0.2, 0.0, 0.3, -0.3]
    out, cache = model.forward(np.zeros((2, 3, 1)), trace=True)
    s = probes.layer_stats(model, model.backward(np.ones_like(out), cache))
    assert s["saturated_frac"][0] == 0.25


# ----------------------------------------------------------------------------------------- dead units


def relu_net() -> MLP:
    model = MLP([2, 3, 3, 1], "relu", rng=np.random.default_rng(0))
    p = model.params
    p["layers.0.weight"][...] = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    p["layers.0.bias"][...] = [0.0, 0.0, 0.0]
    p["layers.1.weight"][...] = [[1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 1.0]]
    p["layers.1.bias"][...] = [0.1, 0.1, 0.1]
    p["layers.2.weight"][...] = [[1.0, -1.0, 0.5]]
    return model


SPECIAL = [0.0, -0.0, float("nan"), float("inf"), -float("inf"), -2.5]
EDGES = {np.float64: [5e-324, -5e-324, 1e308], np.float32: [1e-45, -1e-45, 3e38]}  # subnormals; sums that overflow


def _special_arrays(dtype):
    return hnp.arrays(dtype, hnp.array_shapes(min_dims=2, max_dims=4, max_side=6), elements=st.sampled_from(SPECIAL + EDGES[dtype]))


@settings(max_examples=300, deadline=None)
@given(st.one_of(_special_arrays(np.float64), _special_arrays(np.float32)))
def test_never_nonzero_is_not_any_over_the_examples(a):
    """never_nonzero(a) (sum_n |a_nk| == 0) equals ~np.any(a, axis=-2) on every array of zeros of both
    signs, subnormals, NaN, infinities and values whose sum overflows, in both dtypes and any leading axes."""
    from gradlab.probes.dead import never_nonzero

    got, expected = never_nonzero(a), ~np.any(a, axis=-2)
    assert got.shape == expected.shape, f"shape {a.shape}: never_nonzero gives {got.shape}, any gives {expected.shape}"
    wrong = np.argwhere(got != expected)
    assert not len(wrong), f"{a.dtype} {a.shape} at {tuple(wrong[0])}: never_nonzero {got[tuple(wrong[0])]}, ~any {expected[tuple(wrong[0])]}"


def test_dead_masks_born_dead_died_and_collapsed():
    x = np.random.default_rng(0).normal(size=(probes.DEFAULT_PROBE_SIZE, 2))
    model = relu_net()
    model.params["layers.0.bias"][1] = -100.0  # unit (0, 1) is dead from the start
    tracker = probes.DeadTracker(x)
    r0 = tracker.update(0, model)
    assert [m.tolist() for m in r0.masks] == [[False, True, False], [False, False, False], [False]]
    assert r0.born_dead[0].tolist() == [False, True, False] and not any(m.any() for m in r0.died)
    close(r0.dead_frac, [1 / 3, 0.0, 0.0])
    assert not r0.collapsed

    model.params["layers.1.bias"][2] = -100.0  # unit (1, 2) dies between two logs
    r1 = tracker.update(10, model)
    assert r1.died[1].tolist() == [False, False, True] and r1.born_dead[1].tolist() == [False, False, False]
    assert r1.born_dead[0].tolist() == [False, True, False]
    close(r1.dead_frac, [1 / 3, 1 / 3, 0.0])
    close(r1.born_dead_frac, [1 / 3, 0.0, 0.0])
    close(r1.died_frac, [0.0, 1 / 3, 0.0])
    assert not r1.collapsed

    model.params["layers.1.bias"][...] = -100.0  # the whole second layer: the net is constant (Lu et al.)
    r2 = tracker.update(20, model)
    assert r2.masks[1].all() and r2.collapsed and r2.output_spread == 0.0


def test_unit_alive_on_one_probe_example_is_not_dead():
    model = relu_net()
    model.params["layers.0.weight"][0] = [1.0, 0.0]
    model.params["layers.0.bias"][0] = -2.5  # positive only where x_0 > 2.5
    x = np.zeros((512, 2))
    x[:, 0] = np.linspace(-2.0, 2.0, 512)
    masks, _ = probes.dead_masks(model, x)
    assert masks[0][0]
    x[100, 0] = 3.0  # one example switches it on
    masks, _ = probes.dead_masks(model, x)
    assert not masks[0][0]


def test_collapse_tolerance_is_relative():
    y = np.full((4, 2), 5.0)
    assert probes.is_collapsed(y) and probes.is_collapsed(np.zeros((3, 1)))
    y[2, 1] += 5.0 * 0.5e-6  # within 1e-6 of max |y|
    assert probes.is_collapsed(y)
    y[2, 1] += 5.0 * 1e-6
    assert not probes.is_collapsed(y)


def test_rnn_dead_masks_need_zero_at_every_step():
    model = RNN(1, 2, 1, "relu", rng=np.random.default_rng(0))
    model.params["weight_ih"][...] = [[1.0], [1.0]]
    model.params["weight_hh"][...] = 0.0
    model.params["bias"][...] = [-100.0, 0.0]
    x = -np.ones((4, 3, 1))
    x[1, 2, 0] = 5.0  # unit 1 fires once, at the last step of one example
    masks, _ = probes.dead_masks(model, x)
    assert masks[0].tolist() == [True, False]


@pytest.mark.parametrize("output", ["last", "all"])
def test_the_readouts_dead_mask_is_one_per_output_alone_and_per_member_in_an_ensemble(output):
    """An output unit is dead when it is 0 on every probe example (and every step, with the loss on every
    step): the mask is (O,) alone, (R, O) in an ensemble, whatever axes y has in between."""
    rngs = [np.random.default_rng(s) for s in range(2)]
    alone, many = RNN(2, 4, 3, output=output, rng=rngs[0]), RNN(2, 4, 3, output=output, rng=[np.random.default_rng(0), rngs[1]], ensemble=2)
    alone.params["readout.weight"][...] = many.params["readout.weight"][0] = 0.0  # output units 0 everywhere...
    alone.params["readout.bias"][...] = many.params["readout.bias"][0] = [0.0, 1.0, 0.0]  # ... but output 1
    x = np.random.default_rng(5).normal(size=(5, 6, 2))
    (one, _), (both, _) = probes.dead_masks(alone, x), probes.dead_masks(many, np.stack([x, x]))
    assert one[-1].tolist() == [True, False, True], f"output={output}: readout mask {one[-1]}"
    assert both[-1].shape == (2, 3) and both[-1][0].tolist() == [True, False, True], f"output={output}: {both[-1]}"
    assert not both[-1][1].any(), f"output={output}: member 1's outputs are not 0, got {both[-1][1]}"


# ----------------------------------------------------------------------------------------- logging, frames


def test_should_log():
    assert [s for s in range(12) if probes.should_log(s, 5, last_step=11)] == [0, 5, 10, 11]
    assert [s for s in range(4) if probes.should_log(s, 1)] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="every"):
        probes.should_log(3, 0)


def test_recorder_tables_have_documented_columns_and_dtypes():
    rng = np.random.default_rng(0)
    model = RNN(2, 4, 1, "relu", rng=rng)
    x, y = rng.normal(size=(8, 5, 2)), rng.normal(size=(8, 1))
    rec = probes.Recorder(model, run_id="abc", every=3, last_step=6, probe_x=x, jacobian=True, dead_every=6)
    opt = optim.SGD(model.params, lr=0.05)
    logged = []
    for step in range(7):
        log = rec.should_log(step)
        out, cache = model.forward(x, trace=log)
        loss, dout = losses.mse(out, y)
        grads = model.backward(dout, cache)
        if log:
            logged.append(step)
            rec.record_backward(step, grads, dout=dout, output=out)
        norm, norm_c = clip.clip(grads.params, "norm", 0.1)
        opt.step(grads.params)
        rec.record_step(step, loss, norm, norm_c, 0.05)
    tables = rec.frames()
    for name, frame in tables.items():
        assert list(frame.columns) == list(probes.COLUMNS[name]), name
        for col, dtype in probes.COLUMNS[name].items():
            assert frame[col].dtype == pd.Series([], dtype=dtype).dtype, (name, col)
        assert (frame["run_id"] == "abc").all()
    assert logged == [0, 3, 6]
    assert tables["steps"]["step"].tolist() == list(range(7))
    assert tables["layers"]["step"].tolist() == [0, 0, 3, 3, 6, 6]
    assert tables["timesteps"]["step"].tolist() == [0] * 5 + [3] * 5 + [6] * 5
    assert tables["timesteps"]["jacobian_norm"].notna().all()
    assert np.isfinite(tables["layers"]["update_ratio"]).all()
    # the probe set ran at steps 0 and 6 (dead_every=6), not at 3
    dead = tables["layers"].set_index("step")["dead_frac"]
    assert dead.loc[0].notna().all() and dead.loc[3].isna().all() and dead.loc[6].notna().all()
    collapsed = tables["steps"].set_index("step")["collapsed"]
    assert collapsed.notna().tolist() == [True, False, False, False, False, False, True]


def test_empty_frames_are_typed():
    frames = probes.empty_frames("x")
    assert all(len(f) == 0 for f in frames.values())
    assert frames["layers"]["layer"].dtype == np.int64 and frames["steps"]["clipped"].dtype == bool


def test_act_std_survives_cancellation_and_float32():
    """Sigmoid activations all within 1e-6 of 1/2 (E[a^2] - E[a]^2 would cancel) in a float32 model:
    act_std matches NumPy's two-pass std in float64 within float32 rounding."""
    rng = np.random.default_rng(4)
    model = MLP([3, 8, 1], "sigmoid", rng=rng, dtype="float32")
    model.params["layers.0.weight"][...] = 1e-6 * rng.normal(size=(8, 3))
    x = rng.normal(size=(64, 3)).astype("float32")
    out, cache = model.forward(x, trace=True)
    s = probes.layer_stats(model, model.backward(np.ones_like(out), cache))
    a = cache.layers[0].a.astype(np.float64)
    assert a.std() > 0
    close(s["act_mean"][0], a.mean(), rtol=1e-12)
    close(s["act_std"][0], a.std(), rtol=1e-6)


@pytest.mark.parametrize("name", optim.NAMES)
def test_update_ratios_from_the_optimizer_equal_the_snapshot_s(name):
    """Recorder(optimizer=...) takes ||W_after - W_before|| from the optimizer instead of a weight snapshot:
    the same update_ratio to 1e-10 relative (float64; the snapshot's subtraction rounds at 1e-16 of |W|, the
    updates are ~1e-3 of it), and no snapshot taken."""
    frames = {}
    for source in ("snapshot", "optimizer"):
        rng = np.random.default_rng(0)
        model = MLP([3, 8, 8, 2], "tanh", rng=rng)
        x, y = rng.normal(size=(16, 3)), rng.normal(size=(16, 2))
        opt = optim.get(name, model.params, lr=0.01)
        rec = probes.Recorder(model, every=2, optimizer=opt if source == "optimizer" else None)
        for step in range(5):
            out, cache = model.forward(x, trace=True)
            loss, dout = losses.mse(out, y)
            grads = model.backward(dout, cache)
            if rec.should_log(step):
                rec.record_backward(step, grads)
                assert (rec._before is None) == (source == "optimizer"), f"{source}: snapshot taken is {rec._before is not None}"
            opt.step(grads.params)
            rec.record_step(step, loss, 0.0, 0.0, 0.01)
        frames[source] = rec.frames()["layers"]["update_ratio"].to_numpy()
    assert np.all(frames["snapshot"] > 0), frames["snapshot"]
    close(frames["optimizer"], frames["snapshot"], name=f"{name} update_ratio", rtol=1e-10)


def test_an_optimizer_of_other_arrays_is_not_asked_for_its_update_norms():
    model = MLP([3, 4, 1], rng=np.random.default_rng(0))
    other = {k: v.copy() for k, v in model.params.items()}
    rec = probes.Recorder(model, optimizer=optim.SGD(other, lr=0.1))
    assert rec.optimizer is None, "an optimizer stepping copies of the weights would report the wrong updates"


def _recorded(model, x, y, background: bool | None, **options) -> tuple[dict[str, pd.DataFrame], int]:
    """Six SGD steps logged every other one; the tables, and how many logged steps left columns to the helper."""
    opt = optim.SGD(model.params, lr=0.05)
    rec = probes.Recorder(model, every=2, probe_x=x, background=background, optimizer=opt, **options)
    deferred = 0
    for step in range(6):
        log = rec.should_log(step)
        out, cache = model.forward(x, trace=log)
        loss, dout = losses.mse(out, y)
        grads = model.backward(dout, cache)
        if log:
            rec.record_backward(step, grads, dout=dout, output=out, cache=cache)
            deferred += bool(rec._later)
        norm, norm_c = clip.clip(grads.params, "norm", 0.1)  # rescales the gradients in place after record_backward
        opt.step(grads.params)
        rec.record_step(step, loss, norm, norm_c, 0.05)
    return rec.frames(), deferred


@pytest.mark.parametrize("kind", ["mlp", "rnn_all", "lstm_jacobian"])
def test_columns_computed_in_the_helper_thread_are_those_computed_at_once(kind):
    """Recorder(background=True) gives the same tables, bit for bit, as background=False (the same NumPy
    calls on arrays nobody rewrites), although clipping rescales the gradients before the helper reads the trace."""
    tables, deferred = {}, {}
    for background in (False, True):
        rng = np.random.default_rng(0)
        if kind == "mlp":
            model, x, y = MLP([3, 8, 8, 2], "relu", rng=rng), rng.normal(size=(16, 3)), rng.normal(size=(16, 2))
            options = {}
        elif kind == "rnn_all":
            model, x, y = RNN(2, 6, 1, "tanh", rng=rng, output="all"), rng.normal(size=(8, 5, 2)), rng.normal(size=(8, 5, 1))
            options = {}
        else:
            model, x, y = LSTM(2, 4, 1, rng=rng), rng.normal(size=(8, 5, 2)), rng.normal(size=(8, 1))
            options = {"jacobian": True}
        tables[background], deferred[background] = _recorded(model, x, y, background, **options)
    assert (deferred[False], deferred[True]) == (0, 3), f"logged steps left to the helper (at once, background): {deferred}"
    for name in ("steps", "layers", "timesteps"):
        pd.testing.assert_frame_equal(tables[True][name], tables[False][name], obj=f"{kind} {name}")
    assert tables[True]["layers"]["weight_grad_norm"].gt(0).all()


@pytest.mark.parametrize("free", [1, 2])
@pytest.mark.parametrize("kind", ["mlp", "rnn", "lstm"])
def test_by_default_a_recurrent_models_columns_go_to_the_helper_when_a_core_is_free(monkeypatch, kind, free):
    """Recorder(background=None): a recurrent model's trace columns go to the helper thread when the thread rule
    gives this process more than one thread (a free core); an MLP's are computed at once either way."""
    from gradlab import _process

    monkeypatch.setattr(_process.RULE, "threads", lambda: free)
    rng = np.random.default_rng(0)
    if kind == "mlp":
        model, x, y = MLP([3, 8, 2], "tanh", rng=rng), rng.normal(size=(16, 3)), rng.normal(size=(16, 2))
    else:
        cls = RNN if kind == "rnn" else LSTM
        model, x, y = cls(2, 4, 1, rng=rng), rng.normal(size=(8, 5, 2)), rng.normal(size=(8, 1))
    _, deferred = _recorded(model, x, y, background=None)
    want = 3 if kind != "mlp" and free > 1 else 0
    assert deferred == want, f"{kind} with {free} thread(s): {deferred} logged steps left to the helper, want {want}"


def test_an_error_in_the_helper_thread_is_raised_once_and_its_step_dropped(monkeypatch):
    from gradlab.probes import recorder

    def broken(*args, **kwargs):
        raise FloatingPointError("broken layer_stats")

    rng = np.random.default_rng(0)
    model, x, y = MLP([3, 4, 1], rng=rng), rng.normal(size=(8, 3)), rng.normal(size=(8, 1))
    rec = probes.Recorder(model, background=True)
    opt = optim.SGD(model.params, lr=0.1)
    out, cache = model.forward(x, trace=True)
    loss, dout = losses.mse(out, y)
    monkeypatch.setattr(recorder, "layer_stats", broken)
    rec.record_backward(0, model.backward(dout, cache))
    opt.step(model.backward(dout, cache).params)
    rec.record_step(0, loss, 1.0, 1.0, 0.1)
    with pytest.raises(FloatingPointError, match="broken layer_stats"):
        rec.frames()
    tables = rec.frames()  # raised once: the crash path can still write what there is
    assert len(tables["layers"]) == 0 and len(tables["steps"]) == 1, (len(tables["layers"]), len(tables["steps"]))
