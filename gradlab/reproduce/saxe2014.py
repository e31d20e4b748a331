"""Saxe, McClelland and Ganguli (2014), "Exact solutions to the nonlinear dynamics of learning in deep
linear neural networks", ICLR 2014 (arXiv:1312.6120).

The paper's statements (abstract: "as the depth of a network approaches infinity, learning speed can
nevertheless remain finite: for a special class of initial conditions on the weights, very deep networks
incur only a finite, depth independent, delay in learning speed relative to shallow networks ... scaled
random Gaussian initializations cannot ... random orthogonal initial conditions on weights that, like
unsupervised pre-training, enjoys depth independent learning times"; Sec. 2: a one-hidden-layer linear net
from decoupled, balanced initial conditions learns each mode of the input-output correlation
Sigma_yx = U S V^T on its own, tau du/dt = 2 u (s - u), with the sigmoidal solution
u(t) = s e^(2st/tau) / (e^(2st/tau) - 1 + s/u0) and the time t = tau/(2s) ln(uf (s - u0) / (u0 (s - uf)))
to go from u0 to uf: gradlab.theory.saxe_mode_strength and saxe_learning_time, tested against the engine).
Section numbers are those of the arXiv version as we read it: the stored copies reach only the abstract.

What is measured (the engine's MLP with the identity activation, full-batch gradient descent on the mse
loss, the ensemble axis carrying `nets` independent nets per depth and init):
1-2. Depth: a linear teacher y = T x, T = U diag(s) V^T (n_out x n_in, s evenly spaced from s_max down to
   s_min), P whitened centred inputs (X^T X / P = I, so the biases never move); D weight layers
   n_in -> hidden ... -> n_out for D in `depths`, initialised either orthogonal (init="orthogonal", gain 1)
   or scaled Gaussian (init="mean_field", sigma_w^2 = 1: Var W = 1 / fan_in, which keeps E||W x||^2 =
   ||x||^2); per-layer learning rate lr / D, so that the end-to-end map moves at a depth-free speed (the
   deep mode equation has a factor D - 1 in front, Sec. 3). Steps to criterion: the first step whose loss
   is below `criterion` x 1/2 ||T||_F^2 (the loss of the zero map).
   Claim 1 (orthogonal, the paper's "depth independent"): the least-squares slope of ln(mean steps)
   against ln D over the depths >= `plateau_from` is 0, within `flat_tol` (~3 standard errors; the
   standard error from the nets' spread, propagated). Claim 2 (Gaussian, "cannot"): the mean steps grow
   at every doubling of depth from `plateau_from` on.
3. Mode dynamics: the one-hidden-layer net n -> n -> n from decoupled balanced weights (W21 = sqrt(u0) V^T,
   W32 = sqrt(u0) U), gradient descent at `mode_lr`: every mode's strength u_a(t) = u_a^T W32 W21 v_a
   (t = lr x step, tau = 1) follows the analytic sigmoid within mode_lr x s_a (relative to s_a): gradient
   descent is the Euler step of the flow, first order in lr (measured ~0.75 lr s; tests/test_theory.py
   checks that halving lr halves the gap).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from gradlab import theory
from gradlab.nn import MLP, losses, optim
from gradlab.plots import style
from gradlab.reproduce.claims import Claim

TITLE = "Saxe, McClelland, Ganguli 2014: Exact solutions to the dynamics of learning in deep linear networks"
Array = np.ndarray
INITS = {"orthogonal": dict(init="orthogonal"), "gaussian": dict(init="mean_field", sigma_w2=1.0)}
COLORS = {"orthogonal": style.SEQUENCE[2], "gaussian": style.SEQUENCE[4]}
SOURCE = "Saxe 2014"


def whitened_inputs(rng: np.random.Generator, p: int, n: int) -> Array:
    """(p, n) inputs with X^T X / p = I and zero mean over the p examples (needs p > n)."""
    q, _ = np.linalg.qr(np.column_stack([np.ones(p), rng.standard_normal((p, n))]))
    return math.sqrt(p) * q[:, 1:]


def teacher(rng: np.random.Generator, n_in: int, n_out: int, s: Array) -> tuple[Array, Array, Array]:
    """(T, U, V): T = U diag(s) V^T of shape (n_out, n_in), U (n_out, k), V (n_in, k), k = len(s)."""
    u, _ = np.linalg.qr(rng.standard_normal((n_out, len(s))))
    v, _ = np.linalg.qr(rng.standard_normal((n_in, len(s))))
    return u @ np.diag(s) @ v.T, u, v


def steps_to_criterion(p: dict[str, Any], init: str, depth: int) -> tuple[Array, Array]:
    """((nets,) first step with loss <= criterion x 1/2 ||T||^2, -1 if never within max_steps; the mean
    loss over nets per step)."""
    rng = np.random.default_rng([p["seed"], 0])
    s = np.linspace(p["s_max"], p["s_min"], p["n_out"])
    t, _, _ = teacher(rng, p["n_in"], p["n_out"], s)
    x = whitened_inputs(rng, p["examples"], p["n_in"])
    y = x @ t.T
    rngs = [np.random.default_rng([p["seed"], depth, r]) for r in range(p["nets"])]
    sizes = [p["n_in"]] + [p["hidden"]] * (depth - 1) + [p["n_out"]]
    net = MLP(sizes, "identity", rng=rngs, ensemble=p["nets"], **INITS[init])
    opt = optim.SGD(net.params, p["lr"] / depth)
    target = p["criterion"] * 0.5 * float(np.sum(t * t))
    hit, curve = np.full(p["nets"], -1), []
    for step in range(p["max_steps"] + 1):
        out, cache = net.forward(x)
        loss, dout = losses.mse(out, y, lead=1)
        curve.append(float(np.mean(loss)))
        hit[(loss <= target) & (hit < 0)] = step
        if (hit >= 0).all() or step == p["max_steps"]:
            break
        opt.step(net.backward(dout, cache, input_grad=False).params)
    return hit, np.array(curve)


def mode_dynamics(p: dict[str, Any]) -> tuple[Array, Array, Array]:
    """(t (steps + 1,), measured u (steps + 1, n), s (n,)) for the decoupled one-hidden-layer net."""
    s = np.asarray(p["mode_s"], dtype=np.float64)
    n, rng = len(s), np.random.default_rng([p["seed"], 1])
    t, u, v = teacher(rng, n, n, s)
    x = whitened_inputs(rng, 2 * n, n)
    net = MLP([n, n, n], "identity", init="identity", dtype="float64")
    net.params["layers.0.weight"][...] = math.sqrt(p["mode_u0"]) * v.T  # W21 = sqrt(u0) V^T
    net.params["layers.1.weight"][...] = math.sqrt(p["mode_u0"]) * u  # W32 = sqrt(u0) U
    opt, strengths = optim.SGD(net.params, p["mode_lr"]), []
    for _ in range(int(round(p["mode_t"] / p["mode_lr"])) + 1):
        w = net.params["layers.1.weight"] @ net.params["layers.0.weight"]
        strengths.append(np.einsum("ia,ij,ja->a", u, w, v))  # u_a^T W32 W21 v_a
        out, cache = net.forward(x)
        _, dout = losses.mse(out, x @ t.T)
        opt.step(net.backward(dout, cache, input_grad=False).params)
    return p["mode_lr"] * np.arange(len(strengths)), np.array(strengths), s


# ---------------------------------------------------------------- claims


def log_log_slope(steps: dict[int, Array], depths: list[int]) -> tuple[float, float]:
    """(slope of ln(mean steps) against ln depth, its standard error from the nets' spread)."""
    x = np.log(depths) - np.mean(np.log(depths))
    means = np.array([steps[d].mean() for d in depths])
    se_log = np.array([steps[d].std(ddof=1) / math.sqrt(len(steps[d])) for d in depths]) / means  # se of ln mean
    return float(np.log(means) @ x / (x @ x)), float(math.sqrt(np.sum((x * se_log) ** 2)) / (x @ x))


def depth_claims(p: dict[str, Any], steps: dict[tuple[str, int], Array]) -> list[Claim]:
    deep = [d for d in p["depths"] if d >= p["plateau_from"]]
    orth = {d: steps["orthogonal", d] for d in deep}
    never = sum(int((steps["gaussian", d] < 0).sum()) for d in deep)  # Gaussian nets still above the criterion
    slope, se = log_log_slope(orth, deep) if all((v >= 0).all() for v in orth.values()) else (math.nan, math.nan)
    flat = Claim.within(f"orthogonal init: slope of ln(steps to criterion) against ln depth, depths {deep[0]}..{deep[-1]}",
                        f"{SOURCE} abstract, Sec. 4: depth-independent learning time", 0.0, p["flat_tol"], slope, digits=3)  # fmt: skip
    means = [steps["gaussian", d].mean() if (steps["gaussian", d] >= 0).all() else math.inf for d in deep]
    grows = int(sum(b > a for a, b in zip(means, means[1:])))
    detail = " -> ".join(f"{m:.0f}" for m in means)
    return [
        Claim(flat.claim, flat.source, flat.expected, flat.tolerance, f"{slope:+.3f} se {se:.3f}", flat.passed, slope),
        Claim.count(f"scaled Gaussian init: mean steps to criterion grow at each doubling of depth from {deep[0]}",
                    f"{SOURCE} abstract, Sec. 4: scaled Gaussian init cannot", len(deep) - 1, grows, len(deep) - 1,
                    what="doublings", detail=f"steps {detail}" + (f"; {never} nets never reached it" if never else "")),
    ]  # fmt: skip


def mode_claims(p: dict[str, Any], t: Array, u: Array, s: Array) -> list[Claim]:
    want = np.stack([theory.saxe_mode_strength(t, si, p["mode_u0"]) for si in s], axis=1)
    gap = np.abs(u - want).max(axis=0) / s
    bound = p["mode_lr"] * s
    worst = int(np.argmax(gap / bound))
    return [Claim(f"one hidden layer, decoupled init u0 = {p['mode_u0']:g}: every mode's u(t) on the analytic sigmoid "
                  f"(max |u - u_theory| / s; worst mode s = {s[worst]:g})",
                  f"{SOURCE} Sec. 2: u(t) = s e^(2st) / (e^(2st) - 1 + s/u0)", "0", f"<= lr s = {bound[worst]:.3g}",
                  f"{gap[worst]:.4f}", bool(np.all(gap <= bound)), float(gap[worst]))]  # fmt: skip


# ---------------------------------------------------------------- figures


@style.styled
def depth_figure(p: dict[str, Any], steps: dict[tuple[str, int], Array]) -> Figure:
    fig, axes = style.figure(1, 1, width=4.2, height=3.0)
    ax = axes[0, 0]
    for init, color in COLORS.items():
        d = np.array(p["depths"])
        runs = [steps[init, k].astype(float) for k in p["depths"]]
        runs = [np.where(r < 0, np.nan, r) for r in runs]
        med = [np.nanmedian(r) for r in runs]
        style.fill_band(ax, d, [np.nanpercentile(r, 25) for r in runs], [np.nanpercentile(r, 75) for r in runs], color)
        ax.plot(d, med, "o-", ms=4, color=color, label=f"{init} init")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("depth D (weight layers)")
    ax.set_ylabel("steps to criterion (lr / D per layer)")
    ax.legend(frameon=False)
    style.caption(fig, f"Deep linear nets on a linear teacher: median and quartiles over {p['nets']} nets, loss below "
                       f"{p['criterion']:g} of the zero map's")  # fmt: skip
    fig.tight_layout()
    return fig


@style.styled
def mode_figure(p: dict[str, Any], t: Array, u: Array, s: Array) -> Figure:
    fig, axes = style.figure(1, 1, width=4.2, height=3.0)
    ax = axes[0, 0]
    every = max(1, len(t) // 40)
    for i, si in enumerate(s):
        color = style.SEQUENCE[i % len(style.SEQUENCE)]
        ax.plot(t[::every], u[::every, i], "o", ms=3, color=color, label=f"s = {si:g} (gradient descent)")
        ax.plot(t, theory.saxe_mode_strength(t, si, p["mode_u0"]), **style.THEORY)
    ax.plot([], [], **style.THEORY, label="Saxe et al.'s u(t)")
    ax.set_xlabel("t = lr x step (tau = 1)")
    ax.set_ylabel("mode strength u_a = u_a^T W32 W21 v_a")
    ax.legend(loc="center right", frameon=False, fontsize=7)
    style.caption(fig, f"One hidden layer, decoupled init u0 = {p['mode_u0']:g}, lr {p['mode_lr']:g}")
    fig.tight_layout()
    return fig


def check(params: dict[str, Any], tables: dict[str, pd.DataFrame] | None) -> tuple[list[Claim], dict[str, Figure]]:
    steps = {(init, d): steps_to_criterion(params, init, d)[0] for init in INITS for d in params["depths"]}
    t, u, s = mode_dynamics(params)
    found = depth_claims(params, steps) + mode_claims(params, t, u, s)
    return found, {"steps_by_depth": depth_figure(params, steps), "mode_dynamics": mode_figure(params, t, u, s)}
