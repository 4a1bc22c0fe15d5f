#!/bin/sh
# Installs what building and testing anylock needs on Debian 12 (bookworm):
# the toolchain, the store libraries, Check, and real redis, memcached,
# PostgreSQL and etcd servers for the tests (they are started by the tests
# themselves, never as system services).
set -eu
if [ "$(id -u)" -ne 0 ]; then
    exec sudo "$0" "$@"
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    build-essential autoconf automake libtool pkg-config ca-certificates \
    check libhiredis-dev libmemcached-dev libsqlite3-dev sqlite3 libpq-dev \
    libcurl4-openssl-dev libjson-c-dev \
    redis-server memcached postgresql etcd-server etcd-client python3 python3-redis python3-cffi python3-pytest \
    valgrind clang libclang-rt-14-dev >/dev/null
# Debian starts the servers as services on install where it can; the tests
# use their own, so stop those to keep the machine quiet.
# (etcd's service would hold the default client port 2379.)
for svc in redis-server memcached postgresql etcd; do
    if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
done
echo "install-deps: done"
