/* rp_stats.c - log-linear latency histograms (see rp_stats.h). */
#include "rp_stats.h"

static inline unsigned
log2_floor(uint64_t v)
{
#if defined(__GNUC__) || defined(__clang__)
    return 63u - (unsigned)__builtin_clzll(v);
#else
    unsigned r = 0;
    while (v >>= 1)
        r++;
    return r;
#endif
}

unsigned
rp_hist_bucket(uint64_t ns)
{
    if (ns < ((uint64_t)1 << RP_HIST_MIN_SHIFT))
        return (unsigned)(ns >> (RP_HIST_MIN_SHIFT - RP_HIST_SUB_BITS));
    unsigned e = log2_floor(ns);
    if (e > RP_HIST_MAX_SHIFT)
        return RP_HIST_BUCKETS - 1;
    unsigned sub = (unsigned)(ns >> (e - RP_HIST_SUB_BITS)) & (RP_HIST_SUB - 1);
    return RP_HIST_SUB + (e - RP_HIST_MIN_SHIFT) * RP_HIST_SUB + sub;
}

uint64_t
rp_hist_bucket_lower(unsigned index)
{
    if (index < RP_HIST_SUB)
        return (uint64_t)index << (RP_HIST_MIN_SHIFT - RP_HIST_SUB_BITS);
    if (index >= RP_HIST_BUCKETS - 1)
        return (uint64_t)1 << (RP_HIST_MAX_SHIFT + 1);
    unsigned e = (index - RP_HIST_SUB) / RP_HIST_SUB + RP_HIST_MIN_SHIFT;
    unsigned sub = (index - RP_HIST_SUB) % RP_HIST_SUB;
    return ((uint64_t)1 << e) + ((uint64_t)sub << (e - RP_HIST_SUB_BITS));
}

uint64_t
rp_hist_bucket_upper(unsigned index)
{
    if (index >= RP_HIST_BUCKETS - 1)
        return UINT64_MAX;
    return rp_hist_bucket_lower(index + 1);
}

/* Single-writer increment: a relaxed load and store, no locked instruction. */
static inline void
add_relaxed(_Atomic uint64_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

void
rp_hist_record(rp_hist *h, uint64_t ns)
{
    add_relaxed(&h->counts[rp_hist_bucket(ns)], 1);
    add_relaxed(&h->count, 1);
    add_relaxed(&h->sum_ns, ns);
    if (ns > atomic_load_explicit(&h->max_ns, memory_order_relaxed))
        atomic_store_explicit(&h->max_ns, ns, memory_order_relaxed);
}

void
rp_hist_merge(rp_hist_snapshot *out, const rp_hist *h)
{
    rp_hist *m = (rp_hist *)h; /* atomic loads take non-const pointers */
    for (unsigned i = 0; i < RP_HIST_BUCKETS; i++)
        out->counts[i] += atomic_load_explicit(&m->counts[i], memory_order_relaxed);
    out->count += atomic_load_explicit(&m->count, memory_order_relaxed);
    out->sum_ns += atomic_load_explicit(&m->sum_ns, memory_order_relaxed);
    uint64_t mx = atomic_load_explicit(&m->max_ns, memory_order_relaxed);
    if (mx > out->max_ns)
        out->max_ns = mx;
}

void
rp_hist_add(rp_hist *h, const rp_hist *src)
{
    rp_hist_snapshot s = {{0}, 0, 0, 0};
    rp_hist_merge(&s, src);
    for (unsigned i = 0; i < RP_HIST_BUCKETS; i++)
        add_relaxed(&h->counts[i], s.counts[i]);
    add_relaxed(&h->count, s.count);
    add_relaxed(&h->sum_ns, s.sum_ns);
    if (s.max_ns > atomic_load_explicit(&h->max_ns, memory_order_relaxed))
        atomic_store_explicit(&h->max_ns, s.max_ns, memory_order_relaxed);
}
