"""What the RNN, the LSTM and the GRU share: `layers` stacked cells unrolled over T steps, then a linear
readout y_t = W_out h_t + b_out of the top layer, on the last step or on every step; full or truncated BPTT.

Layer j's state sequence is layer j + 1's input. The work that does not depend on the recurrence is done
for all steps at once: each layer's input projection before its loop, its weight gradients as one product
after it. The backward walks the layers top down: a layer's BPTT yields dL/d(its input) at every step,
which is the part of the layer below's dL/dh_t that comes from above.

Parameters (PyTorch's names and shapes, layer j >= 1 with the suffix _l{j}): weight_ih (G H, D),
weight_hh (G H, H), and the biases of the cell; readout.weight (O, H), readout.bias (O,). With
ensemble=R each has a leading axis of R members.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from gradlab import _process
from gradlab.nn import _checks, members, sequence
from gradlab.nn import init as initialisers
from gradlab.nn.recurrent_init import cell_params, readout_params
from gradlab.nn.sequence import Backward, Forward
from gradlab.nn.trace import CellTrace, Gradients, SequenceTrace

Array = np.ndarray


class RecurrentCache(NamedTuple):
    inputs: list[Array]  # layer j's input sequence (..., T, N, D_j): x, then the states of layer j - 1
    layers: list[Forward]
    trace: bool


def layer_name(name: str, j: int) -> str:
    """Layer j's name of a parameter: weight_ih, weight_ih_l1, ..."""
    return name if j == 0 else f"{name}_l{j}"


def _no_slope(model: str, options: dict) -> None:
    if "slope" in options:
        raise ValueError(f"slope is the leaky ReLU's; the {model}'s activations are fixed (sigmoid and tanh), got slope={options['slope']!r}")


class Recurrent:
    """The shared body of RNN, LSTM and GRU (see the module docstring). Subclasses set `gates` (G), the
    names of the cell's `biases`, and `_layer_forward` / `_layer_backward`."""

    gates = 1
    biases: tuple[str, ...] = ("bias",)
    cell_state = False  # the LSTM's c

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        *,
        layers: int = 1,
        output: str = "last",
        truncate: int | None = None,
        init: str = "standard",
        recurrent_init: str | None = None,
        rng: members.Rng = None,
        dtype: str | type = "float64",
        slope: float = 0.0,
        gain: float | None = None,
        sigma_w2: float = 1.0,
        sigma_b2: float = 0.0,
        spectral_radius: float | None = None,
        spectral_norm: float | None = None,
        ensemble: int | None = None,
        reference: bool = False,
    ) -> None:
        self.input_size = _checks.positive_int("input_size", input_size)
        self.hidden_size = _checks.positive_int("hidden_size", hidden_size)
        self.output_size = _checks.positive_int("output_size", output_size)
        self.num_layers = _checks.positive_int("layers", layers)
        self.output, self.truncate = sequence.check_options(output, truncate)
        self.dtype = _checks.dtype(dtype)
        self.ensemble = members.check_ensemble(ensemble)
        self.reference = _checks.boolean("reference", reference)
        _checks.choice("init", init, initialisers.NAMES)
        options = dict(init=init, recurrent_init=recurrent_init, slope=slope, gain=gain, sigma_w2=sigma_w2, sigma_b2=sigma_b2,
                       spectral_radius=spectral_radius, spectral_norm=spectral_norm)  # fmt: skip
        self.params = members.stack(lambda g: self._member(g, options), rng, self.ensemble, self.dtype)

    def _member(self, rng: np.random.Generator, options: dict) -> dict[str, Array]:
        """One member's parameters: layer 0, the readout, then layers 1.. (so that a one-layer model draws
        what it always drew)."""
        D, H = self.input_size, self.hidden_size
        params = self._cell(rng, 0, D, options)
        params |= readout_params(rng, H, self.output_size, options["init"], options["slope"])
        for j in range(1, self.num_layers):
            params |= self._cell(rng, j, H, options)
        return params

    def _cell(self, rng: np.random.Generator, j: int, input_size: int, options: dict) -> dict[str, Array]:
        drawn = cell_params(rng, input_size, self.hidden_size, self.gates, biases=self.biases, **options)
        return {layer_name(name, j): value for name, value in drawn.items()}

    @property
    def lead(self) -> tuple[int, ...]:
        """The member axes: (R,) with an ensemble, else ()."""
        return members.lead(self.params, "weight_hh", 2)

    def p(self, name: str, j: int) -> Array:
        return self.params[layer_name(name, j)]

    # ---- forward and backward ------------------------------------------------------------------------

    def _forward(self, x: Array, h0: Array | None, c0: Array | None, trace: bool) -> tuple[Array, RecurrentCache]:
        """x (..., N, T, D) -> y (..., N, O) or (..., N, T, O); h0, c0 (layers, ..., N, H), or (..., N, H) for one layer."""
        xs = sequence.check_input(x, self.dtype, self.ensemble, self.input_size)
        N, L, H = xs.shape[-2], self.num_layers, self.hidden_size
        h0s = sequence.initial_states(h0, "h0", L, self.lead, N, H, self.dtype)
        c0s = sequence.initial_states(c0, "c0", L, self.lead, N, H, self.dtype) if self.cell_state else [None] * L
        inputs, layers = [], []
        with np.errstate(all="ignore"), _process.single_threaded():
            layer_in = xs
            for j in range(L):
                xw = sequence.project(layer_in, self.p("weight_ih", j), self.p(self.biases[0], j))  # W_ih x_t + b, all steps
                inputs.append(layer_in)
                layers.append(self._layer_forward(j, xw, h0s[j], c0s[j]))
                layer_in = layers[-1].hs[..., 1:, :, :]  # h_1 .. h_T: the next layer's input
            y = sequence.readout_forward(layer_in, self.params["readout.weight"], self.params["readout.bias"], self.output)
        return y, RecurrentCache(inputs, layers, trace)

    def backward(self, dout: Array, cache: RecurrentCache, input_grad: bool = True) -> Gradients:
        """dout = dL/dy -> Gradients: params, dx (..., N, T, D), dh0 (and dc0) in h0's shape, trace per layer."""
        p, L, top = self.params, self.num_layers, cache.layers[-1]
        *_, T1, N, H = top.hs.shape
        sequence.check_dout(dout, self.output, self.lead, N, T1 - 1, self.output_size)
        grads: dict[str, Array] = {}
        with np.errstate(all="ignore"), _process.single_threaded():
            grads["readout.weight"], grads["readout.bias"], dh_out = sequence.readout_backward(
                dout, top.hs[..., 1:, :, :], p["readout.weight"], self.output
            )
        dh_above, dh_last = (dh_out, None) if self.output == "all" else (None, dh_out)
        return self._backward_cells(cache, grads, dh_above, [None] * (L - 1) + [dh_last], [None] * L, input_grad)

    def backward_states(
        self, dh: Array | None, cache: RecurrentCache, dh_n: Array | None = None, dc_n: Array | None = None,
        input_grad: bool = True, weight_grads: bool = True,
    ) -> Gradients:  # fmt: skip
        """BPTT from gradients on the cells' states instead of on the readout's output, as a torch nn.RNN /
        nn.LSTM / nn.GRU receives them: dh (..., N, T, H) = dL/dh_t of the top layer from outside the
        recurrence (the gradient of its output sequence), dh_n and dc_n (LSTM) (layers, ..., N, H) (or
        (..., N, H) for one layer) = dL/dh_T, dL/dc_T of every layer from outside (of h_n, c_n); None: 0.
        -> Gradients as backward's, the readout's gradients 0 (the loss does not reach it); weight_grads=False
        leaves out every parameter's gradient (params empty), when only dL/dh_t (the trace) is wanted."""
        L, top = self.num_layers, cache.layers[-1]
        *_, T1, N, H = top.hs.shape
        if dh is not None:
            dh = np.asarray(dh, dtype=self.dtype)
            letters = "(R, N, T, hidden_size)" if self.lead else "(N, T, hidden_size)"
            _checks.array_shape("dh", dh, (*self.lead, N, T1 - 1, H), letters)
            dh = np.ascontiguousarray(dh.swapaxes(-3, -2))  # time-major
        if dc_n is not None and not self.cell_state:
            raise ValueError(f"dc_n is a gradient on the LSTM's cell state; the {type(self).__name__} has none")
        dh_last = sequence.initial_states(dh_n, "dh_n", L, self.lead, N, H, self.dtype) if dh_n is not None else [None] * L
        dc_last = sequence.initial_states(dc_n, "dc_n", L, self.lead, N, H, self.dtype) if dc_n is not None else [None] * L
        grads = {name: np.zeros_like(self.params[name]) for name in ("readout.weight", "readout.bias")} if weight_grads else None
        return self._backward_cells(cache, grads, dh, dh_last, dc_last, input_grad)

    def _backward_cells(
        self, cache: RecurrentCache, grads: dict[str, Array] | None, dh_above: Array | None, dh_last: list[Array | None],
        dc_last: list[Array | None], input_grad: bool,
    ) -> Gradients:  # fmt: skip
        """The cells' BPTT, top layer down, from dh_above (..., T, N, H) (the top layer's gradient from outside
        its recurrence at every step, or None) and per layer j dh_last[j], dc_last[j] (..., N, H) (from outside
        at the last step, or None); grads holds the readout's gradients and receives the cells' (None: no
        parameter's gradient is formed, and the Gradients' params are empty)."""
        p, L = self.params, self.num_layers
        traces, dh0, dc0 = [None] * L, [None] * L, [None] * L
        with np.errstate(all="ignore"):
            for j in reversed(range(L)):
                fwd = cache.layers[j]
                with _process.single_threaded():
                    back = self._layer_backward(j, fwd, dh_above, dh_last[j], cache.trace, dc_last[j])
                with _process.threads_for(back.dxw.size * max(self.hidden_size, cache.inputs[j].shape[-1])):
                    if grads is not None:
                        self._weight_grads(j, back, cache.inputs[j], fwd.hs, grads)
                    if j > 0 or input_grad:  # dL/d(layer j's input) = W_ih^T dL/dxw_t, all steps at once
                        dh_above = sequence.back_project(back.dxw, self.p("weight_ih", j))
                dh0[j], dc0[j] = back.dh0, back.dc0
                if cache.trace:
                    traces[j] = self._cell_trace(fwd, back)
        dx = dh_above.swapaxes(-3, -2) if input_grad else None
        one = L == 1
        return Gradients(
            {} if grads is None else {name: grads[name] for name in p}, dx,
            dh0=dh0[0] if one else np.stack(dh0), dc0=(dc0[0] if one else np.stack(dc0)) if self.cell_state else None,
            trace=SequenceTrace(traces) if cache.trace else None,
        )  # fmt: skip

    def _weight_grads(self, j: int, back: Backward, inputs: Array, hs: Array, grads: dict[str, Array]) -> None:
        """The weights are shared over time: their gradients sum over steps, as one product each."""
        grads[layer_name("weight_ih", j)] = sequence.sum_outer(back.dxw, inputs)  # sum_t dxw_t^T x_t
        grads[layer_name("weight_hh", j)] = sequence.sum_outer(back.dhw, hs[..., :-1, :, :])  # sum_t dhw_t^T h_(t-1)
        grads[layer_name(self.biases[0], j)] = back.dxw.sum(axis=(-3, -2))  # sum_t dxw_t
        if len(self.biases) > 1:
            grads[layer_name(self.biases[1], j)] = back.dhw.sum(axis=(-3, -2))  # sum_t dhw_t

    def _cell_trace(self, fwd: Forward, back: Backward) -> CellTrace:
        bm = lambda a: None if a is None else a.swapaxes(-3, -2)  # noqa: E731  time-major -> batch-major view
        c = None if fwd.cs is None else fwd.cs[..., 1:, :, :]
        return CellTrace(bm(fwd.hs[..., 1:, :, :]), bm(back.dh), bm(back.dxw), bm(c), bm(back.dc), bm(fwd.gates))

    def _layer_forward(self, j: int, xw: Array, h0: Array, c0: Array | None) -> Forward:
        raise NotImplementedError

    def _layer_backward(
        self, j: int, fwd: Forward, dh_above: Array | None, dh_last: Array | None, trace: bool, dc_last: Array | None = None
    ) -> Backward:  # fmt: skip
        """Layer j's BPTT from dh_above (..., T, N, H) and dh_last, dc_last (..., N, H) (the LSTM's), each None or
        the gradient from outside the recurrence."""
        raise NotImplementedError

    # ---- PyTorch state dicts -------------------------------------------------------------------------

    def load_torch(self, rnn_state: dict, readout_state: dict | None = None, member: int | None = None) -> None:
        """Copy an nn.RNN / nn.LSTM / nn.GRU state_dict (num_layers = layers; weight_ih_l{j}, weight_hh_l{j},
        bias_ih_l{j}, bias_hh_l{j}) and an nn.Linear readout's into params (member `member` of an ensemble).
        A merged bias (RNN, LSTM) takes bias_ih + bias_hh; missing biases (bias=False) are zeros."""
        self._check_torch_layers(rnn_state)
        for j in range(self.num_layers):
            for name in ("weight_ih", "weight_hh"):
                members.copy_in(self.p(name, j), rnn_state[f"{name}_l{j}"], member, f"{name}_l{j}", layer_name(name, j))
            biases = {k: np.asarray(rnn_state.get(f"bias_{k}_l{j}", 0.0), dtype=self.dtype) for k in ("ih", "hh")}
            if len(self.biases) == 1:
                biases = {"": biases["ih"] + biases["hh"]}  # the merged bias of the RNN and the LSTM
            for (k, value), name in zip(biases.items(), self.biases):
                target = members.of(self.p(name, j), member)
                source = f"bias_{k}_l{j}" if k else f"bias_ih_l{j} + bias_hh_l{j}"
                members.copy_in(self.p(name, j), np.broadcast_to(value, target.shape) if value.ndim == 0 else value, member, source, layer_name(name, j))
        if readout_state is not None:
            for name in ("weight", "bias"):
                value = readout_state.get(name, np.zeros(self.output_size)) if name == "bias" else readout_state[name]
                members.copy_in(self.params[f"readout.{name}"], value, member, f"readout {name}", f"readout.{name}")

    def _check_torch_layers(self, rnn_state: dict) -> None:
        """A one-line ValueError unless the state is of a one-directional module with `layers` layers."""
        if any(key.endswith("_reverse") for key in rnn_state):
            raise ValueError("rnn_state is of a bidirectional module; gradlab's recurrent models are one-directional")
        depth = sum(f"weight_ih_l{j}" in rnn_state for j in range(max(self.num_layers, len(rnn_state))))
        if depth != self.num_layers or any(f"weight_ih_l{j}" not in rnn_state for j in range(self.num_layers)):
            raise ValueError(f"rnn_state must hold num_layers = {self.num_layers} layers (weight_ih_l0 ...), got {depth}")

    def torch_state(self, params: dict[str, Array] | None = None, grad: bool | None = None,
                    member: int | None = None) -> tuple[dict[str, Array], dict[str, Array]]:  # fmt: skip
        """(rnn_state, readout_state) as load_torch reads them, from model.params or from `params`. For
        gradients (grad, by default when params is given) a merged bias's gradient goes to both bias_ih and
        bias_hh, as each has that gradient; for weights the merged bias becomes bias_ih, with bias_hh zero."""
        source = self.params if params is None else params
        grad = params is not None if grad is None else grad
        take = lambda name: members.of(source[name], member).copy()  # noqa: E731  copies: the state is the caller's
        state = {}
        for j in range(self.num_layers):
            for name in ("weight_ih", "weight_hh", *(self.biases if len(self.biases) == 2 else ())):
                state[f"{name}_l{j}"] = take(layer_name(name, j))
            if len(self.biases) == 1:
                bias = take(layer_name("bias", j))
                state[f"bias_ih_l{j}"], state[f"bias_hh_l{j}"] = bias, bias.copy() if grad else np.zeros_like(bias)
        readout = {name: take(f"readout.{name}") for name in ("weight", "bias")}
        return state, readout
