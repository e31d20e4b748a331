"""gradlab's NumPy engine: activations, initialisers, MLP, RNN and LSTM with hand-written
backpropagation (through time), losses, optimizers, clipping and gradient checks."""

from gradlab.nn import activations, clip, gradcheck, init, losses, optim
from gradlab.nn.activations import Activation
from gradlab.nn.dense import MLP, dense_backward, dense_forward
from gradlab.nn.lstm import LSTM, lstm_step_backward, lstm_step_forward
from gradlab.nn.rnn import RNN, rnn_step_backward, rnn_step_forward
from gradlab.nn.trace import Gradients, MLPTrace, SequenceTrace

__all__ = [
    "LSTM", "MLP", "RNN", "Activation", "Gradients", "MLPTrace", "SequenceTrace",
    "activations", "clip", "dense_backward", "dense_forward", "gradcheck", "init", "losses",
    "lstm_step_backward", "lstm_step_forward", "optim", "rnn_step_backward", "rnn_step_forward",
]  # fmt: skip
