"""Pascanu, Mikolov and Bengio (2013), "On the difficulty of training recurrent neural networks", ICML.

The paper's analysis of backpropagation through time: with the loss on the last step, the gradient
reaching step t is dL/dh_t = prod_(s>t) (W_hh^T diag(phi'(z_s))) dL/dh_(T-1), so its norm changes by
at most gamma ||W_hh||_2 per step back (gamma = sup |phi'|: 1 for tanh, 1/4 for sigmoid). What is
claimed and how gradlab measures it (T = 50, H = 50, adding-problem inputs, MSE on the last step,
network k built from seed k exactly as the training runs build theirs):

1. Linear RNN, W_hh = rho Q with Q orthogonal (section 2.1, the linear case): ||W_hh^T v|| = rho ||v||
   for every v, so ||dL/dh_t|| = rho ||dL/dh_(t+1)|| exactly. Measured: every example's per-step ratio
   ||dL/dh_t|| / ||dL/dh_(t+1)||; the claim is on the one farthest from rho (1% tolerance); it equals
   rho to rounding (the test holds it to 1e-10).
2. The bound (section 2.1, eqs. 6-7): for gamma ||W_hh||_2 < 1, ||dL/dh_t|| <= (gamma ||W_hh||_2)^(T-1-t)
   ||dL/dh_(T-1)|| for every example and step (gradlab.theory.pascanu_bound). Measured: tanh and sigmoid
   RNNs with an orthogonal W_hh (||W_hh^T v|| = ||W_hh||_2 ||v||: the bound is nearly attained where
   tanh' ~ 1) and a Gaussian one (most directions shrink by about half of ||W_hh||_2), each rescaled to
   gamma ||W_hh||_2 in {0.5, 0.9, 0.99}; the claim is on the largest ratio ||dL/dh_t|| / (bound_t
   ||dL/dh_(T-1)||) over all examples, networks and t < T-1 (t = T-1 is 1 by construction): <= 1.
3. Exploding and vanishing at initialisation (section 2.1, on the adding problem of section 4.1): a
   tanh RNN with W_hh ~ N(0, sigma_w^2 / H) and zero biases. "The fitted per-step factor" r: per network,
   dh_norm(t) is the batch mean over the examples of ||dL/dh_t|| (the timesteps table's dh_norm), b the
   least-squares slope of ln dh_norm(t) against the steps back k = T-1-t (all t), and r = exp(b)
   averaged geometrically over the networks, so that dh_norm(t-1) ~ r dh_norm(t): r > 1 grows toward
   the past (exploding), r < 1 shrinks. (||W_hh||_2 ~ 2 sigma_w > 1 = 1/gamma in both cases, so the
   bound decides neither.) The prediction is the RNN's mean field (gradlab.theory.rnn_step_factor):
   sqrt(chi_1) at the bias variance Var[W_ih] (E[x_0^2] + E[x_1^2]) = (1/6)(1/3 + 2/T), the inputs'
   contribution to each pre-activation: 0.649 for sigma_w^2 = 0.5 and 1.157 for 4 (without inputs,
   0.707 and 1.167). Tolerance: 3 standard errors of r, from the networks' scatter of ln r (16
   networks). Claimed at H = 50 (the training runs' width) and H = 400: mean field is the H -> infinity
   limit, and its error at finite H is O(1/H).
   Measured: H = 50 gives 0.677 and 1.127, 3.5 standard errors from mean field each (FAIL: the O(1/H)
   error, about 3%, exceeds the 16 networks' standard error of about 1%); H = 400 gives 0.652 and 1.156
   (within 3 standard errors). At H = 200 (8 networks) 0.652 and 1.150: the gap shrinks as 1/H.
4. Gradient clipping (section 3.2, Algorithm 1): the training runs of experiments/pascanu2013.toml,
   sigma_w^2 = 4, plain SGD (lr 0.1, batch 20, 1500 steps), with and without norm clipping at 1, seeds
   0..19 (20 per arm, so that no single run decides a count). A run diverges when its loss or gradient
   norm overflows to inf/NaN (status "diverged" in the runs table). Claimed: most (at least 11 of 20) of
   the unclipped runs diverge; all 20 clipped runs stay finite; and all 20 clipped runs learn: their
   held-out final loss (512 sequences) is below the best constant prediction's, baseline_loss = 1/12
   (MSE / 2 = Var[x1 + x2] / 2).
   Measured: 16 of 20 unclipped runs diverge on a 2-core AMD EPYC (steps 212-346; seeds 9, 10, 16, 17
   survive), 17 of 20 on a 2-core Intel Xeon (steps 167-574; seeds 2, 10, 16 survive). Which seeds diverge
   is chaotic: the two CPUs' BLAS kernels round the first loss differently by 1e-14 relative, the
   exploding updates grow that by ~1e3 a step, and from step 10 on the runs are different runs. A count
   is a draw of a share near 0.8, so the claim asks for a majority, not the 80% once measured (with a
   share of 0.8, 10 of 20 or fewer diverge with probability 0.003, 15 or fewer with probability 0.37).
   The first gradients have norms of 25-570 (clipping scales them to 1), so the unclipped updates throw
   the weights far out within a few dozen steps and the loss then grows geometrically until it
   overflows float64. All 20 clipped runs stay finite, and none learns (FAIL): final loss 1.08-1.95 x the
   baseline (1.09-1.76 on the Xeon). Tried outside the config
   (6 seeds, 3000 steps, clipped SGD): lr 0.1 ends at test MSE 0.18-0.25 (baseline 0.167), lr 0.03 at
   0.166-0.18 and lr 0.01 at 0.17-0.46: the clipped tanh RNN at sigma_w^2 = 4 reaches the constant
   prediction at best; the paper's clipped SGD runs trained for far longer (millions of sequences).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from gradlab import theory
from gradlab.nn import RNN, losses
from gradlab.plots import style
from gradlab.reproduce.claims import Claim
from gradlab.tasks.adding import Adding

TITLE = "Pascanu, Mikolov, Bengio 2013: On the difficulty of training recurrent neural networks"

Array = np.ndarray
RHO_RTOL = 0.01  # the tolerance on the linear RNN's per-step factor
DIVERGED_SHARE = 0.5  # more than half of the seeds (11 of 20) diverge unclipped
SE_TOLERANCE = 3.0  # standard errors of the per-step factor over the networks
CLIP_COLORS = {"none": style.SEQUENCE[4], "norm": style.SEQUENCE[0]}  # vermillion unclipped, blue clipped
LOSS_TOP = 1e4  # the loss panel's top: the unclipped losses grow to ~1e306 before they overflow
SIGMA_COLORS = [style.SEQUENCE[2], style.SEQUENCE[4]]  # green (vanishing), vermillion (exploding)


# ---------------------------------------------------------------- measurement at initialisation


def adding_rnn(activation: str, seed: int, hidden: int, **recurrent: Any) -> RNN:
    """The training runs' RNN (gradlab.train.build_model): input 2, hidden H, output 1 on the last step;
    W_ih and the readout Glorot's standard U[-1/sqrt(fan_in), 1/sqrt(fan_in)], zero biases, float64,
    weights from Generator([seed, 0]); `recurrent` sets W_hh (recurrent_init, sigma_w2, gain, spectral_norm)."""
    rng = np.random.default_rng([seed, 0])
    return RNN(Adding.input_size, hidden, Adding.output_size, activation, output="last", rng=rng, **recurrent)


def dh_norms(rnn: RNN, T: int, examples: int, seed: int) -> Array:
    """(N, T) per-example ||dL/dh_t|| for the adding problem's MSE on the last step, N = examples
    sequences of length T from Generator([seed, 1])."""
    x, y = Adding(T).sample(np.random.default_rng([seed, 1]), examples)
    out, cache = rnn.forward(x, trace=True)
    _, dout = losses.mse(out, y)  # dL/dy on the last step
    dh = rnn.backward(dout, cache, input_grad=False).trace.dh  # (N, T, H): dL/dh_t through the recurrence
    return np.sqrt(np.einsum("nth,nth->nt", dh, dh))


def per_step_factor(dh_norm: Array) -> Array:
    """r = exp(b), b the least-squares slope of ln dh_norm(t) against k = T-1-t (gradlab.theory.log_slope);
    (..., T) -> (...).

    dh_norm = c r^(T-1-t) gives r exactly; r > 1: the gradient grows toward the past."""
    T = dh_norm.shape[-1]
    return np.exp(theory.log_slope(dh_norm, np.arange(T - 1, -1, -1)))  # k: steps back from the loss


def linear_ratios(rho: float, p: dict[str, Any]) -> Array:
    """(networks, N, T-1): ||dL/dh_t|| / ||dL/dh_(t+1)|| of linear RNNs with W_hh = rho Q (Q orthogonal)."""
    ratios = []
    for seed in range(p["networks"]):
        rnn = adding_rnn("identity", seed, p["hidden"], recurrent_init="orthogonal", gain=rho)
        dh = dh_norms(rnn, p["T"], p["examples"], seed)
        ratios.append(dh[:, :-1] / dh[:, 1:])
    return np.stack(ratios)


def bound_ratios(activation: str, recurrent_init: str, gamma_norm: float, p: dict[str, Any]) -> tuple[Array, Array]:
    """(networks, N, T) ratios ||dL/dh_t|| / ||dL/dh_(T-1)|| and (networks, T) Pascanu's factors
    (gamma ||W_hh||_2)^(T-1-t), for RNNs whose W_hh (drawn by recurrent_init) is rescaled to
    gamma ||W_hh||_2 = gamma_norm."""
    ratios, bounds = [], []
    spectral_norm = gamma_norm / theory.gamma(activation)
    for seed in range(p["networks"]):
        rnn = adding_rnn(activation, seed, p["hidden"], recurrent_init=recurrent_init, spectral_norm=spectral_norm)
        dh = dh_norms(rnn, p["T"], p["examples"], seed)
        ratios.append(dh / dh[:, -1:])
        bounds.append(theory.pascanu_bound(rnn.params["weight_hh"], activation, p["T"]))
    return np.stack(ratios), np.stack(bounds)


def init_gradients(sigma_w2: float, p: dict[str, Any]) -> tuple[Array, Array]:
    """(networks, T) dh_norm (batch mean of ||dL/dh_t||) of tanh RNNs with W_hh ~ N(0, sigma_w2 / H) at
    initialisation, and (networks,) ||W_hh||_2 of each (= gamma ||W_hh||_2, gamma = 1 for tanh)."""
    curves, norms = [], []
    for seed in range(p["networks"]):
        rnn = adding_rnn("tanh", seed, p["hidden"], recurrent_init="mean_field", sigma_w2=sigma_w2)
        curves.append(dh_norms(rnn, p["T"], p["examples"], seed).mean(axis=0))  # (T,) the batch mean
        norms.append(np.linalg.norm(rnn.params["weight_hh"], 2))
    return np.stack(curves), np.array(norms)


def geometric_mean(x: Array, axis: int = 0) -> Array:
    return np.exp(np.mean(np.log(x), axis=axis))


# ---------------------------------------------------------------- claims


def linear_claims(p: dict[str, Any]) -> tuple[list[Claim], dict[float, Array]]:
    """One claim per rho: the per-step ratio farthest from rho, within 1%. Also the (networks, N, T-1) ratios."""
    found, measured = [], {}
    for rho in p["rhos"]:
        ratios = linear_ratios(rho, p)
        worst = ratios.flat[np.argmax(np.abs(ratios - rho))]
        found.append(Claim.relative(
            f"linear RNN, W_hh = {rho:g} x orthogonal: dh_norm scales by rho per step (worst step)",
            "Sec. 2.1 (linear case)", rho, RHO_RTOL, float(worst), digits=6,
        ))  # fmt: skip
        measured[rho] = ratios
    return found, measured


def bound_claims(p: dict[str, Any]) -> tuple[list[Claim], dict[tuple[str, str, float], tuple[Array, Array]]]:
    """One claim per activation: the largest ||dh_t|| / (bound_t ||dh_(T-1)||) over examples, networks,
    t < T-1, the W_hh kinds (p["bound_inits"]) and gamma ||W_hh||_2 values (p["bound_norms"]), at most 1."""
    found, measured = [], {}
    for activation in ("tanh", "sigmoid"):
        worst, pairs, above = 0.0, 0, 0
        for recurrent_init in p["bound_inits"]:
            for gamma_norm in p["bound_norms"]:
                ratios, bounds = bound_ratios(activation, recurrent_init, gamma_norm, p)
                relative = (ratios / bounds[:, None, :])[..., :-1]  # t = T-1 is 1 by construction
                worst = max(worst, float(relative.max()))
                pairs, above = pairs + relative.size, above + int((relative > 1.0).sum())
                measured[(activation, recurrent_init, gamma_norm)] = (ratios, bounds)
        norms = ", ".join(f"{g:g}" for g in p["bound_norms"])
        found.append(Claim(
            f"{activation} RNN, gamma norm(W_hh)_2 in {{{norms}}}: norm(dL/dh_t) <= bound, every example and step",
            "Sec. 2.1, eqs. (6)-(7)", "max ratio <= 1", "-", f"{worst:.4f}; {above} of {pairs} > 1",
            worst <= 1.0, worst,
        ))  # fmt: skip
    return found, measured


def predicted_step_factor(sigma_w2: float, hidden: int, T: int) -> float:
    """Mean field's per-step factor sqrt(chi_1) of the adding RNN (tanh, W_hh ~ N(0, sigma_w2 / H)): the
    input term W_ih x_t as the bias, Var[W_ih] = 1/6 (standard init, fan_in 2) times E[x_0^2] + E[x_1^2] =
    1/3 (values U[0, 1]) + 2/T (two markers in T steps)."""
    var_ih = theory.init_variance("standard", Adding.input_size, hidden)
    return theory.rnn_step_factor("tanh", sigma_w2, theory.rnn_input_variance(var_ih, [1 / 3, 2 / T]))


def init_claims(p: dict[str, Any]) -> tuple[list[Claim], dict[float, tuple[Array, Array]]]:
    """Per width H in p["widths"] and sigma_w2: the fitted per-step factor r (geometric mean over the
    networks) against mean field's sqrt(chi_1), within SE_TOLERANCE standard errors (the networks' scatter
    of ln r, carried to r). Also the measurements at the first width (the figure's)."""
    found, measured = [], {}
    for hidden in p["widths"]:
        for sigma_w2 in p["sigma_w2"]:
            curves, norms = init_gradients(sigma_w2, {**p, "hidden": hidden})
            logs = np.log(per_step_factor(curves))  # (networks,)
            r, se = float(np.exp(logs.mean())), float(np.exp(logs.mean()) * logs.std(ddof=1) / math.sqrt(logs.size))
            expected = predicted_step_factor(sigma_w2, hidden, p["T"])
            word = "exploding" if expected > 1 else "vanishing"
            found.append(Claim.within(
                f"tanh RNN at init, H = {hidden}, sigma_w^2 = {sigma_w2:g}: per-step factor of dh_norm = mean field ({word})",
                "Sec. 2.1; mean field sqrt(chi_1), inputs as the bias", expected, SE_TOLERANCE * se, r,
            ))  # fmt: skip
            if hidden == p["widths"][0]:
                measured[sigma_w2] = (curves, norms)
    return found, measured


def training_claims(tables: dict[str, pd.DataFrame]) -> list[Claim]:
    """Unclipped: more than half of the seeds diverge; norm-clipped: every seed finishes with a finite loss,
    and every seed learns (its held-out final loss below the best constant's, baseline_loss)."""
    runs = tables["runs"]
    unclipped, clipped = runs[runs["clip_mode"] == "none"], runs[runs["clip_mode"] == "norm"]
    diverged = int((unclipped["status"] == "diverged").sum())
    ok = (clipped["status"] == "ok") & np.isfinite(clipped["final_loss"])
    learned = ok & (clipped["final_loss"] < clipped["baseline_loss"])
    steps, clip, sigma_w2 = int(runs["steps"].iloc[0]), float(clipped["clip"].iloc[0]), float(runs["sigma_w2"].iloc[0])
    ratio = clipped["final_loss"] / clipped["baseline_loss"]
    return [
        Claim.count(f"SGD, sigma_w^2 = {sigma_w2:g}, no clipping: diverges within {steps} steps", "Sec. 3.2; Sec. 4.1",
                    math.floor(DIVERGED_SHARE * len(unclipped)) + 1, diverged, len(unclipped)),
        Claim.count(f"SGD, sigma_w^2 = {sigma_w2:g}, norm clipping at {clip:g}: finite for {steps} steps",
                    "Sec. 3.2, Algorithm 1", len(clipped), int(ok.sum()), len(clipped)),
        Claim.count(f"SGD, sigma_w^2 = {sigma_w2:g}, norm clipping at {clip:g}: learns (final loss < baseline)",
                    "Sec. 3.2, Algorithm 1; Sec. 4.1", len(clipped), int(learned.sum()), len(clipped),
                    detail=f"final / baseline {ratio.min():.2f}-{ratio.max():.2f}"),
    ]  # fmt: skip


# ---------------------------------------------------------------- figures


def _clipped_to(values: Array, low: float, high: float) -> Array:
    """values with those outside [low, high] (a log axis' limits) replaced by NaN, so that a line
    leaving the plot does not stretch the autoscaling (or overflow it)."""
    return np.where((values >= low) & (values <= high), values, np.nan)


def _linear_panel(ax, T: int, linear: dict[float, Array]) -> None:
    t = np.arange(T)
    for i, (rho, ratios) in enumerate(linear.items()):
        # ||dh_t|| / ||dh_(T-1)|| = the product of the per-step ratios from t to T-2 (first network, example)
        curve = np.append(np.cumprod(ratios[0, 0, ::-1])[::-1], 1.0)
        ax.plot(t, curve, "o", ms=3, color=style.SEQUENCE[i], label=f"rho = {rho:g}")
        ax.plot(t, np.power(rho, T - 1.0 - t), **style.THEORY, label="rho^(T-1-t)" if i == 0 else None)
    ax.set_title("linear RNN, W_hh = rho x orthogonal")


def _bound_panel(ax, T: int, bound: dict, gamma_norm: float) -> None:
    """The largest ratio over examples and networks per t, for each activation and W_hh kind at gamma_norm."""
    t = np.arange(T)
    kinds = {"orthogonal": ("-", "orthogonal"), "mean_field": ("-.", "Gaussian")}
    for (activation, recurrent_init, g), (ratios, _) in bound.items():
        if g != gamma_norm:
            continue
        ls, kind = kinds.get(recurrent_init, (":", recurrent_init))
        ax.plot(t, ratios.max(axis=(0, 1)), ls=ls, color=style.color_of(activation), label=f"{activation}, {kind} W_hh")
    ax.plot(t, np.power(gamma_norm, T - 1.0 - t), **style.THEORY, label=f"bound {gamma_norm:g}^(T-1-t)")
    ax.set_title(f"largest example, gamma ||W_hh||_2 = {gamma_norm:g}")


def _init_panel(ax, T: int, init: dict[float, tuple[Array, Array]], hidden: int) -> None:
    t = np.arange(T)
    relatives = {s: curves / curves[:, -1:] for s, (curves, _) in init.items()}
    low = min(r.min() for r in relatives.values()) / 3
    high = max(r.max() for r in relatives.values()) * 3
    for i, (sigma_w2, (curves, norms)) in enumerate(init.items()):
        color, relative = SIGMA_COLORS[i % 2], relatives[sigma_w2]
        r, w = float(geometric_mean(per_step_factor(curves))), float(geometric_mean(norms))
        for curve in relative:
            ax.plot(t, curve, color=color, lw=0.5, alpha=0.35)
        ax.plot(t, geometric_mean(relative), color=color, label=f"sigma_w^2 = {sigma_w2:g} ({len(curves)} nets)")
        ax.plot(t, np.power(r, T - 1.0 - t), color=color, ls=":", lw=1.2, label=f"  fitted r^(T-1-t), r = {r:.3f}")
        mf = predicted_step_factor(sigma_w2, hidden, T)
        ax.plot(t, np.power(mf, T - 1.0 - t), color=color, ls="-.", lw=1.0, label=f"  mean field sqrt(chi_1) = {mf:.3f}")
        ax.plot(t, _clipped_to(np.power(w, T - 1.0 - t), low, high), **style.THEORY,
                label=f"  bound, ||W_hh||_2 = {w:.2f}")  # fmt: skip
    ax.set_ylim(low, high)  # the bounds grow by gamma ||W_hh||_2 > 1 per step: they leave the plot
    ax.set_title("tanh RNN, W_hh ~ N(0, sigma_w^2 / H)")


@style.styled
def init_figure(p: dict[str, Any], linear: dict, bound: dict, init: dict) -> Figure:
    """Three panels of ||dL/dh_t|| / ||dL/dh_(T-1)|| against t at initialisation (log y): the linear
    RNN with rho^(T-1-t) dashed; the largest example of the bounded RNNs under Pascanu's bound; the
    tanh RNN at each sigma_w^2 (thin: one network each) with its fitted factor dotted, mean field's
    sqrt(chi_1) dash-dotted and the bound dashed."""
    fig, axes = style.figure(1, 3, width=3.6, height=3.2)
    _linear_panel(axes[0, 0], p["T"], linear)
    _bound_panel(axes[0, 1], p["T"], bound, max(p["bound_norms"]))
    _init_panel(axes[0, 2], p["T"], init, p["widths"][0])
    for ax, where in zip(axes[0], ("lower right", "lower right", "center left")):
        ax.set_yscale("log")
        ax.set_xlabel("time step t (loss at t = T-1)")
        ax.legend(loc=where, frameon=False, fontsize=7)
    axes[0, 0].set_ylabel("||dL/dh_t|| / ||dL/dh_(T-1)||")
    style.caption(fig, f"Gradient back in time at initialisation: adding problem, H = {p['hidden']}, T = {p['T']}, "
                       f"{p['networks']} networks x {p['examples']} sequences; measured solid or markers, "
                       "theory dashed")  # fmt: skip
    fig.tight_layout()
    return fig


def _training_curves(ax, runs: pd.DataFrame, steps: pd.DataFrame, column: str, top: float = 1e300) -> None:
    """A line per run of steps[column] against the step (finite values), an x at the top where a run
    diverged; y limits a factor 3 around the finite values, at most `top` (autoscaling a log axis
    near 1e300 overflows)."""
    low, high = np.inf, 0.0
    for _, run in runs.sort_values(["clip_mode", "seed"]).iterrows():
        rows = steps[steps["run_id"] == run["run_id"]].sort_values("step")
        mode, first = run["clip_mode"], run["seed"] == runs["seed"].min()
        label = ("no clipping" if mode == "none" else f"norm clipping at {run['clip']:g}") if first else None
        values = rows[column].to_numpy(dtype=np.float64)
        finite = values[np.isfinite(values) & (values > 0)]
        low, high = min(low, finite.min(initial=np.inf)), max(high, finite.max(initial=0.0))
        ax.plot(rows["step"], np.where(np.isfinite(values), values, np.nan), color=CLIP_COLORS[mode], lw=0.7,
                alpha=0.85, label=label)  # fmt: skip
        if run["status"] == "diverged":
            # at the top of the panel (x in data, y in axes coordinates): the loss is inf/NaN there
            ax.plot([run["diverged_step"]], [1.0], "x", ms=7, mew=1.5, color=CLIP_COLORS[mode], clip_on=False,
                    transform=ax.get_xaxis_transform(), label="diverged (inf/NaN) at this step" if first else None)
    if high > 0:
        ax.set_ylim(low / 3, min(high * 3, top))


@style.styled
def training_figure(tables: dict[str, pd.DataFrame]) -> Figure:
    """Gradient norm before clipping (all runs; the clipped runs alone) and the loss against the SGD
    step, log y, a line per run; an x at the top marks the step where a run diverged."""
    runs, steps = tables["runs"], tables["steps"]
    clipped = runs[runs["clip_mode"] == "norm"]
    clip = float(clipped["clip"].iloc[0])
    fig, axes = style.figure(1, 3, width=3.9, height=3.2)
    _training_curves(axes[0, 0], runs, steps, "grad_norm")
    _training_curves(axes[0, 1], clipped, steps, "grad_norm")
    _training_curves(axes[0, 2], runs, steps, "loss", top=LOSS_TOP)
    for ax in axes[0, :2]:
        ax.axhline(clip, **style.THEORY, label=f"threshold c = {clip:g}")
        ax.set_ylabel("||g|| over all parameters, before clipping")
    axes[0, 0].set_title("gradient norm, every run")
    axes[0, 1].set_title("gradient norm, the clipped runs")
    loss = steps["loss"].to_numpy(dtype=np.float64)
    axes[0, 2].set_title(f"training loss (cut at {LOSS_TOP:.0e}; max {loss[np.isfinite(loss)].max():.0e})")
    axes[0, 2].set_ylabel(f"loss (MSE / 2, batch of {runs['batch'].iloc[0]})")
    for ax, where in zip(axes[0], ("center right", "upper right", "center right")):
        ax.set_yscale("log")
        ax.set_xlabel("SGD step")
        ax.legend(loc=where, frameon=False, fontsize=7)
    run = runs.iloc[0]
    style.caption(fig, f"{run['activation']} RNN, H = {run['width']}, W_hh ~ N(0, {run['sigma_w2']:g}/H), adding "
                       f"problem T = {run['T']}, SGD lr {run['lr']:g}, batch {run['batch']}: {runs['seed'].nunique()} "
                       "seeds without clipping and with norm clipping")  # fmt: skip
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- the check


def check(params: dict[str, Any], tables: dict[str, pd.DataFrame] | None) -> tuple[list[Claim], dict[str, Figure]]:
    found_linear, linear = linear_claims(params)
    found_bound, bound = bound_claims(params)
    found_init, init = init_claims(params)
    found = found_linear + found_bound + found_init
    figures = {"gradient_at_init": init_figure(params, linear, bound, init)}
    if tables is not None:
        found += training_claims(tables)
        figures["training"] = training_figure(tables)
    return found, figures
