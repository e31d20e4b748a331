"""Losses. Each takes (output, target) and returns (loss, dL/d(output)).

Reduction: the last axis holds the features of one prediction and is summed; every other axis
(the batch, and time for a loss on every step) is averaged. With M = number of predictions:

    mse           L = 1/M sum_m 1/2 ||a_m - y_m||^2     dL/da = (a - y) / M        (seeds 001, 002)
    sum_squares   L = 1/M sum_m ||a_m - y_m||^2         dL/da = 2 (a - y) / M      (seed 000's C0)
    cross_entropy L = -1/M sum_m log softmax(a_m)[y_m]  dL/da = (softmax(a) - onehot(y)) / M
    bce           L = 1/M sum_m sum_j softplus(a) - y a  dL/da = (sigmoid(a) - y) / M
                  (binary cross-entropy on logits a, targets y in [0, 1])

cross_entropy takes integer class labels of the output's shape without its last axis.

An ensemble's output has the member axis first: with lead=1 each member's loss is its own mean over its
predictions, the value is one loss per member (R,), and dL/da is each member's gradient. A target
without the member axis is shared by every member. Each member's value is the one its output alone gives,
bit for bit: its squares summed by np.vecdot of its row (the value of np.vdot alone), its other sums over
its own contiguous entries (gradlab.ensemble trains on these values, and tests compare them).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from gradlab.nn import _checks
from gradlab.nn.activations import SIGMOID

Array = np.ndarray
Loss = Callable[..., tuple[float | Array, Array]]  # (output, target, lead=0) -> (loss, dL/d(output))


def _rows(a: Array, lead: int) -> int:
    """M: the predictions of one member."""
    return int(np.prod(a.shape[lead:-1]))


def _total(values: Array, lead: int) -> float | Array:
    """The sum over all but the member axes: a float, or one value per member."""
    return float(values.sum()) if lead == 0 else values.sum(axis=tuple(range(lead, values.ndim)))


def _squares(d: Array, lead: int) -> np.floating | Array:
    """sum d^2 over all but the member axes: np.vdot alone; per member np.vecdot of its entries as one row."""
    if lead == 0:
        return np.vdot(d, d)
    rows = d.reshape(*d.shape[:lead], -1)
    return np.vecdot(rows, rows)


def _same_shape(a: Array, y: Array, lead: int) -> Array:
    y = np.asarray(y, dtype=a.dtype)
    if y.shape != a.shape:
        _checks.array_shape("target", y, a.shape[lead:], "output.shape" if lead == 0 else "output.shape or output.shape[1:]")
    return y


@np.errstate(all="ignore")  # overflow is a result: inf/NaN losses are returned
def mse(a: Array, y: Array, lead: int = 0) -> tuple[float | Array, Array]:
    """1/2 squared error, summed over features, averaged over predictions."""
    diff = a - _same_shape(a, y, lead)  # a - y
    m = _rows(a, lead)
    loss = 0.5 * _squares(diff, lead) / m
    return (float(loss) if lead == 0 else loss), diff / m


@np.errstate(all="ignore")
def sum_squares(a: Array, y: Array, lead: int = 0) -> tuple[float | Array, Array]:
    """Seed 000's C0 = sum_j (a_j - y_j)^2 per prediction, averaged over predictions."""
    diff = a - _same_shape(a, y, lead)
    m = _rows(a, lead)
    loss = _squares(diff, lead) / m
    return (float(loss) if lead == 0 else loss), 2.0 * diff / m


@np.errstate(all="ignore")
def cross_entropy(a: Array, y: Array, lead: int = 0) -> tuple[float | Array, Array]:
    """Softmax cross-entropy on logits a (..., C) with integer labels y (...)."""
    y = np.asarray(y)
    if y.shape not in (a.shape[:-1], a.shape[lead:-1]) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"target must be integer labels of shape {a.shape[:-1]}, got {y.dtype} {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= a.shape[-1]):
        raise ValueError(f"target labels must be in [0, {a.shape[-1] - 1}], got {y.min()}..{y.max()}")
    y = np.broadcast_to(y, a.shape[:-1])
    shifted = a - a.max(axis=-1, keepdims=True)  # log-sum-exp trick
    log_p = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))  # log softmax
    m = _rows(a, lead)
    log_p_true = np.take_along_axis(log_p, y[..., None], axis=-1)
    grad = np.exp(log_p)  # softmax(a) ...
    np.put_along_axis(grad, y[..., None], np.take_along_axis(grad, y[..., None], axis=-1) - 1.0, axis=-1)  # - onehot
    return -_total(log_p_true, lead) / m, grad / m


@np.errstate(all="ignore")
def bce(a: Array, y: Array, lead: int = 0) -> tuple[float | Array, Array]:
    """Binary cross-entropy on logits: -[y log sigmoid(a) + (1 - y) log(1 - sigmoid(a))]."""
    y = _same_shape(a, y, lead)
    m = _rows(a, lead)
    softplus = np.logaddexp(0.0, a)  # log(1 + e^a), stable
    return _total(softplus - y * a, lead) / m, (SIGMOID.forward(a) - y) / m


LOSSES: dict[str, Loss] = {"mse": mse, "sum_squares": sum_squares, "cross_entropy": cross_entropy, "bce": bce}
NAMES = tuple(LOSSES)


def get(name: str) -> Loss:
    """The loss called `name` (one of NAMES)."""
    return LOSSES[_checks.choice("loss", name, NAMES)]
