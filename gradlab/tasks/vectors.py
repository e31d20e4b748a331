"""Tasks for MLPs: teacher-student regression, Gaussian blobs, two spirals, the absolute value."""

from __future__ import annotations

import math

import numpy as np

from gradlab.nn import _checks
from gradlab.nn.mlp import MLP
from gradlab.tasks.base import Array, Task


class TeacherStudent(Task):
    """Regression onto a fixed random teacher MLP (tanh, `teacher_depth` hidden layers of `teacher_width`,
    He-scaled so its output does not vanish) from x ~ N(0, I_D). MSE; the baseline is predicting the
    teacher's mean output: 1/2 Var[y] per output, estimated on 10^5 draws."""

    name, kind, loss = "teacher_student", "vector", "mse"

    def __init__(self, input_size: int = 16, output_size: int = 1, teacher_width: int = 32,
                 teacher_depth: int = 2, seed: int = 0) -> None:  # fmt: skip
        self.input_size = _checks.positive_int("input_size", input_size)
        self.output_size = _checks.positive_int("output_size", output_size)
        sizes = [self.input_size] + [_checks.positive_int("teacher_width", teacher_width)] * teacher_depth + [self.output_size]
        self.teacher = MLP(sizes, "tanh", init="xavier_normal", gain=5 / 3, rng=np.random.default_rng([0x7EAC, seed]))
        _, y = self.sample(np.random.default_rng([0xBA5E, seed]), 100_000)
        self.baseline_loss = float(0.5 * y.var(axis=0).sum())

    def sample(self, rng: np.random.Generator, n: int) -> tuple[Array, Array]:
        x = rng.normal(size=(n, self.input_size))
        return x, self.teacher.forward(x)[0]


class GaussianBlobs(Task):
    """`classes` isotropic Gaussian blobs (std 1) in D dimensions with centres N(0, spread^2 I), fixed
    by seed. Cross-entropy; guessing gives ln(classes)."""

    name, kind, loss = "gaussian_blobs", "vector", "cross_entropy"

    def __init__(self, input_size: int = 16, classes: int = 4, spread: float = 2.0, seed: int = 0) -> None:
        self.input_size = _checks.positive_int("input_size", input_size)
        self.output_size = _checks.positive_int("classes", classes)
        self.centres = np.random.default_rng([0xB10B, seed]).normal(0, _checks.positive("spread", spread), (classes, input_size))
        self.baseline_loss = math.log(classes)

    def sample(self, rng: np.random.Generator, n: int) -> tuple[Array, Array]:
        y = rng.integers(0, self.output_size, size=n)
        return self.centres[y] + rng.normal(size=(n, self.input_size)), y


class TwoSpirals(Task):
    """Two interleaved spirals in the plane (radius up to 1, `turns` turns, noise std 0.02); two classes,
    cross-entropy; guessing gives ln 2."""

    name, kind, input_size, output_size, loss = "two_spirals", "vector", 2, 2, "cross_entropy"
    baseline_loss = math.log(2)

    def __init__(self, turns: float = 1.5, noise: float = 0.02) -> None:
        self.turns = _checks.positive("turns", turns)
        self.noise = _checks.non_negative("noise", noise)

    def sample(self, rng: np.random.Generator, n: int) -> tuple[Array, Array]:
        y = rng.integers(0, 2, size=n)
        r = np.sqrt(rng.uniform(0.0, 1.0, size=n))  # uniform along the arm's area
        angle = 2 * math.pi * self.turns * r + math.pi * y
        x = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)
        return x + rng.normal(0, self.noise, size=x.shape), y


class AbsValue(Task):
    """The absolute value |x| of x ~ U[-sqrt(3), sqrt(3)] (unit variance), one input and one output
    (Lu, Shin, Su and Karniadakis 2019's dying-ReLU example). MSE; the baseline is predicting the mean
    E|x| = sqrt(3)/2: |x| ~ U[0, sqrt(3)], so 1/2 Var|x| = 1/2 (sqrt(3))^2 / 12 = 1/8."""

    name, kind, input_size, output_size, loss = "abs_value", "vector", 1, 1, "mse"
    half_width = math.sqrt(3.0)  # x ~ U[-a, a] with a = sqrt(3): Var[x] = a^2 / 3 = 1
    baseline_loss = 0.5 * half_width**2 / 12.0  # 1/2 Var|x|, |x| ~ U[0, a]: Var = a^2 / 12

    def sample(self, rng: np.random.Generator, n: int) -> tuple[Array, Array]:
        x = rng.uniform(-self.half_width, self.half_width, size=(n, 1))
        return x, np.abs(x)
