"""``ringpool.Pool`` beyond the ``Executor`` contract: argument validation,
worker identity, context propagation, error transport, concurrency,
re-entrancy, statistics and the lazy ``map``."""

from __future__ import annotations

import concurrent.futures as cf
import contextvars
import gc
import itertools
import threading
import traceback

import pytest

import ringpool
from ringpool import _core

pytestmark = pytest.mark.timeout(60)

#: Upper bound for anything that should finish at once ("does not hang").
T = 30.0


def _identity(x):
    return x


def _blocker(started: threading.Event, release: threading.Event, value=None):
    started.set()
    assert release.wait(T)
    return value


# ---------------------------------------------------------------------------
# construction and validation
# ---------------------------------------------------------------------------

def test_workers_alias_and_positional_count(pool_factory):
    by_keyword = pool_factory(workers=3)
    assert by_keyword.max_workers == 3
    assert by_keyword.stats().max_workers == 3
    positional = pool_factory(5)
    assert positional.max_workers == 5
    assert positional.stats().max_workers == 5
    assert pool_factory(max_workers=2).stats().max_workers == 2
    for p in (by_keyword, positional):
        assert p.submit(pow, 3, 2).result(timeout=T) == 9


def test_workers_and_max_workers_together_is_an_error():
    with pytest.raises(TypeError, match="workers"):
        ringpool.Pool(2, workers=3)


@pytest.mark.parametrize(
    ("kwargs", "exc", "param"),
    [
        ({"workers": "x"}, TypeError, "workers"),
        ({"max_workers": "x"}, TypeError, "max_workers"),
        ({"max_workers": 2.5}, TypeError, "max_workers"),
        ({"max_workers": True}, TypeError, "max_workers"),
        ({"workers": 0}, ValueError, "workers"),
        ({"workers": -3}, ValueError, "workers"),
        ({"max_workers": 2, "min_workers": 3}, ValueError, "min_workers"),
        ({"min_workers": -1}, ValueError, "min_workers"),
        ({"min_workers": "1"}, TypeError, "min_workers"),
        ({"queue_size": 0}, ValueError, "queue_size"),
        ({"queue_size": -1}, ValueError, "queue_size"),
        ({"queue_size": "10"}, TypeError, "queue_size"),
        ({"on_full": "nope"}, ValueError, "on_full"),
        ({"submit_timeout": -1}, ValueError, "submit_timeout"),
        ({"submit_timeout": float("nan")}, ValueError, "submit_timeout"),
        ({"submit_timeout": "1"}, TypeError, "submit_timeout"),
        ({"keep_alive": "x"}, TypeError, "keep_alive"),
        ({"keep_alive": -0.5}, ValueError, "keep_alive"),
        ({"initializer": 42}, TypeError, "initializer"),
        ({"thread_name_prefix": 7}, TypeError, "thread_name_prefix"),
        ({"name": 7}, TypeError, "name"),
    ],
)
def test_bad_constructor_arguments_name_the_parameter(kwargs, exc, param):
    live_before = _core.live_workers()
    with pytest.raises(exc, match=param):
        ringpool.Pool(**kwargs)
    assert _core.live_workers() == live_before  # no worker was started


def test_non_callable_fn_is_a_type_error_at_submit(pool_factory):
    pool = pool_factory(2)
    for bad in (None, 42, "print"):
        with pytest.raises(TypeError, match="fn"):
            pool.submit(bad)
        with pytest.raises(TypeError, match="fn"):
            pool.map(bad, [1, 2])
    assert pool.stats().submitted == 0  # nothing was queued
    assert pool.submit(_identity, 1).result(timeout=T) == 1


def test_map_argument_validation(pool_factory):
    pool = pool_factory(2)
    with pytest.raises(ValueError, match="chunksize"):
        pool.map(_identity, [1], chunksize=0)
    with pytest.raises(ValueError, match="timeout"):
        pool.map(_identity, [1], timeout=-1)
    with pytest.raises(TypeError):
        pool.map(_identity)  # no iterable at all


# ---------------------------------------------------------------------------
# worker identity
# ---------------------------------------------------------------------------

def test_current_thread_is_a_named_thread(pool_factory):
    pool = pool_factory(2, thread_name_prefix="rp-test")

    def who():
        t = threading.current_thread()
        return t.name, t.ident, threading.get_ident(), t is threading.current_thread()

    for name, ident, get_ident, same in (f.result(timeout=T) for f in
                                         [pool.submit(who) for _ in range(10)]):
        assert name.startswith("rp-test"), name
        assert not name.startswith("Dummy-"), name
        assert ident == get_ident
        assert same


def test_default_thread_name_uses_the_pool_name(pool_factory):
    pool = pool_factory(1, name="billing")
    assert pool.name == "billing"
    name = pool.submit(lambda: threading.current_thread().name).result(timeout=T)
    assert name.startswith("billing"), name


def test_threading_local_set_by_initializer_persists(pool_factory):
    local = threading.local()
    init_count = []

    def init(value):
        local.value = value
        local.seen = 0
        init_count.append(1)

    def task():
        local.seen += 1
        return local.value, local.seen

    pool = pool_factory(max_workers=1, initializer=init, initargs=("from-init",))
    results = [pool.submit(task).result(timeout=T) for _ in range(20)]
    assert results == [("from-init", i) for i in range(1, 21)]
    assert len(init_count) == 1
    assert not hasattr(local, "value")  # the submitting thread's slot is untouched


# ---------------------------------------------------------------------------
# contextvars
# ---------------------------------------------------------------------------

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


def test_context_propagates_to_tasks_by_default(pool_factory):
    pool = pool_factory(2)
    token = _request_id.set("req-42")
    try:
        assert pool.submit(_request_id.get).result(timeout=T) == "req-42"
        assert list(pool.map(lambda _: _request_id.get(), range(3))) == ["req-42"] * 3
    finally:
        _request_id.reset(token)
    assert pool.submit(_request_id.get).result(timeout=T) == "unset"


def test_context_changes_in_a_task_do_not_leak(pool_factory):
    pool = pool_factory(1)

    def change():
        _request_id.set("changed-in-task")
        return _request_id.get()

    token = _request_id.set("outer")
    try:
        assert pool.submit(change).result(timeout=T) == "changed-in-task"
        assert _request_id.get() == "outer"
        # The next task on the same worker sees the submitter's value again.
        assert pool.submit(_request_id.get).result(timeout=T) == "outer"
    finally:
        _request_id.reset(token)


def test_context_not_propagated_when_disabled(pool_factory):
    pool = pool_factory(2, propagate_context=False)
    token = _request_id.set("req-42")
    try:
        assert pool.submit(_request_id.get).result(timeout=T) == "unset"
    finally:
        _request_id.reset(token)


# ---------------------------------------------------------------------------
# errors travel to the future
# ---------------------------------------------------------------------------

def _raising_function_with_a_distinct_name():
    raise LookupError("lost it")


def test_exception_keeps_traceback_and_names_the_worker(pool_factory):
    pool = pool_factory(1, thread_name_prefix="tb-worker")
    fut = pool.submit(_raising_function_with_a_distinct_name)
    with pytest.raises(LookupError, match="lost it") as info:
        fut.result(timeout=T)
    exc = info.value
    text = "".join(traceback.format_exception(exc))
    assert "_raising_function_with_a_distinct_name" in text
    assert 'raise LookupError("lost it")' in text
    notes = getattr(exc, "__notes__", [])
    assert any("tb-worker" in note for note in notes), notes
    assert fut.exception(timeout=0) is exc


def test_exception_from_map_names_the_worker(pool_factory):
    pool = pool_factory(2, thread_name_prefix="map-worker")

    def fn(x):
        if x == 3:
            _raising_function_with_a_distinct_name()
        return x

    with pytest.raises(LookupError) as info:
        list(pool.map(fn, range(10)))
    text = "".join(traceback.format_exception(info.value))
    assert "_raising_function_with_a_distinct_name" in text
    assert any("map-worker" in n for n in getattr(info.value, "__notes__", []))


class _CustomBase(BaseException):
    pass


@pytest.mark.parametrize(
    "exc_factory",
    [lambda: SystemExit(3), KeyboardInterrupt, lambda: _CustomBase("custom")],
    ids=["SystemExit", "KeyboardInterrupt", "custom-BaseException"],
)
def test_base_exception_is_stored_and_worker_survives(pool_factory, exc_factory):
    pool = pool_factory(1)
    assert pool.submit(_identity, "warm-up").result(timeout=T) == "warm-up"
    live_before = pool.stats().live_workers
    assert live_before >= 1
    exc = exc_factory()

    def job():
        raise exc

    fut = pool.submit(job)
    with pytest.raises(type(exc)) as info:
        fut.result(timeout=T)
    assert info.value is exc
    assert fut.exception(timeout=0) is exc
    # The worker survived and keeps running tasks.
    assert [pool.submit(_identity, i).result(timeout=T) for i in range(5)] == list(range(5))
    stats = pool.stats()
    assert stats.live_workers >= 1
    assert stats.failed == 1
    assert stats.completed == 6


def test_base_exception_in_map(pool_factory):
    pool = pool_factory(2)

    def fn(x):
        if x == 2:
            raise KeyboardInterrupt
        return x

    got = []
    with pytest.raises(KeyboardInterrupt):
        for v in pool.map(fn, range(5)):
            got.append(v)
    assert got == [0, 1]
    assert pool.submit(_identity, 9).result(timeout=T) == 9


# ---------------------------------------------------------------------------
# concurrency
# ---------------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_many_threads_submitting_concurrently(pool_factory):
    n_threads, per_thread = 8, 20_000
    pool = pool_factory(4)
    runs = bytearray(n_threads * per_thread)  # how often each task ran
    callbacks = bytearray(n_threads * per_thread)  # how often each future completed
    barrier = threading.Barrier(n_threads)
    futures: list[list[cf.Future] | None] = [None] * n_threads
    errors = []

    def task(k):
        runs[k] += 1
        return k * 3

    def on_done(k):
        def cb(_f):
            callbacks[k] += 1
        return cb

    def submitter(t):
        try:
            barrier.wait(T)
            mine = []
            base = t * per_thread
            for j in range(per_thread):
                k = base + j
                f = pool.submit(task, k)
                if j % 7 == 0:  # a sample also checks callbacks
                    f.add_done_callback(on_done(k))
                mine.append(f)
            futures[t] = mine
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=submitter, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(90)
        assert not th.is_alive(), "a submitter thread hung"
    assert not errors, errors

    for t in range(n_threads):
        base = t * per_thread
        results = [f.result(timeout=T) for f in futures[t]]
        assert results == [(base + j) * 3 for j in range(per_thread)]
    assert pool.shutdown(wait=True, timeout=T)
    assert set(runs) == {1}, "some task ran zero or several times"
    sampled = [callbacks[k] for k in range(len(callbacks)) if (k % per_thread) % 7 == 0]
    assert set(sampled) == {1}
    assert not any(callbacks[k] for k in range(len(callbacks)) if (k % per_thread) % 7)
    s = pool.stats()
    assert s.submitted == s.completed == n_threads * per_thread
    assert s.failed == s.cancelled == s.queued == s.running == 0


def test_nested_submit(pool_factory):
    pool = pool_factory(2)

    def outer(x):
        inner = pool.submit(lambda: x * 10)
        return inner.result(timeout=T) + 1

    assert pool.submit(outer, 4).result(timeout=T) == 41
    assert [pool.submit(outer, i).result(timeout=T) for i in range(20)] == [
        i * 10 + 1 for i in range(20)
    ]


def test_shutdown_from_inside_a_task_does_not_deadlock(pool_factory):
    pool = pool_factory(2)
    queued_started = threading.Event()
    release = threading.Event()
    results = []

    def self_shutdown():
        returned = pool.shutdown(wait=True)
        results.append(returned)
        return returned

    blocker = pool.submit(_blocker, queued_started, release, "blocker")
    assert queued_started.wait(T)
    fut = pool.submit(self_shutdown)
    assert fut.result(timeout=T) is False  # cannot wait for itself
    assert pool.shutdown_called
    with pytest.raises(ringpool.PoolClosed):
        pool.submit(_identity, 1)
    release.set()
    assert blocker.result(timeout=T) == "blocker"
    assert pool.shutdown(wait=True, timeout=T) is True


def test_shutdown_timeout_returns_false_while_a_task_runs(pool_factory):
    pool = pool_factory(1)
    started, release = threading.Event(), threading.Event()
    fut = pool.submit(_blocker, started, release, 1)
    assert started.wait(T)
    assert pool.shutdown(wait=True, timeout=0.01) is False
    release.set()
    assert pool.shutdown(wait=True, timeout=T) is True
    assert fut.result(timeout=0) == 1


# ---------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------

def test_stats_accounting(pool_factory):
    pool = pool_factory(1)
    started, release = threading.Event(), threading.Event()
    blocker = pool.submit(_blocker, started, release, "b")
    assert started.wait(T)

    ok = [pool.submit(_identity, i) for i in range(10)]
    bad = [pool.submit(int, "nope") for _ in range(4)]
    to_cancel = [pool.submit(_identity, -1) for _ in range(3)]
    for f in to_cancel:
        assert f.cancel()
    left_queued = [pool.submit(_identity, i) for i in range(5)]

    s = pool.stats()
    assert s.submitted == 1 + 10 + 4 + 3 + 5
    assert s.running == 1
    assert s.completed == s.failed == 0

    pool.shutdown(wait=False, cancel_futures=True)  # drops the last 10 + 4 + 5 queued
    release.set()
    assert pool.shutdown(wait=True, timeout=T)
    assert blocker.result(timeout=0) == "b"
    assert all(f.cancelled() for f in ok + bad + to_cancel + left_queued)

    s = pool.stats()
    assert s.closed
    assert s.accounted
    assert s.submitted == s.completed + s.failed + s.cancelled + s.queued + s.running
    assert s.submitted == 23
    assert (s.completed, s.failed, s.cancelled, s.queued, s.running) == (1, 0, 22, 0, 0)
    assert s.rejected == 0
    assert s.live_workers == 0


def test_stats_counts_failures_and_cancellations(pool_factory):
    pool = pool_factory(1)
    started, release = threading.Event(), threading.Event()
    blocker = pool.submit(_blocker, started, release)
    assert started.wait(T)
    ok = [pool.submit(_identity, i) for i in range(7)]
    bad = [pool.submit(int, "nope") for _ in range(5)]
    cancelled = [pool.submit(_identity, i) for i in range(4)]
    assert all(f.cancel() for f in cancelled)
    release.set()
    blocker.result(timeout=T)
    assert [f.result(timeout=T) for f in ok] == list(range(7))
    for f in bad:
        assert isinstance(f.exception(timeout=T), ValueError)
    assert pool.shutdown(wait=True, timeout=T)

    s = pool.stats()
    assert s.accounted
    assert (s.submitted, s.completed, s.failed, s.cancelled) == (17, 8, 5, 4)
    assert s.queued == s.running == 0
    assert s.as_dict()["submitted"] == 17


# ---------------------------------------------------------------------------
# map
# ---------------------------------------------------------------------------

def test_lazy_map_over_an_infinite_iterable(pool_factory):
    pool = pool_factory(2)
    results = pool.map(lambda x: x * x, itertools.count())
    first = list(itertools.islice(results, 1000))
    assert first == [i * i for i in range(1000)]
    for i, value in enumerate(results, start=1000):
        assert value == i * i
        if i >= 1100:
            break
    del results  # dropping the iterator cancels what is still in flight
    assert pool.shutdown(wait=True, timeout=T)
    assert pool.stats().accounted


@pytest.mark.parametrize("buffersize", [1, 8, 100])
def test_map_buffersize_bounds_read_ahead(pool_factory, buffersize):
    # Executor.map(buffersize=N) (Python 3.14): at most N items pulled from
    # the iterables whose results have not yet been yielded.
    pool = pool_factory(2)
    pulled = []

    def source():
        for i in itertools.count():
            pulled.append(i)
            yield i

    it = pool.map(_identity, source(), buffersize=buffersize)
    worst = 0
    for consumed, value in enumerate(it, start=1):
        assert value == consumed - 1
        worst = max(worst, len(pulled) - consumed)
        if consumed == 2000:
            break
    del it
    assert worst <= buffersize, (
        f"{worst} items pulled ahead of the consumer with buffersize={buffersize}"
    )


@pytest.mark.parametrize("chunksize", [2, 7, 64, 1000])
def test_map_with_chunksize(pool_factory, chunksize):
    pool = pool_factory(3)
    data = range(503)
    assert list(pool.map(lambda x: x + 1, data, chunksize=chunksize)) == [x + 1 for x in data]
    assert list(pool.map(pow, range(50), itertools.repeat(2), chunksize=chunksize)) == [
        x**2 for x in range(50)
    ]


def test_map_with_chunksize_propagates_exception_at_the_right_item(pool_factory):
    pool = pool_factory(2)

    def fn(x):
        if x == 37:
            raise ValueError(x)
        return x

    got = []
    with pytest.raises(ValueError, match="37"):
        for v in pool.map(fn, range(100), chunksize=10):
            got.append(v)
    assert got == list(range(37))


# ---------------------------------------------------------------------------
# lifecycle
# ---------------------------------------------------------------------------

def test_dropping_a_pool_without_shutdown_runs_its_queued_tasks():
    pool = ringpool.Pool(1)
    started, release = threading.Event(), threading.Event()
    blocker = pool.submit(_blocker, started, release, "first")
    assert started.wait(T)
    queued = [pool.submit(_identity, i) for i in range(100)]
    del pool
    gc.collect()
    release.set()
    done, not_done = cf.wait([blocker, *queued], timeout=T)
    assert not not_done
    assert blocker.result(timeout=0) == "first"
    assert [f.result(timeout=0) for f in queued] == list(range(100))
    # The dropped pool's workers leave by themselves once it is drained.
    assert _core.wait_for_workers(T)


def test_repr_and_states(pool_factory):
    pool = pool_factory(2, name="reprpool")
    assert "reprpool" in repr(pool) and "running" in repr(pool)
    pool.shutdown()
    assert "closed" in repr(pool)
