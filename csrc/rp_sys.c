/* rp_sys.c - the portable part of the OS shim (rp_sys.h): what needs no
 * operating-system API. The OS backends are rp_sys_posix.c and
 * rp_sys_win32.c; the build compiles this file and exactly one of those. */
#include "rp_sys.h"
#include "rp_status.h"

const char *
rp_strerror(int status)
{
    switch (status) {
    case RP_OK: return "ok";
    case RP_EFULL: return "queue is full";
    case RP_EEMPTY: return "queue is empty";
    case RP_ESHUTDOWN: return "pool is shut down";
    case RP_ENOMEM: return "out of memory";
    case RP_EINVAL: return "invalid argument";
    case RP_ETHREAD: return "cannot start a thread";
    case RP_ETIMEDOUT: return "timed out";
    case RP_EDEADLK: return "would wait for the calling thread";
    case RP_EINTR: return "wait interrupted";
    default: return "unknown error";
    }
}
