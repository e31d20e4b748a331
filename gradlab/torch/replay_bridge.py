"""The watcher's side of the true gradients through time: at a logged step, each nn.RNN / LSTM / GRU's input
batch, initial state and the gradients at its outputs (output sequence, h_n, c_n) are captured by hooks and,
when the backward has finished, replayed through gradlab's engine (gradlab.torch.replay) into the timesteps
table and every cell layer's da_norm. Without gradlab.torch.replay the timesteps table stays empty."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import torch

from gradlab.torch import modules as mods


def available() -> bool:
    """gradlab.torch.replay is installed (another part of gradlab.torch, written alongside)."""
    return importlib.util.find_spec("gradlab.torch.replay") is not None


def capture(watcher: Any, i: int, args: tuple, out: Any) -> None:
    """Keep row i's module's input, hx and hooks on its outputs' gradients for this step's replay."""
    if not available():
        return
    x = args[0]
    if not isinstance(x, torch.Tensor):  # a PackedSequence: not replayed
        return
    hx = args[1] if len(args) > 1 else None
    output, state = out[0], out[1]
    h_n, c_n = (state if isinstance(state, tuple) else (state, None))
    entry: dict[str, Any] = {"x": x.detach(), "hx": _detach(hx), "grads": {}}
    for key, t in (("output", output), ("h_n", h_n), ("c_n", c_n)):
        if isinstance(t, torch.Tensor) and t.requires_grad:
            t.register_hook(lambda g, key=key: entry["grads"].__setitem__(key, g.detach()))
    watcher._recurrent.setdefault(i, []).append(entry)


def replay(watcher: Any, scale: float) -> None:
    """At the end of a logged step's backward: the replayed dL/dh_t (dL/dc_t) of every captured module,
    as timesteps rows and the cell layers' da_norm (scaled gradients divided by `scale`)."""
    if not watcher._recurrent or not available():
        return
    from gradlab.torch import replay as rp

    for i, entries in watcher._recurrent.items():
        top = watcher.rows[i]
        module = top.module
        rows = [k for k, r in enumerate(watcher.rows) if r.module is module]
        frames, da = [], {k: [] for k in rows}
        for e in entries:
            g = e["grads"]
            if not g:
                continue
            out = rp.recurrent(module, e["x"], e["hx"], _grad(g.get("output"), e, module, scale),
                               grad_hn=_scaled(g.get("h_n"), scale), grad_cn=_scaled(g.get("c_n"), scale))
            frames.append(rp.timestep_rows(out, step=watcher.step_index))
            for k, j in zip(rows, range(len(rows))):
                dh = np.asarray(out["dh"][j] if isinstance(out, dict) else out[j]["dh"])
                da[k].append(np.sqrt(np.einsum("ntk,ntk->n", dh, dh)))
        if frames:
            watcher._timesteps.append(_combine(frames))
        for k, parts in da.items():
            if parts:
                watcher._da_cells[k] = float(np.concatenate(parts).mean())
    watcher._recurrent = {}


def _detach(hx):
    if hx is None:
        return None
    if isinstance(hx, tuple):
        return tuple(h.detach() for h in hx)
    return hx.detach()


def _scaled(g, scale: float):
    return None if g is None else g / scale


def _grad(g, entry, module, scale):
    if g is None:
        out_shape = entry["x"].shape[:-1] + (module.hidden_size,)
        return torch.zeros(out_shape, dtype=entry["x"].dtype)
    return g / scale


def _combine(frames):
    import pandas as pd

    return pd.concat(frames, ignore_index=True)
