"""The figures drawn in a pool of worker processes (draw_all's workers) against the same figures drawn in
this process: the same Drawing and the same files byte for byte (PNG, PDF, SVG; PDF and SVG carry a date,
fixed here through SOURCE_DATE_EPOCH, and SVG random ids, numbered here in order of appearance), stale
files removed alike, the slowest figures handed out first, a figure that raises or whose worker dies
skipped with its reason and the others drawn, SIGTERM and Ctrl-C stopping the workers (gradlab plot exits
128 + the signal, saying so), and gradlab plot's --workers checked.

The results folder is test_report's he_xavier (four ReLU MLPs); a figure's behaviour in a worker is
changed by handing draw_all a FigureFiles subclass of this module (the workers import it by name).
"""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import default_sigint
from test_cli import gradlab, one_line_error
from test_report import fake_figures, he_xavier, visible  # noqa: F401 - he_xavier is a fixture

from gradlab.plots import NAMES, draw
from gradlab.sweep.executors import Processes
from gradlab.sweep.store import FILES_LEDGER, owned_files, record_files

FORMATS = ["png", "pdf", "svg"]
EPOCH = "1700000000"  # SOURCE_DATE_EPOCH: the date PDF and SVG files carry
SVG_ID = rb"(?:image|[a-z])[0-9a-f]{10}"  # matplotlib's per-save random ids (markers m..., clip paths p..., images)


def normalised(path: Path) -> bytes:
    """A file's bytes; an SVG's random ids replaced by their order of first appearance."""
    data = path.read_bytes()
    if path.suffix != ".svg":
        return data
    ids = {m: b"id%d" % i for i, m in enumerate(dict.fromkeys(re.findall(rb'id="(' + SVG_ID + rb')"', data)))}
    return re.sub(rb"\b" + SVG_ID + rb"\b", lambda m: ids.get(m.group(0), m.group(0)), data)


def relative(drawing: draw.Drawing, folder: Path) -> dict:
    """A Drawing's fields, its paths relative to folder (two folders' Drawings compare equal)."""
    return {
        "written": {k: [p.relative_to(folder) for p in v] for k, v in drawing.written.items()},
        "order": list(drawing.written), "skipped": drawing.skipped, "notes": drawing.notes,
        "stems": drawing.stems, "captions": drawing.captions, "caption order": list(drawing.captions),
    }  # fmt: skip


def seeded(folder: Path) -> Path:
    """folder with figures/ holding a stale file gradlab wrote (a stem these tables do not make) and a user's file."""
    figures = folder / "figures"
    figures.mkdir(parents=True)
    (figures / "dead_units__init=gone.png").write_bytes(b"stale")
    record_files(figures, [figures / "dead_units__init=gone.png"])
    (figures / "gradient_by_layer__mine.png").write_bytes(b"a user's file")
    return folder


def assert_same_folders(a: Path, b: Path) -> None:
    """The same files (the ledger too), byte for byte (SVG ids numbered)."""
    assert visible(a / "figures") == visible(b / "figures"), "the files differ"
    assert (a / "figures" / FILES_LEDGER).read_text() == (b / "figures" / FILES_LEDGER).read_text(), "the ledgers differ"
    for name in visible(a / "figures"):
        assert normalised(a / "figures" / name) == normalised(b / "figures" / name), f"{name}: bytes differ"


class Handing(Processes):
    """Processes, remembering the figures each pool was handed, in order."""

    handed: list[list[str]] = []

    def map(self, task, configs):
        Handing.handed.append(list(configs))
        return super().map(task, configs)


@pytest.fixture
def handing(monkeypatch):
    Handing.handed = []
    monkeypatch.setattr(draw, "Processes", Handing)
    return Handing.handed


def test_slowest_first_holds_every_figure_once():
    assert sorted(draw.SLOWEST_FIRST) == sorted(NAMES), f"SLOWEST_FIRST {draw.SLOWEST_FIRST} is not NAMES {NAMES}"


def test_a_pool_draws_the_same_drawing_and_files_as_this_process(he_xavier, tmp_path, monkeypatch, handing):
    out, tables, _ = he_xavier
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)  # the workers inherit it
    here, pool = seeded(tmp_path / "here"), seeded(tmp_path / "pool")
    done_here, done_pool = [], []
    serial = draw.draw_all(tables, here, formats=FORMATS, workers=1, done=done_here.append)
    assert handing == [], "workers=1 started a pool"
    pooled = draw.draw_all(tables, pool, formats=FORMATS, workers=2, done=done_pool.append)
    assert handing == [list(draw.SLOWEST_FIRST)], f"handed out {handing}, not slowest first"
    assert serial.written, "nothing drawn: nothing compared"
    assert relative(pooled, pool) == relative(serial, here)
    assert sorted(done_pool) == sorted(done_here) == sorted(NAMES), f"done called for {done_pool}"
    assert_same_folders(here, pool)
    assert not (pool / "figures" / "dead_units__init=gone.png").exists(), "a stale file was kept"
    assert (pool / "figures" / "gradient_by_layer__mine.png").read_bytes() == b"a user's file"


def test_stand_in_modules_are_drawn_here_and_the_rest_in_the_pool(he_xavier, tmp_path, monkeypatch, handing):
    out, tables, _ = he_xavier
    fake_figures(monkeypatch, saturation="skip", clipping="raise", loss_curves="missing")
    only = ["gradient_by_layer", "dead_units", "saturation", "clipping", "loss_curves"]
    pooled = draw.draw_all(tables, tmp_path / "pool", only=only, formats=["png"], workers=2)
    (away,) = handing
    assert away == ["gradient_by_layer", "dead_units"], f"handed to the pool: {away}"
    serial = draw.draw_all(tables, tmp_path / "here", only=only, formats=["png"], workers=1)
    assert list(pooled.written) == ["gradient_by_layer", "dead_units"], pooled.skipped
    assert relative(pooled, tmp_path / "pool") == relative(serial, tmp_path / "here")
    assert pooled.skipped["clipping"] == "error: RuntimeError: boom in clipping"
    assert pooled.skipped["loss_curves"].startswith("not available: no module gradlab/plots/loss_curves.py")


class Raising(draw.FigureFiles):
    """clipping's draw() raises RuntimeError (its module replaced while it is drawn, in whichever process)."""

    def __call__(self, name: str) -> draw.Made:
        if name != "clipping":
            return super().__call__(name)
        import types

        full = "gradlab.plots.clipping"
        stand_in = types.ModuleType(full)
        stand_in.draw = lambda tables: (_ for _ in ()).throw(RuntimeError("boom in a worker"))
        saved = sys.modules.get(full)
        sys.modules[full] = stand_in
        try:
            return super().__call__(name)
        finally:
            sys.modules[full] = saved


class Killing(draw.FigureFiles):
    """A worker drawing gradient_by_layer is killed (SIGKILL, as the kernel's OOM killer does)."""

    def __call__(self, name: str) -> draw.Made:
        if name == "gradient_by_layer" and multiprocessing.parent_process() is not None:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__call__(name)


def test_a_figure_that_raises_in_a_worker_is_skipped_with_the_reason_it_has_here(he_xavier, tmp_path, monkeypatch):
    out, tables, _ = he_xavier
    monkeypatch.setattr(draw, "FigureFiles", Raising)
    serial = draw.draw_all(tables, tmp_path / "here", formats=["png"], workers=1)
    pooled = draw.draw_all(tables, tmp_path / "pool", formats=["png"], workers=2)
    assert serial.skipped["clipping"] == "error: RuntimeError: boom in a worker"
    assert relative(pooled, tmp_path / "pool") == relative(serial, tmp_path / "here")
    assert draw.errors(pooled.skipped) == ["clipping"]


@pytest.mark.alone
def test_a_dead_worker_skips_its_figure_and_the_others_are_drawn(he_xavier, tmp_path, monkeypatch):
    out, tables, drawing = he_xavier
    folder = tmp_path / "pool"
    draw.draw_all(tables, folder, formats=["png"], workers=1)
    assert "gradient_by_layer.png" in owned_files(folder / "figures")
    monkeypatch.setattr(draw, "FigureFiles", Killing)
    pooled = draw.draw_all(tables, folder, formats=["png"], workers=2)
    reason = pooled.skipped.get("gradient_by_layer")
    assert reason == "error: not drawn: its worker was killed by signal 9 (SIGKILL), possibly out of memory", reason
    assert draw.errors(pooled.skipped) == ["gradient_by_layer"]
    others = {n: s for n, s in drawing.stems.items() if n != "gradient_by_layer"}
    assert pooled.stems == others, f"the other figures: {pooled.stems} drawn, {others} expected"
    assert not (folder / "figures" / "gradient_by_layer.png").exists(), "the skipped figure's old file was kept"
    assert "gradient_by_layer.png" not in owned_files(folder / "figures")


class Sleeping(draw.FigureFiles):
    """Each figure: the worker's pid written to folder/<pid>.pid, then a minute's sleep."""

    def __call__(self, name: str) -> draw.Made:
        (self.folder.parent / f"{os.getpid()}.pid").write_text(name)
        time.sleep(60)
        return super().__call__(name)


STOPPED = """
import sys
sys.path.insert(0, {tests!r})
from test_figure_pool import Sleeping
from gradlab.plots import draw
draw.FigureFiles = Sleeping
from gradlab.cli import main
main(["plot", {target!r}, "--format", "png"])
"""


def alive(pid: int) -> bool:
    """Whether process pid exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.alone
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_sigterm_and_ctrl_c_stop_the_workers(he_xavier, tmp_path, signum):
    import shutil

    out, _, _ = he_xavier
    target = tmp_path / "copy"
    shutil.copytree(out, target)
    before = sorted(p.name for p in (target / "figures").iterdir())
    script = STOPPED.format(tests=str(Path(__file__).parent), target=str(target))
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    try:
        deadline = time.monotonic() + 60
        while len(pids := [int(p.stem) for p in target.glob("*.pid")]) < 2 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.1)
        assert len(pids) == 2, f"{len(pids)} workers started drawing within 60 s"
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signum, f"exit {proc.returncode}, expected {128 + signum}: {err[-2000:]}"
    assert f"stopped by {signum.name} while drawing the figures" in err, err[-2000:]
    assert not [p for p in pids if alive(p)], f"workers {pids} outlived their parent (stopped by {signum.name})"
    assert sorted(p.name for p in (target / "figures").iterdir()) == before, "figures/ changed"


def test_pool_size_is_the_cores_at_most_one_a_figure():
    assert draw.pool_size(None, 9) == min(os.cpu_count() or 1, 9)
    assert draw.pool_size(None, 1) == 1
    assert draw.pool_size(5, 3) == 3
    assert draw.pool_size(1, 9) == 1
    for bad in (0, -2, 2.5, "2", True):
        with pytest.raises(ValueError, match=r"^workers .*: must be a positive integer"):
            draw.pool_size(bad, 9)


def test_draw_all_rejects_bad_workers_before_writing(he_xavier, tmp_path):
    out, tables, _ = he_xavier
    with pytest.raises(ValueError, match="workers 0"):
        draw.draw_all(tables, tmp_path, workers=0)
    assert list(tmp_path.iterdir()) == [], "a refused draw_all wrote something"


@pytest.mark.parametrize("command", ["plot", "report"])
def test_workers_option_is_checked_in_one_line(he_xavier, capsys, command):
    out, _, _ = he_xavier
    before = sorted(p.name for p in out.rglob("*"))
    line = one_line_error(*gradlab(capsys, command, out, "--workers", "0")[::2])
    assert "Invalid value for '--workers'" in line, line
    assert re.search(r">=\s*1|greater than or equal to 1", line), f"the allowed values are not named: {line}"  # typer's words
    assert sorted(p.name for p in out.rglob("*")) == before, f"a refused {command} wrote something"


def test_plot_with_one_worker_prints_and_writes_what_the_pool_does(he_xavier, tmp_path, capsys):
    import shutil

    out, _, _ = he_xavier
    for name in ("solo", "pool"):
        shutil.copytree(out, tmp_path / name)
    code_one, said_one, err = gradlab(capsys, "plot", tmp_path / "solo", "--format", "png", "--workers", "1")
    assert code_one == 0, err
    code_pool, said_pool, err = gradlab(capsys, "plot", tmp_path / "pool", "--format", "png")
    assert code_pool == 0, err
    assert said_pool.replace(str(tmp_path / "pool"), "X") == said_one.replace(str(tmp_path / "solo"), "X")
    assert_same_folders(tmp_path / "solo", tmp_path / "pool")


def test_the_figures_benchmark_times_both_and_says_what_it_drew(he_xavier, tmp_path):
    from gradlab.bench import runner as bench

    out, _, drawing = he_xavier
    lines: list[str] = []
    speedup = bench.figures(out, workers=2, echo=lines.append)
    (line,) = lines
    files = 2 * sum(map(len, drawing.written.values()))  # he_xavier's Drawing is PNG alone; the benchmark's PNG and PDF
    assert f"({len(drawing.written)} figures, {files} files)" in line and "2 workers" in line, line
    assert speedup > 0 and f"x{speedup:.2f}" in line, line
    assert bench.figures(tmp_path / "none", echo=lines.append) is None
    assert lines[-1].startswith("figures: skipped, no results in"), lines[-1]
