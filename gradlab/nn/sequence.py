"""What every recurrent cell and model shares: the layout of sequences, the loss placement (last step
or every step), truncated BPTT, the readout y_t = W_out h_t + b_out, and what a cell's sequence forward
and backward return.

Internally a sequence is time-major within each member: (..., T, N, .), so that a step t is the
contiguous slice a[..., t, :, :] of every member; the public arrays are batch-major (..., N, T, .).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from gradlab.nn import _checks
from gradlab.nn.dense import DenseCache, dense_backward, dense_forward

Array = np.ndarray
OUTPUTS = ("last", "all")


class Forward(NamedTuple):
    """A cell's pass over a sequence: hs (..., T + 1, N, H) h_0 .. h_T; cs likewise (LSTM) or None;
    gates (..., T, N, G H) the gate values (LSTM, GRU) or None; cache for the backward."""

    hs: Array
    cs: Array | None
    gates: Array | None
    cache: object


class Backward(NamedTuple):
    """A cell's backward over a sequence, each (..., T, N, .): dxw = dL/d(W_ih x_t + b_ih); dhw = dL/d(W_hh
    h_(t-1) [+ b_hh]) (the same array as dxw where the two enter the cell as one sum: RNN, LSTM); dh0, dc0
    (..., N, H) the initial states' gradients; dh, dc = dL/dh_t, dL/dc_t (the totals), when traced."""

    dxw: Array
    dhw: Array
    dh0: Array
    dc0: Array | None = None
    dh: Array | None = None
    dc: Array | None = None


def at(a: Array, t: int) -> Array:
    """Step t of a time-major sequence (..., T, N, .): (..., N, .)."""
    return a[..., t, :, :]


def split_gates(gates: Array, k: int = 4) -> tuple[Array, ...]:
    """(..., k H) -> the k (..., H) blocks (views): i, f, g, o for the LSTM, r, z, n for the GRU."""
    H = gates.shape[-1] // k
    return tuple(gates[..., j * H : (j + 1) * H] for j in range(k))


def upstream(fwd: Forward, dh_above: Array | None, dh_last: Array | None) -> Array:
    """The gradient from outside a layer's recurrence at every step (..., T, N, H), from its every-step
    form (the readout of every step, the layer above), its last-step form (the readout of the last step,
    a gradient on the final state h_T) or their sum; zeros when both are None."""
    if dh_last is None and dh_above is not None:
        return dh_above
    full = np.zeros(fwd.hs[..., 1:, :, :].shape, dtype=fwd.hs.dtype) if dh_above is None else np.array(dh_above)
    if dh_last is not None:
        full[..., -1, :, :] += dh_last
    return full


def check_options(output: str, truncate: int | None) -> tuple[str, int | None]:
    """Validate the loss placement and the truncation length k (None: full BPTT)."""
    _checks.choice("output", output, OUTPUTS)
    return output, None if truncate is None else _checks.positive_int("truncate", truncate)


def flows_back(t: int, T: int, truncate: int | None) -> bool:
    """Whether dL/dh_t flows into h_(t-1) (h_(-1) being h0). Truncated BPTT(k) cuts the recurrence
    every k steps counting back from the last one, so the last step's loss reaches exactly k steps;
    there is no cut before step 0, so dL/dh0 is the first chunk's gradient and k >= T is full BPTT."""
    return truncate is None or t == 0 or (T - t) % truncate != 0


def project(xs: Array, weight: Array, bias: Array) -> Array:
    """x_t W^T + b for every step at once: (..., T, N, D) -> (..., T, N, G), as one product per member."""
    *lead, T, N, D = xs.shape
    out = xs.reshape(*lead, T * N, D) @ weight.mT  # (..., T N, G): the members' leading axes broadcast
    out += bias[..., None, :]
    return out.reshape(*out.shape[:-2], T, N, out.shape[-1])


def back_project(d: Array, weight: Array) -> Array:
    """d_t W for every step at once: (..., T, N, G), W (..., G, D) -> (..., T, N, D)."""
    *lead, T, N, G = d.shape
    out = d.reshape(*lead, T * N, G) @ weight
    return out.reshape(*out.shape[:-2], T, N, out.shape[-1])


def sum_outer(d: Array, xs: Array) -> Array:
    """sum over steps and examples of d_t^T x_t: (..., T, N, G), (..., T, N, D) -> (..., G, D)."""
    *_, T, N, G = d.shape
    return d.reshape(*d.shape[:-3], T * N, G).mT @ xs.reshape(*xs.shape[:-3], T * N, xs.shape[-1])


def readout_forward(hs: Array, weight: Array, bias: Array, output: str) -> Array:
    """y = h W_out^T + b_out: hs (..., T, N, H) -> (..., N, O) for the last step, (..., N, T, O) for every step."""
    if output == "last":
        return dense_forward(at(hs, -1), weight, bias)[0]  # the dense block on h_T
    return project(hs, weight, bias).swapaxes(-3, -2)


def readout_backward(dy: Array, hs: Array, weight: Array, output: str) -> tuple[Array, Array, Array]:
    """From dy = dL/dy to (dW_out, db_out, dh_out); dh_out is (..., N, H) for "last", (..., T, N, H) for "all"."""
    if output == "last":
        dh, dW, db = dense_backward(dy, DenseCache(at(hs, -1), weight))  # the dense block on h_T
        return dW, db, dh
    dy = np.ascontiguousarray(dy.swapaxes(-3, -2))  # (..., T, N, O)
    return sum_outer(dy, hs), dy.sum(axis=(-3, -2)), back_project(dy, weight)  # dL/dh_t = W_out^T dy_t


def check_input(x: Array, dtype: np.dtype, ensemble: int | None, input_size: int) -> Array:
    """x (N, T, D) or, with an ensemble, (R, N, T, D) as a time-major contiguous (..., T, N, D) array."""
    from gradlab.nn import members

    x = members.check_input(x, dtype, ensemble, (None, None, input_size), "(N, T, input_size)")
    if x.shape[-3] == 0 or x.shape[-2] == 0:
        raise ValueError(f"x must have N >= 1 and T >= 1, got shape {tuple(x.shape)}")
    return np.ascontiguousarray(x.swapaxes(-3, -2))


def initial_states(state: Array | None, name: str, layers: int, lead: tuple[int, ...], n: int, hidden: int, dtype: np.dtype) -> list[Array]:
    """h0 or c0 per layer, each (*lead, N, H): zeros when None; else state is (layers, *lead, N, H), or
    (*lead, N, H) for a one-layer model."""
    shape = (*lead, n, hidden)
    if state is None:
        return [np.zeros(shape, dtype=dtype) for _ in range(layers)]
    state = np.asarray(state, dtype=dtype)
    letters = ", ".join([*("R" for _ in lead), "N", "hidden_size"])
    if layers == 1 and state.ndim == len(shape):
        _checks.array_shape(name, state, shape, f"({letters})")
        return [state]
    _checks.array_shape(name, state, (layers, *shape), f"(layers, {letters})" + (f" or ({letters})" if layers == 1 else ""))
    return list(state)


def check_dout(dout: Array, output: str, lead: tuple[int, ...], n: int, T: int, out_size: int) -> None:
    shape = (*lead, n, out_size) if output == "last" else (*lead, n, T, out_size)
    _checks.array_shape("dout", dout, shape, "output.shape")
