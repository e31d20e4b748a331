"""Where runs execute: in this process, in a local process pool, or on a Dask cluster. Each yields
(config, outcome) pairs as runs finish; the caller writes them, so every executor stores alike."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from typing import Any

Config = dict[str, Any]
Task = Callable[[Config], Any]
EXECUTORS = ("serial", "process", "dask")
BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def serial(task: Task, configs: list[Config]) -> Iterator[tuple[Config, Any]]:
    for config in configs:
        yield config, task(config)


@contextmanager
def _one_blas_thread():
    """Workers started inside this block see one BLAS thread (read by NumPy when it is imported)."""
    saved = {k: os.environ.get(k) for k in BLAS_THREADS}
    os.environ.update({k: "1" for k in BLAS_THREADS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def processes(task: Task, configs: list[Config], workers: int) -> Iterator[tuple[Config, Any]]:
    """A pool of `workers` fresh ("spawn") processes with one BLAS thread each; at most `workers`
    runs in flight, so an interrupted sweep loses at most those."""
    with _one_blas_thread():
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        pending, queue = {}, list(reversed(configs))
        while queue or pending:
            while queue and len(pending) < workers:
                config = queue.pop()
                pending[pool.submit(task, config)] = config
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield pending.pop(future), future.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def dask(task: Task, configs: list[Config], address: str | None, workers: int) -> Iterator[tuple[Config, Any]]:
    """Runs on the dask.distributed cluster at `address`, or on a LocalCluster of `workers` processes
    (one thread each) when no address is given. The client gathers the results."""
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise RuntimeError("--executor dask needs dask.distributed: pip install 'gradlab[dask]'") from None
    cluster = None
    if address is None:
        with _one_blas_thread():
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None)
    client = Client(address if address is not None else cluster)
    try:
        futures = {client.submit(task, config, pure=False): config for config in configs}
        for future in as_completed(futures):
            yield futures[future], future.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
