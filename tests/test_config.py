"""Configs: defaults, grid expansion, run ids, overrides, and a corpus of broken configs."""

import pytest

from gradlab.sweep import config
from gradlab.sweep.schema import FIELDS


def test_every_field_has_a_default_that_passes_its_own_validation():
    for key, f in FIELDS.items():
        assert config.check_value(key, f.default) == f.default, key
        assert f.help, f"{key} is undocumented"


def test_grid_is_the_product_of_the_axes_plus_the_cases():
    e = config.from_dict(
        {"sweep": {"depth": [2, 4, 8], "activation": ["tanh", "relu"]}, "case": [{"depth": 32, "activation": "sigmoid"}]}
    )
    grid = e.grid()
    assert [(c["model.depth"], c["model.activation"]) for c in grid] == [
        (2, "tanh"), (2, "relu"), (4, "tanh"), (4, "relu"), (8, "tanh"), (8, "relu"), (32, "sigmoid"),
    ]  # fmt: skip
    assert len({config.run_id(c) for c in grid}) == 7


def test_runs_that_differ_only_in_fields_that_do_not_apply_are_one_run():
    # the slope matters for leaky_relu only; the threshold does not matter without clipping
    e = config.from_dict({"sweep": {"activation": ["relu", "leaky_relu"], "slope": [0.01, 0.2], "clip": [0.5, 5.0]}})
    grid = e.grid()
    assert len(grid) == 3, [(c["model.activation"], c["model.slope"]) for c in grid]


def test_run_id_is_stable_and_changes_with_any_field():
    a = config.from_dict({}).grid()[0]
    assert config.run_id(a) == config.run_id(dict(reversed(list(a.items()))))
    for key in ("model.width", "train.seed", "train.lr"):
        changed = dict(a, **{key: a[key] + 1})
        assert config.run_id(changed) != config.run_id(a), key


def test_overrides_replace_base_values_and_axes():
    e = config.from_dict({"sweep": {"depth": [2, 4]}}, overrides=["depth=3", "train.lr=0.5", "train.clip_mode=norm"])
    grid = e.grid()
    assert len(grid) == 1 and grid[0]["model.depth"] == 3 and grid[0]["train.lr"] == 0.5


def test_toml_round_trip(tmp_path):
    e = config.from_dict({"model": {"width": 8}, "sweep": {"depth": [1, 2]}, "case": [{"seed": 3}]})
    path = tmp_path / "x.toml"
    path.write_text(config.to_toml(e))
    again = config.load(path)
    assert [config.run_id(c) for c in again.grid()] == [config.run_id(c) for c in e.grid()]


BROKEN = [
    ({"model": {"dept": 3}}, "model.dept: unknown key; did you mean model.depth?"),
    ({"sweep": {"activaton": ["tanh"]}}, "sweep.activaton: unknown key; did you mean activation?"),
    ({"trian": {}}, "trian: unknown section; did you mean train?"),
    ({"model": {"depth": 0}}, "model.depth = 0: must be >= 1"),
    ({"model": {"depth": 2.5}}, "model.depth = 2.5: must be an integer"),
    ({"model": {"depth": True}}, "model.depth = True: must be an integer"),
    ({"train": {"lr": "fast"}}, "train.lr = 'fast': must be a number"),
    ({"train": {"lr": 0}}, "train.lr = 0: must be > 0"),
    ({"model": {"slope": 2}}, "model.slope = 2: must be <= 1"),
    ({"model": {"activation": "tahn"}}, "model.activation = 'tahn': must be one of identity, sigmoid, tanh, relu, leaky_relu"),
    ({"train": {"clip_mode": "global"}}, "train.clip_mode = 'global': must be one of none, norm, value"),
    ({"sweep": {"depth": []}}, "sweep.depth = []: must be a non-empty list of values"),
    ({"sweep": {"depth": 4}}, "sweep.depth = 4: must be a non-empty list of values"),
    ({"sweep": {"depth": [2, -1]}}, "model.depth = -1: must be >= 1"),
    ({"model": {"kind": "rnn"}}, "model.kind = 'rnn' cannot run task.name = 'teacher_student': that task needs an mlp"),
    ({"sweep": {"task.name": ["adding"]}}, "model.kind = 'mlp' cannot run task.name = 'adding': that task needs an rnn or lstm"),
    ({"model": "mlp"}, "model: must be a table ([model])"),
    ({"case": {"depth": 2}}, "case: must be an array of tables ([[case]])"),
    ({"name": "my run"}, "name = 'my run': must be a non-empty string without spaces or slashes"),
]


@pytest.mark.parametrize("data, message", BROKEN, ids=[m.split(":")[0] for _, m in BROKEN])
def test_broken_configs_fail_with_one_line_naming_key_value_and_allowed(data, message):
    with pytest.raises(config.ConfigError) as err:
        config.from_dict(data)
    assert str(err.value) == message


def test_bad_override_and_missing_file(tmp_path):
    with pytest.raises(config.ConfigError, match="--set .depth.: must be key=value"):
        config.from_dict({}, overrides=["depth"])
    with pytest.raises(config.ConfigError, match="no such config file"):
        config.load(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("model = [")
    with pytest.raises(config.ConfigError, match="not valid TOML"):
        config.load(bad)


PARTS = {
    "train": {"steps": 10},
    "part": [
        {"name": "depth", "model": {"kind": "mlp"}, "sweep": {"depth": [2, 4]}},
        {"name": "rnn", "model": {"kind": "rnn"}, "task": {"name": "adding"}, "sweep": {"T": [10, 20]},
         "case": [{"T": 5}]},
    ],
}  # fmt: skip


def test_parts_are_grids_of_their_own_on_the_common_base(tmp_path):
    e = config.from_dict(PARTS)
    grid = e.grid()
    assert [(c["experiment.part"], c["model.kind"], c["model.depth"], c["task.T"]) for c in grid] == [
        ("depth", "mlp", 2, 50), ("depth", "mlp", 4, 50), ("rnn", "rnn", 4, 10), ("rnn", "rnn", 4, 20), ("rnn", "rnn", 4, 5),
    ]  # fmt: skip
    assert all(c["train.steps"] == 10 for c in grid)
    path = tmp_path / "parts.toml"
    path.write_text(config.to_toml(e))
    assert [config.run_id(c) for c in config.load(path).grid()] == [config.run_id(c) for c in grid]
    overridden = config.from_dict(PARTS, overrides=["T=7", "steps=3"]).grid()
    assert {c["task.T"] for c in overridden if c["experiment.part"] == "rnn"} == {7}
    assert {c["train.steps"] for c in overridden} == {3}


@pytest.mark.parametrize(
    "data, message",
    [
        ({"sweep": {"depth": [1]}, "part": [{"name": "a"}]}, "sweep / case: a config with [[part]] sweeps inside its parts ([part.sweep], [[part.case]])"),
        ({"part": [{"nmae": "a"}]}, "part[0].nmae: unknown key; allowed: name, model, task, train, sweep, case"),
        ({"part": [{"model": {"dept": 2}}]}, "part[0].model.dept: unknown key; did you mean model.depth?"),
        ({"part": [{"sweep": {"depth": []}}]}, "part[0].sweep.depth = []: must be a non-empty list of values"),
        ({"part": {"name": "a"}}, "part: must be an array of tables ([[part]])"),
    ],
)
def test_broken_parts(data, message):
    with pytest.raises(config.ConfigError) as err:
        config.from_dict(data)
    assert str(err.value) == message
