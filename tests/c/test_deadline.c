/* test_deadline.c - the engine's deadlines: the timer heap and its thread.
 *
 * Every armed task must end exactly once (run, or discard) AND see its timer
 * entry end exactly once (ops->timer, or rp_task_disarm returning 1 in run),
 * whatever races: expiry in the queue, overrun while running, cancel,
 * discarding shutdown. The counters must agree with what the tasks saw.
 */
#include "rp_test.h"

#include "rp_pool.h"
#include "rp_sys.h"

typedef struct dctx {
    _Atomic int gate_open;      /* blockers spin until it is set */
    _Atomic long runs, completed, overran_returned, discards[4], timer_events[3];
    _Atomic long starts_timer, stops_timer;
    int timer_start_delay_ms;   /* the timer thread dawdles before serving the heap */
} dctx;

typedef struct dtask {
    rp_task hdr;
    dctx *c;
    int64_t run_ns;             /* how long run spins (stops early when cancelled) */
    int blocker;                /* spin until the gate opens instead */
    int cooperative;            /* stop as soon as the cancel flag is set */
    _Atomic int runs, discards, timer_events, disarmed, saw_cancel;
    _Atomic int last_event;
} dtask;

static int d_run(rp_task *task, rp_worker *w) {
    (void)w;
    dtask *t = (dtask *)task;
    dctx *c = t->c;
    atomic_fetch_add(&t->runs, 1);
    atomic_fetch_add(&c->runs, 1);
    if (t->blocker) {
        while (!atomic_load(&c->gate_open))
            rp_test_sleep_us(100);
    } else if (t->run_ns > 0) {
        int64_t end = rp_now_ns() + t->run_ns;
        while (rp_now_ns() < end) {
            if (t->cooperative && rp_task_cancel_requested(task)) {
                atomic_store(&t->saw_cancel, 1);
                break;
            }
            rp_test_sleep_us(50);
        }
    }
    if (!rp_task_disarm(task)) {
        atomic_fetch_add(&c->overran_returned, 1);
        return RP_OUTCOME_OVERRAN;
    }
    if (t->hdr.deadline_ns > 0)
        atomic_fetch_add(&t->disarmed, 1);
    atomic_fetch_add(&c->completed, 1);
    return RP_OUTCOME_COMPLETED;
}

static void d_discard(rp_task *task, int reason) {
    dtask *t = (dtask *)task;
    atomic_fetch_add(&t->discards, 1);
    atomic_fetch_add(&t->c->discards[reason], 1);
}

static void d_timer(rp_task *task, int event) {
    dtask *t = (dtask *)task;
    atomic_fetch_add(&t->timer_events, 1);
    atomic_store(&t->last_event, event);
    atomic_fetch_add(&t->c->timer_events[event], 1);
}

static const rp_task_ops d_ops = {d_run, d_discard, d_timer, 0};

static int d_timer_start(void *ctx, void **local) {
    atomic_fetch_add(&((dctx *)ctx)->starts_timer, 1);
    if (((dctx *)ctx)->timer_start_delay_ms)
        rp_test_sleep_ms(((dctx *)ctx)->timer_start_delay_ms);
    *local = ctx;
    return 0;
}
static void d_timer_stop(void *ctx, void *local) {
    CHECK(ctx == local);
    atomic_fetch_add(&((dctx *)ctx)->stops_timer, 1);
}
static const rp_pool_hooks d_hooks = {NULL, NULL, NULL, NULL, d_timer_start, d_timer_stop, NULL};

static rp_pool *make_pool(dctx *c, unsigned workers, size_t capacity) {
    rp_pool_config cfg;
    rp_pool_config_init(&cfg);
    cfg.min_workers = workers;
    cfg.max_workers = workers;
    cfg.queue_capacity = capacity;
    cfg.hooks = &d_hooks;
    cfg.hooks_ctx = c;
    rp_pool *p = NULL;
    CHECK_EQ(rp_pool_create(&cfg, &p), RP_OK);
    return p;
}

static dtask *tasks_new(dctx *c, long n) {
    dtask *t = calloc((size_t)n, sizeof *t);
    for (long i = 0; i < n; i++) {
        t[i].hdr.ops = &d_ops;
        t[i].c = c;
    }
    return t;
}

/* Every task ended exactly once and its timer entry too. */
static void check_each_once(dtask *t, long n) {
    long bad = 0;
    for (long i = 0; i < n; i++) {
        int ended = atomic_load(&t[i].runs) + atomic_load(&t[i].discards);
        int entry = atomic_load(&t[i].timer_events) + atomic_load(&t[i].disarmed);
        if (ended != 1 || (t[i].hdr.deadline_ns > 0 && entry != 1) ||
            (t[i].hdr.deadline_ns <= 0 && entry != 0))
            bad++;
    }
    CHECK_EQ(bad, 0);
}

static void finish(rp_pool *p) {
    CHECK_EQ(rp_pool_shutdown(p, RP_SHUTDOWN_DRAIN), RP_OK);
    CHECK_EQ(rp_pool_join(p, -1), RP_OK);
    rp_pool_release(p);
}

static void test_queued_tasks_expire_at_their_deadline(void) {
    dctx c = {0};
    rp_pool *p = make_pool(&c, 1, 0);
    long n = 200;
    dtask *t = tasks_new(&c, n + 1);
    t[0].blocker = 1;
    CHECK_EQ(rp_pool_submit(p, &t[0].hdr), RP_OK);
    CHECK_WAIT(atomic_load(&c.runs) == 1, 5000);
    int64_t now = rp_now_ns();
    for (long i = 1; i <= n; i++) {
        t[i].hdr.deadline_ns = now + 5000000 + (i % 10) * 1000000; /* 5..14 ms */
        CHECK_EQ(rp_pool_submit(p, &t[i].hdr), RP_OK);
    }
    /* Expired while the only worker is still blocked: reported by the timer. */
    CHECK_WAIT(atomic_load(&c.timer_events[RP_TIMER_EXPIRED]) == n, 5000);
    CHECK_GE(rp_now_ns(), now + 5000000);
    rp_pool_stats s;
    rp_pool_stats_get(p, &s);
    CHECK_EQ(s.expired, (uint64_t)n);
    CHECK_EQ(s.queued, 0u); /* expired ones are not counted as queued */
    CHECK_EQ(s.running, 1u);
    atomic_store(&c.gate_open, 1);
    finish(p);
    CHECK_EQ(atomic_load(&c.runs), 1);
    CHECK_EQ(atomic_load(&c.discards[RP_DISCARD_EXPIRED]), n);
    check_each_once(t, n + 1);
    CHECK_EQ(rp_live_threads(), 0u); /* join waited for the timer thread too */
    CHECK_EQ(atomic_load(&c.starts_timer), atomic_load(&c.stops_timer));
    free(t);
}

static void test_running_task_overruns(void) {
    dctx c = {0};
    rp_pool *p = make_pool(&c, 2, 0);
    dtask *t = tasks_new(&c, 2);
    t[0].run_ns = (int64_t)5 * 1000000000; /* would run 5 s: stops on the flag */
    t[0].cooperative = 1;
    t[0].hdr.deadline_ns = rp_now_ns() + 20000000;
    t[1].run_ns = (int64_t)200 * 1000000; /* ignores the flag: returns after 200 ms */
    t[1].hdr.deadline_ns = rp_now_ns() + 20000000;
    CHECK_EQ(rp_pool_submit(p, &t[0].hdr), RP_OK);
    CHECK_EQ(rp_pool_submit(p, &t[1].hdr), RP_OK);
    CHECK_WAIT(atomic_load(&c.timer_events[RP_TIMER_OVERRUN]) == 2, 5000);
    rp_pool_stats s;
    rp_pool_stats_get(p, &s);
    CHECK_EQ(s.overran, 2u);
    CHECK_EQ(s.running, 0u); /* overrunning tasks stop counting as running */
    CHECK_WAIT(atomic_load(&c.overran_returned) == 2, 5000);
    CHECK_EQ(atomic_load(&t[0].saw_cancel), 1);
    rp_pool_stats_get(p, &s);
    CHECK_EQ(s.overrunning, 0u);
    CHECK_EQ(s.completed, 0u);
    CHECK_EQ(s.submitted, s.completed + s.failed + s.cancelled + s.expired + s.overran + s.queued +
                              s.running);
    finish(p);
    check_each_once(t, 2);
    free(t);
}

static void test_tasks_done_before_their_deadline_leave_no_entry(void) {
    dctx c = {0};
    rp_pool *p = make_pool(&c, 2, 0);
    long n = rp_test_scaled(20000, 500);
    dtask *t = tasks_new(&c, n);
    int64_t later = rp_now_ns() + (int64_t)60 * 1000000000;
    for (long i = 0; i < n; i++) {
        t[i].hdr.deadline_ns = later - i; /* descending: every insert is a new heap top */
        CHECK_EQ(rp_pool_submit(p, &t[i].hdr), RP_OK);
    }
    int64_t t0 = rp_now_ns();
    finish(p); /* must not wait for the far deadlines */
    CHECK_LT(rp_now_ns() - t0, (int64_t)30 * 1000000000);
    CHECK_EQ(atomic_load(&c.completed), n);
    long events = atomic_load(&c.timer_events[0]) + atomic_load(&c.timer_events[1]) +
                  atomic_load(&c.timer_events[2]);
    CHECK_EQ(events, 0);
    check_each_once(t, n);
    free(t);
}

static void test_staggered_mix_each_ends_once(void) {
    dctx c = {0};
    rp_pool *p = make_pool(&c, 2, 0);
    long n = rp_test_scaled(3000, 200);
    dtask *t = tasks_new(&c, n);
    uint64_t seed = 12345;
    int64_t now = rp_now_ns();
    for (long i = 0; i < n; i++) {
        seed = seed * 6364136223846793005u + 1442695040888963407u;
        t[i].run_ns = (int64_t)((seed >> 33) % 400) * 1000; /* 0..0.4 ms */
        t[i].cooperative = (int)((seed >> 20) & 1);
        if ((seed >> 40) % 4 != 0) /* a quarter without a deadline */
            t[i].hdr.deadline_ns = now + (int64_t)((seed >> 45) % 30000) * 1000; /* 0..30 ms */
        CHECK_EQ(rp_pool_submit(p, &t[i].hdr), RP_OK);
        if (i % 7 == 3)
            rp_task_cancel(&t[i].hdr);
    }
    CHECK_EQ(rp_pool_shutdown(p, RP_SHUTDOWN_DRAIN), RP_OK);
    CHECK_EQ(rp_pool_join(p, -1), RP_OK);
    rp_pool_stats s;
    rp_pool_stats_get(p, &s);
    CHECK_EQ(s.submitted, (uint64_t)n);
    CHECK_EQ(s.submitted, s.completed + s.cancelled + s.expired + s.overran);
    CHECK_EQ(s.completed, (uint64_t)atomic_load(&c.completed));
    CHECK_EQ(s.expired, (uint64_t)atomic_load(&c.timer_events[RP_TIMER_EXPIRED]));
    CHECK_EQ(s.overran, (uint64_t)atomic_load(&c.timer_events[RP_TIMER_OVERRUN]));
    CHECK_EQ(s.overrunning, 0u);
    rp_pool_release(p);
    check_each_once(t, n);
    free(t);
}

static void test_shutdown_discard_releases_every_entry(void) {
    dctx c = {0};
    rp_pool *p = make_pool(&c, 1, 0);
    long n = 500;
    dtask *t = tasks_new(&c, n + 1);
    t[0].blocker = 1;
    CHECK_EQ(rp_pool_submit(p, &t[0].hdr), RP_OK);
    CHECK_WAIT(atomic_load(&c.runs) == 1, 5000);
    int64_t now = rp_now_ns();
    for (long i = 1; i <= n; i++) {
        /* Half expire before the shutdown, half would expire long after. */
        t[i].hdr.deadline_ns = now + (i % 2 ? 1000000 : (int64_t)60 * 1000000000);
        CHECK_EQ(rp_pool_submit(p, &t[i].hdr), RP_OK);
    }
    CHECK_WAIT(atomic_load(&c.timer_events[RP_TIMER_EXPIRED]) == n / 2, 5000);
    CHECK_EQ(rp_pool_shutdown(p, RP_SHUTDOWN_DISCARD), RP_OK);
    atomic_store(&c.gate_open, 1);
    CHECK_EQ(rp_pool_join(p, -1), RP_OK);
    rp_pool_release(p);
    CHECK_EQ(atomic_load(&c.discards[RP_DISCARD_EXPIRED]), n / 2);
    CHECK_EQ(atomic_load(&c.discards[RP_DISCARD_SHUTDOWN]), n / 2);
    CHECK_EQ(atomic_load(&c.timer_events[RP_TIMER_RELEASE]), n / 2);
    check_each_once(t, n + 1);
    CHECK_EQ(rp_live_threads(), 0u);
    free(t);
}

static void test_cancel_races_the_timer(void) {
    for (int round = 0; round < rp_test_scaled(200, 10); round++) {
        dctx c = {0};
        rp_pool *p = make_pool(&c, 1, 0);
        dtask *t = tasks_new(&c, 2);
        t[0].blocker = 1;
        CHECK_EQ(rp_pool_submit(p, &t[0].hdr), RP_OK);
        t[1].hdr.deadline_ns = rp_now_ns() + 200000; /* 0.2 ms */
        CHECK_EQ(rp_pool_submit(p, &t[1].hdr), RP_OK);
        rp_test_sleep_us(round % 400);
        int won = rp_task_cancel(&t[1].hdr);
        atomic_store(&c.gate_open, 1);
        finish(p);
        check_each_once(t, 2);
        CHECK_EQ(atomic_load(&t[1].runs), 0);
        if (won)
            CHECK_EQ(atomic_load(&c.discards[RP_DISCARD_CANCELLED]), 1);
        else
            CHECK_EQ(atomic_load(&c.discards[RP_DISCARD_EXPIRED]), 1);
        free(t);
    }
}

static void test_timer_thread_leaves_when_idle_and_comes_back(void) {
    dctx c = {0};
    rp_pool *p = make_pool(&c, 1, 0);
    dtask *t = tasks_new(&c, 2);
    t[0].hdr.deadline_ns = rp_now_ns() + 1000000000;
    CHECK_EQ(rp_pool_submit(p, &t[0].hdr), RP_OK);
    CHECK_WAIT(atomic_load(&c.completed) == 1, 5000);
    CHECK_WAIT(atomic_load(&c.stops_timer) == 1, 5000); /* idle for a second: gone */
    CHECK_EQ(rp_live_threads(), 1u);                    /* the worker alone */
    t[1].hdr.deadline_ns = rp_now_ns() + 1000000; /* 1 ms: must still fire */
    t[1].run_ns = 100 * 1000000;
    t[1].cooperative = 1;
    CHECK_EQ(rp_pool_submit(p, &t[1].hdr), RP_OK);
    CHECK_WAIT(atomic_load(&c.overran_returned) == 1, 5000);
    CHECK_EQ(atomic_load(&c.starts_timer), 2);
    finish(p);
    check_each_once(t, 2);
    free(t);
}

/* The timer thread lags (here: slow to start): a worker that pops a task
 * past its deadline expires it itself instead of running it. */
static void test_worker_expires_a_late_task_when_the_timer_lags(void) {
    dctx c = {0};
    c.timer_start_delay_ms = 300;
    rp_pool *p = make_pool(&c, 1, 0);
    dtask *t = tasks_new(&c, 1);
    t[0].hdr.deadline_ns = rp_now_ns() - 1000000; /* already passed */
    CHECK_EQ(rp_pool_submit(p, &t[0].hdr), RP_OK);
    CHECK_WAIT(atomic_load(&t[0].discards) == 1, 5000);
    CHECK_EQ(atomic_load(&c.stops_timer), 0); /* still dawdling: the worker did it */
    CHECK_EQ(atomic_load(&t[0].runs), 0);
    CHECK_EQ(atomic_load(&c.timer_events[RP_TIMER_EXPIRED]), 1);
    CHECK_EQ(atomic_load(&c.discards[RP_DISCARD_EXPIRED]), 1);
    rp_pool_stats s;
    rp_pool_stats_get(p, &s);
    CHECK_EQ(s.expired, 1u);
    CHECK_EQ(s.started, 0u);
    CHECK_EQ(s.queued, 0u);
    finish(p);
    check_each_once(t, 1);
    free(t);
}

/* A task that returns after its deadline before the timer fired is an
 * overrun all the same: the clock decides, not the timer's latency. */
static void test_late_return_is_an_overrun_even_before_the_timer_fires(void) {
    dctx c = {0};
    c.timer_start_delay_ms = 300;
    rp_pool *p = make_pool(&c, 1, 0);
    dtask *t = tasks_new(&c, 1);
    t[0].run_ns = 30 * 1000000;
    t[0].hdr.deadline_ns = rp_now_ns() + 10 * 1000000;
    CHECK_EQ(rp_pool_submit(p, &t[0].hdr), RP_OK);
    CHECK_WAIT(atomic_load(&c.overran_returned) == 1, 5000);
    CHECK_EQ(atomic_load(&c.stops_timer), 0);
    CHECK_EQ(atomic_load(&c.timer_events[RP_TIMER_OVERRUN]), 1);
    CHECK_EQ(rp_task_cancel_requested(&t[0].hdr), 1);
    rp_pool_stats s;
    rp_pool_stats_get(p, &s);
    CHECK_EQ(s.overran, 1u);
    CHECK_EQ(s.completed, 0u);
    finish(p);
    check_each_once(t, 1);
    free(t);
}

int main(int argc, char **argv) {
    rp_test_init(argc, argv);
    RUN_TEST(test_queued_tasks_expire_at_their_deadline);
    RUN_TEST(test_running_task_overruns);
    RUN_TEST(test_tasks_done_before_their_deadline_leave_no_entry);
    RUN_TEST(test_staggered_mix_each_ends_once);
    RUN_TEST(test_shutdown_discard_releases_every_entry);
    RUN_TEST(test_cancel_races_the_timer);
    RUN_TEST(test_timer_thread_leaves_when_idle_and_comes_back);
    RUN_TEST(test_worker_expires_a_late_task_when_the_timer_lags);
    RUN_TEST(test_late_return_is_an_overrun_even_before_the_timer_fires);
    return rp_test_summary();
}
