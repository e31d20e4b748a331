"""Progress on stderr in phases: the runs (done/total, failures, ETA), then consolidating, drawing figures,
writing the report; drawn by rich.progress, only when stderr is a terminal or in a Jupyter notebook (with
ipywidgets, through which rich draws there).

    with Phases() as bar:
        bar.phase("runs", total=len(todo))
        for ...: bar.advance(failed=n_failed)
        bar.phase("consolidating")

A phase without a total shows its elapsed time; starting a phase ends the one before (a check mark and its
time). Disabled (--quiet) or piped, every method does nothing and nothing is written.
"""

from __future__ import annotations

import sys
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, Task, TaskID, TextColumn
from rich.text import Text


class _Clock(ProgressColumn):
    """ETA m:ss while a counted phase runs; the elapsed m:ss when it is done or has no total."""

    def render(self, task: Task) -> Text:
        if task.total is not None and not task.finished:
            left = task.time_remaining
            return Text("ETA " + (_clock(left) if left is not None else "-:--"))
        return Text(_clock(task.finished_time if task.finished else task.elapsed or 0.0))


def _clock(seconds: float) -> str:
    """seconds as m:ss, or h:mm:ss from an hour."""
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


class Phases:
    """A context manager drawing one line per phase on `console` (default: stderr) when `enabled` and the
    console is a terminal; every method is a no-op otherwise. Entering it again (a nested user, e.g. the
    runner inside the CLI's phases) is allowed: only the outermost exit stops the display."""

    def __init__(self, enabled: bool = True, console: Console | None = None) -> None:
        self.console = console if console is not None else _stderr_console()
        self.enabled = enabled and (self.console.is_terminal or (self.console.is_jupyter and _widgets()))
        self._depth = 0
        self._task: TaskID | None = None
        self._failed = 0
        self._bar = Progress(
            SpinnerColumn(finished_text="[green]✓[/]"), TextColumn("{task.description:<18}"), BarColumn(bar_width=30),
            TextColumn("{task.fields[detail]}"), _Clock(),
            console=self.console, redirect_stdout=_stdout_shares(self.console), redirect_stderr=self.console.file is sys.stderr,
        )  # fmt: skip

    def __enter__(self) -> "Phases":
        if self.enabled and self._depth == 0:
            self._bar.start()
        self._depth += 1
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        self._depth -= 1
        if self.enabled and self._depth == 0:
            if kind is None:
                self._finish()
            self._bar.stop()

    def phase(self, name: str, total: int | None = None) -> None:
        """End the current phase and start `name`; with a total (runs) it counts done/total, failures, ETA."""
        if not self.enabled:
            return
        self._finish()
        self._failed = 0
        self._task = self._bar.add_task(name, total=total, detail=self._detail(0, total))

    def advance(self, failed: int | None = None) -> None:
        """One more done in the current phase; `failed`: the failures so far (shown when any)."""
        if not self.enabled or self._task is None:
            return
        self._failed = self._failed if failed is None else failed
        task = self._bar.tasks[self._task]
        self._bar.update(self._task, advance=1, detail=self._detail(int(task.completed) + 1, task.total))

    def _detail(self, done: int, total: float | None) -> str:
        if total is None:
            return ""
        return f"{done}/{int(total)}" + (f", [red]{self._failed} failed[/]" if self._failed else "")

    def _finish(self) -> None:
        """Mark the current phase done (its total reached, or 1 of 1 for a phase without one)."""
        if self._task is None:
            return
        task = self._bar.tasks[self._task]
        total = task.total if task.total is not None else 1
        self._bar.update(self._task, total=total, completed=total, detail=task.fields["detail"] and self._detail(int(total), total))
        self._task = None


def _widgets() -> bool:
    """Whether a notebook can show the display: rich draws it in Jupyter through ipywidgets (without
    them it would warn at every refresh, so the display stays off)."""
    try:
        import ipywidgets  # noqa: F401
        from IPython.display import display  # noqa: F401
    except ImportError:
        return False
    return True


def _stderr_console() -> Console:
    """The console progress is drawn on: stderr (a terminal's width and colours, or nothing when piped)."""
    return Console(file=sys.stderr)


def _stdout_shares(console: Console) -> bool:
    """Whether stdout is a terminal too, so that lines printed meanwhile must go above the display; when
    stdout is piped, its lines go to the pipe untouched."""
    try:
        return console.file is sys.stderr and sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def make(progress: bool | Phases) -> Phases:
    """A Phases for an API's `progress` argument: the one given, else a new one enabled when progress is True."""
    return progress if isinstance(progress, Phases) else Phases(enabled=bool(progress))
