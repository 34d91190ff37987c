"""Lifecycle: every accepted task ends exactly once, visibly, through every
kind of shutdown, interpreter exit, Ctrl-C and fork().

In-process tests cover what cannot crash or hang the test run (shutdown modes,
unretrieved-failure logging, done-callbacks). Everything that can crash or
hang (interpreter exit, signals, fork, faults inside tasks, leak loops) runs
in a fresh interpreter with a hard timeout and a faulthandler watchdog.

After every scenario where the pool is still reachable, the accounting
invariant ``submitted == completed + failed + cancelled + queued + running``
(and ``stats().accounted``) is checked.

tests/test_process_life.py already covers the plain exit / atexit / module
global / basic fork scenarios; the ones here are the harder variants.
"""

from __future__ import annotations

import concurrent.futures as cf
import gc
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import ringpool

pytestmark = pytest.mark.timeout(120)

#: Upper bound for anything that should finish at once ("does not hang").
T = 30.0
#: Hard limit for one child interpreter.
CHILD_TIMEOUT_S = 60

POSIX = os.name == "posix"
needs_posix = pytest.mark.skipif(not POSIX, reason="POSIX signals")
needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
needs_proc = pytest.mark.skipif(
    not os.path.isdir("/proc/self/task"), reason="needs /proc/self/task and /proc/self/fd (Linux)"
)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def assert_accounted(pool: ringpool.Pool) -> ringpool.PoolStats:
    s = pool.stats()
    assert s.submitted == s.completed + s.failed + s.cancelled + s.queued + s.running, s
    assert s.accounted, s
    return s


def _identity(x):
    return x


class _Gate:
    """``n`` tasks block in ``enter`` until ``release``; ``wait_all_in``
    returns once all ``n`` are inside (the workers are then busy)."""

    def __init__(self, n: int) -> None:
        self.barrier = threading.Barrier(n + 1)
        self.release = threading.Event()

    def enter(self, value=None):
        self.barrier.wait(T)
        assert self.release.wait(T)
        return value

    def wait_all_in(self) -> None:
        self.barrier.wait(T)


#: Put at the top of every child script.
_PRELUDE = f"""\
import faulthandler
faulthandler.dump_traceback_later({CHILD_TIMEOUT_S - 10}, exit=True)
import gc, os, sys, threading, time
import concurrent.futures as cf
import ringpool

def say(*parts):
    # One write per line: print() from several threads can interleave.
    sys.stdout.write(" ".join(map(str, parts)) + "\\n")
    sys.stdout.flush()

def check_accounting(pool):
    s = pool.stats()
    assert s.submitted == s.completed + s.failed + s.cancelled + s.queued + s.running, s
    assert s.accounted, s
    return s
"""


def run_child(code: str, *args: str, timeout: float = CHILD_TIMEOUT_S, python_args=()) -> subprocess.CompletedProcess:
    """Run ``code`` (dedented, after the prelude) in a fresh interpreter;
    ``args`` become ``sys.argv[1:]``."""
    script = _PRELUDE + textwrap.dedent(code)
    try:
        return subprocess.run(
            [sys.executable, *python_args, "-c", script, *args],
            capture_output=True, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:  # pragma: no cover - a hang
        pytest.fail(f"child hung for {timeout} s\n--- stdout ---\n{e.stdout}\n--- stderr ---\n{e.stderr}")


def describe(proc: subprocess.CompletedProcess) -> str:
    return f"exit status {proc.returncode}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"


def assert_clean_exit(proc: subprocess.CompletedProcess) -> None:
    # On an ASan build the sanitizer's own notes (==PID==WARNING: ...) are
    # not the child's output.
    stderr = "".join(line for line in proc.stderr.splitlines(keepends=True)
                     if not (line.startswith("==") and "Sanitizer" in line))
    assert proc.returncode == 0 and stderr == "", describe(proc)


# ===========================================================================
# 1. shutdown modes
# ===========================================================================

def test_default_shutdown_drains_every_queued_future():
    pool = ringpool.Pool(2)
    gate = _Gate(2)
    running = [pool.submit(gate.enter, "r") for _ in range(2)]
    gate.wait_all_in()
    queued = [pool.submit(_identity, i) for i in range(300)]
    s = assert_accounted(pool)
    assert s.running == 2 and s.queued == 300
    threading.Timer(0.1, gate.release.set).start()
    assert pool.shutdown() is True
    assert all(f.done() and not f.cancelled() for f in running + queued)
    assert [f.result(timeout=0) for f in queued] == list(range(300))
    s = assert_accounted(pool)
    assert (s.submitted, s.completed, s.cancelled, s.failed) == (302, 302, 0, 0)
    assert s.queued == s.running == 0 and s.closed


def test_cancel_futures_cancels_every_queued_future_and_counts_it():
    pool = ringpool.Pool(2)
    gate = _Gate(2)
    running = [pool.submit(gate.enter, "ran") for _ in range(2)]
    gate.wait_all_in()
    calls = []
    queued = [pool.submit(_identity, i) for i in range(100)]
    for f in queued:
        f.add_done_callback(calls.append)
    waited = {}

    def waiter():
        done, not_done = cf.wait(queued, timeout=T)
        waited["t"] = time.monotonic()
        waited["not_done"] = len(not_done)

    w = threading.Thread(target=waiter)
    w.start()
    time.sleep(0.05)  # the waiter is inside cf.wait()
    t0 = time.monotonic()
    assert pool.shutdown(wait=False, cancel_futures=True) is False
    w.join(T)
    # wait() is told at once, while the running tasks are still blocked.
    assert waited["not_done"] == 0 and waited["t"] - t0 < 1.0
    assert not gate.release.is_set()
    assert all(f.cancelled() for f in queued)
    assert sorted(map(id, calls)) == sorted(map(id, queued))  # each callback once
    assert not any(f.done() for f in running)
    s = assert_accounted(pool)
    assert s.cancelled == 100 and s.running == 2 and s.queued == 0
    gate.release.set()
    assert pool.shutdown(wait=True, cancel_futures=True) is True
    assert [f.result(timeout=0) for f in running] == ["ran", "ran"]
    s = assert_accounted(pool)
    assert (s.submitted, s.completed, s.cancelled) == (102, 2, 100)


def test_shutdown_wait_and_cancel_futures_together():
    pool = ringpool.Pool(1)
    gate = _Gate(1)
    running = pool.submit(gate.enter, "r")
    gate.wait_all_in()
    queued = [pool.submit(_identity, i) for i in range(50)]
    threading.Timer(0.2, gate.release.set).start()
    assert pool.shutdown(wait=True, cancel_futures=True) is True
    assert running.result(timeout=0) == "r"
    assert all(f.cancelled() for f in queued)
    s = assert_accounted(pool)
    assert (s.completed, s.cancelled) == (1, 50)


def test_shutdown_timeout_returns_false_then_finishes_in_the_background():
    pool = ringpool.Pool(2)
    gate = _Gate(2)
    running = [pool.submit(gate.enter, i) for i in range(2)]
    gate.wait_all_in()
    queued = [pool.submit(_identity, i) for i in range(20)]
    t0 = time.monotonic()
    assert pool.shutdown(timeout=0.2) is False
    elapsed = time.monotonic() - t0
    assert 0.15 <= elapsed < 2.0, elapsed
    # Closed either way...
    assert pool.shutdown_called and pool.stats().closed
    with pytest.raises(ringpool.PoolClosed):
        pool.submit(_identity, 1)
    # ...but nothing was cancelled: the queue drains in the background.
    assert not any(f.done() for f in queued)
    assert_accounted(pool)
    gate.release.set()
    done, not_done = cf.wait(running + queued, timeout=T)
    assert not not_done
    assert [f.result(timeout=0) for f in running] == [0, 1]
    assert [f.result(timeout=0) for f in queued] == list(range(20))
    assert pool.shutdown(timeout=T) is True
    s = assert_accounted(pool)
    assert (s.submitted, s.completed, s.cancelled) == (22, 22, 0)


def test_shutdown_wait_false_returns_false_and_work_completes_later():
    pool = ringpool.Pool(1)
    gate = _Gate(1)
    running = pool.submit(gate.enter, "r")
    gate.wait_all_in()
    queued = [pool.submit(_identity, i) for i in range(10)]
    assert pool.shutdown(wait=False) is False
    gate.release.set()
    assert [f.result(timeout=T) for f in queued] == list(range(10))
    assert running.result(timeout=0) == "r"
    assert pool.shutdown() is True
    assert_accounted(pool)


def test_shutdown_twice_and_with_other_arguments_is_safe():
    pool = ringpool.Pool(2)
    futs = [pool.submit(_identity, i) for i in range(20)]
    assert pool.shutdown() is True
    assert pool.shutdown() is True
    assert pool.shutdown(wait=True, cancel_futures=True) is True
    assert pool.shutdown(wait=False) is False
    assert pool.shutdown(timeout=0) is True
    assert [f.result(timeout=0) for f in futs] == list(range(20))
    s = assert_accounted(pool)
    assert s.completed == 20 and s.cancelled == 0


@pytest.mark.parametrize("mode", ["drain", "mixed"])
def test_shutdown_from_8_threads_at_once(mode):
    pool = ringpool.Pool(2)
    gate = _Gate(2)
    running = [pool.submit(gate.enter, "r") for _ in range(2)]
    gate.wait_all_in()
    queued = [pool.submit(_identity, i) for i in range(200)]
    start = threading.Barrier(8)
    results, errors = [], []

    def closer(k):
        try:
            start.wait(T)
            results.append(pool.shutdown(wait=True, cancel_futures=(mode == "mixed" and k % 2 == 0)))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=closer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    assert all(t.is_alive() for t in threads)  # all of them wait for the running tasks
    gate.release.set()
    for t in threads:
        t.join(T)
    assert not any(t.is_alive() for t in threads), "a concurrent shutdown() hung"
    assert errors == [] and results == [True] * 8
    assert [f.result(timeout=0) for f in running] == ["r", "r"]
    assert all(f.done() for f in queued)
    n_cancelled = sum(f.cancelled() for f in queued)
    if mode == "drain":
        assert n_cancelled == 0
    else:
        assert n_cancelled == 200  # workers were blocked: nothing could start first
    s = assert_accounted(pool)
    assert s.cancelled == n_cancelled and s.completed == 202 - n_cancelled


@pytest.mark.parametrize("cancel_futures", [False, True])
def test_shutdown_from_inside_a_task_returns_false_and_the_queue_is_handled(cancel_futures):
    pool = ringpool.Pool(1)
    queued = []

    def closer():
        t0 = time.monotonic()
        r = pool.shutdown(wait=True, cancel_futures=cancel_futures, timeout=10)
        return r, time.monotonic() - t0

    gate = _Gate(1)
    first = pool.submit(gate.enter, "first")
    gate.wait_all_in()
    inner = pool.submit(closer)
    queued = [pool.submit(_identity, i) for i in range(30)]
    gate.release.set()
    returned, took = inner.result(timeout=T)
    assert returned is False and took < 1.0  # did not wait for itself (nor for its timeout)
    assert first.result(timeout=0) == "first"
    assert pool.shutdown(timeout=T) is True
    if cancel_futures:
        assert all(f.cancelled() for f in queued)
    else:
        assert [f.result(timeout=0) for f in queued] == list(range(30))
    s = assert_accounted(pool)
    assert s.cancelled == (30 if cancel_futures else 0)
    assert s.completed == 2 + (0 if cancel_futures else 30)


_CLOSED_POOLS = {
    "unbounded": {},
    "bounded-block": {"queue_size": 2, "on_full": "block"},
    "bounded-raise": {"queue_size": 2, "on_full": "raise"},
    "bounded-caller_runs": {"queue_size": 2, "on_full": "caller_runs"},
}


@pytest.mark.parametrize("kwargs", list(_CLOSED_POOLS.values()), ids=list(_CLOSED_POOLS))
@pytest.mark.parametrize("how", ["wait", "nowait-busy", "cancel"])
def test_every_entry_point_raises_pool_closed_after_shutdown(kwargs, how):
    pool = ringpool.Pool(1, **kwargs)
    gate = _Gate(1)
    busy = pool.submit(gate.enter, "b")
    gate.wait_all_in()
    if how == "wait":
        gate.release.set()
        assert pool.shutdown() is True
    elif how == "cancel":
        pool.shutdown(wait=False, cancel_futures=True)
    else:
        pool.shutdown(wait=False)
    before = pool.stats().submitted
    calls = {
        "submit": lambda: pool.submit(_identity, 1),
        "try_submit": lambda: pool.try_submit(_identity, 1),
        "schedule": lambda: pool.schedule(_identity, (1,)),
        "schedule-raise": lambda: pool.schedule(_identity, (1,), on_full="raise"),
        "schedule-block": lambda: pool.schedule(_identity, (1,), on_full="block", submit_timeout=1),
        "schedule-caller_runs": lambda: pool.schedule(_identity, (1,), on_full="caller_runs"),
        "map": lambda: pool.map(_identity, [1, 2, 3]),
        "map-consumed": lambda: list(pool.map(_identity, range(100), chunksize=7)),
    }
    for name, call in calls.items():
        with pytest.raises(ringpool.PoolClosed) as info:
            call()
        assert isinstance(info.value, RuntimeError), name
        assert str(info.value) == "cannot schedule new futures after shutdown", name
    assert pool.stats().submitted == before  # nothing accepted
    gate.release.set()
    assert pool.shutdown(timeout=T) is True
    assert busy.result(timeout=0) == "b"
    assert_accounted(pool)


# ===========================================================================
# 2. unretrieved failures and raising done-callbacks
# ===========================================================================

class _Boom(ValueError):
    pass


def _failing_task_with_a_name(tag):
    raise _Boom(f"boom-unretrieved-{tag}")


def _unretrieved_records(caplog):
    return [r for r in caplog.records
            if r.name == "ringpool" and r.levelno == logging.ERROR and "never retrieved" in r.getMessage()]


def _wait_done(futs):
    # concurrent.futures.wait() does not retrieve the exception.
    done, not_done = cf.wait(futs, timeout=T)
    assert not not_done


def test_unretrieved_failure_is_logged_once_with_traceback_and_task_name(caplog):
    caplog.set_level(logging.ERROR, logger="ringpool")
    pool = ringpool.Pool(2, name="unretrieved-pool")
    futs = [pool.submit(_failing_task_with_a_name, i) for i in range(5)]
    _wait_done(futs)
    assert _unretrieved_records(caplog) == []  # not while the futures live
    del futs
    gc.collect()
    gc.collect()
    records = _unretrieved_records(caplog)
    assert len(records) == 5
    for r in records:
        assert "_failing_task_with_a_name" in r.getMessage()
        assert "unretrieved-pool" in r.getMessage()
        assert r.exc_info is not None and r.exc_info[0] is _Boom
    text = caplog.text
    assert text.count("Traceback (most recent call last)") >= 5
    assert "raise _Boom(" in text  # the task's own frame is in the traceback
    assert sorted(re.findall(r"boom-unretrieved-(\d)", text)) == [str(i) for i in range(5)]
    # Logged once: more collections and more pools change nothing.
    gc.collect()
    assert pool.shutdown() is True
    assert len(_unretrieved_records(caplog)) == 5
    s = assert_accounted(pool)
    assert s.failed == 5


@pytest.mark.parametrize("how", ["result", "exception", "exception-timeout0", "callback-before", "callback-after"])
def test_retrieved_failure_is_not_logged(caplog, how):
    caplog.set_level(logging.ERROR, logger="ringpool")
    pool = ringpool.Pool(1)
    gate = _Gate(1)
    pool.submit(gate.enter)
    gate.wait_all_in()
    fut = pool.submit(_failing_task_with_a_name, how)
    seen = []
    if how == "callback-before":
        fut.add_done_callback(seen.append)
    gate.release.set()
    _wait_done([fut])
    if how == "result":
        with pytest.raises(_Boom):
            fut.result()
    elif how == "exception":
        assert isinstance(fut.exception(), _Boom)
    elif how == "exception-timeout0":
        assert isinstance(fut.exception(timeout=0), _Boom)
    elif how == "callback-after":
        fut.add_done_callback(seen.append)
    if how.startswith("callback"):
        assert seen == [fut]
    del fut, seen
    gc.collect()
    assert pool.shutdown() is True
    gc.collect()
    assert _unretrieved_records(caplog) == []
    assert_accounted(pool)


def test_log_unretrieved_false_logs_nothing(caplog):
    caplog.set_level(logging.DEBUG, logger="ringpool")
    pool = ringpool.Pool(2, log_unretrieved=False, failure_log_level=None)
    futs = [pool.submit(_failing_task_with_a_name, i) for i in range(5)]
    _wait_done(futs)
    del futs
    gc.collect()
    assert pool.shutdown() is True
    gc.collect()
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert_accounted(pool)


def test_raising_done_callbacks_are_logged_every_time_and_never_kill_a_worker(caplog):
    caplog.set_level(logging.ERROR, logger="ringpool")
    pool = ringpool.Pool(1)
    gate = _Gate(1)
    pool.submit(gate.enter)
    gate.wait_all_in()
    after = []

    def bad(f):
        raise ZeroDivisionError("callback boom")

    futs = [pool.submit(_identity, i) for i in range(50)]
    for f in futs:
        f.add_done_callback(bad)
        f.add_done_callback(after.append)  # later callbacks still run
    gate.release.set()
    assert [f.result(timeout=T) for f in futs] == list(range(50))
    deadline = time.monotonic() + T
    while len(after) < 50 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(after) == 50
    logged = [r for r in caplog.records if r.name == "ringpool" and "exception calling callback" in r.getMessage()]
    assert len(logged) == 50
    assert all(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in logged)
    # The worker survived every one of them.
    assert pool.submit(_identity, "alive").result(timeout=T) == "alive"
    assert pool.stats().live_workers == 1
    assert pool.shutdown() is True
    s = assert_accounted(pool)  # counters are final once the workers are joined
    assert s.failed == 0 and s.completed == 52


def test_raising_done_callbacks_on_cancelled_futures_are_logged(caplog):
    caplog.set_level(logging.ERROR, logger="ringpool")
    pool = ringpool.Pool(1)
    gate = _Gate(1)
    pool.submit(gate.enter)
    gate.wait_all_in()
    after = []

    def bad(f):
        raise KeyError("cancel callback boom")

    by_cancel = [pool.submit(_identity, i) for i in range(5)]
    by_shutdown = [pool.submit(_identity, i) for i in range(5)]
    for f in by_cancel + by_shutdown:
        f.add_done_callback(bad)
        f.add_done_callback(after.append)
    assert all(f.cancel() for f in by_cancel)
    pool.shutdown(wait=False, cancel_futures=True)
    gate.release.set()
    assert pool.shutdown() is True
    assert len(after) == 10 and all(f.cancelled() for f in after)
    logged = [r for r in caplog.records if "exception calling callback" in r.getMessage()]
    assert len(logged) == 10 and all(r.exc_info[0] is KeyError for r in logged)
    s = assert_accounted(pool)
    assert s.cancelled == 10 and s.completed == 1


def test_done_callback_raising_a_base_exception_is_visible_and_the_worker_lives(caplog):
    caplog.set_level(logging.ERROR, logger="ringpool")
    seen = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = lambda u: seen.append(u.exc_type)
    try:
        pool = ringpool.Pool(1)
        gate = _Gate(1)
        fut = pool.submit(gate.enter, "x")
        gate.wait_all_in()

        def bad(f):
            raise SystemExit("callback exit")

        fut.add_done_callback(bad)
        gate.release.set()
        assert fut.result(timeout=T) == "x"
        assert pool.submit(_identity, 2).result(timeout=T) == 2  # worker alive
        assert pool.shutdown() is True
    finally:
        sys.unraisablehook = old_hook
    logged = [r for r in caplog.records if r.exc_info and r.exc_info[0] is SystemExit]
    assert seen.count(SystemExit) + len(logged) >= 1, "a raising callback vanished"
    assert_accounted(pool)


# ===========================================================================
# 3. interpreter exit (subprocess)
# ===========================================================================

def test_exit_with_pools_dropped_just_before_exit_runs_their_tasks():
    # Pools dropped without shutdown() finish their queue in the background;
    # interpreter exit must wait for them (README: "this includes pools
    # dropped without shutdown()"). Here the pools are dropped as the very
    # last statements, before their workers have even started.
    proc = run_child(
        """
        def out(i):
            sys.stdout.write("task %d\\n" % i)
            sys.stdout.flush()

        def fire_and_forget(i):
            ringpool.Pool(1).submit(out, i)

        for i in range(50):
            fire_and_forget(i)
        """
    )
    assert_clean_exit(proc)
    ran = sorted(int(line.split()[1]) for line in proc.stdout.splitlines())
    assert ran == list(range(50)), f"{50 - len(ran)} task(s) of dropped pools never ran: {describe(proc)}"


def test_exit_with_a_single_pool_dropped_as_the_last_statement():
    proc = run_child(
        """
        ringpool.Pool(1).submit(print, "ran", flush=True)
        """
    )
    assert_clean_exit(proc)
    assert proc.stdout == "ran\n", describe(proc)


def test_exit_with_queued_running_and_failing_tasks_and_no_shutdown():
    proc = run_child(
        """
        pool = ringpool.Pool(2, queue_size=1000)
        started = threading.Event()

        def slow(i):
            started.set()
            time.sleep(0.002)
            say("task", i)
            if i % 10 == 0:
                raise ValueError("a failure nobody asks about")  # retrieved below
            return i

        futs = [pool.submit(slow, i) for i in range(200)]
        for f in futs[::10]:
            f.add_done_callback(lambda f: f.exception())
        assert started.wait(10)
        say("main done")
        """
    )
    assert_clean_exit(proc)
    lines = proc.stdout.splitlines()
    assert "main done" in lines
    assert sorted(int(line.split()[1]) for line in lines if line.startswith("task ")) == list(range(200))


@pytest.mark.parametrize("variant", ["with", "local-no-shutdown", "local-no-wait", "global-no-shutdown"])
def test_pool_created_inside_an_atexit_handler(variant):
    proc = run_child(
        """
        import atexit
        variant = sys.argv[1]

        def task(i):
            time.sleep(0.001)
            say("atexit task", i)
            return i

        def at_exit():
            global LEFT
            if variant == "with":
                with ringpool.Pool(2) as pool:
                    futs = [pool.submit(task, i) for i in range(20)]
                check_accounting(pool)
                assert sum(f.result(0) for f in futs) == 190
            elif variant == "local-no-shutdown":
                pool = ringpool.Pool(2)
                futs = [pool.submit(task, i) for i in range(20)]
                assert sum(f.result(10) for f in futs) == 190
                check_accounting(pool)
            else:
                pool = ringpool.Pool(2)
                if variant == "global-no-shutdown":
                    LEFT = pool  # torn down during finalization
                for i in range(20):
                    # Still queued when the handler returns. Refusing (as
                    # ThreadPoolExecutor does after interpreter shutdown) is
                    # visible; accepting and never running is not.
                    try:
                        pool.submit(task, i)
                    except RuntimeError as e:
                        say("atexit refused", i, type(e).__name__)
                del pool
            say("handler done")

        atexit.register(at_exit)
        say("main done")
        """,
        variant,
    )
    assert_clean_exit(proc)
    lines = proc.stdout.splitlines()
    assert lines[0] == "main done" and "handler done" in lines
    ran = sorted(int(line.split()[2]) for line in lines if line.startswith("atexit task"))
    refused = sorted(int(line.split()[2]) for line in lines if line.startswith("atexit refused"))
    assert sorted(ran + refused) == list(range(20)), (
        f"{20 - len(ran) - len(refused)} accepted task(s) never ran\n{describe(proc)}"
    )


@pytest.mark.parametrize("target", ["same-pool", "other-pool", "new-pool"])
def test_task_that_submits_more_work_during_exit(target):
    proc = run_child(
        """
        target = sys.argv[1]
        pool = ringpool.Pool(2)
        other = ringpool.Pool(1)
        main_done = threading.Event()

        def child(tag):
            say("child ran", tag)
            return tag

        def late(k):
            assert main_done.wait(10)
            time.sleep(0.2)  # the main thread is in the exit hook by now
            try:
                if target == "same-pool":
                    f = pool.submit(child, k)
                elif target == "other-pool":
                    f = other.submit(child, k)
                else:
                    with ringpool.Pool(1) as fresh:
                        f = fresh.submit(child, k)
                    assert f.result(0) == k
            except ringpool.PoolClosed:
                say("late submit refused", k)
            else:
                say("late submit accepted", k)

        for k in range(3):
            pool.submit(late, k)
        main_done.set()
        say("main done")
        """,
        target,
    )
    assert_clean_exit(proc)
    lines = proc.stdout.splitlines()
    for k in range(3):
        refused = f"late submit refused {k}" in lines
        accepted = f"late submit accepted {k}" in lines
        assert refused != accepted, describe(proc)
        if accepted:  # an accepted task must have run
            assert f"child ran {k}" in lines, describe(proc)
    if target == "new-pool":
        assert all(f"late submit accepted {k}" in lines for k in range(3)), describe(proc)


def test_module_global_pool_with_self_referencing_tasks_torn_down_in_finalization(tmp_path):
    (tmp_path / "rp_lifecycle_mod.py").write_text(textwrap.dedent(
        """
        import sys, time
        import ringpool

        POOL = ringpool.Pool(2)

        def work(i):
            time.sleep(0.005)
            sys.stdout.write("mod task %d\\n" % i)
            sys.stdout.flush()
            return POOL  # the result references the pool: a cycle via the future

        FUTS = [POOL.submit(work, i) for i in range(30)]
        POOL.me = FUTS  # pool -> futures -> pool

        class Closer:
            def __del__(self, pool=POOL, closed=ringpool.PoolClosed, write=sys.stdout.write):
                # Runs while the module is torn down, after the exit hook.
                pool.shutdown()
                try:
                    pool.submit(int)
                except closed:
                    write("closer: refused\\n")

        CLOSER = Closer()
        """
    ))
    proc = run_child(
        """
        sys.path.insert(0, sys.argv[1])
        import rp_lifecycle_mod
        say("main done")
        """,
        str(tmp_path),
    )
    assert_clean_exit(proc)
    lines = proc.stdout.splitlines()
    assert sorted(int(line.split()[2]) for line in lines if line.startswith("mod task")) == list(range(30))
    assert lines.count("closer: refused") <= 1


# ===========================================================================
# 4. signals (subprocess, POSIX)
# ===========================================================================

_SIGNAL_SCRIPT = """
import signal
case = sys.argv[1]
release = threading.Event()
started = threading.Event()

def long_task():
    started.set()
    assert release.wait(30)
    return "long"

def item(x):
    started.set()
    assert release.wait(30)
    return x

def handler(signum, frame):
    raise KeyboardInterrupt

signal.signal(signal.SIGALRM, handler)
bounded = case == "submit-blocked"
pool = ringpool.Pool(1, queue_size=1, on_full="block") if bounded else ringpool.Pool(2)
fut = None
if case == "map":
    it = pool.map(item, range(4))
else:
    fut = pool.submit(long_task)
assert started.wait(10)
if bounded:
    queued = pool.submit(int)  # the queue of one is now full
    assert pool.stats().queued == 1

DELAY = 0.3
fire_at = time.monotonic() + DELAY
signal.setitimer(signal.ITIMER_REAL, DELAY)
try:
    if case == "result":
        fut.result()
    elif case == "result-timeout":
        fut.result(timeout=30)
    elif case == "exception":
        fut.exception()
    elif case == "map":
        list(it)
    elif case == "wait":
        cf.wait([fut])
    elif case == "as_completed":
        for f in cf.as_completed([fut]):
            pass
    elif case == "submit-blocked":
        pool.submit(int)
    elif case == "shutdown":
        pool.shutdown(wait=True)
    else:
        raise AssertionError(case)
except KeyboardInterrupt:
    late = time.monotonic() - fire_at
else:
    say("NOT interrupted")
    sys.exit(3)

# The pool is consistent and can be shut down.
check_accounting(pool)
if case == "submit-blocked":
    s = pool.stats()
    assert s.submitted == 2 and s.queued == 1 and s.blocked_submitters == 0, s
if case == "shutdown":
    assert pool.shutdown_called
    try:
        pool.submit(int)
    except ringpool.PoolClosed:
        pass
    else:
        raise AssertionError("submit accepted after an interrupted shutdown")
release.set()
if fut is not None:
    assert fut.result(10) == "long"
if case == "map":
    del it
if case == "submit-blocked":
    assert queued.result(10) == 0
assert pool.shutdown(timeout=10) is True
s = check_accounting(pool)
assert s.queued == s.running == 0
print("late %.6f" % late)
say("ok")
"""

_SIGNAL_CASES = ["result", "result-timeout", "exception", "map", "wait", "as_completed", "submit-blocked", "shutdown"]


@needs_posix
@pytest.mark.parametrize("case", _SIGNAL_CASES)
def test_signal_interrupts_a_blocked_main_thread_promptly(case):
    proc = run_child(_SIGNAL_SCRIPT, case, timeout=45)
    assert proc.returncode == 0 and proc.stdout.splitlines()[-1:] == ["ok"], describe(proc)
    late = float(re.search(r"^late (\S+)$", proc.stdout, re.M).group(1))
    # "Well under a second" after the signal arrived, with a generous margin.
    assert -0.05 <= late < 1.0, f"KeyboardInterrupt raised {late:.3f} s after the signal"


@needs_posix
def test_sigint_from_a_timer_thread_interrupts_a_blocked_result():
    proc = run_child(
        """
        import signal
        release = threading.Event()
        pool = ringpool.Pool(2)
        fut = pool.submit(release.wait, 30)
        sent = {}

        def kill():
            sent["t"] = time.monotonic()
            os.kill(os.getpid(), signal.SIGINT)

        threading.Timer(0.3, kill).start()
        try:
            fut.result()
        except KeyboardInterrupt:
            late = time.monotonic() - sent["t"]
        release.set()
        assert fut.result(10) is True
        assert pool.shutdown(timeout=10)
        check_accounting(pool)
        print("late %.6f" % late)
        print("ok")
        """
    )
    assert proc.returncode == 0 and proc.stdout.splitlines()[-1:] == ["ok"], describe(proc)
    late = float(re.search(r"^late (\S+)$", proc.stdout, re.M).group(1))
    assert late < 1.0


@needs_posix
def test_signal_handler_submitting_while_main_thread_is_blocked_in_submit():
    proc = run_child(
        """
        import signal
        release = threading.Event()
        started = threading.Event()

        def long_task():
            started.set()
            assert release.wait(30)
            return "long"

        pool = ringpool.Pool(1, queue_size=1, on_full="block")
        other = ringpool.Pool(2)  # unbounded
        seen = []

        def handler(signum, frame):
            try:
                pool.try_submit(int)
            except ringpool.PoolOverloaded:
                seen.append("try_submit overloaded")
            try:
                pool.schedule(int, on_full="raise")
            except ringpool.PoolOverloaded:
                seen.append("schedule overloaded")
            seen.append(other.submit(pow, 2, 5).result(10))
            seen.append(list(other.map(abs, [-1, -2, -3])))

        signal.signal(signal.SIGALRM, handler)
        first = pool.submit(long_task)
        assert started.wait(10)
        second = pool.submit(int)  # fills the queue
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        threading.Timer(1.0, release.set).start()
        t0 = time.monotonic()
        third = pool.submit(pow, 3, 3)  # blocks until release; the handler runs meanwhile
        took = time.monotonic() - t0
        assert seen == ["try_submit overloaded", "schedule overloaded", 32, [1, 2, 3]], seen
        assert 0.5 < took < 20, took
        assert [first.result(10), second.result(10), third.result(10)] == ["long", 0, 27]
        assert pool.shutdown(timeout=10) and other.shutdown(timeout=10)
        s = check_accounting(pool)
        assert s.submitted == 3 and s.completed == 3, s
        check_accounting(other)
        print("ok")
        """,
        timeout=45,
    )
    assert_clean_exit(proc)
    assert proc.stdout == "ok\n"


# ===========================================================================
# 5. fork (subprocess, POSIX)
# ===========================================================================

# CPython 3.12+ warns on fork() in a process with threads: not ringpool's doing.
_FORK_ARGS = ("-W", "ignore::DeprecationWarning")

#: The checks every forked child runs on the pool it inherited; `record`
#: writes "<pid> <tag>" to the shared log, so the parent sees any task that
#: ran in a child.
_FORK_PRELUDE = """
import signal, traceback
LOG = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

def record(i):
    os.write(LOG, b"%d %d\\n" % (os.getpid(), i))
    return i

def pids_in_log():
    with open(sys.argv[1]) as f:
        return {int(line.split()[0]) for line in f if line.strip()}

def child_main(inherited, release=None):
    code = 1
    try:
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(20)  # a hung child dies instead of hanging the test
        me = os.getpid()
        for name, call in [
            ("submit", lambda: inherited.submit(record, -1)),
            ("try_submit", lambda: inherited.try_submit(record, -1)),
            ("schedule", lambda: inherited.schedule(record, (-1,))),
            ("map", lambda: list(inherited.map(record, [-1]))),
        ]:
            try:
                call()
            except ringpool.BrokenPool:
                pass
            else:
                raise AssertionError("child: inherited %s accepted a task" % name)
        if release is not None:
            release.set()  # a phantom worker copy would now run the parent's queue
        t0 = time.monotonic()
        r = inherited.shutdown()
        r2 = inherited.shutdown(wait=True, cancel_futures=True)
        assert time.monotonic() - t0 < 2, "child: shutdown of the inherited pool was slow"
        try:
            inherited.submit(record, -1)
        except (ringpool.BrokenPool, ringpool.PoolClosed):
            pass
        else:
            raise AssertionError("child: inherited pool accepted a task after shutdown")
        with ringpool.Pool(2) as fresh:
            assert fresh.submit(os.getpid).result(10) == me
            assert list(fresh.map(abs, range(-100, 0), chunksize=3)) == list(range(100, 0, -1))
        assert fresh.shutdown() is True
        check_accounting(fresh)
        time.sleep(0.2)
        code = 0
    except BaseException:
        traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

def exit_code_of(pid):
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
"""


@needs_fork
@pytest.mark.parametrize("bounded", [False, True], ids=["unbounded", "bounded-blocking"])
def test_fork_while_another_thread_is_submitting(tmp_path, bounded):
    proc = run_child(
        _FORK_PRELUDE + textwrap.dedent("""
        bounded = sys.argv[2] == "1"
        pool = ringpool.Pool(2, queue_size=4 if bounded else None, on_full="block")
        stop = threading.Event()
        futs = []

        def submitter():
            i = 0
            while not stop.is_set():
                futs.append(pool.submit(record, i))  # blocks in the engine when bounded
                i += 1

        threads = [threading.Thread(target=submitter) for _ in range(2)]
        for t in threads:
            t.start()
        codes = []
        for _ in range(10):
            time.sleep(0.01)
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                child_main(pool)
            codes.append(exit_code_of(pid))
        stop.set()
        for t in threads:
            t.join(10)
            assert not t.is_alive()
        assert pool.shutdown(timeout=20) is True
        assert all(f.done() and not f.cancelled() for f in futs)
        for f in futs:
            f.result(0)
        s = check_accounting(pool)
        assert s.submitted == len(futs) == s.completed, (s, len(futs))
        assert pids_in_log() <= {os.getpid()}, "a child ran the parent's tasks"
        print("children", codes, "tasks", len(futs))
        """),
        str(tmp_path / "log"), "1" if bounded else "0",
        python_args=_FORK_ARGS,
    )
    assert_clean_exit(proc)
    m = re.search(r"children \[(.*)\] tasks (\d+)", proc.stdout)
    assert m and m.group(1) == ", ".join(["0"] * 10), describe(proc)
    assert int(m.group(2)) > 0


@needs_fork
def test_fork_with_busy_workers_child_never_runs_the_parents_queue(tmp_path):
    proc = run_child(
        _FORK_PRELUDE + textwrap.dedent("""
        pool = ringpool.Pool(2)
        gate = threading.Barrier(3)
        release = threading.Event()

        def block():
            gate.wait(10)
            assert release.wait(30)
            return os.getpid()

        running = [pool.submit(block) for _ in range(2)]
        gate.wait(10)
        queued = [pool.submit(record, i) for i in range(50)]
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            child_main(pool, release)
        code = exit_code_of(pid)
        check_accounting(pool)
        release.set()
        assert pool.shutdown(timeout=20) is True
        assert [f.result(0) for f in running] == [os.getpid()] * 2
        assert [f.result(0) for f in queued] == list(range(50))
        s = check_accounting(pool)
        assert s.completed == 52
        assert pids_in_log() == {os.getpid()}, "a child ran the parent's tasks"
        print("child", code)
        """),
        str(tmp_path / "log"),
        python_args=_FORK_ARGS,
    )
    assert_clean_exit(proc)
    assert proc.stdout == "child 0\n"


@needs_fork
def test_fork_from_a_done_callback(tmp_path):
    proc = run_child(
        _FORK_PRELUDE + textwrap.dedent("""
        pool = ringpool.Pool(1)
        started, release = threading.Event(), threading.Event()

        def block():
            started.set()
            assert release.wait(30)
            return "first"

        first = pool.submit(block)
        assert started.wait(10)
        queued = [pool.submit(record, i) for i in range(20)]
        children = []
        forked = threading.Event()

        def fork_here(f):
            # Runs on the pool's worker thread, with the parent's queue pending.
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                child_main(pool)
            children.append(pid)
            forked.set()

        first.add_done_callback(fork_here)
        release.set()
        assert first.result(10) == "first"
        assert forked.wait(20)
        code = exit_code_of(children[0])
        assert pool.shutdown(timeout=20) is True
        assert [f.result(0) for f in queued] == list(range(20))
        check_accounting(pool)
        assert pids_in_log() == {os.getpid()}, "a child ran the parent's tasks"
        print("child", code)
        """),
        str(tmp_path / "log"),
        python_args=_FORK_ARGS,
    )
    assert_clean_exit(proc)
    assert proc.stdout == "child 0\n"


@needs_fork
def test_multiprocessing_fork_pool_while_a_ringpool_is_active(tmp_path):
    proc = run_child(
        _FORK_PRELUDE + textwrap.dedent("""
        import multiprocessing as mp

        def in_child(x):
            # Each multiprocessing worker can make and use its own ringpool.
            with ringpool.Pool(1) as p:
                return p.submit(pow, x, 2).result(10), os.getpid()

        if __name__ == "__main__":
            pool = ringpool.Pool(2)
            started, release = threading.Event(), threading.Event()

            def block():
                started.set()
                assert release.wait(30)
                return "blocked"

            running = pool.submit(block)
            assert started.wait(10)
            queued = [pool.submit(record, i) for i in range(20)]
            with mp.get_context("fork").Pool(2) as mpp:
                out = mpp.map(in_child, range(10))
            assert [sq for sq, _ in out] == [x * x for x in range(10)]
            assert os.getpid() not in {pid for _, pid in out}
            release.set()
            assert running.result(10) == "blocked"
            assert [f.result(10) for f in queued] == list(range(20))
            assert pool.shutdown(timeout=20) is True
            check_accounting(pool)
            assert pids_in_log() == {os.getpid()}
            print("ok")
        """),
        str(tmp_path / "log"),
        python_args=_FORK_ARGS,
    )
    assert_clean_exit(proc)
    assert proc.stdout == "ok\n"


# ===========================================================================
# 6. faults inside tasks (subprocess: a crash must not take pytest down)
# ===========================================================================

def test_memory_error_in_a_task():
    proc = run_child(
        """
        pool = ringpool.Pool(1)

        def raise_it():
            raise MemoryError("explicit")

        def allocate():
            return bytearray(1 << 62)  # a real allocation failure

        f1 = pool.submit(raise_it)
        f2 = pool.submit(allocate)
        assert isinstance(f1.exception(10), MemoryError)
        assert isinstance(f2.exception(10), MemoryError)
        assert pool.submit(pow, 2, 8).result(10) == 256  # the worker survived
        assert pool.shutdown(timeout=10)
        s = check_accounting(pool)
        assert (s.failed, s.completed) == (2, 1), s
        print("ok")
        """
    )
    assert_clean_exit(proc)
    assert proc.stdout == "ok\n"


def test_deep_recursion_and_recursion_error_in_a_task():
    proc = run_child(
        """
        # Python calls use no C stack from 3.11 on; 3.10 recurses in C, so
        # its depths must fit the default 8 MiB stack (main thread included).
        DEPTH, LIMIT = (50000, 100000) if sys.version_info >= (3, 11) else (5000, 8000)
        sys.setrecursionlimit(LIMIT)

        def rec(n):
            return 0 if n == 0 else rec(n - 1) + 1

        def forever(n):
            return forever(n + 1)

        pool = ringpool.Pool(2)
        assert pool.submit(rec, DEPTH).result(30) == DEPTH
        exc = pool.submit(forever, 0).exception(30)
        assert isinstance(exc, RecursionError), repr(exc)
        assert exc.__traceback__ is not None
        assert pool.submit(rec, DEPTH).result(30) == DEPTH  # the worker survived
        assert rec(DEPTH) == DEPTH
        assert pool.shutdown(timeout=10)
        s = check_accounting(pool)
        assert (s.failed, s.completed) == (1, 2), s
        print("ok")
        """
    )
    assert_clean_exit(proc)
    assert proc.stdout == "ok\n"


@needs_posix
@pytest.mark.skipif(sys.version_info >= (3, 12),
                    reason="CPython 3.12+ caps C recursion depth on every thread, whatever the stack size")
def test_worker_stack_is_at_least_the_main_threads():
    # Recursion through a C function (map) uses C stack at every level. The
    # soft RLIMIT_STACK is raised at run time: the main thread may then grow
    # to it, and so must a worker (a plain threading.Thread would not: glibc
    # sized its default at start-up and it would crash here).
    proc = run_child(
        """
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
        want = 96 << 20
        if hard != resource.RLIM_INFINITY and hard < want:
            print("skip: hard stack limit too low")
            sys.exit(0)
        resource.setrlimit(resource.RLIMIT_STACK, (want, hard))
        sys.setrecursionlimit(1000000)

        def crec(n):
            return 0 if n == 0 else 1 + max(map(crec, (n - 1,)))

        DEPTH = 40000  # far beyond what 8 MiB of stack holds
        assert crec(DEPTH) == DEPTH  # on the main thread
        with ringpool.Pool(1) as pool:
            assert pool.submit(crec, DEPTH).result(60) == DEPTH
        check_accounting(pool)
        print("ok")
        """
    )
    if proc.stdout.startswith("skip:"):
        pytest.skip(proc.stdout.strip())
    assert_clean_exit(proc)
    assert proc.stdout == "ok\n"


@pytest.mark.skipif(sys.version_info >= (3, 12),
                    reason="CPython 3.12+ caps C recursion depth on every thread, whatever the stack size")
def test_stack_size_is_configurable():
    proc = run_child(
        """
        sys.setrecursionlimit(1000000)

        def crec(n):
            return 0 if n == 0 else 1 + max(map(crec, (n - 1,)))

        DEPTH = 40000  # needs far more than the default 8 MiB
        with ringpool.Pool(1, stack_size=128 << 20) as pool:
            assert pool.submit(crec, DEPTH).result(60) == DEPTH
            assert pool.submit(crec, 10).result(10) == 10
        check_accounting(pool)
        print("ok")
        """
    )
    assert_clean_exit(proc)
    assert proc.stdout == "ok\n"


def test_exception_whose_str_and_repr_raise():
    proc = run_child(
        """
        class Nasty(Exception):
            def __str__(self):
                raise RuntimeError("str failed")
            def __repr__(self):
                raise RuntimeError("repr failed")

        def fail():
            raise Nasty()

        pool = ringpool.Pool(1, failure_log_level=None)
        f = pool.submit(fail)
        assert type(f.exception(10)) is Nasty
        try:
            f.result(0)
        except Nasty:
            pass
        else:
            raise AssertionError("no exception")
        futs = [pool.submit(fail) for _ in range(5)]
        cf.wait(futs, timeout=10)
        assert all(type(g.exception(0)) is Nasty for g in futs)
        assert pool.submit(pow, 2, 3).result(10) == 8  # the worker survived
        assert pool.shutdown(timeout=10)
        s = check_accounting(pool)
        assert (s.failed, s.completed) == (6, 1), s
        print("ok")
        """
    )
    assert_clean_exit(proc)
    assert proc.stdout == "ok\n"


def test_objects_whose_del_raises_go_to_unraisablehook():
    proc = run_child(
        """
        hooked = []
        sys.unraisablehook = lambda u: hooked.append((type(u.exc_value).__name__, str(u.exc_value),
                                                      threading.current_thread().name))

        class BadDel:
            def __init__(self, tag):
                self.tag = tag
            def __del__(self):
                raise ZeroDivisionError("del " + self.tag)

        pool = ringpool.Pool(1, name="delpool")

        # 1. a result, retrieved, then dropped here
        f = pool.submit(BadDel, "result")
        assert f.result(10).tag == "result"
        del f
        gc.collect()
        # 2. a result nobody keeps: dropped on the worker
        pool.submit(BadDel, "dropped-result")
        # 3. an argument, dropped on the worker after the task ran
        pool.submit(lambda x: None, BadDel("argument"))
        # 4. a task that raises while holding one
        def fails_holding(x):
            raise ValueError("task failed")
        g = pool.submit(fails_holding, BadDel("arg-of-failed"))
        assert isinstance(g.exception(10), ValueError)
        del g
        # the worker is fine and still runs tasks
        assert pool.submit(pow, 2, 4).result(10) == 16
        assert pool.shutdown(timeout=10)
        gc.collect()
        s = check_accounting(pool)
        assert (s.completed, s.failed) == (4, 1), s
        tags = sorted(msg for kind, msg, _ in hooked if kind == "ZeroDivisionError")
        assert tags == sorted(["del result", "del dropped-result", "del argument", "del arg-of-failed"]), hooked
        assert all(kind == "ZeroDivisionError" for kind, _, _ in hooked), hooked
        print("ok")
        """
    )
    assert_clean_exit(proc)
    assert proc.stdout == "ok\n"


@pytest.mark.parametrize("bounded", [False, True])
def test_object_whose_del_submits_to_the_pool(bounded):
    proc = run_child(
        """
        bounded = sys.argv[1] == "1"
        hooked = []
        sys.unraisablehook = lambda u: hooked.append(repr(u.exc_value))
        pool = ringpool.Pool(1, queue_size=1 if bounded else None, on_full="block")
        ran = []
        all_ran = threading.Event()

        def follow_up(tag):
            ran.append(tag)
            if len(ran) == 3:
                all_ran.set()
            return tag

        class Submitter:
            def __init__(self, tag):
                self.tag = tag
            def __del__(self):
                pool.submit(follow_up, self.tag)  # may run on a worker

        pool.submit(Submitter, "dropped-result")  # result dropped on the worker
        pool.submit(lambda x: None, Submitter("argument"))
        f = pool.submit(Submitter, "kept-result")
        f.result(10)
        del f
        gc.collect()
        assert all_ran.wait(10), ran
        assert sorted(ran) == ["argument", "dropped-result", "kept-result"]
        assert pool.submit(pow, 3, 2).result(10) == 9
        assert pool.shutdown(timeout=10)
        # After shutdown the same __del__ is refused (PoolClosed) and reported, not lost.
        late = Submitter("late")
        del late
        gc.collect()
        assert len(hooked) == 1 and "PoolClosed" in hooked[0], hooked
        check_accounting(pool)
        print("ok")
        """,
        "1" if bounded else "0",
    )
    assert_clean_exit(proc)
    assert proc.stdout == "ok\n"


# ===========================================================================
# 7. leaks (subprocess, Linux)
# ===========================================================================

@needs_proc
def test_ten_thousand_pools_leave_no_threads_or_fds():
    proc = run_child(
        """
        def threads():
            return len(os.listdir("/proc/self/task"))

        def fds():
            return len(os.listdir("/proc/self/fd"))

        # Warm up (lazy imports, logging, the first pool's one-time costs).
        with ringpool.Pool(1) as p:
            p.submit(int).result(10)
        ringpool._core.wait_for_workers(10)
        t0, f0 = threads(), fds()
        start = time.monotonic()
        N = 10000
        for i in range(N):
            p = ringpool.Pool(1)
            assert p.submit(pow, i, 1).result(10) == i
            assert p.shutdown() is True
            if i % 2000 == 0:
                check_accounting(p)
        del p
        took = time.monotonic() - start
        assert ringpool._core.wait_for_workers(30)
        gc.collect()
        deadline = time.monotonic() + 5
        while (threads() > t0 or fds() > f0) and time.monotonic() < deadline:
            time.sleep(0.01)  # a thread that has just left may still be reaped
        say("threads", t0, threads(), "fds", f0, fds(), "took %.2f" % took)
        assert threads() <= t0 + 1 and fds() <= f0 + 2
        print("ok")
        """
    )
    assert_clean_exit(proc)
    assert proc.stdout.endswith("ok\n")


@needs_proc
def test_a_thousand_dropped_pools_leave_no_threads():
    proc = run_child(
        """
        def threads():
            return len(os.listdir("/proc/self/task"))

        t0 = threads()
        for i in range(1000):
            p = ringpool.Pool(1)
            p.submit(pow, i, 2)  # dropped with its task queued or running
        del p
        assert ringpool._core.wait_for_workers(30)
        gc.collect()
        deadline = time.monotonic() + 5
        while threads() > t0 and time.monotonic() < deadline:
            time.sleep(0.01)  # a thread that has just left may still be reaped
        say("threads", t0, threads())
        assert threads() <= t0 + 1
        assert ringpool._core.live_workers() == 0
        print("ok")
        """
    )
    assert_clean_exit(proc)
    assert proc.stdout.endswith("ok\n")


def test_wait_for_workers_waits_for_a_dropped_pools_starting_worker():
    # The exit hook relies on wait_for_workers() to keep the workers of pools
    # dropped without shutdown() from outliving it. A worker that has been
    # spawned but has not yet run (it waits for the GIL) must count.
    proc = run_child(
        """
        for attempt in range(20):
            p = ringpool.Pool(1)
            fut = p.submit(time.sleep, 0.05)
            del p  # dropped: it drains in the background
            assert ringpool._core.wait_for_workers(30)
            if not fut.done():
                say("attempt", attempt, "wait_for_workers() returned True; live_workers() =",
                    ringpool._core.live_workers(), "and the task has not run")
                break
        else:
            say("ok")
        """
    )
    assert_clean_exit(proc)
    assert proc.stdout == "ok\n", proc.stdout


def test_pool_and_task_objects_die_after_shutdown():
    proc = run_child(
        """
        import weakref

        class Arg:
            pass

        class Res:
            pass

        class Err(Exception):
            pass

        class Fn:
            def __call__(self, arg, fail):
                local = Arg()  # kept alive by the traceback's frame
                if fail:
                    raise Err("failed")
                return Res()

        pool = ringpool.Pool(2)
        refs = {"pool": weakref.ref(pool)}
        futs = []
        for k in range(20):
            fn, arg = Fn(), Arg()
            refs["fn%d" % k], refs["arg%d" % k] = weakref.ref(fn), weakref.ref(arg)
            futs.append(pool.submit(fn, arg, k % 2 == 1))
        del fn, arg
        for k, f in enumerate(futs):
            if k % 2:
                e = f.exception(10)
                assert e.__traceback__ is not None
                refs["exc%d" % k] = weakref.ref(e)
                del e
            else:
                refs["res%d" % k] = weakref.ref(f.result(10))
        assert pool.shutdown() is True
        check_accounting(pool)
        del futs, f, pool
        gc.collect()
        alive = sorted(name for name, r in refs.items() if r() is not None)
        assert alive == [], alive
        assert ringpool._core.wait_for_workers(10)
        print("ok")
        """
    )
    assert_clean_exit(proc)
    assert proc.stdout == "ok\n"


def test_pool_referenced_from_its_own_tasks_closure_is_collected():
    proc = run_child(
        """
        import weakref

        def make():
            pool = ringpool.Pool(1)
            done = threading.Event()

            def task():
                # The closure references the pool (pool -> queued task -> fn -> cell -> pool).
                assert pool.name
                done.set()
                return pool

            pool.keep = task  # and pool -> task, a plain cycle
            gate = threading.Event()
            pool.submit(gate.wait, 10)
            pool.submit(task)  # queued behind the gate
            check_accounting(pool)
            return weakref.ref(pool), gate, done

        ref, gate, done = make()
        gc.collect()
        gate.set()
        assert done.wait(10)
        deadline = time.monotonic() + 10
        while ref() is not None and time.monotonic() < deadline:
            gc.collect()
            time.sleep(0.01)
        assert ref() is None, "the pool was never collected"
        assert ringpool._core.wait_for_workers(10)
        print("ok")
        """
    )
    assert_clean_exit(proc)
    assert proc.stdout == "ok\n"


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_twice_during_exit_does_not_crash():
    # The exit hook waits (uninterruptibly: no worker may outlive it) for a
    # pool dropped with work queued; two Ctrl-C arrive meanwhile. The process
    # must end normally: tasks run, no crash, no fatal error.
    proc = run_child(
        """
        import os, signal, threading

        def slow(i):
            time.sleep(0.05)
            say("ran", i)

        pool = ringpool.Pool(1)
        for i in range(6):
            pool.submit(slow, i)

        def interrupt_twice():
            time.sleep(0.08)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=interrupt_twice, daemon=True).start()
        del pool  # dropped: the exit hook drains it
        """,
        python_args=("-X", "faulthandler"),
    )
    assert proc.returncode in (0, 1, 130, -signal.SIGINT), describe(proc)
    assert "Fatal Python error" not in proc.stderr and "Segmentation" not in proc.stderr, describe(proc)
    assert sorted(int(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("ran")) == list(range(6)), (
        describe(proc)
    )
