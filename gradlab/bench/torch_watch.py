"""`gradlab bench --torch`: what gradlab.torch.watch adds to a PyTorch training step, on the bench's MLP (W1) and
LSTM (W3) sizes (gradlab.bench.engine.WORKLOADS), in float32 on one torch thread.

A step is zero_grad, forward, 1/2 squared error, backward, clip_grad_norm_ (1.0) and SGD, as
gradlab.bench.engine's TorchStep. Seven copies of the model with the same weights and batch train side by side:
without a watcher, and watched with every=10, every=1 and every=10**9 (step 0 logged only: what the steps
between logged ones cost), each clipping with torch's clip_grad_norm_ and with the watcher's (which clips from
the norm the watcher took, one pass over the gradients fewer). One repeat times a block of BLOCK steps of each
(a block of 10 holds one logged step of every=10), the seven interleaved so that noise from other processes
hits them alike; the ratio is the median over repeats of watched / plain block time. Targets (issue 16):
every=10 adds at most 10% (ratio <= 1.10), every=1 at most 2x (ratio <= 2.0). Times are the process's CPU
time (time.process_time: one torch thread, so the step's own work), which a busy machine inflates far less than
the wall clock; the wall-clock ratio is printed beside it, and the load average before and after.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from gradlab.bench import engine

WORKLOADS = ("W1", "W3")
BLOCK = 10  # steps per timed block
TARGETS = {10: 1.10, 1: 2.0}  # every -> the largest watched / plain ratio allowed
UNLOGGED = 10**9  # every= of a watcher that logs step 0 only: the cost of what it measures at every step
EVERY = (UNLOGGED, *TARGETS)
MAX_NORM, LR = engine.MAX_NORM, engine.LR


def build(name: str, seed: int = 0):
    """(model, x, y) of a workload in float32: an nn.Sequential of Linear / Tanh for the MLP, an LSTM with a
    Linear readout of its last step for the sequence workload; the batch standard normal (engine.data)."""
    import torch
    from torch import nn

    w = engine.WORKLOADS[name]
    x, y = (torch.from_numpy(a) for a in engine.data(w, "float32", seed))
    torch.manual_seed(seed)
    if w.model == "mlp":
        sizes = [w.input_size] + [w.hidden] * w.layers + [w.output_size]
        mods: list[nn.Module] = []
        for l in range(len(sizes) - 1):
            mods.append(nn.Linear(sizes[l], sizes[l + 1]))
            if l < len(sizes) - 2:
                mods.append(nn.Tanh())
        return nn.Sequential(*mods), x, y
    return _sequence(nn)(w.input_size, w.hidden, w.output_size, w.layers), x, y


def _sequence(nn):
    """The sequence workload's module class (torch is imported only when the bench runs)."""

    class Sequence(nn.Module):
        """An LSTM and a linear readout of its last step."""

        def __init__(self, d: int, h: int, o: int, layers: int) -> None:
            super().__init__()
            self.lstm = nn.LSTM(d, h, num_layers=layers, batch_first=True)
            self.readout = nn.Linear(h, o)

        def forward(self, x):
            out, _ = self.lstm(x)
            return self.readout(out[:, -1])

    return Sequence


class Loop:
    """One copy of the model training on the fixed batch, watched with `every` (None: not watched), clipping with
    torch.nn.utils.clip_grad_norm_ or (own_clip) with the watcher's clip_grad_norm_."""

    def __init__(self, name: str, every: int | None, own_clip: bool = False) -> None:
        import copy

        import torch

        from gradlab.torch import watch

        self.torch = torch
        model, self.x, self.y = build(name)
        self.model = copy.deepcopy(model)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LR)
        self.watcher = watch(self.model, every=every, optimizer=self.opt, name=f"bench-{name}") if every else None
        self.own_clip = own_clip and self.watcher is not None

    def step(self) -> None:
        torch = self.torch
        self.opt.zero_grad(set_to_none=True)
        loss = 0.5 * ((self.model(self.x) - self.y) ** 2).sum(dim=-1).mean()
        loss.backward()
        if self.own_clip:
            self.watcher.clip_grad_norm_(MAX_NORM)
        else:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), MAX_NORM)
        self.opt.step()
        if self.watcher is not None:
            self.watcher.step(loss)

    def block(self, steps: int = BLOCK) -> tuple[float, float]:
        """(CPU seconds, wall seconds) of `steps` steps."""
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(steps):
            self.step()
        return time.process_time() - cpu, time.perf_counter() - wall


def measure(name: str, repeats: int) -> dict[str, float]:
    """Median block times (ms per step) of the plain and watched loops and the median paired ratios."""
    loops = {"plain": Loop(name, None)}
    for k in EVERY:
        loops[f"every={k}"], loops[f"every={k} own"] = Loop(name, k), Loop(name, k, own_clip=True)
    for loop in loops.values():  # warm-up: one block each (the first forward, the probe's first run)
        loop.block()
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in loops}
    for _ in range(repeats):
        for key, loop in loops.items():
            times[key].append(loop.block())
    out = {f"{k} ms": statistics.median(c for c, _ in v) / BLOCK * 1e3 for k, v in times.items()}
    for key in loops:
        for i, clock in enumerate(("ratio", "wall ratio")):
            out[f"{key} {clock}"] = statistics.median(a[i] / b[i] for a, b in zip(times[key], times["plain"]))
    for loop in loops.values():
        if loop.watcher is not None:
            loop.watcher.close()
    return out


def run(quick: bool = False, echo: Callable[[str], None] = print) -> dict[str, dict[str, float]]:
    """Measure every workload and print the ratios, each target met or not met."""
    if not engine.torch_available():
        raise ValueError("--torch needs PyTorch, which is not importable here: pip install 'gradlab[torch]'")
    import torch

    torch.set_num_threads(1)
    repeats = 5 if quick else 20
    echo(f"gradlab.torch.watch overhead: float32, 1 torch thread, {repeats} repeats of {BLOCK}-step blocks, interleaved; "
         "CPU time of the process (wall-clock ratio beside it: on a busy machine it also counts waiting for a core)")
    echo(f"load average before: {_load()}")
    results = {}
    for name in WORKLOADS:
        r = results[name] = measure(name, repeats)
        echo(f"{name} {engine.WORKLOADS[name].describe()}")
        echo(f"    plain     {r['plain ms']:.2f} ms/step")
        for own, clip in ((False, "torch.nn.utils.clip_grad_norm_"), (True, "watcher.clip_grad_norm_")):
            echo(f"  clipping with {clip}:")
            for k in EVERY:
                key = f"every={k}" + (" own" if own else "")
                label = "unlogged" if k == UNLOGGED else f"every={k}"
                line = f"    {label:<9} {r[f'{key} ms']:.2f} ms/step, {r[f'{key} ratio']:.3f}x plain (wall {r[f'{key} wall ratio']:.3f}x"
                if k == UNLOGGED:
                    echo(line + "): the steps between logged ones (grad_norm before and after clipping)")
                else:
                    verdict = "met" if r[f"{key} ratio"] <= TARGETS[k] else "not met"
                    echo(line + f"; target <= {TARGETS[k]:g}x: {verdict})")
    echo(f"load average after: {_load()}")
    return results


def _load() -> str:
    """The 1, 5 and 15 minute load averages and the core count (other processes share the cores)."""
    import os

    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"
