/* rp_test.h - the tiny test harness for the C engine's tests (tests/c/).
 *
 * Header-only, no dependencies beyond libc and pthreads. Each test program:
 *
 *     static void test_something(void) { CHECK(x == 1); CHECK_EQ(rc, RP_OK); }
 *     int main(void) {
 *         rp_test_init(argc, argv);  // starts the watchdog, reads RP_TEST_SCALE
 *         RUN_TEST(test_something);
 *         return rp_test_summary();  // prints "N passed, M failed", returns exit code
 *     }
 *
 * - CHECK(cond) / CHECK_EQ(a, b) / CHECK_NE / CHECK_LT / CHECK_LE / CHECK_GT /
 *   CHECK_GE print file:line and the expression on failure, count the failure
 *   and evaluate to 1 (pass) or 0 (fail), so `if (!CHECK(p)) return;` works.
 *   They are thread-safe: worker threads may CHECK too.
 * - RUN_TEST(fn) runs a test, arms the watchdog for it (RP_TEST_TIMEOUT_S
 *   seconds, or RUN_TEST_T(fn, s)) and prints one "[ OK ]"/"[FAIL]" line.
 * - The watchdog is a thread: a test that overruns its limit (a hang: lost
 *   wake-up, deadlock) prints which test hung, the summary line counting it as
 *   failed, and aborts. alarm() backs it up for the whole process.
 * - rp_test_scale() reads RP_TEST_SCALE (default 1.0); rp_test_scaled(n, min)
 *   scales an iteration count, so sanitizer runs can use RP_TEST_SCALE=0.05.
 * - CHECK_WAIT(expr, ms) polls expr until it holds or ms pass (a failure).
 * - RP_TEST_FILTER=substring runs only the tests whose names contain it.
 *
 * The summary line "N passed, M failed" is printed alone on a line to stdout;
 * CI greps for it. N and M count tests (RUN_TEST calls), not CHECKs.
 */
#ifndef RP_TEST_H
#define RP_TEST_H

/* Include this header first: it asks for POSIX/GNU declarations (clock_gettime,
 * nanosleep, pthread_getname_np) before any system header is read. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#if defined(_WIN32) && !defined(__USE_MINGW_ANSI_STDIO)
/* mingw-w64: C99 printf (%zu, %lld) instead of the old msvcrt one. */
#define __USE_MINGW_ANSI_STDIO 1
#endif

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(_WIN32)
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <malloc.h> /* _aligned_malloc */
#include <windows.h> /* GetThreadDescription (rp_test_thread_name) */
#endif

/* The printf archetype for format checks: mingw's "printf" means msvcrt's. */
#if defined(__MINGW32__)
#define RP_TEST_PRINTF_FORMAT gnu_printf
#else
#define RP_TEST_PRINTF_FORMAT printf
#endif

#ifndef RP_TEST_TIMEOUT_S
#define RP_TEST_TIMEOUT_S 60 /* per test; a healthy test takes well under 10 s */
#endif
#ifndef RP_TEST_PROCESS_TIMEOUT_S
#define RP_TEST_PROCESS_TIMEOUT_S 280 /* whole program; CTest's TIMEOUT is 300 */
#endif
#define RP_TEST_MAX_PRINTED_FAILURES 50

static _Atomic long rp_test_check_failures;  /* failed CHECKs, all threads */
static _Atomic int rp_test_n_passed, rp_test_n_failed;
static const char *_Atomic rp_test_current_name;
static _Atomic int64_t rp_test_wd_deadline_ns; /* 0: disarmed */
static _Atomic int rp_test_wd_stop;
static pthread_t rp_test_wd_thread;
static int rp_test_wd_running;
static const char *rp_test_prog = "test";

/* ---- time, sleep, yield (independent of rp_sys.h on purpose) ---------- */

static inline int64_t rp_test_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void rp_test_sleep_ns(int64_t ns) {
    struct timespec ts;
    if (ns <= 0)
        return;
    ts.tv_sec = (time_t)(ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static inline void rp_test_sleep_us(int64_t us) { rp_test_sleep_ns(us * 1000); }
static inline void rp_test_sleep_ms(int64_t ms) { rp_test_sleep_ns(ms * 1000000); }

/* One step of a polling loop: yield a few times, then sleep 20 us .. 1 ms. */
static inline void rp_test_backoff(unsigned *i) {
    unsigned n = (*i)++;
    if (n < 16) {
        sched_yield();
    } else {
        int64_t us = 20LL << ((n - 16) < 6 ? (n - 16) : 6);
        rp_test_sleep_us(us > 1000 ? 1000 : us);
    }
}

/* ---- scale --------------------------------------------------------------- */

static inline double rp_test_scale(void) {
    static double cached = -1.0; /* read once, from the main thread, in rp_test_init */
    if (cached < 0) {
        const char *s = getenv("RP_TEST_SCALE");
        double v = 1.0;
        if (s && *s) {
            char *end = NULL;
            v = strtod(s, &end);
            if (end == s || !(v > 0.0))
                v = 1.0;
        }
        cached = v;
    }
    return cached;
}

/* n scaled by RP_TEST_SCALE, never below min_n. */
static inline long rp_test_scaled(long n, long min_n) {
    double v = (double)n * rp_test_scale();
    long r = v > 9.0e18 ? (long)9.0e18 : (long)v;
    return r < min_n ? min_n : r;
}

/* ---- a tiny PRNG for jitter (xorshift64*) -------------------------------- */

static inline uint64_t rp_test_rand(uint64_t *state) {
    uint64_t x = *state ? *state : 0x9E3779B97F4A7C15ULL;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* ---- failures -------------------------------------------------------------- */

static inline void rp_test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(RP_TEST_PRINTF_FORMAT, 3, 4)));

static inline void rp_test_fail(const char *file, int line, const char *fmt, ...) {
    long n = atomic_fetch_add(&rp_test_check_failures, 1) + 1;
    if (n <= RP_TEST_MAX_PRINTED_FAILURES) {
        char buf[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        const char *name = atomic_load(&rp_test_current_name);
        fflush(stdout);
        fprintf(stderr, "%s:%d: FAILED [%s]: %s\n", file, line, name ? name : "-", buf);
        fflush(stderr);
    } else if (n == RP_TEST_MAX_PRINTED_FAILURES + 1) {
        fprintf(stderr, "(further failures are counted but not printed)\n");
        fflush(stderr);
    }
}

static inline int rp_test_check(int ok, const char *file, int line, const char *expr) {
    if (!ok)
        rp_test_fail(file, line, "CHECK(%s)", expr);
    return ok;
}

static inline int rp_test_check_cmp(long long a, long long b, int op, const char *sa,
                                    const char *sb, const char *sop, const char *file,
                                    int line) {
    int ok;
    switch (op) {
    case 0: ok = a == b; break;
    case 1: ok = a != b; break;
    case 2: ok = a < b; break;
    case 3: ok = a <= b; break;
    case 4: ok = a > b; break;
    default: ok = a >= b; break;
    }
    if (!ok)
        rp_test_fail(file, line, "CHECK(%s %s %s): %lld vs %lld", sa, sop, sb, a, b);
    return ok;
}

#define CHECK(cond) rp_test_check(!!(cond), __FILE__, __LINE__, #cond)
/* The operands are stringified here, before any macro inside them expands. */
#define RP_TEST_CMP_(a, b, sa, sb, op, sop) \
    rp_test_check_cmp((long long)(a), (long long)(b), op, sa, sb, sop, __FILE__, __LINE__)
#define CHECK_EQ(a, b) RP_TEST_CMP_(a, b, #a, #b, 0, "==")
#define CHECK_NE(a, b) RP_TEST_CMP_(a, b, #a, #b, 1, "!=")
#define CHECK_LT(a, b) RP_TEST_CMP_(a, b, #a, #b, 2, "<")
#define CHECK_LE(a, b) RP_TEST_CMP_(a, b, #a, #b, 3, "<=")
#define CHECK_GT(a, b) RP_TEST_CMP_(a, b, #a, #b, 4, ">")
#define CHECK_GE(a, b) RP_TEST_CMP_(a, b, #a, #b, 5, ">=")
#define FAILF(...) rp_test_fail(__FILE__, __LINE__, __VA_ARGS__)

/* Poll expr until it holds (ok = 1) or timeout_ms pass (ok = 0). */
#define WAIT_UNTIL(ok, expr, timeout_ms)                                              \
    do {                                                                              \
        int64_t rp_wdl_ = rp_test_now_ns() + (int64_t)(timeout_ms) * 1000000;         \
        unsigned rp_wi_ = 0;                                                          \
        for (;;) {                                                                    \
            if (expr) {                                                               \
                (ok) = 1;                                                             \
                break;                                                                \
            }                                                                         \
            if (rp_test_now_ns() > rp_wdl_) {                                         \
                (ok) = 0;                                                             \
                break;                                                                \
            }                                                                         \
            rp_test_backoff(&rp_wi_);                                                 \
        }                                                                             \
    } while (0)

/* WAIT_UNTIL, and a failure naming expr when it does not hold in time. */
#define CHECK_WAIT(expr, timeout_ms)                                                  \
    do {                                                                              \
        int rp_wok_;                                                                  \
        WAIT_UNTIL(rp_wok_, expr, timeout_ms);                                        \
        if (!rp_wok_)                                                                 \
            rp_test_fail(__FILE__, __LINE__, "not true within %d ms: %s",             \
                         (int)(timeout_ms), #expr);                                   \
    } while (0)

/* ---- watchdog --------------------------------------------------------------- */

static inline void rp_test_print_summary(int extra_failed) {
    printf("%d passed, %d failed\n", atomic_load(&rp_test_n_passed),
           atomic_load(&rp_test_n_failed) + extra_failed);
    fflush(stdout);
}

static void *rp_test_wd_main(void *arg) {
    (void)arg;
    while (!atomic_load(&rp_test_wd_stop)) {
        int64_t dl = atomic_load(&rp_test_wd_deadline_ns);
        if (dl != 0 && rp_test_now_ns() > dl) {
            const char *name = atomic_load(&rp_test_current_name);
            fflush(stdout);
            fprintf(stderr,
                    "%s: WATCHDOG: test '%s' ran past its time limit: a hang "
                    "(lost wake-up, deadlock or livelock). Aborting.\n",
                    rp_test_prog, name ? name : "-");
            fflush(stderr);
            rp_test_print_summary(1);
            abort();
        }
        rp_test_sleep_ms(20);
    }
    return NULL;
}

/* Arm the watchdog for `seconds` from now (0 disarms). */
static inline void rp_test_watchdog_arm(int seconds) {
    atomic_store(&rp_test_wd_deadline_ns,
                 seconds > 0 ? rp_test_now_ns() + (int64_t)seconds * 1000000000 : 0);
}

static inline void rp_test_init(int argc, char **argv) {
    if (argc > 0 && argv && argv[0]) {
        const char *slash = strrchr(argv[0], '/');
        rp_test_prog = slash ? slash + 1 : argv[0];
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    (void)rp_test_scale();
#if !defined(_WIN32) /* no alarm(): the watchdog thread alone, and CTest's TIMEOUT */
    alarm(RP_TEST_PROCESS_TIMEOUT_S); /* default SIGALRM action: terminate */
#endif
    if (pthread_create(&rp_test_wd_thread, NULL, rp_test_wd_main, NULL) == 0)
        rp_test_wd_running = 1;
    else
        fprintf(stderr, "%s: warning: no watchdog thread\n", rp_test_prog);
    printf("%s: RP_TEST_SCALE=%g\n", rp_test_prog, rp_test_scale());
}

/* ---- running tests ------------------------------------------------------------ */

static inline void rp_test_run(const char *name, void (*fn)(void), int timeout_s) {
    /* RP_TEST_FILTER=substring runs only the tests whose name contains it. */
    const char *filter = getenv("RP_TEST_FILTER");
    if (filter && *filter && !strstr(name, filter))
        return;
    long before = atomic_load(&rp_test_check_failures);
    atomic_store(&rp_test_current_name, name);
    rp_test_watchdog_arm(timeout_s);
    int64_t t0 = rp_test_now_ns();
    fn();
    double secs = (double)(rp_test_now_ns() - t0) / 1e9;
    rp_test_watchdog_arm(0);
    long after = atomic_load(&rp_test_check_failures);
    if (after == before) {
        atomic_fetch_add(&rp_test_n_passed, 1);
        printf("[ OK ] %s (%.3f s)\n", name, secs);
    } else {
        atomic_fetch_add(&rp_test_n_failed, 1);
        printf("[FAIL] %s (%.3f s, %ld failed checks)\n", name, secs, after - before);
    }
    fflush(stdout);
}

#define RUN_TEST(fn) rp_test_run(#fn, fn, RP_TEST_TIMEOUT_S)
#define RUN_TEST_T(fn, seconds) rp_test_run(#fn, fn, (seconds))

/* Stops the watchdog, prints "N passed, M failed" alone on a line, and returns
 * the exit status for main. */
static inline int rp_test_summary(void) {
    atomic_store(&rp_test_wd_stop, 1);
    if (rp_test_wd_running) {
        pthread_join(rp_test_wd_thread, NULL);
        rp_test_wd_running = 0;
    }
#if !defined(_WIN32)
    alarm(0);
#endif
    /* A CHECK failing outside any RUN_TEST still fails the program. */
    int failed = atomic_load(&rp_test_n_failed);
    if (failed == 0 && atomic_load(&rp_test_check_failures) != 0) {
        atomic_store(&rp_test_n_failed, 1);
        failed = 1;
    }
    rp_test_print_summary(0);
    return failed == 0 ? 0 : 1;
}

/* ---- memory ---------------------------------------------------------------------- */

/* Zeroed memory for structs with _Alignas members (rp_ring, rp_park: 128-byte
 * cache-line alignment), which calloc does not guarantee. Free with
 * rp_test_free() (free() on POSIX; the Windows CRT has no aligned_alloc, and
 * its _aligned_malloc blocks need _aligned_free). */
static inline void *rp_test_zalloc(size_t size, size_t align) {
    if (align < sizeof(void *))
        align = sizeof(void *);
    size = (size + align - 1) / align * align;
#if defined(_WIN32)
    void *m = _aligned_malloc(size, align);
#else
    void *m = aligned_alloc(align, size);
#endif
    if (m)
        memset(m, 0, size);
    return m;
}
#define RP_TEST_NEW(type) ((type *)rp_test_zalloc(sizeof(type), _Alignof(type)))

static inline void rp_test_free(void *p) {
#if defined(_WIN32)
    _aligned_free(p);
#else
    free(p);
#endif
}

/* ---- threads -------------------------------------------------------------------- */

static inline int rp_test_thread_start(pthread_t *t, void *(*fn)(void *), void *arg) {
    int rc = pthread_create(t, NULL, fn, arg);
    if (rc != 0)
        rp_test_fail(__FILE__, __LINE__, "pthread_create failed: %d", rc);
    return rc == 0;
}

#if defined(_WIN32)
/* The calling thread's description (SetThreadDescription), as UTF-8. Returns 0
 * on success, -1 where Windows has no GetThreadDescription (before 10 1607). */
typedef HRESULT(WINAPI *rp_test_get_desc_fn)(HANDLE, PWSTR *);
static inline int rp_test_thread_name(char *buf, size_t len) {
    HMODULE k32 = GetModuleHandleW(L"kernel32.dll");
    rp_test_get_desc_fn get = k32 ? (rp_test_get_desc_fn)(void (*)(void))GetProcAddress(
                                        k32, "GetThreadDescription")
                                  : NULL;
    PWSTR w = NULL;
    if (get == NULL || len == 0 || FAILED(get(GetCurrentThread(), &w)))
        return -1;
    int n = WideCharToMultiByte(CP_UTF8, 0, w, -1, buf, (int)len, NULL, NULL);
    LocalFree(w);
    if (n == 0)
        buf[0] = '\0';
    return 0;
}
#endif

#endif /* RP_TEST_H */
