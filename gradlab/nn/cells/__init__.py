"""Recurrent cells, step by step: each step forward returns (state, cache), each step backward takes (upstream
gradient, cache); a cell's sequence forward loops the steps and its backward loops reversed(range(T)).
These are the reference the fast paths (gradlab.nn.fast) are tested against."""
