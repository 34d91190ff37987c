/* rp_test_kernels.c - native test kernels for ringpool's Python tests and
 * for bench/c/bench_native.c.
 *
 * The Python tests compile it with the system compiler and load it with
 * ctypes:
 *
 *     cc -O2 -shared -fPIC -I src/ringpool/include tests/native/rp_test_kernels.c -o X.so
 *
 * so it depends on nothing but <ringpool.h> and the C library (plus
 * <windows.h> on Windows for Sleep and the performance counter). Every
 * function below is exported; rpk_fn_address maps a name to its address for
 * the tests of the integer-address form.
 *
 * Tasks (rp_native_fn): rpk_noop, rpk_return_arg, rpk_add_one,
 * rpk_check_pattern, rpk_sleep_ms, rpk_spin_until_cancel, rpk_record_worker.
 * Kernels (rp_kernel_fn): rpk_k_mark, rpk_k_count, rpk_k_fail_at, rpk_k_work.
 * Helpers: rpk_work_sequential (the sequential baseline of rpk_k_work, timed
 * in C), rpk_fn_address.
 */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* nanosleep, clock_gettime under -std=c11 */
#endif

#include <ringpool.h>

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(_WIN32)
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#define RPK_EXPORT __declspec(dllexport)
#else
#include <time.h>
#if defined(__GNUC__) || defined(__clang__)
#define RPK_EXPORT __attribute__((visibility("default")))
#else
#define RPK_EXPORT
#endif
#endif

/* Atomic adds on plain integers owned by the caller (ctypes arrays): the GNU
 * builtins where available, the Interlocked functions on MSVC. */
#if defined(__GNUC__) || defined(__clang__)
#define RPK_ADD64(p, v) ((void)__atomic_fetch_add((p), (v), __ATOMIC_RELAXED))
#define RPK_ADD32(p, v) ((void)__atomic_fetch_add((p), (v), __ATOMIC_RELAXED))
#elif defined(_WIN32)
#define RPK_ADD64(p, v) ((void)InterlockedExchangeAdd64((volatile LONG64 *)(p), (v)))
#define RPK_ADD32(p, v) ((void)InterlockedExchangeAdd((volatile LONG *)(p), (v)))
#else
#error "rp_test_kernels.c needs GNU atomic builtins or Win32 Interlocked functions"
#endif

/* Iterations of rpk_k_work's inner loop per index: about 4 us at -O2 on the
 * x86-64 machine it was calibrated on (a dependent multiply-add chain, so
 * the cost is latency-bound and the same with or without vectorisation). */
#ifndef RPK_WORK_ITERS
#define RPK_WORK_ITERS 2800
#endif

/* ---- clock and sleep ---------------------------------------------------- */

static double
rpk_now_s(void)
{
#if defined(_WIN32)
    LARGE_INTEGER f, c;
    QueryPerformanceFrequency(&f);
    QueryPerformanceCounter(&c);
    return (double)c.QuadPart / (double)f.QuadPart;
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
#endif
}

static void
rpk_sleep_us(long us)
{
#if defined(_WIN32)
    Sleep((DWORD)((us + 999) / 1000));
#else
    struct timespec ts;
    ts.tv_sec = us / 1000000;
    ts.tv_nsec = (us % 1000000) * 1000;
    while (nanosleep(&ts, &ts) != 0) {
        /* EINTR: sleep the rest */
    }
#endif
}

/* ---- tasks ---------------------------------------------------------------- */

RPK_EXPORT int
rpk_noop(void *arg, rp_task_ctx *ctx)
{
    (void)arg;
    (void)ctx;
    return 0;
}

RPK_EXPORT int
rpk_return_arg(void *arg, rp_task_ctx *ctx)
{
    (void)ctx;
    return (int)(intptr_t)arg;
}

RPK_EXPORT int
rpk_add_one(void *arg, rp_task_ctx *ctx)
{
    (void)ctx;
    RPK_ADD64((int64_t *)arg, 1);
    return 0;
}

/* The argument buffer must stay alive and unchanged while the task runs: the
 * sleep first gives a buggy caller time to free or reuse it. */
RPK_EXPORT int
rpk_check_pattern(void *arg, rp_task_ctx *ctx)
{
    (void)ctx;
    if (arg == NULL)
        return 3;
    rpk_sleep_us(20000);
    const int64_t *a = arg;
    int64_t n = a[0];
    if (n < 0)
        return 2;
    for (int64_t i = 1; i <= n; i++)
        if (a[i] != 7 * i)
            return 2;
    return 0;
}

RPK_EXPORT int
rpk_sleep_ms(void *arg, rp_task_ctx *ctx)
{
    intptr_t ms = (intptr_t)arg;
    for (intptr_t i = 0; i < ms; i++) {
        if (RP_CANCELLED(ctx))
            return 1;
        rpk_sleep_us(1000);
    }
    return RP_CANCELLED(ctx) ? 1 : 0;
}

RPK_EXPORT int
rpk_spin_until_cancel(void *arg, rp_task_ctx *ctx)
{
    double end = rpk_now_s() + (double)(intptr_t)arg / 1000.0;
    for (;;) {
        if (RP_CANCELLED(ctx))
            return 7;
        if (rpk_now_s() >= end)
            return 0;
        rpk_sleep_us(100);
    }
}

RPK_EXPORT int
rpk_record_worker(void *arg, rp_task_ctx *ctx)
{
    *(int *)arg = ctx->worker;
    return 0;
}

/* ---- kernels ----------------------------------------------------------------- */

RPK_EXPORT int
rpk_k_mark(int64_t b, int64_t e, void *arg, rp_task_ctx *ctx)
{
    (void)ctx;
    int32_t *counts = arg;
    for (int64_t i = b; i < e; i++)
        RPK_ADD32(&counts[i], 1);
    return 0;
}

RPK_EXPORT int
rpk_k_count(int64_t b, int64_t e, void *arg, rp_task_ctx *ctx)
{
    (void)ctx;
    RPK_ADD64((int64_t *)arg, e - b);
    return 0;
}

RPK_EXPORT int
rpk_k_fail_at(int64_t b, int64_t e, void *arg, rp_task_ctx *ctx)
{
    (void)ctx;
    int64_t idx = *(const int64_t *)arg;
    return idx >= b && idx < e ? 42 : 0;
}

RPK_EXPORT int
rpk_k_work(int64_t b, int64_t e, void *arg, rp_task_ctx *ctx)
{
    (void)ctx;
    double *out = arg;
    for (int64_t i = b; i < e; i++) {
        /* A dependent chain: each step needs the previous result, so the
         * compiler can neither vectorise nor shorten it. */
        double x = (double)i * 1e-9 + 0.5;
        for (int k = 0; k < RPK_WORK_ITERS; k++)
            x = x * 0.9999999 + 1e-7;
        out[i] = x;
    }
    return 0;
}

RPK_EXPORT double
rpk_work_sequential(int64_t n, double *out)
{
    static const volatile int never = 0;
    rp_task_ctx ctx = {-1, &never, 0, NULL};
    double t0 = rpk_now_s();
    rpk_k_work(0, n, out, &ctx);
    return rpk_now_s() - t0;
}

/* ---- lookup by name ---------------------------------------------------------- */

RPK_EXPORT void *
rpk_fn_address(const char *name)
{
    /* Object pointers from function pointers: fine on every platform ctypes
     * runs on (POSIX requires it for dlsym). */
    static const struct {
        const char *name;
        void *addr;
    } table[] = {
        {"rpk_noop", (void *)rpk_noop},
        {"rpk_return_arg", (void *)rpk_return_arg},
        {"rpk_add_one", (void *)rpk_add_one},
        {"rpk_check_pattern", (void *)rpk_check_pattern},
        {"rpk_sleep_ms", (void *)rpk_sleep_ms},
        {"rpk_spin_until_cancel", (void *)rpk_spin_until_cancel},
        {"rpk_record_worker", (void *)rpk_record_worker},
        {"rpk_k_mark", (void *)rpk_k_mark},
        {"rpk_k_count", (void *)rpk_k_count},
        {"rpk_k_fail_at", (void *)rpk_k_fail_at},
        {"rpk_k_work", (void *)rpk_k_work},
        {"rpk_work_sequential", (void *)rpk_work_sequential},
        {"rpk_fn_address", (void *)rpk_fn_address},
    };
    if (name == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(table[i].name, name) == 0)
            return table[i].addr;
    return NULL;
}
