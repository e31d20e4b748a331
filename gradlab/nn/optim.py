"""SGD-family optimizers with PyTorch's update rules. Each updates the parameter arrays in place.

    sgd       p <- p - lr g
    momentum  v <- mu v + g;  p <- p - lr v
    adam      m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
              p <- p - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

Every rule is elementwise, so in an ensemble each member is updated on its own; lr and momentum may
also be one value per member, (R,) arrays, when every parameter has the member axis first.
"""

from __future__ import annotations

import numpy as np

from gradlab.nn import _checks, members

Array = np.ndarray


_BLOCK = 1 << 16  # elements per block of _subtract_scaled


def _per_member(name: str, value, params: dict[str, Array], bound_below_one: bool = False) -> float | Array:
    """A setting as a float, or as an (R,) array of one value per ensemble member (params' first axis), each checked."""
    values = None
    if np.ndim(value):
        first = next(iter(params.values()), None)
        values = members.check_count(name, np.asarray(value, dtype=np.float64), 0 if first is None or first.ndim == 0 else len(first))
    for v in (value,) if values is None else values:
        if bound_below_one:
            if not 0 <= _checks.non_negative(name, float(v)) < 1:
                raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
        else:
            _checks.positive(name, float(v))
    return float(value) if values is None else values


def _shaped(value: float | Array, p: Array) -> float | Array:
    """A per-member setting broadcastable against the parameter p (member axis first)."""
    return value if np.ndim(value) == 0 else value.reshape(-1, *([1] * (p.ndim - 1)))


def _subtract_scaled(p: Array, lr: float | Array, g: Array) -> None:
    """p -= lr * g in place, a block at a time: a temporary lr * g as big as p would be fresh memory at every
    step (from 32 MiB, e.g. a float64 2048 x 2048 weight, glibc maps and zeroes a new one each time)."""
    if np.ndim(lr):
        p -= _shaped(lr, p) * g
        return
    if p.size <= _BLOCK or not (p.flags.c_contiguous and g.flags.c_contiguous):
        p -= lr * g
        return
    p_flat, g_flat = p.reshape(-1), g.reshape(-1)
    buf = np.empty(_BLOCK, dtype=np.result_type(p, g))
    for start in range(0, p.size, _BLOCK):
        step = np.multiply(g_flat[start : start + _BLOCK], lr, out=buf[: min(_BLOCK, p.size - start)])
        p_flat[start : start + _BLOCK] -= step


class SGD:
    """Plain SGD, or SGD with (heavy-ball) momentum mu when momentum > 0."""

    def __init__(self, params: dict[str, Array], lr: float | Array, momentum: float | Array = 0.0) -> None:
        self.params = params
        self.lr = _per_member("lr", lr, params)
        self.momentum = _per_member("momentum", momentum, params, bound_below_one=True)
        self.velocity = {k: np.zeros_like(p) for k, p in params.items()} if np.any(self.momentum) else {}

    @np.errstate(all="ignore")
    def step(self, grads: dict[str, Array]) -> None:
        for name, p in self.params.items():
            g = grads[name]
            if self.velocity:
                v = self.velocity[name]
                v *= _shaped(self.momentum, v)  # v <- mu v + g
                v += g
                g = v
            _subtract_scaled(p, self.lr, g)  # p <- p - lr g


class Adam:
    """Adam (Kingma and Ba 2015) with bias correction, as torch.optim.Adam."""

    def __init__(
        self, params: dict[str, Array], lr: float | Array = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ) -> None:
        self.params = params
        self.lr = _per_member("lr", lr, params)
        for name, b in zip(("betas[0]", "betas[1]"), betas):
            if not 0 <= _checks.non_negative(name, b) < 1:
                raise ValueError(f"{name} must be a number in [0, 1), got {b!r}")
        self.betas = betas
        self.eps = _checks.positive("eps", eps)
        self.t = 0
        self.m = {k: np.zeros_like(p) for k, p in params.items()}
        self.v = {k: np.zeros_like(p) for k, p in params.items()}

    @np.errstate(all="ignore")
    def step(self, grads: dict[str, Array]) -> None:
        b1, b2 = self.betas
        self.t += 1
        step_size = self.lr / (1 - b1**self.t)  # bias correction of m
        v_scale = 1.0 / np.sqrt(1 - b2**self.t)  # bias correction of sqrt(v)
        for name, p in self.params.items():
            g, m, v = grads[name], self.m[name], self.v[name]
            m *= b1  # m <- b1 m + (1 - b1) g
            m += (1 - b1) * g
            v *= b2  # v <- b2 v + (1 - b2) g^2
            v += (1 - b2) * g * g
            denom = np.sqrt(v)
            denom *= v_scale
            denom += self.eps
            p -= _shaped(step_size, p) * m / denom


NAMES = ("sgd", "momentum", "adam")


def get(name: str, params: dict[str, Array], lr: float | Array, momentum: float | Array = 0.9) -> SGD | Adam:
    """The optimizer called `name` (sgd, momentum, adam) over params; `momentum` is used by momentum only."""
    _checks.choice("optimizer", name, NAMES)
    if name == "adam":
        return Adam(params, lr)
    return SGD(params, lr, momentum if name == "momentum" else 0.0)
