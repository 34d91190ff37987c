"""Benchmark workloads and an interleaved runner for ringpool.

This module is shared by ``python -m ringpool``, the pytest-benchmark suite in
``bench/`` and the regression guard ``bench/check.py``, so every workload is
defined exactly once.

Every workload runs on four "pools":

``ringpool``        :class:`ringpool.Pool`
``tpe``             :class:`concurrent.futures.ThreadPoolExecutor` (the baseline)
``mp_threadpool``   :class:`multiprocessing.pool.ThreadPool` (``apply_async``/``map``)
``sequential``      a plain loop in the calling thread

Measurement rules (see :func:`run_benchmarks`):

* pools are created once per (pool kind, worker count), outside the timed
  region, and warmed up so that every worker thread exists before timing;
* repetitions are interleaved -- repetition 1 of every pool, then repetition 2
  of every pool, ... -- so slow drift (thermal throttling, a noisy neighbour)
  hits all pools alike; the pool order is rotated every repetition so no pool
  is always first;
* the median over repetitions is reported and the raw repetitions are kept;
* each figure is a time per task, plus ``speed-up vs TPE = tpe / pool`` and
  ``speed-up vs sequential = sequential / pool``.

Only the standard library is required; numpy workloads are skipped when numpy
is not installed.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import importlib
import math
import os
import platform
import random
import statistics
import sys
import sysconfig
import threading
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# ---------------------------------------------------------------------------
# BLAS pinning.  A multi-threaded BLAS would make the "sequential" numpy
# baseline use every core and each pooled matmul fight the others for them, so
# the comparison would measure BLAS, not the pool.  The variables only work if
# they are set before numpy (and so the BLAS library) is first imported, which
# is why this runs at import time of this module; when numpy is already loaded
# we fall back to threadpoolctl (see _numpy()).
# ---------------------------------------------------------------------------

BLAS_ENV_VARS = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",  # macOS Accelerate
)

_blas_pinning = "n/a (numpy not loaded)"
_threadpool_limits: Any = None  # keeps the threadpoolctl limit alive


def pin_blas_threads() -> None:
    """Ask BLAS libraries for one thread, through the environment.

    Safe to call repeatedly. It only has an effect on a numpy imported after
    the call; :func:`blas_pinning` reports what actually happened.
    """
    for var in BLAS_ENV_VARS:
        os.environ[var] = "1"


# What the caller had set: numpy imported before us is pinned only if these were 1.
_CALLER_BLAS_ENV = {var: os.environ.get(var) for var in BLAS_ENV_VARS}
# Whether numpy (and so BLAS) was loaded before the variables below were set.
_NUMPY_PRELOADED = "numpy" in sys.modules
pin_blas_threads()


_numpy_checked = False


def _numpy() -> Any:
    """Import numpy with single-threaded BLAS, or return None if missing."""
    global _blas_pinning, _threadpool_limits, _numpy_checked
    try:
        import numpy
    except ImportError:
        return None
    if _numpy_checked:
        return numpy
    _numpy_checked = True
    # Whoever imported numpy after this module did so with the variables set.
    if not _NUMPY_PRELOADED:
        _blas_pinning = "env (" + ", ".join(f"{v}=1" for v in BLAS_ENV_VARS) + ")"
    elif all(_CALLER_BLAS_ENV[v] == "1" for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")):
        _blas_pinning = "env (set by the caller before numpy was imported)"
    else:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            _blas_pinning = (
                "NOT pinned: numpy was imported before ringpool._bench; "
                "install threadpoolctl or import ringpool._bench first"
            )
        else:
            _threadpool_limits = threadpool_limits(limits=1, user_api="blas")
            _blas_pinning = "threadpoolctl (limits=1)"
    return numpy


def blas_pinning() -> str:
    """Describe how (and whether) BLAS was pinned to one thread."""
    return _blas_pinning


# ---------------------------------------------------------------------------
# Task functions.  Module-level so multiprocessing and pickling-minded readers
# see plain functions, and so every pool calls the very same code.
# ---------------------------------------------------------------------------


def noop() -> None:
    """Do nothing: measures pure dispatch cost."""


def double(x: int) -> int:
    """The tiny map task: ``x * 2``."""
    return x * 2


def sha256_task(buf: bytes) -> bytes:
    """SHA-256 of *buf*; hashlib releases the GIL for inputs >= 2 KiB."""
    return hashlib.sha256(buf).digest()


def zlib_task(buf: bytes) -> int:
    """Compress *buf* (zlib releases the GIL); return the compressed size."""
    return len(zlib.compress(buf))


def matmul_task(a: Any, b: Any) -> Any:
    """numpy matrix product; BLAS releases the GIL."""
    return a @ b


def _barrier_task(barrier: threading.Barrier) -> None:
    # Blocks until `parties` tasks run at once, which forces a pool that
    # starts threads on demand to start all of them.
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass


def _text(nbytes: int) -> bytes:
    """Deterministic, compressible pseudo-text (random bytes would not compress)."""
    rnd = random.Random(1234)
    words = [
        "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 10)))
        for _ in range(2000)
    ]
    out = bytearray()
    while len(out) < nbytes:
        out += " ".join(rnd.choices(words, k=1000)).encode() + b"\n"
    return bytes(out[:nbytes])


# ---------------------------------------------------------------------------
# Pool adapters: one uniform interface over four very different APIs.
# ---------------------------------------------------------------------------

POOL_KINDS: tuple[str, ...] = ("ringpool", "tpe", "mp_threadpool", "sequential")
POOL_LABELS: dict[str, str] = {
    "ringpool": "ringpool.Pool",
    "tpe": "ThreadPoolExecutor",
    "mp_threadpool": "mp.pool.ThreadPool",
    "sequential": "sequential",
}


class PoolRunner(ABC):
    """A pool of one kind and size, driven through a uniform interface."""

    kind: str
    workers: int

    @abstractmethod
    def run_batch(self, fn: Callable[..., Any], args: tuple, n: int) -> list:
        """Submit ``fn(*args)`` *n* times, then wait for every result."""

    @abstractmethod
    def run_map(self, fn: Callable[[Any], Any], items: Sequence, chunksize: int | None) -> list:
        """Map *fn* over *items* with the pool's own ``map``.

        ``chunksize=None`` calls ``map`` without it, so each pool uses its own
        default -- what a user gets from a drop-in replacement.
        """

    @abstractmethod
    def round_trip_fn(self, fn: Callable[..., Any], args: tuple) -> Callable[[], Any]:
        """Return a zero-argument callable doing one submit -> result."""

    def warm_up(self) -> None:
        """Start every worker thread and exercise the dispatch path once."""
        if self.workers > 1:
            barrier = threading.Barrier(self.workers, timeout=2.0)
            self.run_batch(_barrier_task, (barrier,), self.workers)
        self.run_batch(noop, (), 200 * self.workers)

    @abstractmethod
    def close(self) -> None:
        """Shut the pool down and join its threads."""

    def __enter__(self) -> PoolRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ExecutorRunner(PoolRunner):
    """A :class:`concurrent.futures.Executor` (ringpool.Pool or ThreadPoolExecutor)."""

    def __init__(self, kind: str, executor: Any, workers: int) -> None:
        self.kind = kind
        self.workers = workers
        self.executor = executor

    def run_batch(self, fn: Callable[..., Any], args: tuple, n: int) -> list:
        submit = self.executor.submit  # bound once: keep the loop about the pool
        futures = [submit(fn, *args) for _ in range(n)]
        return [f.result() for f in futures]

    def run_map(self, fn: Callable[[Any], Any], items: Sequence, chunksize: int | None) -> list:
        # ThreadPoolExecutor accepts and ignores chunksize: that is its real API.
        if chunksize is None:
            return list(self.executor.map(fn, items))
        return list(self.executor.map(fn, items, chunksize=chunksize))

    def round_trip_fn(self, fn: Callable[..., Any], args: tuple) -> Callable[[], Any]:
        submit = self.executor.submit

        def round_trip() -> Any:
            return submit(fn, *args).result()

        return round_trip

    def close(self) -> None:
        self.executor.shutdown(wait=True)


class MPThreadPoolRunner(PoolRunner):
    """:class:`multiprocessing.pool.ThreadPool` through apply_async/get and map."""

    kind = "mp_threadpool"

    def __init__(self, workers: int) -> None:
        from multiprocessing.pool import ThreadPool

        self.workers = workers
        self.pool = ThreadPool(workers)

    def run_batch(self, fn: Callable[..., Any], args: tuple, n: int) -> list:
        apply_async = self.pool.apply_async
        handles = [apply_async(fn, args) for _ in range(n)]
        return [h.get() for h in handles]

    def run_map(self, fn: Callable[[Any], Any], items: Sequence, chunksize: int | None) -> list:
        # chunksize=None is multiprocessing's own default: it auto-chunks.
        return self.pool.map(fn, items, chunksize=chunksize)

    def round_trip_fn(self, fn: Callable[..., Any], args: tuple) -> Callable[[], Any]:
        apply_async = self.pool.apply_async

        def round_trip() -> Any:
            return apply_async(fn, args).get()

        return round_trip

    def close(self) -> None:
        self.pool.close()
        self.pool.join()


class SequentialRunner(PoolRunner):
    """No pool at all: the calling thread runs every task."""

    kind = "sequential"

    def __init__(self, workers: int = 1) -> None:
        # The worker count is recorded only so results line up per row.
        self.workers = workers

    def run_batch(self, fn: Callable[..., Any], args: tuple, n: int) -> list:
        return [fn(*args) for _ in range(n)]

    def run_map(self, fn: Callable[[Any], Any], items: Sequence, chunksize: int | None) -> list:
        return list(map(fn, items))

    def round_trip_fn(self, fn: Callable[..., Any], args: tuple) -> Callable[[], Any]:
        def round_trip() -> Any:
            return fn(*args)

        return round_trip

    def warm_up(self) -> None:
        pass

    def close(self) -> None:
        pass


def make_runner(kind: str, workers: int) -> PoolRunner:
    """Create (but do not warm up) a pool of *kind* with *workers* threads."""
    if workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if kind == "ringpool":
        from ringpool import Pool

        return ExecutorRunner(kind, Pool(workers), workers)
    if kind == "tpe":
        from concurrent.futures import ThreadPoolExecutor

        return ExecutorRunner(kind, ThreadPoolExecutor(workers), workers)
    if kind == "mp_threadpool":
        return MPThreadPoolRunner(workers)
    if kind == "sequential":
        return SequentialRunner(workers)
    raise ValueError(f"unknown pool kind {kind!r}; expected one of {', '.join(POOL_KINDS)}")


# ---------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------

MODES: tuple[str, ...] = ("tiny", "quick", "full")

#: One repetition's figures in seconds, by metric; every workload reports ``per_task_s``.
Measurement = dict[str, float]


@dataclass(frozen=True)
class Workload:
    """One benchmark: a task, how it is fed to a pool, and its sizes.

    ``style`` is ``"batch"`` (submit n tasks, then wait for all), ``"map"``
    (``pool.map`` over n items) or ``"latency"`` (n single round trips).
    ``sizes`` maps a mode (tiny/quick/full) to n.  ``setup`` builds the task
    function and its arguments outside any timed region.
    """

    name: str
    category: str  # overhead | map | latency | coarse | fine
    description: str
    style: str
    sizes: Mapping[str, int]
    setup: Callable[[], tuple[Callable[..., Any], tuple]]
    chunksize: int | None = None  # map only; None = each pool's default
    needs_numpy: bool = False

    def size(self, mode: str) -> int:
        """Number of tasks (or round trips) in *mode*."""
        return self.sizes[mode]

    def skip_reason(self) -> str | None:
        """Why this workload cannot run here, or None if it can."""
        if self.needs_numpy and _numpy() is None:
            return "numpy is not installed"
        return None

    def operation(self, runner: PoolRunner, n: int) -> Callable[[], Any]:
        """Return the untimed work of one repetition as a zero-arg callable.

        For ``latency`` the callable is a single round trip (pytest-benchmark
        times each call); for the others it processes all *n* tasks.
        """
        fn, args = self.setup()
        if self.style == "batch":
            return lambda: runner.run_batch(fn, args, n)
        if self.style == "map":
            items = list(range(n))
            chunksize = self.chunksize
            return lambda: runner.run_map(fn, items, chunksize)
        if self.style == "latency":
            return runner.round_trip_fn(fn, args)
        raise ValueError(f"unknown workload style {self.style!r}")

    def measure(self, runner: PoolRunner, n: int) -> Callable[[], Measurement]:
        """Return a callable that runs one timed repetition and its metrics.

        Throughput styles report ``total_s`` and ``per_task_s``; latency
        reports ``p50_s`` and ``p99_s`` over *n* round trips, with
        ``per_task_s`` = p50.
        """
        op = self.operation(runner, n)
        clock = time.perf_counter_ns
        if self.style == "latency":
            samples = [0] * n

            def latency_rep() -> Measurement:
                for i in range(n):
                    t0 = clock()
                    op()
                    samples[i] = clock() - t0
                ordered = sorted(samples)
                p50 = _percentile(ordered, 50.0) * 1e-9
                return {"per_task_s": p50, "p50_s": p50, "p99_s": _percentile(ordered, 99.0) * 1e-9}

            return latency_rep

        def throughput_rep() -> Measurement:
            t0 = clock()
            op()
            total = (clock() - t0) * 1e-9
            return {"per_task_s": total / n, "total_s": total}

        return throughput_rep


def _percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not ordered:
        raise ValueError("no samples")
    rank = max(1, min(len(ordered), math.ceil(pct / 100.0 * len(ordered))))
    return float(ordered[rank - 1])


def _setup_noop() -> tuple[Callable[..., Any], tuple]:
    return noop, ()


def _setup_double() -> tuple[Callable[..., Any], tuple]:
    return double, ()


def _setup_sha256(nbytes: int) -> Callable[[], tuple[Callable[..., Any], tuple]]:
    @functools.cache
    def setup() -> tuple[Callable[..., Any], tuple]:
        # SHA-256 speed does not depend on content; seeded for reproducibility.
        return sha256_task, (random.Random(0).randbytes(nbytes),)

    return setup


def _setup_zlib(nbytes: int) -> Callable[[], tuple[Callable[..., Any], tuple]]:
    @functools.cache  # generating the text is slow; every pool shares one copy
    def setup() -> tuple[Callable[..., Any], tuple]:
        return zlib_task, (_text(nbytes),)

    return setup


def _setup_matmul(dim: int) -> Callable[[], tuple[Callable[..., Any], tuple]]:
    @functools.cache
    def setup() -> tuple[Callable[..., Any], tuple]:
        np = _numpy()
        if np is None:
            raise RuntimeError("numpy is not installed")
        rng = np.random.default_rng(0)
        return matmul_task, (rng.random((dim, dim)), rng.random((dim, dim)))

    return setup


def _sizes(tiny: int, quick: int, full: int) -> dict[str, int]:
    return {"tiny": tiny, "quick": quick, "full": full}


_KiB = 1024
_MiB = 1024 * _KiB

_WORKLOAD_LIST: tuple[Workload, ...] = (
    Workload("overhead", "overhead", "submit n no-op tasks, then wait for all",
             "batch", _sizes(500, 20_000, 100_000), _setup_noop),
    Workload("map", "map", "pool.map(x * 2) over n items, each pool's default chunksize",
             "map", _sizes(500, 20_000, 100_000), _setup_double),
    Workload("map_chunked", "map", "pool.map(x * 2) over n items, chunksize=256",
             "map", _sizes(1_000, 20_000, 100_000), _setup_double, chunksize=256),
    Workload("latency", "latency", "single submit -> result round trip (p50, p99)",
             "latency", _sizes(200, 2_000, 10_000), _setup_noop),
    Workload("sha256_1MiB", "coarse", "hashlib.sha256 of 1 MiB per task",
             "batch", _sizes(4, 64, 256), _setup_sha256(_MiB)),
    Workload("zlib_256KiB", "coarse", "zlib.compress of 256 KiB text per task",
             "batch", _sizes(2, 16, 64), _setup_zlib(256 * _KiB)),
    Workload("matmul_256", "coarse", "numpy 256x256 float64 matmul per task",
             "batch", _sizes(4, 32, 128), _setup_matmul(256), needs_numpy=True),
    Workload("sha256_4KiB", "fine", "hashlib.sha256 of 4 KiB per task",
             "batch", _sizes(500, 10_000, 50_000), _setup_sha256(4 * _KiB)),
    Workload("zlib_4KiB", "fine", "zlib.compress of 4 KiB text per task",
             "batch", _sizes(100, 2_000, 10_000), _setup_zlib(4 * _KiB)),
    Workload("matmul_16", "fine", "numpy 16x16 float64 matmul per task",
             "batch", _sizes(500, 10_000, 50_000), _setup_matmul(16), needs_numpy=True),
)

#: Every workload by name, in report order.
WORKLOADS: dict[str, Workload] = {w.name: w for w in _WORKLOAD_LIST}

#: The short representative selection that ``python -m ringpool`` runs by default.
DEFAULT_SELECTION: tuple[str, ...] = (
    "overhead", "map", "map_chunked", "latency", "sha256_1MiB", "sha256_4KiB",
)

#: Default repetitions per mode.
DEFAULT_REPEATS: dict[str, int] = {"tiny": 3, "quick": 5, "full": 9}


def default_worker_counts(cpu_count: int | None = None) -> list[int]:
    """Powers of two up to the CPU count, plus the CPU count itself.

    Every integer would be too many points on a large machine; powers of two
    show the scaling curve and the last point shows the whole machine.
    """
    cpus = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    counts = []
    w = 1
    while w <= cpus:
        counts.append(w)
        w *= 2
    if counts[-1] != cpus:
        counts.append(cpus)
    return counts


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


@dataclass
class PoolResult:
    """One pool's figures for one (workload, worker count)."""

    kind: str
    median: dict[str, float]
    raw: dict[str, list[float]]
    speedup_vs_tpe: dict[str, float | None] = field(default_factory=dict)
    speedup_vs_sequential: dict[str, float | None] = field(default_factory=dict)

    @property
    def per_task_s(self) -> float:
        """Median time per task (p50 round trip for the latency workload)."""
        return self.median["per_task_s"]

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        return {
            "pool": self.kind,
            "label": POOL_LABELS.get(self.kind, self.kind),
            "median": self.median,
            "raw": self.raw,
            "speedup_vs_tpe": self.speedup_vs_tpe,
            "speedup_vs_sequential": self.speedup_vs_sequential,
        }


@dataclass
class WorkloadResult:
    """All pools' figures for one workload at one worker count."""

    workload: str
    category: str
    description: str
    n: int
    workers: int
    pools: dict[str, PoolResult]

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        return {
            "workload": self.workload,
            "category": self.category,
            "description": self.description,
            "n": self.n,
            "workers": self.workers,
            "pools": {k: p.to_json() for k, p in self.pools.items()},
        }


@dataclass
class Report:
    """A whole benchmark run."""

    machine: dict[str, Any]
    config: dict[str, Any]
    results: list[WorkloadResult]
    skipped: list[dict[str, str]]

    def find(self, workload: str, workers: int) -> WorkloadResult | None:
        """The result for *workload* at *workers*, if it was run."""
        for r in self.results:
            if r.workload == workload and r.workers == workers:
                return r
        return None

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable view (schema version 1)."""
        return {
            "schema": 1,
            "machine": self.machine,
            "config": self.config,
            "results": [r.to_json() for r in self.results],
            "skipped": self.skipped,
        }


def _ratio(baseline: float | None, value: float | None) -> float | None:
    if baseline is None or value is None or value <= 0:
        return None
    return baseline / value


def _summarise(raw: dict[str, list[Measurement]]) -> dict[str, PoolResult]:
    """Medians per metric and ratios against tpe and sequential."""
    pools: dict[str, PoolResult] = {}
    for kind, reps in raw.items():
        metrics = reps[0].keys()
        series = {m: [r[m] for r in reps] for m in metrics}
        median = {m: statistics.median(v) for m, v in series.items()}
        pools[kind] = PoolResult(kind, median, series)
    for result in pools.values():
        for metric, value in result.median.items():
            if metric == "total_s":
                continue  # same ratio as per_task_s
            tpe = pools.get("tpe")
            seq = pools.get("sequential")
            result.speedup_vs_tpe[metric] = _ratio(tpe.median[metric] if tpe else None, value)
            result.speedup_vs_sequential[metric] = _ratio(seq.median[metric] if seq else None, value)
    return pools


# ---------------------------------------------------------------------------
# Machine description
# ---------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def free_threading_info() -> dict[str, Any]:
    """Whether this interpreter is a free-threaded build and the GIL is off."""
    build = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    is_enabled = getattr(sys, "_is_gil_enabled", None)
    gil_enabled = bool(is_enabled()) if callable(is_enabled) else True
    return {"free_threaded_build": build, "gil_enabled": gil_enabled}


def ringpool_version() -> str:
    """ringpool's version, from the package or its installed metadata."""
    try:
        mod = importlib.import_module("ringpool")
        version = getattr(mod, "__version__", None)
        if version:
            return str(version)
    except ImportError:
        pass
    try:
        from importlib.metadata import version as dist_version

        return dist_version("ringpool")
    except Exception:  # PackageNotFoundError, or broken metadata
        return "unknown"


def core_build_info() -> dict[str, Any] | None:
    """``ringpool._core.build_info()`` if the native core provides it."""
    try:
        core = importlib.import_module("ringpool._core")
    except ImportError:
        return None
    fn = getattr(core, "build_info", None)
    if not callable(fn):
        return None
    try:
        return dict(fn())
    except Exception as exc:  # a diagnostic must never crash the report
        return {"error": f"{type(exc).__name__}: {exc}"}


def machine_info() -> dict[str, Any]:
    """Describe the machine, interpreter and ringpool build."""
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on macOS/Windows
        usable = os.cpu_count()
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable,
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "python_build": " ".join(platform.python_build()),
        "python_compiler": platform.python_compiler(),
        "debug_build": hasattr(sys, "gettotalrefcount"),
        **free_threading_info(),
        "ringpool_version": ringpool_version(),
        "ringpool_build": core_build_info(),
        "blas_pinning": blas_pinning(),
    }
    if "numpy" in sys.modules:
        info["numpy_version"] = sys.modules["numpy"].__version__
    return info


# ---------------------------------------------------------------------------
# The runner
# ---------------------------------------------------------------------------


def run_benchmarks(
    workloads: Iterable[str] = DEFAULT_SELECTION,
    workers: Iterable[int] | None = None,
    pools: Iterable[str] = POOL_KINDS,
    mode: str = "quick",
    repeats: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Run *workloads* on *pools* at each worker count and return a Report.

    For each worker count, one pool of each kind is created and warmed up,
    then every workload runs ``repeats`` interleaved repetitions on all pools.
    Pools are shut down before the next worker count so idle threads from one
    size never compete with the next.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    names = list(workloads)
    for name in names:
        if name not in WORKLOADS:
            raise ValueError(f"unknown workload {name!r}; expected one of {', '.join(WORKLOADS)}")
    kinds = list(pools)
    for kind in kinds:
        if kind not in POOL_KINDS:
            raise ValueError(f"unknown pool kind {kind!r}; expected one of {', '.join(POOL_KINDS)}")
    counts = sorted(set(workers)) if workers is not None else default_worker_counts()
    if not counts or any(w < 1 for w in counts):
        raise ValueError(f"worker counts must be positive integers, got {counts!r}")
    reps = repeats if repeats is not None else DEFAULT_REPEATS[mode]
    if reps < 1:
        raise ValueError(f"repeats must be >= 1, got {reps!r}")
    say = progress or (lambda _msg: None)

    runnable: list[Workload] = []
    skipped: list[dict[str, str]] = []
    for name in names:
        reason = WORKLOADS[name].skip_reason()
        if reason:
            skipped.append({"workload": name, "reason": reason})
            say(f"skipping {name}: {reason}")
        else:
            runnable.append(WORKLOADS[name])

    results: list[WorkloadResult] = []
    total = len(runnable) * len(counts)
    step = 0
    for w in counts:
        runners: dict[str, PoolRunner] = {}
        try:
            for kind in kinds:
                runners[kind] = make_runner(kind, w)
            for runner in runners.values():
                runner.warm_up()
            for wl in runnable:
                step += 1
                n = wl.size(mode)
                say(f"[{step}/{total}] {wl.name} (n={n}) workers={w} ...")
                raw = _measure_interleaved(wl, runners, n, reps)
                pools_result = _summarise(raw)
                results.append(WorkloadResult(wl.name, wl.category, wl.description, n, w, pools_result))
                say("    " + _progress_summary(pools_result))
        finally:
            for runner in runners.values():
                runner.close()

    config = {
        "mode": mode,
        "repeats": reps,
        "workers": counts,
        "pools": kinds,
        "workloads": names,
        "interleaved": True,
        "statistic": "median",
    }
    return Report(machine_info(), config, results, skipped)


def _measure_interleaved(
    wl: Workload, runners: Mapping[str, PoolRunner], n: int, reps: int
) -> dict[str, list[Measurement]]:
    """Interleaved repetitions of *wl* on every runner (order rotated per rep)."""
    kinds = list(runners)
    measures = {k: wl.measure(runners[k], n) for k in kinds}
    # Untimed warm-up at a reduced size: first-call costs (caches, lazily
    # created objects, page faults on fresh buffers) stay out of repetition 1.
    warm_n = min(n, max(2 * runners[kinds[0]].workers, n // 10, 1))
    for k in kinds:
        wl.measure(runners[k], warm_n)()
    raw: dict[str, list[Measurement]] = {k: [] for k in kinds}
    for rep in range(reps):
        shift = rep % len(kinds)
        for k in kinds[shift:] + kinds[:shift]:
            # Collect garbage left by the previous repetition outside the
            # timed region, but keep GC enabled inside it: a pool that
            # allocates more pays for it, as it would in an application.
            gc.collect()
            raw[k].append(measures[k]())
    return raw


def format_duration(seconds: float) -> str:
    """Human-readable duration with an adaptive unit (ns, us, ms, s)."""
    if seconds < 1e-6:
        return f"{seconds * 1e9:.0f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.2f} us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def _progress_summary(pools: Mapping[str, PoolResult]) -> str:
    parts = []
    for kind, res in pools.items():
        text = f"{kind} {format_duration(res.per_task_s)}"
        ratio = res.speedup_vs_tpe.get("per_task_s")
        if kind != "tpe" and ratio is not None:
            text += f" ({ratio:.2f}x TPE)"
        parts.append(text)
    return ", ".join(parts)
