"""Train R runs of one shape as one ensemble computation, each member still a run of its own.

Every member's model is built as train.run builds it alone (its own seed, init, scales), then the R
models are stacked into one model with the member axis (gradlab.nn, ensemble=R) and each member's model
becomes a solo *view* of it: its parameters (and batch norm's buffers) are the member's slices of the
ensemble's arrays, so the optimizer's in-place update of the ensemble updates every view. A step is one
forward and one backward of all members at once, on each member's own batch (drawn from its own
Generator([seed, 1]) as alone); everything that reduces over a member's arrays is done exactly as alone:
its loss (one call with lead 1, whose per-member values equal those alone), its clipping (its gradient norm summed in
the solo order; members of one clip mode in one clip.clip(ensemble=True), whose per-row dots equal the
solo ones), and its probes, through its own probes.Recorder on its view (the trace and gradients of the
step, sliced). The optimizer steps every member with its own lr
of the step (its train.schedule's) and momentum (per-member arrays; every rule is elementwise).

The recurrent models (RNN, LSTM, GRU, stacked cells) work alike: their member axis leads their time-major
arrays, so a member's slice of the states and of the trace is laid out as its run alone lays it out.

Bit-identical: NumPy's stacked matmul over the leading member axis and its sums over the batch axis compute
each member's slice with the same operations, in the same order, as the 2-D ones alone, and every
elementwise rule is the same per element; so a member's tables equal those of the run alone bit for bit
(the tests compare them column by column; wall_s is the ensemble's wall time shared equally).

A member stops at its own last step, or at the step its loss or gradient norm is not finite (status
diverged, its rows end there, as alone): at that step its gradient is zeroed and the optimizer's update of
its slices undone, so its view keeps the weights it had when it stopped; from the next step on it is
dropped from the ensemble (the members still training move to new arrays of R' members, their optimizer
state with them), so a member that diverged early costs nothing after it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from gradlab import probes, tasks, train
from gradlab.nn import GRU, LSTM, MLP, RNN, activations, clip, losses, optim
from gradlab.nn.activations import Activation
from gradlab.nn.trace import CellTrace, Gradients, MLPTrace, SequenceTrace
from gradlab.probes.members import grad_norms, mlp_columns, update_ratios
from gradlab.probes.model import weight_names

Config = dict[str, Any]
Model = MLP | RNN | LSTM | GRU
Optimizer = optim.SGD | optim.Adam
Result = tuple[dict[str, Any], dict[str, pd.DataFrame]]


def supported(config: Config) -> bool:
    """Whether run_ensemble trains this config as a member bit for bit: every float64 run (an MLP, or an RNN,
    LSTM or GRU with the loss on the last step or on every step). float32 runs run alone: their gradient
    norm (np.vdot, BLAS sdot) was measured to differ in its last bits between a member's slice and the same
    numbers in an array of their own."""
    return config["train.dtype"] == "float64"


@dataclass
class Member:
    """One member: its config, run id, solo view, task (as built alone: a file task holds out the member's
    own train.probe_size rows), batch generator, recorder, lr schedule and where it stands."""

    config: Config
    run_id: str
    view: Model
    task: tasks.Task
    batches: np.random.Generator
    recorder: probes.Recorder
    held_out: tuple[np.ndarray, np.ndarray]
    rate: Callable[[int], float]  # its lr of each step (train.learning_rate)
    status: str = "ok"
    diverged_step: int = -1
    done: bool = False

    @property
    def steps(self) -> int:
        return self.config["train.steps"]


def stack(models: list[Model]) -> Model:
    """One ensemble model whose member r is models[r]; each model's params (and an MLP's buffers) become
    views of (slices r of) the ensemble's arrays. The models must have one shape and one code path."""
    ensemble = copy.copy(models[0])
    ensemble.ensemble = len(models)
    ensemble.params = {name: np.stack([m.params[name] for m in models]) for name in models[0].params}
    for name in ("act", "out_act"):  # an MLP's, an RNN's act (the LSTM's and GRU's are fixed)
        if hasattr(ensemble, name):
            setattr(ensemble, name, member_activation([getattr(m, name) for m in models]))
    if not isinstance(ensemble, MLP):
        for r, m in enumerate(models):
            m.params = {name: p[r] for name, p in ensemble.params.items()}
        return ensemble
    ensemble.buffers = {name: np.stack([m.buffers[name] for m in models]) for name in models[0].buffers}
    for r, m in enumerate(models):
        m.params = {name: p[r] for name, p in ensemble.params.items()}
        m.buffers = {name: b[r] for name, b in ensemble.buffers.items()}
    return ensemble


def member_activation(acts: list[Activation]) -> Activation:
    """The members' one activation; leaky ReLUs of different slopes, and ReLUs among them, as one leaky ReLU
    whose slope is one per member (R,) (the same elementwise formulas, each member's entries multiplied by its
    own slope; a ReLU member's slope 0, its forward ReLU's own: gradlab.nn.activations.leaky)."""
    if len({(a.name, a.slope) for a in acts}) == 1:
        return acts[0]
    if not {a.name for a in acts} <= {"relu", "leaky_relu"}:
        raise ValueError(f"an ensemble's members must share their activation, got {sorted({(a.name, a.slope) for a in acts})}")
    relu = [r for r, a in enumerate(acts) if a.name == "relu"]
    return activations.leaky(np.array([a.slope for a in acts]), relu=relu)


def member_trace(trace: MLPTrace | SequenceTrace | None, r: int) -> MLPTrace | SequenceTrace | None:
    """Member r's slice of an ensemble's trace: what its model alone would have traced."""
    if trace is None:
        return None
    if isinstance(trace, SequenceTrace):
        cut = lambda a: None if a is None else a[r]  # noqa: E731
        return SequenceTrace([CellTrace(*(cut(getattr(c, f.name)) for f in fields(CellTrace))) for c in trace.layers])
    return MLPTrace(*([a[r] for a in arrays] for arrays in (trace.z, trace.a, trace.delta, trace.da, trace.phi)))


def run_ensemble(configs: list[Config], run_ids: list[str]) -> list[Result]:
    """Train configs (one shape; see gradlab.sweep.groups) as one ensemble. Returns per member what
    train.run(configs[r], run_ids[r]) returns, bit for bit (wall_s aside)."""
    first = configs[0]
    if not all(supported(c) for c in configs):
        raise ValueError(f"run_ensemble trains float64 runs; got {sorted({(c['model.kind'], c['task.name'], c['train.dtype']) for c in configs})}")
    task = train.build_task(first)
    solos = [train.build_model(c, task) for c in configs]  # sizes and output: the same for every member's task
    weight_hh = [m.params["weight_hh"].copy() if "weight_hh" in m.params else None for m in solos]
    model = stack(solos)
    members = [_member(c, rid, view, train.build_task(c)) for c, rid, view in zip(configs, run_ids, solos)]
    lr = np.array([c["train.lr"] for c in configs])
    momentum = np.array([c["train.momentum"] for c in configs])
    optimizer = optim.get(first["train.optimizer"], model.params, lr, momentum)
    _train(model, members, optimizer, task)
    return [
        train.finish(m.config, m.run_id, m.task, m.view, m.recorder.frames(), m.status, m.diverged_step, w, m.held_out)
        for m, w in zip(members, weight_hh)
    ]  # fmt: skip


def _member(config: Config, run_id: str, view: Model, task) -> Member:
    held_out = task.held_out(config["train.probe_size"])
    recorder = probes.Recorder(
        view, run_id=run_id, every=config["train.log_every"], last_step=config["train.steps"] - 1, probe_x=held_out[0],
        jacobian=config["train.jacobian"],
    )  # fmt: skip
    batches = np.random.default_rng([config["train.seed"], 1])
    return Member(config, run_id, view, task, batches, recorder, held_out, train.learning_rate(config),
                  done=config["train.steps"] == 0)  # fmt: skip


class Batches:
    """Each member's batch of a step, drawn from its own generator as task.sample draws it alone, into
    (R, N, ...) arrays. A teacher-student task's teacher is applied to all members' x at once, as an
    ensemble of R views of the one teacher (the x are drawn as TeacherStudent.sample draws them; the
    tests compare every member with its run alone, so a change there cannot pass unnoticed)."""

    def __init__(self, member_tasks: list[tasks.Task], batch: int) -> None:
        self.tasks, self.batch = member_tasks, batch
        task, members = member_tasks[0], len(member_tasks)  # one task but for a file task's held-out rows
        self.task = task
        x, y = task.sample(np.random.default_rng(0), batch)
        self.x = np.zeros((members, *x.shape), dtype=x.dtype)
        self.y = np.zeros((members, *y.shape), dtype=y.dtype)
        self.teacher = None
        if isinstance(task, tasks.TeacherStudent):
            self.teacher = copy.copy(task.teacher)
            self.teacher.ensemble = members
            self.teacher.params = {k: np.broadcast_to(v, (members, *v.shape)) for k, v in task.teacher.params.items()}

    def draw(self, rngs: dict[int, np.random.Generator]) -> tuple[np.ndarray, np.ndarray]:
        """x, y with member r's rows drawn from rngs[r] (the other members' rows are left as they were)."""
        if self.teacher is None:
            for r, rng in rngs.items():
                self.x[r], self.y[r] = self.tasks[r].sample(rng, self.batch)
            return self.x, self.y
        for r, rng in rngs.items():
            self.x[r] = rng.normal(size=(self.batch, self.task.input_size))  # TeacherStudent.sample's x
        self.y = self.teacher.forward(self.x)[0]  # its y = teacher(x), member by member
        return self.x, self.y


def _train(model: Model, members: list[Member], optimizer, task) -> None:
    """The training loop of train.run, for every member at once (see the module docstring); a member that
    has stopped is dropped from the ensemble at the next step (_drop)."""
    loss_fn = losses.get(task.loss)
    active = members  # the members the ensemble computes: model's member r is active[r]
    batches = Batches([m.task for m in active], members[0].config["train.batch"])
    x_probe = shared_probe(active)
    for step in range(max(m.steps for m in members)):
        live = [r for r, m in enumerate(active) if not m.done]
        if not live:
            break
        if len(live) < len(active):
            active = [active[r] for r in live]
            model, optimizer = _drop(model, optimizer, active, live)
            batches, x_probe = Batches([m.task for m in active], batches.batch), shared_probe(active)
            live = list(range(len(active)))
        logged = {r: active[r].recorder.should_log(step) for r in live}
        x, y = batches.draw({r: active[r].batches for r in live})
        out, cache = model.forward(x, trace=any(logged.values()))
        values, dout = loss_fn(out, y, lead=1)  # each member's loss as alone (gradlab.nn.losses)
        loss = {r: float(values[r]) for r in live}
        grads = model.backward(dout, cache, input_grad=False)
        last = _last_step_backward(model, cache, dout) if any(logged.values()) else None
        due = x_probe is not None and any(logged[r] and active[r].recorder.dead_due(step) for r in live)
        dead = probes.dead_masks(model, x_probe) if due else None  # every member's probe set at once
        optimizer.lr = lr = np.array([m.rate(step) for m in active])  # each member's scheduled lr of the step
        updated = _member_steps(active, live, logged, step, grads, out, dout, loss, lr, last, dead)
        stopped = [r for r in range(len(active)) if r not in updated]
        saved = {name: p[stopped].copy() for name, p in model.params.items()} if stopped else {}
        for g in grads.params.values():
            g[stopped] = 0.0
        before = {n: model.params[n].copy() for n in weight_names(model)} if any(logged.values()) else None
        optimizer.step(grads.params)
        for name, kept in saved.items():  # a member that diverged keeps the weights it stopped with
            model.params[name][stopped] = kept
        ratios = None if before is None else update_ratios(model, before, model.params)  # each member's as alone
        for r, (norm, clipped_norm) in updated.items():
            m = active[r]
            given = ratios[r] if logged[r] else None
            m.recorder.record_step(step, loss[r], norm, clipped_norm, float(lr[r]), ratios=given)
            m.done = step == m.steps - 1


def _drop(model: Model, optimizer: Optimizer, kept: list[Member], rows: list[int]) -> tuple[Model, Optimizer]:
    """The ensemble of the members kept (model's members `rows`) and its optimizer: their views become views
    of new arrays, their optimizer state is carried over; the stopped members' views keep the arrays they
    have, which no longer change. Every member's arithmetic is per member, so none of its bits changes."""
    smaller = stack([m.view for m in kept])
    return smaller, optimizer.members(np.array(rows), smaller.params)


def _last_step_backward(model: Model, cache, dout: np.ndarray) -> Gradients | None:
    """With the loss on every step, the backward of the last step's loss alone through the traced forward
    (for the probes' dh_last_norm), for every member at once, as the Recorder takes it alone; else None."""
    if getattr(model, "output", "last") != "all":
        return None
    return model.backward(probes.last_step_dout(dout), cache, input_grad=False)


def shared_probe(members: list[Member]) -> np.ndarray | None:
    """The members' one probe set stacked R times (R, N, ...), for one ensemble forward of it, when every
    member judges dead units on the same examples (each member's slice of that forward is its forward
    alone); None when their probe sets differ (a file task's held-out rows with different probe sizes)."""
    first = members[0].recorder.dead
    if first is None or any(m.recorder.dead is None or not np.array_equal(m.recorder.dead.x_probe, first.x_probe) for m in members):
        return None
    return np.ascontiguousarray(np.broadcast_to(first.x_probe, (len(members), *first.x_probe.shape)))


def _member_steps(members, live, logged, step, grads, out, dout, loss, lr, last=None, dead=None) -> dict[int, tuple[float, float]]:
    """Per live member: its probes of the backward, its clipping and its divergence check, as train.run
    does them (last: _last_step_backward's Gradients, or None; dead: the ensemble's dead_masks of the shared
    probe set, or None). Returns {member: (norm, clipped norm)} of the members the optimizer then updates; a
    member that diverged records its last row here and is done."""
    norms, columns = _layer_columns(members, grads) if any(logged.values()) else (None, None)
    for r in live:
        if logged[r]:  # before clipping, which rescales the gradients in place
            member_grads = Gradients({name: g[r] for name, g in grads.params.items()}, trace=member_trace(grads.trace, r))
            member_last = None if last is None else Gradients({}, trace=member_trace(last.trace, r))
            probe = None if dead is None else ([mask[r] for mask in dead[0]], dead[1][r])
            members[r].recorder.record_backward(
                step, member_grads, dout=dout[r], output=out[r], last=member_last, dead_probe=probe,
                grad_norms=(norms[0][r], norms[1][r]), columns=None if columns is None else columns[r],
                snapshot_weights=False,  # _train gives record_step the update ratios
            )  # fmt: skip
    updated = {}
    for r, (norm, clipped_norm) in _clip(members, live, grads.params).items():
        m = members[r]
        if not (math.isfinite(loss[r]) and math.isfinite(norm)):  # overflow: stop, keep what was logged
            m.status, m.diverged_step, m.done = "diverged", step, True
            unmoved = probes.update_ratios(m.view, probes.snapshot(m.view)) if logged[r] else None  # as alone: no step
            m.recorder.record_step(step, loss[r], norm, clipped_norm, float(lr[r]), ratios=unmoved)
            continue
        updated[r] = (norm, clipped_norm)
    return updated


def _layer_columns(members: list[Member], grads: Gradients) -> tuple[tuple[np.ndarray, np.ndarray], list[dict] | None]:
    """The layers table's gradient norms (R, L) each, and an MLP's trace columns per member (else None), for all
    members at once, each member's the bits its Recorder takes alone (gradlab.probes.members)."""
    views = [m.view for m in members]
    columns = mlp_columns(views, grads.trace) if isinstance(grads.trace, MLPTrace) else None
    return grad_norms(views[0], grads.params), columns


def _clip(members: list[Member], live: list[int], grads: dict[str, np.ndarray]) -> dict[int, tuple[float, float]]:
    """Each live member's gradient clipped as alone: {member: (norm, clipped norm)}. Members of one clip mode
    are clipped in one clip.clip(ensemble=True) over every member (each member's norm is its row's BLAS
    dots summed in the solo order, its scale c / norm the same quotient: the same bits; a member not live
    is clipped too, its gradient is zeroed after); members of different modes one by one."""
    modes = {members[r].config["train.clip_mode"] for r in live}
    if len(modes) > 1:
        return {r: clip.clip({name: g[r] for name, g in grads.items()}, members[r].config["train.clip_mode"], members[r].config["train.clip"])
                for r in live}  # fmt: skip
    mode, alive = modes.pop(), set(live)
    threshold = None if mode == "none" else np.array([m.config["train.clip"] if r in alive else 1.0 for r, m in enumerate(members)])
    norm, clipped_norm = clip.clip(grads, mode, threshold, ensemble=True)
    return {r: (float(norm[r]), float(clipped_norm[r])) for r in live}
