"""Tests of the ``python -m ringpool`` command line.

Each test runs the CLI in a subprocess with a hard timeout. Benchmark runs use
the hidden tiny sizes (``RINGPOOL_BENCH_TINY=1``) so each finishes in seconds;
these tests check the plumbing, never the performance figures.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

#: Upper bound for one CLI run; tiny runs take a few seconds on 2 cores.
TIMEOUT_S = 60
POOLS = {"ringpool", "tpe", "mp_threadpool", "sequential"}


def run_cli(*args: str, tiny: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ringpool ARGS`` and return the finished process."""
    env = dict(os.environ)
    if tiny:
        env["RINGPOOL_BENCH_TINY"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "ringpool", *args],
        capture_output=True, text=True, timeout=TIMEOUT_S, env=env, cwd=cwd,
    )


@pytest.fixture(scope="module")
def all_workloads() -> set[str]:
    """Every workload name, read in a subprocess.

    Importing ringpool._bench here would pin BLAS threads for the rest of the
    test session, so ask a child process instead.
    """
    out = subprocess.run(
        [sys.executable, "-c", "from ringpool import _bench; print(' '.join(_bench.WORKLOADS))"],
        capture_output=True, text=True, timeout=TIMEOUT_S, check=True,
    )
    names = set(out.stdout.split())
    assert {"overhead", "map", "map_chunked", "latency", "sha256_1MiB", "sha256_4KiB"} <= names
    return names


def test_quick_json_has_every_workload(tmp_path: Path, all_workloads: set[str]) -> None:
    out = tmp_path / "out.json"
    proc = run_cli("--quick", "--workers", "1,2", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())

    machine = data["machine"]
    for key in ("cpu_count", "platform", "python_version", "python_implementation",
                "free_threaded_build", "gil_enabled", "ringpool_version"):
        assert key in machine, key
    config = data["config"]
    assert config["workers"] == [1, 2]
    assert config["interleaved"] is True
    repeats = config["repeats"]

    ran = {r["workload"] for r in data["results"]}
    skipped = {s["workload"] for s in data["skipped"]}
    assert ran | skipped == all_workloads
    assert not ran & skipped
    for s in data["skipped"]:
        assert s["reason"]

    for result in data["results"]:
        assert result["workers"] in (1, 2)
        assert result["n"] > 0
        pools = result["pools"]
        assert set(pools) == POOLS
        for pool in pools.values():
            per_task = pool["median"]["per_task_s"]
            assert per_task > 0
            assert len(pool["raw"]["per_task_s"]) == repeats
            # The ratios are derived from the medians, never entered by hand.
            tpe = pools["tpe"]["median"]["per_task_s"]
            seq = pools["sequential"]["median"]["per_task_s"]
            assert math.isclose(pool["speedup_vs_tpe"]["per_task_s"], tpe / per_task)
            assert math.isclose(pool["speedup_vs_sequential"]["per_task_s"], seq / per_task)
        if result["workload"] == "latency":
            assert {"p50_s", "p99_s"} <= set(pools["ringpool"]["median"])
    # Every workload ran at both worker counts.
    assert len(data["results"]) == 2 * len(ran)


def test_default_run_prints_table_and_progress() -> None:
    proc = run_cli("--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert "[1/" in proc.stderr  # progress goes to stderr as it runs
    out = proc.stdout
    for text in ("workload", "workers", "time/task", "vs TPE", "vs seq",
                 "ringpool.Pool", "ThreadPoolExecutor", "sequential",
                 "overhead", "latency", "sha256_1MiB", "CPUs", "python:"):
        assert text in out, text
    assert "free-threaded" in out


def test_quiet_run_prints_no_progress() -> None:
    proc = run_cli("-q", "--workers", "1", "--workloads", "overhead", "--pools", "ringpool,tpe")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "overhead" in proc.stdout


@pytest.mark.skipif(importlib.util.find_spec("numpy") is None, reason="numpy not installed")
def test_numpy_workloads_pin_blas_to_one_thread(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    proc = run_cli("-q", "--workers", "1", "--workloads", "matmul_16", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert [r["workload"] for r in data["results"]] == ["matmul_16"]
    assert data["machine"]["blas_pinning"].startswith("env ("), data["machine"]["blas_pinning"]


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="matplotlib not installed")
def test_plot_writes_png(tmp_path: Path) -> None:
    png = tmp_path / "scaling.png"
    proc = run_cli("-q", "--workers", "1,2", "--plot", str(png))
    assert proc.returncode == 0, proc.stderr
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_plot_without_matplotlib_exits_2(tmp_path: Path) -> None:
    # A None entry in sys.modules makes `import matplotlib` raise ImportError.
    code = (
        "import runpy, sys; sys.modules['matplotlib'] = None; "
        "sys.argv = ['ringpool', '--plot', 'out.png']; "
        "runpy.run_module('ringpool', run_name='__main__', alter_sys=True)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=TIMEOUT_S, cwd=tmp_path)
    assert proc.returncode == 2
    assert "matplotlib is required for --plot: pip install ringpool[plot]" in proc.stderr
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "invalid worker count '0'"),
        (["--workers", "x"], "invalid worker count 'x'"),
        (["--workers", "1,-2"], "invalid worker count '-2'"),
        (["--workers", ""], "invalid worker count ''"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["--quick", "--full"], "not allowed with argument"),
        (["--workloads", "nope"], "unknown workload 'nope'"),
        (["--pools", "ringpool,nope"], "unknown pool 'nope'"),
        (["--repeats", "0"], "expected a positive integer"),
        (["--workloads", "overhead", "--plot", "x.png"], "--plot charts the coarse workloads"),
        (["info", "--quick"], "unrecognized arguments: --quick"),
        (["--json", "no/such/dir/out.json"], "--json: directory of 'no/such/dir/out.json' does not exist"),
    ],
)
def test_bad_options_are_usage_errors(args: list[str], message: str, tmp_path: Path) -> None:
    if "--plot" in args and importlib.util.find_spec("matplotlib") is None:
        pytest.skip("the matplotlib check comes first")
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "usage:" in proc.stderr
    assert message in proc.stderr
    assert proc.stdout == ""


def test_help_hides_tiny() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0
    assert "--quick" in proc.stdout and "--workers" in proc.stdout and "info" in proc.stdout
    assert "--tiny" not in proc.stdout


def test_info() -> None:
    proc = run_cli("info")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("ringpool ")
    for text in ("build info:", "python ", "free-threaded build:", "GIL enabled:", "CPU count:", "platform:"):
        assert text in out, text
    assert f"CPU count:              {os.cpu_count()}" in out


def test_info_json() -> None:
    proc = run_cli("info", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["cpu_count"] == os.cpu_count()
    assert info["python_version"].startswith(".".join(map(str, sys.version_info[:2])))
    assert isinstance(info["free_threaded_build"], bool)
    assert isinstance(info["gil_enabled"], bool)
    assert info["ringpool_version"]
    # build_info is optional in the core; when present it is a mapping.
    assert info["build_info"] is None or isinstance(info["build_info"], dict)
