#!/bin/sh
# The example programs, run as an application's own tests would run them:
# examples/lost on faults:// stops its work when the lock is lost on purpose,
# and does all of it when nothing goes wrong.
set -u
top_builddir=${top_builddir:-.}
LOST=$top_builddir/examples/lost
fail=0

out=$("$LOST" 'faults://?lose_after=0.5')
rc=$?
case "$rc:$out" in
3:*"stopping before writing"*) echo "ok: lost lock stops the work ($out)" ;;
*) echo "FAIL: faults://?lose_after=0.5 gave exit $rc: $out"; fail=1 ;;
esac

out=$("$LOST" 'faults://?fail_acquire=1:CONNECT' 2>&1)
rc=$?
case "$rc:$out" in
1:*"on purpose"*) echo "ok: a store that cannot be reached is reported ($out)" ;;
*) echo "FAIL: fail_acquire gave exit $rc: $out"; fail=1 ;;
esac

out=$("$LOST" 'memory://')
rc=$?
case "$rc:$out" in
0:done*) echo "ok: without faults the work is done" ;;
*) echo "FAIL: memory:// gave exit $rc: $out"; fail=1 ;;
esac
exit $fail
