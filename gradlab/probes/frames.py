"""The tables' columns and dtypes (COLUMNS), and the typed pandas DataFrames the probes' NumPy records
become: steps_frame (from step_record rows), layers_frame and timesteps_frame (from per-step stats)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gradlab.probes.model import Array


# The tables' columns and dtypes, in order. "str" is pandas' string dtype; "boolean" is pandas'
# nullable boolean (NA where a flag was not measured).
COLUMNS: dict[str, dict[str, str]] = {
    "steps": {
        "run_id": "str",
        "step": "int64",
        "loss": "float64",
        "grad_norm": "float64",
        "grad_norm_clipped": "float64",
        "clipped": "bool",
        "lr": "float64",
        "collapsed": "boolean",
    },
    "layers": {
        "run_id": "str",
        "step": "int64",
        "layer": "int64",
        "weight_grad_norm": "float64",
        "bias_grad_norm": "float64",
        "delta_norm": "float64",
        "da_norm": "float64",
        "act_mean": "float64",
        "act_std": "float64",
        "dead_frac": "float64",
        "born_dead_frac": "float64",
        "died_frac": "float64",
        "saturated_frac": "float64",
        "update_ratio": "float64",
    },
    "timesteps": {
        "run_id": "str",
        "step": "int64",
        "layer": "int64",
        "t": "int64",
        "dh_norm": "float64",
        "dc_norm": "float64",
        "dh_last_norm": "float64",
        "jacobian_norm": "float64",
    },
}


def steps_frame(records: list[tuple], run_id: str = "") -> pd.DataFrame:
    """The steps table from step_record rows."""
    cols = [c for c in COLUMNS["steps"] if c != "run_id"]
    data = {c: [r[i] for r in records] for i, c in enumerate(cols)}
    data["collapsed"] = [pd.NA if v is None else v for v in data["collapsed"]]
    return _typed("steps", data, len(records), run_id)


def layers_frame(stats: list[tuple[int, dict[str, Array]]], run_id: str = "") -> pd.DataFrame:
    """The layers table from (step, layer_stats(...)) pairs."""
    return _stack("layers", stats, run_id)


def timesteps_frame(stats: list[tuple[int, dict[str, Array]]], run_id: str = "") -> pd.DataFrame:
    """The timesteps table from (step, timestep_stats(...)) pairs."""
    return _stack("timesteps", stats, run_id)


NUMPY_DTYPES = ("float64", "int64", "bool")  # the columns' dtypes that a NumPy array holds as pandas does


def _typed(table: str, data: dict, n: int, run_id: str) -> pd.DataFrame:
    """The table's frame from its columns' values (lists or arrays), each converted to its dtype once
    (NumPy's for the numeric ones; a Series per column cost more than the rest of a run's tables)."""
    cols = COLUMNS[table]
    data = {"run_id": [run_id] * n, **data}
    return pd.DataFrame({c: _column(data[c], dt) for c, dt in cols.items()}, columns=list(cols))


def _column(values, dtype: str):
    return np.asarray(values, dtype=dtype) if dtype in NUMPY_DTYPES else pd.array(values, dtype=dtype)


def _stack(table: str, stats: list[tuple[int, dict[str, Array]]], run_id: str) -> pd.DataFrame:
    cols = [c for c in COLUMNS[table] if c not in ("run_id", "step")]
    if not stats:
        return _typed(table, {c: [] for c in ["step", *cols]}, 0, run_id)
    data = {c: np.concatenate([s[c] for _, s in stats]) for c in cols}
    data["step"] = np.concatenate([np.full(len(s[cols[0]]), step, dtype=np.int64) for step, s in stats])
    return _typed(table, data, len(data["step"]), run_id)


def empty_frames(run_id: str = "") -> dict[str, pd.DataFrame]:
    """The three tables with no rows (right columns and dtypes)."""
    return {
        "steps": steps_frame([], run_id),
        "layers": layers_frame([], run_id),
        "timesteps": timesteps_frame([], run_id),
    }
