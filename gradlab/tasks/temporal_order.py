"""Pascanu et al. 2013's temporal order problem (Hochreiter and Schmidhuber 1997, task 6a).

A sequence of T one-hot symbols from {a, b, c, d, X, Y, E, B}: E first, B (the trigger) last,
distractors a-d elsewhere except two positions t1 in [T/10, 2T/10) and t2 in [5T/10, 6T/10) holding
X or Y. The class (4, cross-entropy on the last step) is the ordered pair: XX, XY, YX, YY.
Guessing gives loss ln 4 and accuracy 1/4.
"""

from __future__ import annotations

import math

import numpy as np

from gradlab.tasks.base import Array, Task

SYMBOLS = ("a", "b", "c", "d", "X", "Y", "E", "B")


class TemporalOrder(Task):
    name, kind, input_size, output_size, output, loss = "temporal_order", "sequence", 8, 4, "last", "cross_entropy"
    baseline_loss = math.log(4)
    MIN_T = 10  # below 10, t1's window [T/10, 2T/10) starts at step 0 and overwrites the start symbol E

    def __init__(self, T: int = 50) -> None:
        self.T = self.check_T(T)

    def sample(self, rng: np.random.Generator, n: int) -> tuple[Array, Array]:
        T, rows = self.T, np.arange(n)
        symbols = rng.integers(0, 4, size=(n, T))  # distractors a-d
        symbols[:, 0], symbols[:, -1] = 6, 7  # E ... B
        t1 = rng.integers(T // 10, max(2 * T // 10, T // 10 + 1), size=n)
        t2 = rng.integers(5 * T // 10, max(6 * T // 10, 5 * T // 10 + 1), size=n)
        first, second = rng.integers(0, 2, size=n), rng.integers(0, 2, size=n)  # 0 = X, 1 = Y
        symbols[rows, t1], symbols[rows, t2] = 4 + first, 4 + second
        return np.eye(8)[symbols], 2 * first + second
