"""The vanilla RNN's fast path: the same arithmetic as gradlab.nn.cells.rnn, in preallocated arrays.

The forward writes each h_t into one (..., T + 1, N, H) array; the backward forms phi'(z_t) for all steps
at once and writes dL/dz_t over the input projection it no longer needs, so BPTT allocates nothing per
step. Without trace the cache is spent by one backward. Tested equal to the reference (tests/test_paths.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gradlab.nn.activations import Activation
from gradlab.nn.fast import claim, initial_dh
from gradlab.nn.sequence import Backward, Forward, at, flows_back

Array = np.ndarray


@dataclass
class RNNFastCache:
    xw: Array  # (..., T, N, H) W_ih x_t + b; dL/dz_t after a backward without trace
    weight_hh: Array
    act: Activation
    spent: bool = False


def rnn_forward(xw: Array, h0: Array, weight_hh: Array, act: Activation) -> Forward:
    """The cell over xw (..., T, N, H) from h0 (..., N, H); xw is kept (and later reused) by the cache."""
    *lead, T, N, H = xw.shape
    hs = np.empty((*np.broadcast_shapes(tuple(lead), h0.shape[:-2]), T + 1, N, H), dtype=xw.dtype)
    at(hs, 0)[...] = h0
    w_t = np.ascontiguousarray(weight_hh.mT)  # h W_hh^T then reads a row-major matrix (faster)
    for t in range(T):
        h = np.matmul(at(hs, t), w_t, out=at(hs, t + 1))  # W_hh h_(t-1), in h_t's place
        h += at(xw, t)  # z_t
        act.forward(h, out=h)  # h_t = phi(z_t)
    return Forward(hs, None, None, RNNFastCache(xw, weight_hh, act))


def rnn_backward(
    dh_above: Array | None, forward: Forward, truncate: int | None = None, trace: bool = False, dh_last: Array | None = None
) -> Backward:  # fmt: skip
    """BPTT from dh_above (..., T, N, H) and/or dh_last (..., N, H) (the gradient from outside the recurrence
    at every step, or at the last step only)."""
    cache: RNNFastCache = forward.cache
    claim(cache, trace)
    hs = forward.hs
    *lead, T1, N, H = hs.shape
    T = T1 - 1
    dzs = np.empty_like(hs[..., 1:, :, :]) if trace else cache.xw  # phi'(z_t), then dL/dz_t, in one array
    dhs = np.empty_like(dzs) if trace else None
    cache.act.derivative(hs[..., 1:, :, :], out=dzs)  # phi'(z_t) for all steps at once, from h_t = phi(z_t)
    dh = initial_dh(dh_last, (*lead, N, H), hs.dtype)
    for t in reversed(range(T)):
        if dh_above is not None:
            dh += at(dh_above, t)  # dL/dh_t: from above, plus through the recurrence
        if dhs is not None:
            at(dhs, t)[...] = dh
        dz = np.multiply(dh, at(dzs, t), out=at(dzs, t))  # dL/dz_t = dL/dh_t * phi'(z_t)
        np.matmul(dz, cache.weight_hh, out=dh)  # dL/dh_(t-1) = W_hh^T dL/dz_t
        if not flows_back(t, T, truncate):
            dh.fill(0.0)  # truncated BPTT: h_(t-1) is held constant
    return Backward(dzs, dzs, dh, dh=dhs)
