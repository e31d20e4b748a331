"""LSTM with PyTorch's equations and gate order (i, f, g, o), a linear readout, and BPTT:

    i, f, o = sigmoid(z_i), sigmoid(z_f), sigmoid(z_o);  g = tanh(z_g);  z = W_ih x_t + W_hh h_(t-1) + b
    c_t = f * c_(t-1) + i * g;  h_t = o * tanh(c_t)

Shapes: x (N, T, D), h and c (N, H), gates (N, 4H), y (N, O) or (N, T, O).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from gradlab.nn import _blas, _checks, sequence
from gradlab.nn.activations import SIGMOID
from gradlab.nn.recurrent_init import load_torch, recurrent_params
from gradlab.nn.trace import Gradients, SequenceTrace

Array = np.ndarray
_BLOCK_BYTES = 1 << 17  # the backward's local factors are formed for blocks of steps of (N, H) arrays this big


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
    xw_t: Array, h_prev: Array, c_prev: Array, weight_hh: Array, out: LSTMStep | None = None,
    work: Array | None = None,
) -> LSTMStep:
    """One step from (h_(t-1), c_(t-1)), with xw_t = W_ih x_t + b (N, 4H) precomputed.

    `out` receives the step (out.gates may be xw_t itself); `work` is an optional (N, 4H) scratch array
    for z_t, so that a step allocates nothing.
    """
    H = h_prev.shape[-1]
    if out is None:
        out = LSTMStep(*(np.empty_like(h_prev) for _ in range(2)), np.empty_like(xw_t), np.empty_like(h_prev))
    z = np.matmul(h_prev, weight_hh.T, out=work)  # recurrent input W_hh h_(t-1)
    z += xw_t  # gate pre-activations z_t
    SIGMOID.forward(z, out=out.gates)  # i, f, o = sigmoid(z) (the g block is overwritten next)
    np.tanh(z[:, 2 * H : 3 * H], out=out.gates[:, 2 * H : 3 * H])  # g = tanh(z_g)
    i, f, g, o = split_gates(out.gates)
    np.multiply(f, c_prev, out=out.c)  # c_t = f * c_(t-1)
    ig = np.multiply(i, g, out=out.tanh_c)  #  (i * g, in tanh_c's place until tanh_c is known)
    out.c[...] += ig  #                + i * g
    np.tanh(out.c, out=out.tanh_c)
    np.multiply(o, out.tanh_c, out=out.h)  # h_t = o * tanh(c_t)
    return out


class LSTMStepGrads(NamedTuple):
    dh_prev: Array  # dL/dh_(t-1) through the recurrence
    dc_prev: Array  # dL/dc_(t-1) through the cell
    dz: Array  # dL/dz_t (N, 4H)
    dc: Array  # dL/dc_t, total


def lstm_local_factors(
    gates: Array, tanh_c: Array, c_prev: Array, out: Array, dc_dh: Array, work: tuple[Array, Array]
) -> None:
    """The parts of a step's derivatives that do not depend on the recurrence, for one step ((N, .)
    arrays) or many at once ((K, N, .)). With dh = dL/dh_t and dc = dL/dc_t (total):

        dz_i = dc * g i (1 - i),  dz_f = dc * c_prev f (1 - f),  dz_g = dc * i (1 - g^2),  dz_o = dh * tanh_c o (1 - o)
        dL/dc_t through h_t = dh * o (1 - tanh_c^2)

    `out` (like gates) receives the four factors of dz, `dc_dh` (like tanh_c) the last one. Each input is read
    before it is overwritten, so out may be gates and dc_dh may be tanh_c. `work`: two scratch arrays like tanh_c.
    """
    i, f, g, o = split_gates(gates)
    A_i, A_f, A_g, A_o = split_gates(out)
    s, s2 = work
    # h_t = o * tanh(c_t):  dz_o = dh * tanh(c_t) * sigmoid'(z_o),  sigmoid' = o (1 - o)
    np.subtract(1.0, o, out=s)
    s *= tanh_c
    #                     dc_t += dh * o * tanh'(c_t),  tanh' = 1 - tanh^2
    np.multiply(tanh_c, tanh_c, out=s2)
    np.subtract(1.0, s2, out=s2)
    np.multiply(s2, o, out=dc_dh)
    np.multiply(o, s, out=A_o)
    # c_t = f * c_(t-1) + i * g:  dz_f = dc * c_(t-1) * f (1 - f)
    np.subtract(1.0, f, out=s)
    s *= c_prev
    np.multiply(f, s, out=A_f)
    #                             dz_i = dc * g * i (1 - i),  dz_g = dc * i * (1 - g^2)
    np.subtract(1.0, i, out=s)
    s *= g
    np.multiply(g, g, out=s2)
    np.subtract(1.0, s2, out=s2)
    np.multiply(i, s2, out=A_g)
    np.multiply(i, s, out=A_i)


def lstm_step_backward(
    dh: Array, dc_next: Array, c_prev: Array, step: LSTMStep, weight_hh: Array, out: Array | None = None
) -> LSTMStepGrads:
    """From dh = dL/dh_t and dc_next = dL/dc_t through c_(t+1) to the step's gradients.

    `out` receives dz and may be the step's own gates array: each gate is read before it is written.
    """
    f = step.gates[..., dh.shape[-1] : 2 * dh.shape[-1]].copy()  # kept for dc_prev
    dz = np.empty_like(step.gates) if out is None else out
    dc = np.empty_like(dh)
    lstm_local_factors(step.gates, step.tanh_c, c_prev, dz, dc, (np.empty_like(dh), np.empty_like(dh)))
    return _recurrent_backward(dh, dc_next, dz, dc, f, weight_hh, dc, np.empty_like(dh), np.empty_like(dh))


def _recurrent_backward(
    dh: Array, dc_next: Array, dz: Array, dc_dh: Array, f: Array, weight_hh: Array,
    dc: Array, dc_prev: Array, dh_prev: Array,
) -> LSTMStepGrads:
    """The part of a step's backward that goes through the recurrence, from the local factors: dz holds
    lstm_local_factors' (N, 4H) factors and becomes dL/dz_t; dc_dh is dh's factor into dL/dc_t; f the forget
    gate. dc, dc_prev, dh_prev receive the results (dc may be dc_dh; dh_prev may be dh)."""
    N, H = dh.shape
    np.multiply(dh, dc_dh, out=dc)  # dL/dc_t through h_t ...
    dc += dc_next  #                    ... plus through c_(t+1)
    dz3 = dz.reshape(N, 4, H)
    np.multiply(dz3[:, :3], dc[:, None, :], out=dz3[:, :3])  # dz_i, dz_f, dz_g: through c_t
    np.multiply(dz3[:, 3], dh, out=dz3[:, 3])  # dz_o: through h_t
    np.multiply(dc, f, out=dc_prev)  # dL/dc_(t-1) = dc_t * f
    np.matmul(dz, weight_hh, out=dh_prev)  # dL/dh_(t-1) = W_hh^T dL/dz_t
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
        with np.errstate(all="ignore"), _blas.single_threaded():
            gates = (xs.reshape(T * N, D) @ p["weight_ih"].T).reshape(T, N, 4 * H)  # W_ih x_t, all steps
            gates += p["bias"]  # each step turns its slice into the gate values
            z = np.empty((N, 4 * H), dtype=self.dtype)  # scratch for z_t
            w_hh = np.asfortranarray(p["weight_hh"])  # so that h W_hh^T reads a row-major W_hh^T (faster)
            for t in range(T):
                step = LSTMStep(hs[t + 1], cs[t + 1], gates[t], tanh_c[t])
                lstm_step_forward(gates[t], hs[t], cs[t], w_hh, out=step, work=z)
            y = sequence.readout_forward(hs[1:], p["readout.weight"], p["readout.bias"], self.output)
        return y, LSTMCache(xs, hs, cs, gates, tanh_c, trace)

    def backward(self, dout: Array, cache: LSTMCache, input_grad: bool = True) -> Gradients:
        """dout = dL/dy -> Gradients: params, dx (N, T, D), dh0 and dc0 (N, H), trace (h, dh, c, dc, gates).

        The factors of each step's derivatives that do not depend on the recurrence (lstm_local_factors) are
        computed a block of steps at a time before the steps of the block are walked back. Without trace they
        go in the cache's own arrays (gates -> the factors of dz, then dL/dz; tanh_c -> the factor of dL/dc_t
        through h_t; c_(t-1) -> f_t), so BPTT needs no second (T, N, 4H) array, and the cache can be used for
        one backward only.
        """
        if cache.spent:
            raise ValueError("cache was already used by a backward without trace; run forward again")
        p, (T, N, D), H = self.params, cache.xs.shape, self.hidden_size
        sequence.check_dout(dout, self.output, N, T, self.output_size)
        grads: dict[str, Array] = {}
        trace = cache.trace
        cache.spent = not trace
        dzs = np.empty_like(cache.gates) if trace else cache.gates  # local factors of dz, then dL/dz_t
        dc_dhs = np.empty_like(cache.tanh_c) if trace else cache.tanh_c  # dL/dc_t through h_t, per dL/dh_t
        fs = cache.gates[..., H : 2 * H] if trace else cache.cs[:-1]  # forget gates (copied, without trace)
        dhs, dcs = (np.empty_like(cache.tanh_c) for _ in range(2)) if trace else (None, None)
        K = max(1, min(T, _BLOCK_BYTES // (N * H * cache.tanh_c.itemsize)))  # steps per block
        work = tuple(np.empty((K, N, H), self.dtype) for _ in range(2 if trace else 3))
        with np.errstate(all="ignore"), _blas.single_threaded():
            grads["readout.weight"], grads["readout.bias"], dh_out = sequence.readout_backward(
                dout, cache.hs[1:], p["readout.weight"], self.output
            )
            every_step = self.output == "all"
            dh = np.zeros((N, H), self.dtype) if every_step else np.array(dh_out, self.dtype, order="C")
            dc_next, dc = np.zeros((N, H), self.dtype), np.empty((N, H), self.dtype)
            for end in range(T, 0, -K):
                b = slice(max(0, end - K), end)
                k = b.stop - b.start
                gates_b, c_prev_b = cache.gates[b], cache.cs[b]
                if not trace:
                    f_b = work[2][:k]
                    np.copyto(f_b, gates_b[..., H : 2 * H])
                lstm_local_factors(gates_b, cache.tanh_c[b], c_prev_b, dzs[b], dc_dhs[b], (work[0][:k], work[1][:k]))
                if not trace:
                    fs[b] = f_b  # c_(t-1) is spent once dz_f's factor is formed: f_t takes its place
                for t in reversed(range(b.start, b.stop)):
                    if every_step:
                        dh += dh_out[t]  # dL/dh_t: readout + recurrence
                    if dhs is not None:
                        dhs[t] = dh
                        dc = dcs[t]
                    # dc = dL/dc_t, dzs[t] = dL/dz_t, then dL/dc_(t-1) and dL/dh_(t-1) replace dc_next and dh
                    _recurrent_backward(dh, dc_next, dzs[t], dc_dhs[t], fs[t], p["weight_hh"], dc, dc_next, dh)
                    if not sequence.flows_back(t, T, self.truncate):
                        dh.fill(0.0)  # truncated BPTT: h_(t-1) and c_(t-1) are treated as constants
                        dc_next.fill(0.0)
            dz_flat = dzs.reshape(T * N, 4 * H)
        with np.errstate(all="ignore"), _blas.threads_for(T * N * 4 * H * H):
            grads["weight_ih"] = dz_flat.T @ cache.xs.reshape(T * N, D)  # sum_t dz_t x_t^T
            grads["weight_hh"] = dz_flat.T @ cache.hs[:-1].reshape(T * N, H)  # sum_t dz_t h_(t-1)^T
            grads["bias"] = dz_flat.sum(axis=0)  # sum_t dz_t
            dx = (dzs @ p["weight_ih"]).transpose(1, 0, 2) if input_grad else None  # W_ih^T dz_t
        out_trace = None
        if trace:
            bm = lambda a: a.transpose(1, 0, 2)  # noqa: E731  time-major -> batch-major view
            out_trace = SequenceTrace(bm(cache.hs[1:]), bm(dhs), bm(cache.cs[1:]), bm(dcs), bm(cache.gates))
        return Gradients({name: grads[name] for name in p}, dx, dh0=dh, dc0=dc_next, trace=out_trace)

    def load_torch(self, lstm_state: dict, readout_state: dict | None = None) -> None:
        """Copy a one-layer nn.LSTM's state_dict (and an nn.Linear readout's) into params."""
        load_torch(self.params, lstm_state, readout_state, self.dtype)
