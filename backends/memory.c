/*
 * memory://[NAMESPACE]: locks inside this process, with real mutual exclusion
 * between threads.  Clients opened with the same namespace (the URL's host;
 * empty by default) share one table of locks.  Waiters sleep on a condition
 * variable and wake on release, reset, or when the holder's expiry passes.
 * Expiry is measured on the monotonic clock, to the millisecond.
 */
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "builtin.h"

typedef struct mem_entry {
    struct mem_entry *next;
    char *key;
    char id[ANYLOCK_ID_MAX + 1];
    int64_t expires_at; /* monotonic ns; 0: never */
} mem_entry;

typedef struct mem_ns {
    struct mem_ns *next;
    char *name;
    size_t refs;
    pthread_cond_t changed; /* a lock was freed */
    mem_entry *entries;
} mem_ns;

typedef struct mem_client {
    mem_ns *ns;
} mem_client;

/* One mutex for every namespace: memory:// is for tests and single
 * processes, where simplicity beats lock granularity. */
static pthread_mutex_t mem_mu = PTHREAD_MUTEX_INITIALIZER;
static mem_ns *namespaces;

static void free_entry(mem_entry *e)
{
    free(e->key);
    free(e);
}

/* The live entry for key, dropping it if it has expired. */
static mem_entry **find(mem_ns *ns, const char *key, int64_t now)
{
    for (mem_entry **p = &ns->entries; *p; p = &(*p)->next) {
        if (strcmp((*p)->key, key))
            continue;
        if ((*p)->expires_at && (*p)->expires_at <= now) {
            mem_entry *dead = *p;
            *p = dead->next;
            free_entry(dead);
            pthread_cond_broadcast(&ns->changed);
            return NULL;
        }
        return p;
    }
    return NULL;
}

static void drop(mem_ns *ns, mem_entry **p)
{
    mem_entry *e = *p;
    *p = e->next;
    free_entry(e);
    pthread_cond_broadcast(&ns->changed);
}

static anylock_status mem_open(anylock_op *op, const anylock_url *url)
{
    mem_client *mc = op->state;
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
        if (ns && !(ns->name = anylock__strdup(name))) {
            free(ns);
            ns = NULL;
        }
        if (!ns) {
            pthread_mutex_unlock(&mem_mu);
            return ANYLOCK_NOMEM;
        }
        anylock__cond_init(&ns->changed);
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
        while (ns->entries)
            drop(ns, &ns->entries);
        pthread_cond_destroy(&ns->changed);
        free(ns->name);
        free(ns);
    }
    pthread_mutex_unlock(&mem_mu);
}

static anylock_status mem_acquire(anylock_op *op)
{
    mem_ns *ns = ((mem_client *)op->state)->ns;
    anylock_status st;
    pthread_mutex_lock(&mem_mu);
    for (;;) {
        int64_t now = anylock_now_ns();
        mem_entry **p = find(ns, op->key, now);
        if (!p) {
            mem_entry *e = calloc(1, sizeof *e);
            if (!e || !(e->key = anylock__strndup(op->key, op->key_len))) {
                free(e);
                st = ANYLOCK_NOMEM;
                break;
            }
            memcpy(e->id, op->id, op->id_len + 1);
            e->expires_at = op->expires_ms ? now + op->expires_ms * 1000000 : 0;
            e->next = ns->entries;
            ns->entries = e;
            st = ANYLOCK_OK;
            break;
        }
        if (!strcmp((*p)->id, op->id)) {
            st = anylock_op_error(op, ANYLOCK_ALREADY_HELD, "lock \"%.64s\" is already held by this owner id",
                                  op->name);
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
        int64_t wake = op->deadline;
        if ((*p)->expires_at && (*p)->expires_at < wake)
            wake = (*p)->expires_at;
        anylock__cond_wait_until(&ns->changed, &mem_mu, wake);
    }
    pthread_mutex_unlock(&mem_mu);
    return st;
}

/* The entry for op->key if op->id holds it, else NULL with *st set. */
static mem_entry **owned(anylock_op *op, mem_ns *ns, anylock_status *st)
{
    mem_entry **p = find(ns, op->key, anylock_now_ns());
    if (!p || strcmp((*p)->id, op->id)) {
        *st = anylock_op_error(op, ANYLOCK_NOT_HELD, "lock \"%.64s\" is %s", op->name,
                               p ? "held by another owner" : "not held (expired or reset)");
        return NULL;
    }
    *st = ANYLOCK_OK;
    return p;
}

static anylock_status mem_release(anylock_op *op)
{
    mem_ns *ns = ((mem_client *)op->state)->ns;
    anylock_status st;
    pthread_mutex_lock(&mem_mu);
    mem_entry **p = owned(op, ns, &st);
    if (p)
        drop(ns, p);
    pthread_mutex_unlock(&mem_mu);
    return st;
}

static anylock_status mem_extend(anylock_op *op)
{
    mem_ns *ns = ((mem_client *)op->state)->ns;
    anylock_status st;
    pthread_mutex_lock(&mem_mu);
    mem_entry **p = owned(op, ns, &st);
    if (p && (*p)->expires_at == 0)
        st = ANYLOCK_NOT_EXPIRABLE;
    else if (p)
        (*p)->expires_at = anylock_now_ns() + op->expires_ms * 1000000;
    pthread_mutex_unlock(&mem_mu);
    return st;
}

static void fill_info(const mem_entry *e, int64_t now, anylock_info *info)
{
    info->held = 1;
    memcpy(info->owner, e->id, strlen(e->id) + 1);
    info->expires_in = e->expires_at ? (double)(e->expires_at - now) / 1e9 : ANYLOCK_FOREVER;
}

static anylock_status mem_inspect(anylock_op *op, anylock_info *info)
{
    mem_ns *ns = ((mem_client *)op->state)->ns;
    pthread_mutex_lock(&mem_mu);
    int64_t now = anylock_now_ns();
    mem_entry **p = find(ns, op->key, now);
    if (p)
        fill_info(*p, now, info);
    pthread_mutex_unlock(&mem_mu);
    return ANYLOCK_OK;
}

static anylock_status mem_reset(anylock_op *op)
{
    mem_ns *ns = ((mem_client *)op->state)->ns;
    pthread_mutex_lock(&mem_mu);
    mem_entry **p = find(ns, op->key, anylock_now_ns());
    if (p)
        drop(ns, p);
    pthread_mutex_unlock(&mem_mu);
    return ANYLOCK_OK;
}

static int under_prefix(const anylock_op *op, const mem_entry *e)
{
    return !strncmp(e->key, op->prefix, op->prefix_len);
}

static anylock_status mem_reset_all(anylock_op *op, size_t *count)
{
    mem_ns *ns = ((mem_client *)op->state)->ns;
    *count = 0;
    pthread_mutex_lock(&mem_mu);
    int64_t now = anylock_now_ns();
    for (mem_entry **p = &ns->entries; *p;) {
        int live = !(*p)->expires_at || (*p)->expires_at > now;
        if (under_prefix(op, *p)) {
            *count += live;
            drop(ns, p);
        } else {
            p = &(*p)->next;
        }
    }
    pthread_mutex_unlock(&mem_mu);
    return ANYLOCK_OK;
}

static anylock_status mem_list(anylock_op *op, anylock_list_fn fn, void *userdata)
{
    mem_ns *ns = ((mem_client *)op->state)->ns;
    /* Copy first: fn runs without the mutex, so it may call the library. */
    size_t n = 0, cap = 0;
    anylock_info *infos = NULL;
    char **names = NULL;
    anylock_status st = ANYLOCK_OK;
    pthread_mutex_lock(&mem_mu);
    int64_t now = anylock_now_ns();
    for (mem_entry *e = ns->entries; e && st == ANYLOCK_OK; e = e->next) {
        if (!under_prefix(op, e) || (e->expires_at && e->expires_at <= now))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            anylock_info *gi = realloc(infos, cap * sizeof *gi);
            char **gn = gi ? realloc(names, cap * sizeof *gn) : NULL;
            infos = gi ? gi : infos;
            names = gn ? gn : names;
            if (!gi || !gn) {
                st = ANYLOCK_NOMEM;
                break;
            }
        }
        memset(&infos[n], 0, sizeof infos[n]);
        fill_info(e, now, &infos[n]);
        names[n] = anylock__strdup(e->key + op->prefix_len);
        if (!names[n]) {
            st = ANYLOCK_NOMEM;
            break;
        }
        n++;
    }
    pthread_mutex_unlock(&mem_mu);
    int stop = 0;
    for (size_t i = 0; i < n; i++) {
        infos[i].name = names[i];
        if (st == ANYLOCK_OK && !stop)
            stop = fn(&infos[i], userdata);
        free(names[i]);
    }
    free(infos);
    free(names);
    return st;
}

const anylock_backend anylock__memory_backend = {
    .version = ANYLOCK_BACKEND_VERSION,
    .name = "memory",
    .state_size = sizeof(mem_client),
    .flags = 0,
    .expiry_resolution_ms = 1,
    .params = NULL,
    .open = mem_open,
    .close = mem_close,
    .acquire = mem_acquire,
    .release = mem_release,
    .extend = mem_extend,
    .inspect = mem_inspect,
    .reset = mem_reset,
    .reset_all = mem_reset_all,
    .list = mem_list,
};
