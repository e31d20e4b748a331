"""The timesteps table's columns, per time step: the batch means of ||dL/dh_t||, ||dL/dc_t|| (LSTM) and,
when asked, of the step Jacobians' spectral norms (gradlab.probes.jacobian)."""

from __future__ import annotations

import numpy as np

from gradlab.nn import LSTM, RNN
from gradlab.nn.trace import Gradients, SequenceTrace
from gradlab.probes.jacobian import jacobian_coefficients, spectral_norms
from gradlab.probes.model import Array


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
