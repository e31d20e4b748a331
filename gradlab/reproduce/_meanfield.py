"""Mean-field measurements at initialisation, shared by the reproductions and tests/test_theory.py.

Poole et al. 2016 and Schoenholz et al. 2017: in a wide MLP with W ~ N(0, sigma_w2 / width) and
b ~ N(0, sigma_b2), whose pre-activations sit at the fixed point q*, the squared norm of the
backpropagated error shrinks (or grows) by the same factor in every layer,
    E||delta_l||^2 = chi_1 E||delta_(l+1)||^2,   chi_1 = sigma_w2 E[phi'(sqrt(q*) z)^2],
so ln E||delta_l||^2 is a straight line in l whose slope, read from the output toward the input, is
ln chi_1 (gradlab.theory.chi1). This module measures that slope with gradlab's engine.

How (delta_sq_norms): `networks` MLPs of `depth` weight layers, all `width` wide (the last one has the
identity activation); the input x ~ N(0, (q0 - sigma_b2) / sigma_w2) per entry, so that the first
layer's pre-activations start at q0 = q* (q0 = 1 + sigma_b2 where q* is infinite: ReLUs at or beyond
the edge of chaos, whose chi_1 does not depend on q); dL/d(output) i.i.d. N(0, 1) per example and unit
(a wide output: each example's gradient points in its own direction). E||delta_l||^2 is the mean over
the `batch` examples and then over the networks (pooled), and the slope is the least-squares fit of
ln E||delta_l||^2 over the layers 2 .. depth-3 (off the input layer and the identity output layer).

Common random numbers: network k of every case is built from the same standard-normal draws
(W_l = sqrt(sigma_w2 / width) G_kl, b_l = sqrt(sigma_b2) g_kl, x = s X_k, dL/d(output) = D_k), so
that the draws, which cost more than the forward and backward passes, are made once for all cases.
Each case's networks are still independent of each other, so each case's estimate and its noise are
those of independent draws; only the errors of different cases are correlated.

Noise (measured, width 500, depth 60, batch 16): one network's slope scatters about ln chi_1 with a
standard deviation of ~0.005-0.006 for tanh and ~0.008 for ReLU (see per_network_log_chi1); pooling
K networks divides it by about sqrt(K).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gradlab import theory
from gradlab.nn import MLP, activations

Array = np.ndarray
EDGE = 2  # layers left out of the fit at each end: the input layer's and the identity output layer's


@dataclass(frozen=True)
class Case:
    """One mean-field network: activation (slope for leaky_relu), weight and bias variances."""

    activation: str
    sigma_w2: float
    sigma_b2: float
    slope: float = activations.DEFAULT_SLOPE

    @property
    def chi1(self) -> float:
        """Mean field's per-layer ratio of E||delta||^2 (gradlab.theory.chi1)."""
        return theory.chi1(self.activation, self.sigma_w2, self.sigma_b2, self.slope)

    @property
    def start_q(self) -> float:
        """q0, the first layer's pre-activation variance: q* where finite, else 1 + sigma_b2."""
        q = theory.q_star(self.activation, self.sigma_w2, self.sigma_b2, self.slope)
        return q if math.isfinite(q) else 1.0 + self.sigma_b2


@dataclass
class Draws:
    """Network k's standard-normal draws, shared by every case: weights G (depth, width, width),
    biases g (depth, width), input X (batch, width), top gradient D (batch, width)."""

    weights: Array
    biases: Array
    x: Array
    dout: Array

    @classmethod
    def sample(cls, rng: np.random.Generator, width: int, depth: int, batch: int, dtype: str) -> Draws:
        def normal(*shape: int) -> Array:
            return rng.standard_normal(shape, dtype=np.dtype(dtype).type)

        return cls(normal(depth, width, width), normal(depth, width), normal(batch, width), normal(batch, width))


def engine(case: Case, width: int, depth: int, dtype: str) -> MLP:
    """An engine MLP of the right shape and activation; its parameters are overwritten per network
    (init="identity" draws nothing, so building it costs no random numbers)."""
    return MLP([width] * (depth + 1), case.activation, init="identity", slope=case.slope, dtype=dtype)


def set_parameters(net: MLP, case: Case, draws: Draws) -> None:
    """W_l = sqrt(sigma_w2 / fan_in) G_l, b_l = sqrt(sigma_b2) g_l (gradlab.nn.init.mean_field's law)."""
    w_scale = math.sqrt(case.sigma_w2 / draws.weights.shape[2])
    b_scale = math.sqrt(case.sigma_b2)
    for l in range(net.depth):
        np.multiply(draws.weights[l], w_scale, out=net.params[f"layers.{l}.weight"])
        np.multiply(draws.biases[l], b_scale, out=net.params[f"layers.{l}.bias"])


def start_input(case: Case, draws: Draws) -> Array:
    """(batch, width) x = s X with sigma_w2 s^2 + sigma_b2 = q0: the first pre-activations have variance q0."""
    return draws.x * math.sqrt(max(case.start_q - case.sigma_b2, 0.0) / case.sigma_w2)


def _sq_norms(net: MLP, case: Case, draws: Draws) -> Array:
    """(depth,) batch mean of ||delta_l||^2 for one network."""
    _, cache = net.forward(start_input(case, draws), trace=True)
    trace = net.backward(draws.dout, cache, input_grad=False).trace
    return np.array([np.mean(np.einsum("nj,nj->n", d, d, dtype=np.float64)) for d in trace.delta])


def delta_sq_norms(
    cases: Sequence[Case], networks: int, width: int = 500, depth: int = 60, batch: int = 16, seed: int = 2017,
    dtype: str = "float32",
) -> Array:  # fmt: skip
    """(cases, networks, depth): E over the batch of ||delta_l||^2 = ||dL/dz_l||^2 per case, network, layer.

    Network k's draws come from Generator([seed, k]) and are shared by every case (module docstring)."""
    nets: dict[tuple[str, float], MLP] = {}
    sq = np.empty((len(cases), networks, depth))
    for k in range(networks):
        draws = Draws.sample(np.random.default_rng([seed, k]), width, depth, batch, dtype)
        for i, case in enumerate(cases):
            key = (case.activation, case.slope)
            if key not in nets:
                nets[key] = engine(case, width, depth, dtype)
            net = nets[key]
            set_parameters(net, case, draws)
            sq[i, k] = _sq_norms(net, case, draws)
    return sq


def fitted_log_chi1(sq: Array) -> Array:
    """-slope of ln sq over layers EDGE .. depth-1-EDGE (gradlab.theory.log_slope); (..., depth) -> (...).

    sq_l = c chi^(depth-1-l) gives ln chi exactly (the slope against l is -ln chi)."""
    depth = sq.shape[-1]
    return -theory.log_slope(sq[..., EDGE : depth - EDGE], np.arange(EDGE, depth - EDGE))


def pooled_log_chi1(sq: Array) -> Array:
    """ln chi_1 from E||delta_l||^2 pooled over the networks (axis -2); (..., networks, depth) -> (...)."""
    return fitted_log_chi1(sq.mean(axis=-2))


def per_network_log_chi1(sq: Array) -> Array:
    """Each network's own fitted ln chi_1; (..., networks, depth) -> (..., networks): their standard
    deviation over sqrt(networks) is the pooled estimate's standard error."""
    return fitted_log_chi1(sq)


def measured_log_chi1(
    activation: str, sigma_w2: float, networks: int, seed: int, sigma_b2: float = 0.05,
    slope: float = activations.DEFAULT_SLOPE, width: int = 500, depth: int = 60, batch: int = 16,
) -> float:  # fmt: skip
    """The pooled ln chi_1 of one case (delta_sq_norms, then pooled_log_chi1)."""
    sq = delta_sq_norms([Case(activation, sigma_w2, sigma_b2, slope)], networks, width, depth, batch, seed)
    return float(pooled_log_chi1(sq[0]))
