"""The true per-step gradients inside a fused torch recurrent module (nn.RNN, nn.LSTM, nn.GRU), by replay.

A fused module runs its whole recurrence in one kernel, so autograd shows only the gradients that reach it
from outside: of its output sequence (what the layers above send down), of h_n and of c_n. The total
dL/dh_t of each cell layer, through the recurrence, is never formed as a tensor. The replay runs the
module's batch through gradlab's engine (gradlab.nn: the same equations, PyTorch's gate order) in float64
(or dtype="float32": the watcher's choice for a float32 module, whose gradients torch gives in float32 anyway),
with the module's current weights and the same initial state, and backpropagates the captured gradients
from the cells' states (Recurrent.backward_states):

    dL/dh_t = g_t + (dh_(t+1)/dh_t)^T dL/dh_(t+1),   g_t the gradient from outside the recurrence at step t

(the output's gradient or the layer above's for g_t, plus grad_hn at t = T; likewise dL/dc_t for the
LSTM, with grad_cn at T). Supported: batch_first True or False, unbatched (T, D) inputs (replayed as N = 1),
num_layers >= 1, the RNN's tanh and relu, bias=False, hx None (zeros), any float dtype of the module (the
replay's own arithmetic is float64 unless dtype="float32" is asked for). Refused with one
line: bidirectional, proj_size > 0, dropout > 0 between layers in training mode (the replay cannot draw
torch's masks), PackedSequence inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import nn

from gradlab.nn import GRU, LSTM, RNN, _checks
from gradlab.nn.recurrent import RecurrentCache
from gradlab.probes.timesteps import mean_step_norms
from gradlab.torch.modules import RECURRENT

Array = np.ndarray
Tensor = torch.Tensor | Array  # what the replay accepts: a tensor (any float dtype, any device) or an array
MODELS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
DTYPES = ("float64", "float32")  # the replay's arithmetic


@dataclass
class Replay:
    """One replayed batch, float64 (also when the replay's arithmetic was float32: a norm of gradients below
    1e-19 would underflow in float32's squares), batch-major, per cell layer j (0 reads the input), each
    (N, T, H): h[j] the states h_1..h_T, dh[j] = dL/dh_t (the total, through the recurrence); for the LSTM c[j] the cell
    states and dc[j] = dL/dc_t (None otherwise). dh0, dc0 (layers, N, H): dL/d(initial state). weight_grads:
    dL/d(parameter) by the module's own parameter names (a merged RNN/LSTM bias's gradient under both
    bias_ih and bias_hh), to compare with the module's .grad; empty when the replay was asked for none."""

    kind: str
    h: list[Array]
    dh: list[Array]
    c: list[Array] | None
    dc: list[Array] | None
    dh0: Array
    dc0: Array | None
    weight_grads: dict[str, Array]


def kind_of(module: nn.Module) -> str:
    """rnn, lstm or gru for a module the replay supports; else one ValueError line naming what it is not."""
    kind = RECURRENT.get(type(module))
    if kind is None:
        raise ValueError(f"module must be a torch nn.RNN, nn.LSTM or nn.GRU, got {type(module).__name__}")
    if module.bidirectional:
        raise ValueError(f"bidirectional=True is not supported: gradlab replays one-directional {type(module).__name__}s only")
    if getattr(module, "proj_size", 0):
        raise ValueError(f"proj_size={module.proj_size} is not supported: gradlab's LSTM has no projection (proj_size=0)")
    if module.dropout > 0 and module.training and module.num_layers > 1:
        raise ValueError(
            f"dropout={module.dropout} in training mode is not supported: the replay cannot draw torch's dropout "
            "masks; use dropout=0 or module.eval()"
        )
    return kind


def engine_model(module: nn.Module, dtype: str = "float64") -> RNN | LSTM | GRU:
    """gradlab's model in `dtype` (float64 or float32) with the module's current weights (load_torch); its
    readout is unused."""
    kind = kind_of(module)
    check_dtype(dtype)
    options = dict(layers=module.num_layers, output="all", dtype=dtype, rng=np.random.default_rng(0))
    if kind == "rnn":
        model = RNN(module.input_size, module.hidden_size, 1, module.nonlinearity, **options)
    else:
        model = MODELS[kind](module.input_size, module.hidden_size, 1, **options)
    model.load_torch({name: _array(getattr(module, name), name, dtype) for name in _weight_names(module)})
    return model


def _weight_names(module: nn.Module) -> list[str]:
    """weight_ih_l{j}, weight_hh_l{j} (and bias_ih_l{j}, bias_hh_l{j}) of every layer: read by getattr, which
    also gives a parametrized weight's value (torch.nn.utils.parametrize), where state_dict holds its parts."""
    kinds = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if module.bias else ())
    return [f"{k}_l{j}" for j in range(module.num_layers) for k in kinds]


def check_dtype(dtype: str) -> str:
    """The replay's dtype, float64 or float32; else one ValueError line naming both."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)} (the replay's arithmetic), got {dtype!r}")
    return dtype


def _float64(value, name: str) -> Array:
    """A tensor (detached, on the CPU) or an array as a float64 array."""
    return _array(value, name, "float64")


def _array(value, name: str, dtype: str) -> Array:
    """A tensor (detached, on the CPU) or an array as an array of `dtype` (float64 or float32)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().to(getattr(torch, dtype)).numpy()
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a tensor or an array of numbers, got {type(value).__name__}") from None


def _batch_major(a: Array | None, name: str, shape: tuple, batch_first: bool, unbatched: bool) -> Array | None:
    """A sequence in the module's layout ((N, T, .) with batch_first, else (T, N, .); (T, .) unbatched)
    as (N, T, .), checking its shape against the module's output's `shape` (batch-major)."""
    if a is None:
        return None
    N, T, H = shape
    if unbatched:
        _checks.array_shape(name, a, (T, H), "(T, hidden_size)")
        return a[None]
    if batch_first:
        _checks.array_shape(name, a, (N, T, H), "(N, T, hidden_size) (batch_first=True)")
        return a
    _checks.array_shape(name, a, (T, N, H), "(T, N, hidden_size) (batch_first=False)")
    return a.swapaxes(0, 1)


def _per_layer(a: Array | None, name: str, L: int, N: int, H: int, unbatched: bool) -> Array | None:
    """A per-layer state (hx, h_n, c_n or their gradients): (layers, N, H), or (layers, H) unbatched."""
    if a is None:
        return None
    if unbatched:
        _checks.array_shape(name, a, (L, H), "(num_layers, hidden_size)")
        return a[:, None, :]
    _checks.array_shape(name, a, (L, N, H), "(num_layers, N, hidden_size)")
    return a


def _inputs(module: nn.Module, inputs, dtype: str = "float64") -> tuple[Array, bool]:
    """(x batch-major (N, T, D) in `dtype`, unbatched)."""
    if isinstance(inputs, nn.utils.rnn.PackedSequence):
        raise ValueError("inputs is a PackedSequence, which the replay does not support: pass the padded tensor")
    x = _array(inputs, "inputs", dtype)
    if x.ndim not in (2, 3):
        raise ValueError(f"inputs must have 3 axes (or 2, unbatched), got shape {x.shape}")
    _checks.array_shape("inputs", x, (*x.shape[:-1], module.input_size), f"(..., input_size={module.input_size})")
    if x.ndim == 2:
        return x[None], True
    return (x if module.batch_first else x.swapaxes(0, 1)), False


def _initial_states(kind: str, hx: Tensor | tuple[Tensor, Tensor] | None) -> tuple:
    """(h0, c0) from a module's hx: the LSTM's pair (h0, c0), the RNN's and GRU's h0 (c0 None); None: zeros."""
    pair = isinstance(hx, (tuple, list))
    if kind == "lstm" and hx is not None and not (pair and len(hx) == 2):
        raise ValueError(f"hx of an nn.LSTM must be a pair (h0, c0) or None, got {type(hx).__name__}")
    if kind != "lstm" and pair:
        raise ValueError(
            f"hx of an nn.{kind.upper()} must be one tensor h0 (num_layers, N, hidden_size) or None, got a {type(hx).__name__}"
        )
    if kind == "lstm":
        return (None, None) if hx is None else tuple(hx)
    return hx, None


class EngineRun(NamedTuple):
    """A module's batch run forward through gradlab's engine: model (in the replay's dtype, the module's
    weights), cache (RecurrentCache: every layer's hs, cs, gates, time-major), kind, unbatched, and the
    batch's N, T."""

    model: RNN | LSTM | GRU
    cache: RecurrentCache
    kind: str
    unbatched: bool
    N: int
    T: int


def engine_forward(
    module: nn.Module, inputs: Tensor, hx: Tensor | tuple[Tensor, Tensor] | None, trace: bool = False,
    dtype: str = "float64",
) -> EngineRun:  # fmt: skip
    """Run `module`'s batch (inputs and hx as module(inputs, hx) takes them; see `recurrent`) forward through
    gradlab's engine in `dtype` (float64 or float32) from the same initial state."""
    kind, L = kind_of(module), module.num_layers
    model = engine_model(module, dtype)
    x, unbatched = _inputs(module, inputs, dtype)
    N, T = x.shape[:2]
    h0, c0 = (_one_layer(_state(a, name, module, N, unbatched, dtype), L)
              for a, name in zip(_initial_states(kind, hx), ("hx", "hx's c0")))  # fmt: skip
    if kind == "lstm":
        _, cache = model.forward(x, h0, c0, trace=trace)
    else:
        _, cache = model.forward(x, h0, trace=trace)
    return EngineRun(model, cache, kind, unbatched, N, T)


def _state(a, name: str, module: nn.Module, N: int, unbatched: bool, dtype: str = "float64") -> Array | None:
    value = None if a is None else _array(a, name, dtype)
    return _per_layer(value, name, module.num_layers, N, module.hidden_size, unbatched)


def _one_layer(a: Array | None, L: int) -> Array | None:
    """A per-layer state as the engine takes it: without the layer axis for a one-layer model."""
    return a if a is None or L > 1 else a[0]


def recurrent(
    module: nn.Module, inputs: Tensor, hx: Tensor | tuple[Tensor, Tensor] | None, grad_output: Tensor | None,
    grad_hn: Tensor | None = None, grad_cn: Tensor | None = None, dtype: str = "float64", weight_grads: bool = True,
) -> Replay:  # fmt: skip
    """Replay one batch of `module` (nn.RNN / nn.LSTM / nn.GRU) and return the exact dL/dh_t (dL/dc_t) of
    every cell layer and step, dL/dh_t = g_t + (dh_(t+1)/dh_t)^T dL/dh_(t+1) (g_t: from outside the layer's
    recurrence), from the module's weights as they are now: call it before the optimizer step.

    inputs: the module's input, (N, T, D) with batch_first, else (T, N, D), or (T, D) unbatched; hx: its
    initial state (h0, or (h0, c0) for the LSTM, each (num_layers, N, H); None: zeros); grad_output:
    dL/d(output), in output's layout (None: the output is unused); grad_hn, grad_cn: dL/dh_n, dL/dc_n
    (num_layers, N, H), None when h_n / c_n are unused. Tensors or arrays, any float dtype. dtype: the
    replay's arithmetic, float64 (default) or float32 (for a float32 module: torch's own gradients are
    float32, so float64 arithmetic would add digits its inputs do not have, and a gradient below float32's
    range, 1e-38, is 0 as in torch's own backward); the returned arrays are float64 either way. weight_grads=False
    skips the parameters' gradients (Replay.weight_grads empty): the watcher reads only dL/dh_t and dL/dc_t."""
    if grad_cn is not None and kind_of(module) != "lstm":
        raise ValueError(f"grad_cn is the gradient of the LSTM's c_n; an nn.{type(module).__name__} has no cell state")
    run = engine_forward(module, inputs, hx, trace=True, dtype=check_dtype(dtype))
    N, T, L, H = run.N, run.T, module.num_layers, module.hidden_size
    dh = None if grad_output is None else _array(grad_output, "grad_output", dtype)
    dh = _batch_major(dh, "grad_output", (N, T, H), module.batch_first, run.unbatched)
    dh_n, dc_n = (_one_layer(_state(g, name, module, N, run.unbatched, dtype), L)
                  for g, name in ((grad_hn, "grad_hn"), (grad_cn, "grad_cn")))  # fmt: skip
    grads = run.model.backward_states(dh, run.cache, dh_n=dh_n, dc_n=dc_n, input_grad=False, weight_grads=weight_grads)
    return _replay(run.kind, run.model, grads, module)


def _replay(kind: str, model: RNN | LSTM | GRU, grads, module: nn.Module) -> Replay:
    layers = grads.trace.layers
    lstm = kind == "lstm"
    wide = lambda a: np.ascontiguousarray(a, dtype=np.float64)  # noqa: E731  float64 whatever the arithmetic
    stack = lambda a: wide(a if a.ndim == 3 else a[None])  # noqa: E731  one layer's (N, H) -> (1, N, H)
    rnn_state = model.torch_state(grads.params, grad=True)[0] if grads.params else {}
    names = {name for name, _ in module.named_parameters()}
    return Replay(
        kind,
        [wide(c.h) for c in layers],
        [wide(c.dh) for c in layers],
        [wide(c.c) for c in layers] if lstm else None,
        [wide(c.dc) for c in layers] if lstm else None,
        stack(grads.dh0),
        stack(grads.dc0) if lstm else None,
        {name: wide(g) for name, g in rnn_state.items() if name in names},
    )


def timestep_rows(replay: Replay) -> pd.DataFrame:
    """The timesteps table's columns for a replay, one row per cell layer and step, layer-major: layer, t
    (0 = the first input step), dh_norm, dc_norm (NaN but for the LSTM): batch means of per-example
    ||dL/dh_t||, ||dL/dc_t|| (gradlab.probes.timesteps' definition)."""
    frames = []
    for j, dh in enumerate(replay.dh):
        T = dh.shape[1]
        dc = mean_step_norms(replay.dc[j]) if replay.dc is not None else np.full(T, np.nan)
        frames.append(pd.DataFrame({"layer": np.full(T, j, dtype=np.int64), "t": np.arange(T, dtype=np.int64),
                                    "dh_norm": mean_step_norms(dh), "dc_norm": dc}))  # fmt: skip
    return pd.concat(frames, ignore_index=True)
