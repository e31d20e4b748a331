"""Lu, Shin, Su and Karniadakis (2019), "Dying ReLU and initialization: theory and numerical examples"
(arXiv:1903.06733; Communications in Computational Physics 28, 2020).

The paper proves that a deep, narrow ReLU network initialised with weights and biases drawn from
distributions symmetric about 0 is likely to be "born dead": some hidden layer outputs all zeros, so
the network is a constant function near the input and no gradient reaches the layers below. At a point
x != 0, a hidden layer of width N whose input is nonzero is all zero with probability 2^-N (each unit's
pre-activation is symmetric about 0 and the units are independent given the input), and once a layer is
zero every later one is; so a net with k hidden layers of width N is dead at x with probability
1 - (1 - 2^-N)^k (gradlab.theory.lu_dead_probability). Leaky ReLU units are never exactly zero, so a
leaky net is never dead. What is claimed and how gradlab measures it:

The paper's depth: its networks N^L have L layers with N_l neurons in layer l, N_0 = d_in and N_L = d_out
(Sec. 2), so L counts the output layer and the hidden layers are L - 1; its bound on being born dead is
1 - (1 - 2^-N)^(L-1), and its |x| example's "depth 10, width 2" is 9 hidden layers of 2 units, born dead
with probability 1 - (3/4)^9 = 0.925 (reading depth as hidden layers would give 0.944). gradlab's
model.depth and k below count hidden layers, so the paper's L = 10 is k = 9 here.

1. Dead at a point (Sec. 3): for N in {2, 3, 5, 10} and k = 9 hidden layers (L = 10), the fraction of
   `networks` sampled ReLU nets that are dead at x = `point` is within 3 binomial standard errors
   sqrt(p (1 - p) / networks) of p = 1 - (1 - 2^-N)^k. The nets are stacked (M, out, in) arrays with
   He's symmetric init, W ~ N(0, 2 / fan_in), b ~ N(0, bias_std^2) (bias_std = 0: zero biases, as
   gradlab's he_normal and the training runs), one input, forwarded all at once (dead_at_a_point).
2. Leaky ReLU is never born dead: the same nets with leaky ReLU (slope 0.01) are dead at the point in
   0 of all the sampled networks (every width).
3. Collapse on the probe set against depth, widths 2..10 (a figure, and one check): a net has
   collapsed when its output is constant on the probe set (the |x| task's held-out inputs; the
   training runs' `collapsed`, gradlab.probes.is_collapsed). For continuous random weights this is,
   with probability 1, "some hidden layer is zero on every probe point" (a layer whose input varies can
   only become constant by being all zero; the output layer maps different activations to different
   outputs), which collapsed_by_depth counts for depths 1..max_depth at once: the net of depth k is the
   first k hidden layers of a deeper stack plus its own output layer. Collapsed on a set implies dead at
   each of its points, so the at-a-point probability bounds the collapsed fraction from above; the
   check is that no (width, depth) exceeds it by more than 3 standard errors.
4. Training (Sec. 1's example, |x| by a deep narrow net): `runs` networks of width 2 and 9 hidden layers
   (the paper's depth 10), He init (zero biases), Adam (lr 3e-3, 1000 steps, batch 32: gradlab's
   choices), |x| on U[-sqrt(3), sqrt(3)] (task abs_value), trained as one ensemble (_lu2019_training:
   network r is the one gradlab.train.run would train for seed r, fed the same batches). The fraction
   collapsed on the probe set after training against the paper's "over 90%": it holds when the fraction
   exceeds 0.9 by more than 2 binomial standard errors (a one-sided test of p > 0.9 at about 2%; with
   2000 runs the standard error is about 0.006, so 0.9 is tested, not granted by a slack below it).
   Also checked: the ensemble's collapsed fraction at step 0 agrees with the stacked Monte Carlo's at
   width 2, depth 9 within 3 combined standard errors (the engine's networks are its distribution).
   Measured before (200 runner runs, 10 hidden layers): 180 of 200 collapsed at step 0, 186 after
   training; the ensemble of the same 200 seeds gives the same 180 and 186. Measured now (2000 nets, 9
   hidden layers): 0.873 collapsed at step 0 (Monte Carlo 0.881), 0.927 +- 0.006 after training (1855 of
   2000), so "over 90%" holds with 4.5 standard errors to spare; born dead at a point 0.928 (theory 0.925).
"""

from __future__ import annotations

import math
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from gradlab import tasks, theory
from gradlab.nn import activations
from gradlab.nn.activations import Activation
from gradlab.plots import style
from gradlab.reproduce._lu2019_training import train_ensemble
from gradlab.reproduce.claims import Claim

TITLE = "Lu, Shin, Su, Karniadakis 2019: Dying ReLU and initialization"

Array = np.ndarray
SOURCE_POINT = "Sec. 3, born dead at a point: 1 - (1 - 2^-N)^k"
SOURCE_TRAINING = "Sec. 1, |x| by a deep narrow ReLU net"
PAPER_COLLAPSED = 0.9  # "over 90%" of the trained width-2 depth-10 networks collapse
SE_TOLERANCE = 3.0  # every statistical claim: within 3 binomial standard errors
OVER_SE = 2.0  # "over 90%": the trained fraction exceeds 0.9 by more than 2 of its standard errors


# ---------------------------------------------------------------- stacked networks (Monte Carlo)


def symmetric_nets(
    rng: np.random.Generator, m: int, width: int, hidden: int, d_in: int = 1, bias_std: float = 0.0
) -> tuple[list[int], list[Array], list[Array]]:
    """m networks of sizes [d_in] + [width] * hidden + [1], stacked: weights[l] (m, out, in) ~ N(0, 2 / in)
    (He), biases[l] (m, out) ~ N(0, bias_std^2) (zeros for bias_std = 0); all symmetric about 0."""
    sizes = [d_in] + [width] * hidden + [1]
    weights = [rng.normal(0.0, math.sqrt(2.0 / i), size=(m, o, i)) for i, o in zip(sizes[:-1], sizes[1:])]
    biases = [rng.normal(0.0, bias_std, size=(m, o)) if bias_std > 0 else np.zeros((m, o)) for o in sizes[1:]]
    return sizes, weights, biases


def dead_at_a_point(weights: list[Array], biases: list[Array], x: Array, act: Activation) -> Array:
    """(M,) bool: some hidden layer of network m is all zero at the input x (D,); weights[l] (M, out, in).
    a_l = phi(W_l a_(l-1) + b_l) for every network at once; the output layer (the last) is not looked at."""
    a = np.broadcast_to(x, (weights[0].shape[0], x.size))
    dead = np.zeros(a.shape[0], dtype=bool)
    for w, b in zip(weights[:-1], biases[:-1]):  # hidden layers only
        a = act.forward(np.einsum("moi,mi->mo", w, a) + b)
        dead |= np.all(a == 0.0, axis=1)
    return dead


def first_zero_layer(weights: list[Array], biases: list[Array], x_probe: Array, act: Activation) -> Array:
    """(M,) int: per network, the first hidden layer (1-based) whose activations are zero at every probe
    input x_probe (P, D), or 0 if none is. a_l (M, P, width) = phi(a_(l-1) W_l^T + b_l); networks drop
    out of the computation once found (every later layer is then constant too)."""
    m = weights[0].shape[0]
    first = np.zeros(m, dtype=np.int64)
    todo = np.arange(m)  # networks without a zero layer so far
    a = np.broadcast_to(x_probe, (m, *x_probe.shape))
    for layer, (w, b) in enumerate(zip(weights[:-1], biases[:-1]), start=1):
        a = act.forward(np.matmul(a, w[todo].transpose(0, 2, 1)) + b[todo, None, :])
        zero = ~a.any(axis=(1, 2))  # this layer is 0 on every probe input
        first[todo[zero]] = layer
        todo, a = todo[~zero], a[~zero]
        if todo.size == 0:
            break
    return first


def collapsed_by_depth(
    rng: np.random.Generator, m: int, width: int, max_depth: int, x_probe: Array, act: Activation,
    bias_std: float = 0.0, chunk: int = 1000,
) -> Array:  # fmt: skip
    """(max_depth,): fraction of m nets of depth k = 1..max_depth (hidden layers of `width`) whose
    output is constant on x_probe (P, D) = some hidden layer zero on all of it; nets of depth k are the
    first k layers of symmetric_nets(..., max_depth) stacks, drawn `chunk` networks at a time."""
    counts = np.zeros(max_depth + 1, dtype=np.int64)
    for start in range(0, m, chunk):
        _, ws, bs = symmetric_nets(rng, min(chunk, m - start), width, max_depth, x_probe.shape[1], bias_std)
        counts += np.bincount(first_zero_layer(ws, bs, x_probe, act), minlength=max_depth + 1)
    return np.cumsum(counts[1:]) / m  # counts[0]: never collapsed within max_depth


def binomial_se(p: float | Array, n: int) -> float | Array:
    """Standard error of a fraction of n Bernoulli(p) trials: sqrt(p (1 - p) / n)."""
    return np.sqrt(np.asarray(p) * (1.0 - np.asarray(p)) / n)


# ---------------------------------------------------------------- measurements


def dead_fractions(p: dict[str, Any]) -> dict[str, dict[int, float]]:
    """{"relu", "leaky_relu"} -> {width: fraction of p["networks"] nets with p["hidden"] hidden layers
    dead at x = p["point"]}, for every width in p["figure_widths"]; both activations see the same nets."""
    rng = np.random.default_rng([p["seed"], 1])
    x = np.array([p["point"]], dtype=np.float64)
    acts = {"relu": activations.get("relu"), "leaky_relu": activations.get("leaky_relu", p["leaky_slope"])}
    out: dict[str, dict[int, float]] = {name: {} for name in acts}
    for width in p["figure_widths"]:
        _, ws, bs = symmetric_nets(rng, p["networks"], width, p["hidden"], 1, p["bias_std"])
        for name, act in acts.items():
            out[name][width] = float(dead_at_a_point(ws, bs, x, act).mean())
    return out


def collapse_curves(p: dict[str, Any]) -> dict[int, Array]:
    """width -> (max_depth,) collapsed fraction on the |x| task's probe set (its first p["probe_points"]
    held-out inputs), p["collapse_networks"] ReLU nets per width."""
    rng = np.random.default_rng([p["seed"], 2])
    x_probe, _ = tasks.get("abs_value").held_out(p["probe_points"])
    relu = activations.get("relu")
    return {
        width: collapsed_by_depth(rng, p["collapse_networks"], width, p["max_depth"], x_probe, relu, p["bias_std"])
        for width in p["collapse_widths"]
    }


def run_outcomes(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per run: seed, width, depth, steps, lr, probe_size, final_loss and collapsed_init /
    collapsed_end, the steps table's `collapsed` at the first and the last probed step; the fraction of
    runs collapsed per probed step (a Series indexed by step) in .attrs["curve"]."""
    steps = tables["steps"].dropna(subset=["collapsed"]).sort_values(["run_id", "step"])
    steps = steps.assign(collapsed=steps["collapsed"].astype(bool))
    ends = steps.groupby("run_id")["collapsed"].agg(["first", "last"])
    runs = tables["runs"].set_index("run_id")[["seed", "width", "depth", "steps", "lr", "probe_size", "final_loss"]]
    out = runs.join(ends.rename(columns={"first": "collapsed_init", "last": "collapsed_end"}), how="inner")
    out.attrs["curve"] = steps.groupby("step")["collapsed"].mean()
    return out.reset_index()


def constant_loss(probe_size: int) -> float:
    """The held-out loss (MSE / 2 on the task's first probe_size held-out examples) of the constant
    E|x| = sqrt(3) / 2, the best constant for |x| on U[-sqrt(3), sqrt(3)] (1/8 on the whole distribution):
    what a collapsed net's output converges to."""
    _, y = tasks.get("abs_value").held_out(probe_size)
    return float(0.5 * np.mean((y - tasks.AbsValue.half_width / 2) ** 2))


# ---------------------------------------------------------------- claims


def _range_text(values: list[int]) -> str:
    """[1, 2, 3] -> "1..3" when consecutive, else "2, 3, 5"."""
    if len(values) > 2 and values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}..{values[-1]}"
    return ", ".join(str(v) for v in values)


def point_claims(p: dict[str, Any], dead: dict[str, dict[int, float]]) -> list[Claim]:
    """Per width in p["widths"]: the ReLU dead fraction within 3 SE of Lu's probability; leaky: 0 dead."""
    n, k = p["networks"], p["hidden"]
    found = []
    for width in p["widths"]:
        prob = theory.lu_dead_probability(width, k)
        found.append(Claim.within(
            f"ReLU N = {width}, k = {k}, He init: P(dead at a point), {n} nets", SOURCE_POINT,
            prob, SE_TOLERANCE * float(binomial_se(prob, n)), dead["relu"][width], digits=4,
        ))  # fmt: skip
    total = n * len(dead["leaky_relu"])
    hits = int(round(sum(dead["leaky_relu"].values()) * n))
    widths = _range_text(list(dead["leaky_relu"]))
    found.append(Claim(
        f"leaky ReLU {p['leaky_slope']:g}, N = {widths}, k = {k}: never dead at a point",
        "Sec. 3's argument: a leaky unit is never 0", f"0 of {total} nets", "-", f"{hits} of {total} nets",
        hits == 0, float(hits),
    ))  # fmt: skip
    return found


def bound_claim(p: dict[str, Any], curves: dict[int, Array]) -> Claim:
    """Collapsed on the probe set <= dead at a point: the largest (measured - theory) / SE over widths, depths."""
    n, worst, where = p["collapse_networks"], -math.inf, ""
    for width, curve in curves.items():
        depth = np.arange(1, curve.size + 1)
        prob = np.array([theory.lu_dead_probability(width, int(k)) for k in depth])
        z = (curve - prob) / np.maximum(binomial_se(prob, n), 1.0 / n)  # floor: one network's worth
        i = int(np.argmax(z))
        if z[i] > worst:
            worst, where = float(z[i]), f"width {width}, depth {depth[i]}"
    return Claim(
        f"collapsed on probe set <= P(dead at a point), N = {_range_text(list(curves))}, k <= {p['max_depth']}",
        "implied by Sec. 3 (dead on a set => dead at each point)", f"(meas. - theory)/SE <= {SE_TOLERANCE:g}", "-",
        f"max {worst:+.2f} SE ({where})", worst <= SE_TOLERANCE, worst,
    )  # fmt: skip


def training_claims(outcomes: pd.DataFrame, curves: dict[int, Array], p: dict[str, Any]) -> list[Claim]:
    """The paper's "over 90%" collapsed after training (above 0.9 by more than OVER_SE of the fraction's
    standard errors); the runs' collapsed fraction at step 0 against the Monte Carlo's (3 combined SE)."""
    n, (width, depth, steps) = len(outcomes), _runs_shape(outcomes)
    end, init = float(outcomes["collapsed_end"].mean()), float(outcomes["collapsed_init"].mean())
    se = float(binomial_se(end, n))
    found = [Claim(
        f"|x|, N = {width}, k = {depth} (paper's depth {depth + 1}), Adam {steps} steps: collapsed after training",
        SOURCE_TRAINING, f"over {PAPER_COLLAPSED:g}", f"> 0.9 + {OVER_SE:g} SE",
        f"{end:.3f} +- {se:.3f} ({int(outcomes['collapsed_end'].sum())} of {n})", end > PAPER_COLLAPSED + OVER_SE * se, end,
    )]  # fmt: skip
    if width in curves and curves[width].size >= depth:
        mc = float(curves[width][depth - 1])
        se = math.hypot(float(binomial_se(mc, p["collapse_networks"])), float(binomial_se(mc, n)))
        found.append(Claim.within(
            f"|x| runs collapsed at step 0 = Monte Carlo (N = {width}, k = {depth})",
            "gradlab: engine vs stacked Monte Carlo", mc, SE_TOLERANCE * se, init, digits=3,
        ))  # fmt: skip
    return found


def _runs_shape(outcomes: pd.DataFrame) -> tuple[int, int, int]:
    """(width, depth, steps) of the training runs (one value each: the runs differ only in seed)."""
    return tuple(int(outcomes[c].iloc[0]) for c in ("width", "depth", "steps"))  # type: ignore[return-value]


# ---------------------------------------------------------------- figures


@style.styled
def point_figure(p: dict[str, Any], dead: dict[str, dict[int, float]]) -> Figure:
    """P(dead at a point) against width (log y): ReLU measured with 3-SE bars, Lu's formula dashed."""
    fig, axes = style.figure(1, 1, width=4.2, height=3.2)
    ax = axes[0, 0]
    widths = np.array(list(dead["relu"]))
    measured = np.array(list(dead["relu"].values()))
    fine = np.linspace(widths.min(), widths.max(), 200)
    ax.plot(fine, -np.expm1(p["hidden"] * np.log1p(-(0.5**fine))), **style.THEORY,
            label=f"theory 1 - (1 - 2^-N)^{p['hidden']}")  # fmt: skip
    bars = SE_TOLERANCE * binomial_se(measured, p["networks"])
    ax.errorbar(widths, measured, yerr=bars, fmt="o", ms=4, capsize=3, color=style.color_of("relu"),
                label=f"ReLU, measured +- 3 SE ({p['networks']} nets each)")  # fmt: skip
    leaky = int(round(sum(dead["leaky_relu"].values()) * p["networks"]))
    total = p["networks"] * len(widths)
    ax.plot([], [], "s", color=style.color_of("leaky_relu"),
            label=f"leaky ReLU ({p['leaky_slope']:g}): {leaky} of {total} dead (not drawn: log axis)")  # fmt: skip
    ax.set_yscale("log")
    ax.set_xticks(widths)
    ax.set_xlabel("width N (units per hidden layer)")
    ax.set_ylabel("P(dead at x = %g)" % p["point"])
    ax.legend(loc="lower left", frameon=False, fontsize=7)
    style.caption(fig, f"Born dead at a point: {p['hidden']} hidden layers, He init (W ~ N(0, 2/fan_in), "
                       f"b {'= 0' if p['bias_std'] == 0 else '~ N(0, %g^2)' % p['bias_std']})")  # fmt: skip
    fig.tight_layout()
    return fig


def _spread_log(values: list[float], gap: float) -> list[float]:
    """values (> 0) moved apart, downward from the largest, to at least `gap` decades between
    neighbours: positions for labels on a log axis that do not overlap."""
    order = np.argsort(values)[::-1]
    out, last = list(values), math.inf
    for i in order:
        out[i] = min(math.log10(values[i]), last - gap)
        last = out[i]
    return [10.0**v for v in out]


@style.styled
def collapse_figure(p: dict[str, Any], curves: dict[int, Array], outcomes: pd.DataFrame | None) -> Figure:
    """Collapsed fraction on the probe set against depth (log y), one line per width labelled at its
    right end, Lu's at-a-point probability dashed per width; the training runs' step-0 fraction as a
    marker at width 2, depth 10."""
    fig, axes = style.figure(1, 1, width=5.6, height=4.2)
    ax = axes[0, 0]
    cmap = matplotlib.colormaps["viridis"]
    label_y = _spread_log([float(c[-1]) for c in curves.values()], gap=0.13)
    for i, (width, curve) in enumerate(curves.items()):
        depth = np.arange(1, curve.size + 1)
        color = cmap(i / max(len(curves) - 1, 1) * 0.9)
        prob = -np.expm1(depth * np.log1p(-(0.5**width)))
        theory_label = "P(dead at a point), 1 - (1 - 2^-N)^k" if i == 0 else None
        ax.plot(depth, prob, **{**style.THEORY, "linewidth": 0.9}, label=theory_label)
        ax.plot(depth, np.where(curve > 0, curve, np.nan), "-", color=color, lw=1.6,
                label="collapsed on the probe set (measured)" if i == 0 else None)  # fmt: skip
        ax.annotate(f"N = {width}", (depth[-1], label_y[i]), xytext=(4, 0), textcoords="offset points",
                    color=color, fontsize=7, va="center", annotation_clip=False)  # fmt: skip
    if outcomes is not None:
        (width, depth, _), n = _runs_shape(outcomes), len(outcomes)
        frac = float(outcomes["collapsed_init"].mean())
        ax.errorbar([depth], [frac], yerr=[SE_TOLERANCE * float(binomial_se(frac, n))], fmt="*", ms=9,
                    color=style.SEQUENCE[4], capsize=3,
                    label=f"the {n} training runs at step 0 (N = {width}), +- 3 SE")  # fmt: skip
    ax.set_yscale("log")
    ax.set_ylim(0.5 / p["collapse_networks"], 1.5)
    ax.set_xlim(1, p["max_depth"])
    ax.set_xlabel("depth k (hidden layers)")
    ax.set_ylabel("fraction of networks collapsed at initialisation")
    ax.legend(loc="lower right", frameon=True, framealpha=0.9, edgecolor="none", fontsize=7)
    style.caption(fig, (
        f"ReLU nets of width N at He init ({p['collapse_networks']} per width): output constant on the probe set "
        f"({p['probe_points']} |x|-task inputs)\nagainst depth. Collapsed on a set means dead at each of its points, "
        "so the dashed at-a-point probability is an upper bound"
    ))  # fmt: skip
    fig.tight_layout()
    return fig


@style.styled
def training_figure(outcomes: pd.DataFrame) -> Figure:
    """Left: collapsed fraction against the Adam step (+- 3 SE band), the paper's 0.9 dashed. Right:
    final held-out loss per run, sorted (log y), collapsed and not, the best constant's loss dashed."""
    fig, axes = style.figure(1, 2, width=3.7, height=3.0)
    n, curve = len(outcomes), outcomes.attrs["curve"]
    ax = axes[0, 0]
    band = SE_TOLERANCE * binomial_se(curve.to_numpy(), n)
    ax.fill_between(curve.index, curve - band, np.minimum(curve + band, 1.0), color=style.color_of("relu"), alpha=0.2,
                    label="+- 3 SE")  # fmt: skip
    ax.plot(curve.index, curve.to_numpy(), "o-", ms=3, color=style.color_of("relu"), label=f"measured ({n} runs)")
    ax.axhline(PAPER_COLLAPSED, **style.THEORY, label="paper: over 90% after training")
    ax.set_ylim(max(0.0, float(curve.min() - band.max()) - 0.05), 1.0)
    ax.set_xlabel("Adam step")
    ax.set_ylabel("fraction collapsed (probe set)")
    ax.set_title("collapsed during training")
    ax.legend(loc="lower right", frameon=False, fontsize=7)
    ax = axes[0, 1]
    order = outcomes.sort_values("final_loss").reset_index(drop=True)
    kinds = [(True, style.SEQUENCE[4], "collapsed"), (False, style.SEQUENCE[0], "not collapsed")]
    for collapsed, color, label in kinds:
        sel = order[order["collapsed_end"] == collapsed]
        ax.plot(sel.index + 1, sel["final_loss"], "o", ms=2.5, color=color, label=f"{label} ({len(sel)})")
    ax.axhline(constant_loss(int(outcomes["probe_size"].iloc[0])), **style.THEORY,
               label="the constant E|x| (held-out set; population 1/8)")  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("run, sorted by final loss")
    ax.set_ylabel("final held-out loss (MSE / 2)")
    ax.set_title("final loss per run")
    ax.legend(loc="lower right", frameon=False, fontsize=7)
    width, depth, steps = _runs_shape(outcomes)
    style.caption(fig, f"|x| on U[-sqrt 3, sqrt 3] by ReLU nets of width {width}, {depth} hidden layers, He init, "
                       f"Adam lr {outcomes['lr'].iloc[0]:g}, {steps} steps: {n} seeds")  # fmt: skip
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- the check


def trained_outcomes(p: dict[str, Any]) -> pd.DataFrame:
    """The |x| training of p["runs"] seeds (0..runs-1), width train_width, p["hidden"] hidden layers, as one
    ensemble: _lu2019_training.train_ensemble."""
    return train_ensemble(list(range(p["runs"])), p["train_width"], p["hidden"], p["train_steps"], p["train_batch"],
                          p["train_lr"], p["train_probe_size"], p["train_log_every"])  # fmt: skip


def check(params: dict[str, Any], tables: dict[str, pd.DataFrame] | None) -> tuple[list[Claim], dict[str, Figure]]:
    dead = dead_fractions(params)
    curves = collapse_curves(params)
    found = point_claims(params, dead) + [bound_claim(params, curves)]
    figures = {"dead_at_a_point": point_figure(params, dead)}
    outcomes = run_outcomes(tables) if tables is not None else trained_outcomes(params)
    found += training_claims(outcomes, curves, params)
    figures["training"] = training_figure(outcomes)
    figures["collapse_by_depth"] = collapse_figure(params, curves, outcomes)
    return found, figures
