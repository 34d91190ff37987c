"""The ``concurrent.futures.Executor`` contract, checked on both
``ThreadPoolExecutor`` (the oracle) and ``ringpool.Pool``.

Every test takes ``executor_factory`` (see conftest.py), so it runs once per
executor kind. Ordering is controlled with events and barriers, never with
sleeps; time limits are generous upper bounds that only catch hangs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import logging
import threading
import time

import pytest

import ringpool

pytestmark = pytest.mark.timeout(60)

#: Upper bound for anything that should finish at once ("does not hang").
T = 30.0


def _wait_running(started: threading.Event) -> None:
    assert started.wait(T), "the task never started"


def _blocker(started: threading.Event, release: threading.Event, value=None):
    started.set()
    assert release.wait(T)
    return value


def _identity(x):
    return x


def _echo(*args, **kwargs):
    return args, kwargs


# ---------------------------------------------------------------------------
# submit / result
# ---------------------------------------------------------------------------

def test_submit_result(executor_factory):
    ex = executor_factory(max_workers=2)
    assert ex.submit(pow, 2, 8).result(timeout=T) == 256


def test_submit_args_and_kwargs(executor_factory):
    ex = executor_factory(max_workers=2)
    fut = ex.submit(_echo, 1, "two", three=3, four=[4])
    assert fut.result(timeout=T) == ((1, "two"), {"three": 3, "four": [4]})
    # fn is positional-only: "fn" and "self" are ordinary keyword arguments.
    fut = ex.submit(_echo, fn=1, self=2)
    assert fut.result(timeout=T) == ((), {"fn": 1, "self": 2})
    assert ex.submit(_echo).result(timeout=T) == ((), {})


def test_futures_are_stdlib_futures(executor_factory):
    ex = executor_factory(max_workers=1)
    fut = ex.submit(_identity, 1)
    assert isinstance(fut, cf.Future)
    assert fut.result(timeout=T) == 1
    assert fut.done() and not fut.cancelled() and not fut.running()
    assert fut.exception(timeout=T) is None


def test_result_of_failed_task_raises(executor_factory):
    ex = executor_factory(max_workers=1)
    fut = ex.submit(int, "not a number")
    with pytest.raises(ValueError, match="invalid literal"):
        fut.result(timeout=T)
    assert isinstance(fut.exception(timeout=T), ValueError)


def test_result_timeout(executor_factory):
    ex = executor_factory(max_workers=1)
    started, release = threading.Event(), threading.Event()
    fut = ex.submit(_blocker, started, release, "late")
    _wait_running(started)
    with pytest.raises(cf.TimeoutError):  # TimeoutError itself from 3.11 on
        fut.result(timeout=0.01)
    release.set()
    assert fut.result(timeout=T) == "late"


# ---------------------------------------------------------------------------
# map
# ---------------------------------------------------------------------------

def test_map_results_in_input_order(executor_factory):
    ex = executor_factory(max_workers=4)
    assert list(ex.map(_identity, range(200), timeout=T)) == list(range(200))
    assert list(ex.map(_identity, [])) == []


def test_map_order_when_completion_is_out_of_order(executor_factory):
    # Item 0 cannot finish before item 5 has run: completion order differs
    # from input order, the output order must not.
    ex = executor_factory(max_workers=4)
    five_ran = threading.Event()

    def fn(i):
        if i == 0:
            five_ran.wait(T)
        if i == 5:
            five_ran.set()
        return i * 10

    assert list(ex.map(fn, range(8), timeout=T)) == [i * 10 for i in range(8)]
    assert five_ran.is_set()


def test_map_multiple_iterables(executor_factory):
    ex = executor_factory(max_workers=2)
    # Stops at the shortest iterable, like the builtin map.
    assert list(ex.map(pow, [2, 3, 4], [5, 6], timeout=T)) == [32, 729]
    assert list(ex.map(_echo, "ab", (1, 2), [None, None], timeout=T)) == [
        (("a", 1, None), {}),
        (("b", 2, None), {}),
    ]


def test_map_timeout_raises_timeout_error(executor_factory):
    ex = executor_factory(max_workers=1)
    release = threading.Event()
    try:
        results = ex.map(release.wait, [T], timeout=0.05)
        with pytest.raises(cf.TimeoutError):  # TimeoutError itself from 3.11 on
            list(results)
    finally:
        release.set()


def test_map_exception_propagates_at_the_right_item(executor_factory):
    ex = executor_factory(max_workers=2)

    def fn(x):
        if x == 5:
            raise ValueError(f"bad item {x}")
        return x * 2

    it = ex.map(fn, range(10), timeout=T)
    got = []
    with pytest.raises(ValueError, match="bad item 5"):
        for value in it:
            got.append(value)
    assert got == [0, 2, 4, 6, 8]


# ---------------------------------------------------------------------------
# shutdown
# ---------------------------------------------------------------------------

def test_submit_after_shutdown_raises_runtime_error(executor_factory):
    ex = executor_factory(max_workers=2)
    ex.submit(_identity, 1).result(timeout=T)
    ex.shutdown(wait=True)
    with pytest.raises(RuntimeError, match="^cannot schedule new futures after shutdown$"):
        ex.submit(_identity, 2)
    if executor_factory.is_ringpool:
        with pytest.raises(ringpool.PoolClosed):
            ex.submit(_identity, 2)


def test_shutdown_is_idempotent(executor_factory):
    ex = executor_factory(max_workers=2)
    ex.submit(_identity, 1).result(timeout=T)
    ex.shutdown(wait=True)
    ex.shutdown(wait=True)
    ex.shutdown(wait=False)


def test_shutdown_wait_runs_queued_work(executor_factory):
    ex = executor_factory(max_workers=1)
    started, release = threading.Event(), threading.Event()
    first = ex.submit(_blocker, started, release, "first")
    _wait_running(started)
    queued = [ex.submit(_identity, i) for i in range(20)]
    ex.shutdown(wait=False)
    release.set()
    ex.shutdown(wait=True)
    assert first.result(timeout=0) == "first"
    assert [f.result(timeout=0) for f in queued] == list(range(20))


def test_context_manager(executor_factory):
    with executor_factory(max_workers=2) as ex:
        futs = [ex.submit(_identity, i) for i in range(50)]
    # __exit__ waited for everything.
    assert all(f.done() for f in futs)
    assert [f.result(timeout=0) for f in futs] == list(range(50))
    with pytest.raises(RuntimeError):
        ex.submit(_identity, 1)


def test_shutdown_cancel_futures(executor_factory):
    ex = executor_factory(max_workers=2)
    release = threading.Event()
    barrier = threading.Barrier(3)

    def block():
        barrier.wait(T)
        assert release.wait(T)
        return "ran"

    running = [ex.submit(block) for _ in range(2)]
    barrier.wait(T)  # both workers are now inside block()
    queued = [ex.submit(_identity, i) for i in range(30)]
    assert not any(f.done() for f in queued)
    ex.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    for f in queued:
        with pytest.raises(cf.CancelledError):
            f.result(timeout=0)
    release.set()
    ex.shutdown(wait=True)
    assert [f.result(timeout=0) for f in running] == ["ran", "ran"]


def test_cancel_queued_and_running(executor_factory):
    ex = executor_factory(max_workers=1)
    started, release = threading.Event(), threading.Event()
    running = ex.submit(_blocker, started, release, "done")
    _wait_running(started)
    queued = ex.submit(_identity, "never")
    after = ex.submit(_identity, "after")

    assert running.running()
    assert running.cancel() is False
    assert not running.cancelled()

    assert queued.cancel() is True
    assert queued.cancelled() and queued.done()
    assert queued.cancel() is True  # cancelling twice is still True
    with pytest.raises(cf.CancelledError):
        queued.result(timeout=0)
    with pytest.raises(cf.CancelledError):
        queued.exception(timeout=0)

    release.set()
    assert running.result(timeout=T) == "done"
    assert after.result(timeout=T) == "after"  # the cancelled item was skipped
    assert running.cancel() is False  # finished futures cannot be cancelled


# ---------------------------------------------------------------------------
# concurrent.futures helpers
# ---------------------------------------------------------------------------

def test_wait_all_completed(executor_factory):
    ex = executor_factory(max_workers=3)
    futs = [ex.submit(_identity, i) for i in range(30)]
    done, not_done = cf.wait(futs, timeout=T, return_when=cf.ALL_COMPLETED)
    assert done == set(futs) and not not_done


def test_wait_first_completed(executor_factory):
    ex = executor_factory(max_workers=2)
    started, release = threading.Event(), threading.Event()
    slow = ex.submit(_blocker, started, release)
    _wait_running(started)
    fast = ex.submit(_identity, 1)
    done, not_done = cf.wait([slow, fast], timeout=T, return_when=cf.FIRST_COMPLETED)
    assert done == {fast} and not_done == {slow}
    release.set()
    assert slow.result(timeout=T) is None


def test_wait_first_exception(executor_factory):
    ex = executor_factory(max_workers=2)
    started, release = threading.Event(), threading.Event()
    slow = ex.submit(_blocker, started, release)
    _wait_running(started)
    bad = ex.submit(int, "x")
    done, not_done = cf.wait([slow, bad], timeout=T, return_when=cf.FIRST_EXCEPTION)
    assert done == {bad} and not_done == {slow}
    release.set()
    # With no exception at all, FIRST_EXCEPTION waits for everything.
    good = [ex.submit(_identity, i) for i in range(5)]
    done, not_done = cf.wait(good, timeout=T, return_when=cf.FIRST_EXCEPTION)
    assert done == set(good) and not not_done


def test_wait_timeout(executor_factory):
    ex = executor_factory(max_workers=1)
    started, release = threading.Event(), threading.Event()
    slow = ex.submit(_blocker, started, release)
    _wait_running(started)
    done, not_done = cf.wait([slow], timeout=0.01)
    assert not done and not_done == {slow}
    release.set()
    slow.result(timeout=T)


def test_wait_sees_cancelled_futures(executor_factory):
    ex = executor_factory(max_workers=1)
    started, release = threading.Event(), threading.Event()
    slow = ex.submit(_blocker, started, release)
    _wait_running(started)
    queued = ex.submit(_identity, 1)
    assert queued.cancel()
    # The stdlib wait() counts a cancelled future as done only once the
    # executor has acknowledged it (CANCELLED_AND_NOTIFIED), i.e. once a
    # worker has reached it: release the worker first.
    release.set()
    done, not_done = cf.wait([queued, slow], timeout=T)
    assert done == {queued, slow} and not not_done
    assert queued.cancelled()


def test_as_completed(executor_factory):
    ex = executor_factory(max_workers=3)
    futs = [ex.submit(_identity, i) for i in range(40)]
    seen = [f.result(timeout=0) for f in cf.as_completed(futs, timeout=T)]
    assert sorted(seen) == list(range(40))


def test_as_completed_yields_in_completion_order(executor_factory):
    ex = executor_factory(max_workers=2)
    started, release = threading.Event(), threading.Event()
    slow = ex.submit(_blocker, started, release, "slow")
    _wait_running(started)
    fast = ex.submit(_identity, "fast")
    it = cf.as_completed([slow, fast], timeout=T)
    assert next(it) is fast
    release.set()
    assert next(it) is slow
    with pytest.raises(StopIteration):
        next(it)


def test_as_completed_timeout(executor_factory):
    ex = executor_factory(max_workers=1)
    started, release = threading.Event(), threading.Event()
    slow = ex.submit(_blocker, started, release)
    _wait_running(started)
    with pytest.raises(cf.TimeoutError):  # TimeoutError itself from 3.11 on
        list(cf.as_completed([slow], timeout=0.01))
    release.set()
    slow.result(timeout=T)


# ---------------------------------------------------------------------------
# asyncio
# ---------------------------------------------------------------------------

def test_asyncio_run_in_executor(executor_factory):
    ex = executor_factory(max_workers=2)

    async def main():
        loop = asyncio.get_running_loop()
        results = await asyncio.wait_for(
            asyncio.gather(*(loop.run_in_executor(ex, pow, 2, i) for i in range(20))), T
        )
        return results

    assert asyncio.run(main()) == [2**i for i in range(20)]


def test_asyncio_wrap_future(executor_factory):
    ex = executor_factory(max_workers=2)

    async def main():
        ok = asyncio.wrap_future(ex.submit(_identity, "value"))
        bad = asyncio.wrap_future(ex.submit(int, "x"))
        value = await asyncio.wait_for(ok, T)
        with pytest.raises(ValueError):
            await asyncio.wait_for(bad, T)
        return value

    assert asyncio.run(main()) == "value"


def test_asyncio_cancelling_wrapped_future_cancels_queued_task(executor_factory):
    ex = executor_factory(max_workers=1)
    started, release = threading.Event(), threading.Event()
    slow = ex.submit(_blocker, started, release)
    _wait_running(started)
    queued = ex.submit(_identity, "never")

    async def main():
        wrapped = asyncio.wrap_future(queued)
        wrapped.cancel()
        with pytest.raises(asyncio.CancelledError):
            await wrapped

    asyncio.run(main())
    assert queued.cancelled()
    release.set()
    slow.result(timeout=T)


# ---------------------------------------------------------------------------
# add_done_callback
# ---------------------------------------------------------------------------

def test_done_callback_called_once(executor_factory):
    ex = executor_factory(max_workers=1)
    started, release = threading.Event(), threading.Event()
    calls = []
    called = threading.Event()

    def cb(f):
        calls.append(f)
        called.set()

    fut = ex.submit(_blocker, started, release, 7)
    _wait_running(started)
    fut.add_done_callback(cb)
    assert calls == []
    release.set()
    assert called.wait(T)
    assert fut.result(timeout=T) == 7
    # Any later activity must not call it again.
    ex.submit(_identity, 1).result(timeout=T)
    assert calls == [fut]


def test_done_callback_called_immediately_if_done(executor_factory):
    ex = executor_factory(max_workers=1)
    fut = ex.submit(_identity, 1)
    fut.result(timeout=T)
    calls = []
    fut.add_done_callback(lambda f: calls.append((f, threading.get_ident())))
    assert calls == [(fut, threading.get_ident())]  # at once, in this thread


def test_done_callback_on_cancel(executor_factory):
    ex = executor_factory(max_workers=1)
    started, release = threading.Event(), threading.Event()
    slow = ex.submit(_blocker, started, release)
    _wait_running(started)
    queued = ex.submit(_identity, 1)
    calls = []
    queued.add_done_callback(calls.append)
    assert queued.cancel()
    assert calls == [queued]
    release.set()
    slow.result(timeout=T)
    assert calls == [queued]


def test_callbacks_run_in_order(executor_factory):
    ex = executor_factory(max_workers=1)
    started, release = threading.Event(), threading.Event()
    fut = ex.submit(_blocker, started, release)
    _wait_running(started)
    order = []
    done = threading.Event()
    for i in range(5):
        fut.add_done_callback(lambda f, i=i: order.append(i))
    fut.add_done_callback(lambda f: done.set())
    release.set()
    assert done.wait(T)
    assert order == [0, 1, 2, 3, 4]


def test_raising_done_callback_is_logged_not_propagated(executor_factory, caplog):
    ex = executor_factory(max_workers=1)
    started, release = threading.Event(), threading.Event()
    after = threading.Event()

    def bad(f):
        raise ZeroDivisionError("callback boom")

    caplog.set_level(logging.ERROR)
    # Pending: the raising callback runs when the task finishes, in the worker.
    fut = ex.submit(_blocker, started, release, "ok")
    _wait_running(started)
    fut.add_done_callback(bad)
    fut.add_done_callback(lambda f: after.set())  # later callbacks still run
    release.set()
    assert after.wait(T)
    assert fut.result(timeout=T) == "ok"
    # Done: the raising callback runs at once, here, and must not raise.
    fut.add_done_callback(bad)
    # The worker survived the raising callback.
    assert ex.submit(_identity, 3).result(timeout=T) == 3

    logged = [r for r in caplog.records if "exception calling callback" in r.getMessage()]
    assert len(logged) == 2
    for record in logged:
        assert record.exc_info and record.exc_info[0] is ZeroDivisionError


# ---------------------------------------------------------------------------
# constructor arguments
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [0, -1, -100])
def test_max_workers_must_be_positive(executor_factory, bad):
    with pytest.raises(ValueError, match="^max_workers must be greater than 0$"):
        executor_factory(max_workers=bad)
    with pytest.raises(ValueError, match="^max_workers must be greater than 0$"):
        executor_factory(bad)


def test_default_max_workers(executor_factory):
    ex = executor_factory()
    assert ex.submit(_identity, 5).result(timeout=T) == 5
    assert list(ex.map(_identity, range(10))) == list(range(10))


def test_thread_name_prefix(executor_factory):
    ex = executor_factory(max_workers=2, thread_name_prefix="myprefix")
    names = {ex.submit(lambda: threading.current_thread().name).result(timeout=T) for _ in range(4)}
    assert names and all(n.startswith("myprefix") for n in names), names


def test_initializer_runs_once_per_worker(executor_factory):
    init_calls = []
    lock = threading.Lock()

    def init(tag, extra):
        with lock:
            init_calls.append((threading.get_ident(), tag, extra))

    ex = executor_factory(max_workers=2, initializer=init, initargs=("tag", 42))
    barrier = threading.Barrier(2)

    def meet():
        barrier.wait(T)  # forces two distinct workers
        return threading.get_ident()

    first = {f.result(timeout=T) for f in [ex.submit(meet), ex.submit(meet)]}
    assert len(first) == 2
    later = {ex.submit(threading.get_ident).result(timeout=T) for _ in range(50)}
    ex.shutdown(wait=True)

    init_idents = [ident for ident, _, _ in init_calls]
    assert all(tag == "tag" and extra == 42 for _, tag, extra in init_calls)
    assert len(init_idents) == len(set(init_idents)), "initializer ran twice in one worker"
    assert len(init_idents) == 2
    assert first | later <= set(init_idents)


def test_failing_initializer_breaks_the_executor(executor_factory, caplog):
    caplog.set_level(logging.CRITICAL)

    def init():
        raise ValueError("init failed")

    ex = executor_factory(max_workers=2, initializer=init)
    pending = [ex.submit(_identity, i) for i in range(5)]
    for fut in pending:
        with pytest.raises(cf.BrokenExecutor):
            fut.result(timeout=T)

    deadline = time.monotonic() + T
    while True:  # every pending future failed; the broken state is set first
        try:
            fut = ex.submit(_identity, 1)
        except cf.BrokenExecutor as exc:
            if executor_factory.is_ringpool:
                assert isinstance(exc, ringpool.BrokenPool)
            break
        # Accepted before the executor noticed: it must fail, not run.
        with pytest.raises(cf.BrokenExecutor):
            fut.result(timeout=T)
        assert time.monotonic() < deadline, "submit never started to raise BrokenExecutor"
    assert any("initializer" in r.getMessage() for r in caplog.records)
