"""Property tests over shapes (N, T, D, H, O, depth), activations, output modes, truncations and
dtypes (hypothesis): shapes and dtypes of everything a forward/backward returns, batch additivity,
truncation at or beyond T equals full BPTT, and the trace costing no change in the results."""

import numpy as np
import pytest
from conftest import ACTIVATIONS, ENGINE, LOSSES, OUTPUTS, assert_close, assert_rel, make_target
from hypothesis import given
from hypothesis import strategies as st

from gradlab.nn import LSTM, MLP, RNN, losses

sizes = st.integers(1, 5)
dtypes = st.sampled_from(["float32", "float64"])


@st.composite
def mlp_cases(draw):
    depth = draw(st.integers(1, 4))
    widths = [draw(sizes) for _ in range(depth + 1)]
    activation, output_activation = draw(st.sampled_from(ACTIVATIONS)), draw(st.sampled_from(ACTIVATIONS))
    return dict(widths=widths, activation=activation, output_activation=output_activation,
                N=draw(sizes), dtype=draw(dtypes), seed=draw(st.integers(0, 1000)))  # fmt: skip


@st.composite
def seq_cases(draw, truncate=True):
    kind = draw(st.sampled_from(["rnn", "lstm"]))
    T = draw(st.integers(1, 6))
    return dict(kind=kind, N=draw(sizes), T=T, D=draw(sizes), H=draw(sizes), O=draw(sizes),
                activation=draw(st.sampled_from(ACTIVATIONS)), output=draw(st.sampled_from(OUTPUTS)),
                truncate=draw(st.one_of(st.none(), st.integers(1, 7))) if truncate else None,
                dtype=draw(dtypes), seed=draw(st.integers(0, 1000)))  # fmt: skip


def make_mlp(c):
    return MLP(
        c["widths"], c["activation"], c["output_activation"], rng=np.random.default_rng(c["seed"]), dtype=c["dtype"]
    )


def make_seq(c, **over):
    c = {**c, **over}
    rng = np.random.default_rng(c["seed"])
    kw = dict(output=c["output"], truncate=c["truncate"], rng=rng, dtype=c["dtype"])
    if c["kind"] == "rnn":
        return RNN(c["D"], c["H"], c["O"], c["activation"], **kw)
    return LSTM(c["D"], c["H"], c["O"], **kw)


def dtype_of(c):
    return np.dtype(c["dtype"])


@ENGINE
@given(c=mlp_cases())
def test_mlp_shapes_and_dtypes(c):
    model = make_mlp(c)
    dt, N, widths = dtype_of(c), c["N"], c["widths"]
    x = np.random.default_rng(0).normal(size=(N, widths[0])).astype(dt)
    out, cache = model.forward(x, trace=True)
    assert out.shape == (N, widths[-1]) and out.dtype == dt, f"{c}: output {out.shape} {out.dtype}"
    grads = model.backward(np.ones_like(out), cache)
    assert set(grads.params) == set(model.params), f"{c}: gradient names {sorted(grads.params)}"
    for name, p in model.params.items():
        assert p.dtype == dt, f"{c}: parameter {name} is {p.dtype}"
        g = grads.params[name]
        assert g.shape == p.shape and g.dtype == dt, f"{c}: grad {name} {g.shape} {g.dtype} vs param {p.shape}"
    assert grads.dx.shape == x.shape and grads.dx.dtype == dt, f"{c}: dx {grads.dx.shape} {grads.dx.dtype}"
    tr = grads.trace
    assert len(tr.z) == len(tr.a) == len(tr.delta) == model.depth, f"{c}: trace has {len(tr.z)} layers"
    for l in range(model.depth):
        for what, arr in (("z", tr.z[l]), ("a", tr.a[l]), ("delta", tr.delta[l])):
            assert arr.shape == (N, widths[l + 1]) and arr.dtype == dt, (
                f"{c}: trace.{what}[{l}] {arr.shape} {arr.dtype}"
            )
    assert np.array_equal(tr.a[-1], out), f"{c}: trace.a[-1] is not the output"


@ENGINE
@given(c=seq_cases())
def test_sequence_shapes_and_dtypes(c):
    model = make_seq(c)
    dt, N, T, D, H, O = dtype_of(c), c["N"], c["T"], c["D"], c["H"], c["O"]
    x = np.random.default_rng(0).normal(size=(N, T, D)).astype(dt)
    out, cache = model.forward(x, trace=True)
    want = (N, O) if c["output"] == "last" else (N, T, O)
    assert out.shape == want and out.dtype == dt, f"{c}: output {out.shape} {out.dtype}, want {want}"
    grads = model.backward(np.ones_like(out), cache)
    gates = 4 if c["kind"] == "lstm" else 1
    shapes = {"weight_ih": (gates * H, D), "weight_hh": (gates * H, H), "bias": (gates * H,),
              "readout.weight": (O, H), "readout.bias": (O,)}  # fmt: skip
    assert {k: p.shape for k, p in model.params.items()} == shapes, f"{c}: parameter shapes"
    for name, p in model.params.items():
        g = grads.params[name]
        assert g.shape == p.shape and g.dtype == dt == p.dtype, f"{c}: grad {name} {g.shape} {g.dtype}"
    assert grads.dx.shape == (N, T, D) and grads.dx.dtype == dt, f"{c}: dx {grads.dx.shape}"
    assert grads.dh0.shape == (N, H) and grads.dh0.dtype == dt, f"{c}: dh0 {grads.dh0.shape}"
    tr = grads.trace
    for what in ("h", "dh") + (("c", "dc") if c["kind"] == "lstm" else ()):
        arr = getattr(tr, what)
        assert arr.shape == (N, T, H) and arr.dtype == dt, f"{c}: trace.{what} {arr.shape} {arr.dtype}"
    if c["kind"] == "lstm":
        assert grads.dc0.shape == (N, H) and grads.dc0.dtype == dt, f"{c}: dc0"
        assert tr.gates.shape == (N, T, 4 * H) and tr.gates.dtype == dt, f"{c}: trace.gates {tr.gates.shape}"
    else:
        assert tr.c is None and tr.dc is None and tr.gates is None and grads.dc0 is None, f"{c}: rnn has LSTM fields"
    last = out if c["output"] == "last" else out[:, -1]
    h_T = tr.h[:, -1]
    assert_close(last, h_T @ model.params["readout.weight"].T + model.params["readout.bias"], f"{c} readout of h_T",
                 rtol=1e-5 if dt == np.float32 else 1e-12, atol=1e-6 if dt == np.float32 else 1e-14)  # fmt: skip


@ENGINE
@given(c=seq_cases())
def test_trace_off_is_none_and_changes_nothing(c):
    model = make_seq(c)
    x = np.random.default_rng(1).normal(size=(c["N"], c["T"], c["D"]))
    out1, cache1 = model.forward(x, trace=True)
    g1 = model.backward(np.ones_like(out1), cache1)
    out0, cache0 = model.forward(x)
    g0 = model.backward(np.ones_like(out0), cache0)
    assert g0.trace is None, f"{c}: a trace without trace=True"
    assert np.array_equal(out0, out1), f"{c}: output depends on trace"
    for name in model.params:
        assert np.array_equal(g0.params[name], g1.params[name]), f"{c}: {name} gradient depends on trace"
    assert np.array_equal(g0.dx, g1.dx) and np.array_equal(g0.dh0, g1.dh0), f"{c}: dx/dh0 depend on trace"


def grads_of(model, x, y, loss_name):
    out, cache = model.forward(x)
    _, dout = losses.get(loss_name)(out, y)
    return model.backward(dout, cache).params


def assert_batch_additive(model, x, y, loss_name, label):
    """The gradient of a batch of 2N equals the mean of its two halves' gradients (the loss is a mean)."""
    N = len(x) // 2
    whole = grads_of(model, x, y, loss_name)
    a, b = grads_of(model, x[:N], y[:N], loss_name), grads_of(model, x[N:], y[N:], loss_name)
    for name in model.params:
        assert_close(whole[name], (a[name] + b[name]) / 2, f"{label} {name}", rtol=1e-10, atol=1e-14)


@ENGINE
@given(c=seq_cases(), loss_name=st.sampled_from(LOSSES))
def test_sequence_batch_additivity(c, loss_name):
    """The loss averages over the batch, so a batch of 2N has the mean gradient of its two halves."""
    c = {**c, "dtype": "float64"}
    model = make_seq(c)
    rng = np.random.default_rng(2)
    N, T = c["N"], c["T"]
    x = rng.normal(size=(2 * N, T, c["D"]))
    y = make_target(loss_name, (2 * N, c["O"]) if c["output"] == "last" else (2 * N, T, c["O"]), rng)
    assert_batch_additive(model, x, y, loss_name, f"{c} {loss_name}")


@ENGINE
@given(c=mlp_cases(), loss_name=st.sampled_from(LOSSES))
def test_mlp_batch_additivity(c, loss_name):
    c = {**c, "dtype": "float64"}
    model = make_mlp(c)
    rng = np.random.default_rng(3)
    N = c["N"]
    x = rng.normal(size=(2 * N, c["widths"][0]))
    y = make_target(loss_name, (2 * N, c["widths"][-1]), rng)
    assert_batch_additive(model, x, y, loss_name, f"{c} {loss_name}")


def full_and_truncated(c, extra):
    """Gradients of the same model with full BPTT and with truncate = T + extra."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(c["N"], c["T"], c["D"]))
    h0, c0 = rng.normal(size=(c["N"], c["H"])), rng.normal(size=(c["N"], c["H"]))
    result = []
    for k in (None, c["T"] + extra):
        model = make_seq(c, truncate=k)
        kw = {"c0": c0} if c["kind"] == "lstm" else {}
        out, cache = model.forward(x, h0=h0, trace=True, **kw)
        result.append(model.backward(np.cos(np.arange(out.size)).reshape(out.shape), cache))
    return result


@ENGINE
@given(c=seq_cases(truncate=False), extra=st.integers(0, 3))
def test_truncate_at_least_T_equals_full_bptt_parameters(c, extra):
    c = {**c, "dtype": "float64"}
    full, trunc = full_and_truncated(c, extra)
    for name in full.params:
        assert_rel(trunc.params[name], full.params[name], 1e-13, f"{c} truncate=T+{extra} {name}")
    assert_rel(trunc.dx, full.dx, 1e-13, f"{c} truncate=T+{extra} dx")
    assert_rel(trunc.trace.dh, full.trace.dh, 1e-13, f"{c} truncate=T+{extra} trace.dh")


@ENGINE
@given(c=seq_cases(truncate=False), extra=st.integers(0, 3))
def test_truncate_at_least_T_equals_full_bptt_initial_state(c, extra):
    """BPTT(k) with k >= T cuts nothing, so dh0 (dc0) are full BPTT's; in particular k = T (the
    last step's loss reaches back all T steps) must not zero them."""
    c = {**c, "dtype": "float64"}
    full, trunc = full_and_truncated(c, extra)
    assert_rel(trunc.dh0, full.dh0, 1e-13, f"{c} truncate=T+{extra} dh0")
    if c["kind"] == "lstm":
        assert_rel(trunc.dc0, full.dc0, 1e-13, f"{c} truncate=T+{extra} dc0")


@ENGINE
@given(c=seq_cases())
def test_float32_agrees_with_float64(c):
    """The same model in float32 and float64: results agree to float32 precision (rtol 1e-4 of the
    largest entry; sizes here are small, so accumulated rounding stays far below that)."""
    x = np.random.default_rng(5).normal(size=(c["N"], c["T"], c["D"]))
    res = {}
    for dt in ("float32", "float64"):
        model = make_seq(c, dtype=dt)
        out, cache = model.forward(x)
        res[dt] = (out, model.backward(np.ones_like(out), cache).params)
    scale = lambda a: max(1.0, float(np.abs(a).max()))
    assert_close(res["float32"][0], res["float64"][0], f"{c} output", atol=1e-4 * scale(res["float64"][0]))
    for name, g in res["float64"][1].items():
        assert_close(res["float32"][1][name], g, f"{c} grad {name}", atol=1e-4 * scale(g))


@pytest.mark.parametrize("kind", ["mlp", "rnn", "lstm"])
def test_same_generator_seed_same_parameters_and_no_global_state(kind):
    def build(seed):
        rng = np.random.default_rng(seed)
        if kind == "mlp":
            return MLP([3, 4, 2], rng=rng).params
        return (RNN if kind == "rnn" else LSTM)(3, 4, 2, rng=rng).params

    state = np.random.get_state()[1].copy()
    a = build(0)
    np.random.seed(123)  # the global state must not matter ...
    b = build(0)
    c = build(1)
    assert all(np.array_equal(a[k], b[k]) for k in a), f"{kind}: same seed, different parameters"
    assert any(not np.array_equal(a[k], c[k]) for k in a), f"{kind}: different seeds, same parameters"
    np.random.set_state(("MT19937", state, 0, 0, 0.0))
    build(2)
    assert np.array_equal(np.random.get_state()[1], state), f"{kind}: building a model drew from the global state"
