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
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import gradlab
from gradlab.schema import ENSEMBLE_FIELDS
from gradlab.sweep import executors, groups
from gradlab.sweep.config import Experiment, run_id, to_toml
from gradlab.sweep.progress import Phases, make as make_phases
from gradlab.sweep.store import Store, check_writable


def execute(config: dict[str, Any]) -> tuple[dict[str, Any], dict]:
    """Run one config; an exception becomes a run with status "failed" and its error, never a crash."""
    from gradlab import train
    from gradlab._process import keep_freed_memory

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


def execute_group(configs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict]]:
    """Run a work item: one run alone (execute), or several as one ensemble (gradlab.ensemble), each
    member's wall_s its share of the ensemble's time. If the ensemble raises, its members run alone,
    so that a failure stays the failing run's."""
    if len(configs) == 1:
        return [execute(configs[0])]
    from gradlab import ensemble
    from gradlab._process import keep_freed_memory

    keep_freed_memory()
    start = time.perf_counter()
    try:
        results = ensemble.run_ensemble(configs, [run_id(c) for c in configs])
    except Exception:  # noqa: BLE001 - rerun alone, where the error is the failing run's own
        return [execute(c) for c in configs]
    for record, _ in results:
        record["wall_s"] = (time.perf_counter() - start) / len(configs)
    return results


def failed_record(config: dict[str, Any], error: str) -> dict[str, Any]:
    """The runs-table row of a run that produced nothing (its worker died): status failed, the error."""
    from gradlab import train

    return train.run_record(config, run_id(config), status="failed", error=error)


@dataclass
class Summary:
    out: Path
    total: int
    skipped: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (run_id, error)
    quarantined: list[tuple[str, str]] = field(default_factory=list)  # (run_id, why): moved aside, run again
    workers: int = 1
    wall_s: float = 0.0
    ensemble: bool = True  # whether runs were grouped into ensembles (--no-ensemble: False)
    ensembles: list[list[str]] = field(default_factory=list)  # the run ids trained together, per ensemble


def run(
    experiment: Experiment,
    out: str | Path,
    executor: str = "serial",
    workers: int | None = None,
    address: str | None = None,
    fresh: bool = False,
    progress: bool | Phases = True,
    warn: Callable[[str], None] | None = None,
    ensemble: bool = True,
) -> Summary:
    """Run every run of the grid not finished yet in `out`, then consolidate. Failed runs are rerun.
    ensemble: train the runs that differ only in ENSEMBLE_FIELDS as ensembles (gradlab.sweep.groups),
    each member still its own run (its own folder, tables, status), the same tables as alone.

    Nothing is written before the folder is known to be gradlab's (StoreError otherwise) and the
    executor has started (ExecutorError: e.g. an unreachable Dask scheduler). A SIGTERM or SIGINT
    raises Interrupted / KeyboardInterrupt after the workers are stopped; finished runs are kept.
    progress: True draws the phases "runs" and "consolidating" on stderr when it is a terminal; a Phases
    (gradlab.sweep.progress) draws them into the caller's display, which goes on after them."""
    warn = warn or _stderr
    start, started_at = time.perf_counter(), _now()
    grid = experiment.grid()
    ids = [run_id(c) for c in grid]
    check_writable(out)
    workers = workers or os.cpu_count() or 1
    with (executors.stop_on_signals(), executors.make(executor, workers, address) as pool, Store(out).open(fresh) as store,
          make_phases(progress) as bar):
        store.write_text("config.toml", to_toml(experiment))
        done = store.finished()
        todo = [c for c, rid in zip(grid, ids) if done.get(rid) in (None, "failed")]
        summary = Summary(Path(out), len(grid), skipped=len(grid) - len(todo))
        summary.workers = 1 if executor == "serial" else max(1, min(workers, len(todo)))
        summary.ensemble = ensemble
        items = groups.plan(todo, ensemble, summary.workers)
        summary.ensembles = [[run_id(c) for c in item] for item in items if len(item) > 1]
        bar.phase("runs", total=len(todo))
        lost = _write_outcomes(pool.map(execute_group, items), store, summary, bar)
        if lost:  # an ensemble whose worker died (e.g. out of memory): its members once more, alone
            _write_outcomes(pool.map(execute_group, [[c] for item in lost for c in item]), store, summary, bar)
        bar.phase("consolidating")
        tables = store.consolidate([rid for rid in dict.fromkeys(ids) if (store.runs_dir / rid).is_dir()])
        summary.quarantined = store.quarantined
        if store.quarantined:
            warn(quarantine_warning(Path(out), store.quarantined))
        summary.by_status = tables["runs"]["status"].value_counts().to_dict() if len(tables["runs"]) else {}
        summary.wall_s = time.perf_counter() - start
        store.write_text("manifest.json", json.dumps(manifest(experiment, summary, started_at, executor), indent=1))
    return summary


def _write_outcomes(stream, store: Store, summary: Summary, bar: Phases) -> list[list[dict[str, Any]]]:
    """Write each finished run of the executor's stream; a run alone whose worker died is written failed.
    Returns the ensembles whose worker died, to be run again member by member."""
    lost = []
    with closing(stream):
        for item, outcome in stream:
            if isinstance(outcome, executors.Lost) and len(item) > 1:
                lost.append(item)
                continue
            results = [(failed_record(item[0], outcome.reason), {})] if isinstance(outcome, executors.Lost) else outcome
            for record, tables in results:
                store.write_run(record["run_id"], record, tables)
                if record["status"] == "failed":
                    summary.failed.append((record["run_id"], record["error"]))
                bar.advance(failed=len(summary.failed))
    return lost


def quarantine_warning(out: Path, moved: list[tuple[str, str]], show: int = 3) -> str:
    """One line naming the run folders moved aside and why."""
    named = "; ".join(f"{rid}: {why}" for rid, why in moved[:show]) + (f"; and {len(moved) - show} more" if len(moved) > show else "")
    return (f"warning: {len(moved)} run folder{'s' if len(moved) > 1 else ''} in {out}/ failed the check and "
            f"{'were' if len(moved) > 1 else 'was'} moved to {out / 'quarantine'}/ and run again ({named})")  # fmt: skip


def _stderr(text: str) -> None:
    print(text, file=sys.stderr)


def manifest(experiment: Experiment, summary: Summary, started_at: str, executor: str) -> dict[str, Any]:
    """Provenance (gradlab version and git commit, package versions, platform), times and counts."""
    return {
        "experiment": experiment.name,
        **provenance(),
        "executor": executor,
        "workers": summary.workers,
        "started": started_at,
        "finished": _now(),
        "wall_s": round(summary.wall_s, 3),
        "runs": run_counts(summary),
        "grouping": {
            "enabled": summary.ensemble,
            "ensembles": summary.ensembles,
            "runs_in_ensembles": sum(len(e) for e in summary.ensembles),
            "fields_that_may_differ": list(ENSEMBLE_FIELDS),
            "activations_counted_as_one": dict(groups.ONE_ACTIVATION),  # a ReLU member is a leaky ReLU of slope 0
        },
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
    counts = {"total": summary.total, "skipped_as_finished": summary.skipped, **summary.by_status}
    return counts | ({"quarantined": len(summary.quarantined)} if summary.quarantined else {})


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
