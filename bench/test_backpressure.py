"""The cost of backpressure: one producer submits n no-op tasks, then waits
for all, against a bounded ringpool (queue_size=64 and 4096), an unbounded
ringpool and ThreadPoolExecutor, 2 workers each.

With a small queue the producer keeps hitting the bound and waits for room
(GIL released) many times; the question is what that costs against the
unbounded pool. The target: at queue_size=4096 the bounded pool loses no
more than 20% throughput against the unbounded one.

Two ways to run it:

``pytest bench/test_backpressure.py``
    pytest-benchmark, one group per (n, workers), so the table shows the four
    variants side by side (``--bench-quick``: n=20k instead of 100k).

``python bench/test_backpressure.py [--n 100000] [--reps 5] [--workers 2]``
    a standalone run: the four variants interleaved (order rotated every
    repetition, as ``ringpool._bench`` does), medians and ratios printed. The
    exit status is 1 when bounded-4096 loses more than 20% throughput against
    unbounded (``--max-loss`` changes the limit).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

import ringpool

# Imported before anything else that might import numpy: it pins BLAS to one thread.
from ringpool import _bench

if __name__ != "__main__":
    pytest.importorskip("pytest_benchmark")

#: The workload: submit n no-op tasks, then wait for every result.
WORKLOAD = "overhead"
WORKERS = 2
#: variant -> queue_size (None: unbounded); "tpe" is ThreadPoolExecutor.
VARIANTS: dict[str, int | None] = {
    "bounded_64": 64,
    "bounded_4096": 4096,
    "unbounded": None,
    "tpe": None,
}
SIZES = {"quick": 20_000, "full": 100_000}
MAX_LOSS = 0.20  # bounded_4096 vs unbounded


def make_runner(variant: str, workers: int = WORKERS) -> _bench.PoolRunner:
    """A pool of *variant* behind ``_bench``'s uniform runner interface."""
    if variant == "tpe":
        executor = ThreadPoolExecutor(workers)
    else:
        executor = ringpool.Pool(workers, queue_size=VARIANTS[variant], on_full="block",
                                 name=f"bench-{variant}")
    return _bench.ExecutorRunner(variant, executor, workers)


# ---------------------------------------------------------------------------
# pytest-benchmark
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def _bp_runners():
    cache: dict[str, _bench.PoolRunner] = {}
    yield cache
    for runner in cache.values():
        runner.close()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_backpressure_throughput(benchmark, variant, _bp_runners, bench_mode, bench_rounds):
    if variant not in _bp_runners:
        runner = make_runner(variant)
        runner.warm_up()  # outside the timer: every worker exists
        _bp_runners[variant] = runner
    runner = _bp_runners[variant]
    n = SIZES[bench_mode]
    wl = _bench.WORKLOADS[WORKLOAD]
    benchmark.group = f"backpressure: {n} no-op submits + wait, workers={WORKERS}"
    benchmark.extra_info.update(
        workload=WORKLOAD, n=n, workers=WORKERS, variant=variant,
        queue_size=VARIANTS[variant], pool="ThreadPoolExecutor" if variant == "tpe" else "ringpool.Pool",
    )
    op = wl.operation(runner, n)
    benchmark.pedantic(op, rounds=bench_rounds, iterations=1, warmup_rounds=1)
    if variant != "tpe":
        s = runner.executor.stats()
        benchmark.extra_info.update(blocked_seconds_total=s.blocked_seconds_total)
        assert s.queued == 0 or s.queue_capacity is None or s.queued <= s.queue_capacity


# ---------------------------------------------------------------------------
# standalone: interleaved repetitions, medians and ratios
# ---------------------------------------------------------------------------

def run(n: int, reps: int, workers: int) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Seconds per repetition per variant (interleaved, order rotated), and
    the producer's total blocked time per ringpool variant."""
    runners = {v: make_runner(v, workers) for v in VARIANTS}
    try:
        for r in runners.values():
            r.warm_up()
        raw = _bench._measure_interleaved(_bench.WORKLOADS[WORKLOAD], runners, n, reps)
        blocked = {v: r.executor.stats().blocked_seconds_total
                   for v, r in runners.items() if v != "tpe"}
    finally:
        for r in runners.values():
            r.close()
    return {v: [m["total_s"] for m in reps_] for v, reps_ in raw.items()}, blocked


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=SIZES["full"], help="tasks per repetition (default 100000)")
    ap.add_argument("--reps", type=int, default=5, help="interleaved repetitions (default 5)")
    ap.add_argument("--workers", type=int, default=WORKERS, help="workers per pool (default 2)")
    ap.add_argument("--max-loss", type=float, default=MAX_LOSS,
                    help="allowed throughput loss of bounded_4096 vs unbounded (default 0.20)")
    args = ap.parse_args(argv)

    info = _bench.machine_info()
    print(f"ringpool {info['ringpool_version']} on Python {info['python_version']}, "
          f"{info['cpu_usable']} usable CPUs ({info['cpu_model']})")
    print(f"workload: submit {args.n} no-op tasks from one producer, then wait for all; "
          f"{args.workers} workers; {args.reps} interleaved repetitions; median reported\n")
    times, blocked = run(args.n, args.reps, args.workers)
    med = {v: statistics.median(t) for v, t in times.items()}
    tput = {v: args.n / m for v, m in med.items()}

    print(f"{'variant':<14}{'queue_size':>11}{'median':>11}{'tasks/s':>12}{'us/task':>9}   repetitions (s)")
    for v, size in VARIANTS.items():
        qs = "-" if v == "tpe" else str(size or "unbounded")
        reps_s = " ".join(f"{t:.3f}" for t in times[v])
        print(f"{v:<14}{qs:>11}{med[v]:>10.3f}s{tput[v]:>12,.0f}{med[v] / args.n * 1e6:>9.2f}   {reps_s}")
    print("\nproducer blocked (s, all repetitions):",
          ", ".join(f"{v}={b:.3f}" for v, b in blocked.items()))

    def ratio(a: str, b: str) -> float:
        return tput[a] / tput[b]

    print("\nthroughput ratios (higher is better):")
    for a, b in [("bounded_4096", "unbounded"), ("bounded_64", "unbounded"),
                 ("unbounded", "tpe"), ("bounded_4096", "tpe"), ("bounded_64", "tpe")]:
        print(f"  {a:>12} / {b:<10} = {ratio(a, b):.3f}")
    loss = 1.0 - ratio("bounded_4096", "unbounded")
    ok = loss <= args.max_loss
    print(f"\nbounded (queue_size=4096) vs unbounded: {loss * 100:+.1f}% throughput loss "
          f"(limit {args.max_loss * 100:.0f}%): {'OK' if ok else 'OVER THE LIMIT'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
