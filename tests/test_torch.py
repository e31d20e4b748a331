"""The engine against PyTorch autograd in float64 (skipped when torch is not installed).

The same weights give the same loss, every parameter gradient (mapped to torch's names by
torch_state(grads.params)), dL/dx, dL/dh0 (dL/dc0) and, from a torch cell loop with retain_grad on
every h_t (c_t), the per-step dL/dh_t (dL/dc_t) of every layer, within 1e-10 relative: nn.RNN (every
activation by a written-out cell), nn.LSTM and nn.GRU with num_layers 1-3, full and truncated BPTT;
nn.Sequential MLPs of Linear layers with LayerNorm or BatchNorm1d (training mode, its running
statistics, then eval mode); a residual MLP written as a small torch module; members of an ensemble
of R = 3 loaded from three torch modules. The optimizers, clipping and losses match torch's own.

The helpers live here, not in conftest.py, so this file stands on its own.
"""

import numpy as np
import pytest

from gradlab.nn import GRU, LSTM, MLP, RNN, activations, clip, losses, optim
from gradlab.nn.sequence import OUTPUTS

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
F = torch.nn.functional
TOL = 1e-10  # relative, float64
N, T, D, H, O = 3, 6, 4, 5, 3
ACTIVATIONS = activations.NAMES  # identity, sigmoid, tanh, relu, leaky_relu
LOSSES = losses.NAMES  # mse, sum_squares, cross_entropy, bce
MODELS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
FUSED = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


# ---------------------------------------------------------------- helpers


def assert_rel(ours, theirs, name, tol=TOL):
    """Norm-wise relative error ||ours - torch|| / max(||ours||, ||torch||) below tol (0 when both are 0);
    on failure the message names the quantity, the worst index and both values there."""
    if isinstance(theirs, torch.Tensor):
        theirs = theirs.detach().numpy()
    a, e = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    assert a.shape == e.shape, f"{name}: shape {a.shape}, torch's {e.shape}"
    diff = np.abs(a - e)
    diff = np.where(np.isnan(diff), np.inf, diff)
    scale = max(float(np.linalg.norm(a)), float(np.linalg.norm(e)))
    finite = bool(np.all(np.isfinite(a)) and np.all(np.isfinite(e)))
    err = (float(np.linalg.norm(a - e)) / scale if scale > 0 else 0.0) if finite else np.inf
    if err < tol or (finite and scale == 0):
        return
    idx = np.unravel_index(int(np.argmax(diff)), diff.shape) if a.ndim else ()
    where = f"index {tuple(int(i) for i in idx)}" if a.ndim else "scalar"
    raise AssertionError(
        f"{name}: relative error {err:.3g} >= {tol:g}; "
        f"worst at {where}: ours {float(a[idx])!r}, torch {float(e[idx])!r}"
    )


def assert_state(ours, theirs, label, tol=TOL, zero=()):
    """Two state dicts (arrays / tensors by torch's names): the same keys, every value close. The keys in
    `zero` are gradients that are 0 in exact arithmetic (a Linear bias before batch norm, which subtracts
    it again): both sides are rounding noise there, so both must be tiny next to the largest gradient."""
    assert sorted(ours) == sorted(theirs), f"{label}: keys {sorted(ours)} vs torch's {sorted(theirs)}"
    scale = max(float(np.linalg.norm(np.asarray(v, dtype=np.float64))) for v in ours.values()) if ours else 0.0
    for key in theirs:
        if key in zero:
            for side, v in (("ours", ours[key]), ("torch", theirs[key])):
                size = float(np.linalg.norm(np.asarray(v, dtype=np.float64)))
                assert size <= 1e-13 * max(scale, 1.0), f"{label} {key}: {side} {size:.3g}, should be 0 up to rounding"
        else:
            assert_rel(ours[key], theirs[key], f"{label} {key}", tol)


def before_batch_norm(sequential):
    """The bias keys whose gradients are exactly 0 in theory: a bias that only affine modules (Linear,
    Identity) separate from a BatchNorm1d in training mode shifts every example alike, which the batch
    norm subtracts again (the Linear bias right before it; with the identity activation, also the
    previous norm's bias)."""
    modules, zero = list(sequential), set()
    for i, m in enumerate(modules):
        if getattr(m, "bias", None) is None:
            continue
        after = modules[i + 1 :]
        while after and isinstance(after[0], (torch.nn.Linear, torch.nn.Identity)):
            after = after[1:]
        if after and isinstance(after[0], torch.nn.BatchNorm1d):
            zero.add(f"{i}.bias")
    return zero


def params_of(module):
    """A module's parameters, by name."""
    return dict(module.named_parameters())


def grads_of(module):
    """torch's .grad of every parameter of module, by name (zeros for a parameter no loss reached)."""
    return {n: (p.grad if p.grad is not None else torch.zeros_like(p)) for n, p in module.named_parameters()}


def buffers_of(module):
    """The running statistics of a module's state dict (num_batches_tracked left out: the engine has none)."""
    return {k: v for k, v in module.state_dict().items() if k.endswith(("running_mean", "running_var"))}


def grad_or_zeros(tensor):
    """tensor.grad, or zeros where no loss reached the tensor (beyond a truncation cut)."""
    return tensor.grad if tensor.grad is not None else torch.zeros_like(tensor)


def t64(a):
    a = np.asarray(a)
    return torch.as_tensor(a, dtype=torch.float64) if a.dtype.kind == "f" else torch.as_tensor(a)


def make_target(loss_name, shape, seed=3):
    """Integer labels (the shape without its last axis) for cross_entropy, probabilities for bce,
    Gaussian values otherwise."""
    rng = np.random.default_rng(seed)
    if loss_name == "cross_entropy":
        return rng.integers(0, shape[-1], size=shape[:-1])
    if loss_name == "bce":
        return rng.uniform(size=shape)
    return rng.normal(size=shape)


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


def torch_act(name, slope=activations.DEFAULT_SLOPE):
    return {"identity": torch.nn.Identity(), "sigmoid": torch.nn.Sigmoid(), "tanh": torch.nn.Tanh(),
            "relu": torch.nn.ReLU(), "leaky_relu": torch.nn.LeakyReLU(slope)}[name]  # fmt: skip


def perturb_(module, seed, scale=0.3):
    """Add noise to every parameter (and set random running statistics) in place, so that no gain is 1,
    no bias 0 and no running statistic at its default: a mapping that mixes them up shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g, dtype=b.dtype))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g, dtype=b.dtype))
    return module


def test_assert_rel_names_the_quantity_the_worst_index_and_both_values():
    a = np.zeros((2, 3))
    e = a.copy()
    e[1, 2] = 1e-3
    assert_rel(a, a, "same")
    assert_rel(np.zeros(3), torch.zeros(3), "both zero")
    message = r"layers\.0\.weight: relative error 1 >= 1e-10; worst at index \(1, 2\): ours 0\.0, torch 0\.001"
    with pytest.raises(AssertionError, match=message):
        assert_rel(a, e, "layers.0.weight")
    with pytest.raises(AssertionError, match="shape"):
        assert_rel(a, e[0], "x")
    with pytest.raises(AssertionError, match="nan"):
        assert_rel(np.array([np.nan, 1.0]), np.array([1.0, 1.0]), "nan")


# ---------------------------------------------------------------- losses


@pytest.mark.parametrize("shape", [(4, 3), (2, 5, 3), (1, 1)])
@pytest.mark.parametrize("loss_name", LOSSES)
def test_losses_match_torch(loss_name, shape):
    rng = np.random.default_rng(0)
    a = rng.normal(size=shape) * 3
    y = make_target(loss_name, shape)
    value, grad = losses.get(loss_name)(a, y)
    at = t64(a).requires_grad_()
    ref = torch_loss(loss_name, at, t64(y))
    ref.backward()
    assert_rel(value, ref, f"{loss_name} {shape} loss")
    assert_rel(grad, at.grad, f"{loss_name} {shape} dL/da")


@pytest.mark.parametrize("loss_name", LOSSES)
def test_ensemble_losses_are_each_members_torch_loss(loss_name):
    """lead=1: one loss per member, each member's own mean; a target without the member axis is shared."""
    rng = np.random.default_rng(1)
    a = rng.normal(size=(3, 4, 2)) * 2
    for shared in (False, True):
        y = make_target(loss_name, (4, 2) if shared else (3, 4, 2))
        values, grad = losses.get(loss_name)(a, y, lead=1)
        assert np.shape(values) == (3,)
        for r in range(3):
            at = t64(a[r]).requires_grad_()
            ref = torch_loss(loss_name, at, t64(y if shared else y[r]))
            ref.backward()
            assert_rel(values[r], ref, f"{loss_name} member {r} loss (target {y.shape})")
            assert_rel(grad[r], at.grad, f"{loss_name} member {r} dL/da (target {y.shape})")


# ---------------------------------------------------------------- MLP


def torch_sequential(widths, activation, output_activation="identity", norm=None, slope=activations.DEFAULT_SLOPE):
    """Linear, [LayerNorm / BatchNorm1d], activation per hidden layer, then Linear and the output
    activation: the layout MLP.load_torch reads and MLP.torch_state writes."""
    modules = []
    for l in range(len(widths) - 1):
        modules.append(torch.nn.Linear(widths[l], widths[l + 1], dtype=torch.float64))
        hidden = l < len(widths) - 2
        if hidden and norm == "layer":
            modules.append(torch.nn.LayerNorm(widths[l + 1], dtype=torch.float64))
        elif hidden and norm == "batch":
            modules.append(torch.nn.BatchNorm1d(widths[l + 1], dtype=torch.float64))
        modules.append(torch_act(activation if hidden else output_activation, slope))
    return torch.nn.Sequential(*modules)


def mlp_step(model, x, y, loss_name, lead=0):
    """The engine's forward (with trace), loss and backward: (loss, grads, output)."""
    out, cache = model.forward(x, trace=True)
    value, dout = losses.get(loss_name)(out, y, lead=lead)
    return value, model.backward(dout, cache), out


@pytest.mark.parametrize("loss_name", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("depth", [1, 2, 4])
def test_mlp_matches_torch_linear_stack(depth, activation, loss_name):
    torch.manual_seed(depth)
    widths = [D] + [H] * (depth - 1) + [O]
    net = torch_sequential(widths, activation, "sigmoid", slope=0.2)
    model = MLP(widths, activation, "sigmoid", slope=0.2)
    model.load_torch(net.state_dict())
    rng = np.random.default_rng(depth)
    x, y = rng.normal(size=(N, D)), make_target(loss_name, (N, O))
    xt = t64(x).requires_grad_()
    ref = torch_loss(loss_name, net(xt), t64(y))
    ref.backward()
    value, grads, _ = mlp_step(model, x, y, loss_name)
    label = f"mlp depth={depth} {activation} {loss_name}"
    assert_rel(value, ref, f"{label} loss")
    assert_state(model.torch_state(grads.params), grads_of(net), label)
    assert_rel(grads.dx, xt.grad, f"{label} dx")


@pytest.mark.parametrize("loss_name", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("norm", ["layer", "batch"])
def test_mlp_with_norm_matches_torch_sequential(norm, activation, loss_name):
    """nn.Sequential of Linear, LayerNorm / BatchNorm1d (training mode: batch statistics, backpropagated
    through), activation: loss, every parameter gradient (gains and biases of the norms too), dx, and
    batch norm's running statistics after the forward."""
    torch.manual_seed(11)
    widths = [D, H, H + 1, O]
    net = perturb_(torch_sequential(widths, activation, norm=norm), seed=12)
    model = MLP(widths, activation, norm=norm)
    model.load_torch(net.state_dict())
    assert_state(model.torch_state(), {**params_of(net), **buffers_of(net)}, "loaded")  # the weights themselves
    rng = np.random.default_rng(13)
    x, y = rng.normal(size=(6, D)) * 2 + 0.5, make_target(loss_name, (6, O))
    xt = t64(x).requires_grad_()
    net.train()
    ref = torch_loss(loss_name, net(xt), t64(y))
    ref.backward()
    value, grads, _ = mlp_step(model, x, y, loss_name)
    label = f"mlp norm={norm} {activation} {loss_name}"
    assert_rel(value, ref, f"{label} loss")
    assert_state(model.torch_state(grads.params), grads_of(net), f"{label} grad", zero=before_batch_norm(net))
    assert_rel(grads.dx, xt.grad, f"{label} dx")
    if norm == "batch":
        state = model.torch_state()
        assert_state({k: state[k] for k in buffers_of(net)}, buffers_of(net), f"{label} after the forward")


@pytest.mark.parametrize("activation", ["tanh", "relu", "leaky_relu"])
@pytest.mark.parametrize("norm", ["layer", "batch"])
def test_mlp_with_norm_eval_mode_matches_torch(norm, activation):
    """After two training forwards (running statistics moved twice), net.eval()'s output equals
    forward(x, train=False), which uses the running statistics and leaves them alone."""
    torch.manual_seed(14)
    widths = [D, H, H, O]
    net = perturb_(torch_sequential(widths, activation, "sigmoid", norm=norm), seed=15)
    model = MLP(widths, activation, "sigmoid", norm=norm)
    model.load_torch(net.state_dict())
    rng = np.random.default_rng(16)
    net.train()
    with torch.no_grad():
        for _ in range(2):
            xb = rng.normal(size=(5, D)) * 3 - 1
            model.forward(xb)
            net(t64(xb))
    before = {k: v.copy() for k, v in model.buffers.items()}
    x = rng.normal(size=(4, D))
    out, _ = model.forward(x, train=False)
    net.eval()
    with torch.no_grad():
        ref = net(t64(x))
    assert_rel(out, ref, f"norm={norm} {activation} eval output")
    state = model.torch_state()
    label = f"norm={norm} {activation} running statistics"
    assert_state({k: state[k] for k in buffers_of(net)}, buffers_of(net), label)
    for k, v in before.items():
        assert np.array_equal(model.buffers[k], v), f"forward(train=False) changed {k}"


class ResidualMLP(torch.nn.Module):
    """a_l = a_(l-1) + s act(norm(linear(a_(l-1)))) for hidden layers whose input and output widths are
    equal, a_l = act(norm(linear(a_(l-1)))) for the others, then the output Linear; `self.net` is the
    nn.Sequential whose state dict MLP.load_torch reads. z_l (the Linear outputs) and a_l are kept,
    with retain_grad, for the trace."""

    def __init__(self, widths, activation, norm, scale):
        super().__init__()
        self.widths, self.scale, self.norm = widths, scale, norm
        self.net = torch_sequential(widths, activation, norm=norm)
        self.step = 3 if norm else 2  # modules per hidden layer

    def forward(self, x):
        self.z, self.a = [], []
        a, k, L = x, 0, len(self.widths) - 1
        for l in range(L):
            z = self.net[k](a)
            u = self.net[k + 1](z) if self.norm and l < L - 1 else z
            f = self.net[k + self.step - 1](u) if l < L - 1 else self.net[k + 1](u)
            a = a + self.scale * f if l < L - 1 and self.widths[l] == self.widths[l + 1] else f
            for v in (z, a):
                v.retain_grad()
            self.z.append(z)
            self.a.append(a)
            k += self.step
        return a


@pytest.mark.parametrize("loss_name", ["mse", "cross_entropy"])
@pytest.mark.parametrize("widths", [[D, H, H, H + 1, H + 1, O], [H, H, H, O]], ids=["D!=H", "D=H"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("scale", [0.5, 1.0])
@pytest.mark.parametrize("norm", [None, "layer", "batch"])
def test_residual_mlp_matches_torch_module(norm, scale, activation, widths, loss_name):
    """residual=True against a small torch module: loss, every parameter gradient, dx, and the trace
    (z_l, a_l, delta_l = dL/dz_l, the stream's dL/da_l) against retain_grad on the module's z_l, a_l."""
    torch.manual_seed(17)
    net = perturb_(ResidualMLP(widths, activation, norm, scale), seed=18)
    model = MLP(widths, activation, norm=norm, residual=True, residual_scale=scale)
    model.load_torch(net.net.state_dict())
    assert [model.has_residual(l) for l in range(model.depth)] == [
        l < len(widths) - 2 and widths[l] == widths[l + 1] for l in range(len(widths) - 1)
    ]
    rng = np.random.default_rng(19)
    x, y = rng.normal(size=(5, widths[0])), make_target(loss_name, (5, O))
    xt = t64(x).requires_grad_()
    ref = torch_loss(loss_name, net(xt), t64(y))
    ref.backward()
    value, grads, _ = mlp_step(model, x, y, loss_name)
    label = f"residual s={scale} norm={norm} {activation} {widths} {loss_name}"
    assert_rel(value, ref, f"{label} loss")
    assert_state(model.torch_state(grads.params), grads_of(net.net), f"{label} grad", zero=before_batch_norm(net.net))
    assert_rel(grads.dx, xt.grad, f"{label} dx")
    for l in range(model.depth):
        assert_rel(grads.trace.z[l], net.z[l], f"{label} trace.z[{l}]")
        assert_rel(grads.trace.a[l], net.a[l], f"{label} trace.a[{l}]")
        assert_rel(grads.trace.delta[l], net.z[l].grad, f"{label} trace.delta[{l}] = dL/dz_{l}")
        assert_rel(grads.trace.da[l], net.a[l].grad, f"{label} trace.da[{l}] = dL/da_{l}")


# ---------------------------------------------------------------- RNN, LSTM, GRU


def cuts(T, k):
    """Steps t (0-based) whose input state is held constant by BPTT(k): counting back from the last
    step, every k-th step boundary (T - t a multiple of k), except t = 0: the engine never cuts before
    the first step, so dL/dh0 is the first chunk's gradient."""
    return set() if k is None else {t for t in range(1, T) if (T - t) % k == 0}


def torch_step(kind, activation, rnn, j):
    """Layer j's step (x_t, h, c) -> (h', c') from the fused module's own parameters: nn.RNNCell /
    nn.LSTMCell / nn.GRUCell sharing them, or the cell written out for the activations nn.RNN lacks."""
    D_j = rnn.input_size if j == 0 else rnn.hidden_size
    p = {name: getattr(rnn, f"{name}_l{j}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    if kind == "rnn" and activation not in ("tanh", "relu"):
        act = torch_act(activation)
        return lambda x, h, c: (act(x @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"]), None)
    if kind == "rnn":
        cell = torch.nn.RNNCell(D_j, rnn.hidden_size, nonlinearity=activation, dtype=torch.float64)
    else:
        cell = (torch.nn.LSTMCell if kind == "lstm" else torch.nn.GRUCell)(D_j, rnn.hidden_size, dtype=torch.float64)
    for name, value in p.items():
        setattr(cell, name, value)  # the very Parameters: their .grad accumulates on the fused module
    if kind == "lstm":
        return lambda x, h, c: cell(x, (h, c))
    return lambda x, h, c: (cell(x, h), None)


def torch_cell_loop(kind, activation, rnn, readout, x, h0, c0, output, truncate):
    """Layer by layer, a per-step loop with retain_grad on every h_t (and c_t); truncated BPTT as
    detach() of a layer's own state at the cuts (the path to the layer above is never cut).
    h0, c0: (layers, N, H). -> (output, hs[j][t], cs[j][t])."""
    steps, cut = x.shape[1], cuts(x.shape[1], truncate)
    inputs = [x[:, t] for t in range(steps)]
    hs, cs = [], []
    for j in range(rnn.num_layers):
        step = torch_step(kind, activation, rnn, j)
        h, c = h0[j], (c0[j] if kind == "lstm" else None)
        hs.append([])
        cs.append([])
        for t in range(steps):
            h_in, c_in = (h.detach(), None if c is None else c.detach()) if t in cut else (h, c)
            h, c = step(inputs[t], h_in, c_in)
            h.retain_grad()
            hs[j].append(h)
            if c is not None:
                c.retain_grad()
                cs[j].append(c)
        inputs = hs[j]
    outs = [readout(h) for h in inputs]
    return (outs[-1] if output == "last" else torch.stack(outs, dim=1)), hs, cs


def torch_sequence(kind, activation, layers, seed):
    """A fused nn.RNN / nn.LSTM / nn.GRU (batch_first) with an nn.Linear readout, its biases perturbed
    so that bias_ih and bias_hh differ. nn.RNN has tanh and relu; for the other activations it only
    holds the weights (the cell loop writes the cell out)."""
    torch.manual_seed(seed)
    kw = {"nonlinearity": activation if activation in ("tanh", "relu") else "tanh"} if kind == "rnn" else {}
    rnn = FUSED[kind](D, H, num_layers=layers, batch_first=True, dtype=torch.float64, **kw)
    readout = torch.nn.Linear(H, O, dtype=torch.float64)
    return perturb_(rnn, seed, scale=0.1), perturb_(readout, seed + 1, scale=0.1)


def engine_sequence(kind, activation, rnn, readout, output, truncate, **options):
    extra = {"activation": activation} if kind == "rnn" else {}
    model = MODELS[kind](D, H, O, layers=rnn.num_layers, output=output, truncate=truncate, **extra, **options)
    model.load_torch(rnn.state_dict(), readout.state_dict())
    return model


def sequence_data(kind, layers, output, loss_name, seed):
    """x (N, T, D), h0 and c0 (layers, N, H), the target."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, T, D))
    h0, c0 = rng.normal(size=(layers, N, H)) * 0.5, rng.normal(size=(layers, N, H)) * 0.5
    return x, h0, c0, make_target(loss_name, (N, O) if output == "last" else (N, T, O), seed + 1)


def engine_run(model, x, h0, c0, y, loss_name, lead=0):
    """The engine's forward (with trace), loss and backward: (loss, grads, dL/dy). h0, c0 as torch's
    (layers, N, H); a one-layer model also gets them as (N, H), which it accepts too."""
    if model.num_layers == 1 and model.ensemble is None:
        h0, c0 = h0[0], c0[0]
    kw = {"c0": c0} if isinstance(model, LSTM) else {}
    out, cache = model.forward(x, h0=h0, trace=True, **kw)
    value, dout = losses.get(loss_name)(out, y, lead=lead)
    return value, model.backward(dout, cache), dout


def compare_sequence(model, rnn, readout, value, grads, ref, label, member=None):
    """Loss and every parameter gradient: torch_state(grads.params) gives both bias_ih and bias_hh the
    merged bias's gradient (RNN, LSTM), and the GRU's two biases their own."""
    assert_rel(value, ref, f"{label} loss")
    rnn_grad, readout_grad = model.torch_state(grads.params, member=member)
    assert_state(rnn_grad, grads_of(rnn), f"{label} grad")
    assert_state(readout_grad, grads_of(readout), f"{label} readout grad")


STACKED = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", None), ("gru", None)]
LAYERS = [1, 2, 3]


@pytest.mark.parametrize("loss_name", LOSSES)
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("layers", LAYERS, ids=lambda k: f"layers{k}")
@pytest.mark.parametrize("kind,activation", STACKED)
def test_sequence_matches_fused_torch_module(kind, activation, layers, output, loss_name):
    """Full BPTT against the fused nn.RNN / nn.LSTM / nn.GRU (num_layers = layers) with an nn.Linear
    readout: loss, every parameter gradient, dx, dh0 (dc0) for every layer. The other activations are
    covered by the cell-loop test below."""
    rnn, readout = torch_sequence(kind, activation, layers, seed=1)
    model = engine_sequence(kind, activation, rnn, readout, output, None)
    x, h0, c0, y = sequence_data(kind, layers, output, loss_name, seed=2)
    xt, h0t, c0t = (t64(a).requires_grad_() for a in (x, h0, c0))
    seq, _ = rnn(xt, (h0t, c0t) if kind == "lstm" else h0t)
    seq.retain_grad()
    ref = torch_loss(loss_name, readout(seq[:, -1] if output == "last" else seq), t64(y))
    ref.backward()
    label = f"{kind} {activation or ''} layers={layers} output={output} {loss_name}"
    value, grads, dout = engine_run(model, x, h0, c0, y, loss_name)
    compare_sequence(model, rnn, readout, value, grads, ref, label)
    assert_rel(grads.dx, xt.grad, f"{label} dx")
    assert_rel(grads.dh0, grad_or_zeros(h0t)[0] if layers == 1 else grad_or_zeros(h0t), f"{label} dh0")
    if kind == "lstm":
        assert_rel(grads.dc0, grad_or_zeros(c0t)[0] if layers == 1 else grad_or_zeros(c0t), f"{label} dc0")
    else:
        assert grads.dc0 is None
    # the fused output's .grad is only the readout's share of the top layer's dL/dh_t, W_out^T dL/dy_t;
    # at the last step nothing flows back from later steps, so there it is the total dL/dh_T
    if output == "all":
        assert_rel(seq.grad, dout @ model.params["readout.weight"], f"{label} fused output grad = readout share")
    assert_rel(grads.trace.dh[:, -1], seq.grad[:, -1], f"{label} dL/dh_T vs fused output grad")
    assert_rel(grads.trace.layers[-1].h, seq, f"{label} top layer h_t")


SEQ = [("rnn", a, 1) for a in ACTIVATIONS] + [("lstm", None, 1), ("gru", None, 1)]
SEQ += [(kind, a, layers) for layers in (2, 3) for kind, a in STACKED]


@pytest.mark.parametrize("truncate", [None, 2, 3, 4], ids=lambda k: f"tbptt{k}" if k else "full")
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("kind,activation,layers", SEQ, ids=lambda v: str(v))
def test_sequence_matches_torch_cell_loop(kind, activation, layers, output, truncate):
    """Per-step total dL/dh_t (and dL/dc_t) of every layer against a torch cell loop with retain_grad on
    each h_t (c_t); truncated BPTT as detach() at the cuts (T = 6: k = 4 leaves a short first chunk).
    Also h_t (c_t), the loss, every parameter gradient, dx and dh0 (dc0)."""
    activation = activation or "tanh"
    loss_name = "mse"
    rnn, readout = torch_sequence(kind, activation, layers, seed=4)
    model = engine_sequence(kind, activation, rnn, readout, output, truncate)
    x, h0, c0, y = sequence_data(kind, layers, output, loss_name, seed=5)
    xt, h0t, c0t = (t64(a).requires_grad_() for a in (x, h0, c0))
    out_t, hs, cs = torch_cell_loop(kind, activation, rnn, readout, xt, h0t, c0t, output, truncate)
    ref = torch_loss(loss_name, out_t, t64(y))
    ref.backward()
    label = f"{kind} {activation} layers={layers} output={output} truncate={truncate}"
    value, grads, _ = engine_run(model, x, h0, c0, y, loss_name)
    compare_sequence(model, rnn, readout, value, grads, ref, label)
    assert_rel(grads.dx, xt.grad, f"{label} dx")
    assert_rel(grads.dh0, grad_or_zeros(h0t)[0] if layers == 1 else grad_or_zeros(h0t), f"{label} dh0")
    if kind == "lstm":
        assert_rel(grads.dc0, grad_or_zeros(c0t)[0] if layers == 1 else grad_or_zeros(c0t), f"{label} dc0")
    assert len(grads.trace.layers) == layers
    for j, layer in enumerate(grads.trace.layers):
        for t in range(T):
            where = f"{label} layer {j} t={t + 1}"
            assert_rel(layer.h[:, t], hs[j][t], f"{where} h_t")
            assert_rel(layer.dh[:, t], grad_or_zeros(hs[j][t]), f"{where} dL/dh_t")
            if kind == "lstm":
                assert_rel(layer.c[:, t], cs[j][t], f"{where} c_t")
                assert_rel(layer.dc[:, t], grad_or_zeros(cs[j][t]), f"{where} dL/dc_t")


def test_lstm_trace_gates_match_torch_gate_order():
    """trace.gates holds (i, f, g, o) in PyTorch's order: recomputed from torch's weights."""
    rnn, readout = torch_sequence("lstm", None, 1, seed=6)
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
        assert_rel(grads.trace.gates[:, t], want, f"lstm gates at t={t + 1}", 1e-12)
        h_prev = grads.trace.h[:, t]


def test_gru_trace_gates_match_torch_equations():
    """trace.gates holds (r, z, n) in PyTorch's order and equations (b_hn inside r * (W_hn h + b_hn)),
    recomputed from torch's weights; every layer's h_t is the fused nn.GRU's."""
    rnn, readout = torch_sequence("gru", None, 2, seed=8)
    model = engine_sequence("gru", None, rnn, readout, "all", None)
    x = np.random.default_rng(9).normal(size=(N, T, D))
    out, cache = model.forward(x, trace=True)
    grads = model.backward(np.ones_like(out), cache)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    layer_in = x
    for j, layer in enumerate(grads.trace.layers):
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        W_ih, W_hh, b_ih, b_hh = (getattr(rnn, f"{n}_l{j}").detach().numpy() for n in names)
        h_prev = np.zeros((N, H))
        for t in range(T):
            gx, gh = layer_in[:, t] @ W_ih.T + b_ih, h_prev @ W_hh.T + b_hh
            r, z = sig(gx[:, :H] + gh[:, :H]), sig(gx[:, H : 2 * H] + gh[:, H : 2 * H])
            n = np.tanh(gx[:, 2 * H :] + r * gh[:, 2 * H :])
            assert_rel(layer.gates[:, t], np.concatenate([r, z, n], axis=1), f"gru layer {j} gates at t={t + 1}", 1e-12)
            h_prev = (1 - z) * n + z * h_prev
            assert_rel(layer.h[:, t], h_prev, f"gru layer {j} h at t={t + 1}", 1e-12)
        layer_in = layer.h
    with torch.no_grad():
        seq, _ = rnn(t64(x))
    assert_rel(grads.trace.h, seq, "gru top layer h vs fused nn.GRU")


# ---------------------------------------------------------------- ensembles against torch


R = 3


@pytest.mark.parametrize("shared_x", [False, True], ids=["x per member", "x shared"])
def test_ensemble_mlp_members_match_three_torch_modules(shared_x):
    """An MLP ensemble (batch norm, residual) whose member r is loaded from torch module r (load_torch(...,
    member=r)): each member's loss, every parameter gradient, dx and running statistics are module r's;
    x has the member axis (a different batch per member) or is shared by every member."""
    widths = [D, H, H, O]
    torch.manual_seed(20)
    nets = [perturb_(torch_sequential(widths, "tanh", norm="batch"), seed=20 + r) for r in range(R)]
    model = MLP(widths, "tanh", norm="batch", residual=True, residual_scale=0.5, ensemble=R)
    for r, net in enumerate(nets):
        model.load_torch(net.state_dict(), member=r)
    rng = np.random.default_rng(21)
    x, y = rng.normal(size=(5, D) if shared_x else (R, 5, D)), make_target("cross_entropy", (R, 5, O))
    values, grads, _ = mlp_step(model, x, y, "cross_entropy", lead=1)
    assert np.shape(values) == (R,)
    for r, net in enumerate(nets):
        torch_net = ResidualMLP(widths, "tanh", "batch", 0.5)
        torch_net.net = net
        xt = t64(x if shared_x else x[r]).requires_grad_()
        ref = torch_loss("cross_entropy", torch_net(xt), t64(y[r]))
        ref.backward()
        label = f"ensemble mlp member {r}"
        assert_rel(values[r], ref, f"{label} loss")
        grad = model.torch_state(grads.params, member=r)
        assert_state(grad, grads_of(net), f"{label} grad", zero=before_batch_norm(net))
        assert_rel(grads.dx[r], xt.grad, f"{label} dx")
        state = model.torch_state(member=r)
        assert_state({k: state[k] for k in buffers_of(net)}, buffers_of(net), f"{label} running statistics")


@pytest.mark.parametrize("shared_x", [False, True], ids=["x per member", "x shared"])
def test_ensemble_lstm_members_match_three_torch_modules(shared_x):
    """A 2-layer LSTM ensemble (loss on every step, BPTT(4)) whose member r is loaded from nn.LSTM and
    nn.Linear r: each member's loss, every parameter gradient, dx, dh0, dc0 and per-step dL/dh_t,
    dL/dc_t of both layers are those of module r's cell loop. h0, c0 are (layers, R, N, H)."""
    layers, truncate, output = 2, 4, "all"
    modules = [torch_sequence("lstm", None, layers, seed=30 + r) for r in range(R)]
    model = LSTM(D, H, O, layers=layers, output=output, truncate=truncate, ensemble=R)
    for r, (rnn, readout) in enumerate(modules):
        model.load_torch(rnn.state_dict(), readout.state_dict(), member=r)
    rng = np.random.default_rng(31)
    x = rng.normal(size=(N, T, D) if shared_x else (R, N, T, D))
    h0, c0 = rng.normal(size=(layers, R, N, H)) * 0.5, rng.normal(size=(layers, R, N, H)) * 0.5
    y = make_target("mse", (R, N, T, O))
    values, grads, _ = engine_run(model, x, h0, c0, y, "mse", lead=1)
    assert np.shape(values) == (R,)
    for r, (rnn, readout) in enumerate(modules):
        xt = t64(x if shared_x else x[r]).requires_grad_()
        h0t, c0t = t64(h0[:, r]).requires_grad_(), t64(c0[:, r]).requires_grad_()
        out_t, hs, cs = torch_cell_loop("lstm", None, rnn, readout, xt, h0t, c0t, output, truncate)
        ref = torch_loss("mse", out_t, t64(y[r]))
        ref.backward()
        label = f"ensemble lstm member {r} ({'x shared' if shared_x else 'x per member'})"
        compare_sequence(model, rnn, readout, values[r], grads, ref, label, member=r)
        assert_rel(grads.dx[r], xt.grad, f"{label} dx")
        assert_rel(grads.dh0[:, r], grad_or_zeros(h0t), f"{label} dh0")
        assert_rel(grads.dc0[:, r], grad_or_zeros(c0t), f"{label} dc0")
        for j, layer in enumerate(grads.trace.layers):
            for t in range(T):
                where = f"{label} layer {j} t={t + 1}"
                assert_rel(layer.dh[r, :, t], grad_or_zeros(hs[j][t]), f"{where} dL/dh_t")
                assert_rel(layer.dc[r, :, t], grad_or_zeros(cs[j][t]), f"{where} dL/dc_t")


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
            assert_rel(params[k], tparams[k], f"{name} {kwargs} step {step + 1} {k}", 1e-12)


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
        assert_rel(params[k], tparams[k], f"optim.get momentum {k}", 1e-12)


@pytest.mark.parametrize("max_norm", [0.1, 1.0, 100.0])
def test_clip_norm_matches_clip_grad_norm(max_norm):
    grads = {k: v * 3 for k, v in random_params(2).items()}  # norm about 12
    tparams = [t64(np.zeros_like(v)).requires_grad_() for v in grads.values()]
    for p, g in zip(tparams, grads.values()):
        p.grad = t64(g.copy())
    before, after = clip.clip_norm(grads, max_norm)
    total = torch.nn.utils.clip_grad_norm_(tparams, max_norm)
    assert_rel(before, total, f"max_norm={max_norm} norm before clipping", 1e-12)
    # torch scales by max_norm / (norm + 1e-6), we by max_norm / norm: they agree to 1e-6 / norm relative
    tol = 1.01e-6 / before + 1e-13
    for (name, g), p in zip(grads.items(), tparams):
        assert_rel(g, p.grad, f"max_norm={max_norm} clipped {name}", tol)
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


def test_ensemble_clipping_matches_torch_per_member():
    """clip_norm / clip_value with ensemble=True: each member clipped as torch clips that member's own
    gradients (norm: to torch's 1e-6 / norm; value: exactly)."""
    rng = np.random.default_rng(4)
    grads = {"w": rng.normal(size=(R, 4, 3)) * [[[0.1]], [[3.0]], [[30.0]]], "b": rng.normal(size=(R, 4))}
    for mode, threshold in (("norm", 1.0), ("value", 0.5)):
        ours = {k: v.copy() for k, v in grads.items()}
        before, _ = clip.clip(ours, mode, threshold, ensemble=True)
        for r in range(R):
            tparams = [t64(np.zeros_like(v[r])).requires_grad_() for v in grads.values()]
            for p, g in zip(tparams, grads.values()):
                p.grad = t64(g[r].copy())
            if mode == "norm":
                total = torch.nn.utils.clip_grad_norm_(tparams, threshold)
                assert_rel(before[r], total, f"member {r} norm", 1e-12)
                for (name, g), p in zip(ours.items(), tparams):
                    assert_rel(g[r], p.grad, f"clip norm member {r} {name}", 1.01e-6 / before[r] + 1e-13)
            else:
                torch.nn.utils.clip_grad_value_(tparams, threshold)
                for (name, g), p in zip(ours.items(), tparams):
                    want = p.grad.numpy()
                    assert np.array_equal(g[r], want), f"clip value member {r} {name}: {g[r]} vs torch {want}"
