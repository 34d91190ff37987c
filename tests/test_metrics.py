"""Pool.stats(): counters, gauges and latency histograms agree with what the
tests did; and ringpool.metrics.PrometheusCollector exports them.

Timing assertions use generous margins: the machine may be shared, so a
20 ms sleep may overshoot; nothing here asserts an exact duration.
"""

from __future__ import annotations

import gc
import json
import math
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import ringpool
from ringpool import _core
from ringpool.stats import LatencyHistogram, PoolStats

pytestmark = pytest.mark.timeout(60)

SLEEP_S = 0.02
BUCKET_ERROR = 1 / 16  # relative width of a histogram bucket, from 1 us up
COUNTERS = ("submitted", "started", "completed", "failed", "panics", "cancelled", "rejected")


def _sleep_and_measure(seconds: float) -> float:
    t0 = time.perf_counter()
    time.sleep(seconds)
    return time.perf_counter() - t0


def _boom(i: int) -> None:
    raise ValueError(f"boom {i}")


def _expand(hist: LatencyHistogram) -> list[tuple[float, float]]:
    """One (lower, upper) per recorded sample, in increasing order."""
    out = []
    for lower, upper, c in hist.buckets:
        out.extend([(lower, upper)] * c)
    return out


def _explicit_sum(s: PoolStats) -> int:
    return s.completed + s.failed + s.cancelled + s.expired + s.queued + s.running


# -- the bucket layout ---------------------------------------------------------

@pytest.mark.parametrize(
    "ns",
    [0, 1, 63, 64, 999, 1000, 1023, 1024, 1025, 1088, 1500, 4095, 4096, 65_535, 1_000_000,
     20_000_000, 21_234_567, 999_999_999, 1_000_000_000, 2**37, 2**38 - 1],
)
def test_bucket_layout_bounds_contain_the_value(ns):
    i = _core._hist_bucket(ns)
    lower, upper = _core.HIST_BUCKET_LOWER_NS[i], _core.HIST_BUCKET_UPPER_NS[i]
    assert lower <= ns < upper
    if ns >= 1024:
        assert upper - lower <= lower / 16


def test_bucket_layout_is_contiguous_and_ends_with_overflow():
    lo, hi = _core.HIST_BUCKET_LOWER_NS, _core.HIST_BUCKET_UPPER_NS
    assert len(lo) == len(hi) > 400
    assert lo[0] == 0
    for i in range(len(lo) - 1):
        assert lo[i] < hi[i] == lo[i + 1]
    assert hi[-1] == 2**64 - 1  # the overflow bucket
    assert _core._hist_bucket(2**40) == len(lo) - 1


def test_latency_histogram_percentile_on_synthetic_data():
    h = LatencyHistogram(count=4, sum=0.010, max=0.0045,
                         buckets=((0.001, 0.0011, 2), (0.004, 0.00425, 1), (0.0044, 0.0046, 1)))
    assert h.mean == pytest.approx(0.0025)
    assert h.percentile(0) == 0.0011
    assert h.percentile(50) == 0.0011
    assert h.percentile(75) == 0.00425
    assert h.percentile(100) == 0.0045  # capped at the exact max
    with pytest.raises(ValueError):
        h.percentile(101)
    with pytest.raises(ValueError):
        h.percentile(-1)
    empty = LatencyHistogram(0, 0.0, 0.0)
    assert empty.percentile(99) == 0.0 and empty.mean == 0.0


# -- counters and histograms agree with the work done -------------------------

def test_run_time_histogram_matches_sleeping_tasks(pool_factory):
    n = 12
    pool = pool_factory(4, name="sleepers")
    futures = [pool.submit(_sleep_and_measure, SLEEP_S) for _ in range(n)]
    measured = sorted(f.result(timeout=30) for f in futures)
    assert pool.shutdown(wait=True, timeout=30)
    s = pool.stats()

    assert (s.submitted, s.started, s.completed, s.failed, s.panics, s.cancelled, s.rejected) == (n, n, n, 0, 0, 0, 0)
    rt = s.run_time
    assert rt.count == n == sum(c for _, _, c in rt.buckets)
    # The engine's clock brackets the call, so each recorded duration is at
    # least what the task measured inside itself: pairing the sorted samples,
    # the k-th recorded bucket's upper bound exceeds the k-th measurement,
    # and its lower bound is not far above it (scheduling slack allowed).
    samples = _expand(rt)
    assert len(samples) == n
    for (lower, upper), d in zip(samples, measured, strict=True):
        assert d >= SLEEP_S * 0.99
        assert upper > d - 1e-6
        assert lower <= d + 0.5
        assert upper - lower <= lower * BUCKET_ERROR
    assert rt.max >= measured[-1] - 1e-6
    assert rt.sum >= sum(measured) - 1e-5
    assert SLEEP_S <= rt.mean <= rt.max
    p50 = rt.percentile(50)
    assert SLEEP_S <= p50 <= SLEEP_S * 1.5 + SLEEP_S * 1.5 * BUCKET_ERROR
    assert p50 <= rt.percentile(90) <= rt.percentile(99) <= rt.max
    # queue wait: one sample per started task
    assert s.queue_wait.count == s.started == n
    assert all(lower >= 0 for lower, _, _ in s.queue_wait.buckets)


def test_failures_are_counted_as_failed_and_panics(pool_factory):
    n = 7
    pool = pool_factory(2, failure_log_level=None)
    futures = [pool.submit(_boom, i) for i in range(n)]
    ok = [pool.submit(int, "5") for _ in range(3)]
    for i, f in enumerate(futures):
        exc = f.exception(timeout=30)
        assert isinstance(exc, ValueError) and str(exc) == f"boom {i}"
    assert [f.result(timeout=30) for f in ok] == [5, 5, 5]
    assert pool.shutdown(wait=True, timeout=30)
    s = pool.stats()
    assert s.failed == n
    assert s.panics == n
    assert s.completed == 3
    assert s.submitted == s.started == n + 3
    assert s.run_time.count == n + 3  # failed tasks are timed too
    assert s.failure_ratio == pytest.approx(n / (n + 3))
    assert s.accounted


def test_cancelled_tasks_are_counted(pool_factory):
    pool = pool_factory(1, name="cancels")
    gate = threading.Event()
    started = threading.Event()

    def blocker():
        started.set()
        assert gate.wait(30)

    first = pool.submit(blocker)
    assert started.wait(10)
    queued = [pool.submit(int, "1") for _ in range(6)]
    cancelled = [f for f in queued[:4] if f.cancel()]
    assert len(cancelled) == 4
    s = pool.stats()
    # The engine counts a cancellation when a worker pops (and drops) the
    # cancelled task, so while the worker is busy the 4 still sit in the
    # queue; either way the books balance.
    assert (s.cancelled, s.queued) in ((4, 2), (0, 6))
    assert s.running == 1
    assert s.accounted
    gate.set()
    assert first.result(timeout=30) is None
    assert [f.result(timeout=30) for f in queued[4:]] == [1, 1]
    assert pool.shutdown(wait=True, timeout=30)
    s = pool.stats()
    assert s.cancelled == 4
    assert s.submitted == 7
    assert s.completed == 3
    assert s.started == 3
    assert s.queue_wait.count == s.started
    assert s.accounted


def test_shutdown_cancel_futures_counts_cancelled(pool_factory):
    pool = pool_factory(1)
    gate = threading.Event()
    started = threading.Event()

    def blocker():
        started.set()
        assert gate.wait(30)

    pool.submit(blocker)
    assert started.wait(10)
    rest = [pool.submit(int, "2") for _ in range(10)]
    pool.shutdown(wait=False, cancel_futures=True)
    gate.set()
    assert pool.shutdown(wait=True, timeout=30)
    assert all(f.cancelled() for f in rest)
    s = pool.stats()
    assert s.cancelled == 10
    assert s.completed == 1
    assert s.started == 1 == s.queue_wait.count
    assert s.closed
    assert s.accounted


def test_accounting_invariant_after_shutdown_with_mixed_outcomes(pool_factory):
    pool = pool_factory(3, queue_size=64, failure_log_level=None)
    gate = threading.Event()
    blockers = [pool.submit(gate.wait, 30) for _ in range(3)]
    futures = []
    for i in range(40):
        futures.append(pool.submit(_boom, i) if i % 5 == 0 else pool.submit(pow, i, 2))
    n_cancelled = sum(1 for f in futures[20:30] if f.cancel())
    gate.set()
    concurrent_done = [f for f in blockers + futures if not f.cancelled()]
    for f in concurrent_done:
        f.exception(timeout=30)
    assert pool.shutdown(wait=True, timeout=30)
    s = pool.stats()
    assert s.submitted == 43
    assert s.cancelled == n_cancelled
    assert s.failed == sum(1 for f in concurrent_done if f.exception() is not None)
    assert s.completed == 43 - n_cancelled - s.failed
    assert s.queued == s.running == 0
    assert s.submitted == _explicit_sum(s)
    assert s.accounted
    assert s.queue_wait.count == s.started == s.completed + s.failed
    assert s.run_time.count == s.started


def test_snapshots_are_consistent_while_eight_threads_submit(pool_factory):
    capacity = 16
    per_thread = 250
    pool = pool_factory(3, queue_size=capacity, on_full="block")
    errors: list[BaseException] = []
    go = threading.Barrier(9, timeout=30)

    def submitter():
        try:
            go.wait()
            futures = [pool.submit(time.sleep, 0) for _ in range(per_thread)]
            for f in futures:
                f.result(timeout=60)
        except BaseException as exc:  # noqa: B036 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=submitter) for _ in range(8)]
    for t in threads:
        t.start()
    go.wait()
    snapshots = []
    deadline = time.monotonic() + 40
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        snapshots.append(pool.stats())
        time.sleep(0.0005)
    for t in threads:
        t.join(30)
    assert not errors, errors
    snapshots.append(pool.stats())
    assert len(snapshots) >= 2

    prev = None
    for s in snapshots:
        for field in ("queued", "running", "live_workers", "idle_workers", "busy_workers",
                      "peak_workers", "blocked_submitters", *COUNTERS):
            assert getattr(s, field) >= 0, (field, s)
        assert s.blocked_seconds_total >= 0 and s.blocked_seconds_max >= 0
        assert s.queue_capacity == capacity
        assert s.queued <= capacity, s
        assert s.running <= s.max_workers
        assert s.live_workers <= s.max_workers
        assert s.busy_workers <= s.max_workers and s.idle_workers <= s.max_workers
        assert s.peak_workers <= s.max_workers
        assert s.blocked_submitters <= 8
        assert s.uptime > 0
        if prev is not None:
            for field in COUNTERS:
                assert getattr(s, field) >= getattr(prev, field), (field, prev, s)
            assert s.queue_wait.count >= prev.queue_wait.count
            assert s.run_time.count >= prev.run_time.count
            assert s.blocked_seconds_total >= prev.blocked_seconds_total
            assert s.peak_workers >= prev.peak_workers
            assert s.uptime >= prev.uptime
        prev = s

    assert pool.shutdown(wait=True, timeout=30)
    final = pool.stats()
    assert final.submitted == final.completed == 8 * per_thread
    assert final.accounted
    assert final.queue_wait.count == final.run_time.count == 8 * per_thread


def test_as_dict_is_json_serializable(pool_factory):
    pool = pool_factory(2, name="json", failure_log_level=None)
    pool.submit(time.sleep, 0.001).result(timeout=30)
    pool.submit(_boom, 0).exception(timeout=30)
    pool.shutdown(wait=True, timeout=30)
    d = pool.stats().as_dict()
    back = json.loads(json.dumps(d))
    assert back["name"] == "json"
    assert back["queue_capacity"] is None
    assert back["completed"] == 1 and back["failed"] == 1 and back["expired"] == 0
    for key in ("completed_per_second", "submitted_per_second", "failure_ratio", "uptime"):
        assert isinstance(back[key], float) and math.isfinite(back[key])
    for hist in ("queue_wait", "run_time"):
        h = back[hist]
        assert h["count"] == 2
        assert sum(b[2] for b in h["buckets"]) == 2
        assert h["p50"] <= h["p90"] <= h["p99"] <= h["max"]
    assert back["failure_ratio"] == pytest.approx(0.5)


def test_bounded_pool_reports_capacity_in_as_dict(pool_factory):
    pool = pool_factory(1, queue_size=5)
    d = pool.stats().as_dict()
    assert d["queue_capacity"] == 5
    json.dumps(d)


def test_metrics_false_leaves_histograms_empty_but_counts(pool_factory):
    pool = pool_factory(2, metrics=False, failure_log_level=None)
    futures = [pool.submit(time.sleep, 0.001) for _ in range(10)] + [pool.submit(_boom, 1)]
    for f in futures:
        f.exception(timeout=30)
    assert pool.shutdown(wait=True, timeout=30)
    s = pool.stats()
    assert (s.submitted, s.started, s.completed, s.failed, s.panics) == (11, 11, 10, 1, 1)
    assert s.accounted
    for h in (s.queue_wait, s.run_time):
        assert h.count == 0 and h.buckets == () and h.sum == 0.0 and h.max == 0.0
        assert h.percentile(50) == 0.0


def test_expired_is_zero_and_rates_are_derived(pool_factory):
    pool = pool_factory(2)
    for f in [pool.submit(int, "3") for _ in range(5)]:
        f.result(timeout=30)
    s = pool.stats()
    assert s.expired == 0
    assert s.completed_per_second == pytest.approx(s.completed / s.uptime)
    assert s.submitted_per_second == pytest.approx(5 / s.uptime)
    assert s.failure_ratio == 0.0


# -- Prometheus export ---------------------------------------------------------

def _run_in_subprocess(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60)


def test_importing_ringpool_does_not_import_prometheus_client():
    r = _run_in_subprocess("""
        import sys, ringpool, ringpool.metrics
        pool = ringpool.Pool(1)
        pool.submit(int, "1").result()
        pool.stats()
        pool.shutdown()
        assert "prometheus_client" not in sys.modules, "imported"
        print("ok")
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_missing_prometheus_client_gives_a_clear_error_on_use():
    r = _run_in_subprocess("""
        import sys
        sys.modules["prometheus_client"] = None  # as if not installed
        import ringpool, ringpool.metrics        # importing the module is fine
        pool = ringpool.Pool(1)
        try:
            ringpool.metrics.PrometheusCollector(pool)
        except ImportError as exc:
            print("ERR:", exc)
        else:
            print("no error")
        pool.shutdown()
    """)
    assert r.returncode == 0, r.stderr
    assert "ERR:" in r.stdout
    assert "pip install ringpool[prometheus]" in r.stdout


@pytest.fixture
def prom():
    return pytest.importorskip("prometheus_client")


def _scrape(prom, registry) -> dict[str, object]:
    from prometheus_client.parser import text_string_to_metric_families

    text = prom.generate_latest(registry).decode()
    return {fam.name: fam for fam in text_string_to_metric_families(text)}


def _samples(fam, pool: str, suffix: str = "") -> list:
    return [s for s in fam.samples if s.labels.get("pool") == pool and s.name == fam.name + suffix]


def _value(families, name: str, pool: str, suffix: str = "") -> float:
    got = _samples(families[name], pool, suffix)
    assert len(got) == 1, (name, got)
    return got[0].value


def _expected_cumulative(hist: LatencyHistogram, le: float) -> int:
    """Independent oracle of the conservative collapse (float compare with
    a tolerance far below any bucket width)."""
    top_lower = _core.HIST_BUCKET_LOWER_NS[-1] / 1e9
    return sum(c for lower, upper, c in hist.buckets if lower < top_lower and upper <= le * (1 + 1e-12))


def test_collapse_histogram_rounds_conservatively():
    from ringpool.metrics import collapse_histogram

    top = _core.HIST_BUCKET_LOWER_NS[-1] / 1e9
    h = LatencyHistogram(
        count=10, sum=1.0, max=600.0,
        buckets=(
            (0.000960, 0.001024, 1),   # straddles 1e-3: counted from 5e-3
            (0.000896, 0.000960, 2),   # wholly below 1e-3
            (0.00992, 0.01, 3),        # ends exactly at 0.01: counted at 0.01
            (0.5, 0.53125, 1),
            (top, top * 2, 3),         # the overflow bucket: +Inf only
        ),
    )
    cumulative, total = collapse_histogram(h, (1e-3, 5e-3, 0.01, 1.0, 1000.0))
    assert cumulative == [2, 3, 6, 7, 7]
    assert total == 10


def test_prometheus_collector_exposes_counters_gauges_histograms(prom, pool_factory):
    from ringpool.metrics import DEFAULT_BUCKETS, PrometheusCollector

    n_sleep, n_fail = 6, 3
    pool = pool_factory(2, name="prom-a", queue_size=32, failure_log_level=None)
    futures = [pool.submit(time.sleep, SLEEP_S) for _ in range(n_sleep)]
    futures += [pool.submit(_boom, i) for i in range(n_fail)]
    for f in futures:
        f.exception(timeout=30)
    assert pool.shutdown(wait=True, timeout=30)
    s = pool.stats()

    registry = prom.CollectorRegistry()
    registry.register(PrometheusCollector(pool))
    fams = _scrape(prom, registry)

    # counters: the parser strips _total from the family name
    expected_counters = {
        "ringpool_tasks_submitted": n_sleep + n_fail,
        "ringpool_tasks_started": n_sleep + n_fail,
        "ringpool_tasks_completed": n_sleep,
        "ringpool_tasks_failed": n_fail,
        "ringpool_task_panics": n_fail,
        "ringpool_tasks_cancelled": 0,
        "ringpool_tasks_rejected": 0,
        "ringpool_tasks_expired": 0,
    }
    for name, want in expected_counters.items():
        assert fams[name].type == "counter", name
        assert _value(fams, name, "prom-a", "_total") == want, name
    assert _value(fams, "ringpool_submit_blocked_seconds", "prom-a", "_total") == pytest.approx(
        s.blocked_seconds_total)

    # gauges
    for name, want in {
        "ringpool_queue_depth": 0, "ringpool_queue_capacity": 32, "ringpool_tasks_running": 0,
        "ringpool_workers_live": s.live_workers, "ringpool_workers_idle": s.idle_workers,
        "ringpool_workers_busy": 0, "ringpool_workers_peak": s.peak_workers,
        "ringpool_workers_max": 2, "ringpool_workers_min": 0, "ringpool_blocked_submitters": 0,
    }.items():
        assert fams[name].type == "gauge", name
        assert _value(fams, name, "prom-a") == want, name
    assert 1 <= s.peak_workers <= 2
    assert _value(fams, "ringpool_uptime_seconds", "prom-a") >= s.uptime > 0

    # histograms, native form
    for name, hist in (("ringpool_run_time_seconds", s.run_time), ("ringpool_queue_wait_seconds", s.queue_wait)):
        fam = fams[name]
        assert fam.type == "histogram"
        buckets = _samples(fam, "prom-a", "_bucket")
        les = [b.labels["le"] for b in buckets]
        assert les[-1] == "+Inf"
        assert [float(le) for le in les[:-1]] == list(DEFAULT_BUCKETS)
        values = [b.value for b in buckets]
        assert values == sorted(values)  # cumulative
        assert values[-1] == _value(fams, name, "prom-a", "_count") == hist.count == n_sleep + n_fail
        assert _value(fams, name, "prom-a", "_sum") == pytest.approx(hist.sum, rel=1e-9, abs=1e-9)
        for b in buckets[:-1]:
            assert b.value == _expected_cumulative(hist, float(b.labels["le"])), b

    run = {float(b.labels["le"]): b.value for b in _samples(fams["ringpool_run_time_seconds"], "prom-a", "_bucket")}
    # the sleepers took >= 20 ms: none of them is at or below 10 ms; all are below 100 s
    assert run[0.01] <= n_fail
    assert run[100.0] == n_sleep + n_fail
    assert _value(fams, "ringpool_run_time_seconds", "prom-a", "_sum") >= n_sleep * SLEEP_S


def test_prometheus_unbounded_pool_has_no_capacity_sample(prom, pool_factory):
    from ringpool.metrics import PrometheusCollector

    pool = pool_factory(1, name="unbounded")
    registry = prom.CollectorRegistry()
    registry.register(PrometheusCollector(pool))
    fams = _scrape(prom, registry)
    assert _samples(fams["ringpool_queue_capacity"], "unbounded") == []
    assert _value(fams, "ringpool_queue_depth", "unbounded") == 0


def test_prometheus_several_pools_and_prefixes(prom, pool_factory):
    from ringpool.metrics import PrometheusCollector

    a = pool_factory(1, name="pa")
    b = pool_factory(2, name="pb", metrics=False)
    c = pool_factory(1, name="pc")
    for f in [a.submit(int, "1") for _ in range(3)] + [b.submit(int, "1") for _ in range(5)]:
        f.result(timeout=30)
    c.submit(int, "1").result(timeout=30)

    registry = prom.CollectorRegistry()
    collector = PrometheusCollector([a, b])
    registry.register(collector)
    collector.add(c)
    collector.add(c)  # idempotent
    registry.register(PrometheusCollector(a, prefix="other"))
    fams = _scrape(prom, registry)

    assert _value(fams, "ringpool_tasks_submitted", "pa", "_total") == 3
    assert _value(fams, "ringpool_tasks_submitted", "pb", "_total") == 5
    assert _value(fams, "ringpool_tasks_submitted", "pc", "_total") == 1
    assert _value(fams, "other_tasks_submitted", "pa", "_total") == 3
    assert _samples(fams["other_tasks_submitted"], "pb", "_total") == []
    # pb has metrics off: an empty, but well-formed, histogram
    assert _value(fams, "ringpool_run_time_seconds", "pb", "_count") == 0
    assert _value(fams, "ringpool_run_time_seconds", "pa", "_count") == 3

    # a second collector with the same prefix in the same registry is refused
    with pytest.raises(ValueError, match="Duplicated"):
        registry.register(PrometheusCollector(c))
    # two pools with one name cannot share a collector
    twin = pool_factory(1, name="pa")
    with pytest.raises(ValueError, match="already exported"):
        collector.add(twin)

    collector.remove(c)
    fams = _scrape(prom, registry)
    assert _samples(fams["ringpool_tasks_submitted"], "pc", "_total") == []
    assert {p.name for p in collector.pools} == {"pa", "pb"}


def test_prometheus_collector_on_the_default_registry(prom, pool_factory):
    from ringpool.metrics import PrometheusCollector

    pool = pool_factory(1, name="default-registry")
    pool.submit(int, "1").result(timeout=30)
    collector = PrometheusCollector(pool, prefix="rp_default_test")
    prom.REGISTRY.register(collector)
    try:
        fams = _scrape(prom, prom.REGISTRY)
        assert _value(fams, "rp_default_test_tasks_completed", "default-registry", "_total") == 1
    finally:
        prom.REGISTRY.unregister(collector)


def test_prometheus_collector_holds_pools_weakly(prom):
    from ringpool.metrics import PrometheusCollector

    pool = ringpool.Pool(1, name="ephemeral")
    collector = PrometheusCollector(pool)
    assert [p.name for p in collector.pools] == ["ephemeral"]
    pool.shutdown(wait=True)
    del pool
    gc.collect()
    assert collector.pools == []
    registry = prom.CollectorRegistry()
    registry.register(collector)
    fams = _scrape(prom, registry)
    assert fams["ringpool_tasks_submitted"].samples == []


def test_prometheus_describe_and_argument_checks(prom, pool_factory):
    from ringpool.metrics import PrometheusCollector

    pool = pool_factory(1)
    described = PrometheusCollector(pool).describe()
    assert {f.name for f in described} >= {"ringpool_tasks_submitted", "ringpool_run_time_seconds",
                                          "ringpool_queue_wait_seconds", "ringpool_queue_depth"}
    assert all(not f.samples for f in described)
    with pytest.raises(ValueError):
        PrometheusCollector(pool, prefix="bad prefix")
    with pytest.raises(ValueError):
        PrometheusCollector(pool, buckets=(1.0, 0.5))
    with pytest.raises(ValueError):
        PrometheusCollector(pool, buckets=())
    with pytest.raises(TypeError):
        PrometheusCollector([object()])
    custom = PrometheusCollector(pool, prefix="custom", buckets=(0.25, 2))
    registry = prom.CollectorRegistry()
    registry.register(custom)
    fams = _scrape(prom, registry)
    les = [s.labels["le"] for s in fams["custom_run_time_seconds"].samples if s.name.endswith("_bucket")]
    assert les == ["0.25", "2.0", "+Inf"]
