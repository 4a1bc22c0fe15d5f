/* SPDX-License-Identifier: BSD-2-Clause */
/* The core API on memory://: validation with its statuses, defaults and
 * their precedence, the registry (a third-party backend defined here), and
 * messages that never show a password. */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "anylock.h"
#include "anylock_backend.h"
#include "harness.h"

#include "check_status.h"

START_TEST(t_strerror)
{
    for (int s = 0; s < ANYLOCK_STATUS_COUNT_; s++) {
        ck_assert_ptr_nonnull(anylock_strerror((anylock_status)s));
        ck_assert_str_ne(anylock_strerror((anylock_status)s), "unknown status");
        for (int t = 0; t < s; t++)
            ck_assert_str_ne(anylock_strerror((anylock_status)s), anylock_strerror((anylock_status)t));
    }
    ck_assert_int_eq(ANYLOCK_OK, 0);
    ck_assert_str_eq(anylock_status_name(ANYLOCK_TIMEOUT), "TIMEOUT");
    ck_assert_str_eq(anylock_strerror((anylock_status)9999), "unknown status");
    ck_assert_str_eq(anylock_status_name((anylock_status)-1), "UNKNOWN");
    ck_assert_str_eq(anylock_version(), ANYLOCK_VERSION_STRING);
}
END_TEST

typedef struct open_case {
    const char *url;
    anylock_status want;
} open_case;

static const open_case opens[] = {
    {"memory://", ANYLOCK_OK},
    {"nosuch://h", ANYLOCK_URL_UNKNOWN_SCHEME},
    {"memory://?bogus=1", ANYLOCK_URL_UNKNOWN_PARAM},
    {"memory://?timeout=abc", ANYLOCK_URL_BAD_PARAM},
    {"memory://?timeout=-1", ANYLOCK_URL_BAD_PARAM},
    {"memory://?timeout=nan", ANYLOCK_URL_BAD_PARAM},
    {"memory://?timeout=1e999", ANYLOCK_URL_BAD_PARAM},
    {"memory://?timeout=999999999999", ANYLOCK_URL_BAD_PARAM},
    {"memory://?expires=0", ANYLOCK_URL_BAD_PARAM},
    {"memory://?expires=never&timeout=forever", ANYLOCK_OK},
    {"memory://?prefix=%01x", ANYLOCK_URL_BAD_PARAM},
    /* Durations in the URL are plain decimals: no exponent, sign, hex,
     * spaces or names other than forever/never. */
    {"memory://?timeout=1e3", ANYLOCK_URL_BAD_PARAM},
    {"memory://?timeout=%201", ANYLOCK_URL_BAD_PARAM},
    {"memory://?timeout=-0", ANYLOCK_URL_BAD_PARAM},
    {"memory://?timeout=inf", ANYLOCK_URL_BAD_PARAM},
    {"memory://?expires=0x10", ANYLOCK_URL_BAD_PARAM},
    {"memory://?expires=.", ANYLOCK_URL_BAD_PARAM},
    {"memory://?expires=100000000.001", ANYLOCK_URL_BAD_PARAM},
    {"memory://?expires=99999999999999999999999999999", ANYLOCK_URL_BAD_PARAM},
    {"memory://?expires=100000000&timeout=.5", ANYLOCK_OK},
    {"memory://?prefix=%ff", ANYLOCK_URL_BAD_PARAM},
    {"memory://a:1", ANYLOCK_URL_BAD_HOST},
    {"memory://a/path", ANYLOCK_URL_BAD_PATH},
    {"memory", ANYLOCK_URL_NO_SCHEME},
    {NULL, ANYLOCK_INVALID},
};

START_TEST(t_open_statuses)
{
    anylock_client *c = NULL;
    anylock_status st = anylock_open(opens[_i].url, &c);
    ck_assert_msg(st == opens[_i].want, "%s: got %s want %s (%s)", opens[_i].url, anylock_status_name(st),
                  anylock_status_name(opens[_i].want), anylock_errmsg(c));
    ck_assert_ptr_nonnull(c);
    if (st != ANYLOCK_OK) {
        ck_assert_str_ne(anylock_errmsg(c), "");
        /* A failed client answers every call with its open status. */
        anylock_lock *l = (anylock_lock *)1;
        ck_status(anylock_lock_new(c, "x", &l), st);
        ck_assert_ptr_null(l);
        ck_status(anylock_reset(c, "x"), st);
    }
    ck_status(anylock_close(c), ANYLOCK_OK);
    ck_status(anylock_open("memory://", NULL), ANYLOCK_INVALID);
}
END_TEST

START_TEST(t_backend_disabled_vs_unknown)
{
    /* A scheme known to anylock but left out of a build reports that, not
     * "unknown scheme"; we register such a marker to show the difference. */
    ck_status(anylock_backend_register_disabled("gone"), ANYLOCK_OK);
    anylock_client *c = NULL;
    ck_status(anylock_open("gone://h", &c), ANYLOCK_BACKEND_DISABLED);
    ck_assert_ptr_nonnull(strstr(anylock_errmsg(c), "left out of this build"));
    anylock_close(c);
    ck_assert_int_eq(anylock_backend_available("gone"), 0);
    ck_assert_int_eq(anylock_backend_available("memory"), 1);
    ck_assert_int_eq(anylock_backend_available("MEMORY"), 1);
    ck_assert_int_eq(anylock_backend_available("nosuch"), 0);
}
END_TEST

START_TEST(t_password_hidden)
{
    anylock_client *c = NULL;
    ck_status(anylock_open("nosuch://bob:Hunter2Secret@h/x", &c), ANYLOCK_URL_UNKNOWN_SCHEME);
    ck_assert_ptr_null(strstr(anylock_errmsg(c), "Hunter2Secret"));
    ck_assert_str_eq(anylock_client_url(c), "nosuch://bob:***@h/x");
    anylock_close(c);
    ck_status(anylock_open("memory://u:Hunter2Secret@ns?bogus=1", &c), ANYLOCK_URL_UNKNOWN_PARAM);
    ck_assert_ptr_null(strstr(anylock_errmsg(c), "Hunter2Secret"));
    anylock_close(c);
    /* Stores with no credentials refuse them rather than ignore them. */
    const char *no_users[] = {"memory://u:Hunter2Secret@ns", "open://u:Hunter2Secret@", "memory://u@ns"};
    for (size_t i = 0; i < sizeof no_users / sizeof *no_users; i++) {
        ck_status(anylock_open(no_users[i], &c), ANYLOCK_URL_BAD_USERINFO);
        ck_assert_ptr_null(strstr(anylock_errmsg(c), "Hunter2Secret"));
        ck_assert_ptr_null(strstr(anylock_client_url(c), "Hunter2Secret"));
        anylock_close(c);
    }
}
END_TEST

START_TEST(t_names_and_ids)
{
    anylock_client *c = open_ok("memory://");
    anylock_lock *l = NULL;
    char big[ANYLOCK_NAME_MAX + 2];
    memset(big, 'n', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    ck_status(anylock_lock_new(c, "", &l), ANYLOCK_BAD_NAME);
    ck_assert_ptr_nonnull(strstr(anylock_errmsg(c), "empty"));
    ck_status(anylock_lock_new(c, NULL, &l), ANYLOCK_BAD_NAME);
    ck_status(anylock_lock_new(c, big, &l), ANYLOCK_BAD_NAME);
    big[ANYLOCK_NAME_MAX] = '\0';
    ck_status(anylock_lock_new(c, big, &l), ANYLOCK_OK); /* exactly the limit */
    anylock_lock_free(l);
    ck_status(anylock_lock_new(c, "tab\there", &l), ANYLOCK_BAD_NAME);
    ck_status(anylock_lock_new(c, "bad\xff utf8", &l), ANYLOCK_BAD_NAME);
    ck_status(anylock_lock_new(c, "overlong \xc0\xaf", &l), ANYLOCK_BAD_NAME);
    ck_status(anylock_lock_new(c, "surrogate \xed\xa0\x80", &l), ANYLOCK_BAD_NAME);
    ck_status(anylock_lock_new(c, "c1 \xc2\x85 next line", &l), ANYLOCK_BAD_NAME); /* U+0085 */
    ck_status(anylock_lock_new(c, "c1 \xc2\x9b csi", &l), ANYLOCK_BAD_NAME);       /* U+009B */
    ck_status(anylock_lock_new(c, "del \x7f", &l), ANYLOCK_BAD_NAME);
    ck_status(anylock_lock_new(c, "caf\xc3\xa9 with spaces/and:colons", &l), ANYLOCK_OK);
    anylock_lock *none = NULL;
    ck_status(anylock_lock_new(NULL, "x", &none), ANYLOCK_INVALID);
    ck_assert_ptr_null(none);
    ck_status(anylock_lock_new(c, "x", NULL), ANYLOCK_INVALID);

    ck_status(anylock_lock_set_id(l, ""), ANYLOCK_BAD_ID);
    ck_status(anylock_lock_set_id(l, NULL), ANYLOCK_BAD_ID);
    ck_status(anylock_lock_set_id(l, "has space"), ANYLOCK_BAD_ID);
    ck_status(anylock_lock_set_id(l, "caf\xc3\xa9"), ANYLOCK_BAD_ID);
    char longid[ANYLOCK_ID_MAX + 2];
    memset(longid, 'i', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    ck_status(anylock_lock_set_id(l, longid), ANYLOCK_BAD_ID);
    longid[ANYLOCK_ID_MAX] = '\0';
    ck_status(anylock_lock_set_id(l, longid), ANYLOCK_OK);
    ck_assert_str_eq(anylock_lock_id(l), longid);
    anylock_lock_free(l);
    ck_status(anylock_close(c), ANYLOCK_OK);

    /* A NULL or bad name to the client-wide calls is BAD_NAME on every
     * store, also on open://, which excludes nobody. */
    static const char *const urls[] = {"memory://", "open://"};
    for (size_t i = 0; i < sizeof urls / sizeof *urls; i++) {
        c = open_ok(urls[i]);
        anylock_info info;
        ck_status(anylock_reset(c, NULL), ANYLOCK_BAD_NAME);
        ck_status(anylock_inspect(c, NULL, &info), ANYLOCK_BAD_NAME);
        ck_status(anylock_reset(c, ""), ANYLOCK_BAD_NAME);
        ck_status(anylock_inspect(c, "tab\there", &info), ANYLOCK_BAD_NAME);
        ck_status(anylock_close(c), ANYLOCK_OK);
    }
}
END_TEST

START_TEST(t_durations)
{
    anylock_client *c = open_ok("memory://");
    anylock_lock *l = NULL;
    ck_status(anylock_lock_new(c, "d", &l), ANYLOCK_OK);
    ck_status(anylock_lock_set_expires(l, -1), ANYLOCK_BAD_DURATION);
    ck_status(anylock_lock_set_expires(l, 0), ANYLOCK_BAD_DURATION);
    ck_status(anylock_lock_set_expires(l, NAN), ANYLOCK_BAD_DURATION);
    ck_status(anylock_lock_set_expires(l, -INFINITY), ANYLOCK_BAD_DURATION);
    ck_status(anylock_lock_set_expires(l, 1e300), ANYLOCK_BAD_DURATION);
    ck_status(anylock_lock_set_expires(l, ANYLOCK_DURATION_MAX * 2), ANYLOCK_BAD_DURATION);
    ck_status(anylock_lock_set_expires(l, ANYLOCK_FOREVER), ANYLOCK_OK);
    ck_status(anylock_lock_set_expires(l, 0.0001), ANYLOCK_OK); /* rounds up to 1 ms */
    ck_status(anylock_lock_set_timeout(l, -0.5), ANYLOCK_BAD_DURATION);
    ck_status(anylock_lock_set_timeout(l, NAN), ANYLOCK_BAD_DURATION);
    ck_status(anylock_lock_set_timeout(l, 0), ANYLOCK_OK);
    ck_status(anylock_lock_set_timeout(l, ANYLOCK_FOREVER), ANYLOCK_OK);
    ck_status(anylock_set_default_timeout(-3), ANYLOCK_BAD_DURATION);
    ck_status(anylock_set_default_expires(0), ANYLOCK_BAD_DURATION);
    ck_status(anylock_set_default_expires(NAN), ANYLOCK_BAD_DURATION);
    ck_status(anylock_set_default_prefix(NULL), ANYLOCK_BAD_PREFIX);
    ck_status(anylock_set_default_prefix("bad\nprefix"), ANYLOCK_BAD_PREFIX);
    /* The limit itself is accepted; the next double above it is not. */
    ck_status(anylock_lock_set_expires(l, ANYLOCK_DURATION_MAX), ANYLOCK_OK);
    ck_status(anylock_lock_set_expires(l, nextafter(ANYLOCK_DURATION_MAX, INFINITY)), ANYLOCK_BAD_DURATION);
    ck_status(anylock_lock_set_timeout(l, -INFINITY), ANYLOCK_BAD_DURATION);
    ck_status(anylock_lock_set_timeout(l, 1e308 * 10), ANYLOCK_OK); /* overflows to +inf: forever */
    ck_status(anylock_lock_set_timeout(l, -0.0), ANYLOCK_OK);       /* -0 is 0: try once */
    ck_status(anylock_set_default_timeout(NAN), ANYLOCK_BAD_DURATION);
    ck_status(anylock_set_default_expires(-INFINITY), ANYLOCK_BAD_DURATION);
    /* extend: the same checks, and "forever" is refused. */
    ck_status(anylock_lock_set_expires(l, 10), ANYLOCK_OK);
    anylock_lock *h = NULL;
    ck_status(anylock_lock_new(c, "d2", &h), ANYLOCK_OK);
    ck_status(anylock_acquire(h), ANYLOCK_OK);
    ck_status(anylock_extend(h, NAN), ANYLOCK_BAD_DURATION);
    ck_status(anylock_extend(h, -INFINITY), ANYLOCK_BAD_DURATION);
    ck_status(anylock_extend(h, 0), ANYLOCK_BAD_DURATION);
    ck_status(anylock_extend(h, 1e300), ANYLOCK_BAD_DURATION);
    ck_status(anylock_extend(h, ANYLOCK_FOREVER), ANYLOCK_BAD_DURATION);
    ck_assert_int_eq(anylock_lock_held(h), 1); /* a refused extend keeps the lock */
    anylock_lock_free(h);
    anylock_lock_free(l);
    anylock_close(c);
}
END_TEST

START_TEST(t_combinations)
{
    anylock_client *c = open_ok("memory://");
    anylock_lock *l = NULL;
    ck_status(anylock_lock_new(c, "combo", &l), ANYLOCK_OK);
    /* A timeout with try-once. */
    ck_status(anylock_lock_set_timeout(l, 1), ANYLOCK_OK);
    ck_status(anylock_try_acquire(l), ANYLOCK_TRY_WITH_TIMEOUT);
    /* A timeout longer than the expiry, without auto-renewal. */
    ck_status(anylock_lock_set_expires(l, 1), ANYLOCK_OK);
    ck_status(anylock_lock_set_timeout(l, 2), ANYLOCK_OK);
    ck_status(anylock_acquire(l), ANYLOCK_TIMEOUT_TOO_LARGE);
    ck_assert_ptr_nonnull(strstr(anylock_lock_errmsg(l), "auto-renewal"));
    ck_assert_str_eq(anylock_errmsg(c), anylock_lock_errmsg(l));
    ck_status(anylock_lock_set_auto_renewal(l, 1), ANYLOCK_OK);
    ck_status(anylock_acquire(l), ANYLOCK_OK); /* allowed with renewal, as in python-redis-lock 3.6 */
    /* Options cannot change while held. */
    ck_status(anylock_lock_set_expires(l, 5), ANYLOCK_MISUSE);
    ck_status(anylock_lock_set_id(l, "other"), ANYLOCK_MISUSE);
    ck_status(anylock_release(l), ANYLOCK_OK);
    /* Auto-renewal without an expiry. */
    ck_status(anylock_lock_set_expires(l, ANYLOCK_FOREVER), ANYLOCK_OK);
    ck_status(anylock_acquire(l), ANYLOCK_RENEWAL_NEEDS_EXPIRY);
    /* Waiting forever with an expiry is fine (as python's blocking acquire). */
    ck_status(anylock_lock_set_auto_renewal(l, 0), ANYLOCK_OK);
    ck_status(anylock_lock_set_expires(l, 1), ANYLOCK_OK);
    ck_status(anylock_lock_set_timeout(l, ANYLOCK_FOREVER), ANYLOCK_OK);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    ck_status(anylock_acquire(l), ANYLOCK_ALREADY_HELD);
    ck_status(anylock_release(l), ANYLOCK_OK);
    ck_status(anylock_release(l), ANYLOCK_NOT_HELD);
    ck_assert_ptr_nonnull(strstr(anylock_lock_errmsg(l), "not held"));
    anylock_lock_free(l);
    ck_status(anylock_close(c), ANYLOCK_OK);
}
END_TEST

START_TEST(t_misuse)
{
    anylock_client *c = open_ok("memory://");
    anylock_lock *l = NULL;
    ck_status(anylock_lock_new(c, "m", &l), ANYLOCK_OK);
    /* A client cannot close under an open lock handle. */
    ck_status(anylock_close(c), ANYLOCK_MISUSE);
    anylock_lock_free(l);
    ck_status(anylock_close(c), ANYLOCK_OK);
    ck_status(anylock_close(NULL), ANYLOCK_OK);
    anylock_lock_free(NULL);
    ck_status(anylock_acquire(NULL), ANYLOCK_INVALID);
    ck_status(anylock_try_acquire(NULL), ANYLOCK_INVALID);
    ck_status(anylock_release(NULL), ANYLOCK_INVALID);
    ck_status(anylock_extend(NULL, 1), ANYLOCK_INVALID);
    ck_status(anylock_reset(NULL, "x"), ANYLOCK_INVALID);
    ck_status(anylock_reset_all(NULL, NULL), ANYLOCK_INVALID);
    ck_status(anylock_list(NULL, NULL, NULL), ANYLOCK_INVALID);
    ck_status(anylock_inspect(NULL, "x", NULL), ANYLOCK_INVALID);
    ck_status(anylock_lock_set_expires(NULL, 1), ANYLOCK_INVALID);
    int locked;
    ck_status(anylock_locked(NULL, &locked), ANYLOCK_INVALID);
    ck_assert_int_eq(anylock_lock_held(NULL), 0);
    ck_assert_str_eq(anylock_lock_name(NULL), "");
    ck_assert_str_eq(anylock_lock_id(NULL), "");
    ck_assert_str_ne(anylock_lock_errmsg(NULL), "");
    ck_assert_str_ne(anylock_errmsg(NULL), "");
    ck_assert_str_eq(anylock_client_url(NULL), "");
    ck_status(anylock_lock_set_timeout(NULL, 1), ANYLOCK_INVALID);
    ck_status(anylock_lock_set_id(NULL, "x"), ANYLOCK_INVALID);
    ck_status(anylock_lock_set_auto_renewal(NULL, 1), ANYLOCK_INVALID);
    ck_status(anylock_lock_set_lost_callback(NULL, NULL, NULL), ANYLOCK_INVALID);
    ck_status(anylock_lock_reset(NULL), ANYLOCK_INVALID);
    char owner[ANYLOCK_ID_MAX + 1];
    ck_status(anylock_owner(NULL, owner, sizeof owner), ANYLOCK_INVALID);

    /* NULL out-parameters and double release on a live handle. */
    c = open_ok("memory://");
    ck_status(anylock_lock_new(c, "m2", &l), ANYLOCK_OK);
    ck_status(anylock_locked(l, NULL), ANYLOCK_INVALID);
    ck_status(anylock_owner(l, NULL, 10), ANYLOCK_INVALID);
    ck_status(anylock_owner(l, owner, 0), ANYLOCK_INVALID);
    ck_status(anylock_inspect(c, "m2", NULL), ANYLOCK_INVALID);
    ck_status(anylock_list(c, NULL, NULL), ANYLOCK_INVALID);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    ck_status(anylock_release(l), ANYLOCK_OK);
    ck_status(anylock_release(l), ANYLOCK_NOT_HELD);
    ck_status(anylock_release(l), ANYLOCK_NOT_HELD);
    anylock_lock_free(l);
    ck_status(anylock_close(c), ANYLOCK_OK);
}
END_TEST

/* Defaults: library < process-wide < URL < lock. */
START_TEST(t_defaults_precedence)
{
    anylock_client *c = open_ok("memory://");
    ck_assert_str_eq(anylock_client_prefix(c), "lock:");
    anylock_lock *l = NULL;
    ck_status(anylock_lock_new(c, "p", &l), ANYLOCK_OK);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    anylock_info info;
    ck_status(anylock_inspect(c, "p", &info), ANYLOCK_OK);
    ck_assert_msg(info.expires_in > 9 && info.expires_in <= 10, "default expiry gave %.3f", info.expires_in);
    anylock_lock_free(l);
    anylock_close(c);

    ck_status(anylock_set_default_expires(20), ANYLOCK_OK);
    ck_status(anylock_set_default_prefix("proc:"), ANYLOCK_OK);
    c = open_ok("memory://");
    ck_assert_str_eq(anylock_client_prefix(c), "proc:");
    ck_status(anylock_lock_new(c, "p", &l), ANYLOCK_OK);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    ck_status(anylock_inspect(c, "p", &info), ANYLOCK_OK);
    ck_assert_msg(info.expires_in > 19 && info.expires_in <= 20, "process default gave %.3f", info.expires_in);
    anylock_lock_free(l);
    anylock_close(c);

    c = open_ok("memory://?prefix=url:&expires=30&timeout=0.2");
    ck_assert_str_eq(anylock_client_prefix(c), "url:");
    anylock_lock *a = NULL, *b = NULL;
    ck_status(anylock_lock_new(c, "p", &a), ANYLOCK_OK);
    ck_status(anylock_lock_new(c, "p", &b), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_status(anylock_inspect(c, "p", &info), ANYLOCK_OK);
    ck_assert_msg(info.expires_in > 29 && info.expires_in <= 30, "URL expiry gave %.3f", info.expires_in);
    ck_status(anylock_acquire(b), ANYLOCK_TIMEOUT); /* the URL's 0.2 s timeout */
    ck_status(anylock_release(a), ANYLOCK_OK);
    ck_status(anylock_lock_set_expires(a, 40), ANYLOCK_OK); /* the lock's own wins */
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_status(anylock_inspect(c, "p", &info), ANYLOCK_OK);
    ck_assert_msg(info.expires_in > 39 && info.expires_in <= 40, "lock expiry gave %.3f", info.expires_in);
    anylock_lock_free(a);
    anylock_lock_free(b);
    anylock_close(c);
    ck_status(anylock_set_default_expires(ANYLOCK_DEFAULT_EXPIRES), ANYLOCK_OK);
    ck_status(anylock_set_default_prefix(ANYLOCK_DEFAULT_PREFIX), ANYLOCK_OK);
}
END_TEST

/* ---- a third-party backend, defined here and registered at run time ---- */

typedef struct toy_state {
    char holder[ANYLOCK_ID_MAX + 1];
    char key[128];
    int opened;
} toy_state;

static int toy_closed;
static int64_t toy_last_expires_ms = -1;

static anylock_status toy_open(anylock_op *op, const anylock_url *url)
{
    toy_state *s = op->state;
    const char *mode = anylock_url_param_get(url, "mode");
    if (mode && strcmp(mode, "strict"))
        return anylock_op_error(op, ANYLOCK_URL_BAD_PARAM, "toy: mode must be strict");
    s->opened = 1;
    return ANYLOCK_OK;
}

static void toy_close(anylock_op *op)
{
    (void)op;
    toy_closed++;
}

static anylock_status toy_acquire(anylock_op *op)
{
    toy_state *s = op->state;
    if (s->holder[0])
        return strcmp(s->holder, op->id) ? ANYLOCK_BUSY : ANYLOCK_ALREADY_HELD;
    snprintf(s->holder, sizeof s->holder, "%s", op->id);
    snprintf(s->key, sizeof s->key, "%s", op->key);
    toy_last_expires_ms = op->expires_ms;
    return ANYLOCK_OK;
}

static anylock_status toy_release(anylock_op *op)
{
    toy_state *s = op->state;
    if (strcmp(s->holder, op->id))
        return anylock_op_error(op, ANYLOCK_NOT_HELD, "toy: held by someone else");
    s->holder[0] = '\0';
    return ANYLOCK_OK;
}

static const char *const toy_params[] = {"mode", NULL};

static const anylock_backend toy = {
    .version = ANYLOCK_BACKEND_VERSION,
    .name = "toy",
    .state_size = sizeof(toy_state),
    .expiry_resolution_ms = 1000,
    .params = toy_params,
    .open = toy_open,
    .close = toy_close,
    .acquire = toy_acquire,
    .release = toy_release,
    /* extend, inspect, reset, reset_all and list left NULL */
};

START_TEST(t_third_party_backend)
{
    ck_status(anylock_backend_register("toy", &toy), ANYLOCK_OK);
    ck_status(anylock_backend_register("toy", &toy), ANYLOCK_BACKEND_EXISTS);
    ck_status(anylock_backend_register("memory", &toy), ANYLOCK_BACKEND_EXISTS);
    ck_status(anylock_backend_register("bad scheme", &toy), ANYLOCK_INVALID);
    anylock_backend broken = toy;
    broken.acquire = NULL;
    ck_status(anylock_backend_register("broken", &broken), ANYLOCK_BACKEND_INVALID);
    broken = toy;
    broken.version = 0;
    ck_status(anylock_backend_register("broken", &broken), ANYLOCK_BACKEND_INVALID);
    ck_status(anylock_backend_register("broken", NULL), ANYLOCK_BACKEND_INVALID);

    anylock_client *c = NULL;
    ck_status(anylock_open("toy://?mode=loose", &c), ANYLOCK_URL_BAD_PARAM);
    ck_assert_str_eq(anylock_errmsg(c), "toy: mode must be strict");
    anylock_close(c);
    ck_assert_int_eq(toy_closed, 1); /* close is called after a failed open too */
    ck_status(anylock_open("toy://?other=1", &c), ANYLOCK_URL_UNKNOWN_PARAM);
    anylock_close(c);

    c = open_ok("toy://?mode=strict&prefix=t:");
    ck_assert_str_eq(anylock_client_scheme(c), "toy");
    anylock_lock *a = NULL, *b = NULL;
    ck_status(anylock_lock_new(c, "job", &a), ANYLOCK_OK);
    ck_status(anylock_lock_new(c, "job", &b), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_status(anylock_try_acquire(b), ANYLOCK_BUSY);
    /* Optional slots left NULL: the core answers UNSUPPORTED. */
    ck_status(anylock_extend(a, 5), ANYLOCK_UNSUPPORTED);
    int locked;
    ck_status(anylock_locked(a, &locked), ANYLOCK_UNSUPPORTED);
    ck_status(anylock_reset(c, "job"), ANYLOCK_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(anylock_errmsg(c), "toy"));
    ck_status(anylock_reset_all(c, NULL), ANYLOCK_UNSUPPORTED);
    ck_status(anylock_lock_set_auto_renewal(b, 1), ANYLOCK_OK);
    ck_status(anylock_release(a), ANYLOCK_OK);
    ck_status(anylock_try_acquire(b), ANYLOCK_UNSUPPORTED); /* renewal needs extend */
    anylock_lock_free(a);
    anylock_lock_free(b);
    ck_status(anylock_close(c), ANYLOCK_OK);
}
END_TEST

START_TEST(t_round_up_to_resolution)
{
    /* The toy store has whole seconds (expiry_resolution_ms = 1000): the
     * core rounds every expiry up to it, never down and never to 0.  Its own
     * scheme, so that the test also passes without Check's fork per test
     * (under valgrind), where t_third_party_backend's "toy" is still
     * registered. */
    ck_status(anylock_backend_register("toy-round", &toy), ANYLOCK_OK);
    anylock_client *c = open_ok("toy-round://");
    anylock_lock *l = NULL;
    ck_status(anylock_lock_new(c, "r", &l), ANYLOCK_OK);
    static const struct {
        double seconds;
        int64_t want_ms;
    } cases[] = {{1.2, 2000}, {0.001, 1000}, {3, 3000}, {ANYLOCK_FOREVER, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ck_status(anylock_lock_set_expires(l, cases[i].seconds), ANYLOCK_OK);
        ck_status(anylock_acquire(l), ANYLOCK_OK);
        ck_assert_int_eq(toy_last_expires_ms, cases[i].want_ms);
        ck_status(anylock_release(l), ANYLOCK_OK);
    }
    anylock_lock_free(l);
    anylock_close(c);
}
END_TEST

START_TEST(t_parse_duration)
{
    static const struct {
        const char *text;
        anylock_status want;
        double seconds;
    } cases[] = {
        {"1.5", ANYLOCK_OK, 1.5},       {"0", ANYLOCK_OK, 0},           {".25", ANYLOCK_OK, 0.25},
        {"forever", ANYLOCK_OK, INFINITY}, {"never", ANYLOCK_OK, INFINITY}, {"100000000", ANYLOCK_OK, 1e8},
        {"0x10", ANYLOCK_BAD_DURATION, 0}, {"1e3", ANYLOCK_BAD_DURATION, 0}, {"-1", ANYLOCK_BAD_DURATION, 0},
        {"+1", ANYLOCK_BAD_DURATION, 0},   {"", ANYLOCK_BAD_DURATION, 0},    {" 1", ANYLOCK_BAD_DURATION, 0},
        {"inf", ANYLOCK_BAD_DURATION, 0},  {"nan", ANYLOCK_BAD_DURATION, 0}, {"1.2.3", ANYLOCK_BAD_DURATION, 0},
        {"100000000.5", ANYLOCK_BAD_DURATION, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        double s = -1;
        anylock_status st = anylock_parse_duration(cases[i].text, &s);
        ck_assert_msg(st == cases[i].want, "\"%s\": %s", cases[i].text, anylock_status_name(st));
        if (st == ANYLOCK_OK)
            ck_assert_msg(s == cases[i].seconds, "\"%s\" gave %g", cases[i].text, s);
    }
    double s;
    ck_status(anylock_parse_duration(NULL, &s), ANYLOCK_INVALID);
    ck_status(anylock_parse_duration("1", NULL), ANYLOCK_INVALID);
}
END_TEST

/* One default store per user, whatever the environment (a login shell sets
 * XDG_RUNTIME_DIR, cron does not; HOME may differ): the home directory from
 * the password database. */
START_TEST(t_default_url)
{
    char a[ANYLOCK_URL_MAX + 1], b[ANYLOCK_URL_MAX + 1];
    const char *home0 = getenv("HOME");
    char home[1024];
    snprintf(home, sizeof home, "%s", home0 ? home0 : "");
    unsetenv("ANYLOCK_URL");
    char tmp[256];
    ck_assert_int_eq(test_tmpdir(tmp, sizeof tmp), 0);
    setenv("XDG_RUNTIME_DIR", tmp, 1);
    setenv("XDG_CACHE_HOME", tmp, 1);
    ck_status(anylock_default_url(a, sizeof a), ANYLOCK_OK);
    unsetenv("XDG_RUNTIME_DIR");
    unsetenv("XDG_CACHE_HOME");
    setenv("HOME", tmp, 1);
    ck_status(anylock_default_url(b, sizeof b), ANYLOCK_OK);
    ck_assert_str_eq(a, b);
    ck_assert_msg(!strncmp(a, "sqlite:////", 11) && strstr(a, "/.cache/anylock/locks.db"), "%s", a);
    ck_assert_ptr_null(strstr(a, tmp));
    test_rmtree(tmp);
    /* $ANYLOCK_URL wins; set but empty is an error, not the default. */
    setenv("ANYLOCK_URL", "memory://from-env", 1);
    ck_status(anylock_default_url(a, sizeof a), ANYLOCK_OK);
    ck_assert_str_eq(a, "memory://from-env");
    setenv("ANYLOCK_URL", "", 1);
    ck_status(anylock_default_url(a, sizeof a), ANYLOCK_URL_MALFORMED);
    ck_assert_ptr_nonnull(strstr(a, "empty"));
    unsetenv("ANYLOCK_URL");
    ck_status(anylock_default_url(a, 4), ANYLOCK_INVALID);
    ck_status(anylock_default_url(NULL, 10), ANYLOCK_INVALID);
    /* Without Check's fork per test (valgrind), later tests see this
     * process's environment: put HOME back. */
    if (home0)
        setenv("HOME", home, 1);
}
END_TEST

START_TEST(t_tiny_default_expiry)
{
    /* A sub-millisecond default rounds up to 1 ms, never to "never". */
    ck_status(anylock_set_default_expires(1e-10), ANYLOCK_OK);
    anylock_client *c = open_ok("memory://tiny");
    anylock_lock *a = NULL, *b = NULL;
    ck_status(anylock_lock_new(c, "t", &a), ANYLOCK_OK);
    ck_status(anylock_lock_new(c, "t", &b), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_status(anylock_lock_set_timeout(b, 1), ANYLOCK_OK);
    ck_status(anylock_lock_set_expires(b, 5), ANYLOCK_OK);
    ck_status(anylock_acquire(b), ANYLOCK_OK); /* a's 1 ms passed */
    ck_status(anylock_set_default_expires(ANYLOCK_DEFAULT_EXPIRES), ANYLOCK_OK);
    anylock_lock_free(a);
    anylock_lock_free(b);
    anylock_close(c);
}
END_TEST

typedef struct log_seen {
    pthread_mutex_t mu;
    int events[16];
    int password_shown;
    int inspected; /* library calls made from the handler that worked */
} log_seen;

static void on_log(const anylock_log_record *r, void *ud)
{
    log_seen *s = ud;
    /* The handler may call the library, even on the lock's own client from
     * a renewal thread: it never runs under the library's locks. */
    int ok = 0;
    if (r->event == ANYLOCK_EVENT_RENEWED && r->lock) {
        anylock_info info;
        ok = anylock_lock_held(r->lock) && anylock_inspect(anylock_lock_client(r->lock), r->name, &info) == ANYLOCK_OK &&
             info.held;
    }
    pthread_mutex_lock(&s->mu);
    if ((unsigned)r->event < 16)
        s->events[r->event]++;
    if (strstr(r->message, "Hunter2Secret"))
        s->password_shown = 1;
    s->inspected += ok;
    pthread_mutex_unlock(&s->mu);
}

static int log_count(log_seen *s, anylock_event e)
{
    pthread_mutex_lock(&s->mu);
    int n = s->events[e];
    pthread_mutex_unlock(&s->mu);
    return n;
}

START_TEST(t_log)
{
    static log_seen seen = {PTHREAD_MUTEX_INITIALIZER, {0}, 0, 0};
    anylock_set_log(on_log, ANYLOCK_LOG_DEBUG, &seen);
    anylock_client *c = open_ok("memory://log");
    anylock_lock *a = NULL, *b = NULL;
    ck_status(anylock_lock_new(c, "job", &a), ANYLOCK_OK);
    ck_status(anylock_lock_new(c, "job", &b), ANYLOCK_OK);
    ck_status(anylock_lock_set_expires(a, 0.3), ANYLOCK_OK);
    ck_status(anylock_lock_set_auto_renewal(a, 1), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_assert_int_eq(log_count(&seen, ANYLOCK_EVENT_ACQUIRED), 1);
    ck_status(anylock_try_acquire(b), ANYLOCK_BUSY);
    ck_assert_int_eq(log_count(&seen, ANYLOCK_EVENT_NOT_ACQUIRED), 1);
    double until = test_now() + 5;
    while (log_count(&seen, ANYLOCK_EVENT_RENEWED) < 2 && test_now() < until)
        test_sleep(0.02);
    ck_assert_int_ge(log_count(&seen, ANYLOCK_EVENT_RENEWED), 2);
    pthread_mutex_lock(&seen.mu);
    ck_assert_int_ge(seen.inspected, 2);
    pthread_mutex_unlock(&seen.mu);
    ck_status(anylock_reset(c, "job"), ANYLOCK_OK);
    until = test_now() + 5;
    while (log_count(&seen, ANYLOCK_EVENT_LOST) < 1 && test_now() < until)
        test_sleep(0.02);
    ck_assert_int_eq(log_count(&seen, ANYLOCK_EVENT_LOST), 1);
    ck_status(anylock_acquire(b), ANYLOCK_OK);
    ck_status(anylock_release(b), ANYLOCK_OK);
    ck_assert_int_ge(log_count(&seen, ANYLOCK_EVENT_RELEASED), 1);
    anylock_lock_free(a);
    anylock_lock_free(b);
    anylock_close(c);
    /* Off: nothing more arrives. */
    anylock_set_log(NULL, ANYLOCK_LOG_DEBUG, NULL);
    int before = log_count(&seen, ANYLOCK_EVENT_ACQUIRED);
    c = open_ok("memory://log");
    ck_status(anylock_lock_new(c, "job", &a), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_assert_int_eq(log_count(&seen, ANYLOCK_EVENT_ACQUIRED), before);
    anylock_lock_free(a);
    anylock_close(c);
    ck_assert_int_eq(seen.password_shown, 0);
}
END_TEST

START_TEST(t_features_and_options)
{
    anylock_client *c = open_ok("memory://feat");
    unsigned f = anylock_client_features(c);
    ck_assert_uint_ne(f & ANYLOCK_FEATURE_TOKEN, 0);
    ck_assert_uint_ne(f & ANYLOCK_FEATURE_SHARED, 0);
    ck_assert_uint_ne(f & ANYLOCK_FEATURE_LIST, 0);
    ck_assert_uint_eq(f & ANYLOCK_FEATURE_SESSION, 0);
    ck_assert_uint_eq(anylock_client_features(NULL), 0);
    anylock_client *bad = NULL;
    anylock_open("nosuch://x", &bad);
    ck_assert_uint_eq(anylock_client_features(bad), 0);
    anylock_close(bad);
    anylock_lock *l = NULL;
    ck_status(anylock_lock_new(c, "o", &l), ANYLOCK_OK);
    char big[ANYLOCK_LABEL_MAX + 2];
    memset(big, 'l', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    ck_status(anylock_lock_set_label(l, big), ANYLOCK_INVALID);
    ck_status(anylock_lock_set_label(l, "bad\xc2\x85" "c1"), ANYLOCK_INVALID);
    ck_status(anylock_lock_set_label(l, NULL), ANYLOCK_OK);
    ck_status(anylock_lock_set_label(l, "fine"), ANYLOCK_OK);
    ck_status(anylock_lock_set_mode(l, (anylock_mode)7), ANYLOCK_INVALID);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    ck_status(anylock_lock_set_label(l, "x"), ANYLOCK_MISUSE);
    ck_status(anylock_lock_set_mode(l, ANYLOCK_SHARED), ANYLOCK_MISUSE);
    ck_status(anylock_lock_set_permits(l, 2), ANYLOCK_MISUSE);
    anylock_lock_free(l);
    anylock_close(c);
    /* The values are part of the ABI. */
    ck_assert_int_eq(ANYLOCK_INTERNAL, 39);
    ck_assert_int_eq(ANYLOCK_FORKED, 44);
    ck_assert_int_eq(anylock_version_number(), ANYLOCK_VERSION_NUMBER);
    ck_assert_str_eq(anylock_status_name(ANYLOCK_OUTCOME_UNKNOWN), "OUTCOME_UNKNOWN");
}
END_TEST

/* After fork(), closing the parent's client and freeing its locks in the
 * child free memory only and answer like in the parent. */
START_TEST(t_fork_free_in_child)
{
    anylock_client *c = open_ok("memory://forked");
    anylock_lock *l = NULL;
    ck_status(anylock_lock_new(c, "f", &l), ANYLOCK_OK);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    pid_t pid = fork();
    if (pid == 0) {
        int bad = anylock_acquire(l) != ANYLOCK_FORKED;
        bad |= strstr(anylock_lock_errmsg(l), "fork") == NULL;
        anylock_lock_free(l);
        bad |= anylock_close(c) != ANYLOCK_OK;
        _exit(bad);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert_int_eq(anylock_lock_held(l), 1);
    anylock_lock_free(l);
    ck_status(anylock_close(c), ANYLOCK_OK);
}
END_TEST

/* A thread of the parent held the client's mutex at the moment of fork():
 * in the child the mutex stays locked for ever, so no call on an inherited
 * handle may take it.  One thread keeps taking it while the main thread
 * forks; every child must answer at once (a hang is killed by its alarm). */
typedef struct mutex_spinner {
    anylock_lock *lock;
    atomic_int stop;
} mutex_spinner;

static void *spin_on_client_mutex(void *p)
{
    mutex_spinner *m = p;
    uint64_t token;
    while (!atomic_load(&m->stop)) {
        (void)anylock_lock_held(m->lock);
        (void)anylock_lock_token(m->lock, &token);
    }
    return NULL;
}

START_TEST(t_fork_while_another_thread_calls)
{
    anylock_client *c = open_ok("memory://forkbusy");
    anylock_lock *l = NULL;
    ck_status(anylock_lock_new(c, "f", &l), ANYLOCK_OK);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    mutex_spinner m = {.lock = l};
    pthread_t t;
    pthread_create(&t, NULL, spin_on_client_mutex, &m);
    int hung = 0, wrong = 0;
    for (int i = 0; i < 200 && !hung; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            alarm(5);
            uint64_t token;
            anylock_lock *other = NULL;
            int bad = anylock_acquire(l) != ANYLOCK_FORKED;
            bad |= anylock_lock_held(l) != 0;
            bad |= anylock_lock_token(l, &token) != ANYLOCK_FORKED;
            bad |= anylock_lock_new(c, "g", &other) != ANYLOCK_FORKED;
            bad |= strstr(anylock_errmsg(c), "fork") == NULL;
            _exit(bad);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        hung |= WIFSIGNALED(status);
        wrong |= WIFEXITED(status) && WEXITSTATUS(status) != 0;
    }
    atomic_store(&m.stop, 1);
    pthread_join(t, NULL);
    ck_assert_msg(!hung, "a child after fork() hung on a mutex its parent's thread held");
    ck_assert_msg(!wrong, "a child after fork() got a wrong answer on an inherited handle");
    anylock_lock_free(l);
    ck_status(anylock_close(c), ANYLOCK_OK);
}
END_TEST

/* The library's own threads never take the application's signals: each
 * starts with every signal blocked (a CLI that waits for SIGCHLD, a program
 * whose SIGINT handler must run in the main thread).  The synchronous ones
 * (a fault goes to the thread that made it, whatever its mask) are not
 * looked at: valgrind keeps them open in every thread for itself. */
START_TEST(t_threads_block_signals)
{
    anylock_client *c = open_ok("memory://sigmask");
    anylock_lock *l = NULL;
    ck_status(anylock_lock_new(c, "s", &l), ANYLOCK_OK);
    ck_status(anylock_lock_set_expires(l, 0.3), ANYLOCK_OK);
    ck_status(anylock_lock_set_auto_renewal(l, 1), ANYLOCK_OK);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    test_sleep(0.4); /* a renewal ran: the scheduler and a worker exist */
    DIR *d = opendir("/proc/self/task");
    ck_assert_ptr_nonnull(d);
    int others = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || atol(e->d_name) == (long)getpid())
            continue;
        char path[300], line[256];
        snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        unsigned long long blocked = 0;
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "SigBlk:", 7))
                blocked = strtoull(line + 7, NULL, 16);
        fclose(f);
        others++;
        for (int sig = 1; sig < 32; sig++) {
            if (sig == SIGKILL || sig == SIGSTOP || sig == SIGILL || sig == SIGTRAP || sig == SIGBUS ||
                sig == SIGFPE || sig == SIGSEGV || sig == SIGSYS)
                continue;
            ck_assert_msg(blocked & (1ULL << (sig - 1)), "thread %s takes signal %d", e->d_name, sig);
        }
    }
    closedir(d);
    ck_assert_int_ge(others, 2);
    anylock_lock_free(l);
    anylock_close(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("api");
    TCase *tc = tcase_create("api");
    tcase_add_test(tc, t_strerror);
    tcase_add_loop_test(tc, t_open_statuses, 0, sizeof opens / sizeof *opens);
    tcase_add_test(tc, t_backend_disabled_vs_unknown);
    tcase_add_test(tc, t_password_hidden);
    tcase_add_test(tc, t_names_and_ids);
    tcase_add_test(tc, t_durations);
    tcase_add_test(tc, t_combinations);
    tcase_add_test(tc, t_misuse);
    tcase_add_test(tc, t_defaults_precedence);
    tcase_add_test(tc, t_third_party_backend);
    tcase_add_test(tc, t_round_up_to_resolution);
    tcase_add_test(tc, t_parse_duration);
    tcase_add_test(tc, t_default_url);
    tcase_add_test(tc, t_tiny_default_expiry);
    tcase_add_test(tc, t_log);
    tcase_add_test(tc, t_features_and_options);
    tcase_add_test(tc, t_fork_free_in_child);
    tcase_add_test(tc, t_fork_while_another_thread_calls);
    tcase_add_test(tc, t_threads_block_signals);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
