/* rp_sys.h - the operating-system shim: threads, mutex/condition, clock.
 *
 * Everything above this file is portable C11. This is the only place that
 * knows about the OS threads API. Two backends implement it:
 *   - rp_sys_posix.c  POSIX: pthreads + clock_gettime (Linux, macOS, BSDs);
 *   - rp_sys_win32.c  Win32: SRWLOCK + CONDITION_VARIABLE, _beginthreadex,
 *                     QueryPerformanceCounter (Windows 7+, MSVC or mingw-w64).
 * The build compiles exactly one of them (CMakeLists.txt picks by platform),
 * plus rp_sys.c, the portable part (rp_strerror).
 * All functions here are safe to call from any thread. Waits block the
 * calling thread and nothing else.
 *
 * This header deliberately does not include <windows.h> (it would leak min/max
 * macros and thousands of names into every engine file): the Win32 types are
 * mirrored by same-sized opaque structs, checked against the real ones with
 * static asserts in rp_sys_win32.c.
 */
#ifndef RP_SYS_H
#define RP_SYS_H

#include "rp_common.h"

#if defined(_WIN32)

/* An SRWLOCK: one pointer-sized word, statically initialisable, never
 * allocates, so init cannot fail and destroy is a no-op. */
typedef struct rp_mutex {
    void *opaque_;
} rp_mutex;
/* A CONDITION_VARIABLE: likewise one pointer-sized word. */
typedef struct rp_cond {
    void *opaque_;
} rp_cond;
/* The thread handle (from _beginthreadex; NULL for rp_thread_self()) and the
 * thread id, which is what rp_thread_equal compares. */
typedef struct rp_thread {
    void *handle;
    unsigned long id;
} rp_thread;

#else /* POSIX */

#include <pthread.h>

typedef pthread_mutex_t rp_mutex;
typedef pthread_cond_t rp_cond;
typedef pthread_t rp_thread;

#endif

int rp_mutex_init(rp_mutex *m);
void rp_mutex_destroy(rp_mutex *m);
void rp_mutex_lock(rp_mutex *m);
/* Returns nonzero when the mutex was taken (unlock it then), 0 when it is
 * held by some thread (possibly the caller: never blocks, never recurses). */
int rp_mutex_trylock(rp_mutex *m);
void rp_mutex_unlock(rp_mutex *m);

/* Condition variables wait on the monotonic clock, so wall-clock jumps never
 * shorten or stretch a timeout. */
int rp_cond_init(rp_cond *c);
void rp_cond_destroy(rp_cond *c);
void rp_cond_wait(rp_cond *c, rp_mutex *m);
/* Waits until the absolute monotonic time deadline_ns; returns RP_OK when
 * signalled (or spuriously woken) and RP_ETIMEDOUT when the deadline passed.
 * deadline_ns < 0 waits without a deadline. */
int rp_cond_wait_until(rp_cond *c, rp_mutex *m, int64_t deadline_ns);
void rp_cond_signal(rp_cond *c);
void rp_cond_broadcast(rp_cond *c);

/* Monotonic clock in nanoseconds (CLOCK_MONOTONIC, the clock behind Python's
 * time.monotonic() on Linux and macOS; QueryPerformanceCounter on Windows).
 * Only differences and deadlines built from it are meaningful: the epoch is
 * unspecified, so never mix it with another clock's readings. */
int64_t rp_now_ns(void);

/* stack_size 0 picks at least the main thread's stack limit (RLIMIT_STACK; on
 * Windows the executable's stack reserve), and at least 8 MiB, so deep
 * recursion in a task behaves as it would on the main thread. A stack_size the
 * system cannot provide fails with RP_ETHREAD. rp_thread_create returns RP_OK,
 * RP_ENOMEM or RP_ETHREAD. Each created thread must be joined or detached
 * exactly once.
 *
 * rp_thread_set_name names the calling thread, for debuggers and profilers:
 * pthread_setname_np where available, SetThreadDescription on Windows 10 1607+
 * (silently nothing on older systems). The name is truncated to 15 bytes on
 * every platform (Linux's limit), so names look the same everywhere. */
int rp_thread_create(rp_thread *t, void *(*fn)(void *), void *arg, size_t stack_size);
int rp_thread_join(rp_thread t);
void rp_thread_detach(rp_thread t);
void rp_thread_set_name(const char *name);
int rp_thread_equal(rp_thread a, rp_thread b);
rp_thread rp_thread_self(void);

/* A pause hint for spin loops, and a yield of the time slice. */
void rp_cpu_relax(void);
void rp_thread_yield(void);

/* Sleep for ns nanoseconds (tests and back-off only). */
void rp_sleep_ns(int64_t ns);

unsigned rp_cpu_count(void);

/* Zeroed memory aligned to `align` (a power of two), for structs with
 * cache-line-aligned members; free it with rp_aligned_free. */
void *rp_aligned_zalloc(size_t align, size_t size);
void rp_aligned_free(void *p);

#endif /* RP_SYS_H */
