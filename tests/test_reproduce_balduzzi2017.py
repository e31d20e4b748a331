"""gradlab reproduce balduzzi2017 --quick, and the gradient measurements it rests on."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import quick_reproduction
from gradlab.nn import MLP
from gradlab.reproduce import _shattered as sh
from gradlab.reproduce import driver


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    return quick_reproduction("balduzzi2017", tmp_path_factory)


@pytest.fixture(scope="module")
def params():
    return driver.load("balduzzi2017", quick=True).params


def _claim(outcome, start: str):
    found = [c for c in outcome.claims if c.claim.startswith(start)]
    assert len(found) == 1, f"expected one claim starting {start!r}, got {[c.claim for c in outcome.claims]}"
    return found[0]


def test_quick_feedforward_rate_is_theorem_1s(outcome, params):
    # 16 nets: the slope's jackknife standard error is ~0.09, the quick tolerance 0.3 is 3 of them
    rate = _claim(outcome, "feedforward + BN: slope")
    assert abs(rate.value - math.log(0.5)) <= params["ff_rate_tol"] == 0.3, f"{rate.claim}: {rate.measured}"
    assert rate.passed


def test_quick_feedforward_shatters_and_the_resnet_does_not(outcome):
    white = _claim(outcome, "feedforward + BN, depth 16")
    brown = _claim(outcome, "resnet + BN, depth 32")
    # white noise's neighbour correlation is 0 (se ~0.02 at 16 nets, tolerance 0.1); the resnet's stays
    # near 0.85 (se ~0.02), far above the 0.5 between white and brown
    assert white.passed and abs(white.value) <= 0.1, f"{white.claim}: {white.measured}"
    assert brown.passed and brown.value >= 0.7, f"{brown.claim}: {brown.measured}"


def test_quick_resnet_pair_correlation_falls_faster_than_theorem_3(outcome):
    # The discrepancy the full run reports (slope ~ -1.1, se 0.11, against Theorem 3's -1/2): at 16 nets
    # (se ~0.34) the quick run can only show that the resnet's pair correlation falls (slope < 0, ~3 se)
    res = _claim(outcome, "resnet + BN: slope")
    assert res.value < 0.0, f"{res.claim}: {res.measured}"


def test_quick_run_writes_the_figures(outcome):
    assert {p.stem for p in outcome.figures} == {"gradients", "autocorrelation", "correlation_by_depth"}
    assert all(p.stat().st_size > 0 for p in outcome.figures)


def test_input_gradients_are_the_derivative_of_the_function_on_the_grid():
    # float64 central differences of the frozen-statistics net (eval mode with the grid's statistics)
    g = sh.input_gradients("resnet_bn", 3, 2, 8, 16, seed=1, dtype="float64")
    rngs = [np.random.default_rng([1, 3, r]) for r in range(2)]
    net = MLP([1, 8, 8, 8, 1], "relu", norm="batch", residual=True, init="he_normal", rng=rngs, ensemble=2)
    x = sh.grid(16)[:, None]
    _, cache = net.forward(x)
    for l, layer in enumerate(cache.layers[:-1]):
        net.buffers[f"layers.{l}.norm.running_mean"][...] = layer.z.mean(axis=-2)
        net.buffers[f"layers.{l}.norm.running_var"][...] = layer.z.var(axis=-2)
    h = 1e-6
    fd = (net.forward(x + h, train=False)[0] - net.forward(x - h, train=False)[0])[..., 0] / (2 * h)
    assert np.allclose(g, fd, rtol=1e-7, atol=1e-9), f"max |analytic - finite difference| = {np.abs(g - fd).max()}"


def test_correlations_of_known_series():
    rng = np.random.default_rng(0)
    white = rng.standard_normal((400, 64))
    # i.i.d. series: every C_ij is 0 up to the noise of 400 draws (se 0.05 per entry, far less in the means)
    assert abs(sh.correlation(white, "pair")) < 0.01 and abs(sh.correlation(white, "neighbour")) < 0.02
    same = np.repeat(rng.standard_normal((400, 1)), 64, axis=1)  # one value along the grid: C_ij = 1
    assert math.isclose(sh.correlation(same, "pair"), 1.0) and math.isclose(sh.correlation(same, "neighbour"), 1.0)
    # a random walk's lag-1 sample autocorrelation is near 1; white noise's is -1/64 (the sample mean's bias)
    # with a standard deviation of 1/8 per series, 0.006 over 400 of them
    acf_walk, acf_white = sh.autocorrelation(np.cumsum(white, axis=1), 1), sh.autocorrelation(white, 1)
    assert acf_walk[0] == pytest.approx(1.0) and acf_walk[1] > 0.8 and abs(acf_white[1] + 1 / 64) < 0.03


def test_jackknife_se_of_a_mean_is_the_usual_one():
    x = np.random.default_rng(2).standard_normal(30)
    left_out = (x.sum() - x) / (len(x) - 1)
    assert math.isclose(sh.jackknife_se(left_out), x.std(ddof=1) / math.sqrt(len(x)), rel_tol=1e-12)


def test_unknown_architecture_is_a_one_line_error():
    with pytest.raises(ValueError, match="^architecture must be one of feedforward, resnet_bn, got 'densenet'$"):
        sh.input_gradients("densenet", 2, 1, 4, 8, seed=0)
