"""The step Jacobian J_t = dh_t/dh_(t-1) of the RNN and the LSTM for every example and step: as
coefficients over the row blocks of weight_hh, as explicit matrices, and its spectral norm (an exact
SVD, or power iteration for large H)."""

from __future__ import annotations

import numpy as np

from gradlab.nn import LSTM, RNN
from gradlab.nn.cells.lstm import gate_derivatives
from gradlab.nn.trace import SequenceTrace
from gradlab.probes.model import Array, _c_prev

EXACT_MAX_H = 64  # jacobian_norm: exact SVD for H <= EXACT_MAX_H, power iteration beyond
POWER_ITERS = 300  # power iteration: at most this many products with J^T J ...
POWER_RTOL = 1e-9  # ... stopping when every estimate changes by less than this (relative). A lower bound
# on ||J||_2; on random H = 128 Jacobians (flat spectra, the slow case) within 2e-3 per example and 3e-5
# on the batch mean.


def jacobian_coefficients(model: RNN | LSTM, trace: SequenceTrace, c0: Array | None = None) -> Array:
    """The step Jacobian J_t = dh_t/dh_(t-1) = sum_k diag(a_k) W_k for every example and step,
    as the coefficients a (N, T, K H) over the K row blocks W_k of weight_hh (K = 1 RNN, 4 LSTM).

    RNN: J = diag(phi'(z_t)) W_hh.
    LSTM (c_(t-1) held fixed: the h -> h block of the state Jacobian), with z = W_hh h_(t-1) + ...:
        dh_t = diag(dh_t/dz_o) dz_o + diag(dh_t/dc_t) dc_t,  dc_t = sum over i, f, g of diag(dc_t/dz_k) dz_k,
    the factors of gradlab.nn.cells.lstm.gate_derivatives: a_k = (dh_t/dc_t) (dc_t/dz_k) for k = i, f, g,
    and a_o = dh_t/dz_o.
    """
    if isinstance(model, LSTM):
        d = gate_derivatives(trace.gates, np.tanh(trace.c), _c_prev(trace.c, c0))
        return np.concatenate([d.dc_dh * d.i, d.dc_dh * d.f, d.dc_dh * d.g, d.o], axis=-1)
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
