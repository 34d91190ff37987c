/* rp_pool.c - worker lifecycle, the dispatch loop, bounded admission, shutdown.
 *
 * State at a glance (every ordering below names its partner):
 *  - `pending` packs the admission state into one word: bit 63 CLOSED,
 *    bit 62 DISCARD, low bits the number of tasks reserved or queued and not
 *    yet popped. A submit reserves with one seq_cst RMW before it pushes; a
 *    worker releases with one seq_cst RMW after it pops. So a worker that
 *    reads CLOSED with count 0 knows no task can ever arrive again, and the
 *    parking protocol (PARKING.md) reads this one word on both sides.
 *  - tasks live in a lock-free ring; when it is full (unbounded pools, or a
 *    transient full in bounded ones) they spill into a mutex-protected FIFO
 *    `overflow`, served once the ring is empty. Nothing is ever refused for
 *    lack of ring room; a bounded pool refuses on `pending` alone, so its
 *    bound is exact.
 *  - counters a worker writes live in its own rp_worker (single writer,
 *    relaxed load+store, no locked instruction); stats merge them on read.
 *  - worker membership (live/dead lists, spawning, retiring, joining) is
 *    guarded by workers_mutex; that path is cold.
 */
#include "rp_pool.h"
#include "rp_park.h"
#include "rp_ring.h"
#include "rp_sys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLOSED_BIT ((uint64_t)1 << 63)
#define DISCARD_BIT ((uint64_t)1 << 62)
#define COUNT_MASK (DISCARD_BIT - 1)
#define DEFAULT_RING_CAPACITY 8192
#define MAX_RING_CAPACITY ((size_t)1 << 20)
/* Submitting threads count into one of these stripes (by thread), so
 * concurrent submitters do not write one cache line. */
#define SUBMIT_STRIPES 16
/* A timer heap entry's index when it is not in the heap. */
#define NO_INDEX ((size_t)-1)
/* How long an idle timer thread (no armed task) lingers before it exits; the
 * next armed submit starts a new one. */
#define TIMER_KEEP_ALIVE_NS ((int64_t)1000000000)

struct rp_worker {
    rp_pool *pool;
    unsigned index;
    rp_thread thread;
    void *local;
    int detached;            /* under workers_mutex: the owner released; free self */
    int exited;              /* under workers_mutex: left its loop */
    struct rp_worker *next;  /* live list or dead list, under workers_mutex */
    /* Single-writer counters (this worker), read by stats. */
    _Alignas(RP_CACHELINE) _Atomic uint64_t started;
    _Atomic uint64_t completed;
    _Atomic uint64_t failed;
    _Atomic uint64_t panics;
    _Atomic uint64_t cancelled;
    _Atomic uint64_t overran_returned; /* ops->run returned RP_OUTCOME_OVERRAN */
    _Atomic unsigned running; /* 1 while inside ops->run */
    rp_hist queue_wait;       /* submit to start, ns */
    rp_hist run_time;         /* start to end of ops->run, ns */
};

typedef struct submit_stripe {
    _Alignas(RP_CACHELINE) _Atomic uint64_t n;
} submit_stripe;

struct rp_pool {
    /* Written by every submit and every pop. */
    _Alignas(RP_CACHELINE) _Atomic uint64_t pending;
    /* Written by every submit, striped by submitting thread. */
    submit_stripe submitted[SUBMIT_STRIPES];
    /* Written when workers go idle or busy: workers spinning or parked. */
    _Alignas(RP_CACHELINE) _Atomic unsigned idle;
    _Atomic unsigned space_waiters; /* submitters queued in submit_wait */
    _Atomic unsigned spinners;      /* idle workers spinning before they park */

    _Alignas(RP_CACHELINE) rp_ring ring;
    size_t capacity; /* 0: unbounded; read-only */

    rp_park work_park; /* idle workers sleep here */
    rp_park busy_park; /* rp_pool_wait_busy callers (the scaling timer) sleep here */

    /* Overflow FIFO (circular buffer), guarded by ovf_mutex. ovf_count mirrors
     * ovf_len for lock-free "is it empty" checks. */
    rp_mutex ovf_mutex;
    void **ovf_buf;
    size_t ovf_cap, ovf_head, ovf_len;
    _Atomic size_t ovf_count;

    /* Bounded admission: submitters waiting for room, first come first served. */
    rp_mutex space_mutex;
    rp_cond space_cond;
    struct space_waiter *space_head, *space_tail;
    _Atomic uint64_t rejected;
    _Atomic uint64_t blocked_ns_total, blocked_ns_max;

    /* Worker membership. */
    rp_mutex workers_mutex;
    rp_cond workers_cond; /* signalled when a worker exits */
    rp_worker *live_list, *dead_list;
    _Atomic unsigned live;
    _Atomic unsigned min_workers, max_workers;
    unsigned peak, next_index;
    int released; /* the owner called rp_pool_release */
    _Atomic unsigned refs; /* owner + one per started worker thread */
    /* Counters of workers that have exited, and of discards by non-workers. */
    _Atomic uint64_t done_started, done_completed, done_failed, done_panics, done_cancelled;
    _Atomic uint64_t done_overran_returned;
    rp_hist done_wait, done_run; /* folded from exited workers, under workers_mutex */

    /* Deadlines: a binary min-heap of armed tasks ordered by deadline_ns, with
     * each task's index stored in the task (O(log n) removal when it ends
     * first). Guarded by timer_mutex, which is never held while an op runs.
     * Served by one timer thread, started by the first armed submit and
     * gone after TIMER_KEEP_ALIVE_NS with nothing armed. */
    rp_mutex timer_mutex;
    rp_cond timer_cond;
    rp_task **heap;
    size_t heap_len, heap_cap;
    int timer_running;              /* under timer_mutex: a timer thread serves the heap */
    rp_task *timer_firing;          /* under timer_mutex: the entry being fired now */
    unsigned firing_waiters;        /* under timer_mutex: timer_unarm_refused callers */
    _Atomic unsigned timers_live;   /* timer threads not yet gone (join waits; workers_cond) */
    _Atomic uint64_t expired, overran;
    _Atomic int64_t expired_queued; /* expired but not yet popped (still counted in pending) */

    /* Configuration (read-only after create). */
    int64_t keep_alive_ns;
    int64_t spin_ns;
    unsigned max_spinners; /* half the CPUs: more spinners only steal CPU */
    int metrics;
    size_t stack_size;
    char name[32];
    rp_pool_hooks hooks;
    void *hooks_ctx;
};

typedef struct space_waiter {
    struct space_waiter *next;
    int suspended; /* inside its check callback: keeps its place, lets others by */
} space_waiter;

static RP_THREAD_LOCAL rp_worker *tls_worker;
/* Worker threads of every pool in the process, from creation to their last
 * instruction that touches a pool (rp_live_threads). */
static _Atomic unsigned live_threads;
static RP_THREAD_LOCAL unsigned tls_stripe = SUBMIT_STRIPES; /* unassigned */
static _Atomic unsigned next_stripe;

RP_INLINE unsigned
my_stripe(void)
{
    if (RP_UNLIKELY(tls_stripe == SUBMIT_STRIPES))
        tls_stripe = atomic_fetch_add_explicit(&next_stripe, 1, memory_order_relaxed) % SUBMIT_STRIPES;
    return tls_stripe;
}

static void pool_unref(rp_pool *p);
static int start_worker_locked(rp_pool *p);
static int timer_arm(rp_pool *p, rp_task *t);
static void timer_unarm_refused(rp_pool *p, rp_task *t);

/* ------------------------------------------------------------------ */
/* Helpers                                                            */
/* ------------------------------------------------------------------ */

RP_INLINE uint64_t
count_of(uint64_t v)
{
    return v & COUNT_MASK;
}

/* A `pending` value that gives a sleeper a reason to wake: work, or close. */
RP_INLINE int
queued_or_closed(uint64_t v)
{
    return count_of(v) != 0 || (v & CLOSED_BIT) != 0;
}

/* Single-writer counter bump: no locked instruction on the hot path. Readers
 * only need a tear-free value, which the atomic store gives. */
RP_INLINE void
bump(_Atomic uint64_t *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static void
atomic_max_u64(_Atomic uint64_t *m, uint64_t v)
{
    uint64_t cur = atomic_load_explicit(m, memory_order_relaxed);
    while (cur < v && !atomic_compare_exchange_weak_explicit(m, &cur, v, memory_order_relaxed,
                                                             memory_order_relaxed)) {
    }
}

void
rp_pool_config_init(rp_pool_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->min_workers = 0;
    cfg->max_workers = rp_cpu_count() + 4 < 32 ? rp_cpu_count() + 4 : 32;
    cfg->keep_alive_ns = (int64_t)60 * 1000000000;
    cfg->spin_ns = 50000;
    cfg->metrics = 1;
}

/* ------------------------------------------------------------------ */
/* Queue: ring first, overflow when the ring is full                  */
/* ------------------------------------------------------------------ */

/* Pushes a task that already holds a reservation in `pending`. */
static int
queue_push(rp_pool *p, rp_task *t)
{
    /* relaxed: a stale 0 only lets this task overtake overflowed ones, which
     * reorders but never loses (workers drain the overflow once the ring is
     * empty). */
    if (atomic_load_explicit(&p->ovf_count, memory_order_relaxed) == 0 &&
        rp_ring_try_push(&p->ring, t) == RP_OK)
        return RP_OK;
    rp_mutex_lock(&p->ovf_mutex);
    if (p->ovf_len == p->ovf_cap) {
        size_t ncap = p->ovf_cap ? p->ovf_cap * 2 : 1024;
        void **nbuf = malloc(ncap * sizeof *nbuf);
        if (nbuf == NULL) {
            rp_mutex_unlock(&p->ovf_mutex);
            return RP_ENOMEM;
        }
        for (size_t i = 0; i < p->ovf_len; i++)
            nbuf[i] = p->ovf_buf[(p->ovf_head + i) % p->ovf_cap];
        free(p->ovf_buf);
        p->ovf_buf = nbuf;
        p->ovf_cap = ncap;
        p->ovf_head = 0;
    }
    p->ovf_buf[(p->ovf_head + p->ovf_len) % p->ovf_cap] = t;
    p->ovf_len++;
    /* release: pairs with the acquire load in queue_pop; the item itself is
     * read under ovf_mutex, so this only has to be eventually visible. */
    atomic_store_explicit(&p->ovf_count, p->ovf_len, memory_order_release);
    rp_mutex_unlock(&p->ovf_mutex);
    return RP_OK;
}

static void space_notify(rp_pool *p);

/* Pops one task, or NULL when neither the ring nor the overflow has one
 * published right now. On success releases the task's reservation. */
static rp_task *
queue_pop(rp_pool *p)
{
    void *item = NULL;
    if (rp_ring_try_pop(&p->ring, &item) != RP_OK) {
        /* acquire: pairs with the release store in queue_push. */
        if (atomic_load_explicit(&p->ovf_count, memory_order_acquire) == 0)
            return NULL;
        rp_mutex_lock(&p->ovf_mutex);
        if (p->ovf_len > 0) {
            item = p->ovf_buf[p->ovf_head];
            p->ovf_head = (p->ovf_head + 1) % p->ovf_cap;
            p->ovf_len--;
            atomic_store_explicit(&p->ovf_count, p->ovf_len, memory_order_release);
        }
        rp_mutex_unlock(&p->ovf_mutex);
        if (item == NULL)
            return NULL;
    }
    /* seq_cst: releases the reservation. Pairs with the seq_cst load of
     * pending in space_ready (a blocked submitter) and in worker_should_exit;
     * the load of space_waiters below pairs with the submitter's seq_cst
     * increment of it (Dekker, PARKING.md). */
    atomic_fetch_sub_explicit(&p->pending, 1, memory_order_seq_cst);
    if (p->capacity != 0 &&
        atomic_load_explicit(&p->space_waiters, memory_order_seq_cst) != 0)
        space_notify(p);
    return (rp_task *)item;
}

/* ------------------------------------------------------------------ */
/* Admission                                                          */
/* ------------------------------------------------------------------ */

/* Reserves one slot in `pending`. */
static int
reserve(rp_pool *p)
{
    if (p->capacity == 0) {
        /* seq_cst: the reservation is the waker's publishing RMW of the
         * parking protocol; pairs with the sleeper's seq_cst load in work_ready. */
        uint64_t v = atomic_fetch_add_explicit(&p->pending, 1, memory_order_seq_cst);
        if (RP_UNLIKELY(v & CLOSED_BIT)) {
            atomic_fetch_sub_explicit(&p->pending, 1, memory_order_seq_cst);
            return RP_ESHUTDOWN;
        }
        return RP_OK;
    }
    uint64_t v = atomic_load_explicit(&p->pending, memory_order_relaxed);
    for (;;) {
        if (v & CLOSED_BIT)
            return RP_ESHUTDOWN;
        if (count_of(v) >= p->capacity)
            return RP_EFULL;
        /* seq_cst: as above. */
        if (atomic_compare_exchange_weak_explicit(&p->pending, &v, v + 1, memory_order_seq_cst,
                                                  memory_order_relaxed))
            return RP_OK;
    }
}

static void
unreserve(rp_pool *p)
{
    atomic_fetch_sub_explicit(&p->pending, 1, memory_order_seq_cst);
}

/* Starts a worker if none is idle and the pool may grow. */
static void
spawn_if_needed(rp_pool *p)
{
    /* seq_cst: pairs with try_retire's seq_cst decrements of idle and live
     * followed by its seq_cst load of pending: either we see the retiree
     * gone (and may start a worker) or it sees our task (and stays). */
    if (atomic_load_explicit(&p->live, memory_order_seq_cst) >=
        atomic_load_explicit(&p->max_workers, memory_order_relaxed))
        return;
    rp_mutex_lock(&p->workers_mutex);
    uint64_t v = atomic_load_explicit(&p->pending, memory_order_seq_cst);
    if (!(v & CLOSED_BIT) && atomic_load_explicit(&p->idle, memory_order_seq_cst) == 0 &&
        atomic_load_explicit(&p->live, memory_order_relaxed) <
            atomic_load_explicit(&p->max_workers, memory_order_relaxed))
        (void)start_worker_locked(p); /* on failure the live workers serve it */
    rp_mutex_unlock(&p->workers_mutex);
}

/* After a push: wake a parked worker, or start one if none is idle. */
static void
wake_or_spawn(rp_pool *p)
{

    /* seq_cst: pairs with a worker's seq_cst increment of idle before it
     * re-checks pending (worker_main), and with try_retire. */
    if (atomic_load_explicit(&p->idle, memory_order_seq_cst) != 0) {
        /* A spinning worker will take the task: waking a parked one too
         * would cost this thread a syscall and put a second thread on the
         * CPU for nothing (rayon's rule). seq_cst: pairs with the spinner's
         * seq_cst decrement of spinners, after which it re-checks pending
         * before it parks (worker_main), so skipping the wake-up is safe. */
        if (atomic_load_explicit(&p->spinners, memory_order_seq_cst) == 0)
            rp_park_notify_one(&p->work_park); /* free unless a worker is parked */
    } else {
        spawn_if_needed(p);
    }
}

/* No worker is live (min_workers 0, all expired): start one before the push,
 * so a task is never accepted that no thread can run. *started says whether
 * this call started it. */
static int
ensure_worker(rp_pool *p, int *started)
{
    int rc = RP_OK;
    rp_mutex_lock(&p->workers_mutex);
    if (atomic_load_explicit(&p->live, memory_order_seq_cst) == 0) {
        rc = start_worker_locked(p);
        *started = rc == RP_OK;
    }
    rp_mutex_unlock(&p->workers_mutex);
    return rc;
}

static int
submit_reserved(rp_pool *p, rp_task *t)
{
    int started = 0, rc;
    if (RP_UNLIKELY(atomic_load_explicit(&p->live, memory_order_seq_cst) == 0)) {
        rc = ensure_worker(p, &started);
        if (rc != RP_OK) {
            unreserve(p);
            return rc;
        }
    }
    atomic_store_explicit(&t->state, RP_TASK_QUEUED, memory_order_relaxed);
    atomic_store_explicit(&t->cancel, 0, memory_order_relaxed);
    t->submit_ns = p->metrics ? rp_stats_now_ns() : 0;
    t->pool = NULL;
    if (t->deadline_ns > 0) {
        /* Armed before the push: once a worker can see the task, its timer
         * entry exists (rp_task_disarm in ops->run relies on it). */
        rc = timer_arm(p, t);
        if (RP_UNLIKELY(rc != RP_OK)) {
            unreserve(p);
            return rc;
        }
    }
    /* Counted before the push, so a snapshot never shows a task completed
     * that was not yet submitted. */
    atomic_fetch_add_explicit(&p->submitted[my_stripe()].n, 1, memory_order_relaxed);
    rc = queue_push(p, t);
    if (RP_UNLIKELY(rc != RP_OK)) {
        atomic_fetch_sub_explicit(&p->submitted[my_stripe()].n, 1, memory_order_relaxed);
        if (t->deadline_ns > 0)
            timer_unarm_refused(p, t);
        unreserve(p);
        return rc;
    }
    if (!started)
        wake_or_spawn(p);
    /* An idle pool's scaling timer waits for the first task (free when none
     * does: one seq_cst load of busy_park.sleepers). */
    rp_park_notify_all(&p->busy_park);
    return RP_OK;
}

int
rp_pool_submit(rp_pool *p, rp_task *t)
{
    /* A bounded pool with submitters queued for room: do not overtake them. */
    if (p->capacity != 0 &&
        atomic_load_explicit(&p->space_waiters, memory_order_seq_cst) != 0) {
        if (atomic_load_explicit(&p->pending, memory_order_relaxed) & CLOSED_BIT)
            return RP_ESHUTDOWN;
        return RP_EFULL;
    }
    int rc = reserve(p);
    if (rc == RP_OK)
        return submit_reserved(p, t);
    return rc;
}

void
rp_pool_count_rejected(rp_pool *p)
{
    atomic_fetch_add_explicit(&p->rejected, 1, memory_order_relaxed);
}

static void
space_notify(rp_pool *p)
{
    rp_mutex_lock(&p->space_mutex);
    rp_cond_broadcast(&p->space_cond);
    rp_mutex_unlock(&p->space_mutex);
}

int
rp_pool_submit_wait(rp_pool *p, rp_task *t, int64_t deadline_ns)
{
    return rp_pool_submit_wait_ex(p, t, deadline_ns, 0, NULL, NULL);
}

/* The first waiter that is not suspended in its check callback: the only
 * one allowed to reserve. Caller holds space_mutex. */
static space_waiter *
space_first_active(rp_pool *p)
{
    space_waiter *w = p->space_head;
    while (w != NULL && w->suspended)
        w = w->next;
    return w;
}

int
rp_pool_submit_wait_ex(rp_pool *p, rp_task *t, int64_t deadline_ns, int64_t check_every_ns,
                       rp_wait_check_fn check, void *check_arg)
{
    if (p->capacity == 0)
        return rp_pool_submit(p, t);
    if (atomic_load_explicit(&p->space_waiters, memory_order_seq_cst) == 0) {
        int rc = reserve(p);
        if (rc == RP_OK)
            return submit_reserved(p, t);
        if (rc != RP_EFULL)
            return rc;
    }
    /* Slow path: join the FIFO of waiting submitters. Only the first active
     * waiter may reserve, so a submitter that arrived earlier always gets in
     * first. A waiter inside its check callback is suspended: it keeps its
     * place, and the next one may go meanwhile (the callback may itself
     * submit, e.g. from a signal handler, and must not wait for its caller). */
    int64_t start = rp_now_ns();
    int64_t next_check = check ? start + check_every_ns : -1;
    space_waiter me = {NULL, 0};
    int rc;
    rp_mutex_lock(&p->space_mutex);
    if (p->space_tail)
        p->space_tail->next = &me;
    else
        p->space_head = &me;
    p->space_tail = &me;
    /* seq_cst: announce before trying to reserve. Pairs with the seq_cst
     * load of space_waiters after the pop's seq_cst decrement of pending in
     * queue_pop: either the worker sees us and broadcasts (it takes
     * space_mutex, so not before we wait), or we see its decrement. */
    atomic_fetch_add_explicit(&p->space_waiters, 1, memory_order_seq_cst);
    for (;;) {
        if (space_first_active(p) == &me) {
            rc = reserve(p);
            if (rc != RP_EFULL)
                break;
        } else if (atomic_load_explicit(&p->pending, memory_order_seq_cst) & CLOSED_BIT) {
            rc = RP_ESHUTDOWN;
            break;
        }
        int64_t until = deadline_ns;
        if (next_check >= 0 && (until < 0 || next_check < until))
            until = next_check;
        if (rp_cond_wait_until(&p->space_cond, &p->space_mutex, until) != RP_ETIMEDOUT)
            continue;
        int64_t now = rp_now_ns();
        if (deadline_ns >= 0 && now >= deadline_ns) {
            rc = space_first_active(p) == &me ? reserve(p) : RP_EFULL;
            if (rc == RP_EFULL)
                rc = RP_ETIMEDOUT;
            break;
        }
        if (next_check >= 0 && now >= next_check) {
            me.suspended = 1;
            rp_cond_broadcast(&p->space_cond); /* someone else may be first now */
            rp_mutex_unlock(&p->space_mutex);
            int stop = check(check_arg);
            rp_mutex_lock(&p->space_mutex);
            me.suspended = 0;
            if (stop) {
                rc = RP_EINTR;
                break;
            }
            next_check = rp_now_ns() + check_every_ns;
        }
    }
    /* Leave the FIFO; the new head must re-try, so wake everyone. */
    space_waiter **pp = &p->space_head;
    space_waiter *prev = NULL;
    while (*pp != &me) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    *pp = me.next;
    if (p->space_tail == &me)
        p->space_tail = prev;
    atomic_fetch_sub_explicit(&p->space_waiters, 1, memory_order_seq_cst);
    rp_cond_broadcast(&p->space_cond);
    rp_mutex_unlock(&p->space_mutex);

    uint64_t waited = (uint64_t)(rp_now_ns() - start);
    atomic_fetch_add_explicit(&p->blocked_ns_total, waited, memory_order_relaxed);
    atomic_max_u64(&p->blocked_ns_max, waited);
    if (rc == RP_OK)
        return submit_reserved(p, t);
    if (rc == RP_ETIMEDOUT)
        rp_pool_count_rejected(p);
    return rc;
}

int
rp_task_cancel(rp_task *t)
{
    int expected = RP_TASK_QUEUED;
    /* acq_rel: a win here pairs with the worker's CAS in run_one, which then
     * fails and discards instead of running. */
    return atomic_compare_exchange_strong_explicit(&t->state, &expected, RP_TASK_CANCELLED,
                                                   memory_order_acq_rel, memory_order_acquire);
}


/* ------------------------------------------------------------------ */
/* Deadlines: the timer heap and its thread                           */
/* ------------------------------------------------------------------ */

/* State of a task whose push failed after it was armed: the timer skips it. */
#define TASK_REFUSED 5

static void
heap_set(rp_pool *p, size_t i, rp_task *t)
{
    p->heap[i] = t;
    t->heap_index = i;
}

static void
heap_sift_up(rp_pool *p, size_t i)
{
    rp_task *t = p->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (p->heap[parent]->deadline_ns <= t->deadline_ns)
            break;
        heap_set(p, i, p->heap[parent]);
        i = parent;
    }
    heap_set(p, i, t);
}

static void
heap_sift_down(rp_pool *p, size_t i)
{
    rp_task *t = p->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= p->heap_len)
            break;
        if (c + 1 < p->heap_len && p->heap[c + 1]->deadline_ns < p->heap[c]->deadline_ns)
            c++;
        if (t->deadline_ns <= p->heap[c]->deadline_ns)
            break;
        heap_set(p, i, p->heap[c]);
        i = c;
    }
    heap_set(p, i, t);
}

/* Removes the entry at i. Caller holds timer_mutex. */
static void
heap_remove(rp_pool *p, size_t i)
{
    rp_task *t = p->heap[i];
    t->heap_index = NO_INDEX;
    p->heap_len--;
    if (i == p->heap_len)
        return;
    heap_set(p, i, p->heap[p->heap_len]);
    if (i > 0 && p->heap[(i - 1) / 2]->deadline_ns > p->heap[i]->deadline_ns)
        heap_sift_up(p, i);
    else
        heap_sift_down(p, i);
}

/* The deadline passed: expire a queued task, flag a running one. */
static void
timer_fire(rp_pool *p, rp_task *t)
{
    int st = RP_TASK_QUEUED;
    /* acq_rel: pairs with the worker's CAS QUEUED -> RUNNING in run_one and
     * with rp_task_cancel's: exactly one of the three wins a queued task. */
    if (atomic_compare_exchange_strong_explicit(&t->state, &st, RP_TASK_EXPIRED,
                                                memory_order_acq_rel, memory_order_acquire)) {
        /* Counted before the op reports it, so a caller released by the
         * time-out already sees it in the stats. */
        atomic_fetch_add_explicit(&p->expired_queued, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&p->expired, 1, memory_order_relaxed);
        t->ops->timer(t, RP_TIMER_EXPIRED);
    } else if (st == RP_TASK_CANCELLED) {
        t->ops->timer(t, RP_TIMER_RELEASE);
    } else if (st == TASK_REFUSED) {
        /* Its submit failed: the submitter waits in timer_unarm_refused
         * until this thread has let go of it. */
    } else {
        /* RUNNING, or DONE with its outcome unpublished (ops->run found the
         * entry gone). release: pairs with the acquire load of a poller
         * that then reads what this thread wrote before (nothing today;
         * cheap, and it keeps the flag a proper publication). */
        atomic_store_explicit(&t->cancel, 1, memory_order_release);
        atomic_fetch_add_explicit(&p->overran, 1, memory_order_relaxed);
        t->ops->timer(t, RP_TIMER_OVERRUN);
    }
}

static void *
timer_main(void *arg)
{
    rp_pool *p = arg;
    void *local = NULL;
    {
        char tname[48];
        snprintf(tname, sizeof tname, "%s-timer", p->name);
        rp_thread_set_name(tname);
    }
    int ok = p->hooks.timer_start == NULL || p->hooks.timer_start(p->hooks_ctx, &local) == 0;
    rp_mutex_lock(&p->timer_mutex);
    int64_t idle_until = -1;
    while (ok) {
        if (p->heap_len == 0) {
            /* seq_cst: pairs with the fetch_or of CLOSED in rp_pool_shutdown,
             * which then signals timer_cond under timer_mutex. */
            if (atomic_load_explicit(&p->pending, memory_order_seq_cst) & CLOSED_BIT)
                break; /* closed: no task can be armed any more */
            if (idle_until < 0)
                idle_until = rp_now_ns() + TIMER_KEEP_ALIVE_NS;
            if (rp_cond_wait_until(&p->timer_cond, &p->timer_mutex, idle_until) == RP_ETIMEDOUT &&
                p->heap_len == 0)
                break;
            continue;
        }
        idle_until = -1;
        rp_task *t = p->heap[0];
        if (t->deadline_ns > rp_now_ns()) {
            rp_cond_wait_until(&p->timer_cond, &p->timer_mutex, t->deadline_ns);
            continue;
        }
        heap_remove(p, 0);
        p->timer_firing = t;
        rp_mutex_unlock(&p->timer_mutex);
        timer_fire(p, t); /* t may be freed once this returns */
        rp_mutex_lock(&p->timer_mutex);
        p->timer_firing = NULL;
        if (p->firing_waiters)
            rp_cond_broadcast(&p->timer_cond);
    }
    p->timer_running = 0; /* the next arm starts a new timer thread */
    rp_mutex_unlock(&p->timer_mutex);
    if (ok && p->hooks.timer_stop)
        p->hooks.timer_stop(p->hooks_ctx, local);
    rp_mutex_lock(&p->workers_mutex);
    atomic_fetch_sub_explicit(&p->timers_live, 1, memory_order_relaxed);
    rp_cond_broadcast(&p->workers_cond); /* rp_pool_join waits for timers too */
    rp_mutex_unlock(&p->workers_mutex);
    pool_unref(p); /* may free the pool */
    /* release: pairs with rp_live_threads' acquire load. */
    atomic_fetch_sub_explicit(&live_threads, 1, memory_order_release);
    return NULL;
}

/* Puts an armed task's entry in the heap; starts the timer thread if none
 * serves it. */
static int
timer_arm(rp_pool *p, rp_task *t)
{
    int rc = RP_OK;
    rp_mutex_lock(&p->timer_mutex);
    if (p->heap_len == p->heap_cap) {
        size_t ncap = p->heap_cap ? p->heap_cap * 2 : 256;
        rp_task **nheap = realloc(p->heap, ncap * sizeof *nheap);
        if (nheap == NULL) {
            rp_mutex_unlock(&p->timer_mutex);
            return RP_ENOMEM;
        }
        p->heap = nheap;
        p->heap_cap = ncap;
    }
    t->pool = p;
    p->heap[p->heap_len] = t;
    t->heap_index = p->heap_len++;
    heap_sift_up(p, t->heap_index);
    if (!p->timer_running) {
        rp_thread th;
        atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed); /* the timer's */
        atomic_fetch_add_explicit(&p->timers_live, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&live_threads, 1, memory_order_relaxed);
        if (rp_thread_create(&th, timer_main, p, 0) == RP_OK) {
            rp_thread_detach(th); /* it unrefs the pool as it leaves; join waits on timers_live */
            p->timer_running = 1;
        } else {
            atomic_fetch_sub_explicit(&live_threads, 1, memory_order_relaxed);
            atomic_fetch_sub_explicit(&p->timers_live, 1, memory_order_relaxed);
            atomic_fetch_sub_explicit(&p->refs, 1, memory_order_relaxed);
            heap_remove(p, t->heap_index);
            t->pool = NULL;
            rc = RP_ETHREAD;
        }
    } else if (t->heap_index == 0) {
        rp_cond_signal(&p->timer_cond); /* a new earliest deadline */
    }
    rp_mutex_unlock(&p->timer_mutex);
    return rc;
}

/* A push failed after the task was armed: take the entry back, or wait until
 * the timer, which may be firing it right now, has let go of it (it skips
 * refused tasks), so ops->timer is never called for a failed submit. */
static void
timer_unarm_refused(rp_pool *p, rp_task *t)
{
    atomic_store_explicit(&t->state, TASK_REFUSED, memory_order_seq_cst);
    rp_mutex_lock(&p->timer_mutex);
    if (t->heap_index != NO_INDEX) {
        heap_remove(p, t->heap_index);
    } else {
        p->firing_waiters++;
        while (p->timer_firing == t)
            rp_cond_wait_until(&p->timer_cond, &p->timer_mutex, -1);
        p->firing_waiters--;
    }
    t->pool = NULL;
    rp_mutex_unlock(&p->timer_mutex);
}

/* Takes an armed task's entry out of the heap: 1 if it was there (no
 * ops->timer call will come for it), 0 if the timer has it. With `late`,
 * sets *late when the deadline has already passed. */
static int
timer_take(rp_task *t, int *late)
{
    rp_pool *p = t->pool;
    if (t->deadline_ns <= 0 || p == NULL)
        return 1; /* never armed, or already taken back */
    int removed = 0;
    rp_mutex_lock(&p->timer_mutex);
    if (t->heap_index != NO_INDEX) {
        if (late != NULL)
            *late = t->deadline_ns <= rp_now_ns();
        int was_root = t->heap_index == 0;
        heap_remove(p, t->heap_index);
        t->pool = NULL;
        removed = 1;
        /* The timer sleeps until the root's deadline: a new root means a new
         * wake-up time, an empty heap its idle countdown, and a closed pool
         * with an empty heap its exit. seq_cst: as in timer_main. */
        if (was_root || (p->heap_len == 0 &&
                         (atomic_load_explicit(&p->pending, memory_order_seq_cst) & CLOSED_BIT)))
            rp_cond_signal(&p->timer_cond);
    }
    rp_mutex_unlock(&p->timer_mutex);
    return removed;
}

int
rp_task_disarm(rp_task *t)
{
    rp_pool *p = t->pool;
    int late = 0;
    if (!timer_take(t, &late))
        return 0; /* the timer fired it */
    if (!late)
        return 1;
    /* It returned after its deadline, before the timer got to it: the clock,
     * not the timer's latency, decides, so report it here as the timer
     * would have (an overrun). release: see timer_fire. */
    atomic_store_explicit(&t->cancel, 1, memory_order_release);
    atomic_fetch_add_explicit(&p->overran, 1, memory_order_relaxed);
    t->ops->timer(t, RP_TIMER_OVERRUN);
    return 0;
}

/* A worker popped an armed task whose deadline has passed: it must not
 * start, even when the timer thread lags behind. Returns 1 when this call
 * handed it back (expired); 0 when the caller goes on as usual (the task was
 * cancelled, or the timer expired it: either way its CAS to RUNNING fails). */
static int
expire_late(rp_pool *p, rp_task *t)
{
    if (timer_take(t, NULL)) {
        int st = RP_TASK_QUEUED;
        /* acq_rel: as in timer_fire. */
        if (atomic_compare_exchange_strong_explicit(&t->state, &st, RP_TASK_EXPIRED,
                                                    memory_order_acq_rel, memory_order_acquire)) {
            atomic_fetch_add_explicit(&p->expired, 1, memory_order_relaxed);
            t->ops->timer(t, RP_TIMER_EXPIRED);
            t->ops->discard(t, RP_DISCARD_EXPIRED);
            return 1;
        }
        t->ops->timer(t, RP_TIMER_RELEASE); /* cancelled meanwhile */
        return 0;
    }
    /* The timer is firing it; its first step is the CAS out of QUEUED. */
    while (atomic_load_explicit(&t->state, memory_order_acquire) == RP_TASK_QUEUED)
        rp_thread_yield();
    return 0;
}

void
rp_task_request_cancel(rp_task *t)
{
    /* release: see timer_fire. */
    atomic_store_explicit(&t->cancel, 1, memory_order_release);
}

/* Hands a task that will never run back to its owner: its timer entry first
 * (while t is surely alive), then ops->discard. */
static void
hand_back_discard(rp_task *t, int reason)
{
    /* t->pool is NULL once the entry was taken back (timer_take would
     * then answer 1 again: the release must not be repeated). */
    if (reason != RP_DISCARD_EXPIRED && t->deadline_ns > 0 && t->pool != NULL &&
        timer_take(t, NULL))
        t->ops->timer(t, RP_TIMER_RELEASE);
    t->ops->discard(t, reason);
}

/* Why a task that a worker or shutdown failed to claim is being dropped. */
RP_INLINE int
lost_reason(int state)
{
    return state == RP_TASK_EXPIRED ? RP_DISCARD_EXPIRED : RP_DISCARD_CANCELLED;
}

/* ------------------------------------------------------------------ */
/* Workers                                                            */
/* ------------------------------------------------------------------ */

unsigned rp_worker_index(const rp_worker *w) { return w->index; }
void *rp_worker_local(const rp_worker *w) { return w->local; }
rp_pool *rp_worker_pool(const rp_worker *w) { return w->pool; }
rp_worker *rp_worker_current(void) { return tls_worker; }

/* Runs or discards one popped task and accounts for it. */
static void
run_one(rp_pool *p, rp_worker *w, rp_task *t, int64_t *last_end_ns)
{
    int expected = RP_TASK_QUEUED;
    int reason;
    if (RP_UNLIKELY(atomic_load_explicit(&p->pending, memory_order_relaxed) & DISCARD_BIT)) {
        /* A discarding shutdown: the task never runs. */
        reason = atomic_compare_exchange_strong_explicit(&t->state, &expected, RP_TASK_CANCELLED,
                                                         memory_order_acq_rel, memory_order_acquire)
                     ? RP_DISCARD_SHUTDOWN
                     : lost_reason(expected);
    } else if (RP_UNLIKELY(t->deadline_ns > 0) && t->deadline_ns <= rp_now_ns() &&
               expire_late(p, t)) {
        return; /* expired: counted by expire_late, not as started */
    } else if (atomic_compare_exchange_strong_explicit(&t->state, &expected, RP_TASK_RUNNING,
                                                       memory_order_acq_rel, memory_order_acquire)) {
        /* acq_rel: pairs with the CASes in rp_task_cancel and timer_fire;
         * exactly one of them wins. */
        reason = 0;
    } else {
        reason = lost_reason(expected);
    }
    if (reason != 0) {
        if (reason == RP_DISCARD_EXPIRED)
            atomic_fetch_sub_explicit(&p->expired_queued, 1, memory_order_relaxed);
        else
            bump(&w->cancelled);
        hand_back_discard(t, reason);
        return;
    }
    if ((t->ops->flags & RP_OPS_NOGIL) && p->hooks.worker_nogil)
        p->hooks.worker_nogil(p->hooks_ctx, w);
    atomic_store_explicit(&w->running, 1, memory_order_relaxed);
    bump(&w->started);
    int64_t start = 0, submitted_at = t->submit_ns;
    if (p->metrics) {
        /* One clock read per task on the worker: back to back, the end of
         * the previous task is this one's start (the pop in between is
         * counted as queue wait). */
        start = *last_end_ns ? *last_end_ns : rp_stats_now_ns();
        rp_hist_record(&w->queue_wait, (uint64_t)(start > submitted_at ? start - submitted_at : 0));
    }
    int outcome = t->ops->run(t, w); /* t may be freed from here on */
    if (p->metrics) {
        int64_t end = rp_stats_now_ns();
        rp_hist_record(&w->run_time, (uint64_t)(end > start ? end - start : 0));
        *last_end_ns = end;
    }
    atomic_store_explicit(&w->running, 0, memory_order_relaxed);
    if (RP_LIKELY(outcome == RP_OUTCOME_COMPLETED)) {
        bump(&w->completed);
    } else if (outcome == RP_OUTCOME_FAILED) {
        bump(&w->failed);
    } else if (outcome == RP_OUTCOME_RAISED) {
        bump(&w->failed);
        bump(&w->panics);
    } else if (outcome == RP_OUTCOME_OVERRAN) {
        bump(&w->overran_returned); /* counted as overran by the timer already */
    } else {
        bump(&w->cancelled);
    }
}

/* Parking condition for an idle worker: something may need it. */
static int
work_ready(void *arg)
{
    rp_pool *p = arg;
    /* seq_cst: the sleeper's re-check; pairs with the submitter's seq_cst
     * reservation in reserve() and the fetch_or in rp_pool_shutdown. */
    if (queued_or_closed(atomic_load_explicit(&p->pending, memory_order_seq_cst)))
        return 1;
    /* resize() shrank the pool: surplus workers must wake to retire. */
    return atomic_load_explicit(&p->live, memory_order_seq_cst) >
           atomic_load_explicit(&p->max_workers, memory_order_seq_cst);
}

/* Decides, under workers_mutex, whether a worker may exit now.
 * keep_alive: its idle timeout fired (exit only above min_workers, and only if
 * its idleness was not promised to a submit and no task arrived); otherwise
 * the pool is above max_workers (resize) and it leaves after its task. */
static int
try_retire(rp_pool *p, int keep_alive, int is_idle)
{
    int ok = 0;
    rp_mutex_lock(&p->workers_mutex);
    unsigned live = atomic_load_explicit(&p->live, memory_order_relaxed);
    if (keep_alive) {
        if (live > atomic_load_explicit(&p->min_workers, memory_order_relaxed)) {
            /* seq_cst: stop counting as idle and as live, then look for work.
             * Pairs with the submitter's reservation followed by its seq_cst
             * loads of idle and live (wake_or_spawn, spawn_if_needed): it sees
             * us gone (and starts a worker, under this mutex) or we see its
             * task (and stay). */
            atomic_fetch_sub_explicit(&p->idle, 1, memory_order_seq_cst);
            atomic_fetch_sub_explicit(&p->live, 1, memory_order_seq_cst);
            if (count_of(atomic_load_explicit(&p->pending, memory_order_seq_cst)) != 0) {
                atomic_fetch_add_explicit(&p->live, 1, memory_order_seq_cst);
                atomic_fetch_add_explicit(&p->idle, 1, memory_order_seq_cst);
            } else {
                ok = 1;
            }
        }
    } else if (live > atomic_load_explicit(&p->max_workers, memory_order_relaxed)) {
        /* Others remain (max_workers >= 1), so the queue is still served. */
        if (is_idle)
            atomic_fetch_sub_explicit(&p->idle, 1, memory_order_seq_cst);
        atomic_fetch_sub_explicit(&p->live, 1, memory_order_seq_cst);
        ok = 1;
    }
    rp_mutex_unlock(&p->workers_mutex);
    return ok;
}

static void *
worker_main(void *arg)
{
    rp_worker *w = arg;
    rp_pool *p = w->pool;
    int is_idle = 0, counted_live = 1;
    unsigned waits = 0;
    int64_t idle_since = 0, last_end_ns = 0;
    tls_worker = w;
    {
        char tname[48];
        snprintf(tname, sizeof tname, "%s-%u", p->name, w->index);
        rp_thread_set_name(tname);
    }
    if (p->hooks.worker_start &&
        p->hooks.worker_start(p->hooks_ctx, w, &w->local) != 0)
        goto out;

    for (;;) {
        rp_task *t = queue_pop(p);
        if (t != NULL) {
            if (is_idle) {
                atomic_fetch_sub_explicit(&p->idle, 1, memory_order_seq_cst);
                is_idle = 0;
            }
            /* More tasks queued behind this one: pass the wake-up on, so a
             * burst submitted onto fewer idle workers than tasks wakes or
             * starts one worker per task (up to max_workers) instead of
             * queueing behind tasks that may block. Cheap when the pool is
             * saturated: live == max_workers ends it. */
            if (count_of(atomic_load_explicit(&p->pending, memory_order_relaxed)) != 0)
                wake_or_spawn(p);
            run_one(p, w, t, &last_end_ns);
            /* resize() shrank the pool: retire after the current task. */
            if (RP_UNLIKELY(atomic_load_explicit(&p->live, memory_order_relaxed) >
                            atomic_load_explicit(&p->max_workers, memory_order_relaxed)) &&
                try_retire(p, 0, 0)) {
                counted_live = 0;
                break;
            }
            continue;
        }
        uint64_t v = atomic_load_explicit(&p->pending, memory_order_seq_cst);
        if ((v & CLOSED_BIT) && count_of(v) == 0)
            break; /* drained: no task can arrive any more */
        if (count_of(v) != 0) {
            /* A reservation whose push is in flight, or a transient empty
             * ring: it will be there in a moment. Yield now and then, in case
             * the pusher was preempted on a busy machine. */
            if (++waits % 64 == 0)
                rp_thread_yield();
            else
                rp_cpu_relax();
            continue;
        }
        last_end_ns = 0; /* the next start needs its own clock read */
        if (!is_idle) {
            /* seq_cst: announce idleness, then look again (the loop does).
             * Pairs with the seq_cst load of idle in wake_or_spawn. */
            atomic_fetch_add_explicit(&p->idle, 1, memory_order_seq_cst);
            is_idle = 1;
            idle_since = rp_now_ns();
            if (p->hooks.worker_idle)
                p->hooks.worker_idle(p->hooks_ctx, w);
            continue;
        }
        if (atomic_load_explicit(&p->live, memory_order_relaxed) >
            atomic_load_explicit(&p->max_workers, memory_order_relaxed)) {
            if (try_retire(p, 0, 1)) {
                is_idle = 0;
                counted_live = 0;
                break;
            }
        }
        /* Brief spin: a task that arrives now costs no wake-up syscall. The
         * clock is read once per 32 pauses (a pause is 10-40 ns). */
        int arrived = 0;
        /* At most max_spinners spin at once (as Go limits spinning threads):
         * one spinner already catches the next task; more would only take
         * CPU from the threads doing work. Spinners yield now and then, so
         * on an oversubscribed machine they give way to runnable threads. */
        if (p->spin_ns > 0 &&
            atomic_fetch_add_explicit(&p->spinners, 1, memory_order_relaxed) < p->max_spinners) {
            int64_t spin_end = rp_now_ns() + p->spin_ns;
            unsigned rounds = 0;
            do {
                for (int i = 0; i < 32 && !arrived; i++) {
                    arrived = atomic_load_explicit(&p->pending, memory_order_relaxed) != 0;
                    rp_cpu_relax();
                }
                if (++rounds % 8 == 0)
                    rp_thread_yield();
            } while (!arrived && rp_now_ns() < spin_end);
        }
        if (p->spin_ns > 0)
            /* seq_cst: see wake_or_spawn; the loop re-checks pending before
             * this worker parks. */
            atomic_fetch_sub_explicit(&p->spinners, 1, memory_order_seq_cst);
        if (arrived)
            continue;
        int64_t deadline = -1;
        if (p->keep_alive_ns >= 0 &&
            atomic_load_explicit(&p->live, memory_order_relaxed) >
                atomic_load_explicit(&p->min_workers, memory_order_relaxed))
            deadline = idle_since + p->keep_alive_ns;
        if (rp_park_sleep(&p->work_park, work_ready, p, deadline) == RP_ETIMEDOUT &&
            try_retire(p, 1, 1)) {
            is_idle = 0;
            counted_live = 0;
            break;
        }
    }
    if (is_idle)
        atomic_fetch_sub_explicit(&p->idle, 1, memory_order_relaxed);
    if (p->hooks.worker_stop)
        p->hooks.worker_stop(p->hooks_ctx, w);
out:
    tls_worker = NULL;
    rp_mutex_lock(&p->workers_mutex);
    if (counted_live)
        atomic_fetch_sub_explicit(&p->live, 1, memory_order_relaxed);
    /* Fold this worker's counters into the pool's, then leave the live list. */
    atomic_fetch_add_explicit(&p->done_started,
                              atomic_load_explicit(&w->started, memory_order_relaxed),
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&p->done_panics,
                              atomic_load_explicit(&w->panics, memory_order_relaxed),
                              memory_order_relaxed);
    if (p->metrics) {
        rp_hist_add(&p->done_wait, &w->queue_wait);
        rp_hist_add(&p->done_run, &w->run_time);
    }
    atomic_fetch_add_explicit(&p->done_completed,
                              atomic_load_explicit(&w->completed, memory_order_relaxed),
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&p->done_failed,
                              atomic_load_explicit(&w->failed, memory_order_relaxed),
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&p->done_cancelled,
                              atomic_load_explicit(&w->cancelled, memory_order_relaxed),
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&p->done_overran_returned,
                              atomic_load_explicit(&w->overran_returned, memory_order_relaxed),
                              memory_order_relaxed);
    for (rp_worker **pp = &p->live_list; *pp; pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    }
    w->exited = 1;
    int self_free = w->detached;
    if (!self_free) {
        w->next = p->dead_list;
        p->dead_list = w;
    }
    rp_cond_broadcast(&p->workers_cond);
    rp_mutex_unlock(&p->workers_mutex);
    if (self_free)
        rp_aligned_free(w);
    pool_unref(p); /* may free the pool: nothing below touches it */
    /* release: everything this thread did happens before a reader that sees
     * the count drop (rp_live_threads' acquire load). */
    atomic_fetch_sub_explicit(&live_threads, 1, memory_order_release);
    return NULL;
}

/* Starts one worker. Caller holds workers_mutex. */
static int
start_worker_locked(rp_pool *p)
{
    rp_worker *w = rp_aligned_zalloc(RP_CACHELINE, sizeof *w);
    if (w == NULL)
        return RP_ENOMEM;
    w->pool = p;
    w->index = p->next_index++;
    atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
    unsigned live = atomic_fetch_add_explicit(&p->live, 1, memory_order_relaxed) + 1;
    w->next = p->live_list;
    p->live_list = w;
    atomic_fetch_add_explicit(&live_threads, 1, memory_order_relaxed);
    if (rp_thread_create(&w->thread, worker_main, w, p->stack_size) != RP_OK) {
        atomic_fetch_sub_explicit(&live_threads, 1, memory_order_relaxed);
        p->live_list = w->next;
        atomic_fetch_sub_explicit(&p->live, 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(&p->refs, 1, memory_order_relaxed);
        rp_aligned_free(w);
        return RP_ETHREAD;
    }
    if (live > p->peak)
        p->peak = live;
    return RP_OK;
}

/* Joins every exited worker. Must not hold workers_mutex. */
static void
reap_dead(rp_pool *p)
{
    rp_mutex_lock(&p->workers_mutex);
    rp_worker *dead = p->dead_list;
    p->dead_list = NULL;
    rp_mutex_unlock(&p->workers_mutex);
    while (dead) {
        rp_worker *next = dead->next;
        rp_thread_join(dead->thread);
        rp_aligned_free(dead);
        dead = next;
    }
}

/* ------------------------------------------------------------------ */
/* Create, shutdown, join, release                                    */
/* ------------------------------------------------------------------ */

int
rp_pool_create(const rp_pool_config *cfg, rp_pool **out)
{
    if (cfg == NULL || out == NULL || cfg->max_workers < 1 || cfg->min_workers > cfg->max_workers ||
        (uint64_t)cfg->queue_capacity > COUNT_MASK / 2)
        return RP_EINVAL;
    rp_pool *p = rp_aligned_zalloc(RP_CACHELINE, sizeof *p);
    if (p == NULL)
        return RP_ENOMEM;
    size_t ring_cap = cfg->ring_capacity ? cfg->ring_capacity : DEFAULT_RING_CAPACITY;
    if (cfg->queue_capacity)
        ring_cap = cfg->queue_capacity; /* room for every reservation, usually */
    if (ring_cap > MAX_RING_CAPACITY)
        ring_cap = MAX_RING_CAPACITY;
    ring_cap = rp_ring_round_capacity(ring_cap);
    int rc = rp_ring_init(&p->ring, ring_cap);
    if (rc != RP_OK) {
        rp_aligned_free(p);
        return rc;
    }
    if (rp_park_init(&p->work_park) != RP_OK || rp_park_init(&p->busy_park) != RP_OK ||
        rp_mutex_init(&p->ovf_mutex) != RP_OK ||
        rp_mutex_init(&p->space_mutex) != RP_OK || rp_cond_init(&p->space_cond) != RP_OK ||
        rp_mutex_init(&p->workers_mutex) != RP_OK || rp_cond_init(&p->workers_cond) != RP_OK ||
        rp_mutex_init(&p->timer_mutex) != RP_OK || rp_cond_init(&p->timer_cond) != RP_OK) {
        rp_ring_destroy(&p->ring);
        rp_aligned_free(p);
        return RP_ENOMEM;
    }
    p->capacity = cfg->queue_capacity;
    atomic_init(&p->min_workers, cfg->min_workers);
    atomic_init(&p->max_workers, cfg->max_workers);
    atomic_init(&p->refs, 1);
    p->keep_alive_ns = cfg->keep_alive_ns;
    p->spin_ns = cfg->spin_ns;
    p->max_spinners = rp_cpu_count() / 2 ? rp_cpu_count() / 2 : 1;
    p->metrics = cfg->metrics;
    p->stack_size = cfg->stack_size;
    snprintf(p->name, sizeof p->name, "%s", cfg->name ? cfg->name : "ringpool");
    if (cfg->hooks)
        p->hooks = *cfg->hooks;
    p->hooks_ctx = cfg->hooks_ctx;

    rp_mutex_lock(&p->workers_mutex);
    for (unsigned i = 0; i < cfg->min_workers; i++) {
        rc = start_worker_locked(p);
        if (rc != RP_OK)
            break;
    }
    rp_mutex_unlock(&p->workers_mutex);
    if (rc != RP_OK) {
        rp_pool_shutdown(p, RP_SHUTDOWN_DRAIN);
        rp_pool_join(p, -1);
        rp_pool_release(p);
        return rc;
    }
    *out = p;
    return RP_OK;
}

/* Discards every queued task from the calling thread (it holds no lock). */
static void
discard_queued(rp_pool *p)
{
    for (;;) {
        rp_task *t = queue_pop(p);
        if (t != NULL) {
            int expected = RP_TASK_QUEUED;
            /* acq_rel: as in run_one. */
            int reason = atomic_compare_exchange_strong_explicit(
                             &t->state, &expected, RP_TASK_CANCELLED, memory_order_acq_rel,
                             memory_order_acquire)
                             ? RP_DISCARD_SHUTDOWN
                             : lost_reason(expected);
            if (reason == RP_DISCARD_EXPIRED)
                atomic_fetch_sub_explicit(&p->expired_queued, 1, memory_order_relaxed);
            else
                atomic_fetch_add_explicit(&p->done_cancelled, 1, memory_order_relaxed);
            hand_back_discard(t, reason);
            continue;
        }
        if (count_of(atomic_load_explicit(&p->pending, memory_order_seq_cst)) == 0)
            return;
        rp_thread_yield(); /* a push is in flight, or a worker holds the item */
    }
}

int
rp_pool_shutdown(rp_pool *p, rp_shutdown_mode mode)
{
    uint64_t bits = CLOSED_BIT | (mode == RP_SHUTDOWN_DISCARD ? DISCARD_BIT : 0);
    /* seq_cst: publishes CLOSED; pairs with the seq_cst loads in work_ready,
     * the worker loop and reserve(). */
    atomic_fetch_or_explicit(&p->pending, bits, memory_order_seq_cst);
    /* Every parked worker re-checks and sees CLOSED (PARKING.md). Workers
     * never park once CLOSED is set, so one broadcast is enough. */
    rp_mutex_lock(&p->work_park.mutex);
    rp_cond_broadcast(&p->work_park.cond);
    rp_mutex_unlock(&p->work_park.mutex);
    space_notify(p); /* blocked submitters leave with RP_ESHUTDOWN */
    rp_mutex_lock(&p->timer_mutex); /* an idle timer leaves now that nothing can be armed */
    rp_cond_broadcast(&p->timer_cond);
    rp_mutex_unlock(&p->timer_mutex);
    rp_park_notify_all(&p->busy_park);
    if (mode == RP_SHUTDOWN_DISCARD)
        discard_queued(p);
    return RP_OK;
}

int
rp_pool_join(rp_pool *p, int64_t deadline_ns)
{
    if (!(atomic_load_explicit(&p->pending, memory_order_seq_cst) & CLOSED_BIT))
        return RP_EINVAL;
    if (tls_worker != NULL && tls_worker->pool == p)
        return RP_EDEADLK;
    rp_mutex_lock(&p->workers_mutex);
    while (atomic_load_explicit(&p->live, memory_order_relaxed) != 0 || p->live_list != NULL ||
           atomic_load_explicit(&p->timers_live, memory_order_relaxed) != 0) {
        if (rp_cond_wait_until(&p->workers_cond, &p->workers_mutex, deadline_ns) == RP_ETIMEDOUT &&
            (atomic_load_explicit(&p->live, memory_order_relaxed) != 0 || p->live_list != NULL ||
             atomic_load_explicit(&p->timers_live, memory_order_relaxed) != 0)) {
            rp_mutex_unlock(&p->workers_mutex);
            reap_dead(p);
            return RP_ETIMEDOUT;
        }
    }
    rp_mutex_unlock(&p->workers_mutex);
    reap_dead(p);
    /* No worker is left. Tasks can remain only if no worker could ever be
     * started for them; they must still end exactly once. */
    discard_queued(p);
    return RP_OK;
}

int
rp_pool_resize(rp_pool *p, unsigned min_workers, unsigned max_workers)
{
    if (max_workers < 1 || min_workers > max_workers)
        return RP_EINVAL;
    int rc = RP_OK;
    reap_dead(p);
    rp_mutex_lock(&p->workers_mutex);
    atomic_store_explicit(&p->min_workers, min_workers, memory_order_seq_cst);
    atomic_store_explicit(&p->max_workers, max_workers, memory_order_seq_cst);
    int closed = (atomic_load_explicit(&p->pending, memory_order_seq_cst) & CLOSED_BIT) != 0;
    if (!closed) {
        /* Up to the new minimum, and up to the queue's need when nobody is idle. */
        uint64_t need = count_of(atomic_load_explicit(&p->pending, memory_order_seq_cst));
        unsigned live = atomic_load_explicit(&p->live, memory_order_relaxed);
        unsigned want = min_workers;
        if (atomic_load_explicit(&p->idle, memory_order_seq_cst) == 0) {
            uint64_t grow = live + need;
            if (grow > max_workers)
                grow = max_workers;
            if (grow > want)
                want = (unsigned)grow;
        }
        while (rc == RP_OK && atomic_load_explicit(&p->live, memory_order_relaxed) < want)
            rc = start_worker_locked(p);
    }
    rp_mutex_unlock(&p->workers_mutex);
    /* Surplus workers that are parked must wake to retire (work_ready). */
    rp_mutex_lock(&p->work_park.mutex);
    rp_cond_broadcast(&p->work_park.cond);
    rp_mutex_unlock(&p->work_park.mutex);
    return rc;
}

void
rp_pool_stats_get(rp_pool *p, rp_pool_stats *out)
{
    memset(out, 0, sizeof *out);
    rp_mutex_lock(&p->workers_mutex);
    out->started = atomic_load_explicit(&p->done_started, memory_order_relaxed);
    out->completed = atomic_load_explicit(&p->done_completed, memory_order_relaxed);
    out->failed = atomic_load_explicit(&p->done_failed, memory_order_relaxed);
    out->panics = atomic_load_explicit(&p->done_panics, memory_order_relaxed);
    out->cancelled = atomic_load_explicit(&p->done_cancelled, memory_order_relaxed);
    uint64_t returned = atomic_load_explicit(&p->done_overran_returned, memory_order_relaxed);
    for (rp_worker *w = p->live_list; w; w = w->next) {
        returned += atomic_load_explicit(&w->overran_returned, memory_order_relaxed);
        out->started += atomic_load_explicit(&w->started, memory_order_relaxed);
        out->panics += atomic_load_explicit(&w->panics, memory_order_relaxed);
        out->completed += atomic_load_explicit(&w->completed, memory_order_relaxed);
        out->failed += atomic_load_explicit(&w->failed, memory_order_relaxed);
        out->cancelled += atomic_load_explicit(&w->cancelled, memory_order_relaxed);
        out->running += atomic_load_explicit(&w->running, memory_order_relaxed);
    }
    out->live_workers = atomic_load_explicit(&p->live, memory_order_relaxed);
    out->peak_workers = p->peak;
    rp_mutex_unlock(&p->workers_mutex);
    /* An overrunning task is counted as overran, not as running, from the
     * moment its deadline fires (the caller was released then); an expired
     * one as expired, not as queued, although it waits in the queue until a
     * worker drops it. */
    out->expired = atomic_load_explicit(&p->expired, memory_order_relaxed);
    out->overran = atomic_load_explicit(&p->overran, memory_order_relaxed);
    out->overrunning = out->overran > returned ? out->overran - returned : 0;
    out->running = out->running > out->overrunning ? out->running - out->overrunning : 0;
    uint64_t v = atomic_load_explicit(&p->pending, memory_order_seq_cst);
    int64_t stale = atomic_load_explicit(&p->expired_queued, memory_order_relaxed);
    out->queued = count_of(v);
    if (stale > 0)
        out->queued = out->queued > (uint64_t)stale ? out->queued - (uint64_t)stale : 0;
    out->closed = (v & CLOSED_BIT) != 0;
    for (unsigned i = 0; i < SUBMIT_STRIPES; i++)
        out->submitted += atomic_load_explicit(&p->submitted[i].n, memory_order_relaxed);
    out->rejected = atomic_load_explicit(&p->rejected, memory_order_relaxed);
    out->idle_workers = atomic_load_explicit(&p->idle, memory_order_relaxed);
    out->min_workers = atomic_load_explicit(&p->min_workers, memory_order_relaxed);
    out->max_workers = atomic_load_explicit(&p->max_workers, memory_order_relaxed);
    out->queue_capacity = p->capacity;
    out->blocked_submitters = atomic_load_explicit(&p->space_waiters, memory_order_relaxed);
    out->blocked_ns_total = atomic_load_explicit(&p->blocked_ns_total, memory_order_relaxed);
    out->blocked_ns_max = atomic_load_explicit(&p->blocked_ns_max, memory_order_relaxed);
}

void
rp_pool_latency(rp_pool *p, rp_hist_snapshot *queue_wait, rp_hist_snapshot *run_time)
{
    rp_mutex_lock(&p->workers_mutex); /* a worker folding on exit must not be counted twice */
    rp_hist_merge(queue_wait, &p->done_wait);
    rp_hist_merge(run_time, &p->done_run);
    for (rp_worker *w = p->live_list; w; w = w->next) {
        rp_hist_merge(queue_wait, &w->queue_wait);
        rp_hist_merge(run_time, &w->run_time);
    }
    rp_mutex_unlock(&p->workers_mutex);
}

static int
busy_ready(void *arg)
{
    rp_pool *p = arg;
    /* seq_cst: pairs with the submitter's reservation then its notify. */
    if (queued_or_closed(atomic_load_explicit(&p->pending, memory_order_seq_cst)))
        return 1;
    rp_pool_stats s;
    rp_pool_stats_get(p, &s);
    return s.running != 0;
}

int
rp_pool_wait_busy(rp_pool *p, int64_t deadline_ns)
{
    if (busy_ready(p))
        return RP_OK;
    return rp_park_sleep(&p->busy_park, busy_ready, p, deadline_ns) == RP_ETIMEDOUT && !busy_ready(p)
               ? RP_ETIMEDOUT
               : RP_OK;
}

void
rp_after_fork_child(void)
{
    /* fork() copied the counter, not the threads it counts. */
    atomic_store_explicit(&live_threads, 0, memory_order_relaxed);
}

unsigned
rp_live_threads(void)
{
    return atomic_load_explicit(&live_threads, memory_order_acquire);
}

unsigned
rp_pool_max_workers(rp_pool *p)
{
    /* relaxed: a sizing hint; resize may change it right after. */
    return atomic_load_explicit(&p->max_workers, memory_order_relaxed);
}

uint64_t
rp_pool_queued(rp_pool *p)
{
    return count_of(atomic_load_explicit(&p->pending, memory_order_relaxed));
}

static void
pool_free(rp_pool *p)
{
    void (*on_free)(void *) = p->hooks.pool_free;
    void *ctx = p->hooks_ctx;
    rp_worker *dead = p->dead_list;
    while (dead) {
        rp_worker *next = dead->next;
        rp_aligned_free(dead); /* already joined or detached */
        dead = next;
    }
    rp_ring_destroy(&p->ring);
    free(p->ovf_buf);
    rp_park_destroy(&p->work_park);
    rp_park_destroy(&p->busy_park);
    rp_mutex_destroy(&p->ovf_mutex);
    rp_cond_destroy(&p->space_cond);
    rp_mutex_destroy(&p->space_mutex);
    rp_cond_destroy(&p->workers_cond);
    rp_mutex_destroy(&p->workers_mutex);
    rp_cond_destroy(&p->timer_cond);
    rp_mutex_destroy(&p->timer_mutex);
    free(p->heap);
    rp_aligned_free(p);
    if (on_free)
        on_free(ctx);
}

static void
pool_unref(rp_pool *p)
{
    /* acq_rel: the last decrement sees every other holder's writes before it
     * frees (the classic refcount pairing). */
    if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1)
        pool_free(p);
}

void
rp_pool_release(rp_pool *p)
{
    if (!(atomic_load_explicit(&p->pending, memory_order_seq_cst) & CLOSED_BIT))
        rp_pool_shutdown(p, RP_SHUTDOWN_DRAIN);
    /* Join the exited; detach the rest (they free themselves, and the last
     * one out frees the pool). A worker of this very pool is among the rest. */
    rp_mutex_lock(&p->workers_mutex);
    p->released = 1;
    rp_worker *dead = p->dead_list;
    p->dead_list = NULL;
    for (rp_worker *w = p->live_list; w; w = w->next) {
        w->detached = 1;
        rp_thread_detach(w->thread);
    }
    rp_mutex_unlock(&p->workers_mutex);
    while (dead) {
        rp_worker *next = dead->next;
        rp_thread_join(dead->thread); /* exited: returns at once */
        rp_aligned_free(dead);
        dead = next;
    }
    pool_unref(p);
}
