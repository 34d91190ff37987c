/* rp_sys.h - the operating-system shim: threads, mutex/condition, clock.
 *
 * Everything above this file is portable C11. This is the only place that
 * knows about pthreads (rp_sys.c); a Win32 backend slots in behind the same
 * API. All functions here are safe to call from any thread. Waits block the
 * calling thread and nothing else.
 */
#ifndef RP_SYS_H
#define RP_SYS_H

#include "rp_common.h"
#include <pthread.h>

typedef pthread_mutex_t rp_mutex;
typedef pthread_cond_t rp_cond;
typedef pthread_t rp_thread;

int rp_mutex_init(rp_mutex *m);
void rp_mutex_destroy(rp_mutex *m);
void rp_mutex_lock(rp_mutex *m);
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
 * time.monotonic() on Linux and macOS). */
int64_t rp_now_ns(void);

/* stack_size 0 picks at least the main thread's stack limit (RLIMIT_STACK),
 * so deep recursion in a task behaves as it would on the main thread. name is
 * applied with pthread_setname_np where available (truncated to 15 bytes). */
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
