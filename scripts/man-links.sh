#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# The manual pages of the C API, from the headers, so that the list of
# functions cannot drift: every function a public header declares is found
# in the NAME section of one page in man/, and `man FUNCTION` finds that
# page through a one-line link page (".so man3/PAGE.3").
#
#   scripts/man-links.sh functions SRCDIR        the functions include/*.h declare
#   scripts/man-links.sh links SRCDIR            "FUNCTION PAGE" for each of them
#                                                (fails naming any without a page)
#   scripts/man-links.sh install SRCDIR MAN3DIR  writes the link pages (a function
#                                                without a page is only named)
#   scripts/man-links.sh uninstall SRCDIR MAN3DIR
#
# make install runs "install" (install-data-hook), make uninstall "uninstall".
set -eu
cmd=${1:?usage: $0 functions|links|install|uninstall SRCDIR [MAN3DIR]}
src=${2:?usage: $0 $cmd SRCDIR [MAN3DIR]}

# Every "ANYLOCK_EXPORT type name(" declaration, comments and preprocessor
# lines left out.
functions() {
    sed '/^[[:space:]]*#/d' "$src"/include/*.h | tr '\n' ' ' |
        sed 's|/\*[^*]*\*\{1,\}\([^/*][^*]*\*\{1,\}\)*/| |g' |
        tr ';' '\n' | grep 'ANYLOCK_EXPORT' |
        sed -n 's/.*[^A-Za-z0-9_]\(anylock_[A-Za-z0-9_]*\)[[:space:]]*(.*/\1/p' | sort -u
}

# "NAME PAGE" for every name the NAME section of man/PAGE.3 lists.
names() {
    for page in "$src"/man/*.3; do
        base=$(basename "$page" .3)
        awk -v page="$base" '
            /^\.SH/ { if (inname) exit; if ($2 == "NAME") { inname = 1; next } }
            inname { text = text " " $0 }
            END {
                sub(/\\-.*/, "", text)
                n = split(text, parts, ",")
                for (i = 1; i <= n; i++) {
                    gsub(/^[ \t]+|[ \t]+$/, "", parts[i])
                    if (parts[i] != "") print parts[i], page
                }
            }' "$page"
    done
}

links() {
    names >"$tmp/names"
    missing=""
    for f in $(functions); do
        page=$(awk -v f="$f" '$1 == f { print $2; exit }' "$tmp/names")
        if [ -z "$page" ]; then
            missing="$missing $f"
        else
            echo "$f $page"
        fi
    done
    if [ -n "$missing" ]; then
        echo "man-links: no page in man/ lists these functions in its NAME section:$missing" >&2
        return 1
    fi
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/anylock-man.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

case "$cmd" in
functions) functions ;;
links) links ;;
install | uninstall)
    dir=${3:?usage: $0 $cmd SRCDIR MAN3DIR}
    # A function without a page is named (tests/test_man.sh fails on it)
    # but does not stop the installation of the others.
    links >"$tmp/links" || true
    [ "$cmd" = uninstall ] || mkdir -p "$dir"
    while read -r f page; do
        # A function that has a page of its own needs no link.
        [ "$f" != "$page" ] || continue
        if [ "$cmd" = install ]; then
            printf '.so man3/%s.3\n' "$page" >"$dir/$f.3"
        else
            rm -f "$dir/$f.3"
        fi
    done <"$tmp/links"
    ;;
*)
    echo "usage: $0 functions|links|install|uninstall SRCDIR [MAN3DIR]" >&2
    exit 64
    ;;
esac
