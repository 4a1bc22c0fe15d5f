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
    size_t size = sizeof(handoff_shared) + 2 * (size_t)max * sizeof(int64_t);
    handoff_shared *sh = shared_alloc(size);
    if (!sh) {
        snprintf(r->error, sizeof r->error, "hand-off: out of memory");
        return -1;
    }
    sh->t_release = (int64_t *)(sh + 1);
    sh->t_acquire = sh->t_release + max;
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
    bench_samples s = {0};
    int rounds = atomic_load(&sh->rounds);
    if (!failed)
        for (int i = 0; i < rounds; i++)
            bench_samples_add(&s, (double)(sh->t_acquire[i] - sh->t_release[i]) / 1e3);
    r->handoffs = (int)s.n;
    r->handoff_hold_ms = o->handoff_hold_ms;
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
    atomic_int inside;
    atomic_ullong overlaps;
    uint64_t counts[]; /* one per worker */
} contended_shared;

typedef struct contended_arg {
    store_ctx ctx;
    contended_shared *sh;
    int ready[2], go[2];
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
        /* The critical section: count, and check that nobody else is in. */
        if (atomic_exchange(&sh->inside, 1) != 0)
            atomic_fetch_add(&sh->overlaps, 1);
        if (t <= sh->end)
            count++;
        atomic_store(&sh->inside, 0);
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

static int phase_contended(const store_ctx *ctx, int n, bench_contended *out, char *err, size_t errsize)
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
    contended_arg a = {.ctx = *ctx, .sh = sh};
    snprintf(a.ctx.name, sizeof a.ctx.name, "%.80s-contended-%d", ctx->name, n);
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
    r->handoff_us_p50 = r->handoff_us_p99 = r->handoff_us_max = nan;
    r->cpu_hold_s = r->cpu_user_s = r->cpu_sys_s = r->cpu_core_percent = r->cpu_wake_us = nan;
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
    progress(o, "%s: one waiter's CPU during a %.1f s hold\n", url, o->cpu_hold_seconds);
    if (phase_cpu(&ctx, r) != 0)
        return;
    for (int i = 0; i < o->nnprocs; i++) {
        int n = o->nprocs[i];
        progress(o, "%s: %d %s contending for %.1f s\n", url, n, r->threads ? "threads" : "processes",
                 o->contended_seconds);
        char err[400] = "";
        int rc = phase_contended(&ctx, n, &r->contended[i], err, sizeof err);
        r->ncontended = i + 1;
        if (rc != 0) {
            snprintf(r->error, sizeof r->error, "contended (%d): %s", n, err);
            return;
        }
    }
}
