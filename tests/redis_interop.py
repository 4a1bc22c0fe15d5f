#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""A second client, in another language, that speaks python-redis-lock 4.0's
protocol (python-redis-lock itself cannot be installed here, so this script
carries its keys, commands and Lua scripts' effects, written with Debian's
python3-redis).  tests/test_redis.c drives it over stdin/stdout, one command
per line, one answer per line:

  acquire NAME ID EXPIRE TIMEOUT  -> acquired | timeout | already
        EXPIRE: whole seconds or "none"; TIMEOUT: seconds, "none" (forever)
        or "0" (try once, as blocking=False)
  release NAME ID                 -> released | notheld
  extend NAME ID SECONDS          -> extended | notheld | notexpirable
  reset NAME                      -> reset
  owner NAME                      -> the holder's id, or "-"
  locked NAME                     -> yes | no
  quit

An ID (and an owner answered) is written as text, or as "hex:" followed by
its bytes in hex when it is not printable ASCII (binary owners), or as
"empty" for the empty id.  Values are handled as bytes, as python-redis-lock
does with a client that does not decode responses.

Usage: redis_interop.py HOST PORT
"""
import sys
import time

import redis

SIGNAL_EXPIRE_MS = 1000

# The scripts' effects, as python-redis-lock 4.0 has them.
UNLOCK = """
if redis.call("get", KEYS[1]) ~= ARGV[1] then
    return 1
else
    redis.call("del", KEYS[2])
    redis.call("lpush", KEYS[2], 1)
    redis.call("pexpire", KEYS[2], ARGV[2])
    redis.call("del", KEYS[1])
    return 0
end
"""

EXTEND = """
if redis.call("get", KEYS[1]) ~= ARGV[1] then
    return 1
elseif redis.call("ttl", KEYS[1]) < 0 then
    return 2
else
    redis.call("expire", KEYS[1], ARGV[2])
    return 0
end
"""

RESET = """
redis.call("del", KEYS[2])
redis.call("lpush", KEYS[2], 1)
redis.call("pexpire", KEYS[2], ARGV[2])
return redis.call("del", KEYS[1])
"""


def keys(name):
    return "lock:" + name, "lock-signal:" + name


def parse_id(text):
    if text == "empty":
        return b""
    if text.startswith("hex:"):
        return bytes.fromhex(text[4:])
    return text.encode()


def show_id(value):
    if value == b"":
        return "empty"
    if all(0x21 <= b <= 0x7E for b in value):
        return value.decode()
    return "hex:" + value.hex()


def acquire(conn, name, owner, expire, timeout):
    key, signal = keys(name)
    # python-redis-lock GETs first and refuses to take a lock it holds.
    if conn.get(key) == owner:
        return "already"
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if conn.set(key, owner, nx=True, ex=expire):
            return "acquired"
        if deadline is None:
            wait = 1
        else:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            wait = max(1, int(left))  # BLPOP in whole seconds, as the original
        conn.blpop(signal, wait)


def main():
    conn = redis.StrictRedis(host=sys.argv[1], port=int(sys.argv[2]))
    unlock = conn.register_script(UNLOCK)
    extend = conn.register_script(EXTEND)
    reset = conn.register_script(RESET)
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        cmd, args = words[0], words[1:]
        if cmd == "quit":
            break
        if cmd == "acquire":
            expire = None if args[2] == "none" else int(args[2])
            timeout = None if args[3] == "none" else float(args[3])
            out = acquire(conn, args[0], parse_id(args[1]), expire, timeout)
        elif cmd == "release":
            r = unlock(keys=keys(args[0]), args=[parse_id(args[1]), SIGNAL_EXPIRE_MS])
            out = "released" if r == 0 else "notheld"
        elif cmd == "extend":
            r = extend(keys=[keys(args[0])[0]], args=[parse_id(args[1]), int(args[2])])
            out = {0: "extended", 1: "notheld", 2: "notexpirable"}[r]
        elif cmd == "reset":
            reset(keys=keys(args[0]), args=[args[0], SIGNAL_EXPIRE_MS])
            out = "reset"
        elif cmd == "owner":
            v = conn.get(keys(args[0])[0])
            out = "-" if v is None else show_id(v)
        elif cmd == "locked":
            out = "yes" if conn.exists(keys(args[0])[0]) else "no"
        else:
            out = "error unknown command " + cmd
        print(out, flush=True)


if __name__ == "__main__":
    main()
