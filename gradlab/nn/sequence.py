"""What the vanilla RNN and the LSTM share: the readout y_t = W_out h_t + b_out, the loss placement
(last step or every step), and truncated BPTT.

Internally sequences are time-major (T, N, .) so that a step is a contiguous slice; the public
arrays are batch-major (N, T, .) as everywhere else (the trace's arrays are views, not copies).
"""

from __future__ import annotations

import numpy as np

from gradlab.nn import _checks

Array = np.ndarray
OUTPUTS = ("last", "all")


def check_options(output: str, truncate: int | None) -> tuple[str, int | None]:
    """Validate the loss placement and the truncation length k (None: full BPTT)."""
    _checks.choice("output", output, OUTPUTS)
    return output, None if truncate is None else _checks.positive_int("truncate", truncate)


def flows_back(t: int, T: int, truncate: int | None) -> bool:
    """Whether dL/dh_t flows into h_(t-1) (h_(-1) being h0). Truncated BPTT(k) cuts the recurrence
    every k steps counting back from the last one, so the last step's loss reaches exactly k steps;
    there is no cut before step 0, so dL/dh0 is the first chunk's gradient and k >= T is full BPTT."""
    return truncate is None or t == 0 or (T - t) % truncate != 0


def readout_forward(hs: Array, weight: Array, bias: Array, output: str) -> Array:
    """y = h W_out^T + b_out: hs (T, N, H) -> (N, O) for the last step, (N, T, O) for every step."""
    if output == "last":
        return hs[-1] @ weight.T + bias
    y = hs @ weight.T  # (T, N, O)
    y += bias
    return y.transpose(1, 0, 2)


def readout_backward(dy: Array, hs: Array, weight: Array, output: str) -> tuple[Array, Array, Array]:
    """From dy = dL/dy to (dW_out, db_out, dh_out); dh_out is (N, H) for "last", (T, N, H) for "all"."""
    if output == "last":
        return dy.T @ hs[-1], dy.sum(axis=0), dy @ weight
    dy = np.ascontiguousarray(dy.transpose(1, 0, 2))  # (T, N, O)
    T, N, H = hs.shape
    dW = dy.reshape(T * N, -1).T @ hs.reshape(T * N, H)  # dL/dW_out = sum_t dy_t h_t^T
    return dW, dy.sum(axis=(0, 1)), dy @ weight  # dL/dh_t from the readout = W_out^T dy_t


def check_input(x: Array, dtype: np.dtype, input_size: int) -> Array:
    """x (N, T, D) as a time-major contiguous (T, N, D) array of the model's dtype."""
    x = np.asarray(x, dtype=dtype)
    _checks.array_shape("x", x, (None, None, input_size), "(N, T, input_size)")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"x must have N >= 1 and T >= 1, got shape {tuple(x.shape)}")
    return np.ascontiguousarray(x.transpose(1, 0, 2))


def initial_state(state: Array | None, name: str, n: int, hidden: int, dtype: np.dtype) -> Array:
    """h0 or c0 as an (N, H) array (zeros when None)."""
    if state is None:
        return np.zeros((n, hidden), dtype=dtype)
    state = np.asarray(state, dtype=dtype)
    _checks.array_shape(name, state, (n, hidden), "(N, hidden_size)")
    return state


def check_dout(dout: Array, output: str, n: int, T: int, out_size: int) -> None:
    shape = (n, out_size) if output == "last" else (n, T, out_size)
    _checks.array_shape("dout", dout, shape, "output.shape")
