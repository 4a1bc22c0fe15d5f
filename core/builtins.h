/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The hook through which the core registers the backends built into the
 * library, as SQLite calls sqlite3_os_init(): the registry calls
 * anylock__builtins_init() once, before the first lookup or registration.
 * backends/builtin.c implements it; a build without the built-in backends
 * (the fuzzer, which needs only the parser) links core/builtins_none.c.
 */
#ifndef ANYLOCK_BUILTINS_H
#define ANYLOCK_BUILTINS_H

#include "anylock_backend.h"

/* Registers every built-in backend and marks those left out of this build
 * as compiled out; returns the first failure (ANYLOCK_OK if none). */
anylock_status anylock__builtins_init(void);

/* The registry's own entry point, for the hook: validates and adds backend,
 * or with backend NULL marks the scheme as compiled out.  (The public
 * anylock_backend_register() runs the hook first, so the hook cannot call
 * it.) */
anylock_status anylock__backend_register(const char *scheme, const anylock_backend *backend);

#endif
