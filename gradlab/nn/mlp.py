"""The multilayer perceptron: a stack of hidden layers and an output layer, in the seeds' notation.

Hidden layer l computes z_l = W_l a_(l-1) + b_l (dense), then optionally its normalization (layer or batch
norm, with its own gain and bias), then phi; with residual connections a_l = a_(l-1) + s phi(.) wherever
the layer's input and output widths match, else a_l = phi(.). The output layer is dense with the output
activation. The backward is the seeds' delta recursion, delta_l = dL/dz_l, through each block in turn.

Shapes: x (..., N, sizes[0]) -> output (..., N, sizes[-1]); with ensemble=R every parameter has a leading
axis of R members and x is (R, N, D) or (N, D), broadcast to every member.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from gradlab import _process
from gradlab.nn import _checks, activations
from gradlab.nn import members
from gradlab.nn import norm as normalization
from gradlab.nn import init as initialisers
from gradlab.nn.activations import Activation
from gradlab.nn.dense import DenseCache, dense_backward, dense_forward
from gradlab.nn.trace import Gradients, MLPTrace

Array = np.ndarray
Normalize = Callable[[Array], tuple[Array, normalization.NormCache]]


class LayerCache(NamedTuple):
    dense: DenseCache
    z: Array  # (..., N, out) the dense output z_l, before normalization
    norm: normalization.NormCache | None
    u: Array  # the activation's input: z_l, or its normalization
    f: Array  # phi(u)
    a: Array  # the layer's output a_l (a_(l-1) + s f with a residual, else f)
    act: Activation
    residual_scale: float | None  # s, or None for a layer without a residual connection


def layer_forward(
    a_prev: Array, weight: Array, bias: Array, act: Activation, normalize: Normalize | None = None,
    residual_scale: float | None = None,
) -> tuple[Array, LayerCache]:  # fmt: skip
    """One layer: (..., N, in) -> (..., N, out)."""
    z, dense = dense_forward(a_prev, weight, bias)  # z_l = W_l a_(l-1) + b_l
    u, norm_cache = normalize(z) if normalize is not None else (z, None)  # its normalization
    f = act.forward(u)  # phi(.)
    a = f if residual_scale is None else a_prev + residual_scale * f  # a_l = a_(l-1) + s phi(.)
    return a, LayerCache(dense, z, norm_cache, u, f, a, act, residual_scale)


class LayerGrads(NamedTuple):
    da_prev: Array | None  # dL/da_(l-1)
    weight: Array
    bias: Array
    norm_weight: Array | None
    norm_bias: Array | None
    delta: Array  # dL/dz_l


def layer_backward(da: Array, cache: LayerCache, input_grad: bool = True) -> LayerGrads:
    """From da = dL/da_l (..., N, out) to the layer's gradients and dL/da_(l-1)."""
    s = cache.residual_scale
    df = da if s is None else s * da  # dL/dphi: a_l = a_(l-1) + s phi
    du = cache.act.backward(df, cache.f)  # dL/du = dL/dphi * phi'(u)
    dgain = dbias = None
    delta = du
    if cache.norm is not None:
        delta, dgain, dbias = normalization.norm_backward(du, cache.norm)  # delta_l = dL/dz_l through the normalization
    da_prev, dW, db = dense_backward(delta, cache.dense, input_grad or s is not None)  # dL/da_(l-1) = W_l^T delta_l
    if s is not None:
        da_prev = da_prev + da  # the residual stream passes dL/da_l straight back
    return LayerGrads(da_prev, dW, db, dgain, dbias, delta)


class MLPCache(NamedTuple):
    layers: list[LayerCache]
    trace: bool


class MLP:
    """Multilayer perceptron sizes[0] -> sizes[1] -> ... -> sizes[-1].

    Hidden layers use `activation`, optionally `norm` ("layer" or "batch") and residual connections
    (`residual=True`, a_l = a_(l-1) + residual_scale phi(.) where the widths match); the last layer uses
    `output_activation` (identity by default). Parameters: `layers.{l}.weight` (sizes[l+1], sizes[l]) and
    `layers.{l}.bias` (sizes[l+1],), l = 0 nearest the input; with a norm, `layers.{l}.norm.weight` and
    `layers.{l}.norm.bias` (the gain, ones, and the bias, zeros) for every hidden layer l. Batch norm's
    running statistics are `buffers["layers.{l}.norm.running_mean"]` and `..running_var`. Biases start at
    zero, except for init="mean_field" (N(0, sigma_b2)). With ensemble=R each array has a leading axis of
    R members, whose weights are drawn one member after the other from `rng` (or member r's from rng[r]).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str = "tanh",
        output_activation: str = "identity",
        *,
        norm: str | None = None,
        residual: bool = False,
        residual_scale: float = 1.0,
        init: str = "standard",
        rng: np.random.Generator | Sequence[np.random.Generator] | None = None,
        dtype: str | type = "float64",
        slope: float = activations.DEFAULT_SLOPE,
        gain: float | None = None,
        sigma_w2: float = 1.0,
        sigma_b2: float = 0.0,
        ensemble: int | None = None,
    ) -> None:
        if len(sizes) < 2:
            raise ValueError(f"sizes must list at least an input and an output size, got {list(sizes)!r}")
        self.sizes = [_checks.positive_int("sizes[%d]" % i, s) for i, s in enumerate(sizes)]
        self.act = activations.get(activation, slope)
        self.out_act = activations.get(output_activation, slope, "output_activation")
        self.norm = None if norm is None else _checks.choice("norm", norm, normalization.NORMS)
        self.residual = _checks.boolean("residual", residual)
        self.residual_scale = _checks.finite("residual_scale", residual_scale)
        self.dtype = _checks.dtype(dtype)
        self.ensemble = ensemble
        _checks.choice("init", init, initialisers.NAMES)
        draw = lambda g: self._member(g, init, gain, sigma_w2, sigma_b2)  # noqa: E731
        self.params = members.stack(draw, rng, ensemble, self.dtype)
        self.buffers: dict[str, Array] = {}
        if self.norm == "batch":
            for l in range(self.depth - 1):
                lead = self.params[f"layers.{l}.norm.weight"].shape
                self.buffers[f"layers.{l}.norm.running_mean"] = np.zeros(lead, self.dtype)
                self.buffers[f"layers.{l}.norm.running_var"] = np.ones(lead, self.dtype)

    def _member(self, rng: np.random.Generator, init: str, gain, sigma_w2: float, sigma_b2: float) -> dict[str, Array]:
        """One member's parameters (the draws in the order a model without an ensemble makes them)."""
        params = {}
        for l, (fan_in, fan_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            params[f"layers.{l}.weight"] = initialisers.weight(init, rng, (fan_out, fan_in), slope=self.act.slope, gain=gain, sigma_w2=sigma_w2)
            params[f"layers.{l}.bias"] = initialisers.mean_field_bias(rng, fan_out, sigma_b2) if init == "mean_field" else np.zeros(fan_out)
            if self.norm is not None and l < self.depth - 1:
                params[f"layers.{l}.norm.weight"] = np.ones(fan_out)
                params[f"layers.{l}.norm.bias"] = np.zeros(fan_out)
        return params

    @property
    def depth(self) -> int:
        """Number of weight layers (hidden layers + the output layer)."""
        return len(self.sizes) - 1

    def layer(self, l: int) -> tuple[Array, Array, Activation]:
        """Layer l's weight, bias and activation."""
        act = self.out_act if l == self.depth - 1 else self.act
        return self.params[f"layers.{l}.weight"], self.params[f"layers.{l}.bias"], act

    def has_residual(self, l: int) -> bool:
        """Whether hidden layer l adds its input to its output (residual=True and equal widths)."""
        return self.residual and l < self.depth - 1 and self.sizes[l] == self.sizes[l + 1]

    def forward(self, x: Array, trace: bool = False, train: bool = True) -> tuple[Array, MLPCache]:
        """x (..., N, sizes[0]) -> output (..., N, sizes[-1]). train: batch norm normalizes with the batch's
        statistics and updates its running ones (else it uses the running ones)."""
        a = members.check_input(x, self.dtype, self.ensemble, (None, self.sizes[0]), "(N, sizes[0])")
        caches = []
        with np.errstate(all="ignore"), self._blas_threads(a.shape[-2]):
            for l in range(self.depth):
                weight, bias, act = self.layer(l)
                s = self.residual_scale if self.has_residual(l) else None
                a, cache = layer_forward(a, weight, bias, act, self._normalize(l, train), s)
                caches.append(cache)
        return a, MLPCache(caches, trace)

    def _normalize(self, l: int, train: bool) -> Normalize | None:
        """Hidden layer l's normalization of z_l, or None."""
        if self.norm is None or l == self.depth - 1:
            return None
        gain, bias = self.params[f"layers.{l}.norm.weight"], self.params[f"layers.{l}.norm.bias"]
        if self.norm == "layer":
            return lambda z: normalization.layer_norm_forward(z, gain, bias)
        mean, var = self.buffers[f"layers.{l}.norm.running_mean"], self.buffers[f"layers.{l}.norm.running_var"]
        if not train:
            return lambda z: normalization.batch_norm_eval(z, gain, bias, mean, var)

        def batch(z: Array) -> tuple[Array, normalization.NormCache]:
            y, cache, stats = normalization.batch_norm_forward(z, gain, bias)
            normalization.update_running(mean, var, stats, z.shape[-2])
            return y, cache

        return batch

    def backward(self, dout: Array, cache: MLPCache, input_grad: bool = True) -> Gradients:
        """dout = dL/d(output) (..., N, sizes[-1]) -> Gradients (params, dx, trace if recorded)."""
        _checks.array_shape("dout", dout, cache.layers[-1].a.shape, "output.shape")
        grads: dict[str, Array] = {}
        deltas, das = [None] * self.depth, [None] * self.depth
        da = dout
        with np.errstate(all="ignore"), self._blas_threads(dout.shape[-2]):
            for l in reversed(range(self.depth)):
                das[l] = da
                g = layer_backward(da, cache.layers[l], input_grad=l > 0 or input_grad)
                grads[f"layers.{l}.weight"], grads[f"layers.{l}.bias"], deltas[l] = g.weight, g.bias, g.delta
                if g.norm_weight is not None:
                    grads[f"layers.{l}.norm.weight"], grads[f"layers.{l}.norm.bias"] = g.norm_weight, g.norm_bias
                da = g.da_prev
        trace = None
        if cache.trace:
            layers = cache.layers
            trace = MLPTrace([c.z for c in layers], [c.a for c in layers], deltas, das, [c.f for c in layers])
        dx = da if input_grad else None
        return Gradients({name: grads[name] for name in self.params}, dx, trace=trace)

    def _blas_threads(self, n: int):
        """One BLAS thread when every product is small (see gradlab._process), else BLAS's own choice."""
        return _process.threads_for(n * max(a * b for a, b in zip(self.sizes[:-1], self.sizes[1:])))

    # ---- PyTorch state dicts -----------------------------------------------------------------------

    def load_torch(self, state_dict: dict, member: int | None = None) -> None:
        """Copy weights from a torch nn.Sequential of Linear layers, with (for norm="layer" / "batch") a
        LayerNorm / BatchNorm1d after each hidden Linear, any other modules interleaved: the Linear layers
        in order become layers.0, layers.1, ..., the norm layers layers.{l}.norm (and batch norm's
        running statistics the buffers). Tensors or arrays are accepted; `member`: the ensemble member."""
        linear, norms = torch_modules(state_dict)
        if len(linear) != self.depth or len(norms) != (self.depth - 1 if self.norm else 0):
            want = f"{self.depth} Linear layers" + (f" and {self.depth - 1} norm layers" if self.norm else "")
            raise ValueError(f"state_dict must hold {want}, got {len(linear)} and {len(norms)}")
        for prefix in norms:
            kind = "batch" if f"{prefix}.running_mean" in state_dict else "layer"
            if kind != self.norm:
                raise ValueError(f"state_dict's {prefix} is a {kind} norm (BatchNorm1d has running statistics), the model's norm is {self.norm!r}")
        names = {f"{p}.{n}": f"layers.{l}.{n}" for l, p in enumerate(linear) for n in ("weight", "bias")}
        names |= {f"{p}.{n}": f"layers.{l}.norm.{n}" for l, p in enumerate(norms) for n in ("weight", "bias", "running_mean", "running_var")}
        for src, dst in names.items():
            if src.rsplit(".", 1)[1].startswith("running") and self.norm != "batch":
                continue
            target = self.params.get(dst, self.buffers.get(dst))
            members.copy_in(target, state_dict[src], member, src, dst)

    def torch_state(self, params: dict[str, Array] | None = None, member: int | None = None) -> dict[str, Array]:
        """The state dict of the nn.Sequential that load_torch reads: Linear, [norm], activation per hidden
        layer (keys "0.weight", "0.bias", "1.weight", ...), then the last Linear (and output activation).
        `params`: a dict of model.params' shape to map instead (e.g. gradients: no buffers then)."""
        source = self.params if params is None else params
        state, k = {}, 0
        for l in range(self.depth):
            for n in ("weight", "bias"):
                state[f"{k}.{n}"] = members.of(source[f"layers.{l}.{n}"], member).copy()
            k += 1
            if self.norm is not None and l < self.depth - 1:
                for n in ("weight", "bias"):
                    state[f"{k}.{n}"] = members.of(source[f"layers.{l}.norm.{n}"], member).copy()
                if self.norm == "batch" and params is None:
                    for n in ("running_mean", "running_var"):
                        state[f"{k}.{n}"] = members.of(self.buffers[f"layers.{l}.norm.{n}"], member).copy()
                k += 1
            k += 1  # the activation module
        return state


def torch_modules(state_dict: dict) -> tuple[list[str], list[str]]:
    """The prefixes of a Sequential's Linear layers (2-D weights) and norm layers (1-D weights), in order."""
    linear, norms = [], []
    for key in state_dict:
        if key.endswith(".weight"):
            prefix = key[: -len(".weight")]
            (linear if np.ndim(np.asarray(state_dict[key])) == 2 else norms).append(prefix)
    return linear, norms
