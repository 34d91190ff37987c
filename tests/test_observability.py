"""before_task / after_task hooks, and what ringpool logs (logger "ringpool")."""

from __future__ import annotations

import logging
import threading
import time

import pytest

import ringpool
from ringpool import TaskInfo, TaskOutcome

pytestmark = pytest.mark.timeout(60)

LOGGER = "ringpool"


def square(x: int) -> int:
    return x * x


def fails(x: int) -> None:
    raise KeyError(x)


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def _records(caplog, needle: str, level: int | None = None) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if r.name == LOGGER and needle in r.getMessage() and (level is None or r.levelno == level)]


class Recorder:
    """Thread-safe record of hook calls: (thread name, info[, outcome])."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.before: list[tuple[str, TaskInfo]] = []
        self.after: list[tuple[str, TaskInfo, TaskOutcome]] = []

    def before_task(self, info):
        with self.lock:
            self.before.append((threading.current_thread().name, info))

    def after_task(self, info, outcome):
        with self.lock:
            self.after.append((threading.current_thread().name, info, outcome))


# -- hooks ---------------------------------------------------------------------

def test_hooks_run_once_per_task_on_the_worker(pool_factory):
    rec = Recorder()
    pool = pool_factory(3, name="hooked", before_task=rec.before_task, after_task=rec.after_task)
    ran_on: dict[int, str] = {}

    def task(i):
        ran_on[i] = threading.current_thread().name
        return square(i)

    n = 30
    futures = [pool.submit(task, i) for i in range(n)]
    assert [f.result(timeout=30) for f in futures] == [i * i for i in range(n)]
    assert pool.shutdown(wait=True, timeout=30)  # after_task runs after the future completes

    assert len(rec.before) == len(rec.after) == n
    assert sorted(info.args[0] for _, info in rec.before) == list(range(n))
    assert sorted(info.args[0] for _, info, _ in rec.after) == list(range(n))
    main = threading.main_thread().name
    for thread_name, info in rec.before:
        assert isinstance(info, TaskInfo)
        assert thread_name != main
        assert thread_name.startswith("hooked")
        assert info.worker == thread_name
        assert info.pool == "hooked"
        assert info.task == task.__qualname__
        assert info.fn is task
        assert info.kwargs == {}
        assert ran_on[info.args[0]] == thread_name  # same worker as the task itself
    for thread_name, info, outcome in rec.after:
        assert isinstance(outcome, TaskOutcome)
        assert info.worker == thread_name == ran_on[info.args[0]]
        assert outcome.ok is True
        assert outcome.result == info.args[0] ** 2
        assert outcome.exception is None
        assert outcome.duration_s >= 0
    assert "hooked" in repr(rec.before[0][1])


def test_after_task_sees_failures_and_durations(pool_factory):
    rec = Recorder()
    pool = pool_factory(2, name="hooked-fail", after_task=rec.after_task, failure_log_level=None)
    fut_fail = pool.submit(fails, 7)
    fut_sleep = pool.submit(time.sleep, 0.02)
    fut_kw = pool.submit(int, "ff", base=16)
    assert isinstance(fut_fail.exception(timeout=30), KeyError)
    assert fut_sleep.result(timeout=30) is None
    assert fut_kw.result(timeout=30) == 255
    assert pool.shutdown(wait=True, timeout=30)

    by_task = {info.task: (info, outcome) for _, info, outcome in rec.after}
    assert len(rec.after) == 3
    info, outcome = by_task["fails"]
    assert outcome.ok is False
    assert outcome.result is None
    assert isinstance(outcome.exception, KeyError) and outcome.exception is fut_fail.exception()
    assert outcome.duration_s >= 0
    info, outcome = by_task["sleep"]
    assert outcome.ok and outcome.duration_s >= 0.02 * 0.99
    info, outcome = by_task["int"]
    assert info.kwargs == {"base": 16} and info.args == ("ff",)
    assert outcome.result == 255
    assert "ok=" in repr(outcome)


@pytest.mark.parametrize("which", ["before_task", "after_task"])
def test_a_raising_hook_is_logged_and_the_worker_keeps_going(pool_factory, caplog, which):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    calls = []

    def bad_hook(*args):
        calls.append(threading.current_thread().name)
        raise RuntimeError("hook failure")

    pool = pool_factory(1, name="badhook", **{which: bad_hook})
    futures = [pool.submit(square, i) for i in range(10)]
    assert [f.result(timeout=30) for f in futures] == [i * i for i in range(10)]
    assert pool.shutdown(wait=True, timeout=30)
    assert len(calls) == 10

    records = _records(caplog, f"{which} hook raised")
    assert len(records) == 10
    for r in records:
        assert r.levelno == logging.ERROR
        assert r.exc_info is not None and isinstance(r.exc_info[1], RuntimeError)
        assert r.pool == "badhook"
        assert r.worker == calls[0]
        assert r.task == "square"
    s = pool.stats()
    assert s.completed == 10 and s.failed == 0


def test_hooks_must_be_callable():
    with pytest.raises(TypeError, match="before_task"):
        ringpool.Pool(1, before_task=42)
    with pytest.raises(TypeError, match="after_task"):
        ringpool.Pool(1, after_task="nope")


# -- failure logging -----------------------------------------------------------

def test_failures_logged_at_the_configured_level_with_extras(pool_factory, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    pool = pool_factory(1, name="warned", failure_log_level=logging.WARNING)
    exc = pool.submit(fails, 3).exception(timeout=30)
    assert isinstance(exc, KeyError)
    assert pool.shutdown(wait=True, timeout=30)

    records = _records(caplog, "task fails failed")
    assert len(records) == 1
    r = records[0]
    assert r.levelno == logging.WARNING
    assert r.pool == "warned"
    assert r.worker.startswith("warned")
    assert r.task == "fails"
    assert hasattr(r, "duration_s")
    assert r.duration_s is None or r.duration_s >= 0
    assert r.exc_info is not None and r.exc_info[1] is exc


def test_failure_log_records_a_duration_when_hooks_are_set(pool_factory, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    pool = pool_factory(1, name="timed", failure_log_level=logging.ERROR, after_task=lambda i, o: None)
    pool.submit(fails, 1).exception(timeout=30)
    assert pool.shutdown(wait=True, timeout=30)
    (r,) = _records(caplog, "task fails failed")
    assert r.levelno == logging.ERROR
    assert isinstance(r.duration_s, float) and r.duration_s >= 0


def test_failures_logged_at_debug_by_default(pool_factory, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    pool = pool_factory(1, name="dbg")
    pool.submit(fails, 1).exception(timeout=30)
    assert pool.shutdown(wait=True, timeout=30)
    records = _records(caplog, "task fails failed")
    assert [r.levelno for r in records] == [logging.DEBUG]
    assert records[0].pool == "dbg" and records[0].task == "fails"


def test_default_level_is_silent_above_debug(pool_factory, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    pool = pool_factory(1, name="quiet")
    pool.submit(fails, 1).exception(timeout=30)
    assert pool.shutdown(wait=True, timeout=30)
    assert _records(caplog, "failed") == []


def test_failure_log_level_none_logs_nothing(pool_factory, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    pool = pool_factory(1, name="silent", failure_log_level=None, after_task=lambda i, o: None)
    for f in [pool.submit(fails, i) for i in range(5)]:
        assert isinstance(f.exception(timeout=30), KeyError)
    assert pool.shutdown(wait=True, timeout=30)
    assert _records(caplog, "failed") == []
    assert not [r for r in caplog.records if r.name == LOGGER and r.exc_info]
    assert pool.stats().failed == 5


def test_failure_log_level_is_validated():
    with pytest.raises(TypeError):
        ringpool.Pool(1, failure_log_level="WARNING")
    with pytest.raises(ValueError):
        ringpool.Pool(1, failure_log_level=-1)


# -- lifecycle logging ----------------------------------------------------------

def test_pool_and_worker_lifecycle_logged_at_debug(caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    pool = ringpool.Pool(2, name="life")
    try:
        barrier = threading.Barrier(2, timeout=10)
        for f in [pool.submit(barrier.wait) for _ in range(2)]:
            f.result(timeout=30)
    finally:
        assert pool.shutdown(wait=True, timeout=30)

    started = _records(caplog, "pool life started")
    assert len(started) == 1 and started[0].levelno == logging.DEBUG and started[0].pool == "life"
    assert [r.levelno for r in _records(caplog, "pool life shutting down")] == [logging.DEBUG]
    assert [r.levelno for r in _records(caplog, "pool life stopped")] == [logging.DEBUG]

    worker_started = _records(caplog, "started", logging.DEBUG)
    worker_started = [r for r in worker_started if getattr(r, "worker", None) and r.pool == "life"]
    assert sorted(r.worker for r in worker_started) == ["life_0", "life_1"]
    assert _wait_for(lambda: len([r for r in _records(caplog, "exits")
                                  if getattr(r, "pool", None) == "life"]) == 2)
    exits = [r for r in _records(caplog, "exits") if r.pool == "life"]
    assert sorted(r.worker for r in exits) == ["life_0", "life_1"]
    assert all(r.levelno == logging.DEBUG for r in exits)
    # nothing above DEBUG for a healthy pool's life
    assert not [r for r in caplog.records if r.name == LOGGER and r.levelno > logging.DEBUG
                and getattr(r, "pool", None) == "life"]


def test_resize_logged_at_debug(pool_factory, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    pool = pool_factory(2, name="rs")
    pool.resize(max_workers=4)
    pool.resize(min_workers=1)
    pool.resize(max_workers=4)  # no change: not logged
    records = _records(caplog, "pool rs resized")
    assert len(records) == 2
    for r in records:
        assert r.levelno == logging.DEBUG
        assert r.pool == "rs"
    assert "0..2 -> 0..4" in records[0].getMessage()
    assert "0..4 -> 1..4" in records[1].getMessage()
    s = pool.stats()
    assert (s.min_workers, s.max_workers) == (1, 4)
