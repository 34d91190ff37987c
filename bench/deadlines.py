"""What a deadline costs: submit + wait of no-op tasks with and without a
per-task deadline (Pool(task_timeout=60): every task is armed in the timer
heap and disarmed when it ends), next to ThreadPoolExecutor, in one run.

    python bench/deadlines.py [--n 100000] [--reps 5] [--workers 2]

Prints ns per task (median of the interleaved repetitions) and the ratios.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import statistics
import sys
import time

import ringpool


def run(pool, n: int) -> float:
    t0 = time.perf_counter()
    futures = [pool.submit(int) for _ in range(n)]
    for f in futures:
        f.result()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    times: dict[str, list[float]] = {"ringpool": [], "ringpool_deadline": [], "tpe": []}
    with ringpool.Pool(args.workers) as plain, ringpool.Pool(args.workers, task_timeout=60) as armed, \
            cf.ThreadPoolExecutor(args.workers) as tpe:
        pools = {"ringpool": plain, "ringpool_deadline": armed, "tpe": tpe}
        for pool in pools.values():
            run(pool, args.n // 10)  # warm up
        for _ in range(args.reps):
            for name, pool in pools.items():
                times[name].append(run(pool, args.n))
    ns = {k: statistics.median(v) * 1e9 / args.n for k, v in times.items()}
    print(json.dumps({"workers": args.workers, "n": args.n, "ns_per_task": {k: round(v) for k, v in ns.items()},
                      "deadline_vs_plain": round(ns["ringpool_deadline"] / ns["ringpool"], 2),
                      "tpe_vs_deadline": round(ns["tpe"] / ns["ringpool_deadline"], 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
