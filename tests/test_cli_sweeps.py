"""Sweeps from the command line: `--set key=a,b,c` is an axis, with exactly the run ids (and order) of the
same axis written in the config file, counted before it is expanded, and every bad axis one line with exit 2."""

import json
import tomllib
from pathlib import Path

import pytest
from test_cli import gradlab, one_line_error, snapshot

from gradlab.sweep import config
from gradlab.sweep.store import load

REPO = Path(__file__).resolve().parents[1]
MLP_DEPTH = REPO / "experiments" / "mlp_depth.toml"

SMALL = """
name = "small"
[model]
width = 6
depth = 2
[train]
steps = 4
log_every = 2
probe_size = 16
[sweep]
depth = [1, 2]
"""

PARTS = {
    "train": {"steps": 3},
    "part": [
        {"name": "mlp", "model": {"kind": "mlp"}, "train": {"seed": 7}, "sweep": {"depth": [2, 4]}},
        {"name": "rnn", "model": {"kind": "rnn", "width": 8}, "task": {"name": "temporal_order", "T": 20},
         "sweep": {"seed": [5, 6, 7]}, "case": [{"T": 30}, {"T": 40, "seed": 9}]},
    ],
}  # fmt: skip


def ids(experiment: config.Experiment) -> list[str]:
    return [config.run_id(c) for c in experiment.grid()]


def with_axis(data: dict, key: str, values: list) -> dict:
    """data with the axis key = values written into its [sweep] (or every [part.sweep]), in the place of an
    axis of the same field, the part's own value of it removed, and every case written once per value: what
    --set key=a,b,c means."""
    data = json.loads(json.dumps(data))
    dotted = config.canonical_key(key, "")
    section, name = dotted.split(".")
    for grid in data.get("part") or [data]:
        sweep = grid.setdefault("sweep", {})
        same = [k for k in sweep if config.canonical_key(k, "") == dotted]
        sweep[same[0] if same else key] = values
        if "part" in data:
            grid.get(section, {}).pop(name, None)
        cases = [{k: v for k, v in c.items() if config.canonical_key(k, "") != dotted} for c in grid.get("case", [])]
        if cases:
            grid["case"] = [{**c, key: v} for c in cases for v in values]
    return data


MLP_DATA = config.read(MLP_DEPTH)


@pytest.mark.parametrize(
    "data, sets, key, values",
    [
        (MLP_DATA, ["seed=0,1,2"], "seed", [0, 1, 2]),  # a new axis: added last
        (MLP_DATA, ["train.seed=[0, 1, 2]"], "seed", [0, 1, 2]),  # the bracket spelling, a dotted key
        (MLP_DATA, ["depth=8,2"], "depth", [8, 2]),  # the file's own axis, replaced in its place
        (MLP_DATA, ["model.activation=\"relu\",'tanh'"], "activation", ["relu", "tanh"]),  # quoted strings
        (MLP_DATA, ["lr=0.1, 1e-3"], "lr", [0.1, 1e-3]),  # spaces after commas, a number read as TOML reads it
        (PARTS, ["seed=0,1"], "seed", [0, 1]),  # every part; the rnn part's seed axis and its cases' seeds
        (PARTS, ["T=30,10"], "T", [30, 10]),  # a part's own change (task.T = 20) and its cases' T
    ],
)
def test_a_set_axis_gives_the_ids_and_order_of_the_same_axis_in_the_file(data, sets, key, values):
    from_set = config.from_dict(data, "x", sets)
    from_file = config.from_dict(with_axis(data, key, values), "x")
    assert ids(from_set) == ids(from_file), f"--set {sets}: the ids differ from the file's axis {key} = {values}"
    assert from_set.count() == from_file.count(), f"--set {sets}: count {from_set.count()} != the file's {from_file.count()}"
    again = config.from_dict(tomllib.loads(config.to_toml(from_set)), "x")  # results/<name>/config.toml
    assert ids(again) == ids(from_set), "config.toml written for a --set axis does not give its runs again"


def test_seed_axis_triples_mlp_depth_and_dry_run_shows_the_grown_grid(capsys):
    plain = config.load(MLP_DEPTH)
    grown = config.load(MLP_DEPTH, ["seed=0,1,2"])
    assert (plain.count(), len(plain.grid())) == (20, 20), "experiments/mlp_depth.toml is no longer a 20-run grid"
    assert (grown.count(), len(grown.grid())) == (60, 60), f"count {grown.count()}, grid {len(grown.grid())}; expected 60"
    assert {c["train.seed"] for c in grown.grid()} == {0, 1, 2}
    code, out, err = gradlab(capsys, "run", MLP_DEPTH, "--set", "seed=0,1,2", "--dry-run", "--out", "/nonexistent/x")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "mlp_depth: 60 runs (first 10 shown)", lines[0]
    header = lines[1].split()  # the preview's table (its layout is the terminal's): a column per swept field
    assert [h for h in header if h in ("depth", "activation", "seed")] == ["depth", "activation", "seed"], lines[1]
    rows = [line.split() for line in lines[2:] if line.split() and line.split()[0].isdigit()][:3]
    assert [row[header.index("seed")] for row in rows] == ["0", "1", "2"], "the seed axis is not the last (fastest) axis"


def test_a_set_axis_is_counted_without_expanding_the_grid(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(config.Experiment, "grid", lambda self: pytest.fail("the grid was expanded"))
    seeds = ",".join(str(s) for s in range(50_000))
    code, out, err = gradlab(capsys, "run", MLP_DEPTH, "--set", f"seed={seeds}", "--dry-run")
    assert code == 0, err
    assert out.startswith("mlp_depth: 1,000,000 runs at most"), out.splitlines()[0]
    line = one_line_error(*gradlab(capsys, "run", MLP_DEPTH, "--set", f"seed={seeds}", "--out", tmp_path / "r")[::2])
    assert "the grid has 1,000,000 runs, more than --max-runs 100,000" in line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "sets, grid_seeds",
    [
        (["seed=5"], {5}),  # one value: an override, as before axes
        (["seed=[5]"], {5}),  # a one-item list is one value too
        (["seed=0,1", "seed=2"], {2}),  # the last --set of a key wins
        (["seed=4", "seed=0,1"], {0, 1}),
    ],
)
def test_one_value_is_an_override_and_the_last_set_wins(sets, grid_seeds):
    e = config.from_dict(PARTS, "x", sets)
    got = {c["train.seed"] for c in e.grid()}
    assert got == grid_seeds, f"--set {sets}: seeds {got}, expected {grid_seeds}"
    assert e.count() == len(e.grid()), f"--set {sets}: count {e.count()} != {len(e.grid())} runs"


def test_cases_run_once_per_value_of_a_set_axis():
    e = config.from_dict(PARTS, "x", ["seed=0,1"])
    rnn = [c for c in e.grid() if c["experiment.part"] == "rnn"]
    assert sorted((c["task.T"], c["train.seed"]) for c in rnn) == [(20, 0), (20, 1), (30, 0), (30, 1), (40, 0), (40, 1)]
    mlp = [c for c in e.grid() if c["experiment.part"] == "mlp"]
    assert sorted((c["model.depth"], c["train.seed"]) for c in mlp) == [(2, 0), (2, 1), (4, 0), (4, 1)], "the part's seed 7 was not replaced"


@pytest.mark.parametrize(
    "value, message",
    [
        ("sede=0,1", "--set sede: unknown key; did you mean seed?"),
        ("seed=0,-1", "train.seed = -1: must be >= 0"),
        ("lr=0.1,nan", "train.lr = nan: must be a finite number > 0"),
        ("activation=tanh,rleu", "model.activation = 'rleu': must be one of "),
        ("depth=2,2.5", "model.depth = 2.5: must be an integer"),
        ("seed=0,1,0", "--set 'seed=0,1,0': 0 is repeated; an axis lists each value once"),
        ("lr=1,1.0", "--set 'lr=1,1.0': 1.0 is repeated; an axis lists each value once"),
        ("activation=relu,'relu'", "--set \"activation=relu,'relu'\": 'relu' is repeated; an axis lists each value once"),
        ("seed=0,,2", "--set 'seed=0,,2': item 2 of 3 is empty; write key=a,b,c"),
        ("seed=0,1,", "--set 'seed=0,1,': item 3 of 3 is empty; write key=a,b,c"),
        ("seed=[]", "--set 'seed=[]': item 1 of 1 is empty; write key=a,b,c"),
        ("part=a,b", "--set part: experiment.part is set from the [[part]] names, not written by hand"),
        ("kind=mlp,rnn", "model.kind = 'rnn' cannot run task.name = 'teacher_student': that task needs an mlp"),
    ],
)
def test_each_bad_set_axis_is_one_line_exit_2_and_writes_nothing(tmp_path, monkeypatch, capsys, value, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "small.toml").write_text(SMALL)
    before = snapshot(tmp_path)
    line = one_line_error(*gradlab(capsys, "run", "small.toml", "--set", value, "--quiet", "--no-report")[::2])
    assert line.startswith("error: " + message), f"--set {value}: {line!r}, expected {message!r}"
    assert snapshot(tmp_path) == before, f"--set {value}: files were written"


def test_a_file_axis_with_a_repeated_value_is_refused_like_a_set_axis():
    with pytest.raises(config.ConfigError) as err:
        config.from_dict({"sweep": {"depth": [2, 4, 2]}})
    assert str(err.value) == "sweep.depth = [2, 4, 2]: 2 is repeated; an axis lists each value once"
    with pytest.raises(config.ConfigError) as err:
        config.from_dict({"part": [{"name": "a", "sweep": {"lr": [1, 1.0]}}]})
    assert str(err.value) == "part[0].sweep.lr = [1, 1.0]: 1.0 is repeated; an axis lists each value once"


def test_a_sweep_run_from_set_axes_stores_the_file_axes_run_ids(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "small.toml").write_text(SMALL)
    (tmp_path / "axes.toml").write_text(SMALL + 'activation = ["relu", "tanh"]\nseed = [3, 4]\n')
    code, out, err = gradlab(capsys, "run", "small.toml", "--set", "activation=relu,tanh", "--set", "seed=3,4",
                             "--quiet", "--no-report")  # fmt: skip
    assert code == 0, err
    stored = load(tmp_path / "results" / "small")["runs"]
    expected = ids(config.load(tmp_path / "axes.toml"))
    assert len(expected) == 8
    assert sorted(stored["run_id"]) == sorted(expected), "the stored run ids are not those of the axes in the file"
    assert ids(config.load(tmp_path / "results" / "small" / "config.toml")) == expected, "config.toml does not give the runs again"
