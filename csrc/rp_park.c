/* rp_park.c - the parking lot of rp_park.h; protocol in csrc/PARKING.md. */
#include "rp_park.h"

int
rp_park_init(rp_park *p)
{
    atomic_init(&p->sleepers, 0);
    if (rp_mutex_init(&p->mutex) != RP_OK)
        return RP_ENOMEM;
    if (rp_cond_init(&p->cond) != RP_OK) {
        rp_mutex_destroy(&p->mutex);
        return RP_ENOMEM;
    }
    return RP_OK;
}

void
rp_park_destroy(rp_park *p)
{
    rp_cond_destroy(&p->cond);
    rp_mutex_destroy(&p->mutex);
}

int
rp_park_sleep(rp_park *p, rp_park_ready_fn ready, void *arg, int64_t deadline_ns)
{
    int rc = RP_OK;
    rp_mutex_lock(&p->mutex);
    /* seq_cst: announce before re-checking the condition. Pairs with the
     * waker's seq_cst RMW on its condition followed by its seq_cst load of
     * sleepers in rp_park_notify_*: at least one side sees the other. */
    atomic_fetch_add_explicit(&p->sleepers, 1, memory_order_seq_cst);
    if (!ready(arg))
        rc = rp_cond_wait_until(&p->cond, &p->mutex, deadline_ns);
    atomic_fetch_sub_explicit(&p->sleepers, 1, memory_order_relaxed);
    rp_mutex_unlock(&p->mutex);
    return rc;
}

void
rp_park_notify_one(rp_park *p)
{
    /* seq_cst: the partner of the sleeper's fetch_add above. */
    if (atomic_load_explicit(&p->sleepers, memory_order_seq_cst) == 0)
        return;
    /* Taking the mutex orders the signal after a sleeper that announced
     * itself has entered its wait (it holds the mutex until then). */
    rp_mutex_lock(&p->mutex);
    rp_cond_signal(&p->cond);
    rp_mutex_unlock(&p->mutex);
}

void
rp_park_notify_all(rp_park *p)
{
    if (atomic_load_explicit(&p->sleepers, memory_order_seq_cst) == 0)
        return;
    rp_mutex_lock(&p->mutex);
    rp_cond_broadcast(&p->cond);
    rp_mutex_unlock(&p->mutex);
}

unsigned
rp_park_sleepers(rp_park *p)
{
    return atomic_load_explicit(&p->sleepers, memory_order_seq_cst);
}
