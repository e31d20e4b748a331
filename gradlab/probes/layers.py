"""The layers table's columns, per layer (gradlab.probes.model) from one backward with trace: the
norms of the weight and bias gradients and of delta, the activations' moments, saturation, the dead
fractions (from a gradlab.probes.dead report) and the update ratios.

    saturated  phi'(z) < 1% of max phi' (Activation.derivative(phi) < 0.01 max_derivative, from the
               activation's output phi, which for a residual layer is not the layer's output a), as a
               fraction over units x examples (x steps). LSTM cell: over the 4H gate units, sigmoid
               gates i, f, o against 1/4 and the tanh candidate g against 1; GRU cell: over the 3H gate
               units, sigmoid gates r, z against 1/4 and the tanh candidate n against 1.
    da_norm    batch mean of per-example ||dL/da_l||, the gradient of the layer's output: for a residual
               MLP layer the residual stream's gradient, for a plain one W_(l+1)^T delta_(l+1) (the output
               layer's is dL/dy); for a cell layer dL/dh_t over all steps, for the readout dL/dy.
    update_ratio  ||W_after - W_before|| / ||W_after|| over the layer's weight matrices (not biases),
               from a snapshot taken before the optimizer step of a logged step, or from the norms of
               its updates that the optimizer reports (gradlab.nn.optim's measure_next).
"""

from __future__ import annotations

import math

import numpy as np

from gradlab.nn import GRU, LSTM, RNN
from gradlab.nn.activations import Activation
from gradlab.nn.activations import SIGMOID, TANH
from gradlab.nn.sequence import split_gates
from gradlab.nn.trace import CellTrace, Gradients, MLPTrace
from gradlab.probes.dead import DeadReport
from gradlab.probes.frames import COLUMNS
from gradlab.probes.model import Array, Model, layer_params, weight_names
from gradlab.probes.norms import _example_norms, _norm, _sq_norm

SATURATION = 0.01  # a unit is saturated where phi' < SATURATION * max phi'
CANCELLED = 1e-8  # E[a^2] - E[a]^2 below CANCELLED E[a]^2 (std below 1e-4 of |mean|) has cancelled: two-pass std


def act_moments(a: Array) -> tuple[float, float]:
    """Mean and (population, ddof = 0) standard deviation over all entries.

    Fast path E[a^2] - E[a]^2 in float64; where that cancels (std below 1e-4 of |mean|) or the
    array is float32 (einsum would accumulate in float32), NumPy's two-pass a.std in float64."""
    if a.dtype != np.float64:
        return float(a.mean(dtype=np.float64)), float(a.std(dtype=np.float64))
    mean = float(a.mean())
    var = _sq_norm(a) / a.size - mean * mean
    if not np.isfinite(var):
        return mean, float("nan")
    if var < CANCELLED * mean * mean:
        return mean, float(a.std())
    return mean, math.sqrt(var)


def saturated_fraction(act: Activation, a: Array) -> float:
    """Fraction of entries (units x examples [x steps]) with phi'(z) < SATURATION max phi'."""
    if act.name == "identity":
        return 0.0
    if act.name in ("relu", "leaky_relu"):
        # phi' is 1 where a > 0 and the slope elsewhere (0 for ReLU): no derivative array needed
        if never_saturated(act):
            return 0.0
        return float(np.count_nonzero(~(a > 0))) / a.size
    return float(np.count_nonzero(act.derivative(a) < SATURATION * act.max_derivative)) / a.size


def never_saturated(act: Activation) -> bool:
    """A (leaky) ReLU whose smallest derivative, its slope, is at least SATURATION max phi'."""
    return act.slope >= SATURATION * act.max_derivative


def layer_stats(
    model: Model,
    grads: Gradients,
    *,
    dead: DeadReport | None = None,
    dout: Array | None = None,
    output: Array | None = None,
    grad_norms: tuple[Array, Array] | None = None,
    columns: dict[str, Array] | None = None,
) -> dict[str, Array]:
    """Per-layer columns of the layers table (one entry per layer) from one backward with trace.

    weight_grad_norm, bias_grad_norm are of the gradients as passed (take them before clipping);
    delta_norm, da_norm are the batch means of per-example ||dL/dz_l||, ||dL/da_l||; act_mean, act_std
    over all entries of a_l (the layer's output: the stream of a residual layer); saturated_frac over
    units x examples (x steps), from phi_l; dead_frac, born_dead_frac, died_frac from `dead`
    (a DeadTracker report on the probe set; NaN without one); update_ratio is NaN here (see
    update_ratios). grad_norms: the two gradient columns as _grad_norms took them (then `grads.params`
    is not read, and may have been clipped since). columns: the columns an MLP's trace gives, already
    taken (gradlab.probes.members.mlp_columns: an ensemble takes them for all its members at once).
    """
    trace = grads.trace
    if trace is None:
        raise ValueError("grads has no trace: run the forward with trace=True")
    names = layer_params(model)
    L = len(names)
    out = {c: np.full(L, np.nan) for c in COLUMNS["layers"] if c not in ("run_id", "step")}
    out["layer"] = np.arange(L, dtype=np.int64)
    out["weight_grad_norm"], out["bias_grad_norm"] = grad_norms if grad_norms is not None else _grad_norms(model, grads)
    with np.errstate(all="ignore"):
        if columns is not None:
            out.update(columns)
        elif isinstance(trace, MLPTrace):
            for l in range(L):
                act = model.layer(l)[2]
                out["delta_norm"][l] = _example_norms(trace.delta[l]).mean()
                out["da_norm"][l] = _example_norms(trace.da[l]).mean()
                out["act_mean"][l], out["act_std"][l] = act_moments(trace.a[l])
                out["saturated_frac"][l] = saturated_fraction(act, trace.phi[l])
        else:
            for j, cell in enumerate(trace.layers):
                _cell_layer(model, cell, out, j)
            readout = L - 1
            if dout is not None:
                out["delta_norm"][readout] = out["da_norm"][readout] = _example_norms(np.asarray(dout)).mean()
            if output is not None:
                out["act_mean"][readout], out["act_std"][readout] = act_moments(np.asarray(output))
            out["saturated_frac"][readout] = 0.0  # the readout is linear
    if dead is not None:
        out["dead_frac"][:] = dead.dead_frac
        out["born_dead_frac"][:] = dead.born_dead_frac
        out["died_frac"][:] = dead.died_frac
    return out


def _grad_norms(model: Model, grads: Gradients) -> tuple[Array, Array]:
    """Per layer ||dL/dW|| over its weight matrices and ||dL/db|| over its biases: (L,), (L,)."""
    g = grads.params
    names = layer_params(model)
    weights = np.array([_norm(*(g[n] for n in w_names)) for w_names, _ in names], dtype=np.float64)
    biases = np.array([_norm(*(g[n] for n in b_names)) for _, b_names in names], dtype=np.float64)
    return weights, biases



def _cell_layer(model: RNN | LSTM | GRU, cell: CellTrace, out: dict[str, Array], j: int) -> None:
    """Row j of a recurrent model: cell layer j over all time steps."""
    h = cell.h
    out["act_mean"][j], out["act_std"][j] = act_moments(h)
    out["delta_norm"][j] = _example_norms(cell.dz).mean()  # the engine's dL/dz, over every step and gate
    out["da_norm"][j] = _example_norms(cell.dh).mean()  # dL/dh_t, over every step
    gated = isinstance(model, (LSTM, GRU))
    acts, units = (GATE_ACTIVATIONS[type(model)], cell.gates) if gated else ((model.act,), h)  # an RNN: phi' from h_t
    N, T, H = h.shape
    chunk = max(1, _CHUNK_ENTRIES // (N * H))  # steps per chunk: the scratch stays in cache
    u = np.empty((chunk, N, H), h.dtype).swapaxes(0, 1)  # laid out as the trace is (batch-major views of time-major arrays)
    n_sat = sum(gates_saturated(units[:, s : s + chunk], u, acts) for s in range(0, T, chunk))
    out["saturated_frac"][j] = n_sat / units.size


_CHUNK_ENTRIES = 1 << 15  # entries per scratch array in the cells' chunked loop (256 KiB of float64)
GATE_ACTIVATIONS = {LSTM: (SIGMOID, SIGMOID, TANH, SIGMOID), GRU: (SIGMOID, SIGMOID, TANH)}  # i, f, g, o; r, z, n


def gates_saturated(gates: Array, u: Array, acts: tuple[Activation, ...]) -> int:
    """How many of the gate units in gates (N, steps, G H) are saturated, each gate block against its own
    activation's max derivative (sigmoid' below 1% of 1/4, tanh' below 1% of 1); u is an (N, >= steps, H)
    scratch array. An RNN's h (N, steps, H) is one block, against its activation."""
    u = u[:, : gates.shape[1]]
    return sum(
        int(np.count_nonzero(act.derivative(g, out=u) < SATURATION * act.max_derivative))
        for g, act in zip(split_gates(gates, len(acts)), acts)
    )  # fmt: skip


def snapshot(model: Model, out: dict[str, Array] | None = None) -> dict[str, Array]:
    """Copies of the model's weight matrices (not biases), taken before the optimizer step of a
    logged step; update_ratios compares them with the weights after it. `out`: a previous snapshot
    whose arrays are reused (no new memory)."""
    names = weight_names(model)
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
            ratios.append(safe_ratio(_norm(*diffs), _norm(*(model.params[n] for n in w_names))))
    return np.asarray(ratios, dtype=np.float64)


def update_ratios_from_norms(model: Model, update_norms: dict[str, float], param_norms: dict[str, float] | None = None) -> Array:
    """update_ratios with ||W_after - W_before|| per weight matrix as the optimizer reports it (the norm of the
    update it applied) and ||W_after|| from param_norms where it has them (else from model.params); NaN for
    a layer whose matrices it did not report (no step was taken)."""
    known = param_norms or {}
    ratios = []
    with np.errstate(all="ignore"):
        for w_names, _ in layer_params(model):
            if not all(n in update_norms for n in w_names):
                ratios.append(math.nan)
                continue
            num = math.sqrt(sum(update_norms[n] ** 2 for n in w_names))
            den = math.sqrt(sum(known[n] ** 2 if n in known else _sq_norm(model.params[n]) for n in w_names))
            ratios.append(safe_ratio(num, den))
    return np.asarray(ratios, dtype=np.float64)


def safe_ratio(num: float, den: float) -> float:
    """num / den; inf when den is 0 and num is not, NaN when both are."""
    return num / den if den > 0 else (math.inf if num > 0 else math.nan)
