/* stress_ring.c - MPMC validation of rp_ring (ck-style).
 *
 * P producers push tagged pointer values, C consumers pop them, through a
 * small ring so the full and empty paths are hit constantly. Checks:
 *  - exactly once: a per-item atomic byte is incremented on every pop; a
 *    second pop of one item fails at once (double pop), and a final scan finds
 *    items never popped (loss);
 *  - checksum: the sum of ids popped equals the sum pushed;
 *  - poison: each value encodes a tag, the producer and its sequence number,
 *    so a torn, stale or invented pointer fails decoding;
 *  - order: items of one producer reach any one consumer in push order;
 *  - the status codes: push returns only RP_OK/RP_EFULL, pop RP_OK/RP_EEMPTY.
 *
 * The default run moves >= 10 million items in the main phase; RP_TEST_SCALE
 * (e.g. 0.05 under sanitizers) scales every phase.
 */
#include "rp_test.h" /* first: feature macros */

#include "rp_ring.h"

#define MAX_THREADS 16
#define TAG_BITS 4
#define TAG 0xAu /* low nibble of every value: never NULL, never aligned garbage */
#define PROD_BITS 4

typedef struct phase {
    const char *name;
    size_t capacity;
    unsigned producers, consumers;
    size_t per_producer; /* items each producer pushes */
} phase;

typedef struct shared {
    rp_ring ring;
    const phase *ph;
    size_t total;
    _Atomic unsigned char *seen; /* per item: how many times popped */
    _Atomic size_t consumed;     /* items popped, flushed in batches */
    _Atomic unsigned producers_done;
    _Atomic uint64_t push_sum, pop_sum;
    _Atomic long double_pops, bad_values, order_errors, bad_status, lost_hint, stuck;
    _Atomic int go;
} shared;

typedef struct targ {
    shared *s;
    unsigned id;
} targ;

static inline uintptr_t encode(unsigned producer, size_t seq) {
    return ((uintptr_t)seq << (TAG_BITS + PROD_BITS)) | ((uintptr_t)producer << TAG_BITS) | TAG;
}

static inline size_t item_id(const shared *s, unsigned producer, size_t seq) {
    return (size_t)producer * s->ph->per_producer + seq;
}

static void spin_backoff(unsigned *fails) {
    /* Oversubscribed (8 threads, 2 cores): yield soon so the thread that must
     * make progress gets the core. */
    if (++*fails > 4)
        sched_yield();
}

static void *producer_main(void *arg) {
    targ *a = arg;
    shared *s = a->s;
    size_t n = s->ph->per_producer;
    uint64_t sum = 0;
    while (!atomic_load(&s->go))
        sched_yield();
    for (size_t seq = 0; seq < n; seq++) {
        void *v = (void *)encode(a->id, seq);
        unsigned fails = 0;
        int64_t full_since = 0;
        for (;;) {
            int rc = rp_ring_try_push(&s->ring, v);
            if (rc == RP_OK)
                break;
            if (rc != RP_EFULL) {
                if (atomic_fetch_add(&s->bad_status, 1) < 5)
                    FAILF("producer %u: try_push returned %d", a->id, rc);
                goto out;
            }
            spin_backoff(&fails);
            if ((fails & 1023) == 0) {
                /* Consumers stop only once every item is in, so a ring that
                 * stays full for seconds is stuck (corrupt indices). */
                int64_t now = rp_test_now_ns();
                if (full_since == 0) {
                    full_since = now;
                } else if (now - full_since > 5000000000LL) {
                    if (atomic_fetch_add(&s->stuck, 1) < 5)
                        FAILF("producer %u: ring full for 5 s at seq %zu (size %zu)", a->id,
                              seq, rp_ring_size(&s->ring));
                    goto out;
                }
            }
        }
        sum += item_id(s, a->id, seq);
    }
out:
    atomic_fetch_add(&s->push_sum, sum);
    atomic_fetch_add(&s->producers_done, 1);
    return NULL;
}

static void *consumer_main(void *arg) {
    targ *a = arg;
    shared *s = a->s;
    const phase *ph = s->ph;
    size_t last[MAX_THREADS]; /* last seq + 1 seen from each producer; 0: none */
    memset(last, 0, sizeof last);
    uint64_t sum = 0;
    size_t local = 0;
    int64_t stall_since = 0;
    size_t stall_mark = 0;
    unsigned fails = 0;
    while (!atomic_load(&s->go))
        sched_yield();
    for (;;) {
        void *out = NULL;
        int rc = rp_ring_try_pop(&s->ring, &out);
        if (rc == RP_OK) {
            fails = 0;
            stall_since = 0;
            uintptr_t v = (uintptr_t)out;
            unsigned p = (unsigned)((v >> TAG_BITS) & ((1u << PROD_BITS) - 1));
            size_t seq = (size_t)(v >> (TAG_BITS + PROD_BITS));
            if ((v & ((1u << TAG_BITS) - 1)) != TAG || p >= ph->producers ||
                seq >= ph->per_producer) {
                if (atomic_fetch_add(&s->bad_values, 1) < 5)
                    FAILF("consumer %u: popped a value no producer pushed: %p", a->id, out);
                continue;
            }
            size_t id = item_id(s, p, seq);
            unsigned char prev = atomic_fetch_add_explicit(&s->seen[id], 1, memory_order_relaxed);
            if (prev != 0) {
                if (atomic_fetch_add(&s->double_pops, 1) < 5)
                    FAILF("consumer %u: item %zu (producer %u seq %zu) popped %u times", a->id,
                          id, p, seq, (unsigned)prev + 1);
            }
            if (seq < last[p]) {
                if (atomic_fetch_add(&s->order_errors, 1) < 5)
                    FAILF("consumer %u: producer %u seq %zu came after seq %zu", a->id, p, seq,
                          last[p] - 1);
            } else {
                last[p] = seq + 1;
            }
            sum += id;
            if (++local == 4096) {
                atomic_fetch_add(&s->consumed, local);
                local = 0;
            }
            continue;
        }
        if (rc != RP_EEMPTY) {
            if (atomic_fetch_add(&s->bad_status, 1) < 5)
                FAILF("consumer %u: try_pop returned %d", a->id, rc);
            break;
        }
        /* Empty: publish progress, then decide whether everything is in. */
        if (local) {
            atomic_fetch_add(&s->consumed, local);
            local = 0;
        }
        size_t c = atomic_load(&s->consumed);
        if (c >= s->total)
            break;
        if (atomic_load(&s->producers_done) == ph->producers) {
            /* All pushes have returned; if nothing moves for 3 s, items are lost
             * (the ring claims empty while some were never popped). */
            int64_t now = rp_test_now_ns();
            if (stall_since == 0 || c != stall_mark) {
                stall_since = now;
                stall_mark = c;
            } else if (now - stall_since > 3000000000LL) {
                atomic_fetch_add(&s->lost_hint, 1);
                break;
            }
        }
        spin_backoff(&fails);
        if (fails > 64)
            rp_test_sleep_us(50);
    }
    if (local)
        atomic_fetch_add(&s->consumed, local);
    atomic_fetch_add(&s->pop_sum, sum);
    return NULL;
}

static void run_phase(const phase *ph) {
    shared *s = RP_TEST_NEW(shared);
    if (!CHECK(s != NULL))
        return;
    s->ph = ph;
    s->total = ph->per_producer * ph->producers;
    if (!CHECK(ph->producers <= (1u << PROD_BITS) && ph->producers + ph->consumers <= MAX_THREADS)) {
        rp_test_free(s); /* RP_TEST_NEW */
        return;
    }
    s->seen = calloc(s->total, sizeof *s->seen);
    if (!CHECK(s->seen != NULL)) {
        rp_test_free(s); /* RP_TEST_NEW */
        return;
    }
    if (!CHECK_EQ(rp_ring_init(&s->ring, ph->capacity), RP_OK)) {
        free(s->seen);
        rp_test_free(s); /* RP_TEST_NEW */
        return;
    }
    pthread_t th[MAX_THREADS];
    targ args[MAX_THREADS];
    unsigned started = 0;
    for (unsigned i = 0; i < ph->consumers; i++) {
        args[started] = (targ){s, i};
        if (rp_test_thread_start(&th[started], consumer_main, &args[started]))
            started++;
    }
    unsigned consumers_started = started;
    for (unsigned i = 0; i < ph->producers; i++) {
        args[started] = (targ){s, i};
        if (rp_test_thread_start(&th[started], producer_main, &args[started]))
            started++;
        else
            atomic_fetch_add(&s->producers_done, 1);
    }
    int64_t t0 = rp_test_now_ns();
    atomic_store(&s->go, 1);
    for (unsigned i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    double secs = (double)(rp_test_now_ns() - t0) / 1e9;

    if (consumers_started == ph->consumers && started == ph->producers + ph->consumers) {
        size_t lost = 0, multi = 0;
        for (size_t id = 0; id < s->total; id++) {
            unsigned char c = atomic_load_explicit(&s->seen[id], memory_order_relaxed);
            if (c == 0) {
                if (lost++ < 5)
                    FAILF("%s: item %zu (producer %zu seq %zu) was never popped", ph->name, id,
                          id / ph->per_producer, id % ph->per_producer);
            } else if (c > 1) {
                multi++;
            }
        }
        CHECK_EQ(lost, 0);
        CHECK_EQ(multi, 0);
        CHECK_EQ(atomic_load(&s->double_pops), 0);
        CHECK_EQ(atomic_load(&s->bad_values), 0);
        CHECK_EQ(atomic_load(&s->order_errors), 0);
        CHECK_EQ(atomic_load(&s->bad_status), 0);
        CHECK_EQ(atomic_load(&s->lost_hint), 0);
        CHECK_EQ(atomic_load(&s->stuck), 0);
        CHECK_EQ(atomic_load(&s->consumed), s->total);
        uint64_t expect = (uint64_t)s->total * (uint64_t)(s->total - 1) / 2;
        CHECK(atomic_load(&s->push_sum) == expect);
        CHECK(atomic_load(&s->pop_sum) == expect);
        /* Quiescent now: exactly empty. */
        void *out;
        CHECK_EQ(rp_ring_try_pop(&s->ring, &out), RP_EEMPTY);
        CHECK_EQ(rp_ring_size(&s->ring), 0);
    }
    printf("  %s: %uP/%uC cap %zu: %zu items in %.2f s (%.2f M items/s)\n", ph->name,
           ph->producers, ph->consumers, ph->capacity, s->total, secs,
           secs > 0 ? (double)s->total / secs / 1e6 : 0.0);
    rp_ring_destroy(&s->ring);
    free((void *)s->seen);
    rp_test_free(s); /* RP_TEST_NEW */
}

static size_t per_producer(long total, unsigned producers, long min_total) {
    long t = rp_test_scaled(total, min_total);
    return (size_t)((t + (long)producers - 1) / (long)producers);
}

/* The main phase: 4 producers x 4 consumers, 10 million items, capacity 64. */
static void test_mpmc_4x4_cap64(void) {
    phase ph = {"4x4/64", 64, 4, 4, per_producer(10000000, 4, 20000)};
    run_phase(&ph);
}

/* The smallest ring: every push and pop contends on the same two cells. */
static void test_mpmc_4x4_cap2(void) {
    phase ph = {"4x4/2", 2, 4, 4, per_producer(400000, 4, 4000)};
    run_phase(&ph);
}

/* A larger ring, more producers than consumers (the ring runs full). */
static void test_mpmc_6x2_cap1024(void) {
    phase ph = {"6x2/1024", 1024, 6, 2, per_producer(2000000, 6, 6000)};
    run_phase(&ph);
}

/* More consumers than producers (the ring runs empty). */
static void test_mpmc_2x6_cap1024(void) {
    phase ph = {"2x6/1024", 1024, 2, 6, per_producer(2000000, 2, 6000)};
    run_phase(&ph);
}

int main(int argc, char **argv) {
    rp_test_init(argc, argv);
    RUN_TEST_T(test_mpmc_4x4_cap64, 200);
    RUN_TEST(test_mpmc_4x4_cap2);
    RUN_TEST(test_mpmc_6x2_cap1024);
    RUN_TEST(test_mpmc_2x6_cap1024);
    return rp_test_summary();
}
