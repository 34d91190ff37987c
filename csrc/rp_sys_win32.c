/* rp_sys_win32.c - Win32 backend of rp_sys.h (Windows 7+; MSVC or mingw-w64).
 *
 * The build compiles this file instead of rp_sys_posix.c on Windows, plus the
 * portable rp_sys.c. Mapping:
 *   rp_mutex / rp_cond   SRWLOCK (exclusive) / CONDITION_VARIABLE: user-mode
 *                        locks that park in the kernel keyed-event (the Win32
 *                        analogue of a futex) only under contention; neither
 *                        allocates, so init cannot fail and destroy is empty;
 *   timed waits          the absolute rp_now_ns() deadline becomes a relative
 *                        millisecond timeout, rounded UP, and a timeout that
 *                        fires before the deadline (Windows timeouts run on
 *                        the tick interrupt, not on QueryPerformanceCounter)
 *                        waits again for the rest: RP_ETIMEDOUT is returned
 *                        only once the deadline has passed on rp_now_ns();
 *   rp_now_ns            QueryPerformanceCounter (monotonic, unaffected by
 *                        wall-clock changes; what Python 3.13+ uses for
 *                        time.monotonic() on Windows);
 *   threads              _beginthreadex (so the CRT's per-thread state is set
 *                        up), the stack size as a reservation;
 *   thread names         SetThreadDescription, looked up at run time
 *                        (Windows 10 1607+; nothing on older systems).
 */
#if !defined(_WIN32)
#error "rp_sys_win32.c is the Windows backend; build rp_sys_posix.c elsewhere"
#endif

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
#ifndef _WIN32_WINNT
#define _WIN32_WINNT 0x0601 /* Windows 7: SRWLOCK, condvars, GetActiveProcessorCount */
#endif

#include "rp_sys.h"
#include "rp_status.h"

#include <windows.h>
#include <limits.h>
#include <malloc.h>
#include <process.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if _WIN32_WINNT < 0x0601
#error "rp_sys_win32.c needs _WIN32_WINNT >= 0x0601 (Windows 7)"
#endif

/* rp_sys.h mirrors the Win32 types without including <windows.h>. */
RP_STATIC_ASSERT(sizeof(rp_mutex) == sizeof(SRWLOCK) && _Alignof(rp_mutex) >= _Alignof(SRWLOCK),
                 "rp_mutex must have the size and alignment of SRWLOCK");
RP_STATIC_ASSERT(sizeof(rp_cond) == sizeof(CONDITION_VARIABLE) &&
                     _Alignof(rp_cond) >= _Alignof(CONDITION_VARIABLE),
                 "rp_cond must have the size and alignment of CONDITION_VARIABLE");
RP_STATIC_ASSERT(sizeof(unsigned long) == sizeof(DWORD), "rp_thread.id must hold a DWORD");

/* The engine's objects are only ever touched through these API calls. */
static PSRWLOCK srw(rp_mutex *m) { return (PSRWLOCK)(void *)m; }
static PCONDITION_VARIABLE cv(rp_cond *c) { return (PCONDITION_VARIABLE)(void *)c; }

/* ---- mutex ------------------------------------------------------------------ */

int
rp_mutex_init(rp_mutex *m)
{
    InitializeSRWLock(srw(m));
    return RP_OK;
}

void rp_mutex_destroy(rp_mutex *m) { (void)m; /* an SRWLOCK owns no resources */ }
void rp_mutex_lock(rp_mutex *m) { AcquireSRWLockExclusive(srw(m)); }
int rp_mutex_trylock(rp_mutex *m) { return TryAcquireSRWLockExclusive(srw(m)) != 0; }
void rp_mutex_unlock(rp_mutex *m) { ReleaseSRWLockExclusive(srw(m)); }

/* ---- condition variable -------------------------------------------------- */

int
rp_cond_init(rp_cond *c)
{
    InitializeConditionVariable(cv(c));
    return RP_OK;
}

void rp_cond_destroy(rp_cond *c) { (void)c; /* a CONDITION_VARIABLE owns no resources */ }

void
rp_cond_wait(rp_cond *c, rp_mutex *m)
{
    SleepConditionVariableSRW(cv(c), srw(m), INFINITE, 0);
}

void rp_cond_signal(rp_cond *c) { WakeConditionVariable(cv(c)); }
void rp_cond_broadcast(rp_cond *c) { WakeAllConditionVariable(cv(c)); }

/* Nanoseconds to a millisecond timeout, rounded up (a wait must never be
 * shorter than asked), below INFINITE (which would mean "no timeout"). */
static DWORD
ms_timeout_up(int64_t ns)
{
    uint64_t ms = ((uint64_t)ns + 999999u) / 1000000u;
    return ms >= (uint64_t)INFINITE ? INFINITE - 1 : (DWORD)ms;
}

int
rp_cond_wait_until(rp_cond *c, rp_mutex *m, int64_t deadline_ns)
{
    if (deadline_ns < 0) {
        rp_cond_wait(c, m);
        return RP_OK;
    }
    for (;;) {
        int64_t rel = deadline_ns - rp_now_ns();
        if (rel <= 0)
            return RP_ETIMEDOUT;
        if (SleepConditionVariableSRW(cv(c), srw(m), ms_timeout_up(rel), 0))
            return RP_OK; /* woken (or spuriously): the caller re-checks */
        if (GetLastError() != ERROR_TIMEOUT)
            return RP_OK; /* not expected; a spurious wake-up is always allowed */
        /* Timed out, with the mutex held again. Loop: if the tick-based timer
         * fired before the deadline on QueryPerformanceCounter, wait out the
         * rest rather than report a timeout early. No signal can be missed in
         * between: signallers take the mutex, which this thread holds. */
    }
}

/* ---- clock ------------------------------------------------------------------- */

int64_t
rp_now_ns(void)
{
    /* The frequency is fixed at boot; read it once. Racing first callers
     * store the same value. */
    static _Atomic int64_t freq_cache;
    int64_t freq = atomic_load_explicit(&freq_cache, memory_order_relaxed);
    if (RP_UNLIKELY(freq == 0)) {
        LARGE_INTEGER f;
        QueryPerformanceFrequency(&f); /* never fails on Windows XP and later */
        freq = f.QuadPart > 0 ? f.QuadPart : 1;
        atomic_store_explicit(&freq_cache, freq, memory_order_relaxed);
    }
    LARGE_INTEGER now;
    QueryPerformanceCounter(&now);
    int64_t t = now.QuadPart;
    /* Split so the multiplication cannot overflow: (t % freq) * 1e9 stays below
     * 9.2e18 for any frequency up to 9.2 GHz (it is 10 MHz on Windows 10+). */
    return (t / freq) * 1000000000 + (t % freq) * 1000000000 / freq;
}

/* ---- threads ----------------------------------------------------------------- */

typedef struct rp_thread_start {
    void *(*fn)(void *);
    void *arg;
} rp_thread_start;

static unsigned __stdcall
thread_trampoline(void *p)
{
    rp_thread_start s = *(rp_thread_start *)p;
    free(p);
    (void)s.fn(s.arg);
    return 0;
}

/* The main thread's stack reserve: the executable's PE header field that the
 * loader used for it (python.exe: 2 MB; the MSVC default: 1 MB). */
static size_t
main_stack_reserve(void)
{
    const unsigned char *base = (const unsigned char *)GetModuleHandleW(NULL);
    if (base == NULL)
        return 0;
    const IMAGE_DOS_HEADER *dos = (const IMAGE_DOS_HEADER *)(const void *)base;
    if (dos->e_magic != IMAGE_DOS_SIGNATURE)
        return 0;
    const IMAGE_NT_HEADERS *nt = (const IMAGE_NT_HEADERS *)(const void *)(base + dos->e_lfanew);
    if (nt->Signature != IMAGE_NT_SIGNATURE)
        return 0;
    ULONGLONG r = nt->OptionalHeader.SizeOfStackReserve;
    return r > (ULONGLONG)SIZE_MAX ? SIZE_MAX : (size_t)r;
}

int
rp_thread_create(rp_thread *t, void *(*fn)(void *), void *arg, size_t stack_size)
{
    if (stack_size == 0) {
        /* As the POSIX backend: at least 8 MiB and at least the main thread's
         * stack, capped at 256 MiB. Only reserved address space: pages are
         * committed as the stack grows. */
        size_t main_reserve = main_stack_reserve();
        stack_size = (size_t)8 << 20;
        if (main_reserve > stack_size)
            stack_size = main_reserve < ((size_t)256 << 20) ? main_reserve : ((size_t)256 << 20);
    }
    /* _beginthreadex takes an unsigned: a larger request must fail, not wrap
     * around to a small (or the default) stack. */
    if (stack_size > UINT_MAX)
        return RP_ETHREAD;
    rp_thread_start *s = malloc(sizeof *s);
    if (s == NULL)
        return RP_ENOMEM;
    s->fn = fn;
    s->arg = arg;
    unsigned id = 0;
    uintptr_t h = _beginthreadex(NULL, (unsigned)stack_size, thread_trampoline, s,
                                 STACK_SIZE_PARAM_IS_A_RESERVATION, &id);
    if (h == 0) {
        free(s);
        return RP_ETHREAD;
    }
    t->handle = (void *)h;
    t->id = id;
    return RP_OK;
}

int
rp_thread_join(rp_thread t)
{
    /* Joining oneself would wait forever (pthread_join reports EDEADLK). */
    if (t.handle == NULL || t.id == GetCurrentThreadId())
        return RP_EINVAL;
    if (WaitForSingleObject((HANDLE)t.handle, INFINITE) != WAIT_OBJECT_0)
        return RP_EINVAL;
    CloseHandle((HANDLE)t.handle);
    return RP_OK;
}

void
rp_thread_detach(rp_thread t)
{
    /* The thread runs on; its kernel object goes when it exits. */
    if (t.handle != NULL)
        CloseHandle((HANDLE)t.handle);
}

typedef HRESULT(WINAPI *set_thread_description_fn)(HANDLE, PCWSTR);

void
rp_thread_set_name(const char *name)
{
    HMODULE k32 = GetModuleHandleW(L"kernel32.dll");
    if (k32 == NULL)
        return;
    /* Through void (*)(void): the documented generic function pointer, so
     * -Wcast-function-type accepts the cast from FARPROC. */
    set_thread_description_fn set_desc = (set_thread_description_fn)(void (*)(void))GetProcAddress(
        k32, "SetThreadDescription");
    if (set_desc == NULL)
        return; /* before Windows 10 1607 */
    /* 15 bytes, as Linux, cut back to a UTF-8 character boundary. */
    char buf[16];
    size_t n = strlen(name);
    if (n > sizeof buf - 1) {
        n = sizeof buf - 1;
        while (n > 0 && ((unsigned char)name[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(buf, name, n);
    buf[n] = '\0';
    wchar_t wbuf[16];
    if (MultiByteToWideChar(CP_UTF8, 0, buf, -1, wbuf, (int)(sizeof wbuf / sizeof wbuf[0])) == 0)
        return;
    set_desc(GetCurrentThread(), wbuf);
}

int rp_thread_equal(rp_thread a, rp_thread b) { return a.id == b.id; }

rp_thread
rp_thread_self(void)
{
    /* No handle: GetCurrentThread() is a pseudo-handle, meaningless to any
     * other thread. rp_thread_equal compares ids. */
    rp_thread t = {NULL, GetCurrentThreadId()};
    return t;
}

/* ---- scheduling ---------------------------------------------------------------- */

void rp_cpu_relax(void) { YieldProcessor(); }
void rp_thread_yield(void) { SwitchToThread(); }

void
rp_sleep_ns(int64_t ns)
{
    if (ns <= 0)
        return;
    /* Sleep works in (rounded-up) milliseconds on the tick; loop on the
     * monotonic clock so the sleep is never shorter than asked. */
    int64_t end = rp_now_ns() + ns;
    for (;;) {
        int64_t rel = end - rp_now_ns();
        if (rel <= 0)
            return;
        Sleep(ms_timeout_up(rel));
    }
}

unsigned
rp_cpu_count(void)
{
    /* All processor groups (machines with more than 64 logical CPUs), as
     * Python's os.cpu_count() counts them on Windows. */
    DWORD n = GetActiveProcessorCount(ALL_PROCESSOR_GROUPS);
    if (n == 0) {
        SYSTEM_INFO si;
        GetSystemInfo(&si);
        n = si.dwNumberOfProcessors;
    }
    return n > 0 ? (unsigned)n : 1u;
}

/* ---- memory -------------------------------------------------------------------- */

void *
rp_aligned_zalloc(size_t align, size_t size)
{
    /* The CRT has no aligned_alloc (its free() cannot release over-aligned
     * blocks); _aligned_malloc pairs with _aligned_free. */
    size = (size + align - 1) / align * align;
    void *m = _aligned_malloc(size ? size : align, align);
    if (m != NULL)
        memset(m, 0, size);
    return m;
}

void
rp_aligned_free(void *p)
{
    _aligned_free(p);
}
