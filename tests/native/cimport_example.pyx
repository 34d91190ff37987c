# cython: language_level=3, boundscheck=False, wraparound=False, freethreading_compatible=True
# The README's "From Cython" example, built and run by tests/test_cimport.py.
from libc.stdint cimport int64_t
from ringpool cimport (
    RP_CANCELLED, native_batch_release, native_batch_status, native_batch_wait, parallel_for_nogil,
    pool_handle, rp_batch, rp_pool, rp_task_ctx, submit_native_many_nogil, submit_native_nogil,
)


cdef int square(int64_t begin, int64_t end, void *arg, rp_task_ctx *ctx) noexcept nogil:
    cdef double *out = <double *>arg
    cdef int64_t i
    for i in range(begin, end):
        if RP_CANCELLED(ctx):
            return 0
        out[i] = <double>i * i
    return 0


cdef int fail_at_7(int64_t begin, int64_t end, void *arg, rp_task_ctx *ctx) noexcept nogil:
    return 9 if begin <= 7 < end else 0


cdef struct nested_arg:
    rp_pool *pool
    double *out
    int64_t n


cdef int nested(void *arg, rp_task_ctx *ctx) noexcept nogil:
    # A native task that runs a parallel_for on its own pool: runs inline.
    cdef nested_arg *a = <nested_arg *>arg
    return parallel_for_nogil(a.pool, a.n, square, a.out, 0)


cdef int set_seven(void *arg, rp_task_ctx *ctx) noexcept nogil:
    (<int *>arg)[0] = 7
    return 3


def squares(pool, double[::1] out, int64_t grain=0):
    cdef rp_pool *p = pool_handle(pool)
    cdef int rc
    with nogil:
        rc = parallel_for_nogil(p, out.shape[0], square, &out[0], grain)
    return rc


def failing(pool, int64_t n):
    cdef rp_pool *p = pool_handle(pool)
    cdef int rc
    with nogil:
        rc = parallel_for_nogil(p, n, fail_at_7, NULL, 1)
    return rc


def one_task(pool):
    cdef rp_pool *p = pool_handle(pool)
    cdef rp_batch *b = NULL
    cdef int x = 0, rc, status = -1
    with nogil:
        rc = submit_native_nogil(p, set_seven, &x, &b)
        if rc == 0:
            native_batch_wait(b, -1)
            status = native_batch_status(b, 0)
            native_batch_release(b)
    return rc, status, x


def nested_in_task(pool, double[::1] out):
    cdef nested_arg a
    a.pool = pool_handle(pool)
    a.out = &out[0]
    a.n = out.shape[0]
    cdef rp_batch *b = NULL
    cdef int rc, status = -1
    with nogil:
        rc = submit_native_nogil(a.pool, nested, &a, &b)
        if rc == 0:
            native_batch_wait(b, -1)
            status = native_batch_status(b, 0)
            native_batch_release(b)
    return rc, status


def many(pool, int64_t n):
    cdef rp_pool *p = pool_handle(pool)
    cdef rp_batch *b = NULL
    cdef int rc
    cdef int64_t i, total = 0
    with nogil:
        rc = submit_native_many_nogil(p, square_index, NULL, n, &b)
        if rc == 0:
            native_batch_wait(b, -1)
            for i in range(n):
                total += native_batch_status(b, i)
            native_batch_release(b)
    return rc, total


cdef int square_index(void *arg, rp_task_ctx *ctx) noexcept nogil:
    return <int>(<size_t>arg % 100)
