/* ringpool.h - the native task ABI of ringpool (public; shipped in the wheel).
 *
 * Write a task or a range kernel in C, C++, Cython, numba (@cfunc) or any
 * language with a C ABI, and hand it to a ringpool.Pool:
 *
 *     #include <ringpool.h>          // ringpool.get_include()
 *
 *     int my_task(void *arg, rp_task_ctx *ctx) {        // pool.submit_native
 *         ...; return 0;                                // non-zero: failure code
 *     }
 *     int my_kernel(int64_t begin, int64_t end, void *arg, rp_task_ctx *ctx) {
 *         for (int64_t i = begin; i < end; i++) {       // pool.parallel_for
 *             if (RP_CANCELLED(ctx)) return 0;          // stop early: another chunk failed
 *             ...;
 *         }
 *         return 0;
 *     }
 *
 * Rules for native functions:
 *  - They run on ringpool's worker threads (and, for parallel_for, on the
 *    calling thread) with no GIL held. They must not touch Python objects
 *    unless they take the GIL themselves (PyGILState_Ensure).
 *  - Return 0 on success. A non-zero return becomes NativeTaskError(code) in
 *    Python; in parallel_for it also cancels the chunks not yet started.
 *  - `ctx` is valid only during the call. Poll RP_CANCELLED(ctx) in long loops:
 *    it turns non-zero when the task's deadline passes, when someone calls
 *    Future.request_cancel(), or when another chunk of the same parallel_for
 *    failed. Cancellation is cooperative: nothing interrupts the function.
 *
 * This header has no dependencies beyond <stdint.h> and needs no library to
 * link against: the pool calls your function, never the other way round.
 */
#ifndef RINGPOOL_H
#define RINGPOOL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RINGPOOL_ABI_VERSION 1

typedef struct rp_task_ctx {
    /* Index of the pool's worker thread running this call (0, 1, ...), or
     * -1 when the call runs on the thread that called parallel_for. */
    int worker;
    /* Non-zero once the call should stop. Never NULL. Read it with
     * RP_CANCELLED(ctx): the pool sets it from another thread. */
    const volatile int *cancel;
    /* The task's deadline on the pool's monotonic clock (ns; the same clock
     * as Python's time.monotonic_ns() on Linux/macOS), or 0 for none. */
    int64_t deadline_ns;
    void *reserved; /* always NULL in ABI version 1 */
} rp_task_ctx;

/* A native task: pool.submit_native(fn, arg) calls fn(arg, ctx) once. */
typedef int (*rp_native_fn)(void *arg, rp_task_ctx *ctx);
/* A range kernel: pool.parallel_for(n, kernel, arg) calls it over disjoint
 * chunks [begin, end) that together cover [0, n) exactly once. */
typedef int (*rp_kernel_fn)(int64_t begin, int64_t end, void *arg, rp_task_ctx *ctx);

/* The PyCapsule names that state each signature (SciPy's LowLevelCallable
 * convention): wrap a function pointer in a capsule with exactly this name. */
#define RP_NATIVE_FN_SIGNATURE "int (void *, rp_task_ctx *)"
#define RP_KERNEL_FN_SIGNATURE "int (int64_t, int64_t, void *, rp_task_ctx *)"

/* Status of an item of a batch (submit_native_many) that never ran: the
 * batch was cancelled or the pool shut down first. */
#define RP_STATUS_NOT_RUN INT32_MIN

#if defined(__GNUC__) || defined(__clang__)
#define RP_CANCELLED(ctx) __atomic_load_n((ctx)->cancel, __ATOMIC_RELAXED)
#else
#define RP_CANCELLED(ctx) (*(ctx)->cancel)
#endif

#ifdef __cplusplus
}
#endif

#endif /* RINGPOOL_H */
