"""The gradient figures (gradient_by_layer, depth_activation_heatmap, gradient_through_time,
time_step_heatmap) on small hand-made tables: panels, lines, labels, log scales, the theory drawn
equal to its formula, the heatmaps' numbers equal to the hand-computed ones, a picture that is not
blank, and SkipFigure when the tables lack what a figure needs."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from gradlab import schema, theory
from gradlab.plots import NAMES, module, style

GRADIENT_FIGURES = ("gradient_by_layer", "depth_activation_heatmap", "gradient_through_time", "time_step_heatmap")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def row(run_id: str, **fields) -> dict:
    """A runs-table row: every config field at its default (under its column name), then `fields`."""
    out = {"run_id": run_id, **{schema.column(k): v for k, v in schema.defaults().items()}}
    out.update(status="ok", error="", diverged_step=-1, diagnosis="", part="")
    out.update(fields)
    return out


def tables(runs, layers=(), timesteps=(), steps=()) -> dict[str, pd.DataFrame]:
    return {
        "runs": pd.DataFrame(runs),
        "layers": pd.DataFrame(list(layers), columns=["run_id", "step", "layer", "delta_norm", "weight_grad_norm"]),
        "timesteps": pd.DataFrame(list(timesteps), columns=["run_id", "step", "t", "dh_norm", "dc_norm"]),
        "steps": pd.DataFrame(list(steps), columns=["run_id", "step", "loss", "grad_norm"]),
    }


def one(drawn):
    """The Figure of a figure drawn into one file (draw() returns a Drawn per file)."""
    assert len(drawn) == 1, f"expected one file, got {[d.suffix for d in drawn]}"
    return drawn[0].fig


def not_blank(fig) -> None:
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(float)
    assert pixels.std() > 10, f"the figure looks blank (pixel std {pixels.std():.2f})"


def by_gid(ax, prefix: str):
    return [line for line in ax.get_lines() if (line.get_gid() or "").startswith(prefix)]


# ------------------------------------------------------------------------------ MLP tables

# hand-made delta_norm per layer: a factor per layer toward the input (hidden layers), output layer 1.0
FACTORS = {"sigmoid": 0.1, "relu": 0.5}
MLP_DEPTHS = (2, 3)


def mlp_delta(act: str, depth: int, layer: int, step: int) -> float:
    if layer == depth:  # the output layer
        return 1.0
    last = 0.2 if step == 0 else 0.4
    f = FACTORS[act] if step == 0 else FACTORS[act] * 2
    return last * f ** (depth - 1 - layer)


def mlp_tables(extra_runs=()) -> dict[str, pd.DataFrame]:
    runs, layers = [], []
    for depth in MLP_DEPTHS:
        for act in FACTORS:
            rid = f"{act}{depth}"
            runs.append(row(rid, model="mlp", depth=depth, activation=act, init="standard", width=4, part="depth"))
            for step in (0, 5):
                for layer in range(depth + 1):
                    d = mlp_delta(act, depth, layer, step)
                    layers.append((rid, step, layer, d, 3 * d))
    for r in extra_runs:
        runs.append(r)
        for step in (0, 5):
            for layer in range(r["depth"] + 1):
                layers.append((r["run_id"], step, layer, 1.0, 1.0))
    return tables(runs, layers)


def test_figures_follow_the_contract():
    for name in GRADIENT_FIGURES:
        mod = module(name)
        assert name in NAMES
        assert callable(mod.draw) and len(mod.CAPTION) > 80
    assert module("gradient_by_layer").PART == module("depth_activation_heatmap").PART == "depth"
    assert module("gradient_through_time").PART == "recurrent"
    assert module("time_step_heatmap").PART == "clipping"


def test_gradient_by_layer_panels_lines_and_scales():
    # a run of another part (dying) must not add a depth-7 column
    t = mlp_tables([row("other", model="mlp", depth=7, activation="tanh", part="dying")])
    fig = one(module("gradient_by_layer").draw(t))
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2 * len(MLP_DEPTHS), "a row per quantity (delta, weight gradient), a column per depth"
    grid = np.array(axes).reshape(2, len(MLP_DEPTHS))
    for col, depth in enumerate(MLP_DEPTHS):
        assert grid[0, col].get_title() == f"depth $L = {depth}$"
        for r in range(2):
            ax = grid[r, col]
            assert ax.get_yscale() == "log"
            assert len(by_gid(ax, "init:")) == len(FACTORS), "one line per activation at initialisation"
            assert len(by_gid(ax, "final:")) == len(FACTORS), "one faint line per activation at the last step"
        assert len(by_gid(grid[0, col], "theory:")) == len(FACTORS), "the mean-field prediction per activation"
        assert not by_gid(grid[1, col], "theory:"), "no prediction is drawn for the weight gradient"
    assert "layer" in grid[1, 0].get_xlabel()
    assert r"\partial L/\partial z_l" in grid[0, 0].get_ylabel()
    assert r"\partial L/\partial W_l" in grid[1, 0].get_ylabel()
    assert "step 0" in fig._suptitle.get_text() and "standard" in fig._suptitle.get_text()
    not_blank(fig)


def test_gradient_by_layer_draws_the_measured_values_and_the_formula():
    fig = one(module("gradient_by_layer").draw(mlp_tables()))
    ax = [a for a in fig.axes if a.get_title() == "depth $L = 3$"][0]  # top row, depth 3
    (measured,) = by_gid(ax, "init:sigmoid")
    np.testing.assert_allclose(measured.get_ydata(), [mlp_delta("sigmoid", 3, l, 0) for l in range(4)])
    (final,) = by_gid(ax, "final:relu")
    np.testing.assert_allclose(final.get_ydata(), [mlp_delta("relu", 3, l, 5) for l in range(4)])
    for act in FACTORS:
        (line,) = by_gid(ax, f"theory:{act}")
        # standard init: Var[W] = 1/(3 fan_in), so sigma_w2 = 1/3; anchored at the last hidden layer (2)
        chi = theory.chi1(act, 1.0 / 3.0, 0.0)
        x, y = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
        np.testing.assert_array_equal(x, [0, 1, 2])
        assert y[0] == pytest.approx(mlp_delta(act, 3, 2, 0) * chi ** (2 / 2), rel=1e-12)
        assert y[2] == pytest.approx(mlp_delta(act, 3, 2, 0), rel=1e-12)


def test_gradient_by_layer_uses_mean_field_sigma_of_the_run():
    t = tables([row("mf", model="mlp", depth=3, activation="tanh", init="mean_field", sigma_w2=2.5, sigma_b2=0.05)],
               [("mf", 0, l, d, d) for l, d in enumerate([0.01, 0.1, 1.0, 2.0])])
    fig = one(module("gradient_by_layer").draw(t))
    (line,) = by_gid(fig.axes[0], "theory:tanh")
    assert line.get_ydata()[0] == pytest.approx(1.0 * theory.chi1("tanh", 2.5, 0.05), rel=1e-9)


def test_gradient_by_layer_names_a_prediction_in_its_legend_only_where_it_draws_one():
    legend = lambda fig: [t.get_text() for t in fig.legends[0].get_texts()]  # noqa: E731
    drawn = one(module("gradient_by_layer").draw(mlp_tables()))
    assert "mean-field prediction" in legend(drawn)
    t = tables([row("u", model="mlp", depth=3, activation="unknown", init="standard")],
               [("u", 0, l, d, d) for l, d in enumerate([0.01, 0.1, 1.0, 2.0])])  # fmt: skip
    fig = one(module("gradient_by_layer").draw(t))
    assert not by_gid(fig.axes[0], "theory:"), "no mean field for an activation gradlab does not know"
    assert "mean-field prediction" not in legend(fig), legend(fig)


@pytest.mark.parametrize("cure", [{"norm": "layer"}, {"norm": "batch"}, {"residual": True}, {"other_modules": "dropout"}])
def test_no_plain_mean_field_is_drawn_over_a_norm_or_residual_net(cure):
    """Mean field's recursion is the plain stack's: gradient_by_layer draws no prediction (and no sqrt(chi_1)
    in its legend) and depth_activation_heatmap gives no "mf" value for nets with a norm layer or residual
    connections, or a torch model's other modules between its layers (a dropout), while the plain runs beside them
    keep theirs."""
    legend = lambda fig: " ".join(t.get_text() for t in fig.legends[0].get_texts())  # noqa: E731
    plain = one(module("gradient_by_layer").draw(mlp_tables()))
    assert by_gid(plain.axes[0], "theory:") and "chi_1" in legend(plain), "the plain runs' prediction"
    cured = mlp_tables()
    for column, value in cure.items():
        cured["runs"][column] = value
    fig = one(module("gradient_by_layer").draw(cured))
    assert not any(by_gid(ax, "theory:") for ax in fig.axes), f"a plain mean field drawn over {cure}"
    assert "chi_1" not in legend(fig), legend(fig)
    (drawn,) = module("depth_activation_heatmap").draw(cured)
    texts = [t.get_gid() for ax in drawn.fig.axes for t in ax.texts if (t.get_gid() or "").startswith("theory:")]
    assert not texts, f"mean-field values written over {cure}: {texts}"


def test_runs_that_differ_in_their_other_modules_are_not_pooled():
    """A torch model with a Dropout between its layers and the same model without are drawn apart (a facet each,
    named by other_modules), mean field only over the one without; gradlab's own runs, which have no such column
    (NaN when the tables are concatenated), pool with the torch runs whose other_modules is empty."""
    t = mlp_tables()
    twins = t["runs"].assign(run_id=t["runs"]["run_id"] + "-dropout", other_modules="dropout")
    plain = t["runs"].assign(other_modules="")
    plain.loc[plain.index[::2], "other_modules"] = None  # gradlab's own runs beside the torch ones
    t["runs"] = pd.concat([plain, twins], ignore_index=True)
    t["layers"] = pd.concat([t["layers"], t["layers"].assign(run_id=t["layers"]["run_id"] + "-dropout")], ignore_index=True)
    fig = one(module("gradient_by_layer").draw(t))
    titles = " ".join(ax.get_title() for ax in fig.axes)
    assert "other_modules=dropout" in titles and "other_modules=none" in titles, titles
    for ax in fig.axes:
        if "other_modules=dropout" in ax.get_title():
            assert not by_gid(ax, "theory:"), f"mean field drawn over the dropout nets: {ax.get_title()}"
    assert any(by_gid(ax, "theory:") for ax in fig.axes), "the nets without other modules keep their mean field"


def test_gradient_by_layer_marks_exact_zeros():
    t = tables([row("dead", model="mlp", depth=2, activation="relu")],
               [("dead", 0, 0, 0.0, 0.0), ("dead", 0, 1, 0.5, 0.5), ("dead", 0, 2, 1.0, 1.0)])
    fig = one(module("gradient_by_layer").draw(t))
    (line,) = by_gid(fig.axes[0], "init:relu")
    assert np.isnan(line.get_ydata()[0]), "a zero norm cannot sit on a log axis"
    assert by_gid(fig.axes[0], "zero:"), "the zero is marked on the bottom edge instead"


# ------------------------------------------------------------------------------ heatmap


def cell_texts(ax) -> dict[str, str]:
    return {t.get_gid(): t.get_text() for t in ax.texts if (t.get_gid() or "").startswith("cell:")}


def test_depth_activation_heatmap_annotates_the_log10_ratios():
    fig = one(module("depth_activation_heatmap").draw(mlp_tables()))
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title().split(" (")[0] for ax in panels] == ["at initialisation", "end of training"]
    assert "step 5" in panels[1].get_title()
    for ax, step in zip(panels, (0, 5)):
        texts = cell_texts(ax)
        assert len(texts) == len(MLP_DEPTHS) * len(FACTORS)
        for depth in MLP_DEPTHS:
            for act in FACTORS:
                ratio = mlp_delta(act, depth, 0, step) / mlp_delta(act, depth, depth - 1, step)
                assert texts[f"cell:{depth}:{act}"] == f"{math.log10(ratio):.1f}", (depth, act, step)
        assert ax.get_xlabel() == "activation" and "depth" in ax.get_ylabel()
        image = ax.get_images()[0]
        assert image.norm.vmin == -image.norm.vmax, "the diverging colormap is centred at 0"
    assert {"-0.6", "-2.0"} <= set(cell_texts(panels[0]).values())  # relu depth 3, sigmoid depth 3, by hand
    not_blank(fig)


def test_depth_activation_heatmap_cells_that_cannot_be_computed():
    mod = module("depth_activation_heatmap")
    assert mod.log10_ratio(0.0, 1.0) == -math.inf
    assert math.isnan(mod.log10_ratio(1.0, 0.0)) and math.isnan(mod.log10_ratio(math.inf, 1.0))
    t = tables([row("a", model="mlp", depth=2, activation="relu"), row("b", model="mlp", depth=2, activation="tanh")],
               [("a", 0, 0, 0.0, 0.0), ("a", 0, 1, 1.0, 1.0), ("b", 0, 0, math.nan, 1.0), ("b", 0, 1, 1.0, 1.0)])
    fig = one(mod.draw(t))
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 1, "no step after 0: only the initialisation panel"
    assert cell_texts(panels[0]) == {"cell:2:relu": "-inf", "cell:2:tanh": "n/a"}


# ------------------------------------------------------------------------------ recurrent tables

RNN_LENGTHS = (6, 8)
GAMMA_NORM = 0.7  # the RNN runs' stored gamma ||W_hh||_2 at initialisation


def rnn_dh(model: str, T: int, t: int, step: int) -> float:
    rate = {"rnn": 0.5, "lstm": 0.9}[model] * (1.5 if step else 1.0)
    return 0.1 * rate ** (T - 1 - t)


def recurrent_tables(part="recurrent") -> dict[str, pd.DataFrame]:
    runs, ts = [], []
    for T in RNN_LENGTHS:
        for model in ("rnn", "lstm"):
            rid = f"{model}{T}"
            runs.append(row(rid, model=model, task="adding", T=T, width=5, activation="tanh", part=part, loss_on="last",
                            gamma_norm=GAMMA_NORM if model == "rnn" else math.nan))
            for step in (0, 10, 20):
                ts += [(rid, step, t, rnn_dh(model, T, t, step), math.nan) for t in range(T)]
    return tables(runs, timesteps=ts)


def test_gradient_through_time_panels_lines_and_pascanu_bound():
    t = recurrent_tables()
    fig = one(module("gradient_through_time").draw(t))
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == [f"$T = {T}$" for T in RNN_LENGTHS]
    for ax, T in zip(axes, RNN_LENGTHS):
        assert ax.get_yscale() == "log" and "time step $t$" in ax.get_xlabel()
        assert len(by_gid(ax, "init:")) == 2 and len(by_gid(ax, "final:")) == 2, "RNN and LSTM, start and end"
        (lstm,) = by_gid(ax, "init:lstm")
        np.testing.assert_allclose(lstm.get_ydata(), [rnn_dh("lstm", T, i, 0) for i in range(T)])
        (final,) = by_gid(ax, "final:rnn")
        np.testing.assert_allclose(final.get_ydata(), [rnn_dh("rnn", T, i, 20) for i in range(T)])
        bounds = by_gid(ax, "theory:")
        assert [b.get_gid() for b in bounds] == ["theory:rnn(tanh)"], "Pascanu's bound is drawn for the RNN only"
        # the run's stored gamma ||W_hh||_2 to the power T-1-t, times the measured last step
        expected = GAMMA_NORM ** (T - 1 - np.arange(T)) * rnn_dh("rnn", T, T - 1, 0)
        np.testing.assert_allclose(bounds[0].get_ydata(), expected, rtol=1e-12)
    assert r"\partial L/\partial h_t" in axes[0].get_ylabel()
    legend = [text.get_text().strip() for text in fig.legends[0].get_texts()]
    assert r"bound, $\gamma\,\|W_{hh}\|_2 = 0.70$" in legend
    not_blank(fig)


@pytest.mark.parametrize("change", [{"loss_on": "all"}, {"gamma_norm": math.nan}, {"layers": 2}, "no columns"])
def test_gradient_through_time_draws_no_bound_without_its_conditions(change):
    """Pascanu's bound needs the loss on the last step, the run's stored gamma_norm (older tables lack both) and
    one cell layer (stacked, the line is the top layer's and gamma_norm layer 0's W_hh's)."""
    t = recurrent_tables()
    if change == "no columns":
        t["runs"] = t["runs"].drop(columns=["loss_on", "gamma_norm"])
    else:
        t["runs"] = t["runs"].assign(**change)
    fig = one(module("gradient_through_time").draw(t))
    assert not any(by_gid(ax, "theory:") for ax in fig.axes)


def test_gradient_through_time_quotes_a_bound_only_for_the_panels_that_draw_it():
    """One and two cell layers side by side: the one-layer panels draw and quote Pascanu's bound, the stacked
    ones neither (their line is the top layer's, the stored gamma_norm layer 0's)."""
    t = replicate(recurrent_tables(), "layers", (1, 2), lambda name, df, i: df)
    (drawn,) = module("gradient_through_time").draw(t)
    for ax in drawn.fig.axes:
        if ax.get_title().startswith("layers="):
            assert bool(by_gid(ax, "theory:")) == ax.get_title().startswith("layers=1"), ax.get_title()
    quoted = [part for part in drawn.caption.split("; ") if "bound:" in part]
    assert quoted and all("layers=1" in part for part in quoted), drawn.caption


def test_gradient_through_time_colours_each_rnn_activation():
    t = recurrent_tables()
    extra = row("relu6", model="rnn", task="adding", T=6, width=5, activation="relu", part="recurrent")
    t["runs"] = pd.concat([t["runs"], pd.DataFrame([extra])], ignore_index=True)
    t["timesteps"] = pd.concat([t["timesteps"], pd.DataFrame(
        [("relu6", 0, i, 1.0, math.nan) for i in range(6)], columns=t["timesteps"].columns)], ignore_index=True)
    fig = one(module("gradient_through_time").draw(t))
    lines = {line.get_gid(): line for line in by_gid(fig.axes[0], "init:")}
    assert lines["init:rnn(relu)"].get_color() == style.ACTIVATION_COLORS["relu"]
    assert lines["init:rnn(tanh)"].get_color() == style.ACTIVATION_COLORS["tanh"]
    assert lines["init:lstm"].get_color() == style.MODEL_COLORS["lstm"]


# ------------------------------------------------------------------------------ time-step heatmap


def clipping_tables() -> dict[str, pd.DataFrame]:
    """An exploding RNN, seeds 0 and 1, without clipping and with norm clipping at 1 and 10; seed 1's
    unclipped run is the one that explodes (largest gradient norm) and diverges at step 25."""
    T, runs, ts, steps = 4, [], [], []
    for seed in (0, 1):
        for mode, c in (("none", 1.0), ("norm", 1.0), ("norm", 10.0)):
            rid = f"{mode}{c:g}s{seed}"
            explodes = mode == "none" and seed == 1
            runs.append(row(rid, model="rnn", task="adding", T=T, width=5, clip_mode=mode, clip=c, seed=seed,
                            steps=30, part="clipping", status="diverged" if explodes else "ok",
                            diverged_step=25 if explodes else -1))
            for step in (0, 10, 20):
                for t in range(T):
                    dh = 10.0 ** (step / 10 * (T - t)) if explodes else 0.5 ** (T - 1 - t)
                    if explodes and step == 20 and t == 0:
                        dh = math.inf
                    if explodes and step == 10 and t == 3:
                        dh = 0.0
                    ts.append((rid, step, t, dh, math.nan))
            steps += [(rid, s, 1.0, 1e6 if explodes else 1.0) for s in range(30)]
    return tables(runs, timesteps=ts, steps=steps)


def test_time_step_heatmap_picks_the_exploding_seed_and_each_threshold():
    mod = module("time_step_heatmap")
    (drawn,) = mod.draw(clipping_tables())
    fig = drawn.fig
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["no clipping, seed 1", "norm clip 1, seed 1", "norm clip 10, seed 1"]
    for ax in panels:
        assert "time step $t$" in ax.get_xlabel()
    assert "training step" in panels[0].get_ylabel()
    mesh = panels[0].collections[0]
    assert mesh.get_gid() == "heatmap:none1s1"
    values = np.ma.masked_invalid(mesh.get_array()).reshape(3, 4)
    norm = mesh.norm
    expected = np.array([[0.0] * 4, [4.0, 3.0, 2.0, -np.inf], [np.nan, 6.0, 4.0, 2.0]])
    finite = np.isfinite(expected)
    np.testing.assert_allclose(values[finite].data, expected[finite])  # every value as it is: nothing clipped
    assert values.mask[2, 0], "the overflow (inf) cell is masked: drawn in the 'bad' colour"
    assert values[1, 3] < norm.vmin, "an exactly-zero gradient sits below the scale: drawn in the 'under' grey"
    assert norm.vmin == -norm.vmax and norm.vmax >= 6.0, "one scale, centred at a norm of 1, spans every value"
    assert norm(6.0) > 0.5 > norm(np.log10(0.5) * 3), "red above 1, blue below"
    assert by_gid(panels[0], "diverged") and not by_gid(panels[1], "diverged")
    (peak,) = by_gid(panels[0], "peak")
    assert list(peak.get_xdata()) == [1] and 20 <= peak.get_ydata()[0] <= 26, "the star sits on the largest norm"
    assert panels[0].get_ylim() == (0.0, 30.0), "rows run from step 0 to the run's last step"
    assert drawn.notes == ("seed 0: one seed per panel is drawn, the most explosive unclipped run's (seed 1)",)
    assert "Left out: " in drawn.caption and "seed 0" in drawn.caption
    not_blank(fig)


def test_time_step_heatmap_without_a_clipping_sweep_draws_rnn_and_lstm():
    (drawn,) = module("time_step_heatmap").draw(recurrent_tables(part=""))
    fig = drawn.fig
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    T = max(RNN_LENGTHS)
    assert titles == [f"RNN (tanh), $T = {T}$", f"LSTM, $T = {T}$"]
    mesh = fig.axes[0].collections[0]
    expected = [[math.log10(rnn_dh("rnn", T, t, s)) for t in range(T)] for s in (0, 10, 20)]
    np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(3, T), expected)
    # the shorter runs are named as left out, never dropped silently
    assert any("1 other RNN (tanh) run" in note for note in drawn.notes)
    assert any("1 other LSTM run" in note for note in drawn.notes)


# ------------------------------------------------------------------------------ skipping


def test_figures_skip_tables_without_what_they_need():
    only_rnn = recurrent_tables()
    only_mlp = mlp_tables()
    for name in ("gradient_by_layer", "depth_activation_heatmap"):
        with pytest.raises(style.SkipFigure, match="MLP"):
            module(name).draw(only_rnn)
        no_layers = {**only_mlp, "layers": only_mlp["layers"].iloc[0:0]}
        with pytest.raises(style.SkipFigure, match="layers"):
            module(name).draw(no_layers)
        late = {**only_mlp, "layers": only_mlp["layers"][only_mlp["layers"]["step"] > 0]}
        with pytest.raises(style.SkipFigure, match="step 0"):
            module(name).draw(late)
    for name in ("gradient_through_time", "time_step_heatmap"):
        with pytest.raises(style.SkipFigure, match="RNN or LSTM"):
            module(name).draw(only_mlp)
        no_ts = {**only_rnn, "timesteps": only_rnn["timesteps"].iloc[0:0]}
        with pytest.raises(style.SkipFigure, match="timesteps"):
            module(name).draw(no_ts)
    one_step = {**only_rnn, "timesteps": only_rnn["timesteps"][only_rnn["timesteps"]["step"] == 0]}
    with pytest.raises(style.SkipFigure, match="two or more logged steps"):
        module("time_step_heatmap").draw(one_step)


# ------------------------------------------------------------------------------ what differs is drawn apart


def replicate(t: dict[str, pd.DataFrame], field: str, values, change) -> dict[str, pd.DataFrame]:
    """Every run once per value of `field` (run_id + '~value'), its rows in table `name` changed by
    change(name, rows, i) for the i-th value."""
    runs, others = [], {k: [] for k in t if k != "runs"}
    for i, v in enumerate(values):
        r = t["runs"].copy()
        r["run_id"] = r["run_id"] + f"~{v}"
        r[field] = v
        runs.append(r)
        for name in others:
            df = t[name].copy()
            df["run_id"] = df["run_id"] + f"~{v}"
            others[name].append(change(name, df, i))
    out = {k: pd.concat(v, ignore_index=True) for k, v in others.items()}
    return {"runs": pd.concat(runs, ignore_index=True), **out}


def scaled(column: str, factors, where=None):
    """A change for replicate(): multiply `column` by factors[i] (in the rows where `where(rows)` holds)."""

    def change(name, df, i):
        if column in df:
            mask = where(df) if where is not None else slice(None)
            df.loc[mask, column] = df.loc[mask, column] * factors[i]
        return df

    return change


def band_bounds(band) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, lower, upper) of a fill_between band: at each x its polygons' lowest and highest y."""
    xy = np.concatenate([p.vertices for p in band.get_paths()])
    xs = np.unique(xy[:, 0])
    return xs, np.array([xy[xy[:, 0] == x, 1].min() for x in xs]), np.array([xy[xy[:, 0] == x, 1].max() for x in xs])


def bands(ax, prefix: str) -> list:
    return [c for c in ax.collections if (c.get_gid() or "").startswith(prefix)]


INITS = ("he_normal", "xavier_normal")
FACTORS_3 = (1.0, 2.0, 4.0)  # three seeds' data: the base values times these


def test_gradient_by_layer_draws_each_init_apart_never_pooled():
    t = replicate(mlp_tables(), "init", INITS, scaled("delta_norm", (1.0, 10.0), where=lambda d: d["layer"] == 0))
    drawn = module("gradient_by_layer").draw(t)
    assert len(drawn) == 1, "two inits fit as rows of panels in one file"
    fig, caption = drawn[0].fig, drawn[0].caption
    titled = [ax for ax in fig.axes if ax.get_title()]
    assert len(fig.axes) == 2 * 2 * len(MLP_DEPTHS), "a pair of rows per init, a column per depth"
    assert sorted({ax.get_title().split("\n")[0] for ax in titled}) == [f"init={i}" for i in INITS]
    for k, init in enumerate(INITS):
        ax = [a for a in titled if a.get_title() == f"init={init}\ndepth $L = 3$"][0]
        (line,) = by_gid(ax, "init:sigmoid")
        expected = [mlp_delta("sigmoid", 3, l, 0) * ((1.0, 10.0)[k] if l == 0 else 1.0) for l in range(4)]
        np.testing.assert_allclose(line.get_ydata(), expected)  # this init's run, not a mean of both
    assert "init he_normal, xavier_normal (rows of panels, one per value)" in caption
    # rows of one depth share a y range, columns of different depths do not
    delta = {ax.get_title(): ax for ax in titled}
    assert delta["init=he_normal\ndepth $L = 2$"].get_ylim() == delta["init=xavier_normal\ndepth $L = 2$"].get_ylim()
    assert delta["init=he_normal\ndepth $L = 2$"].get_ylim() != delta["init=he_normal\ndepth $L = 3$"].get_ylim()


def test_gradient_by_layer_more_values_than_rows_go_to_files():
    lrs = (0.1, 0.2, 0.3, 0.4)
    t = replicate(mlp_tables(), "lr", lrs, scaled("delta_norm", (1, 2, 3, 4)))
    drawn = module("gradient_by_layer").draw(t)
    assert [d.suffix for d in drawn] == [f"lr={lr:g}" for lr in lrs], "more than 3 values: a file each"
    for d, factor in zip(drawn, (1, 2, 3, 4)):
        ax = [a for a in d.fig.axes if a.get_title() == "depth $L = 3$"][0]
        (line,) = by_gid(ax, "init:relu")
        np.testing.assert_allclose(line.get_ydata(), [factor * mlp_delta("relu", 3, l, 0) for l in range(4)])
        assert f"this file: lr={d.suffix.split('=')[1]}" in d.caption and "a file per lr" in d.fig._suptitle.get_text()


def test_gradient_by_layer_seeds_are_a_median_with_their_quartiles():
    t = replicate(mlp_tables(), "seed", (0, 1, 2), scaled("delta_norm", FACTORS_3))
    (drawn,) = module("gradient_by_layer").draw(t)
    ax = [a for a in drawn.fig.axes if a.get_title() == "depth $L = 3$"][0]
    base = np.array([mlp_delta("relu", 3, l, 0) for l in range(4)])
    values = np.outer(FACTORS_3, base)
    (line,) = by_gid(ax, "init:relu")
    np.testing.assert_allclose(line.get_ydata(), np.median(values, axis=0))
    (band,) = bands(ax, "band:init:relu")
    x, lo, hi = band_bounds(band)
    np.testing.assert_allclose(lo, np.quantile(values, 0.25, axis=0))
    np.testing.assert_allclose(hi, np.quantile(values, 0.75, axis=0))
    assert "interquartile range" in drawn.caption and "seeds 0-2" in drawn.caption


def test_depth_activation_heatmap_draws_each_init_apart_and_the_seeds_band():
    t = replicate(mlp_tables(), "init", INITS, scaled("delta_norm", (1.0, 10.0), where=lambda d: d["layer"] == 0))
    (drawn,) = module("depth_activation_heatmap").draw(t)
    panels = [ax for ax in drawn.fig.axes if ax.get_title()]
    assert len(panels) == 4, "a row of (start, end) per init"
    for k, init in enumerate(INITS):
        (ax,) = [a for a in panels if a.get_title() == f"init={init}\nat initialisation (step 0)"]
        ratio = mlp_delta("relu", 3, 0, 0) * (1.0, 10.0)[k] / mlp_delta("relu", 3, 2, 0)
        assert cell_texts(ax)["cell:3:relu"] == f"{math.log10(ratio):.1f}"
    t = replicate(mlp_tables(), "seed", (0, 1, 2), scaled("delta_norm", FACTORS_3, where=lambda d: d["layer"] == 0))
    (drawn,) = module("depth_activation_heatmap").draw(t)
    ax = [a for a in drawn.fig.axes if a.get_title().startswith("at initialisation")][0]
    logs = np.log10(np.array(FACTORS_3) * mlp_delta("relu", 3, 0, 0) / mlp_delta("relu", 3, 2, 0))
    assert cell_texts(ax)["cell:3:relu"] == f"{np.median(logs):.1f}"
    band = {t.get_gid(): t.get_text() for t in ax.texts}["band:3:relu"]
    assert band == f"[{np.quantile(logs, 0.25):.1f}, {np.quantile(logs, 0.75):.1f}]"
    theory_text = {t.get_gid(): t.get_text() for t in ax.texts}["theory:3:relu"]
    assert theory_text == f"mf {math.log10(theory.chi1('relu', 1 / 3, 0.0)):.1f}", "mean field: (L-1)/2 log10 chi_1"


def test_gradient_through_time_draws_each_init_apart_and_the_seeds_band():
    t = replicate(recurrent_tables(), "init", INITS, scaled("dh_norm", (1.0, 3.0)))
    (drawn,) = module("gradient_through_time").draw(t)
    axes = [ax for ax in drawn.fig.axes if ax.get_visible()]
    assert len(axes) == 2 * len(RNN_LENGTHS), "a row per init, a column per T"
    for k, init in enumerate(INITS):
        (ax,) = [a for a in axes if a.get_title() == f"init={init}\n$T = 6$"]
        (line,) = by_gid(ax, "init:lstm")
        np.testing.assert_allclose(line.get_ydata(), [(1.0, 3.0)[k] * rnn_dh("lstm", 6, i, 0) for i in range(6)])
    t = replicate(recurrent_tables(), "seed", (0, 1, 2), scaled("dh_norm", FACTORS_3))
    (drawn,) = module("gradient_through_time").draw(t)
    ax = [a for a in drawn.fig.axes if a.get_title() == "$T = 8$"][0]
    values = np.outer(FACTORS_3, [rnn_dh("rnn", 8, i, 0) for i in range(8)])
    (line,) = by_gid(ax, "init:rnn(tanh)")
    np.testing.assert_allclose(line.get_ydata(), np.median(values, axis=0))
    (band,) = bands(ax, "band:init:rnn(tanh)")
    _, lo, hi = band_bounds(band)
    np.testing.assert_allclose(lo, np.quantile(values, 0.25, axis=0))
    np.testing.assert_allclose(hi, np.quantile(values, 0.75, axis=0))


def test_time_step_heatmap_a_file_per_other_value_and_one_seed_named():
    t = replicate(clipping_tables(), "lr", (0.1, 0.2), scaled("dh_norm", (1.0, 100.0)))
    drawn = module("time_step_heatmap").draw(t)
    assert [d.suffix for d in drawn] == ["lr=0.1", "lr=0.2"]
    for d, factor in zip(drawn, (1.0, 100.0)):
        mesh = [ax for ax in d.fig.axes if ax.get_title() == "norm clip 1, seed 1"][0].collections[0]
        expected = np.log10(factor * 0.5 ** (4 - 1 - np.arange(4)))
        np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(3, 4)[0], expected)
        # a panel is one run: the other seed is never pooled in, and it is named as left out
        assert d.notes == ("seed 0: one seed per panel is drawn, the most explosive unclipped run's (seed 1)",)


def test_gradient_figures_draw_two_folders_apart():
    from gradlab.plots import combine

    a, b = mlp_tables(), replicate(mlp_tables(), "init", ["standard"], scaled("delta_norm", (5.0,)))
    both = combine({"a": a, "b": b})
    assert set(both["runs"]["folder"]) == {"a", "b"} and both["runs"]["run_id"].is_unique
    (drawn,) = module("gradient_by_layer").draw(both)
    for folder, factor in (("a", 1.0), ("b", 5.0)):
        (ax,) = [x for x in drawn.fig.axes if x.get_title() == f"folder={folder}\ndepth $L = 2$"]
        (line,) = by_gid(ax, "init:relu")
        np.testing.assert_allclose(line.get_ydata(), [factor * mlp_delta("relu", 2, l, 0) for l in range(3)])


def test_gradient_through_time_stacked_cells_and_the_loss_on_every_step():
    t = recurrent_tables()
    ts = t["timesteps"].assign(layer=1)
    lower = ts.assign(layer=0, dh_norm=ts["dh_norm"] * 1e-3)
    t["timesteps"] = pd.concat([lower, ts], ignore_index=True)  # two cell layers: the top one is drawn
    (drawn,) = module("gradient_through_time").draw(t)
    ax = [a for a in drawn.fig.axes if a.get_title() == "$T = 6$"][0]
    (line,) = by_gid(ax, "init:lstm")
    np.testing.assert_allclose(line.get_ydata(), [rnn_dh("lstm", 6, i, 0) for i in range(6)])
    assert "top cell layer" in drawn.caption
    # the loss on every step: the last step's loss alone (dh_last_norm) is drawn, and the axes say so
    t = recurrent_tables()
    t["runs"] = t["runs"].assign(loss_on="all")
    t["timesteps"] = t["timesteps"].assign(dh_last_norm=t["timesteps"]["dh_norm"] / 7)
    (drawn,) = module("gradient_through_time").draw(t)
    ax = [a for a in drawn.fig.axes if a.get_title() == "$T = 6$"][0]
    (line,) = by_gid(ax, "init:lstm")
    np.testing.assert_allclose(line.get_ydata(), [rnn_dh("lstm", 6, i, 0) / 7 for i in range(6)])
    assert "L_{T-1}" in drawn.fig.axes[0].get_ylabel() and "every step" in ax.get_xlabel()
    assert not by_gid(ax, "theory:"), "Pascanu's bound is for the loss on the last step"
