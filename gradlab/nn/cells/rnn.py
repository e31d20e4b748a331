"""The vanilla RNN cell, h_t = phi(z_t), z_t = W_ih x_t + W_hh h_(t-1) + b (Elman 1990), step by step.

The input projection xw_t = W_ih x_t + b is computed for all steps at once before the loop, and the
weight gradients as one product after it (dL/dW_ih = sum_t dz_t^T x_t, dL/dW_hh = sum_t dz_t^T h_(t-1)),
so a step needs only W_hh. Shapes: xw_t, h (..., N, H); W_hh (..., H, H).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from gradlab.nn.activations import Activation
from gradlab.nn.sequence import Backward, Forward, at, flows_back

Array = np.ndarray


class RNNStepCache(NamedTuple):
    h_prev: Array  # h_(t-1)
    h: Array  # h_t = phi(z_t)
    weight_hh: Array
    act: Activation


def rnn_step_forward(xw_t: Array, h_prev: Array, weight_hh: Array, act: Activation) -> tuple[Array, RNNStepCache]:
    """h_t = phi(xw_t + W_hh h_(t-1))."""
    z = xw_t + h_prev @ weight_hh.mT  # pre-activation z_t
    h = act.forward(z)  # h_t = phi(z_t)
    return h, RNNStepCache(h_prev, h, weight_hh, act)


def rnn_step_backward(dh: Array, cache: RNNStepCache) -> tuple[Array, Array]:
    """From dh = dL/dh_t (the total) to (dh_prev, dz): dz = dL/dz_t, dh_prev = dL/dh_(t-1) through the recurrence."""
    dz = cache.act.backward(dh, cache.h)  # dL/dz_t = dL/dh_t * phi'(z_t)
    dh_prev = dz @ cache.weight_hh  # dL/dh_(t-1) = W_hh^T dL/dz_t
    return dh_prev, dz


def rnn_forward(xw: Array, h0: Array, weight_hh: Array, act: Activation) -> Forward:
    """The cell over xw (..., T, N, H) from h0 (..., N, H)."""
    hs, caches = [h0], []
    for t in range(xw.shape[-3]):
        h, cache = rnn_step_forward(at(xw, t), hs[-1], weight_hh, act)
        hs.append(h)
        caches.append(cache)
    return Forward(np.stack(hs, axis=-3), None, None, caches)


def rnn_backward(dh_above: Array, forward: Forward, truncate: int | None = None, trace: bool = False) -> Backward:
    """BPTT from dh_above (..., T, N, H), the part of dL/dh_t from outside the recurrence (the readout, the
    layer above); truncate=k cuts the recurrence every k steps counting back from the last."""
    caches = forward.cache
    T = len(caches)
    dz, dhs = [None] * T, [None] * T
    dh_next = np.zeros_like(caches[0].h_prev)
    for t in reversed(range(T)):
        dh = at(dh_above, t) + dh_next  # dL/dh_t: from above, plus through h_(t+1)
        dhs[t] = dh
        dh_next, dz[t] = rnn_step_backward(dh, caches[t])
        if not flows_back(t, T, truncate):
            dh_next = np.zeros_like(dh_next)  # truncated BPTT: h_(t-1) is held constant
    dz = np.stack(dz, axis=-3)
    return Backward(dz, dz, dh_next, dh=np.stack(dhs, axis=-3) if trace else None)
