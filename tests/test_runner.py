"""The sweep runner: executors agree bit for bit, failures are isolated, resume skips finished runs."""

import numpy as np
import pandas as pd
import pytest

from gradlab.sweep import config, runner
from gradlab.sweep.store import load

SMALL = {
    "model": {"width": 8, "depth": 2},
    "train": {"steps": 12, "log_every": 4, "probe_size": 64},
    "sweep": {"activation": ["tanh", "relu"], "seed": [0, 1]},
}
VOLATILE = ["wall_s"]  # the only column allowed to differ between executors


def run(tmp_path, data, name="exp", **kw):
    experiment = config.from_dict(data, name)
    summary = runner.run(experiment, tmp_path / name, progress=False, **kw)
    return summary, load(tmp_path / name)


def assert_same_tables(a, b):
    for name in a:
        left, right = a[name].drop(columns=VOLATILE, errors="ignore"), b[name].drop(columns=VOLATILE, errors="ignore")
        pd.testing.assert_frame_equal(left, right, check_exact=True, obj=name)


def test_process_pool_gives_the_serial_tables_bit_for_bit(tmp_path):
    _, serial = run(tmp_path, SMALL, "serial")
    _, pooled = run(tmp_path, SMALL, "pooled", executor="process", workers=2)
    assert len(serial["runs"]) == 4 and (serial["runs"]["status"] == "ok").all()
    assert_same_tables(serial, pooled)


def test_dask_local_cluster_gives_the_serial_tables(tmp_path):
    pytest.importorskip("dask.distributed")
    _, serial = run(tmp_path, SMALL, "serial")
    _, dasked = run(tmp_path, SMALL, "dasked", executor="dask", workers=2)
    assert_same_tables(serial, dasked)


def test_a_run_that_raises_is_recorded_failed_and_the_others_finish(tmp_path):
    data = {**SMALL, "sweep": {"width": [4, 10**6]}}  # a 10^6 x 10^6 weight matrix (8 TB) cannot be allocated
    summary, tables = run(tmp_path, data)
    runs = tables["runs"].set_index("width")
    assert runs.loc[4, "status"] == "ok" and runs.loc[10**6, "status"] == "failed"
    assert "MemoryError" in runs.loc[10**6, "error"]
    assert [rid for rid, _ in summary.failed] == [runs.loc[10**6, "run_id"]]


def test_a_diverging_run_stops_at_its_step_and_keeps_what_it_logged(tmp_path):
    data = {
        "model": {"kind": "rnn", "width": 16, "init": "mean_field", "sigma_w2": 16.0},
        "task": {"name": "adding", "T": 30},
        "train": {"steps": 300, "lr": 1.0, "log_every": 5, "probe_size": 64},
    }
    _, tables = run(tmp_path, data)
    row = tables["runs"].iloc[0]
    assert row["status"] == "diverged" and row["diverged_step"] > 0 and row["diagnosis"] == "diverged"
    steps = tables["steps"].set_index("step")
    assert steps.index.max() == row["diverged_step"], "the steps table ends at the diverging step"
    assert np.isfinite(steps["loss"].iloc[:-1]).all() and not np.isfinite(steps[["loss", "grad_norm"]].iloc[-1]).all()
    assert (tables["layers"]["step"] < row["diverged_step"]).all() and len(tables["layers"]) > 0


def test_rerunning_skips_finished_runs_and_fresh_starts_over(tmp_path):
    first, tables = run(tmp_path, SMALL)
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "exp" / "runs").iterdir()}
    again, tables_again = run(tmp_path, SMALL)
    assert (first.skipped, again.skipped) == (0, 4)
    assert stamps == {p.name: p.stat().st_mtime_ns for p in (tmp_path / "exp" / "runs").iterdir()}
    assert_same_tables(tables, tables_again)
    fresh, _ = run(tmp_path, SMALL, fresh=True)
    assert fresh.skipped == 0


def test_manifest_records_provenance_and_counts(tmp_path):
    import json

    run(tmp_path, SMALL)
    manifest = json.loads((tmp_path / "exp" / "manifest.json").read_text())
    assert manifest["runs"]["total"] == 4 and manifest["runs"]["ok"] == 4
    assert {"numpy", "pandas", "pyarrow"} <= set(manifest["packages"])
    assert manifest["gradlab_version"] and manifest["git_commit"]


@pytest.mark.alone
def test_dask_cluster_at_an_address_gives_the_serial_tables(tmp_path):
    """A cluster started the usual way (`dask scheduler`, `dask worker ADDRESS`) on 127.0.0.1."""
    pytest.importorskip("dask.distributed")
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], **quiet)]
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait for the scheduler to listen
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        procs.append(subprocess.Popen([sys.executable, "-m", "dask", "worker", address, "--nthreads", "1", "--no-dashboard"], **quiet))
        _, serial = run(tmp_path, SMALL, "serial")
        _, remote = run(tmp_path, SMALL, "remote", executor="dask", address=address)
        assert_same_tables(serial, remote)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


@pytest.mark.alone
def test_a_dask_task_whose_worker_keeps_dying_is_reported_lost_not_raised():
    """Dask reschedules a task whose worker died, then gives up (KilledWorker): that run is Lost, and
    the runner records it failed like a pool worker killed by the OOM killer."""
    pytest.importorskip("dask.distributed")
    import signal

    from gradlab.sweep import executors

    with executors.Dask(None, 1) as pool:
        outcomes = list(pool.map(signal.raise_signal, [signal.SIGKILL]))  # the task kills its own worker
    assert outcomes == [(signal.SIGKILL, executors.Lost("its Dask worker died each time it ran it (KilledWorker), possibly out of memory"))]
