/*
 * open://: a lock that is always acquired at once and excludes nobody, for
 * tests that do not care about locking (pylock's OpenLock).  Nothing is
 * stored: inspect says free, list finds nothing, reset and reset-all succeed.
 */
#include <string.h>

#include "builtin.h"

static anylock_status open_open(anylock_op *op, const anylock_url *url)
{
    if (url->nhosts || (url->path[0] && strcmp(url->path, "/")))
        return anylock_op_error(op, ANYLOCK_URL_MALFORMED, "open:// takes no host or path");
    return ANYLOCK_OK;
}

static void open_close(anylock_op *op)
{
    (void)op;
}

static anylock_status open_ok(anylock_op *op)
{
    (void)op;
    return ANYLOCK_OK;
}

static anylock_status open_inspect(anylock_op *op, anylock_info *info)
{
    (void)op;
    (void)info; /* already zeroed by the core: free */
    return ANYLOCK_OK;
}

static anylock_status open_reset_all(anylock_op *op, size_t *count)
{
    (void)op;
    *count = 0;
    return ANYLOCK_OK;
}

static anylock_status open_list(anylock_op *op, anylock_list_fn fn, void *userdata)
{
    (void)op;
    (void)fn;
    (void)userdata;
    return ANYLOCK_OK;
}

const anylock_backend anylock__open_backend = {
    .version = ANYLOCK_BACKEND_VERSION,
    .name = "open",
    .state_size = 0,
    .flags = ANYLOCK_BACKEND_NO_EXCLUSION,
    .expiry_resolution_ms = 1,
    .params = NULL,
    .open = open_open,
    .close = open_close,
    .acquire = open_ok,
    .release = open_ok,
    .extend = open_ok,
    .inspect = open_inspect,
    .reset = open_ok,
    .reset_all = open_reset_all,
    .list = open_list,
};
