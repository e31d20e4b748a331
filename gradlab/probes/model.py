"""What the probes know of a model: its kind, what a "layer" is (a row of the layers table), and the
LSTM's c_(t-1) at every step, which its trace does not hold.

What a "layer" is:
    MLP        layer l = dense layer l (0 nearest the input, the output layer last): weights
               layers.{l}.weight / layers.{l}.bias, z_l, a_l = phi(z_l), delta_l = dL/dz_l.
    RNN, LSTM  layer 0 = the recurrent cell over all time steps: weights weight_ih and weight_hh (one
               norm over both), bias; z = the cell's pre-activations (the 4H gate pre-activations for
               the LSTM) at every step, a = the hidden state h_t at every step.
               layer 1 = the linear readout: readout.weight, readout.bias; z = a = y, delta = dL/dy
               (neither is in the trace: pass output= and dout= to get them, else NaN).
"""

from __future__ import annotations

import numpy as np

from gradlab.nn import LSTM, MLP, RNN

Array = np.ndarray
Model = MLP | RNN | LSTM


def kind_of(model: Model) -> str:
    """'mlp', 'rnn' or 'lstm'."""
    if isinstance(model, MLP):
        return "mlp"
    if isinstance(model, LSTM):
        return "lstm"
    if isinstance(model, RNN):
        return "rnn"
    raise TypeError(f"model must be an MLP, RNN or LSTM, got {type(model).__name__}")


def layer_params(model: Model) -> list[tuple[list[str], list[str]]]:
    """Per layer (see the module docstring), the names of its weights and of its biases."""
    if isinstance(model, MLP):
        return [([f"layers.{l}.weight"], [f"layers.{l}.bias"]) for l in range(model.depth)]
    kind_of(model)
    return [(["weight_ih", "weight_hh"], ["bias"]), (["readout.weight"], ["readout.bias"])]


def _c_prev(c: Array, c0: Array | None, out: Array | None = None) -> Array:
    """c_(t-1) for every step, (N, T, H), from c_1..c_T and c_0 (zeros when None)."""
    prev = np.empty_like(c) if out is None else out
    prev[:, 1:] = c[:, :-1]
    prev[:, 0] = 0.0 if c0 is None else c0
    return prev
