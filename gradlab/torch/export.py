"""A watched run's compact exports: one per-layer gradient profile (layer x step), never a panel or a
histogram per parameter.

    profile      logged step x layer table of one layers-table column (delta_norm by default), columns
                 named "<layer> <module name>"; to_csv writes it
    tensorboard  the steps table's scalars (loss, grad_norm, grad_norm_clipped) at every step and, at the
                 logged steps, one scalar per layer of delta_norm, weight_grad_norm, dead_frac and
                 update_ratio (torch.utils.tensorboard, which needs the tensorboard package)
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pandas as pd

from gradlab.probes.frames import COLUMNS

PROFILE_COLUMNS = ("delta_norm", "weight_grad_norm", "dead_frac", "update_ratio")
STEP_SCALARS = ("loss", "grad_norm", "grad_norm_clipped")


def profile(layers: pd.DataFrame, names: list[str], column: str = "delta_norm") -> pd.DataFrame:
    """step x layer of layers[column] (index `step`, one column per layer, "0 fc1", "1 fc2", ...)."""
    allowed = [c for c in COLUMNS["layers"] if c not in ("run_id", "step", "layer")]
    if column not in allowed:
        raise ValueError(f"column must be a layers-table column ({', '.join(allowed)}), got {column!r}")
    wide = layers.pivot_table(index="step", columns="layer", values=column, aggfunc="last", dropna=False)
    wide = wide.reindex(columns=range(len(names)))
    wide.columns = [f"{j} {name}" for j, name in enumerate(names)]
    return wide


def tensorboard(tables: dict[str, pd.DataFrame], names: list[str], logdir: str | Path) -> Path:
    """Write the scalars into logdir (see the module docstring); a one-line error without tensorboard."""
    if importlib.util.find_spec("tensorboard") is None:
        raise RuntimeError("to_tensorboard needs the tensorboard package, which is not installed: pip install tensorboard "
                           "(or use watcher.to_csv(path))")  # fmt: skip
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(logdir))
    try:
        for row in tables["steps"].itertuples(index=False):
            for name in STEP_SCALARS:
                value = float(getattr(row, name))
                if not math.isnan(value):
                    writer.add_scalar(f"steps/{name}", value, int(row.step))
        for column in PROFILE_COLUMNS:
            wide = profile(tables["layers"], names, column)
            for step, values in wide.iterrows():
                writer.add_scalars(f"layers/{column}", {k: float(v) for k, v in values.items() if not math.isnan(v)}, int(step))
    finally:
        writer.close()
    return Path(logdir)
