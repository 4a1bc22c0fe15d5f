#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# Builds anylock from scratch and runs every test (make check), in a build
# directory of its own.
#
#   scripts/check.sh            the normal build (-Wall -Wextra -Werror)
#   scripts/check.sh asan       the same tests under AddressSanitizer + UBSan
#   scripts/check.sh tsan       the threaded tests under ThreadSanitizer
#   scripts/check.sh valgrind   the core, memory://, sqlite:// and file:// tests under
#                               valgrind memcheck: zero errors, zero leaks
#
# Every backend is required: a missing library is an error, not a skip.
# ANYLOCK_CONFIGURE_FLAGS replaces the --with-* flags (for a branch that does
# not have every backend yet); CI never sets it.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:-plain}
jobs=$(nproc 2>/dev/null || echo 2)
with=${ANYLOCK_CONFIGURE_FLAGS:---with-redis --with-memcached --with-sqlite --with-postgres --with-etcd}

# The programs a mode runs, when it runs a subset (those not built in this
# configuration are dropped).  TSan runs the programs that start threads;
# valgrind runs the core and the in-process backends (redis and memcached
# add nothing memcheck would see that ASan does not, at many times the cost).
tsan_tests="tests/test_api tests/test_memory tests/test_backends tests/test_faults tests/test_reliability tests/test_sqlite tests/test_redis tests/test_memcached tests/test_postgres tests/test_etcd tests/test_composite tests/test_file"
valgrind_tests="tests/test_url tests/test_api tests/test_memory tests/test_open tests/test_backends tests/test_faults tests/test_sqlite tests/test_file"
# What the instrumented runs leave out: the packaging checks (licence lines,
# manual pages, install, version, documented defaults) see no new code there.
packaging_tests="tests/test_spdx.sh tests/test_man.sh tests/test_install.sh tests/test_version.sh tests/test_docs.sh"
# The longest, started first so that the others fill the slots beside them.
slow_tests="tests/test_memcached tests/test_etcd tests/test_composite tests/test_redis tests/test_postgres tests/test_file tests/test_python.sh"
only=""

case "$mode" in
plain) dir=_build; san=""; only=all ;;
asan) dir=_build-asan; san="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"; only=code ;;
tsan) dir=_build-tsan; san="-fsanitize=thread"; only=$tsan_tests ;;
valgrind) dir=_build-valgrind; san=""; only=$valgrind_tests ;;
*) echo "usage: $0 [plain|asan|tsan|valgrind]" >&2; exit 64 ;;
esac

cd "$top"
[ -x configure ] || ./autogen.sh >/dev/null
rm -rf "$dir"
mkdir -p "$dir"
cd "$dir"
# shellcheck disable=SC2086
../configure $with CFLAGS="-g -O1 $san" LDFLAGS="$san" >configure.out || { cat configure.out; exit 1; }
make -j"$jobs" >make.out 2>&1 || { cat make.out; exit 1; }
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# A race report fails the test at once (exit 66) rather than being a warning.
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:exitcode=66}

check_args=()
# Build every check program first, into make.out like the rest of the
# build, so that what make check prints is the tests' results.
make -j"$jobs" check TESTS= >>make.out 2>&1 || { cat make.out; exit 1; }
if [ "$only" = all ] || [ "$only" = code ]; then
    list=""
    for t in $(make -s --no-print-directory print-tests); do
        if [ "$only" = code ]; then
            case " $packaging_tests " in *" $t "*) continue ;; esac
        fi
        list="$list $t"
    done
    only=$list
fi
# Keep the listed programs that exist, the slow ones first.
tests=""
for t in $slow_tests $only; do
    case " $only " in *" $t "*) ;; *) continue ;; esac
    case " $tests " in *" $t "*) continue ;; esac
    { [ -e "$t" ] || [ -e "$top/$t" ]; } && tests="$tests $t"
done
check_args+=("TESTS=${tests# }")
[ "$mode" = plain ] || echo "check.sh $mode: running${tests}"
# Instrumented builds run many times slower: the tests' short expiries are
# stretched (the conformance suite reads this).
case "$mode" in
valgrind) export ANYLOCK_TEST_TIME_SCALE=${ANYLOCK_TEST_TIME_SCALE:-6} ;;
asan | tsan) export ANYLOCK_TEST_TIME_SCALE=${ANYLOCK_TEST_TIME_SCALE:-2} ;;
esac
if [ "$mode" = valgrind ]; then
    # memcheck runs one process: Check must not fork, and its timeouts (which
    # only work when forking) give way to valgrind's slowness.
    export CK_FORK=no
    check_args+=("LOG_COMPILER=$PWD/libtool"
        "LOG_FLAGS=--mode=execute valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect --error-exitcode=1 --fair-sched=yes --track-fds=no")
fi
# Most tests spend their time waiting (for expiries, timeouts, servers):
# twice as many run at once as there are cores in the plain and TSan runs
# (a run under TSan kept the load of two cores below 0.7); one per core
# under ASan, where four at once once made test_redis's timed cases miss,
# and under valgrind, where they made test_sqlite's children miss their
# bounds.
case "$mode" in
asan | valgrind) test_jobs=$jobs ;;
*) test_jobs=$((jobs * 2)) ;;
esac
if ! make -s --no-print-directory -j"$test_jobs" check "${check_args[@]}"; then
    for log in tests/*.log; do
        grep -q '^FAIL\|^ERROR' "$log" 2>/dev/null || continue
        # Check's own failure lines and the first lines of each report
        # valgrind or a sanitizer made (a long leak report would push them
        # out of the tail), then the end of the log.
        echo "==== $log: failures"
        grep -E ':[FE]:|^FAILED |^FAIL: |Process terminating|ERROR SUMMARY: [1-9]|definitely lost in|SUMMARY: (Address|Undefined|Thread)|^(test|child|contender)' "$log" | head -n 40
        echo "==== $log: the end"
        tail -n 60 "$log"
    done
    exit 1
fi
