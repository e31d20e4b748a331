"""LSTM with PyTorch's equations and gate order (i, f, g, o), a linear readout, and BPTT:

    i, f, o = sigmoid(z_i), sigmoid(z_f), sigmoid(z_o);  g = tanh(z_g);  z = W_ih x_t + W_hh h_(t-1) + b
    c_t = f * c_(t-1) + i * g;  h_t = o * tanh(c_t)

Shapes: x (N, T, D), h and c (N, H), gates (N, 4H), y (N, O) or (N, T, O).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from gradlab.nn import _checks, sequence
from gradlab.nn.activations import SIGMOID
from gradlab.nn.recurrent_init import load_torch, recurrent_params
from gradlab.nn.trace import Gradients, SequenceTrace

Array = np.ndarray


class LSTMStep(NamedTuple):
    """What one step produces (each (N, H) except gates (N, 4H)); the backward needs all but h."""

    h: Array
    c: Array
    gates: Array
    tanh_c: Array


def split_gates(gates: Array) -> tuple[Array, Array, Array, Array]:
    """(N, 4H) -> the four (N, H) blocks i, f, g, o (views)."""
    H = gates.shape[-1] // 4
    return gates[..., :H], gates[..., H : 2 * H], gates[..., 2 * H : 3 * H], gates[..., 3 * H :]


def lstm_step_forward(
    xw_t: Array, h_prev: Array, c_prev: Array, weight_hh: Array, out: LSTMStep | None = None
) -> LSTMStep:
    """One step from (h_(t-1), c_(t-1)), with xw_t = W_ih x_t + b (N, 4H) precomputed."""
    H = h_prev.shape[-1]
    if out is None:
        out = LSTMStep(*(np.empty_like(h_prev) for _ in range(2)), np.empty_like(xw_t), np.empty_like(h_prev))
    z = h_prev @ weight_hh.T  # recurrent input W_hh h_(t-1)
    z += xw_t  # gate pre-activations z_t
    SIGMOID.forward(z, out=out.gates)  # i, f, o = sigmoid(z) (the g block is overwritten next)
    np.tanh(z[:, 2 * H : 3 * H], out=out.gates[:, 2 * H : 3 * H])  # g = tanh(z_g)
    i, f, g, o = split_gates(out.gates)
    np.multiply(f, c_prev, out=out.c)  # c_t = f * c_(t-1)
    out.c[...] += i * g  #          + i * g
    np.tanh(out.c, out=out.tanh_c)
    np.multiply(o, out.tanh_c, out=out.h)  # h_t = o * tanh(c_t)
    return out


class LSTMStepGrads(NamedTuple):
    dh_prev: Array  # dL/dh_(t-1) through the recurrence
    dc_prev: Array  # dL/dc_(t-1) through the cell
    dz: Array  # dL/dz_t (N, 4H)
    dc: Array  # dL/dc_t, total


def lstm_step_backward(
    dh: Array, dc_next: Array, c_prev: Array, step: LSTMStep, weight_hh: Array, out: Array | None = None
) -> LSTMStepGrads:
    """From dh = dL/dh_t and dc_next = dL/dc_t through c_(t+1) to the step's gradients.

    `out` receives dz and may be the step's own gates array: each gate is read before it is written.
    """
    i, f, g, o = split_gates(step.gates)
    tanh_c = step.tanh_c
    do = dh * tanh_c  # h_t = o * tanh(c_t)
    dc = dh * o * (1.0 - tanh_c * tanh_c)  #    dL/dc_t through h_t ...
    dc += dc_next  #                                ... plus through c_(t+1)
    di = dc * g  # c_t = f * c_(t-1) + i * g
    df = dc * c_prev
    dg = dc * i
    dc_prev = dc * f
    dz = np.empty_like(step.gates) if out is None else out
    dz_i, dz_f, dz_g, dz_o = split_gates(dz)
    np.multiply(di, i * (1.0 - i), out=dz_i)  # sigmoid' = s (1 - s)
    np.multiply(df, f * (1.0 - f), out=dz_f)
    np.multiply(dg, 1.0 - g * g, out=dz_g)  # tanh' = 1 - g^2
    np.multiply(do, o * (1.0 - o), out=dz_o)
    dh_prev = dz @ weight_hh  # dL/dh_(t-1) = W_hh^T dL/dz_t
    return LSTMStepGrads(dh_prev, dc_prev, dz, dc)


@dataclass
class LSTMCache:
    xs: Array  # (T, N, D) inputs, time-major
    hs: Array  # (T + 1, N, H) h_0 .. h_T
    cs: Array  # (T + 1, N, H) c_0 .. c_T
    gates: Array  # (T, N, 4H) i, f, g, o; replaced by dL/dz_t in a backward without trace
    tanh_c: Array  # (T, N, H)
    trace: bool
    spent: bool = False


class LSTM:
    """One-layer LSTM with readout. Parameters (PyTorch's names and shapes, gates stacked i, f, g, o):
    weight_ih (4H, D), weight_hh (4H, H), bias (4H,) (= bias_ih + bias_hh), readout.weight (O, H),
    readout.bias (O,). `forget_bias` sets the forget-gate block of bias (default 0, as PyTorch).
    """

    gates = 4

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        *,
        output: str = "last",
        truncate: int | None = None,
        init: str = "standard",
        recurrent_init: str | None = None,
        forget_bias: float = 0.0,
        rng: np.random.Generator | None = None,
        dtype: str | type = "float64",
        gain: float | None = None,
        sigma_w2: float = 1.0,
        sigma_b2: float = 0.0,
        spectral_radius: float | None = None,
        spectral_norm: float | None = None,
    ) -> None:
        self.input_size = _checks.positive_int("input_size", input_size)
        self.hidden_size = _checks.positive_int("hidden_size", hidden_size)
        self.output_size = _checks.positive_int("output_size", output_size)
        self.output, self.truncate = sequence.check_options(output, truncate)
        self.dtype = _checks.dtype(dtype)
        rng = np.random.default_rng() if rng is None else rng
        params = recurrent_params(
            rng, (self.input_size, self.hidden_size, self.output_size), self.gates,
            init=init, recurrent_init=recurrent_init, slope=0.0, gain=gain, sigma_w2=sigma_w2,
            sigma_b2=sigma_b2, spectral_radius=spectral_radius, spectral_norm=spectral_norm,
        )  # fmt: skip
        H = self.hidden_size
        params["bias"][H : 2 * H] += forget_bias
        self.params = {name: p.astype(self.dtype) for name, p in params.items()}

    def forward(
        self, x: Array, h0: Array | None = None, c0: Array | None = None, trace: bool = False
    ) -> tuple[Array, LSTMCache]:
        """x (N, T, D), h0 and c0 (N, H) or None for zeros -> y (N, O) or (N, T, O)."""
        p, H = self.params, self.hidden_size
        xs = sequence.check_input(x, self.dtype, self.input_size)
        T, N, D = xs.shape
        hs, cs = (np.empty((T + 1, N, H), dtype=self.dtype) for _ in range(2))
        hs[0] = sequence.initial_state(h0, "h0", N, H, self.dtype)
        cs[0] = sequence.initial_state(c0, "c0", N, H, self.dtype)
        tanh_c = np.empty((T, N, H), dtype=self.dtype)
        with np.errstate(all="ignore"):
            gates = (xs.reshape(T * N, D) @ p["weight_ih"].T).reshape(T, N, 4 * H)  # W_ih x_t, all steps
            gates += p["bias"]  # each step turns its slice into the gate values
            for t in range(T):
                step = LSTMStep(hs[t + 1], cs[t + 1], gates[t], tanh_c[t])
                lstm_step_forward(gates[t], hs[t], cs[t], p["weight_hh"], out=step)
            y = sequence.readout_forward(hs[1:], p["readout.weight"], p["readout.bias"], self.output)
        return y, LSTMCache(xs, hs, cs, gates, tanh_c, trace)

    def backward(self, dout: Array, cache: LSTMCache, input_grad: bool = True) -> Gradients:
        """dout = dL/dy -> Gradients: params, dx (N, T, D), dh0 and dc0 (N, H), trace (h, dh, c, dc, gates).

        Without trace the gate cache is overwritten by dL/dz (so BPTT needs no second (T, N, 4H)
        array), and the cache can be used for one backward only.
        """
        if cache.spent:
            raise ValueError("cache was already used by a backward without trace; run forward again")
        p, (T, N, D), H = self.params, cache.xs.shape, self.hidden_size
        sequence.check_dout(dout, self.output, N, T, self.output_size)
        grads: dict[str, Array] = {}
        dzs = np.empty_like(cache.gates) if cache.trace else cache.gates
        cache.spent = not cache.trace
        dhs, dcs = (np.empty_like(cache.tanh_c) for _ in range(2)) if cache.trace else (None, None)
        with np.errstate(all="ignore"):
            grads["readout.weight"], grads["readout.bias"], dh_out = sequence.readout_backward(
                dout, cache.hs[1:], p["readout.weight"], self.output
            )
            every_step = self.output == "all"
            dh_next = np.zeros((N, H), self.dtype) if every_step else dh_out
            dc_next = np.zeros((N, H), self.dtype)
            for t in reversed(range(T)):
                dh = dh_next + dh_out[t] if every_step else dh_next  # dL/dh_t: readout + recurrence
                step = LSTMStep(cache.hs[t + 1], cache.cs[t + 1], cache.gates[t], cache.tanh_c[t])
                g = lstm_step_backward(dh, dc_next, cache.cs[t], step, p["weight_hh"], out=dzs[t])
                if dhs is not None:
                    dhs[t], dcs[t] = dh, g.dc
                dh_next, dc_next = g.dh_prev, g.dc_prev
                if not sequence.flows_back(t, T, self.truncate):
                    dh_next, dc_next = np.zeros_like(dh_next), np.zeros_like(dc_next)  # truncated BPTT
            dz_flat = dzs.reshape(T * N, 4 * H)
            grads["weight_ih"] = dz_flat.T @ cache.xs.reshape(T * N, D)  # sum_t dz_t x_t^T
            grads["weight_hh"] = dz_flat.T @ cache.hs[:-1].reshape(T * N, H)  # sum_t dz_t h_(t-1)^T
            grads["bias"] = dz_flat.sum(axis=0)  # sum_t dz_t
            dx = (dzs @ p["weight_ih"]).transpose(1, 0, 2) if input_grad else None  # W_ih^T dz_t
        trace = None
        if cache.trace:
            bm = lambda a: a.transpose(1, 0, 2)  # noqa: E731  time-major -> batch-major view
            trace = SequenceTrace(bm(cache.hs[1:]), bm(dhs), bm(cache.cs[1:]), bm(dcs), bm(cache.gates))
        return Gradients({name: grads[name] for name in p}, dx, dh0=dh_next, dc0=dc_next, trace=trace)

    def load_torch(self, lstm_state: dict, readout_state: dict | None = None) -> None:
        """Copy a one-layer nn.LSTM's state_dict (and an nn.Linear readout's) into params."""
        load_torch(self.params, lstm_state, readout_state, self.dtype)
