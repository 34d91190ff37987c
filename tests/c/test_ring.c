/* test_ring.c - single-threaded semantics of the bounded MPMC ring (rp_ring.h):
 * capacity validation, full, empty, FIFO order, wrap-around, size, rounding. */
#include "rp_test.h" /* first: feature macros */

#include "rp_ring.h"

#if !defined(_WIN32)
#include <sys/types.h>
#include <sys/wait.h>
#endif

/* A capacity whose cell array overflows size_t must fail cleanly, not abort
 * inside the sanitizer's allocator. */
const char *__asan_default_options(void) __attribute__((used));
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }
const char *__tsan_default_options(void) __attribute__((used));
const char *__tsan_default_options(void) { return "allocator_may_return_null=1"; }

/* Distinct, non-NULL, recognisable pointer values. */
static void *item(uintptr_t i) { return (void *)(uintptr_t)(0x1000 + i * 16 + 8); }

static void test_init_rejects_bad_capacity(void) {
    static const size_t bad[] = {0, 1, 3, 5, 6, 7, 9, 12, 100, 1000, 1023, 1025};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rp_ring r;
        memset(&r, 0, sizeof r);
        int rc = rp_ring_init(&r, bad[i]);
        if (!CHECK_EQ(rc, RP_EINVAL))
            fprintf(stderr, "  capacity %zu\n", bad[i]);
        if (rc == RP_OK)
            rp_ring_destroy(&r);
    }
}

static void test_init_accepts_powers_of_two(void) {
    static const size_t good[] = {2, 4, 8, 16, 64, 1024, 65536};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        rp_ring r;
        if (!CHECK_EQ(rp_ring_init(&r, good[i]), RP_OK))
            continue;
        CHECK_EQ(rp_ring_capacity(&r), good[i]);
        CHECK_EQ(rp_ring_size(&r), 0);
        void *out = NULL;
        CHECK_EQ(rp_ring_try_pop(&r, &out), RP_EEMPTY);
        rp_ring_destroy(&r);
    }
}

static void test_init_huge_capacity_fails_cleanly(void) {
    /* A power of two whose cell array size overflows size_t: RP_ENOMEM (or
     * RP_EINVAL), never a wrapped-around tiny allocation that init then
     * overruns. Run in a child process so a crash is reported, not fatal. */
#if defined(_WIN32)
    /* No fork(): in process (a crash still fails the program). */
    {
        rp_ring r;
        size_t huge = (SIZE_MAX >> 1) + 1;
        int rc = rp_ring_init(&r, huge);
        if (rc == RP_OK)
            rp_ring_destroy(&r);
        if (!(rc == RP_ENOMEM || rc == RP_EINVAL))
            FAILF("rp_ring_init(2^%d) returned %d, not RP_ENOMEM/RP_EINVAL",
                  (int)(sizeof(size_t) * 8 - 1), rc);
    }
#else
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        rp_ring r;
        size_t huge = (SIZE_MAX >> 1) + 1;
        int rc = rp_ring_init(&r, huge);
        if (rc == RP_OK)
            rp_ring_destroy(&r);
        _exit(rc == RP_ENOMEM || rc == RP_EINVAL ? 0 : 10 + (rc < 0 ? -rc : rc));
    }
    if (!CHECK(pid > 0))
        return;
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFSIGNALED(status))
        FAILF("rp_ring_init(2^%d) crashed the process (signal %d): the cell array size "
              "overflows size_t", (int)(sizeof(size_t) * 8 - 1), WTERMSIG(status));
    else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        FAILF("rp_ring_init(2^%d) did not fail cleanly with RP_ENOMEM/RP_EINVAL (child exit "
              "status %d: 10+n means it returned -n; otherwise a sanitizer report above)",
              (int)(sizeof(size_t) * 8 - 1), WIFEXITED(status) ? WEXITSTATUS(status) : -1);
#endif
}

static void fill_and_drain(size_t cap) {
    rp_ring r;
    if (!CHECK_EQ(rp_ring_init(&r, cap), RP_OK))
        return;
    size_t pushed = 0;
    int rc;
    while ((rc = rp_ring_try_push(&r, item(pushed))) == RP_OK) {
        pushed++;
        CHECK_EQ(rp_ring_size(&r), pushed);
        if (pushed > cap)
            break;
    }
    CHECK_EQ(rc, RP_EFULL);
    CHECK_EQ(pushed, cap);
    CHECK_EQ(rp_ring_size(&r), cap);
    /* Full stays full and unchanged. */
    for (int k = 0; k < 3; k++)
        CHECK_EQ(rp_ring_try_push(&r, item(9999)), RP_EFULL);
    CHECK_EQ(rp_ring_size(&r), cap);

    size_t popped = 0;
    void *out;
    while ((rc = rp_ring_try_pop(&r, &out)) == RP_OK) {
        if (!CHECK(out == item(popped)))
            fprintf(stderr, "  cap %zu: pop %zu gave %p, want %p\n", cap, popped, out,
                    item(popped));
        popped++;
        CHECK_EQ(rp_ring_size(&r), cap - popped);
        if (popped > cap)
            break;
    }
    CHECK_EQ(rc, RP_EEMPTY);
    CHECK_EQ(popped, cap);
    CHECK_EQ(rp_ring_size(&r), 0);
    for (int k = 0; k < 3; k++)
        CHECK_EQ(rp_ring_try_pop(&r, &out), RP_EEMPTY);

    /* And it fills to exactly cap again (the second lap of every cell). */
    pushed = 0;
    while (rp_ring_try_push(&r, item(pushed)) == RP_OK && pushed <= cap)
        pushed++;
    CHECK_EQ(pushed, cap);
    for (size_t i = 0; i < cap; i++) {
        out = NULL;
        CHECK_EQ(rp_ring_try_pop(&r, &out), RP_OK);
        CHECK(out == item(i));
    }
    CHECK_EQ(rp_ring_try_pop(&r, &out), RP_EEMPTY);
    rp_ring_destroy(&r);
}

static void test_full_at_capacity_then_empty_fifo(void) {
    static const size_t caps[] = {2, 4, 8, 64, 1024};
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++)
        fill_and_drain(caps[i]);
}

static void test_wraparound_many_laps(void) {
    rp_ring r;
    if (!CHECK_EQ(rp_ring_init(&r, 4), RP_OK))
        return;
    uintptr_t next_in = 0, next_out = 0;
    long errors = 0;
    /* 1000 laps with batches of 1..4 items: every cell is reused ~1000 times
     * at varying offsets. */
    for (int lap = 0; lap < 1000 && errors < 10; lap++) {
        size_t batch = (size_t)(lap % 4) + 1;
        for (size_t k = 0; k < batch; k++) {
            if (rp_ring_try_push(&r, item(next_in)) != RP_OK) {
                FAILF("lap %d: push %zu of %zu failed", lap, k, batch);
                errors++;
            }
            next_in++;
        }
        if (rp_ring_size(&r) != batch) {
            FAILF("lap %d: size %zu, want %zu", lap, rp_ring_size(&r), batch);
            errors++;
        }
        for (size_t k = 0; k < batch; k++) {
            void *out = NULL;
            if (rp_ring_try_pop(&r, &out) != RP_OK || out != item(next_out)) {
                FAILF("lap %d: pop %zu gave %p, want %p", lap, k, out, item(next_out));
                errors++;
            }
            next_out++;
        }
    }
    CHECK_EQ(rp_ring_size(&r), 0);

    /* Steady state with the ring kept 3/4 full: pop one, push one, 4000 times. */
    for (int k = 0; k < 3; k++)
        CHECK_EQ(rp_ring_try_push(&r, item(next_in++)), RP_OK);
    for (int step = 0; step < 4000 && errors < 10; step++) {
        void *out = NULL;
        if (rp_ring_try_pop(&r, &out) != RP_OK || out != item(next_out)) {
            FAILF("steady step %d: pop gave %p, want %p", step, out, item(next_out));
            errors++;
        }
        next_out++;
        if (rp_ring_try_push(&r, item(next_in++)) != RP_OK) {
            FAILF("steady step %d: push failed", step);
            errors++;
        }
        if (rp_ring_size(&r) != 3) {
            FAILF("steady step %d: size %zu, want 3", step, rp_ring_size(&r));
            errors++;
        }
    }
    /* Full at every offset: push a 4th, then a 5th is refused. */
    CHECK_EQ(rp_ring_try_push(&r, item(next_in++)), RP_OK);
    CHECK_EQ(rp_ring_try_push(&r, item(424242)), RP_EFULL);
    for (int k = 0; k < 4; k++) {
        void *out = NULL;
        CHECK_EQ(rp_ring_try_pop(&r, &out), RP_OK);
        CHECK(out == item(next_out));
        next_out++;
    }
    void *out;
    CHECK_EQ(rp_ring_try_pop(&r, &out), RP_EEMPTY);
    CHECK_EQ(next_in, next_out);
    CHECK_EQ(errors, 0);
    rp_ring_destroy(&r);
}

static void test_full_and_empty_at_every_offset(void) {
    /* For each starting offset of cap 8, fill to full and drain to empty. */
    rp_ring r;
    if (!CHECK_EQ(rp_ring_init(&r, 8), RP_OK))
        return;
    uintptr_t seq = 0;
    for (int off = 0; off < 8 * 3; off++) {
        /* advance the indices by one */
        void *out;
        CHECK_EQ(rp_ring_try_push(&r, item(seq)), RP_OK);
        CHECK_EQ(rp_ring_try_pop(&r, &out), RP_OK);
        CHECK(out == item(seq));
        seq++;
        for (uintptr_t k = 0; k < 8; k++)
            CHECK_EQ(rp_ring_try_push(&r, item(seq + k)), RP_OK);
        CHECK_EQ(rp_ring_try_push(&r, item(777)), RP_EFULL);
        CHECK_EQ(rp_ring_size(&r), 8);
        for (uintptr_t k = 0; k < 8; k++) {
            out = NULL;
            CHECK_EQ(rp_ring_try_pop(&r, &out), RP_OK);
            CHECK(out == item(seq + k));
        }
        CHECK_EQ(rp_ring_try_pop(&r, &out), RP_EEMPTY);
        seq += 8;
    }
    rp_ring_destroy(&r);
}

static void test_arbitrary_pointer_values(void) {
    rp_ring r;
    if (!CHECK_EQ(rp_ring_init(&r, 4), RP_OK))
        return;
    void *vals[] = {(void *)(uintptr_t)1, (void *)UINTPTR_MAX, (void *)&r,
                    (void *)(uintptr_t)0xDEADBEEF};
    for (int k = 0; k < 4; k++)
        CHECK_EQ(rp_ring_try_push(&r, vals[k]), RP_OK);
    for (int k = 0; k < 4; k++) {
        void *out = NULL;
        CHECK_EQ(rp_ring_try_pop(&r, &out), RP_OK);
        CHECK(out == vals[k]);
    }
    rp_ring_destroy(&r);
}

static void test_size_partial(void) {
    rp_ring r;
    if (!CHECK_EQ(rp_ring_init(&r, 8), RP_OK))
        return;
    void *out;
    CHECK_EQ(rp_ring_size(&r), 0);
    CHECK_EQ(rp_ring_try_push(&r, item(1)), RP_OK);
    CHECK_EQ(rp_ring_try_push(&r, item(2)), RP_OK);
    CHECK_EQ(rp_ring_try_push(&r, item(3)), RP_OK);
    CHECK_EQ(rp_ring_size(&r), 3);
    CHECK_EQ(rp_ring_try_pop(&r, &out), RP_OK);
    CHECK_EQ(rp_ring_size(&r), 2);
    CHECK_EQ(rp_ring_capacity(&r), 8);
    rp_ring_destroy(&r);
}

static void test_reinit_after_destroy(void) {
    rp_ring r;
    for (int round = 0; round < 3; round++) {
        size_t cap = (size_t)2 << round;
        if (!CHECK_EQ(rp_ring_init(&r, cap), RP_OK))
            return;
        CHECK_EQ(rp_ring_capacity(&r), cap);
        CHECK_EQ(rp_ring_try_push(&r, item(5)), RP_OK);
        rp_ring_destroy(&r); /* destroy with an item still inside: no leak */
    }
}

static void test_round_capacity(void) {
    CHECK_EQ(rp_ring_round_capacity(0), 2);
    CHECK_EQ(rp_ring_round_capacity(1), 2);
    CHECK_EQ(rp_ring_round_capacity(2), 2);
    CHECK_EQ(rp_ring_round_capacity(3), 4);
    CHECK_EQ(rp_ring_round_capacity(4), 4);
    CHECK_EQ(rp_ring_round_capacity(5), 8);
    CHECK_EQ(rp_ring_round_capacity(1000), 1024);
    CHECK_EQ(rp_ring_round_capacity(1024), 1024);
    CHECK_EQ(rp_ring_round_capacity(1025), 2048);
    int bits = (int)(sizeof(size_t) * 8);
    for (int k = 1; k < bits - 1; k++) {
        size_t p = (size_t)1 << k;
        if (rp_ring_round_capacity(p) != p)
            FAILF("round_capacity(2^%d) = %zu", k, rp_ring_round_capacity(p));
        if (k >= 2 && rp_ring_round_capacity(p - 1) != p)
            FAILF("round_capacity(2^%d - 1) = %zu", k, rp_ring_round_capacity(p - 1));
        if (rp_ring_round_capacity(p + 1) != p << 1)
            FAILF("round_capacity(2^%d + 1) = %zu", k, rp_ring_round_capacity(p + 1));
    }
    /* The documented upper bound of the argument. */
    size_t top = (size_t)1 << (bits - 1);
    CHECK(rp_ring_round_capacity(SIZE_MAX / 2) == top);
}

int main(int argc, char **argv) {
    rp_test_init(argc, argv);
    RUN_TEST(test_init_rejects_bad_capacity);
    RUN_TEST(test_init_accepts_powers_of_two);
    RUN_TEST(test_init_huge_capacity_fails_cleanly);
    RUN_TEST(test_full_at_capacity_then_empty_fifo);
    RUN_TEST(test_wraparound_many_laps);
    RUN_TEST(test_full_and_empty_at_every_offset);
    RUN_TEST(test_arbitrary_pointer_values);
    RUN_TEST(test_size_partial);
    RUN_TEST(test_reinit_after_destroy);
    RUN_TEST(test_round_capacity);
    return rp_test_summary();
}
