/*
 * Lock handles: options, validation, and the acquire / release / extend
 * dispatch.  The handle's state that the renewal thread also touches (held,
 * lost, valid_until) is guarded by the client's mutex.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

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

static anylock_status fail(anylock_lock *lock, anylock_status st, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static anylock_status fail(anylock_lock *lock, anylock_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    anylock__vformat(lock->errmsg, fmt, ap);
    va_end(ap);
    return finish(lock, st);
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
    anylock_status st = anylock__check_name(name, errbuf);
    if (st != ANYLOCK_OK)
        return anylock__client_record(c, st, errbuf);
    anylock_lock *lock = calloc(1, sizeof *lock);
    if (!lock)
        return anylock__client_record(c, ANYLOCK_NOMEM, NULL);
    lock->client = c;
    lock->name_len = strlen(name);
    lock->name = anylock__strndup(name, lock->name_len);
    lock->key_len = c->prefix_len + lock->name_len;
    lock->key = malloc(lock->key_len + 1);
    if (!lock->name || !lock->key) {
        free(lock->name);
        free(lock->key);
        free(lock);
        return anylock__client_record(c, ANYLOCK_NOMEM, NULL);
    }
    memcpy(lock->key, c->prefix, c->prefix_len);
    memcpy(lock->key + c->prefix_len, name, lock->name_len + 1);
    st = anylock__make_id(lock->id);
    if (st != ANYLOCK_OK) {
        free(lock->name);
        free(lock->key);
        free(lock);
        return anylock__client_record(c, st, "cannot read random bytes for the owner id");
    }
    lock->id_len = strlen(lock->id);
    lock->expires_ms = c->expires_ms;
    lock->timeout_ms = c->timeout_ms;
    pthread_mutex_lock(&c->mu);
    c->nlocks++;
    pthread_mutex_unlock(&c->mu);
    *out = lock;
    return ANYLOCK_OK;
}

void anylock_lock_free(anylock_lock *lock)
{
    if (!lock)
        return;
    anylock_client *c = lock->client;
    if (anylock_lock_held(lock))
        anylock_release(lock);
    anylock__renew_stop(lock, NULL);
    pthread_mutex_lock(&c->mu);
    c->nlocks--;
    pthread_mutex_unlock(&c->mu);
    free(lock->name);
    free(lock->key);
    free(lock);
}

int anylock_lock_held(const anylock_lock *lock)
{
    if (!lock)
        return 0;
    pthread_mutex_lock(&lock->client->mu);
    int held = lock->held;
    pthread_mutex_unlock(&lock->client->mu);
    return held;
}

/* Options may change only while the handle does not hold the lock. */
static anylock_status begin_option(anylock_lock *lock)
{
    if (!lock)
        return ANYLOCK_INVALID;
    lock->errmsg[0] = '\0';
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

/* The cross-checks python-redis-lock makes (and a few more). */
static anylock_status validate_acquire(anylock_lock *lock, int try_once)
{
    const anylock_backend *b = lock->client->backend;
    if (try_once && lock->timeout_set)
        return fail(lock, ANYLOCK_TRY_WITH_TIMEOUT, "lock \"%.64s\": a timeout is set on this lock, so it cannot be tried once", lock->name);
    if (lock->auto_renewal && lock->expires_ms == 0)
        return fail(lock, ANYLOCK_RENEWAL_NEEDS_EXPIRY, "lock \"%.64s\": auto-renewal needs an expiry", lock->name);
    if (lock->auto_renewal && !b->extend)
        return fail(lock, ANYLOCK_UNSUPPORTED, "lock \"%.64s\": the %s backend cannot extend, so cannot renew", lock->name, b->name);
    if (lock->timeout_set && !lock->auto_renewal && lock->expires_ms &&
        lock->timeout_ms != ANYLOCK__MS_FOREVER && lock->timeout_ms > lock->expires_ms)
        return fail(lock, ANYLOCK_TIMEOUT_TOO_LARGE, "lock \"%.64s\": the wait timeout is longer than the expiry; turn on auto-renewal", lock->name);
    return ANYLOCK_OK;
}

static anylock_status acquire(anylock_lock *lock, int try_once)
{
    if (!lock)
        return ANYLOCK_INVALID;
    lock->errmsg[0] = '\0';
    anylock_client *c = lock->client;
    if (anylock_lock_held(lock))
        return fail(lock, ANYLOCK_ALREADY_HELD, "lock \"%.64s\" is already held by this handle", lock->name);
    /* A lock lost by renewal may be taken again once the renewal thread is
     * done with it. */
    anylock__renew_stop(lock, NULL);
    pthread_mutex_lock(&c->mu);
    lock->lost = 0;
    pthread_mutex_unlock(&c->mu);
    anylock_status st = validate_acquire(lock, try_once);
    if (st != ANYLOCK_OK)
        return st;

    anylock_op op;
    anylock__op_init(&op, c, lock, lock->errmsg);
    op.expires_ms = anylock__round_expiry(c, lock->expires_ms);
    op.deadline = try_once ? 0 : anylock__deadline(lock->timeout_ms);
    int64_t t0 = anylock_now_ns();
    st = c->backend->acquire(&op);
    if (st != ANYLOCK_OK)
        return finish(lock, st);
    pthread_mutex_lock(&c->mu);
    lock->held = 1;
    lock->valid_until = op.expires_ms ? t0 + op.expires_ms * 1000000 : INT64_MAX;
    pthread_mutex_unlock(&c->mu);
    if (lock->auto_renewal) {
        st = anylock__renew_start(lock);
        if (st != ANYLOCK_OK) {
            anylock_release(lock);
            return fail(lock, st, "lock \"%.64s\": cannot start the renewal thread", lock->name);
        }
    }
    return ANYLOCK_OK;
}

anylock_status anylock_acquire(anylock_lock *lock)
{
    return acquire(lock, 0);
}

anylock_status anylock_try_acquire(anylock_lock *lock)
{
    return acquire(lock, 1);
}

anylock_status anylock_release(anylock_lock *lock)
{
    if (!lock)
        return ANYLOCK_INVALID;
    lock->errmsg[0] = '\0';
    anylock_client *c = lock->client;
    anylock_status why = ANYLOCK_OK;
    int lost = anylock__renew_stop(lock, &why);
    pthread_mutex_lock(&c->mu);
    int held = lock->held;
    lock->held = 0;
    lock->lost = 0;
    pthread_mutex_unlock(&c->mu);
    if (lost)
        return fail(lock, ANYLOCK_NOT_HELD, "lock \"%.64s\" was lost while being renewed: %s", lock->name, anylock_strerror(why));
    if (!held)
        return fail(lock, ANYLOCK_NOT_HELD, "lock \"%.64s\" is not held by this handle", lock->name);
    anylock_op op;
    anylock__op_init(&op, c, lock, lock->errmsg);
    return finish(lock, c->backend->release(&op));
}

anylock_status anylock_extend(anylock_lock *lock, double seconds)
{
    if (!lock)
        return ANYLOCK_INVALID;
    lock->errmsg[0] = '\0';
    anylock_client *c = lock->client;
    int64_t ms;
    anylock_status st = anylock__expiry_ms(seconds, &ms, lock->errmsg);
    if (st == ANYLOCK_OK && ms == 0)
        return fail(lock, ANYLOCK_BAD_DURATION, "lock \"%.64s\": a lock cannot be extended to never expire", lock->name);
    if (st != ANYLOCK_OK)
        return finish(lock, st);
    if (!anylock_lock_held(lock)) {
        anylock_status why;
        if (anylock__renew_stop(lock, &why))
            return fail(lock, ANYLOCK_NOT_HELD, "lock \"%.64s\" was lost while being renewed: %s", lock->name, anylock_strerror(why));
        return fail(lock, ANYLOCK_NOT_HELD, "lock \"%.64s\" is not held by this handle", lock->name);
    }
    if (lock->expires_ms == 0)
        return fail(lock, ANYLOCK_NOT_EXPIRABLE, "lock \"%.64s\" was taken without an expiry", lock->name);
    if (!c->backend->extend)
        return fail(lock, ANYLOCK_UNSUPPORTED, "lock \"%.64s\": the %s backend cannot extend locks", lock->name, c->backend->name);
    anylock_op op;
    anylock__op_init(&op, c, lock, lock->errmsg);
    op.expires_ms = anylock__round_expiry(c, ms);
    int64_t t0 = anylock_now_ns();
    st = c->backend->extend(&op);
    if (st == ANYLOCK_OK) {
        pthread_mutex_lock(&c->mu);
        lock->valid_until = t0 + op.expires_ms * 1000000;
        pthread_mutex_unlock(&c->mu);
    } else if (st == ANYLOCK_NOT_HELD) {
        anylock__renew_stop(lock, NULL);
        pthread_mutex_lock(&c->mu);
        lock->held = 0;
        pthread_mutex_unlock(&c->mu);
    }
    return finish(lock, st);
}

/* inspect on the lock's own key. */
static anylock_status inspect(anylock_lock *lock, anylock_info *info)
{
    memset(info, 0, sizeof *info);
    lock->errmsg[0] = '\0';
    anylock_client *c = lock->client;
    if (!c->backend->inspect)
        return fail(lock, ANYLOCK_UNSUPPORTED, "lock \"%.64s\": the %s backend cannot inspect locks", lock->name, c->backend->name);
    anylock_op op;
    anylock__op_init(&op, c, lock, lock->errmsg);
    op.id = NULL;
    op.id_len = 0;
    anylock_status st = c->backend->inspect(&op, info);
    info->name = lock->name;
    return finish(lock, st);
}

anylock_status anylock_locked(anylock_lock *lock, int *locked)
{
    if (!lock || !locked)
        return ANYLOCK_INVALID;
    anylock_info info;
    anylock_status st = inspect(lock, &info);
    *locked = st == ANYLOCK_OK && info.held;
    return st;
}

anylock_status anylock_owner(anylock_lock *lock, char *buf, size_t size)
{
    if (!lock || !buf || size == 0)
        return ANYLOCK_INVALID;
    buf[0] = '\0';
    anylock_info info;
    anylock_status st = inspect(lock, &info);
    if (st != ANYLOCK_OK)
        return st;
    size_t n = strlen(info.owner);
    if (n >= size)
        return fail(lock, ANYLOCK_INVALID, "lock \"%.64s\": the owner id does not fit the buffer", lock->name);
    memcpy(buf, info.owner, n + 1);
    return ANYLOCK_OK;
}

anylock_status anylock_lock_reset(anylock_lock *lock)
{
    if (!lock)
        return ANYLOCK_INVALID;
    return anylock_reset(lock->client, lock->name);
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
    return lock ? lock->errmsg : "no lock (NULL passed)";
}
