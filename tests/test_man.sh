#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# The manual pages, as `make install` installs them (into a temporary
# DESTDIR):
#   - every page in man/ is installed, parses (lexgrog: whatis finds it) and
#     renders without a groff warning (man --warnings);
#   - every function the public headers declare, and every one the shared
#     library exports, is found by `man FUNCTION`, in a page that names it
#     in its NAME section and shows it in its SYNOPSIS;
#   - anylock(3) lists every status with its value, and every scheme the
#     library has built in;
#   - SEE ALSO sections name pages that are installed (anylock's own) or
#     other manual pages, never a file of the source tree.
set -u
top_srcdir=${top_srcdir:-.}
top_builddir=${top_builddir:-.}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/anylock-man.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
fail=0
for tool in man lexgrog groff; do
    command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed (scripts/install-deps.sh installs it)"; exit 1; }
done

# install-data installs the headers, the pages and their links.
if ! env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL "${MAKE:-make}" -C "$top_builddir" install-data DESTDIR="$root" \
    >"$tmp/install.log" 2>&1; then
    cat "$tmp/install.log"
    echo "FAIL: make install-data DESTDIR=$root"
    exit 1
fi
man3=$(find "$root" -type d -name man3 | head -n 1)
[ -n "$man3" ] || { echo "FAIL: make install installed no man3 directory"; exit 1; }
mandir=$(dirname "$man3")
export MANWIDTH=80 MANPAGER=cat PAGER=cat LC_ALL=C.UTF-8
# -M: only this tree; no system page can stand in for a missing one.
page() { man -M "$mandir" "$@"; }

pages=0
for src in "$top_srcdir"/man/*.3; do
    name=$(basename "$src")
    pages=$((pages + 1))
    if [ ! -f "$man3/$name" ]; then
        echo "FAIL: man/$name is not installed (add it to dist_man3_MANS in Makefile.am)"
        fail=1
        continue
    fi
    lexgrog "$man3/$name" >/dev/null 2>&1 || { echo "FAIL: lexgrog cannot read the NAME section of $name"; fail=1; }
    warnings=$(man --warnings=all -l "$man3/$name" 2>&1 >/dev/null)
    [ -z "$warnings" ] || { echo "FAIL: $name: $warnings"; fail=1; }
done
echo "$pages pages in man/ installed and checked"

# Every function: declared by the headers, and exported by the library.
"$top_srcdir/scripts/man-links.sh" functions "$top_srcdir" >"$tmp/declared"
if [ -f "$top_builddir/.libs/libanylock.so" ]; then
    nm -D --defined-only "$top_builddir/.libs/libanylock.so" | awk '$2 == "T" {print $3}' | sort >"$tmp/exported"
    comm -13 "$tmp/declared" "$tmp/exported" | sed 's/^/FAIL: exported but not declared in a header: /' >"$tmp/bad"
    comm -23 "$tmp/declared" "$tmp/exported" | sed 's/^/FAIL: declared in a header but not exported: /' >>"$tmp/bad"
    [ ! -s "$tmp/bad" ] || { cat "$tmp/bad"; fail=1; }
fi
found=0
for f in $(cat "$tmp/declared"); do
    if ! page -w "$f" >/dev/null 2>&1; then
        echo "FAIL: man $f finds no page"
        fail=1
        continue
    fi
    page "$f" 2>/dev/null >"$tmp/text"
    # The NAME section lists it, the SYNOPSIS shows its prototype.
    if ! awk '/^NAME/ {n=1; next} /^[^ ]/ {n=0} n' "$tmp/text" | tr -d '\n' | grep -q "\b$f\b"; then
        echo "FAIL: man $f shows a page whose NAME does not list $f"
        fail=1
    elif ! awk '/^SYNOPSIS/ {s=1; next} /^[^ ]/ {s=0} s' "$tmp/text" | grep -q "\b$f("; then
        echo "FAIL: man $f shows a page whose SYNOPSIS lacks $f()"
        fail=1
    else
        found=$((found + 1))
    fi
done
echo "$found of $(wc -l <"$tmp/declared") functions found by man FUNCTION"

# anylock(3): every status, with its value, and every built-in scheme.
page 3 anylock >"$tmp/anylock3" 2>/dev/null
tr -s ' \n' '  ' <"$tmp/anylock3" >"$tmp/anylock3.flat"
sed -n 's/^[[:space:]]*X(\([A-Z_]*\), *\([0-9]*\),.*/\1 \2/p' "$top_srcdir/include/anylock.h" >"$tmp/statuses"
[ -s "$tmp/statuses" ] || { echo "FAIL: no statuses found in include/anylock.h"; fail=1; }
while read -r st value; do
    grep -q "ANYLOCK_$st ($value)" "$tmp/anylock3.flat" ||
        { echo "FAIL: anylock(3) does not list ANYLOCK_$st ($value)"; fail=1; }
done <"$tmp/statuses"
sed -n 's/^[[:space:]]*{"\([a-z0-9+.-]*\)",.*/\1/p' "$top_srcdir/backends/builtin.c" | sort -u >"$tmp/schemes"
while read -r scheme; do
    grep -q "$scheme://" "$tmp/anylock3.flat" ||
        { echo "FAIL: anylock(3) does not name the built-in scheme $scheme:// (section URLs)"; fail=1; }
done <"$tmp/schemes"
echo "$(wc -l <"$tmp/statuses") statuses and $(wc -l <"$tmp/schemes") schemes looked for in anylock(3)"

# SEE ALSO: installed pages, never source files.
for p in "$mandir"/man*/*; do
    grep -q '^\.so ' "$p" && continue
    man -l "$p" 2>/dev/null | awk '/^SEE ALSO/ {s=1; next} /^[^ ]/ {s=0} s' | tr -s ' \n' '  ' >"$tmp/seealso"
    name=$(basename "$p")
    if grep -q '[a-z_]*/[a-z_]\|\.h\b\|\.md\b\|\.c\b' "$tmp/seealso"; then
        echo "FAIL: the SEE ALSO of $name names a file, not a page: $(cat "$tmp/seealso")"
        fail=1
    fi
    for ref in $(grep -o 'anylock[a-z_-]*([0-9])' "$tmp/seealso"); do
        refname=${ref%(*}
        sec=$(echo "$ref" | sed 's/.*(\(.\))/\1/')
        [ -f "$mandir/man$sec/$refname.$sec" ] ||
            { echo "FAIL: the SEE ALSO of $name names $ref, which is not installed"; fail=1; }
    done
done
exit $fail
