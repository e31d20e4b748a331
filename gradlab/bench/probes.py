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


def run(quick: bool = False, dtypes: Iterable[str] = ("float64",), echo: Callable[[str], None] = print) -> list[tuple]:
    """Print, per workload and dtype: the step with trace, with probes, the overhead; the probe-set
    forward and the Jacobian norms per logged step."""
    rows = []
    echo("probes (logging every step; gradlab.probes.Recorder without the probe set):")
    head = f"{'work':<5}{'dtype':<8}{'step ms':>9}{'probed ms':>11}{'probes':>8}{'probe set ms':>14}{'jacobian ms':>13}{'others':>8}"
    echo(head)
    echo("-" * len(head))
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
            echo(f"{row[0]:<5}{row[1]:<8}{row[2]:>9.2f}{row[3]:>11.2f}{row[4]:>+7.1f}%{row[5]:>14.1f}{row[6]:>13.0f}{row[7]:>8.2f}")
    echo("targets: probes <= 15% over the traced step when logging every step:")
    for r in rows:
        echo(f"  {r[0]} {r[1]}: {r[4]:+.1f}%  {'met' if r[4] <= 15 else 'NOT met'}")
    echo(f"(probe set: one forward on {PROBE_SET} examples for dead units and collapse, once per logged step; "
         "jacobian: spectral norms of dh_t/dh_(t-1) for every example and t, per logged step, when train.jacobian = true;"
         " others: cores other processes kept busy while the row was measured)")  # fmt: skip
    return rows
