"""The GRU's fast path: the same arithmetic as gradlab.nn.cells.gru, in preallocated arrays.

The forward turns each step's slice of the input projection into that step's gate values (r, z, n), formed
in contiguous scratch arrays and then copied in, and keeps hw_n = W_hn h_(t-1) + b_hn per step. The backward
forms the gate derivatives (cells.gru.gate_derivatives, the one home of their formulas) for a block of steps
at a time, then walks the block's steps back; without trace it writes dL/dxw_t over the gate values it has
consumed, and the cache is spent by one backward. Tested equal to the reference (tests/test_paths.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gradlab.nn.activations import SIGMOID
from gradlab.nn.cells.gru import gate_derivatives
from gradlab.nn.fast import claim, initial_dh
from gradlab.nn.sequence import Backward, Forward, at, flows_back

Array = np.ndarray
BLOCK_BYTES = 1 << 17  # the gate derivatives are formed for blocks of steps whose (..., N, H) slices are this big


@dataclass
class GRUFastCache:
    hw_n: Array  # (..., T, N, H) W_hn h_(t-1) + b_hn
    weight_hh: Array
    spent: bool = False


def gru_forward(xw: Array, h0: Array, weight_hh: Array, bias_hh: Array) -> Forward:
    """The cell over xw (..., T, N, 3H) from h0 (..., N, H); xw becomes the gate values (r, z, n)."""
    *lead, T, N, G = xw.shape
    H = G // 3
    hs = np.empty((*lead, T + 1, N, H), dtype=xw.dtype)
    at(hs, 0)[...] = h0
    hw_n = np.empty((*lead, T, N, H), dtype=xw.dtype)
    hw = np.empty((*lead, N, G), dtype=xw.dtype)  # scratch for W_hh h_(t-1) + b_hh
    rz = np.empty((*lead, N, 2 * H), dtype=xw.dtype)  # contiguous scratch for r, z and for n, copied into the
    n = np.empty((*lead, N, H), dtype=xw.dtype)  # gates once known (the sigmoid's passes are slower on a strided view)
    w_t = np.ascontiguousarray(weight_hh.mT)  # h W_hh^T then reads a row-major matrix (faster)
    b = bias_hh[..., None, :]
    for t in range(T):
        gates, h_prev, h, hwn = at(xw, t), at(hs, t), at(hs, t + 1), at(hw_n, t)
        np.matmul(h_prev, w_t, out=hw)
        hw += b  # the recurrent parts of r, z, n
        gate_values(gates, hw, rz, n)
        hwn[...] = hw[..., 2 * H :]
        gates[..., : 2 * H], gates[..., 2 * H :] = rz, n  # the gate values, for the backward
        np.subtract(h_prev, n, out=h)
        h *= rz[..., H:]
        h += n  # h_t = n + z (h_(t-1) - n)
    return Forward(hs, None, xw, GRUFastCache(hw_n, weight_hh))


def gate_values(xw: Array, hw: Array, rz: Array, n: Array) -> None:
    """The gates from x_t W_ih^T + b_ih (xw) and W_hh h_(t-1) + b_hh (hw), each (..., 3H): r, z = sigmoid(xw_rz +
    hw_rz) into rz (..., 2H), the candidate n = tanh(xw_n + r * hw_n) into n (..., H)."""
    H = n.shape[-1]
    np.add(xw[..., : 2 * H], hw[..., : 2 * H], out=rz)
    SIGMOID.forward(rz, out=rz)
    np.multiply(rz[..., :H], hw[..., 2 * H :], out=n)  # r * hw_n
    n += xw[..., 2 * H :]
    np.tanh(n, out=n)


def step_gates(xw: Array, h_prev: Array, weight_hh: Array, bias_hh: Array) -> Array:
    """The gates of independent steps, each from its x_t W_ih^T + b_ih (rows of xw, (M, 3H)) and h_(t-1) (M, H),
    as gru_forward forms them; xw becomes the gate values (r, z, n). The states h_t are not formed."""
    H = h_prev.shape[-1]
    hw = h_prev @ np.ascontiguousarray(weight_hh.mT)
    hw += bias_hh[..., None, :]
    rz, n = np.empty((*hw.shape[:-1], 2 * H), hw.dtype), np.empty(h_prev.shape, hw.dtype)
    gate_values(xw, hw, rz, n)
    xw[..., : 2 * H], xw[..., 2 * H :] = rz, n
    return xw


def gru_backward(
    dh_above: Array | None, forward: Forward, truncate: int | None = None, trace: bool = False, dh_last: Array | None = None
) -> Backward:  # fmt: skip
    """BPTT from dh_above (..., T, N, H) and/or dh_last (..., N, H) (the gradient from outside the recurrence
    at every step, or at the last step only)."""
    cache: GRUFastCache = forward.cache
    claim(cache, trace)
    gates, hs = forward.gates, forward.hs
    *lead, T, N, G = gates.shape
    H = G // 3
    dxw = np.empty_like(gates) if trace else gates  # dL/dxw_t (over the consumed gate values without trace)
    dhw = np.empty_like(gates)
    dhs = np.empty_like(cache.hw_n) if trace else None
    K = max(1, min(T, BLOCK_BYTES // (N * H * gates.itemsize * max(1, int(np.prod(lead))))))  # steps per block
    dh = initial_dh(dh_last, (*lead, N, H), gates.dtype)
    for end in range(T, 0, -K):
        start = max(0, end - K)
        block = slice(start, end)
        d = gate_derivatives(gates[..., block, :, :], hs[..., block, :, :], cache.hw_n[..., block, :, :])
        r, z = gates[..., block, :, :H].copy(), gates[..., block, :, H : 2 * H].copy()  # read before dxw takes their place
        for t in reversed(range(start, end)):
            k = t - start
            if dh_above is not None:
                dh += at(dh_above, t)  # dL/dh_t: from above, plus through the recurrence
            if dhs is not None:
                at(dhs, t)[...] = dh
            dx, dr = at(dxw, t), at(dhw, t)
            for gate, factor in ((0, d.r), (1, d.z), (2, d.n)):
                np.multiply(at(factor, k), dh, out=dx[..., gate * H : (gate + 1) * H])  # da_r, da_z, da_n
            dr[...] = dx
            dr[..., 2 * H :] *= at(r, k)  # r scales the recurrent part of a_n
            direct = dh * at(z, k)  # through z h_(t-1)
            np.matmul(dr, cache.weight_hh, out=dh)  # through W_hh
            dh += direct
            if not flows_back(t, T, truncate):
                dh.fill(0.0)  # truncated BPTT: h_(t-1) is held constant
    return Backward(dxw, dhw, dh, dh=dhs)
