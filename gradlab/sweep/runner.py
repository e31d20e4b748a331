"""Run an experiment's grid into its store: skip what is finished, isolate failures, show progress,
consolidate the tables and write the manifest."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import gradlab
from gradlab.sweep import executors
from gradlab.sweep.config import Experiment, run_id, to_toml
from gradlab.sweep.store import Store


def execute(config: dict[str, Any]) -> tuple[dict[str, Any], dict]:
    """Run one config; an exception becomes a run with status "failed" and its error, never a crash."""
    from gradlab import train
    from gradlab._memory import keep_freed_memory

    keep_freed_memory()  # in whichever process runs it (a pool or Dask worker): once per process

    rid = run_id(config)
    start = time.perf_counter()
    try:
        record, tables = train.run(config, rid)
    except Exception as err:  # a failing run must not take the sweep down
        tail = traceback.format_exc(limit=-3).strip().splitlines()
        record = train.run_record(config, rid, status="failed", error=f"{type(err).__name__}: {err} | {' / '.join(tail[-3:])}")
        tables = {}
    record["wall_s"] = time.perf_counter() - start
    return record, tables


@dataclass
class Summary:
    out: Path
    total: int
    skipped: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (run_id, error)
    wall_s: float = 0.0


def run(
    experiment: Experiment,
    out: str | Path,
    executor: str = "serial",
    workers: int | None = None,
    address: str | None = None,
    fresh: bool = False,
    progress: bool = True,
) -> Summary:
    """Run every run of the grid not finished yet in `out`, then consolidate. Failed runs are rerun."""
    start, started_at = time.perf_counter(), _now()
    grid = experiment.grid()
    store = Store(out).open(fresh=fresh)
    store.write_text("config.toml", to_toml(experiment))
    done = store.finished()
    todo = [c for c in grid if done.get(run_id(c)) in (None, "failed")]
    summary = Summary(Path(out), len(grid), skipped=len(grid) - len(todo))
    bar = Progress(len(todo), enabled=progress)
    workers = workers or os.cpu_count() or 1
    if executor == "serial":
        stream = executors.serial(execute, todo)
    elif executor == "process":
        stream = executors.processes(execute, todo, workers)
    else:
        stream = executors.dask(execute, todo, address, workers)
    for config, (record, tables) in stream:
        store.write_run(record["run_id"], record, tables)
        if record["status"] == "failed":
            summary.failed.append((record["run_id"], record["error"]))
        bar.update(failed=len(summary.failed))
    bar.close()
    tables = store.consolidate([run_id(c) for c in grid if (store.runs_dir / run_id(c)).is_dir()])
    summary.by_status = tables["runs"]["status"].value_counts().to_dict() if len(tables["runs"]) else {}
    summary.wall_s = time.perf_counter() - start
    store.write_text("manifest.json", json.dumps(manifest(experiment, summary, started_at, executor), indent=1))
    return summary


def manifest(experiment: Experiment, summary: Summary, started_at: str, executor: str) -> dict[str, Any]:
    """Provenance (gradlab version and git commit, package versions, platform), times and counts."""
    return {
        "experiment": experiment.name,
        **provenance(),
        "executor": executor,
        "started": started_at,
        "finished": _now(),
        "wall_s": round(summary.wall_s, 3),
        "runs": run_counts(summary),
    }


def provenance() -> dict[str, Any]:
    """What produced a result: gradlab's version and git commit, the packages' versions, the platform."""
    packages = {}
    for name in ("numpy", "pandas", "pyarrow", "matplotlib", "typer", "dask", "distributed"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {
        "gradlab_version": gradlab.__version__,
        "git_commit": _git_commit(),
        "packages": packages,
        "platform": {"python": sys.version.split()[0], "system": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count()},
    }


def run_counts(summary: Summary) -> dict[str, int]:
    return {"total": summary.total, "skipped_as_finished": summary.skipped, **summary.by_status}


def _git_commit() -> str:
    """The commit gradlab's code is at, with "+dirty" when the package has uncommitted changes."""
    try:
        root = Path(gradlab.__file__).resolve().parents[1]
        git = ["git", "-C", str(root)]
        out = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        commit = out.stdout.strip()
        if not commit:
            return "unknown"
        dirty = subprocess.run([*git, "status", "--porcelain", "--", "gradlab"], capture_output=True, text=True, timeout=5)
        return commit + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Progress:
    """A one-line progress bar on stderr (runs done/total, failures, ETA); silent when disabled or
    when stderr is not a terminal."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total, self.done, self.start = total, 0, time.perf_counter()
        self.enabled = enabled and total > 0 and sys.stderr.isatty()

    def update(self, failed: int = 0) -> None:
        self.done += 1
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.done * (self.total - self.done)
        width = 30
        filled = int(width * self.done / self.total)
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} runs"
            f"{f', {failed} failed' if failed else ''}, ETA {_clock(eta)}  "
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"
