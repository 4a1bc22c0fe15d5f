#!/bin/sh
# The shared library exports the public API and nothing else: every dynamic
# symbol it defines is named anylock_* and is declared in include/.
set -eu
lib=$(ls "${top_builddir:-.}"/.libs/libanylock.so 2>/dev/null || true)
if [ -z "$lib" ]; then
    echo "libanylock.so not built (static-only build?)"
    exit 77
fi
exported=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBR]$/ {print $3}' | sort)
bad=$(printf '%s\n' "$exported" | grep -v '^anylock_[a-z]' || true)
internal=$(printf '%s\n' "$exported" | grep '^anylock__' || true)
if [ -n "$bad$internal" ]; then
    echo "symbols exported that are not public API:"
    printf '%s\n' $bad $internal
    exit 1
fi
missing=0
for sym in $exported; do
    if ! grep -q "\b$sym\b" "${top_srcdir:-.}"/include/*.h; then
        echo "exported but not declared in a public header: $sym"
        missing=1
    fi
done
[ "$missing" = 0 ] || exit 1
echo "$(printf '%s\n' "$exported" | wc -l) public symbols exported, none other"
