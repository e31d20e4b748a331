"""The step Jacobian J_t = dh_t/dh_(t-1) of a cell layer of the RNN, the LSTM and the GRU for every example
and step: as coefficients over the row blocks of weight_hh (plus a diagonal for the GRU), as explicit
matrices, and its spectral norm (an exact SVD, or power iteration for large H)."""

from __future__ import annotations

import numpy as np

from gradlab.nn import GRU, LSTM, RNN
from gradlab.nn.cells import gru as gru_cell
from gradlab.nn.cells.lstm import gate_derivatives
from gradlab.nn.recurrent import layer_name
from gradlab.nn.trace import CellTrace, SequenceTrace
from gradlab.probes.model import Array, _c_prev, _h_prev

EXACT_MAX_H = 64  # jacobian_norm: exact SVD for H <= EXACT_MAX_H, power iteration beyond
POWER_ITERS = 300  # power iteration: at most this many products with J^T J ...
POWER_RTOL = 1e-9  # ... stopping when every estimate changes by less than this (relative). A lower bound
# on ||J||_2; on random H = 128 Jacobians (flat spectra, the slow case) within 2e-3 per example and 3e-5
# on the batch mean.


def jacobian_coefficients(
    model: RNN | LSTM | GRU, trace: SequenceTrace | CellTrace, c0: Array | None = None, layer: int = 0,
    h0: Array | None = None,
) -> Array:
    """The step Jacobian J_t = dh_t/dh_(t-1) = sum_k diag(a_k) W_k for every example and step,
    as the coefficients a (N, T, K H) over the K row blocks W_k of weight_hh (K = 1 RNN, 4 LSTM, 3 GRU;
    the GRU's J has a diagonal besides: see jacobian_parts). trace: a one-layer model's SequenceTrace, or
    cell layer `layer`'s CellTrace; c0, h0: that layer's initial states (zeros when None).

    RNN: J = diag(phi'(z_t)) W_hh.
    LSTM (c_(t-1) held fixed: the h -> h block of the state Jacobian), with z = W_hh h_(t-1) + ...:
        dh_t = diag(dh_t/dz_o) dz_o + diag(dh_t/dc_t) dc_t,  dc_t = sum over i, f, g of diag(dc_t/dz_k) dz_k,
    the factors of gradlab.nn.cells.lstm.gate_derivatives: a_k = (dh_t/dc_t) (dc_t/dz_k) for k = i, f, g,
    and a_o = dh_t/dz_o.
    GRU: see jacobian_parts.
    """
    return jacobian_parts(model, trace, c0, layer, h0)[0]


def jacobian_parts(
    model: RNN | LSTM | GRU, trace: SequenceTrace | CellTrace, c0: Array | None = None, layer: int = 0,
    h0: Array | None = None,
) -> tuple[Array, Array | None]:
    """(coefficients a (N, T, K H), diagonal d (N, T, H) or None) of J_t = diag(d) + sum_k diag(a_k) W_k.

    RNN and LSTM: jacobian_coefficients' a, no diagonal. GRU, with h_t = (1 - z) n + z h_(t-1),
    a_n = x_n + r (W_hn h_(t-1) + b_hn) and the factors of gradlab.nn.cells.gru.gate_derivatives:
        J = diag(z) + diag(f_r) W_hr + diag(f_z) W_hz + diag(f_n r) W_hn,
    directly through z h_(t-1), and through the reset, update and candidate gates' pre-activations.
    """
    if isinstance(model, GRU):
        H = model.hidden_size
        h_prev = _h_prev(trace.h, h0)
        w_hn = model.params[layer_name("weight_hh", layer)][2 * H :]
        b_hn = model.params[layer_name("bias_hh", layer)][2 * H :]
        hw_n = h_prev @ w_hn.T + b_hn  # W_hn h_(t-1) + b_hn, which r scales
        d = gru_cell.gate_derivatives(trace.gates, h_prev, hw_n)
        r, z = trace.gates[..., :H], trace.gates[..., H : 2 * H]
        return np.concatenate([d.r, d.z, d.n * r], axis=-1), z
    if isinstance(model, LSTM):
        d = gate_derivatives(trace.gates, np.tanh(trace.c), _c_prev(trace.c, c0))
        return np.concatenate([d.dc_dh * d.i, d.dc_dh * d.f, d.dc_dh * d.g, d.o], axis=-1), None
    return model.act.derivative(trace.h), None


def step_jacobians(coef: Array, weight_hh: Array, diag: Array | None = None) -> Array:
    """Explicit Jacobians (M, H, H) from coefficients (M, K H), weight_hh (K H, H) and a diagonal (M, H)."""
    KH, H = weight_hh.shape
    K = KH // H
    J = np.einsum("mkh,khj->mhj", coef.reshape(-1, K, H), weight_hh.reshape(K, H, H))
    if diag is not None:
        J[:, np.arange(H), np.arange(H)] += diag.reshape(-1, H)
    return J


def spectral_norms(
    coef: Array, weight_hh: Array, method: str = "auto", *, iters: int = POWER_ITERS, rtol: float = POWER_RTOL,
    seed: int = 0, diag: Array | None = None,
) -> Array:
    """||J_m||_2 for J_m = diag(diag[m]) + sum_k diag(coef[m, k-block]) W_k, coef (M, K H), diag (M, H) or
    None (no diagonal): method "exact" (SVD of
    each J, in chunks), "power" (power iteration on J^T J, matrix-free, all m at once, from a fixed
    random start), or "auto" (exact when H <= EXACT_MAX_H)."""
    KH, H = weight_hh.shape
    K = KH // H
    coef = coef.reshape(-1, KH)
    M = coef.shape[0]
    diag = None if diag is None else diag.reshape(M, H)
    if method == "auto":
        method = "exact" if H <= EXACT_MAX_H else "power"
    if method == "exact":
        chunk = max(1, (1 << 22) // (H * H))  # about 32 MiB of float64 Jacobians at a time
        res = np.empty(M)
        for s in range(0, M, chunk):
            res[s : s + chunk] = np.linalg.svd(step_jacobians(coef[s : s + chunk], weight_hh, None if diag is None else diag[s : s + chunk]), compute_uv=False)[:, 0]
        return res
    if method != "power":
        raise ValueError(f"method must be one of auto, exact, power; got {method!r}")

    def jv(v: Array) -> Array:  # J v = d * v + sum_k a_k * (W_k v)
        out = (coef * (v @ weight_hh.T)).reshape(M, K, H).sum(axis=1)
        return out if diag is None else out + diag * v

    def jtu(u: Array) -> Array:  # J^T u = d * u + sum_k W_k^T (a_k * u)
        out = (coef * np.tile(u, K)) @ weight_hh
        return out if diag is None else out + diag * u

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
