#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# The licence line of every source file (LICENSE is the text):
#
#   scripts/spdx.sh add [FILE...]   add "SPDX-License-Identifier: BSD-2-Clause"
#                                   to the files (default: every source file)
#                                   that lack it, in their comment syntax
#   scripts/spdx.sh check           list the source files that lack it; exit 1
#                                   if any does (tests/test_spdx.sh)
#   scripts/spdx.sh list            list the source files
#
# Source files are the files git tracks (so this needs a git checkout) that
# are C, headers, shell,
# Python, CMake, autotools input (*.ac, *.am, *.m4, *.in), pkg-config, TOML,
# manual pages, or scripts that start with "#!".  Data (the fuzzing corpus,
# dictionaries), documentation (*.md) and LICENSE are not.  Adding is
# idempotent: a file that has the line in its first lines is left alone.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
id="SPDX-License-Identifier: BSD-2-Clause"

all_files() {
    git ls-files
}

# The comment that carries the line in FILE, or nothing if FILE is not source.
comment_for() {
    case "$1" in
    fuzz/corpus/* | *.md | LICENSE | *.dict | */.keep | .gitignore | */.gitignore) return 0 ;;
    *.c | *.h) echo "/* $id */" ;;
    *.[1-9]) echo ".\\\" $id" ;;
    *.sh | *.py | *.cmake | *.ac | *.am | *.m4 | *.in | *.toml | *.pc | */completion/*) echo "# $id" ;;
    *)
        if [ -f "$1" ] && head -c 2 "$1" 2>/dev/null | grep -q '^#!'; then
            echo "# $id"
        fi
        ;;
    esac
}

has_line() { head -n 5 "$1" | grep -q 'SPDX-License-Identifier:'; }

list() { all_files | while read -r f; do [ -n "$(comment_for "$f")" ] && [ -f "$f" ] && echo "$f"; done; }

add_one() {
    f=$1
    line=$(comment_for "$f")
    [ -n "$line" ] || { echo "spdx: $f is not a source file" >&2; return 1; }
    has_line "$f" && return 0
    tmp="$f.spdx-tmp"
    first=$(head -n 1 "$f")
    case "$first" in
    '#!'* | "'\\\""*)
        # After a "#!" line, or a man page's preprocessor line ('\" t), which
        # must stay first.
        { printf '%s\n%s\n' "$first" "$line"; tail -n +2 "$f"; } >"$tmp"
        ;;
    *) { printf '%s\n' "$line"; cat "$f"; } >"$tmp" ;;
    esac
    # Keep the file's mode (scripts stay executable).
    chmod "$(stat -c %a "$f")" "$tmp"
    mv "$tmp" "$f"
    echo "spdx: added to $f"
}

if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    echo "spdx: $top is not a git checkout: which files are source is not known" >&2
    exit 77
fi

cmd=${1:-check}
[ $# -eq 0 ] || shift
case "$cmd" in
list) list ;;
add)
    if [ $# -eq 0 ]; then
        list | while read -r f; do add_one "$f"; done
    else
        for f in "$@"; do add_one "$f"; done
    fi
    ;;
check)
    missing=$(list | while read -r f; do has_line "$f" || echo "$f"; done)
    if [ -n "$missing" ]; then
        echo "these source files lack \"$id\" (scripts/spdx.sh add adds it):"
        printf '  %s\n' $missing
        exit 1
    fi
    echo "every source file ($(list | wc -l)) has \"$id\""
    ;;
*)
    echo "usage: $0 add [FILE...] | check | list" >&2
    exit 64
    ;;
esac
