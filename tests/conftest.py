"""Shared fixtures for the ringpool test suite.

- ``executor_factory``: parametrized over ``ThreadPoolExecutor`` and
  ``ringpool.Pool`` so that the contract tests run against both, with the
  standard library as the oracle. Every executor it makes is shut down at
  teardown.
- ``pool_factory``: the same for ``ringpool.Pool`` only.
- an autouse leak guard: once a test is over and every ringpool pool alive in
  the process has been shut down, the native worker count must return to 0
  (native workers are invisible to ``threading.enumerate()``, so we ask
  ``ringpool._core``).
"""

from __future__ import annotations

import concurrent.futures
import faulthandler
import gc
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import ringpool
from ringpool import _core
from ringpool import pool as _pool_module

#: How long the leak guard waits for workers of shut-down pools to exit.
LEAK_GUARD_WAIT_S = 5.0

EXECUTORS = {
    "tpe": concurrent.futures.ThreadPoolExecutor,
    "ringpool": ringpool.Pool,
}


def pytest_configure(config: pytest.Config) -> None:
    # pytest's own faulthandler plugin normally enables it already; make sure
    # a hard crash in the native core always dumps every thread's stack.
    if not faulthandler.is_enabled():
        faulthandler.enable(file=sys.stderr, all_threads=True)


class _Factory:
    """Makes executors of one kind and shuts them all down at teardown."""

    def __init__(self, cls: Callable[..., concurrent.futures.Executor]) -> None:
        self.cls = cls
        self.made: list[concurrent.futures.Executor] = []

    @property
    def is_ringpool(self) -> bool:
        return self.cls is ringpool.Pool

    def __call__(self, *args: Any, **kwargs: Any) -> concurrent.futures.Executor:
        ex = self.cls(*args, **kwargs)
        self.made.append(ex)
        return ex

    def close_all(self) -> None:
        for ex in self.made:
            ex.shutdown(wait=True, cancel_futures=True)
        self.made.clear()


@pytest.fixture(params=list(EXECUTORS), ids=list(EXECUTORS))
def executor_factory(request: pytest.FixtureRequest):
    """A callable ``(*args, **kwargs) -> Executor`` for the parametrized kind.

    ``executor_factory.cls`` is the class, ``executor_factory.is_ringpool``
    tells which one is under test.
    """
    factory = _Factory(EXECUTORS[request.param])
    try:
        yield factory
    finally:
        factory.close_all()


@pytest.fixture
def pool_factory():
    """A callable ``(*args, **kwargs) -> ringpool.Pool``; pools are shut down
    (``wait=True, cancel_futures=True``) at teardown."""
    factory = _Factory(ringpool.Pool)
    try:
        yield factory
    finally:
        factory.close_all()


def _open_pools() -> list[ringpool.Pool]:
    """Pools alive in this process that have not been closed (or broken)."""
    out = []
    for p in list(_pool_module._pools):
        try:
            closed = p.stats().closed
        except Exception:  # pragma: no cover - a half-initialised pool
            continue
        if not closed:
            out.append(p)
    return out


@pytest.fixture(autouse=True)
def ringpool_leak_guard(request: pytest.FixtureRequest):
    """After each test: if every ringpool pool in the process is closed, the
    native live-worker count must drop to 0 within a few seconds.

    Tests that leave a pool open (on purpose, e.g. a module-scoped pool) are
    not checked: an open pool may legitimately keep idle workers. Pools that
    were dropped without shutdown() drain and stop in the background, so they
    count as closed once garbage-collected.

    A negative count is always a library bug; it is reported by the test that
    caused it, and later tests are not checked (they would all fail for the
    same reason).
    """
    poisoned = _core.live_workers() < 0
    yield
    if poisoned or not (_core.live_workers() or _engine_threads()):
        return
    if _core.live_workers() < 0:
        pytest.fail(
            f"leak guard: the live-worker count is negative ({_core.live_workers()}): "
            "a worker was uncounted twice",
            pytrace=False,
        )
    gc.collect()  # a dropped pool caught in a reference cycle
    if _open_pools():
        return
    deadline = time.monotonic() + LEAK_GUARD_WAIT_S
    if not _core.wait_for_workers(LEAK_GUARD_WAIT_S):
        pytest.fail(
            f"leak guard: {_core.live_workers()} ringpool worker thread(s) still alive "
            f"{LEAK_GUARD_WAIT_S} s after every pool was shut down",
            pytrace=False,
        )
    # Native threads not yet (or no longer) running Python, where the core
    # can count them.
    while _engine_threads():
        if time.monotonic() >= deadline:
            pytest.fail(
                f"leak guard: {_engine_threads()} native engine thread(s) still alive "
                f"{LEAK_GUARD_WAIT_S} s after every pool was shut down",
                pytrace=False,
            )
        time.sleep(0.002)


def _engine_threads() -> int:
    """Engine worker threads in the process (0 where the core cannot say)."""
    count = getattr(_core, "engine_threads", None)
    return count() if count is not None else 0


@pytest.fixture
def gate(pool_factory):
    """An Event that holds workers (tasks wait on it); opened at teardown,
    before the pools (which depend on pool_factory) are shut down."""
    ev = threading.Event()
    yield ev
    ev.set()
