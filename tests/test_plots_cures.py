"""The cures figure on hand-made tables: a file for depth (plain, residual, layer- and batch-normed MLPs) and
one for time (RNN, GRU, LSTM, one and two cell layers), each line equal to the data it draws, mean field's
prediction over the plain net and Pascanu's bound over the one-layer RNN only, the measured decades in the
caption, what differs in an undrawn field apart, seeds as a band, and a skip that names what is missing."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from test_plots_gradients import band_bounds, bands, by_gid, replicate, row, scaled, tables

from gradlab import theory
from gradlab.plots import NAMES, module, style

DEPTH = 4
# delta_norm per hidden layer: a factor per layer toward the input; the output layer (l = DEPTH) is 1
DEPTH_FACTORS = {("none", False): 0.1, ("layer", False): 1.2, ("batch", False): 1.5, ("none", True): 0.9}
STACKS = (1, 2)
CELLS = ("rnn", "gru", "lstm")
T = 6
CELL_RATES = {"rnn": 0.3, "gru": 0.6, "lstm": 0.8}  # dh_norm's factor per step back, at step 0
GAMMA_NORM = 0.7


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def delta(norm: str, residual: bool, layer: int, step: int) -> float:
    if layer == DEPTH:
        return 1.0
    f = DEPTH_FACTORS[(norm, residual)] ** (1 if step == 0 else 0.5)
    return 0.3 * f ** (DEPTH - 1 - layer)


def dh(cell: str, layers: int, layer: int, t: int, step: int) -> float:
    rate = CELL_RATES[cell] * (1 + step / 100) * (1 - 0.1 * layer) ** (layers > 1)
    return 0.05 * rate ** (T - 1 - t)


def cures_tables() -> dict[str, pd.DataFrame]:
    runs, layers, ts = [], [], []
    for norm, residual in DEPTH_FACTORS:
        rid = f"mlp-{norm}-{residual}"
        runs.append(row(rid, model="mlp", depth=DEPTH, activation="tanh", init="standard", width=8, norm=norm,
                        residual=residual, residual_scale=0.5 if residual else 1.0, part="cures"))  # fmt: skip
        layers += [(rid, step, l, delta(norm, residual, l, step), 1.0) for step in (0, 10) for l in range(DEPTH + 1)]
    for cell in CELLS:
        for n in STACKS:
            rid = f"{cell}-{n}"
            runs.append(row(rid, model=cell, layers=n, task="adding", T=T, width=5, activation="tanh", loss_on="last",
                            part="cures", gamma_norm=GAMMA_NORM if cell == "rnn" else math.nan))  # fmt: skip
            ts += [(rid, step, t, dh(cell, n, j, t, step), math.nan, j) for step in (0, 20) for j in range(n)
                   for t in range(T)]  # fmt: skip
    t = tables(runs, layers)
    t["timesteps"] = pd.DataFrame(ts, columns=["run_id", "step", "t", "dh_norm", "dc_norm", "layer"])
    return t


def panel(drawn, title_start: str, title_end: str):
    (ax,) = [a for a in drawn.fig.axes if a.get_title().startswith(title_start) and a.get_title().endswith(title_end)]
    return ax


def files(t, **kw):
    return {d.suffix: d for d in module("cures").draw(t, **kw)}


def test_cures_is_a_figure_of_the_tour_s_cures_part():
    assert "cures" in NAMES and module("cures").PART == "cures"
    assert set(files(cures_tables())) == {"depth", "time"}


def test_cures_depth_draws_each_cure_s_data_and_mean_field_over_the_plain_net():
    d = files(cures_tables())["depth"]
    plain, residual = panel(d, "initialisation", "no residual"), panel(d, "initialisation", "$s = 0.5$")
    for (norm, res), ax in [(k, residual if k[1] else plain) for k in DEPTH_FACTORS]:
        (line,) = by_gid(ax, f"init:{norm}:{res}")
        np.testing.assert_allclose(line.get_ydata(), [delta(norm, res, l, 0) for l in range(DEPTH + 1)], rtol=1e-12,
                                   err_msg=f"norm={norm} residual={res}")  # fmt: skip
    (theory_line,) = by_gid(plain, "theory:")
    anchor = delta("none", False, DEPTH - 1, 0)
    expected = theory.predicted_delta_norms("tanh", 1 / 3, 0.0, DEPTH, last=anchor)
    np.testing.assert_allclose(theory_line.get_ydata(), expected, rtol=1e-12)
    assert not by_gid(residual, "theory:"), "no closed form is drawn for the residual nets"
    assert not by_gid(panel(d, "last logged step", "no residual"), "theory:"), "mean field is about step 0"
    (later,) = by_gid(panel(d, "last logged step", "no residual"), "final:layer:False")
    np.testing.assert_allclose(later.get_ydata(), [delta("layer", False, l, 10) for l in range(DEPTH + 1)])
    decades = (DEPTH - 1) * math.log10(0.1)
    assert f"no residual, no norm {decades:+.1f}" in d.caption, d.caption
    assert f"residual, s 0.5, no norm {(DEPTH - 1) * math.log10(0.9):+.1f}" in d.caption, d.caption
    assert "Varies: norm batch, layer, none (lines, in its colour); residual false, true" in d.caption, d.caption


def test_cures_time_draws_each_cell_and_layer_and_the_bound_over_the_one_layer_rnn():
    d = files(cures_tables())["time"]
    for n in STACKS:
        ax = panel(d, "initialisation", f"{n} cell layer{'s' if n > 1 else ''}, $T = {T}$")
        for cell in CELLS:
            for j in range(n):
                (line,) = by_gid(ax, f"init:{cell}:{j}")
                np.testing.assert_allclose(line.get_ydata(), [dh(cell, n, j, t, 0) for t in range(T)], rtol=1e-12,
                                           err_msg=f"{cell} x{n} layer {j}")  # fmt: skip
                assert (line.get_linestyle() == "-") == (j == 0), "layer 0 solid, the top layer dash-dotted"
        bound = by_gid(ax, "theory:")
        if n == 1:
            (b,) = bound
            np.testing.assert_allclose(b.get_ydata(), theory.pascanu_factors(GAMMA_NORM, T) * dh("rnn", 1, 0, T - 1, 0))
        else:
            assert not bound, "Pascanu's bound is drawn for the one-layer RNN only"
    (gru,) = by_gid(panel(d, "last logged step", "1 cell layer, $T = 6$"), "final:gru:0")
    np.testing.assert_allclose(gru.get_ydata(), [dh("gru", 1, 0, t, 20) for t in range(T)])
    assert f"GRU {(T - 1) * math.log10(0.6):+.1f}" in d.caption, d.caption
    rate = 0.3 * 1.2 * 0.9  # the RNN's top layer of two, at step 20
    assert f"RNN (tanh) x2 top layer {(T - 1) * math.log10(rate):+.1f}" in d.caption, d.caption


def test_cures_draws_an_undrawn_field_apart_and_seeds_as_a_band():
    t = replicate(cures_tables(), "width", (8, 16), scaled("delta_norm", (1.0, 100.0)))
    d = files(t)["depth"]
    rows = {a.get_title().split("\n")[0] for a in d.fig.axes if a.get_title().startswith("width")}
    assert rows == {"width=8", "width=16"}, "a row of panels per width, never one pooled line"
    (wide,) = by_gid(panel(d, "width=16", "no residual"), "init:none:False")
    np.testing.assert_allclose(wide.get_ydata(), [100 * delta("none", False, l, 0) for l in range(DEPTH + 1)])
    t = replicate(cures_tables(), "seed", (0, 1, 2), scaled("dh_norm", (1.0, 2.0, 4.0)))
    d = files(t)["time"]
    ax = panel(d, "initialisation", "1 cell layer, $T = 6$")
    (line,) = by_gid(ax, "init:lstm:0")
    np.testing.assert_allclose(line.get_ydata(), [2 * dh("lstm", 1, 0, t, 0) for t in range(T)])
    (band,) = bands(ax, "band:init:lstm:0")
    _, lo, hi = band_bounds(band)
    base = np.array([dh("lstm", 1, 0, t, 0) for t in range(T)])
    np.testing.assert_allclose(lo, 1.5 * base, rtol=1e-9)  # numpy's linear quartiles of 1, 2, 4
    np.testing.assert_allclose(hi, 3.0 * base, rtol=1e-9)
    assert "interquartile range" in d.caption


def test_cures_skips_without_a_cure_and_says_what_it_needs():
    t = cures_tables()
    runs = t["runs"]
    plain = runs[((runs["model"] == "mlp") & (runs["norm"] == "none") & ~runs["residual"].astype(bool))
                 | ((runs["model"] == "rnn") & (runs["layers"] == 1))]  # fmt: skip
    ids = set(plain["run_id"])
    t = {k: v[v["run_id"].isin(ids)] for k, v in t.items()}
    with pytest.raises(style.SkipFigure) as why:
        module("cures").draw(t)
    assert "model.norm" in str(why.value) and "GRU, LSTM or stacked" in str(why.value)
    mlp_only = {k: v[~v["run_id"].str.startswith(("rnn", "gru", "lstm"))] for k, v in cures_tables().items()}
    assert set(files(mlp_only)) == {"depth"}
