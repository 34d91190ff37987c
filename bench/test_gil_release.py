"""GIL-releasing work (hashlib, zlib, numpy), coarse and fine-grained tasks.

The coarse tasks show how a pool scales with workers; the fine-grained ones
show where dispatch overhead eats the gain.
"""

import pytest

from ringpool import _bench

pytest.importorskip("pytest_benchmark")

COARSE = [w.name for w in _bench.WORKLOADS.values() if w.category == "coarse"]
FINE = [w.name for w in _bench.WORKLOADS.values() if w.category == "fine"]


@pytest.mark.parametrize("workload", COARSE)
def test_coarse(run_workload, workload, pool_kind, workers):
    run_workload(workload)


@pytest.mark.parametrize("workload", FINE)
def test_fine(run_workload, workload, pool_kind, workers):
    run_workload(workload)
