"""Tasks: the structure of their examples, their targets and their baselines."""

import math

import numpy as np
import pytest

from gradlab import tasks
from gradlab.nn import losses

N = 20_000  # examples for the statistical checks; tolerances below are > 4 standard errors


def draw(task, n=N, seed=0):
    return task.sample(np.random.default_rng(seed), n)


@pytest.mark.parametrize("name", tasks.SYNTHETIC)  # the file task: tests/test_file_task.py
def test_shapes_and_held_out_set_is_fixed(name):
    task = tasks.get(name)
    x, y = draw(task, 64)
    if task.kind == "sequence":
        assert x.ndim == 3 and x.shape[2] == task.input_size
        lead = (64,) if task.output == "last" else (64, x.shape[1])
        assert y.shape[: len(lead)] == lead, f"{name}: targets {y.shape} for outputs on {task.output!r} steps"
    else:
        assert x.shape == (64, task.input_size)
    a, b = task.held_out(100), task.held_out(100)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]), f"{name}: held-out set changed between calls"
    assert not np.array_equal(task.held_out(100, seed=1)[0], a[0]), f"{name}: held-out seed ignored"


@pytest.mark.parametrize("name", tasks.SYNTHETIC)  # the file task: tests/test_file_task.py
def test_baseline_is_the_loss_of_the_best_constant_prediction(name):
    task = tasks.get(name)
    x, y = draw(task)
    if task.loss == "mse":
        out = np.broadcast_to(y.mean(axis=0), y.shape)
    elif name == "copy_memory":
        out = np.zeros(y.shape + (10,))
        out[:, : -10, 1:] = -np.inf  # certain of the blank ...
        out[:, -10:, 0] = out[:, -10:, 9] = -np.inf  # ... then uniform over the 8 symbols
        out = np.where(np.isinf(out), -1e9, out)
    else:
        out = np.zeros(y.shape + (task.output_size,))
    loss, _ = losses.get(task.loss)(out, y)
    assert loss == pytest.approx(task.baseline_loss, rel=0.03), f"{name}: measured {loss}, baseline {task.baseline_loss}"


def test_adding_le2015_markers_one_per_half_and_target_is_their_sum():
    task = tasks.get("adding", T=30)
    x, y = draw(task, 1000)
    marks = x[:, :, 1] == 1
    assert (marks.sum(axis=1) == 2).all()
    assert (marks[:, :15].sum(axis=1) == 1).all() and (marks[:, 15:].sum(axis=1) == 1).all()
    np.testing.assert_allclose(y[:, 0], (x[:, :, 0] * marks).sum(axis=1), rtol=0, atol=1e-15)
    assert x[:, :, 0].min() >= 0 and x[:, :, 0].max() <= 1
    assert task.baseline_mse == pytest.approx(np.var(draw(task)[1]), abs=0.005)  # se of the variance ~0.0015


def test_adding_hochreiter1997_markers_and_target():
    task = tasks.get("adding", T=40, variant="hochreiter1997")
    x, y = draw(task, 2000)
    marks = x[:, :, 1] == 1
    first = marks.argmax(axis=1)
    assert (marks.sum(axis=1) == 2).all()
    assert (marks[:, : 40 // 2 - 1].sum(axis=1) == 2).all(), "both markers lie in the first T/2 - 1 steps"
    assert (first < 10).all()
    ends = x[:, [0, -1], 1]
    assert ((ends == -1) | (ends == 1)).all(), "first and last steps carry -1 unless marked"
    values = np.where(np.arange(40) == 0, 0.0, x[:, :, 0])  # X = 0 when step 0 is marked
    np.testing.assert_allclose(y[:, 0], 0.5 + (values * marks).sum(axis=1) / 4, atol=1e-15)
    assert task.baseline_mse == pytest.approx(np.var(draw(task)[1]), abs=0.0015)  # se ~0.0004
    correct = task.metrics(y + 0.03, y)["accuracy"], task.metrics(y + 0.05, y)["accuracy"]
    assert correct == (1.0, 0.0), "correct means |error| < 0.04"


def test_temporal_order_label_is_the_order_of_x_and_y():
    task = tasks.get("temporal_order", T=60)
    x, y = draw(task, 2000)
    symbols = x.argmax(axis=2)
    assert (x.sum(axis=2) == 1).all(), "one-hot inputs"
    assert (symbols[:, 0] == 6).all() and (symbols[:, -1] == 7).all(), "E first, B last"
    pos = [np.flatnonzero((s >= 4) & (s <= 5)) for s in symbols]
    assert all(len(p) == 2 and 6 <= p[0] < 12 and 30 <= p[1] < 36 for p in pos)
    decoded = np.array([2 * (s[p[0]] - 4) + (s[p[1]] - 4) for s, p in zip(symbols, pos)])
    assert np.array_equal(decoded, y)
    assert np.bincount(y, minlength=4).min() > 400, "classes are balanced (expected 500 each)"


def test_copy_memory_target_repeats_the_first_ten_symbols_after_the_delimiter():
    task = tasks.get("copy_memory", T=15)
    x, y = draw(task, 500)
    symbols = x.argmax(axis=2)
    assert x.shape[1] == 15 + 20
    assert (symbols[:, 10 + 15 - 1] == 9).all(), "delimiter at step T + 9"
    assert np.array_equal(y[:, -10:], symbols[:, :10])
    assert (y[:, :-10] == 0).all() and (symbols[:, 10:-11] == 0).all()
    assert task.baseline_loss == pytest.approx(10 * math.log(8) / 35)


def test_teacher_student_is_fixed_by_its_seed():
    a, b, c = (tasks.get("teacher_student", seed=s) for s in (0, 0, 1))
    x = np.random.default_rng(3).normal(size=(10, 16))
    assert np.array_equal(a.teacher.forward(x)[0], b.teacher.forward(x)[0])
    assert not np.allclose(a.teacher.forward(x)[0], c.teacher.forward(x)[0])


def test_two_spirals_classes_are_rotations_of_each_other():
    task = tasks.get("two_spirals", noise=0.0)
    x, y = draw(task, 4000)
    radius = np.linalg.norm(x, axis=1)
    angle = np.arctan2(x[:, 1], x[:, 0])
    # on the spiral, angle = 2 pi turns r + pi y (mod 2 pi)
    residual = np.angle(np.exp(1j * (angle - 2 * math.pi * 1.5 * radius - math.pi * y)))
    assert np.abs(residual).max() < 1e-9


def test_abs_value_targets_and_baseline():
    task = tasks.get("abs_value")
    x, y = draw(task)
    a = math.sqrt(3)
    assert x.shape == (N, 1) and y.shape == (N, 1)
    assert x.min() >= -a and x.max() <= a, "x ~ U[-sqrt(3), sqrt(3)]"
    np.testing.assert_array_equal(y, np.abs(x))
    # Var[x] = a^2 / 3 = 1; sd of a variance estimate of U[-a, a] from N draws: sqrt(4/5 / N) ~ 0.0063
    assert x.var() == pytest.approx(1.0, abs=0.03)
    # |x| ~ U[0, a]: the best constant is E|x| = a/2 and its loss 1/2 Var|x| = 1/2 a^2 / 12 = 1/8 exactly;
    # measured: mean sd ~0.0035, 1/2 variance sd ~0.0008 at N = 20000
    assert task.baseline_loss == pytest.approx(1 / 8, rel=1e-12)
    assert y.mean() == pytest.approx(a / 2, abs=0.015)
    assert 0.5 * y.var() == pytest.approx(1 / 8, abs=0.004)


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("adding", {"T": 0}, "T must be a positive integer"),
        ("adding", {"variant": "le"}, "variant must be one of le2015, hochreiter1997"),
        ("adding", {"T": 10, "variant": "hochreiter1997"}, "T must be at least 22"),
        ("temporal_order", {"T": 5}, "T must be at least 10"),
        ("gaussian_blobs", {"classes": 0}, "classes must be a positive integer"),
        ("mnist", {}, "task must be one of adding"),
    ],
)
def test_bad_options_name_the_problem(name, options, message):
    with pytest.raises(ValueError, match=message) as err:
        tasks.get(name, **options)
    assert "\n" not in str(err.value)


SEQUENCE = [("adding", "le2015", 4), ("adding", "hochreiter1997", 22), ("temporal_order", None, 10), ("copy_memory", None, 1)]


@pytest.mark.parametrize("name, variant, need", SEQUENCE)
def test_each_sequence_task_owns_its_minimum_T_and_its_constructor_enforces_it(name, variant, need):
    cls, options = tasks.TASKS[name], ({"variant": variant} if variant else {})
    assert cls.min_T(variant) == need
    task = tasks.get(name, T=need, **options)
    x, _ = draw(task, 50)
    assert x.shape[1] == need + (20 if name == "copy_memory" else 0)
    with pytest.raises(ValueError) as err:
        tasks.get(name, T=need - 1, **options)
    expected = "T must be a positive integer, got 0" if need == 1 else f"T must be at least {need} for {cls.label(variant)}, got {need - 1}"
    assert str(err.value) == expected


def _below_minimum(cls, T, **options):
    """A task built with T below its minimum, bypassing the constructor's check, to see what breaks."""
    task = cls(**options)  # the default T = 50 is above every minimum
    task.T = T
    return task


def test_below_its_minimum_each_task_breaks_its_own_rules():
    # temporal_order, T = 9: t1's window [T/10, 2T/10) is step 0, which overwrites the start symbol E
    x, _ = draw(_below_minimum(tasks.TemporalOrder, 9), 200)
    assert (x.argmax(axis=2)[:, 0] != 6).all()
    # adding hochreiter1997, T = 21: the first marker (among the first 10 steps) can fall outside the first T/2 - 1
    x, _ = draw(_below_minimum(tasks.Adding, 21, variant="hochreiter1997"), 2000)
    assert (x[:, 21 // 2 - 1 :, 1] == 1).any()
    # adding le2015, T = 3: the first half is one step, so the first marker is always there
    x, _ = draw(_below_minimum(tasks.Adding, 3), 200)
    assert (x[:, 0, 1] == 1).all()
    x, _ = draw(tasks.get("adding", T=4), 200)
    assert 0 < (x[:, 0, 1] == 1).mean() < 1, "at T = 4 the first marker's position is random"


def test_vector_tasks_have_no_sequence_minimum():
    assert all(cls.min_T() == 1 for cls in tasks.TASKS.values() if cls.kind == "vector")
