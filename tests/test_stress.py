"""Stress: shutdown(cancel_futures=True) racing 16 submitting threads.

Opt-in (``python -m pytest -q -m stress``). Every round uses a fresh
``Pool(4)``; 16 threads submit in a tight loop until they get ``PoolClosed``
while another thread calls ``shutdown(cancel_futures=True)`` at a random
moment. Afterwards every future a submitter got must be done (completed or
cancelled, none pending) and the pool's accounting must balance.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import random
import sys
import threading
import time

import pytest

import ringpool

pytestmark = [pytest.mark.stress, pytest.mark.timeout(300)]

ROUNDS = 500
SUBMITTERS = 16
#: Past this many futures a submitter slows down (bounds the round's work;
#: it still submits until PoolClosed).
MAX_PER_SUBMITTER = 2000
#: A short switch interval lets the closer thread in among 16 busy submitters.
SWITCH_INTERVAL = 0.0005
T = 30.0


def _task(x):
    return x


def _one_round(rng: random.Random) -> tuple[int, int]:
    pool = ringpool.Pool(4)
    start = threading.Barrier(SUBMITTERS + 1)
    got: list[list[cf.Future]] = [[] for _ in range(SUBMITTERS)]
    errors: list[BaseException] = []
    delay = rng.uniform(0.0, 0.003)

    def submitter(k: int) -> None:
        mine = got[k]
        try:
            start.wait(T)
            while True:
                mine.append(pool.submit(_task, k))
                if len(mine) >= MAX_PER_SUBMITTER:
                    # Bounded work per round: keep trying, slowly, until closed.
                    time.sleep(0.0005)
        except ringpool.PoolClosed:
            return
        except BaseException as e:  # anything else is a failure
            errors.append(e)

    def closer() -> None:
        try:
            start.wait(T)
            time.sleep(delay)
            if not pool.shutdown(wait=True, cancel_futures=True, timeout=T):
                errors.append(AssertionError("shutdown(timeout) timed out"))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=submitter, args=(k,)) for k in range(SUBMITTERS)]
    threads.append(threading.Thread(target=closer))
    for t in threads:
        t.start()
    for t in threads:
        t.join(T)
    assert not any(t.is_alive() for t in threads), "a submitter or the closer hung"
    assert errors == [], errors
    assert pool.shutdown(timeout=T) is True
    futures = [f for mine in got for f in mine]
    pending = [f for f in futures if not f.done()]
    assert not pending, f"{len(pending)} of {len(futures)} futures never finished"
    cancelled = sum(f.cancelled() for f in futures)
    for f in futures:
        if not f.cancelled():
            f.result(timeout=0)
    s = pool.stats()
    assert s.submitted == s.completed + s.failed + s.cancelled + s.queued + s.running, s
    assert s.accounted, s
    assert s.queued == s.running == 0 and s.failed == 0, s
    assert s.submitted == len(futures), (s, len(futures))
    assert s.cancelled == cancelled and s.completed == len(futures) - cancelled, (s, cancelled)
    return len(futures), cancelled


def test_shutdown_cancel_futures_races_sixteen_submitters():
    seed = int(os.environ.get("RINGPOOL_STRESS_SEED", random.randrange(1 << 32)))
    rng = random.Random(seed)
    t0 = time.monotonic()
    total = total_cancelled = 0
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        for _ in range(ROUNDS):
            n, c = _one_round(rng)
            total += n
            total_cancelled += c
    finally:
        sys.setswitchinterval(old_interval)
    took = time.monotonic() - t0
    print(f"\nstress: {ROUNDS} rounds, {total} futures ({total_cancelled} cancelled), "
          f"{took:.1f} s, seed {seed} (RINGPOOL_STRESS_SEED)")
    assert total > 0
