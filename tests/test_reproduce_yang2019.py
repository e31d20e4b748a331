"""gradlab reproduce yang2019 --quick, and the pieces of its measurement."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import quick_reproduction
from gradlab import theory
from gradlab.reproduce import driver, yang2019 as yang

# The quick run: ReLU at width 512 and B = 16, 32, 64 (2 nets each), linear and no-norm nets at width 512
# (4 nets). ln lambda's standard errors: ReLU ~0.001-0.004 (the extrapolation amplifies them: ~0.02 from 2 nets), linear ~0.005-0.015,
# no norm ~0.007. Tolerances: ~2.5-4 standard errors plus the finite-width bias (B / width up to 1/8).
QUICK_RELU_TOLERANCE = 0.05
QUICK_LINEAR_TOLERANCE = 0.04
QUICK_FLAT_TOLERANCE = 0.02


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    return quick_reproduction("yang2019", tmp_path_factory)


def claims_starting(outcome, start):
    return [c for c in outcome.claims if c.claim.startswith(start)]


def test_quick_relu_rate_extrapolates_to_pi_over_pi_minus_one(outcome):
    (limit,) = claims_starting(outcome, "ReLU + batch norm: ln lambda extrapolated")
    target = math.log(math.pi / (math.pi - 1))
    assert abs(limit.value - target) <= QUICK_RELU_TOLERANCE, f"{limit.claim}: {limit.measured}, expected {target:.4f}"
    (falling,) = claims_starting(outcome, "ReLU + batch norm: ln lambda falls")
    assert falling.passed, falling.measured


def test_quick_rate_does_not_depend_on_the_weight_variance(outcome):
    (sigma,) = claims_starting(outcome, "ReLU + batch norm, B =")
    assert sigma.value <= QUICK_RELU_TOLERANCE, sigma.measured


def test_quick_linear_rates(outcome):
    linear = claims_starting(outcome, "linear + batch norm")
    assert len(linear) == 5
    for claim in linear:
        batch = int(claim.claim.split("B = ")[1].split(":")[0])
        expected = math.log((batch - 2) / (batch - 3))
        assert abs(claim.value - expected) <= QUICK_LINEAR_TOLERANCE, f"B = {batch}: {claim.measured}, expected {expected:.4f}"


def test_quick_no_norm_is_flat(outcome):
    (flat,) = claims_starting(outcome, "ReLU without batch norm")
    assert abs(flat.value) <= QUICK_FLAT_TOLERANCE, flat.measured


def test_quick_run_writes_the_figure(outcome):
    assert {p.stem for p in outcome.figures} == {"gradient_by_layer"}


def test_richardson_recovers_a_quadratic_in_one_over_b():
    f = lambda b: 0.4 + 1.3 / b - 7.0 / b**2  # noqa: E731
    assert yang.richardson([16, 32, 64], [f(16), f(32), f(64)]) == pytest.approx(0.4, abs=1e-12)
    with pytest.raises(ValueError, match="relu_batches must be B, 2B, 4B"):
        yang.richardson([16, 32, 48], [0.0, 0.0, 0.0])


def test_log_rate_of_a_geometric_profile():
    sq = 5.0 * 1.4 ** (19.0 - np.arange(20))
    sq[:2] = 1e9  # the edge layers do not count
    assert yang.log_rate(sq, 2) == pytest.approx(math.log(1.4), abs=1e-12)


def test_batch_norm_weight_gradients_do_not_depend_on_the_weight_scale():
    # batch norm is scale invariant in W (up to its eps): the same draws at sigma_w^2 = 0.5 and 8 give
    # weight gradients whose layer-to-layer ratios agree to 1e-6 (the gradients themselves scale by 1/sigma_w)
    a = yang.weight_grad_sq(yang.Case("relu", 16, 64, 0.5), 8, np.random.default_rng(3))
    b = yang.weight_grad_sq(yang.Case("relu", 16, 64, 8.0), 8, np.random.default_rng(3))
    np.testing.assert_allclose(a[:-1] / a[1:], b[:-1] / b[1:], rtol=1e-4)
    assert not np.allclose(a, b)
