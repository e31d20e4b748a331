"""The measurement behind gradlab._process's thread rule: one product a @ W^T on two BLAS threads against
one, paired within each repeat, over product sizes, with the cores other processes kept busy meanwhile.

    python -m gradlab.bench.threads [--quick]

Two threads gain on a quiet machine and stall (about one scheduler slice per product) when another process
holds a core; the rule gives a product two threads only when the cores are free. This prints the ratio, so
that it can be read beside the `others` figure it was measured with."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

from gradlab import _process

SHAPES = [(128, 128, 128), (128, 256, 128), (128, 256, 256), (256, 256, 256), (128, 512, 512), (512, 512, 512), (512, 2048, 2048)]


def paired(m: int, k: int, n: int, dtype: str, repeats: int) -> tuple[float, float, list[float]]:
    """(median seconds on 1 thread, on 2 threads, the per-repeat ratios 2 / 1) of an (m, k) x (k, n) product."""
    rng = np.random.default_rng(0)
    a, w = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((n, k)).astype(dtype)
    out = np.empty((m, n), dtype)
    times: dict[int, list[float]] = {1: [], 2: []}
    for r in range(repeats):
        for threads in (1, 2) if r % 2 else (2, 1):
            with _process.settings(blas_threads=threads):
                t0 = time.perf_counter()
                np.matmul(a, w.T, out=out)
                times[threads].append(time.perf_counter() - t0)
    ratios = [b / a for a, b in zip(times[1], times[2])]
    return statistics.median(times[1]), statistics.median(times[2]), ratios


def run(quick: bool = False, echo: Callable[[str], None] = print) -> list[tuple]:
    """Print the table (product, multiply-adds, 1 thread, 2 threads, median and IQR of 2 / 1); return its rows."""
    before = _process.RULE.sample()
    rows = []
    echo(f"{'dtype':<8}{'m x k x n':>18}{'macs':>7}{'1 thread':>11}{'2 threads':>11}{'2 / 1':>9}{'IQR':>15}")
    for dtype in ("float32", "float64"):
        for m, k, n in SHAPES:
            big = m * k * n > 1 << 28
            t1, t2, ratios = paired(m, k, n, dtype, (2 if quick else 5) if big else (10 if quick else 60))
            q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
            rows.append((dtype, (m, k, n), t1, t2, statistics.median(ratios), q[0], q[2]))
            echo(f"{dtype:<8}{f'{m} x {k} x {n}':>18}{f'2^{int(np.log2(m * k * n))}':>7}{1e3 * t1:>9.2f}ms{1e3 * t2:>9.2f}ms"
                 f"{statistics.median(ratios):>8.2f}x{f'{q[0]:.2f}-{q[2]:.2f}':>15}")  # fmt: skip
    after = _process.RULE.sample()
    if before is not None and after is not None:
        others = _process.others_cores(before, after, _process.RULE.cpus, _process.RULE.hz)
        echo(f"other processes kept {others:.2f} of {_process.RULE.cpus} cores busy meanwhile; the rule gives a large "
             f"product {_process.RULE.threads()} thread(s) now")  # fmt: skip
    return rows


if __name__ == "__main__":
    run(quick="--quick" in sys.argv[1:])
