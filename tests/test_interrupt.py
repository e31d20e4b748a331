"""Nothing finished is lost: kill -9 a process-pool sweep part way, twice, then resume; a worker killed
by the OOM killer, SIGTERM and Ctrl-C, a killed parent, a second sweep on the same folder."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import default_sigint

from gradlab.sweep import config, runner
from gradlab.sweep.store import load

pytestmark = pytest.mark.alone  # signals and kills on deadlines: run after the rest, with nothing beside them

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


# ---- a dead worker, a stop signal, a second sweep: each named, none loses what finished ------------------

SLOW = """
name = "slow"
[model]
width = 48
depth = 4
[train]
steps = 400
log_every = 100
probe_size = 64
[sweep]
seed = [0, 1, 2, 3, 4, 5]
"""


def children(pid):
    """The pids whose parent is pid (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def state(pid):
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def wait_for(predicate, timeout=120.0, what="a condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def sweep(tmp_path, text=SLOW, *args):
    cfg = tmp_path / "slow.toml"
    cfg.write_text(text)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "gradlab", "run", str(cfg), "--out", str(out), "--quiet", "--no-report", *args]
    return cfg, out, cmd


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="finds pool workers through /proc")


@needs_proc
@pytest.mark.parametrize("sig, why", [
    (signal.SIGKILL, "its worker was killed by signal 9 (SIGKILL), possibly out of memory"),  # the OOM killer
    (signal.SIGTERM, "its worker was killed by signal 15 (SIGTERM)"),  # a user's kill PID: not the sweep's stop
], ids=["SIGKILL", "SIGTERM"])  # fmt: skip
def test_a_killed_worker_fails_its_run_only_and_the_sweep_goes_on(tmp_path, sig, why):
    # runs alone: an ensemble whose worker dies is run again member by member (tests/test_ensemble_runs.py)
    cfg, out, cmd = sweep(tmp_path, SLOW, "--executor", "process", "--workers", "2", "--no-ensemble")
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(finished_runs(out)) >= 1, what="a first run")
    busy = []
    wait_for(lambda: bool(busy.extend(p for p in children(proc.pid) if state(p) == "R") or busy), what="a busy worker")
    os.kill(busy[0], sig)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stderr
    runs = load(out)["runs"]
    failed = runs[runs["status"] == "failed"]
    assert len(runs) == 6 and len(failed) == 1, runs[["run_id", "status", "error"]]
    assert failed["error"].iloc[0] == why
    assert failed["run_id"].iloc[0] in stderr
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "(5 already finished)" in again.stdout, again.stderr
    assert (load(out)["runs"]["status"] == "ok").all()


@needs_proc
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_signal_ends_the_sweep_cleanly_and_it_resumes(tmp_path, sig, code):
    # runs one by one (--no-ensemble), so that the signal always finds runs to do: as ensembles, the six
    # seeds are two chunks that may end together, and a signal sent then finds a sweep already exiting
    cfg, out, cmd = sweep(tmp_path, SLOW, "--executor", "process", "--workers", "2", "--no-ensemble")
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)  # fmt: skip
    wait_for(lambda: len(finished_runs(out)) >= 1 and len(children(proc.pid)) >= 2, what="a run and two workers")
    os.kill(proc.pid, sig)  # to the main process only, as Slurm, systemd and docker do
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == code, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and f"stopped by {sig.name}" in lines[0] and "run the same command again to resume" in lines[0], stderr
    deadline = time.monotonic() + 10
    while group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not group_alive(proc.pid), "a process of the sweep is still alive 10 s after it was stopped"
    kept = len(finished_runs(out))
    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0 and f"({kept} already finished)" in resumed.stdout, resumed.stderr
    assert len(load(out)["runs"]) == 6


@needs_proc
def test_workers_exit_by_themselves_when_the_sweep_is_killed(tmp_path):
    cfg, out, cmd = sweep(tmp_path, SLOW, "--executor", "process", "--workers", "2", "--no-ensemble")  # 6 runs, one by one
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # past their start-up: a worker still reading its spawn data when the parent dies gets EOFError inside
    # multiprocessing's spawn_main, which prints its traceback before any of gradlab's code runs
    wait_for(lambda: len(children(proc.pid)) >= 2 and len(finished_runs(out)) >= 1, what="two workers and a run")
    workers = children(proc.pid)
    assert len(finished_runs(out)) < 6, "the sweep ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)  # no chance to clean up: the workers must notice on their own
    proc.wait()
    deadline = time.monotonic() + 10
    while any(state(p) not in ("gone", "Z") for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(state(p) in ("gone", "Z") for p in workers), "orphaned workers outlived the sweep by 10 s"
    assert "Traceback" not in proc.stderr.read(), "a worker printed a traceback when its parent died"


def test_a_second_sweep_on_the_same_folder_is_refused_and_the_first_finishes_alone(tmp_path):
    long = SLOW.replace("steps = 400", "steps = 5000")  # ~10 s: the second command starts well before it ends
    cfg, out, cmd = sweep(tmp_path, long, "--executor", "process", "--workers", "2")
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (out / ".gradlab-lock").is_file(), what="the first sweep's lock")
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2, second.stderr
    assert second.stderr.strip() == (
        f"error: {out}: another gradlab process (pid {first.pid}) is writing this folder; "
        "wait for it to finish or choose another --out"
    )
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0 and "(0 already finished)" in stdout, stderr
    runs = load(out)["runs"]
    assert len(runs) == 6 and runs["run_id"].is_unique
