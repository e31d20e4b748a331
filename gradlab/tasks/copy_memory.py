"""The copy-memory task (Hochreiter and Schmidhuber 1997; Arjovsky et al. 2016's form).

Input: 10 symbols from {1..8}, then T - 1 blanks (0), the delimiter 9, then 10 blanks: length T + 20,
one-hot over 10. Target at every step: blank (0) for the first T + 10 steps, then the 10 symbols.
Cross-entropy on every step. Predicting blanks and then uniformly over the 8 symbols gives
10 ln 8 / (T + 20), the baseline.
"""

from __future__ import annotations

import math

import numpy as np

from gradlab.tasks.base import Array, Task

MEMORY = 10


class CopyMemory(Task):
    name, kind, input_size, output_size, output, loss = "copy_memory", "sequence", 10, 10, "all", "cross_entropy"
    MIN_T = 1  # the delimiter sits at step MEMORY + T - 1, after the 10 symbols, for any T >= 1

    def __init__(self, T: int = 50) -> None:
        self.T = self.check_T(T)
        self.baseline_loss = MEMORY * math.log(8) / (self.T + 2 * MEMORY)

    def sample(self, rng: np.random.Generator, n: int) -> tuple[Array, Array]:
        T = self.T
        length = T + 2 * MEMORY
        data = rng.integers(1, 9, size=(n, MEMORY))
        symbols = np.zeros((n, length), dtype=np.int64)
        symbols[:, :MEMORY] = data
        symbols[:, MEMORY + T - 1] = 9  # the delimiter: start copying
        y = np.zeros((n, length), dtype=np.int64)
        y[:, -MEMORY:] = data
        return np.eye(10)[symbols], y

    def metrics(self, out: Array, y: Array) -> dict[str, float]:
        """Accuracy on the 10 recalled symbols only (the blanks are easy)."""
        return {"accuracy": float(np.mean(out[:, -MEMORY:].argmax(axis=-1) == y[:, -MEMORY:]))}
