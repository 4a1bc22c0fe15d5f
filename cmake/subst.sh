#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# Makes the CMake package's files from their templates (run by make, where
# the installation directories are known in full):
#
#   cmake/subst.sh TEMPLATE PREFIX CMAKEDIR INCLUDEDIR LIBDIR VERSION SIZEOF_VOID_P STATIC_LIBS
#
# Directories under PREFIX are written relative to the installed file's own
# place, so that the package can be copied elsewhere; others stay absolute.
set -eu
[ $# -eq 8 ] || { echo "usage: $0 TEMPLATE PREFIX CMAKEDIR INCLUDEDIR LIBDIR VERSION SIZEOF_VOID_P STATIC_LIBS" >&2; exit 64; }
template=$1 prefix=$2 cmakedir=$3 includedir=$4 libdir=$5 version=$6 sizeof_void_p=$7 static_libs=$8

case "$cmakedir" in
"$prefix"/*)
    # One ".." per component of CMAKEDIR below PREFIX.
    up=$(printf '%s\n' "${cmakedir#"$prefix"/}" | sed 's|[^/][^/]*|..|g')
    prefix_from_here="\${CMAKE_CURRENT_LIST_DIR}/$up"
    ;;
*) prefix_from_here=$prefix ;;
esac
under_prefix() {
    case "$1" in
    "$prefix") printf '%s\n' "\${_anylock_prefix}" ;;
    "$prefix"/*) printf '%s\n' "\${_anylock_prefix}/${1#"$prefix"/}" ;;
    *) printf '%s\n' "$1" ;;
    esac
}
# A value as a sed replacement: \, & and the delimiter | escaped.
quote() { printf '%s\n' "$1" | sed 's/[\\&|]/\\&/g'; }

sed -e "s|@prefix_from_here@|$(quote "$prefix_from_here")|g" \
    -e "s|@prefix@|$(quote "$prefix")|g" \
    -e "s|@cmakedir@|$(quote "$cmakedir")|g" \
    -e "s|@includedir@|$(quote "$(under_prefix "$includedir")")|g" \
    -e "s|@libdir@|$(quote "$(under_prefix "$libdir")")|g" \
    -e "s|@version@|$(quote "$version")|g" \
    -e "s|@sizeof_void_p@|$(quote "$sizeof_void_p")|g" \
    -e "s|@static_libs@|$(quote "$static_libs")|g" \
    "$template"
