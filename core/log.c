/* The log hook: one process-wide handler and level, read on every event
 * without a lock (an atomic level makes a disabled log cost one load). */
#include <stdatomic.h>
#include <stdio.h>

#include "internal.h"

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static anylock_log_fn log_fn;
static void *log_userdata;
/* -1: off; else the highest level sent. */
static atomic_int log_level = -1;

void anylock_set_log(anylock_log_fn fn, anylock_log_level max_level, void *userdata)
{
    pthread_mutex_lock(&log_mu);
    log_fn = fn;
    log_userdata = userdata;
    atomic_store(&log_level, fn ? (int)max_level : -1);
    pthread_mutex_unlock(&log_mu);
}

int anylock__log_enabled(anylock_log_level level)
{
    return (int)level <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

static void vlog(anylock_log_level level, anylock_event event, const anylock_client *c, const anylock_lock *lock,
                 anylock_status status, double expires_in, const char *fmt, va_list ap)
{
    if (!anylock__log_enabled(level))
        return;
    char msg[ANYLOCK_ERRMSG_MAX];
    anylock__vformat(msg, fmt, ap);
    anylock_log_record rec = {
        .level = level,
        .event = event,
        .lock = lock,
        .name = lock ? lock->name : NULL,
        .scheme = c && c->scheme ? c->scheme : "",
        .status = status,
        .expires_in = expires_in,
        .message = msg,
    };
    /* The handler runs without log_mu held, so that it may call the
     * library (which may log). */
    pthread_mutex_lock(&log_mu);
    anylock_log_fn fn = log_fn;
    void *ud = log_userdata;
    pthread_mutex_unlock(&log_mu);
    if (fn)
        fn(&rec, ud);
}

void anylock__log(anylock_log_level level, anylock_event event, const anylock_client *c, const anylock_lock *lock,
                  anylock_status status, double expires_in, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(level, event, c, lock, status, expires_in, fmt, ap);
    va_end(ap);
}

/* Records logged while the core holds a client's mutex wait here, in the
 * thread that logged them, until anylock__log_flush() once the mutex is let
 * go: the handler is the application's code, which may call the library. */
#define LATER_MAX 8

typedef struct later {
    anylock_log_record rec;
    char msg[ANYLOCK_ERRMSG_MAX];
    char name[ANYLOCK_NAME_MAX + 1];
    char scheme[40];
} later;

static _Thread_local later pending[LATER_MAX];
static _Thread_local int npending;

void anylock__log_later(anylock_log_level level, anylock_event event, const anylock_client *c,
                        const anylock_lock *lock, anylock_status status, double expires_in, const char *fmt, ...)
{
    if (!anylock__log_enabled(level) || npending == LATER_MAX)
        return;
    later *l = &pending[npending++];
    va_list ap;
    va_start(ap, fmt);
    anylock__vformat(l->msg, fmt, ap);
    va_end(ap);
    snprintf(l->name, sizeof l->name, "%s", lock ? lock->name : "");
    snprintf(l->scheme, sizeof l->scheme, "%s", c && c->scheme ? c->scheme : "");
    l->rec = (anylock_log_record){
        .level = level,
        .event = event,
        .lock = lock,
        .name = lock ? l->name : NULL,
        .scheme = l->scheme,
        .status = status,
        .expires_in = expires_in,
        .message = l->msg,
    };
}

void anylock__log_flush(int keep_lock)
{
    int n = npending;
    npending = 0;
    if (!n)
        return;
    pthread_mutex_lock(&log_mu);
    anylock_log_fn fn = log_fn;
    void *ud = log_userdata;
    pthread_mutex_unlock(&log_mu);
    for (int i = 0; i < n; i++) {
        /* A thread that holds no reference to the lock cannot vouch that it
         * still exists: the record then names it only. */
        if (!keep_lock)
            pending[i].rec.lock = NULL;
        if (fn && anylock__log_enabled(pending[i].rec.level))
            fn(&pending[i].rec, ud);
    }
}

void anylock_op_log(const anylock_op *op, anylock_log_level level, anylock_event event, const char *fmt, ...)
{
    if (!anylock__log_enabled(level))
        return;
    const anylock_lock *lock = op ? op->lock : NULL;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, event, lock ? lock->client : NULL, lock, ANYLOCK_OK, 0, fmt, ap);
    va_end(ap);
}
