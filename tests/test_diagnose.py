"""Diagnosis on constructed runs: each built by running the engine (forward, backward, probes and,
where training matters, SGD steps) with fixed seeds, then labelled from its tables.

Tolerances: measured per-layer factors are compared with mean field's sqrt(chi_1) within 10% (width
128-256, one batch of 128: finite-width and sampling noise are a few percent); a linear RNN with a
scaled orthogonal W_hh has an exact per-step factor (1e-9).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradlab import LSTM, MLP, RNN, probes, schema, theory, train
from gradlab.diagnose import (
    LABELS, NUMBERS, STALLED_FRACTION, Diagnosis, Thresholds, diagnose, diagnose_tables, fit_factor,
)  # fmt: skip
from gradlab.nn import clip, init, losses, optim


def run(model, x, y, *, steps=1, lr=0.0, probe_x=None):
    """A training loop: forward, backward, probes, SGD. Returns the tables and the losses seen."""
    rec = probes.Recorder(model, every=1, last_step=steps - 1, probe_x=probe_x)
    opt = optim.SGD(model.params, lr) if lr else None
    seen = []
    for step in range(steps):
        out, cache = model.forward(x, trace=True)
        loss, dout = losses.mse(out, y)
        seen.append(loss)
        grads = model.backward(dout, cache, input_grad=False)
        rec.record_backward(step, grads, dout=dout, output=out)
        norm, norm_c = clip.clip(grads.params, "none", None)
        if opt is not None:
            opt.step(grads.params)
        rec.record_step(step, loss, norm, norm_c, lr)
    return rec.frames(), seen


def mlp_run(activation, depth, width, init_name, *, seed=0, sigma_w2=1.0, sigma_b2=0.0, probe=True, **kw):
    rng = np.random.default_rng(seed)
    model = MLP([16] + [width] * (depth - 1) + [1], activation, init=init_name, rng=rng, sigma_w2=sigma_w2,
                sigma_b2=sigma_b2)  # fmt: skip
    x, y = rng.standard_normal((128, 16)), rng.standard_normal((128, 1))
    probe_x = rng.standard_normal((probes.DEFAULT_PROBE_SIZE, 16)) if probe else None
    tables, _ = run(model, x, y, probe_x=probe_x, **kw)
    facts = dict(model="mlp", activation=activation, init=init_name, sigma_w2=sigma_w2, sigma_b2=sigma_b2, depth=depth)
    return tables, facts


def has_theory() -> bool:
    try:
        from gradlab import theory  # noqa: F401
    except ImportError:
        return False
    return True


def check_numbers(d: Diagnosis) -> None:
    assert d.label in LABELS
    assert set(d.numbers) == set(NUMBERS)
    assert d.sentence.endswith(".") and "\n" not in d.sentence


# ----------------------------------------------------------------------------------------- MLP labels


def test_deep_sigmoid_at_standard_init_is_vanishing():
    tables, facts = mlp_run("sigmoid", 20, 128, "standard")
    d = diagnose_tables(tables, facts)
    check_numbers(d)
    assert d.label == "vanishing", d.sentence
    n = d.numbers
    assert n["delta_layers"] == 19 and n["delta_log10_change"] < -10
    assert n["delta_factor"] < 0.2 and n["delta_ratio_first_last"] < 1e-10
    assert d.sentence.startswith("delta_norm falls 10^-") and "over 19 layers" in d.sentence
    if has_theory():  # sigma_w2 = 1/3, chi_1 = E[sigmoid'^2] / 3 = 0.02: x0.14 per layer
        assert n["predicted_factor"] == pytest.approx(n["delta_factor"], rel=0.1)
        assert f"mean field predicts x{n['predicted_factor']:.2f}" in d.sentence


def test_tanh_with_large_sigma_w2_is_exploding():
    tables, facts = mlp_run("tanh", 20, 128, "mean_field", sigma_w2=25.0)
    d = diagnose_tables(tables, facts)
    check_numbers(d)
    assert d.label == "exploding", d.sentence
    assert d.numbers["delta_factor"] > 1.4 and d.numbers["delta_log10_change"] > 3
    assert d.sentence.startswith("delta_norm grows 10^")
    if has_theory():
        assert d.numbers["predicted_factor"] == pytest.approx(d.numbers["delta_factor"], rel=0.1)


def test_deep_narrow_relu_is_dying():
    tables, facts = mlp_run("relu", 30, 3, "he_normal")
    d = diagnose_tables(tables, facts)
    check_numbers(d)
    assert d.label == "dying", d.sentence
    assert d.numbers["dead_frac"] >= 0.3 and d.numbers["born_dead_frac"] == d.numbers["dead_frac"]
    assert d.numbers["died_frac"] == 0.0 and d.numbers["dead_step"] == 0
    assert "of hidden units are dead on the probe set at step 0" in d.sentence


@pytest.mark.parametrize(
    "activation, depth, width, init_name, sigma_w2, sigma_b2",
    [("relu", 10, 64, "he_normal", 1.0, 0.0), ("tanh", 20, 256, "mean_field", 1.761, 0.05)],
    ids=["he-relu", "critical-tanh"],
)
def test_he_relu_and_critical_tanh_are_healthy(activation, depth, width, init_name, sigma_w2, sigma_b2):
    tables, facts = mlp_run(activation, depth, width, init_name, sigma_w2=sigma_w2, sigma_b2=sigma_b2)
    d = diagnose_tables(tables, facts)
    check_numbers(d)
    assert d.label == "healthy", d.sentence
    assert abs(d.numbers["delta_log10_change"]) < 0.5 and 0.9 < d.numbers["delta_factor"] < 1.1
    assert d.numbers["dead_frac"] < 0.3
    if has_theory():
        assert d.numbers["predicted_factor"] == pytest.approx(1.0, abs=0.01)


def test_dying_is_judged_on_the_probe_set_only():
    """Without a probe set the same narrow ReLU net has no dead fraction: not "dying"."""
    tables, facts = mlp_run("relu", 30, 3, "he_normal", probe=False)
    d = diagnose_tables(tables, facts)
    assert math.isnan(d.numbers["dead_frac"]) and d.label != "dying"


def test_overflowing_weights_diverge_at_the_first_nonfinite_step():
    rng = np.random.default_rng(1)
    model = MLP([4, 16, 16, 1], "relu", init="he_normal", rng=rng)
    x, y = rng.standard_normal((32, 4)), rng.standard_normal((32, 1))
    tables, seen = run(model, x, y, steps=120, lr=100.0)
    first = next(s for s, loss in enumerate(seen) if not np.isfinite(loss))  # from the loop itself
    assert first > 5  # training ran for a while before the overflow
    d = diagnose_tables(tables, {"model": "mlp"})
    check_numbers(d)
    assert d.label == "diverged" and d.numbers["diverged_step"] == first
    assert f"at step {first}" in d.sentence


def test_diverged_wins_over_everything_and_uses_layers_table_as_fallback():
    tables, facts = mlp_run("relu", 30, 3, "he_normal")  # dying
    layers = tables["layers"].copy()
    layers.loc[layers["layer"] == 2, "delta_norm"] = np.inf
    d = diagnose(None, layers, None, facts)
    assert d.label == "diverged" and d.numbers["diverged_step"] == 0 and "delta_norm of layer 2" in d.sentence


# ----------------------------------------------------------------------------------------- recurrent labels


def rnn_run(activation, scale, *, T=30, seed=0):
    rng = np.random.default_rng(seed)
    model = RNN(2, 32, 1, activation, rng=rng)
    model.params["weight_hh"][...] = scale * init.orthogonal(rng, (32, 32))
    x, y = rng.standard_normal((64, T, 2)), rng.standard_normal((64, 1))
    tables, _ = run(model, x, y)
    return tables, {"model": "rnn", "activation": activation, "weight_hh": model.params["weight_hh"]}


def test_linear_rnn_exploding_with_exact_per_step_factor():
    """h_t = 1.3 Q h_(t-1) + ..., Q orthogonal: ||dL/dh_(t-1)|| = 1.3 ||dL/dh_t|| for every example."""
    tables, facts = rnn_run("identity", 1.3)
    d = diagnose_tables(tables, facts)
    check_numbers(d)
    assert d.label == "exploding"
    assert d.numbers["dh_factor"] == pytest.approx(1.3, rel=1e-9)
    assert d.numbers["dh_log10_change"] == pytest.approx(29 * math.log10(1.3), rel=1e-9)
    assert d.sentence.startswith("dh_norm grows 10^3.3 over 30 steps back in time (x1.30 per step")


def test_contractive_tanh_rnn_is_vanishing_within_pascanu_bound():
    tables, facts = rnn_run("tanh", 0.5)
    d = diagnose_tables(tables, facts)
    check_numbers(d)
    assert d.label == "vanishing"
    if has_theory():
        assert d.numbers["gamma_norm"] == pytest.approx(0.5, rel=1e-9)
        assert d.numbers["dh_factor"] <= d.numbers["gamma_norm"]  # the bound holds per step
        assert "gamma ||W_hh||_2 = 0.50" in d.sentence


def test_lstm_label_comes_from_dh_norm():
    rng = np.random.default_rng(0)
    model = LSTM(2, 16, 1, rng=rng)
    x, y = rng.standard_normal((32, 12, 2)), rng.standard_normal((32, 1))
    tables, _ = run(model, x, y)
    d = diagnose_tables(tables, {"model": "lstm"})
    ts = tables["timesteps"]
    expected, _ = fit_factor(ts["dh_norm"].to_numpy(), ts["t"].to_numpy())
    assert d.numbers["dh_factor"] == pytest.approx(expected, rel=1e-12)
    assert d.numbers["dh_steps"] == 12 and math.isnan(d.numbers["delta_factor"])


# ----------------------------------------------------------------------------------------- the rules themselves


def synthetic_layers(delta: list[float], steps=(0,), dead=None) -> pd.DataFrame:
    """A layers table with the given delta_norm per layer (the last is the output layer)."""
    rows = []
    for s in steps:
        for l, v in enumerate(delta):
            rows.append({"run_id": "", "step": s, "layer": l, "weight_grad_norm": 1.0, "bias_grad_norm": 1.0,
                         "delta_norm": v, "act_mean": 0.0, "act_std": 1.0,
                         "dead_frac": np.nan if dead is None else dead[l], "born_dead_frac": 0.0,
                         "died_frac": np.nan if dead is None else dead[l], "saturated_frac": 0.0,
                         "update_ratio": 0.0})  # fmt: skip
    return pd.DataFrame(rows)


def test_fit_factor_is_exact_on_a_geometric_sequence():
    values = 3.0 * 0.5 ** (9 - np.arange(10))  # shrinks by 1/2 per layer toward the input
    factor, points = fit_factor(values, np.arange(10))
    assert factor == pytest.approx(0.5, rel=1e-12) and points == 10
    assert math.isnan(fit_factor(np.array([1.0, 0.0, np.nan]), np.arange(3))[0])


def test_thresholds_decide_the_label():
    layers = synthetic_layers([10.0**k for k in (-1.5, -1.0, -0.5, 0.0)] + [1.0])  # 10^-1.5 over 4 hidden layers
    d = diagnose(None, layers, None, {"model": "mlp"})
    assert d.label == "healthy" and d.numbers["delta_log10_change"] == pytest.approx(-1.5)
    assert diagnose(None, layers, None, {"model": "mlp"}, Thresholds(vanishing_decades=1.0)).label == "vanishing"
    rising = synthetic_layers([10.0**k for k in (1.5, 1.0, 0.5, 0.0)] + [1.0])
    assert diagnose(None, rising, None, {"model": "mlp"}).label == "healthy"
    assert diagnose(None, rising, None, {"model": "mlp"}, Thresholds(exploding_decades=1.4)).label == "exploding"
    dead = synthetic_layers([1.0] * 5, dead=[0.25, 0.25, 0.25, 0.25, 0.0])
    assert diagnose(None, dead, None, {"model": "mlp"}).label == "healthy"
    assert diagnose(None, dead, None, {"model": "mlp"}, Thresholds(dying_dead_frac=0.25)).label == "dying"
    one_dead_layer = synthetic_layers([1.0] * 5, dead=[0.0, 1.0, 0.0, 0.0, 0.0])  # mean 0.25, one layer all dead
    d = diagnose(None, one_dead_layer, None, {"model": "mlp"})
    assert d.label == "dying" and d.numbers["fully_dead_layers"] == 1
    assert "1 hidden layer is entirely dead" in d.sentence
    with pytest.raises(ValueError, match="vanishing_decades"):
        Thresholds(vanishing_decades=0)
    with pytest.raises(ValueError, match="dying_dead_frac"):
        Thresholds(dying_dead_frac=1.5)


def test_median_over_logged_steps_compares_layers_not_history():
    """A gradient tiny from the first step, and the same at every step, is vanishing; one step with a
    different profile does not move the median."""
    tiny = [1e-9, 1e-6, 1e-3, 1.0, 1.0]
    layers = pd.concat([synthetic_layers(tiny, steps=(0, 1, 2)), synthetic_layers([1.0] * 5, steps=(3,))])
    d = diagnose(None, layers, None, {"model": "mlp"})
    assert d.label == "vanishing" and d.numbers["fit_steps"] == 4
    assert d.numbers["delta_factor"] == pytest.approx(1e-3, rel=1e-9)


def test_exact_zero_delta_below_live_layers_is_vanishing():
    layers = synthetic_layers([0.0, 0.0, 0.5, 1.0, 1.0])
    d = diagnose(None, layers, None, {"model": "mlp"})
    assert d.label == "vanishing" and "exactly 0 in 2" in d.sentence


def test_prediction_only_when_init_is_known(monkeypatch):
    monkeypatch.setattr(theory, "chi1", lambda activation, sigma_w2, sigma_b2=0.0, slope=0.01: 0.25 * sigma_w2)
    monkeypatch.setattr(theory, "init_variance", lambda init, fan_in, fan_out, **kw: {"standard": 1 / 3}[init] / fan_in)
    layers = synthetic_layers([1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    d = diagnose(None, layers, None, {"model": "mlp", "activation": "tanh", "init": "mean_field", "sigma_w2": 1.0})
    assert d.numbers["predicted_factor"] == pytest.approx(0.5) and "mean field predicts x0.50" in d.sentence
    d = diagnose(None, layers, None, {"model": "mlp", "activation": "tanh"})
    assert math.isnan(d.numbers["predicted_factor"]) and "mean field" not in d.sentence
    d = diagnose(None, layers, None, {"model": "mlp", "activation": "sigmoid", "init": "standard"})
    assert d.numbers["chi1"] == pytest.approx(0.25 / 3)


# ----------------------------------------------------------------------------------------- stalled


def test_a_run_that_learns_nothing_is_stalled_and_one_that_learns_is_not():
    def trained(**fields):
        c = {**schema.defaults(), "model.width": 16, "model.depth": 2, "train.steps": 150, "train.log_every": 50,
             "train.probe_size": 256, **fields}  # fmt: skip
        return train.run(c, "s")[0]

    nothing = trained(**{"train.lr": 1e-9})  # the weights barely move: the held-out loss stays the initial net's
    assert nothing["diagnosis"] == "stalled", nothing["diagnosis_text"]
    assert nothing["final_loss"] >= STALLED_FRACTION * nothing["baseline_loss"]
    text = nothing["diagnosis_text"]
    assert f"{nothing['final_loss']:.3g}" in text and f"{nothing['baseline_loss']:.3g}" in text
    learns = trained(**{"train.optimizer": "adam", "train.lr": 0.01})
    assert learns["diagnosis"] == "healthy" and learns["loss_ratio"] < 0.5, learns["diagnosis_text"]
    assert "stalled" not in learns["diagnosis_text"]


def test_stalled_threshold_names_both_losses_and_ranks_below_the_gradient_labels():
    flat = synthetic_layers([1.0] * 5)
    facts = {"model": "mlp", "final_loss": 0.47, "baseline_loss": 0.173}
    d = diagnose(None, flat, None, facts)
    check_numbers(d)
    assert d.label == "stalled" and d.numbers["stalled"] is True
    assert d.numbers["loss_ratio"] == pytest.approx(0.47 / 0.173)
    assert d.sentence.startswith("The held-out loss 0.47 is 2.72x the best constant prediction's 0.173")
    assert diagnose(None, flat, None, dict(facts, final_loss=0.9 * 0.173)).label == "stalled"  # at the threshold
    assert diagnose(None, flat, None, dict(facts, final_loss=0.89 * 0.173)).label == "healthy"
    assert diagnose(None, flat, None, dict(facts, final_loss=0.5), Thresholds(stalled_fraction=3.0)).label == "healthy"
    assert diagnose(None, flat, None, {"model": "mlp"}).numbers["stalled"] is None  # losses unknown: never stalled
    assert diagnose(None, flat, None, dict(facts, final_loss=math.nan)).label == "healthy"  # e.g. diverged
    vanishing = synthetic_layers([1e-9, 1e-6, 1e-3, 1.0, 1.0])
    d = diagnose(None, vanishing, None, facts)  # the cause wins; the sentence adds that it stalled
    assert d.label == "vanishing" and d.numbers["stalled"] is True
    assert "the held-out loss 0.47 is 2.72x the best constant prediction's 0.173" in d.sentence
    dead = synthetic_layers([1.0] * 5, dead=[0.5, 0.5, 0.5, 0.5, 0.0])
    assert diagnose(None, dead, None, facts).label == "dying"
    assert LABELS.index("stalled") == LABELS.index("healthy") + 1 < LABELS.index("vanishing")
    with pytest.raises(ValueError, match="stalled_fraction"):
        Thresholds(stalled_fraction=0)


# ----------------------------------------------------------------------------------------- through time, the last step's loss


def synthetic_timesteps(per_layer: dict[int, tuple[list[float], list[float]]], steps=(0,)) -> pd.DataFrame:
    """A timesteps table: per cell layer, (dh_norm, dh_last_norm) over t."""
    rows = []
    for s in steps:
        for j, (dh, last) in per_layer.items():
            for t, (a, b) in enumerate(zip(dh, last)):
                rows.append({"run_id": "", "step": s, "layer": j, "t": t, "dh_norm": a, "dc_norm": np.nan,
                             "dh_last_norm": b, "jacobian_norm": np.nan})  # fmt: skip
    return pd.DataFrame(rows)


def test_with_the_loss_on_every_step_the_long_range_labels_read_dh_last_norm():
    """dh_norm flat (each step's own loss), dh_last_norm falling 10^-4 back in time: vanishing."""
    T = 9
    flat, falling = [1.0] * T, list(10.0 ** (-4 + 0.5 * np.arange(T)))
    ts = synthetic_timesteps({0: (flat, falling)})
    d = diagnose(None, None, ts, {"model": "rnn", "loss_on": "all"})
    check_numbers(d)
    assert d.label == "vanishing" and d.numbers["dh_column"] == "dh_last_norm"
    assert d.numbers["dh_log10_change"] == pytest.approx(-4.0)
    assert d.sentence.startswith("dh_last_norm falls 10^-4.0 over 9 steps back in time")
    assert diagnose(None, None, ts, {"model": "rnn"}).label == "vanishing"  # inferred: the two columns differ
    last_only = synthetic_timesteps({0: (flat, flat)})
    d = diagnose(None, None, last_only, {"model": "lstm", "loss_on": "last"})
    assert d.label == "healthy" and d.numbers["dh_column"] == "dh_norm" and d.sentence.startswith("dh_norm changes")
    old = ts.drop(columns=["dh_last_norm", "layer"])  # a table written before these columns existed
    assert diagnose(None, None, old, {"model": "rnn", "loss_on": "all"}).numbers["dh_column"] == "dh_norm"


def test_copy_memory_with_the_loss_on_every_step_is_no_longer_healthy():
    """The issue's case, small: a tanh RNN on copy_memory, loss on every step. Its dh_norm is held up by
    every step's own loss; the last step's loss alone shows what reaches back."""
    c = {**schema.defaults(), "model.kind": "rnn", "model.width": 16, "task.name": "copy_memory", "task.T": 30,
         "train.steps": 20, "train.log_every": 10, "train.probe_size": 64}  # fmt: skip
    record, tables = train.run(c, "cm")
    ts = tables["timesteps"]
    step0 = ts[ts["step"] == 0]
    assert step0["dh_norm"].iloc[0] / step0["dh_norm"].iloc[-1] > 1e-2  # dh_norm: no vanishing to see
    assert record["diagnosis"] == "vanishing", record["diagnosis_text"]
    assert record["diagnosis_text"].startswith("dh_last_norm falls")
    assert "stalled at" in record["diagnosis_text"]  # and the loss stalled, said in the same sentence


# ----------------------------------------------------------------------------------------- stacked cells: time and depth


def test_stacked_cells_are_diagnosed_through_time_by_layer_0_and_name_the_layer_that_dies_first():
    T = 9
    falling = list(10.0 ** (-3 + 0.375 * np.arange(T)))  # 10^-3 over 8 steps back
    gently = list(10.0 ** (-1 + 0.125 * np.arange(T)))
    ts = synthetic_timesteps({0: (falling, falling), 1: (gently, gently)})
    d = diagnose(None, None, ts, {"model": "lstm", "loss_on": "last"})
    check_numbers(d)
    assert d.label == "vanishing" and d.numbers["dh_layer"] == 0
    assert d.numbers["dh_log10_change_by_layer"] == pytest.approx((-3.0, -1.0))
    assert "in cell layer 0" in d.sentence and "where it dies first (layer 1: 10^-1.0)" in d.sentence
    # an upper layer that forgets while layer 0, which the inputs enter, keeps its gradient: not vanishing
    swapped = synthetic_timesteps({0: (gently, gently), 1: (falling, falling)})
    d = diagnose(None, None, swapped, {"model": "lstm"})
    assert d.numbers["dh_layer"] == 0 and d.label == "healthy", d.sentence
    assert "the layer the inputs enter; it falls most in layer 1 (layer 1: 10^-3.0)" in d.sentence, d.sentence


def test_stacked_cells_are_diagnosed_through_depth():
    """Flat in time in both layers, but layer 0's gradient 10^-3 below the top layer's at the last step."""
    T = 6
    ts = synthetic_timesteps({0: ([1e-3] * T, [1e-3] * T), 1: ([1.0] * T, [1.0] * T), 2: ([1.0] * T, [1.0] * T)})
    d = diagnose(None, None, ts, {"model": "gru"})
    check_numbers(d)
    assert d.numbers["dh_depth_log10_change"] == pytest.approx(-3.0)
    assert d.label == "vanishing"
    assert d.sentence.startswith("dh_norm at the last step falls 10^-3.0 through depth, from cell layer 2 down to layer 0")
    up = synthetic_timesteps({0: ([1e3] * T, [1e3] * T), 1: ([1.0] * T, [1.0] * T)})
    assert diagnose(None, None, up, {"model": "rnn"}).label == "exploding"
    mild = synthetic_timesteps({0: ([0.5] * T, [0.5] * T), 1: ([1.0] * T, [1.0] * T)})
    d = diagnose(None, None, mild, {"model": "rnn"})
    assert d.label == "healthy" and "at the last step, layer 0's is 10^-0.3 of layer 1's" in d.sentence


def test_a_stacked_lstm_run_is_diagnosed_per_cell_layer():
    rng = np.random.default_rng(0)
    model = LSTM(2, 8, 1, layers=2, rng=rng)
    x, y = rng.standard_normal((16, 10, 2)), rng.standard_normal((16, 1))
    tables, _ = run(model, x, y)
    d = diagnose_tables(tables, {"model": "lstm", "loss_on": "last"})
    check_numbers(d)
    ts = tables["timesteps"]
    for j in (0, 1):
        rows = ts[ts["layer"] == j]
        factor, _ = fit_factor(rows["dh_norm"].to_numpy(), rows["t"].to_numpy())
        assert d.numbers["dh_log10_change_by_layer"][j] == pytest.approx(9 * math.log10(factor), rel=1e-9)
    last = ts[ts["t"] == 9].set_index("layer")["dh_norm"]
    assert d.numbers["dh_depth_log10_change"] == pytest.approx(math.log10(last[0] / last[1]), rel=1e-12)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.floats(0.0, 1.0), st.just(float("nan"))), max_size=70))
def test_nanmean_is_pandas_mean_bit_for_bit(values):
    """diagnose's _nanmean (the dead fractions' means in the runs table) gives the bits of pandas' Series.mean
    on fractions with NaN among them (NaN when all are), so that no table changes."""
    from gradlab.diagnose import _nanmean

    a = np.array(values, dtype=np.float64)
    got, expected = _nanmean(a), float(pd.Series(a, dtype=np.float64).mean())
    assert (math.isnan(got) and math.isnan(expected)) or got == expected, f"{len(a)} values: _nanmean {got!r}, pandas {expected!r}"
