/*
 * redis://[[user]:password@]host[:port][/db] and
 * redis+unix://[[user]:password@]/path/to/redis.sock[?db=N]
 *
 * The lock protocol of python-redis-lock 4.0, wire-compatible with it (see
 * docs/redis.md and ../shared/spec/redis-protocol.md):
 *   lock key    prefix + name: a string holding the owner id
 *   signal key  prefix less one trailing ':' + "-signal:" + name: a list of
 *               at most one element, pushed on release and reset so that one
 *               BLPOP waiter wakes.
 * Acquire is one SET NX [PX] when the lock is free.  When it is taken, the
 * holder's id and PTTL are read (ALREADY_HELD for our own id), and the waiter
 * blocks in BLPOP for at most min(time left, PTTL + a margin, a ceiling), so
 * that a holder that crashed or expired never strands it.  Release, extend
 * and reset are Lua scripts run by EVALSHA, reloaded on NOSCRIPT.
 *
 * Connections live in a small pool: each call takes an idle connection or
 * opens a new one, so a thread blocked in BLPOP never stalls another.  A
 * connection that failed is dropped; the next call reconnects, so a client
 * outlives a server restart.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "builtin.h"

#define DEFAULT_PORT 6379
#define DEFAULT_CONNECT_TIMEOUT_MS 2000
#define DEFAULT_COMMAND_TIMEOUT_MS 5000
#define DEFAULT_SIGNAL_EXPIRE_MS 1000
/* A waiter wakes this long after the holder's expiry, when the key is sure
 * to be gone from the server's point of view. */
#define EXPIRY_MARGIN_MS 10
/* No single BLPOP blocks longer than this: a waiter that missed a signal
 * (pushed while it was between two commands and expired before its BLPOP)
 * looks again after at most this long, and a silently dead connection is
 * noticed. */
#define BLOCK_CEILING_MS 2000
/* A blocking acquire rides out a connection outage (a server restart) for
 * this long, or until its deadline if that comes first. */
#define OUTAGE_MS 10000
/* Idle connections kept per client; more are closed when returned. */
#define POOL_IDLE_MAX 8

typedef struct rconn {
    struct rconn *next;
    redisContext *ctx;
    int broken; /* a command failed in a way that leaves the stream unusable */
} rconn;

enum { SCRIPT_RELEASE, SCRIPT_EXTEND, SCRIPT_RESET, NSCRIPTS };

/* KEYS[1] = lock, KEYS[2] = signal; ARGV[1] = id, ARGV[2] = signal expiry
 * in ms.  1: not the owner.  DEL before LPUSH keeps the list at one
 * element. */
static const char release_lua[] =
    "if redis.call('get', KEYS[1]) ~= ARGV[1] then return 1 end\n"
    "redis.call('del', KEYS[2])\n"
    "redis.call('lpush', KEYS[2], 1)\n"
    "redis.call('pexpire', KEYS[2], ARGV[2])\n"
    "redis.call('del', KEYS[1])\n"
    "return 0\n";

/* KEYS[1] = lock; ARGV[1] = id, ARGV[2] = expiry in ms.  1: not the owner;
 * 2: taken without an expiry (it can never be given one). */
static const char extend_lua[] =
    "if redis.call('get', KEYS[1]) ~= ARGV[1] then return 1 end\n"
    "if redis.call('pttl', KEYS[1]) < 0 then return 2 end\n"
    "redis.call('pexpire', KEYS[1], ARGV[2])\n"
    "return 0\n";

/* KEYS[1] = lock, KEYS[2] = signal; ARGV[1] = signal expiry in ms.
 * Unconditional; returns how many lock keys were deleted (0 or 1). */
static const char reset_lua[] =
    "redis.call('del', KEYS[2])\n"
    "redis.call('lpush', KEYS[2], 1)\n"
    "redis.call('pexpire', KEYS[2], ARGV[1])\n"
    "return redis.call('del', KEYS[1])\n";

static const char *const scripts[NSCRIPTS] = {release_lua, extend_lua, reset_lua};

typedef struct redis_state {
    /* Set at open, read-only afterwards. */
    int is_unix;
    char *host;     /* or the socket path */
    int port;
    char *user;     /* NULL: AUTH with the password alone (or no AUTH) */
    char *password; /* NULL: no AUTH */
    long db;
    int64_t connect_timeout_ms;
    int64_t command_timeout_ms;
    int64_t signal_expire_ms;
    char sha[NSCRIPTS][41];

    /* The pool. */
    pthread_mutex_t mu;
    int mu_init;
    rconn *idle;
    size_t nidle;
} redis_state;

static const char *const redis_params[] = {"connect_timeout", "command_timeout", "signal_expire", "db", NULL};

/* ---- replies and errors ------------------------------------------------- */

static struct timeval tv_ms(int64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    return tv;
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

/* Reports a failed command on conn: the connection is marked broken when
 * the failure was on the stream (timeout, EOF) rather than in a reply. */
static anylock_status conn_failure(anylock_op *op, rconn *conn, const char *what)
{
    conn->broken = 1;
    redisContext *ctx = conn->ctx;
    if (ctx->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK))
        return anylock_op_error(op, ANYLOCK_IO, "redis: no reply to %s within the command timeout", what);
    if (ctx->err == REDIS_ERR_PROTOCOL)
        return anylock_op_error(op, ANYLOCK_PROTOCOL, "redis: %s: %s", what, ctx->errstr);
    if (ctx->err == REDIS_ERR_OOM)
        return anylock_op_error(op, ANYLOCK_NOMEM, "redis: %s: out of memory", what);
    return anylock_op_error(op, ANYLOCK_IO, "redis: connection lost during %s: %s", what,
                            ctx->errstr[0] ? ctx->errstr : "unknown error");
}

/* Checks a reply: NULL (the connection failed) and error replies become a
 * status and message; *out keeps the reply to free. */
static anylock_status check_reply(anylock_op *op, rconn *conn, redisReply *r, const char *what)
{
    if (!r)
        return conn_failure(op, conn, what);
    if (r->type == REDIS_REPLY_ERROR) {
        anylock_status st = error_reply_status(r->str);
        return anylock_op_error(op, st, "redis: %s: %.160s", what, r->str);
    }
    return ANYLOCK_OK;
}

static anylock_status unexpected(anylock_op *op, rconn *conn, const char *what)
{
    /* After an unexpected reply we cannot trust the stream's position. */
    conn->broken = 1;
    return anylock_op_error(op, ANYLOCK_PROTOCOL, "redis: unexpected reply to %s", what);
}

/* ---- connections -------------------------------------------------------- */

static void conn_free(rconn *conn)
{
    if (!conn)
        return;
    if (conn->ctx)
        redisFree(conn->ctx);
    free(conn);
}

/* Opens, authenticates and selects the database. */
static anylock_status conn_open(anylock_op *op, redis_state *s, rconn **out)
{
    *out = NULL;
    rconn *conn = calloc(1, sizeof *conn);
    if (!conn)
        return anylock_op_error(op, ANYLOCK_NOMEM, "redis: out of memory");
    struct timeval ctv = tv_ms(s->connect_timeout_ms);
    conn->ctx = s->is_unix ? redisConnectUnixWithTimeout(s->host, ctv) : redisConnectWithTimeout(s->host, s->port, ctv);
    if (!conn->ctx) {
        conn_free(conn);
        return anylock_op_error(op, ANYLOCK_NOMEM, "redis: out of memory");
    }
    if (conn->ctx->err) {
        anylock_status st;
        if (s->is_unix)
            st = anylock_op_error(op, ANYLOCK_CONNECT, "redis: cannot connect to unix socket %.128s: %s", s->host,
                                  conn->ctx->errstr);
        else
            st = anylock_op_error(op, ANYLOCK_CONNECT, "redis: cannot connect to %.128s:%d: %s", s->host, s->port,
                                  conn->ctx->errstr);
        conn_free(conn);
        return st;
    }
    if (redisSetTimeout(conn->ctx, tv_ms(s->command_timeout_ms)) != REDIS_OK) {
        conn_free(conn);
        return anylock_op_error(op, ANYLOCK_CONNECT, "redis: cannot set the command timeout");
    }
    anylock_status st = ANYLOCK_OK;
    redisReply *r = NULL;
    if (s->password) {
        const char *argv[3] = {"AUTH"};
        size_t lens[3] = {4};
        int argc = 1;
        if (s->user) {
            argv[argc] = s->user;
            lens[argc++] = strlen(s->user);
        }
        argv[argc] = s->password;
        lens[argc++] = strlen(s->password);
        r = redisCommandArgv(conn->ctx, argc, argv, lens);
        if (!r) {
            st = conn_failure(op, conn, "AUTH");
        } else if (r->type == REDIS_REPLY_ERROR) {
            /* The server's message never repeats the password. */
            st = anylock_op_error(op, ANYLOCK_AUTH, "redis: authentication failed: %.160s", r->str);
        }
        if (r)
            freeReplyObject(r);
    }
    if (st == ANYLOCK_OK && s->db) {
        r = redisCommand(conn->ctx, "SELECT %ld", s->db);
        st = check_reply(op, conn, r, "SELECT");
        if (r)
            freeReplyObject(r);
    }
    if (st != ANYLOCK_OK) {
        conn_free(conn);
        return st;
    }
    *out = conn;
    return ANYLOCK_OK;
}

/* Whether an idle connection was closed by the server (a restart, an idle
 * timeout): an idle connection has nothing to read, so readability means
 * EOF or an error.  This costs a system call, not a round trip, and spares
 * the first call after a server restart a spurious ANYLOCK_IO. */
static int conn_stale(const rconn *conn)
{
    struct pollfd pfd = {.fd = conn->ctx->fd, .events = POLLIN};
    return poll(&pfd, 1, 0) != 0;
}

/* An idle connection that is still good, or a new one. */
static anylock_status pool_get(anylock_op *op, redis_state *s, rconn **out)
{
    for (;;) {
        pthread_mutex_lock(&s->mu);
        rconn *conn = s->idle;
        if (conn) {
            s->idle = conn->next;
            s->nidle--;
            conn->next = NULL;
        }
        pthread_mutex_unlock(&s->mu);
        if (!conn)
            return conn_open(op, s, out);
        if (!conn_stale(conn)) {
            *out = conn;
            return ANYLOCK_OK;
        }
        conn_free(conn);
    }
}

/* Returns a connection to the pool, or closes it if it failed or the pool
 * has enough idle ones. */
static void pool_put(redis_state *s, rconn *conn)
{
    if (!conn)
        return;
    if (!conn->broken && !conn->ctx->err) {
        pthread_mutex_lock(&s->mu);
        if (s->nidle < POOL_IDLE_MAX) {
            conn->next = s->idle;
            s->idle = conn;
            s->nidle++;
            conn = NULL;
        }
        pthread_mutex_unlock(&s->mu);
    }
    conn_free(conn);
}

/* ---- scripts ------------------------------------------------------------ */

static anylock_status script_load(anylock_op *op, redis_state *s, rconn *conn, int which, char sha[41])
{
    redisReply *r = redisCommand(conn->ctx, "SCRIPT LOAD %s", scripts[which]);
    anylock_status st = check_reply(op, conn, r, "SCRIPT LOAD");
    if (st == ANYLOCK_OK && (r->type != REDIS_REPLY_STRING || r->len != 40))
        st = unexpected(op, conn, "SCRIPT LOAD");
    if (st == ANYLOCK_OK)
        memcpy(sha, r->str, 41);
    if (r)
        freeReplyObject(r);
    (void)s;
    return st;
}

/* EVALSHA of script `which` with keys and args; an integer reply in *result.
 * A server that lost its script cache (restart, SCRIPT FLUSH) answers
 * NOSCRIPT: the script is loaded again and run once more. */
static anylock_status eval_script(anylock_op *op, redis_state *s, rconn *conn, int which, int nkeys,
                                  const char **keys, const size_t *keylens, int nargs, const char **args,
                                  long long *result)
{
    const char *argv[8];
    size_t lens[8];
    char nk[8];
    snprintf(nk, sizeof nk, "%d", nkeys);
    int argc = 0;
    argv[argc] = "EVALSHA";
    lens[argc++] = 7;
    argv[argc] = s->sha[which];
    lens[argc++] = 40;
    argv[argc] = nk;
    lens[argc++] = strlen(nk);
    for (int i = 0; i < nkeys; i++) {
        argv[argc] = keys[i];
        lens[argc++] = keylens[i];
    }
    for (int i = 0; i < nargs; i++) {
        argv[argc] = args[i];
        lens[argc++] = strlen(args[i]);
    }
    for (int attempt = 0;; attempt++) {
        redisReply *r = redisCommandArgv(conn->ctx, argc, argv, lens);
        if (r && r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "NOSCRIPT", 8) && attempt == 0) {
            freeReplyObject(r);
            char sha[41];
            anylock_status st = script_load(op, s, conn, which, sha);
            if (st != ANYLOCK_OK)
                return st;
            if (strcmp(sha, s->sha[which]))
                return anylock_op_error(op, ANYLOCK_PROTOCOL, "redis: SCRIPT LOAD gave an unexpected digest");
            continue;
        }
        anylock_status st = check_reply(op, conn, r, "EVALSHA");
        if (st == ANYLOCK_OK && r->type != REDIS_REPLY_INTEGER)
            st = unexpected(op, conn, "EVALSHA");
        if (st == ANYLOCK_OK)
            *result = r->integer;
        if (r)
            freeReplyObject(r);
        return st;
    }
}

/* ---- keys --------------------------------------------------------------- */

/* The signal key for a lock name: the prefix less one trailing ':', then
 * "-signal:", then the name ("lock:" gives "lock-signal:<name>"). */
static char *signal_key(const char *prefix, size_t prefix_len, const char *name, size_t name_len, size_t *len)
{
    size_t p = prefix_len;
    if (p && prefix[p - 1] == ':')
        p--;
    static const char mid[] = "-signal:";
    size_t n = p + sizeof mid - 1 + name_len;
    char *k = malloc(n + 1);
    if (!k)
        return NULL;
    memcpy(k, prefix, p);
    memcpy(k + p, mid, sizeof mid - 1);
    memcpy(k + p + sizeof mid - 1, name, name_len);
    k[n] = '\0';
    *len = n;
    return k;
}

/* ---- open / close ------------------------------------------------------- */

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

static anylock_status redis_open(anylock_op *op, const anylock_url *url)
{
    redis_state *s = op->state;
    pthread_mutex_init(&s->mu, NULL);
    s->mu_init = 1;
    s->is_unix = !strcmp(url->scheme, "redis+unix");

    anylock_status st;
    if ((st = anylock_url_param_ms(op, url, "connect_timeout", DEFAULT_CONNECT_TIMEOUT_MS, &s->connect_timeout_ms)) ||
        (st = anylock_url_param_ms(op, url, "command_timeout", DEFAULT_COMMAND_TIMEOUT_MS, &s->command_timeout_ms)) ||
        (st = anylock_url_param_ms(op, url, "signal_expire", DEFAULT_SIGNAL_EXPIRE_MS, &s->signal_expire_ms)))
        return st;
    if (s->connect_timeout_ms <= 0 || s->command_timeout_ms <= 0 || s->signal_expire_ms <= 0)
        return anylock_op_error(op, ANYLOCK_URL_BAD_PARAM,
                                "redis: connect_timeout, command_timeout and signal_expire must be more than 0 s");

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

    /* Connect now, so that a dead server or a bad password is reported by
     * open, and load the scripts (whose digests every connection shares). */
    rconn *conn;
    if ((st = pool_get(op, s, &conn)))
        return st;
    for (int i = 0; i < NSCRIPTS && st == ANYLOCK_OK; i++)
        st = script_load(op, s, conn, i, s->sha[i]);
    pool_put(s, conn);
    return st;
}

static void redis_close(anylock_op *op)
{
    redis_state *s = op->state;
    while (s->idle) {
        rconn *c = s->idle;
        s->idle = c->next;
        conn_free(c);
    }
    if (s->mu_init)
        pthread_mutex_destroy(&s->mu);
    free(s->host);
    free(s->user);
    if (s->password) {
        /* Do not leave the password in freed memory. */
        volatile char *p = s->password;
        while (*p)
            *p++ = '\0';
        free(s->password);
    }
}

/* ---- acquire ------------------------------------------------------------ */

/* The holder's id (copied into owner, "" when the key is gone) and PTTL in
 * ms (-1: no expiry, -2: gone), in one pipelined round trip. */
static anylock_status probe(anylock_op *op, rconn *conn, const char *key, size_t key_len,
                            char owner[ANYLOCK_ID_MAX + 1], long long *pttl)
{
    owner[0] = '\0';
    *pttl = -2;
    redisAppendCommand(conn->ctx, "GET %b", key, key_len);
    redisAppendCommand(conn->ctx, "PTTL %b", key, key_len);
    redisReply *g = NULL, *t = NULL;
    anylock_status st = ANYLOCK_OK;
    if (redisGetReply(conn->ctx, (void **)&g) != REDIS_OK)
        st = conn_failure(op, conn, "GET");
    else if (redisGetReply(conn->ctx, (void **)&t) != REDIS_OK)
        st = conn_failure(op, conn, "PTTL");
    if (st == ANYLOCK_OK && (st = check_reply(op, conn, g, "GET")) == ANYLOCK_OK &&
        (st = check_reply(op, conn, t, "PTTL")) == ANYLOCK_OK) {
        if (t->type != REDIS_REPLY_INTEGER || (g->type != REDIS_REPLY_STRING && g->type != REDIS_REPLY_NIL)) {
            st = unexpected(op, conn, "GET/PTTL");
        } else if (g->type == REDIS_REPLY_STRING) {
            /* A foreign client may store a longer value: keep what fits. */
            size_t n = g->len < ANYLOCK_ID_MAX ? g->len : ANYLOCK_ID_MAX;
            memcpy(owner, g->str, n);
            owner[n] = '\0';
            *pttl = t->integer;
        }
    }
    if (g)
        freeReplyObject(g);
    if (t)
        freeReplyObject(t);
    return st;
}

/* One attempt: SET NX.  *taken = 1 if we got it; otherwise *owner and
 * *pttl describe the holder.  *set_unknown becomes 1 when the SET was sent
 * but its reply never came (it may have been applied). */
static anylock_status try_set(anylock_op *op, rconn *conn, int *taken, char owner[ANYLOCK_ID_MAX + 1],
                              long long *pttl, int *set_unknown)
{
    redisReply *r;
    if (op->expires_ms)
        r = redisCommand(conn->ctx, "SET %b %b NX PX %lld", op->key, op->key_len, op->id, op->id_len,
                         (long long)op->expires_ms);
    else
        r = redisCommand(conn->ctx, "SET %b %b NX", op->key, op->key_len, op->id, op->id_len);
    anylock_status st = check_reply(op, conn, r, "SET");
    if (!r)
        *set_unknown = 1;
    if (st == ANYLOCK_OK) {
        if (r->type == REDIS_REPLY_STATUS)
            *taken = 1;
        else if (r->type == REDIS_REPLY_NIL)
            *taken = 0;
        else
            st = unexpected(op, conn, "SET");
    }
    if (r)
        freeReplyObject(r);
    if (st == ANYLOCK_OK && !*taken)
        st = probe(op, conn, op->key, op->key_len, owner, pttl);
    return st;
}

/* Blocks in BLPOP on the signal key for wait_ms (>= 1).  The popped value
 * does not matter: the caller tries the SET again either way. */
static anylock_status wait_signal(anylock_op *op, redis_state *s, rconn *conn, const char *sig, size_t sig_len,
                                  int64_t wait_ms)
{
    /* The socket must wait longer than the server will block. */
    if (redisSetTimeout(conn->ctx, tv_ms(wait_ms + s->command_timeout_ms)) != REDIS_OK) {
        conn->broken = 1;
        return anylock_op_error(op, ANYLOCK_IO, "redis: cannot set the socket timeout");
    }
    char secs[32];
    snprintf(secs, sizeof secs, "%lld.%03lld", (long long)(wait_ms / 1000), (long long)(wait_ms % 1000));
    redisReply *r = redisCommand(conn->ctx, "BLPOP %b %s", sig, sig_len, secs);
    anylock_status st = check_reply(op, conn, r, "BLPOP");
    if (st == ANYLOCK_OK && r->type != REDIS_REPLY_NIL && r->type != REDIS_REPLY_ARRAY)
        st = unexpected(op, conn, "BLPOP");
    if (r)
        freeReplyObject(r);
    if (st == ANYLOCK_OK && redisSetTimeout(conn->ctx, tv_ms(s->command_timeout_ms)) != REDIS_OK) {
        conn->broken = 1;
        st = anylock_op_error(op, ANYLOCK_IO, "redis: cannot set the socket timeout");
    }
    return st;
}

static int transient(anylock_status st)
{
    return st == ANYLOCK_CONNECT || st == ANYLOCK_IO;
}

static anylock_status redis_acquire(anylock_op *op)
{
    redis_state *s = op->state;
    size_t sig_len;
    char *sig = signal_key(op->prefix, op->prefix_len, op->name, op->name_len, &sig_len);
    if (!sig)
        return anylock_op_error(op, ANYLOCK_NOMEM, "redis: out of memory");
    anylock_status st;
    rconn *conn = NULL;
    int64_t outage_since = 0; /* monotonic ns of the first failure of an outage */
    int set_unknown = 0;      /* a SET failed on the stream: it may have been applied */
    for (;;) {
        int taken = 0;
        char owner[ANYLOCK_ID_MAX + 1];
        long long pttl = -2;
        st = conn ? ANYLOCK_OK : pool_get(op, s, &conn);
        if (st == ANYLOCK_OK) {
            st = try_set(op, conn, &taken, owner, &pttl, &set_unknown);
        }
        if (st == ANYLOCK_OK && taken)
            break;
        if (st == ANYLOCK_OK && owner[0] && !strcmp(owner, op->id) && set_unknown) {
            /* Our earlier SET reached the server although its reply was
             * lost: the lock is ours from that SET. */
            break;
        }
        if (st == ANYLOCK_OK && owner[0] && !strcmp(owner, op->id)) {
            st = anylock_op_error(op, ANYLOCK_ALREADY_HELD, "lock \"%.64s\" is already held by this owner id",
                                  op->name);
            break;
        }
        if (st == ANYLOCK_OK && !owner[0])
            continue; /* freed between the SET and the GET: try again at once */

        int64_t left = anylock_op_ms_left(op);
        if (st != ANYLOCK_OK) {
            /* A lost connection or a server that is restarting: a blocking
             * acquire tries again while its time and the outage allow. */
            if (!transient(st) || op->deadline == 0)
                break;
            pool_put(s, conn);
            conn = NULL;
            int64_t now = anylock_now_ns();
            if (!outage_since)
                outage_since = now;
            if (left == 0 || now - outage_since >= (int64_t)OUTAGE_MS * 1000000)
                break;
            int64_t nap = left < 100 ? left : 100;
            struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)nap * 1000000L};
            while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
            }
            continue;
        }
        outage_since = 0;
        if (op->deadline == 0) {
            st = ANYLOCK_BUSY;
            break;
        }
        if (left == 0) {
            st = anylock_op_error(op, ANYLOCK_TIMEOUT, "lock \"%.64s\": timed out; held by %.64s", op->name, owner);
            break;
        }
        int64_t wait_ms = left;
        if (pttl >= 0 && pttl + EXPIRY_MARGIN_MS < wait_ms)
            wait_ms = pttl + EXPIRY_MARGIN_MS;
        if (wait_ms > BLOCK_CEILING_MS)
            wait_ms = BLOCK_CEILING_MS;
        if (wait_ms < 1)
            wait_ms = 1;
        st = wait_signal(op, s, conn, sig, sig_len, wait_ms);
        if (st != ANYLOCK_OK && !transient(st))
            break;
        /* On a transient failure the next round reconnects and retries. */
        if (st != ANYLOCK_OK) {
            pool_put(s, conn);
            conn = NULL;
            outage_since = anylock_now_ns();
            if (anylock_op_ms_left(op) == 0)
                break;
        }
    }
    pool_put(s, conn);
    free(sig);
    return st;
}

/* ---- release, extend, inspect, reset ------------------------------------ */

static anylock_status redis_release(anylock_op *op)
{
    redis_state *s = op->state;
    size_t sig_len;
    char *sig = signal_key(op->prefix, op->prefix_len, op->name, op->name_len, &sig_len);
    if (!sig)
        return anylock_op_error(op, ANYLOCK_NOMEM, "redis: out of memory");
    rconn *conn;
    anylock_status st = pool_get(op, s, &conn);
    if (st == ANYLOCK_OK) {
        char id[ANYLOCK_ID_MAX + 1], sexp[24];
        memcpy(id, op->id, op->id_len);
        id[op->id_len] = '\0';
        snprintf(sexp, sizeof sexp, "%lld", (long long)s->signal_expire_ms);
        const char *keys[2] = {op->key, sig};
        size_t lens[2] = {op->key_len, sig_len};
        const char *args[2] = {id, sexp};
        long long res = -1;
        st = eval_script(op, s, conn, SCRIPT_RELEASE, 2, keys, lens, 2, args, &res);
        if (st == ANYLOCK_OK && res == 1)
            st = anylock_op_error(op, ANYLOCK_NOT_HELD, "lock \"%.64s\" is not held by this owner (expired, reset or "
                                  "taken by another)", op->name);
        else if (st == ANYLOCK_OK && res != 0)
            st = unexpected(op, conn, "the release script");
        pool_put(s, conn);
    }
    free(sig);
    return st;
}

static anylock_status redis_extend(anylock_op *op)
{
    redis_state *s = op->state;
    rconn *conn;
    anylock_status st = pool_get(op, s, &conn);
    if (st != ANYLOCK_OK)
        return st;
    char id[ANYLOCK_ID_MAX + 1], ms[24];
    memcpy(id, op->id, op->id_len);
    id[op->id_len] = '\0';
    snprintf(ms, sizeof ms, "%lld", (long long)op->expires_ms);
    const char *keys[1] = {op->key};
    size_t lens[1] = {op->key_len};
    const char *args[2] = {id, ms};
    long long res = -1;
    st = eval_script(op, s, conn, SCRIPT_EXTEND, 1, keys, lens, 2, args, &res);
    if (st == ANYLOCK_OK && res == 1)
        st = anylock_op_error(op, ANYLOCK_NOT_HELD, "lock \"%.64s\" is not held by this owner (expired, reset or "
                              "taken by another)", op->name);
    else if (st == ANYLOCK_OK && res == 2)
        st = anylock_op_error(op, ANYLOCK_NOT_EXPIRABLE, "lock \"%.64s\" was taken without an expiry", op->name);
    else if (st == ANYLOCK_OK && res != 0)
        st = unexpected(op, conn, "the extend script");
    pool_put(s, conn);
    return st;
}

static void fill_info(anylock_info *info, const char *owner, long long pttl)
{
    info->held = owner[0] != '\0';
    memcpy(info->owner, owner, strlen(owner) + 1);
    info->expires_in = pttl >= 0 ? (double)pttl / 1000.0 : pttl == -1 ? ANYLOCK_FOREVER : 0;
}

static anylock_status redis_inspect(anylock_op *op, anylock_info *info)
{
    redis_state *s = op->state;
    rconn *conn;
    anylock_status st = pool_get(op, s, &conn);
    if (st != ANYLOCK_OK)
        return st;
    char owner[ANYLOCK_ID_MAX + 1];
    long long pttl;
    st = probe(op, conn, op->key, op->key_len, owner, &pttl);
    if (st == ANYLOCK_OK)
        fill_info(info, owner, pttl);
    pool_put(s, conn);
    return st;
}

/* The reset effect on one lock key: force-free it and wake one waiter.
 * *deleted = 1 if the lock key existed. */
static anylock_status reset_key(anylock_op *op, redis_state *s, rconn *conn, const char *key, size_t key_len,
                                const char *name, size_t name_len, int *deleted)
{
    size_t sig_len;
    char *sig = signal_key(op->prefix, op->prefix_len, name, name_len, &sig_len);
    if (!sig)
        return anylock_op_error(op, ANYLOCK_NOMEM, "redis: out of memory");
    char sexp[24];
    snprintf(sexp, sizeof sexp, "%lld", (long long)s->signal_expire_ms);
    const char *keys[2] = {key, sig};
    size_t lens[2] = {key_len, sig_len};
    const char *args[1] = {sexp};
    long long res = 0;
    anylock_status st = eval_script(op, s, conn, SCRIPT_RESET, 2, keys, lens, 1, args, &res);
    *deleted = res > 0;
    free(sig);
    return st;
}

static anylock_status redis_reset(anylock_op *op)
{
    redis_state *s = op->state;
    rconn *conn;
    anylock_status st = pool_get(op, s, &conn);
    if (st != ANYLOCK_OK)
        return st;
    int deleted;
    st = reset_key(op, s, conn, op->key, op->key_len, op->name, op->name_len, &deleted);
    pool_put(s, conn);
    return st;
}

/* ---- reset_all, list: SCAN over the prefix -------------------------------- */

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

/* Calls each(key) for every string key under the prefix.  Only strings are
 * lock keys: with a prefix not ending in ':' the signal lists match the
 * pattern too.  SCAN may return a key twice; callers tolerate that. */
typedef anylock_status (*scan_fn)(anylock_op *op, redis_state *s, rconn *conn, const redisReply *key, void *ud);

static anylock_status scan_prefix(anylock_op *op, redis_state *s, rconn *conn, scan_fn each, void *ud, int *stop)
{
    char *pattern = scan_pattern(op->prefix, op->prefix_len);
    if (!pattern)
        return anylock_op_error(op, ANYLOCK_NOMEM, "redis: out of memory");
    char cursor[32] = "0";
    anylock_status st = ANYLOCK_OK;
    *stop = 0;
    do {
        redisReply *r = redisCommand(conn->ctx, "SCAN %s MATCH %s COUNT 500 TYPE string", cursor, pattern);
        st = check_reply(op, conn, r, "SCAN");
        if (st == ANYLOCK_OK &&
            (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
             r->element[0]->len >= sizeof cursor || r->element[1]->type != REDIS_REPLY_ARRAY))
            st = unexpected(op, conn, "SCAN");
        if (st == ANYLOCK_OK) {
            memcpy(cursor, r->element[0]->str, r->element[0]->len + 1);
            const redisReply *keys = r->element[1];
            for (size_t i = 0; i < keys->elements && st == ANYLOCK_OK && !*stop; i++) {
                const redisReply *k = keys->element[i];
                if (k->type != REDIS_REPLY_STRING || k->len < op->prefix_len)
                    continue;
                st = each(op, s, conn, k, ud);
                if (st == ANYLOCK_OK && ud && *(int *)ud < 0)
                    *stop = 1;
            }
        }
        if (r)
            freeReplyObject(r);
    } while (st == ANYLOCK_OK && !*stop && strcmp(cursor, "0"));
    free(pattern);
    return st;
}

typedef struct reset_all_ctx {
    int stop; /* must be first: scan_prefix reads it */
    size_t count;
} reset_all_ctx;

static anylock_status reset_each(anylock_op *op, redis_state *s, rconn *conn, const redisReply *k, void *ud)
{
    reset_all_ctx *ctx = ud;
    int deleted = 0;
    anylock_status st = reset_key(op, s, conn, k->str, k->len, k->str + op->prefix_len, k->len - op->prefix_len,
                                  &deleted);
    ctx->count += (size_t)deleted;
    return st;
}

static anylock_status redis_reset_all(anylock_op *op, size_t *count)
{
    redis_state *s = op->state;
    *count = 0;
    rconn *conn;
    anylock_status st = pool_get(op, s, &conn);
    if (st != ANYLOCK_OK)
        return st;
    reset_all_ctx ctx = {0, 0};
    int stop;
    st = scan_prefix(op, s, conn, reset_each, &ctx, &stop);
    *count = ctx.count;
    pool_put(s, conn);
    return st;
}

typedef struct list_ctx {
    int stop; /* must be first: scan_prefix reads it (< 0: stop) */
    anylock_list_fn fn;
    void *userdata;
} list_ctx;

static anylock_status list_each(anylock_op *op, redis_state *s, rconn *conn, const redisReply *k, void *ud)
{
    (void)s;
    list_ctx *ctx = ud;
    char owner[ANYLOCK_ID_MAX + 1];
    long long pttl;
    anylock_status st = probe(op, conn, k->str, k->len, owner, &pttl);
    if (st != ANYLOCK_OK || !owner[0])
        return st; /* gone since SCAN saw it */
    char *name = strndup(k->str + op->prefix_len, k->len - op->prefix_len);
    if (!name)
        return anylock_op_error(op, ANYLOCK_NOMEM, "redis: out of memory");
    anylock_info info;
    memset(&info, 0, sizeof info);
    fill_info(&info, owner, pttl);
    info.name = name;
    /* fn may call the library: it runs while this connection is taken out
     * of the pool, so it cannot be handed to fn's calls. */
    if (ctx->fn(&info, ctx->userdata))
        ctx->stop = -1;
    free(name);
    return ANYLOCK_OK;
}

static anylock_status redis_list(anylock_op *op, anylock_list_fn fn, void *userdata)
{
    redis_state *s = op->state;
    rconn *conn;
    anylock_status st = pool_get(op, s, &conn);
    if (st != ANYLOCK_OK)
        return st;
    list_ctx ctx = {0, fn, userdata};
    int stop;
    st = scan_prefix(op, s, conn, list_each, &ctx, &stop);
    pool_put(s, conn);
    return st;
}

const anylock_backend anylock__redis_backend = {
    .version = 1, /* TODO(v2 port) */
    .name = "redis",
    .state_size = sizeof(redis_state),
    .flags = 0,
    .expiry_resolution_ms = 1,
    .params = redis_params,
    .open = redis_open,
    .close = redis_close,
    .acquire = redis_acquire,
    .release = redis_release,
    .extend = redis_extend,
    .inspect = redis_inspect,
    .reset = redis_reset,
    .reset_all = redis_reset_all,
    .list = redis_list,
};
