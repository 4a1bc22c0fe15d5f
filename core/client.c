/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Clients: opening from a URL, the client-wide operations, dispatch to the
 * backend's slots (with the version checks), fork detection, and the calls
 * a stacked backend uses to drive another client's backend.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* ---- fork detection ----------------------------------------------------- */

static atomic_uint fork_generation;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void)
{
    atomic_fetch_add(&fork_generation, 1);
}

static void register_fork_handler(void)
{
    pthread_atfork(NULL, NULL, on_fork_child);
}

void anylock__fork_watch(void)
{
    pthread_once(&fork_once, register_fork_handler);
}

unsigned anylock__fork_generation(void)
{
    return atomic_load_explicit(&fork_generation, memory_order_relaxed);
}

anylock_status anylock__check_process(const anylock_client *c, char *errbuf)
{
    if (c->fork_gen == anylock__fork_generation())
        return ANYLOCK_OK;
    anylock__format(errbuf, "this %s:// client was opened before fork() by the parent process; open a new "
                    "client in this process", c->scheme ? c->scheme : "");
    return ANYLOCK_FORKED;
}

/* ---- helpers shared with lock.c ---------------------------------------- */

/* Copies msg (or the status's own text) into the client's message. */
anylock_status anylock__client_record(anylock_client *c, anylock_status st, const char *msg)
{
    if (st == ANYLOCK_OK)
        return st;
    /* In a child after fork() the mutex may have been held by a thread of
     * the parent's that does not exist here: it is never taken again. */
    int forked = c->fork_gen != anylock__fork_generation();
    if (!forked)
        pthread_mutex_lock(&c->mu);
    snprintf(c->errmsg, sizeof c->errmsg, "%s", msg && *msg ? msg : anylock_strerror(st));
    if (!forked)
        pthread_mutex_unlock(&c->mu);
    return st;
}

int64_t anylock__round_expiry(const anylock_client *c, int64_t ms)
{
    int64_t r = c->resolution_ms;
    if (ms <= 0 || r <= 1)
        return ms;
    return (ms + r - 1) / r * r;
}

void anylock__op_init(anylock_op *op, anylock_client *c, anylock_lock *lock, char *errbuf)
{
    memset(op, 0, sizeof *op);
    op->state = c->state;
    op->prefix = c->prefix;
    op->prefix_len = c->prefix_len;
    op->errbuf = errbuf;
    op->deadline = ANYLOCK_DEADLINE_NEVER;
    errbuf[0] = '\0';
    if (lock) {
        op->name = lock->name;
        op->name_len = lock->name_len;
        op->key = lock->key;
        op->key_len = lock->key_len;
        op->id = lock->id;
        op->id_len = lock->id_len;
        op->lock_state = lock->backend_state;
        op->lock = lock;
        op->mode = lock->mode;
        op->permits = lock->permits;
    }
}

/* ---- open and close ------------------------------------------------------ */

/* The core's own query parameters, then the backend's. */
static anylock_status apply_params(anylock_client *c, const anylock__url *u, char *errbuf)
{
    anylock_status st;
    if (u->prefix) {
        st = anylock__check_prefix(u->prefix, errbuf);
        if (st != ANYLOCK_OK)
            return ANYLOCK_URL_BAD_PARAM;
        free(c->prefix);
        c->prefix = anylock__strdup(u->prefix);
        if (!c->prefix)
            return ANYLOCK_NOMEM;
        c->prefix_len = strlen(c->prefix);
    }
    if (u->timeout && anylock__duration_parse(u->timeout, ANYLOCK__MS_FOREVER, &c->timeout_ms, errbuf,
                                              "URL parameter timeout") != ANYLOCK_OK)
        return ANYLOCK_URL_BAD_PARAM;
    if (u->expires) {
        if (anylock__duration_parse(u->expires, 0, &c->expires_ms, errbuf, "URL parameter expires") !=
            ANYLOCK_OK)
            return ANYLOCK_URL_BAD_PARAM;
        if (c->expires_ms == 0 && strcmp(u->expires, "never") && strcmp(u->expires, "forever")) {
            anylock__format(errbuf, "URL parameter expires must be more than 0 s, or \"never\"");
            return ANYLOCK_URL_BAD_PARAM;
        }
    }
    for (size_t i = 0; i < u->pub.nparams; i++) {
        const char *name = u->pub.params[i].name;
        int known = 0;
        for (const char *const *p = c->backend->params; p && *p && !known; p++)
            known = !strcmp(*p, name);
        if (!known) {
            anylock__format(errbuf, "unknown URL query parameter \"%.64s\" for %s://", name, c->scheme);
            return ANYLOCK_URL_UNKNOWN_PARAM;
        }
    }
    return ANYLOCK_OK;
}

/* The flags a version-1 backend could mean: it knew only NO_EXCLUSION. */
#define V1_FLAGS ANYLOCK_BACKEND_NO_EXCLUSION
#define DESCRIBING_FLAGS                                                                                        \
    (ANYLOCK_BACKEND_NO_EXCLUSION | ANYLOCK_BACKEND_SESSION | ANYLOCK_BACKEND_FAIR | ANYLOCK_BACKEND_TOKEN |    \
     ANYLOCK_BACKEND_SHARED | ANYLOCK_BACKEND_SEMAPHORE | ANYLOCK_BACKEND_LIST)

static anylock_status open_client(anylock_client *c, const char *url, const anylock__defaults *d)
{
    anylock__url u;
    anylock_status st = anylock__url_parse(url, &u, c->errmsg);
    if (st != ANYLOCK_OK)
        return st;
    c->scheme = anylock__strdup(u.pub.scheme);
    if (!c->scheme) {
        st = ANYLOCK_NOMEM;
        goto done;
    }
    anylock__found found = anylock__registry_find(u.pub.scheme);
    if (found.builtins != ANYLOCK_OK) {
        st = ANYLOCK_INTERNAL;
        anylock__format(c->errmsg, "registering the built-in backends failed: %s", anylock_strerror(found.builtins));
        goto done;
    }
    if (!found.backend) {
        st = found.disabled ? ANYLOCK_BACKEND_DISABLED : ANYLOCK_URL_UNKNOWN_SCHEME;
        anylock__format(c->errmsg,
                        found.disabled ? "the %s:// backend was left out of this build of anylock"
                                       : "no backend is registered for the URL scheme \"%s\"",
                        u.pub.scheme);
        goto done;
    }
    const anylock_backend *b = found.backend;
    c->backend = b;
    c->lock_size = b->version >= 2 ? b->lock_size : 0;
    /* A version-1 backend said "I can list" by having a list slot. */
    c->flags = b->version >= 2 ? b->flags & DESCRIBING_FLAGS
                               : (b->flags & V1_FLAGS) | (b->list ? ANYLOCK_BACKEND_LIST : 0u);
    c->resolution_ms = b->expiry_resolution_ms;
    st = apply_params(c, &u, c->errmsg);
    if (st != ANYLOCK_OK)
        goto done;
    if (b->state_size) {
        c->state = calloc(1, b->state_size);
        if (!c->state) {
            st = ANYLOCK_NOMEM;
            goto done;
        }
    }
    anylock_op op;
    anylock__op_init(&op, c, NULL, c->errmsg);
    op.lock_size = c->lock_size;
    op.flags = c->flags;
    op.expiry_resolution_ms = c->resolution_ms;
    c->backend_open = 1;
    st = b->open(&op, &u.pub);
    if (st == ANYLOCK_OK && b->version >= 2) {
        if (op.expiry_resolution_ms < 1 || op.expiry_resolution_ms > 3600 * 1000 || op.lock_size > (1u << 20)) {
            st = ANYLOCK_BACKEND_INVALID;
            anylock__format(c->errmsg, "the %s backend's open gave an absurd lock size or expiry resolution",
                            b->name);
            goto done;
        }
        c->lock_size = op.lock_size;
        c->flags = op.flags & DESCRIBING_FLAGS;
        c->resolution_ms = op.expiry_resolution_ms;
    }
    /* A session-bound store frees a lock when its holder goes away, so its
     * locks need no expiry unless one was asked for. */
    if (st == ANYLOCK_OK && (c->flags & ANYLOCK_BACKEND_SESSION) && !u.expires && !d->expires_set)
        c->expires_ms = 0;
done:
    anylock__url_free(&u);
    return st;
}

anylock_status anylock_open(const char *url, anylock_client **out)
{
    if (!out)
        return ANYLOCK_INVALID;
    anylock_client *c = calloc(1, sizeof *c);
    *out = c;
    if (!c)
        return ANYLOCK_NOMEM;
    anylock__fork_watch();
    c->fork_gen = anylock__fork_generation();
    pthread_mutex_init(&c->mu, NULL);
    anylock_cond_init(&c->renewer.wake);
    anylock_cond_init(&c->renewer.work);
    anylock_cond_init(&c->renewer.idle);
    anylock__defaults d;
    anylock__defaults_get(&d);
    c->timeout_ms = d.timeout_ms;
    c->expires_ms = d.expires_ms;
    c->pid = (long)getpid();
    c->wall_offset_ns = (int64_t)(anylock__wall_now() * 1e9) - anylock_now_ns();
    if (gethostname(c->host, sizeof c->host - 1) != 0)
        c->host[0] = '\0';
    c->host[sizeof c->host - 1] = '\0';
    /* The URL as it is shown, whether or not it parses. */
    c->url = anylock__redact(url ? url : "");
    c->prefix = anylock__strdup(d.prefix);
    /* Before open_client: the backend's open sees op->prefix_len. */
    if (c->prefix)
        c->prefix_len = strlen(c->prefix);
    anylock_status st = c->prefix && c->url ? open_client(c, url, &d) : ANYLOCK_NOMEM;
    if (st != ANYLOCK_OK && !c->errmsg[0])
        anylock__format(c->errmsg, "%s", anylock_strerror(st));
    /* Whatever a parser or a backend wrote, no secret of the URL stays. */
    if (url)
        anylock__scrub(c->errmsg, url);
    c->open_status = st;
    return st;
}

anylock_status anylock_close(anylock_client *c)
{
    if (!c)
        return ANYLOCK_OK;
    if (c->fork_gen != anylock__fork_generation()) {
        /* In a child after fork(): the connections, files and threads are
         * the parent's.  Only the core's memory (and the backend's state
         * block itself) is freed: the backend's close is not called, since
         * it could talk over the parent's connections, and the mutexes may
         * have been held by threads that do not exist here. */
        free(c->renewer.heap);
        free(c->state);
        free(c->url);
        free(c->scheme);
        free(c->prefix);
        free(c);
        return ANYLOCK_OK;
    }
    if (anylock__in_callback(c, NULL)) {
        anylock__client_record(c, ANYLOCK_MISUSE, "anylock_close: called from a lost-lock callback of this client");
        return ANYLOCK_MISUSE;
    }
    pthread_mutex_lock(&c->mu);
    /* A handle freed from its own lost-lock callback counts as freed: the
     * renewal worker finishes it before the shutdown below returns. */
    size_t n = c->nlocks - c->nfreeing;
    if (n)
        anylock__format(c->errmsg, "anylock_close: %zu lock handle(s) of this client are still open", n);
    pthread_mutex_unlock(&c->mu);
    if (n)
        return ANYLOCK_MISUSE;
    anylock__renewer_shutdown(c);
    if (c->backend_open) {
        char errbuf[ANYLOCK_ERRMSG_MAX];
        anylock_op op;
        anylock__op_init(&op, c, NULL, errbuf);
        c->backend->close(&op);
    }
    pthread_cond_destroy(&c->renewer.wake);
    pthread_cond_destroy(&c->renewer.work);
    pthread_cond_destroy(&c->renewer.idle);
    pthread_mutex_destroy(&c->mu);
    free(c->state);
    free(c->url);
    free(c->scheme);
    free(c->prefix);
    free(c);
    return ANYLOCK_OK;
}

const char *anylock_errmsg(const anylock_client *c)
{
    return c ? c->errmsg : "no client (out of memory, or NULL passed)";
}

const char *anylock_client_url(const anylock_client *c)
{
    return c && c->url ? c->url : "";
}

const char *anylock_client_scheme(const anylock_client *c)
{
    return c && c->scheme ? c->scheme : "";
}

const char *anylock_client_prefix(const anylock_client *c)
{
    return c && c->prefix ? c->prefix : "";
}

unsigned anylock_client_features(const anylock_client *c)
{
    if (!c || c->open_status != ANYLOCK_OK)
        return 0;
    const anylock_backend *b = c->backend;
    unsigned f = c->flags & ~ANYLOCK_FEATURE_LIST;
    if (b->extend || (c->flags & ANYLOCK_BACKEND_SESSION))
        f |= ANYLOCK_FEATURE_EXTEND;
    if (b->version >= 2 ? b->enumerate != NULL : b->inspect != NULL)
        f |= ANYLOCK_FEATURE_INSPECT;
    if (b->version >= 2 ? (b->enumerate && (c->flags & ANYLOCK_BACKEND_LIST)) : b->list != NULL)
        f |= ANYLOCK_FEATURE_LIST;
    if (b->reset)
        f |= ANYLOCK_FEATURE_RESET;
    if (b->reset_all)
        f |= ANYLOCK_FEATURE_RESET_ALL;
    return f;
}

/* ---- client-wide calls -------------------------------------------------- */

/* A client-wide call: checks the client, builds the op for name (required
 * when needs_name), and gives the backend slot a key of prefix + name. */
typedef struct client_call {
    anylock_op op;
    char *key;
    char errbuf[ANYLOCK_ERRMSG_MAX];
} client_call;

static anylock_status call_begin(client_call *cc, anylock_client *c, const char *name, int needs_name,
                                 unsigned feature, const char *what)
{
    cc->key = NULL;
    cc->errbuf[0] = '\0';
    if (!c)
        return ANYLOCK_INVALID;
    if (c->open_status != ANYLOCK_OK) {
        /* Keep the message of the failed open. */
        pthread_mutex_lock(&c->mu);
        memcpy(cc->errbuf, c->errmsg, sizeof cc->errbuf);
        pthread_mutex_unlock(&c->mu);
        return c->open_status;
    }
    anylock_status st = anylock__check_process(c, cc->errbuf);
    if (st != ANYLOCK_OK)
        return st;
    anylock__op_init(&cc->op, c, NULL, cc->errbuf);
    if (needs_name) {
        st = anylock__check_name(name, cc->errbuf);
        if (st != ANYLOCK_OK)
            return anylock__client_record(c, st, cc->errbuf);
    }
    if (!(anylock_client_features(c) & feature)) {
        anylock__format(cc->errbuf, "%s is not supported by the %s backend", what, c->backend->name);
        return anylock__client_record(c, ANYLOCK_UNSUPPORTED, cc->errbuf);
    }
    if (needs_name) {
        size_t n = strlen(name);
        cc->key = malloc(c->prefix_len + n + 1);
        if (!cc->key)
            return anylock__client_record(c, ANYLOCK_NOMEM, NULL);
        memcpy(cc->key, c->prefix, c->prefix_len);
        memcpy(cc->key + c->prefix_len, name, n + 1);
        cc->op.name = name;
        cc->op.name_len = n;
        cc->op.key = cc->key;
        cc->op.key_len = c->prefix_len + n;
    }
    return ANYLOCK_OK;
}

static anylock_status call_end(client_call *cc, anylock_client *c, anylock_status st)
{
    free(cc->key);
    if (!c || c->open_status != ANYLOCK_OK || c->fork_gen != anylock__fork_generation())
        return st;
    if (st != ANYLOCK_OK && !cc->errbuf[0])
        anylock__format(cc->errbuf, "%s", anylock_strerror(st));
    return anylock__client_record(c, st, cc->errbuf);
}

anylock_status anylock_reset(anylock_client *c, const char *name)
{
    client_call cc;
    anylock_status st = call_begin(&cc, c, name, 1, ANYLOCK_FEATURE_RESET, "reset");
    if (st == ANYLOCK_OK)
        st = c->backend->reset(&cc.op);
    return call_end(&cc, c, st);
}

anylock_status anylock_reset_all(anylock_client *c, size_t *count)
{
    size_t dummy;
    client_call cc;
    anylock_status st = call_begin(&cc, c, NULL, 0, ANYLOCK_FEATURE_RESET_ALL, "reset-all");
    if (st == ANYLOCK_OK)
        st = c->backend->reset_all(&cc.op, count ? count : &dummy);
    return call_end(&cc, c, st);
}

/* Gathers the records for cc's op (one name, or all with name NULL). */
static anylock_status gather(client_call *cc, anylock_client *c, anylock__gather *g)
{
    anylock_emitter em;
    anylock__gather_init(g, &em);
    anylock_status st = anylock__enumerate(c, &cc->op, &em);
    if (st == ANYLOCK_OK && g->nomem)
        st = anylock_op_error(&cc->op, ANYLOCK_NOMEM, "out of memory reading the locks");
    if (st == ANYLOCK_OK)
        anylock__gather_sort(g);
    return st;
}

/* Fills info for the one name cc is about, from the gathered records. */
static void info_for_name(const anylock__gather *g, const char *name, size_t name_len, anylock_info *info)
{
    size_t from = 0, to = 0;
    /* The backend was asked for one key; records for another name (a
     * backend that emits more than asked) are ignored. */
    while (from < g->n && (g->recs[from].name_len != name_len || memcmp(g->recs[from].name, name, name_len)))
        from++;
    to = from;
    while (to < g->n && g->recs[to].name_len == name_len && !memcmp(g->recs[to].name, name, name_len))
        to++;
    info->name = name;
    info->name_len = name_len;
    anylock__gather_info(g, from, to, info);
}

anylock_status anylock__inspect(anylock_client *c, const char *name, anylock_info *info, char *errout)
{
    if (!info)
        return ANYLOCK_INVALID;
    memset(info, 0, sizeof *info);
    client_call cc;
    anylock_status st = call_begin(&cc, c, name, 1, ANYLOCK_FEATURE_INSPECT, "inspect");
    if (st == ANYLOCK_OK) {
        anylock__gather g;
        st = gather(&cc, c, &g);
        if (st == ANYLOCK_OK)
            info_for_name(&g, name, strlen(name), info);
        anylock__gather_free(&g);
    }
    st = call_end(&cc, c, st);
    if (errout)
        memcpy(errout, cc.errbuf, ANYLOCK_ERRMSG_MAX);
    return st;
}

anylock_status anylock_inspect(anylock_client *c, const char *name, anylock_info *info)
{
    return anylock__inspect(c, name, info, NULL);
}

anylock_status anylock_holders(anylock_client *c, const char *name, anylock_holder_fn fn, void *userdata)
{
    if (!fn)
        return ANYLOCK_INVALID;
    client_call cc;
    anylock_status st = call_begin(&cc, c, name, 1, ANYLOCK_FEATURE_INSPECT, "inspect");
    anylock__gather g;
    memset(&g, 0, sizeof g);
    if (st == ANYLOCK_OK)
        st = gather(&cc, c, &g);
    st = call_end(&cc, c, st);
    size_t n = name ? strlen(name) : 0;
    for (size_t i = 0; st == ANYLOCK_OK && i < g.n; i++) {
        const anylock__rec *r = &g.recs[i];
        if (r->name_len != n || memcmp(r->name, name, n))
            continue;
        anylock_holder h;
        char host[ANYLOCK_HOST_MAX + 1], label[ANYLOCK_LABEL_MAX + 1];
        anylock__gather_holder(r, &h, host, label);
        if (fn(&h, userdata))
            break;
    }
    anylock__gather_free(&g);
    return st;
}

anylock_status anylock_list(anylock_client *c, anylock_list_fn fn, void *userdata)
{
    if (!fn)
        return ANYLOCK_INVALID;
    client_call cc;
    anylock_status st = call_begin(&cc, c, NULL, 0, ANYLOCK_FEATURE_LIST, "list");
    anylock__gather g;
    memset(&g, 0, sizeof g);
    if (st == ANYLOCK_OK)
        st = gather(&cc, c, &g);
    st = call_end(&cc, c, st);
    /* fn runs after the store was read and with nothing held, so it may call
     * the library (even on this client). */
    for (size_t from = 0; st == ANYLOCK_OK && from < g.n;) {
        size_t to = from + 1;
        while (to < g.n && g.recs[to].name_len == g.recs[from].name_len &&
               !memcmp(g.recs[to].name, g.recs[from].name, g.recs[from].name_len))
            to++;
        anylock_info info;
        memset(&info, 0, sizeof info);
        info.name = g.recs[from].name;
        info.name_len = g.recs[from].name_len;
        anylock__gather_info(&g, from, to, &info);
        if (fn(&info, userdata))
            break;
        from = to;
    }
    anylock__gather_free(&g);
    return st;
}

/* ---- stacked backends ---------------------------------------------------- */

size_t anylock_client_lock_size(const anylock_client *c)
{
    return c && c->open_status == ANYLOCK_OK ? c->lock_size : 0;
}

unsigned anylock_client_flags(const anylock_client *c)
{
    return c && c->open_status == ANYLOCK_OK ? c->flags : 0;
}

int64_t anylock_client_expiry_resolution_ms(const anylock_client *c)
{
    return c && c->open_status == ANYLOCK_OK ? c->resolution_ms : 1;
}

anylock_status anylock_check_store_url(anylock_op *op, const char *param, const char *url, const char *self)
{
    static const char *const core[] = {"prefix", "timeout", "expires"};
    anylock__url u;
    char eb[ANYLOCK_ERRMSG_MAX];
    if (anylock__url_parse(url, &u, eb) != ANYLOCK_OK)
        return ANYLOCK_OK; /* opening it says what is wrong */
    const char *set[] = {u.prefix, u.timeout, u.expires};
    int nested = self && !strcmp(u.pub.scheme, self);
    anylock__url_free(&u);
    for (size_t i = 0; i < sizeof core / sizeof *core; i++)
        if (set[i])
            return anylock_op_error(op, ANYLOCK_URL_BAD_PARAM,
                                    "%s:// parameter %s: set %s on the %s:// URL, not on the store's URL",
                                    self ? self : "the", param, core[i], self ? self : "outer");
    if (nested)
        return anylock_op_error(op, ANYLOCK_URL_BAD_PARAM, "%s:// parameter %s: %s:// cannot be nested", self, param,
                                self);
    return ANYLOCK_OK;
}

const anylock_backend *anylock_client_backend(const anylock_client *c)
{
    return c && c->open_status == ANYLOCK_OK ? c->backend : NULL;
}

void *anylock_client_state(const anylock_client *c)
{
    return c && c->open_status == ANYLOCK_OK ? c->state : NULL;
}

static const char *const slot_names[] = {"acquire", "release", "extend", "reset", "reset-all", "enumerate", "forget"};

anylock_status anylock_forward(anylock_client *c, anylock_slot slot, anylock_op *op, void *arg)
{
    if (!c || !op || (unsigned)slot > ANYLOCK_SLOT_FORGET)
        return ANYLOCK_INVALID;
    if (c->open_status != ANYLOCK_OK)
        return anylock_op_error(op, c->open_status, "%s", c->errmsg);
    anylock_status st = anylock__check_process(c, op->errbuf);
    if (st != ANYLOCK_OK)
        return st;
    const anylock_backend *b = c->backend;
    op->state = c->state;
    op->expires_ms = anylock__round_expiry(c, op->expires_ms);
    if (slot == ANYLOCK_SLOT_ACQUIRE && op->mode != ANYLOCK_EXCLUSIVE &&
        !(c->flags & (op->mode == ANYLOCK_SHARED ? ANYLOCK_BACKEND_SHARED : ANYLOCK_BACKEND_SEMAPHORE)))
        return anylock_op_error(op, ANYLOCK_MODE_UNSUPPORTED, "the %s backend cannot take %s", b->name,
                                op->mode == ANYLOCK_SHARED ? "shared locks" : "semaphores");
    anylock_status (*fn)(anylock_op *) = NULL;
    switch (slot) {
    case ANYLOCK_SLOT_ACQUIRE:
        fn = b->acquire;
        break;
    case ANYLOCK_SLOT_RELEASE:
        fn = b->release;
        break;
    case ANYLOCK_SLOT_EXTEND:
        /* A session-bound store without extend keeps no expiry itself: the
         * expiry is the holder's, and there is nothing to send. */
        if (!b->extend && (c->flags & ANYLOCK_BACKEND_SESSION))
            return ANYLOCK_OK;
        fn = b->extend;
        break;
    case ANYLOCK_SLOT_RESET:
        fn = b->reset;
        break;
    case ANYLOCK_SLOT_RESET_ALL:
        if (!b->reset_all)
            break;
        return b->reset_all(op, arg);
    case ANYLOCK_SLOT_ENUMERATE:
        if (!op->name && !(anylock_client_features(c) & ANYLOCK_FEATURE_LIST))
            break;
        return anylock__enumerate(c, op, arg);
    case ANYLOCK_SLOT_FORGET:
        if (b->version >= 2 && b->forget)
            b->forget(op);
        return ANYLOCK_OK;
    }
    if (!fn)
        return anylock_op_error(op, ANYLOCK_UNSUPPORTED, "the %s backend cannot %s", b->name, slot_names[slot]);
    return fn(op);
}
