/*
 * An application that must stop working when it loses its lock: it takes
 * the lock "report", keeps it renewed while it works in small steps, and
 * checks between steps whether the library told it the lock was lost.
 * tests/test_examples.sh runs it on faults:// to show it stopping (see
 * docs/testing.md).
 *
 *   lost URL      exit 0: the work was done under the lock
 *                 exit 3: the lock was lost, the work stopped
 */
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include <anylock.h>

static atomic_int lost;

/* Runs on a library thread: only note it; the work loop acts on it. */
static void on_lost(anylock_lock *lock, anylock_status why, void *userdata)
{
    (void)lock;
    (void)userdata;
    atomic_store(&lost, (int)why + 1);
}

int main(int argc, char **argv)
{
    const char *url = argc > 1 ? argv[1] : "memory://";
    anylock_client *client;
    if (anylock_open(url, &client) != ANYLOCK_OK) {
        fprintf(stderr, "lost: cannot open the store: %s\n", anylock_errmsg(client));
        anylock_close(client);
        return 1;
    }
    anylock_lock *lock;
    if (anylock_lock_new(client, "report", &lock) != ANYLOCK_OK) {
        fprintf(stderr, "lost: %s\n", anylock_errmsg(client));
        anylock_close(client);
        return 1;
    }
    anylock_lock_set_expires(lock, 2);
    anylock_lock_set_auto_renewal(lock, 1);
    anylock_lock_set_lost_callback(lock, on_lost, NULL);
    int status = 1;
    if (anylock_acquire(lock) != ANYLOCK_OK) {
        fprintf(stderr, "lost: %s\n", anylock_lock_errmsg(lock));
    } else {
        int step;
        for (step = 0; step < 20 && !atomic_load(&lost); step++) {
            struct timespec pause = {0, 100 * 1000 * 1000}; /* one step of work */
            nanosleep(&pause, NULL);
        }
        if (atomic_load(&lost)) {
            printf("lost the lock after %d steps (%s); stopping before writing the report\n", step,
                   anylock_strerror((anylock_status)(atomic_load(&lost) - 1)));
            status = 3;
        } else {
            printf("done: the report was written under the lock\n");
            status = 0;
        }
        anylock_release(lock);
    }
    anylock_lock_free(lock);
    anylock_close(client);
    return status;
}
