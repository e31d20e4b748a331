"""Sweeps: config parsing and validation, grid expansion, executors, the result store, resume."""

from gradlab.sweep.config import ConfigError, Experiment, from_dict, load, run_id
from gradlab.sweep.store import Store, load as load_results

__all__ = ["ConfigError", "Experiment", "Store", "from_dict", "load", "load_results", "run_id"]
