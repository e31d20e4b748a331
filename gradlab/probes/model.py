"""What the probes know of a model: its kind, what a "layer" is (a row of the layers table), and the
LSTM's c_(t-1) at every step, which its trace does not hold.

What a "layer" is:
    MLP        layer l = dense layer l (0 nearest the input, the output layer last): weights
               layers.{l}.weight / layers.{l}.bias (the norm's gain and bias are not counted), z_l the
               dense output, phi_l the activation's output, a_l the layer's output (a_(l-1) + s phi_l for a
               residual layer, else phi_l), delta_l = dL/dz_l.
    RNN, LSTM, GRU
               layer j = 0 .. layers-1 = cell layer j (0 reads the input) over all time steps: weights
               weight_ih and weight_hh (one norm over both; suffix _l{j} for j >= 1), its bias (bias_ih
               and bias_hh for the GRU); z = the cell's pre-activations (the G H gate pre-activations of
               the LSTM and GRU) at every step, a = the hidden state h_t at every step.
               layer `layers` (the last row) = the linear readout: readout.weight, readout.bias; z = a = y,
               delta = dL/dy (neither is in the trace: pass output= and dout= to get them, else NaN).
"""

from __future__ import annotations

import numpy as np

from gradlab.nn import GRU, LSTM, MLP, RNN
from gradlab.nn.recurrent import Recurrent, layer_name

Array = np.ndarray
Model = MLP | RNN | LSTM | GRU


def kind_of(model: Model) -> str:
    """'mlp', 'rnn', 'lstm' or 'gru'."""
    if isinstance(model, MLP):
        return "mlp"
    if isinstance(model, LSTM):
        return "lstm"
    if isinstance(model, GRU):
        return "gru"
    if isinstance(model, RNN):
        return "rnn"
    raise TypeError(f"model must be an MLP, RNN, LSTM or GRU, got {type(model).__name__}")


def layer_params(model: Model) -> list[tuple[list[str], list[str]]]:
    """Per layer (see the module docstring), the names of its weights and of its biases."""
    if isinstance(model, MLP):
        return [([f"layers.{l}.weight"], [f"layers.{l}.bias"]) for l in range(model.depth)]
    kind_of(model)
    assert isinstance(model, Recurrent)
    cells = [
        ([layer_name("weight_ih", j), layer_name("weight_hh", j)], [layer_name(b, j) for b in model.biases])
        for j in range(model.num_layers)
    ]  # fmt: skip
    return [*cells, (["readout.weight"], ["readout.bias"])]


def weight_names(model: Model) -> list[str]:
    """Every layer's weight matrices (not biases), in layer_params' order: those the update ratios compare."""
    return [n for w_names, _ in layer_params(model) for n in w_names]


def _c_prev(c: Array, c0: Array | None, out: Array | None = None) -> Array:
    """c_(t-1) for every step, (N, T, H), from c_1..c_T and c_0 (zeros when None)."""
    prev = np.empty_like(c) if out is None else out
    prev[:, 1:] = c[:, :-1]
    prev[:, 0] = 0.0 if c0 is None else c0
    return prev


def _h_prev(h: Array, h0: Array | None) -> Array:
    """h_(t-1) for every step, (N, T, H), from h_1..h_T and h_0 (zeros when None)."""
    return _c_prev(h, h0)


def layer_state(state: Array | None, j: int, layers: int) -> Array | None:
    """Cell layer j's initial state from h0 / c0 as the models take them: (layers, N, H), or (N, H) for one layer."""
    if state is None:
        return None
    state = np.asarray(state)
    return state if layers == 1 and state.ndim == 2 else state[j]
