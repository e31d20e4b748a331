"""Learning-rate schedules: each against its formula at chosen steps, the steps table's lr column equal to the
formula at every step, scheduled runs in an ensemble equal to the same runs alone, their config fields
validated, and the parameters a schedule does not use reset so that they do not split run ids."""

import math

import numpy as np
import pytest

from test_ensemble_runs import BASE, check_against_alone, grid

from gradlab import train
from gradlab.nn import schedule
from gradlab.sweep import config, groups

REL = 1e-15  # the formulas are evaluated in float64: equal to a few ulps


@pytest.mark.parametrize("name, params, lr, expected", [
    ("constant", {}, 0.3, {0: 0.3, 7: 0.3, 10_000: 0.3}),
    ("step", {"decay_every": 10, "decay": 0.5}, 0.1, {0: 0.1, 9: 0.1, 10: 0.05, 19: 0.05, 20: 0.025, 35: 0.0125}),
    ("cosine", {"steps": 100, "min_lr": 0.1}, 1.0,
     {0: 1.0, 25: 0.1 + 0.9 * (1 + math.sqrt(0.5)) / 2, 50: 0.55, 75: 0.1 + 0.9 * (1 - math.sqrt(0.5)) / 2, 100: 0.1}),
    ("warmup", {"warmup_steps": 4}, 0.2, {0: 0.05, 1: 0.1, 2: 0.15, 3: 0.2, 4: 0.2, 500: 0.2}),
])  # fmt: skip
def test_each_schedule_gives_its_formula_at_chosen_steps(name, params, lr, expected):
    rate = schedule.get(name, lr, **params)
    for t, want in expected.items():
        assert rate(t) == pytest.approx(want, rel=REL, abs=1e-17), f"{name} lr_{t}: got {rate(t)!r}, formula {want!r}"


def formula(c, t):
    """The schema help's formulas, written out again from the config fields (not through gradlab.nn.schedule)."""
    lr = c["train.lr"]
    return {
        "constant": lambda: lr,
        "step": lambda: lr * c["train.decay"] ** math.floor(t / c["train.decay_every"]),
        "cosine": lambda: c["train.min_lr"] + (lr - c["train.min_lr"]) * (1 + math.cos(math.pi * t / c["train.steps"])) / 2,
        "warmup": lambda: lr * min(1.0, (t + 1) / c["train.warmup_steps"]),
    }[c["train.schedule"]]()


SCHEDULED = [{"schedule": "step", "decay_every": 5, "decay": 0.3}, {"schedule": "cosine", "min_lr": 0.001},
             {"schedule": "warmup", "warmup_steps": 7}, {"schedule": "constant"}]  # fmt: skip


@pytest.mark.parametrize("fields", SCHEDULED, ids=lambda f: f["schedule"])
def test_the_steps_tables_lr_column_is_the_scheduled_rate_of_every_step(fields):
    c = grid({}, BASE, cases=[{**fields, "lr": 0.05}])[-1]
    steps = train.run(c, config.run_id(c))[1]["steps"]
    assert list(steps["step"]) == list(range(c["train.steps"]))
    want = np.array([formula(c, t) for t in steps["step"]])
    np.testing.assert_allclose(steps["lr"].to_numpy(), want, rtol=REL, atol=0, err_msg=f"steps.lr, schedule {fields['schedule']}")
    assert (steps["lr"].nunique() > 1) == (fields["schedule"] != "constant"), "a schedule other than constant must change the lr"


def test_a_schedule_changes_training_as_the_update_rule_says():
    """The optimizer steps at lr_t: a warmup run (lr 0.5 over 4 steps: 0.125, 0.25, ...) and a constant run at
    0.125 from the same weights and batches take the same step 0, so their losses at steps 0 and 1 are equal
    bit for bit, and their step 1 differs, so their loss at step 2 does not."""
    warm = grid({}, BASE, cases=[{"schedule": "warmup", "warmup_steps": 4, "lr": 0.5, "steps": 3}])[-1]
    flat = grid({}, BASE, cases=[{"lr": 0.125, "steps": 3}])[-1]
    a, b = train.run(warm)[1]["steps"], train.run(flat)[1]["steps"]
    assert list(a["lr"]) == [0.125, 0.25, 0.375] and list(b["lr"]) == [0.125] * 3, (list(a["lr"]), list(b["lr"]))
    assert list(a["loss"].iloc[:2]) == list(b["loss"].iloc[:2]), "step 0 at lr 0.5 / 4 must be step 0 at lr 0.125"
    assert a["loss"].iloc[2] != b["loss"].iloc[2], "step 1 at lr 0.25 must differ from step 1 at lr 0.125"


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_scheduled_runs_in_an_ensemble_equal_their_runs_alone(optimizer):
    base = {**BASE, "train": {**BASE["train"], "optimizer": optimizer}}
    configs = grid({"seed": [0, 1]}, base, cases=[{**f, "seed": i + 2, "lr": 0.02 * (i + 1)} for i, f in enumerate(SCHEDULED)])
    assert len(configs) == 6 and len({groups.key(c) for c in configs}) == 1, "schedules may differ within one ensemble"
    results = check_against_alone(configs)
    for c, (_, tables) in zip(configs, results):
        np.testing.assert_allclose(tables["steps"]["lr"], [formula(c, t) for t in range(c["train.steps"])], rtol=REL, atol=0)


def test_a_constant_schedules_unused_parameters_are_reset_and_do_not_split_run_ids():
    plain = grid({}, BASE)[0]
    same = grid({}, BASE, cases=[{"decay": 0.5, "decay_every": 3, "warmup_steps": 9, "min_lr": 0.001}])[-1]
    assert config.run_id(same) == config.run_id(plain), "a constant schedule's unused parameters must not change the id"
    cos = grid({}, BASE, cases=[{"schedule": "cosine", "decay": 0.5, "warmup_steps": 9}])[-1]
    cos2 = grid({}, BASE, cases=[{"schedule": "cosine"}])[-1]
    assert config.run_id(cos) == config.run_id(cos2) != config.run_id(plain)
    step = grid({}, BASE, cases=[{"schedule": "step", "decay": 0.5}])[-1]
    assert config.run_id(step) != config.run_id(grid({}, BASE, cases=[{"schedule": "step", "decay": 0.25}])[-1])


@pytest.mark.parametrize("train_fields, message", [
    ({"schedule": "linear"}, "^train.schedule = 'linear': must be one of constant, step, cosine, warmup$"),
    ({"schedule": "step", "decay": 1.5}, r"^train.decay = 1.5: must be <= 1$"),
    ({"schedule": "step", "decay": 0}, r"^train.decay = 0: must be > 0$"),
    ({"schedule": "step", "decay_every": 0}, r"^train.decay_every = 0: must be >= 1$"),
    ({"schedule": "warmup", "warmup_steps": 2.5}, r"^train.warmup_steps = 2.5: must be an integer$"),
    ({"schedule": "cosine", "min_lr": -0.1}, r"^train.min_lr = -0.1: must be >= 0$"),
    ({"schedule": "cosine", "lr": 0.01, "min_lr": 0.1}, r"^train.min_lr = 0.1: must be <= train.lr = 0.01 "),
])  # fmt: skip
def test_bad_schedule_fields_are_one_line_errors(train_fields, message):
    with pytest.raises(config.ConfigError, match=message):
        config.from_dict({"train": train_fields})


def test_min_lr_above_lr_is_found_in_a_sweep_without_expanding_it():
    with pytest.raises(config.ConfigError, match=r"^train.min_lr = 0.05: must be <= train.lr = 0.01"):
        config.from_dict({"train": {"schedule": "cosine"}, "sweep": {"lr": [0.1, 0.01], "min_lr": [0.0, 0.05]}})
