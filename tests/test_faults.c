/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * faults://: the wrapped store passes the conformance suite untouched, and
 * each fault does what include/anylock_faults.h says, from the URL and at
 * run time.
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "anylock.h"
#include "anylock_faults.h"
#include "check_status.h"
#include "conformance.h"
#include "harness.h"

static anylock_lock *lock_on(anylock_client *c, const char *name, double expires)
{
    anylock_lock *l = NULL;
    ck_status(anylock_lock_new(c, name, &l), ANYLOCK_OK);
    ck_status(anylock_lock_set_expires(l, expires), ANYLOCK_OK);
    return l;
}

START_TEST(t_urls)
{
    static const struct {
        const char *url;
        anylock_status want;
    } cases[] = {
        {"faults://", ANYLOCK_OK},
        {"faults://?store=memory://elsewhere&fail_acquire=2:CONNECT&chaos=0.1&seed=7", ANYLOCK_OK},
        {"faults://host", ANYLOCK_URL_MALFORMED},
        {"faults://?fail_acquire=x", ANYLOCK_URL_BAD_PARAM},
        {"faults://?fail_acquire=1:NOSUCH", ANYLOCK_URL_BAD_PARAM},
        {"faults://?acquire_delay=1e3", ANYLOCK_URL_BAD_PARAM},
        {"faults://?chaos=2", ANYLOCK_URL_BAD_PARAM},
        {"faults://?bogus=1", ANYLOCK_URL_UNKNOWN_PARAM},
        {"faults://?store=memory://x%3Fprefix%3Dp:", ANYLOCK_URL_BAD_PARAM},
        {"faults://?store=faults://", ANYLOCK_URL_BAD_PARAM},
        {"faults://?store=nosuch://x", ANYLOCK_URL_UNKNOWN_SCHEME},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        anylock_client *c = NULL;
        anylock_status st = anylock_open(cases[i].url, &c);
        ck_assert_msg(st == cases[i].want, "%s: got %s (%s)", cases[i].url, anylock_status_name(st),
                      anylock_errmsg(c));
        anylock_close(c);
    }
}
END_TEST

START_TEST(t_injected_failures)
{
    anylock_client *c = open_ok("faults://?store=memory://inj&fail_acquire=2:CONNECT&fail_release=1&fail_extend=1:TIMEOUT");
    anylock_lock *l = lock_on(c, "job", 30);
    ck_status(anylock_acquire(l), ANYLOCK_CONNECT);
    ck_assert_ptr_nonnull(strstr(anylock_lock_errmsg(l), "on purpose"));
    ck_status(anylock_try_acquire(l), ANYLOCK_CONNECT);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    ck_status(anylock_extend(l, 30), ANYLOCK_TIMEOUT);
    ck_assert_int_eq(anylock_lock_held(l), 1); /* a failed extend keeps it */
    ck_status(anylock_extend(l, 30), ANYLOCK_OK);
    ck_status(anylock_release(l), ANYLOCK_IO);
    ck_assert_int_eq(anylock_lock_held(l), 0);
    int locked = 0;
    ck_status(anylock_locked(l, &locked), ANYLOCK_OK);
    ck_assert_int_eq(locked, 1); /* still in the store: the release never went */
    ck_status(anylock_release(l), ANYLOCK_OK); /* a retry frees it */
    ck_status(anylock_locked(l, &locked), ANYLOCK_OK);
    ck_assert_int_eq(locked, 0);
    anylock_lock_free(l);
    anylock_close(c);
}
END_TEST

START_TEST(t_acquire_delay)
{
    anylock_client *c = open_ok("faults://?store=memory://delay&acquire_delay=0.3");
    anylock_lock *l = lock_on(c, "job", 30);
    double t0 = test_now();
    ck_status(anylock_try_acquire(l), ANYLOCK_OK);
    ck_assert_msg(test_now() - t0 >= 0.29, "no delay: %.3f s", test_now() - t0);
    ck_status(anylock_release(l), ANYLOCK_OK);
    ck_status(anylock_lock_set_timeout(l, 0.1), ANYLOCK_OK);
    t0 = test_now();
    ck_status(anylock_acquire(l), ANYLOCK_TIMEOUT); /* the delay outlasts the wait */
    ck_assert_msg(test_now() - t0 < 0.29, "the wait of 0.1 s took %.3f s", test_now() - t0);
    anylock_lock_free(l);
    anylock_close(c);
}
END_TEST

START_TEST(t_lose_after)
{
    anylock_client *c = open_ok("faults://?store=memory://lose&lose_after=0.3");
    anylock_lock *l = lock_on(c, "job", 30), *other = lock_on(c, "job", 30);
    test_lost seen = {0};
    ck_status(anylock_lock_set_lost_callback(l, test_lost_record, &seen), ANYLOCK_OK);
    double t0 = test_now();
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    test_lost_wait(&seen, 5);
    ck_assert_int_eq(atomic_load(&seen.calls), 1);
    ck_assert_int_eq(atomic_load(&seen.why), ANYLOCK_NOT_HELD);
    ck_assert_msg(seen.at - t0 >= 0.29 && seen.at - t0 < 3, "lost after %.3f s", seen.at - t0);
    ck_assert_int_eq(anylock_lock_held(l), 0);
    ck_status(anylock_release(l), ANYLOCK_NOT_HELD);
    ck_assert_ptr_nonnull(strstr(anylock_lock_errmsg(l), "on purpose"));
    /* The store let it go. */
    ck_status(anylock_lock_set_timeout(other, 2), ANYLOCK_OK);
    ck_status(anylock_acquire(other), ANYLOCK_OK);
    anylock_lock_free(l);
    anylock_lock_free(other);
    anylock_close(c);
}
END_TEST

/* The wrapper in front of a real store: the lock is the store's (a client
 * of the store itself sees it held), and a fault lets it go there too. */
START_TEST(t_over_a_real_store)
{
    if (!anylock_backend_available("sqlite"))
        return; /* built --without-sqlite */
    char dir[] = "/tmp/anylock-faults-XXXXXX", url[600], direct[256];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(direct, sizeof direct, "sqlite:///%s/locks.db", dir);
    snprintf(url, sizeof url, "faults://?store=%s&lose_after=0.5", direct);
    anylock_client *c = open_ok(url), *d = open_ok(direct);
    anylock_lock *l = lock_on(c, "job", 30), *other = lock_on(d, "job", 30);
    test_lost seen = {0};
    ck_status(anylock_lock_set_lost_callback(l, test_lost_record, &seen), ANYLOCK_OK);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    ck_status(anylock_try_acquire(other), ANYLOCK_BUSY);
    test_lost_wait(&seen, 5);
    ck_assert_int_eq(atomic_load(&seen.calls), 1);
    ck_status(anylock_lock_set_timeout(other, 2), ANYLOCK_OK);
    ck_status(anylock_acquire(other), ANYLOCK_OK);
    ck_status(anylock_release(other), ANYLOCK_OK);
    anylock_lock_free(l);
    anylock_lock_free(other);
    ck_status(anylock_close(c), ANYLOCK_OK);
    ck_status(anylock_close(d), ANYLOCK_OK);
    char path[600];
    static const char *const files[] = {"locks.db", "locks.db-wal", "locks.db-shm", "locks.db-wake"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}
END_TEST

START_TEST(t_lose_after_renewals)
{
    anylock_client *c = open_ok("faults://?store=memory://renewals&lose_after_renewals=2");
    anylock_lock *l = lock_on(c, "job", 0.3);
    test_lost seen = {0};
    ck_status(anylock_lock_set_auto_renewal(l, 1), ANYLOCK_OK);
    ck_status(anylock_lock_set_lost_callback(l, test_lost_record, &seen), ANYLOCK_OK);
    double t0 = test_now();
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    test_lost_wait(&seen, 5);
    ck_assert_int_eq(atomic_load(&seen.calls), 1);
    ck_assert_int_eq(atomic_load(&seen.why), ANYLOCK_NOT_HELD);
    /* A 0.3 s lease renews every 0.1 s: the first renewal worked, the
     * second (0.2 s in) found it gone. */
    ck_assert_msg(seen.at - t0 >= 0.15, "lost after %.3f s, at the first renewal", seen.at - t0);
    anylock_lock_free(l);
    anylock_close(c);
}
END_TEST

START_TEST(t_renewal_pause)
{
    /* A renewal stalled past the lease: the loss is reported at the lease's
     * end, with TIMEOUT, while the renewal still hangs. */
    anylock_client *c = open_ok("faults://?store=memory://pause&renewal_pause=1.5");
    anylock_lock *l = lock_on(c, "job", 0.5);
    test_lost seen = {0};
    ck_status(anylock_lock_set_auto_renewal(l, 1), ANYLOCK_OK);
    ck_status(anylock_lock_set_lost_callback(l, test_lost_record, &seen), ANYLOCK_OK);
    double t0 = test_now();
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    test_lost_wait(&seen, 5);
    ck_assert_int_eq(atomic_load(&seen.calls), 1);
    ck_assert_int_eq(atomic_load(&seen.why), ANYLOCK_TIMEOUT);
    ck_assert_msg(seen.at - t0 <= 0.5 + 0.2, "reported %.3f s after the acquire, past the 0.5 s lease", seen.at - t0);
    anylock_lock_free(l);
    anylock_close(c);
}
END_TEST

/* The outcomes of n try+release rounds, as a string of '.' and 'x'. */
static void chaos_run(const char *url, char *out, int n)
{
    anylock_client *c = open_ok(url);
    anylock_lock *l = lock_on(c, "job", 30);
    for (int i = 0; i < n; i++) {
        anylock_status st = anylock_try_acquire(l);
        /* ALREADY_HELD: a release that failed on purpose twice left the
         * lock in the store for this owner. */
        out[i] = st == ANYLOCK_OK ? '.' : st == ANYLOCK_IO ? 'x' : st == ANYLOCK_ALREADY_HELD ? 'a' : '?';
        if (st == ANYLOCK_OK && anylock_release(l) != ANYLOCK_OK)
            anylock_release(l); /* the release may fail on purpose too */
    }
    out[n] = '\0';
    anylock_lock_free(l);
    anylock_close(c);
}

START_TEST(t_chaos_reproducible)
{
    char a[41], b[41], d[41];
    chaos_run("faults://?store=memory://chaos1&chaos=0.4&seed=42", a, 40);
    chaos_run("faults://?store=memory://chaos2&chaos=0.4&seed=42", b, 40);
    chaos_run("faults://?store=memory://chaos3&chaos=0.4&seed=43", d, 40);
    ck_assert_str_eq(a, b);
    ck_assert_str_ne(a, d);
    ck_assert_ptr_nonnull(strchr(a, 'x'));
    ck_assert_ptr_nonnull(strchr(a, '.'));
    ck_assert_ptr_null(strchr(a, '?'));
}
END_TEST

START_TEST(t_at_run_time)
{
    anylock_client *c = open_ok("faults://?store=memory://runtime");
    anylock_lock *l = lock_on(c, "job", 30);
    ck_status(anylock_faults_set(c, "fail_acquire=1:BUSY"), ANYLOCK_OK);
    ck_status(anylock_try_acquire(l), ANYLOCK_BUSY);
    ck_status(anylock_try_acquire(l), ANYLOCK_OK);
    test_lost seen = {0};
    ck_status(anylock_release(l), ANYLOCK_OK);
    ck_status(anylock_lock_set_lost_callback(l, test_lost_record, &seen), ANYLOCK_OK);
    ck_status(anylock_faults_lose(l), ANYLOCK_NOT_HELD);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    ck_status(anylock_faults_lose(l), ANYLOCK_OK); /* "lose the lock now" */
    test_lost_wait(&seen, 5);
    ck_assert_int_eq(atomic_load(&seen.calls), 1);
    ck_assert_int_eq(anylock_lock_held(l), 0);
    ck_status(anylock_faults_lose(l), ANYLOCK_NOT_HELD);
    ck_status(anylock_faults_set(c, "bogus=1"), ANYLOCK_URL_UNKNOWN_PARAM);
    ck_status(anylock_faults_set(c, "fail_acquire=1&chaos=7"), ANYLOCK_URL_BAD_PARAM);
    ck_status(anylock_try_acquire(l), ANYLOCK_OK); /* all or nothing: no failure was set */
    ck_status(anylock_faults_set(c, "store=memory://x"), ANYLOCK_URL_BAD_PARAM);
    /* lose_after set while a lock is held starts counting now. */
    ck_status(anylock_faults_set(c, "lose_after=0.2"), ANYLOCK_OK);
    atomic_store(&seen.calls, 0);
    test_lost_wait(&seen, 5);
    ck_assert_int_eq(atomic_load(&seen.calls), 1);
    anylock_lock_free(l);
    anylock_client *m = open_ok("memory://");
    ck_status(anylock_faults_set(m, "fail_acquire=1"), ANYLOCK_INVALID);
    ck_status(anylock_faults_set(NULL, "fail_acquire=1"), ANYLOCK_INVALID);
    anylock_lock *ml = lock_on(m, "x", 5);
    ck_status(anylock_faults_lose(ml), ANYLOCK_INVALID);
    anylock_lock_free(ml);
    anylock_close(m);
    anylock_close(c);
}
END_TEST

static Suite *faults_suite(void)
{
    Suite *s = suite_create("faults");
    TCase *tc = tcase_create("faults");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, t_urls);
    tcase_add_test(tc, t_injected_failures);
    tcase_add_test(tc, t_acquire_delay);
    tcase_add_test(tc, t_lose_after);
    tcase_add_test(tc, t_over_a_real_store);
    tcase_add_test(tc, t_lose_after_renewals);
    tcase_add_test(tc, t_renewal_pause);
    tcase_add_test(tc, t_chaos_reproducible);
    tcase_add_test(tc, t_at_run_time);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* With no fault asked for, the wrapped store is untouched. */
    static const conformance_config cfg = {
        .label = "faults (over memory)",
        .url = "faults://?store=memory://conformance-faults",
        .excludes = 1,
        .can_list = 1,
        .can_reset_all = 1,
        .expiry = 0.3,
        .slack = 0.1,
    };
    return conformance_run(conformance_suite(&cfg), faults_suite());
}
