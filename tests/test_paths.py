"""The fast paths (gradlab.nn.fast: in-place buffers, blocks of steps; the default) equal the reference
paths built from the step functions (reference=True) for the RNN, the LSTM and the GRU: the output, every
parameter's gradient, dx, dh0 / dc0 and the trace (h, dh, c, dc, gates of every layer) within 1e-12
relative (norm-wise per array) in float64, over every activation, both loss placements, truncation None,
1, 2, 4 (T = 5 or 6), layers 1-3, with and without an ensemble (R = 3), from random h0 / c0.

The fast backward has two arithmetic paths, with trace (fresh arrays) and without (dL/dz written over the
forward's buffers): both are compared. The LSTM's and the GRU's fast backward form their gate derivatives
a block of steps at a time; the block length is forced to 1 and 2 steps as well as its default (all steps here).
"""

import numpy as np
import pytest
from conftest import ACTIVATIONS, OUTPUTS, TRUNCATIONS, assert_rel, build, draw_x, output_shape, states

from gradlab.nn import gradcheck
from gradlab.nn.fast import gru as fast_gru
from gradlab.nn.fast import lstm as fast_lstm

TOL = 1e-12
CASES = [("rnn", a) for a in ACTIVATIONS] + [("lstm", "tanh"), ("gru", "tanh")]


def run(model, x, h0, c0, dout, trace):
    out, cache = model.forward(x, trace=trace, **states(model, h0, c0))
    return out, model.backward(dout, cache)


def compare(fast, ref, label, trace=True):
    """Two (output, Gradients) results, array by array."""
    (y_f, g_f), (y_r, g_r) = fast, ref
    assert_rel(y_f, y_r, TOL, f"{label} output")
    assert sorted(g_f.params) == sorted(g_r.params), f"{label}: gradient names differ"
    if not trace:  # `fast` ran without trace (`ref` may hold one)
        assert g_f.trace is None, f"{label}: a trace without trace=True"
    assert_same_gradients(g_f, g_r, label, trace_fields=TRACE_FIELDS if trace else ())


TRACE_FIELDS = ("h", "dh", "dz", "c", "dc", "gates")


def assert_same_gradients(g, ref, label, skip=(), trace_fields=TRACE_FIELDS, tol=TOL):
    """Two Gradients, array by array: every parameter's (but those in skip), dx, dh0, dc0 and the trace's
    trace_fields of every layer (none: the trace is not compared)."""
    for name in ref.params:
        if name not in skip:
            assert_rel(g.params[name], ref.params[name], tol, f"{label} d/d{name}")
    for what in ("dx", "dh0", "dc0"):
        a, b = getattr(g, what), getattr(ref, what)
        assert (a is None) == (b is None), f"{label}: {what} is None on one side only"
        if b is not None:
            assert_rel(a, b, tol, f"{label} {what}")
    if not trace_fields:
        return
    assert len(g.trace.layers) == len(ref.trace.layers), f"{label}: trace layer counts differ"
    for j, (la, lb) in enumerate(zip(g.trace.layers, ref.trace.layers)):
        for what in trace_fields:
            a, b = getattr(la, what), getattr(lb, what)
            assert (a is None) == (b is None), f"{label} layer {j}: trace.{what} is None on one side only"
            if b is not None:
                assert_rel(a, b, tol, f"{label} layer {j} trace.{what}")


BLOCKED = {"lstm": fast_lstm, "gru": fast_gru}  # the fast paths that form gate derivatives a block at a time


def block_lengths(kind):
    """The LSTM's and GRU's fast path's steps per block to force (None: its default)."""
    return [None, 1, 2] if kind in BLOCKED else [None]


@pytest.mark.parametrize("ensemble", [None, 3], ids=["single", "R3"])
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("truncate", TRUNCATIONS, ids=lambda k: f"tbptt{k}" if k else "full")
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("kind,activation", CASES)
def test_fast_path_equals_reference_path(kind, activation, output, truncate, layers, ensemble, monkeypatch):
    T = 6 if layers == 2 else 5
    sizes = (3, T, 2, 4)
    models = {ref: build(kind, activation, output=output, truncate=truncate, layers=layers, ensemble=ensemble,
                         sizes=sizes, seed=7, reference=ref) for ref in (False, True)}  # fmt: skip
    fast, ref = models[False], models[True]
    for name in ref.params:
        assert np.array_equal(fast.params[name], ref.params[name]), f"the two builds differ in {name}"
    x = draw_x(fast, sizes, seed=8)
    rng = np.random.default_rng(9)
    lead = () if ensemble is None else (ensemble,)
    h0, c0 = (rng.normal(scale=0.5, size=(layers, *lead, sizes[0], sizes[3])) for _ in range(2))
    dout = rng.normal(size=output_shape(fast, x))
    label = f"{kind} {activation} output={output} truncate={truncate} layers={layers} ensemble={ensemble}"
    want = run(ref, x, h0, c0, dout, trace=True)
    assert np.abs(want[1].dx).sum() > 0 and np.abs(want[1].params["weight_hh"]).sum() > 0, f"{label}: zero gradients"
    compare(run(ref, x, h0, c0, dout, trace=False), want, f"{label} reference without trace", trace=False)
    N, H = sizes[0], sizes[3]
    for K in block_lengths(kind):
        if K is not None:  # the block holds K steps of every member's (N, H) slices
            monkeypatch.setattr(BLOCKED[kind], "BLOCK_BYTES", K * N * H * 8 * int(np.prod(lead or (1,))))
        where = f"{label} block={K or 'default'}"
        compare(run(fast, x, h0, c0, dout, trace=True), want, f"{where} fast with trace")
        compare(run(fast, x, h0, c0, dout, trace=False), want, f"{where} fast without trace", trace=False)


def test_forced_block_lengths_change_the_blocking():
    """The monkeypatched BLOCK_BYTES above does split the steps into blocks: with a block of 2 steps the fast
    LSTM computes its gate derivatives once per block (3 times for T = 5) instead of once."""
    model = build("lstm", sizes=(3, 5, 2, 4), seed=1)
    x = draw_x(model, (3, 5, 2, 4))
    calls = []
    original = fast_lstm.gate_derivatives

    def counting(*args, **kwargs):
        calls.append(args[0].shape[-3])
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fast_lstm, "gate_derivatives", counting)
        out, cache = model.forward(x)
        model.backward(np.ones_like(out), cache)
        assert calls == [5], f"default blocking: gate derivatives for blocks of {calls} steps"
        calls.clear()
        mp.setattr(fast_lstm, "BLOCK_BYTES", 2 * 3 * 4 * 8)
        out, cache = model.forward(x)
        model.backward(np.ones_like(out), cache)
        assert calls == [2, 2, 1], f"2-step blocks: gate derivatives for blocks of {calls} steps"


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_reference_cache_serves_any_number_of_backwards(kind):
    """The reference path never writes into its cache: backward twice (without trace) gives the same
    gradients (the fast path's cache, spent by one backward without trace, is tested in test_validation)."""
    model = build(kind, sizes=(2, 5, 3, 4), reference=True, layers=2)
    x = draw_x(model)
    out, cache = model.forward(x)
    dout = np.cos(np.arange(out.size)).reshape(out.shape)
    g1, g2 = model.backward(dout, cache), model.backward(dout, cache)
    for name in g1.params:
        assert np.array_equal(g1.params[name], g2.params[name]), f"{kind}: second backward differs in {name}"
    assert np.array_equal(g1.dx, g2.dx) and np.array_equal(g1.dh0, g2.dh0), f"{kind}: second backward differs"


def test_the_comparison_sees_a_difference_of_1e_11():
    """The 1e-12 check is not vacuous: a fast path off by 1e-11 relative in one gradient entry fails it."""
    model = build("rnn", sizes=(3, 5, 2, 4))
    x = draw_x(model, (3, 5, 2, 4))
    out, cache = model.forward(x)
    g = model.backward(np.ones_like(out), cache).params["weight_hh"]
    wrong = g.copy()
    wrong[0, 0] += 1e-11 * np.linalg.norm(g)
    assert gradcheck.relative_error(wrong, g) > TOL
