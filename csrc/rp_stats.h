/* rp_stats.h - latency histograms and counter shards for the pool's metrics.
 *
 * Contract: each rp_hist has ONE writer (the worker that owns it), which
 * records with relaxed loads and stores (no locked instruction, no shared
 * cache line); any thread may read it concurrently with rp_hist_merge, which
 * sees every count at most slightly stale and never torn. Merging into a
 * private rp_hist_snapshot happens on read, off the hot path.
 *
 * Buckets are log-linear: 16 linear sub-buckets per power of two (so a
 * bucket is at most 1/16 of its lower bound wide) from 2^10 ns (~1 us) to
 * 2^38 ns (~275 s); 16 linear buckets of 64 ns below 1 us, one overflow
 * bucket above.
 */
#ifndef RP_STATS_H
#define RP_STATS_H

#include "rp_common.h"
#include <stdatomic.h>

#define RP_HIST_SUB_BITS 4
#define RP_HIST_SUB (1 << RP_HIST_SUB_BITS)
#define RP_HIST_MIN_SHIFT 10
#define RP_HIST_MAX_SHIFT 37
#define RP_HIST_BUCKETS (RP_HIST_SUB + (RP_HIST_MAX_SHIFT - RP_HIST_MIN_SHIFT + 1) * RP_HIST_SUB + 1)

typedef struct rp_hist {
    _Atomic uint64_t counts[RP_HIST_BUCKETS];
    _Atomic uint64_t sum_ns;
    _Atomic uint64_t max_ns;
} rp_hist;

typedef struct rp_hist_snapshot {
    uint64_t counts[RP_HIST_BUCKETS];
    uint64_t count;
    uint64_t sum_ns;
    uint64_t max_ns;
} rp_hist_snapshot;

/* The clock of the latency metrics, in nanoseconds: on x86-64 with an
 * invariant TSC, rdtsc scaled by a factor calibrated once against rp_now_ns
 * (about 3x cheaper than clock_gettime, which the recording path pays up to
 * twice per task); elsewhere rp_now_ns itself. Monotonic per thread; across
 * threads it is as consistent as the TSC (negative differences are clamped
 * by the callers). Thread-safe; the first call calibrates (about 1 ms). */
RP_API int64_t rp_stats_now_ns(void);

/* The bucket a value (ns) falls in, and a bucket's [lower, upper) bounds. */
RP_API unsigned rp_hist_bucket(uint64_t ns);
RP_API uint64_t rp_hist_bucket_lower(unsigned index);
RP_API uint64_t rp_hist_bucket_upper(unsigned index); /* UINT64_MAX for the overflow bucket */

/* Single writer only. */
RP_API void rp_hist_record(rp_hist *h, uint64_t ns);
/* Any thread: adds h's current counts into out (out is private). */
RP_API void rp_hist_merge(rp_hist_snapshot *out, const rp_hist *h);
/* Adds a snapshot into a histogram under the caller's lock (used when a
 * worker exits and its histograms fold into the pool's). */
RP_API void rp_hist_add(rp_hist *h, const rp_hist *src);

#endif /* RP_STATS_H */
