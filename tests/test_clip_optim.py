"""Clipping (Pascanu et al. 2013, Algorithm 1, and by value) and the optimizers' update rules,
as properties over random gradient dicts (hypothesis)."""

import math
import warnings

import numpy as np
import pytest
from conftest import ENGINE, assert_close
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gradlab.nn import clip, optim

shapes = st.one_of(hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=5))
values = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=64)
grad_dicts = st.dictionaries(
    st.sampled_from(["layers.0.weight", "layers.0.bias", "weight_hh", "readout.bias"]),
    shapes.flatmap(lambda s: hnp.arrays(np.float64, s, elements=values)),
    min_size=1,
    max_size=4,
)
thresholds = st.floats(1e-3, 1e3)


def norm_of(grads):
    return math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads.values()))


def copy(grads):
    return {k: v.copy() for k, v in grads.items()}


@ENGINE
@given(grads=grad_dicts, c=thresholds)
def test_clip_norm_gives_min_norm_and_keeps_direction(grads, c):
    before = copy(grads)
    n = norm_of(before)
    got_before, got_after = clip.clip_norm(grads, c)
    assert got_before == pytest.approx(n, rel=1e-12, abs=1e-300), f"c={c}: norm before {got_before!r} vs {n!r}"
    want_norm = min(n, c)
    assert norm_of(grads) == pytest.approx(want_norm, rel=1e-12, abs=1e-300), (
        f"c={c}: ||g|| after {norm_of(grads)!r}, want min({n!r}, {c})"
    )
    assert got_after == pytest.approx(norm_of(grads), rel=1e-12, abs=1e-300), (
        f"c={c}: returned norm after {got_after!r}"
    )
    scale = 1.0 if n <= c else c / n  # the same positive factor for every parameter: direction kept
    for k in grads:
        assert_close(grads[k], before[k] * scale, f"c={c} clipped {k}", rtol=1e-12, atol=1e-300)


@ENGINE
@given(grads=grad_dicts, c=thresholds)
def test_clip_value_bounds_every_component(grads, c):
    before = copy(grads)
    got_before, got_after = clip.clip_value(grads, c)
    for k, g in grads.items():
        assert np.all(np.abs(g) <= c), f"c={c} {k}: component {g.flat[np.argmax(np.abs(g))]!r} outside [-c, c]"
        inside = np.abs(before[k]) <= c
        assert np.array_equal(g[inside], before[k][inside]), f"c={c} {k}: a component inside the bound changed"
        assert np.array_equal(g[~inside], np.sign(before[k][~inside]) * c), f"c={c} {k}: not clipped to +-c"
    assert got_before == pytest.approx(norm_of(before), rel=1e-12, abs=1e-300), "value clip: norm before"
    assert got_after == pytest.approx(norm_of(grads), rel=1e-12, abs=1e-300), "value clip: norm after"


@ENGINE
@given(grads=grad_dicts)
def test_clip_none_measures_only(grads):
    before = copy(grads)
    n_before, n_after = clip.clip(grads, "none", None)
    assert n_before == n_after == pytest.approx(norm_of(before), rel=1e-12, abs=1e-300)
    for k in grads:
        assert np.array_equal(grads[k], before[k]), f"clip mode none changed {k}"


@pytest.mark.parametrize("mode", ["norm", "value"])
def test_clip_dispatch_equals_the_direct_function(mode):
    rng = np.random.default_rng(0)
    g1 = {"a": rng.normal(size=(3, 4)) * 5, "b": rng.normal(size=3)}
    g2 = copy(g1)
    r1 = clip.clip(g1, mode, 0.7)
    r2 = (clip.clip_norm if mode == "norm" else clip.clip_value)(g2, 0.7)
    assert r1 == r2, f"clip({mode!r}) returned {r1}, direct call {r2}"
    for k in g1:
        assert np.array_equal(g1[k], g2[k]), f"clip({mode!r}) {k} differs from the direct call"


def test_clip_norm_below_threshold_is_untouched_and_zero_stays_zero():
    g = {"a": np.array([3.0, 4.0])}
    assert clip.clip_norm(g, 5.0) == (5.0, 5.0)
    assert np.array_equal(g["a"], [3.0, 4.0]), "a gradient exactly at the threshold was changed"
    z = {"a": np.zeros(3)}
    assert clip.clip_norm(z, 1.0) == (0.0, 0.0) and not z["a"].any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clipping_keeps_dtype(dtype):
    g = {"a": np.arange(6, dtype=dtype).reshape(2, 3), "b": np.ones(2, dtype=dtype)}
    clip.clip_norm(g, 1.0)
    clip.clip_value(g, 0.1)
    assert all(v.dtype == dtype for v in g.values()), f"{dtype}: clipping changed a dtype"


@pytest.mark.parametrize("fn", [clip.clip_norm, clip.clip_value])
def test_clipping_non_finite_gradients_is_silent(fn):
    g = {"a": np.array([np.nan, 1.0]), "b": np.array([np.inf, -np.inf])}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        before, after = fn(g, 1.0)
    assert not np.isfinite(before), f"{fn.__name__}: norm of a non-finite gradient reported as {before}"


# ---------------------------------------------------------------- optimizers (torch-free formula checks)

params_st = st.dictionaries(
    st.sampled_from(["w", "b"]), hnp.arrays(np.float64, (3, 2), elements=st.floats(-10, 10)), min_size=1
)


@ENGINE
@given(p=params_st, lr=st.floats(1e-4, 1.0), seed=st.integers(0, 2**16))
def test_sgd_step_is_p_minus_lr_g(p, lr, seed):
    rng = np.random.default_rng(seed)
    g = {k: rng.normal(size=v.shape) for k, v in p.items()}
    before = copy(p)
    optim.SGD(p, lr).step(g)
    for k in p:
        assert_close(p[k], before[k] - lr * g[k], f"sgd lr={lr} {k}", rtol=1e-15, atol=1e-15)


def test_momentum_accumulates_velocity():
    p = {"w": np.zeros(3)}
    opt = optim.SGD(p, lr=0.5, momentum=0.9)
    g = {"w": np.array([1.0, -2.0, 0.5])}
    opt.step(g)  # v = g
    assert_close(p["w"], -0.5 * g["w"], "momentum step 1", rtol=1e-15)
    opt.step(g)  # v = 0.9 g + g
    assert_close(p["w"], -0.5 * g["w"] - 0.5 * 1.9 * g["w"], "momentum step 2", rtol=1e-15)


@ENGINE
@given(lr=st.floats(1e-4, 1.0), seed=st.integers(0, 2**16))
def test_adam_first_step_is_lr_times_sign(lr, seed):
    """With bias correction, Adam's first step is lr g / (|g| + eps) = lr sign(g) up to eps / |g|."""
    rng = np.random.default_rng(seed)
    g = {"w": rng.normal(size=(4, 3)) + np.sign(rng.normal(size=(4, 3)))}  # |g| > 0 with high probability
    g["w"][np.abs(g["w"]) < 1e-3] = 1.0
    p = {"w": np.zeros((4, 3))}
    optim.Adam(p, lr=lr).step(g)
    assert_close(p["w"], -lr * g["w"] / (np.abs(g["w"]) + 1e-8), f"adam lr={lr} first step", rtol=1e-12)


@pytest.mark.parametrize("name", optim.NAMES)
def test_optimizers_update_in_place_and_keep_dtype(name):
    for dtype in (np.float32, np.float64):
        w = np.ones((2, 2), dtype=dtype)
        params = {"w": w}
        optim.get(name, params, lr=0.1).step({"w": np.ones((2, 2), dtype=dtype)})
        assert params["w"] is w, f"{name}: parameter array replaced instead of updated in place"
        assert w.dtype == dtype and np.all(w < 1), f"{name} {dtype}: {w}"


@pytest.mark.parametrize("name, lr", [("sgd", 0.1), ("momentum", 0.1), ("adam", 0.01), ("sgd", [0.1, 0.3]), ("momentum", [0.2, 0.05])])
def test_the_reported_update_norms_are_those_of_the_weights_difference(name, lr):
    """measure_next: ||p_after - p_before|| and ||p_after|| as the optimizer reports them, against the difference
    of the arrays and their norm (float64; 1e-12 relative: the subtraction rounds at 1e-16 of |p|, the updates
    are 1e-2 of it). w has more entries than a block of SGD's blocked update."""
    rng = np.random.default_rng(3)
    params = {"w": rng.normal(size=(2, 200, 200)), "b": rng.normal(size=(2, 3))}  # an ensemble of 2: lr per member too
    opt = optim.get(name, params, lr=np.asarray(lr) if isinstance(lr, list) else lr)
    for step in range(3):
        grads = {k: rng.normal(size=v.shape) for k, v in params.items()}
        before = copy(params)
        if step != 1:
            opt.measure_next(["w"])
        opt.step(grads)
        if step == 1:
            assert opt.update_norms == {}, f"{name}: a step after measure_next's one kept measuring: {opt.update_norms}"
            continue
        want = float(np.linalg.norm(params["w"] - before["w"]))
        assert set(opt.update_norms) == {"w"}, f"{name}: reported {sorted(opt.update_norms)}, want ['w']"
        assert_close(opt.update_norms["w"], want, f"{name} lr={lr} step {step} ||update of w||", rtol=1e-12)
        assert_close(opt.param_norms["w"], float(np.linalg.norm(params["w"])), f"{name} lr={lr} step {step} ||w after||", rtol=1e-12)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_a_measuring_step_takes_its_norms_on_one_blas_thread(monkeypatch, name):
    """The update norms are BLAS dots, which OpenBLAS threads above 10000 entries: a step that measures holds
    this thread's BLAS to one thread, and a step that does not leaves the count alone."""
    from gradlab import _process

    if _process.current_threads() is None:
        pytest.skip("NumPy's BLAS is not an OpenBLAS whose thread count can be set here")
    seen = []
    real = optim._sq
    monkeypatch.setattr(optim, "_sq", lambda a: seen.append(_process.current_threads()) or real(a))
    with _process.settings(blas_threads=2):
        params = {"w": np.ones((300, 300))}
        opt = optim.get(name, params, lr=0.1)
        opt.measure_next(["w"])
        opt.step({"w": np.ones((300, 300))})
        assert seen and set(seen) == {1}, f"{name}: BLAS threads while the norms were taken: {seen}"
        assert _process.current_threads() == 2, f"{name}: the step did not restore the thread count"


def test_measure_next_rejects_an_unknown_parameter():
    opt = optim.SGD({"w": np.zeros(2)}, lr=0.1)
    with pytest.raises(ValueError, match="measure_next names parameters the optimizer does not have: v"):
        opt.measure_next(["w", "v"])


@pytest.mark.parametrize("name", optim.NAMES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("members", [None, 3])
def test_the_flat_step_of_a_small_model_is_the_per_parameter_step_bit_for_bit(name, dtype, members, monkeypatch):
    """A small model of many arrays is stepped as one flat array; with FLAT_MAX = 0 the same optimizer
    steps each parameter on its own. Five steps of both from the same weights and gradients (per-member lr
    and momentum in an ensemble, lr halved from step 2; update norms measured at steps 0 and 3): every
    weight and norm equal."""
    rng = np.random.default_rng(7)
    lead = () if members is None else (members,)
    shapes = {"w0": (5, 3), "b0": (5,), "w1": (5, 5), "b1": (5,), "w2": (5, 5), "b2": (5,), "w3": (1, 5), "b3": (1,)}
    start = {k: rng.normal(size=(*lead, *s)).astype(dtype) for k, s in shapes.items()}
    lr = 0.05 if members is None else np.array([0.05, 0.01, 0.2])
    runs = []
    for flat_max in (optim.FLAT_MAX, 0):
        monkeypatch.setattr(optim, "FLAT_MAX", flat_max)
        params = copy(start)
        opt = optim.get(name, params, lr=lr, momentum=0.9 if members is None else np.array([0.9, 0.5, 0.0]))
        assert opt.layout.flat == (flat_max > 0), f"{name}: flat={opt.layout.flat} with FLAT_MAX={flat_max}"
        grads_rng, norms = np.random.default_rng(8), []
        for step in range(5):
            grads = {k: grads_rng.normal(size=v.shape).astype(dtype) for k, v in params.items()}
            if step in (0, 3):
                opt.measure_next(["w0", "w1"])
            if step == 2:  # a schedule sets a new learning rate
                opt.lr = lr * 0.5
            opt.step(grads)
            norms.append((dict(opt.update_norms), dict(opt.param_norms)))
        runs.append((params, norms))
    (flat, flat_norms), (alone, alone_norms) = runs
    for k in shapes:
        diff = np.flatnonzero(flat[k] != alone[k])
        assert diff.size == 0, f"{name} {dtype.__name__} members={members} {k}[{diff[:1]}]: flat {flat[k].flat[diff[:1]]} per parameter {alone[k].flat[diff[:1]]}"
    assert flat_norms == alone_norms, f"{name} {dtype.__name__} members={members}: norms flat {flat_norms} per parameter {alone_norms}"
    assert not np.array_equal(flat["w0"], start["w0"]), f"{name}: the weights did not move"


@pytest.mark.parametrize("name", optim.NAMES)
@pytest.mark.parametrize("flat_max", [optim.FLAT_MAX, 0])
def test_an_optimizer_of_some_members_steps_them_as_the_whole_ensemble_would(name, flat_max, monkeypatch):
    """Four members stepped three times, then members(rows) over copies of rows 3 and 1 stepped three more
    times with those rows' gradients: every weight equals the whole ensemble's stepped six times, bit for bit
    (their lr, momentum, velocity, Adam's moments and step count carried over; flat and per-parameter)."""
    monkeypatch.setattr(optim, "FLAT_MAX", flat_max)
    rng = np.random.default_rng(3)
    shapes = {"w0": (4, 5, 3), "b0": (4, 5), "w1": (4, 1, 5), "b1": (4, 1)}
    whole = {k: rng.normal(size=s) for k, s in shapes.items()}
    opt = optim.get(name, whole, lr=np.array([0.05, 0.01, 0.2, 0.1]), momentum=np.array([0.9, 0.5, 0.0, 0.7]))
    grads = [{k: rng.normal(size=s) for k, s in shapes.items()} for _ in range(6)]
    rows = np.array([3, 1])
    for g in grads[:3]:
        opt.step(g)
    part = {k: v[rows].copy() for k, v in whole.items()}
    some = opt.members(rows, part)
    for g in grads[3:]:
        opt.step(g)
        some.step({k: v[rows] for k, v in g.items()})
    for k in shapes:
        diff = np.argwhere(part[k] != whole[k][rows])
        assert diff.size == 0, f"{name} flat_max={flat_max} {k}{tuple(diff[0])}: members {part[k][tuple(diff[0])]!r}, whole {whole[k][rows][tuple(diff[0])]!r}"


def test_a_large_model_s_optimizer_allocates_no_more_than_one_parameter_s_worth():
    """Above FLAT_MAX the optimizer keeps no flat copies or per-entry index: building plain SGD over four
    arrays of 2^16 entries (2 MiB in all, ensemble of 4) and taking a step with a learning rate per member
    allocates under 1 MiB (a temporary of one array, 512 KiB)."""
    import tracemalloc

    rng = np.random.default_rng(0)
    params = {f"w{k}": rng.normal(size=(4, 128, 128)) for k in range(4)}
    grads = {k: rng.normal(size=v.shape) for k, v in params.items()}
    tracemalloc.start()
    optim.SGD(params, lr=np.array([0.1, 0.2, 0.3, 0.4])).step(grads)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2**20, f"SGD over 2 MiB of parameters allocated {peak / 2**20:.2f} MiB at its peak, want < 1 MiB"
