"""Glorot and Bengio (2010), "Understanding the difficulty of training deep feedforward neural
networks", AISTATS.

The paper's network: five tanh hidden layers of 1000 units on Shapeset-3x2 images (32 x 32 = 1024
grey levels in [0, 1] showing one or two of three shapes: triangle, parallelogram, ellipse), a softmax
output over the 9 possible shape combinations, trained on the negative log-likelihood. Hidden layer 1
is nearest the input. Its analysis in the linear regime of tanh (tanh'(0) = 1): one layer multiplies
the variance of the backpropagated gradient by n Var[W] (their Sec. 4.2.1), which is 1/3 for the
"standard" init U[-1/sqrt(n), 1/sqrt(n)] and 1 for the "normalized" init U[+-sqrt(6 / (n_in + n_out))]
(their eq. 16; gradlab's xavier_uniform) on equal widths; the weight gradient dL/dW_l = delta_l
a_(l-1)^T gathers one forward factor per layer below and one backward factor per layer above, so its
variance is the same in every layer under either init (eq. 14).

How gradlab measures it, at initialisation (no training), with the engine:
- Inputs: `shapeset_like` draws images like Shapeset-3x2's (not the original data set): a random grey
  background and one or two filled shapes (triangle, parallelogram, ellipse) of random position, size,
  rotation and grey level, 1024 values in [0, 1] (E[x^2] ~ 1/3); the label is which shapes are present
  (3 single shapes + 6 pairs = 9 classes).
- The top gradient: the paper's cost, softmax cross-entropy on those labels (gradlab.nn.losses,
  the batch mean), at the freshly initialised 9-unit output layer. Each example's own gradient is used
  (the batch mean's delta times N), so every quantity is per example.
- Pooling: Var[delta_l] is the variance of all entries of delta_l = dL/dz_l, units x examples, of one
  network; its mean over the networks is the pooled variance, and the ratio of two layers' pooled
  variances is the claim's Var[delta_l] / Var[delta_(l+1)] (l = 2, 3, 4: both layers 1000 wide).
- The weight-gradient variance of layer l (W_l maps layer l-1 to l; layer 0 is the input) is the
  variance over the entries of one example's dL/dW_l = delta_l a_(l-1)^T, mean(delta^2) mean(a^2) -
  (mean(delta) mean(a))^2, averaged over the examples and networks (eq. 14 describes one example's
  gradient). Layers 1..5, the hidden ones; the output layer's fan-out is 9, not 1000, so eq. 14 gives
  it a different scale (measured ~100x the others): it is left out.
- "Flat within +-25%": max over the five layers / min over them <= 1.25. Of the two readings (each
  layer within 25% of their mean allows max/min up to 1.67) this is the stricter one, and it needs no
  reference level: eq. 14 says any two layers' variances are equal.
- Jacobians: J_l = da_(l+1)/da_l = diag(tanh'(z_(l+1))) W_(l+1), 1000 x 1000, l = 1..4, at
  `jacobian_examples` examples per network; their singular values by SVD, averaged over layers,
  examples and networks. For W alone (entries of variance s^2 / n) the singular values follow the
  quarter-circle law on [0, 2s] with mean 8s / (3 pi): 0.490 for s^2 = 1/3 (standard), 0.849 for
  s^2 = 1 (normalized); tanh' < 1 lowers them a little (the figure draws the law).

Also measured, not claimed: under the normalized init Var[delta_l] still shrinks toward the input by
~0.8 per layer here, because these inputs put layer 1 at Var[z] ~ 0.33 where E[tanh'^2] ~ 0.6 (the
linear regime holds only roughly); under the standard init Var[z] falls from 0.11 (layer 1) to 0.001
(layer 5), tanh' ~ 1 and the ratios for l = 1..4 are 0.29, 0.32, 0.33, 0.33, nearest 1/3 where Var[z] is
smallest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from gradlab import theory
from gradlab import _process
from gradlab.nn import MLP, losses
from gradlab.plots import style
from gradlab.reproduce.claims import Claim

TITLE = "Glorot, Bengio 2010: Understanding the difficulty of training deep feedforward neural networks"

Array = np.ndarray
SIDE, CLASSES = 32, 9  # Shapeset-3x2: 32 x 32 images, 9 shape combinations
INITS = {"standard": "standard", "xavier_uniform": "normalized"}  # gradlab name -> the paper's
INIT_COLORS = {"standard": style.SEQUENCE[4], "xavier_uniform": style.SEQUENCE[0]}  # vermillion, blue
RATIO_TOLERANCE = 0.05  # Var[delta_l] / Var[delta_(l+1)] = 1/3 +- 0.05
SINGULAR_STANDARD, SINGULAR_TOLERANCE = 0.49, 0.03  # mean singular value under the standard init
SINGULAR_NORMALIZED = 0.7  # ... at least this under the normalized init
FLAT = 1.25  # max / min over layers of the weight-gradient variance
PAIR_CLASS = np.array([[3, 4, 5], [4, 6, 7], [5, 7, 8]])  # two shapes i, j -> class 3..8 (unordered pair)


# ---------------------------------------------------------------- Shapeset-like inputs


def _shape_masks(rng: np.random.Generator, n: int, kind: Array) -> Array:
    """(n, SIDE, SIDE) boolean masks of one shape per image: kind 0 triangle, 1 parallelogram, 2 ellipse,
    centred in [-0.55, 0.55]^2 of the [-1, 1]^2 image, radius 0.25-0.45, any rotation."""
    g = (np.arange(SIDE) + 0.5) / SIDE * 2.0 - 1.0  # pixel centres in [-1, 1]
    cx, cy = (rng.uniform(-0.55, 0.55, size=(n, 1, 1)) for _ in range(2))
    radius = rng.uniform(0.25, 0.45, size=(n, 1, 1))
    angle = rng.uniform(0.0, 2.0 * math.pi, size=(n, 1, 1))
    dx, dy = g[None, None, :] - cx, g[None, :, None] - cy
    # the pixel in the shape's own frame: rotate by -angle, scale by 1 / radius
    u = (np.cos(angle) * dx + np.sin(angle) * dy) / radius
    v = (-np.sin(angle) * dx + np.cos(angle) * dy) / radius
    s3 = math.sqrt(3.0)
    triangle = (v >= -0.5) & (s3 * u + v <= 1.0) & (-s3 * u + v <= 1.0)  # equilateral, in the unit circle
    parallelogram = (np.abs(v) <= 0.6) & (np.abs(u + 0.5 * v) <= 0.8)  # a sheared rectangle
    ellipse = u**2 + (v / 0.6) ** 2 <= 1.0
    k = kind[:, None, None]
    return np.where(k == 0, triangle, np.where(k == 1, parallelogram, ellipse))


def shapeset_like(rng: np.random.Generator, n: int) -> tuple[Array, Array]:
    """n images like Shapeset-3x2's and their labels: x (n, 1024) in [0, 1], labels (n,) in 0..8.

    A grey background b ~ U[0, 1] and one or two shapes (the second drawn over the first), each filled
    with the grey level (b + U[0.25, 0.75]) mod 1, so that it differs from the background by at least
    0.25. Label: the shape for one shape (0, 1, 2), PAIR_CLASS[i, j] for two (3..8, order ignored)."""
    count = rng.integers(1, 3, size=n)  # 1 or 2 shapes
    kind = rng.integers(0, 3, size=(2, n))
    background = rng.uniform(0.0, 1.0, size=n)
    images = np.broadcast_to(background[:, None, None], (n, SIDE, SIDE)).copy()
    for s in range(2):
        level = np.mod(background + rng.uniform(0.25, 0.75, size=n), 1.0)
        inside = _shape_masks(rng, n, kind[s]) & (count > s)[:, None, None]
        images = np.where(inside, level[:, None, None], images)
    labels = np.where(count == 1, kind[0], PAIR_CLASS[kind[0], kind[1]])
    return images.reshape(n, SIDE * SIDE), labels


# ---------------------------------------------------------------- measurement


@dataclass
class Stats:
    """One init's measurements over `networks` networks of `hidden` hidden layers (index 0 = layer 1):
    delta_var (networks, hidden) Var[delta_l] over units x examples; weight_grad_var (networks, hidden)
    the per-example weight-gradient variance of W_1..W_hidden; singular (networks, hidden-1, examples,
    width) singular values of J_1..J_(hidden-1); pre_var (networks, hidden) mean z_l^2 (the forward
    variance that sets tanh'(z))."""

    delta_var: Array
    weight_grad_var: Array
    singular: Array
    pre_var: Array

    def ratios(self) -> Array:
        """(hidden-1,) pooled Var[delta_l] / Var[delta_(l+1)], l = 1..hidden-1."""
        pooled = self.delta_var.mean(axis=0)
        return pooled[:-1] / pooled[1:]

    def flatness(self) -> float:
        """max / min over layers of the pooled weight-gradient variance."""
        pooled = self.weight_grad_var.mean(axis=0)
        return float(pooled.max() / pooled.min())


def network(init: str, p: dict[str, Any], rng: np.random.Generator) -> MLP:
    """1024 -> hidden x width (tanh) -> 9 (identity: the softmax is in the loss), zero biases."""
    return MLP([SIDE * SIDE] + [p["width"]] * p["hidden"] + [CLASSES], "tanh", init=init, rng=rng)


def per_example_weight_grad_var(delta: Array, a_prev: Array) -> Array:
    """(N,) variance over the entries of each example's delta_n a_n^T (delta (N, out), a_prev (N, in)):
    mean(d^2) mean(a^2) - (mean(d) mean(a))^2."""
    second = np.mean(delta**2, axis=1) * np.mean(a_prev**2, axis=1)
    first = np.mean(delta, axis=1) * np.mean(a_prev, axis=1)
    return second - first**2


def jacobian_singular_values(net: MLP, a: list[Array], example: int) -> Array:
    """(hidden-1, width) singular values of J_l = da_(l+1)/da_l = diag(phi'(z_(l+1))) W_(l+1) at one
    example; a is the trace's activations per layer, each (N, width_l)."""
    values = []
    for l in range(net.depth - 2):  # hidden layer l (0-based) to l + 1
        weight = net.params[f"layers.{l + 1}.weight"]
        slope = net.act.derivative(a[l + 1][example])  # tanh'(z_(l+1)) from a_(l+1)
        values.append(np.linalg.svd(slope[:, None] * weight, compute_uv=False))
    return np.stack(values)


def measure_network(init: str, p: dict[str, Any], rng: np.random.Generator) -> tuple[Array, Array, Array, Array]:
    """One network: delta_var, weight_grad_var, pre_var (hidden,) each, singular values (hidden-1, examples, width)."""
    net = network(init, p, rng)
    x, labels = shapeset_like(rng, p["examples"])
    out, cache = net.forward(x, trace=True)
    _, dout = losses.cross_entropy(out, labels)  # dL/d(logits) of the batch mean
    trace = net.backward(dout * len(x), cache, input_grad=False).trace  # x N: each example's own gradient
    hidden = range(p["hidden"])
    below = [x] + trace.a[: p["hidden"] - 1]  # a_(l-1): the input for layer 1
    delta_var = np.array([np.var(trace.delta[l]) for l in hidden])
    weight_var = np.array([per_example_weight_grad_var(trace.delta[l], below[l]).mean() for l in hidden])
    pre_var = np.array([np.mean(trace.z[l] ** 2) for l in hidden])
    examples = range(p["jacobian_examples"])
    singular = np.stack([jacobian_singular_values(net, trace.a, e) for e in examples], axis=1)
    return delta_var, weight_var, pre_var, singular


def measure(init: str, p: dict[str, Any]) -> Stats:
    """p["networks"] networks of one init; network k from Generator([seed, k]) (same inputs for both inits)."""
    rows = [measure_network(init, p, np.random.default_rng([p["seed"], k])) for k in range(p["networks"])]
    delta_var, weight_var, pre_var, singular = (np.stack(column) for column in zip(*rows))
    return Stats(delta_var, weight_var, singular, pre_var)


# ---------------------------------------------------------------- claims


def claims(stats: dict[str, Stats], p: dict[str, Any]) -> list[Claim]:
    """The issue's claims: the 1/3 ratios (l = 2..4), the Jacobians' mean singular values, the flat
    weight gradients under both inits, and the shrinking delta under the standard init."""
    standard, normalized = stats["standard"], stats["xavier_uniform"]
    third = theory.glorot_variance_ratio("standard", p["width"], p["width"])
    ratios = standard.ratios()
    found = [
        Claim.within(f"standard init: Var[delta_{l}] / Var[delta_{l + 1}] = n Var[W]", "Sec. 4.2.1: n Var[W] per layer",
                     third, RATIO_TOLERANCE, float(ratios[l - 1]), expected_text="1/3")
        for l in range(2, p["hidden"])
    ]  # fmt: skip
    n = standard.delta_var.shape[0]
    shrinking = int(np.all(np.diff(standard.delta_var, axis=1) > 0, axis=1).sum())
    found.append(Claim.count("standard init: Var[delta_l] < Var[delta_(l+1)] at every layer",
                             "Sec. 4.2.2, Fig. 7 (top)", n, shrinking, n, what="networks"))  # fmt: skip
    found.append(Claim.within("standard init: mean singular value of J = da_(l+1)/da_l", "Sec. 4.2.2",
                              SINGULAR_STANDARD, SINGULAR_TOLERANCE, float(standard.singular.mean()),
                              expected_text=f"{SINGULAR_STANDARD:g}"))  # fmt: skip
    found.append(Claim.at_least("normalized init (eq. 16): mean singular value of J", "Sec. 4.2.2",
                                SINGULAR_NORMALIZED, float(normalized.singular.mean())))  # fmt: skip
    for init, name in INITS.items():
        found.append(Claim.at_most(f"{name} init: Var[dL/dW_l] flat, max / min over layers 1-{p['hidden']}",
                                   "Sec. 4.2.1, eq. 14", FLAT, stats[init].flatness()))  # fmt: skip
    return found


# ---------------------------------------------------------------- figures


def delta_figure(stats: dict[str, Stats], p: dict[str, Any]) -> Figure:
    """Left: pooled Var[delta_l] against layer (log y) per init, n Var[W]^(hidden - l) from the top layer
    dashed. Right: the forward pre-activation variance mean z_l^2, which sets tanh'(z) (log y)."""
    fig, axes = style.figure(1, 2, width=4.0, height=3.2)
    back, forward = axes[0]
    layers = np.arange(1, p["hidden"] + 1)
    for init, s in stats.items():
        pooled = s.delta_var.mean(axis=0)
        factor = theory.glorot_variance_ratio(init, p["width"], p["width"])
        back.plot(layers, pooled, "o-", color=INIT_COLORS[init], label=f"{INITS[init]} init")
        back.plot(layers, pooled[-1] * factor ** (p["hidden"] - layers), **style.THEORY)
        forward.plot(layers, s.pre_var.mean(axis=0), "o-", color=INIT_COLORS[init], label=f"{INITS[init]} init")
    back.plot([], [], **style.THEORY, label="x n Var[W] per layer down:\n1/3 (standard), 1 (normalized)")
    back.set_ylabel("Var[delta_l], delta_l = dL/dz_l (one example)")
    back.set_title("backward: the gradient")
    forward.set_ylabel("Var[z_l] (mean of z_l^2)")
    forward.set_title("forward: pre-activations (tanh' ~ 1 - z^2)")
    for ax in axes[0]:
        ax.set_yscale("log")
        ax.set_xticks(layers)
        ax.set_xlabel("hidden layer l (1 = nearest the input)")
        ax.legend(loc="lower right" if ax is back else "lower left", frameon=False, fontsize=7)
    style.caption(fig, f"tanh MLP 1024 -> {p['hidden']} x {p['width']} -> 9 at initialisation, softmax cross-entropy, "
                       f"{p['networks']} networks x {p['examples']} Shapeset-like images pooled")  # fmt: skip
    fig.tight_layout()
    return fig


def quarter_circle(sigma: Array, scale: float) -> Array:
    """Density of the singular values of an n x n matrix with entries of variance scale^2 / n (n large):
    sqrt(4 scale^2 - sigma^2) / (pi scale^2) on [0, 2 scale]."""
    return np.sqrt(np.clip(4 * scale**2 - sigma**2, 0.0, None)) / (math.pi * scale**2)


def singular_figure(stats: dict[str, Stats], p: dict[str, Any]) -> Figure:
    """Histogram of the Jacobians' singular values per init, the quarter-circle law of W alone dashed,
    the means marked."""
    fig, axes = style.figure(1, 1, width=5.0, height=3.4)
    ax = axes[0, 0]
    bins = np.linspace(0.0, 2.1, 85)
    for i, (init, s) in enumerate(stats.items()):
        values = s.singular.ravel()
        ax.hist(values, bins=bins, density=True, histtype="stepfilled", alpha=0.35, color=INIT_COLORS[init],
                label=f"{INITS[init]} init: mean {values.mean():.3f}")  # fmt: skip
        ax.axvline(values.mean(), color=INIT_COLORS[init], lw=1.0)
        scale = math.sqrt(theory.glorot_variance_ratio(init, p["width"], p["width"]))
        grid = np.linspace(0.0, 2.0 * scale, 200)
        ax.plot(grid, quarter_circle(grid, scale), **style.THEORY,
                label="quarter-circle law of W alone (tanh' = 1)" if i == 0 else None)  # fmt: skip
    ax.set_xlabel("singular value of J = da_(l+1)/da_l")
    ax.set_ylabel("density")
    ax.legend(loc="upper right", frameon=False, fontsize=7)
    style.caption(fig, f"Layer Jacobians at initialisation: singular values of J_l = da_(l+1)/da_l, "
                       f"l = 1..{p['hidden'] - 1},\n{p['networks']} networks x {p['jacobian_examples']} examples; "
                       "vertical lines: the means")  # fmt: skip
    fig.tight_layout()
    return fig


def weight_grad_figure(stats: dict[str, Stats], p: dict[str, Any]) -> Figure:
    """Pooled weight-gradient variance per layer over its smallest layer's, per init: the claim is that
    every point is <= 1.25 (shaded); eq. 14's equal variances dashed at 1."""
    fig, axes = style.figure(1, 1, width=5.0, height=3.4)
    ax, layers = axes[0, 0], np.arange(1, p["hidden"] + 1)
    ax.axhspan(1.0, FLAT, color="0.92", label=f"flat: max / min <= {FLAT:g}")
    ax.axhline(1.0, **style.THEORY, label="eq. 14: the same in every layer")
    for init, s in stats.items():
        pooled = s.weight_grad_var.mean(axis=0)
        ax.plot(layers, pooled / pooled.min(), "o-", color=INIT_COLORS[init],
                label=f"{INITS[init]} init (smallest {pooled.min():.1e})")  # fmt: skip
    ax.set_ylim(0.9, 1.5)
    ax.set_xticks(layers)
    ax.set_xlabel("weight layer l (W_l maps layer l-1 to l; layer 0 = the input)")
    ax.set_ylabel("Var[dL/dW_l] / smallest over layers")
    ax.legend(loc="upper right", frameon=False, fontsize=7)
    style.caption(
        fig,
        "Weight gradients at initialisation: one example's dL/dW_l = delta_l a_(l-1)^T,\n"
        f"variance over its entries, {p['networks']} networks x {p['examples']} examples pooled",
    )
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- the check


def check(params: dict[str, Any], tables: dict[str, pd.DataFrame] | None) -> tuple[list[Claim], dict[str, Figure]]:
    with _process.single_threaded():  # BLAS over 2 threads stalls 10-100x when another process holds a core
        stats = {init: measure(init, params) for init in INITS}
    figures = {
        "delta_variance": delta_figure(stats, params),
        "jacobian_singular_values": singular_figure(stats, params),
        "weight_gradient_variance": weight_grad_figure(stats, params),
    }
    return claims(stats, params), figures
