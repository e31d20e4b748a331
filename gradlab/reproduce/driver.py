"""Run a reproduction: its runs (if any) through the sweep runner, then its check; write the figures,
claims.csv and the manifest into its results folder."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import gradlab
from gradlab.reproduce import NAMES, TIME_LIMIT_S, claims as claims_mod, module
from gradlab.sweep.config import SECTIONS, ConfigError, Experiment, from_dict, read
from gradlab.sweep.progress import Phases

RUN_KEYS = (*SECTIONS, "sweep", "case", "part")  # a config with any of these has training runs


@dataclass
class Spec:
    """A reproduction's parameters: the check's (from [reproduce]) and its runs (None if it has none)."""

    name: str
    description: str
    params: dict[str, Any]
    experiment: Experiment | None
    quick: bool = False


@dataclass
class Outcome:
    out: Path
    claims: list[claims_mod.Claim]
    figures: list[Path] = field(default_factory=list)
    wall_s: float = 0.0
    failed_runs: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.claims) and not self.failed_runs


def experiments_dir() -> Path:
    """experiments/ here, else the one next to the installed package (a source checkout)."""
    here = Path("experiments")
    shipped = Path(gradlab.__file__).resolve().parents[1] / "experiments"
    return here if (here / f"{NAMES[0]}.toml").is_file() or not shipped.is_dir() else shipped


def load(name: str, quick: bool = False, path: Path | None = None) -> Spec:
    """Read experiments/NAME.toml: [reproduce] (with [reproduce.quick] applied when quick) and the runs."""
    module(name)  # raises on an unknown name
    data = read(path or experiments_dir() / f"{name}.toml")
    params = dict(data.get("reproduce", {}))
    fast = params.pop("quick", {})
    overrides = list(fast.pop("set", [])) if quick else []
    if quick:
        unknown = sorted(set(fast) - set(params))
        if unknown:
            raise ConfigError(f"reproduce.quick.{unknown[0]}: not a [reproduce] parameter; allowed: {', '.join(params)}")
        params.update(fast)
    experiment = None
    if any(key in data for key in RUN_KEYS):
        experiment = from_dict(data, name, overrides)
    return Spec(name, str(data.get("description", "")), params, experiment, quick)


def default_out(name: str, quick: bool = False) -> Path:
    return Path("results") / (f"{name}_quick" if quick else name)


def reproduce(
    name: str,
    quick: bool = False,
    out: Path | None = None,
    executor: str = "process",
    workers: int | None = None,
    echo: Callable[[str], None] = print,
    progress: bool | Phases = True,
) -> Outcome:
    """Run reproduction `name` into `out` (default results/NAME or results/NAME_quick) and check it.
    progress: the phases (runs, consolidating, measuring, drawing figures) on stderr when it is a terminal
    (True), none (False), or drawn into a caller's Phases (gradlab.sweep.progress)."""
    from gradlab.plots.style import save
    from gradlab.sweep import load_results, runner
    from gradlab.sweep.progress import make
    from gradlab.sweep.store import Store, record_files

    start, started_at = time.perf_counter(), datetime.now(timezone.utc).isoformat(timespec="seconds")
    spec = load(name, quick)
    out = Path(out or default_out(name, quick))
    with Store(out).open() as store, make(progress) as bar:  # checked, locked and marked before anything is written
        tables, failed, run_summary = None, [], None
        if spec.experiment is not None:
            echo(f"{name}: {len(spec.experiment.grid())} training runs ({executor}) ...")
            run_summary = runner.run(spec.experiment, out, executor, workers, progress=bar)
            failed = [rid for rid, _ in run_summary.failed]
            tables = load_results(out)
        echo(f"{name}: measuring ...")
        bar.phase("measuring")
        found, figures = module(name).check(spec.params, tables)
        bar.phase("drawing figures")
        written = []
        for stem, fig in figures.items():
            written += save(fig, out / "figures" / stem)
        record_files(out / "figures", written)
        wall_s = time.perf_counter() - start
        outcome = Outcome(out, found, written, wall_s, failed)
        store.write_text("claims.csv", claims_mod.frame(found).to_csv(index=False))
        store.write_text("manifest.json", json.dumps(_manifest(spec, outcome, started_at, run_summary, executor), indent=1))
    return outcome


def _manifest(spec: Spec, outcome: Outcome, started_at: str, run_summary, executor: str) -> dict[str, Any]:
    """Provenance (code commit, packages, platform), the reproduction's parameters, its runs and verdict."""
    from gradlab.sweep import runner

    out = {"reproduction": spec.name, "quick": spec.quick, **runner.provenance(), "started": started_at,
           "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "wall_s": round(outcome.wall_s, 3),
           "time_limit_s": TIME_LIMIT_S, "params": spec.params}  # fmt: skip
    if run_summary is not None:
        out.update(executor=executor, runs=runner.run_counts(run_summary))
    out.update(
        claims={"total": len(outcome.claims), "passed": sum(c.passed for c in outcome.claims)},
        figures=sorted({p.stem for p in outcome.figures}),
    )
    return out
