"""Gradient clipping, in place over a dict of gradients. Each returns (norm before, norm after),
norms being the global L2 norm over all parameters.

    norm   Pascanu et al. 2013, Algorithm 1: if ||g|| > c then g <- (c / ||g||) g   (direction kept)
    value  g_i <- min(max(g_i, -c), c) for every component                       (direction changes)

In an ensemble (ensemble=True: every gradient has the member axis first) each member is clipped on its
own: the norms are one per member (R,), and the threshold may be one per member too.
"""

from __future__ import annotations

import math

import numpy as np

from gradlab import _process
from gradlab.nn import _checks, members

Array = np.ndarray
MODES = ("none", "norm", "value")


@np.errstate(all="ignore")
def global_norm(grads: dict[str, Array], ensemble: bool = False) -> float | Array:
    """sqrt(sum over parameters of ||g||_F^2), per member with ensemble. The dot products are memory-bound:
    threading them gains nothing and, on a busy machine, costs 100x (see gradlab._process), so they run on
    one BLAS thread."""
    with _process.single_threaded():
        if not ensemble:
            return math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
        flat = (g.reshape(len(g), -1) for g in grads.values())
        return np.sqrt(sum(np.vecdot(f, f) for f in flat))  # one sum of squares per member


def _threshold(name: str, value, grads: dict[str, Array], ensemble: bool) -> float | Array:
    """A positive threshold, or with an ensemble one per member."""
    if ensemble and np.ndim(value) > 0:
        values = members.check_count(name, np.asarray(value, dtype=np.float64), len(next(iter(grads.values()))))
        for v in values:
            _checks.positive(name, float(v))
        return values
    return _checks.positive(name, value)


def _per_member(scale: Array, g: Array) -> Array:
    return scale.reshape(-1, *([1] * (g.ndim - 1)))


@np.errstate(all="ignore")
def clip_norm(grads: dict[str, Array], max_norm: float | Array, ensemble: bool = False) -> tuple[float | Array, float | Array]:
    """Rescale all gradients together so that their global norm is at most max_norm (per member)."""
    c = _threshold("max_norm", max_norm, grads, ensemble)
    norm = global_norm(grads, ensemble)
    if not ensemble:
        if norm > c:  # false for NaN: a NaN gradient is left for the caller to see
            scale = c / norm
            for g in grads.values():
                g *= scale
            return norm, global_norm(grads)
        return norm, norm
    over = norm > c  # likewise per member
    if over.any():
        scale = np.where(over, c / np.where(over, norm, 1.0), 1.0)
        for g in grads.values():
            g *= _per_member(scale, g)
        return norm, global_norm(grads, ensemble)
    return norm, norm


@np.errstate(all="ignore")
def clip_value(grads: dict[str, Array], max_value: float | Array, ensemble: bool = False) -> tuple[float | Array, float | Array]:
    """Clip every gradient component to [-max_value, max_value] (a threshold per member allowed)."""
    c = _threshold("max_value", max_value, grads, ensemble)
    norm = global_norm(grads, ensemble)
    for g in grads.values():
        bound = c if np.ndim(c) == 0 else _per_member(c, g)
        np.clip(g, -bound, bound, out=g)
    return norm, global_norm(grads, ensemble)


def clip(grads: dict[str, Array], mode: str, threshold: float | Array | None, ensemble: bool = False) -> tuple[float | Array, float | Array]:
    """Dispatch on mode (none, norm, value); mode none only measures the norm."""
    _checks.choice("clip mode", mode, MODES)
    if mode == "none":
        norm = global_norm(grads, ensemble)
        return norm, norm
    return (clip_norm if mode == "norm" else clip_value)(grads, threshold, ensemble)  # type: ignore[arg-type]
