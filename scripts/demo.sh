#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# Builds anylock (in _build/, out of the source tree) and shows the command at
# work on the embedded SQLite default: two contenders for one lock, the second
# waiting for the first.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
[ -x configure ] || ./autogen.sh >/dev/null
mkdir -p _build
cd _build
[ -f Makefile ] || ../configure >configure.out || { cat configure.out; exit 1; }
make -j"$(nproc 2>/dev/null || echo 2)" >make.out 2>&1 || { cat make.out; exit 1; }
echo "== two contenders for the lock \"demo\" on $(./cli/anylock --version | head -n 1)"
./cli/anylock -v run demo sleep 2 &
sleep 0.5
./cli/anylock -v run demo echo "got it"
wait
