#!/usr/bin/env bash
# Builds anylock from scratch and runs every test (make check), in a build
# directory of its own.
#
#   scripts/check.sh            the normal build (-Wall -Wextra -Werror)
#   scripts/check.sh asan       the same tests under AddressSanitizer + UBSan
#
# Every backend is required: a missing library is an error, not a skip.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:-plain}
jobs=$(nproc 2>/dev/null || echo 2)

case "$mode" in
plain) dir=_build; san="" ;;
asan) dir=_build-asan; san="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" ;;
*) echo "usage: $0 [plain|asan]" >&2; exit 64 ;;
esac

cd "$top"
[ -x configure ] || ./autogen.sh >/dev/null
rm -rf "$dir"
mkdir -p "$dir"
cd "$dir"
../configure --with-redis --with-memcached --with-sqlite \
    CFLAGS="-g -O1 $san" LDFLAGS="$san" >configure.out || { cat configure.out; exit 1; }
make -j"$jobs" >make.out 2>&1 || { cat make.out; exit 1; }
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
if ! make -j"$jobs" check; then
    for log in tests/*.log; do
        grep -q '^FAIL\|^ERROR' "$log" 2>/dev/null && { echo "==== $log"; tail -n 60 "$log"; }
    done
    exit 1
fi
