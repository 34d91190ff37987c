"""Dispatch overhead: submit n no-op tasks, then wait for every result."""

import pytest

pytest.importorskip("pytest_benchmark")


def test_overhead(run_workload, pool_kind, workers):
    run_workload("overhead")
