"""The adding problem: remember two marked values across T steps and output their sum.

Input (N, T, 2): channel 0 the values, channel 1 the markers. Loss on the last step, MSE.
"""

from __future__ import annotations

import numpy as np

from gradlab.nn import _checks
from gradlab.tasks.base import Array, Task


class Adding(Task):
    """variant="le2015" (Le, Jaitly, Hinton 2015): values U[0, 1]; one marker uniformly in the first
    half, one in the second half; target their sum. Predicting the mean (1) has MSE Var = 2/12 = 1/6.

    variant="hochreiter1997" (Hochreiter and Schmidhuber 1997, experiment 4): values U[-1, 1]; the
    first marker among the first 10 steps, the second among the first T/2 - 1 steps not yet marked;
    the first and last steps carry marker -1 unless marked; X1 = 0 if step 0 is marked; target
    0.5 + (X1 + X2)/4; an example is correct when |error| < 0.04. Here T is fixed (the paper draws
    lengths in [T, 1.1 T]). Predicting 0.5 has MSE Var[y] = (E[X1^2] + E[X2^2]) / 16 with
    E[X^2] = P(X not zeroed) / 3: slightly below 1/24 because a marked step 0 contributes nothing.
    """

    kind, input_size, output_size, output, loss = "sequence", 2, 1, "last", "mse"
    # le2015: at least two candidate steps in each half (with one, a marker's position is fixed);
    # hochreiter1997: the first marker's 10 candidate steps lie within the first T/2 - 1 (T // 2 - 1 >= 10)
    MIN_T_BY_VARIANT = {"le2015": 4, "hochreiter1997": 22}
    VARIANTS = tuple(MIN_T_BY_VARIANT)

    @classmethod
    def min_T(cls, variant: str | None = "le2015") -> int:
        """The shortest T of a variant: 4 for le2015, 22 for hochreiter1997."""
        return cls.MIN_T_BY_VARIANT[_checks.choice("variant", variant, cls.VARIANTS)]

    @classmethod
    def label(cls, variant: str | None = "le2015") -> str:
        """'adding (variant le2015)': the task and its variant, for messages."""
        return f"adding (variant {variant})"

    def __init__(self, T: int = 50, variant: str = "le2015") -> None:
        self.variant = _checks.choice("variant", variant, self.VARIANTS)
        self.T = self.check_T(T, variant)
        self.name = f"adding_{variant}"
        if variant == "le2015":
            self.baseline_mse = 1 / 6  # Var[x1 + x2] with x ~ U[0, 1]
        else:
            p_first_zero = 1 / 10  # step 0 among the first 10
            p_second_zero = (1 - p_first_zero) / (self.T // 2 - 2)  # step 0 among the other candidates
            self.baseline_mse = ((1 - p_first_zero) + (1 - p_second_zero)) / 3 / 16
        self.baseline_loss = self.baseline_mse / 2  # gradlab's mse carries the factor 1/2

    def sample(self, rng: np.random.Generator, n: int) -> tuple[Array, Array]:
        T, rows = self.T, np.arange(n)
        x = np.zeros((n, T, 2))
        if self.variant == "le2015":
            x[:, :, 0] = rng.uniform(0.0, 1.0, size=(n, T))
            first = rng.integers(0, T // 2, size=n)
            second = rng.integers(T // 2, T, size=n)
            x[rows, first, 1] = x[rows, second, 1] = 1.0
            y = x[rows, first, 0] + x[rows, second, 0]
        else:
            x[:, :, 0] = rng.uniform(-1.0, 1.0, size=(n, T))
            x[:, 0, 1] = x[:, -1, 1] = -1.0
            first = rng.integers(0, 10, size=n)
            # the second marker: uniform over the first T/2 - 1 steps other than `first`
            second = rng.integers(0, T // 2 - 2, size=n)
            second += second >= first
            x[rows, first, 1] = x[rows, second, 1] = 1.0
            x1 = np.where(first == 0, 0.0, x[rows, first, 0])
            x2 = np.where(second == 0, 0.0, x[rows, second, 0])
            y = 0.5 + (x1 + x2) / 4.0
        return x, y[:, None]

    def metrics(self, out: Array, y: Array) -> dict[str, float]:
        scores = super().metrics(out, y)
        if self.variant == "hochreiter1997":
            scores["accuracy"] = float(np.mean(np.abs(out - y) < 0.04))
        return scores
