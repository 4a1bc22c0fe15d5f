/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * memcached://host[:port][,host[:port]...]: locks on memcached through
 * libmemcached.
 *
 * A lock is one item: its value is the owner id, its flags hold the absolute
 * expiry (Unix seconds on the holder's clock, 0 for a lock that never
 * expires) so that inspect can report the time left, which memcached itself
 * cannot tell.  Acquire is `add` (atomic create-if-absent); release and
 * extend are gets + compare the whole value with the id + `cas`, so only the
 * owner can change the item; release's cas sets an expiration of 2592001 s,
 * which both protocols read as an absolute date in 1970, so the item expires
 * at once (libmemcached has no compare-and-delete).  Reset is an
 * unconditional delete.  memcached cannot notify, so waiters poll with
 * capped, jittered exponential backoff.
 *
 * The holder's metadata (host, pid, since, label) is a second item, the lock
 * key followed by "~m", with the lock's expiry, on the lock's server.  It is
 * written after the add succeeded (so a contender never overwrites it) and
 * deleted before the release's cas; over the text protocol both go out with
 * `noreply`, so they cost no round trip.
 *
 * Shared locks and semaphores keep a group of holders in the lock's item,
 * each holder alive while its own member item is there (see "groups"
 * below); the exclusive protocol is unchanged by them.
 *
 * Every round trip is bounded: by the call's own deadline (the wait deadline
 * for acquire, the lease's end for a renewal, command_timeout otherwise) and
 * at open by connect_timeout for the whole open.  A request that changes the
 * store and whose answer is lost answers ANYLOCK_OUTCOME_UNKNOWN; one that
 * could not have changed anything answers ANYLOCK_IO.
 *
 * Several servers are spread by libmemcached's consistent (ketama) hashing.
 * Failed servers are never ejected: ejection would move a key to another
 * server, where a second owner could take a lock that is still held.
 *
 * libmemcached's memcached_st is not thread-safe, so the client keeps an
 * anylock_pool of clones of one configured master; a call borrows a
 * connection for its round trips only, never while it sleeps between polls.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libmemcached/memcached.h>

#include "builtin.h"

/* memcached's longest key. */
#define MC_KEY_MAX 250
/* The byte that marks a mapped key; raw keys never contain it. */
#define MC_MARK '~'
/* What follows a lock's key in the key of its metadata item. */
#define MC_META_SUFFIX "~m"
#define MC_META_SUFFIX_LEN 2
/* ... of its waiting-writer marker, and what ends a member item's key. */
#define MC_WAIT_SUFFIX "~w"
#define MC_MEMBER_SUFFIX "~h"
/* memcached reads expirations above 30 days as absolute Unix times. */
#define MC_RELATIVE_MAX 2592000
/* An absolute time in January 1970: the item expires at once. */
#define MC_EXPIRE_NOW 2592001
/* Idle connections kept per client; more are made on demand and freed. */
#define MC_POOL_IDLE_MAX 32
/* Retries of gets + cas at once when the item changed between the two (the
 * owner's other handles may extend it, and a group's members come and go);
 * later ones pause first, a jittered backoff up to MC_CAS_PAUSE_MAX_MS, for
 * as long as the call's deadline allows. */
#define MC_CAS_RETRIES 8
#define MC_CAS_PAUSE_MAX_MS 5
/* The defaults of the URL parameters, in milliseconds. */
#define MC_DEFAULT_CONNECT_MS 2000
#define MC_DEFAULT_COMMAND_MS 2000
#define MC_DEFAULT_POLL_MAX_MS 2
/* The first pause of a waiting acquire (or poll_max if lower). */
#define MC_POLL_FIRST_MS 2
/* Bounded barging: a handle that released a lock while someone waited and
 * took it straight back this many times in a row lets a waiter in first
 * (see mc_acquire). */
#define MC_BARGE_MAX 8

/* Per-lock state. */
typedef struct mc_lock {
    unsigned streak;     /* releases in a row that saw a waiter, each followed at once by an acquire */
    int64_t released_at; /* monotonic ns, the last release */
} mc_lock;

typedef struct mc_client {
    pthread_mutex_t mu; /* guards master while a clone is made */
    int mu_init;
    memcached_st *master; /* configured, never used for I/O itself */
    anylock_pool *pool;   /* of clones of master */
    int binary;
    int64_t connect_ms, command_ms, poll_max_ms;
    char servers[200]; /* for messages */
} mc_client;

/* ---- keys ---- */

typedef struct mc_keys {
    char lock[MC_KEY_MAX + 1];
    size_t lock_len;
    char meta[MC_KEY_MAX + 1];
    size_t meta_len;
    char wait[MC_KEY_MAX + 1]; /* the waiting-writer marker (shared locks) */
    size_t wait_len;
} mc_keys;

/* Graphic ASCII other than the marker: what a raw key may contain. */
static int raw_byte(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != MC_MARK;
}

static int all_raw(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!raw_byte((unsigned char)s[i]))
            return 0;
    return 1;
}

/* P~H for op->key (see make_keys), in out; at most 128 + 1 + 64 bytes. */
static size_t mapped_form(const anylock_op *op, char *out)
{
    size_t n = 0;
    if (all_raw(op->prefix, op->prefix_len) && op->prefix_len <= ANYLOCK_PREFIX_MAX) {
        memcpy(out, op->prefix, op->prefix_len);
        n = op->prefix_len;
    }
    out[n++] = MC_MARK;
    unsigned char digest[32];
    anylock_sha256(op->key, op->key_len, digest);
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[n++] = hex[digest[i] >> 4];
        out[n++] = hex[digest[i] & 15];
    }
    out[n] = '\0';
    return n;
}

/* P~H followed by suffix, for the items that go with a lock: P is the
 * lock's memcached key up to its first '~' (at most 128 bytes, so that an
 * operator still sees whose item it is), H the 64 hex digits of the SHA-256
 * of data.  It depends on nothing but the lock's memcached key and data. */
static size_t derived_key(const char *lock, size_t lock_len, const void *data, size_t len, const char *suffix,
                          char *out)
{
    size_t n = 0;
    while (n < lock_len && n < ANYLOCK_PREFIX_MAX && lock[n] != MC_MARK)
        n++;
    memcpy(out, lock, n);
    out[n++] = MC_MARK;
    unsigned char digest[32];
    anylock_sha256(data, len, digest);
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[n++] = hex[digest[i] >> 4];
        out[n++] = hex[digest[i] & 15];
    }
    memcpy(out + n, suffix, MC_META_SUFFIX_LEN + 1);
    return n + MC_META_SUFFIX_LEN;
}

/* The lock's key followed by suffix, or P~H followed by suffix (H: the
 * SHA-256 of the lock's key) when the lock's key has no room for it. */
static size_t beside_key(const mc_keys *k, const char *suffix, char *out)
{
    if (k->lock_len + MC_META_SUFFIX_LEN > MC_KEY_MAX)
        return derived_key(k->lock, k->lock_len, k->lock, k->lock_len, suffix, out);
    memcpy(out, k->lock, k->lock_len);
    memcpy(out + k->lock_len, suffix, MC_META_SUFFIX_LEN + 1);
    return k->lock_len + MC_META_SUFFIX_LEN;
}

/*
 * The memcached keys for op->key (prefix + name).  The lock's key: a key of
 * 1 to 250 graphic ASCII bytes without '~' is used as it is; any other key
 * becomes P~H: H is the 64 lower-case hex digits of the SHA-256 of the whole
 * key, and P is the prefix when the prefix itself is graphic ASCII without
 * '~' (so that an operator still sees whose key it is), else empty.  Raw
 * keys never contain '~' and every mapped key has exactly one, followed by
 * 64 hex digits to its end, so the two forms cannot meet; two mapped keys
 * meet only if their SHA-256 does.
 *
 * The items that go with a lock are named from the lock's memcached key
 * alone: its metadata is the lock's key followed by "~m" (beside_key), its
 * waiting-writer marker the same with "~w", a share holder's member item
 * P~H~h with H the SHA-256 of the lock's key, a newline and the holder's id
 * (member_key).  They end in "~m", "~w" and "~h", so they are never a lock's
 * key nor each other's, and they are distinct for distinct lock keys (and
 * ids).  The rule depends on nothing but the key, so every process and both
 * protocols agree on it.
 */
static void make_keys(const anylock_op *op, mc_keys *k)
{
    if (op->key_len <= MC_KEY_MAX && all_raw(op->key, op->key_len)) {
        memcpy(k->lock, op->key, op->key_len);
        k->lock[op->key_len] = '\0';
        k->lock_len = op->key_len;
    } else {
        k->lock_len = mapped_form(op, k->lock);
    }
    k->meta_len = beside_key(k, MC_META_SUFFIX, k->meta);
    k->wait_len = beside_key(k, MC_WAIT_SUFFIX, k->wait);
}

/* ---- the connection pool ---- */

static anylock_status conn_open(void *ctx, anylock_op *op, int64_t deadline, void **conn)
{
    (void)deadline; /* a clone connects on its first request, bounded by that request's deadline */
    mc_client *mc = ctx;
    pthread_mutex_lock(&mc->mu);
    memcached_st *m = memcached_clone(NULL, mc->master);
    pthread_mutex_unlock(&mc->mu);
    if (!m)
        return anylock_op_error(op, ANYLOCK_NOMEM, "memcached: cannot make a connection handle");
    *conn = m;
    return ANYLOCK_OK;
}

static void conn_close(void *ctx, void *conn)
{
    (void)ctx;
    memcached_st *m = conn;
    /* memcached_free says "quit" on a connection still open; bound it in
     * case its socket buffer is full. */
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, 1);
    memcached_free(m);
}

static const anylock_pool_methods pool_methods = {conn_open, conn_close, NULL};

/* One call's connection and its deadline. */
typedef struct mc_call {
    anylock_op *op;
    mc_client *mc;
    memcached_st *m;
    int64_t deadline; /* every round trip of this call ends by then */
    int broken;       /* give the connection back closed */
    int late;         /* the deadline passed before a request could go out */
    int cut;          /* the deadline is the caller's, sooner than command_timeout */
    int64_t armed_ms; /* the bound of the last round trip */
} mc_call;

static anylock_status call_begin(anylock_op *op, mc_call *c, int64_t deadline)
{
    memset(c, 0, sizeof *c);
    c->op = op;
    c->mc = op->state;
    c->deadline = deadline;
    c->cut = op->deadline != 0 && op->deadline != ANYLOCK_DEADLINE_NEVER && deadline == op->deadline;
    void *conn = NULL;
    anylock_status st = anylock_pool_get(c->mc->pool, op, deadline, &conn);
    c->m = conn;
    return st;
}

static void call_end(mc_call *c)
{
    if (c->m)
        anylock_pool_put(c->mc->pool, c->m, c->broken);
    c->m = NULL;
}

/* Sets the connection's poll and connect timeouts to what is left of the
 * call's deadline (libmemcached reads them at each poll); 0 if nothing is
 * left, and then nothing may be sent. */
static int arm(mc_call *c)
{
    int64_t ms = anylock_ms_until(c->deadline);
    if (ms <= 0) {
        c->late = 1;
        return 0;
    }
    if (ms > INT32_MAX)
        ms = INT32_MAX;
    c->armed_ms = ms;
    int64_t connect = ms < c->mc->connect_ms ? ms : c->mc->connect_ms;
    memcached_behavior_set(c->m, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, (uint64_t)ms);
    memcached_behavior_set(c->m, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, (uint64_t)connect);
    return 1;
}

/* Whether the connection to key's server is open (a request on it then
 * needs no connect, so a failure after sending it is a lost answer). */
static int connected(mc_call *c, const char *key, size_t key_len)
{
    memcached_return_t rc;
    const memcached_instance_st *inst = memcached_server_by_key(c->m, key, key_len, &rc);
    return inst && memcached_server_srcport(inst) != 0;
}

/* ---- errors ---- */

/* memcached out of memory: text SERVER_ERROR out of memory ("SERVER FAILED
 * TO ALLOCATE OBJECT"), or the binary protocol's ENOMEM, which libmemcached
 * reports with its own allocation-failure code but no error of its own. */
static int server_oom(memcached_st *m, memcached_return_t rc)
{
    return rc == MEMCACHED_SERVER_MEMORY_ALLOCATION_FAILURE ||
           (rc == MEMCACHED_MEMORY_ALLOCATION_FAILURE && memcached_last_error(m) == MEMCACHED_SUCCESS);
}

static anylock_status status_for(memcached_return_t rc)
{
    switch (rc) {
    case MEMCACHED_HOST_LOOKUP_FAILURE:
    case MEMCACHED_CONNECTION_FAILURE:
    case MEMCACHED_CONNECTION_BIND_FAILURE:
    case MEMCACHED_NO_SERVERS:
    case MEMCACHED_SERVER_MARKED_DEAD:
    case MEMCACHED_SERVER_TEMPORARILY_DISABLED:
    case MEMCACHED_INVALID_HOST_PROTOCOL:
        return ANYLOCK_CONNECT;
    case MEMCACHED_WRITE_FAILURE:
    case MEMCACHED_READ_FAILURE:
    case MEMCACHED_UNKNOWN_READ_FAILURE:
    case MEMCACHED_PARTIAL_READ:
    case MEMCACHED_TIMEOUT:
    case MEMCACHED_ERRNO:
    case MEMCACHED_IN_PROGRESS:
        return ANYLOCK_IO;
    case MEMCACHED_PROTOCOL_ERROR:
    case MEMCACHED_CLIENT_ERROR:
    case MEMCACHED_ERROR:
    case MEMCACHED_PARSE_ERROR:
    case MEMCACHED_BAD_KEY_PROVIDED:
    case MEMCACHED_KEY_TOO_BIG:
        return ANYLOCK_PROTOCOL;
    case MEMCACHED_AUTH_PROBLEM:
    case MEMCACHED_AUTH_FAILURE:
    case MEMCACHED_AUTH_CONTINUE:
        return ANYLOCK_AUTH;
    case MEMCACHED_MEMORY_ALLOCATION_FAILURE:
        return ANYLOCK_NOMEM;
    default:
        return ANYLOCK_STORE;
    }
}

/* The status for rc on m.  Some calls answer a summary code
 * (MEMCACHED_FAILURE, MEMCACHED_SOME_ERRORS) for a broken socket: the
 * handle's last error then says what really happened. */
static anylock_status classify(memcached_st *m, memcached_return_t rc)
{
    if (server_oom(m, rc))
        return ANYLOCK_STORE;
    anylock_status st = status_for(rc);
    memcached_return_t last = memcached_last_error(m);
    if (st == ANYLOCK_STORE && last != MEMCACHED_SUCCESS && status_for(last) != ANYLOCK_STORE)
        st = status_for(last);
    return st;
}

/* Whether the connection should be dropped after rc. */
static int is_broken(memcached_st *m, memcached_return_t rc)
{
    anylock_status st = classify(m, rc);
    return st == ANYLOCK_CONNECT || st == ANYLOCK_IO || st == ANYLOCK_PROTOCOL || st == ANYLOCK_NOMEM;
}

/* libmemcached's message without its handle address ("(0x55...) ") and its
 * source location (" -> ./src/libmemcached/io.cc:145"), which tell a user
 * nothing. */
static void tidy_detail(const char *in, char *out, size_t size)
{
    if (in[0] == '(' && in[1] == '0' && in[2] == 'x') {
        const char *close = strstr(in, ") ");
        if (close)
            in = close + 2;
    }
    snprintf(out, size, "%s", in);
    char *arrow = strstr(out, " -> ");
    if (arrow)
        *arrow = '\0';
    /* The host is in our own message already. */
    char *host = strstr(out, "host: ");
    if (host)
        *host = '\0';
    size_t n = strlen(out);
    while (n && (out[n - 1] == ' ' || out[n - 1] == ','))
        out[--n] = '\0';
}

/* What went wrong, in words: libmemcached's own error when it recorded one
 * (it does not for an answer the server gave, whose last error stays
 * "SUCCESS"), else the text for rc. */
static void detail_for(const mc_call *c, memcached_return_t rc, char *out, size_t size)
{
    memcached_st *m = c->m;
    if (rc == MEMCACHED_TIMEOUT || memcached_last_error(m) == MEMCACHED_TIMEOUT) {
        snprintf(out, size, "no answer within %lld ms", (long long)c->armed_ms);
        return;
    }
    if (server_oom(m, rc)) {
        snprintf(out, size, "the server is out of memory (SERVER_ERROR out of memory storing object: it runs "
                            "with -M, or the memory for items this size is used up)");
        return;
    }
    const char *raw = memcached_last_error(m) != MEMCACHED_SUCCESS ? memcached_last_error_message(m) : NULL;
    tidy_detail(raw && *raw ? raw : memcached_strerror(m, rc), out, size);
}

/* A failure of c's request `what`; st is its status (0: from rc). */
static anylock_status fail_as(mc_call *c, anylock_status st, memcached_return_t rc, const char *what,
                              const char *extra)
{
    anylock_op *op = c->op;
    char detail[ANYLOCK_ERRMSG_MAX];
    detail_for(c, rc, detail, sizeof detail);
    if (!st)
        st = classify(c->m, rc);
    if (is_broken(c->m, rc))
        c->broken = 1;
    if (!op->name)
        return anylock_op_error(op, st, "memcached %s: %s: %s%s", c->mc->servers, what, detail, extra);
    return anylock_op_error(op, st, "memcached %s: %s of lock \"%.48s\": %s%s", c->mc->servers, what, op->name,
                            detail, extra);
}

static anylock_status fail(mc_call *c, memcached_return_t rc, const char *what)
{
    return fail_as(c, 0, rc, what, "");
}

/* A failure of a request that changes the store, sent on an open
 * connection: when the request went out and its answer did not come back
 * (timeout, connection lost, garbled reply), the server may have done it. */
static anylock_status fail_sent(mc_call *c, memcached_return_t rc, const char *what)
{
    anylock_status st = classify(c->m, rc);
    if ((st == ANYLOCK_IO || st == ANYLOCK_CONNECT || st == ANYLOCK_PROTOCOL) && rc != MEMCACHED_WRITE_FAILURE)
        return fail_as(c, ANYLOCK_OUTCOME_UNKNOWN, rc, what,
                       " (the request was sent and its answer lost: it may or may not have been done)");
    return fail(c, rc, what);
}

/* Whether the last failure was the server's end of the connection being
 * gone (reset, or closed before the answer), rather than a timeout. */
static int peer_closed(memcached_st *m)
{
    int e = memcached_last_error_errno(m);
    return e == ECONNRESET || e == EPIPE;
}

/* The call's deadline passed before a request could be sent. */
static anylock_status out_of_time(mc_call *c, const char *what)
{
    anylock_op *op = c->op;
    if (op->name)
        return anylock_op_error(op, ANYLOCK_TIMEOUT, "memcached %s: %s of lock \"%.48s\": the deadline passed "
                                "before it could be sent", c->mc->servers, what, op->name);
    return anylock_op_error(op, ANYLOCK_TIMEOUT, "memcached %s: %s: the deadline passed before it could be sent",
                            c->mc->servers, what);
}

/* A failure of a read (nothing sent changes the store).  A read that the
 * caller's deadline cut short (the end of a wait, of a lease) is that
 * deadline passing, not the store failing: TIMEOUT. */
static anylock_status read_fail(mc_call *c, memcached_return_t rc, const char *what)
{
    if (c->late)
        return out_of_time(c, what);
    if (c->cut && (rc == MEMCACHED_TIMEOUT || memcached_last_error(c->m) == MEMCACHED_TIMEOUT)) {
        c->broken = 1; /* its answer may still come */
        return fail_as(c, ANYLOCK_TIMEOUT, rc, what, " (the deadline of the call)");
    }
    return fail(c, rc, what);
}

/* ---- expiry ---- */

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The expiration to send for expires_ms (already whole seconds, > 0) and
 * the flags that record it.  memcached's clock ticks once a second, so an
 * item given N seconds may vanish anywhere from N - 1 to N seconds later;
 * one more second is sent so that a lock never expires before the time its
 * owner was promised (it may live up to a second longer).  Up to 30 days the
 * expiration is relative; beyond, memcached wants an absolute Unix time,
 * which is then read on the server's clock. */
/* The seconds sent for expires_ms (see expiry_for; 0: never), and the
 * expiration memcached wants for them now, with the flags that record it. */
static int64_t secs_for(int64_t expires_ms)
{
    return expires_ms ? (expires_ms + 999) / 1000 + 1 : 0;
}

static void expiration_of(int64_t secs, time_t *expiration, uint32_t *flags)
{
    if (secs == 0) {
        *expiration = 0;
        *flags = 0;
        return;
    }
    time_t now = time(NULL);
    *expiration = secs <= MC_RELATIVE_MAX ? (time_t)secs : now + (time_t)secs;
    *flags = (uint32_t)(now + secs - 1);
}

static void expiry_for(int64_t expires_ms, time_t *expiration, uint32_t *flags)
{
    expiration_of(secs_for(expires_ms), expiration, flags);
}

/* ---- reads ---- */

typedef struct mc_item {
    int found;
    char buf[128];
    char *value; /* the whole stored value: buf, or malloc'ed when longer */
    size_t value_len;
    uint32_t flags;
    uint64_t cas;
} mc_item;

static void item_clear(mc_item *it)
{
    if (it->value && it->value != it->buf)
        free(it->value);
    memset(it, 0, sizeof *it);
}

static int item_take(mc_item *it, memcached_result_st *r)
{
    size_t n = memcached_result_length(r);
    it->value = n < sizeof it->buf ? it->buf : malloc(n + 1);
    if (!it->value)
        return -1;
    if (n)
        memcpy(it->value, memcached_result_value(r), n);
    it->value[n] = '\0';
    it->value_len = n;
    it->found = 1;
    it->flags = memcached_result_flags(r);
    it->cas = memcached_result_cas(r);
    return 0;
}

/* gets of n keys, all on the server of the group key (keys[0] when NULL):
 * fills its[i] (found = 0 when absent; each zeroed or filled before). */
static memcached_return_t read_items(mc_call *c, const char *const *keys, const size_t *lens, size_t n,
                                     mc_item *its, const char *group, size_t group_len)
{
    if (!group) {
        group = keys[0];
        group_len = lens[0];
    }
    for (size_t i = 0; i < n; i++)
        item_clear(&its[i]);
    if (!arm(c))
        return MEMCACHED_TIMEOUT;
    memcached_st *m = c->m;
    memcached_return_t rc = memcached_mget_by_key(m, group, group_len, keys, lens, n);
    if (rc != MEMCACHED_SUCCESS)
        return rc;
    if (!arm(c))
        return MEMCACHED_TIMEOUT;
    /* On the stack: libmemcached frees a heap result by itself when the
     * fetch ends, but only clears one the caller owns. */
    memcached_result_st result;
    memcached_result_st *r = memcached_result_create(m, &result);
    if (!r)
        return MEMCACHED_MEMORY_ALLOCATION_FAILURE;
    memcached_return_t frc;
    int nomem = 0;
    while (memcached_fetch_result(m, r, &frc)) {
        const char *k = memcached_result_key_value(r);
        size_t kl = memcached_result_key_length(r);
        for (size_t i = 0; i < n; i++)
            if (!its[i].found && kl == lens[i] && !memcmp(k, keys[i], kl) && item_take(&its[i], r) != 0)
                nomem = 1;
    }
    memcached_result_free(r);
    if (nomem)
        return MEMCACHED_MEMORY_ALLOCATION_FAILURE;
    if (frc == MEMCACHED_END || frc == MEMCACHED_NOTFOUND || frc == MEMCACHED_SUCCESS)
        return MEMCACHED_SUCCESS;
    return frc;
}

static memcached_return_t read_lock(mc_call *c, const mc_keys *k, mc_item *it)
{
    const char *keys[1] = {k->lock};
    size_t lens[1] = {k->lock_len};
    return read_items(c, keys, lens, 1, it, NULL, 0);
}

/* The whole stored value is the whole id: any other value, even empty,
 * longer, or equal to the id in its first bytes, is someone else's. */
static int owned_by(const mc_item *it, const anylock_op *op)
{
    return it->found && it->value_len == op->id_len && !memcmp(it->value, op->id, op->id_len);
}

static anylock_status no_cas(mc_call *c)
{
    return anylock_op_error(c->op, ANYLOCK_STORE_UNSAFE,
                            "memcached %s returns no CAS values (started with -C?): owners could not release "
                            "or extend their locks safely",
                            c->mc->servers);
}

/* ---- metadata ---- */

/* Writes the holder's metadata after an acquisition, with the lock's
 * expiration, on the lock's server.  Over the text protocol with noreply: the
 * server answers nothing, so it costs no round trip.  Failures are not the
 * lock's: the lock is held whatever happens here (a connection that failed
 * is dropped). */
static void meta_put(mc_call *c, const mc_keys *k, const char *meta, size_t meta_len, time_t expiration)
{
    if (!meta_len || !arm(c))
        return;
    memcached_st *m = c->m;
    memcached_return_t rc;
    if (!c->mc->binary) {
        memcached_behavior_set(m, MEMCACHED_BEHAVIOR_NOREPLY, 1);
        rc = memcached_set_by_key(m, k->lock, k->lock_len, k->meta, k->meta_len, meta, meta_len, expiration, 0);
        memcached_behavior_set(m, MEMCACHED_BEHAVIOR_NOREPLY, 0);
    } else {
        rc = memcached_set_by_key(m, k->lock, k->lock_len, k->meta, k->meta_len, meta, meta_len, expiration, 0);
    }
    if (rc != MEMCACHED_SUCCESS && is_broken(m, rc))
        c->broken = 1;
}

/* Deletes the metadata (before the lock is let go, so that it never
 * deletes the next holder's).  0, or -1 when the connection failed before
 * anything that changes the lock was sent. */
static int meta_drop(mc_call *c, const mc_keys *k)
{
    if (!arm(c))
        return -1;
    memcached_st *m = c->m;
    memcached_return_t rc;
    if (!c->mc->binary) {
        memcached_behavior_set(m, MEMCACHED_BEHAVIOR_NOREPLY, 1);
        rc = memcached_delete_by_key(m, k->lock, k->lock_len, k->meta, k->meta_len, 0);
        memcached_behavior_set(m, MEMCACHED_BEHAVIOR_NOREPLY, 0);
    } else {
        rc = memcached_delete_by_key(m, k->lock, k->lock_len, k->meta, k->meta_len, 0);
    }
    if (rc != MEMCACHED_SUCCESS && rc != MEMCACHED_NOTFOUND && is_broken(m, rc)) {
        c->broken = 1;
        return -1;
    }
    return 0;
}

/* After an extend: the metadata takes the lock's new expiration (over the
 * text protocol by writing it again with noreply, no round trip; over the
 * binary protocol with touch). */
static void meta_move(mc_call *c, const mc_keys *k, const mc_item *meta, time_t expiration)
{
    if (!c->mc->binary) {
        meta_put(c, k, meta->value, meta->value_len, expiration);
        return;
    }
    if (!arm(c))
        return;
    memcached_return_t rc = memcached_touch_by_key(c->m, k->lock, k->lock_len, k->meta, k->meta_len, expiration);
    if (rc != MEMCACHED_SUCCESS && rc != MEMCACHED_NOTFOUND && is_broken(c->m, rc))
        c->broken = 1;
}

/* ---- open / close ---- */

static const char *const mc_params[] = {"protocol", "connect_timeout", "command_timeout", "io_timeout", "poll_max", NULL};

/* Sets a behaviour and checks it took. */
static anylock_status behave(anylock_op *op, memcached_st *m, memcached_behavior_t b, uint64_t v, const char *what)
{
    memcached_return_t rc = memcached_behavior_set(m, b, v);
    if (rc != MEMCACHED_SUCCESS)
        return anylock_op_error(op, ANYLOCK_INTERNAL, "memcached: cannot set %s: %s", what, memcached_strerror(m, rc));
    return ANYLOCK_OK;
}

/*
 * Checks that every server hands out CAS values: a server started with -C
 * answers gets with a CAS of 0, and then nothing could release a lock safely.
 * For each server a probe key that hashes to it is written (for 2 s) and
 * read back with gets.  Probe keys contain '~' followed by text that is not
 * 64 hex digits and does not end in "~m", so no lock or metadata key is ever
 * a probe key.  Bounded, with the rest of open, by deadline.
 */
static anylock_status probe_cas(anylock_op *op, int64_t deadline)
{
    mc_call c;
    anylock_status st = call_begin(op, &c, deadline);
    if (st != ANYLOCK_OK)
        return st;
    memcached_st *m = c.m;
    uint32_t nservers = memcached_server_count(m);
    int done[64] = {0};
    uint32_t left = nservers < 64 ? nservers : 64;
    for (unsigned i = 0; left && i < 64u * nservers + 64u; i++) {
        char key[64];
        int n = snprintf(key, sizeof key, "anylock~cas-probe:%u", i);
        uint32_t server = memcached_generate_hash(m, key, (size_t)n);
        if (server >= 64 || done[server])
            continue;
        done[server] = 1;
        left--;
        if (!arm(&c)) {
            call_end(&c);
            return anylock_op_error(op, ANYLOCK_CONNECT, "memcached %s: checking CAS support: no answer within "
                                    "connect_timeout (%lld ms)", c.mc->servers, (long long)c.mc->connect_ms);
        }
        memcached_return_t rc = memcached_set(m, key, (size_t)n, "probe", 5, 2, 0);
        mc_item it;
        memset(&it, 0, sizeof it);
        if (rc == MEMCACHED_SUCCESS) {
            const char *keys[1] = {key};
            size_t lens[1] = {(size_t)n};
            rc = read_items(&c, keys, lens, 1, &it, NULL, 0);
        }
        if (rc != MEMCACHED_SUCCESS) {
            st = c.late ? anylock_op_error(op, ANYLOCK_CONNECT, "memcached %s: checking CAS support: no answer "
                                           "within connect_timeout (%lld ms)", c.mc->servers,
                                           (long long)c.mc->connect_ms)
                        : fail(&c, rc, "checking CAS support");
            call_end(&c);
            return st;
        }
        int zero = it.found && it.cas == 0;
        item_clear(&it);
        if (zero) {
            st = no_cas(&c);
            call_end(&c);
            return st;
        }
    }
    call_end(&c);
    return ANYLOCK_OK;
}

static anylock_status mc_open(anylock_op *op, const anylock_url *url)
{
    mc_client *mc = op->state;
    int64_t started = anylock_now_ns();
    if (url->user || url->password)
        return anylock_op_error(op, ANYLOCK_URL_BAD_USERINFO,
                                "memcached:// takes no user or password (SASL is not supported)");
    if (url->nhosts == 0)
        return anylock_op_error(op, ANYLOCK_URL_BAD_HOST, "memcached:// needs at least one host");
    if (url->path[0] && strcmp(url->path, "/"))
        return anylock_op_error(op, ANYLOCK_URL_BAD_PATH, "memcached:// takes no path");

    const char *proto = anylock_url_param_get(url, "protocol");
    if (proto && !strcmp(proto, "binary"))
        mc->binary = 1;
    else if (proto && strcmp(proto, "text"))
        return anylock_op_error(op, ANYLOCK_URL_BAD_PARAM, "URL parameter protocol must be \"text\" or \"binary\"");
    int64_t io_ms;
    anylock_status st = anylock_url_param_ms(op, url, "connect_timeout", MC_DEFAULT_CONNECT_MS, &mc->connect_ms);
    if (st == ANYLOCK_OK)
        st = anylock_url_param_ms(op, url, "command_timeout", MC_DEFAULT_COMMAND_MS, &mc->command_ms);
    if (st == ANYLOCK_OK)
        st = anylock_url_param_ms(op, url, "io_timeout", mc->command_ms, &io_ms);
    if (st == ANYLOCK_OK)
        st = anylock_url_param_ms(op, url, "poll_max", MC_DEFAULT_POLL_MAX_MS, &mc->poll_max_ms);
    if (st != ANYLOCK_OK)
        return st;
    if (anylock_url_param_get(url, "io_timeout")) {
        if (anylock_url_param_get(url, "command_timeout"))
            return anylock_op_error(op, ANYLOCK_URL_BAD_PARAM,
                                    "URL parameters command_timeout and io_timeout are the same: give one");
        mc->command_ms = io_ms;
    }
    if (mc->connect_ms <= 0 || mc->command_ms <= 0 || mc->poll_max_ms <= 0 || mc->connect_ms > INT32_MAX / 1000 ||
        mc->command_ms > INT32_MAX / 1000)
        return anylock_op_error(op, ANYLOCK_URL_BAD_PARAM,
                                "URL parameters connect_timeout, command_timeout and poll_max must be more than 0 s "
                                "(timeouts at most %d s)",
                                INT32_MAX / 1000000);
    /* All of open (connects and the CAS probe) within connect_timeout. */
    int64_t deadline = started + mc->connect_ms * 1000000;

    if (pthread_mutex_init(&mc->mu, NULL) != 0)
        return ANYLOCK_NOMEM;
    mc->mu_init = 1;
    mc->master = memcached_create(NULL);
    if (!mc->master)
        return ANYLOCK_NOMEM;
    size_t used = 0;
    for (size_t i = 0; i < url->nhosts; i++) {
        int port = url->hosts[i].port ? url->hosts[i].port : 11211;
        memcached_return_t rc = memcached_server_add(mc->master, url->hosts[i].host, (in_port_t)port);
        if (rc != MEMCACHED_SUCCESS)
            return anylock_op_error(op, ANYLOCK_URL_BAD_HOST, "memcached: cannot use host \"%.64s\": %s",
                                    url->hosts[i].host, memcached_strerror(mc->master, rc));
        if (used < sizeof mc->servers - 1) {
            int n = snprintf(mc->servers + used, sizeof mc->servers - used, "%s%s:%d", i ? "," : "",
                             url->hosts[i].host, port);
            used = n < 0 ? used : used + (size_t)n;
            if (used >= sizeof mc->servers)
                used = sizeof mc->servers - 1;
        }
    }
    memcached_st *m = mc->master;
    /* Ketama spreads keys so that each key always lands on the same server,
     * whatever the order of the list.  Failed servers are never ejected or
     * removed (that would move their keys to another server), and a failed
     * server is retried on the next call rather than after a pause.  The
     * timeouts are set again before each round trip from the call's
     * deadline; these are the clones' starting values. */
    if ((st = behave(op, m, MEMCACHED_BEHAVIOR_KETAMA, 1, "ketama hashing")) ||
        (st = behave(op, m, MEMCACHED_BEHAVIOR_SUPPORT_CAS, 1, "CAS support")) ||
        (st = behave(op, m, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, (uint64_t)mc->binary, "the protocol")) ||
        (st = behave(op, m, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1, "TCP_NODELAY")) ||
        (st = behave(op, m, MEMCACHED_BEHAVIOR_AUTO_EJECT_HOSTS, 0, "no ejection")) ||
        (st = behave(op, m, MEMCACHED_BEHAVIOR_REMOVE_FAILED_SERVERS, 0, "no removal")) ||
        (st = behave(op, m, MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 0, "the retry timeout")) ||
        (st = behave(op, m, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, (uint64_t)mc->connect_ms, "connect_timeout")) ||
        (st = behave(op, m, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, (uint64_t)mc->command_ms, "command_timeout")))
        return st;
    if ((st = anylock_pool_create(&pool_methods, mc, MC_POOL_IDLE_MAX, &mc->pool)) != ANYLOCK_OK)
        return st;
    return probe_cas(op, deadline);
}

static void mc_close(anylock_op *op)
{
    mc_client *mc = op->state;
    anylock_pool_destroy(mc->pool);
    mc->pool = NULL;
    if (mc->master)
        memcached_free(mc->master);
    mc->master = NULL;
    if (mc->mu_init)
        pthread_mutex_destroy(&mc->mu);
    mc->mu_init = 0;
}

/* ---- shared locks and semaphores: groups ---- */

/*
 * A name held shared or as a semaphore keeps, in the lock's item, a group
 * instead of an owner id:
 *
 *   "\nanylock-group/1 MODE PERMITS\n", then "ID SECS\n" for each holder
 *
 * MODE is 's' (shared) or 'n' (a semaphore of PERMITS), SECS the seconds
 * the holder's share was last written with (0: never expires).  A value that
 * starts with a newline is never an owner id (ids are printable ASCII), so a
 * client that knows only exclusive locks takes it for somebody's lock.
 *
 * Each holder also has a member item (member_key), holding its metadata,
 * with the share's own expiry: a holder is alive while its member item is there.
 * Every change of a group is a gets + cas of the lock's item, so it is
 * atomic.  A member item is written before the cas that lists it, and only
 * by its holder (acquire and extend, each followed by a cas of the group);
 * so a pruner that found a member gone and then changed the group with the
 * cas it read before knows the member did not come back in between (that
 * holder's own cas would have changed the group first), and a holder whose
 * member vanished had passed its lease's end (the member outlives it).
 * The group item's expiration, written at each change, is the longest of its
 * holders' seconds from that moment, so it outlives every member and a name
 * whose holders all died is free at the last one's expiry, on memcached's
 * clock alone.
 *
 * Exclusive locks stay a plain owner id, taken with add; an exclusive
 * acquirer that meets a group whose members are all gone takes the name
 * over with a cas.  Writer preference: an exclusive acquirer that waits
 * behind shared holders keeps a marker item (key ~w, a few seconds of
 * expiry, written again at each poll); shared acquirers wait while it is
 * there.
 */
#define MC_GROUP_MAGIC "\nanylock-group/1 "
#define MC_GROUP_MAGIC_LEN 17
/* Seconds a waiting writer's marker is written with, beyond two polls (it
 * lives one second less to one more, on memcached's clock). */
#define MC_WAIT_SECS 2

typedef struct mc_member {
    const char *id; /* into the group's item */
    size_t id_len;
    int64_t secs;
    int alive;      /* its member item is there (after group_read_members) */
    mc_item item;   /* the member item */
} mc_member;

typedef struct mc_group {
    anylock_mode mode;
    unsigned permits;
    size_t n;
    mc_member *m;
} mc_group;

static void group_free(mc_group *g)
{
    for (size_t i = 0; i < g->n; i++)
        item_clear(&g->m[i].item);
    free(g->m);
    memset(g, 0, sizeof *g);
}

static int is_group(const mc_item *it)
{
    return it->found && it->value_len >= MC_GROUP_MAGIC_LEN && !memcmp(it->value, MC_GROUP_MAGIC, MC_GROUP_MAGIC_LEN);
}

static int parse_uint(const char **p, const char *end, uint64_t max, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    while (s < end && *s >= '0' && *s <= '9') {
        v = v * 10 + (uint64_t)(*s - '0');
        if (v > max)
            return -1;
        s++;
    }
    if (s == *p)
        return -1;
    *p = s;
    *out = v;
    return 0;
}

/* Parses the group in it (is_group): 0, -1 if it is not well formed (then
 * somebody's lock all the same), -2 out of memory. */
static int group_parse(const mc_item *it, mc_group *g)
{
    memset(g, 0, sizeof *g);
    const char *p = it->value + MC_GROUP_MAGIC_LEN, *end = it->value + it->value_len;
    uint64_t permits;
    if (p + 2 > end || (p[0] != 's' && p[0] != 'n') || p[1] != ' ')
        return -1;
    g->mode = p[0] == 's' ? ANYLOCK_SHARED : ANYLOCK_SEMAPHORE;
    p += 2;
    if (parse_uint(&p, end, ANYLOCK_PERMITS_MAX, &permits) != 0 || p >= end || *p++ != '\n')
        return -1;
    g->permits = (unsigned)permits;
    size_t cap = 0;
    while (p < end) {
        const char *id = p;
        while (p < end && *p > 0x20 && *p < 0x7f)
            p++;
        size_t id_len = (size_t)(p - id);
        uint64_t secs;
        if (id_len == 0 || id_len > ANYLOCK_ID_MAX || p >= end || *p++ != ' ' ||
            parse_uint(&p, end, (uint64_t)INT32_MAX, &secs) != 0 || p >= end || *p++ != '\n') {
            group_free(g);
            return -1;
        }
        if (g->n == cap) {
            cap = cap ? cap * 2 : 8;
            mc_member *grown = realloc(g->m, cap * sizeof *grown);
            if (!grown) {
                group_free(g);
                return -2;
            }
            g->m = grown;
        }
        memset(&g->m[g->n], 0, sizeof g->m[g->n]);
        g->m[g->n].id = id;
        g->m[g->n].id_len = id_len;
        g->m[g->n].secs = (int64_t)secs;
        g->n++;
    }
    return 0;
}

/* The key of id's member item. */
static void member_key(const anylock_op *op, const mc_keys *k, const char *id, size_t id_len, char *out,
                       size_t *out_len)
{
    (void)op;
    char buf[MC_KEY_MAX + 1 + ANYLOCK_ID_MAX];
    memcpy(buf, k->lock, k->lock_len);
    buf[k->lock_len] = '\n';
    memcpy(buf + k->lock_len + 1, id, id_len);
    *out_len = derived_key(k->lock, k->lock_len, buf, k->lock_len + 1 + id_len, MC_MEMBER_SUFFIX, out);
}

/* Reads every member item of g (one round trip): fills alive and item. */
static memcached_return_t group_read_members(mc_call *c, const mc_keys *k, mc_group *g)
{
    if (g->n == 0)
        return MEMCACHED_SUCCESS;
    char *keys = malloc(g->n * (MC_KEY_MAX + 1));
    const char **kp = malloc(g->n * sizeof *kp);
    size_t *lens = malloc(g->n * sizeof *lens);
    mc_item *items = calloc(g->n, sizeof *items);
    memcached_return_t rc = MEMCACHED_MEMORY_ALLOCATION_FAILURE;
    if (keys && kp && lens && items) {
        for (size_t i = 0; i < g->n; i++) {
            char *key = keys + i * (MC_KEY_MAX + 1);
            member_key(c->op, k, g->m[i].id, g->m[i].id_len, key, &lens[i]);
            kp[i] = key;
        }
        rc = read_items(c, kp, lens, g->n, items, k->lock, k->lock_len);
        for (size_t i = 0; i < g->n; i++) {
            mc_item *it = &g->m[i].item;
            item_clear(it);
            *it = items[i];
            if (items[i].value == items[i].buf)
                it->value = it->buf; /* the short value moved with its buffer */
            g->m[i].alive = rc == MEMCACHED_SUCCESS && it->found;
        }
    } else if (items) {
        for (size_t i = 0; i < g->n; i++)
            item_clear(&items[i]);
    }
    free(keys);
    free(kp);
    free(lens);
    free(items);
    return rc;
}

static size_t group_live(const mc_group *g)
{
    size_t live = 0;
    for (size_t i = 0; i < g->n; i++)
        live += g->m[i].alive != 0;
    return live;
}

static const mc_member *group_find(const mc_group *g, const anylock_op *op)
{
    for (size_t i = 0; i < g->n; i++)
        if (g->m[i].id_len == op->id_len && !memcmp(g->m[i].id, op->id, op->id_len))
            return &g->m[i];
    return NULL;
}

/* The value for a group of mode/permits with the members of g that keep
 * (live only, when live_only; never `drop`), with op->id and secs added when
 * add; its expiration and flags (the longest seconds).  NULL when out of
 * memory. */
static char *group_value(const mc_group *g, anylock_mode mode, unsigned permits, int live_only, const mc_member *drop,
                         const anylock_op *add, int64_t add_secs, size_t *len, time_t *expiration, uint32_t *flags,
                         size_t *count)
{
    size_t cap = MC_GROUP_MAGIC_LEN + 16 + (g ? g->n : 0) * (ANYLOCK_ID_MAX + 13) + (add ? add->id_len + 13 : 0);
    char *v = malloc(cap);
    if (!v)
        return NULL;
    size_t n = (size_t)snprintf(v, cap, "%s%c %u\n", MC_GROUP_MAGIC, mode == ANYLOCK_SHARED ? 's' : 'n',
                                mode == ANYLOCK_SHARED ? 0u : permits);
    int64_t longest = 0;
    int never = 0;
    *count = 0;
    for (size_t i = 0; g && i < g->n; i++) {
        const mc_member *m = &g->m[i];
        if (m == drop || (live_only && !m->alive) ||
            (add && m->id_len == add->id_len && !memcmp(m->id, add->id, add->id_len)))
            continue;
        n += (size_t)snprintf(v + n, cap - n, "%.*s %lld\n", (int)m->id_len, m->id, (long long)m->secs);
        never |= m->secs == 0;
        longest = m->secs > longest ? m->secs : longest;
        ++*count;
    }
    if (add) {
        n += (size_t)snprintf(v + n, cap - n, "%.*s %lld\n", (int)add->id_len, add->id, (long long)add_secs);
        never |= add_secs == 0;
        longest = add_secs > longest ? add_secs : longest;
        ++*count;
    }
    expiration_of(never ? 0 : longest, expiration, flags);
    *len = n;
    return v;
}

/* Writes op->id's member item (its metadata) with secs.  Over the text
 * protocol with noreply (it is read only after the cas that lists it was
 * answered, on the same connection to the same server, so it is there).
 * 0, or -1 when the connection failed (nothing written that counts). */
static int member_put(mc_call *c, const mc_keys *k, const char *value, size_t value_len, int64_t secs)
{
    char key[MC_KEY_MAX + 1];
    size_t key_len;
    member_key(c->op, k, c->op->id, c->op->id_len, key, &key_len);
    time_t expiration;
    uint32_t flags;
    expiration_of(secs, &expiration, &flags);
    if (!arm(c))
        return -1;
    memcached_st *m = c->m;
    if (!c->mc->binary)
        memcached_behavior_set(m, MEMCACHED_BEHAVIOR_NOREPLY, 1);
    memcached_return_t rc = memcached_set_by_key(m, k->lock, k->lock_len, key, key_len, value ? value : "",
                                                 value_len, expiration, flags);
    if (!c->mc->binary)
        memcached_behavior_set(m, MEMCACHED_BEHAVIOR_NOREPLY, 0);
    if (rc != MEMCACHED_SUCCESS) {
        if (is_broken(m, rc))
            c->broken = 1;
        return -1;
    }
    return 0;
}

/* Deletes a member item (after the cas that dropped it), without waiting
 * for the answer over the text protocol. */
static void member_drop(mc_call *c, const mc_keys *k, const char *id, size_t id_len)
{
    char key[MC_KEY_MAX + 1];
    size_t key_len;
    member_key(c->op, k, id, id_len, key, &key_len);
    if (!arm(c))
        return;
    memcached_st *m = c->m;
    if (!c->mc->binary)
        memcached_behavior_set(m, MEMCACHED_BEHAVIOR_NOREPLY, 1);
    memcached_return_t rc = memcached_delete_by_key(m, k->lock, k->lock_len, key, key_len, 0);
    if (!c->mc->binary)
        memcached_behavior_set(m, MEMCACHED_BEHAVIOR_NOREPLY, 0);
    if (rc != MEMCACHED_SUCCESS && rc != MEMCACHED_NOTFOUND && is_broken(m, rc))
        c->broken = 1;
}

/* The waiting writer's marker: set (again) with a few seconds of life, or
 * deleted.  Neither waits for an answer over the text protocol; over the
 * binary protocol the delete goes out quiet and the connection is then
 * dropped, so that no late answer is left on it. */
static void wait_mark(mc_call *c, const mc_keys *k, int on)
{
    if (!arm(c))
        return;
    memcached_st *m = c->m;
    mc_client *mc = c->mc;
    memcached_return_t rc;
    if (on) {
        int64_t secs = MC_WAIT_SECS + (2 * mc->poll_max_ms + 999) / 1000;
        if (!mc->binary)
            memcached_behavior_set(m, MEMCACHED_BEHAVIOR_NOREPLY, 1);
        rc = memcached_set_by_key(m, k->lock, k->lock_len, k->wait, k->wait_len, c->op->id, c->op->id_len,
                                  (time_t)secs, 0);
    } else {
        memcached_behavior_set(m, MEMCACHED_BEHAVIOR_NOREPLY, 1);
        rc = memcached_delete_by_key(m, k->lock, k->lock_len, k->wait, k->wait_len, 0);
        if (mc->binary)
            c->broken = 1;
    }
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_NOREPLY, 0);
    if (rc != MEMCACHED_SUCCESS && rc != MEMCACHED_NOTFOUND && is_broken(m, rc))
        c->broken = 1;
}

/* ---- acquire ---- */

/* What one acquire carries from attempt to attempt. */
typedef struct mc_attempt {
    int first;         /* the first attempt */
    int marked;        /* this acquire set the waiting-writer marker */
    int64_t marked_at; /* when it last wrote it */
} mc_attempt;

/* Writes the waiting-writer marker: at the first poll that finds the lock
 * held, then at most every MC_WAIT_REFRESH_MS (it lives 2-3 s). */
#define MC_WAIT_REFRESH_MS 100

static void mark_waiting(mc_call *c, const mc_keys *k, mc_attempt *at)
{
    int64_t now = anylock_now_ns();
    if (at->marked && now - at->marked_at < MC_WAIT_REFRESH_MS * 1000000)
        return;
    wait_mark(c, k, 1);
    at->marked = 1;
    at->marked_at = now;
}

/* Tries once more after a cas or add that lost a race. */
#define MC_AGAIN ((anylock_status)-1)

static anylock_status already_held(anylock_op *op)
{
    return anylock_op_error(op, ANYLOCK_ALREADY_HELD, "lock \"%.64s\" is already held by this owner id", op->name);
}

static anylock_status mode_conflict(anylock_op *op, anylock_mode held, unsigned permits)
{
    if (held == ANYLOCK_SEMAPHORE && op->mode == ANYLOCK_SEMAPHORE)
        return anylock_op_error(op, ANYLOCK_MODE_CONFLICT, "lock \"%.64s\" is a semaphore of %u permits, not %u",
                                op->name, permits, op->permits);
    return anylock_op_error(op, ANYLOCK_MODE_CONFLICT, "lock \"%.64s\" is held as %s", op->name,
                            held == ANYLOCK_SEMAPHORE ? "a semaphore" : "a lock, not a semaphore");
}

/* Replaces the item read as it (a group nobody is left in, or none) with
 * value by cas; add when it is NULL.  OK, MC_AGAIN (someone was first),
 * or an error. */
static anylock_status take(mc_call *c, const mc_keys *k, const mc_item *it, const char *value, size_t len,
                           time_t expiration, uint32_t flags, int64_t sent_before, const char *what)
{
    anylock_op *op = c->op;
    if (!arm(c))
        return out_of_time(c, what);
    int64_t sent = sent_before ? sent_before : anylock_now_ns();
    memcached_return_t rc =
        it ? memcached_cas(c->m, k->lock, k->lock_len, value, len, expiration, flags, it->cas)
           : memcached_add(c->m, k->lock, k->lock_len, value, len, expiration, flags);
    if (rc == MEMCACHED_SUCCESS) {
        op->granted_at = sent;
        return ANYLOCK_OK;
    }
    if (rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_DATA_EXISTS || rc == MEMCACHED_NOTFOUND)
        return MC_AGAIN;
    if (server_oom(c->m, rc))
        return fail(c, rc, what);
    return fail_sent(c, rc, what);
}

/* An exclusive acquirer found the group it: takes the name if every member
 * is gone, else BUSY (marking that it waits, behind shared holders) or
 * MODE_CONFLICT (a semaphore's name). */
static anylock_status exclusive_meets_group(mc_call *c, const mc_keys *k, const mc_item *it, mc_attempt *at)
{
    anylock_op *op = c->op;
    mc_group g;
    int pr = group_parse(it, &g);
    if (pr == -2)
        return anylock_op_error(op, ANYLOCK_NOMEM, "out of memory");
    if (pr != 0)
        return ANYLOCK_BUSY;
    memcached_return_t rc = group_read_members(c, k, &g);
    anylock_status st;
    if (rc != MEMCACHED_SUCCESS) {
        st = read_fail(c, rc, "get");
    } else if (group_live(&g) == 0) {
        time_t expiration;
        uint32_t flags;
        expiry_for(op->expires_ms, &expiration, &flags);
        st = take(c, k, it, op->id, op->id_len, expiration, flags, 0, "cas");
        if (st == ANYLOCK_OK)
            meta_put(c, k, op->meta, op->meta_len, expiration);
    } else {
        const mc_member *me = group_find(&g, op);
        if (me && me->alive)
            st = already_held(op);
        else if (g.mode == ANYLOCK_SEMAPHORE)
            st = mode_conflict(op, g.mode, g.permits);
        else {
            if (op->deadline != 0)
                mark_waiting(c, k, at);
            st = ANYLOCK_BUSY;
        }
    }
    group_free(&g);
    return st;
}

/* One attempt of a shared or semaphore acquire: joins the group (or starts
 * one), all within this call's deadline. */
static anylock_status try_join(mc_call *c, const mc_keys *k)
{
    anylock_op *op = c->op;
    const char *keys[2] = {k->lock, k->wait};
    size_t lens[2] = {k->lock_len, k->wait_len};
    mc_item its[2];
    memset(its, 0, sizeof its);
    int64_t secs = secs_for(op->expires_ms);
    anylock_status st = ANYLOCK_BUSY;
    for (int round = 0; round < 4; round++) {
        memcached_return_t rc = read_items(c, keys, lens, op->mode == ANYLOCK_SHARED ? 2 : 1, its, NULL, 0);
        if (rc != MEMCACHED_SUCCESS) {
            st = read_fail(c, rc, "get");
            break;
        }
        mc_item *it = &its[0];
        int writer_waits = op->mode == ANYLOCK_SHARED && its[1].found;
        mc_group g;
        memset(&g, 0, sizeof g);
        if (it->found && !is_group(it)) {
            /* An exclusive holder (or a value anylock did not write). */
            st = owned_by(it, op) ? already_held(op)
                 : op->mode == ANYLOCK_SEMAPHORE ? mode_conflict(op, ANYLOCK_EXCLUSIVE, 0)
                                                 : ANYLOCK_BUSY;
            break;
        }
        if (it->found) {
            int pr = group_parse(it, &g);
            if (pr == -2) {
                st = anylock_op_error(op, ANYLOCK_NOMEM, "out of memory");
                break;
            }
            if (pr != 0) {
                st = ANYLOCK_BUSY;
                break;
            }
            if ((rc = group_read_members(c, k, &g)) != MEMCACHED_SUCCESS) {
                group_free(&g);
                st = read_fail(c, rc, "get");
                break;
            }
            size_t live = group_live(&g);
            const mc_member *me = group_find(&g, op);
            int conflict = live && (g.mode != op->mode || (op->mode == ANYLOCK_SEMAPHORE && g.permits != op->permits));
            if (me && me->alive)
                st = already_held(op);
            else if (conflict)
                st = g.mode == ANYLOCK_SHARED ? mode_conflict(op, ANYLOCK_EXCLUSIVE, 0)
                                              : mode_conflict(op, g.mode, g.permits);
            else if (writer_waits || (live && op->mode == ANYLOCK_SEMAPHORE && live >= g.permits))
                st = ANYLOCK_BUSY;
            else
                st = ANYLOCK_OK;
            if (st != ANYLOCK_OK) {
                group_free(&g);
                break;
            }
        } else if (writer_waits) {
            st = ANYLOCK_BUSY;
            break;
        }
        /* Room for us: our member item first, then the group that lists it
         * (with the members still alive). */
        size_t len, count;
        time_t expiration;
        uint32_t flags;
        char *value = group_value(it->found ? &g : NULL, op->mode, op->permits, 1, NULL, op, secs, &len, &expiration,
                                  &flags, &count);
        if (!value) {
            group_free(&g);
            st = anylock_op_error(op, ANYLOCK_NOMEM, "out of memory");
            break;
        }
        int64_t sent = anylock_now_ns();
        if (member_put(c, k, op->meta, op->meta_len, secs) != 0) {
            free(value);
            group_free(&g);
            st = anylock_op_error(op, ANYLOCK_IO, "memcached %s: acquire of lock \"%.48s\": the connection failed "
                                  "(nothing was taken)", c->mc->servers, op->name);
            break;
        }
        st = take(c, k, it->found ? it : NULL, value, len, expiration, flags, sent, it->found ? "cas" : "add");
        free(value);
        group_free(&g);
        if (st != MC_AGAIN)
            break;
        st = ANYLOCK_BUSY;
    }
    item_clear(&its[0]);
    item_clear(&its[1]);
    return st;
}

/*
 * One attempt of acquire, its round trips bounded by command_timeout and the
 * wait deadline: OK, BUSY, ALREADY_HELD, MODE_CONFLICT, OUTCOME_UNKNOWN or an
 * error.  The first exclusive attempt on an open connection goes straight to
 * `add` (one round trip for a free lock); later attempts, and any on a
 * connection not yet open, first read the item (a waiter then polls with one
 * round trip, and a failure there changes nothing), and `add` only when it
 * is gone.
 */
static anylock_status try_add(anylock_op *op, const mc_keys *k, mc_attempt *at)
{
    mc_call c;
    mc_client *mc = op->state;
    anylock_status st = call_begin(op, &c, anylock_op_io_deadline(op, mc->command_ms));
    if (st != ANYLOCK_OK)
        return st;
    if (op->mode != ANYLOCK_EXCLUSIVE) {
        st = try_join(&c, k);
        call_end(&c);
        return st;
    }
    int look = !at->first || !connected(&c, k->lock, k->lock_len);
    mc_item it;
    memset(&it, 0, sizeof it);
    st = ANYLOCK_BUSY;
    /* Set once an add went out on a connection the server had closed. */
    memcached_return_t reset_rc = MEMCACHED_SUCCESS;
    for (int round = 0; round < 3; round++) {
        if (look) {
            memcached_return_t rc = read_lock(&c, k, &it);
            if (rc != MEMCACHED_SUCCESS) {
                st = reset_rc != MEMCACHED_SUCCESS ? fail_sent(&c, reset_rc, "add") : read_fail(&c, rc, "get");
                break;
            }
            if (reset_rc != MEMCACHED_SUCCESS && it.found && owned_by(&it, op)) {
                /* The add may be what put it there: still unknown. */
                st = fail_sent(&c, reset_rc, "add");
                break;
            }
            if (is_group(&it)) {
                st = exclusive_meets_group(&c, k, &it, at);
                if (st == MC_AGAIN) {
                    st = ANYLOCK_BUSY;
                    continue;
                }
                break;
            }
            if (it.found) {
                st = owned_by(&it, op) ? already_held(op) : ANYLOCK_BUSY;
                if (st == ANYLOCK_BUSY && op->deadline != 0) {
                    /* It waits: shared acquirers wait behind it, and the
                     * holder lets it in before taking the lock again too
                     * often. */
                    mark_waiting(&c, k, at);
                }
                break;
            }
        }
        time_t expiration;
        uint32_t flags;
        expiry_for(op->expires_ms, &expiration, &flags);
        if (!arm(&c)) {
            st = out_of_time(&c, "add");
            break;
        }
        int64_t sent = anylock_now_ns();
        memcached_return_t rc = memcached_add(c.m, k->lock, k->lock_len, op->id, op->id_len, expiration, flags);
        if (rc == MEMCACHED_SUCCESS) {
            op->granted_at = sent;
            meta_put(&c, k, op->meta, op->meta_len, expiration);
            st = ANYLOCK_OK;
            break;
        }
        if (rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_DATA_EXISTS) {
            look = 1; /* held: by whom?  (Or freed since: add again.) */
            continue;
        }
        if (server_oom(c.m, rc)) {
            /* memcached allocates the new item before it looks for the old
             * one, so a full server answers a held lock's add with "out of
             * memory" too: read it to tell. */
            memcached_return_t rrc = read_lock(&c, k, &it);
            if (rrc == MEMCACHED_SUCCESS && it.found)
                st = owned_by(&it, op) ? already_held(op) : ANYLOCK_BUSY;
            else
                st = fail(&c, rc, "add");
            break;
        }
        if (reset_rc == MEMCACHED_SUCCESS && peer_closed(c.m)) {
            /* The server had closed this connection before the add went
             * out (it restarted, or dropped an idle client): whatever it
             * did with the add is there to read on a new connection, which
             * libmemcached opens for the next request.  Absent: add again;
             * another owner's: busy; our own id's: unknown. */
            reset_rc = rc;
            look = 1;
            continue;
        }
        st = fail_sent(&c, rc, "add");
        break;
    }
    item_clear(&it);
    call_end(&c);
    return st;
}

/* Deletes the waiting-writer marker this acquire set. */
static void unmark(anylock_op *op, const mc_keys *k)
{
    mc_client *mc = op->state;
    mc_call c;
    if (call_begin(op, &c, anylock_now_ns() + mc->command_ms * 1000000) != ANYLOCK_OK)
        return;
    wait_mark(&c, k, 0);
    call_end(&c);
}

static anylock_status mc_acquire(anylock_op *op)
{
    mc_client *mc = op->state;
    mc_keys k;
    make_keys(op, &k);
    anylock_backoff b;
    /* A short first retry catches a quick release; the ceiling bounds both
     * the latency after a release and the load many waiters put on memcached. */
    anylock_backoff_init(&b, mc->poll_max_ms < MC_POLL_FIRST_MS ? mc->poll_max_ms : MC_POLL_FIRST_MS,
                         mc->poll_max_ms);
    mc_attempt at = {1, 0, 0};
    /* Bounded barging.  memcached cannot queue waiters, and a holder that
     * releases and acquires again in a loop gets the lock back before any
     * poller sees it free.  A handle that did so MC_BARGE_MAX times in a
     * row while someone waited (their marker, read by its release) waits
     * one poll period first, so that a waiter gets in.  Try-once never
     * waits. */
    mc_lock *ls = op->lock_state;
    if (ls && op->mode == ANYLOCK_EXCLUSIVE) {
        int64_t now = anylock_now_ns();
        if (now - ls->released_at > (2 * mc->poll_max_ms + 1) * 1000000)
            ls->streak = 0;
        if (ls->streak >= MC_BARGE_MAX && op->deadline != 0) {
            ls->streak = 0;
            int64_t until = now + (mc->poll_max_ms * 3 / 2 + 1) * 1000000;
            if (op->deadline != ANYLOCK_DEADLINE_NEVER && until > op->deadline)
                until = op->deadline;
            struct timespec ts = {.tv_sec = until / 1000000000, .tv_nsec = until % 1000000000};
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
            }
            at.first = 0;
        }
    }
    anylock_status st;
    for (;; at.first = 0) {
        st = try_add(op, &k, &at);
        if (st != ANYLOCK_BUSY)
            break;
        if (op->deadline == 0)
            break;
        if (!anylock_backoff_wait(&b, op->deadline)) {
            st = ANYLOCK_TIMEOUT;
            break;
        }
    }
    if (at.marked) {
        char saved[ANYLOCK_ERRMSG_MAX];
        memcpy(saved, op->errbuf, sizeof saved);
        unmark(op, &k);
        memcpy(op->errbuf, saved, sizeof saved);
    }
    return st;
}

/* ---- release and extend ---- */

/* Release or extend of a share: the group it (read with the cas it has)
 * without op->id, or with its seconds renewed.  OK, MC_AGAIN, NOT_HELD or
 * an error. */
static anylock_status group_change(mc_call *c, const mc_keys *k, const mc_item *it, const mc_item *mine, int release)
{
    anylock_op *op = c->op;
    const char *what = release ? "release" : "extend";
    mc_group g;
    int pr = group_parse(it, &g);
    if (pr == -2)
        return anylock_op_error(op, ANYLOCK_NOMEM, "out of memory");
    const mc_member *me = pr == 0 ? group_find(&g, op) : NULL;
    if (!me || !mine->found) {
        group_free(&g);
        return anylock_op_error(op, ANYLOCK_NOT_HELD, "lock \"%.64s\" is not held by this owner id (its share %s)",
                                op->name, me ? "expired or was evicted" : "is not among the holders");
    }
    int64_t secs = release ? 0 : secs_for(op->expires_ms);
    if (!release && me->secs == 0) {
        group_free(&g);
        return anylock_op_error(op, ANYLOCK_NOT_EXPIRABLE, "lock \"%.64s\" was taken without an expiry", op->name);
    }
    size_t len, count;
    time_t expiration;
    uint32_t flags;
    char *value = group_value(&g, g.mode, g.permits, 0, release ? me : NULL, release ? NULL : op, secs, &len,
                              &expiration, &flags, &count);
    if (!value) {
        group_free(&g);
        return anylock_op_error(op, ANYLOCK_NOMEM, "out of memory");
    }
    if (release && count == 0)
        expiration = MC_EXPIRE_NOW; /* the last one out: the name is free */
    int64_t sent = anylock_now_ns();
    if (!release && member_put(c, k, mine->value, mine->value_len, secs) != 0) {
        free(value);
        group_free(&g);
        return anylock_op_error(op, ANYLOCK_IO, "memcached %s: extend of lock \"%.48s\": the connection failed",
                                c->mc->servers, op->name);
    }
    anylock_status st = take(c, k, it, value, len, expiration, flags, sent, what);
    free(value);
    if (st == ANYLOCK_OK && release)
        member_drop(c, k, op->id, op->id_len);
    group_free(&g);
    return st;
}

/* gets + cas for release (expiration MC_EXPIRE_NOW) and extend, all within
 * command_timeout (and op->deadline). */
static anylock_status change_owned(anylock_op *op, int release)
{
    mc_client *mc = op->state;
    mc_keys k;
    make_keys(op, &k);
    const char *what = release ? "release" : "extend";
    mc_call c;
    anylock_status st = call_begin(op, &c, anylock_op_io_deadline(op, mc->command_ms));
    if (st != ANYLOCK_OK)
        return st;
    /* The lock, its metadata (extend moves its expiry too) and, for a
     * share, its member item: one round trip. */
    char mkey[MC_KEY_MAX + 1];
    size_t mkey_len;
    member_key(op, &k, op->id, op->id_len, mkey, &mkey_len);
    const char *keys[3] = {k.lock};
    size_t lens[3] = {k.lock_len};
    size_t nkeys = 1;
    int meta_at = -1, member_at = -1;
    if (!release) {
        meta_at = (int)nkeys;
        keys[nkeys] = k.meta;
        lens[nkeys++] = k.meta_len;
    }
    int wait_at = -1;
    if (op->mode != ANYLOCK_EXCLUSIVE) {
        member_at = (int)nkeys;
        keys[nkeys] = mkey;
        lens[nkeys++] = mkey_len;
    } else if (release) {
        /* Whether someone waits (bounded barging, see mc_acquire). */
        wait_at = (int)nkeys;
        keys[nkeys] = k.wait;
        lens[nkeys++] = k.wait_len;
    }
    mc_item its[3];
    memset(its, 0, sizeof its);
    int meta_dropped = 0;
    st = ANYLOCK_STORE;
    anylock_backoff pause;
    anylock_backoff_init(&pause, 1, MC_CAS_PAUSE_MAX_MS);
    for (int round = 0;; round++) {
        if (round >= MC_CAS_RETRIES && !anylock_backoff_wait(&pause, c.deadline))
            break;
        memcached_return_t rc = read_items(&c, keys, lens, nkeys, its, NULL, 0);
        if (rc != MEMCACHED_SUCCESS) {
            /* Nothing that changes the lock was sent. */
            st = read_fail(&c, rc, what);
            goto done;
        }
        mc_item *it = &its[0];
        if (is_group(it)) {
            if (member_at < 0) {
                /* A share taken through a handle now set to exclusive:
                 * read its member item too. */
                member_at = (int)nkeys;
                keys[nkeys] = mkey;
                lens[nkeys++] = mkey_len;
                round--;
                continue;
            }
            st = group_change(&c, &k, it, &its[member_at], release);
            if (st == MC_AGAIN)
                continue;
            goto done;
        }
        if (!owned_by(it, op)) {
            st = anylock_op_error(op, ANYLOCK_NOT_HELD, "lock \"%.64s\" is %s", op->name,
                                  it->found ? "held by another owner" : "not held (expired, evicted or reset)");
            goto done;
        }
        if (it->cas == 0) {
            st = no_cas(&c);
            goto done;
        }
        time_t expiration = MC_EXPIRE_NOW;
        uint32_t flags = it->flags;
        if (!release) {
            if (it->flags == 0) {
                st = anylock_op_error(op, ANYLOCK_NOT_EXPIRABLE, "lock \"%.64s\" was taken without an expiry",
                                      op->name);
                goto done;
            }
            expiry_for(op->expires_ms, &expiration, &flags);
        } else if (!meta_dropped) {
            /* Before the lock goes, so that it is never the next holder's. */
            if (meta_drop(&c, &k) != 0) {
                st = anylock_op_error(op, ANYLOCK_IO, "memcached %s: release of lock \"%.48s\": the connection "
                                      "failed before the lock was released (it is still held)", mc->servers,
                                      op->name);
                goto done;
            }
            meta_dropped = 1;
        }
        if (!arm(&c)) {
            st = out_of_time(&c, what);
            goto done;
        }
        int64_t sent = anylock_now_ns();
        rc = memcached_cas(c.m, k.lock, k.lock_len, op->id, op->id_len, expiration, flags, it->cas);
        if (rc == MEMCACHED_SUCCESS) {
            if (!release) {
                op->granted_at = sent;
                if (meta_at >= 0 && its[meta_at].found)
                    meta_move(&c, &k, &its[meta_at], expiration);
            } else if (op->lock_state) {
                mc_lock *ls = op->lock_state;
                ls->streak = wait_at >= 0 && its[wait_at].found ? ls->streak + 1 : 0;
                ls->released_at = anylock_now_ns();
            }
            st = ANYLOCK_OK;
            goto done;
        }
        if (rc == MEMCACHED_NOTFOUND) {
            st = anylock_op_error(op, ANYLOCK_NOT_HELD, "lock \"%.64s\" is not held (expired, evicted or reset)",
                                  op->name);
            goto done;
        }
        if (rc != MEMCACHED_DATA_EXISTS) {
            /* Out of memory: a cas stores a new item, which a full memcached
             * cannot; the lock stays (until its expiry) and the caller hears
             * so. */
            st = server_oom(c.m, rc) ? fail_as(&c, ANYLOCK_STORE, rc, what,
                                               release ? ": the lock stays held until its expiry or a reset" : "")
                                     : fail_sent(&c, rc, what);
            goto done;
        }
        /* The item changed since gets: read it again to see who owns it. */
    }
    st = anylock_op_error(op, ANYLOCK_STORE, "lock \"%.64s\": the item kept changing during %s until the command "
                          "timeout%s", op->name, what, release ? " (the lock is still held)" : "");
done:
    for (int i = 0; i < 3; i++)
        item_clear(&its[i]);
    call_end(&c);
    return st;
}

static anylock_status mc_release(anylock_op *op)
{
    return change_owned(op, 1);
}

static anylock_status mc_extend(anylock_op *op)
{
    return change_owned(op, 0);
}

/* ---- inspect, reset ---- */

/* Milliseconds left for an item whose flags hold its expiry as Unix
 * seconds on its writer's clock (-1: never).  memcached keeps an item up to
 * about a second past it: one still there has a little time left. */
static int64_t left_ms(uint32_t flags)
{
    if (!flags)
        return -1;
    double s = (double)flags - wall_now();
    return s > 0.001 ? (int64_t)(s * 1000 + 0.5) : 1;
}

/* Emits the holders of op->key, with their metadata: one round trip for a
 * lock and its metadata, one more for a group's members.  memcached cannot
 * enumerate keys, so there is nothing to list. */
static anylock_status mc_enumerate(anylock_op *op, anylock_emitter *em)
{
    mc_client *mc = op->state;
    if (!op->name)
        return anylock_op_error(op, ANYLOCK_UNSUPPORTED, "memcached cannot list its keys");
    mc_keys k;
    make_keys(op, &k);
    mc_call c;
    anylock_status st = call_begin(op, &c, anylock_op_io_deadline(op, mc->command_ms));
    if (st != ANYLOCK_OK)
        return st;
    const char *keys[2] = {k.lock, k.meta};
    size_t lens[2] = {k.lock_len, k.meta_len};
    mc_item its[2];
    memset(its, 0, sizeof its);
    memcached_return_t rc = read_items(&c, keys, lens, 2, its, NULL, 0);
    mc_group g;
    memset(&g, 0, sizeof g);
    if (rc != MEMCACHED_SUCCESS) {
        st = fail(&c, rc, "inspect");
    } else if (is_group(&its[0]) && group_parse(&its[0], &g) == 0) {
        if ((rc = group_read_members(&c, &k, &g)) != MEMCACHED_SUCCESS)
            st = fail(&c, rc, "inspect");
        for (size_t i = 0; st == ANYLOCK_OK && i < g.n; i++) {
            const mc_member *m = &g.m[i];
            if (!m->alive)
                continue;
            anylock_record r = {
                .name = op->name,
                .name_len = op->name_len,
                .id = m->id,
                .id_len = m->id_len,
                .expires_in_ms = left_ms(m->item.flags),
                .mode = g.mode,
                .permits = g.mode == ANYLOCK_SEMAPHORE ? g.permits : 0,
                .meta = m->item.value_len ? m->item.value : NULL,
                .meta_len = m->item.value_len,
            };
            if (anylock_emit(em, &r))
                break;
        }
    } else if (its[0].found) {
        anylock_record r = {
            .name = op->name,
            .name_len = op->name_len,
            .id = its[0].value,
            .id_len = its[0].value_len,
            .expires_in_ms = left_ms(its[0].flags),
            .mode = ANYLOCK_EXCLUSIVE,
            .meta = its[1].found ? its[1].value : NULL,
            .meta_len = its[1].found ? its[1].value_len : 0,
        };
        anylock_emit(em, &r);
    }
    group_free(&g);
    item_clear(&its[0]);
    item_clear(&its[1]);
    call_end(&c);
    return st;
}

/* Deletes the lock's item whoever holds it, with its metadata, its
 * waiting-writer marker and, for a group, its members' items. */
static anylock_status mc_reset(anylock_op *op)
{
    mc_client *mc = op->state;
    mc_keys k;
    make_keys(op, &k);
    mc_call c;
    anylock_status st = call_begin(op, &c, anylock_op_io_deadline(op, mc->command_ms));
    if (st != ANYLOCK_OK)
        return st;
    mc_item it;
    memset(&it, 0, sizeof it);
    memcached_return_t rc = read_lock(&c, &k, &it);
    if (rc != MEMCACHED_SUCCESS) {
        st = read_fail(&c, rc, "reset");
        call_end(&c);
        return st;
    }
    mc_group g;
    memset(&g, 0, sizeof g);
    if (is_group(&it))
        group_parse(&it, &g);
    const char *keys[3] = {k.meta, k.wait, k.lock};
    size_t lens[3] = {k.meta_len, k.wait_len, k.lock_len};
    for (int i = 0; i < 3 && st == ANYLOCK_OK; i++) {
        if (!arm(&c)) {
            st = out_of_time(&c, "reset");
            break;
        }
        rc = memcached_delete_by_key(c.m, k.lock, k.lock_len, keys[i], lens[i], 0);
        if (rc != MEMCACHED_SUCCESS && rc != MEMCACHED_NOTFOUND)
            st = i == 2 ? fail_sent(&c, rc, "reset") : fail(&c, rc, "reset");
    }
    for (size_t i = 0; st == ANYLOCK_OK && i < g.n; i++)
        member_drop(&c, &k, g.m[i].id, g.m[i].id_len);
    group_free(&g);
    item_clear(&it);
    call_end(&c);
    return st;
}

/* memcached cannot enumerate keys, so there is no LIST flag and no
 * reset_all: the core answers ANYLOCK_UNSUPPORTED (see docs/memcached.md for
 * why no index is kept).  No TOKEN: nothing in memcached gives a number
 * that rises for ever with each acquisition (docs/memcached.md). */
const anylock_backend anylock__memcached_backend = {
    .version = ANYLOCK_BACKEND_VERSION,
    .name = "memcached",
    .state_size = sizeof(mc_client),
    .flags = ANYLOCK_BACKEND_SHARED | ANYLOCK_BACKEND_SEMAPHORE,
    .expiry_resolution_ms = 1000,
    .params = mc_params,
    .open = mc_open,
    .close = mc_close,
    .acquire = mc_acquire,
    .release = mc_release,
    .extend = mc_extend,
    .reset = mc_reset,
    .reset_all = NULL,
    .lock_size = sizeof(mc_lock),
    .enumerate = mc_enumerate,
};
