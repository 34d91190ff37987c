"""``python -m ringpool``: compare ringpool.Pool with the stdlib pools.

Usage::

    python -m ringpool                 # short representative run (< 1 min on 2 cores)
    python -m ringpool --quick         # every workload, quick sizes
    python -m ringpool --full          # every workload, full sizes, more repetitions
    python -m ringpool --workers 1,2,4 --json out.json --plot scaling.png
    python -m ringpool info            # version, build and interpreter details

Progress goes to stderr; the results table goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

# Imported first: it pins BLAS to one thread before anything can import numpy.
from ringpool import _bench

PROG = "python -m ringpool"
PLOT_MISSING = "matplotlib is required for --plot: pip install ringpool[plot]"
#: Set to a non-empty value other than "0" to shrink every size (used by tests).
TINY_ENV = "RINGPOOL_BENCH_TINY"
#: Repetitions of the default selection: fewer than --quick so it stays short.
DEFAULT_SELECTION_REPEATS = 3
#: Worker counts of the default selection.
DEFAULT_SELECTION_WORKERS = (1, 2)


def _csv_list(value: str) -> list[str]:
    items = [v.strip() for v in value.split(",")]
    if not value.strip() or any(not v for v in items):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {value!r}")
    return items


def parse_workers(value: str) -> list[int]:
    """Parse ``"1,2,4"`` into ``[1, 2, 4]``; argparse type for ``--workers``."""
    counts = []
    for item in value.split(","):
        item = item.strip()
        try:
            count = int(item)
        except ValueError:
            count = 0
        if count < 1:
            raise argparse.ArgumentTypeError(
                f"invalid worker count {item!r} in {value!r}: "
                "expected positive integers separated by commas, e.g. 1,2,4"
            )
        counts.append(count)
    return sorted(set(counts))


def _choices_list(kind: str, choices: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(value: str) -> list[str]:
        items = _csv_list(value)
        unknown = [v for v in items if v not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown {kind} {', '.join(map(repr, unknown))}; choose from {', '.join(choices)}"
            )
        return list(dict.fromkeys(items))  # de-duplicate, keep order

    return parse


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m ringpool``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Benchmark ringpool.Pool against concurrent.futures.ThreadPoolExecutor, "
            "multiprocessing.pool.ThreadPool and a sequential loop. "
            "Reports the median time per task over interleaved repetitions, "
            "the speed-up vs ThreadPoolExecutor (tpe time / pool time) and "
            "the speed-up vs sequential."
        ),
        epilog=f"workloads: {', '.join(_bench.WORKLOADS)}",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="run every workload at quick sizes")
    size.add_argument("--full", action="store_true",
                      help="run every workload at full sizes with more repetitions (minutes)")
    # Hidden: tiny sizes so the CLI's own tests stay fast. Also set by $RINGPOOL_BENCH_TINY.
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=parse_workers, metavar="N[,N...]",
                        help="worker counts, e.g. 1,2,4 (default: 1,2 for the short run; "
                             "powers of two up to the CPU count for --quick/--full)")
    parser.add_argument("--workloads", type=_choices_list("workload", list(_bench.WORKLOADS)),
                        metavar="NAME[,NAME...]", help="run only these workloads")
    parser.add_argument("--pools", type=_choices_list("pool", _bench.POOL_KINDS),
                        metavar="KIND[,KIND...]",
                        help=f"pools to compare (default: {','.join(_bench.POOL_KINDS)})")
    parser.add_argument("--repeats", type=_positive_int, metavar="N",
                        help="interleaved repetitions per workload (default: 3 short run, "
                             "5 --quick, 9 --full)")
    parser.add_argument("--json", metavar="FILE",
                        help="write machine info, medians, ratios and raw repetitions as JSON")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="write a scaling chart of the coarse workloads (needs matplotlib)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")

    sub = parser.add_subparsers(dest="command", metavar="{info}")
    info = sub.add_parser("info", help="print version, build and interpreter details",
                          description="Print ringpool's version and build, and the interpreter.")
    info.add_argument("--json", dest="info_json", action="store_true", help="print JSON")
    return parser


# ---------------------------------------------------------------------------
# info
# ---------------------------------------------------------------------------


def info_dict() -> dict[str, Any]:
    """Everything ``python -m ringpool info`` reports."""
    machine = _bench.machine_info()
    try:
        import ringpool

        location = getattr(ringpool, "__file__", None) or "unknown"
    except ImportError:  # pragma: no cover - we are running from the package
        location = "unknown"
    try:
        import ringpool._core as core

        core_location = getattr(core, "__file__", None) or "built in"
    except ImportError as exc:
        core_location = f"not importable ({exc})"
    return {
        "ringpool_version": machine["ringpool_version"],
        "ringpool_location": location,
        "native_core": core_location,
        "build_info": machine["ringpool_build"],
        "python_version": machine["python_version"],
        "python_implementation": machine["python_implementation"],
        "python_build": machine["python_build"],
        "python_compiler": machine["python_compiler"],
        "free_threaded_build": machine["free_threaded_build"],
        "gil_enabled": machine["gil_enabled"],
        "cpu_count": machine["cpu_count"],
        "cpu_usable": machine["cpu_usable"],
        "cpu_model": machine["cpu_model"],
        "platform": machine["platform"],
    }


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def format_info(info: dict[str, Any]) -> str:
    """Human-readable form of :func:`info_dict`."""
    lines = [
        f"ringpool {info['ringpool_version']}",
        f"  package:              {info['ringpool_location']}",
        f"  native core:          {info['native_core']}",
    ]
    build = info["build_info"]
    if build is None:
        lines.append("  build info:           not provided by ringpool._core")
    else:
        lines.append("  build info:")
        for key, value in build.items():
            lines.append(f"    {key + ':':<20}  {value}")
    lines += [
        f"python {info['python_version']} ({info['python_implementation']})",
        f"  build:                {info['python_build']}",
        f"  compiler:             {info['python_compiler']}",
        f"  free-threaded build:  {_yes_no(info['free_threaded_build'])}",
        f"  GIL enabled:          {_yes_no(info['gil_enabled'])}",
        f"CPU count:              {info['cpu_count']} ({info['cpu_usable']} usable)",
        f"CPU model:              {info['cpu_model']}",
        f"platform:               {info['platform']}",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Benchmark output
# ---------------------------------------------------------------------------


def format_machine(machine: dict[str, Any], config: dict[str, Any]) -> str:
    """The header printed above the results table."""
    if machine["free_threaded_build"]:
        threading_mode = "free-threaded build, GIL " + ("enabled" if machine["gil_enabled"] else "disabled")
    else:
        threading_mode = "GIL build (not free-threaded)"
    build = machine.get("ringpool_build")
    build_text = ", ".join(f"{k}={v}" for k, v in build.items()) if build else "no build info"
    return "\n".join([
        f"ringpool {machine['ringpool_version']} ({build_text})",
        f"machine: {machine['cpu_count']} CPUs ({machine['cpu_usable']} usable), "
        f"{machine['cpu_model']}, {machine['platform']}",
        f"python:  {machine['python_implementation']} {machine['python_version']} "
        f"({machine['python_build']}; {machine['python_compiler']}), {threading_mode}",
        f"BLAS:    {machine['blas_pinning']}",
        f"run:     {config['mode']} sizes, median of {config['repeats']} interleaved repetitions; "
        "vs TPE = ThreadPoolExecutor time / pool time, vs seq = sequential time / pool time",
    ])


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def format_table(report: _bench.Report) -> str:
    """The results table: one row per (workload, workers, pool)."""
    header = ("workload", "n", "workers", "pool", "time/task", "vs TPE", "vs seq", "note")
    rows: list[tuple[str, ...] | None] = []
    for res in report.results:
        if rows:
            rows.append(None)  # blank line between groups
        for kind, pool in res.pools.items():
            note = ""
            if "p99_s" in pool.median:
                note = f"p50 shown; p99 {_bench.format_duration(pool.median['p99_s'])}" \
                       f" ({_fmt_ratio(pool.speedup_vs_tpe.get('p99_s'))} TPE)"
            rows.append((
                res.workload, str(res.n), str(res.workers), _bench.POOL_LABELS[kind],
                _bench.format_duration(pool.per_task_s),
                _fmt_ratio(pool.speedup_vs_tpe.get("per_task_s")),
                _fmt_ratio(pool.speedup_vs_sequential.get("per_task_s")),
                note,
            ))
    widths = [len(h) for h in header]
    for row in rows:
        if row:
            widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    right = {1, 2, 4, 5, 6}  # numbers right-aligned

    def fmt(row: Sequence[str]) -> str:
        cells = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        return "  ".join(cells).rstrip()

    lines = [fmt(header), fmt(["-" * w for w in widths])]
    lines += [fmt(r) if r else "" for r in rows]
    for skip in report.skipped:
        lines.append(f"skipped {skip['workload']}: {skip['reason']}")
    return "\n".join(lines)


def _check_plot_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_plot(report: _bench.Report, path: str) -> None:
    """Scaling chart: speed-up over sequential vs workers, one line per pool.

    One panel per coarse workload, with the ideal linear speed-up dashed.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    coarse = list(dict.fromkeys(r.workload for r in report.results if r.category == "coarse"))
    fig, axes = plt.subplots(1, max(1, len(coarse)), figsize=(5 * max(1, len(coarse)), 4), squeeze=False)
    for ax, name in zip(axes[0], coarse, strict=False):  # one spare axis when empty
        series = [r for r in report.results if r.workload == name]
        workers = [r.workers for r in series]
        for kind in report.config["pools"]:
            if kind == "sequential":
                continue
            ys = [r.pools[kind].speedup_vs_sequential.get("per_task_s") for r in series]
            ax.plot(workers, [y if y is not None else float("nan") for y in ys],
                    marker="o", label=_bench.POOL_LABELS[kind])
        ax.plot(workers, workers, linestyle="--", color="grey", label="ideal")
        ax.axhline(1.0, linestyle=":", color="black", linewidth=0.8, label="sequential")
        ax.set_title(f"{name} ({series[0].n} tasks)")
        ax.set_xlabel("workers")
        ax.set_ylabel("speed-up over sequential")
        ax.set_xticks(workers)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    if not coarse:
        axes[0][0].text(0.5, 0.5, "no coarse workloads were run", ha="center", va="center")
    m = report.machine
    fig.suptitle(f"ringpool {m['ringpool_version']} - {m['cpu_count']} CPUs, "
                 f"{m['python_implementation']} {m['python_version']}"
                 + (" (free-threaded)" if m["free_threaded_build"] else ""), fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------


def _tiny_from_env() -> bool:
    return os.environ.get(TINY_ENV, "") not in ("", "0")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m ringpool``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)

    if args.command == "info":
        info = info_dict()
        print(json.dumps(info, indent=2, default=str) if args.info_json else format_info(info))
        return 0

    if args.quick or args.full:
        workloads = list(_bench.WORKLOADS)
        workers = args.workers or _bench.default_worker_counts()
    else:
        workloads = list(_bench.DEFAULT_SELECTION)
        workers = args.workers or list(DEFAULT_SELECTION_WORKERS)
    if args.workloads:
        workloads = args.workloads
    mode = "tiny" if (args.tiny or _tiny_from_env()) else ("full" if args.full else "quick")
    repeats = args.repeats
    if repeats is None:
        repeats = _bench.DEFAULT_REPEATS[mode] if (args.quick or args.full or mode == "tiny") \
            else DEFAULT_SELECTION_REPEATS

    # Fail before minutes of benchmarking, not after.
    for option, path in (("--json", args.json), ("--plot", args.plot)):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            parser.error(f"{option}: directory of {path!r} does not exist")
    if args.plot:
        if not _check_plot_available():
            print(PLOT_MISSING, file=sys.stderr)
            return 2
        if not any(_bench.WORKLOADS[w].category == "coarse" for w in workloads):
            parser.error("--plot charts the coarse workloads, but none is selected")
        if args.pools and "sequential" not in args.pools:
            parser.error("--plot charts the speed-up over sequential: keep 'sequential' in --pools")

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    report = _bench.run_benchmarks(
        workloads=workloads,
        workers=workers,
        pools=args.pools or _bench.POOL_KINDS,
        mode=mode,
        repeats=repeats,
        progress=None if args.quiet else progress,
    )

    print(format_machine(report.machine, report.config))
    print()
    print(format_table(report))
    sys.stdout.flush()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report.to_json(), f, indent=2, default=str)
            f.write("\n")
        if not args.quiet:
            progress(f"wrote {args.json}")
    if args.plot:
        write_plot(report, args.plot)
        if not args.quiet:
            progress(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
