"""Schoenholz, Gilmer, Ganguli and Sohl-Dickstein (2017), "Deep information propagation", ICLR; with
Poole, Lahiri, Raghu, Sohl-Dickstein and Ganguli (2016), "Exponential expressivity in deep neural
networks through transient chaos", NeurIPS.

Mean field theory of a deep MLP at initialisation (W ~ N(0, sigma_w^2 / width), b ~ N(0, sigma_b^2)):
the pre-activations settle at a variance q* and the backpropagated error changes by the same factor
chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2] in every layer, E||delta_l||^2 = chi_1 E||delta_(l+1)||^2
(Schoenholz et al., Sec. 4: the gradient depth scale xi = -1 / ln chi_1). chi_1 < 1 is the ordered
phase (gradients vanish toward the input), chi_1 > 1 the chaotic phase (they explode), and the
critical line chi_1 = 1 in the (sigma_w^2, sigma_b^2) plane separates them.

What is claimed and how gradlab measures it (gradlab.reproduce._meanfield, with the engine):
1. Width 500, depth 60: the slope of ln E||delta_l||^2 over the layers, read from the output toward
   the input, equals ln chi_1 (gradlab.theory.chi1) within 0.01, for tanh at sigma_b^2 = 0.05 and
   sigma_w^2 in {1.0, 1.761, 2.5, 4.0} (ordered, critical, chaotic, deep in chaos with q* = 2.2), for
   ReLU (chi_1 = sigma_w^2 / 2) at sigma_w^2 in {1.5, 2.0, 2.5} and leaky ReLU with slope a = 0.2
   (chi_1 = sigma_w^2 (1 + a^2) / 2; the ReLU formula would be off by ln 1.04 = 0.039) at sigma_w^2
   in {1.5, 1.923, 2.5}: below, at and above the edge of chaos. E is the mean over 16 examples and
   then over K networks (pooled); the fit is least squares over layers 2..57 of 0..59. The first
   layer starts at q* (ReLUs at or beyond the edge, where q* is infinite, at q = 1: their chi_1 does
   not depend on q); dL/d(output) is N(0, 1) per example and unit of the 500-wide identity output.
   Noise: one network's slope has a standard deviation of ~0.005-0.006 (tanh) and ~0.007-0.009
   (ReLUs), so K = 16 networks give a standard error of ~0.0015 (tanh) and ~0.002 (ReLUs): the 0.01
   tolerance is 5-7 standard errors. Each claim's measured text gives the standard error measured in
   the run (the standard deviation of the K per-network slopes over sqrt(K)). The ReLUs' pooled slopes
   sit 0.001-0.0035 above ln chi_1 (16 networks): mean field's O(1/width) correction (the forward and
   the backward pass use the same weights, which mean field treats as independent), inside the tolerance.
2. The critical line: at sigma_b^2 in {0.01, 0.1, 0.2, 0.3} (and 0.05 above), tanh networks at 0.9
   and 1.1 times theory's critical sigma_w^2 (gradlab.theory.critical_sigma_w2; |ln chi_1| = 0.025 to
   0.056 there, 12 or more standard errors): the measured chi_1 is < 1 on the ordered side of the line
   and > 1 on the chaotic side at every point, and ln chi_1 matches theory within 0.01 at each.

All cases share their networks' random draws (common random numbers, see gradlab.reproduce._meanfield),
which makes the 18 cases cost little more than the draws. --quick pools 4 networks per case (standard
errors ~0.003-0.006, the test's tolerance is 0.02). float32 suffices: the largest change of
E||delta||^2 over a network (chi_1^56 at chi_1 = 1.34) is 1.5e7, and the chaotic ReLUs' activations
grow by 1.25^60 = 7e5 in variance, far inside its range.
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
from gradlab.reproduce._meanfield import Case, delta_sq_norms, per_network_log_chi1, pooled_log_chi1
from gradlab.reproduce.claims import Claim

TITLE = "Schoenholz, Gilmer, Ganguli, Sohl-Dickstein 2017: Deep information propagation"

Array = np.ndarray
TOLERANCE = 0.01  # the tolerance on the slope of ln E||delta_l||^2
SLOPE_SOURCE = "Schoenholz 2017 Sec. 4 (xi = -1/ln chi_1); Poole 2016 chi_1"
LINE_SOURCE = "Schoenholz 2017 Sec. 2-3, Poole 2016: order-to-chaos line chi_1 = 1"
PHASE_COLORS = {"ordered": style.SEQUENCE[0], "chaotic": style.SEQUENCE[4], "edge": "0.35"}  # blue, vermillion
PHASE_LABELS = {"ordered": "measured chi_1 < 1", "chaotic": "measured chi_1 > 1",
                "edge": "measured chi_1 = 1 within 2 se"}  # fmt: skip


def main_cases(p: dict[str, Any]) -> list[Case]:
    """The claimed cases at sigma_b2 = p["sigma_b2"]: tanh, ReLU and leaky ReLU at their sigma_w2 lists."""
    b = p["sigma_b2"]
    tanh = [Case("tanh", s, b) for s in p["tanh_sigma_w2"]]
    relu = [Case("relu", s, b) for s in p["relu_sigma_w2"]]
    return tanh + relu + [Case("leaky_relu", s, b, p["leaky_slope"]) for s in p["leaky_sigma_w2"]]


def grid_cases(p: dict[str, Any]) -> list[Case]:
    """tanh at each grid sigma_b2, sigma_w2 = factor x theory's critical sigma_w2 there."""
    critical = {b: theory.critical_sigma_w2("tanh", b) for b in p["grid_sigma_b2"]}
    return [Case("tanh", f * critical[b], b) for b in p["grid_sigma_b2"] for f in p["grid_factors"]]


def _name(case: Case, long: bool = False) -> str:
    """tanh, ReLU, "leaky 0.2" (long: "leaky ReLU, slope 0.2")."""
    if case.activation == "leaky_relu":
        return f"leaky ReLU, slope {case.slope:g}" if long else f"leaky {case.slope:g}"
    return {"relu": "ReLU"}.get(case.activation, case.activation)


# ---------------------------------------------------------------- claims


def slope_claim(case: Case, log_chi: float, se: float) -> Claim:
    """|measured ln chi_1 - theory's| <= TOLERANCE; the measured text carries the standard error."""
    predicted = math.log(case.chi1)
    claim = Claim.within(f"{_name(case)}, sigma_w^2 = {case.sigma_w2:.4g}: slope ln E||delta_l||^2 = ln chi_1",
                         f"{SLOPE_SOURCE}; sigma_b^2 = {case.sigma_b2:g}", predicted, TOLERANCE, log_chi)  # fmt: skip
    return replace(claim, measured=f"{log_chi:+.4f} se {se:.4f}", expected=f"{predicted:+.4f}")


def phase(log_chi: float, se: float) -> str:
    """ordered (ln chi_1 < 0), chaotic (> 0), or edge when within 2 standard errors of 0."""
    if abs(log_chi) < 2.0 * se:
        return "edge"
    return "ordered" if log_chi < 0 else "chaotic"


def grid_claims(cases: list[Case], factors: list[float], log_chi: Array, se: Array) -> list[Claim]:
    """Every grid point on theory's side of the critical line; the worst |measured - theory| of ln chi_1."""
    agree = sum(phase(m, s) == phase(math.log(c.chi1), 0.0) for c, m, s in zip(cases, log_chi, se))
    errors = np.abs(log_chi - [math.log(c.chi1) for c in cases])
    sigma_b2 = sorted({c.sigma_b2 for c in cases})
    grid = f"tanh, {len(sigma_b2)} x {len(factors)} grid"
    source = (f"{LINE_SOURCE}; sigma_b^2 in {{{', '.join(f'{b:g}' for b in sigma_b2)}}}, "
              f"sigma_w^2 = {' / '.join(f'{f:g}' for f in factors)} x critical")  # fmt: skip
    return [
        Claim.count(f"{grid}: chi_1 on theory's side of the critical line", source, len(cases), agree,
                    len(cases), what="points"),
        Claim.at_most(f"{grid}: worst |slope ln E||delta_l||^2 - ln chi_1|", source, TOLERANCE, float(errors.max()),
                      digits=4),
    ]  # fmt: skip


# ---------------------------------------------------------------- figures


def _chi1_panel(ax, cases: list[Case], log_chi: Array, se: Array, sigma_w2_range: tuple[float, float]) -> None:
    """Theory's chi_1 against sigma_w^2 (dashed) and the measured exp(slope) with +-2 se bars."""
    case = cases[0]
    grid = np.linspace(*sigma_w2_range, 200)
    ax.plot(grid, [theory.chi1(case.activation, s, case.sigma_b2, case.slope) for s in grid], **style.THEORY,
            label="mean field chi_1")  # fmt: skip
    x = [c.sigma_w2 for c in cases]
    low, high = np.exp(log_chi) - np.exp(log_chi - 2 * se), np.exp(log_chi + 2 * se) - np.exp(log_chi)
    ax.errorbar(x, np.exp(log_chi), yerr=[low, high], fmt="o", ms=4, color=style.color_of(case.activation),
                label="measured exp(slope) +- 2 se", zorder=3)  # fmt: skip
    ax.axhline(1.0, color="0.7", lw=0.8, ls=":")
    crit = theory.critical_sigma_w2(case.activation, case.sigma_b2, case.slope)
    ax.axvline(crit, color="0.7", lw=0.8, ls=":")
    ax.text(crit, ax.get_ylim()[0], f" critical {crit:.3f}", fontsize=7, color="0.4", va="bottom")
    ax.set_title(f"{_name(case, long=True)}, sigma_b^2 = {case.sigma_b2:g}")
    ax.set_xlabel("sigma_w^2 (weight variance x fan-in)")
    ax.legend(loc="upper left", frameon=False, fontsize=7)


@style.styled
def chi1_figure(p: dict[str, Any], cases: list[Case], log_chi: Array, se: Array) -> Figure:
    """A panel per activation: measured chi_1 = exp(fitted slope) against sigma_w^2, theory dashed."""
    fig, axes = style.figure(1, 3, width=3.4, height=3.0)
    ranges = {"tanh": (0.5, 4.5), "relu": (1.0, 3.0), "leaky_relu": (1.0, 3.0)}
    for ax, activation in zip(axes[0], ranges):
        pick = [i for i, c in enumerate(cases) if c.activation == activation]
        _chi1_panel(ax, [cases[i] for i in pick], log_chi[pick], se[pick], ranges[activation])
    axes[0, 0].set_ylabel("chi_1 = E||delta_l||^2 / E||delta_(l+1)||^2")
    style.caption(fig, f"chi_1 measured as exp(slope of ln E||delta_l||^2), width {p['width']}, depth {p['depth']}, "
                       f"{p['networks']} networks x {p['batch']} examples, against mean field (dashed)")  # fmt: skip
    fig.tight_layout()
    return fig


@style.styled
def critical_line_figure(p: dict[str, Any], cases: list[Case], log_chi: Array, se: Array) -> Figure:
    """tanh's critical line sigma_b^2 against sigma_w^2 (dashed) and the measured points by phase."""
    fig, axes = style.figure(1, 1, width=6.2, height=3.4)
    ax = axes[0, 0]
    top = 1.15 * max(c.sigma_b2 for c in cases)
    sigma_b2 = np.linspace(0.0, top, 80)
    ax.plot([theory.critical_sigma_w2("tanh", b) for b in sigma_b2], sigma_b2, **style.THEORY,
            label="critical line chi_1 = 1 (mean field)")  # fmt: skip
    shown = set()
    for case, m, s in zip(cases, log_chi, se):
        kind = phase(m, s)
        label = None if kind in shown else PHASE_LABELS[kind]
        ax.plot(case.sigma_w2, case.sigma_b2, "o", ms=6, color=PHASE_COLORS[kind], zorder=3,
                mfc="none" if kind == "edge" else None, label=label)  # fmt: skip
        shown.add(kind)
    ax.text(0.03, 0.97, "ordered:\ngradients vanish", transform=ax.transAxes, fontsize=7, color=PHASE_COLORS["ordered"],
            va="top")  # fmt: skip
    ax.text(0.97, 0.6, "chaotic:\ngradients explode", transform=ax.transAxes, fontsize=7, color=PHASE_COLORS["chaotic"],
            ha="right")  # fmt: skip
    ax.set_xlim(0.8, 1.05 * max(c.sigma_w2 for c in cases))
    ax.set_ylim(0.0, top)
    ax.set_xlabel("sigma_w^2 (weight variance x fan-in)")
    ax.set_ylabel("sigma_b^2 (bias variance)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=7)
    style.caption(fig, f"tanh: order-to-chaos line and measured chi_1 (width {p['width']}, depth {p['depth']}, "
                       f"{p['networks']} networks per point)")  # fmt: skip
    fig.tight_layout()
    return fig


@style.styled
def delta_figure(p: dict[str, Any], cases: list[Case], sq: Array) -> Figure:
    """A panel per activation: pooled E||delta_l||^2 / E||delta_(depth-3)||^2 against l (log y), a line
    per sigma_w^2, with chi_1^(depth-3-l) dashed."""
    fig, axes = style.figure(1, 3, width=3.4, height=3.0)
    depth = sq.shape[-1]
    layers = np.arange(depth)
    top = depth - 3  # the last layer of the fit
    for ax, activation in zip(axes[0], ("tanh", "relu", "leaky_relu")):
        pick = [i for i, c in enumerate(cases) if c.activation == activation]
        for j, i in enumerate(pick):
            pooled = sq[i].mean(axis=0)
            color = style.SEQUENCE[j]
            ax.plot(layers, pooled / pooled[top], color=color, label=f"sigma_w^2 = {cases[i].sigma_w2:.4g}")
            ax.plot(layers, np.power(cases[i].chi1, top - layers), **{**style.THEORY, "linewidth": 0.9})
        ax.plot([], [], **style.THEORY, label="chi_1^(l_top - l)")
        ax.set_yscale("log")
        ax.set_xlabel("layer l (0 = input side)")
        ax.set_title(f"{_name(cases[pick[0]], long=True)}, sigma_b^2 = {cases[pick[0]].sigma_b2:g}")
        ax.legend(loc="best", frameon=False, fontsize=7)
    axes[0, 0].set_ylabel(f"E||delta_l||^2 / E||delta_{top}||^2")
    style.caption(fig, f"Backpropagated error by layer at initialisation, sigma_b^2 = {p['sigma_b2']:g}: "
                       f"{p['networks']} networks pooled (solid), mean field (dashed)")  # fmt: skip
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- the check


def measure(p: dict[str, Any], cases: list[Case]) -> tuple[Array, Array, Array]:
    """(sq (cases, networks, depth), pooled ln chi_1 (cases,), its standard error (cases,))."""
    sq = delta_sq_norms(cases, p["networks"], p["width"], p["depth"], p["batch"], p["seed"], p["dtype"])
    k = p["networks"]
    se = per_network_log_chi1(sq).std(axis=1, ddof=1) / math.sqrt(k) if k > 1 else np.full(len(cases), np.nan)
    return sq, pooled_log_chi1(sq), se


def check(params: dict[str, Any], tables: dict[str, pd.DataFrame] | None) -> tuple[list[Claim], dict[str, Figure]]:
    main, grid = main_cases(params), grid_cases(params)
    sq, log_chi, se = measure(params, main + grid)
    n = len(main)
    found = [slope_claim(c, m, s) for c, m, s in zip(main, log_chi[:n], se[:n])]
    found += grid_claims(grid, params["grid_factors"], log_chi[n:], se[n:])
    tanh = [i for i, c in enumerate(main + grid) if c.activation == "tanh"]
    figures = {
        "chi1_vs_sigma_w2": chi1_figure(params, main, log_chi[:n], se[:n]),
        "critical_line": critical_line_figure(params, [(main + grid)[i] for i in tanh], log_chi[tanh], se[tanh]),
        "delta_by_layer": delta_figure(params, main, sq[:n]),
    }
    return found, figures
