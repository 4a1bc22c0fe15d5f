#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# The version has one home, ANYLOCK_VERSION_STRING in include/anylock.h;
# every other place that states it agrees: the header's other macros,
# configure's PACKAGE_VERSION (read from the header by AC_INIT), anylock.pc,
# the CMake package, the command and the Python package (the library's
# anylock_version() is checked by tests/test_api.c).
set -u
top_srcdir=${top_srcdir:-.}
top_builddir=${top_builddir:-.}
h="$top_srcdir/include/anylock.h"
fail=0
macro() { sed -n "s/^#define $1 \"*\([^\"]*\)\"*\$/\1/p" "$h"; }
version=$(macro ANYLOCK_VERSION_STRING)
major=$(macro ANYLOCK_VERSION_MAJOR) minor=$(macro ANYLOCK_VERSION_MINOR) patch=$(macro ANYLOCK_VERSION_PATCH)
number=$(macro ANYLOCK_VERSION_NUMBER)

check() { # WHAT VALUE
    if [ "$2" = "$version" ]; then
        echo "ok: $1 is $version"
    else
        echo "FAIL: $1 is '$2', include/anylock.h says $version (rerun ./autogen.sh and configure if it is configure's)"
        fail=1
    fi
}

case "$version" in
[0-9]*.[0-9]*.[0-9]*) ;;
*) echo "FAIL: ANYLOCK_VERSION_STRING '$version' is not MAJOR.MINOR.PATCH"; exit 1 ;;
esac
check "ANYLOCK_VERSION_MAJOR.MINOR.PATCH" "$major.$minor.$patch"
if [ "$number" = "$((major * 1000000 + minor * 1000 + patch))" ]; then
    echo "ok: ANYLOCK_VERSION_NUMBER is $number"
else
    echo "FAIL: ANYLOCK_VERSION_NUMBER is $number, not MAJOR * 1000000 + MINOR * 1000 + PATCH"
    fail=1
fi
check "configure's PACKAGE_VERSION (config.h)" \
    "$(sed -n 's/^#define PACKAGE_VERSION "\(.*\)"$/\1/p' "$top_builddir/config.h")"
check "anylock.pc's Version" "$(sed -n 's/^Version: //p' "$top_builddir/anylock.pc")"
check "the CMake package's version" \
    "$(sed -n 's/^set(PACKAGE_VERSION "\(.*\)")$/\1/p' "$top_builddir/cmake/anylock-config-version.cmake")"
check "the command's --version" \
    "$("$top_builddir/cli/anylock" --version | head -n 1 | sed -n 's/^anylock \([^ ]*\).*/\1/p')"
check "the Python package's pyproject.toml" \
    "$(sed -n 's/^version = "\(.*\)"$/\1/p' "$top_srcdir/python/pyproject.toml")"
check "the Python package's __version__" \
    "$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$top_srcdir/python/anylock/__init__.py")"
exit $fail
