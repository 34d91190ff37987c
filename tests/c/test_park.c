/* test_park.c - the parking lot (rp_park.h): semantics and a lost-wake-up hunt.
 *
 * The hunts sleep with NO deadline (-1): a lost wake-up leaves a sleeper
 * asleep while its condition holds. The waker notices (the posted work is not
 * consumed within seconds) and fails the test naming the round; if even that
 * does not return, the watchdog turns the hang into a failure.
 *
 * The waker follows the header's protocol: publish with a seq_cst RMW, then
 * rp_park_notify_*; ready() reads the condition with seq_cst loads.
 */
#include "rp_test.h" /* first: feature macros */

#include "rp_park.h"

#define MAX_SLEEPERS 8
#define LOST_WAKEUP_MS 10000 /* posted work not taken in 10 s: a sleeper missed it */

/* ---- simple semantics ------------------------------------------------------- */

typedef struct flag_ctx {
    rp_park *park;
    _Atomic int flag;
    _Atomic int ready_calls;
    _Atomic int ready_saw_unlocked; /* ready() found the lot's mutex free */
    _Atomic int ready_saw_no_sleeper;
} flag_ctx;

static int flag_ready(void *arg) {
    flag_ctx *c = arg;
    atomic_fetch_add(&c->ready_calls, 1);
    /* Contract: called with the lot's mutex held, after sleepers++. */
    if (rp_mutex_trylock(&c->park->mutex)) { /* rp_sys.h: portable trylock */
        atomic_fetch_add(&c->ready_saw_unlocked, 1);
        rp_mutex_unlock(&c->park->mutex);
    }
    if (rp_park_sleepers(c->park) == 0)
        atomic_fetch_add(&c->ready_saw_no_sleeper, 1);
    return atomic_load(&c->flag) != 0;
}

static void test_init_destroy_and_idle_notify(void) {
    rp_park p;
    if (!CHECK_EQ(rp_park_init(&p), RP_OK))
        return;
    CHECK_EQ(rp_park_sleepers(&p), 0);
    /* Notifying an empty lot is a no-op. */
    for (int i = 0; i < 100; i++) {
        rp_park_notify_one(&p);
        rp_park_notify_all(&p);
    }
    CHECK_EQ(rp_park_sleepers(&p), 0);
    rp_park_destroy(&p);
}

static void test_ready_true_returns_at_once(void) {
    rp_park p;
    if (!CHECK_EQ(rp_park_init(&p), RP_OK))
        return;
    flag_ctx c = {.park = &p};
    atomic_store(&c.flag, 1);
    int64_t t0 = rp_test_now_ns();
    /* No deadline: a sleep that ignored ready() would hang (watchdog). */
    CHECK_EQ(rp_park_sleep(&p, flag_ready, &c, -1), RP_OK);
    /* A deadline, but ready holds: RP_OK at once, not a wait. */
    CHECK_EQ(rp_park_sleep(&p, flag_ready, &c, rp_test_now_ns() + 1000000000LL), RP_OK);
    CHECK_LT(rp_test_now_ns() - t0, 500000000LL);
    CHECK_GE(atomic_load(&c.ready_calls), 2);
    CHECK_EQ(atomic_load(&c.ready_saw_unlocked), 0);
    CHECK_EQ(atomic_load(&c.ready_saw_no_sleeper), 0);
    CHECK_EQ(rp_park_sleepers(&p), 0);
    rp_park_destroy(&p);
}

static void test_timed_sleep_times_out(void) {
    rp_park p;
    if (!CHECK_EQ(rp_park_init(&p), RP_OK))
        return;
    flag_ctx c = {.park = &p};
    static const int64_t waits_ms[] = {1, 20, 50};
    for (size_t k = 0; k < sizeof waits_ms / sizeof waits_ms[0]; k++) {
        int64_t t0 = rp_test_now_ns();
        int64_t deadline = t0 + waits_ms[k] * 1000000;
        int rc, spurious = 0;
        /* RP_OK before the deadline is a (permitted) spurious wake-up. */
        while ((rc = rp_park_sleep(&p, flag_ready, &c, deadline)) == RP_OK &&
               spurious < 1000)
            spurious++;
        int64_t elapsed = rp_test_now_ns() - t0;
        CHECK_EQ(rc, RP_ETIMEDOUT);
        /* Never early (1 ms slack for clock granularity), never wildly late. */
        if (!CHECK_GE(elapsed, (waits_ms[k] - 1) * 1000000))
            fprintf(stderr, "  wait %lld ms returned after %.3f ms\n", (long long)waits_ms[k],
                    (double)elapsed / 1e6);
        CHECK_LT(elapsed, waits_ms[k] * 1000000 + 2000000000LL);
        CHECK_EQ(rp_park_sleepers(&p), 0);
    }
    /* Deadlines in the past time out promptly. */
    int64_t t0 = rp_test_now_ns();
    CHECK_EQ(rp_park_sleep(&p, flag_ready, &c, 0), RP_ETIMEDOUT);
    CHECK_EQ(rp_park_sleep(&p, flag_ready, &c, t0 - 1000000), RP_ETIMEDOUT);
    CHECK_LT(rp_test_now_ns() - t0, 1000000000LL);
    CHECK_EQ(rp_park_sleepers(&p), 0);
    CHECK_EQ(atomic_load(&c.ready_saw_unlocked), 0);
    rp_park_destroy(&p);
}

typedef struct sleeper_arg {
    flag_ctx *c;
    int64_t deadline;
    _Atomic int rc;
    _Atomic int done;
    int64_t elapsed_ns;
} sleeper_arg;

static void *flag_sleeper(void *arg) {
    sleeper_arg *a = arg;
    int64_t t0 = rp_test_now_ns();
    int rc;
    /* Re-check after each return, as callers must: wake-ups may be spurious. */
    do {
        rc = rp_park_sleep(a->c->park, flag_ready, a->c, a->deadline);
    } while (rc == RP_OK && !atomic_load(&a->c->flag));
    a->elapsed_ns = rp_test_now_ns() - t0;
    atomic_store(&a->rc, rc);
    atomic_store(&a->done, 1);
    return NULL;
}

static void test_notify_wakes_timed_sleeper_early(void) {
    rp_park p;
    if (!CHECK_EQ(rp_park_init(&p), RP_OK))
        return;
    flag_ctx c = {.park = &p};
    sleeper_arg a = {.c = &c, .deadline = rp_test_now_ns() + 30000000000LL};
    atomic_store(&a.rc, 99);
    pthread_t t;
    if (!rp_test_thread_start(&t, flag_sleeper, &a)) {
        rp_park_destroy(&p);
        return;
    }
    CHECK_WAIT(rp_park_sleepers(&p) == 1, 5000);
    rp_test_sleep_ms(5);
    CHECK_EQ(atomic_load(&a.done), 0);
    atomic_fetch_add(&c.flag, 1); /* publish (seq_cst RMW), then notify */
    rp_park_notify_one(&p);
    pthread_join(t, NULL);
    CHECK_EQ(atomic_load(&a.rc), RP_OK);
    CHECK_LT(a.elapsed_ns, 20000000000LL);
    CHECK_EQ(rp_park_sleepers(&p), 0);
    CHECK_EQ(atomic_load(&c.ready_saw_unlocked), 0);
    CHECK_EQ(atomic_load(&c.ready_saw_no_sleeper), 0);
    rp_park_destroy(&p);
}

static void test_sleepers_count_and_notify_all(void) {
    enum { N = 4 };
    rp_park p;
    if (!CHECK_EQ(rp_park_init(&p), RP_OK))
        return;
    flag_ctx c = {.park = &p};
    sleeper_arg a[N];
    pthread_t t[N];
    int started = 0;
    for (int i = 0; i < N; i++) {
        a[i] = (sleeper_arg){.c = &c, .deadline = -1};
        atomic_store(&a[i].rc, 99);
        if (rp_test_thread_start(&t[i], flag_sleeper, &a[i]))
            started++;
        else
            break;
    }
    CHECK_WAIT(rp_park_sleepers(&p) == (unsigned)started, 5000);
    /* Nothing has woken them yet. */
    rp_test_sleep_ms(10);
    for (int i = 0; i < started; i++)
        CHECK_EQ(atomic_load(&a[i].done), 0);
    CHECK_EQ(rp_park_sleepers(&p), (unsigned)started);
    atomic_fetch_add(&c.flag, 1);
    rp_park_notify_all(&p);
    for (int i = 0; i < started; i++) {
        pthread_join(t[i], NULL);
        CHECK_EQ(atomic_load(&a[i].rc), RP_OK);
    }
    CHECK_EQ(rp_park_sleepers(&p), 0);
    CHECK_EQ(atomic_load(&c.ready_saw_unlocked), 0);
    rp_park_destroy(&p);
}

/* ---- lost-wake-up hunt with notify_one: a token pool -------------------------- */

typedef struct token_ctx {
    rp_park park;
    _Atomic uint64_t tokens;   /* posted, not yet taken */
    _Atomic uint64_t consumed; /* taken */
    _Atomic int stop;
    unsigned nsleepers;
    int64_t timed_max_ns; /* > 0: sleepers use random deadlines up to this */
    _Atomic long bad_rc;
} token_ctx;

static int tokens_ready(void *arg) {
    token_ctx *c = arg;
    return atomic_load(&c->tokens) > 0 || atomic_load(&c->stop);
}

typedef struct token_sleeper {
    token_ctx *c;
    unsigned id;
    uint64_t taken;
    uint64_t sleeps, timeouts;
} token_sleeper;

static void *token_sleeper_main(void *arg) {
    token_sleeper *s = arg;
    token_ctx *c = s->c;
    uint64_t rng = 0x1234567ULL + s->id * 0x9E3779B9ULL;
    for (;;) {
        /* Take every available token before considering sleep. */
        uint64_t t = atomic_load(&c->tokens);
        while (t > 0) {
            if (atomic_compare_exchange_weak(&c->tokens, &t, t - 1)) {
                s->taken++;
                atomic_fetch_add(&c->consumed, 1);
                t = atomic_load(&c->tokens);
            }
        }
        if (atomic_load(&c->stop))
            break;
        int64_t deadline = -1;
        if (c->timed_max_ns > 0 && (s->id & 1))
            deadline = rp_test_now_ns() + (int64_t)(rp_test_rand(&rng) % (uint64_t)c->timed_max_ns);
        s->sleeps++;
        int rc = rp_park_sleep(&c->park, tokens_ready, c, deadline);
        if (rc == RP_ETIMEDOUT) {
            s->timeouts++;
            if (deadline < 0 && atomic_fetch_add(&c->bad_rc, 1) < 5)
                FAILF("sleeper %u: RP_ETIMEDOUT without a deadline", s->id);
        } else if (rc != RP_OK) {
            if (atomic_fetch_add(&c->bad_rc, 1) < 5)
                FAILF("sleeper %u: rp_park_sleep returned %d", s->id, rc);
        }
    }
    return NULL;
}

static void token_hunt(unsigned nsleepers, long rounds, int64_t timed_max_ns) {
    token_ctx *c = RP_TEST_NEW(token_ctx);
    if (!CHECK(c != NULL))
        return;
    if (!CHECK_EQ(rp_park_init(&c->park), RP_OK)) {
        rp_test_free(c); /* RP_TEST_NEW */
        return;
    }
    c->nsleepers = nsleepers;
    c->timed_max_ns = timed_max_ns;
    pthread_t th[MAX_SLEEPERS];
    token_sleeper sl[MAX_SLEEPERS];
    unsigned started = 0;
    for (unsigned i = 0; i < nsleepers; i++) {
        sl[i] = (token_sleeper){.c = c, .id = i};
        if (!rp_test_thread_start(&th[i], token_sleeper_main, &sl[i]))
            break;
        started++;
    }
    uint64_t posted = 0, rng = 42;
    long lost_at = -1, waited_all_asleep = 0;
    int64_t t0 = rp_test_now_ns();
    for (long round = 0; round < rounds && started == nsleepers; round++) {
        uint64_t r = rp_test_rand(&rng);
        unsigned mode = (unsigned)(r % 8);
        uint64_t k = 1;
        if (mode == 0 && timed_max_ns == 0) {
            /* Every sleeper is inside rp_park_sleep: the wake-up is needed. */
            int ok;
            WAIT_UNTIL(ok, rp_park_sleepers(&c->park) == nsleepers, 5000);
            if (ok)
                waited_all_asleep++;
        } else if (mode <= 3) {
            /* Race the sleepers on their way to sleep. */
            unsigned spins = (unsigned)((r >> 8) % 256);
            for (volatile unsigned i = 0; i < spins; i++) {
            }
        } else if (mode == 4) {
            rp_test_sleep_us((int64_t)((r >> 8) % 50));
        } else if (mode == 5) {
            k = 1 + (r >> 8) % nsleepers; /* a burst: one notify per token */
        } /* else: post at once */
        atomic_fetch_add(&c->tokens, k); /* publish: seq_cst RMW */
        for (uint64_t i = 0; i < k; i++)
            rp_park_notify_one(&c->park);
        posted += k;
        /* Wait (bounded) for the tokens to be taken. */
        int64_t dl = rp_test_now_ns() + (int64_t)LOST_WAKEUP_MS * 1000000;
        unsigned spins = 0;
        while (atomic_load(&c->consumed) != posted) {
            if ((++spins & 63) == 0 && rp_test_now_ns() > dl) {
                lost_at = round;
                break;
            }
            sched_yield();
        }
        if (lost_at >= 0) {
            FAILF("lost wake-up at round %ld: %llu token(s) posted and not taken for %d ms; "
                  "sleepers=%u tokens=%llu",
                  round, (unsigned long long)(posted - atomic_load(&c->consumed)),
                  LOST_WAKEUP_MS, rp_park_sleepers(&c->park),
                  (unsigned long long)atomic_load(&c->tokens));
            break;
        }
    }
    double secs = (double)(rp_test_now_ns() - t0) / 1e9;
    atomic_store(&c->stop, 1);
    rp_park_notify_all(&c->park);
    uint64_t taken = 0, sleeps = 0, timeouts = 0;
    for (unsigned i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
        taken += sl[i].taken;
        sleeps += sl[i].sleeps;
        timeouts += sl[i].timeouts;
    }
    CHECK_EQ(started, nsleepers);
    CHECK_EQ(lost_at, -1);
    CHECK_EQ(taken, posted);
    CHECK_EQ(atomic_load(&c->tokens), 0);
    CHECK_EQ(atomic_load(&c->bad_rc), 0);
    CHECK_EQ(rp_park_sleepers(&c->park), 0);
    printf("  %u sleepers, %ld rounds, %llu tokens, %llu sleeps (%llu timed out), "
           "%ld rounds with all asleep, %.2f s\n",
           nsleepers, rounds, (unsigned long long)posted, (unsigned long long)sleeps,
           (unsigned long long)timeouts, waited_all_asleep, secs);
    rp_park_destroy(&c->park);
    rp_test_free(c); /* RP_TEST_NEW */
}

static void test_hunt_notify_one_1_sleeper(void) { token_hunt(1, rp_test_scaled(20000, 500), 0); }
static void test_hunt_notify_one_2_sleepers(void) { token_hunt(2, rp_test_scaled(20000, 500), 0); }
static void test_hunt_notify_one_4_sleepers(void) { token_hunt(4, rp_test_scaled(20000, 500), 0); }

/* Timed and untimed sleepers mixed: timeouts must keep `sleepers` exact. */
static void test_hunt_mixed_timed_sleepers(void) {
    token_hunt(4, rp_test_scaled(10000, 300), 2000000 /* 2 ms */);
}

/* ---- lost-wake-up hunt with notify_all: generations -------------------------- */

typedef struct gen_ctx {
    rp_park park;
    _Atomic uint64_t gen;
    _Atomic uint64_t acks;
    _Atomic int stop;
    _Atomic long errors;
} gen_ctx;

typedef struct gen_sleeper {
    gen_ctx *c;
    uint64_t seen;
    unsigned id;
} gen_sleeper;

static int gen_ready(void *arg) {
    gen_sleeper *s = arg;
    return atomic_load(&s->c->gen) > s->seen || atomic_load(&s->c->stop);
}

static void *gen_sleeper_main(void *arg) {
    gen_sleeper *s = arg;
    gen_ctx *c = s->c;
    for (;;) {
        uint64_t g = atomic_load(&c->gen);
        if (g > s->seen) {
            if (g != s->seen + 1 && atomic_fetch_add(&c->errors, 1) < 5)
                FAILF("sleeper %u: generation jumped from %llu to %llu", s->id,
                      (unsigned long long)s->seen, (unsigned long long)g);
            s->seen = g;
            atomic_fetch_add(&c->acks, 1);
            continue;
        }
        if (atomic_load(&c->stop))
            break;
        int rc = rp_park_sleep(&c->park, gen_ready, s, -1);
        if (rc != RP_OK && atomic_fetch_add(&c->errors, 1) < 5)
            FAILF("sleeper %u: rp_park_sleep returned %d", s->id, rc);
    }
    return NULL;
}

static void test_hunt_notify_all(void) {
    enum { N = 4 };
    long rounds = rp_test_scaled(10000, 300);
    gen_ctx *c = RP_TEST_NEW(gen_ctx);
    if (!CHECK(c != NULL))
        return;
    if (!CHECK_EQ(rp_park_init(&c->park), RP_OK)) {
        rp_test_free(c); /* RP_TEST_NEW */
        return;
    }
    pthread_t th[N];
    gen_sleeper sl[N];
    unsigned started = 0;
    for (unsigned i = 0; i < N; i++) {
        sl[i] = (gen_sleeper){.c = c, .id = i};
        if (!rp_test_thread_start(&th[i], gen_sleeper_main, &sl[i]))
            break;
        started++;
    }
    uint64_t rng = 7;
    long lost_at = -1;
    int64_t t0 = rp_test_now_ns();
    for (long round = 1; round <= rounds && started == N; round++) {
        uint64_t r = rp_test_rand(&rng);
        if (r % 4 == 0) {
            int ok;
            WAIT_UNTIL(ok, rp_park_sleepers(&c->park) == N, 5000);
            (void)ok;
        } else if (r % 4 == 1) {
            for (volatile unsigned i = 0; i < (unsigned)((r >> 8) % 256); i++) {
            }
        }
        atomic_fetch_add(&c->gen, 1); /* publish: seq_cst RMW */
        rp_park_notify_all(&c->park);
        uint64_t want = (uint64_t)round * N;
        int64_t dl = rp_test_now_ns() + (int64_t)LOST_WAKEUP_MS * 1000000;
        unsigned spins = 0;
        while (atomic_load(&c->acks) != want) {
            if ((++spins & 63) == 0 && rp_test_now_ns() > dl) {
                lost_at = round;
                break;
            }
            sched_yield();
        }
        if (lost_at >= 0) {
            FAILF("lost wake-up (notify_all) at generation %ld: %llu of %d sleepers acked; "
                  "sleepers=%u",
                  round, (unsigned long long)(atomic_load(&c->acks) - (want - N)), N,
                  rp_park_sleepers(&c->park));
            break;
        }
    }
    double secs = (double)(rp_test_now_ns() - t0) / 1e9;
    atomic_store(&c->stop, 1);
    rp_park_notify_all(&c->park);
    for (unsigned i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ(started, N);
    CHECK_EQ(lost_at, -1);
    CHECK_EQ(atomic_load(&c->errors), 0);
    CHECK_EQ(rp_park_sleepers(&c->park), 0);
    printf("  %d sleepers, %ld generations, %.2f s\n", N, rounds, secs);
    rp_park_destroy(&c->park);
    rp_test_free(c); /* RP_TEST_NEW */
}

int main(int argc, char **argv) {
    rp_test_init(argc, argv);
    RUN_TEST(test_init_destroy_and_idle_notify);
    RUN_TEST(test_ready_true_returns_at_once);
    RUN_TEST(test_timed_sleep_times_out);
    RUN_TEST(test_notify_wakes_timed_sleeper_early);
    RUN_TEST(test_sleepers_count_and_notify_all);
    RUN_TEST(test_hunt_notify_one_1_sleeper);
    RUN_TEST(test_hunt_notify_one_2_sleepers);
    RUN_TEST(test_hunt_notify_one_4_sleepers);
    RUN_TEST(test_hunt_mixed_timed_sleepers);
    RUN_TEST(test_hunt_notify_all);
    return rp_test_summary();
}
