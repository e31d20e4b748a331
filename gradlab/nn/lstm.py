"""The LSTM model: `layers` stacked LSTM cells (gradlab.nn.cells.lstm: PyTorch's equations and gate order
i, f, g, o) and a linear readout.

Shapes: x (N, T, D) (or (R, N, T, D) with an ensemble), h and c (N, H), y (N, O) or (N, T, O).
"""

from __future__ import annotations

import numpy as np

from gradlab.nn import _checks
from gradlab.nn.cells import lstm as reference
from gradlab.nn.fast import lstm as fast
from gradlab.nn.recurrent import Recurrent, RecurrentCache, _no_slope, layer_name
from gradlab.nn.sequence import Backward, Forward, upstream

Array = np.ndarray


class LSTM(Recurrent):
    """LSTM with readout. Parameters per layer j (suffix _l{j} for j >= 1), gates stacked i, f, g, o:
    weight_ih (4H, D), weight_hh (4H, H), bias (4H,) (= nn.LSTM's bias_ih + bias_hh); readout.weight (O, H),
    readout.bias (O,). `forget_bias` is added to every layer's forget-gate block of bias (default 0, as
    PyTorch); reference=True runs the step functions of gradlab.nn.cells.lstm instead of the fast path.
    """

    gates = 4
    cell_state = True

    def __init__(self, input_size: int, hidden_size: int, output_size: int, *, forget_bias: float = 0.0, **options) -> None:
        """Options: layers, output, truncate, init, recurrent_init, rng, dtype, gain, sigma_w2, sigma_b2,
        spectral_radius, spectral_norm, ensemble, reference (see gradlab.nn.recurrent.Recurrent)."""
        self.forget_bias = _checks.finite("forget_bias", forget_bias)
        _no_slope("LSTM", options)
        super().__init__(input_size, hidden_size, output_size, slope=0.0, **options)

    def _member(self, rng: np.random.Generator, options: dict) -> dict[str, Array]:
        params = super()._member(rng, options)
        H = self.hidden_size
        for j in range(self.num_layers):
            params[layer_name("bias", j)][H : 2 * H] += self.forget_bias
        return params

    def forward(
        self, x: Array, h0: Array | None = None, c0: Array | None = None, trace: bool = False
    ) -> tuple[Array, RecurrentCache]:
        """x (..., N, T, D), h0 and c0 (layers, ..., N, H) (or (..., N, H) for one layer; None: zeros) -> y."""
        return self._forward(x, h0, c0, trace)

    def _layer_forward(self, j: int, xw: Array, h0: Array, c0: Array) -> Forward:
        return (reference if self.reference else fast).lstm_forward(xw, h0, c0, self.p("weight_hh", j))

    def _layer_backward(
        self, j: int, fwd: Forward, dh_above: Array | None, dh_last: Array | None, trace: bool, dc_last: Array | None = None
    ) -> Backward:  # fmt: skip
        if self.reference:
            return reference.lstm_backward(upstream(fwd, dh_above, dh_last), fwd, self.truncate, trace, dc_last)
        return fast.lstm_backward(dh_above, fwd, self.truncate, trace, dh_last, dc_last)
