"""The result store of one experiment (results/<name>/), built so that nothing finished is lost and
nothing gradlab did not write is touched.

    .gradlab-store                  the marker: gradlab made this folder (it cleans no other)
    .gradlab-lock                   held (an OS file lock) by the one process writing the store
    config.toml, manifest.json      the resolved config as run; provenance and counts
    runs/<run_id>/run.json          one folder per finished run: its runs-table row,
    runs/<run_id>/<table>.parquet   its steps / layers / timesteps rows,
    runs/<run_id>/contents.json     and, written last, every file's size, row count and SHA-256
    quarantine/<run_id>/            run folders that failed their check, moved aside (never deleted)
    <table>.parquet                 the consolidated tables (runs, steps, layers, timesteps)
    figures/.gradlab-files          the figure files gradlab wrote there (the only ones it removes)
    export/.gradlab-files           the same for `gradlab export`'s files

A run is written into runs/.tmp-<run_id>-<pid>/ and renamed to runs/<run_id>/ only when complete;
rename is atomic, so a run folder exists whole or not at all, whatever kills the process. Opening a
store checks every run folder against its contents.json; one that is incomplete or corrupt is moved
to quarantine/ and its run counts as not done. The lock is released by the OS when its process dies,
so a kill -9 never leaves it stale.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

TABLES = ("runs", "steps", "layers", "timesteps")
RUN_TABLES = TABLES[1:]
MARKER, LOCK, CONTENTS, QUARANTINE = ".gradlab-store", ".gradlab-lock", "contents.json", "quarantine"
FILES_LEDGER = ".gradlab-files"  # in a folder gradlab writes figures to: the names of the files it wrote
OWN_FILES = ("config.toml", "manifest.json", "summary.csv", "report.html", "claims.csv", *(f"{t}.parquet" for t in TABLES))
OWN_DIRS = ("runs", "figures", QUARANTINE)
EXPORT_DIR = "export"  # where `gradlab export` writes by default; its ledger lists its files, as figures/ does
RUN_FILES = ("run.json", CONTENTS, *(f"{t}.parquet" for t in RUN_TABLES))
UNFINISHED = re.compile(r"\.tmp-(old-)?.+-\d+")  # write_run's folders: .tmp-<run_id>-<pid>, .tmp-old-<run_id>-<pid>
KEEP_BYTES = 1 << 28  # the tables of the runs it wrote a store keeps for consolidate(), 256 MiB at most


class StoreError(Exception):
    """A results folder gradlab must not or cannot write, or cannot read, in one line naming it."""


class StoreBusy(StoreError):
    """Another process holds the store's lock."""


class Store:
    """One experiment's results folder. open() checks and locks it; close() (or `with`) unlocks."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.runs_dir = self.root / "runs"
        self.quarantined: list[tuple[str, str]] = []  # (run_id, why) moved aside by this Store
        self._lock: _Lock | None = None
        self._kept: dict[str, tuple[dict, dict[str, pd.DataFrame], dict]] = {}  # see write_run
        self._kept_bytes = 0

    def open(self, fresh: bool = False) -> "Store":
        """Check that the folder is gradlab's (or new), lock it, mark it, empty it of gradlab's files
        when fresh, sweep unfinished writes and quarantine run folders that fail their check."""
        check_writable(self.root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._lock = _Lock.acquire(self.root)
            try:
                _write_text(self.root / MARKER, json.dumps({"gradlab_store": 1, "created": _now()}), keep=True)
                if fresh:
                    self._clean()
                for tmp in self._unfinished():  # unfinished writes (the lock says none is in flight)
                    self._remove_run_folder(tmp)
                for folder in sorted(self._run_folders()):
                    why = check_run(folder)
                    if why:
                        self._quarantine(folder, why)
            except BaseException:
                self.close()
                raise
        except OSError as err:  # e.g. a read-only file system
            raise StoreError(f"{self.root}: cannot write here ({err.strerror or err})") from None
        return self

    def close(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "Store":
        return self if self._lock is not None else self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def finished(self) -> dict[str, str]:
        """run_id -> status of every complete run folder."""
        out = {}
        for folder in self._run_folders():
            try:
                out[folder.name] = json.loads((folder / "run.json").read_text())["status"]
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not readable now: open() or consolidate() quarantines it
        return out

    def write_run(self, run_id: str, record: dict, tables: dict[str, pd.DataFrame]) -> None:
        """Write one run atomically: its files and their contents.json into a temporary folder, then
        one rename. A rerun (of a failed run) replaces the old folder. The store keeps the record (as
        run.json reads back) and the tables (up to KEEP_BYTES of them in all) for consolidate(), which
        then need not decode the files it has just written; the tables must not change after."""
        tmp = self.runs_dir / f".tmp-{run_id}-{os.getpid()}"
        if os.path.lexists(tmp):
            self._remove_run_folder(tmp)
        tmp.mkdir(parents=True)
        contents = {}
        for name in RUN_TABLES:
            if name in tables and len(tables[name]):
                buffer = io.BytesIO()
                tables[name].to_parquet(buffer, index=False)
                contents[f"{name}.parquet"] = _write_bytes(tmp / f"{name}.parquet", buffer.getvalue(), len(tables[name]))
        text = json.dumps(record, default=_json_default, indent=1)
        contents["run.json"] = _write_bytes(tmp / "run.json", text.encode(), 1)
        _write_bytes(tmp / CONTENTS, json.dumps({"run_id": run_id, "files": contents}, indent=1).encode(), 0)
        _fsync_dir(tmp)
        final = self.runs_dir / run_id
        if os.path.lexists(final) and not _real_dir(final):  # a link or a file in the way: moved aside unfollowed
            self._quarantine(final, own_run_files(final))
        if final.exists():
            old = self.runs_dir / f".tmp-old-{run_id}-{os.getpid()}"
            final.rename(old)
            tmp.rename(final)
            self._remove_run_folder(old)
        else:
            tmp.rename(final)
        _fsync_dir(self.runs_dir)
        self._keep(run_id, json.loads(text), {n: tables[n] for n in RUN_TABLES if f"{n}.parquet" in contents}, contents)

    def _keep(self, run_id: str, record: dict, frames: dict[str, pd.DataFrame], contents: dict) -> None:
        old = self._kept.pop(run_id, None)
        if old is not None:
            self._kept_bytes -= _frame_bytes(old[1])
        size = _frame_bytes(frames)
        if self._kept_bytes + size <= KEEP_BYTES:
            self._kept[run_id] = (record, frames, contents)
            self._kept_bytes += size

    def consolidate(self, run_ids: list[str] | None = None) -> dict[str, pd.DataFrame]:
        """Concatenate the run folders (all, or run_ids in that order) into <table>.parquet files. A run
        folder that cannot be read is quarantined and left out, never the cause of a failure."""
        ids = run_ids if run_ids is not None else sorted(self.finished())
        records, parts = [], {name: [] for name in RUN_TABLES}
        for run_id in ids:
            folder = self.runs_dir / run_id
            try:
                record, frames = self._kept_run(run_id) or read_run(folder)
            except Exception as err:  # noqa: BLE001 - whatever is wrong with one folder, the others go on
                self._quarantine(folder, f"unreadable: {type(err).__name__}: {err}".splitlines()[0])
                continue
            records.append(record)
            for name, frame in frames.items():
                parts[name].append(frame)
        tables = {"runs": pd.DataFrame.from_records(records)}
        for name in RUN_TABLES:
            tables[name] = pd.concat(parts[name], ignore_index=True) if parts[name] else pd.DataFrame({"run_id": pd.Series(dtype=str)})
        for name, df in tables.items():
            tmp = self.root / f".{name}.parquet.tmp-{os.getpid()}"
            df.to_parquet(tmp, index=False)
            tmp.replace(self.root / f"{name}.parquet")
        return tables

    def _kept_run(self, run_id: str) -> tuple[dict, dict[str, pd.DataFrame]] | None:
        """A run this store wrote and kept, checked against its folder as open() checks one (sizes and
        SHA-256 of its files: a folder damaged since raises, and is quarantined); None when not kept or when
        the folder holds other files than those written. Parquet gives back the frames it was given (a test
        compares both ways)."""
        kept = self._kept.pop(run_id, None)
        if kept is None:
            return None
        self._kept_bytes -= _frame_bytes(kept[1])
        record, frames, contents = kept
        folder = self.runs_dir / run_id
        why = check_run(folder)
        if why:
            raise ValueError(why)
        return (record, frames) if json.loads((folder / CONTENTS).read_text())["files"] == contents else None

    def write_text(self, name: str, text: str) -> None:
        _write_text(self.root / name, text)

    def _run_folders(self) -> Iterator[Path]:
        """The run folders: real folders under runs/ not named with a dot (a link is never one)."""
        yield from (p for p in _entries(self.runs_dir) if _real_dir(p) and not p.name.startswith("."))

    def _unfinished(self) -> Iterator[Path]:
        """The folders write_run left unfinished (named as it names them; links are not)."""
        yield from (p for p in _entries(self.runs_dir) if _real_dir(p) and UNFINISHED.fullmatch(p.name))

    def _quarantine(self, entry: Path, why: str) -> None:
        """Move a run folder that failed its check to quarantine/<run_id>[.k]/, with the reason beside it
        (QUARANTINED.txt). A link or a file in the way is moved, unfollowed, into a new folder of that name."""
        if not os.path.lexists(entry):
            return
        target_dir = self.root / QUARANTINE
        target_dir.mkdir(exist_ok=True)
        target, k = target_dir / entry.name, 1
        while os.path.lexists(target):
            target, k = target_dir / f"{entry.name}.{k}", k + 1
        if _real_dir(entry):
            entry.rename(target)
        else:
            target.mkdir()
            entry.rename(target / entry.name)
        _write_new(target, "QUARANTINED.txt", f"{_now()}: {why}\n")
        self.quarantined.append((entry.name.removeprefix(".tmp-old-").removeprefix(".tmp-"), why))

    def _remove_run_folder(self, folder: Path) -> None:
        """Remove a run folder gradlab wrote (own_run_files); anything else in its place (a link, a folder
        that fails its check or holds other files) is moved to quarantine/ whole, never deleted."""
        files = own_run_files(folder)
        if isinstance(files, str):
            self._quarantine(folder, files)
            return
        for path in files:
            path.unlink()
        try:
            folder.rmdir()
        except OSError:  # a file appeared since
            self._quarantine(folder, "it holds files gradlab did not write")

    def _clean(self) -> None:
        """--fresh: remove the files gradlab writes here (never quarantine/, never anything else). A file
        or link the user put into runs/ stays where it is; a run folder that is not wholly gradlab's goes
        to quarantine/."""
        for name in OWN_FILES:
            (self.root / name).unlink(missing_ok=True)
            for tmp in self.root.glob(f".{name}.tmp-*"):  # what an interrupted atomic write leaves
                tmp.unlink(missing_ok=True)
        for folder in [*self._run_folders(), *self._unfinished()]:
            self._remove_run_folder(folder)
        for folder in ("figures", EXPORT_DIR):
            remove_files(self.root / folder, owned_files(self.root / folder))


def own_run_files(folder: Path) -> list[Path] | str:
    """The files of a run folder when gradlab wrote all of them: those its contents.json lists (and checks),
    or, in a folder write_run left unfinished (contents.json is written last), any of RUN_FILES. Otherwise
    why not, in a few words: a link, a folder that fails its check, or one holding other files."""
    if not _real_dir(folder):
        return "a link or a file where a run folder should be (gradlab never follows or removes one)"
    if UNFINISHED.fullmatch(folder.name):
        names = set(RUN_FILES)
    elif why := check_run(folder):
        return why
    else:
        names = {CONTENTS, *json.loads((folder / CONTENTS).read_text())["files"]}
    entries = list(folder.iterdir())
    if all(p.name in names and p.is_file() and not p.is_symlink() for p in entries):
        return entries
    return "it holds files gradlab did not write"


def check_writable(root: str | Path) -> None:
    """Raise a one-line StoreError unless gradlab may write the results folder root: a folder that does
    not exist yet (under a writable parent), an empty one, or one gradlab made (marked, or an older
    gradlab's store holding only gradlab's files). Writes nothing."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise StoreError(f"{root}: is a file, not a folder; give --out a folder")
    check_not_inside_a_store(root)
    if root.is_dir():
        for name in (*OWN_DIRS, EXPORT_DIR):
            if (root / name).is_symlink() or ((root / name).exists() and not (root / name).is_dir()):
                raise StoreError(f"{root / name}: a link or a file where gradlab keeps a folder (it never writes "
                                 "or removes through one); move it, or choose another --out")  # fmt: skip
        if (root / MARKER).is_file() or _is_unmarked_store(root) or _is_empty(root):
            if not os.access(root, os.W_OK | os.X_OK):
                raise StoreError(f"{root}: cannot write here (permission denied)")
            return
        raise StoreError(
            f"{root}: not a gradlab results folder (no {MARKER} marker, and it holds other files); "
            "gradlab writes only into new, empty or its own folders: choose another --out"
        )
    parent = next(p for p in root.absolute().parents if p.exists())
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise StoreError(f"{root}: cannot create it ({parent} is not a writable folder)")


def check_not_inside_a_store(path: str | Path) -> None:
    """StoreError when path is, or lies in, a folder a results folder keeps for itself (runs/, figures/,
    quarantine/, export/ of a marked folder; links resolved), which gradlab cleans and moves by its own rules."""
    path = Path(path).resolve()
    for folder in (path, *path.parents):
        if folder.name in (*OWN_DIRS, EXPORT_DIR) and (folder.parent / MARKER).is_file():
            raise StoreError(f"{path}: inside {folder}, a folder the results folder {folder.parent} keeps for "
                             "itself; choose a folder outside it")  # fmt: skip


def check_run(folder: Path) -> str | None:
    """Why a run folder is incomplete or corrupt (its files against its contents.json), or None."""
    try:
        contents = json.loads((folder / CONTENTS).read_text())
        files = contents["files"]
    except FileNotFoundError:
        return f"incomplete: no {CONTENTS}"
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"{CONTENTS} unreadable ({type(err).__name__})"
    if not isinstance(files, dict) or not all(isinstance(m, dict) for m in files.values()):
        return f"{CONTENTS} is not gradlab's (its files are not a table of name -> size, rows, SHA-256)"
    if "run.json" not in files:
        return f"{CONTENTS} lists no run.json"
    if not set(files) <= set(RUN_FILES) - {CONTENTS}:
        return f"{CONTENTS} lists files gradlab does not write ({', '.join(sorted(set(files) - set(RUN_FILES)))})"
    for name, meta in files.items():
        path = folder / name
        if path.is_symlink() or not path.is_file():
            return f"{name} is missing" if not os.path.lexists(path) else f"{name} is a link or not a file"
        data = path.read_bytes()
        if len(data) != meta.get("bytes"):
            return f"{name} has {len(data)} bytes, {meta.get('bytes')} written"
        if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
            return f"{name} is corrupt (checksum mismatch)"
    return None


def read_run(folder: Path) -> tuple[dict, dict[str, pd.DataFrame]]:
    """A run folder's record and tables, with their row counts checked against contents.json."""
    files = json.loads((folder / CONTENTS).read_text())["files"]
    record = json.loads((folder / "run.json").read_text())
    frames = {}
    for name in RUN_TABLES:
        meta = files.get(f"{name}.parquet")
        if meta is not None:
            frames[name] = pd.read_parquet(folder / f"{name}.parquet")
            if len(frames[name]) != meta["rows"]:
                raise ValueError(f"{name}.parquet has {len(frames[name])} rows, {meta['rows']} written")
    return record, frames


def load(path: str | Path) -> dict[str, pd.DataFrame]:
    """The consolidated tables of a results folder as pandas DataFrames: runs, steps, layers, timesteps."""
    root = Path(path)
    missing = [name for name in TABLES if not (root / f"{name}.parquet").is_file()]
    if missing:
        raise FileNotFoundError(f"{root}: no {missing[0]}.parquet; is this a gradlab results folder (gradlab run writes one)?")
    tables = {}
    for name in TABLES:
        try:
            tables[name] = upgrade(name, pd.read_parquet(root / f"{name}.parquet"))
        except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a damaged file
            repair = f"gradlab run {root / 'config.toml'} --out {root}" if (root / "config.toml").is_file() else "gradlab run CONFIG --out DIR"
            raise StoreError(f"{root / (name + '.parquet')}: unreadable ({type(err).__name__}); `{repair}` rebuilds it from the run folders") from None
    return tables


ADDED = {"timesteps": {"layer": 0, "dh_last_norm": np.nan}, "layers": {"da_norm": np.nan}}  # columns added since 0.1


def upgrade(name: str, table: pd.DataFrame) -> pd.DataFrame:
    """A table written by an earlier gradlab, with the columns added since at what they mean there: a config
    field at its default (every older run had it), `layer` 0 (one cell layer), a measurement NaN (not taken).
    A table that has them all comes back as it is."""
    from gradlab.schema import FIELDS, column

    if name == "runs":
        missing = {column(k): f.default for k, f in FIELDS.items() if f.since > 1 and column(k) not in table and len(table)}
    else:
        missing = {c: v for c, v in ADDED.get(name, {}).items() if c not in table}
    return table.assign(**missing) if missing else table


def load_folders(paths: Iterable[str | Path]) -> dict[str, pd.DataFrame]:
    """The tables of several results folders as one set: each table gains a `folder` column (the folder's
    name, or its path where two names are equal) and run ids become "folder:run_id", so that the same run in
    two folders stays two runs. One folder's tables come back as load() gives them."""
    paths = [Path(p) for p in paths]
    if len(paths) == 1:
        return load(paths[0])
    names = [p.name for p in paths]
    names = [n if names.count(n) == 1 else str(p) for n, p in zip(names, paths)]
    loaded = [load(p) for p in paths]
    tables = {}
    for table in TABLES:
        frames = []
        for name, got in zip(names, loaded):
            frame = got[table].copy()
            frame["run_id"] = name + ":" + frame["run_id"].astype(str)
            frames.append(frame.assign(folder=name))
        tables[table] = pd.concat(frames, ignore_index=True)
    return tables


# ---- figures and other files written into folders gradlab does not wholly own ------------------


def owned_files(folder: Path) -> set[str]:
    """The names of the files gradlab wrote into folder (its ledger), that still exist."""
    try:
        names = json.loads((folder / FILES_LEDGER).read_text())
    except (OSError, ValueError):
        return set()
    return {n for n in names if isinstance(n, str) and (folder / n).is_file()}


def check_own_files(root: Path, names: Iterable[str]) -> None:
    """StoreError unless gradlab may write each of names into the results folder root: in a marked store, its
    own; in a folder without the marker (tables copied by hand), a file that does not exist yet or that root's
    ledger says gradlab wrote. Writes nothing."""
    if (root / MARKER).is_file():
        return
    own = owned_files(root)
    for name in names:
        if os.path.lexists(root / name) and name not in own:
            raise StoreError(f"{root / name}: exists and gradlab did not write it ({root} has no {MARKER} marker and "
                             f"{FILES_LEDGER} there does not list it); move it, or give --out a folder of its own")  # fmt: skip


def record_files(folder: Path, paths: Iterable[Path]) -> None:
    """Add files gradlab just wrote into folder to its ledger, so that they (and only they) may be removed."""
    names = owned_files(folder) | {Path(p).name for p in paths}
    _write_text(folder / FILES_LEDGER, json.dumps(sorted(names)))


def remove_files(folder: Path, names: Iterable[str]) -> None:
    """Remove those of names that the ledger says gradlab wrote; leave any other file alone."""
    own = owned_files(folder)
    gone = {n for n in names if n in own}
    for name in gone:
        (folder / name).unlink(missing_ok=True)
    if gone:
        _write_text(folder / FILES_LEDGER, json.dumps(sorted(own - gone)))


# ---- the lock ---------------------------------------------------------------------------------


class _Lock:
    """An exclusive OS lock on root/.gradlab-lock, re-entrant within a process (the reproduction
    driver holds it around the runner, which takes it again)."""

    _held: dict[Path, tuple["_Lock", int]] = {}

    def __init__(self, key: Path, fd: int) -> None:
        self.key, self.fd = key, fd

    @classmethod
    def acquire(cls, root: Path) -> "_Lock":
        key = root.resolve()
        if key in cls._held:
            lock, depth = cls._held[key]
            cls._held[key] = (lock, depth + 1)
            return lock
        fd = os.open(key / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StoreBusy(f"{root}: another gradlab process (pid {holder}) is writing this folder; wait for it to finish or choose another --out")
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        lock = cls(key, fd)
        cls._held[key] = (lock, 1)
        return lock

    def release(self) -> None:
        lock, depth = self._held.get(self.key, (None, 0))
        if lock is not self:
            return
        if depth > 1:
            self._held[self.key] = (lock, depth - 1)
            return
        del self._held[self.key]
        os.close(self.fd)  # closing the descriptor releases the lock


@contextmanager
def locked(root: str | Path) -> Iterator[None]:
    """Hold root's lock for the block (root must exist); StoreBusy if another process holds it."""
    lock = _Lock.acquire(Path(root))
    try:
        yield
    finally:
        lock.release()


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


# ---- small helpers ----------------------------------------------------------------------------


def _is_unmarked_store(root: Path) -> bool:
    """A store written before the marker existed: a manifest.json that is gradlab's (an object naming the
    experiment and the gradlab version), and nothing there that gradlab does not write."""
    names = {p.name for p in root.iterdir() if not _is_leftover(p.name)}
    if "manifest.json" not in names or not names <= {*OWN_FILES, *OWN_DIRS, EXPORT_DIR}:
        return False
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and {"experiment", "gradlab_version"} <= manifest.keys()


def _is_empty(root: Path) -> bool:
    """Nothing in root but what an open() stopped before its marker leaves (a dotfile counts: .git is a user's)."""
    return all(_is_leftover(p.name) for p in root.iterdir())


def _is_leftover(name: str) -> bool:
    return name == LOCK or name.startswith(f".{MARKER}.tmp-")


def _entries(folder: Path) -> list[Path]:
    """folder's entries; none when it is not a real folder (a link to one is not followed)."""
    return list(folder.iterdir()) if _real_dir(folder) else []


def _real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _write_new(folder: Path, name: str, text: str) -> None:
    """Write text to a new file folder/name, or folder/name.k where one exists (never through a link)."""
    stem, suffix = os.path.splitext(name)
    for k in range(1000):
        path = folder / (name if k == 0 else f"{stem}.{k}{suffix}")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return


def _frame_bytes(frames: dict[str, pd.DataFrame]) -> int:
    """An estimate of the frames' memory: 8 bytes an entry (DataFrame.memory_usage took longer than a
    run's Parquet writes)."""
    return sum(8 * f.shape[0] * f.shape[1] for f in frames.values())


def _write_bytes(path: Path, data: bytes, rows: int) -> dict:
    """Write data durably; its entry in contents.json."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return {"bytes": len(data), "rows": rows, "sha256": hashlib.sha256(data).hexdigest()}


def _write_text(path: Path, text: str, keep: bool = False) -> None:
    """Write text atomically (a temporary name, then a rename); with keep, leave an existing file."""
    if keep and path.exists():
        return
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # Windows cannot open a folder
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {value!r}")
