"""The timesteps table's columns, per cell layer and time step: the batch means of ||dL/dh_t||, ||dL/dc_t||
(LSTM), ||dL_T/dh_t|| (the last step's loss alone) and, when asked, of the step Jacobians' spectral norms
(gradlab.probes.jacobian)."""

from __future__ import annotations

import numpy as np

from gradlab.nn import GRU, LSTM, RNN
from gradlab.nn.recurrent import layer_name
from gradlab.nn.trace import Gradients, SequenceTrace
from gradlab.probes.jacobian import jacobian_parts, spectral_norms
from gradlab.probes.model import Array, layer_state


def mean_step_norms(d: Array) -> Array:
    """(N, T, H) -> (T,): the batch mean of per-example, per-step norms."""
    return np.sqrt(np.einsum("ntj,ntj->nt", d, d)).mean(axis=0)


def last_step_dout(dout: Array) -> Array:
    """dout of a loss on every step ((..., N, T, O)) with every step but the last set to 0: the gradient of
    the last step's term of the loss, as it enters the training loss (scaled by 1/(N T) like every term)."""
    last = np.zeros_like(dout)
    last[..., -1, :] = dout[..., -1, :]
    return last


def timestep_stats(
    model: RNN | LSTM | GRU,
    grads: Gradients,
    *,
    jacobian: bool = False,
    method: str = "auto",
    c0: Array | None = None,
    h0: Array | None = None,
    examples: int | None = None,
    last: Gradients | None = None,
) -> dict[str, Array]:
    """Per cell layer j (0 reads the input) and time step t = 0..T-1 (the trace's index: t = 0 is the
    first input step, h_1 in the engine's h_0..h_T numbering), rows layer-major:

    dh_norm, dc_norm (LSTM; NaN otherwise): batch means of per-example ||dL/dh_t||, ||dL/dc_t|| of layer j.
    dh_last_norm: batch mean of per-example ||dL_T/dh_t||, the gradient of the last step's loss alone.
        With the loss on the last step it is dh_norm (the same gradient). With the loss on every step it
        is read from `last`, the Gradients of a backward of last_step_dout(dout) through the same forward
        cache (Recorder runs it); NaN without it. At t = T-1 of the top layer it equals dh_norm.
    jacobian_norm: batch mean of ||dh_t/dh_(t-1)||_2 of the layer's own recurrence when `jacobian` (NaN
        otherwise), over the first `examples` examples of the batch when given (the Jacobians cost
        O(N T H^3) exactly, O(N T H^2) per power iteration). It uses model.params["weight_hh"...]: call
        this before the optimizer step. c0, h0: the initial states as the model took them (None: zeros).
    """
    trace = grads.trace
    if not isinstance(trace, SequenceTrace):
        raise ValueError("grads must carry a SequenceTrace: run an RNN/LSTM/GRU forward with trace=True")
    if last is not None and not isinstance(last.trace, SequenceTrace):
        raise ValueError("last must carry a SequenceTrace: backward the last step's dout through a traced forward")
    L = len(trace.layers)
    N, T, H = trace.h.shape
    on_last = getattr(model, "output", "last") == "last"
    cols: dict[str, list[Array]] = {c: [] for c in ("layer", "t", "dh_norm", "dc_norm", "dh_last_norm", "jacobian_norm")}
    with np.errstate(all="ignore"):
        for j, cell in enumerate(trace.layers):
            dh = mean_step_norms(cell.dh)
            cols["layer"].append(np.full(T, j, dtype=np.int64))
            cols["t"].append(np.arange(T, dtype=np.int64))
            cols["dh_norm"].append(dh)
            cols["dc_norm"].append(mean_step_norms(cell.dc) if cell.dc is not None else np.full(T, np.nan))
            if on_last:
                cols["dh_last_norm"].append(dh.copy())
            elif last is not None:
                cols["dh_last_norm"].append(mean_step_norms(last.trace.layers[j].dh))
            else:
                cols["dh_last_norm"].append(np.full(T, np.nan))
            jac = np.full(T, np.nan)
            if jacobian:
                n = N if examples is None else max(1, min(int(examples), N))
                coef, diag = jacobian_parts(model, cell, layer_state(c0, j, L), j, layer_state(h0, j, L))
                weight_hh = model.params[layer_name("weight_hh", j)].astype(np.float64)
                sig = spectral_norms(coef[:n].reshape(n * T, -1), weight_hh, method,
                                     diag=None if diag is None else diag[:n].reshape(n * T, -1))  # fmt: skip
                jac = sig.reshape(n, T).mean(axis=0)
            cols["jacobian_norm"].append(jac)
    return {c: np.concatenate(v) for c, v in cols.items()}
