"""One look for every figure: colour-blind-safe colours that mean the same thing throughout (one per
activation, one per model), sizes that read well printed in a paper, math in matplotlib's mathtext, and
one way to save; Drawn, what a figure's draw() returns for each file.

gradlab changes no global matplotlib state, so that it can be imported into a user's notebook: it never
picks a backend and never updates the global rcParams. Its look (STYLE) is applied per figure instead:
figure functions run inside styled() (matplotlib.rc_context, which restores every rcParams value after),
and their figures are StyledFigure, a pyplot-free matplotlib Figure that applies STYLE again whenever it is
drawn (saved, or rendered inline by Jupyter through _repr_png_). Such a figure needs no GUI backend
(savefig renders it with Agg, PDF or SVG directly), pyplot never holds it (nothing to close, and a user's
plt.show() does not show it), and it is freed like any Python object."""

from __future__ import annotations

import functools
import io
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

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

# gradlab's rcParams, in force only inside styled() and while a StyledFigure draws (never globally).
STYLE = {
    "figure.dpi": 110, "savefig.dpi": 200, "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9,
    "legend.fontsize": 8, "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.spines.top": False,
    "axes.spines.right": False, "lines.linewidth": 1.5, "savefig.bbox": "tight",
    "svg.hashsalt": "gradlab",  # SVG element ids from a fixed salt, not a random one: the same figure, the same file
}  # fmt: skip
# no date in PDF and SVG files (each carried the time it was written), so a redraw of the same tables gives
# the same bytes (PNG files carry none); "Software" stays, naming matplotlib's version
UNDATED = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}

P = ParamSpec("P")
R = TypeVar("R")


def styled(func: Callable[P, R]) -> Callable[P, R]:
    """func run with STYLE in force (matplotlib.rc_context): every figure function is decorated with it, so
    that the artists it creates (titles, labels, lines, spines) take gradlab's look; the global rcParams
    are exactly as before when it returns or raises."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with matplotlib.rc_context(STYLE):
            return func(*args, **kwargs)

    return wrapper


class StyledFigure(Figure):
    """A pyplot-free Figure that draws and saves with STYLE in force (the rcParams read at draw time: tick
    labels, which matplotlib creates lazily, savefig's dpi and tight bounding box), and displays inline in
    Jupyter as a PNG at its own dpi (_repr_png_; IPython's inline backend, when active, renders it through
    draw() too). Its canvas is Agg's (no GUI: fig.canvas.draw() and buffer_rgba() work anywhere)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        FigureCanvasAgg(self)

    def draw(self, renderer) -> None:
        with matplotlib.rc_context(STYLE):
            super().draw(renderer)

    def savefig(self, fname, **kwargs) -> None:
        with matplotlib.rc_context(STYLE):
            super().savefig(fname, **kwargs)

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=self.dpi)
        return buffer.getvalue()


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

    def _repr_png_(self) -> bytes | None:
        """Jupyter shows a Drawn as its figure."""
        show = getattr(self.fig, "_repr_png_", None)
        return show() if show is not None else None


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


SUBPLOT_KEYS = ("sharex", "sharey", "width_ratios", "height_ratios", "subplot_kw", "gridspec_kw")


def blank(width: float, height: float, **kw) -> StyledFigure:
    """An empty StyledFigure of width x height inches (kw: Figure's, e.g. layout="constrained"), made
    with STYLE in force (its dpi, 110)."""
    with matplotlib.rc_context(STYLE):
        return StyledFigure(figsize=(width, height), **kw)


def figure(nrows: int = 1, ncols: int = 1, width: float = 3.3, height: float = 2.6, **kw):
    """(StyledFigure, axes (nrows, ncols)): nrows x ncols panels, each width x height inches (3.3 in = one
    paper column); kw as plt.subplots takes them (sharey=, layout=, ...), but no pyplot is involved."""
    sub = {k: kw.pop(k) for k in SUBPLOT_KEYS if k in kw}
    fig = blank(width * ncols, height * nrows, **kw)
    with matplotlib.rc_context(STYLE):
        axes = fig.subplots(nrows, ncols, squeeze=False, **sub)
    return fig, axes


def close(fig: Figure | int) -> None:
    """Let go of fig: pyplot closes it when pyplot made it (a user's or a plug-in's figure); a StyledFigure
    is pyplot's never, and this is a no-op for it. pyplot is not imported for this."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(fig)


def caption(fig: Figure, text: str) -> None:
    """A one-line title naming the config, above all panels."""
    fig.suptitle(text, fontsize=9)


def save(fig: Figure, stem: str | Path, formats: Iterable[str] = FORMATS) -> list[Path]:
    """Write fig as stem.png, stem.pdf (each to a temporary name, then renamed), with STYLE in force (also
    for a figure that is not a StyledFigure); close it. The stem may hold dots ("loss_curves__lr=0.01"):
    the format is appended, never put in place of a "suffix"."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    with matplotlib.rc_context(STYLE):
        bbox = laid_out(fig)
        for fmt in formats:
            path = stem.with_name(f"{stem.name}.{fmt}")
            tmp = path.with_name(f".{path.name}.tmp")
            fig.savefig(tmp, format=fmt, metadata=UNDATED.get(fmt), **bbox)
            tmp.replace(path)
            paths.append(path)
    close(fig)
    return paths


def laid_out(fig: Figure) -> dict:
    """Lay fig out once for all its files, at savefig's dpi (as its PNG): run its layout engine, then switch it
    off (the positions stay), and measure savefig's tight bounding box once: {"bbox_inches": that box}. Left
    to savefig, both are done again for every file, and twice each (a measuring draw, then the real one). {}
    (savefig does them) unless savefig.bbox is "tight" and fig's canvas has an Agg renderer."""
    if matplotlib.rcParams["savefig.bbox"] != "tight" or not hasattr(fig.canvas, "get_renderer"):
        return {}
    dpi, original = matplotlib.rcParams["savefig.dpi"], fig.dpi
    fig.dpi = original if dpi == "figure" else dpi
    try:
        fig.draw_without_rendering()
        box = fig.get_tightbbox(fig.canvas.get_renderer())
    finally:
        fig.dpi = original
    fig.set_layout_engine("none")
    return {"bbox_inches": box.padded(matplotlib.rcParams["savefig.pad_inches"])}
