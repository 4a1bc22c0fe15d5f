/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Lock handles: options, validation, and the acquire / release / extend
 * dispatch with the handle's state.
 *
 * A handle is FREE, HELD, LOST (it was held and the library learnt it is not
 * any more) or MAYBE (an acquire or release whose answer was lost).  Every
 * slot call on a handle runs under its own mutex (lock->mu), so the renewal
 * threads and the handle's thread never drive the backend's per-lock state
 * at once; the state itself is guarded by the client's mutex, which is only
 * ever taken after lock->mu.
 *
 * Before a new acquire, and when the handle is freed, whatever the previous
 * acquisition may have left in the store (MAYBE, a LOST lock not yet cleaned
 * up, a HELD lock whose expiry passed) is released first, so that a handle
 * never meets its own stale lock and calls it someone else's.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define MS ANYLOCK__NS_PER_MS

/* Ends a call on a lock: fills in a message if the backend left none, and
 * copies it to the client. */
static anylock_status finish(anylock_lock *lock, anylock_status st)
{
    if (st == ANYLOCK_OK)
        return st;
    if (!lock->errmsg[0])
        anylock__format(lock->errmsg, "%s", anylock_strerror(st));
    return anylock__client_record(lock->client, st, lock->errmsg);
}

static anylock_status fail(anylock_lock *lock, anylock_status st, const char *fmt, ...) ANYLOCK__PRINTF(3, 4);

static anylock_status fail(anylock_lock *lock, anylock_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    anylock__vformat(lock->errmsg, fmt, ap);
    va_end(ap);
    return finish(lock, st);
}

/* The start of every call on a lock: NULL and fork checks, message reset. */
static anylock_status enter(anylock_lock *lock)
{
    if (!lock)
        return ANYLOCK_INVALID;
    anylock__callback_calls(lock);
    lock->errmsg[0] = '\0';
    return anylock__check_process(lock->client, lock->errmsg);
}

static int is_session(const anylock_client *c)
{
    return (c->flags & ANYLOCK_BACKEND_SESSION) != 0;
}

/* held, as anylock_lock_held() means it; client->mu held. */
static int holds(const anylock_lock *lock)
{
    return lock->state == LS_HELD && (lock->lost_at == INT64_MAX || anylock_now_ns() < lock->lost_at);
}

anylock_status anylock_lock_new(anylock_client *c, const char *name, anylock_lock **out)
{
    if (!out)
        return ANYLOCK_INVALID;
    *out = NULL;
    if (!c)
        return ANYLOCK_INVALID;
    if (c->open_status != ANYLOCK_OK)
        return c->open_status;
    char errbuf[ANYLOCK_ERRMSG_MAX];
    anylock_status st = anylock__check_process(c, errbuf);
    if (st == ANYLOCK_OK)
        st = anylock__check_name(name, errbuf);
    if (st != ANYLOCK_OK)
        return anylock__client_record(c, st, errbuf);
    anylock_lock *lock = calloc(1, sizeof *lock);
    if (!lock)
        return anylock__client_record(c, ANYLOCK_NOMEM, NULL);
    lock->client = c;
    lock->heap_index = SIZE_MAX;
    lock->name_len = strlen(name);
    lock->name = anylock__strndup(name, lock->name_len);
    lock->key_len = c->prefix_len + lock->name_len;
    lock->key = malloc(lock->key_len + 1);
    lock->backend_state = c->lock_size ? calloc(1, c->lock_size) : NULL;
    if (!lock->name || !lock->key || (c->lock_size && !lock->backend_state) ||
        pthread_mutex_init(&lock->mu, NULL) != 0) {
        free(lock->name);
        free(lock->key);
        free(lock->backend_state);
        free(lock);
        return anylock__client_record(c, ANYLOCK_NOMEM, NULL);
    }
    memcpy(lock->key, c->prefix, c->prefix_len);
    memcpy(lock->key + c->prefix_len, name, lock->name_len + 1);
    st = anylock__make_id(lock->id);
    if (st != ANYLOCK_OK) {
        anylock__lock_destroy(lock);
        return anylock__client_record(c, st, "cannot read random bytes for the owner id");
    }
    lock->id_len = strlen(lock->id);
    lock->expires_ms = c->expires_ms;
    lock->timeout_ms = c->timeout_ms;
    lock->mode = ANYLOCK_EXCLUSIVE;
    lock->valid_until = lock->lost_at = lock->renew_due = INT64_MAX;
    pthread_mutex_lock(&c->mu);
    c->nlocks++;
    pthread_mutex_unlock(&c->mu);
    *out = lock;
    return ANYLOCK_OK;
}

void anylock__lock_destroy(anylock_lock *lock)
{
    pthread_mutex_destroy(&lock->mu);
    free(lock->name);
    free(lock->key);
    free(lock->label);
    free(lock->meta);
    free(lock->backend_state);
    free(lock);
}

/* Releases in the store whatever the handle's last acquisition may have
 * left there, without a word to the caller.  lock->mu held. */
static void release_leftover(anylock_lock *lock)
{
    anylock_client *c = lock->client;
    pthread_mutex_lock(&c->mu);
    anylock__lstate s = lock->state;
    int needed = s == LS_HELD || s == LS_MAYBE || (s == LS_LOST && lock->cleanup_pending);
    lock->cleanup_pending = 0;
    anylock__unwatch(lock);
    pthread_mutex_unlock(&c->mu);
    if (needed) {
        char errbuf[ANYLOCK_ERRMSG_MAX];
        anylock_op op;
        anylock__op_init(&op, c, lock, errbuf);
        anylock_status st = c->backend->release(&op);
        if (st == ANYLOCK_OK)
            anylock__log(ANYLOCK_LOG_INFO, ANYLOCK_EVENT_RELEASED, c, lock, ANYLOCK_OK, 0, "released \"%.64s\"",
                         lock->name);
    }
    pthread_mutex_lock(&c->mu);
    lock->state = LS_FREE;
    pthread_mutex_unlock(&c->mu);
}

static void forget(anylock_lock *lock)
{
    anylock_client *c = lock->client;
    if (c->backend->version >= 2 && c->backend->forget) {
        char errbuf[ANYLOCK_ERRMSG_MAX];
        anylock_op op;
        anylock__op_init(&op, c, lock, errbuf);
        c->backend->forget(&op);
    }
}

void anylock_lock_free(anylock_lock *lock)
{
    if (!lock)
        return;
    anylock_client *c = lock->client;
    if (c->fork_gen != anylock__fork_generation()) {
        /* In a child after fork(): the lock (if any) is the parent's, and
         * so are the backend's resources.  Free the memory only. */
        free(lock->name);
        free(lock->key);
        free(lock->label);
        free(lock->meta);
        free(lock->backend_state);
        free(lock);
        return;
    }
    pthread_mutex_lock(&lock->mu);
    release_leftover(lock);
    int from_callback = anylock__in_callback(c, lock);
    if (!from_callback)
        forget(lock);
    pthread_mutex_unlock(&lock->mu);
    pthread_mutex_lock(&c->mu);
    if (from_callback) {
        /* The callback is still running on this handle: the renewal thread
         * finishes the free when it returns. */
        lock->free_requested = 1;
        c->nfreeing++;
        pthread_mutex_unlock(&c->mu);
        return;
    }
    anylock__jobs_drain(lock);
    c->nlocks--;
    pthread_mutex_unlock(&c->mu);
    anylock__lock_destroy(lock);
}

int anylock_lock_held(const anylock_lock *lock)
{
    /* A child after fork() holds nothing of its parent's (and must not
     * take the parent's mutexes). */
    if (!lock || lock->client->fork_gen != anylock__fork_generation())
        return 0;
    pthread_mutex_lock(&lock->client->mu);
    int held = holds(lock);
    pthread_mutex_unlock(&lock->client->mu);
    return held;
}

/* ---- options -------------------------------------------------------------- */

/* Options may change only while the handle does not hold the lock. */
static anylock_status begin_option(anylock_lock *lock)
{
    anylock_status st = enter(lock);
    if (st != ANYLOCK_OK)
        return st;
    if (anylock_lock_held(lock))
        return fail(lock, ANYLOCK_MISUSE, "lock \"%.64s\": options cannot change while the lock is held", lock->name);
    return ANYLOCK_OK;
}

anylock_status anylock_lock_set_expires(anylock_lock *lock, double seconds)
{
    anylock_status st = begin_option(lock);
    if (st == ANYLOCK_OK)
        st = anylock__expiry_ms(seconds, &lock->expires_ms, lock->errmsg);
    return lock ? finish(lock, st) : st;
}

anylock_status anylock_lock_set_timeout(anylock_lock *lock, double seconds)
{
    anylock_status st = begin_option(lock);
    if (st == ANYLOCK_OK)
        st = anylock__duration_ms(seconds, ANYLOCK__MS_FOREVER, &lock->timeout_ms, lock->errmsg, "timeout");
    if (st == ANYLOCK_OK)
        lock->timeout_set = 1;
    return lock ? finish(lock, st) : st;
}

anylock_status anylock_lock_set_id(anylock_lock *lock, const char *id)
{
    anylock_status st = begin_option(lock);
    if (st == ANYLOCK_OK)
        st = anylock__check_id(id, lock->errmsg);
    if (st == ANYLOCK_OK) {
        lock->id_len = strlen(id);
        memcpy(lock->id, id, lock->id_len + 1);
        free(lock->meta);
        lock->meta = NULL;
    }
    return lock ? finish(lock, st) : st;
}

anylock_status anylock_lock_set_auto_renewal(anylock_lock *lock, int on)
{
    anylock_status st = begin_option(lock);
    if (st == ANYLOCK_OK)
        lock->auto_renewal = on != 0;
    return lock ? finish(lock, st) : st;
}

anylock_status anylock_lock_set_lost_callback(anylock_lock *lock, anylock_lost_fn fn, void *userdata)
{
    anylock_status st = begin_option(lock);
    if (st == ANYLOCK_OK) {
        pthread_mutex_lock(&lock->client->mu);
        lock->lost_fn = fn;
        lock->lost_userdata = userdata;
        pthread_mutex_unlock(&lock->client->mu);
    }
    return lock ? finish(lock, st) : st;
}

anylock_status anylock_lock_set_mode(anylock_lock *lock, anylock_mode mode)
{
    anylock_status st = begin_option(lock);
    if (st == ANYLOCK_OK && mode != ANYLOCK_EXCLUSIVE && mode != ANYLOCK_SHARED)
        st = fail(lock, ANYLOCK_INVALID,
                  mode == ANYLOCK_SEMAPHORE ? "lock \"%.64s\": make a semaphore with anylock_lock_set_permits"
                                            : "lock \"%.64s\": unknown mode",
                  lock->name);
    if (st == ANYLOCK_OK) {
        lock->mode = mode;
        lock->permits = 0;
    }
    return lock ? finish(lock, st) : st;
}

anylock_status anylock_lock_set_permits(anylock_lock *lock, unsigned permits)
{
    anylock_status st = begin_option(lock);
    if (st == ANYLOCK_OK && (permits < 1 || permits > ANYLOCK_PERMITS_MAX))
        st = fail(lock, ANYLOCK_INVALID, "lock \"%.64s\": a semaphore has 1 to %d permits, not %u", lock->name,
                  ANYLOCK_PERMITS_MAX, permits);
    if (st == ANYLOCK_OK) {
        lock->mode = ANYLOCK_SEMAPHORE;
        lock->permits = permits;
    }
    return lock ? finish(lock, st) : st;
}

anylock_status anylock_lock_set_label(anylock_lock *lock, const char *label)
{
    anylock_status st = begin_option(lock);
    if (st == ANYLOCK_OK)
        st = anylock__check_label(label, lock->errmsg);
    if (st == ANYLOCK_OK) {
        char *copy = label && *label ? anylock__strdup(label) : NULL;
        if (label && *label && !copy)
            return fail(lock, ANYLOCK_NOMEM, "out of memory");
        free(lock->label);
        lock->label = copy;
        free(lock->meta);
        lock->meta = NULL;
    }
    return lock ? finish(lock, st) : st;
}

/* ---- acquire ------------------------------------------------------------- */

/* The cross-checks python-redis-lock makes (and a few more), from what the
 * store can do. */
static anylock_status validate_acquire(anylock_lock *lock, int try_once)
{
    anylock_client *c = lock->client;
    const anylock_backend *b = c->backend;
    if (try_once && lock->timeout_set)
        return fail(lock, ANYLOCK_TRY_WITH_TIMEOUT, "lock \"%.64s\": a timeout is set on this lock, so it cannot be tried once", lock->name);
    if ((lock->mode == ANYLOCK_SHARED && !(c->flags & ANYLOCK_BACKEND_SHARED)) ||
        (lock->mode == ANYLOCK_SEMAPHORE && !(c->flags & ANYLOCK_BACKEND_SEMAPHORE)))
        return fail(lock, ANYLOCK_MODE_UNSUPPORTED, "lock \"%.64s\": the %s backend cannot take %s", lock->name,
                    b->name, lock->mode == ANYLOCK_SHARED ? "shared locks" : "semaphores");
    /* On a session-bound store a lock without expiry lives as long as its
     * holder: renewal has nothing to extend, and is allowed. */
    if (lock->auto_renewal && lock->expires_ms == 0 && !is_session(c))
        return fail(lock, ANYLOCK_RENEWAL_NEEDS_EXPIRY, "lock \"%.64s\": auto-renewal needs an expiry (this lock "
                    "never expires, so there is nothing to renew)", lock->name);
    if (lock->auto_renewal && lock->expires_ms && !b->extend && !is_session(c))
        return fail(lock, ANYLOCK_UNSUPPORTED, "lock \"%.64s\": the %s backend cannot extend, so cannot renew", lock->name, b->name);
    if (lock->timeout_set && !lock->auto_renewal && lock->expires_ms &&
        lock->timeout_ms != ANYLOCK__MS_FOREVER && lock->timeout_ms > lock->expires_ms)
        return fail(lock, ANYLOCK_TIMEOUT_TOO_LARGE, "lock \"%.64s\": the wait timeout is longer than the expiry; turn on auto-renewal", lock->name);
    return ANYLOCK_OK;
}

static anylock_status acquire(anylock_lock *lock, int try_once)
{
    anylock_status st = enter(lock);
    if (st != ANYLOCK_OK)
        return lock ? finish(lock, st) : st;
    anylock_client *c = lock->client;
    st = validate_acquire(lock, try_once);
    if (st != ANYLOCK_OK)
        return st;

    pthread_mutex_lock(&lock->mu);
    pthread_mutex_lock(&c->mu);
    int held = holds(lock);
    pthread_mutex_unlock(&c->mu);
    if (held) {
        pthread_mutex_unlock(&lock->mu);
        return fail(lock, ANYLOCK_ALREADY_HELD, "lock \"%.64s\" is already held by this handle", lock->name);
    }
    release_leftover(lock);

    char meta[ANYLOCK_META_MAX];
    anylock_op op;
    anylock__op_init(&op, c, lock, lock->errmsg);
    op.expires_ms = anylock__round_expiry(c, lock->expires_ms);
    op.deadline = try_once ? 0 : anylock__deadline(lock->timeout_ms);
    if (!lock->meta) {
        lock->meta_len = anylock__meta_fixed(meta, lock->id, c->host, c->pid, lock->label);
        lock->meta = anylock__strndup(meta, lock->meta_len);
    }
    int64_t t0 = anylock_now_ns();
    if (lock->meta) {
        memcpy(meta, lock->meta, lock->meta_len);
        op.meta_len = anylock__meta_since(meta, lock->meta_len, (t0 + c->wall_offset_ns) / ANYLOCK__NS_PER_MS);
        op.meta = op.meta_len ? meta : NULL;
    }
    st = c->backend->acquire(&op);

    pthread_mutex_lock(&c->mu);
    if (st == ANYLOCK_OK) {
        lock->state = LS_HELD;
        lock->gen++;
        lock->renewing = 0;
        lock->renew_status = ANYLOCK_OK;
        lock->renew_msg[0] = '\0';
        lock->lost_msg[0] = '\0';
        lock->lost_status = ANYLOCK_OK;
        lock->token = op.token;
        lock->has_token = (c->flags & ANYLOCK_BACKEND_TOKEN) != 0;
        anylock__lease_set(lock, op.granted_at ? op.granted_at : t0, op.expires_ms);
        st = anylock__watch(lock);
    } else {
        lock->state = st == ANYLOCK_OUTCOME_UNKNOWN ? LS_MAYBE : LS_FREE;
    }
    pthread_mutex_unlock(&c->mu);
    if (st != ANYLOCK_OK && lock->state == LS_HELD) {
        /* Acquired, but it could not be watched as asked (no thread). */
        release_leftover(lock);
        pthread_mutex_unlock(&lock->mu);
        return fail(lock, st, "lock \"%.64s\": cannot start the renewal thread", lock->name);
    }
    pthread_mutex_unlock(&lock->mu);
    if (st == ANYLOCK_OK)
        anylock__log(ANYLOCK_LOG_INFO, ANYLOCK_EVENT_ACQUIRED, c, lock, ANYLOCK_OK,
                     op.expires_ms ? (double)op.expires_ms / 1000.0 : ANYLOCK_FOREVER, "acquired \"%.64s\"",
                     lock->name);
    else
        anylock__log(ANYLOCK_LOG_INFO, ANYLOCK_EVENT_NOT_ACQUIRED, c, lock, st, 0, "did not acquire \"%.64s\": %s",
                     lock->name, lock->errmsg[0] ? lock->errmsg : anylock_strerror(st));
    return finish(lock, st);
}

anylock_status anylock_acquire(anylock_lock *lock)
{
    return acquire(lock, 0);
}

anylock_status anylock_try_acquire(anylock_lock *lock)
{
    return acquire(lock, 1);
}

/* ---- release and extend --------------------------------------------------- */

anylock_status anylock_release(anylock_lock *lock)
{
    anylock_status st = enter(lock);
    if (st != ANYLOCK_OK)
        return lock ? finish(lock, st) : st;
    anylock_client *c = lock->client;
    pthread_mutex_lock(&lock->mu);
    pthread_mutex_lock(&c->mu);
    anylock__lstate s = lock->state;
    int cleanup = lock->cleanup_pending;
    lock->cleanup_pending = 0;
    anylock__unwatch(lock);
    char lost[ANYLOCK_ERRMSG_MAX];
    memcpy(lost, lock->lost_msg, sizeof lost);
    pthread_mutex_unlock(&c->mu);

    anylock_op op;
    anylock__op_init(&op, c, lock, lock->errmsg);
    if (s == LS_LOST) {
        /* The loss was reported; what the store may still hold is let go
         * (if the cleanup has not run yet), and the caller is told why. */
        if (cleanup)
            c->backend->release(&op);
        pthread_mutex_lock(&c->mu);
        lock->state = LS_FREE;
        pthread_mutex_unlock(&c->mu);
        pthread_mutex_unlock(&lock->mu);
        return fail(lock, ANYLOCK_NOT_HELD, "lock \"%.64s\" was lost: %.200s", lock->name, lost);
    }
    if (s == LS_FREE && is_session(c)) {
        pthread_mutex_unlock(&lock->mu);
        return fail(lock, ANYLOCK_NOT_HELD, "lock \"%.64s\" is not held by this handle", lock->name);
    }
    st = c->backend->release(&op);
    pthread_mutex_lock(&c->mu);
    if (st == ANYLOCK_OK || st == ANYLOCK_NOT_HELD || s == LS_FREE)
        lock->state = LS_FREE;
    else
        lock->state = LS_MAYBE; /* a retried release may still free it */
    pthread_mutex_unlock(&c->mu);
    pthread_mutex_unlock(&lock->mu);
    if (st == ANYLOCK_OK)
        anylock__log(ANYLOCK_LOG_INFO, ANYLOCK_EVENT_RELEASED, c, lock, ANYLOCK_OK, 0, "released \"%.64s\"",
                     lock->name);
    return finish(lock, st);
}

anylock_status anylock_extend(anylock_lock *lock, double seconds)
{
    anylock_status st = enter(lock);
    if (st != ANYLOCK_OK)
        return lock ? finish(lock, st) : st;
    anylock_client *c = lock->client;
    int64_t ms;
    st = anylock__expiry_ms(seconds, &ms, lock->errmsg);
    if (st == ANYLOCK_OK && ms == 0)
        return fail(lock, ANYLOCK_BAD_DURATION, "lock \"%.64s\": a lock cannot be extended to never expire", lock->name);
    if (st != ANYLOCK_OK)
        return finish(lock, st);
    pthread_mutex_lock(&lock->mu);
    pthread_mutex_lock(&c->mu);
    anylock__lstate s = lock->state;
    int held = holds(lock);
    int64_t lease = lock->lease_ms;
    char lost[ANYLOCK_ERRMSG_MAX];
    memcpy(lost, lock->lost_msg, sizeof lost);
    pthread_mutex_unlock(&c->mu);
    if (is_session(c) && !held) {
        pthread_mutex_unlock(&lock->mu);
        if (s == LS_LOST)
            return fail(lock, ANYLOCK_NOT_HELD, "lock \"%.64s\" was lost: %.200s", lock->name, lost);
        return fail(lock, ANYLOCK_NOT_HELD, "lock \"%.64s\" is not held by this handle", lock->name);
    }
    if (s == LS_HELD && lease == 0) {
        pthread_mutex_unlock(&lock->mu);
        return fail(lock, ANYLOCK_NOT_EXPIRABLE, "lock \"%.64s\" was taken without an expiry", lock->name);
    }
    anylock_op op;
    anylock__op_init(&op, c, lock, lock->errmsg);
    op.expires_ms = anylock__round_expiry(c, ms);
    int64_t t0 = anylock_now_ns();
    if (c->backend->extend)
        st = c->backend->extend(&op);
    else if (is_session(c))
        st = ANYLOCK_OK; /* the expiry is the holder's alone */
    else
        st = anylock_op_error(&op, ANYLOCK_UNSUPPORTED, "lock \"%.64s\": the %s backend cannot extend locks",
                              lock->name, c->backend->name);
    pthread_mutex_lock(&c->mu);
    if (st == ANYLOCK_OK) {
        if (lock->state != LS_HELD) {
            /* The store has it for this owner id: the handle holds it now
             * (it may have been taken through another handle, or be the
             * one this handle lost or was unsure of).  Its token is the
             * acquiring handle's, unknown here. */
            lock->state = LS_HELD;
            lock->gen++;
            lock->renewing = 0;
            lock->has_token = 0;
            lock->cleanup_pending = 0;
        }
        lock->renew_status = ANYLOCK_OK;
        anylock__lease_set(lock, op.granted_at ? op.granted_at : t0, op.expires_ms);
        st = anylock__watch(lock);
    } else if (st == ANYLOCK_NOT_HELD) {
        anylock__unwatch(lock);
        lock->state = LS_FREE;
        lock->cleanup_pending = 0;
    }
    pthread_mutex_unlock(&c->mu);
    pthread_mutex_unlock(&lock->mu);
    return finish(lock, st);
}

/* ---- reading the store ------------------------------------------------------- */

anylock_status anylock_locked(anylock_lock *lock, int *locked)
{
    if (!lock || !locked)
        return ANYLOCK_INVALID;
    *locked = 0;
    anylock_info info;
    anylock__callback_calls(lock);
    lock->errmsg[0] = '\0';
    anylock_status st = anylock__inspect(lock->client, lock->name, &info, lock->errmsg);
    if (st != ANYLOCK_OK)
        return finish(lock, st);
    *locked = info.held;
    return ANYLOCK_OK;
}

anylock_status anylock_owner(anylock_lock *lock, char *buf, size_t size)
{
    if (!lock || !buf || size == 0)
        return ANYLOCK_INVALID;
    buf[0] = '\0';
    anylock_info info;
    anylock__callback_calls(lock);
    lock->errmsg[0] = '\0';
    anylock_status st = anylock__inspect(lock->client, lock->name, &info, lock->errmsg);
    if (st != ANYLOCK_OK)
        return finish(lock, st);
    if (info.owner_len >= size || info.owner_len > ANYLOCK_ID_MAX || strlen(info.owner) != info.owner_len)
        return fail(lock, ANYLOCK_INVALID, "lock \"%.64s\": the stored owner value (%zu bytes) does not fit the "
                    "buffer or is not an owner id", lock->name, info.owner_len);
    memcpy(buf, info.owner, info.owner_len + 1);
    return ANYLOCK_OK;
}

anylock_status anylock_lock_token(const anylock_lock *lock, uint64_t *token)
{
    if (!lock || !token)
        return ANYLOCK_INVALID;
    anylock_client *c = lock->client;
    if (c->fork_gen != anylock__fork_generation())
        return ANYLOCK_FORKED;
    pthread_mutex_lock(&c->mu);
    int held = holds(lock), has = lock->has_token;
    uint64_t t = lock->token;
    pthread_mutex_unlock(&c->mu);
    if (!held)
        return ANYLOCK_NOT_HELD;
    if (!(c->flags & ANYLOCK_BACKEND_TOKEN) || !has)
        return ANYLOCK_NO_TOKEN;
    *token = t;
    return ANYLOCK_OK;
}

anylock_status anylock_lock_reset(anylock_lock *lock)
{
    if (!lock)
        return ANYLOCK_INVALID;
    return anylock_reset(lock->client, lock->name);
}

anylock_client *anylock_lock_client(const anylock_lock *lock)
{
    return lock ? lock->client : NULL;
}

void *anylock_lock_state(const anylock_lock *lock)
{
    return lock ? lock->backend_state : NULL;
}

const char *anylock_lock_name(const anylock_lock *lock)
{
    return lock ? lock->name : "";
}

const char *anylock_lock_id(const anylock_lock *lock)
{
    return lock ? lock->id : "";
}

const char *anylock_lock_errmsg(const anylock_lock *lock)
{
    if (!lock)
        return "no lock (NULL passed)";
    /* In its lost-lock callback a lock says why it was lost (lost_msg is
     * written before the callback is delivered and not changed while the
     * lock stays lost); errmsg belongs to the calls on the handle. */
    if (anylock__callback_untouched(lock))
        return lock->lost_msg;
    return lock->errmsg;
}

/* ---- losses the backend reports --------------------------------------------- */

void anylock_lock_lost(anylock_lock *lock, anylock_status why, const char *fmt, ...)
{
    if (!lock)
        return;
    char msg[ANYLOCK_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    anylock__vformat(msg, fmt, ap);
    va_end(ap);
    anylock_client *c = lock->client;
    pthread_mutex_lock(&c->mu);
    anylock__declare_lost(lock, why == ANYLOCK_OK ? ANYLOCK_NOT_HELD : why, msg);
    pthread_mutex_unlock(&c->mu);
    /* The backend reports before its release returns: the lock is alive. */
    anylock__log_flush(1);
}
