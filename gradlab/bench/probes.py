"""The probes' cost, for `gradlab bench` (issue 3): a training step logging every step through
gradlab.probes.Recorder against the same traced step without probes, on W1-W3; the dead-unit probe
set (a forward on 512 held-out examples) and the step-Jacobian norms are timed apart, since they
run on their own schedule (train.log_every; train.jacobian)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from gradlab import _process, probes
from gradlab.bench.engine import LR, MAX_NORM, WORKLOADS, OurStep, interleaved, paired_ratio
from gradlab.nn.clip import clip_norm
from gradlab.nn.losses import mse
from gradlab.sweep.terminal import MIN_WIDTH, Col, table, wrap

PROBE_SET = 512


class ProbedStep(OurStep):
    """OurStep logging every step: record_backward before clipping, record_step after the update; the
    optimizer reports its update norms (Recorder(optimizer=...)), so no weight snapshot is taken."""

    def __init__(self, w, dtype: str, seed: int = 0) -> None:
        super().__init__(w, dtype, seed)
        self.recorder = probes.Recorder(self.model, every=1, optimizer=self.opt)
        self.step = 0

    def __call__(self, trace: bool = True) -> float:
        out, cache = self.model.forward(self.x, trace=True)
        loss, dout = mse(out, self.y)
        grads = self.model.backward(dout, cache, input_grad=False)
        self.recorder.record_backward(self.step, grads, dout=dout, output=out)
        norm, clipped = clip_norm(grads.params, MAX_NORM)
        self.opt.step(grads.params)
        self.recorder.record_step(self.step, loss, norm, clipped, LR)
        self.step += 1
        return loss


def run(quick: bool = False, dtypes: Iterable[str] = ("float64",), echo: Callable[[str], None] = print,
        width: int = MIN_WIDTH) -> list[tuple]:  # fmt: skip
    """Print, per workload and dtype: the step with trace, with probes, the overhead; the probe-set
    forward and the Jacobian norms per logged step (a table at most `width` columns wide)."""
    rows = []
    echo("probes (logging every step; gradlab.probes.Recorder without the probe set):")
    for name in ("W1", "W2", "W3"):
        w = WORKLOADS[name]
        for dtype in dtypes:
            plain, probed = OurStep(w, dtype), ProbedStep(w, dtype)
            before = _process.RULE.sample()
            times = interleaved({"plain": lambda: plain(trace=True), "probed": probed}, repeats=5 if quick else 15)
            after = _process.RULE.sample()
            others = float("nan") if before is None or after is None else _process.others_cores(before, after, _process.RULE.cpus, _process.RULE.hz)
            overhead = paired_ratio(times["probed"], times["plain"]) - 1
            x_probe = np.random.default_rng(1).normal(size=(PROBE_SET,) + plain.x.shape[1:]).astype(dtype)
            tracker = probes.DeadTracker(x_probe)
            probe_set = np.median(interleaved({"p": lambda: tracker.update(0, plain.model)}, repeats=3)["p"])
            jac = float("nan")
            if name != "W1":
                out, cache = plain.model.forward(plain.x, trace=True)
                grads = plain.model.backward(mse(out, plain.y)[1], cache, input_grad=False)
                jac = np.median(interleaved({"j": lambda: probes.timestep_stats(plain.model, grads, jacobian=True)}, repeats=1, warmup=0)["j"])
            row = (name, dtype, 1e3 * np.median(times["plain"]), 1e3 * np.median(times["probed"]), 100 * overhead, 1e3 * probe_set, 1e3 * jac, others)
            rows.append(row)
    echo(probes_table(rows, width))
    echo("targets: probes <= 15% over the traced step when logging every step:")
    for r in rows:
        echo(f"  {r[0]} {r[1]}: {r[4]:+.1f}%  {'met' if r[4] <= 15 else 'NOT met'}")
    echo(wrap(f"(probe set: one forward on {PROBE_SET} examples for dead units and collapse, once per logged step; "
              "jacobian: spectral norms of dh_t/dh_(t-1) for every example and t, per logged step, when train.jacobian = "
              "true; others: cores other processes kept busy while the row was measured)", width, " "))  # fmt: skip
    return rows


def probes_table(rows: list[tuple], width: int = MIN_WIDTH) -> str:
    """run's rows (workload, dtype, step ms, probed ms, overhead %, probe set ms, jacobian ms, others) as a
    table at most `width` columns wide (gradlab.sweep.terminal)."""
    cols = [Col("work"), Col("dtype")] + [Col(h, number=True) for h in
            ("step ms", "probed ms", "probes", "probe set ms", "jacobian ms", "others")]  # fmt: skip
    cells = [[r[0], r[1], f"{r[2]:.2f}", f"{r[3]:.2f}", f"{r[4]:+.1f}%", f"{r[5]:.1f}", f"{r[6]:.0f}", f"{r[7]:.2f}"] for r in rows]
    return table(cols, cells, width, key=2)
