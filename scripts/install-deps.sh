#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# Installs what building and testing anylock needs on Debian 12 (bookworm):
# the toolchain, the store libraries, Check, and real redis, memcached,
# PostgreSQL and etcd servers for the tests (they are started by the tests
# themselves, never as system services).
set -eu
if [ "$(id -u)" -ne 0 ]; then
    exec sudo "$0" "$@"
fi
# apt's and debconf's progress goes to a log, shown only if something fails.
log=$(mktemp "${TMPDIR:-/tmp}/anylock-install-deps.XXXXXX")
trap 'rc=$?; if [ "$rc" -ne 0 ]; then cat "$log" >&4; echo "install-deps: failed (exit $rc)" >&4; fi; rm -f "$log"' EXIT
exec 3>&1 4>&2 >"$log" 2>&1
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# man-db and systemd only for tests/test_cli.sh: man --warnings checks the
# man page, systemd-analyze verify the systemd unit of docs/cli.md.
apt-get install -y -qq --no-install-recommends \
    build-essential autoconf automake libtool pkg-config ca-certificates \
    check libhiredis-dev libmemcached-dev libsqlite3-dev sqlite3 libpq-dev \
    libcurl4-openssl-dev libjson-c-dev \
    redis-server memcached postgresql etcd-server etcd-client python3 python3-redis python3-cffi python3-pytest \
    valgrind clang libclang-rt-14-dev \
    man-db systemd >/dev/null
# Debian starts the servers as services on install where it can; the tests
# use their own, so stop those to keep the machine quiet.
# (etcd's service would hold the default client port 2379.)
for svc in redis-server memcached postgresql etcd; do
    if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
done
# For the packaging tests: CMake builds the example against an installed
# anylock (tests/test_install.sh); man and groff check the manual pages
# (tests/test_man.sh).
apt-get install -y -qq --no-install-recommends cmake man-db groff-base >/dev/null
echo "install-deps: done" >&3
