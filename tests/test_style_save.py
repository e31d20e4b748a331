"""style.save lays a figure out once for all its files (style.laid_out): its PNG must be the file matplotlib's
own savefig writes (which lays the figure out and measures its tight box again for every file), and its PDF
must take the PNG's box."""

from __future__ import annotations

import re

import matplotlib
import numpy as np
import pytest

from gradlab.plots import style
from gradlab.report import png_size


@style.styled
def busy_figure(layout: str | None) -> style.StyledFigure:
    """Two panels with what moves a layout and a tight box: log axes (mathtext tick labels), a suptitle, a
    legend outside the axes, a long y label."""
    fig, axes = style.figure(1, 2, layout=layout)
    x = np.arange(1, 40)
    for i, ax in enumerate(axes[0]):
        ax.semilogy(x, np.exp(-x / (3 + i)), label=f"$\\|\\delta_l\\|$, case {i}")
        ax.set_ylabel("gradient norm, batch mean (a long label)")
        ax.set_xlabel("layer $l$")
    axes[0, 1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
    style.caption(fig, "A caption above both panels, as the figures have")
    if layout is None:
        fig.tight_layout()
    return fig


def pdf_box(path) -> tuple[float, float]:
    """(width, height) in points of a one-page PDF's MediaBox."""
    box = re.search(rb"MediaBox \[ *([\d.]+) ([\d.]+) ([\d.]+) ([\d.]+) *\]", path.read_bytes()).groups()
    return float(box[2]) - float(box[0]), float(box[3]) - float(box[1])


@pytest.mark.parametrize("layout", ["constrained", None], ids=["constrained", "tight_layout"])
def test_saved_png_is_matplotlibs_own_and_the_pdf_takes_its_box(layout, tmp_path):
    paths = style.save(busy_figure(layout), tmp_path / "ours")
    reference = busy_figure(layout)
    with matplotlib.rc_context(style.STYLE):
        reference.savefig(tmp_path / "theirs.png", format="png")  # savefig's own layout and tight box
    ours = {p.suffix: p for p in paths}
    ours_png, ours_pdf = ours[".png"], ours[".pdf"]
    assert ours_png.read_bytes() == (tmp_path / "theirs.png").read_bytes(), (
        f"{layout}: style.save's PNG {png_size(ours_png.read_bytes())} px differs from savefig's "
        f"{png_size((tmp_path / 'theirs.png').read_bytes())} px")
    width, height = png_size(ours_png.read_bytes())
    dpi = style.STYLE["savefig.dpi"]
    expected = (width / dpi * 72, height / dpi * 72)  # the PNG's box in points
    got = pdf_box(ours_pdf)
    assert all(abs(g - e) <= 72 / dpi for g, e in zip(got, expected)), (
        f"{layout}: the PDF's box {got} pt is not the PNG's {expected} pt (within a pixel)")


def test_a_canvas_without_an_agg_renderer_is_left_to_savefig():
    from matplotlib.backend_bases import FigureCanvasBase
    from matplotlib.figure import Figure
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    fig = Figure()
    FigureCanvasBase(fig)
    fig.set_layout_engine("constrained")
    with matplotlib.rc_context(style.STYLE):
        assert style.laid_out(fig) == {}, "laid_out must leave a figure it cannot measure to savefig"
    assert isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine), "laid_out must not touch its layout engine"
