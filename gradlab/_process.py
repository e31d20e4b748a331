"""Process-wide settings: BLAS threads and the allocator, behind one context manager, `settings`.

BLAS threads. Results first: OpenBLAS's products are not bit-identical across thread counts (a product's
summation is split differently), and a chaotic run amplifies the last bit: the tour's unclipped RNNs diverge
at steps 164, 157, 199 with two threads on their weight-gradient products and at 191, 163, 177 on one. A
thread count that follows the machine's load would make results depend on the load, and on the executor (a
pool worker runs one thread). So by default every product runs on one BLAS thread (AUTO False): a run gives
the same numbers alone, in a pool, on Dask, quiet or loaded. GRADLAB_THREADS=auto in the environment turns
on the free-core rule below (faster on a quiet machine: a W1 step 42 -> 35 ms in float64), at the price of
results that may differ in the last bits from run to run.

With the rule on: a step of an RNN or LSTM multiplies small matrices ((N, H) by (H, GH)). OpenBLAS splits such
a product over all its threads; the synchronisation costs more than the split saves. So the per-step loops,
and any product of fewer than SMALL_PRODUCT multiply-adds, run with one BLAS thread
(`settings(blas_threads=1)`, in the calling thread only). A larger product (an MLP layer of 128 x 256 x 256,
the products over all steps at once) gains from every core, but only from a core nobody else holds: when
another process runs on one, OpenBLAS's second thread waits for it to be scheduled, and every product of
up to 2^27 multiply-adds took about one scheduler slice (30 ms) instead of 0.1-2 ms on the shared 2-core
machine of the README. So `threads_for` gives a large product as many threads as there are free cores,
`CoreRule`: a core is free when the other processes left at least FREE of it idle over the last
CHECK_EVERY seconds (/proc/stat's busy time of all CPUs less this process's own CPU time), and at a run's
start, before a first interval, when no other thread is runnable (/proc/stat's procs_running). Pool
workers, which run beside each other, are started with one BLAS thread (`settings(child_blas_threads=1)`:
the environment NumPy reads when it is imported in the child), and the rule never gives a process more
threads than its BLAS started with, so a worker stays on one. A helper thread of this process (the probes'
columns, computed beside training when a core is free) holds a core while it works (`helper_at_work`), and
the products get one thread fewer meanwhile. Where NumPy's BLAS is not an OpenBLAS whose
thread count can be set, the in-process setting does nothing; where /proc/stat cannot be read, a large
product gets every thread the BLAS started with.

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
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np  # noqa: F401  (loads NumPy's BLAS, which is looked up below)

SMALL_PRODUCT = 1 << 21  # an (m, k) x (k, n) product with m k n below this runs on one thread (128 x 128 x 128 is the smallest measured to gain)
THREADS_ENV = "GRADLAB_THREADS"  # "auto": the free-core rule for large products; unset (default): one thread
AUTO = os.environ.get(THREADS_ENV, "").strip().lower() == "auto"
CHECK_EVERY = 0.5  # seconds between two looks at how busy the other processes keep the cores
FREE = 0.8  # a core is free when the other processes leave this much of it idle
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


def current_threads() -> int | None:
    """The calling thread's BLAS thread count, or None where it cannot be set (not an OpenBLAS >= 0.3.27)."""
    if _SET_THREADS is None:
        return None
    n = _set_threads(1)
    _set_threads(n)
    return n


def pin_blas_threads(n: int) -> None:
    """From now on this thread's BLAS uses n threads (for a helper thread of its own; elsewhere use settings)."""
    if _SET_THREADS is not None:
        _set_threads(n)


def single_threaded():
    """settings(blas_threads=1): for the per-step loops and the memory-bound dot products."""
    return settings(blas_threads=1)


def threads_for(macs: int):
    """One BLAS thread (reproducible results, the default); with AUTO (GRADLAB_THREADS=auto), one for a
    product of fewer than SMALL_PRODUCT multiply-adds, else one per free core (less those this process's
    helper threads hold, see helper_at_work)."""
    if not AUTO or macs < SMALL_PRODUCT:
        return settings(blas_threads=1)
    return settings(blas_threads=max(1, RULE.threads() - _HELPERS[0]))


_HELPERS = [0]  # helper threads of this process at work now (the probes' columns): each holds a core
_HELPERS_LOCK = threading.Lock()


@contextmanager
def helper_at_work() -> Iterator[None]:
    """Within the block, this helper thread holds a core: threads_for gives the products one thread fewer."""
    with _HELPERS_LOCK:
        _HELPERS[0] += 1
    try:
        yield
    finally:
        with _HELPERS_LOCK:
            _HELPERS[0] -= 1


def _cpu_ticks() -> tuple[int, int, int] | None:
    """(busy ticks of all CPUs, all ticks of all CPUs, runnable threads now) from /proc/stat, or None."""
    try:
        with open("/proc/stat", "rb") as f:
            text = f.read().split(b"\n")
    except OSError:
        return None
    fields = [int(v) for v in text[0].split()[1:8]]  # user nice system idle iowait irq softirq
    running = next((int(line.split()[1]) for line in text if line.startswith(b"procs_running")), 1)
    return sum(fields) - fields[3] - fields[4], sum(fields), running


class CpuSample(NamedTuple):
    """A look at the machine: this process's CPU seconds, all CPUs' busy and total ticks, runnable threads."""

    own: float
    busy: int
    total: int
    running: int


def others_cores(a: CpuSample, b: CpuSample, cpus: int, hz: int) -> float:
    """Cores the other processes kept busy on average between two looks: (busy time of all CPUs - this
    process's CPU time) / wall time, the wall time from the ticks of all CPUs / cpus."""
    wall = (b.total - a.total) / hz / cpus
    return max(0.0, ((b.busy - a.busy) / hz - (b.own - a.own)) / wall) if wall > 0 else math.nan


class CoreRule:
    """How many BLAS threads a large product gets: the free cores, at least 1 and at most `most`.

    Over an interval of CHECK_EVERY seconds the others' use of the cores is others_cores; n CPUs minus
    that, plus 1 - FREE, rounded down, is the free cores. Before a first interval, the free cores are n CPUs
    minus the other runnable threads. `read` returns (busy ticks, all ticks, runnable threads) like
    _cpu_ticks (None: unknown, every thread); `own` this process's CPU seconds; `clock` seconds."""

    def __init__(self, most: int, cpus: int, read: Callable[[], tuple[int, int, int] | None] = _cpu_ticks,
                 own: Callable[[], float] = time.process_time, clock: Callable[[], float] = time.monotonic,
                 hz: int = 100) -> None:  # fmt: skip
        self.most, self.cpus, self.read, self.own, self.clock, self.hz = max(1, most), max(1, cpus), read, own, clock, hz
        self.last: CpuSample | None = None
        self.when = -math.inf  # clock at the last look
        self.n = self.most

    def sample(self) -> CpuSample | None:
        """A look at the machine now, or None where /proc/stat cannot be read."""
        ticks = self.read()
        return None if ticks is None else CpuSample(self.own(), *ticks)

    def threads(self) -> int:
        if self.most == 1:
            return 1
        now = self.clock()
        if now - self.when >= CHECK_EVERY:
            self._look(now)
        return self.n

    def _look(self, now: float) -> None:
        sample = self.sample()
        self.when = now
        if sample is None:
            self.n = self.most
            return
        if self.last is None or sample.total <= self.last.total:
            others = float(max(0, sample.running - 1))  # the threads runnable besides this one
        else:
            others = others_cores(self.last, sample, self.cpus, self.hz)
        self.n = max(1, min(self.most, math.floor(self.cpus - others + 1 - FREE)))
        self.last = sample

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


def _started_threads() -> int:
    """The threads NumPy's BLAS started with: OPENBLAS_NUM_THREADS / OMP_NUM_THREADS, else the usable cores."""
    for var in BLAS_ENV[:2]:
        if os.environ.get(var, "").strip().isdigit():
            return max(1, int(os.environ[var]))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


_SET_THREADS = _openblas_setter()
RULE = CoreRule(_started_threads(), os.cpu_count() or 1, hz=os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)


def _set_threads(n: int) -> int:
    return _SET_THREADS(n)  # type: ignore[misc]
