"""Interpreter exit and fork(), each scenario in a fresh subprocess.

"Exits cleanly" means: exit status 0, every accepted task ran, and nothing on
stderr (no "Exception ignored", no fatal error, no traceback). Every child
has a hard timeout, and a faulthandler watchdog that dumps its threads (to
stderr, failing the test with a useful trace) shortly before that.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

#: Hard limit for one child process; each takes well under a second normally.
TIMEOUT_S = 60

pytestmark = pytest.mark.timeout(3 * TIMEOUT_S)

_PROLOGUE = f"""\
import faulthandler
faulthandler.dump_traceback_later({TIMEOUT_S - 10}, exit=True)
"""


def run_python(code: str, *extra_args: str, watchdog: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new interpreter; return the finished process.

    ``watchdog=False`` for scripts that fork: a forked child that exits
    normally while faulthandler.dump_traceback_later is armed hangs in
    CPython itself (it waits for the parent's watchdog thread).
    """
    script = (_PROLOGUE if watchdog else "") + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, *extra_args, "-c", script],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def assert_clean_exit(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0 and proc.stderr == "", (
        f"exit status {proc.returncode}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    )


# ---------------------------------------------------------------------------
# interpreter exit
# ---------------------------------------------------------------------------

def test_exit_without_shutdown_runs_every_task():
    proc = run_python(
        """
        import atexit, sys
        done = []
        # Registered before ringpool is imported, so it runs after ringpool's
        # exit hook (atexit runs after threading's exit hooks anyway).
        atexit.register(lambda: print("atexit saw", len(done), flush=True))

        import time
        import ringpool

        pool = ringpool.Pool(2)

        def slow(i):
            time.sleep(0.01)
            done.append(i)
            sys.stdout.write(f"task {i}\\n")
            sys.stdout.flush()

        for i in range(50):
            pool.submit(slow, i)
        for i in range(1000):
            pool.submit(done.append, -i)
        print("main done", flush=True)
        # no shutdown(): the interpreter exits with work still queued
        """
    )
    assert_clean_exit(proc)
    lines = proc.stdout.splitlines()
    assert "main done" in lines
    assert sorted(int(line.split()[1]) for line in lines if line.startswith("task ")) == list(range(50))
    assert lines[-1] == "atexit saw 1050"


def test_exit_waits_for_a_running_task_and_drains_the_queue():
    proc = run_python(
        """
        import threading, time
        import ringpool

        pool = ringpool.Pool(1)
        started = threading.Event()

        def long_task():
            started.set()
            time.sleep(0.3)
            print("long task finished", flush=True)

        pool.submit(long_task)
        for i in range(5):
            pool.submit(print, "queued", i, flush=True)
        assert started.wait(10)
        """
    )
    assert_clean_exit(proc)
    assert proc.stdout.splitlines() == ["long task finished"] + [f"queued {i}" for i in range(5)]


def test_exit_through_sys_exit_still_runs_queued_tasks():
    proc = run_python(
        """
        import sys, time
        import ringpool

        def task(i):
            time.sleep(0.005)
            sys.stdout.write(f"t {i}\\n")  # one write: workers run concurrently
            sys.stdout.flush()

        pool = ringpool.Pool(2)
        for i in range(20):
            pool.submit(task, i)
        sys.exit(3)
        """
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr == ""
    assert sorted(int(line.split()[1]) for line in proc.stdout.splitlines()) == list(range(20))


def test_pool_dropped_without_shutdown_before_exit():
    # A pool that goes out of scope with work queued (no shutdown(), no
    # `with`) drains in the background; exit must still wait for that work,
    # as it does for ThreadPoolExecutor.
    proc = run_python(
        """
        import sys
        import ringpool

        def say(line):
            sys.stdout.write(line + "\\n")  # one write: workers run concurrently
            sys.stdout.flush()

        def fire_and_forget():
            pool = ringpool.Pool(2)
            for i in range(10):
                pool.submit(say, f"dropped-pool task {i}")
            # returns without shutdown(): the pool is dropped with work queued

        fire_and_forget()
        """
    )
    assert_clean_exit(proc)
    assert sorted(proc.stdout.splitlines()) == [f"dropped-pool task {i}" for i in range(10)]


def test_pool_dropped_with_a_blocked_worker_before_exit():
    proc = run_python(
        """
        import threading, time
        import ringpool

        gate = threading.Event()
        pool = ringpool.Pool(1)
        pool.submit(gate.wait, 10)
        for i in range(10):
            pool.submit(print, "dropped-pool task", i, flush=True)
        del pool  # dropped with work queued
        gate.set()
        """
    )
    assert_clean_exit(proc)
    assert proc.stdout.splitlines() == [f"dropped-pool task {i}" for i in range(10)]


def test_pool_created_in_an_atexit_handler():
    proc = run_python(
        """
        import atexit
        import ringpool

        def at_exit():
            with ringpool.Pool(2) as pool:
                total = sum(pool.map(abs, range(-100, 0)))
                print("atexit pool", total, pool.submit(pow, 2, 5).result(10), flush=True)

        atexit.register(at_exit)
        """
    )
    assert_clean_exit(proc)
    assert proc.stdout == "atexit pool 5050 32\n"


def test_pool_created_in_an_atexit_handler_importing_ringpool_late():
    # ringpool's exit hook cannot be registered with threading any more when
    # ringpool is first imported inside an atexit handler; a `with` pool must
    # still work and the process exit cleanly.
    proc = run_python(
        """
        import atexit

        def at_exit():
            import ringpool
            with ringpool.Pool(2) as pool:
                print("late import", pool.submit(pow, 3, 3).result(10), flush=True)

        atexit.register(at_exit)
        """
    )
    assert_clean_exit(proc)
    assert proc.stdout.splitlines() == ["late import 27"]


def test_pool_left_open_in_an_atexit_handler_runs_its_tasks():
    # Accepted tasks must run (or be refused at submit), even for a pool that
    # an atexit handler leaves open; with ringpool imported early or late.
    for import_at_top in (True, False):
        proc = run_python(
            f"""
            import atexit, sys
            if {import_at_top}:
                import ringpool

            def say(line):
                sys.stdout.write(line + "\\n")  # one write: workers run concurrently
                sys.stdout.flush()

            def at_exit():
                import ringpool
                left_open = ringpool.Pool(2)  # never shut down
                for i in range(3):
                    left_open.submit(say, f"left open ran {{i}}")

            atexit.register(at_exit)
            """
        )
        assert_clean_exit(proc)
        assert sorted(proc.stdout.splitlines()) == [f"left open ran {i}" for i in range(3)], (
            f"import_at_top={import_at_top}"
        )


def test_module_global_pools_torn_down_at_finalization():
    proc = run_python(
        """
        import time
        import ringpool

        POOL = ringpool.Pool(2, min_workers=2)
        IDLE = ringpool.Pool(3, min_workers=3, keep_alive=None)  # idle workers at exit
        UNUSED = ringpool.Pool(2)

        class Holder:
            def __init__(self):
                self.me = self  # a reference cycle: freed by the final gc
                self.pool = ringpool.Pool(2)

        CYCLE = Holder()
        CYCLE.pool.submit(time.sleep, 0.05)
        futures = [POOL.submit(time.sleep, 0.01) for _ in range(20)]
        print("main done", flush=True)
        """
    )
    assert_clean_exit(proc)
    assert proc.stdout == "main done\n"


def test_use_of_a_pool_during_finalization_is_refused_cleanly():
    # A __del__ run at finalization (after ringpool's exit hook) submits to a
    # pool: it may be refused with PoolClosed, but must not crash or hang.
    proc = run_python(
        """
        import sys, time
        import ringpool

        class Late:
            def __del__(self):
                try:
                    fut = POOL.submit(pow, 2, 3)
                    sys.stdout.write("late result %r\\n" % (fut.result(5),))
                except ringpool.PoolClosed:
                    sys.stdout.write("late refused\\n")

        POOL = ringpool.Pool(2)
        LATE = Late()
        POOL.submit(time.sleep, 0.05)
        """
    )
    assert_clean_exit(proc)
    assert proc.stdout in ("late refused\n", "late result 8\n")


def test_exit_after_a_failing_initializer_does_not_hang():
    proc = run_python(
        """
        import ringpool

        def init():
            raise ValueError("initializer failed on purpose")

        pool = ringpool.Pool(2, initializer=init)
        fut = pool.submit(pow, 2, 2)
        print(type(fut.exception(10)).__name__, flush=True)
        try:
            pool.submit(pow, 2, 2)
        except ringpool.BrokenPool:
            print("submit refused", flush=True)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["BrokenPool", "submit refused"]
    # The failure is logged (logging's last-resort handler writes to stderr),
    # but nothing else may appear there.
    assert "initializer failed on purpose" in proc.stderr
    assert "Exception ignored" not in proc.stderr
    assert "Fatal Python error" not in proc.stderr


# ---------------------------------------------------------------------------
# fork
# ---------------------------------------------------------------------------

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")

# CPython 3.12+ warns (DeprecationWarning) on fork() in a process with threads;
# that warning is about fork itself, not about ringpool.
_FORK_ARGS = ("-W", "ignore::DeprecationWarning")


@needs_fork
def test_fork_child_gets_a_broken_copy_and_can_start_a_new_pool():
    proc = run_python(
        """
        import concurrent.futures, os, sys, threading, time
        import ringpool

        pool = ringpool.Pool(1)
        assert pool.submit(pow, 2, 2).result(10) == 4

        started, release = threading.Event(), threading.Event()
        ran_in = []  # (pid, item) for every record() call

        def block():
            started.set()
            assert release.wait(30)
            return "blocker"

        def record(i):
            ran_in.append((os.getpid(), i))
            return i

        blocker = pool.submit(block)
        assert started.wait(10)
        # Queued in the parent at fork time: they must never run in the child.
        queued = [pool.submit(record, i) for i in range(10)]
        parent = os.getpid()

        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                try:
                    pool.submit(record, 99)
                except ringpool.BrokenPool:
                    print("child: inherited pool refused", flush=True)
                except concurrent.futures.BrokenExecutor:
                    print("child: refused, but not with ringpool.BrokenPool", flush=True)
                    raise SystemExit(1)
                else:
                    print("child: inherited pool ACCEPTED a task", flush=True)
                    raise SystemExit(1)
                with ringpool.Pool(2) as fresh:
                    assert list(fresh.map(record, range(5))) == list(range(5))
                    assert fresh.submit(pow, 3, 3).result(10) == 27
                print("child: new pool works", flush=True)
                pool.shutdown(wait=True)  # must not hang on the parent's workers
                pool.shutdown(wait=True, cancel_futures=True)
                print("child: inherited shutdown returned", flush=True)
                time.sleep(0.1)  # give a phantom worker (there must be none) a chance
                mine = sorted(i for p, i in ran_in if p == os.getpid())
                assert mine == list(range(5)), f"child ran {mine}"
                code = 0
            finally:
                sys.stdout.flush()
            sys.exit(code)  # a normal exit: runs ringpool's exit hook in the child

        _, status = os.waitpid(pid, 0)
        print("parent: child exit", os.waitstatus_to_exitcode(status), flush=True)
        release.set()
        assert blocker.result(10) == "blocker"
        assert [f.result(10) for f in queued] == list(range(10))
        assert pool.submit(pow, 5, 2).result(10) == 25
        assert list(pool.map(abs, [-1, -2])) == [1, 2]
        assert {p for p, _ in ran_in} == {parent}
        print("parent: pool still works", flush=True)
        """,
        *_FORK_ARGS,
        watchdog=False,
    )
    assert_clean_exit(proc)
    assert proc.stdout.splitlines() == [
        "child: inherited pool refused",
        "child: new pool works",
        "child: inherited shutdown returned",
        "parent: child exit 0",
        "parent: pool still works",
    ]


@needs_fork
def test_fork_child_that_ignores_the_inherited_pool_exits_cleanly():
    proc = run_python(
        """
        import os, sys
        import ringpool

        pool = ringpool.Pool(2, min_workers=2)  # idle workers parked at fork time
        assert sum(pool.map(abs, range(-50, 0))) == 1275

        pid = os.fork()
        if pid == 0:
            print("child exiting", flush=True)
            sys.exit(0)  # exit hooks run; the inherited pool must not block them
        _, status = os.waitpid(pid, 0)
        print("parent: child exit", os.waitstatus_to_exitcode(status), flush=True)
        assert pool.submit(pow, 2, 10).result(10) == 1024
        """,
        *_FORK_ARGS,
        watchdog=False,
    )
    assert_clean_exit(proc)
    assert proc.stdout.splitlines() == ["child exiting", "parent: child exit 0"]


@needs_fork
def test_fork_from_a_busy_pool_repeatedly():
    # Fork while workers are busy running tasks, several times; every child
    # must see a broken copy and exit 0 promptly.
    proc = run_python(
        """
        import os, sys, time
        import ringpool

        pool = ringpool.Pool(2)
        futures = [pool.submit(time.sleep, 0.001) for _ in range(2000)]
        statuses = []
        for _ in range(5):
            pid = os.fork()
            if pid == 0:
                try:
                    pool.submit(pow, 1, 1)
                except ringpool.BrokenPool:
                    os._exit(0)
                os._exit(1)
            statuses.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
        print("children", statuses, flush=True)
        for f in futures:
            f.result(30)
        print("parent done", flush=True)
        """,
        *_FORK_ARGS,
        watchdog=False,
    )
    assert_clean_exit(proc)
    assert proc.stdout.splitlines() == ["children [0, 0, 0, 0, 0]", "parent done"]


def test_python_dash_m_runs_tasks_on_workers(tmp_path):
    # `python -m pkg` imports pkg (and so ringpool) from runpy, before any
    # __main__ code runs. Where nothing has imported threading yet (a fresh
    # venv), ringpool must not mistake that for an import inside an atexit
    # handler (which would run every task in the caller): tasks run on
    # worker threads. `python -m ringpool` is exactly this case.
    pkg = tmp_path / "rp_dash_m"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import ringpool  # imported by runpy, before __main__\n")
    (pkg / "__main__.py").write_text(
        "import threading, ringpool, ringpool._core as core\n"
        "with ringpool.Pool(2) as pool:\n"
        "    idents = {pool.submit(threading.get_ident).result(10) for _ in range(20)}\n"
        "print(core._exiting, threading.get_ident() in idents, flush=True)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "rp_dash_m"], capture_output=True, text=True,
                          timeout=60, env=env, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout == "False False\n"
