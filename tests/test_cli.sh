#!/usr/bin/env bash
# The anylock command, end to end: every subcommand and exit status, against
# the SQLite store and, when this build has them, real redis and memcached
# servers started here on free loopback ports (stopped by PID at exit).  A
# missing server binary is a failure, never a skip.  Also builds nothing:
# it runs cli/anylock and examples/hello as make built them.
set -u
top_builddir=${top_builddir:-.}
A=$top_builddir/cli/anylock
HELLO=$top_builddir/examples/hello
# Run the real binaries rather than libtool's wrapper scripts, which cost a
# few hundred milliseconds per call on a busy machine; they need only the
# library just built.
if [ -x "$top_builddir/cli/.libs/anylock" ] && [ -x "$top_builddir/examples/.libs/hello" ]; then
    LD_LIBRARY_PATH="$(cd "$top_builddir/.libs" && pwd)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export LD_LIBRARY_PATH
    A=$top_builddir/cli/.libs/anylock
    HELLO=$top_builddir/examples/.libs/hello
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/anylock-cli.XXXXXX")
failures=0
pids=()

cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

OUT=$tmp/out
ERR=$tmp/err
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
note() { echo "# $*"; }
now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print('%.2f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$2"; }

# run_rc WANT CMD...: runs CMD with output in $OUT and $ERR and
# checks its exit status.
run_rc() {
    local want=$1; shift
    "$@" >"$OUT" 2>"$ERR"
    local rc=$?
    if [ "$rc" != "$want" ]; then
        fail "exit $rc, wanted $want: $*"
        sed 's/^/  out: /' "$OUT"; sed 's/^/  err: /' "$ERR"
    fi
}
contains() { # FILE TEXT WHAT
    grep -qF -- "$2" "$1" || { fail "$3: \"$2\" not in: $(cat "$1")"; }
}
# wait_for SECONDS CMD...: polls CMD until it succeeds; 1 if it never does.
wait_for() {
    local limit=$1; shift
    local end=$(($(date +%s) + limit))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -ge "$end" ] && return 1
        sleep 0.05
    done
}
# wait_pid SECONDS PID: waits for a background job, then $? is its status;
# kills it (and fails) if it outlives the limit.
wait_pid() {
    local limit=$1 pid=$2
    if ! wait_for "$limit" sh -c "! kill -0 $pid"; then
        fail "pid $pid still running after $limit s"
        kill -9 "$pid" 2>/dev/null
    fi
    wait "$pid"
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
have() { "$A" --version | grep -q "^backends:.* $1\b"; }

# ---- store-independent: the command line and the child's status ----------

run_rc 64 "$A"
contains "$ERR" "usage:" "no arguments: usage"
run_rc 64 "$A" --no-such-option list
contains "$ERR" "unknown option --no-such-option" "unknown option"
run_rc 64 "$A" frobnicate
run_rc 64 "$A" -u memory:// run
run_rc 64 "$A" -u memory:// run name-only
run_rc 64 "$A" -u memory:// status
run_rc 64 "$A" -u memory:// status a b
run_rc 64 "$A" -u memory:// list extra
run_rc 64 "$A" -u memory:// reset
run_rc 64 "$A" -u memory:// -w abc list
run_rc 64 "$A" -u memory:// -w -1 list
run_rc 64 "$A" -u memory:// -x 0 list
run_rc 64 "$A" -u memory:// -E 256 list
run_rc 64 "$A" -u memory:// -w
contains "$ERR" "needs an argument" "missing option argument"
run_rc 64 "$A" -u memory:// --id 'has space' run x true
run_rc 0 "$A" --help
contains "$OUT" "reset-all" "--help"
run_rc 0 "$A" --version
contains "$OUT" "anylock 0." "--version"

# Malformed URLs are usage errors; a password never shows.
run_rc 64 "$A" -u 'redis://h:99999' list
run_rc 64 "$A" -u 'nosuchscheme://x' list
run_rc 64 "$A" -u 'no-scheme-at-all' list
run_rc 64 "$A" -u 'memory://?nosuchparam=1' list
if have redis; then want=64; else want=69; fi
run_rc $want "$A" -u 'redis://user:s3cret@127.0.0.1:1/?nosuchparam=1' list
if grep -q s3cret "$ERR"; then fail "a password was printed: $(cat "$ERR")"; fi

# A dead redis port: the store is unreachable (69).  A build without redis
# says the backend is unavailable, also 69.
dead=$(free_port)
run_rc 69 "$A" -u "redis://user:s3cret@127.0.0.1:$dead" -w 0 run x true
if grep -q s3cret "$ERR"; then fail "a password was printed: $(cat "$ERR")"; fi

# run exits as the child did.
run_rc 0 "$A" -u memory:// run x true
run_rc 42 "$A" -u memory:// run x sh -c 'exit 42'
run_rc 138 "$A" -u memory:// run x sh -c 'kill -USR1 $$'
run_rc 127 "$A" -u memory:// run x ./no/such/command
contains "$ERR" "cannot run" "exec failure"
run_rc 126 "$A" -u memory:// run x /
run_rc 0 "$A" -u memory:// run x sh -c 'echo "$0 $1" >"$2"' a1 --not-an-option "$tmp/args"
contains "$tmp/args" "a1 --not-an-option" "the command's own options stay its own"
run_rc 0 "$A" -u memory:// -v run x true
contains "$ERR" "acquired \"x\"" "verbose: acquired"
contains "$ERR" "renewed every" "verbose: renewal"
contains "$ERR" "released \"x\"" "verbose: released"
run_rc 0 "$A" -u memory:// -v -x 0.6 run x sleep 1.5
contains "$ERR" "renewed \"x\": it expires in" "verbose: renewals are seen"

# JSON strings are escaped.
run_rc 0 "$A" -u memory:// --json status 'quote"back\slash'
contains "$OUT" '{"name":"quote\"back\\slash","held":false,"owner":null,"expires_in":null}' "JSON escaping"

# The README's example program.
run_rc 0 "$HELLO" memory://
contains "$OUT" "got the lock" "examples/hello on memory://"

# ---- one store: every subcommand and exit status ----------------------------

store_tests() {
    local url=$1 what=$2
    local d="$tmp/$what"
    mkdir -p "$d"
    OUT=$d/out
    ERR=$d/err
    note "store $what: $url"
    local U=(-u "$url")

    # A store that cannot list or reset everything (the backend says so)
    # answers 70 with a message; the rest of the tests adapt.
    local can_list=1 can_reset_all=1
    "$A" "${U[@]}" list >"$OUT" 2>"$ERR"
    case $? in
    0) ;;
    70) can_list=0; note "$what: cannot list: $(cat "$ERR")"
        contains "$ERR" "anylock: cannot list" "$what: list refusal message" ;;
    *) fail "$what: list exited $?: $(cat "$ERR")" ;;
    esac
    "$A" "${U[@]}" reset-all >"$OUT" 2>"$ERR"
    case $? in
    0) ;;
    70) can_reset_all=0; note "$what: cannot reset-all: $(cat "$ERR")"
        contains "$ERR" "anylock: cannot reset" "$what: reset-all refusal message" ;;
    *) fail "$what: reset-all exited $?: $(cat "$ERR")" ;;
    esac
    run_rc 0 "$A" "${U[@]}" status L
    [ "$(cat "$OUT")" = free ] || fail "$what: status of a free lock: $(cat "$OUT")"
    run_rc 0 "$A" "${U[@]}" status --json L
    contains "$OUT" '"held":false' "$what: status --json free"
    run_rc 0 "$HELLO" "$url"
    contains "$OUT" "got the lock" "$what: examples/hello"

    # Two contenders: B waits for A, and says for whom.  A holds the lock
    # until the test lets it go, so nothing here depends on timing.
    "$A" "${U[@]}" --id holder-A run L sh -c "echo A-start >>'$d/log'; while [ ! -e '$d/go' ]; do sleep 0.05; done; echo A-end >>'$d/log'" \
        >"$d/a.out" 2>"$d/a.err" &
    local a=$!; pids+=("$a")
    wait_for 10 grep -q A-start "$d/log" || fail "$what: A never started"
    run_rc 0 "$A" "${U[@]}" status L
    contains "$OUT" "held by holder-A, " "$what: status held"
    run_rc 0 "$A" "${U[@]}" --json status L
    contains "$OUT" '"held":true,"owner":"holder-A","expires_in":' "$what: status --json held"
    python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$OUT" || fail "$what: status --json is not JSON"
    if [ "$can_list" = 1 ]; then
        run_rc 0 "$A" "${U[@]}" list
        contains "$OUT" "L: held by holder-A" "$what: list"
        run_rc 0 "$A" "${U[@]}" list --json
        python3 -c 'import json,sys; l=json.load(open(sys.argv[1])); assert [x["owner"] for x in l if x["name"]=="L"]==["holder-A"], l' \
            "$OUT" || fail "$what: list --json: $(cat "$OUT")"
    fi
    run_rc 1 "$A" "${U[@]}" -w 0 run L echo should-not-run
    [ -s "$OUT" ] && fail "$what: the command ran without the lock"
    run_rc 7 "$A" "${U[@]}" -w 0 -E 7 run L true
    run_rc 1 "$A" "${U[@]}" -w 0.3 run L true
    local t0 t1
    t0=$(now)
    "$A" "${U[@]}" -v -w 60 run L sh -c "echo B-start >>'$d/log'" >"$d/b.out" 2>"$d/b.err" &
    local b=$!; pids+=("$b")
    wait_for 15 grep -q "waiting for" "$d/b.err" || fail "$what: B never said it was waiting"
    contains "$d/b.err" "held by holder-A" "$what: B says whom it waits for"
    touch "$d/go"
    wait_pid 15 "$a" || fail "$what: A exited $?"
    wait_pid 15 "$b" || fail "$what: B exited $?"
    t1=$(now)
    [ "$(tr '\n' ' ' <"$d/log")" = "A-start A-end B-start " ] || fail "$what: order: $(cat "$d/log")"
    note "$what: B waited $(elapsed "$t0" "$t1") s in all (it says so after 1 s, then A lets go)"

    # reset from another anylock: the holder's child is terminated.
    "$A" "${U[@]}" --id victim -x 1 run L sh -c "echo \$\$ >'$d/pid1'; exec sleep 30" >"$d/r.out" 2>"$d/r.err" &
    local r=$!; pids+=("$r")
    wait_for 10 test -s "$d/pid1" || fail "$what: victim never started"
    run_rc 0 "$A" "${U[@]}" reset L
    contains "$OUT" "reset L (it was held by victim)" "$what: reset says whom"
    t0=$(now)
    wait_pid 20 "$r"; local rc=$?
    t1=$(now)
    [ "$rc" = 143 ] || fail "$what: lost lock: anylock exited $rc, wanted 143 (child terminated)"
    contains "$d/r.err" "lost the lock \"L\"" "$what: loss is reported"
    note "$what: child terminated $(elapsed "$t0" "$t1") s after the reset (expiry 1 s)"

    # ... and with --keep-going-on-loss it finishes (it waits until the test
    # has seen the loss reported).
    rm -f "$d/done"
    "$A" "${U[@]}" --keep-going-on-loss -x 1 run L sh -c "echo go >'$d/started'; while [ ! -e '$d/go2' ]; do sleep 0.05; done; echo finished >'$d/done'" \
        >"$d/k.out" 2>"$d/k.err" &
    local k=$!; pids+=("$k")
    wait_for 10 test -s "$d/started" || fail "$what: keep-going child never started"
    run_rc 0 "$A" "${U[@]}" --json reset L
    contains "$OUT" '"was_held":true' "$what: reset --json"
    wait_for 15 grep -q "letting sh finish" "$d/k.err" || fail "$what: loss not reported with --keep-going-on-loss"
    touch "$d/go2"
    wait_pid 20 "$k" || fail "$what: --keep-going-on-loss: exit $?"
    contains "$d/done" finished "$what: --keep-going-on-loss child finished"

    # Signals sent to anylock reach the child.
    rm -f "$d/ready" "$d/trapped"
    "$A" "${U[@]}" run L sh -c "trap 'echo got-TERM >\"$d/trapped\"; kill \$!; exit 7' TERM; echo x >'$d/ready'; sleep 30 >/dev/null 2>&1 & wait" \
        >"$d/s.out" 2>"$d/s.err" &
    local s=$!; pids+=("$s")
    wait_for 10 test -s "$d/ready" || fail "$what: signal child never started"
    kill -TERM "$s"
    wait_pid 20 "$s"; rc=$?
    [ "$rc" = 7 ] || fail "$what: TERM forwarded: anylock exited $rc, wanted the child's 7"
    contains "$d/trapped" got-TERM "$what: the child got TERM"
    run_rc 0 "$A" "${U[@]}" status L
    [ "$(cat "$OUT")" = free ] || fail "$what: lock not released after the signal: $(cat "$OUT")"

    # A SIGKILLed anylock: its lock expires, and its child is terminated.
    rm -f "$d/pid2"
    "$A" "${U[@]}" -x 3 run L sh -c "echo \$\$ >'$d/pid2'; exec sleep 30" >/dev/null 2>&1 &
    local kpid=$!; pids+=("$kpid")
    wait_for 10 test -s "$d/pid2" || fail "$what: killed-anylock child never started"
    kill -9 "$kpid"
    t0=$(now)
    { wait "$kpid"; } 2>/dev/null
    run_rc 0 "$A" "${U[@]}" status L
    contains "$OUT" "held by" "$what: still held right after SIGKILL (expiry 3 s)"
    run_rc 0 "$A" "${U[@]}" -w 20 run L true
    t1=$(now)
    note "$what: lock of a SIGKILLed anylock free again after $(elapsed "$t0" "$t1") s (expiry 3 s)"
    wait_for 10 sh -c "! kill -0 $(cat "$d/pid2")" || fail "$what: the child of a SIGKILLed anylock still runs"

    # reset-all frees everything under the prefix.
    [ "$can_reset_all" = 1 ] || return 0
    "$A" "${U[@]}" -x 1 run M1 sleep 30 >/dev/null 2>&1 &
    local m1=$!; pids+=("$m1")
    "$A" "${U[@]}" -x 1 run M2 sleep 30 >/dev/null 2>&1 &
    local m2=$!; pids+=("$m2")
    wait_for 10 sh -c "'$A' -u '$url' status M1 | grep -q held && '$A' -u '$url' status M2 | grep -q held" ||
        fail "$what: M1/M2 never held"
    run_rc 0 "$A" "${U[@]}" reset-all
    contains "$OUT" "reset" "$what: reset-all output"
    run_rc 0 "$A" "${U[@]}" status M1
    [ "$(cat "$OUT")" = free ] || fail "$what: M1 after reset-all: $(cat "$OUT")"
    if [ "$can_list" = 1 ]; then
        run_rc 0 "$A" "${U[@]}" list
        [ -s "$OUT" ] && fail "$what: list after reset-all: $(cat "$OUT")"
    fi
    wait_pid 20 "$m1"; wait_pid 20 "$m2"
}

# Each store's tests run in a background subshell of their own, so that
# the stores' waits overlap; each reports through its exit status and log.
store_pids=()
stores=()
launch() {
    (
        failures=0
        pids=()
        store_tests "$1" "$2"
        for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
        [ "$failures" = 0 ]
    ) >"$tmp/$2.log" 2>&1 &
    store_pids+=($!)
    stores+=("$2")
}

if have sqlite; then
    launch "sqlite:///$tmp/locks.db" sqlite

    # The default store: a per-user SQLite file, in a 0700 directory.
    mkdir -p "$tmp/run" "$tmp/home"
    run_rc 0 env -u ANYLOCK_URL XDG_RUNTIME_DIR="$tmp/run" "$A" -v status D
    [ -f "$tmp/run/anylock/locks.db" ] || fail "default store not in \$XDG_RUNTIME_DIR/anylock/locks.db"
    [ "$(stat -c %a "$tmp/run/anylock")" = 700 ] || fail "default store directory not 0700"
    run_rc 0 env -u ANYLOCK_URL -u XDG_RUNTIME_DIR -u XDG_CACHE_HOME HOME="$tmp/home" "$A" status D
    [ -f "$tmp/home/.cache/anylock/locks.db" ] || fail "default store not in ~/.cache/anylock/locks.db"
    run_rc 0 env ANYLOCK_URL="sqlite:///$tmp/env.db" "$A" status D
    [ -f "$tmp/env.db" ] || fail "\$ANYLOCK_URL not used"
else
    note "this build has no sqlite:// backend: the store tests ran on redis/memcached only"
fi

if have redis; then
    port=$(free_port)
    if ! command -v redis-server >/dev/null; then
        fail "redis-server not installed"
    else
        redis-server --port "$port" --bind 127.0.0.1 --dir "$tmp" --save '' --appendonly no \
            --loglevel warning >"$tmp/redis.log" 2>&1 &
        pids+=($!)
        if wait_for 10 port_open "$port"; then
            launch "redis://127.0.0.1:$port" redis
        else
            fail "redis-server did not start: $(cat "$tmp/redis.log")"
        fi
    fi
fi

if have memcached; then
    port=$(free_port)
    if ! command -v memcached >/dev/null; then
        fail "memcached not installed"
    else
        user=(); [ "$(id -u)" = 0 ] && user=(-u root)
        memcached -p "$port" -l 127.0.0.1 -U 0 -m 64 "${user[@]}" >"$tmp/memcached.log" 2>&1 &
        pids+=($!)
        if wait_for 10 port_open "$port"; then
            launch "memcached://127.0.0.1:$port" memcached
        else
            fail "memcached did not start: $(cat "$tmp/memcached.log")"
        fi
    fi
fi

for i in "${!store_pids[@]}"; do
    wait "${store_pids[$i]}"
    rc=$?
    grep -v '^\S*: line [0-9]*: *[0-9]* Killed' "$tmp/${stores[$i]}.log"
    [ "$rc" = 0 ] || fail "store ${stores[$i]}: the failures above"
done

if [ "$failures" != 0 ]; then
    echo "$failures failure(s)"
    exit 1
fi
echo "all anylock command tests passed"
