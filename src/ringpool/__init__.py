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

from ringpool._core import NativeBatch, TaskContext, TaskInfo, TaskOutcome, current_task
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


def get_include() -> str:
    """The directory of ``ringpool.h``, the native task ABI (for C kernels)."""
    import os

    return os.path.join(os.path.dirname(__file__), "include")


def get_include_dirs() -> list[str]:
    """Include directories for Cython code that does ``from ringpool cimport``
    (ringpool.h and the engine headers the declarations refer to)."""
    import os

    inc = get_include()
    if os.path.exists(os.path.join(inc, "rp_pool.h")):  # an installed wheel
        return [inc]
    csrc = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "csrc"))
    return [inc, csrc]  # a source checkout (editable install)

__all__ = [
    "Pool",
    "Future",
    "PoolStats",
    "LatencyHistogram",
    "TaskInfo",
    "TaskOutcome",
    "TaskContext",
    "NativeBatch",
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
    "get_include",
    "get_include_dirs",
    "__version__",
]
