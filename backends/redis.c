/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * redis://[[user]:password@]host[:port][/db] and
 * redis+unix://[[user]:password@]/path/to/redis.sock[?db=N]
 *
 * Exclusive locks speak the protocol of python-redis-lock 4.0, wire-
 * compatible with it (see docs/redis.md and ../shared/spec/redis-protocol.md):
 *   lock key    prefix + name: a string holding the owner id
 *   signal key  base + "-signal:" + name (base = the prefix less one trailing
 *               ':'): a list of at most one element, pushed on release and
 *               reset so that one BLPOP waiter wakes.
 * Beside them, keys of anylock's own that python clients never read:
 *   base + "-meta:" + name     hash: "m:<id>" = holder metadata, "t:<id>" =
 *                              the holder's fencing token; same expiry as
 *                              the lock
 *   base + "-holders:" + name  sorted set of shared or semaphore holders,
 *                              scored by their expiry (server ms, or +inf)
 *   base + "-queue:" + name    sorted set: waiting exclusive acquirers in
 *                              order of arrival
 *   base + "-qinfo:" + name    hash: each queued waiter's registration
 *                              ("<lapse ms>|<expiry ms>|<metadata>")
 *   base + "-wake:" + name + ":" + id   a queued waiter's wake list
 *   base + "-token"            hash, field "n": the fencing-token counter,
 *                              one per prefix
 * While a name is held shared or as a semaphore, its lock key holds a marker
 * ("\1anylock shared", "\1anylock semaphore N") that no python client's id
 * can equal, so python's SET NX fails and its waiter blocks on the same
 * signal list.
 *
 * A plain lock with an expiry is tried with one MULTI/EXEC of plain
 * commands (SET NX PX, the token, the metadata, GET and PTTL); everything
 * else is one Lua script run with EVALSHA (reloaded on NOSCRIPT).  A
 * blocking exclusive acquire that finds the lock taken joins the queue, and
 * a release after the holder's turn hands the lock to the first live waiter
 * (its id in the lock key for a short claim window, its token on its wake
 * list), so that waiters are served in order; within the turn, or with
 * nobody queued, a release frees the lock (with nobody queued it pushes
 * the signal, as python-redis-lock's does).  A waiter blocks in BLPOP
 * for at most min(time left, the holder's PTTL + a margin, a ceiling), so a
 * crashed holder never strands it.
 *
 * I/O is done here, not by hiredis's blocking calls: a request is written
 * with send() and its reply read with recv() under a socket timeout that is
 * the round trip's own deadline (anylock_op_io_deadline), so a stalled server
 * never holds a call past its bound, and a request that was written but whose
 * reply never came is told apart from one that was never sent (the first
 * answers ANYLOCK_OUTCOME_UNKNOWN).  hiredis connects and parses replies.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "builtin.h"

#define DEFAULT_PORT 6379
#define DEFAULT_CONNECT_TIMEOUT_MS 2000
#define DEFAULT_COMMAND_TIMEOUT_MS 5000
#define DEFAULT_SIGNAL_EXPIRE_MS 1000
/* No single BLPOP blocks longer than this (parameter block_max): a waiter
 * that missed a signal looks again after at most this long. */
#define DEFAULT_BLOCK_MAX_MS 2000
/* A waiter wakes this long after the holder's expiry, when the key is sure
 * to be gone from the server's point of view. */
#define EXPIRY_MARGIN_MS 10
/* Redis ends a BLPOP up to ~100 ms late: a wait that would end within this
 * much of the deadline ends this much earlier, leaving time for a last try. */
#define BLPOP_LATE_MS 100
/* A waiting exclusive acquirer's registration outlives its BLPOP by this
 * much, so that it stays registered between two of its waits. */
#define WRITER_MARGIN_MS 500
/* A lock handed to a queued waiter is its for this long, until the waiter
 * claims it (extends it to its expiry): a waiter that died in the queue
 * keeps the others out for no longer. */
#define HANDOFF_CLAIM_MS 250
/* A holder's turn (parameter turn), from the moment the lock was handed to
 * it or the first waiter queued behind it: until the turn is over a release
 * frees the lock and wakes a waiter (as python-redis-lock's does) instead of
 * handing the lock on, so that a holder that comes straight back takes it
 * again in one round trip; the first release after the turn hands it to the
 * first waiter.  Contended, the lock so passes at about the speed of a free
 * one, and a waiter waits at most a turn and a hold for each one ahead. */
#define DEFAULT_TURN_MS 5
/* A blocking acquire rides out a connection outage (a server restart) for
 * this long, or until its deadline if that comes first. */
#define OUTAGE_MS 10000
#define OUTAGE_RETRY_MS 100
/* Idle connections kept per client; more are closed when returned. */
#define POOL_IDLE_MAX 8

/* ---- scripts -------------------------------------------------------------- */

/* Shared by every script: the markers and helpers. */
#define LUA_COMMON                                                                                                    \
    "local SH = '\\1anylock shared'\n"                                                                                \
    /* Metadata of holders without expiry: kept 30 days (a leftover goes). */                                         \
    "local FOREVER_MS = 2592000000\n"                                                                                 \
    "local SEM = '\\1anylock semaphore '\n"                                                                           \
    "local function kind(v)\n"                                                                                        \
    "  if not v then return nil end\n"                                                                                \
    "  if v == SH then return 's' end\n"                                                                              \
    "  if string.sub(v, 1, #SEM) == SEM then return 'n', string.sub(v, #SEM + 1) end\n"                               \
    "  return nil\n"                                                                                                  \
    "end\n"                                                                                                           \
    "local function now_ms()\n"                                                                                       \
    "  local t = redis.call('time')\n"                                                                                \
    "  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"                                            \
    "end\n"                                                                                                           \
    "local function signal(sig, ms)\n"                                                                                \
    "  redis.call('del', sig)\n"                                                                                      \
    "  redis.call('lpush', sig, 1)\n"                                                                                 \
    "  redis.call('pexpire', sig, ms)\n"                                                                              \
    "end\n"                                                                                                           \
    /* The marker, holder set and metadata expire with the last holder. */                                           \
    "local function sync(lock, holders, meta)\n"                                                                      \
    "  local top = redis.call('zrange', holders, -1, -1, 'WITHSCORES')\n"                                             \
    "  if #top == 0 then redis.call('del', lock, holders, meta) return 0 end\n"                                       \
    "  if top[2] == 'inf' then\n"                                                                                     \
    "    redis.call('persist', lock) redis.call('persist', holders) redis.call('pexpire', meta, FOREVER_MS)\n"       \
    "  else\n"                                                                                                        \
    "    redis.call('pexpireat', lock, top[2]) redis.call('pexpireat', holders, top[2])\n"                            \
    "    redis.call('pexpireat', meta, top[2])\n"                                                                     \
    "  end\n"                                                                                                         \
    "  return 1\n"                                                                                                    \
    "end\n"

#define STR_(x) #x
#define STR(x) STR_(x)

/* The waiters' queue: exclusive acquirers that wait, in order of arrival
 * (queue: sorted set id -> arrival number; qinfo: hash id ->
 * "<lapse ms>|<expiry ms>|<metadata>", the registration lapsing when the
 * waiter stops renewing it, and the TURN and WATCH fields).  Handing the
 * lock to the first live waiter sets the lock key to its id for
 * HANDOFF_CLAIM_MS and pushes its token on its own wake list (wakebase ..
 * id), where it blocks; the waiter claims the lock by extending it to its
 * own expiry.  A waiter that died while queued so holds the lock for the
 * claim window only.  During a holder's turn (DEFAULT_TURN_MS) a release
 * frees the lock and leaves it to the first waiter to look at the turn's
 * end: that waiter naps (WATCH names it) rather than blocks, and a release
 * within the turn that finds it not watching nudges it (a 0, not a token,
 * on its wake list). */
#define LUA_QUEUE                                                                                                     \
    "local CLAIM_MS = " STR(HANDOFF_CLAIM_MS) "\n"                                                                    \
    /* qinfo's fields (no owner id can equal them): when the holder's turn                                            \
     * began, and the first waiter that watches over it. */                                                           \
    "local TURN, WATCH = '\\1turn', '\\1watch'\n"                                                                     \
    "local function qlapse(info)\n"                                                                                   \
    "  return tonumber(string.sub(info, 1, string.find(info, '|', 1, true) - 1))\n"                                   \
    "end\n"                                                                                                           \
    "local function turn_start(qi, now)\n"                                                                            \
    "  redis.call('hset', qi, TURN, now) redis.call('hdel', qi, WATCH)\n"                                             \
    "end\n"                                                                                                           \
    /* ms until the first live waiter's registration lapses, and its id; or nil. */                                   \
    "local function qhead(q, qi, now)\n"                                                                              \
    "  while true do\n"                                                                                               \
    "    local h = redis.call('zrange', q, 0, 0)\n"                                                                   \
    "    if #h == 0 then return nil end\n"                                                                            \
    "    local info = redis.call('hget', qi, h[1])\n"                                                                 \
    "    if info and qlapse(info) >= now then return qlapse(info) - now, h[1] end\n"                                  \
    "    redis.call('zrem', q, h[1]) redis.call('hdel', qi, h[1])\n"                                                  \
    "  end\n"                                                                                                         \
    "end\n"                                                                                                           \
    /* For the first waiter id: ms left of the holder's turn (it watches                                              \
     * until then), else 0. */                                                                                        \
    "local function turn_left(q, qi, id, turn_ms, now)\n"                                                             \
    "  local h = redis.call('zrange', q, 0, 0)\n"                                                                     \
    "  if h[1] ~= id then return 0 end\n"                                                                             \
    "  local left = turn_ms - (now - tonumber(redis.call('hget', qi, TURN) or 0))\n"                                  \
    "  if left <= 0 then return 0 end\n"                                                                              \
    "  redis.call('hset', qi, WATCH, id)\n"                                                                           \
    "  return left\n"                                                                                                 \
    "end\n"                                                                                                           \
    "local function handoff(lock, meta, q, qi, tok, wakebase, sigms)\n"                                               \
    "  local now = now_ms()\n"                                                                                        \
    "  while true do\n"                                                                                               \
    "    local h = redis.call('zrange', q, 0, 0)\n"                                                                   \
    "    if #h == 0 then return 0 end\n"                                                                              \
    "    local w = h[1]\n"                                                                                            \
    "    local info = redis.call('hget', qi, w)\n"                                                                    \
    "    redis.call('zrem', q, w) redis.call('hdel', qi, w)\n"                                                        \
    "    if info and qlapse(info) >= now then\n"                                                                      \
    "      local i = string.find(info, '|', 1, true)\n"                                                               \
    "      local j = string.find(info, '|', i + 1, true)\n"                                                           \
    "      redis.call('set', lock, w, 'PX', CLAIM_MS)\n"                                                              \
    "      local t = redis.call('hincrby', tok, 'n', 1)\n"                                                            \
    "      redis.call('hset', meta, 'm:' .. w, string.sub(info, j + 1), 't:' .. w, t)\n"                              \
    "      redis.call('pexpire', meta, CLAIM_MS)\n"                                                                   \
    "      local wk = wakebase .. w\n"                                                                                \
    "      redis.call('del', wk) redis.call('lpush', wk, t) redis.call('pexpire', wk, sigms)\n"                       \
    "      turn_start(qi, now)\n"                                                                                     \
    "      return 1\n"                                                                                                \
    "    end\n"                                                                                                       \
    "  end\n"                                                                                                         \
    "end\n"

/*
 * KEYS: lock, signal, meta, holders, queue, qinfo, token, this waiter's
 *       wake list.
 * ARGV: id, expiry ms (0: none), metadata, mode ('x', 's', 'n'), permits,
 *       registration ms (0: do not queue), queued (0/1), signal expiry ms,
 *       turn ms.
 * Replies: {0, token} taken; {1, holder value, ms until it may change
 * (-1: never), ms to nap (the first waiter during a turn) or 0} busy;
 * {2, token} held by this id already (handed to it, if it is queued);
 * {3, holder value} another mode; {4, holder value or "", ms} free for a
 * shared acquirer but for a waiting exclusive one.
 */
static const char acquire_lua[] = LUA_COMMON LUA_QUEUE
    "local id, px, mode = ARGV[1], tonumber(ARGV[2]), ARGV[4]\n"
    "local function take_meta(t)\n"
    "  redis.call('hset', KEYS[3], 'm:' .. id, ARGV[3], 't:' .. id, t)\n"
    "end\n"
    /* A first waiter that takes the lock starts its turn. */
    "local function dequeue()\n"
    "  if ARGV[7] ~= '1' then return end\n"
    "  local first = redis.call('zrank', KEYS[5], id) == 0\n"
    "  redis.call('zrem', KEYS[5], id) redis.call('hdel', KEYS[6], id) redis.call('del', KEYS[8])\n"
    "  if first and redis.call('zcard', KEYS[5]) > 0 then turn_start(KEYS[6], now_ms()) end\n"
    "end\n"
    /* Held by this id already.  A holder taken by the transaction of
     * try_fast (which cannot store its token) gets a new token here, for
     * an acquire that adopts it: still higher than any before. */
    "local function mine()\n"
    "  dequeue()\n"
    "  local t = redis.call('hget', KEYS[3], 't:' .. id)\n"
    "  if not t then\n"
    "    t = redis.call('hincrby', KEYS[7], 'n', 1)\n"
    "    redis.call('hset', KEYS[3], 't:' .. id, t)\n"
    "  end\n"
    "  return {2, t}\n"
    "end\n"
    "if mode == 'x' then\n"
    "  local ok\n"
    "  if px > 0 then ok = redis.call('set', KEYS[1], id, 'NX', 'PX', px)\n"
    "  else ok = redis.call('set', KEYS[1], id, 'NX') end\n"
    "  local v\n"
    "  if not ok then\n"
    "    v = redis.call('get', KEYS[1])\n"
    "    if v == id then return mine() end\n"
    "    local k = kind(v)\n"
    "    if k then\n"
    "      local now = now_ms()\n"
    "      redis.call('zremrangebyscore', KEYS[4], '-inf', '(' .. now)\n"
    "      if redis.call('zscore', KEYS[4], id) then return mine() end\n"
    "      if redis.call('zcard', KEYS[4]) == 0 then\n"
    /*       A marker left without live holders: the name is free. */
    "        if px > 0 then redis.call('set', KEYS[1], id, 'PX', px) else redis.call('set', KEYS[1], id) end\n"
    "        ok = true\n"
    "      elseif k == 'n' then return {3, v} end\n"
    "    end\n"
    "  end\n"
    "  if ok then\n"
    "    local t = redis.call('hincrby', KEYS[7], 'n', 1)\n"
    "    take_meta(t)\n"
    "    if px > 0 then redis.call('pexpire', KEYS[3], px) else redis.call('pexpire', KEYS[3], FOREVER_MS) end\n"
    "    dequeue()\n"
    "    return {0, t}\n"
    "  end\n"
    "  local reg = tonumber(ARGV[6])\n"
    "  if reg > 0 then\n"
    "    local now = now_ms()\n"
    "    if not redis.call('zscore', KEYS[5], id) then\n"
    /*   The first waiter behind the holder starts the holder's turn. */
    "      if redis.call('zcard', KEYS[5]) == 0 then turn_start(KEYS[6], now) end\n"
    "      redis.call('zadd', KEYS[5], redis.call('hincrby', KEYS[7], 'q', 1), id)\n"
    "    end\n"
    "    redis.call('hset', KEYS[6], id, (now + reg) .. '|' .. px .. '|' .. ARGV[3])\n"
    "    if redis.call('pttl', KEYS[5]) < reg then redis.call('pexpire', KEYS[5], reg) end\n"
    "    if redis.call('pttl', KEYS[6]) < reg then redis.call('pexpire', KEYS[6], reg) end\n"
    "    return {1, v, redis.call('pttl', KEYS[1]), turn_left(KEYS[5], KEYS[6], id, tonumber(ARGV[9]), now)}\n"
    "  end\n"
    "  return {1, v, redis.call('pttl', KEYS[1]), 0}\n"
    "end\n"
    /* Shared ('s') or semaphore ('n'). */
    "local now = now_ms()\n"
    "local v = redis.call('get', KEYS[1])\n"
    "local k, n = kind(v)\n"
    "if v and not k then\n"
    "  if v == id then return mine() end\n"
    "  if mode == 'n' then return {3, v} end\n"
    "  return {1, v, redis.call('pttl', KEYS[1])}\n"
    "end\n"
    "if v then\n"
    "  redis.call('zremrangebyscore', KEYS[4], '-inf', '(' .. now)\n"
    "  if redis.call('zscore', KEYS[4], id) then return mine() end\n"
    "  if redis.call('zcard', KEYS[4]) == 0 then v = nil\n"
    "  elseif (mode == 's') ~= (k == 's') or (mode == 'n' and n ~= ARGV[5]) then return {3, v} end\n"
    "end\n"
    /* The marker is the authority: without it, no holder is left. */
    "if not v then redis.call('del', KEYS[3], KEYS[4]) end\n"
    "if mode == 's' then\n"
    "  local w = qhead(KEYS[5], KEYS[6], now)\n"
    "  if w then\n"
    /*   Yield to the waiting writer, and pass on a wake-up it may need. */
    "    if not v then signal(KEYS[2], ARGV[8]) end\n"
    "    return {4, v or '', w}\n"
    "  end\n"
    "elseif v and redis.call('zcard', KEYS[4]) >= tonumber(ARGV[5]) then\n"
    "  local first = redis.call('zrange', KEYS[4], 0, 0, 'WITHSCORES')\n"
    "  local left = -1\n"
    "  if first[2] ~= 'inf' then left = tonumber(first[2]) - now end\n"
    "  return {1, v, left}\n"
    "end\n"
    "if px > 0 then redis.call('zadd', KEYS[4], now + px, id) else redis.call('zadd', KEYS[4], 'inf', id) end\n"
    "if mode == 's' then redis.call('set', KEYS[1], SH) else redis.call('set', KEYS[1], SEM .. ARGV[5]) end\n"
    "local t = redis.call('hincrby', KEYS[7], 'n', 1)\n"
    "take_meta(t)\n"
    "sync(KEYS[1], KEYS[4], KEYS[3])\n"
    /* Room for more: wake the next waiter too. */
    "if mode == 's' or redis.call('zcard', KEYS[4]) < tonumber(ARGV[5]) then signal(KEYS[2], ARGV[8]) end\n"
    "return {0, t}\n";

/* KEYS: lock, signal, meta, holders, queue, qinfo, token.  ARGV: id,
 * signal expiry ms, wake list prefix, turn ms.  0: released; 1: not held by
 * this id.  An exclusive release after the holder's turn hands the lock to
 * the first live queued waiter; one within the turn frees it and leaves it
 * to that waiter, which looks at the turn's end; with nobody queued it does
 * exactly what python-redis-lock's does (and drops the metadata). */
static const char release_lua[] =
    "local v = redis.call('get', KEYS[1])\n"
    "if not v then return 1 end\n" LUA_COMMON LUA_QUEUE
    "if v == ARGV[1] then\n"
    "  redis.call('del', KEYS[1], KEYS[3])\n"
    "  if redis.call('exists', KEYS[5]) == 1 then\n"
    "    local now = now_ms()\n"
    "    if now - tonumber(redis.call('hget', KEYS[6], TURN) or 0) < tonumber(ARGV[4]) then\n"
    /*     Within the turn: the first waiter looks at its end. */
    "      local _, w = qhead(KEYS[5], KEYS[6], now)\n"
    "      if w then\n"
    "        if redis.call('hget', KEYS[6], WATCH) ~= w then\n"
    "          local wk = ARGV[3] .. w\n"
    "          redis.call('rpush', wk, 0) redis.call('pexpire', wk, ARGV[2]) redis.call('hset', KEYS[6], WATCH, w)\n"
    "        end\n"
    "        return 0\n"
    "      end\n"
    "    elseif handoff(KEYS[1], KEYS[3], KEYS[5], KEYS[6], KEYS[7], ARGV[3], ARGV[2]) == 1 then return 0 end\n"
    "  end\n"
    "  signal(KEYS[2], ARGV[2])\n"
    "  return 0\n"
    "end\n"
    "local k = kind(v)\n"
    "if not k then return 1 end\n"
    "redis.call('zremrangebyscore', KEYS[4], '-inf', '(' .. now_ms())\n"
    "if redis.call('zrem', KEYS[4], ARGV[1]) == 0 then return 1 end\n"
    "redis.call('hdel', KEYS[3], 'm:' .. ARGV[1], 't:' .. ARGV[1])\n"
    "if sync(KEYS[1], KEYS[4], KEYS[3]) == 0 then\n"
    /* The last shared holder: the first waiting writer gets the lock. */
    "  if handoff(KEYS[1], KEYS[3], KEYS[5], KEYS[6], KEYS[7], ARGV[3], ARGV[2]) == 0 then signal(KEYS[2], ARGV[2]) end\n"
    "elseif k == 'n' then signal(KEYS[2], ARGV[2]) end\n"
    "return 0\n";

/* KEYS: lock, meta, holders.  ARGV: id, expiry ms.  0: extended; 1: not
 * held by this id; 2: taken without an expiry (it can never get one). */
static const char extend_lua[] = LUA_COMMON
    "local v = redis.call('get', KEYS[1])\n"
    "if v == ARGV[1] then\n"
    "  if redis.call('pttl', KEYS[1]) < 0 then return 2 end\n"
    "  redis.call('pexpire', KEYS[1], ARGV[2])\n"
    "  redis.call('pexpire', KEYS[2], ARGV[2])\n"
    "  return 0\n"
    "end\n"
    "if not kind(v) then return 1 end\n"
    "local now = now_ms()\n"
    "redis.call('zremrangebyscore', KEYS[3], '-inf', '(' .. now)\n"
    "local sc = redis.call('zscore', KEYS[3], ARGV[1])\n"
    "if not sc then return 1 end\n"
    "if sc == 'inf' then return 2 end\n"
    "redis.call('zadd', KEYS[3], now + tonumber(ARGV[2]), ARGV[1])\n"
    "sync(KEYS[1], KEYS[3], KEYS[2])\n"
    "return 0\n";

/* KEYS: lock, signal, meta, holders.  ARGV: signal expiry ms.  Frees every
 * holder; returns how many lock keys were deleted (0 or 1). */
static const char reset_lua[] = LUA_COMMON
    "signal(KEYS[2], ARGV[1])\n"
    "redis.call('del', KEYS[3], KEYS[4])\n"
    "return redis.call('del', KEYS[1])\n";

/* KEYS: lock, meta, holders.  {} when free; {0, value, pttl, metadata or ""}
 * for an exclusive holder; {1, marker, permits, id, ms left (-1: never),
 * metadata, ...} for shared or semaphore holders.  Metadata no holder owns
 * any more (a python client reset or released the lock) is deleted. */
static const char inspect_lua[] = LUA_COMMON
    "local v = redis.call('get', KEYS[1])\n"
    "if not v then redis.call('del', KEYS[2], KEYS[3]) return {} end\n"
    "local k, n = kind(v)\n"
    "if not k then\n"
    "  local m = redis.call('hget', KEYS[2], 'm:' .. v)\n"
    "  if not m then redis.call('del', KEYS[2]) m = '' end\n"
    "  return {0, v, redis.call('pttl', KEYS[1]), m}\n"
    "end\n"
    "local now = now_ms()\n"
    "local out = {1, v, n or '0'}\n"
    "local hs = redis.call('zrangebyscore', KEYS[3], '(' .. now, '+inf', 'WITHSCORES')\n"
    "for i = 1, #hs, 2 do\n"
    "  local left = -1\n"
    "  if hs[i + 1] ~= 'inf' then left = tonumber(hs[i + 1]) - now end\n"
    "  out[#out + 1] = hs[i]\n"
    "  out[#out + 1] = left\n"
    "  out[#out + 1] = redis.call('hget', KEYS[2], 'm:' .. hs[i]) or ''\n"
    "end\n"
    "return out\n";

/* KEYS: queue, qinfo, lock, signal, meta, token, this waiter's wake list.
 * ARGV: id, signal expiry ms, wake list prefix.  A queued waiter that gave
 * up leaves the queue; a lock handed to it meanwhile goes to the next
 * waiter (or is freed), and shared acquirers it held back may go. */
static const char unwait_lua[] = LUA_COMMON LUA_QUEUE
    "redis.call('zrem', KEYS[1], ARGV[1]) redis.call('hdel', KEYS[2], ARGV[1]) redis.call('del', KEYS[7])\n"
    "local v = redis.call('get', KEYS[3])\n"
    "if v == ARGV[1] then\n"
    "  redis.call('del', KEYS[3], KEYS[5])\n"
    "  if handoff(KEYS[3], KEYS[5], KEYS[1], KEYS[2], KEYS[6], ARGV[3], ARGV[2]) == 0 then signal(KEYS[4], ARGV[2]) end\n"
    "elseif not v or v == SH then signal(KEYS[4], ARGV[2]) end\n"
    "return 0\n";

enum { SCRIPT_ACQUIRE, SCRIPT_RELEASE, SCRIPT_EXTEND, SCRIPT_RESET, SCRIPT_INSPECT, SCRIPT_UNWAIT, NSCRIPTS };

static const char *const scripts[NSCRIPTS] = {acquire_lua, release_lua, extend_lua,
                                              reset_lua,   inspect_lua, unwait_lua};
static const char *const script_names[NSCRIPTS] = {"the acquire script", "the release script", "the extend script",
                                                   "the reset script",   "the inspect script", "the unwait script"};

/* The markers, as the scripts write them. */
static const char marker_shared[] = "\001anylock shared";
static const char marker_sem[] = "\001anylock semaphore ";

/* ---- state ---------------------------------------------------------------- */

typedef struct redis_state {
    /* Set at open, read-only afterwards. */
    int is_unix;
    char *host; /* or the socket path */
    int port;
    char *user;     /* NULL: AUTH with the password alone (or no AUTH) */
    char *password; /* NULL: no AUTH */
    long db;
    int64_t connect_timeout_ms;
    int64_t command_timeout_ms;
    int64_t signal_expire_ms;
    int64_t block_max_ms;
    char signal_expire[24]; /* as text, for the scripts */
    size_t signal_expire_len;
    int64_t turn_ms;
    char turn[24]; /* as text, for the scripts */
    size_t turn_len;
    char sha[NSCRIPTS][41];
    char *token_key;
    size_t token_key_len;
    anylock_pool *pool;
} redis_state;

static const char *const redis_params[] = {"connect_timeout", "command_timeout", "signal_expire", "block_max",
                                           "turn",            "db",              NULL};

/* A connection and what we know of its socket. */
typedef struct rconn {
    redisContext *ctx;
    int64_t rcv_ms, snd_ms; /* the socket timeouts set now (0: unknown) */
    unsigned long uses;     /* requests sent on it (0: fresh) */
    int broken;             /* the stream is unusable: close it */
} rconn;

/* K_WAKE is not a key but the prefix of the waiters' wake lists (+ id). */
enum { K_LOCK, K_SIGNAL, K_META, K_HOLDERS, K_QUEUE, K_QINFO, K_WAKE, K_TOKEN, NKEYS };

/* A lock's key names; a lock handle keeps them in its per-lock state so
 * that no call formats them again. */
typedef struct rkeys {
    char *buf; /* the keys from K_SIGNAL to K_WAKE; NULL: not made yet */
    const char *k[NKEYS];
    size_t len[NKEYS];
} rkeys;

/* ---- messages -------------------------------------------------------------- */

/* A stored value shown in a message: printable ASCII as is, other bytes as
 * \xNN, at most 64 bytes of it, and what it means when it is a marker. */
static void show_value(char *out, size_t size, const char *v, size_t n)
{
    if (n == sizeof marker_shared - 1 && !memcmp(v, marker_shared, n)) {
        snprintf(out, size, "shared holders");
        return;
    }
    if (n > sizeof marker_sem - 1 && !memcmp(v, marker_sem, sizeof marker_sem - 1)) {
        snprintf(out, size, "the holders of a semaphore of %.*s", (int)(n - (sizeof marker_sem - 1)),
                 v + sizeof marker_sem - 1);
        return;
    }
    size_t o = 0;
    if (o + 1 < size)
        out[o++] = '"';
    for (size_t i = 0; i < n && i < 64 && o + 6 < size; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, size - o, "\\x%02x", c);
    }
    if (o + 1 < size)
        out[o++] = '"';
    out[o < size ? o : size - 1] = '\0';
    if (n > 64 && o + 1 < size)
        snprintf(out + o, size - o, " (%zu bytes)", n);
}

/* The status for an error reply from the server. */
static anylock_status error_reply_status(const char *msg)
{
    if (!strncmp(msg, "NOAUTH", 6) || !strncmp(msg, "WRONGPASS", 9) || !strncmp(msg, "ERR invalid password", 20) ||
        !strncmp(msg, "ERR AUTH", 8) || !strncmp(msg, "ERR Client sent AUTH", 20))
        return ANYLOCK_AUTH;
    if (!strncmp(msg, "NOPERM", 6))
        return ANYLOCK_ACCESS;
    return ANYLOCK_STORE;
}

/* Replaces the message op holds with "what: <that message>" and status st
 * (the old message is copied first: it is read while the new one is made). */
static anylock_status rewrap(anylock_op *op, anylock_status st, const char *what)
{
    char was[ANYLOCK_ERRMSG_MAX];
    snprintf(was, sizeof was, "%s", op->errbuf);
    const char *m = !strncmp(was, "redis: ", 7) ? was + 7 : was;
    return anylock_op_error(op, st, "%s: %s", what, m);
}

/* ---- commands --------------------------------------------------------------- */

typedef struct rarg {
    const char *p;
    size_t n;
} rarg;

/* A request in RESP, built in place: no allocation unless it is large. */
typedef struct cmdbuf {
    char *p;
    size_t len, cap;
    int nomem;
    char inline_buf[2048];
} cmdbuf;

static void cmd_init(cmdbuf *b)
{
    b->p = b->inline_buf;
    b->len = 0;
    b->cap = sizeof b->inline_buf;
    b->nomem = 0;
}

static void cmd_free(cmdbuf *b)
{
    if (b->p != b->inline_buf)
        free(b->p);
    cmd_init(b);
}

/* Makes room for n more bytes; 0 when there is none (out of memory). */
static int cmd_room(cmdbuf *b, size_t n)
{
    if (b->nomem)
        return 0;
    if (b->len + n <= b->cap)
        return 1;
    size_t cap = b->cap * 2;
    while (cap < b->len + n)
        cap *= 2;
    char *g = b->p == b->inline_buf ? malloc(cap) : realloc(b->p, cap);
    if (!g) {
        b->nomem = 1;
        return 0;
    }
    if (b->p == b->inline_buf)
        memcpy(g, b->p, b->len);
    b->p = g;
    b->cap = cap;
    return 1;
}

/* Writes "<type><n>\r\n" at o; returns the new end. */
static char *put_head(char *o, char type, size_t n)
{
    char tmp[24];
    size_t k = 0;
    do {
        tmp[k++] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    *o++ = type;
    while (k)
        *o++ = tmp[--k];
    *o++ = '\r';
    *o++ = '\n';
    return o;
}

/* Appends one command of argc arguments: its size is worked out first, so
 * that it is written in one pass. */
static void cmd_add(cmdbuf *b, size_t argc, const rarg *argv)
{
    size_t need = 24;
    for (size_t i = 0; i < argc; i++)
        need += argv[i].n + 24;
    if (!cmd_room(b, need))
        return;
    char *o = put_head(b->p + b->len, '*', argc);
    for (size_t i = 0; i < argc; i++) {
        o = put_head(o, '$', argv[i].n);
        memcpy(o, argv[i].p, argv[i].n);
        o += argv[i].n;
        *o++ = '\r';
        *o++ = '\n';
    }
    b->len = (size_t)(o - b->p);
}

static rarg arg_str(const char *s)
{
    rarg a = {s, strlen(s)};
    return a;
}

/* v in decimal (v >= 0), NUL-terminated, in out[24]; as an argument. */
static rarg arg_num(char out[24], long long v)
{
    char tmp[24];
    size_t n = 0;
    unsigned long long u = v < 0 ? 0 : (unsigned long long)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
    rarg a = {out, n};
    return a;
}

/* ---- connections ------------------------------------------------------------ */

static int set_timeout(int fd, int opt, int64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    return setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof tv);
}

/* Makes the socket's timeouts ms (> 0), skipping the system calls when they
 * are already. */
static int conn_timeouts(rconn *c, int64_t ms)
{
    if (c->rcv_ms != ms) {
        if (set_timeout(c->ctx->fd, SO_RCVTIMEO, ms))
            return -1;
        c->rcv_ms = ms;
    }
    if (c->snd_ms != ms) {
        if (set_timeout(c->ctx->fd, SO_SNDTIMEO, ms))
            return -1;
        c->snd_ms = ms;
    }
    return 0;
}

static anylock_status no_time(anylock_op *op, rconn *c, const char *what)
{
    c->broken = 1;
    return anylock_op_error(op, ANYLOCK_IO, "redis: no time left for %s before the call's deadline", what);
}

/* Writes the whole request by deadline.  A failure means the server cannot
 * have run it (it never got all of it). */
static anylock_status conn_send(anylock_op *op, rconn *c, const cmdbuf *b, int64_t deadline, const char *what)
{
    if (b->nomem)
        return anylock_op_error(op, ANYLOCK_NOMEM, "redis: out of memory");
    size_t off = 0;
    c->uses++;
    while (off < b->len) {
        int64_t ms = anylock_ms_until(deadline);
        if (ms == 0)
            return no_time(op, c, what);
        if (conn_timeouts(c, ms)) {
            c->broken = 1;
            return anylock_op_error(op, ANYLOCK_IO, "redis: cannot set the socket timeout: %s", strerror(errno));
        }
        ssize_t n = send(c->ctx->fd, b->p + off, b->len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        c->broken = 1;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return anylock_op_error(op, ANYLOCK_IO, "redis: could not send %s within the command timeout", what);
        return anylock_op_error(op, ANYLOCK_IO, "redis: connection lost sending %s: %s", what,
                                n < 0 ? strerror(errno) : "closed");
    }
    return ANYLOCK_OK;
}

/* Reads one reply by deadline.  An error reply is returned as a reply. */
static anylock_status conn_recv(anylock_op *op, rconn *c, redisReply **out, int64_t deadline, const char *what)
{
    *out = NULL;
    for (;;) {
        void *r = NULL;
        if (redisReaderGetReply(c->ctx->reader, &r) != REDIS_OK) {
            c->broken = 1;
            return anylock_op_error(op, ANYLOCK_PROTOCOL, "redis: bad reply to %s: %s", what, c->ctx->reader->errstr);
        }
        if (r) {
            *out = r;
            return ANYLOCK_OK;
        }
        int64_t ms = anylock_ms_until(deadline);
        if (ms == 0) {
            c->broken = 1;
            return anylock_op_error(op, ANYLOCK_IO, "redis: no reply to %s within the time allowed", what);
        }
        if (conn_timeouts(c, ms)) {
            c->broken = 1;
            return anylock_op_error(op, ANYLOCK_IO, "redis: cannot set the socket timeout: %s", strerror(errno));
        }
        char buf[16384];
        ssize_t n = recv(c->ctx->fd, buf, sizeof buf, 0);
        if (n > 0) {
            if (redisReaderFeed(c->ctx->reader, buf, (size_t)n) != REDIS_OK) {
                c->broken = 1;
                return anylock_op_error(op, ANYLOCK_NOMEM, "redis: out of memory");
            }
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        c->broken = 1;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return anylock_op_error(op, ANYLOCK_IO, "redis: no reply to %s within the time allowed", what);
        return anylock_op_error(op, ANYLOCK_IO, "redis: connection lost waiting for the reply to %s: %s", what,
                                n < 0 ? strerror(errno) : "closed by the server");
    }
}

/* Checks a reply that must not be an error. */
static anylock_status reply_ok(anylock_op *op, const redisReply *r, const char *what)
{
    if (r->type == REDIS_REPLY_ERROR)
        return anylock_op_error(op, error_reply_status(r->str), "redis: %s: %.160s", what, r->str);
    return ANYLOCK_OK;
}

static anylock_status unexpected(anylock_op *op, rconn *c, const char *what)
{
    /* After an unexpected reply we cannot trust the stream's position. */
    c->broken = 1;
    return anylock_op_error(op, ANYLOCK_PROTOCOL, "redis: unexpected reply to %s", what);
}

/* Sends b and reads n replies into rs (each freed by the caller, NULL on
 * failure). */
static anylock_status conn_roundtrip(anylock_op *op, rconn *c, const cmdbuf *b, size_t n, redisReply **rs,
                                     int64_t deadline, const char *what)
{
    for (size_t i = 0; i < n; i++)
        rs[i] = NULL;
    anylock_status st = conn_send(op, c, b, deadline, what);
    for (size_t i = 0; i < n && st == ANYLOCK_OK; i++)
        st = conn_recv(op, c, &rs[i], deadline, what);
    return st;
}

static void free_replies(redisReply **rs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (rs[i]) {
            freeReplyObject(rs[i]);
            rs[i] = NULL;
        }
}

static void conn_close(void *ctx, void *conn)
{
    (void)ctx;
    rconn *c = conn;
    if (c->ctx)
        redisFree(c->ctx);
    free(c);
}

/* Connects, authenticates and selects the database, all by deadline. */
static anylock_status conn_open(void *ctx, anylock_op *op, int64_t deadline, void **out)
{
    redis_state *s = ctx;
    *out = NULL;
    int64_t ms = anylock_ms_until(deadline);
    if (ms == 0)
        return anylock_op_error(op, ANYLOCK_CONNECT, "redis: no time left to connect before the call's deadline");
    rconn *c = calloc(1, sizeof *c);
    if (!c)
        return anylock_op_error(op, ANYLOCK_NOMEM, "redis: out of memory");
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    c->ctx = s->is_unix ? redisConnectUnixWithTimeout(s->host, tv) : redisConnectWithTimeout(s->host, s->port, tv);
    if (!c->ctx) {
        conn_close(s, c);
        return anylock_op_error(op, ANYLOCK_NOMEM, "redis: out of memory");
    }
    if (c->ctx->err) {
        anylock_status st;
        if (s->is_unix)
            st = anylock_op_error(op, ANYLOCK_CONNECT, "redis: cannot connect to unix socket %.128s: %s", s->host,
                                  c->ctx->errstr);
        else
            st = anylock_op_error(op, ANYLOCK_CONNECT, "redis: cannot connect to %.128s:%d: %s", s->host, s->port,
                                  c->ctx->errstr);
        conn_close(s, c);
        return st;
    }
    cmdbuf b;
    cmd_init(&b);
    size_t n = 0;
    int auth = -1, sel = -1;
    if (s->password) {
        rarg a[3] = {arg_str("AUTH")};
        size_t argc = 1;
        if (s->user)
            a[argc++] = arg_str(s->user);
        a[argc++] = arg_str(s->password);
        cmd_add(&b, argc, a);
        auth = (int)n++;
    }
    char db[24];
    if (s->db) {
        snprintf(db, sizeof db, "%ld", s->db);
        rarg a[2] = {arg_str("SELECT"), arg_str(db)};
        cmd_add(&b, 2, a);
        sel = (int)n++;
    }
    anylock_status st = ANYLOCK_OK;
    if (n) {
        redisReply *rs[2];
        st = conn_roundtrip(op, c, &b, n, rs, deadline, auth >= 0 ? "AUTH" : "SELECT");
        if (st == ANYLOCK_OK && auth >= 0 && rs[auth]->type == REDIS_REPLY_ERROR)
            /* The server's message never repeats the password. */
            st = anylock_op_error(op, ANYLOCK_AUTH, "redis: authentication failed: %.160s", rs[auth]->str);
        if (st == ANYLOCK_OK && sel >= 0)
            st = reply_ok(op, rs[sel], "SELECT");
        if (st == ANYLOCK_IO)
            st = rewrap(op, ANYLOCK_CONNECT, "redis: connecting");
        free_replies(rs, n);
        /* Wipe the password from the request buffer. */
        memset(b.p, 0, b.len);
        cmd_free(&b);
    }
    if (st != ANYLOCK_OK) {
        conn_close(s, c);
        return st;
    }
    c->uses = 0;
    *out = c;
    return ANYLOCK_OK;
}

/* Whether an idle connection is still good: an idle connection has nothing
 * to read, so readability means the server closed it (a restart, an idle
 * timeout).  One system call, no round trip; it keeps a request off a
 * connection the server already closed, where its fate could not be known. */
static int conn_usable(void *ctx, void *conn)
{
    (void)ctx;
    rconn *c = conn;
    struct pollfd pfd = {.fd = c->ctx->fd, .events = POLLIN};
    return poll(&pfd, 1, 0) == 0;
}

static const anylock_pool_methods pool_methods = {conn_open, conn_close, conn_usable};

/* The round-trip deadline of this call, or 0 when its deadline has passed. */
static int64_t io_deadline(const anylock_op *op, const redis_state *s, int64_t extra_ms)
{
    int64_t d = anylock_op_io_deadline(op, s->command_timeout_ms + extra_ms);
    return anylock_ms_until(d) ? d : 0;
}

static anylock_status conn_get(anylock_op *op, redis_state *s, int64_t deadline, rconn **out)
{
    int64_t connect_by = anylock_now_ns() + s->connect_timeout_ms * 1000000;
    if (deadline < connect_by)
        connect_by = deadline;
    void *c = NULL;
    anylock_status st = anylock_pool_get(s->pool, op, connect_by, &c);
    *out = c;
    return st;
}

static void conn_put(redis_state *s, rconn *c)
{
    if (c)
        anylock_pool_put(s->pool, c, c->broken || c->ctx->err);
}

/* ---- scripts ------------------------------------------------------------------ */

/*
 * Runs script which with args (keys, then arguments) on c; the reply in
 * *out.  *lost = 1 when the request was sent and its reply never came (the
 * server may have run it).  A server that lost its script cache (restart,
 * SCRIPT FLUSH) answers NOSCRIPT without running anything: the script is
 * loaded again and run once more.
 */
static anylock_status script_run(anylock_op *op, redis_state *s, rconn *c, int which, size_t nkeys,
                                 const rarg *args, size_t nargs, int64_t deadline, redisReply **out, int *lost)
{
    *out = NULL;
    *lost = 0;
    rarg argv[24];
    char nk[24];
    if (nargs > sizeof argv / sizeof argv[0] - 3)
        return anylock_op_error(op, ANYLOCK_INTERNAL, "redis: too many script arguments");
    argv[0].p = "EVALSHA";
    argv[0].n = 7;
    argv[1].p = s->sha[which];
    argv[1].n = 40;
    argv[2] = arg_num(nk, (long long)nkeys);
    for (size_t i = 0; i < nargs; i++)
        argv[3 + i] = args[i];
    cmdbuf b;
    cmd_init(&b);
    cmd_add(&b, 3 + nargs, argv);
    anylock_status st;
    for (int attempt = 0;; attempt++) {
        redisReply *r = NULL;
        st = conn_send(op, c, &b, deadline, script_names[which]);
        if (st == ANYLOCK_OK) {
            st = conn_recv(op, c, &r, deadline, script_names[which]);
            if (st != ANYLOCK_OK)
                *lost = 1;
        }
        if (st == ANYLOCK_OK && r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "NOSCRIPT", 8) && attempt == 0) {
            freeReplyObject(r);
            cmdbuf l;
            cmd_init(&l);
            rarg la[3] = {arg_str("SCRIPT"), arg_str("LOAD"), arg_str(scripts[which])};
            cmd_add(&l, 3, la);
            st = conn_roundtrip(op, c, &l, 1, &r, deadline, "SCRIPT LOAD");
            cmd_free(&l);
            if (st == ANYLOCK_OK && (st = reply_ok(op, r, "SCRIPT LOAD")) == ANYLOCK_OK &&
                (r->type != REDIS_REPLY_STRING || r->len != 40 || memcmp(r->str, s->sha[which], 40)))
                st = unexpected(op, c, "SCRIPT LOAD");
            if (r)
                freeReplyObject(r);
            if (st != ANYLOCK_OK)
                break;
            continue;
        }
        if (st == ANYLOCK_OK && (st = reply_ok(op, r, script_names[which])) != ANYLOCK_OK) {
            freeReplyObject(r);
            r = NULL;
        }
        *out = r;
        break;
    }
    cmd_free(&b);
    return st;
}

/*
 * Runs a script on a connection of the pool.  A request that could not be
 * sent on a reused connection is sent once more on a fresh one (the server
 * never saw it).
 */
static anylock_status script_call(anylock_op *op, redis_state *s, int which, size_t nkeys, const rarg *args,
                                  size_t nargs, redisReply **out, int *lost, int64_t *sent_at)
{
    *out = NULL;
    *lost = 0;
    anylock_status st = ANYLOCK_OK;
    for (int attempt = 0; attempt < 2; attempt++) {
        int64_t deadline = io_deadline(op, s, 0);
        if (!deadline)
            return anylock_op_error(op, ANYLOCK_TIMEOUT, "redis: the call's deadline passed before %s was sent",
                                    script_names[which]);
        rconn *c;
        if ((st = conn_get(op, s, deadline, &c)) != ANYLOCK_OK)
            return st;
        int fresh = c->uses == 0;
        if (sent_at)
            *sent_at = anylock_now_ns();
        st = script_run(op, s, c, which, nkeys, args, nargs, deadline, out, lost);
        conn_put(s, c);
        if (st == ANYLOCK_OK || *lost || fresh || st != ANYLOCK_IO)
            break;
    }
    return st;
}

/* The integer a script answered. */
static anylock_status script_int(anylock_op *op, redis_state *s, int which, size_t nkeys, const rarg *args,
                                 size_t nargs, long long *result, int64_t *sent_at)
{
    redisReply *r;
    int lost;
    anylock_status st = script_call(op, s, which, nkeys, args, nargs, &r, &lost, sent_at);
    if (st != ANYLOCK_OK) {
        if (lost) {
            char what[160];
            snprintf(what, sizeof what, "lock \"%.64s\": %s was sent but its answer was lost, so it may or may "
                     "not have been done", op->name ? op->name : "", script_names[which]);
            return rewrap(op, ANYLOCK_OUTCOME_UNKNOWN, what);
        }
        return st;
    }
    if (r->type != REDIS_REPLY_INTEGER) {
        freeReplyObject(r);
        return anylock_op_error(op, ANYLOCK_PROTOCOL, "redis: unexpected reply to %s", script_names[which]);
    }
    *result = r->integer;
    freeReplyObject(r);
    return ANYLOCK_OK;
}

/* ---- keys ---------------------------------------------------------------------- */

/* The prefix less one trailing ':' ("lock:" gives "lock"). */
static size_t base_len(const anylock_op *op)
{
    size_t p = op->prefix_len;
    return p && op->prefix[p - 1] == ':' ? p - 1 : p;
}

static const char *const key_mid[NKEYS] = {NULL, "-signal:", "-meta:", "-holders:", "-queue:", "-qinfo:", "-wake:",
                                           NULL};

/* Makes the key names of the lock key (prefix + name) given. */
static anylock_status keys_make(anylock_op *op, const redis_state *s, const char *key, size_t key_len, rkeys *k)
{
    size_t b = base_len(op), name_len = key_len - op->prefix_len;
    const char *name = key + op->prefix_len;
    size_t total = 0;
    for (int i = K_SIGNAL; i <= K_WAKE; i++)
        total += b + strlen(key_mid[i]) + name_len + 2;
    k->buf = malloc(total);
    if (!k->buf)
        return anylock_op_error(op, ANYLOCK_NOMEM, "redis: out of memory");
    char *p = k->buf;
    for (int i = K_SIGNAL; i <= K_WAKE; i++) {
        size_t m = strlen(key_mid[i]);
        k->k[i] = p;
        memcpy(p, op->prefix, b);
        memcpy(p + b, key_mid[i], m);
        memcpy(p + b + m, name, name_len);
        k->len[i] = b + m + name_len;
        if (i == K_WAKE)
            p[k->len[i]++] = ':';
        p[k->len[i]] = '\0';
        p += k->len[i] + 1;
    }
    k->k[K_LOCK] = key;
    k->len[K_LOCK] = key_len;
    k->k[K_TOKEN] = s->token_key;
    k->len[K_TOKEN] = s->token_key_len;
    return ANYLOCK_OK;
}

/* The keys of op's lock: kept in its per-lock state, or made in tmp for a
 * client-wide call (free tmp->buf after). */
static anylock_status keys_of(anylock_op *op, rkeys *tmp, const rkeys **out)
{
    redis_state *s = op->state;
    rkeys *k = op->lock_state ? op->lock_state : tmp;
    if (k == tmp)
        tmp->buf = NULL;
    if (!k->buf) {
        anylock_status st = keys_make(op, s, op->key, op->key_len, k);
        if (st != ANYLOCK_OK)
            return st;
    }
    k->k[K_LOCK] = op->key; /* the core's copy, stable for the handle */
    *out = k;
    return ANYLOCK_OK;
}

static rarg key_arg(const rkeys *k, int which)
{
    rarg a = {k->k[which], k->len[which]};
    return a;
}

static void redis_forget(anylock_op *op)
{
    rkeys *k = op->lock_state;
    if (k) {
        free(k->buf);
        k->buf = NULL;
    }
}

/* ---- open / close -------------------------------------------------------------- */

static anylock_status parse_db(anylock_op *op, const char *text, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (!*text || *end || errno || v < 0 || v > 1000000)
        return anylock_op_error(op, ANYLOCK_URL_BAD_PARAM, "redis: the database must be a number from 0, not \"%.32s\"",
                                text);
    *out = v;
    return ANYLOCK_OK;
}

/* Loads every script in one round trip, noting their digests. */
static anylock_status load_scripts(anylock_op *op, redis_state *s, rconn *c, int64_t deadline)
{
    cmdbuf b;
    cmd_init(&b);
    for (int i = 0; i < NSCRIPTS; i++) {
        rarg a[3] = {arg_str("SCRIPT"), arg_str("LOAD"), arg_str(scripts[i])};
        cmd_add(&b, 3, a);
    }
    redisReply *rs[NSCRIPTS];
    anylock_status st = conn_roundtrip(op, c, &b, NSCRIPTS, rs, deadline, "SCRIPT LOAD");
    for (int i = 0; i < NSCRIPTS && st == ANYLOCK_OK; i++) {
        if ((st = reply_ok(op, rs[i], "SCRIPT LOAD")) != ANYLOCK_OK)
            break;
        if (rs[i]->type != REDIS_REPLY_STRING || rs[i]->len != 40)
            st = unexpected(op, c, "SCRIPT LOAD");
        else
            memcpy(s->sha[i], rs[i]->str, 41);
    }
    free_replies(rs, NSCRIPTS);
    cmd_free(&b);
    return st;
}

static anylock_status redis_open(anylock_op *op, const anylock_url *url)
{
    redis_state *s = op->state;
    int64_t deadline; /* open returns within connect_timeout, all of it */
    s->is_unix = !strcmp(url->scheme, "redis+unix");

    anylock_status st;
    if ((st = anylock_url_param_ms(op, url, "connect_timeout", DEFAULT_CONNECT_TIMEOUT_MS, &s->connect_timeout_ms)) ||
        (st = anylock_url_param_ms(op, url, "command_timeout", DEFAULT_COMMAND_TIMEOUT_MS, &s->command_timeout_ms)) ||
        (st = anylock_url_param_ms(op, url, "signal_expire", DEFAULT_SIGNAL_EXPIRE_MS, &s->signal_expire_ms)) ||
        (st = anylock_url_param_ms(op, url, "block_max", DEFAULT_BLOCK_MAX_MS, &s->block_max_ms)) ||
        (st = anylock_url_param_ms(op, url, "turn", DEFAULT_TURN_MS, &s->turn_ms)))
        return st;
    if (s->connect_timeout_ms <= 0 || s->command_timeout_ms <= 0 || s->signal_expire_ms <= 0 || s->block_max_ms <= 0)
        return anylock_op_error(op, ANYLOCK_URL_BAD_PARAM, "redis: connect_timeout, command_timeout, signal_expire "
                                "and block_max must be more than 0 s");
    deadline = anylock_now_ns() + s->connect_timeout_ms * 1000000;
    s->signal_expire_len = arg_num(s->signal_expire, s->signal_expire_ms).n;
    s->turn_len = arg_num(s->turn, s->turn_ms).n;

    if (url->user && url->user[0] && !url->password)
        return anylock_op_error(op, ANYLOCK_URL_BAD_USERINFO, "redis: a user name needs a password (user:password@)");
    if (url->password && !(s->password = strdup(url->password)))
        return ANYLOCK_NOMEM;
    if (url->user && url->user[0] && !(s->user = strdup(url->user)))
        return ANYLOCK_NOMEM;

    const char *db = anylock_url_param_get(url, "db");
    if (s->is_unix) {
        if (url->nhosts)
            return anylock_op_error(op, ANYLOCK_URL_BAD_HOST,
                                    "redis+unix: takes no host: write redis+unix:///path/to/redis.sock");
        if (!url->path[0] || !strcmp(url->path, "/"))
            return anylock_op_error(op, ANYLOCK_URL_BAD_PATH, "redis+unix: the URL needs the socket's path");
        if (!(s->host = strdup(url->path)))
            return ANYLOCK_NOMEM;
        if (db && (st = parse_db(op, db, &s->db)))
            return st;
    } else {
        if (url->nhosts > 1)
            return anylock_op_error(op, ANYLOCK_URL_BAD_HOST, "redis: takes one host (no cluster or sentinel support)");
        if (db)
            return anylock_op_error(op, ANYLOCK_URL_BAD_PARAM,
                                    "redis: give the database as the URL's path (redis://host/2), not as ?db=");
        s->host = strdup(url->nhosts ? url->hosts[0].host : "127.0.0.1");
        if (!s->host)
            return ANYLOCK_NOMEM;
        s->port = url->nhosts && url->hosts[0].port ? url->hosts[0].port : DEFAULT_PORT;
        if (url->path[0] && strcmp(url->path, "/")) {
            if (parse_db(op, url->path + 1, &s->db) != ANYLOCK_OK)
                return anylock_op_error(op, ANYLOCK_URL_BAD_PATH,
                                        "redis: the URL's path must be a database number (redis://host/2)");
        }
    }

    size_t b = base_len(op);
    s->token_key_len = b + 6;
    if (!(s->token_key = malloc(s->token_key_len + 1)))
        return ANYLOCK_NOMEM;
    memcpy(s->token_key, op->prefix, b);
    memcpy(s->token_key + b, "-token", 7);

    if ((st = anylock_pool_create(&pool_methods, s, POOL_IDLE_MAX, &s->pool)) != ANYLOCK_OK)
        return st;
    /* Connect now, so that a dead server or a bad password is reported by
     * open, and load the scripts (whose digests every connection shares). */
    void *c;
    if ((st = anylock_pool_get(s->pool, op, deadline, &c)) != ANYLOCK_OK)
        return st;
    st = load_scripts(op, s, c, deadline);
    if (st == ANYLOCK_IO)
        st = rewrap(op, ANYLOCK_CONNECT, "redis: setting up the connection");
    conn_put(s, c);
    return st;
}

static void redis_close(anylock_op *op)
{
    redis_state *s = op->state;
    anylock_pool_destroy(s->pool);
    free(s->host);
    free(s->user);
    free(s->token_key);
    if (s->password) {
        /* Do not leave the password in freed memory. */
        volatile char *p = s->password;
        while (*p)
            *p++ = '\0';
        free(s->password);
    }
}

/* ---- acquire ------------------------------------------------------------------------ */

enum { ACQ_TAKEN = 0, ACQ_BUSY = 1, ACQ_MINE = 2, ACQ_CONFLICT = 3, ACQ_WRITER = 4 };

typedef struct attempt {
    long long code;
    uint64_t token;
    int has_token;
    long long hint_ms; /* -1: no bound from the holder */
    long long nap_ms;  /* > 0: the first waiter during a turn: look again after this long */
    char holder[200];  /* for messages */
    char value[80];    /* the first bytes of the holder value, for conflicts */
    size_t value_len;
} attempt;

static uint64_t parse_u64(const char *s, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n && s[i] >= '0' && s[i] <= '9'; i++)
        v = v * 10 + (uint64_t)(s[i] - '0');
    return v;
}

/* What the transaction of try_fast answered. */
typedef struct exec_result {
    int set_ok;         /* the SET took the lock */
    int tok_ok;         /* tok is the HINCRBY's answer */
    long long tok;
    int get_type;       /* 0: nil, 1: a string (get, get_len), 2: an error (another type of key) */
    const char *get;
    size_t get_len;
    int ttl_ok;
    long long ttl;
} exec_result;

/* The next line of b[0..n) from *o (without its CRLF): 1, or 0 if it is
 * not all there yet. */
static int next_line(const char *b, size_t n, size_t *o, const char **line, size_t *len)
{
    for (size_t i = *o; i + 1 < n; i++)
        if (b[i] == '\r' && b[i + 1] == '\n') {
            *line = b + *o;
            *len = i - *o;
            *o = i + 2;
            return 1;
        }
    return 0;
}

static int parse_ll(const char *p, size_t n, long long *out)
{
    size_t i = 0;
    int neg = 0;
    if (i < n && p[i] == '-') {
        neg = 1;
        i++;
    }
    if (i == n || n - i > 18)
        return -1;
    long long v = 0;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    *out = neg ? -v : v;
    return 0;
}

/*
 * Reads the transaction's answer straight from the bytes received, without
 * hiredis's reply objects (sixteen of them, most of a pair's client time):
 * "+OK", seven "+QUEUED", then "*7" and the seven results.  1 when b holds
 * all of it (*used bytes), 0 when more must come, -1 when it has another
 * form (an error, anything unexpected): hiredis then reads it.
 */
static int exec_parse(const char *b, size_t n, exec_result *x, size_t *used)
{
    size_t o = 0, len;
    const char *l;
#define LINE()                                                                                                        \
    do {                                                                                                              \
        if (!next_line(b, n, &o, &l, &len))                                                                           \
            return 0;                                                                                                 \
    } while (0)
#define IS(lit) (len == sizeof lit - 1 && !memcmp(l, lit, sizeof lit - 1))
    memset(x, 0, sizeof *x);
    LINE();
    if (!IS("+OK"))
        return -1;
    for (int i = 0; i < 7; i++) {
        LINE();
        if (!IS("+QUEUED"))
            return -1;
    }
    LINE();
    if (!IS("*7"))
        return -1;
    LINE();
    if (IS("+OK"))
        x->set_ok = 1;
    else if (!IS("$-1"))
        return -1;
    for (int i = 1; i <= 4; i++) {
        long long v;
        LINE();
        if (!len || l[0] != ':' || parse_ll(l + 1, len - 1, &v))
            return -1;
        if (i == 1) {
            x->tok = v;
            x->tok_ok = 1;
        }
    }
    LINE();
    if (IS("$-1")) {
        x->get_type = 0;
    } else {
        long long bl;
        if (!len || l[0] != '$' || parse_ll(l + 1, len - 1, &bl) || bl < 0)
            return -1;
        if (n - o < (size_t)bl + 2)
            return 0;
        x->get_type = 1;
        x->get = b + o;
        x->get_len = (size_t)bl;
        o += (size_t)bl;
        if (b[o] != '\r' || b[o + 1] != '\n')
            return -1;
        o += 2;
    }
    LINE();
    if (!len || l[0] != ':' || parse_ll(l + 1, len - 1, &x->ttl))
        return -1;
    x->ttl_ok = 1;
    *used = o;
    return 1;
#undef IS
#undef LINE
}

/* One recv() into b[*n..cap) by deadline. */
static anylock_status conn_read(anylock_op *op, rconn *c, char *b, size_t cap, size_t *n, int64_t deadline,
                                const char *what)
{
    for (;;) {
        int64_t ms = anylock_ms_until(deadline);
        if (ms == 0) {
            c->broken = 1;
            return anylock_op_error(op, ANYLOCK_IO, "redis: no reply to %s within the time allowed", what);
        }
        if (conn_timeouts(c, ms)) {
            c->broken = 1;
            return anylock_op_error(op, ANYLOCK_IO, "redis: cannot set the socket timeout: %s", strerror(errno));
        }
        ssize_t r = recv(c->ctx->fd, b + *n, cap - *n, 0);
        if (r > 0) {
            *n += (size_t)r;
            return ANYLOCK_OK;
        }
        if (r < 0 && errno == EINTR)
            continue;
        c->broken = 1;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return anylock_op_error(op, ANYLOCK_IO, "redis: no reply to %s within the time allowed", what);
        return anylock_op_error(op, ANYLOCK_IO, "redis: connection lost waiting for the reply to %s: %s", what,
                                r < 0 ? strerror(errno) : "closed by the server");
    }
}

/*
 * A try of an exclusive acquire with an expiry, as one transaction
 * of plain commands (a Lua script costs the server several times more):
 *   MULTI; SET lock id NX PX ms; HINCRBY token n 1;
 *   HSET meta m:<id> <metadata>; PEXPIRE meta ms NX; PEXPIRE meta ms GT;
 *   GET lock; PTTL lock; EXEC
 * The token is advanced whether or not the SET took the lock (tokens skip
 * numbers, and stay strictly increasing per acquisition); a try that fails
 * leaves its metadata field beside the holder's, keyed by its own id, which
 * nothing reads and the holder's release deletes.  *fallback = 1 when the
 * holder is a marker (shared or semaphore holders): the script decides.
 */
static anylock_status try_fast(anylock_op *op, redis_state *s, rconn *c, const rkeys *k, int64_t deadline,
                               attempt *a, int *lost, int64_t *sent_at, int *fallback)
{
    (void)s;
    *lost = 0;
    *fallback = 0;
    char px[24], mkey[ANYLOCK_ID_MAX + 3];
    rarg pxa = arg_num(px, op->expires_ms);
    mkey[0] = 'm';
    mkey[1] = ':';
    memcpy(mkey + 2, op->id, op->id_len);
    rarg id = {op->id, op->id_len}, lock = key_arg(k, K_LOCK), meta = key_arg(k, K_META);
    rarg set[6] = {{"SET", 3}, lock, id, {"NX", 2}, {"PX", 2}, pxa};
    rarg inc[4] = {{"HINCRBY", 7}, key_arg(k, K_TOKEN), {"n", 1}, {"1", 1}};
    rarg hset[4] = {{"HSET", 4}, meta, {mkey, op->id_len + 2}, {op->meta ? op->meta : "", op->meta ? op->meta_len : 0}};
    rarg ex1[4] = {{"PEXPIRE", 7}, meta, pxa, {"NX", 2}};
    rarg ex2[4] = {{"PEXPIRE", 7}, meta, pxa, {"GT", 2}};
    rarg get[2] = {{"GET", 3}, lock};
    rarg pttl[2] = {{"PTTL", 4}, lock};
    rarg one[1] = {{"MULTI", 5}};
    cmdbuf b;
    cmd_init(&b);
    cmd_add(&b, 1, one);
    cmd_add(&b, 6, set);
    cmd_add(&b, 4, inc);
    cmd_add(&b, 4, hset);
    cmd_add(&b, 4, ex1);
    cmd_add(&b, 4, ex2);
    cmd_add(&b, 2, get);
    cmd_add(&b, 2, pttl);
    one[0].p = "EXEC";
    one[0].n = 4;
    cmd_add(&b, 1, one);
    redisReply *rs[9];
    for (size_t i = 0; i < 9; i++)
        rs[i] = NULL;
    *sent_at = anylock_now_ns();
    anylock_status st = conn_send(op, c, &b, deadline, "the acquire transaction");
    cmd_free(&b);
    exec_result x;
    char raw[2048];
    size_t rlen = 0, used = 0;
    int parsed = 0;
    while (st == ANYLOCK_OK) {
        int r = exec_parse(raw, rlen, &x, &used);
        if (r > 0) {
            parsed = 1;
            break;
        }
        if (r < 0 || rlen == sizeof raw)
            break;
        if ((st = conn_read(op, c, raw, sizeof raw, &rlen, deadline, "the acquire transaction")) != ANYLOCK_OK)
            *lost = 1;
    }
    if (st == ANYLOCK_OK && used < rlen && redisReaderFeed(c->ctx->reader, raw + used, rlen - used) != REDIS_OK)
        st = anylock_op_error(op, ANYLOCK_NOMEM, "redis: out of memory");
    if (st == ANYLOCK_OK && !parsed) {
        /* Another form: hiredis reads what came and what is to come. */
        for (size_t i = 0; i < 9 && st == ANYLOCK_OK; i++) {
            st = conn_recv(op, c, &rs[i], deadline, "the acquire transaction");
            if (st != ANYLOCK_OK)
                *lost = 1;
        }
        for (size_t i = 0; i < 8 && st == ANYLOCK_OK; i++)
            st = reply_ok(op, rs[i], "MULTI");
        if (st == ANYLOCK_OK)
            st = reply_ok(op, rs[8], "EXEC");
        const redisReply *e = st == ANYLOCK_OK ? rs[8] : NULL;
        if (e && (e->type != REDIS_REPLY_ARRAY || e->elements != 7))
            st = unexpected(op, c, "EXEC");
        if (st == ANYLOCK_OK) {
            memset(&x, 0, sizeof x);
            x.set_ok = e->element[0]->type == REDIS_REPLY_STATUS;
            x.tok_ok = e->element[1]->type == REDIS_REPLY_INTEGER;
            x.tok = e->element[1]->integer;
            const redisReply *g = e->element[5], *t = e->element[6];
            x.get_type = g->type == REDIS_REPLY_STRING ? 1 : g->type == REDIS_REPLY_ERROR ? 2 : 0;
            x.get = g->str;
            x.get_len = g->len;
            x.ttl_ok = t->type == REDIS_REPLY_INTEGER;
            x.ttl = t->integer;
        }
    }
    if (st == ANYLOCK_OK) {
        memset(a, 0, sizeof *a);
        a->hint_ms = -1;
        if (x.set_ok && x.tok_ok) {
            a->code = ACQ_TAKEN;
            a->token = (uint64_t)x.tok;
            a->has_token = 1;
        } else if (x.get_type == 1 && x.get_len == op->id_len && !memcmp(x.get, op->id, op->id_len)) {
            a->code = ACQ_MINE;
        } else if (x.get_type == 1 && x.get_len > 0 && x.get[0] == '\001') {
            *fallback = 1;
        } else if (x.get_type == 1) {
            a->code = ACQ_BUSY;
            show_value(a->holder, sizeof a->holder, x.get, x.get_len);
            a->value_len = x.get_len < sizeof a->value ? x.get_len : sizeof a->value;
            memcpy(a->value, x.get, a->value_len);
            a->hint_ms = x.ttl_ok ? (x.ttl < -1 ? 0 : x.ttl) : 0;
        } else if (x.get_type == 2) {
            /* Another type of key at the lock's name: held by someone. */
            a->code = ACQ_BUSY;
            snprintf(a->holder, sizeof a->holder, "a key that is not a string");
            a->hint_ms = x.ttl_ok ? x.ttl : -1;
        } else {
            *fallback = 1; /* gone again since the SET: let the script look */
        }
    }
    free_replies(rs, 9);
    return st;
}

/* This waiter's wake list: the lock's wake prefix and the id. */
typedef struct wakekey {
    char buf[ANYLOCK_PREFIX_MAX + ANYLOCK_NAME_MAX + ANYLOCK_ID_MAX + 16];
    rarg arg;
} wakekey;

static int wake_make(const anylock_op *op, const rkeys *k, wakekey *w)
{
    if (k->len[K_WAKE] + op->id_len > sizeof w->buf)
        return -1;
    memcpy(w->buf, k->k[K_WAKE], k->len[K_WAKE]);
    memcpy(w->buf + k->len[K_WAKE], op->id, op->id_len);
    w->arg.p = w->buf;
    w->arg.n = k->len[K_WAKE] + op->id_len;
    return 0;
}

/* One run of the acquire script; *lost as script_run. */
static anylock_status try_acquire(anylock_op *op, redis_state *s, rconn *c, const rkeys *k, const wakekey *wk,
                                  int64_t deadline, int64_t register_ms, int registered, attempt *a, int *lost,
                                  int64_t *sent_at)
{
    char px[24], permits[24], reg[24];
    const char *mode = op->mode == ANYLOCK_SHARED ? "s" : op->mode == ANYLOCK_SEMAPHORE ? "n" : "x";
    rarg args[17] = {
        key_arg(k, K_LOCK),
        key_arg(k, K_SIGNAL),
        key_arg(k, K_META),
        key_arg(k, K_HOLDERS),
        key_arg(k, K_QUEUE),
        key_arg(k, K_QINFO),
        key_arg(k, K_TOKEN),
        wk->arg,
        {op->id, op->id_len},
        arg_num(px, op->expires_ms),
        {op->meta ? op->meta : "", op->meta ? op->meta_len : 0},
        {mode, 1},
        arg_num(permits, op->mode == ANYLOCK_SEMAPHORE ? op->permits : 0),
        arg_num(reg, register_ms),
        {registered ? "1" : "0", 1},
        {s->signal_expire, s->signal_expire_len},
        {s->turn, s->turn_len},
    };
    redisReply *r;
    *sent_at = anylock_now_ns();
    anylock_status st = script_run(op, s, c, SCRIPT_ACQUIRE, 8, args, 17, deadline, &r, lost);
    if (st != ANYLOCK_OK)
        return st;
    memset(a, 0, sizeof *a);
    a->hint_ms = -1;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 || r->element[0]->type != REDIS_REPLY_INTEGER) {
        freeReplyObject(r);
        return unexpected(op, c, "the acquire script");
    }
    a->code = r->element[0]->integer;
    const redisReply *e1 = r->elements > 1 ? r->element[1] : NULL;
    const redisReply *e2 = r->elements > 2 ? r->element[2] : NULL;
    if (a->code == ACQ_TAKEN && e1 && e1->type == REDIS_REPLY_INTEGER) {
        a->token = (uint64_t)e1->integer;
        a->has_token = 1;
    } else if (a->code == ACQ_MINE) {
        if (e1 && e1->type == REDIS_REPLY_STRING) {
            a->token = parse_u64(e1->str, e1->len);
            a->has_token = 1;
        } else if (e1 && e1->type == REDIS_REPLY_INTEGER) {
            a->token = (uint64_t)e1->integer;
            a->has_token = 1;
        }
    } else if ((a->code == ACQ_BUSY || a->code == ACQ_CONFLICT || a->code == ACQ_WRITER) && e1 &&
               e1->type == REDIS_REPLY_STRING) {
        show_value(a->holder, sizeof a->holder, e1->str, e1->len);
        a->value_len = e1->len < sizeof a->value ? e1->len : sizeof a->value;
        memcpy(a->value, e1->str, a->value_len);
        if (a->code == ACQ_WRITER && e1->len == 0)
            snprintf(a->holder, sizeof a->holder, "nobody, but an exclusive acquirer is waiting");
        if (e2 && e2->type == REDIS_REPLY_INTEGER)
            a->hint_ms = e2->integer;
        if (a->code == ACQ_BUSY && r->elements > 3 && r->element[3]->type == REDIS_REPLY_INTEGER)
            a->nap_ms = r->element[3]->integer;
    } else if (a->code != ACQ_TAKEN || !e1) {
        freeReplyObject(r);
        return unexpected(op, c, "the acquire script");
    }
    if (a->code == ACQ_BUSY && a->hint_ms < 0 && a->hint_ms != -1)
        a->hint_ms = 0; /* PTTL -2: gone since the SET: try again soon */
    freeReplyObject(r);
    return ANYLOCK_OK;
}

static anylock_status conflict(anylock_op *op, const attempt *a)
{
    size_t m = sizeof marker_sem - 1;
    int sem = a->value_len > m && !memcmp(a->value, marker_sem, m);
    if (sem && op->mode == ANYLOCK_SEMAPHORE)
        return anylock_op_error(op, ANYLOCK_MODE_CONFLICT, "lock \"%.64s\" is a semaphore of %.*s permits, not %u",
                                op->name, (int)(a->value_len - m), a->value + m, op->permits);
    return anylock_op_error(op, ANYLOCK_MODE_CONFLICT, "lock \"%.64s\" is held as %s", op->name,
                            sem ? "a semaphore" : "a lock, not a semaphore");
}

/* Blocks in BLPOP on the signal key (and, for a queued waiter, its own
 * wake list) for wait_ms (>= 1).  A value popped from the signal does not
 * matter: the caller tries again either way.  One popped from the wake
 * list is the token of the lock a release handed to this waiter
 * (*handed = 1), or 0: a nudge, for the first waiter to watch over the
 * holder's turn. */
static anylock_status wait_signal(anylock_op *op, redis_state *s, rconn *c, const rkeys *k, const wakekey *wk,
                                  int64_t wait_ms, int *handed, uint64_t *token)
{
    *handed = 0;
    int64_t deadline = io_deadline(op, s, wait_ms);
    if (!deadline)
        return no_time(op, c, "BLPOP");
    char secs[32];
    snprintf(secs, sizeof secs, "%lld.%03lld", (long long)(wait_ms / 1000), (long long)(wait_ms % 1000));
    rarg args[4] = {arg_str("BLPOP"), key_arg(k, K_SIGNAL), wk ? wk->arg : key_arg(k, K_SIGNAL), arg_str(secs)};
    if (!wk)
        args[2] = args[3];
    cmdbuf b;
    cmd_init(&b);
    cmd_add(&b, wk ? 4 : 3, args);
    redisReply *r;
    anylock_status st = conn_roundtrip(op, c, &b, 1, &r, deadline, "BLPOP");
    cmd_free(&b);
    if (st == ANYLOCK_OK && (st = reply_ok(op, r, "BLPOP")) == ANYLOCK_OK && r->type != REDIS_REPLY_NIL &&
        (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
         r->element[1]->type != REDIS_REPLY_STRING))
        st = unexpected(op, c, "BLPOP");
    if (st == ANYLOCK_OK && wk && r->type == REDIS_REPLY_ARRAY && r->element[0]->len == wk->arg.n &&
        !memcmp(r->element[0]->str, wk->arg.p, wk->arg.n)) {
        *token = parse_u64(r->element[1]->str, r->element[1]->len);
        *handed = *token != 0;
    }
    if (r)
        freeReplyObject(r);
    return st;
}

/* A queued waiter that gives up leaves the queue without waiting for the
 * answer: the request is written and the connection closed (the server
 * runs what it received).  A lock handed to it meanwhile goes on to the
 * next waiter at once (not at the end of the claim window).  0 when the
 * request could not be written. */
static int unwait(anylock_op *op, redis_state *s, rconn *c, const rkeys *k, const wakekey *wk)
{
    char keep[ANYLOCK_ERRMSG_MAX];
    memcpy(keep, op->errbuf, sizeof keep);
    int fresh = 0;
    if (!c || c->broken) {
        /* A connection of its own, opened in at most 200 ms. */
        void *nc = NULL;
        if (anylock_pool_get(s->pool, op, anylock_now_ns() + 200 * 1000000LL, &nc) != ANYLOCK_OK)
            nc = NULL;
        c = nc;
        fresh = 1;
    }
    int sent = 0;
    if (c) {
        rarg argv[13] = {arg_str("EVALSHA"),     {s->sha[SCRIPT_UNWAIT], 40}, arg_str("7"),
                         key_arg(k, K_QUEUE),    key_arg(k, K_QINFO),         key_arg(k, K_LOCK),
                         key_arg(k, K_SIGNAL),   key_arg(k, K_META),          key_arg(k, K_TOKEN),
                         wk->arg,                {op->id, op->id_len},        {s->signal_expire, s->signal_expire_len},
                         key_arg(k, K_WAKE)};
        cmdbuf b;
        cmd_init(&b);
        cmd_add(&b, 13, argv);
        sent = conn_send(op, c, &b, anylock_now_ns() + 200 * 1000000LL, "the unwait script") == ANYLOCK_OK;
        cmd_free(&b);
        c->broken = 1;
        if (fresh)
            conn_put(s, c);
    }
    memcpy(op->errbuf, keep, sizeof keep);
    return sent;
}

static void nap_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* Claims a lock a release handed to this waiter (its id in the lock key
 * for HANDOFF_CLAIM_MS) by extending it to op->expires_ms: *held = 1 and
 * *sent_at the lease's start, or *held = 0 when the claim window passed. */
static anylock_status claim(anylock_op *op, redis_state *s, rconn *c, const rkeys *k, int64_t deadline, int *held,
                            int64_t *sent_at, int *lost)
{
    char ms[24];
    rarg args[5] = {key_arg(k, K_LOCK), key_arg(k, K_META), key_arg(k, K_HOLDERS), {op->id, op->id_len},
                    arg_num(ms, op->expires_ms)};
    redisReply *r;
    *held = 0;
    *sent_at = anylock_now_ns();
    anylock_status st = script_run(op, s, c, SCRIPT_EXTEND, 3, args, 5, deadline, &r, lost);
    if (st != ANYLOCK_OK)
        return st;
    if (r->type != REDIS_REPLY_INTEGER) {
        freeReplyObject(r);
        return unexpected(op, c, "the extend script");
    }
    *held = r->integer == 0;
    freeReplyObject(r);
    return ANYLOCK_OK;
}

static anylock_status redis_acquire(anylock_op *op)
{
    redis_state *s = op->state;
    rkeys tmp;
    const rkeys *k;
    anylock_status st = keys_of(op, &tmp, &k);
    if (st != ANYLOCK_OK)
        return st;
    wakekey wk;
    if (wake_make(op, k, &wk)) {
        if (k == &tmp)
            free(tmp.buf);
        return anylock_op_error(op, ANYLOCK_INTERNAL, "redis: the wake list's name is too long");
    }
    rconn *c = NULL;
    int blocking = op->deadline != 0;
    int lost_once = 0;      /* a request was sent and its answer lost: it may have taken the lock */
    int queued = 0;         /* in the waiters' queue: a release may hand it the lock */
    int64_t outage_since = 0;
    attempt a;
    memset(&a, 0, sizeof a);
    snprintf(a.holder, sizeof a.holder, "another owner");
    for (;;) {
        int64_t deadline = io_deadline(op, s, 0);
        if (!deadline) {
            /* During an outage the answer is the connection's error. */
            if (!outage_since)
                st = anylock_op_error(op, ANYLOCK_TIMEOUT, "lock \"%.64s\": timed out; held by %s", op->name,
                                      a.holder);
            break;
        }
        if (!c && (st = conn_get(op, s, deadline, &c)) != ANYLOCK_OK)
            c = NULL;
        int lost = 0;
        int64_t sent_at = 0;
        if (st == ANYLOCK_OK) {
            /* A blocking exclusive acquire that finds the lock taken joins
             * the queue, renewing its place at each try. */
            int64_t reg = 0;
            if (blocking && op->mode == ANYLOCK_EXCLUSIVE && op->expires_ms > 0) {
                int64_t left = anylock_op_ms_left(op);
                reg = (left < s->block_max_ms ? left : s->block_max_ms) + WRITER_MARGIN_MS;
            }
            /* A plain lock with an expiry is tried with a transaction of
             * plain commands; the script decides every other case: modes,
             * no expiry, a marker found, a queued waiter, and the token of
             * a lock adopted after a lost answer. */
            int fallback = 1;
            if (op->mode == ANYLOCK_EXCLUSIVE && op->expires_ms > 0 && !queued) {
                st = try_fast(op, s, c, k, deadline, &a, &lost, &sent_at, &fallback);
                if (st == ANYLOCK_OK && a.code == ACQ_MINE && lost_once)
                    fallback = 1;
                /* Found taken: the script tries again at once and queues. */
                if (st == ANYLOCK_OK && a.code == ACQ_BUSY && reg)
                    fallback = 1;
            }
            if (st == ANYLOCK_OK && fallback && !lost)
                st = try_acquire(op, s, c, k, &wk, deadline, reg, queued, &a, &lost, &sent_at);
            if (st == ANYLOCK_OK && a.code == ACQ_BUSY && reg)
                queued = 1;
        }
        if (lost)
            lost_once = 1;
        if (st == ANYLOCK_OK) {
            outage_since = 0;
            if (a.code == ACQ_TAKEN) {
                op->token = a.token;
                op->granted_at = sent_at;
                queued = 0; /* the script took us out of the queue */
                break;
            }
            if (a.code == ACQ_MINE && (queued || lost_once)) {
                /* A release handed the lock to us while we were between two
                 * waits, or our request whose answer was lost took it:
                 * claim it (extend it to our expiry, from now). */
                int held = 0;
                queued = 0;
                st = claim(op, s, c, k, deadline, &held, &sent_at, &lost);
                if (lost)
                    lost_once = 1;
                if (st == ANYLOCK_OK && held) {
                    op->token = a.has_token ? a.token : 0;
                    op->granted_at = sent_at;
                    break;
                }
                if (st == ANYLOCK_OK)
                    continue; /* the claim window passed: queue again */
                if (st != ANYLOCK_IO && st != ANYLOCK_CONNECT)
                    break;
                conn_put(s, c);
                c = NULL;
                continue;
            }
            if (a.code == ACQ_MINE) {
                st = anylock_op_error(op, ANYLOCK_ALREADY_HELD, "lock \"%.64s\" is already held by this owner id",
                                      op->name);
                break;
            }
            if (a.code == ACQ_CONFLICT) {
                st = conflict(op, &a);
                break;
            }
            if (!blocking) {
                st = anylock_op_error(op, ANYLOCK_BUSY, "lock \"%.64s\" is held by %s", op->name, a.holder);
                break;
            }
            int64_t left = anylock_op_ms_left(op);
            if (queued && a.nap_ms > 0) {
                /* The first waiter during the holder's turn: a release
                 * within it wakes nobody, so look again at its end. */
                nap_ms(a.nap_ms < left ? a.nap_ms : left);
                continue;
            }
            int64_t wait = left;
            if (a.hint_ms >= 0 && a.hint_ms + EXPIRY_MARGIN_MS < wait)
                wait = a.hint_ms + EXPIRY_MARGIN_MS;
            if (wait > s->block_max_ms)
                wait = s->block_max_ms;
            if (left != INT64_MAX && left > 2 * BLPOP_LATE_MS && wait > left - BLPOP_LATE_MS)
                wait = left - BLPOP_LATE_MS;
            if (wait < 1)
                wait = 1;
            int handed = 0;
            uint64_t token = 0;
            st = wait_signal(op, s, c, k, queued ? &wk : NULL, wait, &handed, &token);
            if (st == ANYLOCK_OK && handed) {
                /* A release handed us the lock: claim it. */
                int held = 0;
                queued = 0;
                st = claim(op, s, c, k, io_deadline(op, s, 0) ? io_deadline(op, s, 0) : anylock_now_ns(), &held,
                           &sent_at, &lost);
                if (lost)
                    lost_once = 1;
                if (st == ANYLOCK_OK && held) {
                    op->token = token;
                    op->granted_at = sent_at;
                    break;
                }
                if (st == ANYLOCK_OK)
                    continue; /* the claim window passed: queue again */
                if (st != ANYLOCK_IO && st != ANYLOCK_CONNECT)
                    break;
                conn_put(s, c);
                c = NULL;
                continue;
            }
            if (st == ANYLOCK_OK)
                continue;
            if (st != ANYLOCK_IO && st != ANYLOCK_CONNECT)
                break;
            /* A BLPOP cut short by the deadline or a lost connection: look
             * again on a new connection (a token it may have popped is
             * found again as our id in the lock key). */
            conn_put(s, c);
            c = NULL;
            continue;
        }
        if (st != ANYLOCK_IO && st != ANYLOCK_CONNECT)
            break;
        /* A lost connection or a server that is restarting: a blocking
         * acquire tries again while its time and the outage allow. */
        conn_put(s, c);
        c = NULL;
        if (!blocking)
            break;
        int64_t now = anylock_now_ns();
        if (!outage_since)
            outage_since = now;
        int64_t left = anylock_op_ms_left(op);
        if (left == 0 || now - outage_since >= (int64_t)OUTAGE_MS * 1000000)
            break;
        nap_ms(left < OUTAGE_RETRY_MS ? left : OUTAGE_RETRY_MS);
    }
    /* A lock a release handed us that we do not claim is free again at the
     * end of the claim window, whether or not this reaches the server. */
    if (st != ANYLOCK_OK && queued)
        unwait(op, s, c, k, &wk);
    if (st != ANYLOCK_OK && lost_once) {
        char what[160];
        snprintf(what, sizeof what, "lock \"%.64s\": a request that takes it was sent but its answer was lost, "
                 "so it may be held", op->name);
        st = rewrap(op, ANYLOCK_OUTCOME_UNKNOWN, what);
    }
    conn_put(s, c);
    if (k == &tmp)
        free(tmp.buf);
    return st;
}

/* ---- release, extend, reset ------------------------------------------------------------ */

static anylock_status redis_release(anylock_op *op)
{
    redis_state *s = op->state;
    rkeys tmp;
    const rkeys *k;
    anylock_status st = keys_of(op, &tmp, &k);
    if (st != ANYLOCK_OK)
        return st;
    rarg args[11] = {key_arg(k, K_LOCK),  key_arg(k, K_SIGNAL), key_arg(k, K_META),  key_arg(k, K_HOLDERS),
                     key_arg(k, K_QUEUE), key_arg(k, K_QINFO),  key_arg(k, K_TOKEN), {op->id, op->id_len},
                     {s->signal_expire, s->signal_expire_len}, key_arg(k, K_WAKE), {s->turn, s->turn_len}};
    long long res = -1;
    st = script_int(op, s, SCRIPT_RELEASE, 7, args, 11, &res, NULL);
    if (st == ANYLOCK_OK && res == 1)
        st = anylock_op_error(op, ANYLOCK_NOT_HELD, "lock \"%.64s\" is not held by this owner (expired, reset or "
                              "taken by another)", op->name);
    else if (st == ANYLOCK_OK && res != 0)
        st = anylock_op_error(op, ANYLOCK_PROTOCOL, "redis: unexpected answer %lld from the release script", res);
    if (k == &tmp)
        free(tmp.buf);
    return st;
}

static anylock_status redis_extend(anylock_op *op)
{
    redis_state *s = op->state;
    rkeys tmp;
    const rkeys *k;
    anylock_status st = keys_of(op, &tmp, &k);
    if (st != ANYLOCK_OK)
        return st;
    char ms[24];
    snprintf(ms, sizeof ms, "%lld", (long long)op->expires_ms);
    rarg args[5] = {key_arg(k, K_LOCK), key_arg(k, K_META), key_arg(k, K_HOLDERS), {op->id, op->id_len}, arg_str(ms)};
    long long res = -1;
    int64_t sent_at = 0;
    st = script_int(op, s, SCRIPT_EXTEND, 3, args, 5, &res, &sent_at);
    if (st == ANYLOCK_OK && res == 0)
        op->granted_at = sent_at;
    else if (st == ANYLOCK_OK && res == 1)
        st = anylock_op_error(op, ANYLOCK_NOT_HELD, "lock \"%.64s\" is not held by this owner (expired, reset or "
                              "taken by another)", op->name);
    else if (st == ANYLOCK_OK && res == 2)
        st = anylock_op_error(op, ANYLOCK_NOT_EXPIRABLE, "lock \"%.64s\" was taken without an expiry", op->name);
    else if (st == ANYLOCK_OK)
        st = anylock_op_error(op, ANYLOCK_PROTOCOL, "redis: unexpected answer %lld from the extend script", res);
    if (k == &tmp)
        free(tmp.buf);
    return st;
}

static anylock_status redis_reset(anylock_op *op)
{
    redis_state *s = op->state;
    rkeys tmp;
    const rkeys *k;
    anylock_status st = keys_of(op, &tmp, &k);
    if (st != ANYLOCK_OK)
        return st;
    rarg args[5] = {key_arg(k, K_LOCK), key_arg(k, K_SIGNAL), key_arg(k, K_META), key_arg(k, K_HOLDERS),
                    arg_str(s->signal_expire)};
    long long res;
    st = script_int(op, s, SCRIPT_RESET, 4, args, 5, &res, NULL);
    if (k == &tmp)
        free(tmp.buf);
    return st;
}

/* ---- enumerate and reset_all: SCAN over the prefix -------------------------------------- */

/* Emits the holders an inspect script's reply describes; 1 to stop. */
static int emit_reply(anylock_emitter *em, const char *name, size_t name_len, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3)
        return 0; /* free */
    const redisReply *const *e = (const redisReply *const *)r->element;
    if (e[0]->type != REDIS_REPLY_INTEGER || e[1]->type != REDIS_REPLY_STRING)
        return 0;
    anylock_record rec;
    memset(&rec, 0, sizeof rec);
    rec.name = name;
    rec.name_len = name_len;
    if (e[0]->integer == 0) {
        if (r->elements < 4 || e[2]->type != REDIS_REPLY_INTEGER)
            return 0;
        rec.id = e[1]->str;
        rec.id_len = e[1]->len;
        long long pttl = e[2]->integer;
        if (pttl == -2)
            return 0; /* gone */
        rec.expires_in_ms = pttl < 0 ? -1 : pttl;
        rec.mode = ANYLOCK_EXCLUSIVE;
        if (e[3]->type == REDIS_REPLY_STRING && e[3]->len) {
            rec.meta = e[3]->str;
            rec.meta_len = e[3]->len;
        }
        return anylock_emit(em, &rec);
    }
    int sem = e[1]->len != sizeof marker_shared - 1 || memcmp(e[1]->str, marker_shared, e[1]->len);
    rec.mode = sem ? ANYLOCK_SEMAPHORE : ANYLOCK_SHARED;
    rec.permits = sem && e[2]->type == REDIS_REPLY_STRING ? (unsigned)parse_u64(e[2]->str, e[2]->len) : 0;
    for (size_t i = 3; i + 2 < r->elements; i += 3) {
        if (e[i]->type != REDIS_REPLY_STRING || e[i + 1]->type != REDIS_REPLY_INTEGER)
            continue;
        rec.id = e[i]->str;
        rec.id_len = e[i]->len;
        rec.expires_in_ms = e[i + 1]->integer < 0 ? -1 : e[i + 1]->integer;
        rec.meta = e[i + 2]->type == REDIS_REPLY_STRING && e[i + 2]->len ? e[i + 2]->str : NULL;
        rec.meta_len = rec.meta ? e[i + 2]->len : 0;
        if (anylock_emit(em, &rec))
            return 1;
    }
    return 0;
}

/* The SCAN pattern matching every key under prefix: glob characters in the
 * prefix are escaped, then "*". */
static char *scan_pattern(const char *prefix, size_t prefix_len)
{
    char *p = malloc(prefix_len * 2 + 2);
    if (!p)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < prefix_len; i++) {
        if (strchr("*?[]\\", prefix[i]))
            p[o++] = '\\';
        p[o++] = prefix[i];
    }
    p[o++] = '*';
    p[o] = '\0';
    return p;
}

/* Runs script which for each lock key of one SCAN batch, pipelined, and
 * hands each reply to each().  NOSCRIPT answers are run again one by one
 * once the script is loaded. */
typedef int (*batch_fn)(anylock_op *op, const redisReply *key, const redisReply *reply, void *ud);

static anylock_status run_batch(anylock_op *op, redis_state *s, rconn *c, int64_t deadline, int which,
                                const redisReply *keys, batch_fn each, void *ud, int *stop)
{
    size_t n = keys->elements;
    rkeys *ks = calloc(n ? n : 1, sizeof *ks);
    redisReply **rs = calloc(n ? n : 1, sizeof *rs);
    anylock_status st = ks && rs ? ANYLOCK_OK : anylock_op_error(op, ANYLOCK_NOMEM, "redis: out of memory");
    cmdbuf b;
    cmd_init(&b);
    size_t sent = 0;
    for (size_t i = 0; i < n && st == ANYLOCK_OK; i++) {
        const redisReply *key = keys->element[i];
        if (key->type != REDIS_REPLY_STRING || key->len < op->prefix_len)
            continue;
        if ((st = keys_make(op, s, key->str, key->len, &ks[i])) != ANYLOCK_OK)
            break;
        rarg argv[9] = {arg_str("EVALSHA"), {s->sha[which], 40}, arg_str("4"), key_arg(&ks[i], K_LOCK),
                        key_arg(&ks[i], which == SCRIPT_RESET ? K_SIGNAL : K_META),
                        key_arg(&ks[i], which == SCRIPT_RESET ? K_META : K_HOLDERS),
                        key_arg(&ks[i], K_HOLDERS), arg_str(s->signal_expire)};
        if (which == SCRIPT_RESET)
            cmd_add(&b, 8, argv);
        else {
            argv[2] = arg_str("3");
            cmd_add(&b, 6, argv);
        }
        sent++;
    }
    if (st == ANYLOCK_OK && sent)
        st = conn_send(op, c, &b, deadline, script_names[which]);
    size_t got = 0;
    for (size_t i = 0; i < n && st == ANYLOCK_OK && got < sent; i++) {
        if (!ks[i].buf)
            continue;
        got++;
        st = conn_recv(op, c, &rs[i], deadline, script_names[which]);
    }
    for (size_t i = 0; i < n && st == ANYLOCK_OK && !*stop; i++) {
        if (!rs[i])
            continue;
        if (rs[i]->type == REDIS_REPLY_ERROR && !strncmp(rs[i]->str, "NOSCRIPT", 8)) {
            freeReplyObject(rs[i]);
            rs[i] = NULL;
            int lost;
            rarg args[5] = {key_arg(&ks[i], K_LOCK), key_arg(&ks[i], which == SCRIPT_RESET ? K_SIGNAL : K_META),
                            key_arg(&ks[i], which == SCRIPT_RESET ? K_META : K_HOLDERS), key_arg(&ks[i], K_HOLDERS),
                            arg_str(s->signal_expire)};
            st = script_run(op, s, c, which, which == SCRIPT_RESET ? 4 : 3, args, which == SCRIPT_RESET ? 5 : 3,
                            deadline, &rs[i], &lost);
            if (st != ANYLOCK_OK)
                break;
        }
        if ((st = reply_ok(op, rs[i], script_names[which])) != ANYLOCK_OK)
            break;
        if (each(op, keys->element[i], rs[i], ud))
            *stop = 1;
    }
    for (size_t i = 0; ks && i < n; i++)
        free(ks[i].buf);
    for (size_t i = 0; rs && i < n; i++)
        if (rs[i])
            freeReplyObject(rs[i]);
    free(ks);
    free(rs);
    cmd_free(&b);
    return st;
}

/* Runs script which on every lock key under the prefix.  Only strings are
 * lock keys: with a prefix not ending in ':' anylock's own keys and the
 * signal lists match the pattern too.  SCAN may return a key twice; the
 * core drops repeated records and reset counts only what it deleted. */
static anylock_status scan_prefix(anylock_op *op, int which, batch_fn each, void *ud)
{
    redis_state *s = op->state;
    char *pattern = scan_pattern(op->prefix, op->prefix_len);
    if (!pattern)
        return anylock_op_error(op, ANYLOCK_NOMEM, "redis: out of memory");
    rconn *c = NULL;
    char cursor[32] = "0";
    int stop = 0;
    anylock_status st = ANYLOCK_OK;
    do {
        int64_t deadline = io_deadline(op, s, 0);
        if (!deadline) {
            st = anylock_op_error(op, ANYLOCK_TIMEOUT, "redis: the call's deadline passed during SCAN");
            break;
        }
        if (!c && (st = conn_get(op, s, deadline, &c)) != ANYLOCK_OK) {
            c = NULL;
            break;
        }
        rarg argv[8] = {arg_str("SCAN"),    arg_str(cursor), arg_str("MATCH"), arg_str(pattern),
                        arg_str("COUNT"),   arg_str("500"),  arg_str("TYPE"),  arg_str("string")};
        cmdbuf b;
        cmd_init(&b);
        cmd_add(&b, 8, argv);
        redisReply *r;
        st = conn_roundtrip(op, c, &b, 1, &r, deadline, "SCAN");
        cmd_free(&b);
        if (st == ANYLOCK_OK && (st = reply_ok(op, r, "SCAN")) == ANYLOCK_OK &&
            (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
             r->element[0]->len >= sizeof cursor || r->element[1]->type != REDIS_REPLY_ARRAY))
            st = unexpected(op, c, "SCAN");
        if (st == ANYLOCK_OK) {
            memcpy(cursor, r->element[0]->str, r->element[0]->len + 1);
            st = run_batch(op, s, c, deadline, which, r->element[1], each, ud, &stop);
        }
        if (r)
            freeReplyObject(r);
    } while (st == ANYLOCK_OK && !stop && strcmp(cursor, "0"));
    conn_put(s, c);
    free(pattern);
    return st;
}

static int list_each(anylock_op *op, const redisReply *key, const redisReply *reply, void *ud)
{
    return emit_reply(ud, key->str + op->prefix_len, key->len - op->prefix_len, reply);
}

static anylock_status redis_enumerate(anylock_op *op, anylock_emitter *em)
{
    if (!op->name)
        return scan_prefix(op, SCRIPT_INSPECT, list_each, em);
    redis_state *s = op->state;
    rkeys tmp;
    const rkeys *k;
    anylock_status st = keys_of(op, &tmp, &k);
    if (st != ANYLOCK_OK)
        return st;
    rarg args[3] = {key_arg(k, K_LOCK), key_arg(k, K_META), key_arg(k, K_HOLDERS)};
    redisReply *r;
    int lost;
    st = script_call(op, s, SCRIPT_INSPECT, 3, args, 3, &r, &lost, NULL);
    if (st == ANYLOCK_OK) {
        emit_reply(em, op->name, op->name_len, r);
        freeReplyObject(r);
    }
    if (k == &tmp)
        free(tmp.buf);
    return st;
}

static int reset_each(anylock_op *op, const redisReply *key, const redisReply *reply, void *ud)
{
    (void)op;
    (void)key;
    if (reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
        ++*(size_t *)ud;
    return 0;
}

static anylock_status redis_reset_all(anylock_op *op, size_t *count)
{
    *count = 0;
    return scan_prefix(op, SCRIPT_RESET, reset_each, count);
}

const anylock_backend anylock__redis_backend = {
    .version = ANYLOCK_BACKEND_VERSION,
    .name = "redis",
    .state_size = sizeof(redis_state),
    .flags = ANYLOCK_BACKEND_TOKEN | ANYLOCK_BACKEND_SHARED | ANYLOCK_BACKEND_SEMAPHORE | ANYLOCK_BACKEND_LIST,
    .expiry_resolution_ms = 1,
    .params = redis_params,
    .open = redis_open,
    .close = redis_close,
    .acquire = redis_acquire,
    .release = redis_release,
    .extend = redis_extend,
    .reset = redis_reset,
    .reset_all = redis_reset_all,
    .lock_size = sizeof(rkeys),
    .enumerate = redis_enumerate,
    .forget = redis_forget,
};
