"""Recording over a run: which steps are logged, and the Recorder that collects the three tables.

Logging: `should_log(step, every, last_step)` is true at step 0, at every multiple of `every` and at
the last step. The trace-based tables (layers, timesteps) are taken on logged steps only; the steps
table (a handful of scalars the training loop computes anyway) can be recorded at every step, so the
first non-finite step is exact (Recorder does so).

Typical loop (what gradlab.train does):

    rec = Recorder(model, run_id=rid, every=10, last_step=steps - 1, probe_x=x_probe)
    for step in range(steps):
        log = rec.should_log(step)
        out, cache = model.forward(x, trace=log)
        loss, dout = losses.mse(out, y)
        grads = model.backward(dout, cache)
        if log:
            rec.record_backward(step, grads, dout=dout, output=out, cache=cache)  # before clipping and the update
        norm, norm_clipped = clip.clip(grads.params, mode, c)
        opt.step(grads.params)
        rec.record_step(step, loss, norm, norm_clipped, lr)          # after the update
    tables = rec.frames()                                            # {"steps", "layers", "timesteps"}
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pandas as pd

from gradlab import _process

from gradlab.nn import MLP
from gradlab.nn.trace import Gradients
from gradlab.probes.dead import DeadTracker
from gradlab.probes.frames import layers_frame, steps_frame, timesteps_frame
from gradlab.probes.layers import _grad_norms, layer_stats, snapshot, update_ratios, update_ratios_from_norms
from gradlab.probes.model import Array, Model, weight_names
from gradlab.probes.steps import step_record
from gradlab.probes.timesteps import last_step_dout, timestep_stats


def should_log(step: int, every: int, last_step: int | None = None) -> bool:
    """True at step 0, at every multiple of `every` (>= 1) and at `last_step` (the final step, if known)."""
    if every < 1:
        raise ValueError(f"every must be a positive integer, got {every!r}")
    return step == 0 or step % every == 0 or (last_step is not None and step == last_step)


class Recorder:
    """Collects the three tables over a run (see the module docstring for the loop).

    every: layers and timesteps are recorded on steps where should_log(step, every, last_step);
    the steps table gets a row at every record_step call. probe_x: the probe set for dead units,
    evaluated on the logged steps where should_log(step, dead_every, last_step) (default: all of
    them); elsewhere, and without a probe set, dead_frac, born_dead_frac, died_frac are NaN and
    collapsed is NA. The probe set costs a forward on its 512 examples: with logging at every step,
    set dead_every to 10 or more to keep it a small part of training. jacobian: measure jacobian_norm
    (costly: seconds per logged step at H = 128, T = 100; jacobian_examples limits it to the first
    examples of the batch). dh_last_norm of a recurrent model with the loss on every step needs the
    forward's cache: record_backward then runs one more backward through it, of the last step's loss
    alone (gradlab.probes.timesteps.last_step_dout); without the cache that column is NaN. optimizer:
    the optimizer stepping the model's own parameter arrays (gradlab.nn.optim): on a logged step it
    reports the norms of its updates (measure_next) and the weights are not copied (update_ratio then
    NaN if no optimizer step follows); without it, or for one stepping other arrays (an ensemble's, of
    which the model is a view), a snapshot of the weights is taken. background: compute the columns
    read from the trace (all but the gradient norms, the dead-unit probe and the Jacobians, which are
    taken at once) in a helper thread while training goes on, collected at the next record_backward
    or frames(): None (default) for a recurrent model when gradlab._process's rule sees a free core for
    it (an MLP's columns, a few NumPy calls per layer, took longer beside training than at once: README,
    Performance), True always, False never. The trace of the step then lives until it is collected; the
    columns are the same.
    """

    def __init__(
        self,
        model: Model,
        *,
        run_id: str = "",
        every: int = 1,
        last_step: int | None = None,
        probe_x: Array | None = None,
        jacobian: bool = False,
        jacobian_method: str = "auto",
        jacobian_examples: int | None = None,
        dead_every: int | None = None,
        optimizer: object | None = None,
        background: bool | None = None,
    ) -> None:
        should_log(0, every)  # validates every
        self.dead_every = every if dead_every is None else dead_every
        should_log(0, self.dead_every)
        self.model, self.run_id, self.every, self.last_step = model, run_id, every, last_step
        self.sequence = not isinstance(model, MLP)
        self.jacobian, self.jacobian_method, self.jacobian_examples = jacobian, jacobian_method, jacobian_examples
        self.dead = DeadTracker(probe_x) if probe_x is not None else None
        self.steps: list[tuple] = []
        self.layers: list[tuple[int, dict[str, Array] | Future, Array]] = []  # (step, columns, update ratios)
        self.timesteps: list[tuple[int, dict[str, Array] | Future]] = []
        self._before: dict[str, Array] | None = None
        self._buffer: dict[str, Array] | None = None  # the snapshot's arrays, reused from one log to the next
        self._pending: tuple[int, dict[str, Array], bool | None] | None = None
        self.weights = weight_names(model)
        self.optimizer = optimizer if _steps_these(optimizer, model, self.weights) else None
        self.background = background
        self._later: list[Future] = []  # columns being computed in the helper thread

    def should_log(self, step: int) -> bool:
        return should_log(step, self.every, self.last_step)

    def dead_due(self, step: int) -> bool:
        """Whether record_backward(step) judges dead units on the probe set."""
        return self.dead is not None and should_log(step, self.dead_every, self.last_step)

    def record_backward(
        self, step: int, grads: Gradients, *, dout: Array | None = None, output: Array | None = None,
        c0: Array | None = None, h0: Array | None = None, cache: object | None = None, last: Gradients | None = None,
        dead_probe: tuple[list[Array], Array] | None = None, grad_norms: tuple[Array, Array] | None = None,
        columns: dict[str, Array] | None = None, snapshot_weights: bool = True,
    ) -> None:
        """Layer and time-step stats of a logged step, the dead-unit probe and a weight snapshot;
        call after the backward, before clipping and the optimizer step. cache: the traced forward's
        cache, for the last step's loss alone (loss on every step; see the class docstring); or `last`,
        that backward already taken (an ensemble takes it for all its members at once); dead_probe: the
        probe set's dead_masks for this model, already taken (likewise), when dead_due(step); grad_norms and
        columns: the layers table's gradient norms and an MLP's trace columns, already taken (likewise: see
        gradlab.probes.members); snapshot_weights=False: no snapshot, record_step is given the update ratios."""
        self._collect()
        report = None
        if self.dead_due(step):
            report = self.dead.update(step, self.model, forwarded=dead_probe)
        # now: clipping rescales the gradients in place next
        norms = _grad_norms(self.model, grads) if grad_norms is None else grad_norms
        if last is None and self.sequence and self.model.output == "all" and cache is not None and dout is not None:
            last = self.model.backward(last_step_dout(np.asarray(dout)), cache, input_grad=False)
        traced = Gradients({}, trace=grads.trace)  # what the columns read: the gradients themselves are not kept
        layers = lambda: layer_stats(self.model, traced, dead=report, dout=dout, output=output,  # noqa: E731
                                     grad_norms=norms, columns=columns)  # fmt: skip
        steps = lambda: timestep_stats(self.model, traced, jacobian=self.jacobian, method=self.jacobian_method,  # noqa: E731
                                       c0=c0, h0=h0, examples=self.jacobian_examples, last=last)  # fmt: skip
        later = self._in_background()
        stats = _submit(layers) if later else layers()
        if self.sequence:
            self.timesteps.append((step, _submit(steps) if later and not self.jacobian else steps()))  # the Jacobians read the weights
        self._later += [v for v in (stats, self.timesteps[-1][1] if self.sequence else None) if isinstance(v, Future)]
        if self.optimizer is not None:
            self.optimizer.measure_next(self.weights)
        elif snapshot_weights:
            self._before = snapshot(self.model, self._buffer)
        self._pending = (step, stats, None if report is None else report.collapsed)

    def record_step(
        self, step: int, loss: float, grad_norm: float, grad_norm_clipped: float, lr: float,
        clipped: bool | None = None, ratios: Array | None = None,
    ) -> None:
        """The steps row; on a logged step also the update ratios (or `ratios`, already taken: an ensemble
        takes them for all its members at once). Call after the optimizer step."""
        collapsed = None
        if self._pending is not None and self._pending[0] == step:
            _, stats, collapsed = self._pending
            if ratios is None and self._before is None:
                opt = self.optimizer
                ratios = update_ratios_from_norms(self.model, getattr(opt, "update_norms", {}), getattr(opt, "param_norms", None))
            elif ratios is None:
                ratios = update_ratios(self.model, self._before, in_place=True)
            self.layers.append((step, stats, ratios))
            self._buffer, self._pending, self._before = self._before, None, None
        self.steps.append(step_record(step, loss, grad_norm, grad_norm_clipped, lr, clipped, collapsed))

    def frames(self) -> dict[str, pd.DataFrame]:
        """{"steps", "layers", "timesteps"} DataFrames (timesteps has no rows for an MLP)."""
        self._collect()
        layers = [(step, _with_ratios(_result(stats), ratios)) for step, stats, ratios in self.layers]
        if self._pending is not None:  # a logged step whose optimizer step never came (e.g. a crash)
            layers.append((self._pending[0], _result(self._pending[1])))
        return {
            "steps": steps_frame(self.steps, self.run_id),
            "layers": layers_frame(layers, self.run_id),
            "timesteps": timesteps_frame([(step, _result(cols)) for step, cols in self.timesteps], self.run_id),
        }

    def _in_background(self) -> bool:
        """Whether this logged step's trace columns go to the helper thread (see the class docstring)."""
        if self.background is not None:
            return self.background
        return self.sequence and _process.RULE.threads() > 1

    def _collect(self) -> None:
        """Wait for the columns still being computed (at most one logged step's); a step whose columns
        failed is dropped from the tables and its error raised (once), as if record_backward had raised it."""
        later, self._later = self._later, []
        failed = [f for f in later if f.exception() is not None]
        if failed:
            drop = {id(f) for f in failed}
            self.layers = [row for row in self.layers if id(row[1]) not in drop]
            self.timesteps = [row for row in self.timesteps if id(row[1]) not in drop]
            if self._pending is not None and id(self._pending[1]) in drop:
                self._pending = None
            raise failed[0].exception()


_HELPER: ThreadPoolExecutor | None = None


def _submit(fn) -> Future:
    """Run fn in the probes' helper thread (one for the process: NumPy releases the GIL in its loops)."""
    global _HELPER
    if _HELPER is None:
        _HELPER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gradlab-probes", initializer=_process.pin_blas_threads, initargs=(1,))
    return _HELPER.submit(_at_work, fn)


def _at_work(fn):
    with _process.helper_at_work():  # the main thread's products leave this core to it
        return fn()


def _result(value):
    return value.result() if isinstance(value, Future) else value


def _with_ratios(stats: dict[str, Array], ratios: Array) -> dict[str, Array]:
    stats["update_ratio"] = ratios
    return stats


def _steps_these(optimizer: object | None, model: Model, names: list[str]) -> bool:
    """Whether `optimizer` reports update norms (measure_next) and updates the model's own weight arrays."""
    params = getattr(optimizer, "params", None)
    return hasattr(optimizer, "measure_next") and isinstance(params, dict) and all(params.get(n) is model.params[n] for n in names)
