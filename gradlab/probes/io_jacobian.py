"""The input-output Jacobian of an MLP at given inputs, from the engine's own backward, and what the
reproductions read from it: its singular values, the spectrum of J J^T, the moments of its squared entries.

J_n = d output_n / d x_n (O, D) for example n: row k is the input gradient of output unit k, the engine's
dx for dL/d(output) = e_k. Examples are independent (no batch norm in training mode, whose statistics
couple them), so one backward can carry many output units: the batch is repeated once per unit of a chunk
and each copy backpropagates its own unit's one-hot gradient (`batched`); else one backward per unit.

Shapes: x (..., N, D) (an ensemble's (R, N, D) or a shared (N, D)) -> J (..., N, O, D).
"""

from __future__ import annotations

import math

import numpy as np

from gradlab.nn import MLP, _checks

Array = np.ndarray
CHUNK_BUDGET = 1 << 22  # batched: about this many activations (float64: 32 MiB) per layer set of one chunk


def input_output_jacobian(model: MLP, x: Array, *, train: bool = False, batched: bool = True, chunk: int | None = None) -> Array:
    """J[..., n, k, d] = d output[..., n, k] / d x[..., n, d] at inputs x (..., N, D): (..., N, O, D).

    train: batch norm's mode; in training mode the examples' outputs depend on each other's inputs,
    so the per-example Jacobian is not the network's: a ValueError. batched: `chunk` output units per
    backward (default: as many as CHUNK_BUDGET allows), else one backward per output unit."""
    if model.norm == "batch" and train:
        raise ValueError("train must be False for a batch-normed MLP: in training mode batch norm couples the "
                         "examples, so d output_n / d x_n is not the network's Jacobian")  # fmt: skip
    x = np.asarray(x, dtype=model.dtype)
    out = model.sizes[-1]
    if not batched:
        return _one_unit_at_a_time(model, x, train)
    if chunk is None:  # examples of every member: the member axis of the input or of the weights
        rows = x.shape[-2] * max(math.prod(x.shape[:-2]), math.prod(model.params["layers.0.weight"].shape[:-2]))
        chunk = max(1, CHUNK_BUDGET // (rows * sum(model.sizes)))
    chunk = min(_checks.positive_int("chunk", chunk), out)
    parts = [_chunk(model, x, train, k, min(k + chunk, out)) for k in range(0, out, chunk)]
    return np.concatenate(parts, axis=-2)


def _one_unit_at_a_time(model: MLP, x: Array, train: bool) -> Array:
    """O backward passes through one forward: pass k sends dL/d(output) = e_k for every example."""
    output, cache = model.forward(x, train=train)
    rows = []
    for k in range(model.sizes[-1]):
        dout = np.zeros_like(output)
        dout[..., k] = 1.0  # dL/d(output_n) = e_k
        rows.append(model.backward(dout, cache, input_grad=True).dx)  # dx_n = row k of J_n
    return np.stack(rows, axis=-2)


def _chunk(model: MLP, x: Array, train: bool, start: int, stop: int) -> Array:
    """Rows start..stop-1 of every J_n: the batch repeated c = stop - start times, copy j sending e_(start+j)."""
    c, n = stop - start, x.shape[-2]
    repeated = np.concatenate([x] * c, axis=-2)  # (..., c N, D): copy j is rows j N .. (j + 1) N - 1
    output, cache = model.forward(repeated, train=train)
    dout = np.zeros_like(output).reshape(*output.shape[:-2], c, n, output.shape[-1])
    dout[..., np.arange(c), :, start + np.arange(c)] = 1.0  # copy j: dL/d(output) = e_(start + j)
    dx = model.backward(dout.reshape(output.shape), cache, input_grad=True).dx
    dx = dx.reshape(*dx.shape[:-2], c, n, dx.shape[-1])  # (..., c, N, D)
    return np.swapaxes(dx, -3, -2)  # (..., N, c, D)


def singular_values(jac: Array) -> Array:
    """The singular values of each J (..., O, D), descending: (..., min(O, D))."""
    return np.linalg.svd(jac, compute_uv=False)


def jjt_eigenvalues(jac: Array) -> Array:
    """The eigenvalues of J J^T (..., O, O), descending: the squared singular values, padded with zeros
    to O when D < O: (..., O)."""
    s2 = singular_values(jac) ** 2
    pad = jac.shape[-2] - s2.shape[-1]
    return s2 if pad <= 0 else np.concatenate([s2, np.zeros((*s2.shape[:-1], pad))], axis=-1)


def spectrum_moments(jac: Array) -> tuple[Array, Array, Array]:
    """(m1, m2, variance) of the eigenvalue distribution of J J^T, each (...,): m_k = tr((J J^T)^k) / O,
    variance = m2 - m1^2 (Pennington et al. 2017's sigma^2_(JJ^T) of one matrix)."""
    lam = jjt_eigenvalues(jac)
    m1, m2 = lam.mean(axis=-1), (lam**2).mean(axis=-1)
    return m1, m2, m2 - m1**2


def squared_entry_moments(jac: Array, axis: int | tuple[int, ...] | None = None) -> tuple[Array, Array]:
    """(E[Z], E[Z^2]) of the squared entries Z = J_ij^2, averaged over `axis` (None: every axis)."""
    z = np.square(jac, dtype=np.float64)
    return z.mean(axis=axis), (z * z).mean(axis=axis)
