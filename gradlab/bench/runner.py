"""Benchmarks of the runner (`gradlab bench --runner`): ensembles against the runner without them (the
tour's dying part; 2 shapes x 32 seeds), a small ensemble's optimizer step on one flat array, an
ensemble's memory, parallel speedup, overhead per run, the cost of consolidating a large sweep, and the
tour's figures drawn in one process against a pool of one worker per core. Times are measured in one process, one after the other; each target is printed met or
not met. "Today's" serial runner is this runner with --no-ensemble and without
the per-process task cache (every run builds its task, as before both existed). Serial rates are per
CPU second of this process (time.process_time), which other processes on a shared machine do not
inflate as they inflate wall time; the wall times are printed beside them."""

from __future__ import annotations

import os
import resource
import tempfile
import time
import tracemalloc
from contextlib import contextmanager
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from gradlab import ensemble, train
from gradlab.nn import MLP, optim
from gradlab.sweep import config, runner
from gradlab.sweep.store import Store
from gradlab.sweep.terminal import MIN_WIDTH, wrap

GRID16 = {  # 16 runs of about a second each: long enough that starting the worker processes is small beside them
    "model": {"width": 128, "depth": 8},
    "train": {"steps": 300, "batch": 64, "log_every": 50, "probe_size": 256},
    "sweep": {"activation": ["tanh", "relu", "sigmoid", "leaky_relu"], "seed": [0, 1, 2, 3]},
}


GRID_MIXED = {  # 24 runs of three sizes (an ensemble each, cut into chunks for the workers)
    "model": {"depth": 4},
    "train": {"steps": 300, "batch": 64, "log_every": 50, "probe_size": 256},
    "sweep": {"width": [32, 128, 256], "seed": list(range(8))},
}
GRID_2x32 = {  # 2 shapes x 32 seeds of small MLPs
    "model": {"width": 16, "depth": 4, "activation": "relu", "init": "he_normal"},
    "train": {"steps": 200, "log_every": 20, "optimizer": "adam", "lr": 0.01},
    "sweep": {"depth": [2, 6], "seed": list(range(32))},
}


def met(ok: bool) -> str:
    return "met" if ok else "NOT MET"


@contextmanager
def todays_tasks():
    """Within the block every run builds its task anew (the runner before the per-process task cache)."""
    cached = train._task
    train._task = cached.__wrapped__
    try:
        yield
    finally:
        train._task = cached


def timed_sweep(experiment, out: Path, **kw) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) of one sweep."""
    c0, w0 = time.process_time(), time.perf_counter()
    runner.run(experiment, out, progress=False, **kw)
    return time.process_time() - c0, time.perf_counter() - w0


def ensembles_against_today(experiment, target: float, what: str, echo: Callable[[str], None] = print) -> float:
    """Runs per CPU second of a serial sweep with ensembles over today's serial runner's."""
    runs = len(experiment.grid())
    with tempfile.TemporaryDirectory() as tmp:
        with todays_tasks():
            today = timed_sweep(experiment, Path(tmp) / "today", ensemble=False)
        alone = timed_sweep(experiment, Path(tmp) / "alone", ensemble=False)
        grouped = timed_sweep(experiment, Path(tmp) / "grouped")
    ratio = today[0] / grouped[0]
    echo(f"{what} ({runs} runs), serial: today {runs / today[0]:.1f} runs/CPU-s ({today[1]:.1f} s wall), "
         f"--no-ensemble {runs / alone[0]:.1f} ({alone[1]:.1f} s), ensembles {runs / grouped[0]:.1f} ({grouped[1]:.1f} s): "
         f"x{ratio:.1f} today's, x{alone[0] / grouped[0]:.1f} --no-ensemble's (target >= {target:g}x today's: {met(ratio >= target)})")  # fmt: skip
    return ratio


def dying_part() -> config.Experiment:
    """The tour's dying part alone."""
    experiment = config.load(Path(__file__).resolve().parents[2] / "experiments" / "tour.toml")
    experiment.parts = [p for p in experiment.parts if p.name == "dying"]
    return experiment


def flat_step(depth: int = 32, width: int = 5, members: int = 10, repeats: int = 200, echo: Callable[[str], None] = print) -> float:
    """One Adam step of an ensemble of the dying part's deepest nets (depth x width, `members` members, a
    learning rate per member) stepped as one flat array against parameter by parameter: the speedup."""
    model = MLP([16] + [width] * (depth - 1) + [1], activation="relu", init="he_normal", ensemble=members, rng=[np.random.default_rng(s) for s in range(members)])  # fmt: skip
    grads = {name: np.random.default_rng(0).normal(size=p.shape) for name, p in model.params.items()}
    seconds, stepped = [], []
    for flat_max in (optim.FLAT_MAX, 0):
        saved, optim.FLAT_MAX = optim.FLAT_MAX, flat_max
        try:
            opt = optim.get("adam", {k: p.copy() for k, p in model.params.items()}, lr=np.full(members, 0.01))
        finally:
            optim.FLAT_MAX = saved
        seconds.append(min(_timed(lambda: opt.step(grads), repeats) for _ in range(5)))  # the same steps for both
        stepped.append(opt.params)
    same = all(np.array_equal(stepped[0][k], stepped[1][k]) for k in model.params)
    entries = sum(p.size for p in model.params.values())
    echo(f"an Adam step of {members} members of depth {depth}, width {width} ({len(model.params)} arrays, {entries} entries): "
         f"one flat array {1e6 * seconds[0]:.0f} us, array by array {1e6 * seconds[1]:.0f} us: x{seconds[1] / seconds[0]:.1f}; "
         f"after {5 * repeats} steps the weights are {'equal bit for bit' if same else 'NOT EQUAL'}")  # fmt: skip
    return seconds[1] / seconds[0]


def _timed(fn: Callable[[], None], repeats: int) -> float:
    """Seconds per call of fn, over `repeats` calls."""
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def memory(members: int = 16, echo: Callable[[str], None] = print) -> float:
    """Peak traced memory of an ensemble of `members` against `members` x one member's alone (target <= 1.2)."""
    data = {"model": {"width": 256, "depth": 4}, "train": {"steps": 20, "log_every": 10, "probe_size": 256},
            "sweep": {"seed": list(range(members))}}  # fmt: skip
    grid = config.from_dict(data, "memory").grid()
    ids = [config.run_id(c) for c in grid]
    train.build_task(grid[0])  # built (and cached) before either is measured

    def peak(fn) -> int:
        tracemalloc.start()
        fn()
        size = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return size

    one = peak(lambda: train.run(grid[0], ids[0]))
    many = peak(lambda: ensemble.run_ensemble(grid, ids))
    ratio = many / (members * one)
    echo(f"ensemble memory: {members} members peak {many / 2**20:.1f} MiB, one alone {one / 2**20:.2f} MiB: "
         f"{ratio:.2f} x R x one member's (target <= 1.2: {met(ratio <= 1.2)})")  # fmt: skip
    return ratio


def speedup(workers: int = 2, echo: Callable[[str], None] = print, data: dict = GRID_MIXED) -> float:
    """Wall time of a grid of mixed sizes, serial against a process pool of `workers`."""
    experiment = config.from_dict(data, "mixed")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        runner.run(experiment, Path(tmp) / "serial", progress=False)
        serial = time.perf_counter() - t0
        t0 = time.perf_counter()
        runner.run(experiment, Path(tmp) / "pool", executor="process", workers=workers, progress=False)
        pooled = time.perf_counter() - t0
    runs, load = len(experiment.grid()), os.getloadavg()[0]
    echo(f"{runs}-run grid of mixed sizes: serial {serial:.2f} s, {workers} workers {pooled:.2f} s: speedup x{serial / pooled:.2f} "
         f"(target >= 1.8: {met(serial / pooled >= 1.8)}; load average {load:.1f} on {os.cpu_count()} cores)")  # fmt: skip
    return serial / pooled


TOUR = Path(__file__).resolve().parents[2] / "results" / "tour"  # the committed tour, in a source checkout


def figures(results: Path = TOUR, workers: int | None = None, echo: Callable[[str], None] = print) -> float | None:
    """Wall time of drawing a results folder's figures (PNG and PDF) in this process against a pool of
    `workers` (None: one per core): the speedup, or None when the folder holds no results."""
    from gradlab.plots import draw
    from gradlab.sweep import load_results

    if not (results / "runs.parquet").is_file():
        echo(f"figures: skipped, no results in {results}/ (a source checkout has results/tour)")
        return None
    tables = load_results(results)
    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, n in (("one", 1), ("pool", workers)):
            t0 = time.perf_counter()
            drawing = draw.draw_all(tables, Path(tmp) / label, workers=n)
            seconds.append(time.perf_counter() - t0)
    files, size = sum(map(len, drawing.written.values())), draw.pool_size(workers, len(draw.NAMES))
    echo(f"figures of {results.name} ({len(drawing.written)} figures, {files} files): in this process "
         f"{seconds[0]:.1f} s, {size} workers {seconds[1]:.1f} s: speedup x{seconds[0] / seconds[1]:.2f} "
         f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")  # fmt: skip
    return seconds[0] / seconds[1]


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
        runner.run(experiment, Path(tmp) / "o", progress=False, ensemble=False)  # the same runs, alone
        swept = time.perf_counter() - t0
    per_run = (swept - direct) / len(grid)
    echo(f"runner overhead: {1000 * per_run:.1f} ms per run beyond training ({len(grid)} runs; target < 50 ms)")
    return per_run


def consolidation(runs: int = 1000, steps: int = 100, layers: int = 20, echo: Callable[[str], None] = print) -> tuple[float, float]:
    """Consolidate `runs` run folders of `steps` logged steps x `layers` layers, read back from the folders (as
    a resumed sweep does; the store that wrote them consolidates from the tables it kept, timed beside):
    (seconds, peak RSS MiB)."""
    rng = np.random.default_rng(0)
    cols = ["weight_grad_norm", "bias_grad_norm", "delta_norm", "act_mean", "act_std", "dead_frac", "saturated_frac", "update_ratio"]
    with tempfile.TemporaryDirectory() as tmp:
        with Store(tmp).open() as store:
            for r in range(runs):
                rid = f"{r:012x}"
                frame = pd.DataFrame({"run_id": rid, "step": np.repeat(np.arange(steps), layers), "layer": np.tile(np.arange(layers), steps),
                                      **{c: rng.random(steps * layers) for c in cols}})  # fmt: skip
                st = pd.DataFrame({"run_id": rid, "step": np.arange(steps), "loss": rng.random(steps)})
                store.write_run(rid, {"run_id": rid, "status": "ok"}, {"steps": st, "layers": frame})
            t0 = time.perf_counter()
            store.consolidate()
            kept = time.perf_counter() - t0
        with Store(tmp).open() as store:
            t0 = time.perf_counter()
            store.consolidate()
            seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    echo(f"consolidating {runs} runs x {steps} steps x {layers} layers ({runs * steps * layers:,} layer rows) from their folders: "
         f"{seconds:.1f} s (target < 10 s), peak RSS {peak:.0f} MiB (target < 1024); by the store that wrote them, "
         f"from the tables it kept: {kept:.1f} s")  # fmt: skip
    return seconds, peak


def run(echo: Callable[[str], None] = print, width: int = MIN_WIDTH) -> None:
    """Every runner measurement, each printed as one paragraph wrapped at `width` columns."""
    echo = _wrapped(echo, width)
    consolidation(echo=echo)  # first, so that the process's peak memory is the consolidation's
    overhead_per_run(echo=echo)
    ensembles_against_today(dying_part(), 5, "the tour's dying part", echo=echo)
    ensembles_against_today(config.from_dict(GRID_2x32, "grid2x32"), 10, "2 shapes x 32 seeds of small MLPs", echo=echo)
    flat_step(echo=echo)
    memory(echo=echo)
    speedup(echo=echo)
    figures(echo=echo)


def _wrapped(echo: Callable[[str], None], width: int) -> Callable[[str], None]:
    """echo, each line wrapped at `width` columns, continuation lines indented."""
    return lambda line: echo(wrap(line, width, "  "))
