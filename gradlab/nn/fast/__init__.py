"""Fast paths of the recurrent cells: the same arithmetic as gradlab.nn.cells, in preallocated arrays.
What their backwards share is here."""

from __future__ import annotations

import numpy as np

Array = np.ndarray


def claim(cache, trace: bool) -> None:
    """A fast cache serves one backward without trace (that backward writes over its arrays): refuse a second."""
    if cache.spent:
        raise ValueError("cache was already used by a backward without trace; run forward again")
    cache.spent = not trace


def initial_dh(dh_last: Array | None, shape: tuple[int, ...], dtype: np.dtype) -> Array:
    """A fresh (..., N, H) array holding dL/dh_T from outside the recurrence (zeros without dh_last), which
    the backward's loop then carries back step by step."""
    if dh_last is None:
        return np.zeros(shape, dtype)
    return np.array(np.broadcast_to(dh_last, shape), dtype)
