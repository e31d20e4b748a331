"""What is not gradlab's stays untouched: links are never followed, a user's files that carry gradlab's
names are never taken for gradlab's, and a folder is adopted only when its contents say it is gradlab's."""

import json
import os

import pytest

from gradlab.sweep import config, runner
from gradlab.sweep.store import MARKER, Store, StoreError, check_writable

SMALL = {"model": {"width": 4, "depth": 2}, "train": {"steps": 3, "log_every": 1, "probe_size": 16},
         "sweep": {"seed": [0, 1]}}  # fmt: skip


def tree(root):
    """Every path under root (links not followed) with a file's text, for before/after comparisons."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            out[rel] = open(path).read() if os.path.isfile(path) and not os.path.islink(path) else "<dir or link>"
    return out


@pytest.fixture
def store(tmp_path):
    """A finished sweep's store, and a folder outside it holding files with gradlab's names."""
    out = tmp_path / "exp"
    runner.run(config.from_dict(SMALL, "exp"), out, progress=False)
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("run.json", "contents.json", "steps.parquet", "layers.parquet"):
        (outside / name).write_text(f"the user's {name}")
    return out, outside


def run_ids(out):
    return sorted(p.name for p in (out / "runs").iterdir() if not p.name.startswith("."))


@pytest.mark.parametrize("fresh", [False, True])
@pytest.mark.parametrize("name", ["linked", ".tmp-linked-123", ".tmp-old-linked-123"])
def test_a_link_in_runs_is_never_followed(store, name, fresh):
    out, outside = store
    before = tree(outside)
    (out / "runs" / name).symlink_to(outside, target_is_directory=True)
    runner.run(config.from_dict(SMALL, "exp"), out, progress=False, fresh=fresh)
    assert tree(outside) == before, f"files outside the store changed through runs/{name}"


def test_a_link_named_as_a_run_is_moved_aside_unfollowed_when_that_run_is_written(store):
    out, outside = store
    rid = run_ids(out)[0]
    before = tree(outside)
    store_ = Store(out).open()
    os.rename(out / "runs" / rid, out / "mine")
    (out / "runs" / rid).symlink_to(outside, target_is_directory=True)
    store_.write_run(rid, {"run_id": rid, "status": "ok"}, {})
    store_.close()
    assert tree(outside) == before
    moved = out / "quarantine" / rid / rid
    assert moved.is_symlink() and moved.resolve() == outside.resolve(), "the link was not kept in quarantine/"
    assert not (outside / "QUARANTINED.txt").exists() and (out / "quarantine" / rid / "QUARANTINED.txt").is_file()


@pytest.mark.parametrize("name", ["runs", "quarantine", "figures", "export"])
def test_a_store_whose_own_folder_is_a_link_is_refused(store, name):
    out, outside = store
    if (out / name).exists():
        os.rename(out / name, out.parent / f"moved-{name}")
    (out / name).symlink_to(outside, target_is_directory=True)
    before = tree(outside)
    with pytest.raises(StoreError, match=f"{name}: a link or a file where gradlab keeps a folder"):
        runner.run(config.from_dict(SMALL, "exp"), out, progress=False, fresh=True)
    assert tree(outside) == before


def test_a_file_named_runs_is_one_line_not_a_traceback(tmp_path):
    out = tmp_path / "exp"
    out.mkdir()
    (out / MARKER).write_text("{}")
    (out / "runs").write_text("my list of runs")
    with pytest.raises(StoreError, match="runs: a link or a file") as err:
        Store(out).open()
    assert "\n" not in str(err.value) and (out / "runs").read_text() == "my list of runs"


@pytest.mark.parametrize("name", ["mine", ".hidden", ".tmp-backup"])
def test_fresh_never_deletes_a_users_files_that_carry_gradlabs_names(store, name):
    """runs/mine/run.json is the user's: no contents.json of gradlab's lists it."""
    out, _ = store
    folder = out / "runs" / name
    folder.mkdir()
    (folder / "run.json").write_text("my run")
    (folder / "steps.parquet").write_text("my table")
    runner.run(config.from_dict(SMALL, "exp"), out, progress=False, fresh=True)
    kept = folder if folder.exists() else out / "quarantine" / name
    assert (kept / "run.json").read_text() == "my run" and (kept / "steps.parquet").read_text() == "my table"


def test_a_run_folder_with_a_users_file_goes_to_quarantine_whole_on_fresh(store):
    out, _ = store
    rid = run_ids(out)[0]
    (out / "runs" / rid / "notes.txt").write_text("odd run")
    files = sorted(p.name for p in (out / "runs" / rid).iterdir())
    summary = runner.run(config.from_dict(SMALL, "exp"), out, progress=False, fresh=True)
    assert [r for r, _ in summary.quarantined] == [rid]
    assert sorted(p.name for p in (out / "quarantine" / rid).iterdir()) == sorted([*files, "QUARANTINED.txt"])


def test_contents_json_cannot_name_files_outside_the_run_folder(store):
    out, outside = store
    rid = run_ids(out)[0]
    contents = out / "runs" / rid / "contents.json"
    listed = json.loads(contents.read_text())
    listed["files"]["../../../outside/run.json"] = {"bytes": 1, "rows": 0, "sha256": "0"}
    contents.write_text(json.dumps(listed))
    before = tree(outside)
    summary = runner.run(config.from_dict(SMALL, "exp"), out, progress=False, fresh=True)
    assert tree(outside) == before and [r for r, _ in summary.quarantined] == [rid]


@pytest.mark.parametrize("files", [["run.json"], {"run.json": 3}, {"run.json": None}, "run.json"])
def test_a_contents_json_of_the_wrong_shape_quarantines_its_folder(store, files):
    """Valid JSON, not gradlab's: the folder is moved aside and the run reruns, no AttributeError."""
    out, _ = store
    rid = run_ids(out)[0]
    (out / "runs" / rid / "contents.json").write_text(json.dumps({"run_id": rid, "files": files}))
    summary = runner.run(config.from_dict(SMALL, "exp"), out, progress=False)
    assert [r for r, _ in summary.quarantined] == [rid] and not summary.failed
    assert run_ids(out) == sorted(run_ids(out)) and rid in run_ids(out)


@pytest.mark.parametrize("user", [
    {"config.toml": "[my]\nsettings = 1\n"},
    {"manifest.json": '{"name": "my package"}'},
    {"manifest.json": "[1, 2]", "summary.csv": "a,b\n1,2\n"},
    {".git": None},
    {".env": "SECRET=1"},
])  # fmt: skip
def test_a_users_folder_is_not_taken_for_a_store_by_its_file_names(tmp_path, user):
    """Only a marker, or an older store's manifest.json with gradlab's keys, or nothing, lets gradlab in."""
    mine = tmp_path / "mine"
    mine.mkdir()
    for name, text in user.items():
        (mine / name).mkdir() if text is None else (mine / name).write_text(text)
    before = tree(mine)
    with pytest.raises(StoreError, match="not a gradlab results folder"):
        check_writable(mine)
    for fresh in (False, True):
        with pytest.raises(StoreError):
            runner.run(config.from_dict(SMALL, "exp"), mine, progress=False, fresh=fresh)
    assert tree(mine) == before


@pytest.mark.parametrize("inside", ["runs", "quarantine", "figures", "export", "runs/deeper"])
def test_an_out_folder_inside_a_stores_own_folders_is_refused(store, inside):
    out, _ = store
    with pytest.raises(StoreError, match="a folder the results folder .* keeps for itself"):
        check_writable(out / inside / "new")
    check_writable(out.parent / "beside")  # beside a store is fine
