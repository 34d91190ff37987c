#!/usr/bin/env bash
# tools/mingw-check.sh - prove the Win32 backend of the C engine from Linux.
#
# Cross-compiles the C engine (csrc/, with rp_sys_win32.c as the OS backend)
# and every C test (tests/c/*.c) with mingw-w64 at -Wall -Wextra -Werror into
# build-mingw/*.exe, then runs the tests under wine when wine is installed.
# Without wine it says so and exits 0 after the clean compile.
#
#   apt-get install mingw-w64 wine64     # Debian/Ubuntu (wine is optional)
#   tools/mingw-check.sh                 # compile, and run under wine if any
#   tools/mingw-check.sh --no-run        # compile only
#
# Environment: MINGW_CC (default x86_64-w64-mingw32-gcc), WINE (a wine binary),
# RP_TEST_SCALE / RP_TEST_FILTER (passed to the tests), MINGW_TEST_TIMEOUT_S
# (per test program, default 300 as CTest's TIMEOUT), BUILD_DIR (build-mingw).
#
# The engine objects are built WITHOUT pthreads; the script checks that no
# pthread symbol reaches librp_core.a. The tests themselves use pthreads
# directly (their harness is POSIX), which mingw-w64 provides as winpthreads;
# they are linked -static so wine needs no extra DLLs.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

run=1
for arg in "$@"; do
    case "$arg" in
    --no-run) run=0 ;;
    -h | --help)
        sed -n '2,21p' "$0"
        exit 0
        ;;
    *)
        echo "mingw-check: unknown argument: $arg" >&2
        exit 2
        ;;
    esac
done

cc=${MINGW_CC:-x86_64-w64-mingw32-gcc}
if ! command -v "$cc" >/dev/null 2>&1; then
    echo "mingw-check: $cc not found (apt-get install mingw-w64)" >&2
    exit 2
fi
triplet=${cc%-gcc}
ar=${MINGW_AR:-$triplet-ar}
nm=${MINGW_NM:-$triplet-nm}
out=${BUILD_DIR:-build-mingw}
mkdir -p "$out/obj"

cflags=(-std=c11 -O2 -Wall -Wextra -Werror -Icsrc -Isrc/ringpool/include)
engine=(rp_sys rp_sys_win32 rp_ring rp_park rp_stats rp_pool rp_native)

echo "mingw-check: $($cc --version | head -n1)"
t0=$(date +%s.%N)

# ---- the engine: no pthreads, Win32 backend ------------------------------------
objs=()
for src in "${engine[@]}"; do
    "$cc" "${cflags[@]}" -c "csrc/$src.c" -o "$out/obj/$src.o"
    objs+=("$out/obj/$src.o")
done
rm -f "$out/librp_core.a"
"$ar" rcs "$out/librp_core.a" "${objs[@]}"
if "$nm" -u "$out/librp_core.a" | grep -i pthread; then
    echo "mingw-check: FAIL: the engine references pthread symbols (above);" \
        "it must use only rp_sys.h's Win32 backend" >&2
    exit 1
fi
echo "mingw-check: engine OK ($out/librp_core.a, no pthread symbols)"

# ---- the C tests ---------------------------------------------------------------------
tests=()
for src in tests/c/*.c; do
    name=$(basename "$src" .c)
    "$cc" "${cflags[@]}" -Itests/c "$src" "$out/librp_core.a" -static -lpthread -o "$out/$name.exe"
    tests+=("$name")
done
t1=$(date +%s.%N)
printf 'mingw-check: compiled %d engine files and %d tests cleanly (-Wall -Wextra -Werror) in %.1f s\n' \
    "${#engine[@]}" "${#tests[@]}" "$(awk "BEGIN{print $t1 - $t0}")"

if [ "$run" = 0 ]; then
    echo "mingw-check: --no-run: not running the tests"
    exit 0
fi

# ---- run under wine -----------------------------------------------------------------
wine=${WINE:-}
if [ -z "$wine" ]; then
    for w in wine64 wine /usr/lib/wine/wine64 /usr/lib/wine/wine; do
        if command -v "$w" >/dev/null 2>&1; then
            wine=$(command -v "$w")
            break
        fi
    done
fi
if [ -z "$wine" ]; then
    echo "mingw-check: wine not found (apt-get install wine64): compiled only, tests NOT run"
    exit 0
fi

export WINEDEBUG=${WINEDEBUG:--all}
limit=${MINGW_TEST_TIMEOUT_S:-300}
echo "mingw-check: running the tests under $wine ($("$wine" --version 2>/dev/null || echo '?'))"
"$wine" cmd /c exit >/dev/null 2>&1 || true # create/update the prefix outside the timings

failed=()
for name in "${tests[@]}"; do
    log="$out/$name.log"
    s0=$(date +%s.%N)
    rc=0
    timeout --kill-after=10 "$limit" "$wine" "$out/$name.exe" >"$log" 2>&1 || rc=$?
    s1=$(date +%s.%N)
    # wine may turn "\n" into "\r\n" on the console; strip it for grepping.
    summary=$(tr -d '\r' <"$log" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n1 || true)
    secs=$(awk "BEGIN{print $s1 - $s0}")
    if [ "$rc" = 0 ] && [ -n "$summary" ] && [[ "$summary" == *" 0 failed" ]]; then
        printf '  PASS %-12s %6.1f s  %s\n' "$name" "$secs" "$summary"
    else
        printf '  FAIL %-12s %6.1f s  exit %s  %s\n' "$name" "$secs" "$rc" "${summary:-no summary line}"
        tr -d '\r' <"$log" | grep -E '^\[FAIL\]|WATCHDOG|FAIL|failed' | head -n 40 | sed 's/^/    /'
        failed+=("$name")
    fi
done

if [ "${#failed[@]}" -ne 0 ]; then
    echo "mingw-check: FAILED under wine: ${failed[*]} (logs in $out/*.log)"
    exit 1
fi
echo "mingw-check: all ${#tests[@]} test programs passed under wine (logs in $out/*.log)"
