"""Writes experiments/data/file_example.npz, the data of experiments/file_example.toml: three noisy concentric
rings in the plane (radii 0.5, 1, 1.5, noise std 0.1), 300 points each, x (900, 2) float64 and y (900,) the ring
(0, 1, 2), shuffled; fixed by its seed, so the file (and its SHA-256, in the run ids) is the same every time.

    .venv/bin/python experiments/data/file_example.py
"""

from pathlib import Path

import numpy as np

rng = np.random.default_rng(2026)
y = np.repeat(np.arange(3), 300)
angle = rng.uniform(0.0, 2 * np.pi, size=y.size)
radius = 0.5 * (y + 1) + rng.normal(0.0, 0.1, size=y.size)
x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
order = rng.permutation(y.size)
np.savez(Path(__file__).with_suffix(".npz"), x=x[order], y=y[order])
