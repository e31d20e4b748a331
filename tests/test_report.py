"""The figures command, the HTML report and the tour config.

One small results folder is made once (a tiny two-part config run through `gradlab run`, which also
draws the figures and writes the report); the report is then checked as HTML (one embedded, valid PNG
per figure drawn, each opening at full size; nothing fetched from the network; every link reaching its
element and the bar linking every section; the diagnosis sentences and status counts; the manifest once;
runs tables without optional columns) and the committed tour's diagnosis is checked (grouped by label and
part, folded by size, each run's differing fields). When a Chromium is installed (required when
GRADLAB_REQUIRE_CHROMIUM=1) the report is checked in a real browser over the DevTools protocol: every
image loaded, the page not blank, each link of the bar bringing its section into view below it, a folded
section opening and a figure opening at full size.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import shutil
import subprocess
import sys
import types
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from gradlab import report
from gradlab.cli import app
from gradlab.plots import NAMES, draw, split, style
from gradlab.sweep import config, load_results
from gradlab.sweep.store import record_files

ROOT = Path(__file__).resolve().parents[1]
TOUR = ROOT / "experiments" / "tour.toml"

# Two parts named like the tour's, a handful of steps: MLPs (one collapses: ReLU, width 2, depth 6),
# an RNN and an LSTM, and an RNN that overflows at step 1 (so the statuses are not all "ok").
TINY = """
name = "tiny"
description = "a tiny two-part experiment for the report tests"
[train]
steps = 6
log_every = 3
probe_size = 32
batch = 8

[[part]]
name = "depth"
[part.model]
kind = "mlp"
width = 8
[part.task]
name = "teacher_student"
input_size = 4
[part.sweep]
depth = [2, 6]
activation = ["sigmoid", "relu"]
[[part.case]]
activation = "relu"
width = 2
depth = 6
init = "he_normal"

[[part]]
name = "recurrent"
[part.model]
width = 6
[part.task]
name = "adding"
T = 8
[part.sweep]
kind = ["rnn", "lstm"]
[[part.case]]
kind = "rnn"
activation = "identity"
recurrent_init = "mean_field"
sigma_w2 = 400.0
T = 40
lr = 0.1
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A results folder made by `gradlab run CONFIG` (serial), with its figures and report, and the output."""
    folder = tmp_path_factory.mktemp("report")
    cfg = folder / "tiny.toml"
    cfg.write_text(TINY)
    out = folder / "tiny"
    result = CliRunner().invoke(app, ["run", str(cfg), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out, result.output


class Images(HTMLParser):
    """Every <img> and every attribute that can make a browser fetch something."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.links: list[tuple[str, str, str]] = []  # (tag, attribute, value)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        for name in ("src", "href", "srcset", "data", "poster", "action", "background"):
            if attrs.get(name):
                self.links.append((tag, name, attrs[name]))


def parse(text: str) -> Images:
    parser = Images()
    parser.feed(text)
    return parser


def written_figures(out: Path) -> set[str]:
    """The stems of the PNG files in figures/ (a figure split into files has several)."""
    return {p.stem for p in (out / "figures").glob("*.png")}


def figure_names(out: Path) -> set[str]:
    """The figures drawn: <figure>.png or <figure>__<field>=<value>.png."""
    return {split.figure_of(stem) for stem in written_figures(out)}


# ---- the report as HTML -----------------------------------------------------------------------


def test_run_draws_the_figures_and_prints_the_report_path(results):
    out, output = results
    assert (out / "report.html").is_file()
    assert f"report: {out / 'report.html'}" in output
    drawn = figure_names(out)
    assert drawn, "the tiny results draw no figure at all"
    assert f"figures: {len(drawn)} of {len(NAMES)} drawn" in output
    summary = pd.read_csv(out / "summary.csv")
    runs = load_results(out)["runs"]
    assert list(summary["run_id"]) == list(runs["run_id"]) and list(summary["status"]) == list(runs["status"])
    for name in set(NAMES) - drawn:  # every figure not drawn is named with a reason
        assert re.search(rf"skipped {name}: \S", output), f"{name} neither drawn nor reported skipped:\n{output}"


def test_report_embeds_one_valid_png_per_figure_drawn(results):
    out, _ = results
    page = parse((out / "report.html").read_text())
    drawn = written_figures(out)
    assert len(page.images) == len(drawn), f"{len(page.images)} <img> for {len(drawn)} figures drawn"
    assert {img["alt"].removeprefix("figure ") for img in page.images} == drawn
    for img in page.images:
        src = img["src"]
        assert src.startswith("data:image/png;base64,"), src[:60]
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{img['alt']}: not a PNG"
        pixels = matplotlib.image.imread(io.BytesIO(data), format="png")
        assert pixels.ndim == 3 and pixels.shape[0] > 0 and pixels.shape[1] > 0, pixels.shape
        assert report.png_size(data) == (pixels.shape[1], pixels.shape[0])
        name = img["alt"].removeprefix("figure ")
        assert data == (out / "figures" / f"{name}.png").read_bytes(), (
            f"{name}: the embedded PNG is not the figure's file"
        )


def test_report_fetches_nothing_from_the_network(results):
    out, _ = results
    text = (out / "report.html").read_text()
    page = parse(text)
    remote = [(tag, attr, value[:80]) for tag, attr, value in page.links if not value.startswith(("data:", "#"))]
    assert not remote, f"attributes that would load something: {remote}"
    assert not re.search(r"<script|<link|<iframe|<object|<embed|@import|url\(", text, re.IGNORECASE), (
        "external resource machinery in the report"
    )
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.IGNORECASE)


def test_report_holds_the_diagnosis_sentences_and_status_counts(results):
    out, _ = results
    text = (out / "report.html").read_text()
    runs = load_results(out)["runs"]
    assert set(runs["status"]) >= {"ok", "diverged"}, "the tiny experiment should have ok and diverged runs"
    for sentence in runs["diagnosis_text"].unique():
        assert sentence and html.escape(sentence) in text, f"diagnosis sentence missing: {sentence!r}"
    for label, n in runs["diagnosis"].value_counts().items():  # one heading per label, with its count
        assert re.search(rf">{label}: {n} runs?</h3>", text), f"no heading for {n} {label} run(s)"
    # the runs table: its header names the statuses, its "all" row gives their counts
    table = text[text.index('id="runs"') : text.index('id="figures"')]
    headers = re.findall(r"<th[^>]*>([^<]*)</th>", table)
    total = re.search(r"<tr class=total>(.*?)</tr>", table).group(1)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", total)
    columns = headers[headers.index("part") :]
    k = int(re.search(r'colspan="(\d+)">by status', table).group(1))  # the status columns come first
    assert cells[:2] == ["all", str(len(runs))], f"total row {cells[:2]}, expected all, {len(runs)}"
    row = dict(zip(columns[2 : 2 + k], cells[2 : 2 + k]))
    assert row == {status: str(n) for status, n in runs["status"].value_counts().items()}
    for part, n in runs["part"].value_counts().items():
        assert re.search(rf"<tr><td>{part}</td><td class=num>{n}</td>", table), (
            f"part {part}: {n} runs not in the table"
        )


def test_report_shows_config_grid_and_provenance(results):
    out, _ = results
    text = (out / "report.html").read_text()
    runs = load_results(out)["runs"]
    assert html.escape((out / "config.toml").read_text()) in text
    assert f"The grid has <b>{len(runs)}</b> runs in 2 parts" in text
    facts = json.loads((out / "manifest.json").read_text())
    assert facts["git_commit"] in text and facts["gradlab_version"] in text and facts["started"] in text


def test_report_is_written_atomically(results, monkeypatch):
    out, _ = results
    before = (out / "report.html").read_bytes()

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(report.os, "fsync", broken_fsync)
    tables = load_results(out)
    with pytest.raises(OSError, match="disk full"):
        report.write(out, tables, ({}, {}))
    assert (out / "report.html").read_bytes() == before, "a failed write changed the report"
    assert not [p.name for p in out.iterdir() if p.name.startswith(".report.html")], "temporary file left behind"


def test_report_on_results_without_figures_says_why(results, tmp_path):
    out, _ = results
    tables = load_results(out)
    skipped = {name: f"reason for {name}" for name in NAMES}
    text = report.build(out, tables, {}, skipped)
    assert "<img" not in text
    for name in NAMES:
        assert f"<b><code>{name}</code></b>: reason for {name}" in text


class Node:
    """An element of a parsed page: tag, attributes, children (Nodes and text)."""

    def __init__(self, tag: str, attrs: dict[str, str | None]) -> None:
        self.tag, self.attrs, self.children = tag, attrs, []

    def all(self, tag: str | None = None, **attrs: str) -> list[Node]:
        """Every descendant with this tag (any when None) and these attribute values (class_ for class)."""
        want = {k.rstrip("_"): v for k, v in attrs.items()}
        out = []
        for child in self.children:
            if isinstance(child, Node):
                if (tag is None or child.tag == tag) and all(child.attrs.get(k) == v for k, v in want.items()):
                    out.append(child)
                out += child.all(tag, **attrs)
        return out

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)


class Tree(HTMLParser):
    """The page as a tree of Nodes (void elements have no children; an end tag closes up to its element)."""

    VOID = {"img", "br", "meta", "hr", "input", "link"}

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def page_of(text: str) -> Node:
    return Tree(text).root


def figures_on_disk(out: Path) -> dict[str, list[Path]]:
    """draw_all's `written` for the PNG files already in out/figures (figure -> its files, by stem)."""
    written: dict[str, list[Path]] = {}
    for path in sorted((out / "figures").glob("*.png")):
        written.setdefault(split.figure_of(path.stem), []).append(path)
    return written


def test_every_link_reaches_an_element_and_the_bar_links_every_section(results):
    out, _ = results
    text = (out / "report.html").read_text()
    page = page_of(text)
    ids = [n.attrs["id"] for n in page.all() if n.attrs.get("id")]
    assert len(ids) == len(set(ids)), f"ids used twice: {sorted(i for i in set(ids) if ids.count(i) > 1)}"
    targets = [a.attrs["href"] for a in page.all("a") if a.attrs.get("href", "").startswith("#")]
    dangling = sorted({t for t in targets if t[1:] not in ids})
    assert not dangling, f"links to no element: {dangling}"
    (bar,) = page.all("nav", class_="bar")
    linked = {a.attrs["href"][1:] for a in bar.all("a")}
    sections = {h.attrs["id"] for h in page.all("h2")}
    assert sections == {"runs", "figures", "diagnosis", "config", "provenance"}, sections
    assert sections <= linked, f"sections the bar does not link: {sorted(sections - linked)}"
    runs = load_results(out)["runs"]
    labels = {f"diag-{d}" for d in runs["diagnosis"]}
    assert labels <= linked, f"labels the bar does not link: {sorted(labels - linked)}"
    assert re.search(r"nav\.bar \{[^}]*position: sticky; top: 0", text), "the bar does not stay in view"


def test_each_figure_opens_at_full_size_from_its_own_image(results):
    out, _ = results
    page = page_of((out / "report.html").read_text())
    figures = page.all("figure")
    assert len(figures) == len(written_figures(out)) > 0
    for fig in figures:
        (img,) = fig.all("img")
        stem = img.attrs["alt"].removeprefix("figure ")
        assert fig.attrs["id"] == f"fig-{stem}"
        (box,) = fig.all("div", class_="zoom")
        (opener,) = box.all("a", class_="open")
        (closer,) = box.all("a", class_="close")
        assert opener.attrs["href"] == f"#{box.attrs['id']}", f"{stem}: the image does not open its own box"
        assert closer.attrs["href"] == f"#{fig.attrs['id']}", f"{stem}: close does not return to the figure"
        assert opener.all("img") == [img], f"{stem}: the opening link does not hold the image"
        data = base64.b64decode(img.attrs["src"].split(",", 1)[1])
        width, _ = report.png_size(data)
        css = round(width * report.ZOOM * report.SCREEN_DPI / report.png_dpi(data))
        assert img.attrs["style"] == f"width:{css}px", f"{stem}: style {img.attrs['style']!r}, expected {css}px"


def test_png_dpi_reads_the_resolution_matplotlib_saved(tmp_path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1])
    for dpi in (72, 150, 200):
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
        data = buffer.getvalue()
        # pHYs holds whole pixels per metre: the dpi comes back within 0.0254 / 2 of what was asked
        assert abs(report.png_dpi(data) - dpi) <= 0.0127 + 1e-9, f"dpi {dpi}: read {report.png_dpi(data)}"
    plt.close(fig)
    at = data.index(b"pHYs") - 4  # the chunk: length (4), type (4), data (9), CRC (4)
    bare = data[:at] + data[at + 21 :]
    assert report.png_dpi(bare) is None and report.png_size(bare) == report.png_size(data)
    figure = report._figure("bare", bare, "", "")
    assert "style=" not in figure, "a PNG without a resolution was given a width"
    assert report.png_dpi(b"not a png") is None


def test_the_manifest_is_shown_once(results):
    out, _ = results
    text = (out / "report.html").read_text()
    facts = json.loads((out / "manifest.json").read_text())
    provenance = page_of(text[text.index('id="provenance"') :])
    rows = {tr.all("th")[0].text(): tr for tr in provenance.all("tr")}
    assert list(rows)[: len(facts)] == list(facts), f"manifest keys {list(facts)}, rows {list(rows)}"
    assert len(rows) == len(facts) + 1, f"{len(rows)} rows for {len(facts)} keys and the report's time"
    for key in ("git_commit", "started"):  # ("finished" is in the headline too)
        # a run that starts and ends within one second: started is also the finished row and the headline's
        times = 3 if key == "started" and facts["started"] == facts.get("finished") else 1
        assert text.count(facts[key]) == times, f"{key} {facts[key]} appears {text.count(facts[key])} times"
    packages = rows["packages"].all("td")[0].text()
    assert packages == ", ".join(f"{k} {v}" for k, v in facts["packages"].items()), packages
    folded = [k for k, v in facts.items() if isinstance(v, (dict, list)) and not all(
        isinstance(x, (str, int, float, bool)) or x is None for x in (v.values() if isinstance(v, dict) else v))]
    for key in folded:  # a nested value is folded with its JSON, once
        (pre,) = rows[key].all("pre")
        assert json.loads(pre.text()) == facts[key], f"{key}: the folded JSON is not the manifest's"


def test_a_reproduction_s_claims_and_own_figures_are_shown(results, tmp_path):
    import matplotlib.pyplot as plt

    out, _ = results
    folder = tmp_path / "repro"
    shutil.copytree(out, folder)
    tables = load_results(folder)
    plain = page_of(report.build(folder, tables, {}, {}))
    assert not [h for h in plain.all("h2") if h.attrs.get("id") == "claims"], "claims shown without claims.csv"
    claims = pd.DataFrame({"claim": ["a holds", "b & c hold"], "source": ["Sec. 1", "eq. (2)"],
                           "expected": ["0.5", "<= 1"], "tolerance": ["1%", "-"], "measured": ["0.501", "1.2"],
                           "pass": [True, False], "value": [0.50123, 1.2]})  # fmt: skip
    claims.to_csv(folder / "claims.csv", index=False)
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [1, 0])
    fig.savefig(folder / "figures" / "own_measure.png", dpi=100)
    plt.close(fig)
    page = page_of(report.build(folder, tables, {}, {}))
    (bar,) = page.all("nav", class_="bar")
    assert "#claims" in [a.attrs["href"] for a in bar.all("a")]
    section = [t for t in page.all("table") if t.all("th") and t.all("th")[0].text() == "claim"]
    assert len(section) == 1, "no claims table"
    header, *rows = section[0].all("tr")
    assert [c.text() for c in header.all("th")] == [c for c in claims.columns if c != "value"]
    assert [[c.text() for c in r.all("td")] for r in rows] == [
        [str(v) for v in row[:-1]] for row in claims.itertuples(index=False)], "the claims rows"
    assert [r.attrs.get("class") for r in rows] == [None, "fail"], "the failing claim is not marked"
    assert "1 of 2 claims pass" in page.text()
    images = [i.attrs["alt"] for i in page.all("img")]
    assert images == ["figure own_measure"], f"embedded {images}: the reproduction's own PNG only (none drawn)"
    (img,) = page.all("img")
    assert base64.b64decode(img.attrs["src"].split(",", 1)[1]) == (folder / "figures" / "own_measure.png").read_bytes()


def tour_tables() -> dict[str, pd.DataFrame]:
    tour = ROOT / "results" / "tour"
    if not (tour / "runs.parquet").is_file():
        pytest.skip("results/tour is not in this checkout")
    return {"runs": load_results(tour)["runs"]}


def varying_fields(frame: pd.DataFrame) -> list[str]:
    """The config columns (and folder) with more than one applicable value among the frame's runs."""
    from gradlab.schema import CONFIG_COLUMNS

    table = split.applicable(frame)
    return [c for c in frame.columns if (c in CONFIG_COLUMNS and c != "part") or c == split.FOLDER
            if c in table and len(set(table[c]) - {split.NA}) > 1]  # fmt: skip


def test_the_tour_s_diagnosis_is_grouped_by_label_and_part_with_the_fields_that_differ():
    root = ROOT / "results" / "tour"
    tables = tour_tables()
    runs = tables["runs"]
    page = page_of(report.build(root, tables, {}, {}))
    sections = page.all("details", class_="diag")
    counts = runs["diagnosis"].value_counts()
    assert [d.attrs["data-label"] for d in sections] == [x for x in report.LABELS if x in counts], "label order"
    values = split.applicable(runs)
    states = set()
    for details in sections:
        label = details.attrs["data-label"]
        n = int(counts[label])
        (title,) = details.all("h3")
        assert title.text() == f"{label}: {n} run{'s' if n != 1 else ''}"
        opened = "open" in details.attrs
        expected = n <= report.FOLD_OVER and (label not in report.FOLDED or len(counts) == 1)
        assert opened == expected, f"{label} ({n} runs) open={opened}, expected {expected}"
        states.add(opened)
        mine = runs[runs["diagnosis"] == label]
        seen = []
        for heading, table in zip(details.all("h4"), details.all("table"), strict=True):
            part = heading.all("a")[0].text()
            rows = mine[mine["part"] == part]
            assert heading.text().startswith(f"part {part}: {len(rows)} run"), heading.text()
            fields = varying_fields(runs[runs["part"] == part])
            header, *body = [[c.text() for c in tr.all()] for tr in table.all("tr")]
            assert header == ["run", *fields, "sentence"], f"{label}/{part}: columns {header}, fields {fields}"
            by_id = rows.set_index("run_id")
            keys = []
            for cells in body:
                run_id, shown, sentence = cells[0], cells[1:-1], cells[-1]
                i = runs.index[runs["run_id"] == run_id][0]
                expected = [split.fmt(values.at[i, f]) for f in fields]
                assert shown == expected, f"{run_id}: fields {shown}, the runs table says {expected}"
                assert sentence == by_id.at[run_id, "diagnosis_text"], f"{run_id}: another sentence"
                keys.append([split.sort_key(values.at[i, f]) for f in fields])
                seen.append(run_id)
            assert keys == sorted(keys), f"{label}/{part}: rows not sorted by {fields}"
        assert sorted(seen) == sorted(mine["run_id"]), f"{label}: the runs shown are not the label's runs"
    assert states == {True, False}, "the tour should have both open and folded labels"


OPTIONAL = {
    "status": ["status"],
    "diagnosis": ["diagnosis", "diagnosis_text"],
    "part": ["part"],
    "config": "config",  # every config column
    "all but run_id": "all",
}


@pytest.mark.parametrize("dropped", list(OPTIONAL))
def test_report_reads_runs_tables_without_optional_columns(results, tmp_path, dropped):
    """A torch watcher's runs table has no grid: the report still renders, says what it lacks, and every
    link still reaches its element."""
    from gradlab.schema import CONFIG_COLUMNS

    out, _ = results
    tables = load_results(out)
    runs = tables["runs"]
    columns = OPTIONAL[dropped]
    if columns == "config":
        columns = [c for c in runs.columns if c in CONFIG_COLUMNS]
    elif columns == "all":
        columns = [c for c in runs.columns if c != "run_id"]
    folder = tmp_path / "bare"
    folder.mkdir()
    shutil.copy(out / "manifest.json", folder / "manifest.json")
    thin = {**tables, "runs": runs.drop(columns=columns)}
    path = report.write(folder, thin, ({}, {}))
    text = path.read_text()
    page = page_of(text)
    ids = {n.attrs["id"] for n in page.all() if n.attrs.get("id")}
    assert {a.attrs["href"][1:] for a in page.all("a") if a.attrs.get("href", "").startswith("#")} <= ids
    assert f"{len(runs)} runs" in text
    if "diagnosis" in columns:
        assert "No diagnosis in these results." in text and not page.all("details", class_="diag")
    else:
        assert len(page.all("details", class_="diag")) == runs["diagnosis"].nunique()
    if "part" in columns:
        assert not page.all("h4"), "parts shown for runs without a part"


# ---- the report in a browser ------------------------------------------------------------------


def chromium() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


class Browser:
    """Headless Chromium driven over the DevTools protocol on --remote-debugging-pipe (it reads JSON
    messages, each ended by a NUL byte, on its fd 3 and writes them on its fd 4): one page of the given
    size, where open() loads a URL, js() evaluates an expression (awaiting a promise) and screenshot()
    returns the viewport's PNG. No Python dependency beyond the standard library."""

    def __init__(self, binary: str, profile: Path, width: int = 1400, height: int = 2000, timeout: float = 120):
        to_browser, self._out = os.pipe()
        self._in, from_browser = os.pipe()

        def child() -> None:  # the pipe ends as fds 3 and 4 (via copies above 4, so neither overwrites the other)
            a, b = os.dup(to_browser), os.dup(from_browser)
            os.dup2(a, 3)
            os.dup2(b, 4)

        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={width},{height}",
                 "--remote-debugging-pipe", "about:blank"]  # fmt: skip
        self.proc = subprocess.Popen([binary, *flags], preexec_fn=child, pass_fds=(3, 4),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        os.close(to_browser)
        os.close(from_browser)
        self.timeout, self._buffer, self._id, self._events = timeout, b"", 0, []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)  # fmt: skip

    def _message(self) -> dict:
        import select
        import time

        end = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._in], [], [], max(0.0, end - time.monotonic()))
            chunk = os.read(self._in, 1 << 20) if ready else b""
            if not chunk:
                raise RuntimeError("the browser closed the pipe or did not answer in time")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, session: bool = False, **params) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._message()
            if reply.get("id") == self._id:
                assert "error" not in reply, f"{method}: {reply['error']}"
                return reply.get("result", {})
            self._events.append(reply)

    def open(self, url: str) -> None:
        self._events.clear()
        self.call("Page.navigate", session=True, url=url)
        while not any(e.get("method") == "Page.loadEventFired" for e in self._events):
            self._events.append(self._message())

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", session=True, expression=expression, awaitPromise=True,
                           returnByValue=True)  # fmt: skip
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", session=True, format="png")["data"])

    def close(self) -> None:
        try:
            self.call("Browser.close")
            self.proc.wait(timeout=30)
        except Exception:  # noqa: BLE001 - a browser that does not close is ended
            self.proc.kill()
            self.proc.wait(timeout=30)
        finally:
            os.close(self._in)
            os.close(self._out)


# In the page: click an element, wait for two frames, then report where things are.
SETTLE = "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
WHERE = """(id => {
  const el = document.getElementById(id), bar = document.querySelector('nav.bar').getBoundingClientRect();
  const box = el.getBoundingClientRect();
  return {hash: location.hash, top: box.top, height: box.height, bar_top: bar.top, bar_bottom: bar.bottom,
          window: innerHeight, scrolled: scrollY, page: document.documentElement.scrollHeight};
})"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary = chromium()
    if binary is None:
        if os.environ.get("GRADLAB_REQUIRE_CHROMIUM"):
            pytest.fail("GRADLAB_REQUIRE_CHROMIUM is set but no Chromium is installed")
        pytest.skip("no Chromium installed (the HTML checks above still run); CI installs it")
    b = Browser(binary, tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


@pytest.fixture(scope="module")
def folded_report(results, tmp_path_factory):
    """The tiny report with FOLD_OVER 1 (every label of two or more runs folded), its figures embedded."""
    out, _ = results
    old = report.FOLD_OVER
    report.FOLD_OVER = 1
    try:
        text = report.build(out, load_results(out), figures_on_disk(out), {})
    finally:
        report.FOLD_OVER = old
    path = tmp_path_factory.mktemp("folded") / "report.html"
    path.write_text(text)
    return path


def test_report_renders_in_headless_chromium(results, browser):
    out, _ = results
    n_images = len(parse((out / "report.html").read_text()).images)
    assert n_images > 0
    browser.open((out / "report.html").resolve().as_uri())
    images = browser.js("[...document.images].map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])")
    assert len(images) == n_images, f"the browser saw {len(images)} images of {n_images}"
    broken = [alt for alt, complete, w, h in images if not (complete and w > 0 and h > 0)]
    assert not broken, f"images that did not load: {broken}"
    pixels = matplotlib.image.imread(io.BytesIO(browser.screenshot()), format="png")[..., :3]
    assert pixels.shape[:2] == (2000, 1400), pixels.shape
    not_white = (pixels < 0.95).any(axis=2).mean()
    assert not_white > 0.02, f"the screenshot is blank ({not_white:.1%} of pixels not white)"
    assert pixels.std() > 0.05, "the screenshot is one flat colour"
    assert len(browser.js("document.body.innerText")) > 2000, "the page shows almost no text"


def test_every_link_of_the_bar_brings_its_section_into_view(results, browser):
    out, _ = results
    browser.open((out / "report.html").resolve().as_uri())
    links = browser.js("[...document.querySelectorAll('nav.bar a')].map(a => a.getAttribute('href'))")
    assert {"#runs", "#figures", "#diagnosis", "#config", "#provenance"} <= set(links), links
    for href in links:
        browser.js(f"document.querySelector('nav.bar a[href=\"{href}\"]').click()")
        browser.js(SETTLE)
        at = browser.js(f"{WHERE}({json.dumps(href[1:])})")
        assert at["hash"] == href, f"{href}: the page is at {at['hash']!r}"
        assert at["bar_top"] == 0, f"{href}: the bar scrolled away (its top at {at['bar_top']})"
        # the section starts just below the bar, or (near the end of the page) is at least on screen
        assert at["bar_bottom"] - 1 <= at["top"] < at["window"] - 40, f"{href}: section at {at}"
        if at["scrolled"] + at["window"] < at["page"] - 1:  # the page could scroll further: it went exactly there
            gap = at["top"] - at["bar_bottom"]
            assert gap < 40, f"{href}: the section is {gap} px below the bar"


def test_a_folded_section_opens_and_a_figure_opens_at_full_size(folded_report, browser):
    browser.open(folded_report.as_uri())
    folded = browser.js("[...document.querySelectorAll('details.diag:not([open])')].map(d => d.id)")
    assert folded, "FOLD_OVER 1 folded no label of the tiny report"
    shown = ("[...document.querySelectorAll('details:not([open])')]"
             ".map(d => d.querySelector('summary ~ *').checkVisibility())")
    browser.call("Emulation.setEmulatedMedia", session=True, media="print")
    printed = browser.js(shown)
    browser.call("Emulation.setEmulatedMedia", session=True, media="")
    assert printed and all(printed), f"printed, folded sections stay folded: {printed}"
    assert not any(browser.js(shown)), "on screen, a folded section shows its content"
    for section in (folded[0], "config-toml"):
        state = f"""(() => {{ const d = document.getElementById('{section}'), c = d.querySelector('summary ~ *');
          return [d.open, c.checkVisibility(), d.getBoundingClientRect().height,
                  d.querySelector('summary').getBoundingClientRect().height]; }})()"""
        is_open, shown, height, summary = browser.js(state)
        assert not is_open and not shown, f"{section}: not folded (open {is_open}, content shown {shown})"
        assert height < summary + 10, f"{section}: folded, {height} px high, its summary {summary} px"
        browser.js(f"document.querySelector('#{section} > summary').click()")
        browser.js(SETTLE)
        is_open, shown, opened, _ = browser.js(state)
        assert is_open and shown, f"{section}: did not open (open {is_open}, content shown {shown})"
        assert opened > height + 10, f"{section}: opened, but {opened} px high (folded {height} px)"
    boxes = browser.js("[...document.querySelectorAll('.zoom')].map(z => z.id)")
    assert boxes
    box = boxes[0]
    state = f"""(() => {{ const z = document.getElementById('{box}'), i = z.querySelector('img'),
      c = z.querySelector('a.close'), r = i.getBoundingClientRect();
      return {{position: getComputedStyle(z).position, width: r.width, natural: i.naturalWidth,
               close: getComputedStyle(c).display, hash: location.hash,
               zoom_top: z.getBoundingClientRect().top}}; }})()"""
    before = browser.js(state)
    assert before["position"] == "static" and before["close"] == "none", before
    assert before["width"] < before["natural"], f"{box}: shown at full size before the click ({before})"
    browser.js(f"document.getElementById('{box}').querySelector('a.open').click()")
    browser.js(SETTLE)
    zoomed = browser.js(state)
    assert zoomed["position"] == "fixed" and zoomed["zoom_top"] == 0, f"{box}: no overlay after the click ({zoomed})"
    assert abs(zoomed["width"] - zoomed["natural"]) < 1, f"{box}: {zoomed['width']} px wide, PNG {zoomed['natural']}"
    assert zoomed["close"] != "none", "no close link on the overlay"
    browser.js(f"document.getElementById('{box}').querySelector('a.close').click()")
    browser.js(SETTLE)
    closed = browser.js(state)
    assert closed["position"] == "static" and closed["hash"] == "#" + box.replace("zoom-", "fig-", 1), closed


# ---- gradlab plot and draw_all ----------------------------------------------------------------


def visible(folder: Path) -> list[str]:
    """The files in folder, without gradlab's hidden ledger of what it wrote there."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def fake_figures(monkeypatch, **behaviour):
    """Replace figure modules: "skip" raises SkipFigure, "raise" raises RuntimeError, "ok" draws a
    line, "missing" makes the module absent."""
    import matplotlib.pyplot as plt

    for name, how in behaviour.items():
        full = f"gradlab.plots.{name}"
        if how == "missing":
            monkeypatch.setitem(sys.modules, full, None)
            continue
        mod = types.ModuleType(full)
        mod.CAPTION, mod.PART = f"caption of {name}", ""

        def drawer(tables, how=how, name=name):
            fig, ax = plt.subplots()
            if how == "skip":
                raise style.SkipFigure(f"no data for {name}")
            if how == "raise":
                raise RuntimeError(f"boom in {name}")
            ax.plot([0, 1], [0, 1])
            return fig

        mod.draw = drawer
        monkeypatch.setitem(sys.modules, full, mod)


def test_draw_all_isolates_each_figure(results, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    out, _ = results
    fake_figures(monkeypatch, gradient_by_layer="ok", saturation="skip", clipping="raise", loss_curves="missing")
    open_before = len(plt.get_fignums())
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "saturation.png").write_bytes(b"stale")  # drawn by gradlab from earlier results
    record_files(tmp_path / "figures", [tmp_path / "figures" / "saturation.png"])
    (tmp_path / "figures" / "clipping.png").write_bytes(b"mine")  # a user's file of that name: gradlab never wrote it
    written, skipped = draw.draw_all(
        load_results(out),
        tmp_path,
        only=["gradient_by_layer", "saturation", "clipping", "loss_curves"],
        formats=["png"],
    )
    assert list(written) == ["gradient_by_layer"]
    assert written["gradient_by_layer"] == [tmp_path / "figures" / "gradient_by_layer.png"]
    assert skipped["saturation"] == "no data for saturation"
    assert skipped["clipping"] == "error: RuntimeError: boom in clipping"
    assert skipped["loss_curves"].startswith("not available: no module gradlab/plots/loss_curves.py")
    assert draw.errors(skipped) == ["clipping"]
    assert not (tmp_path / "figures" / "saturation.png").exists(), "a skipped figure's stale file was kept"
    assert visible(tmp_path / "figures") == ["clipping.png", "gradient_by_layer.png"], "a file gradlab did not write was removed"
    assert (tmp_path / "figures" / "clipping.png").read_bytes() == b"mine"
    assert len(plt.get_fignums()) == open_before, "figures left open"


def test_plot_prints_what_it_skipped_and_why(results, tmp_path, monkeypatch):
    out, _ = results
    target = tmp_path / "copy"
    shutil.copytree(out, target)
    shutil.rmtree(target / "figures")
    fake_figures(monkeypatch, gradient_by_layer="ok", saturation="skip", loss_curves="missing")
    result = CliRunner().invoke(
        app,
        ["plot", str(target), "--only", "gradient_by_layer,saturation", "--only", "loss_curves", "--format", "png,svg"],
    )
    assert result.exit_code == 0, result.output
    assert "figures: 1 of 3 drawn" in result.output
    assert "skipped saturation: no data for saturation" in result.output
    assert "skipped loss_curves: not available" in result.output
    assert visible(target / "figures") == ["gradient_by_layer.png", "gradient_by_layer.svg"]


def test_plot_exits_1_when_a_figure_raises(results, tmp_path, monkeypatch):
    out, _ = results
    target = tmp_path / "copy"
    shutil.copytree(out, target)
    fake_figures(monkeypatch, clipping="raise", gradient_by_layer="ok")
    result = CliRunner().invoke(app, ["plot", str(target), "--only", "clipping,gradient_by_layer", "--format", "png"])
    assert result.exit_code == 1, result.output
    assert "skipped clipping: error: RuntimeError: boom in clipping" in result.output
    assert (target / "figures" / "gradient_by_layer.png").is_file(), "the other figure was not drawn"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--only", "nope"], "error: --only 'nope': must be one of gradient_by_layer,"),
        (["--only", "clipping,gradient_by_layr"], "error: --only 'gradient_by_layr': must be one of"),
        (["--format", "jpg"], "error: --format 'jpg': must be one of png, pdf, svg"),
        (["--format", ","], "error: --format: give at least one of png, pdf, svg"),
    ],
)
def test_plot_rejects_bad_options_in_one_line(results, args, message):
    out, _ = results
    before = sorted(p.name for p in (out / "figures").iterdir())
    result = CliRunner().invoke(app, ["plot", str(out), *args])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == result.output.strip().splitlines()[0], f"not one line: {result.output!r}"
    assert result.output.startswith(message), result.output
    assert sorted(p.name for p in (out / "figures").iterdir()) == before, "a rejected command changed figures/"


def test_plot_and_report_reject_a_folder_without_results(tmp_path):
    for command in ("plot", "report"):
        result = CliRunner().invoke(app, [command, str(tmp_path / "nothing")])
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: ") and "runs.parquet" in result.output
        assert len(result.output.strip().splitlines()) == 1


def test_report_command_rewrites_the_report(results, tmp_path):
    out, _ = results
    target = tmp_path / "copy"
    shutil.copytree(out, target)
    (target / "report.html").unlink()
    result = CliRunner().invoke(app, ["report", str(target)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith(f"report: {target / 'report.html'}")
    assert len(parse((target / "report.html").read_text()).images) == len(written_figures(target)) > 0


def test_run_no_report_writes_neither_figures_nor_report(tmp_path):
    cfg = tmp_path / "one.toml"
    cfg.write_text('name = "one"\n[model]\nwidth = 4\ndepth = 2\n[train]\nsteps = 2\nprobe_size = 8\n')
    result = CliRunner().invoke(app, ["run", str(cfg), "--out", str(tmp_path / "one"), "--quiet", "--no-report"])
    assert result.exit_code == 0, result.output
    assert "report:" not in result.output and "figures:" not in result.output
    assert (tmp_path / "one" / "runs.parquet").is_file()
    assert not (tmp_path / "one" / "report.html").exists() and not (tmp_path / "one" / "figures").exists()
    assert not (tmp_path / "one" / "summary.csv").exists()


# ---- the tour ---------------------------------------------------------------------------------

TOUR_PARTS = {"depth": 20, "recurrent": 4, "clipping": 12, "dying": 150, "saturation": 4, "cures": 12}  # the README's numbers


def test_tour_validates_with_its_parts_and_grid_size():
    experiment = config.load(TOUR)
    grid = experiment.grid()
    assert experiment.name == "tour"
    assert [p.name for p in experiment.parts] == list(TOUR_PARTS)
    sizes = pd.Series([c["experiment.part"] for c in grid]).value_counts().to_dict()
    assert sizes == TOUR_PARTS
    assert len(grid) == sum(TOUR_PARTS.values()) == 202


def test_tour_parts_are_the_issue_s_experiments():
    grid = pd.DataFrame(config.load(TOUR).grid())
    part = {name: frame for name, frame in grid.groupby("experiment.part")}
    depth = part["depth"]
    assert set(depth["model.kind"]) == {"mlp"} and set(depth["model.init"]) == {"standard"}
    assert sorted(set(zip(depth["model.depth"], depth["model.activation"]))) == sorted(
        (d, a) for d in (2, 4, 8, 16, 32) for a in ("sigmoid", "tanh", "relu", "leaky_relu")
    )
    recurrent = part["recurrent"]
    assert set(recurrent["model.kind"]) == {"rnn", "lstm"} and set(recurrent["task.name"]) == {"adding"}
    clipping = part["clipping"]
    assert set(clipping["model.kind"]) == {"rnn"} and set(clipping["model.activation"]) == {"tanh"}
    assert set(clipping["model.recurrent_init"]) == {"mean_field"} and set(clipping["model.sigma_w2"]) == {4.0}
    assert set(clipping["train.optimizer"]) == {"sgd"}
    thresholds = {(m, c if m != "none" else None) for m, c in zip(clipping["train.clip_mode"], clipping["train.clip"])}
    assert thresholds == {("none", None), ("norm", 0.1), ("norm", 1.0), ("norm", 10.0)}
    dying = part["dying"]
    assert set(dying["model.activation"]) == {"relu", "leaky_relu"} and dying["model.width"].max() <= 5
    assert sorted(set(dying["model.depth"])) == [2, 4, 8, 16, 32]
    cures = part["cures"]
    mlp = cures[cures["model.kind"] == "mlp"]
    assert set(mlp["model.depth"]) == {32} and set(mlp["model.activation"]) == {"tanh"}
    assert set(zip(mlp["model.norm"], mlp["model.residual"])) == {
        (n, r) for n in ("none", "layer", "batch") for r in (False, True)
    }
    cells = cures[cures["model.kind"] != "mlp"]
    assert set(zip(cells["model.kind"], cells["model.layers"])) == {
        (k, n) for k in ("rnn", "gru", "lstm") for n in (1, 2)
    }
    assert set(cells["task.name"]) == {"adding"} and set(cells["task.T"]) == {50}


def test_tour_clipping_part_explodes_without_clipping_and_not_with_it():
    """Seed 0 of the clipping part: unclipped, the gradient overflows; clipped at any threshold, not."""
    from gradlab import train

    runs = [c for c in config.load(TOUR).grid() if c["experiment.part"] == "clipping" and c["train.seed"] == 0]
    outcome = {}
    for c in runs:
        record, tables = train.run(c)
        key = "none" if c["train.clip_mode"] == "none" else c["train.clip"]
        outcome[key] = (record["status"], float(tables["steps"]["grad_norm"].replace(np.inf, np.nan).max()))
    assert set(outcome) == {"none", 0.1, 1.0, 10.0}
    assert outcome["none"][0] == "diverged", outcome
    assert all(status == "ok" for key, (status, _) in outcome.items() if key != "none"), outcome


def test_run_without_config_is_the_tour(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no experiments/ here: the shipped tour is found next to the package
    result = CliRunner().invoke(app, ["run", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("tour: 202 runs")
    assert "would write results/tour/" in result.output


# ---- figures that separate what differs, on real runs -------------------------------------------

# The issue's case, small: ReLU MLPs at depth 6, He against Xavier, two seeds each.
HE_XAVIER = """
name = "he_xavier"
description = "ReLU depth 6: He against Xavier"
[model]
kind = "mlp"
depth = 6
width = 8
activation = "relu"
[task]
name = "teacher_student"
input_size = 4
[train]
steps = 4
log_every = 2
probe_size = 32
batch = 8
[sweep]
init = ["he_normal", "xavier_normal"]
seed = [0, 1]
"""


@pytest.fixture(scope="module")
def he_xavier(tmp_path_factory):
    """The he_xavier experiment run with gradlab.sweep.runner.run, its tables and draw_all's Drawing."""
    from gradlab.sweep import runner

    folder = tmp_path_factory.mktemp("he_xavier")
    (folder / "he_xavier.toml").write_text(HE_XAVIER)
    out = folder / "results"
    runner.run(config.load(folder / "he_xavier.toml"), out, executor="serial", progress=False, warn=lambda s: None)
    tables = load_results(out)
    return out, tables, draw.draw_all(tables, out, formats=["png"])


def vocabulary() -> set[str]:
    """The names of activations, inits, models and tasks: a caption may name only its experiment's. The file
    task's name is left out: "file" is also the plain word captions use ("init he_normal, xavier_normal (a
    file each)")."""
    from gradlab import schema

    names = set()
    for key in ("model.kind", "model.activation", "model.init", "task.name"):
        names |= set(schema.FIELDS[key].choices)
    return names - {"file"}


def test_each_init_is_drawn_apart_and_seeds_are_a_band(he_xavier):
    out, tables, drawing = he_xavier
    runs, layers = tables["runs"], tables["layers"]
    (stem,) = drawing.stems["gradient_by_layer"]
    assert stem == "gradient_by_layer", "two inits are rows of panels in one file"
    fig_path = out / "figures" / "gradient_by_layer.png"
    assert fig_path.is_file()
    (d,) = draw.render("gradient_by_layer", tables)[0]
    for init in ("he_normal", "xavier_normal"):
        (ax,) = [a for a in d.fig.axes if a.get_title() == f"init={init}\ndepth $L = 6$"]
        (line,) = [ln for ln in ax.get_lines() if ln.get_gid() == "init:relu"]
        ids = runs.loc[runs["init"] == init, "run_id"]
        rows = layers[layers["run_id"].isin(ids) & (layers["step"] == 0)]
        wide = rows.pivot(index="run_id", columns="layer", values="delta_norm").to_numpy()
        np.testing.assert_allclose(line.get_ydata(), np.median(wide, axis=0))  # this init's two seeds only
        (band,) = [c for c in ax.collections if c.get_gid() == "band:init:relu"]
        xy = np.concatenate([p.vertices for p in band.get_paths()])
        lo = [xy[xy[:, 0] == x, 1].min() for x in range(7)]
        np.testing.assert_allclose(lo, np.quantile(wide, 0.25, axis=0))
    # the heatmap's cells: each init's own median, never one of both
    (h,) = draw.render("depth_activation_heatmap", tables)[0]
    cells = {ax.get_title(): {t.get_gid(): t.get_text() for t in ax.texts} for ax in h.fig.axes if ax.get_title()}
    he, xavier = (cells[f"init={i}\nat initialisation (step 0)"]["cell:6:relu"] for i in ("he_normal", "xavier_normal"))
    assert he != xavier


def test_a_non_tour_experiment_s_captions_name_only_its_own_fields(he_xavier):
    out, tables, drawing = he_xavier
    assert drawing.captions, "no figure drawn"
    own = {"mlp", "relu", "he_normal", "xavier_normal", "teacher_student"}
    for stem, caption in drawing.captions.items():
        named = {w for w in vocabulary() if re.search(rf"(?<![\w]){re.escape(w)}(?![\w])", caption)}
        assert named <= own, f"{stem}'s caption names {sorted(named - own)}, which this experiment does not have"
        assert "init he_normal, xavier_normal" in caption, f"{stem}: what varies is not said"
    tour = config.load(TOUR)
    text = (out / "report.html").read_text() if (out / "report.html").exists() else report.build(
        out, tables, drawing.written, drawing.skipped, drawing.captions, drawing.notes, drawing.stems)
    assert tour.description not in text
    for phrase in ("sigmoid falls fastest", "At the standard init", "x0.14"):
        assert phrase not in text, f"the tour's text {phrase!r} in another experiment's report"
    for stem, caption in drawing.captions.items():
        assert html.escape(caption).split(" Drawn: ")[0] in text


def drawn_runs(name: str, tables) -> int:
    """How many runs figure `name` draws, over its files (their captions' "Drawn: N")."""
    drawn, reason = draw.render(name, tables)
    assert drawn, reason
    return sum(int(re.search(r"Drawn: (\d+)", d.caption).group(1)) for d in drawn)


def test_two_folders_drawn_together_draw_both(results, he_xavier):
    from gradlab.plots import combine

    (tiny, _), (hx, _, _) = results, he_xavier
    both = combine({"tiny": load_results(tiny), "hx": load_results(hx)})
    assert len(both["runs"]) == len(load_results(tiny)["runs"]) + len(load_results(hx)["runs"])
    assert both["runs"]["run_id"].is_unique
    for name in ("gradient_by_layer", "depth_activation_heatmap", "loss_curves"):
        drawn, reason = draw.render(name, both)
        assert drawn, reason
        named = set()  # the folders a file's caption says it draws ("folder tiny, hx (rows ...)", "folder hx")
        for d in drawn:
            for found in re.findall(r"folder[ =]([\w, ]+)", d.caption):
                named |= {f for f in found.split(", ") if f in ("tiny", "hx")}
        assert named == {"tiny", "hx"}, f"{name} drew the runs of {named} only"
        alone = drawn_runs(name, load_results(tiny)) + drawn_runs(name, load_results(hx))
        assert drawn_runs(name, both) == alone, f"{name}: not every run of both folders is drawn"
    # the same tables without the folders' names cannot be told apart: an error, never a silent drop
    dup = {k: pd.concat([v, v], ignore_index=True) for k, v in load_results(hx).items()}
    with pytest.raises(ValueError, match="combine"):
        draw.draw_all(dup, hx, only=["gradient_by_layer"], formats=["png"])


def test_a_redraw_of_the_same_tables_writes_the_same_bytes(he_xavier, tmp_path, monkeypatch):
    """PDF and SVG files carry no date and SVG ids come from a fixed salt: drawing the same tables twice, in
    different seconds, gives identical files in every format."""
    import time

    _, tables, _ = he_xavier
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    files = []
    for k in range(2):
        time.sleep(1.1 * k)  # a date to the second would differ
        draw.draw_all(tables, tmp_path / str(k), only=["gradient_by_layer"], formats=["png", "pdf", "svg"])
        files.append({f.name: f.read_bytes() for f in sorted((tmp_path / str(k) / "figures").glob("gradient_by_layer*"))})
    assert sorted(files[0]) == sorted(files[1]) and len(files[0]) == 3, sorted(files[0])
    for name in files[0]:
        assert files[0][name] == files[1][name], f"{name} differs between two draws of the same tables"


def test_draw_all_names_split_files_and_removes_stale_ones(he_xavier, tmp_path):
    out, tables, _ = he_xavier
    drawing = draw.draw_all(tables, tmp_path, only=["gradient_by_layer", "loss_curves"], formats=["png"], by="seed")
    # by=seed: the seeds become rows of panels too (the init and the seed as facets), or files
    assert set(drawing.written) == {"gradient_by_layer", "loss_curves"}
    by_layer = " ".join(c for s, c in drawing.captions.items() if split.figure_of(s) == "gradient_by_layer")
    assert "seed 0, 1 (rows of panels, one per value)" in by_layer, by_layer
    assert "drawn as their median" not in by_layer and "one per setting" not in by_layer, by_layer
    for name, stems in drawing.stems.items():
        assert all(split.figure_of(s) == name for s in stems)
        assert [p.stem for p in drawing.written[name]] == stems
    written, skipped = drawing  # unpacks as draw_all always did
    assert written is drawing.written and skipped == {}
    many = {"runs": tables["runs"].assign(lr=tables["runs"]["seed"].map({0: 0.01, 1: 0.02})),
            **{k: v for k, v in tables.items() if k != "runs"}}  # fmt: skip
    split_files = draw.draw_all(many, tmp_path, only=["dead_units"], formats=["png"])
    # dead_units has no room for facets: every other field that differs is a file, named by its values
    stems = [f"dead_units__init={i}__lr={lr}" for i in ("he_normal", "xavier_normal") for lr in ("0.01", "0.02")]
    assert split_files.stems["dead_units"] == stems
    assert [f for f in visible(tmp_path / "figures") if f.startswith("dead_units")] == [f"{s}.png" for s in stems]
    again = draw.draw_all(tables, tmp_path, only=["dead_units"], formats=["png"])
    assert again.stems["dead_units"] == ["dead_units__init=he_normal", "dead_units__init=xavier_normal"]
    assert [f for f in visible(tmp_path / "figures") if f.startswith("dead_units")] == [
        "dead_units__init=he_normal.png", "dead_units__init=xavier_normal.png"], "stale split files kept"
    # a figure that leaves runs out says so, in the Drawing's notes (for gradlab plot) and in its caption
    broken = {**tables, "layers": tables["layers"][tables["layers"]["run_id"] != tables["runs"]["run_id"].iloc[0]]}
    noted = draw.draw_all(broken, tmp_path, only=["gradient_by_layer"], formats=["png"])
    first = tables["runs"]["run_id"].iloc[0]
    assert noted.notes["gradient_by_layer"] == [f"1 MLP run with no layers rows at step 0 ({first})"]
    assert noted.note_lines() == ["  gradient_by_layer left out: " + noted.notes["gradient_by_layer"][0]]
    assert "Left out: 1 MLP run" in noted.captions["gradient_by_layer"]
    with pytest.raises(ValueError, match="--by 'nope'"):
        draw.draw_all(tables, tmp_path, by="nope")
