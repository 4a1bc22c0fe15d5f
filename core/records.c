/*
 * What a backend's enumerate slot finds, gathered by the core: every record
 * is copied as it comes (so a backend may emit while it holds its own locks,
 * and the caller's callback runs later, free to call the library), then
 * sorted by name with repeated holders dropped, then turned into the public
 * anylock_info and anylock_holder.  This is the one copy-then-callback loop
 * for inspect, list and holders on every store.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static char *copy(const char *s, size_t n, int *nomem)
{
    char *p = malloc(n + 1);
    if (!p) {
        *nomem = 1;
        return NULL;
    }
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static int gather_emit(void *ud, const anylock_record *r)
{
    anylock__gather *g = ud;
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 16;
        anylock__rec *grown = realloc(g->recs, cap * sizeof *grown);
        if (!grown) {
            g->nomem = 1;
            return 1;
        }
        g->recs = grown;
        g->cap = cap;
    }
    anylock__rec *d = &g->recs[g->n];
    memset(d, 0, sizeof *d);
    d->name = copy(r->name ? r->name : "", r->name ? r->name_len : 0, &g->nomem);
    d->name_len = r->name ? r->name_len : 0;
    d->id = copy(r->id ? r->id : "", r->id ? r->id_len : 0, &g->nomem);
    d->id_len = r->id ? r->id_len : 0;
    /* -1 is "never"; any other negative value is a lease that just ran out. */
    d->expires_in_ms = r->expires_in_ms == -1 ? -1 : r->expires_in_ms < 0 ? 0 : r->expires_in_ms;
    d->mode = r->mode;
    d->permits = r->permits;
    if (r->meta && r->meta_len) {
        size_t n = r->meta_len > ANYLOCK_META_MAX ? ANYLOCK_META_MAX : r->meta_len;
        d->meta = copy(r->meta, n, &g->nomem);
        d->meta_len = n;
    }
    g->n++;
    if (g->nomem) {
        g->n--;
        free(d->name);
        free(d->id);
        free(d->meta);
        return 1;
    }
    return 0;
}

int anylock_emit(anylock_emitter *em, const anylock_record *record)
{
    if (!em || !em->emit || !record)
        return 1;
    return em->emit(em->userdata, record) != 0;
}

void anylock__gather_init(anylock__gather *g, anylock_emitter *em)
{
    memset(g, 0, sizeof *g);
    em->emit = gather_emit;
    em->userdata = g;
}

void anylock__gather_free(anylock__gather *g)
{
    for (size_t i = 0; i < g->n; i++) {
        free(g->recs[i].name);
        free(g->recs[i].id);
        free(g->recs[i].meta);
    }
    free(g->recs);
    memset(g, 0, sizeof *g);
}

static int cmp_bytes(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : (an > bn) - (an < bn);
}

static int by_name_holder(const void *pa, const void *pb)
{
    const anylock__rec *a = pa, *b = pb;
    int c = cmp_bytes(a->name, a->name_len, b->name, b->name_len);
    if (c)
        return c;
    c = cmp_bytes(a->id, a->id_len, b->id, b->id_len);
    if (c)
        return c;
    return (int)a->mode - (int)b->mode;
}

static int same_holder(const anylock__rec *a, const anylock__rec *b)
{
    return !cmp_bytes(a->name, a->name_len, b->name, b->name_len) && !cmp_bytes(a->id, a->id_len, b->id, b->id_len) &&
           a->mode == b->mode;
}

void anylock__gather_sort(anylock__gather *g)
{
    if (g->n > 1)
        qsort(g->recs, g->n, sizeof *g->recs, by_name_holder);
    /* A record seen twice (redis SCAN may return a key twice; a composite
     * store finds its locks in both stores) is one holder: keep the sooner
     * expiry, the one the holder can be sure of, and metadata if either had
     * it. */
    size_t o = 0;
    for (size_t i = 0; i < g->n; i++) {
        if (o > 0 && same_holder(&g->recs[o - 1], &g->recs[i])) {
            anylock__rec *keep = &g->recs[o - 1], *dup = &g->recs[i];
            if (dup->expires_in_ms >= 0 && (keep->expires_in_ms < 0 || dup->expires_in_ms < keep->expires_in_ms))
                keep->expires_in_ms = dup->expires_in_ms;
            if (!keep->meta && dup->meta) {
                keep->meta = dup->meta;
                keep->meta_len = dup->meta_len;
                dup->meta = NULL;
            }
            free(dup->name);
            free(dup->id);
            free(dup->meta);
            continue;
        }
        g->recs[o++] = g->recs[i];
    }
    g->n = o;
}

static double seconds_of(int64_t ms)
{
    return ms < 0 ? ANYLOCK_FOREVER : (double)ms / 1000.0;
}

void anylock__gather_info(const anylock__gather *g, size_t from, size_t to, anylock_info *info)
{
    const char *name = info->name;
    size_t name_len = info->name_len;
    memset(info, 0, sizeof *info);
    info->name = name;
    info->name_len = name_len;
    if (from >= to)
        return;
    const anylock__rec *first = &g->recs[from];
    info->held = 1;
    info->holders = (unsigned)(to - from);
    info->mode = first->mode;
    info->permits = first->permits;
    size_t n = first->id_len < ANYLOCK_ID_MAX ? first->id_len : ANYLOCK_ID_MAX;
    memcpy(info->owner, first->id, n);
    info->owner[n] = '\0';
    info->owner_len = first->id_len;
    /* With several holders, the name is free only after the last one. */
    int64_t longest = 0;
    for (size_t i = from; i < to && longest >= 0; i++)
        if (g->recs[i].expires_in_ms < 0 || g->recs[i].expires_in_ms > longest)
            longest = g->recs[i].expires_in_ms;
    info->expires_in = seconds_of(longest);
    anylock__meta_decode(first->meta, first->meta_len, first->id, first->id_len, info->host, &info->pid,
                         &info->since, info->label);
}

void anylock__gather_holder(const anylock__rec *r, anylock_holder *h, char host[ANYLOCK_HOST_MAX + 1],
                            char label[ANYLOCK_LABEL_MAX + 1])
{
    memset(h, 0, sizeof *h);
    h->id = r->id;
    h->id_len = r->id_len;
    h->expires_in = seconds_of(r->expires_in_ms);
    h->mode = r->mode;
    h->permits = r->permits;
    anylock__meta_decode(r->meta, r->meta_len, r->id, r->id_len, host, &h->pid, &h->since, label);
    h->host = host;
    h->label = label;
}

/* ---- version-1 backends: inspect and list as records ---- */

static void emit_info(anylock_emitter *em, const char *name, size_t name_len, const anylock_info *info, int *stop)
{
    if (!info->held)
        return;
    anylock_record r = {
        .name = name,
        .name_len = name_len,
        .id = info->owner,
        .id_len = strlen(info->owner),
        .expires_in_ms = isinf(info->expires_in) ? -1 : (int64_t)ceil(info->expires_in * 1000.0),
        .mode = ANYLOCK_EXCLUSIVE,
    };
    if (anylock_emit(em, &r))
        *stop = 1;
}

typedef struct v1_list {
    anylock_emitter *em;
} v1_list;

static int v1_list_fn(const anylock_info *info, void *ud)
{
    v1_list *l = ud;
    int stop = 0;
    emit_info(l->em, info->name, strlen(info->name), info, &stop);
    return stop;
}

anylock_status anylock__enumerate(const anylock_client *c, anylock_op *op, anylock_emitter *em)
{
    const anylock_backend *b = c->backend;
    if (b->version >= 2) {
        if (!b->enumerate)
            return anylock_op_error(op, ANYLOCK_UNSUPPORTED, "the %s backend cannot %s locks", b->name,
                                    op->name ? "inspect" : "list");
        return b->enumerate(op, em);
    }
    if (op->name) {
        if (!b->inspect)
            return anylock_op_error(op, ANYLOCK_UNSUPPORTED, "the %s backend cannot inspect locks", b->name);
        anylock_info info;
        memset(&info, 0, sizeof info);
        anylock_status st = b->inspect(op, &info);
        int stop = 0;
        if (st == ANYLOCK_OK)
            emit_info(em, op->name, op->name_len, &info, &stop);
        return st;
    }
    if (!b->list)
        return anylock_op_error(op, ANYLOCK_UNSUPPORTED, "the %s backend cannot list locks", b->name);
    v1_list l = {em};
    return b->list(op, v1_list_fn, &l);
}
