"""Hanin (2018), "Which neural net architectures give rise to exploding and vanishing gradients?", NeurIPS.

The paper's claim (abstract; Theorem 1 and its discussion): in a randomly initialised fully connected ReLU
net (weights symmetric, variance 2 / fan-in), the squared entries Z_pq = (d output_q / d input_p)^2 of the
input-output Jacobian have mean 1 / n_0 at any depth, while their fluctuations, E[Z^2] / E[Z]^2, are
exponential in beta = sum over hidden layers j of 1 / n_j (bounded above and below by exponentials in beta):
an architecture's depth alone does not decide whether its gradients explode or vanish, its widths do.
The stored copies of the paper reachable here give its abstract and introduction; the exact value below
is our derivation for Gaussian weights, which the theorem's bounds contain (gradlab.theory.hanin_entry_moment_ratio):
    E[J_pq^4] / E[J_pq^2]^2 = 3 prod_j (1 + 5 / n_j)  ~  3 exp(5 beta),
each hidden layer multiplying ||d x_j / d x_p||^2 by an independent (2 / n_(j-1)) chi^2 with Binomial(n_j, 1/2)
degrees of freedom, and the linear output entry adding a chi^2_1 (the 3).

How gradlab measures it (gradlab.probes.io_jacobian, the engine's backward): for each architecture
(`inputs` -> hidden widths -> `outputs`, ReLU, He-normal weights, zero biases, linear output layer),
`networks` independent nets in ensembles of `block` (network r of architecture a from Generator([seed, a,
r]); each at its own standard-normal input), every entry of J (inputs x outputs per net); E[Z] and
E[Z^2] over entries and nets, and their ratio. Its standard error by the delta method over the nets. The
estimate is heavy-tailed: Z^2's kurtosis over nets grows like prod_j E[f^4]/E[f^2]^2 (f a layer's
factor; 1.6 per layer at n = 32, 3.7 at n = 8), so the architectures stop at a kurtosis of ~50, where
16000 nets give a relative standard error of ~6%; beyond (width 16 and 8 hidden layers, beta = 0.5, kurtosis
830) 4000 nets measured 20% low in two seeds and 40000 within 5%: sample means of such tails fall
short of the mean more often than not.

Claims: each architecture's ln(measured ratio) within 0.06 of ln(the formula) (3 x the largest standard
error of the full run, 0.019 for 8 x 32; the others' 0.002-0.018); equal depth (4 hidden layers), equal
neurons (144), different beta (0.2 and 0.11): the measured ln of the ratio of their ratios against the
formula's 0.336; equal beta (1/4), 4x the depth (2 and 8 hidden layers): the formula's ln ratio 0.19, where
growth exponential in the depth alone would be far larger (each pair within 0.07, ~3 standard errors).
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
from gradlab.probes.io_jacobian import input_output_jacobian, squared_entry_moments
from gradlab.reproduce.claims import Claim

TITLE = "Hanin 2018: Which neural net architectures give rise to exploding and vanishing gradients?"

Array = np.ndarray
SOURCE = "Hanin 2018 Thm. 1 (exp in beta); exact Gaussian value 3 prod(1 + 5/n_j)"


@dataclass
class Measured:
    """One architecture: per net the mean of Z and of Z^2 over its Jacobian's entries."""

    hidden: list[int]
    ez: Array  # (networks,)
    ez2: Array  # (networks,)

    @property
    def ratio(self) -> float:
        return float(self.ez2.mean() / self.ez.mean() ** 2)

    @property
    def log_se(self) -> float:
        """Standard error of ln(ratio): delta method on the nets' (E[Z^2], E[Z]) means."""
        a, b = self.ez2.mean(), self.ez.mean()
        cov = np.cov(np.stack([self.ez2, self.ez])) / len(self.ez)
        g = np.array([1.0 / a, -2.0 / b])
        return float(math.sqrt(g @ cov @ g))

    @property
    def beta(self) -> float:
        return theory.hanin_beta(self.hidden)

    @property
    def predicted(self) -> float:
        return theory.hanin_entry_moment_ratio(self.hidden)


def label(hidden: list[int]) -> str:
    """"4 x 32" for equal widths, else the list."""
    return f"{len(hidden)} x {hidden[0]}" if len(set(hidden)) == 1 else "[" + ", ".join(map(str, hidden)) + "]"


def measure(hidden: list[int], index: int, p: dict[str, Any]) -> Measured:
    """`networks` ReLU nets inputs -> hidden -> outputs, `block` at a time as one ensemble."""
    sizes, block = [p["inputs"], *hidden, p["outputs"]], p["block"]
    ez, ez2 = [], []
    for start in range(0, p["networks"], block):
        count = min(block, p["networks"] - start)
        rngs = [np.random.default_rng([p["seed"], index, start + r]) for r in range(count)]
        net = MLP(sizes, "relu", init="he_normal", rng=rngs, ensemble=count, dtype="float64")
        x = np.stack([g.standard_normal((1, p["inputs"])) for g in rngs])  # (count, 1, inputs): each net its own input
        a, b = squared_entry_moments(input_output_jacobian(net, x), axis=(1, 2, 3))
        ez.append(a)
        ez2.append(b)
    return Measured(list(hidden), np.concatenate(ez), np.concatenate(ez2))


# ---------------------------------------------------------------- claims


def ratio_claim(m: Measured, tolerance: float) -> Claim:
    c = Claim.within(f"{label(m.hidden)} (beta = {m.beta:.3f}): E[J^4]/E[J^2]^2 = 3 prod(1 + 5/n_j)", SOURCE,
                     math.log(m.predicted), tolerance, math.log(m.ratio), digits=3)  # fmt: skip
    return Claim(c.claim, c.source, f"{m.predicted:.3f} (ln {math.log(m.predicted):.3f})", f"ln {c.tolerance}",
                 f"{m.ratio:.3f} (ln {math.log(m.ratio):.3f} se {m.log_se:.3f})", c.passed, m.ratio)  # fmt: skip


def pair_claim(a: Measured, b: Measured, what: str, tolerance: float) -> Claim:
    """ln(ratio_a / ratio_b) measured against the formula's."""
    expected = math.log(a.predicted / b.predicted)
    measured = math.log(a.ratio / b.ratio)
    se = math.hypot(a.log_se, b.log_se)
    c = Claim.within(f"{what}: {label(a.hidden)} (beta {a.beta:.3f}) over {label(b.hidden)} (beta {b.beta:.3f}), "
                     "ln of the ratio of E[J^4]/E[J^2]^2", SOURCE, expected, tolerance, measured, digits=3)  # fmt: skip
    return Claim(c.claim, c.source, f"{expected:+.3f}", c.tolerance, f"{measured:+.3f} se {se:.3f}", c.passed, measured)


def find(found: list[Measured], hidden: list[int]) -> Measured:
    return next(m for m in found if m.hidden == list(hidden))


# ---------------------------------------------------------------- figure


@style.styled
def ratio_figure(p: dict[str, Any], found: list[Measured]) -> Figure:
    """Measured E[J^4]/E[J^2]^2 against beta (+- 2 se), the formula per architecture (crosses) and 3 exp(5 beta)."""
    fig, axes = style.figure(1, 1, width=6.0, height=3.6)
    ax = axes[0, 0]
    depths = sorted({len(m.hidden) for m in found})
    for m in found:
        color = style.SEQUENCE[depths.index(len(m.hidden)) % len(style.SEQUENCE)]
        low, high = m.ratio * (1 - math.exp(-2 * m.log_se)), m.ratio * (math.exp(2 * m.log_se) - 1)
        ax.errorbar(m.beta, m.ratio, yerr=[[low], [high]], fmt="o", ms=4, color=color, zorder=3)
        ax.plot(m.beta, m.predicted, "x", color="0.25", ms=6, zorder=4)
        ax.annotate(label(m.hidden), (m.beta, m.ratio), textcoords="offset points", xytext=(5, -9), fontsize=6.5)
    for d in depths:
        ax.plot([], [], "o", color=style.SEQUENCE[depths.index(d) % len(style.SEQUENCE)], label=f"{d} hidden layers")
    beta = np.linspace(0, 1.1 * max(m.beta for m in found), 100)
    ax.plot(beta, 3 * np.exp(5 * beta), **style.THEORY, label="3 exp(5 beta)")
    ax.plot([], [], "x", color="0.25", label="3 prod(1 + 5/n_j), each net")
    ax.set_yscale("log")
    ax.set_xlabel("beta = sum_j 1/n_j over the hidden layers")
    ax.set_ylabel("E[J^4] / E[J^2]^2 of a Jacobian entry")
    ax.legend(loc="upper left", frameon=False, fontsize=7)
    style.caption(fig, f"ReLU nets {p['inputs']} -> hidden -> {p['outputs']}, He-normal weights, {p['networks']} nets "
                       "each (+- 2 se): the fluctuation of squared Jacobian entries follows beta, not depth")  # fmt: skip
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- the check


def check(params: dict[str, Any], tables: dict[str, pd.DataFrame] | None) -> tuple[list[Claim], dict[str, Figure]]:
    archs = [list(h) for h in params["architectures"]]
    pairs = {k: [list(h) for h in params[k]] for k in ("equal_depth", "equal_beta")}
    for h in pairs["equal_depth"] + pairs["equal_beta"]:
        if h not in archs:
            archs.append(h)
    found = [measure(h, i, params) for i, h in enumerate(archs)]
    claims = [ratio_claim(m, params["tolerance"]) for m in found]
    claims.append(pair_claim(*(find(found, h) for h in pairs["equal_depth"]), "equal depth, equal neurons",
                             params["pair_tolerance"]))  # fmt: skip
    claims.append(pair_claim(*(find(found, h) for h in pairs["equal_beta"]), "equal beta, 4x the depth",
                             params["pair_tolerance"]))  # fmt: skip
    return claims, {"moment_ratio_vs_beta": ratio_figure(params, found)}
