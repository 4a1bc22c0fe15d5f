/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The holder watch of etcd://: per client, one thread and one watch stream,
 * for deletions only (the NOPUT filter), over the longest prefix the
 * directories of its held keys share (<prefix><name>/: the name's
 * directory while it holds one lock, however often it takes it again, else
 * at most the client's prefix).  So a deletion reaches the streams of the
 * clients whose keys are near it, not of every client that holds a lock
 * under the prefix (which would make each release cost the server an event
 * for every such client).  A key a handle holds that is deleted (its lease
 * was revoked or ran out, a reset took it) is reported at once through
 * anylock_lock_lost(), as the session-bound stores report theirs, not at
 * the holder's next renewal, and also for a lock that is not renewed.
 *
 * A deletion is ours when it names our key (the lease id is in it, so no
 * other acquisition ever has the same key) at a revision after the key's
 * creation.  Each key needs every deletion from its creation on: the
 * deletions the running stream delivered lately are kept (a ring of their
 * keys' hashes), so a key that joins after the stream went past its
 * creation is checked against them; only if they do not reach back that
 * far, or one may be its own, does the stream start again from the key's
 * creation (the events in between are replayed, so none is missed).  A
 * stream that ended starts again after the last revision it delivered; if
 * etcd compacted that history away, each key is looked up once instead.
 * A key that joins outside the running stream's range starts the stream
 * again, over a range that takes it in; one read of that range first
 * tells which keys are still there (and need only later revisions) and
 * which are gone, since the last deletion the old stream delivered can be
 * far back and a stream started there makes etcd read all history since.
 * The thread runs from the first key on; the stream is dropped a while
 * after the last key left.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd.h"

/* A stream that could not start or ended is started again after this
 * long, doubling up to the most. */
#define RETRY_MIN_MS 50
#define RETRY_MAX_MS 1000
/* A loss found this soon after its key joined is reported again then: the
 * first report may have come before the core knew the acquire's answer. */
#define REREPORT_MS 1000
/* The stream stays this long after the last key left (the next acquire
 * of a program that takes locks one after another needs no new one). */
#define LINGER_MS 2000
/* Deletions remembered, for keys that join after the stream passed them. */
#define RING 256

typedef struct seen_delete {
    uint64_t hash; /* of the key */
    int64_t rev;
} seen_delete;

struct etcd_holders {
    etcd_http *http;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    pthread_t thread;
    int started, stop;
    etcd_held *list;
    size_t n;
    char *range;        /* the running stream's range: every key that starts so */
    size_t range_len;
    int restart;        /* a key needs revisions the running stream went past */
    int widen;          /* the restart is for a key outside the running stream's range */
    etcd_watch *w;      /* the running stream (replaced by the thread only) */
    int64_t started_at; /* the revision the running stream started from */
    int64_t seen;       /* the last revision it delivered */
    int64_t used_ns;    /* when a key last joined or left */
    /* The deletions of revisions (ring_floor, seen], or the latest RING of
     * them (ring_floor rises as older ones are overwritten). */
    seen_delete ring[RING];
    size_t ring_next, ring_n;
    int64_t ring_floor;
};

/* FNV-1a, for the ring. */
static uint64_t key_hash(const char *k, size_t n)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)k[i]) * 1099511628211ull;
    return h;
}

anylock_status etcd_holders_open(anylock_op *op, etcd_http *h, etcd_holders **out)
{
    *out = NULL;
    etcd_holders *hs = calloc(1, sizeof *hs);
    if (!hs)
        return anylock_op_error(op, ANYLOCK_NOMEM, "etcd: out of memory");
    hs->http = h;
    if (pthread_mutex_init(&hs->mu, NULL)) {
        free(hs);
        return anylock_op_error(op, ANYLOCK_NOMEM, "etcd: out of memory");
    }
    if (anylock_cond_init(&hs->cond)) {
        pthread_mutex_destroy(&hs->mu);
        free(hs);
        return anylock_op_error(op, ANYLOCK_NOMEM, "etcd: out of memory");
    }
    *out = hs;
    return ANYLOCK_OK;
}

/* Reports e lost (hs->mu held). */
static void report(etcd_held *e, int64_t now)
{
    if (!e->lost) {
        e->lost = 1;
        int64_t again = e->joined_ns + (int64_t)REREPORT_MS * 1000000;
        e->rereport_at = now < again ? again : 0;
    }
    anylock_lock_lost(e->lock, ANYLOCK_NOT_HELD,
                      "lock \"%s\": its key was deleted in etcd (its lease was revoked or ran out, or it was reset)",
                      e->name);
}

/* Whether the running stream watches e's key (hs->mu held). */
static int in_range(const etcd_holders *hs, const etcd_held *e)
{
    return hs->w && e->key_len >= hs->range_len && !memcmp(e->key, hs->range, hs->range_len);
}

/* A copy of the longest prefix the directories of the keys still watched
 * share (hs->mu held), in *out; -1 when out of memory. */
static int shared_prefix(const etcd_holders *hs, char **out, size_t *len)
{
    const etcd_held *first = NULL;
    size_t n = 0;
    for (const etcd_held *e = hs->list; e; e = e->next) {
        if (e->lost)
            continue;
        if (!first) {
            first = e;
            n = e->dir_len;
            continue;
        }
        size_t i = 0;
        while (i < n && i < e->dir_len && e->key[i] == first->key[i])
            i++;
        n = i;
    }
    *len = n;
    *out = malloc(n ? n : 1);
    if (!*out)
        return -1;
    if (n)
        memcpy(*out, first->key, n);
    return 0;
}

/* The first revision the next stream must deliver (hs->mu held). */
static int64_t start_revision(const etcd_holders *hs)
{
    int64_t from = INT64_MAX;
    for (const etcd_held *e = hs->list; e; e = e->next)
        if (!e->lost && e->need_from < from)
            from = e->need_from;
    return from;
}

/* After the running stream delivered up to hs->seen, what each key it
 * covered still needs (hs->mu held). */
static void covered(etcd_holders *hs)
{
    if (!hs->w)
        return;
    for (etcd_held *e = hs->list; e; e = e->next)
        if (in_range(hs, e) && e->need_from >= hs->started_at && e->need_from <= hs->seen)
            e->need_from = hs->seen + 1;
}

/* Applies one message of the stream (hs->mu held): 0, or -1 when the
 * stream was cancelled (compacted history: *compacted set). */
static int apply(etcd_holders *hs, json_object *msg, int *compacted)
{
    json_object *res = etcd_get(msg, "result");
    if (!res)
        return -1; /* an error from the gateway */
    if (etcd_get_int(res, "compact_revision", 0) > 0) {
        *compacted = 1;
        return -1;
    }
    json_object *events = etcd_get(res, "events");
    size_t n = events && json_object_is_type(events, json_type_array) ? json_object_array_length(events) : 0;
    int64_t now = anylock_now_ns();
    for (size_t i = 0; i < n; i++) {
        json_object *ev = json_object_array_get_idx(events, i);
        json_object *type = etcd_get(ev, "type");
        json_object *kv = etcd_get(ev, "kv");
        if (!type || strcmp(json_object_get_string(type), "DELETE") || !kv)
            continue;
        int64_t rev = etcd_get_int(kv, "mod_revision", 0);
        if (rev > hs->seen)
            hs->seen = rev;
        json_object *k = etcd_get(kv, "key");
        size_t len = 0;
        char *key = k ? etcd_unb64(json_object_get_string(k), &len) : NULL;
        seen_delete *slot = &hs->ring[hs->ring_next];
        if (hs->ring_n == RING && slot->rev > hs->ring_floor)
            hs->ring_floor = slot->rev;
        /* A key that cannot be decoded counts as anyone's. */
        *slot = (seen_delete){key ? key_hash(key, len) : 0, rev};
        hs->ring_next = (hs->ring_next + 1) % RING;
        if (hs->ring_n < RING)
            hs->ring_n++;
        if (!key) {
            hs->ring_floor = rev;
            continue;
        }
        for (etcd_held *e = hs->list; e; e = e->next)
            if (!e->lost && e->key_len == len && !memcmp(e->key, key, len) && rev > e->rev)
                report(e, now);
        free(key);
    }
    if (etcd_get(res, "canceled") && json_object_get_boolean(etcd_get(res, "canceled")))
        return -1;
    return 0;
}

/* A key as a range read found it. */
typedef struct found_key {
    char *key;
    size_t len;
    int64_t create_rev;
} found_key;

static int found_cmp(const void *a, const void *b)
{
    const found_key *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->key, y->key, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* Before a stream starts again over a wider range: the keys the old one
 * watched need every deletion after the last one it delivered, which can
 * be long ago (it delivers nothing but deletions), and a stream that starts
 * there makes etcd read all the history since.  One read of the range they
 * share tells instead, as of its revision R, which of them are there (they
 * then need only revisions after R) and which are gone (lost).  Any failure
 * leaves them as they were (hs->mu held, released during the call). */
static void confirm_held(etcd_holders *hs, anylock_op *op)
{
    char *range = NULL;
    size_t range_len = 0;
    int any = 0;
    for (const etcd_held *e = hs->list; e && !any; e = e->next)
        any = !e->lost;
    if (!any || shared_prefix(hs, &range, &range_len) != 0)
        return;
    etcd_buf b = {0};
    etcd_buf_add(&b, "{");
    etcd_buf_prefix_range(&b, range, range_len);
    etcd_buf_add(&b, ",\"keys_only\":true}");
    free(range);
    pthread_mutex_unlock(&hs->mu);
    etcd_reply r;
    anylock_status st =
        b.failed ? ANYLOCK_NOMEM : etcd_call(op, hs->http, "/v3/kv/range", b.s, ANYLOCK_DEADLINE_NEVER, &r);
    etcd_buf_free(&b);
    found_key *fk = NULL;
    size_t nf = 0;
    int64_t at = 0;
    if (st == ANYLOCK_OK) {
        at = etcd_get_int(etcd_get(r.json, "header"), "revision", 0);
        json_object *kvs = etcd_get(r.json, "kvs");
        size_t n = kvs && json_object_is_type(kvs, json_type_array) ? json_object_array_length(kvs) : 0;
        fk = calloc(n ? n : 1, sizeof *fk);
        for (size_t i = 0; fk && i < n; i++) {
            json_object *kv = json_object_array_get_idx(kvs, i);
            json_object *k = etcd_get(kv, "key");
            size_t len = 0;
            char *key = k ? etcd_unb64(json_object_get_string(k), &len) : NULL;
            if (!key) {
                at = 0; /* cannot tell: leave every key as it was */
                break;
            }
            fk[nf++] = (found_key){key, len, etcd_get_int(kv, "create_revision", 0)};
        }
        if (!fk)
            at = 0;
        json_object_put(r.json);
    }
    if (at > 0)
        qsort(fk, nf, sizeof *fk, found_cmp);
    pthread_mutex_lock(&hs->mu);
    /* Keys that joined meanwhile are judged alike, if made by R. */
    for (etcd_held *e = hs->list; at > 0 && e; e = e->next) {
        if (e->lost || e->rev > at)
            continue;
        found_key want = {e->key, e->key_len, 0};
        const found_key *f = nf ? bsearch(&want, fk, nf, sizeof *fk, found_cmp) : NULL;
        if (!f || f->create_rev != e->rev)
            report(e, anylock_now_ns());
        else if (e->need_from <= at)
            e->need_from = at + 1;
    }
    for (size_t i = 0; i < nf; i++)
        free(fk[i].key);
    free(fk);
}

/* After a compaction: looks up each key once (hs->mu held, released
 * during the calls); the next stream starts after the revision read. */
static void look_up_all(etcd_holders *hs, anylock_op *op)
{
    for (etcd_held *e = hs->list; e; e = e->next) {
        if (e->lost)
            continue;
        etcd_buf b = {0};
        etcd_buf_add(&b, "{\"key\":\"");
        etcd_buf_b64(&b, e->key, e->key_len);
        etcd_buf_add(&b, "\",\"keys_only\":true}");
        int64_t rev = e->rev;
        pthread_mutex_unlock(&hs->mu);
        etcd_reply r;
        anylock_status st = b.failed ? ANYLOCK_NOMEM
                                     : etcd_call(op, hs->http, "/v3/kv/range", b.s, ANYLOCK_DEADLINE_NEVER, &r);
        etcd_buf_free(&b);
        int gone = 0;
        int64_t at = 0;
        if (st == ANYLOCK_OK) {
            at = etcd_get_int(etcd_get(r.json, "header"), "revision", 0);
            json_object *kvs = etcd_get(r.json, "kvs");
            json_object *kv = kvs && json_object_is_type(kvs, json_type_array) && json_object_array_length(kvs) == 1
                                  ? json_object_array_get_idx(kvs, 0)
                                  : NULL;
            gone = !kv || etcd_get_int(kv, "create_revision", 0) != rev;
            json_object_put(r.json);
        }
        pthread_mutex_lock(&hs->mu);
        /* e may have left meanwhile: look for it again. */
        etcd_held *f = hs->list;
        while (f && f != e)
            f = f->next;
        if (!f)
            return; /* the list changed: the next stream starts from what the rest need */
        if (st == ANYLOCK_OK && gone)
            report(e, anylock_now_ns());
        else if (st == ANYLOCK_OK && at >= e->need_from)
            e->need_from = at + 1;
    }
}

static etcd_watch *start_stream(anylock_op *op, etcd_http *http, const char *range, size_t range_len, int64_t from)
{
    etcd_buf b = {0};
    etcd_buf_add(&b, "{\"create_request\":{");
    etcd_buf_prefix_range(&b, range, range_len);
    etcd_buf_add(&b, ",\"start_revision\":\"%" PRId64 "\",\"filters\":[\"NOPUT\"]}}", from);
    etcd_watch *w = NULL;
    if (!b.failed && etcd_watch_start(op, http, b.s, &w) != ANYLOCK_OK)
        w = NULL;
    etcd_buf_free(&b);
    return w;
}

static void *holders_main(void *arg)
{
    etcd_holders *hs = arg;
    char errbuf[ANYLOCK_ERRMSG_MAX] = "";
    anylock_op op;
    memset(&op, 0, sizeof op);
    op.errbuf = errbuf;
    op.deadline = ANYLOCK_DEADLINE_NEVER;
    int64_t retry_ms = RETRY_MIN_MS;
    pthread_mutex_lock(&hs->mu);
    while (!hs->stop) {
        int64_t now = anylock_now_ns(), next = ANYLOCK_DEADLINE_NEVER;
        for (etcd_held *e = hs->list; e; e = e->next) {
            if (!e->lost || !e->rereport_at)
                continue;
            if (e->rereport_at <= now) {
                e->rereport_at = 0;
                report(e, now);
            } else if (e->rereport_at < next) {
                next = e->rereport_at;
            }
        }
        int64_t from = start_revision(hs);
        int64_t linger_until = hs->used_ns + (int64_t)LINGER_MS * 1000000;
        if (from == INT64_MAX && hs->w && !hs->restart && now < linger_until) {
            /* No key, for now: the stream stays a while. */
            if (linger_until < next)
                next = linger_until;
        } else if (from == INT64_MAX || hs->restart) {
            /* Nothing to watch, or the stream must start again. */
            covered(hs);
            hs->restart = 0;
            etcd_watch *old = hs->w;
            hs->w = NULL;
            if (old) {
                pthread_mutex_unlock(&hs->mu);
                etcd_watch_stop(old);
                pthread_mutex_lock(&hs->mu);
            }
            if (hs->widen && from != INT64_MAX)
                confirm_held(hs, &op);
            hs->widen = 0;
            if (from == INT64_MAX) {
                if (!hs->stop && start_revision(hs) == INT64_MAX && !hs->restart)
                    anylock_cond_wait_until(&hs->cond, &hs->mu, next);
                continue;
            }
        }
        if (!hs->w) {
            from = start_revision(hs);
            if (from == INT64_MAX)
                continue;
            char *range = NULL;
            size_t range_len = 0;
            etcd_watch *w = NULL;
            if (shared_prefix(hs, &range, &range_len) == 0) {
                pthread_mutex_unlock(&hs->mu);
                w = start_stream(&op, hs->http, range, range_len, from);
                pthread_mutex_lock(&hs->mu);
            }
            if (!w) {
                free(range);
                int64_t until = anylock_now_ns() + retry_ms * 1000000;
                retry_ms = retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : retry_ms * 2;
                if (!hs->stop)
                    anylock_cond_wait_until(&hs->cond, &hs->mu, until < next ? until : next);
                continue;
            }
            hs->w = w;
            free(hs->range);
            hs->range = range;
            hs->range_len = range_len;
            hs->started_at = from;
            hs->seen = from - 1;
            hs->ring_floor = from - 1;
            hs->ring_n = hs->ring_next = 0;
            /* A key that joined while the stream was being started may
             * need revisions before it, or lie outside its range. */
            if (start_revision(hs) < from)
                hs->restart = 1;
            for (etcd_held *e = hs->list; e; e = e->next)
                if (!e->lost && !in_range(hs, e))
                    hs->restart = hs->widen = 1;
            if (hs->stop || hs->restart)
                continue;
        }
        etcd_watch *w = hs->w;
        pthread_mutex_unlock(&hs->mu);
        json_object *msg = NULL;
        int got = etcd_watch_next(w, next, &msg);
        pthread_mutex_lock(&hs->mu);
        if (got == 0)
            continue;
        int compacted = 0;
        int ended = got < 0 || apply(hs, msg, &compacted) < 0;
        json_object_put(msg);
        if (!ended) {
            retry_ms = RETRY_MIN_MS;
            continue;
        }
        /* The stream ended: start again after what it delivered, or, if
         * that history is gone, from what each key shows now. */
        covered(hs);
        hs->w = NULL;
        pthread_mutex_unlock(&hs->mu);
        etcd_watch_stop(w);
        pthread_mutex_lock(&hs->mu);
        if (compacted) {
            look_up_all(hs, &op);
        } else if (!hs->stop) {
            int64_t until = anylock_now_ns() + retry_ms * 1000000;
            retry_ms = retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : retry_ms * 2;
            anylock_cond_wait_until(&hs->cond, &hs->mu, until);
        }
    }
    etcd_watch *w = hs->w;
    hs->w = NULL;
    pthread_mutex_unlock(&hs->mu);
    etcd_watch_stop(w);
    return NULL;
}

/* Wakes the thread (hs->mu held). */
static void wake(etcd_holders *hs)
{
    pthread_cond_signal(&hs->cond);
    if (hs->w)
        etcd_watch_wakeup(hs->w);
}

void etcd_holders_add(etcd_holders *hs, const anylock_op *op, etcd_held *e, const char *key, size_t key_len,
                      int64_t rev)
{
    memset(e, 0, sizeof *e);
    if (!hs || !op->lock || rev <= 0 || !(e->key = malloc(key_len ? key_len : 1)))
        return;
    memcpy(e->key, key, key_len);
    e->key_len = key_len;
    e->dir_len = op->key_len < key_len ? op->key_len + 1 : key_len;
    e->lock = op->lock;
    e->rev = rev;
    e->need_from = rev + 1;
    e->joined_ns = anylock_now_ns();
    snprintf(e->name, sizeof e->name, "%.64s", op->name ? op->name : "");
    pthread_mutex_lock(&hs->mu);
    if (!hs->started && !hs->stop) {
        if (anylock_thread_create(&hs->thread, holders_main, hs) == 0)
            hs->started = 1;
    }
    if (!hs->started) {
        pthread_mutex_unlock(&hs->mu);
        free(e->key);
        memset(e, 0, sizeof *e);
        return;
    }
    e->next = hs->list;
    if (hs->list)
        hs->list->prev = e;
    hs->list = e;
    hs->n++;
    hs->used_ns = e->joined_ns;
    if (hs->w && !in_range(hs, e)) {
        hs->restart = hs->widen = 1; /* over a range that takes the key in */
    } else if (hs->w && hs->seen >= e->need_from && !hs->restart) {
        /* The running stream went past the key's creation: the deletions
         * it delivered since then must not include the key's, or it is
         * started again from there (and tells exactly). */
        int clear = e->need_from > hs->ring_floor;
        uint64_t h = key_hash(key, key_len);
        for (size_t i = 0; clear && i < hs->ring_n; i++)
            if (hs->ring[i].rev >= e->need_from && hs->ring[i].hash == h)
                clear = 0;
        if (clear)
            e->need_from = hs->seen + 1;
        else
            hs->restart = 1;
    }
    wake(hs);
    pthread_mutex_unlock(&hs->mu);
}

void etcd_holders_remove(etcd_holders *hs, etcd_held *e)
{
    if (!hs || !e->key)
        return;
    pthread_mutex_lock(&hs->mu);
    if (e->prev)
        e->prev->next = e->next;
    else
        hs->list = e->next;
    if (e->next)
        e->next->prev = e->prev;
    hs->n--;
    hs->used_ns = anylock_now_ns();
    if (!hs->list)
        wake(hs); /* to drop the stream once it has lingered */
    pthread_mutex_unlock(&hs->mu);
    free(e->key);
    memset(e, 0, sizeof *e);
}

void etcd_holders_close(etcd_holders *hs)
{
    if (!hs)
        return;
    pthread_mutex_lock(&hs->mu);
    hs->stop = 1;
    wake(hs);
    int started = hs->started;
    pthread_mutex_unlock(&hs->mu);
    if (started)
        pthread_join(hs->thread, NULL);
    /* Handles still in the list are the core's to forget; none reaches
     * here, as every handle is freed before its client. */
    pthread_cond_destroy(&hs->cond);
    pthread_mutex_destroy(&hs->mu);
    free(hs->range);
    free(hs);
}
