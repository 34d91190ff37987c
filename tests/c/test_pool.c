/* test_pool.c - the worker pool through rp_pool.h.
 *
 * Tasks are `tt` records embedding rp_task, with ops {tt_run, tt_discard}
 * that count runs and discards per task. The central invariant checked
 * everywhere: every accepted task is handed back exactly once (run XOR
 * discard), every refused one never; and at quiet points the stats conserve
 * submitted == completed + failed + cancelled + queued + running.
 *
 * Workers are held on a "gate" (a flag that gated tasks poll) so tasks stay
 * queued deterministically. Every wait is bounded: a stuck task is reported
 * as a failure naming the scenario; the watchdog catches anything else.
 */
#include "rp_test.h" /* first: feature macros */

#include "rp_pool.h"

#include <stdatomic.h>

#define WAIT_MS 10000   /* generous bound for "this must happen" */
#define GATE_MAX_MS 30000 /* a gated task never waits longer than this */

/* ------------------------------------------------------------------------ */
/* Test tasks                                                               */
/* ------------------------------------------------------------------------ */

enum {
    K_PLAIN = 0,   /* return `outcome` */
    K_GATE,        /* wait until the context's gate opens */
    K_SPIN_US,     /* busy for `arg` microseconds */
    K_JOIN_SELF,   /* gate, then rp_pool_join on its own pool (expects RP_EDEADLK) */
    K_JOIN_OPEN,   /* rp_pool_join on its own, still open, pool: must not wait */
    K_SUBMIT_CHILD,/* submit `child` to its own pool */
    K_SHUTDOWN     /* rp_pool_shutdown(DRAIN) from inside a task */
};

typedef struct tctx {
    rp_pool *_Atomic pool;        /* for checks inside tasks and hooks */
    _Atomic int gate_open;
    _Atomic int in_gate;          /* gated tasks waiting now */
    _Atomic long finished;        /* tasks run to the end or discarded */
    _Atomic long runs, discards;
    _Atomic long bad;             /* contract violations seen by tasks */
    _Atomic long run_seq;         /* order in which tasks start running */
    _Atomic long submit_ns_unset; /* tasks run with submit_ns not stamped */
    int metrics_off;              /* the pool has metrics off: submit_ns stays 0 */
    _Atomic int check_worker;     /* run checks rp_worker_pool(w) == pool */
    const char *thread_prefix;    /* non-NULL: check the worker thread's name */
} tctx;

typedef struct tt {
    rp_task base; /* first: (tt *)task */
    tctx *ctx;
    int kind;
    int outcome;
    int64_t arg;
    struct tt *child;
    _Atomic int runs, discards, reason;
    _Atomic int rc1, rc2; /* results of calls made from inside the task */
    _Atomic int done;     /* last write to the task by its ops */
    _Atomic long seq;     /* 1 + position in the run order */
} tt;

static void ctx_init(tctx *c) {
    memset(c, 0, sizeof *c);
    atomic_store(&c->check_worker, 1);
}

static void bad(tctx *c, const char *what, const tt *t) {
    if (atomic_fetch_add(&c->bad, 1) < 10)
        FAILF("task %p (kind %d): %s", (const void *)t, t->kind, what);
}

static int gate_wait(tctx *c) {
    atomic_fetch_add(&c->in_gate, 1);
    int ok;
    WAIT_UNTIL(ok, atomic_load_explicit(&c->gate_open, memory_order_acquire), GATE_MAX_MS);
    atomic_fetch_sub(&c->in_gate, 1);
    return ok;
}

static void gate_open(tctx *c) { atomic_store_explicit(&c->gate_open, 1, memory_order_release); }

static int tt_run(rp_task *task, rp_worker *w);
static void tt_discard(rp_task *task, int reason);
static const rp_task_ops tt_ops = {tt_run, tt_discard, NULL, 0};

static int tt_run(rp_task *task, rp_worker *w) {
    tt *t = (tt *)task;
    tctx *c = t->ctx;
    if (atomic_fetch_add(&t->runs, 1) != 0)
        bad(c, "run twice", t);
    if (atomic_load(&t->discards) != 0)
        bad(c, "run after discard", t);
    atomic_store(&t->seq, atomic_fetch_add(&c->run_seq, 1) + 1);
    if (atomic_load(&task->state) != RP_TASK_RUNNING)
        bad(c, "state is not RP_TASK_RUNNING inside run", t);
    if (w == NULL || rp_worker_current() != w)
        bad(c, "rp_worker_current() != worker inside run", t);
    rp_pool *p = atomic_load(&c->pool);
    if (w != NULL && p != NULL && atomic_load(&c->check_worker) && rp_worker_pool(w) != p)
        bad(c, "rp_worker_pool(worker) is not the pool", t);
    if (c->metrics_off ? task->submit_ns != 0
                       : (task->submit_ns <= 0 || task->submit_ns > rp_stats_now_ns())) {
        if (atomic_fetch_add(&c->submit_ns_unset, 1) == 0) /* reported once per context */
            bad(c, "submit_ns not as rp_task says (rp_stats_now_ns() with metrics on, 0 off)", t);
    }
#ifdef __linux__
    if (c->thread_prefix) {
        char name[32] = {0};
        size_t n = strlen(c->thread_prefix);
        if (pthread_getname_np(pthread_self(), name, sizeof name) != 0 ||
            strncmp(name, c->thread_prefix, n) != 0)
            bad(c, "worker thread name does not start with the configured prefix", t);
    }
#elif defined(_WIN32)
    if (c->thread_prefix) {
        char name[64] = {0};
        size_t n = strlen(c->thread_prefix);
        /* -1: no GetThreadDescription (before Windows 10 1607): not checkable. */
        if (rp_test_thread_name(name, sizeof name) == 0 &&
            strncmp(name, c->thread_prefix, n) != 0)
            bad(c, "worker thread name does not start with the configured prefix", t);
    }
#endif
    switch (t->kind) {
    case K_GATE:
        if (!gate_wait(c))
            bad(c, "gate never opened", t);
        break;
    case K_SPIN_US: {
        int64_t end = rp_test_now_ns() + t->arg * 1000;
        while (rp_test_now_ns() < end) {
        }
        break;
    }
    case K_JOIN_SELF:
        if (!gate_wait(c))
            bad(c, "gate never opened", t);
        atomic_store(&t->rc1, rp_pool_join(p, -1));
        atomic_store(&t->rc2, rp_pool_join(p, rp_test_now_ns() + 1000000000LL));
        break;
    case K_JOIN_OPEN:
        atomic_store(&t->rc1, rp_pool_join(p, -1));
        break;
    case K_SUBMIT_CHILD:
        atomic_store(&t->rc1, rp_pool_submit(p, &t->child->base));
        break;
    case K_SHUTDOWN:
        atomic_store(&t->rc1, rp_pool_shutdown(p, RP_SHUTDOWN_DRAIN));
        break;
    default:
        break;
    }
    int outcome = t->outcome;
    atomic_fetch_add_explicit(&c->runs, 1, memory_order_relaxed);
    atomic_store_explicit(&t->done, 1, memory_order_release); /* last touch of t */
    atomic_fetch_add_explicit(&c->finished, 1, memory_order_release);
    return outcome;
}

static void tt_discard(rp_task *task, int reason) {
    tt *t = (tt *)task;
    tctx *c = t->ctx;
    if (atomic_fetch_add(&t->discards, 1) != 0)
        bad(c, "discarded twice", t);
    if (atomic_load(&t->runs) != 0)
        bad(c, "discarded after run", t);
    if (reason != RP_DISCARD_CANCELLED && reason != RP_DISCARD_SHUTDOWN)
        bad(c, "discard reason out of range", t);
    if (reason == RP_DISCARD_CANCELLED && atomic_load(&task->state) != RP_TASK_CANCELLED)
        bad(c, "cancelled discard but state is not RP_TASK_CANCELLED", t);
    atomic_store(&t->reason, reason);
    atomic_fetch_add_explicit(&c->discards, 1, memory_order_relaxed);
    atomic_store_explicit(&t->done, 1, memory_order_release);
    atomic_fetch_add_explicit(&c->finished, 1, memory_order_release);
}

static tt *tasks_new(size_t n, tctx *c, int kind) {
    tt *v = calloc(n ? n : 1, sizeof *v);
    if (!CHECK(v != NULL))
        abort();
    for (size_t i = 0; i < n; i++) {
        v[i].base.ops = &tt_ops;
        v[i].base.data = &v[i];
        v[i].ctx = c;
        v[i].kind = kind;
        v[i].outcome = RP_OUTCOME_COMPLETED;
        atomic_store(&v[i].rc1, 999);
        atomic_store(&v[i].rc2, 999);
    }
    return v;
}

static long tt_finished(tctx *c) { return atomic_load_explicit(&c->finished, memory_order_acquire); }

/* ------------------------------------------------------------------------ */
/* Pool helpers                                                             */
/* ------------------------------------------------------------------------ */

static rp_pool_config cfg_make(unsigned min_w, unsigned max_w) {
    rp_pool_config cfg;
    rp_pool_config_init(&cfg);
    cfg.min_workers = min_w;
    cfg.max_workers = max_w;
    cfg.keep_alive_ns = -1;
    cfg.spin_ns = 20000; /* 20 us: workers park soon after going idle */
    return cfg;
}

static rp_pool *pool_new(const rp_pool_config *cfg, tctx *c) {
    rp_pool *p = NULL;
    int rc = rp_pool_create(cfg, &p);
    if (!CHECK_EQ(rc, RP_OK) || !CHECK(p != NULL))
        return NULL;
    if (c)
        atomic_store(&c->pool, p);
    return p;
}

static rp_pool_stats stats(rp_pool *p) {
    rp_pool_stats s;
    rp_pool_stats_get(p, &s);
    return s;
}

static int conserved(const rp_pool_stats *s) {
    return s->submitted == s->completed + s->failed + s->cancelled + s->queued + s->running;
}

#define CHECK_CONSERVED(p)                                                                  \
    do {                                                                                    \
        rp_pool_stats s_ = stats(p);                                                        \
        if (!conserved(&s_))                                                                \
            FAILF("stats not conserved: submitted %llu != completed %llu + failed %llu + "  \
                  "cancelled %llu + queued %llu + running %llu",                            \
                  (unsigned long long)s_.submitted, (unsigned long long)s_.completed,       \
                  (unsigned long long)s_.failed, (unsigned long long)s_.cancelled,          \
                  (unsigned long long)s_.queued, (unsigned long long)s_.running);           \
    } while (0)

/* Shutdown, join (bounded) and release. Returns 1 when the pool was released;
 * on a join timeout it is leaked rather than freed under running workers. */
static int pool_finish(rp_pool *p, rp_shutdown_mode mode) {
    if (p == NULL)
        return 0;
    CHECK_EQ(rp_pool_shutdown(p, mode), RP_OK);
    int rc = rp_pool_join(p, rp_test_now_ns() + (int64_t)WAIT_MS * 1000000);
    if (!CHECK_EQ(rc, RP_OK)) {
        rp_pool_stats s = stats(p);
        FAILF("join failed (%d): live %u queued %llu running %llu; pool leaked", rc,
              s.live_workers, (unsigned long long)s.queued, (unsigned long long)s.running);
        return 0;
    }
    rp_pool_stats s = stats(p);
    CHECK_EQ(s.live_workers, 0);
    CHECK_EQ(s.queued, 0);
    CHECK_EQ(s.running, 0);
    CHECK(s.closed);
    CHECK_CONSERVED(p);
    rp_pool_release(p);
    return 1;
}

/* Each task of v[0..n) was handed back exactly once (after join). */
static void check_each_once(const tt *v, size_t n, const char *what) {
    long errors = 0;
    for (size_t i = 0; i < n; i++) {
        int r = atomic_load(&v[i].runs), d = atomic_load(&v[i].discards);
        if (r + d != 1 && errors++ < 5)
            FAILF("%s: task %zu ran %d and was discarded %d times", what, i, r, d);
    }
    CHECK_EQ(errors, 0);
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                    */
/* ------------------------------------------------------------------------ */

static void test_config_and_lifecycle(void) {
    rp_pool_config cfg;
    rp_pool_config_init(&cfg);
    CHECK_GE(cfg.max_workers, 1);
    CHECK_LE(cfg.min_workers, cfg.max_workers);

    rp_pool *p = (rp_pool *)(uintptr_t)0x1;
    cfg = cfg_make(0, 0);
    CHECK_EQ(rp_pool_create(&cfg, &p), RP_EINVAL);
    cfg = cfg_make(3, 2);
    CHECK_EQ(rp_pool_create(&cfg, &p), RP_EINVAL);

    /* An idle pool: open join refused without waiting, empty shutdown/join. */
    cfg = cfg_make(1, 2);
    p = pool_new(&cfg, NULL);
    if (!p)
        return;
    CHECK_WAIT(stats(p).live_workers == 1, WAIT_MS);
    rp_pool_stats s = stats(p);
    CHECK_EQ(s.min_workers, 1);
    CHECK_EQ(s.max_workers, 2);
    CHECK_EQ(s.queue_capacity, 0);
    CHECK_EQ(s.closed, 0);
    CHECK_EQ(s.submitted, 0);
    CHECK_EQ(rp_pool_join(p, -1), RP_EINVAL); /* still open: must not wait */
    CHECK_EQ(rp_pool_shutdown(p, RP_SHUTDOWN_DRAIN), RP_OK);
    CHECK_EQ(rp_pool_shutdown(p, RP_SHUTDOWN_DRAIN), RP_OK); /* idempotent */
    CHECK(stats(p).closed);
    CHECK_EQ(rp_pool_join(p, rp_test_now_ns() + (int64_t)WAIT_MS * 1000000), RP_OK);
    CHECK_EQ(rp_pool_join(p, rp_test_now_ns() + (int64_t)WAIT_MS * 1000000), RP_OK);
    CHECK_EQ(stats(p).live_workers, 0);
    rp_pool_release(p);

    /* Create then release at once, no join: release shuts down and frees. */
    cfg = cfg_make(2, 2);
    p = pool_new(&cfg, NULL);
    if (p)
        rp_pool_release(p);
}

static void test_drain_runs_every_task_once(void) {
    tctx c;
    ctx_init(&c);
    size_t n = (size_t)rp_test_scaled(20000, 500);
    rp_pool_config cfg = cfg_make(0, 4);
    rp_pool *p = pool_new(&cfg, &c);
    if (!p)
        return;
    tt *v = tasks_new(n, &c, K_PLAIN);
    uint64_t want_failed = 0, want_cancelled = 0, want_panics = 0;
    for (size_t i = 0; i < n; i++) {
        if (i % 10 == 7) {
            v[i].outcome = RP_OUTCOME_FAILED;
            want_failed++;
        } else if (i % 10 == 8) {
            v[i].outcome = RP_OUTCOME_RAISED; /* counted as failed and as a panic */
            want_failed++;
            want_panics++;
        } else if (i % 10 == 9) {
            v[i].outcome = RP_OUTCOME_CANCELLED;
            want_cancelled++;
        }
        int rc = rp_pool_submit(p, &v[i].base);
        if (rc != RP_OK) {
            FAILF("submit %zu returned %d", i, rc);
            break;
        }
    }
    /* Shut down with most tasks still queued: DRAIN runs them all. */
    CHECK_EQ(rp_pool_shutdown(p, RP_SHUTDOWN_DRAIN), RP_OK);
    tt *late = tasks_new(2, &c, K_PLAIN);
    CHECK_EQ(rp_pool_submit(p, &late[0].base), RP_ESHUTDOWN);
    CHECK_EQ(rp_pool_submit_wait(p, &late[1].base, -1), RP_ESHUTDOWN);
    CHECK_EQ(rp_pool_join(p, rp_test_now_ns() + (int64_t)WAIT_MS * 1000000), RP_OK);
    rp_pool_stats s = stats(p);
    CHECK_EQ(s.submitted, n);
    CHECK_EQ(s.completed, n - want_failed - want_cancelled);
    CHECK_EQ(s.failed, want_failed);
    CHECK_EQ(s.panics, want_panics);
    CHECK_EQ(s.cancelled, want_cancelled);
    CHECK_EQ(s.started, n);
    CHECK_EQ(s.queued, 0);
    CHECK_EQ(rp_pool_queued(p), 0);
    CHECK_EQ(s.running, 0);
    CHECK_EQ(s.live_workers, 0);
    CHECK_GE(s.peak_workers, 1);
    CHECK_LE(s.peak_workers, 4);
    CHECK(s.closed);
    long errors = 0;
    for (size_t i = 0; i < n; i++) {
        if ((atomic_load(&v[i].runs) != 1 || atomic_load(&v[i].discards) != 0) && errors++ < 5)
            FAILF("task %zu: runs %d discards %d", i, atomic_load(&v[i].runs),
                  atomic_load(&v[i].discards));
    }
    CHECK_EQ(errors, 0);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(atomic_load(&late[i].runs), 0);
        CHECK_EQ(atomic_load(&late[i].discards), 0);
    }
    CHECK_EQ(atomic_load(&c.bad), 0);
    rp_pool_release(p);
    free(v);
    free(late);
}

static void test_discard_shutdown_discards_queued(void) {
    tctx c;
    ctx_init(&c);
    rp_pool_config cfg = cfg_make(2, 2);
    rp_pool *p = pool_new(&cfg, &c);
    if (!p)
        return;
    tt *g = tasks_new(2, &c, K_GATE);
    for (int i = 0; i < 2; i++)
        CHECK_EQ(rp_pool_submit(p, &g[i].base), RP_OK);
    CHECK_WAIT(atomic_load(&c.in_gate) == 2, WAIT_MS);
    size_t q = 200;
    tt *v = tasks_new(q, &c, K_PLAIN);
    for (size_t i = 0; i < q; i++)
        CHECK_EQ(rp_pool_submit(p, &v[i].base), RP_OK);
    rp_pool_stats s = stats(p);
    CHECK_EQ(s.submitted, q + 2);
    CHECK_EQ(s.queued, q);
    CHECK_EQ(rp_pool_queued(p), q);
    CHECK_EQ(s.started, 2);
    CHECK_EQ(s.running, 2);
    CHECK(conserved(&s));

    CHECK_EQ(rp_pool_shutdown(p, RP_SHUTDOWN_DISCARD), RP_OK);
    /* Every queued task was handed to discard before shutdown returned. */
    long not_yet = 0;
    for (size_t i = 0; i < q; i++) {
        if (atomic_load(&v[i].discards) != 1)
            not_yet++;
        else
            CHECK_EQ(atomic_load(&v[i].reason), RP_DISCARD_SHUTDOWN);
        CHECK_EQ(atomic_load(&v[i].runs), 0);
    }
    CHECK_EQ(not_yet, 0);
    s = stats(p);
    CHECK(s.closed);
    CHECK_EQ(s.queued, 0);
    CHECK_EQ(s.cancelled, q);
    CHECK_EQ(s.running, 2);
    CHECK_EQ(s.started, 2);
    CHECK(conserved(&s));
    tt *late = tasks_new(1, &c, K_PLAIN);
    CHECK_EQ(rp_pool_submit(p, &late[0].base), RP_ESHUTDOWN);
    CHECK_EQ(rp_pool_shutdown(p, RP_SHUTDOWN_DISCARD), RP_OK); /* idempotent */
    /* Join does not wait past its deadline for running tasks. */
    int64_t t0 = rp_test_now_ns();
    CHECK_EQ(rp_pool_join(p, t0 + 30000000), RP_ETIMEDOUT);
    int64_t waited = rp_test_now_ns() - t0;
    CHECK_GE(waited, 29000000);
    CHECK_LT(waited, 5000000000LL);
    CHECK_EQ(stats(p).live_workers, 2);

    gate_open(&c);
    if (pool_finish(p, RP_SHUTDOWN_DISCARD)) {
        for (int i = 0; i < 2; i++) {
            CHECK_EQ(atomic_load(&g[i].runs), 1);
            CHECK_EQ(atomic_load(&g[i].discards), 0);
        }
        check_each_once(v, q, "discard");
        CHECK_EQ(atomic_load(&late[0].runs) + atomic_load(&late[0].discards), 0);
        CHECK_EQ(atomic_load(&c.runs) + atomic_load(&c.discards), (long)q + 2);
    }
    CHECK_EQ(atomic_load(&c.bad), 0);
    free(g);
    free(v);
    free(late);
}

static void test_drain_upgraded_to_discard(void) {
    tctx c;
    ctx_init(&c);
    rp_pool_config cfg = cfg_make(1, 1);
    rp_pool *p = pool_new(&cfg, &c);
    if (!p)
        return;
    tt *g = tasks_new(1, &c, K_GATE);
    CHECK_EQ(rp_pool_submit(p, &g[0].base), RP_OK);
    CHECK_WAIT(atomic_load(&c.in_gate) == 1, WAIT_MS);
    size_t q = 50;
    tt *v = tasks_new(q, &c, K_PLAIN);
    for (size_t i = 0; i < q; i++)
        CHECK_EQ(rp_pool_submit(p, &v[i].base), RP_OK);
    CHECK_EQ(rp_pool_shutdown(p, RP_SHUTDOWN_DRAIN), RP_OK);
    CHECK_EQ(stats(p).queued, q); /* DRAIN keeps them */
    CHECK_EQ(rp_pool_shutdown(p, RP_SHUTDOWN_DISCARD), RP_OK);
    long discarded = 0;
    for (size_t i = 0; i < q; i++)
        discarded += atomic_load(&v[i].discards);
    CHECK_EQ(discarded, q);
    gate_open(&c);
    if (pool_finish(p, RP_SHUTDOWN_DISCARD)) {
        CHECK_EQ(atomic_load(&g[0].runs), 1);
        check_each_once(v, q, "upgrade");
        for (size_t i = 0; i < q; i++)
            CHECK_EQ(atomic_load(&v[i].runs), 0);
    }
    CHECK_EQ(atomic_load(&c.bad), 0);
    free(g);
    free(v);
}

static void test_cancel_queued_task(void) {
    tctx c;
    ctx_init(&c);
    rp_pool_config cfg = cfg_make(1, 1);
    rp_pool *p = pool_new(&cfg, &c);
    if (!p)
        return;
    tt *g = tasks_new(1, &c, K_GATE);
    CHECK_EQ(rp_pool_submit(p, &g[0].base), RP_OK);
    CHECK_WAIT(atomic_load(&c.in_gate) == 1, WAIT_MS);
    CHECK_EQ(rp_task_cancel(&g[0].base), 0); /* running: too late */
    size_t q = 100;
    tt *v = tasks_new(q, &c, K_PLAIN);
    for (size_t i = 0; i < q; i++)
        CHECK_EQ(rp_pool_submit(p, &v[i].base), RP_OK);
    CHECK_EQ(atomic_load(&v[0].base.state), RP_TASK_QUEUED);
    for (size_t i = 0; i < q; i += 2) {
        CHECK_EQ(rp_task_cancel(&v[i].base), 1);
        CHECK_EQ(rp_task_cancel(&v[i].base), 0); /* only once */
    }
    gate_open(&c);
    CHECK_WAIT(tt_finished(&c) == (long)q + 1, WAIT_MS);
    for (size_t i = 0; i < q; i++) {
        if (i % 2 == 0) {
            CHECK_EQ(atomic_load(&v[i].runs), 0);
            CHECK_EQ(atomic_load(&v[i].discards), 1);
            CHECK_EQ(atomic_load(&v[i].reason), RP_DISCARD_CANCELLED);
        } else {
            CHECK_EQ(atomic_load(&v[i].runs), 1);
            CHECK_EQ(atomic_load(&v[i].discards), 0);
            CHECK_EQ(rp_task_cancel(&v[i].base), 0); /* finished: too late */
        }
    }
    CHECK_WAIT(stats(p).completed + stats(p).cancelled == q + 1, WAIT_MS);
    rp_pool_stats s = stats(p);
    CHECK_EQ(s.cancelled, q / 2);
    CHECK_EQ(s.completed, q / 2 + 1);
    CHECK(conserved(&s));
    pool_finish(p, RP_SHUTDOWN_DRAIN);
    CHECK_EQ(atomic_load(&c.bad), 0);
    free(g);
    free(v);
}

static void test_cancel_then_discard_shutdown(void) {
    tctx c;
    ctx_init(&c);
    rp_pool_config cfg = cfg_make(1, 1);
    rp_pool *p = pool_new(&cfg, &c);
    if (!p)
        return;
    tt *g = tasks_new(1, &c, K_GATE);
    CHECK_EQ(rp_pool_submit(p, &g[0].base), RP_OK);
    CHECK_WAIT(atomic_load(&c.in_gate) == 1, WAIT_MS);
    size_t q = 90;
    tt *v = tasks_new(q, &c, K_PLAIN);
    for (size_t i = 0; i < q; i++)
        CHECK_EQ(rp_pool_submit(p, &v[i].base), RP_OK);
    for (size_t i = 0; i < q; i += 3)
        CHECK_EQ(rp_task_cancel(&v[i].base), 1);
    CHECK_EQ(rp_pool_shutdown(p, RP_SHUTDOWN_DISCARD), RP_OK);
    gate_open(&c);
    if (pool_finish(p, RP_SHUTDOWN_DISCARD)) {
        check_each_once(v, q, "cancel+discard");
        for (size_t i = 0; i < q; i++) {
            CHECK_EQ(atomic_load(&v[i].runs), 0);
            CHECK_EQ(atomic_load(&v[i].reason),
                     i % 3 == 0 ? RP_DISCARD_CANCELLED : RP_DISCARD_SHUTDOWN);
        }
    }
    CHECK_EQ(atomic_load(&c.bad), 0);
    free(g);
    free(v);
}

typedef struct submit_wait_arg {
    rp_pool *p;
    rp_task *t;
    int64_t deadline;
    _Atomic int rc;
    _Atomic int done;
} submit_wait_arg;

static void *submit_wait_main(void *arg) {
    submit_wait_arg *a = arg;
    atomic_store(&a->rc, rp_pool_submit_wait(a->p, a->t, a->deadline));
    atomic_store(&a->done, 1);
    return NULL;
}

static void test_bounded_queue(void) {
    enum { CAP = 8 };
    tctx c;
    ctx_init(&c);
    rp_pool_config cfg = cfg_make(1, 1);
    cfg.queue_capacity = CAP;
    rp_pool *p = pool_new(&cfg, &c);
    if (!p)
        return;
    tt *g = tasks_new(1, &c, K_GATE);
    CHECK_EQ(rp_pool_submit(p, &g[0].base), RP_OK);
    CHECK_WAIT(atomic_load(&c.in_gate) == 1, WAIT_MS); /* started: no longer counts */
    tt *v = tasks_new(CAP + 4, &c, K_PLAIN);
    size_t accepted = 0;
    for (size_t i = 0; i < CAP; i++)
        if (CHECK_EQ(rp_pool_submit(p, &v[i].base), RP_OK))
            accepted++;
    CHECK_EQ(accepted, CAP);
    CHECK_EQ(rp_pool_submit(p, &v[CAP].base), RP_EFULL);
    CHECK_EQ(rp_pool_submit(p, &v[CAP].base), RP_EFULL);
    rp_pool_stats s = stats(p);
    CHECK_EQ(s.rejected, 0); /* a caller may still retry: only giving up counts */
    rp_pool_count_rejected(p);
    rp_pool_count_rejected(p);
    s = stats(p);
    CHECK_EQ(s.queued, CAP);
    CHECK_EQ(s.queue_capacity, CAP);
    CHECK_EQ(s.rejected, 2);
    CHECK_EQ(s.submitted, CAP + 1);

    /* A timed wait for room gives up at its deadline, not before. */
    int64_t t0 = rp_test_now_ns();
    CHECK_EQ(rp_pool_submit_wait(p, &v[CAP + 1].base, t0 + 50000000), RP_ETIMEDOUT);
    int64_t waited = rp_test_now_ns() - t0;
    CHECK_GE(waited, 49000000);
    CHECK_LT(waited, 5000000000LL);
    /* A deadline already past: RP_ETIMEDOUT (or RP_EFULL) at once. */
    int rc = rp_pool_submit_wait(p, &v[CAP + 1].base, 0);
    CHECK(rc == RP_ETIMEDOUT || rc == RP_EFULL);
    s = stats(p);
    CHECK_EQ(s.rejected, 3 + (rc == RP_ETIMEDOUT)); /* submit_wait counts its own time-outs */
    CHECK_GE(s.blocked_ns_total, 40000000);
    CHECK_GE(s.blocked_ns_max, 40000000);
    CHECK_EQ(s.blocked_submitters, 0);

    /* A blocked submitter gets in once room frees. */
    submit_wait_arg a = {.p = p, .t = &v[CAP + 2].base,
                         .deadline = rp_test_now_ns() + 20000000000LL};
    pthread_t th;
    if (rp_test_thread_start(&th, submit_wait_main, &a)) {
        CHECK_WAIT(stats(p).blocked_submitters == 1, WAIT_MS);
        rp_test_sleep_ms(20);
        CHECK_EQ(atomic_load(&a.done), 0);
        gate_open(&c);
        pthread_join(th, NULL);
        CHECK_EQ(atomic_load(&a.rc), RP_OK);
        CHECK_WAIT(atomic_load(&v[CAP + 2].done) == 1, WAIT_MS);
    } else {
        gate_open(&c);
    }
    /* With room, submit works again. */
    CHECK_WAIT(stats(p).queued == 0, WAIT_MS);
    CHECK_EQ(rp_pool_submit(p, &v[CAP + 3].base), RP_OK);
    if (pool_finish(p, RP_SHUTDOWN_DRAIN)) {
        for (size_t i = 0; i < CAP; i++)
            CHECK_EQ(atomic_load(&v[i].runs), 1);
        CHECK_EQ(atomic_load(&v[CAP].runs) + atomic_load(&v[CAP].discards), 0);
        CHECK_EQ(atomic_load(&v[CAP + 1].runs) + atomic_load(&v[CAP + 1].discards), 0);
        CHECK_EQ(atomic_load(&v[CAP + 2].runs), 1);
        CHECK_EQ(atomic_load(&v[CAP + 3].runs), 1);
    }
    CHECK_EQ(atomic_load(&c.bad), 0);
    free(g);
    free(v);
}

static void test_blocked_submitter_sees_shutdown(void) {
    tctx c;
    ctx_init(&c);
    rp_pool_config cfg = cfg_make(1, 1);
    cfg.queue_capacity = 2;
    rp_pool *p = pool_new(&cfg, &c);
    if (!p)
        return;
    tt *g = tasks_new(1, &c, K_GATE);
    CHECK_EQ(rp_pool_submit(p, &g[0].base), RP_OK);
    CHECK_WAIT(atomic_load(&c.in_gate) == 1, WAIT_MS);
    tt *v = tasks_new(4, &c, K_PLAIN);
    CHECK_EQ(rp_pool_submit(p, &v[0].base), RP_OK);
    CHECK_EQ(rp_pool_submit(p, &v[1].base), RP_OK);
    submit_wait_arg a[2] = {{.p = p, .t = &v[2].base, .deadline = -1},
                            {.p = p, .t = &v[3].base, .deadline = -1}};
    pthread_t th[2];
    int started = 0;
    for (int i = 0; i < 2; i++)
        if (rp_test_thread_start(&th[i], submit_wait_main, &a[i]))
            started++;
    CHECK_WAIT(stats(p).blocked_submitters == (unsigned)started, WAIT_MS);
    CHECK_EQ(rp_pool_shutdown(p, RP_SHUTDOWN_DISCARD), RP_OK);
    for (int i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ(atomic_load(&a[i].rc), RP_ESHUTDOWN);
    }
    gate_open(&c);
    if (pool_finish(p, RP_SHUTDOWN_DISCARD)) {
        CHECK_EQ(atomic_load(&v[0].discards), 1);
        CHECK_EQ(atomic_load(&v[1].discards), 1);
        for (int i = 2; i < 4; i++)
            CHECK_EQ(atomic_load(&v[i].runs) + atomic_load(&v[i].discards), 0);
    }
    CHECK_EQ(atomic_load(&c.bad), 0);
    free(g);
    free(v);
}

/* Blocked submitters get in first come, first served: with one worker the
 * run order is the admission order. */
static void test_submit_wait_fifo(void) {
    enum { W = 4 };
    tctx c;
    ctx_init(&c);
    rp_pool_config cfg = cfg_make(1, 1);
    cfg.queue_capacity = 1;
    rp_pool *p = pool_new(&cfg, &c);
    if (!p)
        return;
    tt *g = tasks_new(1, &c, K_GATE);
    CHECK_EQ(rp_pool_submit(p, &g[0].base), RP_OK);
    CHECK_WAIT(atomic_load(&c.in_gate) == 1, WAIT_MS);
    tt *v = tasks_new(W + 1, &c, K_PLAIN);
    CHECK_EQ(rp_pool_submit(p, &v[0].base), RP_OK); /* fills the queue */
    submit_wait_arg a[W];
    pthread_t th[W];
    int started = 0;
    for (int i = 0; i < W; i++) {
        a[i] = (submit_wait_arg){.p = p, .t = &v[i + 1].base,
                                 .deadline = rp_test_now_ns() + 20000000000LL};
        if (!rp_test_thread_start(&th[i], submit_wait_main, &a[i]))
            break;
        started++;
        /* The next one arrives only once this one is queued for room. */
        CHECK_WAIT(stats(p).blocked_submitters == (unsigned)started, WAIT_MS);
    }
    gate_open(&c);
    for (int i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ(atomic_load(&a[i].rc), RP_OK);
    }
    CHECK_WAIT(tt_finished(&c) == 2 + started, WAIT_MS);
    for (int i = 0; i + 1 <= started; i++) {
        long s0 = atomic_load(&v[i].seq), s1 = atomic_load(&v[i + 1].seq);
        if (!CHECK_LT(s0, s1))
            FAILF("submitter arriving %d-th was admitted after the %d-th", i + 1, i + 2);
    }
    pool_finish(p, RP_SHUTDOWN_DRAIN);
    CHECK_EQ(atomic_load(&c.bad), 0);
    free(g);
    free(v);
}

/* ---- many submitters ---------------------------------------------------- */

typedef struct submitter {
    rp_pool *p;
    tt *v;
    size_t n;
    int use_wait;
    int stop_on_shutdown;
    size_t accepted;
    _Atomic long errors;
} submitter;

static void *submitter_main(void *arg) {
    submitter *s = arg;
    for (size_t i = 0; i < s->n; i++) {
        int rc = s->use_wait ? rp_pool_submit_wait(s->p, &s->v[i].base,
                                                   rp_test_now_ns() + 20000000000LL)
                             : rp_pool_submit(s->p, &s->v[i].base);
        if (rc == RP_OK) {
            s->accepted++;
            continue;
        }
        if (rc == RP_ESHUTDOWN && s->stop_on_shutdown)
            break;
        if (atomic_fetch_add(&s->errors, 1) < 3)
            FAILF("submit returned %d at task %zu", rc, i);
    }
    return NULL;
}

typedef struct stats_reader {
    rp_pool *p;
    _Atomic int stop;
    long reads;
} stats_reader;

static void *stats_reader_main(void *arg) {
    stats_reader *r = arg;
    rp_pool_stats prev;
    rp_pool_stats_get(r->p, &prev);
    while (!atomic_load(&r->stop)) {
        rp_pool_stats s;
        rp_pool_stats_get(r->p, &s);
        /* Not a quiet point: only monotonicity holds. */
        if (s.submitted < prev.submitted || s.completed < prev.completed ||
            s.peak_workers < prev.peak_workers)
            FAILF("stats went backwards: submitted %llu->%llu completed %llu->%llu",
                  (unsigned long long)prev.submitted, (unsigned long long)s.submitted,
                  (unsigned long long)prev.completed, (unsigned long long)s.completed);
        if (s.peak_workers > 4 || s.live_workers > s.peak_workers)
            FAILF("live_workers %u peak_workers %u (max 4)", s.live_workers, s.peak_workers);
        prev = s;
        r->reads++;
        rp_test_sleep_us(100);
    }
    return NULL;
}

static void many_submitters(int bounded) {
    enum { NSUB = 8 };
    tctx c;
    ctx_init(&c);
    size_t per = (size_t)rp_test_scaled(bounded ? 5000 : 20000, 100);
    rp_pool_config cfg = cfg_make(0, 4);
    cfg.ring_capacity = 64; /* small: unbounded pools spill to the overflow list */
    if (bounded)
        cfg.queue_capacity = 16;
    rp_pool *p = pool_new(&cfg, &c);
    if (!p)
        return;
    tt *v = tasks_new(per * NSUB, &c, K_PLAIN);
    submitter s[NSUB];
    pthread_t th[NSUB];
    stats_reader rd = {.p = p};
    pthread_t rth;
    int have_reader = rp_test_thread_start(&rth, stats_reader_main, &rd);
    int started = 0;
    for (int i = 0; i < NSUB; i++) {
        s[i] = (submitter){.p = p, .v = v + (size_t)i * per, .n = per, .use_wait = bounded};
        if (rp_test_thread_start(&th[i], submitter_main, &s[i]))
            started++;
        else
            break;
    }
    size_t accepted = 0;
    for (int i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
        accepted += s[i].accepted;
        CHECK_EQ(atomic_load(&s[i].errors), 0);
    }
    CHECK_EQ(accepted, per * (size_t)started);
    CHECK_WAIT(tt_finished(&c) == (long)accepted, 30000);
    CHECK_WAIT(stats(p).completed == accepted, WAIT_MS);
    rp_pool_stats st = stats(p);
    CHECK_EQ(st.submitted, accepted);
    CHECK(conserved(&st));
    CHECK_LE(st.peak_workers, 4);
    if (have_reader) {
        atomic_store(&rd.stop, 1);
        pthread_join(rth, NULL);
    }
    if (pool_finish(p, RP_SHUTDOWN_DRAIN))
        check_each_once(v, per * (size_t)started, "many submitters");
    CHECK_EQ(atomic_load(&c.bad), 0);
    printf("  %d submitters x %zu tasks (%s), %ld stats reads\n", started, per,
           bounded ? "bounded 16, submit_wait" : "unbounded, ring 64", rd.reads);
    free(v);
}

static void test_many_submitters_unbounded(void) { many_submitters(0); }
static void test_many_submitters_bounded_wait(void) { many_submitters(1); }

/* Submitters race a shutdown: accepted tasks end exactly once, refused never. */
static void test_submit_shutdown_race(void) {
    enum { NSUB = 4 };
    long rounds = rp_test_scaled(40, 6);
    size_t per = (size_t)rp_test_scaled(2000, 100);
    uint64_t rng = 99;
    for (long round = 0; round < rounds; round++) {
        tctx c;
        ctx_init(&c);
        rp_pool_config cfg = cfg_make(0, 2);
        cfg.ring_capacity = 64;
        rp_shutdown_mode mode = (round & 1) ? RP_SHUTDOWN_DISCARD : RP_SHUTDOWN_DRAIN;
        rp_pool *p = pool_new(&cfg, &c);
        if (!p)
            return;
        tt *v = tasks_new(per * NSUB, &c, K_PLAIN);
        submitter s[NSUB];
        pthread_t th[NSUB];
        int started = 0;
        for (int i = 0; i < NSUB; i++) {
            s[i] = (submitter){.p = p, .v = v + (size_t)i * per, .n = per, .stop_on_shutdown = 1};
            if (rp_test_thread_start(&th[i], submitter_main, &s[i]))
                started++;
            else
                break;
        }
        rp_test_sleep_us((int64_t)(rp_test_rand(&rng) % 2000));
        CHECK_EQ(rp_pool_shutdown(p, mode), RP_OK);
        size_t accepted = 0;
        for (int i = 0; i < started; i++) {
            pthread_join(th[i], NULL);
            accepted += s[i].accepted;
            CHECK_EQ(atomic_load(&s[i].errors), 0);
        }
        int ok = pool_finish(p, mode);
        if (ok) {
            long errors = 0;
            for (int i = 0; i < started; i++) {
                for (size_t k = 0; k < per; k++) {
                    const tt *t = &s[i].v[k];
                    int n = atomic_load(&t->runs) + atomic_load(&t->discards);
                    if (n != (k < s[i].accepted ? 1 : 0) && errors++ < 5)
                        FAILF("round %ld submitter %d task %zu (accepted %zu): handed back "
                              "%d times", round, i, k, s[i].accepted, n);
                }
            }
            CHECK_EQ(errors, 0);
            if (mode == RP_SHUTDOWN_DRAIN)
                CHECK_EQ(atomic_load(&c.discards), 0);
            CHECK_EQ(atomic_load(&c.runs) + atomic_load(&c.discards), (long)accepted);
        }
        CHECK_EQ(atomic_load(&c.bad), 0);
        free(v);
        if (rp_test_check_failures)
            break;
    }
}

/* A canceller races the workers: each task is run XOR discarded, and a cancel
 * that returned 1 always means a CANCELLED discard. */
typedef struct canceller {
    tt *v;
    size_t n;
    unsigned char *won;
    _Atomic size_t submitted_upto; /* tasks [0, this) have been submitted */
} canceller;

static void *canceller_main(void *arg) {
    canceller *k = arg;
    for (size_t i = 0; i < k->n; i += 2) {
        unsigned spins = 0;
        while (atomic_load(&k->submitted_upto) <= i) {
            if (++spins > 64)
                sched_yield();
        }
        k->won[i] = (unsigned char)rp_task_cancel(&k->v[i].base);
    }
    return NULL;
}

static void test_cancel_race(void) {
    tctx c;
    ctx_init(&c);
    size_t n = (size_t)rp_test_scaled(20000, 500);
    rp_pool_config cfg = cfg_make(2, 2);
    rp_pool *p = pool_new(&cfg, &c);
    if (!p)
        return;
    tt *v = tasks_new(n, &c, K_SPIN_US);
    for (size_t i = 0; i < n; i++)
        v[i].arg = 2; /* 2 us each: the queue builds up, so cancels win some */
    unsigned char *won = calloc(n, 1);
    canceller k = {.v = v, .n = n, .won = won};
    pthread_t th;
    int have = rp_test_thread_start(&th, canceller_main, &k);
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ(rp_pool_submit(p, &v[i].base), RP_OK);
        atomic_store(&k.submitted_upto, i + 1);
    }
    if (have)
        pthread_join(th, NULL);
    size_t nwon = 0;
    for (size_t i = 0; i < n; i++)
        nwon += won[i] != 0;
    CHECK_WAIT(tt_finished(&c) == (long)n, 30000);
    CHECK_WAIT(stats(p).completed + stats(p).cancelled == n, WAIT_MS);
    rp_pool_stats st = stats(p);
    CHECK_EQ(st.cancelled, nwon);
    CHECK_EQ(st.completed, n - nwon);
    CHECK(conserved(&st));
    if (pool_finish(p, RP_SHUTDOWN_DRAIN)) {
        check_each_once(v, n, "cancel race");
        long errors = 0;
        for (size_t i = 0; i < n; i++) {
            int cancelled = atomic_load(&v[i].discards) == 1;
            if (cancelled != (won[i] != 0) && errors++ < 5)
                FAILF("task %zu: cancel returned %d but discards %d runs %d", i, won[i],
                      atomic_load(&v[i].discards), atomic_load(&v[i].runs));
            if (cancelled && atomic_load(&v[i].reason) != RP_DISCARD_CANCELLED && errors++ < 5)
                FAILF("task %zu: cancelled, but discard reason %d", i,
                      atomic_load(&v[i].reason));
        }
        CHECK_EQ(errors, 0);
        printf("  %zu of %zu cancels won\n", nwon, (n + 1) / 2);
    }
    CHECK_EQ(atomic_load(&c.bad), 0);
    free(won);
    free(v);
}

/* ---- parking and keep-alive hunts --------------------------------------- */

/* One task at a time, with pauses so workers go idle and park between them.
 * A task not run within the bound is a lost wake-up. */
static void parking_hunt(unsigned min_w, unsigned max_w, int64_t spin_ns,
                         int64_t keep_alive_ns, long rounds, const char *what) {
    tctx c;
    ctx_init(&c);
    rp_pool_config cfg = cfg_make(min_w, max_w);
    cfg.spin_ns = spin_ns;
    cfg.keep_alive_ns = keep_alive_ns;
    rp_pool *p = pool_new(&cfg, &c);
    if (!p)
        return;
    tt *v = tasks_new((size_t)rounds, &c, K_PLAIN);
    uint64_t rng = 12345;
    long lost_at = -1, parked_rounds = 0;
    int64_t t0 = rp_test_now_ns();
    for (long r = 0; r < rounds; r++) {
        uint64_t x = rp_test_rand(&rng);
        switch (x % 6) {
        case 0: { /* until every live worker is idle (parked, with spin_ns 0) */
            int ok;
            WAIT_UNTIL(ok, (stats(p).idle_workers == stats(p).live_workers), 2000);
            parked_rounds += ok;
            break;
        }
        case 1:
            rp_test_sleep_us((int64_t)((x >> 8) % 200));
            break;
        case 2:
            for (volatile unsigned i = 0; i < (unsigned)((x >> 8) % 2000); i++) {
            }
            break;
        default:
            break; /* at once: races the worker on its way to sleep */
        }
        int rc = rp_pool_submit(p, &v[r].base);
        if (!CHECK_EQ(rc, RP_OK))
            break;
        int64_t dl = rp_test_now_ns() + 5000000000LL;
        unsigned spins = 0;
        while (tt_finished(&c) != r + 1) {
            if (rp_test_now_ns() > dl) {
                lost_at = r;
                break;
            }
            if (++spins < 200)
                sched_yield();
            else
                rp_test_sleep_us(50);
        }
        if (lost_at >= 0) {
            rp_pool_stats s = stats(p);
            FAILF("%s: task of round %ld not run within 5 s (lost wake-up or no worker): "
                  "live %u idle %u queued %llu running %llu",
                  what, r, s.live_workers, s.idle_workers, (unsigned long long)s.queued,
                  (unsigned long long)s.running);
            break;
        }
    }
    double secs = (double)(rp_test_now_ns() - t0) / 1e9;
    CHECK_EQ(lost_at, -1);
    rp_pool_stats s = stats(p);
    printf("  %s: %ld rounds (%ld with all workers idle), peak %u, %.2f s\n", what, rounds,
           parked_rounds, s.peak_workers, secs);
    if (pool_finish(p, RP_SHUTDOWN_DRAIN))
        check_each_once(v, lost_at >= 0 ? (size_t)lost_at : (size_t)rounds, what);
    CHECK_EQ(atomic_load(&c.bad), 0);
    free(v);
}

static void test_parking_one_worker(void) {
    parking_hunt(1, 1, 0, -1, rp_test_scaled(3000, 200), "1 worker, no spin");
}
static void test_parking_two_workers(void) {
    parking_hunt(2, 2, 0, -1, rp_test_scaled(3000, 200), "2 workers, no spin");
}
static void test_parking_four_workers_spin(void) {
    parking_hunt(4, 4, 50000, -1, rp_test_scaled(3000, 200), "4 workers, spin 50 us");
}
/* keep_alive 0: every idle worker retires at once, so each submit races a
 * retiring worker (the submit must wake it, or spawn a replacement). */
static void test_keepalive_retire_vs_submit(void) {
    parking_hunt(0, 1, 0, 0, rp_test_scaled(3000, 200), "max 1, keep-alive 0");
}
static void test_keepalive_retire_vs_submit_2(void) {
    parking_hunt(0, 2, 0, 100000, rp_test_scaled(3000, 200), "max 2, keep-alive 100us");
}

/* ---- keep-alive, min_workers, resize -------------------------------------- */

static void test_keep_alive_retires_idle_workers(void) {
    tctx c;
    ctx_init(&c);
    rp_pool_config cfg = cfg_make(0, 4);
    cfg.keep_alive_ns = 50000000; /* 50 ms */
    rp_pool *p = pool_new(&cfg, &c);
    if (!p)
        return;
    CHECK_EQ(stats(p).live_workers, 0);
    tt *g = tasks_new(5, &c, K_GATE);
    for (int i = 0; i < 4; i++)
        CHECK_EQ(rp_pool_submit(p, &g[i].base), RP_OK);
    CHECK_WAIT(atomic_load(&c.in_gate) == 4, WAIT_MS);
    rp_pool_stats s = stats(p);
    CHECK_EQ(s.live_workers, 4);
    CHECK_EQ(s.peak_workers, 4);
    CHECK_EQ(s.running, 4);
    /* At max_workers: a fifth task queues instead of starting a fifth worker. */
    CHECK_EQ(rp_pool_submit(p, &g[4].base), RP_OK);
    rp_test_sleep_ms(10);
    s = stats(p);
    CHECK_EQ(s.live_workers, 4);
    CHECK_EQ(s.queued, 1);
    CHECK_EQ(atomic_load(&c.in_gate), 4);
    gate_open(&c);
    CHECK_WAIT(tt_finished(&c) == 5, WAIT_MS);
    /* Idle for keep_alive: every worker above min_workers (0) exits. */
    CHECK_WAIT(stats(p).live_workers == 0, WAIT_MS);
    s = stats(p);
    CHECK_EQ(s.idle_workers, 0);
    CHECK_EQ(s.peak_workers, 4);
    CHECK(conserved(&s));
    /* And the pool still works: a new worker starts for the next task. */
    tt *v = tasks_new(3, &c, K_PLAIN);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(rp_pool_submit(p, &v[i].base), RP_OK);
    CHECK_WAIT(tt_finished(&c) == 8, WAIT_MS);
    CHECK_WAIT(stats(p).live_workers == 0, WAIT_MS);
    pool_finish(p, RP_SHUTDOWN_DRAIN);
    CHECK_EQ(atomic_load(&c.bad), 0);
    free(g);
    free(v);
}

static void test_min_workers_kept(void) {
    tctx c;
    ctx_init(&c);
    rp_pool_config cfg = cfg_make(2, 4);
    cfg.keep_alive_ns = 20000000; /* 20 ms */
    rp_pool *p = pool_new(&cfg, &c);
    if (!p)
        return;
    CHECK_WAIT(stats(p).live_workers == 2, WAIT_MS);
    tt *g = tasks_new(4, &c, K_GATE);
    for (int i = 0; i < 4; i++) { /* one at a time (bursts: test_burst_...) */
        CHECK_EQ(rp_pool_submit(p, &g[i].base), RP_OK);
        CHECK_WAIT(atomic_load(&c.in_gate) == i + 1, WAIT_MS);
    }
    CHECK_EQ(stats(p).live_workers, 4);
    gate_open(&c);
    CHECK_WAIT(tt_finished(&c) == 4, WAIT_MS);
    CHECK_WAIT(stats(p).live_workers == 2, WAIT_MS);
    rp_test_sleep_ms(100); /* five keep-alive periods: the minimum stays */
    rp_pool_stats s = stats(p);
    CHECK_EQ(s.live_workers, 2);
    CHECK_WAIT(stats(p).idle_workers == 2, WAIT_MS);
    pool_finish(p, RP_SHUTDOWN_DRAIN);
    CHECK_EQ(atomic_load(&c.bad), 0);
    free(g);
}

/* A burst of blocking tasks onto a pool whose workers are all idle: each idle
 * worker can take only one of them, so the rest must start new workers (up to
 * max_workers) rather than queue behind tasks that block. Otherwise tasks that
 * wait for each other (a barrier of max_workers tasks) deadlock a pool that
 * has room to grow, which ThreadPoolExecutor(max_workers) never does. */
static void burst_onto_idle(unsigned min_w, unsigned max_w) {
    tctx c;
    ctx_init(&c);
    rp_pool_config cfg = cfg_make(min_w, max_w);
    rp_pool *p = pool_new(&cfg, &c);
    if (!p)
        return;
    CHECK_WAIT(stats(p).live_workers == min_w && stats(p).idle_workers == min_w, WAIT_MS);
    tt *g = tasks_new(max_w, &c, K_GATE);
    for (unsigned i = 0; i < max_w; i++)
        CHECK_EQ(rp_pool_submit(p, &g[i].base), RP_OK);
    int ok;
    WAIT_UNTIL(ok, atomic_load(&c.in_gate) == (int)max_w, 2000);
    if (!ok) {
        rp_pool_stats s = stats(p);
        FAILF("min %u max %u: %u blocking tasks submitted at once onto %u idle workers: only "
              "%d started within 2 s; live %u idle %u queued %llu (the pool stays below "
              "max_workers while tasks queue behind blocked workers)",
              min_w, max_w, max_w, min_w, atomic_load(&c.in_gate), s.live_workers,
              s.idle_workers, (unsigned long long)s.queued);
    }
    gate_open(&c);
    CHECK_WAIT(tt_finished(&c) == (long)max_w, WAIT_MS);
    pool_finish(p, RP_SHUTDOWN_DRAIN);
    CHECK_EQ(atomic_load(&c.bad), 0);
    free(g);
}

static void test_burst_onto_idle_workers_grows_to_max(void) {
    burst_onto_idle(1, 2);
    burst_onto_idle(2, 4);
}

static void test_keep_alive_negative_never_retires(void) {
    tctx c;
    ctx_init(&c);
    rp_pool_config cfg = cfg_make(0, 2);
    cfg.keep_alive_ns = -1;
    rp_pool *p = pool_new(&cfg, &c);
    if (!p)
        return;
    tt *g = tasks_new(2, &c, K_GATE);
    for (int i = 0; i < 2; i++)
        CHECK_EQ(rp_pool_submit(p, &g[i].base), RP_OK);
    CHECK_WAIT(atomic_load(&c.in_gate) == 2, WAIT_MS);
    gate_open(&c);
    CHECK_WAIT(tt_finished(&c) == 2, WAIT_MS);
    rp_test_sleep_ms(150);
    CHECK_EQ(stats(p).live_workers, 2);
    pool_finish(p, RP_SHUTDOWN_DRAIN);
    free(g);
}

static void test_resize(void) {
    tctx c;
    ctx_init(&c);
    rp_pool_config cfg = cfg_make(1, 1);
    rp_pool *p = pool_new(&cfg, &c);
    if (!p)
        return;
    CHECK_WAIT(stats(p).live_workers == 1, WAIT_MS);
    CHECK_EQ(rp_pool_resize(p, 0, 0), RP_EINVAL);
    CHECK_EQ(rp_pool_resize(p, 3, 2), RP_EINVAL);
    rp_pool_stats s = stats(p);
    CHECK_EQ(s.min_workers, 1);
    CHECK_EQ(s.max_workers, 1);

    /* Up: the new minimum is started. */
    CHECK_EQ(rp_pool_resize(p, 3, 4), RP_OK);
    CHECK_WAIT(stats(p).live_workers == 3, WAIT_MS);
    s = stats(p);
    CHECK_EQ(s.min_workers, 3);
    CHECK_EQ(s.max_workers, 4);
    tt *g = tasks_new(4, &c, K_GATE);
    for (int i = 0; i < 4; i++) { /* one at a time (bursts: test_burst_...) */
        CHECK_EQ(rp_pool_submit(p, &g[i].base), RP_OK);
        CHECK_WAIT(atomic_load(&c.in_gate) == i + 1, WAIT_MS);
    }
    CHECK_EQ(stats(p).live_workers, 4);

    /* Down while all four are busy: surplus workers retire after their task. */
    CHECK_EQ(rp_pool_resize(p, 0, 1), RP_OK);
    s = stats(p);
    CHECK_EQ(s.min_workers, 0);
    CHECK_EQ(s.max_workers, 1);
    gate_open(&c);
    CHECK_WAIT(tt_finished(&c) == 4, WAIT_MS);
    CHECK_WAIT(stats(p).live_workers <= 1, WAIT_MS);

    /* Now at most one task runs at a time. */
    tctx c2;
    ctx_init(&c2);
    atomic_store(&c2.pool, p);
    tt *g2 = tasks_new(3, &c2, K_GATE);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(rp_pool_submit(p, &g2[i].base), RP_OK);
    CHECK_WAIT(atomic_load(&c2.in_gate) == 1, WAIT_MS);
    rp_test_sleep_ms(30);
    CHECK_EQ(atomic_load(&c2.in_gate), 1);
    s = stats(p);
    CHECK_LE(s.live_workers, 1);
    CHECK_EQ(s.queued, 2);
    gate_open(&c2);
    CHECK_WAIT(tt_finished(&c2) == 3, WAIT_MS);

    /* Parked surplus workers retire too (no task needed to wake them). */
    CHECK_EQ(rp_pool_resize(p, 3, 3), RP_OK);
    CHECK_WAIT(stats(p).live_workers == 3, WAIT_MS);
    CHECK_WAIT(stats(p).idle_workers == 3, WAIT_MS);
    CHECK_EQ(rp_pool_resize(p, 1, 1), RP_OK);
    CHECK_WAIT(stats(p).live_workers == 1, WAIT_MS);
    pool_finish(p, RP_SHUTDOWN_DRAIN);
    CHECK_EQ(atomic_load(&c.bad), 0);
    CHECK_EQ(atomic_load(&c2.bad), 0);
    free(g);
    free(g2);
}

/* Latency histograms (metrics on) count every started task; with metrics
 * off they stay empty and no clock is read: submit_ns stays 0 (rp_task). */
static void metrics_case(int metrics) {
    tctx c;
    ctx_init(&c);
    c.metrics_off = !metrics;
    size_t n = 200;
    rp_pool_config cfg = cfg_make(0, 2);
    cfg.metrics = metrics;
    rp_pool *p = pool_new(&cfg, &c);
    if (!p)
        return;
    tt *v = tasks_new(n, &c, K_SPIN_US);
    for (size_t i = 0; i < n; i++) {
        v[i].arg = 100; /* 100 us */
        CHECK_EQ(rp_pool_submit(p, &v[i].base), RP_OK);
    }
    CHECK_EQ(rp_pool_shutdown(p, RP_SHUTDOWN_DRAIN), RP_OK);
    CHECK_EQ(rp_pool_join(p, rp_test_now_ns() + (int64_t)WAIT_MS * 1000000), RP_OK);
    rp_hist_snapshot *qw = calloc(1, sizeof *qw), *rt = calloc(1, sizeof *rt);
    rp_pool_latency(p, qw, rt);
    if (metrics) {
        CHECK_EQ(rt->count, n);
        CHECK_EQ(qw->count, n);
        CHECK_GE(rt->max_ns, 100000);
        CHECK_GE(rt->sum_ns, (uint64_t)n * 100000);
        uint64_t sum_rt = 0, sum_qw = 0;
        for (unsigned b = 0; b < RP_HIST_BUCKETS; b++) {
            sum_rt += rt->counts[b];
            sum_qw += qw->counts[b];
        }
        CHECK_EQ(sum_rt, n);
        CHECK_EQ(sum_qw, n);
        /* Every run took >= 100 us: nothing below that bucket. */
        uint64_t below = 0;
        for (unsigned b = 0; b < rp_hist_bucket(100000); b++)
            below += rt->counts[b];
        CHECK_EQ(below, 0);
    } else {
        CHECK_EQ(rt->count, 0);
        CHECK_EQ(qw->count, 0);
    }
    free(qw);
    free(rt);
    rp_pool_stats s = stats(p);
    CHECK_EQ(s.completed, n);
    CHECK_EQ(s.started, n);
    rp_pool_release(p);
    CHECK_EQ(atomic_load(&c.submit_ns_unset), 0);
    CHECK_EQ(atomic_load(&c.bad), 0);
    free(v);
}

static void test_metrics_on(void) { metrics_case(1); }
static void test_metrics_off(void) { metrics_case(0); }

/* ---- hooks ---------------------------------------------------------------- */

typedef struct hctx {
    rp_pool *_Atomic pool;
    _Atomic int start_calls, start_ok, idles, stops, frees;
    _Atomic int fail_starts; /* the first N worker_start calls fail */
    _Atomic int fail_all;
    _Atomic long bad;
    int locals[64];
} hctx;

static void hbad(hctx *h, const char *what) {
    if (atomic_fetch_add(&h->bad, 1) < 10)
        FAILF("hook: %s", what);
}

static int h_start(void *ctx, rp_worker *w, void **local) {
    hctx *h = ctx;
    int n = atomic_fetch_add(&h->start_calls, 1);
    if (w == NULL || rp_worker_current() != w)
        hbad(h, "worker_start: rp_worker_current() != w");
    if (n < atomic_load(&h->fail_starts) || atomic_load(&h->fail_all))
        return 1;
    *local = &h->locals[rp_worker_index(w) % 64];
    atomic_fetch_add(&h->start_ok, 1);
    return 0;
}

static void h_idle(void *ctx, rp_worker *w) {
    hctx *h = ctx;
    if (w == NULL || rp_worker_current() != w)
        hbad(h, "worker_idle: rp_worker_current() != w");
    else if (rp_worker_local(w) != &h->locals[rp_worker_index(w) % 64])
        hbad(h, "worker_idle: rp_worker_local() is not what worker_start set");
    atomic_fetch_add(&h->idles, 1);
}

static void h_stop(void *ctx, rp_worker *w) {
    hctx *h = ctx;
    if (w == NULL || rp_worker_current() != w)
        hbad(h, "worker_stop: rp_worker_current() != w");
    else if (rp_worker_local(w) != &h->locals[rp_worker_index(w) % 64])
        hbad(h, "worker_stop: rp_worker_local() is not what worker_start set");
    rp_pool *p = atomic_load(&h->pool);
    if (p && rp_worker_pool(w) != p)
        hbad(h, "worker_stop: rp_worker_pool() is not the pool");
    atomic_fetch_add(&h->stops, 1);
}

static void h_free(void *ctx) {
    hctx *h = ctx;
    atomic_fetch_add(&h->frees, 1);
}

static const rp_pool_hooks h_hooks = {h_start, h_idle, h_stop, h_free, NULL, NULL, NULL};

static void test_worker_hooks(void) {
    tctx c;
    ctx_init(&c);
    c.thread_prefix = "rpt";
    hctx *h = calloc(1, sizeof *h);
    rp_pool_config cfg = cfg_make(0, 3);
    cfg.hooks = &h_hooks;
    cfg.hooks_ctx = h;
    cfg.name = "rpt";
    rp_pool *p = pool_new(&cfg, &c);
    if (!p) {
        free(h);
        return;
    }
    atomic_store(&h->pool, p);
    CHECK_EQ(atomic_load(&h->start_calls), 0);
    tt *g = tasks_new(3, &c, K_GATE);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(rp_pool_submit(p, &g[i].base), RP_OK);
    CHECK_WAIT(atomic_load(&c.in_gate) == 3, WAIT_MS);
    CHECK_EQ(atomic_load(&h->start_ok), 3);
    CHECK_EQ(atomic_load(&h->stops), 0);
    gate_open(&c);
    CHECK_WAIT(tt_finished(&c) == 3, WAIT_MS);
    CHECK_WAIT(atomic_load(&h->idles) >= 1, WAIT_MS);
    CHECK_EQ(pool_finish(p, RP_SHUTDOWN_DRAIN), 1);
    CHECK_EQ(atomic_load(&h->start_calls), 3);
    CHECK_EQ(atomic_load(&h->stops), atomic_load(&h->start_ok));
    CHECK_GE(atomic_load(&h->idles), 1);
    /* Every worker was joined before release: the pool is freed by release. */
    CHECK_WAIT(atomic_load(&h->frees) == 1, WAIT_MS);
    rp_test_sleep_ms(5);
    CHECK_EQ(atomic_load(&h->frees), 1);
    CHECK_EQ(atomic_load(&h->bad), 0);
    CHECK_EQ(atomic_load(&c.bad), 0);
    free(g);
    free(h);
}

static void test_worker_start_failure(void) {
    tctx c;
    ctx_init(&c);
    hctx *h = calloc(1, sizeof *h);
    atomic_store(&h->fail_starts, 1);
    rp_pool_config cfg = cfg_make(0, 1);
    cfg.hooks = &h_hooks;
    cfg.hooks_ctx = h;
    rp_pool *p = pool_new(&cfg, &c);
    if (!p) {
        free(h);
        return;
    }
    atomic_store(&h->pool, p);
    tt *v = tasks_new(2, &c, K_PLAIN);
    CHECK_EQ(rp_pool_submit(p, &v[0].base), RP_OK);
    /* The worker started for it refuses (worker_start != 0) and exits at once,
     * without worker_stop; the pool stays open. */
    CHECK_WAIT(atomic_load(&h->start_calls) == 1 && stats(p).live_workers == 0, WAIT_MS);
    CHECK_EQ(atomic_load(&h->stops), 0);
    CHECK_EQ(atomic_load(&v[0].runs), 0);
    CHECK_EQ(stats(p).closed, 0);
    /* The next submit starts a worker that succeeds and runs both. */
    CHECK_EQ(rp_pool_submit(p, &v[1].base), RP_OK);
    CHECK_WAIT(tt_finished(&c) == 2, WAIT_MS);
    CHECK_EQ(atomic_load(&v[0].runs), 1);
    CHECK_EQ(atomic_load(&v[1].runs), 1);
    pool_finish(p, RP_SHUTDOWN_DRAIN);
    CHECK_EQ(atomic_load(&h->start_ok), 1);
    CHECK_EQ(atomic_load(&h->stops), 1);
    CHECK_WAIT(atomic_load(&h->frees) == 1, WAIT_MS);
    CHECK_EQ(atomic_load(&h->bad), 0);
    free(v);
    free(h);
}

/* No worker ever starts: a draining shutdown + join must still hand every
 * accepted task back exactly once (discard). */
static void test_worker_start_always_fails(void) {
    tctx c;
    ctx_init(&c);
    hctx *h = calloc(1, sizeof *h);
    atomic_store(&h->fail_all, 1);
    rp_pool_config cfg = cfg_make(1, 2);
    cfg.hooks = &h_hooks;
    cfg.hooks_ctx = h;
    rp_pool *p = pool_new(&cfg, &c);
    if (!p) {
        free(h);
        return;
    }
    CHECK_WAIT(atomic_load(&h->start_calls) >= 1 && stats(p).live_workers == 0, WAIT_MS);
    tt *v = tasks_new(5, &c, K_PLAIN);
    size_t accepted = 0;
    for (int i = 0; i < 5; i++) {
        int rc = rp_pool_submit(p, &v[i].base);
        CHECK(rc == RP_OK || rc == RP_ETHREAD);
        accepted += rc == RP_OK;
        CHECK_WAIT(stats(p).live_workers == 0, WAIT_MS);
    }
    if (pool_finish(p, RP_SHUTDOWN_DRAIN)) {
        for (int i = 0; i < 5; i++)
            CHECK_EQ(atomic_load(&v[i].runs), 0);
        CHECK_EQ(atomic_load(&c.discards), (long)accepted);
    }
    CHECK_EQ(atomic_load(&h->start_ok), 0);
    CHECK_EQ(atomic_load(&h->stops), 0);
    free(v);
    free(h);
}

/* Thread creation fails (a stack no address space can hold): create with
 * min_workers > 0 reports RP_ETHREAD; a submit to a pool with no live worker
 * and none that can start reports RP_ETHREAD and does not take the task
 * (otherwise it would wait, accepted, for a worker that never comes). */
static void test_thread_creation_failure(void) {
    if (sizeof(size_t) < 8)
        return;
    tctx c;
    ctx_init(&c);
    rp_pool_config cfg = cfg_make(1, 2);
    cfg.stack_size = (size_t)1 << 50; /* 1 PiB: pthread_create fails */
    rp_pool *p = NULL;
    CHECK_EQ(rp_pool_create(&cfg, &p), RP_ETHREAD);

    cfg.min_workers = 0;
    p = pool_new(&cfg, &c);
    if (!p)
        return;
    tt *v = tasks_new(1, &c, K_PLAIN);
    int rc = rp_pool_submit(p, &v[0].base);
    if (!CHECK_EQ(rc, RP_ETHREAD))
        FAILF("submit with no live worker and thread creation failing returned %d; the task "
              "would sit queued (live %u)", rc, stats(p).live_workers);
    rp_test_sleep_ms(20);
    CHECK_EQ(atomic_load(&v[0].runs), 0);
    if (pool_finish(p, RP_SHUTDOWN_DRAIN)) {
        /* Either refused (never handed back) or accepted and then discarded. */
        int back = atomic_load(&v[0].runs) + atomic_load(&v[0].discards);
        CHECK_EQ(back, rc == RP_OK ? 1 : 0);
    }
    free(v);
}

/* ---- calls from inside tasks ----------------------------------------------- */

static void test_join_from_worker_is_edeadlk(void) {
    tctx c;
    ctx_init(&c);
    rp_pool_config cfg = cfg_make(1, 2);
    rp_pool *p = pool_new(&cfg, &c);
    if (!p)
        return;
    /* Open pool: join from a worker must not wait (RP_EDEADLK or RP_EINVAL). */
    tt *o = tasks_new(1, &c, K_JOIN_OPEN);
    CHECK_EQ(rp_pool_submit(p, &o[0].base), RP_OK);
    CHECK_WAIT(atomic_load(&o[0].done) == 1, WAIT_MS);
    int rc = atomic_load(&o[0].rc1);
    CHECK(rc == RP_EDEADLK || rc == RP_EINVAL);

    /* Closed pool: RP_EDEADLK, with or without a deadline. */
    tt *j = tasks_new(1, &c, K_JOIN_SELF);
    CHECK_EQ(rp_pool_submit(p, &j[0].base), RP_OK);
    CHECK_WAIT(atomic_load(&c.in_gate) == 1, WAIT_MS);
    CHECK_EQ(rp_pool_shutdown(p, RP_SHUTDOWN_DRAIN), RP_OK);
    gate_open(&c);
    CHECK_WAIT(atomic_load(&j[0].done) == 1, WAIT_MS);
    CHECK_EQ(atomic_load(&j[0].rc1), RP_EDEADLK);
    CHECK_EQ(atomic_load(&j[0].rc2), RP_EDEADLK);
    pool_finish(p, RP_SHUTDOWN_DRAIN);
    CHECK_EQ(atomic_load(&c.bad), 0);
    free(o);
    free(j);
}

static void test_submit_and_shutdown_from_worker(void) {
    tctx c;
    ctx_init(&c);
    rp_pool_config cfg = cfg_make(0, 2);
    rp_pool *p = pool_new(&cfg, &c);
    if (!p)
        return;
    tt *parent = tasks_new(1, &c, K_SUBMIT_CHILD);
    tt *child = tasks_new(1, &c, K_PLAIN);
    parent[0].child = &child[0];
    CHECK_EQ(rp_pool_submit(p, &parent[0].base), RP_OK);
    CHECK_WAIT(tt_finished(&c) == 2, WAIT_MS);
    CHECK_EQ(atomic_load(&parent[0].rc1), RP_OK);
    CHECK_EQ(atomic_load(&child[0].runs), 1);

    tt *sd = tasks_new(1, &c, K_SHUTDOWN);
    CHECK_EQ(rp_pool_submit(p, &sd[0].base), RP_OK);
    CHECK_WAIT(atomic_load(&sd[0].done) == 1, WAIT_MS);
    CHECK_EQ(atomic_load(&sd[0].rc1), RP_OK);
    CHECK_WAIT(stats(p).closed, WAIT_MS);
    CHECK_EQ(rp_pool_join(p, rp_test_now_ns() + (int64_t)WAIT_MS * 1000000), RP_OK);
    CHECK_CONSERVED(p);
    rp_pool_release(p);
    CHECK_EQ(atomic_load(&c.bad), 0);
    free(parent);
    free(child);
    free(sd);
}

/* ---- release without join --------------------------------------------------- */

static void test_release_without_join(void) {
    tctx *c = calloc(1, sizeof *c);
    hctx *h = calloc(1, sizeof *h);
    ctx_init(c);
    rp_pool_config cfg = cfg_make(0, 3);
    cfg.hooks = &h_hooks;
    cfg.hooks_ctx = h;
    rp_pool *p = pool_new(&cfg, c);
    if (!p) {
        free(c);
        free(h);
        return;
    }
    atomic_store(&h->pool, p);
    atomic_store(&c->check_worker, 0); /* the handle is given up below */
    tt *g = tasks_new(3, c, K_GATE);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(rp_pool_submit(p, &g[i].base), RP_OK);
    CHECK_WAIT(atomic_load(&c->in_gate) == 3, WAIT_MS);
    size_t q = 30;
    tt *v = tasks_new(q, c, K_SPIN_US);
    for (size_t i = 0; i < q; i++) {
        v[i].arg = 200;
        CHECK_EQ(rp_pool_submit(p, &v[i].base), RP_OK);
    }
    /* Release while every worker is busy: shutdown (DRAIN) and detach. */
    atomic_store(&h->pool, NULL);
    atomic_store(&c->pool, NULL);
    rp_pool_release(p);
    p = NULL;
    CHECK_EQ(atomic_load(&h->frees), 0); /* workers still hold it */
    gate_open(c);
    /* DRAIN: everything still runs, then the last worker frees the pool. */
    CHECK_WAIT(tt_finished(c) == (long)q + 3, WAIT_MS);
    CHECK_WAIT(atomic_load(&h->frees) == 1, WAIT_MS);
    rp_test_sleep_ms(5);
    CHECK_EQ(atomic_load(&h->frees), 1);
    CHECK_EQ(atomic_load(&h->stops), atomic_load(&h->start_ok));
    check_each_once(v, q, "release");
    for (size_t i = 0; i < q; i++)
        CHECK_EQ(atomic_load(&v[i].runs), 1);
    CHECK_EQ(atomic_load(&c->bad), 0);
    CHECK_EQ(atomic_load(&h->bad), 0);
    /* Only once the pool is freed do task and context memory go. */
    if (atomic_load(&h->frees) == 1) {
        free(g);
        free(v);
        free(c);
        free(h);
    }
}

static void test_release_busy_pool_repeatedly(void) {
    long rounds = rp_test_scaled(50, 5);
    for (long r = 0; r < rounds; r++) {
        tctx *c = calloc(1, sizeof *c);
        hctx *h = calloc(1, sizeof *h);
        ctx_init(c);
        atomic_store(&c->check_worker, 0);
        rp_pool_config cfg = cfg_make((unsigned)(r % 3), 3);
        cfg.hooks = &h_hooks;
        cfg.hooks_ctx = h;
        cfg.keep_alive_ns = (r & 1) ? 0 : -1;
        rp_pool *p = pool_new(&cfg, NULL);
        if (!p) {
            free(c);
            free(h);
            return;
        }
        size_t q = 20;
        tt *v = tasks_new(q, c, K_SPIN_US);
        for (size_t i = 0; i < q; i++) {
            v[i].arg = (int64_t)(i % 4) * 20;
            CHECK_EQ(rp_pool_submit(p, &v[i].base), RP_OK);
        }
        if (r % 4 == 3)
            CHECK_EQ(rp_pool_shutdown(p, RP_SHUTDOWN_DISCARD), RP_OK);
        rp_pool_release(p);
        int ok;
        WAIT_UNTIL(ok, atomic_load(&h->frees) == 1, WAIT_MS);
        if (!ok) {
            FAILF("round %ld: pool not freed within %d ms after release", r, WAIT_MS);
            return; /* leak rather than free memory workers may use */
        }
        CHECK_EQ(tt_finished(c), (long)q);
        check_each_once(v, q, "release busy");
        CHECK_EQ(atomic_load(&h->stops), atomic_load(&h->start_ok));
        CHECK_EQ(atomic_load(&c->bad), 0);
        free(v);
        free(c);
        free(h);
    }
}

int main(int argc, char **argv) {
    rp_test_init(argc, argv);
    RUN_TEST(test_config_and_lifecycle);
    RUN_TEST(test_drain_runs_every_task_once);
    RUN_TEST(test_discard_shutdown_discards_queued);
    RUN_TEST(test_drain_upgraded_to_discard);
    RUN_TEST(test_cancel_queued_task);
    RUN_TEST(test_cancel_then_discard_shutdown);
    RUN_TEST(test_bounded_queue);
    RUN_TEST(test_blocked_submitter_sees_shutdown);
    RUN_TEST(test_submit_wait_fifo);
    RUN_TEST(test_many_submitters_unbounded);
    RUN_TEST(test_many_submitters_bounded_wait);
    RUN_TEST(test_submit_shutdown_race);
    RUN_TEST(test_cancel_race);
    RUN_TEST(test_parking_one_worker);
    RUN_TEST(test_parking_two_workers);
    RUN_TEST(test_parking_four_workers_spin);
    RUN_TEST(test_keepalive_retire_vs_submit);
    RUN_TEST(test_keepalive_retire_vs_submit_2);
    RUN_TEST(test_keep_alive_retires_idle_workers);
    RUN_TEST(test_min_workers_kept);
    RUN_TEST(test_keep_alive_negative_never_retires);
    RUN_TEST(test_burst_onto_idle_workers_grows_to_max);
    RUN_TEST(test_resize);
    RUN_TEST(test_metrics_on);
    RUN_TEST(test_metrics_off);
    RUN_TEST(test_worker_hooks);
    RUN_TEST(test_worker_start_failure);
    RUN_TEST(test_worker_start_always_fails);
    RUN_TEST(test_thread_creation_failure);
    RUN_TEST(test_join_from_worker_is_edeadlk);
    RUN_TEST(test_submit_and_shutdown_from_worker);
    RUN_TEST(test_release_without_join);
    RUN_TEST(test_release_busy_pool_repeatedly);
    return rp_test_summary();
}
