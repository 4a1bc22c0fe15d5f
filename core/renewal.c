/*
 * Auto-renewal: one thread per client serves every renewing lock of that
 * client.  Each lock is extended to its full expiry every two thirds of the
 * expiry.  A renewal the store refuses (another owner, or gone) loses the
 * lock at once; a renewal that fails for another reason (connection lost) is
 * retried until the last granted expiry has passed, and only then is the
 * lock reported lost.  The thread starts with the first renewing lock and
 * stops when the client is closed.
 */
#include <stdlib.h>

#include "internal.h"

#define MS 1000000LL

static void unlink_lock(anylock__renewer *r, anylock_lock *lock)
{
    for (anylock_lock **p = &r->head; *p; p = &(*p)->renew_next)
        if (*p == lock) {
            *p = lock->renew_next;
            lock->renew_next = NULL;
            return;
        }
}

static anylock_lock *earliest(anylock__renewer *r)
{
    anylock_lock *best = NULL;
    for (anylock_lock *l = r->head; l; l = l->renew_next)
        if (!best || l->renew_due < best->renew_due)
            best = l;
    return best;
}

/* What to do after one renewal attempt; called with the client's mutex. */
static int settle(anylock_lock *lock, anylock_status st, int64_t t0, int64_t expires_ms)
{
    int64_t now = anylock_now_ns();
    if (st == ANYLOCK_OK) {
        lock->valid_until = t0 + expires_ms * MS;
        lock->renew_due = now + expires_ms * MS * 2 / 3;
        return 0;
    }
    if (st == ANYLOCK_NOT_HELD || st == ANYLOCK_NOT_EXPIRABLE || now >= lock->valid_until)
        return 1;
    /* A transient failure: try again soon, but not past the expiry. */
    int64_t retry = expires_ms * MS / 10;
    if (retry < 20 * MS)
        retry = 20 * MS;
    if (retry > 1000 * MS)
        retry = 1000 * MS;
    if (now + retry > lock->valid_until)
        retry = lock->valid_until - now;
    lock->renew_due = now + retry;
    return 0;
}

static void *renewer_main(void *arg)
{
    anylock_client *c = arg;
    anylock__renewer *r = &c->renewer;
    pthread_mutex_lock(&c->mu);
    while (!r->stopping) {
        anylock_lock *lock = earliest(r);
        if (!lock) {
            pthread_cond_wait(&r->wake, &c->mu);
            continue;
        }
        if (lock->renew_due > anylock_now_ns()) {
            anylock__cond_wait_until(&r->wake, &c->mu, lock->renew_due);
            continue;
        }
        lock->renewing = 1;
        int64_t expires_ms = anylock__round_expiry(c, lock->expires_ms);
        pthread_mutex_unlock(&c->mu);

        anylock_op op;
        anylock__op_init(&op, c, lock, r->errbuf);
        op.expires_ms = expires_ms;
        int64_t t0 = anylock_now_ns();
        anylock_status st = c->backend->extend(&op);

        pthread_mutex_lock(&c->mu);
        if (settle(lock, st, t0, expires_ms)) {
            unlink_lock(r, lock);
            lock->held = 0;
            lock->lost = 1;
            lock->lost_status = st;
            anylock_lost_fn fn = lock->lost_fn;
            void *ud = lock->lost_userdata;
            if (fn) {
                /* lock->renewing stays set, so the handle cannot be freed
                 * while its callback runs. */
                pthread_mutex_unlock(&c->mu);
                fn(lock, st, ud);
                pthread_mutex_lock(&c->mu);
            }
        }
        lock->renewing = 0;
        pthread_cond_broadcast(&r->idle);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

anylock_status anylock__renew_start(anylock_lock *lock)
{
    anylock_client *c = lock->client;
    anylock__renewer *r = &c->renewer;
    pthread_mutex_lock(&c->mu);
    if (!r->started) {
        r->stopping = 0;
        if (pthread_create(&r->thread, NULL, renewer_main, c) != 0) {
            pthread_mutex_unlock(&c->mu);
            return ANYLOCK_INTERNAL;
        }
        r->started = 1;
    }
    lock->lost = 0;
    lock->renew_due = anylock_now_ns() + anylock__round_expiry(c, lock->expires_ms) * MS * 2 / 3;
    lock->renew_next = r->head;
    r->head = lock;
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&c->mu);
    return ANYLOCK_OK;
}

int anylock__renew_stop(anylock_lock *lock, anylock_status *why)
{
    anylock_client *c = lock->client;
    pthread_mutex_lock(&c->mu);
    unlink_lock(&c->renewer, lock);
    while (lock->renewing)
        pthread_cond_wait(&c->renewer.idle, &c->mu);
    int lost = lock->lost;
    if (why)
        *why = lock->lost_status;
    pthread_mutex_unlock(&c->mu);
    return lost;
}

void anylock__renewer_shutdown(anylock_client *c)
{
    anylock__renewer *r = &c->renewer;
    pthread_mutex_lock(&c->mu);
    int started = r->started;
    r->stopping = 1;
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&c->mu);
    if (started)
        pthread_join(r->thread, NULL);
    r->started = 0;
}
