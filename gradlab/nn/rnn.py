"""Vanilla RNN, h_t = phi(W_ih x_t + W_hh h_(t-1) + b), with a linear readout y_t = W_out h_t + b_out,
trained by backpropagation through time (full, or truncated to k steps).

Shapes: x (N, T, D), h (N, H), y (N, O) for the loss on the last step or (N, T, O) on every step.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from gradlab.nn import _blas, _checks, activations, sequence
from gradlab.nn.activations import Activation
from gradlab.nn.recurrent_init import load_torch, recurrent_params
from gradlab.nn.trace import Gradients, SequenceTrace

Array = np.ndarray


def rnn_step_forward(xw_t: Array, h_prev: Array, weight_hh: Array, act: Activation, out: Array | None = None) -> Array:
    """h_t = phi(z_t), z_t = W_hh h_(t-1) + xw_t, where xw_t = W_ih x_t + b; (N, H) -> (N, H)."""
    z = np.matmul(h_prev, weight_hh.T, out=out)  # recurrent input W_hh h_(t-1) (in h_t's place)
    z += xw_t  # pre-activation z_t
    return act.forward(z, out=z)  # h_t = phi(z_t)


def rnn_step_backward(
    dh: Array, h: Array, weight_hh: Array, act: Activation, out: Array | None = None
) -> tuple[Array, Array]:
    """From dh = dL/dh_t (N, H) to (dh_prev, dz): dz = dL/dz_t, dh_prev = the part of dL/dh_(t-1)
    that flows through the recurrence. The weight gradients are summed over steps by the caller."""
    dz = act.backward(dh, h, out=out)  # dL/dz_t = dL/dh_t * phi'(z_t)
    dh_prev = dz @ weight_hh  # dL/dh_(t-1) = W_hh^T dL/dz_t
    return dh_prev, dz


class RNNCache(NamedTuple):
    xs: Array  # (T, N, D) inputs, time-major
    buf: Array  # (T, N, H) W_ih x_t + b in the forward; dL/dz_t after the backward
    hs: Array  # (T + 1, N, H) h_0 .. h_T
    trace: bool


class RNN:
    """Vanilla RNN with readout. Parameters (PyTorch's names and shapes): weight_ih (H, D),
    weight_hh (H, H), bias (H,) (= nn.RNN's bias_ih + bias_hh), readout.weight (O, H), readout.bias (O,).

    output="last" puts the loss on y_T, output="all" on every y_t; truncate=k cuts BPTT every k steps.
    """

    gates = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        activation: str = "tanh",
        *,
        output: str = "last",
        truncate: int | None = None,
        init: str = "standard",
        recurrent_init: str | None = None,
        rng: np.random.Generator | None = None,
        dtype: str | type = "float64",
        slope: float = activations.DEFAULT_SLOPE,
        gain: float | None = None,
        sigma_w2: float = 1.0,
        sigma_b2: float = 0.0,
        spectral_radius: float | None = None,
        spectral_norm: float | None = None,
    ) -> None:
        self.input_size = _checks.positive_int("input_size", input_size)
        self.hidden_size = _checks.positive_int("hidden_size", hidden_size)
        self.output_size = _checks.positive_int("output_size", output_size)
        self.act = activations.get(activation, slope)
        self.output, self.truncate = sequence.check_options(output, truncate)
        self.dtype = _checks.dtype(dtype)
        rng = np.random.default_rng() if rng is None else rng
        params = recurrent_params(
            rng, (self.input_size, self.hidden_size, self.output_size), self.gates,
            init=init, recurrent_init=recurrent_init, slope=self.act.slope, gain=gain, sigma_w2=sigma_w2,
            sigma_b2=sigma_b2, spectral_radius=spectral_radius, spectral_norm=spectral_norm,
        )  # fmt: skip
        self.params = {name: p.astype(self.dtype) for name, p in params.items()}

    def forward(self, x: Array, h0: Array | None = None, trace: bool = False) -> tuple[Array, RNNCache]:
        """x (N, T, D), h0 (N, H) or None for zeros -> y (N, O) or (N, T, O)."""
        p = self.params
        xs = sequence.check_input(x, self.dtype, self.input_size)
        T, N, D = xs.shape
        hs = np.empty((T + 1, N, self.hidden_size), dtype=self.dtype)
        hs[0] = sequence.initial_state(h0, "h0", N, self.hidden_size, self.dtype)
        with np.errstate(all="ignore"), _blas.single_threaded():
            xw = (xs.reshape(T * N, D) @ p["weight_ih"].T).reshape(T, N, -1)  # W_ih x_t, all steps at once
            xw += p["bias"]
            w_hh = np.asfortranarray(p["weight_hh"])  # so that h W_hh^T reads a row-major W_hh^T (faster)
            for t in range(T):
                rnn_step_forward(xw[t], hs[t], w_hh, self.act, out=hs[t + 1])
            y = sequence.readout_forward(hs[1:], p["readout.weight"], p["readout.bias"], self.output)
        return y, RNNCache(xs, xw, hs, trace)

    def backward(self, dout: Array, cache: RNNCache, input_grad: bool = True) -> Gradients:
        """dout = dL/dy -> Gradients: params, dx (N, T, D), dh0 (N, H), trace (h, dh)."""
        p, (T, N, D), hs = self.params, cache.xs.shape, cache.hs
        sequence.check_dout(dout, self.output, N, T, self.output_size)
        grads: dict[str, Array] = {}
        dzs = cache.buf  # the input projections are spent: phi'(z_t), then dL/dz_t, go in their place
        dhs = np.empty_like(dzs) if cache.trace else None
        with np.errstate(all="ignore"), _blas.single_threaded():
            grads["readout.weight"], grads["readout.bias"], dh_out = sequence.readout_backward(
                dout, hs[1:], p["readout.weight"], self.output
            )
            self.act.derivative(hs[1:], out=dzs)  # phi'(z_t) for all steps at once (from h_t = phi(z_t))
            every_step = self.output == "all"
            dh = np.zeros((N, self.hidden_size), self.dtype) if every_step else np.array(dh_out, self.dtype, order="C")
            for t in reversed(range(T)):
                if every_step:
                    dh += dh_out[t]  # dL/dh_t: readout + recurrence
                if dhs is not None:
                    dhs[t] = dh
                dz = np.multiply(dh, dzs[t], out=dzs[t])  # dL/dz_t = dL/dh_t * phi'(z_t)
                np.matmul(dz, p["weight_hh"], out=dh)  # dL/dh_(t-1) = W_hh^T dL/dz_t
                if not sequence.flows_back(t, T, self.truncate):
                    dh.fill(0.0)  # truncated BPTT: h_(t-1) is treated as a constant
            dh_next = dh
        with np.errstate(all="ignore"), _blas.threads_for(T * N * self.hidden_size**2):
            # the weights are shared over time: their gradients sum over steps, as one product each
            dz_flat = dzs.reshape(T * N, -1)
            grads["weight_ih"] = dz_flat.T @ cache.xs.reshape(T * N, D)  # sum_t dz_t x_t^T
            grads["weight_hh"] = dz_flat.T @ hs[:-1].reshape(T * N, -1)  # sum_t dz_t h_(t-1)^T
            grads["bias"] = dz_flat.sum(axis=0)  # sum_t dz_t
            dx = (dzs @ p["weight_ih"]).transpose(1, 0, 2) if input_grad else None  # W_ih^T dz_t
        trace = SequenceTrace(h=hs[1:].transpose(1, 0, 2), dh=dhs.transpose(1, 0, 2)) if dhs is not None else None
        return Gradients({name: grads[name] for name in p}, dx, dh0=dh_next, trace=trace)

    def load_torch(self, rnn_state: dict, readout_state: dict | None = None) -> None:
        """Copy a one-layer nn.RNN's state_dict (and an nn.Linear readout's) into params."""
        load_torch(self.params, rnn_state, readout_state, self.dtype)
