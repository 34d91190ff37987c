# Type stub for the compiled binding (_core.pyx). Keep in step with it:
# tests/test_typing.py runs mypy's stubtest against the built module, so a
# public name or signature added there without a stub here fails the suite.
# Names that Pool (pool.py) uses are typed here even when private, so that
# pool.py itself type-checks against this stub.

import concurrent.futures
import logging
from collections.abc import Callable
from typing import Any, Generic, Literal, ParamSpec, TypedDict, TypeVar, final, type_check_only

from typing_extensions import disjoint_base

_T = TypeVar("_T")
_P = ParamSpec("_P")

LOGGER: logging.Logger

ON_FULL_BLOCK: Literal[0]
ON_FULL_RAISE: Literal[1]
ON_FULL_CALLER_RUNS: Literal[2]

SHUTDOWN_MSG: str

# Bucket i of every latency histogram holds [LOWER[i], UPPER[i]) nanoseconds.
HIST_BUCKET_LOWER_NS: tuple[int, ...]
HIST_BUCKET_UPPER_NS: tuple[int, ...]

class Future(concurrent.futures.Future[_T], Generic[_T]):
    """A cheaper ``concurrent.futures.Future`` (same states, same helpers)."""

    def __init__(self) -> None: ...
    def cancel(self) -> bool: ...
    def cancelled(self) -> bool: ...
    def running(self) -> bool: ...
    def done(self) -> bool: ...
    def result(self, timeout: float | None = None) -> _T: ...
    def exception(self, timeout: float | None = None) -> BaseException | None: ...
    def add_done_callback(self, fn: Callable[[concurrent.futures.Future[_T]], object]) -> None: ...
    def set_running_or_notify_cancel(self) -> bool: ...
    def set_result(self, result: _T) -> None: ...
    def set_exception(self, exception: BaseException | None) -> None: ...

class TaskInfo(tuple[Any, ...]):
    """What ``before_task``/``after_task`` hooks see of a task."""

    _fields: tuple[str, ...]
    def __new__(
        cls,
        pool: str,
        worker: str,
        task: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> TaskInfo: ...
    @property
    def pool(self) -> str: ...
    @property
    def worker(self) -> str: ...
    @property
    def task(self) -> str: ...
    @property
    def fn(self) -> Callable[..., Any]: ...
    @property
    def args(self) -> tuple[Any, ...]: ...
    @property
    def kwargs(self) -> dict[str, Any]: ...

class TaskOutcome(tuple[Any, ...]):
    """How a task ended, for ``after_task``."""

    _fields: tuple[str, ...]
    def __new__(cls, ok: bool, result: Any, exception: BaseException | None, duration_s: float) -> TaskOutcome: ...
    @property
    def ok(self) -> bool: ...
    @property
    def result(self) -> Any: ...
    @property
    def exception(self) -> BaseException | None: ...
    @property
    def duration_s(self) -> float: ...

@disjoint_base  # a C-level layout: it cannot share a subclass with another one
class NativePool:
    """Base of ``ringpool.Pool``: the engine handle and the submit path."""

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]: ...
    def try_submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]: ...

    # Used by ringpool.pool.Pool only.
    def _start(
        self,
        *,
        min_workers: int,
        max_workers: int,
        queue_size: int,
        on_full: int,
        submit_timeout: float,
        keep_alive: float,
        prefix: str,
        name: str,
        initializer: Callable[..., object] | None,
        initargs: tuple[Any, ...],
        propagate_context: bool,
        stack_size: int = 0,
        spin: float = 5e-05,
        log_unretrieved: bool = True,
        metrics: bool = True,
        before_task: Callable[[TaskInfo], object] | None = None,
        after_task: Callable[[TaskInfo, TaskOutcome], object] | None = None,
        failure_level: int = 10,
    ) -> None: ...
    def _schedule(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        on_full: int,
        submit_timeout: float,
    ) -> Future[Any]: ...
    def _shutdown_native(self, discard: bool) -> None: ...
    def _join_native(self, timeout: float | None = None) -> bool: ...
    def _in_own_worker(self) -> bool: ...
    def _wait_busy(self, timeout: float | None = None) -> bool: ...
    def _resize_native(self, min_workers: int, max_workers: int) -> None: ...
    def _after_fork_in_child(self) -> None: ...
    def _stats_native(self) -> dict[str, Any]: ...
    def _latency_native(self) -> tuple[dict[str, Any], dict[str, Any]]: ...
    def _on_full_code(self) -> int: ...
    def _submit_timeout_default(self) -> float: ...
    def _shutdown_started(self) -> bool: ...
    @property
    def _broken(self) -> str | None: ...

@type_check_only
class _BuildInfo(TypedDict):
    compiler: str
    cython_version: str
    build_type: str
    sanitizer: str | None
    c_asserts: bool
    atomics_lock_free: bool
    cpu_count: int

def live_workers() -> int:
    """Number of ringpool worker threads alive in this process (all pools)."""

def wait_for_workers(timeout: float | None = None) -> bool:
    """Block (GIL released) until no ringpool worker thread is alive."""

def build_info() -> _BuildInfo:
    """How this extension was built."""

# Private helpers used by pool.py and the tests.
def engine_threads() -> int: ...
def wait_for_engine_threads(timeout: float | None = None) -> bool: ...

@final
class _MapIterator:
    def __new__(cls, window: Any, end_time: float | None) -> _MapIterator: ...
    def __iter__(self) -> _MapIterator: ...
    def __next__(self) -> Any: ...
    def close(self) -> None: ...

def _map_chunk(fn: Callable[..., Any], items: list[Any], star: bool) -> tuple[list[Any], BaseException | None, int]: ...
def _set_exiting(value: bool) -> None: ...
def _after_fork_child() -> None: ...
def _hist_bucket(ns: int) -> int: ...
