/* rp_native.h - native tasks on the engine: batches and parallel_for.
 *
 * Both run user functions with the ABI of the public header ringpool.h
 * (src/ringpool/include/), on the pool's workers, with no Python anywhere.
 *
 * Batch. rp_batch_submit(p, fn, ...) runs fn(arg_i, ctx) for i in [0, n). It
 * does not push n tasks: it pushes up to `runners` runner tasks, each of which
 * claims blocks of items with one atomic add and runs them back to back, so a
 * million items cost a handful of ring operations. Per-item status (fn's
 * return value, or RP_STATUS_NOT_RUN) lands in an int32 array owned by the
 * batch. The batch ends when every item has either run or been marked
 * NOT_RUN (cancel, discarding shutdown, no worker could start); waiters are
 * then woken.
 *
 * parallel_for. rp_parallel_for(p, n, grain, kernel, arg, &code) splits [0, n)
 * into chunks of `grain` indices, pushes helper tasks and claims chunks on the
 * calling thread too; it returns when every chunk has run or been skipped.
 * The first non-zero return cancels the chunks not yet started (their
 * kernels' ctx->cancel turns non-zero too) and is reported in *code. Called
 * from one of p's own workers it runs every chunk inline (no helpers), so
 * nesting never waits for a worker that is busy waiting.
 *
 * Threads. Every function may be called from any thread; rp_batch_release once
 * per batch, by its owner. Memory stays valid until the owner released it AND
 * every runner task has been handed back by the engine (refcount).
 */
#ifndef RP_NATIVE_H
#define RP_NATIVE_H

#include "ringpool.h"
#include "rp_pool.h"

typedef struct rp_batch rp_batch;

/* Submits a batch of n items: item i gets arg `args[i]` when args != NULL
 * (the array is borrowed: keep it alive and unchanged until the batch is
 * done), else the integer start + i * step cast to a pointer. runners: how
 * many runner tasks to push at most (0: the pool's max_workers; never more
 * than there are blocks); block: items a runner claims at once (<= 0:
 * automatic, n / (8 * runners) clamped to 1..1024). If the first runner is
 * refused nothing is submitted; a later refusal just means fewer runners.
 * RP_OK (*out set; release it), RP_EINVAL (n < 0, fn NULL), RP_ENOMEM,
 * RP_ESHUTDOWN (pool closed: nothing submitted), RP_EFULL (a bounded queue had
 * no room for even one runner: nothing submitted). n == 0 gives a batch that
 * is already done. */
RP_API int rp_batch_submit(rp_pool *p, rp_native_fn fn, void *const *args, int64_t start,
                           int64_t step, int64_t n, unsigned runners, int64_t block,
                           rp_batch **out);
/* Waits until the batch is done (RP_OK) or the absolute monotonic deadline
 * (rp_now_ns clock; < 0: none) passes (RP_ETIMEDOUT). Call it without the GIL. */
RP_API int rp_batch_wait(rp_batch *b, int64_t deadline_ns);
/* 1 once every item has ended (then statuses are final), else 0. */
RP_API int rp_batch_done(rp_batch *b);
/* Items not yet started end with RP_STATUS_NOT_RUN (marked by this call, so
 * the batch is done as soon as the items already running return, even when
 * runners are queued behind long tasks); running items see their
 * ctx->cancel turn non-zero. Idempotent. Needs the owner's reference. */
RP_API void rp_batch_cancel(rp_batch *b);
RP_API int64_t rp_batch_size(const rp_batch *b);
/* The status array (n entries). An entry is final once rp_batch_done. */
RP_API const int32_t *rp_batch_status(const rp_batch *b);
/* Counts, exact once done: items that returned non-zero, items that never ran. */
RP_API int64_t rp_batch_failed(rp_batch *b);
RP_API int64_t rp_batch_not_run(rp_batch *b);
/* The owner's reference. Does not wait and does not cancel: runners finish
 * the items first (call rp_batch_cancel before to stop them). */
RP_API void rp_batch_release(rp_batch *b);

/* Runs kernel over [0, n) in chunks of grain indices (grain <= 0: automatic,
 * about n / (4 * (max_workers + 1)) rounded up, at least 1). Returns RP_OK
 * with *code = 0, or the first non-zero kernel return in *code (the other
 * chunks were then skipped or ran to completion); RP_EINVAL (n < 0, kernel
 * NULL), RP_ENOMEM. A closed pool, a full bounded queue or a failed thread
 * start just means fewer helpers: the caller runs the remaining chunks. */
RP_API int rp_parallel_for(rp_pool *p, int64_t n, int64_t grain, rp_kernel_fn kernel, void *arg,
                           int *code);

#endif /* RP_NATIVE_H */
