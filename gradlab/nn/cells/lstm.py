"""The LSTM cell (Hochreiter and Schmidhuber 1997, with a forget gate) in PyTorch's equations and gate order:

    z = W_ih x_t + b + W_hh h_(t-1)  (i, f, g, o blocks);   i, f, o = sigmoid(z_i, z_f, z_o);  g = tanh(z_g)
    c_t = f * c_(t-1) + i * g;   h_t = o * tanh(c_t)

Backward, with dh = dL/dh_t and dc = dL/dc_t (the totals):

    dc = dL/dc_t through c_(t+1) + dh * o (1 - tanh(c_t)^2)
    dz_i = dc * g i (1 - i),  dz_f = dc * c_(t-1) f (1 - f),  dz_g = dc * i (1 - g^2),  dz_o = dh * tanh(c_t) o (1 - o)
    dL/dc_(t-1) = dc * f,  dL/dh_(t-1) = W_hh^T dz

The factors that multiply dc and dh (gate_derivatives) depend on the step's own values only: they are
written once, here, and used by this backward, the fast path and the probes. Shapes: h, c (..., N, H);
xw_t, gates (..., N, 4H); W_hh (..., 4H, H).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from gradlab.nn.activations import SIGMOID
from gradlab.nn.sequence import Backward, Forward, at, flows_back, split_gates

Array = np.ndarray


class GateDerivatives(NamedTuple):
    """The local factors of a step's backward: dz_i = dc * i_, dz_f = dc * f_, dz_g = dc * g_,
    dz_o = dh * o_, and dc_dh = dL/dc_t through h_t per unit of dL/dh_t."""

    i: Array  # g i (1 - i)
    f: Array  # c_(t-1) f (1 - f)
    g: Array  # i (1 - g^2)
    o: Array  # tanh(c_t) o (1 - o)
    dc_dh: Array  # o (1 - tanh(c_t)^2)


def gate_derivatives(gates: Array, tanh_c: Array, c_prev: Array, out: GateDerivatives | None = None) -> GateDerivatives:
    """The factors for one step ((..., N, .) arrays) or many at once ((..., T, N, .)); `out` (five arrays
    like tanh_c) receives them, so that the fast path and the probes need not allocate."""
    i, f, g, o = split_gates(gates)
    d = GateDerivatives(*(np.empty_like(tanh_c) for _ in range(5))) if out is None else out
    np.subtract(1.0, i, out=d.i)  # c_t = ... + i g:  dc_t/dz_i = g sigmoid'(z_i) = g i (1 - i)
    d.i[...] *= i
    d.i[...] *= g
    np.subtract(1.0, f, out=d.f)  # c_t = f c_(t-1) + ...:  dc_t/dz_f = c_(t-1) f (1 - f)
    d.f[...] *= f
    d.f[...] *= c_prev
    np.multiply(g, g, out=d.g)  # dc_t/dz_g = i tanh'(z_g) = i (1 - g^2)
    np.subtract(1.0, d.g, out=d.g)
    d.g[...] *= i
    np.subtract(1.0, o, out=d.o)  # h_t = o tanh(c_t):  dh_t/dz_o = tanh(c_t) o (1 - o)
    d.o[...] *= o
    d.o[...] *= tanh_c
    np.multiply(tanh_c, tanh_c, out=d.dc_dh)  # dh_t/dc_t = o tanh'(c_t) = o (1 - tanh(c_t)^2)
    np.subtract(1.0, d.dc_dh, out=d.dc_dh)
    d.dc_dh[...] *= o
    return d


class LSTMStepCache(NamedTuple):
    h_prev: Array
    c_prev: Array
    gates: Array  # i, f, g, o
    tanh_c: Array
    weight_hh: Array


def lstm_step_forward(xw_t: Array, h_prev: Array, c_prev: Array, weight_hh: Array) -> tuple[Array, Array, LSTMStepCache]:
    """One step from (h_(t-1), c_(t-1)), with xw_t = W_ih x_t + b precomputed: (h_t, c_t, cache)."""
    z = xw_t + h_prev @ weight_hh.mT  # gate pre-activations z_t
    z_i, z_f, z_g, z_o = split_gates(z)
    i, f, g, o = SIGMOID.forward(z_i), SIGMOID.forward(z_f), np.tanh(z_g), SIGMOID.forward(z_o)
    c = f * c_prev + i * g  # c_t = f * c_(t-1) + i * g
    tanh_c = np.tanh(c)
    h = o * tanh_c  # h_t = o * tanh(c_t)
    return h, c, LSTMStepCache(h_prev, c_prev, np.concatenate([i, f, g, o], axis=-1), tanh_c, weight_hh)


def lstm_step_backward(dh: Array, dc_next: Array, cache: LSTMStepCache) -> tuple[Array, Array, Array, Array]:
    """From dh = dL/dh_t (the total) and dc_next = dL/dc_t through c_(t+1) to (dh_prev, dc_prev, dz, dc)."""
    d = gate_derivatives(cache.gates, cache.tanh_c, cache.c_prev)
    dc = dc_next + dh * d.dc_dh  # dL/dc_t: through c_(t+1) and through h_t
    dz = np.concatenate([dc * d.i, dc * d.f, dc * d.g, dh * d.o], axis=-1)  # dL/dz_t, gate by gate
    dc_prev = dc * split_gates(cache.gates)[1]  # dL/dc_(t-1) = dc_t * f
    dh_prev = dz @ cache.weight_hh  # dL/dh_(t-1) = W_hh^T dL/dz_t
    return dh_prev, dc_prev, dz, dc


def lstm_forward(xw: Array, h0: Array, c0: Array, weight_hh: Array) -> Forward:
    """The cell over xw (..., T, N, 4H) from h0, c0 (..., N, H)."""
    hs, cs, caches = [h0], [c0], []
    for t in range(xw.shape[-3]):
        h, c, cache = lstm_step_forward(at(xw, t), hs[-1], cs[-1], weight_hh)
        hs.append(h)
        cs.append(c)
        caches.append(cache)
    gates = np.stack([c.gates for c in caches], axis=-3)
    return Forward(np.stack(hs, axis=-3), np.stack(cs, axis=-3), gates, caches)


def lstm_backward(
    dh_above: Array, forward: Forward, truncate: int | None = None, trace: bool = False, dc_last: Array | None = None
) -> Backward:  # fmt: skip
    """BPTT from dh_above (..., T, N, H), the part of dL/dh_t from outside the recurrence, and dc_last
    (..., N, H), the part of dL/dc_T from outside it (a gradient on the final cell state; None: 0)."""
    caches = forward.cache
    T = len(caches)
    dz, dhs, dcs = [None] * T, [None] * T, [None] * T
    dh_next = np.zeros_like(caches[0].h_prev)
    dc_next = np.zeros_like(caches[0].c_prev) if dc_last is None else np.array(np.broadcast_to(dc_last, caches[0].c_prev.shape))
    for t in reversed(range(T)):
        dh = at(dh_above, t) + dh_next  # dL/dh_t: from above, plus through the recurrence
        dh_next, dc_next, dz[t], dcs[t] = lstm_step_backward(dh, dc_next, caches[t])
        dhs[t] = dh
        if not flows_back(t, T, truncate):  # truncated BPTT: h_(t-1) and c_(t-1) are held constant
            dh_next, dc_next = np.zeros_like(dh_next), np.zeros_like(dc_next)
    dz = np.stack(dz, axis=-3)
    if not trace:
        return Backward(dz, dz, dh_next, dc_next)
    return Backward(dz, dz, dh_next, dc_next, np.stack(dhs, axis=-3), np.stack(dcs, axis=-3))
