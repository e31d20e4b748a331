"""SGD-family optimizers with PyTorch's update rules. Each updates the parameter arrays in place.

    sgd       p <- p - lr g
    momentum  v <- mu v + g;  p <- p - lr v
    adam      m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
              p <- p - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

Every rule is elementwise, so in an ensemble each member is updated on its own; lr and momentum may
also be one value per member, (R,) arrays, when every parameter has the member axis first.

Dropping members: opt.members(rows, params) is the optimizer of an ensemble of some of the members (rows,
an index into the member axis) whose parameters are params, with those members' settings and state (an
ensemble drops the members that have stopped: gradlab.ensemble).

Update norms: after `opt.measure_next(names)`, the next step() also stores ||p_after - p_before|| (the
update it applied, lr g, lr v or Adam's step; the norm over the whole array, all members together) of
each named parameter in `opt.update_norms` and ||p_after|| in `opt.param_norms`, taken while the step
has each block at hand, so that a probe needs no snapshot of the weights and no pass over them.

Small models of many arrays (at most FLAT_MAX entries in all, at least FLAT_MIN_PARAMS arrays, one dtype)
are stepped as one flat array: the gradients and weights are gathered into it, the same elementwise rule
runs once on the whole, and the weights are written back. Every entry's arithmetic is unchanged, so the
result is bit for bit the per-parameter step's; only the number of NumPy calls falls (a narrow 32-layer
net has 64 parameter arrays). Larger models keep the per-parameter loop, whose arrays stay in the cache.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext

import numpy as np

from gradlab import _process
from gradlab.nn import _checks, members

Array = np.ndarray


_BLOCK = 1 << 16  # elements per block of _subtract_scaled
FLAT_MAX = 1 << 14  # a model of at most this many entries in all ...
FLAT_MIN_PARAMS = 8  # ... and at least this many parameter arrays is stepped as one flat array (README, Performance)


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


def _subtract_scaled(p: Array, lr: float | Array, g: Array, measure: bool = False) -> tuple[float, float] | None:
    """p -= lr * g in place, a block at a time: a temporary lr * g as big as p would be fresh memory at every
    step (from 32 MiB, e.g. a float64 2048 x 2048 weight, glibc maps and zeroes a new one each time).
    measure: also return (||lr g||^2, ||p_after||^2), summed while each block is still in the cache."""
    if np.ndim(lr):
        step = _shaped(lr, p) * g
        p -= step
        return (_sq(step), _sq(p)) if measure else None
    if p.size <= _BLOCK or not (p.flags.c_contiguous and g.flags.c_contiguous):
        step = lr * g
        p -= step
        return (_sq(step), _sq(p)) if measure else None
    p_flat, g_flat = p.reshape(-1), g.reshape(-1)
    buf = np.empty(_BLOCK, dtype=np.result_type(p, g))
    sums = [0.0, 0.0]
    for start in range(0, p.size, _BLOCK):
        step = np.multiply(g_flat[start : start + _BLOCK], lr, out=buf[: min(_BLOCK, p.size - start)])
        block = p_flat[start : start + _BLOCK]
        block -= step
        if measure:
            sums[0] += _sq(step)
            sums[1] += _sq(block)
    return (sums[0], sums[1]) if measure else None


def _sq(a: Array) -> float:
    """||a||^2 over all entries, accumulated in float64: a float64 array's by BLAS's dot (the caller holds BLAS to
    one thread: _Measured._threads), any other dtype's by einsum."""
    flat = a.reshape(-1)
    if flat.dtype == np.float64:
        return float(np.dot(flat, flat))
    return float(np.einsum("i,i->", flat, flat, dtype=np.float64))


class _Layout:
    """Where each parameter sits in one flat array of all of them (parameters of one dtype): the optimizer's
    state lives in flat arrays with a view per parameter, and a small model's step runs on the flat arrays."""

    def __init__(self, params: dict[str, Array]) -> None:
        self.dtype = next(iter(params.values())).dtype
        self.shapes = {name: p.shape for name, p in params.items()}
        ends = np.cumsum([p.size for p in params.values()])
        self.slices = {name: slice(int(end) - p.size, int(end)) for (name, p), end in zip(params.items(), ends)}
        self.size = int(ends[-1])
        self.flat = self.size <= FLAT_MAX and len(params) >= FLAT_MIN_PARAMS
        self._gathered = [np.empty(self.size, self.dtype) for _ in range(2)] if self.flat else []
        self._member = _members_of(list(params.values())) if self.flat else None  # an index as long as the model: small ones only
        self._spread: dict[bytes, Array] = {}

    @staticmethod
    def of(params: dict[str, Array]) -> _Layout | None:
        """The layout of params, or None when there are none or their dtypes differ."""
        return _Layout(params) if len({p.dtype for p in params.values()}) == 1 else None

    def zeros(self) -> tuple[Array, dict[str, Array]]:
        """A flat state array of zeros and its view per parameter."""
        flat = np.zeros(self.size, self.dtype)
        return flat, {name: flat[sl].reshape(self.shapes[name]) for name, sl in self.slices.items()}

    def steps_flat(self, grads: dict[str, Array], *settings: float | Array) -> bool:
        """Whether this step runs on the flat arrays: a small model, gradients of its dtype, and settings
        that are floats or one value per member of an ensemble."""
        per_member = any(np.ndim(v) for v in settings)
        return (self.flat and (self._member is not None or not per_member)
                and all(grads[name].dtype == self.dtype for name in self.slices))  # fmt: skip

    def gather(self, arrays: dict[str, Array], which: int) -> Array:
        """The arrays' entries in one flat array (gathered buffer `which`, 0 or 1)."""
        return np.concatenate([arrays[name].reshape(-1) for name in self.slices], out=self._gathered[which])

    def scatter(self, flat: Array, params: dict[str, Array]) -> None:
        """Write a flat array's entries back into the parameter arrays, in place."""
        for name, sl in self.slices.items():
            params[name][...] = flat[sl].reshape(self.shapes[name])

    def spread(self, value: float | Array) -> float | Array:
        """A setting as one value per flat entry: a float stays a float, (R,) becomes each entry's member's
        (kept while the values stay the same: a learning rate is set anew at every step)."""
        if np.ndim(value) == 0:
            return value
        key = np.asarray(value).tobytes()
        if key not in self._spread:
            if len(self._spread) == 2:  # two settings are spread (SGD's lr and momentum): drop the older
                del self._spread[next(iter(self._spread))]
            self._spread[key] = value[self._member]
        return self._spread[key]


def _members_of(params: list[Array]) -> Array | None:
    """Each flat entry's ensemble member (the parameters' common first axis), or None without one."""
    if any(p.ndim == 0 or len(p) != len(params[0]) for p in params) or not len(params[0]):
        return None
    return np.concatenate([np.repeat(np.arange(len(p)), p.size // len(p)) for p in params])


def _rows(value: float | Array, rows: Array) -> float | Array:
    """A setting of the members `rows`: a float stays a float, an (R,) array is indexed."""
    return value if np.ndim(value) == 0 else value[rows]


def _momentum(v: Array, mu: float | Array, g: Array) -> Array:
    """v <- mu v + g, in place; returns v."""
    v *= mu
    v += g
    return v


def _adam_update(g: Array, m: Array, v: Array, step_size: float | Array, v_scale: float, betas: tuple[float, float], eps: float) -> Array:  # fmt: skip
    """Adam's update of one array, with m and v updated in place: step_size m / (sqrt(v) v_scale + eps)."""
    b1, b2 = betas
    m *= b1  # m <- b1 m + (1 - b1) g
    m += (1 - b1) * g
    v *= b2  # v <- b2 v + (1 - b2) g^2
    v += (1 - b2) * g * g
    denom = np.sqrt(v)
    denom *= v_scale
    denom += eps
    return step_size * m / denom


class _Measured:
    """What every optimizer shares: the update norms of the parameters named by measure_next."""

    _measure: frozenset[str] = frozenset()
    update_norms: dict[str, float] = {}
    param_norms: dict[str, float] = {}  # ||p_after|| of the measured parameters, where the step had them at hand

    def measure_next(self, names) -> None:
        """The next step() stores ||update|| of each named parameter in self.update_norms (a step after it none)."""
        unknown = sorted(set(names) - set(self.params))  # type: ignore[attr-defined]
        if unknown:
            raise ValueError(f"measure_next names parameters the optimizer does not have: {', '.join(unknown)}")
        self._measure, self.update_norms, self.param_norms = frozenset(names), {}, {}

    def _threads(self) -> AbstractContextManager:
        """One BLAS thread for a step that measures (_sq's dot: OpenBLAS threads a dot of more than 10000
        entries, and its second thread stalls whenever another process holds the core); else nothing."""
        return _process.single_threaded() if self._measure else nullcontext()

    def _record(self, name: str, sums: tuple[float, float] | None) -> None:
        """Record ||update|| and ||p_after|| from their squares (None: not measured)."""
        if sums is not None:
            self.update_norms[name], self.param_norms[name] = math.sqrt(sums[0]), math.sqrt(sums[1])

    def _subtract_flat(self, layout: _Layout, update: Array) -> None:
        """p <- p - update on the flat weights, written back; the measured parameters' norms; the step done."""
        p = layout.gather(self.params, 1)  # type: ignore[attr-defined]
        p -= update
        layout.scatter(p, self.params)  # type: ignore[attr-defined]
        for name in self._measure:
            sl = layout.slices[name]
            self._record(name, (_sq(update[sl]), _sq(p[sl])))
        self._done()

    def _done(self) -> None:
        """After a step: update_norms hold this step's norms, or nothing if it measured none."""
        if not self._measure:
            self.update_norms, self.param_norms = {}, {}
        self._measure = frozenset()


class SGD(_Measured):
    """Plain SGD, or SGD with (heavy-ball) momentum mu when momentum > 0."""

    def __init__(self, params: dict[str, Array], lr: float | Array, momentum: float | Array = 0.0) -> None:
        self.params = params
        self.lr = _per_member("lr", lr, params)
        self.momentum = _per_member("momentum", momentum, params, bound_below_one=True)
        self.layout = _Layout.of(params)
        self._velocity, self.velocity = None, {}
        if np.any(self.momentum) and self.layout is not None:
            self._velocity, self.velocity = self.layout.zeros()
        elif np.any(self.momentum):
            self.velocity = {k: np.zeros_like(p) for k, p in params.items()}

    @np.errstate(all="ignore")
    def step(self, grads: dict[str, Array]) -> None:
        with self._threads():
            self._step(grads)

    def _step(self, grads: dict[str, Array]) -> None:
        layout = self.layout
        if layout is not None and layout.steps_flat(grads, self.lr, self.momentum):
            g = layout.gather(grads, 0)
            if self._velocity is not None:
                g = _momentum(self._velocity, layout.spread(self.momentum), g)
            return self._subtract_flat(layout, layout.spread(self.lr) * g)  # p <- p - lr g
        for name, p in self.params.items():
            g = grads[name]
            if self.velocity:
                g = _momentum(self.velocity[name], _shaped(self.momentum, p), g)
            self._record(name, _subtract_scaled(p, self.lr, g, name in self._measure))  # p <- p - lr g
        self._done()

    def members(self, rows: Array, params: dict[str, Array]) -> SGD:
        """SGD over params (the ensemble of members `rows` of this one's), with their lr, momentum and velocity."""
        new = SGD(params, _rows(self.lr, rows), _rows(self.momentum, rows))
        for name, v in new.velocity.items():
            v[...] = self.velocity[name][rows]
        return new


class Adam(_Measured):
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
        self.layout = _Layout.of(params)
        if self.layout is not None:
            (self._m, self.m), (self._v, self.v) = self.layout.zeros(), self.layout.zeros()
        else:
            self.m = {k: np.zeros_like(p) for k, p in params.items()}
            self.v = {k: np.zeros_like(p) for k, p in params.items()}

    @np.errstate(all="ignore")
    def step(self, grads: dict[str, Array]) -> None:
        with self._threads():
            self._step(grads)

    def _step(self, grads: dict[str, Array]) -> None:
        b1, b2 = self.betas
        self.t += 1
        m_scale = 1 - b1**self.t  # bias correction of m: the step size is lr / m_scale
        v_scale = 1.0 / np.sqrt(1 - b2**self.t)  # bias correction of sqrt(v)
        layout = self.layout
        if layout is not None and layout.steps_flat(grads, self.lr):
            step_size = layout.spread(self.lr) / m_scale  # entry by entry: the same quotients as per member
            g = layout.gather(grads, 0)
            return self._subtract_flat(layout, _adam_update(g, self._m, self._v, step_size, v_scale, self.betas, self.eps))
        step_size = self.lr / m_scale
        for name, p in self.params.items():
            update = _adam_update(grads[name], self.m[name], self.v[name], _shaped(step_size, p), v_scale, self.betas, self.eps)
            p -= update
            self._record(name, (_sq(update), _sq(p)) if name in self._measure else None)
        self._done()

    def members(self, rows: Array, params: dict[str, Array]) -> Adam:
        """Adam over params (the ensemble of members `rows` of this one's), with their lr, moments and step count."""
        new = Adam(params, _rows(self.lr, rows), self.betas, self.eps)
        new.t = self.t
        for name in params:
            new.m[name][...], new.v[name][...] = self.m[name][rows], self.v[name][rows]
        return new


NAMES = ("sgd", "momentum", "adam")


def get(name: str, params: dict[str, Array], lr: float | Array, momentum: float | Array = 0.9) -> SGD | Adam:
    """The optimizer called `name` (sgd, momentum, adam) over params; `momentum` is used by momentum only."""
    _checks.choice("optimizer", name, NAMES)
    if name == "adam":
        return Adam(params, lr)
    return SGD(params, lr, momentum if name == "momentum" else 0.0)
