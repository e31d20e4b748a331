"""Keep freed memory in the process instead of handing it back to the OS after every step.

A training step allocates and frees the same large arrays every time (activations, deltas, weight
gradients). By default glibc gives each block above 128 KiB its own pages (mmap) and unmaps them on
free, and trims the heap's top once 128 KiB are free there, so every step faults its memory back in and
the kernel zeroes each page again. Measured on the 2-core machine of the README: the schoenholz2017
quick reproduction took 1.15 million minor page faults and 2.9 s of system time in 10.2 s, and 97
thousand and 0.4 s in 7.5 s with keep_freed_memory(); one W4 step (MLP 2048 x 8, batch 512) went from
1.25-1.37 s to 1.10-1.12 s (medians of 8 steps, two alternating runs each).

keep_freed_memory() sets glibc's mallopt: no mmap for large blocks (M_MMAP_MAX = 0) and no trimming
below 2 GiB free (M_TRIM_THRESHOLD), so the process keeps its peak heap until it exits. The `gradlab`
command and every process that runs sweep runs (gradlab.sweep.runner.execute) call it; library users
may. Elsewhere (macOS, Windows, musl) it does nothing and returns False.
"""

from __future__ import annotations

import ctypes
import functools

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's <malloc.h>
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: trim only when 2 GiB are free at the heap's top


@functools.cache
def keep_freed_memory() -> bool:
    """Tell glibc to keep freed memory for reuse (once per process); True if it took effect."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # no C library symbols, or no mallopt (not glibc)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
