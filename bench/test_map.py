"""pool.map of a tiny task (x * 2), with chunksize=1 and chunksize=256."""

import pytest

pytest.importorskip("pytest_benchmark")


@pytest.mark.parametrize("workload", ["map", "map_chunked"])
def test_map(run_workload, workload, pool_kind, workers):
    run_workload(workload)
