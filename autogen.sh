#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# Generates ./configure from configure.ac and Makefile.am.  Quiet when all
# is well: autoreconf's list of the helper files it copies in is left out;
# anything else it says (a warning) is shown, and everything on failure.
set -e
cd "$(dirname "$0")"
log=$(mktemp "${TMPDIR:-/tmp}/anylock-autogen.XXXXXX")
trap 'rm -f "$log"' EXIT
if ! autoreconf --install --force >"$log" 2>&1; then
    cat "$log" >&2
    echo "autogen.sh: autoreconf failed" >&2
    exit 1
fi
grep -v -e ": installing '" -e "^libtoolize: \(putting\|copying\|linking\)" "$log" >&2 || true
