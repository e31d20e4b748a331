"""Draw every figure the tables allow into <out_dir>/figures/, each isolated from the others.

A figure is skipped, with the reason, when its module does not exist, when it raises SkipFigure (the
tables do not hold what it needs) or when it raises anything else (a bug: the reason starts with
ERROR and names the exception). One figure's failure never stops the others.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from gradlab.plots import NAMES, style
from gradlab.sweep.store import record_files, remove_files

ERROR = "error: "  # the start of the reason of a figure that raised (not a SkipFigure)
FORMATS = ("png", "pdf", "svg")  # what --format accepts (matplotlib writes each)


def load_figure(name: str):
    """The module of figure `name`, or None when gradlab/plots/<name>.py does not exist."""
    if name not in NAMES:
        raise ValueError(f"figure must be one of {', '.join(NAMES)}; got {name!r}")
    try:
        return importlib.import_module(f"gradlab.plots.{name}")
    except ModuleNotFoundError as err:
        if err.name == f"gradlab.plots.{name}":
            return None
        raise


def render(name: str, tables: dict[str, pd.DataFrame]):
    """(Figure, None) or (None, reason): figure `name` drawn from the tables, never raising."""
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    try:
        mod = load_figure(name)
        if mod is None:
            return None, f"not available: no module gradlab/plots/{name}.py"
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # a figure's warnings are not the user's business
            fig = mod.draw(tables)
        return fig, None
    except style.SkipFigure as why:
        reason = str(why) or "the tables do not hold what it needs"
    except Exception as err:  # noqa: BLE001 - one figure's bug must not take the others down
        reason = f"{ERROR}{type(err).__name__}: {err}".splitlines()[0]
    for num in set(plt.get_fignums()) - before:  # what the failed figure left open
        plt.close(num)
    return None, reason


def caption(name: str) -> str:
    """The figure's CAPTION (what to look at), or "" when its module is missing or broken."""
    try:
        mod = load_figure(name)
    except Exception:  # noqa: BLE001 - a broken module has no caption; render() reports its error
        return ""
    return str(getattr(mod, "CAPTION", "")) if mod is not None else ""


def check_names(only: Iterable[str] | None) -> list[str]:
    """The figures to draw, in NAMES order; ValueError (one line) for an unknown name."""
    if only is None:
        return list(NAMES)
    only = list(only)
    for name in only:
        if name not in NAMES:
            raise ValueError(f"--only {name!r}: must be one of {', '.join(NAMES)}")
    return [n for n in NAMES if n in only]


def check_formats(formats: Iterable[str]) -> list[str]:
    """The formats, deduplicated; ValueError (one line) for an unknown or empty one."""
    out = []
    for fmt in formats:
        fmt = fmt.strip().lower().lstrip(".")
        if fmt not in FORMATS:
            raise ValueError(f"--format {fmt!r}: must be one of {', '.join(FORMATS)} (comma-separated, e.g. png,pdf)")
        if fmt not in out:
            out.append(fmt)
    if not out:
        raise ValueError(f"--format: give at least one of {', '.join(FORMATS)}")
    return out


def draw_all(
    tables: dict[str, pd.DataFrame],
    out_dir: str | Path,
    only: Iterable[str] | None = None,
    formats: Iterable[str] = ("png", "pdf"),
) -> tuple[dict[str, list[Path]], dict[str, str]]:
    """Draw the figures (all of NAMES, or `only`) into out_dir/figures/<name>.<format>.

    Returns (written: name -> paths, skipped: name -> reason). A skipped figure's files left over
    from earlier results are removed (only files gradlab wrote there, as figures/.gradlab-files
    lists them), so figures/ shows only what these tables support."""
    names, formats = check_names(only), check_formats(formats)
    folder = Path(out_dir) / "figures"
    written: dict[str, list[Path]] = {}
    skipped: dict[str, str] = {}
    for name in names:
        fig, reason = render(name, tables)
        if fig is None:
            skipped[name] = reason
            remove_files(folder, [f"{name}.{fmt}" for fmt in FORMATS])
            continue
        try:
            written[name] = style.save(fig, folder / name, formats)
            record_files(folder, written[name])
        except Exception as err:  # noqa: BLE001 - e.g. a figure that cannot be rendered to a file
            import matplotlib.pyplot as plt

            plt.close(fig)
            skipped[name] = f"{ERROR}saving failed: {type(err).__name__}: {err}".splitlines()[0]
    return written, skipped


def errors(skipped: dict[str, str]) -> list[str]:
    """The skipped figures that raised (bugs), not those the tables could not support."""
    return [name for name, reason in skipped.items() if reason.startswith(ERROR)]
