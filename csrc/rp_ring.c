/* rp_ring.c - Dmitry Vyukov's bounded MPMC queue, holding void pointers.
 *
 * Each cell carries a sequence number. For the producer that claims index i,
 * cell[i & mask].seq == i means "free"; it stores the item and publishes
 * seq = i + 1. For the consumer that claims index i, seq == i + 1 means "full";
 * it takes the item and frees the cell for the next lap with seq = i + mask + 1.
 * Producers and consumers claim indices with a CAS on enq/deq, which live on
 * separate cache lines.
 */
#include "rp_ring.h"

#include <stdlib.h>

size_t
rp_ring_round_capacity(size_t n)
{
    size_t c = 2;
    while (c < n)
        c <<= 1;
    return c;
}

int
rp_ring_init(rp_ring *r, size_t capacity)
{
    if (capacity < 2 || (capacity & (capacity - 1)) != 0)
        return RP_EINVAL;
    if (capacity > SIZE_MAX / sizeof *r->cells)
        return RP_ENOMEM;
    r->cells = malloc(capacity * sizeof *r->cells);
    if (r->cells == NULL)
        return RP_ENOMEM;
    for (size_t i = 0; i < capacity; i++) {
        atomic_init(&r->cells[i].seq, i);
        r->cells[i].item = NULL;
    }
    r->mask = capacity - 1;
    atomic_init(&r->enq, 0);
    atomic_init(&r->deq, 0);
    return RP_OK;
}

void
rp_ring_destroy(rp_ring *r)
{
    free(r->cells);
    r->cells = NULL;
}

int
rp_ring_try_push(rp_ring *r, void *item)
{
    size_t pos = atomic_load_explicit(&r->enq, memory_order_relaxed);
    for (;;) {
        rp_ring_cell *cell = &r->cells[pos & r->mask];
        /* acquire: pairs with the release store of seq in rp_ring_try_pop, so
         * the consumer's read of the old item happens before we overwrite it. */
        size_t seq = atomic_load_explicit(&cell->seq, memory_order_acquire);
        intptr_t dif = (intptr_t)seq - (intptr_t)pos;
        if (dif == 0) {
            /* relaxed: the CAS only claims the index; the item is published by
             * the release store of seq below. */
            if (atomic_compare_exchange_weak_explicit(&r->enq, &pos, pos + 1,
                                                      memory_order_relaxed,
                                                      memory_order_relaxed)) {
                cell->item = item;
                /* release: publishes item; pairs with the acquire load of seq
                 * in rp_ring_try_pop. */
                atomic_store_explicit(&cell->seq, pos + 1, memory_order_release);
                return RP_OK;
            }
            /* CAS failure reloaded pos; try the new index. */
        } else if (dif < 0) {
            return RP_EFULL; /* the cell still holds the item from one lap ago */
        } else {
            pos = atomic_load_explicit(&r->enq, memory_order_relaxed);
        }
    }
}

int
rp_ring_try_pop(rp_ring *r, void **out)
{
    size_t pos = atomic_load_explicit(&r->deq, memory_order_relaxed);
    for (;;) {
        rp_ring_cell *cell = &r->cells[pos & r->mask];
        /* acquire: pairs with the release store in rp_ring_try_push, so the
         * item written before it is visible here. */
        size_t seq = atomic_load_explicit(&cell->seq, memory_order_acquire);
        intptr_t dif = (intptr_t)seq - (intptr_t)(pos + 1);
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&r->deq, &pos, pos + 1,
                                                      memory_order_relaxed,
                                                      memory_order_relaxed)) {
                *out = cell->item;
                /* release: our read of item happens before the next lap's
                 * producer writes it; pairs with its acquire load of seq. */
                atomic_store_explicit(&cell->seq, pos + r->mask + 1, memory_order_release);
                return RP_OK;
            }
        } else if (dif < 0) {
            return RP_EEMPTY; /* not yet published for this lap */
        } else {
            pos = atomic_load_explicit(&r->deq, memory_order_relaxed);
        }
    }
}

size_t
rp_ring_size(const rp_ring *r)
{
    size_t d = atomic_load_explicit(&((rp_ring *)r)->deq, memory_order_relaxed);
    size_t e = atomic_load_explicit(&((rp_ring *)r)->enq, memory_order_relaxed);
    return e > d ? e - d : 0;
}

size_t
rp_ring_capacity(const rp_ring *r)
{
    return r->mask + 1;
}
