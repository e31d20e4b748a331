"""The lu2019 reproduction: its quick run's claims, and its Monte-Carlo code against closed forms, the
engine and the probes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from conftest import claim_starting, quick_reproduction
from gradlab import probes, tasks, theory
from gradlab.nn import MLP, activations
from gradlab.reproduce import lu2019 as repro

RELU = activations.get("relu")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The quick reproduction, run once: (claims by their text, the outcome)."""
    outcome = quick_reproduction("lu2019", tmp_path_factory)
    return {c.claim: c for c in outcome.claims}, outcome



# ---------------------------------------------------------------- the quick run's claims


def test_quick_run_has_every_claim_and_figure(quick):
    claims, outcome = quick
    assert len(claims) == 8, f"expected 4 dead-at-a-point + leaky + bound + 2 training claims, got {list(claims)}"
    assert {p.stem for p in outcome.figures} == {"dead_at_a_point", "collapse_by_depth", "training"}
    assert not outcome.failed_runs, f"failed training runs: {outcome.failed_runs}"


@pytest.mark.parametrize("width", [2, 3, 5, 10])
def test_dead_at_a_point_matches_lu_formula(quick, width):
    c = claim_starting(quick[0], f"ReLU N = {width}, k = 9")  # the paper's depth L = 10: 9 hidden layers
    p = theory.lu_dead_probability(width, 9)
    se = math.sqrt(p * (1 - p) / 5000)
    # the quick run samples 5000 nets per width; the formula is exact, so the fraction is Binomial(5000, p)
    # / 5000 and lies within 3 SE but for a 0.3% chance per width (fixed seed: the same draw every time)
    assert abs(c.value - p) <= 3 * se, f"{c.claim}: measured {c.value:.4f}, theory {p:.4f} +- 3 SE = {3 * se:.4f}"
    assert c.passed, f"{c.claim}: {c.measured} vs {c.expected} {c.tolerance}"


def test_leaky_relu_is_never_dead(quick):
    c = claim_starting(quick[0], "leaky ReLU 0.01")
    # a leaky unit is 0 only where its pre-activation is exactly 0: probability 0 for continuous weights
    assert c.passed and c.value == 0, f"{c.claim}: {c.measured}, expected {c.expected}"
    assert c.measured == "0 of 50000 nets", f"{c.claim}: {c.measured} (10 widths x 5000 nets expected)"


def test_collapse_never_exceeds_the_at_a_point_probability(quick):
    c = claim_starting(quick[0], "collapsed on probe set <= P(dead at a point)")
    # a net constant on the probe set is dead at each probe point, so its probability is at most Lu's;
    # over 9 widths x 30 depths of 1000 nets, 3 SE above it would be a bug (or a 0.1% fluke per point,
    # but the curves are nested, so most of those 270 comparisons are not independent)
    assert c.passed and c.value <= 3.0, f"{c.claim}: {c.measured}"


def test_trained_networks_collapse_as_the_paper_says(quick):
    c = claim_starting(quick[0], "|x|, N = 2, k = 9 (paper's depth 10), Adam 20 steps")
    # "over 90%", required above 0.9 by 2 standard errors: the full run's 2000 nets for 20 steps, SE
    # ~0.006. The runner's 200 runs (10 hidden layers) lost all their training deaths in the first 20
    # steps, so the quick fraction is about the full run's 0.927 (4.5 SE above 0.9; 500 nets measured 0.920
    # +- 0.012, too coarse). The claim's own rule is checked too: passed exactly when above 0.9 + 2 SE.
    se = math.sqrt(c.value * (1 - c.value) / 2000)
    assert c.passed and c.value > 0.9 + 2 * se, f"{c.claim}: {c.measured}, expected {c.expected}"
    assert c.tolerance == "> 0.9 + 2 SE" and "of 2000)" in c.measured, f"{c.claim}: {c.tolerance}, {c.measured}"


def test_training_runs_at_step_0_agree_with_the_monte_carlo(quick):
    c = claim_starting(quick[0], "|x| runs collapsed at step 0")
    # same distribution (He normal, zero biases, one input): within 3 combined SE (1000 Monte-Carlo nets,
    # 200 runs: about 0.06)
    assert c.passed, f"{c.claim}: runs {c.measured}, Monte Carlo {c.expected} {c.tolerance}"


# ---------------------------------------------------------------- the measurement code


def _engine_mlp(sizes: list[int], ws: list[np.ndarray], bs: list[np.ndarray], k: int) -> MLP:
    """Network k of a stack as an engine MLP (ReLU hidden layers, linear output)."""
    net = MLP(sizes, "relu", rng=np.random.default_rng(0))
    for layer, (w, b) in enumerate(zip(ws, bs)):
        net.params[f"layers.{layer}.weight"][...] = w[k]
        net.params[f"layers.{layer}.bias"][...] = b[k]
    return net


@pytest.mark.parametrize("bias_std", [0.0, 0.3])
def test_first_zero_layer_is_the_engines_collapse(bias_std):
    # "some hidden layer is 0 on every probe input" <=> the engine's output is constant on the probe set
    # (probes.is_collapsed), and the layer is the first whose units are all dead (probes.dead_masks)
    rng = np.random.default_rng(7)
    x_probe, _ = tasks.get("abs_value").held_out(128)
    sizes, ws, bs = repro.symmetric_nets(rng, 300, 2, 6, bias_std=bias_std)
    first = repro.first_zero_layer(ws, bs, x_probe, RELU)
    for k in range(300):
        masks, y = probes.dead_masks(_engine_mlp(sizes, ws, bs, k), x_probe)
        all_dead = [layer + 1 for layer, m in enumerate(masks[:-1]) if m.all()]
        assert first[k] == (all_dead[0] if all_dead else 0), f"net {k}: first zero layer {first[k]}, engine {all_dead}"
        spread = np.ptp(y)
        assert (first[k] > 0) == probes.is_collapsed(y), f"net {k}: first zero layer {first[k]}, output spread {spread}"
    assert 30 < (first > 0).sum() < 270, f"{(first > 0).sum()} of 300 collapsed: too few of one kind to test"


def test_width_one_collapse_has_a_closed_form():
    # width 1, zero biases, inputs of both signs: layer 1 relu(w x) is alive on one side; each later
    # layer relu(w_l a) stays alive iff w_l > 0 (prob 1/2), so P(collapsed by depth k) = 1 - 2^-(k-1),
    # below Lu's 1 - 2^-k at a point. 20000 nets: SE <= 0.0036, tolerance 4 SE = 0.015
    x_probe, _ = tasks.get("abs_value").held_out(64)
    curve = repro.collapsed_by_depth(np.random.default_rng(1), 20_000, 1, 8, x_probe, RELU)
    expected = 1.0 - 0.5 ** np.arange(0, 8)
    assert curve[0] == 0.0, f"depth 1 collapsed in {curve[0]} of nets: w x <= 0 on both signs needs w = 0"
    np.testing.assert_allclose(curve, expected, atol=0.015, err_msg="collapsed fraction, width 1, depths 1..8")


def test_collapse_curve_is_nested_and_below_dead_at_a_point():
    # the nets of depth k are the first k layers of the deeper stack: once collapsed, always collapsed
    x_probe, _ = tasks.get("abs_value").held_out(32)
    curve = repro.collapsed_by_depth(np.random.default_rng(2), 4000, 3, 20, x_probe, RELU, chunk=700)
    assert np.all(np.diff(curve) >= 0), f"collapsed fraction decreases with depth: {curve}"
    theory_curve = np.array([theory.lu_dead_probability(3, k) for k in range(1, 21)])
    se = np.sqrt(theory_curve * (1 - theory_curve) / 4000)
    assert np.all(curve <= theory_curve + 3 * se), f"collapsed {curve} above P(dead at a point) {theory_curve}"


def test_dead_at_a_point_matches_the_formula_with_zero_biases():
    # He init with zero biases (the training runs' init): Lu's formula holds at any x != 0, at 3 SE
    rng = np.random.default_rng(11)
    _, ws, bs = repro.symmetric_nets(rng, 20_000, 3, 6)
    assert all(np.all(b == 0) for b in bs)
    dead = repro.dead_at_a_point(ws, bs, np.array([-0.4]), RELU)
    p = theory.lu_dead_probability(3, 6)
    assert abs(dead.mean() - p) < 3 * math.sqrt(p * (1 - p) / 20_000), f"dead {dead.mean():.4f}, theory {p:.4f}"


def test_run_outcomes_reads_the_first_and_last_probed_steps():
    # collapsed is NA on the steps the probe set was not run; the outcome takes the first and last probed
    steps = pd.DataFrame({
        "run_id": ["a"] * 4 + ["b"] * 4, "step": [0, 1, 2, 3] * 2,
        "collapsed": pd.array([False, pd.NA, pd.NA, True, True, pd.NA, True, pd.NA], dtype="boolean"),
    })  # fmt: skip
    runs = pd.DataFrame({"run_id": ["a", "b"], "seed": [0, 1], "width": 2, "depth": 10, "steps": 4, "lr": 1e-3,
                         "probe_size": 512, "final_loss": [0.125, 0.01]})  # fmt: skip
    out = repro.run_outcomes({"runs": runs, "steps": steps}).set_index("run_id")
    assert out.loc["a", ["collapsed_init", "collapsed_end"]].tolist() == [False, True]
    assert out.loc["b", ["collapsed_init", "collapsed_end"]].tolist() == [True, True]
    assert out.attrs["curve"].to_dict() == {0: 0.5, 2: 1.0, 3: 1.0}


def test_ensemble_training_is_the_runners_run_member_by_member():
    # gradlab.train.run of the config the runner would train for seed 3 (width 2, 9 hidden layers, 20 Adam
    # steps) against member 1 of the ensemble of seeds [5, 3]: the same initial network and batches, so the
    # same collapsed state and held-out loss (batched matmuls round differently: 1e-9 relative)
    from gradlab import train
    from gradlab.reproduce._lu2019_training import train_ensemble
    from gradlab.sweep.config import from_dict

    data = {"model": {"kind": "mlp", "depth": 9, "width": 2, "activation": "relu", "init": "he_normal"},
            "task": {"name": "abs_value"}, "train": {"steps": 20, "batch": 32, "optimizer": "adam", "lr": 0.003,
            "log_every": 10, "seed": 3}}  # fmt: skip
    (config,) = from_dict(data, "one").grid()
    record, tables = train.run(config)
    ens = train_ensemble([5, 3], 2, 9, 20, 32, 0.003, config["train.probe_size"], 10).set_index("seed")
    assert ens.loc[3, "final_loss"] == pytest.approx(record["final_loss"], rel=1e-9), (ens.loc[3, "final_loss"], record["final_loss"])
    collapsed = tables["steps"].dropna(subset=["collapsed"]).sort_values("step")["collapsed"].astype(bool)
    assert ens.loc[3, "collapsed_init"] == collapsed.iloc[0], f"step 0: ensemble {ens.loc[3, 'collapsed_init']}, run {collapsed.iloc[0]}"
    assert ens.loc[3, "collapsed_end"] == collapsed.iloc[-1], f"end: ensemble {ens.loc[3, 'collapsed_end']}, run {collapsed.iloc[-1]}"


def test_collapsed_members_is_is_collapsed_per_member():
    rng = np.random.default_rng(9)
    y = rng.normal(size=(4, 16, 1))
    y[1] = 0.7  # constant
    y[2] = 0.0  # all zero: collapsed (range 0 <= rtol x 0)
    y[3, :, 0] = 0.7 + np.arange(16) * 1e-12  # within rtol of constant
    from gradlab.reproduce._lu2019_training import collapsed_members

    expected = [probes.is_collapsed(member) for member in y]
    assert collapsed_members(y).tolist() == expected, (collapsed_members(y).tolist(), expected)
    assert expected[1:] == [True, True, True] and not expected[0]
