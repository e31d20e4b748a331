"""Every backward against central finite differences in float64 (gradlab.nn.gradcheck's fourth-order
stencil), relative error (norm-wise, per array) below gradcheck.TOLERANCE = 1e-7.

Truncated BPTT computes the exact gradient of gradcheck.reference_loss (the loss with the state at
every cut held at its current value); the per-step checks below build that function independently,
by unrolling rnn_step_forward / lstm_step_forward by hand.
"""

import numpy as np
import pytest
from conftest import (
    ACTIVATIONS,
    LOSSES,
    OUTPUTS,
    TRUNCATIONS,
    assert_rel,
    build,
    draw_x,
    make_target,
    off_the_kink,
    output_shape,
)

from gradlab.nn import LSTM, MLP, gradcheck, losses, lstm_step_forward, rnn_step_forward, sequence

TOL = gradcheck.TOLERANCE  # 1e-7
ZERO_ATOL = 1e-10  # absolute, for per-step gradients that truncation makes exactly 0 (losses here are O(1))
SIZES = (2, 5, 3, 4)  # N, T, D, H


def case(kind, activation, loss_name, *, output="last", truncate=None, depth=2):
    """(model, x, y) off the ReLU kink."""

    def make(seed):
        model = build(kind, activation, output=output, truncate=truncate, depth=depth, sizes=SIZES, seed=seed)
        x = draw_x(model, SIZES, seed=seed + 1000)
        y = make_target(loss_name, output_shape(model, x), np.random.default_rng(seed + 2000))
        return model, x, y

    return off_the_kink(make)


def check_all_params(model, x, y, loss_name, label):
    _, grads = gradcheck.forward_backward(model, x, y, loss_name)
    ref = gradcheck.reference_loss(model, x, y, loss_name)
    total = 0.0
    for name, p in model.params.items():
        numeric = gradcheck.numerical_gradient(ref, p)
        assert_rel(grads.params[name], numeric, TOL, f"{label} d/d{name}")
        total += float(np.abs(numeric).sum())
    assert total > 1e-6, f"{label}: every gradient is zero, the check would be vacuous"
    return grads


# ---------------------------------------------------------------- parameter gradients


@pytest.mark.parametrize("loss_name", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_mlp_parameter_gradients(depth, activation, loss_name):
    model, x, y = case("mlp", activation, loss_name, depth=depth)
    assert model.depth == depth
    check_all_params(model, x, y, loss_name, f"mlp depth={depth} {activation} {loss_name}")


@pytest.mark.parametrize("output_activation", ACTIVATIONS)
def test_mlp_output_activation_gradients(output_activation):
    margin = 20 * gradcheck.STEP
    for seed in range(200):  # every pre-activation, the output layer's included, off the kink
        rng = np.random.default_rng(seed)
        model = MLP([3, 4, 2], "relu", output_activation, rng=rng, init="xavier_normal")
        model.params["layers.1.bias"] += rng.normal(size=2)
        x = rng.normal(size=(3, 3))
        if min(np.abs(c.z).min() for c in model.forward(x)[1].layers) > margin:
            break
    else:
        raise AssertionError("no draw kept the pre-activations off the kink")
    y = make_target("mse", (3, 2), np.random.default_rng(9))
    check_all_params(model, x, y, "mse", f"mlp output_activation={output_activation}")


@pytest.mark.parametrize("truncate", TRUNCATIONS, ids=lambda k: f"tbptt{k}" if k else "full")
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("loss_name", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_rnn_parameter_gradients(activation, loss_name, output, truncate):
    model, x, y = case("rnn", activation, loss_name, output=output, truncate=truncate)
    check_all_params(model, x, y, loss_name, f"rnn {activation} {loss_name} output={output} truncate={truncate}")


@pytest.mark.parametrize("truncate", TRUNCATIONS, ids=lambda k: f"tbptt{k}" if k else "full")
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("loss_name", LOSSES)
def test_lstm_parameter_gradients(loss_name, output, truncate):
    model, x, y = case("lstm", "tanh", loss_name, output=output, truncate=truncate)
    check_all_params(model, x, y, loss_name, f"lstm {loss_name} output={output} truncate={truncate}")


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_random_direction_check(kind):
    model, x, y = case(kind, "tanh", "mse", output="all")
    _, grads = gradcheck.forward_backward(model, x, y, "mse")
    err = gradcheck.check_direction(gradcheck.reference_loss(model, x, y, "mse"), model.params, grads.params,
                                    np.random.default_rng(0))  # fmt: skip
    assert err < TOL, f"{kind}: directional derivative relative error {err:.3g} >= {TOL:g}"


def test_gradient_check_detects_a_wrong_gradient():
    """The checker is not vacuous: a gradient off by 1e-5 relative in one entry fails it."""
    model, x, y = case("rnn", "tanh", "mse")
    _, grads = gradcheck.forward_backward(model, x, y, "mse")
    ref = gradcheck.reference_loss(model, x, y, "mse")
    wrong = grads.params["weight_hh"].copy()
    wrong[1, 2] += 1e-5 * np.linalg.norm(wrong)
    numeric = gradcheck.numerical_gradient(ref, model.params["weight_hh"])
    assert gradcheck.relative_error(wrong, numeric) > TOL
    assert gradcheck.relative_error(grads.params["weight_hh"], numeric) < TOL


def test_preactivation_margin_one_layer_mlp():
    """A one-layer MLP has no hidden pre-activation, hence no kink: its margin is inf (like a smooth
    model), not an error."""
    model = MLP([3, 2], "relu", rng=np.random.default_rng(0))
    margin = gradcheck.preactivation_margin(model, np.ones((2, 3)))
    assert margin == float("inf"), f"preactivation_margin of MLP([3, 2], relu) = {margin!r}, expected inf"


def test_preactivation_margin_is_the_smallest_hidden_preactivation():
    model, x, _ = case("rnn", "relu", "mse")
    p = model.params
    h, zs = np.zeros((SIZES[0], SIZES[3])), []
    for t in range(SIZES[1]):
        zs.append(x[:, t] @ p["weight_ih"].T + p["bias"] + h @ p["weight_hh"].T)
        h = np.maximum(zs[-1], 0)
    got = gradcheck.preactivation_margin(model, x)
    assert got == pytest.approx(np.abs(zs).min(), rel=1e-12), f"rnn margin {got!r} vs {np.abs(zs).min()!r}"
    mlp = MLP([3, 4, 5, 2], "relu", rng=np.random.default_rng(0))
    xm = np.random.default_rng(1).normal(size=(4, 3))
    z0 = xm @ mlp.params["layers.0.weight"].T + mlp.params["layers.0.bias"]
    z1 = np.maximum(z0, 0) @ mlp.params["layers.1.weight"].T + mlp.params["layers.1.bias"]
    want = min(np.abs(z0).min(), np.abs(z1).min())
    assert gradcheck.preactivation_margin(mlp, xm) == pytest.approx(want, rel=1e-12), "mlp margin"


# ---------------------------------------------------------------- input gradients


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("depth", [1, 3])
def test_mlp_dx(depth, activation):
    model, x, y = case("mlp", activation, "mse", depth=depth)
    _, grads = gradcheck.forward_backward(model, x, y, "mse")
    numeric = gradcheck.numerical_gradient(gradcheck.reference_loss(model, x, y, "mse"), x)
    assert_rel(grads.dx, numeric, TOL, f"mlp depth={depth} {activation} dx")


@pytest.mark.parametrize("truncate", TRUNCATIONS, ids=lambda k: f"tbptt{k}" if k else "full")
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("kind,activation", [("rnn", a) for a in ACTIVATIONS] + [("lstm", "tanh")])
def test_sequence_dx(kind, activation, output, truncate):
    model, x, y = case(kind, activation, "mse", output=output, truncate=truncate)
    _, grads = gradcheck.forward_backward(model, x, y, "mse")
    numeric = gradcheck.numerical_gradient(gradcheck.reference_loss(model, x, y, "mse"), x)
    assert_rel(grads.dx, numeric, TOL, f"{kind} {activation} output={output} truncate={truncate} dx")


def test_input_grad_false_gives_no_dx_and_same_params():
    for kind in ("mlp", "rnn", "lstm"):
        model, x, y = case(kind, "tanh", "mse")
        out, cache = model.forward(x)
        _, dout = losses.mse(out, y)
        full = model.backward(dout, cache)
        out, cache = model.forward(x)
        lean = model.backward(dout, cache, input_grad=False)
        assert lean.dx is None, f"{kind}: dx returned although input_grad=False"
        for name in model.params:
            assert_rel(lean.params[name], full.params[name], 1e-15, f"{kind} {name} with input_grad=False")


# ---------------------------------------------------------------- per-step dL/dh_t, dL/dc_t, dh0, dc0


def cut_steps(T, k):
    """Steps t (0-based) whose input state BPTT(k) holds constant, written out independently of
    sequence.flows_back: counting back from the last step, every k-th boundary (T - t = k, 2k, ...).
    The initial state is never cut: there is nothing before it to cut from, and dh0 (dc0) is the
    first chunk's gradient with respect to its initial state, so that BPTT(k >= T) is full BPTT."""
    return set() if k is None else set(range(T - k, 0, -k))


def test_cut_steps_agree_with_flows_back():
    """Between steps (t >= 1) the schedule is sequence.flows_back's; t = 0 is tested through dh0."""
    for T in range(1, 9):
        for k in (None, 1, 2, 3, 5, 8, 9):
            got = {t for t in range(1, T) if not sequence.flows_back(t, T, k)}
            assert got == cut_steps(T, k), (
                f"T={T} truncate={k}: flows_back cuts {sorted(got)}, want {sorted(cut_steps(T, k))}"
            )


def unrolled_loss(model, x, y, loss_name, h0, c0, dh, dc, fixed=None):
    """The (reference) loss with perturbations dh[s], dc[s] (shape (T + 1, N, H)) added to the
    state h_s, c_s (s = 0 is the initial state), written step by step from the engine's step
    functions. Where truncated BPTT cuts the recurrence (sequence.flows_back(s) false) the next
    step reads the unperturbed state computed beforehand, so a perturbation of h_s reaches the
    readout of every step up to the next cut and nothing after it."""
    p = model.params
    T = x.shape[1]
    is_lstm = isinstance(model, LSTM)
    if fixed is None:
        _, cache = model.forward(x, h0=h0, **({"c0": c0} if is_lstm else {}))
        fixed = cache.hs.copy(), cache.cs.copy() if is_lstm else None
    fixed_h, fixed_c = fixed
    cuts = cut_steps(T, model.truncate)
    h = h0 + dh[0]
    c = c0 + dc[0] if is_lstm else None
    outs = []
    for t in range(T):
        cut = t in cuts
        h_in = fixed_h[t] if cut else h
        xw = x[:, t] @ p["weight_ih"].T + p["bias"]
        if is_lstm:
            step = lstm_step_forward(xw, h_in, fixed_c[t] if cut else c, p["weight_hh"])
            o = step.gates[:, 3 * model.hidden_size :]
            c = step.c + dc[t + 1]
            h = o * np.tanh(c) + dh[t + 1]  # h_t = o * tanh(c_t) sees the perturbed c_t
        else:
            h = rnn_step_forward(xw, h_in, p["weight_hh"], model.act) + dh[t + 1]
        outs.append(h @ p["readout.weight"].T + p["readout.bias"])
    out = outs[-1] if model.output == "last" else np.stack(outs, axis=1)
    return losses.get(loss_name)(out, y)[0]


def traced_case(kind, activation, loss_name, output, truncate):
    model, x, y = case(kind, activation, loss_name, output=output, truncate=truncate)
    rng = np.random.default_rng(5)
    N, T, _, H = SIZES
    h0 = rng.normal(scale=0.5, size=(N, H))
    c0 = rng.normal(scale=0.5, size=(N, H))
    kw = {"c0": c0} if kind == "lstm" else {}
    out, cache = model.forward(x, h0=h0, trace=True, **kw)
    _, dout = losses.get(loss_name)(out, y)
    grads = model.backward(dout, cache)
    return model, x, y, h0, c0, grads


SEQ_CASES = [("rnn", a) for a in ACTIVATIONS] + [("lstm", "tanh")]


@pytest.mark.parametrize("truncate", TRUNCATIONS, ids=lambda k: f"tbptt{k}" if k else "full")
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("kind,activation", SEQ_CASES)
def test_trace_dh_is_the_derivative_wrt_a_perturbation_of_h_t(kind, activation, output, truncate):
    loss_name = "mse"
    model, x, y, h0, c0, grads = traced_case(kind, activation, loss_name, output, truncate)
    N, T, _, H = SIZES
    dh, dc = np.zeros((T + 1, N, H)), np.zeros((T + 1, N, H))
    numeric = gradcheck.numerical_gradient(lambda: unrolled_loss(model, x, y, loss_name, h0, c0, dh, dc), dh)
    label = f"{kind} {activation} output={output} truncate={truncate}"
    assert grads.trace.dh.shape == (N, T, H), f"{label}: trace.dh shape {grads.trace.dh.shape}"
    for t in range(T):
        assert_rel(grads.trace.dh[:, t], numeric[t + 1], TOL, f"{label} dL/dh_t at t={t + 1}", ZERO_ATOL)
    if kind == "lstm":
        numeric_c = gradcheck.numerical_gradient(lambda: unrolled_loss(model, x, y, loss_name, h0, c0, dh, dc), dc)
        for t in range(T):
            assert_rel(grads.trace.dc[:, t], numeric_c[t + 1], TOL, f"{label} dL/dc_t at t={t + 1}", ZERO_ATOL)


@pytest.mark.parametrize("truncate", [1, 2, 3, 4, 5, 6], ids=lambda k: f"tbptt{k}")
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_truncated_dh0_dc0_are_the_first_chunks_gradient(kind, output, truncate):
    """dh0 (dc0) under BPTT(k) against central differences of the reference loss in h0 (c0). T = 5:
    k = 1 and 5 divide T (the first chunk is a full k steps), k = 2, 3, 4 leave a short first chunk,
    k = 6 > T is full BPTT. Whether k divides T must not decide whether h0 has a gradient."""
    model, x, y, h0, c0, grads = traced_case(kind, "tanh", "mse", output, truncate)
    N, T, _, H = SIZES
    dh, dc = np.zeros((T + 1, N, H)), np.zeros((T + 1, N, H))
    loss = lambda: unrolled_loss(model, x, y, "mse", h0, c0, dh, dc)  # noqa: E731
    label = f"{kind} output={output} truncate={truncate} (T={T})"
    assert_rel(grads.dh0, gradcheck.numerical_gradient(loss, dh)[0], TOL, f"{label} dh0", ZERO_ATOL)
    if kind == "lstm":
        assert_rel(grads.dc0, gradcheck.numerical_gradient(loss, dc)[0], TOL, f"{label} dc0", ZERO_ATOL)


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_unrolled_loss_is_the_model_loss(kind, output):
    """The hand-unrolled loss above with zero perturbations is the model's own loss (full BPTT), so
    the per-step checks test the engine and not a private re-implementation."""
    model, x, y, h0, c0, _ = traced_case(kind, "tanh", "mse", output, None)
    zeros = np.zeros((SIZES[1] + 1, SIZES[0], SIZES[3]))
    kw = {"c0": c0} if kind == "lstm" else {}
    want = losses.mse(model.forward(x, h0=h0, **kw)[0], y)[0]
    got = unrolled_loss(model, x, y, "mse", h0, c0, zeros, zeros)
    assert abs(got - want) <= 1e-13 * abs(want), f"{kind} output={output}: unrolled {got!r} vs model {want!r}"


@pytest.mark.parametrize("truncate", [1, 2, 4])
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_reference_loss_is_the_loss_with_states_held_at_the_cuts(kind, output, truncate):
    """gradcheck.reference_loss, which the truncated parameter checks above differentiate, is the
    hand-unrolled loss with the states at the cuts frozen at their values for the original weights."""
    model, x, y = case(kind, "tanh", "mse", output=output, truncate=truncate)
    N, T, _, H = SIZES
    zeros = np.zeros((T + 1, N, H))
    _, cache = model.forward(x)
    fixed = cache.hs.copy(), cache.cs.copy() if kind == "lstm" else None
    ref = gradcheck.reference_loss(model, x, y, "mse")
    rng = np.random.default_rng(11)
    for trial in range(3):
        for p in model.params.values():
            p += rng.normal(scale=0.05, size=p.shape)
        got = ref()
        want = unrolled_loss(model, x, y, "mse", np.zeros((N, H)), np.zeros((N, H)), zeros, zeros, fixed=fixed)
        assert abs(got - want) <= 1e-12 * abs(want), (
            f"{kind} {output} truncate={truncate} trial {trial}: {got!r} vs {want!r}"
        )


@pytest.mark.parametrize("loss_name", LOSSES)
@pytest.mark.parametrize("shape", [(4, 3), (2, 5, 3), (3, 1)])
def test_loss_gradients(loss_name, shape):
    """dL/d(output) of each loss against central differences, for (N, O) and (N, T, O) outputs."""
    if loss_name == "cross_entropy" and shape[-1] == 1:
        shape = shape[:-1] + (2,)
    rng = np.random.default_rng(len(shape))
    a = rng.normal(size=shape) * 2
    y = make_target(loss_name, shape, rng)
    fn = losses.get(loss_name)
    _, grad = fn(a, y)
    assert grad.shape == a.shape and grad.dtype == a.dtype, f"{loss_name} {shape}: grad {grad.shape} {grad.dtype}"
    assert_rel(grad, gradcheck.numerical_gradient(lambda: fn(a, y)[0], a), TOL, f"{loss_name} {shape} dL/da")


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("kind,activation", SEQ_CASES)
def test_dh0_dc0_against_finite_differences_of_the_model(kind, activation, output):
    """Full BPTT: dh0 (and dc0) against central differences of model.forward itself in h0 (c0)."""
    loss_name = "bce"
    model, x, y, h0, c0, grads = traced_case(kind, activation, loss_name, output, None)
    kw = lambda: {"c0": c0} if kind == "lstm" else {}
    loss = lambda: losses.bce(model.forward(x, h0=h0, **kw())[0], y)[0]
    assert_rel(grads.dh0, gradcheck.numerical_gradient(loss, h0), TOL, f"{kind} {activation} {output} dh0")
    if kind == "lstm":
        assert_rel(grads.dc0, gradcheck.numerical_gradient(loss, c0), TOL, f"lstm {output} dc0")
    else:
        assert grads.dc0 is None, "rnn returned a dc0"


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_truncation_stops_dh_at_the_cut(kind):
    """Loss on the last step, BPTT(k): dL/dh_t is exactly 0 for the T - k states before the last k."""
    N, T, _, H = SIZES
    for k in (1, 2, 3):
        model, x, y, h0, c0, grads = traced_case(kind, "tanh", "mse", "last", k)
        dh = grads.trace.dh
        assert np.all(dh[:, : T - k] == 0), f"{kind} truncate={k}: nonzero dL/dh_t before step {T - k + 1}"
        norms = np.linalg.norm(dh[:, T - k :], axis=(0, 2))
        assert np.all(norms > 0), f"{kind} truncate={k}: zero dL/dh_t within the last {k} steps: {norms}"


# ---------------------------------------------------------------- MLP trace: z, a, delta = dL/dz


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("depth", [1, 2, 4])
def test_mlp_trace_delta_is_the_derivative_wrt_a_perturbation_of_z(depth, activation):
    loss_name = "sum_squares"
    model, x, y = case("mlp", activation, loss_name, depth=depth)
    out, cache = model.forward(x, trace=True)
    _, dout = losses.get(loss_name)(out, y)
    tr = model.backward(dout, cache).trace
    perts = [np.zeros_like(z) for z in tr.z]

    def loss():  # the forward written out layer by layer, with perturbations added to each z_l
        a = x
        for l in range(model.depth):
            W, b, act = model.layer(l)
            z = a @ W.T + b + perts[l]
            a = act.forward(z)
        return losses.get(loss_name)(a, y)[0]

    a = x
    for l in range(depth):
        W, b, act = model.layer(l)
        z = a @ W.T + b
        a = act.forward(z)
        label = f"mlp depth={depth} {activation} layer {l}"
        assert_rel(tr.z[l], z, 1e-14, f"{label} trace.z")
        assert_rel(tr.a[l], a, 1e-14, f"{label} trace.a")
        assert_rel(tr.delta[l], gradcheck.numerical_gradient(loss, perts[l]), TOL, f"{label} trace.delta = dL/dz")
