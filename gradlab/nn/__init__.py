"""gradlab's NumPy engine: blocks (dense, layer and batch norm, residual), cells (RNN, LSTM, GRU) with
their step functions, the MLP and the stacked recurrent models with hand-written backpropagation
(through time), an ensemble axis, losses, optimizers, clipping and gradient checks."""

from gradlab.nn import activations, clip, gradcheck, init, losses, optim
from gradlab.nn.activations import Activation
from gradlab.nn.cells.gru import gru_step_backward, gru_step_forward
from gradlab.nn.cells.lstm import gate_derivatives, lstm_step_backward, lstm_step_forward
from gradlab.nn.cells.rnn import rnn_step_backward, rnn_step_forward
from gradlab.nn.dense import dense_backward, dense_forward
from gradlab.nn.gru import GRU
from gradlab.nn.lstm import LSTM
from gradlab.nn.mlp import MLP
from gradlab.nn.norm import batch_norm_forward, layer_norm_forward, norm_backward
from gradlab.nn.rnn import RNN
from gradlab.nn.trace import CellTrace, Gradients, MLPTrace, SequenceTrace

__all__ = [
    "GRU", "LSTM", "MLP", "RNN", "Activation", "CellTrace", "Gradients", "MLPTrace", "SequenceTrace",
    "activations", "batch_norm_forward", "clip", "dense_backward", "dense_forward", "gate_derivatives",
    "gradcheck", "gru_step_backward", "gru_step_forward", "init", "layer_norm_forward", "losses",
    "lstm_step_backward", "lstm_step_forward", "norm_backward", "optim", "rnn_step_backward", "rnn_step_forward",
]  # fmt: skip
