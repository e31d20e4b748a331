"""The steps table's rows: a handful of scalars the training loop computes at every step anyway
(recorded at every step, so that the first non-finite step is exact)."""

from __future__ import annotations


def step_record(
    step: int, loss: float, grad_norm: float, grad_norm_clipped: float, lr: float, clipped: bool | None = None,
    collapsed: bool | None = None,
) -> tuple:
    """One row of the steps table (without run_id). `clipped` defaults to grad_norm_clipped <
    grad_norm (false when either is NaN); `collapsed` is None (NA) unless the probe set was run."""
    if clipped is None:
        clipped = bool(grad_norm_clipped < grad_norm)
    return (int(step), float(loss), float(grad_norm), float(grad_norm_clipped), bool(clipped), float(lr), collapsed)
