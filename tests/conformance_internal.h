/* SPDX-License-Identifier: BSD-2-Clause */
/* What the conformance suite's files share: the configuration under test
 * and the helpers that make clients and locks for it. */
#ifndef ANYLOCK_TEST_CONFORMANCE_INTERNAL_H
#define ANYLOCK_TEST_CONFORMANCE_INTERNAL_H

#include <check.h>

#include "anylock.h"
#include "conformance.h"

extern const conformance_config *conformance_cfg;

/* A client on the backend under test, with a prefix unique to this test and
 * process so that tests never see each other's locks. */
anylock_client *conformance_client(const char *tag);
anylock_lock *conformance_lock(anylock_client *c, const char *name);
/* $ANYLOCK_TEST_TIME_SCALE (at least 1): how much slower this build runs. */
double conformance_time_scale(void);
/* The features of the store under test. */
unsigned conformance_features(void);
/* Fills url with the store's URL and a prefix for tag (for child processes). */
void conformance_url(char *url, size_t size, const char *tag);

/* Adds one test case (or prints why it does not apply); the loop form runs
 * the test runs times, with _i from 0. */
void conformance_add(Suite *s, const char *name, const TTest *test, int applies, const char *why_not);
void conformance_add_loop(Suite *s, const char *name, const TTest *test, int runs, int applies,
                          const char *why_not);
/* The tests of conformance_modes.c. */
void conformance_add_modes(Suite *s);

#endif
