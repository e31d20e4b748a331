"""The norms the probes take: L2 (Frobenius for matrices). A "per-example norm" of a recurrent
quantity is taken over all its time steps and units together."""

from __future__ import annotations

import math

import numpy as np

from gradlab.probes.model import Array


def _sq_norm(g: Array) -> float:
    # einsum, not np.dot/np.vdot: OpenBLAS's threaded dot stalls on a busy machine (~10 ms for 1e5 entries)
    g = g.ravel(order="K")  # a view in memory order, also for the trace's transposed arrays
    return float(np.einsum("i,i->", g, g))


def _norm(*arrays: Array) -> float:
    """L2 norm over all the arrays' entries together."""
    return math.sqrt(sum(_sq_norm(a) for a in arrays))


def _example_norms(d: Array) -> Array:
    """Per-example L2 norm over every axis but the first: (N, ...) -> (N,)."""
    if d.ndim == 2:
        return np.sqrt(np.einsum("ij,ij->i", d, d))
    if d.ndim == 3:
        return np.sqrt(np.einsum("ijk,ijk->i", d, d))
    flat = d.reshape(d.shape[0], -1)
    return np.sqrt(np.einsum("ij,ij->i", flat, flat))
