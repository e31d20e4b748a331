"""gradlab's instruments on a user's own PyTorch training loop: `watch(model)` and one `watcher.step(loss)`
after each optimizer step fill the same steps / layers / timesteps tables a gradlab run writes. With
optimizer= the optimizer's post-step hook records each step itself, so the `with` line is all a loop needs;
watcher.step(loss) then adds the loss (and records a step a GradScaler skipped, which no hook sees).

    with gradlab.torch.watch(model, every=10, optimizer=opt) as watcher:
        for x, y in batches:
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            watcher.step(loss)
    watcher.save("results/mine")       # then: gradlab show / plot / report results/mine

What is measured, and where (every hook is the watcher's own; none changes a gradient):

    grad_norm          ||g|| over every parameter's .grad when a backward has finished (a callback the
                       autograd engine runs at the end of the backward, queued from a hook on the model's
                       output): before the user clips. With gradient accumulation, the last backward before
                       the optimizer step wins: the accumulated gradient the step uses.
    grad_norm_clipped  ||g|| in an optimizer pre-step hook (optimizer=): after clip_grad_norm_, what the
                       optimizer steps with; without optimizer=, from .grad in watcher.step(). Read again only
                       when a gradient changed since the backward ended: every .grad the same tensor (not
                       replaced) with the same _version (every in-place edit, as clip_grad_norm_'s and
                       clip_grad_value_'s, counts one up); else it is grad_norm's pass (no second one). An edit
                       through p.grad.data (a tensor with a version counter of its own) is not seen: use
                       p.grad or the torch.nn.utils clipping functions. watcher.clip_grad_norm_(max_norm) clips
                       as torch's does, from grad_norm's pass: the step then takes one norm of the gradients.
    scaler=            a torch.amp GradScaler: the .grad a backward leaves are scaled by S =
                       scaler.get_scale(), so grad_norm, the layers' gradient norms and delta_norm are
                       divided by S; grad_norm_clipped is read after scaler.step() unscaled them.
    torch.autocast     the probe forward runs inside the user's autocast (the half-precision outputs the
                       model computes); a half-precision output gradient's norms are taken in float32.
    layers (every `every` steps, step 0, and `steps - 1` when steps= is given; one row per gradlab.torch.modules
    row, in the order the probe forward calls their modules: layer 0 nearest the input):
        weight_grad_norm, bias_grad_norm   from .grad at the end of the backward (before clipping)
        delta_norm      batch mean over the step's examples of the per-example ||dL/d(output)|| of the
                        module (a tensor hook on its output in the training forward): gradlab's
                        delta_l = dL/dz_l for a Linear. A recurrent module's output gets only the gradient
                        from above, not through its recurrence: its delta_norm is NaN and its da_norm (every
                        cell layer's total dL/dh_t over all steps) comes from gradlab.torch.replay
        da_norm         the same at the following activation's output (dL/da_l); = delta_norm without one;
                        an activation module several rows share (one nn.ReLU after every layer): its n-th
                        call in a forward is the row the probe forward saw it follow
        act_mean, act_std, dead_frac, born_dead_frac, died_frac, saturated_frac
                        on the fixed probe batch, forwarded without grad at the first forward of the logged
                        step (the weights the step's gradient is taken at), dropout off and batch norm's
                        running statistics restored: of the following activation's output (the module's
                        own when none follows; a recurrent module's h_t). dead = exactly 0 for every probe
                        example (and step); saturated = phi' < 1% of max phi' (gradlab's activations only:
                        NaN for others). A cell layer's states come from torch's own kernel run layer by
                        layer, its gates (over which an LSTM's and GRU's saturated_frac is taken) from
                        gradlab's engine given those states (replay_bridge.probe_cells).
        update_ratio    ||W_after - W_before|| / ||W_after|| over the row's weights, W_before copied at the
                        first forward of the logged step, W_after read in watcher.step()
    timesteps (logged steps, each nn.RNN / LSTM / GRU): dL/dh_t (dL/dc_t) per cell layer, replayed through
                        gradlab's engine from the module's input, initial state and output gradients
                        (gradlab.torch.replay; float32 arithmetic for a float32 module, float64 for any
                        other, the norms in float64); `layer` is the cell layer's row in the layers table (its cell
                        layer when the recurrent module comes first, as in gradlab's own models).
    runs                the config fields known of the model (Watcher.config), the diagnosis of the steps,
                        layers and timesteps tables (gradlab.diagnose; a step a GradScaler skipped and rows
                        NaN because not measured are left out of it) and, at step 0, gradlab.torch.theory's
                        predictions beside the measured delta norms, appended to diagnosis_text.

Why a callback at the end of the backward and not a hook per parameter (register_post_accumulate_grad_hook):
one Python call per backward instead of one per parameter, and it runs when every .grad is final.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from gradlab import schema
from gradlab.diagnose import diagnose
from gradlab.probes import DEFAULT_PROBE_SIZE, is_collapsed, layers_frame, should_log, step_record, steps_frame
from gradlab.probes.frames import COLUMNS, empty_frames
from gradlab.probes.layers import act_moments, saturated_fraction
from gradlab.sweep.store import Store
from gradlab.torch import modules as mods
from gradlab.torch import grads, replay_bridge, runrow, theory
from gradlab.torch.modules import Row
from gradlab.train import DIAGNOSIS_COLUMNS, run_record

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")  # a run id is a folder name
LAYER_COLUMNS = [c for c in COLUMNS["layers"] if c not in ("run_id", "step")]


def watch(
    model: nn.Module, every: int = 10, probe: torch.Tensor | np.ndarray | None = None, name: str = "torch", *,
    optimizer: torch.optim.Optimizer | None = None, scaler: Any = None, modules: Iterable[str] = (),
    steps: int | None = None,
) -> "Watcher":
    """Watch a torch model's training (see the module docstring). every: log the layers every k steps
    (and step 0, and steps - 1 when the number of steps is given); probe: the fixed probe batch (N, ...)
    for activations and dead units (default: the first training batch, at most 512 examples); name: the
    run's id in the results folder; optimizer: measure grad_norm_clipped and lr in its pre-step hook;
    scaler: a GradScaler whose scale is divided out; modules: qualified names of more modules to watch."""
    return Watcher(model, every, probe, name, optimizer, scaler, tuple(modules), steps)


class Watcher:
    """The hooks, the records and the tables of one watched training run (see the module docstring)."""

    def __init__(self, model, every, probe, name, optimizer, scaler, modules, steps) -> None:
        _check_args(model, every, name, steps)
        self.model, self.every, self.name, self.optimizer, self.scaler = model, int(every), name, optimizer, scaler
        self.last_step = None if steps is None else int(steps) - 1
        self.params = [p for p in model.parameters() if p.requires_grad]
        self._param_index = {id(p): k for k, p in enumerate(self.params)}
        self.rows: list[Row] = mods.find_rows(model, modules)
        self._leaves = mods.leaves(model, self.rows)
        self.step_index, self.closed = 0, False
        self._steps: list[tuple] = []
        self._layers: list[tuple[int, dict[str, np.ndarray]]] = []
        self._timesteps: list[pd.DataFrame] = []
        self._initial_masks: dict[int, np.ndarray] = {}
        self._info: dict[str, Any] = {"batch": None, "input": None}
        self._theory_text = ""
        self._refused: set[str] = set()
        self._buffers: list[list[torch.Tensor]] | None = None
        self._twins: dict = {}  # one-layer copies of the recurrent modules' layers (replay_bridge.layer_states)
        self._predictions: dict[str, Any] = {}
        self._chain: list[nn.Module] | None = None  # the modules the forward calls, when seen to be a chain
        self._probe_key: str | None = None  # the keyword the model's forward takes its input by (None: first argument)
        self._dedicated, self._shared = {}, {}  # the following activations, learnt from a probe forward
        self._follow_modules: list[nn.Module | None] | None = None
        self._init: tuple[float, float] | None = None  # a feed-forward model's (sigma_w2, sigma_b2) at step 0
        self._skipped: set[int] = set()  # steps whose optimizer.step() the GradScaler skipped
        self._no_loss: set[int] = set()  # steps whose loss was not given to step()
        self.probe = None if probe is None else self._set_probe(probe)
        self._reset_step()
        self._handles = [model.register_forward_pre_hook(self._before_forward, with_kwargs=True),
                         model.register_forward_hook(self._after_forward)]  # fmt: skip
        self._recorded = False  # the optimizer's post-step hook recorded the step; step(loss) adds its loss
        if optimizer is not None:
            self._handles.append(optimizer.register_step_pre_hook(self._before_optimizer_step))
            self._handles.append(optimizer.register_step_post_hook(self._after_optimizer_step))

    # ---- the user's calls ------------------------------------------------------------------------

    def __enter__(self) -> "Watcher":
        self._check_open("with")
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Remove every hook; the tables, save() and the exports still work."""
        for h in self._handles + self._step_handles:
            h.remove()
        self._handles, self._step_handles, self.closed = [], [], True

    def step(self, loss: torch.Tensor | float | None = None) -> None:
        """Record the optimizer step just taken (call it after optimizer.step() / scaler.step()): its loss,
        both gradient norms, lr and, on a logged step, the layers' rows. With optimizer= the optimizer's
        post-step hook has recorded the step already and step(loss) only adds its loss (the watcher then needs
        no call at all); a step the GradScaler skipped (no optimizer.step()) is recorded here."""
        self._check_open("step()")
        if self._recorded:
            self._recorded = False
            if loss is not None:
                self._no_loss.discard(self.step_index - 1)
                row = self._steps[-1]
                self._steps[-1] = (row[0], _loss_value(loss), *row[2:])
            return
        self._record(loss)

    def clip_grad_norm_(self, max_norm: float, error_if_nonfinite: bool = False) -> torch.Tensor:
        """torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm), from the norm the watcher took when the
        backward ended (read again only if a gradient changed since, as after scaler.unscale_): one pass over
        the gradients fewer than torch's clip, none when it does not clip, and grad_norm_clipped = c ||g||
        with no pass of its own. Returns ||g|| before clipping, as torch does."""
        self._check_open("clip_grad_norm_()")
        if not (isinstance(max_norm, (int, float)) and 0 < max_norm < math.inf):
            raise ValueError(f"watcher.clip_grad_norm_: max_norm must be a positive finite number, got {max_norm!r}")
        norm = self._norm_now()
        if error_if_nonfinite and not math.isfinite(norm):
            raise RuntimeError(f"watcher.clip_grad_norm_: the gradients' norm is {norm}, which cannot be clipped "
                               "(error_if_nonfinite=True)")  # fmt: skip
        coef = grads.clip_(self.params, norm, float(max_norm))
        self._raw_norm, self._marks = norm * coef, grads.grad_marks(self.params)  # what _norm_now returns next
        return torch.tensor(norm, dtype=self.params[0].dtype if self.params else torch.float32)

    def _record(self, loss) -> None:
        if not self._backwards:
            raise RuntimeError(f"watcher.step(): no backward pass ran since step {self.step_index - 1}; "
                               "call it once per optimizer step, after loss.backward() and optimizer.step()")  # fmt: skip
        value = _loss_value(loss)
        if loss is None:
            self._no_loss.add(self.step_index)
        clipped = self._clipped_norm if self.optimizer is not None else self._norm_now()
        if self.scaler is not None and self.optimizer is not None and math.isnan(self._clipped_norm):
            self._skipped.add(self.step_index)  # the scaler found inf/NaN and skipped optimizer.step()
        lr = self._lr if self.optimizer is not None else math.nan
        collapsed = self._probe_out.get("collapsed") if self._logged else None
        self._steps.append(step_record(self.step_index, value, self._grad_norm, clipped, lr, collapsed=collapsed))
        if self._logged:
            self._layers.append((self.step_index, self._layer_stats()))
            ts = replay_bridge.frame(self)
            if ts is not None:
                self._timesteps.append(ts)
        for h in self._step_handles:
            h.remove()
        self._step_handles = []
        self.step_index += 1
        self._reset_step()

    def tables(self) -> dict[str, pd.DataFrame]:
        """The steps, layers and timesteps tables so far (gradlab's columns and dtypes; run_id = name)."""
        frames = empty_frames(self.name)
        frames["steps"] = steps_frame(self._steps, self.name)
        frames["layers"] = layers_frame(self._layers, self.name)
        if self._timesteps:
            ts = pd.concat(self._timesteps, ignore_index=True).assign(run_id=self.name)
            frames["timesteps"] = pd.concat([frames["timesteps"], ts[list(COLUMNS["timesteps"])]], ignore_index=True)
            frames["timesteps"] = frames["timesteps"].astype({c: t for c, t in COLUMNS["timesteps"].items()})
        return frames

    def record(self) -> dict[str, Any]:
        """The runs-table row: the config fields known of the model (see config()), the diagnosis."""
        tables = self.tables()
        config = self.config(tables["steps"])
        facts = {
            "model": config["model.kind"], "activation": config["model.activation"], "depth": len(self.rows),
            "layers": config["model.layers"], "norm": config["model.norm"], "residual": False,
            "loss_on": "", "final_loss": math.nan, "baseline_loss": math.nan,
        }  # fmt: skip
        steps = self._judged(tables["steps"])
        layers, ts = (t[~t["step"].isin(self._skipped)] for t in (tables["layers"], tables["timesteps"]))
        verdict = diagnose(steps, runrow.measured(layers), ts, facts)
        bad = ~(np.isfinite(steps["loss"].to_numpy(np.float64)) & np.isfinite(steps["grad_norm"].to_numpy(np.float64)))
        diverged = steps["step"][bad].tolist()
        text = verdict.sentence + (f" {self._theory_text}" if self._theory_text else "")
        return run_record(
            config, self.name, status="diverged" if diverged else "ok", diverged_step=diverged[0] if diverged else -1,
            diagnosis=verdict.label, diagnosis_text=text, other_modules=self._info.get("other_modules", ""),
            **{k: runrow.number(verdict.numbers.get(k)) for k in DIAGNOSIS_COLUMNS},
        )  # fmt: skip

    def config(self, steps: pd.DataFrame | None = None) -> dict[str, Any]:
        """gradlab's config fields (dotted keys) with what is known of the torch run; the rest at their
        defaults (schema.FIELDS). A model with no recurrent rows is model.kind "mlp" (a feed-forward stack,
        depth = rows - 1 hidden layers), else the first recurrent row's kind; width = the most common output
        size of the hidden rows; activation = the hidden rows' following activation (a recurrent model's: its
        recurrence's, modules.recurrent_activation); clipping is inferred from the steps (clip_mode "norm" with
        clip = the largest clipped norm when any step was clipped); for a model without recurrent rows, init
        "mean_field" with sigma_w2, sigma_b2 measured from its Linear rows' weights at step 0
        (gradlab.torch.theory.measured_init, whatever initialised them: torch's default, He, a checkpoint); a
        recurrent model's init stays the default "standard", not measured; lr is the first
        step's, schedule "torch" when a scheduler of the user's changed it (the steps table has each step's)."""
        config = schema.defaults()
        steps = steps if steps is not None else steps_frame(self._steps, self.name)
        recurrent = [r for r in self.rows if r.kind in mods.RECURRENT.values()]
        hidden = [r for r in self.rows if r.cell is not None] if recurrent else self.rows[:-1]
        kinds = {type(r.module) for r in self.rows if r.kind == "norm"}
        config.update({
            "model.kind": recurrent[0].kind if recurrent else "mlp",
            "model.depth": max(1, len(self.rows) - 1) if not recurrent else config["model.depth"],
            "model.layers": len(recurrent) if recurrent else config["model.layers"],
            "model.width": runrow.width(hidden) or config["model.width"],
            "model.activation": self._info.get("activation", "unknown"),  # known from a probe forward
            "model.output_activation": self._info.get("output_activation", "identity"),
            "model.slope": self._info.get("slope", config["model.slope"]),
            "model.norm": runrow.norm_name(kinds),
            "task.name": "torch", "train.steps": len(steps), "train.log_every": self.every,
            "train.probe_size": 0 if self.probe is None else int(self.probe.shape[0]),
            "train.dtype": str(self.params[0].dtype).removeprefix("torch.") if self.params else "float32",
            "train.seed": int(torch.initial_seed()) % schema.INT64_MAX,
        })  # fmt: skip
        if self._info["batch"] is not None:
            config["train.batch"] = self._info["batch"]
        config.update(runrow.input_fields(self.rows, recurrent, self._info))
        if self.optimizer is not None:
            config["train.optimizer"] = type(self.optimizer).__name__.lower()
            config.update(runrow.lr_fields(steps, float(self.optimizer.param_groups[0]["lr"])))
            config["train.momentum"] = float(self.optimizer.param_groups[0].get("momentum", 0.0) or 0.0)
        if self._init is not None:  # the weight variances measured at step 0, whatever initialised them
            sigma_w2, sigma_b2 = self._init
            config.update({"model.init": "mean_field", "model.sigma_w2": sigma_w2, "model.sigma_b2": sigma_b2})
        clipped = steps[steps["clipped"]]
        if len(clipped):
            config["train.clip_mode"], config["train.clip"] = "norm", float(clipped["grad_norm_clipped"].max())
        return config

    def save(self, folder: str | Path) -> Path:
        """Write the run into a gradlab results folder (a new, empty or gradlab's own: the store refuses any
        other, before writing anything), consolidate its tables and write a manifest; returns the folder."""
        record, tables = self.record(), self.tables()
        with Store(folder).open() as store:
            store.write_run(self.name, record, tables)
            consolidated = store.consolidate()
            store.write_text("manifest.json", json.dumps(runrow.manifest(folder, consolidated), indent=1))
        return Path(folder)

    def to_csv(self, path: str | Path, column: str = "delta_norm") -> Path:
        """The per-layer gradient profile as one CSV: one row per logged step, one column per layer (named
        by its module), values of `column` (a layers-table column; delta_norm by default)."""
        from gradlab.torch.export import profile

        table = profile(self.tables()["layers"], self.row_names(), column)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(path)
        return Path(path)

    def to_tensorboard(self, logdir: str | Path) -> Path:
        """The steps table's scalars and one scalar per layer of delta_norm, weight_grad_norm, dead_frac and
        update_ratio (never a histogram of every parameter); needs the tensorboard package."""
        from gradlab.torch.export import tensorboard

        return tensorboard(self.tables(), self.row_names(), logdir)

    def row_names(self) -> list[str]:
        """The layers table's layer index -> the watched module's name."""
        return [r.name or "model" for r in self.rows]

    # ---- hooks -----------------------------------------------------------------------------------

    def _before_forward(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if self._probing or not torch.is_grad_enabled():  # the watcher's probe, or the user's evaluation
            return
        x, key = _model_input(args, kwargs)
        if self._info["batch"] is None and x is not None:
            self._info.update(batch=int(x.shape[0]), input=tuple(x.shape[1:]))
            if self.probe is None:
                self._probe_key = key
                self.probe = self._default_probe(x)
        if self._logged and not self._prepared:
            self._prepared = True
            self._snapshot = self._copy_weights()
            self._probe_out = self._run_probe() if self.probe is not None else {}
            self._install_step_hooks()
        self._calls_seen: dict[int, int] = {}  # each shared activation's calls in this forward

    def _after_forward(self, module: nn.Module, args: tuple, out) -> None:
        if self._probing or not torch.is_grad_enabled():
            return
        for t in _tensors(out):
            if t.requires_grad:
                t.register_hook(self._queue_after_backward)

    def _queue_after_backward(self, grad: torch.Tensor) -> None:
        if not self._queued:
            self._queued = True
            torch.autograd.Variable._execution_engine.queue_callback(self._after_backward)

    def _after_backward(self) -> None:
        """The end of a backward: the gradient norms before clipping (the last backward of a step wins)."""
        self._queued = False
        self._backwards += 1
        scale = self._scale()
        norms = grads.grad_norms(self.params)  # the one pass over every .grad: the global norm's and the rows'
        self._raw_norm, self._marks = grads.total(norms), grads.grad_marks(self.params)
        self._grad_norm = self._raw_norm / scale
        if self._logged:
            self._row_grads = self._row_grad_norms(norms, scale)
            self._step_scale = scale
            self._replay(scale)
            if self.step_index == 0:
                self._theory(scale)

    def _judged(self, steps: pd.DataFrame) -> pd.DataFrame:
        """The steps the diagnosis and the status judge: without the steps a GradScaler skipped (an inf in the
        scaled gradients is how AMP finds its scale, not a divergence), a loss not given counting as finite."""
        steps = steps[~steps["step"].isin(self._skipped)].copy()
        steps.loc[steps["step"].isin(self._no_loss), "loss"] = 0.0
        return steps

    def _after_optimizer_step(self, optimizer, args, kwargs) -> None:
        if self._backwards:
            self._record(None)
            self._recorded = True

    def _theory(self, scale: float) -> None:
        """At step 0 (the end of its backward, the weights not yet updated): gradlab.torch.theory's closed forms
        for the model beside the measured per-layer delta norms, as one sentence for the diagnosis text."""
        delta = self._batch_means("delta")
        measured = [delta[i] / scale if i in delta else math.nan for i in range(len(self.rows))]
        try:
            self._predictions = theory.step0(self.model, measured, self._chain)
        except ValueError:
            self._predictions = theory.step0(self.model, modules=self._chain)
        self._theory_text = theory.sentence(self._predictions)
        if not any(r.kind in mods.RECURRENT.values() for r in self.rows):
            self._init = theory.measured_init([r.module for r in self.rows if r.kind == "linear"])

    def _before_optimizer_step(self, optimizer, args, kwargs) -> None:
        self._clipped_norm = self._norm_now()
        self._lr = float(optimizer.param_groups[0]["lr"])

    def _row_grad_norms(self, norms: np.ndarray | None, scale: float) -> list[tuple[float, float]]:
        """Per row (||dL/dW||, ||dL/db||) over its weights and over its biases, unscaled, from the per-parameter
        norms (P,) of the backward's pass (a parameter outside self.params, frozen, from its own .grad)."""
        index = self._param_index
        norms = np.zeros(len(self.params)) if norms is None else norms

        def group(params: list[nn.Parameter]) -> float:
            sq = 0.0
            for p in params:
                k = index.get(id(p))
                if k is not None:
                    n = norms[k]
                else:
                    n = 0.0 if p.grad is None else float(torch.linalg.vector_norm(p.grad.detach()))
                sq += n * n
            return math.sqrt(sq) / scale

        return [(group(r.weights), group(r.biases)) for r in self.rows]

    def _norm_now(self) -> float:
        """||g|| of the .grad as they are now: the end of the backward's norm when no gradient changed since
        (the same tensors, the same _version counters), else a new pass."""
        if self._marks is not None and grads.unchanged(self.params, self._marks):
            return self._raw_norm
        return grads.global_norm(self.params)

    def _install_step_hooks(self) -> None:
        """Forward hooks for this logged step's training forwards: the output gradients of every row module
        (and of its dedicated following activation), the recurrent modules' inputs for the replay."""
        seen = set()
        for i, r in enumerate(self.rows):
            if id(r.module) in seen:
                continue
            seen.add(id(r.module))
            self._step_handles.append(r.module.register_forward_hook(partial(self._on_output, i, "delta")))
        for i, act in self._dedicated.items():
            self._step_handles.append(act.register_forward_hook(partial(self._on_output, i, "da")))
        for act, rows in self._shared.values():
            self._step_handles.append(act.register_forward_hook(partial(self._on_shared_output, rows)))

    def _on_shared_output(self, rows: dict[int, int], module: nn.Module, args: tuple, out) -> None:
        """An activation module that several rows share (one nn.ReLU called after every layer): its n-th call
        in this training forward is row rows[n]'s following activation, as in the probe forward."""
        if self._probing or not torch.is_grad_enabled():
            return
        n = self._calls_seen[id(module)] = self._calls_seen.get(id(module), -1) + 1
        if n in rows:
            self._on_output(rows[n], "da", module, args, out)

    def _on_output(self, i: int, what: str, module: nn.Module, args: tuple, out) -> None:
        if self._probing or not torch.is_grad_enabled():
            return
        t = mods.first_tensor(out)
        if t is None or not t.requires_grad:
            return
        row = self.rows[i]
        if row.kind in mods.RECURRENT.values():
            self._capture_recurrent(i, args, out)
            return
        t.register_hook(partial(self._on_grad, i, what, 0))

    def _on_grad(self, i: int, what: str, batch_axis: int, grad: torch.Tensor) -> None:
        self._grads[what].setdefault(i, []).append(grads.example_norms(grad, batch_axis))  # scaled: see _layer_stats

    def _batch_means(self, what: str) -> dict[int, float]:
        """Row -> the mean of its per-example norms over every example of the step (its micro-batches
        pooled), in float64, all rows' in one transfer; still scaled by the GradScaler's scale."""
        got = self._grads[what]
        if not got:
            return {}
        pooled = [torch.cat(v) if len(v) > 1 else v[0] for v in got.values()]
        if len({(t.shape, t.dtype, t.device) for t in pooled}) == 1:  # one batch size: one reduction for all rows
            means = torch.stack(pooled).double().mean(dim=1).cpu().numpy()
        else:
            means = torch.stack([t.double().mean().cpu() for t in pooled]).numpy()
        return dict(zip(got, means.tolist()))

    def _capture_recurrent(self, i: int, args: tuple, out) -> None:
        """Keep the module's input, initial state and the gradients at its outputs for the replay."""
        replay_bridge.capture(self, i, args, out)

    def _replay(self, scale: float) -> None:
        replay_bridge.replay(self, scale)

    # ---- the probe -------------------------------------------------------------------------------

    def _default_probe(self, x: torch.Tensor) -> torch.Tensor | None:
        """The first training batch's first examples as the probe; None, with one warning, when the model's
        forward needs more than that tensor (a mask): the probe columns are then NaN."""
        try:
            return self._set_probe(x[:DEFAULT_PROBE_SIZE].detach().clone())
        except ValueError as err:
            import warnings

            warnings.warn(f"gradlab.torch: no probe statistics (act_mean, dead_frac, ... NaN): {err}", stacklevel=4)
            return None

    def _set_probe(self, probe) -> torch.Tensor:
        """The probe batch as a tensor of the model's dtype, checked by one forward (a wrong shape is a
        one-line ValueError); learns each row's following activation from the modules' call order."""
        x = torch.as_tensor(probe)
        if self.params and x.is_floating_point():
            x = x.to(dtype=self.params[0].dtype, device=self.params[0].device)
        if self._info["input"] is not None and tuple(x.shape[1:]) != self._info["input"]:
            raise ValueError(f"probe: examples of shape {tuple(x.shape[1:])}, the training batch's are {self._info['input']}")
        self.probe = x
        try:
            self._run_probe(check=True)
        except (RuntimeError, ValueError, TypeError, IndexError) as err:
            self.probe = None
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"probe of shape {tuple(x.shape)} does not fit the model: {first}") from None
        return x

    def _run_probe(self, check: bool = False) -> dict[str, Any]:
        """Forward the probe batch without grad; per row its activation's output, and collapse."""
        calls: list[tuple[nn.Module, Any]] = []
        firsts: list[Any] = []  # each call's first input (mods.chain)
        inputs: dict[int, tuple] = {}  # a recurrent module's (input, hx), for its cell layers' states

        def hook(mod: nn.Module, a: tuple, o: Any) -> None:
            calls.append((mod, o))
            firsts.append(a[0] if a else None)
            if type(mod) in mods.RECURRENT:
                inputs.setdefault(id(mod), (a, o))

        hooks = [m.register_forward_hook(hook) for m in self._leaves]
        self._probing = True
        try:
            with torch.no_grad(), _probe_mode(self.model):
                key = self._probe_key
                y = self.model(self.probe) if key is None else self.model(**{key: self.probe})
        finally:
            self._probing = False
            for h in hooks:
                h.remove()
        if check:
            self._chain = mods.chain([(m, x, o) for (m, o), x in zip(calls, firsts)])
            self._learn_structure(calls)
            first = next((r.module for r in self.rows if id(r.module) in inputs), None)  # in forward order
            args = inputs[id(first)][0] if first is not None else ()
            self._info["T"] = mods.sequence_length(first, args[0]) if args else None  # none: its input by keyword
            return {}
        index = mods.follow_index(self.rows, calls)
        cells = {id(m): self._probe_cells(m, a) for m, a in ((r.module, inputs.get(id(r.module))) for r in self.rows)
                 if type(m) in mods.RECURRENT and a is not None}  # fmt: skip
        with np.errstate(all="ignore"):
            out = {"acts": [self._row_act(i, r, calls, index, cells) for i, r in enumerate(self.rows)]}
        yt = mods.first_tensor(y) if not isinstance(y, torch.Tensor) else y
        out["collapsed"] = is_collapsed(yt.detach().double().cpu().numpy()) if yt is not None else None
        return out

    def _learn_structure(self, calls) -> None:
        """The rows in the order the forward calls their modules (a model's own class may register its output
        layer first), the following activations (names for the runs table; which ones serve a single row)
        and rows whose output is no tensor (named, warned about and dropped)."""
        bad = [r for r in self.rows if r.module not in [m for m, _ in calls] or mods.first_tensor(mods.first_out(r.module, calls)) is None]
        if bad:
            import warnings

            warnings.warn(f"gradlab.torch: not watched (no tensor output in the probe forward): {', '.join(r.name for r in bad)}", stacklevel=4)
            self.rows = [r for r in self.rows if r not in bad]
        first, times = {}, {}
        for k, (m, _) in enumerate(calls):
            first.setdefault(id(m), k)
            times[id(m)] = times.get(id(m), 0) + 1
        self.rows = sorted(self.rows, key=lambda r: first[id(r.module)])  # forward order: layer 0 nearest the input
        again = sorted({f"{r.name or 'the model'} ({times[id(r.module)]} calls)" for r in self.rows
                        if times[id(r.module)] > 1})  # fmt: skip
        if again:
            import warnings

            warnings.warn(f"gradlab.torch: called more than once in a forward (a shared layer): {', '.join(again)}; "
                          "its row's delta_norm pools the calls, its probe columns are the first call's", stacklevel=4)
        index = mods.follow_index(self.rows, calls)
        acts = [calls[index[i]][0] if index.get(i) is not None else None for i in range(len(self.rows))]
        counts: dict[int, int] = {}
        for a in acts:
            if a is not None:
                counts[id(a)] = counts.get(id(a), 0) + 1
        self._dedicated = {i: a for i, a in enumerate(acts) if a is not None and counts[id(a)] == 1}
        shared = {i: a for i, a in enumerate(acts) if a is not None and counts[id(a)] > 1}
        self._shared = mods.shared_calls(calls, index, shared)
        hidden = acts[:-1] if len(acts) > 1 else acts
        feedforward = [(a, r) for a, r in zip(hidden, self.rows) if r.cell is None]
        names = {mods.activation_name(a) if self._chain is not None else "unknown"
                 for a, r in feedforward}  # an F.relu or a residual sum in a forward of the user's is seen by no hook
        self._info["activation"] = names.pop() if len(names) == 1 else ("identity" if not names else "mixed")
        cells = {mods.recurrent_activation(r.module) for r in self.rows if r.cell is not None}
        if cells:  # a recurrent model's activation is its recurrence's, as in gradlab's own rnn runs
            self._info["activation"] = cells.pop() if len(cells) == 1 else "mixed"
        if self._info["activation"] == "leaky_relu":  # the runs table's leaky_slope: one for every hidden layer
            slopes = {mods.gradlab_activation(a).slope for a, _ in feedforward}
            self._info.update({"slope": slopes.pop()} if len(slopes) == 1 else {"activation": "mixed"})
        self._info["output_activation"] = mods.activation_name(acts[-1]) if acts else "identity"
        self._info["other_modules"] = mods.others([m for m, _ in calls], self.rows)
        self._follow_modules = acts

    def _probe_cells(self, module: nn.Module, call: tuple) -> list[dict[str, Any]] | None:
        args, out = call
        x, hx = args[0], (args[1] if len(args) > 1 else None)
        try:
            return replay_bridge.probe_cells(module, x, hx, mods.first_tensor(out), self._twins)
        except ValueError as err:
            replay_bridge._refuse(self, next(i for i, r in enumerate(self.rows) if r.module is module), str(err))
            return None

    def _row_act(self, i: int, row: Row, calls, index, cells) -> dict[str, Any] | None:
        """act_mean, act_std, the dead mask and saturated_frac of row i on the probe batch (floating-point
        warnings off: an overflowed activation is a result)."""
        if row.kind in mods.RECURRENT.values():
            layers = cells.get(id(row.module))
            return None if layers is None else layers[row.cell]
        k = index.get(i)
        a = mods.first_tensor(calls[k][1]) if k is not None else mods.first_tensor(mods.first_out(row.module, calls))
        act = mods.gradlab_activation(calls[k][0] if k is not None else None)
        arr = a.detach().cpu().to(torch.float64).numpy()  # float64: act_moments' fast path; NumPy has no bfloat16
        mean, std = act_moments(arr)
        dead = ~np.any(arr.reshape(-1, arr.shape[-1]) != 0, axis=0)
        saturated = saturated_fraction(act, arr) if act is not None else math.nan
        return {"act_mean": mean, "act_std": std, "dead": dead, "saturated_frac": saturated}

    # ---- the rows of a logged step ---------------------------------------------------------------

    def _layer_stats(self) -> dict[str, np.ndarray]:
        L = len(self.rows)
        out = {c: np.full(L, np.nan) for c in LAYER_COLUMNS}
        out["layer"] = np.arange(L, dtype=np.int64)
        ratios = grads.update_ratios([r.weights for r in self.rows], self._snapshot) if self._snapshot else np.full(L, np.nan)
        delta, da = self._batch_means("delta"), self._batch_means("da")
        for i, r in enumerate(self.rows):
            if self._row_grads is not None:
                w, b = self._row_grads[i]
                out["weight_grad_norm"][i] = w if r.weights else math.nan
                out["bias_grad_norm"][i] = b if r.biases else math.nan
            if i in delta:
                out["delta_norm"][i] = delta[i] / self._step_scale
            if i in da:
                out["da_norm"][i] = da[i] / self._step_scale
            elif r.cell is None and self._follow_modules is not None and self._follow_modules[i] is None:
                out["da_norm"][i] = out["delta_norm"][i]
            if i in self._da_cells:
                out["da_norm"][i] = self._da_cells[i]
            out["update_ratio"][i] = ratios[i] if r.weights else math.nan
            self._probe_row(out, i, self._probe_out["acts"][i] if self._probe_out else None)
        return out

    def _probe_row(self, out: dict[str, np.ndarray], i: int, stats: dict[str, Any] | None) -> None:
        if stats is None:
            return
        out["act_mean"][i], out["act_std"][i], out["saturated_frac"][i] = stats["act_mean"], stats["act_std"], stats["saturated_frac"]
        dead = stats["dead"]
        first = self._initial_masks.setdefault(i, dead.copy())
        if dead.size:
            out["dead_frac"][i] = np.count_nonzero(dead) / dead.size
            out["born_dead_frac"][i] = np.count_nonzero(dead & first) / dead.size
            out["died_frac"][i] = np.count_nonzero(dead & ~first) / dead.size

    # ---- small parts -----------------------------------------------------------------------------

    def _reset_step(self) -> None:
        self._logged = should_log(self.step_index, self.every, self.last_step)
        self._backwards, self._queued, self._probing, self._prepared = 0, False, False, False
        self._grad_norm, self._clipped_norm, self._lr = math.nan, math.nan, math.nan
        self._raw_norm, self._marks = math.nan, None  # the end of the backward's ||g|| (scaled) and .grad marks
        self._row_grads: list[tuple[float, float]] | None = None
        self._step_scale = 1.0  # the scaler's scale at the step's backward
        self._grads: dict[str, dict[int, list[torch.Tensor]]] = {"delta": {}, "da": {}}
        self._da_cells: dict[int, float] = {}
        self._timestep_rows: dict[int, pd.DataFrame] = {}
        self._recurrent: dict[int, list[dict[str, Any]]] = {}
        self._snapshot: list[list[torch.Tensor]] | None = None
        self._probe_out: dict[str, Any] = {}
        if not hasattr(self, "_step_handles"):
            self._step_handles: list = []

    def _copy_weights(self) -> list[list[torch.Tensor]]:
        """The rows' weights copied into buffers kept from one logged step to the next (a fresh copy of every
        weight at every logged step cost more than the rest of the step's measurements)."""
        if self._buffers is None or any(len(b) != len(r.weights) for b, r in zip(self._buffers, self.rows)):
            self._buffers = [[torch.empty_like(w) for w in r.weights] for r in self.rows]
        dst = [t for b in self._buffers for t in b]
        if dst:
            torch._foreach_copy_(dst, [w.detach() for r in self.rows for w in r.weights])  # one call for all
        return self._buffers

    def _scale(self) -> float:
        if self.scaler is None or not getattr(self.scaler, "is_enabled", lambda: True)():
            return 1.0
        return float(self.scaler.get_scale())

    def _check_open(self, what: str) -> None:
        if self.closed:
            raise RuntimeError(f"watcher.{what}: the watcher is closed (its with block ended or close() was called); "
                               "watch the model again to record more steps")  # fmt: skip


# ---- helpers ---------------------------------------------------------------------------------------


def _check_args(model, every, name, steps) -> None:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"model {type(model).__name__} has no parameters that require grad: nothing to watch")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a positive integer (log every k steps), got {every!r}")
    if not isinstance(name, str) or not NAME.match(name):
        raise ValueError(f"name must be a folder name of letters, digits, '_', '.' and '-' (at most 100), got {name!r}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be a positive integer or None, got {steps!r}")


@contextmanager
def _probe_mode(model: nn.Module):
    """Dropout (and a recurrent module's dropout) off, every buffer (batch norm's running statistics)
    restored afterwards: the probe forward changes nothing."""
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    switched = [m for m in model.modules() if m.training and (type(m).__module__ == "torch.nn.modules.dropout" or type(m) in mods.RECURRENT)]
    for m in switched:
        m.train(False)
    try:
        yield
    finally:
        for m in switched:
            m.train(True)
        for b, saved in buffers:
            b.copy_(saved)



def _model_input(args: tuple, kwargs: dict) -> tuple[torch.Tensor | None, str | None]:
    """The tensor a model's forward was given (its first argument, else its first keyword argument that is a
    tensor) and that keyword (None: positional); (None, None) when it got no tensor."""
    if args:
        return (args[0], None) if isinstance(args[0], torch.Tensor) else (None, None)
    return next(((v, k) for k, v in kwargs.items() if isinstance(v, torch.Tensor)), (None, None))




def _tensors(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    return []













def _loss_value(loss) -> float:
    return math.nan if loss is None else float(loss.detach() if isinstance(loss, torch.Tensor) else loss)
