"""Activations and their derivatives, side by side, one per row.

Each derivative is written in terms of the forward's own values (z, a = phi(z)), so the backward
never recomputes the forward. `max_derivative` is sup |phi'|: Pascanu et al.'s gamma, and the
scale against which a unit counts as saturated (phi' < 1% of it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from gradlab.nn import _checks

Array = np.ndarray


def _sigmoid(z: Array, out: Array | None = None) -> Array:
    """1 / (1 + exp(-z)); exp overflows to inf for z << 0, which gives exactly 0."""
    out = np.negative(z, out=out)
    np.exp(out, out=out)
    out += 1.0
    return np.reciprocal(out, out=out)


def _tanh(z: Array, out: Array | None = None) -> Array:
    return np.tanh(z, out=out)


def _identity(z: Array, out: Array | None = None) -> Array:
    if out is None:
        return z.copy()
    out[...] = z
    return out


def _relu(z: Array, out: Array | None = None) -> Array:
    return np.maximum(z, 0.0, out=out)


def _leaky_relu(z: Array, out: Array | None = None, *, slope: float) -> Array:
    """max(z, slope z), which is the leaky ReLU for 0 <= slope <= 1."""
    s = np.multiply(z, slope, out=out)
    return np.maximum(z, s, out=s)


# phi'(z) written in terms of a = phi(z), so a backward never needs z: for the ReLUs a > 0 exactly
# when z > 0 (the derivative at 0 is taken as the left one, as PyTorch does).
def _d_identity(a: Array) -> Array:
    return np.ones_like(a)


def _d_sigmoid(a: Array) -> Array:
    return a * (1.0 - a)


def _d_tanh(a: Array) -> Array:
    return 1.0 - a * a


def _d_relu(a: Array) -> Array:
    return (a > 0).astype(a.dtype)


def _d_leaky_relu(a: Array, *, slope: float) -> Array:
    return np.where(a > 0, 1.0, slope).astype(a.dtype)


@dataclass(frozen=True)
class Activation:
    """phi and phi' for one activation: `a = forward(z[, out])`, `phi'(z) = derivative(a)`."""

    name: str
    forward: Callable[..., Array]
    derivative: Callable[[Array], Array]
    max_derivative: float
    slope: float = 0.0

    def backward(self, da: Array, a: Array, out: Array | None = None) -> Array:
        """delta = dL/dz = dL/da * phi'(z), elementwise, from a = phi(z)."""
        return np.multiply(da, self.derivative(a), out=out)

    def __call__(self, z: Array) -> Array:
        return self.forward(z)


#                   name          phi            phi'(a)         max phi'
IDENTITY = Activation("identity", _identity, _d_identity, 1.0)
SIGMOID = Activation("sigmoid", _sigmoid, _d_sigmoid, 0.25)
TANH = Activation("tanh", _tanh, _d_tanh, 1.0)
RELU = Activation("relu", _relu, _d_relu, 1.0)

NAMES = ("identity", "sigmoid", "tanh", "relu", "leaky_relu")
DEFAULT_SLOPE = 0.01


def leaky_relu(slope: float = DEFAULT_SLOPE) -> Activation:
    """max(z, slope z) for 0 <= slope <= 1; phi' is 1 for z > 0 and slope otherwise."""
    slope = _checks.non_negative("slope", slope)
    if slope > 1:
        raise ValueError(f"slope must be a number in [0, 1], got {slope!r}")
    return Activation(
        "leaky_relu",
        partial(_leaky_relu, slope=slope),
        partial(_d_leaky_relu, slope=slope),
        1.0,
        slope,
    )


def get(name: str | Activation, slope: float = DEFAULT_SLOPE) -> Activation:
    """The activation called `name` (one of NAMES); `slope` is used by leaky_relu only."""
    if isinstance(name, Activation):
        return name
    _checks.choice("activation", name, NAMES)
    if name == "leaky_relu":
        return leaky_relu(slope)
    return {"identity": IDENTITY, "sigmoid": SIGMOID, "tanh": TANH, "relu": RELU}[name]
