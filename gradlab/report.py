"""The HTML report of a results folder: one self-contained file (figures embedded as base64 PNG,
inline CSS, no script, nothing fetched from the network) that reads well on screen and printed.

Sections, each linked from a navigation bar that stays in view: what ran (runs by status and diagnosis,
per part, and what each part's runs share and what varies), the figures with their captions (how to read
each, then what the data say: the runs drawn, what they share, what varies and how it is drawn apart, the
measured numbers beside the theory's, and what was left out and why; the figures skipped, with why), the
diagnosis (per label, most alarming first, a foldable section with its count; in it, per part, one row
per run: the fields that tell the part's runs apart, then the sentence), the config and its grid, and
provenance (manifest.json, once). Figures are shown as wide as the page allows up to ZOOM times their
printed size, and a click shows one at full size (a CSS :target overlay; Back or "close" returns). Every
text about the results is written from the tables; the only hand-written texts are the experiment's and
its parts' descriptions from its own config. Any runs-table column but run_id may be missing (a torch
watcher's folder has no grid): its section then says so or leaves it out.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import struct
from collections.abc import Sequence
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
FOLDED = ("healthy",)  # labels whose runs start folded away, however few, when another label is present
FOLD_OVER = 20  # any label with more runs than this starts folded too (its summary keeps the counts)
CAPTION_MARKS = ("Drawn: ", "Left out: ")  # a caption's parts (gradlab.plots.split.draw_files) that start a line
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SCREEN_DPI = 96  # CSS pixels per inch
INCH = 0.0254  # metres: a PNG's pHYs chunk gives its resolution in pixels per metre
ZOOM = 1.25  # a figure is shown at most this many times its printed size (9 pt text at ~15 CSS px)

CSS = """
html { scroll-padding-top: 3.4em; }
body { font: 15px/1.45 Georgia, "Times New Roman", serif; color: #111; background: #fff; margin: 0; }
main { padding: 0 2em 3em; }
nav.bar { position: sticky; top: 0; z-index: 10; background: #fff; border-bottom: 1px solid #bbb;
          box-shadow: 0 1px 4px rgba(0,0,0,0.08); padding: 0.45em 2em; display: flex; gap: 1.3em;
          align-items: baseline; white-space: nowrap; overflow-x: auto;
          font: 14px/1.35 system-ui, Helvetica, Arial, sans-serif; }
nav.bar a { color: #124a7a; text-decoration: none; }
nav.bar a:hover { text-decoration: underline; }
nav.bar .title { font-weight: bold; margin-right: 0.6em; }
nav.bar .labels { font-size: 0.92em; }
nav.bar .labels a { margin-right: 0.7em; }
p, ul, figcaption, pre.config { max-width: 64em; }
h1 { font-size: 1.6em; margin: 0.7em 0 0.2em; }
h2 { font-size: 1.3em; border-bottom: 1px solid #999; margin-top: 2em; }
h3 { font-size: 1.05em; margin-bottom: 0.3em; }
h4 { font-size: 0.98em; margin: 1em 0 0.2em; }
h4 .muted { font-weight: normal; font-size: 0.92em; }
p.lead { color: #333; margin-top: 0; }
p.contents { font-size: 0.92em; }
p.contents a { margin-right: 0.9em; white-space: nowrap; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.88em; }
th, td { border: 1px solid #bbb; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
th { background: #eee; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: bold; }
tr.fail td { background: #fbeaea; }
td.sentence { min-width: 24em; max-width: 60em; }
td.na { color: #999; }
.nowrap { white-space: nowrap; }
figure { margin: 1.4em 0 2.4em; page-break-inside: avoid; break-inside: avoid; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid #ddd; }
.zoom a.open { display: block; width: fit-content; max-width: 100%; cursor: zoom-in; }
.zoom a.close { display: none; }
.zoom:target { position: fixed; inset: 0; z-index: 20; margin: 0; padding: 2.6em 1em 1em; overflow: auto;
               background: #fff; }
.zoom:target a.open { max-width: none; cursor: default; outline: none; }
.zoom:target img { width: auto !important; max-width: none; border: 0; }
.zoom:target a.close { display: block; position: fixed; top: 0.5em; right: 1.5em; z-index: 21;
                       font: 14px system-ui, Helvetica, Arial, sans-serif; background: #fff; color: #124a7a;
                       border: 1px solid #888; border-radius: 3px; padding: 0.2em 0.7em; text-decoration: none; }
figcaption { font-size: 0.92em; margin-top: 0.4em; }
figcaption b { font-family: monospace; }
figcaption .notes { color: #7a3d00; }
pre { background: #f6f6f6; border: 1px solid #ddd; padding: 0.6em; font-size: 0.8em; overflow-x: auto;
      white-space: pre-wrap; }
code, td.mono { font-family: monospace; font-size: 0.95em; }
details.diag { margin: 0.9em 0; border-left: 4px solid #bbb; padding: 0.1em 0 0.1em 0.9em; }
details.diag > summary { cursor: pointer; }
details > summary h3 { display: inline; margin: 0; }
details.diag > summary .by-part { color: #555; font-size: 0.9em; margin-left: 0.7em; }
details.diag > summary .rule { color: #444; font-size: 0.9em; margin-left: 0.5em; }
details.manifest > summary, details.config > summary { cursor: pointer; }
.label-diverged, .label-exploding, nav.bar a.label-diverged, nav.bar a.label-exploding { color: #a33; }
.label-dying, nav.bar a.label-dying { color: #7a3d6b; }
.label-vanishing, nav.bar a.label-vanishing { color: #1f5f8f; }
.label-healthy, nav.bar a.label-healthy { color: #2d6b2d; }
.label-stalled, nav.bar a.label-stalled { color: #8a6d00; }
details[data-label=diverged], details[data-label=exploding] { border-left-color: #a33; }
details[data-label=dying] { border-left-color: #7a3d6b; }
details[data-label=vanishing] { border-left-color: #1f5f8f; }
details[data-label=healthy] { border-left-color: #2d6b2d; }
details[data-label=stalled] { border-left-color: #8a6d00; }
.muted { color: #666; }
@media print {
  body { font-size: 11pt; }
  main { padding: 0; }
  nav.bar, .zoom a.close { display: none; }
  details::details-content { content-visibility: visible; }  /* folded sections are printed open */
  h2 { page-break-after: avoid; break-after: avoid; }
  pre { white-space: pre-wrap; }
}
"""


def write(
    results_dir: str | Path,
    tables: dict[str, pd.DataFrame] | None = None,
    drawn: tuple[dict[str, list[Path]], dict[str, str]] | None = None,
    workers: int | None = 1,
) -> Path:
    """Write results_dir/report.html (to a temporary name, then renamed) and return its path.

    `tables` default to the folder's consolidated tables; `drawn` is draw_all's Drawing (or its
    (written, skipped)), and when not given the figures are drawn now (into results_dir/figures/, PNG and
    PDF, on `workers` processes: draw_all's). A Drawing's captions and notes are the ones shown; with
    (written, skipped) alone each figure gets its module's CAPTION."""
    from gradlab.sweep import load_results

    root = Path(results_dir)
    if tables is None:
        tables = load_results(root)
    if drawn is None:
        drawn = drawing.draw_all(tables, root, workers=workers)
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
    figures = _figures(tables, written, skipped, captions or {}, notes or {}, stems or {}) + _own_figures(root)
    claims = _claims(root / "claims.csv")

    body = [
        f"<h1>gradlab report: {_e(name)}</h1>",
        f'<p class="lead">{_e(description)}</p>' if description else "",
        f'<p class="lead">{_headline(runs, manifest, written)}</p>',
        '<h2 id="runs">Runs by status and diagnosis</h2>',
        _runs_table(runs),
        _parts(runs, experiment),
        _failed(runs),
        claims,
        '<h2 id="figures">Figures</h2>',
        figures,
        '<h2 id="diagnosis">Diagnosis</h2>',
        _rules(runs),
        _diagnoses(runs),
        '<h2 id="config">Config and grid</h2>',
        _grid(runs, experiment),
        _config_text(config_text),
        '<h2 id="provenance">Provenance</h2>',
        _provenance(manifest),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>gradlab report: {_e(name)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + _nav(name, runs, figures, bool(claims))
        + "\n<main>\n"
        + "\n".join(part for part in body if part)
        + "\n</main>\n</body>\n</html>\n"
    )


# ---- sections ---------------------------------------------------------------------------------


def _nav(name: str, runs: pd.DataFrame, figures: str, claims: bool = False) -> str:
    """The bar that stays at the top of the window: every section (the claims when there are some), the
    figure count, each label's count."""
    n_figures = figures.count("<figure ")
    links = [("runs", f"Runs ({len(runs)})"), *([("claims", "Claims")] if claims else []),
             ("figures", f"Figures ({n_figures})"), ("diagnosis", "Diagnosis"), ("config", "Config and grid"),
             ("provenance", "Provenance")]  # fmt: skip
    labels = "".join(
        f'<a class="label-{_e(d)}" href="#{_diag_id(d)}">{_e(d or "no diagnosis")} {n}</a>' for d, n in _labels(runs)
    )
    return (
        f'<nav class="bar"><span class="title">gradlab report: {_e(name)}</span>'
        + "".join(f'<a href="#{key}">{_e(text)}</a>' for key, text in links)
        + (f'<span class="labels">{labels}</span>' if labels else "")
        + "</nav>"
    )


def _headline(runs: pd.DataFrame, manifest: dict, written: dict) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in _ordered_counts(runs.get("status", pd.Series(dtype=str)), STATUSES))
    files = sum(len({Path(p).stem for p in paths}) for paths in written.values())
    figures = f"{len(written)} of {len(NAMES)} figures" + (f" in {files} files" if files > len(written) else "")
    bits = [_e(f"{len(runs)} run{'s' if len(runs) != 1 else ''} ({counts or 'none'})"), _e(figures)]
    if "wall_s" in manifest:
        resumed = int(manifest.get("runs", {}).get("skipped_as_finished", 0) or 0)
        note = f" ({resumed} runs were already finished)" if resumed else ""
        bits.append(_e(f"the last gradlab run took {float(manifest['wall_s']):.1f} s{note}"))
    if manifest.get("finished"):  # the timestamp is never broken at its hyphens
        bits.append(f'finished <span class="nowrap">{_e(manifest["finished"])}</span>')
    return "; ".join(bits) + "."



def _runs_table(runs: pd.DataFrame) -> str:
    """One row per part (and a total): runs, then counts by status, then counts by diagnosis."""
    if not len(runs):
        return '<p class="muted">No runs.</p>'
    statuses = [s for s, _ in _ordered_counts(runs["status"], STATUSES)] if "status" in runs else []
    labels = [d for d, _ in _labels(runs)]
    groups = [(str(p), g) for p, g in runs.groupby("part", sort=False)] if _has_parts(runs) else []
    top = [("", ""), ("", "")]
    top += [("by status", f'colspan="{len(statuses)}"')] if statuses else []
    top += [("by diagnosis", f'colspan="{len(labels)}"')] if labels else []
    head = [("part", ""), ("runs", "class=num")]
    head += [(_e(s), "class=num") for s in statuses]
    head += [(_e(d or "no diagnosis"), f'class="num label-{_e(d)}"') for d in labels]

    def row(frame: pd.DataFrame) -> list:
        cells = [(str(len(frame)), "class=num")]
        cells += [(str(int((frame["status"] == s).sum())), "class=num") for s in statuses]
        cells += [(str(int((_diagnosis(frame) == d).sum())), "class=num") for d in labels]
        return cells

    rows = [[_e(p), *row(g)] for p, g in groups] + [["all", *row(runs)]]
    return _table([top, head] if len(top) > 2 else [head], rows, ["" for _ in groups] + ["class=total"])


def _failed(runs: pd.DataFrame) -> str:
    if "status" not in runs or not len(runs):
        return ""
    failed = runs[runs["status"] == "failed"]
    if not len(failed):
        return ""
    items = "".join(f"<li><code>{_e(r.get('run_id'))}</code>: {_e(_text(r.get('error')))}</li>"
                    for r in failed.to_dict("records"))  # fmt: skip
    return f"<h3>Failed runs</h3><ul>{items}</ul>"


def _claims(path: Path) -> str:
    """A reproduction's claims.csv as a section: how many pass, then one row per claim (its columns as the
    file has them, but `value`, the measured number unrounded), a failing claim's row marked."""
    try:
        claims = pd.read_csv(path, keep_default_na=False)
    except (OSError, ValueError):
        return ""
    shown = [c for c in claims.columns if c != "value"]
    passed = claims["pass"].astype(str).str.lower().eq("true") if "pass" in claims else None
    rows = [[(_e(_text(v)), "class=num" if c in ("expected", "measured") else "") for c, v in zip(shown, row)]
            for row in claims[shown].itertuples(index=False)]  # fmt: skip
    marks = ["" if passed is None or passed.iloc[i] else "class=fail" for i in range(len(claims))]
    count = f"{int(passed.sum())} of {len(claims)} claims pass" if passed is not None else f"{len(claims)} claims"
    return (f'<h2 id="claims">Claims</h2><p>{count} (claims.csv, written by gradlab reproduce; each claim\'s source'
            " is where the paper makes it).</p>" + _table([[(_e(c), "") for c in shown]], rows, marks))  # fmt: skip


def _parts(runs: pd.DataFrame, experiment) -> str:
    """Per part (or for all runs): its description from the config when it has one, what its runs share
    and what varies among them, both written from the runs table."""
    if not len(runs):
        return ""
    described = {p.name: getattr(p, "description", "") for p in (experiment.parts if experiment else [])}
    groups = [(str(p), g) for p, g in runs.groupby("part", sort=False)] if _has_parts(runs) else [("all", runs)]
    rows, ids = [], []
    for name, frame in groups:
        varies = []
        for f in split.varying(frame):
            if f in (split.PART, "run_id"):
                continue
            n = len([v for v in split.values_of(frame, f) if v is not split.NA])
            varies.append(f"{f}: {split.values_text(frame, f)}" + (f" ({n})" if n > 8 else ""))
        text = described.get(name, "")
        shared = _e(split.shared(frame, skip=(split.PART,)))
        shared += f'<br><span class="muted">{_e(text)}</span>' if text else ""
        rows.append([_e(name), shared, ("<br>".join(_e(v) for v in varies) or "nothing", "class=mono")])
        ids.append(f'id="{_part_id(name)}"')
    head = [("part", ""), ("shared by its runs", ""), ("varies", "")]
    return "<h3>What the runs share and what varies</h3>" + _table([head], rows, ids)


def _rules(runs: pd.DataFrame) -> str:
    """The diagnosis section's opening: how a label is given, how the runs are told apart, what is folded."""
    if not _labels(runs):
        return ""
    folded = ", ".join(FOLDED)
    return ("<p>Each run gets one label, the first rule that applies, most alarming first; each heading says what"
            " its label means, and each run's sentence gives the numbers. Within a label the runs of a part are told"
            " apart by the fields that vary among that part's runs (n/a: the field does not apply to the run)."
            f" {folded.capitalize()} runs (when there are others) and any label of more than {FOLD_OVER} runs start"
            " folded: click a heading"
            " to open or close it.</p>")  # fmt: skip


def _figures(
    tables: dict[str, pd.DataFrame],
    written: dict[str, list[Path]],
    skipped: dict[str, str],
    captions: dict[str, str],
    notes: dict[str, list[str]],
    stems: dict[str, list[str]],
) -> str:
    """Each figure's file embedded (shown up to ZOOM times its printed size, full size on a click) with its
    caption, after a line of links to them; then the figures not drawn, with why."""
    out = []
    for name in (n for n in NAMES if n in written):
        files = stems.get(name) or list(dict.fromkeys(Path(p).stem for p in written[name]))
        for stem in files:
            paths = [p for p in written[name] if Path(p).stem == stem]
            png = _png_bytes(name, stem, paths, tables)
            if png is None:
                skipped = {**skipped, stem: "drawn, but no PNG could be read for the report"}
                continue
            cap = captions.get(stem) or drawing.caption(name)
            left = "" if stem in captions or not notes.get(name) else (
                '<br><span class="notes">Left out: ' + _e("; ".join(notes[name])) + ".</span>")
            out.append((stem, _figure(stem, png, cap, left)))
    parts = []
    if out:
        links = " ".join(f'<a href="#{_fig_id(s)}">{_e(s)}</a>' for s, _ in out)
        hint = 'Click a figure to see it at full size; Back or "close" returns.'
        parts.append(f'<p class="contents">{links}<br><span class="muted">{hint}</span></p>')
        parts += [text for _, text in out]
    else:
        parts.append('<p class="muted">No figure could be drawn from these results.</p>')
    not_drawn = [n for n in [*NAMES, *(k for k in skipped if k not in NAMES)] if n in skipped]
    if not_drawn:
        items = "".join(f"<li><b><code>{_e(n)}</code></b>: {_e(skipped[n])}</li>" for n in not_drawn)
        parts.append(f"<h3>Figures not drawn</h3><ul>{items}</ul>")
    return "\n".join(parts)


def _figure(stem: str, png: bytes, cap: str, left: str) -> str:
    """One <figure>: the PNG as wide as the page allows up to ZOOM x its printed size (CSS width = ZOOM x
    width px x SCREEN_DPI / its dpi; with no dpi in the file, as wide as the page allows, never wider than
    its pixels); a click targets its .zoom box, which CSS turns into a full-size overlay."""
    width, _ = png_size(png)
    dpi = png_dpi(png)
    style = f' style="width:{round(width * ZOOM * SCREEN_DPI / dpi)}px"' if width and dpi else ""
    data = base64.b64encode(png).decode("ascii")
    text = _e(cap)
    for mark in CAPTION_MARKS:  # what the data say, each on its own line after the reading guide
        text = text.replace(f" {mark}", f"<br>{mark}", 1)
    return (
        f'<figure id="{_fig_id(stem)}"><div class="zoom" id="{_zoom_id(stem)}">'
        f'<a class="open" href="#{_zoom_id(stem)}" title="full size">'
        f'<img src="data:image/png;base64,{data}" alt="figure {_e(stem)}"{style}></a>'
        f'<a class="close" href="#{_fig_id(stem)}">close &times;</a></div>'
        f"<figcaption><b>{_e(stem)}</b>{': ' + text if cap else ''}{left}</figcaption></figure>"
    )


def _own_figures(root: Path) -> str:
    """The PNGs in root/figures that are none of gradlab plot's figures (a reproduction's own, each with its
    caption drawn in), embedded like the others."""
    paths = sorted(p for p in (root / "figures").glob("*.png") if split.figure_of(p.stem) not in NAMES)
    shown = []
    for path in paths:
        data = path.read_bytes()
        if data.startswith(PNG_SIGNATURE):
            shown.append(_figure(path.stem, data, "", ""))
    if not shown:
        return ""
    intro = "The other PNG files in figures/, as the reproduction drew them (each caption is in its figure)."
    return f'\n<h3 id="own-figures">Figures of the reproduction</h3><p class="muted">{intro}</p>\n' + "\n".join(shown)


def _diagnoses(runs: pd.DataFrame) -> str:
    """Per label (most alarming first) a foldable section, headed by its count, its meaning and its runs
    per part; in it, per part, one row per run: its id, the fields that vary among the part's runs, the
    sentence."""
    if not _labels(runs):
        return '<p class="muted">No diagnosis in these results.</p>'
    varying = _varying_columns(runs)
    values = split.applicable(runs, sorted({c for cols in varying.values() for c in cols}))
    part_of = runs["part"].fillna("").astype(str) if _has_parts(runs) else pd.Series("", index=runs.index)
    out = []
    for label, n in _labels(runs):
        rows = runs[_diagnosis(runs) == label]
        groups = [(p, rows[part_of[rows.index] == p]) for p in pd.unique(part_of)]
        groups = [(p, g) for p, g in groups if len(g)]
        by_part = " &middot; ".join(f"{_e(p)} {len(g)}" for p, g in groups if p)
        opened = n <= FOLD_OVER and (label not in FOLDED or len(_labels(runs)) == 1)
        title = f"{_e(label or 'no diagnosis (failed runs)')}: {n} run{'s' if n != 1 else ''}"
        out.append(
            f'<details class="diag" data-label="{_e(label)}" id="{_diag_id(label)}"{" open" if opened else ""}>'
            f'<summary><h3 class="label-{_e(label)}">{title}</h3>'
            + (f'<span class="rule">({RULES[label]})</span>' if label in RULES else "")
            + (f'<span class="by-part">by part: {by_part}</span>' if by_part else "")
            + "</summary>"
            + "".join(_diagnosis_table(p, g, varying.get(p, []), values) for p, g in groups)
            + "</details>"
        )
    return "\n".join(out)


def _diagnosis_table(part: str, rows: pd.DataFrame, fields: list[str], values: pd.DataFrame) -> str:
    """One part's runs of one label, sorted by their fields' values (NA last), under a heading with what
    they share: run id, the fields (values: split.applicable's, NA where a field does not apply), the
    sentence (or the error of a failed run)."""
    ids = rows["run_id"].astype(str) if "run_id" in rows else pd.Series(rows.index.astype(str), index=rows.index)
    order = sorted(rows.index, key=lambda i: ([split.sort_key(values.at[i, f]) for f in fields], ids[i]))
    head = [("run", ""), *((_e(f), "") for f in fields), ("sentence", "")]
    body = []
    for i in order:
        cells = [(_e(ids[i]), "class=mono")]
        for f in fields:
            value = values.at[i, f]
            cells.append((_e(split.fmt(value)), 'class="mono na"' if value is split.NA else "class=mono"))
        sentence = _text(rows.at[i, "diagnosis_text"]) if "diagnosis_text" in rows else ""
        error = _text(rows.at[i, "error"]) if "error" in rows else ""
        body.append([*cells, (_e(sentence or error), "class=sentence")])
    if not part:
        return _table([head], body)
    shared = _e(split.shared(rows, skip=(split.PART, *fields)))
    n = len(rows)
    return (f'<h4>part <a href="#{_part_id(part)}">{_e(part)}</a>: {n} run{"s" if n != 1 else ""}'
            f' <span class="muted">(shared: {shared})</span></h4>' + _table([head], body))  # fmt: skip


def _grid(runs: pd.DataFrame, experiment) -> str:
    """The grid: its size, and per part (or for the whole experiment) the axes, cases and changes."""
    if experiment is None:
        return f"<p>{len(runs)} runs (config.toml could not be read back).</p>"
    try:
        size = len(experiment.grid())
    except Exception:  # noqa: BLE001 - the report shows what it can
        size = len(runs)
    parts = experiment.parts or []
    in_parts = f" in {len(parts)} parts, each a grid of its own on the common base." if parts else "."
    lines = [f"<p>The grid has <b>{size}</b> run{'s' if size != 1 else ''}{in_parts}</p>"]
    head = [("part", ""), ("runs", "class=num"), ("changes to the base", ""), ("sweep axes (their product)", ""),
            ("extra cases", "class=num")]  # fmt: skip
    rows = []
    for part in parts or [None]:
        name = part.name if part else "(all)"
        overrides = part.overrides if part else {}
        axes = part.axes if part else experiment.axes
        cases = part.cases if part else experiment.cases
        n = int((runs["part"] == name).sum()) if part and "part" in runs else len(runs)
        rows.append([
            _e(name), (str(n), "class=num"),
            (_e(", ".join(f"{k}={_fmt(v)}" for k, v in overrides.items())), "class=mono"),
            ("<br>".join(_e(f"{k}: " + ", ".join(_fmt(v) for v in vs)) for k, vs in axes.items()), "class=mono"),
            (str(len(cases)), "class=num"),
        ])  # fmt: skip
    return "\n".join(lines) + _table([head], rows)


def _config_text(text: str) -> str:
    """config.toml as run, folded under a heading with its line count."""
    if not text:
        return '<p class="muted">No config.toml in this folder.</p>'
    lines = len(text.splitlines())
    return (f'<details class="config" id="config-toml"><summary><h3>config.toml, the experiment as run ({lines} lines)'
            f'</h3></summary><pre class="config">{_e(text)}</pre></details>')  # fmt: skip


def _provenance(manifest: dict) -> str:
    """manifest.json once, as a table: one row per key, a small dict on one line, anything larger folded
    (opened, its JSON); then when the report was written."""
    if not manifest:
        return '<p class="muted">No manifest.json in this folder.</p>'
    rows = [[_e(key), _manifest_value(value)] for key, value in manifest.items()]
    rows.append(["report written", _e(datetime.now(UTC).isoformat(timespec="seconds"))])
    return '<p class="muted">manifest.json, key by key.</p>' + _table([], rows, header_column=True)


def _manifest_value(value: Any) -> str:
    """A manifest value as HTML: a scalar as text, a dict of scalars as 'key value, ...', anything else
    folded under a one-line summary."""
    def scalar(v: Any) -> bool:
        return v is None or isinstance(v, (str, int, float, bool))

    if scalar(value):
        return _e(_fmt(value) if isinstance(value, (bool, float)) or value is None else value)
    if isinstance(value, dict) and all(scalar(v) for v in value.values()):
        return _e(", ".join(f"{k} {_fmt(v)}" for k, v in value.items()))
    if isinstance(value, dict):
        brief = ", ".join(f"{k} {_fmt(v)}" if scalar(v) else f"{k} ({_items(v)})" for k, v in value.items())
    else:
        brief = _items(value)
    return (f'<details class="manifest"><summary>{_e(brief)}</summary>'
            f"<pre>{_e(json.dumps(value, indent=1, default=str))}</pre></details>")  # fmt: skip


def _items(value: Any) -> str:
    return f"{len(value)} items" if isinstance(value, (list, tuple, dict)) else type(value).__name__


# ---- helpers ----------------------------------------------------------------------------------

Cell = str | tuple[str, str]  # a cell's HTML, or (its HTML, its attributes such as 'class=num')


def _table(head: Sequence[Sequence[Cell]], rows: Sequence[Sequence[Cell]], row_attrs: Sequence[str] = (),
           header_column: bool = False) -> str:  # fmt: skip
    """A <table>: header rows of <th>, then rows of <td> (header_column: each row's first cell a <th>),
    row i with row_attrs[i]. Cells are HTML already escaped."""

    def cells(row: Sequence[Cell], tag: str) -> str:
        out = []
        for j, cell in enumerate(row):
            text, attrs = cell if isinstance(cell, tuple) else (cell, "")
            t = "th" if header_column and j == 0 else tag
            out.append(f"<{t}{' ' + attrs if attrs else ''}>{text}</{t}>")
        return "".join(out)

    attrs = [*row_attrs, *[""] * (len(rows) - len(row_attrs))]
    return (
        "<table>"
        + "".join(f"<tr>{cells(r, 'th')}</tr>" for r in head)
        + "".join(f"<tr{' ' + a if a else ''}>{cells(r, 'td')}</tr>" for r, a in zip(rows, attrs))
        + "</table>"
    )


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, or (0, 0) when data is not a PNG."""
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return 0, 0
    return struct.unpack(">II", data[16:24])


def png_dpi(data: bytes) -> float | None:
    """The resolution (dots per inch) in a PNG's pHYs chunk (pixels per metre x 0.0254), or None when the
    file has none before its image data, states no unit, or is not a PNG."""
    if not data.startswith(PNG_SIGNATURE):
        return None
    at = len(PNG_SIGNATURE)
    while at + 8 <= len(data):
        (length,), kind = struct.unpack(">I", data[at : at + 4]), data[at + 4 : at + 8]
        if kind == b"pHYs" and length == 9 and at + 17 <= len(data):
            x_per_metre, _, unit = struct.unpack(">IIB", data[at + 8 : at + 17])
            return x_per_metre * INCH if unit == 1 and x_per_metre else None
        if kind in (b"IDAT", b"IEND"):
            return None
        at += 12 + length  # length, type, data, CRC
    return None


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


def _diagnosis(runs: pd.DataFrame) -> pd.Series:
    """The diagnosis column as text ("" where a run has none, e.g. a failed one)."""
    return runs["diagnosis"].fillna("").astype(str)


def _labels(runs: pd.DataFrame) -> list[tuple[str, int]]:
    """(label, count) of the labels present, most alarming first ([] without a diagnosis column)."""
    return _ordered_counts(runs["diagnosis"], LABELS) if "diagnosis" in runs and len(runs) else []


def _diag_id(label: str) -> str:
    return f"diag-{label or 'none'}"


def _fig_id(stem: str) -> str:
    return f"fig-{_safe_id(stem)}"


def _zoom_id(stem: str) -> str:
    return f"zoom-{_safe_id(stem)}"


def _part_id(part: str) -> str:
    return f"part-{_safe_id(part)}"


def _safe_id(text: str) -> str:
    """text as an id and a URL fragment: letters, digits and -_.= kept, anything else '-'."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_.=") else "-" for c in str(text))


def _text(value: Any) -> str:
    """A text cell's value: "" for None and NaN."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


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
