"""Immutable snapshots of a pool's counters and gauges."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["PoolStats"]


@dataclass(frozen=True)
class PoolStats:
    """A snapshot of ``Pool.stats()``.

    Counters only grow. At any quiet moment (no submit or completion in
    flight) ``submitted == completed + failed + cancelled + queued + running``
    (``rejected`` counts refused submits, which were never accepted).
    """

    name: str
    uptime: float
    submitted: int
    completed: int
    failed: int
    cancelled: int
    rejected: int
    queued: int
    running: int
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

    @classmethod
    def from_native(cls, name: str, raw: dict[str, Any], uptime: float) -> "PoolStats":
        raw = dict(raw)
        raw["queue_capacity"] = raw["queue_capacity"] or None
        raw["busy_workers"] = raw["running"]
        return cls(name=name, uptime=uptime, **raw)

    @property
    def accounted(self) -> bool:
        """Whether the conservation law holds in this snapshot."""
        return self.submitted == (self.completed + self.failed + self.cancelled
                                  + self.queued + self.running)

    def as_dict(self) -> dict[str, Any]:
        """Plain, JSON-able data."""
        return asdict(self)
