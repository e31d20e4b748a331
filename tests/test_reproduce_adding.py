"""The adding reproduction (LSTM, GRU and IRNN vs tanh RNN on the adding problem): its quick run's claims,
and its measurement code against closed forms, a Monte-Carlo and a brute-force loop.

The quick run (experiments/adding.toml, [reproduce.quick]) trains the same four networks at T = 20 for
1000 steps, 3 seeds, tested on 1024 held-out sequences. Over at most 19 steps back the tanh RNN's
gradient does not vanish far enough to stop it, so at this size the tanh RNN learns (its claims are not
asserted); the LSTM's, the GRU's and the IRNN's claims, the ordering and the LSTM's carried gradient are.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from conftest import claim_starting, quick_reproduction
import gradlab
from gradlab.reproduce import adding as repro


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The quick reproduction, run once: (claims by their text, the runs' tables, the outcome)."""
    outcome = quick_reproduction("adding", tmp_path_factory)
    return {c.claim: c for c in outcome.claims}, gradlab.load(outcome.out), outcome



def _mse(tables: dict, model: str) -> pd.Series:
    """The test's own plain test MSE per seed: 2 x final_loss (gradlab's mse loss carries 1/2)."""
    runs = tables["runs"]
    runs = runs[repro.net(runs) == model].set_index("seed").sort_index()
    return 2.0 * runs["final_loss"]


# ---------------------------------------------------------------- the quick run


def test_quick_runs_are_the_issues_models_and_training(quick):
    _, tables, outcome = quick
    runs = tables["runs"]
    grid = sorted(zip(repro.net(runs), runs["seed"]))
    assert grid == [(m, s) for m in ("gru", "irnn", "lstm", "rnn") for s in (0, 1, 2)], f"runs (net, seed): {grid}"
    assert (runs["status"] == "ok").all(), f"runs not ok: {runs[['model', 'seed', 'status', 'error']]}"
    # the issue's training, at the quick size (T = 20, 1000 steps)
    expected = dict(width=64, optimizer="adam", lr=1e-3, clip_mode="norm", clip=1.0, batch=32, steps=1000, T=20,
                    variant="le2015", init="standard", probe_size=1024, dtype="float32")  # fmt: skip
    for col, value in expected.items():
        assert (runs[col] == value).all(), f"runs table column {col}: {runs[col].tolist()}, expected {value!r}"
    lstm = runs[runs["model"] == "lstm"]
    assert (lstm["forget_bias"] == 1.0).all(), f"LSTM forget_bias {lstm['forget_bias'].tolist()}"
    rnns = runs[runs["model"] == "rnn"]
    pairs = sorted(set(zip(rnns["activation"], rnns["recurrent_init"].fillna("standard"))))
    assert pairs == [("relu", "identity"), ("tanh", "standard")], f"RNNs (activation, recurrent_init): {pairs}"
    assert {p.stem for p in outcome.figures} == {"loss_curves", "dh_norm_through_time"}


def test_quick_lstm_reaches_002(quick):
    claims, tables, _ = quick
    c = claim_starting(claims, "LSTM learns at T = 20: test MSE <= 0.02")
    lstm = _mse(tables, "lstm")
    # Measured in trials at T = 20 after 1000 steps: 0.0037-0.0076, 2.6x below 0.02 at worst; the
    # standard error on 1024 test sequences is ~4% (Gaussian errors), so 2 of 3 seeds at <= 0.02 is a
    # margin of many standard errors (full run at T = 50: 3 of 3 at <= 0.0008).
    assert c.passed and c.value >= 2, f"{c.claim}: {c.measured}; LSTM test MSE per seed {lstm.tolist()}"
    assert c.value == (lstm <= 0.02).sum(), f"{c.claim}: claim says {c.value}, runs table {lstm.tolist()}"


def test_quick_lstm_below_rnn_every_seed(quick):
    claims, tables, _ = quick
    c = claim_starting(claims, "LSTM test MSE below the tanh RNN's")
    lstm, rnn = _mse(tables, "lstm"), _mse(tables, "rnn")
    # Trials: LSTM/RNN ratio at most 0.44 per seed; each MSE has a ~4% standard error (1024 examples),
    # so the ordering cannot flip by sampling noise; the full run's worst ratio is 0.06.
    assert c.passed and c.value == 3, f"{c.claim}: {c.measured}; LSTM {lstm.tolist()}, RNN {rnn.tolist()}"
    assert ((lstm / rnn) < 0.7).all(), f"LSTM/RNN test MSE ratio per seed {(lstm / rnn).tolist()}, expected < 0.7"


def test_quick_rnn_claim_is_present_and_wired_to_the_runs_table(quick):
    claims, tables, _ = quick
    c = claim_starting(claims, "tanh RNN test MSE stays >= 1/12 at T = 20")
    rnn = _mse(tables, "rnn")
    # Not asserted to pass: at T = 20 the tanh RNN learns the task (measured 0.020-0.026); at T = 100 it
    # holds (see adding.py). What is checked: the threshold 1/12 (Var x1), every seed, and the count.
    assert c.expected == ">= 3 of 3 seeds", f"{c.claim}: expected {c.expected!r}"
    assert c.value == (rnn >= 1 / 12).sum(), f"{c.claim}: claim says {c.value}, runs table {rnn.tolist()}"


@pytest.mark.parametrize("model, label", [("gru", "GRU"), ("irnn", "IRNN")])
def test_quick_gru_and_irnn_learn_at_t20(quick, model, label):
    claims, tables, _ = quick
    c = claim_starting(claims, f"{label} learns at T = 20: test MSE <= 0.02")
    mse = _mse(tables, model)
    # Measured at T = 20 after 1000 steps: GRU 0.0012-0.0027, IRNN 0.0005-0.0013, at least 7x below 0.02
    # with a ~4% standard error each (1024 test sequences): every seed, with room for other draws.
    assert c.passed and c.value == 3, f"{c.claim}: {c.measured}; test MSE per seed {mse.tolist()}"
    assert c.value == (mse <= 0.02).sum(), f"{c.claim}: claim says {c.value}, runs table {mse.tolist()}"


def test_quick_lstm_carries_gradient_to_the_first_half(quick):
    claims, tables, _ = quick
    c = claim_starting(claims, "LSTM, step 500: first-half dh share > 0.01")
    # Measured: the LSTM's share at step 500 is 0.79-0.94, 80x above the 10^-2 line (full run, step 1000: >= 0.14).
    assert c.passed and c.value == 3, f"{c.claim}: {c.measured}"


def test_quick_rnn_gradient_decays_faster_than_lstms_at_init(quick):
    _, tables, _ = quick
    share = repro.first_half_share(tables["timesteps"], 0)
    runs = tables["runs"].assign(model=repro.net(tables["runs"])).set_index("run_id")  # the IRNN apart from the RNN
    by = runs[["model", "seed"]].join(share.rename("share")).pivot(index="seed", columns="model", values="share")
    # At initialisation the RNN's gradient shrinks per step back by ~ sqrt(H Var[W_hh]) E[tanh'] ~ 0.55,
    # the LSTM's cell path by ~ sigmoid(forget_bias = 1) = 0.73; over the 10-19 steps back to the first
    # half that is a factor (0.73/0.55)^10-19 ~ 20-200. Measured: RNN 4e-4 to 5e-4, LSTM 8e-3 to 1.4e-2
    # (ratio >= 16); at T = 50, 1e-7 against 4e-4. 10x leaves room for other seeds' draws.
    assert (by["rnn"] * 10 < by["lstm"]).all(), f"first-half dh share at init per seed:\n{by}"


# ---------------------------------------------------------------- measurement code


def test_held_out_mse_doubles_final_loss_and_counts_unfinished_runs_as_infinite():
    runs = pd.DataFrame({
        "run_id": ["a", "b", "c"], "model": ["rnn", "lstm", "lstm"], "seed": [0, 1, 0],
        "status": ["ok", "diverged", "ok"], "final_loss": [0.05, math.nan, 0.001], "probe_size": [512, 512, 2048],
    })  # fmt: skip
    got = repro.held_out_mse(runs)
    assert got["run_id"].tolist() == ["c", "b", "a"], f"order by model, seed: {got['run_id'].tolist()}"
    assert got["mse"].tolist() == [0.002, math.inf, 0.1], f"plain MSE = 2 final_loss: {got['mse'].tolist()}"
    assert got["se"].iloc[0] == pytest.approx(0.002 * math.sqrt(2 / 2048)), f"se {got['se'].iloc[0]}"


@pytest.mark.parametrize("errors, kurtosis", [("normal", 3.0), ("uniform", 1.8)])
def test_mse_standard_error_matches_monte_carlo(errors, kurtosis):
    rng = np.random.default_rng(0)
    n, trials = 256, 4000
    e = rng.normal(size=(trials, n)) if errors == "normal" else rng.uniform(-1, 1, size=(trials, n))
    mses = (e * e).mean(axis=1)  # the MSE of each of 4000 test sets of n examples
    predicted = repro.mse_standard_error(mses.mean(), n, kurtosis)
    # the spread of 4000 estimates has a relative standard error ~ 1/sqrt(2 x 4000) = 1.1%: 5% is 4.4 s.e.
    sd = mses.std()
    assert sd == pytest.approx(predicted, rel=0.05), f"{errors}: Monte-Carlo sd {sd:.3g}, formula {predicted:.3g}"


def test_training_mse_is_the_windowed_mean_of_twice_the_loss():
    rng = np.random.default_rng(1)
    steps = pd.DataFrame({"run_id": ["b"] * 23 + ["a"] * 7, "step": list(range(23)) + list(range(7)),
                          "loss": rng.uniform(size=30)})  # fmt: skip
    got = repro.training_mse(steps.sample(frac=1.0, random_state=0), window=5)
    for rid, run in steps.groupby("run_id"):
        loss = run["loss"].to_numpy()
        expected = [2 * loss[i : i + 5].mean() for i in range(0, len(loss), 5)]  # brute force, per window
        mine = got[got["run_id"] == rid]
        assert mine["mse"].to_numpy() == pytest.approx(expected), f"run {rid}: {mine['mse'].tolist()} vs {expected}"
        assert mine["step"].tolist() == [min(i + 4, len(loss) - 1) for i in range(0, len(loss), 5)]


@pytest.mark.parametrize("r, T", [(0.5, 20), (0.9, 50), (1.0, 10)])
def test_first_half_share_of_a_geometric_gradient(r, T):
    # dh_norm(t) = r^(T-1-t): the first half's mean relative to t = T-1 is
    # (1/(T/2)) sum_{t < T/2} r^(T-1-t) = r^(T/2) (1 - r^(T/2)) / ((1 - r) T/2)  (T/2 for r = 1: share 1)
    t = np.arange(T)
    ts = pd.DataFrame({"run_id": "x", "step": 7, "t": t[::-1], "dh_norm": (r ** (T - 1 - t))[::-1]})
    half = T // 2
    expected = 1.0 if r == 1.0 else r**half * (1 - r**half) / ((1 - r) * half)
    got = repro.first_half_share(ts, 7)["x"]
    assert got == pytest.approx(expected, rel=1e-12), f"r = {r}, T = {T}: share {got}, closed form {expected}"
    with pytest.raises(ValueError, match="step 3: not a logged step"):
        repro.first_half_share(ts, 3)


def test_net_names_the_irnn_apart_from_the_tanh_rnn():
    runs = pd.DataFrame({"model": ["rnn", "rnn", "rnn", "lstm", "gru"], "activation": ["tanh", "relu", "relu", "tanh", "tanh"],
                         "recurrent_init": [None, "identity", None, None, None]})  # fmt: skip
    # a ReLU RNN without the identity W_hh is a plain (ReLU) RNN, not an IRNN
    assert repro.net(runs).tolist() == ["rnn", "irnn", "rnn", "lstm", "gru"], repro.net(runs).tolist()
