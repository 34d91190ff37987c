/* rp_ring.h - bounded multi-producer multi-consumer ring of pointers.
 *
 * Contract:
 *  - any number of threads may call rp_ring_try_push and rp_ring_try_pop at
 *    the same time; neither ever blocks, sleeps or takes a lock;
 *  - try_push returns RP_EFULL when the slot it needs is still occupied;
 *    try_pop returns RP_EEMPTY when the slot it needs is not yet published.
 *    Both can report this transiently while another thread is between its
 *    claim and its publish (Vyukov's queue is not linearisable there); callers
 *    that must not lose an item keep their own count (rp_pool's `pending`);
 *  - a pointer pushed once is popped at most once (exactly once if the ring is
 *    drained), and items from one producer come out in the order it pushed.
 *
 * Layout: per-cell sequence numbers (Dmitry Vyukov's bounded MPMC queue),
 * power-of-two capacity, producer and consumer indices on separate cache lines.
 * init/destroy are not thread-safe.
 */
#ifndef RP_RING_H
#define RP_RING_H

#include "rp_common.h"
#include "rp_status.h"
#include <stdatomic.h>

typedef struct rp_ring_cell {
    _Atomic size_t seq; /* == index: free for the push at index; == index+1: holds that item */
    void *item;
} rp_ring_cell;

typedef struct rp_ring {
    _Alignas(RP_CACHELINE) _Atomic size_t enq; /* next index producers claim */
    _Alignas(RP_CACHELINE) _Atomic size_t deq; /* next index consumers claim */
    _Alignas(RP_CACHELINE) size_t mask;        /* capacity - 1; read-only after init */
    rp_ring_cell *cells;
} rp_ring;

/* capacity must be a power of two >= 2, else RP_EINVAL; RP_ENOMEM on failure. */
RP_API int rp_ring_init(rp_ring *r, size_t capacity);
RP_API void rp_ring_destroy(rp_ring *r);
RP_API int rp_ring_try_push(rp_ring *r, void *item);
RP_API int rp_ring_try_pop(rp_ring *r, void **out);
/* A snapshot; exact only when no push or pop is in flight. */
RP_API size_t rp_ring_size(const rp_ring *r);
RP_API size_t rp_ring_capacity(const rp_ring *r);
/* Smallest power of two >= n (n <= SIZE_MAX/2), at least 2. */
RP_API size_t rp_ring_round_capacity(size_t n);

#endif /* RP_RING_H */
