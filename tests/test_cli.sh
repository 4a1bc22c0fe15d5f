#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# The anylock command, end to end: every subcommand, option and exit status,
# against real stores started here on free loopback ports (stopped by PID at
# exit), each store's tests in a background job of its own so that their
# waits overlap.  A missing server binary is a failure, never a skip.  Builds
# nothing: it runs cli/anylock and examples/hello as make built them.
#
# The stores, and what each can do, are listed in one place (STORES, below):
# a store added to the library is added there.
set -u
top_builddir=${top_builddir:-.}
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
top_srcdir=$(cd "$top_srcdir" && pwd)
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
A=$(cd "$(dirname "$A")" && pwd)/$(basename "$A")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/anylock-cli.XXXXXX")
failures=0
pids=()
quit_pids=()
# No ambient store or id: every test says which it uses.
unset ANYLOCK_URL ANYLOCK_ID

cleanup() {
    # PostgreSQL's postmaster is asked to quit at once (its backends go with
    # it); the rest are killed.
    for p in "${quit_pids[@]}"; do kill -QUIT "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

# The interpreter itself, not a version manager's shim that costs a
# process tree per call.
PY=$(python3 -c 'import sys; print(sys.executable)')
OUT=$tmp/out
ERR=$tmp/err
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
note() { echo "# $*"; }
now() { echo "$EPOCHREALTIME"; }
# Instrumented builds run many times slower (scripts/check.sh sets the
# scale): the short leases below are stretched by it.
S=${ANYLOCK_TEST_TIME_SCALE:-1}
secs() { awk -v a="$1" -v s="$S" 'BEGIN { printf "%g\n", a * s }'; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f\n", b - a }'; }
# before A B: A < B as numbers.
before() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 < b + 0) }'; }

# run_rc WANT CMD...: runs CMD with output in $OUT and $ERR and checks its
# exit status.
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
lacks() { # FILE TEXT WHAT
    if grep -qF -- "$2" "$1"; then fail "$3: \"$2\" is in: $(cat "$1")"; fi
}
# json_check FILE EXPR WHAT: FILE is strict UTF-8 holding one JSON value (v),
# or one JSON object per line (events, their names, ev by name); EXPR
# (python) holds.
json_check() {
    "$PY" - "$1" "$2" <<'PY' || fail "$3: $(cat "$1")"
import json, sys
data = open(sys.argv[1], 'rb').read().decode('utf-8')  # strict: invalid UTF-8 fails
expr = sys.argv[2]
if not any(w in expr for w in ('events', 'names', 'ev[')):
    v = json.loads(data)
else:
    # One JSON object per line (run's events); each line must parse.
    events = [json.loads(l) for l in data.splitlines()]
    ev = {e['event']: e for e in events}
    names = [e['event'] for e in events]
ok = eval(expr)
if not ok:
    print('  expression false: ' + expr)
    sys.exit(1)
PY
}
# safe_text FILE WHAT: FILE is valid UTF-8 without control characters (but
# newlines), C1 controls or bidirectional overrides: nothing a foreign value
# could use to move the terminal or forge a line.
safe_text() {
    "$PY" - "$1" <<'PY' || fail "$2: unsafe output: $(od -c "$1" | head -20)"
import sys
t = open(sys.argv[1], 'rb').read().decode('utf-8')
bad = [c for c in t if (ord(c) < 0x20 and c != '\n') or 0x7f <= ord(c) <= 0x9f
       or c in '\u2028\u2029\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069']
sys.exit(1 if bad else 0)
PY
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
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
have() { "$A" --version | grep -q "^backends:.* $1\b"; }
# A cron-like environment: what cron gives a job, and nothing else (but the
# library path of this build).
cronenv() {
    env -i ${LD_LIBRARY_PATH:+LD_LIBRARY_PATH="$LD_LIBRARY_PATH"} HOME="$HOME" LOGNAME="${LOGNAME:-$(id -un)}" \
        SHELL=/bin/sh PATH=/usr/bin:/bin "$@"
}
# A login-like one: XDG_RUNTIME_DIR set (as pam_systemd sets it), another
# $HOME and $XDG_CACHE_HOME, which must not change the default store either.
loginenv() {
    mkdir -p "$tmp/xdg-run" "$tmp/other-home"
    env XDG_RUNTIME_DIR="$tmp/xdg-run" XDG_CACHE_HOME="$tmp/other-home/.cache" HOME="$tmp/other-home" "$@"
}
# A bin directory standing in for /usr/local/bin in the documented examples:
# anylock (the binary just built, reachable from an empty environment) and
# make-report (logs its start, waits for the test's go, logs its end).
mkdir -p "$tmp/bin"
cat >"$tmp/bin/anylock" <<EOF
#!/bin/sh
${LD_LIBRARY_PATH:+LD_LIBRARY_PATH='$LD_LIBRARY_PATH'; export LD_LIBRARY_PATH}
exec '$A' "\$@"
EOF
cat >"$tmp/bin/make-report" <<'EOF'
#!/bin/sh
# REPORT_DIR is where the test wants the log: the name of the lock's job.
d=${REPORT_DIR:-/tmp}
echo "start $$ env=$(env | grep -c .)" >>"$d/report.log"
while [ ! -e "$d/report.go" ]; do sleep 0.05; done
echo "end $$" >>"$d/report.log"
EOF
chmod +x "$tmp/bin/anylock" "$tmp/bin/make-report"
# doc_block WHAT: the fenced block of docs/cli.md after the line
# "<!-- tested by tests/test_cli.sh: WHAT -->".
doc_block() {
    awk -v tag="<!-- tested by tests/test_cli.sh: $1 -->" '
        $0 == tag { found = 1; next }
        found == 1 && /^```/ { found = 2; next }
        found == 2 && /^```/ { exit }
        found == 2 { print }' "$top_srcdir/docs/cli.md"
}
# A lock name of its own for each run of this test, for the default store
# (the user's real one) where other runs may be going on.
uniq="t$$-$RANDOM"

# complete_words WORDS...: what the bash completion offers for the last word.
complete_words() { # WORDS...: what the completion offers for the last word
    bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _anylock; printf "%s\n" "${COMPREPLY[@]}"' \
        _ "$top_srcdir/cli/completion/anylock" "$@"
}

# ---- the stores ------------------------------------------------------------------
#
# STORES lists every store the command is tested on.  For each NAME:
#   start_NAME      starts the store (if it is a server) and sets url_NAME
#   foreign_NAME    writes a lock as another client would: foreign_NAME
#                   KEY_HEX OWNER_HEX (the key with the prefix, as hex)
#   caps_NAME       what the store can do, each tested both ways:
#     list     list and reset-all work (else they exit 70)
#     meta     holder metadata (host, pid, since, label) is kept
#     shared   -s works (else exit 70, "cannot take")
#     sem      --permits works (else exit 70, "cannot take")
#     session  a lock is freed the moment its holder dies, and needs no
#              expiry (by default it has none)
#     binary   names and owners holding NUL, and owners over 64 bytes, come
#              back whole
#     keys     keys may hold any bytes (memcached's may not)
#     values   a foreign owner value comes back as written (its first 64
#              bytes), not only as "held"
#     token    the store issues fencing tokens (ANYLOCK_TOKEN for the command)
#     foreign  foreign_NAME can write another client's lock (postgres's
#              holders are rows of live sessions: the shell cannot forge one)
STORES=(sqlite redis memcached postgres etcd)
caps_sqlite="list keys values meta shared sem binary token foreign"
caps_redis="list keys values meta shared sem binary token foreign"
caps_memcached="meta shared sem foreign"
caps_postgres="list meta shared token session"
caps_etcd="list values meta shared sem token foreign"

start_sqlite() { url_sqlite="sqlite:///$tmp/locks.db"; db_sqlite=$tmp/locks.db; }
foreign_sqlite() {
    sqlite3 "$db_sqlite" "INSERT OR REPLACE INTO anylock_holders(key, owner, expires_at) VALUES (x'$1', x'$2', 0)"
}

start_redis() {
    command -v redis-server >/dev/null || { fail "redis-server not installed"; return 1; }
    port_redis=$(free_port)
    redis-server --port "$port_redis" --bind 127.0.0.1 --dir "$tmp" --save '' --appendonly no \
        --loglevel warning >"$tmp/redis.log" 2>&1 &
    pids+=($!)
    wait_for 10 port_open "$port_redis" || { fail "redis-server did not start: $(cat "$tmp/redis.log")"; return 1; }
    url_redis="redis://127.0.0.1:$port_redis"
}
# redis-cli reads its commands from stdin and decodes "\xHH" in quoted words.
redis_quote() { "$PY" -c 'import sys; print("\"" + "".join("\\x%02x" % b for b in bytes.fromhex(sys.argv[1])) + "\"")' "$1"; }
foreign_redis() {
    echo "SET $(redis_quote "$1") $(redis_quote "$2")" | redis-cli -p "$port_redis" >/dev/null
}

start_memcached() {
    command -v memcached >/dev/null || { fail "memcached not installed"; return 1; }
    port_memcached=$(free_port)
    local user=(); [ "$(id -u)" = 0 ] && user=(-u root)
    memcached -p "$port_memcached" -l 127.0.0.1 -U 0 -m 64 "${user[@]}" >"$tmp/memcached.log" 2>&1 &
    pids+=($!)
    wait_for 10 port_open "$port_memcached" || { fail "memcached did not start: $(cat "$tmp/memcached.log")"; return 1; }
    url_memcached="memcached://127.0.0.1:$port_memcached"
}
foreign_memcached() {
    "$PY" - "$port_memcached" "$1" "$2" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
key, val = bytes.fromhex(sys.argv[2]), bytes.fromhex(sys.argv[3])
s.sendall(b"set " + key + b" 0 0 %d\r\n" % len(val) + val + b"\r\n")
assert s.recv(100).startswith(b"STORED"), "memcached did not store it"
PY
}

# PostgreSQL refuses to run as root: as root, initdb and the server run as
# the "postgres" user (setpriv execs, so the PID kept is the postmaster's).
start_postgres() {
    local bindir=${ANYLOCK_PG_BINDIR:-}
    [ -n "$bindir" ] || bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -x "$bindir/postgres" ] || { fail "postgresql not installed"; return 1; }
    local as=() pg=$tmp/pg
    mkdir -p "$pg"
    if [ "$(id -u)" = 0 ]; then
        chmod 711 "$tmp" # the postgres user may pass through to its own directory
        chown -R postgres: "$pg" || { fail "no postgres user to run PostgreSQL as"; return 1; }
        as=(setpriv --reuid=postgres --regid=postgres --init-groups)
    fi
    "${as[@]}" "$bindir/initdb" -D "$pg/data" -A trust -U postgres -E UTF8 --locale=C -N >"$pg/initdb.log" 2>&1 ||
        { fail "initdb failed: $(cat "$pg/initdb.log")"; return 1; }
    port_postgres=$(free_port)
    "${as[@]}" "$bindir/postgres" -D "$pg/data" -k "$pg" -h 127.0.0.1 -p "$port_postgres" -c fsync=off \
        >"$pg/server.log" 2>&1 &
    pids+=($!); quit_pids+=($!)
    wait_for 30 "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port_postgres" ||
        { fail "postgres did not start: $(cat "$pg/server.log")"; return 1; }
    url_postgres="postgres://postgres@127.0.0.1:$port_postgres/postgres"
}

# One member is enough for the command (tests/test_etcd runs a 3-member
# cluster).
start_etcd() {
    command -v etcd >/dev/null || { fail "etcd not installed"; return 1; }
    port_etcd=$(free_port)
    local peer
    peer=$(free_port)
    etcd --name cli --data-dir "$tmp/etcd" --listen-client-urls "http://127.0.0.1:$port_etcd" \
        --advertise-client-urls "http://127.0.0.1:$port_etcd" --listen-peer-urls "http://127.0.0.1:$peer" \
        --initial-advertise-peer-urls "http://127.0.0.1:$peer" --initial-cluster "cli=http://127.0.0.1:$peer" \
        --log-level error >"$tmp/etcd.log" 2>&1 &
    pids+=($!)
    wait_for 20 "$PY" -c 'import sys, urllib.request; urllib.request.urlopen("http://127.0.0.1:%s/health" % sys.argv[1], timeout=1)' \
        "$port_etcd" || { fail "etcd did not start: $(cat "$tmp/etcd.log")"; return 1; }
    url_etcd="etcd://127.0.0.1:$port_etcd"
}
# A contender key under the name, as etcdctl lock writes them (NAME/LEASE).
foreign_etcd() {
    "$PY" - "$port_etcd" "$1" "$2" <<'PY'
import base64, json, sys, urllib.request
key = bytes.fromhex(sys.argv[2]) + b"/694d3f2a1b"
body = {"key": base64.b64encode(key).decode(), "value": base64.b64encode(bytes.fromhex(sys.argv[3])).decode()}
req = urllib.request.Request("http://127.0.0.1:%s/v3/kv/put" % sys.argv[1], json.dumps(body).encode())
assert "header" in json.loads(urllib.request.urlopen(req, timeout=5).read()), "etcd did not store it"
PY
}
hex() { printf '%s' "$1" | od -An -v -tx1 | tr -d ' \n'; }

store_tests() {
    local what=$1
    local url caps
    eval "url=\$url_$what caps=\$caps_$what"
    local d="$tmp/$what"
    mkdir -p "$d"
    OUT=$d/out
    ERR=$d/err
    note "store $what: $url (can: ${caps:-nothing extra})"
    local U=(--url "$url")
    can() { [[ " $caps " == *" $1 "* ]]; }
    local host t_start=$SECONDS
    host=$(hostname)

    # The command is told which lock it runs under, and its fencing token
    # where the store issues them: each run's token above the last one's.
    "$A" "${U[@]}" --id env-owner run ENVL sh -c 'echo "$ANYLOCK_NAME|$ANYLOCK_ID|${ANYLOCK_TOKEN-none}"' >"$d/env1" 2>&1
    "$A" "${U[@]}" --id env-owner run ENVL sh -c 'echo "$ANYLOCK_NAME|$ANYLOCK_ID|${ANYLOCK_TOKEN-none}"' >"$d/env2" 2>&1
    local t1env t2env
    IFS='|' read -r n1 i1 t1env <"$d/env1"
    IFS='|' read -r n2 i2 t2env <"$d/env2"
    [ "$n1|$i1" = "ENVL|env-owner" ] || fail "$what: ANYLOCK_NAME/ANYLOCK_ID: $(cat "$d/env1")"
    if can token; then
        [ "$t1env" != none ] && [ "$t2env" -gt "$t1env" ] 2>/dev/null ||
            fail "$what: ANYLOCK_TOKEN did not rise: $t1env then $t2env"
    else
        [ "$t1env" = none ] || fail "$what: ANYLOCK_TOKEN set on a store without tokens: $t1env"
    fi

    if can list; then
        run_rc 0 "$A" "${U[@]}" list
        run_rc 0 "$A" "${U[@]}" reset-all
    else
        run_rc 70 "$A" "${U[@]}" list
        contains "$ERR" "anylock: cannot list" "$what: list refusal message"
        run_rc 70 "$A" "${U[@]}" reset-all
        contains "$ERR" "anylock: cannot reset" "$what: reset-all refusal message"
    fi
    # status: 1 when free (issue 17), 0 when held.
    run_rc 1 "$A" "${U[@]}" status L
    [ "$(cat "$OUT")" = free ] || fail "$what: status of a free lock: $(cat "$OUT")"
    run_rc 1 "$A" "${U[@]}" status --json L
    json_check "$OUT" "v['held'] is False and v['host'] is None" "$what: status --json free"
    run_rc 1 "$A" "${U[@]}" -q status L
    [ -s "$OUT" ] && fail "$what: status -q printed: $(cat "$OUT")"
    run_rc 0 "$HELLO" "$url"
    contains "$OUT" "got the lock" "$what: examples/hello"

    # A holds L until the test lets it go, so nothing here depends on timing.
    "$A" "${U[@]}" --id holder-A run L sh -c "echo A-start >>'$d/log'; while [ ! -e '$d/go' ]; do sleep 0.05; done; echo A-end >>'$d/log'" \
        >"$d/a.out" 2>"$d/a.err" &
    local a=$!; pids+=("$a")
    wait_for 10 grep -q A-start "$d/log" || fail "$what: A never started"
    run_rc 0 "$A" "${U[@]}" status L
    contains "$OUT" "held by holder-A" "$what: status held"
    run_rc 0 "$A" "${U[@]}" --json status L
    local lease="v['expires_in'] > 0"
    can session && lease="v['expires_in'] is None"
    json_check "$OUT" "v['held'] is True and v['owner'] == 'holder-A' and v['mode'] == 'exclusive' and v['holders'] == 1 and $lease" \
        "$what: status --json held"
    # Issue 17: who the holder is (host, pid, when, the command line), on
    # stores that keep it; a store that does not says nothing made up.
    if can meta; then
        run_rc 0 "$A" "${U[@]}" status L
        contains "$OUT" "pid $a on $host since " "$what: status shows the holder's pid and host"
        contains "$OUT" "sh -c 'echo A-start" "$what: status shows the holder's command line"
        run_rc 0 "$A" "${U[@]}" --json status L
        json_check "$OUT" "v['pid'] == $a and v['host'] == '$host' and v['since'] > 1e9 and v['label'].startswith(\"sh -c 'echo A-start\")" \
            "$what: status --json holder metadata"
    else
        run_rc 0 "$A" "${U[@]}" --json status L
        json_check "$OUT" "v['pid'] is None and v['host'] is None and v['label'] is None" \
            "$what: no metadata kept, none shown (add 'meta' to caps_$what once the backend keeps it)"
    fi
    if can list; then
        run_rc 0 "$A" "${U[@]}" list
        contains "$OUT" "L: held by holder-A" "$what: list"
        can meta && contains "$OUT" "pid $a on $host" "$what: list shows the holder"
        run_rc 0 "$A" "${U[@]}" list --json
        json_check "$OUT" "[x['owner'] for x in v if x['name'] == 'L'] == ['holder-A']" "$what: list --json"
        run_rc 0 "$A" "${U[@]}" list --names
        [ "$(cat "$OUT")" = L ] || fail "$what: list --names: $(cat "$OUT")"
        # Issue 12 item 17: list exits non-zero when its output is lost.
        run_rc 74 sh -c "'$A' --url '$url' list >/dev/full"
        run_rc 74 sh -c "'$A' --url '$url' --json list >/dev/full"
        # Completion offers held names.
        complete_words "$A" --url "$url" status "" >"$OUT"
        [ "$(cat "$OUT")" = L ] || fail "$what: completion of held names: $(cat "$OUT")"
    fi
    run_rc 74 sh -c "'$A' --url '$url' status L >/dev/full"

    # Contention: -n and -w give up with exit 1 (-E), and say so (issue 17)
    # unless -q; the command never runs.
    run_rc 1 "$A" "${U[@]}" -n run L echo should-not-run
    [ -s "$OUT" ] && fail "$what: the command ran without the lock"
    contains "$ERR" "\"L\" is held by holder-A" "$what: -n says who holds it"
    contains "$ERR" "not waiting" "$what: -n says it did not wait"
    run_rc 1 "$A" "${U[@]}" --nonblock -q run L true
    [ -s "$ERR" ] && fail "$what: -q still said: $(cat "$ERR")"
    run_rc 7 "$A" "${U[@]}" -n -E 7 run L true
    run_rc 1 "$A" "${U[@]}" --wait 0.3 run L true
    contains "$ERR" "gave up on \"L\" after 0." "$what: a timeout says how long it waited"
    contains "$ERR" "held by holder-A" "$what: a timeout says who holds it"
    run_rc 1 "$A" "${U[@]}" --json -w 0.3 run L true
    json_check "$ERR" "names == ['waiting', 'gave_up'] and ev['gave_up']['status'] == 'TIMEOUT' and ev['gave_up']['holder']['owner'] == 'holder-A' and ev['waiting']['holder']['owner'] == 'holder-A' and ev['gave_up']['waited'] >= 0.25" \
        "$what: run --json gives up in events"
    run_rc 1 "$A" "${U[@]}" -w 0.2 -n run L true # -n after -w: flock's "last one wins"
    # wait: still held after the timeout: 1.
    run_rc 1 "$A" "${U[@]}" -w 0.3 wait L
    contains "$OUT" "still held after" "$what: wait times out"
    run_rc 1 "$A" "${U[@]}" -n --json wait L
    json_check "$OUT" "v['free'] is False and v['holder']['owner'] == 'holder-A'" "$what: wait --json held"
    # An ANYLOCK_ID holder is recognised by that id; --id wins over it.
    ANYLOCK_ID=from-env "$A" "${U[@]}" run L2 sh -c "echo x >'$d/l2'; while [ ! -e '$d/go' ]; do sleep 0.05; done" &
    local e=$!; pids+=("$e")
    wait_for 10 test -s "$d/l2" || fail "$what: the ANYLOCK_ID holder never started"
    run_rc 0 "$A" "${U[@]}" status L2
    contains "$OUT" "held by from-env" "$what: ANYLOCK_ID sets the id"
    run_rc 1 env ANYLOCK_ID=from-env "$A" "${U[@]}" --id other -n run L2 true

    # B waits, and says for whom; C waits with --json; W waits for L to be
    # free without taking it.  A lets go: W returns, B and C run in turn.
    local t0 t1
    t0=$(now)
    "$A" "${U[@]}" -v -w 60 run L sh -c "echo B-start >>'$d/log'" >"$d/b.out" 2>"$d/b.err" &
    local b=$!; pids+=("$b")
    "$A" "${U[@]}" --json -w 60 run L sh -c "echo C-start >>'$d/log'" >"$d/c.out" 2>"$d/c.err" &
    local c=$!; pids+=("$c")
    "$A" "${U[@]}" -w 60 wait L >"$d/w.out" 2>"$d/w.err" &
    local w=$!; pids+=("$w")
    wait_for 15 grep -q "waiting for" "$d/b.err" || fail "$what: B never said it was waiting"
    contains "$d/b.err" "held by holder-A" "$what: B says whom it waits for"
    can meta && contains "$d/b.err" "pid $a on $host" "$what: B's waiting message shows the holder"
    wait_for 15 grep -q '"waiting"' "$d/c.err" || fail "$what: C never said it was waiting"
    kill -0 "$w" 2>/dev/null || fail "$what: wait returned while L was held: $(cat "$d/w.out" "$d/w.err")"
    touch "$d/go"
    wait_pid 15 "$a" || fail "$what: A exited $?"
    wait_pid 15 "$w" || fail "$what: wait exited $?: $(cat "$d/w.err")"
    contains "$d/w.out" "free after" "$what: wait says it is free"
    wait_pid 15 "$b" || fail "$what: B exited $?"
    wait_pid 15 "$c" || fail "$what: C exited $?"
    wait_pid 15 "$e"
    t1=$(now)
    local order
    order=$(tr '\n' ' ' <"$d/log")
    [ "$order" = "A-start A-end B-start C-start " ] || [ "$order" = "A-start A-end C-start B-start " ] ||
        fail "$what: order: $order"
    json_check "$d/c.err" "names[0] == 'waiting' and ev['waiting']['holder']['owner'] == 'holder-A' and names[1:3] == ['acquired', 'started'] and names[-2:] == ['exited', 'released'] and ev['acquired']['waited'] > 0" \
        "$what: run --json events of a waiter"
    note "$what: B waited $(elapsed "$t0" "$t1") s in all"
    run_rc 0 "$A" "${U[@]}" -n wait L

    # reset from another anylock: the holder's child is terminated, and
    # --json says it was lost.
    "$A" "${U[@]}" --id victim --json -l "$(secs 1)" run L sh -c "echo \$\$ >'$d/pid1'; exec sleep 30" >"$d/r.out" 2>"$d/r.err" &
    local r=$!; pids+=("$r")
    wait_for 10 test -s "$d/pid1" || fail "$what: victim never started"
    run_rc 0 "$A" "${U[@]}" reset L
    contains "$OUT" "reset L (it was held by victim" "$what: reset says whom"
    t0=$(now)
    wait_pid 20 "$r"; local rc=$?
    t1=$(now)
    [ "$rc" = 143 ] || fail "$what: lost lock: anylock exited $rc, wanted 143 (child terminated)"
    json_check "$d/r.err" "ev['lost']['action'] == 'terminate' and ev['lost']['status'] in ('NOT_HELD', 'TIMEOUT') and ev['exited']['signal'] == 15 and 'released' not in names" \
        "$what: run --json reports the loss"
    note "$what: child terminated $(elapsed "$t0" "$t1") s after the reset (lease 1 s)"

    # ... and with --keep-going-on-loss it finishes (it waits until the test
    # has seen the loss reported).
    rm -f "$d/done"
    "$A" "${U[@]}" --keep-going-on-loss -l "$(secs 1)" run L sh -c "echo go >'$d/started'; while [ ! -e '$d/go2' ]; do sleep 0.05; done; echo finished >'$d/done'" \
        >"$d/k.out" 2>"$d/k.err" &
    local k=$!; pids+=("$k")
    wait_for 10 test -s "$d/started" || fail "$what: keep-going child never started"
    run_rc 0 "$A" "${U[@]}" --json reset L
    json_check "$OUT" "v['reset'] == 'L' and v['was_held'] is True and v['was']['held'] is True" "$what: reset --json"
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
    run_rc 1 "$A" "${U[@]}" status L
    [ "$(cat "$OUT")" = free ] || fail "$what: lock not released after the signal: $(cat "$OUT")"

    # A SIGKILLed anylock: its lock expires, and its child is terminated.
    rm -f "$d/pid2"
    "$A" "${U[@]}" -l 3 run L sh -c "echo \$\$ >'$d/pid2'; exec sleep 30" >/dev/null 2>&1 &
    local kpid=$!; pids+=("$kpid")
    wait_for 10 test -s "$d/pid2" || fail "$what: killed-anylock child never started"
    kill -9 "$kpid"
    t0=$(now)
    { wait "$kpid"; } 2>/dev/null
    if can session; then
        # The holder's session ended with it: free at once, not at the end
        # of its lease.
        wait_for 2 sh -c "! '$A' --url '$url' status L >/dev/null" ||
            fail "$what: still held 2 s after its holder was SIGKILLed (lease 3 s, a session store)"
    else
        run_rc 0 "$A" "${U[@]}" status L
        contains "$OUT" "held by" "$what: still held right after SIGKILL (lease 3 s)"
    fi
    run_rc 0 "$A" "${U[@]}" -w 20 run L true
    t1=$(now)
    note "$what: lock of a SIGKILLed anylock free again after $(elapsed "$t0" "$t1") s (lease 3 s)"
    wait_for 10 sh -c "! kill -0 $(cat "$d/pid2")" || fail "$what: the child of a SIGKILLed anylock still runs"

    # Shared locks and semaphores (issue 16 lands them store by store).
    if can shared; then
        "$A" "${U[@]}" -s run S sh -c "echo 1 >'$d/s1'; while [ ! -e '$d/go3' ]; do sleep 0.05; done" &
        local s1=$!; pids+=("$s1")
        wait_for 10 test -s "$d/s1" || fail "$what: the first shared holder never started"
        run_rc 0 "$A" "${U[@]}" -s -n run S true
        run_rc 1 "$A" "${U[@]}" -n run S true
        run_rc 0 "$A" "${U[@]}" --json status S
        json_check "$OUT" "v['mode'] == 'shared' and len(v['holder_list']) == 1" "$what: status of a shared lock"
        # A second shared holder: status shows each of them.
        "$A" "${U[@]}" -s run S sh -c "echo 1 >'$d/s2'; while [ ! -e '$d/go3' ]; do sleep 0.05; done" &
        local s2=$!; pids+=("$s2")
        wait_for 10 test -s "$d/s2" || fail "$what: the second shared holder never started"
        run_rc 0 "$A" "${U[@]}" --json status S
        json_check "$OUT" "v['holders'] == 2 and len({h['owner'] for h in v['holder_list']}) == 2 and all(h['pid'] for h in v['holder_list'])" "$what: status lists both shared holders"
        run_rc 0 "$A" "${U[@]}" status S
        contains "$OUT" "held shared by 2 holders" "$what: status of two shared holders"
        [ "$(grep -c '^  .*expires' "$OUT")" = 2 ] || fail "$what: status does not show a line per holder: $(cat "$OUT")"
        run_rc 0 "$A" "${U[@]}" -s -n wait S
        run_rc 1 "$A" "${U[@]}" -n wait S
        touch "$d/go3"
        wait_pid 15 "$s1"
        wait_pid 15 "$s2"
    else
        run_rc 70 "$A" "${U[@]}" -s -n run S true
        contains "$ERR" "cannot take shared locks" "$what: -s on a store without shared locks"
    fi
    if can sem; then
        run_rc 0 "$A" "${U[@]}" --permits 2 -n run P true
    else
        run_rc 70 "$A" "${U[@]}" --permits 2 -n run P true
        contains "$ERR" "cannot take semaphores" "$what: --permits on a store without semaphores"
    fi

    # The systemd unit of docs/cli.md: systemd-analyze accepts it, and its
    # ExecStart, run in the environment systemd gives (PATH and the
    # EnvironmentFile, nothing else), takes the lock or is skipped with the
    # unit's success status.
    local unit="$d/make-report.service" envf="$d/make-report.env"
    doc_block systemd |
        sed -e "s|/usr/local/bin/|$tmp/bin/|g" -e "s|/etc/anylock/make-report.env|$envf|" \
            -e "s| run make-report | run $uniq-unit-$what |" >"$unit"
    grep -q '^ExecStart=' "$unit" || fail "docs/cli.md has no tested systemd unit"
    echo "ANYLOCK_URL=$url" >"$envf"
    echo "REPORT_DIR=$d/unit" >>"$envf"
    mkdir -p "$d/unit"
    if ! command -v systemd-analyze >/dev/null; then
        fail "systemd-analyze is not installed (scripts/install-deps.sh installs systemd)"
    else
        systemd-analyze verify "$unit" >"$d/verify.out" 2>&1 || fail "$what: systemd-analyze verify: $(cat "$d/verify.out")"
        [ -s "$d/verify.out" ] && fail "$what: systemd-analyze verify complains: $(cat "$d/verify.out")"
    fi
    local exec ok_status
    exec=$(sed -n 's/^ExecStart=//p' "$unit")
    ok_status=$(sed -n 's/^SuccessExitStatus=//p' "$unit")
    local sdenv=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
    while IFS= read -r line; do sdenv+=("$line"); done < <(grep -v '^#' "$envf")
    # shellcheck disable=SC2086
    "${sdenv[@]}" $exec >"$d/u1.out" 2>"$d/u1.err" &
    local u1=$!; pids+=("$u1")
    wait_for 10 grep -q start "$d/unit/report.log" || fail "$what: the unit's command never started: $(cat "$d/u1.err")"
    # shellcheck disable=SC2086
    "${sdenv[@]}" $exec >"$d/u2.out" 2>"$d/u2.err"
    rc=$?
    [ "$rc" = "$ok_status" ] || fail "$what: the unit's second start exited $rc, not SuccessExitStatus=$ok_status: $(cat "$d/u2.err")"
    json_check "$d/u2.err" "names == ['gave_up'] and ev['gave_up']['status'] == 'BUSY'" "$what: the skipped unit's journal lines"
    touch "$d/unit/report.go"
    wait_pid 15 "$u1" || fail "$what: the unit's first start exited $?"
    json_check "$d/u1.err" "names[0] == 'acquired' and names[-1] == 'released'" "$what: the unit's journal lines"
    [ "$(grep -c start "$d/unit/report.log")" = 1 ] || fail "$what: the unit ran twice at once"

    # Issue 12 item 16: locks written by another client, holding what a
    # terminal or a JSON reader must not get raw.
    local prefix=lock:
    local evil_owner
    evil_owner=$(hex $'\xff\xfe\nheld by root\x1b[2J\x07')e282 # cut mid-character
    if can foreign; then
        foreign_"$what" "$(hex "${prefix}foreign-owner")" "$evil_owner"
        run_rc 0 "$A" "${U[@]}" status foreign-owner
        safe_text "$OUT" "$what: status of a foreign owner"
        grep -q '^held by root' "$OUT" && fail "$what: a foreign owner forged a line: $(cat "$OUT")"
        can values && contains "$OUT" 'held by \xFF\xFE\nheld by root\x1B[2J\x07' "$what: the foreign owner, escaped"
        run_rc 0 "$A" "${U[@]}" --json status foreign-owner
        if can values; then
            json_check "$OUT" "v['owner'] == '\ufffd\ufffd\nheld by root\x1b[2J\x07\ufffd\ufffd' and bytes.fromhex(v['owner_hex']) == bytes.fromhex('$evil_owner')" \
                "$what: --json of a foreign owner"
        else
            json_check "$OUT" "v['held'] is True" "$what: --json of a foreign owner: held"
        fi
        if can keys; then
            foreign_"$what" "$(hex "${prefix}evil")0a$(hex "held by root")1b5d303b7469746c6507e280ae" "$(hex x)"
            foreign_"$what" "$(hex "${prefix}bad")fffe" "$(hex y)"
            foreign_"$what" "$(hex "${prefix}nul")00$(hex name)" "6f776e00$(hex er)"
            foreign_"$what" "$(hex "${prefix}long")" "$(hex "$(printf 'A%.0s' {1..100})")"
            if can list; then
                run_rc 0 "$A" "${U[@]}" list
                safe_text "$OUT" "$what: list of foreign names"
                grep -q '^held by root' "$OUT" && fail "$what: a foreign name forged a line: $(cat "$OUT")"
                contains "$OUT" 'evil\nheld by root\x1B]0;title\x07\u202E: held by x' "$what: a foreign name, escaped"
                contains "$OUT" 'bad\xFF\xFE: held by y' "$what: a name that is not UTF-8, escaped"
                run_rc 0 "$A" "${U[@]}" --json list
                json_check "$OUT" "{x['name'] for x in v} >= {'evil\nheld by root\x1b]0;title\x07\u202e', 'bad\ufffd\ufffd'} and [x['name_hex'] for x in v if x['name'].startswith('bad')] == ['626164fffe']" \
                    "$what: list --json of foreign names"
                if can binary; then
                    json_check "$OUT" "'nul\x00name' in {x['name'] for x in v} and [x['owner'] for x in v if x['name'].startswith('nul')] == ['own\x00er'] and [x['owner_len'] for x in v if x['name'] == 'long'] == [100]" \
                        "$what: names and owners with NUL, long owners, come back whole"
                fi
                run_rc 0 "$A" "${U[@]}" list --names
                safe_text "$OUT" "$what: list --names of foreign names"
            fi
            run_rc 0 "$A" "${U[@]}" status long
            safe_text "$OUT" "$what: status of a long owner"
            can binary && contains "$OUT" "(an owner id of 100 bytes)" "$what: a long owner says its length"
            run_rc 0 "$A" "${U[@]}" reset foreign-owner
            safe_text "$OUT" "$what: reset of a foreign owner"
            # The names that cannot be typed go with reset-all below.
            run_rc 0 "$A" "${U[@]}" reset long
        else
            run_rc 0 "$A" "${U[@]}" reset foreign-owner
            safe_text "$OUT" "$what: reset of a foreign owner"
        fi
    fi

    note "$what: $SECONDS s so far"
    # reset-all frees everything under the prefix.
    can list || return 0
    "$A" "${U[@]}" -l 5 run M1 sleep 30 >/dev/null 2>&1 &
    local m1=$!; pids+=("$m1")
    "$A" "${U[@]}" -l 5 run M2 sleep 30 >/dev/null 2>&1 &
    local m2=$!; pids+=("$m2")
    wait_for 10 sh -c "'$A' --url '$url' status M1 && '$A' --url '$url' status M2" || fail "$what: M1/M2 never held"
    run_rc 0 "$A" "${U[@]}" reset-all
    contains "$OUT" "reset" "$what: reset-all output"
    run_rc 1 "$A" "${U[@]}" status M1
    run_rc 0 "$A" "${U[@]}" list
    [ -s "$OUT" ] && fail "$what: list after reset-all: $(cat "$OUT")"
    wait_pid 20 "$m1"; wait_pid 20 "$m2"
}

# Issue 12 item 3: a holder whose store stalls has its command terminated no
# later than the end of the last lease the store granted, so before anyone
# else can take the lock: behind a TCP relay that freezes (SIGSTOP), and with
# the redis server itself SIGSTOPped; with -v and with --json (neither may
# make anylock wait for the store while the command runs).  Its own redis
# server, since it freezes it.
stall_tests() {
    local d="$tmp/stall"
    mkdir -p "$d"
    OUT=$d/out
    ERR=$d/err
    local port rport relay srv
    port=$(free_port)
    redis-server --port "$port" --bind 127.0.0.1 --dir "$d" --save '' --appendonly no --loglevel warning \
        >"$d/redis.log" 2>&1 &
    srv=$!; pids+=("$srv")
    wait_for 10 port_open "$port" || { fail "stall: redis-server did not start"; return; }
    "$PY" "$top_srcdir/tests/tcp_relay.py" "$port" >"$d/relay.port" 2>"$d/relay.err" &
    relay=$!; pids+=("$relay")
    wait_for 10 test -s "$d/relay.port" || { fail "stall: the relay did not start: $(cat "$d/relay.err")"; return; }
    rport=$(cat "$d/relay.port")
    # The child records (bash, no fork) when it got SIGTERM; the contender
    # records when it got the lock.
    local child='trap "echo \$EPOCHREALTIME >$D/term; kill \$!; exit 143" TERM; echo x >$D/started; sleep 60 & wait'
    local how mode lease
    lease=$(secs 2)
    for how in relay:-v relay:--json sigstop:-v sigstop:--json; do
        mode=${how#*:}
        local hurl="redis://127.0.0.1:$port" victim=$srv
        if [ "${how%:*}" = relay ]; then hurl="redis://127.0.0.1:$rport"; victim=$relay; fi
        rm -f "$d/term" "$d/started" "$d/got"
        "$A" --url "$hurl" "$mode" -l "$lease" run S bash -c "${child//\$D/$d}" >"$d/h.out" 2>"$d/h.err" &
        local h=$!; pids+=("$h")
        wait_for 10 test -s "$d/started" || fail "stall $how: the holder never started: $(cat "$d/h.err")"
        # Freeze after a renewal went through, so that a renewal is what the
        # stall meets.
        wait_for 10 grep -qE '"event":"renewed"|renewed "S"' "$d/h.err" || fail "stall $how: no renewal before the stall"
        kill -STOP "$victim"
        local stopped rc
        stopped=$(now)
        if [ "${how%:*}" = relay ]; then
            # The contender talks to redis directly, so it gets the lock the
            # moment the holder's lease ends in redis.
            "$A" --url "redis://127.0.0.1:$port" -w 20 run S bash -c "echo \$EPOCHREALTIME >'$d/got'" \
                >"$d/g.out" 2>"$d/g.err" &
            local g=$!; pids+=("$g")
            wait_pid 20 "$g" || fail "stall $how: the contender exited $?: $(cat "$d/g.err")"
            # The link comes back once the child is gone, so that the
            # holder's release (of what it lost) need not wait for its
            # command timeout.
            wait_for 10 test -s "$d/term"
            kill -CONT "$victim"
            wait_pid 20 "$h"
            rc=$?
        else
            # redis itself is stopped: nobody can take the lock until it
            # runs again, so the holder must give up before that.
            wait_for 10 test -s "$d/term" || fail "stall $how: the child got no SIGTERM while redis was stopped"
            kill -CONT "$victim"
            wait_pid 20 "$h"
            rc=$?
            run_rc 0 "$A" --url "redis://127.0.0.1:$port" -w 20 run S bash -c "echo \$EPOCHREALTIME >'$d/got'"
        fi
        [ "$rc" = 143 ] || fail "stall $how: the holder exited $rc, wanted 143 (its child terminated)"
        [ -s "$d/term" ] || { fail "stall $how: the child never got SIGTERM: $(cat "$d/h.err")"; continue; }
        [ -s "$d/got" ] || { fail "stall $how: the contender never got the lock"; continue; }
        local term got
        term=$(cat "$d/term")
        got=$(cat "$d/got")
        before "$term" "$got" || fail "stall $how: the contender got the lock at $got, before the child was terminated at $term"
        # The last lease began before the stall, so it ended within 2 s of
        # it; 0.5 s more for the signal to reach the child's trap on a busy
        # machine.
        before "$term" "$(awk -v t="$stopped" -v l="$lease" 'BEGIN { printf "%.6f", t + l + 0.5 }')" ||
            fail "stall $how: child terminated $(elapsed "$stopped" "$term") s after the stall (lease $lease s)"
        if [ "$mode" = --json ]; then
            local renewed
            renewed=$("$PY" -c 'import json,sys; print([e["time"] for e in map(json.loads, open(sys.argv[1])) if e["event"] == "renewed"][-1])' "$d/h.err")
            before "$term" "$(awk -v r="$renewed" -v l="$lease" 'BEGIN { printf "%.6f", r + l + 0.5 }')" ||
                fail "stall $how: child terminated $(elapsed "$renewed" "$term") s after the last renewal (lease $lease s)"
            json_check "$d/h.err" "ev['lost']['action'] == 'terminate' and ev['exited']['exit_code'] == 143" \
                "stall $how: the loss is reported"
        else
            contains "$d/h.err" 'lost the lock "S"' "stall $how: the loss is reported"
        fi
        note "stall $how ($SECONDS s): child terminated $(elapsed "$stopped" "$term") s after the stall, the other process got the lock at +$(elapsed "$stopped" "$got") s (lease $lease s)"
    done
}

# Each store's tests run in a background subshell of their own, started
# before the store-independent tests below, so that all their waits overlap;
# each reports through its exit status and log.
store_pids=()
jobs_run=()
launch() { # NAME FUNCTION ARG...
    local name=$1; shift
    (
        failures=0
        pids=()
        "$@"
        for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; done
        [ "$failures" = 0 ]
    ) >"$tmp/$name.log" 2>&1 &
    store_pids+=($!)
    jobs_run+=("$name")
}

for s in "${STORES[@]}"; do
    if ! have "$s"; then
        fail "this build has no $s:// backend (configure --with-$s)"
        continue
    fi
    "start_$s" && launch "$s" store_tests "$s"
done
if have redis && command -v redis-server >/dev/null; then
    launch stall stall_tests
fi


# ---- faults://: the command's own loss handling, with no server ------------------

faults_tests() {
    local d="$tmp/faults" t0
    mkdir -p "$d"
    OUT=$d/out
    ERR=$d/err
    # A lock lost while the command runs: the command is terminated at once.
    t0=$(now)
    run_rc 143 "$A" --url 'faults://?lose_after=0.5' -l 30 run job \
        sh -c "trap 'date +%s.%N >\"$d/termed\"; exit 143' TERM; sleep 30 & wait"
    contains "$ERR" 'lost the lock "job"' "faults: lose_after is reported"
    contains "$ERR" "lose_after" "faults: the loss says why"
    [ -s "$d/termed" ] || fail "faults: the command was not terminated on loss"
    before "$(elapsed "$t0" "$(cat "$d/termed" 2>/dev/null || echo 1e9)")" "$(secs 5)" ||
        fail "faults: the command was terminated $(elapsed "$t0" "$(cat "$d/termed")") s in, not soon after the 0.5 s loss"
    # --keep-going-on-loss: the command finishes, the loss is still said.
    run_rc 0 "$A" --url 'faults://?lose_after=0.2' --keep-going-on-loss -l 30 run job sleep 0.6
    contains "$ERR" "letting sleep finish" "faults: --keep-going-on-loss"
    # A renewal stalled past the lease: terminated at the lease's end, not
    # when the stalled renewal returns.
    rm -f "$d/termed"
    t0=$(now)
    run_rc 143 "$A" --url "faults://?renewal_pause=$(secs 6)" -l "$(secs 1)" run job \
        sh -c "trap 'date +%s.%N >\"$d/termed\"; exit 143' TERM; sleep 60 & wait"
    contains "$ERR" "renewal got no answer" "faults: a stalled renewal is a loss"
    [ -s "$d/termed" ] || fail "faults: the command was not terminated when its lease ended"
    before "$(elapsed "$t0" "$(cat "$d/termed" 2>/dev/null || echo 1e9)")" "$(secs 1.6)" ||
        fail "faults: terminated $(elapsed "$t0" "$(cat "$d/termed")") s in, past the 1 s lease"
    # A store that cannot be reached is exit 69; the command never runs.
    run_rc 69 "$A" --url 'faults://?fail_acquire=1:CONNECT' run job touch "$d/ran"
    [ ! -e "$d/ran" ] || fail "faults: the command ran without the lock"
    contains "$ERR" "acquire failed on purpose (CONNECT)" "faults: fail_acquire says why"
    # A release that fails is said; the command's own status stands.
    run_rc 0 "$A" --url 'faults://?fail_release=1:IO' run job true
    contains "$ERR" "release failed on purpose (IO)" "faults: fail_release is said"
}
launch faults faults_tests

# ---- the command line ------------------------------------------------------

cmdline_tests() {
    local d="$tmp/cmdline"
    mkdir -p "$d"
    OUT=$d/out
    ERR=$d/err

    run_rc 64 "$A"
    contains "$ERR" "usage:" "no arguments: usage"
    run_rc 64 "$A" --no-such-option list
    contains "$ERR" "unknown option --no-such-option" "unknown option"
    run_rc 64 "$A" frobnicate
    run_rc 64 "$A" --url memory:// run
    run_rc 64 "$A" --url memory:// run name-only
    run_rc 64 "$A" --url memory:// status
    run_rc 64 "$A" --url memory:// status a b
    run_rc 64 "$A" --url memory:// wait
    run_rc 64 "$A" --url memory:// list extra
    run_rc 64 "$A" --url memory:// reset
    run_rc 64 "$A" --url memory:// -E 256 list
    run_rc 64 "$A" --url memory:// -w
    contains "$ERR" "needs an argument" "missing option argument"
    run_rc 64 "$A" --url memory:// --id 'has space' run x true
    run_rc 64 "$A" --url memory:// --permits 0 run x true
    run_rc 64 "$A" --url memory:// --names status x
    run_rc 64 "$A" --url memory:// -c true status x
    run_rc 0 "$A" --help
    contains "$OUT" "reset-all" "--help"
    # flock(1) waits forever by default; anylock does not, and says so.
    contains "$OUT" "does NOT wait forever" "--help: the default wait differs from flock's"
    contains "$OUT" "60 seconds" "--help: the default wait"
    run_rc 0 "$A" --version
    contains "$OUT" "anylock 0." "--version"

    # flock(1)'s options: -u (unlock) and -F are refused with the reason; the
    # store is --url and the lease -l; -x/-e/--exclusive are flock's exclusive.
    run_rc 64 "$A" -u memory:// list
    contains "$ERR" "flock(1)'s unlock" "-u is explained"
    run_rc 64 "$A" --url memory:// -F run x true
    run_rc 0 "$A" --url memory:// -x run x true
    # anylock 0.1's "-x 10" (its lease) is refused, not run as something else.
    run_rc 64 "$A" --url memory:// -x 10 run x true
    contains "$ERR" "the lease is -l 10" "-x 10 says what it means now"
    run_rc 64 "$A" --url memory:// run -x 10 x true
    run_rc 0 "$A" --url memory:// -e --exclusive -o run x true
    run_rc 0 "$A" --url memory:// --expires 5 --lease 5 -l 5 --timeout 1 --wait 1 -w 1 run x true
    run_rc 0 "$A" --url memory:// -n run x true
    run_rc 0 "$A" --url memory:// --nb --nonblock run x true
    run_rc 0 "$A" --url memory:// -s run x true
    run_rc 0 "$A" --url memory:// --permits 3 run x true

    # -c 'COMMAND' runs through /bin/sh, after NAME (flock's form) or before it.
    run_rc 0 "$A" --url memory:// run x -c "echo \"one two\" >'$tmp/c1'"
    contains "$tmp/c1" "one two" "run NAME -c"
    run_rc 0 "$A" --url memory:// -c "echo three >'$tmp/c2'" run x
    contains "$tmp/c2" "three" "-c before NAME"
    run_rc 7 "$A" --url memory:// run x -c 'exit 7'
    run_rc 64 "$A" --url memory:// run x -c
    run_rc 64 "$A" --url memory:// run x -c 'echo a' extra
    run_rc 64 "$A" --url memory:// -c 'echo a' run x echo b

    # Issue 12 item 19: durations are plain decimals, through the library's
    # parser; a tiny lease says what is wrong with it.
    for bad in 0x10 1e3 +1 -1 ' 1' 1.5.2 inf nan ''; do
        run_rc 64 "$A" --url memory:// -w "$bad" run x true
    done
    run_rc 64 "$A" --url memory:// -w 0x10 list
    contains "$ERR" "plain decimal seconds" "-w 0x10 says why"
    run_rc 64 "$A" --url memory:// -l 1e-10 run x true
    contains "$ERR" "no sign, exponent or hex" "-l 1e-10 says why"
    run_rc 64 "$A" --url memory:// -l 0.0000000001 run x true
    contains "$ERR" "too short for run to renew" "a tiny plain lease says why"
    lacks "$ERR" "auto-renewal needs an expiry" "a tiny lease is not called 'no expiry'"
    run_rc 64 "$A" --url memory:// -l 0 run x true
    run_rc 64 "$A" --url memory:// -w 200000000 run x true
    contains "$ERR" "at most" "an absurd duration says the limit"
    # ... and a lock that never expires runs, without renewal.
    run_rc 0 "$A" --url memory:// -l never -v run x true
    contains "$ERR" "never expires, so it is not renewed" "-l never: run without renewal"
    run_rc 0 "$A" --url 'memory://?expires=never' --json run x true
    json_check "$ERR" "ev['acquired']['expires_in'] is None and ev['acquired']['renewed'] is False" \
        "expires=never in the URL: run without renewal"
    run_rc 0 "$A" --url memory:// -w forever -l 0.5 run x true

    # Issue 12 item 4: an empty store is a script's unset variable, never "the
    # default".
    run_rc 64 "$A" --url '' status x
    contains "$ERR" "--url is empty" "--url ''"
    run_rc 64 env ANYLOCK_URL= "$A" status x
    contains "$ERR" "ANYLOCK_URL is set but empty" "ANYLOCK_URL=''"
    run_rc 64 env ANYLOCK_ID= "$A" --url memory:// run x true
    run_rc 64 "$A" --url memory:// --id '' run x true

    # run exits as the child did.
    run_rc 0 "$A" --url memory:// run x true
    run_rc 42 "$A" --url memory:// run x sh -c 'exit 42'
    run_rc 138 "$A" --url memory:// run x sh -c 'kill -USR1 $$'
    run_rc 127 "$A" --url memory:// run x ./no/such/command
    contains "$ERR" "cannot run" "exec failure"
    run_rc 126 "$A" --url memory:// run x /
    run_rc 0 "$A" --url memory:// run x sh -c 'echo "$0 $1" >"$2"' a1 --not-an-option "$tmp/args"
    contains "$tmp/args" "a1 --not-an-option" "the command's own options stay its own"
    run_rc 0 "$A" --url memory:// -v run x true
    contains "$ERR" "acquired \"x\"" "verbose: acquired"
    contains "$ERR" "released \"x\"" "verbose: released"
    # Renewals are the library's own events (anylock_set_log), not guesses.
    run_rc 0 "$A" --url memory:// -v -l "$(secs 1.5)" run x sleep "$(secs 2.2)"
    contains "$ERR" "renewed \"x\": it expires in " "verbose: renewals are seen"

    # run --json: one event per line on stderr, stdout left to the command.
    run_rc 0 "$A" --url memory:// --json -l "$(secs 1.5)" run x sh -c "echo child-out; sleep $(secs 2.2)"
    [ "$(cat "$OUT")" = child-out ] || fail "run --json: stdout is the command's: $(cat "$OUT")"
    json_check "$ERR" "names[0] == 'acquired' and names[1] == 'started' and 'renewed' in names and names[-2:] == ['exited', 'released'] and ev['exited']['exit_code'] == 0 and ev['started']['command'] == \"sh -c 'echo child-out; sleep $(secs 2.2)'\" and all(e['name'] == 'x' and e['time'] > 1e9 for e in events)" \
        "run --json events"
    run_rc 3 "$A" --url memory:// --json run x sh -c 'exit 3'
    json_check "$ERR" "ev['exited']['exit_code'] == 3 and ev['exited']['status'] == 3" "run --json: exited"

    # JSON strings are escaped.
    run_rc 1 "$A" --url memory:// --json status 'quote"back\slash'
    json_check "$OUT" "v['name'] == 'quote\"back\\\\slash' and v['held'] is False and v['owner'] is None" "JSON escaping"

    # Issue 12 item 17: output that cannot be written is exit 74, one rule for
    # every subcommand (where the status would have said success or the answer).
    run_rc 74 sh -c "'$A' --url memory:// status x >/dev/full"
    contains "$ERR" "cannot write the output" "status >/dev/full says so"
    run_rc 74 sh -c "'$A' --url memory:// --json status x >/dev/full"
    run_rc 1 sh -c "'$A' --url memory:// -q status x >/dev/full" # nothing to write
    run_rc 74 sh -c "'$A' --url memory:// -w 0 wait x >/dev/full"
    run_rc 74 sh -c "'$A' --url memory:// reset x >/dev/full"
    run_rc 74 sh -c "'$A' --url memory:// --json reset-all >/dev/full"
    run_rc 74 sh -c "'$A' --help >/dev/full"
    run_rc 74 sh -c "'$A' --version >/dev/full"
    run_rc 74 sh -c "'$A' --url memory:// status x >&-"
    run_rc 74 sh -c "'$A' --url memory:// --json run x true 2>/dev/full"
    run_rc 74 sh -c "'$A' --url memory:// -v run x true 2>/dev/full"
    run_rc 0 sh -c "'$A' --url memory:// run x true 2>/dev/full" # run writes nothing of its own
    # A standard descriptor closed for anylock is closed for its command too
    # (anylock itself saw it reopened, so no socket of its own became fd 1).
    run_rc 0 sh -c "'$A' --url memory:// run x sh -c 'r=closed; [ -e /proc/self/fd/1 ] && r=open; echo \$r >\"\$0\"' '$d/fd1' >&-"
    contains "$d/fd1" closed "a closed stdout stays closed for the command"
    run_rc 5 sh -c "'$A' --url memory:// --json run x sh -c 'exit 5' 2>/dev/full" # the command's status stays

    # Issue 12 item 15: no password on stderr, whatever the URL's defect.  Each
    # URL holds a password (SECRETn, also percent-encoded as %53ECRETn's tail).
    secret_urls=(
        'migrate://?old=redis://:SECRET1@127.0.0.1:99999&new=memory://'
        'redis://user:SECRET2/x@h'
        'redis://:SECRET3@host:notaport'
        'redis://:SECRET4@[::1'
        'redis+unix://:SECRET5@/no/such.sock?db=x'
        'memcached://u:SECRET6@h:1,%zz'
        'redis://:SECRET7%@h'
        'redis://:SECRET8@h?prefix=%ff'
        'nosuchscheme://u:SECRET9@h'
        'memory://u:SECRET10@'
        'redis://u:SECRET11@h:6379/notanumber'
        'redis://:SECRET12@h/0?nosuchparam=1'
        'redis://:SEC%52ET13@h:0'
        'migrate://?old=migrate%3A%2F%2F%3Fold%3Dredis%3A%2F%2F%3ASECRET14%40h%3A99999%26new%3Dmemory%3A%2F%2F&new=memory://'
        'redis://:SECRET15@h:6379?timeout=0x10'
        'redis://:SECRET16@127.0.0.1:0'
        'redis://:SECRET17@h:6379 trailing'
        "redis://:SECRET18@h:$(printf '%05000d' 1)"
        'migrate://?old=redis%3A%2F%2F%3ASECRET20%40127.0.0.1%3A1&new=redis%3A%2F%2F%3ASECRET21%40127.0.0.1%3A1'
    )
    for u in "${secret_urls[@]}"; do
        for how in url env; do
            case $how in
            url) "$A" --url "$u" -w 0 status x >"$OUT" 2>"$ERR" ;;
            env) ANYLOCK_URL=$u "$A" -v -w 0 run x true >"$OUT" 2>"$ERR" ;;
            esac
            rc=$?
            [ "$rc" = 0 ] && fail "a URL with a defect opened: $u"
            if grep -qE 'SECRET|SEC%52ET|SECRET13' "$OUT" "$ERR"; then
                fail "a password was printed ($how) for $u: $(cat "$ERR")"
            fi
        done
    done
    # A well-formed URL whose store is down: the error names the store, redacted.
    dead=$(free_port)
    run_rc 69 "$A" --url "redis://user:s3cret@127.0.0.1:$dead" -w 0 run x true
    contains "$ERR" "redis://user:***@127.0.0.1:$dead" "the URL is shown redacted"
    lacks "$ERR" s3cret "no password for a dead store"

    # The README's example program.
    run_rc 0 "$HELLO" memory://
    contains "$OUT" "got the lock" "examples/hello on memory://"
    note "cmdline: done at $SECONDS s"
}
launch cmdline cmdline_tests

# ---- the man page and the completion ---------------------------------------

# Every long option of --help is in the man page, and man has no complaint.
"$A" --help | grep -oE -- '--[a-z][a-z-]+' | sort -u | while read -r opt; do
    grep -qF -- "$(echo "$opt" | sed 's/-/\\-/g')" "$top_srcdir/cli/anylock.1" ||
        echo "FAIL: $opt of --help is not in cli/anylock.1"
done >"$tmp/man-opts"
if [ -s "$tmp/man-opts" ]; then cat "$tmp/man-opts"; failures=$((failures + $(wc -l <"$tmp/man-opts"))); fi
if ! command -v man >/dev/null; then
    fail "man is not installed (scripts/install-deps.sh installs man-db)"
else
    LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings=all -E UTF-8 -l "$top_srcdir/cli/anylock.1" >"$OUT" 2>"$ERR"
    [ -s "$ERR" ] && fail "man --warnings on cli/anylock.1: $(cat "$ERR")"
    contains "$OUT" "flock(1)" "the man page renders"
fi

# bash completion: subcommands and options (names are tested per store).
complete_words "$A" st >"$OUT"
[ "$(cat "$OUT")" = status ] || fail "completion of 'st': $(cat "$OUT")"
complete_words "$A" re >"$OUT"
[ "$(sort "$OUT" | tr '\n' ' ')" = "reset reset-all " ] || fail "completion of 're': $(cat "$OUT")"
complete_words "$A" --url memory:// --keep >"$OUT"
[ "$(cat "$OUT")" = --keep-going-on-loss ] || fail "completion of '--keep': $(cat "$OUT")"
complete_words "$A" -w 10 run x sle >"$OUT"
contains "$OUT" sleep "completion of run's command"
complete_words "$A" -l "" >"$OUT"
contains "$OUT" never "completion of -l's argument"

# ---- the default store (issue 12 item 4) and the cron line ---------------------

if have sqlite; then
    # A cron job (empty environment) and a login shell (XDG_RUNTIME_DIR and
    # another $HOME) use one file: each excludes the other.
    d=$tmp/default
    mkdir -p "$d"
    cronenv "$A" run "$uniq-d" sh -c "echo x >'$d/held'; while [ ! -e '$d/go' ]; do sleep 0.05; done" \
        >"$d/c.out" 2>"$d/c.err" &
    c=$!; pids+=("$c")
    wait_for 10 test -s "$d/held" || fail "default store: the cron-like holder never started: $(cat "$d/c.err")"
    run_rc 1 loginenv "$A" -n -q run "$uniq-d" true
    run_rc 0 loginenv "$A" status "$uniq-d"
    contains "$OUT" "held by" "default store: a login shell sees the cron job's lock"
    touch "$d/go"
    wait_pid 15 "$c" || fail "default store: cron-like holder exited $?"
    loginenv "$A" run "$uniq-d" sh -c "echo x >'$d/held2'; while [ ! -e '$d/go2' ]; do sleep 0.05; done" \
        >"$d/l.out" 2>"$d/l.err" &
    l=$!; pids+=("$l")
    wait_for 10 test -s "$d/held2" || fail "default store: the login-like holder never started"
    run_rc 1 cronenv "$A" -n -q run "$uniq-d" true
    touch "$d/go2"
    wait_pid 15 "$l" || fail "default store: login-like holder exited $?"
    [ -e "$tmp/xdg-run/anylock" ] && fail "default store: a file under \$XDG_RUNTIME_DIR was made"
    [ -e "$tmp/other-home/.cache/anylock" ] && fail "default store: a file under \$HOME/\$XDG_CACHE_HOME was made"
    home=$(getent passwd "$(id -u)" | cut -d: -f6)
    [ "$(stat -c %a "$home/.cache/anylock")" = 700 ] || fail "default store directory not 0700"
    run_rc 0 env ANYLOCK_URL="sqlite:///$tmp/env.db" "$A" --json run D true
    [ -f "$tmp/env.db" ] || fail "\$ANYLOCK_URL not used"

    # The cron line of docs/cli.md, run as cron runs it: its command field
    # through /bin/sh in cron's environment, /usr/local/bin standing for
    # the test's bin directory and the lock name made unique.
    cronline=$(doc_block cron | grep -v '^#' | head -1)
    [ -n "$cronline" ] || fail "docs/cli.md has no tested cron line"
    cronjob=$(echo "$cronline" | awk '{ for (i = 6; i <= NF; i++) printf "%s%s", $i, (i < NF ? " " : "") }')
    cronjob=${cronjob//\/usr\/local\/bin\//$tmp/bin/}
    cronjob=${cronjob// run make-report / run $uniq-cron }
    d=$tmp/cron
    mkdir -p "$d"
    note "cron job: $cronjob"
    cronenv REPORT_DIR="$d" /bin/sh -c "$cronjob" >"$d/1.out" 2>"$d/1.err" &
    c=$!; pids+=("$c")
    wait_for 10 grep -q start "$d/report.log" || fail "cron line: the first job never started: $(cat "$d/1.err")"
    # The next run finds it busy: exit 1, and (-q) nothing for cron to mail.
    run_rc 1 cronenv REPORT_DIR="$d" /bin/sh -c "$cronjob"
    [ -s "$OUT" ] || [ -s "$ERR" ] && fail "cron line: a skipped run printed something: $(cat "$OUT" "$ERR")"
    # ... and so does the same job started from a login shell.
    run_rc 1 loginenv "$tmp/bin/anylock" -n run "$uniq-cron" "$tmp/bin/make-report"
    contains "$ERR" "is held by" "a login shell's run says who holds the cron job's lock"
    touch "$d/report.go"
    wait_pid 15 "$c" || fail "cron line: the job exited $?: $(cat "$d/1.err")"
    [ "$(grep -c start "$d/report.log")" = 1 ] || fail "cron line: runs overlapped: $(cat "$d/report.log")"
else
    fail "this build has no sqlite:// backend, the default store"
fi

note "default store and cron: ${SECONDS} s"

for i in "${!store_pids[@]}"; do
    wait "${store_pids[$i]}"
    rc=$?
    grep -v '^\S*: line [0-9]*: *[0-9]* Killed' "$tmp/${jobs_run[$i]}.log"
    [ "$rc" = 0 ] || fail "${jobs_run[$i]}: the failures above"
done

if [ "$failures" != 0 ]; then
    echo "$failures failure(s)"
    exit 1
fi
echo "all anylock command tests passed"
