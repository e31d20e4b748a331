"""Property tests over shapes (N, T, D, H, O, depth, layers), activations, norms, residual connections,
output modes, truncations, ensembles and dtypes (hypothesis): shapes and dtypes of everything a
forward/backward returns, batch additivity (where it holds: not for batch norm, whose statistics couple
the examples; a test shows it failing there), truncation at or beyond T equals full BPTT for every cell and
number of layers, and the trace costing no change in the results (fast and reference paths)."""

import numpy as np
import pytest
from conftest import ACTIVATIONS, ENGINE, LOSSES, OUTPUTS, assert_close, assert_rel, make_target
from hypothesis import given, settings
from hypothesis import strategies as st

from gradlab.nn import GRU, LSTM, MLP, RNN, gradcheck, losses

sizes = st.integers(1, 5)
dtypes = st.sampled_from(["float32", "float64"])
ensembles = st.sampled_from([None, None, 2])  # a third of the cases with a member axis
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
KINDS = ("rnn", "lstm", "gru")
NORMS = (None, "layer", "batch")
# The properties run once per cell (per norm for the MLP), so that each gets its share of examples:
# 3 x 20 examples instead of ENGINE's 50 over all of them.
SPLIT = settings(ENGINE, max_examples=20)


@st.composite
def mlp_cases(draw, norm=None):
    depth = draw(st.integers(1, 4))
    residual = draw(st.booleans())
    # with residual=True the hidden widths are equal, so that residual connections appear (from the second
    # hidden layer on, or from the first when the input's width happens to match)
    width = draw(sizes)
    hidden = [width] * (depth - 1) if residual else [draw(sizes) for _ in range(depth - 1)]
    widths = [draw(sizes), *hidden, draw(sizes)]
    activation, output_activation = draw(st.sampled_from(ACTIVATIONS)), draw(st.sampled_from(ACTIVATIONS))
    return dict(widths=widths, activation=activation, output_activation=output_activation, norm=norm,
                residual=residual, residual_scale=draw(st.sampled_from([1.0, 0.5, -2.0])), ensemble=draw(ensembles),
                N=draw(st.integers(2 if norm == "batch" else 1, 5)), dtype=draw(dtypes),
                seed=draw(st.integers(0, 1000)))  # fmt: skip


@st.composite
def seq_cases(draw, kind="rnn", truncate=True):
    T = draw(st.integers(1, 6))
    return dict(kind=kind, N=draw(sizes), T=T, D=draw(sizes), H=draw(sizes), O=draw(sizes),
                layers=draw(st.integers(1, 3)), ensemble=draw(ensembles),
                activation=draw(st.sampled_from(ACTIVATIONS)), output=draw(st.sampled_from(OUTPUTS)),
                truncate=draw(st.one_of(st.none(), st.integers(1, 7))) if truncate else None,
                reference=draw(st.booleans()), dtype=draw(dtypes), seed=draw(st.integers(0, 1000)))  # fmt: skip


def make_mlp(c, **over):
    c = {**c, **over}
    return MLP(c["widths"], c["activation"], c["output_activation"], norm=c["norm"], residual=c["residual"],
               residual_scale=c["residual_scale"], ensemble=c["ensemble"], rng=np.random.default_rng(c["seed"]),
               dtype=c["dtype"])  # fmt: skip


def make_seq(c, **over):
    c = {**c, **over}
    rng = np.random.default_rng(c["seed"])
    kw = dict(output=c["output"], truncate=c["truncate"], rng=rng, dtype=c["dtype"], layers=c["layers"],
              ensemble=c["ensemble"], reference=c["reference"])  # fmt: skip
    if c["kind"] == "rnn":
        return RNN(c["D"], c["H"], c["O"], c["activation"], **kw)
    return {"lstm": LSTM, "gru": GRU}[c["kind"]](c["D"], c["H"], c["O"], **kw)


def lead_of(c):
    return () if c["ensemble"] is None else (c["ensemble"],)


def dtype_of(c):
    return np.dtype(c["dtype"])


def seq_x(c, seed, n=None):
    return np.random.default_rng(seed).normal(size=(*lead_of(c), n or c["N"], c["T"], c["D"]))


def seq_states(c, seed):
    """Random h0, c0 in the form forward takes: (layers, ..., N, H), without the layer axis for one layer."""
    rng = np.random.default_rng(seed)
    shape = (*(() if c["layers"] == 1 else (c["layers"],)), *lead_of(c), c["N"], c["H"])
    h0, c0 = rng.normal(size=shape), rng.normal(size=shape)
    return {"h0": h0, "c0": c0} if c["kind"] == "lstm" else {"h0": h0}


@pytest.mark.parametrize("norm", NORMS, ids=lambda n: n or "nonorm")
@SPLIT
@given(data=st.data())
def test_mlp_shapes_and_dtypes(norm, data):
    c = data.draw(mlp_cases(norm), label="case")
    model = make_mlp(c)
    dt, N, widths, lead = dtype_of(c), c["N"], c["widths"], lead_of(c)
    x = np.random.default_rng(0).normal(size=(*lead, N, widths[0])).astype(dt)
    out, cache = model.forward(x, trace=True)
    assert out.shape == (*lead, N, widths[-1]) and out.dtype == dt, f"{c}: output {out.shape} {out.dtype}"
    grads = model.backward(np.ones_like(out), cache)
    depth = len(widths) - 1
    want = {}
    for l in range(depth):
        want[f"layers.{l}.weight"], want[f"layers.{l}.bias"] = (*lead, widths[l + 1], widths[l]), (*lead, widths[l + 1])
        if c["norm"] and l < depth - 1:
            want[f"layers.{l}.norm.weight"] = want[f"layers.{l}.norm.bias"] = (*lead, widths[l + 1])
    assert {k: p.shape for k, p in model.params.items()} == want, f"{c}: parameter shapes"
    stats = ("running_mean", "running_var")
    buffers = {f"layers.{l}.norm.{s}": (*lead, widths[l + 1]) for l in range(depth - 1) for s in stats}
    assert {k: b.shape for k, b in model.buffers.items()} == (buffers if c["norm"] == "batch" else {}), f"{c}: buffers"
    assert all(b.dtype == dt for b in model.buffers.values()), f"{c}: buffer dtypes"
    assert set(grads.params) == set(model.params), f"{c}: gradient names {sorted(grads.params)}"
    for name, p in model.params.items():
        assert p.dtype == dt, f"{c}: parameter {name} is {p.dtype}"
        g = grads.params[name]
        assert g.shape == p.shape and g.dtype == dt, f"{c}: grad {name} {g.shape} {g.dtype} vs param {p.shape}"
    assert grads.dx.shape == x.shape and grads.dx.dtype == dt, f"{c}: dx {grads.dx.shape} {grads.dx.dtype}"
    tr = grads.trace
    assert len(tr.z) == len(tr.a) == len(tr.delta) == len(tr.da) == model.depth, f"{c}: trace has {len(tr.z)} layers"
    for l in range(model.depth):
        for what, arr in (("z", tr.z[l]), ("a", tr.a[l]), ("delta", tr.delta[l]), ("da", tr.da[l])):
            assert arr.shape == (*lead, N, widths[l + 1]) and arr.dtype == dt, (
                f"{c}: trace.{what}[{l}] {arr.shape} {arr.dtype}"
            )
    assert np.array_equal(tr.a[-1], out), f"{c}: trace.a[-1] is not the output"
    for l in range(depth):
        residual = c["residual"] and l < depth - 1 and widths[l] == widths[l + 1]
        assert model.has_residual(l) == residual, f"{c}: has_residual({l}) = {model.has_residual(l)}"


@pytest.mark.parametrize("kind", KINDS)
@SPLIT
@given(data=st.data())
def test_sequence_shapes_and_dtypes(kind, data):
    c = data.draw(seq_cases(kind), label="case")
    model = make_seq(c)
    dt, N, T, D, H, O, L, lead = dtype_of(c), c["N"], c["T"], c["D"], c["H"], c["O"], c["layers"], lead_of(c)
    x = seq_x(c, 0).astype(dt)
    out, cache = model.forward(x, trace=True)
    want = (*lead, N, O) if c["output"] == "last" else (*lead, N, T, O)
    assert out.shape == want and out.dtype == dt, f"{c}: output {out.shape} {out.dtype}, want {want}"
    grads = model.backward(np.ones_like(out), cache)
    G = GATES[c["kind"]] * H
    biases = ("bias_ih", "bias_hh") if c["kind"] == "gru" else ("bias",)
    shapes = {"readout.weight": (*lead, O, H), "readout.bias": (*lead, O)}
    for j in range(L):
        sfx = "" if j == 0 else f"_l{j}"
        shapes |= {"weight_ih" + sfx: (*lead, G, D if j == 0 else H), "weight_hh" + sfx: (*lead, G, H)}
        shapes |= {b + sfx: (*lead, G) for b in biases}
    assert {k: p.shape for k, p in model.params.items()} == shapes, f"{c}: parameter shapes"
    for name, p in model.params.items():
        g = grads.params[name]
        assert g.shape == p.shape and g.dtype == dt == p.dtype, f"{c}: grad {name} {g.shape} {g.dtype}"
    assert grads.dx.shape == (*lead, N, T, D) and grads.dx.dtype == dt, f"{c}: dx {grads.dx.shape}"
    state = (*(() if L == 1 else (L,)), *lead, N, H)
    assert grads.dh0.shape == state and grads.dh0.dtype == dt, f"{c}: dh0 {grads.dh0.shape}, want {state}"
    tr = grads.trace
    assert len(tr.layers) == L, f"{c}: trace has {len(tr.layers)} layers"
    for j, layer in enumerate(tr.layers):
        for what in ("h", "dh") + (("c", "dc") if c["kind"] == "lstm" else ()):
            arr = getattr(layer, what)
            assert arr.shape == (*lead, N, T, H) and arr.dtype == dt, f"{c}: layer {j} trace.{what} {arr.shape}"
        if c["kind"] == "rnn":
            assert layer.gates is None, f"{c}: rnn layer {j} has gates"
        else:
            gates = layer.gates
            assert gates.shape == (*lead, N, T, G) and gates.dtype == dt, f"{c}: layer {j} trace.gates {gates.shape}"
        if c["kind"] != "lstm":
            assert layer.c is None and layer.dc is None, f"{c}: layer {j} has LSTM fields"
        if j > 0:  # layer j's input is layer j - 1's states
            assert np.shape(tr.layers[j - 1].h) == np.shape(layer.h), f"{c}: layer shapes"
    if c["kind"] == "lstm":
        assert grads.dc0.shape == state and grads.dc0.dtype == dt, f"{c}: dc0"
    else:
        assert grads.dc0 is None, f"{c}: {c['kind']} returned a dc0"
    for what in ("h", "dh", "c", "dc", "gates"):
        assert getattr(tr, what) is getattr(tr.layers[-1], what), f"{c}: trace.{what} is not the top layer's"
    last = out if c["output"] == "last" else out[..., -1, :]
    h_T = tr.h[..., -1, :]
    readout = h_T @ model.params["readout.weight"].mT + model.params["readout.bias"][..., None, :]
    assert_close(last, readout, f"{c} readout of h_T", rtol=1e-5 if dt == np.float32 else 1e-12,
                 atol=1e-6 if dt == np.float32 else 1e-14)  # fmt: skip


def same_results(g0, g1, label):
    for name in g1.params:
        assert np.array_equal(g0.params[name], g1.params[name]), f"{label}: {name} gradient depends on trace"
    for what in ("dx", "dh0", "dc0"):
        a, b = getattr(g0, what), getattr(g1, what)
        assert (a is None and b is None) or np.array_equal(a, b), f"{label}: {what} depends on trace"


@pytest.mark.parametrize("kind", KINDS)
@SPLIT
@given(data=st.data())
def test_trace_off_is_none_and_changes_nothing(kind, data):
    """The fast path's backward without trace writes over the forward's buffers; with trace it does not:
    both give the same numbers, bit for bit (and so does the reference path)."""
    c = data.draw(seq_cases(kind), label="case")
    model = make_seq(c)
    x = seq_x(c, 1)
    kw = seq_states(c, 2)
    out1, cache1 = model.forward(x, trace=True, **kw)
    g1 = model.backward(np.ones_like(out1), cache1)
    out0, cache0 = model.forward(x, **kw)
    g0 = model.backward(np.ones_like(out0), cache0)
    assert g0.trace is None, f"{c}: a trace without trace=True"
    assert g1.trace is not None, f"{c}: no trace with trace=True"
    assert np.array_equal(out0, out1), f"{c}: output depends on trace"
    same_results(g0, g1, str(c))


@pytest.mark.parametrize("norm", NORMS, ids=lambda n: n or "nonorm")
@SPLIT
@given(data=st.data())
def test_mlp_trace_off_is_none_and_changes_nothing(norm, data):
    c = data.draw(mlp_cases(norm), label="case")
    c = {**c, "dtype": "float64"}
    model = make_mlp(c)
    x = np.random.default_rng(1).normal(size=(*lead_of(c), c["N"], c["widths"][0]))
    out1, cache1 = model.forward(x, trace=True)
    g1 = model.backward(np.cos(np.arange(out1.size)).reshape(out1.shape), cache1)
    out0, cache0 = model.forward(x)
    g0 = model.backward(np.cos(np.arange(out0.size)).reshape(out0.shape), cache0)
    assert g0.trace is None and g1.trace is not None, f"{c}: trace given for trace=False or missing for trace=True"
    assert np.array_equal(out0, out1), f"{c}: output depends on trace"
    same_results(g0, g1, str(c))


def grads_of(model, x, y, loss_name, lead):
    out, cache = model.forward(x)
    _, dout = losses.get(loss_name)(out, y, lead=lead)
    return model.backward(dout, cache).params


def halves(a, n, axis):
    return np.take(a, range(n), axis=axis), np.take(a, range(n, 2 * n), axis=axis)


def assert_batch_additive(model, x, y, loss_name, label, batch_axis, lead=0):
    """The gradient of a batch of 2N equals the mean of its two halves' gradients (the loss is a mean)."""
    n = x.shape[batch_axis] // 2
    whole = grads_of(model, x, y, loss_name, lead)
    (xa, xb), (ya, yb) = halves(x, n, batch_axis), halves(y, n, lead)
    a, b = grads_of(model, xa, ya, loss_name, lead), grads_of(model, xb, yb, loss_name, lead)
    for name in model.params:
        assert_close(whole[name], (a[name] + b[name]) / 2, f"{label} {name}", rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("kind", KINDS)
@SPLIT
@given(data=st.data(), loss_name=st.sampled_from(LOSSES))
def test_sequence_batch_additivity(kind, data, loss_name):
    """The loss averages over the batch, so a batch of 2N has the mean gradient of its two halves (every
    cell, 1-3 layers, with and without members: each member's loss averages over its own examples)."""
    c = data.draw(seq_cases(kind), label="case")
    c = {**c, "dtype": "float64"}
    model = make_seq(c)
    rng = np.random.default_rng(2)
    N, T, lead = c["N"], c["T"], lead_of(c)
    x = seq_x(c, 3, 2 * N)
    y = make_target(loss_name, (*lead, 2 * N, c["O"]) if c["output"] == "last" else (*lead, 2 * N, T, c["O"]), rng)
    assert_batch_additive(model, x, y, loss_name, f"{c} {loss_name}", x.ndim - 3, len(lead))


@pytest.mark.parametrize("norm", (None, "layer"), ids=lambda n: n or "nonorm")
@SPLIT
@given(data=st.data(), loss_name=st.sampled_from(LOSSES))
def test_mlp_batch_additivity(norm, data, loss_name):
    """Likewise for the MLP, plain, with layer norm (per example) and residual connections."""
    c = data.draw(mlp_cases(norm), label="case")
    c = {**c, "dtype": "float64"}
    model = make_mlp(c)
    rng = np.random.default_rng(3)
    N, lead = c["N"], lead_of(c)
    x = rng.normal(size=(*lead, 2 * N, c["widths"][0]))
    y = make_target(loss_name, (*lead, 2 * N, c["widths"][-1]), rng)
    assert_batch_additive(model, x, y, loss_name, f"{c} {loss_name}", x.ndim - 2, len(lead))


@pytest.mark.parametrize("residual", [False, True])
def test_batch_norm_is_not_batch_additive(residual):
    """Batch norm in training mode normalizes with the batch's statistics, so a batch's gradient is not the
    mean of its halves' (the property above excludes it): two halves drawn around different means give
    gradients that differ from the whole batch's by far more than rounding."""
    rng = np.random.default_rng(4)
    model = MLP([3, 4, 4, 2], "tanh", norm="batch", residual=residual, rng=rng)
    x = np.concatenate([rng.normal(size=(4, 3)) - 2.0, rng.normal(size=(4, 3)) * 3 + 2.0])
    y = rng.normal(size=(8, 2))
    whole = grads_of(model, x, y, "mse", 0)
    a, b = grads_of(model, x[:4], y[:4], "mse", 0), grads_of(model, x[4:], y[4:], "mse", 0)
    errors = {k: gradcheck.relative_error(whole[k], (a[k] + b[k]) / 2) for k in model.params if "layers.0.bias" != k}
    assert min(errors[k] for k in ("layers.0.weight", "layers.1.weight", "layers.2.weight")) > 0.05, (
        f"batch norm looked batch-additive: relative differences {errors}"
    )
    layer = MLP([3, 4, 4, 2], "tanh", norm="layer", residual=residual, rng=np.random.default_rng(4))
    assert_batch_additive(layer, x, y, "mse", "the same case with layer norm", 0)


def full_and_truncated(c, extra):
    """Gradients of the same model with full BPTT and with truncate = T + extra."""
    x = seq_x(c, 4)
    kw = seq_states(c, 5)
    result = []
    for k in (None, c["T"] + extra):
        model = make_seq(c, truncate=k)
        out, cache = model.forward(x, trace=True, **kw)
        result.append(model.backward(np.cos(np.arange(out.size)).reshape(out.shape), cache))
    return result


@pytest.mark.parametrize("kind", KINDS)
@SPLIT
@given(data=st.data(), extra=st.integers(0, 3))
def test_truncate_at_least_T_equals_full_bptt_parameters(kind, data, extra):
    c = data.draw(seq_cases(kind, truncate=False), label="case")
    c = {**c, "dtype": "float64"}
    full, trunc = full_and_truncated(c, extra)
    for name in full.params:
        assert_rel(trunc.params[name], full.params[name], 1e-13, f"{c} truncate=T+{extra} {name}")
    assert_rel(trunc.dx, full.dx, 1e-13, f"{c} truncate=T+{extra} dx")
    for j, (lt, lf) in enumerate(zip(trunc.trace.layers, full.trace.layers)):
        assert_rel(lt.dh, lf.dh, 1e-13, f"{c} truncate=T+{extra} layer {j} trace.dh")
        if c["kind"] == "lstm":
            assert_rel(lt.dc, lf.dc, 1e-13, f"{c} truncate=T+{extra} layer {j} trace.dc")


@pytest.mark.parametrize("kind", KINDS)
@SPLIT
@given(data=st.data(), extra=st.integers(0, 3))
def test_truncate_at_least_T_equals_full_bptt_initial_state(kind, data, extra):
    """BPTT(k) with k >= T cuts nothing, so dh0 (dc0) of every layer are full BPTT's; in particular k = T
    (the last step's loss reaches back all T steps) must not zero them."""
    c = data.draw(seq_cases(kind, truncate=False), label="case")
    c = {**c, "dtype": "float64"}
    full, trunc = full_and_truncated(c, extra)
    assert_rel(trunc.dh0, full.dh0, 1e-13, f"{c} truncate=T+{extra} dh0")
    if c["kind"] == "lstm":
        assert_rel(trunc.dc0, full.dc0, 1e-13, f"{c} truncate=T+{extra} dc0")


@pytest.mark.parametrize("kind", KINDS)
@SPLIT
@given(data=st.data())
def test_float32_agrees_with_float64(kind, data):
    """The same model in float32 and float64: results agree to float32 precision (rtol 1e-4 of the
    largest entry; sizes here are small, so accumulated rounding stays far below that)."""
    c = data.draw(seq_cases(kind), label="case")
    x = seq_x(c, 5)
    res = {}
    for dt in ("float32", "float64"):
        model = make_seq(c, dtype=dt)
        out, cache = model.forward(x)
        res[dt] = (out, model.backward(np.ones_like(out), cache).params)
    scale = lambda a: max(1.0, float(np.abs(a).max()))  # noqa: E731
    assert_close(res["float32"][0], res["float64"][0], f"{c} output", atol=1e-4 * scale(res["float64"][0]))
    for name, g in res["float64"][1].items():
        assert_close(res["float32"][1][name], g, f"{c} grad {name}", atol=1e-4 * scale(g))


BUILDERS = {
    "mlp": lambda rng: MLP([3, 4, 2], rng=rng),
    "mlp-batchnorm-residual": lambda rng: MLP([3, 4, 4, 2], norm="batch", residual=True, rng=rng),
    "rnn": lambda rng: RNN(3, 4, 2, rng=rng),
    "lstm": lambda rng: LSTM(3, 4, 2, rng=rng),
    "gru-2layers": lambda rng: GRU(3, 4, 2, layers=2, rng=rng),
    "lstm-ensemble": lambda rng: LSTM(3, 4, 2, layers=2, ensemble=2, rng=rng),
}


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_same_generator_seed_same_parameters_and_no_global_state(kind):
    def build(seed):
        return BUILDERS[kind](np.random.default_rng(seed)).params

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
