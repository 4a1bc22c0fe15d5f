/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The connection pool every backend that keeps connections uses: a mutex, a
 * stack of idle connections and the backend's open/close/usable methods.  A
 * call takes an idle connection (checking it is still usable) or opens one,
 * so a thread that blocks on its connection never stalls another thread.
 */
#include <stdlib.h>

#include "internal.h"

typedef struct idle {
    struct idle *next;
    void *conn;
} idle;

struct anylock_pool {
    pthread_mutex_t mu;
    anylock_pool_methods m;
    void *ctx;
    size_t max_idle;
    idle *idle;       /* most recently used first */
    size_t nidle;
    idle *spare;      /* list nodes to reuse, so that get/put do not allocate */
};

anylock_status anylock_pool_create(const anylock_pool_methods *m, void *ctx, size_t max_idle, anylock_pool **out)
{
    if (!out)
        return ANYLOCK_INVALID;
    *out = NULL;
    if (!m || !m->open || !m->close)
        return ANYLOCK_INVALID;
    anylock_pool *p = calloc(1, sizeof *p);
    if (!p)
        return ANYLOCK_NOMEM;
    if (pthread_mutex_init(&p->mu, NULL)) {
        free(p);
        return ANYLOCK_NOMEM;
    }
    p->m = *m;
    p->ctx = ctx;
    p->max_idle = max_idle;
    *out = p;
    return ANYLOCK_OK;
}

anylock_status anylock_pool_get(anylock_pool *p, anylock_op *op, int64_t deadline, void **conn)
{
    for (;;) {
        pthread_mutex_lock(&p->mu);
        idle *i = p->idle;
        void *c = NULL;
        if (i) {
            p->idle = i->next;
            p->nidle--;
            c = i->conn;
            i->next = p->spare;
            p->spare = i;
        }
        pthread_mutex_unlock(&p->mu);
        if (!c)
            return p->m.open(p->ctx, op, deadline, conn);
        if (!p->m.usable || p->m.usable(p->ctx, c)) {
            *conn = c;
            return ANYLOCK_OK;
        }
        p->m.close(p->ctx, c);
    }
}

void anylock_pool_put(anylock_pool *p, void *conn, int broken)
{
    if (!conn)
        return;
    if (!broken) {
        pthread_mutex_lock(&p->mu);
        if (p->nidle < p->max_idle) {
            idle *i = p->spare;
            if (i)
                p->spare = i->next;
            else
                i = malloc(sizeof *i);
            if (i) {
                i->conn = conn;
                i->next = p->idle;
                p->idle = i;
                p->nidle++;
                conn = NULL;
            }
        }
        pthread_mutex_unlock(&p->mu);
    }
    if (conn)
        p->m.close(p->ctx, conn);
}

void anylock_pool_destroy(anylock_pool *p)
{
    if (!p)
        return;
    while (p->idle) {
        idle *i = p->idle;
        p->idle = i->next;
        p->m.close(p->ctx, i->conn);
        free(i);
    }
    while (p->spare) {
        idle *i = p->spare;
        p->spare = i->next;
        free(i);
    }
    pthread_mutex_destroy(&p->mu);
    free(p);
}
