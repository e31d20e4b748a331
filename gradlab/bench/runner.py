"""Benchmarks of the runner (`gradlab bench --runner`): parallel speedup, overhead per run, and the
cost of consolidating a large sweep. Times are measured in one process, one after the other."""

from __future__ import annotations

import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from gradlab import train
from gradlab.sweep import config, runner
from gradlab.sweep.store import Store

GRID16 = {  # 16 runs of about a second each: long enough that starting the worker processes is small beside them
    "model": {"width": 128, "depth": 8},
    "train": {"steps": 300, "batch": 64, "log_every": 50, "probe_size": 256},
    "sweep": {"activation": ["tanh", "relu", "sigmoid", "leaky_relu"], "seed": [0, 1, 2, 3]},
}


def speedup(workers: int = 2, echo: Callable[[str], None] = print) -> float:
    """Wall time of a 16-run grid, serial against a process pool of `workers`."""
    experiment = config.from_dict(GRID16, "bench16")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        runner.run(experiment, Path(tmp) / "serial", progress=False)
        serial = time.perf_counter() - t0
        t0 = time.perf_counter()
        runner.run(experiment, Path(tmp) / "pool", executor="process", workers=workers, progress=False)
        pooled = time.perf_counter() - t0
    echo(f"16-run grid: serial {serial:.2f} s, {workers} workers {pooled:.2f} s: speedup x{serial / pooled:.2f} (target >= 1.8)")
    return serial / pooled


def overhead_per_run(runs: int = 16, echo: Callable[[str], None] = print) -> float:
    """Seconds per run that a serial sweep spends beyond training: validation, grid, writing each run
    (Parquet, JSON, fsync, rename), consolidation and the manifest (figures and report not included)."""
    data = {**GRID16, "train": {**GRID16["train"], "steps": 20}}
    experiment = config.from_dict(data, "overhead")
    grid = experiment.grid()[:runs]
    train.run(grid[0], config.run_id(grid[0]))  # warm up (imports, first allocations) before timing either
    t0 = time.perf_counter()
    for c in grid:
        train.run(c, config.run_id(c))
    direct = time.perf_counter() - t0
    experiment.axes, experiment.cases = {}, grid  # the same runs, as explicit cases
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        runner.run(experiment, Path(tmp) / "o", progress=False)
        swept = time.perf_counter() - t0
    per_run = (swept - direct) / len(grid)
    echo(f"runner overhead: {1000 * per_run:.1f} ms per run beyond training ({len(grid)} runs; target < 50 ms)")
    return per_run


def consolidation(runs: int = 1000, steps: int = 100, layers: int = 20, echo: Callable[[str], None] = print) -> tuple[float, float]:
    """Consolidate `runs` run folders of `steps` logged steps x `layers` layers: (seconds, peak RSS MiB)."""
    rng = np.random.default_rng(0)
    cols = ["weight_grad_norm", "bias_grad_norm", "delta_norm", "act_mean", "act_std", "dead_frac", "saturated_frac", "update_ratio"]
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp).open()
        for r in range(runs):
            rid = f"{r:012x}"
            frame = pd.DataFrame({"run_id": rid, "step": np.repeat(np.arange(steps), layers), "layer": np.tile(np.arange(layers), steps),
                                  **{c: rng.random(steps * layers) for c in cols}})  # fmt: skip
            st = pd.DataFrame({"run_id": rid, "step": np.arange(steps), "loss": rng.random(steps)})
            store.write_run(rid, {"run_id": rid, "status": "ok"}, {"steps": st, "layers": frame})
        t0 = time.perf_counter()
        store.consolidate()
        seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    echo(f"consolidating {runs} runs x {steps} steps x {layers} layers ({runs * steps * layers:,} layer rows): "
         f"{seconds:.1f} s (target < 10 s), peak RSS {peak:.0f} MiB (target < 1024)")  # fmt: skip
    return seconds, peak


def run(echo: Callable[[str], None] = print) -> None:
    consolidation(echo=echo)  # first, so that the process's peak memory is the consolidation's
    overhead_per_run(echo=echo)
    speedup(echo=echo)
