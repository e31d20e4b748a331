"""The adding problem at T = 100: the LSTM, the GRU and the IRNN against a tanh RNN.

Hochreiter and Schmidhuber (1997), "Long short-term memory", Neural Computation 9(8), section 5.4
(experiment 4): gradient descent through a vanilla RNN cannot bridge long time lags, because the error
flowing back shrinks by a factor per step; the LSTM's cell (c_t = f_t c_(t-1) + i_t g_t) carries it.
Le, Jaitly and Hinton (2015), "A simple way to initialize recurrent networks of rectified linear units",
section 4.1: the adding problem in the form used here (values U[0, 1], one marker in each half of the
sequence, target the sum of the two marked values), and the IRNN, a ReLU RNN whose W_hh starts as the
identity (biases zero), which they report to learn it at long T like the LSTM while the tanh RNN does
not. The GRU (Cho et al. 2014) is gated like the LSTM (h_t = (1 - z_t) n_t + z_t h_(t-1)).

The two reference MSEs (x1, x2 the marked values, independent U[0, 1], Var = 1/12 each):
- nothing learned: the best constant is E[x1 + x2] = 1, MSE Var[x1 + x2] = 1/6 (the baseline);
- only the second value learned (the one within the last T/2 steps): the best prediction given x2 is
  E[x1] + x2 = 1/2 + x2, MSE E[(x1 - 1/2)^2] = Var[x1] = 1/12.
A test MSE at or above 1/12 therefore means the first value, the long-lag one, has not been learned at
all; the tanh RNN's claim is placed there (0.1 sat between the two, where a half-learned first value
could land on either side).

Training (experiments/adding.toml's runs, the sweep runner): T = 100, H = 64, Adam lr 1e-3 (gradlab's
choice: the papers used plain SGD for far more steps), norm clipping at 1, batch 32, 3000 steps,
float32, seeds 0..2, standard init U[-1/sqrt(fan_in), 1/sqrt(fan_in)] for every matrix but the IRNN's
W_hh (identity), LSTM forget-gate bias 1.

Claimed:
1. the LSTM, the GRU and the IRNN each learn: test MSE <= 0.02 in at least 2 of 3 seeds (the issue's
   LSTM threshold, for each of them: which ones learn within this budget is the measurement);
2. the tanh RNN's test MSE stays at or above 1/12 in every seed;
and, added here to tie the claims to their cause (the figure dh_norm_through_time):
3. the LSTM's test MSE is below the tanh RNN's, seed by seed;
4. a third of the way into training (`why_step`), the gradient reaching the first half of the sequence,
   where the first marker is, has vanished in the tanh RNN (first_half_share <= 10^-2, gradlab's
   diagnosis threshold of two decades) in every seed, and not in the LSTM in any seed.

Measured:
- test MSE = 2 final_loss of the runs table (gradlab's mse loss is 1/M sum 1/2 (a - y)^2), on the fixed
  held-out set task.held_out(train.probe_size) of 4096 sequences; its standard error is
  MSE sqrt((kurtosis - 1) / n) (mse_standard_error), 2.2% of the MSE for Gaussian errors (the figure's
  bars); the errors are heavier-tailed, so that is a lower bound;
- training MSE over steps: 2 x the batch loss (steps table), averaged over windows of `window` steps;
- first_half_share: mean over t < T/2 of dh_norm(t) / dh_norm(T-1) (timesteps table): the gradient at a
  uniformly drawn first-marker position, relative to the gradient at the loss.

Why T = 100: at T = 50 (the previous version) Adam rescues the tanh RNN: it sat at the baseline, learned
the second value (1/12) and then the first, ending at 0.012, 0.016, 0.092, so the claim that it fails did
not hold there. At T = 100 its first-half gradient is 10^-15 to 10^-18 of the one at the loss at step 1000.
Ensembles (the engine's ensemble axis) were measured for this grid and not used: an ensemble of 3 LSTMs
at T = 100 costs 2.3-2.7x one LSTM (float32 and float64), so three single runs on the runner's 2
workers finish sooner than one ensemble per model on one core.

Result (full run, results/adding/): every model but the tanh RNN learns within the 3000 steps: LSTM
0.0024, 0.0015, 0.0036; GRU 0.0010, 0.0006, 0.0007; IRNN 0.0009, 0.0060, 0.0021; the tanh RNN stays at
the baseline, 0.166, 0.164, 0.167 (>= 1/12 in every seed). Claim 4 FAILS for the LSTM: at step 1000
its first-half share is 3e-6 to 6e-6, ten decades above the tanh RNN's (4e-19 to 9e-16) but below
10^-2, because at T = 100 the LSTM has not yet started to learn at step 1000 (its training MSE leaves
the baseline between steps 1750 and 2750); the share rises as it learns (0.13, 0.17 and 5e-6 at step
2000, 0.11-0.21 at the end). The GRU carries from step 1000 on (0.8-1.1), the IRNN from the start (0.7
at init: W_hh = I loses nothing). why_step stays at a third of training, as chosen before the runs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from gradlab.plots import style
from gradlab.reproduce.claims import Claim
from gradlab.tasks.adding import Adding

TITLE = "Hochreiter & Schmidhuber 1997, Le et al. 2015: LSTM, GRU and IRNN vs tanh RNN on the adding problem, T = 100"

LEARNED_MSE, LEARNED_NEED = 0.02, 2  # the issue: LSTM test MSE <= 0.02 in at least 2 of 3 seeds (GRU, IRNN alike)
LOSS_TOP = 2.0  # the loss figure's top (MSE): above the baseline 1/6 by a decade
VANISHED = 1e-2  # gradient share two decades down: gradlab.diagnose's vanishing threshold
BASELINE = Adding(variant="le2015").baseline_mse  # 1/6 = Var[x1 + x2], x ~ U[0, 1]: predicting the mean 1
ONE_VALUE = 1 / 12  # Var[x1]: the MSE left when only the second marked value is known
RNN_MIN_MSE = ONE_VALUE  # the tanh RNN's test MSE stays >= 1/12: it has not learned the first value
NETS = ("lstm", "gru", "rnn", "irnn")
LABELS = {"lstm": "LSTM", "gru": "GRU", "rnn": "tanh RNN", "irnn": "IRNN"}
COLORS = {**style.MODEL_COLORS, "irnn": style.SEQUENCE[2]}  # the IRNN green beside the tanh RNN's blue
SOURCE = "Hochreiter & Schmidhuber 1997 sec. 5.4; Le et al. 2015 sec. 4.1"
SOURCES = {"lstm": SOURCE, "gru": "Cho et al. 2014 (the GRU's gates); measured here (issue 14)",
           "irnn": "Le, Jaitly & Hinton 2015 sec. 4.1 (the IRNN)"}  # fmt: skip


# ---------------------------------------------------------------- measurements from the tables


def net(runs: pd.DataFrame) -> pd.Series:
    """Per run the network's name: the model (lstm, gru, rnn), "irnn" for a ReLU RNN with the identity W_hh."""
    names = runs["model"].astype(str)
    if {"activation", "recurrent_init"} <= set(runs.columns):
        irnn = (names == "rnn") & (runs["activation"] == "relu") & (runs["recurrent_init"] == "identity")
        names = names.where(~irnn, "irnn")
    return names


def held_out_mse(runs: pd.DataFrame) -> pd.DataFrame:
    """Per run: model (its `net` name), seed, the plain test MSE 2 final_loss (inf for a run that did not
    finish ok), n the test examples and the MSE's Gaussian-error standard error se; sorted by model and seed."""
    mse = (2.0 * runs["final_loss"]).where(runs["status"] == "ok", math.inf).fillna(math.inf)
    n = runs["probe_size"]
    out = runs[["run_id", "seed"]].assign(model=net(runs), mse=mse, n=n, se=mse_standard_error(mse, n))
    return out[["run_id", "model", "seed", "mse", "n", "se"]].sort_values(["model", "seed"]).reset_index(drop=True)


def mse_standard_error(mse: Any, n: Any, kurtosis: float = 3.0) -> Any:
    """Standard error of an MSE m measured on n examples: sd(e^2)/sqrt(n) = m sqrt((kurtosis - 1)/n),
    since Var[e^2] = E[e^4] - E[e^2]^2 = (kurtosis - 1) m^2 for errors e of mean 0; kurtosis 3 is Gaussian."""
    return mse * np.sqrt((kurtosis - 1.0) / np.asarray(n, dtype=np.float64))


def training_mse(steps: pd.DataFrame, window: int) -> pd.DataFrame:
    """Per run and window of `window` consecutive steps (the last one possibly shorter): the mean of
    2 loss (plain MSE on the training batches); columns run_id, step (the window's last step), mse."""
    steps = steps.sort_values(["run_id", "step"])
    block = steps["step"] // window
    grouped = steps.assign(mse=2.0 * steps["loss"], block=block).groupby(["run_id", "block"], sort=True)
    return grouped.agg(step=("step", "max"), mse=("mse", "mean")).reset_index()[["run_id", "step", "mse"]]


def first_half_share(timesteps: pd.DataFrame, step: int) -> pd.Series:
    """Per run_id at logged step `step`: mean over t < T/2 of dh_norm(t), divided by dh_norm(T-1)."""
    at = timesteps[timesteps["step"] == step]
    if at.empty:
        raise ValueError(f"step {step}: not a logged step; logged: {sorted(timesteps['step'].unique())}")
    return at.groupby("run_id").apply(_share, include_groups=False)


def _share(one: pd.DataFrame) -> float:
    dh = one.sort_values("t")["dh_norm"].to_numpy()  # (T,): dh_norm per time step
    return float(dh[: len(dh) // 2].mean() / dh[-1])


# ---------------------------------------------------------------- claims


def claims(mse: pd.DataFrame, share: pd.DataFrame, why_step: int, T: int) -> list[Claim]:
    """Which nets learn (LSTM, GRU, IRNN: test MSE <= 0.02), the tanh RNN's >= 1/12, the ordering and the
    two gradient claims; mse from held_out_mse, share has model, seed, share."""
    by = {m: mse[mse["model"] == m].set_index("seed")["mse"] for m in NETS}
    lstm, rnn = by["lstm"], by["rnn"]
    found = [
        _count(f"{LABELS[m]} learns at T = {T}: test MSE <= {LEARNED_MSE:g}", SOURCES[m], LEARNED_NEED,
               by[m] <= LEARNED_MSE, f"{', '.join(f'{v:.2g}' for v in by[m])}")
        for m in ("lstm", "gru", "irnn") if len(by[m])
    ]  # fmt: skip
    found += [
        _count(f"tanh RNN test MSE stays >= 1/12 at T = {T} (first value not learned)", SOURCE, len(rnn),
               rnn >= RNN_MIN_MSE, f"{', '.join(f'{v:.3g}' for v in rnn)}"),
        _count("LSTM test MSE below the tanh RNN's, seed by seed", f"{SOURCE} (ordering)", len(lstm),
               lstm < rnn.reindex(lstm.index), f"ratio {np.max(lstm / rnn.reindex(lstm.index)):.2g}"),
    ]  # fmt: skip
    for model, vanished in (("rnn", True), ("lstm", False)):
        s = share[share["model"] == model].set_index("seed")["share"]
        hits = s <= VANISHED if vanished else s > VANISHED
        extreme = f"max {s.max():.1g}" if vanished else f"min {s.min():.2g}"
        text = f"<= {VANISHED:g} (vanished)" if vanished else f"> {VANISHED:g} (carried)"
        claim = f"{LABELS[model]}, step {why_step}: first-half dh share {text}"
        found.append(_count(claim, "Hochreiter & Schmidhuber 1997 sec. 3-4 (why)", len(s), hits, extreme))
    return found


def _count(claim: str, source: str, need: int, hits: pd.Series, detail: str) -> Claim:
    """Claim.count over seeds, with the deciding number in the measured text."""
    return Claim.count(claim, source, need, int(hits.sum()), int(hits.size), detail=detail)


# ---------------------------------------------------------------- figures


@style.styled
def loss_figure(curves: pd.DataFrame, mse: pd.DataFrame, title: str) -> Figure:
    """Training MSE (windowed) against step, a line per run in its model's colour, the test MSE at the end
    as a marker with +-1 standard error; the baseline 1/6 dashed, 1/12 and the claims' thresholds dotted."""
    fig, axes = style.figure(width=5.6, height=3.4)
    ax = axes[0, 0]
    seeds = sorted(mse["seed"].unique())
    shades = dict(zip(seeds, np.linspace(1.0, 0.45, len(seeds))))  # alpha per seed
    end = curves["step"].max() + 1
    for row in mse.itertuples():
        color, run = COLORS[row.model], curves[curves["run_id"] == row.run_id]
        label = f"{LABELS[row.model]} training MSE, a line per seed" if row.seed == seeds[0] else None
        ax.plot(run["step"], run["mse"], color=color, alpha=shades[row.seed], linewidth=1.1, label=label)
        if math.isfinite(row.mse):
            label = f"{LABELS[row.model]} test MSE, {row.n} held out (±1 Gaussian s.e.)"
            label = label if row.seed == seeds[0] else None
            offset = end * (1.03 + 0.015 * seeds.index(row.seed))  # side by side, right of the curves
            ax.errorbar(offset, row.mse, yerr=row.se, fmt="o", ms=3.5, color=color, capsize=2, label=label)
    ax.axhline(BASELINE, **style.THEORY, label="best constant prediction, 1/6")
    ax.axhline(ONE_VALUE, color=COLORS["rnn"], linestyle=":", linewidth=1, label="second value only, 1/12 (tanh RNN claim: >=)")
    ax.axhline(LEARNED_MSE, color="0.3", linestyle=":", linewidth=1, label=f"learned: <= {LEARNED_MSE:g}")
    ax.set_yscale("log")
    peak = float(curves["mse"].max())
    if peak > LOSS_TOP:  # the IRNN's first windows (its ReLU state sums 100 inputs) would flatten the rest
        ax.set_ylim(top=LOSS_TOP)
        ax.set_title(f"cut at MSE {LOSS_TOP:g}; the largest window's training MSE is {peak:.1e}", fontsize=8)
    ax.set_xlabel("training step")
    ax.set_ylabel("MSE (log scale)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False, ncol=2, fontsize=7)
    style.caption(fig, title)
    return fig


@style.styled
def dh_figure(timesteps: pd.DataFrame, runs: pd.DataFrame, title: str) -> Figure:
    """dh_norm against t (log y), a panel per logged step, a line per run in its model's colour; the first
    half of the sequence (where the first marker is) shaded."""
    logged = sorted(timesteps["step"].unique())
    fig, axes = style.figure(1, len(logged), width=2.4, height=2.6, sharey=True)
    model = pd.Series(net(runs).to_numpy(), index=runs["run_id"])
    T = int(timesteps["t"].max()) + 1
    for ax, step in zip(axes[0], logged):
        ax.axvspan(-0.5, T / 2 - 0.5, color="0.92", zorder=0)
        for rid, run in timesteps[timesteps["step"] == step].groupby("run_id"):
            run = run.sort_values("t")
            ax.plot(run["t"], run["dh_norm"], color=COLORS[model[rid]], linewidth=1.0, alpha=0.85)
        ax.set_yscale("log")
        end = " (the end)" if step == logged[-1] else ""
        ax.set_title("at initialisation" if step == 0 else f"step {step}{end}")
        ax.set_xlabel("time step t")
    axes[0, 0].set_ylabel("dh_norm: mean ||dL/dh_t||")
    handles = [Line2D([], [], color=COLORS[m], label=LABELS[m]) for m in NETS if m in set(model)]
    handles.append(Patch(facecolor="0.92", edgecolor="0.6", label="t < T/2: the first marker"))
    axes[0, -1].legend(handles=handles, loc="lower right", frameon=False, fontsize=7)
    style.caption(fig, title)
    fig.subplots_adjust(top=0.8)
    return fig


def _title(runs: pd.DataFrame) -> str:
    r = runs.iloc[0]
    names = ", ".join(LABELS[m] for m in NETS if m in set(net(runs)))
    return (f"Adding problem, T = {r['T']}: {names}; H = {r['width']}, Adam lr {r['lr']:g}, norm clip "
            f"{r['clip']:g}, batch {r['batch']}, {r['steps']} steps, {r['dtype']}, {runs['seed'].nunique()} seeds")  # fmt: skip


# ---------------------------------------------------------------- the check


def check(params: dict[str, Any], tables: dict[str, pd.DataFrame] | None) -> tuple[list[Claim], dict[str, Figure]]:
    """The claims on the runs' test MSE and gradients, and the two figures."""
    if tables is None:
        raise ValueError("adding: needs its training runs (experiments/adding.toml has them)")
    runs, steps, timesteps = tables["runs"], tables["steps"], tables["timesteps"]
    mse = held_out_mse(runs)
    why = first_half_share(timesteps, int(params["why_step"])).rename("share")
    share = runs.assign(model=net(runs)).set_index("run_id")[["model", "seed"]].join(why, how="inner")
    title = _title(runs)
    figures = {
        "loss_curves": loss_figure(training_mse(steps, int(params["window"])), mse, title),
        "dh_norm_through_time": dh_figure(timesteps, runs, title),
    }
    return claims(mse, share, int(params["why_step"]), int(runs["T"].iloc[0])), figures
