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


def _leaky_relu(z: Array, out: Array | None = None, *, slope: float | Array, positive: bool = False) -> Array:
    """max(z, slope z), which is the leaky ReLU for 0 <= slope <= 1 (out may be z itself). With every slope > 0
    (positive) np.maximum of the two, bit for bit the masked product below (slope z is NaN only where z is);
    a slope of 0 needs the mask: 0 inf is NaN, and would make z = inf NaN. An ensemble's slopes (R,) scale
    the members along z's leading axis."""
    slope = _by_member(slope, z)
    if positive:
        s = np.multiply(z, slope)  # slope z
        return np.maximum(z, s, out=s if out is None else out)
    if out is not z:
        out = _identity(z, out)
    return np.multiply(out, slope, out=out, where=out < 0)


def _relu_members(z: Array, out: Array | None = None, *, slope: Array, relu: slice | Array, positive: bool) -> Array:
    """An ensemble of leaky ReLUs (slope (R,)) and ReLUs (members `relu`, slope 0): each ReLU member's rows
    are max(z, 0), as alone (the leaky formula at slope 0 gives -0 for z < 0 and NaN for z = -inf), written
    over what the leaky formula gave them (positive: every other member's slope is > 0)."""
    kept = np.maximum(z[relu], 0.0)  # taken before z may be overwritten (out may be z)
    out = _leaky_relu(z, out, slope=slope, positive=positive)
    out[relu] = kept
    return out


def _by_member(slope: float | Array, a: Array) -> float | Array:
    """A slope, or an ensemble's slopes (R,) shaped (R, 1, ..., 1) against a's leading member axis."""
    return slope.reshape((-1,) + (1,) * (a.ndim - 1)) if isinstance(slope, np.ndarray) else slope


# phi'(z) written in terms of a = phi(z), so a backward never needs z: for the ReLUs a > 0 exactly
# when z > 0 (the derivative at 0 is taken as the left one, as PyTorch does). `out` (may be a itself)
# receives the result, so that a backward need not allocate.
def _d_identity(a: Array, out: Array | None = None) -> Array:
    if out is None:
        return np.ones_like(a)
    out.fill(1.0)
    return out


def _d_sigmoid(a: Array, out: Array | None = None) -> Array:
    d = np.subtract(1.0, a, out=out)  # 1 - a
    return np.multiply(a, d, out=d)  # a (1 - a)


def _d_tanh(a: Array, out: Array | None = None) -> Array:
    d = np.multiply(a, a, out=out)  # a^2
    return np.subtract(1.0, d, out=d)  # 1 - a^2


def _d_relu(a: Array, out: Array | None = None) -> Array:
    if out is None:
        return (a > 0).astype(a.dtype)
    return np.greater(a, 0.0, out=out)  # 1.0 where a > 0, else 0.0


def _d_leaky_relu(a: Array, out: Array | None = None, *, slope: float | Array) -> Array:
    slope = _by_member(slope, a)
    d = _d_relu(a, out)
    d *= 1.0 - slope  # 1 where a > 0, slope elsewhere (at slope 0: ReLU's 1 or 0, exactly)
    d += slope
    return d


@dataclass(frozen=True)
class Activation:
    """phi and phi' for one activation: `a = forward(z[, out])`, `phi'(z) = derivative(a[, out])`."""

    name: str
    forward: Callable[..., Array]
    derivative: Callable[..., Array]
    max_derivative: float
    slope: float = 0.0

    def backward(self, da: Array, a: Array, out: Array | None = None) -> Array:
        """delta = dL/dz = dL/da * phi'(z), elementwise, from a = phi(z); out (may be a) receives it."""
        if out is not None and np.may_share_memory(out, da):
            return np.multiply(da, self.derivative(a), out=out)
        d = self.derivative(a, out=out)  # phi'(z), in delta's place
        return np.multiply(da, d, out=d)

    def __call__(self, z: Array) -> Array:
        """phi(z) without floating-point warnings (overflow is a result)."""
        with np.errstate(all="ignore"):
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
    return leaky(slope)


def leaky(slope: float | Array, relu: Array | None = None) -> Activation:
    """The leaky ReLU of a checked slope: a number, or an ensemble's slopes, one per member (R,); `relu`:
    the members (indices) that are ReLUs (their slope 0), whose forward is ReLU's own."""
    slope = np.asarray(slope, dtype=np.float64).ravel() if np.ndim(slope) else slope
    if relu is None or not len(relu):
        forward = partial(_leaky_relu, slope=slope, positive=bool(np.all(np.asarray(slope) > 0)))
    else:
        relu = np.asarray(relu)
        contiguous = bool(np.all(np.diff(relu) == 1))
        others = np.delete(slope, relu)
        forward = partial(_relu_members, slope=slope, relu=slice(relu[0], relu[-1] + 1) if contiguous else relu,
                          positive=bool(np.all(others > 0)))  # fmt: skip
    return Activation("leaky_relu", forward, partial(_d_leaky_relu, slope=slope), 1.0, slope)


def get(name: str | Activation, slope: float = DEFAULT_SLOPE, argument: str = "activation") -> Activation:
    """The activation called `name` (one of NAMES); `slope` is used by leaky_relu only; `argument`
    is the name an error message gives the caller's argument."""
    if isinstance(name, Activation):
        return name
    _checks.choice(argument, name, NAMES)
    if name == "leaky_relu":
        return leaky_relu(slope)
    return {"identity": IDENTITY, "sigmoid": SIGMOID, "tanh": TANH, "relu": RELU}[name]
