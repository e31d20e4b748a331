"""One look for every figure: colour-blind-safe colours that mean the same thing throughout (one per
activation, one per model), sizes that read well printed in a paper, math in matplotlib's mathtext, and
one way to save; Drawn, what a figure's draw() returns for each file."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
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
# An RNN is drawn in its activation's colour (tanh's blue by default, its colour here); the gated cells in
# the two colours no activation uses, each with its own marker, so that the LSTM and a tanh RNN never look
# alike: vermillion squares for the LSTM, sky-blue diamonds for the GRU.
MODEL_COLORS = {"rnn": "#0072B2", "lstm": "#D55E00", "gru": "#56B4E9", "mlp": "#000000"}
MODEL_MARKERS = {"rnn": "o", "lstm": "s", "gru": "D", "mlp": "o"}
SEQUENCE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000"]
THEORY = dict(color="0.25", linestyle="--", linewidth=1.2)  # theory drawn over measurements: dashed grey
LATER = dict(linestyle=":", linewidth=1.3)  # a later step (the last logged one) in the line's own colour
BAND_ALPHA = 0.25  # the seeds' band: the line's colour, this opaque
FORMATS = ("png", "pdf")

plt.rcParams.update({
    "figure.dpi": 110, "savefig.dpi": 200, "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9,
    "legend.fontsize": 8, "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.spines.top": False,
    "axes.spines.right": False, "lines.linewidth": 1.5, "savefig.bbox": "tight",
})  # fmt: skip


class SkipFigure(Exception):
    """The tables do not hold what a figure needs; the message says what is missing."""


@dataclass
class Drawn:
    """One file of a figure: the matplotlib Figure, its caption (written from the data), what it left
    out and why (notes: gradlab plot prints them, the report shows them), and the file-name suffix that
    tells it from the figure's other files ("" for <figure>.png, "init=he_normal" for
    <figure>__init=he_normal.png)."""

    fig: Figure
    caption: str = ""
    notes: tuple[str, ...] = ()
    suffix: str = ""


def color_of(activation: str) -> str:
    return ACTIVATION_COLORS.get(activation, "#777777")


def fill_band(ax, x, lo, hi, color, gid: str = "", **kw):
    """The seeds' band between lo and hi in the line's colour (NaN gaps left open)."""
    import numpy as np

    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    ok = np.isfinite(lo) & np.isfinite(hi)
    if not ok.any():
        return None
    band = ax.fill_between(np.asarray(x), lo, hi, where=ok, color=color, alpha=BAND_ALPHA, linewidth=0,
                           interpolate=False, **kw)  # fmt: skip
    band.set_gid(gid)
    return band


def figure(nrows: int = 1, ncols: int = 1, width: float = 3.3, height: float = 2.6, **kw):
    """A figure of nrows x ncols panels, each width x height inches (3.3 in = one paper column)."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, **kw)
    return fig, axes


def caption(fig: Figure, text: str) -> None:
    """A one-line title naming the config, above all panels."""
    fig.suptitle(text, fontsize=9)


def save(fig: Figure, stem: str | Path, formats: Iterable[str] = FORMATS) -> list[Path]:
    """Write fig as stem.png, stem.pdf (each to a temporary name, then renamed); close it. The stem may
    hold dots ("loss_curves__lr=0.01"): the format is appended, never put in place of a "suffix"."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = stem.with_name(f"{stem.name}.{fmt}")
        tmp = path.with_name(f".{path.name}.tmp")
        fig.savefig(tmp, format=fmt)
        tmp.replace(path)
        paths.append(path)
    plt.close(fig)
    return paths
