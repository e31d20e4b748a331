"""load_torch and its inverse torch_state, with PyTorch installed (skipped without it).

Round trips: torch_state() read back by load_torch into a fresh model gives the very same parameters (and
batch norm's running statistics) for the MLP with every norm, for RNN / LSTM / GRU with layers 1-3, and for
one member of an ensemble (member=r); the state dicts load into the matching torch modules, strictly, and
those modules then compute what the engine computes. Gradients: torch_state(grads.params) has exactly the
keys of the torch module's parameters and equals each one's .grad, a merged bias's gradient going to both
bias_ih and bias_hh.

The helpers are test_torch.py's (imported from it, as pytest's default import mode allows).
"""

import numpy as np
import pytest

from gradlab.nn import MLP, losses

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")

from test_torch import (  # noqa: E402
    D, FUSED, H, MODELS, N, O, T, assert_rel, assert_state, before_batch_norm, buffers_of, engine_run, grads_of,
    make_target, params_of, perturb_, sequence_data, t64, torch_loss, torch_sequence, torch_sequential,
)  # fmt: skip

R = 3
NORMS = [None, "layer", "batch"]
KINDS = ["rnn", "lstm", "gru"]


def assert_same(ours, theirs, label):
    """Two dicts of arrays with the same keys and bitwise equal values."""
    assert sorted(ours) == sorted(theirs), f"{label}: keys {sorted(ours)} vs {sorted(theirs)}"
    for key, value in theirs.items():
        a, e = np.asarray(ours[key]), np.asarray(value)
        assert a.shape == e.shape, f"{label} {key}: shape {a.shape} vs {e.shape}"
        assert np.array_equal(a, e), f"{label} {key}: not identical (max |diff| {np.max(np.abs(a - e)):.3g})"


def as_tensors(state):
    return {k: torch.as_tensor(np.array(v)) for k, v in state.items()}


def mlp(norm, residual=False, seed=0, ensemble=None, widths=(D, H, H, O)):
    model = MLP(list(widths), "tanh", norm=norm, residual=residual, rng=np.random.default_rng(seed), ensemble=ensemble)
    rng = np.random.default_rng(seed + 100)
    for name, p in model.params.items():  # no gain of 1, no bias of 0
        p += rng.normal(scale=0.3, size=p.shape)
    for name, b in model.buffers.items():
        b[...] = rng.normal(size=b.shape) if name.endswith("mean") else rng.uniform(0.5, 1.5, size=b.shape)
    return model


def sequence_model(kind, layers, seed=0, ensemble=None, **options):
    extra = {"activation": "tanh"} if kind == "rnn" else {}
    model = MODELS[kind](D, H, O, layers=layers, rng=np.random.default_rng(seed), ensemble=ensemble, **extra, **options)
    rng = np.random.default_rng(seed + 100)
    for p in model.params.values():  # no bias of 0
        p += rng.normal(scale=0.1, size=p.shape)
    return model


# ---------------------------------------------------------------- MLP


@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
@pytest.mark.parametrize("norm", NORMS)
def test_mlp_torch_state_round_trip(norm, residual):
    """torch_state() -> load_torch into a fresh model: identical parameters and running statistics; the
    state dict also loads into the torch nn.Sequential (only num_batches_tracked missing, which the engine
    does not keep), whose output then equals the engine's in training and in eval mode."""
    model = mlp(norm, residual, seed=1)
    fresh = MLP(model.sizes, "tanh", norm=norm, residual=residual, rng=np.random.default_rng(2))
    state = model.torch_state()
    fresh.load_torch(state)
    assert_same(fresh.params, model.params, f"norm={norm} params")
    assert_same(fresh.buffers, model.buffers, f"norm={norm} buffers")
    assert_same(fresh.torch_state(), state, f"norm={norm} torch_state of the copy")
    net = torch_sequential(model.sizes, "tanh", norm=norm)
    missing, unexpected = net.load_state_dict(as_tensors(state), strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), (missing, unexpected)
    assert_same({k: v.detach().numpy() for k, v in {**params_of(net), **buffers_of(net)}.items()}, state, "in torch")
    if residual:  # the Sequential has no residual connections: the forward comparison is test_torch's
        return
    x = np.random.default_rng(3).normal(size=(5, D))
    out, _ = model.forward(x, train=False)
    net.eval()
    with torch.no_grad():
        assert_rel(out, net(t64(x)), f"norm={norm} eval output after the round trip")
    net.train()
    out, _ = model.forward(x)
    with torch.no_grad():
        assert_rel(out, net(t64(x)), f"norm={norm} training output after the round trip")


@pytest.mark.parametrize("norm", NORMS)
def test_mlp_load_torch_then_torch_state_gives_torchs_state_back(norm):
    """torch -> engine -> torch: every tensor of the nn.Sequential's state dict comes back bitwise."""
    torch.manual_seed(4)
    net = perturb_(torch_sequential([D, H, H + 1, O], "relu", norm=norm), seed=5)
    model = MLP([D, H, H + 1, O], "relu", norm=norm)
    model.load_torch(net.state_dict())
    want = {k: v.numpy() for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert_same(model.torch_state(), want, f"norm={norm}")


@pytest.mark.parametrize("norm", NORMS)
def test_mlp_ensemble_member_round_trip(norm):
    """torch_state(member=r) is member r alone: read into a one-model MLP it gives member r's parameters;
    read into another ensemble with member=q it sets member q and leaves the others alone."""
    model = mlp(norm, residual=True, seed=6, ensemble=R)
    other = mlp(norm, residual=True, seed=7, ensemble=R)
    before = {k: v.copy() for k, v in {**other.params, **other.buffers}.items()}
    for r, q in ((0, 2), (1, 0), (2, 1)):
        single = MLP(model.sizes, "tanh", norm=norm, residual=True, rng=np.random.default_rng(8))
        single.load_torch(model.torch_state(member=r))
        assert_same(single.params, {k: v[r] for k, v in model.params.items()}, f"norm={norm} member {r} params")
        assert_same(single.buffers, {k: v[r] for k, v in model.buffers.items()}, f"norm={norm} member {r} buffers")
        other.load_torch(model.torch_state(member=r), member=q)
        for k, v in {**other.params, **other.buffers}.items():
            assert np.array_equal(v[q], {**model.params, **model.buffers}[k][r]), f"norm={norm} {k}: member {q} != {r}"
            before[k][q] = v[q]
            assert np.array_equal(v, before[k]), f"norm={norm} {k}: load_torch(member={q}) changed another member"


@pytest.mark.parametrize("norm", NORMS)
def test_mlp_gradient_state_is_torchs_grad(norm):
    """torch_state(grads.params): exactly the keys of the Sequential's parameters (no running statistics:
    they have no gradient) and each one's .grad."""
    torch.manual_seed(9)
    widths = [D, H, H, O]
    net = perturb_(torch_sequential(widths, "tanh", norm=norm), seed=10)
    model = MLP(widths, "tanh", norm=norm)
    model.load_torch(net.state_dict())
    rng = np.random.default_rng(11)
    x, y = rng.normal(size=(6, D)), make_target("mse", (6, O))
    xt = t64(x).requires_grad_()
    torch_loss("mse", net(xt), t64(y)).backward()
    out, cache = model.forward(x)
    grads = model.backward(losses.mse(out, y)[1], cache)
    state = model.torch_state(grads.params)
    assert sorted(state) == sorted(params_of(net)), f"norm={norm}: {sorted(state)} vs {sorted(params_of(net))}"
    assert_state(state, grads_of(net), f"norm={norm} grad", zero=before_batch_norm(net))


# ---------------------------------------------------------------- RNN, LSTM, GRU


@pytest.mark.parametrize("layers", [1, 2, 3], ids=lambda k: f"layers{k}")
@pytest.mark.parametrize("kind", KINDS)
def test_sequence_torch_state_round_trip(kind, layers):
    """torch_state() -> load_torch into a fresh model: identical parameters (a merged bias becomes bias_ih
    with bias_hh = 0, which load_torch adds back exactly). Both dicts load strictly into nn.RNN / nn.LSTM /
    nn.GRU (num_layers = layers) and nn.Linear, which then compute the engine's output."""
    model = sequence_model(kind, layers, seed=12, output="all")
    fresh = sequence_model(kind, layers, seed=13, output="all")
    rnn_state, readout_state = model.torch_state()
    fresh.load_torch(rnn_state, readout_state)
    assert_same(fresh.params, model.params, f"{kind} layers={layers}")
    if kind != "gru":
        for j in range(layers):
            assert not np.any(rnn_state[f"bias_hh_l{j}"]), f"{kind}: the merged bias goes to bias_ih, bias_hh is 0"
    rnn = FUSED[kind](D, H, num_layers=layers, batch_first=True, dtype=torch.float64)
    readout = torch.nn.Linear(H, O, dtype=torch.float64)
    rnn.load_state_dict(as_tensors(rnn_state), strict=True)
    readout.load_state_dict(as_tensors(readout_state), strict=True)
    x = np.random.default_rng(14).normal(size=(N, T, D))
    out, _ = model.forward(x)
    with torch.no_grad():
        assert_rel(out, readout(rnn(t64(x))[0]), f"{kind} layers={layers} output after the round trip")


@pytest.mark.parametrize("layers", [1, 2, 3], ids=lambda k: f"layers{k}")
@pytest.mark.parametrize("kind", KINDS)
def test_sequence_load_torch_then_torch_state(kind, layers):
    """torch -> engine -> torch: the weights come back bitwise; the GRU's two biases too, a merged bias as
    bias_ih + bias_hh (in bias_ih, bias_hh = 0)."""
    rnn, readout = torch_sequence(kind, "tanh", layers, seed=15)
    model = sequence_model(kind, layers, seed=16)
    model.load_torch(rnn.state_dict(), readout.state_dict())
    rnn_state, readout_state = model.torch_state()
    assert_same(readout_state, {k: v.numpy() for k, v in readout.state_dict().items()}, f"{kind} readout")
    want = {k: v.detach().numpy() for k, v in rnn.state_dict().items()}
    if kind != "gru":
        for j in range(layers):
            want[f"bias_ih_l{j}"] = want[f"bias_ih_l{j}"] + want[f"bias_hh_l{j}"]
            want[f"bias_hh_l{j}"] = np.zeros_like(want[f"bias_hh_l{j}"])
    assert_same(rnn_state, want, f"{kind} layers={layers}")


@pytest.mark.parametrize("kind", KINDS)
def test_sequence_ensemble_member_round_trip(kind):
    """torch_state(member=r) read into a one-model network gives member r's parameters; into another
    ensemble with member=q it sets member q only."""
    model = sequence_model(kind, 2, seed=17, ensemble=R)
    other = sequence_model(kind, 2, seed=18, ensemble=R)
    before = {k: v.copy() for k, v in other.params.items()}
    for r, q in ((0, 1), (1, 2), (2, 0)):
        single = sequence_model(kind, 2, seed=19)
        single.load_torch(*model.torch_state(member=r))
        assert_same(single.params, {k: v[r] for k, v in model.params.items()}, f"{kind} member {r}")
        other.load_torch(*model.torch_state(member=r), member=q)
        for k, v in other.params.items():
            assert np.array_equal(v[q], model.params[k][r]), f"{kind} {k}: member {q} != member {r}"
            before[k][q] = v[q]
            assert np.array_equal(v, before[k]), f"{kind} {k}: load_torch(member={q}) changed another member"


@pytest.mark.parametrize("layers", [1, 2, 3], ids=lambda k: f"layers{k}")
@pytest.mark.parametrize("kind", KINDS)
def test_sequence_gradient_state_is_torchs_grad(kind, layers):
    """torch_state(grads.params) has exactly the fused module's parameter names and equals each .grad:
    for the RNN and the LSTM the merged bias's gradient is both bias_ih's and bias_hh's (torch's two
    .grads are equal, as both biases enter the same sum), for the GRU each bias has its own."""
    rnn, readout = torch_sequence(kind, "tanh", layers, seed=20)
    model = sequence_model(kind, layers, seed=21, output="all")
    model.load_torch(rnn.state_dict(), readout.state_dict())
    x, h0, c0, y = sequence_data(kind, layers, "all", "mse", seed=22)
    xt, h0t, c0t = (t64(a).requires_grad_() for a in (x, h0, c0))
    seq, _ = rnn(xt, (h0t, c0t) if kind == "lstm" else h0t)
    ref = torch_loss("mse", readout(seq), t64(y))
    ref.backward()
    value, grads, _ = engine_run(model, x, h0, c0, y, "mse")
    assert_rel(value, ref, f"{kind} layers={layers} loss")
    rnn_grad, readout_grad = model.torch_state(grads.params)
    assert sorted(rnn_grad) == sorted(params_of(rnn)), f"{kind}: {sorted(rnn_grad)} vs {sorted(params_of(rnn))}"
    assert_state(rnn_grad, grads_of(rnn), f"{kind} layers={layers} grad")
    assert_state(readout_grad, grads_of(readout), f"{kind} layers={layers} readout grad")
    for j in range(layers):
        b_ih, b_hh = getattr(rnn, f"bias_ih_l{j}").grad, getattr(rnn, f"bias_hh_l{j}").grad
        if kind == "gru":
            assert_rel(rnn_grad[f"bias_hh_l{j}"], b_hh, f"gru layer {j} bias_hh (its own gradient)")
            assert not torch.allclose(b_ih, b_hh), "the GRU's two bias gradients differ (the n gate)"
        else:
            assert_rel(b_ih, b_hh, f"torch's own {kind} bias_ih_l{j}.grad vs bias_hh_l{j}.grad", 1e-12)
            assert np.array_equal(rnn_grad[f"bias_ih_l{j}"], rnn_grad[f"bias_hh_l{j}"])
            assert_rel(rnn_grad[f"bias_hh_l{j}"], b_hh, f"{kind} layer {j} merged bias grad vs bias_hh")


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_merged_bias_weights_and_gradients_map_differently(kind):
    """For weights (params=None, or grad=False) the merged bias becomes bias_ih with bias_hh = 0, so that
    the sum is kept; for gradients (grad=True, the default when params is given) it goes to both."""
    model = sequence_model(kind, 2, seed=23)
    weights = model.torch_state()[0]
    assert_same(model.torch_state(model.params, grad=False)[0], weights, f"{kind} grad=False")
    as_grads = model.torch_state(model.params)[0]
    for j in range(2):
        bias = model.params["bias" if j == 0 else f"bias_l{j}"]
        assert np.array_equal(weights[f"bias_ih_l{j}"], bias) and not np.any(weights[f"bias_hh_l{j}"])
        assert np.array_equal(as_grads[f"bias_ih_l{j}"], bias) and np.array_equal(as_grads[f"bias_hh_l{j}"], bias)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_load_torch_reads_a_module_without_biases(kind):
    """nn.RNN / nn.LSTM / nn.GRU(bias=False) and nn.Linear(bias=False): the engine's biases become 0, and it
    computes what torch computes."""
    torch.manual_seed(24)
    rnn = FUSED[kind](D, H, num_layers=2, bias=False, batch_first=True, dtype=torch.float64)
    readout = torch.nn.Linear(H, O, bias=False, dtype=torch.float64)
    model = sequence_model(kind, 2, seed=25, output="all")
    model.load_torch(rnn.state_dict(), readout.state_dict())
    for name, p in model.params.items():
        if "bias" in name:
            assert not np.any(p), f"{kind} {name} should be 0"
    x = np.random.default_rng(26).normal(size=(N, T, D))
    out, _ = model.forward(x)
    with torch.no_grad():
        assert_rel(out, readout(rnn(t64(x))[0]), f"{kind} without biases: output")


# ---------------------------------------------------------------- a state dict of another model


@pytest.mark.parametrize(
    "kind,torch_layers",
    [(k, n) for k in KINDS for n in (3, 1)],
)
def test_sequence_load_torch_refuses_a_state_of_another_depth(kind, torch_layers):
    """A state dict with num_layers != layers is a bad argument: a one-line ValueError (as MLP.load_torch
    raises for a Sequential with another number of Linear layers)."""
    torch.manual_seed(27)
    rnn = FUSED[kind](D, H, num_layers=torch_layers, batch_first=True, dtype=torch.float64)
    model = sequence_model(kind, 2, seed=28)
    with pytest.raises(ValueError, match="layer"):
        model.load_torch(rnn.state_dict())


@pytest.mark.parametrize("kind", KINDS)
def test_sequence_load_torch_refuses_a_bidirectional_state(kind):
    torch.manual_seed(29)
    rnn = FUSED[kind](D, H, bidirectional=True, batch_first=True, dtype=torch.float64)
    with pytest.raises(ValueError):
        sequence_model(kind, 1, seed=30).load_torch(rnn.state_dict())


@pytest.mark.parametrize(
    "torch_norm,norm",
    [("batch", "layer"), ("layer", "batch")],
)
def test_mlp_load_torch_refuses_the_other_norm(torch_norm, norm):
    """A Sequential whose norm layers are of the other kind is a bad argument: a one-line ValueError."""
    torch.manual_seed(31)
    net = torch_sequential([D, H, O], "tanh", norm=torch_norm)
    with pytest.raises(ValueError, match="norm"):
        MLP([D, H, O], "tanh", norm=norm).load_torch(net.state_dict())
