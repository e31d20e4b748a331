"""One look for every figure: colour-blind-safe colours that mean the same thing throughout (one per
activation, one per model), sizes that read well printed in a paper, and one way to save."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; no display is needed or wanted

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

# Okabe and Ito's colour-blind-safe palette.
ACTIVATION_COLORS = {
    "sigmoid": "#E69F00",  # orange
    "tanh": "#0072B2",  # blue
    "relu": "#009E73",  # green
    "leaky_relu": "#CC79A7",  # reddish purple
    "identity": "#000000",
}
MODEL_COLORS = {"rnn": "#D55E00", "lstm": "#56B4E9", "mlp": "#000000"}  # vermillion, sky blue
SEQUENCE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000"]
THEORY = dict(color="0.25", linestyle="--", linewidth=1.2)  # theory drawn over measurements: dashed grey
FORMATS = ("png", "pdf")

plt.rcParams.update({
    "figure.dpi": 110, "savefig.dpi": 200, "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9,
    "legend.fontsize": 8, "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.spines.top": False,
    "axes.spines.right": False, "lines.linewidth": 1.5, "savefig.bbox": "tight",
})  # fmt: skip


class SkipFigure(Exception):
    """The tables do not hold what a figure needs; the message says what is missing."""


def color_of(activation: str) -> str:
    return ACTIVATION_COLORS.get(activation, "#777777")


def figure(nrows: int = 1, ncols: int = 1, width: float = 3.3, height: float = 2.6, **kw):
    """A figure of nrows x ncols panels, each width x height inches (3.3 in = one paper column)."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, **kw)
    return fig, axes


def caption(fig: Figure, text: str) -> None:
    """A one-line title naming the config, above all panels."""
    fig.suptitle(text, fontsize=9)


def save(fig: Figure, stem: str | Path, formats: Iterable[str] = FORMATS) -> list[Path]:
    """Write fig as stem.png, stem.pdf (each to a temporary name, then renamed); close it."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        tmp = path.with_name(f".{path.name}.tmp")
        fig.savefig(tmp, format=fmt)
        tmp.replace(path)
        paths.append(path)
    plt.close(fig)
    return paths
