"""gradlab reproduce schoenholz2017 --quick, and the mean-field measurement it rests on."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from conftest import quick_reproduction
from gradlab import theory
from gradlab.reproduce import _meanfield as mf
from gradlab.reproduce import driver, schoenholz2017

# The quick run pools 4 networks per case (width 500, depth 60, 16 examples). One network's slope has
# a standard deviation of 0.005-0.006 (tanh) and 0.007-0.009 (ReLUs) (16-network runs), so the quick
# standard error is at most ~0.0045; the ReLUs' pooled slopes also sit up to 0.0035 above ln chi_1
# (mean field's O(1/width) correction). 0.02 is that bias plus 3.5 standard errors.
QUICK_TOLERANCE = 0.02
QUICK_MAX_SE = 0.008  # the justification above holds only if the run's own standard errors are this small


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    return quick_reproduction("schoenholz2017", tmp_path_factory)


@pytest.fixture(scope="module")
def params():
    return driver.load("schoenholz2017", quick=True).params


def test_quick_slopes_match_log_chi1(outcome, params):
    cases = schoenholz2017.main_cases(params)
    slopes = [c for c in outcome.claims if "slope ln E||delta_l||^2 = ln chi_1" in c.claim]
    assert len(slopes) == len(cases) == 10  # 4 tanh, 3 ReLU, 3 leaky ReLU: every case the issue lists
    for case, claim in zip(cases, slopes):
        predicted = math.log(theory.chi1(case.activation, case.sigma_w2, case.sigma_b2, case.slope))
        assert abs(claim.value - predicted) <= QUICK_TOLERANCE, (
            f"{claim.claim}: measured {claim.value:.4f}, ln chi_1 {predicted:.4f}, tolerance {QUICK_TOLERANCE}"
        )
        se = float(re.search(r"se ([0-9.]+)", claim.measured).group(1))
        assert se <= QUICK_MAX_SE, f"{claim.claim}: standard error {se} > {QUICK_MAX_SE} (measured {claim.measured})"
        assert claim.tolerance == "+-0.01"  # the tolerance is what the claim states


def test_quick_critical_line(outcome):
    side, worst = [c for c in outcome.claims if "grid" in c.claim]
    # grid points sit 10% off the line, |ln chi_1| >= 0.025 = 5 quick standard errors: every one on its side
    assert side.passed, f"{side.claim}: {side.measured}, expected {side.expected}"
    assert worst.value <= QUICK_TOLERANCE, f"{worst.claim}: worst error {worst.value:.4f} > {QUICK_TOLERANCE}"


def test_quick_run_writes_the_figures(outcome):
    stems = {p.stem for p in outcome.figures}
    assert stems == {"chi1_vs_sigma_w2", "critical_line", "delta_by_layer"}
    assert all(p.stat().st_size > 0 for p in outcome.figures)


# ---------------------------------------------------------------- the measurement's pieces


def test_fitted_slope_of_an_exact_geometric_profile():
    # sq_l = c chi^(depth-1-l) gives ln chi exactly, whatever the EDGE layers hold
    depth, chi = 20, 0.83
    sq = 3.0 * chi ** (depth - 1.0 - np.arange(depth))
    sq[: mf.EDGE], sq[-mf.EDGE :] = 1e9, 1e-9
    assert mf.fitted_log_chi1(sq) == pytest.approx(math.log(chi), abs=1e-12)
    two = np.stack([sq, 5.0 * sq])  # pooling networks whose profiles differ by a constant factor
    assert mf.pooled_log_chi1(two) == pytest.approx(math.log(chi), abs=1e-12)


def test_linear_network_shrinks_by_sigma_w2_per_layer():
    # identity activation: E||W^T d||^2 = sigma_w2 ||d||^2 exactly, so chi_1 = sigma_w2 at any width.
    # A wrong weight scale in set_parameters (e.g. sigma_w2 / width instead of its square root) fails this.
    case = mf.Case("identity", 0.8, 0.1)
    sq = mf.delta_sq_norms([case], networks=8, width=200, depth=20, batch=16, seed=3, dtype="float64")[0]
    per = mf.per_network_log_chi1(sq)
    se = per.std(ddof=1) / math.sqrt(len(per))
    assert abs(mf.pooled_log_chi1(sq) - math.log(0.8)) < 4 * se + 1e-3, f"measured {mf.pooled_log_chi1(sq)}, se {se}"


@pytest.mark.parametrize("activation, sigma_w2", [("tanh", 2.5), ("tanh", 1.0), ("relu", 1.5)])
def test_layers_start_and_stay_at_q_star(activation, sigma_w2):
    # the input is scaled so that z_0 has variance q*, and the length map keeps it there
    case = mf.Case(activation, sigma_w2, 0.05)
    q = theory.q_star(activation, sigma_w2, 0.05)
    rng = np.random.default_rng(11)
    draws = mf.Draws.sample(rng, 400, 12, 64, "float64")
    net = mf.engine(case, 400, 12, "float64")
    mf.set_parameters(net, case, draws)
    _, cache = net.forward(mf.start_input(case, draws), trace=True)
    for l in (0, 5, 10):  # mean z^2 over 64 x 400 entries: relative sd ~ sqrt(2 / 400) from the weights
        assert np.mean(cache.layers[l].z ** 2) == pytest.approx(q, rel=0.12), f"layer {l}"


def test_cases_share_draws_but_not_results():
    # common random numbers: network k of a case is the same whatever other cases are measured with it
    a, b = mf.Case("tanh", 1.5, 0.05), mf.Case("relu", 2.2, 0.05)
    both = mf.delta_sq_norms([a, b], networks=2, width=64, depth=10, batch=4, seed=9, dtype="float64")
    alone = mf.delta_sq_norms([b], networks=2, width=64, depth=10, batch=4, seed=9, dtype="float64")
    np.testing.assert_array_equal(both[1], alone[0])
    assert not np.allclose(both[0, 0], both[0, 1])  # networks of one case differ


def test_phase_labels():
    assert schoenholz2017.phase(-0.05, 0.002) == "ordered"
    assert schoenholz2017.phase(0.05, 0.002) == "chaotic"
    assert schoenholz2017.phase(0.003, 0.002) == "edge"  # within 2 standard errors of chi_1 = 1
