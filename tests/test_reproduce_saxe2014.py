"""gradlab reproduce saxe2014 --quick, and the deep linear training it rests on."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import quick_reproduction
from gradlab.reproduce import driver, saxe2014


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    return quick_reproduction("saxe2014", tmp_path_factory)


@pytest.fixture(scope="module")
def params():
    return driver.load("saxe2014", quick=True).params


def _claim(outcome, start: str):
    found = [c for c in outcome.claims if c.claim.startswith(start)]
    assert len(found) == 1, f"expected one claim starting {start!r}, got {[c.claim for c in outcome.claims]}"
    return found[0]


def test_quick_orthogonal_learning_time_is_flat_in_depth(outcome, params):
    # 8 nets at depths 8 and 16: the log-log slope's standard error is ~0.13; the quick tolerance 0.4 is 3 of them
    flat = _claim(outcome, "orthogonal init")
    assert params["flat_tol"] == 0.4 and abs(flat.value) <= 0.4, f"{flat.claim}: {flat.measured}"
    assert flat.passed


def test_quick_gaussian_learning_time_grows(outcome):
    grows = _claim(outcome, "scaled Gaussian init")
    assert grows.passed, f"{grows.claim}: {grows.measured}"


def test_quick_mode_dynamics_follow_the_sigmoid(outcome, params):
    # deterministic: the Euler gap is ~0.75 lr s, the claim's bound lr s (lr 0.01)
    mode = _claim(outcome, "one hidden layer")
    assert mode.passed and mode.value <= params["mode_lr"] * max(params["mode_s"]), f"{mode.claim}: {mode.measured}"


def test_quick_run_writes_the_figures(outcome):
    assert {p.stem for p in outcome.figures} == {"steps_by_depth", "mode_dynamics"}
    assert all(p.stat().st_size > 0 for p in outcome.figures)


def test_whitened_inputs_are_white_and_centred():
    x = saxe2014.whitened_inputs(np.random.default_rng(0), 20, 6)
    assert np.allclose(x.T @ x / 20, np.eye(6)) and np.allclose(x.mean(axis=0), 0.0)


def test_orthogonal_deep_linear_nets_learn_faster_than_gaussian_ones_at_depth(params):
    # the mechanism behind claims 1-2, at one depth: the same teacher, 4 nets each (seeded)
    p = {**params, "nets": 4}
    orth, _ = saxe2014.steps_to_criterion(p, "orthogonal", 8)
    gauss, _ = saxe2014.steps_to_criterion(p, "gaussian", 8)
    assert (orth > 0).all() and (gauss > 0).all(), f"orthogonal {orth}, gaussian {gauss}: every net reaches the criterion"
    assert orth.mean() < gauss.mean(), f"depth 8: orthogonal {orth.mean()} steps, Gaussian {gauss.mean()}"


def test_loss_curve_starts_at_the_initial_loss_and_falls(params):
    hit, curve = saxe2014.steps_to_criterion({**params, "nets": 2}, "orthogonal", 2)
    s = np.linspace(params["s_max"], params["s_min"], params["n_out"])
    target = params["criterion"] * 0.5 * float(np.sum(s**2))  # the criterion x the zero map's loss 1/2 ||T||_F^2
    # the training stops at the step where the last net gets below the criterion: the mean loss is then below it
    assert len(curve) == hit.max() + 1 and curve[-1] <= target < curve[0], f"loss {curve[0]} -> {curve[-1]}, target {target}"
