"""ringpool: a concurrent.futures Executor whose hot path is native.

    >>> import ringpool
    >>> with ringpool.Pool(4) as pool:
    ...     pool.submit(pow, 2, 10).result()
    1024
"""

import sys as _sys

# Whether threading was imported before ringpool (ringpool's own imports pull
# it in): pool.py uses it to tell an import inside an atexit handler, where
# threading's shutdown has already passed unseen, from a normal import.
_THREADING_PREIMPORTED = "threading" in _sys.modules

from ringpool._core import TaskContext, TaskInfo, TaskOutcome, current_task
from ringpool.errors import (
    BrokenPool,
    NativeTaskError,
    PoolClosed,
    PoolOverloaded,
    RingpoolError,
    TaskCancelled,
    TaskTimeout,
)
from ringpool.pool import Future, Pool
from ringpool.scaling import OnDemand, QueueDepth, ScalingPolicy, ScalingSnapshot, Throughput
from ringpool.stats import LatencyHistogram, PoolStats

__version__ = "0.1.0"

__all__ = [
    "Pool",
    "Future",
    "PoolStats",
    "LatencyHistogram",
    "TaskInfo",
    "TaskOutcome",
    "TaskContext",
    "current_task",
    "RingpoolError",
    "PoolClosed",
    "PoolOverloaded",
    "BrokenPool",
    "TaskTimeout",
    "TaskCancelled",
    "NativeTaskError",
    "ScalingPolicy",
    "ScalingSnapshot",
    "OnDemand",
    "QueueDepth",
    "Throughput",
    "__version__",
]
