"""What a run stores for the figures, so that they never rebuild it: gamma ||W_hh||_2 of the RNN's
initial weights (gamma_norm) and where the loss sits (loss_on); and the cures through a run: the GRU,
stacked cells, normalized and residual MLPs from their config fields to their tables, with batch norm's
running statistics left to training alone."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradlab import GRU, LSTM, MLP, probes, schema, theory, train
from gradlab.nn import clip, losses, optim
from gradlab.sweep import config as sweep_config

SMALL = {"model.width": 5, "train.steps": 3, "train.log_every": 1, "train.probe_size": 8, "train.batch": 4}


def config(fields: dict | None = None) -> dict:
    """A resolved config: the defaults, small sizes, then `fields` (dotted keys)."""
    return {**schema.defaults(), **SMALL, **(fields or {})}


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_an_rnn_run_stores_gamma_norm_of_its_initial_weights(activation):
    c = config({"model.kind": "rnn", "model.activation": activation, "task.name": "adding", "task.T": 6,
                "train.lr": 10.0})
    initial = train.build_model(c, train.build_task(c)).params["weight_hh"]  # the same seed: the same weights
    record, _ = train.run(c, "r")
    assert record["gamma_norm"] == theory.gamma_norm(initial, activation)  # before training, however far lr moves it
    assert record["loss_on"] == "last"


def test_loss_on_follows_the_task_and_gamma_norm_is_nan_without_an_rnn():
    lstm, _ = train.run(config({"model.kind": "lstm", "task.name": "copy_memory", "task.T": 12}), "l")
    assert lstm["loss_on"] == "all" and math.isnan(lstm["gamma_norm"])
    mlp, _ = train.run(config({"model.kind": "mlp", "model.depth": 2}), "m")
    assert mlp["loss_on"] == "" and math.isnan(mlp["gamma_norm"])


def test_a_failed_run_has_an_empty_loss_on():
    assert train.run_record(config(), "f", status="failed", error="boom")["loss_on"] == ""


# ----------------------------------------------------------------------------------------- the cures, through a run
TINY = {"width": 5, "steps": 3, "log_every": 1, "probe_size": 16, "batch": 8}


def grid_run(model: dict, task: dict | None = None, **train_fields):
    """Through the config machinery: validate, expand, resolve, then run the one run: (config, record, tables)."""
    data = {"model": {"width": TINY["width"], **model}, "task": task or {},
            "train": {k: v for k, v in TINY.items() if k != "width"} | train_fields}  # fmt: skip
    grid = sweep_config.from_dict(data).grid()
    assert len(grid) == 1
    record, tables = train.run(grid[0], sweep_config.run_id(grid[0]))
    assert record["status"] == "ok" and math.isfinite(record["final_loss"]), record["error"]
    return grid[0], record, tables


def test_a_tiny_gru_run():
    c, record, tables = grid_run({"kind": "gru"}, {"name": "adding", "T": 6})
    model = train.build_model(c, train.build_task(c))
    assert isinstance(model, GRU) and model.num_layers == 1 and "bias_hh" in model.params
    assert record["model"] == "gru" and record["layers"] == 1 and record["norm"] == "none"
    assert tables["layers"]["layer"].tolist() == [0, 1] * 3  # the cell, the readout; at steps 0, 1 and 2 (the last)
    ts = tables["timesteps"]
    assert set(ts["layer"]) == {0} and len(ts) == 3 * 6
    assert ts["dh_last_norm"].tolist() == ts["dh_norm"].tolist()  # the loss is on the last step
    assert record["diagnosis"] in ("healthy", "stalled", "vanishing", "exploding", "dying")


def test_a_two_layer_lstm_run():
    c, record, tables = grid_run({"kind": "lstm", "layers": 2}, {"name": "adding", "T": 6}, jacobian=True)
    model = train.build_model(c, train.build_task(c))
    assert isinstance(model, LSTM) and model.num_layers == 2 and "weight_hh_l1" in model.params
    assert record["layers"] == 2
    assert tables["layers"]["layer"].tolist() == [0, 1, 2] * 3
    ts = tables["timesteps"]
    assert ts[ts["step"] == 0][["layer", "t"]].values.tolist() == [[j, t] for j in (0, 1) for t in range(6)]
    assert np.isfinite(ts["jacobian_norm"]).all() and np.isfinite(ts["dc_norm"]).all()
    assert "cell layer" in record["diagnosis_text"]  # diagnosed through time and depth
    assert math.isfinite(record["dh_depth_log10_change"])


def test_a_stacked_gru_with_the_loss_on_every_step_records_the_last_steps_gradient():
    _, record, tables = grid_run({"kind": "gru", "layers": 2}, {"name": "copy_memory", "T": 4})
    ts = tables["timesteps"]
    assert record["loss_on"] == "all" and np.isfinite(ts["dh_last_norm"]).all()
    early = ts["t"] < ts["t"].max()
    assert (ts["dh_last_norm"][early] != ts["dh_norm"][early]).all()
    assert "dh_last_norm" in record["diagnosis_text"]


@pytest.mark.parametrize("model, check", [
    ({"norm": "layer"}, lambda m: m.norm == "layer" and "layers.0.norm.weight" in m.params and not m.buffers),
    ({"norm": "batch"}, lambda m: m.norm == "batch" and "layers.0.norm.running_var" in m.buffers),
    ({"residual": True, "residual_scale": 0.5}, lambda m: m.residual and m.residual_scale == 0.5 and m.has_residual(1)),
])  # fmt: skip
def test_normalized_and_residual_mlp_runs(model, check):
    c, record, tables = grid_run({"kind": "mlp", "depth": 3, **model})
    built = train.build_model(c, train.build_task(c))
    assert isinstance(built, MLP) and check(built)
    assert all(record[k] == c[f"model.{k}"] for k in ("norm", "residual", "residual_scale"))
    layers = tables["layers"]
    assert layers["layer"].tolist() == [0, 1, 2, 3] * 3 and np.isfinite(layers["da_norm"]).all()
    assert len(tables["timesteps"]) == 0
    assert "mean field" not in record["diagnosis_text"]  # mean field's recursion is of the plain MLP


def test_batch_norms_running_statistics_are_untouched_by_the_probes_and_the_evaluation():
    """The run's held-out loss equals a replay of its training without any probe, evaluated in eval mode:
    had the probe set's forwards (every step here) or the evaluation moved the running statistics, the
    eval-mode loss would differ."""
    c = config({"model.norm": "batch", "model.depth": 3, "model.activation": "relu", "train.steps": 6,
                "train.probe_size": 64, "train.optimizer": "adam", "train.lr": 0.05})  # fmt: skip
    record, _ = train.run(c, "bn")
    task = train.build_task(c)
    model = train.build_model(c, task)
    loss_fn = losses.get(task.loss)
    opt = optim.get(c["train.optimizer"], model.params, c["train.lr"], c["train.momentum"])
    batches = np.random.default_rng([c["train.seed"], 1])
    for _ in range(c["train.steps"]):
        x, y = task.sample(batches, c["train.batch"])
        out, cache = model.forward(x)
        grads = model.backward(loss_fn(out, y)[1], cache, input_grad=False)
        clip.clip(grads.params, c["train.clip_mode"], c["train.clip"])
        opt.step(grads.params)
    x_probe, y_probe = task.held_out(c["train.probe_size"])
    running = {k: v.copy() for k, v in model.buffers.items()}
    assert record["final_loss"] == loss_fn(model.forward(x_probe, train=False)[0], y_probe)[0]
    assert record["final_loss"] != loss_fn(model.forward(x_probe)[0], y_probe)[0]  # training mode is another number
    assert any(not np.array_equal(running[k], model.buffers[k]) for k in running)  # ... and moves the statistics
    before = {k: v.copy() for k, v in model.buffers.items()}
    train.evaluate(model, x_probe)
    probes.dead_masks(model, x_probe)
    assert all(np.array_equal(before[k], model.buffers[k]) for k in before)
