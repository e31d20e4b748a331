"""Where runs execute: in this process, in a local pool of worker processes, or on a Dask cluster.

Each executor's map(task, configs) yields (config, outcome) pairs as runs finish; the caller writes
them, so every executor stores alike. The outcome is the task's return value, or a Lost when the
worker died holding that run (the kernel's OOM killer sends SIGKILL): the sweep goes on without it.
A SIGTERM or SIGINT to the sweep's process raises Interrupted (a KeyboardInterrupt) there, and the
executor stops its workers before the exception leaves map().
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import connection
from typing import Any

from gradlab import _process

Config = dict[str, Any]
Task = Callable[[Config], Any]
EXECUTORS = ("serial", "process", "dask")
CONNECT_TIMEOUT_S = 5.0  # a Dask scheduler that does not answer within this is reported unreachable
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT) + ((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ())
STOP_GRACE_S = 1.0  # how long a worker's stop signal waits for the same signal to reach the parent


class ExecutorError(RuntimeError):
    """An executor that cannot start (Dask missing, a scheduler unreachable), in one line."""


class Interrupted(KeyboardInterrupt):
    """The sweep was told to stop by a signal (SIGTERM from Slurm, systemd or docker; SIGINT, Ctrl-C)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass(frozen=True)
class Lost:
    """A run whose worker died before returning it."""

    reason: str


class Executor:
    """Runs tasks: map(task, configs) yields (config, outcome) as they finish; close() frees workers."""

    def map(self, task: Task, configs: list[Config]) -> Iterator[tuple[Config, Any]]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Serial(Executor):
    def map(self, task: Task, configs: list[Config]) -> Iterator[tuple[Config, Any]]:
        for config in configs:
            yield config, task(config)


class Processes(Executor):
    """A pool of at most `workers` fresh ("spawn") processes with one BLAS thread each, one run in
    flight per worker, so an interrupted sweep loses at most those; a dead worker is replaced."""

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def map(self, task: Task, configs: list[Config]) -> Iterator[tuple[Config, Any]]:
        ctx = multiprocessing.get_context("spawn")
        queue, idle, busy = deque(configs), [], {}
        size = max(1, min(self.workers, len(queue)))
        try:
            while queue or busy:
                while queue and len(busy) < size:
                    worker = idle.pop() if idle else _Worker(ctx, task)
                    busy[worker] = queue.popleft()
                    worker.send(busy[worker])
                ready = set(connection.wait([w.conn for w in busy] + [w.process.sentinel for w in busy]))
                for worker in [w for w in busy if w.conn in ready or w.process.sentinel in ready]:
                    config, outcome = busy.pop(worker), worker.receive()
                    if isinstance(outcome, Lost):
                        worker.stop()
                        _wait_if_stopping(worker.process.exitcode)
                    else:
                        idle.append(worker)
                    yield config, outcome
        finally:
            for worker in [*busy, *idle]:
                worker.stop()


class _Worker:
    """One pool process and the pipe its runs and results go through."""

    def __init__(self, ctx, task: Task) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, task), daemon=True)
        with _process.settings(child_blas_threads=1), _sigint_ignored():
            self.process.start()
        child.close()

    def send(self, config: Config) -> None:
        try:
            self.conn.send(config)
        except OSError:
            pass  # the worker is already dead: its sentinel is ready and receive() says why

    def receive(self) -> Any:
        """The worker's result, or Lost with why it died."""
        try:
            if self.conn.poll():
                return self.conn.recv()
        except (EOFError, OSError):
            pass
        self.process.join(timeout=5)
        return Lost(describe_exit(self.process.exitcode))

    def stop(self) -> None:
        """End the process (SIGTERM, then SIGKILL), within a few seconds."""
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=3)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=3)
        self.conn.close()


def _wait_if_stopping(exitcode: int | None) -> None:
    """After a worker died of a stop signal: wait STOP_GRACE_S, in which the parent's own handler raises
    Interrupted if the signal was the sweep's (a process group's SIGTERM reaches the worker first at times).
    A signal sent to that worker alone costs only its run: the sweep goes on."""
    if exitcode is not None and -exitcode in STOP_SIGNALS:
        time.sleep(STOP_GRACE_S)


def _serve(conn, task: Task) -> None:
    """A worker's loop: run each config received, send back the outcome; end at None, or when the parent's
    end of the pipe is gone (it exited, or was killed)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    while True:
        try:
            config = conn.recv()
            if config is None:
                return
            conn.send(task(config))
        except (EOFError, OSError):  # ConnectionResetError, BrokenPipeError: no one to answer to
            return


def _exit_with_parent(parent: int) -> None:
    """Exit this worker soon after its parent dies (even by SIGKILL), so that no worker is orphaned."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def describe_exit(code: int | None) -> str:
    """Why a worker process ended, for a failed run's error column."""
    if code is None:
        return "its worker stopped responding"
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else "?"
        oom = ", possibly out of memory" if -code == getattr(signal, "SIGKILL", 9) else ""
        return f"its worker was killed by signal {-code} ({name}){oom}"
    return f"its worker exited with code {code}"


class Dask(Executor):
    """Runs on the dask.distributed cluster at `address` (connected at once, so that an unreachable
    one fails before anything is written), or on a LocalCluster of up to `workers` processes (one
    thread each) started when there are runs to do. The client gathers the results."""

    def __init__(self, address: str | None, workers: int, timeout: float = CONNECT_TIMEOUT_S) -> None:
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise ExecutorError("--executor dask needs dask.distributed: pip install 'gradlab[dask]'") from None
        self.address, self.workers, self.client, self.cluster = address, workers, None, None
        if address is not None:
            from distributed import Client

            try:
                self.client = Client(address, timeout=f"{timeout}s")
            except (OSError, TimeoutError, ValueError) as err:
                reason = str(err).splitlines()[0] if str(err) else type(err).__name__
                raise ExecutorError(f"--address {address}: cannot reach a Dask scheduler there ({reason})") from None

    def map(self, task: Task, configs: list[Config]) -> Iterator[tuple[Config, Any]]:
        from distributed import Client, KilledWorker, LocalCluster, as_completed

        if not configs:
            return
        if self.client is None:
            with _process.settings(child_blas_threads=1):
                self.cluster = LocalCluster(n_workers=max(1, min(self.workers, len(configs))), threads_per_worker=1,
                                            processes=True, host="127.0.0.1", dashboard_address=None)  # fmt: skip
            self.client = Client(self.cluster)
        futures = {self.client.submit(task, config, pure=False): config for config in configs}
        try:
            for future in as_completed(futures):
                try:
                    outcome = future.result()
                except KilledWorker as err:
                    outcome = Lost(f"its Dask worker died each time it ran it ({type(err).__name__}), possibly out of memory")
                except Exception as err:  # noqa: BLE001 - a lost task must not take the sweep down
                    outcome = Lost(f"Dask could not run it: {type(err).__name__}: {err}".splitlines()[0])
                yield futures[future], outcome
        finally:
            self.client.cancel(list(futures))

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def make(name: str, workers: int, address: str | None = None) -> Executor:
    """The executor called `name` (one of EXECUTORS)."""
    if name == "serial":
        return Serial()
    if name == "process":
        return Processes(workers)
    if name == "dask":
        return Dask(address, workers)
    raise ExecutorError(f"executor {name!r}: must be one of {', '.join(EXECUTORS)}")


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM (and SIGHUP) raise Interrupted like Ctrl-C raises KeyboardInterrupt, so
    that the executors stop their workers; outside the main thread this does nothing."""
    def stop(signum, frame):
        raise Interrupted(signum)

    wanted = [s for s in STOP_SIGNALS if s != signal.SIGINT]
    try:
        saved = {s: signal.signal(s, stop) for s in wanted}
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Processes started inside this block ignore SIGINT from their first instruction (an ignored
    signal stays ignored across exec), so Ctrl-C never prints tracebacks from half-started workers."""
    try:
        saved = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, saved)
