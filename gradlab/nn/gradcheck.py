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
from gradlab.nn.dense import MLP
from gradlab.nn.lstm import LSTM
from gradlab.nn.rnn import RNN
from gradlab.nn.trace import Gradients

Array = np.ndarray
Model = MLP | RNN | LSTM
STEP = 1e-4
TOLERANCE = 1e-7  # the largest relative error the suite accepts
STENCIL = ((2.0, -1.0), (1.0, 8.0), (-1.0, -8.0), (-2.0, 1.0))  # (offset in h, weight / 12h)


def relative_error(analytic: Array, numeric: Array) -> float:
    """||a - n|| / max(||a||, ||n||); 0 when both are zero."""
    scale = max(float(np.linalg.norm(analytic)), float(np.linalg.norm(numeric)))
    return 0.0 if scale == 0 else float(np.linalg.norm(analytic - numeric)) / scale


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
    """Relative error of each parameter's analytic gradient against central differences."""
    return {name: relative_error(grads[name], numerical_gradient(loss, p, h)) for name, p in params.items()}


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
    """One forward, loss and backward: (loss, Gradients)."""
    out, cache = model.forward(x, trace=trace)
    value, dout = losses.get(loss_name)(out, y)
    return value, model.backward(dout, cache)


def reference_loss(model: Model, x: Array, y: Array, loss_name: str) -> Callable[[], float]:
    """The function whose exact gradient the model's backward computes.

    For full BPTT that is the loss itself. For truncated BPTT it is the loss with the hidden (and
    cell) state at every cut held fixed at its current value: the chunks between cuts are run as
    separate sequences from those fixed states.
    """
    loss_fn = losses.get(loss_name)
    truncate = getattr(model, "truncate", None)
    if truncate is None:
        return lambda: loss_fn(model.forward(x)[0], y)[0]
    T = x.shape[1]
    starts = [t for t in range(T) if not sequence.flows_back(t, T, truncate)]
    starts = ([0] if starts[:1] != [0] else []) + starts
    _, cache = model.forward(x)
    states = [(cache.hs[s].copy(), cache.cs[s].copy() if isinstance(model, LSTM) else None) for s in starts]
    chunk_model = copy.copy(model)
    chunk_model.truncate = None

    def chunked() -> float:
        outs = []
        for s, e, (h0, c0) in zip(starts, starts[1:] + [T], states):
            if model.output == "last" and e < T:
                continue
            kw = {"h0": h0} if c0 is None else {"h0": h0, "c0": c0}
            outs.append(chunk_model.forward(x[:, s:e], **kw)[0])
        out = outs[-1] if model.output == "last" else np.concatenate(outs, axis=1)
        return loss_fn(out, y)[0]

    return chunked


def preactivation_margin(model: Model, x: Array) -> float:
    """Smallest |z| over every pre-activation of a ReLU-family model (inf for smooth ones): central
    differences are only valid away from the kink at 0."""
    if isinstance(model, LSTM) or model.act.name not in ("relu", "leaky_relu"):
        return float("inf")
    if isinstance(model, MLP):
        out, cache = model.forward(x)
        return min((float(np.abs(c.z).min()) for c in cache.layers[:-1]), default=float("inf"))
    _, cache = model.forward(x)
    p = model.params
    z = cache.xs @ p["weight_ih"].T + p["bias"] + cache.hs[:-1] @ p["weight_hh"].T
    return float(np.abs(z).min())


@dataclass
class CheckResult:
    model: str
    activation: str
    loss: str
    max_rel_error: float  # worst parameter
    worst_param: str
    direction_rel_error: float


def make_case(kind: str, activation: str, loss_name: str, output: str, truncate: int | None, seed: int) -> tuple[Model, Array, Array]:
    """A small random float64 problem: (model, x, y)."""
    rng = np.random.default_rng(seed)
    N, T, D, H, O = 3, 6, 3, 4, 3
    if kind == "mlp":
        model = MLP([D, 5, 4, O], activation, rng=rng, init="xavier_normal")
        x = rng.normal(size=(N, D))
        shape = (N, O)
    else:
        opts = dict(output=output, truncate=truncate, rng=rng, init="xavier_normal")
        model = RNN(D, H, O, activation, **opts) if kind == "rnn" else LSTM(D, H, O, **opts)
        model.params["bias"] += rng.normal(scale=0.1, size=model.params["bias"].shape)
        x = rng.normal(size=(N, T, D))
        shape = (N, O) if output == "last" else (N, T, O)
    if loss_name == "cross_entropy":
        y = rng.integers(0, O, size=shape[:-1])
    elif loss_name == "bce":
        y = rng.uniform(size=shape)
    else:
        y = rng.normal(size=shape)
    return model, x, y


def variants() -> Iterator[tuple[str, str, str | None, str, int | None]]:
    """(label, kind, activation, output, truncate) for every model the engine has."""
    from gradlab.nn.activations import NAMES

    yield from (("mlp", "mlp", a, "last", None) for a in NAMES)
    for kind in ("rnn", "lstm"):
        for output in sequence.OUTPUTS:
            for truncate in (None, 2):
                label = f"{kind}/{output}" + ("" if truncate is None else f"/tbptt{truncate}")
                acts = NAMES if kind == "rnn" else (None,)
                yield from ((label, kind, a, output, truncate) for a in acts)


def run_suite(seed: int = 0) -> Iterator[CheckResult]:
    """Every model x activation x loss on small random float64 problems."""
    for label, kind, activation, output, truncate in variants():
        for loss_name in losses.NAMES:
            for attempt in range(100):  # redraw until the ReLU kinks are clear of the step
                model, x, y = make_case(kind, activation or "tanh", loss_name, output, truncate, seed + attempt)
                if preactivation_margin(model, x) > 20 * STEP:
                    break
            _, grads = forward_backward(model, x, y, loss_name)
            ref = reference_loss(model, x, y, loss_name)
            errors = check_parameters(ref, model.params, grads.params)
            worst = max(errors, key=errors.__getitem__)
            direction = check_direction(ref, model.params, grads.params, np.random.default_rng(seed))
            yield CheckResult(label, activation or "-", loss_name, errors[worst], worst, direction)
