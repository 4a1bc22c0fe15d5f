/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The reliability suite: what a lock library must never do, shown on every
 * backend compiled in.
 *
 *   mutual exclusion under load   16 contenders (processes, or threads for
 *                                 memory://) each take one lock hundreds of
 *                                 times around a non-atomic read-modify-write
 *                                 of a shared counter; a separate detector
 *                                 records any moment with two holders.
 *   crashed holders               a holder killed with SIGKILL, with and
 *                                 without auto-renewal, frees the lock within
 *                                 its expiry plus a margin and no sooner; a
 *                                 renewing holder keeps it while it lives.
 *   dead servers                  redis/memcached stopped under held locks
 *                                 and waiting waiters: every call returns a
 *                                 connection status in bounded time, no fd
 *                                 leaks, the same client works after a
 *                                 restart, and a renewed lock whose renewals
 *                                 fail past its expiry is reported lost.
 *   passwords                     never in a message, also for connection and
 *                                 authentication failures of the stores.
 *
 * Backends left out of the build are named on stdout; in CI every backend is
 * compiled in, and a missing server binary is a failure.
 */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "anylock.h"
#include "harness.h"

#ifdef ANYLOCK_WITH_REDIS
#define HAVE_REDIS 1
#else
#define HAVE_REDIS 0
#endif
#ifdef ANYLOCK_WITH_MEMCACHED
#define HAVE_MEMCACHED 1
#else
#define HAVE_MEMCACHED 0
#endif
#ifdef ANYLOCK_WITH_SQLITE
#define HAVE_SQLITE 1
#else
#define HAVE_SQLITE 0
#endif

#include "check_status.h"

/* What the suite needs to know about a backend. */
typedef struct rel_backend {
    const char *label;
    const char *server;  /* the harness's server kind, NULL for none */
    int compiled;
    int cross_process;   /* locks exclude across processes */
    double expiry;       /* a short expiry the store honours, in seconds */
    double early;        /* how much sooner than its expiry the store may free a lock */
    double late;         /* how much later */
    const char *timeouts;/* query parameters that bound a dead server's calls */
    double call_bound;   /* the longest any one call may take against a dead server */
} rel_backend;

static const rel_backend backends[] = {
    {"memory", NULL, 1, 0, 0.5, 0.01, 0.5, "", 0},
    {"sqlite", NULL, HAVE_SQLITE, 1, 1.0, 0.01, 1.0, "", 0},
    /* One-second connect and command timeouts: a dead server costs each call
     * at most about that (a reconnect and a retry may double it). */
    {"redis", "redis", HAVE_REDIS, 1, 1.0, 0.01, 1.0, "connect_timeout=1&command_timeout=1", 8.0},
    /* memcached's expiry has whole seconds and +-1 s precision; the backend
     * rounds up, so the lock may live up to a second longer, never shorter. */
    {"memcached", "memcached", HAVE_MEMCACHED, 1, 2.0, 0.01, 2.5, "connect_timeout=1&command_timeout=1", 8.0},
};
#define NBACKENDS (sizeof backends / sizeof *backends)

/* The backend of the running test, its server and its base URL. */
static const rel_backend *be;
static test_server server;
static char tmpdir[256];
static char base_url[600];

static void env_up(int index)
{
    be = &backends[index];
    tmpdir[0] = '\0';
    if (be->server) {
        ck_assert_msg(test_server_start(&server, be->server, NULL) == 0, "cannot start %s", be->server);
        snprintf(base_url, sizeof base_url, "%s", server.url);
    } else if (!strcmp(be->label, "sqlite")) {
        ck_assert_int_eq(test_tmpdir(tmpdir, sizeof tmpdir), 0);
        snprintf(base_url, sizeof base_url, "sqlite:///%s/locks.db", tmpdir);
    } else {
        snprintf(base_url, sizeof base_url, "memory://rel%ld", (long)getpid());
    }
}

static void env_down(void)
{
    if (be && be->server)
        test_server_stop(&server);
    if (tmpdir[0])
        test_rmtree(tmpdir);
    tmpdir[0] = '\0';
}

/* The base URL with a prefix unique to tag and this process, and extra
 * query parameters (may be ""). */
static void url_for(char *out, size_t size, const char *tag, const char *extra)
{
    snprintf(out, size, "%s?prefix=rel-%s-%ld:%s%s", base_url, tag, (long)getpid(), extra && *extra ? "&" : "",
             extra ? extra : "");
}

/* ---- mutual exclusion under load ---------------------------------------- */

#define CONTENDERS 16
#define ITERATIONS 200

typedef struct mx_arena {
    atomic_int inside;       /* holders inside the critical section now */
    atomic_int holder;       /* the index + 1 of the holder, 0 when none */
    atomic_int overlaps;     /* moments the detectors saw two holders */
    atomic_int failures;     /* calls that failed */
    atomic_int acquisitions; /* successful acquires */
    volatile long counter;   /* incremented non-atomically under the lock */
    char url[700];
} mx_arena;

/* One contender: its own client, ITERATIONS times acquire, a read, a yield
 * that invites another holder in if exclusion is broken, a write, release. */
static int mx_contend(int index, void *arg)
{
    mx_arena *ar = arg;
    anylock_client *c = NULL;
    if (anylock_open(ar->url, &c) != ANYLOCK_OK) {
        fprintf(stderr, "contender %d: open: %s\n", index, anylock_errmsg(c));
        anylock_close(c);
        atomic_fetch_add(&ar->failures, 1);
        return 1;
    }
    anylock_lock *l = NULL;
    if (anylock_lock_new(c, "counter", &l) != ANYLOCK_OK) {
        anylock_close(c);
        atomic_fetch_add(&ar->failures, 1);
        return 1;
    }
    anylock_lock_set_expires(l, 60);
    anylock_lock_set_timeout(l, 55);
    int me = index + 1;
    for (int i = 0; i < ITERATIONS; i++) {
        anylock_status st = anylock_acquire(l);
        if (st != ANYLOCK_OK) {
            fprintf(stderr, "contender %d: acquire: %s (%s)\n", index, anylock_status_name(st),
                    anylock_lock_errmsg(l));
            atomic_fetch_add(&ar->failures, 1);
            continue;
        }
        atomic_fetch_add(&ar->acquisitions, 1);
        int none = 0;
        if (!atomic_compare_exchange_strong(&ar->holder, &none, me))
            atomic_fetch_add(&ar->overlaps, 1);
        if (atomic_fetch_add(&ar->inside, 1) != 0)
            atomic_fetch_add(&ar->overlaps, 1);
        long v = ar->counter;
        if (i % 4 == 0)
            sched_yield();
        ar->counter = v + 1;
        atomic_fetch_sub(&ar->inside, 1);
        int mine = me;
        if (!atomic_compare_exchange_strong(&ar->holder, &mine, 0))
            atomic_fetch_add(&ar->overlaps, 1);
        st = anylock_release(l);
        if (st != ANYLOCK_OK) {
            fprintf(stderr, "contender %d: release: %s (%s)\n", index, anylock_status_name(st),
                    anylock_lock_errmsg(l));
            atomic_fetch_add(&ar->failures, 1);
        }
    }
    anylock_lock_free(l);
    anylock_close(c);
    return 0;
}

typedef struct mx_thread {
    pthread_t thread;
    int index;
    mx_arena *arena;
} mx_thread;

static void *mx_thread_main(void *p)
{
    mx_thread *t = p;
    mx_contend(t->index, t->arena);
    return NULL;
}

START_TEST(t_mutual_exclusion)
{
    env_up(_i);
    mx_arena *ar = test_shared_alloc(sizeof *ar);
    ck_assert_ptr_nonnull(ar);
    url_for(ar->url, sizeof ar->url, "mx", "");
    if (be->cross_process) {
        ck_assert_int_eq(test_fork_n(CONTENDERS, mx_contend, ar, 400), 0);
    } else {
        /* memory:// lives in one process: its contenders are threads, each
         * with its own client on the same namespace. */
        mx_thread t[CONTENDERS];
        for (int i = 0; i < CONTENDERS; i++) {
            t[i].index = i;
            t[i].arena = ar;
            ck_assert_int_eq(pthread_create(&t[i].thread, NULL, mx_thread_main, &t[i]), 0);
        }
        for (int i = 0; i < CONTENDERS; i++)
            pthread_join(t[i].thread, NULL);
    }
    int failures = atomic_load(&ar->failures), overlaps = atomic_load(&ar->overlaps);
    int acquisitions = atomic_load(&ar->acquisitions);
    ck_assert_msg(failures == 0, "%d calls failed", failures);
    ck_assert_msg(overlaps == 0, "two holders at once, %d times", overlaps);
    ck_assert_int_eq(acquisitions, CONTENDERS * ITERATIONS);
    ck_assert_int_eq(ar->counter, acquisitions);
    test_shared_free(ar, sizeof *ar);
    env_down();
}
END_TEST

/* ---- crashed holders ----------------------------------------------------- */

typedef struct crash_shm {
    atomic_int ready;   /* 1: holding; -1: failed */
    double before;      /* test_now() just before the acquire call */
    double after;       /* just after it returned */
    int renew;
    char url[700];
} crash_shm;

/* The holder: takes the lock and waits to be killed. */
static int crash_holder(crash_shm *sh)
{
    anylock_client *c = NULL;
    anylock_lock *l = NULL;
    if (anylock_open(sh->url, &c) != ANYLOCK_OK || anylock_lock_new(c, "crash", &l) != ANYLOCK_OK ||
        anylock_lock_set_expires(l, be->expiry) != ANYLOCK_OK ||
        anylock_lock_set_auto_renewal(l, sh->renew) != ANYLOCK_OK) {
        fprintf(stderr, "holder: %s\n", anylock_errmsg(c));
        atomic_store(&sh->ready, -1);
        return 1;
    }
    sh->before = test_now();
    anylock_status st = anylock_try_acquire(l);
    sh->after = test_now();
    if (st != ANYLOCK_OK) {
        fprintf(stderr, "holder: acquire: %s (%s)\n", anylock_status_name(st), anylock_lock_errmsg(l));
        atomic_store(&sh->ready, -1);
        return 1;
    }
    atomic_store(&sh->ready, 1);
    for (;;)
        pause();
}

static void crash_case(int index, int renew)
{
    env_up(index);
    crash_shm *sh = test_shared_alloc(sizeof *sh);
    ck_assert_ptr_nonnull(sh);
    sh->renew = renew;
    url_for(sh->url, sizeof sh->url, renew ? "crash-renew" : "crash", "");
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(crash_holder(sh));
    double until = test_now() + 30;
    while (atomic_load(&sh->ready) == 0 && test_now() < until)
        test_sleep(0.005);
    if (atomic_load(&sh->ready) != 1) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        ck_abort_msg("the holder could not take the lock");
    }

    anylock_client *c = open_ok(sh->url);
    anylock_lock *l = NULL;
    ck_status(anylock_lock_new(c, "crash", &l), ANYLOCK_OK);
    ck_status(anylock_lock_set_expires(l, 60), ANYLOCK_OK);
    if (renew) {
        /* A renewing holder keeps its lock for many times its expiry. */
        double alive_until = sh->after + be->expiry * 5;
        int checks = 0;
        while (test_now() < alive_until) {
            ck_status(anylock_try_acquire(l), ANYLOCK_BUSY);
            checks++;
            test_sleep(be->expiry / 5);
        }
        ck_assert_int_ge(checks, 10);
    } else {
        test_sleep(be->expiry / 5);
    }
    ck_assert_int_eq(waitpid(pid, NULL, WNOHANG), 0); /* the holder was alive until now */
    double killed = test_now();
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);

    /* Poll until the lock is free again. */
    double freed = 0;
    double give_up = killed + be->expiry + be->late + 10;
    anylock_status st;
    while ((st = anylock_try_acquire(l)) == ANYLOCK_BUSY && test_now() < give_up)
        test_sleep(0.01);
    freed = test_now();
    ck_assert_msg(st == ANYLOCK_OK, "the dead holder's lock was never freed: %s", anylock_status_name(st));
    if (!renew) {
        /* Not sooner than the expiry, counted from before the holder asked. */
        ck_assert_msg(freed >= sh->before + be->expiry - be->early,
                      "freed %.3f s after the acquire, before its %.3f s expiry", freed - sh->before, be->expiry);
    }
    /* Within the expiry (counted from the last renewal, at most the kill
     * time) plus the store's margin and polling slack. */
    ck_assert_msg(freed - killed <= be->expiry + be->late + 0.5,
                  "freed %.3f s after the holder died; expiry %.3f s", freed - killed, be->expiry);
    ck_status(anylock_release(l), ANYLOCK_OK);
    anylock_lock_free(l);
    ck_status(anylock_close(c), ANYLOCK_OK);
    test_shared_free(sh, sizeof *sh);
    env_down();
}

START_TEST(t_killed_holder)
{
    crash_case(_i, 0);
}
END_TEST

START_TEST(t_killed_renewing_holder)
{
    crash_case(_i, 1);
}
END_TEST

/* ---- dead servers -------------------------------------------------------- */

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static int is_connection_status(anylock_status st)
{
    return st == ANYLOCK_CONNECT || st == ANYLOCK_IO;
}

/* Checks that one call against the dead server answered a connection
 * status, with a message, within the bound. */
#define ck_dead(expr, msg_of) ck_dead_or(expr, msg_of, ANYLOCK_CONNECT)
/* The same, for an optional operation the backend may not have (it then
 * answers UNSUPPORTED without contacting the store). */
#define ck_dead_optional(expr, msg_of) ck_dead_or(expr, msg_of, ANYLOCK_UNSUPPORTED)
#define ck_dead_or(expr, msg_of, also)                                                                     \
    do {                                                                                                   \
        double t0_ = test_now();                                                                           \
        anylock_status st_ = (expr);                                                                       \
        double took_ = test_now() - t0_;                                                                   \
        ck_assert_msg(is_connection_status(st_) || st_ == (also), "%s with the server down: got %s (%s)",  \
                      #expr,                                                                               \
                      anylock_status_name(st_), (msg_of));                                                 \
        ck_assert_msg(took_ <= be->call_bound, "%s took %.3f s with the server down", #expr, took_);      \
        ck_assert_str_ne((msg_of), "");                                                                    \
    } while (0)

typedef struct dead_waiter {
    anylock_client *client;
    anylock_status status;
    double took;
} dead_waiter;

static void *dead_waiter_main(void *p)
{
    dead_waiter *w = p;
    anylock_lock *l = NULL;
    w->status = anylock_lock_new(w->client, "held", &l);
    if (w->status != ANYLOCK_OK)
        return NULL;
    anylock_lock_set_expires(l, 30);
    anylock_lock_set_timeout(l, 4);
    double t0 = test_now();
    w->status = anylock_acquire(l);
    w->took = test_now() - t0;
    anylock_lock_free(l);
    return NULL;
}

static int count_held(const anylock_info *info, void *ud)
{
    (void)info;
    ++*(int *)ud;
    return 0;
}

START_TEST(t_dead_server)
{
    env_up(_i);
    int fds_before = count_fds();
    char url[800];
    url_for(url, sizeof url, "dead", be->timeouts);
    anylock_client *c = open_ok(url), *c2 = open_ok(url);
    anylock_lock *held = NULL, *other = NULL;
    ck_status(anylock_lock_new(c, "held", &held), ANYLOCK_OK);
    ck_status(anylock_lock_new(c, "other", &other), ANYLOCK_OK);
    ck_status(anylock_lock_set_expires(held, 30), ANYLOCK_OK);
    ck_status(anylock_acquire(held), ANYLOCK_OK);

    /* A waiter is waiting when the server dies. */
    dead_waiter w = {c2, ANYLOCK_INTERNAL, 0};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, dead_waiter_main, &w), 0);
    test_sleep(0.5);
    test_server_kill(&server);
    pthread_join(t, NULL);
    /* OUTCOME_UNKNOWN: a try the waiter sent as the server went down got
     * no answer (it may have been run). */
    ck_assert_msg(is_connection_status(w.status) || w.status == ANYLOCK_OUTCOME_UNKNOWN, "the waiter got %s",
                  anylock_status_name(w.status));
    ck_assert_msg(w.took <= 4 + be->call_bound, "the waiter returned after %.3f s", w.took);

    /* Every call answers a connection status, in bounded time. */
    ck_dead(anylock_release(held), anylock_lock_errmsg(held));
    ck_dead(anylock_try_acquire(other), anylock_lock_errmsg(other));
    int locked = 0;
    ck_dead(anylock_locked(other, &locked), anylock_lock_errmsg(other));
    char owner[ANYLOCK_ID_MAX + 1];
    ck_dead(anylock_owner(other, owner, sizeof owner), anylock_lock_errmsg(other));
    ck_dead(anylock_reset(c, "held"), anylock_errmsg(c));
    anylock_info info;
    ck_dead(anylock_inspect(c, "held", &info), anylock_errmsg(c));
    size_t count = 0;
    ck_dead_optional(anylock_reset_all(c, &count), anylock_errmsg(c));
    int listed = 0;
    ck_dead_optional(anylock_list(c, count_held, &listed), anylock_errmsg(c));
    anylock_client *fresh = NULL;
    ck_dead(anylock_open(url, &fresh), anylock_errmsg(fresh));
    ck_status(anylock_close(fresh), ANYLOCK_OK);

    /* The server returns (empty: it keeps nothing on disk); the same
     * clients work again, after at most a few failed calls. */
    ck_assert_int_eq(test_server_restart(&server), 0);
    anylock_status st = ANYLOCK_INTERNAL;
    double until = test_now() + 10;
    while (test_now() < until && is_connection_status(st = anylock_try_acquire(other)))
        test_sleep(0.1);
    ck_status(st, ANYLOCK_OK);
    ck_status(anylock_release(other), ANYLOCK_OK);
    st = ANYLOCK_INTERNAL;
    while (test_now() < until && is_connection_status(st = anylock_try_acquire(held)))
        test_sleep(0.1);
    ck_status(st, ANYLOCK_OK);
    anylock_lock *again = NULL;
    ck_status(anylock_lock_new(c2, "held", &again), ANYLOCK_OK);
    st = ANYLOCK_INTERNAL;
    while (test_now() < until && is_connection_status(st = anylock_try_acquire(again)))
        test_sleep(0.1);
    ck_status(st, ANYLOCK_BUSY);
    ck_status(anylock_release(held), ANYLOCK_OK);
    ck_status(anylock_try_acquire(again), ANYLOCK_OK);

    anylock_lock_free(again);
    anylock_lock_free(held);
    anylock_lock_free(other);
    ck_status(anylock_close(c), ANYLOCK_OK);
    ck_status(anylock_close(c2), ANYLOCK_OK);
    ck_assert_int_eq(count_fds(), fds_before);
    env_down();
}
END_TEST

START_TEST(t_renewal_fails_past_expiry)
{
    env_up(_i);
    char url[800];
    url_for(url, sizeof url, "lost", be->timeouts);
    anylock_client *c = open_ok(url);
    anylock_lock *l = NULL;
    test_lost rec = {0};
    ck_status(anylock_lock_new(c, "renewed", &l), ANYLOCK_OK);
    ck_status(anylock_lock_set_expires(l, be->expiry), ANYLOCK_OK);
    ck_status(anylock_lock_set_auto_renewal(l, 1), ANYLOCK_OK);
    ck_status(anylock_lock_set_lost_callback(l, test_lost_record, &rec), ANYLOCK_OK);
    double before = test_now();
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    double after = test_now();
    test_sleep(0.2);
    test_server_kill(&server);
    test_lost_wait(&rec, be->expiry + 2 * be->call_bound + 5);
    ck_assert_int_eq(atomic_load(&rec.calls), 1);
    anylock_status why = (anylock_status)atomic_load(&rec.why);
    ck_assert_msg(is_connection_status(why) || why == ANYLOCK_TIMEOUT, "lost with %s", anylock_status_name(why));
    /* Reported when the last granted expiry ends on this process's clock
     * (less the library's guard: a tenth of it, at most 0.1 s), and no
     * later than that end (plus the time to wake up): not once the store
     * may already have let someone else in. */
    double guard = be->expiry / 10 < 0.1 ? be->expiry / 10 : 0.1;
    ck_assert_msg(rec.at >= before + be->expiry - guard - 0.01,
                  "reported lost %.3f s after the acquire, before its expiry of %.3f s", rec.at - before, be->expiry);
    ck_assert_msg(rec.at <= after + be->expiry + 0.2, "reported lost %.3f s after the acquire, after its expiry of "
                  "%.3f s", rec.at - after, be->expiry);
    ck_assert_int_eq(anylock_lock_held(l), 0);
    ck_status(anylock_release(l), ANYLOCK_NOT_HELD);
    test_sleep(0.5);
    ck_assert_int_eq(atomic_load(&rec.calls), 1); /* once */
    anylock_lock_free(l);
    ck_status(anylock_close(c), ANYLOCK_OK);
    env_down();
}
END_TEST

/* ---- passwords in store errors ------------------------------------------ */

#define SECRET "Pw4Reliab1lityTest"

static void assert_no_secret(anylock_client *c)
{
    ck_assert_msg(!strstr(anylock_errmsg(c), SECRET), "message shows the password: %s", anylock_errmsg(c));
    ck_assert_msg(!strstr(anylock_client_url(c), SECRET), "URL shows the password: %s", anylock_client_url(c));
}

START_TEST(t_password_dead_port)
{
    /* A URL with a password against a port nobody listens on. */
    be = &backends[_i];
    char url[600];
    snprintf(url, sizeof url, "%s://user:" SECRET "@127.0.0.1:%d?%s", be->label, test_free_port(), be->timeouts);
    anylock_client *c = NULL;
    anylock_status st = anylock_open(url, &c);
    ck_assert_msg(st != ANYLOCK_OK, "opened a dead port");
    ck_assert_str_ne(anylock_errmsg(c), "");
    assert_no_secret(c);
    anylock_close(c);
}
END_TEST

START_TEST(t_password_refused)
{
    /* redis with a password set: a wrong one is refused as AUTH, and the
     * message does not repeat it. */
    be = &backends[_i];
    ck_assert_int_eq(test_server_start(&server, "redis", "--requirepass RightOne123"), 0);
    char url[700];
    snprintf(url, sizeof url, "redis://:" SECRET "@127.0.0.1:%d?%s", server.port, be->timeouts);
    anylock_client *c = NULL;
    ck_status(anylock_open(url, &c), ANYLOCK_AUTH);
    assert_no_secret(c);
    anylock_close(c);
    snprintf(url, sizeof url, "redis://someone:" SECRET "@127.0.0.1:%d?%s", server.port, be->timeouts);
    ck_status(anylock_open(url, &c), ANYLOCK_AUTH);
    assert_no_secret(c);
    anylock_close(c);
    snprintf(url, sizeof url, "redis://:RightOne123@127.0.0.1:%d?%s", server.port, be->timeouts);
    ck_status(anylock_open(url, &c), ANYLOCK_OK);
    anylock_close(c);
    test_server_stop(&server);
}
END_TEST

/* ---- assembly ------------------------------------------------------------ */

/* Check keeps the names' pointers, so they live here. */
static char names[64][64];
static int nnames;

static void add(Suite *s, const char *label, const char *what, const TTest *test, int index, double timeout)
{
    if (nnames == 64)
        abort();
    char *name = names[nnames++];
    snprintf(name, sizeof names[0], "%s_%s", label, what);
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, timeout);
    tcase_add_loop_test(tc, test, index, index + 1);
    suite_add_tcase(s, tc);
}

int main(void)
{
    Suite *s = suite_create("reliability");
    for (int i = 0; i < (int)NBACKENDS; i++) {
        const rel_backend *b = &backends[i];
        if (!b->compiled) {
            printf("SKIP reliability/%s: the %s:// backend is not compiled into this build\n", b->label, b->label);
            continue;
        }
        add(s, b->label, "mutual_exclusion", t_mutual_exclusion, i, 600);
        if (b->cross_process) {
            add(s, b->label, "killed_holder", t_killed_holder, i, 120);
            add(s, b->label, "killed_renewing_holder", t_killed_renewing_holder, i, 120);
        } else {
            printf("SKIP reliability/%s: killing a holder process needs a store shared across processes\n",
                   b->label);
        }
        if (b->server) {
            add(s, b->label, "dead_server", t_dead_server, i, 180);
            add(s, b->label, "renewal_fails_past_expiry", t_renewal_fails_past_expiry, i, 120);
            add(s, b->label, "password_dead_port", t_password_dead_port, i, 60);
            if (!strcmp(b->label, "redis")) {
                add(s, b->label, "password_refused", t_password_refused, i, 60);
            }
        }
    }
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
