"""Backpressure: bounded queues, overload policies and their accounting.

``Pool(queue_size=N)`` holds at most N accepted-but-not-started tasks (a
running task is not queued). When the queue is full, ``on_full`` decides:
``"block"`` waits with the GIL released (up to ``submit_timeout``),
``"raise"`` raises :class:`ringpool.PoolOverloaded` at once, and
``"caller_runs"`` runs the task in the submitting thread. ``try_submit``
never waits; ``schedule`` overrides the policy per call; a task that submits
into its own full pool runs the new task inline instead of deadlocking.

Workers are held with an :class:`threading.Event` (the ``gate`` fixture) so
that the queue's content is known exactly; nothing depends on sleeps, and
every time limit is a generous bound that only catches hangs.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import os
import re
import threading
import time

import pytest

import ringpool
from ringpool import PoolClosed, PoolOverloaded

pytestmark = pytest.mark.timeout(60)

#: Upper bound for anything that should happen "at once" (catches hangs only).
T = 20.0
#: Slack allowed past a submit_timeout before the submitter must give up.
LATE = 2.0


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def _hold(gate: threading.Event) -> str:
    """A task that occupies its worker until the gate opens."""
    gate.wait(T * 2)
    return "held"


def _ident(x):
    return x


def _double(x):
    return x * 2


def _thread_id():
    return threading.get_ident()


def _fail(msg):
    raise ValueError(msg)


def wait_until(predicate, timeout: float = T, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.002)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# RSS is the program's only without a sanitizer (ASan's quarantine holds freed memory).
needs_statm = pytest.mark.skipif(
    not os.path.exists("/proc/self/statm") or bool(ringpool._core.build_info()["sanitizer"]),
    reason="needs /proc/self/statm (Linux) and a build without a sanitizer")


def saturate(pool, gate, workers: int, queued: int = 0) -> list:
    """Occupy every worker with a held task, then queue ``queued`` more held
    tasks. Returns their futures. Afterwards running == workers and
    queued == queued exactly."""
    futs = [pool.submit(_hold, gate) for _ in range(workers)]
    wait_until(lambda: pool.stats().running == workers, what=f"{workers} running tasks")
    futs += [pool.try_submit(_hold, gate) for _ in range(queued)]
    s = pool.stats()
    assert (s.running, s.queued) == (workers, queued)
    return futs


class BlockedSubmitter(threading.Thread):
    """Runs ``call()`` in its own thread; keeps the outcome."""

    def __init__(self, call, name=None):
        super().__init__(name=name, daemon=True)
        self.call = call
        self.result = None
        self.error = None
        self.returned = threading.Event()

    def run(self):
        try:
            self.result = self.call()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            self.error = exc
        finally:
            self.returned.set()


def assert_accounted(s: ringpool.PoolStats) -> None:
    assert s.submitted == s.completed + s.failed + s.cancelled + s.queued + s.running, s
    assert s.accounted, s


def wait_quiet(pool, expected_submitted: int | None = None) -> ringpool.PoolStats:
    """Wait until nothing is queued or running and every counter settled."""
    def quiet():
        s = pool.stats()
        done = s.completed + s.failed + s.cancelled
        return (s.queued == 0 and s.running == 0 and done == s.submitted
                and (expected_submitted is None or s.submitted == expected_submitted))
    wait_until(quiet, what="a quiet pool")
    return pool.stats()


# ---------------------------------------------------------------------------
# 1. the bound
# ---------------------------------------------------------------------------

def test_unbounded_pool_accepts_everything(pool_factory, gate):
    n = 200_000
    pool = pool_factory(2, on_full="raise")  # a refusal would raise, never hang
    held = saturate(pool, gate, 2)
    submit = pool.try_submit
    futs = [submit(_ident, i) for i in range(n)]
    s = pool.stats()
    assert s.queue_capacity is None
    assert s.queued == n and s.running == 2
    assert s.rejected == 0 and s.submitted == n + 2
    gate.set()
    for i, f in enumerate(futs):
        assert f.result(timeout=T) == i
    assert [f.result(timeout=T) for f in held] == ["held", "held"]
    s = wait_quiet(pool, n + 2)
    assert s.completed == n + 2 and s.rejected == 0


@pytest.mark.parametrize(("workers", "size"), [(1, 1), (1, 7), (3, 100), (2, 1000)])
def test_queue_size_bounds_waiting_tasks_exactly(pool_factory, gate, workers, size):
    pool = pool_factory(workers, queue_size=size, on_full="block", name="bounded")
    held = saturate(pool, gate, workers)
    # Exactly `size` more get in: the running tasks do not use queue slots.
    queued = [pool.try_submit(_ident, i) for i in range(size)]
    s = pool.stats()
    assert s.queue_capacity == size
    assert s.queued == size and s.running == workers
    with pytest.raises(PoolOverloaded) as ei:
        pool.try_submit(_ident, -1)
    assert ei.value.pool == "bounded"
    assert ei.value.queue_size == size
    # A blocking submit cannot get in either.
    with pytest.raises(PoolOverloaded):
        pool.schedule(_ident, (-2,), submit_timeout=0.05)
    s = pool.stats()
    assert s.queued == size and s.submitted == workers + size
    gate.set()
    assert [f.result(timeout=T) for f in queued] == list(range(size))
    assert all(f.result(timeout=T) == "held" for f in held)
    # Room again: the pool accepts as before.
    assert pool.try_submit(_ident, 5).result(timeout=T) == 5


def test_bound_is_a_steady_state_limit_across_refills(pool_factory, gate):
    """Free one slot at a time: each time exactly one more task fits."""
    pool = pool_factory(1, queue_size=3, on_full="raise")
    steps = [threading.Event() for _ in range(4)]
    first = pool.submit(_hold, steps[0])
    wait_until(lambda: pool.stats().running == 1)
    queued = [pool.submit(_hold, steps[i]) for i in (1, 2, 3)]
    with pytest.raises(PoolOverloaded):
        pool.submit(_ident, 0)
    steps[0].set()  # the worker moves on to queued[0]: one slot frees
    assert first.result(timeout=T) == "held"
    wait_until(lambda: pool.stats().queued == 2)
    extra = pool.submit(_hold, gate)
    assert pool.stats().queued == 3
    with pytest.raises(PoolOverloaded):
        pool.submit(_ident, 0)
    for ev in steps[1:]:
        ev.set()
    gate.set()
    for f in queued + [extra]:
        assert f.result(timeout=T) == "held"


# ---------------------------------------------------------------------------
# 2. policies
# ---------------------------------------------------------------------------

def test_block_waits_then_succeeds_when_room_frees(pool_factory, gate):
    pool = pool_factory(1, queue_size=2, on_full="block")
    held = saturate(pool, gate, 1, queued=2)
    sub = BlockedSubmitter(lambda: pool.submit(_ident, 42))
    sub.start()
    wait_until(lambda: pool.stats().blocked_submitters == 1, what="a blocked submitter")
    assert not sub.returned.wait(0.1), "submit returned although the queue is full"
    assert pool.stats().queued == 2
    gate.set()
    assert sub.returned.wait(T), "the blocked submitter was never let in"
    sub.join(T)
    assert sub.error is None
    assert sub.result.result(timeout=T) == 42
    assert all(f.result(timeout=T) == "held" for f in held)
    s = wait_quiet(pool, 4)
    assert s.completed == 4
    assert s.blocked_submitters == 0


def test_blocked_submitter_releases_the_gil(pool_factory, gate):
    """While the main thread waits for room, another Python thread runs."""
    pool = pool_factory(1, queue_size=1, on_full="block", submit_timeout=0.5)
    saturate(pool, gate, 1, queued=1)
    count = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            count[0] += 1

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        wait_until(lambda: count[0] > 0, what="the counting thread")
        before = count[0]
        t0 = time.monotonic()
        with pytest.raises(PoolOverloaded):
            pool.submit(_ident, 1)
        blocked_for = time.monotonic() - t0
        progress = count[0] - before
    finally:
        stop.set()
        spinner.join(T)
    assert blocked_for >= 0.4
    # A pure-Python loop makes millions of steps a second; with the GIL held by
    # the blocked submitter it would make (almost) none.
    assert progress > 10_000, f"only {progress} iterations in {blocked_for:.2f} s"


def test_submit_timeout_gives_up_and_queues_nothing(pool_factory, gate):
    timeout = 0.3
    pool = pool_factory(1, queue_size=2, on_full="block", submit_timeout=timeout, name="tmo-pool")
    saturate(pool, gate, 1, queued=2)
    before = pool.stats()
    ran = threading.Event()
    t0 = time.monotonic()
    with pytest.raises(PoolOverloaded) as ei:
        pool.submit(ran.set)
    elapsed = time.monotonic() - t0
    after = pool.stats()
    assert timeout * 0.9 <= elapsed <= timeout + LATE, elapsed
    err = ei.value
    assert isinstance(err, RuntimeError)  # what concurrent.futures callers catch
    assert err.pool == "tmo-pool" and err.queue_size == 2
    assert timeout * 0.9 <= err.waited <= elapsed + 0.05
    msg = str(err)
    assert "tmo-pool" in msg
    assert re.search(r"\b2\b", msg), msg
    assert f"{err.waited:.3f}" in msg, msg
    # Nothing was queued: the refused task never runs.
    assert after.queued == before.queued == 2
    assert after.submitted == before.submitted
    assert after.rejected > before.rejected
    assert after.blocked_submitters == 0
    gate.set()
    wait_quiet(pool, before.submitted)
    assert not ran.is_set()


def test_raise_policy_raises_at_once(pool_factory, gate):
    pool = pool_factory(1, queue_size=1, on_full="raise", submit_timeout=30.0, name="r")
    saturate(pool, gate, 1, queued=1)
    before = pool.stats()
    t0 = time.monotonic()
    with pytest.raises(PoolOverloaded) as ei:
        pool.submit(_ident, 1)
    assert time.monotonic() - t0 < 1.0
    assert ei.value.waited < 0.5
    assert ei.value.pool == "r" and ei.value.queue_size == 1
    after = pool.stats()
    assert after.queued == 1 and after.submitted == before.submitted
    assert after.rejected == before.rejected + 1


def test_caller_runs_runs_in_the_submitting_thread(pool_factory, gate):
    pool = pool_factory(1, queue_size=1, on_full="caller_runs")
    held = saturate(pool, gate, 1, queued=1)
    before = pool.stats()
    fut = pool.submit(_thread_id)
    assert fut.done(), "caller_runs must return a completed future"
    assert fut.result(timeout=0) == threading.get_ident()
    # From another thread too: that thread, not the main one, runs it.
    box = {}

    def other():
        box["caller"] = threading.get_ident()
        box["ran_in"] = pool.submit(_thread_id).result(timeout=0)

    t = threading.Thread(target=other)
    t.start()
    t.join(T)
    assert box["ran_in"] == box["caller"] != threading.get_ident()
    # An exception is captured in the future, as for a pooled task.
    failed = pool.submit(_fail, "inline boom")
    assert failed.done()
    with pytest.raises(ValueError, match="inline boom"):
        failed.result(timeout=0)
    after = pool.stats()
    assert after.queued == 1 and after.submitted == before.submitted
    gate.set()
    assert all(f.result(timeout=T) == "held" for f in held)
    assert_accounted(wait_quiet(pool))


@pytest.mark.parametrize("on_full", ["block", "raise", "caller_runs"])
def test_try_submit_never_waits(pool_factory, gate, on_full):
    # submit_timeout=None: a plain submit on the "block" pool would wait forever.
    pool = pool_factory(1, queue_size=1, on_full=on_full, submit_timeout=None)
    saturate(pool, gate, 1, queued=1)
    ran = threading.Event()
    t0 = time.monotonic()
    with pytest.raises(PoolOverloaded):
        pool.try_submit(ran.set)
    assert time.monotonic() - t0 < 1.0
    assert not ran.is_set(), "try_submit must not run the task in the caller"
    assert pool.stats().queued == 1


def test_schedule_overrides_policy_per_call(pool_factory, gate):
    pool = pool_factory(1, queue_size=1, on_full="raise")
    saturate(pool, gate, 1, queued=1)
    # raise pool, block for this call: waits about submit_timeout, then gives up.
    t0 = time.monotonic()
    with pytest.raises(PoolOverloaded) as ei:
        pool.schedule(_ident, (1,), on_full="block", submit_timeout=0.2)
    elapsed = time.monotonic() - t0
    assert 0.18 <= elapsed <= 0.2 + LATE and ei.value.waited >= 0.18
    # raise pool, caller_runs for this call.
    fut = pool.schedule(_thread_id, on_full="caller_runs")
    assert fut.done() and fut.result(timeout=0) == threading.get_ident()
    # kwargs travel too.
    fut = pool.schedule(int, ("ff",), {"base": 16}, on_full="caller_runs")
    assert fut.result(timeout=0) == 255
    # The pool's own policy still applies to the next plain submit.
    t0 = time.monotonic()
    with pytest.raises(PoolOverloaded):
        pool.schedule(_ident, (1,))
    assert time.monotonic() - t0 < 1.0
    assert pool.stats().queued == 1


def test_schedule_raise_on_a_blocking_pool(pool_factory, gate):
    pool = pool_factory(1, queue_size=1, on_full="block")  # no timeout: would wait forever
    saturate(pool, gate, 1, queued=1)
    t0 = time.monotonic()
    with pytest.raises(PoolOverloaded):
        pool.schedule(_ident, (1,), on_full="raise")
    assert time.monotonic() - t0 < 1.0


def test_schedule_submit_timeout_overrides_the_pools(pool_factory, gate):
    pool = pool_factory(1, queue_size=1, on_full="block", submit_timeout=30.0)
    saturate(pool, gate, 1, queued=1)
    t0 = time.monotonic()
    with pytest.raises(PoolOverloaded):
        pool.schedule(_ident, (1,), submit_timeout=0.2)
    assert 0.18 <= time.monotonic() - t0 <= 0.2 + LATE


def test_schedule_block_on_a_caller_runs_pool_waits_for_room(pool_factory, gate):
    pool = pool_factory(1, queue_size=1, on_full="caller_runs")
    saturate(pool, gate, 1, queued=1)
    sub = BlockedSubmitter(lambda: pool.schedule(_thread_id, on_full="block"))
    sub.start()
    wait_until(lambda: pool.stats().blocked_submitters == 1, what="a blocked submitter")
    gate.set()
    assert sub.returned.wait(T)
    sub.join(T)
    assert sub.error is None
    # It was queued, so a worker, not the submitting thread, ran it.
    assert sub.result.result(timeout=T) != sub.ident


def test_schedule_without_overrides_uses_the_pools_submit_timeout(pool_factory, gate):
    """``schedule(fn)`` with no per-call options behaves like ``submit(fn)``:
    on a pool created with submit_timeout=0.2 it gives up after ~0.2 s."""
    pool = pool_factory(1, queue_size=1, on_full="block", submit_timeout=0.2)
    saturate(pool, gate, 1, queued=1)
    with pytest.raises(PoolOverloaded):  # the reference: a plain submit
        pool.submit(_ident, 1)
    sub = BlockedSubmitter(lambda: pool.schedule(_ident, (2,)))
    sub.start()
    returned = sub.returned.wait(0.2 + LATE)
    if not returned:
        gate.set()  # unblock it, so the test ends
        sub.join(T)
    assert returned, (
        "schedule() without submit_timeout ignored the pool's submit_timeout=0.2 "
        "and was still blocked after 2.2 s")
    assert isinstance(sub.error, PoolOverloaded)


def test_schedule_rejects_bad_overrides_and_queues_nothing(pool_factory, gate):
    pool = pool_factory(1, queue_size=1)
    saturate(pool, gate, 1, queued=0)
    with pytest.raises(ValueError, match="on_full"):
        pool.schedule(_ident, (1,), on_full="drop")
    with pytest.raises(ValueError, match="submit_timeout"):
        pool.schedule(_ident, (1,), submit_timeout=-1)
    with pytest.raises(TypeError, match="submit_timeout"):
        pool.schedule(_ident, (1,), submit_timeout="1")
    assert pool.stats().queued == 0 and pool.stats().submitted == 1


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"queue_size": 0}, "queue_size"),
    ({"queue_size": -1}, "queue_size"),
    ({"on_full": "drop"}, "on_full"),
    ({"submit_timeout": -0.5}, "submit_timeout"),
])
def test_constructor_validates_backpressure_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ringpool.Pool(1, **kwargs)


def test_constructor_type_checks_queue_size():
    with pytest.raises(TypeError, match="queue_size"):
        ringpool.Pool(1, queue_size=2.5)


# ---------------------------------------------------------------------------
# 3. self-deadlock
# ---------------------------------------------------------------------------

def _submit_into_own_full_pool(pool, proceed: threading.Event, how: str):
    assert proceed.wait(T)
    if how == "submit":
        inner = pool.submit(_thread_id)
    else:
        inner = pool.schedule(_thread_id, on_full="block")
    return threading.get_ident(), inner.done(), inner.result(timeout=T)


@pytest.mark.parametrize("how", ["submit", "schedule"])
@pytest.mark.parametrize("submit_timeout", [None, 30.0])
def test_task_submitting_into_its_own_full_pool_runs_inline(pool_factory, gate, how, submit_timeout):
    pool = pool_factory(1, queue_size=1, on_full="block", submit_timeout=submit_timeout)
    proceed = threading.Event()
    outer = pool.submit(_submit_into_own_full_pool, pool, proceed, how)
    wait_until(lambda: pool.stats().running == 1)
    filler = pool.try_submit(_hold, gate)  # the queue is now full
    assert pool.stats().queued == 1
    proceed.set()
    t0 = time.monotonic()
    outer_ident, inner_done, inner_ident = outer.result(timeout=T)
    assert time.monotonic() - t0 < 5.0, "the inner submit waited for room"
    assert inner_done, "the inner task should have completed inline"
    assert inner_ident == outer_ident  # it ran in the worker thread itself
    gate.set()
    assert filler.result(timeout=T) == "held"
    s = wait_quiet(pool, 2)  # the inline task was never queued
    assert s.completed == 2
    assert_accounted(s)


def _submit_into_other_pool(other):
    return other.submit(_ident, 1)


def test_task_blocking_on_another_pools_full_queue_waits_normally(pool_factory, gate):
    """The inline rule is for a pool's own tasks only: a task of pool A
    submitting into pool B's full queue waits (here: times out) as usual."""
    a = pool_factory(1, name="a")
    b = pool_factory(1, queue_size=1, on_full="block", submit_timeout=0.2, name="b")
    saturate(b, gate, 1, queued=1)
    fut = a.submit(_submit_into_other_pool, b)
    with pytest.raises(PoolOverloaded) as ei:
        fut.result(timeout=T)
    assert ei.value.pool == "b" and ei.value.waited >= 0.15


# ---------------------------------------------------------------------------
# 4. map respects the bound
# ---------------------------------------------------------------------------

@needs_statm
@pytest.mark.timeout(120)
def test_lazy_map_over_infinite_iterable_respects_the_bound(pool_factory):
    size, total = 100, 200_000
    pool = pool_factory(2, queue_size=size)
    seen_threads: set[int] = set()
    add = seen_threads.add
    payload = b"x" * 64

    def work(x):
        add(threading.get_ident())
        hashlib.sha256(payload).digest()
        if x % 64 == 0:
            time.sleep(0)  # release the GIL now and then: let the other worker in
        return x * 2

    it = pool.map(work, itertools.count())
    max_queued = 0
    rss_base = None
    rss_max = 0
    try:
        for i, y in enumerate(it):
            assert y == 2 * i
            if i % 500 == 0:
                max_queued = max(max_queued, pool.stats().queued)
            if i == 20_000:
                rss_base = rss_bytes()
            elif i > 20_000 and i % 5_000 == 0:
                rss_max = max(rss_max, rss_bytes())
            if i + 1 == total:
                break
    finally:
        it.close()
    assert i + 1 == total
    assert max_queued <= size
    growth = rss_max - rss_base
    assert growth < 30 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB"
    assert len(seen_threads) == 2, "map did not use both workers"
    assert threading.get_ident() not in seen_threads


# ---------------------------------------------------------------------------
# 5. accounting
# ---------------------------------------------------------------------------

def test_conservation_law_with_rejections(pool_factory, gate):
    pool = pool_factory(2, queue_size=4, on_full="raise")
    held = saturate(pool, gate, 2)
    ok = pool.submit(_ident, 1)
    bad = [pool.submit(_fail, "a"), pool.submit(_fail, "b")]
    cancelled = pool.submit(_ident, 2)
    assert cancelled.cancel()
    for _ in range(3):
        with pytest.raises(PoolOverloaded):
            pool.try_submit(_ident, 3)
    with pytest.raises(PoolOverloaded):
        pool.submit(_ident, 3)
    s = pool.stats()  # a quiet point: workers held, queue full
    assert (s.submitted, s.running, s.queued, s.rejected) == (6, 2, 4, 4)
    assert_accounted(s)
    gate.set()
    assert ok.result(timeout=T) == 1
    for f in bad:
        with pytest.raises(ValueError):
            f.result(timeout=T)
    assert all(f.result(timeout=T) == "held" for f in held)
    s = wait_quiet(pool, 6)
    assert (s.completed, s.failed, s.cancelled) == (3, 2, 1)
    assert s.rejected == 4  # separate: refused submits were never submitted
    assert_accounted(s)


def call_in(where: str, call):
    """Run ``call()`` in the main thread or in another thread; return
    ``(result, error)``. The main thread matters: only its blocking waits
    are sliced so that signal handlers can run."""
    if where == "main":
        assert threading.current_thread() is threading.main_thread()
        try:
            return call(), None
        except BaseException as exc:  # noqa: BLE001
            return None, exc
    sub = BlockedSubmitter(call)
    sub.start()
    assert sub.returned.wait(T * 2)
    sub.join(T)
    return sub.result, sub.error


WHERE = ["main", "thread"]


def test_blocked_submit_records_blocked_time_and_rejection(pool_factory, gate):
    pool = pool_factory(1, queue_size=1, on_full="block")
    saturate(pool, gate, 1, queued=1)
    s = pool.stats()
    assert s.blocked_seconds_total == 0 and s.blocked_seconds_max == 0 and s.rejected == 0
    with pytest.raises(PoolOverloaded):
        pool.schedule(_ident, (1,), submit_timeout=0.2)
    s = pool.stats()
    assert s.rejected > 0
    assert s.blocked_seconds_total >= 0.15
    assert 0 < s.blocked_seconds_max <= s.blocked_seconds_total
    # A blocked submit that gets in adds its wait too.
    sub = BlockedSubmitter(lambda: pool.submit(_ident, 2))
    sub.start()
    wait_until(lambda: pool.stats().blocked_submitters == 1)
    time.sleep(0.05)
    gate.set()
    assert sub.returned.wait(T)
    sub.join(T)
    assert sub.result.result(timeout=T) == 2
    s2 = pool.stats()
    assert s2.blocked_seconds_total > s.blocked_seconds_total
    assert s2.blocked_seconds_max >= s.blocked_seconds_max


@pytest.mark.parametrize("where", WHERE)
def test_blocked_seconds_max_is_the_longest_single_wait(pool_factory, gate, where):
    """One submit that waited 0.2 s before giving up: blocked_seconds_max is
    that submit's wait (~0.2 s), not a fraction of it."""
    pool = pool_factory(1, queue_size=1, on_full="block")
    saturate(pool, gate, 1, queued=1)
    _, err = call_in(where, lambda: pool.schedule(_ident, (1,), submit_timeout=0.2))
    assert isinstance(err, PoolOverloaded)
    s = pool.stats()
    assert s.blocked_seconds_total >= 0.18
    assert s.blocked_seconds_max >= 0.18, (
        f"one 0.2 s wait recorded as blocked_seconds_max={s.blocked_seconds_max:.3f} "
        f"(blocked_seconds_total={s.blocked_seconds_total:.3f})")


@pytest.mark.parametrize("where", WHERE)
def test_timed_out_submit_counts_as_one_rejection(pool_factory, gate, where):
    """One refused submit is one rejection, however long it waited."""
    pool = pool_factory(1, queue_size=1, on_full="block")
    saturate(pool, gate, 1, queued=1)
    before = pool.stats().rejected
    _, err = call_in(where, lambda: pool.schedule(_ident, (1,), submit_timeout=0.2))
    assert isinstance(err, PoolOverloaded)
    after = pool.stats().rejected
    assert after - before == 1, f"one timed-out submit counted as {after - before} rejections"


@pytest.mark.parametrize("where", WHERE)
def test_blocked_submit_that_gets_in_is_not_a_rejection(pool_factory, gate, where):
    """A submit that waited and was then accepted was never refused: it
    counts in ``submitted`` and must not count in ``rejected``."""
    pool = pool_factory(1, queue_size=1, on_full="block")
    saturate(pool, gate, 1, queued=1)
    opener = threading.Timer(0.2, gate.set)
    opener.start()
    try:
        fut, err = call_in(where, lambda: pool.submit(_ident, 7))
    finally:
        opener.join(T)
    assert err is None, err
    assert fut.result(timeout=T) == 7
    s = wait_quiet(pool, 3)
    assert s.submitted == 3
    assert s.blocked_seconds_total > 0
    assert s.rejected == 0, f"an accepted (blocked, then admitted) submit counted as {s.rejected} rejection(s)"


# ---------------------------------------------------------------------------
# 6. load and lifecycle scenarios
# ---------------------------------------------------------------------------

@needs_statm
@pytest.mark.timeout(240)
def test_flood_of_a_million_submits_is_bounded_and_lossless(pool_factory):
    n, size = 1_000_000, 1000
    pool = pool_factory(2, queue_size=size, on_full="block")
    submit = pool.submit
    window: collections.deque = collections.deque()
    checked = 0
    max_queued = 0
    rss_base = rss_peak = 0
    t0 = time.monotonic()
    for i in range(n):
        window.append((i, submit(_double, i)))
        # Verify (and drop) futures as they finish, so that what this test
        # holds stays bounded too and RSS reflects the pool alone.
        while window and window[0][1].done():
            j, f = window.popleft()
            assert f.result(timeout=0) == 2 * j
            checked += 1
        if i % 10_000 == 0:
            max_queued = max(max_queued, pool.stats().queued)
            if i == 100_000:
                rss_base = rss_bytes()
            elif i > 100_000:
                rss_peak = max(rss_peak, rss_bytes())
    for j, f in window:
        assert f.result(timeout=T) == 2 * j
        checked += 1
    elapsed = time.monotonic() - t0
    assert checked == n
    assert max_queued <= size
    assert rss_peak - rss_base < 30 * 2**20, f"RSS grew by {(rss_peak - rss_base) / 2**20:.1f} MiB"
    s = wait_quiet(pool, n)
    assert s.completed == n and s.failed == 0 and s.cancelled == 0
    assert s.blocked_seconds_total > 0, "the producer never had to wait: not a flood"
    assert elapsed < 60, f"{n} submits took {elapsed:.1f} s"


def _record(log: list, who: int, k: int) -> None:
    log.append((who, k))
    time.sleep(0.001)  # a slot's worth of time, GIL released, for submitters to re-queue


@pytest.mark.timeout(120)
def test_blocked_submitters_get_in_fairly(pool_factory, gate):
    """8 threads submit into a full queue (1 worker, queue_size=1). With a FIFO
    of blocked submitters, every thread's k-th task is accepted before any
    thread's (k+2)-th (one round of slack for a thread that is slow to
    re-queue after getting in), and nobody is starved."""
    threads_n, per_thread = 8, 25
    pool = pool_factory(1, queue_size=1, on_full="block")
    saturate(pool, gate, 1, queued=1)
    log: list = []  # (thread, k) in execution order == acceptance order (1 worker, FIFO)

    def producer(who):
        for k in range(per_thread):
            pool.submit(_record, log, who, k)

    subs = [BlockedSubmitter(lambda who=who: producer(who), name=f"sub-{who}") for who in range(threads_n)]
    for s in subs:
        s.start()
    wait_until(lambda: pool.stats().blocked_submitters == threads_n, what="8 blocked submitters")
    gate.set()
    for s in subs:
        assert s.returned.wait(T * 2), f"{s.name} starved"
        s.join(T)
        assert s.error is None, s.error
    wait_quiet(pool, 2 + threads_n * per_thread)
    assert len(log) == threads_n * per_thread
    assert sorted(log) == [(w, k) for w in range(threads_n) for k in range(per_thread)]
    pos = {item: i for i, item in enumerate(log)}
    for k in range(per_thread - 2):
        latest_kth = max(pos[(w, k)] for w in range(threads_n))
        earliest_k2th = min(pos[(w, k + 2)] for w in range(threads_n))
        assert latest_kth < earliest_k2th, (
            f"unfair: a thread's task #{k + 2} was accepted before another's #{k}; "
            f"order: {log[:64]}...")


def _record_only(log: list, tag: str) -> None:
    log.append(tag)


def test_blocked_main_thread_keeps_its_place_in_the_fifo(pool_factory, gate):
    """The main thread blocks first, another thread second; the main thread
    must get in first, however long both wait (here ~0.4 s)."""
    pool = pool_factory(1, queue_size=1, on_full="block")
    saturate(pool, gate, 1, queued=1)
    log: list = []

    def second():
        wait_until(lambda: pool.stats().blocked_submitters >= 1, what="the main thread to block")
        return pool.submit(_record_only, log, "second")

    def opener():
        wait_until(lambda: second_sub.returned.is_set() or pool.stats().blocked_submitters >= 2,
                   what="two blocked submitters")
        time.sleep(0.4)
        gate.set()

    second_sub = BlockedSubmitter(second)
    second_sub.start()
    open_thread = threading.Thread(target=opener, daemon=True)
    open_thread.start()
    first = pool.submit(_record_only, log, "first (main thread)")
    assert second_sub.returned.wait(T)
    second_sub.join(T)
    open_thread.join(T)
    assert second_sub.error is None
    first.result(timeout=T)
    second_sub.result.result(timeout=T)
    assert log == ["first (main thread)", "second"], (
        f"acceptance order {log}: the main thread, blocked first, was overtaken")


@pytest.mark.parametrize("cancel_futures", [False, True])
def test_shutdown_wakes_blocked_submitters_with_pool_closed(pool_factory, gate, cancel_futures):
    pool = pool_factory(1, queue_size=1, on_full="block")
    held, queued = saturate(pool, gate, 1, queued=1)
    ran = threading.Event()
    subs = [BlockedSubmitter(lambda: pool.submit(ran.set)) for _ in range(4)]
    for s in subs:
        s.start()
    wait_until(lambda: pool.stats().blocked_submitters == 4, what="4 blocked submitters")
    assert pool.shutdown(wait=False, cancel_futures=cancel_futures) is False
    for s in subs:
        assert s.returned.wait(T), "a blocked submitter was not woken by shutdown"
        s.join(T)
        assert isinstance(s.error, PoolClosed), s.error
    assert pool.stats().blocked_submitters == 0
    gate.set()
    assert pool.shutdown(wait=True, timeout=T) is True
    assert held.result(timeout=T) == "held"
    if cancel_futures:
        assert queued.cancelled()
    else:
        assert queued.result(timeout=T) == "held"
    assert not ran.is_set()
    s = pool.stats()
    assert s.submitted == 2 and s.closed
    assert_accounted(s)


def test_blocked_submitter_with_timeout_is_woken_by_shutdown_too(pool_factory, gate):
    pool = pool_factory(1, queue_size=1, on_full="block", submit_timeout=60.0)
    saturate(pool, gate, 1, queued=1)
    sub = BlockedSubmitter(lambda: pool.submit(_ident, 1))
    sub.start()
    wait_until(lambda: pool.stats().blocked_submitters == 1)
    pool.shutdown(wait=False)
    assert sub.returned.wait(T)
    sub.join(T)
    assert isinstance(sub.error, PoolClosed)
