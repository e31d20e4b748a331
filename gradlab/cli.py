"""The `gradlab` command line. Thin: it parses, calls the library, prints."""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import typer
from rich.markup import escape
from typer.core import TyperGroup

import gradlab
from gradlab.sweep import terminal
from gradlab.sweep.config import MAX_RUNS
from gradlab.sweep.progress import Phases


class _Group(TyperGroup):
    """The `gradlab` group: in every command's --help (and the root's), a boolean flag shows no value
    (`--fresh`, not `--fresh <bool>`, which reads as if it took one) and the docstring's paragraphs are
    reflowed to the terminal (its line breaks are the source's, not the reader's)."""

    def get_params(self, ctx):  # noqa: ANN001, ANN201 - click's signature
        return _bare_flags(super().get_params(ctx))

    def get_command(self, ctx, name):  # noqa: ANN001, ANN201
        command = super().get_command(ctx, name)
        if command is not None and not getattr(command, "_tidied", False):
            _bare_flags(command.get_params(ctx))
            command.help = _reflow(command.help)  # plain text: a [word] in it is not rich markup
            command.short_help = command.short_help or _first_sentence(command.help)
            command.help, command.short_help = (escape(t) if t else t for t in (command.help, command.short_help))
            command._tidied = True
        return command


def _bare_flags(params: list) -> list:
    """params, each flag's metavar set to "" (typer shows a parameter's metavar in place of its type)."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


def _first_sentence(text: str | None) -> str | None:
    """The help's first sentence (up to a full stop before a capital letter or the end), for the command list."""
    if not text:
        return text
    first = text.split("\n\n")[0]
    end = re.search(r"\.(?=\s+[A-Z(]|$)", first)
    return first[: end.end()] if end else first


def _reflow(text: str | None) -> str | None:
    """A docstring's paragraphs (split at blank lines) each joined into one line, for the help to wrap."""
    if not text:
        return text
    return "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(text).split("\n\n"))


app = typer.Typer(
    name="gradlab",
    cls=_Group,
    help="A lab for seeing, measuring and explaining vanishing, exploding and dying gradients.\n\n"
    "Example: gradlab run (the tour, experiments/tour.toml)",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


_DEBUG = False  # --debug: let unexpected errors show their traceback
WORKERS_HELP = ("Processes drawing the figures; default: one per core, at most one per figure; "
                "1: draw in this process.")  # gradlab plot's and report's --workers


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gradlab {gradlab.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of an unexpected error."),
) -> None:
    """A lab for seeing, measuring and explaining vanishing, exploding and dying gradients."""
    global _DEBUG
    _DEBUG = debug


@app.command()
def run(
    config: Path = typer.Argument(None, help="Experiment config (TOML); default experiments/tour.toml."),
    set_: list[str] = typer.Option([], "--set", help="Override a field, e.g. --set train.steps=50, or sweep it: --set seed=0,1,2 (repeatable)."),
    out: Path = typer.Option(None, help="Results folder; default results/<experiment name>."),
    workers: int = typer.Option(None, min=1, help="Worker processes (at most one per run to do); alone, implies --executor process."),
    executor: str = typer.Option(
        None, help="serial, process or dask; default: serial, or process (one worker per core) for the tour (no CONFIG) or with --workers."
    ),
    address: str = typer.Option(None, help="A running Dask scheduler, e.g. tcp://127.0.0.1:8786 (--executor dask)."),
    fresh: bool = typer.Option(False, "--fresh", help="Remove the files gradlab wrote in --out (only there, only its own) and start over."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the grid size and the first runs; run nothing."),
    max_runs: int = typer.Option(MAX_RUNS, "--max-runs", min=1, help="Refuse grids of more runs than this."),
    quiet: bool = typer.Option(False, "--quiet", help="Draw no progress (it is drawn only on a terminal)."),
    no_report: bool = typer.Option(False, "--no-report", help="Skip drawing the figures and writing summary.csv and report.html."),
    no_ensemble: bool = typer.Option(False, "--no-ensemble", help="Train every run alone (not runs of one shape as one ensemble)."),
) -> None:
    """Run an experiment's grid into a results folder. Then draw its figures (figures/) and write
    summary.csv (the runs table) and report.html.

    Rerunning resumes: finished runs are kept and skipped, failed ones are run again. Without CONFIG,
    runs the tour (experiments/tour.toml) on a process pool of one worker per core. On a terminal,
    progress is drawn on stderr: the runs (done/total, failures, ETA), then consolidating, drawing the
    figures, writing the report. SIGTERM or Ctrl-C stops the sweep cleanly (exit 143 / 130), keeping
    what finished. Exit 1 if a run failed, 2 on a bad config, option or folder.

    Example: gradlab run experiments/mlp_depth.toml --set train.steps=50
    """
    from gradlab.sweep import ConfigError, load, runner, summary
    from gradlab.sweep.executors import ExecutorError
    from gradlab.sweep.store import StoreError

    if executor is None:  # the tour is the README's main command: use every core by default
        executor = "process" if config is None or workers is not None else "serial"
    _check_executor(executor, workers, address)
    try:
        experiment = load(config or _tour(), set_)
    except ConfigError as err:
        _bad(str(err))
    out = out or Path("results") / experiment.name
    count = experiment.count()
    too_many = (f"{experiment.name}: the grid has {count:,} runs, more than --max-runs {max_runs:,}; "
                f"pass --max-runs {count} to run them all")  # fmt: skip
    refused = _refused_out(out, no_report)
    if dry_run:
        width = terminal.width()
        plan = f"would write {out}/" if not refused else f"would refuse {out}"
        _echo(summary.grid_preview(experiment, width=width, title=experiment.name) + f"\n{plan} (nothing run)")
        for why in [too_many] * (count > max_runs) + [refused] * bool(refused):
            _echo(terminal.wrap(f"refused as it stands: {why}", width))
        return
    if count > max_runs:
        _bad(too_many)
    if refused:
        _bad(refused)
    with Phases(enabled=not quiet) as bar:
        try:
            result = runner.run(experiment, out, executor, workers, address, fresh, progress=bar,
                                warn=lambda line: _echo(line, err=True), ensemble=not no_ensemble)  # fmt: skip
        except KeyboardInterrupt as err:
            _interrupted(err, out)
        except (StoreError, ExecutorError) as err:
            _bad(str(err))
        _echo(
            f"{experiment.name}: {result.total} runs ({result.skipped} already finished) in {result.wall_s:.1f} s -> {out}/\n"
            + summary.counts(_load_runs(out), terminal.width())
        )
        if not no_report:
            with _writing(out):
                _figures_and_report(out, bar=bar)
    if result.failed:
        _echo("failed: " + ", ".join(rid for rid, _ in result.failed) + f" (see `gradlab show {out}`)", err=True)
        raise typer.Exit(1)


def _check_executor(executor: str, workers: int | None, address: str | None = None) -> None:
    """Exit 2 on an executor that is not one of EXECUTORS, or options it does not take."""
    from gradlab.sweep.executors import EXECUTORS

    if executor not in EXECUTORS:
        _bad(f"--executor {executor!r}: must be one of {', '.join(EXECUTORS)}")
    if address is not None and executor != "dask":
        _bad(f"--address {address!r}: needs --executor dask")
    if workers is not None and executor == "serial":
        _bad(f"--workers {workers}: needs --executor process or dask (serial runs one at a time)")


def _refused_out(out: Path, no_report: bool) -> str | None:
    """Why gradlab run may not write the results folder out (its figures too, unless no_report), or None."""
    from gradlab.plots.draw import check_folder
    from gradlab.sweep.store import StoreError, check_writable

    try:
        check_writable(out)
        if not no_report:
            check_folder(out / "figures")
    except StoreError as err:
        return str(err)
    return None


def _interrupted(err: KeyboardInterrupt, out: Path) -> None:
    """One line on how a stopped sweep resumes; exit 128 + the signal (130 for Ctrl-C, 143 for SIGTERM)."""
    import signal

    from gradlab.sweep.store import Store

    signum = getattr(err, "signum", signal.SIGINT)
    kept = len(Store(out).finished())
    _echo(f"\nstopped by {signal.Signals(signum).name}: {kept} finished runs are kept in {out}/; "
               "run the same command again to resume", err=True)  # fmt: skip
    raise typer.Exit(128 + signum)


@app.command()
def show(path: Path = typer.Argument(..., help="A results folder written by gradlab run.")) -> None:
    """Summarise a results folder: runs by status and diagnosis, failures, the worst cases.

    Example: gradlab show results/mlp_depth
    """
    from gradlab.sweep import summary

    typer.echo(summary.show(_load_tables(path)))


@app.command()
def plot(
    paths: list[Path] = typer.Argument(..., help="Results folders written by gradlab run (several: drawn together)."),
    only: list[str] = typer.Option([], "--only", help="Draw only this figure (repeatable, or comma-separated)."),
    format_: str = typer.Option("png,pdf", "--format", help="Comma-separated file formats: png, pdf, svg."),
    out: Path = typer.Option(None, help="Where figures/ goes; default: the results folder (needed for several)."),
    by: str = typer.Option(None, "--by", help="A field to split the figures by first (rows of panels, else files), "
                           "e.g. init or folder."),
    workers: int = typer.Option(None, "--workers", min=1, help=WORKERS_HELP),
) -> None:
    """Draw the figures the results allow into RESULTS_DIR/figures/. Say which were skipped and why.

    Several folders are drawn together, each run keeping its folder's name as a field (`folder`), into
    --out. Exit 1 if a figure raised an error, 2 on a bad option or folder.

    Figures: gradient_by_layer, depth_activation_heatmap, gradient_through_time, time_step_heatmap,
    dead_units, saturation, clipping, cures, loss_curves.

    Every field that differs between runs a figure would draw as one line is split off (rows of
    panels, or a file per value); --by FIELD is split off first.

    Example: gradlab plot results/tour --only clipping --format png
    """
    from gradlab.plots import draw
    from gradlab.sweep.store import Store, StoreError, check_writable, load_folders

    names = [n.strip() for item in only for n in item.split(",") if n.strip()] or None
    try:
        names = draw.check_names(names) if names else None
        formats = draw.check_formats(f for f in format_.split(",") if f.strip())
    except ValueError as err:
        _bad(str(err))
    if out is None and len(paths) > 1:
        _bad(f"{len(paths)} results folders: give --out, the folder their figures go to (figures/ inside it)")
    twice = next((p for k, p in enumerate(paths) if p.resolve() in {q.resolve() for q in paths[:k]}), None)
    if twice is not None:
        _bad(f"{twice}: given twice; give each results folder once")
    try:
        tables = load_folders(paths)
    except (FileNotFoundError, StoreError) as err:
        _bad(str(err))
    target = out or paths[0]
    if by is not None and by not in tables["runs"].columns:
        from gradlab.plots.split import fields

        _bad(f"--by {by!r}: not a field of these runs; one of {', '.join(fields(tables['runs']))}")
    try:  # every check before the first write
        if out is not None:
            check_writable(out)
        draw.check_folder(target / "figures", names)
        if out is not None:
            Store(out).open().close()  # marked as gradlab's, so that it may write there
    except StoreError as err:
        _bad(str(err))
    with _writing(target):
        try:
            written, skipped = draw.draw_all(tables, target, only=names, formats=formats, by=by, workers=workers)
        except KeyboardInterrupt as err:
            _drawing_stopped(err, target)
    typer.echo(_drawn_lines(target, written, skipped))
    if draw.errors(skipped):
        raise typer.Exit(1)


@app.command()
def report(
    path: Path = typer.Argument(..., help="A results folder written by gradlab run."),
    workers: int = typer.Option(None, "--workers", min=1, help=WORKERS_HELP),
) -> None:
    """Write RESULTS_DIR/report.html, one self-contained file. Redraws the figures (figures/) and writes
    summary.csv (the runs table) first.

    The report holds the config and grid, runs by status and diagnosis, each figure with what to look at,
    the diagnosis sentences and provenance; figures are embedded, nothing is fetched from the network.

    Example: gradlab report results/tour
    """
    tables = _load_tables(path)
    _claim_report_files(path)
    with _writing(path), Phases() as bar:
        _figures_and_report(path, tables, bar, workers)


REPORT_FILES = ("summary.csv", "report.html")  # what _figures_and_report writes beside figures/


def _claim_report_files(root: Path) -> None:
    """Exit 2 unless gradlab may write the figures and REPORT_FILES into root (its own, or new); in a folder
    without the marker (tables copied by hand), list REPORT_FILES in its ledger, as gradlab's to replace."""
    from gradlab.plots.draw import check_folder
    from gradlab.sweep.store import MARKER, StoreError, check_own_files, record_files

    try:
        check_own_files(root, REPORT_FILES)
        check_folder(root / "figures")
    except StoreError as err:
        _bad(str(err))
    if not (root / MARKER).is_file():
        record_files(root, [root / name for name in REPORT_FILES])


@app.command()
def export(
    path: Path = typer.Argument(..., help="A results folder written by gradlab run."),
    format_: str = typer.Option("csv", "--format", help="csv or parquet."),
    tables: str = typer.Option("", "--tables", help="Comma-separated tables: runs, steps, layers, timesteps (default: all)."),
    out: Path = typer.Option(None, help="The folder the files go to; default RESULTS_DIR/export/."),
) -> None:
    """Write each table of a results folder as one tidy file, every row with its run's config fields
    (a config column the table already has, steps' lr, comes as config_lr). Rerunning replaces only
    the files gradlab wrote there (listed in .gradlab-files); any other file is never overwritten.
    Exit 2 on a bad option or folder, with nothing written.

    Example: gradlab export results/mlp_depth --format csv --tables steps,layers
    """
    from gradlab.sweep.export import ExportError
    from gradlab.sweep.export import export as export_tables
    from gradlab.sweep.store import StoreError

    try:
        written = export_tables(path, format_, tables.split(",") if tables else None, out)
    except (ExportError, FileNotFoundError, StoreError) as err:
        _bad(str(err))
    typer.echo(f"exported {len(written)} table{'s' * (len(written) != 1)} to {written[0].path.parent}/: "
               + ", ".join(f"{w.path.name} ({w.rows:,} rows, {w.columns} columns)" for w in written))  # fmt: skip


def _figures_and_report(out: Path, tables=None, bar: Phases | None = None, workers: int | None = None) -> None:
    """Draw the figures (on `workers` processes; None: one per core), write summary.csv and the report, print
    what was drawn and skipped and the report's path; the phases "drawing figures" and "writing the report"
    on `bar` (a terminal's progress)."""
    from gradlab import report as reporting
    from gradlab.plots import draw

    bar = bar or Phases(enabled=False)
    tables = tables if tables is not None else _load_tables(out)
    bar.phase("drawing figures", total=len(draw.NAMES))
    try:
        written, skipped = draw.draw_all(tables, out, done=lambda _: bar.advance(), workers=workers)
    except KeyboardInterrupt as err:
        _drawing_stopped(err, out)
    _echo(_drawn_lines(out, written, skipped))
    bar.phase("writing the report")
    reporting.write_summary(out, tables)
    _echo(f"report: {reporting.write(out, tables, (written, skipped))}")


def _drawing_stopped(err: KeyboardInterrupt, out: Path) -> None:
    """One line on figures stopped by a signal (the workers are stopped); exit 128 + the signal."""
    import signal

    signum = getattr(err, "signum", signal.SIGINT)
    _echo(f"\nstopped by {signal.Signals(signum).name} while drawing the figures: those drawn are in "
          f"{out / 'figures'}/; run the same command again to draw them all", err=True)  # fmt: skip
    raise typer.Exit(128 + signum)


def _drawn_lines(out: Path, written: dict, skipped: dict) -> str:
    from gradlab.plots import NAMES

    width = terminal.width()
    lines = [f"figures: {len(written)} of {len(written) + len(skipped)} drawn in {out / 'figures'}/"
             + (f" ({', '.join(written)})" if written else "")]  # fmt: skip
    lines += [f"  skipped {name}: {skipped[name]}" for name in NAMES if name in skipped]
    return "\n".join(terminal.wrap(line, width, "    ") for line in lines)


def _load_tables(path: Path):
    from gradlab.sweep import load_results
    from gradlab.sweep.store import StoreError

    try:
        return load_results(path)
    except (FileNotFoundError, StoreError) as err:
        _bad(str(err))


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Hold a results folder's lock while figures and the report are written into it (when it is a
    store: a folder holding only copied tables has none); another process's lock is exit 2."""
    from gradlab.sweep.store import MARKER, StoreBusy, locked

    with ExitStack() as stack:
        if (path / MARKER).is_file():
            try:
                stack.enter_context(locked(path))
            except StoreBusy as err:
                _bad(str(err))
        yield


def _tour() -> Path:
    """experiments/tour.toml here, else the one next to the installed package (a source checkout)."""
    here = Path("experiments") / "tour.toml"
    shipped = Path(gradlab.__file__).resolve().parents[1] / "experiments" / "tour.toml"
    return here if here.is_file() or not shipped.is_file() else shipped


def _load_runs(out: Path):
    from gradlab.sweep import load_results

    return load_results(out)["runs"]


def _echo(text: str, err: bool = False) -> None:
    """A line on stdout (stderr), through print: while progress is drawn, rich's stand-ins for sys.stdout
    and sys.stderr put it above the display (click's echo writes past them)."""
    print(text, file=sys.stderr if err else sys.stdout, flush=True)


def _bad(message: str) -> None:
    """A usage error: one line on stderr, exit code 2."""
    _echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@app.command()
def gradcheck(
    seed: int = typer.Option(0, min=0, max=2**32 - 1, help="Seed of the random problems (0 to 2**32 - 1)."),
) -> None:
    """Check every backward against central differences in float64. Exit 1 if any relative error exceeds 1e-7.

    The checks: MLP plain, normalized and residual; RNN, LSTM and GRU with 1-3 layers, full and truncated
    BPTT, loss on the last or every step; ensembles; every activation and loss.

    Example: gradlab gradcheck --seed 3
    """
    from gradlab.nn.gradcheck import TOLERANCE, run_suite

    rows = list(run_suite(seed))
    typer.echo(_gradcheck_table(rows, terminal.width()))
    bad = [r for r in rows if max(r.max_rel_error, r.direction_rel_error) > TOLERANCE]
    if bad:
        typer.echo(f"FAIL: {len(bad)} of {len(rows)} checks exceed {TOLERANCE:g}", err=True)
        raise typer.Exit(1)
    typer.echo(f"ok: {len(rows)} checks, worst relative error {max(max(r.max_rel_error, r.direction_rel_error) for r in rows):.1e} <= {TOLERANCE:g}")


def _gradcheck_table(rows: list, width: int = terminal.MIN_WIDTH) -> str:
    """One line per model and activation, one column per loss: the worst relative error over the
    parameters and the random direction (a table at most `width` columns wide)."""
    from gradlab.nn.losses import NAMES as LOSSES

    cells: dict[tuple[str, str], dict[str, float]] = {}
    for r in rows:
        cells.setdefault((r.model, r.activation), {})[r.loss] = max(r.max_rel_error, r.direction_rel_error)
    cols = [terminal.Col("model", wrap=True), terminal.Col("activation")] + [terminal.Col(n, number=True) for n in LOSSES]
    lines = [[model, act, *(f"{by_loss[n]:.1e}" if n in by_loss else "-" for n in LOSSES)] for (model, act), by_loss in cells.items()]
    return terminal.table(cols, lines, width, key=2)


@app.command()
def bench(
    quick: bool = typer.Option(False, "--quick", help="Fewer repeats (the whole run well under a minute)."),
    only: str = typer.Option("", help="Comma-separated workloads to run, e.g. W1,W3 (default: all)."),
    dtype: str = typer.Option("both", help="float32, float64 or both."),
    probes: bool = typer.Option(True, "--probes/--no-probes", help="Also time the probes on W1-W3 (float64)."),
    runner: bool = typer.Option(False, "--runner", help="Time the sweep runner instead (speedup, overhead, consolidation)."),
    torch_: bool = typer.Option(False, "--torch", help="Time gradlab.torch.watch's overhead on a torch MLP and LSTM instead."),
) -> None:
    """Time one training step of the engine on its workloads and check the targets. Then the probes' cost.

    A step is forward, loss, backward, clip and SGD, in float32 and float64, against NumPy's matrix-product
    peak and, when installed, PyTorch. --runner times the sweep runner instead.

    Example: gradlab bench --quick
    """
    engine_only = [f"--{k}" for k, given in (("only", bool(only)), ("dtype", dtype != "both"), ("no-probes", not probes)) if given]
    if runner and torch_:
        _bad("--runner and --torch: give one (each times something else)")
    if (runner or torch_) and engine_only:
        _bad(f"{engine_only[0]}: applies to the engine's workloads, not to --{'runner' if runner else 'torch'}")
    if torch_:
        from gradlab.bench import torch_watch

        try:
            torch_watch.run(quick=quick, echo=typer.echo)
        except ValueError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        return
    if runner:
        from gradlab.bench import runner as runner_bench

        runner_bench.run(echo=typer.echo, width=terminal.width())
        return
    from gradlab.bench import engine
    from gradlab.bench import probes as probes_bench

    dtypes = ("float32", "float64") if dtype == "both" else (dtype,)
    try:
        engine.run(quick=quick, only=[n for n in only.split(",") if n.strip()] or None, dtypes=dtypes, echo=typer.echo,
                   width=terminal.width())  # fmt: skip
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    if probes:
        typer.echo("")
        probes_bench.run(quick=quick, echo=typer.echo, width=terminal.width())


@app.command()
def reproduce(
    name: str = typer.Argument(None, help="The reproduction (see --list)."),
    quick: bool = typer.Option(False, "--quick", help="The small version the tests run (into results/NAME_quick/)."),
    list_: bool = typer.Option(False, "--list", help="List the reproductions and exit."),
    out: Path = typer.Option(None, help="Results folder; default results/NAME (results/NAME_quick with --quick)."),
    executor: str = typer.Option("process", help="How to run the training runs: serial, process or dask."),
    workers: int = typer.Option(None, min=1, help="Processes for the training runs; default: the core count."),
    quiet: bool = typer.Option(False, "--quiet", help="Draw no progress (it is drawn only on a terminal)."),
) -> None:
    """Re-derive a published result and check each of its claims against the paper's or the theory's number.

    Writes RESULTS_DIR/claims.csv (claim, source, expected, tolerance, measured, pass), figures/ and
    manifest.json, prints the claims table and the time taken (limit 5 minutes on 2 cores). Exit 1 if a
    claim fails, 2 on a bad name or option.

    Example: gradlab reproduce glorot2010
    """
    from gradlab import reproduce as repro
    from gradlab.reproduce import claims, driver
    from gradlab.sweep import ConfigError
    from gradlab.sweep.executors import ExecutorError
    from gradlab.sweep.store import StoreError

    width = terminal.width()
    if list_:
        rows = [(n, repro.module(n).TITLE) for n in repro.NAMES]
        _echo(terminal.table([terminal.Col("name"), terminal.Col("reproduces", wrap=True)], rows, width))
        return
    if name is None:
        _bad(f"give a reproduction NAME or --list; NAME is one of {', '.join(repro.NAMES)}")
    if name not in repro.NAMES:
        _bad(f"reproduction {name!r}: must be one of {', '.join(repro.NAMES)}")
    _check_executor(executor, workers)
    try:
        with Phases(enabled=not quiet) as bar:
            outcome = driver.reproduce(name, quick, out, executor, workers, echo=_echo, progress=bar)
    except (ConfigError, StoreError, ExecutorError) as err:
        _bad(str(err))
    except KeyboardInterrupt as err:
        _interrupted(err, out or driver.default_out(name, quick))
    _echo("\n" + terminal.wrap(repro.module(name).TITLE, width) + "\n" + claims.table(outcome.claims, width, terminal.colour()))
    passed = sum(c.passed for c in outcome.claims)
    limit = "" if quick else f" ({'OVER' if outcome.wall_s > repro.TIME_LIMIT_S else 'within'} the limit, {repro.TIME_LIMIT_S / 60:.0f} min on 2 cores)"
    _echo("\n" + terminal.wrap(
        f"{passed} of {len(outcome.claims)} claims reproduced in {_minutes(outcome.wall_s)}{limit} -> {outcome.out}/ "
        f"(claims.csv, {len({p.stem for p in outcome.figures})} figures, manifest.json)", width))  # fmt: skip
    if outcome.failed_runs:
        _echo(f"failed runs: {', '.join(outcome.failed_runs)} (see `gradlab show {outcome.out}`)", err=True)
    if not outcome.passed:
        raise typer.Exit(1)


def _minutes(seconds: float) -> str:
    m, s = divmod(seconds, 60)
    return f"{int(m)}:{s:04.1f} min" if m else f"{s:.1f} s"


def main(argv: list[str] | None = None) -> None:
    """The `gradlab` command: every failure is one line on stderr (exit 2 for usage, 1 otherwise);
    an unexpected error shows its traceback only with --debug."""
    import sys

    from gradlab._process import keep_freed_memory

    usage_error, click_error = (_click_class(name) for name in ("UsageError", "ClickException"))
    keep_freed_memory()  # every step reuses its memory instead of faulting it in again (see gradlab._process)
    try:
        code = app(args=argv, prog_name="gradlab", standalone_mode=False)
    except usage_error as err:  # an unknown option, a bad value, a missing argument
        where = f"; see {err.ctx.command_path} --help" if getattr(err, "ctx", None) is not None else ""
        typer.echo(f"error: {' '.join(err.format_message().split())}{where}", err=True)
        code = 2
    except click_error as err:
        typer.echo(f"error: {' '.join(err.format_message().split())}", err=True)
        code = err.exit_code
    except typer.Abort:
        typer.echo("interrupted", err=True)
        code = 130
    except Exception as err:  # noqa: BLE001 - a bug or an unforeseen failure: one line unless --debug
        if _DEBUG or "--debug" in (argv if argv is not None else sys.argv):
            raise
        text = " ".join(str(err).split()) or "(no message)"
        typer.echo(f"error: {type(err).__name__}: {text} (unexpected; rerun with gradlab --debug for the traceback)", err=True)
        code = 1
    sys.exit(code or 0)


def _click_class(name: str) -> type:
    """click's exception class `name`, as the click that typer uses defines it (typer >= 0.26 vendors one)."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)


if __name__ == "__main__":
    main()
