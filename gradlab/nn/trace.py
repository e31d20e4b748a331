"""What a backward pass returns: parameter gradients, input/state gradients, and the optional trace.

The trace holds references to arrays the forward and backward compute anyway, so recording it
costs no arithmetic; with trace=False it is None. In an ensemble every array has the member axis first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Array = np.ndarray


@dataclass
class MLPTrace:
    """Per layer l (0 = nearest the input, the output layer last), each (..., N, width_l): z[l] the dense
    output W_l a_(l-1) + b_l (before any normalization), phi[l] the activation's output, a[l] the layer's
    output (a[l-1] + s phi[l] for a residual layer, else phi[l]), delta[l] = dL/dz[l], da[l] = dL/da[l]
    (for residual layers: the gradient of the residual stream)."""

    z: list[Array]
    a: list[Array]
    delta: list[Array]
    da: list[Array]
    phi: list[Array]


@dataclass
class CellTrace:
    """One recurrent layer, per time step, batch-major (..., N, T, H): h the hidden states h_1..h_T,
    dh = dL/dh_t (the total gradient: through the recurrence, the layer above or the readout); dz
    (..., N, T, G H) = dL/d(the pre-activations W_ih x_t + b_ih + ...) of the cell's G blocks (the RNN's
    one, the LSTM's i, f, g, o, the GRU's r, z, n); for the LSTM c the cell states and dc = dL/dc_t;
    gates (..., N, T, G H) the gate values (LSTM, GRU), None for the vanilla RNN."""

    h: Array
    dh: Array
    dz: Array
    c: Array | None = None
    dc: Array | None = None
    gates: Array | None = None


@dataclass
class SequenceTrace:
    """A recurrent model's trace: one CellTrace per layer (0 nearest the input). h, dh, dz, c, dc and
    gates are the top layer's (the one the readout reads), the only one of a one-layer model."""

    layers: list[CellTrace]

    h = property(lambda self: self.layers[-1].h)
    dh = property(lambda self: self.layers[-1].dh)
    dz = property(lambda self: self.layers[-1].dz)
    c = property(lambda self: self.layers[-1].c)
    dc = property(lambda self: self.layers[-1].dc)
    gates = property(lambda self: self.layers[-1].gates)


@dataclass
class Gradients:
    """params: dL/d(parameter), same names and shapes as model.params; dx: dL/dx (None when not
    asked for); dh0, dc0: dL/d(initial state) for recurrent models, h0's shape; trace: see MLPTrace,
    SequenceTrace."""

    params: dict[str, Array]
    dx: Array | None = None
    dh0: Array | None = None
    dc0: Array | None = None
    trace: MLPTrace | SequenceTrace | None = None
