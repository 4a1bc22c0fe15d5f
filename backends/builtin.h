/* The backends compiled into the library, registered on first use. */
#ifndef ANYLOCK_BUILTIN_H
#define ANYLOCK_BUILTIN_H

#include "anylock_backend.h"

extern const anylock_backend anylock__open_backend;
extern const anylock_backend anylock__memory_backend;
extern const anylock_backend anylock__migrate_backend;
extern const anylock_backend anylock__redis_backend;
extern const anylock_backend anylock__memcached_backend;
extern const anylock_backend anylock__sqlite_backend;

/* The registry's own entry point (core/registry.c): validates and adds a
 * backend, or with backend NULL marks the scheme as compiled out.  The
 * public anylock_backend_register() is this after the built-ins are in. */
anylock_status anylock__backend_register(const char *scheme, const anylock_backend *backend);

/* Registers every built-in backend, and marks those left out of this build
 * as compiled out.  Called once, by the registry. */
void anylock__register_builtins(void);

#endif
