"""Export a results folder's tables for spreadsheets and other tools: one tidy file per table, each row
carrying its run's config fields (the store keeps them only in the runs table; the others have run_id).

    results/<experiment>/export/        the default folder (any other with out=)
      .gradlab-files                    the files gradlab wrote there: the only ones it replaces
      runs.csv, steps.csv, ...          one file per table (or .parquet)

The runs table is written as it is (it holds every config field). Another table's own columns come
first, in the store's order, then the runs' config columns (gradlab.schema's order); a config column
whose name the table already uses (steps' lr, the learning rate of that step) is merged as
config_<name> (config_lr). An export replaces the files it wrote before and leaves every other file
alone; it refuses, before writing anything, to replace a file it did not write.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from gradlab.schema import FIELDS, column
from gradlab.sweep.store import EXPORT_DIR, FILES_LEDGER, MARKER, OWN_DIRS, TABLES, load, locked, owned_files, record_files

FORMATS = ("csv", "parquet")
DEFAULT_DIR = EXPORT_DIR  # inside the results folder
CONFIG_PREFIX = "config_"  # a config column the table already has (steps' lr) is merged under this prefix


class ExportError(ValueError):
    """An export gradlab must not or cannot write, in one line naming the problem and what is allowed."""


class Exported(NamedTuple):
    """One file an export wrote."""

    table: str
    path: Path
    rows: int
    columns: int


def config_columns(runs: pd.DataFrame) -> list[str]:
    """The runs table's config columns (gradlab.schema.FIELDS, by column name), in the schema's order."""
    return [c for c in (column(key) for key in FIELDS) if c in runs.columns]


def with_config(table: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """table (rows x C, with run_id) with its run's config columns appended (rows x (C + K)), row for row in
    table's order; a config column named like one of table's is appended as config_<name>."""
    config = [c for c in config_columns(runs) if c != "run_id"]
    right = runs[["run_id", *config]].rename(columns={c: CONFIG_PREFIX + c for c in config if c in table.columns})
    return table.merge(right, on="run_id", how="left", validate="many_to_one", sort=False)


def merged(tables: dict[str, pd.DataFrame], name: str) -> pd.DataFrame:
    """The table as exported: the runs table as it is (its config columns are its own), any other with_config."""
    return tables[name] if name == "runs" else with_config(tables[name], tables["runs"])


def check_format(fmt: str) -> str:
    """The format (lower case), or an ExportError naming the allowed ones."""
    name = fmt.strip().lower().lstrip(".")
    if name not in FORMATS:
        raise ExportError(f"--format {fmt!r}: must be one of {', '.join(FORMATS)}")
    return name


def check_tables(names: Iterable[str] | None) -> list[str]:
    """The tables to export, in the store's order (all four when names is None); ExportError for an unknown one."""
    if names is None:
        return list(TABLES)
    names = [n.strip() for n in names if n.strip()]
    for name in names:
        if name not in TABLES:
            raise ExportError(f"--tables {name!r}: must be among {', '.join(TABLES)} (comma-separated, e.g. layers,steps)")
    if not names:
        raise ExportError(f"--tables: give at least one of {', '.join(TABLES)}")
    return [t for t in TABLES if t in names]


def export(results: str | Path, fmt: str = "csv", tables: Iterable[str] | None = None,
           out: str | Path | None = None) -> list[Exported]:  # fmt: skip
    """Write each table of the results folder, merged with its runs' config columns (with_config), to
    out/<table>.<fmt> (out: results/export/ by default); every input is checked before anything is written."""
    results = Path(results)
    fmt, names = check_format(fmt), check_tables(tables)
    loaded = load(results)  # FileNotFoundError or StoreError for a folder that is not a results folder
    out = Path(out) if out is not None else results / DEFAULT_DIR
    targets = {name: out / f"{name}.{fmt}" for name in names}
    check_out(out, results, targets.values())
    with ExitStack() as stack:
        if (results / MARKER).is_file() and _inside(out, results):
            stack.enter_context(locked(results))  # StoreBusy while another gradlab process writes the folder
        try:
            out.mkdir(parents=True, exist_ok=True)
            record_files(out, targets.values())  # first: a file cut short by a crash is still gradlab's to replace
            return [_write(name, merged(loaded, name), path, fmt) for name, path in targets.items()]
        except OSError as err:
            raise ExportError(f"{out}: cannot write here ({err.strerror or err})") from None


def check_out(out: Path, results: Path, targets: Iterable[Path]) -> None:
    """Raise an ExportError unless gradlab may write targets into out: not a file, not a store's own folder
    (the results folder itself, its runs/, figures/ or quarantine/), and no target a file gradlab did not write."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: is a file, not a folder; give --out a folder")
    if (out / MARKER).is_file() or out.resolve() == results.resolve() or any(_inside(out, results / d) for d in OWN_DIRS):
        raise ExportError(f"{out}: a results folder's own folder; export into a folder of its own "
                          f"(default {results / DEFAULT_DIR})")  # fmt: skip
    own = owned_files(out) if out.is_dir() else set()
    for path in targets:
        if path.exists() and path.name not in own:
            raise ExportError(f"{path}: exists and gradlab did not write it (not listed in {out / FILES_LEDGER}); "
                              "move it or choose another --out")  # fmt: skip
    parent = next(p for p in out.absolute().parents if p.exists()) if not out.exists() else out
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError(f"{out}: cannot write here ({parent} is not a writable folder)")


def _write(name: str, frame: pd.DataFrame, path: Path, fmt: str) -> Exported:
    """frame to path atomically (a temporary name in the same folder, then a rename)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if fmt == "csv":
        frame.to_csv(tmp, index=False)  # floats as repr: they read back to the same float64
    else:
        frame.to_parquet(tmp, index=False)
    tmp.replace(path)
    return Exported(name, path, len(frame), frame.shape[1])


def _inside(path: Path, folder: Path) -> bool:
    """path is folder or lies under it (both resolved, so ../ and symlinks count)."""
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents
