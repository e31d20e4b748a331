"""The watcher's side of the true gradients through time: at a logged step, each nn.RNN / LSTM / GRU's input
batch, initial state and the gradients at its outputs (output sequence, h_n, c_n) are captured by hooks and,
when the backward has finished, replayed through gradlab's engine (gradlab.torch.replay) into the timesteps
table (dh_norm, dc_norm per cell layer and step) and every cell layer's da_norm (the batch mean of the
per-example ||dL/dh_t|| over all steps, gradlab's da_norm of a cell layer). With gradient accumulation the
micro-batches of one step are pooled (their batch means weighted by their sizes: the mean over every example
of the step). A module the replay refuses (dropout between layers in training mode, a PackedSequence) is
named in one warning and left out of the timesteps table."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch

from gradlab.probes.layers import GATE_ACTIVATIONS, _act_moments, _gates_saturated, _saturated_frac
from gradlab.torch import replay as rp


def capture(watcher: Any, i: int, args: tuple, out: Any) -> None:
    """Keep row i's module's input, hx and hooks on its outputs' gradients for this step's replay."""
    x = args[0] if args else None
    if not isinstance(x, torch.Tensor):  # a PackedSequence: not replayed
        _refuse(watcher, i, "its input is not a tensor (a PackedSequence?)")
        return
    hx = args[1] if len(args) > 1 else None
    output, state = out[0], out[1]
    h_n, c_n = state if isinstance(state, tuple) else (state, None)
    entry: dict[str, Any] = {"x": x.detach(), "hx": _detach(hx), "grads": {}}
    for key, t in (("output", output), ("h_n", h_n), ("c_n", c_n)):
        if isinstance(t, torch.Tensor) and t.requires_grad:
            t.register_hook(lambda g, key=key: entry["grads"].__setitem__(key, g.detach()))
    watcher._recurrent.setdefault(i, []).append(entry)


def replay(watcher: Any, scale: float) -> None:
    """At the end of a logged step's backward: replay every captured batch (gradients divided by `scale`)."""
    for i, entries in watcher._recurrent.items():
        done = [e for e in entries if e["grads"] and "replay" not in e]
        for e in done:
            try:
                e["replay"] = _one(watcher.rows[i].module, e, scale)
            except ValueError as err:
                _refuse(watcher, i, str(err))
                e["replay"] = None
        replays = [e["replay"] for e in entries if e.get("replay") is not None]
        if replays:
            _store(watcher, i, replays)


def _one(module, e: dict, scale: float) -> rp.Replay:
    g = e["grads"]
    div = lambda t: None if t is None else t.double() / scale  # noqa: E731
    return rp.recurrent(module, e["x"], e["hx"], div(g.get("output")), grad_hn=div(g.get("h_n")), grad_cn=div(g.get("c_n")))


def _store(watcher: Any, i: int, replays: list[rp.Replay]) -> None:
    """The step's timesteps rows of row i's module (pooled over micro-batches) and its cell layers' da_norm."""
    module = watcher.rows[i].module
    sizes = np.array([r.dh[0].shape[0] for r in replays], dtype=np.float64)
    frames = [rp.timestep_rows(r) for r in replays]
    rows = frames[0][["layer", "t"]].copy()
    for col in ("dh_norm", "dc_norm"):
        rows[col] = sum(w * f[col].to_numpy() for w, f in zip(sizes, frames)) / sizes.sum()
    first = min(k for k, r in enumerate(watcher.rows) if r.module is module)
    rows["layer"] += first  # the timesteps table's layer is the layers table's row of the cell layer
    rows["step"], rows["dh_last_norm"], rows["jacobian_norm"] = watcher.step_index, np.nan, np.nan
    watcher._timestep_rows[i] = rows
    for k, r in enumerate(watcher.rows):
        if r.module is module:
            norms = np.concatenate([np.sqrt(np.einsum("ntk,ntk->n", rep.dh[r.cell], rep.dh[r.cell])) for rep in replays])
            watcher._da_cells[k] = float(norms.mean())


def _refuse(watcher: Any, i: int, why: str) -> None:
    name = watcher.rows[i].name
    if name not in watcher._refused:
        watcher._refused.add(name)
        warnings.warn(f"gradlab.torch: {name}: no gradients through time (timesteps table): {why}", stacklevel=2)


def _detach(hx):
    if hx is None:
        return None
    if isinstance(hx, (tuple, list)):
        return tuple(h.detach() for h in hx)
    return hx.detach()


def frame(watcher: Any) -> pd.DataFrame | None:
    """The step's timesteps rows of every replayed module, or None."""
    parts = list(watcher._timestep_rows.values())
    return pd.concat(parts, ignore_index=True) if parts else None


def probe_cells(module: torch.nn.Module, x: torch.Tensor, hx: Any) -> list[dict[str, Any]]:
    """Every cell layer's act_mean, act_std, dead mask (H,) and saturated_frac on the probe batch, from
    gradlab's engine run forward with the module's weights (a fused module hides its lower layers' states
    and every gate): h_t over all steps, dead = exactly 0 for every probe example and step, saturated over
    the gate units (LSTM i, f, o against sigmoid's 1/4 and g against tanh's 1; GRU r, z and n), or over h_t
    for an RNN (gradlab.probes.layers' definitions)."""
    kind = rp.kind_of(module)
    model = rp.engine_model(module)
    xs, unbatched = rp._inputs(module, x)
    h0, c0 = rp._initial_states(kind, _detach(hx))
    L, N, H = module.num_layers, xs.shape[0], module.hidden_size
    state = lambda a: None if a is None else rp._per_layer(rp._float64(a, "hx"), "hx", L, N, H, unbatched)  # noqa: E731
    one = lambda a: a if a is None or L > 1 else a[0]  # noqa: E731
    h0, c0 = state(h0), state(c0)
    _, cache = model.forward(xs, one(h0), one(c0)) if kind == "lstm" else model.forward(xs, one(h0))
    out = []
    for layer in cache.layers:
        h = np.ascontiguousarray(layer.hs[1:].swapaxes(0, 1))  # (N, T, H)
        mean, std = _act_moments(h)
        with np.errstate(all="ignore"):
            dead = ~np.any(h.reshape(-1, H) != 0, axis=0)
            if kind == "rnn":
                sat = _saturated_frac(model.act, h)
            else:
                gates = layer.gates.swapaxes(0, 1)  # (N, T, G H)
                acts = GATE_ACTIVATIONS[type(model)]
                sat = _gates_saturated(gates, np.empty(h.shape, h.dtype), acts) / gates.size
        out.append({"act_mean": mean, "act_std": std, "dead": dead, "saturated_frac": float(sat)})
    return out
