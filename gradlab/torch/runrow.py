"""What the runs row says of a torch model beyond its modules: the norm, the width, the lr and schedule read
off the steps, the layers rows the diagnosis reads, and the manifest of a saved folder."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from gradlab.torch.modules import Row


def norm_name(kinds: set[type]) -> str:
    """The runs table's norm of a model with norm layers of these classes: "none", gradlab's "layer"
    (nn.LayerNorm) or "batch" (nn.BatchNorm1d/2d/3d), else the class's name in lower case ("groupnorm",
    "rmsnorm"); "mixed" for several."""
    names = {"layer" if k is nn.LayerNorm else "batch" if k.__name__.startswith("BatchNorm") else k.__name__.lower()
             for k in kinds}  # fmt: skip
    return "none" if not names else names.pop() if len(names) == 1 else "mixed"


def lr_fields(steps: pd.DataFrame, now: float) -> dict[str, Any]:
    """train.lr, the lr of the first recorded step (`now`, the optimizer's, before any), and train.schedule:
    "constant" when every step's lr is that one, else "torch" (a scheduler of the user's; the steps table's
    lr column holds each step's)."""
    lrs = steps["lr"].to_numpy(np.float64)
    lrs = lrs[np.isfinite(lrs)]
    if not len(lrs):
        return {"train.lr": now}
    return {"train.lr": float(lrs[0]), "train.schedule": "constant" if np.all(lrs == lrs[0]) else "torch"}


def input_fields(rows: list[Row], recurrent: list[Row], info: dict[str, Any]) -> dict[str, Any]:
    """task.input_size and task.T of the runs row: the first recurrent module's input_size and its input's length
    in the probe forward (an Embedding before it: its vectors' size, not the token ids'); else the first row's
    in_features (an image MLP's 784 after its Flatten, not the image's last axis); else the input's last axis."""
    if recurrent:
        out = {"task.input_size": int(recurrent[0].module.input_size)}
        return out if info.get("T") is None else {**out, "task.T": int(info["T"])}
    if rows and isinstance(rows[0].module, nn.Linear):
        return {"task.input_size": int(rows[0].module.in_features)}
    return {} if info.get("input") is None or not info["input"] else {"task.input_size": int(info["input"][-1])}


def width(rows: list[Row]) -> int | None:
    sizes = [getattr(r.module, "out_features", None) or getattr(r.module, "hidden_size", None) for r in rows]
    sizes = [s for s in sizes if s]
    return max(set(sizes), key=sizes.count) if sizes else None


def measured(layers: pd.DataFrame) -> pd.DataFrame:
    """The rows the diagnosis reads: NaN in delta_norm or weight_grad_norm means "not measured" here (a fused
    recurrent module's gate gradients, a row without weights), not an overflow, which the steps table's
    grad_norm shows (the diagnosis reads it first)."""
    keep = layers["delta_norm"].notna() & layers["weight_grad_norm"].notna()
    return layers[keep] if len(layers) else layers


def number(value: Any) -> float:
    return math.nan if value is None else float(value)


def manifest(folder: str | Path, tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    from gradlab.sweep.runner import provenance

    runs = tables["runs"]
    counts = {"total": len(runs), **runs["status"].value_counts().to_dict()} if len(runs) else {"total": 0}
    return {"experiment": Path(folder).name, "written_by": "gradlab.torch.watch", **provenance(),
            "torch": torch.__version__, "runs": counts}  # fmt: skip
