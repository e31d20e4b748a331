"""The dense (fully connected) block, in the notation of the seeds: z = W a_prev + b, delta = dL/dz.

Batch-major: a_prev is (..., N, in), W is (..., out, in) as in torch.nn.Linear, so z = a_prev W^T + b.
Leading axes (an ensemble's members, R) broadcast: a_prev (N, in) against W (R, out, in) gives z (R, N, out).
With such axes NumPy's per-element loops run over the last axis only, so on an ensemble of small layers a
broadcast bias add or a sum over the batch axis costs more than the product: the bias is added in place,
and sums over the batch are products with a row of ones (one BLAS call per member, the same call as for
the member alone, so a member's gradients equal its own bit for bit).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

Array = np.ndarray


class DenseCache(NamedTuple):
    a_prev: Array  # (..., N, in) the block's input
    weight: Array  # (..., out, in)


def dense_forward(a_prev: Array, weight: Array, bias: Array) -> tuple[Array, DenseCache]:
    """z = a_prev W^T + b: (..., N, in) -> (..., N, out)."""
    z = a_prev @ weight.mT  # sum_k w_jk a_k
    z += bias[..., None, :]  # z_j = sum_k w_jk a_k + b_j
    return z, DenseCache(a_prev, weight)


def batch_sum(x: Array) -> Array:
    """sum_n x_n over the batch axis: (..., N, k) -> (..., k), as the product (1, N) ones @ x."""
    return (np.ones((1, x.shape[-2]), x.dtype) @ x)[..., 0, :]


def dense_backward(delta: Array, cache: DenseCache, input_grad: bool = True) -> tuple[Array | None, Array, Array]:
    """From delta = dL/dz (..., N, out) to (dL/da_prev, dL/dW, dL/db), each summed over the batch."""
    dW = delta.mT @ cache.a_prev  # dL/dw_jk = sum_n delta_j a_k
    db = batch_sum(delta)  # dL/db_j = sum_n delta_j
    da_prev = delta @ cache.weight if input_grad else None  # dL/da_k = sum_j w_jk delta_j  (W^T delta)
    return da_prev, dW, db
