#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# The Python package (python/) under pytest, against the library make just
# built: every store this build has (the tests start their own redis and
# memcached servers on free loopback ports), the interop with a
# python-redis-lock-protocol client, Ctrl-C during a wait, fork, exit.
#
# The interpreter: $PYTHON if set, else the first of /usr/bin/python3 and
# python3 that has cffi and pytest (Debian's python3-cffi, python3-pytest:
# scripts/install-deps.sh installs them).  None is a failure, not a skip.
set -u
top_builddir=$(cd "${top_builddir:-.}" && pwd)
top_srcdir=$(cd "${top_srcdir:-.}" && pwd)
lib=$top_builddir/.libs/libanylock.so.0
if [ ! -e "$lib" ]; then
    echo "libanylock.so.0 not built (static-only build?): the Python package needs the shared library"
    exit 77
fi
py=""
for cand in ${PYTHON:-} /usr/bin/python3 python3; do
    if "$cand" -c 'import cffi, pytest' >/dev/null 2>&1; then
        py=$cand
        break
    fi
    [ -n "${PYTHON:-}" ] && break
done
if [ -z "$py" ]; then
    echo "FAIL: no Python 3 with cffi and pytest (${PYTHON:-/usr/bin/python3, python3}); run scripts/install-deps.sh"
    exit 1
fi
# A sanitizer build (scripts/check.sh asan): the runtime the library needs
# must come first in the interpreter, which is not built with it.  Leaks
# are the C tests' to find (the interpreter keeps memory to its end).
preload=$(ldd "$lib" 2>/dev/null | awk '$1 ~ /^lib(asan|ubsan)\.so/ {print $3}' | tr '\n' ' ')
if [ -n "$preload" ]; then
    LD_PRELOAD="$preload${LD_PRELOAD:+ $LD_PRELOAD}"
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
    export LD_PRELOAD ASAN_OPTIONS
    echo "# sanitizer build: LD_PRELOAD=$LD_PRELOAD"
fi
ANYLOCK_LIBRARY=$lib
PYTHONPATH=$top_srcdir/python${PYTHONPATH:+:$PYTHONPATH}
PYTHONDONTWRITEBYTECODE=1
export ANYLOCK_LIBRARY PYTHONPATH PYTHONDONTWRITEBYTECODE top_builddir top_srcdir
unset ANYLOCK_URL
cd "$top_builddir" || exit 1
# No hang past a bound: a stuck test fails the run after 15 minutes.
exec timeout -k 10 900 "$py" -m pytest -p no:cacheprovider -q -ra "$top_srcdir/python/tests"
