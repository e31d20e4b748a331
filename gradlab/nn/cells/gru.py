"""The GRU cell (Cho et al. 2014) in PyTorch's equations and gate order (r, z, n):

    r = sigmoid(W_ir x_t + b_ir + W_hr h_(t-1) + b_hr)          reset gate
    z = sigmoid(W_iz x_t + b_iz + W_hz h_(t-1) + b_hz)          update gate
    n = tanh(W_in x_t + b_in + r * (W_hn h_(t-1) + b_hn))       candidate
    h_t = (1 - z) * n + z * h_(t-1)

The n gate's two biases cannot be merged (b_hn sits inside r * (.)), so the cell keeps both. With
xw_t = W_ih x_t + b_ih and hw_t = W_hh h_(t-1) + b_hh (each (..., N, 3H), blocks r, z, n), the backward
from dh = dL/dh_t:

    dn = dh (1 - z);  da_n = dn (1 - n^2);  da_z = dh (h_(t-1) - n) z (1 - z);  da_r = da_n hw_n r (1 - r)
    dL/dxw_t = (da_r, da_z, da_n);  dL/dhw_t = (da_r, da_z, da_n * r);  dL/dh_(t-1) = dh z + W_hh^T dL/dhw_t

where a_* are the gates' pre-activations. Each of da_r, da_z, da_n is dh times a factor of the step's own
values (gate_derivatives, the one home of their formulas, used by this backward and the fast path).
Shapes: h (..., N, H); xw_t, hw_t, gates (..., N, 3H); W_hh (..., 3H, H); b_hh (..., 3H).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from gradlab.nn.activations import SIGMOID
from gradlab.nn.sequence import Backward, Forward, at, flows_back, split_gates

Array = np.ndarray


class GateDerivatives(NamedTuple):
    """The local factors of a step's backward: da_r = dh * r, da_z = dh * z, da_n = dh * n (a_* the gates'
    pre-activations), for one step ((..., N, H) arrays) or many at once ((..., T, N, H))."""

    r: Array  # n * hw_n r (1 - r)
    z: Array  # (h_(t-1) - n) z (1 - z)
    n: Array  # (1 - z)(1 - n^2)


def gate_derivatives(gates: Array, h_prev: Array, hw_n: Array) -> GateDerivatives:
    """The factors from the gate values (r, z, n), h_(t-1) and hw_n = W_hn h_(t-1) + b_hn."""
    r, z, n = split_gates(gates, 3)
    d_n = (1 - z) * (1 - n * n)  # h_t = (1 - z) n + ...,  n = tanh(a_n)
    return GateDerivatives(
        d_n * hw_n * r * (1 - r),  # a_n = x_n + r hw_n,  r = sigmoid(a_r)
        (h_prev - n) * z * (1 - z),  # h_t = n + z (h_(t-1) - n),  z = sigmoid(a_z)
        d_n,
    )


class GRUStepCache(NamedTuple):
    h_prev: Array
    gates: Array  # r, z, n
    hw_n: Array  # W_hn h_(t-1) + b_hn, which r scales
    weight_hh: Array


def gru_step_forward(xw_t: Array, h_prev: Array, weight_hh: Array, bias_hh: Array) -> tuple[Array, GRUStepCache]:
    """One step from h_(t-1), with xw_t = W_ih x_t + b_ih precomputed: (h_t, cache)."""
    hw = h_prev @ weight_hh.mT + bias_hh[..., None, :]  # the recurrent parts of r, z, n
    x_r, x_z, x_n = split_gates(xw_t, 3)
    h_r, h_z, h_n = split_gates(hw, 3)
    r = SIGMOID.forward(x_r + h_r)  # reset gate
    z = SIGMOID.forward(x_z + h_z)  # update gate
    n = np.tanh(x_n + r * h_n)  # candidate
    h = (1 - z) * n + z * h_prev  # h_t: between the candidate and h_(t-1)
    return h, GRUStepCache(h_prev, np.concatenate([r, z, n], axis=-1), h_n, weight_hh)


def gru_step_backward(dh: Array, cache: GRUStepCache) -> tuple[Array, Array, Array]:
    """From dh = dL/dh_t (the total) to (dh_prev, dxw, dhw): dL/dh_(t-1), dL/dxw_t, dL/dhw_t."""
    r, z, _ = split_gates(cache.gates, 3)
    d = gate_derivatives(cache.gates, cache.h_prev, cache.hw_n)
    da_r, da_z, da_n = dh * d.r, dh * d.z, dh * d.n  # dL/da for the reset, update and candidate gates
    dxw = np.concatenate([da_r, da_z, da_n], axis=-1)
    dhw = np.concatenate([da_r, da_z, da_n * r], axis=-1)  # r scales the recurrent part of a_n
    dh_prev = dh * z + dhw @ cache.weight_hh  # directly through z h_(t-1), and through W_hh
    return dh_prev, dxw, dhw


def gru_forward(xw: Array, h0: Array, weight_hh: Array, bias_hh: Array) -> Forward:
    """The cell over xw (..., T, N, 3H) from h0 (..., N, H)."""
    hs, caches = [h0], []
    for t in range(xw.shape[-3]):
        h, cache = gru_step_forward(at(xw, t), hs[-1], weight_hh, bias_hh)
        hs.append(h)
        caches.append(cache)
    return Forward(np.stack(hs, axis=-3), None, np.stack([c.gates for c in caches], axis=-3), caches)


def gru_backward(dh_above: Array, forward: Forward, truncate: int | None = None, trace: bool = False) -> Backward:
    """BPTT from dh_above (..., T, N, H), the part of dL/dh_t from outside the recurrence."""
    caches = forward.cache
    T = len(caches)
    dxw, dhw, dhs = [None] * T, [None] * T, [None] * T
    dh_next = np.zeros_like(caches[0].h_prev)
    for t in reversed(range(T)):
        dh = at(dh_above, t) + dh_next  # dL/dh_t: from above, plus through the recurrence
        dhs[t] = dh
        dh_next, dxw[t], dhw[t] = gru_step_backward(dh, caches[t])
        if not flows_back(t, T, truncate):
            dh_next = np.zeros_like(dh_next)  # truncated BPTT: h_(t-1) is held constant
    dh_trace = np.stack(dhs, axis=-3) if trace else None
    return Backward(np.stack(dxw, axis=-3), np.stack(dhw, axis=-3), dh_next, dh=dh_trace)
