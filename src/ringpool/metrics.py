"""Export ``Pool.stats()`` to Prometheus (``pip install ringpool[prometheus]``).

    >>> from prometheus_client import REGISTRY
    >>> from ringpool.metrics import PrometheusCollector
    >>> REGISTRY.register(PrometheusCollector(pool))           # one pool
    >>> REGISTRY.register(PrometheusCollector([pool_a, pool_b]))  # several

``prometheus_client`` is optional: importing ``ringpool`` never imports it,
and importing this module does not either; it is imported (and a clear
``ImportError`` raised when it is missing) when a :class:`PrometheusCollector`
is created.

Every sample carries a ``pool`` label (the pool's ``name``). What is exported,
with the default ``prefix="ringpool"``:

Counters (exposed with the ``_total`` suffix)
    ``ringpool_tasks_submitted``, ``_tasks_started``, ``_tasks_completed``,
    ``_tasks_failed``, ``_task_panics``, ``_tasks_cancelled``,
    ``_tasks_rejected``, ``_tasks_expired``, ``_tasks_overran``,
    ``_submit_blocked_seconds`` (time submitters spent blocked on a full queue).

Gauges
    ``ringpool_queue_depth``, ``_queue_capacity`` (bounded queues only),
    ``_tasks_running``, ``_workers_live``, ``_workers_idle``,
    ``_workers_busy``, ``_workers_peak``, ``_workers_min``, ``_workers_max``,
    ``_blocked_submitters``, ``_uptime_seconds``.

Histograms (Prometheus' native form: cumulative ``le`` buckets in seconds,
``+Inf``, ``_sum`` in seconds, ``_count``)
    ``ringpool_queue_wait_seconds`` (submit to start) and
    ``ringpool_run_time_seconds`` (start to end), both empty when the pool
    was created with ``metrics=False``.

Bucket rounding
    The engine records into ~465 fine log-linear buckets (at most 1/16 wide);
    to keep the exposition small they are collapsed onto a fixed set of
    boundaries (:data:`DEFAULT_BUCKETS`, or ``buckets=``). A fine bucket covers
    ``[lower, upper)``; it counts toward ``le=b`` only when its whole range
    lies at or below ``b`` (``upper <= b``). A fine bucket that straddles
    ``b`` (``lower <= b < upper``) is counted from the next boundary up. The
    rounding is therefore conservative: each ``le=b`` count never includes a
    sample longer than ``b``, and misses at most the samples within one fine
    bucket (1/16 of ``b``) below ``b``. ``+Inf``, ``_count`` and ``_sum`` are
    exact (``_count`` is the sum of the buckets read in the same snapshot).
"""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ringpool import _core
from ringpool.stats import LatencyHistogram, PoolStats

if TYPE_CHECKING:  # pragma: no cover
    from ringpool.pool import Pool

__all__ = ["PrometheusCollector", "DEFAULT_BUCKETS", "collapse_histogram"]

#: Prometheus bucket boundaries (seconds) the fine engine buckets collapse onto.
DEFAULT_BUCKETS: tuple[float, ...] = (
    1e-6, 1e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 100.0,
)

_INSTALL_HINT = (
    "ringpool.metrics.PrometheusCollector needs the prometheus_client package: "
    "pip install ringpool[prometheus]  (or: pip install prometheus-client)"
)

_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")

# The engine's overflow bucket ([2^38 ns, inf)) has no finite upper bound;
# LatencyHistogram reports it as [lower, 2 * lower). Samples there count
# toward +Inf only.
_OVERFLOW_LOWER_NS: int = _core.HIST_BUCKET_LOWER_NS[-1]


def _prometheus() -> Any:
    """The prometheus_client pieces we use, imported on first need."""
    try:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
        from prometheus_client.utils import floatToGoString
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, floatToGoString


def _check_buckets(buckets: Iterable[float]) -> tuple[float, ...]:
    out = tuple(float(b) for b in buckets)
    if not out:
        raise ValueError("buckets must not be empty")
    for b in out:
        if not (b > 0) or math.isinf(b):
            raise ValueError(f"bucket boundaries must be finite and > 0, got {b!r}")
    if any(b >= c for b, c in zip(out, out[1:], strict=False)):
        raise ValueError("bucket boundaries must be strictly increasing")
    return out


def collapse_histogram(hist: LatencyHistogram, bounds: Sequence[float] = DEFAULT_BUCKETS) -> tuple[list[int], int]:
    """Collapse ``hist``'s fine buckets onto ``bounds`` (seconds, increasing).

    Returns ``(cumulative, total)``: ``cumulative[i]`` counts the samples of
    every fine bucket whose upper bound is ``<= bounds[i]`` (see the module
    docstring on rounding), ``total`` counts every sample (the ``+Inf``
    bucket). Comparisons are made in whole nanoseconds, so bucket edges that
    coincide with a boundary are not lost to float rounding.
    """
    bounds_ns = [round(b * 1e9) for b in bounds]
    per_bound = [0] * len(bounds_ns)
    total = 0
    for lower, upper, count in hist.buckets:
        total += count
        if round(lower * 1e9) >= _OVERFLOW_LOWER_NS:
            continue  # unbounded above: +Inf only
        upper_ns = round(upper * 1e9)
        # the first boundary b with upper_ns <= b
        for i, b in enumerate(bounds_ns):
            if upper_ns <= b:
                per_bound[i] += count
                break
    cumulative = []
    running = 0
    for c in per_bound:
        running += c
        cumulative.append(running)
    return cumulative, total


class PrometheusCollector:
    """A ``prometheus_client`` custom collector for one or more pools.

    ``pools`` is a :class:`ringpool.Pool` or an iterable of them; more can be
    added with :meth:`add`. Pools are held by weak reference: a pool that is
    garbage-collected drops out of the exposition (a pool that is merely shut
    down keeps exporting its final values).

    Each metric family is emitted once per scrape with one sample per pool,
    so put all the pools of a registry in one collector (or give each
    collector its own ``prefix``): two collectors with the same prefix in the
    same registry would export the same metric names, which
    ``prometheus_client`` refuses (``Duplicated timeseries``).
    """

    def __init__(
        self,
        pools: Pool | Iterable[Pool],
        prefix: str = "ringpool",
        *,
        buckets: Iterable[float] = DEFAULT_BUCKETS,
    ) -> None:
        _prometheus()  # fail here, clearly, when prometheus_client is missing
        if not isinstance(prefix, str) or not _NAME_RE.match(prefix):
            raise ValueError(f"prefix must be a valid Prometheus metric name, got {prefix!r}")
        self.prefix = prefix
        self.buckets = _check_buckets(buckets)
        self._pools: list[weakref.ReferenceType] = []
        if hasattr(pools, "stats"):
            pools = [pools]  # type: ignore[list-item]
        for pool in pools:  # type: ignore[union-attr]
            self.add(pool)

    # -- the pools -------------------------------------------------------------
    @property
    def pools(self) -> list[Pool]:
        """The pools still alive, in the order they were added."""
        alive = [p for p in (r() for r in self._pools) if p is not None]
        if len(alive) != len(self._pools):
            self._pools = [weakref.ref(p) for p in alive]
        return alive

    def add(self, pool: Pool) -> None:
        """Export ``pool`` too (its name must differ from the others')."""
        if not callable(getattr(pool, "stats", None)):
            raise TypeError(f"expected a ringpool.Pool, got {type(pool).__name__}")
        for other in self.pools:
            if other is pool:
                return
            if other.name == pool.name:
                raise ValueError(f"a pool named {pool.name!r} is already exported by this collector")
        self._pools.append(weakref.ref(pool))

    def remove(self, pool: Pool) -> None:
        """Stop exporting ``pool`` (no error if it was not exported)."""
        self._pools = [r for r in self._pools if r() is not None and r() is not pool]

    # -- prometheus_client's collector protocol --------------------------------
    def describe(self) -> list[Any]:
        """The metric families without samples (lets a registry detect
        duplicate names at register time without reading the pools)."""
        return list(self._families([]))

    def collect(self) -> Iterator[Any]:
        """One snapshot per pool, rendered as metric families."""
        snapshots = []
        for pool in self.pools:
            try:
                snapshots.append(pool.stats())
            except Exception:  # pragma: no cover - a pool torn down mid-scrape
                continue
        yield from self._families(snapshots)

    # -- rendering ---------------------------------------------------------------
    def _families(self, snapshots: list[PoolStats]) -> Iterator[Any]:
        Counter, Gauge, Histogram, go = _prometheus()
        p = self.prefix
        labels = ["pool"]

        counters = (
            ("tasks_submitted", "Tasks accepted by the pool.", lambda s: s.submitted),
            ("tasks_started", "Tasks a worker started running.", lambda s: s.started),
            ("tasks_completed", "Tasks that returned normally.", lambda s: s.completed),
            ("tasks_failed", "Tasks that raised.", lambda s: s.failed),
            ("task_panics", "Tasks whose callable raised an exception on a worker.", lambda s: s.panics),
            ("tasks_cancelled", "Accepted tasks cancelled before they started.", lambda s: s.cancelled),
            ("tasks_rejected", "Submits refused (queue full or timed out).", lambda s: s.rejected),
            ("tasks_expired", "Tasks whose deadline passed before they started.", lambda s: s.expired),
            ("tasks_overran", "Tasks whose deadline passed while they ran.", lambda s: s.overran),
            ("submit_blocked_seconds", "Seconds submitters spent blocked on a full queue.",
             lambda s: s.blocked_seconds_total),
        )
        for suffix, doc, get in counters:
            fam = Counter(f"{p}_{suffix}", doc, labels=labels)
            for s in snapshots:
                fam.add_metric([s.name], get(s))
            yield fam

        gauges = (
            ("queue_depth", "Accepted tasks waiting for a worker.", lambda s: s.queued),
            ("queue_capacity", "Capacity of the pool's bounded queue (absent when unbounded).",
             lambda s: s.queue_capacity),
            ("tasks_running", "Tasks running now.", lambda s: s.running),
            ("workers_live", "Worker threads alive.", lambda s: s.live_workers),
            ("workers_idle", "Worker threads waiting for work.", lambda s: s.idle_workers),
            ("workers_busy", "Worker threads running a task.", lambda s: s.busy_workers),
            ("workers_peak", "Most worker threads alive at once.", lambda s: s.peak_workers),
            ("workers_min", "Configured minimum of worker threads.", lambda s: s.min_workers),
            ("workers_max", "Configured maximum of worker threads.", lambda s: s.max_workers),
            ("blocked_submitters", "Threads blocked in submit on a full queue now.",
             lambda s: s.blocked_submitters),
            ("uptime_seconds", "Seconds since the pool was created.", lambda s: s.uptime),
        )
        for suffix, doc, get in gauges:
            fam = Gauge(f"{p}_{suffix}", doc, labels=labels)
            for s in snapshots:
                value = get(s)
                if value is not None:
                    fam.add_metric([s.name], value)
            yield fam

        histograms = (
            ("queue_wait_seconds", "Time from submit to start of a task.", lambda s: s.queue_wait),
            ("run_time_seconds", "Time a task ran on a worker.", lambda s: s.run_time),
        )
        les = [go(b) for b in self.buckets]
        for suffix, doc, get in histograms:
            fam = Histogram(f"{p}_{suffix}", doc, labels=labels)
            for s in snapshots:
                hist = get(s)
                cumulative, total = collapse_histogram(hist, self.buckets)
                fam.add_metric(
                    [s.name],
                    buckets=[*zip(les, cumulative, strict=True), ("+Inf", total)],
                    sum_value=hist.sum,
                )
            yield fam

    def __repr__(self) -> str:
        return f"<ringpool.metrics.PrometheusCollector prefix={self.prefix!r} pools={[p.name for p in self.pools]}>"
