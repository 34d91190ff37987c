# Class layouts of the binding (logic lives in _core.pyx). Public for
# `cimport`: Cython code can reach a pool's engine through NativePool.pool.
from libc.stdint cimport int32_t, int64_t
from cpython.ref cimport PyObject
from cpython.pystate cimport PyGILState_STATE, PyThreadState
from ringpool._rp cimport rp_pool, rp_task, rp_pool_hooks, rp_native_fn, rp_kernel_fn, rp_batch


cdef struct worker_state:
    # Per worker thread, owned by the worker (rp_worker_local).
    PyGILState_STATE gstate    # from the Ensure that created this thread's state
    PyThreadState *tstate      # saved while the worker does not hold the GIL
    int holding                # 1 while this worker holds the GIL
    PyObject *thread           # owned: the _WorkerThread object
    PyObject *deferred         # owned: a finished task, released at the next GIL hold


cdef class _WorkerCtx:
    # What worker threads need from Python. Workers hold a reference each and
    # the engine holds one until it frees the pool, so the user-facing pool can
    # be garbage-collected while its workers drain.
    cdef rp_pool *pool            # borrowed: valid while this object is referenced by the engine
    cdef object prefix            # thread-name prefix: names are f"{prefix}_{index}"
    cdef object initializer       # called once per worker thread, or None
    cdef tuple initargs
    cdef public object broken     # None, or why the pool broke (BrokenPool message)
    cdef public object name       # the pool's name, for logs and errors
    cdef public bint log_unretrieved  # log failures nobody retrieved (see _ExcGuard)
    cdef object before_task       # hook(TaskInfo) on the worker before each task, or None
    cdef object after_task        # hook(TaskInfo, TaskOutcome) after each task, or None
    cdef bint observed            # a hook is set: tasks take the slower observed path
    cdef int failure_level        # logging level for task failures (0: never log them)

    cdef int worker_started(self, unsigned index, worker_state *ws) except -1
    cdef void worker_stopped(self, worker_state *ws) noexcept
    cdef void break_pool(self, str why) noexcept


cdef struct native_call:
    rp_task hdr                   # first member: an rp_task* is a native_call*
    rp_native_fn fn               # a native task (submit_native): the function, else NULL
    void *arg


cdef class _PyTask:
    # One task while it is in the engine: a Python call, or a native one
    # (call.fn set; fn/args then hold what must stay alive until it ends). The
    # ring owns one reference (taken before the push, dropped by the run or
    # discard op), the timer entry another while the task has a deadline.
    cdef native_call call         # call.hdr is the engine's header; hdr.data points back here
    cdef object fn
    cdef tuple args
    cdef dict kwargs              # None when the call had no keyword arguments
    cdef object context           # contextvars.Context copy, or None
    # The ringpool.Future it completes; kept while a task with a deadline runs
    # (the timer may fail it), cleared by whoever completes it.
    cdef object future
    cdef _WorkerCtx ctx

    cdef bint _try_cancel(self)


cdef class NativePool:
    # Base of ringpool.Pool: the engine handle and the hot submit path.
    cdef rp_pool *pool            # NULL until _start, and after a fork in the child
    cdef rp_pool_hooks hooks      # the engine copies it; kept for reference
    cdef _WorkerCtx ctx
    cdef int on_full              # ON_FULL_* policy for a full bounded queue
    cdef double submit_timeout    # < 0: wait for room without a limit
    cdef size_t queue_size        # 0: unbounded
    cdef bint propagate_context   # run each task in a copy of the submitter's contextvars
    cdef double task_timeout      # default per-task timeout in seconds (< 0: none)
    cdef bint shutdown_started    # shutdown() has been called
    cdef bint forked              # this is a child's copy of a parent's pool
    cdef object __weakref__

    cdef int _raise_closed(self) except -1
    cdef _PyTask _make_task(self, fn, tuple args, dict kwargs, object fut, int64_t deadline_ns)
    cdef object _submit(self, fn, tuple args, dict kwargs, int on_full, double timeout,
                        int64_t deadline_ns)
    cdef object _submit_full(self, _PyTask task, fut, int on_full, double timeout)
    cdef object _run_inline(self, _PyTask task, fut)


# -- The cimport API for nogil native work (``from ringpool cimport ...``) ----
# Get the engine of a Pool once, with the GIL (keep the Pool alive while you
# use it), then call the nogil functions. Signatures: ringpool.h.
cdef rp_pool *pool_handle(object pool) except NULL
cdef int submit_native_nogil(rp_pool *p, rp_native_fn fn, void *arg, rp_batch **out) noexcept nogil
cdef int submit_native_many_nogil(rp_pool *p, rp_native_fn fn, void **args, int64_t n,
                                  rp_batch **out) noexcept nogil
cdef int native_batch_wait(rp_batch *b, double timeout) noexcept nogil
cdef int32_t native_batch_status(rp_batch *b, int64_t i) noexcept nogil
cdef void native_batch_release(rp_batch *b) noexcept nogil
cdef int parallel_for_nogil(rp_pool *p, int64_t n, rp_kernel_fn kernel, void *arg,
                            int64_t grain) noexcept nogil
