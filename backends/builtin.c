/* SPDX-License-Identifier: BSD-2-Clause */
/* The backends this build has, registered by the core's init hook
 * (core/builtins.h) through the registry's one validation and insertion
 * path, as a third-party backend is.  Every status is checked: the first
 * failure is what the hook returns, and anylock_open() reports it. */
#include "config.h"

#include "../core/builtins.h"
#include "builtin.h"

typedef struct builtin {
    const char *scheme;
    const anylock_backend *backend; /* NULL: left out of this build */
} builtin;

static const builtin table[] = {
    {"open", &anylock__open_backend},
    {"memory", &anylock__memory_backend},
    {"migrate", &anylock__migrate_backend},
    {"faults", &anylock__faults_backend},
#ifdef ANYLOCK_WITH_REDIS
    {"redis", &anylock__redis_backend},
    {"redis+unix", &anylock__redis_backend},
#else
    {"redis", NULL},
    {"redis+unix", NULL},
#endif
#ifdef ANYLOCK_WITH_MEMCACHED
    {"memcached", &anylock__memcached_backend},
    {"memcache", &anylock__memcached_backend},
#else
    {"memcached", NULL},
    {"memcache", NULL},
#endif
#ifdef ANYLOCK_WITH_SQLITE
    {"sqlite", &anylock__sqlite_backend},
#else
    {"sqlite", NULL},
#endif
#ifdef ANYLOCK_WITH_POSTGRES
    {"postgres", &anylock__postgres_backend},
    {"postgresql", &anylock__postgres_backend},
#else
    {"postgres", NULL},
    {"postgresql", NULL},
#endif
#ifdef ANYLOCK_WITH_ETCD
    {"etcd", &anylock__etcd_backend},
#else
    {"etcd", NULL},
#endif
    /* file:// needs no library, so it is always built, as memory:// is; it
     * needs Linux (flock with OFD locks and inotify). */
#ifdef __linux__
    {"file", &anylock__file_backend},
#else
    {"file", NULL},
#endif
};

anylock_status anylock__builtins_init(void)
{
    anylock_status first = ANYLOCK_OK;
    for (size_t i = 0; i < sizeof table / sizeof *table; i++) {
        anylock_status st = anylock__backend_register(table[i].scheme, table[i].backend);
        if (st != ANYLOCK_OK && first == ANYLOCK_OK)
            first = st;
    }
    return first;
}
