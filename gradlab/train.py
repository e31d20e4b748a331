"""Train one resolved config: build the task and the model, run the optimizer with clipping, log
through the probes, evaluate on the held-out set, diagnose, and return the tidy tables.

A run is deterministic: the weights come from Generator([seed, 0]), the batches from
Generator([seed, 1]), the task's own randomness (a teacher's weights) from its fixed seed 0, and the
held-out set from task.held_out(probe_size). An inf/NaN loss or gradient stops the run as
"diverged" at that step; everything logged before it is kept.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from gradlab import tasks
from gradlab.nn import LSTM, MLP, RNN, clip, losses, optim
from gradlab.sweep.schema import FIELDS, column

Config = dict[str, Any]


def build_task(config: Config) -> tasks.Task:
    name, options = config["task.name"], {}
    if name in ("adding", "temporal_order", "copy_memory"):
        options["T"] = config["task.T"]
    if name == "adding":
        options["variant"] = config["task.variant"]
    if name in ("teacher_student", "gaussian_blobs"):
        options["input_size"] = config["task.input_size"]
    if name == "gaussian_blobs":
        options["classes"] = config["task.classes"]
    return tasks.get(name, **options)


def build_model(config: Config, task: tasks.Task) -> MLP | RNN | LSTM:
    rng = np.random.default_rng([config["train.seed"], 0])
    kind, width = config["model.kind"], config["model.width"]
    common = dict(
        init=config["model.init"], rng=rng, dtype=config["train.dtype"], gain=config["model.gain"],
        sigma_w2=config["model.sigma_w2"], sigma_b2=config["model.sigma_b2"],
    )  # fmt: skip
    if kind == "mlp":
        sizes = [task.input_size] + [width] * config["model.depth"] + [task.output_size]
        return MLP(sizes, config["model.activation"], config["model.output_activation"], slope=config["model.slope"], **common)
    recurrent = dict(
        output=task.output, truncate=config["model.truncate"], recurrent_init=config["model.recurrent_init"],
        spectral_radius=config["model.spectral_radius"], **common,
    )  # fmt: skip
    if kind == "rnn":
        return RNN(task.input_size, width, task.output_size, config["model.activation"], slope=config["model.slope"], **recurrent)
    return LSTM(task.input_size, width, task.output_size, forget_bias=config["model.forget_bias"], **recurrent)


def run_record(config: Config, run_id: str, **fields: Any) -> dict[str, Any]:
    """The runs-table row: every config field under its column name, then the outcome fields."""
    record = {"run_id": run_id, **{column(key): value for key, value in config.items()}}
    record.update(status="ok", error="", diverged_step=-1, final_loss=math.nan, baseline_loss=math.nan,
                  diagnosis="", diagnosis_text="", wall_s=math.nan)  # fmt: skip
    record.update(fields)
    return record


def should_log(step: int, steps: int, every: int) -> bool:
    """Log every `every` steps, and always the first and the last step."""
    return step % every == 0 or step == steps - 1


def run(config: Config, run_id: str = "") -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """Train one config. Returns (runs-table row, {"steps", "layers", "timesteps": DataFrame})."""
    task = build_task(config)
    model = build_model(config, task)
    loss_fn = losses.get(task.loss)
    optimizer = optim.get(config["train.optimizer"], model.params, config["train.lr"], config["train.momentum"])
    batches = np.random.default_rng([config["train.seed"], 1])
    steps, every, batch = config["train.steps"], config["train.log_every"], config["train.batch"]
    mode, threshold = config["train.clip_mode"], config["train.clip"]
    log = StepLog(run_id)
    status, diverged_step = "ok", -1
    for step in range(steps):
        logged = should_log(step, steps, every)
        x, y = task.sample(batches, batch)
        out, cache = model.forward(x, trace=logged)
        loss, dout = loss_fn(out, y)
        grads = model.backward(dout, cache, input_grad=False)
        norm, clipped_norm = clip.clip(grads.params, mode, threshold)
        if not (math.isfinite(loss) and math.isfinite(norm)):
            status, diverged_step = "diverged", step
            break
        optimizer.step(grads.params)
        if logged:
            log.step(step, loss, norm, clipped_norm, config["train.lr"])
    final_loss = evaluate(model, task, loss_fn, config["train.probe_size"]) if status == "ok" else math.nan
    record = run_record(
        config, run_id, status=status, diverged_step=diverged_step, final_loss=final_loss, baseline_loss=task.baseline_loss
    )
    return record, {"steps": log.frame()}


def evaluate(model: MLP | RNN | LSTM, task: tasks.Task, loss_fn, n: int) -> float:
    x, y = task.held_out(n)
    return loss_fn(model.forward(x)[0], y)[0]


class StepLog:
    """Rows of the steps table, collected as lists and framed once with explicit dtypes."""

    def __init__(self, run_id: str) -> None:
        self.run_id, self.rows = run_id, []

    def step(self, step: int, loss: float, norm: float, clipped_norm: float, lr: float) -> None:
        self.rows.append((step, loss, norm, clipped_norm, clipped_norm < norm, lr))

    def frame(self) -> pd.DataFrame:
        cols = list(zip(*self.rows)) if self.rows else [[]] * 6
        return pd.DataFrame({
            "run_id": pd.Series([self.run_id] * len(self.rows), dtype=str),
            "step": pd.Series(cols[0], dtype="int64"),
            "loss": pd.Series(cols[1], dtype="float64"),
            "grad_norm": pd.Series(cols[2], dtype="float64"),
            "grad_norm_clipped": pd.Series(cols[3], dtype="float64"),
            "clipped": pd.Series(cols[4], dtype="bool"),
            "lr": pd.Series(cols[5], dtype="float64"),
        })  # fmt: skip
