"""The result store: a run folder exists whole or not at all; consolidation reads only whole runs."""

import json

import pandas as pd
import pytest

from gradlab.sweep.store import Store, load


def run_tables(run_id, n=3):
    steps = pd.DataFrame({"run_id": run_id, "step": range(n), "loss": [1.0 / (k + 1) for k in range(n)]})
    return {"run_id": run_id, "status": "ok"}, {"steps": steps}


def test_written_runs_are_found_and_consolidated_in_the_order_asked(tmp_path):
    store = Store(tmp_path / "exp").open()
    for rid in ("b", "a", "c"):
        store.write_run(rid, *run_tables(rid))
    assert store.finished() == {"a": "ok", "b": "ok", "c": "ok"}
    tables = store.consolidate(["c", "a"])
    assert list(tables["runs"]["run_id"]) == ["c", "a"]
    assert list(tables["steps"]["run_id"]) == ["c"] * 3 + ["a"] * 3
    loaded = load(tmp_path / "exp")
    pd.testing.assert_frame_equal(loaded["steps"], tables["steps"])
    assert set(loaded) == {"runs", "steps", "layers", "timesteps"}


def test_a_half_written_run_is_never_read_and_is_swept_on_open(tmp_path):
    store = Store(tmp_path / "exp").open()
    store.write_run("done", *run_tables("done"))
    half = store.runs_dir / ".tmp-crashed-123"  # what a kill -9 during write_run leaves
    half.mkdir()
    (half / "run.json").write_text(json.dumps({"run_id": "crashed", "status": "ok"}))
    assert store.finished() == {"done": "ok"}
    Store(tmp_path / "exp").open()
    assert not half.exists()


def test_rewriting_a_run_replaces_it_whole(tmp_path):
    store = Store(tmp_path / "exp").open()
    store.write_run("r", {"run_id": "r", "status": "failed", "error": "boom"}, {})
    store.write_run("r", *run_tables("r", n=5))
    assert store.finished() == {"r": "ok"}
    assert len(store.consolidate()["steps"]) == 5
    assert [p.name for p in store.runs_dir.iterdir()] == ["r"]


def test_fresh_empties_the_folder(tmp_path):
    store = Store(tmp_path / "exp").open()
    store.write_run("r", *run_tables("r"))
    assert Store(tmp_path / "exp").open(fresh=True).finished() == {}


def test_load_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no runs.parquet; is this a gradlab results folder"):
        load(tmp_path)
