/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * hello: the smallest complete anylock program.  It takes the lock "hello"
 * on the store named by its argument (default: an SQLite file in the current
 * directory), says who holds it, and lets it go.
 *
 *   cc hello.c $(pkg-config --cflags --libs anylock) -o hello
 *   ./hello 'redis://127.0.0.1:6379'
 */
#include <stdio.h>

#include <anylock.h>

int main(int argc, char **argv)
{
    const char *url = argc > 1 ? argv[1] : "sqlite:///hello-locks.db";

    anylock_client *client;
    if (anylock_open(url, &client) != ANYLOCK_OK) {
        /* The client exists even when opening failed, so it can say why. */
        fprintf(stderr, "hello: cannot open the store: %s\n", anylock_errmsg(client));
        anylock_close(client);
        return 1;
    }

    anylock_lock *lock;
    if (anylock_lock_new(client, "hello", &lock) != ANYLOCK_OK) {
        fprintf(stderr, "hello: %s\n", anylock_errmsg(client));
        anylock_close(client);
        return 1;
    }
    anylock_lock_set_expires(lock, 30);  /* seconds; the store frees it after that */
    anylock_lock_set_timeout(lock, 5);   /* wait at most 5 s for another holder */

    int ok = 0;
    switch (anylock_acquire(lock)) {
    case ANYLOCK_OK: {
        char owner[ANYLOCK_ID_MAX + 1];
        anylock_owner(lock, owner, sizeof owner);
        printf("hello: got the lock on %s as %s\n", anylock_client_url(client), owner);
        /* ... the work that must not run twice at once goes here ... */
        ok = anylock_release(lock) == ANYLOCK_OK;
        break;
    }
    case ANYLOCK_TIMEOUT:
        fprintf(stderr, "hello: someone else kept the lock for 5 s\n");
        break;
    default:
        fprintf(stderr, "hello: %s\n", anylock_lock_errmsg(lock));
        break;
    }

    anylock_lock_free(lock);
    anylock_close(client);
    return ok ? 0 : 1;
}
