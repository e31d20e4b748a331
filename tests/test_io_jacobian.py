"""gradlab.probes.io_jacobian: the input-output Jacobian of an MLP against central finite differences of
its forward (float64, relative error below 1e-7) and torch.autograd (1e-10, when torch is installed); its
singular values against an SVD of the finite-difference Jacobian; the spectrum and entry moments."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_rel
from gradlab.nn import MLP, gradcheck
from gradlab.probes import io_jacobian as ioj

FD_TOL = 1e-7  # the project's bar for a backward against central differences in float64
H = 1e-5  # step of the 4-point stencil: truncation ~ H^4 phi^(5) ~ 1e-20, rounding ~ 1e-16 / H ~ 1e-11


def fd_jacobian(model: MLP, x: np.ndarray, train: bool = False) -> np.ndarray:
    """(..., N, O, D) by gradcheck's 4-point central stencil on each input entry; the examples are
    independent, so perturbing entry d of every example at once gives every J_n's column d."""
    out = model.forward(x, train=train)[0]
    jac = np.zeros((*out.shape, x.shape[-1]))
    for d in range(x.shape[-1]):
        total = np.zeros_like(out)
        for offset, weight in gradcheck.STENCIL:
            shifted = x.copy()
            shifted[..., d] += offset * H
            total += weight * model.forward(shifted, train=train)[0]
        jac[..., d] = total / (12 * H)
    return jac


def kink_free_input(model: MLP, shape: tuple, seed: int) -> np.ndarray:
    """Inputs whose ReLU pre-activations all sit more than 100 steps from the kink (redrawn until they do)."""
    for attempt in range(200):
        x = np.random.default_rng([seed, attempt]).normal(size=shape)
        if gradcheck.preactivation_margin(model, x) > 100 * H:
            return x
    raise AssertionError("no kink-free input found")


CASES = {
    "tanh": dict(sizes=[5, 7, 6, 4], activation="tanh"),
    "relu": dict(sizes=[4, 6, 6, 5], activation="relu", init="he_normal"),
    "sigmoid, wide output": dict(sizes=[3, 5, 8], activation="sigmoid", output_activation="tanh"),
    "layer norm": dict(sizes=[4, 6, 6, 3], activation="tanh", norm="layer"),
    "residual": dict(sizes=[4, 6, 6, 6, 3], activation="tanh", residual=True, residual_scale=0.5),
    "batch norm, eval": dict(sizes=[4, 6, 6, 3], activation="relu", norm="batch"),
    "orthogonal linear": dict(sizes=[6, 6, 6], activation="identity", init="orthogonal", gain=1.3),
}


def build(case: str, seed: int = 0, **extra) -> MLP:
    options = {"init": "xavier_normal", **CASES[case], **extra}
    return MLP(options.pop("sizes"), rng=np.random.default_rng(seed), dtype="float64", **options)


@pytest.mark.parametrize("case", list(CASES))
def test_jacobian_matches_finite_differences(case):
    model = build(case)
    if model.norm == "batch":  # eval mode with running statistics away from (0, 1), so they matter
        for name, buf in model.buffers.items():
            buf += np.random.default_rng(5).uniform(0.2, 0.8, size=buf.shape)
    x = kink_free_input(model, (3, model.sizes[0]), seed=1)
    jac = ioj.input_output_jacobian(model, x)
    assert jac.shape == (3, model.sizes[-1], model.sizes[0])
    assert_rel(jac, fd_jacobian(model, x), FD_TOL, f"{case}: J")


def test_ensemble_member_jacobian_is_the_member_models():
    # the member axis leads: J (R, N, O, D), member r's equal to the model built alone from rng[r]
    rngs = [np.random.default_rng(s) for s in (3, 4, 5)]
    ensemble = MLP([4, 6, 3], "tanh", init="xavier_normal", rng=rngs, ensemble=3)
    x = np.random.default_rng(9).normal(size=(2, 4))
    jac = ioj.input_output_jacobian(ensemble, x)
    assert jac.shape == (3, 2, 3, 4)
    for r, seed in enumerate((3, 4, 5)):
        alone = MLP([4, 6, 3], "tanh", init="xavier_normal", rng=np.random.default_rng(seed))
        assert_rel(jac[r], fd_jacobian(alone, x), FD_TOL, f"member {r}: J")


@pytest.mark.parametrize("chunk", [1, 2, 5, 100])
def test_batched_chunks_equal_one_unit_at_a_time(chunk):
    model = build("tanh", seed=2, sizes=[5, 7, 6, 5])
    x = np.random.default_rng(3).normal(size=(4, 5))
    one = ioj.input_output_jacobian(model, x, batched=False)
    assert_rel(ioj.input_output_jacobian(model, x, chunk=chunk), one, 1e-13, f"chunk {chunk}")


def test_singular_values_match_an_svd_of_the_finite_difference_jacobian():
    model = build("relu", seed=4, sizes=[6, 8, 8, 5])
    x = kink_free_input(model, (3, 6), seed=7)
    s = ioj.singular_values(ioj.input_output_jacobian(model, x))
    expected = np.linalg.svd(fd_jacobian(model, x), compute_uv=False)
    assert s.shape == (3, 5)
    assert_rel(s, expected, FD_TOL, "singular values")


def test_orthogonal_linear_network_is_an_isometry_times_its_gain():
    # J = W_2 W_1 with orthogonal W_l = 1.3 Q_l: every singular value is 1.3^2, so the spectrum of J J^T
    # has mean 1.3^4 and variance 0 (Pennington et al. 2017's linear orthogonal case, exactly)
    model = build("orthogonal linear")
    jac = ioj.input_output_jacobian(model, np.random.default_rng(0).normal(size=(2, 6)))
    np.testing.assert_allclose(ioj.singular_values(jac), 1.3**2, rtol=1e-12)
    m1, m2, var = ioj.spectrum_moments(jac)
    np.testing.assert_allclose(m1, 1.3**4, rtol=1e-12)
    np.testing.assert_allclose(var, 0.0, atol=1e-11)


def test_spectrum_moments_of_a_known_matrix():
    # J = diag(1, 2, 3) padded to 3 x 4: J J^T has eigenvalues 1, 4, 9
    jac = np.zeros((3, 4))
    jac[[0, 1, 2], [0, 1, 2]] = [1.0, 2.0, 3.0]
    m1, m2, var = ioj.spectrum_moments(jac)
    assert (m1, m2) == pytest.approx((14 / 3, 98 / 3))
    assert var == pytest.approx(98 / 3 - (14 / 3) ** 2)
    # a wide J (O < D) and a tall one (O > D): J J^T is O x O, zero eigenvalues padded
    assert ioj.jjt_eigenvalues(jac.T).tolist() == pytest.approx([9.0, 4.0, 1.0, 0.0])


def test_squared_entry_moments():
    jac = np.array([[[1.0, -2.0], [0.0, 3.0]], [[2.0, 0.0], [0.0, 0.0]]])  # (N=2, O=2, D=2)
    ez, ez2 = ioj.squared_entry_moments(jac)
    assert ez == pytest.approx((1 + 4 + 9 + 4) / 8) and ez2 == pytest.approx((1 + 16 + 81 + 16) / 8)
    per_entry, _ = ioj.squared_entry_moments(jac, axis=0)  # over examples only: (O, D)
    np.testing.assert_allclose(per_entry, [[2.5, 2.0], [0.0, 4.5]])


def test_batch_norm_in_training_mode_is_refused():
    model = build("batch norm, eval")
    with pytest.raises(ValueError, match="train must be False for a batch-normed MLP"):
        ioj.input_output_jacobian(model, np.zeros((4, 4)), train=True)
    with pytest.raises(ValueError, match="chunk must be a positive integer, got 0"):
        ioj.input_output_jacobian(build("tanh"), np.zeros((2, 5)), chunk=0)


@pytest.mark.torch
@pytest.mark.parametrize("case", ["tanh", "relu", "layer norm", "sigmoid, wide output"])
def test_jacobian_matches_torch_autograd(case):
    torch = pytest.importorskip("torch")
    model = build(case, seed=6)
    x = kink_free_input(model, (3, model.sizes[0]), seed=2)
    acts = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid, "identity": torch.nn.Identity}
    modules, sizes = [], model.sizes
    for l in range(model.depth):
        modules.append(torch.nn.Linear(sizes[l], sizes[l + 1], dtype=torch.float64))
        if l < model.depth - 1 and model.norm == "layer":
            modules.append(torch.nn.LayerNorm(sizes[l + 1], dtype=torch.float64))
        modules.append(acts[(model.act if l < model.depth - 1 else model.out_act).name]())
    net = torch.nn.Sequential(*modules)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in model.torch_state().items()})
    expected = np.stack([torch.autograd.functional.jacobian(net, torch.from_numpy(xn)).numpy() for xn in x])
    assert_rel(ioj.input_output_jacobian(model, x), expected, 1e-10, f"{case}: J against torch.autograd")
