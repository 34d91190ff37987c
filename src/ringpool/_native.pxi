# Native tasks: submit_native, parallel_for, submit_native_many, and the
# cimport API. Included by _core.pyx: one extension module, so one copy of
# the engine (its thread-locals and counters) serves Python and native tasks.
#
# A native function runs on a worker with the GIL released; the GIL is taken
# only to complete a Future (submit_native). Batches and parallel_for touch
# no Python object at all between submit and completion.

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_WRITABLE, PyBUF_ND
from cpython.buffer cimport PyBUF_FORMAT, PyBUF_C_CONTIGUOUS, PyBUF_SIMPLE
from cpython.pycapsule cimport PyCapsule_CheckExact, PyCapsule_GetName, PyCapsule_GetPointer, PyCapsule_New
from libc.stdint cimport uintptr_t, intptr_t, int32_t
from libc.string cimport strcmp

from ringpool.errors import NativeTaskError

cdef enum:
    _SIG_TASK = 0
    _SIG_KERNEL = 1

cdef object _ctypes_module = None
cdef object _cffi_ffi = None
cdef uintptr_t _MAX_ADDRESS = <uintptr_t>-1
cdef char *_FORMAT_I32 = "i"


cdef object _ctypes():
    global _ctypes_module
    if _ctypes_module is None:
        import ctypes
        _ctypes_module = ctypes
    return _ctypes_module


cdef bint _is_pointer_type(ct, t):
    return t is ct.c_void_p or t is ct.c_char_p or (isinstance(t, type) and issubclass(t, ct._Pointer))


cdef bint _is_int64_type(ct, t):
    return t in (ct.c_int64, ct.c_longlong, ct.c_long, ct.c_ssize_t) and ct.sizeof(t) == 8


cdef void *_ctypes_pointer(fn, int sig, str param) except NULL:
    ct = _ctypes()
    want = "(c_void_p, c_void_p)" if sig == _SIG_TASK else "(c_int64, c_int64, c_void_p, c_void_p)"
    restype = fn.restype
    if restype is not ct.c_int and restype is not ct.c_int32:
        raise TypeError("%s: a ctypes function must return ctypes.c_int, not %r" % (param, restype))
    argtypes = fn.argtypes
    if argtypes is None:
        raise TypeError("%s: set its argtypes to %s so that its signature can be checked"
                        % (param, want))
    argtypes = tuple(argtypes)
    ok = False
    if sig == _SIG_TASK:
        ok = len(argtypes) == 2 and all(_is_pointer_type(ct, t) for t in argtypes)
    else:
        ok = (len(argtypes) == 4 and _is_int64_type(ct, argtypes[0]) and _is_int64_type(ct, argtypes[1])
              and _is_pointer_type(ct, argtypes[2]) and _is_pointer_type(ct, argtypes[3]))
    if not ok:
        raise TypeError("%s: argtypes %r do not match the signature %s"
                        % (param, argtypes, (RP_NATIVE_FN_SIGNATURE if sig == _SIG_TASK
                                             else RP_KERNEL_FN_SIGNATURE).decode()))
    addr = ct.cast(fn, ct.c_void_p).value
    if not addr:
        raise ValueError("%s: NULL function pointer" % param)
    return <void*><uintptr_t>addr


cdef void *_cffi_pointer(fn, int sig, str param) except NULL:
    global _cffi_ffi
    if _cffi_ffi is None:
        import _cffi_backend
        _cffi_ffi = _cffi_backend.FFI()
    ffi = _cffi_ffi
    t = ffi.typeof(fn)
    if t.kind != "function":
        raise TypeError("%s: a cffi %s is not a function pointer" % (param, t.cname))
    args = t.args
    ok = t.result.cname in ("int", "int32_t") and not t.ellipsis
    if sig == _SIG_TASK:
        ok = ok and len(args) == 2 and all(a.kind == "pointer" for a in args)
    else:
        ok = (ok and len(args) == 4 and all(a.kind == "primitive" and ffi.sizeof(a) == 8
                                            and a.cname in ("int64_t", "long", "long long", "ssize_t",
                                                            "intptr_t", "ptrdiff_t")
                                            for a in args[:2])
              and all(a.kind == "pointer" for a in args[2:]))
    if not ok:
        raise TypeError("%s: cffi type %s does not match the signature %s"
                        % (param, t.cname, (RP_NATIVE_FN_SIGNATURE if sig == _SIG_TASK
                                            else RP_KERNEL_FN_SIGNATURE).decode()))
    addr = int(ffi.cast("uintptr_t", fn))
    if not addr:
        raise ValueError("%s: NULL function pointer" % param)
    return <void*><uintptr_t>addr


cdef void *_fn_pointer(fn, int sig, str param) except NULL:
    """The C address of a native function given as a PyCapsule (its name
    states the signature), a ctypes or cffi function pointer (checked against
    the signature), a numba @cfunc (via its .ctypes), or an integer address
    (trusted: nothing to check)."""
    cdef const char *want = RP_NATIVE_FN_SIGNATURE if sig == _SIG_TASK else RP_KERNEL_FN_SIGNATURE
    cdef const char *name
    cdef void *ptr
    if PyCapsule_CheckExact(fn):
        name = PyCapsule_GetName(fn)
        if name == NULL or strcmp(name, want) != 0:
            raise TypeError("%s: the capsule's name %r does not state the signature %r"
                            % (param, None if name == NULL else name.decode(), want.decode()))
        ptr = PyCapsule_GetPointer(fn, name)
        if ptr == NULL:
            raise ValueError("%s: the capsule holds a NULL pointer" % param)
        return ptr
    if isinstance(fn, bool):
        raise TypeError("%s must be a native function, not bool" % param)
    if isinstance(fn, int):
        if fn <= 0 or fn > _MAX_ADDRESS:
            raise ValueError("%s: %r is not a valid function address" % (param, fn))
        return <void*><uintptr_t>fn
    if type(fn).__module__ == "_cffi_backend":
        return _cffi_pointer(fn, sig, param)
    ct = _ctypes()
    if isinstance(fn, ct._CFuncPtr):
        return _ctypes_pointer(fn, sig, param)
    alt = getattr(fn, "ctypes", None)  # numba @cfunc: .ctypes carries the signature
    if alt is not None and isinstance(alt, ct._CFuncPtr):
        return _ctypes_pointer(alt, sig, param)
    raise TypeError("%s must be a PyCapsule named %r, a ctypes or cffi function pointer, a numba "
                    "@cfunc or an integer address, not %s" % (param, want.decode(), type(fn).__name__))


@cython.final
cdef class _Pin:
    """Holds a buffer export: the memory stays put until this is released."""
    cdef Py_buffer view
    cdef bint held

    cdef int take(self, obj, int flags) except -1:
        PyObject_GetBuffer(obj, &self.view, flags)
        self.held = True
        return 0

    cdef void release(self) noexcept:
        if self.held:
            self.held = False
            PyBuffer_Release(&self.view)

    def __dealloc__(self):
        self.release()


cdef void *_arg_pointer(arg, list pins, str param) except? NULL:
    """None -> NULL; an int -> that address; a buffer -> its first byte,
    pinned (the pin goes into `pins`) until the task ends."""
    if arg is None:
        return NULL
    if isinstance(arg, bool):
        raise TypeError("%s must be None, an integer address or a buffer, not bool" % param)
    if isinstance(arg, int):
        if arg < 0 or arg > _MAX_ADDRESS:
            raise ValueError("%s: %r is not a valid address" % (param, arg))
        return <void*><uintptr_t>arg
    cdef _Pin pin = _Pin()
    try:
        pin.take(arg, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS)
    except (BufferError, ValueError):  # numpy says ValueError for read-only or strided arrays
        try:
            pin.take(arg, PyBUF_C_CONTIGUOUS)  # read-only (bytes, frozen arrays): fine for readers
        except (BufferError, ValueError) as exc:
            raise ValueError("%s: the buffer must be C-contiguous (%s)" % (param, exc)) from None
        except TypeError:
            raise TypeError("%s must be None, an integer address or an object supporting the "
                            "buffer protocol, not %s" % (param, type(arg).__name__)) from None
    except TypeError:
        raise TypeError("%s must be None, an integer address or an object supporting the buffer "
                        "protocol, not %s" % (param, type(arg).__name__)) from None
    pins.append(pin)
    return pin.view.buf


# -- one native task, one Future ---------------------------------------------

cdef int _native_task_run(rp_task *t, rp_worker *w) noexcept nogil:
    cdef worker_state *ws = <worker_state*>rp_worker_local(w)
    cdef native_call *nc = <native_call*>t
    cdef rp_task_ctx ctx
    if ws.holding:  # the GIL stays free while native code runs
        ws.tstate = PyEval_SaveThread()
        ws.holding = 0
    ctx.worker = <int>rp_worker_index(w)
    ctx.cancel = <const int*>&t.cancel
    ctx.deadline_ns = t.deadline_ns if t.deadline_ns > 0 else 0
    ctx.reserved = NULL
    cdef int code = nc.fn(nc.arg, &ctx)
    # Completing the Future needs the GIL: keep it (sticky) for what follows.
    PyEval_RestoreThread(ws.tstate)
    ws.holding = 1
    if ws.deferred != NULL:
        rp_decref(ws.deferred)
        ws.deferred = NULL
    _native_task_finish(<PyObject*>t.data, code)
    t.state = RP_TASK_DONE
    rp_decref(t.data)  # the ring's reference
    return RP_OUTCOME_COMPLETED if code == 0 else RP_OUTCOME_FAILED


cdef void _native_task_finish(PyObject *tp, int code) noexcept with gil:
    cdef _PyTask task = <_PyTask>tp
    fut = task.future
    task.future = task.fn = task.args = task.kwargs = None  # unpins the buffers
    try:
        if code == 0:
            fut._finish(0, None)
        else:
            fut._finish(None, NativeTaskError(code))
    except BaseException:
        _unraisable("ringpool: completing a native task's future")


cdef int _run_native_inline(rp_native_fn fn, void *arg) noexcept:
    """on_full="caller_runs": the submitting thread runs it, GIL released."""
    cdef int flag = 0
    cdef rp_task_ctx ctx
    ctx.worker = -1
    ctx.cancel = &flag
    ctx.deadline_ns = 0
    ctx.reserved = NULL
    cdef int code
    with nogil:
        code = fn(arg, &ctx)
    return code


cdef rp_task_ops NATIVE_TASK_OPS
NATIVE_TASK_OPS.run = _native_task_run
NATIVE_TASK_OPS.discard = _py_task_discard  # same bookkeeping: cancel the Future
NATIVE_TASK_OPS.timer = NULL                # native tasks take no deadline (yet)


# -- batches -----------------------------------------------------------------

@cython.final
cdef class NativeBatch:
    """The handle of ``Pool.submit_native_many``: one object for many native
    calls, with a per-item status array and no Python object per item.

    ``statuses`` is a read-only int32 buffer (``memoryview``/``numpy.asarray``):
    each entry is the call's return code, or ``RP_STATUS_NOT_RUN`` for items
    that never ran (cancelled, or the pool shut down with
    ``cancel_futures=True``); entries are final once ``done()``. Dropping an
    unfinished batch cancels the items that have not started and waits for
    the running ones (the argument buffers must outlive them).
    """

    cdef rp_batch *batch
    cdef object fn        # keeps the function's owner (library, capsule) alive
    cdef list pins        # argument buffers, pinned until the batch ends
    cdef object keep
    cdef Py_ssize_t shape[1]
    cdef Py_ssize_t strides[1]

    def __init__(self, *args):
        raise TypeError("NativeBatch objects come from Pool.submit_native_many()")

    def __dealloc__(self):
        cdef rp_batch *b = self.batch
        if b == NULL:
            return
        self.batch = NULL
        with nogil:
            if not rp_batch_done(b):
                rp_batch_cancel(b)
                rp_batch_wait(b, -1)
            rp_batch_release(b)

    def __len__(self):
        return rp_batch_size(self.batch)

    def done(self):
        """True once every item has run or been cancelled."""
        return bool(rp_batch_done(self.batch))

    def wait(self, timeout=None):
        """Block (GIL released) until done; False if ``timeout`` seconds pass first."""
        cdef int64_t deadline = -1
        if timeout is not None:
            deadline = rp_now_ns() + <int64_t>(max(float(timeout), 0.0) * 1e9)
        cdef int rc
        while True:
            with nogil:
                rc = rp_batch_wait(self.batch, _slice_end(deadline))
            if rc == RP_OK:
                return True
            if deadline >= 0 and rp_now_ns() >= deadline:
                return False
            if PyThread_get_thread_ident() == _main_ident:
                PyErr_CheckSignals()

    def result(self, timeout=None):
        """Wait, then return None if every item returned 0; else raise
        ``NativeTaskError`` with the first failing item's code (``.index``
        names the item), or ``concurrent.futures.CancelledError`` if items
        never ran and none failed. ``concurrent.futures.TimeoutError`` (the
        builtin ``TimeoutError`` from 3.11) if ``timeout`` passes, as
        ``Future.result``."""
        if not self.wait(timeout):
            raise _TimeoutError()
        cdef const int32_t *st = rp_batch_status(self.batch)
        cdef int64_t i, n = rp_batch_size(self.batch)
        if rp_batch_failed(self.batch) != 0:
            for i in range(n):
                if st[i] != 0 and st[i] != RP_STATUS_NOT_RUN:
                    err = NativeTaskError(st[i], "native task %d of %d failed with code %d"
                                          % (i, n, st[i]))
                    err.index = i
                    raise err
        if rp_batch_not_run(self.batch) != 0:
            raise _CancelledError("%d of %d native tasks never ran" % (rp_batch_not_run(self.batch), n))
        return None

    def cancel(self):
        """Items not yet started never run (status ``RP_STATUS_NOT_RUN``);
        running ones see their cancellation flag set. Returns False if the
        batch was already done."""
        if rp_batch_done(self.batch):
            return False
        with nogil:
            rp_batch_cancel(self.batch)
        return True

    @property
    def failed(self):
        """Items that returned a non-zero code (final once done)."""
        return rp_batch_failed(self.batch)

    @property
    def not_run(self):
        """Items that never ran (final once done)."""
        return rp_batch_not_run(self.batch)

    @property
    def statuses(self):
        """The per-item return codes, as a read-only int32 memoryview."""
        return memoryview(self)

    def __getbuffer__(self, Py_buffer *view, int flags):
        if flags & PyBUF_WRITABLE:
            raise BufferError("NativeBatch.statuses is read-only")
        self.shape[0] = rp_batch_size(self.batch)
        self.strides[0] = sizeof(int32_t)
        view.buf = <void*>rp_batch_status(self.batch)
        view.obj = self
        view.len = self.shape[0] * sizeof(int32_t)
        view.readonly = 1
        view.itemsize = sizeof(int32_t)
        view.format = NULL
        if flags & PyBUF_FORMAT:
            view.format = _FORMAT_I32
        view.ndim = 1
        view.shape = self.shape if (flags & PyBUF_ND) else NULL
        view.strides = self.strides if (flags & PyBUF_ND) else NULL
        view.suboffsets = NULL
        view.internal = NULL

    def __releasebuffer__(self, Py_buffer *view):
        pass

    def __repr__(self):
        return "<NativeBatch n=%d %s failed=%d not_run=%d>" % (
            rp_batch_size(self.batch), "done" if rp_batch_done(self.batch) else "running",
            rp_batch_failed(self.batch), rp_batch_not_run(self.batch))


cdef int64_t _as_index(obj, str param, int64_t minimum) except? -1:
    if isinstance(obj, bool) or not isinstance(obj, int):
        raise TypeError("%s must be an int, not %s" % (param, type(obj).__name__))
    if obj < minimum:
        raise ValueError("%s must be >= %d, got %r" % (param, minimum, obj))
    if obj > 0x3FFFFFFFFFFFFFFF:
        raise ValueError("%s is too large: %r" % (param, obj))
    return obj


# -- the cimport API (declared in _core.pxd, exported to Cython users) --------

cdef rp_pool *pool_handle(object pool) except NULL:
    """The engine of a ringpool.Pool, for the nogil functions below. Borrowed:
    keep the Pool object alive (and not shut down) while you use it."""
    if not isinstance(pool, NativePool):
        raise TypeError("pool must be a ringpool.Pool, not %s" % type(pool).__name__)
    cdef NativePool np = <NativePool>pool
    if np.pool == NULL or np.shutdown_started:
        np._raise_closed()
    return np.pool


cdef int submit_native_nogil(rp_pool *p, rp_native_fn fn, void *arg, rp_batch **out) noexcept nogil:
    """Runs fn(arg, ctx) once on the pool. RP_OK with *out to wait on and
    release (native_batch_wait / native_batch_status / native_batch_release),
    or an RP_E* status."""
    # The "range" form with step 0 passes arg itself: no array to keep alive.
    return rp_batch_submit(p, fn, NULL, <int64_t><intptr_t>arg, 0, 1, 1, 1, out)


cdef int submit_native_many_nogil(rp_pool *p, rp_native_fn fn, void **args, int64_t n,
                                  rp_batch **out) noexcept nogil:
    """Runs fn(args[i], ctx) for i in [0, n). `args` must stay valid until the
    batch is done; NULL means fn((void*)i, ctx)."""
    if args == NULL:
        return rp_batch_submit(p, fn, NULL, 0, 1, n, 0, 0, out)
    return rp_batch_submit(p, fn, args, 0, 0, n, 0, 0, out)


cdef int native_batch_wait(rp_batch *b, double timeout) noexcept nogil:
    """RP_OK once done, RP_ETIMEDOUT after `timeout` seconds (< 0: no limit)."""
    return rp_batch_wait(b, -1 if timeout < 0 else rp_now_ns() + <int64_t>(timeout * 1e9))


cdef int32_t native_batch_status(rp_batch *b, int64_t i) noexcept nogil:
    """Item i's return code (RP_STATUS_NOT_RUN if it never ran); final once done."""
    return rp_batch_status(b)[i]


cdef void native_batch_release(rp_batch *b) noexcept nogil:
    rp_batch_release(b)


cdef int parallel_for_nogil(rp_pool *p, int64_t n, rp_kernel_fn kernel, void *arg,
                            int64_t grain) noexcept nogil:
    """kernel over [0, n) on the pool and this thread; returns 0, the first
    non-zero kernel code, or a negative RP_E* status (bad arguments, no memory)."""
    cdef int code = 0
    cdef int rc = rp_parallel_for(p, n, grain, kernel, arg, &code)
    if rc != RP_OK:
        return rc  # RP_E* statuses are negative
    return code


# -- built-in native functions, for smoke tests where no compiler exists ------

cdef extern from *:
    """
    #include <stdatomic.h>
    static int rp_selftest_return_arg(void *arg, rp_task_ctx *ctx) {
        (void)ctx;
        return (int)(intptr_t)arg;
    }
    static int rp_selftest_add_one(void *arg, rp_task_ctx *ctx) {
        (void)ctx;
        atomic_fetch_add_explicit((_Atomic int64_t *)arg, 1, memory_order_relaxed);
        return 0;
    }
    static int rp_selftest_count(int64_t begin, int64_t end, void *arg, rp_task_ctx *ctx) {
        (void)ctx;
        atomic_fetch_add_explicit((_Atomic int64_t *)arg, end - begin, memory_order_relaxed);
        return 0;
    }
    """
    int rp_selftest_return_arg(void *arg, rp_task_ctx *ctx) noexcept nogil
    int rp_selftest_add_one(void *arg, rp_task_ctx *ctx) noexcept nogil
    int rp_selftest_count(int64_t begin, int64_t end, void *arg, rp_task_ctx *ctx) noexcept nogil


def _selftest_functions():
    """PyCapsules of three native functions built into the extension:
    ``return_arg`` (returns its arg as the code), ``add_one`` (atomically
    increments the int64 its arg points to) and the kernel ``count`` (adds
    end - begin to the int64 its arg points to). For smoke tests of the native
    path where no C compiler is available (wheel tests)."""
    return {
        "return_arg": PyCapsule_New(<void*>rp_selftest_return_arg, RP_NATIVE_FN_SIGNATURE, NULL),
        "add_one": PyCapsule_New(<void*>rp_selftest_add_one, RP_NATIVE_FN_SIGNATURE, NULL),
        "count": PyCapsule_New(<void*>rp_selftest_count, RP_KERNEL_FN_SIGNATURE, NULL),
    }
