"""Argument checks shared by the engine: each failure is one ValueError line naming the argument,
the value and what is allowed."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def positive_int(name: str, value: object) -> int:
    """Return value as int, or raise if it is not an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def non_negative(name: str, value: object) -> float:
    """Return value as float, or raise if it is not a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


def positive(name: str, value: object) -> float:
    """Return value as float, or raise if it is not a finite number > 0."""
    try:
        ok = non_negative(name, value) > 0
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


def choice(name: str, value: object, allowed: Iterable[str]) -> str:
    """Return value, or raise if it is not one of the allowed names."""
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value  # type: ignore[return-value]


def dtype(value: object) -> np.dtype:
    """Return the NumPy dtype for float32/float64, or raise."""
    try:
        dt = np.dtype(value)  # type: ignore[arg-type]
    except TypeError:
        dt = np.dtype(object)
    if value is None or dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {value!r}")
    return dt


def array_shape(name: str, array: np.ndarray, shape: tuple, what: str) -> None:
    """Raise if array's shape differs from shape (None entries match any size)."""
    ok = array.ndim == len(shape) and all(s is None or s == a for s, a in zip(shape, array.shape))
    if not ok:
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        raise ValueError(f"{name} must have shape {what} = {want}, got {tuple(array.shape)}")


def finite(name: str, value: object) -> float:
    """Return value as float, or raise if it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def boolean(name: str, value: object) -> bool:
    """Return value, or raise if it is not True or False."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)
