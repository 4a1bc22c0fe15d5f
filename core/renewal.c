/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Watching held locks: auto-renewal, expiries, and losses.
 *
 * Each client that has a watched lock runs one scheduler thread and a few
 * worker threads.  The scheduler never calls a backend or user code: it keeps
 * the watched locks in a heap ordered by when each needs attention, declares
 * a lock lost the moment its lease's end comes (less a small guard), whatever
 * a renewal in flight is doing, and queues jobs.  Workers run the jobs: a
 * renewal (the backend's extend, bounded by the lease's end), the cleanup
 * after a loss (the backend's release, so that a lease still in the store
 * is freed and a session-bound lock's resources are let go), and the
 * delivery of the lost-lock callback.  A slow store therefore delays only
 * its own lock's renewal, never another lock's loss report.
 *
 * A lock is renewed after two thirds of its lease, and at least the store's
 * expiry resolution before the lease ends; a renewal that fails for a
 * transient reason (the store unreachable) is retried until the lease ends,
 * and only then is the lock lost, with the failure's status.  A renewal the
 * store refuses (another owner, or gone) loses the lock at once.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define MS ANYLOCK__NS_PER_MS
/* Workers that run renewals and cleanups at most; more jobs wait.  Loss
 * deliveries always get a thread, so that a stalled store cannot delay a
 * callback. */
#define WORKERS_MAX 32

static _Thread_local const anylock_lock *delivering_now;
/* The callback running on this thread called the library on its own lock
 * (whose message then says how that call went). */
static _Thread_local int callback_called;

int anylock__in_callback(const anylock_client *c, const anylock_lock *lock)
{
    const anylock_lock *l = delivering_now;
    return l && (lock ? l == lock : l->client == c);
}

void anylock__callback_calls(const anylock_lock *lock)
{
    if (delivering_now == lock)
        callback_called = 1;
}

int anylock__callback_untouched(const anylock_lock *lock)
{
    return delivering_now == lock && !callback_called;
}

/* ---- timing ----------------------------------------------------------- */

/* A renewal leaves at least this much of the lease: the time a loaded
 * machine may take to run the renewal thread and the store's answer. */
#define RENEW_MARGIN_MIN_MS 250

/* When a lease is renewed, counted from its start: with a third of it left,
 * and at least the store's expiry resolution and RENEW_MARGIN_MIN_MS left,
 * but never sooner than a third into it (short leases renew every third). */
static int64_t renew_offset_ms(int64_t lease_ms, int64_t resolution_ms)
{
    int64_t margin = lease_ms / 3;
    if (margin < resolution_ms)
        margin = resolution_ms;
    if (margin < RENEW_MARGIN_MIN_MS)
        margin = RENEW_MARGIN_MIN_MS;
    int64_t at = lease_ms - margin;
    return at > lease_ms / 3 ? at : lease_ms / 3;
}

/* How long before the lease's end the lock counts as lost: a small guard
 * for the time between waking and the callback acting. */
static int64_t guard_ms(int64_t lease_ms)
{
    int64_t g = lease_ms / 10;
    return g < 100 ? g : 100;
}

/* Sets the lease from a grant at granted (monotonic ns); client->mu held. */
static void set_lease(anylock_lock *lock, int64_t granted, int64_t lease_ms)
{
    anylock_client *c = lock->client;
    lock->lease_ms = lease_ms;
    if (lease_ms <= 0) {
        lock->valid_until = lock->lost_at = INT64_MAX;
        lock->renew_due = INT64_MAX;
        return;
    }
    lock->valid_until = granted + lease_ms * MS;
    lock->lost_at = lock->valid_until - guard_ms(lease_ms) * MS;
    int renews = lock->auto_renewal && (c->backend->extend || (c->flags & ANYLOCK_BACKEND_SESSION));
    lock->renew_due = renews ? granted + renew_offset_ms(lease_ms, c->resolution_ms) * MS : INT64_MAX;
}

/* ---- the heap of watched locks ---------------------------------------- */

static void heap_swap(anylock__renewer *r, size_t i, size_t j)
{
    anylock_lock *t = r->heap[i];
    r->heap[i] = r->heap[j];
    r->heap[j] = t;
    r->heap[i]->heap_index = i;
    r->heap[j]->heap_index = j;
}

static void heap_up(anylock__renewer *r, size_t i)
{
    while (i > 0 && r->heap[(i - 1) / 2]->due > r->heap[i]->due) {
        heap_swap(r, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(anylock__renewer *r, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < r->nheap && r->heap[l]->due < r->heap[m]->due)
            m = l;
        if (l + 1 < r->nheap && r->heap[l + 1]->due < r->heap[m]->due)
            m = l + 1;
        if (m == i)
            return;
        heap_swap(r, i, m);
        i = m;
    }
}

static void heap_remove(anylock__renewer *r, anylock_lock *lock)
{
    size_t i = lock->heap_index;
    if (i == SIZE_MAX)
        return;
    lock->heap_index = SIZE_MAX;
    r->nheap--;
    if (i == r->nheap)
        return;
    r->heap[i] = r->heap[r->nheap];
    r->heap[i]->heap_index = i;
    heap_up(r, i);
    heap_down(r, r->heap[i]->heap_index);
}

static int heap_put(anylock__renewer *r, anylock_lock *lock)
{
    if (lock->heap_index != SIZE_MAX) {
        size_t i = lock->heap_index;
        heap_up(r, i);
        heap_down(r, lock->heap_index);
        return 0;
    }
    if (r->nheap == r->capheap) {
        size_t cap = r->capheap ? r->capheap * 2 : 16;
        anylock_lock **g = realloc(r->heap, cap * sizeof *g);
        if (!g)
            return -1;
        r->heap = g;
        r->capheap = cap;
    }
    lock->heap_index = r->nheap;
    r->heap[r->nheap++] = lock;
    heap_up(r, lock->heap_index);
    return 0;
}

/* ---- threads ------------------------------------------------------------ */

static void *scheduler_main(void *arg);
static void *worker_main(void *arg);

static int start_scheduler(anylock_client *c)
{
    anylock__renewer *r = &c->renewer;
    if (r->started)
        return 0;
    if (anylock_thread_create(&r->scheduler, scheduler_main, c) != 0)
        return -1;
    r->started = 1;
    return 0;
}

/* Queues a job for lock (client->mu held), starting a worker if none is idle. */
static void queue_job(anylock_lock *lock, anylock__job_kind kind)
{
    anylock_client *c = lock->client;
    anylock__renewer *r = &c->renewer;
    anylock__job *j = calloc(1, sizeof *j);
    if (!j)
        return; /* out of memory: the job is lost; a renewal then fails at its lease's end */
    j->kind = kind;
    j->lock = lock;
    j->gen = lock->gen;
    lock->jobs++;
    if (kind == JOB_DELIVER) {
        /* Deliveries go first. */
        j->next = r->jobs;
        r->jobs = j;
        if (!r->jobs_tail)
            r->jobs_tail = j;
    } else {
        if (r->jobs_tail)
            r->jobs_tail->next = j;
        else
            r->jobs = j;
        r->jobs_tail = j;
    }
    r->njobs++;
    /* An idle worker that was signalled may not have taken its job yet:
     * start one unless there are more idle workers than queued jobs (a
     * delivery may block in its callback for as long as it likes, and a
     * renewal queued behind it must not wait for it). */
    if (r->njobs > r->nidle && (r->nworkers < WORKERS_MAX || kind == JOB_DELIVER)) {
        if (r->nworkers == r->capworkers) {
            size_t cap = r->capworkers ? r->capworkers * 2 : 4;
            pthread_t *g = realloc(r->workers, cap * sizeof *g);
            if (g) {
                r->workers = g;
                r->capworkers = cap;
            }
        }
        if (r->nworkers < r->capworkers && anylock_thread_create(&r->workers[r->nworkers], worker_main, c) == 0)
            r->nworkers++;
    }
    pthread_cond_signal(&r->work);
}

/* ---- state changes (client->mu held) ------------------------------------ */

void anylock__declare_lost(anylock_lock *lock, anylock_status why, const char *msg)
{
    if (lock->state != LS_HELD || lock->dead)
        return;
    anylock_client *c = lock->client;
    lock->state = LS_LOST;
    lock->lost_status = why;
    anylock__format(lock->lost_msg, "%s", msg && *msg ? msg : anylock_strerror(why));
    lock->cleanup_pending = 1;
    heap_remove(&c->renewer, lock);
    anylock__log_later(ANYLOCK_LOG_ERROR, ANYLOCK_EVENT_LOST, c, lock, why, 0, "lost lock \"%.64s\": %s", lock->name,
                 lock->lost_msg);
    queue_job(lock, JOB_CLEANUP);
    if (lock->lost_fn) {
        lock->deliver_pending = 1;
        queue_job(lock, JOB_DELIVER);
    }
}

/* When the scheduler must look at lock next. */
static int64_t due_of(const anylock_lock *lock)
{
    int64_t due = lock->lost_at;
    if (!lock->renewing && lock->renew_due < due)
        due = lock->renew_due;
    return due;
}

anylock_status anylock__watch(anylock_lock *lock)
{
    anylock_client *c = lock->client;
    int watched = lock->state == LS_HELD && lock->lease_ms > 0 &&
                  (lock->auto_renewal || lock->lost_fn || (c->flags & ANYLOCK_BACKEND_SESSION));
    if (!watched) {
        heap_remove(&c->renewer, lock);
        return ANYLOCK_OK;
    }
    if (start_scheduler(c) != 0)
        return ANYLOCK_INTERNAL;
    lock->due = due_of(lock);
    if (heap_put(&c->renewer, lock) != 0)
        return ANYLOCK_NOMEM;
    pthread_cond_signal(&c->renewer.wake);
    return ANYLOCK_OK;
}

void anylock__unwatch(anylock_lock *lock)
{
    heap_remove(&lock->client->renewer, lock);
}

void anylock__jobs_drain(anylock_lock *lock)
{
    anylock_client *c = lock->client;
    anylock__renewer *r = &c->renewer;
    lock->dead = 1;
    heap_remove(r, lock);
    anylock__job **p = &r->jobs, *last = NULL;
    while (*p) {
        anylock__job *j = *p;
        if (j->lock == lock) {
            *p = j->next;
            lock->jobs--;
            r->njobs--;
            free(j);
        } else {
            last = j;
            p = &j->next;
        }
    }
    r->jobs_tail = last;
    while (lock->jobs > 0)
        pthread_cond_wait(&r->idle, &c->mu);
}

/* ---- the scheduler ------------------------------------------------------ */

/* A lease whose end came: lost, with the last renewal's failure if any. */
static void lease_ended(anylock_lock *lock)
{
    anylock_status why;
    char msg[ANYLOCK_ERRMSG_MAX];
    if (lock->renewing) {
        why = ANYLOCK_TIMEOUT;
        anylock__format(msg, "lock \"%.64s\": its expiry passed while a renewal got no answer from the store",
                        lock->name);
    } else if (lock->renew_status != ANYLOCK_OK) {
        why = lock->renew_status;
        anylock__format(msg, "lock \"%.64s\": its expiry passed without a successful renewal (%.160s)", lock->name,
                        lock->renew_msg[0] ? lock->renew_msg : anylock_strerror(why));
    } else {
        why = ANYLOCK_NOT_HELD;
        anylock__format(msg, "lock \"%.64s\": its expiry passed", lock->name);
    }
    anylock__declare_lost(lock, why, msg);
}

static void attend(anylock_lock *lock, int64_t now)
{
    anylock_client *c = lock->client;
    if (lock->state != LS_HELD)
        return;
    if (now >= lock->lost_at) {
        lease_ended(lock);
        return;
    }
    if (!lock->renewing && lock->renew_due <= now) {
        if (!c->backend->extend) {
            /* A session-bound store without extend: the expiry is kept
             * here alone, for as long as this process lives. */
            set_lease(lock, now, lock->lease_ms);
            anylock__log_later(ANYLOCK_LOG_DEBUG, ANYLOCK_EVENT_RENEWED, c, lock, ANYLOCK_OK,
                               (double)lock->lease_ms / 1000.0, "renewed \"%.64s\"", lock->name);
        } else {
            lock->renewing = 1;
            queue_job(lock, JOB_RENEW);
        }
    }
    lock->due = due_of(lock);
    if (heap_put(&c->renewer, lock) != 0)
        lease_ended(lock);
}

static void *scheduler_main(void *arg)
{
    anylock_client *c = arg;
    anylock__renewer *r = &c->renewer;
    pthread_mutex_lock(&c->mu);
    while (!r->stopping) {
        int64_t now = anylock_now_ns();
        int attended = 0;
        while (r->nheap && r->heap[0]->due <= now) {
            anylock_lock *lock = r->heap[0];
            heap_remove(r, lock);
            attend(lock, now);
            attended = 1;
        }
        if (attended) {
            /* What attending logged goes out with the mutex let go; then
             * look again, since the schedule may have changed meanwhile. */
            pthread_mutex_unlock(&c->mu);
            anylock__log_flush(0);
            pthread_mutex_lock(&c->mu);
            continue;
        }
        int64_t next = r->nheap ? r->heap[0]->due : ANYLOCK_DEADLINE_NEVER;
        anylock_cond_wait_until(&r->wake, &c->mu, next);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* ---- the jobs ------------------------------------------------------------ */

/* The outcome of a renewal of the acquisition the job was for. */
static void settle(anylock_lock *lock, anylock_status st, const anylock_op *op, int64_t t0, int64_t lease_ms)
{
    anylock_client *c = lock->client;
    int64_t now = anylock_now_ns();
    if (st == ANYLOCK_OK) {
        set_lease(lock, op->granted_at ? op->granted_at : t0, lease_ms);
        lock->renew_status = ANYLOCK_OK;
        lock->renew_msg[0] = '\0';
        anylock__log_later(ANYLOCK_LOG_DEBUG, ANYLOCK_EVENT_RENEWED, c, lock, ANYLOCK_OK, (double)lease_ms / 1000.0,
                           "renewed \"%.64s\"", lock->name);
    } else if (st == ANYLOCK_NOT_HELD || st == ANYLOCK_NOT_EXPIRABLE) {
        anylock__declare_lost(lock, ANYLOCK_NOT_HELD, op->errbuf[0] ? op->errbuf : "the store no longer has it");
        return;
    } else {
        lock->renew_status = st;
        anylock__format(lock->renew_msg, "%s", op->errbuf[0] ? op->errbuf : anylock_strerror(st));
        anylock__log_later(ANYLOCK_LOG_WARNING, ANYLOCK_EVENT_RENEWAL_FAILED, c, lock, st, 0,
                           "renewing \"%.64s\" failed: %s", lock->name, lock->renew_msg);
        /* Try again soon, but not past the lease. */
        int64_t retry = lease_ms / 10;
        retry = retry < 20 ? 20 : retry > 1000 ? 1000 : retry;
        lock->renew_due = now + retry * MS;
    }
    if (now >= lock->lost_at) {
        lease_ended(lock);
        return;
    }
    lock->due = due_of(lock);
    if (heap_put(&c->renewer, lock) != 0)
        lease_ended(lock);
    pthread_cond_signal(&c->renewer.wake);
}

/* Takes lock->mu for a job (client->mu held on entry and return): 0 if the
 * job still applies. */
static int job_begin(anylock__job *j)
{
    anylock_lock *lock = j->lock;
    anylock_client *c = lock->client;
    if (lock->dead)
        return -1;
    pthread_mutex_unlock(&c->mu);
    pthread_mutex_lock(&lock->mu);
    pthread_mutex_lock(&c->mu);
    if (lock->dead || lock->gen != j->gen) {
        pthread_mutex_unlock(&lock->mu);
        return -1;
    }
    return 0;
}

static void run_renew(anylock__job *j)
{
    anylock_lock *lock = j->lock;
    anylock_client *c = lock->client;
    if (job_begin(j) != 0) {
        if (lock->gen == j->gen)
            lock->renewing = 0;
        return;
    }
    if (lock->state != LS_HELD) {
        lock->renewing = 0;
        pthread_mutex_unlock(&lock->mu);
        return;
    }
    int64_t lease_ms = lock->lease_ms;
    int64_t deadline = lock->lost_at;
    pthread_mutex_unlock(&c->mu);

    char errbuf[ANYLOCK_ERRMSG_MAX];
    anylock_op op;
    anylock__op_init(&op, c, lock, errbuf);
    op.expires_ms = lease_ms;
    op.deadline = deadline;
    int64_t t0 = anylock_now_ns();
    anylock_status st = c->backend->extend(&op);

    pthread_mutex_lock(&c->mu);
    lock->renewing = 0;
    /* Declared lost while the renewal was out: its answer no longer
     * matters (the cleanup releases what it may have extended). */
    if (lock->state == LS_HELD && lock->gen == j->gen)
        settle(lock, st, &op, t0, lease_ms);
    pthread_mutex_unlock(&lock->mu);
}

static void run_cleanup(anylock__job *j)
{
    anylock_lock *lock = j->lock;
    anylock_client *c = lock->client;
    if (job_begin(j) != 0)
        return;
    if (lock->state != LS_LOST || !lock->cleanup_pending) {
        pthread_mutex_unlock(&lock->mu);
        return;
    }
    lock->cleanup_pending = 0;
    pthread_mutex_unlock(&c->mu);
    char errbuf[ANYLOCK_ERRMSG_MAX];
    anylock_op op;
    anylock__op_init(&op, c, lock, errbuf);
    anylock_status st = c->backend->release(&op);
    anylock__log(ANYLOCK_LOG_DEBUG, ANYLOCK_EVENT_MESSAGE, c, lock, st, 0,
                 "after losing \"%.64s\", releasing it in the store: %s", lock->name,
                 st == ANYLOCK_OK ? "released" : errbuf[0] ? errbuf : anylock_strerror(st));
    pthread_mutex_lock(&c->mu);
    pthread_mutex_unlock(&lock->mu);
}

/* Returns 1 if the lock was freed (by its own callback). */
static int run_deliver(anylock__job *j)
{
    anylock_lock *lock = j->lock;
    anylock_client *c = lock->client;
    if (lock->dead || !lock->deliver_pending)
        return 0;
    lock->deliver_pending = 0;
    lock->delivering = 1;
    anylock_lost_fn fn = lock->lost_fn;
    void *ud = lock->lost_userdata;
    anylock_status why = lock->lost_status;
    pthread_mutex_unlock(&c->mu);
    if (fn) {
        const anylock_lock *outer = delivering_now;
        int outer_called = callback_called;
        delivering_now = lock;
        callback_called = 0;
        fn(lock, why, ud);
        delivering_now = outer;
        callback_called = outer_called;
    }
    pthread_mutex_lock(&c->mu);
    lock->delivering = 0;
    if (!lock->free_requested)
        return 0;
    /* anylock_lock_free() was called from the callback: it released the
     * lock; the rest of the free happens here, now that the callback is
     * done with the handle. */
    lock->jobs--;
    pthread_mutex_unlock(&c->mu);
    pthread_mutex_lock(&lock->mu);
    if (c->backend->version >= 2 && c->backend->forget) {
        char errbuf[ANYLOCK_ERRMSG_MAX];
        anylock_op op;
        anylock__op_init(&op, c, lock, errbuf);
        c->backend->forget(&op);
    }
    pthread_mutex_unlock(&lock->mu);
    pthread_mutex_lock(&c->mu);
    anylock__jobs_drain(lock);
    c->nlocks--;
    c->nfreeing--;
    anylock__lock_destroy(lock);
    return 1;
}

static void *worker_main(void *arg)
{
    anylock_client *c = arg;
    anylock__renewer *r = &c->renewer;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!r->jobs && !r->stopping) {
            r->nidle++;
            pthread_cond_wait(&r->work, &c->mu);
            r->nidle--;
        }
        if (!r->jobs)
            break;
        anylock__job *j = r->jobs;
        r->jobs = j->next;
        r->njobs--;
        if (!r->jobs)
            r->jobs_tail = NULL;
        anylock_lock *lock = j->lock;
        int freed = 0;
        switch (j->kind) {
        case JOB_RENEW:
            run_renew(j);
            break;
        case JOB_CLEANUP:
            run_cleanup(j);
            break;
        case JOB_DELIVER:
            freed = run_deliver(j);
            break;
        }
        if (!freed) {
            /* The job's reference still keeps the lock alive. */
            pthread_mutex_unlock(&c->mu);
            anylock__log_flush(1);
            pthread_mutex_lock(&c->mu);
            lock->jobs--;
        } else {
            pthread_mutex_unlock(&c->mu);
            anylock__log_flush(0);
            pthread_mutex_lock(&c->mu);
        }
        free(j);
        pthread_cond_broadcast(&r->idle);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

void anylock__renewer_shutdown(anylock_client *c)
{
    anylock__renewer *r = &c->renewer;
    pthread_mutex_lock(&c->mu);
    int started = r->started;
    r->stopping = 1;
    pthread_cond_broadcast(&r->wake);
    pthread_cond_broadcast(&r->work);
    size_t n = r->nworkers;
    pthread_mutex_unlock(&c->mu);
    if (started)
        pthread_join(r->scheduler, NULL);
    for (size_t i = 0; i < n; i++)
        pthread_join(r->workers[i], NULL);
    free(r->workers);
    free(r->heap);
    r->workers = NULL;
    r->heap = NULL;
    r->nworkers = r->capworkers = r->nheap = r->capheap = 0;
    r->started = 0;
}

void anylock__lease_set(anylock_lock *lock, int64_t granted, int64_t lease_ms)
{
    set_lease(lock, granted, lease_ms);
}
