/* rp_status.h - status codes returned by every fallible engine call.
 *
 * 0 is success; errors are negative so callers can test `rc < 0`. The Python
 * binding maps each code to an exception in one place (_core.pyx: _check).
 */
#ifndef RP_STATUS_H
#define RP_STATUS_H

#include "rp_common.h"

typedef enum rp_status {
    RP_OK = 0,
    RP_EFULL = -1,      /* bounded queue is full (or ring has no free slot) */
    RP_EEMPTY = -2,     /* nothing to pop */
    RP_ESHUTDOWN = -3,  /* the pool no longer accepts tasks */
    RP_ENOMEM = -4,     /* allocation failed */
    RP_EINVAL = -5,     /* an argument is out of range */
    RP_ETHREAD = -6,    /* a thread could not be created */
    RP_ETIMEDOUT = -7,  /* a timed wait ran out */
    RP_EDEADLK = -8,    /* the call would wait for the calling thread itself */
    RP_EINTR = -9       /* a wait was abandoned by its check callback */
} rp_status;

RP_API const char *rp_strerror(int status);

#endif /* RP_STATUS_H */
