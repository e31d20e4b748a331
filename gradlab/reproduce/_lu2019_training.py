"""Lu et al. 2019's |x| training runs as one ensemble (the engine's ensemble axis): R ReLU networks of
width N and k hidden layers, member r built from Generator([seed_r, 0]) and fed batches from
Generator([seed_r, 1]), as gradlab.train.run builds and feeds the run of seed seed_r (He normal
weights, zero biases, Adam, MSE / 2, no clipping), all trained as one computation. Member r at step 0
is the network of run seed_r; its training differs from the run's only by rounding (batched matmuls).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gradlab import tasks
from gradlab.nn import MLP, losses, optim
from gradlab.probes.dead import COLLAPSE_RTOL

Array = np.ndarray


def collapsed_members(y: Array, rtol: float = COLLAPSE_RTOL) -> Array:
    """(R,) bool for outputs y (R, P, O) on P probe inputs: member r's output is constant on the probe set,
    every output's range over the probe inputs at most rtol x its largest |output| (gradlab.probes.is_collapsed
    per member)."""
    with np.errstate(all="ignore"):
        spread = np.max(y.max(axis=1) - y.min(axis=1), axis=-1)
        scale = np.max(np.abs(y), axis=(1, 2))
    return spread <= rtol * scale


def train_ensemble(seeds: list[int], width: int, hidden: int, steps: int, batch: int, lr: float, probe_size: int,
                   log_every: int) -> pd.DataFrame:  # fmt: skip
    """One row per seed: seed, width, depth (= hidden), steps, lr, probe_size, final_loss (held-out MSE / 2
    after training), collapsed_init (step 0) and collapsed_end (after the last update); the fraction of
    members collapsed at steps 0, log_every, ... and after training (index `steps`) in .attrs["curve"]."""
    task, R = tasks.get("abs_value"), len(seeds)
    sizes = [task.input_size] + [width] * hidden + [task.output_size]
    net = MLP(sizes, "relu", init="he_normal", rng=[np.random.default_rng([s, 0]) for s in seeds], ensemble=R)
    adam = optim.get("adam", net.params, lr)
    feeds = [np.random.default_rng([s, 1]) for s in seeds]
    x_probe, y_probe = task.held_out(probe_size)
    probe = np.broadcast_to(x_probe, (R, *x_probe.shape))
    curve: dict[int, Array] = {}
    for step in range(steps):
        if step % log_every == 0:
            curve[step] = collapsed_members(net.forward(probe, train=False)[0])
        xs, ys = zip(*(task.sample(feed, batch) for feed in feeds))
        out, cache = net.forward(np.stack(xs))
        _, dout = losses.mse(out, np.stack(ys), lead=1)
        adam.step(net.backward(dout, cache, input_grad=False).params)
    out = net.forward(probe, train=False)[0]
    curve[steps] = collapsed_members(out)
    final_loss, _ = losses.mse(out, np.broadcast_to(y_probe, out.shape), lead=1)
    frame = pd.DataFrame({"seed": seeds, "width": width, "depth": hidden, "steps": steps, "lr": lr,
                          "probe_size": probe_size, "final_loss": final_loss,
                          "collapsed_init": curve[0], "collapsed_end": curve[steps]})  # fmt: skip
    frame.attrs["curve"] = pd.Series({s: float(c.mean()) for s, c in curve.items()}, name="collapsed")
    return frame
