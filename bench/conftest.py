"""Shared fixtures of the pytest-benchmark suite (``pytest bench/``).

Every benchmark is parametrized over the pool kind (ringpool, tpe,
mp_threadpool, sequential) and the worker count, and put in a
pytest-benchmark group per (workload, worker count), so the table compares
the pools side by side. The workloads themselves live in ``ringpool._bench``.

Options:

``--bench-quick``      quick sizes and fewer rounds (default: full sizes)
``--bench-workers``    worker counts, e.g. ``1,2,4`` (default: powers of two
                       up to the CPU count, plus the CPU count)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

# Imported before anything else that might import numpy: it pins BLAS to one thread.
from ringpool import _bench


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ringpool-bench", "ringpool benchmarks")
    group.addoption("--bench-quick", action="store_true", default=False,
                    help="smaller workload sizes and fewer rounds")
    group.addoption("--bench-workers", default=None, metavar="N[,N...]",
                    help="worker counts to benchmark, e.g. 1,2,4 "
                         "(default: powers of two up to the CPU count)")


_WORKERS_KEY = pytest.StashKey[list[int]]()


def _worker_counts(config: pytest.Config) -> list[int]:
    value = config.getoption("--bench-workers")
    if value is None:
        return _bench.default_worker_counts()
    try:
        counts = sorted({int(v) for v in value.split(",")})
    except ValueError:
        counts = []
    if not counts or counts[0] < 1:
        raise pytest.UsageError(f"--bench-workers: expected positive integers like 1,2,4, got {value!r}")
    return counts


def pytest_configure(config: pytest.Config) -> None:
    # Validate before collection, so a bad value is one clear usage error.
    config.stash[_WORKERS_KEY] = _worker_counts(config)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Parametrize here rather than with decorators so --bench-workers applies
    # to every module without repeating the list.
    if "workers" in metafunc.fixturenames:
        counts = metafunc.config.stash[_WORKERS_KEY]
        metafunc.parametrize("workers", counts, ids=[f"w{w}" for w in counts])
    if "pool_kind" in metafunc.fixturenames:
        metafunc.parametrize("pool_kind", _bench.POOL_KINDS)


@pytest.fixture(scope="session")
def bench_mode(pytestconfig: pytest.Config) -> str:
    """Workload size mode: ``quick`` under --bench-quick, else ``full``."""
    return "quick" if pytestconfig.getoption("--bench-quick") else "full"


@pytest.fixture(scope="session")
def bench_rounds(bench_mode: str) -> int:
    """Timed rounds per throughput benchmark (each round runs n tasks)."""
    return 3 if bench_mode == "quick" else 7


@pytest.fixture(scope="session")
def _runners() -> Iterator[dict[tuple[str, int], _bench.PoolRunner]]:
    """Pools created once per (kind, workers) for the whole session."""
    cache: dict[tuple[str, int], _bench.PoolRunner] = {}
    yield cache
    for runner in cache.values():
        runner.close()


@pytest.fixture
def runner(pool_kind: str, workers: int,
           _runners: dict[tuple[str, int], _bench.PoolRunner]) -> _bench.PoolRunner:
    """A warmed-up pool of the parametrized kind and size (created once)."""
    key = (pool_kind, workers)
    if key not in _runners:
        # Creation and warm-up happen here, outside pytest-benchmark's timer.
        created = _bench.make_runner(pool_kind, workers)
        created.warm_up()
        _runners[key] = created
    return _runners[key]


@pytest.fixture
def run_workload(benchmark, runner: _bench.PoolRunner, bench_mode: str,
                 bench_rounds: int) -> Callable[[str], None]:
    """Benchmark one named workload of ``ringpool._bench`` on ``runner``.

    Throughput workloads time one round = all n tasks; the latency workload
    times one round = one submit -> result round trip, over n rounds.
    """

    def run(name: str) -> None:
        wl = _bench.WORKLOADS[name]
        reason = wl.skip_reason()
        if reason:
            pytest.skip(f"{name}: {reason}")
        n = wl.size(bench_mode)
        benchmark.group = f"{name} n={n} workers={runner.workers}"
        benchmark.extra_info.update(
            workload=name, n=n, workers=runner.workers, pool=runner.kind,
            description=wl.description, per="round trip" if wl.style == "latency" else f"{n} tasks",
        )
        op = wl.operation(runner, n)
        if wl.style == "latency":
            benchmark.pedantic(op, rounds=n, iterations=1, warmup_rounds=min(n, 100))
        else:
            benchmark.pedantic(op, rounds=bench_rounds, iterations=1, warmup_rounds=1)

    return run
