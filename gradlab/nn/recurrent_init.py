"""Parameter initialisation shared by the RNN and the LSTM."""

from __future__ import annotations

import numpy as np

from gradlab.nn import _checks
from gradlab.nn import init as initialisers

Array = np.ndarray


def recurrent_params(
    rng: np.random.Generator,
    sizes: tuple[int, int, int],
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
) -> dict[str, Array]:
    """weight_ih (gates H, D), weight_hh (gates H, H), bias (gates H,), readout.weight (O, H), readout.bias (O,).

    weight_ih and the readout use `init` with its default options; weight_hh uses `recurrent_init`
    (default: `init`) with gain / slope / sigma_w2, then is rescaled to `spectral_radius` or
    `spectral_norm` when given. bias is zero, or N(0, sigma_b2) for init="mean_field".
    """
    D, H, O = sizes
    _checks.choice("init", init, initialisers.NAMES)
    recurrent_init = init if recurrent_init is None else _checks.choice("recurrent_init", recurrent_init, initialisers.NAMES)
    if spectral_radius is not None and spectral_norm is not None:
        raise ValueError("spectral_radius and spectral_norm cannot both be set; choose one")
    w_ih = initialisers.weight(init, rng, (gates * H, D), slope=slope)
    w_hh = initialisers.weight(recurrent_init, rng, (gates * H, H), slope=slope, gain=gain, sigma_w2=sigma_w2)
    if spectral_radius is not None:
        w_hh = _rescale_blocks(w_hh, gates, lambda w: initialisers.scale_to_spectral_radius(w, spectral_radius))
    if spectral_norm is not None:
        w_hh = _rescale_blocks(w_hh, gates, lambda w: initialisers.scale_to_spectral_norm(w, spectral_norm))
    bias = initialisers.mean_field_bias(rng, gates * H, sigma_b2) if init == "mean_field" else np.zeros(gates * H)
    return {
        "weight_ih": w_ih,
        "weight_hh": w_hh,
        "bias": bias,
        "readout.weight": initialisers.weight(init, rng, (O, H), slope=slope),
        "readout.bias": np.zeros(O),
    }


def _rescale_blocks(w_hh: Array, gates: int, rescale) -> Array:
    """Apply a square-matrix rescaling to each gate's (H, H) block."""
    H = w_hh.shape[1]
    return np.concatenate([rescale(w_hh[k * H : (k + 1) * H]) for k in range(gates)])


def load_torch(params: dict[str, Array], rnn_state: dict, readout_state: dict | None, dtype: np.dtype) -> None:
    """Copy nn.RNN / nn.LSTM (one layer) weights, and optionally an nn.Linear readout's, into params.

    weight_ih_l0 -> weight_ih, weight_hh_l0 -> weight_hh, bias_ih_l0 + bias_hh_l0 -> bias.
    """
    src = {
        "weight_ih": rnn_state["weight_ih_l0"],
        "weight_hh": rnn_state["weight_hh_l0"],
        "bias": np.asarray(rnn_state.get("bias_ih_l0", 0.0), dtype=dtype)
        + np.asarray(rnn_state.get("bias_hh_l0", 0.0), dtype=dtype),
    }
    if readout_state is not None:
        src["readout.weight"] = readout_state["weight"]
        src["readout.bias"] = readout_state.get("bias", np.zeros(params["readout.bias"].shape))
    for name, value in src.items():
        value = np.broadcast_to(np.asarray(value, dtype=dtype), params[name].shape) if name == "bias" else np.asarray(value, dtype=dtype)
        _checks.array_shape(name, value, params[name].shape, f"{name}.shape")
        params[name][...] = value
