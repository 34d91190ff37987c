"""Dynamic scaling: the engine's grow-on-demand / keep_alive / resize as seen
from Python (native thread counts), and the policy layer (``ringpool.scaling``):
policies driven by synthetic snapshots, the timer thread, and its
integration with ``Pool`` (bounds, logging, shutdown, idleness).

No exact timing is asserted: every wait is a poll with a generous deadline.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time

import pytest

import ringpool
from ringpool import OnDemand, QueueDepth, ScalingSnapshot, Throughput
from ringpool import scaling as scaling_mod

pytestmark = pytest.mark.timeout(60)

HAVE_PROC = os.path.isdir("/proc/self/task")
needs_proc = pytest.mark.skipif(not HAVE_PROC, reason="needs /proc/self/task (Linux)")


def native_threads() -> int:
    """Every thread of the process, native engine workers included."""
    return len(os.listdir("/proc/self/task"))


def settled_native_threads(timeout: float = 10.0) -> int:
    """The thread count once threads left by earlier tests (workers of pools
    still winding down, executor threads) have exited: no engine worker left
    and the count unchanged for 0.2 s."""
    ringpool._core.wait_for_workers(timeout)
    end = time.monotonic() + timeout
    last, since = native_threads(), time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.02)
        now = native_threads()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= 0.2:
            break
    return last


def wait_until(pred, timeout: float = 10.0, step: float = 0.005) -> bool:
    end = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() > end:
            return False
        time.sleep(step)


def snap(target=4, *, queued=0, live=None, idle=None, busy=None, lo=1, hi=16,
         throughput=0.0, interval=0.25, completions=None, arrivals=0, t=0.0) -> ScalingSnapshot:
    live = target if live is None else live
    busy = live if busy is None else busy
    idle = max(live - busy, 0) if idle is None else idle
    if completions is None:
        completions = int(round(throughput * interval))
    return ScalingSnapshot(time=t, interval=interval, queued=queued, live=live, idle=idle, busy=busy,
                           min_workers=lo, max_workers=hi, target=target, arrivals=arrivals,
                           completions=completions, throughput=throughput)


# ---------------------------------------------------------------------------
# engine mechanism: growth on demand, keep_alive expiry, resize under load
# ---------------------------------------------------------------------------

@needs_proc
@pytest.mark.parametrize("policy", [None, "queue_depth"])
def test_burst_grows_to_max_then_shrinks_to_min(policy):
    base = settled_native_threads()
    kwargs = {}
    timer = 0
    if policy == "queue_depth":
        kwargs = dict(scaling=QueueDepth(step=4), scaling_interval=0.02)
        timer = 1  # the timer is one more (Python) thread
    pool = ringpool.Pool(8, min_workers=1, keep_alive=0.3, **kwargs)
    try:
        assert wait_until(lambda: native_threads() - base == 1 + timer, 5)
        # Enough queued work that a policy ticking late on a loaded machine
        # still sees a long queue while it grows.
        futs = [pool.submit(time.sleep, 0.25) for _ in range(32)]
        peak = 0

        def at_max():
            nonlocal peak
            peak = max(peak, native_threads() - base - timer)
            return pool.stats().live_workers == 8 and native_threads() - base - timer == 8

        assert wait_until(at_max, 5), (peak, pool.stats())
        for f in futs:
            assert f.result(10) is None
        assert pool.stats().peak_workers == 8
        # After keep_alive the extra workers end and are joined: native threads too.
        assert wait_until(lambda: pool.stats().live_workers == 1 and native_threads() - base == 1 + timer,
                          15), (pool.stats(), native_threads() - base)
    finally:
        assert pool.shutdown(timeout=10)
    assert wait_until(lambda: native_threads() == base, 10)


def _work(i):
    if i % 97 == 0:
        time.sleep(0.001)
    return i * 2


@needs_proc
@pytest.mark.parametrize("policy", [None, "queue_depth"])
def test_resize_loop_under_load_loses_nothing(policy):
    base = settled_native_threads()
    kwargs = dict(scaling=QueueDepth(step=3), scaling_interval=0.005) if policy else {}
    pool = ringpool.Pool(8, min_workers=1, keep_alive=0.05, **kwargs)
    per_thread = 3000
    results: dict[int, list] = {0: [], 1: []}
    stop = threading.Event()

    def submitter(k):
        out = results[k]
        for i in range(per_thread):
            out.append((i, pool.submit(_work, i)))
            if i % 500 == 0:
                time.sleep(0.001)

    subs = [threading.Thread(target=submitter, args=(k,)) for k in (0, 1)]
    for t in subs:
        t.start()
    rng = random.Random(1)
    for _ in range(200):
        hi = rng.randint(1, 8)
        lo = rng.randint(0, hi)
        pool.resize(lo, hi)
        st = pool.stats()
        assert st.min_workers == lo
        assert st.max_workers <= hi
        time.sleep(0.0005)
    for t in subs:
        t.join(30)
        assert not t.is_alive()
    stop.set()
    pool.resize(1, 8)
    for k in (0, 1):
        assert len(results[k]) == per_thread
        for i, f in results[k]:
            assert f.result(30) == 2 * i
    assert pool.shutdown(timeout=15)
    st = pool.stats()
    assert st.submitted == 2 * per_thread
    assert st.submitted == st.completed + st.failed + st.cancelled + st.queued + st.running
    assert st.completed == 2 * per_thread
    assert wait_until(lambda: native_threads() == base, 10), native_threads() - base


# ---------------------------------------------------------------------------
# policies, synthetic snapshots (no threads)
# ---------------------------------------------------------------------------

def test_on_demand_returns_none():
    p = OnDemand()
    for s in (snap(), snap(queued=100, live=1), snap(queued=0, busy=0)):
        assert p.target(s) is None


def test_queue_depth_grows_when_backlog_exceeds_workers():
    p = QueueDepth(step=2)
    assert p.target(snap(4, queued=5, live=4)) == 6
    assert p.target(snap(4, queued=4, live=4)) is None  # not more than live
    # Clamped at max_workers.
    assert p.target(snap(7, queued=50, live=7, hi=8)) == 8
    assert p.target(snap(8, queued=50, live=8, hi=8)) is None


def test_queue_depth_shrinks_toward_min_when_quiet():
    p = QueueDepth(step=2)
    assert p.target(snap(8, queued=0, live=8, busy=3)) == 6
    # Half busy is not "fewer than half": stay.
    assert p.target(snap(8, queued=0, live=8, busy=4)) is None
    # Something queued: no shrinking.
    assert p.target(snap(8, queued=1, live=8, busy=0)) is None
    # Toward min_workers, never below (nor below 1).
    assert p.target(snap(4, queued=0, live=4, busy=0, lo=3)) == 3
    assert p.target(snap(3, queued=0, live=3, busy=0, lo=3)) is None
    assert p.target(snap(1, queued=0, live=1, busy=0, lo=0)) is None
    # From the live count when fewer workers than the target are alive.
    assert p.target(snap(8, queued=0, live=3, busy=0)) == 1


def test_queue_depth_clamps_into_bounds():
    p = QueueDepth(step=2)
    assert p.target(snap(12, queued=1, live=4, busy=4, hi=8)) == 8  # bounds shrank
    assert p.target(snap(1, queued=1, live=1, busy=1, lo=3, hi=8)) == 3
    assert p.initial_target(0, 8) == 1
    assert p.initial_target(2, 8) == 2
    with pytest.raises(ValueError):
        QueueDepth(step=0)


def _drive(policy, curve, ticks, target, lo=1, hi=16, rng=None, noise=0.02, history=None):
    """Feed *policy* saturated snapshots whose throughput is curve(target)."""
    rng = rng or random.Random(0)
    history = [] if history is None else history
    for i in range(ticks):
        tp = curve(target) * (1 + rng.uniform(-noise, noise))
        s = snap(target, queued=1000, lo=lo, hi=hi, throughput=tp, t=i * 0.25)
        new = policy.target(s)
        if new is not None:
            assert lo <= new <= hi or (lo == 0 and new == 1)
            target = new
        history.append(target)
    return target, history


def _peak_at(best, height=1000.0):
    """Unimodal, best at *best*; a neighbour is about 6% slower."""
    return lambda n: height / (1 + 0.07 * (n - best) ** 2)


@pytest.mark.parametrize("seed", range(5))
def test_throughput_converges_and_follows_a_shift(seed):
    rng = random.Random(seed)
    p = Throughput()
    start = p.initial_target(1, 16)
    assert 1 <= start <= 16
    target, hist = _drive(p, _peak_at(6), 120, start, rng=rng)
    tail = hist[-40:]
    assert all(5 <= n <= 7 for n in tail), hist
    assert max(set(tail), key=tail.count) == 6, tail
    # The workload changes: the best count is now 12.
    target, hist = _drive(p, _peak_at(12), 200, target, rng=rng)
    tail = hist[-40:]
    assert all(11 <= n <= 13 for n in tail), hist
    assert max(set(tail), key=tail.count) == 12, tail
    # And back down (say the tasks became fine-grained): best at 2.
    target, hist = _drive(p, _peak_at(2), 200, target, rng=rng)
    assert all(1 <= n <= 3 for n in hist[-40:]), hist


def test_throughput_backs_off_when_more_workers_are_slower():
    # GIL contention: every extra worker costs throughput; the best is 1.
    p = Throughput(initial=8)
    assert p.initial_target(1, 16) == 8
    _, hist = _drive(p, lambda n: 1000.0 / n ** 0.5, 150, 8)
    assert all(n <= 2 for n in hist[-40:]), hist


def test_throughput_does_not_add_workers_for_nothing():
    # A flat curve (e.g. the pool is bound by something else): never climb.
    p = Throughput(initial=4)
    _, hist = _drive(p, lambda n: 500.0, 200, 4, noise=0.01)
    assert max(hist) <= 5
    assert hist[-1] <= 4


def test_throughput_holds_when_not_saturated_and_stays_in_bounds():
    p = Throughput()
    # Not saturated (empty queue, not everyone busy): the arrival rate, hold.
    for _ in range(20):
        assert p.target(snap(4, queued=0, live=4, busy=1, throughput=100.0)) is None
    # Bounds moved under it: clamp at once.
    assert p.target(snap(4, queued=10, lo=1, hi=2, throughput=100.0)) == 2
    assert p.target(snap(1, queued=10, lo=3, hi=8, throughput=100.0)) == 3
    # min == max: nothing to explore.
    q = Throughput()
    _, hist = _drive(q, _peak_at(6), 50, 5, lo=5, hi=5)
    assert set(hist) == {5}
    assert Throughput(initial=100).initial_target(2, 8) == 8
    assert Throughput(initial=1).initial_target(3, 8) == 3
    with pytest.raises(ValueError):
        Throughput(margin=1.5)


def test_throughput_waits_for_enough_completions():
    # Slow tasks: few completions per tick. It must not decide on 0/s samples.
    p = Throughput(initial=4)
    for _ in range(30):
        assert p.target(snap(4, queued=10, throughput=0.0, completions=0)) is None


# ---------------------------------------------------------------------------
# the timer and its integration in Pool
# ---------------------------------------------------------------------------

class Counting:
    def __init__(self, result=None):
        self.calls = 0
        self.result = result
        self.snaps: list[ScalingSnapshot] = []

    def target(self, snapshot):
        self.calls += 1
        self.snaps.append(snapshot)
        return self.result


def _timer_threads(pool):
    return [t for t in threading.enumerate() if t.name == f"{pool.name}-scaling"]


def test_validation_and_exports():
    assert ringpool.ScalingPolicy is scaling_mod.ScalingPolicy
    assert isinstance(Throughput(), ringpool.ScalingPolicy)
    with pytest.raises(TypeError):
        ringpool.Pool(2, scaling=object())
    with pytest.raises(TypeError):
        ringpool.Pool(2, scaling=QueueDepth)  # the class, not an instance
    with pytest.raises(TypeError):
        ringpool.Pool(2, scaling=QueueDepth(), scaling_interval="1")
    with pytest.raises(ValueError):
        ringpool.Pool(2, scaling=QueueDepth(), scaling_interval=0)


def test_on_demand_starts_no_timer(pool_factory):
    pool = pool_factory(4, scaling=OnDemand())
    assert pool.submit(pow, 2, 5).result(10) == 32
    assert _timer_threads(pool) == []
    pool2 = pool_factory(4)
    assert _timer_threads(pool2) == []


def test_timer_is_a_daemon_and_stops_at_shutdown():
    pool = ringpool.Pool(4, min_workers=1, scaling=Counting(), scaling_interval=0.01)
    (timer,) = _timer_threads(pool)
    assert timer.daemon
    assert pool.submit(time.sleep, 0.05).result(10) is None
    t0 = time.monotonic()
    assert pool.shutdown(timeout=10)
    assert time.monotonic() - t0 < 5
    assert not timer.is_alive()
    # shutdown(wait=False) also ends it (it wakes when the pool closes).
    pool = ringpool.Pool(4, min_workers=1, scaling=Counting(), scaling_interval=10.0)
    (timer,) = _timer_threads(pool)
    pool.shutdown(wait=False)
    timer.join(10)
    assert not timer.is_alive()
    assert pool.shutdown(timeout=10)


def test_timer_sleeps_while_idle_at_minimum(pool_factory):
    policy = Counting()
    pool = pool_factory(4, min_workers=1, keep_alive=0.1, scaling=policy, scaling_interval=0.01)
    time.sleep(0.5)
    assert policy.calls == 0  # idle at its minimum from the start
    futs = [pool.submit(time.sleep, 0.2) for _ in range(4)]
    for f in futs:
        f.result(10)
    assert policy.calls > 0  # it ran while there was work
    assert wait_until(lambda: (lambda s: s.live_workers == 1 and s.queued == 0 and s.running == 0)(pool.stats()), 10)
    time.sleep(0.1)
    before = policy.calls
    time.sleep(0.5)
    assert policy.calls == before
    # And wakes up again with work.
    pool.submit(time.sleep, 0.1).result(10)
    assert policy.calls > before
    s = policy.snaps[-1]
    assert (s.min_workers, s.max_workers, s.target) == (1, 4, 4)
    assert s.interval > 0 and s.completions >= 0 and s.arrivals >= 0


def test_policy_that_raises_is_logged_and_the_pool_keeps_its_size(pool_factory, caplog):
    class Broken:
        calls = 0

        def initial_target(self, lo, hi):
            return 3

        def target(self, snapshot):
            Broken.calls += 1
            raise RuntimeError("policy bug")

    caplog.set_level(logging.ERROR, logger="ringpool")
    pool = pool_factory(6, min_workers=1, keep_alive=None, scaling=Broken(), scaling_interval=0.005)
    assert pool.stats().max_workers == 3
    futs = [pool.submit(time.sleep, 0.3) for _ in range(6)]
    assert wait_until(lambda: Broken.calls >= 5, 10)
    st = pool.stats()
    assert st.max_workers == 3 and st.live_workers == 3
    for f in futs:
        assert f.result(10) is None
    recs = [r for r in caplog.records if "scaling policy" in r.getMessage()]
    assert len(recs) >= 2  # logged each time: the timer survived the first
    assert recs[0].exc_info and "policy bug" in str(recs[0].exc_info[1])
    assert recs[0].pool == pool.name
    assert pool.stats().max_workers == 3
    assert _timer_threads(pool)[0].is_alive()


def test_scaling_changes_are_logged_with_reason_and_snapshot(pool_factory, caplog):
    caplog.set_level(logging.DEBUG, logger="ringpool")
    pool = pool_factory(8, min_workers=1, scaling=QueueDepth(step=2), scaling_interval=0.01)
    futs = [pool.submit(time.sleep, 0.05) for _ in range(40)]
    for f in futs:
        f.result(20)
    recs = [r for r in caplog.records if getattr(r, "reason", "").startswith("scaling QueueDepth")]
    assert recs, [r.getMessage() for r in caplog.records]
    r = recs[0]
    assert r.levelno == logging.DEBUG
    assert r.pool == pool.name
    assert isinstance(r.snapshot, dict) and {"queued", "live", "target", "throughput"} <= set(r.snapshot)


def test_user_resize_bounds_the_policy(pool_factory):
    pool = pool_factory(8, min_workers=0, keep_alive=0.05, scaling=QueueDepth(step=4), scaling_interval=0.005)
    pool.resize(max_workers=3)
    assert pool.max_workers == 3
    seen = 0
    release = threading.Event()
    futs = [pool.submit(release.wait, 10) for _ in range(12)]
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        st = pool.stats()
        seen = max(seen, st.live_workers)
        assert st.max_workers <= 3
        time.sleep(0.005)
    assert seen == 3
    # resize(min_workers=...) alone keeps the user's max (not the policy's target).
    pool.resize(min_workers=2)
    assert pool._scaler.bounds == (2, 3)
    pool.resize(max_workers=8)
    assert pool._scaler.bounds == (2, 8)
    assert wait_until(lambda: pool.stats().live_workers > 3, 10)  # the backlog grows it again
    release.set()
    for f in futs:
        assert f.result(10) is True
    with pytest.raises(ValueError):
        pool.resize(min_workers=9)


@pytest.mark.timeout(120)
def test_throughput_policy_on_a_real_pool(pool_factory):
    pool = pool_factory(16, min_workers=1, scaling=Throughput(), scaling_interval=0.02)
    futs = [pool.submit(time.sleep, 0.002) for _ in range(3000)]
    for f in futs:
        assert f.result(60) is None
    # A worker counts a task after it completes the future: wait for the count.
    assert wait_until(lambda: pool.stats().completed == 3000, 10)
    assert 1 <= pool.stats().max_workers <= 16
