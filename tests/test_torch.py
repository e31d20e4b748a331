"""The engine against PyTorch autograd in float64 (skipped when torch is not installed): the same
weights give the same loss, parameter gradients and per-step dL/dh_t (dL/dc_t) within 1e-10
relative; the optimizers, clipping and losses match torch's equivalents."""

import numpy as np
import pytest
from conftest import ACTIVATIONS, LOSSES, OUTPUTS, assert_rel, make_target

from gradlab.nn import LSTM, MLP, RNN, clip, losses, optim

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
F = torch.nn.functional
TOL = 1e-10  # relative, float64
N, T, D, H, O = 3, 6, 4, 5, 3


def t64(a):
    return (
        torch.as_tensor(np.asarray(a), dtype=torch.float64) if np.asarray(a).dtype.kind == "f" else torch.as_tensor(a)
    )


def torch_loss(name, out, y):
    """Our reductions (sum over the last axis, mean over the others) from torch's own losses."""
    M = out.numel() // out.shape[-1]
    if name == "mse":
        return 0.5 * F.mse_loss(out, y, reduction="sum") / M
    if name == "sum_squares":
        return F.mse_loss(out, y, reduction="sum") / M
    if name == "cross_entropy":
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1), reduction="mean")
    if name == "bce":
        return F.binary_cross_entropy_with_logits(out, y, reduction="sum") / M
    raise AssertionError(name)


def torch_act(name, slope=0.01):
    return {"identity": torch.nn.Identity(), "sigmoid": torch.nn.Sigmoid(), "tanh": torch.nn.Tanh(),
            "relu": torch.nn.ReLU(), "leaky_relu": torch.nn.LeakyReLU(slope)}[name]  # fmt: skip


def target(loss_name, shape, seed=3):
    return make_target(loss_name, shape, np.random.default_rng(seed))


# ---------------------------------------------------------------- losses


@pytest.mark.parametrize("shape", [(4, 3), (2, 5, 3), (1, 1)])
@pytest.mark.parametrize("loss_name", LOSSES)
def test_losses_match_torch(loss_name, shape):
    rng = np.random.default_rng(0)
    a = rng.normal(size=shape) * 3
    y = target(loss_name, shape)
    value, grad = losses.get(loss_name)(a, y)
    at = t64(a).requires_grad_()
    ref = torch_loss(loss_name, at, t64(y))
    ref.backward()
    assert value == pytest.approx(ref.item(), rel=TOL), f"{loss_name} {shape}: loss {value!r} vs torch {ref.item()!r}"
    assert_rel(grad, at.grad.numpy(), TOL, f"{loss_name} {shape} dL/da")


# ---------------------------------------------------------------- MLP


@pytest.mark.parametrize("loss_name", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("depth", [1, 2, 4])
def test_mlp_matches_torch_linear_stack(depth, activation, loss_name):
    torch.manual_seed(depth)
    widths = [D] + [H] * (depth - 1) + [O]
    layers = []
    for l in range(depth):
        layers.append(torch.nn.Linear(widths[l], widths[l + 1], dtype=torch.float64))
        layers.append(torch_act(activation if l < depth - 1 else "sigmoid", 0.2))
    net = torch.nn.Sequential(*layers)
    model = MLP(widths, activation, "sigmoid", slope=0.2)
    model.load_torch(net.state_dict())
    rng = np.random.default_rng(depth)
    x, y = rng.normal(size=(N, D)), target(loss_name, (N, O))
    xt = t64(x).requires_grad_()
    ref = torch_loss(loss_name, net(xt), t64(y))
    ref.backward()
    out, cache = model.forward(x, trace=True)
    value, dout = losses.get(loss_name)(out, y)
    grads = model.backward(dout, cache)
    label = f"mlp depth={depth} {activation} {loss_name}"
    assert value == pytest.approx(ref.item(), rel=TOL), f"{label}: loss {value!r} vs torch {ref.item()!r}"
    linear = [m for m in net if isinstance(m, torch.nn.Linear)]
    for l, lin in enumerate(linear):
        assert_rel(grads.params[f"layers.{l}.weight"], lin.weight.grad.numpy(), TOL, f"{label} layers.{l}.weight")
        assert_rel(grads.params[f"layers.{l}.bias"], lin.bias.grad.numpy(), TOL, f"{label} layers.{l}.bias")
    assert_rel(grads.dx, xt.grad.numpy(), TOL, f"{label} dx")


# ---------------------------------------------------------------- RNN and LSTM


def cuts(T, k):
    """Steps t (0-based) whose input state is held constant by BPTT(k): counting back from the last
    step, every k-th step boundary, i.e. T - t a multiple of k."""
    return set() if k is None else {t for t in range(T) if (T - t) % k == 0}


def torch_cell_loop(kind, activation, rnn, readout, x, h0, c0, output, truncate):
    """Per-step loop with the fused module's own parameters (nn.RNNCell / nn.LSTMCell share them;
    activations nn.RNN lacks are written out), retaining every h_t (and c_t)."""
    cut = cuts(x.shape[1], truncate)
    if kind == "lstm":
        cell = torch.nn.LSTMCell(D, H, dtype=torch.float64)
    elif activation in ("tanh", "relu"):
        cell = torch.nn.RNNCell(D, H, nonlinearity=activation, dtype=torch.float64)
    else:
        cell = None
    if cell is not None:
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            setattr(cell, name, getattr(rnn, name + "_l0"))
    act = torch_act(activation, 0.01)
    h, c, hs, cs, outs = h0, c0, [], [], []
    for t in range(x.shape[1]):
        h_in, c_in = (h.detach(), c.detach() if c is not None else None) if t in cut else (h, c)
        if kind == "lstm":
            h, c = cell(x[:, t], (h_in, c_in))
            c.retain_grad()
            cs.append(c)
        elif cell is not None:
            h = cell(x[:, t], h_in)
        else:
            h = act(x[:, t] @ rnn.weight_ih_l0.T + rnn.bias_ih_l0 + h_in @ rnn.weight_hh_l0.T + rnn.bias_hh_l0)
        h.retain_grad()
        hs.append(h)
        outs.append(readout(h))
    out = outs[-1] if output == "last" else torch.stack(outs, dim=1)
    return out, hs, cs


def setup_sequence(kind, activation, seed):
    torch.manual_seed(seed)
    if kind == "lstm":
        rnn = torch.nn.LSTM(D, H, batch_first=True, dtype=torch.float64)
    else:
        nl = activation if activation in ("tanh", "relu") else "tanh"  # others: weights only, loop above
        rnn = torch.nn.RNN(D, H, nonlinearity=nl, batch_first=True, dtype=torch.float64)
    readout = torch.nn.Linear(H, O, dtype=torch.float64)
    return rnn, readout


def engine_sequence(kind, activation, rnn, readout, output, truncate):
    if kind == "lstm":
        model = LSTM(D, H, O, output=output, truncate=truncate)
    else:
        model = RNN(D, H, O, activation, output=output, truncate=truncate)
    model.load_torch(rnn.state_dict(), readout.state_dict())
    return model


def compare_params(model, rnn, readout, grads, label):
    assert_rel(grads.params["weight_ih"], rnn.weight_ih_l0.grad.numpy(), TOL, f"{label} weight_ih")
    assert_rel(grads.params["weight_hh"], rnn.weight_hh_l0.grad.numpy(), TOL, f"{label} weight_hh")
    # torch's two biases enter the same sum, so each one's gradient is our single bias gradient
    assert_rel(grads.params["bias"], rnn.bias_ih_l0.grad.numpy(), TOL, f"{label} bias vs bias_ih")
    assert_rel(grads.params["bias"], rnn.bias_hh_l0.grad.numpy(), TOL, f"{label} bias vs bias_hh")
    assert_rel(grads.params["readout.weight"], readout.weight.grad.numpy(), TOL, f"{label} readout.weight")
    assert_rel(grads.params["readout.bias"], readout.bias.grad.numpy(), TOL, f"{label} readout.bias")


def engine_matches_torch_loss_and_params(model, rnn, readout, data, loss_name, ref, label):
    """The engine's forward (with trace), loss and backward on data = (x, h0, c0, y); its loss and
    parameter gradients against torch's (ref: torch's loss, already backpropagated). -> (grads, dL/dy)."""
    x, h0, c0, y = data
    kw = {"c0": c0} if isinstance(model, LSTM) else {}
    out, cache = model.forward(x, h0=h0, trace=True, **kw)
    value, dout = losses.get(loss_name)(out, y)
    grads = model.backward(dout, cache)
    assert value == pytest.approx(ref.item(), rel=TOL), f"{label}: loss {value!r} vs torch {ref.item()!r}"
    compare_params(model, rnn, readout, grads, label)
    return grads, dout


SEQ = [("rnn", a) for a in ACTIVATIONS] + [("lstm", None)]


@pytest.mark.parametrize("loss_name", LOSSES)
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("kind,activation", [("rnn", "tanh"), ("rnn", "relu"), ("lstm", None)])
def test_sequence_matches_fused_torch_module(kind, activation, output, loss_name):
    """Full BPTT against the fused nn.RNN / nn.LSTM (+ nn.Linear readout): loss, parameter
    gradients, dx, dh0 (dc0). nn.RNN has tanh and relu only; the other activations are covered by
    the cell-loop test below."""
    rnn, readout = setup_sequence(kind, activation, seed=1)
    model = engine_sequence(kind, activation, rnn, readout, output, None)
    rng = np.random.default_rng(2)
    x, h0, c0 = rng.normal(size=(N, T, D)), rng.normal(size=(N, H)) * 0.5, rng.normal(size=(N, H)) * 0.5
    y = target(loss_name, (N, O) if output == "last" else (N, T, O))
    xt, h0t, c0t = (t64(a).requires_grad_() for a in (x, h0, c0))
    state = (h0t[None], c0t[None]) if kind == "lstm" else h0t[None]
    seq, _ = rnn(xt, state)
    seq.retain_grad()
    ref = torch_loss(loss_name, readout(seq[:, -1] if output == "last" else seq), t64(y))
    ref.backward()
    label = f"{kind} {activation or ''} output={output} {loss_name}"
    grads, dout = engine_matches_torch_loss_and_params(model, rnn, readout, (x, h0, c0, y), loss_name, ref, label)
    assert_rel(grads.dx, xt.grad.numpy(), TOL, f"{label} dx")
    assert_rel(grads.dh0, h0t.grad.numpy(), TOL, f"{label} dh0")
    if kind == "lstm":
        assert_rel(grads.dc0, c0t.grad.numpy(), TOL, f"{label} dc0")
    # the fused output's .grad is only the readout's share of dL/dh_t, W_out^T dL/dy_t; at the last
    # step nothing flows back from later steps, so there it is the total dL/dh_T
    W_out = model.params["readout.weight"]
    if output == "all":
        assert_rel(seq.grad.numpy(), dout @ W_out, TOL, f"{label} fused output grad = readout share")
    assert_rel(grads.trace.dh[:, -1], seq.grad[:, -1].numpy(), TOL, f"{label} dL/dh_T vs fused output grad")


@pytest.mark.parametrize("truncate", [None, 2, 3], ids=lambda k: f"tbptt{k}" if k else "full")
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("kind,activation", SEQ)
def test_sequence_matches_torch_cell_loop(kind, activation, output, truncate):
    """Per-step total dL/dh_t (and dL/dc_t) against a torch cell loop with retain_grad on each h_t;
    truncated BPTT as detach() at the cuts."""
    activation = activation or "tanh"
    loss_name = "mse"
    rnn, readout = setup_sequence(kind, activation, seed=4)
    model = engine_sequence(kind, activation, rnn, readout, output, truncate)
    rng = np.random.default_rng(5)
    x, h0, c0 = rng.normal(size=(N, T, D)), rng.normal(size=(N, H)) * 0.5, rng.normal(size=(N, H)) * 0.5
    y = target(loss_name, (N, O) if output == "last" else (N, T, O))
    out_t, hs, cs = torch_cell_loop(kind, activation, rnn, readout, t64(x), t64(h0), t64(c0), output, truncate)
    ref = torch_loss(loss_name, out_t, t64(y))
    ref.backward()
    label = f"{kind} {activation} output={output} truncate={truncate}"
    grads, _ = engine_matches_torch_loss_and_params(model, rnn, readout, (x, h0, c0, y), loss_name, ref, label)
    for t in range(T):
        want = hs[t].grad.numpy() if hs[t].grad is not None else np.zeros((N, H))
        assert_rel(grads.trace.dh[:, t], want, TOL, f"{label} dL/dh_t at t={t + 1}")
        assert_rel(grads.trace.h[:, t], hs[t].detach().numpy(), TOL, f"{label} h_t at t={t + 1}")
        if kind == "lstm":
            want_c = cs[t].grad.numpy() if cs[t].grad is not None else np.zeros((N, H))
            assert_rel(grads.trace.dc[:, t], want_c, TOL, f"{label} dL/dc_t at t={t + 1}")
            assert_rel(grads.trace.c[:, t], cs[t].detach().numpy(), TOL, f"{label} c_t at t={t + 1}")


def test_lstm_trace_gates_match_torch_gate_order():
    """trace.gates holds (i, f, g, o) in PyTorch's order: recomputed from torch's weights."""
    rnn, readout = setup_sequence("lstm", None, seed=6)
    model = engine_sequence("lstm", None, rnn, readout, "all", None)
    x = np.random.default_rng(7).normal(size=(N, T, D))
    out, cache = model.forward(x, trace=True)
    grads = model.backward(np.ones_like(out), cache)
    W_ih, W_hh = rnn.weight_ih_l0.detach().numpy(), rnn.weight_hh_l0.detach().numpy()
    b = (rnn.bias_ih_l0 + rnn.bias_hh_l0).detach().numpy()
    h_prev = np.zeros((N, H))
    for t in range(T):
        z = x[:, t] @ W_ih.T + h_prev @ W_hh.T + b
        sig = 1 / (1 + np.exp(-z))
        want = np.concatenate([sig[:, :H], sig[:, H : 2 * H], np.tanh(z[:, 2 * H : 3 * H]), sig[:, 3 * H :]], axis=1)
        assert_rel(grads.trace.gates[:, t], want, 1e-12, f"gates at t={t + 1}")
        h_prev = grads.trace.h[:, t]


# ---------------------------------------------------------------- optimizers and clipping


def random_params(seed):
    rng = np.random.default_rng(seed)
    return {"w": rng.normal(size=(4, 3)), "b": rng.normal(size=(4,))}


OPTIMIZERS = [
    ("sgd", {"lr": 0.1}),
    ("momentum", {"lr": 0.05, "momentum": 0.9}),
    ("adam", {"lr": 0.01}),
    ("adam", {"lr": 0.3, "betas": (0.5, 0.9), "eps": 1e-3}),
]


@pytest.mark.parametrize("name,kwargs", OPTIMIZERS)
def test_optimizer_steps_match_torch_optim(name, kwargs):
    params = random_params(0)
    tparams = {k: t64(v.copy()).requires_grad_() for k, v in params.items()}
    if name == "adam":
        ours, theirs = optim.Adam(params, **kwargs), torch.optim.Adam(list(tparams.values()), **kwargs)
    else:
        ours, theirs = optim.SGD(params, **kwargs), torch.optim.SGD(list(tparams.values()), **kwargs)
    rng = np.random.default_rng(1)
    for step in range(6):
        grads = {k: rng.normal(size=v.shape) for k, v in params.items()}
        for k, p in tparams.items():
            p.grad = t64(grads[k].copy())
        ours.step(grads)
        theirs.step()
        for k in params:
            assert_rel(params[k], tparams[k].detach().numpy(), 1e-12, f"{name} {kwargs} step {step + 1} {k}")


def test_optim_get_builds_the_named_optimizer():
    params = random_params(0)
    tparams = {k: t64(v.copy()).requires_grad_() for k, v in params.items()}
    ours = optim.get("momentum", params, lr=0.1, momentum=0.5)
    theirs = torch.optim.SGD(list(tparams.values()), lr=0.1, momentum=0.5)
    for step in range(3):
        grads = {k: np.full(v.shape, step + 1.0) for k, v in params.items()}
        for k, p in tparams.items():
            p.grad = t64(grads[k].copy())
        ours.step(grads)
        theirs.step()
    for k in params:
        assert_rel(params[k], tparams[k].detach().numpy(), 1e-12, f"optim.get momentum {k}")


@pytest.mark.parametrize("max_norm", [0.1, 1.0, 100.0])
def test_clip_norm_matches_clip_grad_norm(max_norm):
    grads = {k: v * 3 for k, v in random_params(2).items()}  # norm about 12
    tparams = [t64(np.zeros_like(v)).requires_grad_() for v in grads.values()]
    for p, g in zip(tparams, grads.values()):
        p.grad = t64(g.copy())
    before, after = clip.clip_norm(grads, max_norm)
    total = torch.nn.utils.clip_grad_norm_(tparams, max_norm)
    assert before == pytest.approx(total.item(), rel=1e-12), (
        f"max_norm={max_norm}: norm {before!r} vs torch {total.item()!r}"
    )
    # torch scales by max_norm / (norm + 1e-6), we by max_norm / norm: they agree to 1e-6 / norm relative
    tol = 1.01e-6 / before + 1e-13
    for (name, g), p in zip(grads.items(), tparams):
        assert_rel(g, p.grad.numpy(), tol, f"max_norm={max_norm} clipped {name}")
    assert after == pytest.approx(min(before, max_norm), rel=1e-12)


@pytest.mark.parametrize("max_value", [0.05, 0.5, 10.0])
def test_clip_value_matches_clip_grad_value(max_value):
    grads = random_params(3)
    tparams = [t64(np.zeros_like(v)).requires_grad_() for v in grads.values()]
    for p, g in zip(tparams, grads.values()):
        p.grad = t64(g.copy())
    clip.clip_value(grads, max_value)
    torch.nn.utils.clip_grad_value_(tparams, max_value)
    for (name, g), p in zip(grads.items(), tparams):
        assert np.array_equal(g, p.grad.numpy()), f"max_value={max_value} {name}: {g} vs torch {p.grad.numpy()}"
