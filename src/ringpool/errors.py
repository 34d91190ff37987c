"""Exceptions raised by ringpool.

Each one subclasses the standard exception that callers of
``concurrent.futures`` already catch for the same situation, so code written
for ``ThreadPoolExecutor`` keeps working.
"""

from __future__ import annotations

import concurrent.futures

__all__ = [
    "RingpoolError",
    "PoolClosed",
    "PoolOverloaded",
    "BrokenPool",
    "TaskTimeout",
    "TaskCancelled",
    "NativeTaskError",
]


class RingpoolError(Exception):
    """Base class of every ringpool-specific exception."""


class PoolClosed(RingpoolError, RuntimeError):
    """A task was submitted after ``shutdown()`` (``ThreadPoolExecutor`` raises
    a plain ``RuntimeError`` with the same message)."""


class PoolOverloaded(RingpoolError, RuntimeError):
    """A bounded queue was full and the overload policy refused the task.

    Attributes: ``pool`` (the pool's name), ``queue_size`` and ``waited``
    (seconds the submitter waited for room before giving up).
    """

    def __init__(self, pool: str, queue_size: int, waited: float) -> None:
        self.pool = pool
        self.queue_size = queue_size
        self.waited = waited
        super().__init__(
            f"pool {pool!r} is overloaded: its queue of {queue_size} tasks is full "
            f"(waited {waited:.3f} s)"
        )

    def __reduce__(self):  # keep it picklable despite the custom __init__
        return (type(self), (self.pool, self.queue_size, self.waited))


class BrokenPool(RingpoolError, concurrent.futures.BrokenExecutor):
    """The pool can no longer run tasks (an initializer failed, or the pool
    was inherited across ``fork()``)."""


# concurrent.futures.TimeoutError is the builtin TimeoutError from Python
# 3.11 on; on 3.10 it is its own class, and callers catch either.
_TIMEOUT_BASES: tuple[type[BaseException], ...] = (
    (TimeoutError,)
    if concurrent.futures.TimeoutError is TimeoutError
    else (TimeoutError, concurrent.futures.TimeoutError)
)


class TaskTimeout(RingpoolError, *_TIMEOUT_BASES):  # type: ignore[misc]
    """A task's deadline passed before it finished (a ``TimeoutError``, and a
    ``concurrent.futures.TimeoutError`` on Python 3.10 too)."""


class TaskCancelled(RingpoolError, concurrent.futures.CancelledError):
    """Raised inside a task by ``TaskContext.check()`` once it is cancelled."""


class NativeTaskError(RingpoolError, RuntimeError):
    """A native task returned a non-zero code (``.code``)."""

    def __init__(self, code: int, message: str | None = None) -> None:
        self.code = code
        super().__init__(message or f"native task failed with code {code}")

    def __reduce__(self):
        return (type(self), (self.code, self.args[0] if self.args else None))
