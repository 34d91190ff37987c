"""Native tasks: ringpool from Python vs the same engine driven from C, vs
ThreadPoolExecutor calling the same C functions through ctypes, vs sequential C.

Run from the repository root (ringpool installed, a C compiler on PATH)::

    python bench/native.py                       # Python side only
    python bench/native.py --c-bench build-c/bench_native --workers 1 2 4 8 16

``--c-bench`` runs the pure-C driver (bench/c/bench_native.c, built by the C
tests' CMake tree) in the same run, so the ratios compare like with like.
Every figure is the median of ``--reps`` repetitions, interleaved across
contenders. Kernels: tests/native/rp_test_kernels.c (rpk_noop: an empty task;
rpk_k_work: ~4 us of arithmetic per index).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import ctypes
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import ringpool

ROOT = Path(__file__).resolve().parent.parent


def build_kernels(out_dir: str) -> ctypes.CDLL:
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    so = os.path.join(out_dir, "rp_test_kernels.so")
    subprocess.run(cc + ["-O2", "-shared", "-fPIC", "-I", ringpool.get_include(),
                         str(ROOT / "tests" / "native" / "rp_test_kernels.c"), "-o", so], check=True)
    lib = ctypes.CDLL(so)
    for name in ("rpk_noop",):
        f = getattr(lib, name)
        f.restype, f.argtypes = ctypes.c_int, (ctypes.c_void_p, ctypes.c_void_p)
    lib.rpk_k_work.restype = ctypes.c_int
    lib.rpk_k_work.argtypes = (ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p)
    lib.rpk_work_sequential.restype = ctypes.c_double
    lib.rpk_work_sequential.argtypes = (ctypes.c_int64, ctypes.c_void_p)
    return lib


def run_c_bench(path: str, workers: list[int], reps: int, batch: int, n: int) -> list[dict]:
    r = subprocess.run([path, "--reps", str(reps), "--noop-n", str(batch), "--work-n", str(n), *map(str, workers)],
                       capture_output=True, text=True, check=True)
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=2_000_000, help="empty tasks per batch")
    ap.add_argument("--futures", type=int, default=20_000, help="single submit_native tasks")
    ap.add_argument("--n", type=int, default=200_000, help="parallel_for indices (~4 us each)")
    ap.add_argument("--c-bench", help="path of the pure-C driver bench_native")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)

    tmp = tempfile.mkdtemp(prefix="rp-native-bench-")
    lib = build_kernels(tmp)
    import array

    out = array.array("d", bytes(8 * args.n))
    out_addr = out.buffer_info()[0]
    results: dict = {"cpus": os.cpu_count(), "python": sys.version.split()[0], "rows": []}

    seq = statistics.median(lib.rpk_work_sequential(args.n, out_addr) for _ in range(args.reps))
    results["seq_work_s"] = seq
    for w in args.workers:
        batch_s, fut_s, tpe_fut_s, pfor_s, tpe_pfor_s = [], [], [], [], []
        with ringpool.Pool(w, min_workers=w) as pool, cf.ThreadPoolExecutor(w) as tpe:
            # warm both pools
            pool.submit_native_many(lib.rpk_noop, 1000).result()
            list(tpe.map(lambda _: None, range(w * 4)))
            grain = max(1, args.n // (4 * (w + 1)))
            chunks = [(b, min(b + grain, args.n)) for b in range(0, args.n, grain)]
            for _ in range(args.reps):
                t0 = time.perf_counter()
                pool.submit_native_many(lib.rpk_noop, args.batch).result()
                batch_s.append(time.perf_counter() - t0)

                t0 = time.perf_counter()
                futs = [pool.submit_native(lib.rpk_noop) for _ in range(args.futures)]
                for f in futs:
                    f.result()
                fut_s.append(time.perf_counter() - t0)

                t0 = time.perf_counter()
                futs = [tpe.submit(lib.rpk_noop, None, None) for _ in range(args.futures)]
                for f in futs:
                    f.result()
                tpe_fut_s.append(time.perf_counter() - t0)

                t0 = time.perf_counter()
                pool.parallel_for(args.n, lib.rpk_k_work, out)
                pfor_s.append(time.perf_counter() - t0)

                # The same chunks through ThreadPoolExecutor + ctypes (which
                # releases the GIL around each call).
                t0 = time.perf_counter()
                for f in [tpe.submit(lib.rpk_k_work, b, e, out_addr, None) for b, e in chunks]:
                    f.result()
                tpe_pfor_s.append(time.perf_counter() - t0)
        row = {
            "workers": w,
            "batch_tasks_per_s": args.batch / statistics.median(batch_s),
            "submit_native_tasks_per_s": args.futures / statistics.median(fut_s),
            "tpe_ctypes_tasks_per_s": args.futures / statistics.median(tpe_fut_s),
            "parallel_for_speedup": seq / statistics.median(pfor_s),
            "tpe_chunks_speedup": seq / statistics.median(tpe_pfor_s),
        }
        results["rows"].append(row)

    if args.c_bench:
        c_rows = run_c_bench(args.c_bench, args.workers, args.reps, args.batch, args.n)
        results["c"] = c_rows
        for row in results["rows"]:
            for c in c_rows:
                if c.get("workers") != row["workers"]:
                    continue
                if c["bench"] == "batch_noop":
                    row["c_batch_tasks_per_s"] = c["tasks_per_s"]
                    row["batch_vs_c"] = row["batch_tasks_per_s"] / c["tasks_per_s"]
                elif c["bench"] == "submit_noop":
                    row["c_submit_tasks_per_s"] = c["tasks_per_s"]
                elif c["bench"] == "pfor_work":
                    row["c_parallel_for_speedup"] = c["speedup"]

    print(f"# native tasks: {results['cpus']} CPUs, Python {results['python']}, "
          f"median of {args.reps}; sequential C work {seq:.3f} s for {args.n} indices")
    for row in results["rows"]:
        print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
