"""The probes of the cures: stacked cells (the timesteps table's `layer`, one layers row per cell layer), the
last step's loss alone (dh_last_norm), the GRU's gates in saturated_frac, the residual stream's gradient
(da_norm), dead units and saturation judged on phi, and batch norm's running statistics left alone.

Every expected number is computed in the test: the models unrolled by hand in PyTorch's autograd (from the
engine's parameters, cell by cell, so that every h_t of every layer is a tensor whose .grad is the total
dL/dh_t), counts from the gate values, or finite differences. Tolerances: 1e-10 relative against autograd
(float64, rounding only), exact equality for counts and fractions.
"""

from __future__ import annotations

import numpy as np
import pytest

from gradlab import GRU, LSTM, MLP, RNN, probes
from gradlab.nn import losses
from gradlab.nn.recurrent import layer_name

RTOL = 1e-10


def close(actual, expected, rtol=RTOL, name=""):
    np.testing.assert_allclose(np.asarray(actual, dtype=float), np.asarray(expected, dtype=float), rtol=rtol, err_msg=name)


def norm_mean(g: np.ndarray) -> float:
    """Batch mean of per-example norms over every axis but the first."""
    return float(np.linalg.norm(g.reshape(g.shape[0], -1), axis=1).mean())


# ----------------------------------------------------------------------------------------- recurrent, by hand in torch


def torch_unroll(torch, model, x: np.ndarray):
    """The model's forward written out in torch, cell layer by cell layer and step by step: (hs, ys) with
    hs[j][t] layer j's h_t (retain_grad: .grad is the total dL/dh_t after a backward) and ys (N, T, O)."""
    p = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
    N, T, _ = x.shape
    H = model.hidden_size
    inputs = [torch.tensor(x[:, t]) for t in range(T)]
    hs = []
    for j in range(model.num_layers):
        P = lambda name: p[layer_name(name, j)]  # noqa: E731
        h = torch.zeros(N, H, dtype=torch.float64)
        c = torch.zeros(N, H, dtype=torch.float64)
        layer = []
        for t in range(T):
            if isinstance(model, LSTM):
                z = inputs[t] @ P("weight_ih").T + h @ P("weight_hh").T + P("bias")
                i, f, o = (torch.sigmoid(z[:, k * H : (k + 1) * H]) for k in (0, 1, 3))
                c = f * c + i * torch.tanh(z[:, 2 * H : 3 * H])
                h = o * torch.tanh(c)
            elif isinstance(model, GRU):
                xw = inputs[t] @ P("weight_ih").T + P("bias_ih")
                hw = h @ P("weight_hh").T + P("bias_hh")
                r = torch.sigmoid(xw[:, :H] + hw[:, :H])
                zg = torch.sigmoid(xw[:, H : 2 * H] + hw[:, H : 2 * H])
                n = torch.tanh(xw[:, 2 * H :] + r * hw[:, 2 * H :])
                h = (1 - zg) * n + zg * h
            else:
                h = torch.tanh(inputs[t] @ P("weight_ih").T + h @ P("weight_hh").T + P("bias"))
            h.retain_grad()
            layer.append(h)
        hs.append(layer)
        inputs = layer
    ys = torch.stack([hh @ p["readout.weight"].T + p["readout.bias"] for hh in hs[-1]], dim=1)
    return hs, ys


def recurrent(kind: str, layers: int, output: str = "all", seed: int = 3, T: int = 5):
    rng = np.random.default_rng(seed)
    cls = {"rnn": RNN, "lstm": LSTM, "gru": GRU}[kind]
    model = cls(2, 3, 2, layers=layers, output=output, rng=rng, init="xavier_normal")
    for name, value in model.params.items():
        if "bias" in name:
            value[...] = rng.normal(size=value.shape)
    x = rng.normal(size=(4, T, 2))
    y = rng.normal(size=(4, T, 2) if output == "all" else (4, 2))
    return model, x, y


def record(model, x, y):
    """One logged step through the Recorder, as gradlab.train runs it: (tables, grads)."""
    rec = probes.Recorder(model, every=1, last_step=0)
    out, cache = model.forward(x, trace=True)
    loss, dout = losses.mse(out, y)
    grads = model.backward(dout, cache, input_grad=False)
    rec.record_backward(0, grads, dout=dout, output=out, cache=cache)
    rec.record_step(0, loss, 1.0, 1.0, 0.0)
    return rec.frames(), grads


@pytest.mark.torch
@pytest.mark.parametrize("kind, layers", [("rnn", 2), ("lstm", 2), ("gru", 1), ("gru", 3)])
def test_dh_last_norm_is_the_gradient_of_the_last_steps_loss_alone(kind, layers):
    """Loss on every step: dh_norm per layer and step against autograd of the whole loss, and dh_last_norm
    against autograd of the last step's term alone (1/(N T) sum_n 1/2 ||y_nT - target_nT||^2)."""
    torch = pytest.importorskip("torch")
    model, x, y = recurrent(kind, layers)
    tables, grads = record(model, x, y)
    ts = tables["timesteps"]
    N, T, _ = x.shape
    assert list(ts["layer"]) == [j for j in range(layers) for _ in range(T)]
    assert list(ts["t"]) == list(range(T)) * layers

    hs, ys = torch_unroll(torch, model, x)
    (0.5 * ((ys - torch.tensor(y)) ** 2).sum() / (N * T)).backward()
    total = [[norm_mean(h.grad.numpy()) for h in layer] for layer in hs]
    hs, ys = torch_unroll(torch, model, x)
    (0.5 * ((ys[:, -1] - torch.tensor(y[:, -1])) ** 2).sum() / (N * T)).backward()
    last = [[norm_mean(h.grad.numpy()) for h in layer] for layer in hs]
    for j in range(layers):
        rows = ts[ts["layer"] == j]
        close(rows["dh_norm"], total[j], name=f"dh_norm, layer {j}")
        close(rows["dh_norm"], [norm_mean(grads.trace.layers[j].dh[:, t]) for t in range(T)], rtol=1e-14)
        close(rows["dh_last_norm"], last[j], name=f"dh_last_norm, layer {j}")
    top = ts[ts["layer"] == layers - 1]
    assert top["dh_last_norm"].iloc[-1] == pytest.approx(top["dh_norm"].iloc[-1], rel=1e-14)  # nothing comes from later
    early = ts["t"] < T - 1  # there every later step's loss is gone from dh_last_norm
    assert np.all(np.abs(ts["dh_last_norm"][early] - ts["dh_norm"][early]) > 1e-6 * ts["dh_norm"][early])


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_with_the_loss_on_the_last_step_dh_last_norm_is_dh_norm(kind):
    model, x, y = recurrent(kind, 2, output="last")
    ts = record(model, x, y)[0]["timesteps"]
    assert ts["dh_last_norm"].tolist() == ts["dh_norm"].tolist()
    out, cache = model.forward(x, trace=True)
    stats = probes.timestep_stats(model, model.backward(losses.mse(out, y)[1], cache))
    assert stats["dh_last_norm"].tolist() == stats["dh_norm"].tolist()


def test_without_the_forward_cache_dh_last_norm_of_an_every_step_loss_is_nan():
    model, x, y = recurrent("lstm", 1)
    out, cache = model.forward(x, trace=True)
    stats = probes.timestep_stats(model, model.backward(losses.mse(out, y)[1], cache))
    assert np.isnan(stats["dh_last_norm"]).all() and np.isfinite(stats["dh_norm"]).all()


def test_the_last_step_backward_leaves_the_training_gradients_alone():
    model, x, y = recurrent("gru", 2)
    out, cache = model.forward(x, trace=True)
    grads = model.backward(losses.mse(out, y)[1], cache, input_grad=False)
    before = {k: v.copy() for k, v in grads.params.items()}
    dh = [layer.dh.copy() for layer in grads.trace.layers]
    rec = probes.Recorder(model, every=1)
    rec.record_backward(0, grads, dout=losses.mse(out, y)[1], output=out, cache=cache)
    assert all(np.array_equal(before[k], grads.params[k]) for k in before)
    assert all(np.array_equal(a, layer.dh) for a, layer in zip(dh, grads.trace.layers))


@pytest.mark.torch
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_stacked_cells_have_one_layers_row_per_cell_layer_then_the_readout(kind):
    torch = pytest.importorskip("torch")
    model, x, y = recurrent(kind, 2)
    tables, grads = record(model, x, y)
    lay = tables["layers"]
    assert lay["layer"].tolist() == [0, 1, 2]
    g = grads.params
    for j in range(2):
        names = [layer_name(n, j) for n in ("weight_ih", "weight_hh")]
        biases = [layer_name(n, j) for n in model.biases]
        close(lay["weight_grad_norm"][j], np.sqrt(sum((g[n] ** 2).sum() for n in names)), rtol=1e-14)
        close(lay["bias_grad_norm"][j], np.sqrt(sum((g[n] ** 2).sum() for n in biases)), rtol=1e-14)
        cell = grads.trace.layers[j]
        close(lay["delta_norm"][j], norm_mean(np.asarray(cell.dz)), rtol=1e-14)
        close(lay["act_mean"][j], np.asarray(cell.h).mean(), rtol=1e-12)
    hs, ys = torch_unroll(torch, model, x)
    N, T, _ = x.shape
    (0.5 * ((ys - torch.tensor(y)) ** 2).sum() / (N * T)).backward()
    for j in range(2):
        dh = np.stack([h.grad.numpy() for h in hs[j]], axis=1)  # (N, T, H): over every step together
        close(lay["da_norm"][j], norm_mean(dh), name=f"da_norm of cell layer {j}")
    _, dout = losses.mse(model.forward(x)[0], y)
    close(lay["da_norm"][2], norm_mean(dout), rtol=1e-14)
    close(lay["delta_norm"][2], norm_mean(dout), rtol=1e-14)
    assert lay["saturated_frac"][2] == 0.0


def test_stacked_dead_units_are_judged_per_cell_layer():
    """A ReLU RNN whose second layer is held off by a bias of -100: layer 1 all dead, layer 0 alive."""
    rng = np.random.default_rng(0)
    model = RNN(2, 3, 1, "relu", layers=2, rng=rng)
    model.params["bias"][...] = 1.0
    model.params["bias_l1"][...] = -100.0
    masks, _ = probes.dead_masks(model, rng.normal(size=(8, 4, 2)))
    assert [m.tolist() for m in masks[:2]] == [[False] * 3, [True] * 3] and len(masks) == 3


# ----------------------------------------------------------------------------------------- the GRU's gates


def test_gru_saturated_frac_counts_its_gates_each_against_its_own_maximum():
    """sigmoid' = s (1 - s) below 1% of 1/4 for r and z, tanh' = 1 - n^2 below 1% of 1 for n, counted from
    the gate values of every layer, example and step."""
    rng = np.random.default_rng(5)
    model = GRU(3, 4, 1, layers=2, rng=rng)
    for name, value in model.params.items():
        value[...] = rng.normal(scale=4.0, size=value.shape)  # large weights: many gates saturate, not all
    out, cache = model.forward(rng.normal(size=(6, 7, 3)), trace=True)
    grads = model.backward(np.ones_like(out), cache)
    s = probes.layer_stats(model, grads)
    H = 4
    for j, cell in enumerate(grads.trace.layers):
        gates = np.asarray(cell.gates)
        r, z, n = gates[..., :H], gates[..., H : 2 * H], gates[..., 2 * H :]
        count = int((r * (1 - r) < 0.0025).sum() + (z * (1 - z) < 0.0025).sum() + (1 - n * n < 0.01).sum())
        assert 0 < count < gates.size
        assert s["saturated_frac"][j] == count / gates.size, j


def test_gru_saturated_gates_by_hand():
    """r and z driven to sigmoid(+-30) and n to tanh(0): two of the three gate blocks saturated."""
    model = GRU(1, 2, 1, rng=np.random.default_rng(0))
    for name in ("weight_ih", "weight_hh", "bias_hh"):
        model.params[name][...] = 0.0
    model.params["bias_ih"][...] = [30.0, -30.0, 30.0, -30.0, 0.0, 0.0]
    out, cache = model.forward(np.zeros((2, 3, 1)), trace=True)
    assert probes.layer_stats(model, model.backward(np.ones_like(out), cache))["saturated_frac"][0] == pytest.approx(2 / 3)


def gru_step(model, x_t, h_prev):
    H = model.hidden_size
    p = model.params
    xw = x_t @ p["weight_ih"].T + p["bias_ih"]
    hw = h_prev @ p["weight_hh"].T + p["bias_hh"]
    r = 1 / (1 + np.exp(-(xw[:H] + hw[:H])))
    z = 1 / (1 + np.exp(-(xw[H : 2 * H] + hw[H : 2 * H])))
    n = np.tanh(xw[2 * H :] + r * hw[2 * H :])
    return (1 - z) * n + z * h_prev


@pytest.mark.parametrize("method", ["exact", "power"])
def test_gru_jacobian_norm_matches_finite_differences(method):
    rng = np.random.default_rng(2)
    model = GRU(2, 4, 1, rng=rng, init="xavier_normal")
    for name in ("bias_ih", "bias_hh"):
        model.params[name][...] = rng.normal(size=12)
    x = rng.normal(size=(3, 5, 2))
    out, cache = model.forward(x, trace=True)
    grads = model.backward(np.ones_like(out), cache)
    got = probes.timestep_stats(model, grads, jacobian=True, method=method)["jacobian_norm"]
    h = np.concatenate([np.zeros((3, 1, 4)), grads.trace.h], axis=1)  # h_0 .. h_T
    expected = np.zeros(5)
    eps = 1e-6
    for t in range(5):
        for i in range(3):
            J = np.stack([(gru_step(model, x[i, t], h[i, t] + eps * e) - gru_step(model, x[i, t], h[i, t] - eps * e)) / (2 * eps)
                          for e in np.eye(4)], axis=1)  # fmt: skip
            expected[t] += np.linalg.norm(J, 2) / 3
    close(got, expected, rtol=1e-7)


def test_stacked_jacobian_norm_is_each_layers_own_recurrence():
    """Layer 1 of a stacked tanh RNN: J_t = diag(1 - h_t^2) W_hh_l1, from its own states."""
    rng = np.random.default_rng(4)
    model = RNN(2, 3, 1, layers=2, rng=rng)
    out, cache = model.forward(rng.normal(size=(2, 4, 2)), trace=True)
    grads = model.backward(np.ones_like(out), cache)
    jac = probes.timestep_stats(model, grads, jacobian=True)["jacobian_norm"]
    h1 = np.asarray(grads.trace.layers[1].h)
    want = [np.mean([np.linalg.norm((1 - h1[i, t] ** 2)[:, None] * model.params["weight_hh_l1"], 2) for i in range(2)])
            for t in range(4)]  # fmt: skip
    close(jac[4:], want, rtol=1e-12)


# ----------------------------------------------------------------------------------------- residual and normalized MLPs


def torch_mlp(torch, model: MLP, x: np.ndarray, s: float):
    """A tanh residual MLP written out in torch: (output, the layers' outputs a_l with retain_grad)."""
    p = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
    a, outs = torch.tensor(x), []
    for l in range(model.depth):
        z = a @ p[f"layers.{l}.weight"].T + p[f"layers.{l}.bias"]
        if l == model.depth - 1:
            a = z
        else:
            phi = torch.tanh(z)
            a = a + s * phi if model.has_residual(l) else phi
        a.retain_grad()
        outs.append(a)
    return a, outs


@pytest.mark.torch
def test_da_norm_is_the_residual_streams_gradient():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    model = MLP([3, 5, 5, 5, 2], "tanh", residual=True, residual_scale=0.7, rng=rng)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    out, cache = model.forward(x, trace=True)
    grads = model.backward(losses.mse(out, y)[1], cache)
    s = probes.layer_stats(model, grads)
    close(s["da_norm"], [norm_mean(d) for d in grads.trace.da], rtol=1e-14, name="against the trace")
    y_t, outs = torch_mlp(torch, model, x, 0.7)
    (0.5 * ((y_t - torch.tensor(y)) ** 2).sum() / 6).backward()
    close(s["da_norm"], [norm_mean(a.grad.numpy()) for a in outs], name="against autograd")
    assert [model.has_residual(l) for l in range(4)] == [False, True, True, False]
    assert s["da_norm"][1] > s["delta_norm"][1]  # the stream carries more than the branch's dL/dz
    close(s["act_mean"][2], np.asarray(grads.trace.a[2]).mean(), rtol=1e-12)  # a_l: the stream


def test_dead_units_and_saturation_of_a_residual_layer_are_judged_on_phi():
    """A residual ReLU layer whose branch is off for every example (bias -100): its units are dead and
    saturated, though the stream a_l = a_(l-1) + 0 passing through is not 0."""
    rng = np.random.default_rng(0)
    model = MLP([4, 4, 4, 1], "relu", residual=True, rng=rng)
    model.params["layers.1.bias"][...] = -100.0
    x = rng.normal(size=(16, 4)) + 3.0
    masks, _ = probes.dead_masks(model, x)
    assert masks[1].all() and not masks[0].all()
    out, cache = model.forward(x, trace=True)
    grads = model.backward(np.ones_like(out), cache)
    assert np.all(np.asarray(grads.trace.a[1]) != 0)  # the stream is alive
    assert probes.layer_stats(model, grads)["saturated_frac"][1] == 1.0


@pytest.mark.parametrize("norm", ["layer", "batch"])
def test_normalized_mlp_saturation_reads_phi_of_the_normalized_input(norm):
    rng = np.random.default_rng(3)
    model = MLP([3, 6, 6, 1], "tanh", norm=norm, rng=rng)
    model.params["layers.0.norm.weight"][...] = 50.0  # a large gain: the normalized inputs saturate tanh
    x = rng.normal(size=(10, 3))
    out, cache = model.forward(x, trace=True)
    grads = model.backward(np.ones_like(out), cache)
    s = probes.layer_stats(model, grads)
    phi = np.asarray(grads.trace.phi[0])
    assert s["saturated_frac"][0] == np.count_nonzero(1 - phi**2 < 0.01) / phi.size > 0.5
    assert s["saturated_frac"][1] == np.count_nonzero(1 - np.asarray(grads.trace.phi[1]) ** 2 < 0.01) / phi.size


def test_the_probes_leave_batch_norms_running_statistics_alone():
    rng = np.random.default_rng(0)
    model = MLP([3, 5, 5, 1], "relu", norm="batch", rng=rng)
    for name in model.buffers:
        model.buffers[name][...] = rng.normal(size=5) ** 2  # not the initial 0 and 1
    before = {k: v.copy() for k, v in model.buffers.items()}
    probe_x = rng.normal(size=(64, 3)) + 2.0
    rec = probes.Recorder(model, every=1, probe_x=probe_x)
    x = rng.normal(size=(8, 3))
    out, cache = model.forward(x, trace=True, train=False)  # eval mode: the buffers stay as they are
    grads = model.backward(np.ones_like(out), cache)
    rec.record_backward(0, grads, dout=np.ones_like(out), output=out, cache=cache)
    assert all(np.array_equal(before[k], model.buffers[k]) for k in before)
    # the dead-unit forward used the probe set's own batch statistics: a batch-normed ReLU unit is never dead
    assert rec.frames()["layers"]["dead_frac"].tolist()[:2] == [0.0, 0.0]
    with probes.frozen_buffers(model):
        model.forward(probe_x)  # training mode would move them ...
        assert not all(np.array_equal(before[k], model.buffers[k]) for k in before)
    assert all(np.array_equal(before[k], model.buffers[k]) for k in before)  # ... and they are restored


def test_the_recorders_tables_carry_the_new_columns_typed():
    model, x, y = recurrent("gru", 2)
    tables, _ = record(model, x, y)
    for name in ("layers", "timesteps"):
        frame = tables[name]
        assert list(frame.columns) == list(probes.COLUMNS[name])
        assert {c: str(frame[c].dtype) for c in ("layer", *(("da_norm",) if name == "layers" else ("dh_last_norm",)))} == {
            "layer": "int64", **({"da_norm": "float64"} if name == "layers" else {"dh_last_norm": "float64"})
        }  # fmt: skip
    empty = probes.empty_frames()
    assert str(empty["timesteps"]["layer"].dtype) == "int64" and str(empty["layers"]["da_norm"].dtype) == "float64"
