"""Immutable snapshots of a pool's counters, gauges and latency histograms.

Recording happens in the C engine (per-worker shards, relaxed single-writer
counters, log-linear histograms with at most 1/16 relative bucket error);
everything here runs on read, off the hot path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["PoolStats", "LatencyHistogram"]


@dataclass(frozen=True)
class LatencyHistogram:
    """A latency distribution in seconds.

    ``buckets`` holds ``(lower, upper, count)`` for each non-empty bucket, in
    increasing order; a recorded duration ``d`` lies in ``lower <= d < upper``,
    and ``upper - lower <= lower / 16`` from 1 microsecond up. ``count``,
    ``sum`` and ``max`` are exact.
    """

    count: int
    sum: float
    max: float
    buckets: tuple[tuple[float, float, int], ...] = field(default=())

    @classmethod
    def from_native(cls, raw: dict[str, Any], lower_ns: Sequence[int], upper_ns: Sequence[int]) -> LatencyHistogram:
        buckets = tuple(
            (lower_ns[i] / 1e9, (upper_ns[i] if upper_ns[i] < 2**63 else lower_ns[i] * 2) / 1e9, c)
            for i, c in enumerate(raw["counts"])
            if c
        )
        return cls(count=raw["count"], sum=raw["sum_ns"] / 1e9, max=raw["max_ns"] / 1e9, buckets=buckets)

    @property
    def mean(self) -> float:
        """Mean duration in seconds (0.0 when empty)."""
        return self.sum / self.count if self.count else 0.0

    def percentile(self, p: float) -> float:
        """The duration (seconds) below which ``p`` percent of samples fall.

        Returns the upper bound of the bucket holding that rank, capped at the
        exact maximum, so the answer errs high by at most one bucket (1/16).
        """
        if not 0 <= p <= 100:
            raise ValueError(f"p must be between 0 and 100, got {p!r}")
        if not self.count:
            return 0.0
        total = sum(c for _, _, c in self.buckets)
        rank = max(1, math.ceil(p / 100 * total))
        seen = 0
        for _lower, upper, c in self.buckets:
            seen += c
            if seen >= rank:
                return min(upper, self.max)
        return self.max

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "sum": self.sum,
            "mean": self.mean,
            "max": self.max,
            "p50": self.percentile(50),
            "p90": self.percentile(90),
            "p99": self.percentile(99),
            "buckets": [list(b) for b in self.buckets],
        }


_EMPTY = LatencyHistogram(0, 0.0, 0.0, ())


@dataclass(frozen=True)
class PoolStats:
    """A snapshot of ``Pool.stats()``.

    Counters only grow. At any quiet moment (no submit or completion in
    flight) ``submitted == completed + failed + cancelled + expired + overran
    + queued + running``. ``expired``: deadline passed while queued (never
    ran); ``overran``: deadline passed while running (the future failed with
    ``TaskTimeout`` then, and the task stopped counting as running; while it
    still occupies a worker it is counted in ``overrunning``)
    (``rejected`` counts refused submits, which were never accepted).
    """

    name: str
    uptime: float
    # counters
    submitted: int
    started: int
    completed: int
    failed: int
    panics: int
    cancelled: int
    expired: int
    overran: int
    rejected: int
    # gauges
    queued: int
    running: int
    overrunning: int
    live_workers: int
    idle_workers: int
    busy_workers: int
    peak_workers: int
    min_workers: int
    max_workers: int
    queue_capacity: int | None
    blocked_submitters: int
    blocked_seconds_total: float
    blocked_seconds_max: float
    closed: bool
    # latency
    queue_wait: LatencyHistogram = _EMPTY
    run_time: LatencyHistogram = _EMPTY

    @classmethod
    def from_native(
        cls,
        name: str,
        raw: dict[str, Any],
        uptime: float,
        queue_wait: LatencyHistogram = _EMPTY,
        run_time: LatencyHistogram = _EMPTY,
    ) -> PoolStats:
        raw = dict(raw)
        raw["queue_capacity"] = raw["queue_capacity"] or None
        raw["busy_workers"] = raw["running"] + raw["overrunning"]
        return cls(name=name, uptime=uptime, queue_wait=queue_wait, run_time=run_time, **raw)

    @property
    def accounted(self) -> bool:
        """Whether the conservation law holds in this snapshot."""
        return self.submitted == (
            self.completed + self.failed + self.cancelled + self.expired + self.overran
            + self.queued + self.running
        )

    @property
    def completed_per_second(self) -> float:
        """Tasks that ended (completed or failed) per second of uptime."""
        return (self.completed + self.failed) / self.uptime if self.uptime > 0 else 0.0

    @property
    def submitted_per_second(self) -> float:
        return self.submitted / self.uptime if self.uptime > 0 else 0.0

    @property
    def failure_ratio(self) -> float:
        ended = self.completed + self.failed
        return self.failed / ended if ended else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain, JSON-able data (histograms included, rates derived)."""
        d = asdict(self)
        d["queue_wait"] = self.queue_wait.as_dict()
        d["run_time"] = self.run_time.as_dict()
        d["completed_per_second"] = self.completed_per_second
        d["submitted_per_second"] = self.submitted_per_second
        d["failure_ratio"] = self.failure_ratio
        return d
