/* Which backends this build has.  Each goes through the registry's one
 * validation and insertion path, as a third-party backend does. */
#include "config.h"

#include "builtin.h"

void anylock__register_builtins(void)
{
    anylock__backend_register("open", &anylock__open_backend);
    anylock__backend_register("memory", &anylock__memory_backend);
    anylock__backend_register("migrate", &anylock__migrate_backend);
#ifdef ANYLOCK_WITH_REDIS
    anylock__backend_register("redis", &anylock__redis_backend);
    anylock__backend_register("redis+unix", &anylock__redis_backend);
#else
    anylock__backend_register("redis", NULL);
    anylock__backend_register("redis+unix", NULL);
#endif
#ifdef ANYLOCK_WITH_MEMCACHED
    anylock__backend_register("memcached", &anylock__memcached_backend);
    anylock__backend_register("memcache", &anylock__memcached_backend);
#else
    anylock__backend_register("memcached", NULL);
    anylock__backend_register("memcache", NULL);
#endif
#ifdef ANYLOCK_WITH_SQLITE
    anylock__backend_register("sqlite", &anylock__sqlite_backend);
#else
    anylock__backend_register("sqlite", NULL);
#endif
}
