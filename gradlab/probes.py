"""Probes: the engine's trace and gradients reduced to the rows of the tidy tables of DESIGN.md.

Every function here is a pure function of what the engine returns (Gradients, its trace, the model's
parameters and a forward on a probe set); none of them changes the model. They return NumPy records
(cheap enough to take at every step) that `*_frame` and `Recorder.frames()` turn into pandas
DataFrames with the documented columns and explicit dtypes (see COLUMNS).

What a "layer" is:
    MLP        layer l = dense layer l (0 nearest the input, the output layer last): weights
               layers.{l}.weight / layers.{l}.bias, z_l, a_l = phi(z_l), delta_l = dL/dz_l.
    RNN, LSTM  layer 0 = the recurrent cell over all time steps: weights weight_ih and weight_hh (one
               norm over both), bias; z = the cell's pre-activations (the 4H gate pre-activations for
               the LSTM) at every step, a = the hidden state h_t at every step.
               layer 1 = the linear readout: readout.weight, readout.bias; z = a = y, delta = dL/dy
               (neither is in the trace: pass output= and dout= to get them, else NaN).

Norms are L2 (Frobenius for matrices). A "per-example norm" of a recurrent quantity is taken over
all its time steps and units together.

Dead and saturated:
    dead       a unit whose activation is exactly 0 on every example (and step) of a fixed probe set
               (DEFAULT_PROBE_SIZE = 512 held-out examples), judged by DeadTracker, which remembers
               the first evaluation (step 0): "born dead" units were dead then, units that "died"
               were not. The network has "collapsed" (Lu et al. 2019's dead network) when its output
               is constant on the probe set: every output's range over the probe examples is at most
               COLLAPSE_RTOL (1e-6) x the largest |output|.
    saturated  phi'(z) < 1% of max phi' (Activation.derivative(a) < 0.01 max_derivative), as a
               fraction over units x examples (x steps). LSTM cell: over the 4H gate units, sigmoid
               gates i, f, o against 1/4 and the tanh candidate g against 1.
    update_ratio  ||W_after - W_before|| / ||W_after|| over the layer's weight matrices (not biases),
               from a snapshot taken before the optimizer step of a logged step.

Logging: `should_log(step, every, last_step)` is true at step 0, at every multiple of `every` and at
the last step. The trace-based tables (layers, timesteps) are taken on logged steps only; the steps
table (a handful of scalars the training loop computes anyway) can be recorded at every step, so the
first non-finite step is exact (Recorder does so).

Typical loop (what gradlab.train does):

    rec = Recorder(model, run_id=rid, every=10, last_step=steps - 1, probe_x=x_probe)
    for step in range(steps):
        log = rec.should_log(step)
        out, cache = model.forward(x, trace=log)
        loss, dout = losses.mse(out, y)
        grads = model.backward(dout, cache)
        if log:
            rec.record_backward(step, grads, dout=dout, output=out)   # before clipping and the update
        norm, norm_clipped = clip.clip(grads.params, mode, c)
        opt.step(grads.params)
        rec.record_step(step, loss, norm, norm_clipped, lr)          # after the update
    tables = rec.frames()                                            # {"steps", "layers", "timesteps"}
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from gradlab.nn import LSTM, MLP, RNN
from gradlab.nn.activations import Activation
from gradlab.nn.lstm import split_gates
from gradlab.nn.trace import Gradients, MLPTrace, SequenceTrace

Array = np.ndarray
Model = MLP | RNN | LSTM

SATURATION = 0.01  # a unit is saturated where phi' < SATURATION * max phi'
DEFAULT_PROBE_SIZE = 512  # examples in the fixed probe set that judges dead units
COLLAPSE_RTOL = 1e-6  # output spread <= COLLAPSE_RTOL * max |output|: constant function (about 8 float32 ulps)
EXACT_MAX_H = 64  # jacobian_norm: exact SVD for H <= EXACT_MAX_H, power iteration beyond
POWER_ITERS = 300  # power iteration: at most this many products with J^T J ...
POWER_RTOL = 1e-9  # ... stopping when every estimate changes by less than this (relative). A lower bound
# on ||J||_2; on random H = 128 Jacobians (flat spectra, the slow case) within 2e-3 per example and 3e-5
# on the batch mean.

# The tables' columns and dtypes, in order. "str" is pandas' string dtype; "boolean" is pandas'
# nullable boolean (NA where a flag was not measured).
COLUMNS: dict[str, dict[str, str]] = {
    "steps": {
        "run_id": "str",
        "step": "int64",
        "loss": "float64",
        "grad_norm": "float64",
        "grad_norm_clipped": "float64",
        "clipped": "bool",
        "lr": "float64",
        "collapsed": "boolean",
    },
    "layers": {
        "run_id": "str",
        "step": "int64",
        "layer": "int64",
        "weight_grad_norm": "float64",
        "bias_grad_norm": "float64",
        "delta_norm": "float64",
        "act_mean": "float64",
        "act_std": "float64",
        "dead_frac": "float64",
        "born_dead_frac": "float64",
        "died_frac": "float64",
        "saturated_frac": "float64",
        "update_ratio": "float64",
    },
    "timesteps": {
        "run_id": "str",
        "step": "int64",
        "t": "int64",
        "dh_norm": "float64",
        "dc_norm": "float64",
        "jacobian_norm": "float64",
    },
}


# ----------------------------------------------------------------------------------------- logging


def should_log(step: int, every: int, last_step: int | None = None) -> bool:
    """True at step 0, at every multiple of `every` (>= 1) and at `last_step` (the final step, if known)."""
    if every < 1:
        raise ValueError(f"every must be a positive integer, got {every!r}")
    return step == 0 or step % every == 0 or (last_step is not None and step == last_step)


# ----------------------------------------------------------------------------------------- helpers


def _sq_norm(g: Array) -> float:
    # einsum, not np.dot/np.vdot: OpenBLAS's threaded dot stalls on a busy machine (~10 ms for 1e5 entries)
    g = g.ravel(order="K")  # a view in memory order, also for the trace's transposed arrays
    return float(np.einsum("i,i->", g, g))


def _norm(*arrays: Array) -> float:
    """L2 norm over all the arrays' entries together."""
    return math.sqrt(sum(_sq_norm(a) for a in arrays))


def _example_norms(d: Array) -> Array:
    """Per-example L2 norm over every axis but the first: (N, ...) -> (N,)."""
    if d.ndim == 2:
        return np.sqrt(np.einsum("ij,ij->i", d, d))
    if d.ndim == 3:
        return np.sqrt(np.einsum("ijk,ijk->i", d, d))
    flat = d.reshape(d.shape[0], -1)
    return np.sqrt(np.einsum("ij,ij->i", flat, flat))


def _act_moments(a: Array) -> tuple[float, float]:
    """Mean and (population, ddof = 0) standard deviation over all entries.

    Fast path E[a^2] - E[a]^2 in float64; where that cancels (std below 1e-4 of |mean|) or the
    array is float32 (einsum would accumulate in float32), NumPy's two-pass a.std in float64."""
    if a.dtype != np.float64:
        return float(a.mean(dtype=np.float64)), float(a.std(dtype=np.float64))
    mean = float(a.mean())
    var = _sq_norm(a) / a.size - mean * mean
    if not np.isfinite(var):
        return mean, float("nan")
    if var < 1e-8 * mean * mean:
        return mean, float(a.std())
    return mean, math.sqrt(var)


def _saturated_frac(act: Activation, a: Array) -> float:
    """Fraction of entries (units x examples [x steps]) with phi'(z) < SATURATION max phi'."""
    if act.name == "identity":
        return 0.0
    if act.name in ("relu", "leaky_relu"):
        # phi' is 1 where a > 0 and the slope elsewhere (0 for ReLU): no derivative array needed
        if act.slope >= SATURATION * act.max_derivative:
            return 0.0
        return float(np.count_nonzero(~(a > 0))) / a.size
    return float(np.count_nonzero(act.derivative(a) < SATURATION * act.max_derivative)) / a.size


def kind_of(model: Model) -> str:
    """'mlp', 'rnn' or 'lstm'."""
    if isinstance(model, MLP):
        return "mlp"
    if isinstance(model, LSTM):
        return "lstm"
    if isinstance(model, RNN):
        return "rnn"
    raise TypeError(f"model must be an MLP, RNN or LSTM, got {type(model).__name__}")


def layer_params(model: Model) -> list[tuple[list[str], list[str]]]:
    """Per layer (see the module docstring), the names of its weights and of its biases."""
    if isinstance(model, MLP):
        return [([f"layers.{l}.weight"], [f"layers.{l}.bias"]) for l in range(model.depth)]
    kind_of(model)
    return [(["weight_ih", "weight_hh"], ["bias"]), (["readout.weight"], ["readout.bias"])]


def _c_prev(c: Array, c0: Array | None, out: Array | None = None) -> Array:
    """c_(t-1) for every step, (N, T, H), from c_1..c_T and c_0 (zeros when None)."""
    prev = np.empty_like(c) if out is None else out
    prev[:, 1:] = c[:, :-1]
    prev[:, 0] = 0.0 if c0 is None else c0
    return prev


# ----------------------------------------------------------------------------------------- steps


def step_record(
    step: int, loss: float, grad_norm: float, grad_norm_clipped: float, lr: float, clipped: bool | None = None,
    collapsed: bool | None = None,
) -> tuple:
    """One row of the steps table (without run_id). `clipped` defaults to grad_norm_clipped <
    grad_norm (false when either is NaN); `collapsed` is None (NA) unless the probe set was run."""
    if clipped is None:
        clipped = bool(grad_norm_clipped < grad_norm)
    return (int(step), float(loss), float(grad_norm), float(grad_norm_clipped), bool(clipped), float(lr), collapsed)


def steps_frame(records: list[tuple], run_id: str = "") -> pd.DataFrame:
    """The steps table from step_record rows."""
    cols = [c for c in COLUMNS["steps"] if c != "run_id"]
    data = {c: [r[i] for r in records] for i, c in enumerate(cols)}
    data["collapsed"] = [pd.NA if v is None else v for v in data["collapsed"]]
    return _typed("steps", data, len(records), run_id)


# ----------------------------------------------------------------------------------------- layers


def layer_stats(
    model: Model,
    grads: Gradients,
    *,
    dead: DeadReport | None = None,
    dout: Array | None = None,
    output: Array | None = None,
    c0: Array | None = None,
) -> dict[str, Array]:
    """Per-layer columns of the layers table (one entry per layer) from one backward with trace.

    weight_grad_norm, bias_grad_norm are of the gradients as passed (take them before clipping);
    delta_norm is the batch mean of per-example ||dL/dz_l||; act_mean, act_std over all entries of a_l;
    saturated_frac over units x examples (x steps); dead_frac, born_dead_frac, died_frac from `dead`
    (a DeadTracker report on the probe set; NaN without one); update_ratio is NaN here (see
    update_ratios). c0 is the LSTM's initial cell state when it was not zero.
    """
    trace = grads.trace
    if trace is None:
        raise ValueError("grads has no trace: run the forward with trace=True")
    names = layer_params(model)
    L = len(names)
    out = {c: np.full(L, np.nan) for c in COLUMNS["layers"] if c not in ("run_id", "step")}
    out["layer"] = np.arange(L, dtype=np.int64)
    g = grads.params
    for l, (w_names, b_names) in enumerate(names):
        out["weight_grad_norm"][l] = _norm(*(g[n] for n in w_names))
        out["bias_grad_norm"][l] = _norm(*(g[n] for n in b_names))
    with np.errstate(all="ignore"):
        if isinstance(trace, MLPTrace):
            for l in range(L):
                act = model.layer(l)[2]
                a = trace.a[l]
                out["delta_norm"][l] = _example_norms(trace.delta[l]).mean()
                out["act_mean"][l], out["act_std"][l] = _act_moments(a)
                out["saturated_frac"][l] = _saturated_frac(act, a)
        else:
            _sequence_layer0(model, trace, out, c0)
            if dout is not None:
                out["delta_norm"][1] = _example_norms(np.asarray(dout)).mean()
            if output is not None:
                out["act_mean"][1], out["act_std"][1] = _act_moments(np.asarray(output))
            out["saturated_frac"][1] = 0.0  # the readout is linear
    if dead is not None:
        out["dead_frac"][:] = dead.dead_frac
        out["born_dead_frac"][:] = dead.born_dead_frac
        out["died_frac"][:] = dead.died_frac
    return out


def _sequence_layer0(model: RNN | LSTM, trace: SequenceTrace, out: dict[str, Array], c0: Array | None) -> None:
    h = trace.h
    out["act_mean"][0], out["act_std"][0] = _act_moments(h)
    if isinstance(model, LSTM):
        sq, n_sat = np.zeros(h.shape[0]), 0
        N, T, H = h.shape
        chunk = max(1, _CHUNK_ENTRIES // (N * H))  # steps per chunk: the scratch stays in cache
        u, v = np.empty((N, chunk, H), h.dtype), np.empty((N, chunk, H), h.dtype)
        c_prev = _c_prev(trace.c, c0)
        for s in range(0, T, chunk):
            e = min(T, s + chunk)
            n_sat += _lstm_chunk(trace, c_prev, s, e, u[:, : e - s], v[:, : e - s], sq)
        out["delta_norm"][0] = np.sqrt(sq).mean()
        out["saturated_frac"][0] = n_sat / trace.gates.size
    else:
        act = model.act
        d = act.derivative(h)  # phi'(z_t) from h_t = phi(z_t)
        dz = trace.dh * d
        out["delta_norm"][0] = _example_norms(dz).mean()
        out["saturated_frac"][0] = float(np.count_nonzero(d < SATURATION * act.max_derivative)) / d.size


_CHUNK_ENTRIES = 1 << 15  # entries per scratch array in the LSTM's chunked loop (256 KiB of float64)


def _lstm_chunk(trace: SequenceTrace, c_prev: Array, s: int, e: int, u: Array, v: Array, sq: Array) -> int:
    """Steps s..e-1 of the LSTM cell: adds each example's sum of squared dL/dz over the 4H gate
    pre-activations to sq and returns how many gate units are saturated.

    dL/dz per gate, as the engine's backward does it (c = f c_prev + i g, h = o tanh(c)):
        dz_i = dc g i(1-i), dz_f = dc c_prev f(1-f), dz_g = dc i (1-g^2), dz_o = dh tanh(c) o(1-o) = dh h (1-o);
    saturated: s(1-s) < 1% of 1/4 for the sigmoid gates i, f, o, 1-g^2 < 1% for the tanh candidate g.
    In-place products on two small scratch arrays: fresh (N, T, H) temporaries cost more than the arithmetic."""
    i, f, g, o = split_gates(trace.gates[:, s:e])
    dc, dh, h = trace.dc[:, s:e], trace.dh[:, s:e], trace.h[:, s:e]
    n_sat = 0
    for gate, other, dup in ((i, g, dc), (f, c_prev[:, s:e], dc), (o, None, dh)):
        np.subtract(1.0, gate, out=u)
        u *= gate  # s (1 - s)
        n_sat += int(np.count_nonzero(np.less(u, SATURATION * 0.25, out=v.view(np.bool_)[..., : u.shape[-1]])))
        if other is None:  # dz_o = dh h (1 - o)
            np.subtract(1.0, o, out=u)
            other = h
        u *= other
        u *= dup
        sq += np.einsum("ntj,ntj->n", u, u)
    np.multiply(g, g, out=u)
    np.subtract(1.0, u, out=u)  # 1 - g^2
    n_sat += int(np.count_nonzero(np.less(u, SATURATION, out=v.view(np.bool_)[..., : u.shape[-1]])))
    u *= i
    u *= dc
    sq += np.einsum("ntj,ntj->n", u, u)
    return n_sat


def snapshot(model: Model, out: dict[str, Array] | None = None) -> dict[str, Array]:
    """Copies of the model's weight matrices (not biases), taken before the optimizer step of a
    logged step; update_ratios compares them with the weights after it. `out`: a previous snapshot
    whose arrays are reused (no new memory)."""
    names = [n for w_names, _ in layer_params(model) for n in w_names]
    if out is None:
        return {n: model.params[n].copy() for n in names}
    for n in names:
        np.copyto(out[n], model.params[n])
    return out


def update_ratios(model: Model, before: dict[str, Array], in_place: bool = False) -> Array:
    """Per layer ||W_after - W_before|| / ||W_after|| (Frobenius over the layer's weight matrices;
    model.params hold W_after). inf when W_after is 0 and it moved; NaN when neither.
    in_place: overwrite `before` with the difference (saves a temporary per matrix)."""
    ratios = []
    with np.errstate(all="ignore"):
        for w_names, _ in layer_params(model):
            diffs = []
            for n in w_names:
                after = model.params[n]
                diffs.append(np.subtract(after, before[n], out=before[n] if in_place else None))
            num = _norm(*diffs)
            den = _norm(*(model.params[n] for n in w_names))
            ratios.append(num / den if den > 0 else (math.inf if num > 0 else math.nan))
    return np.asarray(ratios, dtype=np.float64)


def layers_frame(stats: list[tuple[int, dict[str, Array]]], run_id: str = "") -> pd.DataFrame:
    """The layers table from (step, layer_stats(...)) pairs."""
    return _stack("layers", stats, run_id)


# ----------------------------------------------------------------------------------------- timesteps


def jacobian_coefficients(model: RNN | LSTM, trace: SequenceTrace, c0: Array | None = None) -> Array:
    """The step Jacobian J_t = dh_t/dh_(t-1) = sum_k diag(a_k) W_k for every example and step,
    as the coefficients a (N, T, K H) over the K row blocks W_k of weight_hh (K = 1 RNN, 4 LSTM).

    RNN: J = diag(phi'(z_t)) W_hh.
    LSTM (c_(t-1) held fixed: the h -> h block of the state Jacobian), with z = W_hh h_(t-1) + ...:
        dh_t = diag(tanh(c_t) o') dz_o + diag(o tanh'(c_t)) dc_t,
        dc_t = diag(g i') dz_i + diag(c_(t-1) f') dz_f + diag(i g') dz_g,
    so with k = o (1 - tanh(c_t)^2): a_i = k g i(1-i), a_f = k c_(t-1) f(1-f), a_g = k i (1-g^2),
    a_o = tanh(c_t) o(1-o).
    """
    if isinstance(model, LSTM):
        i, f, g, o = split_gates(trace.gates)
        tanh_c = np.tanh(trace.c)
        k = o * (1 - tanh_c * tanh_c)
        return np.concatenate(
            [k * g * i * (1 - i), k * _c_prev(trace.c, c0) * f * (1 - f), k * i * (1 - g * g), tanh_c * o * (1 - o)],
            axis=-1,
        )
    return model.act.derivative(trace.h)


def step_jacobians(coef: Array, weight_hh: Array) -> Array:
    """Explicit Jacobians (M, H, H) from coefficients (M, K H) and weight_hh (K H, H)."""
    KH, H = weight_hh.shape
    K = KH // H
    return np.einsum("mkh,khj->mhj", coef.reshape(-1, K, H), weight_hh.reshape(K, H, H))


def spectral_norms(
    coef: Array, weight_hh: Array, method: str = "auto", *, iters: int = POWER_ITERS, rtol: float = POWER_RTOL,
    seed: int = 0,
) -> Array:
    """||J_m||_2 for J_m = sum_k diag(coef[m, k-block]) W_k, coef (M, K H): method "exact" (SVD of
    each J, in chunks), "power" (power iteration on J^T J, matrix-free, all m at once, from a fixed
    random start), or "auto" (exact when H <= EXACT_MAX_H)."""
    KH, H = weight_hh.shape
    K = KH // H
    coef = coef.reshape(-1, KH)
    M = coef.shape[0]
    if method == "auto":
        method = "exact" if H <= EXACT_MAX_H else "power"
    if method == "exact":
        chunk = max(1, (1 << 22) // (H * H))  # about 32 MiB of float64 Jacobians at a time
        res = np.empty(M)
        for s in range(0, M, chunk):
            res[s : s + chunk] = np.linalg.svd(step_jacobians(coef[s : s + chunk], weight_hh), compute_uv=False)[:, 0]
        return res
    if method != "power":
        raise ValueError(f"method must be one of auto, exact, power; got {method!r}")

    def jv(v: Array) -> Array:  # J v = sum_k a_k * (W_k v)
        return (coef * (v @ weight_hh.T)).reshape(M, K, H).sum(axis=1)

    def jtu(u: Array) -> Array:  # J^T u = sum_k W_k^T (a_k * u)
        return (coef * np.tile(u, K)) @ weight_hh

    v = np.random.default_rng(seed).standard_normal((M, H))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    sigma = np.zeros(M)
    for _ in range(iters):
        u = jv(v)
        new = np.linalg.norm(u, axis=1)
        w = jtu(u)
        wn = np.linalg.norm(w, axis=1, keepdims=True)
        v = np.divide(w, wn, out=v, where=wn > 0)
        done = np.all(np.abs(new - sigma) <= rtol * new)
        sigma = new
        if done:
            break
    return np.linalg.norm(jv(v), axis=1)


def timestep_stats(
    model: RNN | LSTM,
    grads: Gradients,
    *,
    jacobian: bool = False,
    method: str = "auto",
    c0: Array | None = None,
    examples: int | None = None,
) -> dict[str, Array]:
    """Per time step t = 0..T-1 (the trace's index: t = 0 is the first input step, h_1 in the
    engine's h_0..h_T numbering): dh_norm and dc_norm (LSTM; NaN for the RNN) the batch mean of
    per-example ||dL/dh_t||, ||dL/dc_t||; jacobian_norm the batch mean of ||dh_t/dh_(t-1)||_2 when
    `jacobian` (NaN otherwise), over the first `examples` examples of the batch when given (the
    Jacobians cost O(N T H^3) exactly, O(N T H^2) per power iteration). The Jacobian uses
    model.params["weight_hh"]: call this before the optimizer step."""
    trace = grads.trace
    if not isinstance(trace, SequenceTrace):
        raise ValueError("grads must carry a SequenceTrace: run an RNN/LSTM forward with trace=True")
    N, T, H = trace.h.shape
    with np.errstate(all="ignore"):
        out = {
            "t": np.arange(T, dtype=np.int64),
            "dh_norm": np.sqrt(np.einsum("ntj,ntj->nt", trace.dh, trace.dh)).mean(axis=0),
            "dc_norm": np.full(T, np.nan),
            "jacobian_norm": np.full(T, np.nan),
        }
        if trace.dc is not None:
            out["dc_norm"] = np.sqrt(np.einsum("ntj,ntj->nt", trace.dc, trace.dc)).mean(axis=0)
        if jacobian:
            n = N if examples is None else max(1, min(int(examples), N))
            coef = jacobian_coefficients(model, trace, c0)[:n]
            sig = spectral_norms(coef.reshape(n * T, -1), model.params["weight_hh"].astype(np.float64), method)
            out["jacobian_norm"] = sig.reshape(n, T).mean(axis=0)
    return out


def timesteps_frame(stats: list[tuple[int, dict[str, Array]]], run_id: str = "") -> pd.DataFrame:
    """The timesteps table from (step, timestep_stats(...)) pairs."""
    return _stack("timesteps", stats, run_id)


# ----------------------------------------------------------------------------------------- dead units


def dead_masks(model: Model, x: Array) -> tuple[list[Array], Array]:
    """Forward the probe set x (no trace) and return (per-layer boolean masks, True where the unit's
    activation is exactly 0 on every probe example [and step], and the output). Layers as in
    layer_params; the linear output layer counts its outputs as units."""
    y, cache = model.forward(x)
    if isinstance(model, MLP):
        masks = [~np.any(c.a, axis=0) for c in cache.layers]
    else:
        masks = [~np.any(cache.hs[1:], axis=(0, 1))]
        masks.append(~np.any(y.reshape(-1, y.shape[-1]), axis=0))
    return masks, y


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
        self.dead_frac = np.array([m.mean() for m in self.masks])
        self.born_dead_frac = np.array([m.mean() for m in self.born_dead])
        self.died_frac = np.array([m.mean() for m in self.died])


class DeadTracker:
    """Judges dead units on a fixed probe set (x_probe, DEFAULT_PROBE_SIZE examples by default) and
    remembers the masks of its first evaluation (step 0: units born dead) so that later reports
    separate them from units that died during training."""

    def __init__(self, x_probe: Array, rtol: float = COLLAPSE_RTOL) -> None:
        self.x_probe = x_probe
        self.rtol = rtol
        self.initial: list[Array] | None = None
        self.last: DeadReport | None = None

    def update(self, step: int, model: Model) -> DeadReport:
        masks, y = dead_masks(model, self.x_probe)
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


# ----------------------------------------------------------------------------------------- frames


def _typed(table: str, data: dict, n: int, run_id: str) -> pd.DataFrame:
    cols = COLUMNS[table]
    data = {"run_id": [run_id] * n, **data}
    return pd.DataFrame({c: pd.Series(data[c], dtype=dt) for c, dt in cols.items()}, columns=list(cols))


def _stack(table: str, stats: list[tuple[int, dict[str, Array]]], run_id: str) -> pd.DataFrame:
    cols = [c for c in COLUMNS[table] if c not in ("run_id", "step")]
    if not stats:
        return _typed(table, {c: [] for c in ["step", *cols]}, 0, run_id)
    data = {c: np.concatenate([s[c] for _, s in stats]) for c in cols}
    data["step"] = np.concatenate([np.full(len(s[cols[0]]), step, dtype=np.int64) for step, s in stats])
    return _typed(table, data, len(data["step"]), run_id)


def empty_frames(run_id: str = "") -> dict[str, pd.DataFrame]:
    """The three tables with no rows (right columns and dtypes)."""
    return {
        "steps": steps_frame([], run_id),
        "layers": layers_frame([], run_id),
        "timesteps": timesteps_frame([], run_id),
    }


# ----------------------------------------------------------------------------------------- recorder


class Recorder:
    """Collects the three tables over a run (see the module docstring for the loop).

    every: layers and timesteps are recorded on steps where should_log(step, every, last_step);
    the steps table gets a row at every record_step call. probe_x: the probe set for dead units,
    evaluated on the logged steps where should_log(step, dead_every, last_step) (default: all of
    them); elsewhere, and without a probe set, dead_frac, born_dead_frac, died_frac are NaN and
    collapsed is NA. The probe set costs a forward on its 512 examples: with logging at every step,
    set dead_every to 10 or more to keep it a small part of training. jacobian: measure jacobian_norm
    (costly: seconds per logged step at H = 128, T = 100; jacobian_examples limits it to the first
    examples of the batch).
    """

    def __init__(
        self,
        model: Model,
        *,
        run_id: str = "",
        every: int = 1,
        last_step: int | None = None,
        probe_x: Array | None = None,
        jacobian: bool = False,
        jacobian_method: str = "auto",
        jacobian_examples: int | None = None,
        dead_every: int | None = None,
    ) -> None:
        should_log(0, every)  # validates every
        self.dead_every = every if dead_every is None else dead_every
        should_log(0, self.dead_every)
        self.model, self.run_id, self.every, self.last_step = model, run_id, every, last_step
        self.sequence = not isinstance(model, MLP)
        self.jacobian, self.jacobian_method, self.jacobian_examples = jacobian, jacobian_method, jacobian_examples
        self.dead = DeadTracker(probe_x) if probe_x is not None else None
        self.steps: list[tuple] = []
        self.layers: list[tuple[int, dict[str, Array]]] = []
        self.timesteps: list[tuple[int, dict[str, Array]]] = []
        self._before: dict[str, Array] | None = None
        self._buffer: dict[str, Array] | None = None  # the snapshot's arrays, reused from one log to the next
        self._pending: tuple[int, dict[str, Array], bool | None] | None = None

    def should_log(self, step: int) -> bool:
        return should_log(step, self.every, self.last_step)

    def record_backward(
        self, step: int, grads: Gradients, *, dout: Array | None = None, output: Array | None = None,
        c0: Array | None = None,
    ) -> None:
        """Layer and time-step stats of a logged step, the dead-unit probe and a weight snapshot;
        call after the backward, before clipping and the optimizer step."""
        report = None
        if self.dead is not None and should_log(step, self.dead_every, self.last_step):
            report = self.dead.update(step, self.model)
        stats = layer_stats(self.model, grads, dead=report, dout=dout, output=output, c0=c0)
        if self.sequence:
            self.timesteps.append(
                (step, timestep_stats(self.model, grads, jacobian=self.jacobian, method=self.jacobian_method, c0=c0,
                                     examples=self.jacobian_examples))
            )
        self._before = snapshot(self.model, self._buffer)
        self._pending = (step, stats, None if report is None else report.collapsed)

    def record_step(
        self, step: int, loss: float, grad_norm: float, grad_norm_clipped: float, lr: float,
        clipped: bool | None = None,
    ) -> None:
        """The steps row; on a logged step also the update ratios. Call after the optimizer step."""
        collapsed = None
        if self._pending is not None and self._pending[0] == step:
            _, stats, collapsed = self._pending
            stats["update_ratio"] = update_ratios(self.model, self._before, in_place=True)
            self.layers.append((step, stats))
            self._buffer, self._pending, self._before = self._before, None, None
        self.steps.append(step_record(step, loss, grad_norm, grad_norm_clipped, lr, clipped, collapsed))

    def frames(self) -> dict[str, pd.DataFrame]:
        """{"steps", "layers", "timesteps"} DataFrames (timesteps has no rows for an MLP)."""
        layers = list(self.layers)
        if self._pending is not None:  # a logged step whose optimizer step never came (e.g. a crash)
            layers.append(self._pending[:2])
        return {
            "steps": steps_frame(self.steps, self.run_id),
            "layers": layers_frame(layers, self.run_id),
            "timesteps": timesteps_frame(self.timesteps, self.run_id),
        }
