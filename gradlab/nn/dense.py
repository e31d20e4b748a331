"""Dense layer and MLP, in the notation of the seeds: z = W a_prev + b, a = phi(z), delta = dL/dz.

Batch-major: a_prev is (N, in), W is (out, in) as in torch.nn.Linear, so z = a_prev W^T + b.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from gradlab.nn import _blas, _checks, activations
from gradlab.nn import init as initialisers
from gradlab.nn.activations import Activation
from gradlab.nn.trace import Gradients, MLPTrace

Array = np.ndarray


class DenseCache(NamedTuple):
    a_prev: Array  # (N, in) the layer's input
    z: Array  # (N, out) pre-activation
    a: Array  # (N, out) activation phi(z)


def dense_forward(a_prev: Array, weight: Array, bias: Array, act: Activation) -> tuple[Array, DenseCache]:
    """a = phi(a_prev W^T + b); shapes (N, in) -> (N, out)."""
    z = a_prev @ weight.T  # weighted sum
    z += bias
    a = act.forward(z)  # activation
    return a, DenseCache(a_prev, z, a)


def dense_backward(
    da: Array, cache: DenseCache, weight: Array, act: Activation, input_grad: bool = True, out: Array | None = None
) -> tuple[Array | None, Array, Array, Array]:
    """From da = dL/da (N, out) to (da_prev, dW, db, delta), delta = dL/dz = da * phi'(z).

    `out` receives delta (it may be cache.z, which the backward does not need)."""
    delta = act.backward(da, cache.a, out=out)  # dL/dz = dL/da * da/dz
    dW = delta.T @ cache.a_prev  # dL/dW = delta a_prev^T, summed over the batch
    db = delta.sum(axis=0)  # dL/db = delta
    da_prev = delta @ weight if input_grad else None  # dL/da_prev = W^T delta
    return da_prev, dW, db, delta


class MLPCache(NamedTuple):
    layers: list[DenseCache]
    trace: bool


class MLP:
    """Multilayer perceptron sizes[0] -> sizes[1] -> ... -> sizes[-1].

    Hidden layers use `activation`, the last layer `output_activation` (identity by default).
    Parameters `layers.{l}.weight` (sizes[l+1], sizes[l]) and `layers.{l}.bias` (sizes[l+1],), l = 0
    nearest the input. Biases start at zero, except for init="mean_field" (N(0, sigma_b2)).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str = "tanh",
        output_activation: str = "identity",
        *,
        init: str = "standard",
        rng: np.random.Generator | None = None,
        dtype: str | type = "float64",
        slope: float = activations.DEFAULT_SLOPE,
        gain: float | None = None,
        sigma_w2: float = 1.0,
        sigma_b2: float = 0.0,
    ) -> None:
        if len(sizes) < 2:
            raise ValueError(f"sizes must list at least an input and an output size, got {list(sizes)!r}")
        self.sizes = [_checks.positive_int("sizes[%d]" % i, s) for i, s in enumerate(sizes)]
        self.act = activations.get(activation, slope)
        self.out_act = activations.get(output_activation, slope, "output_activation")
        self.dtype = _checks.dtype(dtype)
        rng = np.random.default_rng() if rng is None else rng
        self.params: dict[str, Array] = {}
        _checks.choice("init", init, initialisers.NAMES)
        for l, (fan_in, fan_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            w = initialisers.weight(init, rng, (fan_out, fan_in), slope=self.act.slope, gain=gain, sigma_w2=sigma_w2)
            b = initialisers.mean_field_bias(rng, fan_out, sigma_b2) if init == "mean_field" else np.zeros(fan_out)
            self.params[f"layers.{l}.weight"] = w.astype(self.dtype)
            self.params[f"layers.{l}.bias"] = b.astype(self.dtype)

    @property
    def depth(self) -> int:
        """Number of weight layers (hidden layers + the output layer)."""
        return len(self.sizes) - 1

    def layer(self, l: int) -> tuple[Array, Array, Activation]:
        act = self.out_act if l == self.depth - 1 else self.act
        return self.params[f"layers.{l}.weight"], self.params[f"layers.{l}.bias"], act

    def forward(self, x: Array, trace: bool = False) -> tuple[Array, MLPCache]:
        """x (N, sizes[0]) -> output (N, sizes[-1]); the cache keeps each layer's (a_prev, z, a)."""
        a = np.asarray(x, dtype=self.dtype)
        _checks.array_shape("x", a, (None, self.sizes[0]), "(N, sizes[0])")
        caches = []
        with np.errstate(all="ignore"), self._blas_threads(len(a)):
            for l in range(self.depth):
                a, cache = dense_forward(a, *self.layer(l))
                caches.append(cache)
        return a, MLPCache(caches, trace)

    def backward(self, dout: Array, cache: MLPCache, input_grad: bool = True) -> Gradients:
        """dout = dL/d(output) (N, sizes[-1]) -> Gradients (params, dx, trace if recorded). Without trace,
        each layer's delta is written over its z (which the backward does not read)."""
        _checks.array_shape("dout", dout, cache.layers[-1].a.shape, "output.shape")
        grads: dict[str, Array] = {}
        deltas: list[Array] = [None] * self.depth  # type: ignore[list-item]
        da = dout
        with np.errstate(all="ignore"), self._blas_threads(len(dout)):
            for l in reversed(range(self.depth)):
                weight, _, act = self.layer(l)
                need_da = l > 0 or input_grad
                spent_z = None if cache.trace else cache.layers[l].z  # without trace, delta takes z's place
                da, grads[f"layers.{l}.weight"], grads[f"layers.{l}.bias"], deltas[l] = dense_backward(
                    da, cache.layers[l], weight, act, need_da, out=spent_z
                )
        trace = None
        if cache.trace:
            trace = MLPTrace([c.z for c in cache.layers], [c.a for c in cache.layers], deltas)
        return Gradients({name: grads[name] for name in self.params}, da, trace=trace)

    def _blas_threads(self, n: int):
        """One BLAS thread when every product is small (see gradlab.nn._blas), else BLAS's own choice."""
        small = n * max(a * b for a, b in zip(self.sizes[:-1], self.sizes[1:])) < _blas.SMALL_PRODUCT
        return _blas.single_threaded() if small else contextlib.nullcontext()

    def load_torch(self, state_dict: dict) -> None:
        """Copy weights from a torch nn.Sequential of Linear layers (any other modules interleaved):
        its Linear layers, in order, become layers.0, layers.1, ... Tensors or arrays are accepted."""
        linear = [k[: -len(".weight")] for k in state_dict if k.endswith(".weight")]
        if len(linear) != self.depth:
            raise ValueError(f"state_dict must hold {self.depth} Linear layers, got {len(linear)}")
        for l, prefix in enumerate(linear):
            for name in ("weight", "bias"):
                src = np.asarray(state_dict[f"{prefix}.{name}"], dtype=self.dtype)
                dst = self.params[f"layers.{l}.{name}"]
                _checks.array_shape(f"{prefix}.{name}", src, dst.shape, f"layers.{l}.{name}.shape")
                dst[...] = src

