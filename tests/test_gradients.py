"""Every backward against central finite differences in float64 (gradlab.nn.gradcheck's fourth-order
stencil), relative error (norm-wise, per array) below gradcheck.TOLERANCE = 1e-7: every model (MLP with
and without layer / batch norm and residual connections, RNN, LSTM, GRU with 1-3 layers, ensembles) x
option x loss placement x truncation, for the parameters, dx, dh0 / dc0 and the trace (dL/dh_t and dL/dc_t
of every layer, the MLP's z, a, delta = dL/dz and da = dL/da).

Truncated BPTT computes the exact gradient of gradcheck.reference_loss (the loss with every layer's state
at every cut held at its current value); the per-step checks below build that function independently, by
unrolling the engine's step functions (rnn_step_forward, lstm_step_forward, gru_step_forward) by hand.
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
    loss_lead,
    make_target,
    off_the_kink,
    output_shape,
    states,
)

from gradlab.nn import (
    GRU,
    LSTM,
    MLP,
    gradcheck,
    gru_step_forward,
    losses,
    lstm_step_forward,
    rnn_step_forward,
    sequence,
)

TOL = gradcheck.TOLERANCE  # 1e-7
ZERO_ATOL = 1e-10  # absolute, for gradients that are exactly 0 (beyond a cut, a bias before batch norm)
SIZES = (2, 5, 3, 4)  # N, T, D, H
NORM_SIZES = (4, 5, 3, 4)  # batch norm needs a batch: with N = 2 every normalized value is +-1
STACK_SIZES = (2, 5, 3, 2)  # stacked and ensemble models: H = 2 keeps their central differences affordable
STACK_GAIN = 2.0  # their weights x 2: at gain 1 a 3-layer LSTM's weight_hh gradient nears the stencil's noise
TRUNC_ID = lambda k: f"tbptt{k}" if k else "full"  # noqa: E731


def case(kind, activation, loss_name, *, output="last", truncate=None, depth=2, sizes=SIZES, **options):
    """(model, x, y) off the ReLU kink; options: layers, norm, residual, residual_scale, ensemble."""

    def make(seed):
        model = build(kind, activation, output=output, truncate=truncate, depth=depth, sizes=sizes, seed=seed,
                      **options)  # fmt: skip
        x = draw_x(model, sizes, seed=seed + 1000)
        y = make_target(loss_name, output_shape(model, x), np.random.default_rng(seed + 2000))
        return model, x, y

    return off_the_kink(make)


def check_all_params(model, x, y, loss_name, label, ref=None):
    """Every parameter's gradient (and dx) against central differences of the reference loss."""
    _, grads = gradcheck.forward_backward(model, x, y, loss_name)
    ref = gradcheck.reference_loss(model, x, y, loss_name) if ref is None else ref
    total = 0.0
    for name, p in model.params.items():
        numeric = gradcheck.numerical_gradient(ref, p)
        assert_rel(grads.params[name], numeric, TOL, f"{label} d/d{name}", zero=gradcheck.ZERO)
        total += float(np.abs(numeric).sum())
    assert total > 1e-6, f"{label}: every gradient is zero, the check would be vacuous"
    return grads, ref


def check_dx(model, x, grads, ref, label):
    numeric = gradcheck.numerical_gradient(ref, x)
    assert grads.dx.shape == x.shape, f"{label}: dx shape {grads.dx.shape}, x {x.shape}"
    assert_rel(grads.dx, numeric, TOL, f"{label} dx")
    assert float(np.abs(numeric).sum()) > 1e-6, f"{label}: dx is zero, the check would be vacuous"


# ---------------------------------------------------------------- parameter gradients: MLP


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


# (norm, residual, residual_scale): every MLP option but the plain net, tested above
MLP_OPTIONS = [
    (None, True, 1.0), (None, True, 0.5),
    ("layer", False, 1.0), ("layer", True, 1.0), ("layer", True, -0.7),
    ("batch", False, 1.0), ("batch", True, 1.0), ("batch", True, 0.5),
]  # fmt: skip
OPTION_ID = lambda o: f"{o[0] or 'nonorm'}-{'res' + str(o[2]) if o[1] else 'plain'}"  # noqa: E731


def option_case(option, activation, loss_name, depth=4, **kw):
    norm, residual, scale = option
    return case("mlp", activation, loss_name, depth=depth, sizes=NORM_SIZES, norm=norm, residual=residual,
                residual_scale=scale, **kw)  # fmt: skip


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("option", MLP_OPTIONS, ids=OPTION_ID)
def test_mlp_norm_and_residual_gradients(option, activation):
    """Parameters (the norm layers' gain and bias included) and dx; four weight layers, so that two hidden
    layers have a residual connection (the first's width differs from the input's). The loss cycles."""
    loss_name = LOSSES[(MLP_OPTIONS.index(option) + ACTIVATIONS.index(activation)) % len(LOSSES)]
    model, x, y = option_case(option, activation, loss_name)
    label = f"mlp {OPTION_ID(option)} {activation} {loss_name}"
    names = set(model.params)
    if option[0]:
        assert {f"layers.{l}.norm.{n}" for l in range(3) for n in ("weight", "bias")} <= names, f"{label}: {names}"
    assert [model.has_residual(l) for l in range(4)] == [False, option[1], option[1], False], label
    grads, ref = check_all_params(model, x, y, loss_name, label)
    check_dx(model, x, grads, ref, label)


def test_mlp_bias_before_batch_norm_has_zero_gradient():
    """Batch norm subtracts the batch mean, so the dense bias before it has exact gradient 0 (which the
    checks above accept within ZERO_ATOL): the engine's is rounding noise, far below the other gradients."""
    model, x, y = option_case(("batch", False, 1.0), "tanh", "mse")
    _, grads = gradcheck.forward_backward(model, x, y, "mse")
    scale = max(float(np.linalg.norm(g)) for g in grads.params.values())
    for l in range(3):
        size = float(np.linalg.norm(grads.params[f"layers.{l}.bias"]))
        assert size <= 1e-13 * scale, f"layers.{l}.bias gradient {size:.3g} before batch norm (largest {scale:.3g})"
    assert np.linalg.norm(grads.params["layers.3.bias"]) > 1e-3, "the output bias (no norm after it) has a gradient"


@pytest.mark.parametrize("residual", [False, True])
def test_mlp_batch_norm_eval_mode_gradients(residual):
    """forward(train=False) normalizes with the running statistics (affine in z): parameters and dx of
    that loss, after a few training batches moved the running statistics off their start (0, 1)."""
    model, x, y = option_case(("batch", residual, 0.8), "tanh", "bce")
    rng = np.random.default_rng(3)
    for _ in range(3):
        model.forward(rng.normal(size=x.shape) * 2 + 1)
    assert not np.allclose(model.buffers["layers.0.norm.running_mean"], 0), "running statistics did not move"
    out, cache = model.forward(x, train=False)
    _, dout = losses.bce(out, y)
    grads = model.backward(dout, cache)
    before = {k: b.copy() for k, b in model.buffers.items()}
    ref = lambda: losses.bce(model.forward(x, train=False)[0], y)[0]  # noqa: E731
    label = f"mlp batch norm eval residual={residual}"
    for name, p in model.params.items():
        assert_rel(grads.params[name], gradcheck.numerical_gradient(ref, p), TOL, f"{label} d/d{name}")
    assert_rel(grads.dx, gradcheck.numerical_gradient(ref, x), TOL, f"{label} dx")
    for k, b in model.buffers.items():
        assert np.array_equal(b, before[k]), f"{label}: forward(train=False) changed {k}"


# ---------------------------------------------------------------- parameter gradients: recurrent


@pytest.mark.parametrize("truncate", TRUNCATIONS, ids=TRUNC_ID)
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("loss_name", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_rnn_parameter_gradients(activation, loss_name, output, truncate):
    model, x, y = case("rnn", activation, loss_name, output=output, truncate=truncate)
    check_all_params(model, x, y, loss_name, f"rnn {activation} {loss_name} output={output} truncate={truncate}")


@pytest.mark.parametrize("truncate", TRUNCATIONS, ids=TRUNC_ID)
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("loss_name", LOSSES)
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_gated_parameter_gradients(kind, loss_name, output, truncate):
    model, x, y = case(kind, "tanh", loss_name, output=output, truncate=truncate)
    check_all_params(model, x, y, loss_name, f"{kind} {loss_name} output={output} truncate={truncate}")


STACKED = [("rnn", "tanh"), ("lstm", "tanh"), ("gru", "tanh")]


@pytest.mark.parametrize("truncate", TRUNCATIONS, ids=TRUNC_ID)
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("layers", [2, 3])
@pytest.mark.parametrize("kind,activation", STACKED)
def test_stacked_parameter_and_input_gradients(kind, activation, layers, output, truncate):
    """layers = 2, 3: every layer's parameters (suffix _l{j}) and dx; the loss cycles over the four."""
    loss_name = LOSSES[(layers + OUTPUTS.index(output) + TRUNCATIONS.index(truncate)) % len(LOSSES)]
    model, x, y = case(kind, activation, loss_name, output=output, truncate=truncate, layers=layers, sizes=STACK_SIZES,
                       weight_gain=STACK_GAIN)  # fmt: skip
    label = f"{kind} {activation} layers={layers} {loss_name} output={output} truncate={truncate}"
    assert f"weight_hh_l{layers - 1}" in model.params and f"weight_hh_l{layers}" not in model.params, label
    grads, ref = check_all_params(model, x, y, loss_name, label)
    check_dx(model, x, grads, ref, label)


# ensembles of R = 2: the loss is the sum of the members' (gradcheck.forward_backward), so each member's
# gradient is its own loss's
ENSEMBLE_CASES = [
    ("mlp", "tanh", {}, "last", None), ("mlp", "relu", {"norm": "layer", "residual": True}, "last", None),
    ("mlp", "tanh", {"norm": "batch", "residual": True, "residual_scale": 0.5}, "last", None),
    ("rnn", "tanh", {"layers": 2}, "all", 2), ("rnn", "relu", {"layers": 1}, "last", None),
    ("lstm", "tanh", {"layers": 2}, "all", 2), ("lstm", "tanh", {"layers": 2}, "last", None),
    ("gru", "tanh", {"layers": 2}, "all", 2), ("gru", "tanh", {"layers": 1}, "last", 4),
]  # fmt: skip
ENSEMBLE_ID = lambda c: "-".join(str(v) for v in (c[0], c[1], *c[2].values(), c[3], c[4]))  # noqa: E731


@pytest.mark.parametrize("kind,activation,options,output,truncate", ENSEMBLE_CASES,
                         ids=map(ENSEMBLE_ID, ENSEMBLE_CASES))  # fmt: skip
def test_ensemble_parameter_and_input_gradients(kind, activation, options, output, truncate):
    loss_name = LOSSES[ENSEMBLE_CASES.index((kind, activation, options, output, truncate)) % len(LOSSES)]
    sizes, gain = (NORM_SIZES, 1.0) if kind == "mlp" else (STACK_SIZES, STACK_GAIN)
    model, x, y = case(kind, activation, loss_name, output=output, truncate=truncate, depth=3, sizes=sizes,
                       ensemble=2, weight_gain=gain, **options)  # fmt: skip
    label = f"ensemble R=2 {kind} {activation} {options} {loss_name} output={output} truncate={truncate}"
    assert all(p.shape[0] == 2 for p in model.params.values()), f"{label}: parameters without the member axis"
    grads, ref = check_all_params(model, x, y, loss_name, label)
    check_dx(model, x, grads, ref, label)


@pytest.mark.parametrize("kind,layers,norm", [("rnn", 1, None), ("lstm", 1, None), ("gru", 1, None),
                                               ("lstm", 3, None), ("gru", 2, None), ("mlp", 1, "batch")])  # fmt: skip
def test_random_direction_check(kind, layers, norm):
    opts = {"depth": 4, "sizes": NORM_SIZES, "norm": norm, "residual": True} if kind == "mlp" else {"layers": layers}
    model, x, y = case(kind, "tanh", "mse", output="all", **opts)
    _, grads = gradcheck.forward_backward(model, x, y, "mse")
    err = gradcheck.check_direction(gradcheck.reference_loss(model, x, y, "mse"), model.params, grads.params,
                                    np.random.default_rng(0))  # fmt: skip
    assert err < TOL, f"{kind} layers={layers}: directional derivative relative error {err:.3g} >= {TOL:g}"


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


def test_relative_error_treats_two_tiny_norms_as_zero():
    """relative_error(a, n, zero): 0 when both norms are at most `zero` (gradcheck.ZERO for the suite),
    else the plain relative error, however small the arrays."""
    a, n = np.array([3e-11, 0.0]), np.array([0.0, -4e-11])
    assert gradcheck.relative_error(a, n, gradcheck.ZERO) == 0.0
    assert gradcheck.relative_error(a, n) == pytest.approx(np.linalg.norm(a - n) / 4e-11, rel=1e-12)
    assert gradcheck.relative_error(a * 1e3, n * 1e3, gradcheck.ZERO) == pytest.approx(1.25, rel=1e-12)


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


def test_preactivation_margin_covers_every_layer_and_the_normalized_input():
    """A stacked RNN's margin is over every layer's z_t; a normalized MLP's over the activation's input
    (the normalization of z), which is where the ReLU's kink is."""
    model, x, _ = case("rnn", "relu", "mse", layers=2)
    p, (N, T, _, H) = model.params, SIZES
    inputs, zs = x, []
    for j, suffix in enumerate(("", "_l1")):
        h, hs = np.zeros((N, H)), []
        for t in range(T):
            zs.append(inputs[:, t] @ p["weight_ih" + suffix].T + p["bias" + suffix] + h @ p["weight_hh" + suffix].T)
            h = np.maximum(zs[-1], 0)
            hs.append(h)
        inputs = np.stack(hs, axis=1)
    got = gradcheck.preactivation_margin(model, x)
    assert got == pytest.approx(np.abs(zs).min(), rel=1e-12), f"2-layer rnn margin {got!r} vs {np.abs(zs).min()!r}"
    mlp = MLP([3, 4, 2], "relu", norm="layer", rng=np.random.default_rng(0))
    xm = np.random.default_rng(1).normal(size=(4, 3))
    z0 = xm @ mlp.params["layers.0.weight"].T + mlp.params["layers.0.bias"]
    u0 = (z0 - z0.mean(-1, keepdims=True)) / np.sqrt(z0.var(-1, keepdims=True) + 1e-5)
    got = gradcheck.preactivation_margin(mlp, xm)
    assert got == pytest.approx(np.abs(u0).min(), rel=1e-9), f"layer-norm mlp margin {got!r} vs {np.abs(u0).min()!r}"


# ---------------------------------------------------------------- input gradients


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("depth", [1, 3])
def test_mlp_dx(depth, activation):
    model, x, y = case("mlp", activation, "mse", depth=depth)
    _, grads = gradcheck.forward_backward(model, x, y, "mse")
    numeric = gradcheck.numerical_gradient(gradcheck.reference_loss(model, x, y, "mse"), x)
    assert_rel(grads.dx, numeric, TOL, f"mlp depth={depth} {activation} dx")


SEQ_CASES = [("rnn", a) for a in ACTIVATIONS] + [("lstm", "tanh"), ("gru", "tanh")]


@pytest.mark.parametrize("truncate", TRUNCATIONS, ids=TRUNC_ID)
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("kind,activation", SEQ_CASES)
def test_sequence_dx(kind, activation, output, truncate):
    model, x, y = case(kind, activation, "mse", output=output, truncate=truncate)
    _, grads = gradcheck.forward_backward(model, x, y, "mse")
    numeric = gradcheck.numerical_gradient(gradcheck.reference_loss(model, x, y, "mse"), x)
    assert_rel(grads.dx, numeric, TOL, f"{kind} {activation} output={output} truncate={truncate} dx")


INPUT_GRAD_CASES = [("mlp", {}), ("mlp", {"norm": "batch", "residual": True, "sizes": NORM_SIZES}),
                    ("mlp", {"norm": "layer", "residual": True, "ensemble": 2}), ("rnn", {}), ("lstm", {}),
                    ("gru", {}), ("rnn", {"layers": 3}), ("lstm", {"layers": 2, "output": "all", "truncate": 2}),
                    ("gru", {"layers": 2, "ensemble": 2})]  # fmt: skip


@pytest.mark.parametrize("kind,options", INPUT_GRAD_CASES,
                         ids=[f"{k}-{'-'.join(map(str, o.values()))}" for k, o in INPUT_GRAD_CASES])  # fmt: skip
def test_input_grad_false_gives_no_dx_and_same_params(kind, options):
    model, x, y = case(kind, "tanh", "mse", depth=3, **options)
    out, cache = model.forward(x)
    _, dout = losses.mse(out, y, lead=loss_lead(model))
    full = model.backward(dout, cache)
    out, cache = model.forward(x)
    lean = model.backward(dout, cache, input_grad=False)
    assert lean.dx is None, f"{kind} {options}: dx returned although input_grad=False"
    for name in model.params:
        assert_rel(lean.params[name], full.params[name], 1e-15, f"{kind} {options} {name} with input_grad=False")
    if kind != "mlp":
        assert_rel(lean.dh0, full.dh0, 1e-15, f"{kind} {options} dh0 with input_grad=False")


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


def pname(name, j):
    return name if j == 0 else f"{name}_l{j}"


def fixed_states(model, x, h0, c0):
    """Every layer's states h_0 .. h_T (and c_0 .. c_T) of the unperturbed forward, from its trace:
    (layers, T + 1, ..., N, H)."""
    _, cache = model.forward(x, trace=True, **states(model, h0, c0))
    tr = model.backward(np.zeros(output_shape(model, x)), cache).trace
    stack = lambda s0, seq: np.stack([s0] + [seq[..., :, t, :] for t in range(seq.shape[-2])])  # noqa: E731
    hs = np.stack([stack(h0[j], layer.h) for j, layer in enumerate(tr.layers)])
    cs = np.stack([stack(c0[j], layer.c) for j, layer in enumerate(tr.layers)]) if model.cell_state else None
    return hs, cs


def unrolled_loss(model, x, y, loss_name, h0, c0, dh, dc, fixed=None):
    """The (reference) loss with perturbations dh[j, s], dc[j, s] (shape (layers, T + 1, ..., N, H)) added
    to layer j's state h_s, c_s (s = 0 is the initial state), written step by step from the engine's step
    functions: layer j's perturbed h_t is layer j + 1's input at step t, the top layer's goes to the
    readout. Where truncated BPTT cuts the recurrence (sequence.flows_back(s) false) the next step of
    every layer reads the unperturbed state computed beforehand, so a perturbation of h_s reaches the
    layers above and the readout of every step up to the next cut and nothing after it."""
    p = model.params
    T, L, H = x.shape[-2], model.num_layers, model.hidden_size
    fixed_h, fixed_c = fixed_states(model, x, h0, c0) if fixed is None else fixed
    cuts = cut_steps(T, model.truncate)
    h = [h0[j] + dh[j, 0] for j in range(L)]
    c = [c0[j] + dc[j, 0] for j in range(L)] if model.cell_state else None
    outs = []
    for t in range(T):
        inp = x[..., :, t, :]
        for j in range(L):
            cut = t in cuts
            h_in = fixed_h[j, t] if cut else h[j]
            b_ih = pname("bias_ih" if isinstance(model, GRU) else "bias", j)
            xw = inp @ p[pname("weight_ih", j)].mT + p[b_ih][..., None, :]
            w_hh = p[pname("weight_hh", j)]
            if isinstance(model, LSTM):
                _, c_t, step = lstm_step_forward(xw, h_in, fixed_c[j, t] if cut else c[j], w_hh)
                o = step.gates[..., 3 * H :]
                c[j] = c_t + dc[j, t + 1]
                h[j] = o * np.tanh(c[j]) + dh[j, t + 1]  # h_t = o * tanh(c_t) sees the perturbed c_t
            elif isinstance(model, GRU):
                h[j] = gru_step_forward(xw, h_in, w_hh, p[pname("bias_hh", j)])[0] + dh[j, t + 1]
            else:
                h[j] = rnn_step_forward(xw, h_in, w_hh, model.act)[0] + dh[j, t + 1]
            inp = h[j]
        outs.append(inp @ p["readout.weight"].mT + p["readout.bias"][..., None, :])
    out = outs[-1] if model.output == "last" else np.stack(outs, axis=-2)
    return float(np.sum(losses.get(loss_name)(out, y, lead=loss_lead(model))[0]))


def initial(model, x, seed=5):
    """Random h0, c0 per layer: (layers, ..., N, H)."""
    rng = np.random.default_rng(seed)
    lead = () if model.ensemble is None else (model.ensemble,)
    shape = (model.num_layers, *lead, x.shape[-3], model.hidden_size)
    return rng.normal(scale=0.5, size=shape), rng.normal(scale=0.5, size=shape)


def traced_case(kind, activation, loss_name, output, truncate, layers=1, ensemble=None, sizes=SIZES):
    model, x, y = case(kind, activation, loss_name, output=output, truncate=truncate, layers=layers,
                       ensemble=ensemble, sizes=sizes)  # fmt: skip
    h0, c0 = initial(model, x)
    out, cache = model.forward(x, trace=True, **states(model, h0, c0))
    _, dout = losses.get(loss_name)(out, y, lead=loss_lead(model))
    grads = model.backward(dout, cache)
    return model, x, y, h0, c0, grads


def per_layer(grads_state, model):
    """dh0 / dc0 as (layers, ..., N, H) (a one-layer model returns them without the layer axis)."""
    return grads_state[None] if model.num_layers == 1 else grads_state


TRACE_CASES = ([("rnn", a, 1, None) for a in ACTIVATIONS] + [("rnn", "tanh", L, None) for L in (2, 3)]
               + [(k, "tanh", L, None) for k in ("lstm", "gru") for L in (1, 2, 3)])  # fmt: skip


def check_trace(model, x, y, loss_name, h0, c0, grads, label):
    """trace.layers[j].dh (and dc) at every step and dh0 (dc0) of every layer against central differences
    of the unrolled loss in perturbations of each state."""
    L, T, N, H = model.num_layers, x.shape[-2], x.shape[-3], model.hidden_size
    lead = () if model.ensemble is None else (model.ensemble,)
    dh, dc = np.zeros((L, T + 1, *lead, N, H)), np.zeros((L, T + 1, *lead, N, H))
    fixed = fixed_states(model, x, h0, c0)
    loss = lambda: unrolled_loss(model, x, y, loss_name, h0, c0, dh, dc, fixed)  # noqa: E731
    tr = grads.trace
    assert len(tr.layers) == L, f"{label}: trace has {len(tr.layers)} layers"
    assert tr.dh is tr.layers[-1].dh, f"{label}: trace.dh is not the top layer's"
    diffs = [("h", dh, grads.dh0)] + ([("c", dc, grads.dc0)] if model.cell_state else [])
    for what, pert, d0 in diffs:
        numeric = gradcheck.numerical_gradient(loss, pert)
        assert float(np.abs(numeric).sum()) > 1e-6, f"{label}: dL/d{what}_t all zero, the check would be vacuous"
        for j in range(L):
            traced = getattr(tr.layers[j], "d" + what)
            assert traced.shape == (*lead, N, T, H), f"{label}: layer {j} trace.d{what} shape {traced.shape}"
            for t in range(T):
                assert_rel(traced[..., :, t, :], numeric[j, t + 1], TOL,
                           f"{label} layer {j} dL/d{what}_t at t={t + 1}", ZERO_ATOL)  # fmt: skip
            assert_rel(per_layer(d0, model)[j], numeric[j, 0], TOL, f"{label} layer {j} d{what}0", ZERO_ATOL)


@pytest.mark.parametrize("truncate", TRUNCATIONS, ids=TRUNC_ID)
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("kind,activation,layers,ensemble", TRACE_CASES,
                         ids=[f"{k}-{a}-L{L}" for k, a, L, _ in TRACE_CASES])  # fmt: skip
def test_trace_dh_is_the_derivative_wrt_a_perturbation_of_h_t(kind, activation, layers, ensemble, output, truncate):
    """dL/dh_t (dL/dc_t) of every layer, and dh0 (dc0), for every cell, layers 1-3, loss placement and
    truncation. The loss cycles over the four."""
    loss_name = LOSSES[(TRACE_CASES.index((kind, activation, layers, ensemble)) + TRUNCATIONS.index(truncate)) % 4]
    sizes = SIZES if layers == 1 else STACK_SIZES
    model, x, y, h0, c0, grads = traced_case(kind, activation, loss_name, output, truncate, layers, ensemble, sizes)
    label = f"{kind} {activation} layers={layers} {loss_name} output={output} truncate={truncate}"
    check_trace(model, x, y, loss_name, h0, c0, grads, label)


@pytest.mark.parametrize("kind,output,truncate", [("rnn", "all", 2), ("lstm", "all", 2), ("gru", "last", 4),
                                                  ("lstm", "last", None)])  # fmt: skip
def test_ensemble_trace_and_initial_state_gradients(kind, output, truncate):
    """The same per-layer checks on an ensemble of R = 2 two-layer models (the member axis first)."""
    model, x, y, h0, c0, grads = traced_case(kind, "tanh", "mse", output, truncate, 2, 2, STACK_SIZES)
    check_trace(model, x, y, "mse", h0, c0, grads, f"ensemble R=2 {kind} layers=2 output={output} truncate={truncate}")


@pytest.mark.parametrize("truncate", [1, 2, 3, 4, 5, 6], ids=lambda k: f"tbptt{k}")
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_truncated_dh0_dc0_are_the_first_chunks_gradient(kind, output, truncate):
    """dh0 (dc0) under BPTT(k) against central differences of the reference loss in h0 (c0). T = 5:
    k = 1 and 5 divide T (the first chunk is a full k steps), k = 2, 3, 4 leave a short first chunk,
    k = 6 > T is full BPTT. Whether k divides T must not decide whether h0 has a gradient."""
    model, x, y, h0, c0, grads = traced_case(kind, "tanh", "mse", output, truncate)
    N, T, _, H = SIZES
    dh, dc = np.zeros((1, T + 1, N, H)), np.zeros((1, T + 1, N, H))
    fixed = fixed_states(model, x, h0, c0)
    loss = lambda: unrolled_loss(model, x, y, "mse", h0, c0, dh, dc, fixed)  # noqa: E731
    label = f"{kind} output={output} truncate={truncate} (T={T})"
    assert grads.dh0.shape == (N, H), f"{label}: dh0 shape {grads.dh0.shape}"
    numeric = gradcheck.numerical_gradient(loss, dh[0, 0])
    if output == "all" or truncate >= T:  # else h0 is beyond the last step's cut: its gradient is 0
        assert np.abs(numeric).sum() > 1e-6, f"{label}: h0 has no influence, the check would be vacuous"
    assert_rel(grads.dh0, numeric, TOL, f"{label} dh0", ZERO_ATOL)
    if kind == "lstm":
        assert_rel(grads.dc0, gradcheck.numerical_gradient(loss, dc[0, 0]), TOL, f"{label} dc0", ZERO_ATOL)


UNROLL_CASES = [(k, L, R) for k in ("rnn", "lstm", "gru") for L, R in ((1, None), (3, None), (2, 2))]


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("kind,layers,ensemble", UNROLL_CASES, ids=[f"{k}-L{L}-R{R}" for k, L, R in UNROLL_CASES])
def test_unrolled_loss_is_the_model_loss(kind, layers, ensemble, output):
    """The hand-unrolled loss above with zero perturbations is the model's own loss (full BPTT), so
    the per-step checks test the engine and not a private re-implementation."""
    model, x, y, h0, c0, _ = traced_case(kind, "tanh", "mse", output, None, layers, ensemble)
    lead = () if ensemble is None else (ensemble,)
    zeros = np.zeros((layers, SIZES[1] + 1, *lead, SIZES[0], SIZES[3]))
    want = float(np.sum(losses.mse(model.forward(x, **states(model, h0, c0))[0], y, lead=loss_lead(model))[0]))
    got = unrolled_loss(model, x, y, "mse", h0, c0, zeros, zeros)
    label = f"{kind} layers={layers} ensemble={ensemble} output={output}"
    assert abs(got - want) <= 1e-13 * abs(want), f"{label}: unrolled {got!r} vs model {want!r}"


@pytest.mark.parametrize("truncate", [1, 2, 4])
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_reference_loss_is_the_loss_with_states_held_at_the_cuts(kind, layers, output, truncate):
    """gradcheck.reference_loss, which the truncated parameter checks above differentiate, is the
    hand-unrolled loss with every layer's states at the cuts frozen at their values for the original weights."""
    model, x, y = case(kind, "tanh", "mse", output=output, truncate=truncate, layers=layers)
    N, T, _, H = SIZES
    zeros = np.zeros((layers, T + 1, N, H))
    h0 = c0 = np.zeros((layers, N, H))
    fixed = fixed_states(model, x, h0, c0)
    ref = gradcheck.reference_loss(model, x, y, "mse")
    rng = np.random.default_rng(11)
    for trial in range(3):
        for p in model.params.values():
            p += rng.normal(scale=0.05, size=p.shape)
        got = ref()
        want = unrolled_loss(model, x, y, "mse", h0, c0, zeros, zeros, fixed=fixed)
        assert abs(got - want) <= 1e-12 * abs(want), (
            f"{kind} layers={layers} {output} truncate={truncate} trial {trial}: {got!r} vs {want!r}"
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


@pytest.mark.parametrize("shared_target", [False, True])
@pytest.mark.parametrize("loss_name", LOSSES)
def test_per_member_loss_gradients(loss_name, shared_target):
    """lead=1 (an ensemble of R = 3): one loss per member, each member's own mean, and dL_r/da_r is the
    gradient of member r's loss alone (central differences of L_r in a_r; 0 in the other members)."""
    rng = np.random.default_rng(7)
    a = rng.normal(size=(3, 4, 2, 3)) * 2
    y = make_target(loss_name, a.shape[1:] if shared_target else a.shape, rng)
    fn = losses.get(loss_name)
    value, grad = fn(a, y, lead=1)
    assert np.shape(value) == (3,) and grad.shape == a.shape, f"{loss_name}: loss {np.shape(value)}, grad {grad.shape}"
    for r in range(3):
        y_r = y if shared_target else y[r]
        alone, grad_alone = fn(a[r], y_r)
        assert abs(value[r] - alone) <= 1e-14 * abs(alone), f"{loss_name} member {r}: {value[r]!r} vs alone {alone!r}"
        assert_rel(grad[r], grad_alone, 1e-14, f"{loss_name} member {r} dL/da vs alone")
        numeric = gradcheck.numerical_gradient(lambda: fn(a, y, lead=1)[0][r], a)
        assert_rel(grad[r], numeric[r], TOL, f"{loss_name} member {r} dL_r/da_r")
        others = np.delete(numeric, r, axis=0)
        assert np.abs(others).max() <= ZERO_ATOL, f"{loss_name}: member {r}'s loss depends on another member"


DH0_CASES = SEQ_CASES + [("rnn", "tanh", 2), ("lstm", "tanh", 3), ("gru", "tanh", 2)]


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("case_", DH0_CASES, ids=["-".join(map(str, c)) for c in DH0_CASES])
def test_dh0_dc0_against_finite_differences_of_the_model(case_, output):
    """Full BPTT: dh0 (and dc0), (layers, N, H) for a stacked model, against central differences of
    model.forward itself in h0 (c0)."""
    kind, activation, layers = (*case_, 1)[:3]
    loss_name = "bce"
    model, x, y, h0, c0, grads = traced_case(kind, activation, loss_name, output, None, layers)
    kw = states(model, h0, c0)
    loss = lambda: losses.bce(model.forward(x, **kw)[0], y)[0]  # noqa: E731
    label = f"{kind} {activation} layers={layers} {output}"
    assert_rel(grads.dh0, gradcheck.numerical_gradient(loss, kw["h0"]), TOL, f"{label} dh0")
    if kind == "lstm":
        assert_rel(grads.dc0, gradcheck.numerical_gradient(loss, kw["c0"]), TOL, f"{label} dc0")
    else:
        assert grads.dc0 is None, f"{label}: returned a dc0"


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_truncation_stops_dh_at_the_cut(kind, layers):
    """Loss on the last step, BPTT(k): dL/dh_t (dL/dc_t) of every layer is exactly 0 for the T - k states
    before the last k, and nonzero within them."""
    N, T, _, H = SIZES
    for k in (1, 2, 3):
        model, x, y, h0, c0, grads = traced_case(kind, "tanh", "mse", "last", k, layers)
        for j, layer in enumerate(grads.trace.layers):
            for what in ("dh", "dc") if kind == "lstm" else ("dh",):
                d = getattr(layer, what)
                label = f"{kind} layers={layers} layer {j} truncate={k} {what}"
                assert np.all(d[:, : T - k] == 0), f"{label}: nonzero before step {T - k + 1}"
                norms = np.linalg.norm(d[:, T - k :], axis=(0, 2))
                assert np.all(norms > 0), f"{label}: zero within the last {k} steps: {norms}"
        assert np.all(per_layer(grads.dh0, model) == 0), f"{kind} layers={layers} truncate={k}: dh0 != 0 beyond the cut"


# ---------------------------------------------------------------- MLP trace: z, a, delta = dL/dz, da = dL/da


def mlp_by_hand(model, x, dz, da, train=True):
    """The MLP's forward written out layer by layer from its definition (dense, the normalization with
    PyTorch's eps over the features or the batch, phi, the residual stream where the widths match), with
    perturbations dz[l] added to z_l and da[l] to a_l: (output, zs, activations)."""
    a, zs, acts = x, [], []
    for l in range(model.depth):
        W, b, act = model.params[f"layers.{l}.weight"], model.params[f"layers.{l}.bias"], model.layer(l)[2]
        z = a @ W.mT + b[..., None, :] + dz[l]
        u = z
        if model.norm is not None and l < model.depth - 1:
            gain, beta = model.params[f"layers.{l}.norm.weight"], model.params[f"layers.{l}.norm.bias"]
            if model.norm == "layer" or train:
                axis = -1 if model.norm == "layer" else -2
                mean = z.mean(axis=axis, keepdims=True)
                var = ((z - mean) ** 2).mean(axis=axis, keepdims=True)
            else:
                mean = model.buffers[f"layers.{l}.norm.running_mean"][..., None, :]
                var = model.buffers[f"layers.{l}.norm.running_var"][..., None, :]
            u = gain[..., None, :] * (z - mean) / np.sqrt(var + 1e-5) + beta[..., None, :]
        f = act.forward(u)
        residual = model.residual and l < model.depth - 1 and model.sizes[l] == model.sizes[l + 1]
        a = (a + model.residual_scale * f if residual else f) + da[l]
        zs.append(z)
        acts.append(a)
    return a, zs, acts


def check_mlp_trace(model, x, y, loss_name, label, train=True):
    out, cache = model.forward(x, trace=True, train=train)
    _, dout = losses.get(loss_name)(out, y, lead=loss_lead(model))
    tr = model.backward(dout, cache).trace
    for what in ("z", "a", "delta", "da"):
        assert len(getattr(tr, what)) == model.depth, f"{label}: trace.{what} has {len(getattr(tr, what))} layers"
    dz, da = [np.zeros_like(z) for z in tr.z], [np.zeros_like(a) for a in tr.a]
    _, zs, acts = mlp_by_hand(model, x, dz, da, train)

    def loss():
        out = mlp_by_hand(model, x, dz, da, train)[0]
        return float(np.sum(losses.get(loss_name)(out, y, lead=loss_lead(model))[0]))

    num_delta = [gradcheck.numerical_gradient(loss, p) for p in dz]
    num_da = [gradcheck.numerical_gradient(loss, p) for p in da]
    for l in range(model.depth):
        where = f"{label} layer {l}"
        assert_rel(tr.z[l], zs[l], 1e-13, f"{where} trace.z")
        assert_rel(tr.a[l], acts[l], 1e-13, f"{where} trace.a")
        assert_rel(tr.delta[l], num_delta[l], TOL, f"{where} trace.delta = dL/dz", ZERO_ATOL)
        assert_rel(tr.da[l], num_da[l], TOL, f"{where} trace.da = dL/da", ZERO_ATOL)
    assert_rel(tr.da[-1], dout, 1e-15, f"{label} trace.da of the output layer = dL/d(output)")
    assert sum(float(np.abs(d).sum()) for d in num_delta) > 1e-6, f"{label}: all deltas zero, the check is vacuous"


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("depth", [1, 2, 4])
def test_mlp_trace_delta_is_the_derivative_wrt_a_perturbation_of_z(depth, activation):
    model, x, y = case("mlp", activation, "sum_squares", depth=depth)
    check_mlp_trace(model, x, y, "sum_squares", f"mlp depth={depth} {activation}")


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("option", MLP_OPTIONS, ids=OPTION_ID)
def test_mlp_norm_and_residual_trace(option, activation):
    """z (before the normalization), a (the residual stream), delta = dL/dz and da = dL/da of every layer
    against a forward written out from the definitions, perturbed at z_l and at a_l."""
    loss_name = LOSSES[MLP_OPTIONS.index(option) % len(LOSSES)]
    model, x, y = option_case(option, activation, loss_name)
    check_mlp_trace(model, x, y, loss_name, f"mlp {OPTION_ID(option)} {activation} {loss_name}")


@pytest.mark.parametrize("option", [("batch", True, 0.5), ("layer", True, 1.0), ("batch", False, 1.0)], ids=OPTION_ID)
def test_mlp_ensemble_and_eval_trace(option):
    """The same on an ensemble of R = 2 (member axis first), and for batch norm in evaluation mode."""
    model, x, y = option_case(option, "tanh", "mse", ensemble=2)
    check_mlp_trace(model, x, y, "mse", f"ensemble R=2 mlp {OPTION_ID(option)}")
    if option[0] == "batch":
        model, x, y = option_case(option, "tanh", "mse")
        model.forward(np.random.default_rng(0).normal(size=x.shape) + 0.5)  # running statistics off (0, 1)
        check_mlp_trace(model, x, y, "mse", f"mlp {OPTION_ID(option)} eval", train=False)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_trace_dz_is_the_gradient_of_the_cells_pre_activations(kind, layers):
    """trace.layers[j].dz = dL/d(W_ih x_t + b_ih + ...): summed over examples and steps it is the (input)
    bias's gradient, and through W_ih it is dL/dx (layer 0) or the layer below's gradient from above; both of
    those are checked against central differences elsewhere, so this ties dz to them."""
    model = build(kind, sizes=(3, 5, 2, 4), layers=layers)
    x = draw_x(model, (3, 5, 2, 4))
    out, cache = model.forward(x, trace=True)
    grads = model.backward(np.cos(np.arange(out.size)).reshape(out.shape), cache)
    bias = "bias_ih" if kind == "gru" else "bias"
    for j, layer in enumerate(grads.trace.layers):
        name = bias if j == 0 else f"{bias}_l{j}"
        assert_rel(layer.dz.sum(axis=(0, 1)), grads.params[name], 1e-12, f"{kind} layer {j}: sum of dz vs d/d{name}")
    assert_rel(grads.trace.layers[0].dz @ model.params["weight_ih"], grads.dx, 1e-12, f"{kind}: dz W_ih vs dx")


@pytest.mark.parametrize("norm", [None, "layer", "batch"])
def test_mlp_trace_phi_is_the_activation_and_a_the_residual_stream(norm):
    """phi[l] = phi(u_l) (the activation's output, what dead units and saturation are judged on) and, for a
    residual layer, a[l] = a[l-1] + s phi[l]; for the others a[l] is phi[l] itself."""
    from gradlab.nn import MLP

    rng = np.random.default_rng(3)
    model = MLP([4, 5, 5, 5, 2], "tanh", norm=norm, residual=True, residual_scale=0.5, rng=rng)
    x = rng.normal(size=(6, 4))
    out, cache = model.forward(x, trace=True)
    trace = model.backward(np.ones_like(out), cache).trace
    for l in range(model.depth):
        expected = model.layer(l)[2](cache.layers[l].u)
        assert_rel(trace.phi[l], expected, 1e-15, f"{norm} layer {l}: phi")
        prev = x if l == 0 else trace.a[l - 1]
        want = prev + 0.5 * trace.phi[l] if model.has_residual(l) else trace.phi[l]
        assert_rel(trace.a[l], want, 1e-15, f"{norm} layer {l}: a (residual {model.has_residual(l)})")
    assert [model.has_residual(l) for l in range(model.depth)] == [False, True, True, False]
