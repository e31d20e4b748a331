"""The result store of one experiment (results/<name>/), built so that nothing finished is lost.

    config.toml, manifest.json      the resolved config as run; provenance and counts
    runs/<run_id>/run.json          one folder per finished run: its runs-table row ...
    runs/<run_id>/<table>.parquet   ... and its steps / layers / timesteps rows
    <table>.parquet                 the consolidated tables (runs, steps, layers, timesteps)

A run is written into runs/.tmp-<run_id>-<pid>/ and renamed to runs/<run_id>/ only when complete;
rename is atomic, so a run folder exists whole or not at all, whatever kills the process. Leftover
.tmp-* folders are never read and are removed when the store is opened. Consolidated files are also
written to a temporary name and renamed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd

TABLES = ("runs", "steps", "layers", "timesteps")
RUN_TABLES = TABLES[1:]


class Store:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.runs_dir = self.root / "runs"

    def open(self, fresh: bool = False) -> "Store":
        """Create the folders (emptying them first when fresh) and sweep away unfinished writes."""
        if fresh and self.root.exists():
            shutil.rmtree(self.root)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        for tmp in self.runs_dir.glob(".tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)
        return self

    def finished(self) -> dict[str, str]:
        """run_id -> status of every complete run folder."""
        out = {}
        for folder in self.runs_dir.iterdir() if self.runs_dir.exists() else ():
            if not folder.name.startswith(".") and (folder / "run.json").is_file():
                out[folder.name] = json.loads((folder / "run.json").read_text())["status"]
        return out

    def write_run(self, run_id: str, record: dict, tables: dict[str, pd.DataFrame]) -> None:
        """Write one run atomically: files into a temporary folder, then one rename."""
        tmp = self.runs_dir / f".tmp-{run_id}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        for name in RUN_TABLES:
            if name in tables and len(tables[name]):
                tables[name].to_parquet(tmp / f"{name}.parquet", index=False)
        _write_text(tmp / "run.json", json.dumps(record, default=_json_default, indent=1))
        _fsync_dir(tmp)
        final = self.runs_dir / run_id
        if final.exists():  # a rerun (e.g. of a failed run) replaces the old folder
            old = self.runs_dir / f".tmp-old-{run_id}-{os.getpid()}"
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
        _fsync_dir(self.runs_dir)

    def consolidate(self, run_ids: list[str] | None = None) -> dict[str, pd.DataFrame]:
        """Concatenate the run folders (all, or run_ids in that order) into <table>.parquet files."""
        ids = run_ids if run_ids is not None else sorted(self.finished())
        records, parts = [], {name: [] for name in RUN_TABLES}
        for run_id in ids:
            folder = self.runs_dir / run_id
            records.append(json.loads((folder / "run.json").read_text()))
            for name in RUN_TABLES:
                if (folder / f"{name}.parquet").is_file():
                    parts[name].append(pd.read_parquet(folder / f"{name}.parquet"))
        tables = {"runs": pd.DataFrame.from_records(records)}
        for name in RUN_TABLES:
            tables[name] = pd.concat(parts[name], ignore_index=True) if parts[name] else pd.DataFrame({"run_id": pd.Series(dtype=str)})
        for name, df in tables.items():
            tmp = self.root / f".{name}.parquet.tmp"
            df.to_parquet(tmp, index=False)
            tmp.replace(self.root / f"{name}.parquet")
        return tables

    def write_text(self, name: str, text: str) -> None:
        _write_text(self.root / name, text)


def load(path: str | Path) -> dict[str, pd.DataFrame]:
    """The consolidated tables of a results folder as pandas DataFrames: runs, steps, layers, timesteps."""
    root = Path(path)
    missing = [name for name in TABLES if not (root / f"{name}.parquet").is_file()]
    if missing:
        raise FileNotFoundError(f"{root}: no {missing[0]}.parquet; is this a gradlab results folder (gradlab run writes one)?")
    return {name: pd.read_parquet(root / f"{name}.parquet") for name in TABLES}


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {value!r}")
