#!/usr/bin/env bash
# Builds the libFuzzer target fuzz/fuzz_url (clang, -fsanitize=fuzzer with
# ASan and UBSan) straight from the library's sources, and runs it for the
# given number of seconds (default 60) over a copy of fuzz/corpus/url.
#
#   scripts/fuzz.sh [SECONDS]
#
# The corpus in the repository is not modified; new inputs go to
# _build-fuzz/corpus.  A crash leaves its input in _build-fuzz/ and fails.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-60}
dir="$top/_build-fuzz"
cc=${CLANG:-clang}

rm -rf "$dir"
mkdir -p "$dir/corpus"
# A build without the built-in backends (core/builtins_none.c is the core's
# init hook): the target registers memory://, open:// and migrate:// itself
# through the public anylock_backend_register(), as a third party would.
: >"$dir/config.h"
san="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
# shellcheck disable=SC2086
"$cc" -g -O1 -std=c11 $san -fno-omit-frame-pointer \
    -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -DANYLOCK_BUILDING \
    -I"$top/include" -I"$dir" -pthread \
    "$top"/core/*.c "$top"/backends/open.c "$top"/backends/memory.c "$top"/backends/composite.c \
    "$top/fuzz/fuzz_url.c" -lm -o "$dir/fuzz_url"
cp "$top"/fuzz/corpus/url/* "$dir/corpus/"
cd "$dir"
./fuzz_url -max_total_time="$seconds" -max_len=4200 -timeout=10 -rss_limit_mb=1024 -dict="$top/fuzz/url.dict" \
    -print_final_stats=1 corpus 2>&1 | tail -n 80
