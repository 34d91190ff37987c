"""Smoke test of an installed ringpool: the one test run against every wheel.

cibuildwheel copies only this file (``test-sources`` in pyproject.toml) and
runs it from a temporary directory, and ``.ci/run release`` runs it from a
venv where the sdist is installed, so it must be self-contained: no
conftest.py fixtures, no helpers from tests/, nothing but ringpool, the
standard library and pytest. It is also an ordinary, fast (< 2 s) test of
the normal suite.

It exercises the compiled core end to end (worker threads entering Python,
the ring, parking, completion, counters) with Python tasks and with native
(nogil C) tasks. The native functions are built into the extension
(``_core._selftest_functions()``), since a wheel's test machine may have no
C compiler.
"""

from __future__ import annotations

import concurrent.futures

import pytest

import ringpool
from ringpool import _core

N_TASKS = 300


def _square(x: int) -> int:
    return x * x


def _fail(x: int) -> int:
    raise ValueError(x)


def test_import_and_build_info() -> None:
    assert isinstance(ringpool.__version__, str) and ringpool.__version__
    info = _core.build_info()
    assert isinstance(info, dict)
    assert info["cpu_count"] >= 1


def test_submit_map_shutdown_stats() -> None:
    pool = ringpool.Pool(4, name="smoke")
    try:
        futures = [pool.submit(_square, i) for i in range(N_TASKS)]
        assert [f.result(timeout=30) for f in futures] == [i * i for i in range(N_TASKS)]
        assert all(isinstance(f, concurrent.futures.Future) for f in futures)

        assert list(pool.map(_square, range(N_TASKS), timeout=30)) == [i * i for i in range(N_TASKS)]
        assert list(pool.map(pow, range(50), range(50), timeout=30)) == [i**i for i in range(50)]

        bad = pool.submit(_fail, 7)
        with pytest.raises(ValueError):
            bad.result(timeout=30)
        assert isinstance(bad.exception(), ValueError)
    finally:
        assert pool.shutdown(wait=True, timeout=30) is True

    with pytest.raises(RuntimeError):  # PoolClosed is a RuntimeError, as in the stdlib
        pool.submit(_square, 1)

    s = pool.stats()
    assert s.closed
    assert s.name == "smoke"
    # map() runs items in chunks (one engine task per chunk), so it adds at
    # least one task but fewer than one per item.
    assert N_TASKS + 1 + 2 <= s.submitted <= 2 * N_TASKS + 50 + 1
    assert s.failed == 1
    assert s.completed == s.submitted - 1
    assert s.cancelled == 0 and s.queued == 0 and s.running == 0
    assert s.accounted
    assert s.run_time.count in (0, s.submitted)  # 0 when metrics are off
    assert s.live_workers == 0  # shutdown(wait=True) joined every worker


def test_context_manager_matches_thread_pool() -> None:
    with ringpool.Pool(2) as pool, concurrent.futures.ThreadPoolExecutor(2) as tpe:
        assert list(pool.map(str, range(100))) == list(tpe.map(str, range(100)))


def test_native_tasks_batches_and_parallel_for() -> None:
    import array

    fns = _core._selftest_functions()
    counter = array.array("q", [0])
    with ringpool.Pool(4, name="smoke-native") as pool:
        futures = [pool.submit_native(fns["add_one"], counter) for _ in range(N_TASKS)]
        assert [f.result(timeout=30) for f in futures] == [0] * N_TASKS
        assert counter[0] == N_TASKS
        with pytest.raises(ringpool.NativeTaskError) as info:
            pool.submit_native(fns["return_arg"], 5).result(timeout=30)
        assert info.value.code == 5

        batch = pool.submit_native_many(fns["return_arg"], N_TASKS)
        assert batch.wait(timeout=30)
        assert list(batch.statuses) == list(range(N_TASKS))
        assert batch.failed == N_TASKS - 1

        pool.parallel_for(100_003, fns["count"], counter)
        assert counter[0] == N_TASKS + 100_003

        mixed = [pool.submit(_square, i) if i % 2 else pool.submit_native(fns["return_arg"], 0)
                 for i in range(100)]
        assert [f.result(timeout=30) for f in mixed] == [i * i if i % 2 else 0 for i in range(100)]
    with pytest.raises(RuntimeError):
        pool.submit_native(fns["add_one"], counter)
