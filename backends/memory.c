/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * memory://[NAMESPACE]: locks inside this process, with real mutual exclusion
 * between threads.  Clients opened with the same namespace (the URL's host;
 * empty by default) share one table of locks.  Waiters sleep on a condition
 * variable and wake on release, reset, or when a holder's expiry passes.
 * Expiry is measured on the monotonic clock, to the millisecond.
 *
 * Every mode is here, as the reference for the other stores:
 *   exclusive  one holder;
 *   shared     any number of shared holders and no exclusive one; while an
 *              exclusive acquirer waits, new shared acquirers wait behind it
 *              (writers do not starve);
 *   semaphore  at most N holders, every one of the name asking for the same
 *              N (another N, or a plain or shared lock on a semaphore's
 *              name, answers ANYLOCK_MODE_CONFLICT).
 * Fencing tokens come from one counter per namespace, advanced by every
 * successful acquisition.
 */
#include <stdlib.h>
#include <string.h>

#include "builtin.h"

typedef struct mem_holder {
    char id[ANYLOCK_ID_MAX + 1];
    size_t id_len;
    int64_t expires_at; /* monotonic ns; 0: never */
    char *meta;
    size_t meta_len;
} mem_holder;

typedef struct mem_entry {
    struct mem_entry *next;
    char *key;
    size_t key_len;
    anylock_mode mode;  /* of the current holders */
    unsigned permits;   /* for a semaphore */
    mem_holder *holders;
    size_t nholders, cap;
    unsigned writers_waiting; /* exclusive acquirers waiting: shared ones wait behind them */
} mem_entry;

typedef struct mem_ns {
    struct mem_ns *next;
    char *name;
    size_t refs;
    pthread_cond_t changed; /* a holder left */
    mem_entry **buckets;    /* a hash table of entries by key, chained through next */
    size_t nbuckets;        /* a power of two, or 0 before the first entry */
    size_t nentries;
    uint64_t token;
} mem_ns;

typedef struct mem_client {
    mem_ns *ns;
} mem_client;

/* One mutex for every namespace: memory:// is for tests and single
 * processes, where simplicity beats lock granularity. */
static pthread_mutex_t mem_mu = PTHREAD_MUTEX_INITIALIZER;
static mem_ns *namespaces;

static void holder_drop(mem_entry *e, size_t i)
{
    free(e->holders[i].meta);
    e->holders[i] = e->holders[--e->nholders];
}

/* Drops the holders whose expiry passed; 1 if any left. */
static int prune(mem_ns *ns, mem_entry *e, int64_t now)
{
    int dropped = 0;
    for (size_t i = 0; i < e->nholders;) {
        if (e->holders[i].expires_at && e->holders[i].expires_at <= now) {
            holder_drop(e, i);
            dropped = 1;
        } else {
            i++;
        }
    }
    if (dropped)
        pthread_cond_broadcast(&ns->changed);
    return dropped;
}

static void entry_free(mem_entry *e)
{
    for (size_t i = 0; i < e->nholders; i++)
        free(e->holders[i].meta);
    free(e->holders);
    free(e->key);
    free(e);
}

/* FNV-1a: the bucket of a key. */
static size_t bucket_of(const mem_ns *ns, const char *key, size_t key_len)
{
    uint64_t h = 14695981039346656037u;
    for (size_t i = 0; i < key_len; i++)
        h = (h ^ (unsigned char)key[i]) * 1099511628211u;
    return (size_t)(h & (ns->nbuckets - 1));
}

/* The entry for key (pruned of expired holders), or NULL. */
static mem_entry **find(mem_ns *ns, const char *key, size_t key_len, int64_t now)
{
    if (!ns->nbuckets)
        return NULL;
    for (mem_entry **p = &ns->buckets[bucket_of(ns, key, key_len)]; *p; p = &(*p)->next) {
        if ((*p)->key_len == key_len && !memcmp((*p)->key, key, key_len)) {
            prune(ns, *p, now);
            return p;
        }
    }
    return NULL;
}

/* Adds e, growing the table to keep about one entry per bucket; -1 when out
 * of memory. */
static int insert(mem_ns *ns, mem_entry *e)
{
    if (ns->nentries >= ns->nbuckets) {
        size_t n = ns->nbuckets ? ns->nbuckets * 2 : 64;
        mem_entry **b = calloc(n, sizeof *b);
        if (!b)
            return -1;
        mem_ns grown = {.buckets = b, .nbuckets = n};
        for (size_t i = 0; i < ns->nbuckets; i++)
            while (ns->buckets[i]) {
                mem_entry *x = ns->buckets[i];
                ns->buckets[i] = x->next;
                mem_entry **to = &b[bucket_of(&grown, x->key, x->key_len)];
                x->next = *to;
                *to = x;
            }
        free(ns->buckets);
        ns->buckets = b;
        ns->nbuckets = n;
    }
    mem_entry **to = &ns->buckets[bucket_of(ns, e->key, e->key_len)];
    e->next = *to;
    *to = e;
    ns->nentries++;
    return 0;
}

/* Unlinks and frees the entry at *p. */
static void unlink_entry(mem_ns *ns, mem_entry **p)
{
    mem_entry *e = *p;
    *p = e->next;
    ns->nentries--;
    entry_free(e);
}

/* Removes an entry nobody holds or waits for. */
static void tidy(mem_ns *ns, mem_entry **p)
{
    if (!(*p)->nholders && !(*p)->writers_waiting)
        unlink_entry(ns, p);
}

static mem_holder *holder_of(mem_entry *e, const anylock_op *op)
{
    for (size_t i = 0; i < e->nholders; i++)
        if (e->holders[i].id_len == op->id_len && !memcmp(e->holders[i].id, op->id, op->id_len))
            return &e->holders[i];
    return NULL;
}

static anylock_status mem_open(anylock_op *op, const anylock_url *url)
{
    mem_client *mc = op->state;
    if (url->user || url->password)
        return anylock_op_error(op, ANYLOCK_URL_BAD_USERINFO, "memory:// takes no user or password");
    if (url->nhosts > 1 || (url->nhosts && url->hosts[0].port))
        return anylock_op_error(op, ANYLOCK_URL_BAD_HOST, "memory:// takes one namespace name and no port");
    if (url->path[0] && strcmp(url->path, "/"))
        return anylock_op_error(op, ANYLOCK_URL_BAD_PATH, "memory:// takes no path");
    const char *name = url->nhosts ? url->hosts[0].host : "";
    pthread_mutex_lock(&mem_mu);
    mem_ns *ns = namespaces;
    while (ns && strcmp(ns->name, name))
        ns = ns->next;
    if (!ns) {
        ns = calloc(1, sizeof *ns);
        if (ns && !(ns->name = strdup(name))) {
            free(ns);
            ns = NULL;
        }
        if (!ns) {
            pthread_mutex_unlock(&mem_mu);
            return ANYLOCK_NOMEM;
        }
        anylock_cond_init(&ns->changed);
        ns->next = namespaces;
        namespaces = ns;
    }
    ns->refs++;
    mc->ns = ns;
    pthread_mutex_unlock(&mem_mu);
    return ANYLOCK_OK;
}

static void mem_close(anylock_op *op)
{
    mem_client *mc = op->state;
    if (!mc->ns)
        return;
    pthread_mutex_lock(&mem_mu);
    mem_ns *ns = mc->ns;
    if (--ns->refs == 0) {
        /* The last client of a namespace takes its locks with it. */
        for (mem_ns **p = &namespaces; *p; p = &(*p)->next)
            if (*p == ns) {
                *p = ns->next;
                break;
            }
        for (size_t i = 0; i < ns->nbuckets; i++)
            while (ns->buckets[i])
                unlink_entry(ns, &ns->buckets[i]);
        free(ns->buckets);
        pthread_cond_destroy(&ns->changed);
        free(ns->name);
        free(ns);
    }
    pthread_mutex_unlock(&mem_mu);
}

/* Whether op may join e's holders now: OK, BUSY, or MODE_CONFLICT. */
static anylock_status admits(const mem_entry *e, const anylock_op *op)
{
    if (e->nholders == 0) /* free; but a shared acquirer yields to a waiting writer */
        return op->mode == ANYLOCK_SHARED && e->writers_waiting ? ANYLOCK_BUSY : ANYLOCK_OK;
    if ((e->mode == ANYLOCK_SEMAPHORE) != (op->mode == ANYLOCK_SEMAPHORE) ||
        (op->mode == ANYLOCK_SEMAPHORE && e->permits != op->permits))
        return ANYLOCK_MODE_CONFLICT;
    switch (op->mode) {
    case ANYLOCK_SHARED:
        return e->mode == ANYLOCK_SHARED && !e->writers_waiting ? ANYLOCK_OK : ANYLOCK_BUSY;
    case ANYLOCK_SEMAPHORE:
        return e->nholders < e->permits ? ANYLOCK_OK : ANYLOCK_BUSY;
    default:
        return ANYLOCK_BUSY;
    }
}

static anylock_status conflict(anylock_op *op, const mem_entry *e)
{
    if (e->mode == ANYLOCK_SEMAPHORE && op->mode == ANYLOCK_SEMAPHORE)
        return anylock_op_error(op, ANYLOCK_MODE_CONFLICT, "lock \"%.64s\" is a semaphore of %u permits, not %u",
                                op->name, e->permits, op->permits);
    return anylock_op_error(op, ANYLOCK_MODE_CONFLICT, "lock \"%.64s\" is held as %s", op->name,
                            e->mode == ANYLOCK_SEMAPHORE ? "a semaphore" : "a lock, not a semaphore");
}

static anylock_status join(mem_ns *ns, mem_entry *e, anylock_op *op, int64_t now)
{
    if (e->nholders == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 2;
        mem_holder *g = realloc(e->holders, cap * sizeof *g);
        if (!g)
            return ANYLOCK_NOMEM;
        e->holders = g;
        e->cap = cap;
    }
    mem_holder *h = &e->holders[e->nholders];
    memset(h, 0, sizeof *h);
    if (op->meta_len) {
        h->meta = malloc(op->meta_len);
        if (!h->meta)
            return ANYLOCK_NOMEM;
        memcpy(h->meta, op->meta, op->meta_len);
        h->meta_len = op->meta_len;
    }
    memcpy(h->id, op->id, op->id_len);
    h->id[op->id_len] = '\0';
    h->id_len = op->id_len;
    h->expires_at = op->expires_ms ? now + op->expires_ms * 1000000 : 0;
    e->nholders++;
    e->mode = op->mode;
    e->permits = op->permits;
    op->token = ++ns->token;
    op->granted_at = now;
    return ANYLOCK_OK;
}

static anylock_status mem_acquire(anylock_op *op)
{
    mem_ns *ns = ((mem_client *)op->state)->ns;
    anylock_status st;
    int waiting_writer = 0;
    mem_entry **p = NULL;
    pthread_mutex_lock(&mem_mu);
    for (;;) {
        int64_t now = anylock_now_ns();
        p = find(ns, op->key, op->key_len, now);
        if (!p) {
            mem_entry *e = calloc(1, sizeof *e);
            if (!e || !(e->key = malloc(op->key_len + 1))) {
                free(e);
                st = ANYLOCK_NOMEM;
                break;
            }
            memcpy(e->key, op->key, op->key_len);
            e->key[op->key_len] = '\0';
            e->key_len = op->key_len;
            if (insert(ns, e) != 0) {
                entry_free(e);
                st = ANYLOCK_NOMEM;
                break;
            }
            p = find(ns, op->key, op->key_len, now);
        }
        mem_entry *e = *p;
        if (holder_of(e, op)) {
            st = anylock_op_error(op, ANYLOCK_ALREADY_HELD, "lock \"%.64s\" is already held by this owner id",
                                  op->name);
            break;
        }
        st = admits(e, op);
        if (st == ANYLOCK_MODE_CONFLICT) {
            st = conflict(op, e);
            break;
        }
        if (st == ANYLOCK_OK) {
            st = join(ns, e, op, now);
            break;
        }
        if (op->deadline == 0) {
            st = ANYLOCK_BUSY;
            break;
        }
        if (op->deadline != ANYLOCK_DEADLINE_NEVER && now >= op->deadline) {
            st = ANYLOCK_TIMEOUT;
            break;
        }
        if (op->mode == ANYLOCK_EXCLUSIVE && !waiting_writer) {
            waiting_writer = 1;
            e->writers_waiting++;
        }
        int64_t wake = op->deadline;
        for (size_t i = 0; i < e->nholders; i++)
            if (e->holders[i].expires_at && e->holders[i].expires_at < wake)
                wake = e->holders[i].expires_at;
        anylock_cond_wait_until(&ns->changed, &mem_mu, wake);
    }
    if (waiting_writer) {
        /* The entry may have moved in the list: find it again. */
        p = find(ns, op->key, op->key_len, anylock_now_ns());
        if (p) {
            (*p)->writers_waiting--;
            /* Shared acquirers held back by this writer may go now. */
            pthread_cond_broadcast(&ns->changed);
        }
    }
    if (p && *p)
        tidy(ns, p);
    pthread_mutex_unlock(&mem_mu);
    return st;
}

/* The holder entry for op->id, else NULL with *st set. */
static mem_holder *owned(anylock_op *op, mem_ns *ns, mem_entry ***pp, anylock_status *st)
{
    mem_entry **p = find(ns, op->key, op->key_len, anylock_now_ns());
    mem_holder *h = p ? holder_of(*p, op) : NULL;
    *pp = p;
    if (!h) {
        *st = anylock_op_error(op, ANYLOCK_NOT_HELD, "lock \"%.64s\" is %s", op->name,
                               p && (*p)->nholders ? "held by another owner" : "not held (expired or reset)");
        return NULL;
    }
    *st = ANYLOCK_OK;
    return h;
}

static anylock_status mem_release(anylock_op *op)
{
    mem_ns *ns = ((mem_client *)op->state)->ns;
    anylock_status st;
    mem_entry **p;
    pthread_mutex_lock(&mem_mu);
    mem_holder *h = owned(op, ns, &p, &st);
    if (h) {
        holder_drop(*p, (size_t)(h - (*p)->holders));
        pthread_cond_broadcast(&ns->changed);
    }
    if (p)
        tidy(ns, p);
    pthread_mutex_unlock(&mem_mu);
    return st;
}

static anylock_status mem_extend(anylock_op *op)
{
    mem_ns *ns = ((mem_client *)op->state)->ns;
    anylock_status st;
    mem_entry **p;
    pthread_mutex_lock(&mem_mu);
    mem_holder *h = owned(op, ns, &p, &st);
    if (h && h->expires_at == 0) {
        st = anylock_op_error(op, ANYLOCK_NOT_EXPIRABLE, "lock \"%.64s\" was taken without an expiry", op->name);
    } else if (h) {
        op->granted_at = anylock_now_ns();
        h->expires_at = op->granted_at + op->expires_ms * 1000000;
    }
    if (p)
        tidy(ns, p);
    pthread_mutex_unlock(&mem_mu);
    return st;
}

static int emit_entry(anylock_emitter *em, const mem_entry *e, size_t prefix_len, int64_t now)
{
    for (size_t i = 0; i < e->nholders; i++) {
        const mem_holder *h = &e->holders[i];
        anylock_record r = {
            .name = e->key + prefix_len,
            .name_len = e->key_len - prefix_len,
            .id = h->id,
            .id_len = h->id_len,
            .expires_in_ms = h->expires_at ? (h->expires_at - now + 999999) / 1000000 : -1,
            .mode = e->mode,
            .permits = e->permits,
            .meta = h->meta,
            .meta_len = h->meta_len,
        };
        if (anylock_emit(em, &r))
            return 1;
    }
    return 0;
}

static int under_prefix(const anylock_op *op, const mem_entry *e)
{
    return e->key_len >= op->prefix_len && !memcmp(e->key, op->prefix, op->prefix_len);
}

static anylock_status mem_enumerate(anylock_op *op, anylock_emitter *em)
{
    mem_ns *ns = ((mem_client *)op->state)->ns;
    pthread_mutex_lock(&mem_mu);
    int64_t now = anylock_now_ns();
    if (op->name) {
        mem_entry **p = find(ns, op->key, op->key_len, now);
        if (p)
            emit_entry(em, *p, op->prefix_len, now);
    } else {
        int stop = 0;
        for (size_t i = 0; i < ns->nbuckets && !stop; i++)
            for (mem_entry *e = ns->buckets[i]; e && !stop; e = e->next) {
                if (!under_prefix(op, e))
                    continue;
                prune(ns, e, now);
                stop = emit_entry(em, e, op->prefix_len, now);
            }
    }
    pthread_mutex_unlock(&mem_mu);
    return ANYLOCK_OK;
}

static anylock_status mem_reset(anylock_op *op)
{
    mem_ns *ns = ((mem_client *)op->state)->ns;
    pthread_mutex_lock(&mem_mu);
    mem_entry **p = find(ns, op->key, op->key_len, anylock_now_ns());
    if (p) {
        while ((*p)->nholders)
            holder_drop(*p, 0);
        pthread_cond_broadcast(&ns->changed);
        tidy(ns, p);
    }
    pthread_mutex_unlock(&mem_mu);
    return ANYLOCK_OK;
}

static anylock_status mem_reset_all(anylock_op *op, size_t *count)
{
    mem_ns *ns = ((mem_client *)op->state)->ns;
    *count = 0;
    pthread_mutex_lock(&mem_mu);
    int64_t now = anylock_now_ns();
    for (size_t i = 0; i < ns->nbuckets; i++)
        for (mem_entry **p = &ns->buckets[i]; *p;) {
            mem_entry *e = *p;
            if (under_prefix(op, e)) {
                prune(ns, e, now);
                *count += e->nholders > 0;
                while (e->nholders)
                    holder_drop(e, 0);
                pthread_cond_broadcast(&ns->changed);
                if (!e->writers_waiting) {
                    unlink_entry(ns, p);
                    continue;
                }
            }
            p = &(*p)->next;
        }
    pthread_mutex_unlock(&mem_mu);
    return ANYLOCK_OK;
}

const anylock_backend anylock__memory_backend = {
    .version = ANYLOCK_BACKEND_VERSION,
    .name = "memory",
    .state_size = sizeof(mem_client),
    .flags = ANYLOCK_BACKEND_TOKEN | ANYLOCK_BACKEND_SHARED | ANYLOCK_BACKEND_SEMAPHORE | ANYLOCK_BACKEND_LIST,
    .expiry_resolution_ms = 1,
    .params = NULL,
    .open = mem_open,
    .close = mem_close,
    .acquire = mem_acquire,
    .release = mem_release,
    .extend = mem_extend,
    .reset = mem_reset,
    .reset_all = mem_reset_all,
    .lock_size = 0,
    .enumerate = mem_enumerate,
};
