"""Dead units and collapse, judged on a fixed probe set.

    dead       a unit whose activation is exactly 0 on every example (and step) of a fixed probe set
               (DEFAULT_PROBE_SIZE = 512 held-out examples), judged by DeadTracker, which remembers
               the first evaluation (step 0): "born dead" units were dead then, units that "died"
               were not. The network has "collapsed" (Lu et al. 2019's dead network) when its output
               is constant on the probe set: every output's range over the probe examples is at most
               COLLAPSE_RTOL (1e-6) x the largest |output|.

An MLP unit is judged on phi (the activation's output), not on the layer's output a, which for a residual
layer is the stream a_(l-1) + s phi. A recurrent model's units are judged per cell layer on its h_t.

Batch norm: the probe set is forwarded in training mode, normalized with its own batch statistics, as the
network computes when it trains and its gradients flow (in eval mode at step 0 the running statistics are
still their initial 0 and 1, a network that never trains); the running statistics are copied before and
restored after, so the probes never change them (frozen_buffers).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from gradlab.nn import MLP
from gradlab.probes.model import Array, Model

DEFAULT_PROBE_SIZE = 512  # examples in the fixed probe set that judges dead units
COLLAPSE_RTOL = 1e-6  # output spread <= COLLAPSE_RTOL * max |output|: constant function (about 8 float32 ulps)


@contextmanager
def frozen_buffers(model: Model) -> Iterator[None]:
    """Restore the model's buffers (batch norm's running statistics) on exit, whatever a forward did to them."""
    buffers = getattr(model, "buffers", {})
    saved = {name: value.copy() for name, value in buffers.items()}
    try:
        yield
    finally:
        for name, value in saved.items():
            np.copyto(buffers[name], value)


def dead_masks(model: Model, x: Array) -> tuple[list[Array], Array]:
    """Forward the probe set x (no trace; batch norm in training mode, its running statistics restored)
    and return (per-layer boolean masks, True where the unit's activation is exactly 0 on every probe
    example [and step], and the output). Layers as in layer_params; an MLP's units are judged on phi,
    a cell layer's on its h_t; the linear output layer counts its outputs as units. For an ensemble (x
    (R, N, ...)) every mask and the output have the member axis first."""
    if isinstance(model, MLP):
        with frozen_buffers(model):
            y, cache = model.forward(x)
        masks = [never_nonzero(c.f) for c in cache.layers]
    else:
        y, cache = model.forward(x)
        masks = [~np.any(layer.hs[..., 1:, :, :], axis=(-3, -2)) for layer in cache.layers]
        lead = y.shape[:1] if model.ensemble else ()  # the member axis
        masks.append(~np.any(y.reshape(*lead, -1, y.shape[-1]), axis=-2))  # over examples (and steps)
    return masks, y


def never_nonzero(a: Array) -> Array:
    """(..., N, K) -> (..., K): True where column k is exactly 0 in every row, ~any(a, axis=-2), computed as
    sum_n |a_nk| == 0 (a sum of non-negative terms is 0 only when every term is; NaN is not 0): one
    product, where any's reduction over a strided axis is 4x slower for a narrow layer."""
    with np.errstate(over="ignore"):  # a sum that overflows is inf: not 0, as it should be
        return (np.ones(a.shape[-2], dtype=a.dtype) @ np.abs(a)) == 0


def output_spread(y: Array) -> tuple[float, float]:
    """(max over outputs of the range over probe examples, max |output|) of y (N, ...)."""
    flat = y.reshape(y.shape[0], -1)
    with np.errstate(all="ignore"):
        spread = float(np.max(flat.max(axis=0) - flat.min(axis=0)))
        scale = float(np.max(np.abs(flat)))
    return spread, scale


def is_collapsed(y: Array, rtol: float = COLLAPSE_RTOL) -> bool:
    """The network is a constant function on the probe set (Lu et al. 2019's dead network): every
    output's range over the probe examples is at most rtol x the largest |output| (0 when all are 0)."""
    spread, scale = output_spread(y)
    return bool(spread <= rtol * scale)


@dataclass
class DeadReport:
    """Dead units at one step, per layer (fractions over the layer's units)."""

    step: int
    masks: list[Array]  # dead now
    born_dead: list[Array]  # dead now and dead at the first evaluation (step 0)
    died: list[Array]  # dead now, alive at the first evaluation
    collapsed: bool
    output_spread: float
    dead_frac: Array = field(init=False)
    born_dead_frac: Array = field(init=False)
    died_frac: Array = field(init=False)

    def __post_init__(self) -> None:
        self.dead_frac, self.born_dead_frac, self.died_frac = (_fractions(m) for m in (self.masks, self.born_dead, self.died))


def _fractions(masks: list[Array]) -> Array:
    """The fraction of True in each mask: m.mean(), as an exact count over the size (the same float, in a
    third of the time)."""
    return np.array([np.count_nonzero(m) / m.size for m in masks])


class DeadTracker:
    """Judges dead units on a fixed probe set (x_probe, DEFAULT_PROBE_SIZE examples by default) and
    remembers the masks of its first evaluation (step 0: units born dead) so that later reports
    separate them from units that died during training."""

    def __init__(self, x_probe: Array, rtol: float = COLLAPSE_RTOL) -> None:
        self.x_probe = x_probe
        self.rtol = rtol
        self.initial: list[Array] | None = None
        self.last: DeadReport | None = None

    def update(self, step: int, model: Model, forwarded: tuple[list[Array], Array] | None = None) -> DeadReport:
        """The report of `step`: from dead_masks(model, x_probe), or from `forwarded`, those masks and
        output already taken (an ensemble forwards every member's probe set at once)."""
        masks, y = dead_masks(model, self.x_probe) if forwarded is None else forwarded
        if self.initial is None:
            self.initial = [m.copy() for m in masks]
        born = [m & m0 for m, m0 in zip(masks, self.initial)]
        died = [m & ~m0 for m, m0 in zip(masks, self.initial)]
        spread, scale = output_spread(y)
        self.last = DeadReport(step, masks, born, died, bool(spread <= self.rtol * scale), spread)
        return self.last


def probe_set(rng: np.random.Generator, shape: tuple[int, ...], n: int = DEFAULT_PROBE_SIZE) -> Array:
    """A held-out standard normal batch of n examples of the given per-example shape (D,) or (T, D),
    for models whose training inputs are standard normal; tasks give their own held-out batch."""
    return rng.standard_normal((n, *shape))
