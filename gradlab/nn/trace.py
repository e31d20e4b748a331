"""What a backward pass returns: parameter gradients, input/state gradients, and the optional trace.

The trace holds references to arrays the forward and backward compute anyway, so recording it
costs no arithmetic; with trace=False it is None.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Array = np.ndarray


@dataclass
class MLPTrace:
    """Per layer l (0 = nearest the input, the output layer last), each (N, width_l):
    z[l] pre-activation, a[l] = phi(z[l]), delta[l] = dL/dz[l]."""

    z: list[Array]
    a: list[Array]
    delta: list[Array]


@dataclass
class SequenceTrace:
    """Per time step, batch-major (N, T, H): h hidden states h_1..h_T, dh = dL/dh_t (the total
    gradient, through the readout and the recurrence); LSTM only: c cell states c_1..c_T,
    dc = dL/dc_t, gates (N, T, 4H) the gate values (i, f, g, o)."""

    h: Array
    dh: Array
    c: Array | None = None
    dc: Array | None = None
    gates: Array | None = None


@dataclass
class Gradients:
    """params: dL/d(parameter), same names and shapes as model.params; dx: dL/dx (None when not
    asked for); dh0, dc0: dL/d(initial state) for recurrent models; trace: see MLPTrace/SequenceTrace."""

    params: dict[str, Array]
    dx: Array | None = None
    dh0: Array | None = None
    dc0: Array | None = None
    trace: MLPTrace | SequenceTrace | None = None
