"""``ringpool.Pool``: a ``concurrent.futures.Executor`` on the native engine.

The hot path (``submit``) lives in the compiled base class
``_core.NativePool``; this module holds what is not hot: argument
validation, ``map``, ``shutdown``, statistics, and the process-wide hooks
(interpreter exit, ``fork``).
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import logging
import math
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ringpool import _core
from ringpool import scaling as _scaling  # scaling policy layer
from ringpool._core import Future
from ringpool.stats import LatencyHistogram, PoolStats

__all__ = ["Pool", "Future"]

_ON_FULL = {
    "block": _core.ON_FULL_BLOCK,
    "raise": _core.ON_FULL_RAISE,
    "caller_runs": _core.ON_FULL_CALLER_RUNS,
}

# Every pool alive in this process, for the exit and fork hooks.
_pools: weakref.WeakSet[Pool] = weakref.WeakSet()
_pool_counter = itertools.count()

# map(): aim for chunks that run about this long, so per-chunk costs (one
# future, one queue slot, one wake-up) stay a small fraction of the work.
_MAP_TARGET_CHUNK_NS = 200_000
_MAP_MAX_CHUNK = 8192


def _default_max_workers() -> int:
    # The same default as ThreadPoolExecutor (Python 3.8+).
    return min(32, (os.cpu_count() or 1) + 4)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be {'greater than 0' if minimum == 1 else f'>= {minimum}'}")
    return value


def _check_seconds(name: str, value: Any, allow_none: bool = True) -> float | None:
    if value is None:
        if allow_none:
            return None
        raise TypeError(f"{name} must be a number of seconds, not None")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if value != value or value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return float(value)


class Pool(_core.NativePool, concurrent.futures.Executor):
    """A drop-in ``concurrent.futures.Executor`` whose dispatch is native.

    ``Pool(max_workers=None, *, thread_name_prefix="", initializer=None,
    initargs=())`` behaves like ``ThreadPoolExecutor``; the other keyword
    arguments add what production pools need:

    - ``workers``: another name for ``max_workers``;
    - ``min_workers``: workers started up front and kept when idle;
    - ``keep_alive``: idle seconds before a worker above ``min_workers`` exits;
    - ``queue_size``: ``None`` (unbounded, like ThreadPoolExecutor) or the exact
      number of accepted-but-not-started tasks the pool holds;
    - ``on_full``: when a bounded queue is full, ``"block"`` (wait, GIL
      released, up to ``submit_timeout`` seconds), ``"raise"``
      (``PoolOverloaded`` at once) or ``"caller_runs"`` (run in the caller);
    - ``propagate_context``: run each task in a copy of the submitter's
      ``contextvars`` (default ``True``);
    - ``name``: used in thread names, logs and errors;
    - ``stack_size``: worker stack in bytes; 0 (default) gives at least the
      main thread's stack limit, so deep recursion behaves as on the main
      thread;
    - ``log_unretrieved``: log (ERROR, logger ``ringpool``) a task's exception
      when its future is garbage-collected without anyone having called
      ``result()``/``exception()`` or added a done-callback (default ``True``);
    - ``metrics``: record queue-wait and run-time histograms (two clock reads
      per task; default ``True``);
    - ``before_task(info)`` / ``after_task(info, outcome)``: hooks run on the
      worker, with the GIL, around each task (Java's beforeExecute /
      afterExecute); a hook that raises is logged, never fatal;
    - ``failure_log_level``: level at which task failures are logged on the
      ``ringpool`` logger (default DEBUG: the future carries the error;
      ``None`` turns it off). Records carry ``pool``, ``worker``, ``task``
      and ``duration_s`` as ``extra`` fields;
    - ``task_timeout``: default deadline of every ``submit``/``schedule``
      task, in seconds from its submit (``None``: none). A task still queued
      at its deadline never runs; one still running is asked to stop
      (``current_task().cancelled``). Either way its future fails with
      ``TaskTimeout`` at the deadline (``map`` chunks have no deadline: use
      ``map(timeout=)``);
    - ``scaling``: a ``ringpool.scaling`` policy (``OnDemand`` -- the
      default --, ``QueueDepth``, ``Throughput`` or any object with a
      ``target(snapshot)`` method) that picks the worker count within
      ``min_workers..max_workers``; ``scaling_interval``: seconds between
      its decisions (default 0.25).
    """

    def __init__(
        self,
        max_workers: int | None = None,
        thread_name_prefix: str = "",
        initializer: Callable[..., object] | None = None,
        initargs: tuple = (),
        *,
        workers: int | None = None,
        min_workers: int = 0,
        queue_size: int | None = None,
        on_full: str = "block",
        submit_timeout: float | None = None,
        keep_alive: float | None = 60.0,
        propagate_context: bool = True,
        name: str | None = None,
        stack_size: int = 0,
        log_unretrieved: bool = True,
        metrics: bool = True,
        before_task: Callable[[Any], object] | None = None,
        after_task: Callable[[Any, Any], object] | None = None,
        failure_log_level: int | None = logging.DEBUG,
        scaling: _scaling.ScalingPolicy | None = None,
        scaling_interval: float | None = None,
        task_timeout: float | None = None,
    ) -> None:
        param = "max_workers"
        if workers is not None:
            if max_workers is not None:
                raise TypeError("give max_workers or workers, not both")
            max_workers, param = workers, "workers"
        if max_workers is None:
            max_workers = _default_max_workers()
        elif isinstance(max_workers, bool) or not isinstance(max_workers, int):
            raise TypeError(f"{param} must be an int, not {type(max_workers).__name__}")
        elif max_workers <= 0:
            raise ValueError(f"{param} must be greater than 0")
        _check_int("min_workers", min_workers, 0)
        if min_workers > max_workers:
            raise ValueError(f"min_workers ({min_workers}) must be <= max_workers ({max_workers})")
        if queue_size is not None:
            _check_int("queue_size", queue_size, 1)
        if on_full not in _ON_FULL:
            raise ValueError(f"on_full must be one of {sorted(_ON_FULL)}, got {on_full!r}")
        submit_timeout = _check_seconds("submit_timeout", submit_timeout)
        task_timeout = _check_seconds("task_timeout", task_timeout)
        keep_alive = _check_seconds("keep_alive", keep_alive)
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be callable")
        if not isinstance(thread_name_prefix, str):
            raise TypeError("thread_name_prefix must be a str")
        if name is not None and not isinstance(name, str):
            raise TypeError("name must be a str or None")
        _check_int("stack_size", stack_size, 0)
        for hook_name, hook in (("before_task", before_task), ("after_task", after_task)):
            if hook is not None and not callable(hook):
                raise TypeError(f"{hook_name} must be callable or None")
        if failure_log_level is not None:
            _check_int("failure_log_level", failure_log_level, 0)
        if stack_size and stack_size < 65536:
            raise ValueError("stack_size must be 0 (automatic) or at least 65536 bytes")
        initargs = tuple(initargs)
        # --- scaling: validate (begin) ---
        self._scaler = None
        if scaling is not None:
            _scaling.check_policy(scaling)
        scaling_interval = _scaling.check_interval(scaling_interval)
        # --- scaling: validate (end) ---

        number = next(_pool_counter)
        self._name = name or f"ringpool-{number}"
        self._max_workers = max_workers
        self._shutdown_lock = threading.Lock()
        self._started_at = time.monotonic()
        self._start(
            min_workers=min_workers,
            max_workers=max_workers,
            queue_size=queue_size or 0,
            on_full=_ON_FULL[on_full],
            submit_timeout=-1.0 if submit_timeout is None else submit_timeout,
            keep_alive=-1.0 if keep_alive is None else keep_alive,
            prefix=thread_name_prefix or self._name,
            name=self._name,
            initializer=initializer,
            initargs=initargs,
            propagate_context=bool(propagate_context),
            stack_size=stack_size,
            log_unretrieved=bool(log_unretrieved),
            metrics=bool(metrics),
            before_task=before_task,
            after_task=after_task,
            failure_level=failure_log_level or 0,
        )
        self._set_task_timeout(task_timeout)
        # --- scaling: start the timer (begin) ---
        if scaling is not None and not isinstance(scaling, _scaling.OnDemand):
            self._scaler = _scaling.Scaler(self, scaling, scaling_interval, min_workers, max_workers)
            self._scaler.start(self)
        # --- scaling: start the timer (end) ---
        _pools.add(self)
        _core.LOGGER.debug(
            "pool %s started (max_workers=%d, min_workers=%d, queue_size=%s)",
            self._name, max_workers, min_workers, queue_size, extra={"pool": self._name},
        )

    # -- introspection ---------------------------------------------------------
    @property
    def name(self) -> str:
        """The pool's name (thread names, logs, errors)."""
        return self._name

    @property
    def max_workers(self) -> int:
        return self._max_workers

    def __repr__(self) -> str:
        s = self._stats_native()
        state = "broken" if self._broken else ("closed" if s["closed"] else "running")
        return (
            f"<ringpool.Pool {self._name!r} {state} workers={s['live_workers']}/"
            f"{s['max_workers']} queued={s['queued']} running={s['running']}>"
        )

    def stats(self) -> PoolStats:
        """An immutable snapshot: counters, gauges and the queue-wait and
        run-time latency histograms (merged from per-worker shards now)."""
        raw = self._stats_native()
        qw, rt = self._latency_native()
        lo, hi = _core.HIST_BUCKET_LOWER_NS, _core.HIST_BUCKET_UPPER_NS
        return PoolStats.from_native(
            self._name, raw, time.monotonic() - self._started_at,
            LatencyHistogram.from_native(qw, lo, hi), LatencyHistogram.from_native(rt, lo, hi),
        )

    # -- submission ------------------------------------------------------------
    def schedule(
        self,
        fn: Callable[..., Any],
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        deadline: float | None = None,
        on_full: str | None = None,
        submit_timeout: float | None = None,
    ) -> Future:
        """Submit with per-call control of the deadline and overload policy.

        ``timeout``: seconds from now; ``deadline``: a ``time.monotonic()``
        value; with both, the earlier wins; with neither, the pool's
        ``task_timeout``. At the deadline the future fails with
        ``TaskTimeout``: a queued task never starts (counted ``expired``), a
        running one has its cancellation flag set and its eventual result is
        dropped (counted ``overran``).
        """
        if on_full is None:
            policy = self.on_full_policy
        elif on_full in _ON_FULL:
            policy = _ON_FULL[on_full]
        else:
            raise ValueError(f"on_full must be one of {sorted(_ON_FULL)}, got {on_full!r}")
        timeout_for_room = _check_seconds("submit_timeout", submit_timeout)
        if timeout_for_room is None:
            timeout_for_room = self._submit_timeout_default()  # the pool's (< 0: no limit)
        if kwargs is not None and not isinstance(kwargs, dict):
            raise TypeError("kwargs must be a dict or None")
        task_timeout = _check_seconds("timeout", timeout)
        if deadline is not None:
            if isinstance(deadline, bool) or not isinstance(deadline, (int, float)) or deadline != deadline:
                raise TypeError(f"deadline must be a time.monotonic() value, not {deadline!r}")
            deadline = float(deadline)
        if task_timeout is not None:
            at = time.monotonic() + task_timeout
            deadline = at if deadline is None else min(deadline, at)
        # None: the pool's task_timeout applies
        return self._schedule(fn, tuple(args), kwargs, policy, timeout_for_room, deadline)

    @property
    def on_full_policy(self) -> int:
        return self._on_full_code()

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
    ) -> Iterator[Any]:
        """Lazy, ordered ``map``: like ``Executor.map``, but it pulls from the
        iterables only as results are consumed (at most ``buffersize`` items
        in flight), so an infinite iterable works.

        Items are grouped into chunks evaluated by one task each, with no
        Future per item. ``chunksize=1`` (the default) means "automatic": the
        chunk size adapts to the measured cost of an item; a larger value
        fixes it.
        """
        if not callable(fn):
            raise TypeError("fn must be callable")
        _check_int("chunksize", chunksize, 1)
        if buffersize is not None:
            _check_int("buffersize", buffersize, 1)
        timeout = _check_seconds("timeout", timeout)
        if not iterables:
            raise TypeError("map() must have at least one iterable")
        end_time = None if timeout is None else timeout + time.monotonic()
        star = len(iterables) > 1
        source = zip(*iterables, strict=False) if star else iter(iterables[0])  # map stops at the shortest
        fixed = chunksize if chunksize > 1 else 0
        # In flight: at most buffersize items, and a few chunks per worker.
        max_chunks = 2 * self._max_workers + 2
        window = _MapWindow(self, fn, source, star, fixed, buffersize or (1 << 62), max_chunks)
        window.fill()  # start work now, as Executor.map does
        return window.results(end_time)

    # -- shutdown --------------------------------------------------------------
    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False, timeout: float | None = None) -> bool:
        """Stop accepting tasks; run (or with ``cancel_futures``, cancel) the
        queued ones; with ``wait``, wait for the workers to finish.

        Returns ``True`` when the workers have finished, ``False`` when
        ``timeout`` ran out first or when called from inside one of the pool's
        own tasks (which cannot wait for itself; the pool still closes and
        finishes in the background). Safe to call repeatedly and from several
        threads.
        """
        timeout = _check_seconds("timeout", timeout)
        with self._shutdown_lock:
            first = not self.shutdown_called
            self._shutdown_native(bool(cancel_futures))
        if first:
            _core.LOGGER.debug("pool %s shutting down", self._name, extra={"pool": self._name})
        # --- scaling: stop the timer (begin) ---
        scaler = getattr(self, "_scaler", None)
        if scaler is not None:
            scaler.stop()  # it also wakes from _wait_busy: the pool is closed
            if wait and not self._in_own_worker():
                t0 = time.monotonic()
                scaler.join(timeout)
                if timeout is not None:
                    timeout = max(0.0, timeout - (time.monotonic() - t0))
        # --- scaling: stop the timer (end) ---
        if not wait:
            return False
        if self._in_own_worker():
            return False
        joined = bool(self._join_native(timeout))
        if joined and first:
            _core.LOGGER.debug("pool %s stopped", self._name, extra={"pool": self._name})
        return joined

    @property
    def shutdown_called(self) -> bool:
        return self._shutdown_started()

    def resize(self, min_workers: int | None = None, max_workers: int | None = None) -> None:
        """Change the worker bounds at run time."""
        s = self._stats_native()
        # --- scaling: the user's bounds live in the scaler (the engine max is its target) (begin) ---
        scaler = getattr(self, "_scaler", None)
        old_lo, old_hi = scaler.bounds if scaler is not None else (s["min_workers"], s["max_workers"])
        # --- scaling (end) ---
        lo = old_lo if min_workers is None else _check_int("min_workers", min_workers, 0)
        hi = old_hi if max_workers is None else _check_int("max_workers", max_workers, 1)
        if lo > hi:
            raise ValueError(f"min_workers ({lo}) must be <= max_workers ({hi})")
        # --- scaling: keep the policy's target within the new bounds (begin) ---
        if scaler is not None:
            scaler.set_bounds(self, lo, hi)
        else:
            self._resize_native(lo, hi)
        # --- scaling (end) ---
        if (lo, hi) != (old_lo, old_hi):
            _core.LOGGER.debug(
                "pool %s resized: workers %d..%d -> %d..%d (live %d)", self._name,
                old_lo, old_hi, lo, hi, s["live_workers"],
                extra={"pool": self._name, "reason": "resize", "snapshot": s},
            )
        self._max_workers = hi


class _MapWindow:
    """The in-flight chunks of one ``map`` call, in submission order."""

    __slots__ = ("pool", "fn", "source", "star", "fixed", "budget", "max_chunks", "inflight", "current_n",
                 "inflight_items", "item_ns", "next_size", "exhausted")

    def __init__(self, pool: Pool, fn, source, star: bool, fixed: int, budget: int, max_chunks: int) -> None:
        self.pool = pool
        self.fn = fn
        self.source = source
        self.star = star
        self.fixed = fixed
        self.budget = budget
        self.max_chunks = max_chunks
        self.current_n = 0  # items of the chunk being yielded (still pulled ahead)
        self.inflight: collections.deque = collections.deque()
        self.inflight_items = 0
        self.item_ns = 0.0  # running estimate of one item's cost
        self.next_size = 1
        self.exhausted = False

    def chunk_size(self) -> int:
        if self.fixed:
            return self.fixed
        if self.item_ns <= 0:
            return self.next_size
        return max(1, min(_MAP_MAX_CHUNK, int(_MAP_TARGET_CHUNK_NS / self.item_ns)))

    def fill(self) -> None:
        pool = self.pool
        while (not self.exhausted and self.inflight_items < self.budget
               and len(self.inflight) < self.max_chunks):
            size = min(self.chunk_size(), self.budget - self.inflight_items) or 1
            items = list(itertools.islice(self.source, size))
            if not items:
                self.exhausted = True
                break
            if len(items) < size:
                self.exhausted = True
            fut = pool._schedule(_core._map_chunk, (self.fn, items, self.star), None,
                                 _core.ON_FULL_BLOCK, -1.0, math.inf)
            self.inflight.append((fut, len(items)))
            self.inflight_items += len(items)
            if not self.item_ns and not self.fixed:
                # No measurement yet: grow slowly so slow items still spread
                # over the workers.
                self.next_size = min(self.next_size * 2, 16)

    def results(self, end_time: float | None) -> Iterator[Any]:
        """The ordered results: a compiled iterator walks each chunk's list
        (no generator frame per item) and asks next_chunk() for more."""
        return _core._MapIterator(self, end_time)

    def next_chunk(self, end_time: float | None) -> tuple[list, BaseException | None]:
        """Wait for the oldest chunk; returns (results, exception or None).
        Raises StopIteration when every chunk has been consumed."""
        # The previous chunk has been yielded in full: its items no longer
        # count against buffersize, so refill before waiting (pipelining).
        self.inflight_items -= self.current_n
        self.current_n = 0
        self.fill()
        if not self.inflight:
            raise StopIteration
        fut, n = self.inflight[0]
        if end_time is None:
            out, exc, elapsed = fut.result()
        else:
            out, exc, elapsed = fut.result(end_time - time.monotonic())
        self.inflight.popleft()
        self.current_n = n
        if out:
            per_item = elapsed / len(out)
            self.item_ns = per_item if not self.item_ns else 0.5 * self.item_ns + 0.5 * per_item
        if exc is not None:
            self.exhausted = True  # the map ends at this exception: pull no more
        return out, exc

    def cancel_all(self) -> None:
        """The consumer stopped early (error, close(), garbage): cancel what
        has not started."""
        for fut, _ in self.inflight:
            fut.cancel()
        self.inflight.clear()


# -- process-wide hooks --------------------------------------------------------

def _python_exit() -> None:
    """Run queued work and stop every pool before the interpreter finalizes.

    Registered with threading._register_atexit, the hook ThreadPoolExecutor
    uses: it runs before atexit callbacks and before finalization, while
    Python threads may still take the GIL.
    """
    pools = list(_pools)
    for pool in pools:
        pool._shutdown_native(False)
    _core._set_exiting(True)
    for pool in pools:
        pool._join_native(None)
    # Pools dropped without shutdown() drain in the background: wait for
    # every engine thread, including those started but not yet running
    # Python (they would otherwise meet a finalizing interpreter). Ctrl-C
    # cannot cut this short: a worker must never outlive the interpreter.
    warned = False
    while True:
        try:
            _core.wait_for_engine_threads()
            return
        except KeyboardInterrupt:
            if not warned:
                warned = True
                sys.stderr.write("ringpool: interrupted during exit; finishing queued tasks first\n")


def _after_fork_child() -> None:
    _core._after_fork_child()
    for pool in list(_pools):
        pool._after_fork_in_child()
        # A parent thread may have held it at fork(): the child has no such thread.
        pool._shutdown_lock = threading.Lock()


def _imported_during_exit() -> bool:
    """Whether ringpool is being imported inside an atexit handler, after the
    interpreter's threading shutdown (when ringpool's exit hook can no longer
    run). Threading's own flag says so when threading was imported before;
    otherwise its shutdown was skipped unseen, and the sign is the bottom of
    the Python stack: during the program it is module code (a script, -c, the
    REPL) or runpy (-m); in an atexit handler it is a plain function called
    from C. Import machinery and ringpool's own frames are skipped. (An
    embedding application that calls a Python function which first imports
    ringpool, with threading never imported and atexit callbacks registered,
    would be taken for an exit: submits then run in the caller.)"""
    if getattr(threading, "_SHUTTING_DOWN", False):
        return True
    import ringpool as _pkg

    if getattr(_pkg, "_THREADING_PREIMPORTED", True):
        return False
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        import atexit

        if atexit._ncallbacks() == 0:  # type: ignore[attr-defined]
            return False
    except AttributeError:  # pragma: no cover - other implementations
        return False
    here = os.path.dirname(os.path.abspath(__file__))
    bottom = None
    frame = sys._getframe()
    while frame is not None:
        filename = frame.f_code.co_filename
        if not (filename.startswith("<frozen") or os.path.dirname(os.path.abspath(filename)) == here):
            bottom = frame
        frame = frame.f_back
    if bottom is None:
        return False  # imported from C with no Python caller: not an atexit handler
    if bottom.f_code.co_name == "<module>":
        return False
    if os.path.basename(bottom.f_code.co_filename) == "runpy.py":
        return False  # python -m
    return True


if _imported_during_exit():
    # No exit hook will run any more: pools run submitted tasks in the
    # caller and join when dropped (see _core._submit and __dealloc__).
    _core._set_exiting(True)
else:
    try:
        threading._register_atexit(_python_exit)  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):
        _core._set_exiting(True)

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_child)
