#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# file:// through the command, against util-linux flock(1): what the issue
# promises in so many words.  `anylock --url file://DIR run NAME cmd` and
# `flock DIR/NAME cmd` exclude each other, both ways; a SIGKILLed anylock's
# lock is free at once; a reset terminates the holder's command; status
# shows a flock(1) holder as held.  Every wait here is for an event (a line
# in a log, a process ending), never a sleep standing in for one.
set -u
top_builddir=${top_builddir:-.}
A=$top_builddir/cli/anylock
if [ -x "$top_builddir/cli/.libs/anylock" ]; then
    LD_LIBRARY_PATH="$(cd "$top_builddir/.libs" && pwd)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export LD_LIBRARY_PATH
    A=$top_builddir/cli/.libs/anylock
fi
command -v flock >/dev/null || { echo "FAIL: flock(1) (util-linux) is not installed"; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/anylock-file-cli.XXXXXX")
D=$tmp/locks
U=file://$D
failures=0
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
note() { echo "# $*"; }
# wait_for SECONDS CMD...: until CMD succeeds; 1 if it never does.
wait_for() {
    local limit=$1; shift
    local end=$(($(date +%s) + limit))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -ge "$end" ] && return 1
        sleep 0.02
    done
}
# wait_pid SECONDS PID: waits for a background job; $? is its status.
wait_pid() {
    local limit=$1 pid=$2
    if ! wait_for "$limit" sh -c "! kill -0 $pid"; then
        fail "pid $pid still running after $limit s"
        kill -9 "$pid" 2>/dev/null
    fi
    wait "$pid"
}
order() { tr '\n' ' ' <"$1"; }

# ---- anylock holds; flock(1) waits ----
log=$tmp/log1
"$A" --url "$U" run job sh -c "echo A-start >>'$log'; while [ ! -e '$tmp/go1' ]; do sleep 0.02; done; echo A-end >>'$log'" &
a=$!; pids+=("$a")
wait_for 10 grep -q A-start "$log" || fail "anylock never ran its command"
[ -f "$D/job" ] || fail "no lock file $D/job"
flock -n "$D/job" true && fail "flock -n got $D/job while anylock held it"
flock -w 0.3 "$D/job" true && fail "flock -w 0.3 got $D/job while anylock held it"
flock "$D/job" sh -c "echo F >>'$log'" &
f=$!; pids+=("$f")
touch "$tmp/go1"
wait_pid 10 "$a" || fail "anylock run exited $?"
wait_pid 10 "$f" || fail "flock exited $?"
[ "$(order "$log")" = "A-start A-end F " ] || fail "anylock, then flock(1): order $(order "$log")"

# ---- flock(1) holds; anylock waits ----
log=$tmp/log2
flock "$D/job" sh -c "echo F-start >>'$log'; while [ ! -e '$tmp/go2' ]; do sleep 0.02; done; echo F-end >>'$log'" &
f=$!; pids+=("$f")
wait_for 10 grep -q F-start "$log" || fail "flock(1) never ran its command"
"$A" --url "$U" -w 0 run job true
rc=$?
[ "$rc" = 1 ] || fail "anylock -w 0 while flock(1) held the lock: exit $rc, wanted 1"
"$A" --url "$U" status job >"$tmp/status" 2>&1
grep -q "held by" "$tmp/status" || fail "status while flock(1) holds: $(cat "$tmp/status")"
"$A" --url "$U" -w 30 run job sh -c "echo A >>'$log'" &
a=$!; pids+=("$a")
touch "$tmp/go2"
wait_pid 10 "$f" || fail "flock exited $?"
wait_pid 10 "$a" || fail "anylock run exited $?"
[ "$(order "$log")" = "F-start F-end A " ] || fail "flock(1), then anylock: order $(order "$log")"

# ---- a SIGKILLed anylock frees its lock at once ----
"$A" --url "$U" run job sh -c "echo \$\$ >'$tmp/pid'; exec sleep 60" >/dev/null 2>&1 &
a=$!; pids+=("$a")
wait_for 10 test -s "$tmp/pid" || fail "the holder's command never started"
kill -9 "$a"
wait "$a" 2>/dev/null
# The kernel freed the lock with anylock's descriptors: no expiry to wait for.
flock -w 5 "$D/job" true || fail "flock(1) did not get the lock of a SIGKILLed anylock within 5 s"

# ---- a reset: the holder's command is terminated ----
"$A" --url "$U" run job sh -c "echo \$\$ >'$tmp/pid2'; exec sleep 60" >"$tmp/r.out" 2>"$tmp/r.err" &
a=$!; pids+=("$a")
wait_for 10 test -s "$tmp/pid2" || fail "the victim's command never started"
"$A" --url "$U" reset job >"$tmp/reset.out" 2>&1 || fail "reset exited $?: $(cat "$tmp/reset.out")"
wait_pid 20 "$a"
rc=$?
[ "$rc" = 143 ] || fail "after a reset, anylock exited $rc, wanted 143 (its command terminated)"
grep -q "lost" "$tmp/r.err" || fail "the loss was not reported: $(cat "$tmp/r.err")"
flock -n "$D/job" true || fail "the lock is not free after the reset"

# ---- no extra files beside a plain name ----
names=$(cd "$D" && ls -A | tr '\n' ' ')
[ "$names" = ".anylock job " ] || fail "files in $D: $names"

if [ "$failures" = 0 ]; then
    note "file:// and flock(1): all passed"
    exit 0
fi
exit 1
