/*
 * faults://?store=URL&...: a store that misbehaves on purpose (see
 * include/anylock_faults.h for the parameters).
 *
 * It is a wrapper rather than parameters of memory://, so that the same
 * faults can be put in front of any store (an application's tests against
 * the real redis of a staging environment, as well as against memory://,
 * which is the default), and memory:// stays the plain reference store.  It
 * drives the wrapped store with anylock_forward() and, like a session-bound
 * store, reports the losses it makes with anylock_lock_lost() from a timer
 * thread of its own.  Nothing here uses more than anylock_backend.h.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "anylock_faults.h"
#include "builtin.h"

#define MS 1000000LL
#define ALIGN 16
#define DEFAULT_STORE "memory://faults"

/* One handle's state: ours, then the wrapped store's. */
typedef struct fault_lock {
    struct fault_lock *next; /* in the client's list of held locks */
    anylock_lock *lock;
    int held;
    int lost;            /* lost on purpose: the store must still let it go */
    int64_t lose_at;     /* monotonic ns; INT64_MAX: not to be lost */
    unsigned renewals;
} fault_lock;

/* An injected failure: the next `count` calls answer `status`. */
typedef struct injected {
    unsigned count;
    anylock_status status;
} injected;

typedef struct faults_client {
    anylock_client *store;
    size_t sub_off;
    pthread_mutex_t mu; /* guards everything below */
    int mu_init;
    pthread_cond_t wake; /* the timer's: a lock to lose, or stop */
    pthread_t timer;
    int timer_started, stopping;
    fault_lock *held;
    injected fail_acquire, fail_release, fail_extend;
    int64_t acquire_delay_ms, renewal_pause_ms, lose_after_ms;
    unsigned lose_after_renewals;
    double chaos;
    uint64_t rng;
} faults_client;

static const char *const faults_params[] = {"store", "fail_acquire", "fail_release", "fail_extend",
                                            "acquire_delay", "lose_after", "lose_after_renewals", "renewal_pause",
                                            "chaos", "seed", NULL};

/* ---- parameters ---------------------------------------------------------- */

static anylock_status status_named(const char *name, anylock_status *out)
{
    for (int s = 1; s < ANYLOCK_STATUS_COUNT_; s++)
        if (!strcmp(anylock_status_name((anylock_status)s), name)) {
            *out = (anylock_status)s;
            return ANYLOCK_OK;
        }
    return ANYLOCK_URL_BAD_PARAM;
}

static int parse_count(const char *v, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long n = strtoul(v, &end, 10);
    if (!*v || *v == '-' || errno || n > 1000000000UL || (*end && *end != ':'))
        return -1;
    *out = (unsigned)n;
    return (int)(end - v);
}

static anylock_status parse_injected(anylock_op *op, const char *name, const char *v, injected *out)
{
    injected in = {0, ANYLOCK_IO};
    int n = parse_count(v, &in.count);
    if (n < 0 || (v[n] == ':' && status_named(v + n + 1, &in.status) != ANYLOCK_OK))
        return anylock_op_error(op, ANYLOCK_URL_BAD_PARAM,
                                "faults:// parameter %s=%.32s: give a count and optionally a status (%s=2:CONNECT)",
                                name, v, name);
    *out = in;
    return ANYLOCK_OK;
}

static anylock_status parse_ms(anylock_op *op, const char *name, const char *v, int64_t *out)
{
    double s;
    if (anylock_parse_duration(v, &s) != ANYLOCK_OK || isinf(s))
        return anylock_op_error(op, ANYLOCK_URL_BAD_PARAM, "faults:// parameter %s=%.32s is not a number of seconds",
                                name, v);
    *out = (int64_t)ceil(s * 1000.0 - 1e-6);
    if (*out < 1 && s > 0)
        *out = 1;
    return ANYLOCK_OK;
}

static void timer_start(faults_client *fc);

/* Applies one parameter; fc->mu held (or the client not yet shared). */
static anylock_status apply(anylock_op *op, faults_client *fc, const char *name, const char *v)
{
    if (!strcmp(name, "store"))
        return ANYLOCK_OK; /* open's alone */
    if (!strcmp(name, "fail_acquire"))
        return parse_injected(op, name, v, &fc->fail_acquire);
    if (!strcmp(name, "fail_release"))
        return parse_injected(op, name, v, &fc->fail_release);
    if (!strcmp(name, "fail_extend"))
        return parse_injected(op, name, v, &fc->fail_extend);
    if (!strcmp(name, "acquire_delay"))
        return parse_ms(op, name, v, &fc->acquire_delay_ms);
    if (!strcmp(name, "renewal_pause"))
        return parse_ms(op, name, v, &fc->renewal_pause_ms);
    if (!strcmp(name, "lose_after"))
        return parse_ms(op, name, v, &fc->lose_after_ms);
    if (!strcmp(name, "lose_after_renewals"))
        return parse_count(v, &fc->lose_after_renewals) < 0 || v[strlen(v) - 1] == ':'
                   ? anylock_op_error(op, ANYLOCK_URL_BAD_PARAM, "faults:// parameter %s=%.32s is not a count", name, v)
                   : ANYLOCK_OK;
    if (!strcmp(name, "chaos")) {
        char *end;
        double p = strtod(v, &end);
        if (!*v || *end || !(p >= 0 && p <= 1))
            return anylock_op_error(op, ANYLOCK_URL_BAD_PARAM, "faults:// parameter chaos=%.32s: give a probability "
                                    "from 0 to 1", v);
        fc->chaos = p;
        return ANYLOCK_OK;
    }
    if (!strcmp(name, "seed")) {
        char *end;
        unsigned long long seed = strtoull(v, &end, 10);
        if (!*v || *end || *v == '-')
            return anylock_op_error(op, ANYLOCK_URL_BAD_PARAM, "faults:// parameter seed=%.32s is not a number", v);
        fc->rng = seed ? seed : 0x9e3779b97f4a7c15ULL;
        return ANYLOCK_OK;
    }
    return anylock_op_error(op, ANYLOCK_URL_UNKNOWN_PARAM, "unknown faults:// parameter \"%.64s\"", name);
}

/* ---- the faults ------------------------------------------------------------ */

/* xorshift64*: reproducible from the seed.  fc->mu held. */
static double draw(faults_client *fc)
{
    uint64_t x = fc->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    fc->rng = x;
    return (double)((x * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

/* Whether this call fails, and how (fc->mu held). */
static int failing(faults_client *fc, injected *in, anylock_status *st)
{
    if (in->count) {
        in->count--;
        *st = in->status;
        return 1;
    }
    if (fc->chaos > 0 && draw(fc) < fc->chaos) {
        *st = ANYLOCK_IO;
        return 1;
    }
    return 0;
}

static void pause_ms(int64_t ms, int64_t deadline)
{
    int64_t until = anylock_now_ns() + ms * MS;
    if (deadline > 0 && deadline != ANYLOCK_DEADLINE_NEVER && deadline < until)
        until = deadline;
    for (int64_t left; (left = until - anylock_now_ns()) > 0;) {
        struct timespec ts = {.tv_sec = left / 1000000000, .tv_nsec = left % 1000000000};
        nanosleep(&ts, NULL);
    }
}

/* Takes fl out of the held list and tells its holder (fc->mu held). */
static void lose(faults_client *fc, fault_lock *fl, const char *why)
{
    for (fault_lock **p = &fc->held; *p; p = &(*p)->next)
        if (*p == fl) {
            *p = fl->next;
            break;
        }
    fl->next = NULL;
    fl->lost = 1;
    anylock_lock_lost(fl->lock, ANYLOCK_NOT_HELD, "faults://: lock lost on purpose (%s)", why);
}

static void *timer_main(void *arg)
{
    faults_client *fc = arg;
    pthread_mutex_lock(&fc->mu);
    while (!fc->stopping) {
        int64_t now = anylock_now_ns(), next = ANYLOCK_DEADLINE_NEVER;
        for (fault_lock *fl = fc->held, *nx; fl; fl = nx) {
            nx = fl->next;
            if (fl->lose_at <= now)
                lose(fc, fl, "lose_after");
            else if (fl->lose_at < next)
                next = fl->lose_at;
        }
        anylock_cond_wait_until(&fc->wake, &fc->mu, next);
    }
    pthread_mutex_unlock(&fc->mu);
    return NULL;
}

/* fc->mu held. */
static void timer_start(faults_client *fc)
{
    if (!fc->timer_started && pthread_create(&fc->timer, NULL, timer_main, fc) == 0)
        fc->timer_started = 1;
    pthread_cond_signal(&fc->wake);
}

/* ---- open and close --------------------------------------------------------- */

static anylock_status faults_open(anylock_op *op, const anylock_url *url)
{
    faults_client *fc = op->state;
    if (url->user || url->password || url->nhosts || (url->path[0] && strcmp(url->path, "/")))
        return anylock_op_error(op, ANYLOCK_URL_MALFORMED,
                                "faults:// takes no user, host or path: faults://?store=URL&fail_acquire=1...");
    if (pthread_mutex_init(&fc->mu, NULL) || anylock_cond_init(&fc->wake))
        return ANYLOCK_NOMEM;
    fc->mu_init = 1;
    fc->rng = 1;
    for (size_t i = 0; i < url->nparams; i++) {
        anylock_status st = apply(op, fc, url->params[i].name, url->params[i].value);
        if (st != ANYLOCK_OK)
            return st;
    }
    const char *store = anylock_url_param_get(url, "store");
    if (!store || !*store)
        store = DEFAULT_STORE;
    anylock_status st = anylock_check_store_url(op, "store", store, "faults");
    if (st != ANYLOCK_OK)
        return st;
    st = anylock_open(store, &fc->store);
    if (st != ANYLOCK_OK) {
        if (!fc->store)
            return ANYLOCK_NOMEM;
        return anylock_op_error(op, st, "faults:// store: %s", anylock_errmsg(fc->store));
    }
    op->flags = anylock_client_flags(fc->store);
    op->expiry_resolution_ms = anylock_client_expiry_resolution_ms(fc->store);
    fc->sub_off = (sizeof(fault_lock) + ALIGN - 1) / ALIGN * ALIGN;
    op->lock_size = fc->sub_off + anylock_client_lock_size(fc->store);
    return ANYLOCK_OK;
}

static void faults_close(anylock_op *op)
{
    faults_client *fc = op->state;
    if (fc->mu_init) {
        pthread_mutex_lock(&fc->mu);
        fc->stopping = 1;
        pthread_cond_signal(&fc->wake);
        int started = fc->timer_started;
        pthread_mutex_unlock(&fc->mu);
        if (started)
            pthread_join(fc->timer, NULL);
        pthread_cond_destroy(&fc->wake);
        pthread_mutex_destroy(&fc->mu);
    }
    anylock_close(fc->store);
}

/* ---- the slots ---------------------------------------------------------------- */

/* op for the wrapped store: its part of the lock's state. */
static anylock_op sub_op(const faults_client *fc, const anylock_op *op)
{
    anylock_op sub = *op;
    if (op->lock_state)
        sub.lock_state = (char *)op->lock_state + fc->sub_off;
    return sub;
}

static anylock_status injected_failure(anylock_op *op, const char *what, anylock_status st)
{
    return anylock_op_error(op, st, "faults://: %s failed on purpose (%s)", what, anylock_status_name(st));
}

static anylock_status faults_acquire(anylock_op *op)
{
    faults_client *fc = op->state;
    fault_lock *fl = op->lock_state;
    anylock_status st;
    pthread_mutex_lock(&fc->mu);
    int fails = failing(fc, &fc->fail_acquire, &st);
    int64_t delay = fc->acquire_delay_ms;
    pthread_mutex_unlock(&fc->mu);
    if (fails)
        return injected_failure(op, "acquire", st);
    if (delay) {
        pause_ms(delay, op->deadline);
        if (op->deadline != 0 && op->deadline != ANYLOCK_DEADLINE_NEVER && anylock_now_ns() >= op->deadline)
            return anylock_op_error(op, ANYLOCK_TIMEOUT, "faults://: the acquire delay outlasted the wait");
    }
    anylock_op sub = sub_op(fc, op);
    st = anylock_forward(fc->store, ANYLOCK_SLOT_ACQUIRE, &sub, NULL);
    op->token = sub.token;
    op->granted_at = sub.granted_at;
    if (st == ANYLOCK_OK) {
        pthread_mutex_lock(&fc->mu);
        fl->lock = op->lock;
        fl->held = 1;
        fl->lost = 0;
        fl->renewals = 0;
        fl->lose_at = fc->lose_after_ms ? anylock_now_ns() + fc->lose_after_ms * MS : INT64_MAX;
        fl->next = fc->held;
        fc->held = fl;
        if (fc->lose_after_ms)
            timer_start(fc);
        pthread_mutex_unlock(&fc->mu);
    }
    return st;
}

/* Takes fl out of the held list (fc->mu held); 1 if it had been lost on
 * purpose. */
static int unhold(faults_client *fc, fault_lock *fl)
{
    for (fault_lock **p = &fc->held; *p; p = &(*p)->next)
        if (*p == fl) {
            *p = fl->next;
            break;
        }
    int lost = fl->lost;
    fl->next = NULL;
    fl->held = fl->lost = 0;
    return lost;
}

static anylock_status faults_release(anylock_op *op)
{
    faults_client *fc = op->state;
    fault_lock *fl = op->lock_state;
    anylock_status st;
    pthread_mutex_lock(&fc->mu);
    if (failing(fc, &fc->fail_release, &st)) {
        pthread_mutex_unlock(&fc->mu);
        return injected_failure(op, "release", st);
    }
    int lost = unhold(fc, fl);
    pthread_mutex_unlock(&fc->mu);
    anylock_op sub = sub_op(fc, op);
    st = anylock_forward(fc->store, ANYLOCK_SLOT_RELEASE, &sub, NULL);
    /* A lock lost on purpose is let go in the store now; its holder was
     * told it is not held. */
    if (lost)
        return anylock_op_error(op, ANYLOCK_NOT_HELD, "faults://: the lock was lost on purpose");
    return st;
}

static anylock_status faults_extend(anylock_op *op)
{
    faults_client *fc = op->state;
    fault_lock *fl = op->lock_state;
    anylock_status st;
    pthread_mutex_lock(&fc->mu);
    if (fl->lost) {
        pthread_mutex_unlock(&fc->mu);
        return anylock_op_error(op, ANYLOCK_NOT_HELD, "faults://: the lock was lost on purpose");
    }
    if (failing(fc, &fc->fail_extend, &st)) {
        pthread_mutex_unlock(&fc->mu);
        return injected_failure(op, "extend", st);
    }
    if (fl->held && fc->lose_after_renewals && ++fl->renewals >= fc->lose_after_renewals) {
        /* The store finds it gone: no report, the extend's answer says so. */
        unhold(fc, fl);
        fl->lost = 1;
        pthread_mutex_unlock(&fc->mu);
        return anylock_op_error(op, ANYLOCK_NOT_HELD, "faults://: the lock was lost on purpose (lose_after_renewals)");
    }
    int64_t pause = fc->renewal_pause_ms;
    pthread_mutex_unlock(&fc->mu);
    /* The renewal threads give the lease's end as the deadline; a caller's
     * own anylock_extend gives none: only renewals pause. */
    if (pause && op->deadline != ANYLOCK_DEADLINE_NEVER)
        pause_ms(pause, ANYLOCK_DEADLINE_NEVER);
    anylock_op sub = sub_op(fc, op);
    st = anylock_forward(fc->store, ANYLOCK_SLOT_EXTEND, &sub, NULL);
    op->granted_at = sub.granted_at;
    return st;
}

static anylock_status faults_reset(anylock_op *op)
{
    faults_client *fc = op->state;
    anylock_op sub = sub_op(fc, op);
    return anylock_forward(fc->store, ANYLOCK_SLOT_RESET, &sub, NULL);
}

static anylock_status faults_reset_all(anylock_op *op, size_t *count)
{
    faults_client *fc = op->state;
    anylock_op sub = sub_op(fc, op);
    return anylock_forward(fc->store, ANYLOCK_SLOT_RESET_ALL, &sub, count);
}

static anylock_status faults_enumerate(anylock_op *op, anylock_emitter *em)
{
    faults_client *fc = op->state;
    anylock_op sub = sub_op(fc, op);
    return anylock_forward(fc->store, ANYLOCK_SLOT_ENUMERATE, &sub, em);
}

static void faults_forget(anylock_op *op)
{
    faults_client *fc = op->state;
    fault_lock *fl = op->lock_state;
    pthread_mutex_lock(&fc->mu);
    unhold(fc, fl);
    pthread_mutex_unlock(&fc->mu);
    anylock_op sub = sub_op(fc, op);
    anylock_forward(fc->store, ANYLOCK_SLOT_FORGET, &sub, NULL);
}

const anylock_backend anylock__faults_backend = {
    .version = ANYLOCK_BACKEND_VERSION,
    .name = "faults",
    .state_size = sizeof(faults_client),
    .flags = 0, /* open takes the wrapped store's */
    .expiry_resolution_ms = 1,
    .params = faults_params,
    .open = faults_open,
    .close = faults_close,
    .acquire = faults_acquire,
    .release = faults_release,
    .extend = faults_extend,
    .reset = faults_reset,
    .reset_all = faults_reset_all,
    .lock_size = 0, /* open adds the wrapped store's */
    .enumerate = faults_enumerate,
    .forget = faults_forget,
};

/* ---- the control calls ------------------------------------------------------------ */

static faults_client *faults_of(const anylock_client *c)
{
    return anylock_client_backend(c) == &anylock__faults_backend ? anylock_client_state(c) : NULL;
}

anylock_status anylock_faults_set(anylock_client *client, const char *params)
{
    faults_client *fc = faults_of(client);
    if (!fc || !params)
        return ANYLOCK_INVALID;
    char errbuf[ANYLOCK_ERRMSG_MAX] = "";
    anylock_op op;
    memset(&op, 0, sizeof op);
    op.errbuf = errbuf;
    char *copy = strdup(params);
    if (!copy)
        return ANYLOCK_NOMEM;
    anylock_status st = ANYLOCK_OK;
    pthread_mutex_lock(&fc->mu);
    faults_client trial = *fc; /* all or nothing */
    for (char *save = NULL, *item = strtok_r(copy, "&", &save); item && st == ANYLOCK_OK;
         item = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(item, '=');
        if (eq)
            *eq = '\0';
        st = !strcmp(item, "store") ? anylock_op_error(&op, ANYLOCK_URL_BAD_PARAM, "the store cannot change")
                                    : apply(&op, &trial, item, eq ? eq + 1 : "");
    }
    if (st == ANYLOCK_OK) {
        fc->fail_acquire = trial.fail_acquire;
        fc->fail_release = trial.fail_release;
        fc->fail_extend = trial.fail_extend;
        fc->acquire_delay_ms = trial.acquire_delay_ms;
        fc->renewal_pause_ms = trial.renewal_pause_ms;
        fc->lose_after_ms = trial.lose_after_ms;
        fc->lose_after_renewals = trial.lose_after_renewals;
        fc->chaos = trial.chaos;
        fc->rng = trial.rng;
        /* Locks already held take a new lose_after from now. */
        int64_t now = anylock_now_ns();
        for (fault_lock *fl = fc->held; fl; fl = fl->next)
            fl->lose_at = fc->lose_after_ms ? now + fc->lose_after_ms * MS : INT64_MAX;
        if (fc->lose_after_ms)
            timer_start(fc);
    }
    pthread_mutex_unlock(&fc->mu);
    free(copy);
    (void)errbuf;
    return st;
}

anylock_status anylock_faults_lose(anylock_lock *lock)
{
    faults_client *fc = faults_of(anylock_lock_client(lock));
    if (!fc)
        return ANYLOCK_INVALID;
    fault_lock *fl = anylock_lock_state(lock);
    pthread_mutex_lock(&fc->mu);
    anylock_status st = fl->held && !fl->lost ? ANYLOCK_OK : ANYLOCK_NOT_HELD;
    if (st == ANYLOCK_OK)
        lose(fc, fl, "anylock_faults_lose");
    pthread_mutex_unlock(&fc->mu);
    return st;
}
