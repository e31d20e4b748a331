"""An ensemble of R = 3 members equals three separately built models with the same weights, member by
member, within 1e-13 (norm-wise relative per array; most are exact): the output, the per-member losses
(lead=1), every gradient, dx, dh0 / dc0, the trace, gradient clipping (norm and value) with a threshold per
member, and optimizer steps (sgd, momentum, adam) with a learning rate per member, for the MLP (plain,
layer norm, batch norm with its running statistics, residual, batch norm + residual) and the RNN, LSTM and
GRU with 2 layers. rng as a list of Generators gives member r the weights of a model built alone from
rng[r]; one Generator gives the members one after the other; an x without the member axis equals x
repeated for every member.
"""

import numpy as np
import pytest
from conftest import LOSSES, assert_rel, make_target
from hypothesis import given, settings
from hypothesis import strategies as st

from gradlab.nn import GRU, LSTM, MLP, RNN, clip, losses, optim

R = 3
TOL = 1e-13
N, T, D, H, O = 4, 5, 3, 4, 2
SEEDS = (11, 12, 13)

CASES = {
    "mlp": ("mlp", {}),
    "mlp-layernorm": ("mlp", {"norm": "layer"}),
    "mlp-batchnorm": ("mlp", {"norm": "batch"}),
    "mlp-residual": ("mlp", {"residual": True, "residual_scale": 0.5}),
    "mlp-batchnorm-residual": ("mlp", {"norm": "batch", "residual": True, "activation": "relu"}),
    "rnn-2layers": ("rnn", {"layers": 2, "output": "all", "truncate": 2}),
    "rnn-2layers-relu-last": ("rnn", {"layers": 2, "activation": "relu", "truncate": 3}),
    "lstm-2layers": ("lstm", {"layers": 2}),
    "lstm-2layers-all": ("lstm", {"layers": 2, "output": "all", "truncate": 2}),
    "gru-2layers": ("gru", {"layers": 2, "output": "all"}),
    "gru-2layers-last": ("gru", {"layers": 2, "truncate": 4}),
}


def make(kind, options, rng, ensemble=None):
    options = dict(options)
    activation = options.pop("activation", "tanh")
    if kind == "mlp":
        return MLP([D, H, H, H, O], activation, rng=rng, ensemble=ensemble, init="xavier_normal", **options)
    if kind == "rnn":
        return RNN(D, H, O, activation, rng=rng, ensemble=ensemble, **options)
    return {"lstm": LSTM, "gru": GRU}[kind](D, H, O, rng=rng, ensemble=ensemble, **options)


def pair(name):
    """(ensemble, [model_0, model_1, model_2]): the members built from rng[r], the models from the same
    seeds alone; then random biases (and norm gains) copied into both, so zero biases hide nothing."""
    kind, options = CASES[name]
    ens = make(kind, options, [np.random.default_rng(s) for s in SEEDS], ensemble=R)
    alone = [make(kind, options, np.random.default_rng(s)) for s in SEEDS]
    rng = np.random.default_rng(5)
    for pname, p in ens.params.items():
        if "bias" in pname or pname.endswith("norm.weight"):
            p += rng.normal(scale=0.3, size=p.shape)
        for r, m in enumerate(alone):
            m.params[pname][...] = p[r]
    return ens, alone


def inputs(ens, seed=6):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(R, N, D) if isinstance(ens, MLP) else (R, N, T, D))


def initial_states(ens):
    """h0, c0 (layers, R, N, H), or None for an MLP."""
    if isinstance(ens, MLP):
        return None, None
    rng = np.random.default_rng(7)
    return (rng.normal(scale=0.5, size=(ens.num_layers, R, N, H)) for _ in range(2))


def forward_kw(model, h0, c0, member=None):
    """forward's h0 / c0 for the ensemble (member None) or member r's model."""
    if h0 is None:
        return {}
    pick = (lambda s: s) if member is None else (lambda s: s[:, member])
    kw = {"h0": pick(h0)}
    if model.cell_state:
        kw["c0"] = pick(c0)
    return kw


def member_of(a, r, layered=False):
    """Member r of an ensemble array; `layered`: the layer axis comes first (dh0, dc0 of a stacked model)."""
    return a[:, r] if layered else a[r]


def target(ens, out, loss_name, rng, shared=False):
    return make_target(loss_name, out.shape[1:] if shared else out.shape, rng)


def compare_gradients(g_ens, g_alone, r, label, stacked):
    for pname, g in g_alone.params.items():
        assert_rel(g_ens.params[pname][r], g, TOL, f"{label} member {r} d/d{pname}")
    assert_rel(g_ens.dx[r], g_alone.dx, TOL, f"{label} member {r} dx")
    for what in ("dh0", "dc0"):
        a, b = getattr(g_ens, what), getattr(g_alone, what)
        assert (a is None) == (b is None), f"{label}: {what} None on one side only"
        if b is not None:
            assert_rel(member_of(a, r, stacked), b, TOL, f"{label} member {r} {what}")


def compare_traces(t_ens, t_alone, r, label):
    if hasattr(t_alone, "layers"):  # a SequenceTrace
        for j, (le, la) in enumerate(zip(t_ens.layers, t_alone.layers)):
            for what in ("h", "dh", "c", "dc", "gates"):
                a, b = getattr(le, what), getattr(la, what)
                assert (a is None) == (b is None), f"{label} layer {j}: trace.{what} None on one side only"
                if b is not None:
                    assert_rel(a[r], b, TOL, f"{label} member {r} layer {j} trace.{what}")
        return
    for what in ("z", "a", "delta", "da"):
        for l, (a, b) in enumerate(zip(getattr(t_ens, what), getattr(t_alone, what))):
            assert_rel(a[r], b, TOL, f"{label} member {r} layer {l} trace.{what}")


@pytest.mark.parametrize("shared_target", [False, True], ids=["own-targets", "shared-target"])
@pytest.mark.parametrize("name", list(CASES))
def test_members_equal_separate_models(name, shared_target):
    """Output, the per-member losses (each of the four), gradients, dx, dh0 / dc0 and the trace."""
    ens, alone = pair(name)
    for pname, p in ens.params.items():
        assert p.shape[0] == R, f"{name}: {pname} has no member axis: {p.shape}"
    x = inputs(ens)
    h0, c0 = initial_states(ens)
    stacked = not isinstance(ens, MLP) and ens.num_layers > 1
    rng = np.random.default_rng(8)
    for loss_name in LOSSES:
        label = f"{name} {loss_name}"
        out, cache = ens.forward(x, trace=True, **forward_kw(ens, h0, c0))
        y = target(ens, out, loss_name, rng, shared_target)
        values, dout = losses.get(loss_name)(out, y, lead=1)
        assert np.shape(values) == (R,), f"{label}: per-member losses have shape {np.shape(values)}"
        g_ens = ens.backward(dout, cache)
        for r, m in enumerate(alone):
            out_r, cache_r = m.forward(x[r], trace=True, **forward_kw(m, h0, c0, r))
            assert_rel(out[r], out_r, TOL, f"{label} member {r} output")
            value_r, dout_r = losses.get(loss_name)(out_r, y if shared_target else y[r])
            ok = abs(values[r] - value_r) <= TOL * abs(value_r)
            assert ok, f"{label} member {r}: loss {values[r]!r}, alone {value_r!r}"
            assert_rel(dout[r], dout_r, TOL, f"{label} member {r} dL/d(output)")
            g_r = m.backward(dout_r, cache_r)
            compare_gradients(g_ens, g_r, r, label, stacked)
            compare_traces(g_ens.trace, g_r.trace, r, label)
    if isinstance(ens, MLP) and ens.norm == "batch":
        for bname, b in ens.buffers.items():
            for r, m in enumerate(alone):
                assert_rel(b[r], m.buffers[bname], TOL, f"{name} member {r} {bname}")
        out = ens.forward(x, train=False)[0]
        for r, m in enumerate(alone):
            assert_rel(out[r], m.forward(x[r], train=False)[0], TOL, f"{name} member {r} eval-mode output")


def gradients(model, x, y, h0, c0, member=None):
    out, cache = model.forward(x, **forward_kw(model, h0, c0, member))
    _, dout = losses.mse(out, y, lead=0 if member is not None else 1)
    return model.backward(dout, cache).params


@pytest.mark.parametrize("mode", ["norm", "value"])
@pytest.mark.parametrize("name", ["mlp-batchnorm-residual", "lstm-2layers", "gru-2layers"])
def test_clipping_per_member_with_a_threshold_per_member(name, mode):
    """clip(..., ensemble=True) with thresholds (R,): each member's norm before and after, and its clipped
    gradients, are those of clipping its model alone with its own threshold; the thresholds are chosen so
    that one member is clipped, one is not, and one barely is."""
    ens, alone = pair(name)
    x, (h0, c0) = inputs(ens), initial_states(ens)
    out = ens.forward(x, **forward_kw(ens, h0, c0))[0]
    y = np.random.default_rng(9).normal(size=out.shape)
    g_ens = gradients(ens, x, y, h0, c0)
    norms = clip.global_norm(g_ens, ensemble=True)
    assert np.shape(norms) == (R,), f"{name}: per-member norms {np.shape(norms)}"
    if mode == "norm":
        c = norms * np.array([0.5, 2.0, 0.999])
    else:
        largest = np.array([max(float(np.abs(g[r]).max()) for g in g_ens.values()) for r in range(R)])
        c = largest * np.array([0.3, 2.0, 0.9])
    before, after = clip.clip(g_ens, mode, c, ensemble=True)
    for r, m in enumerate(alone):
        g_r = gradients(m, x[r], y[r], h0, c0, r)
        assert_rel(norms[r], clip.global_norm(g_r), TOL, f"{name} member {r} global norm")
        b_r, a_r = clip.clip(g_r, mode, float(c[r]))
        label = f"{name} clip {mode} member {r} (threshold {c[r]:.3g})"
        assert abs(before[r] - b_r) <= TOL * b_r, f"{label}: norm before {before[r]!r} vs alone {b_r!r}"
        assert abs(after[r] - a_r) <= TOL * a_r, f"{label}: norm after {after[r]!r} vs alone {a_r!r}"
        for pname, g in g_r.items():
            assert_rel(g_ens[pname][r], g, TOL, f"{label} clipped d/d{pname}")
    if mode == "norm":
        assert after[0] < before[0] and after[1] == before[1] and after[2] < before[2], f"{name}: {before} -> {after}"


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("name", ["mlp-batchnorm", "mlp-residual", "rnn-2layers", "lstm-2layers", "gru-2layers"])
def test_optimizer_steps_per_member_with_a_learning_rate_per_member(name, optimizer):
    """Three training steps (forward, loss, backward, norm clipping, optimizer step) with lr (R,) and a
    clipping threshold (R,): every member's parameters after each step are its model's, trained alone."""
    ens, alone = pair(name)
    x, (h0, c0) = inputs(ens), initial_states(ens)
    y = np.random.default_rng(10).normal(size=ens.forward(x, **forward_kw(ens, h0, c0))[0].shape)
    lr, threshold = np.array([0.05, 0.2, 0.01]), np.array([0.5, 10.0, 1.0])
    opt = optim.get(optimizer, ens.params, lr=lr)
    opts = [optim.get(optimizer, m.params, lr=float(lr[r])) for r, m in enumerate(alone)]
    start = {k: p.copy() for k, p in ens.params.items()}
    for step in range(3):
        g = gradients(ens, x, y, h0, c0)
        clip.clip(g, "norm", threshold, ensemble=True)
        opt.step(g)
        for r, (m, o) in enumerate(zip(alone, opts)):
            g_r = gradients(m, x[r], y[r], h0, c0, r)
            clip.clip(g_r, "norm", float(threshold[r]))
            o.step(g_r)
            for pname, p in m.params.items():
                assert_rel(ens.params[pname][r], p, TOL, f"{name} {optimizer} step {step + 1} member {r} {pname}")
    moved = [max(float(np.abs(ens.params[k][r] - start[k][r]).max()) for k in start) for r in range(R)]
    assert all(v > 0 for v in moved), f"{name} {optimizer}: a member did not move: {moved}"
    if optimizer == "sgd":  # the members moved by their own learning rates
        assert len(set(np.round(moved, 12))) == R, f"{name}: members moved alike despite different lr: {moved}"


@pytest.mark.parametrize("name", list(CASES))
def test_rng_list_gives_each_member_the_model_built_alone(name):
    """rng = [g_0, g_1, g_2]: member r's initial parameters (before any change) are exactly those of the
    model built alone from a generator with g_r's seed; one Generator: the members are drawn one after the
    other, as models built in turn from that generator."""
    kind, options = CASES[name]
    ens = make(kind, options, [np.random.default_rng(s) for s in SEEDS], ensemble=R)
    one = make(kind, options, np.random.default_rng(0), ensemble=R)
    shared = np.random.default_rng(0)
    in_turn = [make(kind, options, shared) for _ in range(R)]
    for r, s in enumerate(SEEDS):
        alone = make(kind, options, np.random.default_rng(s))
        for pname, p in alone.params.items():
            assert ens.params[pname].dtype == p.dtype, f"{name} {pname}: dtype {ens.params[pname].dtype}"
            assert np.array_equal(ens.params[pname][r], p), f"{name} member {r} {pname} differs from the model alone"
            assert np.array_equal(one.params[pname][r], in_turn[r].params[pname]), (
                f"{name} one generator: member {r} {pname} is not the {r}-th model drawn from it"
            )
    weights = [k for k in ens.params if "weight" in k and ens.params[k].ndim == 3]
    assert all(not np.array_equal(ens.params[k][0], ens.params[k][1]) for k in weights), f"{name}: members alike"


@pytest.mark.parametrize("name", list(CASES))
def test_shared_x_equals_x_repeated_per_member(name):
    """x of shape (N, ...) is broadcast to every member: the output, gradients (dx per member), dh0 and the
    trace equal those of x repeated R times."""
    ens, _ = pair(name)
    x = inputs(ens)[0]
    h0, c0 = initial_states(ens)
    results = []
    for xin in (x, np.repeat(x[None], R, axis=0)):
        out, cache = ens.forward(xin, trace=True, **forward_kw(ens, h0, c0))
        dout = np.cos(np.arange(out.size)).reshape(out.shape)
        results.append((out, ens.backward(dout, cache)))
    (out_s, g_s), (out_r, g_r) = results
    assert out_s.shape == out_r.shape, f"{name}: output {out_s.shape} for a shared x, {out_r.shape} repeated"
    assert_rel(out_s, out_r, TOL, f"{name} output")
    for pname in g_r.params:
        assert_rel(g_s.params[pname], g_r.params[pname], TOL, f"{name} d/d{pname}")
    assert g_s.dx.shape == g_r.dx.shape, f"{name}: dx {g_s.dx.shape} for a shared x, {g_r.dx.shape} repeated"
    assert_rel(g_s.dx, g_r.dx, TOL, f"{name} dx")
    if g_r.dh0 is not None:
        assert_rel(g_s.dh0, g_r.dh0, TOL, f"{name} dh0")
        traces = zip(g_s.trace.layers, g_r.trace.layers)
        for j, (a, b) in enumerate(traces):
            assert_rel(a.dh, b.dh, TOL, f"{name} layer {j} trace.dh")


@pytest.mark.parametrize("kind", ["mlp", "rnn", "lstm", "gru"])
def test_an_ensemble_of_one_is_the_model(kind):
    """ensemble=1: one member axis of length 1, and the same numbers as the model without it."""
    options = {} if kind == "mlp" else {"layers": 2}
    ens = make(kind, options, [np.random.default_rng(3)], ensemble=1)
    alone = make(kind, options, np.random.default_rng(3))
    x = inputs(ens)[0]
    out_e, cache_e = ens.forward(x[None])
    out_a, cache_a = alone.forward(x)
    assert out_e.shape == (1, *out_a.shape), f"{kind}: ensemble=1 output {out_e.shape}"
    g_e = ens.backward(np.ones_like(out_e), cache_e)
    g_a = alone.backward(np.ones_like(out_a), cache_a)
    assert_rel(out_e[0], out_a, TOL, f"{kind} output")
    for pname in g_a.params:
        assert_rel(g_e.params[pname][0], g_a.params[pname], TOL, f"{kind} d/d{pname}")


EXACT = [(name, "float64") for name in LOSSES] + [("mse", "float32"), ("sum_squares", "float32")]


@settings(max_examples=60, deadline=None)
@given(
    members=st.integers(1, 12), examples=st.integers(1, 70), steps=st.sampled_from([None, 1, 7]), features=st.integers(1, 5),
    transposed=st.booleans(), seed=st.integers(0, 2**16),
)  # fmt: skip
@pytest.mark.parametrize("loss_name, dtype", EXACT)
def test_a_members_loss_with_lead_1_is_its_loss_alone_bit_for_bit(loss_name, dtype, members, examples, steps, features,
                                                                  transposed, seed):  # fmt: skip
    """gradlab.ensemble trains float64 runs on the lead=1 values: each must be exactly the member's loss alone (its
    squares by np.vecdot of its row against np.vdot alone, its sums over its own entries), also for an output laid
    out time-major (a recurrent readout of every step); the gradient likewise. In float32 only the squares are
    exact: cross_entropy and bce alone divide their float32 sum in float64 (a Python float), with lead=1 in float32."""
    rng = np.random.default_rng(seed)
    shape = (members, examples, features) if steps is None else (members, examples, steps, features)
    a = (rng.normal(size=shape) * 3).astype(dtype)
    if transposed and steps is not None:  # (R, T, N, O) in memory, (R, N, T, O) as an array
        a = np.ascontiguousarray(a.swapaxes(1, 2)).swapaxes(1, 2)
    y = make_target(loss_name, shape, rng)
    y = y if loss_name == "cross_entropy" else y.astype(dtype)
    values, grad = losses.get(loss_name)(a, y, lead=1)
    for r in range(members):
        alone, grad_alone = losses.get(loss_name)(a[r], y[r])
        assert float(values[r]) == alone, f"{loss_name} {dtype} {shape} member {r}: lead=1 {float(values[r])!r}, alone {alone!r}"
        assert np.array_equal(grad[r], grad_alone), f"{loss_name} {dtype} {shape} member {r}: the gradients differ"
