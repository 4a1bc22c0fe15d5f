/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The backend registry: URL scheme -> vtable.  Built-in backends are
 * registered on first use by the core's one init hook (core/builtins.h),
 * through the same validation as third-party ones; the core knows none of
 * them by name.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "builtins.h"
#include "internal.h"

#define SCHEME_MAX 32

typedef struct entry {
    char scheme[SCHEME_MAX + 1];
    const anylock_backend *backend; /* NULL: compiled out */
} entry;

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t builtins_once = PTHREAD_ONCE_INIT;
static entry *entries;
static size_t nentries, capacity;
static anylock_status builtins_status = ANYLOCK_OK;

static void register_builtins(void)
{
    builtins_status = anylock__builtins_init();
}

static int valid_scheme(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > SCHEME_MAX || !isalpha((unsigned char)s[0]))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("+-.", s[i]))
            return 0;
    return 1;
}

static entry *find_locked(const char *scheme)
{
    for (size_t i = 0; i < nentries; i++)
        if (!strcasecmp(entries[i].scheme, scheme))
            return &entries[i];
    return NULL;
}

static anylock_status add(const char *scheme, const anylock_backend *b)
{
    if (!valid_scheme(scheme))
        return ANYLOCK_INVALID;
    anylock_status st = ANYLOCK_OK;
    pthread_mutex_lock(&registry_mu);
    entry *e = find_locked(scheme);
    if (e && (e->backend || !b)) {
        st = ANYLOCK_BACKEND_EXISTS;
    } else if (e) {
        e->backend = b; /* a real backend replaces a "compiled out" marker */
    } else {
        if (nentries == capacity) {
            size_t cap = capacity ? capacity * 2 : 8;
            entry *grown = realloc(entries, cap * sizeof *grown);
            if (!grown) {
                pthread_mutex_unlock(&registry_mu);
                return ANYLOCK_NOMEM;
            }
            entries = grown;
            capacity = cap;
        }
        e = &entries[nentries++];
        for (size_t i = 0; i <= strlen(scheme); i++)
            e->scheme[i] = (char)tolower((unsigned char)scheme[i]);
        e->backend = b;
    }
    pthread_mutex_unlock(&registry_mu);
    return st;
}

/* Validation and insertion: the one path every backend, built-in or not,
 * is registered through. */
anylock_status anylock__backend_register(const char *scheme, const anylock_backend *b)
{
    if (!b)
        return add(scheme, NULL);
    /* Only versions this library knows: a newer backend would have slots and
     * fields the core would never call or read. */
    if (b->version < 1 || b->version > ANYLOCK_BACKEND_VERSION || !b->name || !b->open || !b->close ||
        !b->acquire || !b->release || b->state_size > (1u << 20) || b->expiry_resolution_ms < 1 ||
        b->expiry_resolution_ms > 3600 * 1000)
        return ANYLOCK_BACKEND_INVALID;
    if (b->version >= 2 && b->lock_size > (1u << 20))
        return ANYLOCK_BACKEND_INVALID;
    return add(scheme, b);
}

anylock_status anylock_backend_register(const char *scheme, const anylock_backend *b)
{
    if (!b)
        return ANYLOCK_BACKEND_INVALID;
    pthread_once(&builtins_once, register_builtins);
    return anylock__backend_register(scheme, b);
}

anylock_status anylock_backend_register_disabled(const char *scheme)
{
    pthread_once(&builtins_once, register_builtins);
    return add(scheme, NULL);
}

anylock__found anylock__registry_find(const char *scheme)
{
    anylock__found f = {NULL, 0, ANYLOCK_OK};
    pthread_once(&builtins_once, register_builtins);
    f.builtins = builtins_status;
    pthread_mutex_lock(&registry_mu);
    entry *e = find_locked(scheme);
    if (e) {
        f.backend = e->backend;
        f.disabled = e->backend == NULL;
    }
    pthread_mutex_unlock(&registry_mu);
    return f;
}

int anylock_backend_available(const char *scheme)
{
    return scheme && anylock__registry_find(scheme).backend != NULL;
}
