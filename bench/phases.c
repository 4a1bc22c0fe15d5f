/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The measurements, through anylock's public API only.
 *
 * Workers.  Stores shared between processes are measured with worker
 * processes (fork), each opening its own client after the fork, so that what
 * is measured is what separate programs see.  memory:// locks live inside one
 * process, so its workers are threads, each with its own client.  The parent
 * holds no client and no store connection while it forks.
 *
 * Synchronisation between workers uses pipes (a blocked reader burns no CPU
 * and disturbs no measurement); figures travel back through a shared
 * anonymous mapping.  Every read of a pipe is bounded, so a worker that dies
 * cannot hang the benchmark.  Times are CLOCK_MONOTONIC, which is one clock
 * for every process of the host on Linux.
 */
/* RUSAGE_THREAD (Linux) lets a waiter thread measure itself alone. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "anylock.h"
#include "bench.h"

/* ---- clock and statistics ----------------------------------------------- */

int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void bench_sleep_ns(int64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int bench_samples_add(bench_samples *s, double us)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        double *v = realloc(s->v, cap * sizeof *v);
        if (!v)
            return -1;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = us;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_samples_quantile(bench_samples *s, double q)
{
    if (!s->n)
        return NAN;
    qsort(s->v, s->n, sizeof *s->v, cmp_double);
    size_t rank = (size_t)ceil(q * (double)s->n);
    return s->v[rank ? rank - 1 : 0];
}

void bench_samples_free(bench_samples *s)
{
    free(s->v);
    memset(s, 0, sizeof *s);
}

/* ---- workers -------------------------------------------------------------- */

typedef int (*worker_fn)(int index, void *arg);

typedef struct worker {
    int threaded;
    pid_t pid;
    pthread_t thread;
    worker_fn fn;
    int index;
    void *arg;
    int result;
} worker;

static void *thread_main(void *p)
{
    worker *w = p;
    w->result = w->fn(w->index, w->arg);
    return NULL;
}

static int worker_start(worker *w, int threaded, worker_fn fn, int index, void *arg)
{
    memset(w, 0, sizeof *w);
    w->threaded = threaded;
    w->fn = fn;
    w->index = index;
    w->arg = arg;
    if (threaded)
        return pthread_create(&w->thread, NULL, thread_main, w) == 0 ? 0 : -1;
    fflush(NULL);
    w->pid = fork();
    if (w->pid < 0)
        return -1;
    if (w->pid == 0)
        _exit(fn(index, arg));
    return 0;
}

/* Waits for the worker; a process still running at deadline is killed.
 * Threads end on their own: every wait they make is bounded. */
static int worker_join(worker *w, int64_t deadline)
{
    if (w->threaded) {
        pthread_join(w->thread, NULL);
        return w->result;
    }
    for (;;) {
        int status;
        pid_t got = waitpid(w->pid, &status, WNOHANG);
        if (got == w->pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        if (got < 0 && errno != EINTR)
            return -1;
        if (bench_now_ns() > deadline) {
            kill(w->pid, SIGKILL);
            waitpid(w->pid, &status, 0);
            return 137;
        }
        bench_sleep_ns(2000000);
    }
}

/* Every phase's shared block starts with this. */
typedef struct shared_head {
    atomic_int failed;
    char error[400];
} shared_head;

static void *shared_alloc(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void shared_fail(shared_head *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void shared_fail(shared_head *h, const char *fmt, ...)
{
    int expected = 0;
    if (!atomic_compare_exchange_strong(&h->failed, &expected, 1))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->error, sizeof h->error, fmt, ap);
    va_end(ap);
}

/* Reads one byte, waiting at most timeout_ms; the byte, or -1. */
static int read_byte(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int64_t end = bench_now_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        int left = (int)((end - bench_now_ns()) / 1000000);
        if (left < 0)
            return -1;
        int rc = poll(&p, 1, left);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            return -1;
        unsigned char c;
        ssize_t n = read(fd, &c, 1);
        if (n == 1)
            return c;
        if (n < 0 && errno == EINTR)
            continue;
        return -1;
    }
}

static int write_byte(int fd, int c)
{
    unsigned char b = (unsigned char)c;
    for (;;) {
        ssize_t n = write(fd, &b, 1);
        if (n == 1)
            return 0;
        if (n < 0 && errno == EINTR)
            continue;
        return -1;
    }
}

/* What every worker needs to reach the store. */
typedef struct store_ctx {
    const char *url;
    char name[128];
    const bench_options *o;
} store_ctx;

/* Opens a client and a lock handle on ctx->name with the given expiry and
 * wait timeout; 0, or -1 with the reason recorded in h. */
static int open_lock(const store_ctx *ctx, shared_head *h, double expires, double timeout, anylock_client **c,
                     anylock_lock **l)
{
    *l = NULL;
    anylock_status st = anylock_open(ctx->url, c);
    if (st != ANYLOCK_OK) {
        shared_fail(h, "open: %s: %s", anylock_status_name(st), *c ? anylock_errmsg(*c) : "out of memory");
        anylock_close(*c);
        *c = NULL;
        return -1;
    }
    if ((st = anylock_lock_new(*c, ctx->name, l)) != ANYLOCK_OK || (st = anylock_lock_set_expires(*l, expires)) ||
        (st = anylock_lock_set_timeout(*l, timeout))) {
        shared_fail(h, "lock setup: %s: %s", anylock_status_name(st), anylock_errmsg(*c));
        anylock_lock_free(*l);
        anylock_close(*c);
        *c = NULL;
        *l = NULL;
        return -1;
    }
    return 0;
}

static void close_lock(anylock_client *c, anylock_lock *l)
{
    anylock_lock_free(l);
    anylock_close(c);
}

static int is_threaded(const char *url, const bench_options *o)
{
    return o->force_threads || !strncmp(url, "memory:", 7);
}

static void progress(const bench_options *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void progress(const bench_options *o, const char *fmt, ...)
{
    if (o->quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fflush(stderr);
}

/* ---- uncontended ---------------------------------------------------------- */

/* Pairs are measured in blocks, alternating with blocks of floor pairs, so
 * that a slow moment of the machine hits both alike. */
#define BLOCK 100

static int floor_block(bench_floor *f, int n, bench_samples *pair, bench_samples *rt, double *busy_s, char *err,
                       size_t errsize)
{
    int trips = bench_floor_trips_per_pair(f);
    for (int i = 0; i < n; i++) {
        int64_t t0 = bench_now_ns(), prev = t0;
        for (int k = 0; k < trips; k++) {
            if (bench_floor_round_trip(f, err, errsize) != 0)
                return -1;
            int64_t t = bench_now_ns();
            if (rt && bench_samples_add(rt, (double)(t - prev) / 1e3)) {
                snprintf(err, errsize, "out of memory");
                return -1;
            }
            prev = t;
        }
        if (pair && bench_samples_add(pair, (double)(prev - t0) / 1e3)) {
            snprintf(err, errsize, "out of memory");
            return -1;
        }
        *busy_s += (double)(prev - t0) / 1e9;
    }
    return 0;
}

static int lock_block(anylock_lock *l, int n, bench_samples *pair, double *busy_s, char *err, size_t errsize)
{
    for (int i = 0; i < n; i++) {
        int64_t t0 = bench_now_ns();
        anylock_status st = anylock_acquire(l);
        if (st != ANYLOCK_OK) {
            snprintf(err, errsize, "acquire: %s: %s", anylock_status_name(st), anylock_lock_errmsg(l));
            return -1;
        }
        st = anylock_release(l);
        if (st != ANYLOCK_OK) {
            snprintf(err, errsize, "release: %s: %s", anylock_status_name(st), anylock_lock_errmsg(l));
            return -1;
        }
        int64_t t1 = bench_now_ns();
        if (pair && bench_samples_add(pair, (double)(t1 - t0) / 1e3)) {
            snprintf(err, errsize, "out of memory");
            return -1;
        }
        *busy_s += (double)(t1 - t0) / 1e9;
    }
    return 0;
}

static int phase_uncontended(const store_ctx *ctx, bench_result *r)
{
    const bench_options *o = ctx->o;
    char ferr[256] = "";
    bench_floor *f = bench_floor_open(ctx->url, ferr, sizeof ferr);
    if (f)
        snprintf(r->floor_command, sizeof r->floor_command, "%s", bench_floor_command(f));
    else
        progress(o, "  no floor: %s\n", ferr);

    shared_head h = {0};
    anylock_client *c;
    anylock_lock *l;
    if (open_lock(ctx, &h, ANYLOCK_DEFAULT_EXPIRES, 5.0, &c, &l) != 0) {
        snprintf(r->error, sizeof r->error, "uncontended: %s", h.error);
        bench_floor_close(f);
        return -1;
    }
    bench_samples ours = {0}, fpair = {0}, frt = {0};
    double ours_s = 0, floor_s = 0, warm = 0;
    char err[400] = "";
    int rc = 0;
    /* Warm up both: connections, scripts, caches, page faults. */
    if (lock_block(l, BLOCK, NULL, &warm, err, sizeof err) != 0 ||
        (f && floor_block(f, BLOCK, NULL, NULL, &warm, err, sizeof err) != 0))
        rc = -1;
    int64_t end = bench_now_ns() + (int64_t)(o->uncontended_seconds * 1e9);
    while (rc == 0 && (bench_now_ns() < end || !ours.n)) {
        if (f && floor_block(f, BLOCK, &fpair, &frt, &floor_s, err, sizeof err) != 0)
            rc = -1;
        else if (lock_block(l, BLOCK, &ours, &ours_s, err, sizeof err) != 0)
            rc = -1;
    }
    if (rc != 0)
        snprintf(r->error, sizeof r->error, "uncontended: %s", err);
    r->pairs = ours.n;
    r->pairs_per_s = ours_s > 0 ? (double)ours.n / ours_s : NAN;
    r->pair_us_p50 = bench_samples_quantile(&ours, 0.50);
    r->pair_us_p99 = bench_samples_quantile(&ours, 0.99);
    r->floor_pairs = fpair.n;
    r->floor_pairs_per_s = floor_s > 0 ? (double)fpair.n / floor_s : NAN;
    r->floor_pair_us_p50 = bench_samples_quantile(&fpair, 0.50);
    r->floor_pair_us_p99 = bench_samples_quantile(&fpair, 0.99);
    r->floor_round_trip_us_p50 = bench_samples_quantile(&frt, 0.50);
    r->floor_round_trip_us_p99 = bench_samples_quantile(&frt, 0.99);
    r->ratio_pairs_per_s = r->pairs_per_s / r->floor_pairs_per_s;
    r->ratio_pair_p50 = r->floor_pair_us_p50 / r->pair_us_p50;
    r->pair_round_trips = f ? bench_floor_pair_round_trips(f) : NAN;
    r->ratio_per_round_trip = f ? r->ratio_pairs_per_s * r->pair_round_trips / bench_floor_trips_per_pair(f) : NAN;
    bench_samples_free(&ours);
    bench_samples_free(&fpair);
    bench_samples_free(&frt);
    close_lock(c, l);
    bench_floor_close(f);
    return rc;
}

/* ---- hand-off --------------------------------------------------------------- */

/*
 * Two workers pass the lock back and forth.  In round i the holder is worker
 * i % 2: the other worker tells it (one byte on its pipe) that it is about to
 * call anylock_acquire(), the holder keeps the lock for handoff_hold_ms more
 * (so that the waiter is really blocked in its wait), releases, and notes the
 * time release returned; the waiter notes the time its acquire returned, says
 * so to the holder (which must not barge back in before), and holds the lock
 * for the next round.
 */
typedef struct handoff_shared {
    shared_head h;
    atomic_int rounds;
    int64_t *t_release, *t_acquire; /* point into this mapping */
    int64_t *t_release_start;       /* when release was called */
} handoff_shared;

typedef struct handoff_arg {
    store_ctx ctx;
    handoff_shared *sh;
    int pipes[2][2]; /* pipes[i]: bytes to worker i */
    int max;
    int64_t stop_at;
} handoff_arg;

static int handoff_worker(int me, void *p)
{
    handoff_arg *a = p;
    handoff_shared *sh = a->sh;
    int other = 1 - me;
    int hold_timeout_ms = 30000;
    anylock_client *c;
    anylock_lock *l;
    if (open_lock(&a->ctx, &sh->h, 30.0, 20.0, &c, &l) != 0) {
        write_byte(a->pipes[other][1], 'E');
        return 1;
    }
    anylock_status st;
    if (me == 0 && (st = anylock_acquire(l)) != ANYLOCK_OK) {
        shared_fail(&sh->h, "first acquire: %s: %s", anylock_status_name(st), anylock_lock_errmsg(l));
        write_byte(a->pipes[other][1], 'E');
        close_lock(c, l);
        return 1;
    }
    /* Worker 1 starts only once worker 0 holds the lock. */
    if (me == 0)
        write_byte(a->pipes[other][1], 'R');
    else if (read_byte(a->pipes[me][0], hold_timeout_ms) != 'R') {
        close_lock(c, l);
        return 1;
    }
    int rc = 0;
    for (int i = 0;; i++) {
        if (me == i % 2) {
            int b = read_byte(a->pipes[me][0], hold_timeout_ms);
            if (b != 'A' && b != 'S') {
                if (b != 'E')
                    shared_fail(&sh->h, "hand-off: the other worker did not answer");
                rc = 1;
                break;
            }
            if (b == 'A')
                bench_sleep_ns((int64_t)(a->ctx.o->handoff_hold_ms * 1e6));
            int64_t t0 = bench_now_ns();
            st = anylock_release(l);
            int64_t t = bench_now_ns();
            if (st != ANYLOCK_OK) {
                shared_fail(&sh->h, "release: %s: %s", anylock_status_name(st), anylock_lock_errmsg(l));
                rc = 1;
                break;
            }
            if (b == 'S')
                break;
            sh->t_release[i] = t;
            sh->t_release_start[i] = t0;
            /* Wait until the waiter has the lock: taking it again at once
             * would barge in ahead of the waiter and measure nothing. */
            if ((b = read_byte(a->pipes[me][0], hold_timeout_ms)) != 'G') {
                if (b != 'E')
                    shared_fail(&sh->h, "hand-off: the waiter did not get the lock in time");
                rc = 1;
                break;
            }
        } else {
            /* The waiter decides when to stop, before it starts waiting. */
            if (i >= a->max || bench_now_ns() > a->stop_at) {
                atomic_store(&sh->rounds, i);
                write_byte(a->pipes[other][1], 'S');
                break;
            }
            write_byte(a->pipes[other][1], 'A');
            st = anylock_acquire(l);
            sh->t_acquire[i] = bench_now_ns();
            if (st != ANYLOCK_OK) {
                shared_fail(&sh->h, "hand-off acquire: %s: %s", anylock_status_name(st), anylock_lock_errmsg(l));
                write_byte(a->pipes[other][1], 'E');
                rc = 1;
                break;
            }
            write_byte(a->pipes[other][1], 'G');
        }
    }
    close_lock(c, l);
    return rc;
}

static int phase_handoff(const store_ctx *ctx, bench_result *r)
{
    const bench_options *o = ctx->o;
    int max = o->handoffs;
    size_t size = sizeof(handoff_shared) + 3 * (size_t)max * sizeof(int64_t);
    handoff_shared *sh = shared_alloc(size);
    if (!sh) {
        snprintf(r->error, sizeof r->error, "hand-off: out of memory");
        return -1;
    }
    sh->t_release = (int64_t *)(sh + 1);
    sh->t_acquire = sh->t_release + max;
    sh->t_release_start = sh->t_acquire + max;
    handoff_arg a = {.ctx = *ctx, .sh = sh, .max = max};
    snprintf(a.ctx.name, sizeof a.ctx.name, "%.80s-handoff", ctx->name);
    a.stop_at = bench_now_ns() + (int64_t)(o->handoff_max_seconds * 1e9);
    if (pipe(a.pipes[0]) || pipe(a.pipes[1])) {
        snprintf(r->error, sizeof r->error, "hand-off: pipe: %s", strerror(errno));
        munmap(sh, size);
        return -1;
    }
    int threaded = is_threaded(ctx->url, o);
    worker w[2];
    int started = 0;
    for (; started < 2; started++)
        if (worker_start(&w[started], threaded, handoff_worker, started, &a) != 0)
            break;
    int failed = started < 2;
    if (failed) {
        shared_fail(&sh->h, "cannot start a worker: %s", strerror(errno));
        for (int i = 0; i < 2; i++)
            write_byte(a.pipes[i][1], 'E');
    }
    int64_t deadline = a.stop_at + (int64_t)60e9;
    for (int i = 0; i < started; i++)
        failed |= worker_join(&w[i], deadline) != 0;
    for (int i = 0; i < 2; i++) {
        close(a.pipes[i][0]);
        close(a.pipes[i][1]);
    }
    bench_samples s = {0}, s0 = {0};
    int rounds = atomic_load(&sh->rounds);
    if (!failed)
        for (int i = 0; i < rounds; i++) {
            bench_samples_add(&s, (double)(sh->t_acquire[i] - sh->t_release[i]) / 1e3);
            bench_samples_add(&s0, (double)(sh->t_acquire[i] - sh->t_release_start[i]) / 1e3);
        }
    r->handoff_start_us_p50 = bench_samples_quantile(&s0, 0.50);
    r->handoff_start_us_p99 = bench_samples_quantile(&s0, 0.99);
    bench_samples_free(&s0);
    r->handoffs = (int)s.n;
    r->handoff_hold_ms = o->handoff_hold_ms;
    /* The floor of a hand-off: one round trip after the same idle hold,
     * when the store and this process wake from the sleep a hand-off
     * starts with (on a busy or power-saving machine far slower than the
     * back-to-back round trips of the uncontended floor). */
    char ferr[256];
    bench_floor *f = failed ? NULL : bench_floor_open(ctx->url, ferr, sizeof ferr);
    if (f) {
        bench_samples cold = {0};
        int n = rounds < 50 ? rounds : 50;
        for (int i = 0; i < n; i++) {
            bench_sleep_ns((int64_t)(o->handoff_hold_ms * 1e6));
            int64_t t0 = bench_now_ns();
            if (bench_floor_round_trip(f, ferr, sizeof ferr) != 0)
                break;
            bench_samples_add(&cold, (double)(bench_now_ns() - t0) / 1e3);
        }
        r->floor_idle_round_trip_us_p50 = bench_samples_quantile(&cold, 0.50);
        bench_samples_free(&cold);
        bench_floor_close(f);
    }
    /* The same hand-offs made with the store's own simplest protocol. */
    bench_samples fh = {0};
    int frc = failed ? 1 : bench_floor_handoffs(ctx->url, rounds, o->handoff_hold_ms, &fh, ferr, sizeof ferr);
    if (frc == 0)
        r->floor_handoff_start_us_p50 = bench_samples_quantile(&fh, 0.50);
    else if (frc < 0)
        progress(o, "  %s\n", ferr);
    bench_samples_free(&fh);
    r->handoff_us_p50 = bench_samples_quantile(&s, 0.50);
    r->handoff_us_p99 = bench_samples_quantile(&s, 0.99);
    r->handoff_us_max = bench_samples_quantile(&s, 1.0);
    bench_samples_free(&s);
    if (failed)
        snprintf(r->error, sizeof r->error, "hand-off: %s", sh->h.error[0] ? sh->h.error : "a worker failed");
    munmap(sh, size);
    return failed ? -1 : 0;
}

/* ---- a waiter's CPU during a long hold ------------------------------------- */

typedef struct cpu_shared {
    shared_head h;
    int64_t t_release, t_wait_start, t_acquired;
    double user_s, sys_s;
} cpu_shared;

typedef struct cpu_arg {
    store_ctx ctx;
    cpu_shared *sh;
    int to_parent[2], to_holder[2], to_waiter[2];
    int threaded;
} cpu_arg;

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static int cpu_worker(int me, void *p)
{
    cpu_arg *a = p;
    cpu_shared *sh = a->sh;
    double hold = a->ctx.o->cpu_hold_seconds;
    int wait_ms = (int)(hold * 1000) + 60000;
    anylock_client *c;
    anylock_lock *l;
    if (open_lock(&a->ctx, &sh->h, hold + 60, hold + 30, &c, &l) != 0) {
        write_byte(a->to_parent[1], 'E');
        return 1;
    }
    int rc = 0;
    anylock_status st;
    if (me == 0) { /* the holder */
        if ((st = anylock_acquire(l)) != ANYLOCK_OK) {
            shared_fail(&sh->h, "holder acquire: %s: %s", anylock_status_name(st), anylock_lock_errmsg(l));
            write_byte(a->to_parent[1], 'E');
            close_lock(c, l);
            return 1;
        }
        write_byte(a->to_parent[1], 'H');
        if (read_byte(a->to_holder[0], wait_ms) != 'G')
            rc = 1;
        st = anylock_release(l);
        sh->t_release = bench_now_ns();
        if (st != ANYLOCK_OK) {
            shared_fail(&sh->h, "holder release: %s: %s", anylock_status_name(st), anylock_lock_errmsg(l));
            rc = 1;
        }
    } else { /* the waiter */
        write_byte(a->to_parent[1], 'W');
        if (read_byte(a->to_waiter[0], wait_ms) != 'G') {
            close_lock(c, l);
            return 1;
        }
        /* A process measures itself whole (the backend's threads too); a
         * thread can only measure itself. */
#ifdef RUSAGE_THREAD
        int who = a->threaded ? RUSAGE_THREAD : RUSAGE_SELF;
#else
        int who = RUSAGE_SELF;
#endif
        struct rusage r0, r1;
        getrusage(who, &r0);
        sh->t_wait_start = bench_now_ns();
        st = anylock_acquire(l);
        sh->t_acquired = bench_now_ns();
        getrusage(who, &r1);
        sh->user_s = tv_s(r1.ru_utime) - tv_s(r0.ru_utime);
        sh->sys_s = tv_s(r1.ru_stime) - tv_s(r0.ru_stime);
        if (st != ANYLOCK_OK) {
            shared_fail(&sh->h, "waiter acquire: %s: %s", anylock_status_name(st), anylock_lock_errmsg(l));
            rc = 1;
        } else if ((st = anylock_release(l)) != ANYLOCK_OK) {
            shared_fail(&sh->h, "waiter release: %s: %s", anylock_status_name(st), anylock_lock_errmsg(l));
            rc = 1;
        }
    }
    close_lock(c, l);
    return rc;
}

static int phase_cpu(const store_ctx *ctx, bench_result *r)
{
    const bench_options *o = ctx->o;
    cpu_shared *sh = shared_alloc(sizeof *sh);
    if (!sh) {
        snprintf(r->error, sizeof r->error, "waiter CPU: out of memory");
        return -1;
    }
    cpu_arg a = {.ctx = *ctx, .sh = sh, .threaded = is_threaded(ctx->url, o)};
    snprintf(a.ctx.name, sizeof a.ctx.name, "%.80s-cpu", ctx->name);
    if (pipe(a.to_parent) || pipe(a.to_holder) || pipe(a.to_waiter)) {
        snprintf(r->error, sizeof r->error, "waiter CPU: pipe: %s", strerror(errno));
        munmap(sh, sizeof *sh);
        return -1;
    }
    worker w[2];
    int started = 0;
    for (; started < 2; started++)
        if (worker_start(&w[started], a.threaded, cpu_worker, started, &a) != 0)
            break;
    int failed = started < 2;
    /* Both report in, in either order: 'H' the holder has the lock, 'W' the
     * waiter is ready. */
    for (int i = 0; !failed && i < 2; i++) {
        int b = read_byte(a.to_parent[0], 60000);
        failed = b != 'H' && b != 'W';
    }
    if (!failed) {
        write_byte(a.to_waiter[1], 'G');
        bench_sleep_ns((int64_t)(o->cpu_hold_seconds * 1e9));
    }
    /* 'G' releases the holder; anything else makes a waiting worker give up. */
    write_byte(a.to_holder[1], failed ? 'E' : 'G');
    if (failed)
        write_byte(a.to_waiter[1], 'E');
    int64_t deadline = bench_now_ns() + (int64_t)(o->cpu_hold_seconds * 1e9) + (int64_t)90e9;
    for (int i = 0; i < started; i++)
        failed |= worker_join(&w[i], deadline) != 0;
    int *fds[] = {a.to_parent, a.to_holder, a.to_waiter};
    for (int i = 0; i < 3; i++) {
        close(fds[i][0]);
        close(fds[i][1]);
    }
    if (!failed) {
        r->cpu_hold_s = (double)(sh->t_acquired - sh->t_wait_start) / 1e9;
        r->cpu_user_s = sh->user_s;
        r->cpu_sys_s = sh->sys_s;
        r->cpu_core_percent = 100.0 * (sh->user_s + sh->sys_s) / r->cpu_hold_s;
        r->cpu_wake_us = (double)(sh->t_acquired - sh->t_release) / 1e3;
    } else {
        snprintf(r->error, sizeof r->error, "waiter CPU: %s", sh->h.error[0] ? sh->h.error : "a worker failed");
    }
    munmap(sh, sizeof *sh);
    return failed ? -1 : 0;
}

/* ---- contended ------------------------------------------------------------------ */

typedef struct contended_shared {
    shared_head h;
    int64_t end;
    atomic_int inside, most_inside;
    atomic_ullong overlaps;
    uint64_t counts[]; /* one per worker */
} contended_shared;

typedef struct contended_arg {
    store_ctx ctx;
    contended_shared *sh;
    int ready[2], go[2];
    anylock_mode mode;
    unsigned permits;
} contended_arg;

static int contended_worker(int me, void *p)
{
    contended_arg *a = p;
    contended_shared *sh = a->sh;
    double secs = a->ctx.o->contended_seconds;
    anylock_client *c;
    anylock_lock *l;
    if (open_lock(&a->ctx, &sh->h, secs + 60, secs + 30, &c, &l) != 0) {
        write_byte(a->ready[1], 'E');
        return 1;
    }
    anylock_status mst = a->mode == ANYLOCK_SEMAPHORE ? anylock_lock_set_permits(l, a->permits)
                                                      : anylock_lock_set_mode(l, a->mode);
    if (mst != ANYLOCK_OK) {
        shared_fail(&sh->h, "mode: %s: %s", anylock_status_name(mst), anylock_lock_errmsg(l));
        close_lock(c, l);
        write_byte(a->ready[1], 'E');
        return 1;
    }
    /* How many may be inside at once (0: any number, shared). */
    int limit = a->mode == ANYLOCK_SEMAPHORE ? (int)a->permits : a->mode == ANYLOCK_SHARED ? 0 : 1;
    write_byte(a->ready[1], 'R');
    if (read_byte(a->go[0], 120000) != 'G') {
        close_lock(c, l);
        return 1;
    }
    uint64_t count = 0;
    int rc = 0;
    while (bench_now_ns() < sh->end) {
        anylock_status st = anylock_acquire(l);
        int64_t t = bench_now_ns();
        if (st != ANYLOCK_OK) {
            shared_fail(&sh->h, "acquire: %s: %s", anylock_status_name(st), anylock_lock_errmsg(l));
            rc = 1;
            break;
        }
        /* The critical section: count, and check that no more are in than
         * the mode admits. */
        int in = atomic_fetch_add(&sh->inside, 1) + 1;
        if (limit && in > limit)
            atomic_fetch_add(&sh->overlaps, 1);
        for (int most = atomic_load(&sh->most_inside); in > most;)
            if (atomic_compare_exchange_weak(&sh->most_inside, &most, in))
                break;
        if (t <= sh->end)
            count++;
        atomic_fetch_sub(&sh->inside, 1);
        if ((st = anylock_release(l)) != ANYLOCK_OK) {
            shared_fail(&sh->h, "release: %s: %s", anylock_status_name(st), anylock_lock_errmsg(l));
            rc = 1;
            break;
        }
    }
    sh->counts[me] = count;
    close_lock(c, l);
    return rc;
}

static int phase_contended(const store_ctx *ctx, int n, anylock_mode mode, unsigned permits, bench_contended *out,
                           char *err, size_t errsize)
{
    const bench_options *o = ctx->o;
    size_t size = sizeof(contended_shared) + (size_t)n * sizeof(uint64_t);
    contended_shared *sh = shared_alloc(size);
    worker *w = calloc((size_t)n, sizeof *w);
    if (!sh || !w) {
        snprintf(err, errsize, "out of memory");
        if (sh)
            munmap(sh, size);
        free(w);
        return -1;
    }
    contended_arg a = {.ctx = *ctx, .sh = sh, .mode = mode, .permits = permits};
    snprintf(a.ctx.name, sizeof a.ctx.name, "%.80s-contended-%d-%d", ctx->name, n, (int)mode);
    if (pipe(a.ready) || pipe(a.go)) {
        snprintf(err, errsize, "pipe: %s", strerror(errno));
        munmap(sh, size);
        free(w);
        return -1;
    }
    sh->end = INT64_MAX;
    int threaded = is_threaded(ctx->url, o);
    int started = 0;
    for (; started < n; started++)
        if (worker_start(&w[started], threaded, contended_worker, started, &a) != 0)
            break;
    int failed = started < n;
    for (int i = 0; !failed && i < n; i++)
        failed = read_byte(a.ready[0], 120000) != 'R';
    int64_t start = bench_now_ns();
    sh->end = start + (int64_t)(o->contended_seconds * 1e9);
    /* The pipe's write is the barrier: a worker reads 'G' only after end is
     * set (a write to a pipe orders memory like a mutex handing over). */
    for (int i = 0; i < started; i++)
        write_byte(a.go[1], failed ? 'E' : 'G');
    for (int i = 0; i < started; i++)
        failed |= worker_join(&w[i], sh->end + (int64_t)60e9) != 0;
    close(a.ready[0]);
    close(a.ready[1]);
    close(a.go[0]);
    close(a.go[1]);
    memset(out, 0, sizeof *out);
    out->processes = n;
    out->mode = mode;
    out->permits = permits;
    out->most_inside = atomic_load(&sh->most_inside);
    out->seconds = o->contended_seconds;
    out->fewest = UINT64_MAX;
    for (int i = 0; i < n; i++) {
        uint64_t k = sh->counts[i];
        out->acquisitions += k;
        out->fewest = k < out->fewest ? k : out->fewest;
        out->most = k > out->most ? k : out->most;
    }
    out->mean = (double)out->acquisitions / n;
    out->acquisitions_per_s = (double)out->acquisitions / o->contended_seconds;
    out->overlaps = atomic_load(&sh->overlaps);
    if (failed)
        snprintf(err, errsize, "%s", sh->h.error[0] ? sh->h.error : "a worker failed");
    munmap(sh, size);
    free(w);
    return failed ? -1 : 0;
}

/* The largest worker count as readers of a shared lock, then as holders of
 * a semaphore of BENCH_PERMITS, on a store that has them. */
static int phase_modes(const store_ctx *ctx, bench_result *r)
{
    const bench_options *o = ctx->o;
    if (!o->nnprocs)
        return 0;
    anylock_client *c = NULL;
    unsigned f = anylock_open(ctx->url, &c) == ANYLOCK_OK ? anylock_client_features(c) : 0;
    anylock_close(c);
    int n = o->nprocs[o->nnprocs - 1];
    static const struct {
        anylock_mode mode;
        unsigned feature, permits;
        const char *what;
        size_t offset;
    } modes[] = {
        {ANYLOCK_SHARED, ANYLOCK_FEATURE_SHARED, 0, "readers of a shared lock", offsetof(bench_result, shared)},
        {ANYLOCK_SEMAPHORE, ANYLOCK_FEATURE_SEMAPHORE, BENCH_PERMITS, "holders of a semaphore",
         offsetof(bench_result, semaphore)},
    };
    for (size_t i = 0; i < sizeof modes / sizeof *modes; i++) {
        if (!(f & modes[i].feature))
            continue;
        progress(o, "%s: %d %s %s for %.1f s\n", ctx->url, n, r->threads ? "threads" : "processes", modes[i].what,
                 o->contended_seconds);
        char err[400] = "";
        bench_contended *out = (bench_contended *)((char *)r + modes[i].offset);
        if (phase_contended(ctx, n, modes[i].mode, modes[i].permits, out, err, sizeof err) != 0) {
            snprintf(r->error, sizeof r->error, "%s (%d): %s", modes[i].what, n, err);
            return -1;
        }
    }
    return 0;
}

/* ---- sqlite://: flock(2) beside it, and the file after many names ------------ */

/* flock(2) on the same filesystem: the one-host floor a user could pick
 * instead of sqlite://, uncontended and handed off as the store is. */
static void phase_flock(const store_ctx *ctx, bench_result *r)
{
    char path[4200], err[256];
    if (bench_flock_path(ctx->url, path, sizeof path) != 0)
        return;
    bench_samples pair = {0}, ho = {0};
    int64_t t0 = bench_now_ns();
    int n = 0;
    int ok = bench_flock_pairs(path, BLOCK, NULL, err, sizeof err) == 0;
    while (ok && (bench_now_ns() - t0 < (int64_t)(ctx->o->uncontended_seconds * 1e9 / 4) || n == 0)) {
        ok = bench_flock_pairs(path, BLOCK, &pair, err, sizeof err) == 0;
        n += BLOCK;
    }
    double secs = 0;
    for (size_t i = 0; i < pair.n; i++)
        secs += pair.v[i] / 1e6;
    if (ok)
        ok = bench_flock_handoffs(path, ctx->o->handoffs, ctx->o->handoff_hold_ms, &ho, err, sizeof err) == 0;
    if (ok) {
        r->has_flock = 1;
        r->flock_pairs_per_s = secs > 0 ? (double)pair.n / secs : NAN;
        r->flock_pair_us_p50 = bench_samples_quantile(&pair, 0.5);
        r->flock_handoff_us_p50 = bench_samples_quantile(&ho, 0.5);
    } else {
        progress(ctx->o, "  flock floor: %s\n", err);
    }
    unlink(path);
    bench_samples_free(&pair);
    bench_samples_free(&ho);
}

/* The database file and its WAL, in bytes (what is there). */
static long long sqlite_file_bytes(const char *url)
{
    const char *p = strstr(url, ":///");
    if (!p)
        return -1;
    char path[4200];
    snprintf(path, sizeof path, "%s", p + 4);
    char *q = strchr(path, '?');
    if (q)
        *q = '\0';
    long long total = 0;
    const char *suffix[] = {"", "-wal"};
    for (int i = 0; i < 2; i++) {
        char f[4300];
        struct stat sb;
        snprintf(f, sizeof f, "%s%s", path, suffix[i]);
        if (stat(f, &sb) == 0)
            total += (long long)sb.st_size;
    }
    return total;
}

/* o->names distinct names taken and released one after the other by one
 * client: the file must stay bounded (released rows are deleted, their
 * pages reused). */
static int phase_names(const store_ctx *ctx, bench_result *r)
{
    anylock_client *c = NULL;
    anylock_status st = anylock_open(ctx->url, &c);
    if (st != ANYLOCK_OK) {
        snprintf(r->error, sizeof r->error, "names: open: %s", anylock_errmsg(c));
        anylock_close(c);
        return -1;
    }
    r->file_bytes_before = sqlite_file_bytes(ctx->url);
    int64_t t0 = bench_now_ns();
    int i = 0;
    for (; i < ctx->o->names; i++) {
        char name[200];
        snprintf(name, sizeof name, "%.80s-name-%d", ctx->name, i);
        anylock_lock *l = NULL;
        if ((st = anylock_lock_new(c, name, &l)) != ANYLOCK_OK || (st = anylock_acquire(l)) != ANYLOCK_OK ||
            (st = anylock_release(l)) != ANYLOCK_OK) {
            snprintf(r->error, sizeof r->error, "names: %s: %s", anylock_status_name(st),
                     l ? anylock_lock_errmsg(l) : anylock_errmsg(c));
            anylock_lock_free(l);
            break;
        }
        anylock_lock_free(l);
    }
    r->names = i;
    r->names_seconds = (double)(bench_now_ns() - t0) / 1e9;
    r->file_bytes_after = sqlite_file_bytes(ctx->url);
    anylock_close(c);
    return i == ctx->o->names ? 0 : -1;
}

/* ---- memory and scale ------------------------------------------------------------- */

/*
 * Measured in a process of its own (forked, with the parent's free heap
 * given back to the system first by malloc_trim, so that what the phase
 * allocates shows in its resident size), from /proc/self/statm:
 *   - the store library's own connection: `clients` floor connections
 *     (bench_floor_open: the library's context and socket buffers, nothing
 *     of anylock's), the growth divided by their number;
 *   - one anylock client: `clients` clients opened and each used for one
 *     acquire+release (so that a backend that connects lazily has its
 *     connection), the growth divided by their number; the difference with
 *     the line above is what anylock adds to a connection;
 *   - one held lock: `held` handles on distinct names, each acquired and
 *     kept, on one client, the growth divided by their number;
 *   - scale: acquire+release pairs on one more name, timed with the store
 *     empty and again with `others` names held (the `held` ones and more,
 *     taken by fill_threads clients), and the ratio of the two medians.
 * postgres:// pins a connection (a server session) per held lock, so there
 * both counts are capped at pg_max_held.
 */
typedef struct memory_shared {
    shared_head h;
    int mem_clients, held, others;
    double floor_conn_kib, client_kib, held_lock_kib, held_seconds, fill_per_s;
    double empty_p50, full_p50, empty_pps, full_pps;
} memory_shared;

static double rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (!f)
        return NAN;
    int n = fscanf(f, "%ld %ld", &size, &res);
    fclose(f);
    return n == 2 ? (double)res * (double)sysconf(_SC_PAGESIZE) / 1024.0 : NAN;
}

typedef struct held_set {
    const store_ctx *ctx;
    shared_head *h;
    anylock_client *c;
    anylock_lock **locks;
    int from, to; /* names [from, to) */
    int64_t deadline; /* stop taking more (not a failure) after this */
    int taken;
} held_set;

/* Takes names [from, to) on hs->c, each on a handle of its own, kept; the
 * names taken are [from, from + taken), fewer when the deadline came first. */
static int held_take(held_set *hs)
{
    for (int i = hs->from; i < hs->to; i++) {
        if (hs->deadline && (i & 15) == 0 && bench_now_ns() > hs->deadline)
            break;
        char name[200];
        snprintf(name, sizeof name, "%.80s-held-%d", hs->ctx->name, i);
        anylock_lock *l = NULL;
        anylock_status st;
        if ((st = anylock_lock_new(hs->c, name, &l)) != ANYLOCK_OK || (st = anylock_lock_set_expires(l, 3600)) ||
            (st = anylock_lock_set_timeout(l, 10)) || (st = anylock_acquire(l)) != ANYLOCK_OK) {
            shared_fail(hs->h, "holding %d names: %s: %s", hs->to - hs->from, anylock_status_name(st),
                        l ? anylock_lock_errmsg(l) : anylock_errmsg(hs->c));
            anylock_lock_free(l);
            return -1;
        }
        hs->locks[i] = l;
        hs->taken++;
    }
    return 0;
}

static void *held_thread(void *p)
{
    held_set *hs = p;
    held_take(hs);
    return NULL;
}

/* Releases and frees what hs took. */
static void held_drop(held_set *hs)
{
    for (int i = hs->from; i < hs->from + hs->taken; i++)
        anylock_lock_free(hs->locks[i]);
    hs->taken = 0;
}

static void *held_drop_thread(void *p)
{
    held_drop(p);
    return NULL;
}

/* Pairs on one handle for secs: p50 (us) and pairs/s. */
static int timed_pairs(anylock_lock *l, double secs, double *p50, double *pps, char *err, size_t errsize)
{
    bench_samples s = {0};
    double busy = 0;
    int rc = lock_block(l, BLOCK / 4, NULL, &busy, err, errsize);
    busy = 0;
    int64_t end = bench_now_ns() + (int64_t)(secs * 1e9);
    while (rc == 0 && (bench_now_ns() < end || s.n < BLOCK))
        rc = lock_block(l, BLOCK / 4, &s, &busy, err, errsize);
    *p50 = bench_samples_quantile(&s, 0.5);
    *pps = busy > 0 ? (double)s.n / busy : NAN;
    bench_samples_free(&s);
    return rc;
}

static int memory_worker(int me, void *p)
{
    (void)me;
    const store_ctx *ctx = p;
    const bench_options *o = ctx->o;
    memory_shared *sh = (memory_shared *)((const char *)ctx + sizeof *ctx);
    int is_pg = !strncmp(ctx->url, "postgres", 8);
    int held = o->held, others = o->others > o->held ? o->others : o->held;
    if (is_pg && held > o->pg_max_held)
        held = o->pg_max_held;
    if (is_pg && others > o->pg_max_held)
        others = o->pg_max_held;
    /* file:// keeps two descriptors open per held lock (the lock's file and
     * its holder record): raise the soft limit to the hard one and hold no
     * more than it allows, less a margin for the clients, floors and the
     * store's own files. */
    if (!strncmp(ctx->url, "file:", 5)) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
            if (rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                setrlimit(RLIMIT_NOFILE, &rl);
                getrlimit(RLIMIT_NOFILE, &rl);
            }
            long cap = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 10000000 ? 10000000 : ((long)rl.rlim_cur - 512) / 2;
            if (cap < 1)
                cap = 1;
            if (held > cap)
                held = (int)cap;
            if (others > cap)
                others = (int)cap;
        }
    }
    int k = o->clients > 0 ? o->clients : 1;
    char err[400] = "";
    malloc_trim(0);

    /* The store library's own connections. */
    bench_floor **fl = calloc((size_t)k, sizeof *fl);
    anylock_client **cs = calloc((size_t)k, sizeof *cs);
    anylock_lock **locks = calloc((size_t)others, sizeof *locks);
    if (!fl || !cs || !locks) {
        shared_fail(&sh->h, "out of memory");
        return 1;
    }
    double r0 = rss_kib();
    int nf = 0;
    for (; nf < k; nf++) {
        char ferr[256];
        if (!(fl[nf] = bench_floor_open(ctx->url, ferr, sizeof ferr)))
            break;
        /* A whole floor pair, so that a floor that takes something (flock,
         * BEGIN IMMEDIATE) gives it back before the next connection. */
        int bad = 0;
        for (int t = 0; t < bench_floor_trips_per_pair(fl[nf]) && !bad; t++)
            bad = bench_floor_round_trip(fl[nf], ferr, sizeof ferr) != 0;
        if (bad) {
            nf++;
            break;
        }
    }
    double r1 = rss_kib();
    sh->floor_conn_kib = nf == k ? (r1 - r0) / k : NAN;

    /* anylock's clients, each used once. */
    int rc = 0;
    for (int i = 0; i < k && rc == 0; i++) {
        anylock_lock *l = NULL;
        anylock_status st = anylock_open(ctx->url, &cs[i]);
        char name[200];
        snprintf(name, sizeof name, "%.80s-client-%d", ctx->name, i);
        if (st != ANYLOCK_OK || (st = anylock_lock_new(cs[i], name, &l)) != ANYLOCK_OK ||
            (st = anylock_acquire(l)) != ANYLOCK_OK || (st = anylock_release(l)) != ANYLOCK_OK) {
            shared_fail(&sh->h, "client %d: %s: %s", i, anylock_status_name(st),
                        l ? anylock_lock_errmsg(l) : cs[i] ? anylock_errmsg(cs[i]) : "out of memory");
            rc = -1;
        }
        anylock_lock_free(l);
    }
    double r2 = rss_kib();
    sh->mem_clients = k;
    sh->client_kib = rc == 0 ? (r2 - r1) / k : NAN;

    /* The pair on an empty store (but for this phase's one lock per
     * client, released). */
    anylock_lock *pl = NULL;
    if (rc == 0) {
        char name[200];
        snprintf(name, sizeof name, "%.80s-scale", ctx->name);
        anylock_status st;
        if ((st = anylock_lock_new(cs[0], name, &pl)) != ANYLOCK_OK || (st = anylock_lock_set_timeout(pl, 5))) {
            shared_fail(&sh->h, "scale lock: %s", anylock_status_name(st));
            rc = -1;
        } else if (timed_pairs(pl, o->uncontended_seconds / 2, &sh->empty_p50, &sh->empty_pps, err, sizeof err)) {
            shared_fail(&sh->h, "pairs on the empty store: %s", err);
            rc = -1;
        }
    }

    /* Held locks on one client. */
    int64_t fill_ns = (int64_t)(o->fill_max_seconds * 1e9);
    held_set first = {.ctx = ctx, .h = &sh->h, .c = cs[0], .locks = locks, .from = 0, .to = held};
    if (rc == 0 && held > 0) {
        double r3 = rss_kib();
        int64_t t0 = bench_now_ns();
        first.deadline = t0 + fill_ns;
        rc = held_take(&first);
        sh->held_seconds = (double)(bench_now_ns() - t0) / 1e9;
        double r4 = rss_kib();
        sh->held = first.taken;
        if (rc == 0 && first.taken > 0)
            sh->held_lock_kib = (r4 - r3) / first.taken;
    }
    /* The others follow on from the names held (fewer when the deadline
     * cut those short). */
    int base = first.from + first.taken;
    if (held > base)
        others -= held - base;
    held = base;

    /* More names held, by fill_threads clients at once, then the pair
     * again. */
    int nt = o->fill_threads > 0 ? o->fill_threads : !strncmp(ctx->url, "etcd", 4) ? 16 : 4;
    if (nt > k)
        nt = k;
    held_set *more = calloc((size_t)nt, sizeof *more);
    pthread_t *th = calloc((size_t)nt, sizeof *th);
    int started = 0;
    if (rc == 0 && others > held && more && th) {
        int per = (others - held + nt - 1) / nt;
        int64_t t0 = bench_now_ns();
        for (int i = 0; i < nt; i++) {
            int from = held + i * per, to = from + per < others ? from + per : others;
            more[i] = (held_set){.ctx = ctx, .h = &sh->h, .c = cs[i], .locks = locks, .from = from, .to = to,
                                 .deadline = t0 + fill_ns};
            if (from < to && pthread_create(&th[i], NULL, held_thread, &more[i]) == 0)
                started = i + 1;
            else if (from < to) {
                shared_fail(&sh->h, "cannot start a thread");
                break;
            }
        }
        int taken = first.taken;
        for (int i = 0; i < started; i++) {
            pthread_join(th[i], NULL);
            taken += more[i].taken;
        }
        double secs = (double)(bench_now_ns() - t0) / 1e9;
        sh->fill_per_s = secs > 0 ? (double)(taken - first.taken) / secs : NAN;
        if (atomic_load(&sh->h.failed))
            rc = -1;
        sh->others = taken;
    } else if (rc == 0) {
        sh->others = first.taken;
    }
    if (rc == 0 && sh->others > 0 &&
        timed_pairs(pl, o->uncontended_seconds / 2, &sh->full_p50, &sh->full_pps, err, sizeof err)) {
        shared_fail(&sh->h, "pairs with %d names held: %s", sh->others, err);
        rc = -1;
    }
    anylock_lock_free(pl);
    /* Give everything back (in parallel, on the clients that took it). */
    int *joined = calloc((size_t)nt, sizeof *joined);
    for (int i = 0; i < started; i++) {
        if (joined && pthread_create(&th[i], NULL, held_drop_thread, &more[i]) == 0)
            joined[i] = 1;
        else
            held_drop(&more[i]);
    }
    held_drop(&first);
    for (int i = 0; i < started; i++)
        if (joined && joined[i])
            pthread_join(th[i], NULL);
    free(joined);
    for (int i = 0; i < k; i++)
        anylock_close(cs[i]);
    for (int i = 0; i < nf; i++)
        bench_floor_close(fl[i]);
    free(more);
    free(th);
    free(fl);
    free(cs);
    free(locks);
    return rc == 0 ? 0 : 1;
}

static int phase_memory(const store_ctx *ctx, bench_result *r)
{
    /* The context and the figures in one shared block: the worker is a
     * process. */
    size_t size = sizeof(store_ctx) + sizeof(memory_shared);
    store_ctx *c = shared_alloc(size);
    if (!c) {
        snprintf(r->error, sizeof r->error, "memory: out of memory");
        return -1;
    }
    *c = *ctx;
    memory_shared *sh = (memory_shared *)((char *)c + sizeof *c);
    sh->floor_conn_kib = sh->client_kib = sh->held_lock_kib = sh->fill_per_s = NAN;
    sh->empty_p50 = sh->full_p50 = sh->empty_pps = sh->full_pps = NAN;
    worker w;
    int failed = worker_start(&w, 0, memory_worker, 0, c) != 0;
    if (!failed)
        failed = worker_join(&w, bench_now_ns() + (int64_t)3600e9) != 0;
    r->mem_clients = sh->mem_clients;
    r->floor_conn_kib = sh->floor_conn_kib;
    r->client_kib = sh->client_kib;
    r->held = sh->held;
    r->held_lock_kib = sh->held_lock_kib;
    r->held_seconds = sh->held_seconds;
    r->others = sh->others;
    r->others_fill_per_s = sh->fill_per_s;
    r->empty_pair_us_p50 = sh->empty_p50;
    r->full_pair_us_p50 = sh->full_p50;
    r->empty_pairs_per_s = sh->empty_pps;
    r->full_pairs_per_s = sh->full_pps;
    r->scale_ratio = sh->full_p50 / sh->empty_p50;
    if (failed)
        snprintf(r->error, sizeof r->error, "memory and scale: %s", sh->h.error[0] ? sh->h.error : "the worker failed");
    munmap(c, size);
    return failed ? -1 : 0;
}

/* ---- one store ---------------------------------------------------------------- */

void bench_run_store(const char *url, const bench_options *o, bench_result *r)
{
    memset(r, 0, sizeof *r);
    r->url = url;
    const char *sep = strstr(url, "://");
    size_t slen = sep ? (size_t)(sep - url) : strlen(url);
    if (slen >= sizeof r->scheme)
        slen = sizeof r->scheme - 1;
    memcpy(r->scheme, url, slen);
    r->threads = is_threaded(url, o);
    double nan = NAN;
    r->pairs_per_s = r->pair_us_p50 = r->pair_us_p99 = nan;
    r->floor_pairs_per_s = r->floor_pair_us_p50 = r->floor_pair_us_p99 = nan;
    r->floor_round_trip_us_p50 = r->floor_round_trip_us_p99 = r->ratio_pairs_per_s = r->ratio_pair_p50 = nan;
    r->pair_round_trips = r->ratio_per_round_trip = nan;
    r->handoff_us_p50 = r->handoff_us_p99 = r->handoff_us_max = r->handoff_start_us_p50 = r->handoff_start_us_p99 = nan;
    r->floor_idle_round_trip_us_p50 = r->floor_handoff_start_us_p50 = nan;
    r->cpu_hold_s = r->cpu_user_s = r->cpu_sys_s = r->cpu_core_percent = r->cpu_wake_us = nan;
    r->flock_pairs_per_s = r->flock_pair_us_p50 = r->flock_handoff_us_p50 = nan;
    r->floor_conn_kib = r->client_kib = r->held_lock_kib = r->held_seconds = r->others_fill_per_s = nan;
    r->empty_pair_us_p50 = r->full_pair_us_p50 = r->empty_pairs_per_s = r->full_pairs_per_s = nan;
    r->scale_ratio = nan;
    if (!anylock_backend_available(r->scheme)) {
        snprintf(r->error, sizeof r->error, "the %s:// backend is not available in this build", r->scheme);
        return;
    }

    store_ctx ctx = {.url = url, .o = o};
    /* Names unique to this run, so that leftovers of an earlier run (or
     * another benchmark on the same store) cannot interfere. */
    snprintf(ctx.name, sizeof ctx.name, "anylock-bench-%ld-%lld", (long)getpid(), (long long)(bench_now_ns() % 1000000007));

    progress(o, "%s: uncontended pairs and floor (%.1f s)\n", url, o->uncontended_seconds);
    if (phase_uncontended(&ctx, r) != 0)
        return;
    progress(o, "%s: %d hand-offs (hold %.0f ms)\n", url, o->handoffs, o->handoff_hold_ms);
    if (phase_handoff(&ctx, r) != 0)
        return;
    if (!strcmp(r->scheme, "sqlite")) {
        progress(o, "%s: flock(2) beside it: pairs and %d hand-offs\n", url, o->handoffs);
        phase_flock(&ctx, r);
    }
    progress(o, "%s: one waiter's CPU during a %.1f s hold\n", url, o->cpu_hold_seconds);
    if (phase_cpu(&ctx, r) != 0)
        return;
    for (int i = 0; i < o->nnprocs; i++) {
        int n = o->nprocs[i];
        progress(o, "%s: %d %s contending for %.1f s\n", url, n, r->threads ? "threads" : "processes",
                 o->contended_seconds);
        char err[400] = "";
        int rc = phase_contended(&ctx, n, ANYLOCK_EXCLUSIVE, 0, &r->contended[i], err, sizeof err);
        r->ncontended = i + 1;
        if (rc != 0) {
            snprintf(r->error, sizeof r->error, "contended (%d): %s", n, err);
            return;
        }
    }
    if (phase_modes(&ctx, r) != 0)
        return;
    if (o->held > 0 || o->others > 0) {
        progress(o, "%s: memory per client and per held lock (%d held), pairs with %d names held\n", url, o->held,
                 o->others);
        if (phase_memory(&ctx, r) != 0)
            return;
    }
    if (!strcmp(r->scheme, "sqlite") && o->names > 0) {
        progress(o, "%s: %d distinct names taken and released\n", url, o->names);
        phase_names(&ctx, r);
    }
}
