"""Bad arguments raise ValueError with one line naming the argument, the value and what is allowed;
overflow is a result (inf/NaN arrays, no exception, no NumPy warning, no leaked np.errstate)."""

import warnings

import numpy as np
import pytest

from gradlab.nn import LSTM, MLP, RNN, activations, clip, gradcheck, init, losses, optim

G = lambda: {"w": np.ones((2, 2))}
ACT_NAMES = list(activations.NAMES)


def backward_with_dout(model, dout):
    return model.backward(dout, model.forward(np.ones((dout.shape[0], model.sizes[0])))[1])


INIT_NAMES = list(init.NAMES)

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


def test_lstm_cache_without_trace_is_single_use():
    model = LSTM(2, 3, 1, rng=np.random.default_rng(0))
    out, cache = model.forward(np.ones((1, 4, 2)))
    model.backward(np.ones_like(out), cache)
    with pytest.raises(ValueError, match="cache"):
        model.backward(np.ones_like(out), cache)
    out, cache = model.forward(np.ones((1, 4, 2)), trace=True)  # with trace the cache is kept intact
    g1, g2 = model.backward(np.ones_like(out), cache), model.backward(np.ones_like(out), cache)
    assert all(np.array_equal(g1.params[k], g2.params[k]) for k in g1.params), "traced cache changed by a backward"


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


# ---------------------------------------------------------------- overflow is a result


def huge(model, value=1e200):
    for name, p in model.params.items():
        if "weight" in name:
            p[...] = value
    return model


def models_that_overflow():
    rng = np.random.default_rng(0)
    for act in activations.NAMES:
        yield f"mlp-{act}", huge(MLP([3, 4, 4, 2], act, rng=rng)), rng.normal(size=(2, 3))
        yield f"rnn-{act}", huge(RNN(3, 4, 2, act, output="all", rng=rng)), rng.normal(size=(2, 5, 3))
    yield "lstm", huge(LSTM(3, 4, 2, rng=rng)), rng.normal(size=(2, 5, 3))
    yield "lstm-tbptt", huge(LSTM(3, 4, 2, output="all", truncate=2, rng=rng)), rng.normal(size=(2, 5, 3))


OVERFLOW = list(models_that_overflow())


def run_overflowing(model, x, loss_name):
    """forward, loss, backward, both clips and every optimizer, with NumPy warnings as errors."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any NumPy RuntimeWarning fails the test
        out, cache = model.forward(x, trace=True)
        y = np.zeros(out.shape[:-1], dtype=int) if loss_name == "cross_entropy" else np.ones_like(out)
        value, dout = losses.get(loss_name)(out, y)
        grads = model.backward(dout, cache)
        norm, _ = clip.clip_norm({k: g.copy() for k, g in grads.params.items()}, 1.0)
        clip.clip_value({k: g.copy() for k, g in grads.params.items()}, 1.0)
        for name in optim.NAMES:
            optim.get(name, {k: v.copy() for k, v in model.params.items()}, lr=0.1).step(grads.params)
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
    finite = [np.isfinite(value), np.isfinite(norm)] + [np.isfinite(g).all() for g in grads.params.values()]
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
