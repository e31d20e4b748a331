"""Dying ReLUs: dead units per layer and over training for ReLU and leaky ReLU (born dead apart from
died), and the fraction of ReLU networks that are dead at initialisation against depth, beside Lu et
al.'s (2019) probability 1 - (1 - 2^-N)^k."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from gradlab import theory
from gradlab.plots import _runinfo, select_runs, style

PART = "dying"
CAPTION = (
    "Dead units (activation exactly 0 on every one of the probe examples) in ReLU and leaky-ReLU MLPs. "
    "Left: dead fraction per hidden layer of the deepest networks at the end of training; solid is every "
    "dead unit, dotted the part that was already dead at step 0 (born dead), so the gap between them is "
    "the units that died in training. Middle: the dead fraction of all hidden units over training. "
    "Leaky ReLU units cannot die (their slope is never 0), so its lines stay at 0. Right: the fraction "
    "of ReLU networks that are a constant function on the whole probe set at step 0 (points, with a 95% "
    "Wilson interval), against the number of hidden layers k, per width N; dashed, Lu et al.'s "
    "probability 1 - (1 - 2^-N)^k that the network is dead at one given input. Being constant on every "
    "probe input is the stronger event, so the points should lie at or below their curve; narrow deep "
    "networks are born dead."
)

ACTIVATIONS = ("relu", "leaky_relu")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")


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


def _dead_and_born(ax, curve: pd.DataFrame, color: str, label: str) -> None:
    """Two lines against curve's index: dead_frac solid with markers (labelled), born_dead_frac dotted."""
    x = curve.index.to_numpy()
    (line,) = ax.plot(x, curve["dead_frac"], color=color, marker="o", ms=3, label=label)
    line.set_gid(f"dead:{label}")
    (line,) = ax.plot(x, curve["born_dead_frac"], color=color, linestyle=":", linewidth=2)
    line.set_gid(f"born:{label}")


def draw(tables: dict[str, pd.DataFrame]):
    _runinfo.need(tables, "runs", ["run_id", "model", "activation", "depth", "width"], "dead units need MLP runs")
    _runinfo.need(tables, "layers", ["run_id", "step", "layer", "dead_frac", "born_dead_frac"], "dead units")
    t = select_runs(tables, PART, model="mlp", activation=list(ACTIVATIONS),
                    skip="no MLP runs with relu or leaky_relu activation")
    runs = t["runs"]
    if "leaky_slope" not in runs:
        runs = runs.assign(leaky_slope=np.nan)
    layers = t["layers"].merge(runs[["run_id", "activation", "leaky_slope", "depth", "width"]], on="run_id")
    hidden = layers[(layers["layer"] < layers["depth"]) & layers["dead_frac"].notna()]
    if hidden.empty:
        raise style.SkipFigure("no dead-unit probes (layers.dead_frac) for hidden layers of the ReLU/leaky ReLU MLPs")
    runs = runs[runs["run_id"].isin(hidden["run_id"])]

    groups = _groups(runs)
    colors = _colors(groups)
    fig, axes = style.figure(1, 3, width=3.4, height=2.8)
    ax_layer, ax_time, ax_lu = axes[0]

    # -- left: per layer at the end, deepest networks
    deepest = int(runs["depth"].max())
    last = hidden.groupby("run_id")["step"].transform("max")
    end = hidden[(hidden["step"] == last) & (hidden["depth"] == deepest)]
    for g in groups:
        rows = end[_in_group(end, g)]
        if rows.empty:
            continue
        _dead_and_born(ax_layer, rows.groupby("layer")[["dead_frac", "born_dead_frac"]].mean(), colors[g], _label(g))
    widths = sorted(end["width"].unique())
    ax_layer.set_title(f"(a) per layer at the end, k = {deepest}\n(mean over N = "
                       f"{', '.join(str(int(w)) for w in widths)})", loc="left")  # fmt: skip
    ax_layer.set_xlabel("hidden layer (0 = nearest the input)")
    ax_layer.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_layer.set_ylabel("fraction of units dead")
    ax_layer.set_ylim(-0.03, 1.03)
    handles, labels = ax_layer.get_legend_handles_labels()
    handles += [Line2D([], [], color="0.3"), Line2D([], [], color="0.3", linestyle=":", linewidth=2)]
    labels += ["all dead units", "of which born dead (step 0)"]
    legend_below = (handles, labels)  # drawn under the panels once the layout is fixed

    # -- middle: over training, all hidden units of all runs
    per_run = hidden.groupby(["run_id", "step"], as_index=False)[["dead_frac", "born_dead_frac"]].mean()
    per_run = per_run.merge(runs[["run_id", "activation", "leaky_slope"]], on="run_id")
    for g in groups:
        rows = per_run[_in_group(per_run, g)]
        if rows.empty:
            continue
        _dead_and_born(ax_time, rows.groupby("step")[["dead_frac", "born_dead_frac"]].mean(), colors[g], _label(g))
    ax_time.set_title(f"(b) over training, all hidden units\n(mean over all {len(runs)} runs)", loc="left")
    ax_time.set_xlabel("training step")
    ax_time.set_ylabel("fraction of hidden units dead")
    ax_time.set_ylim(-0.03, 1.03)

    # -- right: born-dead networks against depth, Lu et al.'s probability dashed
    relu = runs[runs["activation"] == "relu"]
    dead0 = dead_at_init(tables, relu).dropna()
    relu = relu[relu["run_id"].isin(dead0.index)].assign(dead0=lambda d: d["run_id"].map(dead0).astype(bool))
    if relu.empty:
        ax_lu.text(0.5, 0.5, "no ReLU runs with a probe at step 0", ha="center", va="center",
                   transform=ax_lu.transAxes)  # fmt: skip
    else:
        rwidths = sorted(int(w) for w in relu["width"].unique())
        wcolors = _runinfo.shades(style.color_of("relu"), len(rwidths), 0.55)
        kmax = int(relu["depth"].max())
        ks = np.arange(1, kmax + 1)
        offsets = (np.arange(len(rwidths)) - (len(rwidths) - 1) / 2) * 0.06 * kmax / max(len(rwidths), 1)
        for i, w in enumerate(rwidths):
            lu = [theory.lu_dead_probability(w, int(k)) for k in ks]
            (line,) = ax_lu.plot(ks, lu, color=wcolors[i], linestyle="--", linewidth=1.2)
            line.set_gid(f"lu:{w}")
            cell = relu[relu["width"] == w].groupby("depth")["dead0"].agg(["sum", "count"])
            depth = cell.index.to_numpy(dtype=float)
            frac = (cell["sum"] / cell["count"]).to_numpy()
            lo_hi = np.array([_wilson(int(k), int(n)) for k, n in zip(cell["sum"], cell["count"])])
            n = cell["count"]
            several = (n > 1).to_numpy()  # an interval from a single run says little and hides the rest
            ax_lu.vlines((depth + offsets[i])[several], lo_hi[several, 0], lo_hi[several, 1], color=wcolors[i],
                         alpha=0.5, linewidth=1)  # fmt: skip
            nlabel = f"{n.min()}" if n.min() == n.max() else f"{n.min()}-{n.max()}"
            label = f"N = {w} ({nlabel} run{'s' if n.max() > 1 else ''}/point)"
            (line,) = ax_lu.plot(depth + offsets[i], frac, color=wcolors[i], marker=MARKERS[i % len(MARKERS)],
                                 linestyle="none", ms=5, label=label)  # fmt: skip
            line.set_gid(f"measured:{w}")
        handles, labels = ax_lu.get_legend_handles_labels()
        handles.append(Line2D([], [], **style.THEORY))
        labels.append("Lu et al.: dead at one input")
        ax_lu.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        ax_lu.set_xlim(0, kmax + 1)
    ax_lu.set_title("(c) ReLU nets born dead: constant on\nthe whole probe set at step 0", loc="left")
    ax_lu.set_ylabel("fraction of networks dead at step 0")
    ax_lu.set_xlabel("hidden layers k")
    ax_lu.set_ylim(-0.03, 1.03)

    _runinfo.caption(fig, _runinfo.title("Dead units, ReLU vs leaky ReLU", runs, skip=("activation", "leaky_slope")))
    fig.tight_layout(rect=(0, 0.09, 1, 1))
    fig.legend(*legend_below, loc="lower center", ncol=len(legend_below[0]), frameon=False,
               bbox_to_anchor=(0.5, 0.0))  # fmt: skip
    return fig
