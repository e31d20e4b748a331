"""The GRU model: `layers` stacked GRU cells (gradlab.nn.cells.gru: PyTorch's equations and gate order
r, z, n) and a linear readout.

Shapes: x (N, T, D) (or (R, N, T, D) with an ensemble), h (N, H), y (N, O) or (N, T, O).
"""

from __future__ import annotations

import numpy as np

from gradlab.nn.cells import gru as reference
from gradlab.nn.fast import gru as fast
from gradlab.nn.recurrent import Recurrent, RecurrentCache, _no_slope
from gradlab.nn.sequence import Backward, Forward, upstream

Array = np.ndarray


class GRU(Recurrent):
    """GRU with readout. Parameters per layer j (suffix _l{j} for j >= 1), gates stacked r, z, n:
    weight_ih (3H, D), weight_hh (3H, H), bias_ih (3H,), bias_hh (3H,) (kept apart: the n gate uses b_hn
    inside r * (W_hn h + b_hn)); readout.weight (O, H), readout.bias (O,). reference=True runs the step
    functions of gradlab.nn.cells.gru instead of the fast path.
    """

    gates = 3
    biases = ("bias_ih", "bias_hh")

    def __init__(self, input_size: int, hidden_size: int, output_size: int, **options) -> None:
        """Options: layers, output, truncate, init, recurrent_init, rng, dtype, gain, sigma_w2, sigma_b2,
        spectral_radius, spectral_norm, ensemble, reference (see gradlab.nn.recurrent.Recurrent)."""
        _no_slope("GRU", options)
        super().__init__(input_size, hidden_size, output_size, slope=0.0, **options)

    def forward(self, x: Array, h0: Array | None = None, trace: bool = False) -> tuple[Array, RecurrentCache]:
        """x (..., N, T, D), h0 (layers, ..., N, H) (or (..., N, H) for one layer; None: zeros) -> y."""
        return self._forward(x, h0, None, trace)

    def _layer_forward(self, j: int, xw: Array, h0: Array, c0: None) -> Forward:
        return (reference if self.reference else fast).gru_forward(xw, h0, self.p("weight_hh", j), self.p("bias_hh", j))

    def _layer_backward(
        self, j: int, fwd: Forward, dh_above: Array | None, dh_last: Array | None, trace: bool, dc_last: None = None
    ) -> Backward:  # fmt: skip
        if self.reference:
            return reference.gru_backward(upstream(fwd, dh_above, dh_last), fwd, self.truncate, trace)
        return fast.gru_backward(dh_above, fwd, self.truncate, trace, dh_last)
