"""plot, report and run write into a folder only what is theirs to write there, and refuse before writing
anything: a user's report.html, summary.csv or figure file is never overwritten, an --out inside a store's own
folders is refused, and a refused plot leaves no marker behind."""

import shutil
import tomllib

import pytest
from test_cli import SMALL, gradlab, one_line_error, snapshot

from gradlab.sweep import config, runner
from gradlab.sweep.store import MARKER, TABLES


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "small"
    runner.run(config.from_dict(tomllib.loads(SMALL)), out, progress=False)
    return out


@pytest.fixture
def store(finished, tmp_path):
    out = tmp_path / "small"
    shutil.copytree(finished, out)
    return out


@pytest.fixture
def copied(finished, tmp_path):
    """The four tables copied by hand into a folder of the user's (no marker), beside the user's own files."""
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in TABLES:
        shutil.copy(finished / f"{name}.parquet", mine)
    return mine


@pytest.mark.parametrize("name", ["report.html", "summary.csv", "figures/clipping.png"])
def test_report_on_copied_tables_never_overwrites_the_users_file(copied, capsys, name):
    (copied / name).parent.mkdir(exist_ok=True)
    (copied / name).write_text("the user's")
    before = snapshot(copied)
    line = one_line_error(*gradlab(capsys, "report", copied, "--workers", 1)[::2])
    assert "gradlab did not write it" in line and str(copied / name) in line, line
    assert snapshot(copied) == before, "a refused report wrote or changed files"


def test_report_on_copied_tables_writes_and_then_replaces_its_own_files(copied, capsys):
    code, _, err = gradlab(capsys, "report", copied, "--workers", 1)
    assert code == 0, err
    first = (copied / "summary.csv").read_bytes()
    code, _, err = gradlab(capsys, "report", copied, "--workers", 1)
    assert code == 0, err
    assert (copied / "summary.csv").read_bytes() == first and (copied / "report.html").is_file()
    assert not (copied / MARKER).exists(), "report marked a folder it does not own"


def test_plot_never_overwrites_a_users_file_with_a_figures_name(store, capsys):
    (store / "figures").mkdir(exist_ok=True)
    user = store / "figures" / "loss_curves.png"
    user.write_text("my own plot")
    before = snapshot(store)
    line = one_line_error(*gradlab(capsys, "plot", store, "--only", "loss_curves", "--format", "png")[::2])
    assert str(user) in line and "gradlab did not write it" in line, line
    assert snapshot(store) == before
    code, _, err = gradlab(capsys, "plot", store, "--only", "clipping", "--format", "png", "--workers", 1)
    assert code == 0, f"a figure that cannot overwrite it was refused: {err}"
    assert user.read_text() == "my own plot"


@pytest.mark.parametrize("args", [["--by", "nosuch"], ["SAME"]])
def test_a_refused_plot_leaves_no_new_folder(store, tmp_path, capsys, args):
    new = tmp_path / "new"
    args = [store if a == "SAME" else a for a in args]
    line = one_line_error(*gradlab(capsys, "plot", store, *args, "--out", new)[::2])
    assert ("nosuch" in line) if "--by" in args else ("given twice" in line), line
    assert not new.exists(), f"left behind: {sorted(p.name for p in new.iterdir())}"


@pytest.mark.parametrize("command", ["run", "plot"])
@pytest.mark.parametrize("inside", ["runs", "quarantine", "figures"])
def test_out_inside_a_stores_own_folder_is_refused(store, tmp_path, capsys, command, inside):
    cfg = tmp_path / "small.toml"
    cfg.write_text(SMALL)
    args = ["run", cfg, "--no-report"] if command == "run" else ["plot", store]
    before = snapshot(store)
    line = one_line_error(*gradlab(capsys, *args, "--out", store / inside / "new")[::2])
    assert "keeps for itself" in line, line
    assert snapshot(store) == before


def test_a_dry_run_says_what_the_real_run_would_refuse(tmp_path, capsys):
    cfg, afile = tmp_path / "small.toml", tmp_path / "afile"
    cfg.write_text(SMALL)
    afile.write_text("keep")
    code, out, _ = gradlab(capsys, "run", cfg, "--out", afile, "--dry-run")
    said = " ".join(out.split())
    assert code == 0 and "would write" not in said and "refused as it stands" in said and "is a file, not a folder" in said, out
    one_line_error(*gradlab(capsys, "run", cfg, "--out", afile)[::2])
    assert afile.read_text() == "keep"


def test_draw_all_skips_a_figure_whose_file_is_a_users_not_overwriting_it(store):
    """The library's draw_all, called without the CLI's check: that figure is an error, the others draw."""
    from gradlab.plots import draw
    from gradlab.sweep import load_results

    (store / "figures").mkdir(exist_ok=True)
    user = store / "figures" / "loss_curves.png"
    user.write_text("my own plot")
    written, skipped = draw.draw_all(load_results(store), store, only=["loss_curves", "clipping"], formats=["png"])
    assert user.read_text() == "my own plot"
    assert draw.errors(skipped) == ["loss_curves"] and "gradlab did not write it" in skipped["loss_curves"]
    assert "clipping" in written or "clipping" in skipped and not skipped["clipping"].startswith("error")


@pytest.mark.parametrize("args, says", [
    (["gradcheck", "--seed", "-1"], "--seed"),
    (["bench", "--runner", "--torch"], "--runner and --torch"),
    (["bench", "--runner", "--only", "W1"], "--only: applies to the engine's workloads"),
    (["bench", "--torch", "--dtype", "float32"], "--dtype: applies to the engine's workloads"),
    (["reproduce", "glorot2010", "--executor", "serial", "--workers", "2"], "--workers 2: needs --executor"),
    (["run", "CWD"], "a folder, not a config file"),
])  # fmt: skip
def test_options_that_cannot_work_together_are_one_line_exit_2(tmp_path, capsys, args, says):
    before = snapshot(tmp_path)
    line = one_line_error(*gradlab(capsys, *[tmp_path if a == "CWD" else a for a in args])[::2])
    assert says in line, line
    assert snapshot(tmp_path) == before
