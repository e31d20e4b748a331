"""gradlab reproduce glorot2010 --quick, and the pieces of its measurement."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import quick_reproduction
from gradlab import _process
from gradlab.nn import MLP
from gradlab.reproduce import glorot2010


@pytest.fixture(scope="module")
def claims(tmp_path_factory):
    outcome = quick_reproduction("glorot2010", tmp_path_factory)
    figures = {"delta_variance", "jacobian_singular_values", "weight_gradient_variance"}
    assert {p.stem for p in outcome.figures} == figures
    return {c.claim: c for c in outcome.claims}


def _find(claims, *words):
    (claim,) = [c for text, c in claims.items() if all(w in text for w in words)]
    return claim


@pytest.mark.parametrize("init", ["standard", "normalized"])
@pytest.mark.parametrize("l", [1, 2, 3, 4])
def test_quick_backward_ratio_is_n_var_w_times_the_weighted_slope(claims, init, l):
    # The claim's tolerance is 3 standard errors of 4 networks' paired differences (measured - predicted):
    # 0.003-0.03. Measured in trials: the differences are 0.000-0.006, under 1 standard error each, so a
    # correct prediction passes at the quick size (a wrong weighting, plain E[tanh'^2], misses the
    # normalized l = 1 by 0.048 = 6.5 standard errors).
    c = _find(claims, f"{init} init: Var[delta_{l}] / Var[delta_{l + 1}]")
    assert c.passed, f"{c.claim}: measured {c.measured}, expected {c.expected} {c.tolerance}"


@pytest.mark.parametrize("l", [2, 3, 4])
def test_quick_standard_ratio_is_near_the_papers_one_third(claims, l):
    # n Var[W] = 1/3 times E[tanh'^2] >= 0.95 from layer 2 on: within the issue's 1/3 +- 0.05 (measured
    # offsets <= 0.017, each with a standard error ~0.003 at 4 networks)
    c = _find(claims, f"standard init: Var[delta_{l}] / Var[delta_{l + 1}]")
    assert abs(c.value - 1 / 3) <= 0.05, f"{c.claim}: measured {c.value:.4f}, expected 1/3 +- 0.05"


def test_quick_normalized_gradients_still_decrease(claims):
    # The paper's "do not decrease" (ratio 1) is measured false: 0.80 per layer (4 networks, standard
    # error ~0.012; the full run's 8 give 0.80 too), 16 standard errors below 1; it is E[tanh'^2] of
    # these inputs (the ratio claims above). 0.7-0.9 leaves 8 standard errors each side.
    c = _find(claims, "gradients do not decrease")
    assert not c.passed and 0.7 <= c.value <= 0.9, f"{c.claim}: measured {c.measured} ({c.value:.4f})"


def test_quick_delta_shrinks_toward_the_input(claims):
    # each layer divides the variance by ~3; one network's ratio moves by ~2%: never reversed
    c = _find(claims, "Var[delta_l] < Var[delta_(l+1)]")
    assert c.passed and c.value == 4, f"{c.claim}: {c.measured}"


def test_quick_jacobian_singular_values(claims):
    standard, normalized = _find(claims, "standard", "singular"), _find(claims, "normalized", "singular")
    # standard: one Jacobian's mean singular value varies by ~0.003 between networks and examples: the
    # issue's 0.49 +- 0.03 at any size
    assert abs(standard.value - 0.49) <= 0.03, f"{standard.claim}: measured {standard.value:.4f}, expected 0.49 +- 0.03"
    # normalized: it depends on the example's brightness (tanh' at Var[z] ~ 0.1-0.3), sd ~0.035 per
    # (network, example); the claim's tolerance is 3 standard errors of the quick run's 4 pairs (~0.04).
    # Measured 0.761 on 4 pairs (0.77 on the full run's 16): within 3 SE of the paper's 0.8 at this size.
    # Whatever the verdict, the mean lies within 0.7-0.85 (> 2 standard errors of the 16-pair mean each side).
    assert normalized.expected == "0.8", f"{normalized.claim}: expected {normalized.expected!r}, the paper's 0.8"
    assert 0.7 <= normalized.value <= 0.85, f"{normalized.claim}: measured {normalized.value:.4f}"
    assert normalized.passed == (abs(normalized.value - 0.8) <= float(normalized.tolerance[2:])), normalized


def test_quick_weight_gradients_are_flat(claims):
    standard, normalized = _find(claims, "standard", "Var[dL/dW_l]"), _find(claims, "normalized", "Var[dL/dW_l]")
    # max / min over 5 layers of 4 pooled networks: standard 1.055 +- 0.026, normalized 1.14 +- 0.046
    # (mean +- sd over 200 random 4-network subsets of 16 networks); the bounds are > 4 sd above the means
    assert standard.value <= 1.25, f"{standard.claim}: measured {standard.value:.3f} > 1.25"
    assert normalized.value <= 1.35, f"{normalized.claim}: measured {normalized.value:.3f} > 1.35"


# ---------------------------------------------------------------- the pieces


def test_shapeset_like_images_and_labels():
    x, labels = glorot2010.shapeset_like(np.random.default_rng(0), 3000)
    assert x.shape == (3000, 1024) and labels.shape == (3000,)
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert set(np.unique(labels)) == set(range(9))  # 3 single shapes, 6 unordered pairs
    assert np.mean(x**2) == pytest.approx(1 / 3, abs=0.02)  # grey levels uniform on [0, 1]
    levels = np.array([len(np.unique(img)) for img in x])
    single = labels < 3
    assert np.all(levels[single] == 2)  # background and one shape, always visible
    assert np.all((levels[~single] >= 2) & (levels[~single] <= 3))  # the second shape may cover the first
    assert np.mean(levels[~single] == 3) > 0.9


@pytest.mark.parametrize("kind, area", [(0, 3 * math.sqrt(3) / 4), (2, math.pi * 0.6)])
def test_shape_masks_have_the_areas_of_their_shapes(kind, area):
    # triangle (circumradius r): 3 sqrt(3) / 4 r^2; ellipse with axes r and 0.6 r: 0.6 pi r^2. Both stay
    # inside the image (centre <= 0.55, extent <= 0.45). r ~ U[0.25, 0.45]: E[r^2] = (0.45^3 - 0.25^3) / 0.6;
    # a pixel covers (2 / 32)^2 of the [-1, 1]^2 image. Pixelisation errors average out over 4000 masks.
    masks = glorot2010._shape_masks(np.random.default_rng(1), 4000, np.full(4000, kind))
    expected = area * (0.45**3 - 0.25**3) / 0.6 / (2 / 32) ** 2
    assert masks.sum(axis=(1, 2)).mean() == pytest.approx(expected, rel=0.03)


def test_jacobian_singular_values_against_finite_differences():
    rng = np.random.default_rng(4)
    net = MLP([5, 7, 6, 6, 3], "tanh", init="xavier_normal", rng=rng)
    net.params["layers.1.bias"][...] = rng.normal(size=6)
    x = rng.normal(size=(2, 5))
    _, cache = net.forward(x, trace=True)
    a = [c.a for c in cache.layers]
    got = glorot2010.jacobian_singular_values(net, a, example=1)
    for l in range(2):  # J_l = da_(l+1)/da_l by central differences of a_(l+1) = tanh(W a_l + b)
        w, b = net.params[f"layers.{l + 1}.weight"], net.params[f"layers.{l + 1}.bias"]
        eps, base = 1e-6, a[l][1]
        cols = [(np.tanh(w @ (base + eps * e) + b) - np.tanh(w @ (base - eps * e) + b)) / (2 * eps)
                for e in np.eye(len(base))]  # fmt: skip
        np.testing.assert_allclose(got[l], np.linalg.svd(np.array(cols).T, compute_uv=False), rtol=1e-7)


def test_per_example_weight_gradient_variance_against_the_outer_product():
    rng = np.random.default_rng(5)
    delta, a = rng.normal(0.3, 1.0, size=(4, 7)), rng.uniform(0, 1, size=(4, 9))
    brute = [np.var(np.outer(d, x)) for d, x in zip(delta, a)]
    np.testing.assert_allclose(glorot2010.per_example_weight_grad_var(delta, a), brute, rtol=1e-12)


def test_quarter_circle_law():
    # density integrates to 1, mean 8 s / (3 pi): 0.490 for s^2 = 1/3 (the standard init's 0.49) ...
    s = math.sqrt(1 / 3)
    grid = np.linspace(0.0, 2 * s, 200_001)
    density = glorot2010.quarter_circle(grid, s)
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-4)
    assert np.trapezoid(grid * density, grid) == pytest.approx(8 * s / (3 * math.pi), abs=1e-4)
    # ... and the singular values of a standard-init 1000 x 1000 weight matrix follow it
    w = MLP([1000, 1000], init="standard", rng=np.random.default_rng(6)).params["layers.0.weight"]
    with _process.single_threaded():  # a 2-thread SVD stalls when another process holds a core
        mean = np.linalg.svd(w, compute_uv=False).mean()
    assert mean == pytest.approx(8 * s / (3 * math.pi), abs=0.005)


def test_backward_slope_sq_is_the_gradient_weighted_mean_of_tanh_prime_squared():
    rng = np.random.default_rng(7)
    slopes = [rng.uniform(0.2, 1.0, size=(6, 5)) for _ in range(3)]
    delta = [rng.normal(size=(6, 4)) * rng.uniform(0.1, 3.0, size=(6, 1)) for _ in range(3)]
    got = glorot2010.backward_slope_sq(slopes, delta)
    for l in range(2):  # brute force: sum over examples n of mean_i s^2 x mean_j d^2, over sum_n mean_j d^2
        num = sum(np.mean(slopes[l][n] ** 2) * np.mean(delta[l + 1][n] ** 2) for n in range(6))
        den = sum(np.mean(delta[l + 1][n] ** 2) for n in range(6))
        assert got[l] == pytest.approx(num / den, rel=1e-12), f"layer {l}: {got[l]} vs brute force {num / den}"
    # equal gradients per example: the plain mean of tanh'^2
    same = [np.ones((6, 4))] * 3
    np.testing.assert_allclose(glorot2010.backward_slope_sq(slopes, same), [np.mean(s**2) for s in slopes[:2]], rtol=1e-12)


def test_predicted_ratio_of_a_wide_random_tanh_layer_against_monte_carlo():
    # delta_l = tanh'(z_l) (W^T delta_(l+1)) with W (n, n) of variance 1/(3n) and delta_(l+1) of a scale
    # that varies by example: E[delta_l^2] / E[delta_(l+1)^2] = n Var[W] x backward_slope_sq. n = 2000 units
    # x 64 examples: the ratio's sampling error is ~1/sqrt(n x 64) ~ 0.3% (plus W's column norms, ~0.5%);
    # 3% holds it at > 5 standard errors.
    rng = np.random.default_rng(8)
    n, N = 2000, 64
    w = rng.uniform(-1, 1, size=(n, n)) / math.sqrt(n)  # Var = 1/(3n)
    scale = rng.uniform(0.2, 2.0, size=(N, 1))
    z = rng.normal(size=(N, n)) * (0.3 + scale)  # the slope depends on the example, like brightness
    up = rng.normal(size=(N, n)) * scale
    down = (1 - np.tanh(z) ** 2) * (up @ w)
    predicted = n / (3 * n) * glorot2010.backward_slope_sq([1 - np.tanh(z) ** 2, z], [z, up])[0]  # only s_0, m_1 used
    measured = np.mean(down**2) / np.mean(up**2)
    assert measured == pytest.approx(predicted, rel=0.03), f"ratio {measured:.4f}, predicted {predicted:.4f}"
