"""gradlab reproduce hanin2018 --quick, and the pieces of its measurement."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import quick_reproduction
from gradlab import theory
from gradlab.reproduce import driver, hanin2018 as han

# The quick run: 4000 nets per architecture. ln(ratio)'s standard error is ~0.01-0.03 for the narrow-
# and-shallow nets and ~0.06 for 8 x 32 (kurtosis ~50, heavy tails: a sample mean falls short more often
# than not); 0.25 on ln(ratio) is ~4 standard errors there, 0.15 on the pairs' ln of ratios ~2.5.
QUICK_TOLERANCE = 0.25
QUICK_PAIR_TOLERANCE = 0.15


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    return quick_reproduction("hanin2018", tmp_path_factory)


def test_quick_ratios_follow_the_formula(outcome):
    ratios = [c for c in outcome.claims if "= 3 prod" in c.claim]
    assert len(ratios) == 9  # seven architectures and the equal-depth pair
    for claim in ratios:
        expected = float(claim.expected.split()[0])
        assert abs(math.log(claim.value / expected)) <= QUICK_TOLERANCE, f"{claim.claim}: {claim.measured}, formula {expected}"


def test_quick_pairs(outcome):
    depth_pair, beta_pair = outcome.claims[-2:]
    assert abs(depth_pair.value - float(depth_pair.expected)) <= QUICK_PAIR_TOLERANCE, depth_pair.measured
    assert abs(beta_pair.value - float(beta_pair.expected)) <= QUICK_PAIR_TOLERANCE, beta_pair.measured
    assert depth_pair.value > 0.15  # equal depth, larger beta: larger fluctuations (formula 0.337)


def test_quick_run_writes_the_figure(outcome):
    assert {p.stem for p in outcome.figures} == {"moment_ratio_vs_beta"}


def test_mean_squared_entry_is_one_over_fan_in_at_any_depth():
    # Hanin's E[Z] = 1 / n_0 with variance 1 / fan-in in the output layer; here He's 2 / fan-in there too, so
    # E[Z] = 2 / n_0 = 0.25 whatever the depth: 4000 nets of 3 hidden layers (relative standard error ~1%)
    m = han.measure([16, 16, 16], 0, {"inputs": 8, "outputs": 32, "networks": 4000, "block": 1000, "seed": 5})
    assert m.ez.mean() == pytest.approx(2.0 / 8, rel=0.05)
    assert len(m.ez) == 4000 and m.log_se < 0.05


def test_labels():
    assert han.label([32] * 4) == "4 x 32" and han.label([12, 12, 60]) == "[12, 12, 60]"
