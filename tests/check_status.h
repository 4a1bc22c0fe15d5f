/* SPDX-License-Identifier: BSD-2-Clause */
/* The assertion every test program uses on anylock calls: on failure it
 * names the call and both statuses, e.g.
 * "anylock_acquire(b): got BUSY, want OK". */
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

#endif
