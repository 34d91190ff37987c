/* rp_common.h - shared macros for the ringpool C engine. No logic lives here.
 *
 * The engine is plain C11 (<stdatomic.h>, pthreads behind rp_sys.h) and never
 * includes Python.h: it sees tasks only as rp_task pointers (rp_pool.h).
 */
#ifndef RP_COMMON_H
#define RP_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* Cache line size used to keep producer and consumer state apart. 128 covers
 * the adjacent-line prefetcher on x86 and the 128-byte lines of Apple M-series. */
#define RP_CACHELINE 128

#if defined(__GNUC__) || defined(__clang__)
#define RP_LIKELY(x) __builtin_expect(!!(x), 1)
#define RP_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define RP_INLINE static inline __attribute__((always_inline))
#else
#define RP_LIKELY(x) (x)
#define RP_UNLIKELY(x) (x)
#define RP_INLINE static inline
#endif

/* Symbols the Python extension links against; the static library is built with
 * hidden visibility, so nothing leaks out of the extension module. */
#define RP_API

#define RP_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)

/* Thread-local storage: MSVC's C mode spells it __declspec(thread). */
#if defined(_MSC_VER) && !defined(__clang__)
#define RP_THREAD_LOCAL __declspec(thread)
#else
#define RP_THREAD_LOCAL _Thread_local
#endif

#endif /* RP_COMMON_H */
