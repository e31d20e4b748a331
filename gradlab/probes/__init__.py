"""Probes: the engine's trace and gradients reduced to the rows of the tidy tables of DESIGN.md.

Every function here is a pure function of what the engine returns (Gradients, its trace, the model's
parameters and a forward on a probe set); none of them changes the model. They return NumPy records
(cheap enough to take at every step) that `*_frame` and `Recorder.frames()` turn into pandas
DataFrames with the documented columns and explicit dtypes (see COLUMNS).

By what they measure, one module each:
    steps      the steps table's rows (step_record)
    layers     per layer: gradient and delta norms, activations, saturation, update ratios (layer_stats)
    timesteps  per cell layer and time step: the norms of dL/dh_t, dL/dc_t and dL_T/dh_t (the last step's
               loss alone), the step Jacobians' (timestep_stats)
    jacobian   the step Jacobians dh_t/dh_(t-1) and their spectral norms
    dead       dead units and collapse on a fixed probe set (DeadTracker)
    frames     the tables' columns and dtypes (COLUMNS) and the typed DataFrames
    recorder   which steps are logged (should_log) and the Recorder that collects the tables over a run
    members    an ensemble's layers columns for all its members at once, each member's bits alone
    model      what a "layer" is for each model (layer_params, kind_of)
    norms      the norms they take
"""

from gradlab.probes.dead import (
    COLLAPSE_RTOL, DEFAULT_PROBE_SIZE, DeadReport, DeadTracker, dead_masks, frozen_buffers, is_collapsed,
    output_spread, probe_set,
)  # fmt: skip
from gradlab.probes.frames import COLUMNS, empty_frames, layers_frame, steps_frame, timesteps_frame
from gradlab.probes.io_jacobian import input_output_jacobian, jjt_eigenvalues, singular_values, spectrum_moments, squared_entry_moments  # noqa: F401
from gradlab.probes.jacobian import (
    EXACT_MAX_H, POWER_ITERS, POWER_RTOL, jacobian_coefficients, jacobian_parts, spectral_norms, step_jacobians,
)  # fmt: skip
from gradlab.probes.layers import SATURATION, layer_stats, snapshot, update_ratios
from gradlab.probes.model import kind_of, layer_params
from gradlab.probes.recorder import Recorder, should_log
from gradlab.probes.steps import step_record
from gradlab.probes.timesteps import last_step_dout, timestep_stats

__all__ = [
    "COLLAPSE_RTOL", "COLUMNS", "DEFAULT_PROBE_SIZE", "EXACT_MAX_H", "POWER_ITERS", "POWER_RTOL", "SATURATION",
    "DeadReport", "DeadTracker", "Recorder", "dead_masks", "empty_frames", "frozen_buffers", "is_collapsed",
    "jacobian_coefficients", "jacobian_parts", "kind_of", "last_step_dout", "layer_params", "layer_stats",
    "layers_frame", "output_spread", "probe_set", "should_log", "snapshot", "spectral_norms", "step_jacobians",
    "step_record", "steps_frame", "timestep_stats", "timesteps_frame", "update_ratios",
]  # fmt: skip
