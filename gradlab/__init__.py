"""gradlab: a lab for seeing, measuring and explaining vanishing, exploding and dying gradients."""

__version__ = "0.1.0"

from gradlab import nn  # noqa: E402
from gradlab.nn import LSTM, MLP, RNN  # noqa: E402

__all__ = ["LSTM", "MLP", "RNN", "__version__", "nn"]
