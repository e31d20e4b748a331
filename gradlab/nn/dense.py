"""The dense (fully connected) block, in the notation of the seeds: z = W a_prev + b, delta = dL/dz.

Batch-major: a_prev is (..., N, in), W is (..., out, in) as in torch.nn.Linear, so z = a_prev W^T + b.
Leading axes (an ensemble's members, R) broadcast: a_prev (N, in) against W (R, out, in) gives z (R, N, out).
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
    z += bias[..., None, :]  # z_j = sum_k w_jk a_k + b_j (in place: no second (..., N, out) array)
    return z, DenseCache(a_prev, weight)


def dense_backward(delta: Array, cache: DenseCache, input_grad: bool = True) -> tuple[Array | None, Array, Array]:
    """From delta = dL/dz (..., N, out) to (dL/da_prev, dL/dW, dL/db), each summed over the batch."""
    dW = delta.mT @ cache.a_prev  # dL/dw_jk = sum_n delta_j a_k
    db = delta.sum(axis=-2)  # dL/db_j = sum_n delta_j
    da_prev = delta @ cache.weight if input_grad else None  # dL/da_k = sum_j w_jk delta_j  (W^T delta)
    return da_prev, dW, db
