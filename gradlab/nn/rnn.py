"""The vanilla RNN model: `layers` stacked cells h_t = phi(W_ih x_t + W_hh h_(t-1) + b) and a linear readout.

Shapes: x (N, T, D) (or (R, N, T, D) with an ensemble), h (N, H), y (N, O) for the loss on the last step
or (N, T, O) on every step.
"""

from __future__ import annotations

import numpy as np

from gradlab.nn import activations
from gradlab.nn.cells import rnn as reference
from gradlab.nn.fast import rnn as fast
from gradlab.nn.recurrent import Recurrent, RecurrentCache
from gradlab.nn.sequence import Backward, Forward, upstream

Array = np.ndarray


class RNN(Recurrent):
    """Vanilla RNN with readout. Parameters per layer j (suffix _l{j} for j >= 1): weight_ih (H, D),
    weight_hh (H, H), bias (H,) (= nn.RNN's bias_ih + bias_hh); readout.weight (O, H), readout.bias (O,).

    output="last" puts the loss on y_T, output="all" on every y_t; truncate=k cuts BPTT every k steps;
    reference=True runs the step functions of gradlab.nn.cells.rnn instead of the fast path.
    """

    gates = 1

    def __init__(
        self, input_size: int, hidden_size: int, output_size: int, activation: str = "tanh", *,
        slope: float = activations.DEFAULT_SLOPE, **options,
    ) -> None:  # fmt: skip
        """Options: layers, output, truncate, init, recurrent_init, rng, dtype, gain, sigma_w2, sigma_b2,
        spectral_radius, spectral_norm, ensemble, reference (see gradlab.nn.recurrent.Recurrent)."""
        self.act = activations.get(activation, slope)
        super().__init__(input_size, hidden_size, output_size, slope=self.act.slope, **options)

    def forward(self, x: Array, h0: Array | None = None, trace: bool = False) -> tuple[Array, RecurrentCache]:
        """x (..., N, T, D), h0 (layers, ..., N, H) (or (..., N, H) for one layer; None: zeros) -> y."""
        return self._forward(x, h0, None, trace)

    def _layer_forward(self, j: int, xw: Array, h0: Array, c0: None) -> Forward:
        path = reference if self.reference else fast
        return path.rnn_forward(xw, h0, self.p("weight_hh", j), self.act)

    def _layer_backward(
        self, j: int, fwd: Forward, dh_above: Array | None, dh_last: Array | None, trace: bool, dc_last: None = None
    ) -> Backward:  # fmt: skip
        if self.reference:
            return reference.rnn_backward(upstream(fwd, dh_above, dh_last), fwd, self.truncate, trace)
        return fast.rnn_backward(dh_above, fwd, self.truncate, trace, dh_last)
