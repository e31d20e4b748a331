"""The HTML report of a results folder: one self-contained file (figures embedded as base64 PNG,
inline CSS, no script, nothing fetched from the network) that reads well on screen and printed.

Sections: what ran (runs by status and diagnosis, per part, and what each part's runs share and what
varies), the figures with their captions (how to read each, then what the data say: the runs drawn, what
they share, what varies and how it is drawn apart, the measured numbers beside the theory's, and what was
left out and why; the figures skipped, with why), the diagnosis sentences grouped by label, the config and
its grid, and provenance (manifest.json). Every text about the results is written from the tables; the only
hand-written texts are the experiment's and its parts' descriptions from its own config.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import struct
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from gradlab import diagnose
from gradlab.plots import NAMES, split
from gradlab.plots import draw as drawing
from gradlab.plots._runinfo import config_fields

STATUSES = ("ok", "diverged", "failed")
LABELS = tuple(reversed(diagnose.LABELS))  # most to least alarming
RULES = {  # what each label means, for the diagnosis section's opening (only the labels present are named)
    "diverged": "a loss or gradient became inf/NaN",
    "dying": "dead hidden units",
    "exploding": "the gradient grows 100&times; or more across the hidden layers, or back in time",
    "vanishing": "the gradient shrinks 100&times; or more across the hidden layers, or back in time",
    "stalled": "the held-out loss ends no better than a fixed fraction of the best constant prediction's",
    "healthy": "none of the above",
}
CAPTION_MARKS = ("Drawn: ", "Left out: ")  # a caption's parts (gradlab.plots.split.draw_files) that start a line
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SCREEN_DPI = 96  # CSS pixels per inch: an embedded figure is shown at its printed size

CSS = """
body { font: 15px/1.45 Georgia, "Times New Roman", serif; color: #111; background: #fff;
       max-width: 60em; margin: 1.5em auto; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #999; margin-top: 1.8em; }
h3 { font-size: 1.05em; margin-bottom: 0.3em; }
p.lead { color: #333; margin-top: 0; }
nav { font-size: 0.9em; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.88em; }
th, td { border: 1px solid #bbb; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
th { background: #eee; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: bold; }
figure { margin: 1.2em 0; page-break-inside: avoid; break-inside: avoid; }
figure img { max-width: 100%; height: auto; display: block; border: 1px solid #ddd; }
figcaption { font-size: 0.92em; margin-top: 0.4em; }
figcaption b { font-family: monospace; }
pre { background: #f6f6f6; border: 1px solid #ddd; padding: 0.6em; font-size: 0.8em; overflow-x: auto;
      white-space: pre-wrap; }
code, td.mono { font-family: monospace; font-size: 0.95em; }
.label-diverged, .label-exploding { color: #a33; }
.label-dying { color: #7a3d6b; }
.label-vanishing { color: #1f5f8f; }
.label-healthy { color: #2d6b2d; }
.label-stalled { color: #8a6d00; }
figcaption .notes { color: #7a3d00; }
.muted { color: #666; }
@media print {
  body { max-width: none; margin: 0; font-size: 11pt; }
  nav { display: none; }
  h2 { page-break-after: avoid; break-after: avoid; }
  pre { white-space: pre-wrap; }
}
"""


def write(
    results_dir: str | Path,
    tables: dict[str, pd.DataFrame] | None = None,
    drawn: tuple[dict[str, list[Path]], dict[str, str]] | None = None,
) -> Path:
    """Write results_dir/report.html (to a temporary name, then renamed) and return its path.

    `tables` default to the folder's consolidated tables; `drawn` is draw_all's Drawing (or its
    (written, skipped)), and when not given the figures are drawn now (into results_dir/figures/, PNG and
    PDF). A Drawing's captions and notes are the ones shown; with (written, skipped) alone each figure
    gets its module's CAPTION."""
    from gradlab.sweep import load_results

    root = Path(results_dir)
    if tables is None:
        tables = load_results(root)
    if drawn is None:
        drawn = drawing.draw_all(tables, root)
    if not isinstance(drawn, drawing.Drawing) and getattr(drawn[0], "drawing", None) is not None:
        drawn = drawn[0].drawing  # (written, skipped) unpacked from a Drawing: its captions are still known
    if isinstance(drawn, drawing.Drawing):
        text = build(root, tables, drawn.written, drawn.skipped, captions=drawn.captions, notes=drawn.notes,
                     stems=drawn.stems)  # fmt: skip
    else:
        text = build(root, tables, *drawn)
    path = root / "report.html"
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)  # only left when the write failed: the old report stays whole
    return path


def write_summary(results_dir: str | Path, tables: dict[str, pd.DataFrame] | None = None) -> Path:
    """Write results_dir/summary.csv: the runs table (one row per run, every column), atomically."""
    from gradlab.sweep import load_results

    root = Path(results_dir)
    runs = (tables if tables is not None else load_results(root))["runs"]
    path = root / "summary.csv"
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        runs.to_csv(tmp, index=False)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def build(
    root: Path,
    tables: dict[str, pd.DataFrame],
    written: dict[str, list[Path]],
    skipped: dict[str, str],
    captions: dict[str, str] | None = None,
    notes: dict[str, list[str]] | None = None,
    stems: dict[str, list[str]] | None = None,
) -> str:
    """The report's HTML text: captions (file stem -> caption) and notes (figure -> what it left out) from
    draw_all's Drawing; stems (figure -> its files' stems, in order) default to the written files'."""
    runs = tables["runs"]
    manifest = _read_json(root / "manifest.json")
    config_text = _read_text(root / "config.toml")
    name = manifest.get("experiment") or root.name
    experiment = _experiment(root / "config.toml")
    description = experiment.description if experiment is not None else ""

    body = [
        f"<h1>gradlab report: {_e(name)}</h1>",
        f'<p class="lead">{_e(description)}</p>' if description else "",
        f'<p class="lead">{_headline(runs, manifest, written)}</p>',
        (
            '<nav><a href="#runs">Runs</a><a href="#figures">Figures</a><a href="#diagnosis">Diagnosis</a>'
            '<a href="#config">Config and grid</a><a href="#provenance">Provenance</a></nav>'
        ),
        '<h2 id="runs">Runs by status and diagnosis</h2>',
        _runs_table(runs),
        _parts(runs, experiment),
        _failed(runs),
        '<h2 id="figures">Figures</h2>',
        _figures(tables, written, skipped, captions or {}, notes or {}, stems or {}),
        '<h2 id="diagnosis">Diagnosis</h2>',
        _rules(runs),
        _diagnoses(runs),
        '<h2 id="config">Config and grid</h2>',
        _grid(runs, experiment),
        "<h3>config.toml (the experiment as run)</h3>",
        f"<pre>{_e(config_text)}</pre>" if config_text else '<p class="muted">no config.toml in this folder</p>',
        '<h2 id="provenance">Provenance</h2>',
        _provenance(manifest),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>gradlab report: {_e(name)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(part for part in body if part)
        + "\n</body>\n</html>\n"
    )


# ---- sections ---------------------------------------------------------------------------------


def _headline(runs: pd.DataFrame, manifest: dict, written: dict) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in _ordered_counts(runs.get("status", pd.Series(dtype=str)), STATUSES))
    files = sum(len({Path(p).stem for p in paths}) for paths in written.values())
    figures = f"{len(written)} of {len(NAMES)} figures" + (f" in {files} files" if files > len(written) else "")
    bits = [f"{len(runs)} runs ({counts or 'none'})", figures]
    if "wall_s" in manifest:
        resumed = int(manifest.get("runs", {}).get("skipped_as_finished", 0) or 0)
        note = f" ({resumed} runs were already finished)" if resumed else ""
        bits.append(f"the last gradlab run took {float(manifest['wall_s']):.1f} s{note}")
    if manifest.get("finished"):
        bits.append(f"finished {manifest['finished']}")
    return _e("; ".join(bits) + ".")


def _runs_table(runs: pd.DataFrame) -> str:
    """One row per part (and a total): runs, then counts by status, then counts by diagnosis."""
    if not len(runs):
        return '<p class="muted">No runs.</p>'
    statuses = [s for s, _ in _ordered_counts(runs["status"], STATUSES)]
    labels = [d for d, _ in _ordered_counts(runs["diagnosis"], LABELS)] if "diagnosis" in runs else []
    groups = [(p, g) for p, g in runs.groupby("part", sort=False)] if _has_parts(runs) else []
    head = (
        "<tr><th>part</th><th class=num>runs</th>"
        + "".join(f"<th class=num>{_e(s)}</th>" for s in statuses)
        + "".join(f'<th class="num label-{_e(d)}">{_e(d or "no diagnosis")}</th>' for d in labels)
        + "</tr>"
    )
    head = (
        f'<tr><th></th><th></th><th colspan="{len(statuses)}">by status</th>'
        + (f'<th colspan="{len(labels)}">by diagnosis</th>' if labels else "")
        + "</tr>"
        + head
    )

    def row(name: str, frame: pd.DataFrame, cls: str = "") -> str:
        cells = [f"<td>{_e(name)}</td>", f"<td class=num>{len(frame)}</td>"]
        cells += [f"<td class=num>{int((frame['status'] == s).sum())}</td>" for s in statuses]
        cells += [f"<td class=num>{int((frame['diagnosis'] == d).sum())}</td>" for d in labels]
        return f"<tr{f' class={cls}' if cls else ''}>" + "".join(cells) + "</tr>"

    rows = [row(str(p), g) for p, g in groups] + [row("all", runs, "total")]
    return f"<table>{head}{''.join(rows)}</table>"


def _failed(runs: pd.DataFrame) -> str:
    failed = runs[runs["status"] == "failed"] if len(runs) else runs
    if not len(failed):
        return ""
    items = "".join(f"<li><code>{_e(r.run_id)}</code>: {_e(r.error)}</li>" for r in failed.itertuples())
    return f"<h3>Failed runs</h3><ul>{items}</ul>"


def _parts(runs: pd.DataFrame, experiment) -> str:
    """Per part (or for all runs): its description from the config when it has one, what its runs share
    and what varies among them, both written from the runs table."""
    if not len(runs):
        return ""
    described = {p.name: getattr(p, "description", "") for p in (experiment.parts if experiment else [])}
    groups = [(str(p), g) for p, g in runs.groupby("part", sort=False)] if _has_parts(runs) else [("all", runs)]
    head = "<tr><th>part</th><th>shared by its runs</th><th>varies</th></tr>"
    rows = []
    for name, frame in groups:
        varies = []
        for f in split.varying(frame):
            if f in (split.PART, "run_id"):
                continue
            n = len([v for v in split.values_of(frame, f) if v is not split.NA])
            varies.append(f"{f}: {split.values_text(frame, f)}" + (f" ({n})" if n > 8 else ""))
        text = described.get(name, "")
        rows.append(
            f"<tr><td>{_e(name)}</td><td>{_e(split.shared(frame, skip=(split.PART,)))}"
            + (f'<br><span class="muted">{_e(text)}</span>' if text else "")
            + f"</td><td class=mono>{'<br>'.join(_e(v) for v in varies) or 'nothing'}</td></tr>"
        )
    return f"<h3>What the runs share and what varies</h3><table>{head}{''.join(rows)}</table>"


def _rules(runs: pd.DataFrame) -> str:
    """The diagnosis section's opening: the labels present, most alarming first, and what each means."""
    present = [d for d, _ in _ordered_counts(runs["diagnosis"], LABELS)] if "diagnosis" in runs and len(runs) else []
    named = [f"{_e(d)} ({RULES[d]})" if d in RULES else _e(d) for d in present if d]
    if not named:
        return ""
    return ("<p>Each run gets one label, the first rule that applies, most alarming first; here: "
            + ", ".join(named) + ". The sentence gives the numbers.</p>")  # fmt: skip


def _figures(
    tables: dict[str, pd.DataFrame],
    written: dict[str, list[Path]],
    skipped: dict[str, str],
    captions: dict[str, str],
    notes: dict[str, list[str]],
    stems: dict[str, list[str]],
) -> str:
    out = []
    for name in (n for n in NAMES if n in written):
        files = stems.get(name) or list(dict.fromkeys(Path(p).stem for p in written[name]))
        for stem in files:
            paths = [p for p in written[name] if Path(p).stem == stem]
            png = _png_bytes(name, stem, paths, tables)
            if png is None:
                skipped = {**skipped, stem: "drawn, but no PNG could be read for the report"}
                continue
            width, _ = png_size(png)
            style = f' style="width:{round(width * SCREEN_DPI / 200)}px"' if width else ""
            data = base64.b64encode(png).decode("ascii")
            cap = captions.get(stem) or drawing.caption(name)
            left = "" if stem in captions or not notes.get(name) else (
                '<br><span class="notes">Left out: ' + _e("; ".join(notes[name])) + ".</span>")
            text = _e(cap)
            for mark in CAPTION_MARKS:  # what the data say, each on its own line after the reading guide
                text = text.replace(f" {mark}", f"<br>{mark}", 1)
            out.append(
                f'<figure id="fig-{_e(stem)}"><img src="data:image/png;base64,{data}" alt="figure {_e(stem)}"{style}>'
                f"<figcaption><b>{_e(stem)}</b>{': ' + text if cap else ''}{left}</figcaption></figure>"
            )
    if not out:
        out.append('<p class="muted">No figure could be drawn from these results.</p>')
    not_drawn = [n for n in [*NAMES, *(k for k in skipped if k not in NAMES)] if n in skipped]
    if not_drawn:
        items = "".join(f"<li><b><code>{_e(n)}</code></b>: {_e(skipped[n])}</li>" for n in not_drawn)
        out.append(f"<h3>Figures not drawn</h3><ul>{items}</ul>")
    return "\n".join(out)


def _diagnoses(runs: pd.DataFrame) -> str:
    """Per label (most alarming first): a table of the runs, what varies about them, and the sentence."""
    if "diagnosis" not in runs or not len(runs):
        return '<p class="muted">No diagnosis in these results.</p>'
    varying = _varying_columns(runs)
    parts = _has_parts(runs)
    out = []
    for label, n in _ordered_counts(runs["diagnosis"], LABELS):
        rows = runs[runs["diagnosis"] == label]
        title = label or "no diagnosis (failed runs)"
        head = "<tr>" + ("<th>part</th>" if parts else "") + "<th>run</th><th>config</th><th>sentence</th></tr>"
        body = []
        for r in rows.to_dict("records"):
            skip = _irrelevant(r)
            fields = ", ".join(f"{c}={_fmt(r[c])}" for c in varying.get(r.get("part", ""), []) if c not in skip)
            body.append(
                "<tr>"
                + (f"<td>{_e(r['part'])}</td>" if parts else "")
                + f"<td class=mono>{_e(r['run_id'])}</td><td class=mono>{_e(fields)}</td>"
                + f"<td>{_e(r.get('diagnosis_text') or r.get('error') or '')}</td></tr>"
            )
        out.append(f'<h3 class="label-{_e(label)}">{_e(title)}: {n} run{"s" if n != 1 else ""}</h3>'
                   f"<table>{head}{''.join(body)}</table>")  # fmt: skip
    return "\n".join(out)


def _grid(runs: pd.DataFrame, experiment) -> str:
    """The grid: its size, and per part (or for the whole experiment) the axes, cases and changes."""
    if experiment is None:
        return f"<p>{len(runs)} runs (config.toml could not be read back).</p>"
    try:
        size = len(experiment.grid())
    except Exception:  # noqa: BLE001 - the report shows what it can
        size = len(runs)
    parts = experiment.parts or []
    lines = [f"<p>The grid has <b>{size}</b> run{'s' if size != 1 else ''}"
             + (f" in {len(parts)} parts, each a grid of its own on the common base." if parts else ".") + "</p>"]  # fmt: skip
    head = "<tr><th>part</th><th class=num>runs</th><th>changes to the base</th><th>sweep axes (their product)</th><th class=num>extra cases</th></tr>"
    rows = []
    for part in parts or [None]:
        name = part.name if part else "(all)"
        overrides = part.overrides if part else {}
        axes = part.axes if part else experiment.axes
        cases = part.cases if part else experiment.cases
        n = int((runs["part"] == name).sum()) if part and "part" in runs else len(runs)
        rows.append(
            f"<tr><td>{_e(name)}</td><td class=num>{n}</td>"
            f"<td class=mono>{_e(', '.join(f'{k}={_fmt(v)}' for k, v in overrides.items()))}</td>"
            f"<td class=mono>{'<br>'.join(_e(f'{k}: ' + ', '.join(_fmt(v) for v in vs)) for k, vs in axes.items())}</td>"
            f"<td class=num>{len(cases)}</td></tr>"
        )
    return "\n".join(lines) + f"<table>{head}{''.join(rows)}</table>"


def _provenance(manifest: dict) -> str:
    if not manifest:
        return '<p class="muted">No manifest.json in this folder.</p>'
    platform = manifest.get("platform", {})
    rows = [
        ("experiment", manifest.get("experiment")),
        ("gradlab version", manifest.get("gradlab_version")),
        ("git commit", manifest.get("git_commit")),
        ("executor", manifest.get("executor")),
        ("started", manifest.get("started")),
        ("finished", manifest.get("finished")),
        ("wall time", f"{manifest['wall_s']} s" if "wall_s" in manifest else None),
        ("runs", ", ".join(f"{k} {v}" for k, v in manifest.get("runs", {}).items())),
        ("python", platform.get("python")),
        (
            "platform",
            f"{platform.get('system', '')} {platform.get('machine', '')}, {platform.get('cpus', '?')} CPUs"
            if platform
            else None,
        ),
        ("packages", ", ".join(f"{k} {v}" for k, v in manifest.get("packages", {}).items())),
        ("report written", datetime.now(UTC).isoformat(timespec="seconds")),
    ]
    table = (
        "<table>"
        + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows if v not in (None, ""))
        + "</table>"
    )
    return table + "<h3>manifest.json</h3>" + f"<pre>{_e(json.dumps(manifest, indent=1))}</pre>"


# ---- helpers ----------------------------------------------------------------------------------


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, or (0, 0) when data is not a PNG."""
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return 0, 0
    return struct.unpack(">II", data[16:24])


def _png_bytes(name: str, stem: str, paths: list[Path], tables: dict[str, pd.DataFrame]) -> bytes | None:
    """The file's PNG: the one draw_all wrote, else figure `name` drawn again in memory and its file
    `stem` taken (when PNG was not a format)."""
    for path in paths:
        if Path(path).suffix == ".png" and Path(path).is_file():
            data = Path(path).read_bytes()
            return data if data.startswith(PNG_SIGNATURE) else None
    drawn, _ = drawing.render(name, tables)
    if drawn is None:
        return None
    from gradlab.plots.style import close  # pyplot is never imported for gradlab's figures

    data = None
    for d in drawn:
        if split.file_name(name, d.suffix) == stem:
            buffer = io.BytesIO()
            d.fig.savefig(buffer, format="png", dpi=200)
            data = buffer.getvalue()
        close(d.fig)
    return data


def _has_parts(runs: pd.DataFrame) -> bool:
    return "part" in runs and runs["part"].astype(str).str.len().gt(0).any()


def _varying_columns(runs: pd.DataFrame) -> dict[str, list[str]]:
    """Per part: the fields whose values differ between that part's runs (what tells them apart; a field
    that does not apply to a run is not a difference), the results folder too when there are several."""
    columns = [*config_fields(runs), *([split.FOLDER] if split.FOLDER in runs else [])]
    groups = runs.groupby("part", sort=False) if "part" in runs else [("", runs)]
    out = {}
    for part, frame in groups:
        moving = set(split.varying(frame))
        out[part] = [c for c in columns if c in moving]
    return out


def _irrelevant(row: dict[str, Any]) -> set[str]:
    """The columns that do not apply to this run (e.g. the threshold without clipping, a ReLU's slope)."""
    from gradlab.schema import IRRELEVANT, column

    out = set()
    for key, by_value in IRRELEVANT.items():
        out.update(column(k) for k in by_value.get(row.get(column(key)), ()))
    return out


def _ordered_counts(series: pd.Series, order: tuple[str, ...]) -> list[tuple[str, int]]:
    """(value, count) for the values present: those of `order` first, in that order, then the rest."""
    counts = series.fillna("").astype(str).value_counts()
    known = [(v, int(counts[v])) for v in order if v in counts]
    return known + [(v, int(n)) for v, n in counts.items() if v not in order]


def _experiment(path: Path):
    from gradlab.sweep import load

    try:
        return load(path)
    except Exception:  # noqa: BLE001 - a config.toml that no longer loads: the report shows its text
        return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)
