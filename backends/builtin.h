/* SPDX-License-Identifier: BSD-2-Clause */
/* The backends compiled into the library (each uses only
 * anylock_backend.h), for the table in builtin.c. */
#ifndef ANYLOCK_BUILTIN_H
#define ANYLOCK_BUILTIN_H

#include "anylock_backend.h"

extern const anylock_backend anylock__open_backend;
extern const anylock_backend anylock__memory_backend;
extern const anylock_backend anylock__migrate_backend;
extern const anylock_backend anylock__faults_backend;
extern const anylock_backend anylock__redis_backend;
extern const anylock_backend anylock__memcached_backend;
extern const anylock_backend anylock__sqlite_backend;
extern const anylock_backend anylock__postgres_backend;
extern const anylock_backend anylock__etcd_backend;
extern const anylock_backend anylock__file_backend;

/* How file:// judges a filesystem by its statfs(2) f_type (name: the
 * filesystem's, for messages); tests call it to check the table. */
enum { ANYLOCK__FS_LOCAL, ANYLOCK__FS_NETWORK, ANYLOCK__FS_FUSE };
int anylock__file_fs_verdict(unsigned long f_type, const char **name);

#endif
