"""Yang, Pennington, Rao, Sohl-Dickstein and Schoenholz (2019), "A mean field theory of batch
normalization", ICLR.

The paper's claim (abstract; Sec. 3-4, its gradient-explosion theorem and the figures of gradient norms by
layer): in a wide fully connected network with batch norm after every dense layer, at initialisation,
the gradients explode toward the input at a rate lambda per layer that no choice of the weight variance
removes (batch norm is scale invariant in W) and no usual activation avoids; for ReLU lambda -> pi / (pi - 1)
= 1.467 per layer for the squared norm as the batch B grows (gradlab.theory.BATCHNORM_RELU_RATE, as we read
the paper: confirmed below by measurement at B = 32, 64, 128, extrapolated in 1/B), and for linear
networks lambda = (B - 2) / (B - 3) (gradlab.theory.batchnorm_linear_rate, derived there: explosion vanishes
only as B -> inf). The stored copies of the paper reachable here give its abstract (gradients grow
exponentially in depth, cannot be tuned away by the initial weight variances or the activation, batch
norm itself is the cause); the rates are our reading of its Sec. 3-4, checked against the large-B
ReLU limit pi / (pi - 1) = 1 / (2 Var[relu(h)]) for h ~ N(0, 1) that a one-line argument gives
(batch norm divides by the pre-activations' spread sigma_w^2 (1/2 - 1/(2 pi)), ReLU keeps half of the
gradient, W^T multiplies it by sigma_w^2). Without batch norm, He's init keeps E||grad||^2 flat.

How gradlab measures it (the engine's trace): MLPs `depth` layers deep, all `width` wide, batch norm
(training mode: the batch's statistics, backpropagated through) after every hidden dense layer, weights
N(0, sigma_w^2 / width), zero biases; a batch of B standard-normal inputs and dL/d(output) N(0, 1) per
example and unit. The per-layer rate: exp(-slope) of ln ||dL/dW_l||^2 (the weight gradient, the paper's
quantity) over layers `edge` .. depth-1-edge (gradlab.theory.log_slope; the first layers reach the fixed
point, the last is the identity output), pooled over `networks` nets (network k from Generator([seed,
case, k])); its standard error from the nets' own slopes.
- ReLU at B in `relu_batches` (width 1024 >> B: mean field is the wide limit at fixed B; at width 256 B =
  128 measured 0.006 lower in ln lambda, and B >= width undershoots): ln lambda(B) falls toward
  ln(pi/(pi-1)) = 0.3832, and the quadratic in 1/B through the three points extrapolates it
  (Richardson: (1/3) f(32) - 2 f(64) + (8/3) f(128)); claimed within 0.01 (~2.6 standard errors of the
  extrapolation from 8 nets per B; with 3 nets it measured 0.3703 +- 0.0064, with 8 0.3790 +- 0.0038).
- ReLU at B = `sigma_batch`, sigma_w^2 in `sigma_w2s`, independent draws: every ln lambda within 0.01 of
  sigma_w^2 = 2's (scale invariance).
- Linear at B in `linear_batches` (width 512): ln lambda within 0.02 of ln((B-2)/(B-3)) each; B = 4 and 5
  are left out: a unit's factor B / ||z||^2 ~ 1 / chi^2_(B-1) has infinite variance there (E[1/chi_k^4]
  is finite only for k > 4), and the sample means fall short (B = 4 measured 0.61 for 0.69).
- No batch norm, ReLU at He init (B = 64, width 512): ln lambda within 0.01 of 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from gradlab import theory
from gradlab.nn import MLP
from gradlab.plots import style
from gradlab.reproduce.claims import Claim

TITLE = "Yang, Pennington, Rao, Sohl-Dickstein, Schoenholz 2019: A mean field theory of batch normalization"

Array = np.ndarray
SOURCE = "Yang 2019 Sec. 3-4 (gradient explosion under batch norm)"


@dataclass(frozen=True)
class Case:
    activation: str
    batch: int
    width: int
    sigma_w2: float = 2.0
    norm: str | None = "batch"

    @property
    def label(self) -> str:
        name = {"identity": "linear", "relu": "ReLU"}[self.activation]
        bn = "batch norm" if self.norm else "no norm, He init"
        return f"{name}, {bn}, B = {self.batch}, width {self.width}, sigma_w^2 = {self.sigma_w2:g}"


def weight_grad_sq(case: Case, depth: int, rng: np.random.Generator) -> Array:
    """(depth,) ||dL/dW_l||^2 of one network at one batch, dL/d(output) ~ N(0, 1)."""
    init = "mean_field" if case.norm else "he_normal"
    net = MLP([case.width] * (depth + 1), case.activation, norm=case.norm, init=init, sigma_w2=case.sigma_w2,
              rng=rng, dtype="float64")  # fmt: skip
    x = rng.standard_normal((case.batch, case.width))
    out, cache = net.forward(x)
    grads = net.backward(rng.standard_normal(out.shape), cache, input_grad=False)
    return np.array([np.sum(grads.params[f"layers.{l}.weight"] ** 2) for l in range(depth)])


def log_rate(sq: Array, edge: int) -> Array:
    """ln lambda = -slope of ln sq over layers edge .. depth-1-edge; (..., depth) -> (...)."""
    depth = sq.shape[-1]
    return -theory.log_slope(sq[..., edge : depth - edge], np.arange(edge, depth - edge))


@dataclass
class Measured:
    case: Case
    sq: Array  # (networks, depth)
    rate: float  # pooled ln lambda
    se: float


def measure(case: Case, index: int, p: dict[str, Any], networks: int) -> Measured:
    sq = np.stack([weight_grad_sq(case, p["depth"], np.random.default_rng([p["seed"], index, k])) for k in range(networks)])
    per = log_rate(sq, p["edge"])
    se = float(per.std(ddof=1) / math.sqrt(networks)) if networks > 1 else math.nan
    return Measured(case, sq, float(log_rate(sq.mean(axis=0), p["edge"])), se)


def richardson(batches: list[int], rates: list[float]) -> float:
    """The B -> inf value of a quadratic in 1/B through three points at B, 2B, 4B: (1/3) f1 - 2 f2 + (8/3) f3."""
    if len(batches) != 3 or batches[1] != 2 * batches[0] or batches[2] != 4 * batches[0]:
        raise ValueError(f"relu_batches must be B, 2B, 4B (three values), got {batches}")
    return rates[0] / 3.0 - 2.0 * rates[1] + 8.0 * rates[2] / 3.0


# ---------------------------------------------------------------- claims


def _with_se(claim: Claim, measured: float, se: float) -> Claim:
    return Claim(claim.claim, claim.source, claim.expected, claim.tolerance, f"{measured:+.4f} se {se:.4f}",
                 claim.passed, measured)  # fmt: skip


def relu_claims(found: list[Measured], p: dict[str, Any]) -> list[Claim]:
    target = math.log(theory.BATCHNORM_RELU_RATE)
    rates = [m.rate for m in found]
    limit = richardson(p["relu_batches"], rates)
    se = math.sqrt((found[0].se / 3) ** 2 + (2 * found[1].se) ** 2 + (8 * found[2].se / 3) ** 2)
    batches = ", ".join(str(b) for b in p["relu_batches"])
    extrapolated = Claim.within(f"ReLU + batch norm: ln lambda extrapolated to B -> inf from B = {batches} "
                                f"(width {found[0].case.width}) = ln(pi/(pi-1))", SOURCE, target,
                                p["relu_tolerance"], limit, digits=4)  # fmt: skip
    falling = sum(a > b for a, b in zip(rates, rates[1:]))
    detail = ", ".join(f"{m.case.batch}: {m.rate:.4f}" for m in found)
    return [
        _with_se(extrapolated, limit, se),
        Claim.count("ReLU + batch norm: ln lambda falls toward the limit as B doubles", SOURCE, len(rates) - 1, falling,
                    len(rates) - 1, what="doublings", detail=detail),
    ]  # fmt: skip


def sigma_claim(found: list[Measured], p: dict[str, Any]) -> Claim:
    ref = next(m for m in found if m.case.sigma_w2 == 2.0)
    worst = max(found, key=lambda m: abs(m.rate - ref.rate))
    values = ", ".join(f"{m.case.sigma_w2:g}: {m.rate:.4f}" for m in found)
    c = Claim.at_most(f"ReLU + batch norm, B = {ref.case.batch}: ln lambda the same for sigma_w^2 in "
                      f"{{{', '.join(f'{m.case.sigma_w2:g}' for m in found)}}} (max |difference| from sigma_w^2 = 2)",
                      f"{SOURCE}: not removed by the weight variance", p["sigma_tolerance"],
                      abs(worst.rate - ref.rate), digits=4)  # fmt: skip
    return Claim(c.claim, c.source, c.expected, c.tolerance, f"{abs(worst.rate - ref.rate):.4f} ({values})", c.passed,
                 c.value)  # fmt: skip


def linear_claim(m: Measured, tolerance: float) -> Claim:
    expected = math.log(theory.batchnorm_linear_rate(m.case.batch))
    c = Claim.within(f"linear + batch norm, B = {m.case.batch}: ln lambda = ln((B-2)/(B-3))", SOURCE, expected,
                     tolerance, m.rate, digits=4)  # fmt: skip
    return _with_se(c, m.rate, m.se)


def flat_claim(m: Measured, tolerance: float) -> Claim:
    c = Claim.within(f"ReLU without batch norm, He init, B = {m.case.batch}: ln lambda = 0 (flat)",
                     "Yang 2019 (baseline); He 2015: chi_1 = 1", 0.0, tolerance, m.rate, digits=4)  # fmt: skip
    return _with_se(c, m.rate, m.se)


# ---------------------------------------------------------------- figure


@style.styled
def gradient_figure(p: dict[str, Any], groups: dict[str, list[Measured]]) -> Figure:
    """||dL/dW_l||^2 / ||dL/dW_(depth-1-edge)||^2 by layer (log y), pooled over nets, theory's rate dashed."""
    fig, axes = style.figure(1, 2, width=4.2, height=3.4)
    depth, edge = p["depth"], p["edge"]
    layers = np.arange(depth)
    top = depth - 1 - edge
    relu = groups["relu"] + groups["sigma"] + groups["flat"]
    for ax, group, title in ((axes[0, 0], relu, "ReLU"), (axes[0, 1], groups["linear"], "linear, batch norm")):
        for i, m in enumerate(group):
            pooled = m.sq.mean(axis=0)
            ax.plot(layers, pooled / pooled[top], color=style.SEQUENCE[i % len(style.SEQUENCE)], lw=1.1,
                    label=m.case.label.split(", width")[0].replace("ReLU, ", "").replace("linear, batch norm, ", "")
                    + (f", sigma_w^2 {m.case.sigma_w2:g}" if m.case.activation == "relu" and m.case.sigma_w2 != 2.0 else ""))  # fmt: skip
            rate = (theory.BATCHNORM_RELU_RATE if m.case.activation == "relu" else theory.batchnorm_linear_rate(m.case.batch)) if m.case.norm else 1.0
            ax.plot(layers, rate ** (top - layers), color=style.SEQUENCE[i % len(style.SEQUENCE)], ls="--", lw=0.7)
        ax.set_yscale("log")
        ax.set_xlabel("layer l (0 = input side)")
        ax.set_title(title, fontsize=8)
        ax.legend(loc="upper right", frameon=False, fontsize=6)
    axes[0, 0].set_ylabel(f"||dL/dW_l||^2 / ||dL/dW_{top}||^2")
    style.caption(fig, "Weight-gradient norms at initialisation, pooled over nets: batch norm explodes them toward the "
                       "input (dashed: pi/(pi-1) per layer for ReLU, (B-2)/(B-3) linear; 1 without norm)")  # fmt: skip
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- the check


def check(params: dict[str, Any], tables: dict[str, pd.DataFrame] | None) -> tuple[list[Claim], dict[str, Figure]]:
    p = params
    relu = [Case("relu", b, p["relu_width"]) for b in p["relu_batches"]]
    sigma = [Case("relu", p["sigma_batch"], p["relu_width"], s) for s in p["sigma_w2s"] if s != 2.0]
    linear = [Case("identity", b, p["width"], 1.0) for b in p["linear_batches"]]
    flat = [Case("relu", p["sigma_batch"], p["width"], 2.0, norm=None)]
    index = iter(range(10**6))
    groups = {
        "relu": [measure(c, next(index), p, p["relu_networks"]) for c in relu],
        "sigma": [measure(c, next(index), p, p["relu_networks"]) for c in sigma],
        "linear": [measure(c, next(index), p, p["networks"]) for c in linear],
        "flat": [measure(c, next(index), p, p["networks"]) for c in flat],
    }
    same_batch = [m for m in groups["relu"] if m.case.batch == p["sigma_batch"]] + groups["sigma"]
    claims = relu_claims(groups["relu"], p) + [sigma_claim(sorted(same_batch, key=lambda m: m.case.sigma_w2), p)]
    claims += [linear_claim(m, p["linear_tolerance"]) for m in groups["linear"]]
    claims += [flat_claim(m, p["flat_tolerance"]) for m in groups["flat"]]
    return claims, {"gradient_by_layer": gradient_figure(p, groups)}
