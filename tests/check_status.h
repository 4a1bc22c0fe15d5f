/* SPDX-License-Identifier: BSD-2-Clause */
/* The assertion every test program uses on anylock calls: on failure it
 * names the call and both statuses, e.g.
 * "anylock_acquire(b): got BUSY, want OK"; and the open every one makes. */
#ifndef ANYLOCK_TEST_CHECK_STATUS_H
#define ANYLOCK_TEST_CHECK_STATUS_H

#include <check.h>

#include "anylock.h"

#define ck_status(expr, want)                                                                              \
    do {                                                                                                   \
        anylock_status st_ = (expr);                                                                       \
        ck_assert_msg(st_ == (want), "%s: got %s, want %s", #expr, anylock_status_name(st_),               \
                      anylock_status_name(want));                                                          \
    } while (0)

/* A store's own tests, each a Check test case of its name. */
typedef struct test_case {
    const char *name;
    const TTest *test;
} test_case;

/* Adds cases to s, each with the fixture (if any) and the timeout. */
static inline void add_test_cases(Suite *s, const test_case *cases, size_t n, void (*setup)(void),
                                  void (*teardown)(void), double timeout)
{
    for (size_t i = 0; i < n; i++) {
        TCase *tc = tcase_create(cases[i].name);
        if (setup || teardown)
            tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, timeout);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
}

/* A client on url, or the test fails with the status and the message. */
static inline anylock_client *open_ok(const char *url)
{
    anylock_client *c = NULL;
    anylock_status st = anylock_open(url, &c);
    ck_assert_msg(st == ANYLOCK_OK, "open %s: %s (%s)", url, anylock_status_name(st), anylock_errmsg(c));
    return c;
}

#endif
