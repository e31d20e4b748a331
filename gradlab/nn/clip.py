"""Gradient clipping, in place over a dict of gradients. Each returns (norm before, norm after),
norms being the global L2 norm over all parameters.

    norm   Pascanu et al. 2013, Algorithm 1: if ||g|| > c then g <- (c / ||g||) g   (direction kept)
    value  g_i <- min(max(g_i, -c), c) for every component                       (direction changes)
"""

from __future__ import annotations

import math

import numpy as np

from gradlab.nn import _blas, _checks

Array = np.ndarray
MODES = ("none", "norm", "value")


@np.errstate(all="ignore")
def global_norm(grads: dict[str, Array]) -> float:
    """sqrt(sum over parameters of ||g||_F^2). The dot products are memory-bound: threading them gains
    nothing and, on a busy machine, costs 100x (see gradlab.nn._blas), so they run on one BLAS thread."""
    with _blas.single_threaded():
        return math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))


@np.errstate(all="ignore")
def clip_norm(grads: dict[str, Array], max_norm: float) -> tuple[float, float]:
    """Rescale all gradients together so that their global norm is at most max_norm."""
    c = _checks.positive("max_norm", max_norm)
    norm = global_norm(grads)
    if norm > c:  # false for NaN: a NaN gradient is left for the caller to see
        scale = c / norm
        for g in grads.values():
            g *= scale
        return norm, global_norm(grads)
    return norm, norm


@np.errstate(all="ignore")
def clip_value(grads: dict[str, Array], max_value: float) -> tuple[float, float]:
    """Clip every gradient component to [-max_value, max_value]."""
    c = _checks.positive("max_value", max_value)
    norm = global_norm(grads)
    for g in grads.values():
        np.clip(g, -c, c, out=g)
    return norm, global_norm(grads)


def clip(grads: dict[str, Array], mode: str, threshold: float | None) -> tuple[float, float]:
    """Dispatch on mode (none, norm, value); mode none only measures the norm."""
    _checks.choice("clip mode", mode, MODES)
    if mode == "none":
        norm = global_norm(grads)
        return norm, norm
    return (clip_norm if mode == "norm" else clip_value)(grads, threshold)  # type: ignore[arg-type]
