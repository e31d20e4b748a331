"""Nothing finished is lost: kill -9 a process-pool sweep part way, twice, then resume."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd

from gradlab.sweep import config, runner
from gradlab.sweep.store import load

CONFIG = """
name = "killme"
[model]
width = 32
depth = 3
[train]
steps = 150
log_every = 50
probe_size = 64
[sweep]
activation = ["tanh", "relu", "sigmoid"]
seed = [0, 1, 2, 3]
"""


def finished_runs(out):
    runs = out / "runs"
    return [p for p in runs.iterdir() if not p.name.startswith(".")] if runs.exists() else []


def start(cfg, out):
    cmd = [sys.executable, "-m", "gradlab", "run", str(cfg), "--out", str(out), "--executor", "process", "--workers", "2", "--quiet"]
    return subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill_after(proc, out, at_least, timeout=120.0):
    """SIGKILL the sweep's whole process group once `at_least` runs are on disk."""
    deadline = time.monotonic() + timeout
    while len(finished_runs(out)) < at_least and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_sigkill_twice_then_resume_gives_every_run_once_equal_to_serial(tmp_path):
    cfg = tmp_path / "killme.toml"
    cfg.write_text(CONFIG)
    out = tmp_path / "killed"
    total = len(config.load(cfg).grid())
    seen = []
    for at_least in (2, 6):
        kill_after(start(cfg, out), out, at_least)
        seen.append(len(finished_runs(out)))
    assert seen[0] < total and seen[1] < total, f"the sweep finished before it was killed: {seen}"
    resumed = subprocess.run([sys.executable, "-m", "gradlab", "run", str(cfg), "--out", str(out), "--quiet"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"({seen[-1]} already finished)" in resumed.stdout, "the resume must keep exactly the runs the kills left"

    clean = tmp_path / "clean"
    runner.run(config.load(cfg), clean, progress=False)
    killed, serial = load(out), load(clean)
    assert killed["runs"]["run_id"].is_unique and len(killed["runs"]) == total
    for name in killed:
        a = killed[name].drop(columns=["wall_s"], errors="ignore")
        b = serial[name].drop(columns=["wall_s"], errors="ignore")
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=name)
