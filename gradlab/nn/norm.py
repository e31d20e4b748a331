"""Layer and batch normalization blocks: y = gain * (z - mean) / sqrt(var + eps) + bias.

Layer norm (Ba et al. 2016) takes the mean and variance of each example over its features (the last
axis); batch norm (Ioffe and Szegedy 2015) takes them of each feature over the batch (axis -2). Both
use the biased variance and PyTorch's eps = 1e-5. Their backward is the same formula over their own
axis, with xhat = (z - mean) / sqrt(var + eps) and g = dL/dxhat = gain dL/dy:

    dL/dz = (g - mean(g) - xhat mean(g xhat)) / sqrt(var + eps)      (means over the normalized axis)

Batch norm in training mode normalizes with the batch's statistics and backpropagates through them;
it also returns them, so that the caller keeps PyTorch's running mean and unbiased running variance
(momentum 0.1) for evaluation, where y = gain (z - running_mean) / sqrt(running_var + eps) + bias is
affine in z. Shapes: z (..., N, H); gain, bias, running statistics (..., H).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

Array = np.ndarray
EPS = 1e-5  # PyTorch's default
MOMENTUM = 0.1  # PyTorch's default: running = (1 - momentum) running + momentum batch
NORMS = ("layer", "batch")


class NormCache(NamedTuple):
    xhat: Array  # (..., N, H) the normalized input
    inv_std: Array  # 1 / sqrt(var + eps), broadcastable to z
    gain: Array  # (..., H)
    axis: int | None  # the axis the statistics were taken over (None: fixed statistics)


def _normalize(z: Array, mean: Array, var: Array, gain: Array, bias: Array, axis: int | None) -> tuple[Array, NormCache]:
    inv_std = np.where(np.isfinite(var), 1.0 / np.sqrt(var + EPS), np.nan)  # an overflowed variance stays a result
    xhat = (z - mean) * inv_std  # zero mean, unit variance
    y = xhat * gain[..., None, :] + bias[..., None, :]  # then the block's own scale and shift
    return y, NormCache(xhat, inv_std, gain, axis)


def norm_backward(dy: Array, cache: NormCache) -> tuple[Array, Array, Array]:
    """From dy = dL/dy (..., N, H) to (dL/dz, dL/dgain, dL/dbias)."""
    dgain = (dy * cache.xhat).sum(axis=-2)  # y = gain xhat + bias
    dbias = dy.sum(axis=-2)
    g = dy * cache.gain[..., None, :]  # dL/dxhat
    if cache.axis is None:  # fixed statistics: xhat is affine in z
        return g * cache.inv_std, dgain, dbias
    # the statistics depend on z too: subtract the parts that flow through the mean and the variance
    g_mean = g.mean(axis=cache.axis, keepdims=True)
    gx_mean = (g * cache.xhat).mean(axis=cache.axis, keepdims=True)
    dz = (g - g_mean - cache.xhat * gx_mean) * cache.inv_std
    return dz, dgain, dbias


def layer_norm_forward(z: Array, gain: Array, bias: Array) -> tuple[Array, NormCache]:
    """Normalize each example over its features: (..., N, H) -> (..., N, H)."""
    mean = z.mean(axis=-1, keepdims=True)
    var = z.var(axis=-1, keepdims=True)
    return _normalize(z, mean, var, gain, bias, axis=-1)


class BatchStats(NamedTuple):
    mean: Array  # (..., H) the batch mean of each feature
    var: Array  # (..., H) its biased variance (the one the forward divides by)


def batch_norm_forward(z: Array, gain: Array, bias: Array) -> tuple[Array, NormCache, BatchStats]:
    """Training mode: normalize each feature over the batch (N >= 2): (..., N, H) -> (..., N, H)."""
    if z.shape[-2] < 2:
        raise ValueError(f"batch norm in training mode needs a batch of N >= 2 examples, got N = {z.shape[-2]}")
    mean = z.mean(axis=-2, keepdims=True)
    var = z.var(axis=-2, keepdims=True)
    y, cache = _normalize(z, mean, var, gain, bias, axis=-2)
    return y, cache, BatchStats(mean[..., 0, :], var[..., 0, :])


def batch_norm_eval(z: Array, gain: Array, bias: Array, running_mean: Array, running_var: Array) -> tuple[Array, NormCache]:
    """Evaluation mode: normalize with the running statistics (an affine map of z)."""
    return _normalize(z, running_mean[..., None, :], running_var[..., None, :], gain, bias, axis=None)


def update_running(running_mean: Array, running_var: Array, stats: BatchStats, n: int) -> None:
    """PyTorch's running statistics, in place: the mean and the unbiased variance (n / (n - 1)) of each batch."""
    running_mean *= 1 - MOMENTUM
    running_mean += MOMENTUM * stats.mean
    running_var *= 1 - MOMENTUM
    running_var += MOMENTUM * stats.var * (n / (n - 1))
