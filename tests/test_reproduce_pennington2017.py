"""gradlab reproduce pennington2017 --quick, and the pieces of its measurement."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import quick_reproduction
from gradlab import theory
from gradlab.reproduce import driver, pennington2017 as pen

# The quick run: width 128, 4 networks per depth, depths 2, 4, 8. Its slope standard errors are ~0.01
# (linear Gaussian), ~0.02-0.035 (ReLU, Gaussian tanh), ~0.003 (tanh at q* = 1/4) and ~1e-4 (tanh at
# q* = 1/64); finite width adds a bias of O(L / width), +1-3% here. The tolerances are those plus ~4 se.
QUICK_TOLERANCE = {"linear, orthogonal": 1e-9, "tanh, orthogonal, q* = 1/64": 0.005, "tanh, orthogonal, q* = 1/4": 0.03}
DEFAULT_TOLERANCE = 0.15


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    return quick_reproduction("pennington2017", tmp_path_factory)


@pytest.fixture(scope="module")
def params():
    return driver.load("pennington2017", quick=True).params


def test_quick_slopes_match_the_formula(outcome, params):
    cases = pen.cases(params)
    slopes = [c for c in outcome.claims if "grows like" in c.claim]
    assert len(slopes) == len(cases) == 7
    for case, claim in zip(cases, slopes):
        tol = QUICK_TOLERANCE.get(case.label, DEFAULT_TOLERANCE)
        assert abs(claim.value - case.slope) <= tol, f"{case.label}: slope {claim.value:.4f}, formula {case.slope:.4f}, tolerance {tol}"
    assert slopes[3].value > 1.5 * slopes[2].value  # Gaussian ReLU's variance grows twice as fast as orthogonal's


def test_quick_mean_and_isometry_claims(outcome):
    mean, isometry = outcome.claims[-2:]
    # m1 scatters between nets with a skewed (roughly log-normal) law, and a standard error from the quick run's
    # 4 nets under-covers it: the quick run measures 5 of 7 cases within 3 se; at least 4 must be
    assert mean.value >= 4, f"{mean.claim}: {mean.measured}"
    assert isometry.passed and isometry.value < 0.1, f"{isometry.claim}: {isometry.measured}"


def test_quick_run_writes_the_figures(outcome):
    assert {p.stem for p in outcome.figures} == {"spectrum_variance", "singular_values"}


def test_cases_sit_at_criticality():
    for case in pen.cases(driver.load("pennington2017").params):
        sigma_w2, sigma_b2 = case.sigma
        assert theory.chi1(case.activation, sigma_w2, sigma_b2) == pytest.approx(1.0, rel=1e-9), case.label


def test_slope_through_origin_of_an_exact_line_and_its_weights():
    depths = np.array([2, 4, 8])
    values = np.array([[2.0, 2.2], [4.0, 4.2], [8.0, 8.2]]) * 1.5  # a noisier point counts less, the mean line 1.5 L
    slope, se = pen.slope_through_origin(depths, values - 0.15)
    assert slope == pytest.approx(1.5, abs=1e-12) and se > 0


def test_orthogonal_linear_spectrum_is_exactly_one_and_gaussian_relu_spreads():
    rng = np.random.default_rng(0)
    ortho = pen.spectrum(pen.Case("identity", "orthogonal", 1.0, 0.0), 64, 5, rng)
    np.testing.assert_allclose(ortho, 1.0, rtol=1e-10)
    relu = pen.spectrum(pen.Case("relu", "gaussian", 1.0, 0.0), 64, 5, rng)
    assert relu.mean() == pytest.approx(1.0, rel=0.5) and np.var(relu) > 3.0  # sigma^2 = 2L = 10 in the wide limit
