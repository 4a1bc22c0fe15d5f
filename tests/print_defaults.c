/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Prints the defaults the code uses, one per line, for tests/test_docs.sh
 * to compare with the ones the documentation states (docs/defaults.md):
 *
 *   core prefix lock:
 *   core timeout 60000            (milliseconds)
 *   redis connect_timeout 2000
 *   ...
 *
 *   tests/print_defaults DIR SCHEME...
 *
 * The core's are its ANYLOCK_DEFAULT_* (the prefix as a client reports it).
 * A store's are every default its backend takes from anylock_url_param_ms()
 * when it opens a URL that sets none of its parameters: the core tells of
 * each through a hook that only this program sets.  The URL need not reach
 * a server (nothing listens on port 1), only the backend's parameter
 * parsing; DIR is a scratch directory for stores that keep files.  A scheme
 * not in this build is printed as "# SCHEME not built".
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anylock.h"

extern void (*anylock__param_default_hook)(const char *scheme, const char *name, int64_t dflt_ms);

static const char *wanted; /* the scheme being opened */
static int seen;           /* defaults reported for it */

static void on_default(const char *scheme, const char *name, int64_t dflt_ms)
{
    /* A stacked store opens its inner stores: only the outer one counts. */
    if (strcmp(scheme, wanted) != 0)
        return;
    printf("%s %s %" PRId64 "\n", scheme, name, dflt_ms);
    seen++;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR SCHEME...\n", argv[0]);
        return 64;
    }
    const char *dir = argv[1];

    anylock_client *c;
    if (anylock_open("memory://", &c) != ANYLOCK_OK) {
        fprintf(stderr, "print_defaults: memory://: %s\n", anylock_errmsg(c));
        return 1;
    }
    printf("core prefix %s\n", anylock_client_prefix(c));
    anylock_close(c);
    printf("core timeout %" PRId64 "\n", (int64_t)(ANYLOCK_DEFAULT_TIMEOUT * 1000));
    printf("core expires %" PRId64 "\n", (int64_t)(ANYLOCK_DEFAULT_EXPIRES * 1000));

    anylock__param_default_hook = on_default;
    for (int i = 2; i < argc; i++) {
        const char *scheme = argv[i];
        if (!anylock_backend_available(scheme)) {
            printf("# %s not built\n", scheme);
            continue;
        }
        /* The URL forms stores take: a host, a file or directory, nothing. */
        char urls[3][1024];
        snprintf(urls[0], sizeof urls[0], "%s://127.0.0.1:1", scheme);
        snprintf(urls[1], sizeof urls[1], "%s://%s/%s-defaults", scheme, dir, scheme);
        snprintf(urls[2], sizeof urls[2], "%s://", scheme);
        wanted = scheme;
        seen = 0;
        for (int u = 0; u < 3 && !seen; u++) {
            if (anylock_open(urls[u], &c) == ANYLOCK_NOMEM)
                return 1;
            anylock_close(c);
        }
        if (!seen)
            printf("# %s takes no default durations\n", scheme);
    }
    return 0;
}
