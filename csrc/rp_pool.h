/* rp_pool.h - the worker pool: a queue of tasks served by native threads.
 *
 * Tasks. The engine sees a task only as an rp_task header that the caller
 * embeds in (or points from) its own record. The caller owns the memory; the
 * engine holds the pointer from a successful submit until it hands the task
 * back exactly once, through ops->run (it will run) or ops->discard (it never
 * will: cancelled before start, or dropped by a discarding shutdown). After
 * either call returns the engine never touches the task again.
 *
 * Threads. rp_pool_submit*, rp_pool_shutdown, rp_pool_resize, rp_pool_stats
 * and rp_task_cancel may be called from any thread, workers included, at the
 * same time. rp_pool_join waits (call it with the GIL released); from one of
 * the pool's own workers it returns RP_EDEADLK instead of waiting for itself.
 * rp_pool_release may be called once, by the owner.
 *
 * Workers. Between min_workers and max_workers. A worker starts when a task is
 * submitted while no idle worker is left unpromised (each idle worker absorbs
 * one submit, as in ThreadPoolExecutor) and fewer than max_workers are live; one
 * above min_workers that stays idle for keep_alive ends its thread (joined by
 * the next spawn, by join, or by release). Each worker loops: pop, run,
 * account, and when the queue is empty call hooks->worker_idle, spin briefly
 * and park (rp_park.h; csrc/PARKING.md).
 */
#ifndef RP_POOL_H
#define RP_POOL_H

#include "rp_common.h"
#include "rp_stats.h"
#include "rp_status.h"
#include <stdatomic.h>

typedef struct rp_pool rp_pool;
typedef struct rp_worker rp_worker;
typedef struct rp_task rp_task;

/* What ops->run reports back, for the counters. */
typedef enum rp_outcome {
    RP_OUTCOME_COMPLETED = 0,
    RP_OUTCOME_FAILED = 1,    /* an error value (a native task's non-zero code) */
    RP_OUTCOME_CANCELLED = 2, /* gave up cooperatively */
    RP_OUTCOME_RAISED = 3,    /* raised (a Python exception): counted as failed and as a panic */
    RP_OUTCOME_OVERRAN = 4    /* its deadline fired while it ran (rp_task_disarm returned 0): the
                               * engine counted it as overran then; its result was dropped */
} rp_outcome;

/* Why ops->discard is called. */
typedef enum rp_discard_reason {
    RP_DISCARD_CANCELLED = 1, /* rp_task_cancel won before a worker started it */
    RP_DISCARD_SHUTDOWN = 2,  /* rp_pool_shutdown(RP_SHUTDOWN_DISCARD) dropped it */
    RP_DISCARD_EXPIRED = 3    /* its deadline passed while queued (ops->timer(EXPIRED) came first) */
} rp_discard_reason;

/* Why ops->timer is called (tasks with a deadline only). */
typedef enum rp_timer_event {
    RP_TIMER_RELEASE = 0, /* the timer entry left without effect (the task was cancelled
                           * or discarded first); ops->run/discard still follows or came */
    RP_TIMER_EXPIRED = 1, /* the deadline passed while it was queued: it will never run;
                           * counted as expired; ops->discard(RP_DISCARD_EXPIRED) follows */
    RP_TIMER_OVERRUN = 2  /* the deadline passed while it ran: its cancel flag is set and it
                           * is counted as overran; ops->run is still in progress or done */
} rp_timer_event;

/* Task life cycle, in rp_task.state. Transitions are single CASes from QUEUED:
 * to RUNNING by the worker that pops it, to CANCELLED by rp_task_cancel, to
 * EXPIRED by the pool's timer when its deadline passes first.
 * DONE is never set by the engine: ops->run may store it (seq_cst) once the
 * task's result is published, so that a waiter can poll for it without any
 * lock while the task memory is kept alive by the caller. */
enum {
    RP_TASK_QUEUED = 0,
    RP_TASK_RUNNING = 1,
    RP_TASK_CANCELLED = 2,
    RP_TASK_DONE = 3,
    RP_TASK_EXPIRED = 4
};

typedef struct rp_task_ops {
    /* On a worker thread, without any lock held. Returns an rp_outcome. */
    int (*run)(rp_task *task, rp_worker *worker);
    /* On whichever thread drops the task (a worker, or the shutdown caller). */
    void (*discard)(rp_task *task, int reason);
    /* Tasks with a deadline only: on the pool's timer thread (or, for
     * RP_TIMER_RELEASE, on a thread that discards the task), without any lock
     * held; exactly once per armed task unless rp_task_disarm took the entry
     * back first. The task's memory must stay valid until this call and
     * run/discard have both returned: a timer entry is a second hold on it. */
    void (*timer)(rp_task *task, int event);
    /* RP_OPS_* bits. */
    unsigned flags;
} rp_task_ops;

/* ops->run calls no Python (a native task): before it, the engine calls
 * hooks->worker_nogil, so a worker that kept the GIL from a previous Python
 * task (the binding's "sticky" GIL) lets go of it first. */
#define RP_OPS_NOGIL 1u

/* Deadlines. A task submitted with deadline_ns > 0 is armed in the pool's
 * timer heap (one per pool, served by one timer thread started on demand).
 * The deadline is absolute, on the rp_now_ns() clock. When it passes:
 *  - still queued: the task becomes EXPIRED and never runs;
 *  - running: its cancel flag is set (cooperative cancellation).
 * ops->run of an armed task must call rp_task_disarm(t) before it publishes
 * its outcome and before it lets go of t: 1 means the deadline did not fire
 * (publish as usual), 0 means it fired (do not publish: ops->timer reports
 * the time-out; return RP_OUTCOME_OVERRAN). */
struct rp_task {
    const rp_task_ops *ops; /* set by the caller */
    void *data;             /* the caller's; the engine never reads it */
    _Atomic int state;      /* RP_TASK_*: set to QUEUED by submit */
    _Atomic int cancel;     /* cooperative cancel flag: set by an overrun or rp_task_request_cancel;
                             * cleared by submit; native tasks see it as rp_task_ctx.cancel */
    int64_t submit_ns;      /* set by submit: rp_stats_now_ns() when metrics are on, else 0 */
    int64_t deadline_ns;    /* set by the caller: absolute rp_now_ns() deadline, or 0 for none */
    rp_pool *pool;          /* engine-private: the pool whose timer holds it */
    size_t heap_index;      /* engine-private: its place in the timer heap, under the timer lock */
};

typedef struct rp_pool_hooks {
    /* On a new worker thread before its first task. *local receives the
     * worker's private pointer (rp_worker_local). A non-zero return makes the
     * worker exit at once, without worker_stop; the pool stays open. */
    int (*worker_start)(void *ctx, rp_worker *w, void **local);
    /* When the worker finds the queue empty, before it spins or parks. */
    void (*worker_idle)(void *ctx, rp_worker *w);
    /* On the worker thread as it exits (keep-alive, resize, shutdown). */
    void (*worker_stop)(void *ctx, rp_worker *w);
    /* Once, when the pool's memory is freed: after rp_pool_release and the
     * last worker's exit, on whichever of those threads comes last. Lets the
     * owner keep hooks_ctx alive for exactly as long as workers may use it. */
    void (*pool_free)(void *ctx);
    /* On the pool's timer thread before it fires anything / as it exits
     * (the timer thread calls ops->timer). A non-zero start return makes the
     * timer thread exit at once: deadlines then wait for the next arm. */
    int (*timer_start)(void *ctx, void **local);
    void (*timer_stop)(void *ctx, void *local);
    /* Before ops->run of a task whose ops have RP_OPS_NOGIL: drop whatever
     * would block other threads while native code runs (the GIL). */
    void (*worker_nogil)(void *ctx, rp_worker *w);
} rp_pool_hooks;

typedef struct rp_pool_config {
    unsigned min_workers;     /* started by create, kept alive when idle */
    unsigned max_workers;     /* >= 1 and >= min_workers */
    size_t queue_capacity;    /* 0: unbounded; N: at most N tasks accepted and not started */
    size_t ring_capacity;     /* lock-free slots before the locked overflow list; 0: default */
    int64_t keep_alive_ns;    /* idle time before a worker above min_workers exits; < 0: never */
    int64_t spin_ns;          /* how long an idle worker spins before parking */
    size_t stack_size;        /* 0: at least the main thread's stack limit */
    const char *name;         /* thread-name prefix (copied); NULL: "ringpool" */
    int metrics;              /* record latency histograms (two clock reads per task) */
    const rp_pool_hooks *hooks; /* may be NULL; the struct is copied */
    void *hooks_ctx;
} rp_pool_config;

typedef enum rp_shutdown_mode {
    RP_SHUTDOWN_DRAIN = 0,  /* run everything queued, then stop */
    RP_SHUTDOWN_DISCARD = 1 /* hand every queued task to ops->discard, then stop */
} rp_shutdown_mode;

typedef struct rp_pool_stats {
    uint64_t submitted;   /* accepted by a submit */
    uint64_t started;     /* handed to ops->run */
    uint64_t completed;   /* ran, outcome COMPLETED */
    uint64_t failed;      /* ran, outcome FAILED or RAISED */
    uint64_t panics;      /* ran, outcome RAISED */
    uint64_t cancelled;   /* discarded, or ran with outcome CANCELLED */
    uint64_t expired;     /* deadline passed while queued: never ran */
    uint64_t overran;     /* deadline passed while running (counted then, not as running) */
    uint64_t overrunning; /* of those, still inside ops->run */
    uint64_t rejected;    /* refused by a full bounded queue: submit_wait time-outs, and
                           * refusals reported with rp_pool_count_rejected */
    uint64_t queued;      /* accepted, not yet popped */
    uint64_t running;     /* popped, not yet accounted */
    unsigned live_workers, idle_workers, peak_workers;
    unsigned min_workers, max_workers;
    size_t queue_capacity; /* 0: unbounded */
    unsigned blocked_submitters;   /* inside rp_pool_submit_wait now */
    uint64_t blocked_ns_total;     /* time submitters spent waiting for room */
    uint64_t blocked_ns_max;
    int closed;
} rp_pool_stats;

RP_API void rp_pool_config_init(rp_pool_config *cfg);
/* Starts min_workers workers. RP_EINVAL for a bad config, RP_ENOMEM, RP_ETHREAD. */
RP_API int rp_pool_create(const rp_pool_config *cfg, rp_pool **out);

/* Never waits. RP_OK (the engine owns the task), RP_EFULL (bounded and full),
 * RP_ESHUTDOWN, or RP_ETHREAD (no worker is live and none could start). */
RP_API int rp_pool_submit(rp_pool *p, rp_task *t);
/* Like rp_pool_submit, but a full bounded queue waits for room until the
 * absolute monotonic deadline_ns (< 0: no deadline): RP_ETIMEDOUT then, or
 * RP_ESHUTDOWN when the pool closes meanwhile. Submitters get in first come,
 * first served. Call it with the GIL released. */
RP_API int rp_pool_submit_wait(rp_pool *p, rp_task *t, int64_t deadline_ns);

/* Called by rp_pool_submit_wait_ex every check_every_ns while it waits, with
 * no lock held; a non-zero return abandons the wait (RP_EINTR). The waiter
 * keeps its place in line meanwhile, but does not hold up the others. */
typedef int (*rp_wait_check_fn)(void *arg);
RP_API int rp_pool_submit_wait_ex(rp_pool *p, rp_task *t, int64_t deadline_ns,
                                  int64_t check_every_ns, rp_wait_check_fn check, void *arg);
/* Counts a submit the caller gave up on after RP_EFULL (the engine counts
 * submit_wait's own time-outs). */
RP_API void rp_pool_count_rejected(rp_pool *p);

/* Stops accepting tasks and wakes every worker; with DISCARD, every queued
 * task is handed to ops->discard before this returns (from this thread or a
 * worker). Never waits for running tasks. Idempotent; DRAIN may be upgraded
 * to DISCARD by a later call. */
RP_API int rp_pool_shutdown(rp_pool *p, rp_shutdown_mode mode);
/* Waits until every worker has exited (after shutdown) and joins them.
 * RP_OK, RP_ETIMEDOUT (deadline_ns passed), RP_EDEADLK (called from one of
 * this pool's workers: it does not wait), RP_EINVAL (pool still open). */
RP_API int rp_pool_join(rp_pool *p, int64_t deadline_ns);
/* Changes the bounds; starts workers up to the new minimum; workers above the
 * new maximum retire after their current task. RP_EINVAL for bad bounds. */
RP_API int rp_pool_resize(rp_pool *p, unsigned min_workers, unsigned max_workers);
RP_API void rp_pool_stats_get(rp_pool *p, rp_pool_stats *out);
/* Adds the pool's latency histograms into *queue_wait (submit to start) and
 * *run_time (start to end of ops->run); zero them first. Empty when the pool
 * was created with metrics off. */
RP_API void rp_pool_latency(rp_pool *p, rp_hist_snapshot *queue_wait, rp_hist_snapshot *run_time);
/* Blocks until a task is queued or running, or the pool closes (RP_OK), or
 * the absolute deadline passes (RP_ETIMEDOUT): lets a scaling timer sleep
 * while the pool is idle. Call it with the GIL released. */
RP_API int rp_pool_wait_busy(rp_pool *p, int64_t deadline_ns);
/* Worker threads of all pools in this process that have been created and not
 * yet finished (counted from before the thread starts, so a worker that has
 * not run its start hook yet is included). */
RP_API unsigned rp_live_threads(void);
/* In the child of a fork(): the parent's worker threads do not exist here.
 * Resets rp_live_threads; the parent's pools must not be touched again in
 * the child (their mutexes may be held by threads that are gone). */
RP_API void rp_after_fork_child(void);
/* Tasks accepted and not yet popped (a relaxed snapshot; cheap). */
RP_API uint64_t rp_pool_queued(rp_pool *p);
/* The current max_workers bound (>= 1; a relaxed snapshot; cheap). */
RP_API unsigned rp_pool_max_workers(rp_pool *p);
/* The owner's last call: shuts down (DRAIN) if still open, joins what has
 * exited, detaches what has not, and frees the pool when the last worker has
 * left. Must not be called from one of the pool's own workers while that
 * worker's pool could still be needed by it: the engine handles that case by
 * leaving the free to the last exiting worker. */
RP_API void rp_pool_release(rp_pool *p);

/* Cancels a queued task: returns 1 if it had not started (a worker will hand
 * it to ops->discard(RP_DISCARD_CANCELLED) without running it), 0 otherwise. */
RP_API int rp_task_cancel(rp_task *t);
/* Sets the task's cooperative cancel flag (a running task may poll it). */
RP_API void rp_task_request_cancel(rp_task *t);
/* Takes a task's timer entry back: 1 if the deadline has not fired (or the
 * task has none) and never will, 0 if it fired or is firing (ops->timer is
 * or will be called). See "Deadlines" above. */
RP_API int rp_task_disarm(rp_task *t);
/* Whether the cancel flag is set (a relaxed load: it only ever goes 0 -> 1
 * while the task runs). */
RP_INLINE int
rp_task_cancel_requested(const rp_task *t)
{
    return atomic_load_explicit(&((rp_task *)t)->cancel, memory_order_relaxed);
}

/* Worker accessors; valid on the worker's own thread while it runs. */
RP_API unsigned rp_worker_index(const rp_worker *w);
RP_API void *rp_worker_local(const rp_worker *w);
RP_API rp_pool *rp_worker_pool(const rp_worker *w);
/* The worker running on this thread, or NULL. */
RP_API rp_worker *rp_worker_current(void);

#endif /* RP_POOL_H */
