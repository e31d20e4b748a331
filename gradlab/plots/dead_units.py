"""Dying ReLUs: dead units per layer and over training for ReLU and leaky ReLU (born dead apart from
died), and the fraction of ReLU networks that are dead at initialisation against depth, beside Lu et
al.'s (2019) probability 1 - (1 - 2^-N)^k."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from gradlab import theory
from gradlab.plots import _runinfo, select_runs, split, style

PART = "dying"
CAPTION = (
    "Dead units (activation exactly 0 on every one of the probe examples) in ReLU-family MLPs, a row of "
    "panels per width N. (a) Dead fraction per hidden layer of the deepest networks at the end of training: "
    "solid with markers every dead unit, dotted the part that was already dead at step 0 (born dead), so the "
    "gap between them is the units that died in training. (b) The dead fraction of all their hidden units "
    "over training. A line per activation (leaky slopes as shades of its colour); with several seeds the "
    "median over them, with a band. (c) The fraction of ReLU networks that are a constant function on the "
    "whole probe set at step 0 (points, pooled over the seeds, with a 95% Wilson interval), against the "
    "number of hidden layers k, per width N; dashed, for plain nets (no norm layer, no residual "
    "connections), Lu et al.'s probability 1 - (1 - 2^-N)^k that the network is dead at one given input. "
    "Being constant on every probe input is the stronger event, so the points should lie at or below their "
    "curve."
)

ACTIVATIONS = ("relu", "leaky_relu")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
DRAWS = ("model", "activation", "leaky_slope", "depth", "width")
ROLES = {
    "activation": "lines, in its colour", "leaky_slope": "shades of leaky ReLU's colour",
    "width": "rows of panels (a, b), a shade and marker in (c)", "depth": "(a, b) the deepest; x in (c)",
}  # fmt: skip


def _groups(runs: pd.DataFrame) -> list[tuple[str, float | None]]:
    """(activation, slope) groups: one for ReLU, one per slope for leaky ReLU."""
    out: list[tuple[str, float | None]] = []
    if (runs["activation"] == "relu").any():
        out.append(("relu", None))
    leaky = runs[runs["activation"] == "leaky_relu"]
    slopes = sorted(leaky["leaky_slope"].dropna().unique()) if "leaky_slope" in leaky else []
    if len(leaky) and not slopes:
        slopes = [np.nan]
    out.extend(("leaky_relu", float(s)) for s in slopes)
    return out


def _label(group: tuple[str, float | None]) -> str:
    act, slope = group
    if act == "relu":
        return "ReLU"
    return "leaky ReLU" if slope is None or np.isnan(slope) else f"leaky ReLU, slope {slope:g}"


def _colors(groups) -> dict:
    """ReLU in its colour; leaky ReLU slopes as shades of leaky ReLU's colour (smallest slope darkest)."""
    leaky = [g for g in groups if g[0] == "leaky_relu"]
    leaky_shades = dict(zip(leaky, _runinfo.shades(style.color_of("leaky_relu"), len(leaky), 0.5)))
    return {g: leaky_shades.get(g, style.color_of(g[0])) for g in groups}


def _in_group(df: pd.DataFrame, group) -> pd.Series:
    act, slope = group
    mask = df["activation"] == act
    if act == "leaky_relu" and slope is not None and not np.isnan(slope):
        mask &= np.isclose(df["leaky_slope"].astype(float), slope)
    return mask


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion k/n."""
    p = k / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def dead_at_init(tables: dict[str, pd.DataFrame], runs: pd.DataFrame) -> pd.Series:
    """Per ReLU run (indexed by run_id): the network is constant on the probe set at step 0
    (steps.collapsed at step 0, or every unit of some hidden layer dead at step 0); NA when neither
    was measured."""
    out = pd.Series(pd.NA, index=pd.Index(runs["run_id"]), dtype="boolean")
    steps = tables.get("steps")
    if steps is not None and {"collapsed", "step"} <= set(steps.columns):
        s0 = steps[(steps["step"] == 0) & steps["run_id"].isin(out.index)].dropna(subset=["collapsed"])
        out.loc[s0["run_id"].to_numpy()] = s0["collapsed"].astype(bool).to_numpy()
    layers = tables.get("layers")
    if layers is not None and {"dead_frac", "layer", "step"} <= set(layers.columns):
        l0 = layers[(layers["step"] == 0)].merge(runs[["run_id", "depth"]], on="run_id")
        l0 = l0[(l0["layer"] < l0["depth"]) & l0["dead_frac"].notna()]
        whole = (l0.groupby("run_id")["dead_frac"].max() >= 1.0).reindex(out.index)
        measured = whole.notna()
        out[measured] = out[measured].fillna(False) | whole[measured].astype(bool)
    return out


def _select(tables):
    _runinfo.need(tables, "runs", ["run_id", "model", "activation", "depth", "width"], "dead units need MLP runs")
    _runinfo.need(tables, "layers", ["run_id", "step", "layer", "dead_frac", "born_dead_frac"], "dead units")
    t = select_runs(tables, PART, model="mlp", activation=list(ACTIVATIONS),
                    skip="no MLP runs with relu or leaky_relu activation")  # fmt: skip
    runs = t["runs"]
    if "leaky_slope" not in runs:
        runs = runs.assign(leaky_slope=np.nan)
    layers = t["layers"].merge(runs[["run_id", "depth"]], on="run_id")
    hidden = layers[(layers["layer"] < layers["depth"]) & layers["dead_frac"].notna()]
    if hidden.empty:
        raise style.SkipFigure("no dead-unit probes (layers.dead_frac) for hidden layers of the ReLU/leaky ReLU MLPs")
    ok = runs["run_id"].isin(hidden["run_id"].unique())
    notes = []
    if (~ok).sum():
        n = int((~ok).sum())
        notes.append(f"{n} ReLU/leaky ReLU MLP run{'s' if n != 1 else ''} with no dead-unit probe (layers.dead_frac)")
    return {**t, "runs": runs}, runs[ok], notes


@style.styled
def draw(tables: dict[str, pd.DataFrame], by: str | None = None):
    t, runs, notes = _select(tables)
    return split.draw_files(t, runs, DRAWS, _draw, guide=CAPTION, roles=ROLES, max_facets=0, by=by, notes=notes,
                            what="ReLU-family MLP runs")  # fmt: skip


def _median_lines(ax, wide: pd.DataFrame, born: pd.DataFrame, color, label: str, several: bool, marker="o"):
    """The median over the runs (rows) of dead_frac, solid with markers, its band, and born_dead_frac's
    median dotted."""
    x = wide.columns.to_numpy()
    med, lo, hi = split.band(wide.to_numpy())
    (line,) = ax.plot(x, med, color=color, marker=marker, ms=3, label=label)
    line.set_gid(f"dead:{label}")
    if several and wide.shape[0] > 1:
        style.fill_band(ax, x, lo, hi, color, gid=f"band:{label}")
    bmed, _, _ = split.band(born.reindex(columns=wide.columns).to_numpy())
    (line,) = ax.plot(x, bmed, color=color, linestyle=":", linewidth=2)
    line.set_gid(f"born:{label}")
    return med, bmed


def _draw(ctx: split.Context):
    runs = ctx.runs
    layers = ctx.tables["layers"].merge(runs[["run_id", "activation", "leaky_slope", "depth", "width"]], on="run_id")
    hidden = layers[(layers["layer"] < layers["depth"]) & layers["dead_frac"].notna()]
    groups = _groups(runs)
    colors = _colors(groups)
    widths = sorted(int(w) for w in runs["width"].unique())
    several = ctx.plan.seeds > 1
    fig = style.blank(3.4 * 3, 2.6 * len(widths) + 0.5)
    grid = fig.add_gridspec(len(widths), 3)
    rows = [(fig.add_subplot(grid[i, 0]), fig.add_subplot(grid[i, 1])) for i in range(len(widths))]
    ax_lu = fig.add_subplot(grid[:, 2])
    deepest = int(runs["depth"].max())
    last = hidden.groupby("run_id")["step"].transform("max")
    end = hidden[(hidden["step"] == last) & (hidden["depth"] == deepest)]
    per_run = hidden[hidden["depth"] == deepest].groupby(["run_id", "step"], as_index=False)[
        ["dead_frac", "born_dead_frac"]].mean()
    per_run = per_run.merge(runs[["run_id", "activation", "leaky_slope", "width"]], on="run_id")
    numbers = []
    for i, w in enumerate(widths):
        ax_layer, ax_time = rows[i]
        for gr in groups:
            sel = end[_in_group(end, gr) & (end["width"] == w)]
            if sel.empty:
                continue
            dead = sel.pivot_table(index="run_id", columns="layer", values="dead_frac")
            born = sel.pivot_table(index="run_id", columns="layer", values="born_dead_frac")
            _median_lines(ax_layer, dead, born, colors[gr], _label(gr), several)
            sel = per_run[_in_group(per_run, gr) & (per_run["width"] == w)]
            dead = sel.pivot_table(index="run_id", columns="step", values="dead_frac")
            born = sel.pivot_table(index="run_id", columns="step", values="born_dead_frac")
            med, bmed = _median_lines(ax_time, dead, born, colors[gr], _label(gr), several)
            numbers.append((w, _label(gr), float(med[-1]), float(bmed[-1]), dead.shape[0]))
        n = runs[(runs["width"] == w) & (runs["depth"] == deepest)]
        seeds = f", {split.seeds_text(n)}" if "seed" in n and n["seed"].nunique() > 1 else ""
        ax_layer.set_title(f"(a) $N = {w}$, $k = {deepest}$: per layer at the end{seeds}", loc="left")
        ax_time.set_title(f"(b) $N = {w}$, $k = {deepest}$: all hidden units", loc="left")
        ax_layer.set_xlabel("hidden layer (0 = nearest the input)")
        ax_layer.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax_time.set_xlabel("training step")
        for ax in (ax_layer, ax_time):
            ax.set_ylabel("fraction of units dead")
            ax.set_ylim(-0.03, 1.03)
    handles, labels = rows[0][0].get_legend_handles_labels()
    handles += [Line2D([], [], color="0.3", marker="o", ms=3), Line2D([], [], color="0.3", linestyle=":", linewidth=2)]
    labels += ["all dead units", "of which born dead (step 0)"]
    if several:
        handles.append(Patch(color="0.3", alpha=style.BAND_ALPHA))
        labels.append(f"median, band: {split.band_name(ctx.plan.seeds)} of seeds")

    # -- (c) born-dead networks against depth, Lu et al.'s probability dashed
    relu = runs[runs["activation"] == "relu"]
    dead0 = dead_at_init(ctx.tables, relu).dropna()
    relu = relu[relu["run_id"].isin(dead0.index)].assign(dead0=lambda d: d["run_id"].map(dead0).astype(bool))
    lu_numbers = []
    if relu.empty:
        ax_lu.text(0.5, 0.5, "no ReLU runs with a probe at step 0", ha="center", va="center",
                   transform=ax_lu.transAxes)  # fmt: skip
    else:
        rwidths = sorted(int(w) for w in relu["width"].unique())
        wcolors = _runinfo.shades(style.color_of("relu"), len(rwidths), 0.55)
        kmax = int(relu["depth"].max())
        ks = np.arange(1, kmax + 1)
        offsets = (np.arange(len(rwidths)) - (len(rwidths) - 1) / 2) * 0.06 * kmax / max(len(rwidths), 1)
        lu_applies = _runinfo.plain(relu)  # Lu et al.'s argument is the plain stack's: no norm layer, no residual
        for i, w in enumerate(rwidths):
            if lu_applies:
                lu = [theory.lu_dead_probability(w, int(k)) for k in ks]
                (line,) = ax_lu.plot(ks, lu, color=wcolors[i], linestyle="--", linewidth=1.2)
                line.set_gid(f"lu:{w}")
            cell = relu[relu["width"] == w].groupby("depth")["dead0"].agg(["sum", "count"])
            depth = cell.index.to_numpy(dtype=float)
            frac = (cell["sum"] / cell["count"]).to_numpy()
            lo_hi = np.array([_wilson(int(k), int(n)) for k, n in zip(cell["sum"], cell["count"])])
            n = cell["count"]
            more = (n > 1).to_numpy()  # an interval from a single run says little and hides the rest
            ax_lu.vlines((depth + offsets[i])[more], lo_hi[more, 0], lo_hi[more, 1], color=wcolors[i],
                         alpha=0.5, linewidth=1)  # fmt: skip
            nlabel = f"{n.min()}" if n.min() == n.max() else f"{n.min()}-{n.max()}"
            label = f"$N = {w}$ ({nlabel} run{'s' if n.max() > 1 else ''}/point)"
            (line,) = ax_lu.plot(depth + offsets[i], frac, color=wcolors[i], marker=MARKERS[i % len(MARKERS)],
                                 linestyle="none", ms=5, label=label)  # fmt: skip
            line.set_gid(f"measured:{w}")
            for d, k_dead, count in zip(cell.index, cell["sum"], cell["count"]):
                p = theory.lu_dead_probability(w, int(d)) if lu_applies else None
                lu_numbers.append((w, int(d), int(k_dead), int(count), p))
        h, lab = ax_lu.get_legend_handles_labels()
        if lu_applies:
            h.append(Line2D([], [], **style.THEORY))
            lab.append("Lu et al.: dead at one input")
        ax_lu.legend(h, lab, loc="best", frameon=False)
        ax_lu.set_xlim(0, kmax + 1)
    ax_lu.set_title("(c) ReLU nets born dead: constant on\nthe whole probe set at step 0", loc="left")
    ax_lu.set_ylabel("fraction of networks dead at step 0")
    ax_lu.set_xlabel("hidden layers $k$")
    ax_lu.set_ylim(-0.03, 1.03)

    acts = set(runs["activation"])
    head = "Dead units, " + ("ReLU vs leaky ReLU" if acts == set(ACTIVATIONS) else _label(groups[0]).split(",")[0])
    _runinfo.caption(fig, ctx.title(head, skip=("activation", "leaky_slope")))
    bottom = 0.4 / fig.get_figheight()
    fig.tight_layout(rect=(0, bottom, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=len(handles), frameon=False, bbox_to_anchor=(0.5, 0.0))
    return fig, _text(numbers, lu_numbers, deepest)


def _text(numbers, lu_numbers, deepest: int) -> str:
    parts = []
    if numbers:
        items = [f"N = {w}, {name}: {dead:.0%} dead (born dead {born:.0%})" for w, name, dead, born, _ in numbers]
        parts.append(f"At the last logged step, k = {deepest} (median over seeds): " + "; ".join(items) + ".")
    if lu_numbers:
        items = [f"N = {w}, k = {k}: {d}/{n}" + (f" (Lu {p:.2f})" if p is not None else "")
                 for w, k, d, n, p in lu_numbers]  # fmt: skip
        against = (" against Lu et al.'s probability" if lu_numbers[0][4] is not None else
                   " (nets with a norm layer or residual connections: Lu et al.'s probability does not apply)")
        parts.append("ReLU networks dead at step 0, measured" + against + ": " + "; ".join(items) + ".")
    return " ".join(parts)
