"""Gradient checking by central differences, and the suite `gradlab gradcheck` runs.

    numeric dL/dp_i = (-L(p + 2h e_i) + 8 L(p + h e_i) - 8 L(p - h e_i) + L(p - 2h e_i)) / 12h
    relative error of a parameter = ||analytic - numeric|| / max(||analytic||, ||numeric||)

The fourth-order central stencil has truncation error O(h^4) and, at h = 1e-4 in float64, rounding
error near 1e-12 relative to the loss: the plain (L(p + h) - L(p - h)) / 2h stencil's rounding error
alone reaches 1e-7 on parameters whose gradient is 1000x smaller than the loss (an LSTM's weight_hh
at initialisation). The random-direction check applies the same stencil along a random unit
vector v over all parameters at once and compares with <grad, v>.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from gradlab.nn import losses, sequence
from gradlab.nn.gru import GRU
from gradlab.nn.lstm import LSTM
from gradlab.nn.mlp import MLP
from gradlab.nn.rnn import RNN
from gradlab.nn.trace import Gradients

Array = np.ndarray
Model = MLP | RNN | LSTM | GRU
STEP = 1e-4
TOLERANCE = 1e-7  # the largest relative error the suite accepts
ZERO = 1e-10  # central differences' rounding noise is ~1e-12 for an O(1) loss at h = 1e-4: norms below this are 0
STENCIL = ((2.0, -1.0), (1.0, 8.0), (-1.0, -8.0), (-2.0, 1.0))  # (offset in h, weight / 12h)


def relative_error(analytic: Array, numeric: Array, zero: float = 0.0) -> float:
    """||a - n|| / max(||a||, ||n||); 0 when both norms are at most `zero`."""
    scale = max(float(np.linalg.norm(analytic)), float(np.linalg.norm(numeric)))
    return 0.0 if scale <= zero else float(np.linalg.norm(analytic - numeric)) / scale


def numerical_gradient(loss: Callable[[], float], param: Array, h: float = STEP) -> Array:
    """Central differences of loss() with respect to each entry of param, perturbed in place."""
    grad = np.zeros_like(param)
    flat, gflat = param.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        total = 0.0
        for offset, weight in STENCIL:
            flat[i] = old + offset * h
            total += weight * loss()
        flat[i] = old
        gflat[i] = total / (12 * h)
    return grad


def check_parameters(loss: Callable[[], float], params: dict[str, Array], grads: dict[str, Array], h: float = STEP) -> dict[str, float]:
    """Relative error of each parameter's analytic gradient against central differences. A gradient that is
    zero to within what central differences can measure (both norms at most ZERO) has error 0: e.g. the
    bias of a dense layer before batch norm, whose exact gradient is 0 (the batch mean subtracts it)."""
    return {name: relative_error(grads[name], numerical_gradient(loss, p, h), ZERO) for name, p in params.items()}


def check_direction(
    loss: Callable[[], float], params: dict[str, Array], grads: dict[str, Array], rng: np.random.Generator, h: float = STEP
) -> float:
    """Relative error of the directional derivative along a random unit vector over all parameters."""
    v = {k: rng.normal(size=p.shape) for k, p in params.items()}
    norm = np.sqrt(sum(float(np.vdot(d, d)) for d in v.values()))
    analytic = sum(float(np.vdot(grads[k], v[k])) for k in params) / norm

    def shifted(offset: float) -> float:
        originals = {k: p.copy() for k, p in params.items()}
        for k, p in params.items():
            p += offset * h / norm * v[k]
        value = loss()
        for k, p in params.items():
            p[...] = originals[k]
        return value

    numeric = sum(weight * shifted(offset) for offset, weight in STENCIL) / (12 * h)
    return relative_error(np.array(analytic), np.array(numeric))


def forward_backward(model: Model, x: Array, y: Array, loss_name: str, trace: bool = False) -> tuple[float, Gradients]:
    """One forward, loss and backward: (loss, Gradients); an ensemble's loss is the sum of its members'."""
    out, cache = model.forward(x, trace=trace)
    value, dout = losses.get(loss_name)(out, y, lead=_lead(model))
    return float(np.sum(value)), model.backward(dout, cache)


def _lead(model: Model) -> int:
    return 0 if model.ensemble is None else 1


def reference_loss(model: Model, x: Array, y: Array, loss_name: str) -> Callable[[], float]:
    """The function whose exact gradient the model's backward computes (summed over an ensemble's members).

    For full BPTT that is the loss itself. For truncated BPTT it is the loss with the hidden (and
    cell) state of every layer at every cut held fixed at its current value: the chunks between cuts
    are run as separate sequences from those fixed states.
    """
    loss_fn = losses.get(loss_name)
    total = lambda out: float(np.sum(loss_fn(out, y, lead=_lead(model))[0]))  # noqa: E731
    truncate = getattr(model, "truncate", None)
    if truncate is None:
        return lambda: total(model.forward(x)[0])
    T = x.shape[-2]
    starts = [t for t in range(T) if not sequence.flows_back(t, T, truncate)]
    starts = ([0] if starts[:1] != [0] else []) + starts
    _, cache = model.forward(x, trace=True)
    at_start = lambda arrays, s: np.stack([sequence.at(a, s) for a in arrays])  # noqa: E731  every layer's state at step s
    states = [(at_start([f.hs for f in cache.layers], s), at_start([f.cs for f in cache.layers], s) if model.cell_state else None)
              for s in starts]  # fmt: skip
    chunk_model = copy.copy(model)
    chunk_model.truncate = None

    def chunked() -> float:
        outs = []
        for s, e, (h0, c0) in zip(starts, starts[1:] + [T], states):
            if model.output == "last" and e < T:
                continue
            kw = {"h0": h0} if c0 is None else {"h0": h0, "c0": c0}
            outs.append(chunk_model.forward(x[..., s:e, :], **kw)[0])
        return total(outs[-1] if model.output == "last" else np.concatenate(outs, axis=-2))

    return chunked


def preactivation_margin(model: Model, x: Array) -> float:
    """Smallest |u| over the inputs u of every ReLU-family activation (inf for smooth ones): central
    differences are only valid away from the kink at 0."""
    act = getattr(model, "act", None)
    if act is None or act.name not in ("relu", "leaky_relu"):
        return float("inf")
    _, cache = model.forward(x)
    if isinstance(model, MLP):
        return min((float(np.abs(c.u).min()) for c in cache.layers[:-1]), default=float("inf"))
    z = [sequence.project(inputs, model.p("weight_ih", j), model.p("bias", j)) + sequence.back_project(f.hs[..., :-1, :, :], model.p("weight_hh", j).mT)
         for j, (inputs, f) in enumerate(zip(cache.inputs, cache.layers))]  # z_t = W_ih x_t + b + W_hh h_(t-1), every layer
    return min(float(np.abs(zj).min()) for zj in z)


@dataclass
class CheckResult:
    model: str
    activation: str
    loss: str
    max_rel_error: float  # worst parameter
    worst_param: str
    direction_rel_error: float


N, T, D, H, O = 3, 6, 3, 4, 3  # the problems' sizes


@dataclass(frozen=True)
class Variant:
    """One model of the suite: its kind and the options that change its backward."""

    kind: str  # mlp, rnn, lstm, gru
    activation: str | None = None  # MLP and RNN only
    output: str = "last"
    truncate: int | None = None
    layers: int = 1
    norm: str | None = None
    residual: bool = False
    ensemble: int | None = None

    @property
    def label(self) -> str:
        if self.kind == "mlp":
            parts = ["mlp", self.norm and f"{self.norm}norm", self.residual and "residual"]
        else:
            parts = [self.kind, self.output, self.truncate and f"tbptt{self.truncate}", self.layers > 1 and f"{self.layers}layers"]
        parts.append(self.ensemble and f"R{self.ensemble}")
        return "/".join(p for p in parts if p)


def make_case(v: Variant, loss_name: str, seed: int) -> tuple[Model, Array, Array]:
    """A small random float64 problem: (model, x, y), with random biases so that zero biases hide no bug."""
    rng = np.random.default_rng(seed)
    lead = () if v.ensemble is None else (v.ensemble,)
    if v.kind == "mlp":
        model = MLP([D, 5, 5, O], v.activation, norm=v.norm, residual=v.residual, rng=rng, init="xavier_normal", ensemble=v.ensemble)
        x = rng.normal(size=(*lead, N, D))
        shape = (*lead, N, O)
    else:
        opts = dict(output=v.output, truncate=v.truncate, layers=v.layers, rng=rng, init="xavier_normal", ensemble=v.ensemble)
        model = {"rnn": lambda: RNN(D, H, O, v.activation, **opts), "lstm": lambda: LSTM(D, H, O, **opts), "gru": lambda: GRU(D, H, O, **opts)}[v.kind]()
        x = rng.normal(size=(*lead, N, T, D))
        shape = (*lead, N, O) if v.output == "last" else (*lead, N, T, O)
    for name, p in model.params.items():
        if "bias" in name:
            p += rng.normal(scale=0.1, size=p.shape)
    if loss_name == "cross_entropy":
        y = rng.integers(0, O, size=shape[:-1])
    elif loss_name == "bce":
        y = rng.uniform(size=shape)
    else:
        y = rng.normal(size=shape)
    return model, x, y


def variants() -> Iterator[Variant]:
    """Every model the engine has, with every option that changes its backward."""
    from gradlab.nn.activations import NAMES

    yield from (Variant("mlp", a) for a in NAMES)
    for norm in (None, "layer", "batch"):
        for residual in (False, True):
            if norm or residual:
                yield from (Variant("mlp", a, norm=norm, residual=residual) for a in ("tanh", "relu"))
    for kind in ("rnn", "lstm", "gru"):
        for output in sequence.OUTPUTS:
            for truncate in (None, 2):
                for layers in (1, 2, 3):
                    acts = NAMES if kind == "rnn" and layers == 1 else ("tanh",) if kind == "rnn" else (None,)
                    yield from (Variant(kind, a, output, truncate, layers) for a in acts)
    yield Variant("mlp", "tanh", ensemble=2)
    yield Variant("mlp", "relu", norm="batch", residual=True, ensemble=2)
    for kind in ("rnn", "lstm", "gru"):
        yield Variant(kind, "tanh" if kind == "rnn" else None, "all", 2, layers=2, ensemble=2)


def run_suite(seed: int = 0) -> Iterator[CheckResult]:
    """Every model x option x loss on small random float64 problems."""
    for v in variants():
        for loss_name in losses.NAMES:
            for attempt in range(100):  # redraw until the ReLU kinks are clear of the step
                model, x, y = make_case(v, loss_name, seed + attempt)
                if preactivation_margin(model, x) > 20 * STEP:
                    break
            _, grads = forward_backward(model, x, y, loss_name)
            ref = reference_loss(model, x, y, loss_name)
            errors = check_parameters(ref, model.params, grads.params)
            worst = max(errors, key=errors.__getitem__)
            direction = check_direction(ref, model.params, grads.params, np.random.default_rng(seed))
            yield CheckResult(v.label, v.activation or "-", loss_name, errors[worst], worst, direction)
