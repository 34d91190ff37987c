# Declarations only: a mirror of the C engine's headers (csrc/rp_*.h).
# Keep in sync with the headers; logic lives in _core.pyx.
from libc.stdint cimport int32_t, int64_t, uint64_t

cdef extern from "rp_status.h" nogil:
    enum:
        RP_OK
        RP_EFULL
        RP_EEMPTY
        RP_ESHUTDOWN
        RP_ENOMEM
        RP_EINVAL
        RP_ETHREAD
        RP_ETIMEDOUT
        RP_EDEADLK
        RP_EINTR
    const char *rp_strerror(int status)

cdef extern from "rp_sys.h" nogil:
    int64_t rp_now_ns()
    void rp_cpu_relax()
    void rp_thread_yield()
    unsigned rp_cpu_count()

cdef extern from "rp_stats.h" nogil:
    enum:
        RP_HIST_BUCKETS
    ctypedef struct rp_hist_snapshot:
        uint64_t counts[RP_HIST_BUCKETS]
        uint64_t count
        uint64_t sum_ns
        uint64_t max_ns
    unsigned rp_hist_bucket(uint64_t ns)
    uint64_t rp_hist_bucket_lower(unsigned index)
    uint64_t rp_hist_bucket_upper(unsigned index)

cdef extern from "rp_pool.h" nogil:
    ctypedef struct rp_pool:
        pass
    ctypedef struct rp_worker:
        pass
    ctypedef struct rp_task

    enum:
        RP_OUTCOME_COMPLETED
        RP_OUTCOME_FAILED
        RP_OUTCOME_CANCELLED
        RP_OUTCOME_RAISED
        RP_OUTCOME_OVERRAN
    enum:
        RP_DISCARD_CANCELLED
        RP_DISCARD_SHUTDOWN
        RP_DISCARD_EXPIRED
    enum:
        RP_OPS_NOGIL
    enum:
        RP_TIMER_RELEASE
        RP_TIMER_EXPIRED
        RP_TIMER_OVERRUN
    enum:
        RP_TASK_QUEUED
        RP_TASK_RUNNING
        RP_TASK_CANCELLED
        RP_TASK_DONE
        RP_TASK_EXPIRED

    ctypedef struct rp_task_ops:
        int (*run)(rp_task *task, rp_worker *worker) noexcept nogil
        void (*discard)(rp_task *task, int reason) noexcept nogil
        void (*timer)(rp_task *task, int event) noexcept nogil
        unsigned flags

    ctypedef struct rp_task:
        const rp_task_ops *ops
        void *data
        int state
        int cancel
        int64_t submit_ns
        int64_t deadline_ns

    ctypedef struct rp_pool_hooks:
        int (*worker_start)(void *ctx, rp_worker *w, void **local) noexcept nogil
        void (*worker_idle)(void *ctx, rp_worker *w) noexcept nogil
        void (*worker_stop)(void *ctx, rp_worker *w) noexcept nogil
        void (*pool_free)(void *ctx) noexcept nogil
        int (*timer_start)(void *ctx, void **local) noexcept nogil
        void (*timer_stop)(void *ctx, void *local) noexcept nogil
        void (*worker_nogil)(void *ctx, rp_worker *w) noexcept nogil

    ctypedef struct rp_pool_config:
        unsigned min_workers
        unsigned max_workers
        size_t queue_capacity
        size_t ring_capacity
        int64_t keep_alive_ns
        int64_t spin_ns
        size_t stack_size
        const char *name
        int metrics
        const rp_pool_hooks *hooks
        void *hooks_ctx

    ctypedef enum rp_shutdown_mode:
        RP_SHUTDOWN_DRAIN
        RP_SHUTDOWN_DISCARD

    ctypedef struct rp_pool_stats:
        uint64_t submitted
        uint64_t started
        uint64_t completed
        uint64_t failed
        uint64_t panics
        uint64_t cancelled
        uint64_t expired
        uint64_t overran
        uint64_t overrunning
        uint64_t rejected
        uint64_t queued
        uint64_t running
        unsigned live_workers
        unsigned idle_workers
        unsigned peak_workers
        unsigned min_workers
        unsigned max_workers
        size_t queue_capacity
        unsigned blocked_submitters
        uint64_t blocked_ns_total
        uint64_t blocked_ns_max
        int closed

    void rp_pool_config_init(rp_pool_config *cfg)
    int rp_pool_create(const rp_pool_config *cfg, rp_pool **out)
    int rp_pool_submit(rp_pool *p, rp_task *t)
    int rp_pool_submit_wait(rp_pool *p, rp_task *t, int64_t deadline_ns)
    ctypedef int (*rp_wait_check_fn)(void *arg) noexcept nogil
    int rp_pool_submit_wait_ex(rp_pool *p, rp_task *t, int64_t deadline_ns,
                               int64_t check_every_ns, rp_wait_check_fn check, void *arg)
    void rp_pool_count_rejected(rp_pool *p)
    int rp_pool_shutdown(rp_pool *p, rp_shutdown_mode mode)
    int rp_pool_join(rp_pool *p, int64_t deadline_ns)
    int rp_pool_resize(rp_pool *p, unsigned min_workers, unsigned max_workers)
    void rp_pool_stats_get(rp_pool *p, rp_pool_stats *out)
    uint64_t rp_pool_queued(rp_pool *p)
    unsigned rp_live_threads()
    void rp_after_fork_child()
    int rp_pool_wait_busy(rp_pool *p, int64_t deadline_ns)
    void rp_pool_latency(rp_pool *p, rp_hist_snapshot *queue_wait, rp_hist_snapshot *run_time)
    void rp_pool_release(rp_pool *p)
    int rp_task_cancel(rp_task *t)
    void rp_task_request_cancel(rp_task *t)
    int rp_task_disarm(rp_task *t)
    int rp_task_cancel_requested(const rp_task *t)
    unsigned rp_worker_index(const rp_worker *w)
    void *rp_worker_local(const rp_worker *w)
    rp_pool *rp_worker_pool(const rp_worker *w)
    rp_worker *rp_worker_current()

cdef extern from "ringpool.h" nogil:
    ctypedef struct rp_task_ctx:
        int worker
        const int *cancel
        int64_t deadline_ns
        void *reserved
    ctypedef int (*rp_native_fn)(void *arg, rp_task_ctx *ctx) noexcept nogil
    ctypedef int (*rp_kernel_fn)(int64_t begin, int64_t end, void *arg, rp_task_ctx *ctx) noexcept nogil
    const char *RP_NATIVE_FN_SIGNATURE
    const char *RP_KERNEL_FN_SIGNATURE
    enum:
        RP_STATUS_NOT_RUN
        RINGPOOL_ABI_VERSION
    int RP_CANCELLED(rp_task_ctx *ctx)

cdef extern from "rp_native.h" nogil:
    ctypedef struct rp_batch:
        pass
    int rp_batch_submit(rp_pool *p, rp_native_fn fn, void **args, int64_t start, int64_t step,
                        int64_t n, unsigned runners, int64_t block, rp_batch **out)
    int rp_batch_wait(rp_batch *b, int64_t deadline_ns)
    int rp_batch_done(rp_batch *b)
    void rp_batch_cancel(rp_batch *b)
    int64_t rp_batch_size(const rp_batch *b)
    const int32_t *rp_batch_status(const rp_batch *b)
    int64_t rp_batch_failed(rp_batch *b)
    int64_t rp_batch_not_run(rp_batch *b)
    void rp_batch_release(rp_batch *b)
    int rp_parallel_for(rp_pool *p, int64_t n, int64_t grain, rp_kernel_fn kernel, void *arg, int *code)
