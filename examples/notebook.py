# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # gradlab in a notebook
#
# A small sweep (MLP depth x activation at Glorot's "standard" init, a few dozen steps: seconds), run and
# loaded through the Python API, two of gradlab's figures, and a plot of our own from the tidy tables with
# plain pandas and matplotlib.pyplot. gradlab changes no global matplotlib state: its figures carry their own
# style, and the plots you make afterwards look as they would without gradlab.
#
# Open it as a notebook with jupytext (`jupytext --to ipynb examples/notebook.py`, or JupyterLab with the
# jupytext extension), run its `# %%` cells in VS Code or Spyder, or run it as a script:
# `python examples/notebook.py` (headless: `MPLBACKEND=Agg python examples/notebook.py`). The results go to
# $GRADLAB_EXAMPLE_OUT, or a new temporary folder; running it again there resumes (nothing is retrained).

# %%
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import gradlab
import gradlab.plots
import gradlab.plots.style
from gradlab.sweep import from_dict
from gradlab.sweep.runner import run

WORK = Path(os.environ.get("GRADLAB_EXAMPLE_OUT") or tempfile.mkdtemp(prefix="gradlab-notebook-"))
RESULTS = WORK / "results"  # a gradlab results folder (gradlab run's layout)
FIGURES = WORK / "figures"  # the PNGs this notebook saves
DEPTHS, ACTIVATIONS = [2, 4, 8], ["sigmoid", "tanh", "relu"]

# %% [markdown]
# ## A sweep: 3 depths x 3 activations, 40 steps each
#
# The same config as a TOML file under experiments/ would hold, as a dict.

# %%
experiment = from_dict({
    "name": "notebook_depth",
    "model": {"kind": "mlp", "width": 32, "init": "standard"},
    "task": {"name": "teacher_student", "input_size": 16},
    "train": {"steps": 40, "batch": 32, "optimizer": "sgd", "lr": 0.01, "log_every": 10},
    "sweep": {"depth": DEPTHS, "activation": ACTIVATIONS},
})  # fmt: skip
summary = run(experiment, RESULTS, progress=False)
print(f"{summary.total} runs in {RESULTS} ({summary.skipped} already there), {summary.wall_s:.1f} s")

# %%
tables = gradlab.load(RESULTS)  # {"runs", "steps", "layers", "timesteps"}: pandas DataFrames
tables["runs"][["run_id", "depth", "activation", "status", "final_loss", "diagnosis"]]

# %% [markdown]
# ## Two of gradlab's figures
#
# `gradlab.plots.figures(name, tables)` returns one matplotlib Figure per file `gradlab plot` would write;
# a Figure as a cell's last value is shown inline.

# %%
by_layer = gradlab.plots.figures("gradient_by_layer", tables)[0]
by_layer

# %%
heatmap = gradlab.plots.figures("depth_activation_heatmap", tables)[0]
heatmap

# %% [markdown]
# ## A plot of our own: delta_norm by layer in the deepest nets
#
# The layers table has one row per run, logged step and layer; merged with the runs table's config columns
# it can be grouped by activation. Hidden layers are 0 .. depth-1 (the output layer is `depth`).

# %%
layers = tables["layers"].merge(tables["runs"][["run_id", "depth", "activation"]], on="run_id")
last = layers[layers["step"] == layers.groupby("run_id")["step"].transform("max")]
deepest = last[(last["depth"] == max(DEPTHS)) & (last["layer"] < last["depth"])]
by_layer_and_activation = deepest.pivot(index="layer", columns="activation", values="delta_norm")
decades = np.log10(by_layer_and_activation.iloc[0] / by_layer_and_activation.iloc[-1])
print("log10 delta_norm, first over last hidden layer:", ", ".join(f"{a} {d:+.1f}" for a, d in decades.items()))

fig, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
for activation, rows in deepest.groupby("activation"):
    rows = rows.sort_values("layer")
    color = gradlab.plots.style.color_of(activation)  # gradlab's colour for each activation
    ax.semilogy(rows["layer"], rows["delta_norm"], marker="o", color=color, label=activation)
ax.set_xlabel("hidden layer (0 nearest the input)")
ax.set_ylabel("delta_norm = mean ||dL/dz||")
ax.set_title(f"depth {max(DEPTHS)}, last logged step")
ax.legend()
plt.show()

# %% [markdown]
# ## Saving
#
# gradlab's figures save at 200 dpi with a tight bounding box (its style travels with the figure); ours with
# the rcParams in force.

# %%
FIGURES.mkdir(parents=True, exist_ok=True)
by_layer.savefig(FIGURES / "gradient_by_layer.png")
heatmap.savefig(FIGURES / "depth_activation_heatmap.png")
fig.savefig(FIGURES / "delta_norm_by_layer.png")
print(f"figures in {FIGURES}")
