"""Dynamic scaling policies: how many workers a pool should have.

The engine (C) owns the mechanism: workers between ``min_workers`` and
``max_workers``, a worker started at once by a submit that finds none idle
(up to the max), idle workers above the minimum ending after ``keep_alive``
seconds, and ``resize()`` at run time. A *policy* only chooses a number.

``Pool(scaling=policy)`` starts a small daemon thread (the *timer*; none for
the default :class:`OnDemand`) that every ``scaling_interval`` seconds turns
``pool.stats()`` into a :class:`ScalingSnapshot`, calls
``policy.target(snapshot)`` and, when it returns a new target ``T``, sets the
engine bounds to ``(min_workers, T)``:

- engine ``max_workers = T`` caps on-demand growth, and a lower ``T`` retires
  the surplus workers after their current task;
- a higher ``T`` starts workers through the engine's own resize, which tops
  the pool up to ``min(T, live + queued)`` when no worker is idle; later
  submits keep growing it on demand up to ``T``. The engine minimum is never
  raised temporarily: workers the policy no longer needs still expire after
  ``keep_alive`` (and the engine minimum stays the user's, so a crash of the
  policy cannot pin extra workers).

The user's bounds (``min_workers``/``max_workers``, changed by
``pool.resize()``) are the range a policy works in; ``pool.stats().max_workers``
shows the engine's current cap, i.e. the policy's target.

The timer is cheap and sleeps when there is nothing to decide: when the pool
is idle (nothing queued or running) and at its minimum, or idle and the policy
just left it as it is, it blocks in the engine (GIL released, no periodic
wake-ups) until a task arrives or the pool closes. A policy that raises is
logged (``logger.exception`` on ``ringpool``) and the pool keeps its size.

Every change of target is logged at DEBUG on the ``ringpool`` logger with
``extra={"pool": name, "reason": "scaling <Policy>: why", "snapshot": dict}``.

Policies are plain objects, pure functions of the snapshot (plus their own
small state), testable without threads. A stateful policy (``Throughput``)
must not be shared between pools.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    from ringpool.pool import Pool

__all__ = [
    "ScalingPolicy",
    "ScalingSnapshot",
    "OnDemand",
    "QueueDepth",
    "Throughput",
    "DEFAULT_INTERVAL",
]

LOGGER = logging.getLogger("ringpool")

#: Default seconds between two timer ticks. 0.25 s: four decisions a second
#: follow a burst that lasts seconds; a window that long holds enough
#: completions of tasks up to a few ms for a throughput sample to be stable
#: (its noise falls with the number of completions in it); a tick costs one
#: ``stats()`` merge (microseconds), so the timer is invisible in a profile.
#: (.NET's hill climbing samples every 10-200 ms with far cheaper samples.)
DEFAULT_INTERVAL = 0.25


@runtime_checkable
class ScalingPolicy(Protocol):
    """What ``Pool(scaling=...)`` accepts: an object with ``target``.

    ``target(snapshot)`` returns the wanted worker count (the pool clamps it
    into ``[max(min_workers, 1), max_workers]``) or ``None`` to leave the
    pool as it is.

    Optional: ``initial_target(min_workers, max_workers) -> int | None``,
    the target before the first tick (default: ``max_workers``, i.e. the
    engine's plain on-demand behaviour), and ``last_reason`` (a str, read
    after ``target`` returns) used in the log record of a change.
    """

    def target(self, snapshot: ScalingSnapshot) -> int | None: ...


@dataclass(frozen=True)
class ScalingSnapshot:
    """What a policy sees at one tick.

    ``interval`` is the measured length (seconds) of the window since the
    previous snapshot; ``arrivals``/``completions`` are what was submitted /
    ended (completed or failed) in that window, ``throughput`` is
    ``completions / interval``. ``min_workers``/``max_workers`` are the
    user's bounds, ``target`` the policy's current target (the engine's
    max). ``queue_wait_p50``/``_p90`` are seconds since the pool started
    (0.0 with ``metrics=False``).
    """

    time: float
    interval: float
    queued: int
    live: int
    idle: int
    busy: int
    min_workers: int
    max_workers: int
    target: int
    arrivals: int
    completions: int
    throughput: float
    queue_wait_p50: float = 0.0
    queue_wait_p90: float = 0.0

    @property
    def floor(self) -> int:
        """The lowest target the pool accepts: ``max(min_workers, 1)``."""
        return max(self.min_workers, 1)

    def clamp(self, n: int) -> int:
        """*n* clamped into ``[floor, max_workers]``."""
        return max(self.floor, min(self.max_workers, int(n)))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _clamp(n: int, lo: int, hi: int) -> int:
    return max(max(lo, 1), min(hi, n))


class OnDemand:
    """The default: the engine's own behaviour (grow on demand up to
    ``max_workers``, idle workers above ``min_workers`` expire after
    ``keep_alive``). No timer thread runs."""

    last_reason = ""

    def target(self, snapshot: ScalingSnapshot) -> int | None:
        return None

    def __repr__(self) -> str:
        return "OnDemand()"


class QueueDepth:
    """Grow by ``step`` when the backlog outnumbers the workers
    (``queued > live``); shrink by ``step`` toward ``min_workers`` when the
    queue is empty and fewer than half the workers are busy.

    It starts at the floor (``max(min_workers, 1)``), so growth is gradual:
    at most ``step`` workers per interval -- the point of choosing it over
    :class:`OnDemand` (which starts one worker per waiting task at once).
    """

    def __init__(self, step: int = 2) -> None:
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise ValueError(f"step must be an int >= 1, got {step!r}")
        self.step = step
        self.last_reason = ""

    def initial_target(self, min_workers: int, max_workers: int) -> int:
        return _clamp(min_workers, min_workers, max_workers)

    def target(self, s: ScalingSnapshot) -> int | None:
        cur = s.clamp(s.target)
        if s.queued > s.live:
            new = s.clamp(max(cur, s.live) + self.step)
            self.last_reason = f"queued {s.queued} > live {s.live}: grow by {self.step}"
        elif s.queued == 0 and 2 * s.busy < s.live:
            new = s.clamp(min(cur, s.live) - self.step)
            self.last_reason = f"queue empty, busy {s.busy} < live {s.live}/2: shrink by {self.step}"
        else:
            new = cur
        if new == s.target:
            return None
        if new == cur and cur != s.target:  # out of bounds: clamp only
            self.last_reason = f"clamp {s.target} into [{s.floor}, {s.max_workers}]"
        return new

    def __repr__(self) -> str:
        return f"QueueDepth(step={self.step})"


class Throughput:
    """Hill climbing on completions per second, as .NET's thread pool does.

    From a *base* count it measures throughput, then probes a neighbour
    (``base ± step``) and measures again:

    - clearly better (by more than ``margin``, relative): keep the move and
      go on in the same direction;
    - fewer workers and no worse than ``margin / 2``: keep it (as fast for
      less; the tighter bound keeps noise from walking it down a flat top);
    - otherwise (worse, or more workers without a clear gain): go back and
      reverse the direction. This backs off when more workers make it slower
      (GIL contention on fine-grained tasks) and never adds workers for
      noise.

    When both neighbours lost, the base is a local optimum: it stays there
    for ``reprobe`` measurements, then probes again, so it follows a change
    in the workload.

    A measurement spans at least ``window`` ticks and ``min_completions``
    completions (slow tasks stretch it), after ``settle`` ticks skipped
    following each move (workers starting or retiring). It only counts
    while the pool is saturated (tasks queued, or every target worker busy):
    otherwise throughput is the arrival rate, whatever the worker count, and
    the policy holds.

    The initial count is the CPU count (``initial`` overrides it), clamped
    into the bounds: that is the optimum for GIL-releasing CPU-bound work,
    one or two steps above the optimum of fine-grained work on a small
    machine, and a fair start for blocking I/O, which climbs from there.
    Starting at 1 would make coarse CPU-bound bursts run single-threaded for
    several measurements.
    """

    def __init__(
        self,
        step: int = 1,
        margin: float = 0.05,
        window: int = 2,
        settle: int = 1,
        reprobe: int = 8,
        min_completions: int = 32,
        initial: int | None = None,
    ) -> None:
        for name, v, lo in (("step", step, 1), ("window", window, 1), ("settle", settle, 0),
                            ("reprobe", reprobe, 0), ("min_completions", min_completions, 0)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
        if not 0 <= margin < 1:
            raise ValueError(f"margin must be in [0, 1), got {margin!r}")
        if initial is not None and (isinstance(initial, bool) or not isinstance(initial, int) or initial < 1):
            raise ValueError(f"initial must be an int >= 1 or None, got {initial!r}")
        self.step = step
        self.margin = float(margin)
        self.window = window
        self.settle = settle
        self.reprobe = reprobe
        self.min_completions = min_completions
        self.initial = initial
        self.last_reason = ""
        self.direction = 1
        self._measuring: int | None = None  # the count being measured
        self._skip = 0
        self._ticks = 0
        self._done = 0
        self._elapsed = 0.0
        self._base: tuple[int, float] | None = None  # (count, throughput)
        self._fails = 0
        self._hold = 0

    def initial_target(self, min_workers: int, max_workers: int) -> int:
        n = self.initial if self.initial is not None else (os.cpu_count() or 1)
        return _clamp(n, min_workers, max_workers)

    # -- measurement -------------------------------------------------------------
    def _restart(self, count: int, skip: int) -> None:
        self._measuring = count
        self._skip = skip
        self._ticks = 0
        self._done = 0
        self._elapsed = 0.0

    def _move(self, count: int, why: str) -> int:
        self.last_reason = why
        self._restart(count, self.settle)
        return count

    def target(self, s: ScalingSnapshot) -> int | None:
        cur = s.clamp(s.target)
        if cur != s.target:  # the bounds moved under it
            self._base = None
            return self._move(cur, f"clamp {s.target} into [{s.floor}, {s.max_workers}]")
        if cur != self._measuring:
            # First tick, or someone else changed the target: start afresh.
            self._base = None
            self._fails = 0
            self._restart(cur, self.settle if self._measuring is not None else 0)
        if not (s.queued > 0 or s.busy >= cur):
            # Not saturated: throughput is the arrival rate. Hold and measure
            # again from scratch once the pressure is back.
            self._restart(cur, 0)
            return None
        if self._skip > 0:
            self._skip -= 1
            return None
        self._ticks += 1
        self._done += s.completions
        self._elapsed += s.interval
        if self._ticks < self.window or self._done < self.min_completions or self._elapsed <= 0:
            return None
        tp = self._done / self._elapsed
        self._restart(cur, 0)
        return self._decide(s, cur, tp)

    # -- hill climbing ----------------------------------------------------------
    def _decide(self, s: ScalingSnapshot, cur: int, tp: float) -> int | None:
        if self._base is None or self._base[0] == cur:
            # Measured the base.
            self._base = (cur, tp)
            if self._hold > 0:
                self._hold -= 1
                return None
            nxt = s.clamp(cur + self.direction * self.step)
            if nxt == cur:
                self.direction = -self.direction
                nxt = s.clamp(cur + self.direction * self.step)
                if nxt == cur:
                    return None  # min == max: nothing to explore
            return self._move(nxt, f"probe {cur} -> {nxt} (base {tp:.1f}/s)")
        base, base_tp = self._base
        up = cur > base
        if tp > base_tp * (1 + self.margin) or (not up and tp >= base_tp * (1 - self.margin / 2)):
            # Keep the move; carry on in the same direction from here.
            self._fails = 0
            self._base = (cur, tp)
            self.direction = 1 if up else -1
            nxt = s.clamp(cur + self.direction * self.step)
            if nxt == cur:  # at a bound: stay, re-probe later
                self._hold = self.reprobe
                self.last_reason = f"keep {cur} ({tp:.1f}/s vs {base_tp:.1f}/s at {base})"
                return None
            return self._move(nxt, f"keep {cur} ({tp:.1f}/s vs {base_tp:.1f}/s at {base}), probe {nxt}")
        # Worse, or more workers for no clear gain: back to the base, reverse.
        self._fails += 1
        self.direction = -1 if up else 1
        if self._fails >= 2:
            self._fails = 0
            self._hold = self.reprobe
        self._base = None  # re-measure it: the workload may have moved
        return self._move(base, f"back to {base} ({tp:.1f}/s at {cur} vs {base_tp:.1f}/s)")

    def __repr__(self) -> str:
        return f"Throughput(step={self.step}, margin={self.margin})"


def check_policy(policy: Any) -> Any:
    """Validate ``Pool(scaling=...)``: TypeError unless policy-like."""
    if isinstance(policy, type):
        raise TypeError(f"scaling must be a policy instance, not the class {policy.__name__} "
                        f"(did you mean {policy.__name__}()?)")
    if not callable(getattr(policy, "target", None)):
        raise TypeError(f"scaling must be a ScalingPolicy (an object with a callable target), "
                        f"not {type(policy).__name__}")
    return policy


def check_interval(value: Any) -> float:
    if value is None:
        return DEFAULT_INTERVAL
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"scaling_interval must be a number of seconds, not {type(value).__name__}")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"scaling_interval must be > 0 seconds, got {value!r}")
    return float(value)


class Scaler:
    """The timer of one pool: owns the user's bounds and the current target.

    It holds only a weak reference to its pool between ticks. While it
    blocks idle in ``pool._wait_busy(None)`` the call holds a strong one,
    so a scaled pool dropped without ``shutdown()`` lives until interpreter
    exit (use ``with Pool(...)`` or call ``shutdown()``).
    """

    def __init__(self, pool: Pool, policy: Any, interval: float, min_workers: int, max_workers: int) -> None:
        self.policy = policy
        self.interval = interval
        self.lock = threading.Lock()
        self.min_workers = min_workers
        self.max_workers = max_workers
        self.name = pool.name
        init = getattr(policy, "initial_target", None)
        t = init(min_workers, max_workers) if callable(init) else None
        self.target = _clamp(max_workers if t is None else int(t), min_workers, max_workers)
        self._stop = threading.Event()
        self._pool = weakref.ref(pool)
        self.calls = 0  # policy calls (for tests and curiosity)
        self.thread = threading.Thread(target=self._run, name=f"{pool.name}-scaling", daemon=True)

    # -- bounds (under self.lock) -----------------------------------------------
    @property
    def bounds(self) -> tuple[int, int]:
        return self.min_workers, self.max_workers

    def start(self, pool: Pool) -> None:
        with self.lock:
            if self.target != self.max_workers:
                pool._resize_native(self.min_workers, self.target)
        self.thread.start()

    def set_bounds(self, pool: Pool, lo: int, hi: int) -> None:
        """A user resize: new bounds; the target is clamped into them."""
        with self.lock:
            self.min_workers, self.max_workers = lo, hi
            self.target = _clamp(self.target, lo, hi)
            pool._resize_native(lo, self.target)

    def _apply(self, pool: Pool, want: int, snap: ScalingSnapshot) -> None:
        with self.lock:
            lo, hi = self.min_workers, self.max_workers
            new = _clamp(int(want), lo, hi)
            old = self.target
            if new == old:
                return
            pool._resize_native(lo, new)
            self.target = new
        if LOGGER.isEnabledFor(logging.DEBUG):
            why = getattr(self.policy, "last_reason", "") or ""
            reason = f"scaling {type(self.policy).__name__}" + (f": {why}" if why else "")
            LOGGER.debug(
                "pool %s scaled: target %d -> %d (live %d, queued %d, busy %d, %.1f tasks/s) [%s]",
                self.name, old, new, snap.live, snap.queued, snap.busy, snap.throughput, reason,
                extra={"pool": self.name, "reason": reason, "snapshot": snap.as_dict()},
            )

    # -- the timer --------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        if self.thread is threading.current_thread() or not self.thread.is_alive():
            return not self.thread.is_alive() or self.thread is threading.current_thread()
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def _run(self) -> None:
        last: tuple[float, int, int] | None = None  # (time, submitted, ended)
        idle_no_change = False
        while not self._stop.is_set():
            pool = self._pool()
            if pool is None:
                return
            try:
                st = pool.stats()
            except Exception:  # pragma: no cover - forked child, torn-down pool
                return
            if st.closed:
                return
            with self.lock:
                lo, hi, target = self.min_workers, self.max_workers, self.target
            idle = st.queued == 0 and st.running == 0
            if idle and (st.live_workers <= lo or idle_no_change):
                # Nothing to decide until work arrives: sleep in the engine.
                pool._wait_busy(None)
                del pool
                last = None
                idle_no_change = False
                continue
            now = time.monotonic()
            ended = st.completed + st.failed
            if last is None:
                last = (now, st.submitted, ended)
                del pool
                self._stop.wait(self.interval)
                continue
            t0, sub0, end0 = last
            dt = max(now - t0, 1e-9)
            last = (now, st.submitted, ended)
            snap = ScalingSnapshot(
                time=now, interval=dt, queued=st.queued, live=st.live_workers,
                idle=st.idle_workers, busy=st.busy_workers, min_workers=lo, max_workers=hi,
                target=target, arrivals=st.submitted - sub0, completions=ended - end0,
                throughput=(ended - end0) / dt,
                queue_wait_p50=st.queue_wait.percentile(50),
                queue_wait_p90=st.queue_wait.percentile(90),
            )
            self.calls += 1
            want: int | None = None
            try:
                want = self.policy.target(snap)
            except Exception:
                LOGGER.exception("pool %s: scaling policy %r failed; keeping the current size",
                                 self.name, self.policy, extra={"pool": self.name})
            changed = False
            if want is not None:
                try:
                    before = self.target
                    self._apply(pool, want, snap)
                    changed = self.target != before
                except Exception:
                    if pool.shutdown_called:
                        return
                    LOGGER.exception("pool %s: applying scaling target %r failed", self.name, want,
                                     extra={"pool": self.name})
            idle_no_change = idle and not changed
            del pool
            if not idle_no_change:
                self._stop.wait(self.interval)
