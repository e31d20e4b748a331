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
- Pooling: Var[delta_l] is the mean square of all entries of delta_l = dL/dz_l, units x examples, of
  one network (its mean is 0 by the weights' symmetry); the claim's ratio Var[delta_l] / Var[delta_(l+1)]
  is each network's, averaged over the networks (l = 1..4: W_(l+1) is 1000 x 1000).
- The exact prediction of that ratio (Sec. 4.2.1's n Var[W] without the linear-regime step tanh' = 1):
  delta_l = tanh'(z_l) (W_(l+1)^T delta_(l+1)); for W_(l+1) independent of delta_(l+1), a unit's mean
  square of W^T delta is n Var[W] mean_j delta_(l+1)j^2, so E[delta_l^2] / E[delta_(l+1)^2] = n Var[W]
  E[tanh'(z_l)^2], the expectation taken over units and examples with each example weighted by its own
  mean delta_(l+1)^2 (backward_slope_sq; unweighted, the normalized init's l = 1 would be predicted
  0.70 against the measured 0.75: bright images have both a larger Var[z], hence a smaller tanh', and a
  smaller gradient). n Var[W] = 1/3 (standard), 1 (normalized, square layers). Tolerance: 3 standard
  errors of the networks' paired differences measured - predicted (8 networks: a correct prediction
  fails with probability about 2%, Student t with 7 degrees of freedom).
- The weight-gradient variance of layer l (W_l maps layer l-1 to l; layer 0 is the input) is the
  variance over the entries of one example's dL/dW_l = delta_l a_(l-1)^T, mean(delta^2) mean(a^2) -
  (mean(delta) mean(a))^2, averaged over the examples and networks (eq. 14 describes one example's
  gradient). Layers 1..5, the hidden ones; the output layer's fan-out is 9, not 1000, so eq. 14 gives
  it a different scale (measured ~100x the others): it is left out.
- "Flat within +-25%": max over the five layers / min over them <= 1.25. Of the two readings (each
  layer within 25% of their mean allows max/min up to 1.67) this is the stricter one, and it needs no
  reference level: eq. 14 says any two layers' variances are equal.
- Jacobians: J_l = da_(l+1)/da_l = diag(tanh'(z_(l+1))) W_(l+1), 1000 x 1000, l = 1..4, at
  `jacobian_examples` examples per network; their singular values by SVD. The paper (Sec. 4.2.2): the
  average singular value of the layer Jacobians is "around 0.8" with the normalized init and 0.5 with
  the standard one. Claimed here: the mean over the (network, example) pairs, each pair's mean over
  its layers and singular values, within 3 standard errors of the pairs' scatter of 0.8 (two-sided;
  the pairs differ by the image's brightness, sd ~0.03); the standard init against the issue's 0.49 +-
  0.03. For W alone (entries of variance s^2 / n) the singular values follow the quarter-circle law on
  [0, 2s] with mean 8s / (3 pi): 0.490 for s^2 = 1/3 (standard), 0.849 for s^2 = 1 (normalized);
  tanh' < 1 lowers them (the figure draws the law).
- The paper's claim (Sec. 4.2.2, Fig. 7 bottom) that with the normalized init the back-propagated
  gradients do not decrease toward the input: Var[delta_l] / Var[delta_(l+1)] = 1, as the geometric mean
  over l = 1..4 per network, within 3 standard errors of 1 over the networks.

Measured (full run, see results/glorot2010/claims.csv): the ratios match n Var[W] E[tanh'^2] under both
inits at every layer (standard 0.28-0.33, normalized 0.75-0.85: n Var[W] = 1 but E[tanh'^2] ~ 0.75-0.85
at these inputs' Var[z] ~ 0.1-0.3). The paper's "do not decrease" FAILS: under the normalized init the
gradient still shrinks by ~0.8 per layer toward the input, because the linear regime tanh' = 1 behind
n Var[W] = 1 holds only roughly at these inputs (E[x^2] ~ 1/3 puts layer 1 at Var[z] ~ 0.3), and the
exact prediction n Var[W] E[tanh'^2] (the claims above) accounts for the whole shrinkage. The normalized mean singular value is
measured below 0.8 for the same reason (tanh' < 1 scales J below the quarter-circle 0.85).
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
SE_TOLERANCE = 3.0  # standard errors (over independent networks or (network, example) pairs)
SINGULAR_STANDARD, SINGULAR_TOLERANCE = 0.49, 0.03  # mean singular value under the standard init
SINGULAR_NORMALIZED = 0.8  # the paper's "around 0.8" under the normalized init (two-sided, SE_TOLERANCE)
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
    slope_sq: Array  # (networks, hidden-1): E[tanh'(z_l)^2] over units x examples, weighted by the example's delta_(l+1)^2

    def network_ratios(self) -> Array:
        """(networks, hidden-1) each network's Var[delta_l] / Var[delta_(l+1)], l = 1..hidden-1."""
        return self.delta_var[:, :-1] / self.delta_var[:, 1:]

    def predicted_ratios(self, n_var_w: float) -> Array:
        """(networks, hidden-1) n Var[W] E[tanh'(z_l)^2]: Var[delta_l] / Var[delta_(l+1)] when W_(l+1) is
        independent of delta_(l+1) and tanh'(z_l) of W_(l+1)^T delta_(l+1) (delta_l = tanh'(z_l) W^T delta)."""
        return n_var_w * self.slope_sq

    def singular_means(self) -> Array:
        """(networks x examples,) mean singular value of each (network, example)'s Jacobians J_1..J_(hidden-1)."""
        return self.singular.mean(axis=(1, 3)).ravel()

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


def measure_network(init: str, p: dict[str, Any], rng: np.random.Generator) -> tuple[Array, Array, Array, Array, Array]:
    """One network: delta_var, weight_grad_var, pre_var, slope_sq (hidden,) each, singular values
    (hidden-1, examples, width). delta_var is the mean square of delta_l (its mean is 0 by the weights' symmetry)."""
    net = network(init, p, rng)
    x, labels = shapeset_like(rng, p["examples"])
    out, cache = net.forward(x, trace=True)
    _, dout = losses.cross_entropy(out, labels)  # dL/d(logits) of the batch mean
    trace = net.backward(dout * len(x), cache, input_grad=False).trace  # x N: each example's own gradient
    hidden = range(p["hidden"])
    below = [x] + trace.a[: p["hidden"] - 1]  # a_(l-1): the input for layer 1
    delta_var = np.array([np.mean(trace.delta[l] ** 2) for l in hidden])
    weight_var = np.array([per_example_weight_grad_var(trace.delta[l], below[l]).mean() for l in hidden])
    pre_var = np.array([np.mean(trace.z[l] ** 2) for l in hidden])
    slope_sq = backward_slope_sq([net.act.derivative(trace.a[l]) for l in hidden], trace.delta[: p["hidden"]])
    examples = range(p["jacobian_examples"])
    singular = np.stack([jacobian_singular_values(net, trace.a, e) for e in examples], axis=1)
    return delta_var, weight_var, pre_var, slope_sq, singular


def backward_slope_sq(slopes: list[Array], delta: list[Array]) -> Array:
    """(L-1,) for l < L-1: sum_n s_l[n] m_(l+1)[n] / sum_n m_(l+1)[n], s_l[n] the mean of tanh'(z_l)^2 over
    example n's units, m_(l+1)[n] the mean of delta_(l+1)^2; slopes[l], delta[l] (N, width).

    delta_l = tanh'(z_l) (W_(l+1)^T delta_(l+1)) and, for W independent of both, a unit's mean square
    (W^T delta)_i^2 = n Var[W] m_(l+1)[n], so E[delta_l^2] = n Var[W] mean_n s_l[n] m_(l+1)[n]: the
    examples whose gradient is large weigh more (brighter images: larger Var[z], smaller tanh')."""
    s = [np.mean(a**2, axis=1) for a in slopes]
    m = [np.mean(d**2, axis=1) for d in delta]
    return np.array([np.sum(s[l] * m[l + 1]) / np.sum(m[l + 1]) for l in range(len(slopes) - 1)])


def measure(init: str, p: dict[str, Any]) -> Stats:
    """p["networks"] networks of one init; network k from Generator([seed, k]) (same inputs for both inits)."""
    rows = [measure_network(init, p, np.random.default_rng([p["seed"], k])) for k in range(p["networks"])]
    delta_var, weight_var, pre_var, slope_sq, singular = (np.stack(column) for column in zip(*rows))
    return Stats(delta_var, weight_var, singular, pre_var, slope_sq)


# ---------------------------------------------------------------- claims


def mean_and_se(values: Array) -> tuple[float, float]:
    """The mean of independent samples (any shape, flattened) and its standard error sd / sqrt(n)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size))


def ratio_claims(stats: dict[str, Stats], p: dict[str, Any]) -> list[Claim]:
    """Per init and l = 1..hidden-1: the pooled Var[delta_l] / Var[delta_(l+1)] against n Var[W]
    E[tanh'(z_l)^2], within SE_TOLERANCE standard errors of the networks' paired differences."""
    found = []
    for init, name in INITS.items():
        s, n_var_w = stats[init], theory.glorot_variance_ratio(init, p["width"], p["width"])
        measured, predicted = s.network_ratios(), s.predicted_ratios(n_var_w)
        for l in range(1, p["hidden"]):
            _, se = mean_and_se(measured[:, l - 1] - predicted[:, l - 1])
            expected = float(predicted[:, l - 1].mean())
            found.append(Claim.within(
                f"{name} init: Var[delta_{l}] / Var[delta_{l + 1}] = n Var[W] E[tanh'(z_{l})^2]",
                "Sec. 4.2.1 (n Var[W] per layer) with tanh' measured", expected, SE_TOLERANCE * se,
                float(measured[:, l - 1].mean()), expected_text=f"{n_var_w:.3g} x {expected / n_var_w:.3f} = {expected:.3f}",
            ))  # fmt: skip
    return found


def claims(stats: dict[str, Stats], p: dict[str, Any]) -> list[Claim]:
    """The ratios n Var[W] E[tanh'^2] (both inits, l = 1..hidden-1), the shrinking delta (standard), the
    paper's constant delta (normalized), the Jacobians' mean singular values, the flat weight gradients."""
    standard, normalized = stats["standard"], stats["xavier_uniform"]
    found = ratio_claims(stats, p)
    n = standard.delta_var.shape[0]
    shrinking = int(np.all(np.diff(standard.delta_var, axis=1) > 0, axis=1).sum())
    found.append(Claim.count("standard init: Var[delta_l] < Var[delta_(l+1)] at every layer",
                             "Sec. 4.2.2, Fig. 7 (top)", n, shrinking, n, what="networks"))  # fmt: skip
    # the paper: with the normalized init the back-propagated gradients do not decrease (ratio 1 per layer)
    per_layer = np.exp(np.log(normalized.network_ratios()).mean(axis=1))  # (networks,) geometric mean over l
    mean, se = mean_and_se(per_layer)
    found.append(Claim.within("normalized init: Var[delta_l] / Var[delta_(l+1)] = 1 (gradients do not decrease)",
                              "Sec. 4.2.2, Fig. 7 (bottom)", 1.0, SE_TOLERANCE * se, mean))  # fmt: skip
    found.append(Claim.within("standard init: mean singular value of J = da_(l+1)/da_l", "Sec. 4.2.2",
                              SINGULAR_STANDARD, SINGULAR_TOLERANCE, float(standard.singular.mean()),
                              expected_text=f"{SINGULAR_STANDARD:g}"))  # fmt: skip
    mean, se = mean_and_se(normalized.singular_means())
    found.append(Claim.within("normalized init (eq. 16): mean singular value of J", "Sec. 4.2.2 (\"around 0.8\")",
                              SINGULAR_NORMALIZED, SE_TOLERANCE * se, mean, expected_text=f"{SINGULAR_NORMALIZED:g}"))  # fmt: skip
    for init, name in INITS.items():
        found.append(Claim.at_most(f"{name} init: Var[dL/dW_l] flat, max / min over layers 1-{p['hidden']}",
                                   "Sec. 4.2.1, eq. 14", FLAT, stats[init].flatness()))  # fmt: skip
    return found


# ---------------------------------------------------------------- figures


@style.styled
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


@style.styled
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


@style.styled
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
