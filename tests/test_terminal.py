"""The terminal as a user meets it: every --help and every table within 80 columns (COLUMNS=80, or piped),
wider tables on a wider terminal, no number cut, boolean flags without a value metavar, and progress drawn
in phases on a terminal, silent when piped or --quiet."""

import io
import re
import sys
import types
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from gradlab import cli
from gradlab import reproduce as repro
from gradlab.bench import engine
from gradlab.bench import probes as probes_bench
from gradlab.reproduce import claims
from gradlab.sweep import load, progress, runner, summary, terminal
from gradlab.sweep.config import from_dict
from test_reproduce import fake  # noqa: F401 - the made-up reproduction fixture

ROOT = Path(__file__).resolve().parents[1]
WIDE = 160


def gradlab(capsys, *args):
    """Run `gradlab ARGS` in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as end:
        cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return end.value.code, out, err


def longest(text: str) -> int:
    return max((len(line) for line in text.splitlines()), default=0)


def assert_fits(text: str, width: int, what: str) -> None:
    over = [line for line in text.splitlines() if len(line) > width]
    assert not over, f"{what}: {len(over)} lines over {width} columns, e.g. {over[0]!r} ({len(over[0])})"


def assert_words_whole(cells, text: str, what: str) -> None:
    """Every word of every cell (a number, a run id) appears whole in the text: not cut, not wrapped apart."""
    words = set(text.split())
    for cell in cells:
        for word in str(cell).split():
            assert word in words, f"{what}: {word!r} of cell {cell!r} is not whole in the table"


# ---- --help -------------------------------------------------------------------------------------------------


def commands() -> list[str]:
    group = cli.typer.main.get_command(cli.app)
    return sorted(group.commands)


def help_text(capsys, monkeypatch, *command: str) -> str:
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = gradlab(capsys, *command, "--help")
    assert code == 0, err
    return out


def description(text: str) -> list[list[str]]:
    """The paragraphs of the prose between the usage line and the first panel, as lists of lines."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("Usage:")) + 1
    end = next(i for i, line in enumerate(lines) if line.startswith("╭"))
    paragraphs, current = [], []
    for line in lines[start:end]:
        if line.strip():
            current.append(line.strip())
        elif current:
            paragraphs.append(current)
            current = []
    return paragraphs + ([current] if current else [])


@pytest.mark.parametrize("command", [[], *([c] for c in commands())], ids=lambda c: " ".join(c) or "root")
def test_help_fits_80_columns_reads_as_filled_paragraphs_and_shows_no_bool_metavar(capsys, monkeypatch, command):
    text = help_text(capsys, monkeypatch, *command)
    assert_fits(text, 80, f"gradlab {' '.join(command)} --help")
    assert not re.search(r"<bool>|\bBOOLEAN\b|<bool\b", text), f"a flag shows a value metavar:\n{text}"
    paragraphs = description(text)
    examples = [p for p in paragraphs if p[0].startswith("Example:")]
    assert len(examples) == 1, f"gradlab {' '.join(command)}: {len(examples)} examples, want one:\n{text}"
    for para in paragraphs:  # filled: no line ends where the next line's first word would still have fitted
        for line, following in zip(para, para[1:]):
            room = 78 - len(line)  # 80 minus rich's one-column margins
            assert len(following.split()[0]) + 1 > room, f"a hard line break after {line!r} (next: {following!r})"


def test_flags_are_shown_bare_and_options_with_values_keep_theirs(capsys, monkeypatch):
    text = help_text(capsys, monkeypatch, "run")
    fresh = next(line for line in text.splitlines() if "--fresh" in line)
    workers = next(line for line in text.splitlines() if "--workers" in line)
    assert "<" not in fresh.split("--fresh", 1)[1].split("Remove")[0], fresh
    assert "<int" in workers, workers  # a value-taking option still says what it takes


def test_the_command_list_shows_one_sentence_per_command(capsys, monkeypatch):
    text = help_text(capsys, monkeypatch)
    run_line = next(line for line in text.splitlines() if "│ run " in line)
    assert run_line.rstrip(" │").endswith("into a results folder."), run_line


# ---- the terminal's width ----------------------------------------------------------------------------------


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("columns, want", [("132", 132), ("80", 80), ("40", 80)])
def test_width_is_the_terminals_and_80_at_least(monkeypatch, columns, want):
    monkeypatch.setenv("COLUMNS", columns)
    assert terminal.width(FakeTTY()) == want, f"COLUMNS={columns}: width {terminal.width(FakeTTY())}, want {want}"
    assert terminal.width(io.StringIO()) == 80, "piped output must be 80 columns whatever COLUMNS says"


def test_a_table_too_wide_goes_in_blocks_each_with_the_key_column():
    cols = [terminal.Col("run", number=True)] + [terminal.Col(f"field_{k}", number=True) for k in range(12)]
    rows = [[n, *(f"{n * 1000 + k}.25" for k in range(12))] for n in range(1, 4)]
    narrow, wide = terminal.table(cols, rows, 80, key=1), terminal.table(cols, rows, WIDE, key=1)
    assert_fits(narrow, 80, "blocks")
    assert narrow.count("\n\n") >= 1 and wide.count("\n\n") == 0, f"80 columns:\n{narrow}\n{WIDE} columns:\n{wide}"
    assert longest(wide) > 80, f"the wide table does not use the width:\n{wide}"
    for block in narrow.split("\n\n"):
        assert [line.split()[0] for line in block.splitlines()[-3:]] == ["1", "2", "3"], block
    assert_words_whole([c for row in rows for c in row], narrow, "blocks")


def test_rendered_text_has_no_control_codes():
    text = terminal.table([terminal.Col("a"), terminal.Col("b", number=True)], [["[bold]x[/]", 1.5]], 80)
    assert "\x1b" not in text and "[bold]x[/]" in text, repr(text)  # no colour, and no markup interpreted


# ---- the tables ---------------------------------------------------------------------------------------------


def committed_claims() -> dict[str, list[claims.Claim]]:
    found = {}
    for name in repro.NAMES:
        df = pd.read_csv(ROOT / "results" / name / "claims.csv", keep_default_na=False)
        found[name] = [claims.Claim(r.claim, r.source, r.expected, r.tolerance, r.measured, bool(r[5])) for r in df.itertuples(index=False)]
    return found


@pytest.mark.parametrize("name", repro.NAMES)
def test_claims_table_fits_and_keeps_every_measured_value_whole(name):
    found = committed_claims()[name]
    narrow, wide = claims.table(found, 80), claims.table(found, WIDE)
    assert_fits(narrow, 80, f"{name} claims")
    assert_fits(wide, WIDE, f"{name} claims")
    for text in (narrow, wide):
        assert_words_whole([v for c in found for v in (c.expected, c.tolerance, c.measured)], text, f"{name} claims")
        results = [line.split()[-1] for line in text.splitlines() if line.split() and line.split()[-1] in ("PASS", "FAIL")]
        assert results == ["PASS" if c.passed else "FAIL" for c in found], text
    if max(len(c.claim) + len(c.measured) for c in found) > 80:
        assert longest(wide) > 80, f"{name}: the wide table does not use the width:\n{wide}"


def test_reproduce_list_fits(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = gradlab(capsys, "reproduce", "--list")
    assert code == 0, err
    assert_fits(out, 80, "reproduce --list")
    assert_words_whole([repro.module(n).TITLE for n in repro.NAMES], out, "reproduce --list")
    assert [line.split()[0] for line in out.splitlines()[2:] if line[:1].strip()] == list(repro.NAMES), out


def test_show_fits_80_piped_and_uses_a_wider_terminal(capsys):
    tables = {"runs": pd.read_parquet(ROOT / "results" / "tour" / "runs.parquet")}
    code, out, err = gradlab(capsys, "show", ROOT / "results" / "tour")
    assert code == 0, err
    assert_fits(out, 80, "gradlab show (piped)")
    assert out.strip() == summary.show(tables, width=80).strip()
    wide = summary.show(tables, width=WIDE)
    assert_fits(wide, WIDE, "gradlab show, wide")
    assert longest(wide) > 80, "show does not use a wider terminal"


def test_dry_run_fits_and_keeps_every_value(capsys):
    code, out, err = gradlab(capsys, "run", ROOT / "experiments" / "tour.toml", "--dry-run")
    assert code == 0, err
    assert_fits(out, 80, "run --dry-run")
    experiment = load(ROOT / "experiments" / "tour.toml", [])
    first = experiment.preview(10)
    varying = [k for k in first[0] if len({repr(c[k]) for c in first}) > 1]
    assert_words_whole([str(c[k]) for c in first for k in varying], out, "run --dry-run")
    assert out.startswith("tour: 202 runs (first 10 shown)"), out
    wide = summary.grid_preview(experiment, width=WIDE * 2)
    assert "\n\n" not in wide and longest(wide) > 80, f"a wide terminal draws one block:\n{wide}"


def test_gradcheck_table_fits_and_keeps_every_error_whole():
    from gradlab.nn.losses import NAMES as LOSSES

    row = types.SimpleNamespace
    rows = [row(model=f"{kind} layers={k} bptt=truncated(3) loss=every", activation=act, loss=loss,
                max_rel_error=1.234e-9 * (k + 1), direction_rel_error=5.5e-11)
            for kind in ("rnn", "lstm", "gru") for k in range(3) for act in ("tanh", "leaky_relu") for loss in LOSSES]  # fmt: skip
    text = cli._gradcheck_table(rows, 80)
    assert_fits(text, 80, "gradcheck")
    assert_words_whole([f"{r.max_rel_error:.1e}" for r in rows] + [r.model for r in rows], text, "gradcheck")
    assert longest(cli._gradcheck_table(rows, WIDE)) > 80, "gradcheck does not use a wider terminal"


def fake_results() -> list[engine.Result]:
    return [
        engine.Result("W1", "float32", 12.34, 45.6, 0.5, 3.2, {"fused": 20.1}, {"fused": 0.61}, others=0.25),
        engine.Result("W3", "float64", 45.5, 3.2, 0.1, 12.3, {"fused": 30.1, "cell": 80.12}, {"fused": 1.5, "cell": 0.56}, others=1.0),
        engine.Result("W4", "float64", 31234.56, 38.2, 0.91, -1.2, {"fused": 30001.12}, {"fused": 1.04}, others=0.52),
    ]


def test_bench_tables_fit_and_keep_every_number_whole():
    results = fake_results()
    text = engine.results_table(results, 80)
    assert_fits(text, 80, "bench")
    assert_words_whole(["31234.56", "30001.12", "80.12", "0.56x", "+12.3%", "91%", "0.52"], text, "bench")
    probe_rows = [("W1", "float64", 12.3, 13.4, 8.9, 4.5, float("nan"), 0.3), ("W2", "float64", 45.3, 50.4, 11.2, 2.5, 1234.0, 1.3)]
    probes = probes_bench.probes_table(probe_rows, 80)
    assert_fits(probes, 80, "bench probes")
    assert_words_whole(["+11.2%", "1234", "50.40"], probes, "bench probes")


def test_bench_prints_within_80_columns(monkeypatch):
    lines: list[str] = []
    monkeypatch.setattr(engine, "measure", lambda w, d, *a, **k: next(r for r in fake_results() if r.workload == w.name))
    monkeypatch.setattr(engine, "matmul_peak", lambda d, repeats=5, n=engine.PEAK_SIZE: 100.0)
    monkeypatch.setattr(engine, "lstm_memory", lambda T, dtype: (3 * 2**20, 2**21))
    engine.run(quick=True, only=["W1", "W3", "W4"], dtypes=["float32", "float64"], echo=lines.append, width=80)
    text = "\n".join(lines)
    assert_fits(text, 80, "gradlab bench")
    assert "targets:" in text and "1.50x" in text, text


# ---- progress ------------------------------------------------------------------------------------------------


def fake_terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=80, color_system=None), out


def test_phases_are_drawn_on_a_terminal_with_the_counts_and_failures():
    console, out = fake_terminal()
    with progress.Phases(console=console) as bar:
        bar.phase("runs", total=4)
        for failed in (0, 1, 1, 1):
            bar.advance(failed=failed)
        bar.phase("consolidating")
        bar.phase("drawing figures")
        bar.phase("writing the report")
    text = out.getvalue()
    for phase in ("runs", "consolidating", "drawing figures", "writing the report"):
        assert phase in text, f"phase {phase!r} not drawn:\n{text}"
    assert "4/4" in text and "1 failed" in text, text
    assert text.index("runs") < text.index("consolidating") < text.index("drawing figures") < text.index("writing the report")


@pytest.mark.parametrize("piped, enabled", [(True, True), (False, False)])
def test_phases_are_silent_when_piped_or_disabled(piped, enabled):
    out = io.StringIO()
    console = Console(file=out) if piped else Console(file=out, force_terminal=True)
    with progress.Phases(enabled=enabled, console=console) as bar:
        bar.phase("runs", total=2)
        bar.advance()
        bar.phase("consolidating")
    assert out.getvalue() == "", f"piped={piped} enabled={enabled}: {out.getvalue()!r}"


SMALL = {"name": "small", "model": {"width": 6, "depth": 2}, "train": {"steps": 4, "log_every": 2, "probe_size": 16},
         "sweep": {"seed": [0, 1, 2]}}  # fmt: skip


def test_the_runner_draws_its_phases_into_the_callers(tmp_path):
    console, out = fake_terminal()
    with progress.Phases(console=console) as bar:
        summary_ = runner.run(from_dict(SMALL, "small"), tmp_path / "small", progress=bar)
        bar.phase("after the runner")
    text = out.getvalue()
    assert summary_.total == 3 and "3/3" in text, text
    assert text.index("runs") < text.index("consolidating") < text.index("after the runner"), text


@pytest.mark.parametrize("quiet", [False, True])
def test_gradlab_run_draws_every_phase_on_a_terminal_and_none_with_quiet(tmp_path, capsys, monkeypatch, quiet):
    console, out = fake_terminal()
    monkeypatch.setattr(progress, "_stderr_console", lambda: console)
    cfg = tmp_path / "small.toml"
    cfg.write_text('name = "small"\n[model]\nwidth = 6\ndepth = 2\n[train]\nsteps = 4\nlog_every = 2\nprobe_size = 16\n'
                   "[sweep]\nseed = [0, 1]\n")  # fmt: skip
    code, stdout, err = gradlab(capsys, "run", cfg, "--out", tmp_path / "out", *(["--quiet"] if quiet else []))
    assert code == 0, err
    text = out.getvalue()
    if quiet:
        assert text == "", f"--quiet drew progress: {text!r}"
    else:
        for phase in ("runs", "consolidating", "drawing figures", "writing the report"):
            assert phase in text, f"phase {phase!r} not drawn:\n{text}"
        from gradlab.plots import NAMES

        assert f"{len(NAMES)}/{len(NAMES)}" in text, f"the figures are not counted:\n{text}"
    assert "report: " in stdout and "\x1b" not in stdout, stdout  # the results' lines stay plain, on stdout


def test_gradlab_run_piped_draws_nothing_on_stderr(tmp_path, capsys):
    cfg = tmp_path / "small.toml"
    cfg.write_text('name = "small"\n[model]\nwidth = 6\ndepth = 2\n[train]\nsteps = 4\nlog_every = 2\nprobe_size = 16\n')
    code, stdout, err = gradlab(capsys, "run", cfg, "--out", tmp_path / "out", "--no-report")
    assert code == 0 and err == "", f"exit {code}, stderr {err!r}"


def test_a_reproduction_draws_its_runs_then_measuring_and_figures(fake):
    from gradlab.reproduce import driver

    console, out = fake_terminal()
    with progress.Phases(console=console) as bar:
        outcome = driver.reproduce("fake", out=fake / "out", executor="serial", echo=lambda s: None, progress=bar)
    text = out.getvalue()
    assert outcome.passed and "2/2" in text, text  # the fake reproduction's two training runs
    order = [text.find(p) for p in ("runs", "consolidating", "measuring", "drawing figures")]
    assert -1 not in order and order == sorted(order), f"phases missing or out of order {order}:\n{text}"


def test_square_brackets_in_a_docstring_are_text_not_markup(capsys, monkeypatch):
    @cli.app.command("brackets-demo")
    def _demo() -> None:
        """Read the [reproduce] table and the [bold]x[/bold] words as written.

        Example: gradlab brackets-demo
        """

    try:
        text = help_text(capsys, monkeypatch, "brackets-demo")
        listing = help_text(capsys, monkeypatch)
    finally:
        cli.app.registered_commands.pop()
    assert "the [reproduce] table and the [bold]x[/bold] words" in text, text
    assert "[reproduce]" in listing, listing


def test_a_coloured_table_has_the_plain_tables_layout():
    found = committed_claims()["glorot2010"]
    plain, coloured = claims.table(found, 80), claims.table(found, 80, colour=True)
    assert "\x1b[" in coloured and "\x1b[" not in plain
    stripped = "\n".join(line.rstrip() for line in re.sub(r"\x1b\[[0-9;]*m", "", coloured).splitlines())
    assert stripped == plain, "colour changed the layout"


@pytest.mark.parametrize("tty, no_color, want", [(True, "", True), (True, "1", False), (False, "", False)])
def test_colour_only_on_a_terminal_without_no_color(monkeypatch, tty, no_color, want):
    monkeypatch.setenv("NO_COLOR", no_color)
    assert terminal.colour(FakeTTY() if tty else io.StringIO()) is want


def _fake_widgets(monkeypatch, shown: list) -> None:
    """ipywidgets.Output and IPython.display.display as rich's Jupyter display uses them; what is
    displayed is appended to shown."""

    class Output:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def clear_output(self, wait=False):
            pass

    widgets, ipython, display = (types.ModuleType(n) for n in ("ipywidgets", "IPython", "IPython.display"))
    widgets.Output, display.display, ipython.display = Output, shown.append, display
    for name, module in (("ipywidgets", widgets), ("IPython", ipython), ("IPython.display", display)):
        monkeypatch.setitem(sys.modules, name, module)


def test_in_a_notebook_the_phases_are_drawn_through_ipywidgets_and_not_at_all_without_them(monkeypatch):
    console = Console(file=io.StringIO(), force_jupyter=True, width=80, color_system=None)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # not installed: rich would warn at every refresh
    assert not progress.Phases(console=console).enabled, "drawn in a notebook without ipywidgets"
    shown: list = []
    _fake_widgets(monkeypatch, shown)
    with progress.Phases(console=console) as bar:
        bar.phase("runs", total=2)
        bar.advance()
        bar.advance()
        bar.phase("consolidating")
    texts = [x.text for x in shown if hasattr(x, "text")]
    assert any("runs" in t and "2/2" in t and "consolidating" in t for t in texts), texts
