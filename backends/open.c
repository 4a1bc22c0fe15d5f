/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * open://: a lock that is always acquired at once and excludes nobody, for
 * tests that do not care about locking (pylock's OpenLock).  Nothing is
 * stored: inspect says free, list finds nothing, reset and reset-all succeed.
 * Each handle remembers (in its per-lock state) whether it took the lock, so
 * that a release or extend of a lock it does not hold still answers
 * ANYLOCK_NOT_HELD, as on every other store.
 */
#include <string.h>

#include "builtin.h"

static anylock_status open_open(anylock_op *op, const anylock_url *url)
{
    if (url->user || url->password)
        return anylock_op_error(op, ANYLOCK_URL_BAD_USERINFO, "open:// takes no user or password");
    if (url->nhosts || (url->path[0] && strcmp(url->path, "/")))
        return anylock_op_error(op, ANYLOCK_URL_MALFORMED, "open:// takes no host or path");
    return ANYLOCK_OK;
}

static void open_close(anylock_op *op)
{
    (void)op;
}

typedef struct open_lock {
    int taken;
} open_lock;

static anylock_status open_ok(anylock_op *op)
{
    (void)op;
    return ANYLOCK_OK;
}

static anylock_status open_acquire(anylock_op *op)
{
    open_lock *l = op->lock_state;
    if (l->taken)
        return anylock_op_error(op, ANYLOCK_ALREADY_HELD, "lock \"%.64s\" is already held by this handle", op->name);
    l->taken = 1;
    return ANYLOCK_OK;
}

static anylock_status not_taken(anylock_op *op)
{
    return anylock_op_error(op, ANYLOCK_NOT_HELD, "lock \"%.64s\" was not taken by this handle", op->name);
}

static anylock_status open_release(anylock_op *op)
{
    open_lock *l = op->lock_state;
    if (!l->taken)
        return not_taken(op);
    l->taken = 0;
    return ANYLOCK_OK;
}

static anylock_status open_extend(anylock_op *op)
{
    open_lock *l = op->lock_state;
    return l->taken ? ANYLOCK_OK : not_taken(op);
}

static anylock_status open_enumerate(anylock_op *op, anylock_emitter *em)
{
    (void)op;
    (void)em; /* nothing is ever held */
    return ANYLOCK_OK;
}

static anylock_status open_reset_all(anylock_op *op, size_t *count)
{
    (void)op;
    *count = 0;
    return ANYLOCK_OK;
}

const anylock_backend anylock__open_backend = {
    .version = ANYLOCK_BACKEND_VERSION,
    .name = "open",
    .state_size = 0,
    .flags = ANYLOCK_BACKEND_NO_EXCLUSION | ANYLOCK_BACKEND_SHARED | ANYLOCK_BACKEND_SEMAPHORE |
             ANYLOCK_BACKEND_LIST,
    .expiry_resolution_ms = 1,
    .params = NULL,
    .open = open_open,
    .close = open_close,
    .acquire = open_acquire,
    .release = open_release,
    .extend = open_extend,
    .reset = open_ok,
    .reset_all = open_reset_all,
    .lock_size = sizeof(open_lock),
    .enumerate = open_enumerate,
};
