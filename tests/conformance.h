/*
 * The conformance suite: the behaviour every backend must show, run
 * unchanged against each one.  A backend's test program describes what the
 * store can do and gets a Check suite back; tests that do not apply (open://
 * excludes nobody) are left out and named on stdout.
 */
#ifndef ANYLOCK_TEST_CONFORMANCE_H
#define ANYLOCK_TEST_CONFORMANCE_H

#include <check.h>

/* What the suite cannot ask the store (anylock_client_features() tells the
 * rest: tokens, modes, sessions, list, reset-all, and they are checked
 * against what the store really does). */
typedef struct conformance_config {
    const char *label;   /* shown in the suite's name */
    const char *url;     /* base URL; the suite appends its own prefix parameter */
    int excludes;        /* acquiring excludes other owners (0 only for open://) */
    int cross_process;   /* locks exclude across processes */
    int can_list;        /* anylock_list is supported */
    int can_reset_all;   /* anylock_reset_all is supported and counts */
    double expiry;       /* a short expiry the store honours, in seconds */
    double slack;        /* how late the store may free an expired lock, in seconds */
    int processes;       /* processes in the contention test (0: no such test) */
    /* ---- added with the backend interface v2 ---- */
    int no_metadata;     /* the store cannot keep holder metadata (host, pid, label) */
    double wake_within;  /* a waiter wakes this soon after a release (seconds; 0: 1 s); the URL
                            must make the store's own fallback poll (if any) much slower, so that
                            a broken wake-up fails the test */
    int process_iterations; /* acquisitions per process in the processes contention test (0: 20) */
} conformance_config;

/* The suite for cfg (copied; under $ANYLOCK_TEST_TIME_SCALE its expiry,
 * slack and wake bound are stretched by that factor). */
Suite *conformance_suite(const conformance_config *cfg);

/* Runs suite (plus any extra suites) with Check and returns the exit status
 * for main(): 0 when every test passed. */
int conformance_run(Suite *suite, Suite *extra);

#endif
