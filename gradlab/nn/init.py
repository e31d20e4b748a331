"""Weight initialisers. Each takes a Generator and a shape (fan_out, fan_in) in PyTorch's layout,
so fan_in = shape[1], and returns a float64 array (models cast to their dtype)."""

from __future__ import annotations

import math

import numpy as np

from gradlab.nn import _checks

Array = np.ndarray
Shape = tuple[int, int]


def _fans(shape: Shape) -> tuple[int, int]:
    if len(shape) != 2:
        raise ValueError(f"shape must be (fan_out, fan_in), got {shape!r}")
    return _checks.positive_int("fan_out", shape[0]), _checks.positive_int("fan_in", shape[1])


def standard(rng: np.random.Generator, shape: Shape) -> Array:
    """Glorot and Bengio's "standard" init: W ~ U[-1/sqrt(fan_in), 1/sqrt(fan_in)], Var = 1/(3 fan_in)."""
    _, fan_in = _fans(shape)
    bound = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape)


def xavier_uniform(rng: np.random.Generator, shape: Shape, gain: float = 1.0) -> Array:
    """W ~ U[-b, b], b = gain sqrt(6 / (fan_in + fan_out)) (Glorot's "normalized" init)."""
    fan_out, fan_in = _fans(shape)
    bound = _checks.positive("gain", gain) * math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, size=shape)


def xavier_normal(rng: np.random.Generator, shape: Shape, gain: float = 1.0) -> Array:
    """W ~ N(0, gain^2 2 / (fan_in + fan_out))."""
    fan_out, fan_in = _fans(shape)
    std = _checks.positive("gain", gain) * math.sqrt(2.0 / (fan_in + fan_out))
    return rng.normal(0.0, std, size=shape)


def relu_gain(slope: float = 0.0) -> float:
    """He's gain for a (leaky) ReLU: sqrt(2 / (1 + slope^2))."""
    return math.sqrt(2.0 / (1.0 + _checks.non_negative("slope", slope) ** 2))


def he_normal(rng: np.random.Generator, shape: Shape, slope: float = 0.0) -> Array:
    """W ~ N(0, gain^2 / fan_in) with gain = sqrt(2 / (1 + slope^2)) (Kaiming, fan_in mode)."""
    _, fan_in = _fans(shape)
    return rng.normal(0.0, relu_gain(slope) / math.sqrt(fan_in), size=shape)


def he_uniform(rng: np.random.Generator, shape: Shape, slope: float = 0.0) -> Array:
    """W ~ U[-b, b], b = gain sqrt(3 / fan_in): the same variance as he_normal."""
    _, fan_in = _fans(shape)
    bound = relu_gain(slope) * math.sqrt(3.0 / fan_in)
    return rng.uniform(-bound, bound, size=shape)


def orthogonal(rng: np.random.Generator, shape: Shape, gain: float = 1.0) -> Array:
    """gain x a (semi-)orthogonal matrix: Q of the QR of a Gaussian matrix, signs fixed by diag(R)."""
    rows, cols = _fans(shape)
    gain = _checks.positive("gain", gain)
    a = rng.normal(size=(max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))  # makes Q Haar-distributed
    return gain * (q if rows >= cols else q.T)


def identity(rng: np.random.Generator, shape: Shape, gain: float = 1.0) -> Array:
    """gain x I (Le et al. 2015's IRNN recurrent matrix); rng is unused, kept for a uniform signature."""
    rows, cols = _fans(shape)
    return _checks.positive("gain", gain) * np.eye(rows, cols)


def mean_field(rng: np.random.Generator, shape: Shape, sigma_w2: float = 1.0) -> Array:
    """W ~ N(0, sigma_w^2 / fan_in): the mean-field (Poole 2016, Schoenholz 2017) weights."""
    _, fan_in = _fans(shape)
    return rng.normal(0.0, math.sqrt(_checks.positive("sigma_w2", sigma_w2) / fan_in), size=shape)


def mean_field_bias(rng: np.random.Generator, size: int, sigma_b2: float = 0.0) -> Array:
    """b ~ N(0, sigma_b^2) (zeros when sigma_b^2 = 0)."""
    size = _checks.positive_int("size", size)
    return rng.normal(0.0, math.sqrt(_checks.non_negative("sigma_b2", sigma_b2)), size=size)


def spectral_radius(w: Array) -> float:
    """max |eigenvalue| of a square matrix."""
    return float(np.max(np.abs(np.linalg.eigvals(w))))


def spectral_norm(w: Array) -> float:
    """Largest singular value ||W||_2."""
    return float(np.linalg.norm(w, 2))


def scale_to_spectral_radius(w: Array, radius: float) -> Array:
    """W rescaled so that its spectral radius equals `radius`."""
    return w * (_checks.positive("radius", radius) / spectral_radius(w))


def scale_to_spectral_norm(w: Array, norm: float) -> Array:
    """W rescaled so that ||W||_2 equals `norm`."""
    return w * (_checks.positive("norm", norm) / spectral_norm(w))


def lstm_forget_bias(bias: Array, value: float = 1.0) -> Array:
    """A copy of an LSTM bias (4H,) with the forget-gate block (rows H:2H, PyTorch's order) set to value."""
    if bias.ndim != 1 or bias.shape[0] % 4:
        raise ValueError(f"bias must have shape (4H,), got {tuple(bias.shape)}")
    out = bias.copy()
    h = bias.shape[0] // 4
    out[h : 2 * h] = value
    return out


WEIGHT_INITS = {
    "standard": standard,
    "xavier_uniform": xavier_uniform,
    "xavier_normal": xavier_normal,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "orthogonal": orthogonal,
    "identity": identity,
    "mean_field": mean_field,
}
NAMES = tuple(WEIGHT_INITS)


def weight(name: str, rng: np.random.Generator, shape: Shape, **options: float) -> Array:
    """The initialiser called `name` applied to shape, with only the options it takes
    (gain, slope, sigma_w2) passed on; the others are ignored."""
    fn = WEIGHT_INITS[_checks.choice("init", name, NAMES)]
    takes = fn.__code__.co_varnames[2 : fn.__code__.co_argcount]
    return fn(rng, shape, **{k: v for k, v in options.items() if k in takes and v is not None})
