/* test_native.c - batches and parallel_for (rp_native.h) on a real pool.
 *
 * The invariants checked everywhere: every item of a batch ends exactly once
 * (ran once, or never ran and says RP_STATUS_NOT_RUN), the batch reaches
 * "done" in every scenario (cancel, discarding shutdown, release before the
 * end), and parallel_for calls its kernel on chunks that cover [0, n)
 * exactly once. Per-item counters catch both a lost and a doubled item.
 * Leaks and use-after-free of the batch/job memory are left to ASan; races
 * on it to TSan (the CMake sanitizer builds).
 */
#include "rp_test.h" /* first: feature macros */

#include "rp_native.h"
#include "rp_pool.h"
#include "rp_sys.h" /* rp_now_ns: the clock of rp_batch_wait deadlines */

#include <stdatomic.h>

#define WAIT_MS 20000 /* generous bound for "this must happen" */

static rp_pool *
make_pool(unsigned min_w, unsigned max_w, size_t capacity)
{
    rp_pool_config cfg;
    rp_pool_config_init(&cfg);
    cfg.min_workers = min_w;
    cfg.max_workers = max_w;
    cfg.queue_capacity = capacity;
    cfg.name = "rp-native";
    rp_pool *p = NULL;
    if (!CHECK_EQ(rp_pool_create(&cfg, &p), RP_OK))
        return NULL;
    return p;
}

static void
close_pool(rp_pool *p)
{
    CHECK_EQ(rp_pool_shutdown(p, RP_SHUTDOWN_DRAIN), RP_OK);
    CHECK_EQ(rp_pool_join(p, -1), RP_OK);
    rp_pool_release(p);
}

/* ------------------------------------------------------------------------ */
/* Native functions used by the tests                                       */
/* ------------------------------------------------------------------------ */

static _Atomic int bad_worker; /* a ctx->worker out of range was seen */
static _Atomic int max_worker_seen;

static void
note_worker(const rp_task_ctx *ctx)
{
    if (ctx->worker < -1 || ctx->cancel == NULL || ctx->reserved != NULL)
        atomic_store(&bad_worker, 1);
    int w = ctx->worker, m = atomic_load(&max_worker_seen);
    while (w > m && !atomic_compare_exchange_weak(&max_worker_seen, &m, w)) {
    }
}

/* arg: an _Atomic int counter for this item. */
static int
fn_count(void *arg, rp_task_ctx *ctx)
{
    note_worker(ctx);
    if (ctx->worker < 0)
        atomic_store(&bad_worker, 1); /* batch items always run on workers */
    atomic_fetch_add((_Atomic int *)arg, 1);
    return 0;
}

/* Range form: returns its integer argument (the status must carry it). */
static int
fn_ret(void *arg, rp_task_ctx *ctx)
{
    note_worker(ctx);
    return (int)(intptr_t)arg;
}

/* Counts, then sleeps ~200 us, so a batch takes long enough to cancel. */
static int
fn_slow_count(void *arg, rp_task_ctx *ctx)
{
    (void)ctx;
    atomic_fetch_add((_Atomic int *)arg, 1);
    /* Busy 200 us: a 200 us sleep can return at once where the timer is
     * coarse (Windows under wine), and then the batch ends before the test
     * gets to cancel it. */
    int64_t end = rp_now_ns() + 200000;
    while (rp_now_ns() < end)
        rp_cpu_relax();
    return 0;
}

/* A blocking task: waits for a gate, to keep runners queued behind it. */
typedef struct gate_task {
    rp_task base;
    _Atomic int open, entered, runs, discards;
} gate_task;

static int
gate_run(rp_task *t, rp_worker *w)
{
    (void)w;
    gate_task *g = (gate_task *)t;
    atomic_fetch_add(&g->runs, 1);
    atomic_store(&g->entered, 1);
    int ok;
    WAIT_UNTIL(ok, atomic_load(&g->open), WAIT_MS);
    CHECK(ok);
    return RP_OUTCOME_COMPLETED;
}

static void
gate_discard(rp_task *t, int reason)
{
    (void)reason;
    atomic_fetch_add(&((gate_task *)t)->discards, 1);
}

static const rp_task_ops gate_ops = {gate_run, gate_discard, NULL, 0};

/* ------------------------------------------------------------------------ */
/* Batch                                                                    */
/* ------------------------------------------------------------------------ */

/* Every item once, args form; then the range form with its return codes. */
static void
run_batch_once(rp_pool *p, int64_t n, unsigned runners, int64_t block)
{
    _Atomic int *cnt = calloc((size_t)(n ? n : 1), sizeof *cnt);
    void **args = calloc((size_t)(n ? n : 1), sizeof *args);
    if (!CHECK(cnt && args))
        return;
    for (int64_t i = 0; i < n; i++)
        args[i] = (void *)&cnt[i];
    rp_batch *b = NULL;
    if (CHECK_EQ(rp_batch_submit(p, fn_count, args, 0, 0, n, runners, block, &b), RP_OK)) {
        CHECK_EQ(rp_batch_wait(b, -1), RP_OK);
        CHECK(rp_batch_done(b));
        CHECK_EQ(rp_batch_size(b), n);
        CHECK_EQ(rp_batch_failed(b), 0);
        CHECK_EQ(rp_batch_not_run(b), 0);
        const int32_t *st = rp_batch_status(b);
        int64_t wrong = 0, wrong_st = 0;
        for (int64_t i = 0; i < n; i++) {
            wrong += atomic_load(&cnt[i]) != 1;
            wrong_st += st[i] != 0;
        }
        if (!CHECK_EQ(wrong, 0) || !CHECK_EQ(wrong_st, 0))
            FAILF("n=%lld runners=%u block=%lld", (long long)n, runners, (long long)block);
        rp_batch_release(b);
    }

    /* Range form: status[i] == start + i * step; non-zero ones are "failed". */
    int64_t start = -5, step = 3, expect_failed = 0;
    if (CHECK_EQ(rp_batch_submit(p, fn_ret, NULL, start, step, n, runners, block, &b), RP_OK)) {
        CHECK_EQ(rp_batch_wait(b, -1), RP_OK);
        const int32_t *st = rp_batch_status(b);
        int64_t wrong = 0;
        for (int64_t i = 0; i < n; i++) {
            int64_t v = start + i * step;
            expect_failed += v != 0;
            wrong += st[i] != (int32_t)v;
        }
        CHECK_EQ(wrong, 0);
        CHECK_EQ(rp_batch_failed(b), expect_failed);
        CHECK_EQ(rp_batch_not_run(b), 0);
        rp_batch_release(b);
    }
    free(cnt);
    free(args);
}

static void
test_batch_every_item_once(void)
{
    int64_t ns[] = {0, 1, 2, 3, 1000, rp_test_scaled(100003, 1001) | 1};
    struct {
        unsigned runners;
        int64_t block;
    } shapes[] = {{0, 0}, {1, 0}, {3, 1}, {8, 7}, {2, 5000}};
    rp_pool *p = make_pool(0, 4, 0);
    if (!p)
        return;
    atomic_store(&bad_worker, 0);
    atomic_store(&max_worker_seen, -1);
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            run_batch_once(p, ns[i], shapes[s].runners, shapes[s].block);
    CHECK_EQ(atomic_load(&bad_worker), 0);
    CHECK_LT(atomic_load(&max_worker_seen), 4);
    close_pool(p);
}

static void
test_batch_bad_args_and_closed_pool(void)
{
    rp_pool *p = make_pool(0, 2, 0);
    if (!p)
        return;
    rp_batch *b = (rp_batch *)&b; /* must be cleared or left alone, never freed */
    CHECK_EQ(rp_batch_submit(p, NULL, NULL, 0, 1, 5, 0, 0, &b), RP_EINVAL);
    CHECK_EQ(rp_batch_submit(p, fn_ret, NULL, 0, 1, -1, 0, 0, &b), RP_EINVAL);
    /* n == 0: done at once, no runner involved. */
    b = NULL;
    CHECK_EQ(rp_batch_submit(p, fn_ret, NULL, 0, 1, 0, 0, 0, &b), RP_OK);
    if (CHECK(b != NULL)) {
        CHECK(rp_batch_done(b));
        CHECK_EQ(rp_batch_wait(b, 0), RP_OK);
        rp_batch_release(b);
    }
    CHECK_EQ(rp_pool_shutdown(p, RP_SHUTDOWN_DRAIN), RP_OK);
    b = NULL;
    CHECK_EQ(rp_batch_submit(p, fn_ret, NULL, 0, 1, 10, 0, 0, &b), RP_ESHUTDOWN);
    CHECK(b == NULL);
    CHECK_EQ(rp_pool_join(p, -1), RP_OK);
    rp_pool_release(p);
}

static void
test_batch_wait_times_out(void)
{
    rp_pool *p = make_pool(1, 1, 0);
    if (!p)
        return;
    gate_task g;
    memset(&g, 0, sizeof g);
    g.base.ops = &gate_ops;
    CHECK_EQ(rp_pool_submit(p, &g.base), RP_OK);
    CHECK_WAIT(atomic_load(&g.entered), WAIT_MS);
    rp_batch *b = NULL;
    if (CHECK_EQ(rp_batch_submit(p, fn_ret, NULL, 0, 0, 10, 0, 0, &b), RP_OK)) {
        CHECK_EQ(rp_batch_wait(b, rp_now_ns() + 5000000), RP_ETIMEDOUT);
        CHECK(!rp_batch_done(b));
        atomic_store(&g.open, 1);
        CHECK_EQ(rp_batch_wait(b, rp_now_ns() + (int64_t)WAIT_MS * 1000000), RP_OK);
        CHECK_EQ(rp_batch_not_run(b), 0);
        rp_batch_release(b);
    }
    close_pool(p);
}

static int64_t
sum_counts(_Atomic int *cnt, int64_t n)
{
    int64_t s = 0;
    for (int64_t i = 0; i < n; i++)
        s += atomic_load(&cnt[i]);
    return s;
}

static void
test_batch_cancel_mid_batch(void)
{
    int64_t n = rp_test_scaled(4000, 400);
    rp_pool *p = make_pool(0, 2, 0);
    _Atomic int *cnt = calloc((size_t)n, sizeof *cnt);
    void **args = calloc((size_t)n, sizeof *args);
    if (!p || !CHECK(cnt && args))
        return;
    for (int64_t i = 0; i < n; i++)
        args[i] = (void *)&cnt[i];
    rp_batch *b = NULL;
    if (CHECK_EQ(rp_batch_submit(p, fn_slow_count, args, 0, 0, n, 2, 1, &b), RP_OK)) {
        /* Let some items run, then cancel in the middle. */
        int some_ran;
        WAIT_UNTIL(some_ran, sum_counts(cnt, n) >= 20, WAIT_MS);
        CHECK(some_ran);
        rp_batch_cancel(b);
        rp_batch_cancel(b); /* idempotent */
        CHECK_EQ(rp_batch_wait(b, -1), RP_OK);
        CHECK(rp_batch_done(b));
        const int32_t *st = rp_batch_status(b);
        int64_t ran = 0, not_run = 0, wrong = 0;
        for (int64_t i = 0; i < n; i++) {
            int c = atomic_load(&cnt[i]);
            ran += c == 1;
            not_run += st[i] == RP_STATUS_NOT_RUN;
            wrong += c > 1 || (c == 1) != (st[i] == 0) || (c == 0) != (st[i] == RP_STATUS_NOT_RUN);
        }
        CHECK_EQ(wrong, 0);
        CHECK_GT(not_run, 0);
        CHECK_GE(ran, 20);
        CHECK_EQ(ran + not_run, n);
        CHECK_EQ(rp_batch_not_run(b), not_run);
        CHECK_EQ(rp_batch_failed(b), 0);
        rp_batch_release(b);
    }
    close_pool(p); /* drains: every runner handed back before cnt is freed */
    free(cnt);
    free(args);
}

/* Runners queued behind a blocking task, then a discarding shutdown: the
 * engine hands the runners to ops->discard and the batch ends NOT_RUN. */
static void
test_batch_discarding_shutdown(void)
{
    rp_pool *p = make_pool(1, 1, 0);
    if (!p)
        return;
    gate_task g;
    memset(&g, 0, sizeof g);
    g.base.ops = &gate_ops;
    CHECK_EQ(rp_pool_submit(p, &g.base), RP_OK);
    CHECK_WAIT(atomic_load(&g.entered), WAIT_MS);
    rp_batch *b = NULL;
    int64_t n = 1000;
    if (CHECK_EQ(rp_batch_submit(p, fn_ret, NULL, 1, 0, n, 3, 10, &b), RP_OK)) {
        CHECK(!rp_batch_done(b));
        CHECK_EQ(rp_pool_shutdown(p, RP_SHUTDOWN_DISCARD), RP_OK);
        CHECK_EQ(rp_batch_wait(b, rp_now_ns() + (int64_t)WAIT_MS * 1000000), RP_OK);
        CHECK_EQ(rp_batch_not_run(b), n);
        CHECK_EQ(rp_batch_failed(b), 0);
        const int32_t *st = rp_batch_status(b);
        int64_t wrong = 0;
        for (int64_t i = 0; i < n; i++)
            wrong += st[i] != RP_STATUS_NOT_RUN;
        CHECK_EQ(wrong, 0);
        rp_batch_release(b);
    }
    atomic_store(&g.open, 1);
    CHECK_EQ(rp_pool_join(p, -1), RP_OK);
    CHECK_EQ(atomic_load(&g.runs), 1);
    rp_pool_release(p);
}

/* The owner lets go while runners are still at work (or still queued): the
 * runners finish the items and the last one frees the batch (ASan: no leak,
 * no use after free). */
static void
test_batch_release_before_done(void)
{
    int64_t n = rp_test_scaled(2000, 200);
    _Atomic int *cnt = calloc((size_t)n, sizeof *cnt);
    void **args = calloc((size_t)n, sizeof *args);
    if (!CHECK(cnt && args))
        return;
    for (int64_t i = 0; i < n; i++)
        args[i] = (void *)&cnt[i];
    for (int round = 0; round < 3; round++) {
        for (int64_t i = 0; i < n; i++)
            atomic_store(&cnt[i], 0);
        rp_pool *p = make_pool(0, 2, 0);
        if (!p)
            break;
        rp_batch *b = NULL;
        if (CHECK_EQ(rp_batch_submit(p, fn_slow_count, args, 0, 0, n, 0, 4, &b), RP_OK)) {
            if (round == 1)
                rp_batch_cancel(b); /* cancel, then let go at once */
            rp_batch_release(b);
        }
        close_pool(p); /* drains: every runner has been handed back */
        int64_t sum = 0, dup = 0;
        for (int64_t i = 0; i < n; i++) {
            sum += atomic_load(&cnt[i]);
            dup += atomic_load(&cnt[i]) > 1;
        }
        CHECK_EQ(dup, 0);
        if (round != 1)
            CHECK_EQ(sum, n);
    }
    /* And with the pool discarding the queued runners after the release. */
    {
        rp_pool *p = make_pool(1, 1, 0);
        gate_task g;
        memset(&g, 0, sizeof g);
        g.base.ops = &gate_ops;
        if (p && CHECK_EQ(rp_pool_submit(p, &g.base), RP_OK)) {
            CHECK_WAIT(atomic_load(&g.entered), WAIT_MS);
            rp_batch *b = NULL;
            if (CHECK_EQ(rp_batch_submit(p, fn_ret, NULL, 0, 1, 100, 4, 1, &b), RP_OK))
                rp_batch_release(b);
            CHECK_EQ(rp_pool_shutdown(p, RP_SHUTDOWN_DISCARD), RP_OK);
            atomic_store(&g.open, 1);
            CHECK_EQ(rp_pool_join(p, -1), RP_OK);
            rp_pool_release(p);
        }
    }
    free(cnt);
    free(args);
}

/* A bounded queue with room for one task: one runner gets in, the others
 * are refused, and the batch still completes with that one. A full queue
 * refuses the whole batch with RP_EFULL. */
static void
test_batch_bounded_pool(void)
{
    rp_pool *p = make_pool(1, 1, 1);
    if (!p)
        return;
    int64_t n = rp_test_scaled(20000, 1000);
    rp_batch *b = NULL;
    if (CHECK_EQ(rp_batch_submit(p, fn_ret, NULL, 0, 0, n, 4, 16, &b), RP_OK)) {
        CHECK_EQ(rp_batch_wait(b, -1), RP_OK);
        CHECK_EQ(rp_batch_not_run(b), 0);
        CHECK_EQ(rp_batch_failed(b), 0);
        rp_batch_release(b);
    }
    /* Fill the queue: a gate task running, another queued. */
    gate_task g1, g2;
    memset(&g1, 0, sizeof g1);
    memset(&g2, 0, sizeof g2);
    g1.base.ops = g2.base.ops = &gate_ops;
    CHECK_EQ(rp_pool_submit(p, &g1.base), RP_OK);
    CHECK_WAIT(atomic_load(&g1.entered), WAIT_MS);
    CHECK_EQ(rp_pool_submit(p, &g2.base), RP_OK);
    b = NULL;
    CHECK_EQ(rp_batch_submit(p, fn_ret, NULL, 0, 0, 10, 0, 0, &b), RP_EFULL);
    CHECK(b == NULL);
    atomic_store(&g1.open, 1);
    atomic_store(&g2.open, 1);
    close_pool(p);
}

/* ------------------------------------------------------------------------ */
/* parallel_for                                                             */
/* ------------------------------------------------------------------------ */

typedef struct mark_arg {
    _Atomic int *counts;
    int64_t n;
    _Atomic int bad;       /* a chunk out of range, or empty */
    _Atomic int64_t calls; /* kernel calls */
    _Atomic int caller_chunks;
} mark_arg;

static int
k_mark(int64_t b, int64_t e, void *arg, rp_task_ctx *ctx)
{
    mark_arg *m = arg;
    note_worker(ctx);
    atomic_fetch_add(&m->calls, 1);
    if (b < 0 || e > m->n || b >= e)
        atomic_store(&m->bad, 1);
    if (ctx->worker == -1)
        atomic_store(&m->caller_chunks, 1);
    for (int64_t i = b; i < e && i < m->n && i >= 0; i++)
        atomic_fetch_add_explicit(&m->counts[i], 1, memory_order_relaxed);
    return 0;
}

static int64_t
check_marks(mark_arg *m)
{
    int64_t wrong = 0;
    for (int64_t i = 0; i < m->n; i++)
        wrong += atomic_load_explicit(&m->counts[i], memory_order_relaxed) != 1;
    return wrong;
}

static void
test_pfor_covers_each_index_once(void)
{
    int64_t big = rp_test_scaled(1000003, 10001) | 1;
    int64_t ns[] = {0, 1, 2, 7, big};
    unsigned mws[] = {1, 2, 4};
    _Atomic int *counts = calloc((size_t)big, sizeof *counts);
    if (!CHECK(counts))
        return;
    atomic_store(&bad_worker, 0);
    for (size_t w = 0; w < 3; w++) {
        rp_pool *p = make_pool(0, mws[w], 0);
        if (!p)
            break;
        for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
            int64_t n = ns[i];
            int64_t grains[] = {0, 1, 3, 64, 4096, n + 5};
            for (size_t g = 0; g < sizeof grains / sizeof grains[0]; g++) {
                if (grains[g] == 1 && n > 10000)
                    continue; /* a million one-index chunks: slow under TSan, nothing new */
                mark_arg m;
                memset(&m, 0, sizeof m);
                m.counts = counts;
                m.n = n;
                memset(counts, 0, (size_t)big * sizeof *counts);
                int code = -1;
                CHECK_EQ(rp_parallel_for(p, n, grains[g], k_mark, &m, &code), RP_OK);
                CHECK_EQ(code, 0);
                CHECK_EQ(atomic_load(&m.bad), 0);
                if (!CHECK_EQ(check_marks(&m), 0))
                    FAILF("n=%lld grain=%lld max_workers=%u", (long long)n,
                          (long long)grains[g], mws[w]);
                if (n == 0)
                    CHECK_EQ(atomic_load(&m.calls), 0);
            }
        }
        close_pool(p);
    }
    CHECK_EQ(atomic_load(&bad_worker), 0);
    free(counts);
}

static int
k_count(int64_t b, int64_t e, void *arg, rp_task_ctx *ctx)
{
    (void)ctx;
    if (b >= e)
        return 1;
    atomic_fetch_add((_Atomic int64_t *)arg, e - b);
    return 0;
}

/* n near 2^62 and INT64_MAX: chunk arithmetic must not overflow. */
static void
test_pfor_huge_n(void)
{
    rp_pool *p = make_pool(0, 4, 0);
    if (!p)
        return;
    struct {
        int64_t n, grain;
    } cases[] = {
        {((int64_t)1 << 62) + 3, 0},
        {INT64_MAX, 0},
        {INT64_MAX, INT64_MAX / 7},
        {INT64_MAX - 1, INT64_MAX},
        {((int64_t)1 << 62) + 1, ((int64_t)1 << 60) + 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        _Atomic int64_t total = 0;
        int code = -1;
        CHECK_EQ(rp_parallel_for(p, cases[i].n, cases[i].grain, k_count, (void *)&total, &code),
                 RP_OK);
        CHECK_EQ(code, 0);
        CHECK_EQ(atomic_load(&total), cases[i].n);
    }
    CHECK_EQ(rp_parallel_for(p, -1, 0, k_count, NULL, NULL), RP_EINVAL);
    CHECK_EQ(rp_parallel_for(p, 10, 0, NULL, NULL, NULL), RP_EINVAL);
    close_pool(p);
}

typedef struct fail_arg {
    int64_t fail_at;
    _Atomic int waiting; /* chunks inside k_fail_or_wait's wait */
    _Atomic int64_t chunks_run;
    _Atomic int saw_cancel;
} fail_arg;

static int
k_fail(int64_t b, int64_t e, void *arg, rp_task_ctx *ctx)
{
    fail_arg *f = arg;
    atomic_fetch_add(&f->chunks_run, 1);
    if (f->fail_at >= b && f->fail_at < e)
        return 42;
    if (RP_CANCELLED(ctx))
        atomic_store(&f->saw_cancel, 1);
    return 0;
}

static void
test_pfor_first_error_cancels_rest(void)
{
    unsigned mws[] = {1, 2, 4};
    int64_t n = rp_test_scaled(200000, 20000);
    for (size_t w = 0; w < 3; w++) {
        rp_pool *p = make_pool(0, mws[w], 0);
        if (!p)
            return;
        /* Fails in the first chunk: almost every other chunk is skipped. */
        fail_arg f;
        memset(&f, 0, sizeof f);
        f.fail_at = 0;
        int code = 0;
        CHECK_EQ(rp_parallel_for(p, n, 1, k_fail, &f, &code), RP_OK);
        CHECK_EQ(code, 42);
        CHECK_LT(atomic_load(&f.chunks_run), n / 2);
        /* Fails in the last chunk: every chunk ran, the code is still reported. */
        memset(&f, 0, sizeof f);
        f.fail_at = n - 1;
        code = 0;
        CHECK_EQ(rp_parallel_for(p, n, 100, k_fail, &f, &code), RP_OK);
        CHECK_EQ(code, 42);
        CHECK_LE(atomic_load(&f.chunks_run), (n + 99) / 100);
        close_pool(p);
    }
}

/* A long chunk that polls RP_CANCELLED sees another chunk's failure. */
static int
k_fail_or_wait(int64_t b, int64_t e, void *arg, rp_task_ctx *ctx)
{
    fail_arg *f = arg;
    (void)e;
    int ok;
    if (b == f->fail_at) {
        /* Fail only once the two other chunks are running: each of the
         * three participants (caller, two helpers) holds one chunk. */
        WAIT_UNTIL(ok, atomic_load(&f->waiting) == 2, WAIT_MS);
        CHECK(ok);
        return 9;
    }
    atomic_fetch_add(&f->waiting, 1);
    WAIT_UNTIL(ok, RP_CANCELLED(ctx), WAIT_MS);
    if (ok)
        atomic_store(&f->saw_cancel, 1);
    return 0;
}

static void
test_pfor_cancel_flag_reaches_running_chunks(void)
{
    rp_pool *p = make_pool(2, 2, 0);
    if (!p)
        return;
    fail_arg f;
    memset(&f, 0, sizeof f);
    f.fail_at = 0;
    int code = 0;
    /* Three chunks: the caller and two workers each run one at once. */
    CHECK_EQ(rp_parallel_for(p, 3, 1, k_fail_or_wait, &f, &code), RP_OK);
    CHECK_EQ(code, 9);
    CHECK_EQ(atomic_load(&f.saw_cancel), 1);
    close_pool(p);
}

/* Nested: a kernel on one of the pool's workers calls parallel_for on the
 * same pool: it must run inline (worker -1) and complete. */
typedef struct nest_arg {
    rp_pool *pool;
    int64_t inner_n;
    _Atomic int64_t inner_total;
    _Atomic int inline_ok, inline_bad, rc_bad;
} nest_arg;

/* Set by k_outer around its inner calls when it runs on a worker: the inner
 * call is then inline, on this same thread. */
static RP_THREAD_LOCAL int outer_on_worker;

static int
k_inner(int64_t b, int64_t e, void *arg, rp_task_ctx *ctx)
{
    nest_arg *a = arg;
    atomic_fetch_add(&a->inner_total, e - b);
    /* Inline: every chunk on the calling thread, which reports worker -1. */
    if (outer_on_worker) {
        if (ctx->worker == -1)
            atomic_fetch_add(&a->inline_ok, 1);
        else
            atomic_fetch_add(&a->inline_bad, 1);
    }
    return 0;
}

static int
k_outer(int64_t b, int64_t e, void *arg, rp_task_ctx *ctx)
{
    nest_arg *a = arg;
    (void)ctx;
    for (int64_t i = b; i < e; i++) {
        int code = -1;
        outer_on_worker = rp_worker_current() != NULL;
        if (rp_parallel_for(a->pool, a->inner_n, 3, k_inner, a, &code) != RP_OK || code != 0)
            atomic_store(&a->rc_bad, 1);
        outer_on_worker = 0;
    }
    return 0;
}

static int
fn_nested(void *arg, rp_task_ctx *ctx)
{
    return k_outer(0, 1, arg, ctx);
}

static void
test_pfor_nested_runs_inline(void)
{
    rp_pool *p = make_pool(0, 2, 0);
    if (!p)
        return;
    nest_arg a;
    memset(&a, 0, sizeof a);
    a.pool = p;
    a.inner_n = 50;
    int64_t outer = 40;
    int code = -1;
    CHECK_EQ(rp_parallel_for(p, outer, 1, k_outer, &a, &code), RP_OK);
    CHECK_EQ(code, 0);
    CHECK_EQ(atomic_load(&a.inner_total), outer * a.inner_n);
    CHECK_EQ(atomic_load(&a.rc_bad), 0);
    CHECK_EQ(atomic_load(&a.inline_bad), 0);

    /* From batch items (always on workers): every inner call is inline. */
    memset(&a, 0, sizeof a);
    a.pool = p;
    a.inner_n = 30;
    void *args[16];
    for (int i = 0; i < 16; i++)
        args[i] = &a;
    rp_batch *b = NULL;
    if (CHECK_EQ(rp_batch_submit(p, fn_nested, args, 0, 0, 16, 0, 1, &b), RP_OK)) {
        CHECK_EQ(rp_batch_wait(b, -1), RP_OK);
        CHECK_EQ(rp_batch_failed(b), 0);
        rp_batch_release(b);
    }
    CHECK_EQ(atomic_load(&a.inner_total), 16 * 30);
    CHECK_EQ(atomic_load(&a.inline_bad), 0);
    CHECK_EQ(atomic_load(&a.inline_ok), 16 * 10); /* 30 / grain 3 chunks per call */
    CHECK_EQ(atomic_load(&a.rc_bad), 0);
    close_pool(p);
}

/* Many threads calling parallel_for on one pool at once. */
typedef struct caller_arg {
    rp_pool *pool;
    int rounds;
    int64_t n;
    _Atomic int64_t bad;
} caller_arg;

static void *
caller_main(void *arg)
{
    caller_arg *c = arg;
    _Atomic int *counts = calloc((size_t)c->n, sizeof *counts);
    if (!counts) {
        atomic_fetch_add(&c->bad, 1);
        return NULL;
    }
    for (int r = 0; r < c->rounds; r++) {
        mark_arg m;
        memset(&m, 0, sizeof m);
        m.counts = counts;
        m.n = c->n - r; /* odd and even sizes */
        memset(counts, 0, (size_t)c->n * sizeof *counts);
        int code = -1;
        if (rp_parallel_for(c->pool, m.n, r % 3 == 0 ? 0 : 1 + r % 17, k_mark, &m, &code) !=
                RP_OK ||
            code != 0 || check_marks(&m) != 0 || atomic_load(&m.bad))
            atomic_fetch_add(&c->bad, 1);
    }
    free(counts);
    return NULL;
}

static void
run_concurrent_callers(rp_pool *p, int nthreads)
{
    caller_arg c;
    memset(&c, 0, sizeof c);
    c.pool = p;
    c.rounds = (int)rp_test_scaled(200, 10);
    c.n = 2001;
    pthread_t th[8];
    int started = 0;
    for (int i = 0; i < nthreads && i < 8; i++)
        if (CHECK_EQ(pthread_create(&th[i], NULL, caller_main, &c), 0))
            started++;
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ(atomic_load(&c.bad), 0);
}

static void
test_pfor_concurrent_callers(void)
{
    rp_pool *p = make_pool(0, 2, 0);
    if (!p)
        return;
    run_concurrent_callers(p, 6);
    close_pool(p);
}

/* queue_capacity 1: most helpers are refused; the callers do the rest. */
static void
test_pfor_bounded_pool(void)
{
    rp_pool *p = make_pool(0, 4, 1);
    if (!p)
        return;
    run_concurrent_callers(p, 4);
    close_pool(p);
}

/* A closed pool takes no helpers: the caller runs every chunk itself. */
static void
test_pfor_closed_pool_runs_on_caller(void)
{
    rp_pool *p = make_pool(0, 2, 0);
    if (!p)
        return;
    CHECK_EQ(rp_pool_shutdown(p, RP_SHUTDOWN_DRAIN), RP_OK);
    int64_t n = 1001;
    _Atomic int *counts = calloc((size_t)n, sizeof *counts);
    mark_arg m;
    memset(&m, 0, sizeof m);
    m.counts = counts;
    m.n = n;
    int code = -1;
    if (CHECK(counts)) {
        CHECK_EQ(rp_parallel_for(p, n, 10, k_mark, &m, &code), RP_OK);
        CHECK_EQ(code, 0);
        CHECK_EQ(check_marks(&m), 0);
        CHECK_EQ(atomic_load(&m.caller_chunks), 1);
    }
    free(counts);
    CHECK_EQ(rp_pool_join(p, -1), RP_OK);
    rp_pool_release(p);
}

int
main(int argc, char **argv)
{
    rp_test_init(argc, argv);
    RUN_TEST(test_batch_every_item_once);
    RUN_TEST(test_batch_bad_args_and_closed_pool);
    RUN_TEST(test_batch_wait_times_out);
    RUN_TEST(test_batch_cancel_mid_batch);
    RUN_TEST(test_batch_discarding_shutdown);
    RUN_TEST(test_batch_release_before_done);
    RUN_TEST(test_batch_bounded_pool);
    RUN_TEST(test_pfor_covers_each_index_once);
    RUN_TEST(test_pfor_huge_n);
    RUN_TEST(test_pfor_first_error_cancels_rest);
    RUN_TEST(test_pfor_cancel_flag_reaches_running_chunks);
    RUN_TEST(test_pfor_nested_runs_inline);
    RUN_TEST(test_pfor_concurrent_callers);
    RUN_TEST(test_pfor_bounded_pool);
    RUN_TEST(test_pfor_closed_pool_runs_on_caller);
    return rp_test_summary();
}
