"""gradlab: a lab for seeing, measuring and explaining vanishing, exploding and dying gradients."""

__version__ = "0.1.0"

from gradlab import nn  # noqa: E402
from gradlab.nn import GRU, LSTM, MLP, RNN  # noqa: E402



def load(path: str):
    """The tables of a results folder (written by `gradlab run`) as pandas DataFrames:
    {"runs", "steps", "layers", "timesteps"}."""
    from gradlab.sweep.store import load as load_results

    return load_results(path)


__all__ = ["GRU", "LSTM", "MLP", "RNN", "__version__", "load", "nn"]
