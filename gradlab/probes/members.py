"""The layers table's per-member columns of an ensemble (every array with the member axis first), taken for all
members at once: each member's numbers are those gradlab.probes.layers takes from its slice alone, bit for bit
(tests/test_probes_members.py holds them together), in a handful of NumPy calls instead of a handful per member and
layer.

Why the bits agree: a member's slice of a C-contiguous (R, ...) array is laid out as its array alone, and a
reduction along the last axes runs the same inner loop over the same entries in the same order, except
einsum's total sum of more than STACKED_MAX entries, which NumPy's buffered iterator cuts into chunks one way
for one member and another for R of them; those (and any array that is not C-contiguous) are reduced member by
member.
"""

from __future__ import annotations

import math

import numpy as np

from gradlab.nn.trace import MLPTrace
from gradlab.probes.layers import CANCELLED, SATURATION, never_saturated, safe_ratio
from gradlab.probes.model import Array, Model, layer_params
from gradlab.probes.norms import _example_norms, _sq_norm

STACKED_MAX = 8192  # entries per member up to which einsum's stacked total sum is each member's own


def sq_norms(a: Array) -> Array:
    """Each member's squared L2 norm, (R, ...) -> (R,): _sq_norm of a[r]."""
    R = a.shape[0]
    if a.flags.c_contiguous and a[0].size <= STACKED_MAX and R > 1:
        flat = a.reshape(R, -1)
        return np.einsum("ri,ri->r", flat, flat)
    return np.array([_sq_norm(a[r]) for r in range(R)], dtype=np.float64)


def grad_norms(model: Model, params: dict[str, Array]) -> tuple[Array, Array]:
    """Per member and layer ||dL/dW|| over the layer's weight matrices and ||dL/db|| over its biases, (R, L)
    each: layers._grad_norms of each member's gradients."""
    def norms(names: list[str]) -> Array:
        total = 0.0
        for n in names:  # summed in _norm's order, from 0
            total = total + sq_norms(params[n])
        return np.sqrt(total)

    layers = layer_params(model)
    weights = np.stack([norms(w) for w, _ in layers], axis=1)
    biases = np.stack([norms(b) for _, b in layers], axis=1)
    return weights, biases


def mlp_columns(views: list[Model], trace: MLPTrace) -> list[dict[str, Array]] | None:
    """Per member, layer_stats' columns read from an MLP's trace (delta_norm, da_norm, act_mean, act_std,
    saturated_frac, one entry per layer), from the ensemble's trace (each array (R, N, width_l)); views: the
    members' solo models (their activations). None where this cannot give each member's bits (not float64)."""
    if trace.a[0].dtype != np.float64:
        return None
    R, L = len(views), len(trace.a)
    names = ("delta_norm", "da_norm", "act_mean", "act_std", "saturated_frac")
    out = [{c: np.empty(L) for c in names} for _ in range(R)]
    with np.errstate(all="ignore"):
        for l in range(L):
            columns = {
                "delta_norm": example_norm_means(trace.delta[l]),
                "da_norm": example_norm_means(trace.da[l]),
                "saturated_frac": saturated_fractions([v.layer(l)[2] for v in views], trace.phi[l]),
            }
            columns["act_mean"], columns["act_std"] = moments(trace.a[l])
            for r in range(R):
                for name, values in columns.items():
                    out[r][name][l] = values[r]
    return out


def example_norm_means(d: Array) -> Array:
    """Each member's batch mean of per-example L2 norms, (R, N, ...) -> (R,): _example_norms(d[r]).mean()."""
    if not d.flags.c_contiguous:
        return np.array([_example_norms(d[r]).mean() for r in range(d.shape[0])])
    flat = d.reshape(d.shape[0], d.shape[1], -1)
    return np.sqrt(np.einsum("rij,rij->ri", flat, flat)).mean(axis=1)


def moments(a: Array) -> tuple[Array, Array]:
    """Each member's (mean, population std) over all its entries, (R, ...) -> (R,), (R,): act_moments(a[r])."""
    R = a.shape[0]
    if not a.flags.c_contiguous:  # a member's mean is its reduction in its own layout
        mean = np.array([a[r].mean() for r in range(R)])
    else:
        mean = a.reshape(R, -1).mean(axis=1)
    var = sq_norms(a) / a[0].size - mean * mean
    std = np.sqrt(np.maximum(var, 0.0))
    std[~np.isfinite(var)] = math.nan
    for r in np.flatnonzero(np.isfinite(var) & (var < CANCELLED * mean * mean)):  # where E[a^2] - E[a]^2 cancels
        std[r] = a[r].std()
    return mean, std


def saturated_fractions(acts: list, phi: Array) -> Array:
    """Each member's fraction of entries with phi' < SATURATION max phi', (R, N, H) -> (R,):
    saturated_fraction(acts[r], phi[r])."""
    R, size = phi.shape[0], phi[0].size
    act = acts[0]
    if act.name == "identity":
        return np.zeros(R)
    if act.name in ("relu", "leaky_relu"):
        counts = np.count_nonzero(~(phi > 0), axis=tuple(range(1, phi.ndim)))
        never = np.array([never_saturated(a) for a in acts])
        return np.where(never, 0.0, counts / size)
    counts = np.count_nonzero(act.derivative(phi) < SATURATION * act.max_derivative, axis=tuple(range(1, phi.ndim)))
    return counts / size


def update_ratios(model: Model, before: dict[str, Array], after: dict[str, Array]) -> Array:
    """Per member and layer ||W_after - W_before|| / ||W_after|| over the layer's weight matrices, (R, L), from
    the ensemble's weights before and after a step: layers.update_ratios of each member."""
    ratios = []
    with np.errstate(all="ignore"):
        for w_names, _ in layer_params(model):
            moved, size = 0.0, 0.0
            for n in w_names:  # summed in _norm's order, from 0
                moved = moved + sq_norms(np.subtract(after[n], before[n]))
                size = size + sq_norms(after[n])
            ratios.append([safe_ratio(float(m), float(s)) for m, s in zip(np.sqrt(moved), np.sqrt(size))])
    return np.asarray(ratios, dtype=np.float64).T
