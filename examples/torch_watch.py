"""gradlab's instruments on your own PyTorch training loop: a deep ReLU MLP learning a noisy linear target,
watched every 10 steps, saved as a gradlab results folder and reported.

    python examples/torch_watch.py [OUT]        # default OUT: results/torch_watch
    gradlab show OUT; gradlab report OUT         # what the saved folder holds
"""

import sys
import textwrap

import torch
from torch import nn

import gradlab.torch

out = sys.argv[1] if len(sys.argv) > 1 else "results/torch_watch"
torch.manual_seed(0)
model = nn.Sequential(*[m for _ in range(8) for m in (nn.Linear(32, 32), nn.ReLU())], nn.Linear(32, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.05)
w_true = torch.randn(32, 1)
with gradlab.torch.watch(model, every=10, optimizer=opt, name="relu_mlp", steps=200) as watcher:
    for step in range(200):
        x = torch.randn(64, 32)
        loss = ((model(x) - (x @ w_true + 0.1 * torch.randn(64, 1))) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        watcher.step(loss)
watcher.save(out)
watcher.to_csv(f"{out}/delta_norm_by_layer.csv")
run = gradlab.load(out)["runs"].iloc[0]
print(textwrap.fill(f"{run.run_id}: {run.diagnosis}: {run.diagnosis_text}", 80))
