# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: freethreading_compatible=True
"""The binding: the only place where the C engine meets Python.

It owns GIL transitions (workers keep one thread state for life and hold the
GIL "stickily" across consecutive Python tasks, dropping it when the queue runs
dry), reference ownership of tasks handed to C, and the mapping of engine
status codes to exceptions. Every function the engine calls back is noexcept:
no Python exception ever crosses into C.
"""

cimport cython
from cpython.ref cimport PyObject, Py_INCREF, Py_DECREF
from cpython.pystate cimport PyGILState_STATE, PyThreadState
from libc.stdlib cimport calloc, free
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memset

from ringpool._rp cimport *

import concurrent.futures as _cf
import concurrent.futures._base as _cfb
import contextvars as _contextvars
import logging as _logging
import sys as _sys
import threading as _threading
import time as _time
from _thread import allocate_lock as _allocate_lock

from ringpool.errors import BrokenPool, PoolClosed, PoolOverloaded, TaskCancelled, TaskTimeout

cdef extern from "Python.h":
    # Declared nogil: these are the calls that take and drop the GIL.
    PyThreadState *PyEval_SaveThread() nogil
    void PyEval_RestoreThread(PyThreadState *) nogil
    PyGILState_STATE PyGILState_Ensure() nogil
    void PyGILState_Release(PyGILState_STATE) nogil

cdef extern from "rp_pycompat.h":
    int rp_py_is_finalizing() nogil
    void rp_decref(void *o) nogil

cdef extern from *:
    """
    /* The _PyTask running on this thread (borrowed), for current_task(). */
    static RP_THREAD_LOCAL PyObject *rp_current_task = NULL;
    static inline PyObject *rp_swap_current(PyObject *t) {
        PyObject *outer = rp_current_task;
        rp_current_task = t;
        return outer;
    }
    static inline PyObject *rp_get_current(void) { return rp_current_task; }
    """
    PyObject *rp_swap_current(PyObject *t) nogil
    PyObject *rp_get_current() nogil

cdef extern from "Python.h":
    void PyObject_GC_Track(object o)
    void PyObject_GC_UnTrack(object o)
    int PyObject_GC_IsTracked(object o)
    int PyObject_IS_GC(object o)

LOGGER = _logging.getLogger("ringpool")


cdef inline void _gc_track(object o) noexcept:
    if not PyObject_GC_IsTracked(o):
        PyObject_GC_Track(o)

# Future states: the very strings concurrent.futures uses, so its wait(),
# as_completed() and asyncio.wrap_future() read our futures unchanged.
cdef object PENDING = _cfb.PENDING
cdef object RUNNING = _cfb.RUNNING
cdef object CANCELLED = _cfb.CANCELLED
cdef object CANCELLED_AND_NOTIFIED = _cfb.CANCELLED_AND_NOTIFIED
cdef object FINISHED = _cfb.FINISHED
cdef object _copy_context = _contextvars.copy_context
cdef object _InvalidStateError = _cfb.InvalidStateError
cdef object _CancelledError = _cfb.CancelledError
cdef object _TimeoutError = _cfb.TimeoutError

ON_FULL_BLOCK = 0
ON_FULL_RAISE = 1
ON_FULL_CALLER_RUNS = 2

SHUTDOWN_MSG = "cannot schedule new futures after shutdown"


# --------------------------------------------------------------------------
# Future
# --------------------------------------------------------------------------

class Future(_cf.Future):
    """A ``concurrent.futures.Future`` that is cheaper to create and complete.

    The condition variable, waiter list and callback list that the stdlib
    builds for every future are created here only when someone waits, uses
    ``concurrent.futures.wait``/``as_completed``, or adds a callback. All state
    changes happen under one per-future lock, which the lazily built
    ``_condition`` wraps, so stdlib helpers that take ``future._condition``
    see a consistent future. Slots keep each instance small and its
    attributes out of a per-instance dict.
    """

    __slots__ = ("_lock", "_state", "_result", "_exception", "_task", "_cond",
                 "_waiters_list", "_callbacks", "_guard")

    def __init__(self):
        # The lock is created on first need (_get_lock): most futures are
        # completed and read without any other thread ever waiting, and a lock
        # per future is an allocation the cycle collector must scan. _finish
        # explains why completing without it is safe.
        self._lock = None
        self._state = PENDING
        self._result = None
        self._exception = None
        self._task = None      # the engine task while queued or running (cancel, result polling)
        self._cond = None
        self._waiters_list = None
        self._callbacks = None
        self._guard = None     # an _ExcGuard while a failure is unretrieved

    def _get_lock(self):
        # Plain (non-reentrant) lock. The check-and-publish below runs no
        # bytecode, so under the GIL no other thread can interleave.
        lock = self._lock
        if lock is None:
            new = _allocate_lock()
            with cython.critical_section(self):  # free-threaded builds: publish once
                lock = self._lock
                if lock is None:
                    lock = self._lock = new
        return lock

    # -- lazily built stdlib internals ------------------------------------
    # No lock here: the stdlib reads _waiters while holding this future's
    # lock (a non-reentrant one), and these bodies contain no call that can
    # switch threads between the check and the store, so under the GIL the
    # check-and-publish is atomic (the free-threading audit notes it).
    @property
    def _condition(self):
        # For the stdlib: concurrent.futures.wait()/as_completed() only ever
        # acquire and release `future._condition` (_AcquireFutures) around
        # reading the state and installing waiters, so this future's lock is
        # all they need, and waiting on many futures builds no Condition
        # object per future. Every method that waits or notifies on a
        # condition is overridden here and uses _wait_cond().
        return self._get_lock()

    def _wait_cond(self):
        """The condition variable result()/exception() wait on (created on
        the first wait; it wraps this future's lock)."""
        cond = self._cond
        if cond is None:
            new = _threading.Condition(self._get_lock())  # may switch threads: before the check
            with cython.critical_section(self):
                cond = self._cond
                if cond is None:
                    _gc_track(self)
                    cond = self._cond = new
        return cond

    @property
    def _waiters(self):
        waiters = self._waiters_list
        if waiters is None:
            with cython.critical_section(self):
                waiters = self._waiters_list
                if waiters is None:
                    _gc_track(self)
                    waiters = self._waiters_list = []
        return waiters

    @property
    def _done_callbacks(self):
        cbs = self._callbacks
        if cbs is None:
            with cython.critical_section(self):
                cbs = self._callbacks
                if cbs is None:
                    _gc_track(self)
                    cbs = self._callbacks = []
        return cbs

    def __repr__(self):
        with self._get_lock():
            state = self._state
            if state == FINISHED:
                if self._exception is not None:
                    return '<%s at %#x state=%s raised %s>' % (
                        type(self).__name__, id(self), _cfb._STATE_TO_DESCRIPTION_MAP[state],
                        type(self._exception).__name__)
                return '<%s at %#x state=%s returned %s>' % (
                    type(self).__name__, id(self), _cfb._STATE_TO_DESCRIPTION_MAP[state],
                    type(self._result).__name__)
            return '<%s at %#x state=%s>' % (
                type(self).__name__, id(self), _cfb._STATE_TO_DESCRIPTION_MAP[state])

    # -- queries ----------------------------------------------------------
    def cancelled(self):
        return self._state in (CANCELLED, CANCELLED_AND_NOTIFIED)

    def running(self):
        state = self._state
        if state == PENDING:
            # A native task never takes the GIL to say it started: ask the engine.
            task = self._task
            return task is not None and (<_PyTask>task).call.hdr.state == RP_TASK_RUNNING
        return state == RUNNING

    def done(self):
        return self._state in (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED)

    def _get_result(self):
        if self._exception is not None:
            if self._guard is not None:
                (<_ExcGuard>self._guard).retrieved = True
            try:
                raise self._exception
            finally:
                # Break the cycle exception -> traceback -> frame -> self.
                self = None
        return self._result

    def result(self, timeout=None):
        state = self._state
        if state == FINISHED:  # no lock: FINISHED is terminal
            return self._get_result()
        if state == CANCELLED or state == CANCELLED_AND_NOTIFIED:
            raise _CancelledError()
        task = self._task
        if task is not None and (timeout is None or timeout > 0):
            # Poll briefly with the GIL released: a short task is usually done
            # within microseconds, and then no sleep/wake-up pair is paid.
            _spin_until_done(<_PyTask>task, RESULT_SPIN_NS)
            if self._state == FINISHED:
                return self._get_result()
        cond = self._wait_cond()
        with cond:
            state = self._state
            if state == CANCELLED or state == CANCELLED_AND_NOTIFIED:
                raise _CancelledError()
            if state != FINISHED:
                cond.wait(timeout)  # releases the GIL while it waits
                state = self._state
                if state == CANCELLED or state == CANCELLED_AND_NOTIFIED:
                    raise _CancelledError()
                if state != FINISHED:
                    raise _TimeoutError()
        return self._get_result()

    def exception(self, timeout=None):
        state = self._state
        if state == FINISHED:
            if self._guard is not None:
                (<_ExcGuard>self._guard).retrieved = True
            return self._exception
        if state == CANCELLED or state == CANCELLED_AND_NOTIFIED:
            raise _CancelledError()
        cond = self._wait_cond()
        with cond:
            state = self._state
            if state == CANCELLED or state == CANCELLED_AND_NOTIFIED:
                raise _CancelledError()
            if state != FINISHED:
                cond.wait(timeout)
                state = self._state
                if state == CANCELLED or state == CANCELLED_AND_NOTIFIED:
                    raise _CancelledError()
                if state != FINISHED:
                    raise _TimeoutError()
            if self._guard is not None:
                (<_ExcGuard>self._guard).retrieved = True
            return self._exception

    # -- transitions --------------------------------------------------------
    def cancel(self):
        """Cancel the task if it has not started; ``False`` once it runs.

        A queued task is cancelled in O(1): the engine flips its state and the
        worker that later pops it drops it without calling it.
        """
        with self._get_lock():
            state = self._state
            if state == RUNNING or state == FINISHED:
                return False
            if state == CANCELLED or state == CANCELLED_AND_NOTIFIED:
                return True
            task = self._task
            if task is not None and not (<_PyTask>task)._try_cancel():
                return False  # a worker has just taken it: it is running
            self._state = CANCELLED
            self._notify_locked()
        self._invoke_callbacks()
        return True

    def request_cancel(self):
        """Ask the task to stop, whether or not it has started.

        A queued task is cancelled as by ``cancel()``. A running one cannot be
        interrupted (Python threads cannot be killed): its cancellation flag
        is set instead, which the task sees through
        ``ringpool.current_task().cancelled`` / ``.check()`` (or
        ``RP_CANCELLED(ctx)`` in a native task), and it may stop early. The
        future still completes with whatever the task then returns or raises.
        Returns False only when the task has already finished.
        """
        if self.cancel():
            return True
        task = self._task
        if task is None or self._state == FINISHED:
            return False
        rp_task_request_cancel(&(<_PyTask>task).call.hdr)
        return True

    def set_running_or_notify_cancel(self):
        with self._get_lock():
            state = self._state
            if state == CANCELLED:
                self._state = CANCELLED_AND_NOTIFIED
                if self._waiters_list:
                    for waiter in self._waiters_list:
                        waiter.add_cancelled(self)
                return False
            if state == PENDING:
                self._state = RUNNING
                return True
            LOGGER.critical('Future %s in unexpected state: %s', id(self), state)
            raise RuntimeError('Future in unexpected state')

    def set_result(self, result):
        self._finish(result, None)

    def set_exception(self, exception):
        self._finish(None, exception)

    def _finish(self, result, exception):
        lock = self._lock
        if lock is None:
            # No thread has ever needed this future's lock, so none waits on
            # it, cancels it or has added callbacks (each of those creates the
            # lock first, then checks the state). Publish the outcome, then
            # look for a lock again: one created after that check sees
            # FINISHED; one created before it is used below to notify.
            with cython.critical_section(self):  # orders the publish against _get_lock
                if self._state != PENDING and self._state != RUNNING:
                    raise _InvalidStateError('{}: {!r}'.format(self._state, self))
                if exception is not None or (PyObject_IS_GC(result) and PyObject_GC_IsTracked(result)):
                    _gc_track(self)  # the result could now close a reference cycle
                self._result = result
                self._exception = exception
                self._state = FINISHED
                lock = self._lock
            if lock is None:
                return
            with lock:
                self._notify_finished_locked(exception)
        else:
            with lock:
                state = self._state
                if state == CANCELLED or state == CANCELLED_AND_NOTIFIED or state == FINISHED:
                    raise _InvalidStateError('{}: {!r}'.format(state, self))
                if exception is not None or (PyObject_IS_GC(result) and PyObject_GC_IsTracked(result)):
                    _gc_track(self)
                self._result = result
                self._exception = exception
                self._state = FINISHED
                self._notify_finished_locked(exception)
        if self._callbacks:
            self._invoke_callbacks()

    def _notify_finished_locked(self, exception):
        if exception is not None and self._callbacks:
            # A done-callback sees the failure: it counts as retrieved.
            if self._guard is not None:
                (<_ExcGuard>self._guard).retrieved = True
        if self._waiters_list:
            if exception is None:
                for waiter in self._waiters_list:
                    waiter.add_result(self)
            else:
                for waiter in self._waiters_list:
                    waiter.add_exception(self)
        if self._cond is not None:
            self._cond.notify_all()

    def _notify_locked(self):
        self._task = None
        if self._cond is not None:
            self._cond.notify_all()

    def add_done_callback(self, fn):
        if self._guard is not None:
            (<_ExcGuard>self._guard).retrieved = True
        with self._get_lock():
            state = self._state
            if state != CANCELLED and state != CANCELLED_AND_NOTIFIED and state != FINISHED:
                if self._callbacks is None:
                    _gc_track(self)
                    self._callbacks = []
                self._callbacks.append(fn)
                return
        try:
            fn(self)
        except Exception:
            LOGGER.exception('exception calling callback for %r', self)

    def _invoke_callbacks(self):
        with self._get_lock():
            callbacks = self._callbacks
            self._callbacks = None
        if callbacks:
            for callback in callbacks:
                try:
                    callback(self)
                except Exception:
                    # Logged, never lost, never fatal to the worker.
                    LOGGER.exception('exception calling callback for %r', self)


@cython.final
cdef class _ExcGuard:
    """Logs a task's exception if its future dies with nobody having asked
    for it (asyncio's "exception was never retrieved"), so fire-and-forget
    failures are not silent. One is made only for failed tasks."""

    cdef public bint retrieved
    cdef object exc
    cdef object task_name
    cdef object pool_name

    def __del__(self):
        if self.retrieved or self.exc is None:
            return
        self.retrieved = True
        try:
            exc = self.exc
            LOGGER.error("ringpool: exception in task %s was never retrieved (pool %s)",
                         self.task_name, self.pool_name,
                         exc_info=(type(exc), exc, exc.__traceback__),
                         extra={"pool": self.pool_name, "task": self.task_name})
        except BaseException:
            pass
        self.exc = None


cdef str _task_name(fn):
    try:
        return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    except BaseException:
        return "<task>"


class TaskInfo(tuple):
    """What before_task/after_task hooks see of a task (a named tuple):
    pool name, worker thread name, task name, and fn/args/kwargs."""

    __slots__ = ()
    _fields = ("pool", "worker", "task", "fn", "args", "kwargs")

    def __new__(cls, pool, worker, task, fn, args, kwargs):
        return tuple.__new__(cls, (pool, worker, task, fn, args, kwargs))

    pool = property(lambda self: self[0])
    worker = property(lambda self: self[1])
    task = property(lambda self: self[2])
    fn = property(lambda self: self[3])
    args = property(lambda self: self[4])
    kwargs = property(lambda self: self[5])

    def __repr__(self):
        return "TaskInfo(pool=%r, worker=%r, task=%r)" % (self[0], self[1], self[2])


class TaskOutcome(tuple):
    """How a task ended, for after_task: ok, result, exception, duration_s."""

    __slots__ = ()
    _fields = ("ok", "result", "exception", "duration_s")

    def __new__(cls, ok, result, exception, duration_s):
        return tuple.__new__(cls, (ok, result, exception, duration_s))

    ok = property(lambda self: self[0])
    result = property(lambda self: self[1])
    exception = property(lambda self: self[2])
    duration_s = property(lambda self: self[3])

    def __repr__(self):
        return "TaskOutcome(ok=%r, exception=%r, duration_s=%.6f)" % (self[0], self[2], self[3])


# --------------------------------------------------------------------------
# Worker threads as Python sees them
# --------------------------------------------------------------------------

cdef void _forget_thread(thread) except *:
    """Take a _WorkerThread out of threading's registry as its native
    thread exits (threading.enumerate() must not keep it)."""
    with _threading._active_limbo_lock:
        if _threading._active.get(thread.ident) is thread:
            del _threading._active[thread.ident]


class _WorkerThread(_threading._DummyThread):
    """What ``threading.current_thread()`` returns on a ringpool worker.

    Registered in ``threading._active`` like any foreign thread, but named
    after the pool instead of ``Dummy-N``; unregistered when the worker exits.
    """

    def __init__(self, name):
        super().__init__()
        self.name = name

    def __repr__(self):
        return "<ringpool worker %r ident=%s>" % (self.name, self.ident)


# Live worker threads across all pools are counted by the engine
# (rp_live_threads), from before each thread starts: the exit hook waits for
# them, since no native worker may still run Python once the interpreter
# finalizes.

def live_workers():
    """Number of ringpool worker threads alive in this process (all pools),
    counted from before each thread starts until it has left the engine."""
    return rp_live_threads()


def wait_for_workers(timeout=None):
    """Block (GIL released) until no ringpool worker thread is alive;
    False on timeout."""
    return wait_for_engine_threads(timeout)


def engine_threads():
    """Worker threads of all pools that exist at the C level (including ones
    not yet running Python)."""
    return rp_live_threads()


def wait_for_engine_threads(timeout=None):
    """Sleep-poll (GIL released) until no engine worker thread is left.
    Returns False on timeout. Used by the exit hook."""
    deadline = None if timeout is None else _time.monotonic() + timeout
    while rp_live_threads() != 0:
        if deadline is not None and _time.monotonic() >= deadline:
            return False
        _time.sleep(0.001)
    return True


def _after_fork_child():
    """Reset module state in a forked child: the parent's workers do not exist."""
    rp_after_fork_child()


@cython.final
cdef class _WorkerCtx:

    def __cinit__(self):
        self.pool = NULL
        self.initargs = ()

    cdef int worker_started(self, unsigned index, worker_state *ws) except -1:
        """Python-side start of a worker: 0 when it may run tasks, 1 when its
        initializer failed (the pool is broken and this worker's state undone)."""
        thread = _WorkerThread("%s_%d" % (self.prefix, index))
        Py_INCREF(thread)
        ws.thread = <PyObject*>thread
        if self.initializer is not None:
            try:
                self.initializer(*self.initargs)
            except BaseException:
                LOGGER.critical("Exception in initializer:", exc_info=True,
                                extra={"pool": self.name, "worker": thread.name})
                self.worker_stopped(ws)
                self.break_pool("A thread initializer failed, the pool is not usable anymore")
                return 1
        LOGGER.debug("worker %s started", thread.name, extra={"pool": self.name, "worker": thread.name})
        return 0

    cdef void worker_stopped(self, worker_state *ws) noexcept:
        """Undo worker_started (idempotent)."""
        cdef object thread
        if ws.thread != NULL:
            thread = <object>ws.thread
            Py_DECREF(thread)
            ws.thread = NULL
            try:
                LOGGER.debug("worker %s exits", thread.name, extra={"pool": self.name, "worker": thread.name})
                _forget_thread(thread)
            except BaseException:
                _unraisable("ringpool worker exit")

    cdef void break_pool(self, str why) noexcept:
        if self.broken is None:
            self.broken = why
        if self.pool != NULL:
            with nogil:
                rp_pool_shutdown(self.pool, RP_SHUTDOWN_DISCARD)


cdef extern from "Python.h":
    void PyErr_SetObject(object type, object value)
    void PyErr_WriteUnraisable(object obj)


cdef void _unraisable(str where) noexcept:
    """Send the exception being handled to sys.unraisablehook. Call it from an
    except block: errors in callbacks must never reach C, nor vanish."""
    exc = _sys.exc_info()[1]
    if exc is None:
        return
    PyErr_SetObject(type(exc), exc)
    PyErr_WriteUnraisable(where)


cdef int _hook_worker_start(void *ctx, rp_worker *w, void **local) noexcept nogil:
    if rp_py_is_finalizing():
        return -1  # never touch a finalizing interpreter
    cdef worker_state *ws = <worker_state*>calloc(1, sizeof(worker_state))
    if ws == NULL:
        return -1
    # Creates this thread's one Python thread state and takes the GIL.
    ws.gstate = PyGILState_Ensure()
    if _worker_start_gil(ctx, rp_worker_index(w), ws) != 0:
        PyGILState_Release(ws.gstate)  # deletes the thread state
        free(ws)
        return -1
    ws.holding = 1  # keep the GIL for the first task (sticky; see _hook_worker_idle)
    local[0] = ws
    return 0


cdef int _worker_start_gil(void *ctx, unsigned index, worker_state *ws) noexcept with gil:
    cdef _WorkerCtx c = <_WorkerCtx>ctx
    cdef int rc
    Py_INCREF(c)  # the worker's reference, dropped in _hook_worker_stop
    try:
        rc = c.worker_started(index, ws)
    except BaseException:
        _unraisable("ringpool worker start")
        c.worker_stopped(ws)
        rc = -1
    if rc != 0:
        Py_DECREF(c)
        return -1
    return 0


cdef void _hook_worker_idle(void *ctx, rp_worker *w) noexcept nogil:
    # The queue ran dry: stop holding the GIL (the thread state stays).
    cdef worker_state *ws = <worker_state*>rp_worker_local(w)
    if ws.holding:
        ws.tstate = PyEval_SaveThread()
        ws.holding = 0


cdef void _hook_worker_stop(void *ctx, rp_worker *w) noexcept nogil:
    cdef worker_state *ws = <worker_state*>rp_worker_local(w)
    if not ws.holding:
        if rp_py_is_finalizing():
            free(ws)  # leak the thread state rather than touch a dying interpreter
            return
        PyEval_RestoreThread(ws.tstate)
        ws.holding = 1
    _worker_stop_gil(ctx, ws)
    PyGILState_Release(ws.gstate)  # deletes the thread state, releases the GIL
    free(ws)


cdef void _worker_stop_gil(void *ctx, worker_state *ws) noexcept with gil:
    cdef _WorkerCtx c = <_WorkerCtx>ctx
    if ws.deferred != NULL:
        rp_decref(ws.deferred)
        ws.deferred = NULL
    c.worker_stopped(ws)
    Py_DECREF(c)


cdef void _hook_pool_free(void *ctx) noexcept nogil:
    if rp_py_is_finalizing():
        return
    _pool_free_gil(ctx)


cdef void _pool_free_gil(void *ctx) noexcept with gil:
    cdef _WorkerCtx c = <_WorkerCtx>ctx
    c.pool = NULL
    Py_DECREF(c)  # the engine's reference, taken in NativePool._start


# The timer thread (deadlines) keeps one thread state for its life, like a
# worker, and holds the GIL only while it fails a future.
cdef struct timer_state:
    PyGILState_STATE gstate
    PyThreadState *tstate
    PyObject *thread          # owned: its _WorkerThread, for threading.current_thread()


cdef int _hook_timer_start(void *ctx, void **local) noexcept nogil:
    if rp_py_is_finalizing():
        return -1
    cdef timer_state *ts = <timer_state*>calloc(1, sizeof(timer_state))
    if ts == NULL:
        return -1
    ts.gstate = PyGILState_Ensure()
    _timer_start_gil(ctx, ts)
    ts.tstate = PyEval_SaveThread()
    local[0] = ts
    return 0


cdef void _timer_start_gil(void *ctx, timer_state *ts) noexcept with gil:
    cdef _WorkerCtx c = <_WorkerCtx>ctx
    try:
        thread = _WorkerThread("%s_timer" % (c.prefix,))
        Py_INCREF(thread)
        ts.thread = <PyObject*>thread
    except BaseException:
        _unraisable("ringpool timer start")


cdef void _hook_timer_stop(void *ctx, void *local) noexcept nogil:
    cdef timer_state *ts = <timer_state*>local
    if rp_py_is_finalizing():
        free(ts)  # leak the thread state rather than touch a dying interpreter
        return
    PyEval_RestoreThread(ts.tstate)
    _timer_stop_gil(ts)
    PyGILState_Release(ts.gstate)
    free(ts)


cdef void _timer_stop_gil(timer_state *ts) noexcept with gil:
    cdef object thread
    if ts.thread != NULL:
        thread = <object>ts.thread
        Py_DECREF(thread)
        ts.thread = NULL
        try:
            _forget_thread(thread)
        except BaseException:
            _unraisable("ringpool timer exit")


cdef rp_pool_hooks PY_HOOKS
PY_HOOKS.worker_start = _hook_worker_start
PY_HOOKS.worker_idle = _hook_worker_idle
PY_HOOKS.worker_stop = _hook_worker_stop
PY_HOOKS.pool_free = _hook_pool_free
PY_HOOKS.timer_start = _hook_timer_start
PY_HOOKS.timer_stop = _hook_timer_stop
PY_HOOKS.worker_nogil = _hook_worker_idle  # before native code: let go of the GIL


# --------------------------------------------------------------------------
# Python tasks
# --------------------------------------------------------------------------

cdef object _note_worker(BaseException exc):
    """Add a note naming the worker thread to a task's exception."""
    try:
        note = "[ringpool] raised in worker thread %r" % (_threading.current_thread().name,)
        notes = getattr(exc, "__notes__", None)
        if notes is not None and note in notes:
            return
        if hasattr(exc, "add_note"):
            exc.add_note(note)
        else:  # Python 3.10: no add_note, keep the data anyway
            exc.__notes__ = list(notes or ()) + [note]
    except BaseException:
        pass


@cython.final
@cython.freelist(256)
@cython.no_gc  # never in a cycle once run: fn/args/future are cleared then
cdef class _PyTask:

    cdef bint _try_cancel(self):
        return rp_task_cancel(&self.call.hdr) != 0


cdef int _py_task_run(rp_task *t, rp_worker *w) noexcept nogil:
    cdef worker_state *ws = <worker_state*>rp_worker_local(w)
    if not ws.holding:
        PyEval_RestoreThread(ws.tstate)
        ws.holding = 1
    if ws.deferred != NULL:
        rp_decref(ws.deferred)
        ws.deferred = NULL
    cdef int outcome = _py_task_run_gil(<PyObject*>t.data)
    # Publish DONE for waiters polling in Future.result(). When nothing else
    # is queued, drop the GIL first, so the waiter that sees DONE finds the
    # GIL free instead of sleeping on it; the ring's reference to the task is
    # then released at this worker's next GIL hold (t must stay valid until
    # the store).
    if rp_pool_queued(rp_worker_pool(w)) == 0:
        ws.tstate = PyEval_SaveThread()
        ws.holding = 0
        t.state = RP_TASK_DONE
        ws.deferred = <PyObject*>t.data
    else:
        t.state = RP_TASK_DONE
        rp_decref(t.data)
    return outcome


cdef int _py_task_run_gil(PyObject *tp) noexcept with gil:
    # The ring's reference (taken in _submit) is released by the caller.
    cdef _PyTask task = <_PyTask>tp
    cdef _WorkerCtx wctx = task.ctx
    cdef bint armed = task.call.hdr.deadline_ns > 0
    if armed:
        # Kept in the task: the timer may have to fail it (_py_task_timer),
        # which takes it out under the same critical section.
        with cython.critical_section(task):
            fut = task.future
        if fut is None:
            # The deadline fired between the engine handing us the task and
            # this thread getting the GIL: the timer failed the future and
            # counted an overrun. Do not run it.
            task.fn = task.args = task.kwargs = task.context = None
            return RP_OUTCOME_OVERRAN
    else:
        fut = task.future
        task.future = None
    fn = task.fn
    args = task.args
    kwargs = task.kwargs
    ctx = task.context
    task.fn = task.args = task.kwargs = task.context = None
    fut._state = RUNNING  # the engine's CAS made us the only possible writer
    cdef PyObject *outer = rp_swap_current(tp)  # ringpool.current_task()
    if wctx is not None and wctx.observed:
        outcome = _run_observed(wctx, task, fut, fn, args, kwargs, ctx)
        rp_swap_current(outer)
        return outcome
    try:
        if ctx is None:
            if kwargs is None:
                result = fn(*args)
            else:
                result = fn(*args, **kwargs)
        elif kwargs is None:
            result = ctx.run(fn, *args)
        else:
            result = ctx.run(fn, *args, **kwargs)
    except BaseException as exc:
        rp_swap_current(outer)
        if armed and _overran(task):
            return RP_OUTCOME_OVERRAN
        _fail(wctx, fut, fn, exc, -1.0)
        return RP_OUTCOME_RAISED
    rp_swap_current(outer)
    if armed and _overran(task):
        return RP_OUTCOME_OVERRAN
    try:
        fut._finish(result, None)
    except BaseException:
        _unraisable("ringpool: completing a future")
    return RP_OUTCOME_COMPLETED


cdef bint _overran(_PyTask task) noexcept:
    """A task with a deadline has returned: did its deadline fire first?
    True: the timer owns the future (it fails it with TaskTimeout) and the
    outcome is dropped. False: the timer entry is gone, so is its reference,
    and the caller publishes the outcome."""
    if rp_task_disarm(&task.call.hdr):
        with cython.critical_section(task):
            task.future = None
        Py_DECREF(task)  # the timer's reference (the ring's keeps it alive)
        return False
    return True  # the timer fired, or rp_task_disarm just reported the overrun itself


cdef void _py_task_timer(rp_task *t, int event) noexcept with gil:
    # On the pool's timer thread (RELEASE: on a thread that discards it).
    cdef _PyTask task = <_PyTask><PyObject*>t.data
    fut = None
    if event != RP_TIMER_RELEASE:
        with cython.critical_section(task):  # the run op reads it under the same section
            fut = task.future
            task.future = None
    if fut is not None:
        if event == RP_TIMER_EXPIRED:
            name = _task_name(task.fn)
            # It will never run: let go of its callable and arguments now.
            task.fn = task.args = task.kwargs = task.context = None
            exc = TaskTimeout("task %s expired in the queue: its deadline passed before a "
                              "worker could start it" % name)
        else:
            exc = TaskTimeout("task overran its deadline; it was asked to stop "
                              "(current_task().cancelled) and its outcome is dropped")
        try:
            # _finish checks the state itself; taking the future's lock first
            # would allocate one for every timed-out future.
            fut._finish(None, exc)
        except _InvalidStateError:
            pass  # completed by hand (set_result) meanwhile: nothing to report
        except BaseException:
            _unraisable("ringpool: failing a future at its deadline")
    Py_DECREF(task)  # the timer's reference, taken in _submit


cdef void _fail(_WorkerCtx wctx, fut, fn, BaseException exc, double duration) noexcept:
    """A task raised: note the worker, log (at the pool's failure level),
    arm the never-retrieved guard, fail the future."""
    _note_worker(exc)
    try:
        if wctx is not None:
            if wctx.failure_level and LOGGER.isEnabledFor(wctx.failure_level):
                name = _task_name(fn)
                LOGGER.log(wctx.failure_level, "task %s failed: %r", name, exc,
                           exc_info=(type(exc), exc, exc.__traceback__),
                           extra={"pool": wctx.name, "worker": _threading.current_thread().name,
                                  "task": name, "duration_s": duration if duration >= 0 else None})
            if wctx.log_unretrieved:
                guard = _ExcGuard()
                guard.exc = exc
                guard.task_name = _task_name(fn)
                guard.pool_name = wctx.name
                fut._guard = guard
    except BaseException:
        _unraisable("ringpool: reporting a task failure")
    try:
        fut._finish(None, exc)
    except BaseException:
        _unraisable("ringpool: completing a future")


cdef int _run_observed(_WorkerCtx wctx, _PyTask task, fut, fn, tuple args, dict kwargs, ctx) noexcept:
    """The task path with before_task/after_task hooks (only when set)."""
    info = TaskInfo(wctx.name, _threading.current_thread().name, _task_name(fn), fn, args, kwargs or {})
    if wctx.before_task is not None:
        try:
            wctx.before_task(info)
        except BaseException:
            LOGGER.exception("before_task hook raised", extra={"pool": wctx.name, "worker": info.worker,
                                                               "task": info.task})
    cdef double t0 = _time.perf_counter()
    cdef double dt
    cdef int outcome
    cdef bint armed = task.call.hdr.deadline_ns > 0
    try:
        if kwargs is None:
            kwargs = {}
        result = ctx.run(fn, *args, **kwargs) if ctx is not None else fn(*args, **kwargs)
    except BaseException as exc:
        dt = _time.perf_counter() - t0
        if armed and _overran(task):
            done = TaskOutcome(False, None, TaskTimeout("task overran its deadline"), dt)
            outcome = RP_OUTCOME_OVERRAN
        else:
            _fail(wctx, fut, fn, exc, dt)
            done = TaskOutcome(False, None, exc, dt)
            outcome = RP_OUTCOME_RAISED
    else:
        dt = _time.perf_counter() - t0
        if armed and _overran(task):
            done = TaskOutcome(False, None, TaskTimeout("task overran its deadline"), dt)
            outcome = RP_OUTCOME_OVERRAN
        else:
            try:
                fut._finish(result, None)
            except BaseException:
                _unraisable("ringpool: completing a future")
            done = TaskOutcome(True, result, None, dt)
            outcome = RP_OUTCOME_COMPLETED
    if wctx.after_task is not None:
        try:
            wctx.after_task(info, done)
        except BaseException:
            LOGGER.exception("after_task hook raised", extra={"pool": wctx.name, "worker": info.worker,
                                                              "task": info.task, "duration_s": dt})
    return outcome


cdef void _py_task_discard(rp_task *t, int reason) noexcept with gil:
    cdef _PyTask task = <_PyTask><PyObject*>t.data
    Py_DECREF(task)  # the ring's reference
    if reason == RP_DISCARD_EXPIRED:
        return  # the timer reported it (_py_task_timer), perhaps still doing so: hands off
    fut = task.future
    broken = task.ctx.broken if task.ctx is not None else None
    task.future = task.fn = task.args = task.kwargs = task.context = None
    try:
        if reason == RP_DISCARD_SHUTDOWN and broken is not None:
            fut._finish(None, BrokenPool(broken))
            return
        if reason == RP_DISCARD_SHUTDOWN:
            with fut._get_lock():
                if fut._state == PENDING:
                    fut._state = CANCELLED
                    fut._notify_locked()
            fut._invoke_callbacks()
        # Tell concurrent.futures.wait()/as_completed() waiters, as a
        # ThreadPoolExecutor worker does when it reaches a cancelled item.
        fut.set_running_or_notify_cancel()
    except BaseException:
        _unraisable("ringpool: cancelling a future")


cdef int64_t RESULT_SPIN_NS = 20000


cdef void _spin_until_done(_PyTask task, int64_t max_ns) noexcept:
    cdef rp_task *hdr = &task.call.hdr
    cdef int64_t end
    cdef int _i, st
    cdef unsigned rounds
    with nogil:
        end = rp_now_ns() + max_ns
        rounds = 0
        while True:
            for _i in range(32):
                st = hdr.state  # an atomic (seq_cst) load: hdr.state is _Atomic
                if st == RP_TASK_DONE or st == RP_TASK_CANCELLED or st == RP_TASK_EXPIRED:
                    return
                rp_cpu_relax()
            if rp_now_ns() >= end:
                return
            rounds += 1
            if rounds % 8 == 0:
                rp_thread_yield()  # let the worker have the CPU on a busy machine


cdef rp_task_ops PY_TASK_OPS
PY_TASK_OPS.run = _py_task_run
PY_TASK_OPS.discard = _py_task_discard
PY_TASK_OPS.timer = _py_task_timer


# --------------------------------------------------------------------------
# map() chunks: one task evaluates many items, with no Future per item
# --------------------------------------------------------------------------

def _map_chunk(fn, list items, bint star):
    """Evaluate fn over items in order. Returns (results, exception, elapsed_ns);
    stops at the first exception, as the iteration that would raise it ends
    the map anyway."""
    cdef list out = []
    cdef int64_t t0 = rp_now_ns()
    try:
        if star:
            for args in items:
                out.append(fn(*args))
        else:
            for x in items:
                out.append(fn(x))
    except BaseException as exc:
        _note_worker(exc)
        return out, exc, rp_now_ns() - t0
    return out, None, rp_now_ns() - t0


@cython.final
cdef class _MapIterator:
    """Iterator returned by Pool.map: yields each finished chunk's results in
    order from C, and asks the window (pool._MapWindow) for the next chunk
    only when a chunk is used up. Closing it (or dropping it) cancels the
    chunks that have not started, as leaving Executor.map's generator does."""

    cdef object window
    cdef object end_time
    cdef list chunk
    cdef Py_ssize_t pos
    cdef object pending_exc
    cdef bint finished

    def __cinit__(self, window, end_time):
        self.window = window
        self.end_time = end_time
        self.chunk = []
        self.pos = 0

    def __iter__(self):
        return self

    def __next__(self):
        cdef list chunk = self.chunk
        if self.pos < len(chunk):
            item = chunk[self.pos]
            self.pos += 1
            return item
        return self._refill()

    cdef object _refill(self):
        while True:
            if self.pending_exc is not None:
                exc = self.pending_exc
                self.pending_exc = None
                self._finish()
                try:
                    raise exc
                finally:
                    exc = None
            if self.finished:
                raise StopIteration
            try:
                out, exc = self.window.next_chunk(self.end_time)
            except StopIteration:
                self._finish()
                raise
            except BaseException:
                self._finish()
                raise
            self.chunk = out
            self.pos = 0
            self.pending_exc = exc
            if out:
                self.pos = 1
                return out[0]

    cdef void _finish(self) noexcept:
        if not self.finished:
            self.finished = True
            self.chunk = []
            try:
                self.window.cancel_all()
            except BaseException:
                _unraisable("ringpool: closing a map iterator")

    def close(self):
        """Stop early: cancel the chunks that have not started."""
        self._finish()

    def __del__(self):
        self._finish()


# --------------------------------------------------------------------------
# The pool
# --------------------------------------------------------------------------

# Only the main thread runs Python signal handlers, so only its waits need
# to wake up now and then to let Ctrl-C through. Other threads wait in one
# piece (a blocked submitter keeps its place in the FIFO).
cdef int64_t SIGNAL_SLICE_NS = 50000000


cdef extern from "Python.h":
    int PyErr_CheckSignals() except -1
    unsigned long PyThread_get_thread_ident() nogil

cdef unsigned long _main_ident = PyThread_get_thread_ident()


cdef inline int64_t _slice_end(int64_t deadline) noexcept nogil:
    cdef int64_t s = rp_now_ns() + SIGNAL_SLICE_NS
    return s if deadline < 0 or s < deadline else deadline


cdef int _signal_check(void *arg) noexcept nogil:
    return _signal_check_gil(arg)


cdef int _signal_check_gil(void *arg) noexcept with gil:
    # Runs Python signal handlers while the blocked submitter keeps its place
    # in line; a handler that raises (Ctrl-C) abandons the wait.
    try:
        PyErr_CheckSignals()
    except BaseException as exc:
        (<list>arg).append(exc)
        return 1
    return 0


cdef int _wait_interruptibly(rp_pool *p, rp_task *t, int64_t deadline) except? -100:
    cdef int rc
    cdef list raised
    if PyThread_get_thread_ident() != _main_ident:
        with nogil:
            rc = rp_pool_submit_wait(p, t, deadline)
        return rc
    raised = []
    with nogil:
        rc = rp_pool_submit_wait_ex(p, t, deadline, SIGNAL_SLICE_NS, _signal_check, <void*>raised)
    if rc == RP_EINTR and raised:
        raise raised[0]
    return rc


cdef int _join_interruptibly(rp_pool *p, int64_t deadline) except? -100:
    cdef int rc
    if PyThread_get_thread_ident() != _main_ident or _exiting:
        # The exit hook must not be cut short: workers may not outlive it.
        with nogil:
            rc = rp_pool_join(p, deadline)
        return rc
    while True:
        with nogil:
            rc = rp_pool_join(p, _slice_end(deadline))
        if rc != RP_ETIMEDOUT or (deadline >= 0 and rp_now_ns() >= deadline):
            return rc
        PyErr_CheckSignals()


cdef int _check(int rc) except -1:
    if rc == RP_OK:
        return 0
    if rc == RP_ENOMEM:
        raise MemoryError()
    if rc == RP_EINVAL:
        raise ValueError("invalid argument")
    if rc == RP_ETHREAD:
        raise RuntimeError("can't start new thread")
    if rc == RP_ESHUTDOWN:
        raise PoolClosed(SHUTDOWN_MSG)
    raise RuntimeError(rp_strerror(rc).decode())


cdef object _INF = float("inf")


cdef inline int64_t _deadline_after(double seconds) noexcept:
    """The engine-clock deadline `seconds` from now (at least 1: 0 means none)."""
    if not seconds < 1e9:
        seconds = 1e9  # ~31 years (and inf): the ns clock must not overflow
    cdef int64_t d = rp_now_ns() + <int64_t>(seconds * 1e9)
    return d if d > 0 else 1


cdef int64_t _deadline_at(double monotonic) except? -2:
    """A time.monotonic() value on the engine's clock (measured as an offset
    from now, so the two clocks need not share an epoch)."""
    cdef double rel = monotonic - _time.monotonic()
    if rel != rel:
        raise ValueError("deadline must be a number, not NaN")
    return _deadline_after(rel if rel > -1e9 else -1e9)  # a past deadline stays past


cdef inline void _drop_unsubmitted(_PyTask task) noexcept:
    """A submit failed: the engine took neither the ring's nor the timer's
    reference (it never calls ops->timer for a refused task)."""
    if task.call.hdr.deadline_ns > 0:
        Py_DECREF(task)
    Py_DECREF(task)


@cython.final
@cython.auto_pickle(False)
cdef class TaskContext:
    """What a running task knows about itself: ``ringpool.current_task()``.

    Cancellation is cooperative: nothing interrupts a running Python task, so
    long tasks should call ``check()`` (or read ``cancelled``) now and then.
    """

    cdef _PyTask _task

    def __init__(self, *args):
        raise TypeError("TaskContext objects come from ringpool.current_task()")

    @property
    def cancelled(self):
        """True once the task was asked to stop (Future.request_cancel(),
        shutdown(cancel_futures=True)) or its deadline has passed."""
        cdef rp_task *hdr = &self._task.call.hdr
        if rp_task_cancel_requested(hdr):
            return True
        return hdr.deadline_ns > 0 and rp_now_ns() >= hdr.deadline_ns

    @property
    def deadline(self):
        """The deadline as a ``time.monotonic()`` value, or None."""
        cdef int64_t d = self._task.call.hdr.deadline_ns
        if d <= 0:
            return None
        return _time.monotonic() + (d - rp_now_ns()) / 1e9

    def remaining(self):
        """Seconds left until the deadline (0.0 once passed), or None."""
        cdef int64_t d = self._task.call.hdr.deadline_ns
        if d <= 0:
            return None
        cdef int64_t left = d - rp_now_ns()
        return left / 1e9 if left > 0 else 0.0

    def check(self):
        """Raise ``TaskCancelled`` if the task should stop; else return None."""
        cdef rp_task *hdr = &self._task.call.hdr
        if hdr.deadline_ns > 0 and rp_now_ns() >= hdr.deadline_ns:
            raise TaskCancelled("the task's deadline passed")
        if rp_task_cancel_requested(hdr):
            raise TaskCancelled("the task was cancelled")

    def __repr__(self):
        return "<TaskContext cancelled=%r remaining=%r>" % (self.cancelled, self.remaining())


def current_task():
    """The ``TaskContext`` of the ringpool task running on this thread, or
    None outside a task."""
    cdef PyObject *cur = rp_get_current()
    if cur == NULL:
        return None
    cdef TaskContext ctx = TaskContext.__new__(TaskContext)
    ctx._task = <_PyTask>cur
    return ctx


cdef class NativePool:
    """The engine handle and the hot path of ``ringpool.Pool``.

    Not for direct use: ``ringpool.Pool`` validates arguments and calls
    ``_start``. Subclassed together with ``concurrent.futures.Executor``.
    """

    def __cinit__(self, *args, **kwargs):
        self.pool = NULL
        self.task_timeout = -1.0
        self.on_full = ON_FULL_BLOCK
        self.submit_timeout = -1.0
        self.propagate_context = True

    def _start(self, *, unsigned min_workers, unsigned max_workers, size_t queue_size,
               int on_full, double submit_timeout, double keep_alive, str prefix,
               str name, initializer, tuple initargs, bint propagate_context,
               size_t stack_size=0, double spin=50e-6, bint log_unretrieved=True,
               bint metrics=True, before_task=None, after_task=None, int failure_level=10):
        if self.pool != NULL:
            raise RuntimeError("pool already started")
        cdef rp_pool_config cfg
        rp_pool_config_init(&cfg)
        cfg.min_workers = min_workers
        cfg.max_workers = max_workers
        cfg.queue_capacity = queue_size
        cfg.keep_alive_ns = <int64_t>(keep_alive * 1e9) if keep_alive >= 0 else -1
        cfg.stack_size = stack_size
        cfg.spin_ns = <int64_t>(spin * 1e9)
        cfg.metrics = metrics
        bname = name.encode("utf-8", "replace")[:15]
        cfg.name = bname
        self.hooks = PY_HOOKS
        cfg.hooks = &self.hooks
        ctx = _WorkerCtx()
        ctx.prefix = prefix
        ctx.name = name
        ctx.initializer = initializer
        ctx.initargs = initargs
        ctx.log_unretrieved = log_unretrieved
        ctx.before_task = before_task
        ctx.after_task = after_task
        ctx.observed = before_task is not None or after_task is not None
        ctx.failure_level = failure_level
        cfg.hooks_ctx = <void*>ctx
        self.ctx = ctx
        self.queue_size = queue_size
        self.on_full = on_full
        self.submit_timeout = submit_timeout
        self.propagate_context = propagate_context
        Py_INCREF(ctx)  # the engine's reference, dropped by _hook_pool_free
        cdef rp_pool *p = NULL
        cdef int rc
        with nogil:
            rc = rp_pool_create(&cfg, &p)
        if rc != RP_OK:
            Py_DECREF(ctx)
            _check(rc)
        ctx.pool = p
        self.pool = p

    def __dealloc__(self):
        cdef rp_pool *p = self.pool
        if p == NULL:
            return
        self.pool = NULL
        if _exiting and rp_worker_current() == NULL:
            # After the exit hook ran nothing else will wait for these
            # workers: drain and join now, before finalization.
            with nogil:
                rp_pool_shutdown(p, RP_SHUTDOWN_DRAIN)
                rp_pool_join(p, -1)
        rp_pool_release(p)  # drains in the background; frees when the last worker leaves

    cdef int _raise_closed(self) except -1:
        if self.ctx is not None and self.ctx.broken is not None:
            raise BrokenPool(self.ctx.broken)
        if self.forked:
            raise BrokenPool("this pool was inherited across fork(); create a new pool in the child")
        if self.pool == NULL and not self.shutdown_started:
            raise RuntimeError("pool is not initialised: call Pool.__init__")
        raise PoolClosed(SHUTDOWN_MSG)

    cdef _PyTask _make_task(self, fn, tuple args, dict kwargs, object fut, int64_t deadline_ns):
        cdef _PyTask task = _PyTask.__new__(_PyTask)
        task.call.hdr.deadline_ns = deadline_ns
        task.fn = fn
        task.args = args
        task.kwargs = kwargs if kwargs else None
        task.context = _copy_context() if self.propagate_context else None
        task.future = fut
        task.ctx = self.ctx
        task.call.hdr.ops = &PY_TASK_OPS
        task.call.hdr.data = <void*>task
        return task

    cdef object _submit(self, fn, tuple args, dict kwargs, int on_full, double timeout,
                        int64_t deadline_ns):
        if self.pool == NULL or self.shutdown_started:
            self._raise_closed()
        if not callable(fn):
            raise TypeError("fn must be callable, not %s" % type(fn).__name__)
        if deadline_ns == 0 and self.task_timeout >= 0:
            deadline_ns = _deadline_after(self.task_timeout)
        fut = Future()
        if _exiting:
            # The exit hook has run (or ringpool was imported during exit):
            # nothing will wait for workers before the interpreter finalizes,
            # and a worker cannot run Python after that. Run the task here,
            # so an accepted task always runs (pools used in atexit handlers).
            return self._run_inline(self._make_task(fn, args, kwargs, fut, deadline_ns), fut)
        # A pending future holds only its lock and its task (never part of a
        # cycle: the task's references are cleared when it runs or is
        # dropped). Keeping it out of the cycle collector until it acquires
        # a container (a result, an exception, callbacks or waiters: Future
        # re-tracks itself then) spares the collector from scanning every
        # in-flight future, which otherwise dominates a burst of submits.
        PyObject_GC_UnTrack(fut)
        cdef _PyTask task = self._make_task(fn, args, kwargs, fut, deadline_ns)
        fut._task = task
        Py_INCREF(task)  # owned by the ring until run or discard
        if deadline_ns > 0:
            Py_INCREF(task)  # owned by the timer entry until _py_task_timer or _overran
        cdef int rc = rp_pool_submit(self.pool, &task.call.hdr)
        if rc == RP_OK:
            return fut
        if rc == RP_EFULL:
            return self._submit_full(task, fut, on_full, timeout)
        _drop_unsubmitted(task)
        fut._task = None
        if rc == RP_ESHUTDOWN:
            self._raise_closed()
        _check(rc)

    cdef object _submit_full(self, _PyTask task, fut, int on_full, double timeout):
        """The bounded queue is full: apply the overload policy."""
        cdef int rc
        cdef int64_t deadline = -1
        cdef int64_t t0 = rp_now_ns()
        cdef rp_worker *me = rp_worker_current()
        # A task of this very pool that would block on its own full queue
        # could wait for itself: it runs the new task inline instead.
        if on_full == ON_FULL_BLOCK and me != NULL and rp_worker_pool(me) == self.pool:
            on_full = ON_FULL_CALLER_RUNS
        if on_full == ON_FULL_BLOCK:
            if timeout >= 0:
                deadline = t0 + <int64_t>(timeout * 1e9)
            try:
                rc = _wait_interruptibly(self.pool, &task.call.hdr, deadline)
            except BaseException:
                _drop_unsubmitted(task)  # a signal handler raised (Ctrl-C): nothing queued
                fut._task = None
                raise
            if rc == RP_OK:
                return fut
        else:
            rc = RP_EFULL
        _drop_unsubmitted(task)  # the engine never took it
        fut._task = None
        if rc == RP_ESHUTDOWN:
            self._raise_closed()
        if rc == RP_EFULL:
            rp_pool_count_rejected(self.pool)  # refused for good (time-outs: the engine counts)
        if on_full == ON_FULL_CALLER_RUNS:
            return self._run_inline(task, fut)
        if rc == RP_EFULL or rc == RP_ETIMEDOUT:
            raise PoolOverloaded(self.ctx.name, self.queue_size, (rp_now_ns() - t0) / 1e9)
        _check(rc)

    cdef object _run_inline(self, _PyTask task, fut):
        """Java's CallerRunsPolicy: run in the submitting thread."""
        fn, args, kwargs, ctx = task.fn, task.args, task.kwargs, task.context
        task.future = task.fn = task.args = task.kwargs = task.context = None
        if task.call.hdr.deadline_ns > 0 and rp_now_ns() >= task.call.hdr.deadline_ns:
            fut._finish(None, TaskTimeout("task %s expired before it could start" % _task_name(fn)))
            return fut
        fut._state = RUNNING
        cdef PyObject *outer = rp_swap_current(<PyObject*>task)
        try:
            if kwargs is None:
                kwargs = {}
            result = ctx.run(fn, *args, **kwargs) if ctx is not None else fn(*args, **kwargs)
        except BaseException as exc:
            rp_swap_current(outer)
            fut._finish(None, exc)
        else:
            rp_swap_current(outer)
            fut._finish(result, None)
        return fut

    def submit(self, fn, /, *args, **kwargs):
        """Schedule ``fn(*args, **kwargs)``; return a ``Future`` for its result.

        With a bounded queue that is full, the pool's ``on_full`` policy
        applies. Raises ``PoolClosed`` after shutdown, ``BrokenPool`` once the
        pool is broken, ``TypeError`` if fn is not callable.
        """
        return self._submit(fn, args, kwargs, self.on_full, self.submit_timeout, 0)

    def try_submit(self, fn, /, *args, **kwargs):
        """Like submit(), but never waits: ``PoolOverloaded`` at once if the
        bounded queue is full, whatever the pool's policy."""
        return self._submit(fn, args, kwargs, ON_FULL_RAISE, -1.0, 0)

    def _schedule(self, fn, tuple args, dict kwargs, int on_full, double submit_timeout,
                  deadline=None):
        """deadline: None for the pool's task_timeout, a time.monotonic()
        value, or math.inf for no deadline at all."""
        cdef int64_t deadline_ns = 0  # 0: the pool's task_timeout (_submit)
        if deadline is not None:
            deadline_ns = -1 if deadline == _INF else _deadline_at(deadline)
        return self._submit(fn, args, kwargs, on_full, submit_timeout, deadline_ns)

    def _set_task_timeout(self, timeout):
        self.task_timeout = -1.0 if timeout is None else timeout

    @property
    def task_timeout(self):
        """The default timeout (seconds) of every submitted task, or None."""
        return None if self.task_timeout < 0 else self.task_timeout

    # -- lifecycle ------------------------------------------------------------
    def _shutdown_native(self, bint discard):
        """Close the pool; with discard, cancel every queued task now."""
        self.shutdown_started = True
        if self.pool == NULL:
            return
        cdef rp_shutdown_mode mode = RP_SHUTDOWN_DISCARD if discard else RP_SHUTDOWN_DRAIN
        with nogil:
            rp_pool_shutdown(self.pool, mode)

    def _join_native(self, timeout=None):
        """Wait (GIL released) for every worker to exit. Returns True when
        they have, False on timeout or when called from one of the pool's own
        workers (which cannot wait for itself)."""
        if self.pool == NULL:
            return True
        cdef int64_t deadline = -1
        if timeout is not None:
            deadline = rp_now_ns() + <int64_t>(max(float(timeout), 0.0) * 1e9)
        cdef int rc = _join_interruptibly(self.pool, deadline)
        if rc == RP_OK:
            return True
        if rc == RP_ETIMEDOUT or rc == RP_EDEADLK:
            return False
        _check(rc)

    def _wait_busy(self, timeout=None):
        """Block (GIL released) until a task is queued or running, or the pool
        closes; False on timeout. The scaling timer sleeps here when idle."""
        if self.pool == NULL:
            return True
        cdef int64_t deadline = -1
        if timeout is not None:
            deadline = rp_now_ns() + <int64_t>(max(float(timeout), 0.0) * 1e9)
        cdef int rc
        with nogil:
            rc = rp_pool_wait_busy(self.pool, deadline)
        return rc == RP_OK

    def _in_own_worker(self):
        cdef rp_worker *me = rp_worker_current()
        return me != NULL and self.pool != NULL and rp_worker_pool(me) == self.pool

    def _resize_native(self, unsigned min_workers, unsigned max_workers):
        if self.pool == NULL:
            self._raise_closed()
        _check(rp_pool_resize(self.pool, min_workers, max_workers))

    def _after_fork_in_child(self):
        # The engine's threads do not exist in the child and its mutexes may
        # be held by them: never touch it again (its memory is leaked).
        self.pool = NULL
        self.forked = True
        if self.ctx is not None:
            self.ctx.pool = NULL

    def _stats_native(self):
        """A dict of the engine's counters and gauges (merged on read)."""
        cdef rp_pool_stats s
        if self.pool == NULL:
            memset(&s, 0, sizeof(s))
            s.closed = 1
        else:
            rp_pool_stats_get(self.pool, &s)
        return {
            "submitted": s.submitted, "started": s.started, "completed": s.completed,
            "failed": s.failed, "panics": s.panics,
            "cancelled": s.cancelled, "expired": s.expired, "overran": s.overran,
            "overrunning": s.overrunning, "rejected": s.rejected, "queued": s.queued,
            "running": s.running, "live_workers": s.live_workers,
            "idle_workers": s.idle_workers, "peak_workers": s.peak_workers,
            "min_workers": s.min_workers, "max_workers": s.max_workers,
            "queue_capacity": s.queue_capacity, "blocked_submitters": s.blocked_submitters,
            "blocked_seconds_total": s.blocked_ns_total / 1e9,
            "blocked_seconds_max": s.blocked_ns_max / 1e9, "closed": bool(s.closed),
        }

    def _on_full_code(self):
        return self.on_full

    def _submit_timeout_default(self):
        return self.submit_timeout

    def _shutdown_started(self):
        return self.shutdown_started

    def _latency_native(self):
        """(queue_wait, run_time) histograms as dicts of raw counts, in ns."""
        cdef rp_hist_snapshot qw, rt
        memset(&qw, 0, sizeof(qw))
        memset(&rt, 0, sizeof(rt))
        if self.pool != NULL:
            with nogil:
                rp_pool_latency(self.pool, &qw, &rt)
        return _snapshot_dict(&qw), _snapshot_dict(&rt)

    # -- native tasks (see _native.pxi and ringpool.h) ------------------------
    def submit_native(self, fn, arg=None, *, keep=()):
        """Run the native function ``fn(arg, ctx)`` (C signature
        ``int (void *, rp_task_ctx *)``, see ``ringpool.h``) on a worker with
        the GIL released. Returns a ``Future`` that resolves to 0, or fails
        with ``NativeTaskError(code)`` when fn returns non-zero.

        fn: a PyCapsule named ``"int (void *, rp_task_ctx *)"``, a ctypes or
        cffi function pointer (signature checked), a numba ``@cfunc``, or an
        integer address. arg: None, an integer address, or a buffer (numpy
        array, bytearray, memoryview...) whose memory is pinned and passed as
        a pointer until the task ends; ``keep`` holds more objects alive as
        long. ``Future.request_cancel()`` sets ``ctx->cancel``.
        """
        if self.pool == NULL or self.shutdown_started:
            self._raise_closed()
        cdef void *fp = _fn_pointer(fn, _SIG_TASK, "fn")
        cdef list pins = []
        cdef void *ap = _arg_pointer(arg, pins, "arg")
        keep = tuple(keep)
        fut = Future()
        PyObject_GC_UnTrack(fut)
        cdef _PyTask task = _PyTask.__new__(_PyTask)
        task.call.fn = <rp_native_fn>fp
        task.call.arg = ap
        task.call.hdr.ops = &NATIVE_TASK_OPS
        task.call.hdr.data = <void*>task
        task.fn = fn
        task.args = (pins, keep, arg)
        task.future = fut
        task.ctx = self.ctx
        fut._task = task
        Py_INCREF(task)  # the ring's
        cdef int rc = rp_pool_submit(self.pool, &task.call.hdr)
        if rc == RP_EFULL and self.on_full == ON_FULL_BLOCK:
            rc = _wait_interruptibly(self.pool, &task.call.hdr,
                                     -1 if self.submit_timeout < 0
                                     else rp_now_ns() + <int64_t>(self.submit_timeout * 1e9))
        if rc == RP_OK:
            return fut
        Py_DECREF(task)
        fut._task = None
        if rc == RP_ESHUTDOWN:
            self._raise_closed()
        if rc == RP_EFULL and self.on_full == ON_FULL_CALLER_RUNS:
            rp_pool_count_rejected(self.pool)
            code = _run_native_inline(<rp_native_fn>fp, ap)  # Java's CallerRunsPolicy
            task.fn = task.args = task.future = None
            fut._finish(0, None) if code == 0 else fut._finish(None, NativeTaskError(code))
            return fut
        if rc == RP_EFULL or rc == RP_ETIMEDOUT:
            if rc == RP_EFULL:
                rp_pool_count_rejected(self.pool)
            raise PoolOverloaded(self.ctx.name, self.queue_size, 0.0)
        _check(rc)

    def submit_native_many(self, fn, args, *, keep=()):
        """Run ``fn(arg_i, ctx)`` for every item of ``args`` in one call and
        return one ``NativeBatch`` handle (per-item status, no Future per item).

        args: an int n (item i gets the integer i as its arg), a ``range``
        (its values), or a 1-D C-contiguous buffer of 8-byte integers or
        pointers (e.g. a numpy uint64/int64/uintp array of addresses), read
        in place and pinned until the batch ends.
        """
        if self.pool == NULL or self.shutdown_started:
            self._raise_closed()
        cdef void *fp = _fn_pointer(fn, _SIG_TASK, "fn")
        cdef int64_t start = 0, step = 1, n
        cdef void **argv = NULL
        cdef list pins = []
        cdef _Pin pin
        if isinstance(args, range):
            start, step, n = args.start, args.step, len(args)
        elif isinstance(args, int) and not isinstance(args, bool):
            n = _as_index(args, "args", 0)
        else:
            pin = _Pin()
            try:
                pin.take(args, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
            except (TypeError, BufferError, ValueError) as exc:
                raise TypeError("args must be an int, a range or a contiguous buffer of 8-byte "
                                "integers, not %s (%s)" % (type(args).__name__, exc)) from None
            fmt = (<bytes>pin.view.format).lstrip(b"@=<>!") if pin.view.format != NULL else b"B"
            if (pin.view.ndim != 1 or pin.view.itemsize != sizeof(void*)
                    or fmt not in (b"Q", b"q", b"P", b"L", b"l", b"N", b"n")):
                raise TypeError("args: a buffer of args must be 1-D with items of %d-byte integers "
                                "(format %r, itemsize %d, ndim %d)"
                                % (sizeof(void*), fmt.decode(), pin.view.itemsize, pin.view.ndim))
            pins.append(pin)
            argv = <void**>pin.view.buf
            n = pin.view.shape[0] if pin.view.shape != NULL else pin.view.len // sizeof(void*)
        cdef rp_batch *b = NULL
        cdef int rc
        with nogil:
            rc = rp_batch_submit(self.pool, <rp_native_fn>fp, argv, start, step, n, 0, 0, &b)
        if rc == RP_ESHUTDOWN:
            self._raise_closed()
        if rc == RP_EFULL:
            rp_pool_count_rejected(self.pool)
            raise PoolOverloaded(self.ctx.name, self.queue_size, 0.0)
        _check(rc)
        cdef NativeBatch h = NativeBatch.__new__(NativeBatch)
        h.batch = b
        h.fn = fn
        h.pins = pins
        h.keep = tuple(keep)
        return h

    def parallel_for(self, n, kernel, arg=None, *, grain=None):
        """Run the native range kernel (``int (int64_t begin, int64_t end,
        void *arg, rp_task_ctx *ctx)``, see ``ringpool.h``) over ``[0, n)`` in
        chunks of ``grain`` indices (None: a few chunks per worker), on the
        workers and this thread, with the GIL released; returns when every
        chunk is done. The first non-zero return cancels the chunks not yet
        started and raises ``NativeTaskError``. From inside one of this pool's
        own tasks, it runs inline (never waits for a busy worker).
        """
        if self.pool == NULL or self.shutdown_started:
            self._raise_closed()
        cdef int64_t count = _as_index(n, "n", 0)
        cdef int64_t g = 0 if grain is None else _as_index(grain, "grain", 1)
        cdef void *kp = _fn_pointer(kernel, _SIG_KERNEL, "kernel")
        cdef list pins = []
        cdef void *ap = _arg_pointer(arg, pins, "arg")
        cdef int code = 0, rc
        with nogil:
            rc = rp_parallel_for(self.pool, count, g, <rp_kernel_fn>kp, ap, &code)
        _check(rc)
        if code != 0:
            raise NativeTaskError(code)

    @property
    def _broken(self):
        return self.ctx.broken if self.ctx is not None else None


cdef dict _snapshot_dict(rp_hist_snapshot *h):
    return {"counts": [h.counts[i] for i in range(RP_HIST_BUCKETS)],
            "count": h.count, "sum_ns": h.sum_ns, "max_ns": h.max_ns}


# The histogram layout shared by every pool: bucket i holds [lower, upper) ns.
HIST_BUCKET_LOWER_NS = tuple(rp_hist_bucket_lower(i) for i in range(RP_HIST_BUCKETS))
HIST_BUCKET_UPPER_NS = tuple(rp_hist_bucket_upper(i) for i in range(RP_HIST_BUCKETS))


def _hist_bucket(uint64_t ns):
    """The bucket index a duration (ns) is recorded in (for tests)."""
    return rp_hist_bucket(ns)


# Set by the exit hook (pool.py) once pools have been shut down for exit.
_exiting = False


def _set_exiting(bint value):
    global _exiting
    _exiting = value


include "_native.pxi"


cdef extern from *:
    """
    #include <stdatomic.h>
    #ifndef RP_CYTHON_VERSION
    #define RP_CYTHON_VERSION "unknown"
    #endif
    #ifndef RP_BUILD_TYPE
    #define RP_BUILD_TYPE "unknown"
    #endif
    #ifndef RP_SANITIZE
    #define RP_SANITIZE ""
    #endif
    #if defined(__clang__)
    #define RP_COMPILER "clang " __clang_version__
    #elif defined(__GNUC__)
    #define RP_COMPILER "gcc " __VERSION__
    #elif defined(_MSC_VER)
    #define RP_COMPILER "msvc"
    #else
    #define RP_COMPILER "unknown"
    #endif
    #ifdef NDEBUG
    #define RP_ASSERTS 0
    #else
    #define RP_ASSERTS 1
    #endif
    static const int rp_lockfree_ptr = ATOMIC_POINTER_LOCK_FREE;
    static const int rp_lockfree_llong = ATOMIC_LLONG_LOCK_FREE;
    """
    const char *RP_CYTHON_VERSION
    const char *RP_BUILD_TYPE
    const char *RP_SANITIZE
    const char *RP_COMPILER
    int RP_ASSERTS
    const int rp_lockfree_ptr
    const int rp_lockfree_llong


def build_info():
    """How this extension was built (for ``python -m ringpool info``)."""
    return {
        "compiler": RP_COMPILER.decode(),
        "cython_version": RP_CYTHON_VERSION.decode(),
        "build_type": RP_BUILD_TYPE.decode(),
        "sanitizer": RP_SANITIZE.decode() or None,
        "c_asserts": bool(RP_ASSERTS),
        # 2 = always lock-free (C11 ATOMIC_*_LOCK_FREE)
        "atomics_lock_free": rp_lockfree_ptr == 2 and rp_lockfree_llong == 2,
        "cpu_count": rp_cpu_count(),
    }
