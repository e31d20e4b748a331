"""Input gradients of ReLU MLPs on a 1-D grid and their correlations (Balduzzi et al. 2017), measured
with gradlab's engine; gradlab.reproduce.balduzzi2017 checks them.

A net maps x in R to R: sizes [1, width x L, 1] (L hidden layers, ReLU, He weights, zero biases), with
batch norm on every hidden layer (over the grid: the grid is the batch) and, for "resnet_bn", residual
connections a_l = a_(l-1) + relu(BN(W_l a_(l-1))) on the width -> width layers. g_i = f'(x_i) at the
`points` grid points of [lo, hi]: the gradient of the function the net computes on the grid, batch norm's
statistics (those of the grid) held fixed, as in evaluation mode. R nets are one ensemble.

Correlations over the nets (E over draws; E[g_i] = 0 by the output layer's symmetry W -> -W):
    C_ij = E[g_i g_j] / sqrt(E[g_i^2] E[g_j^2]),
    pair correlation = the mean of C_ij over all pairs i != j (Theorem 1's "two inputs"),
    neighbour correlation = the mean of C_(i,i+1) (two inputs 4 / 255 apart).
Their standard errors are the jackknife's over the nets (leave one net out).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from gradlab.nn import MLP

Array = np.ndarray
ARCHITECTURES = {"feedforward": False, "resnet_bn": True}  # architecture -> residual


def grid(points: int, lo: float = -2.0, hi: float = 2.0) -> Array:
    """(points,) the inputs, evenly spaced in [lo, hi]."""
    return np.linspace(lo, hi, points)


def input_gradients(architecture: str, depth: int, nets: int, width: int, points: int, seed: int,
                    dtype: str = "float32") -> Array:  # fmt: skip
    """(nets, points) f'(x_i) of `nets` independent nets (net r from Generator([seed, depth, r]))."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}")
    rngs = [np.random.default_rng([seed, depth, r]) for r in range(nets)]
    net = MLP([1] + [width] * depth + [1], "relu", norm="batch", residual=ARCHITECTURES[architecture],
              init="he_normal", rng=rngs, ensemble=nets, dtype=dtype)  # fmt: skip
    x = grid(points)[:, None]
    _, cache = net.forward(x, train=True)
    for l, layer in enumerate(cache.layers[:-1]):  # hold the grid's statistics fixed: f is then one function
        net.buffers[f"layers.{l}.norm.running_mean"][...] = layer.z.mean(axis=-2)
        net.buffers[f"layers.{l}.norm.running_var"][...] = layer.z.var(axis=-2)
    out, cache = net.forward(x, train=False)
    return net.backward(np.ones_like(out), cache).dx[..., 0].astype(np.float64)


def _pair_mean(s: Array) -> float:
    """Mean over i != j of s_ij / sqrt(s_ii s_jj) for a second-moment matrix s (n, n)."""
    d = 1.0 / np.sqrt(np.diag(s))
    n = len(d)
    return float((d @ s @ d - n) / (n * n - n))


def _neighbour_mean(s: Array) -> float:
    """Mean over i of s_(i,i+1) / sqrt(s_ii s_(i+1,i+1))."""
    d = np.diag(s)
    return float(np.mean(np.diag(s, 1) / np.sqrt(d[:-1] * d[1:])))


STATISTICS: dict[str, Callable[[Array], float]] = {"pair": _pair_mean, "neighbour": _neighbour_mean}


def correlation(g: Array, kind: str) -> float:
    """The pair or neighbour correlation of gradients g (nets, points)."""
    return STATISTICS[kind](g.T @ g / len(g))


def jackknife(g: Array, kind: str) -> Array:
    """(nets,) the statistic with each net left out in turn."""
    s = g.T @ g
    return np.array([STATISTICS[kind]((s - np.outer(row, row)) / (len(g) - 1)) for row in g])


def jackknife_se(estimates: Array) -> float:
    """The jackknife standard error sqrt((R - 1) / R sum_r (theta_r - mean)^2) of R leave-one-out estimates."""
    r = len(estimates)
    return math.sqrt((r - 1) / r * float(np.sum((estimates - estimates.mean()) ** 2)))


def autocorrelation(g: Array, lags: int) -> Array:
    """(lags + 1,) the mean over nets of each net's sample autocorrelation along the grid at lags 0..lags."""
    d = g - g.mean(axis=-1, keepdims=True)
    var = np.sum(d * d, axis=-1)
    return np.array([np.mean(np.sum(d[:, k:] * d[:, : d.shape[1] - k], axis=-1) / var) for k in range(lags + 1)])
