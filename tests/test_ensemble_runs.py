"""Runs trained as one ensemble: each member's tables equal the same run trained alone, bit for bit (column
by column), through divergence, resume and every executor; and which configs may share an ensemble."""

import math

import pandas as pd
import pytest

from test_runner import VOLATILE, assert_same_tables  # the runner's own column-by-column comparison

from gradlab import ensemble, probes, train
from gradlab.schema import ENSEMBLE_FIELDS, defaults
from gradlab.sweep import config, groups, runner
from gradlab.sweep.store import load

BASE = {"model": {"width": 6, "depth": 3, "activation": "relu"}, "task": {"input_size": 3},
        "train": {"steps": 24, "batch": 8, "log_every": 5, "probe_size": 32}}  # fmt: skip


def grid(sweep, base=BASE, cases=()):
    return config.from_dict({**base, "sweep": sweep, "case": list(cases)}, "ens").grid()


def assert_member_equals_alone(result, alone, what=""):
    """Every runs-table field and every column of every table equal, bit for bit (NaN equal to NaN)."""
    (record, tables), (record0, tables0) = result, alone
    for key, value in record0.items():
        if key in VOLATILE:
            continue
        same = value == record[key] or (isinstance(value, float) and math.isnan(value) and math.isnan(record[key]))
        assert same, f"{what} runs.{key}: ensemble {record[key]!r}, alone {value!r}"
    for name, frame in tables0.items():
        assert list(tables[name].columns) == list(frame.columns), f"{what} {name} columns"
        for col in frame.columns:
            pd.testing.assert_series_equal(tables[name][col], frame[col], check_exact=True, obj=f"{what} {name}.{col}")


def check_against_alone(configs):
    ids = [config.run_id(c) for c in configs]
    results = ensemble.run_ensemble(configs, ids)
    for c, rid, result in zip(configs, ids, results):
        assert_member_equals_alone(result, train.run(c, rid), what=f"{rid} ({c['train.optimizer']}, seed {c['train.seed']})")
    return results


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_members_that_differ_in_every_ensemble_field_equal_their_runs_alone(optimizer):
    base = {**BASE, "train": {**BASE["train"], "optimizer": optimizer}}
    configs = grid({"seed": [0, 1]}, base, cases=[
        {"lr": 0.05, "momentum": 0.5, "seed": 2}, {"init": "he_normal", "seed": 3}, {"init": "mean_field", "sigma_w2": 2.5, "sigma_b2": 0.1},
        {"clip_mode": "norm", "clip": 0.01, "seed": 4}, {"clip_mode": "value", "clip": 0.001}, {"log_every": 3, "probe_size": 16},
        {"steps": 7, "seed": 5},
    ])  # fmt: skip
    assert len({groups.key(c) for c in configs}) == 1 and len(configs) == 9
    results = check_against_alone(configs)
    assert [len(t["steps"]) for _, t in results] == [c["train.steps"] for c in configs]


@pytest.mark.parametrize("model", [{"norm": "batch"}, {"norm": "layer", "residual": True, "residual_scale": 0.5},
                                   {"activation": "leaky_relu", "slope": 0.2}, {"activation": "tanh", "output_activation": "sigmoid"}])
def test_normed_residual_and_other_activations_equal_their_runs_alone(model):
    base = {**BASE, "model": {**BASE["model"], "width": 3, **model}}
    check_against_alone(grid({"seed": [0, 1, 2]}, base))


def test_leaky_relus_of_different_slopes_and_relus_share_an_ensemble_and_equal_their_runs_alone():
    base = {**BASE, "model": {**BASE["model"], "activation": "leaky_relu", "init": "he_normal", "output_activation": "leaky_relu"}}
    configs = grid({"slope": [0.0, 0.01, 0.3, 1.0], "seed": [0, 1]}, base, cases=[
        {"activation": "relu", "seed": 2}, {"activation": "relu", "output_activation": "relu", "seed": 3}])  # fmt: skip
    assert [len(g) for g in groups.group(configs)] == [10]
    check_against_alone(configs)
    with pytest.raises(ValueError, match="must share their activation"):
        ensemble.stack([train.build_model(c, train.build_task(c)) for c in grid({"activation": ["tanh", "relu"]})])


def test_a_recurrent_ensemble_of_leaky_relus_and_relus_equals_its_runs_alone():
    """The RNN's per-member slopes scale its (R, T, N, H) arrays along the member axis: with R = T = 4 a slope
    broadcast along time instead would run, and give other numbers."""
    base = {"model": {"kind": "rnn", "width": 5, "activation": "leaky_relu"}, "task": {"name": "adding", "T": 4},
            "train": {"steps": 12, "batch": 3, "log_every": 4, "probe_size": 8, "jacobian": True}}  # fmt: skip
    configs = grid({"slope": [0.05, 0.5], "seed": [0]}, base, cases=[{"activation": "relu", "seed": 1}, {"activation": "relu", "seed": 2}])
    assert [len(g) for g in groups.group(configs)] == [4]
    check_against_alone(configs)


def test_members_sharing_a_probe_set_judge_dead_units_in_one_forward(monkeypatch):
    """Members with one probe set get their dead-unit masks from one ensemble forward of it per judged step
    (equal to their own forwards: check_against_alone); members with different probe sets each forward their own."""
    from gradlab.probes import dead as dead_module

    calls = []
    forward = dead_module.dead_masks
    monkeypatch.setattr(dead_module, "dead_masks", lambda model, x: calls.append(x.shape) or forward(model, x))
    monkeypatch.setattr(ensemble.probes, "dead_masks", dead_module.dead_masks)
    configs = grid({"seed": [0, 1, 2]})
    judged = sum(probes.should_log(s, 5, 23) for s in range(24))  # BASE: 24 steps, log_every 5: 0, 5, ..., 20, 23
    ids = [config.run_id(c) for c in configs]
    ensemble.run_ensemble(configs, ids)
    assert calls == [(3, 32, 3)] * judged, f"one (R, N, D) forward per judged step expected, got {calls}"
    members = [ensemble._member(c, rid, train.build_model(c, train.build_task(c)), train.build_task(c)) for c, rid in zip(configs, ids)]
    assert ensemble.shared_probe(members).shape == (3, 32, 3)
    different = grid({"seed": [0]}, cases=[{"probe_size": 16, "seed": 1}])
    others = [ensemble._member(c, config.run_id(c), train.build_model(c, train.build_task(c)), train.build_task(c)) for c in different]
    assert ensemble.shared_probe(others) is None, "probe sets of 32 and 16 examples are not one"


def test_a_classification_task_equals_its_runs_alone():
    base = {**BASE, "task": {"name": "gaussian_blobs", "input_size": 4, "classes": 3}}
    check_against_alone(grid({"seed": [0, 1]}, base))


@pytest.mark.parametrize("kind, model", [("rnn", {"activation": "relu"}), ("lstm", {"forget_bias": 1.0}), ("gru", {"layers": 2})])
def test_recurrent_members_equal_their_runs_alone(kind, model):
    """Clipped by norm at two thresholds and not at all, with the step Jacobians measured; one member stops
    early (the ensemble then computes the others alone)."""
    base = {"model": {"kind": kind, "width": 5, **model}, "task": {"name": "adding", "T": 8},
            "train": {"steps": 15, "batch": 4, "log_every": 4, "probe_size": 16, "clip_mode": "norm", "jacobian": True}}
    configs = grid({"seed": [0, 1], "clip": [0.1, 10.0]}, base, cases=[{"clip_mode": "none", "seed": 2}, {"steps": 6, "seed": 3}])
    assert [len(g) for g in groups.group(configs)] == [6]
    check_against_alone(configs)


@pytest.mark.parametrize("mode, thresholds", [("norm", [0.01, 0.1, 10.0]), ("value", [0.001, 0.01, 1.0])])
def test_members_of_one_clip_mode_are_clipped_together_and_equal_their_runs_alone(mode, thresholds, monkeypatch):
    """Members sharing their clip mode (a threshold each) are clipped by one clip.clip(ensemble=True) per step,
    members of different modes one by one; either way each equals its run alone, bit for bit."""
    calls = []
    clip_fn = ensemble.clip.clip
    monkeypatch.setattr(ensemble.clip, "clip", lambda *a, **k: calls.append(k.get("ensemble", False)) or clip_fn(*a, **k))
    base = {**BASE, "train": {**BASE["train"], "clip_mode": mode, "lr": 0.5}}
    check_against_alone(grid({"clip": thresholds}, base))  # (the runs alone call clip.clip too, ensemble=False)
    steps = base["train"]["steps"]
    assert calls.count(True) == steps, f"{mode}: {calls.count(True)} clip calls for all members in {steps} steps, want one a step"
    calls.clear()
    check_against_alone(grid({"clip": thresholds[:2]}, base, cases=[{"clip_mode": "none", "seed": 1}]))
    assert calls.count(True) == 0, f"{mode} and none: {calls.count(True)} clip calls for all members, want each member's own"


def test_an_exploding_rnn_member_diverges_while_the_clipped_ones_go_on():
    """A ReLU RNN with gamma ||W_hh|| ~ 4 at lr 1: unclipped it overflows at once, clipped it trains."""
    base = {"model": {"kind": "rnn", "width": 8, "activation": "relu", "recurrent_init": "mean_field", "sigma_w2": 16.0},
            "task": {"name": "adding", "T": 20},
            "train": {"steps": 60, "batch": 4, "log_every": 10, "probe_size": 16, "lr": 1.0, "clip_mode": "norm"}}  # fmt: skip
    configs = grid({"seed": [0, 1]}, base, cases=[{"clip_mode": "none", "seed": 0}])
    results = check_against_alone(configs)
    assert [r["status"] for r, _ in results] == ["ok", "ok", "diverged"]


def test_a_member_that_diverges_stops_at_its_step_while_the_others_go_on():
    base = {**BASE, "model": {**BASE["model"], "activation": "identity"}, "train": {**BASE["train"], "steps": 40}}
    configs = grid({"lr": [0.001, 1.0, 0.01]}, base)  # a linear net at lr 1 overflows within a few steps
    results = check_against_alone(configs)
    status = [r["status"] for r, _ in results]
    assert status == ["ok", "diverged", "ok"], f"statuses {status}"
    diverged = results[1][0]["diverged_step"]
    assert 0 <= diverged < 39 and results[1][1]["steps"]["step"].max() == diverged
    assert len(results[0][1]["steps"]) == len(results[2][1]["steps"]) == 40


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_members_that_stopped_are_dropped_from_the_ensemble_and_the_others_still_equal_their_runs_alone(optimizer, monkeypatch):
    """From the step after a member's last (its own steps, or its divergence) the ensemble computes only the
    members still training: at every step its batch has one member per run whose rows reach that step.
    Their optimizer state (velocity, Adam's moments and step count) moves with them: each equals its run alone."""
    computed = []
    draw = ensemble.Batches.draw
    monkeypatch.setattr(ensemble.Batches, "draw", lambda self, rngs: computed.append(len(self.tasks)) or draw(self, rngs))
    base = {**BASE, "model": {**BASE["model"], "activation": "identity"}, "train": {**BASE["train"], "optimizer": optimizer}}
    overflow = 1e100 if optimizer == "adam" else 1.0  # Adam's steps are about lr each: its weights must reach 1e100
    configs = grid({"seed": [0]}, base, cases=[{"steps": 7, "seed": 1}, {"lr": overflow, "seed": 2}, {"steps": 15, "seed": 3}])
    results = check_against_alone(configs)
    last = [t["steps"]["step"].max() for _, t in results]
    assert results[2][0]["status"] == "diverged" and last[2] < 15, f"the lr {overflow:g} member should diverge early: {results[2][0]['status']} at {last[2]}"
    expected = [sum(end >= step for end in last) for step in range(24)]
    assert computed == expected, f"members computed per step {computed}, expected {expected} (last steps {last})"


def run_sweep(tmp_path, sweep, name, base=BASE, **kw):
    experiment = config.from_dict({**base, "sweep": sweep}, name)
    summary = runner.run(experiment, tmp_path / name, progress=False, **kw)
    return summary, load(tmp_path / name)


SWEEP = {"width": [3, 5], "seed": [0, 1, 2]}  # two shapes: two ensembles of three members


def test_a_sweep_with_ensembles_writes_the_tables_of_one_without_and_the_manifest_says_how_it_grouped(tmp_path):
    summary, with_ = run_sweep(tmp_path, SWEEP, "with")
    _, without = run_sweep(tmp_path, SWEEP, "without", ensemble=False)
    assert_same_tables(with_, without)
    manifest = __import__("json").loads((tmp_path / "with" / "manifest.json").read_text())
    grouped = manifest["grouping"]["ensembles"]
    runs = with_["runs"].set_index("run_id")
    assert sorted(len(g) for g in grouped) == [3, 3] and manifest["grouping"]["enabled"] is True
    assert all(runs.loc[g, "width"].nunique() == 1 for g in grouped), "an ensemble mixed widths"
    off = __import__("json").loads((tmp_path / "without" / "manifest.json").read_text())["grouping"]
    assert off["enabled"] is False and off["ensembles"] == []


@pytest.mark.parametrize("executor", ["process", "dask"])
def test_ensembles_on_a_pool_give_the_serial_tables(tmp_path, executor):
    if executor == "dask":
        pytest.importorskip("dask.distributed")
    _, serial = run_sweep(tmp_path, SWEEP, "serial")
    summary, pooled = run_sweep(tmp_path, SWEEP, "pooled", executor=executor, workers=2)
    assert summary.ensembles, "the pool ran no ensemble"
    assert_same_tables(serial, pooled)


def test_an_ensemble_that_raises_runs_its_members_alone(tmp_path, monkeypatch):
    def broken(configs, run_ids):
        raise RuntimeError("the ensemble broke")

    monkeypatch.setattr(ensemble, "run_ensemble", broken)
    _, alone = run_sweep(tmp_path, SWEEP, "broken")
    monkeypatch.undo()
    _, grouped = run_sweep(tmp_path, SWEEP, "grouped")
    assert (alone["runs"]["status"] == "ok").all() and len(alone["runs"]) == 6
    assert_same_tables(alone, grouped)


def test_resume_after_a_kill_in_the_middle_of_an_ensemble(tmp_path, monkeypatch):
    """The second ensemble is stopped at its 5th step (as a SIGTERM would stop it): the first one's members
    are kept, the second's are not written, and the rerun trains them to the tables of an unbroken sweep."""
    calls = {"n": 0}
    real = ensemble.Batches.draw

    def killed(self, rngs):
        calls["n"] += 1
        if calls["n"] == 24 + 5:  # the first ensemble runs 24 steps
            raise KeyboardInterrupt
        return real(self, rngs)

    monkeypatch.setattr(ensemble.Batches, "draw", killed)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(tmp_path, SWEEP, "resumed")
    kept = [p.name for p in (tmp_path / "resumed" / "runs").iterdir() if not p.name.startswith(".")]
    assert len(kept) == 3, f"expected the first ensemble's 3 members on disk, found {kept}"
    monkeypatch.undo()
    summary, resumed = run_sweep(tmp_path, SWEEP, "resumed")
    assert summary.skipped == 3 and [len(g) for g in summary.ensembles] == [3]
    _, unbroken = run_sweep(tmp_path, SWEEP, "unbroken")
    assert_same_tables(resumed, unbroken)


# ---- the grouping ----------------------------------------------------------------------------------

def test_runs_that_differ_only_in_ensemble_fields_share_an_ensemble():
    configs = grid({"seed": [0, 1], "lr": [0.1, 0.2], "clip_mode": ["none", "norm"], "init": ["standard", "he_normal"]})
    assert [len(g) for g in groups.group(configs)] == [16]
    assert {"train.seed", "train.lr", "train.clip_mode", "model.init", "model.sigma_w2"} <= set(ENSEMBLE_FIELDS)


@pytest.mark.parametrize("field, values", [
    ("width", [3, 4]), ("depth", [2, 3]), ("activation", ["tanh", "relu"]), ("output_activation", ["identity", "relu"]), ("batch", [8, 9]),
    ("optimizer", ["sgd", "adam"]), ("norm", ["none", "layer"]), ("residual", [False, True]), ("input_size", [3, 4]),
])  # fmt: skip
def test_runs_that_differ_in_shape_or_code_do_not(field, values):
    base = {**BASE, "model": {**BASE["model"], "activation": "leaky_relu"}}
    configs = grid({field: values, "seed": [0, 1]}, base)
    assert sorted(len(g) for g in groups.group(configs)) == [2, 2], f"{field} = {values} shared an ensemble"
    assert all(len({c[f"{k}"] for c in g}) == 1 for g in groups.group(configs) for k in groups.SHAPE_FIELDS)


@pytest.mark.parametrize("kind, model", [("rnn", {"activation": "tanh"}), ("lstm", {"layers": 2}), ("gru", {})])
def test_members_with_the_loss_on_every_step_equal_their_runs_alone(kind, model):
    """copy_memory puts a loss on every step: the probes' dh_last_norm then comes from a second backward, of
    the last step's loss alone, which the ensemble takes for all members at once."""
    base = {"model": {"kind": kind, "width": 5, **model}, "task": {"name": "copy_memory", "T": 9},
            "train": {"steps": 12, "batch": 4, "log_every": 5, "probe_size": 16, "clip_mode": "norm", "jacobian": True}}
    configs = grid({"seed": [0, 1], "clip": [0.1, 10.0]}, base)
    assert [len(g) for g in groups.group(configs)] == [4]
    results = check_against_alone(configs)
    for _, tables in results:
        ts = tables["timesteps"]
        assert ts["dh_last_norm"].notna().all() and not ts["dh_last_norm"].equals(ts["dh_norm"]), \
            "dh_last_norm should be measured, and differ from dh_norm with a loss on every step"


def test_float32_runs_and_no_ensemble_run_alone():
    single = grid({"seed": [0, 1, 2]}, {**BASE, "train": {**BASE["train"], "dtype": "float32"}})
    assert [len(g) for g in groups.group(single)] == [1, 1, 1]
    assert [len(g) for g in groups.group(grid({"seed": [0, 1, 2]}), enabled=False)] == [1, 1, 1]


def test_chunks_fit_the_memory_and_give_every_worker_work_and_the_largest_go_first():
    long = {**BASE, "train": {**BASE["train"], "steps": 5000}}
    configs = grid({"seed": list(range(10)), "depth": [1, 8]}, long)
    items = groups.plan(configs)
    assert sorted(len(i) for i in items) == [10, 10] and items[0][0]["model.depth"] == 8
    pooled = groups.plan(configs, workers=2)
    assert sorted(len(i) for i in pooled) == [5, 5, 5, 5], "two groups for two workers: each split in two"
    costs = [groups.cost(i) for i in pooled]
    assert costs == sorted(costs, reverse=True) and costs[-1] >= groups.SPLIT_S
    small = grid({"seed": list(range(10)), "depth": [1, 8]})  # 24 steps: pieces would cost less than a worker's start
    assert sorted(len(i) for i in groups.plan(small, workers=2)) == [10, 10]
    huge = grid({"seed": [0, 1, 2]}, {"model": {"width": 2**14, "depth": 2}})  # ~0.5 GiB parameters per member
    assert groups.member_bytes(huge[0]) > groups.CHUNK_BYTES // 2
    assert groups.chunk_size(huge) == 1
    assert groups.chunk_size(grid({"seed": list(range(100))})) == groups.MAX_MEMBERS


def test_an_ensemble_whose_worker_dies_is_run_again_member_by_member(tmp_path, monkeypatch):
    """A worker killed holding an ensemble (the OOM killer) loses it; its members then run alone, and
    one whose worker dies again is failed alone, the others finish."""
    from gradlab.sweep import executors

    class Dying(executors.Serial):
        def map(self, task, items):
            for item in items:
                killed = len(item) > 1 or item[0]["train.seed"] == 1
                yield item, executors.Lost("its worker was killed by signal 9 (SIGKILL)") if killed else task(item)

    monkeypatch.setattr(executors, "make", lambda *a, **k: Dying())
    summary, tables = run_sweep(tmp_path, SWEEP, "dying")
    runs = tables["runs"]
    assert len(runs) == 6 and sorted(runs.loc[runs["status"] == "failed", "seed"]) == [1, 1], runs[["seed", "status"]]
    assert (runs.loc[runs["seed"] != 1, "status"] == "ok").all()


def test_a_file_tasks_cost_reads_its_input_size():
    """The cost model sizes a file task's first layer from the file (task.input_size as resolved)."""
    narrow = {**defaults(), "task.name": "file", "task.input_size": 2}
    wide = {**narrow, "task.input_size": 2000}
    assert groups.layer_sizes(wide)[0] == (2000, narrow["model.width"]), groups.layer_sizes(wide)
    assert groups.cost([wide]) > groups.cost([narrow])
