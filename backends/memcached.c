/*
 * memcached://host[:port][,host[:port]...]: locks on memcached through
 * libmemcached.
 *
 * A lock is one item: its value is the owner id, its flags hold the absolute
 * expiry (Unix seconds on the holder's clock, 0 for a lock that never
 * expires) so that inspect can report the time left, which memcached itself
 * cannot tell.  Acquire is `add` (atomic create-if-absent); release and
 * extend are gets + compare the id + `cas`, so only the owner can change the
 * item; release's cas sets an expiration of 2592001 s, which both protocols
 * read as an absolute date in 1970, so the item expires at once (libmemcached
 * has no compare-and-delete).  Reset is an unconditional delete.  memcached
 * cannot notify, so waiters poll with capped, jittered exponential backoff.
 *
 * Several servers are spread by libmemcached's consistent (ketama) hashing.
 * Failed servers are never ejected: ejection would move a key to another
 * server, where a second owner could take a lock that is still held.
 *
 * libmemcached's memcached_st is not thread-safe, so the client keeps a
 * mutex-guarded pool of clones of one configured master; a call borrows a
 * connection for its round trips only, never while it sleeps between polls.
 */
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
/* memcached reads expirations above 30 days as absolute Unix times. */
#define MC_RELATIVE_MAX 2592000
/* An absolute time in January 1970: the item expires at once. */
#define MC_EXPIRE_NOW 2592001
/* Idle connections kept per client; more are made on demand and freed. */
#define MC_POOL_IDLE_MAX 32
/* Retries of gets + cas when the item changed between the two (the owner's
 * other handles may extend it concurrently). */
#define MC_CAS_RETRIES 8

typedef struct mc_client {
    pthread_mutex_t mu; /* guards master and idle */
    int mu_init;
    memcached_st *master; /* configured, never used for I/O itself */
    memcached_st *idle[MC_POOL_IDLE_MAX];
    size_t nidle;
    int64_t poll_max_ms;
    char servers[200]; /* for messages */
} mc_client;

/* ---- keys ---- */

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

/*
 * The memcached key for op->key (prefix + name), in out (MC_KEY_MAX + 1
 * bytes).  A key of 1 to 250 graphic ASCII bytes without '~' is used as it
 * is.  Any other key becomes P~H: H is the 64 lower-case hex digits of the
 * SHA-256 of the whole key, and P is the prefix when the prefix itself is
 * graphic ASCII without '~' (so that an operator still sees whose key it is),
 * else empty.  Raw keys never contain '~' and every mapped key does, so the
 * two forms cannot meet; two mapped keys meet only if their SHA-256 does.
 * The rule depends on nothing but the key, so every process and both
 * protocols agree on it.
 */
static size_t map_key(const anylock_op *op, char *out)
{
    if (op->key_len <= MC_KEY_MAX && all_raw(op->key, op->key_len)) {
        memcpy(out, op->key, op->key_len);
        out[op->key_len] = '\0';
        return op->key_len;
    }
    size_t n = 0;
    if (all_raw(op->prefix, op->prefix_len)) {
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

/* ---- the connection pool ---- */

static memcached_st *borrow(anylock_op *op, anylock_status *st)
{
    mc_client *mc = op->state;
    pthread_mutex_lock(&mc->mu);
    memcached_st *m = mc->nidle ? mc->idle[--mc->nidle] : memcached_clone(NULL, mc->master);
    pthread_mutex_unlock(&mc->mu);
    *st = m ? ANYLOCK_OK : anylock_op_error(op, ANYLOCK_NOMEM, "memcached: cannot make a connection handle");
    return m;
}

/* Returns m to the pool; a connection that failed is freed rather than kept,
 * so that the next call starts on fresh sockets. */
static void give_back(anylock_op *op, memcached_st *m, int broken)
{
    mc_client *mc = op->state;
    if (!broken) {
        pthread_mutex_lock(&mc->mu);
        if (mc->nidle < MC_POOL_IDLE_MAX) {
            mc->idle[mc->nidle++] = m;
            m = NULL;
        }
        pthread_mutex_unlock(&mc->mu);
    }
    if (m)
        memcached_free(m);
}

/* ---- errors ---- */

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
    return st == ANYLOCK_CONNECT || st == ANYLOCK_IO || st == ANYLOCK_PROTOCOL;
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
    size_t n = strlen(out);
    while (n && (out[n - 1] == ' ' || out[n - 1] == ','))
        out[--n] = '\0';
}

static anylock_status fail(anylock_op *op, memcached_st *m, memcached_return_t rc, const char *what)
{
    mc_client *mc = op->state;
    const char *raw = memcached_last_error_message(m);
    char detail[ANYLOCK_ERRMSG_MAX];
    tidy_detail(raw && *raw ? raw : memcached_strerror(m, rc), detail, sizeof detail);
    if (!op->name)
        return anylock_op_error(op, classify(m, rc), "memcached %s: %s: %s", mc->servers, what, detail);
    return anylock_op_error(op, classify(m, rc), "memcached %s: %s of lock \"%.48s\": %s", mc->servers, what,
                            op->name, detail);
}

/* ---- expiry ---- */

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The expiration to send for op->expires_ms (already whole seconds, > 0) and
 * the flags that record it.  memcached's clock ticks once a second, so an
 * item given N seconds may vanish anywhere from N - 1 to N seconds later;
 * one more second is sent so that a lock never expires before the time its
 * owner was promised (it may live up to a second longer).  Up to 30 days the
 * expiration is relative; beyond, memcached wants an absolute Unix time,
 * which is then read on the server's clock. */
static void expiry_for(const anylock_op *op, time_t *expiration, uint32_t *flags)
{
    if (op->expires_ms == 0) {
        *expiration = 0;
        *flags = 0;
        return;
    }
    int64_t secs = (op->expires_ms + 999) / 1000 + 1;
    time_t now = time(NULL);
    *expiration = secs <= MC_RELATIVE_MAX ? (time_t)secs : now + (time_t)secs;
    *flags = (uint32_t)(now + secs - 1);
}

/* ---- reads ---- */

typedef struct mc_item {
    int found;
    char value[ANYLOCK_ID_MAX + 1];
    size_t value_len;
    int foreign; /* the value is not an owner id anylock could have written */
    uint32_t flags;
    uint64_t cas;
} mc_item;

/* gets key: fills it (found = 0 when absent). */
static memcached_return_t read_item(memcached_st *m, const char *key, size_t key_len, mc_item *it)
{
    memset(it, 0, sizeof *it);
    const char *keys[1] = {key};
    size_t lens[1] = {key_len};
    memcached_return_t rc = memcached_mget(m, keys, lens, 1);
    if (rc != MEMCACHED_SUCCESS)
        return rc;
    /* On the stack: libmemcached frees a heap result by itself when the
     * fetch ends, but only clears one the caller owns. */
    memcached_result_st result;
    memcached_result_st *r = memcached_result_create(m, &result);
    if (!r)
        return MEMCACHED_MEMORY_ALLOCATION_FAILURE;
    memcached_return_t frc;
    while (memcached_fetch_result(m, r, &frc)) {
        if (it->found)
            continue;
        size_t n = memcached_result_length(r);
        const char *v = memcached_result_value(r);
        it->found = 1;
        it->flags = memcached_result_flags(r);
        it->cas = memcached_result_cas(r);
        it->foreign = n == 0 || n > ANYLOCK_ID_MAX;
        for (size_t i = 0; i < n && !it->foreign; i++)
            it->foreign = v[i] < 0x21 || v[i] > 0x7e;
        if (!it->foreign) {
            memcpy(it->value, v, n);
            it->value[n] = '\0';
            it->value_len = n;
        }
    }
    memcached_result_free(r);
    if (frc == MEMCACHED_END || frc == MEMCACHED_NOTFOUND || frc == MEMCACHED_SUCCESS)
        return MEMCACHED_SUCCESS;
    return frc;
}

static int owned_by(const mc_item *it, const anylock_op *op)
{
    return it->found && !it->foreign && it->value_len == op->id_len && !memcmp(it->value, op->id, op->id_len);
}

static anylock_status no_cas(anylock_op *op)
{
    mc_client *mc = op->state;
    return anylock_op_error(op, ANYLOCK_STORE_UNSAFE,
                            "memcached %s returns no CAS values (started with -C?): owners could not release "
                            "or extend their locks safely",
                            mc->servers);
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
 * For each server a probe key that hashes to it is written, read back with
 * gets and deleted.  Probe keys contain '~' followed by text that is not 64
 * hex digits, so no lock key is ever a probe key.
 */
static anylock_status probe_cas(anylock_op *op)
{
    anylock_status st;
    memcached_st *m = borrow(op, &st);
    if (!m)
        return st;
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
        memcached_return_t rc = memcached_set(m, key, (size_t)n, "probe", 5, 30, 0);
        mc_item it;
        if (rc == MEMCACHED_SUCCESS)
            rc = read_item(m, key, (size_t)n, &it);
        if (rc != MEMCACHED_SUCCESS) {
            st = fail(op, m, rc, "checking CAS support");
            give_back(op, m, is_broken(m, rc));
            return st;
        }
        memcached_delete(m, key, (size_t)n, 0);
        if (it.found && it.cas == 0) {
            give_back(op, m, 0);
            return no_cas(op);
        }
    }
    give_back(op, m, 0);
    return ANYLOCK_OK;
}

static anylock_status mc_open(anylock_op *op, const anylock_url *url)
{
    mc_client *mc = op->state;
    if (url->user || url->password)
        return anylock_op_error(op, ANYLOCK_URL_BAD_USERINFO,
                                "memcached:// takes no user or password (SASL is not supported)");
    if (url->nhosts == 0)
        return anylock_op_error(op, ANYLOCK_URL_BAD_HOST, "memcached:// needs at least one host");
    if (url->path[0] && strcmp(url->path, "/"))
        return anylock_op_error(op, ANYLOCK_URL_BAD_PATH, "memcached:// takes no path");

    int binary = 0;
    const char *proto = anylock_url_param_get(url, "protocol");
    if (proto && !strcmp(proto, "binary"))
        binary = 1;
    else if (proto && strcmp(proto, "text"))
        return anylock_op_error(op, ANYLOCK_URL_BAD_PARAM, "URL parameter protocol must be \"text\" or \"binary\"");
    int64_t connect_ms, command_ms, io_ms;
    anylock_status st = anylock_url_param_ms(op, url, "connect_timeout", 2000, &connect_ms);
    if (st == ANYLOCK_OK)
        st = anylock_url_param_ms(op, url, "command_timeout", 2000, &command_ms);
    if (st == ANYLOCK_OK)
        st = anylock_url_param_ms(op, url, "io_timeout", command_ms, &io_ms);
    if (st == ANYLOCK_OK)
        st = anylock_url_param_ms(op, url, "poll_max", 3, &mc->poll_max_ms);
    if (st != ANYLOCK_OK)
        return st;
    if (anylock_url_param_get(url, "io_timeout")) {
        if (anylock_url_param_get(url, "command_timeout"))
            return anylock_op_error(op, ANYLOCK_URL_BAD_PARAM,
                                    "URL parameters command_timeout and io_timeout are the same: give one");
        command_ms = io_ms;
    }
    if (connect_ms <= 0 || command_ms <= 0 || mc->poll_max_ms <= 0 || connect_ms > INT32_MAX / 1000 ||
        command_ms > INT32_MAX / 1000)
        return anylock_op_error(op, ANYLOCK_URL_BAD_PARAM,
                                "URL parameters connect_timeout, command_timeout and poll_max must be more than 0 s "
                                "(timeouts at most %d s)",
                                INT32_MAX / 1000000);

    pthread_mutex_init(&mc->mu, NULL);
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
     * server is retried on the next call rather than after a pause. */
    if ((st = behave(op, m, MEMCACHED_BEHAVIOR_KETAMA, 1, "ketama hashing")) ||
        (st = behave(op, m, MEMCACHED_BEHAVIOR_SUPPORT_CAS, 1, "CAS support")) ||
        (st = behave(op, m, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, (uint64_t)binary, "the protocol")) ||
        (st = behave(op, m, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1, "TCP_NODELAY")) ||
        (st = behave(op, m, MEMCACHED_BEHAVIOR_AUTO_EJECT_HOSTS, 0, "no ejection")) ||
        (st = behave(op, m, MEMCACHED_BEHAVIOR_REMOVE_FAILED_SERVERS, 0, "no removal")) ||
        (st = behave(op, m, MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 0, "the retry timeout")) ||
        (st = behave(op, m, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, (uint64_t)connect_ms, "connect_timeout")) ||
        (st = behave(op, m, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, (uint64_t)command_ms, "command_timeout")) ||
        (st = behave(op, m, MEMCACHED_BEHAVIOR_SND_TIMEOUT, (uint64_t)command_ms * 1000, "command_timeout")) ||
        (st = behave(op, m, MEMCACHED_BEHAVIOR_RCV_TIMEOUT, (uint64_t)command_ms * 1000, "command_timeout")))
        return st;
    return probe_cas(op);
}

static void mc_close(anylock_op *op)
{
    mc_client *mc = op->state;
    while (mc->nidle)
        memcached_free(mc->idle[--mc->nidle]);
    if (mc->master)
        memcached_free(mc->master);
    mc->master = NULL;
    if (mc->mu_init)
        pthread_mutex_destroy(&mc->mu);
    mc->mu_init = 0;
}

/* ---- the slots ---- */

/* One attempt of acquire: OK, BUSY, ALREADY_HELD or an error. */
static anylock_status try_add(anylock_op *op, const char *key, size_t key_len)
{
    anylock_status st;
    memcached_st *m = borrow(op, &st);
    if (!m)
        return st;
    time_t expiration;
    uint32_t flags;
    /* Twice at most: a lock freed between add and get is tried once more. */
    for (int round = 0; round < 2; round++) {
        expiry_for(op, &expiration, &flags);
        memcached_return_t rc = memcached_add(m, key, key_len, op->id, op->id_len, expiration, flags);
        if (rc == MEMCACHED_SUCCESS) {
            give_back(op, m, 0);
            return ANYLOCK_OK;
        }
        if (rc != MEMCACHED_NOTSTORED && rc != MEMCACHED_DATA_EXISTS) {
            st = fail(op, m, rc, "add");
            give_back(op, m, is_broken(m, rc));
            return st;
        }
        mc_item it;
        rc = read_item(m, key, key_len, &it);
        if (rc != MEMCACHED_SUCCESS) {
            st = fail(op, m, rc, "get");
            give_back(op, m, is_broken(m, rc));
            return st;
        }
        if (it.found) {
            give_back(op, m, 0);
            if (owned_by(&it, op))
                return anylock_op_error(op, ANYLOCK_ALREADY_HELD, "lock \"%.64s\" is already held by this owner id",
                                        op->name);
            return ANYLOCK_BUSY;
        }
    }
    give_back(op, m, 0);
    return ANYLOCK_BUSY;
}

static anylock_status mc_acquire(anylock_op *op)
{
    mc_client *mc = op->state;
    char key[MC_KEY_MAX + 1];
    size_t key_len = map_key(op, key);
    anylock_backoff b;
    /* A short first retry catches a quick release; the ceiling bounds both
     * the latency after a release and the load many waiters put on memcached. */
    anylock_backoff_init(&b, mc->poll_max_ms < 2 ? mc->poll_max_ms : 2, mc->poll_max_ms);
    for (;;) {
        anylock_status st = try_add(op, key, key_len);
        if (st != ANYLOCK_BUSY)
            return st;
        if (op->deadline == 0)
            return ANYLOCK_BUSY;
        if (!anylock_backoff_wait(&b, op->deadline))
            return ANYLOCK_TIMEOUT;
    }
}

/* gets + cas for release (expiration MC_EXPIRE_NOW) and extend. */
static anylock_status change_owned(anylock_op *op, int release)
{
    char key[MC_KEY_MAX + 1];
    size_t key_len = map_key(op, key);
    const char *what = release ? "release" : "extend";
    anylock_status st;
    memcached_st *m = borrow(op, &st);
    if (!m)
        return st;
    for (int round = 0; round < MC_CAS_RETRIES; round++) {
        mc_item it;
        memcached_return_t rc = read_item(m, key, key_len, &it);
        if (rc != MEMCACHED_SUCCESS) {
            st = fail(op, m, rc, what);
            give_back(op, m, is_broken(m, rc));
            return st;
        }
        if (!owned_by(&it, op)) {
            give_back(op, m, 0);
            return anylock_op_error(op, ANYLOCK_NOT_HELD, "lock \"%.64s\" is %s", op->name,
                                    it.found ? "held by another owner" : "not held (expired, evicted or reset)");
        }
        if (it.cas == 0) {
            give_back(op, m, 0);
            return no_cas(op);
        }
        time_t expiration = MC_EXPIRE_NOW;
        uint32_t flags = it.flags;
        if (!release) {
            if (it.flags == 0) {
                give_back(op, m, 0);
                return anylock_op_error(op, ANYLOCK_NOT_EXPIRABLE, "lock \"%.64s\" was taken without an expiry",
                                        op->name);
            }
            expiry_for(op, &expiration, &flags);
        }
        rc = memcached_cas(m, key, key_len, op->id, op->id_len, expiration, flags, it.cas);
        if (rc == MEMCACHED_SUCCESS) {
            give_back(op, m, 0);
            return ANYLOCK_OK;
        }
        if (rc == MEMCACHED_NOTFOUND) {
            give_back(op, m, 0);
            return anylock_op_error(op, ANYLOCK_NOT_HELD, "lock \"%.64s\" is not held (expired, evicted or reset)",
                                    op->name);
        }
        if (rc != MEMCACHED_DATA_EXISTS) {
            st = fail(op, m, rc, what);
            give_back(op, m, is_broken(m, rc));
            return st;
        }
        /* The item changed since gets: read it again to see who owns it. */
    }
    give_back(op, m, 0);
    return anylock_op_error(op, ANYLOCK_STORE, "lock \"%.64s\": the item kept changing during %s", op->name, what);
}

static anylock_status mc_release(anylock_op *op)
{
    return change_owned(op, 1);
}

static anylock_status mc_extend(anylock_op *op)
{
    return change_owned(op, 0);
}

static anylock_status mc_inspect(anylock_op *op, anylock_info *info)
{
    char key[MC_KEY_MAX + 1];
    size_t key_len = map_key(op, key);
    anylock_status st;
    memcached_st *m = borrow(op, &st);
    if (!m)
        return st;
    mc_item it;
    memcached_return_t rc = read_item(m, key, key_len, &it);
    if (rc != MEMCACHED_SUCCESS) {
        st = fail(op, m, rc, "inspect");
        give_back(op, m, is_broken(m, rc));
        return st;
    }
    give_back(op, m, 0);
    if (!it.found)
        return ANYLOCK_OK;
    info->held = 1;
    if (!it.foreign)
        memcpy(info->owner, it.value, it.value_len + 1);
    if (it.flags == 0) {
        info->expires_in = ANYLOCK_FOREVER;
    } else {
        /* The holder's clock wrote the expiry; memcached keeps an item up to
         * about a second past it.  A lock still there is reported with a
         * little time left rather than none. */
        double left = (double)it.flags - wall_now();
        info->expires_in = left > 0.001 ? left : 0.001;
    }
    return ANYLOCK_OK;
}

static anylock_status mc_reset(anylock_op *op)
{
    char key[MC_KEY_MAX + 1];
    size_t key_len = map_key(op, key);
    anylock_status st;
    memcached_st *m = borrow(op, &st);
    if (!m)
        return st;
    memcached_return_t rc = memcached_delete(m, key, key_len, 0);
    if (rc != MEMCACHED_SUCCESS && rc != MEMCACHED_NOTFOUND) {
        st = fail(op, m, rc, "reset");
        give_back(op, m, is_broken(m, rc));
        return st;
    }
    give_back(op, m, 0);
    return ANYLOCK_OK;
}

/* memcached cannot enumerate keys, so reset_all and list are left out: the
 * core answers ANYLOCK_UNSUPPORTED (see docs/memcached.md for why no index
 * is kept). */
const anylock_backend anylock__memcached_backend = {
    .version = 1, /* TODO(v2 port) */
    .name = "memcached",
    .state_size = sizeof(mc_client),
    .flags = 0,
    .expiry_resolution_ms = 1000,
    .params = mc_params,
    .open = mc_open,
    .close = mc_close,
    .acquire = mc_acquire,
    .release = mc_release,
    .extend = mc_extend,
    .inspect = mc_inspect,
    .reset = mc_reset,
    .reset_all = NULL,
    .list = NULL,
};
