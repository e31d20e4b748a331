"""The file task: x and y read from the user's own data file.

Formats (task.path names the file):
    data.npz        arrays x and y (np.savez("data.npz", x=x, y=y)); other arrays are ignored
    data_x.npy      x; y is read from data_y.npy beside it (the same name with _y for _x)
    data.csv        vectors only: one example a row, the last column y, the others x; numbers only, comma
                    separated; a first line that is not all numbers is a header and skipped

x is (N, D) for an MLP or (N, T, D) for an RNN, LSTM or GRU (the loss on the last step). y is (N,) integer
labels 0..C-1 for cross_entropy (C = task.classes, or the largest label + 1), or (N,) or (N, O) targets
for mse and sum_squares (any finite number) and bce (in [0, 1]). Integer-valued floats count as labels.

Held-out set: train.probe_size rows, fixed for every seed: rows perm[:probe_size] of the permutation
perm = Generator([0x5EED, 0]).permutation(N). Batches are drawn uniformly with replacement from the other
rows, with the run's batch Generator: rows = train_rows[rng.integers(0, len(train_rows), n)].
The baseline is the loss of the best constant prediction on the held-out rows (the mean target; the
log class frequencies as logits).

The content hash (sha256) is the SHA-256 of the file's bytes (of the x file's hex digest and the y file's
for an .npy pair), so that a changed file is a new run and a moved one is not.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gradlab.nn import losses
from gradlab.tasks.base import EVAL_SIZE, Array, Task

FORMATS = (".npz", "_x.npy", ".csv")  # how a task.path may end
HOLDOUT_SEED = 0x5EED
CLASSIFICATION = ("cross_entropy",)  # losses whose targets are integer class labels
UNIT_TARGETS = ("bce",)  # losses whose targets lie in [0, 1]


class DataError(ValueError):
    """A problem with a data file, in one line naming the file (task.path = '...') and the problem."""


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: read() returns one object per unchanged file
class Data:
    """The arrays of a data file as read (x (N, D) or (N, T, D), y (N,) or (N, O)) and its content hash."""

    path: str
    x: Array
    y: Array
    sha256: str


def partner(path: str | Path) -> Path:
    """The y file of an x file: data_x.npy -> data_y.npy."""
    path = Path(path)
    return path.with_name(path.name[: -len("_x.npy")] + "_y.npy")


def read(path: str | Path) -> Data:
    """The data file's arrays and hash, or a one-line DataError; kept per file while it is unchanged on disk
    (its size and modification time), so that a sweep reads each file once."""
    path = Path(path)
    where = f"task.path = {str(path)!r}"
    files = [path, partner(path)] if path.name.endswith("_x.npy") else [path]
    if not path.name.endswith(FORMATS):
        raise DataError(f"{where}: unsupported format; the file must end in {', '.join(FORMATS)}")
    for f in files:
        if not f.is_file():
            problem = "no such file" if f == path else f"its y file {str(f)!r} is missing"
            raise DataError(f"{where}: {problem}")
    stats = tuple((f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    return _read(str(path), stats)


@functools.lru_cache(maxsize=4)
def _read(path: str, stats: tuple) -> Data:
    where = f"task.path = {path!r}"
    if path.endswith(".npz"):
        raw = Path(path).read_bytes()
        x, y = _npz(where, raw)
        digest = hashlib.sha256(raw).hexdigest()
    elif path.endswith("_x.npy"):
        raw_x, raw_y = Path(path).read_bytes(), partner(path).read_bytes()
        x, y = _npy(where, "x", raw_x), _npy(where, "y", raw_y)
        pair = hashlib.sha256(raw_x).hexdigest() + hashlib.sha256(raw_y).hexdigest()
        digest = hashlib.sha256(pair.encode()).hexdigest()
    else:
        raw = Path(path).read_bytes()
        x, y = _csv(where, raw)
        digest = hashlib.sha256(raw).hexdigest()
    for name, a in (("x", x), ("y", y)):
        if a.dtype.kind not in "biuf":
            raise DataError(f"{where}: {name} must hold numbers, got dtype {a.dtype}")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            bad = np.argwhere(~np.isfinite(a))[0]
            at = tuple(int(i) for i in bad)
            raise DataError(f"{where}: {name} holds NaN or inf (first at index {at}); every value must be finite")
    for a in (x, y):
        a.setflags(write=False)  # cached: shared by every task built from the file
    return Data(path, x, y, digest)


def _npz(where: str, raw: bytes) -> tuple[Array, Array]:
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
            names = archive.files
            arrays = {k: archive[k] for k in ("x", "y") if k in names}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{where}: not a readable .npz file ({type(err).__name__}: {err})") from None
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise DataError(f"{where}: has no array {' or '.join(missing)} (it has {', '.join(names) or 'none'}); "
                        "a .npz needs arrays x and y: np.savez(path, x=x, y=y)")  # fmt: skip
    return arrays["x"], arrays["y"]


def _npy(where: str, name: str, raw: bytes) -> Array:
    try:
        return np.load(io.BytesIO(raw), allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        problem = f"its {name} file is not a readable .npy array ({type(err).__name__}: {err})"
        raise DataError(f"{where}: {problem}") from None


def _csv(where: str, raw: bytes) -> tuple[Array, Array]:
    """x (N, D) and y (N,) of a CSV: the last column y; a first line that is not all numbers is a header."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{where}: byte {err.start}: not UTF-8 text: not a readable .csv file") from None
    rows = [(i + 1, row) for i, row in enumerate(csv.reader(io.StringIO(text))) if any(cell.strip() for cell in row)]
    if rows and not all(_is_number(cell) for cell in rows[0][1]):
        rows = rows[1:]  # the header
    if not rows:
        raise DataError(f"{where}: has no rows of numbers")
    width = len(rows[0][1])
    if width < 2:
        raise DataError(f"{where}: line {rows[0][0]} has {width} column; a .csv needs the x columns and y last")
    values = np.empty((len(rows), width))
    for r, (line, row) in enumerate(rows):
        if len(row) != width:
            raise DataError(f"{where}: line {line} has {len(row)} columns, the first row {width}")
        for c, cell in enumerate(row):
            if not _is_number(cell):
                raise DataError(f"{where}: line {line}, column {c + 1}: {cell.strip()!r} is not a number")
            values[r, c] = float(cell)
    return values[:, :-1], values[:, -1]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Sizes:
    """What a data file gives a run: x's kind ("vector" or "sequence"), T (sequences; else None), D, the
    model's output size (classes C for cross_entropy, else O) and the classes (cross_entropy; else None)."""

    kind: str
    T: int | None
    input_size: int
    output_size: int
    classes: int | None


def check(data: Data, loss: str, kind: str, probe_size: int, given: dict[str, int] | None = None) -> Sizes:
    """The sizes the file gives a run of `kind` ("vector": an MLP, "sequence": an RNN, LSTM or GRU) with
    `loss`, holding out probe_size rows; or a one-line DataError. `given`: task.T, task.input_size and
    task.classes as written (keys T, input_size, classes); each must agree with the file. Kept per data and
    arguments: a sweep checks every run, and the label checks pass over all of y."""
    return _check(data, loss, kind, probe_size, tuple(sorted((given or {}).items())))


@functools.lru_cache(maxsize=64)
def _check(data: Data, loss: str, kind: str, probe_size: int, given_items: tuple) -> Sizes:
    where, x, y, given = f"task.path = {data.path!r}", data.x, data.y, dict(given_items)
    losses.get(loss)
    need = 2 if kind == "vector" else 3
    if x.ndim != need or 0 in x.shape:
        model = "an mlp needs x of shape (N, D)" if kind == "vector" else "an rnn, lstm or gru needs x of shape (N, T, D)"
        raise DataError(f"{where}: x has shape {tuple(x.shape)}; {model}")
    if y.ndim == 0 or len(y) != len(x):
        rows = "none (it is one number)" if y.ndim == 0 else len(y)
        raise DataError(f"{where}: x has {len(x)} rows but y has {rows}; they must be equal")
    if probe_size >= len(x):
        raise DataError(f"{where}: train.probe_size = {probe_size} held-out rows leave none of the file's {len(x)} "
                        f"for training; set train.probe_size below {len(x)}")  # fmt: skip
    classes = _classes(where, y, loss, given.get("classes"))
    if classes is None and (y.ndim not in (1, 2) or 0 in y.shape):
        raise DataError(f"{where}: y has shape {tuple(y.shape)}; {loss} needs targets of shape (N,) or (N, O)")
    if loss in UNIT_TARGETS and (y.min() < 0 or y.max() > 1):
        raise DataError(f"{where}: y holds {y.min():g}..{y.max():g}; {loss} needs targets in [0, 1]")
    sizes = Sizes(kind, x.shape[1] if kind == "sequence" else None, x.shape[-1],
                  classes if classes is not None else (1 if y.ndim == 1 else y.shape[1]), classes)  # fmt: skip
    for name, value in given.items():
        have = getattr(sizes, name)
        if name != "classes" and have is not None and value != have:
            raise DataError(f"{where}: task.{name} = {value}, but the file's x has {have} ({_meaning(name)}); "
                            f"omit task.{name} or set it to {have}")  # fmt: skip
    return sizes


def _meaning(name: str) -> str:
    return {"T": "x.shape[1], its time steps", "input_size": "x.shape[-1], its features"}[name]


def _classes(where: str, y: Array, loss: str, given: int | None) -> int | None:
    """C for a classification loss (given, else the largest label + 1), after checking y's labels; else None."""
    if loss not in CLASSIFICATION:
        return None
    if y.ndim != 1:
        raise DataError(f"{where}: y has shape {tuple(y.shape)}; {loss} needs integer class labels of shape (N,)")
    whole = y == np.round(y) if y.dtype.kind == "f" else np.ones(len(y), bool)
    if not whole.all():
        i = int(np.argmin(whole))
        raise DataError(f"{where}: y[{i}] = {float(y[i])!r} is not an integer; {loss} needs class labels 0, 1, ...")
    low, high = int(y.min()), int(y.max())
    classes = high + 1 if given is None else given
    if low < 0 or high >= classes:
        allowed = f"with task.classes = {classes} they must be in 0..{classes - 1}"
        raise DataError(f"{where}: y holds labels {low}..{high}; {allowed}")
    if classes < 2:
        raise DataError(f"{where}: y holds only label 0; {loss} needs at least 2 classes (set task.classes)")
    return classes


class FileTask(Task):
    """Examples read from a data file (see the module docstring). kind is x's: "vector" (N, D) or "sequence"
    (N, T, D); loss any gradlab.nn loss; holdout the held-out rows (train.probe_size); classes the
    cross_entropy classes (default: the largest label + 1); sha256, if given, the hash the file must have."""

    name, kind, loss = "file", "file", "mse"  # kind: the class's is "file"; an instance's is its x's

    def __init__(self, path: str | Path, loss: str = "mse", holdout: int = EVAL_SIZE, classes: int | None = None,
                 sha256: str | None = None) -> None:  # fmt: skip
        data = read(path)
        if sha256 and data.sha256 != sha256:
            raise DataError(f"task.path = {data.path!r}: the file changed after the config was checked "
                            f"(SHA-256 {data.sha256[:12]}..., not {sha256[:12]}...); run again")  # fmt: skip
        kind = "vector" if data.x.ndim == 2 else "sequence"
        sizes = check(data, loss, kind, holdout, {} if classes is None else {"classes": classes})
        self.path, self.sha256, self.loss, self.kind, self.holdout = data.path, data.sha256, loss, kind, holdout
        self.input_size, self.output_size, self.T = sizes.input_size, sizes.output_size, sizes.T
        self.x = np.asarray(data.x, dtype=np.float64)  # the read-only array read() keeps, unless it must convert
        if sizes.classes is not None:
            self.y = np.asarray(data.y, dtype=np.int64)
        else:
            self.y = np.asarray(data.y, dtype=np.float64).reshape(len(data.y), -1)  # (N,) targets are (N, 1)
        perm = np.random.default_rng([HOLDOUT_SEED, 0]).permutation(len(self.x))
        self.held_rows, self.train_rows = perm[:holdout], perm[holdout:]
        self.baseline_loss = baseline(loss, self.y[self.held_rows], self.output_size)

    def sample(self, rng: np.random.Generator, n: int) -> tuple[Array, Array]:
        """x (n, D) or (n, T, D) and y (n,) labels or (n, O) targets: n rows drawn uniformly with replacement
        from the training rows (all but the held-out ones), rows = train_rows[rng.integers(0, len(train_rows), n)]."""
        rows = self.train_rows[rng.integers(0, len(self.train_rows), size=n)]
        return self.x[rows], self.y[rows]

    def held_out(self, n: int = EVAL_SIZE, seed: int = 0) -> tuple[Array, Array]:
        """x and y of the held-out rows, held_rows = perm[:holdout] (n must be the holdout the task was built
        with; seed is not used: the rows are the same for every run)."""
        if n != self.holdout:
            raise ValueError(f"held_out: n must be the file task's holdout {self.holdout}, got {n}")
        return self.x[self.held_rows], self.y[self.held_rows]


@np.errstate(divide="ignore")
def baseline(loss: str, y: Array, output_size: int) -> float:
    """The loss of the best constant prediction on targets y (n,) labels or (n, O): computed by the loss itself
    on the constant output, the mean target (mse, sum_squares), the log class frequencies (cross_entropy,
    absent classes -inf) or the logit of the mean target (bce, clipped to +-700 where the mean is 0 or 1)."""
    if loss in CLASSIFICATION:
        constant = np.log(np.bincount(y, minlength=output_size) / len(y))
    elif loss in UNIT_TARGETS:
        p = y.mean(axis=0)
        constant = np.clip(np.log(p) - np.log1p(-p), -700.0, 700.0)
    else:
        constant = y.mean(axis=0)
    return float(losses.get(loss)(np.broadcast_to(constant, (len(y), output_size)).copy(), y)[0])
