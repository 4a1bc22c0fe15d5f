/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The conformance suite: what every store must do, whatever it is.  Most
 * tests run on every store; those for a capability (tokens, sessions) run
 * where anylock_client_features() says the store has it, and check the
 * status the store must give where it has not.  The modes (shared,
 * semaphore) are in conformance_modes.c.
 */
#include "conformance.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "anylock.h"
#include "conformance_internal.h"
#include "harness.h"

const conformance_config *conformance_cfg;
#define cfg conformance_cfg

void conformance_url(char *url, size_t size, const char *tag)
{
    snprintf(url, size, "%s%cprefix=ct-%s-%ld:", cfg->url, strchr(cfg->url, '?') ? '&' : '?', tag, (long)getpid());
}

anylock_client *conformance_client(const char *tag)
{
    char url[1024];
    conformance_url(url, sizeof url, tag);
    anylock_client *c = NULL;
    anylock_status st = anylock_open(url, &c);
    ck_assert_msg(st == ANYLOCK_OK, "open %s: %s (%s)", url, anylock_strerror(st), anylock_errmsg(c));
    return c;
}

anylock_lock *conformance_lock(anylock_client *c, const char *name)
{
    anylock_lock *l = NULL;
    ck_assert_int_eq(anylock_lock_new(c, name, &l), ANYLOCK_OK);
    return l;
}

double conformance_time_scale(void)
{
    const char *scale = getenv("ANYLOCK_TEST_TIME_SCALE");
    double k = scale ? atof(scale) : 1;
    return k > 1 ? k : 1;
}

/* The store's features, read once per suite (conformance_suite). */
static unsigned features;

unsigned conformance_features(void)
{
    return features;
}

static void read_features(void)
{
    /* While the suite is put together, outside any test: no ck_assert. */
    char url[1024];
    conformance_url(url, sizeof url, "features");
    anylock_client *c = NULL;
    if (anylock_open(url, &c) != ANYLOCK_OK)
        fprintf(stderr, "conformance: cannot open %s: %s\n", url, anylock_errmsg(c));
    features = anylock_client_features(c);
    anylock_close(c);
}

#define client_for conformance_client
#define lock_for conformance_lock

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
    atomic_int found_busy; /* the handshake: it saw the lock held, and now waits */
} waiter;

static void *wait_thread(void *arg)
{
    waiter *w = arg;
    anylock_lock *l = NULL;
    if (anylock_lock_new(w->client, w->name, &l) != ANYLOCK_OK) {
        w->status = ANYLOCK_INTERNAL;
        atomic_store(&w->found_busy, 1);
        return NULL;
    }
    anylock_lock_set_expires(l, 30);
    if (anylock_try_acquire(l) != ANYLOCK_BUSY) {
        w->status = ANYLOCK_INTERNAL; /* it should have been held */
        atomic_store(&w->found_busy, 1);
        anylock_lock_free(l);
        return NULL;
    }
    anylock_lock_set_timeout(l, w->timeout);
    atomic_store(&w->found_busy, 1);
    w->status = anylock_acquire(l);
    w->acquired_at = test_now();
    anylock_lock_free(l);
    return NULL;
}

/* Starts a waiter for name and returns once it found the lock held and went
 * to wait (a short settle lets it block: if it has not yet, it still finds
 * the lock free at once, which the bound allows). */
static void start_waiter(pthread_t *t, waiter *w)
{
    pthread_create(t, NULL, wait_thread, w);
    while (!atomic_load(&w->found_busy))
        test_sleep(0.005);
    test_sleep(0.2);
}

/* How soon a release must wake a waiter on this store. */
static double wake_bound(void)
{
    return cfg->wake_within > 0 ? cfg->wake_within : 1.0;
}

START_TEST(t_wake_on_release)
{
    anylock_client *c = client_for("wake"), *c2 = client_for("wake");
    anylock_lock *a = lock_for(c, "job");
    ck_status(anylock_lock_set_expires(a, 30), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    waiter w = {c2, "job", 20, ANYLOCK_INTERNAL, 0, 0};
    pthread_t t;
    start_waiter(&t, &w);
    double released = test_now();
    ck_status(anylock_release(a), ANYLOCK_OK);
    pthread_join(t, NULL);
    ck_status(w.status, ANYLOCK_OK);
    ck_assert_msg(w.acquired_at - released < wake_bound(), "waiter took %.3f s after release (bound %.3f s)",
                  w.acquired_at - released, wake_bound());
    anylock_lock_free(a);
    anylock_close(c);
    anylock_close(c2);
}
END_TEST

/* Tries l now and then until it is taken (the store freed an expired
 * lock) or seconds have passed; the last answer. */
static anylock_status try_until_taken(anylock_lock *l, double seconds)
{
    double until = test_now() + seconds;
    anylock_status st;
    while ((st = anylock_try_acquire(l)) == ANYLOCK_BUSY && test_now() < until)
        test_sleep(0.05);
    return st;
}

START_TEST(t_expiry_frees)
{
    anylock_client *c = client_for("expiry");
    anylock_lock *a = lock_for(c, "job"), *b = lock_for(c, "job");
    ck_status(anylock_lock_set_expires(a, cfg->expiry), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_status(anylock_try_acquire(b), ANYLOCK_BUSY);
    test_sleep(cfg->expiry);
    /* Its lease passed on this process's clock: the handle says so; the
     * store frees it within its slack. */
    ck_assert_int_eq(anylock_lock_held(a), 0);
    ck_status(try_until_taken(b, cfg->slack), ANYLOCK_OK);
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
    waiter w = {c2, "job", cfg->expiry + cfg->slack + 10, ANYLOCK_INTERNAL, 0, 0};
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
    test_sleep(cfg->expiry);
    ck_status(anylock_lock_set_expires(b, 30), ANYLOCK_OK);
    ck_status(try_until_taken(b, cfg->slack), ANYLOCK_OK);
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
    /* A NULL name is a bad name for every call that takes one. */
    ck_status(anylock_reset(c, NULL), ANYLOCK_BAD_NAME);
    anylock_info info;
    ck_status(anylock_inspect(c, NULL, &info), ANYLOCK_BAD_NAME);
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
    waiter w = {c2, "job", 30, ANYLOCK_INTERNAL, 0, 0};
    pthread_t t;
    start_waiter(&t, &w);
    double reset_at = test_now();
    ck_status(anylock_reset(c, "job"), ANYLOCK_OK);
    pthread_join(t, NULL);
    ck_status(w.status, ANYLOCK_OK);
    ck_assert_msg(w.acquired_at - reset_at < wake_bound(), "waiter took %.3f s after reset (bound %.3f s)",
                  w.acquired_at - reset_at, wake_bound());
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

START_TEST(t_lost_callback)
{
    anylock_client *c = client_for("lost");
    anylock_lock *a = lock_for(c, "job"), *thief = lock_for(c, "job");
    test_lost lost = {0};
    ck_status(anylock_lock_set_expires(a, cfg->expiry), ANYLOCK_OK);
    ck_status(anylock_lock_set_auto_renewal(a, 1), ANYLOCK_OK);
    ck_status(anylock_lock_set_lost_callback(a, test_lost_record, &lost), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    /* Someone force-frees the lock and takes it. */
    ck_status(anylock_reset(c, "job"), ANYLOCK_OK);
    ck_status(anylock_lock_set_expires(thief, 60), ANYLOCK_OK);
    ck_status(anylock_try_acquire(thief), ANYLOCK_OK);
    test_lost_wait(&lost, cfg->expiry + cfg->slack + 5);
    ck_assert_int_eq(atomic_load(&lost.calls), 1);
    ck_assert_int_eq(atomic_load(&lost.why), ANYLOCK_NOT_HELD);
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

#define MAX_ACQUISITIONS 4096

typedef struct arena {
    atomic_int inside;   /* holders inside the critical section right now */
    atomic_int overlaps; /* times a holder found another one inside */
    int counter;         /* incremented non-atomically under the lock */
    atomic_int failures;
    /* The fencing token of the counter's n-th acquisition, written under
     * the lock: the tokens must then rise strictly with the counter. */
    uint64_t tokens[MAX_ACQUISITIONS];
    atomic_int no_token; /* acquisitions whose token could not be read */
} arena;

/* Tokens strictly increase with the order of acquisitions (none repeats,
 * none goes down), on a store that issues them. */
static void check_tokens(const arena *ar)
{
    if (!(conformance_features() & ANYLOCK_FEATURE_TOKEN))
        return;
    ck_assert_int_eq(atomic_load(&ar->no_token), 0);
    int n = ar->counter < MAX_ACQUISITIONS ? ar->counter : MAX_ACQUISITIONS;
    for (int i = 1; i < n; i++)
        ck_assert_msg(ar->tokens[i] > ar->tokens[i - 1], "acquisition %d got token %llu after %llu", i,
                      (unsigned long long)ar->tokens[i], (unsigned long long)ar->tokens[i - 1]);
}

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
        uint64_t token = 0;
        if (anylock_lock_token(l, &token) == ANYLOCK_OK) {
            if (v < MAX_ACQUISITIONS)
                ar->tokens[v] = token;
        } else {
            atomic_fetch_add(&ar->no_token, 1);
        }
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
    static arena ar;
    memset(&ar, 0, sizeof ar);
    thread_arg arg = {c, &ar};
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, contend_thread, &arg);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    ck_assert_int_eq(atomic_load(&ar.failures), 0);
    ck_assert_int_eq(atomic_load(&ar.overlaps), 0);
    ck_assert_int_eq(ar.counter, THREADS * THREAD_ITERATIONS);
    check_tokens(&ar);
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
    check_tokens(ar);
    test_shared_free(ar, sizeof *ar);
}
END_TEST

/* ---- interface v2: tokens, metadata, ownership, fork, callbacks ---- */

START_TEST(t_tokens)
{
    anylock_client *c = client_for("tokens");
    anylock_lock *a = lock_for(c, "job"), *b = lock_for(c, "job");
    uint64_t ta = 0, tb = 0;
    ck_status(anylock_lock_token(a, &ta), ANYLOCK_NOT_HELD);
    ck_status(anylock_lock_token(NULL, &ta), ANYLOCK_INVALID);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    if (!(anylock_client_features(c) & ANYLOCK_FEATURE_TOKEN)) {
        ck_status(anylock_lock_token(a, &ta), ANYLOCK_NO_TOKEN);
    } else {
        ck_status(anylock_lock_token(a, &ta), ANYLOCK_OK);
        ck_status(anylock_release(a), ANYLOCK_OK);
        ck_status(anylock_lock_token(a, &ta), ANYLOCK_NOT_HELD);
        ck_status(anylock_acquire(b), ANYLOCK_OK);
        ck_status(anylock_lock_token(b, &tb), ANYLOCK_OK);
        ck_assert_msg(tb > ta, "the next acquisition got token %llu after %llu", (unsigned long long)tb,
                      (unsigned long long)ta);
        ck_status(anylock_release(b), ANYLOCK_OK);
        /* Another name of the same store: still a later acquisition. */
        anylock_lock *o = lock_for(c, "other");
        uint64_t to = 0;
        ck_status(anylock_acquire(o), ANYLOCK_OK);
        ck_status(anylock_lock_token(o, &to), ANYLOCK_OK);
        ck_assert_msg(to > tb, "token %llu on another name after %llu", (unsigned long long)to,
                      (unsigned long long)tb);
        anylock_lock_free(o);
    }
    anylock_lock_free(a);
    anylock_lock_free(b);
    anylock_close(c);
}
END_TEST

START_TEST(t_holder_metadata)
{
    anylock_client *c = client_for("meta");
    anylock_lock *a = lock_for(c, "job");
    static const char label[] = "backup --full caf\xc3\xa9";
    ck_status(anylock_lock_set_label(a, label), ANYLOCK_OK);
    ck_status(anylock_lock_set_label(a, "bad\nlabel"), ANYLOCK_INVALID);
    ck_status(anylock_lock_set_label(a, label), ANYLOCK_OK);
    double t0 = test_wall_now();
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    anylock_info info;
    ck_status(anylock_inspect(c, "job", &info), ANYLOCK_OK);
    ck_assert_int_eq(info.held, 1);
    ck_assert_uint_eq(info.holders, 1);
    ck_assert_int_eq(info.mode, ANYLOCK_EXCLUSIVE);
    ck_assert_uint_eq(info.name_len, 3);
    ck_assert_uint_eq(info.owner_len, strlen(anylock_lock_id(a)));
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    host[ANYLOCK_HOST_MAX] = '\0';
    ck_assert_str_eq(info.host, host);
    ck_assert_int_eq(info.pid, (long)getpid());
    ck_assert_msg(info.since >= t0 - 5 && info.since <= test_wall_now() + 5, "since %.3f, now %.3f", info.since,
                  test_wall_now());
    ck_assert_str_eq(info.label, label);
    anylock_lock_free(a);
    anylock_close(c);
}
END_TEST

typedef struct holder_seen {
    int n;
    char id[ANYLOCK_ID_MAX + 1];
    long pid;
} holder_seen;

static int count_holder(const anylock_holder *h, void *ud)
{
    holder_seen *s = ud;
    s->n++;
    snprintf(s->id, sizeof s->id, "%.*s", (int)h->id_len, h->id);
    s->pid = h->pid;
    return 0;
}

START_TEST(t_holders)
{
    anylock_client *c = client_for("holders");
    anylock_lock *a = lock_for(c, "job");
    holder_seen s = {0};
    ck_status(anylock_holders(c, "job", count_holder, &s), ANYLOCK_OK);
    ck_assert_int_eq(s.n, 0);
    ck_status(anylock_holders(c, NULL, count_holder, &s), ANYLOCK_BAD_NAME);
    ck_status(anylock_holders(c, "job", NULL, &s), ANYLOCK_INVALID);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_status(anylock_holders(c, "job", count_holder, &s), ANYLOCK_OK);
    ck_assert_int_eq(s.n, 1);
    ck_assert_str_eq(s.id, anylock_lock_id(a));
    if (!cfg->no_metadata)
        ck_assert_int_eq(s.pid, (long)getpid());
    anylock_lock_free(a);
    anylock_close(c);
}
END_TEST

/* Ownership is the id (python-redis-lock's test_extend_another_instance and
 * test_given_id): another handle with the holder's id may extend and release
 * the lock; on session-bound stores only the holding handle can. */
START_TEST(t_owner_is_the_id)
{
    anylock_client *c = client_for("sameowner"), *c2 = client_for("sameowner");
    anylock_lock *a = lock_for(c, "job"), *b = lock_for(c2, "job");
    ck_status(anylock_lock_set_id(a, "shared-owner-7"), ANYLOCK_OK);
    ck_status(anylock_lock_set_id(b, "shared-owner-7"), ANYLOCK_OK);
    ck_status(anylock_lock_set_expires(a, 30), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    int locked = 0;
    if (anylock_client_features(c) & ANYLOCK_FEATURE_SESSION) {
        ck_status(anylock_extend(b, 30), ANYLOCK_NOT_HELD);
        ck_status(anylock_release(b), ANYLOCK_NOT_HELD);
        ck_status(anylock_locked(a, &locked), ANYLOCK_OK);
        ck_assert_int_eq(locked, 1);
        ck_status(anylock_release(a), ANYLOCK_OK);
    } else {
        if (anylock_client_features(c) & ANYLOCK_FEATURE_EXTEND) {
            ck_status(anylock_extend(b, 30), ANYLOCK_OK);
            ck_assert_int_eq(anylock_lock_held(b), 1); /* the store says b's owner has it */
        }
        ck_status(anylock_release(b), ANYLOCK_OK);
        ck_assert_int_eq(anylock_lock_held(b), 0);
        ck_status(anylock_locked(a, &locked), ANYLOCK_OK);
        ck_assert_int_eq(locked, 0);
        ck_status(anylock_release(a), ANYLOCK_NOT_HELD); /* b released it */
    }
    anylock_lock_free(a);
    anylock_lock_free(b);
    anylock_close(c);
    anylock_close(c2);
}
END_TEST

/* A positive expiry never rounds to "never expires". */
START_TEST(t_tiny_expiry)
{
    anylock_client *c = client_for("tiny");
    anylock_lock *a = lock_for(c, "job"), *b = lock_for(c, "job");
    ck_status(anylock_lock_set_expires(a, 1e-10), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    anylock_info info;
    ck_status(anylock_inspect(c, "job", &info), ANYLOCK_OK);
    if (info.held)
        ck_assert_msg(!isinf(info.expires_in), "a 1e-10 s expiry became \"never\"");
    /* Freed at the store's resolution (plus its slack) at the latest. */
    ck_status(anylock_lock_set_expires(b, 30), ANYLOCK_OK);
    ck_status(anylock_lock_set_timeout(b, cfg->expiry + cfg->slack + 3), ANYLOCK_OK);
    ck_status(anylock_acquire(b), ANYLOCK_OK);
    anylock_lock_free(a);
    anylock_lock_free(b);
    anylock_close(c);
}
END_TEST

/* anylock_extend sets the expiry that renewal keeps from then on. */
START_TEST(t_extend_kept_by_renewal)
{
    anylock_client *c = client_for("extendkept");
    anylock_lock *a = lock_for(c, "job");
    ck_status(anylock_lock_set_expires(a, cfg->expiry), ANYLOCK_OK);
    ck_status(anylock_lock_set_auto_renewal(a, 1), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    double longer = cfg->expiry * 8 + cfg->slack;
    ck_status(anylock_extend(a, longer), ANYLOCK_OK);
    /* Several renewal periods of the original expiry. */
    test_sleep(cfg->expiry * 2);
    anylock_info info;
    ck_status(anylock_inspect(c, "job", &info), ANYLOCK_OK);
    ck_assert_int_eq(info.held, 1);
    if (!isinf(info.expires_in))
        ck_assert_msg(info.expires_in > cfg->expiry * 3, "renewal shrank a %.2f s extension to %.2f s", longer,
                      info.expires_in);
    ck_assert_int_eq(anylock_lock_held(a), 1);
    anylock_lock_free(a);
    anylock_close(c);
}
END_TEST

/* After fork(), the child must not use the parent's client: every call
 * answers ANYLOCK_FORKED and sends nothing; the parent's lock is intact and
 * a client the child opens works. */
START_TEST(t_fork)
{
    anylock_client *c = client_for("fork");
    anylock_lock *a = lock_for(c, "job");
    /* On a session store an expiry would start the library's watch thread:
     * forking a process with threads is what apps do, but ThreadSanitizer
     * may hang in such a child, so this test forks a single thread. */
    int session = (anylock_client_features(c) & ANYLOCK_FEATURE_SESSION) != 0;
    ck_status(anylock_lock_set_expires(a, session ? ANYLOCK_FOREVER : 30), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    char url[1024];
    conformance_url(url, sizeof url, "fork");
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int bad = 0;
        anylock_info info;
        anylock_lock *l = NULL;
        bad |= anylock_release(a) != ANYLOCK_FORKED;
        bad |= anylock_extend(a, 5) != ANYLOCK_FORKED;
        bad |= anylock_try_acquire(a) != ANYLOCK_FORKED;
        bad |= anylock_inspect(c, "job", &info) != ANYLOCK_FORKED;
        bad |= anylock_reset(c, "job") != ANYLOCK_FORKED;
        bad |= anylock_lock_new(c, "x", &l) != ANYLOCK_FORKED;
        if (cfg->cross_process) {
            /* A client of the child's own sees the parent's lock. */
            anylock_client *own = NULL;
            bad |= anylock_open(url, &own) != ANYLOCK_OK;
            bad |= anylock_inspect(own, "job", &info) != ANYLOCK_OK ||
                   (cfg->excludes && (!info.held || strcmp(info.owner, anylock_lock_id(a))));
            anylock_close(own);
        }
        /* The inherited handles are left alone (their connections are the
         * parent's); _exit skips the test harness's atexit handlers. */
        _exit(bad);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child saw wrong statuses (%d)", status);
    ck_assert_int_eq(anylock_lock_held(a), 1);
    int locked = 0;
    ck_status(anylock_locked(a, &locked), ANYLOCK_OK);
    ck_assert_int_eq(locked, cfg->excludes);
    ck_status(anylock_release(a), ANYLOCK_OK);
    anylock_lock_free(a);
    anylock_close(c);
}
END_TEST

/* ---- the lost-lock callback may call the library ---- */

typedef enum cb_action {
    CB_ACQUIRE,     /* a blocking acquire while a thief holds it: times out */
    CB_TRY_ACQUIRE, /* free again (reset): takes it back */
    CB_EXTEND,
    CB_RELEASE,
    CB_FREE,
    CB_CLOSE,
    CB_ACTIONS_
} cb_action;

typedef struct cb_ctx {
    cb_action action;
    anylock_client *client;
    atomic_int thief_ready; /* the thief holds the lock (CB_ACQUIRE, CB_EXTEND) */
    atomic_int done;
    atomic_int closing; /* the test is about to close the client */
    anylock_status st;
    int held_inside;
    char why[ANYLOCK_ERRMSG_MAX]; /* anylock_lock_errmsg() as the callback starts */
} cb_ctx;

static void on_lost_act(anylock_lock *lock, anylock_status why, void *ud)
{
    (void)why;
    cb_ctx *x = ud;
    snprintf(x->why, sizeof x->why, "%s", anylock_lock_errmsg(lock));
    x->held_inside = anylock_lock_held(lock);
    /* On a store that reports the loss at once, the callback can run before
     * the thief took the lock: wait for it. */
    if (x->action == CB_ACQUIRE || x->action == CB_EXTEND) {
        double until = test_now() + 10;
        while (!atomic_load(&x->thief_ready) && test_now() < until)
            test_sleep(0.005);
    }
    switch (x->action) {
    case CB_ACQUIRE:
        x->st = anylock_acquire(lock);
        break;
    case CB_TRY_ACQUIRE:
        x->st = anylock_try_acquire(lock);
        break;
    case CB_EXTEND:
        x->st = anylock_extend(lock, 30);
        break;
    case CB_RELEASE:
        x->st = anylock_release(lock);
        break;
    case CB_FREE:
        anylock_lock_free(lock);
        x->st = ANYLOCK_OK;
        break;
    case CB_CLOSE:
        x->st = anylock_close(x->client);
        break;
    default:
        break;
    }
    atomic_store(&x->done, 1);
    /* A handle freed from its callback is finished when the callback
     * returns: stay in it while the test closes the client, which must
     * count the handle as freed. */
    if (x->action == CB_FREE) {
        double until = test_now() + 10;
        while (!atomic_load(&x->closing) && test_now() < until)
            test_sleep(0.005);
        test_sleep(0.05);
    }
}

START_TEST(t_callback_calls_library)
{
    cb_ctx x = {.action = (cb_action)_i};
    anylock_client *c = client_for("callback");
    x.client = c;
    anylock_lock *a = lock_for(c, "job"), *other = lock_for(c, "other");
    anylock_lock *thief = NULL;
    ck_status(anylock_lock_set_expires(a, cfg->expiry), ANYLOCK_OK);
    ck_status(anylock_lock_set_auto_renewal(a, 1), ANYLOCK_OK);
    ck_status(anylock_lock_set_lost_callback(a, on_lost_act, &x), ANYLOCK_OK);
    /* The blocking acquire inside the callback waits longer than other's
     * expiry: other must keep being renewed meanwhile. */
    if (x.action == CB_ACQUIRE)
        ck_status(anylock_lock_set_timeout(a, cfg->expiry * 3 + cfg->slack), ANYLOCK_OK);
    ck_status(anylock_lock_set_expires(other, cfg->expiry), ANYLOCK_OK);
    ck_status(anylock_lock_set_auto_renewal(other, 1), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_status(anylock_acquire(other), ANYLOCK_OK);
    ck_status(anylock_reset(c, "job"), ANYLOCK_OK);
    if (x.action == CB_ACQUIRE || x.action == CB_EXTEND) {
        thief = lock_for(c, "job");
        ck_status(anylock_lock_set_expires(thief, 60), ANYLOCK_OK);
        ck_status(anylock_try_acquire(thief), ANYLOCK_OK);
        atomic_store(&x.thief_ready, 1);
    }
    double until = test_now() + cfg->expiry * 5 + cfg->slack + 10;
    while (!atomic_load(&x.done) && test_now() < until)
        test_sleep(0.02);
    ck_assert_msg(atomic_load(&x.done), "the callback did not finish: a deadlock");
    ck_assert_int_eq(x.held_inside, 0); /* the loss is visible when the callback runs */
    ck_assert_msg(x.why[0], "the lock's message does not say why it was lost");
    static const anylock_status want[CB_ACTIONS_] = {
        [CB_ACQUIRE] = ANYLOCK_TIMEOUT, [CB_TRY_ACQUIRE] = ANYLOCK_OK, [CB_EXTEND] = ANYLOCK_NOT_HELD,
        [CB_RELEASE] = ANYLOCK_NOT_HELD, [CB_FREE] = ANYLOCK_OK,       [CB_CLOSE] = ANYLOCK_MISUSE,
    };
    ck_assert_msg(x.st == want[x.action], "action %d in the callback: got %s, want %s", x.action,
                  anylock_status_name(x.st), anylock_status_name(want[x.action]));
    /* The other lock was renewed all along. */
    ck_assert_msg(anylock_lock_held(other), "the other lock was lost while the callback ran: %s",
                  anylock_lock_errmsg(other));
    anylock_info info;
    ck_status(anylock_inspect(c, "other", &info), ANYLOCK_OK);
    ck_assert_int_eq(info.held, 1);
    ck_assert_str_eq(info.owner, anylock_lock_id(other));
    if (x.action == CB_TRY_ACQUIRE)
        ck_assert_int_eq(anylock_lock_held(a), 1);
    if (x.action != CB_FREE)
        anylock_lock_free(a);
    anylock_lock_free(other);
    anylock_lock_free(thief);
    atomic_store(&x.closing, 1);
    ck_status(anylock_close(c), ANYLOCK_OK);
}
END_TEST

/* ---- the features table of docs/guarantees.md ---- */

/* The scheme of the URL under test ("redis" of "redis://..."). */
static void url_scheme(char *out, size_t size)
{
    size_t n = strcspn(cfg->url, ":");
    snprintf(out, size, "%.*s", (int)n, cfg->url);
}

/* The built-in stores with a row of their own (migrate:// and faults:// take
 * their stores' features; test programs register toy schemes). */
static int has_features_row(void)
{
    static const char *const documented[] = {"sqlite", "file", "redis",  "redis+unix",
                                             "memcached", "postgres", "etcd", "memory", "open"};
    char scheme[64];
    url_scheme(scheme, sizeof scheme);
    for (size_t i = 0; i < sizeof documented / sizeof *documented; i++)
        if (!strcmp(scheme, documented[i]))
            return 1;
    return 0;
}

START_TEST(t_features_documented)
{
    static const struct {
        const char *column;
        unsigned bit;
    } cols[] = {
        {"session", ANYLOCK_FEATURE_SESSION}, {"fair", ANYLOCK_FEATURE_FAIR},
        {"token", ANYLOCK_FEATURE_TOKEN},     {"shared", ANYLOCK_FEATURE_SHARED},
        {"semaphore", ANYLOCK_FEATURE_SEMAPHORE}, {"list", ANYLOCK_FEATURE_LIST},
    };
    const char *top = getenv("top_srcdir");
    char path[4096], scheme[64], want[96];
    snprintf(path, sizeof path, "%s/docs/guarantees.md", top && *top ? top : "..");
    url_scheme(scheme, sizeof scheme);
    snprintf(want, sizeof want, "| `%s://` |", scheme);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f, "cannot read %s (set top_srcdir)", path);
    char line[512];
    int found = 0;
    while (!found && fgets(line, sizeof line, f))
        found = !strncmp(line, want, strlen(want));
    fclose(f);
    ck_assert_msg(found, "%s has no row for %s:// in its features table", path, scheme);
    unsigned have = conformance_features();
    char *cell = line + strlen(want);
    for (size_t i = 0; i < sizeof cols / sizeof *cols; i++) {
        char *end = strchr(cell, '|');
        ck_assert_msg(end, "%s: the %s:// row has no %s column", path, scheme, cols[i].column);
        *end = '\0';
        int yes = strstr(cell, "yes") != NULL;
        ck_assert_msg(yes == !!(have & cols[i].bit), "%s says %s:// %s %s; the store says otherwise", path, scheme,
                      yes ? "has" : "has no", cols[i].column);
        cell = end + 1;
    }
}
END_TEST

/* ---- fencing tokens: what they are for ---- */

/* A resource that refuses writes with a token lower than the highest it has
 * seen, as docs/guarantees.md describes: what a lock alone cannot do
 * against a holder that was paused past its lease. */
typedef struct fenced_resource {
    pthread_mutex_t mu; /* process-shared */
    uint64_t highest;
    int accepted, refused;
} fenced_resource;

static int fenced_write(fenced_resource *r, uint64_t token)
{
    pthread_mutex_lock(&r->mu);
    int ok = token >= r->highest;
    if (ok) {
        r->highest = token;
        r->accepted++;
    } else {
        r->refused++;
    }
    pthread_mutex_unlock(&r->mu);
    return ok;
}

static char fence_url[1024];

/* The paused holder: takes the lock, says its token, and (once resumed
 * after its lease passed) writes with it. */
static int paused_holder(fenced_resource *r, int to_parent, int from_parent)
{
    anylock_client *c = NULL;
    if (anylock_open(fence_url, &c) != ANYLOCK_OK)
        return 1;
    anylock_lock *l = NULL;
    if (anylock_lock_new(c, "fenced", &l) != ANYLOCK_OK)
        return 1;
    anylock_lock_set_expires(l, cfg->expiry);
    uint64_t token = 0;
    if (anylock_acquire(l) != ANYLOCK_OK || anylock_lock_token(l, &token) != ANYLOCK_OK)
        return 1;
    if (write(to_parent, &token, sizeof token) != (ssize_t)sizeof token)
        return 1;
    char go;
    if (read(from_parent, &go, 1) != 1)
        return 1;
    /* It believes it still holds the lock: it acts on the resource. */
    int accepted = fenced_write(r, token);
    return accepted ? 2 : 0; /* 0: refused, as it must be */
}

START_TEST(t_fencing)
{
    fenced_resource *r = test_shared_alloc(sizeof *r);
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&r->mu, &ma);
    pthread_mutexattr_destroy(&ma);
    conformance_url(fence_url, sizeof fence_url, "fence");
    int up[2], down[2];
    ck_assert_int_eq(pipe(up), 0);
    ck_assert_int_eq(pipe(down), 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(up[0]);
        close(down[1]);
        _exit(paused_holder(r, up[1], down[0]));
    }
    close(up[1]);
    close(down[0]);
    uint64_t old = 0;
    ck_assert_int_eq(read(up[0], &old, sizeof old), (ssize_t)sizeof old);
    /* The holder is paused (a GC pause, a suspended VM) past its lease. */
    kill(pid, SIGSTOP);
    anylock_client *c = client_for("fence");
    anylock_lock *l = lock_for(c, "fenced");
    ck_status(anylock_lock_set_expires(l, 30), ANYLOCK_OK);
    ck_status(anylock_lock_set_timeout(l, cfg->expiry + cfg->slack + 10), ANYLOCK_OK);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    uint64_t fresh = 0;
    ck_status(anylock_lock_token(l, &fresh), ANYLOCK_OK);
    ck_assert_msg(fresh > old, "the new holder's token %llu is not above the paused one's %llu",
                  (unsigned long long)fresh, (unsigned long long)old);
    ck_assert(fenced_write(r, fresh)); /* the new holder's write is taken */
    kill(pid, SIGCONT);
    char go = 'g';
    ck_assert_int_eq(write(down[1], &go, 1), 1);
    int status = 0;
    waitpid(pid, &status, 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "the paused holder's late write was %s", WEXITSTATUS(status) == 2 ? "accepted" : "not tried");
    ck_assert_int_eq(r->accepted, 1);
    ck_assert_int_eq(r->refused, 1);
    close(up[0]);
    close(down[1]);
    anylock_lock_free(l);
    anylock_close(c);
    pthread_mutex_destroy(&r->mu);
    test_shared_free(r, sizeof *r);
}
END_TEST

/* ---- assembly ---- */

void conformance_add_loop(Suite *s, const char *name, const TTest *test, int runs, int applies,
                          const char *why_not)
{
    if (!applies) {
        printf("SKIP %s/%s: %s\n", cfg->label, name, why_not);
        return;
    }
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test, 0, runs);
    suite_add_tcase(s, tc);
}

void conformance_add(Suite *s, const char *name, const TTest *test, int applies, const char *why_not)
{
    conformance_add_loop(s, name, test, 1, applies, why_not);
}

#define add conformance_add

Suite *conformance_suite(const conformance_config *config)
{
    /* Under valgrind or a sanitizer every call is many times slower:
     * ANYLOCK_TEST_TIME_SCALE (set by scripts/check.sh) stretches the short
     * expiries the tests use, so that they test the store, not the speed of
     * the instrumented build.  The suite keeps this copy. */
    static conformance_config scaled;
    scaled = *config;
    double k = conformance_time_scale();
    if (k > 1) {
        scaled.expiry *= k;
        scaled.slack *= k;
        if (scaled.wake_within > 0)
            scaled.wake_within *= k;
    }
    cfg = &scaled;
    read_features();
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
    unsigned f = conformance_features();
    add(s, "tokens", t_tokens, cfg->excludes, nx);
    add(s, "holder_metadata", t_holder_metadata, cfg->excludes && !cfg->no_metadata,
        "the store keeps no holder metadata");
    add(s, "holders", t_holders, cfg->excludes, nx);
    add(s, "owner_is_the_id", t_owner_is_the_id, cfg->excludes, nx);
    add(s, "tiny_expiry", t_tiny_expiry, cfg->excludes && (f & ANYLOCK_FEATURE_INSPECT), "no inspect");
    add(s, "extend_kept_by_renewal", t_extend_kept_by_renewal, cfg->excludes && (f & ANYLOCK_FEATURE_EXTEND),
        "no extend");
    add(s, "fork", t_fork, 1, NULL);
    add(s, "features_documented", t_features_documented, has_features_row(),
        "no row of its own in the features table");
    /* (A paused holder of a session-bound store keeps its session, and so
     * its lock: there the test would wait for it.) */
    add(s, "fencing", t_fencing,
        cfg->excludes && cfg->cross_process && (f & ANYLOCK_FEATURE_TOKEN) && !(f & ANYLOCK_FEATURE_SESSION),
        "no tokens, a session-bound store, or locks do not cross processes");
    conformance_add_loop(s, "callback_calls_library", t_callback_calls_library, CB_ACTIONS_,
                         cfg->excludes && (f & ANYLOCK_FEATURE_EXTEND) && (f & ANYLOCK_FEATURE_RESET),
                         "needs extend and reset");
    conformance_add_modes(s);
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
