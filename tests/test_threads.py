"""gradlab._process's thread rule: a large product gets one BLAS thread per free core (CoreRule), a small one
and a pool worker's one thread. The thread counts are checked, never the time."""

from __future__ import annotations

import pytest

from gradlab import _process
from gradlab._process import CHECK_EVERY, SMALL_PRODUCT, CoreRule
from gradlab.sweep import executors

HZ = 100  # ticks per second of the fake /proc/stat


class FakeMachine:
    """A 2-CPU machine whose other processes keep `others` cores busy while this one uses `mine`."""

    def __init__(self, others: float, mine: float = 1.0, running: int = 1) -> None:
        self.others, self.mine, self.running = others, mine, running
        self.t = self.busy = self.total = self.own = 0.0

    def advance(self, seconds: float) -> None:
        self.t += seconds
        self.own += self.mine * seconds
        self.busy += (self.others + self.mine) * seconds * HZ
        self.total += 2 * seconds * HZ

    def read(self) -> tuple[int, int, int]:
        return int(self.busy), int(self.total), self.running

    def rule(self, most: int = 2) -> CoreRule:
        return CoreRule(most, 2, read=self.read, own=lambda: self.own, clock=lambda: self.t, hz=HZ)


@pytest.mark.parametrize("others, want", [(0.0, 2), (0.1, 2), (0.3, 1), (1.0, 1), (1.7, 1)])
def test_a_large_product_gets_the_cores_the_other_processes_leave_free(others, want):
    machine = FakeMachine(others)
    rule = machine.rule()
    rule.threads()  # the first look starts the interval
    machine.advance(CHECK_EVERY)
    assert rule.threads() == want, f"others use {others} cores: want {want} threads, got {rule.threads()}"


@pytest.mark.parametrize("mine", [1.0, 2.0])
def test_this_process_own_threads_do_not_count_as_busy(mine):
    machine = FakeMachine(others=0.0, mine=mine)  # this process alone, on one core or spinning on both
    rule = machine.rule()
    rule.threads()
    machine.advance(CHECK_EVERY)
    assert rule.threads() == 2, f"this process uses {mine} cores and nothing else runs: got {rule.threads()} threads"


def test_the_rule_looks_again_after_each_interval_and_not_before():
    machine = FakeMachine(others=0.0)
    rule = machine.rule()
    rule.threads()
    machine.advance(CHECK_EVERY)
    assert rule.threads() == 2
    machine.others = 1.0  # another process starts
    machine.advance(CHECK_EVERY / 2)
    assert rule.threads() == 2, "looked again before CHECK_EVERY had passed"
    machine.advance(CHECK_EVERY / 2)
    assert rule.threads() == 1, "another process holds a core, yet the rule kept 2 threads"
    machine.others = 0.0
    machine.advance(CHECK_EVERY)
    assert rule.threads() == 2, "the core is free again, yet the rule stayed on 1 thread"


@pytest.mark.parametrize("running, want", [(1, 2), (2, 1), (5, 1)])
def test_at_the_start_the_rule_counts_the_runnable_threads(running, want):
    rule = FakeMachine(others=0.0, running=running).rule()
    assert rule.threads() == want, f"{running} runnable threads (this one included): want {want}, got {rule.threads()}"


def test_a_process_started_with_one_thread_never_gets_more():
    machine = FakeMachine(others=0.0)
    rule = machine.rule(most=1)
    machine.advance(CHECK_EVERY)
    assert rule.threads() == 1


def test_without_proc_stat_a_large_product_gets_every_thread():
    rule = CoreRule(2, 2, read=lambda: None)
    assert rule.threads() == 2


needs_setter = pytest.mark.skipif(_process.current_threads() is None, reason="NumPy's BLAS is not an OpenBLAS >= 0.3.27")


@needs_setter
def test_alone_threads_for_sets_this_thread_s_blas_threads(monkeypatch):
    monkeypatch.setattr(_process, "AUTO", True)
    machine = FakeMachine(others=0.0)
    monkeypatch.setattr(_process, "RULE", machine.rule())
    _process.RULE.threads()
    machine.advance(CHECK_EVERY)
    before = _process.current_threads()
    with _process.threads_for(SMALL_PRODUCT - 1):
        small = _process.current_threads()
    with _process.threads_for(SMALL_PRODUCT):
        large = _process.current_threads()
    machine.others = 1.0
    machine.advance(CHECK_EVERY)
    with _process.threads_for(SMALL_PRODUCT):
        held = _process.current_threads()
    assert (small, large, held) == (1, 2, 1), f"small, large, large with a core held: want (1, 2, 1), got {(small, large, held)}"
    assert _process.current_threads() == before, "threads_for did not restore the thread count"


def report_threads(_config) -> tuple[int, int | None]:
    """In a pool worker: the threads the rule allows and those a large product runs with."""
    with _process.threads_for(1 << 30):
        return _process.RULE.most, _process.current_threads()


@needs_setter
def test_a_pool_worker_runs_every_product_on_one_thread():
    with executors.Processes(2) as pool:
        results = [outcome for _, outcome in pool.map(report_threads, [0, 1])]
    assert results == [(1, 1), (1, 1)], f"pool workers (rule's most, threads of a large product): want (1, 1), got {results}"


@needs_setter
def test_while_a_helper_thread_works_the_products_leave_its_core(monkeypatch):
    monkeypatch.setattr(_process, "AUTO", True)
    machine = FakeMachine(others=0.0)
    monkeypatch.setattr(_process, "RULE", machine.rule())
    _process.RULE.threads()
    machine.advance(CHECK_EVERY)
    with _process.helper_at_work():
        with _process.threads_for(SMALL_PRODUCT):
            during = _process.current_threads()
    with _process.threads_for(SMALL_PRODUCT):
        after = _process.current_threads()
    assert (during, after) == (1, 2), f"a large product while a helper works and after: want (1, 2), got {(during, after)}"


def test_the_thread_measurement_pairs_every_repeat():
    from gradlab.bench.threads import paired

    t1, t2, ratios = paired(8, 16, 8, "float64", repeats=5)
    assert len(ratios) == 5 and all(r > 0 for r in ratios), f"want 5 positive ratios, got {ratios}"
    assert t1 > 0 and t2 > 0, f"medians must be positive times, got {t1}, {t2}"


@needs_setter
def test_by_default_every_product_runs_on_one_thread_so_results_never_depend_on_the_load(monkeypatch):
    """Without GRADLAB_THREADS=auto a large product on a free machine still gets one thread: OpenBLAS's
    results differ across thread counts, and a run must give the same numbers however loaded the machine."""
    monkeypatch.setattr(_process, "AUTO", False)
    machine = FakeMachine(others=0.0)
    monkeypatch.setattr(_process, "RULE", machine.rule())
    _process.RULE.threads()
    machine.advance(CHECK_EVERY)
    with _process.threads_for(1 << 30):
        threads = _process.current_threads()
    assert threads == 1, f"a large product without GRADLAB_THREADS=auto: want 1 thread, got {threads}"
