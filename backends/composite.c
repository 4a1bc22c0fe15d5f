/*
 * migrate://?old=URL&new=URL: a composite store for moving locks from one
 * store to another without a window where two holders can get in.
 *
 * A lock is taken in the old store first and then in the new one, so two
 * composite clients never deadlock (they all wait in the same order), and a
 * composite holder excludes both a process still on the old URL and one
 * already on the new URL.  During a rolling migration the fleet goes
 * old-only + composite, then composite + new-only: old-only and new-only
 * never run together, and every pair that does run together shares a store.
 *
 * Both stores see the composite's key (its prefix followed by the name) and
 * the lock's owner id, so release and extend work in each store with no
 * state kept here, and a process on the old or new URL with the same prefix
 * sees the same keys.  The sub-clients are ordinary clients opened with
 * anylock_open(); their slots are called directly through
 * anylock__op_forward(), because the public lock API would make a fresh,
 * unheld handle.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "builtin.h"

enum { OLD = 0, NEW = 1 };
static const char *const label[2] = {"old", "new"};

typedef struct mig_client {
    anylock_client *store[2];
} mig_client;

#define MS 1000000LL

/* Records a store's failure in op: which store, then the store's own message
 * (which never holds a password: the core redacts it). */
static anylock_status store_error(anylock_op *op, const mig_client *mc, int which, anylock_status st,
                                  const char *msg)
{
    return anylock_op_error(op, st, "%s store (%s): %s", label[which], mc->store[which]->backend->name,
                            msg && *msg ? msg : anylock_strerror(st));
}

/* Checks one sub-URL before it is opened: it must parse, and it must not set
 * the core's prefix, timeout or expires, which belong to the migrate:// URL
 * (one key and one set of durations for both stores). */
static anylock_status check_sub_url(anylock_op *op, int which, const char *text, char *redacted, size_t size)
{
    char eb[ANYLOCK_ERRMSG_MAX];
    anylock__url u;
    anylock_status st = anylock__url_parse(text, &u, eb);
    if (st != ANYLOCK_OK)
        return anylock_op_error(op, st, "migrate:// parameter %s: %s", label[which], eb);
    const char *core = u.prefix ? "prefix" : u.timeout ? "timeout" : u.expires ? "expires" : NULL;
    if (core)
        st = anylock_op_error(op, ANYLOCK_URL_BAD_PARAM,
                              "migrate:// parameter %s: set %s on the migrate:// URL, not on the %s store's URL",
                              label[which], core, label[which]);
    else if (!strcmp(u.pub.scheme, "migrate"))
        st = anylock_op_error(op, ANYLOCK_URL_BAD_PARAM, "migrate:// parameter %s: migrate:// cannot be nested",
                              label[which]);
    snprintf(redacted, size, "%s", u.redacted ? u.redacted : "");
    anylock__url_free(&u);
    return st;
}

static anylock_status mig_open(anylock_op *op, const anylock_url *url)
{
    mig_client *mc = op->state;
    if (url->nhosts || (url->path[0] && strcmp(url->path, "/")))
        return anylock_op_error(op, ANYLOCK_URL_MALFORMED,
                                "migrate:// takes no host or path: name the stores with ?old=URL&new=URL");
    if (url->user)
        return anylock_op_error(op, ANYLOCK_URL_BAD_USERINFO,
                                "migrate:// takes no user or password: put them in the old and new URLs");
    char redacted[2][ANYLOCK_URL_MAX + 1];
    const char *text[2];
    for (int i = OLD; i <= NEW; i++) {
        text[i] = anylock_url_param_get(url, label[i]);
        if (!text[i] || !*text[i])
            return anylock_op_error(op, ANYLOCK_URL_BAD_PARAM,
                                    "migrate:// needs both old=URL and new=URL (percent-encode '&', '=' and '%%' "
                                    "inside them); %s= is missing",
                                    label[i]);
        anylock_status st = check_sub_url(op, i, text[i], redacted[i], sizeof redacted[i]);
        if (st != ANYLOCK_OK)
            return st;
    }
    /* One store under both names would make every acquire meet itself. */
    if (!strcmp(redacted[OLD], redacted[NEW]))
        return anylock_op_error(op, ANYLOCK_URL_BAD_PARAM, "migrate:// old and new name the same store");
    for (int i = OLD; i <= NEW; i++) {
        anylock_status st = anylock_open(text[i], &mc->store[i]);
        if (st != ANYLOCK_OK) {
            if (!mc->store[i])
                return ANYLOCK_NOMEM;
            return anylock_op_error(op, st, "%s store: %s", label[i], anylock_errmsg(mc->store[i]));
        }
    }
    return ANYLOCK_OK;
}

static void mig_close(anylock_op *op)
{
    mig_client *mc = op->state;
    /* No lock handle is ever made on a sub-client, so closing cannot refuse. */
    for (int i = OLD; i <= NEW; i++)
        anylock_close(mc->store[i]);
}

typedef enum action { DO_RELEASE, DO_EXTEND, DO_RESET } action;

/* Runs one slot of one store on op's behalf; the store's message lands in
 * errbuf. */
static anylock_status run(const mig_client *mc, int which, const anylock_op *op, action a, char *errbuf)
{
    const anylock_client *c = mc->store[which];
    anylock_op sub;
    anylock__op_forward(&sub, c, op, errbuf);
    const anylock_backend *b = c->backend;
    anylock_status (*fn)(anylock_op *) = a == DO_RELEASE ? b->release : a == DO_EXTEND ? b->extend : b->reset;
    if (!fn)
        return anylock_op_error(&sub, ANYLOCK_UNSUPPORTED, "the %s backend cannot %s locks", b->name,
                                a == DO_EXTEND ? "extend" : "reset");
    return fn(&sub);
}

/* Undoes a first-store acquire after the second failed.  Appends to op's
 * message when the undo fails too: that lock then stays until its expiry. */
static void rollback(anylock_op *op, const mig_client *mc, int which)
{
    char eb[ANYLOCK_ERRMSG_MAX];
    anylock_status st = run(mc, which, op, DO_RELEASE, eb);
    if (st == ANYLOCK_OK || st == ANYLOCK_NOT_HELD)
        return;
    char first[ANYLOCK_ERRMSG_MAX];
    memcpy(first, op->errbuf, sizeof first);
    anylock_op_error(op, ANYLOCK_OK, "%s; releasing it again in the %s store failed too (%s), so it stays there "
                     "until its expiry",
                     first, label[which], eb[0] ? eb : anylock_strerror(st));
}

/* How bad a status is, to report the worst of two. */
static int rank(anylock_status st)
{
    return st == ANYLOCK_OK ? 0 : st == ANYLOCK_NOT_HELD ? 1 : 2;
}

/* The two stores' outcomes of one action, as one status and message. */
typedef struct outcome {
    anylock_status st[2];
    char msg[2][ANYLOCK_ERRMSG_MAX];
} outcome;

static anylock_status combine(anylock_op *op, const mig_client *mc, const outcome *o)
{
    int worst = rank(o->st[NEW]) > rank(o->st[OLD]) ? NEW : OLD;
    if (o->st[worst] == ANYLOCK_OK)
        return ANYLOCK_OK;
    int other = !worst;
    if (o->st[other] == ANYLOCK_OK)
        return store_error(op, mc, worst, o->st[worst], o->msg[worst]);
    return anylock_op_error(op, o->st[worst], "%s store (%s): %s; %s store (%s): %s", label[worst],
                            mc->store[worst]->backend->name,
                            o->msg[worst][0] ? o->msg[worst] : anylock_strerror(o->st[worst]), label[other],
                            mc->store[other]->backend->name,
                            o->msg[other][0] ? o->msg[other] : anylock_strerror(o->st[other]));
}

static anylock_status mig_acquire(anylock_op *op)
{
    mig_client *mc = op->state;
    const anylock_client *old = mc->store[OLD], *nw = mc->store[NEW];
    char eb[ANYLOCK_ERRMSG_MAX];
    anylock_op sub;
    for (;;) {
        int64_t held_from = anylock_now_ns();
        anylock__op_forward(&sub, old, op, eb);
        anylock_status st = old->backend->acquire(&sub);
        if (st != ANYLOCK_OK)
            return store_error(op, mc, OLD, st, eb);
        for (;;) {
            anylock__op_forward(&sub, nw, op, eb);
            /* While we wait in the new store the old one's expiry keeps
             * running: a wait longer than the expiry would let an old-only
             * process in while we still believe we hold it.  So wait in
             * slices of two thirds of the expiry and extend the old lock
             * between them, as the renewal thread would. */
            int sliced = 0;
            if (op->expires_ms && op->deadline != 0 && old->backend->extend) {
                int64_t refresh = held_from + op->expires_ms * MS * 2 / 3;
                if (refresh < op->deadline) {
                    sub.deadline = refresh;
                    sliced = 1;
                }
            }
            st = nw->backend->acquire(&sub);
            if (st == ANYLOCK_OK)
                return ANYLOCK_OK;
            if (st != ANYLOCK_TIMEOUT || !sliced) {
                store_error(op, mc, NEW, st, eb);
                rollback(op, mc, OLD);
                return st;
            }
            int64_t t1 = anylock_now_ns();
            st = run(mc, OLD, op, DO_EXTEND, eb);
            if (st == ANYLOCK_NOT_HELD)
                break; /* reset under us while we waited: start again */
            if (st != ANYLOCK_OK) {
                store_error(op, mc, OLD, st, eb);
                rollback(op, mc, OLD);
                return st;
            }
            held_from = t1;
        }
        if (op->deadline != ANYLOCK_DEADLINE_NEVER && anylock_now_ns() >= op->deadline)
            return store_error(op, mc, OLD, ANYLOCK_TIMEOUT, "lost while waiting for the new store");
    }
}

/* New first, then old: the reverse of acquire, so that a composite waiter
 * that holds the old lock is never the one left holding nothing new. */
static anylock_status mig_release(anylock_op *op)
{
    mig_client *mc = op->state;
    outcome o;
    o.st[NEW] = run(mc, NEW, op, DO_RELEASE, o.msg[NEW]);
    o.st[OLD] = run(mc, OLD, op, DO_RELEASE, o.msg[OLD]);
    return combine(op, mc, &o);
}

/* Extends both.  If either store says the lock is no longer ours, the other
 * is released at once, so that no half-held lock outlives the handle. */
static anylock_status mig_extend(anylock_op *op)
{
    mig_client *mc = op->state;
    outcome o;
    char eb[ANYLOCK_ERRMSG_MAX];
    o.st[OLD] = run(mc, OLD, op, DO_EXTEND, o.msg[OLD]);
    if (o.st[OLD] == ANYLOCK_NOT_HELD || o.st[OLD] == ANYLOCK_NOT_EXPIRABLE) {
        run(mc, NEW, op, DO_RELEASE, eb);
        return store_error(op, mc, OLD, o.st[OLD], o.msg[OLD]);
    }
    o.st[NEW] = run(mc, NEW, op, DO_EXTEND, o.msg[NEW]);
    if (o.st[NEW] == ANYLOCK_NOT_HELD || o.st[NEW] == ANYLOCK_NOT_EXPIRABLE) {
        run(mc, OLD, op, DO_RELEASE, eb);
        return store_error(op, mc, NEW, o.st[NEW], o.msg[NEW]);
    }
    return combine(op, mc, &o);
}

static anylock_status mig_reset(anylock_op *op)
{
    mig_client *mc = op->state;
    outcome o;
    o.st[NEW] = run(mc, NEW, op, DO_RESET, o.msg[NEW]);
    o.st[OLD] = run(mc, OLD, op, DO_RESET, o.msg[OLD]);
    return combine(op, mc, &o);
}

/* Held if held in either store; the owner and expiry come from the old store
 * when it has the lock, else from the new one. */
static anylock_status mig_inspect(anylock_op *op, anylock_info *info)
{
    mig_client *mc = op->state;
    anylock_info got[2];
    for (int i = OLD; i <= NEW; i++) {
        const anylock_client *c = mc->store[i];
        char eb[ANYLOCK_ERRMSG_MAX];
        if (!c->backend->inspect)
            return store_error(op, mc, i, ANYLOCK_UNSUPPORTED, "this backend cannot inspect locks");
        anylock_op sub;
        anylock__op_forward(&sub, c, op, eb);
        memset(&got[i], 0, sizeof got[i]);
        anylock_status st = c->backend->inspect(&sub, &got[i]);
        if (st != ANYLOCK_OK)
            return store_error(op, mc, i, st, eb);
    }
    int from = got[OLD].held ? OLD : NEW;
    info->held = got[from].held;
    memcpy(info->owner, got[from].owner, sizeof info->owner);
    info->expires_in = got[from].expires_in;
    /* Held in both by one owner: it is safe only until the sooner expiry. */
    if (got[OLD].held && got[NEW].held && !strcmp(got[OLD].owner, got[NEW].owner) &&
        got[NEW].expires_in < info->expires_in)
        info->expires_in = got[NEW].expires_in;
    return ANYLOCK_OK;
}

static anylock_status mig_reset_all(anylock_op *op, size_t *count)
{
    mig_client *mc = op->state;
    outcome o;
    size_t n[2] = {0, 0};
    for (int i = NEW; i >= OLD; i--) {
        const anylock_client *c = mc->store[i];
        o.msg[i][0] = '\0';
        if (!c->backend->reset_all) {
            o.st[i] = ANYLOCK_UNSUPPORTED;
            snprintf(o.msg[i], sizeof o.msg[i], "the %s backend cannot reset all locks", c->backend->name);
            continue;
        }
        anylock_op sub;
        anylock__op_forward(&sub, c, op, o.msg[i]);
        o.st[i] = c->backend->reset_all(&sub, &n[i]);
    }
    /* A lock taken through the composite is in both stores and counts once;
     * the larger count is exact for those, a lower bound otherwise. */
    *count = n[OLD] > n[NEW] ? n[OLD] : n[NEW];
    return combine(op, mc, &o);
}

/* The union of both stores' lists, each name once. */
typedef struct listed {
    char *name;
    int store;
    anylock_info info;
} listed;

typedef struct collection {
    listed *items;
    size_t n, cap;
    int store;
    int nomem;
} collection;

static int collect(const anylock_info *info, void *userdata)
{
    collection *col = userdata;
    if (col->n == col->cap) {
        size_t cap = col->cap ? col->cap * 2 : 16;
        listed *grown = realloc(col->items, cap * sizeof *grown);
        if (!grown) {
            col->nomem = 1;
            return 1;
        }
        col->items = grown;
        col->cap = cap;
    }
    listed *it = &col->items[col->n];
    it->name = anylock__strdup(info->name);
    if (!it->name) {
        col->nomem = 1;
        return 1;
    }
    it->store = col->store;
    it->info = *info;
    col->n++;
    return 0;
}

static int by_name_then_store(const void *a, const void *b)
{
    const listed *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : x->store - y->store;
}

static anylock_status mig_list(anylock_op *op, anylock_list_fn fn, void *userdata)
{
    mig_client *mc = op->state;
    collection col = {0};
    anylock_status st = ANYLOCK_OK;
    for (int i = OLD; i <= NEW && st == ANYLOCK_OK; i++) {
        const anylock_client *c = mc->store[i];
        char eb[ANYLOCK_ERRMSG_MAX];
        if (!c->backend->list) {
            st = store_error(op, mc, i, ANYLOCK_UNSUPPORTED, "this backend cannot list locks");
            break;
        }
        anylock_op sub;
        anylock__op_forward(&sub, c, op, eb);
        col.store = i;
        st = c->backend->list(&sub, collect, &col);
        if (st == ANYLOCK_OK && col.nomem)
            st = ANYLOCK_NOMEM;
        if (st != ANYLOCK_OK)
            store_error(op, mc, i, st, eb);
    }
    if (st == ANYLOCK_OK && col.n)
        qsort(col.items, col.n, sizeof *col.items, by_name_then_store);
    int stop = 0;
    for (size_t k = 0; k < col.n; k++) {
        /* The old store's entry comes first and wins, as in inspect. */
        if (st == ANYLOCK_OK && !stop && (k == 0 || strcmp(col.items[k].name, col.items[k - 1].name))) {
            col.items[k].info.name = col.items[k].name;
            stop = fn(&col.items[k].info, userdata);
        }
    }
    for (size_t k = 0; k < col.n; k++)
        free(col.items[k].name);
    free(col.items);
    return st;
}

static const char *const mig_params[] = {"old", "new", NULL};

const anylock_backend anylock__migrate_backend = {
    .version = ANYLOCK_BACKEND_VERSION,
    .name = "migrate",
    .state_size = sizeof(mig_client),
    .flags = 0,
    /* Each store's expiry is rounded up to its own resolution when the op is
     * forwarded (anylock__op_forward), so none is needed here. */
    .expiry_resolution_ms = 1,
    .params = mig_params,
    .open = mig_open,
    .close = mig_close,
    .acquire = mig_acquire,
    .release = mig_release,
    .extend = mig_extend,
    .inspect = mig_inspect,
    .reset = mig_reset,
    .reset_all = mig_reset_all,
    .list = mig_list,
};
