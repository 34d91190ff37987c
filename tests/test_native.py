"""Native tasks: ``submit_native``, ``submit_native_many`` and ``parallel_for``.

The C test kernels (``tests/native/rp_test_kernels.c``) are compiled once per
module with the system C compiler and loaded with ctypes; without a compiler
the whole module is skipped. Each test makes its own pools (``pool_factory``),
so the autouse leak guard of ``conftest.py`` checks every one of them.

Workers are held with Python tasks waiting on an :class:`threading.Event`
(the ``gate`` fixture) wherever a test needs a task to be queued, never
with sleeps; every time limit is a generous bound that only catches hangs.
"""

from __future__ import annotations

import array
import concurrent.futures
import ctypes
import gc
import shlex
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
import weakref
from pathlib import Path

import pytest

import ringpool
from ringpool import NativeTaskError, PoolClosed

np = pytest.importorskip("numpy")

pytestmark = pytest.mark.timeout(120)

#: Upper bound for anything that should happen "at once" (catches hangs only).
T = 30.0

ROOT = Path(__file__).resolve().parent.parent
KERNELS_C = ROOT / "tests" / "native" / "rp_test_kernels.c"
INCLUDE = ROOT / "src" / "ringpool" / "include"

TASK_SIG = b"int (void *, rp_task_ctx *)"
KERNEL_SIG = b"int (int64_t, int64_t, void *, rp_task_ctx *)"
RP_STATUS_NOT_RUN = -(2**31)

TASKS = ("rpk_noop", "rpk_return_arg", "rpk_add_one", "rpk_check_pattern", "rpk_sleep_ms",
         "rpk_spin_until_cancel", "rpk_record_worker")
KERNELS = ("rpk_k_mark", "rpk_k_count", "rpk_k_fail_at", "rpk_k_work")

TASK_ARGTYPES = (ctypes.c_void_p, ctypes.c_void_p)
KERNEL_ARGTYPES = (ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p)

_PyCapsule_New = ctypes.pythonapi.PyCapsule_New
_PyCapsule_New.restype = ctypes.py_object
_PyCapsule_New.argtypes = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p)

#: Capsule names: a capsule stores the char pointer, not a copy, so the bytes
#: objects must outlive every capsule made in this module.
_CAPSULE_NAMES: dict[bytes, bytes] = {}


# ---------------------------------------------------------------------------
# the kernel library
# ---------------------------------------------------------------------------

def _compiler() -> list[str] | None:
    cc = sysconfig.get_config_var("CC")
    candidates = []
    if cc:
        candidates.append(shlex.split(cc))
    candidates.append(["cc"])
    for cmd in candidates:
        if cmd and shutil.which(cmd[0]):
            return cmd
    return None


class Kernels:
    """The compiled test kernels, in every form the pool accepts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lib = ctypes.CDLL(str(path))
        self.lib.rpk_fn_address.restype = ctypes.c_void_p
        self.lib.rpk_fn_address.argtypes = (ctypes.c_char_p,)
        for name in TASKS:
            self.ctypes(name)  # configure the cached attributes too
        for name in KERNELS:
            self.ctypes(name)
        self._cffi = None

    @staticmethod
    def signature(name: str) -> bytes:
        return KERNEL_SIG if name in KERNELS else TASK_SIG

    def ctypes(self, name: str):
        """The cached ``lib.<name>``, with restype and argtypes set."""
        fn = getattr(self.lib, name)
        fn.restype = ctypes.c_int
        fn.argtypes = KERNEL_ARGTYPES if name in KERNELS else TASK_ARGTYPES
        return fn

    def fresh(self, name: str):
        """A new, unconfigured ctypes function object (restype c_int, argtypes None)."""
        return self.lib[name]

    def address(self, name: str) -> int:
        addr = self.lib.rpk_fn_address(name.encode())
        assert addr, name
        return addr

    def cast_address(self, name: str) -> int:
        return ctypes.cast(self.ctypes(name), ctypes.c_void_p).value

    def capsule(self, name: str, signature: bytes | None = None):
        sig = self.signature(name) if signature is None else signature
        sig = _CAPSULE_NAMES.setdefault(sig, sig)
        return _PyCapsule_New(self.address(name), sig, None)

    def cffi(self):
        """(ffi, lib) for the kernel library, or skip when cffi is absent."""
        if self._cffi is None:
            cffi = pytest.importorskip("cffi")
            ffi = cffi.FFI()
            ffi.cdef("\n".join(
                [f"int {n}(void *, void *);" for n in TASKS]
                + [f"int {n}(int64_t, int64_t, void *, void *);" for n in KERNELS]))
            self._cffi = (ffi, ffi.dlopen(str(self.path)))
        return self._cffi

    def cffi_cast(self, name: str):
        ffi, _ = self.cffi()
        ctype = ("int(*)(int64_t, int64_t, void *, void *)" if name in KERNELS
                 else "int(*)(void *, void *)")
        return ffi.cast(ctype, self.address(name))

    def cffi_dlopen(self, name: str):
        _, lib = self.cffi()
        return getattr(lib, name)


@pytest.fixture(scope="module")
def kernels(tmp_path_factory) -> Kernels:
    if not KERNELS_C.exists():
        pytest.skip(f"{KERNELS_C} is missing")
    cc = _compiler()
    if cc is None:
        pytest.skip("no C compiler (sysconfig CC or cc) to build the native test kernels")
    ext = ".dll" if sys.platform == "win32" else ".so"
    out = tmp_path_factory.mktemp("rpk") / f"rp_test_kernels{ext}"
    cmd = [*cc, "-O2", "-shared", "-fPIC", "-I", str(INCLUDE), str(KERNELS_C), "-o", str(out)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot run the C compiler {cc!r}: {exc}")
    if proc.returncode != 0:
        pytest.skip(f"compiling the native test kernels failed ({shlex.join(cmd)}):\n{proc.stderr}")
    return Kernels(out)


#: name -> (kernels, function name) -> the function in that form
FORMS = {
    "capsule": lambda k, n: k.capsule(n),
    "ctypes": lambda k, n: k.ctypes(n),
    "address": lambda k, n: k.address(n),
    "ctypes_cast_address": lambda k, n: k.cast_address(n),
    "cffi_cast": lambda k, n: k.cffi_cast(n),
    "cffi_dlopen": lambda k, n: k.cffi_dlopen(n),
}


@pytest.fixture(params=list(FORMS))
def as_form(request, kernels):
    """``as_form(name)``: the kernel ``name`` in the parametrized pointer form."""
    make = FORMS[request.param]
    return lambda name: make(kernels, name)


# ---------------------------------------------------------------------------
# known bugs (remove the marker once fixed: the tests are strict xfails)
# ---------------------------------------------------------------------------

#: Markers once used for two bugs these tests found, both fixed:
#: - batch runners and parallel_for helpers ran native code with the GIL held
#:   on a worker that kept it stickily (fresh worker, or after a Python task):
#:   the engine now calls hooks->worker_nogil before RP_OPS_NOGIL tasks;
#: - read-only numpy arrays were refused as arg (numpy raises ValueError, not
#:   BufferError): _arg_pointer now retries read-only on either.
#: The tests that were strict xfails for them are plain tests now.


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def wait_until(predicate, timeout: float = T, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.002)


def _hold(gate: threading.Event) -> str:
    gate.wait(T * 2)
    return "held"


def occupy(pool, gate, workers: int) -> list:
    """Occupy every worker with a held Python task."""
    futs = [pool.submit(_hold, gate) for _ in range(workers)]
    wait_until(lambda: pool.stats().running == workers, what=f"{workers} running tasks")
    return futs


def warm(pool, workers: int) -> None:
    """Start ``workers`` workers and let each finish a Python task (tests
    that time native work keep thread start-up out of the window)."""
    barrier = threading.Barrier(workers, timeout=T)
    for f in [pool.submit(barrier.wait) for _ in range(workers)]:
        f.result(T)
    quiesce(pool)


def quiesce(pool) -> ringpool.PoolStats:
    """Wait until nothing is queued or running and the counters add up."""
    def idle():
        s = pool.stats()
        return s.queued == 0 and s.running == 0 and s.accounted
    wait_until(idle, what="an idle, accounted pool")
    return pool.stats()


def pattern(n: int):
    """What rpk_check_pattern expects: a[0] == n, a[i] == 7 * i."""
    a = np.arange(n + 1, dtype=np.int64) * 7
    a[0] = n
    return a


def churn(n: int) -> list:
    """Allocate (and fill) memory of the sizes just freed, so that a freed
    argument buffer would be overwritten."""
    return [np.full(n + 1, -1, dtype=np.int64) for _ in range(64)] + [bytearray(b"\xff" * 8 * (n + 1))
                                                                      for _ in range(64)]


class Token:
    """A weak-referenceable object."""


class Counter(threading.Thread):
    """A Python thread that increments ``self.count`` as fast as it can."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.count = 0
        self.stop = False

    def run(self) -> None:
        while not self.stop:
            self.count += 1

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop = True
        self.join(T)


# ---------------------------------------------------------------------------
# 1. pointer forms
# ---------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_submit_native_accepts_every_form(pool_factory, as_form):
    pool = pool_factory(2)
    assert pool.submit_native(as_form("rpk_return_arg"), 0).result(T) == 0
    with pytest.raises(NativeTaskError) as info:
        pool.submit_native(as_form("rpk_return_arg"), 9).result(T)
    assert info.value.code == 9
    counter = np.zeros(1, dtype=np.int64)
    futs = [pool.submit_native(as_form("rpk_add_one"), counter) for _ in range(50)]
    assert [f.result(T) for f in futs] == [0] * 50
    assert counter[0] == 50


@pytest.mark.timeout(60)
def test_parallel_for_accepts_every_form(pool_factory, as_form):
    pool = pool_factory(2)
    n = 1001
    counts = np.zeros(n, dtype=np.int32)
    assert pool.parallel_for(n, as_form("rpk_k_mark"), counts) is None
    assert (counts == 1).all()
    where = np.array([500], dtype=np.int64)
    with pytest.raises(NativeTaskError) as info:
        pool.parallel_for(n, as_form("rpk_k_fail_at"), where, grain=10)
    assert info.value.code == 42


@pytest.mark.timeout(60)
def test_submit_native_many_accepts_every_form(pool_factory, as_form):
    pool = pool_factory(2)
    batch = pool.submit_native_many(as_form("rpk_return_arg"), range(0, 20, 2))
    assert batch.wait(T)
    assert list(batch.statuses) == list(range(0, 20, 2))


@pytest.mark.timeout(60)
def test_numba_cfunc(pool_factory):
    numba = pytest.importorskip("numba")
    pool = pool_factory(2)

    @numba.cfunc("intc(voidptr, voidptr)")
    def ok(arg, ctx):
        return 0

    @numba.cfunc("intc(voidptr, voidptr)")
    def fails(arg, ctx):
        return 11

    @numba.cfunc("intc(int64, int64, voidptr, voidptr)")
    def kernel(begin, end, arg, ctx):
        return 5 if begin <= 77 < end else 0

    @numba.cfunc("intc(int64, int64, voidptr, voidptr)")
    def kernel_ok(begin, end, arg, ctx):
        return 0 if begin < end else 1

    assert pool.submit_native(ok).result(T) == 0
    with pytest.raises(NativeTaskError) as info:
        pool.submit_native(fails).result(T)
    assert info.value.code == 11
    pool.parallel_for(1000, kernel_ok, grain=7)
    with pytest.raises(NativeTaskError) as info:
        pool.parallel_for(1000, kernel, grain=7)
    assert info.value.code == 5
    batch = pool.submit_native_many(ok, 100)
    assert batch.result(T) is None
    with pytest.raises(TypeError):
        pool.submit_native(kernel)  # a kernel's signature is not a task's
    with pytest.raises(TypeError):
        pool.parallel_for(10, ok)


def _ctypes_with(k: Kernels, name: str, restype, argtypes):
    fn = k.fresh(name)
    fn.restype = restype
    if argtypes is not None:
        fn.argtypes = argtypes
    return fn


#: id -> (kernels -> fn, expected exception) for functions submit_native and
#: submit_native_many must refuse.
BAD_TASK_FNS = {
    "capsule_wrong_name": (lambda k: k.capsule("rpk_noop", b"int (void *, void *)"), TypeError),
    "capsule_kernel_name": (lambda k: k.capsule("rpk_noop", KERNEL_SIG), TypeError),
    "capsule_unnamed": (lambda k: _PyCapsule_New(k.address("rpk_noop"), None, None), TypeError),
    "ctypes_no_argtypes": (lambda k: k.fresh("rpk_noop"), TypeError),
    "ctypes_wrong_argtypes": (lambda k: _ctypes_with(k, "rpk_noop", ctypes.c_int,
                                                     (ctypes.c_int, ctypes.c_int)), TypeError),
    "ctypes_one_argtype": (lambda k: _ctypes_with(k, "rpk_noop", ctypes.c_int,
                                                  (ctypes.c_void_p,)), TypeError),
    "ctypes_kernel_argtypes": (lambda k: _ctypes_with(k, "rpk_noop", ctypes.c_int,
                                                      KERNEL_ARGTYPES), TypeError),
    "ctypes_wrong_restype": (lambda k: _ctypes_with(k, "rpk_noop", ctypes.c_double,
                                                    TASK_ARGTYPES), TypeError),
    "ctypes_void_restype": (lambda k: _ctypes_with(k, "rpk_noop", None, TASK_ARGTYPES), TypeError),
    "bool": (lambda k: True, TypeError),
    "str": (lambda k: "rpk_noop", TypeError),
    "bytes": (lambda k: b"rpk_noop", TypeError),
    "None": (lambda k: None, TypeError),
    "float": (lambda k: 1.5, TypeError),
    "python_function": (lambda k: (lambda arg, ctx: 0), TypeError),
    "zero": (lambda k: 0, ValueError),
    "negative": (lambda k: -1, ValueError),
    "too_big": (lambda k: 2**64, ValueError),
}

#: The same for parallel_for's kernel.
BAD_KERNEL_FNS = {
    "capsule_task_name": (lambda k: k.capsule("rpk_k_count", TASK_SIG), TypeError),
    "capsule_wrong_name": (lambda k: k.capsule("rpk_k_count", b"int (long, long, void *, void *)"),
                           TypeError),
    "ctypes_no_argtypes": (lambda k: k.fresh("rpk_k_count"), TypeError),
    "ctypes_task_argtypes": (lambda k: _ctypes_with(k, "rpk_k_count", ctypes.c_int, TASK_ARGTYPES),
                             TypeError),
    "ctypes_int32_bounds": (lambda k: _ctypes_with(k, "rpk_k_count", ctypes.c_int,
                                                   (ctypes.c_int32, ctypes.c_int32, ctypes.c_void_p,
                                                    ctypes.c_void_p)), TypeError),
    "ctypes_wrong_restype": (lambda k: _ctypes_with(k, "rpk_k_count", ctypes.c_int64,
                                                    KERNEL_ARGTYPES), TypeError),
    "bool": (lambda k: False, TypeError),
    "str": (lambda k: "rpk_k_count", TypeError),
    "None": (lambda k: None, TypeError),
    "zero": (lambda k: 0, ValueError),
    "negative": (lambda k: -5, ValueError),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", list(BAD_TASK_FNS))
def test_bad_task_fn_is_refused_at_submit(pool_factory, kernels, case):
    make, exc = BAD_TASK_FNS[case]
    fn = make(kernels)
    pool = pool_factory(2)
    before = pool.stats().submitted
    counter = np.zeros(1, dtype=np.int64)
    with pytest.raises(exc, match="fn"):
        pool.submit_native(fn, counter)
    with pytest.raises(exc, match="fn"):
        pool.submit_native_many(fn, 10)
    assert pool.stats().submitted == before
    # The pool is unharmed.
    assert pool.submit_native(kernels.ctypes("rpk_noop")).result(T) == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", list(BAD_KERNEL_FNS))
def test_bad_kernel_is_refused(pool_factory, kernels, case):
    make, exc = BAD_KERNEL_FNS[case]
    kernel = make(kernels)
    pool = pool_factory(2)
    before = pool.stats().submitted
    total = np.zeros(1, dtype=np.int64)
    with pytest.raises(exc, match="kernel"):
        pool.parallel_for(1000, kernel, total)
    assert total[0] == 0
    assert pool.stats().submitted == before


@pytest.mark.skipif(sys.platform == "win32", reason="cffi type names checked on POSIX only")
def test_bad_cffi_types_are_refused(pool_factory, kernels):
    ffi, _ = kernels.cffi()
    addr = kernels.address("rpk_noop")
    pool = pool_factory(1)
    before = pool.stats().submitted
    for ctype in ("int(*)(int, int)", "int(*)(void *)", "int(*)(void *, void *, ...)",
                  "void(*)(void *, void *)", "int(*)(int64_t, int64_t, void *, void *)"):
        with pytest.raises(TypeError, match="fn"):
            pool.submit_native(ffi.cast(ctype, addr))
    with pytest.raises(TypeError, match="fn"):
        pool.submit_native(ffi.cast("void *", addr))
    for ctype in ("int(*)(void *, void *)", "int(*)(int, int, void *, void *)",
                  "int(*)(double, double, void *, void *)"):
        with pytest.raises(TypeError, match="kernel"):
            pool.parallel_for(10, ffi.cast(ctype, addr))
    with pytest.raises(ValueError, match="NULL"):
        pool.submit_native(ffi.cast("int(*)(void *, void *)", 0))
    assert pool.stats().submitted == before


#: id -> (arg, expected exception) for args every entry point must refuse.
BAD_ARGS = {
    "object": (object(), TypeError),
    "str": ("abc", TypeError),
    "float": (1.5, TypeError),
    "bool": (True, TypeError),
    "list": ([1, 2], TypeError),
    "negative": (-1, ValueError),
    "too_big": (2**64, ValueError),
    "numpy_strided": (np.zeros(20, dtype=np.int64)[::2], ValueError),
    "memoryview_strided": (memoryview(bytearray(16))[::2], ValueError),
}


@pytest.mark.parametrize("case", list(BAD_ARGS))
def test_bad_arg_is_refused_at_submit(pool_factory, kernels, case):
    arg, exc = BAD_ARGS[case]
    pool = pool_factory(1)
    before = pool.stats().submitted
    with pytest.raises(exc):
        pool.submit_native(kernels.ctypes("rpk_noop"), arg)
    with pytest.raises(exc):
        pool.parallel_for(10, kernels.ctypes("rpk_k_count"), arg)
    assert pool.stats().submitted == before


def test_accepted_arg_forms(pool_factory, kernels):
    pool = pool_factory(2)
    noop = kernels.ctypes("rpk_noop")
    check = kernels.ctypes("rpk_check_pattern")
    p = pattern(5)
    assert pool.submit_native(noop, None).result(T) == 0
    assert pool.submit_native(noop, 12345).result(T) == 0  # an address: never dereferenced
    assert pool.submit_native(check, p).result(T) == 0
    assert pool.submit_native(check, p.ctypes.data, keep=[p]).result(T) == 0
    assert pool.submit_native(check, bytes(p.tobytes())).result(T) == 0  # read-only buffer
    assert pool.submit_native(check, bytearray(p.tobytes())).result(T) == 0
    assert pool.submit_native(check, memoryview(bytearray(p.tobytes()))).result(T) == 0
    assert pool.submit_native(check, array.array("q", p.tolist())).result(T) == 0
    with pytest.raises(NativeTaskError) as info:
        pool.submit_native(check, None).result(T)
    assert info.value.code == 3
    bad = pattern(5)
    bad[3] = 0
    with pytest.raises(NativeTaskError) as info:
        pool.submit_native(check, bad).result(T)
    assert info.value.code == 2


def test_readonly_numpy_arg(pool_factory, kernels):
    pool = pool_factory(1)
    p = pattern(5)
    p.flags.writeable = False
    assert pool.submit_native(kernels.ctypes("rpk_check_pattern"), p).result(T) == 0


# ---------------------------------------------------------------------------
# 2. error codes
# ---------------------------------------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize("code", [1, 5, -1, 255, 2**31 - 1, -(2**31)])
def test_error_code_propagates(pool_factory, kernels, code):
    pool = pool_factory(2)
    fn = kernels.ctypes("rpk_return_arg")
    with pytest.raises(NativeTaskError) as info:
        pool.submit_native(fn, code & (2**64 - 1)).result(T)
    assert info.value.code == code
    assert isinstance(info.value, ringpool.RingpoolError)
    fut = pool.submit_native(fn, 0)
    assert fut.result(T) == 0
    assert fut.exception() is None


def test_error_counts_in_stats(pool_factory, kernels):
    pool = pool_factory(2)
    fn = kernels.ctypes("rpk_return_arg")
    futs = [pool.submit_native(fn, i % 2) for i in range(100)]
    concurrent.futures.wait(futs, timeout=T)
    assert sum(1 for f in futs if f.exception() is not None) == 50
    s = quiesce(pool)
    assert s.submitted == 100 and s.completed == 50 and s.failed == 50


# ---------------------------------------------------------------------------
# 3. argument lifetimes
# ---------------------------------------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["numpy", "bytearray", "array", "memoryview"])
def test_dropped_buffer_stays_alive_until_done(pool_factory, kernels, kind):
    pool = pool_factory(2)
    n = 4096
    pat = pattern(n)
    if kind == "numpy":
        buf = pat
    elif kind == "bytearray":
        buf = bytearray(pat.tobytes())
    elif kind == "array":
        buf = array.array("q", pat.tolist())
    else:
        buf = memoryview(bytearray(pat.tobytes()))
    del pat
    fut = pool.submit_native(kernels.ctypes("rpk_check_pattern"), buf)
    del buf
    gc.collect()
    junk = churn(n)
    assert fut.result(T) == 0
    del junk


@pytest.mark.timeout(120)
def test_many_dropped_buffers_concurrently(pool_factory, kernels):
    pool = pool_factory(4)
    check = kernels.ctypes("rpk_check_pattern")
    makers = [lambda p: p, lambda p: bytearray(p.tobytes()), lambda p: array.array("q", p.tolist())]
    futs = []
    for i in range(300):
        futs.append(pool.submit_native(check, makers[i % 3](pattern(100 + i))))
        if i % 50 == 0:
            gc.collect()
            junk = churn(100 + i)
            del junk
    done, not_done = concurrent.futures.wait(futs, timeout=T * 2)
    assert not not_done
    assert [f.result() for f in futs] == [0] * 300


@pytest.mark.timeout(60)
def test_buffer_pinned_until_completion_then_released(pool_factory, kernels, gate):
    pool = pool_factory(1)
    occupy(pool, gate, 1)
    arr = pattern(10)
    ref = weakref.ref(arr)
    fut = pool.submit_native(kernels.ctypes("rpk_check_pattern"), arr)
    del arr
    gc.collect()
    assert ref() is not None, "the pool dropped an argument buffer of a queued task"
    gate.set()
    assert fut.result(T) == 0
    wait_until(lambda: gc.collect() is not None and ref() is None,
               what="the argument buffer to be released after completion")


@pytest.mark.timeout(60)
def test_keep_holds_objects_until_completion(pool_factory, kernels, gate):
    pool = pool_factory(1)
    occupy(pool, gate, 1)
    tokens = [Token(), Token()]
    refs = [weakref.ref(t) for t in tokens]
    fut = pool.submit_native(kernels.ctypes("rpk_noop"), None, keep=tokens)
    del tokens
    gc.collect()
    assert all(r() is not None for r in refs), "keep= did not keep its objects alive"
    gate.set()
    assert fut.result(T) == 0
    wait_until(lambda: gc.collect() is not None and all(r() is None for r in refs),
               what="keep= objects to be released after completion")


@pytest.mark.timeout(60)
def test_keep_holds_objects_of_a_cancelled_task(pool_factory, kernels, gate):
    pool = pool_factory(1)
    occupy(pool, gate, 1)
    tok = Token()
    ref = weakref.ref(tok)
    arr = np.zeros(1, dtype=np.int64)
    aref = weakref.ref(arr)
    fut = pool.submit_native(kernels.ctypes("rpk_add_one"), arr, keep=(tok,))
    del tok, arr
    assert fut.cancel()
    gate.set()
    quiesce(pool)
    with pytest.raises(concurrent.futures.CancelledError):
        fut.result(T)
    del fut
    wait_until(lambda: gc.collect() is not None and ref() is None and aref() is None,
               what="a cancelled task's objects to be released")


@pytest.mark.timeout(60)
def test_batch_args_and_keep_pinned_while_running(pool_factory, kernels, gate):
    pool = pool_factory(1)
    occupy(pool, gate, 1)
    counter = np.zeros(1, dtype=np.int64)
    args = np.full(1000, counter.ctypes.data, dtype=np.uintp)
    tok = Token()
    refs = [weakref.ref(args), weakref.ref(tok), weakref.ref(counter)]
    batch = pool.submit_native_many(kernels.ctypes("rpk_add_one"), args, keep=[tok, counter])
    del args, tok, counter
    gc.collect()
    assert all(r() is not None for r in refs)
    gate.set()
    assert batch.result(T) is None
    assert refs[2]()[0] == 1000
    del batch
    wait_until(lambda: gc.collect() is not None and all(r() is None for r in refs),
               what="a batch's objects to be released")


# ---------------------------------------------------------------------------
# 4. parallel_for coverage
# ---------------------------------------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", [1, 2, 4])
@pytest.mark.parametrize("n", [0, 1, 2, 1001, 100003])
@pytest.mark.parametrize("grain", [None, 1, 7, "n+5"])
def test_parallel_for_covers_every_index_once(pool_factory, kernels, workers, n, grain):
    pool = pool_factory(workers)
    if grain == "n+5":
        grain = n + 5
    guard = 16
    counts = np.zeros(n + guard, dtype=np.int32)
    assert pool.parallel_for(n, kernels.ctypes("rpk_k_mark"), counts, grain=grain) is None
    assert (counts[:n] == 1).all(), np.flatnonzero(counts[:n] != 1)[:20]
    assert (counts[n:] == 0).all()


def test_parallel_for_zero_never_calls_the_kernel(pool_factory, kernels):
    pool = pool_factory(2)
    counts = np.zeros(8, dtype=np.int32)
    where = np.array([0], dtype=np.int64)
    for grain in (None, 1, 1000):
        pool.parallel_for(0, kernels.ctypes("rpk_k_mark"), counts, grain=grain)
        pool.parallel_for(0, kernels.ctypes("rpk_k_fail_at"), where, grain=grain)  # would fail
    assert (counts == 0).all()


def test_parallel_for_repeated_on_one_pool(pool_factory, kernels):
    pool = pool_factory(4)
    counts = np.zeros(10007, dtype=np.int32)
    mark = kernels.ctypes("rpk_k_mark")
    for i in range(200):
        pool.parallel_for(10007, mark, counts, grain=(None, 1, 13, 999)[i % 4])
    assert (counts == 200).all()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("n, grain", [(2**40, 2**30), (2**40, None), (2**40 + 12345, 2**33),
                                      (2**62 - 1, 2**56), (2**62 - 1, None), (10**9 + 7, 10**6)])
def test_parallel_for_huge_n(pool_factory, kernels, n, grain):
    pool = pool_factory(4)
    total = np.zeros(1, dtype=np.int64)
    pool.parallel_for(n, kernels.ctypes("rpk_k_count"), total, grain=grain)
    assert int(total[0]) == n


def test_parallel_for_records_disjoint_chunks(pool_factory):
    """A Python (ctypes callback) kernel sees every chunk: they are disjoint,
    no larger than grain, and cover [0, n)."""
    pool = pool_factory(3)
    chunks = []
    lock = threading.Lock()

    @ctypes.CFUNCTYPE(ctypes.c_int, *KERNEL_ARGTYPES)
    def record(begin, end, arg, ctx):
        with lock:
            chunks.append((begin, end))
        return 0

    n, grain = 1003, 10
    pool.parallel_for(n, record, grain=grain)
    chunks.sort()
    assert chunks[0][0] == 0 and chunks[-1][1] == n
    for (_, e0), (b1, _) in zip(chunks, chunks[1:], strict=False):
        assert e0 == b1
    assert all(0 < e - b <= grain for b, e in chunks)
    assert len(chunks) == (n + grain - 1) // grain


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", [1, 2, 4])
@pytest.mark.parametrize("fail_at", [0, 12345, 999_999])
def test_parallel_for_first_error(pool_factory, kernels, workers, fail_at):
    pool = pool_factory(workers)
    where = np.array([fail_at], dtype=np.int64)
    with pytest.raises(NativeTaskError) as info:
        pool.parallel_for(1_000_000, kernels.ctypes("rpk_k_fail_at"), where, grain=1)
    assert info.value.code == 42
    # The pool is fine afterwards.
    counts = np.zeros(1000, dtype=np.int32)
    pool.parallel_for(1000, kernels.ctypes("rpk_k_mark"), counts)
    assert (counts == 1).all()


@pytest.mark.timeout(60)
def test_parallel_for_error_skips_later_chunks(pool_factory, kernels):
    """2**40 chunks of one index: only a cancellation that skips the rest in
    bulk lets this return (one by one would take hours)."""
    pool = pool_factory(4)
    where = np.array([3], dtype=np.int64)
    t0 = time.monotonic()
    with pytest.raises(NativeTaskError) as info:
        pool.parallel_for(2**40, kernels.ctypes("rpk_k_fail_at"), where, grain=1)
    assert info.value.code == 42
    assert time.monotonic() - t0 < T


@pytest.mark.timeout(60)
def test_parallel_for_error_stops_chunks_not_started(pool_factory):
    pool = pool_factory(4)
    seen = []
    lock = threading.Lock()

    @ctypes.CFUNCTYPE(ctypes.c_int, *KERNEL_ARGTYPES)
    def fail_early(begin, end, arg, ctx):
        with lock:
            seen.append((begin, end))
        return 42 if begin <= 500 < end else 0

    n = 100_000
    with pytest.raises(NativeTaskError) as info:
        pool.parallel_for(n, fail_early, grain=10)
    assert info.value.code == 42
    covered = sum(e - b for b, e in seen)
    assert covered < n // 2, f"{covered} of {n} indices ran after an early failure"
    assert len(set(seen)) == len(seen)


@pytest.mark.parametrize("n, exc", [(-1, ValueError), (1.5, TypeError), (True, TypeError),
                                    ("10", TypeError), (None, TypeError), (2**63, ValueError)])
def test_parallel_for_bad_n(pool_factory, kernels, n, exc):
    pool = pool_factory(1)
    total = np.zeros(1, dtype=np.int64)
    with pytest.raises(exc, match=r"\bn\b"):
        pool.parallel_for(n, kernels.ctypes("rpk_k_count"), total)
    assert total[0] == 0


@pytest.mark.parametrize("grain, exc", [(0, ValueError), (-3, ValueError), (2.0, TypeError),
                                        (True, TypeError), ("7", TypeError)])
def test_parallel_for_bad_grain(pool_factory, kernels, grain, exc):
    pool = pool_factory(1)
    total = np.zeros(1, dtype=np.int64)
    with pytest.raises(exc, match="grain"):
        pool.parallel_for(10, kernels.ctypes("rpk_k_count"), total, grain=grain)
    assert total[0] == 0


# ---------------------------------------------------------------------------
# 5. nested parallel_for
# ---------------------------------------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", [1, 2, 4])
@pytest.mark.parametrize("grain", [None, 1, 64])
def test_parallel_for_nested_in_own_task(pool_factory, kernels, workers, grain):
    pool = pool_factory(workers)
    n = 10007
    counts = np.zeros(n, dtype=np.int32)
    mark = kernels.ctypes("rpk_k_mark")
    fut = pool.submit(lambda: pool.parallel_for(n, mark, counts, grain=grain))
    assert fut.result(T) is None
    assert (counts == 1).all()


@pytest.mark.timeout(60)
def test_parallel_for_nested_in_every_worker(pool_factory, kernels):
    """Every worker busy in a nested parallel_for at once: none waits for another."""
    workers = 4
    pool = pool_factory(workers)
    n = 5003
    mark = kernels.ctypes("rpk_k_mark")
    arrays = [np.zeros(n, dtype=np.int32) for _ in range(workers * 3)]
    barrier = threading.Barrier(workers, timeout=T)

    def task(a, sync):
        if sync:
            barrier.wait()
        pool.parallel_for(n, mark, a, grain=3)

    futs = [pool.submit(task, a, i < workers) for i, a in enumerate(arrays)]
    for f in futs:
        f.result(T)
    assert all((a == 1).all() for a in arrays)


@pytest.mark.timeout(60)
def test_parallel_for_nested_error(pool_factory, kernels):
    pool = pool_factory(1)
    where = np.array([77], dtype=np.int64)
    fut = pool.submit(pool.parallel_for, 1000, kernels.ctypes("rpk_k_fail_at"), where, grain=1)
    with pytest.raises(NativeTaskError) as info:
        fut.result(T)
    assert info.value.code == 42


@pytest.mark.timeout(60)
def test_parallel_for_from_another_pools_task(pool_factory, kernels):
    outer = pool_factory(1)
    inner = pool_factory(2)
    counts = np.zeros(10007, dtype=np.int32)
    mark = kernels.ctypes("rpk_k_mark")
    outer.submit(inner.parallel_for, 10007, mark, counts, grain=11).result(T)
    assert (counts == 1).all()


@pytest.mark.timeout(60)
def test_parallel_for_ctx_worker(pool_factory):
    """ctx->worker: -1 on the calling thread, a worker index on helpers."""
    workers = 3
    pool = pool_factory(workers)
    seen = set()
    lock = threading.Lock()

    class Ctx(ctypes.Structure):
        _fields_ = [("worker", ctypes.c_int), ("cancel", ctypes.POINTER(ctypes.c_int)),
                    ("deadline_ns", ctypes.c_int64), ("reserved", ctypes.c_void_p)]

    @ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                      ctypes.POINTER(Ctx))
    def record(begin, end, arg, ctx):
        with lock:
            seen.add(ctx.contents.worker)
        time.sleep(0.0005)
        return 0

    pool.parallel_for(2000, record, grain=1)
    assert -1 in seen
    assert seen <= {-1, *range(workers)}
    seen.clear()
    pool.submit(pool.parallel_for, 200, record, grain=1).result(T)
    # Nested: inline, every chunk on the calling thread, which ringpool.h
    # reports as -1 ("the thread that called parallel_for").
    assert seen == {-1}


# ---------------------------------------------------------------------------
# 6. submit_native_many
# ---------------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_batch_same_address_many_times(pool_factory, kernels):
    pool = pool_factory(4)
    counter = np.zeros(1, dtype=np.int64)
    n = 100_000
    args = np.full(n, counter.ctypes.data, dtype=np.uintp)
    batch = pool.submit_native_many(kernels.ctypes("rpk_add_one"), args)
    assert len(batch) == n
    assert batch.result(T) is None
    assert batch.done()
    assert counter[0] == n
    assert batch.failed == 0 and batch.not_run == 0
    assert (np.asarray(batch.statuses) == 0).all()


@pytest.mark.parametrize("dtype", [np.uint64, np.int64, np.uintp])
def test_batch_buffer_dtypes(pool_factory, kernels, dtype):
    pool = pool_factory(2)
    args = np.arange(0, 300, 3).astype(dtype)
    batch = pool.submit_native_many(kernels.ctypes("rpk_return_arg"), args)
    assert batch.wait(T)
    assert list(batch.statuses) == list(range(0, 300, 3))


@pytest.mark.timeout(60)
def test_batch_int_form(pool_factory, kernels):
    pool = pool_factory(2)
    n = 1000
    batch = pool.submit_native_many(kernels.ctypes("rpk_return_arg"), n)
    assert batch.wait(T) is True
    assert batch.done()
    st = batch.statuses
    assert isinstance(st, memoryview) and st.readonly and st.format == "i" and st.itemsize == 4
    assert list(st) == list(range(n))
    assert np.asarray(st).dtype == np.int32
    assert batch.failed == n - 1
    assert batch.not_run == 0
    with pytest.raises(NativeTaskError) as info:
        batch.result(T)
    assert info.value.code == 1 and info.value.index == 1
    assert batch.cancel() is False  # already done
    with pytest.raises(TypeError):
        st[0] = 5


def test_batch_range_form(pool_factory, kernels):
    pool = pool_factory(2)
    batch = pool.submit_native_many(kernels.ctypes("rpk_return_arg"), range(5, 50, 5))
    assert len(batch) == 9
    assert batch.wait(T)
    assert list(batch.statuses) == list(range(5, 50, 5))
    with pytest.raises(NativeTaskError) as info:
        batch.result()
    assert info.value.code == 5 and info.value.index == 0
    assert batch.failed == 9


def test_batch_empty(pool_factory, kernels):
    pool = pool_factory(1)
    for args in (0, range(0), np.zeros(0, dtype=np.uintp)):
        batch = pool.submit_native_many(kernels.ctypes("rpk_return_arg"), args)
        assert len(batch) == 0 and batch.done() and batch.wait(0)
        assert batch.result() is None
        assert list(batch.statuses) == []


@pytest.mark.timeout(60)
def test_batch_cancel_mid_batch(pool_factory, kernels):
    pool = pool_factory(1)
    warm(pool, 1)
    n = 200
    batch = pool.submit_native_many(kernels.ctypes("rpk_sleep_ms"), np.full(n, 20, dtype=np.uintp))
    wait_until(lambda: pool.stats().running == 1, what="the batch to start")
    time.sleep(0.05)
    assert batch.cancel() is True
    assert batch.wait(T)
    st = np.asarray(batch.statuses)
    assert batch.not_run > 0
    assert (st == RP_STATUS_NOT_RUN).any()
    # Each item either ran (0, or 1: rpk_sleep_ms saw the cancel flag) or never ran.
    assert set(np.unique(st).tolist()) <= {0, 1, RP_STATUS_NOT_RUN}
    assert int((st == RP_STATUS_NOT_RUN).sum()) == batch.not_run
    assert int(((st != 0) & (st != RP_STATUS_NOT_RUN)).sum()) == batch.failed
    assert batch.failed <= 1
    # Items that ran form a prefix: a single worker runs them in order.
    ran = np.flatnonzero(st != RP_STATUS_NOT_RUN)
    assert (ran == np.arange(len(ran))).all()
    with pytest.raises((NativeTaskError, concurrent.futures.CancelledError)):
        batch.result(T)
    assert batch.cancel() is False
    # The pool still works.
    assert pool.submit_native(kernels.ctypes("rpk_noop")).result(T) == 0


@pytest.mark.timeout(60)
def test_batch_cancel_while_queued(pool_factory, kernels, gate):
    pool = pool_factory(1)
    occupy(pool, gate, 1)
    counter = np.zeros(1, dtype=np.int64)
    batch = pool.submit_native_many(kernels.ctypes("rpk_add_one"),
                                    np.full(500, counter.ctypes.data, dtype=np.uintp))
    assert batch.cancel() is True
    # Marked at once: the batch is done although its runners are still queued.
    assert batch.wait(T)
    assert batch.not_run == 500
    with pytest.raises(concurrent.futures.CancelledError):
        batch.result()
    gate.set()
    quiesce(pool)
    assert counter[0] == 0


@pytest.mark.timeout(60)
def test_batch_shutdown_cancel_futures(pool_factory, kernels, gate):
    pool = pool_factory(1)
    occupy(pool, gate, 1)
    counter = np.zeros(1, dtype=np.int64)
    batch = pool.submit_native_many(kernels.ctypes("rpk_add_one"),
                                    np.full(1000, counter.ctypes.data, dtype=np.uintp))
    closer = threading.Thread(target=pool.shutdown, kwargs={"wait": True, "cancel_futures": True})
    closer.start()
    try:
        # The runners are still queued behind the held task: discarding them
        # must end the batch.
        wait_until(batch.done, what="the batch to end at shutdown")
    finally:
        gate.set()
    closer.join(T)
    assert not closer.is_alive()
    assert batch.wait(T)
    assert batch.not_run > 0
    assert batch.not_run + int(counter[0]) == 1000
    assert (np.asarray(batch.statuses) == RP_STATUS_NOT_RUN).sum() == batch.not_run
    with pytest.raises(concurrent.futures.CancelledError):
        batch.result(T)


@pytest.mark.timeout(60)
def test_batch_dropped_unfinished(pool_factory, kernels):
    pool = pool_factory(2)
    warm(pool, 2)
    counter = np.zeros(1, dtype=np.int64)
    batch = pool.submit_native_many(kernels.ctypes("rpk_sleep_ms"), np.full(40, 10, dtype=np.uintp))
    wait_until(lambda: pool.stats().running >= 1, what="the batch to start")
    del batch
    gc.collect()
    # Dropped while queued behind other work, too.
    for _ in range(20):
        pool.submit_native_many(kernels.ctypes("rpk_add_one"),
                                np.full(1000, counter.ctypes.data, dtype=np.uintp))
    gc.collect()
    quiesce(pool)
    assert pool.submit_native(kernels.ctypes("rpk_noop")).result(T) == 0
    after = pool.submit_native_many(kernels.ctypes("rpk_return_arg"), 10)
    assert after.wait(T)
    assert list(after.statuses) == list(range(10))
    assert counter[0] <= 20 * 1000


def test_batch_handle_is_not_constructible():
    with pytest.raises(TypeError):
        ringpool._core.NativeBatch()


def test_batch_wait_timeout(pool_factory, kernels, gate):
    pool = pool_factory(1)
    occupy(pool, gate, 1)
    batch = pool.submit_native_many(kernels.ctypes("rpk_noop"), 10)
    assert batch.wait(0.05) is False
    assert not batch.done()
    with pytest.raises(concurrent.futures.TimeoutError):
        batch.result(0.01)
    assert "running" in repr(batch)
    gate.set()
    assert batch.result(T) is None
    assert "done" in repr(batch)


@pytest.mark.parametrize("args", [1.5, "abc", b"ab", True, None, [1, 2, 3],
                                  np.zeros((4, 2), dtype=np.uint64), np.zeros(4, dtype=np.int32),
                                  np.zeros(4, dtype=np.float64), bytearray(16)],
                         ids=["float", "str", "bytes", "bool", "None", "list", "2d", "int32",
                              "float64", "bytearray"])
def test_batch_bad_args(pool_factory, kernels, args):
    pool = pool_factory(1)
    before = pool.stats().submitted
    with pytest.raises(TypeError, match="args"):
        pool.submit_native_many(kernels.ctypes("rpk_noop"), args)
    assert pool.stats().submitted == before


def test_batch_strided_args(pool_factory, kernels):
    # numpy raises ValueError ("ndarray is not C-contiguous") from its buffer
    # export, which submit_native_many lets through instead of its TypeError.
    pool = pool_factory(1)
    with pytest.raises((TypeError, ValueError)):
        pool.submit_native_many(kernels.ctypes("rpk_noop"), np.zeros(8, dtype=np.uint64)[::2])
    assert pool.stats().submitted == 0


def test_batch_negative_count(pool_factory, kernels):
    pool = pool_factory(1)
    with pytest.raises(ValueError, match="args"):
        pool.submit_native_many(kernels.ctypes("rpk_noop"), -1)


# ---------------------------------------------------------------------------
# 7. Python and native tasks on one pool
# ---------------------------------------------------------------------------

def _square(x):
    return x * x


@pytest.mark.timeout(120)
def test_mixed_python_and_native_tasks(pool_factory, kernels):
    pool = pool_factory(4)
    counter = np.zeros(1, dtype=np.int64)
    add = kernels.ctypes("rpk_add_one")
    ret = kernels.ctypes("rpk_return_arg")
    py, native, failing = [], [], []
    for i in range(500):
        py.append(pool.submit(_square, i))
        native.append(pool.submit_native(add, counter))
        if i % 10 == 0:
            failing.append(pool.submit_native(ret, 3))
    assert [f.result(T) for f in py] == [i * i for i in range(500)]
    assert [f.result(T) for f in native] == [0] * 500
    for f in failing:
        assert isinstance(f.exception(T), NativeTaskError)
    assert counter[0] == 500
    s = quiesce(pool)
    assert s.submitted >= 500 + 500 + 50
    assert s.failed == 50
    assert s.accounted


@pytest.mark.timeout(120)
def test_mixed_with_batches_and_parallel_for(pool_factory, kernels):
    pool = pool_factory(4)
    counter = np.zeros(1, dtype=np.int64)
    counts = np.zeros(20011, dtype=np.int32)
    add = kernels.ctypes("rpk_add_one")
    mark = kernels.ctypes("rpk_k_mark")
    futs, batches = [], []
    for i in range(50):
        futs.append(pool.submit(_square, i))
        futs.append(pool.submit_native(add, counter))
        batches.append(pool.submit_native_many(add, np.full(100, counter.ctypes.data, dtype=np.uintp)))
        pool.parallel_for(20011, mark, counts, grain=101)
    for f in futs:
        f.result(T)
    for b in batches:
        assert b.result(T) is None
    assert counter[0] == 50 + 50 * 100
    assert (counts == 50).all()
    assert quiesce(pool).accounted


# ---------------------------------------------------------------------------
# 8. the GIL is released while native code runs
# ---------------------------------------------------------------------------

MIN_INCREMENTS = 1000


@pytest.mark.timeout(60)
def test_gil_free_during_native_tasks(pool_factory, kernels):
    workers = 4
    pool = pool_factory(workers)
    futs = [pool.submit_native(kernels.ctypes("rpk_sleep_ms"), 20_000) for _ in range(workers)]
    with Counter() as counter:
        wait_until(lambda: pool.stats().running == workers, what="every worker in a native task")
        c0 = counter.count
        time.sleep(0.3)
        c1 = counter.count
        assert pool.stats().running == workers, "the window was not fully covered"
    for f in futs:
        assert f.request_cancel()
    for f in futs:
        with pytest.raises(NativeTaskError):
            f.result(T)
    assert c1 - c0 > MIN_INCREMENTS


#: A native call that only Python code can stop early (with the GIL): if the
#: GIL were held while it runs, the stop would come only after it ended.
LONG_MS = 6_000


def _start_long_native(pool, kernels, how):
    sleep = kernels.ctypes("rpk_sleep_ms")
    if how == "submit_native":
        return pool.submit_native(sleep, LONG_MS)
    return pool.submit_native_many(sleep, np.array([LONG_MS], dtype=np.uintp))


def _stop_long_native(handle, how, t0):
    """Cancel from Python; the call must end long before LONG_MS."""
    if how == "submit_native":
        handle.request_cancel()
        with pytest.raises((NativeTaskError, concurrent.futures.CancelledError)) as info:
            handle.result(T)
        if isinstance(info.value, NativeTaskError):
            assert info.value.code == 1  # rpk_sleep_ms saw the cancel flag
    else:
        handle.cancel()
        assert handle.wait(T)
        assert handle.statuses[0] in (1, RP_STATUS_NOT_RUN)
    elapsed = time.monotonic() - t0
    assert elapsed < LONG_MS / 1000 / 2, (
        f"a {LONG_MS} ms native call could not be cancelled from Python for {elapsed:.1f} s: "
        "the GIL was held while it ran")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["submit_native", "batch"])
def test_gil_free_on_a_fresh_worker(pool_factory, kernels, how):
    """The native call is the first task of a new worker thread."""
    pool = pool_factory(1)
    t0 = time.monotonic()
    handle = _start_long_native(pool, kernels, how)
    time.sleep(0.2)
    _stop_long_native(handle, how, t0)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["submit_native", "batch"])
def test_gil_free_after_a_python_task(pool_factory, kernels, gate, how):
    """The native call follows a Python task with more work queued, where the
    worker keeps the GIL between tasks."""
    pool = pool_factory(1)
    warm(pool, 1)
    occupy(pool, gate, 1)
    t0 = time.monotonic()
    handle = _start_long_native(pool, kernels, how)
    gate.set()
    time.sleep(0.2)
    _stop_long_native(handle, how, t0)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["submit_native", "batch"])
def test_gil_free_on_an_idle_worker(pool_factory, kernels, how):
    pool = pool_factory(2)
    warm(pool, 2)
    t0 = time.monotonic()
    handle = _start_long_native(pool, kernels, how)
    time.sleep(0.2)
    _stop_long_native(handle, how, t0)


class Heartbeat(threading.Thread):
    """A Python thread that notes the time about every millisecond: a long
    gap between notes means it could not run (someone held the GIL)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.beats = [time.monotonic()]
        self.stop = False

    def run(self) -> None:
        beats = self.beats
        while not self.stop:
            now = time.monotonic()
            if now - beats[-1] >= 0.001:
                beats.append(now)

    def max_gap(self, start: float, end: float) -> float:
        inside = [start] + [b for b in self.beats if start < b < end] + [end]
        return max(b - a for a, b in zip(inside, inside[1:], strict=False))

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop = True
        self.join(T)


#: Largest gap allowed between heartbeats while parallel_for runs (expected:
#: a few ms; with the GIL held by a participant, most of the call).
MAX_GAP_S = 0.3
PF_N = 500_000  # rpk_k_work: about 2 s of CPU in all


@pytest.mark.timeout(120)
@pytest.mark.parametrize("where", [
    "nested_in_worker",
    "thread_idle_workers",
    "thread_fresh_workers",
    "thread_after_python_task",
])
def test_gil_free_during_parallel_for(pool_factory, kernels, gate, where):
    workers = 1 if where == "thread_after_python_task" else 2
    pool = pool_factory(workers)
    if where != "thread_fresh_workers":
        warm(pool, workers)
    out = np.zeros(PF_N)
    work = kernels.ctypes("rpk_k_work")
    span = {}

    def run():
        span["start"] = time.monotonic()
        pool.parallel_for(PF_N, work, out, grain=500)
        span["end"] = time.monotonic()

    with Heartbeat() as beat:
        if where == "nested_in_worker":
            pool.submit(run).result(T * 2)
        else:
            if where == "thread_after_python_task":
                occupy(pool, gate, 1)
            th = threading.Thread(target=run)
            th.start()
            if where == "thread_after_python_task":
                wait_until(lambda: "start" in span, what="parallel_for to start")
                time.sleep(0.05)
                gate.set()  # the helper now runs right after a Python task
            th.join(T * 2)
            assert not th.is_alive()
    assert (out > 0.5).all()
    gap = beat.max_gap(span["start"], span["end"])
    assert gap < MAX_GAP_S, (
        f"a Python thread could not run for {gap:.2f} s of a "
        f"{span['end'] - span['start']:.2f} s parallel_for: the GIL was held")


# ---------------------------------------------------------------------------
# 9. cancellation and ctx
# ---------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_request_cancel_running_native_task(pool_factory, kernels):
    pool = pool_factory(2)
    limit_ms = 60_000
    fut = pool.submit_native(kernels.ctypes("rpk_spin_until_cancel"), limit_ms)
    wait_until(lambda: pool.stats().running == 1, what="the task to start")
    t0 = time.monotonic()
    assert fut.request_cancel() is True
    with pytest.raises(NativeTaskError) as info:
        fut.result(T)
    assert info.value.code == 7
    assert time.monotonic() - t0 < limit_ms / 1000 / 2
    assert fut.request_cancel() is False  # finished
    assert not fut.cancelled()


@pytest.mark.timeout(60)
def test_request_cancel_queued_native_task(pool_factory, kernels, gate):
    pool = pool_factory(1)
    occupy(pool, gate, 1)
    counter = np.zeros(1, dtype=np.int64)
    fut = pool.submit_native(kernels.ctypes("rpk_add_one"), counter)
    assert fut.request_cancel() is True
    assert fut.cancelled()
    gate.set()
    quiesce(pool)
    assert counter[0] == 0
    with pytest.raises(concurrent.futures.CancelledError):
        fut.result(T)


@pytest.mark.timeout(60)
def test_native_task_runs_to_the_end_without_cancel(pool_factory, kernels):
    pool = pool_factory(1)
    assert pool.submit_native(kernels.ctypes("rpk_spin_until_cancel"), 20).result(T) == 0
    assert pool.submit_native(kernels.ctypes("rpk_sleep_ms"), 5).result(T) == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", [1, 3])
def test_ctx_worker_index(pool_factory, kernels, workers):
    pool = pool_factory(workers)
    slots = np.full(64, -99, dtype=np.int32)
    rec = kernels.ctypes("rpk_record_worker")
    futs = [pool.submit_native(rec, slots[i:i + 1]) for i in range(len(slots))]
    for f in futs:
        assert f.result(T) == 0
    assert ((slots >= 0) & (slots < workers)).all(), slots
    slots[:] = -99
    addresses = slots.ctypes.data + slots.itemsize * np.arange(len(slots), dtype=np.uintp)
    batch = pool.submit_native_many(rec, addresses.astype(np.uintp), keep=[slots])
    assert batch.result(T) is None
    assert ((slots >= 0) & (slots < workers)).all(), slots


# ---------------------------------------------------------------------------
# 10. after shutdown
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("cancel_futures", [False, True])
def test_native_entry_points_after_shutdown(pool_factory, kernels, cancel_futures):
    pool = pool_factory(2)
    assert pool.submit_native(kernels.ctypes("rpk_noop")).result(T) == 0
    pool.shutdown(wait=True, cancel_futures=cancel_futures)
    with pytest.raises(PoolClosed):
        pool.submit_native(kernels.ctypes("rpk_noop"))
    with pytest.raises(PoolClosed):
        pool.submit_native_many(kernels.ctypes("rpk_noop"), 10)
    with pytest.raises(PoolClosed):
        pool.parallel_for(10, kernels.ctypes("rpk_k_count"), np.zeros(1, dtype=np.int64))
    with pytest.raises(PoolClosed):
        pool.parallel_for(0, kernels.ctypes("rpk_k_count"))


def test_native_futures_complete_across_shutdown(pool_factory, kernels):
    pool = pool_factory(2)
    counter = np.zeros(1, dtype=np.int64)
    futs = [pool.submit_native(kernels.ctypes("rpk_add_one"), counter) for _ in range(1000)]
    pool.shutdown(wait=True)
    assert all(f.result(0) == 0 for f in futs)
    assert counter[0] == 1000


def test_native_futures_cancelled_by_shutdown(pool_factory, kernels, gate):
    pool = pool_factory(1)
    occupy(pool, gate, 1)
    counter = np.zeros(1, dtype=np.int64)
    futs = [pool.submit_native(kernels.ctypes("rpk_add_one"), counter) for _ in range(100)]
    closer = threading.Thread(target=pool.shutdown, kwargs={"wait": True, "cancel_futures": True})
    closer.start()
    try:
        wait_until(lambda: all(f.done() for f in futs), what="queued native futures to be cancelled")
    finally:
        gate.set()
    closer.join(T)
    assert all(f.cancelled() for f in futs)
    assert counter[0] == 0


@pytest.mark.timeout(60)
def test_full_bounded_queue_caller_runs_native_task(pool_factory, kernels, gate):
    pool = pool_factory(1, queue_size=1, on_full="caller_runs")
    occupy(pool, gate, 1)
    try:
        filler = pool.submit(int)  # takes the one queue slot
        wait_until(lambda: pool.stats().queued == 1, what="a full queue")
        records = np.full(1, 99, dtype=np.int32)
        fut = pool.submit_native(kernels.ctypes("rpk_record_worker"), records)
        assert fut.done() and fut.result() == 0  # ran in this thread, before submit returned
        assert records[0] == -1                  # ctx->worker: not a worker
        with pytest.raises(ringpool.NativeTaskError) as info:
            pool.submit_native(kernels.ctypes("rpk_return_arg"), 4).result(0)
        assert info.value.code == 4
        assert pool.stats().rejected == 2
    finally:
        gate.set()
    assert filler.result(T) == 0
