"""Bad arguments raise ValueError with one line naming the argument, the value and what is allowed;
overflow is a result (inf/NaN arrays, no exception, no NumPy warning, no leaked np.errstate), for every
model: MLP (with norms, residual connections, ensembles), RNN, LSTM, GRU (stacked, ensembles, the
reference path)."""

import warnings

import numpy as np
import pytest

from gradlab.nn import GRU, LSTM, MLP, RNN, activations, clip, gradcheck, init, losses, optim

G = lambda: {"w": np.ones((2, 2))}
ACT_NAMES = list(activations.NAMES)


def backward_with_dout(model, dout, lead=()):
    """model.backward(dout, cache) after a forward of N = dout.shape[-2] examples (x with member axes `lead`)."""
    N = dout.shape[-2]
    x = np.ones((*lead, N, model.sizes[0])) if isinstance(model, MLP) else np.ones((*lead, N, 3, model.input_size))
    return model.backward(dout, model.forward(x)[1])


INIT_NAMES = list(init.NAMES)
G3 = lambda: {"w": np.ones((3, 2))}  # noqa: E731  gradients of an ensemble of R = 3
WIDE = [2, 3, 3, 1]  # a hidden layer of the same width as the one before: residual
BN = lambda **kw: MLP([2, 3, 1], norm="batch", **kw)  # noqa: E731
X = np.ones((2, 5, 3))  # N = 2, T = 5, D = 3
nan, inf = float("nan"), float("inf")


def gens(n):
    return [np.random.default_rng(i) for i in range(n)]


def run(cls, layers=1, ensemble=None, **states):
    """A forward of cls(3, 4, 1, layers, ensemble) on X with initial states of the given shapes (zeros)."""
    zeros = {k: np.zeros(shape) for k, shape in states.items()}
    return lambda: cls(3, 4, 1, layers=layers, ensemble=ensemble).forward(X, **zeros)


# (id, call, argument name, value as it must appear, what is allowed: substrings that must appear)
CASES = [
    # unknown names: the message lists every allowed name
    ("activation", lambda: activations.get("softplus"), "activation", "'softplus'", ACT_NAMES),
    ("mlp activation", lambda: MLP([2, 3], "swish"), "activation", "'swish'", ACT_NAMES),
    ("mlp output_activation", lambda: MLP([2, 3], output_activation="gelu"), "output_activation", "'gelu'", ACT_NAMES),
    ("rnn activation", lambda: RNN(2, 3, 1, "elu"), "activation", "'elu'", ACT_NAMES),
    ("mlp init", lambda: MLP([2, 3], init="kaiming"), "init", "'kaiming'", INIT_NAMES),
    ("rnn init", lambda: RNN(2, 3, 1, init="glorot"), "init", "'glorot'", INIT_NAMES),
    ("lstm recurrent_init", lambda: LSTM(2, 3, 1, recurrent_init="eye"), "recurrent_init", "'eye'", INIT_NAMES),
    ("init.weight", lambda: init.weight("lecun", np.random.default_rng(0), (2, 2)), "init", "'lecun'", INIT_NAMES),
    ("loss", lambda: losses.get("hinge"), "loss", "'hinge'", list(losses.NAMES)),
    ("optimizer", lambda: optim.get("rmsprop", {}, 0.1), "optimizer", "'rmsprop'", list(optim.NAMES)),
    ("clip mode", lambda: clip.clip(G(), "global", 1.0), "mode", "'global'", list(clip.MODES)),
    ("rnn output", lambda: RNN(2, 3, 1, output="first"), "output", "'first'", ["last", "all"]),
    ("lstm output", lambda: LSTM(2, 3, 1, output="mean"), "output", "'mean'", ["last", "all"]),
    # non-positive sizes
    ("mlp sizes[1]=0", lambda: MLP([2, 0, 1]), "sizes[1]", "0", ["positive integer"]),
    ("mlp sizes[0]=-3", lambda: MLP([-3, 1]), "sizes[0]", "-3", ["positive integer"]),
    ("mlp one size", lambda: MLP([3]), "sizes", "[3]", ["at least"]),
    ("mlp float size", lambda: MLP([2, 2.5]), "sizes[1]", "2.5", ["positive integer"]),
    ("rnn input_size", lambda: RNN(0, 3, 1), "input_size", "0", ["positive integer"]),
    ("rnn hidden_size", lambda: RNN(2, -1, 1), "hidden_size", "-1", ["positive integer"]),
    ("lstm output_size", lambda: LSTM(2, 3, 0), "output_size", "0", ["positive integer"]),
    ("rnn truncate", lambda: RNN(2, 3, 1, truncate=0), "truncate", "0", ["positive integer"]),
    ("lstm truncate", lambda: LSTM(2, 3, 1, truncate=-2), "truncate", "-2", ["positive integer"]),
    ("init shape", lambda: init.standard(np.random.default_rng(0), (0, 3)), "fan_out", "0", ["positive integer"]),
    # slopes
    ("negative slope", lambda: activations.get("leaky_relu", -0.1), "slope", "-0.1", [">= 0"]),
    ("mlp negative slope", lambda: MLP([2, 3], "leaky_relu", slope=-0.5), "slope", "-0.5", [">= 0"]),
    ("slope above 1", lambda: activations.leaky_relu(1.5), "slope", "1.5", ["[0, 1]"]),
    ("relu_gain slope", lambda: init.relu_gain(-1.0), "slope", "-1.0", [">= 0"]),
    # thresholds and optimizer settings that must be > 0
    ("clip_norm 0", lambda: clip.clip_norm(G(), 0.0), "max_norm", "0.0", ["> 0"]),
    ("clip_norm negative", lambda: clip.clip_norm(G(), -1.0), "max_norm", "-1.0", ["> 0"]),
    ("clip_value 0", lambda: clip.clip_value(G(), 0), "max_value", "0", ["> 0"]),
    ("clip_value negative", lambda: clip.clip_value(G(), -0.5), "max_value", "-0.5", ["> 0"]),
    ("clip norm None", lambda: clip.clip(G(), "norm", None), "max_norm", "None", ["> 0"]),
    ("clip value nan", lambda: clip.clip(G(), "value", float("nan")), "max_value", "nan", ["> 0"]),
    ("sgd lr 0", lambda: optim.SGD({}, lr=0.0), "lr", "0.0", ["> 0"]),
    ("adam lr negative", lambda: optim.Adam({}, lr=-1e-3), "lr", "-0.001", ["> 0"]),
    ("momentum 1", lambda: optim.SGD({}, lr=0.1, momentum=1.0), "momentum", "1.0", ["[0, 1)"]),
    ("momentum negative", lambda: optim.SGD({}, lr=0.1, momentum=-0.5), "momentum", "-0.5", [">= 0"]),
    ("adam beta1", lambda: optim.Adam({}, betas=(1.0, 0.999)), "betas[0]", "1.0", ["[0, 1)"]),
    ("adam eps", lambda: optim.Adam({}, eps=0.0), "eps", "0.0", ["> 0"]),
    ("orthogonal gain", lambda: init.orthogonal(np.random.default_rng(0), (3, 3), gain=0.0), "gain", "0.0", ["> 0"]),
    ("spectral radius", lambda: init.scale_to_spectral_radius(np.eye(2), -1.0), "radius", "-1.0", ["> 0"]),
    ("spectral norm", lambda: init.scale_to_spectral_norm(np.eye(2), 0.0), "norm", "0.0", ["> 0"]),
    ("sigma_b2", lambda: init.mean_field_bias(np.random.default_rng(0), 3, -1.0), "sigma_b2", "-1.0", [">= 0"]),
    # dtypes
    ("mlp float16", lambda: MLP([2, 3], dtype="float16"), "dtype", "'float16'", ["float32", "float64"]),
    ("rnn int32", lambda: RNN(2, 3, 1, dtype="int32"), "dtype", "'int32'", ["float32", "float64"]),
    ("lstm nonsense", lambda: LSTM(2, 3, 1, dtype="nonsense"), "dtype", "'nonsense'", ["float32", "float64"]),
    ("mlp complex", lambda: MLP([2, 3], dtype=np.complex128), "dtype", "complex128", ["float32", "float64"]),
    # shapes
    ("mlp x width", lambda: MLP([3, 2]).forward(np.ones((4, 2))), "x", "(4, 2)", ["(N, "]),
    ("mlp x 1-d", lambda: MLP([3, 2]).forward(np.ones(3)), "x", "(3,)", ["(N, "]),
    ("mlp x 3-d", lambda: MLP([3, 2]).forward(np.ones((2, 2, 3))), "x", "(2, 2, 3)", ["(N, "]),
    ("rnn x 2-d", lambda: RNN(3, 4, 1).forward(np.ones((2, 3))), "x", "(2, 3)", ["(N, T, "]),
    ("lstm x width", lambda: LSTM(3, 4, 1).forward(np.ones((2, 5, 4))), "x", "(2, 5, 4)", ["(N, T, "]),
    ("rnn x T=0", lambda: RNN(3, 4, 1).forward(np.ones((2, 0, 3))), "x", "(2, 0, 3)", ["T >= 1"]),
    ("rnn h0", lambda: RNN(3, 4, 1).forward(np.ones((2, 5, 3)), h0=np.zeros((2, 3))), "h0", "(2, 3)", ["(N, "]),
    ("lstm c0", lambda: LSTM(3, 4, 1).forward(np.ones((2, 5, 3)), c0=np.zeros((1, 4))), "c0", "(1, 4)", ["(N, "]),
    ("mse target", lambda: losses.mse(np.ones((2, 3)), np.ones((2, 2))), "target", "(2, 2)", ["(2, 3)"]),
    ("ce float labels", lambda: losses.cross_entropy(np.ones((2, 3)), np.ones(2)), "target", "float64", ["integer"]),
    ("ce label range", lambda: losses.cross_entropy(np.ones((2, 3)), np.array([0, 3])), "target", "3", ["[0, 2]"]),
    ("mlp dout", lambda: backward_with_dout(MLP([3, 2]), np.ones((4, 3))), "dout", "(4, 3)", ["(4, 2)"]),
    ("lstm forget bias", lambda: init.lstm_forget_bias(np.zeros(6)), "bias", "(6,)", ["(4H,)"]),
    # the new models and options
    ("gru output", lambda: GRU(2, 3, 1, output="every"), "output", "'every'", ["last", "all"]),
    ("gru init", lambda: GRU(2, 3, 1, init="he"), "init", "'he'", INIT_NAMES),
    ("gru truncate", lambda: GRU(2, 3, 1, truncate=0), "truncate", "0", ["positive integer"]),
    ("gru hidden_size", lambda: GRU(2, 0, 1), "hidden_size", "0", ["positive integer"]),
    ("gru float16", lambda: GRU(2, 3, 1, dtype="float16"), "dtype", "'float16'", ["float32", "float64"]),
    ("gru x width", lambda: GRU(3, 4, 1).forward(np.ones((2, 5, 2))), "x", "(2, 5, 2)", ["(N, T, "]),
    ("norm name", lambda: MLP([2, 3, 1], norm="group"), "norm", "'group'", ["layer", "batch"]),
    ("norm 'none'", lambda: MLP([2, 3, 1], norm="none"), "norm", "'none'", ["layer", "batch"]),
    ("norm LayerNorm", lambda: MLP([2, 3, 1], norm="LayerNorm"), "norm", "'LayerNorm'", ["layer", "batch"]),
    ("rnn layers 0", lambda: RNN(2, 3, 1, layers=0), "layers", "0", ["positive integer"]),
    ("lstm layers -1", lambda: LSTM(2, 3, 1, layers=-1), "layers", "-1", ["positive integer"]),
    ("gru layers 1.5", lambda: GRU(2, 3, 1, layers=1.5), "layers", "1.5", ["positive integer"]),
    ("residual_scale nan", lambda: MLP(WIDE, residual=True, residual_scale=nan), "residual_scale", "nan", ["finite"]),
    ("residual_scale inf", lambda: MLP(WIDE, residual=True, residual_scale=inf), "residual_scale", "inf", ["finite"]),
    ("residual_scale -inf", lambda: MLP(WIDE, residual_scale=-inf), "residual_scale", "-inf", ["finite"]),
    ("residual_scale str", lambda: MLP(WIDE, residual=True, residual_scale="1"), "residual_scale", "'1'", ["finite"]),
    ("residual not bool", lambda: MLP(WIDE, residual="yes"), "residual", "'yes'", ["True or False"]),
    ("mlp ensemble 0", lambda: MLP([2, 3, 1], ensemble=0), "ensemble", "0", ["positive integer"]),
    ("rnn ensemble -2", lambda: RNN(2, 3, 1, ensemble=-2), "ensemble", "-2", ["positive integer"]),
    ("lstm ensemble 1.0", lambda: LSTM(2, 3, 1, ensemble=1.0), "ensemble", "1.0", ["positive integer"]),
    ("gru ensemble 0", lambda: GRU(2, 3, 1, ensemble=0), "ensemble", "0", ["positive integer"]),
    ("mlp ensemble True", lambda: MLP([2, 3, 1], ensemble=True), "ensemble", "True", ["positive integer"]),
    ("reference not bool", lambda: GRU(2, 3, 1, reference="no"), "reference", "'no'", ["True or False"]),
    # batch norm in training mode needs two examples (evaluation mode does not: tested below)
    ("batch norm N=1", lambda: BN().forward(np.ones((1, 2))), "N", "N = 1", ["N >= 2"]),
    ("batch norm N=1 ensemble", lambda: BN(ensemble=2).forward(np.ones((2, 1, 2))), "N", "N = 1", ["N >= 2"]),
    ("batch norm N=1 shared x", lambda: BN(ensemble=2).forward(np.ones((1, 2))), "N", "N = 1", ["N >= 2"]),
    # initial states of the wrong shape (x: N = 2, T = 5, D = 3; H = 4): one and several layers, with and
    # without an ensemble
    ("gru h0 1-d", run(GRU, h0=(4,)), "h0", "(4,)", ["N, hidden_size", "(1, 2, 4)"]),
    ("rnn 2 layers h0 (N, H)", run(RNN, 2, h0=(2, 4)), "h0", "(2, 4)", ["(layers, N, hidden_size)", "(2, 2, 4)"]),
    ("gru 2 layers h0 3 layers", run(GRU, 2, h0=(3, 2, 4)), "h0", "(3, 2, 4)",
     ["(layers, N, hidden_size)", "(2, 2, 4)"]),
    ("lstm 3 layers h0 width", run(LSTM, 3, h0=(3, 2, 5)), "h0", "(3, 2, 5)", ["(3, 2, 4)"]),
    ("lstm 2 layers c0", run(LSTM, 2, c0=(2, 2, 3)), "c0", "(2, 2, 3)", ["(layers, N, hidden_size)", "(2, 2, 4)"]),
    ("rnn ensemble h0 without R", run(RNN, 1, 3, h0=(2, 4)), "h0", "(2, 4)", ["R, N, hidden_size", "3, 2, 4)"]),
    ("rnn ensemble h0 wrong R", run(RNN, 1, 3, h0=(2, 2, 4)), "h0", "(2, 2, 4)", ["(R, N, hidden_size)", "(3, 2, 4)"]),
    ("lstm ensemble 2 layers h0", run(LSTM, 2, 3, h0=(2, 2, 2, 4)), "h0", "(2, 2, 2, 4)",
     ["(layers, R, N, hidden_size)", "(2, 3, 2, 4)"]),
    ("lstm ensemble 2 layers c0", run(LSTM, 2, 3, c0=(3, 2, 4)), "c0", "(3, 2, 4)",
     ["(layers, R, N, hidden_size)", "(2, 3, 2, 4)"]),
    ("gru ensemble 2 layers h0", run(GRU, 2, 2, h0=(2, 2, 3, 4)), "h0", "(2, 2, 3, 4)", ["(2, 2, 2, 4)"]),
    # x of the wrong member count
    ("rnn x members", lambda: RNN(3, 4, 1, ensemble=3).forward(np.ones((2, 2, 5, 3))), "x", "(2, 2, 5, 3)",
     ["(R, N, T, input_size)", "(3, "]),
    ("gru x members", lambda: GRU(3, 4, 1, ensemble=3).forward(np.ones((4, 2, 5, 3))), "x", "(4, 2, 5, 3)",
     ["(R, N, T, input_size)", "(3, "]),
    ("lstm x members", lambda: LSTM(3, 4, 1, ensemble=2).forward(np.ones((3, 2, 5, 3))), "x", "(3, 2, 5, 3)",
     ["(R, N, T, input_size)", "(2, "]),
    ("mlp x members", lambda: MLP([3, 4, 1], ensemble=3).forward(np.ones((2, 2, 3))), "x", "(2, 2, 3)",
     ["(R, N, sizes[0])", "(3, "]),
    ("mlp x extra axis", lambda: MLP([3, 4, 1], ensemble=3).forward(np.ones((1, 3, 2, 3))), "x", "(1, 3, 2, 3)",
     ["(N, sizes[0]) or (R, N, sizes[0])"]),
    # rng lists
    ("rng list too short", lambda: MLP([3, 4, 1], ensemble=3, rng=gens(2)), "rng", "2", ["ensemble = 3", "Generator"]),
    ("rng list too long", lambda: RNN(3, 4, 1, ensemble=3, rng=gens(4)), "rng", "4", ["ensemble = 3", "Generator"]),
    ("gru rng list too short", lambda: GRU(3, 4, 1, ensemble=2, rng=gens(1)), "rng", "1",
     ["ensemble = 2", "Generator"]),
    ("rng list without ensemble", lambda: LSTM(3, 4, 1, rng=gens(1)), "rng", "sequence", ["one numpy Generator"]),
    # an ensemble's dout, targets, per-member settings
    ("mlp ensemble dout", lambda: backward_with_dout(MLP([2, 3, 1], ensemble=2), np.ones((4, 1)), (2,)), "dout",
     "(4, 1)", ["(2, 4, 1)"]),
    ("rnn ensemble dout", lambda: backward_with_dout(RNN(2, 3, 1, ensemble=2), np.ones((4, 1)), (2,)), "dout",
     "(4, 1)", ["(2, 4, 1)"]),
    ("loss lead target", lambda: losses.mse(np.ones((3, 2, 2)), np.ones((2, 2, 2)), lead=1), "target", "(2, 2, 2)",
     ["(2, 2)"]),
    ("per-member lr 0", lambda: optim.Adam(G3(), lr=np.array([0.1, 0.0, 0.1])), "lr", "0.0", ["> 0"]),
    ("per-member momentum 1", lambda: optim.SGD(G3(), lr=0.1, momentum=np.array([0.5, 1.0, 0.2])), "momentum", "1.",
     ["[0, 1)"]),
    ("per-member max_norm < 0", lambda: clip.clip_norm(G3(), np.array([1.0, -2.0, 1.0]), ensemble=True), "max_norm",
     "-2.0", ["> 0"]),
]  # fmt: skip


@pytest.mark.parametrize("call,arg,value,allowed", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_argument_raises_one_line_value_error(call, arg, value, allowed):
    with pytest.raises(ValueError) as info:
        call()
    msg = str(info.value)
    assert "\n" not in msg.strip(), f"message is not one line: {msg!r}"
    assert arg in msg, f"message does not name the argument {arg!r}: {msg!r}"
    assert value in msg, f"message does not show the value {value}: {msg!r}"
    for what in allowed:
        assert what in msg, f"message does not say what is allowed ({what!r}): {msg!r}"


def test_spectral_radius_and_norm_together_are_refused():
    with pytest.raises(ValueError, match="spectral_radius.*spectral_norm"):
        RNN(2, 3, 1, spectral_radius=0.9, spectral_norm=0.9)


@pytest.mark.parametrize("cls,layers", [(LSTM, 1), (RNN, 1), (LSTM, 2), (RNN, 3)])
def test_fast_path_cache_without_trace_is_single_use(cls, layers):
    model = cls(2, 3, 1, layers=layers, rng=np.random.default_rng(0))
    out, cache = model.forward(np.ones((1, 4, 2)))
    model.backward(np.ones_like(out), cache)
    with pytest.raises(ValueError, match="cache") as info:
        model.backward(np.ones_like(out), cache)
    assert "\n" not in str(info.value), f"message is not one line: {info.value}"
    out, cache = model.forward(np.ones((1, 4, 2)), trace=True)  # with trace the cache is kept intact
    g1, g2 = model.backward(np.ones_like(out), cache), model.backward(np.ones_like(out), cache)
    assert all(np.array_equal(g1.params[k], g2.params[k]) for k in g1.params), "traced cache changed by a backward"


def test_batch_norm_with_one_example_is_fine_in_evaluation_mode():
    """N = 1 is refused in training mode only (the batch has no variance); evaluation uses the running
    statistics, so one example is normalized like any other."""
    model = MLP([2, 3, 1], norm="batch", rng=np.random.default_rng(0))
    x = np.random.default_rng(1).normal(size=(4, 2))
    model.forward(x)
    one = model.forward(x[:1], train=False)[0]
    assert np.array_equal(one, model.forward(x, train=False)[0][:1]), "eval-mode output of one example differs"


def test_a_one_layer_model_takes_h0_with_or_without_the_layer_axis():
    model = GRU(3, 4, 1, rng=np.random.default_rng(0))
    x, h0 = np.ones((2, 5, 3)), np.random.default_rng(1).normal(size=(2, 4))
    a, b = model.forward(x, h0=h0)[0], model.forward(x, h0=h0[None])[0]
    assert np.array_equal(a, b), "h0 (N, H) and (1, N, H) give different outputs"


def test_load_torch_rejects_wrong_shapes():
    model = RNN(2, 3, 1)
    state = {
        "weight_ih_l0": np.zeros((3, 5)),
        "weight_hh_l0": np.zeros((3, 3)),
        "bias_ih_l0": np.zeros(3),
        "bias_hh_l0": np.zeros(3),
    }
    with pytest.raises(ValueError, match=r"weight_ih.*\(3, 5\)"):
        model.load_torch(state)
    mlp = MLP([2, 3, 1])
    with pytest.raises(ValueError, match="2 Linear layers"):
        mlp.load_torch({"0.weight": np.zeros((3, 2)), "0.bias": np.zeros(3)})
    gru = GRU(2, 3, 1)
    state = {"weight_ih_l0": np.zeros((9, 2)), "weight_hh_l0": np.zeros((9, 3)), "bias_ih_l0": np.zeros(9),
             "bias_hh_l0": np.zeros(6)}  # fmt: skip
    with pytest.raises(ValueError, match=r"bias_hh.*\(6,\)"):
        gru.load_torch(state)
    normed = MLP([2, 3, 1], norm="layer")
    with pytest.raises(ValueError, match="norm layers"):
        normed.load_torch({"0.weight": np.zeros((3, 2)), "0.bias": np.zeros(3), "2.weight": np.zeros((1, 3)),
                           "2.bias": np.zeros(1)})  # fmt: skip
    stacked = RNN(2, 3, 1, layers=2)
    one_layer = {"weight_ih_l0": np.zeros((3, 2)), "weight_hh_l0": np.zeros((3, 3)), "bias_ih_l0": np.zeros(3),
                 "bias_hh_l0": np.zeros(3)}  # fmt: skip
    with pytest.raises(ValueError, match="layers"):  # a one-layer state for a two-layer model
        stacked.load_torch(one_layer)


# ---------------------------------------------------------------- overflow is a result


def huge(model, value=1e200):
    for name, p in model.params.items():
        if "weight" in name:
            p[...] = value
    return model


def random_huge(model, value=1e200):
    """Weights value * N(0, 1): unequal, so that a normalization sees a spread (equal weights give every
    unit the same z, which a norm maps to its bias whatever the size)."""
    rng = np.random.default_rng(1)
    for name, p in model.params.items():
        if "weight" in name and p.ndim - (model.ensemble is not None) == 2:
            p[...] = value * rng.normal(size=p.shape)
    return model


def models_that_overflow():
    rng = np.random.default_rng(0)
    for act in activations.NAMES:
        yield f"mlp-{act}", huge(MLP([3, 4, 4, 2], act, rng=rng)), rng.normal(size=(2, 3))
        yield f"rnn-{act}", huge(RNN(3, 4, 2, act, output="all", rng=rng)), rng.normal(size=(2, 5, 3))
    yield "lstm", huge(LSTM(3, 4, 2, rng=rng)), rng.normal(size=(2, 5, 3))
    yield "lstm-tbptt", huge(LSTM(3, 4, 2, output="all", truncate=2, rng=rng)), rng.normal(size=(2, 5, 3))
    # the new models and options
    yield "mlp-layernorm", random_huge(MLP([3, 4, 4, 2], "tanh", norm="layer", rng=rng)), rng.normal(size=(2, 3))
    mlp = lambda act, **kw: random_huge(MLP([3, 4, 4, 2], act, rng=rng, **kw))  # noqa: E731
    yield "mlp-batchnorm-residual", mlp("sigmoid", norm="batch", residual=True), rng.normal(size=(3, 3))
    yield "mlp-residual", mlp("tanh", residual=True, residual_scale=0.5), rng.normal(size=(2, 3))
    yield "mlp-batchnorm-ensemble", mlp("tanh", norm="batch", ensemble=2), rng.normal(size=(2, 3, 3))
    yield "gru", huge(GRU(3, 4, 2, output="all", rng=rng)), rng.normal(size=(2, 5, 3))
    yield "gru-2layers-tbptt", random_huge(GRU(3, 4, 2, layers=2, truncate=2, rng=rng)), rng.normal(size=(2, 5, 3))
    yield "lstm-3layers", random_huge(LSTM(3, 4, 2, layers=3, rng=rng)), rng.normal(size=(2, 5, 3))
    yield ("rnn-relu-2layers-ensemble", random_huge(RNN(3, 4, 2, "relu", layers=2, output="all", ensemble=2, rng=rng)),
           rng.normal(size=(2, 5, 3)))
    yield "lstm-ensemble", random_huge(LSTM(3, 4, 2, layers=2, ensemble=3, rng=rng)), rng.normal(size=(2, 5, 3))
    yield "gru-ensemble", random_huge(GRU(3, 4, 2, ensemble=2, output="all", rng=rng)), rng.normal(size=(2, 2, 5, 3))
    yield "rnn-reference", huge(RNN(3, 4, 2, "tanh", layers=2, reference=True, rng=rng)), rng.normal(size=(2, 5, 3))
    yield ("lstm-reference", random_huge(LSTM(3, 4, 2, output="all", truncate=2, reference=True, rng=rng)),
           rng.normal(size=(2, 5, 3)))


OVERFLOW = list(models_that_overflow())


def run_overflowing(model, x, loss_name):
    """forward (with and without trace), loss, backward, both clips and every optimizer, with NumPy warnings
    as errors; an ensemble's per-member losses, clips (a threshold per member) and learning rates."""
    ensemble = model.ensemble is not None
    per_member = (lambda v: np.full(model.ensemble, v)) if ensemble else (lambda v: v)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any NumPy RuntimeWarning fails the test
        out, cache = model.forward(x, trace=True)
        y = np.zeros(out.shape[:-1], dtype=int) if loss_name == "cross_entropy" else np.ones_like(out)
        value, dout = losses.get(loss_name)(out, y, lead=int(ensemble))
        grads = model.backward(dout, cache)
        out0, cache0 = model.forward(x)
        model.backward(dout, cache0)
        norm, _ = clip.clip_norm({k: g.copy() for k, g in grads.params.items()}, per_member(1.0), ensemble=ensemble)
        clip.clip_value({k: g.copy() for k, g in grads.params.items()}, per_member(1.0), ensemble=ensemble)
        for name in optim.NAMES:
            optim.get(name, {k: v.copy() for k, v in model.params.items()}, lr=per_member(0.1)).step(grads.params)
        if isinstance(model, MLP) and model.norm == "batch":
            model.forward(x, train=False)
    return value, norm, grads


@pytest.mark.parametrize("loss_name", losses.NAMES)
@pytest.mark.parametrize("label,model,x", OVERFLOW, ids=[o[0] for o in OVERFLOW])
def test_overflow_is_silent(label, model, x, loss_name):
    """No exception, no warning, and np.errstate restored, whatever the loss."""
    errstate = np.geterr()
    run_overflowing(model, x, loss_name)
    assert np.geterr() == errstate, f"{label} {loss_name}: np.errstate leaked: {np.geterr()} (was {errstate})"


@pytest.mark.parametrize("label,model,x", OVERFLOW, ids=[o[0] for o in OVERFLOW])
def test_overflow_is_a_result(label, model, x):
    """With mse the overflow shows: an inf/NaN loss, gradient norm or gradient array."""
    value, norm, grads = run_overflowing(model, x, "mse")
    finite = [np.isfinite(value).all(), np.isfinite(norm).all()] + [np.isfinite(g).all() for g in grads.params.values()]
    assert not all(finite), f"{label}: weights 1e200 gave a finite loss {value!r} and finite gradients (norm {norm!r})"


def test_activations_at_extreme_inputs_are_silent_and_exact():
    """sigmoid(-1000) = 0 and sigmoid(1000) = 1 with no overflow warning (DESIGN: NumPy warnings never
    reach the user); the others are exact there too."""
    z = np.array([-1e300, -1000.0, 0.0, 1000.0, 1e300])
    want = {"identity": z, "sigmoid": [0, 0, 0.5, 1, 1], "tanh": [-1, -1, 0, 1, 1], "relu": [0, 0, 0, 1000, 1e300],
            "leaky_relu": [0.01 * -1e300, 0.01 * -1000.0, 0, 1000, 1e300]}  # fmt: skip
    for name in activations.NAMES:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = activations.get(name)(z)
        assert np.array_equal(got, want[name]), f"{name}({z}) = {got}, want {want[name]}"


def test_gradcheck_suite_has_no_warnings_and_passes():
    """The `gradlab gradcheck` suite (first results, to stay fast) runs silently under 1e-7."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results = [r for r, _ in zip(gradcheck.run_suite(), range(8))]
    assert len(results) == 8
    for r in results:
        assert r.max_rel_error < gradcheck.TOLERANCE, (
            f"{r.model} {r.activation} {r.loss}: {r.worst_param} {r.max_rel_error:.3g}"
        )
        assert r.direction_rel_error < gradcheck.TOLERANCE, (
            f"{r.model} {r.activation} {r.loss}: direction {r.direction_rel_error:.3g}"
        )


def test_gradcheck_variants_cover_every_model_and_option():
    """`gradlab gradcheck` covers the GRU, layers 1-3 for every cell, every norm with and without residual
    connections, and ensembles (the suite itself runs in full in CI's gradcheck job; below, a sample)."""
    vs = list(gradcheck.variants())
    for kind in ("rnn", "lstm", "gru"):
        for layers in (1, 2, 3):
            for output in ("last", "all"):
                for truncate in (None, 2):
                    want = (kind, layers, output, truncate)
                    found = [v for v in vs if (v.kind, v.layers, v.output, v.truncate) == want]
                    assert found, f"no {kind} layers={layers} output={output} truncate={truncate}"
        assert any(v.kind == kind and v.ensemble for v in vs), f"no {kind} ensemble"
    for norm in (None, "layer", "batch"):
        for residual in (False, True):
            found = [v for v in vs if (v.kind, v.norm, v.residual) == ("mlp", norm, residual)]
            assert found, f"no mlp norm={norm} residual={residual}"
    assert any(v.kind == "mlp" and v.ensemble for v in vs), "no mlp ensemble"
    assert len({v.label + str(v.activation) for v in vs}) == len(vs), "two variants share a label"


SAMPLE = ["gru/last/3layers", "lstm/all/tbptt2/2layers", "mlp/batchnorm/residual", "mlp/layernorm",
          "rnn/all/tbptt2/2layers/R2", "mlp/batchnorm/residual/R2"]  # fmt: skip


@pytest.mark.parametrize("label", SAMPLE)
def test_gradcheck_suite_sample_of_the_new_variants(label):
    """The suite's procedure (make_case, reference_loss, check_parameters, check_direction) on a sample of
    the new variants, silently and under 1e-7."""
    v = next(v for v in gradcheck.variants() if v.label == label)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for attempt in range(100):
            model, x, y = gradcheck.make_case(v, "bce", attempt)
            if gradcheck.preactivation_margin(model, x) > 20 * gradcheck.STEP:
                break
        _, grads = gradcheck.forward_backward(model, x, y, "bce")
        ref = gradcheck.reference_loss(model, x, y, "bce")
        errors = gradcheck.check_parameters(ref, model.params, grads.params)
        direction = gradcheck.check_direction(ref, model.params, grads.params, np.random.default_rng(0))
    worst = max(errors, key=errors.__getitem__)
    assert errors[worst] < gradcheck.TOLERANCE, f"{label}: {worst} relative error {errors[worst]:.3g}"
    assert direction < gradcheck.TOLERANCE, f"{label}: direction relative error {direction:.3g}"


# ---------------------------------------------------------------- found by these tests, then fixed


def assert_one_line_naming(call, arg, value, allowed):
    with pytest.raises(ValueError) as info:
        call()
    msg = str(info.value)
    assert "\n" not in msg.strip(), f"message is not one line: {msg!r}"
    assert arg in msg and value in msg, f"message does not name {arg!r} and its value {value}: {msg!r}"
    for what in allowed:
        assert what in msg, f"message does not say what is allowed ({what!r}): {msg!r}"




@pytest.mark.parametrize("call,value", [
    (lambda: MLP([2, 3, 1], rng=0), "0"),
    (lambda: MLP([2, 3, 1], ensemble=2, rng=0), "0"),
    (lambda: GRU(3, 4, 1, ensemble=2, rng=[0, 1]), "0"),
], ids=["int", "int-ensemble", "list-of-ints"])  # fmt: skip
def test_rng_that_is_not_a_generator_is_refused_by_name(call, value):
    assert_one_line_naming(call, "rng", value, ["Generator"])




@pytest.mark.parametrize("call,arg", [
    (lambda: clip.clip_norm({"w": np.ones((3, 2))}, np.array([1.0, 2.0]), ensemble=True), "max_norm"),
    (lambda: clip.clip_value({"w": np.ones((3, 2))}, np.array([1.0, 2.0]), ensemble=True), "max_value"),
    (lambda: clip.clip_value({"w": np.ones((3, 2))}, np.ones((3, 1)), ensemble=True), "max_value"),
    (lambda: optim.SGD({"w": np.ones((3, 2))}, lr=np.array([0.1, 0.2])).step({"w": np.ones((3, 2))}), "lr"),
], ids=["clip_norm-length", "clip_value-length", "clip_value-2d", "sgd-lr-length"])  # fmt: skip
def test_per_member_setting_of_the_wrong_shape_is_refused_by_name(call, arg):
    assert_one_line_naming(call, arg, "", ["3"])  # the number of members it must match


@pytest.mark.parametrize("model", [lambda: MLP([2, 3, 1], ensemble=2), lambda: RNN(2, 3, 1, ensemble=2)],
                         ids=["mlp", "rnn"])  # fmt: skip
def test_load_torch_member_out_of_range_is_refused_by_name(model):
    m = model()
    state = m.torch_state(member=0)
    args = state if isinstance(state, tuple) else (state,)
    assert_one_line_naming(lambda: m.load_torch(*args, member=5), "member", "5", ["0", "1"])


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_lstm_forget_bias_must_be_finite(value):
    assert_one_line_naming(lambda: LSTM(2, 3, 1, forget_bias=value), "forget_bias", str(value), ["finite"])
