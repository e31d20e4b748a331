"""The number of threads of NumPy's BLAS, for the recurrent loops.

A step of an RNN or LSTM multiplies small matrices ((N, H) by (H, GH)). OpenBLAS splits such a product over all
its threads; the synchronisation costs more than the split saves, and far more when another process holds a
core (the product then waits for a descheduled thread: 10x to 100x slower steps were measured on a shared
2-core machine). The per-step loops therefore run with one BLAS thread, while the products over all steps at
once keep every thread. When NumPy's BLAS is not an OpenBLAS whose thread count can be set, this does nothing.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import numpy as np  # noqa: F401  (loads NumPy's BLAS, which is looked up below)


def _openblas_setter() -> Callable[[int], int] | None:
    """A function that sets the calling thread's OpenBLAS thread count and returns the previous one."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.rsplit("/", 1)[-1].lower()}
    except OSError:
        return None
    for path in sorted(p for p in paths if os.path.exists(p)):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        local = getattr(lib, "openblas_set_num_threads_local", None)  # OpenBLAS >= 0.3.27, per calling thread
        if local is not None:
            local.argtypes, local.restype = [ctypes.c_int], ctypes.c_int
            return local
    return None


_SET_THREADS = _openblas_setter()
SMALL_PRODUCT = 1 << 24  # an (m, k) x (k, n) product with m k n below this is "small" (an MLP layer of 128 x 256 x 256 is)


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run the block with one BLAS thread (in the calling thread), then restore the previous count."""
    if _SET_THREADS is None:
        yield
        return
    previous = _SET_THREADS(1)
    try:
        yield
    finally:
        _SET_THREADS(previous)


def threads_for(macs: int):
    """single_threaded() for a product of fewer than SMALL_PRODUCT multiply-adds, else a no-op context."""
    return single_threaded() if macs < SMALL_PRODUCT else nullcontext()
