"""The file task: x and y read from a .npz, an _x.npy/_y.npy pair or a .csv, for MLPs and sequence models;
every bad input one line naming the file and the problem through the CLI (exit 2, nothing written); the
run id follows the file's bytes, not its path; the held-out rows fixed and the batches drawn from the others."""

import math
import re
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from test_cli import gradlab, one_line_error, snapshot
from test_ensemble_runs import check_against_alone

from gradlab import tasks, train
from gradlab.sweep import config, groups

N, D, T = 60, 3, 5


def vectors(seed=0, n=N, d=D):
    """x (n, d) standard normal (every row distinct) and y (n,) labels 0/1/2 from x's first coordinate."""
    x = np.random.default_rng(seed).normal(size=(n, d))
    return x, np.digitize(x[:, 0], [-0.4, 0.4])


def run_config(path, loss="cross_entropy", kind="mlp", **train_fields):
    data = {"model": {"kind": kind, "width": 5, "depth": 2}, "task": {"name": "file", "path": str(path), "loss": loss},
            "train": {"steps": 12, "batch": 8, "log_every": 4, "probe_size": 20, **train_fields}}  # fmt: skip
    return config.from_dict(data).grid()[0]


def write_csv(path, x, y, header=True):
    lines = [",".join(f"x{j}" for j in range(x.shape[1])) + ",label"] if header else []
    lines += [",".join(repr(float(v)) for v in row) + f",{label!r}" for row, label in zip(x, y.tolist())]
    path.write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------------------ formats


@pytest.mark.parametrize("fmt", ["npz", "npy", "csv", "csv without header"])
def test_each_format_gives_the_files_arrays_to_an_mlp(tmp_path, fmt):
    x, y = vectors()
    if fmt == "npz":
        path = tmp_path / "d.npz"
        np.savez(path, x=x, y=y, notes=np.arange(3))  # other arrays are ignored
    elif fmt == "npy":
        path = tmp_path / "d_x.npy"
        np.save(path, x)
        np.save(tmp_path / "d_y.npy", y)
    else:
        path = tmp_path / "d.csv"
        write_csv(path, x, y.astype(float), header=fmt == "csv")
    c = run_config(path)
    task = train.build_task(c)
    assert (task.kind, task.input_size, task.output_size, c["task.input_size"], c["task.classes"]) == ("vector", D, 3, D, 3)
    np.testing.assert_array_equal(task.x, x, err_msg=f"{fmt}: x as read")  # the CSV's repr() round-trips exactly
    np.testing.assert_array_equal(task.y, y, err_msg=f"{fmt}: y as read")
    record, tables = train.run(c, config.run_id(c))
    assert record["status"] == "ok" and len(tables["steps"]) == 12 and math.isfinite(record["final_loss"])
    assert record["data_path"] == str(path) and record["data_sha256"] == tasks.file.read(path).sha256


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("loss, y_of", [("cross_entropy", lambda x: (x[:, -1, 0] > 0).astype(np.int64)),
                                        ("mse", lambda x: x.sum(axis=1)[:, :2])])  # fmt: skip
def test_a_sequence_file_trains_a_recurrent_model_with_the_files_T_and_D(tmp_path, kind, loss, y_of):
    x = np.random.default_rng(1).normal(size=(N, T, D))
    np.savez(tmp_path / "seq.npz", x=x, y=y_of(x))
    c = run_config(tmp_path / "seq.npz", loss=loss, kind=kind)
    assert (c["task.T"], c["task.input_size"]) == (T, D)
    task = train.build_task(c)
    assert (task.kind, task.T, task.output_size) == ("sequence", T, 2)
    record, tables = train.run(c, config.run_id(c))
    assert record["status"] == "ok" and record["loss_on"] == "last" and len(tables["steps"]) == 12
    assert sorted(tables["timesteps"]["t"].unique()) == list(range(T))


def test_the_baseline_is_the_best_constant_prediction_on_the_held_out_rows(tmp_path):
    x, y = vectors(n=200)
    np.savez(tmp_path / "c.npz", x=x, y=y)
    np.savez(tmp_path / "r.npz", x=x, y=x[:, :2] * [1.0, 3.0])
    task = train.build_task(run_config(tmp_path / "c.npz", probe_size=80))
    p = np.bincount(task.y[task.held_rows], minlength=3) / 80
    assert task.baseline_loss == pytest.approx(-(p * np.log(p)).sum(), rel=1e-12), "cross_entropy: the held-out labels' entropy"
    task = train.build_task(run_config(tmp_path / "r.npz", loss="mse", probe_size=80))
    assert task.baseline_loss == pytest.approx(0.5 * task.y[task.held_rows].var(axis=0).sum(), rel=1e-12), "mse: 1/2 sum Var[y]"


# ------------------------------------------------------------------------------- held-out rows and batches


def test_the_held_out_rows_are_fixed_and_the_batches_are_drawn_from_the_other_rows(tmp_path):
    x, y = vectors()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    c = run_config(tmp_path / "d.npz", probe_size=20, seed=3)
    task = train.build_task(c)
    held = np.random.default_rng([0x5EED, 0]).permutation(N)[:20]  # the module docstring's rule
    x_held, y_held = task.held_out(20)
    np.testing.assert_array_equal(x_held, x[held])
    np.testing.assert_array_equal(y_held, y[held])
    assert np.array_equal(train.build_task(run_config(tmp_path / "d.npz", probe_size=20, seed=4)).held_out(20)[0], x_held)
    xb, yb = task.sample(np.random.default_rng([c["train.seed"], 1]), 2000)
    rows = [int(np.flatnonzero((x == row).all(axis=1))[0]) for row in xb]  # every batch row is a row of the file ...
    np.testing.assert_array_equal(yb, y[rows], err_msg="each batch row's y must be its file row's y")
    assert not set(rows) & set(held.tolist()), "a batch drew a held-out row"
    assert set(rows) == set(range(N)) - set(held.tolist()), "2000 draws must reach every one of the 40 training rows"


@pytest.mark.parametrize("kind", ["mlp", "lstm"])
def test_file_runs_share_an_ensemble_and_each_member_equals_its_run_alone(tmp_path, kind):
    x, y = vectors() if kind == "mlp" else (np.random.default_rng(2).normal(size=(N, T, D)), vectors()[1])
    np.savez(tmp_path / "d.npz", x=x, y=y)
    base = {"model": {"kind": kind, "width": 5, "depth": 2},
            "task": {"name": "file", "path": str(tmp_path / "d.npz"), "loss": "cross_entropy"},
            "train": {"steps": 10, "batch": 8, "log_every": 3, "probe_size": 20}}  # fmt: skip
    configs = config.from_dict({**base, "sweep": {"seed": [0, 1]}, "case": [{"probe_size": 30, "seed": 2}]}).grid()
    assert [len(g) for g in groups.group(configs)] == [3], "runs of one file differing in seed and probe_size: one ensemble"
    check_against_alone(configs)


# ---------------------------------------------------------------------------------------------- run ids


def test_the_run_id_follows_the_files_bytes_not_its_path(tmp_path):
    x, y = vectors()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    first = run_config(tmp_path / "d.npz")
    (tmp_path / "moved" / "deeper").mkdir(parents=True)
    shutil.copy(tmp_path / "d.npz", tmp_path / "moved" / "deeper" / "renamed.npz")
    moved = run_config(tmp_path / "moved" / "deeper" / "renamed.npz")
    assert moved["task.path"] != first["task.path"] and config.run_id(moved) == config.run_id(first), "the same bytes moved keep the id"
    x[7, 1] += 1e-9
    np.savez(tmp_path / "d.npz", x=x, y=y)
    changed = run_config(tmp_path / "d.npz")
    assert changed["task.sha256"] != first["task.sha256"] and config.run_id(changed) != config.run_id(first), "changed bytes: a new id"
    np.save(tmp_path / "p_x.npy", x)
    np.save(tmp_path / "p_y.npy", y)
    pair = run_config(tmp_path / "p_x.npy")
    np.save(tmp_path / "p_y.npy", np.where(y == 2, 1, y))  # only the y file changes
    assert config.run_id(run_config(tmp_path / "p_x.npy")) != config.run_id(pair), "an .npy pair's y file is hashed too"


def test_a_file_changed_after_the_config_was_checked_is_refused_at_the_run(tmp_path):
    x, y = vectors()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    c = run_config(tmp_path / "d.npz")
    np.savez(tmp_path / "d.npz", x=x + 1, y=y)
    train._task.cache_clear()
    with pytest.raises(tasks.DataError, match=r"the file changed after the config was checked"):
        train.build_task(c)


def test_a_relative_path_starts_at_the_config_files_folder_and_from_set_at_the_current_folder(tmp_path, monkeypatch):
    x, y = vectors()
    (tmp_path / "exp" / "data").mkdir(parents=True)
    np.savez(tmp_path / "exp" / "data" / "d.npz", x=x, y=y)
    (tmp_path / "exp" / "c.toml").write_text('[task]\nname = "file"\npath = "data/d.npz"\nloss = "cross_entropy"\n'
                                             "[train]\nprobe_size = 20\n")  # fmt: skip
    monkeypatch.chdir(tmp_path)
    c = config.load("exp/c.toml").grid()[0]
    assert c["task.path"] == str(tmp_path / "exp" / "data" / "d.npz")
    c = config.load("exp/c.toml", ["task.path=exp/data/d.npz"]).grid()[0]
    assert c["task.path"] == str(tmp_path / "exp" / "data" / "d.npz"), "--set's relative path starts at the current folder"
    e = config.load("exp/c.toml")
    e2 = config.from_dict(tomllib.loads(config.to_toml(e)))  # config.toml as written to a store
    assert [config.run_id(r) for r in e2.grid()] == [config.run_id(r) for r in e.grid()]


def test_other_tasks_ignore_the_file_fields_and_keep_their_ids():
    plain = config.from_dict({}).grid()[0]
    ignored = config.from_dict({"task": {"path": "nowhere.npz", "loss": "bce"}}).grid()[0]
    assert (ignored["task.path"], ignored["task.loss"]) == ("", "mse") and config.run_id(ignored) == config.run_id(plain)


# ------------------------------------------------------------------------------- bad input through the CLI


def _npz(**arrays):
    return lambda d: np.savez(d / "d.npz", **arrays)


X, Y = vectors()
BAD = [  # (id, write the data into folder d, [task] and [model] lines, expected part of the one line)
    ("missing file", lambda d: None, 'path = "nope.npz"', r"task.path = '.*nope\.npz': no such file$"),
    ("no path", lambda d: None, "", r"task.path = '': task.name = 'file' needs the data file"),
    ("unsupported format", lambda d: (d / "d.txt").write_text("1,2\n"), 'path = "d.txt"', r"unsupported format; .*\.npz, _x\.npy, \.csv"),
    ("unreadable npz", lambda d: (d / "d.npz").write_bytes(b"not a zip"), "", r"d\.npz': not a readable \.npz file"),
    ("npz without y", _npz(x=X), "", r"has no array y \(it has x\); a \.npz needs arrays x and y"),
    ("npy without its y", lambda d: np.save(d / "d_x.npy", X), 'path = "d_x.npy"', r"its y file '.*d_y\.npy' is missing"),
    ("unreadable npy", lambda d: ((d / "d_x.npy").write_bytes(b"\x93NUMPY junk"), np.save(d / "d_y.npy", Y)),
     'path = "d_x.npy"', r"its x file is not a readable \.npy array"),
    ("csv word", lambda d: (d / "d.csv").write_text("a,b,y\n1,2,0\n3,abc,1\n"), 'path = "d.csv"',
     r"d\.csv': line 3, column 2: 'abc' is not a number"),
    ("csv ragged", lambda d: (d / "d.csv").write_text("1,2,0\n3,1\n"), 'path = "d.csv"', r"line 2 has 2 columns, the first row 3"),
    ("text x", _npz(x=np.array([["a", "b"]] * 30), y=np.zeros(30, int)), "", r"x must hold numbers, got dtype <U1"),
    ("3-D x for an mlp", _npz(x=np.zeros((N, T, D)), y=Y), "", r"x has shape \(60, 5, 3\); an mlp needs x of shape \(N, D\)"),
    ("2-D x for an lstm", _npz(x=X, y=Y), 'kind = "lstm"', r"x has shape \(60, 3\); an rnn, lstm or gru needs x of shape \(N, T, D\)"),
    ("lengths", _npz(x=X, y=Y[:-1]), "", r"x has 60 rows but y has 59; they must be equal"),
    ("scalar y", _npz(x=X, y=np.float64(1.0)), 'loss = "mse"', r"x has 60 rows but y has none \(it is one number\)"),
    ("nan in x", _npz(x=np.where(np.eye(N, D, 2) > 0, np.nan, X), y=Y), "", r"x holds NaN or inf \(first at index \(0, 2\)\)"),
    ("inf in y", _npz(x=X, y=np.where(np.arange(N) == 4, np.inf, 1.0)), 'loss = "mse"', r"y holds NaN or inf \(first at index \(4,\)\)"),
    ("fractional labels", _npz(x=X, y=np.where(np.arange(N) == 3, 0.5, 1.0)), "", r"y\[3\] = 0\.5 is not an integer"),
    ("negative labels", _npz(x=X, y=Y - 1), "", r"y holds labels -1\.\.1; with task\.classes = 2 they must be in 0\.\.1"),
    ("labels beyond classes", _npz(x=X, y=Y * 2), "classes = 3", r"y holds labels 0\.\.4; with task\.classes = 3 they must be in 0\.\.2"),
    ("one class", _npz(x=X, y=np.zeros(N, int)), "", r"y holds only label 0; cross_entropy needs at least 2 classes"),
    ("2-D labels", _npz(x=X, y=np.zeros((N, 2), int)), "", r"y has shape \(60, 2\); cross_entropy needs integer class labels of shape \(N,\)"),
    ("3-D targets", _npz(x=X, y=np.zeros((N, 2, 2))), 'loss = "mse"', r"y has shape \(60, 2, 2\); mse needs targets of shape \(N,\) or \(N, O\)"),
    ("bce targets", _npz(x=X, y=Y.astype(float)), 'loss = "bce"', r"y holds 0\.\.2; bce needs targets in \[0, 1\]"),
    ("input_size", _npz(x=X, y=Y), "input_size = 5", r"task\.input_size = 5, but the file's x has 3 \(x\.shape\[-1\], its features\)"),
    ("T", _npz(x=np.zeros((N, T, D)), y=Y), 'kind = "rnn"\nT = 7', r"task\.T = 7, but the file's x has 5 \(x\.shape\[1\], its time steps\)"),
    ("probe_size", _npz(x=X, y=Y), "probe_size = 60", r"train\.probe_size = 60 held-out rows leave none of the file's 60 for training"),
    ("sha256 written", _npz(x=X, y=Y), 'sha256 = "abc"', r"task\.sha256: task\.sha256 is set from task\.path's file, not written by hand"),
    ("unknown loss", _npz(x=X, y=Y), 'loss = "hinge"', r"task\.loss = 'hinge': must be one of mse, sum_squares, cross_entropy, bce"),
]  # fmt: skip
SECTION = {"kind": "model", "probe_size": "train"}  # where a BAD line goes; the rest in [task]


def _config_text(lines: str) -> str:
    tables = {"model": ["width = 4", "depth = 2"], "task": ['name = "file"'], "train": ["steps = 3", "probe_size = 20"]}
    for line in filter(None, lines.split("\n")):
        key = line.split("=")[0].strip()
        tables[SECTION.get(key, "task")] = [l for l in tables[SECTION.get(key, "task")] if not l.startswith(key + " ")] + [line]
    if not any(l.startswith("path") for l in tables["task"]):
        tables["task"].append('path = "d.npz"')
    if not any(l.startswith("loss") for l in tables["task"]):
        tables["task"].append('loss = "cross_entropy"')
    return "\n".join(f"[{name}]\n" + "\n".join(body) for name, body in tables.items()) + "\n"


@pytest.mark.parametrize("what, write, lines, expected", BAD, ids=[b[0] for b in BAD])
def test_each_bad_input_is_one_line_naming_the_file_exit_2_and_nothing_written(tmp_path, monkeypatch, capsys, what, write, lines, expected):
    write(tmp_path)
    text = _config_text(lines)
    if what == "no path":
        text = text.replace('path = "d.npz"\n', "")
    (tmp_path / "bad.toml").write_text(text)
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    line = one_line_error(*gradlab(capsys, "run", "bad.toml", "--out", "out", "--quiet")[::2])
    assert re.search(expected, line), f"{what}: {line!r} does not match {expected!r}"
    assert snapshot(tmp_path) == before and not (tmp_path / "out").exists(), f"{what}: something was written"


def test_gradlab_run_writes_the_path_and_hash_to_the_runs_table_and_a_rerun_skips_every_run(tmp_path, monkeypatch, capsys):
    x, y = vectors()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    (tmp_path / "good.toml").write_text(_config_text("") + '[sweep]\nseed = [0, 1]\n')
    monkeypatch.chdir(tmp_path)
    code, out, err = gradlab(capsys, "run", "good.toml", "--out", "out", "--quiet", "--no-report")
    assert code in (0, None) and "2 runs (0 already finished)" in out, (code, out, err)
    runs = pd.read_parquet(tmp_path / "out" / "runs.parquet")
    assert set(runs["data_path"]) == {str(tmp_path / "d.npz")} and set(runs["data_sha256"]) == {tasks.file.read("d.npz").sha256}
    assert set(runs["task_loss"]) == {"cross_entropy"} and list(runs["status"]) == ["ok", "ok"]
    code, out, _ = gradlab(capsys, "run", "good.toml", "--out", "out", "--quiet", "--no-report")
    assert code in (0, None) and "2 runs (2 already finished)" in out, out


def test_the_example_config_runs_its_committed_data():
    """experiments/file_example.toml reads experiments/data/file_example.npz (< 200 KB) as its script writes it."""
    root = Path(__file__).resolve().parent.parent / "experiments"
    data = root / "data" / "file_example.npz"
    assert data.stat().st_size < 200_000
    e = config.load(root / "file_example.toml", ["train.steps=5"])
    runs = e.grid()
    assert len(runs) == 4 and {r["task.path"] for r in runs} == {str(data)} and runs[0]["task.classes"] == 3
    x, y = tasks.file.read(data).x, tasks.file.read(data).y
    assert x.shape == (900, 2) and sorted(np.bincount(y)) == [300, 300, 300]
    record, tables = train.run(runs[0], config.run_id(runs[0]))
    assert record["status"] == "ok" and list(tables["steps"]["step"]) == list(range(5))
    assert tables["steps"]["lr"].is_monotonic_decreasing and tables["steps"]["lr"].iloc[0] == 0.01, "the example's cosine schedule"
