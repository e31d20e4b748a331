"""The watcher's side of the true gradients through time: at a logged step, each nn.RNN / LSTM / GRU's input
batch, initial state and the gradients at its outputs (output sequence, h_n, c_n) are captured by hooks and,
when the backward has finished, replayed through gradlab's engine (gradlab.torch.replay) into the timesteps
table (dh_norm, dc_norm per cell layer and step) and every cell layer's da_norm (the batch mean of the
per-example ||dL/dh_t|| over all steps, gradlab's da_norm of a cell layer). With gradient accumulation the
micro-batches of one step are pooled (their batch means weighted by their sizes: the mean over every example
of the step). The replay runs in float32 for a float32 module, else in float64 (replay_dtype); a float32
replay whose gradients vanish toward float32's underflow (or overflow) is done again in float64, so that the
timesteps table shows the vanishing curve float64 would. A module the replay refuses (dropout between layers
in training mode, a PackedSequence) is named in one warning and left out of the timesteps table. The probe's
cell-layer statistics (probe_cells) take the states from torch's own kernel and the gates from the engine."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch

from gradlab import _process
from gradlab.nn.fast import gru as fast_gru, lstm as fast_lstm
from gradlab.nn.sequence import project
from gradlab.probes.layers import GATE_ACTIVATIONS, act_moments, gates_saturated, saturated_fraction
from gradlab.probes.timesteps import mean_step_norms
from gradlab.torch import replay as rp

GATE_BLOCK_BYTES = 1 << 20  # the probe forms its gates this many bytes at a time (in cache; measured fastest)


FLOAT32_FLOOR = 1e-36  # 100 x float32's smallest normal number: a float32 replay this close to it is redone in float64


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
    """One captured batch replayed in replay_dtype(module); a float32 replay whose gradients came near
    float32's underflow or beyond its range (float32_safe) is done again in float64."""
    dtype = replay_dtype(module)
    r = _replayed(module, e, scale, dtype)
    if dtype == "float32" and not float32_safe(r):
        r = _replayed(module, e, scale, "float64")
    return r


def _replayed(module, e: dict, scale: float, dtype: str) -> rp.Replay:
    g = e["grads"]
    div = lambda t: None if t is None else t.to(getattr(torch, dtype)) / scale  # noqa: E731
    return rp.recurrent(module, e["x"], e["hx"], div(g.get("output")), grad_hn=div(g.get("h_n")), grad_cn=div(g.get("c_n")),
                        dtype=dtype, weight_grads=False)  # fmt: skip  (the watcher reads dL/dh_t, dL/dc_t only)


def float32_safe(r: rp.Replay) -> bool:
    """Every example's dL/dh_t (and dL/dc_t) at every step finite and with an entry of at least FLOAT32_FLOOR:
    no vanishing gradient reached float32's smallest normal number (1.2e-38, below which float32 loses its
    digits and then flushes to 0, where float64 goes on to 1e-308), no exploding one its largest (3.4e38)."""
    for d in (*r.dh, *(r.dc or ())):
        top = np.abs(d).max(axis=-1)  # (N, T)
        if not (np.isfinite(top).all() and top.min() >= FLOAT32_FLOOR):
            return False
    return True


def _store(watcher: Any, i: int, replays: list[rp.Replay]) -> None:
    """The step's timesteps rows of row i's module (pooled over micro-batches) and its cell layers' da_norm.
    The rows are replay.timestep_rows' (the batch means of per-example norms, mean_step_norms), built as arrays
    and made a frame once (a frame per layer and replay cost more than the norms)."""
    module = watcher.rows[i].module
    sizes = np.array([r.dh[0].shape[0] for r in replays], dtype=np.float64)
    pooled = lambda arrays: sum(w * mean_step_norms(a) for w, a in zip(sizes, arrays)) / sizes.sum()  # noqa: E731
    first = min(k for k, r in enumerate(watcher.rows) if r.module is module)
    cols: dict[str, list[np.ndarray]] = {"layer": [], "t": [], "dh_norm": [], "dc_norm": []}
    for j in range(len(replays[0].dh)):
        T = replays[0].dh[j].shape[1]
        cols["layer"].append(np.full(T, first + j, dtype=np.int64))  # the layers table's row of cell layer j
        cols["t"].append(np.arange(T, dtype=np.int64))
        cols["dh_norm"].append(pooled([r.dh[j] for r in replays]))
        cols["dc_norm"].append(pooled([r.dc[j] for r in replays]) if replays[0].dc is not None else np.full(T, np.nan))
    n = sum(len(t) for t in cols["t"])
    rows = {k: np.concatenate(v) for k, v in cols.items()}
    rows.update(step=np.full(n, watcher.step_index), dh_last_norm=np.full(n, np.nan), jacobian_norm=np.full(n, np.nan))
    watcher._timestep_rows[i] = pd.DataFrame(rows)
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


def replay_dtype(module: torch.nn.Module) -> str:
    """The dtype of a module's replay and probe states: float32 for a float32 module (torch gives its gradients
    in float32, so float64 arithmetic would add digits the inputs do not have; about twice as fast), float64
    for every other (float64 keeps the 1e-10 agreement with torch; float16 / bfloat16 are widened)."""
    return "float32" if next(module.parameters()).dtype == torch.float32 else "float64"


def probe_cells(module: torch.nn.Module, x: torch.Tensor, hx: Any, output: torch.Tensor | None = None,
                twins: dict | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Every cell layer's act_mean, act_std, dead mask (H,) and saturated_frac on the probe batch: h_t over all
    steps (from torch's own kernel, layer by layer: layer_states), dead = exactly 0 for every probe example and
    step, saturated over the gate units (LSTM i, f, o against sigmoid's 1/4 and g against tanh's 1; GRU r, z
    and n), or over h_t for an RNN (gradlab.probes.layers' definitions). The gates, which a fused module
    hides, are the engine's (step_gates) of the known pairs (x_t, h_(t-1)), formed in blocks of steps
    (_saturated_gates): a step's gates depend on x_t and h_(t-1) only. output: the module's output on x (the top layer's states);
    twins: a dict that keeps the one-layer modules of layer_states from one call to the next."""
    kind, dtype = rp.kind_of(module), replay_dtype(module)
    model = rp.engine_model(module, dtype)
    out = []
    with np.errstate(all="ignore"), _process.single_threaded():
        for j, (inp, h0, hs) in enumerate(layer_states(module, x, hx, output, twins)):
            h = hs.detach().cpu().to(getattr(torch, dtype)).numpy()  # (N, T, H)
            mean, std = act_moments(h.astype(np.float64))  # the float64 fast path of act_moments
            dead = ~np.any(h.reshape(-1, h.shape[-1]) != 0, axis=0)
            if kind == "rnn":
                sat = saturated_fraction(model.act, h)
            else:
                count = _saturated_gates(model, kind, j, rp._array(inp, "inputs", dtype), rp._array(h0, "hx", dtype), h)
                sat = count / (h.size * model.gates)
            out.append({"act_mean": mean, "act_std": std, "dead": dead, "saturated_frac": float(sat)})
    return out


def _saturated_gates(model: Any, kind: str, j: int, inp: np.ndarray, h0: np.ndarray, h: np.ndarray) -> int:
    """How many of layer j's gate units are saturated (gates_saturated) over all N T steps, from its input
    (N, T, D), initial state h0 (N, H) and states h_1..h_T (N, T, H), the gates formed GATE_BLOCK_BYTES at a
    time (so that they stay in cache)."""
    N, T, H = h.shape
    x, h_prev = inp.reshape(N * T, -1), previous_states(h0, h)
    rows = max(1, GATE_BLOCK_BYTES // (model.gates * H * h.itemsize))
    u, acts = np.empty((1, rows, H), h.dtype), GATE_ACTIVATIONS[type(model)]
    blocks = (slice(start, start + rows) for start in range(0, N * T, rows))
    return sum(gates_saturated(step_gates(model, kind, j, x[b], h_prev[b])[None], u, acts) for b in blocks)


def previous_states(h0: np.ndarray, h: np.ndarray) -> np.ndarray:
    """h_(t-1) of every step, (N T, H), batch-major rows, from h0 (N, H) and h_1..h_T (N, T, H)."""
    N, T, H = h.shape
    return np.concatenate([h0[:, None], h[:, :-1]], axis=1).reshape(N * T, H)


def step_gates(model: Any, kind: str, j: int, x: np.ndarray, h_prev: np.ndarray) -> np.ndarray:
    """Layer j's gate values (M, G H) of M independent steps from their x_t (M, D) and h_(t-1) (M, H): a
    step's gates read nothing else (the engine's fast-path step_gates, as its forward forms them)."""
    xw = project(x[None], model.p("weight_ih", j), model.p(model.biases[0], j))[0]  # W_ih x_t + b
    if kind == "lstm":
        return fast_lstm.step_gates(xw, h_prev, model.p("weight_hh", j))
    return fast_gru.step_gates(xw, h_prev, model.p("weight_hh", j), model.p("bias_hh", j))


def layer_states(module: torch.nn.Module, x: torch.Tensor, hx: Any, output: torch.Tensor | None = None,
                 twins: dict | None = None) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:  # fmt: skip
    """Per cell layer j of an nn.RNN / LSTM / GRU on x (its layout; hx as the module takes it): (its input
    (N, T, D_j), its initial h (N, H), its states h_1..h_T (N, T, H)), batch-major, without grad: torch's
    fused kernel run one layer at a time (a one-layer module of the same kind with layer j's weights copied
    in; kept in `twins`), the top layer's states `output` (the module's own output on x) when given."""
    if not isinstance(x, torch.Tensor):
        raise ValueError("inputs is a PackedSequence, which the replay does not support: pass the padded tensor")
    kind, L, H = rp.kind_of(module), module.num_layers, module.hidden_size
    twins = {} if twins is None else twins
    unbatched = x.dim() == 2
    bm = lambda a: a[None] if unbatched else (a if module.batch_first else a.transpose(0, 1))  # noqa: E731
    with torch.no_grad():
        inp = bm(x.detach())
        h0, c0 = (_layered(a, L, inp.shape[0], H, unbatched, inp) for a in rp._initial_states(kind, _detach(hx)))
        states = []
        for j in range(L):
            if j == L - 1 and output is not None:
                hs = bm(output.detach())
            else:
                twin = _twin(module, j, twins)
                hs, _ = twin(inp, (h0[j : j + 1], c0[j : j + 1]) if kind == "lstm" else h0[j : j + 1])
            states.append((inp, h0[j], hs))
            inp = hs
    return states


def _layered(a: torch.Tensor | None, L: int, N: int, H: int, unbatched: bool, like: torch.Tensor) -> torch.Tensor:
    """A per-layer initial state as (L, N, H) (zeros for None)."""
    if a is None:
        return like.new_zeros(L, N, H)
    return a[:, None, :] if unbatched else a


def _twin(module: torch.nn.Module, j: int, twins: dict) -> torch.nn.Module:
    """A one-layer batch_first module of module's kind holding a copy of its layer j's weights."""
    key = (id(module), j)
    w = getattr(module, f"weight_ih_l{j}")
    twin = twins.get(key)
    if twin is None or twin.weight_ih_l0.shape != w.shape or twin.weight_ih_l0.dtype != w.dtype:
        options = {"nonlinearity": module.nonlinearity} if isinstance(module, torch.nn.RNN) else {}
        twin = type(module)(w.shape[1], module.hidden_size, 1, bias=module.bias, batch_first=True, device=w.device,
                            dtype=w.dtype, **options).train(False)  # fmt: skip
        twins[key] = twin
    for name in ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if module.bias else ()):
        getattr(twin, f"{name}_l0").detach().copy_(getattr(module, f"{name}_l{j}").detach())
    return twin
