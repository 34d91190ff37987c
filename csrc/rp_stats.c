/* rp_stats.c - log-linear latency histograms (see rp_stats.h). */
#include "rp_stats.h"
#include "rp_sys.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <x86intrin.h>
#define RP_HAVE_TSC 1
#endif

#ifdef RP_HAVE_TSC
/* ns = base_ns + ((tsc - base_tsc) * mult) >> 32, published once by the
 * calibrating thread (release on `ready`, acquire in readers). */
static _Atomic int tsc_state; /* 0 unknown, 1 calibrating, 2 ready, 3 unusable */
static int64_t tsc_base_ns;
static uint64_t tsc_base, tsc_mult;

static void
tsc_calibrate(void)
{
    unsigned a, b, c, d;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&tsc_state, &expected, 1))
        return; /* another thread calibrates; rp_now_ns meanwhile */
    /* CPUID 0x80000007 EDX bit 8: invariant TSC (constant rate, never stops). */
    if (!__get_cpuid(0x80000007, &a, &b, &c, &d) || !(d & (1u << 8))) {
        atomic_store_explicit(&tsc_state, 3, memory_order_release);
        return;
    }
    int64_t n0 = rp_now_ns();
    uint64_t t0 = __rdtsc();
    int64_t n1;
    do {
        n1 = rp_now_ns();
    } while (n1 - n0 < 1000000); /* 1 ms: ~1e-4 relative error at worst */
    uint64_t t1 = __rdtsc();
    if (t1 <= t0) {
        atomic_store_explicit(&tsc_state, 3, memory_order_release);
        return;
    }
    tsc_mult = (uint64_t)(((unsigned __int128)(n1 - n0) << 32) / (t1 - t0));
    tsc_base = t1;
    tsc_base_ns = n1;
    /* release: publishes the factors; pairs with the acquire load below. */
    atomic_store_explicit(&tsc_state, 2, memory_order_release);
}
#endif

int64_t
rp_stats_now_ns(void)
{
#ifdef RP_HAVE_TSC
    int st = atomic_load_explicit(&tsc_state, memory_order_acquire);
    if (RP_LIKELY(st == 2)) {
        uint64_t dt = __rdtsc() - tsc_base;
        return tsc_base_ns + (int64_t)(((unsigned __int128)dt * tsc_mult) >> 32);
    }
    if (st == 0)
        tsc_calibrate();
#endif
    return rp_now_ns();
}

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
    /* count is not stored per record: merges derive it from the buckets. */
    add_relaxed(&h->counts[rp_hist_bucket(ns)], 1);
    add_relaxed(&h->sum_ns, ns);
    if (ns > atomic_load_explicit(&h->max_ns, memory_order_relaxed))
        atomic_store_explicit(&h->max_ns, ns, memory_order_relaxed);
}

void
rp_hist_merge(rp_hist_snapshot *out, const rp_hist *h)
{
    rp_hist *m = (rp_hist *)h; /* atomic loads take non-const pointers */
    for (unsigned i = 0; i < RP_HIST_BUCKETS; i++) {
        uint64_t n = atomic_load_explicit(&m->counts[i], memory_order_relaxed);
        out->counts[i] += n;
        out->count += n;
    }
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
    add_relaxed(&h->sum_ns, s.sum_ns);
    if (s.max_ns > atomic_load_explicit(&h->max_ns, memory_order_relaxed))
        atomic_store_explicit(&h->max_ns, s.max_ns, memory_order_relaxed);
}
