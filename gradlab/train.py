"""Train one resolved config: build the task and the model, run the optimizer with clipping (at the lr of
train.schedule for each step: gradlab.nn.schedule; the steps table's lr column is that rate), log
through the probes, evaluate on the held-out set, diagnose, and return the tidy tables.

Probes (gradlab.probes.Recorder) log the steps table at every step and the layers and timesteps
tables every `log_every` steps (and the first and last); dead units are judged on the held-out set.
A run is deterministic: the weights come from Generator([seed, 0]), the batches from
Generator([seed, 1]), the task's own randomness (a teacher's weights) from its fixed seed 0, and the
held-out set from task.held_out(probe_size). An inf/NaN loss or gradient stops the run as
"diverged" at that step; everything logged before it is kept.

Batch norm (model.norm = "batch"): training normalizes each batch with its own statistics and updates
the running ones; the held-out loss (final_loss) is evaluated in eval mode, forward(x, train=False), with
the running statistics, as the trained network would be used. The dead-unit probe forwards the held-out
set in training mode (its batch statistics: the network that trains) and restores the running statistics
after it (gradlab.probes.dead), so neither the probe nor the evaluation ever changes them.

With the loss on every step, each logged step runs one more backward through the same forward, of the
last step's loss alone, for the timesteps table's dh_last_norm (gradlab.probes.Recorder).

The runs-table row also holds what the figures need to know of the run, so that they never rebuild
it: where the loss sits (loss_on) and, among the diagnosis numbers, gamma ||W_hh||_2 of the RNN's
initial weights (gamma_norm, which the diagnosis computes from the copy taken before training).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from gradlab import probes, tasks
from gradlab.diagnose import diagnose
from gradlab.nn import GRU, LSTM, MLP, RNN, clip, losses, optim, schedule
from gradlab.schema import FIELDS, column

Config = dict[str, Any]


TASK_FIELDS = tuple(key for key in FIELDS if key.startswith("task."))


def build_task(config: Config) -> tasks.Task:
    """The config's task. Tasks are deterministic and never changed by training (a teacher's weights come
    from its fixed seed), so the few last built are kept per process: a sweep builds each one once. A file
    task holds out train.probe_size of its rows, so its build depends on that too."""
    holdout = config["train.probe_size"] if config["task.name"] == "file" else None
    return _task(tuple(config[key] for key in TASK_FIELDS), holdout)


@functools.lru_cache(maxsize=8)
def _task(values: tuple, holdout: int | None = None) -> tasks.Task:
    config = dict(zip(TASK_FIELDS, values))
    name, options = config["task.name"], {}
    if name == "file":
        classes = config["task.classes"] if config["task.loss"] == "cross_entropy" else None
        return tasks.get(name, path=config["task.path"], loss=config["task.loss"], holdout=holdout, classes=classes,
                         sha256=config["task.sha256"] or None)  # fmt: skip
    if name in ("adding", "temporal_order", "copy_memory"):
        options["T"] = config["task.T"]
    if name == "adding":
        options["variant"] = config["task.variant"]
    if name in ("teacher_student", "gaussian_blobs"):
        options["input_size"] = config["task.input_size"]
    if name == "gaussian_blobs":
        options["classes"] = config["task.classes"]
    return tasks.get(name, **options)


def build_model(config: Config, task: tasks.Task) -> MLP | RNN | LSTM | GRU:
    rng = np.random.default_rng([config["train.seed"], 0])
    kind, width = config["model.kind"], config["model.width"]
    common = dict(
        init=config["model.init"], rng=rng, dtype=config["train.dtype"], gain=config["model.gain"],
        sigma_w2=config["model.sigma_w2"], sigma_b2=config["model.sigma_b2"],
    )  # fmt: skip
    if kind == "mlp":
        sizes = [task.input_size] + [width] * config["model.depth"] + [task.output_size]
        norm = None if config["model.norm"] == "none" else config["model.norm"]
        return MLP(
            sizes, config["model.activation"], config["model.output_activation"], slope=config["model.slope"], norm=norm,
            residual=config["model.residual"], residual_scale=config["model.residual_scale"], **common,
        )  # fmt: skip
    recurrent = dict(
        layers=config["model.layers"], output=task.output, truncate=config["model.truncate"],
        recurrent_init=config["model.recurrent_init"], spectral_radius=config["model.spectral_radius"], **common,
    )  # fmt: skip
    if kind == "rnn":
        return RNN(task.input_size, width, task.output_size, config["model.activation"], slope=config["model.slope"], **recurrent)
    if kind == "gru":
        return GRU(task.input_size, width, task.output_size, **recurrent)
    return LSTM(task.input_size, width, task.output_size, forget_bias=config["model.forget_bias"], **recurrent)


def learning_rate(config: Config) -> Callable[[int], float]:
    """The run's learning rate of each step t (gradlab.nn.schedule: train.schedule and its parameters)."""
    return schedule.get(
        config["train.schedule"], config["train.lr"], steps=max(1, config["train.steps"]),  # steps 0: never called
        decay_every=config["train.decay_every"],
        decay=config["train.decay"], warmup_steps=config["train.warmup_steps"], min_lr=config["train.min_lr"],
    )  # fmt: skip


def evaluate(model: MLP | RNN | LSTM | GRU, x: np.ndarray) -> np.ndarray:
    """The model's output on held-out x: an MLP in eval mode (batch norm's running statistics, unchanged)."""
    return model.forward(x, train=False)[0] if isinstance(model, MLP) else model.forward(x)[0]


def run_record(config: Config, run_id: str, **fields: Any) -> dict[str, Any]:
    """The runs-table row: every config field under its column name, then the outcome fields."""
    record = {"run_id": run_id, **{column(key): value for key, value in config.items()}}
    record.update(status="ok", error="", diverged_step=-1, final_loss=math.nan, baseline_loss=math.nan,
                  loss_on="", diagnosis="", diagnosis_text="", wall_s=math.nan)  # fmt: skip
    record.update(fields)
    return record


DIAGNOSIS_COLUMNS = (
    "delta_factor", "delta_log10_change", "dh_factor", "dh_log10_change", "dh_depth_log10_change", "dead_frac", "gamma_norm",
    "loss_ratio",
)


def run(config: Config, run_id: str = "") -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """Train one config. Returns (runs-table row, {"steps", "layers", "timesteps": DataFrame})."""
    task = build_task(config)
    model = build_model(config, task)
    loss_fn = losses.get(task.loss)
    optimizer = optim.get(config["train.optimizer"], model.params, config["train.lr"], config["train.momentum"])
    batches = np.random.default_rng([config["train.seed"], 1])
    steps, batch, rate = config["train.steps"], config["train.batch"], learning_rate(config)
    mode, threshold = config["train.clip_mode"], config["train.clip"]
    x_probe, y_probe = task.held_out(config["train.probe_size"])
    weight_hh = model.params["weight_hh"].copy() if "weight_hh" in model.params else None
    recorder = probes.Recorder(
        model, run_id=run_id, every=config["train.log_every"], last_step=steps - 1, probe_x=x_probe,
        jacobian=config["train.jacobian"],
    )  # fmt: skip
    status, diverged_step = "ok", -1
    for step in range(steps):
        optimizer.lr = lr = rate(step)
        logged = recorder.should_log(step)
        x, y = task.sample(batches, batch)
        out, cache = model.forward(x, trace=logged)
        loss, dout = loss_fn(out, y)
        grads = model.backward(dout, cache, input_grad=False)
        if logged:
            recorder.record_backward(step, grads, dout=dout, output=out, cache=cache)
        norm, clipped_norm = clip.clip(grads.params, mode, threshold)
        if not (math.isfinite(loss) and math.isfinite(norm)):  # overflow: stop, keep what was logged
            status, diverged_step = "diverged", step
            recorder.record_step(step, loss, norm, clipped_norm, lr)
            break
        optimizer.step(grads.params)
        recorder.record_step(step, loss, norm, clipped_norm, lr)
    return finish(config, run_id, task, model, recorder.frames(), status, diverged_step, weight_hh, (x_probe, y_probe))


def finish(
    config: Config, run_id: str, task: tasks.Task, model: MLP | RNN | LSTM | GRU, tables: dict[str, pd.DataFrame],
    status: str, diverged_step: int, weight_hh: np.ndarray | None, held_out: tuple[np.ndarray, np.ndarray],
) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """After training: the held-out loss (of a run that did not diverge), the diagnosis and the runs-table
    row. model: the trained model (or an ensemble member's solo view of it); weight_hh its initial W_hh;
    held_out: the (x, y) of task.held_out(train.probe_size)."""
    loss_fn = losses.get(task.loss)
    x_probe, y_probe = held_out
    final_loss = loss_fn(evaluate(model, x_probe), y_probe)[0] if status == "ok" else math.nan
    loss_on = "" if config["model.kind"] == "mlp" else task.output
    facts = {
        "model": config["model.kind"], "activation": config["model.activation"], "init": config["model.init"],
        "sigma_w2": config["model.sigma_w2"], "sigma_b2": config["model.sigma_b2"], "slope": config["model.slope"],
        "gain": config["model.gain"], "depth": config["model.depth"] + 1, "weight_hh": weight_hh,
        "loss_on": loss_on, "layers": config["model.layers"], "norm": config["model.norm"],
        "residual": config["model.residual"], "final_loss": final_loss, "baseline_loss": task.baseline_loss,
    }  # fmt: skip
    verdict = diagnose(tables["steps"], tables["layers"], tables["timesteps"], facts)
    record = run_record(
        config, run_id, status=status, diverged_step=diverged_step, final_loss=final_loss,
        baseline_loss=task.baseline_loss, loss_on=loss_on,
        diagnosis=verdict.label, diagnosis_text=verdict.sentence,
        **{k: _number(verdict.numbers.get(k)) for k in DIAGNOSIS_COLUMNS},
    )  # fmt: skip
    return record, tables


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


