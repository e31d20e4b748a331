"""What every task provides: batches drawn from a Generator, a fixed held-out set, a trivial baseline."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from gradlab.nn import _checks

Array = np.ndarray
EVAL_SIZE = 512


class Task(ABC):
    """A supervised problem. `kind` is "sequence" (x is (N, T, D)) or "vector" (x is (N, D));
    `output` is where the loss sits for sequences ("last" or "all"); `loss` names a gradlab.nn loss;
    `baseline_loss` is that loss for the best constant prediction (in the loss's own units)."""

    name: str
    kind: str
    input_size: int
    output_size: int
    output: str = "last"
    loss: str
    baseline_loss: float
    MIN_T = 1  # sequence tasks: the shortest sequence length T they can build (see min_T)

    @classmethod
    def min_T(cls, variant: str | None = None) -> int:
        """The shortest sequence length T the task (and variant) can build: the one home of that rule."""
        return cls.MIN_T

    @classmethod
    def label(cls, variant: str | None = None) -> str:
        """The task's name for messages, with its variant when it has variants."""
        return cls.name

    @classmethod
    def check_T(cls, T: object, variant: str | None = None) -> int:
        """T as an int, or a one-line ValueError if it is not an integer >= min_T(variant)."""
        T = _checks.positive_int("T", T)
        if T < cls.min_T(variant):
            raise ValueError(f"T must be at least {cls.min_T(variant)} for {cls.label(variant)}, got {T}")
        return T

    @abstractmethod
    def sample(self, rng: np.random.Generator, n: int) -> tuple[Array, Array]:
        """A batch (x, y) of n examples drawn with rng."""

    def held_out(self, n: int = EVAL_SIZE, seed: int = 0) -> tuple[Array, Array]:
        """The fixed held-out set: the same n examples for a given seed, whatever the training draws."""
        return self.sample(np.random.default_rng([0x5EED, seed]), n)

    def metrics(self, out: Array, y: Array) -> dict[str, float]:
        """Task-specific scores of an output on (x, y); the loss itself is computed by the trainer."""
        if self.loss == "cross_entropy":
            return {"accuracy": float(np.mean(out.argmax(axis=-1) == y))}
        err = out - y
        return {"mse": float(np.mean(err * err))}
