#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# What a program built against an installed anylock sees: `make install`
# into a temporary DESTDIR, then examples/hello.c built three ways against
# that installation only (never the build tree) and run:
#   - with pkg-config (cc hello.c $(pkg-config --cflags --libs anylock));
#   - against libanylock.a, with what anylock.pc's Libs.private and
#     Requires.private name, which must be complete;
#   - with CMake: find_package(anylock VERSION CONFIG), anylock::anylock,
#     and again once only the static library is left.
# The compiler and flags are the build's own (ANYLOCK_TEST_CC, _CFLAGS,
# _LDFLAGS from make), so that sanitizer builds link their runtime.
set -u
top_srcdir=${top_srcdir:-.}
top_builddir=${top_builddir:-.}
cc=${ANYLOCK_TEST_CC:-cc}
cflags=${ANYLOCK_TEST_CFLAGS:-}
ldflags=${ANYLOCK_TEST_LDFLAGS:-}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/anylock-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
fail=0
version=$(sed -n 's/^#define ANYLOCK_VERSION_STRING "\(.*\)"$/\1/p' "$top_srcdir/include/anylock.h")

# A make of its own, not the one running the tests (no inherited TESTS=,
# jobserver or -k).
if ! env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL "${MAKE:-make}" -C "$top_builddir" install DESTDIR="$root" \
    >"$tmp/install.log" 2>&1; then
    cat "$tmp/install.log"
    echo "FAIL: make install DESTDIR=$root"
    exit 1
fi
pcfile=$(find "$root" -name anylock.pc | head -n 1)
cmakecfg=$(find "$root" -name anylock-config.cmake | head -n 1)
[ -n "$pcfile" ] || { echo "FAIL: make install installed no anylock.pc"; exit 1; }
[ -n "$cmakecfg" ] || { echo "FAIL: make install installed no anylock-config.cmake"; exit 1; }
echo "installed: ${pcfile#"$root"}, ${cmakecfg#"$root"}"
case "$cmakecfg" in
*/lib*/cmake/anylock/anylock-config.cmake) ;;
*) echo "FAIL: the CMake package is not under LIBDIR/cmake/anylock"; fail=1 ;;
esac

# pkg-config, relocated into the DESTDIR: -I and -L get the root in front.
export PKG_CONFIG_PATH="$(dirname "$pcfile")"
export PKG_CONFIG_SYSROOT_DIR="$root"
unset PKG_CONFIG_LIBDIR
var() { # a directory anylock.pc names, inside the DESTDIR
    v=$(pkg-config --variable="$1" anylock)
    case "$v" in "$root"/*) echo "$v" ;; *) echo "$root$v" ;; esac
}
libdir=$(var libdir)
pc_version=$(pkg-config --modversion anylock)
[ "$pc_version" = "$version" ] || { echo "FAIL: anylock.pc has version $pc_version, the header $version"; fail=1; }

# The modules of the stores built in, from configure (each ANYLOCK_BACKEND
# call adds its own): every one must be a module pkg-config knows.  The
# static link below shows that they are all there.
requires=$(pkg-config --print-requires-private anylock)
echo "Requires.private: $(echo $requires)"
for m in $(printf '%s\n' "$requires" | awk '{print $1}'); do
    pkg-config --exists "$m" || { echo "FAIL: Requires.private names $m, which pkg-config does not know"; fail=1; }
done
run() { # WHAT PROGRAM
    out=$(LD_LIBRARY_PATH="$libdir" "$2" "sqlite:///$tmp/$(basename "$2").db" 2>&1)
    rc=$?
    case "$rc:$out" in
    0:"hello: got the lock on "*) echo "ok: hello built $1 runs: $out" ;;
    *) echo "FAIL: hello built $1 exited $rc: $out"; fail=1 ;;
    esac
}

# shellcheck disable=SC2046,SC2086
if $cc $cflags "$top_srcdir/examples/hello.c" -o "$tmp/hello-pc" $(pkg-config --cflags --libs anylock) $ldflags \
    2>"$tmp/cc.log"; then
    run "with pkg-config" "$tmp/hello-pc"
    if command -v readelf >/dev/null && ! readelf -d "$tmp/hello-pc" | grep -q 'NEEDED.*libanylock\.so'; then
        echo "FAIL: hello built with pkg-config does not use libanylock.so"
        fail=1
    fi
else
    cat "$tmp/cc.log"
    echo "FAIL: cc hello.c \$(pkg-config --cflags --libs anylock)"
    fail=1
fi

if [ -f "$libdir/libanylock.a" ]; then
    # The archive by name, then what anylock.pc says it needs: its own
    # Libs.private and the Requires.private modules' libraries.  (The
    # stores' libraries themselves are linked shared: Debian's libpq.pc
    # names static libraries its package does not ship, so a fully static
    # link cannot be asked of pkg-config --static here.)
    private=$(sed -n 's/^Libs.private: *//p' "$pcfile")
    # shellcheck disable=SC2046,SC2086
    if $cc $cflags "$top_srcdir/examples/hello.c" -o "$tmp/hello-static" $(pkg-config --cflags anylock) \
        "$libdir/libanylock.a" $private $(pkg-config --libs $requires) $ldflags 2>"$tmp/cc.log"; then
        run "against libanylock.a with Libs.private and Requires.private" "$tmp/hello-static"
        if command -v readelf >/dev/null && readelf -d "$tmp/hello-static" | grep -q 'NEEDED.*libanylock'; then
            echo "FAIL: hello built against libanylock.a still needs libanylock.so"
            fail=1
        fi
    else
        cat "$tmp/cc.log"
        echo "FAIL: cc hello.c libanylock.a $private \$(pkg-config --libs $(echo $requires)): Requires.private or Libs.private is incomplete"
        fail=1
    fi
fi

# CMake, from the installed package only.  A request for a newer version
# than this one must not find it.
mkdir -p "$tmp/cmake-src"
cp "$top_srcdir/examples/hello.c" "$tmp/cmake-src/"
cat >"$tmp/cmake-src/CMakeLists.txt" <<EOF2
cmake_minimum_required(VERSION 3.13)
project(hello C)
find_package(anylock 999 CONFIG QUIET)
if(anylock_FOUND)
  message(FATAL_ERROR "find_package(anylock 999) found version \${anylock_VERSION}")
endif()
find_package(anylock $version EXACT CONFIG REQUIRED)
add_executable(hello hello.c)
target_link_libraries(hello PRIVATE anylock::anylock)
EOF2
if ! command -v cmake >/dev/null; then
    echo "FAIL: cmake is not installed (scripts/install-deps.sh installs it)"
    fail=1
elif cmake -S "$tmp/cmake-src" -B "$tmp/cmake-build" -DCMAKE_PREFIX_PATH="$(var prefix)" \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$cflags" -DCMAKE_EXE_LINKER_FLAGS="$ldflags" \
    >"$tmp/cmake.log" 2>&1 && cmake --build "$tmp/cmake-build" >>"$tmp/cmake.log" 2>&1; then
    run "with CMake" "$tmp/cmake-build/hello"
    if readelf -d "$tmp/cmake-build/hello" | grep -q 'NEEDED.*libanylock\.so'; then
        # An installation with the static library only (--disable-shared):
        # anylock::anylock is libanylock.a and brings what it needs.
        rm -f "$libdir"/libanylock.so*
        if cmake -S "$tmp/cmake-src" -B "$tmp/cmake-static" -DCMAKE_PREFIX_PATH="$(var prefix)" \
            -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$cflags" -DCMAKE_EXE_LINKER_FLAGS="$ldflags" \
            >"$tmp/cmake.log" 2>&1 && cmake --build "$tmp/cmake-static" >>"$tmp/cmake.log" 2>&1; then
            run "with CMake against libanylock.a only" "$tmp/cmake-static/hello"
        else
            cat "$tmp/cmake.log"
            echo "FAIL: CMake could not build hello.c against an installation with libanylock.a only"
            fail=1
        fi
    else
        echo "FAIL: hello built with CMake does not use libanylock.so"
        fail=1
    fi
else
    cat "$tmp/cmake.log"
    echo "FAIL: CMake could not build hello.c with find_package(anylock $version CONFIG) and anylock::anylock"
    fail=1
fi
exit $fail
