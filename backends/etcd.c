/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * etcd://host[:port][,host[:port]...]: locks on an etcd 3.4+ cluster, through
 * its v3 JSON API (etcd_http.c), with etcd's own ordered recipe, the one
 * clientv3/concurrency's Mutex and `etcdctl lock` use (docs/etcd.md):
 *
 *   Every contender puts a key <prefix><name>/<lease-id-hex> on a lease of
 *   its own whose TTL is the lock's expiry; the value is its owner id.  The
 *   contenders of a name are ordered by their keys' create revisions: the
 *   earliest holds the lock, and each later one watches only the key just
 *   before it (no herd) and looks again when that key is deleted.  So the
 *   lock is fair (first come, first served), a crashed holder's or waiter's
 *   key goes with its lease, and `etcdctl lock <prefix><name>` and anylock
 *   exclude each other: both wait for every earlier key under the name.
 *
 *   Shared and semaphore modes extend the same queue, as etcd's recipes
 *   RWMutex does: a shared contender's key ends in ".shared" and it waits
 *   only for earlier non-shared ones (so a waiting writer holds back every
 *   reader that came after it: writer preference); a semaphore contender's
 *   key ends in ".sem<N>" and it holds while fewer than N contenders came
 *   before it.
 *
 *   Holder metadata is a second key on the same lease, <hex>.meta, put in
 *   the same transaction and so with the same create revision (the owner id
 *   stays the whole value of the contender key).
 *
 *   The fencing token is the contender key's create revision: etcd's store
 *   revision is strictly increasing, and holders are admitted in revision
 *   order.
 *
 * Acquire is a lease grant and one transaction (put our keys; if the name's
 * directory was not empty, read it back), so a free lock costs two round
 * trips and release one (revoking the lease deletes both keys).  A held
 * key that is deleted by anyone else is reported lost at once by the
 * client's holder watch (etcd_holders.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "builtin.h"
#include "etcd.h"

#define DEFAULT_DIAL_TIMEOUT_MS 2000
#define DEFAULT_COMMAND_TIMEOUT_MS 5000
/* A waiter looks at the queue again after this long even if its watch said
 * nothing: a member that stalls (stopped, cut off) cannot deliver events,
 * and the look (a linearizable read) moves the client to a member that
 * can.  Not a poll of the lock: wake-ups come from the watch. */
#define DEFAULT_RECHECK_MS 3000
/* The lease a waiter for a lock without expiry keeps alive while it waits
 * (its key is detached from it once it holds the lock). */
#define WAIT_TTL_S 10
/* A blocking acquire rides out a cluster that cannot answer (an election,
 * members restarting) for this long, or until its deadline if sooner. */
#define OUTAGE_MS 15000
/* A waiter that got the lock refreshes its lease first when more than this
 * fraction of it has passed since the last refresh, so the holder starts
 * with at least 90% of its expiry. */
#define REFRESH_FRACTION 10

static const char *const etcd_params[] = {"dial_timeout", "command_timeout", "recheck", NULL};

typedef struct etcd_state {
    etcd_http *http;
    int64_t recheck_ms;

    /* The janitor: revokes, in the background, the leases of contenders
     * that gave up (timed out, busy), so acquire returns by its deadline
     * and their keys still go at once rather than with their TTL. */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int mu_init;
    int64_t *pending;
    size_t npending, cap;
    int stopping, started;
    int64_t stop_deadline; /* once stopping: revokes still queued after it are dropped */
    pthread_t janitor;

    etcd_holders *holders; /* the watch of the keys held (etcd_holders.c) */
} etcd_state;

/* What a handle knows of the contender it made (per-lock state). */
typedef struct etcd_lock {
    int active;       /* describes a contender this handle made or adopted */
    int64_t lease;    /* its keys' lease; 0 once detached (a lock without expiry) */
    int64_t rev;      /* its key's create revision (0: not known) */
    int64_t ttl;      /* the lease's TTL as asked, seconds (0: not known) */
    char hex[20];     /* the lease id in hex, as in the key */
    char suffix[24];  /* "", ".shared", ".sem<N>" */
    etcd_held held;   /* while held: in the holder watch */
} etcd_lock;

/* Forgets the contender l describes (and takes it out of the watch). */
static void lock_clear(etcd_state *s, etcd_lock *l)
{
    etcd_holders_remove(s->holders, &l->held);
    memset(l, 0, sizeof *l);
}

/* ---- keys ------------------------------------------------------------------- */

/* <key>/<hex><suffix> */
static char *contender_key(const anylock_op *op, const etcd_lock *l, const char *suffix, size_t *len)
{
    size_t n = op->key_len + 1 + strlen(l->hex) + strlen(suffix);
    char *k = malloc(n + 1);
    if (!k)
        return NULL;
    memcpy(k, op->key, op->key_len);
    snprintf(k + op->key_len, n + 1 - op->key_len, "/%s%s", l->hex, suffix);
    *len = n;
    return k;
}

static void mode_suffix(const anylock_op *op, char *out, size_t size)
{
    if (op->mode == ANYLOCK_SHARED)
        snprintf(out, size, ".shared");
    else if (op->mode == ANYLOCK_SEMAPHORE)
        snprintf(out, size, ".sem%u", op->permits);
    else
        out[0] = '\0';
}

/* {"key":..,"range_end":..} of the name's directory, <key>/ */
static void add_dir_range(etcd_buf *b, const anylock_op *op)
{
    /* key + "/" to key + "0" ('/' + 1) */
    char *d = malloc(op->key_len + 1);
    if (!d) {
        b->failed = 1;
        return;
    }
    memcpy(d, op->key, op->key_len);
    d[op->key_len] = '/';
    etcd_buf_add(b, "\"key\":\"");
    etcd_buf_b64(b, d, op->key_len + 1);
    etcd_buf_add(b, "\",\"range_end\":\"");
    d[op->key_len] = '0';
    etcd_buf_b64(b, d, op->key_len + 1);
    etcd_buf_add(b, "\"");
    free(d);
}

/* ---- what a range found ---------------------------------------------------------- */

typedef struct entry {
    char *key;         /* decoded, NUL-terminated */
    size_t key_len;
    size_t name_off, name_len; /* the lock name within key */
    const char *rest;  /* after "<name>/" */
    size_t hex_len;    /* leading lowercase hex digits of rest */
    int is_meta;
    char *value;
    size_t value_len;
    int64_t create, lease;
    anylock_mode mode;
    unsigned permits;
    const char *meta;  /* points into the meta entry's value */
    size_t meta_len;
    int has_meta;      /* written by anylock (its .meta sibling exists) */
    int holder;
} entry;

typedef struct entries {
    entry *v;
    size_t n, cap;
    int64_t revision; /* the store revision the range was read at */
} entries;

static void entries_free(entries *es)
{
    for (size_t i = 0; i < es->n; i++) {
        free(es->v[i].key);
        free(es->v[i].value);
    }
    free(es->v);
    memset(es, 0, sizeof *es);
}

static void parse_suffix(entry *e)
{
    const char *s = e->rest + e->hex_len;
    e->mode = ANYLOCK_EXCLUSIVE;
    e->permits = 0;
    if (!strcmp(s, ".shared")) {
        e->mode = ANYLOCK_SHARED;
    } else if (!strncmp(s, ".sem", 4) && s[4] >= '1' && s[4] <= '9') {
        char *end;
        errno = 0;
        unsigned long n = strtoul(s + 4, &end, 10);
        if (!*end && !errno && n <= ANYLOCK_PERMITS_MAX) {
            e->mode = ANYLOCK_SEMAPHORE;
            e->permits = (unsigned)n;
        }
    }
    /* Anything else in the directory (etcdctl lock's bare <hex>, a key of
     * another client) is an exclusive contender, as etcd's Mutex sees it. */
}

/*
 * Reads the kvs of a range into es.  With name_len given (one lock), only
 * keys <base>/<rest> whose rest has no '/' count (longer ones belong to a
 * name that continues with '/'); without it (a whole prefix), a key's name
 * is what lies between the prefix and its last '/'.
 */
static anylock_status collect(anylock_op *op, json_object *kvs, const char *base, size_t base_len, int one_name,
                              entries *es)
{
    size_t n = kvs && json_object_is_type(kvs, json_type_array) ? json_object_array_length(kvs) : 0;
    for (size_t i = 0; i < n; i++) {
        json_object *kv = json_object_array_get_idx(kvs, i);
        json_object *ko = etcd_get(kv, "key"), *vo = etcd_get(kv, "value");
        if (!ko || !json_object_is_type(ko, json_type_string))
            return anylock_op_error(op, ANYLOCK_PROTOCOL, "etcd: a key in a range answer is not a string");
        size_t klen = 0, vlen = 0;
        char *k = etcd_unb64(json_object_get_string(ko), &klen);
        char *v = vo && json_object_is_type(vo, json_type_string) ? etcd_unb64(json_object_get_string(vo), &vlen)
                                                                   : strdup("");
        if (!k || !v) {
            free(k);
            free(v);
            return anylock_op_error(op, ANYLOCK_PROTOCOL, "etcd: bad base64 in a range answer (or no memory)");
        }
        entry e;
        memset(&e, 0, sizeof e);
        e.key = k;
        e.key_len = klen;
        e.value = v;
        e.value_len = vlen;
        int keep = klen > base_len && !memcmp(k, base, base_len) && strlen(k) == klen;
        if (keep && one_name) {
            e.name_off = op->prefix_len;
            e.name_len = op->name_len;
            e.rest = k + base_len;
            keep = strchr(e.rest, '/') == NULL && *e.rest;
        } else if (keep) {
            const char *slash = strrchr(k + base_len, '/');
            keep = slash && slash > k + base_len && slash[1];
            if (keep) {
                e.name_off = base_len;
                e.name_len = (size_t)(slash - (k + base_len));
                e.rest = slash + 1;
            }
        }
        if (!keep) {
            free(k);
            free(v);
            continue;
        }
        e.hex_len = strspn(e.rest, "0123456789abcdef");
        e.is_meta = e.hex_len > 0 && !strcmp(e.rest + e.hex_len, ".meta");
        e.create = etcd_get_int(kv, "create_revision", 0);
        e.lease = etcd_get_int(kv, "lease", 0);
        parse_suffix(&e);
        if (es->n == es->cap) {
            size_t cap = es->cap ? es->cap * 2 : 16;
            entry *g = realloc(es->v, cap * sizeof *g);
            if (!g) {
                free(k);
                free(v);
                return anylock_op_error(op, ANYLOCK_NOMEM, "etcd: out of memory");
            }
            es->v = g;
            es->cap = cap;
        }
        es->v[es->n++] = e;
    }
    return ANYLOCK_OK;
}

static int same_name(const entry *a, const entry *b)
{
    return a->name_len == b->name_len && !memcmp(a->key + a->name_off, b->key + b->name_off, a->name_len);
}

static int by_name_then_create(const void *pa, const void *pb)
{
    const entry *a = pa, *b = pb;
    size_t m = a->name_len < b->name_len ? a->name_len : b->name_len;
    int c = memcmp(a->key + a->name_off, b->key + b->name_off, m);
    if (c)
        return c;
    if (a->name_len != b->name_len)
        return a->name_len < b->name_len ? -1 : 1;
    if (a->is_meta != b->is_meta)
        return a->is_meta ? 1 : -1; /* metadata after every contender */
    return a->create < b->create ? -1 : a->create > b->create;
}

/*
 * Sorts es by name then create revision, attaches each .meta entry to its
 * contender, and marks the holders of each name: the first contender if
 * exclusive; a shared one with only shared ones before it; a semaphore one
 * with fewer than its N before it, all semaphore ones.
 */
static void settle(entries *es)
{
    if (es->n > 1)
        qsort(es->v, es->n, sizeof *es->v, by_name_then_create);
    for (size_t i = 0; i < es->n; i++) {
        entry *m = &es->v[i];
        if (!m->is_meta)
            continue;
        for (size_t j = 0; j < es->n; j++) {
            entry *c = &es->v[j];
            if (!c->is_meta && c->hex_len == m->hex_len && !memcmp(c->rest, m->rest, m->hex_len) && same_name(c, m)) {
                c->meta = m->value;
                c->meta_len = m->value_len;
                c->has_meta = 1;
                break;
            }
        }
    }
    size_t start = 0;
    while (start < es->n) {
        size_t end = start;
        while (end < es->n && same_name(&es->v[start], &es->v[end]) && !es->v[end].is_meta)
            end++;
        int all_shared = 1, all_sem = 1;
        for (size_t i = start; i < end; i++) {
            entry *e = &es->v[i];
            size_t before = i - start;
            if (e->mode == ANYLOCK_EXCLUSIVE)
                e->holder = before == 0;
            else if (e->mode == ANYLOCK_SHARED)
                e->holder = all_shared;
            else
                e->holder = all_sem && before < e->permits;
            all_shared &= e->mode == ANYLOCK_SHARED;
            all_sem &= e->mode == ANYLOCK_SEMAPHORE;
        }
        while (end < es->n && same_name(&es->v[start], &es->v[end]))
            end++; /* the name's .meta entries */
        start = end;
    }
}

/* ---- JSON answers ------------------------------------------------------------------ */

/* The first response_range in a txn answer (or the answer itself for a
 * range), with the header's revision. */
static json_object *range_kvs(json_object *answer, int64_t *revision)
{
    *revision = etcd_get_int(etcd_get(answer, "header"), "revision", 0);
    json_object *resps = etcd_get(answer, "responses");
    if (!resps)
        return etcd_get(answer, "kvs");
    size_t n = json_object_is_type(resps, json_type_array) ? json_object_array_length(resps) : 0;
    for (size_t i = 0; i < n; i++) {
        json_object *rr = etcd_get(json_object_array_get_idx(resps, i), "response_range");
        if (rr)
            return etcd_get(rr, "kvs");
    }
    return NULL;
}

static int txn_succeeded(json_object *answer)
{
    json_object *s = etcd_get(answer, "succeeded");
    return s && json_object_get_boolean(s);
}

/* ---- small calls -------------------------------------------------------------------- */

static anylock_status grant(anylock_op *op, etcd_state *s, int64_t ttl, int64_t deadline, int64_t *lease,
                            int64_t *sent_at)
{
    char body[64];
    snprintf(body, sizeof body, "{\"TTL\":\"%lld\"}", (long long)ttl);
    etcd_reply r;
    anylock_status st = etcd_call(op, s->http, "/v3/lease/grant", body, deadline, &r);
    if (st != ANYLOCK_OK)
        return st;
    *lease = etcd_get_int(r.json, "ID", 0);
    int64_t got = etcd_get_int(r.json, "TTL", 0);
    *sent_at = r.sent_at;
    json_object_put(r.json);
    if (*lease == 0 || got < ttl)
        return anylock_op_error(op, ANYLOCK_PROTOCOL, "etcd: lease grant answered without an id or with a TTL "
                                "of %lld s for %lld s", (long long)got, (long long)ttl);
    return ANYLOCK_OK;
}

/* Keeps lease alive: OK, NOT_HELD (gone), or a failure. */
static anylock_status keepalive(anylock_op *op, etcd_state *s, int64_t lease, int64_t deadline, int64_t *sent_at)
{
    char body[64];
    snprintf(body, sizeof body, "{\"ID\":\"%lld\"}", (long long)lease);
    etcd_reply r;
    anylock_status st = etcd_call(op, s->http, "/v3/lease/keepalive", body, deadline, &r);
    if (st != ANYLOCK_OK)
        return st;
    json_object *res = etcd_get(r.json, "result");
    int64_t ttl = etcd_get_int(res ? res : r.json, "TTL", 0);
    *sent_at = r.sent_at;
    json_object_put(r.json);
    if (ttl <= 0)
        return anylock_op_error(op, ANYLOCK_NOT_HELD, "lock \"%.64s\": its lease has expired or was revoked",
                                op->name);
    return ANYLOCK_OK;
}

/* Revokes lease now: OK, NOT_HELD (no such lease), or a failure. */
static anylock_status revoke(anylock_op *op, etcd_state *s, int64_t lease, int64_t deadline, int *maybe_applied)
{
    char body[64];
    snprintf(body, sizeof body, "{\"ID\":\"%lld\"}", (long long)lease);
    etcd_reply r;
    anylock_status st = etcd_call(op, s->http, "/v3/lease/revoke", body, deadline, &r);
    if (maybe_applied)
        *maybe_applied = r.maybe_applied;
    if (st == ANYLOCK_OK) {
        json_object_put(r.json);
        return ANYLOCK_OK;
    }
    if (r.grpc_code == ETCD_GRPC_NOT_FOUND)
        return anylock_op_error(op, ANYLOCK_NOT_HELD, "lock \"%.64s\" is not held by this owner (its lease "
                                "expired or the lock was reset)", op->name ? op->name : "");
    return st;
}

/* ---- the janitor ---------------------------------------------------------------------- */

static void *janitor_main(void *arg)
{
    etcd_state *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->npending && !s->stopping)
            pthread_cond_wait(&s->cond, &s->mu);
        if (!s->npending)
            break;
        int64_t lease = s->pending[--s->npending];
        int64_t deadline = s->stopping ? s->stop_deadline : ANYLOCK_DEADLINE_NEVER;
        if (s->stopping && anylock_now_ns() >= deadline) {
            s->npending = 0; /* closing: the rest lapse with their TTLs */
            break;
        }
        pthread_mutex_unlock(&s->mu);
        char errbuf[ANYLOCK_ERRMSG_MAX] = "";
        anylock_op op;
        memset(&op, 0, sizeof op);
        op.state = s;
        op.errbuf = errbuf;
        op.deadline = ANYLOCK_DEADLINE_NEVER;
        /* If this fails the lease ends with its TTL, as after a crash. */
        revoke(&op, s, lease, deadline, NULL);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Has lease revoked in the background. */
static void discard_lease(anylock_op *op, etcd_state *s, int64_t lease)
{
    if (!lease)
        return;
    pthread_mutex_lock(&s->mu);
    int ok = 0;
    if (!s->started && !s->stopping && anylock_thread_create(&s->janitor, janitor_main, s) == 0)
        s->started = 1;
    if (s->started) {
        if (s->npending == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 16;
            int64_t *g = realloc(s->pending, cap * sizeof *g);
            if (g) {
                s->pending = g;
                s->cap = cap;
            }
        }
        if (s->npending < s->cap) {
            s->pending[s->npending++] = lease;
            pthread_cond_signal(&s->cond);
            ok = 1;
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (!ok)
        revoke(op, s, lease, anylock_op_io_deadline(op, 1000), NULL);
}

/* ---- open / close ---------------------------------------------------------------------- */

static anylock_status etcd_open(anylock_op *op, const anylock_url *url)
{
    etcd_state *s = op->state;
    pthread_mutex_init(&s->mu, NULL);
    anylock_cond_init(&s->cond);
    s->mu_init = 1;
    if (url->nhosts == 0)
        return anylock_op_error(op, ANYLOCK_URL_BAD_HOST, "etcd: the URL names no member (etcd://host:port,...)");
    if (url->path[0] && strcmp(url->path, "/"))
        return anylock_op_error(op, ANYLOCK_URL_BAD_PATH, "etcd: the URL takes no path (the prefix parameter "
                                "names the keys)");
    etcd_http_config cfg = {.url = url};
    anylock_status st;
    if ((st = anylock_url_param_ms(op, url, "dial_timeout", DEFAULT_DIAL_TIMEOUT_MS, &cfg.dial_timeout_ms)) ||
        (st = anylock_url_param_ms(op, url, "command_timeout", DEFAULT_COMMAND_TIMEOUT_MS,
                                   &cfg.command_timeout_ms)) ||
        (st = anylock_url_param_ms(op, url, "recheck", DEFAULT_RECHECK_MS, &s->recheck_ms)))
        return st;
    if (cfg.dial_timeout_ms <= 0 || cfg.command_timeout_ms <= 0 || s->recheck_ms <= 0)
        return anylock_op_error(op, ANYLOCK_URL_BAD_PARAM, "etcd: dial_timeout, command_timeout and recheck must "
                                "be more than 0 seconds");
    op->lock_size = sizeof(etcd_lock);
    anylock_status hst = etcd_http_open(op, &cfg, &s->http);
    if (hst != ANYLOCK_OK)
        return hst;
    return etcd_holders_open(op, s->http, &s->holders);
}

static void etcd_close(anylock_op *op)
{
    etcd_state *s = op->state;
    etcd_holders_close(s->holders);
    if (s->mu_init) {
        pthread_mutex_lock(&s->mu);
        s->stopping = 1;
        s->stop_deadline = anylock_now_ns() + (s->http ? etcd_command_timeout_ms(s->http) : 0) * 1000000;
        pthread_cond_signal(&s->cond);
        int started = s->started;
        pthread_mutex_unlock(&s->mu);
        /* The janitor finishes what is queued, within one command timeout
         * in all, and stops. */
        if (started)
            pthread_join(s->janitor, NULL);
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->mu);
    }
    free(s->pending);
    etcd_http_close(s->http);
}

/* ---- acquire -------------------------------------------------------------------------- */

typedef struct acq {
    anylock_op *op;
    etcd_state *s;
    etcd_lock *l;
    char *key, *meta_key; /* ours */
    size_t key_len, meta_key_len;
    int64_t ttl;          /* of our lease, seconds as asked */
    int64_t refreshed_at; /* when the last grant or keepalive of our lease was sent */
    int enqueued;         /* our keys were put (as far as we know) */
    int waited;
    entries es;
    size_t me;            /* our index in es when found */
    size_t nblockers;     /* exclusive, shared: how many earlier keys keep us out */
} acq;

static void acq_reset_keys(acq *a)
{
    free(a->key);
    free(a->meta_key);
    a->key = a->meta_key = NULL;
}

/* Puts our contender and metadata keys into b (as request_put ops). */
static void add_puts(etcd_buf *b, const acq *a)
{
    const anylock_op *op = a->op;
    etcd_buf_add(b, "{\"request_put\":{\"key\":\"");
    etcd_buf_b64(b, a->key, a->key_len);
    etcd_buf_add(b, "\",\"value\":\"");
    etcd_buf_b64(b, op->id, op->id_len);
    etcd_buf_add(b, "\",\"lease\":\"%lld\"}},{\"request_put\":{\"key\":\"", (long long)a->l->lease);
    etcd_buf_b64(b, a->meta_key, a->meta_key_len);
    etcd_buf_add(b, "\",\"value\":\"");
    etcd_buf_b64(b, op->meta ? op->meta : "", op->meta_len);
    etcd_buf_add(b, "\",\"lease\":\"%lld\"}}", (long long)a->l->lease);
}

static void add_range_op(etcd_buf *b, const anylock_op *op)
{
    etcd_buf_add(b, "{\"request_range\":{");
    add_dir_range(b, op);
    etcd_buf_add(b, "}}");
}

/* The contenders of op's name from a range answer (json, which this
 * frees), into a->es, ordered. */
static anylock_status queue_from_range(anylock_op *op, acq *a, json_object *json)
{
    json_object *kvs = range_kvs(json, &a->es.revision);
    char *dir = malloc(op->key_len + 1);
    if (!dir) {
        json_object_put(json);
        return anylock_op_error(op, ANYLOCK_NOMEM, "etcd: out of memory");
    }
    memcpy(dir, op->key, op->key_len);
    dir[op->key_len] = '/';
    anylock_status st = collect(op, kvs, dir, op->key_len + 1, 1, &a->es);
    free(dir);
    json_object_put(json);
    if (st == ANYLOCK_OK)
        settle(&a->es);
    return st;
}

/*
 * The first transaction: if the name's directory is empty, put our keys
 * (we hold the lock); otherwise put them anyway (or not, when only trying)
 * and read the directory back.  *held = 1 when the directory was empty.
 */
static anylock_status enqueue(acq *a, int put_always, int *held)
{
    anylock_op *op = a->op;
    etcd_buf b = {0};
    etcd_buf_add(&b, "{\"compare\":[{");
    add_dir_range(&b, op);
    etcd_buf_add(&b, ",\"target\":\"CREATE\",\"result\":\"EQUAL\",\"create_revision\":\"0\"}],\"success\":[");
    add_puts(&b, a);
    etcd_buf_add(&b, "],\"failure\":[");
    if (put_always) {
        add_puts(&b, a);
        etcd_buf_add(&b, ",");
    }
    add_range_op(&b, op);
    etcd_buf_add(&b, "]}");
    if (b.failed) {
        etcd_buf_free(&b);
        return anylock_op_error(op, ANYLOCK_NOMEM, "etcd: out of memory");
    }
    etcd_reply r;
    anylock_status st = etcd_call(op, a->s->http, "/v3/kv/txn", b.s, anylock_op_io_deadline(op, etcd_command_timeout_ms(a->s->http)), &r);
    etcd_buf_free(&b);
    if (st != ANYLOCK_OK) {
        if (r.maybe_applied)
            a->enqueued = 1;
        return st;
    }
    entries_free(&a->es);
    if (txn_succeeded(r.json)) {
        *held = 1;
        a->enqueued = 1;
        a->l->rev = etcd_get_int(etcd_get(r.json, "header"), "revision", 0);
        json_object_put(r.json);
        return a->l->rev > 0 ? ANYLOCK_OK
                             : anylock_op_error(op, ANYLOCK_PROTOCOL, "etcd: a transaction answered without a revision");
    }
    *held = 0;
    if (put_always)
        a->enqueued = 1;
    return queue_from_range(op, a, r.json);
}

/*
 * Reads the name's directory again.  A waiter's look may be serializable
 * (the member's own copy, no round of the leader): a read that contains our
 * key reflects a revision after ours, and from then on the set of earlier
 * contenders can only shrink (a new key always has a later revision), so
 * "nobody before us" in such a read stays true; a member that lags can only
 * make us wait longer.  Without our key the verdict (join again) does not
 * depend on staleness either, except that it costs a new place in line: so
 * a look that does not find our key is repeated linearizably.
 */
static anylock_status look_at(acq *a, int serializable)
{
    anylock_op *op = a->op;
    etcd_buf b = {0};
    etcd_buf_add(&b, "{");
    add_dir_range(&b, op);
    etcd_buf_add(&b, "%s}", serializable ? ",\"serializable\":true" : "");
    if (b.failed) {
        etcd_buf_free(&b);
        return anylock_op_error(op, ANYLOCK_NOMEM, "etcd: out of memory");
    }
    etcd_reply r;
    anylock_status st = etcd_call(op, a->s->http, "/v3/kv/range", b.s,
                                  anylock_op_io_deadline(op, etcd_command_timeout_ms(a->s->http)), &r);
    etcd_buf_free(&b);
    if (st != ANYLOCK_OK)
        return st;
    entries_free(&a->es);
    return queue_from_range(op, a, r.json);
}

static int has_key(const acq *a)
{
    for (size_t i = 0; i < a->es.n; i++)
        if (a->es.v[i].key_len == a->key_len && !memcmp(a->es.v[i].key, a->key, a->key_len))
            return 1;
    return 0;
}

static anylock_status look(acq *a)
{
    anylock_status st = a->key ? look_at(a, 1) : look_at(a, 0);
    if (st == ANYLOCK_OK && a->key && !has_key(a))
        st = look_at(a, 0);
    return st;
}

typedef enum { V_HELD, V_WAIT, V_GONE, V_ALREADY, V_CONFLICT } verdict;

/*
 * What the directory just read means for us.  Not found (V_GONE): our key
 * is not there (a try that did not put it, or our lease ended).  *blocker:
 * the index of the key to watch (exclusive, shared), or SIZE_MAX to watch
 * the whole directory (semaphore).  *conflict: the holder in the way.
 */
static verdict judge(acq *a, size_t *blocker, size_t *conflict)
{
    const anylock_op *op = a->op;
    entries *es = &a->es;
    size_t me = SIZE_MAX;
    for (size_t i = 0; i < es->n; i++)
        if (!es->v[i].is_meta && es->v[i].key_len == a->key_len && !memcmp(es->v[i].key, a->key, a->key_len))
            me = i;
    a->me = me;
    for (size_t i = 0; i < es->n; i++) {
        const entry *e = &es->v[i];
        if (i == me || e->is_meta || !e->holder)
            continue;
        if (e->value_len == op->id_len && !memcmp(e->value, op->id, op->id_len))
            return V_ALREADY;
        if ((e->mode == ANYLOCK_SEMAPHORE) != (op->mode == ANYLOCK_SEMAPHORE) ||
            (op->mode == ANYLOCK_SEMAPHORE && e->permits != op->permits)) {
            *conflict = i;
            return V_CONFLICT;
        }
    }
    if (me == SIZE_MAX)
        return V_GONE;
    if (es->v[me].holder) {
        a->l->rev = es->v[me].create;
        return V_HELD;
    }
    *blocker = SIZE_MAX;
    a->nblockers = 0;
    if (op->mode != ANYLOCK_SEMAPHORE) {
        /* The last earlier key that keeps us out. */
        for (size_t i = 0; i < me; i++)
            if (!es->v[i].is_meta && (op->mode == ANYLOCK_EXCLUSIVE || es->v[i].mode != ANYLOCK_SHARED)) {
                *blocker = i;
                a->nblockers++;
            }
    }
    return V_WAIT;
}

/* Whether we would hold the lock if we joined the queue now (a try that
 * has not put its key yet). */
static int would_hold(const acq *a)
{
    const anylock_op *op = a->op;
    size_t before = 0;
    int all_shared = 1, all_sem = 1;
    for (size_t i = 0; i < a->es.n; i++) {
        const entry *e = &a->es.v[i];
        if (e->is_meta)
            continue;
        before++;
        all_shared &= e->mode == ANYLOCK_SHARED;
        all_sem &= e->mode == ANYLOCK_SEMAPHORE;
    }
    if (op->mode == ANYLOCK_EXCLUSIVE)
        return before == 0;
    if (op->mode == ANYLOCK_SHARED)
        return all_shared;
    return all_sem && before < op->permits;
}

/* The watch for what keeps us out, from just after the read. */
static anylock_status watch_for(acq *a, size_t blocker, etcd_watch **w)
{
    anylock_op *op = a->op;
    etcd_buf b = {0};
    etcd_buf_add(&b, "{\"create_request\":{");
    if (blocker != SIZE_MAX) {
        const entry *e = &a->es.v[blocker];
        etcd_buf_add(&b, "\"key\":\"");
        etcd_buf_b64(&b, e->key, e->key_len);
        etcd_buf_add(&b, "\"");
    } else {
        add_dir_range(&b, op);
    }
    etcd_buf_add(&b, ",\"start_revision\":\"%lld\",\"filters\":[\"NOPUT\"]}}", (long long)(a->es.revision + 1));
    if (b.failed) {
        etcd_buf_free(&b);
        return anylock_op_error(op, ANYLOCK_NOMEM, "etcd: out of memory");
    }
    anylock_status st = etcd_watch_start(op, a->s->http, b.s, w);
    etcd_buf_free(&b);
    return st;
}

/* For a semaphore waiter: how many contenders before us are still there
 * after the deletions in msg.  Returns -1 when the watch ended. */
typedef struct tracked {
    char **keys;
    size_t n;
    int all_same;   /* every one is a semaphore of our N */
    char *own;      /* our key in base64: its deletion means our lease ended */
    int own_gone;
} tracked;

static int apply_events(json_object *msg, tracked *t, int *any_event)
{
    json_object *res = etcd_get(msg, "result");
    if (!res || etcd_get(msg, "error") || etcd_get(res, "canceled") || etcd_get(res, "compact_revision"))
        return -1;
    json_object *evs = etcd_get(res, "events");
    size_t n = evs && json_object_is_type(evs, json_type_array) ? json_object_array_length(evs) : 0;
    for (size_t i = 0; i < n; i++) {
        *any_event = 1;
        json_object *kv = etcd_get(json_object_array_get_idx(evs, i), "kv");
        json_object *ko = etcd_get(kv, "key");
        if (!t || !ko || !json_object_is_type(ko, json_type_string))
            continue;
        const char *k = json_object_get_string(ko);
        if (t->own && !strcmp(t->own, k))
            t->own_gone = 1;
        for (size_t j = 0; j < t->n; j++)
            if (t->keys[j] && !strcmp(t->keys[j], k)) {
                free(t->keys[j]);
                t->keys[j] = NULL;
            }
    }
    return 0;
}

static size_t tracked_left(const tracked *t)
{
    size_t n = 0;
    for (size_t i = 0; i < t->n; i++)
        n += t->keys[i] != NULL;
    return n;
}

static void tracked_free(tracked *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->keys[i]);
    free(t->keys);
    free(t->own);
    memset(t, 0, sizeof *t);
}

/* The contenders before us, by their keys in base64 (as events name them). */
static int tracked_fill(tracked *t, const acq *a)
{
    t->keys = calloc(a->me + 1, sizeof *t->keys);
    if (!t->keys || !(t->own = etcd_b64(a->key, a->key_len)))
        return -1;
    t->all_same = 1;
    for (size_t i = 0; i < a->me; i++) {
        const entry *e = &a->es.v[i];
        if (e->is_meta)
            continue;
        t->all_same &= e->mode == ANYLOCK_SEMAPHORE && e->permits == a->op->permits;
        if (!(t->keys[t->n++] = etcd_b64(e->key, e->key_len)))
            return -1;
    }
    return 0;
}

static int transient(anylock_status st)
{
    return st == ANYLOCK_IO || st == ANYLOCK_CONNECT;
}

/*
 * Waits, with a watch, until what keeps us out is deleted, our lease needs
 * a refresh (done here), the recheck interval passes, or the deadline
 * comes.  Returns OK to look again, TIMEOUT, or a failure (NOT_HELD: our
 * lease is gone).  *admitted = 1 when the watch alone shows that we hold
 * the lock, so that no read is needed: the key we watched was the only one
 * in our way (the next in line); or, for a semaphore waiter whose earlier
 * contenders were all semaphores of its N, the watch's events (complete and
 * ordered from just after its read) leave fewer than N of them.  No later
 * contender can come before us, so what the read showed can only shrink.
 */
static anylock_status wait_turn(acq *a, size_t blocker, int *admitted)
{
    anylock_op *op = a->op;
    etcd_watch *w = NULL;
    tracked t = {0};
    anylock_status st = watch_for(a, blocker, &w);
    if (st == ANYLOCK_OK && blocker == SIZE_MAX && tracked_fill(&t, a) != 0)
        st = anylock_op_error(op, ANYLOCK_NOMEM, "etcd: out of memory");
    int64_t recheck_at = anylock_now_ns() + a->s->recheck_ms * 1000000;
    while (st == ANYLOCK_OK) {
        int64_t refresh_at = a->refreshed_at + a->ttl * 1000000000 / 3;
        int64_t until = recheck_at < refresh_at ? recheck_at : refresh_at;
        if (op->deadline != ANYLOCK_DEADLINE_NEVER && op->deadline < until)
            until = op->deadline;
        json_object *msg = NULL;
        int got = etcd_watch_next(w, until, &msg);
        if (got > 0) {
            int any = 0;
            int rc = apply_events(msg, blocker == SIZE_MAX ? &t : NULL, &any);
            json_object_put(msg);
            if (rc < 0)
                break; /* the watch ended: look again */
            if (blocker != SIZE_MAX && any) {
                /* The only key that kept us out is gone. */
                *admitted = a->nblockers == 1;
                break;
            }
            if (blocker == SIZE_MAX && t.own_gone)
                break; /* our key went: the look finds out why */
            if (blocker == SIZE_MAX && tracked_left(&t) < op->permits) {
                *admitted = t.all_same;
                break;
            }
            continue;
        }
        if (got < 0)
            break;
        int64_t now = anylock_now_ns();
        if (op->deadline != ANYLOCK_DEADLINE_NEVER && now >= op->deadline) {
            st = ANYLOCK_TIMEOUT;
            break;
        }
        if (now >= refresh_at) {
            int64_t sent;
            st = keepalive(op, a->s, a->l->lease, anylock_op_io_deadline(op, etcd_command_timeout_ms(a->s->http)),
                           &sent);
            if (st == ANYLOCK_OK)
                a->refreshed_at = sent;
            else if (transient(st))
                st = ANYLOCK_OK; /* the look that follows rides out the outage */
            if (st != ANYLOCK_OK || anylock_now_ns() >= recheck_at)
                break;
            continue;
        }
        break; /* recheck */
    }
    etcd_watch_stop(w);
    tracked_free(&t);
    return st;
}

/* Whether a blocking acquire should try again after a failure st: a
 * cluster that cannot answer (an election, members restarting) is ridden
 * out while the deadline and the outage bound allow, with a short nap. */
static int ride_out(const anylock_op *op, int64_t *outage_since, anylock_status st)
{
    if (!transient(st) || op->deadline == 0)
        return 0;
    int64_t now = anylock_now_ns();
    if (!*outage_since)
        *outage_since = now;
    if ((op->deadline != ANYLOCK_DEADLINE_NEVER && now >= op->deadline) ||
        now - *outage_since >= (int64_t)OUTAGE_MS * 1000000)
        return 0;
    int64_t nap = anylock_ms_until(op->deadline);
    nap = nap < 50 ? nap : 50;
    struct timespec ts = {0, (long)nap * 1000000L};
    nanosleep(&ts, NULL);
    return 1;
}

/* Lets our contender go (a try that failed, a timeout): in the background,
 * so that acquire returns by its deadline. */
static void withdraw(acq *a)
{
    discard_lease(a->op, a->s, a->l->lease);
    lock_clear(a->s, a->l);
}

/* Makes a new contender: a new lease, keys named after it. */
static anylock_status new_contender(acq *a)
{
    anylock_op *op = a->op;
    acq_reset_keys(a);
    int64_t lease = 0, sent = 0;
    anylock_status st = grant(op, a->s, a->ttl, anylock_op_io_deadline(op, etcd_command_timeout_ms(a->s->http)),
                              &lease, &sent);
    if (st != ANYLOCK_OK)
        return st;
    etcd_lock *l = a->l;
    lock_clear(a->s, l);
    l->active = 1;
    l->lease = lease;
    l->ttl = a->ttl;
    snprintf(l->hex, sizeof l->hex, "%llx", (unsigned long long)lease);
    mode_suffix(op, l->suffix, sizeof l->suffix);
    a->refreshed_at = sent;
    a->enqueued = 0;
    a->key = contender_key(op, l, l->suffix, &a->key_len);
    a->meta_key = contender_key(op, l, ".meta", &a->meta_key_len);
    if (!a->key || !a->meta_key) {
        withdraw(a);
        return anylock_op_error(op, ANYLOCK_NOMEM, "etcd: out of memory");
    }
    return ANYLOCK_OK;
}

/* A lock without expiry: detach our keys from the waiting lease. */
static anylock_status detach(acq *a)
{
    anylock_op *op = a->op;
    etcd_buf b = {0};
    etcd_buf_add(&b, "{\"compare\":[{\"key\":\"");
    etcd_buf_b64(&b, a->key, a->key_len);
    etcd_buf_add(&b, "\",\"target\":\"CREATE\",\"result\":\"EQUAL\",\"create_revision\":\"%lld\"}],\"success\":[",
                 (long long)a->l->rev);
    etcd_buf_add(&b, "{\"request_put\":{\"key\":\"");
    etcd_buf_b64(&b, a->key, a->key_len);
    etcd_buf_add(&b, "\",\"ignore_value\":true}},{\"request_put\":{\"key\":\"");
    etcd_buf_b64(&b, a->meta_key, a->meta_key_len);
    etcd_buf_add(&b, "\",\"ignore_value\":true}}]}");
    if (b.failed) {
        etcd_buf_free(&b);
        return anylock_op_error(op, ANYLOCK_NOMEM, "etcd: out of memory");
    }
    etcd_reply r;
    anylock_status st = etcd_call(op, a->s->http, "/v3/kv/txn", b.s,
                                  anylock_op_io_deadline(op, etcd_command_timeout_ms(a->s->http)), &r);
    etcd_buf_free(&b);
    if (st != ANYLOCK_OK)
        return r.maybe_applied ? anylock_op_error(op, ANYLOCK_OUTCOME_UNKNOWN, "etcd: %.200s", op->errbuf) : st;
    int ok = txn_succeeded(r.json);
    json_object_put(r.json);
    if (!ok)
        return ANYLOCK_NOT_HELD;
    discard_lease(op, a->s, a->l->lease);
    a->l->lease = 0;
    return ANYLOCK_OK;
}

static anylock_status etcd_acquire(anylock_op *op)
{
    etcd_state *s = op->state;
    etcd_lock *l = op->lock_state;
    lock_clear(s, l);
    acq a;
    memset(&a, 0, sizeof a);
    a.op = op;
    a.s = s;
    a.l = l;
    a.ttl = op->expires_ms ? (op->expires_ms + 999) / 1000 : WAIT_TTL_S;
    int try_once = op->deadline == 0;
    int64_t outage_since = 0;
    int logged_wait = 0;
    anylock_status st;

restart:
    while ((st = new_contender(&a)) != ANYLOCK_OK && ride_out(op, &outage_since, st)) {
    }
    while (st == ANYLOCK_OK) {
        int held = 0;
        /* The transaction only puts our own keys, so it can be sent again
         * after a lost answer: the range it reads finds them if the first
         * one was applied. */
        while ((st = enqueue(&a, !try_once, &held)) != ANYLOCK_OK && ride_out(op, &outage_since, st)) {
        }
        if (st != ANYLOCK_OK)
            break;
        outage_since = 0;
        for (;;) {
            size_t blocker = SIZE_MAX, other = SIZE_MAX;
            verdict v = held ? V_HELD : judge(&a, &blocker, &other);
            held = 0;
            if (v == V_GONE && !a.enqueued) {
                /* A try that read the queue without joining it. */
                if (!would_hold(&a)) {
                    st = ANYLOCK_BUSY;
                    break;
                }
                st = enqueue(&a, 1, &held);
                if (st != ANYLOCK_OK)
                    break;
                continue;
            }
            if (v == V_GONE) {
                /* Our key is gone (our lease ended while we waited, or
                 * someone deleted it): join again at the back. */
                withdraw(&a);
                st = op->deadline != ANYLOCK_DEADLINE_NEVER && anylock_now_ns() >= op->deadline ? ANYLOCK_TIMEOUT
                                                                                               : ANYLOCK_OK;
                if (st == ANYLOCK_OK) {
                    entries_free(&a.es);
                    goto restart;
                }
                break;
            }
            if (v == V_ALREADY) {
                st = anylock_op_error(op, ANYLOCK_ALREADY_HELD, "lock \"%.64s\" is already held by this owner id",
                                      op->name);
                break;
            }
            if (v == V_CONFLICT) {
                const entry *e = &a.es.v[other];
                if (e->mode == ANYLOCK_SEMAPHORE && op->mode == ANYLOCK_SEMAPHORE)
                    st = anylock_op_error(op, ANYLOCK_MODE_CONFLICT, "lock \"%.64s\" is a semaphore of %u permits, "
                                          "not %u", op->name, e->permits, op->permits);
                else
                    st = anylock_op_error(op, ANYLOCK_MODE_CONFLICT, "lock \"%.64s\" is held as %s", op->name,
                                          e->mode == ANYLOCK_SEMAPHORE ? "a semaphore" : "a lock, not a semaphore");
                break;
            }
            if (v == V_HELD) {
                st = ANYLOCK_OK;
                break;
            }
            /* V_WAIT */
            if (try_once) {
                st = ANYLOCK_BUSY;
                break;
            }
            if (op->deadline != ANYLOCK_DEADLINE_NEVER && anylock_now_ns() >= op->deadline) {
                st = anylock_op_error(op, ANYLOCK_TIMEOUT, "lock \"%.64s\": timed out waiting", op->name);
                break;
            }
            if (!logged_wait) {
                logged_wait = 1;
                const entry *h = NULL;
                for (size_t i = 0; i < a.es.n && !h; i++)
                    if (a.es.v[i].holder && !a.es.v[i].is_meta)
                        h = &a.es.v[i];
                anylock_op_log(op, ANYLOCK_LOG_DEBUG, ANYLOCK_EVENT_WAITING, "waiting for \"%.64s\" (held by %.*s)",
                               op->name, h ? (int)(h->value_len > 64 ? 64 : h->value_len) : 1, h ? h->value : "?");
            }
            a.waited = 1;
            int admitted = 0;
            st = wait_turn(&a, blocker, &admitted);
            /* Only while our own lease surely lives (refreshed within its
             * TTL): else our key may be gone, and a read says so. */
            if (admitted && anylock_now_ns() - a.refreshed_at >= a.ttl * 1000000000)
                admitted = 0;
            if (st == ANYLOCK_OK && admitted) {
                l->rev = a.es.v[a.me].create;
                break;
            }
            if (st == ANYLOCK_OK)
                st = look(&a);
            while (st != ANYLOCK_OK && ride_out(op, &outage_since, st))
                st = look(&a);
            if (st == ANYLOCK_NOT_HELD) {
                /* Our lease ended while we waited: join again. */
                st = ANYLOCK_OK;
                entries_free(&a.es);
                continue;
            }
            if (st != ANYLOCK_OK)
                break;
            outage_since = 0;
        }
        break;
    }

    if (st == ANYLOCK_OK && !op->expires_ms) {
        st = detach(&a);
        if (st == ANYLOCK_NOT_HELD) {
            withdraw(&a);
            entries_free(&a.es);
            goto restart;
        }
    } else if (st == ANYLOCK_OK && a.waited &&
               anylock_now_ns() - a.refreshed_at > a.ttl * 1000000000 / REFRESH_FRACTION) {
        int64_t sent;
        anylock_status k = keepalive(op, s, l->lease, anylock_op_io_deadline(op, etcd_command_timeout_ms(s->http)),
                                     &sent);
        if (k == ANYLOCK_OK)
            a.refreshed_at = sent;
        else if (k == ANYLOCK_NOT_HELD) {
            withdraw(&a);
            entries_free(&a.es);
            goto restart;
        }
        /* A refresh that failed otherwise leaves the lease as it was: the
         * holder has what is left of it, and the core knows when it ends. */
    }

    if (st == ANYLOCK_OK) {
        op->token = (uint64_t)l->rev;
        op->granted_at = a.refreshed_at;
        /* From now on a deletion of our key is reported at once. */
        etcd_holders_add(s->holders, op, &l->held, a.key, a.key_len, l->rev);
    } else if (st == ANYLOCK_OUTCOME_UNKNOWN || (transient(st) && a.enqueued)) {
        /* Our keys may be in the store: the core will call release, which
         * revokes the lease (else it lapses after its TTL). */
        if (st != ANYLOCK_OUTCOME_UNKNOWN)
            st = anylock_op_error(op, ANYLOCK_OUTCOME_UNKNOWN, "%.200s", op->errbuf);
    } else if (l->active) {
        withdraw(&a);
    }
    if (st == ANYLOCK_TIMEOUT)
        anylock_op_error(op, ANYLOCK_TIMEOUT, "lock \"%.64s\": timed out waiting", op->name);
    entries_free(&a.es);
    acq_reset_keys(&a);
    return st;
}

/* ---- finding a holder by owner id ---------------------------------------------------- */

/* Reads the name's directory into es. */
static anylock_status read_dir(anylock_op *op, etcd_state *s, entries *es)
{
    acq a;
    memset(&a, 0, sizeof a);
    a.op = op;
    a.s = s;
    anylock_status st = look(&a);
    *es = a.es;
    return st;
}

/* Makes l describe the holder of op->key whose value is op->id. */
static anylock_status adopt(anylock_op *op, etcd_state *s, etcd_lock *l, int *has_meta)
{
    entries es;
    anylock_status st = read_dir(op, s, &es);
    if (st != ANYLOCK_OK) {
        entries_free(&es);
        return st;
    }
    st = anylock_op_error(op, ANYLOCK_NOT_HELD, "lock \"%.64s\" is not held by this owner (expired, reset or "
                          "taken by another)", op->name);
    for (size_t i = 0; i < es.n; i++) {
        const entry *e = &es.v[i];
        if (e->is_meta || !e->holder || e->value_len != op->id_len || memcmp(e->value, op->id, op->id_len))
            continue;
        lock_clear(s, l);
        l->active = 1;
        l->lease = e->lease;
        l->rev = e->create;
        snprintf(l->hex, sizeof l->hex, "%.*s", (int)(e->hex_len < sizeof l->hex - 1 ? e->hex_len : sizeof l->hex - 1),
                 e->rest);
        snprintf(l->suffix, sizeof l->suffix, "%.20s", e->rest + e->hex_len);
        *has_meta = e->has_meta;
        op->errbuf[0] = '\0';
        st = ANYLOCK_OK;
        break;
    }
    entries_free(&es);
    return st;
}

/* ---- release, extend ----------------------------------------------------------------- */

/* Deletes our keys if our key still has its create revision (a lock
 * without expiry, whose keys have no lease). */
static anylock_status delete_ours(anylock_op *op, etcd_state *s, const etcd_lock *l)
{
    size_t klen, mlen;
    char *k = contender_key(op, l, l->suffix, &klen), *m = contender_key(op, l, ".meta", &mlen);
    etcd_buf b = {0};
    if (k && m) {
        etcd_buf_add(&b, "{\"compare\":[{\"key\":\"");
        etcd_buf_b64(&b, k, klen);
        etcd_buf_add(&b, "\",\"target\":\"CREATE\",\"result\":\"EQUAL\",\"create_revision\":\"%lld\"}],"
                     "\"success\":[{\"request_delete_range\":{\"key\":\"", (long long)l->rev);
        etcd_buf_b64(&b, k, klen);
        etcd_buf_add(&b, "\"}},{\"request_delete_range\":{\"key\":\"");
        etcd_buf_b64(&b, m, mlen);
        etcd_buf_add(&b, "\"}}]}");
    }
    free(k);
    free(m);
    if (!b.s || b.failed) {
        etcd_buf_free(&b);
        return anylock_op_error(op, ANYLOCK_NOMEM, "etcd: out of memory");
    }
    etcd_reply r;
    anylock_status st = etcd_call(op, s->http, "/v3/kv/txn", b.s, op->deadline, &r);
    etcd_buf_free(&b);
    if (st != ANYLOCK_OK)
        return r.maybe_applied ? anylock_op_error(op, ANYLOCK_OUTCOME_UNKNOWN, "%.200s", op->errbuf) : st;
    int ok = txn_succeeded(r.json);
    json_object_put(r.json);
    return ok ? ANYLOCK_OK
              : anylock_op_error(op, ANYLOCK_NOT_HELD, "lock \"%.64s\" is not held by this owner (reset or taken "
                                 "by another)", op->name);
}

static anylock_status etcd_release(anylock_op *op)
{
    etcd_state *s = op->state;
    etcd_lock *l = op->lock_state;
    anylock_status st;
    /* Our own deletion is not a loss. */
    etcd_holders_remove(s->holders, &l->held);
    if (!l->active) {
        int has_meta = 0;
        st = adopt(op, s, l, &has_meta);
        if (st != ANYLOCK_OK) {
            lock_clear(s, l);
            return st;
        }
        if (!has_meta && l->lease) {
            /* Not a key anylock wrote: its lease may carry other keys. */
            st = delete_ours(op, s, l);
            lock_clear(s, l);
            return st;
        }
    }
    if (l->lease) {
        /* Revoking the lease deletes both keys at once; a lease that is
         * gone means the lock went with it (expired, or reset). */
        int maybe = 0;
        st = revoke(op, s, l->lease, op->deadline, &maybe);
        if (st == ANYLOCK_NOT_HELD && maybe)
            st = anylock_op_error(op, ANYLOCK_OUTCOME_UNKNOWN, "etcd: the answer to a revoke was lost and its "
                                  "retry found the lease gone");
        else if (st != ANYLOCK_OK && st != ANYLOCK_NOT_HELD && maybe)
            st = anylock_op_error(op, ANYLOCK_OUTCOME_UNKNOWN, "%.200s", op->errbuf);
    } else {
        st = l->rev ? delete_ours(op, s, l) : ANYLOCK_NOT_HELD;
    }
    lock_clear(s, l);
    return st;
}

/* Whether our key is still ours: there, with our create revision and lease. */
static anylock_status verify(anylock_op *op, etcd_state *s, const etcd_lock *l)
{
    size_t klen;
    char *k = contender_key(op, l, l->suffix, &klen);
    etcd_buf b = {0};
    if (k) {
        etcd_buf_add(&b, "{\"key\":\"");
        etcd_buf_b64(&b, k, klen);
        etcd_buf_add(&b, "\"}");
    }
    free(k);
    if (!b.s || b.failed) {
        etcd_buf_free(&b);
        return anylock_op_error(op, ANYLOCK_NOMEM, "etcd: out of memory");
    }
    etcd_reply r;
    anylock_status st = etcd_call(op, s->http, "/v3/kv/range", b.s, op->deadline, &r);
    etcd_buf_free(&b);
    if (st != ANYLOCK_OK)
        return st;
    int64_t rev;
    json_object *kvs = range_kvs(r.json, &rev);
    json_object *kv = kvs && json_object_is_type(kvs, json_type_array) && json_object_array_length(kvs) == 1
                          ? json_object_array_get_idx(kvs, 0)
                          : NULL;
    int ok = kv && etcd_get_int(kv, "create_revision", 0) == l->rev && etcd_get_int(kv, "lease", 0) == l->lease;
    json_object_put(r.json);
    return ok ? ANYLOCK_OK
              : anylock_op_error(op, ANYLOCK_NOT_HELD, "lock \"%.64s\": its key was deleted (reset?)", op->name);
}

/* Moves our keys to a new lease of ttl seconds (an expiry other than the
 * one the lease was granted with: etcd cannot change a lease's TTL). */
static anylock_status move_to_new_lease(anylock_op *op, etcd_state *s, etcd_lock *l, int64_t ttl)
{
    int64_t lease = 0, sent = 0;
    anylock_status st = grant(op, s, ttl, op->deadline, &lease, &sent);
    if (st != ANYLOCK_OK)
        return st;
    size_t klen, mlen;
    char *k = contender_key(op, l, l->suffix, &klen), *m = contender_key(op, l, ".meta", &mlen);
    etcd_buf b = {0};
    if (k && m) {
        etcd_buf_add(&b, "{\"compare\":[{\"key\":\"");
        etcd_buf_b64(&b, k, klen);
        etcd_buf_add(&b, "\",\"target\":\"CREATE\",\"result\":\"EQUAL\",\"create_revision\":\"%lld\"},{\"key\":\"",
                     (long long)l->rev);
        etcd_buf_b64(&b, m, mlen);
        etcd_buf_add(&b, "\",\"target\":\"CREATE\",\"result\":\"EQUAL\",\"create_revision\":\"%lld\"}],"
                     "\"success\":[{\"request_put\":{\"key\":\"", (long long)l->rev);
        etcd_buf_b64(&b, k, klen);
        etcd_buf_add(&b, "\",\"ignore_value\":true,\"lease\":\"%lld\"}},{\"request_put\":{\"key\":\"", (long long)lease);
        etcd_buf_b64(&b, m, mlen);
        etcd_buf_add(&b, "\",\"ignore_value\":true,\"lease\":\"%lld\"}}]}", (long long)lease);
    }
    free(k);
    free(m);
    if (!b.s || b.failed) {
        etcd_buf_free(&b);
        discard_lease(op, s, lease);
        return anylock_op_error(op, ANYLOCK_NOMEM, "etcd: out of memory");
    }
    etcd_reply r;
    st = etcd_call(op, s->http, "/v3/kv/txn", b.s, op->deadline, &r);
    etcd_buf_free(&b);
    if (st != ANYLOCK_OK) {
        /* If it was applied, our keys are on the new lease, which then
         * lapses after its TTL unless a later extend finds them. */
        return st;
    }
    int ok = txn_succeeded(r.json);
    json_object_put(r.json);
    if (!ok) {
        discard_lease(op, s, lease);
        return anylock_op_error(op, ANYLOCK_NOT_HELD, "lock \"%.64s\" is not held by this owner (expired, reset or "
                                "taken by another)", op->name);
    }
    discard_lease(op, s, l->lease);
    l->lease = lease;
    l->ttl = ttl;
    op->granted_at = sent;
    return ANYLOCK_OK;
}

static anylock_status etcd_extend(anylock_op *op)
{
    etcd_state *s = op->state;
    etcd_lock *l = op->lock_state;
    anylock_status st;
    int64_t ttl = (op->expires_ms + 999) / 1000;
    if (!l->active || !l->rev) {
        int has_meta = 0;
        st = adopt(op, s, l, &has_meta);
        if (st != ANYLOCK_OK)
            return st;
        if (l->lease && !has_meta) {
            lock_clear(s, l);
            return anylock_op_error(op, ANYLOCK_UNSUPPORTED, "lock \"%.64s\" is held under this id by a key "
                                    "anylock did not write: it cannot be extended", op->name);
        }
    }
    if (!l->lease)
        return anylock_op_error(op, ANYLOCK_NOT_EXPIRABLE, "lock \"%.64s\" was taken without an expiry", op->name);
    if (ttl != l->ttl) {
        st = move_to_new_lease(op, s, l, ttl);
    } else {
        int64_t sent = 0;
        st = keepalive(op, s, l->lease, op->deadline, &sent);
        if (st == ANYLOCK_OK)
            st = verify(op, s, l);
        if (st == ANYLOCK_OK)
            op->granted_at = sent;
    }
    if (st == ANYLOCK_NOT_HELD) {
        discard_lease(op, s, l->lease);
        lock_clear(s, l);
    } else if (st == ANYLOCK_OK && !l->held.key) {
        /* Held again through an extend (after a lost answer): watched. */
        size_t klen;
        char *k = contender_key(op, l, l->suffix, &klen);
        if (k)
            etcd_holders_add(s->holders, op, &l->held, k, klen, l->rev);
        free(k);
    }
    return st;
}

/* ---- enumerate, reset ------------------------------------------------------------------ */

/* Reads op->key's directory, or every lock under the prefix. */
static anylock_status read_all(anylock_op *op, etcd_state *s, entries *es)
{
    memset(es, 0, sizeof *es);
    if (op->name)
        return read_dir(op, s, es);
    etcd_buf b = {0};
    etcd_buf_add(&b, "{");
    etcd_buf_prefix_range(&b, op->prefix, op->prefix_len);
    etcd_buf_add(&b, "}");
    if (!b.s || b.failed) {
        etcd_buf_free(&b);
        return anylock_op_error(op, ANYLOCK_NOMEM, "etcd: out of memory");
    }
    etcd_reply r;
    anylock_status st = etcd_call(op, s->http, "/v3/kv/range", b.s, op->deadline, &r);
    etcd_buf_free(&b);
    if (st != ANYLOCK_OK)
        return st;
    json_object *kvs = range_kvs(r.json, &es->revision);
    st = collect(op, kvs, op->prefix, op->prefix_len, 0, es);
    json_object_put(r.json);
    if (st == ANYLOCK_OK)
        settle(es);
    return st;
}

/* Milliseconds left on lease: -1 for none (never expires), -2 when it is gone. */
static anylock_status time_left(anylock_op *op, etcd_state *s, int64_t lease, int64_t *ms)
{
    if (!lease) {
        *ms = -1;
        return ANYLOCK_OK;
    }
    char body[64];
    snprintf(body, sizeof body, "{\"ID\":\"%lld\"}", (long long)lease);
    etcd_reply r;
    anylock_status st = etcd_call(op, s->http, "/v3/lease/timetolive", body, op->deadline, &r);
    if (st != ANYLOCK_OK)
        return st;
    int64_t ttl = etcd_get_int(r.json, "TTL", -1);
    json_object_put(r.json);
    /* etcd rounds the time left down to whole seconds: a lease in its
     * last second says 0 although its keys (and so the lock) are still
     * there.  -1: the lease is gone. */
    *ms = ttl < 0 ? -2 : ttl > 0 ? ttl * 1000 : 1;
    return ANYLOCK_OK;
}

static anylock_status etcd_enumerate(anylock_op *op, anylock_emitter *em)
{
    etcd_state *s = op->state;
    entries es;
    anylock_status st = read_all(op, s, &es);
    for (size_t i = 0; st == ANYLOCK_OK && i < es.n; i++) {
        const entry *e = &es.v[i];
        if (e->is_meta || !e->holder)
            continue;
        int64_t ms;
        st = time_left(op, s, e->lease, &ms);
        if (st != ANYLOCK_OK || ms == -2)
            continue; /* gone since it was read */
        anylock_record rec = {
            .name = e->key + e->name_off,
            .name_len = e->name_len,
            .id = e->value,
            .id_len = e->value_len,
            .expires_in_ms = ms,
            .mode = e->mode,
            .permits = e->permits,
            .meta = e->meta,
            .meta_len = e->meta_len,
        };
        if (anylock_emit(em, &rec))
            break;
    }
    entries_free(&es);
    return st;
}

/* Frees every holder in es: anylock's by revoking their leases (so their
 * owners' next renewal hears of it), others by deleting their keys. */
static anylock_status free_holders(anylock_op *op, etcd_state *s, const entries *es, size_t *count)
{
    etcd_buf b = {0};
    int deletes = 0;
    anylock_status st = ANYLOCK_OK;
    etcd_buf_add(&b, "{\"success\":[");
    for (size_t i = 0; i < es->n; i++) {
        const entry *e = &es->v[i];
        if (e->is_meta || !e->holder)
            continue;
        if (count && (i == 0 || !same_name(&es->v[i], &es->v[i - 1])))
            (*count)++;
        if (e->lease && e->has_meta)
            continue;
        etcd_buf_add(&b, "%s{\"request_delete_range\":{\"key\":\"", deletes++ ? "," : "");
        etcd_buf_b64(&b, e->key, e->key_len);
        etcd_buf_add(&b, "\"}}");
        if (e->has_meta) {
            /* One of ours without a lease (no expiry): its .meta key too. */
            size_t stem = (size_t)(e->rest - e->key) + e->hex_len;
            char *m = malloc(stem + sizeof ".meta");
            if (!m) {
                b.failed = 1;
                break;
            }
            memcpy(m, e->key, stem);
            memcpy(m + stem, ".meta", sizeof ".meta");
            etcd_buf_add(&b, ",{\"request_delete_range\":{\"key\":\"");
            etcd_buf_b64(&b, m, stem + 5);
            etcd_buf_add(&b, "\"}}");
            free(m);
        }
    }
    etcd_buf_add(&b, "]}");
    if (b.failed) {
        etcd_buf_free(&b);
        return anylock_op_error(op, ANYLOCK_NOMEM, "etcd: out of memory");
    }
    if (deletes) {
        etcd_reply r;
        st = etcd_call(op, s->http, "/v3/kv/txn", b.s, op->deadline, &r);
        if (st == ANYLOCK_OK)
            json_object_put(r.json);
    }
    etcd_buf_free(&b);
    for (size_t i = 0; st == ANYLOCK_OK && i < es->n; i++) {
        const entry *e = &es->v[i];
        if (e->is_meta || !e->holder || !e->lease || !e->has_meta)
            continue;
        st = revoke(op, s, e->lease, op->deadline, NULL);
        if (st == ANYLOCK_NOT_HELD)
            st = ANYLOCK_OK; /* gone already */
    }
    if (st == ANYLOCK_OK)
        op->errbuf[0] = '\0';
    return st;
}

static anylock_status etcd_reset(anylock_op *op)
{
    etcd_state *s = op->state;
    entries es;
    anylock_status st = read_all(op, s, &es);
    if (st == ANYLOCK_OK)
        st = free_holders(op, s, &es, NULL);
    entries_free(&es);
    return st;
}

static anylock_status etcd_reset_all(anylock_op *op, size_t *count)
{
    etcd_state *s = op->state;
    *count = 0;
    entries es;
    anylock_status st = read_all(op, s, &es);
    if (st == ANYLOCK_OK)
        st = free_holders(op, s, &es, count);
    entries_free(&es);
    return st;
}

/* The handle is freed: out of the watch. */
static void etcd_forget(anylock_op *op)
{
    etcd_state *s = op->state;
    etcd_holders_remove(s->holders, &((etcd_lock *)op->lock_state)->held);
}

const anylock_backend anylock__etcd_backend = {
    .version = ANYLOCK_BACKEND_VERSION,
    .name = "etcd",
    .state_size = sizeof(etcd_state),
    .flags = ANYLOCK_BACKEND_FAIR | ANYLOCK_BACKEND_TOKEN | ANYLOCK_BACKEND_SHARED | ANYLOCK_BACKEND_SEMAPHORE |
             ANYLOCK_BACKEND_LIST,
    /* Lease TTLs are whole seconds. */
    .expiry_resolution_ms = 1000,
    .params = etcd_params,
    .open = etcd_open,
    .close = etcd_close,
    .acquire = etcd_acquire,
    .release = etcd_release,
    .extend = etcd_extend,
    .reset = etcd_reset,
    .reset_all = etcd_reset_all,
    .lock_size = sizeof(etcd_lock),
    .enumerate = etcd_enumerate,
    .forget = etcd_forget,
};
