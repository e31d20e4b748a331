"""The command line as a user meets it: every failure one line on stderr with exit 2 (usage) or 1, no
traceback unless --debug, nothing written by a refused command, nothing removed that gradlab did not
write, and the grid refused or counted before it is expanded."""

import json
import math
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from test_config import MORE_BROKEN

from gradlab import cli
from gradlab.sweep import load_results

SMALL = """
name = "small"
[model]
width = 6
depth = 2
[train]
steps = 6
log_every = 3
probe_size = 32
[sweep]
seed = [0, 1, 2]
"""


def gradlab(capsys, *args):
    """Run `gradlab ARGS` in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as end:
        cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return end.value.code, out, err


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root and its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def one_line_error(code, err, expected_code=2):
    assert code == expected_code, f"exit {code}, stderr {err!r}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"not one error line: {err!r}"
    return lines[0]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A user's working directory: experiments, notes, earlier results of another tool."""
    root = tmp_path / "project"
    for name, text in {
        "experiments/small.toml": SMALL,
        "notes.md": "# my notes",
        "results/other_tool/table.csv": "a,b\n1,2\n",
        "mydocs/thesis.tex": "\\documentclass{article}",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    monkeypatch.chdir(root)
    return root


# ---- nothing gradlab did not write is ever removed --------------------------------------------------


@pytest.mark.parametrize("name", ["..", ".", "../..", "results/.."])
def test_an_unsafe_experiment_name_is_refused_and_nothing_is_touched(project, capsys, name):
    cfg = project / "experiments" / "bad.toml"
    cfg.write_text(f"name = {json.dumps(name)}\n" + SMALL.replace('name = "small"', ""))
    before = snapshot(project)
    line = one_line_error(*gradlab(capsys, "run", cfg, "--fresh", "--no-report")[::2])
    assert f"name = {name!r}: must be a folder name" in line
    assert snapshot(project) == before


@pytest.mark.parametrize("out", ["mydocs", ".", "results", "results/other_tool", ".."])
def test_fresh_on_a_folder_gradlab_did_not_make_is_refused(project, capsys, out):
    before = snapshot(project.parent)
    line = one_line_error(*gradlab(capsys, "run", "experiments/small.toml", "--out", out, "--fresh")[::2])
    assert f"{out}: not a gradlab results folder" in line
    assert snapshot(project.parent) == before


def test_fresh_on_its_own_folder_keeps_the_users_files(project, capsys):
    code, _, err = gradlab(capsys, "run", "experiments/small.toml", "--no-report", "--quiet")
    assert code == 0, err
    (project / "results" / "small" / "my_analysis.ipynb").write_text("{}")
    code, out, err = gradlab(capsys, "run", "experiments/small.toml", "--fresh", "--quiet")
    assert code == 0 and "(0 already finished)" in out, err
    assert (project / "results" / "small" / "my_analysis.ipynb").read_text() == "{}"
    assert (project / "notes.md").is_file() and (project / "mydocs" / "thesis.tex").is_file()


# ---- a bad output folder, executor or option: one line, exit 2, nothing written --------------------------


def test_an_output_path_that_is_a_file_is_one_line(project, capsys):
    line = one_line_error(*gradlab(capsys, "run", "experiments/small.toml", "--out", "notes.md")[::2])
    assert line == "error: notes.md: is a file, not a folder; give --out a folder"
    line = one_line_error(*gradlab(capsys, "run", "experiments/small.toml", "--out", "notes.md/sub")[::2])
    assert "notes.md/sub: cannot create it" in line
    assert (project / "notes.md").read_text() == "# my notes"


def test_an_output_folder_that_cannot_be_written_is_one_line(project, capsys):
    line = one_line_error(*gradlab(capsys, "run", "experiments/small.toml", "--out", "/proc/gradlab-results")[::2])
    assert "/proc/gradlab-results: cannot" in line


@pytest.mark.alone
def test_an_unreachable_dask_scheduler_is_one_line_within_seconds_and_writes_nothing(project, capsys):
    pytest.importorskip("distributed")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    code, _, err = gradlab(capsys, "run", "experiments/small.toml", "--executor", "dask", "--address", f"tcp://127.0.0.1:{port}")
    line = one_line_error(code, err)
    assert f"--address tcp://127.0.0.1:{port}: cannot reach a Dask scheduler there" in line
    assert time.monotonic() - start < 20, "the connection attempt did not time out within a few seconds"
    assert not (project / "results" / "small").exists(), "the store was written before the cluster was reached"


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--wrokers", "2"], "No such option: --wrokers"),
        (["--workers", "two"], "Invalid value for '--workers'"),  # the rest of the text is typer's, by version
        (["--workers", "0"], "Invalid value for '--workers'"),
        (["--executor", "threads"], "--executor 'threads': must be one of serial, process, dask"),
        (["--workers", "2", "--executor", "serial"], "--workers 2: needs --executor process or dask"),
        (["--address", "tcp://x:1"], "--address 'tcp://x:1': needs --executor dask"),
        (["--set", "depth"], "--set 'depth': must be key=value"),
        (["--max-runs", "2"], "small: the grid has 3 runs, more than --max-runs 2; pass --max-runs 3 to run them all"),
    ],
)
def test_bad_options_are_one_line_and_write_nothing(project, capsys, args, expected):
    before = snapshot(project)
    line = one_line_error(*gradlab(capsys, "run", "experiments/small.toml", *args)[::2])
    assert expected in line
    assert snapshot(project) == before


def test_workers_are_capped_at_the_runs_to_do_and_imply_the_process_executor(project, capsys):
    code, _, err = gradlab(capsys, "run", "experiments/small.toml", "--workers", "1000", "--quiet", "--no-report")
    assert code == 0, err
    manifest = json.loads((project / "results" / "small" / "manifest.json").read_text())
    assert (manifest["executor"], manifest["workers"]) == ("process", 3)


def test_a_huge_grid_is_counted_not_expanded(project, capsys, monkeypatch):
    from gradlab.sweep.config import Experiment

    cfg = project / "experiments" / "huge.toml"
    axes = {"seed": list(range(100)), "lr": [0.1 * (k + 1) for k in range(9)], "width": list(range(1, 11)), "batch": list(range(1, 11)), "depth": list(range(1, 11))}
    cfg.write_text("[sweep]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in axes.items()) + "\n")
    monkeypatch.setattr(Experiment, "grid", lambda self: pytest.fail("the 900,000-run grid was expanded"))
    code, out, err = gradlab(capsys, "run", cfg, "--dry-run")
    assert code == 0, err
    assert out.startswith("huge: 900,000 runs at most") and "refused as it stands" in out and "--max-runs 900000" in out
    line = one_line_error(*gradlab(capsys, "run", cfg)[::2])
    assert line == "error: huge: the grid has 900,000 runs, more than --max-runs 100,000; pass --max-runs 900000 to run them all"
    assert not (project / "results" / "huge").exists()


# ---- invalid configs through the command line ----------------------------------------------------------


def toml(value) -> str:
    """A TOML value for a parsed-config value (inline tables and arrays, so any nesting fits on one line)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float, str)):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml(v)}" for k, v in value.items()) + "}"


def same(a, b) -> bool:
    """Equal, with nan equal to nan."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


AS_FILES = []
for data, message in MORE_BROKEN:
    if set(data) == {"description"}:
        continue  # a file holding only a description has nothing to run: it is refused as such
    text = "".join(f"{json.dumps(k)} = {toml(v)}\n" for k, v in data.items())
    try:
        faithful = same(tomllib.loads(text), data)
    except tomllib.TOMLDecodeError:
        faithful = False
    if faithful:
        AS_FILES.append((text, message))


def test_the_command_line_corpus_is_large():
    assert len(AS_FILES) >= 25, f"only {len(AS_FILES)} invalid configs could be written as TOML"


@pytest.mark.parametrize("text, message", AS_FILES, ids=[m.split(":")[0][:40] for _, m in AS_FILES])
def test_an_invalid_config_is_one_line_exit_2_and_nothing_on_disk(tmp_path, capsys, text, message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    before = snapshot(tmp_path)
    line = one_line_error(*gradlab(capsys, "run", cfg, "--out", tmp_path / "out")[::2])
    assert line == f"error: {message}"
    assert snapshot(tmp_path) == before and not (tmp_path / "out").exists()


# ---- reading results, and errors nobody foresaw -----------------------------------------------------------


@pytest.mark.parametrize("command", ["show", "plot", "report"])
def test_a_folder_without_results_is_one_line(project, capsys, command):
    line = one_line_error(*gradlab(capsys, command, "mydocs")[::2])
    assert "mydocs: no runs.parquet; is this a gradlab results folder" in line


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(project, capsys, monkeypatch):
    code, _, err = gradlab(capsys, "run", "experiments/small.toml", "--quiet", "--no-report")
    assert code == 0, err

    def broken(tables):
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr("gradlab.sweep.summary.show", broken)
    line = one_line_error(*gradlab(capsys, "show", "results/small")[::2], expected_code=1)
    assert line == "error: RuntimeError: a bug over two lines (unexpected; rerun with gradlab --debug for the traceback)"
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["--debug", "show", "results/small"])


def test_the_installed_command_prints_no_traceback(tmp_path):
    """The same through `python -m gradlab`, as a user runs it."""
    done = subprocess.run([sys.executable, "-m", "gradlab", "run", str(tmp_path / "missing.toml")], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.strip() == f"error: {tmp_path / 'missing.toml'}: no such config file"
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_results_written_by_the_command_load(project, capsys):
    code, _, err = gradlab(capsys, "run", "experiments/small.toml", "--quiet", "--no-report")
    assert code == 0, err
    assert len(load_results(project / "results" / "small")["runs"]) == 3


def test_plot_draws_several_folders_together_into_out(project, capsys):
    code, _, err = gradlab(capsys, "run", "experiments/small.toml", "--quiet", "--no-report", "--out", "results/one")
    assert code == 0, err
    code, _, err = gradlab(capsys, "run", "experiments/small.toml", "--quiet", "--no-report", "--out", "results/two")
    assert code == 0, err
    line = one_line_error(*gradlab(capsys, "plot", "results/one", "results/two")[::2])
    assert "give --out" in line
    code, out, err = gradlab(capsys, "plot", "results/one", "results/two", "--out", "results/both", "--format", "png")
    assert code == 0, err
    assert "drawn in results/both/figures/" in out and (project / "results" / "both" / ".gradlab-store").is_file()
    assert any((project / "results" / "both" / "figures").glob("*.png"))


def test_plot_by_a_field_splits_it_first(project, capsys):
    """--by seed: the seeds are rows of panels (a taller figure) instead of one median line with a band."""
    code, _, err = gradlab(capsys, "run", "experiments/small.toml", "--quiet", "--no-report")
    assert code == 0, err
    figure = project / "results" / "small" / "figures" / "gradient_by_layer.png"
    heights = {}
    for by in ([], ["--by", "seed"]):
        code, _, err = gradlab(capsys, "plot", "results/small", "--only", "gradient_by_layer", "--format", "png", *by)
        assert code == 0, err
        heights[bool(by)] = plt.imread(figure).shape[0]
    assert heights[True] > 2 * heights[False], heights
    line = one_line_error(*gradlab(capsys, "plot", "results/small", "--by", "colour")[::2])
    assert line.startswith("error: --by 'colour': not a field of these runs; one of ") and "seed" in line
