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
 * the lock's owner id, so a process on the old or new URL with the same
 * prefix sees the same keys.  The two stores are ordinary clients opened with
 * anylock_open(); their backends are driven slot by slot with
 * anylock_forward(), each with its own part of the composite lock's
 * per-lock state.  Nothing here uses more than anylock_backend.h.
 *
 * While the composite waits in the new store, the old store's lease keeps
 * running, so the wait is cut into slices of two thirds of that lease with
 * an extend of the old lock between them; and once the new store has said
 * yes, an old lease that may have run low is extended before the acquire
 * returns: an acquire never succeeds on an old lease that may have passed.
 * The fencing token is the new store's (the store the migration goes to).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "builtin.h"

enum { OLD = 0, NEW = 1 };
static const char *const label[2] = {"old", "new"};

#define MS 1000000LL
/* Per-lock state offsets are aligned so that each store's part is. */
#define ALIGN 16

typedef struct mig_client {
    anylock_client *store[2];
    size_t off[2]; /* where each store's per-lock state is in ours */
} mig_client;

static const char *store_name(const mig_client *mc, int which)
{
    return anylock_client_scheme(mc->store[which]);
}

/* Records a store's failure in op: which store, then the store's own message
 * (which never holds a password: the core scrubs it). */
static anylock_status store_error(anylock_op *op, const mig_client *mc, int which, anylock_status st,
                                  const char *msg)
{
    return anylock_op_error(op, st, "%s store (%s): %s", label[which], store_name(mc, which),
                            msg && *msg ? msg : anylock_strerror(st));
}

static size_t aligned(size_t n)
{
    return (n + ALIGN - 1) / ALIGN * ALIGN;
}

static anylock_status mig_open(anylock_op *op, const anylock_url *url)
{
    mig_client *mc = op->state;
    if (url->nhosts || (url->path[0] && strcmp(url->path, "/")))
        return anylock_op_error(op, ANYLOCK_URL_MALFORMED,
                                "migrate:// takes no host or path: name the stores with ?old=URL&new=URL");
    if (url->user || url->password)
        return anylock_op_error(op, ANYLOCK_URL_BAD_USERINFO,
                                "migrate:// takes no user or password: put them in the old and new URLs");
    const char *text[2];
    for (int i = OLD; i <= NEW; i++) {
        text[i] = anylock_url_param_get(url, label[i]);
        if (!text[i] || !*text[i])
            return anylock_op_error(op, ANYLOCK_URL_BAD_PARAM,
                                    "migrate:// needs both old=URL and new=URL (percent-encode '&', '=' and '%%' "
                                    "inside them); %s= is missing",
                                    label[i]);
        anylock_status st = anylock_check_store_url(op, label[i], text[i], "migrate");
        if (st != ANYLOCK_OK)
            return st;
    }
    for (int i = OLD; i <= NEW; i++) {
        anylock_status st = anylock_open(text[i], &mc->store[i]);
        if (st != ANYLOCK_OK) {
            if (!mc->store[i])
                return ANYLOCK_NOMEM;
            return anylock_op_error(op, st, "%s store (migrate:// parameter %s): %s", label[i], label[i],
                                    anylock_errmsg(mc->store[i]));
        }
    }
    /* One store under both names would make every acquire meet itself. */
    if (!strcmp(anylock_client_url(mc->store[OLD]), anylock_client_url(mc->store[NEW])))
        return anylock_op_error(op, ANYLOCK_URL_BAD_PARAM, "migrate:// old and new name the same store");

    /* What the pair can do is what both stores can do (the token is the
     * new store's); expiries are rounded to the coarser of the two. */
    unsigned f[2] = {anylock_client_flags(mc->store[OLD]), anylock_client_flags(mc->store[NEW])};
    unsigned both = ANYLOCK_BACKEND_NO_EXCLUSION | ANYLOCK_BACKEND_SESSION | ANYLOCK_BACKEND_SHARED |
                    ANYLOCK_BACKEND_SEMAPHORE | ANYLOCK_BACKEND_LIST;
    op->flags = (f[OLD] & f[NEW] & both) | (f[NEW] & ANYLOCK_BACKEND_TOKEN);
    int64_t r[2] = {anylock_client_expiry_resolution_ms(mc->store[OLD]),
                    anylock_client_expiry_resolution_ms(mc->store[NEW])};
    op->expiry_resolution_ms = r[OLD] > r[NEW] ? r[OLD] : r[NEW];
    mc->off[OLD] = 0;
    mc->off[NEW] = aligned(anylock_client_lock_size(mc->store[OLD]));
    op->lock_size = mc->off[NEW] + anylock_client_lock_size(mc->store[NEW]);
    return ANYLOCK_OK;
}

static void mig_close(anylock_op *op)
{
    mig_client *mc = op->state;
    /* No lock handle is ever made on a sub-client, so closing cannot refuse. */
    for (int i = OLD; i <= NEW; i++)
        anylock_close(mc->store[i]);
}

/* A copy of op for one store, with that store's part of the lock's state
 * and its own message buffer. */
static anylock_op sub_op(const mig_client *mc, int which, const anylock_op *op, char *errbuf)
{
    anylock_op sub = *op;
    sub.lock_state = op->lock_state ? (char *)op->lock_state + mc->off[which] : NULL;
    sub.errbuf = errbuf;
    errbuf[0] = '\0';
    sub.granted_at = 0;
    sub.token = 0;
    return sub;
}

/* Runs slot in one store for op; the store's message lands in errbuf and
 * its outputs in *out (may be NULL). */
static anylock_status run(const mig_client *mc, int which, const anylock_op *op, anylock_slot slot, void *arg,
                          char *errbuf, anylock_op *out)
{
    anylock_op sub = sub_op(mc, which, op, errbuf);
    int64_t t0 = anylock_now_ns();
    anylock_status st = anylock_forward(mc->store[which], slot, &sub, arg);
    if (!sub.granted_at)
        sub.granted_at = t0;
    if (out)
        *out = sub;
    return st;
}

/* Undoes a first-store acquire after the second failed.  Appends to op's
 * message when the undo fails too: that lock then stays until its expiry. */
static void rollback(anylock_op *op, const mig_client *mc, int which)
{
    char eb[ANYLOCK_ERRMSG_MAX];
    anylock_status st = run(mc, which, op, ANYLOCK_SLOT_RELEASE, NULL, eb, NULL);
    if (st == ANYLOCK_OK || st == ANYLOCK_NOT_HELD)
        return;
    char first[ANYLOCK_ERRMSG_MAX];
    memcpy(first, op->errbuf, sizeof first);
    anylock_op_error(op, ANYLOCK_OK, "%.120s; releasing it again in the %s store failed too (%.80s), so it stays "
                     "there until its expiry",
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
    return anylock_op_error(op, o->st[worst], "%s store (%s): %.100s; %s store (%s): %.100s", label[worst],
                            store_name(mc, worst), o->msg[worst][0] ? o->msg[worst] : anylock_strerror(o->st[worst]),
                            label[other], store_name(mc, other),
                            o->msg[other][0] ? o->msg[other] : anylock_strerror(o->st[other]));
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static anylock_status mig_acquire(anylock_op *op)
{
    mig_client *mc = op->state;
    char eb[ANYLOCK_ERRMSG_MAX];
    anylock_op got;
    for (;;) {
        anylock_status st = run(mc, OLD, op, ANYLOCK_SLOT_ACQUIRE, NULL, eb, &got);
        if (st != ANYLOCK_OK)
            return store_error(op, mc, OLD, st, eb);
        int64_t old_granted = got.granted_at;
        int64_t lease = op->expires_ms * MS; /* 0: the old lock never expires */
        for (;;) {
            /* Wait in the new store no longer than the old lease can be
             * trusted without an extend. */
            anylock_op want = *op;
            int sliced = 0;
            if (lease && op->deadline != 0) {
                int64_t refresh = old_granted + lease * 2 / 3;
                if (refresh < op->deadline) {
                    want.deadline = refresh;
                    sliced = 1;
                }
            }
            st = run(mc, NEW, &want, ANYLOCK_SLOT_ACQUIRE, NULL, eb, &got);
            if (st == ANYLOCK_OK) {
                int64_t new_granted = got.granted_at;
                op->token = got.token;
                /* The new store may have taken long to say yes (a stalled
                 * server): the old lease must still hold when we return. */
                if (lease && anylock_now_ns() - old_granted > lease / 3) {
                    anylock_op ext;
                    anylock_status xs = run(mc, OLD, op, ANYLOCK_SLOT_EXTEND, NULL, eb, &ext);
                    if (xs != ANYLOCK_OK) {
                        char ebn[ANYLOCK_ERRMSG_MAX];
                        run(mc, NEW, op, ANYLOCK_SLOT_RELEASE, NULL, ebn, NULL);
                        if (xs != ANYLOCK_NOT_HELD) {
                            store_error(op, mc, OLD, xs, eb);
                            rollback(op, mc, OLD);
                            return xs;
                        }
                        /* Lost in the old store while the new one answered:
                         * start again while the wait allows. */
                        if (op->deadline == 0)
                            return store_error(op, mc, OLD, ANYLOCK_BUSY,
                                               "its lease passed while the new store answered");
                        break;
                    }
                    old_granted = ext.granted_at;
                }
                op->granted_at = min64(old_granted, new_granted);
                return ANYLOCK_OK;
            }
            if (st != ANYLOCK_TIMEOUT || !sliced) {
                store_error(op, mc, NEW, st, eb);
                rollback(op, mc, OLD);
                return st;
            }
            anylock_op ext;
            st = run(mc, OLD, op, ANYLOCK_SLOT_EXTEND, NULL, eb, &ext);
            if (st == ANYLOCK_NOT_HELD)
                break; /* reset under us while we waited: start again */
            if (st != ANYLOCK_OK) {
                store_error(op, mc, OLD, st, eb);
                rollback(op, mc, OLD);
                return st;
            }
            old_granted = ext.granted_at;
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
    o.st[NEW] = run(mc, NEW, op, ANYLOCK_SLOT_RELEASE, NULL, o.msg[NEW], NULL);
    o.st[OLD] = run(mc, OLD, op, ANYLOCK_SLOT_RELEASE, NULL, o.msg[OLD], NULL);
    return combine(op, mc, &o);
}

/* Extends both.  If either store says the lock is no longer ours, the other
 * is released at once, so that no half-held lock outlives the handle. */
static anylock_status mig_extend(anylock_op *op)
{
    mig_client *mc = op->state;
    outcome o;
    char eb[ANYLOCK_ERRMSG_MAX];
    anylock_op got[2];
    o.st[OLD] = run(mc, OLD, op, ANYLOCK_SLOT_EXTEND, NULL, o.msg[OLD], &got[OLD]);
    if (o.st[OLD] == ANYLOCK_NOT_HELD || o.st[OLD] == ANYLOCK_NOT_EXPIRABLE) {
        run(mc, NEW, op, ANYLOCK_SLOT_RELEASE, NULL, eb, NULL);
        return store_error(op, mc, OLD, o.st[OLD], o.msg[OLD]);
    }
    o.st[NEW] = run(mc, NEW, op, ANYLOCK_SLOT_EXTEND, NULL, o.msg[NEW], &got[NEW]);
    if (o.st[NEW] == ANYLOCK_NOT_HELD || o.st[NEW] == ANYLOCK_NOT_EXPIRABLE) {
        run(mc, OLD, op, ANYLOCK_SLOT_RELEASE, NULL, eb, NULL);
        return store_error(op, mc, NEW, o.st[NEW], o.msg[NEW]);
    }
    op->granted_at = min64(got[OLD].granted_at, got[NEW].granted_at);
    return combine(op, mc, &o);
}

static anylock_status mig_reset(anylock_op *op)
{
    mig_client *mc = op->state;
    outcome o;
    o.st[NEW] = run(mc, NEW, op, ANYLOCK_SLOT_RESET, NULL, o.msg[NEW], NULL);
    o.st[OLD] = run(mc, OLD, op, ANYLOCK_SLOT_RESET, NULL, o.msg[OLD], NULL);
    return combine(op, mc, &o);
}

static anylock_status mig_reset_all(anylock_op *op, size_t *count)
{
    mig_client *mc = op->state;
    outcome o;
    size_t n[2] = {0, 0};
    for (int i = NEW; i >= OLD; i--)
        o.st[i] = run(mc, i, op, ANYLOCK_SLOT_RESET_ALL, &n[i], o.msg[i], NULL);
    /* A lock taken through the composite is in both stores and counts once;
     * the larger count is exact for those, a lower bound otherwise. */
    *count = n[OLD] > n[NEW] ? n[OLD] : n[NEW];
    return combine(op, mc, &o);
}

/* Both stores' holders: the core keeps one record per holder, so a lock
 * held in both through the composite is one holder (with the sooner of its
 * two expiries, the one that holds in both). */
static anylock_status mig_enumerate(anylock_op *op, anylock_emitter *em)
{
    mig_client *mc = op->state;
    for (int i = OLD; i <= NEW; i++) {
        char eb[ANYLOCK_ERRMSG_MAX];
        anylock_status st = run(mc, i, op, ANYLOCK_SLOT_ENUMERATE, em, eb, NULL);
        if (st != ANYLOCK_OK)
            return store_error(op, mc, i, st, eb);
    }
    return ANYLOCK_OK;
}

static void mig_forget(anylock_op *op)
{
    mig_client *mc = op->state;
    char eb[ANYLOCK_ERRMSG_MAX];
    for (int i = OLD; i <= NEW; i++)
        run(mc, i, op, ANYLOCK_SLOT_FORGET, NULL, eb, NULL);
}

static const char *const mig_params[] = {"old", "new", NULL};

const anylock_backend anylock__migrate_backend = {
    .version = ANYLOCK_BACKEND_VERSION,
    .name = "migrate",
    .state_size = sizeof(mig_client),
    .flags = 0, /* open takes them from the two stores */
    /* open takes the coarser of the two stores' resolutions; each store's
     * expiry is also rounded to its own by anylock_forward(). */
    .expiry_resolution_ms = 1,
    .params = mig_params,
    .open = mig_open,
    .close = mig_close,
    .acquire = mig_acquire,
    .release = mig_release,
    .extend = mig_extend,
    .reset = mig_reset,
    .reset_all = mig_reset_all,
    .lock_size = 0, /* open computes it from the two stores' */
    .enumerate = mig_enumerate,
    .forget = mig_forget,
};
