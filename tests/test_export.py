"""gradlab export: every exported table is the store's table with its runs' config columns, row for row, in
both formats; a rerun replaces only the files gradlab wrote; bad input is one line, exit 2, nothing written."""

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from test_cli import gradlab, one_line_error, snapshot

from gradlab.schema import CONFIG_COLUMNS
from gradlab.sweep import config, runner
from gradlab.sweep.export import CONFIG_PREFIX, config_columns, export
from gradlab.sweep.store import FILES_LEDGER, TABLES, load

SMALL = {  # an MLP part and an RNN part, so that every table has rows; a few steps each
    "train": {"steps": 4, "log_every": 2, "probe_size": 16, "batch": 8},
    "part": [
        {"name": "mlp", "model": {"kind": "mlp", "width": 5, "depth": 2}, "sweep": {"seed": [0, 1], "activation": ["tanh", "relu"]}},
        {"name": "rnn", "model": {"kind": "rnn", "width": 4}, "task": {"name": "adding", "T": 5},
         "sweep": {"clip_mode": ["none", "norm"]}, "case": [{"truncate": 2}]},
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A finished small sweep's results folder (never written by the tests: they copy it)."""
    root = tmp_path_factory.mktemp("export") / "small"
    runner.run(config.from_dict(SMALL, "small"), root, progress=False)
    return root


@pytest.fixture
def results(store, tmp_path):
    """A fresh copy of the store in tmp_path/small."""
    return shutil.copytree(store, tmp_path / "small")


def canonical(value) -> str:
    """A cell as text that both formats agree on: NA empty, a number as the float64 it is (exactly), else str."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        return repr(float(value))
    return str(value)


def assert_column(got: pd.Series, expected: pd.Series, where: str) -> None:
    left, right = [canonical(v) for v in got], [canonical(v) for v in expected]
    bad = [i for i, (a, b) in enumerate(zip(left, right)) if a != b]
    assert len(left) == len(right) and not bad, f"{where}: row {bad[:1]}: exported {left[bad[0]] if bad else len(left)} != store {right[bad[0]] if bad else len(right)}"


def read(path):
    if path.suffix == ".csv":
        return pd.read_csv(path)  # pandas reads floats back exactly (its default, round trip)
    return pd.read_parquet(path)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_each_table_is_the_store_table_with_its_runs_config_row_for_row(results, fmt):
    written = export(results, fmt)
    tables = load(results)
    runs = tables["runs"]
    by_run = runs.set_index("run_id")
    config = [c for c in runs.columns if c in CONFIG_COLUMNS]
    assert len(config) >= 30 and config == config_columns(runs), f"config columns {config}"
    assert [w.table for w in written] == list(TABLES) and all(w.path.parent == results / "export" for w in written)
    for w in written:
        table, got = tables[w.table], read(w.path)
        assert w.path.name == f"{w.table}.{fmt}" and w.rows == len(table) > 0, f"{w.table}: {w.rows} rows, store {len(table)}"
        if w.table == "runs":
            expected_columns = list(table.columns)
        else:
            expected_columns = [*table.columns, *(CONFIG_PREFIX + c if c in table.columns else c for c in config if c != "run_id")]
        assert list(got.columns) == expected_columns, f"{w.table}.{fmt}: columns {list(got.columns)}"
        for c in table.columns:
            assert_column(got[c], table[c], f"{w.table}.{fmt} column {c}")
        if w.table != "runs":
            for c in config:
                name = CONFIG_PREFIX + c if c in table.columns else c
                assert_column(got[name], by_run[c].reindex(table["run_id"]), f"{w.table}.{fmt} config column {name}")
        if fmt == "parquet":
            dtypes = {c: runs[c].dtype for c in config} | {c: table[c].dtype for c in table.columns}
            wrong = {c: (str(got[c].dtype), str(t)) for c, t in dtypes.items() if c in got and got[c].dtype != t}
            assert not wrong, f"{w.table}.parquet: dtypes differ from the store's: {wrong}"


def test_steps_keeps_its_own_lr_and_the_configs_as_config_lr(results):
    export(results, "parquet", ["steps"])
    steps = pd.read_parquet(results / "export" / "steps.parquet")
    assert "lr" in steps and "config_lr" in steps and "lr_x" not in steps and "lr_y" not in steps


def test_a_rerun_replaces_only_its_own_files(results, tmp_path):
    out = results / "export"
    export(results, "csv", ["steps", "runs"])
    (out / "notes.txt").write_text("mine")
    (out / "runs.csv").write_text("stale")  # gradlab's own file, edited: the rerun replaces it
    export(results, "csv", ["runs"])
    assert (out / "notes.txt").read_text() == "mine"
    assert read(out / "runs.csv").shape == load(results)["runs"].shape, "runs.csv was not replaced"
    assert json.loads((out / FILES_LEDGER).read_text()) == ["runs.csv", "steps.csv"]
    before = snapshot(out)
    (out / "layers.csv").write_text("a user's own layers.csv")
    with pytest.raises(ValueError, match="layers.csv: exists and gradlab did not write it"):
        export(results, "csv", ["runs", "layers"])
    assert snapshot(out) == {**before, "layers.csv": b"a user's own layers.csv"}, "a refused export wrote something"


def test_export_into_another_folder_through_the_cli(results, tmp_path, capsys):
    target = tmp_path / "sheets"
    code, out, err = gradlab(capsys, "export", results, "--format", "parquet", "--tables", "layers,steps", "--out", target)
    assert code == 0, err
    assert sorted(p.name for p in target.iterdir()) == [FILES_LEDGER, "layers.parquet", "steps.parquet"]
    assert out.startswith(f"exported 2 tables to {target}/: steps.parquet ({len(load(results)['steps']):,} rows"), out
    assert not (results / "export").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "xlsx"], "--format 'xlsx': must be one of csv, parquet"),
        (["--tables", "layers,stepz"], "--tables 'stepz': must be among runs, steps, layers, timesteps"),
        (["--tables", ","], "--tables: give at least one of runs, steps, layers, timesteps"),
        (["--out", "{results}"], "{results}: a results folder's own folder; export into a folder of its own"),
        (["--out", "{results}/figures"], "{results}/figures: a results folder's own folder"),
        (["--out", "{results}/runs/x"], "{results}/runs/x: a results folder's own folder"),
        (["--out", "{tmp}/other_store"], "{tmp}/other_store: a results folder's own folder"),
        (["--out", "{tmp}/a_file"], "{tmp}/a_file: is a file, not a folder"),
        (["--out", "{tmp}/theirs"], "{tmp}/theirs/runs.csv: exists and gradlab did not write it"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(results, tmp_path, capsys, args, message):
    (tmp_path / "a_file").write_text("x")
    shutil.copytree(results, tmp_path / "other_store")
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "runs.csv").write_text("their own")
    args = [a.format(results=results, tmp=tmp_path) for a in args]
    before = snapshot(tmp_path)
    line = one_line_error(*gradlab(capsys, "export", results, *args)[::2])
    assert line.startswith("error: " + message.format(results=results, tmp=tmp_path)), line
    assert snapshot(tmp_path) == before, f"{args}: files were written"


@pytest.mark.parametrize("what", ["missing", "not_results", "damaged"])
def test_a_folder_that_is_not_results_is_refused(results, tmp_path, capsys, what):
    folder = {"missing": tmp_path / "nothing", "not_results": tmp_path / "docs", "damaged": results}[what]
    if what == "not_results":
        folder.mkdir()
        (folder / "thesis.tex").write_text("x")
    if what == "damaged":
        (results / "layers.parquet").write_bytes(b"not parquet")
    before = snapshot(tmp_path)
    line = one_line_error(*gradlab(capsys, "export", folder)[::2])
    expected = "layers.parquet: unreadable" if what == "damaged" else "no runs.parquet; is this a gradlab results folder"
    assert expected in line, line
    assert snapshot(tmp_path) == before


def test_fresh_removes_the_exported_files_and_keeps_the_users(results):
    """`gradlab run --fresh` makes the export stale, so it removes the files export wrote, and only them."""
    export(results, "csv", ["runs", "steps"])
    (results / "export" / "notes.txt").write_text("mine")
    runner.run(config.from_dict(SMALL, "small"), results, fresh=True, progress=False)
    left = sorted(p.name for p in (results / "export").iterdir())
    assert left == [FILES_LEDGER, "notes.txt"], f"after --fresh, export/ holds {left}"
    assert json.loads((results / "export" / FILES_LEDGER).read_text()) == []
