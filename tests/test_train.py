"""What a run stores for the figures, so that they never rebuild it: gamma ||W_hh||_2 of the RNN's
initial weights (gamma_norm) and where the loss sits (loss_on)."""

from __future__ import annotations

import math

import pytest

from gradlab import schema, theory, train

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
