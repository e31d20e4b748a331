"""Draw every figure the tables allow into <out_dir>/figures/, each isolated from the others.

A figure is skipped, with the reason, when its module does not exist, when it raises SkipFigure (the
tables do not hold what it needs) or when it raises anything else (a bug: the reason starts with
ERROR and names the exception). One figure's failure never stops the others.

Asked for (draw_all(workers=None): one per core, as the gradlab command does), the figures are drawn in a
pool of worker processes (gradlab.sweep.executors' Processes: "spawn", one figure in flight per worker,
the slowest figures handed out first), each worker
given the tables once, when it starts. A worker draws and saves a figure's files; this process alone
writes the ledger (figures/.gradlab-files) and removes stale files, as each figure comes back. A figure
whose worker died is skipped with the reason (an ERROR); SIGTERM or Ctrl-C stops the workers.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from gradlab.plots import NAMES, style
from gradlab.plots.split import figure_of, file_name, unique_ids
from gradlab.sweep.executors import Lost, Processes, stop_on_signals
from gradlab.sweep.store import FILES_LEDGER, StoreError, owned_files, record_files, remove_files

ERROR = "error: "  # the start of the reason of a figure that raised (not a SkipFigure)
FORMATS = ("png", "pdf", "svg")  # what --format accepts (matplotlib writes each)
# The figures, slowest first: the order a pool hands them out in, so that no long figure starts last. The
# tour's render + PNG + PDF seconds, measured one after the other: loss_curves 7.9 (6 files),
# gradient_by_layer 4.3, cures 3.2 (2 files), dead_units 3.1, time_step_heatmap 2.6, clipping 2.1,
# depth_activation_heatmap 1.7, gradient_through_time 1.4, saturation 1.0.
SLOWEST_FIRST = ("loss_curves", "gradient_by_layer", "cures", "dead_units", "time_step_heatmap", "clipping",
                 "depth_activation_heatmap", "gradient_through_time", "saturation")  # fmt: skip


def load_figure(name: str):
    """The module of figure `name`, or None when gradlab/plots/<name>.py does not exist."""
    if name not in NAMES:
        raise ValueError(f"figure must be one of {', '.join(NAMES)}; got {name!r}")
    try:
        return importlib.import_module(f"gradlab.plots.{name}")
    except ModuleNotFoundError as err:
        if err.name == f"gradlab.plots.{name}":
            return None
        raise


def render(name: str, tables: dict[str, pd.DataFrame], by: str | None = None):
    """([Drawn], None) or (None, reason): figure `name` drawn from the tables (one Drawn per file),
    never raising. `by` goes to a figure's draw() when it takes one (the field to facet or group by)."""
    import inspect

    before = _pyplot_figures()
    try:
        mod = load_figure(name)
        if mod is None:
            return None, f"not available: no module gradlab/plots/{name}.py"
        kwargs = {"by": by} if by is not None and "by" in inspect.signature(mod.draw).parameters else {}
        with quiet():
            drawn = _as_drawn(mod.draw(tables, **kwargs), caption(name))
        return drawn, None
    except style.SkipFigure as why:
        reason = str(why) or "the tables do not hold what it needs"
    except Exception as err:  # noqa: BLE001 - one figure's bug must not take the others down
        reason = f"{ERROR}{type(err).__name__}: {err}".splitlines()[0]
    for num in _pyplot_figures() - before:  # what the failed figure left open (a figure drawn with pyplot)
        style.close(num)
    return None, reason


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No warnings and no NumPy floating-point warnings inside: a figure's warnings are not the user's
    business (a log of 0 is a hidden point, an overflowed norm a line that stops)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


def _pyplot_figures() -> set[int]:
    """The numbers of the figures pyplot holds open; none when pyplot was never imported (gradlab's own
    figures are pyplot-free, see gradlab.plots.style, so gradlab never imports it)."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    return set(pyplot.get_fignums()) if pyplot is not None else set()


def _as_drawn(result, fallback: str) -> list[style.Drawn]:
    """A draw()'s result as a list of Drawn: a Figure (one file, captioned by the module's CAPTION), a
    Drawn, or a list of them."""
    items = result if isinstance(result, (list, tuple)) else [result]
    out = [item if isinstance(item, style.Drawn) else style.Drawn(item, fallback) for item in items]
    suffixes = [d.suffix for d in out]
    if len(set(suffixes)) != len(suffixes):
        raise ValueError(f"the figure's files repeat a name: {suffixes}")
    return out


def caption(name: str) -> str:
    """The figure's CAPTION (what to look at), or "" when its module is missing or broken."""
    try:
        mod = load_figure(name)
    except Exception:  # noqa: BLE001 - a broken module has no caption; render() reports its error
        return ""
    return str(getattr(mod, "CAPTION", "")) if mod is not None else ""


def check_names(only: Iterable[str] | None) -> list[str]:
    """The figures to draw, in NAMES order; ValueError (one line) for an unknown name."""
    if only is None:
        return list(NAMES)
    only = list(only)
    for name in only:
        if name not in NAMES:
            raise ValueError(f"--only {name!r}: must be one of {', '.join(NAMES)}")
    return [n for n in NAMES if n in only]


def check_formats(formats: Iterable[str]) -> list[str]:
    """The formats, deduplicated; ValueError (one line) for an unknown or empty one."""
    out = []
    for fmt in formats:
        fmt = fmt.strip().lower().lstrip(".")
        if fmt not in FORMATS:
            raise ValueError(f"--format {fmt!r}: must be one of {', '.join(FORMATS)} (comma-separated, e.g. png,pdf)")
        if fmt not in out:
            out.append(fmt)
    if not out:
        raise ValueError(f"--format: give at least one of {', '.join(FORMATS)}")
    return out


class Written(dict):
    """draw_all's written (figure -> its files), knowing the Drawing it came from (`drawing`), so that a
    caller that unpacks (written, skipped) and hands them on (report.write) still finds the captions."""

    drawing: "Drawing | None" = None


@dataclass
class Drawing:
    """What draw_all drew: written (figure -> its files), skipped (figure -> why it was not drawn),
    notes (figure -> what it left out and why), stems (figure -> its file stems, in order: "<figure>" or
    "<figure>__<field>=<value>..."), captions (stem -> the file's caption, written from the data).
    Unpacks as (written, skipped), as draw_all's result always has."""

    written: dict[str, list[Path]] = field(default_factory=Written)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    stems: dict[str, list[str]] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.written, Written):
            self.written = Written(self.written)
        self.written.drawing = self

    def __iter__(self):
        return iter((self.written, self.skipped))

    def note_lines(self, indent: str = "  ") -> list[str]:
        """One line per note, in NAMES order: '  gradient_by_layer left out: 2 runs ...'."""
        return [f"{indent}{name} left out: {note}" for name in NAMES if name in self.notes for note in self.notes[name]]


def draw_all(
    tables: dict[str, pd.DataFrame],
    out_dir: str | Path,
    only: Iterable[str] | None = None,
    formats: Iterable[str] = ("png", "pdf"),
    by: str | None = None,
    done: Callable[[str], None] | None = None,
    workers: int | None = 1,
) -> Drawing:
    """Draw the figures (all of NAMES, or `only`) into out_dir/figures/<stem>.<format>, a stem per file
    of a figure: <name>, or <name>__<field>=<value>[__...] when the figure is split into files (see
    gradlab.plots.split). `by` is a field to facet or group by (ValueError when the runs table has no
    such column). Run ids must be unique (tables of several folders: gradlab.plots.combine).

    Returns a Drawing (unpacks as written, skipped), in NAMES order. A figure's files left over from
    earlier results (its old stems, or all of them when it is skipped) are removed (only files gradlab
    wrote there, as figures/.gradlab-files lists them), so figures/ shows only what these tables support.
    `done(name)` is called as each figure finishes, drawn or skipped (a progress bar's tick).

    `workers`: processes drawing at once (None: one per core; at most one per figure); 1 (the default:
    a script without `if __name__ == "__main__":` stays safe) draws in this process. A pool gives the same
    Drawing and the same files; a script that asks for one needs that guard, as every "spawn" pool does
    (the gradlab command asks for one per core). A figure whose module this process
    replaced (a stand-in in sys.modules, which a fresh worker would not see) is drawn in this process."""
    names, formats = check_names(only), check_formats(formats)
    size = pool_size(workers, len(names))
    check_by(tables, by)
    task = FigureFiles(unique_ids(tables), by, Path(out_dir) / "figures", tuple(formats))
    made: dict[str, Made] = {}

    def finish(name: str, outcome: "Made") -> None:
        _settle(task.folder, name, outcome)
        made[name] = outcome
        if done is not None:
            done(name)

    away = [n for n in SLOWEST_FIRST if n in names and not _replaced_here(n)] if size > 1 else []
    if len(away) < 2:  # a pool of one would only add a worker's start-up
        away = []
    for name in [n for n in names if n not in away]:
        finish(name, task(name))
    if away:
        with stop_on_signals(), contextlib.closing(Processes(min(size, len(away))).map(task, away)) as outcomes:
            for name, outcome in outcomes:
                finish(name, Made.lost(outcome) if isinstance(outcome, Lost) else outcome)
    return _drawing(names, made)


def pool_size(workers: int | None, figures: int) -> int:
    """The processes to draw `figures` figures with: `workers` (None: os.cpu_count()), at most one per
    figure, at least 1; ValueError (one line) unless workers is None or a positive int."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers {workers!r}: must be a positive integer (1: in this process) or None (one per core)")
    return max(1, min(workers or os.cpu_count() or 1, figures))


def _replaced_here(name: str) -> bool:
    """Whether this process replaced figure `name`'s module (sys.modules holds None, or a module built in
    memory, with no __spec__: a test's stand-in), which a worker importing it afresh would not see."""
    full = f"gradlab.plots.{name}"
    return full in sys.modules and getattr(sys.modules[full], "__spec__", None) is None


@dataclass(frozen=True)
class Made:
    """What drawing one figure's files gave, without its matplotlib Figures (it crosses from a worker):
    reason (why it is skipped, or None), its files' stems, captions and notes (in order), keep (the file
    names it is to have: stale files of the figure are the others) and paths (the files written)."""

    reason: str | None = None
    stems: tuple[str, ...] = ()
    captions: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    paths: tuple[Path, ...] = ()

    @classmethod
    def lost(cls, lost: Lost) -> "Made":
        """A figure whose worker died drawing it: skipped, as an error (its files as for any skipped figure)."""
        return cls(reason=f"{ERROR}not drawn: {lost.reason}")


@dataclass(frozen=True)
class FigureFiles:
    """task(name) -> Made: figure `name` drawn from the tables and saved into folder in each format,
    without touching the ledger. Picklable: a pool's worker receives it (the tables with it) once."""

    tables: dict[str, pd.DataFrame]
    by: str | None
    folder: Path
    formats: tuple[str, ...]

    def __call__(self, name: str) -> Made:
        drawn, reason = render(name, self.tables, by=self.by)
        if drawn is None:
            return Made(reason=reason)
        stems = tuple(file_name(name, d.suffix) for d in drawn)
        keep = tuple(f"{stem}.{fmt}" for stem in stems for fmt in self.formats)
        foreign = next((self.folder / f for f in keep if _is_foreign(self.folder, f)), None)
        if foreign is not None:  # check_folder refuses it earlier; here it is a folder changed since
            for d in drawn:
                style.close(d.fig)
            return Made(reason=f"{ERROR}{foreign} exists and gradlab did not write it", keep=keep)
        paths: list[Path] = []
        try:
            for d, stem in zip(drawn, stems):
                paths += style.save(d.fig, self.folder / stem, self.formats)
        except Exception as err:  # noqa: BLE001 - e.g. a figure that cannot be rendered to a file
            for d in drawn:
                style.close(d.fig)
            reason = f"{ERROR}saving failed: {type(err).__name__}: {err}".splitlines()[0]
            return Made(reason=reason, keep=keep, paths=tuple(paths))
        notes = tuple(dict.fromkeys(note for d in drawn for note in d.notes))
        return Made(None, stems, tuple(d.caption for d in drawn), notes, keep, tuple(paths))


def _settle(folder: Path, name: str, made: Made) -> None:
    """The ledger's part of figure `name` (this process only): its stale files removed, its new ones listed."""
    _remove_stale(folder, name, keep=made.keep)
    if made.paths:
        record_files(folder, made.paths)


def _drawing(names: list[str], made: dict[str, Made]) -> Drawing:
    """The Drawing of the figures made, in the order of names."""
    result = Drawing()
    for name in names:
        m = made[name]
        if m.reason is not None:
            result.skipped[name] = m.reason
            continue
        result.written[name] = list(m.paths)
        result.stems[name] = list(m.stems)
        result.captions.update(zip(m.stems, m.captions))
        if m.notes:
            result.notes[name] = list(m.notes)
    return result


def check_folder(folder: str | Path, names: Iterable[str] | None = None) -> None:
    """StoreError (one line) naming a file in folder that drawing the figures `names` (default all) could
    overwrite and that gradlab did not write (a figure's file name, not in the folder's ledger); or when
    folder is a link or a file. Writes nothing."""
    folder, names = Path(folder), set(check_names(names))
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise StoreError(f"{folder}: a link or a file where gradlab writes its figures; move it")
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        stem, _, fmt = path.name.rpartition(".")
        parts = stem.split("__")
        drawable = fmt in FORMATS and parts[0] in names and all("=" in p for p in parts[1:])  # file_name's form
        if drawable and _is_foreign(folder, path.name):
            raise StoreError(f"{path}: a figure's name, but gradlab did not write it (not listed in "
                             f"{folder / FILES_LEDGER}); move it, or draw into another folder with --out")  # fmt: skip


def _is_foreign(folder: Path, name: str) -> bool:
    """folder/name exists (a file or a link) and the folder's ledger does not say gradlab wrote it."""
    return os.path.lexists(folder / name) and name not in owned_files(folder)


def check_by(tables: dict[str, pd.DataFrame], by: str | None) -> None:
    """ValueError (one line, the runs table's fields listed) when `by` is not a field of the runs table."""
    if by is not None and by not in tables["runs"].columns:
        from gradlab.plots.split import fields

        raise ValueError(f"--by {by!r}: not a field of the runs table; one of {', '.join(fields(tables['runs']))}")


def figures(name: str, tables: dict[str, pd.DataFrame], by: str | None = None) -> list[Figure]:
    """Figure `name` (one of NAMES) drawn from the tables (gradlab.load's, or combine()'s), one matplotlib
    Figure per file `gradlab plot` would write (a field the figure does not draw splits it into files),
    each displaying inline in Jupyter; the global matplotlib state (backend, rcParams, pyplot's figures) is
    left alone. `by`: a field to facet or group by. Raises style.SkipFigure (why) when the tables do not
    hold what the figure needs, ValueError for an unknown name or field."""
    mod = load_figure(name)  # ValueError for a name not in NAMES
    check_by(tables, by)
    if mod is None:
        raise style.SkipFigure(f"not available: no module gradlab/plots/{name}.py")
    kwargs = {"by": by} if by is not None else {}
    with quiet():
        drawn = _as_drawn(mod.draw(unique_ids(tables), **kwargs), caption(name))
    return [d.fig for d in drawn]


def _remove_stale(folder: Path, name: str, keep: Iterable[str]) -> None:
    """Remove the files gradlab wrote for figure `name` (<name>.<fmt>, <name>__*.<fmt>) but `keep`."""
    keep = set(keep)
    own = owned_files(folder)
    stale = [f for f in own if f not in keep and f.rsplit(".", 1)[-1] in FORMATS
             and figure_of(f.rsplit(".", 1)[0]) == name]  # fmt: skip
    remove_files(folder, stale)


def errors(skipped: dict[str, str]) -> list[str]:
    """The skipped figures that raised (bugs), not those the tables could not support."""
    return [name for name, reason in skipped.items() if reason.startswith(ERROR)]
