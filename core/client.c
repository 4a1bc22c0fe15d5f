/*
 * Clients: opening from a URL, the client-wide operations, and dispatch to
 * the backend's slots.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Copies msg (or the status's own text) into the client's message. */
anylock_status anylock__client_record(anylock_client *c, anylock_status st, const char *msg)
{
    if (st == ANYLOCK_OK)
        return st;
    pthread_mutex_lock(&c->mu);
    snprintf(c->errmsg, sizeof c->errmsg, "%s", msg && *msg ? msg : anylock_strerror(st));
    pthread_mutex_unlock(&c->mu);
    return st;
}

int64_t anylock__round_expiry(const anylock_client *c, int64_t ms)
{
    int64_t r = c->backend->expiry_resolution_ms;
    if (ms <= 0 || r <= 1)
        return ms;
    return (ms + r - 1) / r * r;
}

void anylock__op_init(anylock_op *op, anylock_client *c, const anylock_lock *lock, char *errbuf)
{
    memset(op, 0, sizeof *op);
    op->state = c->state;
    op->prefix = c->prefix;
    op->prefix_len = c->prefix_len;
    op->errbuf = errbuf;
    errbuf[0] = '\0';
    if (lock) {
        op->name = lock->name;
        op->name_len = lock->name_len;
        op->key = lock->key;
        op->key_len = lock->key_len;
        op->id = lock->id;
        op->id_len = lock->id_len;
    }
}

void anylock__op_forward(anylock_op *op, const anylock_client *c, const anylock_op *from, char *errbuf)
{
    *op = *from;
    op->state = c->state;
    op->errbuf = errbuf;
    errbuf[0] = '\0';
    op->expires_ms = anylock__round_expiry(c, from->expires_ms);
}

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

static anylock_status open_client(anylock_client *c, const char *url)
{
    anylock__url u;
    anylock_status st = anylock__url_parse(url, &u, c->errmsg);
    if (st != ANYLOCK_OK)
        return st;
    c->url = anylock__strdup(u.redacted);
    c->scheme = anylock__strdup(u.pub.scheme);
    if (!c->url || !c->scheme) {
        st = ANYLOCK_NOMEM;
        goto done;
    }
    anylock__found found = anylock__registry_find(u.pub.scheme);
    if (!found.backend) {
        st = found.disabled ? ANYLOCK_BACKEND_DISABLED : ANYLOCK_URL_UNKNOWN_SCHEME;
        anylock__format(c->errmsg,
                        found.disabled ? "the %s:// backend was left out of this build of anylock"
                                       : "no backend is registered for the URL scheme \"%s\"",
                        u.pub.scheme);
        goto done;
    }
    c->backend = found.backend;
    st = apply_params(c, &u, c->errmsg);
    if (st != ANYLOCK_OK)
        goto done;
    if (c->backend->state_size) {
        c->state = calloc(1, c->backend->state_size);
        if (!c->state) {
            st = ANYLOCK_NOMEM;
            goto done;
        }
    }
    anylock_op op;
    anylock__op_init(&op, c, NULL, c->errmsg);
    c->backend_open = 1;
    st = c->backend->open(&op, &u.pub);
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
    pthread_mutex_init(&c->mu, NULL);
    anylock__cond_init(&c->renewer.wake);
    anylock__cond_init(&c->renewer.idle);
    anylock__defaults d;
    anylock__defaults_get(&d);
    c->timeout_ms = d.timeout_ms;
    c->expires_ms = d.expires_ms;
    c->prefix = anylock__strdup(d.prefix);
    anylock_status st = c->prefix ? open_client(c, url) : ANYLOCK_NOMEM;
    if (c->prefix)
        c->prefix_len = strlen(c->prefix);
    if (st != ANYLOCK_OK && !c->errmsg[0])
        anylock__format(c->errmsg, "%s", anylock_strerror(st));
    c->open_status = st;
    return st;
}

anylock_status anylock_close(anylock_client *c)
{
    if (!c)
        return ANYLOCK_OK;
    pthread_mutex_lock(&c->mu);
    size_t n = c->nlocks;
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

/* A client-wide call: checks the client, builds the op for name (may be
 * NULL), and gives the backend slot a key of prefix + name. */
typedef struct client_call {
    anylock_op op;
    char *key;
    char errbuf[ANYLOCK_ERRMSG_MAX];
} client_call;

static anylock_status call_begin(client_call *cc, anylock_client *c, const char *name, int has_slot,
                                 const char *what)
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
    anylock__op_init(&cc->op, c, NULL, cc->errbuf);
    anylock_status st;
    if (!has_slot) {
        anylock__format(cc->errbuf, "%s is not supported by the %s backend", what, c->backend->name);
        return anylock__client_record(c, ANYLOCK_UNSUPPORTED, cc->errbuf);
    }
    if (name) {
        st = anylock__check_name(name, cc->errbuf);
        if (st != ANYLOCK_OK)
            return anylock__client_record(c, st, cc->errbuf);
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
    return anylock__client_record(c, st, cc->errbuf);
}

anylock_status anylock_reset(anylock_client *c, const char *name)
{
    client_call cc;
    anylock_status st = call_begin(&cc, c, name, c && c->backend && c->backend->reset, "reset");
    if (st == ANYLOCK_OK)
        st = c->backend->reset(&cc.op);
    return c ? call_end(&cc, c, st) : st;
}

anylock_status anylock_reset_all(anylock_client *c, size_t *count)
{
    size_t dummy;
    client_call cc;
    anylock_status st = call_begin(&cc, c, NULL, c && c->backend && c->backend->reset_all, "reset-all");
    if (st == ANYLOCK_OK)
        st = c->backend->reset_all(&cc.op, count ? count : &dummy);
    return c ? call_end(&cc, c, st) : st;
}

anylock_status anylock_inspect(anylock_client *c, const char *name, anylock_info *info)
{
    if (!info)
        return ANYLOCK_INVALID;
    memset(info, 0, sizeof *info);
    client_call cc;
    anylock_status st = call_begin(&cc, c, name, c && c->backend && c->backend->inspect, "inspect");
    if (st == ANYLOCK_OK) {
        st = c->backend->inspect(&cc.op, info);
        info->name = name;
    }
    return c ? call_end(&cc, c, st) : st;
}

anylock_status anylock_list(anylock_client *c, anylock_list_fn fn, void *userdata)
{
    if (!fn)
        return ANYLOCK_INVALID;
    client_call cc;
    anylock_status st = call_begin(&cc, c, NULL, c && c->backend && c->backend->list, "list");
    if (st == ANYLOCK_OK)
        st = c->backend->list(&cc.op, fn, userdata);
    return c ? call_end(&cc, c, st) : st;
}
