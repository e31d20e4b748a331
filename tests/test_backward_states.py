"""Recurrent.backward_states: BPTT started from gradients on the cells' states (the top layer's hidden
sequence, every layer's final h_T and the LSTM's c_T), as a fused torch module receives them, instead of
from the readout's output.

- It equals backward(dout) when dh = W_out^T dy_t at every step (output="all") or dh_n = W_out^T dy on the
  top layer (output="last"): every cell parameter's gradient, dx, dh0 / dc0 and the trace, 1e-12 relative.
- The fast path equals the reference path with dh, dh_n and dc_n all given (1e-12), with and without an
  ensemble; with dh_n alone (no dh) too.
- Against fourth-order central differences (gradlab.nn.gradcheck, h = 1e-4, 1e-7 relative) of the loss
  L = sum_t <G_t, h_t(top)> + sum_j <A_j, h_T(j)> + sum_j <B_j, c_T(j)>, for every parameter and h0 / c0.
- Bad dh / dh_n shapes and a dc_n for a model without a cell state are one-line ValueErrors naming them.
"""

import numpy as np
import pytest
from conftest import assert_rel, build, draw_x, states
from test_paths import assert_same_gradients

from gradlab.nn import gradcheck

TOL = 1e-12
SIZES = (3, 5, 2, 4)  # N, T, D, H
CASES = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]


def draw_states(model, seed, lead=()):
    """Random h0, c0 (layers, *lead, N, H) and the upstream gradients dh (*lead, N, T, H), dh_n, dc_n."""
    N, T, _, H = SIZES
    rng = np.random.default_rng(seed)
    L = model.num_layers
    h0, c0, dh_n, dc_n = (rng.normal(scale=0.5, size=(L, *lead, N, H)) for _ in range(4))
    dh = rng.normal(size=(*lead, N, T, H))
    return h0, c0 if model.cell_state else None, dh, dh_n, dc_n if model.cell_state else None


def one(model, s):
    """A per-layer array as a one-layer model takes it (without the layer axis) or as it is."""
    return None if s is None else (s[0] if model.num_layers == 1 else s)


def compare(g, ref, label, skip=("readout.weight", "readout.bias")):
    """The cells' gradients and the trace's states (the readout's are 0 from backward_states)."""
    assert_same_gradients(g, ref, label, skip, trace_fields=("h", "dh", "dz", "c", "dc"))


@pytest.mark.parametrize("reference", [False, True])
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("output", ["all", "last"])
@pytest.mark.parametrize("kind,activation", CASES)
def test_backward_states_equals_backward_through_the_readout(kind, activation, output, layers, reference):
    model = build(kind, activation, output=output, layers=layers, sizes=SIZES, reference=reference, seed=layers)
    x = draw_x(model, SIZES, seed=7)
    h0, c0, _, _, _ = draw_states(model, seed=8)
    rng = np.random.default_rng(9)
    out, cache = model.forward(x, trace=True, **states(model, h0, c0))
    dout = rng.normal(size=out.shape)
    ref = model.backward(dout, cache)
    w = model.params["readout.weight"]  # (O, H): dL/dh_t = W_out^T dy_t
    _, cache = model.forward(x, trace=True, **states(model, h0, c0))
    if output == "all":
        g = model.backward_states(dout @ w, cache)
    else:
        dh_n = np.zeros((layers, *dout.shape[:-1], w.shape[1]))
        dh_n[-1] = dout @ w
        g = model.backward_states(None, cache, dh_n=one(model, dh_n))
    compare(g, ref, f"{kind}/{activation} output={output} layers={layers} reference={reference}")
    for name in ("readout.weight", "readout.bias"):
        assert not np.any(g.params[name]), f"d/d{name} should be 0 (the loss does not reach the readout), got {g.params[name]}"


@pytest.mark.parametrize("given", ["all", "dh_n only"])
@pytest.mark.parametrize("ensemble", [None, 3])
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("kind,activation", CASES)
def test_backward_states_fast_path_equals_reference(kind, activation, layers, ensemble, given):
    lead = () if ensemble is None else (ensemble,)
    results = []
    for reference in (False, True):
        model = build(kind, activation, layers=layers, sizes=SIZES, reference=reference, ensemble=ensemble, seed=4)
        x = draw_x(model, SIZES, seed=5)
        h0, c0, dh, dh_n, dc_n = draw_states(model, seed=6, lead=lead)
        _, cache = model.forward(x, trace=True, **states(model, h0, c0))
        dh = dh if given == "all" else None
        results.append(model.backward_states(dh, cache, dh_n=one(model, dh_n), dc_n=one(model, dc_n)))
    compare(*results, f"{kind}/{activation} layers={layers} ensemble={ensemble} given={given}", skip=())


def state_loss(model, x, h0, c0, G, A, B):
    """L = sum_t <G_t, h_t of the top layer> + sum_j <A_j, h_T of layer j> + sum_j <B_j, c_T of layer j> (LSTM)."""
    _, cache = model.forward(x, trace=True, **states(model, h0, c0))
    top = cache.layers[-1].hs[1:].swapaxes(0, 1)  # (N, T, H)
    value = float(np.sum(G * top))
    for j, fwd in enumerate(cache.layers):
        value += float(np.sum(A[j] * fwd.hs[-1]))
        if B is not None:
            value += float(np.sum(B[j] * fwd.cs[-1]))
    return value


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("kind,activation", CASES)
def test_backward_states_against_central_differences(kind, activation, layers):
    model = build(kind, activation, layers=layers, sizes=SIZES, seed=11)
    x = draw_x(model, SIZES, seed=12)
    h0, c0, G, A, B = draw_states(model, seed=13)
    _, cache = model.forward(x, trace=True, **states(model, h0, c0))
    g = model.backward_states(G, cache, dh_n=one(model, A), dc_n=one(model, B))
    loss = lambda: state_loss(model, x, h0, c0, G, A, B)  # noqa: E731  reads h0, c0 and the params in place
    label = f"{kind}/{activation} layers={layers}"
    for name, err in gradcheck.check_parameters(loss, model.params, g.params).items():
        assert err < gradcheck.TOLERANCE, f"{label} d/d{name}: relative error {err:.3g} >= {gradcheck.TOLERANCE:g}"
    for name, s, d in (("h0", h0, g.dh0), ("c0", c0, g.dc0)):
        if s is not None:
            numeric = gradcheck.numerical_gradient(loss, s)
            assert_rel(one(model, numeric), d, gradcheck.TOLERANCE, f"{label} d/d{name}")


@pytest.mark.parametrize("reference", [False, True])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("kind,activation", CASES)
def test_backward_states_without_weight_grads_gives_the_same_states(kind, activation, layers, reference):
    """weight_grads=False (what the torch watcher's replay asks for) forms no parameter's gradient and leaves
    every dL/dh_t, dL/dc_t of the trace, dx and dh0 / dc0 bit for bit as with them."""
    model = build(kind, activation, layers=layers, sizes=SIZES, reference=reference, seed=11)
    x = draw_x(model, SIZES, seed=12)
    h0, c0, dh, dh_n, dc_n = draw_states(model, seed=13)
    runs = []
    for weight_grads in (True, False):
        _, cache = model.forward(x, trace=True, **states(model, h0, c0))
        runs.append(model.backward_states(dh, cache, dh_n=one(model, dh_n), dc_n=one(model, dc_n), weight_grads=weight_grads))
    full, lean = runs
    assert lean.params == {}, f"weight_grads=False should form no parameter gradient, got {sorted(lean.params)}"
    for name in ("dx", "dh0", "dc0"):
        a, b = getattr(full, name), getattr(lean, name)
        assert (a is None and b is None) or np.array_equal(a, b), f"{kind} layers={layers}: {name} differs without weight grads"
    for j, (a, b) in enumerate(zip(full.trace.layers, lean.trace.layers)):
        for field in ("h", "dh", "dz", "c", "dc"):
            u, v = getattr(a, field), getattr(b, field)
            assert (u is None and v is None) or np.array_equal(u, v), f"{kind} layer {j}: trace.{field} differs without weight grads"


def test_backward_states_rejects_bad_shapes_and_a_cell_state_it_does_not_have():
    model = build("rnn", layers=2, sizes=SIZES)
    N, T, _, H = SIZES
    _, cache = model.forward(draw_x(model, SIZES), trace=True)
    with pytest.raises(ValueError, match=r"^dh must have shape \(N, T, hidden_size\) = \(3, 5, 4\), got \(3, 4, 4\)$"):
        model.backward_states(np.zeros((N, T - 1, H)), cache)
    with pytest.raises(ValueError, match=r"^dh_n must have shape \(layers, N, hidden_size\) = \(2, 3, 4\), got \(3, 4\)$"):
        model.backward_states(None, cache, dh_n=np.zeros((N, H)))
    with pytest.raises(ValueError, match="^dc_n is a gradient on the LSTM's cell state; the RNN has none$"):
        model.backward_states(None, cache, dc_n=np.zeros((2, N, H)))
