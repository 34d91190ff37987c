/* bench_native.c - native tasks with no Python: what the C engine costs.
 *
 * Usage (numbers mean something only in a Release build):
 *
 *     cmake -S . -B build-rel -G Ninja -DCMAKE_BUILD_TYPE=Release
 *     cmake --build build-rel --target bench_native
 *     build-rel/bench_native [--reps R] [--noop-n N] [--work-n N] [W ...]
 *
 *   --reps R    repetitions of each measurement; the median is reported (5)
 *   --noop-n N  items for the empty-task rates (2000000)
 *   --work-n N  indices for the parallel_for scaling run (200000, ~0.8 s
 *               sequential at ~4 us per index)
 *   W ...       worker counts for the scaling run (1 2 4 8 16)
 *
 * Prints one JSON object per line:
 *   batch_noop   rpk_noop through rp_batch_submit + rp_batch_wait, N items,
 *                at 1 and 2 workers (min_workers = max_workers = W): the
 *                per-item cost of a batch (runners claim blocks of items);
 *   submit_noop  the same N items as N rp_task headers, one rp_pool_submit
 *                each: the raw rate of the ring, for comparison;
 *   seq_work     rpk_work_sequential(n): the single-thread baseline, in C;
 *   pfor_work    rp_parallel_for(rpk_k_work) at each W, with speed-up over
 *                seq_work and efficiency = speed-up / threads, where threads
 *                = W + 1: the calling thread claims chunks too, so W = 1
 *                already runs on two threads. Threads beyond the machine's
 *                cores cannot help: read it with the "cpus" field in mind.
 */
#include "../../tests/native/rp_test_kernels.c" /* first: it sets feature macros */

#include "rp_native.h"
#include "rp_pool.h"
#include "rp_sys.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int reps = 5;

static rp_pool *
make_pool(unsigned w)
{
    rp_pool_config cfg;
    rp_pool_config_init(&cfg);
    cfg.min_workers = w;
    cfg.max_workers = w;
    cfg.metrics = 0; /* the engine's own cost, not the histograms' */
    cfg.name = "bench";
    rp_pool *p = NULL;
    int rc = rp_pool_create(&cfg, &p);
    if (rc != RP_OK) {
        fprintf(stderr, "bench_native: rp_pool_create: %s\n", rp_strerror(rc));
        exit(1);
    }
    return p;
}

static void
close_pool(rp_pool *p)
{
    rp_pool_shutdown(p, RP_SHUTDOWN_DRAIN);
    rp_pool_join(p, -1);
    rp_pool_release(p);
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double
median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double
now_s(void)
{
    return (double)rp_now_ns() * 1e-9;
}

/* ---- (a) batch -------------------------------------------------------------- */

static double
run_batch_noop(rp_pool *p, int64_t n)
{
    rp_batch *b = NULL;
    double t0 = now_s();
    int rc = rp_batch_submit(p, rpk_noop, NULL, 0, 0, n, 0, 0, &b);
    if (rc != RP_OK) {
        fprintf(stderr, "bench_native: rp_batch_submit: %s\n", rp_strerror(rc));
        exit(1);
    }
    rp_batch_wait(b, -1);
    double t = now_s() - t0;
    if (rp_batch_failed(b) != 0 || rp_batch_not_run(b) != 0) {
        fprintf(stderr, "bench_native: batch items failed or did not run\n");
        exit(1);
    }
    rp_batch_release(b);
    return t;
}

/* ---- (b) one rp_pool_submit per item ------------------------------------- */

typedef struct one_task {
    rp_task base; /* first: (one_task *)task */
    rp_native_fn fn;
    void *arg;
    int status;
} one_task;

static _Atomic int64_t one_done;
static const volatile int never_cancelled = 0;

static int
one_run(rp_task *t, rp_worker *w)
{
    one_task *o = (one_task *)t;
    rp_task_ctx ctx = {(int)rp_worker_index(w), &never_cancelled, 0, NULL};
    o->status = o->fn(o->arg, &ctx);
    /* release: publishes the status to the main thread's acquire load. */
    atomic_fetch_add_explicit(&one_done, 1, memory_order_release);
    return RP_OUTCOME_COMPLETED;
}

static void
one_discard(rp_task *t, int reason)
{
    (void)t;
    (void)reason;
    atomic_fetch_add_explicit(&one_done, 1, memory_order_release);
}

static const rp_task_ops one_ops = {one_run, one_discard, NULL, RP_OPS_NOGIL};

static double
run_submit_noop(rp_pool *p, one_task *tasks, int64_t n)
{
    atomic_store(&one_done, 0);
    for (int64_t i = 0; i < n; i++) {
        tasks[i].base.ops = &one_ops;
        tasks[i].fn = rpk_noop;
        tasks[i].arg = NULL;
    }
    double t0 = now_s();
    for (int64_t i = 0; i < n; i++) {
        int rc = rp_pool_submit(p, &tasks[i].base);
        if (rc != RP_OK) {
            fprintf(stderr, "bench_native: rp_pool_submit: %s\n", rp_strerror(rc));
            exit(1);
        }
    }
    /* acquire: pairs with the release adds in one_run. */
    for (unsigned i = 0; atomic_load_explicit(&one_done, memory_order_acquire) < n; i++) {
        if (i % 64 == 63)
            rp_thread_yield();
        else
            rp_cpu_relax();
    }
    return now_s() - t0;
}

/* ---- main ------------------------------------------------------------------ */

int
main(int argc, char **argv)
{
    int64_t noop_n = 2000000, work_n = 200000;
    unsigned ws[32], nws = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--noop-n") && i + 1 < argc)
            noop_n = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--work-n") && i + 1 < argc)
            work_n = atoll(argv[++i]);
        else if (argv[i][0] >= '1' && argv[i][0] <= '9' && nws < 32)
            ws[nws++] = (unsigned)atoi(argv[i]);
        else {
            fprintf(stderr, "usage: %s [--reps R] [--noop-n N] [--work-n N] [W ...]\n", argv[0]);
            return 2;
        }
    }
    if (reps < 1)
        reps = 1;
    if (nws == 0) {
        unsigned def[] = {1, 2, 4, 8, 16};
        memcpy(ws, def, sizeof def);
        nws = 5;
    }
    double *t = calloc((size_t)reps, sizeof *t);
    one_task *tasks = calloc((size_t)noop_n, sizeof *tasks);
    double *out = calloc((size_t)work_n, sizeof *out);
    if (!t || !tasks || !out) {
        fprintf(stderr, "bench_native: out of memory\n");
        return 1;
    }
    unsigned cpus = rp_cpu_count();

    for (unsigned w = 1; w <= 2; w++) {
        rp_pool *p = make_pool(w);
        run_batch_noop(p, noop_n / 10); /* warm-up: threads started, caches hot */
        for (int r = 0; r < reps; r++)
            t[r] = run_batch_noop(p, noop_n);
        double m = median(t, reps);
        printf("{\"bench\":\"batch_noop\",\"workers\":%u,\"cpus\":%u,\"n\":%lld,"
               "\"tasks_per_s\":%.0f,\"median_s\":%.6f,\"reps\":%d}\n",
               w, cpus, (long long)noop_n, (double)noop_n / m, m, reps);
        fflush(stdout);
        run_submit_noop(p, tasks, noop_n / 10);
        for (int r = 0; r < reps; r++)
            t[r] = run_submit_noop(p, tasks, noop_n);
        m = median(t, reps);
        printf("{\"bench\":\"submit_noop\",\"workers\":%u,\"cpus\":%u,\"n\":%lld,"
               "\"tasks_per_s\":%.0f,\"median_s\":%.6f,\"reps\":%d}\n",
               w, cpus, (long long)noop_n, (double)noop_n / m, m, reps);
        fflush(stdout);
        close_pool(p);
    }

    for (int r = 0; r < reps; r++)
        t[r] = rpk_work_sequential(work_n, out);
    double seq = median(t, reps);
    printf("{\"bench\":\"seq_work\",\"n\":%lld,\"median_s\":%.6f,\"us_per_index\":%.3f,"
           "\"reps\":%d}\n",
           (long long)work_n, seq, seq / (double)work_n * 1e6, reps);
    fflush(stdout);

    for (unsigned k = 0; k < nws; k++) {
        rp_pool *p = make_pool(ws[k]);
        for (int r = 0; r < reps; r++) {
            int code = 0;
            double t0 = now_s();
            int rc = rp_parallel_for(p, work_n, 0, rpk_k_work, out, &code);
            t[r] = now_s() - t0;
            if (rc != RP_OK || code != 0) {
                fprintf(stderr, "bench_native: rp_parallel_for: %s, code %d\n", rp_strerror(rc),
                        code);
                return 1;
            }
        }
        double m = median(t, reps);
        printf("{\"bench\":\"pfor_work\",\"workers\":%u,\"threads\":%u,\"cpus\":%u,"
               "\"n\":%lld,\"median_s\":%.6f,\"seq_s\":%.6f,\"speedup\":%.3f,"
               "\"efficiency\":%.3f,\"reps\":%d}\n",
               ws[k], ws[k] + 1, cpus, (long long)work_n, m, seq, seq / m,
               seq / m / (ws[k] + 1), reps);
        fflush(stdout);
        close_pool(p);
    }
    free(t);
    free(tasks);
    free(out);
    return 0;
}
