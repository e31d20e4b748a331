"""Process-wide settings: BLAS threads and the allocator, behind one context manager, `settings`.

BLAS threads. A step of an RNN or LSTM multiplies small matrices ((N, H) by (H, GH)). OpenBLAS splits such
a product over all its threads; the synchronisation costs more than the split saves, and far more when
another process holds a core (the product then waits for a descheduled thread: 10x to 100x slower steps
were measured on a shared 2-core machine). So the per-step loops, and any product of fewer than
SMALL_PRODUCT multiply-adds, run with one BLAS thread (`settings(blas_threads=1)`, in the calling thread
only), while the products over all steps at once keep every thread. Pool workers, which run beside each
other, are started with one BLAS thread (`settings(child_blas_threads=1)`: the environment NumPy reads
when it is imported in the child). Where NumPy's BLAS is not an OpenBLAS whose thread count can be set,
the in-process setting does nothing.

The allocator. A training step allocates and frees the same large arrays every time. By default glibc
gives each block above 128 KiB its own pages (mmap) and unmaps them on free, and trims the heap's top once
128 KiB are free there, so every step faults its memory back in and the kernel zeroes each page again.
Measured on the 2-core machine of the README: the schoenholz2017 quick reproduction took 1.15 million
minor page faults and 2.9 s of system time in 10.2 s, and 97 thousand and 0.4 s in 7.5 s with the memory
kept; one W4 step (MLP 2048 x 8, batch 512) went from 1.25-1.37 s to 1.10-1.12 s. `keep_freed_memory()`
sets glibc's mallopt (no mmap for large blocks, M_MMAP_MAX = 0; no trimming below 2 GiB free,
M_TRIM_THRESHOLD), so the process keeps its peak heap until it exits: it is done once per process and
cannot be undone. The `gradlab` command and every process that runs sweep runs call it; library users may.
Elsewhere (macOS, Windows, musl) it does nothing and returns False.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np  # noqa: F401  (loads NumPy's BLAS, which is looked up below)

SMALL_PRODUCT = 1 << 24  # an (m, k) x (k, n) product with m k n below this is "small" (an MLP layer of 128 x 256 x 256 is)
BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")  # what a child's BLAS reads at start
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's <malloc.h>
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: trim only when 2 GiB are free at the heap's top


@contextmanager
def settings(*, blas_threads: int | None = None, child_blas_threads: int | None = None) -> Iterator[None]:
    """Within the block: this thread's BLAS uses `blas_threads` threads, and processes started in it see
    `child_blas_threads` in their environment; both are restored after. None leaves a setting alone."""
    previous = _set_threads(blas_threads) if blas_threads is not None and _SET_THREADS is not None else None
    saved = {k: os.environ.get(k) for k in BLAS_ENV} if child_blas_threads is not None else {}
    if child_blas_threads is not None:
        os.environ.update({k: str(child_blas_threads) for k in BLAS_ENV})
    try:
        yield
    finally:
        if previous is not None:
            _set_threads(previous)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def single_threaded():
    """settings(blas_threads=1): for the per-step loops and the memory-bound dot products."""
    return settings(blas_threads=1)


def threads_for(macs: int):
    """One BLAS thread for a product of fewer than SMALL_PRODUCT multiply-adds, else BLAS's own choice."""
    return settings(blas_threads=1 if macs < SMALL_PRODUCT else None)


@functools.cache
def keep_freed_memory() -> bool:
    """Tell glibc to keep freed memory for reuse (once per process); True if it took effect."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # no C library symbols, or no mallopt (not glibc)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1


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


def _set_threads(n: int) -> int:
    return _SET_THREADS(n)  # type: ignore[misc]
