"""A typed tour of ringpool's public API, checked with ``mypy --strict``.

tests/test_typing.py type-checks this file (and runs it), so it shows what a
user's type checker infers: generic futures from ``submit``, ``PoolStats``
fields, and the exception classes with their standard bases.
"""

from __future__ import annotations

import concurrent.futures
import sys
import time
from collections.abc import Iterator

import ringpool

if sys.version_info >= (3, 11):
    from typing import assert_type
else:  # pragma: no cover - 3.10: a runtime no-op with the same meaning
    from typing import Any, TypeVar

    _T = TypeVar("_T")

    def assert_type(value: _T, typ: Any, /) -> _T:
        return value


def square(x: int) -> int:
    return x * x


def greet(name: str, *, punctuation: str = "!") -> str:
    return f"hello {name}{punctuation}"


def fail() -> None:
    raise ValueError("boom")


def cooperative() -> str:
    ctx = ringpool.current_task()
    assert ctx is not None
    remaining: float | None = ctx.remaining()
    assert remaining is not None
    while not ctx.cancelled:
        time.sleep(0.001)
    return "stopped"


def main() -> None:
    with ringpool.Pool(4, name="typed", queue_size=64, on_full="block") as pool:
        # submit() is generic over the callable's parameters and return type.
        fut = pool.submit(square, 3)
        assert_type(fut, ringpool.Future[int])
        n: int = fut.result(timeout=10)
        assert n == 9

        g = pool.submit(greet, "world", punctuation="?")
        assert_type(g.result(), str)

        # try_submit() never waits; the future is typed the same way.
        t = pool.try_submit(square, 4)
        assert_type(t, ringpool.Future[int])

        # Interoperates with the stdlib helpers.
        futures: list[concurrent.futures.Future[int]] = [fut, t]
        done, _ = concurrent.futures.wait(futures, timeout=10)
        assert len(done) == 2

        # map() is lazy and ordered, like Executor.map.
        squares: Iterator[int] = pool.map(square, range(100), timeout=10)
        total = sum(squares)
        assert total == sum(i * i for i in range(100))

        # A task's exception is raised by result() and returned by exception().
        bad = pool.submit(fail)
        err = bad.exception(timeout=10)
        assert isinstance(err, ValueError)

        # Deadlines: the task sees its context; the future fails at the deadline.
        late = pool.schedule(cooperative, (), timeout=0.01)
        try:
            late.result(timeout=10)
        except ringpool.TaskTimeout as timeout_exc:
            as_timeout: TimeoutError = timeout_exc
            assert as_timeout is timeout_exc
        requested: bool = late.request_cancel()
        assert requested is False  # it has finished (with TaskTimeout)
        assert ringpool.current_task() is None

        # Native tasks (functions built into the extension, for tests).
        fns = ringpool._core._selftest_functions()
        code = pool.submit_native(fns["return_arg"], 0).result(timeout=10)
        assert_type(code, int)
        batch: ringpool.NativeBatch = pool.submit_native_many(fns["return_arg"], 10)
        assert batch.wait(timeout=10) and batch.failed == 9
        counter = bytearray(8)
        pool.parallel_for(1000, fns["count"], counter)
        assert int.from_bytes(counter, sys.byteorder) == 1000

        stats: ringpool.PoolStats = pool.stats()
        expired: int = stats.expired
        overran: int = stats.overran
        assert expired + overran >= 1
        submitted: int = stats.submitted
        capacity: int | None = stats.queue_capacity
        p99: float = stats.run_time.percentile(99)
        ratio: float = stats.failure_ratio
        assert submitted >= 4 and capacity == 64 and p99 >= 0.0 and 0.0 <= ratio <= 1.0

    # Errors subclass what concurrent.futures users already catch.
    try:
        pool.submit(square, 1)
    except ringpool.PoolClosed as exc:
        assert_type(exc, ringpool.PoolClosed)
        runtime_error: RuntimeError = exc
        assert isinstance(runtime_error, ringpool.RingpoolError)
    else:
        raise AssertionError("submit after shutdown must raise")

    overloaded = ringpool.PoolOverloaded("typed", 64, 0.5)
    name: str = overloaded.pool
    size: int = overloaded.queue_size
    waited: float = overloaded.waited
    assert (name, size, waited) == ("typed", 64, 0.5)
    broken: concurrent.futures.BrokenExecutor = ringpool.BrokenPool("initializer failed")
    assert isinstance(broken, ringpool.RingpoolError)


if __name__ == "__main__":
    main()
    print("ok")
