#include "conformance.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "anylock.h"
#include "harness.h"

static const conformance_config *cfg;

/* A client on the backend under test, with a prefix unique to this test and
 * process so that tests never see each other's locks. */
static anylock_client *client_for(const char *tag)
{
    char url[1024];
    snprintf(url, sizeof url, "%s%cprefix=ct-%s-%ld:", cfg->url, strchr(cfg->url, '?') ? '&' : '?', tag,
             (long)getpid());
    anylock_client *c = NULL;
    anylock_status st = anylock_open(url, &c);
    ck_assert_msg(st == ANYLOCK_OK, "open %s: %s (%s)", url, anylock_strerror(st), anylock_errmsg(c));
    return c;
}

static anylock_lock *lock_for(anylock_client *c, const char *name)
{
    anylock_lock *l = NULL;
    ck_assert_int_eq(anylock_lock_new(c, name, &l), ANYLOCK_OK);
    return l;
}

#include "check_status.h"

/* ---- basic ---- */

START_TEST(t_acquire_release)
{
    anylock_client *c = client_for("basic");
    anylock_lock *l = lock_for(c, "job");
    int locked = -1;
    ck_status(anylock_locked(l, &locked), ANYLOCK_OK);
    ck_assert_int_eq(locked, 0);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    ck_assert_int_eq(anylock_lock_held(l), 1);
    if (cfg->excludes) {
        ck_status(anylock_locked(l, &locked), ANYLOCK_OK);
        ck_assert_int_eq(locked, 1);
    }
    ck_status(anylock_acquire(l), ANYLOCK_ALREADY_HELD);
    ck_status(anylock_release(l), ANYLOCK_OK);
    ck_assert_int_eq(anylock_lock_held(l), 0);
    ck_status(anylock_locked(l, &locked), ANYLOCK_OK);
    ck_assert_int_eq(locked, 0);
    ck_status(anylock_release(l), ANYLOCK_NOT_HELD);
    ck_status(anylock_extend(l, 5), ANYLOCK_NOT_HELD);
    /* A freed name can be taken again at once. */
    ck_status(anylock_try_acquire(l), ANYLOCK_OK);
    anylock_lock_free(l); /* releases */
    anylock_lock *again = lock_for(c, "job");
    ck_status(anylock_try_acquire(again), ANYLOCK_OK);
    anylock_lock_free(again);
    ck_status(anylock_close(c), ANYLOCK_OK);
}
END_TEST

START_TEST(t_try_busy)
{
    anylock_client *c = client_for("busy");
    anylock_lock *a = lock_for(c, "job"), *b = lock_for(c, "job");
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_status(anylock_try_acquire(b), ANYLOCK_BUSY);
    ck_assert_int_eq(anylock_lock_held(b), 0);
    ck_status(anylock_lock_set_timeout(b, 0), ANYLOCK_OK);
    ck_status(anylock_acquire(b), ANYLOCK_BUSY);
    ck_status(anylock_release(b), ANYLOCK_NOT_HELD);
    ck_status(anylock_release(a), ANYLOCK_OK);
    ck_status(anylock_acquire(b), ANYLOCK_OK);
    anylock_lock_free(a);
    anylock_lock_free(b);
    anylock_close(c);
}
END_TEST

START_TEST(t_timeout)
{
    anylock_client *c = client_for("timeout");
    anylock_lock *a = lock_for(c, "job"), *b = lock_for(c, "job");
    ck_status(anylock_lock_set_expires(a, 30), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_status(anylock_lock_set_timeout(b, 0.3), ANYLOCK_OK);
    double t0 = test_now();
    ck_status(anylock_acquire(b), ANYLOCK_TIMEOUT);
    double waited = test_now() - t0;
    ck_assert_msg(waited >= 0.29, "gave up after %.3f s, before the 0.3 s timeout", waited);
    ck_assert_msg(waited < 5.0, "timeout of 0.3 s took %.3f s", waited);
    anylock_lock_free(a);
    anylock_lock_free(b);
    anylock_close(c);
}
END_TEST

typedef struct waiter {
    anylock_client *client;
    const char *name;
    double timeout;
    anylock_status status;
    double acquired_at;
} waiter;

static void *wait_thread(void *arg)
{
    waiter *w = arg;
    anylock_lock *l = NULL;
    if (anylock_lock_new(w->client, w->name, &l) != ANYLOCK_OK) {
        w->status = ANYLOCK_INTERNAL;
        return NULL;
    }
    anylock_lock_set_expires(l, 30);
    anylock_lock_set_timeout(l, w->timeout);
    w->status = anylock_acquire(l);
    w->acquired_at = test_now();
    anylock_lock_free(l);
    return NULL;
}

START_TEST(t_wake_on_release)
{
    anylock_client *c = client_for("wake"), *c2 = client_for("wake");
    anylock_lock *a = lock_for(c, "job");
    ck_status(anylock_lock_set_expires(a, 30), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    waiter w = {c2, "job", 20, ANYLOCK_INTERNAL, 0};
    pthread_t t;
    pthread_create(&t, NULL, wait_thread, &w);
    test_sleep(0.3);
    double released = test_now();
    ck_status(anylock_release(a), ANYLOCK_OK);
    pthread_join(t, NULL);
    ck_status(w.status, ANYLOCK_OK);
    ck_assert_msg(w.acquired_at - released < 5.0, "waiter took %.3f s after release", w.acquired_at - released);
    anylock_lock_free(a);
    anylock_close(c);
    anylock_close(c2);
}
END_TEST

START_TEST(t_expiry_frees)
{
    anylock_client *c = client_for("expiry");
    anylock_lock *a = lock_for(c, "job"), *b = lock_for(c, "job");
    ck_status(anylock_lock_set_expires(a, cfg->expiry), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_status(anylock_try_acquire(b), ANYLOCK_BUSY);
    test_sleep(cfg->expiry + cfg->slack);
    ck_status(anylock_try_acquire(b), ANYLOCK_OK);
    /* The first holder's expiry passed and someone else holds it now. */
    ck_status(anylock_release(a), ANYLOCK_NOT_HELD);
    char owner[ANYLOCK_ID_MAX + 1];
    ck_status(anylock_owner(b, owner, sizeof owner), ANYLOCK_OK);
    ck_assert_str_eq(owner, anylock_lock_id(b));
    anylock_lock_free(a);
    anylock_lock_free(b);
    anylock_close(c);
}
END_TEST

START_TEST(t_waiter_outlives_holder)
{
    /* A holder that never releases: the waiter gets the lock once the
     * expiry passes, without any wake-up from the holder. */
    anylock_client *c = client_for("outlive"), *c2 = client_for("outlive");
    anylock_lock *a = lock_for(c, "job");
    ck_status(anylock_lock_set_expires(a, cfg->expiry), ANYLOCK_OK);
    double t0 = test_now();
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    waiter w = {c2, "job", cfg->expiry + cfg->slack + 10, ANYLOCK_INTERNAL, 0};
    wait_thread(&w);
    ck_status(w.status, ANYLOCK_OK);
    double waited = w.acquired_at - t0;
    ck_assert_msg(waited >= cfg->expiry * 0.9 - 0.05, "got the lock after %.3f s, before its expiry", waited);
    ck_assert_msg(waited < cfg->expiry + cfg->slack + 5, "got the lock only after %.3f s", waited);
    anylock_lock_free(a);
    anylock_close(c);
    anylock_close(c2);
}
END_TEST

START_TEST(t_extend)
{
    anylock_client *c = client_for("extend");
    anylock_lock *a = lock_for(c, "job"), *b = lock_for(c, "job");
    ck_status(anylock_lock_set_expires(a, cfg->expiry), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_status(anylock_extend(a, cfg->expiry * 4 + cfg->slack * 2), ANYLOCK_OK);
    test_sleep(cfg->expiry + cfg->slack);
    ck_status(anylock_try_acquire(b), ANYLOCK_BUSY);
    ck_status(anylock_extend(a, ANYLOCK_FOREVER), ANYLOCK_BAD_DURATION);
    ck_status(anylock_extend(a, -1), ANYLOCK_BAD_DURATION);
    ck_status(anylock_release(a), ANYLOCK_OK);
    ck_status(anylock_extend(a, 5), ANYLOCK_NOT_HELD);

    /* A lock taken without an expiry cannot be given one. */
    ck_status(anylock_lock_set_expires(b, ANYLOCK_FOREVER), ANYLOCK_OK);
    ck_status(anylock_acquire(b), ANYLOCK_OK);
    ck_status(anylock_extend(b, 5), ANYLOCK_NOT_EXPIRABLE);
    anylock_info info;
    ck_status(anylock_inspect(c, "job", &info), ANYLOCK_OK);
    ck_assert_int_eq(info.held, 1);
    ck_assert(info.expires_in == ANYLOCK_FOREVER);
    ck_status(anylock_release(b), ANYLOCK_OK);
    anylock_lock_free(a);
    anylock_lock_free(b);
    anylock_close(c);
}
END_TEST

START_TEST(t_release_by_non_owner)
{
    anylock_client *c = client_for("nonowner");
    anylock_lock *a = lock_for(c, "job"), *b = lock_for(c, "job");
    ck_status(anylock_lock_set_expires(a, cfg->expiry), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_status(anylock_release(b), ANYLOCK_NOT_HELD); /* never held by b */
    test_sleep(cfg->expiry + cfg->slack);
    ck_status(anylock_lock_set_expires(b, 30), ANYLOCK_OK);
    ck_status(anylock_try_acquire(b), ANYLOCK_OK);
    /* a's expiry passed: neither its release nor its extend may touch b's lock. */
    ck_status(anylock_extend(a, 30), ANYLOCK_NOT_HELD);
    ck_status(anylock_release(a), ANYLOCK_NOT_HELD);
    int locked = 0;
    ck_status(anylock_locked(b, &locked), ANYLOCK_OK);
    ck_assert_int_eq(locked, 1);
    char owner[ANYLOCK_ID_MAX + 1];
    ck_status(anylock_owner(a, owner, sizeof owner), ANYLOCK_OK);
    ck_assert_str_eq(owner, anylock_lock_id(b));
    ck_status(anylock_release(b), ANYLOCK_OK);
    anylock_lock_free(a);
    anylock_lock_free(b);
    anylock_close(c);
}
END_TEST

START_TEST(t_same_id)
{
    anylock_client *c = client_for("sameid"), *c2 = client_for("sameid");
    anylock_lock *a = lock_for(c, "job"), *b = lock_for(c2, "job");
    ck_status(anylock_lock_set_id(a, "worker-7"), ANYLOCK_OK);
    ck_status(anylock_lock_set_id(b, "worker-7"), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_status(anylock_try_acquire(b), ANYLOCK_ALREADY_HELD);
    /* A waiting acquire by the same owner does not wait for itself. */
    ck_status(anylock_lock_set_timeout(b, 5), ANYLOCK_OK);
    double t0 = test_now();
    ck_status(anylock_acquire(b), ANYLOCK_ALREADY_HELD);
    ck_assert_msg(test_now() - t0 < 2.5, "same-owner acquire waited %.3f s", test_now() - t0);
    char owner[ANYLOCK_ID_MAX + 1];
    ck_status(anylock_owner(b, owner, sizeof owner), ANYLOCK_OK);
    ck_assert_str_eq(owner, "worker-7");
    ck_status(anylock_release(a), ANYLOCK_OK);
    ck_status(anylock_acquire(b), ANYLOCK_OK);
    anylock_lock_free(a);
    anylock_lock_free(b);
    anylock_close(c);
    anylock_close(c2);
}
END_TEST

START_TEST(t_owner_id)
{
    anylock_client *c = client_for("owner");
    anylock_lock *a = lock_for(c, "job"), *b = lock_for(c, "job");
    const char *id = anylock_lock_id(a);
    ck_assert_uint_eq(strlen(id), 24);
    ck_assert_uint_eq(strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"), 24);
    ck_assert_str_ne(id, anylock_lock_id(b));
    char owner[ANYLOCK_ID_MAX + 1];
    ck_status(anylock_owner(a, owner, sizeof owner), ANYLOCK_OK);
    ck_assert_str_eq(owner, "");
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_status(anylock_owner(b, owner, sizeof owner), ANYLOCK_OK);
    if (cfg->excludes)
        ck_assert_str_eq(owner, id);
    char tiny[4];
    ck_status(anylock_owner(b, tiny, sizeof tiny), cfg->excludes ? ANYLOCK_INVALID : ANYLOCK_OK);
    ck_status(anylock_release(a), ANYLOCK_OK);
    ck_status(anylock_lock_set_id(b, "host-1:pid-42"), ANYLOCK_OK);
    ck_assert_str_eq(anylock_lock_id(b), "host-1:pid-42");
    ck_status(anylock_acquire(b), ANYLOCK_OK);
    ck_status(anylock_owner(a, owner, sizeof owner), ANYLOCK_OK);
    if (cfg->excludes)
        ck_assert_str_eq(owner, "host-1:pid-42");
    anylock_lock_free(a);
    anylock_lock_free(b);
    anylock_close(c);
}
END_TEST

START_TEST(t_reset)
{
    anylock_client *c = client_for("reset");
    anylock_lock *a = lock_for(c, "job"), *b = lock_for(c, "job");
    ck_status(anylock_lock_set_expires(a, 30), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_status(anylock_reset(c, "job"), ANYLOCK_OK);
    ck_status(anylock_try_acquire(b), ANYLOCK_OK);
    ck_status(anylock_release(a), ANYLOCK_NOT_HELD);
    ck_status(anylock_lock_reset(b), ANYLOCK_OK);
    ck_status(anylock_reset(c, "never-taken"), ANYLOCK_OK);
    ck_status(anylock_reset(c, ""), ANYLOCK_BAD_NAME);
    anylock_lock_free(a);
    anylock_lock_free(b);
    anylock_close(c);
}
END_TEST

START_TEST(t_reset_wakes_waiter)
{
    anylock_client *c = client_for("resetwake"), *c2 = client_for("resetwake");
    anylock_lock *a = lock_for(c, "job");
    ck_status(anylock_lock_set_expires(a, 60), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    waiter w = {c2, "job", 30, ANYLOCK_INTERNAL, 0};
    pthread_t t;
    pthread_create(&t, NULL, wait_thread, &w);
    test_sleep(0.3);
    double reset_at = test_now();
    ck_status(anylock_reset(c, "job"), ANYLOCK_OK);
    pthread_join(t, NULL);
    ck_status(w.status, ANYLOCK_OK);
    ck_assert_msg(w.acquired_at - reset_at < 5.0, "waiter took %.3f s after reset", w.acquired_at - reset_at);
    anylock_lock_free(a);
    anylock_close(c);
    anylock_close(c2);
}
END_TEST

START_TEST(t_reset_all)
{
    anylock_client *c = client_for("resetall"), *other = client_for("resetall-other");
    anylock_lock *l[3];
    const char *names[3] = {"x", "y", "z"};
    for (int i = 0; i < 3; i++) {
        l[i] = lock_for(c, names[i]);
        ck_status(anylock_acquire(l[i]), ANYLOCK_OK);
    }
    anylock_lock *w = lock_for(other, "x");
    ck_status(anylock_acquire(w), ANYLOCK_OK);
    size_t count = 0;
    ck_status(anylock_reset_all(c, &count), ANYLOCK_OK);
    ck_assert_uint_eq(count, 3);
    for (int i = 0; i < 3; i++) {
        int locked = 1;
        ck_status(anylock_locked(l[i], &locked), ANYLOCK_OK);
        ck_assert_int_eq(locked, 0);
        ck_status(anylock_release(l[i]), ANYLOCK_NOT_HELD);
        anylock_lock_free(l[i]);
    }
    /* Another prefix is untouched. */
    int locked = 0;
    ck_status(anylock_locked(w, &locked), ANYLOCK_OK);
    ck_assert_int_eq(locked, 1);
    ck_status(anylock_release(w), ANYLOCK_OK);
    anylock_lock_free(w);
    anylock_close(c);
    anylock_close(other);
}
END_TEST

typedef struct seen {
    int a, b, other;
    char owner_a[ANYLOCK_ID_MAX + 1];
} seen;

static int collect(const anylock_info *info, void *ud)
{
    seen *s = ud;
    if (!strcmp(info->name, "alpha")) {
        s->a++;
        snprintf(s->owner_a, sizeof s->owner_a, "%s", info->owner);
    } else if (!strcmp(info->name, "beta")) {
        s->b++;
    } else {
        s->other++;
    }
    return 0;
}

START_TEST(t_inspect_list)
{
    anylock_client *c = client_for("list");
    anylock_lock *a = lock_for(c, "alpha"), *b = lock_for(c, "beta");
    ck_status(anylock_lock_set_expires(a, 20), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_status(anylock_acquire(b), ANYLOCK_OK);
    anylock_info info;
    ck_status(anylock_inspect(c, "alpha", &info), ANYLOCK_OK);
    ck_assert_int_eq(info.held, 1);
    ck_assert_str_eq(info.owner, anylock_lock_id(a));
    ck_assert_str_eq(info.name, "alpha");
    ck_assert_msg(info.expires_in > 0 && info.expires_in <= 21, "expires_in %.3f", info.expires_in);
    ck_status(anylock_inspect(c, "gamma", &info), ANYLOCK_OK);
    ck_assert_int_eq(info.held, 0);
    ck_assert_str_eq(info.owner, "");
    if (cfg->can_list) {
        seen s = {0};
        ck_status(anylock_list(c, collect, &s), ANYLOCK_OK);
        ck_assert_int_eq(s.a, 1);
        ck_assert_int_eq(s.b, 1);
        ck_assert_int_eq(s.other, 0);
        ck_assert_str_eq(s.owner_a, anylock_lock_id(a));
        ck_status(anylock_release(b), ANYLOCK_OK);
        memset(&s, 0, sizeof s);
        ck_status(anylock_list(c, collect, &s), ANYLOCK_OK);
        ck_assert_int_eq(s.a + s.b, 1);
    }
    anylock_lock_free(a);
    anylock_lock_free(b);
    anylock_close(c);
}
END_TEST

START_TEST(t_renewal)
{
    anylock_client *c = client_for("renew");
    anylock_lock *a = lock_for(c, "job"), *b = lock_for(c, "job");
    ck_status(anylock_lock_set_expires(a, cfg->expiry), ANYLOCK_OK);
    ck_status(anylock_lock_set_auto_renewal(a, 1), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    double until = test_now() + cfg->expiry * 4 + cfg->slack;
    while (test_now() < until) {
        ck_status(anylock_try_acquire(b), ANYLOCK_BUSY);
        test_sleep(cfg->expiry / 3);
    }
    ck_assert_int_eq(anylock_lock_held(a), 1);
    ck_status(anylock_release(a), ANYLOCK_OK);
    ck_status(anylock_try_acquire(b), ANYLOCK_OK);
    anylock_lock_free(a);
    anylock_lock_free(b);
    anylock_close(c);
}
END_TEST

static atomic_int lost_calls;
static atomic_int lost_why;

static void on_lost(anylock_lock *lock, anylock_status why, void *ud)
{
    (void)lock;
    (void)ud;
    atomic_store(&lost_why, (int)why);
    atomic_fetch_add(&lost_calls, 1);
}

START_TEST(t_lost_callback)
{
    anylock_client *c = client_for("lost");
    anylock_lock *a = lock_for(c, "job"), *thief = lock_for(c, "job");
    atomic_store(&lost_calls, 0);
    ck_status(anylock_lock_set_expires(a, cfg->expiry), ANYLOCK_OK);
    ck_status(anylock_lock_set_auto_renewal(a, 1), ANYLOCK_OK);
    ck_status(anylock_lock_set_lost_callback(a, on_lost, NULL), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    /* Someone force-frees the lock and takes it. */
    ck_status(anylock_reset(c, "job"), ANYLOCK_OK);
    ck_status(anylock_lock_set_expires(thief, 60), ANYLOCK_OK);
    ck_status(anylock_try_acquire(thief), ANYLOCK_OK);
    double until = test_now() + cfg->expiry + cfg->slack + 5;
    while (atomic_load(&lost_calls) == 0 && test_now() < until)
        test_sleep(0.02);
    ck_assert_int_eq(atomic_load(&lost_calls), 1);
    ck_assert_int_eq(atomic_load(&lost_why), ANYLOCK_NOT_HELD);
    ck_assert_int_eq(anylock_lock_held(a), 0);
    ck_status(anylock_release(a), ANYLOCK_NOT_HELD);
    /* The thief's lock was not touched by the loser. */
    int locked = 0;
    ck_status(anylock_locked(thief, &locked), ANYLOCK_OK);
    ck_assert_int_eq(locked, 1);
    anylock_lock_free(a);
    anylock_lock_free(thief);
    anylock_close(c);
}
END_TEST

/* ---- contention ---- */

typedef struct arena {
    atomic_int inside;   /* holders inside the critical section right now */
    atomic_int overlaps; /* times a holder found another one inside */
    int counter;         /* incremented non-atomically under the lock */
    atomic_int failures;
} arena;

/* One contender: iterations of acquire, a slow read-modify-write, release. */
static int contend(anylock_client *c, arena *ar, int iterations)
{
    anylock_lock *l = NULL;
    if (anylock_lock_new(c, "counter", &l) != ANYLOCK_OK)
        return 1;
    anylock_lock_set_expires(l, 30);
    anylock_lock_set_timeout(l, 25);
    for (int i = 0; i < iterations; i++) {
        anylock_status st = anylock_acquire(l);
        if (st != ANYLOCK_OK) {
            fprintf(stderr, "contender: acquire: %s (%s)\n", anylock_strerror(st), anylock_lock_errmsg(l));
            atomic_fetch_add(&ar->failures, 1);
            continue;
        }
        if (atomic_fetch_add(&ar->inside, 1) != 0)
            atomic_fetch_add(&ar->overlaps, 1);
        int v = ar->counter;
        usleep(200);
        ar->counter = v + 1;
        atomic_fetch_sub(&ar->inside, 1);
        st = anylock_release(l);
        if (st != ANYLOCK_OK) {
            fprintf(stderr, "contender: release: %s (%s)\n", anylock_strerror(st), anylock_lock_errmsg(l));
            atomic_fetch_add(&ar->failures, 1);
        }
    }
    anylock_lock_free(l);
    return 0;
}

#define THREADS 8
#define THREAD_ITERATIONS 40

typedef struct thread_arg {
    anylock_client *client;
    arena *arena;
} thread_arg;

static void *contend_thread(void *p)
{
    thread_arg *a = p;
    contend(a->client, a->arena, THREAD_ITERATIONS);
    return NULL;
}

START_TEST(t_threads_contention)
{
    /* Eight threads share one client, as a server's worker threads would. */
    anylock_client *c = client_for("threads");
    arena ar = {0};
    thread_arg arg = {c, &ar};
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, contend_thread, &arg);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    ck_assert_int_eq(atomic_load(&ar.failures), 0);
    ck_assert_int_eq(atomic_load(&ar.overlaps), 0);
    ck_assert_int_eq(ar.counter, THREADS * THREAD_ITERATIONS);
    anylock_close(c);
}
END_TEST

#define PROCESS_ITERATIONS 20

static char process_prefix_url[1024];

static int contend_process(int index, void *p)
{
    (void)index;
    anylock_client *c = NULL;
    if (anylock_open(process_prefix_url, &c) != ANYLOCK_OK) {
        fprintf(stderr, "contender: open: %s\n", anylock_errmsg(c));
        anylock_close(c);
        return 1;
    }
    int rc = contend(c, p, cfg->process_iterations ? cfg->process_iterations : PROCESS_ITERATIONS);
    anylock_close(c);
    return rc;
}

START_TEST(t_processes_contention)
{
    arena *ar = test_shared_alloc(sizeof *ar);
    ck_assert_ptr_nonnull(ar);
    snprintf(process_prefix_url, sizeof process_prefix_url, "%s%cprefix=ct-procs-%ld:", cfg->url,
             strchr(cfg->url, '?') ? '&' : '?', (long)getpid());
    int failed = test_fork_n(cfg->processes, contend_process, ar, 240);
    ck_assert_int_eq(failed, 0);
    ck_assert_int_eq(atomic_load(&ar->failures), 0);
    ck_assert_int_eq(atomic_load(&ar->overlaps), 0);
    ck_assert_int_eq(ar->counter, cfg->processes * (cfg->process_iterations ? cfg->process_iterations : PROCESS_ITERATIONS));
    test_shared_free(ar, sizeof *ar);
}
END_TEST

/* ---- assembly ---- */

static void add(Suite *s, const char *name, const TTest *test, int applies, const char *why_not)
{
    if (!applies) {
        printf("SKIP %s/%s: %s\n", cfg->label, name, why_not);
        return;
    }
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test);
    suite_add_tcase(s, tc);
}

Suite *conformance_suite(const conformance_config *config)
{
    cfg = config;
    static char name[128]; /* Check keeps the pointer */
    snprintf(name, sizeof name, "conformance %s", cfg->label);
    Suite *s = suite_create(name);
    const char *nx = "the backend excludes nobody";
    add(s, "acquire_release", t_acquire_release, 1, NULL);
    add(s, "owner_id", t_owner_id, 1, NULL);
    add(s, "reset", t_reset, cfg->excludes, nx);
    add(s, "try_busy", t_try_busy, cfg->excludes, nx);
    add(s, "timeout", t_timeout, cfg->excludes, nx);
    add(s, "wake_on_release", t_wake_on_release, cfg->excludes, nx);
    add(s, "expiry_frees", t_expiry_frees, cfg->excludes, nx);
    add(s, "waiter_outlives_holder", t_waiter_outlives_holder, cfg->excludes, nx);
    add(s, "extend", t_extend, cfg->excludes, nx);
    add(s, "release_by_non_owner", t_release_by_non_owner, cfg->excludes, nx);
    add(s, "same_id", t_same_id, cfg->excludes, nx);
    add(s, "reset_wakes_waiter", t_reset_wakes_waiter, cfg->excludes, nx);
    add(s, "reset_all", t_reset_all, cfg->excludes && cfg->can_reset_all, "reset-all is not supported");
    add(s, "inspect_list", t_inspect_list, cfg->excludes, nx);
    add(s, "renewal", t_renewal, cfg->excludes, nx);
    add(s, "lost_callback", t_lost_callback, cfg->excludes, nx);
    add(s, "threads_contention", t_threads_contention, cfg->excludes, nx);
    add(s, "processes_contention", t_processes_contention, cfg->excludes && cfg->cross_process && cfg->processes,
        "locks do not cross processes");
    return s;
}

int conformance_run(Suite *suite, Suite *extra)
{
    SRunner *sr = srunner_create(suite);
    if (extra)
        srunner_add_suite(sr, extra);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
