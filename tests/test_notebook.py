"""gradlab in a Jupyter notebook: importing it changes no global matplotlib state (backend, rcParams, pyplot),
its figures carry their own style (STYLE, per figure) and display inline (_repr_png_), a user's own pyplot
figure looks as it would without gradlab, headless use needs no GUI, and examples/notebook.py runs as a
script and as a notebook's cells (each run as IPython runs a cell), its tables and figures holding the
sweep it names."""

from __future__ import annotations

import ast
import io
import json
import os
import shutil
import subprocess
import sys
import warnings
from itertools import product
from pathlib import Path

import matplotlib
import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import gradlab
import gradlab.plots
from gradlab.plots import NAMES, module, style
from gradlab.plots.draw import quiet
from gradlab.report import png_size

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "notebook.py"
TOUR = ROOT / "results" / "tour"  # committed results with runs for every figure
IMPORTED = ("gradlab", "gradlab.plots", "gradlab.plots.draw", "gradlab.report", "gradlab.reproduce", "gradlab.cli")
PNG = b"\x89PNG\r\n\x1a\n"

# Prints the global matplotlib state after importing the modules named on the command line: every rcParams
# value as stored (dict.items: the backend unresolved), whether pyplot was imported, then get_backend().
PROBE = """
import importlib, json, sys
import matplotlib
for name in sys.argv[1:]:
    importlib.import_module(name)
state = {key: repr(value) for key, value in dict.items(matplotlib.rcParams)}
state["pyplot imported"] = "matplotlib.pyplot" in sys.modules
state["get_backend()"] = matplotlib.get_backend()
print(json.dumps(state))
"""


def headless_env(**extra: str) -> dict[str, str]:
    """This process's environment without a display, plus extra."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND")}
    return {**env, **extra}


def probe(*modules: str) -> dict:
    # svg: a backend that is not Agg, so that a gradlab that picked Agg (as it once did) shows
    done = subprocess.run([sys.executable, "-c", PROBE, *modules], capture_output=True, text=True, cwd=ROOT,
                          env=headless_env(MPLBACKEND="svg"), timeout=300)  # fmt: skip
    assert done.returncode == 0, f"importing {modules} failed:\n{done.stderr}"
    return json.loads(done.stdout)


def differences(before: dict, after: dict) -> dict:
    """{key: (before, after)} for every key whose value differs (or is in only one)."""
    return {k: (before.get(k), after.get(k)) for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)}


def rc_state() -> dict[str, str]:
    """This process's rcParams as stored (the backend unresolved), each value's repr."""
    return {key: repr(value) for key, value in dict.items(matplotlib.rcParams)}


@pytest.fixture(scope="module")
def matplotlib_only() -> dict:
    return probe()


@pytest.mark.parametrize("name", IMPORTED)
def test_importing_gradlab_changes_no_global_matplotlib_state(name, matplotlib_only):
    state = probe(name)
    changed = differences(matplotlib_only, state)
    assert not changed, f"importing {name} changed the global matplotlib state (matplotlib alone, with it): {changed}"
    backend = state["get_backend()"]
    assert backend == "svg", f"get_backend() after importing {name}: {backend!r}, MPLBACKEND was 'svg'"


def test_importing_every_figure_and_reproduction_module_changes_no_global_matplotlib_state(matplotlib_only):
    from gradlab.reproduce import NAMES as REPRODUCTIONS

    names = [f"gradlab.plots.{n}" for n in NAMES] + [f"gradlab.reproduce.{n}" for n in REPRODUCTIONS]
    changed = differences(matplotlib_only, probe(*names))
    assert not changed, f"importing the figure and reproduction modules changed the global matplotlib state: {changed}"


# ---- gradlab's figures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tour_drawn():
    """Every figure of results/tour drawn through its module's draw(): (rcParams before, rcParams after,
    pyplot's figure numbers before and after, {name: [Drawn]})."""
    if not (TOUR / "runs.parquet").is_file():
        pytest.skip("results/tour is not in this checkout")
    tables = gradlab.load(TOUR)
    before, open_before = rc_state(), plt.get_fignums()
    with quiet():
        drawn = {name: module(name).draw(tables) for name in NAMES}
    return before, rc_state(), open_before, plt.get_fignums(), drawn


def test_every_figure_function_returns_pyplot_free_figures(tour_drawn):
    _, _, open_before, open_after, drawn = tour_drawn
    for name, items in drawn.items():
        assert items, f"{name}: draw() returned no file"
        for d in items:
            assert isinstance(d.fig, Figure), f"{name}{d.suffix}: draw() gave a {type(d.fig).__name__}, not a Figure"
            assert isinstance(d.fig, style.StyledFigure), f"{name}{d.suffix}: not made by style.figure / style.blank"
            assert d.fig.axes, f"{name}{d.suffix}: a figure without axes"
    assert open_after == open_before, f"pyplot's open figures went from {open_before} to {open_after}"


def test_drawing_gradlab_figures_leaves_the_global_rcparams_alone(tour_drawn):
    before, after, _, _, _ = tour_drawn
    assert not differences(before, after), f"drawing changed the global rcParams: {differences(before, after)}"


def not_blank(png: bytes, what: str) -> None:
    rgb = matplotlib.image.imread(io.BytesIO(png), format="png")[..., :3] * 255
    assert rgb.std() > 10, f"{what}: the image is (nearly) one colour: pixel std {rgb.std():.2f}"


def test_every_figure_displays_inline_in_gradlab_s_style(tour_drawn):
    _, _, _, _, drawn = tour_drawn
    before = rc_state()
    for name, items in drawn.items():
        d = items[0]
        png = d.fig._repr_png_()
        assert png.startswith(PNG), f"{name}: _repr_png_ did not return a PNG"
        width, height = png_size(png)
        # inline at the figure's dpi (110), saved at savefig.dpi (200): the same tight box, in other pixels
        saved = io.BytesIO()
        d.fig.savefig(saved, format="png")
        ratio, expected = width / png_size(saved.getvalue())[0], d.fig.dpi / style.STYLE["savefig.dpi"]
        assert abs(ratio - expected) < 0.01, f"{name}: inline / saved width {ratio:.4f}, dpi ratio {expected:.4f}"
        not_blank(png, f"{name} inline")
        # a Drawn displays as its figure (not byte for byte: constrained layout moves a little at each draw,
        # and the tight bounding box by a pixel)
        shown = d._repr_png_()
        w, h = png_size(shown)
        assert shown.startswith(PNG) and abs(w - width) <= 2 and abs(h - height) <= 2, (
            f"{name}: the Drawn shows {w} x {h} px, its figure {width} x {height}")
        assert d.fig.dpi == style.STYLE["figure.dpi"], f"{name}: dpi {d.fig.dpi}, STYLE has {style.STYLE['figure.dpi']}"
        ax = d.fig.axes[0]
        ticks = [t for t in ax.xaxis.get_majorticklabels() if t.get_text()]
        assert ticks, f"{name}: no x tick labels were rendered"
        size = ticks[0].get_fontsize()
        want = style.STYLE["xtick.labelsize"]
        assert size == want, f"{name}: tick labels rendered at {size} pt, STYLE has {want}"
    changed = differences(before, rc_state())
    assert not changed, f"rendering changed the global rcParams: {changed}"


def look(fig: Figure) -> dict:
    """What rcParams decide in a figure: dpi, spines, font sizes of the title, labels and rendered tick
    labels, line width (a figure with a title, labels and one line; drawn first)."""
    ax = fig.axes[0]
    fig.canvas.draw()
    tick = next(t for t in ax.xaxis.get_majorticklabels() if t.get_text())
    return {"dpi": fig.dpi, "top spine": ax.spines["top"].get_visible(), "title": ax.title.get_fontsize(),
            "label": ax.xaxis.label.get_fontsize(), "tick": tick.get_fontsize(),
            "line": ax.get_lines()[0].get_linewidth()}  # fmt: skip


def pyplot_figure() -> dict:
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 2])
    ax.set_title("mine")
    ax.set_xlabel("x")
    try:
        return look(fig)
    finally:
        plt.close(fig)


@style.styled
def gradlab_figure() -> Figure:
    fig, axes = style.figure()
    axes[0, 0].plot([0, 1], [1, 2])
    axes[0, 0].set_title("gradlab")
    axes[0, 0].set_xlabel("x")
    return fig


def test_a_user_s_pyplot_figure_after_gradlab_s_looks_as_without_gradlab():
    mine_before = pyplot_figure()
    ours_fig = gradlab_figure()
    ours_fig.savefig(io.BytesIO(), format="png")
    ours_fig._repr_png_()
    ours = look(ours_fig)
    mine_after = pyplot_figure()
    expected = {"dpi": style.STYLE["figure.dpi"], "top spine": False, "title": style.STYLE["axes.titlesize"],
                "label": style.STYLE["axes.labelsize"], "tick": style.STYLE["xtick.labelsize"],
                "line": style.STYLE["lines.linewidth"]}  # fmt: skip
    assert ours == expected, f"gradlab's figure: {ours}, STYLE gives {expected}"
    unlike = [k for k in expected if mine_before[k] != expected[k]]
    assert len(unlike) >= 4, f"the user's defaults {mine_before} are too close to STYLE {expected} for this test"
    assert mine_after == mine_before, f"the user's figure after gradlab's: {mine_after}; before: {mine_before}"


def test_figures_returns_one_figure_per_file_and_names_what_is_wrong(tour_drawn):
    _, _, _, _, drawn = tour_drawn
    tables = gradlab.load(TOUR)
    figs = gradlab.plots.figures("loss_curves", tables)
    assert len(figs) == len(drawn["loss_curves"]) > 1, "one Figure per file"
    assert all(isinstance(f, Figure) for f in figs)
    with pytest.raises(ValueError, match="figure must be one of gradient_by_layer, .*; got 'nope'"):
        gradlab.plots.figures("nope", tables)
    with pytest.raises(ValueError, match="'colour': not a field of the runs table; one of .*activation"):
        gradlab.plots.figures("loss_curves", tables, by="colour")
    with pytest.raises(style.SkipFigure, match="RNN"):
        mlps = tables["runs"][tables["runs"]["model"] == "mlp"]
        gradlab.plots.figures("gradient_through_time", {**tables, "runs": mlps})


# ---- the example ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def script_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """examples/notebook.py run as a plain script, headless (MPLBACKEND=Agg, no display), in a temp dir."""
    work = tmp_path_factory.mktemp("notebook")
    done = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, cwd=work, timeout=600,
                          env=headless_env(MPLBACKEND="Agg", GRADLAB_EXAMPLE_OUT=str(work)))  # fmt: skip
    assert done.returncode == 0, f"examples/notebook.py failed (exit {done.returncode}):\n{done.stderr[-3000:]}"
    return work, done


def percent_cells(path: Path) -> list[tuple[str, str]]:
    """(kind, source) of each cell of a percent-format script ("# %%" starts a code cell, "# %% [markdown]"
    a markdown one); the header before the first cell is not a cell."""
    cells: list[tuple[str, list[str]]] = []
    for line in path.read_text().splitlines():
        if line.startswith("# %%"):
            cells.append(("markdown" if "[markdown]" in line else "code", []))
        elif cells:
            cells[-1][1].append(line)
    return [(kind, "\n".join(lines)) for kind, lines in cells]


def run_cell(source: str, namespace: dict):
    """Execute a code cell as IPython does: its statements, then the value of its last statement when that
    is an expression (what Jupyter displays below the cell; None otherwise)."""
    tree = ast.parse(source)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, "<cell>", "exec"), namespace)
    return eval(compile(ast.Expression(last.value), "<cell>", "eval"), namespace) if last is not None else None


@pytest.fixture(scope="module")
def cells(script_run) -> dict:
    """The example's cells run one after another in this process as a notebook's, in the folder the script
    wrote (the sweep resumes, nothing is retrained): its namespace, plus "displayed", the values the cells
    end with."""
    work, _ = script_run
    namespace: dict = {"__name__": "__main__"}
    displayed = []
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        mp.setenv("GRADLAB_EXAMPLE_OUT", str(work))
        warnings.filterwarnings("ignore", message=".*non-interactive.*")  # plt.show() on a non-GUI backend
        for kind, source in percent_cells(EXAMPLE):
            if kind == "code":
                displayed.append(run_cell(source, namespace))
    namespace["displayed"] = displayed
    yield namespace
    plt.close(namespace["fig"])


def test_the_example_is_a_notebook_of_markdown_and_code_cells():
    cells = percent_cells(EXAMPLE)
    kinds = [kind for kind, _ in cells]
    assert kinds.count("markdown") >= 3 and kinds.count("code") >= 5, f"cells {kinds}"
    for i, (kind, source) in enumerate(cells):
        if kind == "markdown":
            bad = [line for line in source.splitlines() if line and not line.startswith("#")]
            assert not bad, f"markdown cell {i} has lines that are not comments: {bad}"
        else:
            assert source.strip(), f"code cell {i} is empty"


def test_the_example_s_cells_display_its_runs_and_two_figures_inline(cells):
    shown = [value for value in cells["displayed"] if value is not None]
    kinds = [type(value).__name__ for value in shown]
    assert len(shown) == 3 and isinstance(shown[0], pd.DataFrame), f"the cells display {kinds}"
    assert list(shown[0].columns[:3]) == ["run_id", "depth", "activation"], list(shown[0].columns)
    assert len(shown[0]) == len(cells["tables"]["runs"]), f"the runs cell shows {len(shown[0])} rows"
    for value in shown[1:]:
        assert isinstance(value, Figure), f"a cell displays a {type(value).__name__}, not a Figure"
        png = value._repr_png_()
        assert png.startswith(PNG), "a figure the cells display has no PNG for Jupyter"
        not_blank(png, "a displayed figure")
    assert shown[1] is cells["by_layer"] and shown[2] is cells["heatmap"]


def test_the_example_runs_as_a_script_and_saves_its_figures(script_run):
    work, done = script_run
    assert "9 runs in" in done.stdout and "(0 already there)" in done.stdout, f"the script printed: {done.stdout!r}"
    for name in ("gradient_by_layer", "depth_activation_heatmap", "delta_norm_by_layer"):
        png = (work / "figures" / f"{name}.png").read_bytes()
        width, height = png_size(png)
        assert width > 300 and height > 200, f"{name}.png is {width} x {height} px"
        not_blank(png, f"{name}.png")


def test_the_example_sweeps_the_grid_it_names(cells):
    runs = cells["tables"]["runs"]
    grid = set(product(cells["DEPTHS"], cells["ACTIVATIONS"]))
    assert set(zip(runs["depth"], runs["activation"])) == grid and len(runs) == len(grid), (
        f"runs {sorted(zip(runs['depth'], runs['activation']))}, the example's grid {sorted(grid)}")
    assert (runs["status"] == "ok").all(), f"statuses {runs['status'].value_counts().to_dict()}"
    summary = cells["summary"]
    assert summary.skipped == summary.total == len(grid), (
        f"the second run retrained: {summary.skipped} of {summary.total} skipped")


def test_the_example_draws_two_gradlab_figures_of_its_runs(cells):
    by_layer, heatmap = cells["by_layer"], cells["heatmap"]
    assert isinstance(by_layer, Figure) and isinstance(heatmap, Figure)
    depths, activations = cells["DEPTHS"], cells["ACTIVATIONS"]
    axes = [ax for ax in by_layer.axes if ax.get_visible()]
    assert len(axes) == 2 * len(depths), f"gradient_by_layer: {len(axes)} panels, expected 2 x {len(depths)} depths"
    for ax, depth in zip(axes, depths):
        assert ax.get_title() == f"depth $L = {depth}$"
        lines = {line.get_gid() for line in ax.get_lines()}
        missing = {f"init:{a}" for a in activations} - lines
        assert not missing, f"depth {depth}: no line {sorted(missing)}"
    images = [im for ax in heatmap.axes for im in ax.get_images()]
    assert images, "depth_activation_heatmap drew no heatmap"
    shapes = {im.get_array().shape for im in images}
    assert shapes == {(len(depths), len(activations))}, f"heatmap cells {shapes}, expected depths x activations"


def test_the_example_s_own_plot_is_delta_norm_by_layer_in_plain_pyplot(cells):
    ax, tables = cells["ax"], cells["tables"]
    deepest = max(cells["DEPTHS"])
    runs = tables["runs"].set_index("activation")
    layers = tables["layers"]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == set(cells["ACTIVATIONS"]), f"lines {sorted(lines)}"
    for activation, line in lines.items():
        rid = runs[runs["depth"] == deepest].loc[activation, "run_id"]
        rows = layers[(layers["run_id"] == rid) & (layers["step"] == layers.loc[layers["run_id"] == rid, "step"].max())]
        rows = rows[rows["layer"] < deepest].sort_values("layer")
        np.testing.assert_array_equal(line.get_xdata(), rows["layer"].to_numpy(), err_msg=f"{activation}: layers")
        np.testing.assert_array_equal(line.get_ydata(), rows["delta_norm"].to_numpy(),
                                      err_msg=f"{activation}: delta_norm")  # fmt: skip
        first_over_last = np.log10(rows["delta_norm"].iloc[0] / rows["delta_norm"].iloc[-1])
        assert cells["decades"][activation] == pytest.approx(first_over_last, rel=1e-12), (
            f"{activation}: the example prints {cells['decades'][activation]} decades, "
            f"the layers table gives {first_over_last}")
        assert line.get_color() == style.color_of(activation)
    assert ax.get_yscale() == "log"
    # made with pyplot after gradlab's figures: the user's rcParams, not gradlab's STYLE
    top = ax.spines["top"].get_visible()
    assert top == matplotlib.rcParams["axes.spines.top"] != style.STYLE["axes.spines.top"], f"top spine {top}"
    assert cells["fig"].number in plt.get_fignums(), "the example's own figure is pyplot's (plt.show() shows it)"


# ---- headless: the CLI ------------------------------------------------------------------------------------

CLI = """
import sys
from gradlab.cli import main
sys.argv = ["gradlab", *sys.argv[1:]]
try:
    main()
finally:
    print("pyplot imported:", "matplotlib.pyplot" in sys.modules, file=sys.stderr)
"""


def test_gradlab_report_needs_no_display_and_no_pyplot(script_run, tmp_path):
    work, _ = script_run
    folder = tmp_path / "results"
    shutil.copytree(work / "results", folder)
    # a GUI backend with no display to show it on: figures must be written without ever loading it
    done = subprocess.run([sys.executable, "-c", CLI, "report", str(folder)], capture_output=True, text=True,
                          cwd=tmp_path, env=headless_env(MPLBACKEND="tkagg"), timeout=600)  # fmt: skip
    assert done.returncode == 0, f"gradlab report failed (exit {done.returncode}):\n{done.stderr[-3000:]}"
    assert "pyplot imported: False" in done.stderr, f"gradlab report imported pyplot: {done.stderr[-500:]}"
    pngs = sorted(p.name for p in (folder / "figures").glob("*.png"))
    assert "gradient_by_layer.png" in pngs and "depth_activation_heatmap.png" in pngs, f"figures written: {pngs}"
    assert (folder / "report.html").stat().st_size > 10_000


# ---- IPython (when installed; gradlab does not depend on it) --------------------------------------------------


def test_ipython_displays_gradlab_s_figures_as_png(cells):
    """IPython's display formatter, as a Jupyter kernel calls it on a cell's value: gradlab's figures give
    image/png (through _repr_png_, or the inline backend's printer for Figure when it is active)."""
    formatters = pytest.importorskip("IPython.core.formatters")
    data, _ = formatters.DisplayFormatter().format(cells["by_layer"])
    assert "image/png" in data, f"IPython formats gradlab's figure as {sorted(data)} only"
    assert data["image/png"].startswith(PNG)
    not_blank(data["image/png"], "IPython's image/png")
