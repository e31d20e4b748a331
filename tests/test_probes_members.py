"""gradlab.probes.members: an ensemble's layer columns, taken for all members at once, equal each member's
columns taken alone by gradlab.probes.layers, bit for bit (the tables of an ensemble's member must be those of
its run alone)."""

from __future__ import annotations

import numpy as np
import pytest

from gradlab import MLP
from gradlab.ensemble import stack
from gradlab.nn import losses, optim
from gradlab.nn.activations import NAMES
from gradlab.probes import members
from gradlab.probes.layers import act_moments, layer_stats, snapshot, update_ratios
from gradlab.probes.norms import _sq_norm

TRACE_COLUMNS = ("delta_norm", "da_norm", "act_mean", "act_std", "saturated_frac")


def same_bits(got, want, what: str) -> None:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    bad = np.flatnonzero(~((got == want) | (np.isnan(got) & np.isnan(want))))
    assert bad.size == 0, f"{what}: entry {bad[0]}: stacked {got.flat[bad[0]]!r}, alone {want.flat[bad[0]]!r}"


SIZES = [(1, 1), (3, 5), (32, 5), (64, 128), (1, 8193), (97, 85), (128, 256)]  # 8192 = STACKED_MAX entries


@pytest.mark.parametrize("transposed", [False, True], ids=["contiguous", "transposed"])
@pytest.mark.parametrize("N, H", SIZES, ids=[f"{N}x{H}" for N, H in SIZES])
@pytest.mark.parametrize("R", [2, 5])
def test_each_members_squared_norm_is_its_own_on_either_side_of_stacked_max(R, N, H, transposed):
    """Both sides of STACKED_MAX, beyond which einsum's stacked sum would cut the members' sums into chunks
    other than their own (it then differs in the last bits), and a layout that is not C-contiguous."""
    rng = np.random.default_rng(N * H + R)
    a = rng.normal(size=(R, N, H)) * np.exp(3 * rng.normal(size=(R, 1, 1)))
    if transposed:
        a = a.swapaxes(1, 2)  # not C-contiguous: member by member
    got = members.sq_norms(a)
    for r in range(R):
        same_bits(got[r], _sq_norm(a[r]), f"member {r} of {a.shape} (transposed={transposed})")


def ensemble_of(activation: str, options: dict, R: int = 4, sizes=(3, 7, 6, 2)):
    """R MLPs built alone (member 1's weights zero and biases equal: constant activations, whose std
    E[a^2] - E[a]^2 cancels), stacked."""
    rngs = [np.random.default_rng(s) for s in range(R)]
    alone = [MLP(list(sizes), activation, rng=rng, init="xavier_normal", **options) for rng in rngs]
    for name, p in alone[1].params.items():
        p[...] = 0.0 if name.endswith("weight") else 0.3
    return alone, stack(alone)


OPTIONS = {"plain": {}, "residual": {"residual": True, "residual_scale": 0.5}, "layer norm": {"norm": "layer"},
           "batch norm": {"norm": "batch"}}  # fmt: skip


@pytest.mark.parametrize("options", list(OPTIONS), ids=list(OPTIONS))
@pytest.mark.parametrize("activation", [*NAMES, "relu and leaky_relu"])
def test_an_ensembles_layer_columns_are_each_members_alone(activation, options):
    if activation == "relu and leaky_relu":  # one ensemble of ReLUs and leaky ReLUs of two slopes
        kinds = [("relu", 0.01), ("leaky_relu", 0.01), ("leaky_relu", 0.1), ("relu", 0.01)]
        alone = [MLP([3, 7, 6, 2], act, rng=np.random.default_rng(s), init="he_normal", slope=slope, **OPTIONS[options])
                 for s, (act, slope) in enumerate(kinds)]  # fmt: skip
        ensemble = stack(alone)
    else:
        alone, ensemble = ensemble_of(activation, OPTIONS[options])
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(len(alone), 32, 3)), rng.normal(size=(len(alone), 32, 2))
    out, cache = ensemble.forward(x, trace=True)
    _, dout = losses.mse(out, y, lead=1)
    grads = ensemble.backward(dout, cache, input_grad=False)
    columns = members.mlp_columns(alone, grads.trace)
    weights, biases = members.grad_norms(alone[0], grads.params)
    for r, model in enumerate(alone):
        out_r, cache_r = model.forward(x[r], trace=True)
        _, dout_r = losses.mse(out_r, y[r])
        want = layer_stats(model, model.backward(dout_r, cache_r, input_grad=False))
        for name in TRACE_COLUMNS:
            same_bits(columns[r][name], want[name], f"{name} of member {r}")
        same_bits(weights[r], want["weight_grad_norm"], f"weight_grad_norm of member {r}")
        same_bits(biases[r], want["bias_grad_norm"], f"bias_grad_norm of member {r}")


def test_a_member_that_overflowed_gets_nan_columns_and_the_others_their_own():
    alone, ensemble = ensemble_of("identity", {})
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 16, 3))
    x[2] *= 1e300  # member 2's activations overflow its squares
    out, cache = ensemble.forward(x, trace=True)
    grads = ensemble.backward(out, cache, input_grad=False)
    columns = members.mlp_columns(alone, grads.trace)
    for r in (0, 1, 2, 3):
        want = layer_stats(alone[r], alone[r].backward(*_solo(alone[r], x[r]), input_grad=False))
        for name in TRACE_COLUMNS:
            same_bits(columns[r][name], want[name], f"{name} of member {r}")
    assert np.isnan(columns[2]["act_std"][0]) and np.isfinite(columns[0]["act_std"]).all()


def _solo(model, x):
    out, cache = model.forward(x, trace=True)
    return out, cache


def test_float32_is_left_to_the_members():
    alone = [MLP([3, 4, 1], "tanh", rng=np.random.default_rng(s), dtype="float32") for s in range(2)]
    ensemble = stack(alone)
    out, cache = ensemble.forward(np.ones((2, 5, 3), np.float32), trace=True)
    assert members.mlp_columns(alone, ensemble.backward(out, cache).trace) is None


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_an_ensembles_update_ratios_are_each_members_alone(optimizer):
    """One step of each member's optimizer; member 1's weights were 0 (a layer that stays 0 has ratio 0 / 0:
    NaN), member 3 does not move (its gradient 0: ratio 0)."""
    alone, ensemble = ensemble_of("tanh", {})
    before = {n: p.copy() for n, p in ensemble.params.items()}
    snapshots = [snapshot(m) for m in alone]
    rng = np.random.default_rng(5)
    out, cache = ensemble.forward(rng.normal(size=(4, 16, 3)))
    grads = ensemble.backward(out, cache, input_grad=False)
    for g in grads.params.values():
        g[3] = 0.0
    optim.get(optimizer, ensemble.params, lr=np.array([0.1, 0.01, 1.0, 0.5])).step(grads.params)
    got = members.update_ratios(ensemble, before, ensemble.params)
    for r, model in enumerate(alone):
        same_bits(got[r], update_ratios(model, snapshots[r]), f"update ratios of member {r} ({optimizer})")
    assert (got[3] == 0).all() and (got[[0, 2]] > 0).all() and np.isnan(got[1]).any()


@pytest.mark.parametrize("transposed", [False, True], ids=["contiguous", "transposed"])
def test_each_members_moments_are_its_own_and_the_cancelled_ones_two_pass(transposed):
    """Member 1 is constant up to 1e-9 (E[a^2] - E[a]^2 cancels: the two-pass std), member 2 overflows."""
    rng = np.random.default_rng(11)
    a = rng.normal(size=(4, 40, 30)) * np.array([1.0, 1e-9, 1e300, 50.0])[:, None, None]
    a[1] += 3.0
    if transposed:
        a = a.swapaxes(1, 2)
    with np.errstate(all="ignore"):  # member 2's squares overflow, as layer_stats and mlp_columns allow
        mean, std = members.moments(a)
        wanted = [act_moments(a[r]) for r in range(4)]
    for r, want in enumerate(wanted):
        same_bits([mean[r], std[r]], want, f"(mean, std) of member {r} of {a.shape}")
    assert np.isnan(std[2]) and 0 < std[1] < 1e-8
