/* SPDX-License-Identifier: BSD-2-Clause */
/* open:// runs the part of the conformance suite that applies to a lock that
 * excludes nobody, plus its own promise: it never blocks. */
#include "anylock.h"
#include "conformance.h"

START_TEST(t_never_blocks)
{
    anylock_client *c = NULL;
    ck_assert_int_eq(anylock_open("open://", &c), ANYLOCK_OK);
    anylock_lock *a = NULL, *b = NULL;
    ck_assert_int_eq(anylock_lock_new(c, "job", &a), ANYLOCK_OK);
    ck_assert_int_eq(anylock_lock_new(c, "job", &b), ANYLOCK_OK);
    ck_assert_int_eq(anylock_acquire(a), ANYLOCK_OK);
    ck_assert_int_eq(anylock_acquire(b), ANYLOCK_OK); /* both "hold" it */
    int locked = 1;
    ck_assert_int_eq(anylock_locked(a, &locked), ANYLOCK_OK);
    ck_assert_int_eq(locked, 0);
    ck_assert_int_eq(anylock_extend(a, 5), ANYLOCK_OK);
    ck_assert_int_eq(anylock_release(a), ANYLOCK_OK);
    ck_assert_int_eq(anylock_release(b), ANYLOCK_OK);
    anylock_lock_free(a);
    anylock_lock_free(b);
    ck_assert_int_eq(anylock_close(c), ANYLOCK_OK);
    ck_assert_int_eq(anylock_open("open://somehost", &c), ANYLOCK_URL_MALFORMED);
    anylock_close(c);
}
END_TEST

int main(void)
{
    static const conformance_config cfg = {
        .label = "open",
        .url = "open://",
        .excludes = 0,
        .can_list = 1,
        .can_reset_all = 1,
        .expiry = 0.3,
        .slack = 0.1,
    };
    Suite *own = suite_create("open");
    TCase *tc = tcase_create("never_blocks");
    tcase_add_test(tc, t_never_blocks);
    suite_add_tcase(own, tc);
    return conformance_run(conformance_suite(&cfg), own);
}
