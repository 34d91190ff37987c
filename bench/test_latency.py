"""Single-task round trip: submit -> result, one task in flight at a time."""

import pytest

pytest.importorskip("pytest_benchmark")


def test_round_trip(run_workload, pool_kind, workers):
    run_workload("latency")
