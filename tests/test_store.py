"""The result store: a run folder exists whole or not at all and is checked against what it recorded;
a folder that fails the check is moved aside, never deleted; gradlab writes and removes only its own."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from gradlab.sweep import config, runner
from gradlab.sweep.store import (
    MARKER, Store, StoreBusy, StoreError, check_writable, load, load_folders, record_files, remove_files,
)


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
    store.close()
    Store(tmp_path / "exp").open()
    assert not half.exists()


def test_rewriting_a_run_replaces_it_whole(tmp_path):
    store = Store(tmp_path / "exp").open()
    store.write_run("r", {"run_id": "r", "status": "failed", "error": "boom"}, {})
    store.write_run("r", *run_tables("r", n=5))
    assert store.finished() == {"r": "ok"}
    assert len(store.consolidate()["steps"]) == 5
    assert [p.name for p in store.runs_dir.iterdir()] == ["r"]


def test_load_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no runs.parquet; is this a gradlab results folder"):
        load(tmp_path)


# ---- every run folder is checked against its contents.json ----------------------------------------


def damage(folder, how):
    """What a crash, a full disk or a stray edit can do to a finished run folder."""
    if how == "truncated parquet":
        path = folder / "steps.parquet"
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "garbage run.json":
        (folder / "run.json").write_text("{not json")
    elif how == "missing table":
        (folder / "steps.parquet").unlink()
    elif how == "flipped byte":  # same size, different content: only the checksum sees it
        path = folder / "steps.parquet"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    elif how == "no contents.json":  # a folder of an older gradlab, or one copied in by hand
        (folder / "contents.json").unlink()
    else:
        raise AssertionError(how)


DAMAGE = ["truncated parquet", "garbage run.json", "missing table", "flipped byte", "no contents.json"]


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_run_folder_is_quarantined_with_its_reason_not_deleted(tmp_path, how):
    store = Store(tmp_path / "exp").open()
    store.write_run("good", *run_tables("good"))
    store.write_run("bad", *run_tables("bad"))
    store.close()
    damage(store.runs_dir / "bad", how)
    before = sorted(p.name for p in (store.runs_dir / "bad").iterdir())

    reopened = Store(tmp_path / "exp").open()
    assert reopened.finished() == {"good": "ok"}, f"{how}: the damaged run still counts as finished"
    assert [rid for rid, _ in reopened.quarantined] == ["bad"]
    moved = tmp_path / "exp" / "quarantine" / "bad"
    assert sorted(p.name for p in moved.iterdir()) == sorted([*before, "QUARANTINED.txt"]), "a quarantined file was lost"
    assert reopened.quarantined[0][1] in (moved / "QUARANTINED.txt").read_text()


def test_quarantine_never_overwrites_an_earlier_quarantined_folder(tmp_path):
    for _ in range(2):
        store = Store(tmp_path / "exp").open()
        store.write_run("r", *run_tables("r"))
        store.close()
        damage(store.runs_dir / "r", "garbage run.json")
        Store(tmp_path / "exp").open().close()
    assert sorted(p.name for p in (tmp_path / "exp" / "quarantine").iterdir()) == ["r", "r.1"]


def test_consolidation_leaves_out_a_run_that_turns_unreadable_and_says_so(tmp_path):
    store = Store(tmp_path / "exp").open()
    for rid in ("a", "b"):
        store.write_run(rid, *run_tables(rid))
    damage(store.runs_dir / "b", "truncated parquet")  # after open() checked it
    tables = store.consolidate(["a", "b"])
    assert list(tables["runs"]["run_id"]) == ["a"]
    assert [rid for rid, _ in store.quarantined] == ["b"]


SMALL = {
    "model": {"width": 6, "depth": 2},
    "train": {"steps": 8, "log_every": 4, "probe_size": 32},
    "sweep": {"activation": ["tanh", "relu", "sigmoid"], "seed": [0, 1]},
}


def test_a_damaged_store_resumes_to_the_tables_of_a_clean_run(tmp_path):
    """A truncated Parquet file, a garbage run.json and a missing table: the resume warns once,
    reruns those three runs, and ends with the same tables as a store that was never damaged."""
    experiment = config.from_dict(SMALL, "exp")
    runner.run(experiment, tmp_path / "clean", progress=False)
    runner.run(experiment, tmp_path / "damaged", progress=False)
    folders = sorted((tmp_path / "damaged" / "runs").iterdir())
    for folder, how in zip(folders, ["truncated parquet", "garbage run.json", "missing table"]):
        damage(folder, how)
    warnings = []
    summary = runner.run(experiment, tmp_path / "damaged", progress=False, warn=warnings.append)
    assert summary.skipped == 3 and len(summary.quarantined) == 3
    assert len(warnings) == 1 and "3 run folders" in warnings[0] and "\n" not in warnings[0]
    for folder in folders[:3]:
        assert folder.name in warnings[0]
    clean, resumed = load(tmp_path / "clean"), load(tmp_path / "damaged")
    for name in clean:
        pd.testing.assert_frame_equal(
            resumed[name].drop(columns="wall_s", errors="ignore"), clean[name].drop(columns="wall_s", errors="ignore"),
            check_exact=True, obj=name,
        )  # fmt: skip


def test_a_damaged_consolidated_table_is_one_line_that_says_how_to_rebuild_it(tmp_path):
    experiment = config.from_dict(SMALL, "exp")
    out = tmp_path / "exp"
    runner.run(experiment, out, progress=False)
    steps = out / "steps.parquet"
    steps.write_bytes(steps.read_bytes()[:100])
    with pytest.raises(StoreError) as err:
        load(out)
    assert "\n" not in str(err.value) and f"gradlab run {out / 'config.toml'} --out {out}" in str(err.value)
    shown = subprocess.run([sys.executable, "-m", "gradlab", "show", str(out)], capture_output=True, text=True)
    assert shown.returncode == 2 and len(shown.stderr.strip().splitlines()) == 1, shown.stderr
    runner.run(config.load(out / "config.toml"), out, progress=False)  # the repair the message names
    assert len(load(out)["steps"]) == 6 * 8


# ---- gradlab writes only into its own folders, and removes only its own files ------------------------


def user_files(root):
    """Files a user keeps beside and inside a results folder, which gradlab must never touch."""
    files = {
        "notes.txt": "my notes",
        "figures/my_sketch.png": "not a figure of gradlab's",
        "figures/clipping.png": "a user's file that happens to have a figure's name",
        "runs/README": "what these runs are",
        "paper/draft.tex": "\\section{}",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return files


def assert_untouched(root, files):
    for name, text in files.items():
        assert (root / name).is_file() and (root / name).read_text() == text, f"{name} was changed or removed"


def test_fresh_removes_only_what_gradlab_wrote(tmp_path):
    out = tmp_path / "exp"
    experiment = config.from_dict(SMALL, "exp")
    runner.run(experiment, out, progress=False)
    files = user_files(out)
    run_folder = next(p for p in (out / "runs").iterdir() if p.is_dir())
    (run_folder / "my_comment.txt").write_text("this run was odd")
    files[f"quarantine/{run_folder.name}/my_comment.txt"] = "this run was odd"  # moved aside with its folder
    summary = runner.run(experiment, out, progress=False, fresh=True)
    assert summary.skipped == 0, "fresh must start over"
    assert [rid for rid, _ in summary.quarantined] == [run_folder.name]
    assert_untouched(out, files)
    assert (out / MARKER).is_file() and len(load(out)["runs"]) == 6


def test_a_folder_gradlab_did_not_make_is_refused_before_anything_is_written(tmp_path):
    mydocs = tmp_path / "mydocs"
    mydocs.mkdir()
    files = user_files(mydocs)
    before = sorted(p.relative_to(mydocs) for p in mydocs.rglob("*"))
    for fresh in (False, True):
        with pytest.raises(StoreError, match="not a gradlab results folder") as err:
            runner.run(config.from_dict(SMALL, "exp"), mydocs, progress=False, fresh=fresh)
        assert "\n" not in str(err.value) and str(mydocs) in str(err.value)
    assert sorted(p.relative_to(mydocs) for p in mydocs.rglob("*")) == before, "something was written into mydocs"
    assert_untouched(mydocs, files)


def test_an_empty_folder_and_an_older_unmarked_store_are_adopted(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    check_writable(empty)
    older = tmp_path / "older"  # what gradlab wrote before the marker existed
    (older / "runs").mkdir(parents=True)
    (older / "manifest.json").write_text(json.dumps({"experiment": "exp", "gradlab_version": "0.1.0", "runs": 6}))
    (older / "config.toml").write_text("")
    (older / "runs.parquet").write_bytes(b"")
    check_writable(older)
    (older / "thesis.pdf").write_bytes(b"%PDF")
    with pytest.raises(StoreError, match="not a gradlab results folder"):
        check_writable(older)


def test_an_output_path_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "results.txt"
    path.write_text("keep me")
    with pytest.raises(StoreError, match="is a file, not a folder"):
        Store(path).open()
    assert path.read_text() == "keep me"


def test_figure_files_are_removed_only_when_gradlab_wrote_them(tmp_path):
    folder = tmp_path / "figures"
    folder.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        (folder / name).write_text(name)
    record_files(folder, [folder / "a.png", folder / "b.png"])
    remove_files(folder, ["a.png", "c.png"])
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["b.png", "c.png"]


# ---- one writer at a time -------------------------------------------------------------------------------


HOLD = """
import sys, time
from gradlab.sweep.store import Store
store = Store(sys.argv[1]).open()
print("locked", flush=True)
time.sleep(60)
"""


def test_a_second_writer_is_refused_while_the_first_holds_the_lock_and_a_killed_one_frees_it(tmp_path):
    out = tmp_path / "exp"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreBusy, match=rf"another gradlab process \(pid {holder.pid}\) is writing this folder"):
            Store(out).open()
    finally:
        holder.kill()  # SIGKILL: the OS releases the lock with the process
        holder.wait()
    Store(out).open().close()


def test_the_lock_is_reentrant_within_one_process(tmp_path):
    with Store(tmp_path / "exp").open():
        with Store(tmp_path / "exp").open() as inner:
            inner.write_run("r", *run_tables("r"))
    assert Store(tmp_path / "exp").open().finished() == {"r": "ok"}


def test_several_folders_load_as_one_set_with_their_folder_as_a_field(tmp_path):
    experiment = config.from_dict(SMALL, "exp")
    for name in ("a", "b"):
        runner.run(experiment, tmp_path / name, progress=False)  # the same runs (ids) in both folders
    one, both = load(tmp_path / "a"), load_folders([tmp_path / "a", tmp_path / "b"])
    for table in ("runs", "steps", "layers"):
        assert len(both[table]) == 2 * len(one[table]), table
        assert set(both[table]["folder"]) == {"a", "b"}, table
    assert both["runs"]["run_id"].is_unique, "the same run in two folders must stay two runs"
    assert set(both["steps"]["run_id"]) == set(both["runs"]["run_id"])
    assert load_folders([tmp_path / "a"])["runs"].equals(one["runs"])


def test_tables_of_an_earlier_gradlab_load_with_the_columns_added_since(tmp_path):
    experiment = config.from_dict(SMALL, "exp")
    out = tmp_path / "exp"
    runner.run(experiment, out, progress=False)
    new = load(out)
    dropped = {"timesteps": ["layer", "dh_last_norm"], "layers": ["da_norm"], "runs": ["norm", "residual"]}
    old = {name: df.drop(columns=dropped.get(name, [])) for name, df in new.items()}
    for name, df in old.items():
        df.to_parquet(out / f"{name}.parquet", index=False)
    upgraded = load(out)
    assert upgraded["layers"]["da_norm"].isna().all()
    pd.testing.assert_frame_equal(upgraded["steps"], new["steps"])
    assert set(upgraded["runs"]["norm"]) == {"none"} and set(upgraded["runs"]["residual"]) == {False}


MIXED = {  # every table and dtype a run writes: an MLP, RNNs (timesteps), runs ok, diverged and failed
    "train": {"steps": 300, "log_every": 25, "probe_size": 32},
    "part": [
        {"name": "mlp", "model": {"width": 6, "depth": 2}, "train": {"steps": 40}, "sweep": {"width": [6, 10**6]}},
        {"name": "rnn", "model": {"kind": "rnn", "width": 16, "init": "mean_field", "sigma_w2": 16.0},
         "task": {"name": "adding", "T": 30}, "train": {"lr": 1.0}, "sweep": {"seed": [0, 1]}},
    ],
}


def test_consolidating_the_runs_a_store_kept_gives_the_tables_read_back_from_its_folders(tmp_path, monkeypatch):
    """The runner's store consolidates the runs it wrote from the tables it kept (it decodes no run folder); a
    store opened afresh reads every run folder: the two give the same tables, value for value and dtype for dtype."""
    from gradlab.sweep import store as store_module

    experiment = config.from_dict(MIXED, "exp")
    reads = []
    read_run = store_module.read_run
    monkeypatch.setattr(store_module, "read_run", lambda folder: reads.append(folder.name) or read_run(folder))
    runner.run(experiment, tmp_path / "exp", progress=False)
    assert reads == [], f"the sweep's consolidation read {len(reads)} run folders back instead of its kept tables"
    kept = load(tmp_path / "exp")
    assert set(kept["runs"]["status"]) == {"ok", "diverged", "failed"} and len(kept["timesteps"]) > 0
    with Store(tmp_path / "exp").open() as store:
        assert not store._kept, "a store opened on existing runs keeps nothing"
        read = store.consolidate(list(kept["runs"]["run_id"]))
    for name in kept:
        pd.testing.assert_frame_equal(read[name], kept[name], check_exact=True, obj=name)


def test_a_kept_run_whose_folder_was_damaged_since_is_quarantined(tmp_path):
    store = Store(tmp_path / "exp").open()
    for rid in ("a", "b"):
        store.write_run(rid, *run_tables(rid))
    assert set(store._kept) == {"a", "b"}
    damage(store.runs_dir / "b", "flipped byte")  # same size: only the checksum sees it
    tables = store.consolidate(["a", "b"])
    assert list(tables["runs"]["run_id"]) == ["a"] and [rid for rid, _ in store.quarantined] == ["b"]
    assert not store._kept, "consolidate lets go of what it kept"


def test_a_kept_run_whose_folder_holds_another_whole_run_is_read_from_the_folder(tmp_path):
    """What is on disk wins: a run folder replaced since by another complete one (its own contents.json) is
    consolidated as the folder holds it, not as the store kept it."""
    import shutil

    store = Store(tmp_path / "exp").open()
    store.write_run("a", *run_tables("a", n=3))
    with Store(tmp_path / "other").open() as other:
        other.write_run("a", *run_tables("a", n=5))
    shutil.rmtree(store.runs_dir / "a")
    shutil.copytree(tmp_path / "other" / "runs" / "a", store.runs_dir / "a")
    tables = store.consolidate(["a"])
    assert len(tables["steps"]) == 5 and store.quarantined == [], f"{len(tables['steps'])} steps rows, want the folder's 5"


def test_a_store_keeps_tables_only_up_to_its_budget(tmp_path, monkeypatch):
    from gradlab.sweep import store as store_module

    one = 8 * run_tables("a")[1]["steps"].size
    monkeypatch.setattr(store_module, "KEEP_BYTES", 2 * one)
    store = Store(tmp_path / "exp").open()
    for rid in ("a", "b", "c"):
        store.write_run(rid, *run_tables(rid))
    assert set(store._kept) == {"a", "b"} and store._kept_bytes == 2 * one
    tables = store.consolidate(["a", "b", "c"])  # c read from its folder
    assert list(tables["steps"]["run_id"]) == ["a"] * 3 + ["b"] * 3 + ["c"] * 3
