"""Balduzzi, Frean, Leary, Lewis, Ma and McWilliams (2017), "The shattered gradients problem: if resnets
are the answer, then what is the question?", ICML 2017 (arXiv:1702.08591).

The paper's statements (abstract: "the correlation between gradients in standard feedforward networks
decays exponentially with depth resulting in gradients that resemble white noise whereas ... the
gradients in architectures with skip-connections are far more resistant to shattering, decaying
sublinearly"; Sec. 2, Figs. 1-2: nets from one input to one output, 200 ReLU units per layer, gradients
f'(x) at 256 points of [-2, 2]: the 1-layer net's look like brown noise, the 24-layer feedforward net's
like white noise, the 50-layer resnet's (batch norm) like brown noise again; Sec. 3, for two inputs whose
units switch on independently: Theorem 1, feedforward ReLU nets with He weights, gradient correlation
2^-L; Theorem 2, resnets without batch norm, (3/4)^L; Theorem 3, resnets with batch norm, of order
L^(-1/2)). The closed forms are gradlab.theory.shattered_correlation (tested against the masked products
they describe). Section and theorem numbers are those of the arXiv version as we read it: the stored
copies of the paper reach only its abstract and introduction.

What is measured (gradlab.reproduce._shattered): `nets` nets per depth, width 200, 256 grid points,
batch norm on every hidden layer, the grid's batch statistics held fixed; the pair correlation (mean
over all pairs of points of the correlation over nets) and the neighbour correlation (adjacent points).
1. Theorem 1's rate: the least-squares slope of ln(pair correlation) over the feedforward depths
   `ff_fit_depths` is ln(1/2) = -0.693 within `ff_rate_tol` (stated in the toml with the jackknife
   standard error it covers).
2. Theorem 3's rate: the log-log slope of the resnet's pair correlation over `res_fit_depths` is -1/2
   within `res_rate_tol`. This claim FAILS: the measured slope is -1.10 (se 0.11; -1.18 over depths
   8..50, -0.75 over 16..50): the pair mean falls as ~1/L, not 1/sqrt(L). What we found looking into it
   (after the claim was fixed, so not claimed): the pair mean adds up correlations of both signs. The
   first layer maps a 1-D input, and its batch norm centres every unit at x = 0, so all its kinks sit at
   0 and the two halves of the grid have complementary patterns: pairs on one side correlate positively,
   pairs across 0 negatively, and the mean cancels. Pairs 2 or more apart (across 0) alone have
   correlations -0.44, -0.43, -0.31, -0.27, -0.15, -0.11 at depths 2, 4, 8, 16, 32, 50: magnitude
   slope -0.43 over 2..50, near the theorem's -1/2. The neighbour correlation of the same nets barely
   moves (0.997 -> 0.83 over 50 layers), so the resnet's gradients stay brown: the paper's qualitative
   claim holds; its rate for the grid's pairs, as the claim measures it, does not.
3. White noise: the feedforward net at depth `white_depth` (24) has a neighbour correlation within
   `white_tol` of 0 (white noise's lag-1 autocorrelation);
4. Brown noise: the resnet at depth `brown_depth` (50) keeps a neighbour correlation >= 0.5 (brown
   noise's is ~1; 0.5 is the midpoint between white and brown).
Figures: gradients (the paper's Fig. 1: f'(x) of the 1- and 24-layer feedforward nets, the 50-layer
resnet, brown and white noise), autocorrelation (Fig. 2's ACFs of the same) and correlation_by_depth
(both correlations against depth with the theorems' curves).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from gradlab import theory
from gradlab.plots import style
from gradlab.reproduce import _shattered as sh
from gradlab.reproduce.claims import Claim

TITLE = "Balduzzi et al. 2017: The shattered gradients problem"
Array = np.ndarray
SOURCE = "Balduzzi 2017"
COLORS = {"feedforward": style.SEQUENCE[0], "resnet_bn": style.SEQUENCE[2]}
LABELS = {"feedforward": "feedforward + BN", "resnet_bn": "resnet + BN"}


def measure(p: dict[str, Any]) -> dict[tuple[str, int], Array]:
    """(architecture, depth) -> (nets, points) input gradients, for every depth the check uses."""
    depths = {"feedforward": sorted({*p["ff_depths"], *p["ff_fit_depths"], 1, p["white_depth"]}),
              "resnet_bn": sorted({*p["res_depths"], *p["res_fit_depths"], p["brown_depth"]})}  # fmt: skip
    return {(a, L): sh.input_gradients(a, L, p["nets"], p["width"], p["points"], p["seed"], p["dtype"])
            for a, ds in depths.items() for L in ds}  # fmt: skip


def fitted_slope(g: dict[tuple[str, int], Array], architecture: str, depths: list[int], log_depth: bool) -> tuple[float, float]:
    """(slope, jackknife se) of ln(pair correlation) against depth (or ln depth)."""
    x = np.log(depths) if log_depth else np.asarray(depths, float)
    values = np.array([sh.correlation(g[architecture, L], "pair") for L in depths])
    left_out = np.stack([sh.jackknife(g[architecture, L], "pair") for L in depths], axis=1)  # (nets, depths)
    return float(theory.log_slope(values, x)), sh.jackknife_se(theory.log_slope(left_out, x))


def neighbour(g: Array) -> tuple[float, float]:
    """(neighbour correlation, jackknife se)."""
    return sh.correlation(g, "neighbour"), sh.jackknife_se(sh.jackknife(g, "neighbour"))


def claims(p: dict[str, Any], g: dict[tuple[str, int], Array]) -> list[Claim]:
    ff, ff_se = fitted_slope(g, "feedforward", p["ff_fit_depths"], log_depth=False)
    res, res_se = fitted_slope(g, "resnet_bn", p["res_fit_depths"], log_depth=True)
    white, white_se = neighbour(g["feedforward", p["white_depth"]])
    brown, brown_se = neighbour(g["resnet_bn", p["brown_depth"]])
    span = lambda ds: f"depths {min(ds)}..{max(ds)}"  # noqa: E731
    found = [
        Claim.within(f"feedforward + BN: slope of ln(pair gradient correlation) per layer, {span(p['ff_fit_depths'])}",
                     f"{SOURCE} Sec. 3 Theorem 1: correlation 2^-L", math.log(0.5), p["ff_rate_tol"], ff, digits=3),
        Claim.within(f"resnet + BN: slope of ln(pair gradient correlation) against ln L, {span(p['res_fit_depths'])}",
                     f"{SOURCE} Sec. 3 Theorem 3: correlation ~ L^-1/2", -0.5, p["res_rate_tol"], res, digits=3),
        Claim.within(f"feedforward + BN, depth {p['white_depth']}: neighbour gradient correlation (white noise: 0)",
                     f"{SOURCE} Sec. 2 Figs. 1-2: deep feedforward gradients resemble white noise", 0.0, p["white_tol"],
                     white, digits=3),
        Claim.at_least(f"resnet + BN, depth {p['brown_depth']}: neighbour gradient correlation (brown noise: ~1)",
                       f"{SOURCE} Sec. 2 Figs. 1-2: resnet gradients stay brown", 0.5, brown),
    ]  # fmt: skip
    ses = (ff_se, res_se, white_se, brown_se)
    return [_with_se(c, se) for c, se in zip(found, ses)]


def _with_se(claim: Claim, se: float) -> Claim:
    """The claim with its jackknife standard error after the measured value."""
    return replace(claim, measured=f"{claim.measured} se {se:.3f}")


# ---------------------------------------------------------------- figures


def _noises(count: int, points: int, seed: int) -> tuple[Array, Array]:
    """(count, points) brown noise (Gaussian random walks) and white noise (i.i.d. Gaussian)."""
    w = np.random.default_rng([seed, 0xB0]).standard_normal((count, points))
    return np.cumsum(w, axis=1), w


def _examples(p: dict[str, Any], g: dict[tuple[str, int], Array]) -> list[tuple[str, Array]]:
    """The paper's Fig. 1 panels: (title, (nets, points) series)."""
    brown, white = _noises(p["nets"], p["points"], p["seed"])
    return [("1-layer feedforward", g["feedforward", 1]), (f"{p['white_depth']}-layer feedforward", g["feedforward", p["white_depth"]]),
            (f"{p['brown_depth']}-layer resnet", g["resnet_bn", p["brown_depth"]]), ("brown noise", brown),
            ("white noise", white)]  # fmt: skip


@style.styled
def gradients_figure(p: dict[str, Any], g: dict[tuple[str, int], Array]) -> Figure:
    fig, axes = style.figure(1, 5, width=2.2, height=2.0)
    x = sh.grid(p["points"])
    for ax, (title, series) in zip(axes[0], _examples(p, g)):
        first = series[0] - series[0].mean()
        ax.plot(x, first / first.std(), color="0.2", lw=0.8)
        ax.set_title(title)
        ax.set_xlabel("x" if "noise" not in title else "step (scaled)")
    axes[0, 0].set_ylabel("f'(x), centred and scaled over x")
    style.caption(fig, f"Input gradients of one net each (width {p['width']}, ReLU, He, batch norm) on {p['points']} "
                       "points of [-2, 2], beside brown and white noise")  # fmt: skip
    fig.tight_layout()
    return fig


@style.styled
def autocorrelation_figure(p: dict[str, Any], g: dict[tuple[str, int], Array]) -> Figure:
    fig, axes = style.figure(1, 1, width=4.2, height=3.0)
    ax = axes[0, 0]
    for (title, series), color in zip(_examples(p, g), style.SEQUENCE):
        ax.plot(np.arange(p["acf_lags"] + 1), sh.autocorrelation(series, p["acf_lags"]), color=color, label=title)
    ax.axhline(0.0, color="0.7", lw=0.8, ls=":")
    ax.set_xlabel("lag (grid steps of 4/255)")
    ax.set_ylabel("autocorrelation of f'(x) along x")
    ax.legend(frameon=False, fontsize=7)
    style.caption(fig, f"Autocorrelation along the grid, mean over {p['nets']} nets (noises: {p['nets']} draws)")
    fig.tight_layout()
    return fig


@style.styled
def depth_figure(p: dict[str, Any], g: dict[tuple[str, int], Array]) -> Figure:
    fig, axes = style.figure(1, 2, width=3.6, height=3.0)
    for ax, kind in zip(axes[0], ("pair", "neighbour")):
        for arch in COLORS:
            depths = sorted(L for a, L in g if a == arch)
            values = [sh.correlation(g[arch, L], kind) for L in depths]
            ax.plot(depths, np.abs(values), "o-", ms=3, color=COLORS[arch], label=LABELS[arch])
        if kind == "pair":
            ls = np.arange(1, max(L for _, L in g) + 1)
            ax.plot(ls, [theory.shattered_correlation("feedforward", L) for L in ls], **style.THEORY, label="Thm 1: 2^-L")
            ax.plot(ls, [theory.shattered_correlation("resnet_bn", L) for L in ls], **{**style.THEORY, "linestyle": "-."},
                    label="Thm 3 model: ~L^-1/2")  # fmt: skip
            ax.set_ylim(1e-4, 1.5)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("depth L (hidden layers)")
        ax.set_title("all pairs of points" if kind == "pair" else "adjacent points (4/255 apart)")
        ax.legend(frameon=False, fontsize=7)
    axes[0, 0].set_ylabel("|gradient correlation over nets|")
    style.caption(fig, f"Gradient correlation against depth, {p['nets']} nets per depth, with Balduzzi et al.'s theorems")
    fig.tight_layout()
    return fig


def check(params: dict[str, Any], tables: dict[str, pd.DataFrame] | None) -> tuple[list[Claim], dict[str, Figure]]:
    g = measure(params)
    figures = {"gradients": gradients_figure(params, g), "autocorrelation": autocorrelation_figure(params, g),
               "correlation_by_depth": depth_figure(params, g)}  # fmt: skip
    return claims(params, g), figures
