/* rp_sys_posix.c - POSIX (pthreads + clock_gettime) backend of rp_sys.h.
 * The Win32 backend is rp_sys_win32.c; the build compiles one of the two,
 * plus the portable rp_sys.c.
 *
 * Why pthread mutex/cond and no hand-rolled futex on Linux: glibc's
 * pthread_mutex_t and pthread_cond_t already ARE futex-style parking. An
 * uncontended lock/unlock is one atomic RMW each, with no syscall; a contended
 * lock and pthread_cond_wait sleep in FUTEX_WAIT on a word of the object, and
 * with the CLOCK_MONOTONIC condattr below a timed wait becomes
 * FUTEX_WAIT_BITSET on the monotonic clock directly (no clock conversion).
 * The parking lot (rp_park.c) keeps the wake-up side syscall-free when nobody
 * sleeps (its seq_cst `sleepers` check), so the remaining syscalls are the
 * ones a raw futex would make too. A private futex would save nothing
 * measurable, would need its own proof of no lost wake-ups, and would be
 * invisible to ThreadSanitizer (which models pthread objects, not raw futex
 * syscalls), costing the RINGPOOL_SANITIZE=thread build its precision.
 * The same code is the portable fallback on macOS and the BSDs (macOS has no
 * public futex; its ulock API is private). */
#include "rp_sys.h"
#include "rp_status.h"

#if defined(_WIN32)
#error "rp_sys_posix.c is the POSIX backend; build rp_sys_win32.c on Windows"
#endif

#include <errno.h>
#include <stdlib.h>
#include <sched.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

int
rp_mutex_init(rp_mutex *m)
{
    return pthread_mutex_init(m, NULL) == 0 ? RP_OK : RP_ENOMEM;
}

void rp_mutex_destroy(rp_mutex *m) { pthread_mutex_destroy(m); }
void rp_mutex_lock(rp_mutex *m) { pthread_mutex_lock(m); }
int rp_mutex_trylock(rp_mutex *m) { return pthread_mutex_trylock(m) == 0; }
void rp_mutex_unlock(rp_mutex *m) { pthread_mutex_unlock(m); }

int
rp_cond_init(rp_cond *c)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        return RP_ENOMEM;
#if !defined(__APPLE__)
    /* Timed waits measure the monotonic clock (macOS has no such attribute;
     * rp_cond_wait_until converts there). */
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
#endif
    int rc = pthread_cond_init(c, &attr);
    pthread_condattr_destroy(&attr);
    return rc == 0 ? RP_OK : RP_ENOMEM;
}

void rp_cond_destroy(rp_cond *c) { pthread_cond_destroy(c); }
void rp_cond_wait(rp_cond *c, rp_mutex *m) { pthread_cond_wait(c, m); }
void rp_cond_signal(rp_cond *c) { pthread_cond_signal(c); }
void rp_cond_broadcast(rp_cond *c) { pthread_cond_broadcast(c); }

int
rp_cond_wait_until(rp_cond *c, rp_mutex *m, int64_t deadline_ns)
{
    if (deadline_ns < 0) {
        pthread_cond_wait(c, m);
        return RP_OK;
    }
    struct timespec ts;
#if defined(__APPLE__)
    int64_t rel = deadline_ns - rp_now_ns();
    if (rel <= 0)
        return RP_ETIMEDOUT;
    ts.tv_sec = (time_t)(rel / 1000000000);
    ts.tv_nsec = (long)(rel % 1000000000);
    int rc = pthread_cond_timedwait_relative_np(c, m, &ts);
#else
    ts.tv_sec = (time_t)(deadline_ns / 1000000000);
    ts.tv_nsec = (long)(deadline_ns % 1000000000);
    int rc = pthread_cond_timedwait(c, m, &ts);
#endif
    return rc == ETIMEDOUT ? RP_ETIMEDOUT : RP_OK;
}

int64_t
rp_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int
rp_thread_create(rp_thread *t, void *(*fn)(void *), void *arg, size_t stack_size)
{
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0)
        return RP_ENOMEM;
    if (stack_size == 0) {
        /* At least the main thread's limit, so a task's recursion depth does
         * not depend on which thread runs it. Capped: an unlimited RLIMIT_STACK
         * must not reserve gigabytes per worker. */
        struct rlimit rl;
        stack_size = 8u << 20;
        if (getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
            rl.rlim_cur > stack_size)
            stack_size = rl.rlim_cur < (256u << 20) ? (size_t)rl.rlim_cur : (256u << 20);
    }
    pthread_attr_setstacksize(&attr, stack_size);
    int rc = pthread_create(t, &attr, fn, arg);
    pthread_attr_destroy(&attr);
    return rc == 0 ? RP_OK : RP_ETHREAD;
}

int
rp_thread_join(rp_thread t)
{
    return pthread_join(t, NULL) == 0 ? RP_OK : RP_EINVAL;
}

void
rp_thread_detach(rp_thread t)
{
    pthread_detach(t);
}

void
rp_thread_set_name(const char *name)
{
    char buf[16];
    strncpy(buf, name, sizeof buf - 1);
    buf[sizeof buf - 1] = '\0';
#if defined(__APPLE__)
    pthread_setname_np(buf);
#elif defined(__linux__)
    pthread_setname_np(pthread_self(), buf);
#else
    (void)buf;
#endif
}

int rp_thread_equal(rp_thread a, rp_thread b) { return pthread_equal(a, b); }
rp_thread rp_thread_self(void) { return pthread_self(); }

void
rp_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

void rp_thread_yield(void) { sched_yield(); }

void
rp_sleep_ns(int64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

unsigned
rp_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1u;
}

void *
rp_aligned_zalloc(size_t align, size_t size)
{
    size = (size + align - 1) / align * align; /* C11: size a multiple of align */
    void *m = aligned_alloc(align, size);
    if (m != NULL)
        memset(m, 0, size);
    return m;
}

void
rp_aligned_free(void *p)
{
    free(p);
}
