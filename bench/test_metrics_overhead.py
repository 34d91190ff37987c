"""What metrics cost: the dispatch-overhead workload (submit n no-op tasks,
then wait for every result) on ``Pool(2, metrics=True)`` vs
``Pool(2, metrics=False)``.

The requirement: with metrics on, the run is no more than 10% slower.

pytest-benchmark (one group, both pools side by side)::

    pytest bench/test_metrics_overhead.py [--bench-quick]

Script mode (interleaved repetitions, medians and the ratio; exits 1 when
the ratio exceeds the limit)::

    python bench/test_metrics_overhead.py [--n 100000] [--reps 7] [--workers 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys

import pytest

from ringpool import _bench

WORKLOAD = "overhead"
WORKERS = 2
LIMIT = 1.10  # metrics on may be at most 10% slower
MODES = {"metrics=True": True, "metrics=False": False}


def make_runner(metrics: bool, workers: int = WORKERS) -> _bench.PoolRunner:
    """A warmed-up ringpool runner with metrics on or off."""
    from ringpool import Pool

    runner = _bench.ExecutorRunner("ringpool", Pool(workers, metrics=metrics), workers)
    runner.warm_up()
    return runner


# -- pytest-benchmark -----------------------------------------------------------

@pytest.fixture(scope="module")
def metrics_runners():
    runners = {label: make_runner(on) for label, on in MODES.items()}
    yield runners
    for r in runners.values():
        r.close()


@pytest.mark.parametrize("mode", list(MODES))
def test_metrics_overhead(benchmark, metrics_runners, mode, bench_mode, bench_rounds):
    wl = _bench.WORKLOADS[WORKLOAD]
    n = wl.size(bench_mode)
    runner = metrics_runners[mode]
    benchmark.group = f"metrics overhead: {wl.description}, n={n} workers={WORKERS}"
    benchmark.extra_info.update(workload=WORKLOAD, n=n, workers=WORKERS, metrics=MODES[mode],
                                per=f"{n} tasks")
    benchmark.pedantic(wl.operation(runner, n), rounds=bench_rounds, iterations=1, warmup_rounds=1)


# -- script mode -------------------------------------------------------------------

def measure(n: int, reps: int, workers: int) -> dict[str, list[float]]:
    """Seconds per repetition for each mode, repetitions interleaved."""
    runners = {label: make_runner(on, workers) for label, on in MODES.items()}
    try:
        raw = _bench._measure_interleaved(_bench.WORKLOADS[WORKLOAD], runners, n, reps)
    finally:
        for r in runners.values():
            r.close()
    return {label: [m["total_s"] for m in ms] for label, ms in raw.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=_bench.WORKLOADS[WORKLOAD].size("full"),
                    help="tasks per repetition (default: %(default)s)")
    ap.add_argument("--reps", type=int, default=7, help="repetitions per mode (default: %(default)s)")
    ap.add_argument("--workers", type=int, default=WORKERS, help="pool size (default: %(default)s)")
    args = ap.parse_args(argv)

    times = measure(args.n, args.reps, args.workers)
    on, off = statistics.median(times["metrics=True"]), statistics.median(times["metrics=False"])
    print(f"{_bench.WORKLOADS[WORKLOAD].description}: n={args.n}, workers={args.workers}, "
          f"{args.reps} interleaved repetitions")
    for label, ts in times.items():
        med = statistics.median(ts)
        print(f"  {label:<14} median {_bench.format_duration(med):>10}  "
              f"({_bench.format_duration(med / args.n)}/task)  "
              f"min {_bench.format_duration(min(ts))}  max {_bench.format_duration(max(ts))}")
    ratio = on / off
    verdict = "OK" if ratio <= LIMIT else "TOO SLOW"
    print(f"  ratio on/off = {ratio:.3f}  (limit {LIMIT:.2f}): {verdict}")
    return 0 if ratio <= LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
