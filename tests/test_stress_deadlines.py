"""Stress: deadlines, cancels and native tasks racing a discarding shutdown.

Opt-in (``python -m pytest -q -m stress``). Each round: a fresh pool; four
threads submit Python tasks with short random deadlines (some cooperative,
polling ``current_task().check()``), native tasks and small native batches;
another thread cancels or ``request_cancel()``s random futures; then
``shutdown(cancel_futures=True)`` lands at a random moment. Afterwards every
future ended exactly once (one done-callback), every batch is done, no thread
of the pool is left, and the counters balance.
"""

from __future__ import annotations

import array
import os
import random
import threading
import time

import pytest

import ringpool
from ringpool import _core

pytestmark = [pytest.mark.stress, pytest.mark.timeout(300)]

ROUNDS = 300
SUBMITTERS = 4
T = 30.0


def _spin(seconds: float, cooperative: bool) -> str:
    end = time.monotonic() + seconds
    ctx = ringpool.current_task()
    while time.monotonic() < end:
        if cooperative:
            ctx.check()
    return "ran"


def _one_round(rng: random.Random, fns: dict) -> None:
    pool = ringpool.Pool(rng.choice((1, 2, 4)))
    counter = array.array("q", [0])
    futures: list = []
    batches: list = []
    ends: dict[int, int] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def on_done(f) -> None:
        with lock:
            ends[id(f)] = ends.get(id(f), 0) + 1

    def submitter(seed: int) -> None:
        r = random.Random(seed)
        while not stop.is_set():
            try:
                kind = r.random()
                if kind < 0.6:
                    f = pool.schedule(_spin, (r.random() * 0.002, r.random() < 0.5),
                                      timeout=r.random() * 0.004)
                elif kind < 0.9:
                    f = pool.submit_native(fns["add_one"], counter)
                else:
                    batches.append(pool.submit_native_many(fns["return_arg"], r.randrange(1, 200)))
                    continue
            except ringpool.PoolClosed:
                return
            f.add_done_callback(on_done)
            with lock:
                futures.append(f)

    def canceller(seed: int) -> None:
        r = random.Random(seed)
        while not stop.is_set():
            with lock:
                f = r.choice(futures) if futures else None
            if f is not None:
                (f.cancel if r.random() < 0.5 else f.request_cancel)()
            time.sleep(0.0002)

    threads = [threading.Thread(target=submitter, args=(rng.random(),)) for _ in range(SUBMITTERS)]
    threads.append(threading.Thread(target=canceller, args=(rng.random(),)))
    for t in threads:
        t.start()
    time.sleep(rng.random() * 0.05)
    pool.shutdown(wait=False, cancel_futures=True)
    stop.set()
    for t in threads:
        t.join(T)
        assert not t.is_alive()
    assert pool.shutdown(wait=True, timeout=T)
    for f in futures:
        assert f.done()
        if not f.cancelled():
            exc = f.exception(0)
            assert exc is None or isinstance(exc, (ringpool.TaskTimeout, ringpool.TaskCancelled)), exc
    for b in batches:
        assert b.wait(T)
    deadline = time.monotonic() + T
    while len(ends) < len(futures) and time.monotonic() < deadline:
        time.sleep(0.001)  # callbacks of futures failed by the timer run on its thread
    assert all(ends.get(id(f)) == 1 for f in futures)
    s = pool.stats()
    assert s.accounted, s
    assert s.queued == 0 and s.running == 0 and s.overrunning == 0, s


def test_deadlines_cancels_and_native_tasks_race_shutdown() -> None:
    fns = _core._selftest_functions()
    rng = random.Random(int(os.environ.get("RP_STRESS_SEED", "20261127")))
    for _ in range(ROUNDS):
        _one_round(rng, fns)
    assert _core.wait_for_engine_threads(T)
