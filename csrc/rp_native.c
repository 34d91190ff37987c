/* rp_native.c - batches and parallel_for on the engine (rp_native.h).
 *
 * Both are built from the same three pieces:
 *  - a claim counter (`next`): runners take work with one atomic add, so the
 *    ring sees a handful of tasks however many items there are;
 *  - an end counter (`ended`): the thread whose add brings it to the total is
 *    the single one that publishes "done" and wakes waiters (rp_park);
 *  - a reference count: the owner (batch) or caller (parallel_for) holds one,
 *    and each task the engine accepted holds one until the engine hands it
 *    back (ops->run returns or ops->discard is called). The engine never
 *    touches a task after that call returns, so the task's reference is
 *    dropped as the very last thing it does.
 *
 * Cancel flag. rp_task_ctx.cancel is `const volatile int *` and kernels read
 * it with RP_CANCELLED, i.e. __atomic_load_n on gcc/clang (mingw included)
 * and a volatile read elsewhere. The flag here is therefore a plain
 * `volatile int` written with the very same builtins (flag_store below): the
 * reader and the writer access one non-_Atomic object with one kind of
 * atomic operation, so no cast between _Atomic int and int is needed (that
 * cast is not guaranteed to be valid, and TSan understands the builtins).
 * Without the GNU builtins (MSVC) a volatile int store is a single aligned
 * 32-bit store, which MSVC treats as atomic (/volatile:ms semantics).
 *
 * No pthread call appears here: waits go through rp_park (rp_sys's mutex and
 * condition), so this file builds unchanged for Windows.
 */
#include "rp_native.h"

#include "rp_park.h"
#include "rp_sys.h"

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* The cancel flag shared with native code                            */
/* ------------------------------------------------------------------ */

#if defined(__GNUC__) || defined(__clang__)
/* seq_cst store: pairs with RP_CANCELLED's relaxed __atomic_load_n in the
 * user's function (it only needs to see the flag eventually) and with our own
 * flag_load below. */
#define flag_store(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
/* relaxed: a hint to stop early; the claim/end counters carry all ordering. */
#define flag_load(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#else
#define flag_store(p, v) (*(p) = (v))
#define flag_load(p) (*(p))
#endif

/* How long a waiter spins before parking: long enough to catch the end of a
 * short parallel_for without a syscall, short enough not to burn a core. */
#define SPIN_NS 20000
#define SPIN_YIELD_EVERY 64

/* Spins for about SPIN_NS while done(arg) is false, then parks on `park`
 * until it is true or deadline_ns passes. RP_OK when done, RP_ETIMEDOUT. */
static int
wait_until(rp_park *park, rp_park_ready_fn done, void *arg, int64_t deadline_ns)
{
    if (done(arg))
        return RP_OK;
    int64_t spin_end = rp_now_ns() + SPIN_NS;
    for (unsigned i = 1;; i++) {
        if (done(arg))
            return RP_OK;
        if (i % SPIN_YIELD_EVERY == 0) {
            int64_t now = rp_now_ns();
            if (now >= spin_end || (deadline_ns >= 0 && now >= deadline_ns))
                break;
            rp_thread_yield();
        } else {
            rp_cpu_relax();
        }
    }
    for (;;) {
        /* rp_park_sleep re-checks done() after announcing itself (seq_cst),
         * and wake-ups may be spurious: loop until done or the deadline. */
        int rc = rp_park_sleep(park, done, arg, deadline_ns);
        if (done(arg))
            return RP_OK;
        if (rc == RP_ETIMEDOUT)
            return RP_ETIMEDOUT;
    }
}

/* ------------------------------------------------------------------ */
/* Batch                                                              */
/* ------------------------------------------------------------------ */

struct rp_batch {
    /* Claimed by runners with fetch_add(block); may overshoot n. */
    _Alignas(RP_CACHELINE) _Atomic int64_t next;
    /* Items that ended (ran or were marked NOT_RUN), added once per block. */
    _Alignas(RP_CACHELINE) _Atomic int64_t ended;
    _Atomic int64_t failed, not_run;
    _Atomic unsigned refs;         /* owner + runners not yet handed back */
    _Atomic unsigned runners_live; /* runners not yet handed back */
    _Atomic int done;              /* 0 -> 1 exactly once (CAS), then waiters wake */
    volatile int cancel;           /* ctx->cancel; see the file comment */
    rp_park park;                  /* rp_batch_wait sleeps here */
    rp_native_fn fn;
    void *const *args; /* borrowed; NULL: the range form */
    int64_t start, step, n, block;
    int32_t *status; /* n entries, inside this allocation */
    unsigned nrunners;
    rp_task runners[]; /* the runner task headers; status follows them */
};

static int batch_runner_run(rp_task *t, rp_worker *w);
static void batch_runner_discard(rp_task *t, int reason);
static const rp_task_ops batch_runner_ops = {batch_runner_run, batch_runner_discard, NULL, RP_OPS_NOGIL};

static void
batch_free(rp_batch *b)
{
    rp_park_destroy(&b->park);
    rp_aligned_free(b);
}

static void
batch_unref(rp_batch *b, unsigned k)
{
    /* acq_rel: the release half publishes this holder's writes to the batch;
     * the acquire half lets the last holder (whose sub reaches 0) see every
     * other holder's writes before it frees. Pairs with itself. */
    if (atomic_fetch_sub_explicit(&b->refs, k, memory_order_acq_rel) == k)
        batch_free(b);
}

static int
batch_is_done(void *arg)
{
    rp_batch *b = arg;
    /* seq_cst: the sleeper's re-check in rp_park_sleep; pairs with the CAS in
     * batch_end (the waker's seq_cst RMW before rp_park_notify_all). Also an
     * acquire of every status written before that CAS. */
    return atomic_load_explicit(&b->done, memory_order_seq_cst) != 0;
}

/* Counts k items as ended; the call that brings `ended` to n publishes done
 * and wakes the waiters. The caller holds a reference (so the park is alive
 * through the notify). */
static void
batch_end(rp_batch *b, int64_t k)
{
    if (k == 0)
        return;
    /* acq_rel: release publishes this block's status entries and counts; the
     * acquire half of the final add (a release sequence of RMWs) collects
     * every other block's, so they happen before the done CAS below. Pairs
     * with itself across runners. */
    int64_t before = atomic_fetch_add_explicit(&b->ended, k, memory_order_acq_rel);
    if (before + k != b->n)
        return;
    int expected = 0;
    /* seq_cst: the waker's RMW of the parking protocol (rp_park.h); pairs
     * with batch_is_done's seq_cst load. Only one thread can reach n, so the
     * CAS cannot fail; it is a CAS to make "exactly once" self-evident. */
    if (atomic_compare_exchange_strong_explicit(&b->done, &expected, 1, memory_order_seq_cst,
                                                memory_order_seq_cst))
        rp_park_notify_all(&b->park);
}

/* Claims up to `want` items; returns how many (0: none left) and the first. */
static int64_t
batch_claim(rp_batch *b, int64_t want, int64_t *first)
{
    /* relaxed: the add only has to hand out disjoint ranges (atomicity);
     * the items' arguments were published by the submit (the engine's queue
     * synchronizes submit with run) and results are published by batch_end. */
    int64_t i = atomic_fetch_add_explicit(&b->next, want, memory_order_relaxed);
    if (i >= b->n)
        return 0;
    *first = i;
    return b->n - i < want ? b->n - i : want;
}

/* Claims every item not yet claimed (a CAS to n, so `next` never grows past
 * n + runners * block however often this runs). */
static int64_t
batch_claim_rest(rp_batch *b, int64_t *first)
{
    /* relaxed: as in batch_claim. */
    int64_t i = atomic_load_explicit(&b->next, memory_order_relaxed);
    while (i < b->n) {
        if (atomic_compare_exchange_weak_explicit(&b->next, &i, b->n, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            *first = i;
            return b->n - i;
        }
    }
    return 0;
}

/* Marks every unclaimed item NOT_RUN and ends them. */
static void
batch_sweep(rp_batch *b)
{
    int64_t first = 0, k = batch_claim_rest(b, &first);
    if (k == 0)
        return;
    for (int64_t i = first; i < first + k; i++)
        b->status[i] = RP_STATUS_NOT_RUN;
    /* relaxed: exact once done; published by batch_end's release. */
    atomic_fetch_add_explicit(&b->not_run, k, memory_order_relaxed);
    batch_end(b, k);
}

/* k runners will never claim anything again (they ran to the end, were
 * discarded, or were never accepted). When the last one goes, nobody is left
 * to run the unclaimed items: they end NOT_RUN. */
static void
batch_runners_gone(rp_batch *b, unsigned k)
{
    /* acq_rel: the last runner's sweep must follow every other runner's
     * claims; pairs with itself. */
    if (atomic_fetch_sub_explicit(&b->runners_live, k, memory_order_acq_rel) == k)
        batch_sweep(b);
}

static int
batch_runner_run(rp_task *t, rp_worker *w)
{
    rp_batch *b = t->data;
    rp_task_ctx ctx = {(int)rp_worker_index(w), &b->cancel, 0, NULL};
    int outcome = RP_OUTCOME_COMPLETED;
    int64_t first = 0, k;
    while ((k = batch_claim(b, b->block, &first)) != 0) {
        int64_t failed = 0, not_run = 0;
        for (int64_t i = first; i < first + k; i++) {
            if (flag_load(&b->cancel)) {
                b->status[i] = RP_STATUS_NOT_RUN;
                not_run++;
                continue;
            }
            void *arg = b->args ? b->args[i]
                                /* unsigned arithmetic: wraps instead of overflowing */
                                : (void *)(intptr_t)(int64_t)((uint64_t)b->start +
                                                              (uint64_t)i * (uint64_t)b->step);
            int rc = b->fn(arg, &ctx);
            b->status[i] = rc;
            failed += rc != 0;
        }
        if (failed) {
            outcome = RP_OUTCOME_FAILED;
            /* relaxed: exact once done; published by batch_end's release. */
            atomic_fetch_add_explicit(&b->failed, failed, memory_order_relaxed);
        }
        if (not_run) {
            if (outcome == RP_OUTCOME_COMPLETED)
                outcome = RP_OUTCOME_CANCELLED;
            atomic_fetch_add_explicit(&b->not_run, not_run, memory_order_relaxed);
        }
        batch_end(b, k);
        if (flag_load(&b->cancel)) {
            batch_sweep(b); /* no need to claim block by block any more */
            break;
        }
    }
    batch_runners_gone(b, 1);
    batch_unref(b, 1); /* last: may free b, and t with it */
    return outcome;
}

static void
batch_runner_discard(rp_task *t, int reason)
{
    (void)reason;
    rp_batch *b = t->data;
    batch_runners_gone(b, 1);
    batch_unref(b, 1); /* last: may free b, and t with it */
}

int
rp_batch_submit(rp_pool *p, rp_native_fn fn, void *const *args, int64_t start, int64_t step,
                int64_t n, unsigned runners, int64_t block, rp_batch **out)
{
    if (p == NULL || fn == NULL || n < 0 || out == NULL)
        return RP_EINVAL;
    *out = NULL;
    if (runners == 0) {
        runners = rp_pool_max_workers(p);
    }
    if (block <= 0) {
        int64_t b8 = n / (8 * (int64_t)runners);
        block = b8 < 1 ? 1 : b8 > 1024 ? 1024 : b8;
    }
    /* More runners than blocks would find nothing to claim. */
    int64_t nblocks = n / block + (n % block != 0);
    if ((int64_t)runners > nblocks)
        runners = (unsigned)nblocks; /* 0 when n == 0 */

    size_t head = sizeof(rp_batch) + (size_t)runners * sizeof(rp_task);
    if ((uint64_t)n > (SIZE_MAX - head) / sizeof(int32_t))
        return RP_ENOMEM;
    rp_batch *b = rp_aligned_zalloc(RP_CACHELINE, head + (size_t)n * sizeof(int32_t));
    if (b == NULL)
        return RP_ENOMEM;
    if (rp_park_init(&b->park) != RP_OK) {
        rp_aligned_free(b);
        return RP_ENOMEM;
    }
    b->fn = fn;
    b->args = args;
    b->start = start;
    b->step = step;
    b->n = n;
    b->block = block;
    b->status = (int32_t *)((char *)b + head);
    b->nrunners = runners;
    b->cancel = 0;
    atomic_init(&b->next, 0);
    atomic_init(&b->ended, 0);
    atomic_init(&b->failed, 0);
    atomic_init(&b->not_run, 0);
    /* Counted up front for every planned runner: one accepted runner may
     * finish before the next is submitted, and must not see 0 early. */
    atomic_init(&b->refs, 1 + runners);
    atomic_init(&b->runners_live, runners);
    atomic_init(&b->done, n == 0);
    if (n == 0) {
        *out = b;
        return RP_OK;
    }

    unsigned accepted = 0;
    int rc = RP_OK;
    for (; accepted < runners; accepted++) {
        rp_task *t = &b->runners[accepted];
        t->ops = &batch_runner_ops;
        t->data = b;
        rc = rp_pool_submit(p, t);
        if (rc != RP_OK)
            break; /* RP_EFULL, RP_ESHUTDOWN, RP_ETHREAD: fewer runners */
    }
    if (accepted == 0) {
        batch_free(b); /* nothing reached the engine: nobody else holds it */
        return rc;
    }
    b->nrunners = accepted; /* read only by rp_batch_cancel, on the owner's side */
    if (accepted < runners) {
        unsigned missing = runners - accepted;
        /* The runners never submitted: give up their counts. If every
         * accepted runner already ended, this is the last hand-back. */
        batch_runners_gone(b, missing);
        batch_unref(b, missing); /* cannot free: the owner's ref remains */
    }
    *out = b;
    return RP_OK;
}

int
rp_batch_wait(rp_batch *b, int64_t deadline_ns)
{
    return wait_until(&b->park, batch_is_done, b, deadline_ns);
}

int
rp_batch_done(rp_batch *b)
{
    return batch_is_done(b);
}

void
rp_batch_cancel(rp_batch *b)
{
    flag_store(&b->cancel, 1);
    /* End the unclaimed items here rather than when a runner gets to them:
     * the runners may be queued behind long tasks, and the batch is done as
     * soon as the blocks already running end. */
    batch_sweep(b);
    /* Runners still queued have nothing left to do: let the engine discard
     * them (their discard drops their reference). The owner's reference keeps
     * the headers alive; one that already ran just fails the CAS. */
    for (unsigned i = 0; i < b->nrunners; i++)
        rp_task_cancel(&b->runners[i]);
}

int64_t
rp_batch_size(const rp_batch *b)
{
    return b->n;
}

const int32_t *
rp_batch_status(const rp_batch *b)
{
    return b->status;
}

int64_t
rp_batch_failed(rp_batch *b)
{
    /* relaxed: exact only once done, whose acquire already ordered it. */
    return atomic_load_explicit(&b->failed, memory_order_relaxed);
}

int64_t
rp_batch_not_run(rp_batch *b)
{
    /* relaxed: as rp_batch_failed. */
    return atomic_load_explicit(&b->not_run, memory_order_relaxed);
}

void
rp_batch_release(rp_batch *b)
{
    if (b != NULL)
        batch_unref(b, 1);
}

/* ------------------------------------------------------------------ */
/* parallel_for                                                       */
/* ------------------------------------------------------------------ */

typedef struct pf_job {
    /* Next chunk to claim; fetch_add(1) may overshoot nchunks by the number
     * of participants, never more (the cancel sweep uses a CAS). */
    _Alignas(RP_CACHELINE) _Atomic int64_t next;
    /* Chunks that ended (ran or were skipped). */
    _Alignas(RP_CACHELINE) _Atomic int64_t ended;
    _Atomic int code;     /* the first non-zero kernel return (CAS from 0) */
    _Atomic unsigned refs; /* caller + helpers not yet handed back */
    volatile int cancel;   /* ctx->cancel; see the file comment */
    rp_park park;          /* the caller sleeps here */
    rp_kernel_fn kernel;
    void *arg;
    int64_t n, grain, nchunks;
    unsigned nhelpers;
    rp_task helpers[];
} pf_job;

static int pf_helper_run(rp_task *t, rp_worker *w);
static void pf_helper_discard(rp_task *t, int reason);
static const rp_task_ops pf_helper_ops = {pf_helper_run, pf_helper_discard, NULL, RP_OPS_NOGIL};

static void
pf_unref(pf_job *j, unsigned k)
{
    /* acq_rel: as batch_unref; pairs with itself. */
    if (atomic_fetch_sub_explicit(&j->refs, k, memory_order_acq_rel) == k) {
        rp_park_destroy(&j->park);
        rp_aligned_free(j);
    }
}

static int
pf_all_ended(void *arg)
{
    pf_job *j = arg;
    /* seq_cst: the sleeper's re-check; pairs with the seq_cst fetch_add in
     * pf_end (the waker's RMW before rp_park_notify_all). Also the acquire
     * that makes *code and the kernels' writes visible to the caller. */
    return atomic_load_explicit(&j->ended, memory_order_seq_cst) == j->nchunks;
}

static void
pf_end(pf_job *j, int64_t k)
{
    /* seq_cst: the waker's RMW of the parking protocol, and a release of this
     * chunk's writes (and of a code CAS) to the caller's load in
     * pf_all_ended. Only the add that reaches nchunks can matter to it. */
    if (atomic_fetch_add_explicit(&j->ended, k, memory_order_seq_cst) + k == j->nchunks)
        rp_park_notify_all(&j->park);
}

/* Runs chunks until none is left; ctx->worker is `worker`. */
static void
pf_work(pf_job *j, int worker)
{
    rp_task_ctx ctx = {worker, &j->cancel, 0, NULL};
    for (;;) {
        /* relaxed: only hands out distinct chunk numbers. */
        int64_t c = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (c >= j->nchunks)
            return;
        if (flag_load(&j->cancel)) {
            /* Skip this chunk and every unclaimed one in one step (with
             * grain 1 and a huge n, skipping one by one could take ages). */
            int64_t rest = atomic_load_explicit(&j->next, memory_order_relaxed), skipped = 1;
            while (rest < j->nchunks) {
                /* relaxed: as the fetch_add above. */
                if (atomic_compare_exchange_weak_explicit(&j->next, &rest, j->nchunks,
                                                          memory_order_relaxed,
                                                          memory_order_relaxed)) {
                    skipped += j->nchunks - rest;
                    break;
                }
            }
            pf_end(j, skipped);
            return;
        }
        int64_t b = c * j->grain; /* c < nchunks, so b < n: no overflow */
        int64_t e = j->n - b < j->grain ? j->n : b + j->grain;
        int rc = j->kernel(b, e, j->arg, &ctx);
        if (rc != 0) {
            int zero = 0;
            /* relaxed: published to the caller by pf_end's seq_cst add. */
            if (atomic_compare_exchange_strong_explicit(&j->code, &zero, rc, memory_order_relaxed,
                                                        memory_order_relaxed))
                flag_store(&j->cancel, 1);
        }
        pf_end(j, 1);
    }
}

static int
pf_helper_run(rp_task *t, rp_worker *w)
{
    pf_job *j = t->data;
    pf_work(j, (int)rp_worker_index(w));
    pf_unref(j, 1); /* last: may free j, and t with it */
    return RP_OUTCOME_COMPLETED;
}

static void
pf_helper_discard(rp_task *t, int reason)
{
    (void)reason;
    pf_unref(t->data, 1); /* last: may free the job, and t with it */
}

/* Every chunk on the calling thread, in order; stops at the first error. */
static int
pf_inline(int64_t n, int64_t grain, rp_kernel_fn kernel, void *arg, int *code)
{
    volatile int cancel = 0; /* never set: nobody else can see this call */
    rp_task_ctx ctx = {-1, &cancel, 0, NULL};
    for (int64_t b = 0; b < n;) {
        int64_t e = n - b < grain ? n : b + grain;
        int rc = kernel(b, e, arg, &ctx);
        if (rc != 0) {
            *code = rc;
            return RP_OK;
        }
        b = e;
    }
    return RP_OK;
}

int
rp_parallel_for(rp_pool *p, int64_t n, int64_t grain, rp_kernel_fn kernel, void *arg, int *code)
{
    int dummy;
    if (code == NULL)
        code = &dummy;
    *code = 0;
    if (p == NULL || n < 0 || kernel == NULL)
        return RP_EINVAL;
    if (n == 0)
        return RP_OK;
    rp_worker *self = rp_worker_current();
    int nested = self != NULL && rp_worker_pool(self) == p;
    unsigned max_workers = 1;
    if (!nested || grain <= 0) {
        max_workers = rp_pool_max_workers(p);
    }
    if (grain <= 0) {
        int64_t parts = 4 * ((int64_t)max_workers + 1);
        grain = n / parts + (n % parts != 0);
    }
    /* Division first: n + grain - 1 could overflow for n near INT64_MAX. */
    int64_t nchunks = n / grain + (n % grain != 0);
    /* From one of p's own workers: helpers would queue behind this very
     * worker while it waits for them, so run everything here. */
    if (nested || nchunks == 1)
        return pf_inline(n, grain, kernel, arg, code);

    unsigned helpers = nchunks - 1 < (int64_t)max_workers ? (unsigned)(nchunks - 1) : max_workers;
    pf_job *j = rp_aligned_zalloc(RP_CACHELINE, sizeof(pf_job) + helpers * sizeof(rp_task));
    if (j == NULL)
        return RP_ENOMEM;
    if (rp_park_init(&j->park) != RP_OK) {
        rp_aligned_free(j);
        return RP_ENOMEM;
    }
    j->kernel = kernel;
    j->arg = arg;
    j->n = n;
    j->grain = grain;
    j->nchunks = nchunks;
    j->cancel = 0;
    atomic_init(&j->next, 0);
    atomic_init(&j->ended, 0);
    atomic_init(&j->code, 0);
    /* Counted up front: an accepted helper may end before the next submit. */
    atomic_init(&j->refs, 1 + helpers);

    unsigned accepted = 0;
    for (; accepted < helpers; accepted++) {
        rp_task *t = &j->helpers[accepted];
        t->ops = &pf_helper_ops;
        t->data = j;
        if (rp_pool_submit(p, t) != RP_OK)
            break; /* closed, full or no thread: the caller does more itself */
    }
    if (accepted < helpers)
        pf_unref(j, helpers - accepted); /* cannot free: the caller's ref remains */

    pf_work(j, -1);
    wait_until(&j->park, pf_all_ended, j, -1);
    /* Helpers still queued have nothing to do: the engine discards them
     * (dropping their reference) instead of running them. */
    for (unsigned i = 0; i < accepted; i++)
        rp_task_cancel(&j->helpers[i]);
    /* relaxed: ordered by pf_all_ended's seq_cst load of the final count. */
    *code = atomic_load_explicit(&j->code, memory_order_relaxed);
    pf_unref(j, 1);
    return RP_OK;
}
