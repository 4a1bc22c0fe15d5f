/* SPDX-License-Identifier: BSD-2-Clause */
/* The monotonic clock, deadlines, timed waits and polling backoff. */
#include <errno.h>
#include <signal.h>
#include <time.h>

#include "internal.h"

int64_t anylock_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t anylock__deadline(int64_t timeout_ms)
{
    if (timeout_ms == ANYLOCK__MS_FOREVER)
        return ANYLOCK_DEADLINE_NEVER;
    if (timeout_ms == 0)
        return 0;
    return anylock_now_ns() + timeout_ms * 1000000;
}

int64_t anylock_op_ms_left(const anylock_op *op)
{
    return anylock_ms_until(op->deadline);
}

double anylock__wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int64_t anylock_ms_until(int64_t deadline_ns)
{
    if (deadline_ns == ANYLOCK_DEADLINE_NEVER)
        return INT64_MAX;
    int64_t left = deadline_ns - anylock_now_ns();
    return left <= 0 ? 0 : (left + 999999) / 1000000;
}

int64_t anylock_op_io_deadline(const anylock_op *op, int64_t timeout_ms)
{
    int64_t now = anylock_now_ns();
    int64_t d = timeout_ms >= (ANYLOCK_DEADLINE_NEVER - now) / 1000000 ? ANYLOCK_DEADLINE_NEVER
                                                                        : now + timeout_ms * 1000000;
    if (op && op->deadline != 0 && op->deadline != ANYLOCK_DEADLINE_NEVER && op->deadline < d)
        d = op->deadline;
    return d;
}

int anylock_cond_init(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    int rc = pthread_condattr_init(&attr);
    if (rc)
        return rc;
    rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (!rc)
        rc = pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
    return rc;
}

int anylock_cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *mu, int64_t deadline_ns)
{
    if (deadline_ns == ANYLOCK_DEADLINE_NEVER)
        return pthread_cond_wait(cond, mu);
    struct timespec ts = {.tv_sec = deadline_ns / 1000000000, .tv_nsec = deadline_ns % 1000000000};
    return pthread_cond_timedwait(cond, mu, &ts);
}

static void sleep_ns(int64_t ns)
{
    struct timespec ts = {.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

void anylock_backoff_init(anylock_backoff *b, int64_t first_ms, int64_t ceiling_ms)
{
    b->next_ms = first_ms > 0 ? first_ms : 1;
    b->ceiling_ms = ceiling_ms >= b->next_ms ? ceiling_ms : b->next_ms;
    /* Seeded from the clock and the object's address so that processes and
     * threads started together do not poll in lockstep. */
    b->seed = (uint32_t)anylock_now_ns() ^ (uint32_t)(uintptr_t)b;
}

int anylock_backoff_wait(anylock_backoff *b, int64_t deadline)
{
    int64_t now = anylock_now_ns();
    if (deadline != ANYLOCK_DEADLINE_NEVER && now >= deadline)
        return 0;
    b->seed = b->seed * 1103515245u + 12345u;
    int64_t ns = b->next_ms * 1000000;
    /* Jitter of up to +-25%. */
    int64_t span = ns / 2;
    if (span > 0)
        ns += (int64_t)((b->seed >> 8) % (uint64_t)span) - span / 2;
    if (deadline != ANYLOCK_DEADLINE_NEVER && now + ns > deadline)
        ns = deadline - now;
    sleep_ns(ns);
    b->next_ms = b->next_ms * 2 > b->ceiling_ms ? b->ceiling_ms : b->next_ms * 2;
    return 1;
}

int anylock_thread_create(pthread_t *thread, void *(*start)(void *), void *arg)
{
    /* The new thread inherits the creating thread's mask: block everything
     * around the create, then put the caller's mask back. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(thread, NULL, start, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}
