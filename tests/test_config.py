"""Configs: defaults, grid expansion, run ids, overrides, and a corpus of broken configs."""

import math
from pathlib import Path

import numpy as np
import pytest

from gradlab import schema, tasks
from gradlab.sweep import config
from gradlab.schema import FIELDS, INT, reference


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
    ({"sweep": {"task.name": ["adding"]}}, "model.kind = 'mlp' cannot run task.name = 'adding': that task needs an rnn, lstm or gru"),
    ({"model": "mlp"}, "model: must be a table ([model])"),
    ({"case": {"depth": 2}}, "case: must be an array of tables ([[case]])"),
    ({"name": "my run"}, "name = 'my run': must be a folder name without whitespace or control characters"),
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


RNN = {"kind": "rnn"}
MORE_BROKEN = [
    # bounds: every integer has a maximum, momentum is half-open
    ({"train": {"momentum": 1.0}}, "train.momentum = 1.0: must be >= 0 and < 1"),
    ({"train": {"momentum": -0.1}}, "train.momentum = -0.1: must be >= 0 and < 1"),
    ({"train": {"seed": 2**63}}, "train.seed = 9223372036854775808: must be <= 9223372036854775807"),
    ({"train": {"seed": 2**64}}, "train.seed = 18446744073709551616: must be <= 9223372036854775807"),
    ({"train": {"seed": -1}}, "train.seed = -1: must be >= 0"),
    ({"train": {"steps": 10**23}}, "train.steps = 100000000000000000000000: must be <= 100000000"),
    ({"model": {"width": 10**6 + 1}}, "model.width = 1000001: must be <= 1000000"),
    ({"model": {"depth": 10**4 + 1}}, "model.depth = 10001: must be <= 10000"),
    ({"sweep": {"batch": [32, 10**7 + 1]}}, "train.batch = 10000001: must be <= 10000000"),
    ({"train": {"log_every": 10**8 + 1}}, "train.log_every = 100000001: must be <= 100000000"),
    ({"task": {"classes": 10**6 + 1}}, "task.classes = 1000001: must be <= 1000000"),
    ({"model": {"truncate": 10**6 + 1}}, "model.truncate = 1000001: must be <= 1000000"),
    # numbers are finite
    ({"train": {"lr": math.nan}}, "train.lr = nan: must be a finite number > 0"),
    ({"model": {"sigma_w2": math.inf}}, "model.sigma_w2 = inf: must be a finite number > 0"),
    ({"model": {"forget_bias": -math.inf}}, "model.forget_bias = -inf: must be a finite number"),
    ({"sweep": {"slope": [0.1, math.nan]}}, "model.slope = nan: must be a finite number >= 0 and <= 1"),
    ({"model": {"gain": math.inf}}, "model.gain = inf: must be a finite number > 0"),
    ({"train": {"momentum": math.inf}}, "train.momentum = inf: must be a finite number >= 0 and < 1"),
    ({"model": {"sigma_b2": 10**400}}, f"model.sigma_b2 = {10**400}: must be a finite number >= 0"),  # overflows a float
    # each task's minimum sequence length
    ({"model": RNN, "task": {"name": "adding", "T": 3}}, "task.T = 3: adding (variant le2015) needs T >= 4"),
    ({"model": RNN, "task": {"name": "adding", "T": 21, "variant": "hochreiter1997"}},
     "task.T = 21: adding (variant hochreiter1997) needs T >= 22"),
    ({"model": RNN, "task": {"name": "temporal_order", "T": 9}}, "task.T = 9: temporal_order needs T >= 10"),
    ({"model": RNN, "task": {"name": "adding", "T": 30}, "sweep": {"variant": ["le2015", "hochreiter1997"], "T": [40, 21]}},
     "task.T = 21: adding (variant hochreiter1997) needs T >= 22"),
    ({"model": RNN, "task": {"name": "adding"}, "case": [{"task.name": "temporal_order", "T": 5}]},
     "task.T = 5: temporal_order needs T >= 10"),
    ({"part": [{"model": RNN, "task": {"name": "adding"}}, {"model": {"kind": "lstm"}, "task": {"name": "temporal_order"}, "sweep": {"T": [10, 9]}}]},
     "task.T = 9: temporal_order needs T >= 10"),
    # one field, two spellings in one table
    ({"sweep": {"depth": [2], "model.depth": [4]}}, "sweep: depth and model.depth are the same field, model.depth; write it once"),
    ({"sweep": {"leaky_slope": [0.1], "slope": [0.2]}}, "sweep: leaky_slope and slope are the same field, model.slope; write it once"),
    ({"case": [{"seed": 1}, {"kind": "mlp", "model": "mlp"}]}, "case[1]: kind and model are the same field, model.kind; write it once"),
    ({"part": [{"name": "a"}, {"name": "b", "sweep": {"width": [2], "model.width": [3]}}]},
     "part[1].sweep: width and model.width are the same field, model.width; write it once"),
    ({"part": [{"case": [{"task": "abs_value", "task.name": "two_spirals"}]}]},
     "part[0].case[0]: task and task.name are the same field, task.name; write it once"),
    # experiment names are safe folder names
    ({"name": ".."}, "name = '..': must be a folder name, not . or .."),
    ({"name": "."}, "name = '.': must be a folder name, not . or .."),
    ({"name": ".hidden"}, "name = '.hidden': must be a folder name without a leading dot"),
    ({"name": "a/b"}, """name = 'a/b': must be a folder name without any of / \\ < > : " | ? *"""),
    ({"name": "a\\b"}, """name = 'a\\\\b': must be a folder name without any of / \\ < > : " | ? *"""),
    ({"name": "a:b"}, """name = 'a:b': must be a folder name without any of / \\ < > : " | ? *"""),
    ({"name": "tab\tname"}, "name = 'tab\\tname': must be a folder name without whitespace or control characters"),
    ({"name": "bell\x07"}, "name = 'bell\\x07': must be a folder name without whitespace or control characters"),
    ({"name": "x" * 101}, f"name = '{'x' * 101}': must be a folder name of at most 100 characters, not 101"),
    ({"name": ""}, "name = '': must be a non-empty string"),
    ({"name": 3}, "name = 3: must be a non-empty string"),
    # anything else that would start and then fail, or silently mean something else
    ({"case": [{"momentum": 1.5}]}, "train.momentum = 1.5: must be >= 0 and < 1"),
    ({"case": [{"depth": "4"}]}, "model.depth = '4': must be an integer"),
    ({"case": [{"seed": 2**63}]}, "train.seed = 9223372036854775808: must be <= 9223372036854775807"),
    ({"sweep": {"part": ["a", "b"]}}, "sweep.part: experiment.part is set from the [[part]] names, not written by hand"),
    ({"case": [{"experiment.part": "a"}]}, "case[0].experiment.part: experiment.part is set from the [[part]] names, not written by hand"),
    ({"part": [{"name": "a"}, {"name": "a"}]}, "part[1].name = 'a': must differ from the other parts' names; part[0] has it"),
    ({"description": ["a", "b"]}, "description = ['a', 'b']: must be a string"),
]


@pytest.mark.parametrize("data, message", MORE_BROKEN, ids=[m.split(":")[0][:40] for _, m in MORE_BROKEN])
def test_more_broken_configs_fail_with_one_exact_line(data, message):
    assert "\n" not in message
    with pytest.raises(config.ConfigError) as err:
        config.from_dict(data)
    assert str(err.value) == message


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lr=nan", "train.lr = nan: must be a finite number > 0"),
        ("sigma_w2=inf", "model.sigma_w2 = inf: must be a finite number > 0"),
        ("momentum=1", "train.momentum = 1: must be >= 0 and < 1"),
        ("seed=18446744073709551616", "train.seed = 18446744073709551616: must be <= 9223372036854775807"),
        ("steps=1e3", "train.steps = 1000.0: must be an integer"),
        ("T=3", "task.T = 3: adding (variant le2015) needs T >= 4"),
        ("part=x", "--set part: experiment.part is set from the [[part]] names, not written by hand"),
    ],
)
def test_bad_set_values_are_refused_like_file_values(override, message):
    with pytest.raises(config.ConfigError) as err:
        config.from_dict({"model": RNN, "task": {"name": "adding"}}, overrides=[override])
    assert str(err.value) == message


def test_set_wins_over_a_bad_axis_only_if_it_is_valid_itself():
    data = {"model": RNN, "task": {"name": "temporal_order"}, "sweep": {"T": [20, 30]}}
    assert {c["task.T"] for c in config.from_dict(data, overrides=["T=10"]).grid()} == {10}
    with pytest.raises(config.ConfigError, match=r"^task\.T = 9: temporal_order needs T >= 10$"):
        config.from_dict(data, overrides=["T=9"])


@pytest.mark.parametrize(
    "text, line, what",
    [
        ("[sweep]\ndepth = [2]\ndepth = [4]\n", 3, "key depth"),
        ('[sweep]\n"model.depth" = [\n  2,\n  4,\n]\n"model.depth" = [\n  8,\n]\n', 6, 'key "model.depth"'),
        ("[model]\ndepth = 2\n\n[model]\nwidth = 3\n", 4, "table [model]"),
        ("[model]\nkind = 'rnn'\nkind = 'lstm'", 3, "key kind"),  # tomllib says only "at end of document"
        ("model = {depth = 1, depth = 2}\n", 1, "key depth"),
    ],
)
def test_a_key_written_twice_in_a_file_names_the_key_and_the_line(tmp_path, text, line, what):
    path = tmp_path / "x.toml"
    path.write_text(text)
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    assert str(err.value) == f"{path}: line {line}: {what} is written twice: not valid TOML"


@pytest.mark.parametrize(
    "content, message",
    [
        (b"[model]\ndepth = = 3\n", "line 2, column 9: not valid TOML: Invalid value"),
        (b"[train]\nsteps = 3\nmodel = [", "line 3 (end of file): not valid TOML: Invalid value"),
        (b"\xff\xfe[train]\n", "byte 0: not UTF-8 text: not valid TOML"),
        (b"", "nothing to run: no [model], [task], [train], [sweep], [[case]] or [[part]]; to run the defaults, write an empty [train] table"),
        (b"# only\n\n# comments\n", "nothing to run: no [model], [task], [train], [sweep], [[case]] or [[part]]; to run the defaults, write an empty [train] table"),
        (b'name = "x"\ndescription = "y"\n', "nothing to run: no [model], [task], [train], [sweep], [[case]] or [[part]]; to run the defaults, write an empty [train] table"),
        (b"[trian]\n", "trian: unknown section; did you mean train?"),
    ],
)
def test_bad_files_fail_with_one_line_naming_the_file(tmp_path, content, message):
    path = tmp_path / "x.toml"
    path.write_bytes(content)
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    expected = message if message.startswith("trian") else f"{path}: {message}"
    assert str(err.value) == expected and "\n" not in str(err.value)


def test_an_empty_train_table_runs_the_defaults(tmp_path):
    path = tmp_path / "defaults.toml"
    path.write_text("# the defaults, on purpose\n[train]\n")
    grid = config.load(path).grid()
    assert len(grid) == 1 and grid[0] == config.resolve(config.from_dict({}).base)


def test_every_integer_field_has_a_maximum_and_the_reference_shows_the_bounds():
    for key, f in FIELDS.items():
        if f.type is INT:
            assert f.maximum is not None, key
    assert FIELDS["train.seed"].maximum == 2**63 - 1 and FIELDS["model.width"].maximum == 10**6
    table = reference()
    assert "| `train.momentum` | `0.9` | number >= 0, < 1 |" in table
    assert "| `train.seed` | `0` | integer >= 0, <= 9223372036854775807 |" in table
    assert "at least 4 for adding (variant le2015), 22 for adding (variant hochreiter1997), 10 for temporal_order" in table


def test_numbers_come_back_as_floats_and_the_largest_seed_is_accepted():
    assert config.check_value("train.lr", 1) == 1.0 and isinstance(config.check_value("train.lr", 1), float)
    assert config.check_value("train.seed", 2**63 - 1) == 2**63 - 1
    assert config.check_value("train.momentum", 0) == 0.0
    assert config.check_value("model.gain", "none") is None


@pytest.mark.parametrize(
    "task, variant", [("adding", "le2015"), ("adding", "hochreiter1997"), ("temporal_order", None), ("copy_memory", None)]
)
def test_config_and_task_agree_on_the_minimum_T(task, variant):
    cls = tasks.TASKS[task]
    need = cls.min_T(variant)
    options = {"variant": variant} if variant else {}
    data = {"model": RNN, "task": {"name": task, "T": need, **options}}
    assert config.from_dict(data).grid()[0]["task.T"] == need
    assert tasks.get(task, T=need, **options).T == need
    if need > 1:
        data["task"]["T"] = need - 1
        with pytest.raises(config.ConfigError, match=rf"^task\.T = {need - 1}: .* needs T >= {need}$"):
            config.from_dict(data)
        with pytest.raises(ValueError, match=f"T must be at least {need}"):
            tasks.get(task, T=need - 1, **options)


def test_count_is_the_grid_size_when_nothing_merges_and_an_upper_bound_otherwise():
    plain = config.from_dict(
        {"sweep": {"depth": [2, 4, 8], "activation": ["tanh", "relu"]}, "case": [{"depth": 32}, {"seed": 5}]}
    )
    assert plain.count() == len(plain.grid()) == 8
    assert config.from_dict({}).count() == 1
    assert config.from_dict(PARTS).count() == len(config.from_dict(PARTS).grid()) == 5
    merging = config.from_dict({"sweep": {"activation": ["relu", "leaky_relu"], "slope": [0.01, 0.2], "clip": [0.5, 5.0]}})
    assert merging.count() == 8 and len(merging.grid()) == 3


def test_preview_and_iter_grid_are_the_grid_lazily(monkeypatch):
    e = config.from_dict(PARTS)
    assert list(e.iter_grid()) == e.grid() and e.preview(3) == e.grid()[:3]
    big = config.from_dict(BIG)
    resolved = []
    real = config.resolve
    monkeypatch.setattr(config, "resolve", lambda c: resolved.append(1) or real(c))
    first = big.preview(10)
    assert len(first) == 10 and len(resolved) == 10, "preview(10) resolves 10 runs, not the whole grid"
    assert [c["train.batch"] for c in first] == list(range(1, 11))


# 10 * 10 * 10 * 10 * 9 * 10 = 900,000 runs: expanding it takes ~40 s and ~2 GiB
BIG = {
    "sweep": {
        "depth": list(range(1, 11)), "width": list(range(1, 11)), "lr": [0.1 * i for i in range(1, 11)],
        "seed": list(range(10)), "steps": list(range(9)), "batch": list(range(1, 11)),
    }
}  # fmt: skip


def _no_expansion(monkeypatch):
    def refuse(self):
        raise AssertionError("the grid was expanded")

    for name in ("grid", "iter_grid", "_unresolved"):
        monkeypatch.setattr(config.Experiment, name, refuse)


def test_a_900000_run_grid_is_validated_and_counted_without_expanding_it(monkeypatch):
    _no_expansion(monkeypatch)
    e = config.from_dict(BIG)
    assert e.count() == 900_000 > config.MAX_RUNS
    with_parts = {"part": [BIG, {"name": "rnn", "model": RNN, "task": {"name": "adding"}, **BIG}]}
    assert config.from_dict(with_parts).count() == 1_800_000


def test_an_impossible_run_deep_in_a_900000_run_grid_fails_without_expanding_it(monkeypatch):
    _no_expansion(monkeypatch)
    sweep = {**BIG["sweep"], "T": [10, 20, 30, 9], "depth": [1, 2, 3]}  # 1,080,000 runs, the bad ones last
    data = {"model": {"kind": "lstm"}, "task": {"name": "temporal_order"}, "sweep": sweep}
    with pytest.raises(config.ConfigError, match=r"^task\.T = 9: temporal_order needs T >= 10$"):
        config.from_dict(data)
    data = {"sweep": {**BIG["sweep"], "kind": ["mlp", "lstm"]}}
    with pytest.raises(config.ConfigError, match="^model.kind = 'lstm' cannot run task.name = 'teacher_student'"):
        config.from_dict(data)


def test_validation_without_expansion_sees_everything_the_combination_check_reads(tmp_path):
    class Recording(dict):
        def __getitem__(self, key):
            read.add(key)
            return super().__getitem__(key)

    read = set()
    np.savez(tmp_path / "d.npz", x=np.zeros((8, 3)), y=np.arange(8) % 2)  # the file task's checks read its fields
    file_task = {"task.path": str(tmp_path / "d.npz"), "task.loss": "cross_entropy", "train.probe_size": 2,
                 "train.schedule": "cosine"}  # fmt: skip
    for kind, task, variant, norm in [("mlp", "teacher_student", "le2015", "batch"), ("rnn", "adding", "hochreiter1997", "none"),
                                      ("lstm", "temporal_order", "le2015", "none"), ("gru", "adding", "le2015", "none"),
                                      ("mlp", "file", "le2015", "none")]:  # fmt: skip
        fields = {"model.kind": kind, "task.name": task, "task.variant": variant, "model.norm": norm}
        config.check_combination(Recording(config.from_dict({}).base, **fields, **(file_task if task == "file" else {})))
    assert read == set(config.CHECKED), "Experiment.validate() iterates only over CHECKED; keep it equal to what check_combination reads"


# ----------------------------------------------------------------------------------------- the cures' fields

CURES_BROKEN = [
    ({"model": {"kind": "gur"}}, "model.kind = 'gur': must be one of mlp, rnn, lstm, gru"),
    ({"model": {"layers": 0}}, "model.layers = 0: must be >= 1"),
    ({"model": {"layers": 101}}, "model.layers = 101: must be <= 100"),
    ({"model": {"layers": 1.5}}, "model.layers = 1.5: must be an integer"),
    ({"model": {"norm": "group"}}, "model.norm = 'group': must be one of none, layer, batch"),
    ({"model": {"norm": True}}, "model.norm = True: must be a string"),
    ({"model": {"residual": "yes"}}, "model.residual = 'yes': must be true or false"),
    ({"model": {"residual": 1}}, "model.residual = 1: must be true or false"),
    ({"model": {"residual_scale": math.nan}}, "model.residual_scale = nan: must be a finite number"),
    ({"model": {"residual_scale": "big"}}, "model.residual_scale = 'big': must be a number"),
    ({"sweep": {"layers": [1, 0]}}, "model.layers = 0: must be >= 1"),
    ({"model": {"norm": "batch"}, "train": {"batch": 1}},
     "train.batch = 1: model.norm = 'batch' needs train.batch >= 2 (the statistics of one example are its own value)"),
    ({"model": {"norm": "batch"}, "sweep": {"batch": [8, 1]}}, "train.batch = 1: model.norm = 'batch' needs train.batch >= 2"),
    ({"model": {"kind": "gru"}}, "model.kind = 'gru' cannot run task.name = 'teacher_student': that task needs an mlp"),
]


@pytest.mark.parametrize("data, message", CURES_BROKEN, ids=[m.split(":")[0] for _, m in CURES_BROKEN])
def test_the_cures_fields_are_validated_like_every_field(data, message):
    with pytest.raises(config.ConfigError) as err:
        config.from_dict(data)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_the_cures_fields_sweep_into_distinct_runs():
    e = config.from_dict({"model": {"depth": 3}, "sweep": {"norm": ["none", "layer", "batch"], "residual": [False, True]}})
    grid = e.grid()
    assert [(c["model.norm"], c["model.residual"]) for c in grid] == [
        ("none", False), ("none", True), ("layer", False), ("layer", True), ("batch", False), ("batch", True),
    ]  # fmt: skip
    assert len({config.run_id(c) for c in grid}) == 6
    seq = config.from_dict({"model": {"kind": "lstm"}, "task": {"name": "adding", "T": 8},
                            "sweep": {"kind": ["rnn", "lstm", "gru"], "layers": [1, 2]}})  # fmt: skip
    assert [(c["model.kind"], c["model.layers"]) for c in seq.grid()] == [
        ("rnn", 1), ("rnn", 2), ("lstm", 1), ("lstm", 2), ("gru", 1), ("gru", 2),
    ]  # fmt: skip
    assert config.from_dict({"sweep": {"residual_scale": [0.5, 1.0]}, "model": {"residual": True}}).count() == 2
    assert len(config.from_dict({"sweep": {"residual_scale": [0.5, 1.0]}, "model": {"residual": True}}).grid()) == 2


@pytest.mark.parametrize("base, axes, runs", [
    ({"kind": "gru"}, {"activation": ["tanh", "relu", "leaky_relu"], "slope": [0.01, 0.3]}, 1),  # the GRU's are fixed
    ({"kind": "gru"}, {"forget_bias": [0.0, 1.0], "depth": [2, 8], "output_activation": ["identity", "tanh"]}, 1),
    ({"kind": "mlp"}, {"layers": [1, 2, 3]}, 1),  # an MLP has no stacked cells
    ({"kind": "rnn"}, {"norm": ["none", "layer", "batch"], "residual": [False, True]}, 1),  # MLP only
    ({"kind": "lstm"}, {"residual_scale": [0.5, 2.0]}, 1),
    ({"kind": "gru"}, {"layers": [1, 2]}, 2),
    ({"kind": "mlp"}, {"residual_scale": [0.5, 2.0]}, 1),  # without residual connections s does nothing
    ({"kind": "mlp", "residual": True}, {"residual_scale": [0.5, 2.0]}, 2),
])  # fmt: skip
def test_irrelevant_cures_fields_are_reset_so_duplicates_are_one_run(base, axes, runs):
    task = {} if base["kind"] == "mlp" else {"task": {"name": "adding", "T": 8}}
    grid = config.from_dict({"model": base, "sweep": axes, **task}).grid()
    assert len(grid) == runs, grid
    if runs == 1:
        defaults = {key: FIELDS[key].default for key in (config.canonical_key(k, "") for k in axes)}
        assert {key: grid[0][key] for key in defaults} == defaults


def test_adding_the_cures_fields_keeps_every_existing_run_id():
    """The ids computed before model.layers, norm, residual and residual_scale existed (the code at 64f154a),
    and every committed results folder's runs table, which is keyed by them (its config.toml as run)."""
    before = {
        "215bf59eb32f": {},
        "661e0a014141": {"model": {"kind": "lstm"}, "task": {"name": "adding", "T": 20}},
        "c5cd4aacba9d": {"model": {"kind": "rnn", "activation": "relu"}, "task": {"name": "copy_memory", "T": 20}},
    }
    for rid, data in before.items():
        assert config.run_id(config.from_dict(data).grid()[0]) == rid, data
    pd = pytest.importorskip("pandas")
    stores = [p.parent for p in (Path(__file__).resolve().parent.parent / "results").glob("*/runs.parquet")]
    checked = 0
    for store in stores:
        if (store / "config.toml").is_file():
            ids = {config.run_id(c) for c in config.load(store / "config.toml").grid()}
            assert ids == set(pd.read_parquet(store / "runs.parquet", columns=["run_id"])["run_id"]), store.name
            checked += 1
    assert checked >= 1 or not stores


def test_a_cures_field_off_its_default_changes_the_id_and_at_its_default_is_not_hashed():
    base = config.from_dict({}).grid()[0]
    ids = {config.run_id(base)}
    for key, value in [("model.norm", "layer"), ("model.norm", "batch"), ("model.residual", True)]:
        ids.add(config.run_id(config.resolve({**base, key: value})))
    ids.add(config.run_id(config.resolve({**base, "model.residual": True, "model.residual_scale": 0.5})))
    seq = config.from_dict({"model": {"kind": "gru"}, "task": {"name": "adding", "T": 8}}).grid()[0]
    ids |= {config.run_id(seq), config.run_id(config.resolve({**seq, "model.layers": 2}))}
    assert len(ids) == 7
    assert set(schema.hashed(base)) == set(base) - {k for k, f in FIELDS.items() if f.since > 1}
    assert [k for k, f in FIELDS.items() if f.since == 2] == ["model.layers", "model.norm", "model.residual", "model.residual_scale"]


def test_the_cures_fields_round_trip_through_toml(tmp_path):
    e = config.from_dict({"model": {"norm": "batch", "residual": True, "residual_scale": 0.5}, "sweep": {"depth": [2, 3]}})
    path = tmp_path / "x.toml"
    path.write_text(config.to_toml(e))
    assert [config.run_id(c) for c in config.load(path).grid()] == [config.run_id(c) for c in e.grid()]
    assert config.load(path, ["layers=3", "kind=gru", "task.name=adding", "task.T=8"]).grid()[0]["model.layers"] == 3
