"""One million tasks leave nothing behind: arguments, results and futures are
freed once the caller drops them, and the process's memory returns near where
it started."""

from __future__ import annotations

import concurrent.futures as cf
import gc
import os
import threading
import weakref

import pytest

import ringpool
from ringpool import _core

TOTAL_TASKS = 1_000_000
BATCH = 100_000
SAMPLE_EVERY = 1_000  # one task in this many carries a tracked argument and result
RSS_SLACK_BYTES = 50 * 1024 * 1024
T = 60.0


class Box:
    """A small object whose lifetime we follow with weak references."""

    __slots__ = ("value", "__weakref__")

    def __init__(self, value):
        self.value = value


class TaskError(ValueError):
    """A weak-referenceable exception (built-in exceptions are not)."""


def _noop():
    return None


def _unbox(box: Box) -> Box:
    return Box(box.value + 1)


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            resident_pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def _run_batch(pool: ringpool.Pool, n: int, start: int, refs: list[weakref.ref]) -> None:
    futures = []
    for i in range(start, start + n):
        if i % SAMPLE_EVERY == 0:
            arg = Box(i)
            fut = pool.submit(_unbox, arg)
            refs.append(weakref.ref(arg))
            refs.append(weakref.ref(fut))
            del arg
        else:
            fut = pool.submit(_noop)
        futures.append(fut)
    done, not_done = cf.wait(futures, timeout=T)
    assert not not_done, f"{len(not_done)} futures never finished"
    for i, fut in zip(range(start, start + n), futures, strict=True):
        if i % SAMPLE_EVERY == 0:
            result = fut.result(timeout=0)
            assert result.value == i + 1
            refs.append(weakref.ref(result))
            del result
        else:
            assert fut.result(timeout=0) is None
    del futures, fut, done, not_done


@pytest.mark.skipif(bool(ringpool._core.build_info()["sanitizer"]),
                    reason="a sanitizer's quarantine holds freed memory: RSS is not the program's")
@pytest.mark.timeout(180)
def test_million_tasks_do_not_leak():
    pool = ringpool.Pool(2)
    try:
        refs: list[weakref.ref] = []
        # Warm up: first-use allocations (freelists, the ring, thread states)
        # are not leaks.
        _run_batch(pool, BATCH, 0, [])
        gc.collect()
        rss_start = _rss_bytes()

        done_tasks = BATCH
        while done_tasks < TOTAL_TASKS:
            _run_batch(pool, BATCH, done_tasks, refs)
            done_tasks += BATCH

        gc.collect()
        alive = [r for r in refs if r() is not None]
        assert not alive, (
            f"{len(alive)} of {len(refs)} tracked arguments/results/futures are still "
            f"alive, e.g. {alive[0]()!r}"
        )
        assert len(refs) == 3 * (TOTAL_TASKS - BATCH) // SAMPLE_EVERY

        s = pool.stats()
        assert s.submitted == s.completed == TOTAL_TASKS
        assert s.failed == s.cancelled == s.queued == 0

        rss_end = _rss_bytes()
        if rss_start is not None and rss_end is not None:
            growth = rss_end - rss_start
            assert growth < RSS_SLACK_BYTES, f"RSS grew by {growth / 2**20:.1f} MiB over {TOTAL_TASKS} tasks"
    finally:
        assert pool.shutdown(wait=True, timeout=T)
    assert _core.wait_for_workers(T)


@pytest.mark.timeout(120)
def test_failed_and_cancelled_tasks_do_not_leak():
    """Exceptions (with their tracebacks) and cancelled tasks' arguments are
    freed too."""
    refs: list[weakref.ref] = []
    pool = ringpool.Pool(1)
    try:
        started, release = threading.Event(), threading.Event()

        def block():
            started.set()
            release.wait(T)

        def fail(box):
            raise TaskError(box)

        blocker = pool.submit(block)
        assert started.wait(T)
        futures = []
        for i in range(2000):
            box = Box(i)
            refs.append(weakref.ref(box))
            futures.append(pool.submit(fail if i % 2 else _unbox, box))
            del box
        for fut in futures[::4]:
            assert fut.cancel()
        release.set()
        blocker.result(timeout=T)
        cf.wait(futures, timeout=T)
        errors = [f.exception(timeout=0) for f in futures if not f.cancelled()]
        assert sum(isinstance(e, TaskError) for e in errors) == 1000
        refs.extend(weakref.ref(e) for e in errors if e is not None)
        refs.extend(weakref.ref(f) for f in futures)
        del errors, futures, fut
        gc.collect()
        alive = [r for r in refs if r() is not None]
        assert not alive, f"{len(alive)} of {len(refs)} objects still alive, e.g. {alive[0]()!r}"
    finally:
        assert pool.shutdown(wait=True, timeout=T)
