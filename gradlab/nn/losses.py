"""Losses. Each takes (output, target) and returns (loss, dL/d(output)).

Reduction: the last axis holds the features of one prediction and is summed; every other axis
(the batch, and time for a loss on every step) is averaged. With M = number of predictions:

    mse           L = 1/M sum_m 1/2 ||a_m - y_m||^2     dL/da = (a - y) / M        (seeds 001, 002)
    sum_squares   L = 1/M sum_m ||a_m - y_m||^2         dL/da = 2 (a - y) / M      (seed 000's C0)
    cross_entropy L = -1/M sum_m log softmax(a_m)[y_m]  dL/da = (softmax(a) - onehot(y)) / M
    bce           L = 1/M sum_m sum_j softplus(a) - y a  dL/da = (sigmoid(a) - y) / M
                  (binary cross-entropy on logits a, targets y in [0, 1])

cross_entropy takes integer class labels of the output's shape without its last axis.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from gradlab.nn import _checks
from gradlab.nn.activations import SIGMOID

Array = np.ndarray
Loss = Callable[[Array, Array], tuple[float, Array]]


def _rows(a: Array) -> int:
    return int(np.prod(a.shape[:-1]))


def _same_shape(a: Array, y: Array) -> Array:
    y = np.asarray(y, dtype=a.dtype)
    _checks.array_shape("target", y, a.shape, "output.shape")
    return y


@np.errstate(all="ignore")  # overflow is a result: inf/NaN losses are returned
def mse(a: Array, y: Array) -> tuple[float, Array]:
    """1/2 squared error, summed over features, averaged over predictions."""
    diff = a - _same_shape(a, y)  # a - y
    m = _rows(a)
    return float(0.5 * np.vdot(diff, diff) / m), diff / m


@np.errstate(all="ignore")
def sum_squares(a: Array, y: Array) -> tuple[float, Array]:
    """Seed 000's C0 = sum_j (a_j - y_j)^2 per prediction, averaged over predictions."""
    diff = a - _same_shape(a, y)
    m = _rows(a)
    return float(np.vdot(diff, diff) / m), 2.0 * diff / m


@np.errstate(all="ignore")
def cross_entropy(a: Array, y: Array) -> tuple[float, Array]:
    """Softmax cross-entropy on logits a (..., C) with integer labels y (...)."""
    y = np.asarray(y)
    if y.shape != a.shape[:-1] or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"target must be integer labels of shape {a.shape[:-1]}, got {y.dtype} {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= a.shape[-1]):
        raise ValueError(f"target labels must be in [0, {a.shape[-1] - 1}], got {y.min()}..{y.max()}")
    shifted = a - a.max(axis=-1, keepdims=True)  # log-sum-exp trick
    log_p = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))  # log softmax
    m = _rows(a)
    log_p_true = np.take_along_axis(log_p, y[..., None], axis=-1)
    grad = np.exp(log_p)  # softmax(a) ...
    np.put_along_axis(grad, y[..., None], np.take_along_axis(grad, y[..., None], axis=-1) - 1.0, axis=-1)  # - onehot
    return float(-log_p_true.sum() / m), grad / m


@np.errstate(all="ignore")
def bce(a: Array, y: Array) -> tuple[float, Array]:
    """Binary cross-entropy on logits: -[y log sigmoid(a) + (1 - y) log(1 - sigmoid(a))]."""
    y = _same_shape(a, y)
    m = _rows(a)
    softplus = np.logaddexp(0.0, a)  # log(1 + e^a), stable
    return float((softplus - y * a).sum() / m), (SIGMOID.forward(a) - y) / m


LOSSES: dict[str, Loss] = {"mse": mse, "sum_squares": sum_squares, "cross_entropy": cross_entropy, "bce": bce}
NAMES = tuple(LOSSES)


def get(name: str) -> Loss:
    """The loss called `name` (one of NAMES)."""
    return LOSSES[_checks.choice("loss", name, NAMES)]
