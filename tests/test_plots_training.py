"""The training figures (dead_units, saturation, clipping, loss_curves) on small hand-made tables: the
lines and panels they draw, their labels and scales, the numbers behind the lines (Lu's overlay, the
divergence rate, medians), a rendered image that is not blank, and SkipFigure when the tables lack
what a figure needs."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from gradlab import theory
from gradlab.plots import clipping, dead_units, loss_curves, saturation, style


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def gid_lines(ax, prefix: str) -> list:
    return [line for line in ax.get_lines() if (line.get_gid() or "").startswith(prefix)]


def bands(ax, prefix: str = "band:") -> list:
    """The seeds' bands (fill_between collections) on ax whose gid starts with prefix."""
    return [c for c in ax.collections if (c.get_gid() or "").startswith(prefix)]


def band_bounds(band) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, lower, upper) of a fill_between band: at each x its polygons' lowest and highest y."""
    xy = np.concatenate([p.vertices for p in band.get_paths()])
    xs = np.unique(xy[:, 0])
    return xs, np.array([xy[xy[:, 0] == x, 1].min() for x in xs]), np.array([xy[xy[:, 0] == x, 1].max() for x in xs])


def gid_line(ax, gid: str):
    found = [line for line in ax.get_lines() if line.get_gid() == gid]
    assert len(found) == 1, f"expected one line with gid {gid!r}, found {len(found)}"
    return found[0]


def one(drawn):
    """The Figure of a figure drawn into one file (draw() returns a Drawn per file)."""
    assert len(drawn) == 1, f"expected one file, got {[d.suffix for d in drawn]}"
    return drawn[0].fig


def assert_not_blank(fig) -> None:
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(float)
    assert rgb.std() > 10, f"the rendered figure is (nearly) one colour: pixel std {rgb.std():.2f}"
    # and it is not all background: a good share of pixels is not white
    assert (rgb.min(axis=-1) < 200).mean() > 0.01


def run_row(run_id, **fields) -> dict:
    base = dict(run_id=run_id, model="mlp", task="teacher_student", depth=2, width=4, activation="relu",
                leaky_slope=0.01, init="he_normal", optimizer="sgd", lr=0.01, batch=8, steps=3, clip_mode="none",
                clip=1.0, seed=0, part="", status="ok", diverged_step=-1, final_loss=0.1,
                baseline_loss=0.2)  # fmt: skip
    base.update(fields)
    return base


def steps_rows(run_id, losses, norms=None, clipped_norms=None, collapsed0=pd.NA) -> list[dict]:
    norms = norms if norms is not None else [1.0] * len(losses)
    clipped_norms = clipped_norms if clipped_norms is not None else norms
    return [
        dict(run_id=run_id, step=i, loss=loss, grad_norm=g, grad_norm_clipped=gc, clipped=gc < g, lr=0.01,
             collapsed=collapsed0 if i == 0 else pd.NA)  # fmt: skip
        for i, (loss, g, gc) in enumerate(zip(losses, norms, clipped_norms))
    ]


def layer_rows(run_id, step, dead=None, born=None, saturated=None, depth=2) -> list[dict]:
    """Rows for hidden layers 0..depth-1 and the output layer `depth` (its values must be ignored)."""
    rows = []
    for layer in range(depth + 1):
        hidden = layer < depth
        d = dead[layer] if hidden and dead is not None else (0.9 if not hidden else np.nan)
        b = born[layer] if hidden and born is not None else (0.9 if not hidden else (d if dead is not None else np.nan))
        s = saturated[layer] if hidden and saturated is not None else (0.9 if not hidden else 0.0)
        rows.append(dict(run_id=run_id, step=step, layer=layer, dead_frac=d, born_dead_frac=b,
                         died_frac=d - b if np.isfinite(d) and np.isfinite(b) else np.nan,
                         saturated_frac=s))  # fmt: skip
    return rows


def tables(runs, steps, layers) -> dict[str, pd.DataFrame]:
    def frame(rows):
        return pd.DataFrame(rows) if len(rows) else pd.DataFrame({"run_id": pd.Series([], dtype=str)})

    return {"runs": frame(runs), "steps": frame(steps), "layers": frame(layers), "timesteps": frame([])}


# ------------------------------------------------------------------------------------------ dead units


@pytest.fixture
def dying():
    """ReLU width 2 (depth 1: one run; depth 3: two runs), ReLU width 4 depth 3, leaky ReLU slopes 0.01
    and 0.1 (depth 3), all in part "dying"; a tanh run in part "depth" that must be ignored."""
    runs, steps, layers = [], [], []

    def add(run_id, depth, width, act="relu", slope=0.01, collapsed0=pd.NA, dead0=None, dead_end=None,
            born_end=None, part="dying"):  # fmt: skip
        runs.append(run_row(run_id, depth=depth, width=width, activation=act, leaky_slope=slope, part=part))
        steps.extend(steps_rows(run_id, [0.3, 0.2, 0.1], collapsed0=collapsed0))
        layers.extend(layer_rows(run_id, 0, dead=dead0, born=dead0, depth=depth))
        layers.extend(layer_rows(run_id, 2, dead=dead_end, born=born_end, depth=depth))

    # width 2, depth 1: collapsed not measured (NA) but its one hidden layer is entirely dead -> dead at init
    add("r21", 1, 2, dead0=[1.0], dead_end=[1.0], born_end=[1.0])
    # width 2, depth 3: one collapsed, one not -> 1/2
    add("r23a", 3, 2, collapsed0=True, dead0=[0.0, 1.0, 0.5], dead_end=[0.5, 1.0, 0.5], born_end=[0.0, 1.0, 0.5])
    add("r23b", 3, 2, collapsed0=False, dead0=[0.0, 0.5, 0.0], dead_end=[0.0, 0.5, 0.5], born_end=[0.0, 0.5, 0.0])
    # width 4, depth 3: alive
    add("r43", 3, 4, collapsed0=False, dead0=[0.0, 0.25, 0.0], dead_end=[0.0, 0.25, 0.25], born_end=[0.0, 0.25, 0.0])
    for slope in (0.01, 0.1):
        add(f"l{slope}", 3, 2, act="leaky_relu", slope=slope, collapsed0=False, dead0=[0.0] * 3,
            dead_end=[0.0] * 3, born_end=[0.0] * 3)  # fmt: skip
    add("t", 3, 2, act="tanh", part="depth", collapsed0=True, dead0=[1.0] * 3, dead_end=[1.0] * 3, born_end=[1.0] * 3)
    return tables(runs, steps, layers)


def dead_axes(fig):
    """{(panel letter, width): axes} for (a) and (b), and (c)'s axes."""
    out, lu = {}, None
    for ax in fig.axes:
        title = ax.get_title(loc="left")
        if title.startswith("(c)"):
            lu = ax
        else:
            width = int(title.split("$N = ")[1].split("$")[0])
            out[(title[1], width)] = ax
    return out, lu


def test_dead_units_panels_lines_and_labels(dying):
    fig = one(dead_units.draw(dying))
    panels, ax_lu = dead_axes(fig)
    assert sorted(panels) == [("a", 2), ("a", 4), ("b", 2), ("b", 4)], "a row of (a), (b) per width, never pooled"
    assert len(fig.axes) == 5
    for (letter, width), ax in panels.items():  # width 2: ReLU, leaky 0.01, leaky 0.1; width 4: ReLU only
        assert len(gid_lines(ax, "dead:")) == (3 if width == 2 else 1)
        assert len(gid_lines(ax, "born:")) == len(gid_lines(ax, "dead:"))
        assert all(line.get_linestyle() == ":" for line in gid_lines(ax, "born:"))
        assert ax.get_ylabel().startswith("fraction")
        assert ax.get_xlabel().startswith("hidden layer" if letter == "a" else "training step")
    assert ax_lu.get_xlabel() == "hidden layers $k$" and "dead" in ax_lu.get_ylabel()
    assert len(gid_lines(ax_lu, "lu:")) == 2 and len(gid_lines(ax_lu, "measured:")) == 2
    # one colour per activation: ReLU lines in ReLU's colour; leaky slopes in two different shades
    ax_layer = panels[("a", 2)]
    assert gid_line(ax_layer, "dead:ReLU").get_color() == style.color_of("relu")
    to_rgb = plt.matplotlib.colors.to_rgb
    leaky = {tuple(np.round(to_rgb(line.get_color()), 3)) for line in gid_lines(ax_layer, "dead:leaky")}
    assert len(leaky) == 2
    assert "MLP" in fig._suptitle.get_text()
    assert_not_blank(fig)


def test_dead_units_numbers(dying):
    (drawn,) = dead_units.draw(dying)
    panels, ax_lu = dead_axes(drawn.fig)
    # (a) at the end, the deepest (k = 3), per width: the median over the runs (seeds) per hidden layer (the
    # output layer's 0.9 is not a hidden layer and must not appear). Width 2: r23a and r23b; width 4: r43.
    dead = gid_line(panels[("a", 2)], "dead:ReLU")
    np.testing.assert_array_equal(dead.get_xdata(), [0, 1, 2])
    np.testing.assert_allclose(dead.get_ydata(), np.median([[0.5, 1, 0.5], [0, 0.5, 0.5]], axis=0))
    np.testing.assert_allclose(gid_line(panels[("a", 2)], "born:ReLU").get_ydata(), [0, 0.75, 0.25])
    np.testing.assert_allclose(gid_line(panels[("a", 4)], "dead:ReLU").get_ydata(), [0, 0.25, 0.25])
    # (b) over training: per run the mean over its hidden layers, then the median over the width's runs
    line = gid_line(panels[("b", 2)], "dead:ReLU")
    np.testing.assert_array_equal(line.get_xdata(), [0, 2])
    np.testing.assert_allclose(line.get_ydata(), [np.median([0.5, 1 / 6]), np.median([2 / 3, 1 / 3])])
    np.testing.assert_allclose(gid_line(panels[("b", 2)], "dead:leaky ReLU, slope 0.1").get_ydata(), [0, 0])
    # (c) Lu's probability at every plotted depth, and the measured fractions
    for width in (2, 4):
        lu = gid_line(ax_lu, f"lu:{width}")
        ks = np.asarray(lu.get_xdata())
        np.testing.assert_array_equal(ks, [1, 2, 3])
        np.testing.assert_allclose(lu.get_ydata(), [theory.lu_dead_probability(width, int(k)) for k in ks])
        assert lu.get_linestyle() == "--"
    m2 = gid_line(ax_lu, "measured:2")
    np.testing.assert_allclose(np.round(m2.get_xdata()), [1, 3])
    np.testing.assert_allclose(m2.get_ydata(), [1.0, 0.5])  # NA collapse + dead layer counts; 1 of 2
    np.testing.assert_allclose(gid_line(ax_lu, "measured:4").get_ydata(), [0.0])
    # the caption gives the measured numbers beside Lu's
    assert f"N = 2, k = 3: 1/2 (Lu {theory.lu_dead_probability(2, 3):.2f})" in drawn.caption


@pytest.mark.parametrize("cure", [{"norm": "batch"}, {"norm": "layer"}, {"residual": True}, {"other_modules": "dropout"}])
def test_dead_units_draws_lus_probability_for_plain_nets_only(dying, cure):
    """Lu et al.'s argument is the plain stack's: over nets with a norm layer, residual connections or a torch
    model's dropout between its layers panel (c) shows the measured fractions and no dashed probability, and the
    caption quotes none."""
    t = {k: v.copy() for k, v in dying.items()}
    for column, value in cure.items():
        t["runs"][column] = value
    (drawn,) = dead_units.draw(t)
    _, ax_lu = dead_axes(drawn.fig)
    assert not gid_lines(ax_lu, "lu:"), f"Lu's probability drawn over {cure}"
    assert len(gid_lines(ax_lu, "measured:")) == 2, "the measured fractions stay"
    assert "(Lu " not in drawn.caption and "N = 2, k = 3: 1/2" in drawn.caption, drawn.caption


def test_dead_at_init_combines_collapse_and_dead_layers(dying):
    runs = dying["runs"][dying["runs"]["activation"] == "relu"]
    got = dead_units.dead_at_init(dying, runs)
    assert got.to_dict() == {"r21": True, "r23a": True, "r23b": False, "r43": False}


def test_dead_units_skips(dying):
    only_tanh = {k: (v[v["run_id"] == "t"] if "run_id" in v else v) for k, v in dying.items()}
    with pytest.raises(style.SkipFigure, match="relu"):
        dead_units.draw(only_tanh)
    unprobed = dict(dying, layers=dying["layers"].assign(dead_frac=np.nan))
    with pytest.raises(style.SkipFigure, match="dead_frac"):
        dead_units.draw(unprobed)
    with pytest.raises(style.SkipFigure, match="born_dead_frac"):
        dead_units.draw(dict(dying, layers=dying["layers"].drop(columns="born_dead_frac")))


# ------------------------------------------------------------------------------------------ saturation


@pytest.fixture
def sat_part():
    """sigmoid and tanh MLPs of depth 2 and 3 in part "saturation" (tanh depth 3 with two seeds), a ReLU
    run in the same part and a sigmoid run in another part (both ignored)."""
    runs, steps, layers = [], [], []

    def add(run_id, act, depth, sat0, sat_end, part="saturation", seed=0):
        runs.append(run_row(run_id, activation=act, depth=depth, part=part, seed=seed, init="standard"))
        steps.extend(steps_rows(run_id, [0.3, 0.2, 0.1]))
        layers.extend(layer_rows(run_id, 0, saturated=sat0, depth=depth))
        layers.extend(layer_rows(run_id, 2, saturated=sat_end, depth=depth))

    add("s2", "sigmoid", 2, [0.0, 0.1], [0.0, 0.5])
    add("s3", "sigmoid", 3, [0.0, 0.1, 0.2], [0.1, 0.6, 0.8])
    add("t2", "tanh", 2, [0.0, 0.0], [0.0, 0.2])
    add("t3a", "tanh", 3, [0.0, 0.2, 0.4], [0.2, 0.2, 0.2], seed=0)
    add("t3b", "tanh", 3, [0.0, 0.4, 0.4], [0.4, 0.4, 0.4], seed=1)
    add("r", "relu", 3, [0.5] * 3, [0.5] * 3)
    add("elsewhere", "sigmoid", 2, [1.0] * 2, [1.0] * 2, part="dying")
    return tables(runs, steps, layers)


def test_saturation_lines_panels_values(sat_part):
    fig = one(saturation.draw(sat_part))
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert len(ax.get_lines()) == 4  # (sigmoid, tanh) x (depth 2, 3)
        assert ax.get_xlabel().startswith("hidden layer")
    assert "saturated" in fig.axes[0].get_ylabel()
    assert "initialisation" in fig.axes[0].get_title(loc="left") and "end" in fig.axes[1].get_title(loc="left")
    init, end = fig.axes
    np.testing.assert_allclose(gid_line(init, "tanh:3").get_ydata(), [0.0, 0.3, 0.4])  # mean of two seeds
    np.testing.assert_allclose(gid_line(end, "tanh:3").get_ydata(), [0.3, 0.3, 0.3])
    np.testing.assert_allclose(gid_line(end, "sigmoid:2").get_ydata(), [0.0, 0.5])  # output layer excluded
    # colour per activation, darker for the deeper network
    to_rgb = plt.matplotlib.colors.to_rgb
    assert np.allclose(to_rgb(gid_line(init, "sigmoid:3").get_color()), to_rgb(style.color_of("sigmoid")))
    assert np.allclose(to_rgb(gid_line(init, "tanh:3").get_color()), to_rgb(style.color_of("tanh")))
    assert sum(to_rgb(gid_line(init, "tanh:2").get_color())) > sum(to_rgb(gid_line(init, "tanh:3").get_color()))
    assert_not_blank(fig)


def test_saturation_says_when_nothing_saturates(sat_part):
    zero = dict(sat_part, layers=sat_part["layers"].assign(saturated_frac=0.0))
    fig = one(saturation.draw(zero))
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert sum("no unit saturated" in t for t in texts) == 2


def test_saturation_skips(sat_part):
    relu_only = {k: (v[v["run_id"] == "r"] if "run_id" in v else v) for k, v in sat_part.items()}
    with pytest.raises(style.SkipFigure, match="sigmoid or tanh"):
        saturation.draw(relu_only)
    with pytest.raises(style.SkipFigure, match="saturated_frac"):
        saturation.draw(dict(sat_part, layers=sat_part["layers"].assign(saturated_frac=np.nan)))


# ------------------------------------------------------------------------------------------ clipping


@pytest.fixture
def clip_tables():
    """Thresholds none, 0.1, 1, 10 with two seeds each: none seed 0 and c = 1 seed 1 diverge; a run of
    another part is ignored."""
    runs, steps = [], []

    def add(run_id, mode, c, seed, losses, norms, status="ok", diverged_step=-1, final=0.1, part="clipping"):
        runs.append(run_row(run_id, model="rnn", task="adding", activation="tanh", clip_mode=mode, clip=c,
                            seed=seed, status=status, diverged_step=diverged_step,
                            final_loss=final if status == "ok" else np.nan, part=part, baseline_loss=0.08))  # fmt: skip
        clipped = [g if mode == "none" else min(g, c) for g in norms]
        steps.extend(steps_rows(run_id, losses, norms, clipped))

    add("n0", "none", 1.0, 0, [0.5, 10.0, 1e3, np.inf], [1.0, 1e2, 1e4, np.inf], "diverged", 3)
    add("n1", "none", 1.0, 1, [0.5, 0.4, 0.3, 0.2, 0.2, 0.2], [1, 2, 3, 4, 5, 6], final=0.3)
    add("a0", "norm", 0.1, 0, [0.5, 0.5, 0.4, 0.4, 0.3, 0.3], [5] * 6, final=0.4)
    add("a1", "norm", 0.1, 1, [0.7, 0.6, 0.6, 0.5, 0.5, 0.5], [6] * 6, final=0.6)
    add("b0", "norm", 1.0, 0, [0.5, 0.3, 0.2, 0.1, 0.1, 0.1], [3] * 6, final=0.1)
    add("b1", "norm", 1.0, 1, [0.5, 3.0, 100.0, np.nan], [3, 30, 300, np.nan], "diverged", 3)
    add("c0", "norm", 10.0, 0, [0.5, 0.2, 0.1, 0.05, 0.05, 0.01], [20] * 6, final=0.02)
    add("c1", "norm", 10.0, 1, [0.5, 0.2, 0.1, 0.05, 0.04, 0.01], [20] * 6, final=0.03)
    add("other", "none", 1.0, 0, [0.5] * 6, [1.0] * 6, "diverged", 5, part="dying")
    return tables(runs, steps, [])


def test_clipping_panels_lines_and_scales(clip_tables):
    fig = one(clipping.draw(clip_tables))
    assert len(fig.axes) == 4  # three panels and the divergence-rate axis of the third
    ax_loss, ax_norm, ax_final, twin = fig.axes
    assert len(gid_lines(ax_loss, "median:")) == 4 and not gid_lines(ax_loss, "seed:"), "a median per threshold"
    assert len(bands(ax_loss)) == 4, "and the seeds' band, not a thin line per seed"
    assert len(gid_lines(ax_loss, "diverged")) == 2  # the run of another part is not drawn
    assert ax_loss.get_yscale() == "log"  # losses span 0.01 .. 1000
    assert ax_norm.get_yscale() == "log"
    assert len(gid_lines(ax_norm, "before:")) == 4 and len(gid_lines(ax_norm, "after:")) == 3
    assert all(line.get_linestyle() == ":" for line in gid_lines(ax_norm, "after:"))
    assert ax_loss.get_xlabel() == ax_norm.get_xlabel() == "training step"
    assert "loss" in ax_loss.get_ylabel() and "norm" in ax_norm.get_ylabel()
    assert "threshold" in ax_final.get_xlabel() and "diverged" in twin.get_ylabel()
    assert [t.get_text() for t in ax_final.get_xticklabels()] == ["0.1", "1", "10", "none"]
    assert "RNN" in fig._suptitle.get_text()
    assert_not_blank(fig)


def test_clipping_numbers(clip_tables):
    fig = one(clipping.draw(clip_tables))
    ax_loss, ax_norm, ax_final, twin = fig.axes
    rate = gid_line(twin, "divergence_rate")
    np.testing.assert_allclose(rate.get_ydata(), [0.0, 0.5, 0.0, 0.5])  # 0.1, 1, 10, none
    np.testing.assert_allclose(gid_line(ax_loss, "median:0.1").get_ydata(), [0.6, 0.55, 0.5, 0.45, 0.4, 0.4])
    # the median of c = 1 counts the diverged seed as off the scale: from its divergence on it is not drawn
    med = gid_line(ax_loss, "median:1").get_ydata()
    np.testing.assert_allclose(med[:3], [0.5, 1.65, 50.1])
    assert np.isnan(med[3:]).all()
    np.testing.assert_allclose(gid_line(ax_norm, "after:0.1").get_ydata(), [0.1] * 6)
    np.testing.assert_allclose(gid_line(ax_norm, "before:10").get_ydata(), [20] * 6)
    np.testing.assert_allclose(sorted(gid_line(ax_final, "final:0.1").get_ydata()), [0.4, 0.6])
    np.testing.assert_allclose(sorted(gid_line(ax_final, "final:none").get_ydata()), [0.3])


def test_clipping_skips(clip_tables):
    runs = clip_tables["runs"]
    single = dict(clip_tables, runs=runs[runs["clip"] == 10.0])
    with pytest.raises(style.SkipFigure, match="two or more clipping thresholds"):
        clipping.draw(single)
    with pytest.raises(style.SkipFigure, match="clip_mode"):
        clipping.draw(dict(clip_tables, runs=runs.drop(columns="clip_mode")))
    with pytest.raises(style.SkipFigure, match="grad_norm_clipped"):
        clipping.draw(dict(clip_tables, steps=clip_tables["steps"].drop(columns="grad_norm_clipped")))


# ------------------------------------------------------------------------------------------ loss curves


@pytest.fixture
def loss_tables():
    """tanh and relu (two seeds each) at depths 2, 4, 8; one relu run diverges at step 2."""
    runs, steps = [], []
    for act, depth, seed, losses, status in [
        ("tanh", 2, 0, [1.0, 0.5, 0.2, 0.1], "ok"),
        ("tanh", 4, 1, [1.0, 0.6, 0.3, 0.2], "ok"),
        ("relu", 8, 0, [1.0, 0.1, 0.01, 0.001], "ok"),
        ("relu", 2, 1, [1.0, 5.0, np.inf], "diverged"),
    ]:
        run_id = f"{act}{depth}{seed}"
        runs.append(run_row(run_id, activation=act, depth=depth, seed=seed, status=status))
        steps.extend(steps_rows(run_id, losses))
    return tables(runs, steps, [])


def by_title(fig) -> dict:
    return {ax.get_title(loc="left"): ax for ax in fig.axes if ax.get_title(loc="left")}


def test_loss_curves_default_group(loss_tables):
    runs = loss_tables["runs"]
    assert loss_curves.default_by(runs) == "activation"  # swept: its colours mean the same everywhere
    assert loss_curves.default_by(runs.assign(activation="tanh")) == "depth"  # else the most values
    seeds = runs.assign(seed=[0, 1, 2, 3], depth=2, activation="tanh", lr=[0.1, 0.1, 0.2, 0.2])
    assert loss_curves.default_by(seeds) == "lr"  # seeds are replicates, never the default group
    assert loss_curves.default_by(seeds.assign(lr=0.1)) == "activation"  # nothing swept
    rnn = runs.assign(activation="tanh", model=["mlp", "mlp", "rnn", "rnn"], depth=[2, 2, 4, 8])
    assert loss_curves.default_by(rnn) == "model"  # an RNN's depth means nothing: depth has one value


def test_loss_curves_never_pool_runs_that_differ_in_another_field(loss_tables):
    """A line per activation; depth differs between runs of one activation, so it is a panel each: every line
    is one run's loss, never a median of runs of different depths."""
    (drawn,) = loss_curves.draw(loss_tables, by="activation")
    fig = drawn.fig
    panels = by_title(fig)
    assert sorted(panels) == ["depth=2", "depth=4", "depth=8"]
    losses = loss_tables["steps"].pivot(index="step", columns="run_id", values="loss")
    runs = loss_tables["runs"].set_index("run_id")
    drawn_lines = 0
    for title, ax in panels.items():
        depth = int(title.split("=")[1])
        for line in gid_lines(ax, "median:"):
            act = line.get_gid().split(":", 1)[1]
            (run_id,) = runs.index[(runs["depth"] == depth) & (runs["activation"] == act)]
            expected = losses[run_id].to_numpy()
            expected = np.where(np.isfinite(expected), expected, np.nan)
            np.testing.assert_allclose(line.get_ydata()[: len(expected)], expected)
            drawn_lines += 1
        assert ax.get_xlabel() in ("training step", "")
    assert drawn_lines == len(runs), "every run drawn, each on its own line"
    assert gid_line(panels["depth=2"], "median:relu").get_color() == style.color_of("relu")
    (cross,) = gid_lines(panels["depth=2"], "diverged")
    assert list(cross.get_xdata()) == [1] and list(cross.get_ydata()) == [5.0]  # where the run ended
    assert panels["depth=8"].get_yscale() == "log"  # 0.001 .. 1
    assert "depth 2, 4, 8 (panels, one per value)" in drawn.caption
    assert "Loss curves, by activation" in fig._suptitle.get_text()
    assert_not_blank(fig)


def test_loss_curves_seeds_are_a_median_with_a_band(loss_tables):
    """Runs that differ only in seed: one line, their median, with a band at their quartiles."""
    runs = loss_tables["runs"].assign(depth=2, seed=[0, 1, 0, 1], status="ok")
    steps = loss_tables["steps"].replace(np.inf, 2.0)
    (drawn,) = loss_curves.draw(tables(runs, steps, []))
    ax = drawn.fig.axes[0]
    wide = steps.pivot(index="step", columns="run_id", values="loss")
    for act in ("tanh", "relu"):
        ids = runs.loc[runs["activation"] == act, "run_id"]
        values = wide[ids].to_numpy().T
        ok = ~np.isnan(values).any(axis=0)
        np.testing.assert_allclose(gid_line(ax, f"median:{act}").get_ydata()[ok], np.median(values[:, ok], axis=0))
        (band,) = bands(ax, f"band:{act}")
        x, lo, hi = band_bounds(band)
        at = np.isin(x, wide.index[ok])
        np.testing.assert_allclose(lo[at], np.quantile(values[:, ok], 0.25, axis=0))
        np.testing.assert_allclose(hi[at], np.quantile(values[:, ok], 0.75, axis=0))
    assert "interquartile range" in drawn.caption and "seeds 0, 1" in drawn.caption


def test_loss_curves_default_draws_depth_linear_when_narrow(loss_tables):
    t = {k: (v[v["run_id"].isin(["tanh20", "tanh41"])] if "run_id" in v else v) for k, v in loss_tables.items()}
    fig = one(loss_curves.draw(t))
    ax = fig.axes[0]
    assert ax.get_legend().get_title().get_text().startswith("depth")
    assert len(gid_lines(ax, "median:")) == 2 and not gid_lines(ax, "diverged")
    assert ax.get_yscale() == "linear"  # 0.1 .. 1 is one decade


def test_loss_curves_a_file_per_part_and_clip_groups(loss_tables, clip_tables):
    runs = pd.concat([loss_tables["runs"], clip_tables["runs"]], ignore_index=True)
    steps = pd.concat([loss_tables["steps"], clip_tables["steps"]], ignore_index=True)
    drawn = loss_curves.draw(tables(runs, steps, []), by="activation")
    assert [d.suffix for d in drawn] == ["part=clipping", "part=dying", "part=n-a"]  # the runs without a part last
    assert sum(len(gid_lines(ax, "median:")) for d in drawn for ax in d.fig.axes) >= 4
    assert "part dying" in drawn[1].caption and "part clipping" not in drawn[1].caption
    clip_only = dict(clip_tables, runs=clip_tables["runs"][clip_tables["runs"]["part"] == "clipping"])
    assert loss_curves.default_by(clip_only["runs"]) == "clip"
    ax = one(loss_curves.draw(clip_only)).axes[0]
    # "none" is its own line, not clip = 1
    medians = [line.get_gid() for line in gid_lines(ax, "median:")]
    assert medians == ["median:no clipping", "median:norm clip 0.1", "median:norm clip 1", "median:norm clip 10"]


def test_loss_curves_errors(loss_tables):
    with pytest.raises(ValueError, match="by='colour'"):
        loss_curves.draw(loss_tables, by="colour")
    with pytest.raises(style.SkipFigure, match="no runs with logged steps"):
        loss_curves.draw(dict(loss_tables, steps=loss_tables["steps"].iloc[:0]))
    with pytest.raises(style.SkipFigure, match="loss"):
        loss_curves.draw(dict(loss_tables, steps=loss_tables["steps"].drop(columns="loss")))


def test_loss_curves_lstm_is_its_own_line(loss_tables):
    runs = loss_tables["runs"].assign(model=["mlp", "mlp", "lstm", "lstm"], depth=2, seed=[0, 1, 0, 1])
    ax = one(loss_curves.draw(dict(loss_tables, runs=runs), by="activation")).axes[0]
    assert [line.get_gid() for line in gid_lines(ax, "median:")] == ["median:tanh", "median:LSTM"]
    assert gid_line(ax, "median:LSTM").get_color() == style.MODEL_COLORS["lstm"]


# ------------------------------------------------------------------------------------------ drawn apart


def replicate(t: dict[str, pd.DataFrame], field: str, values, factors=None, column=None) -> dict[str, pd.DataFrame]:
    """Every run once per value of `field` (run_id + '~value'), `column` of its rows times factors[i]."""
    runs, others = [], {k: [] for k in t if k != "runs"}
    for i, v in enumerate(values):
        r = t["runs"].copy()
        r["run_id"] = r["run_id"].astype(str) + f"~{v}"
        r[field] = v
        runs.append(r)
        for name in others:
            df = t[name].copy()
            if "run_id" in df:
                df["run_id"] = df["run_id"].astype(str) + f"~{v}"
            if column in df and factors is not None:
                df[column] = df[column] * factors[i]
            others[name].append(df)
    out = {k: pd.concat(v, ignore_index=True) for k, v in others.items()}
    return {"runs": pd.concat(runs, ignore_index=True), **out}


def test_dead_units_a_file_per_init_and_the_seeds_band(dying):
    drawn = dead_units.draw(replicate(dying, "init", ("he_normal", "xavier_normal"), (1.0, 0.5), "dead_frac"))
    assert [d.suffix for d in drawn] == ["init=he_normal", "init=xavier_normal"]
    for d, factor in zip(drawn, (1.0, 0.5)):
        panels, _ = dead_axes(d.fig)
        line = gid_line(panels[("a", 4)], "dead:ReLU")  # one run (r43): its own values, never the other init's
        np.testing.assert_allclose(line.get_ydata(), factor * np.array([0, 0.25, 0.25]))
        assert "init=" + d.suffix.split("=")[1] in d.fig._suptitle.get_text()
    # width 2, k = 3: r23a and r23b differ only in nothing drawn but seed -> a median and a band
    seeded = dict(dying, runs=dying["runs"].assign(seed=[0, 0, 1, 0, 0, 0, 0]))
    (drawn,) = dead_units.draw(seeded)
    panels, _ = dead_axes(drawn.fig)
    (band,) = bands(panels[("a", 2)], "band:ReLU")
    values = np.array([[0.5, 1, 0.5], [0, 0.5, 0.5]])
    _, lo, hi = band_bounds(band)
    np.testing.assert_allclose(lo, np.quantile(values, 0.25, axis=0))
    np.testing.assert_allclose(hi, np.quantile(values, 0.75, axis=0))


def test_saturation_draws_each_init_apart_and_the_seeds_band(sat_part):
    t = replicate(sat_part, "init", ("standard", "xavier_normal"), (1.0, 0.5), "saturated_frac")
    (drawn,) = saturation.draw(t)
    assert len(drawn.fig.axes) == 4, "a row of (start, end) per init"
    for init, factor in (("standard", 1.0), ("xavier_normal", 0.5)):
        (ax,) = [a for a in drawn.fig.axes if a.get_title(loc="left") == f"(b) end of training (step 2)\ninit={init}"]
        np.testing.assert_allclose(gid_line(ax, "sigmoid:2").get_ydata(), factor * np.array([0.0, 0.5]))
    # tanh depth 3 has two seeds: their median, and a band at their quartiles
    (drawn,) = saturation.draw(sat_part)
    init = drawn.fig.axes[0]
    values = np.array([[0.0, 0.2, 0.4], [0.0, 0.4, 0.4]])
    (band,) = bands(init, "band:tanh:3")
    _, lo, hi = band_bounds(band)
    np.testing.assert_allclose(lo, np.quantile(values, 0.25, axis=0))
    np.testing.assert_allclose(hi, np.quantile(values, 0.75, axis=0))
    assert "sigmoid |z| > 6.0, tanh |z| > 3.0" in drawn.caption


def test_clipping_a_file_per_lr_and_the_seeds_band(clip_tables):
    drawn = clipping.draw(replicate(clip_tables, "lr", (0.1, 0.2), (1.0, 2.0), "loss"))
    assert [d.suffix for d in drawn] == ["lr=0.1", "lr=0.2"]
    for d, factor in zip(drawn, (1.0, 2.0)):
        ax_loss = d.fig.axes[0]
        np.testing.assert_allclose(gid_line(ax_loss, "median:0.1").get_ydata(),
                                   factor * np.array([0.6, 0.55, 0.5, 0.45, 0.4, 0.4]))  # fmt: skip
    ax_loss = one(clipping.draw(clip_tables)).axes[0]
    (band,) = bands(ax_loss, "band:10")
    values = np.array([[0.5, 0.2, 0.1, 0.05, 0.05, 0.01], [0.5, 0.2, 0.1, 0.05, 0.04, 0.01]])
    _, lo, hi = band_bounds(band)
    np.testing.assert_allclose(lo, np.quantile(values, 0.25, axis=0))
    np.testing.assert_allclose(hi, np.quantile(values, 0.75, axis=0))


def test_loss_curves_draw_each_init_apart(loss_tables):
    t = replicate(loss_tables, "init", ("he_normal", "xavier_normal"), (1.0, 3.0), "loss")
    (drawn,) = loss_curves.draw(t)
    panels = by_title(drawn.fig)
    assert sorted(panels) == sorted(f"init={i}, depth={d}" for i in ("he_normal", "xavier_normal") for d in (2, 4, 8))
    for title, ax in panels.items():
        factor = 3.0 if "xavier" in title else 1.0
        if "depth=2" in title:
            np.testing.assert_allclose(gid_line(ax, "median:tanh").get_ydata(), factor * np.array([1.0, 0.5, 0.2, 0.1]))


def test_training_figures_say_what_they_leave_out(dying, clip_tables, loss_tables):
    failed = run_row("broken", status="failed", activation="relu", part="dying", depth=3, width=2)
    t = dict(dying, runs=pd.concat([dying["runs"], pd.DataFrame([failed])], ignore_index=True))
    (drawn,) = dead_units.draw(t)
    assert drawn.notes == ("1 ReLU/leaky ReLU MLP run with no dead-unit probe (layers.dead_frac)",)
    assert "Left out: 1 ReLU/leaky ReLU MLP run" in drawn.caption
    t = dict(loss_tables, runs=pd.concat([loss_tables["runs"], pd.DataFrame([failed])], ignore_index=True))
    assert all("1 failed run (nothing logged to draw)" in d.notes for d in loss_curves.draw(t))


def test_loss_curves_panels_of_different_lengths_keep_their_own_x_range():
    """A 3-step and a 100-step run in one part: the short run's panel is not squeezed into 3% of its width."""
    runs = [run_row("short", activation="tanh", depth=2, steps=3), run_row("long", activation="tanh", depth=4, steps=100)]
    steps = steps_rows("short", [1.0, 0.5, 0.2]) + steps_rows("long", list(np.linspace(1.0, 0.1, 100)))
    panels = by_title(one(loss_curves.draw(tables(runs, steps, []), by="activation")))
    assert sorted(panels) == ["depth=2, steps=3", "depth=4, steps=100"]
    assert panels["depth=2, steps=3"].get_xlim()[1] < 10 < 90 < panels["depth=4, steps=100"].get_xlim()[1]


def test_shared_names_a_data_file_by_its_name_loss_and_short_hash_and_a_schedule_with_its_own_fields():
    from gradlab.plots import split

    digest = "8d9210216e8cfb86d3b336336ad687b034655d981cf01f433192b438159c0524"
    file_run = dict(task="file", data_path="/data/rings.npz", data_sha256=digest, task_loss="cross_entropy")
    runs = pd.DataFrame([run_row(f"r{i}", schedule="cosine", min_lr=1e-4, warmup_steps=100, decay=0.1,
                                 decay_every=100, seed=i, **file_run) for i in range(2)])  # fmt: skip
    text = split.shared(runs)
    assert "file rings.npz (cross_entropy), sha256 8d9210216e8c," in text and digest not in text, text
    assert "cosine schedule (min_lr 0.0001)" in text and "warmup_steps" not in text and "decay" not in text, text
    assert "sha256" not in split.shared(runs, brief=True) and "/data/" not in text, text
    runs.loc[1, ["schedule", "warmup_steps"]] = ["warmup", 50]  # they differ: each with its own parameters
    assert "cosine (min_lr 0.0001), warmup (warmup_steps 50)," in split.shared(runs), split.shared(runs)
    runs["schedule"] = "constant"  # the default is not written out
    assert "schedule" not in split.shared(runs) and "min_lr" not in split.shared(runs), split.shared(runs)
