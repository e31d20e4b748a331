"""The LSTM's fast path: the same arithmetic as gradlab.nn.cells.lstm, in preallocated arrays.

The forward turns each step's slice of the input projection into that step's gate values in place and
writes h_t, c_t, tanh(c_t) into (..., T (+ 1), N, .) arrays. The backward forms the gate derivatives
(cells.lstm.gate_derivatives, the one home of their formulas) for a block of steps at a time, then walks
the block's steps back in place; without trace it writes dL/dz_t over the gate values it has consumed, so
BPTT needs no second (..., T, N, 4H) array and the cache is spent by one backward. Tested equal to the
reference (tests/test_paths.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gradlab.nn.activations import SIGMOID
from gradlab.nn.cells.lstm import GateDerivatives, gate_derivatives
from gradlab.nn.fast import claim, initial_dh
from gradlab.nn.sequence import Backward, Forward, at, flows_back

Array = np.ndarray
BLOCK_BYTES = 1 << 17  # the gate derivatives are formed for blocks of steps whose (..., N, H) slices are this big


@dataclass
class LSTMFastCache:
    tanh_c: Array  # (..., T, N, H)
    weight_hh: Array
    spent: bool = False


def lstm_forward(xw: Array, h0: Array, c0: Array, weight_hh: Array) -> Forward:
    """The cell over xw (..., T, N, 4H) from h0, c0 (..., N, H); xw becomes the gate values (i, f, g, o)."""
    *lead, T, N, G = xw.shape
    H = G // 4
    hs, cs = (np.empty((*lead, T + 1, N, H), dtype=xw.dtype) for _ in range(2))
    at(hs, 0)[...], at(cs, 0)[...] = h0, c0
    tanh_c = np.empty((*lead, T, N, H), dtype=xw.dtype)
    z = np.empty((*lead, N, G), dtype=xw.dtype)  # scratch for z_t
    w_t = np.ascontiguousarray(weight_hh.mT)  # h W_hh^T then reads a row-major matrix (faster)
    for t in range(T):
        gates, c, th = at(xw, t), at(cs, t + 1), at(tanh_c, t)
        np.matmul(at(hs, t), w_t, out=z)  # W_hh h_(t-1)
        z += gates  # gate pre-activations z_t
        gate_values(z, out=gates)
        i, f, g, o = (gates[..., k * H : (k + 1) * H] for k in range(4))
        np.multiply(f, at(cs, t), out=c)  # c_t = f * c_(t-1)
        np.multiply(i, g, out=th)  #  (i * g, in tanh(c_t)'s place until it is known)
        c += th  #                + i * g
        np.tanh(c, out=th)
        np.multiply(o, th, out=at(hs, t + 1))  # h_t = o * tanh(c_t)
    return Forward(hs, cs, xw, LSTMFastCache(tanh_c, weight_hh))


def gate_values(z: Array, out: Array) -> Array:
    """The gates (i, f, g, o) of pre-activations z (..., 4H), into out: i, f, o = sigmoid(z), g = tanh(z_g)."""
    H = z.shape[-1] // 4
    SIGMOID.forward(z, out=out)  # (the g block is overwritten next)
    np.tanh(z[..., 2 * H : 3 * H], out=out[..., 2 * H : 3 * H])
    return out


def step_gates(xw: Array, h_prev: Array, weight_hh: Array) -> Array:
    """The gates of independent steps, each from its x_t W_ih^T + b (rows of xw, (M, 4H)) and h_(t-1) (M, H),
    as lstm_forward forms them; xw becomes the gate values. The states c_t, h_t are not formed."""
    z = h_prev @ np.ascontiguousarray(weight_hh.mT)  # W_hh h_(t-1), from the row-major matrix as lstm_forward
    z += xw
    return gate_values(z, out=xw)


def lstm_backward(
    dh_above: Array | None, forward: Forward, truncate: int | None = None, trace: bool = False, dh_last: Array | None = None,
    dc_last: Array | None = None,
) -> Backward:  # fmt: skip
    """BPTT from dh_above (..., T, N, H) and/or dh_last (..., N, H) (the gradient from outside the recurrence
    at every step, or at the last step only), and dc_last (..., N, H), dL/dc_T from outside (None: 0)."""
    cache: LSTMFastCache = forward.cache
    claim(cache, trace)
    gates, cs, hs = forward.gates, forward.cs, forward.hs
    *lead, T, N, G = gates.shape
    H = G // 4
    dzs = np.empty_like(gates) if trace else gates  # dL/dz_t (over the consumed gate values without trace)
    dhs, dcs = (np.empty_like(cache.tanh_c) for _ in range(2)) if trace else (None, None)
    K = max(1, min(T, BLOCK_BYTES // (N * H * gates.itemsize * max(1, int(np.prod(lead))))))  # steps per block
    dh = initial_dh(dh_last, (*lead, N, H), gates.dtype)
    dc, dc_next = np.empty_like(dh), initial_dh(dc_last, dh.shape, gates.dtype)  # dL/dc_T from outside
    buffers = GateDerivatives(*(np.empty((*lead, K, N, H), gates.dtype) for _ in range(5)))
    for end in range(T, 0, -K):
        start = max(0, end - K)
        block = slice(start, end)
        into = GateDerivatives(*(b[..., : end - start, :, :] for b in buffers))
        d = gate_derivatives(gates[..., block, :, :], cache.tanh_c[..., block, :, :], cs[..., block, :, :], out=into)
        f = gates[..., block, :, H : 2 * H].copy()  # the forget gates, read before dz takes their place
        for t in reversed(range(start, end)):
            k = t - start
            if dh_above is not None:
                dh += at(dh_above, t)  # dL/dh_t: from above, plus through the recurrence
            np.multiply(dh, at(d.dc_dh, k), out=dc)  # dL/dc_t through h_t ...
            dc += dc_next  #                            ... plus through c_(t+1)
            dz = at(dzs, t)
            for gate, factor, upstream in ((0, d.i, dc), (1, d.f, dc), (2, d.g, dc), (3, d.o, dh)):
                np.multiply(at(factor, k), upstream, out=dz[..., gate * H : (gate + 1) * H])  # dL/dz_t, gate by gate
            if dhs is not None:
                at(dhs, t)[...], at(dcs, t)[...] = dh, dc
            np.multiply(dc, at(f, k), out=dc_next)  # dL/dc_(t-1) = dc_t * f
            np.matmul(dz, cache.weight_hh, out=dh)  # dL/dh_(t-1) = W_hh^T dL/dz_t
            if not flows_back(t, T, truncate):
                dh.fill(0.0)  # truncated BPTT: h_(t-1) and c_(t-1) are held constant
                dc_next.fill(0.0)
    return Backward(dzs, dzs, dh, dc_next, dhs, dcs)
