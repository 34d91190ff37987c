/* rp_park.h - parking lot: sleep until a condition holds, with no lost wake-ups.
 *
 * The protocol (csrc/PARKING.md has the proof sketch):
 *  - a waker first publishes its condition with a seq_cst read-modify-write
 *    (for the pool: the fetch-add on `pending`), then calls rp_park_notify_*,
 *    which reads `sleepers` with seq_cst and makes a syscall only when it is
 *    non-zero, so a busy pool pays no wake-up per task;
 *  - a sleeper calls rp_park_sleep, which increments `sleepers` (seq_cst RMW)
 *    under the lot's mutex, then evaluates `ready` (which must read the
 *    condition with seq_cst loads) and waits only if it is still false.
 * Either the waker sees sleepers > 0 (and then takes the mutex, so its signal
 * lands after the sleeper is inside the wait) or the sleeper sees the
 * condition; both orders cannot be missed (Dekker on two seq_cst variables).
 *
 * Any thread may call any function concurrently, except init/destroy.
 */
#ifndef RP_PARK_H
#define RP_PARK_H

#include "rp_common.h"
#include "rp_status.h"
#include "rp_sys.h"
#include <stdatomic.h>

typedef struct rp_park {
    _Alignas(RP_CACHELINE) _Atomic unsigned sleepers; /* threads inside rp_park_sleep */
    rp_mutex mutex;
    rp_cond cond;
} rp_park;

/* Returns nonzero when the sleeper must not (or need no longer) sleep. Called
 * with the lot's mutex held: it must not call back into this lot. */
typedef int (*rp_park_ready_fn)(void *arg);

RP_API int rp_park_init(rp_park *p);
RP_API void rp_park_destroy(rp_park *p);

/* Blocks until ready(arg) is true at a check, a notify arrives, or the
 * absolute monotonic deadline_ns passes (< 0: no deadline). Returns RP_OK if
 * ready was true or a wake-up arrived (the caller re-checks its condition:
 * wake-ups may be spurious), RP_ETIMEDOUT if the deadline passed. */
RP_API int rp_park_sleep(rp_park *p, rp_park_ready_fn ready, void *arg, int64_t deadline_ns);

/* Wake one sleeper / all sleepers, if there are any. Call after publishing the
 * condition with a seq_cst RMW (see the protocol above). */
RP_API void rp_park_notify_one(rp_park *p);
RP_API void rp_park_notify_all(rp_park *p);

/* Number of sleepers now (seq_cst load; a snapshot). */
RP_API unsigned rp_park_sleepers(rp_park *p);

#endif /* RP_PARK_H */
