"""Learning-rate schedules: the rate of optimizer step t (t = 0, 1, ..., steps - 1) from the base rate lr.

    constant  lr_t = lr
    step      lr_t = lr * decay^floor(t / decay_every)
    cosine    lr_t = min_lr + (lr - min_lr) (1 + cos(pi t / steps)) / 2     (PyTorch's CosineAnnealingLR, T_max = steps)
    warmup    lr_t = lr * min(1, (t + 1) / warmup_steps)                     (linear warmup, then constant)

Each is a pure function of plain floats, so a run alone and an ensemble member (whose rate is one entry
of the optimizer's per-member array) get the same float at every step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

from gradlab.nn import _checks


def constant(t: int, lr: float) -> float:
    """lr_t = lr."""
    return lr


def step_decay(t: int, lr: float, decay_every: int, decay: float) -> float:
    """lr_t = lr * decay^floor(t / decay_every): multiplied by `decay` every `decay_every` steps."""
    return lr * decay ** (t // decay_every)


def cosine(t: int, lr: float, steps: int, min_lr: float) -> float:
    """lr_t = min_lr + (lr - min_lr) (1 + cos(pi t / steps)) / 2: from lr at t = 0 down towards min_lr at t = steps."""
    return min_lr + (lr - min_lr) * (1 + math.cos(math.pi * t / steps)) / 2


def warmup(t: int, lr: float, warmup_steps: int) -> float:
    """lr_t = lr * min(1, (t + 1) / warmup_steps): lr / warmup_steps at t = 0, lr from t = warmup_steps - 1 on."""
    return lr * min(1.0, (t + 1) / warmup_steps)


NAMES = ("constant", "step", "cosine", "warmup")


def get(
    name: str, lr: float, *, steps: int = 1, decay_every: int = 1, decay: float = 1.0, warmup_steps: int = 1,
    min_lr: float = 0.0,
) -> Callable[[int], float]:  # fmt: skip
    """The schedule called `name` (one of NAMES) as a function t -> lr_t, with its own parameters bound
    (the others are ignored): step uses decay_every and decay, cosine steps and min_lr, warmup warmup_steps."""
    _checks.choice("schedule", name, NAMES)
    lr = float(lr)
    if name == "step":
        return partial(step_decay, lr=lr, decay_every=_checks.positive_int("decay_every", decay_every),
                       decay=_checks.positive("decay", decay))  # fmt: skip
    if name == "cosine":
        return partial(cosine, lr=lr, steps=_checks.positive_int("steps", steps),
                       min_lr=_checks.non_negative("min_lr", min_lr))  # fmt: skip
    if name == "warmup":
        return partial(warmup, lr=lr, warmup_steps=_checks.positive_int("warmup_steps", warmup_steps))
    return partial(constant, lr=lr)
