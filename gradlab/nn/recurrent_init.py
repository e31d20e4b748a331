"""Parameter initialisation shared by the RNN, the LSTM and the GRU: one cell layer, and the readout."""

from __future__ import annotations

import numpy as np

from gradlab.nn import _checks
from gradlab.nn import init as initialisers

Array = np.ndarray


def cell_params(
    rng: np.random.Generator,
    input_size: int,
    hidden: int,
    gates: int,
    *,
    init: str,
    recurrent_init: str | None,
    slope: float,
    gain: float | None,
    sigma_w2: float,
    sigma_b2: float,
    spectral_radius: float | None,
    spectral_norm: float | None,
    biases: tuple[str, ...] = ("bias",),
) -> dict[str, Array]:
    """weight_ih (gates H, D), weight_hh (gates H, H) and each bias in `biases` (gates H,), drawn in that order.

    weight_ih uses `init` with its default options; weight_hh uses `recurrent_init` (default: `init`) with
    gain / slope / sigma_w2, then is rescaled gate block by gate block to `spectral_radius` or
    `spectral_norm` when given. Biases are zero, or N(0, sigma_b2) for init="mean_field".
    """
    recurrent_init = init if recurrent_init is None else _checks.choice("recurrent_init", recurrent_init, initialisers.NAMES)
    if spectral_radius is not None and spectral_norm is not None:
        raise ValueError("spectral_radius and spectral_norm cannot both be set; choose one")
    params = {
        "weight_ih": initialisers.weight(init, rng, (gates * hidden, input_size), slope=slope),
        "weight_hh": initialisers.weight(recurrent_init, rng, (gates * hidden, hidden), slope=slope, gain=gain, sigma_w2=sigma_w2),
    }
    if spectral_radius is not None:
        params["weight_hh"] = _rescale_blocks(params["weight_hh"], gates, lambda w: initialisers.scale_to_spectral_radius(w, spectral_radius))
    if spectral_norm is not None:
        params["weight_hh"] = _rescale_blocks(params["weight_hh"], gates, lambda w: initialisers.scale_to_spectral_norm(w, spectral_norm))
    for name in biases:
        params[name] = initialisers.mean_field_bias(rng, gates * hidden, sigma_b2) if init == "mean_field" else np.zeros(gates * hidden)
    return params


def readout_params(rng: np.random.Generator, hidden: int, output: int, init: str, slope: float) -> dict[str, Array]:
    """readout.weight (O, H) with `init`, readout.bias (O,) zeros."""
    return {"readout.weight": initialisers.weight(init, rng, (output, hidden), slope=slope), "readout.bias": np.zeros(output)}


def _rescale_blocks(w_hh: Array, gates: int, rescale) -> Array:
    """Apply a square-matrix rescaling to each gate's (H, H) block."""
    H = w_hh.shape[1]
    return np.concatenate([rescale(w_hh[k * H : (k + 1) * H]) for k in range(gates)])
