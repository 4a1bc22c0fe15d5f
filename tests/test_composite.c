/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * migrate://: the conformance suite on a composite of two memory:// stores,
 * then what is the composite's own: both stores hold the lock, a failed
 * second acquire releases the first, a waiter keeps its old lock alive,
 * mixed fleets (old-only with composite, composite with new-only) never
 * overlap, list/inspect see the union, and a store failing mid-operation
 * gives a clear status and leaves nothing held in the other store.
 *
 * Failures are injected through "faulty://", a small store defined here and
 * registered at run time with the public backend API.
 *
 * Then, for each pair of real stores this build has (two sqlite files,
 * sqlite and redis, memcached and redis, sqlite and memcached), a child
 * process starts the servers it needs and runs the conformance suite on the
 * composite, mixed fleets of processes, and a server killed mid-operation.
 * (One child per pair, because the conformance suite keeps its
 * configuration in a static variable.)
 */
#include "config.h"

#include <check.h>
#include <pthread.h>
#include <sys/wait.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "anylock.h"
#include "anylock_backend.h"
#include "conformance.h"
#include "harness.h"

#include "check_status.h"

static anylock_lock *lock_on(anylock_client *c, const char *name, double expires)
{
    anylock_lock *l = NULL;
    ck_status(anylock_lock_new(c, name, &l), ANYLOCK_OK);
    ck_status(anylock_lock_set_expires(l, expires), ANYLOCK_OK);
    return l;
}

/* The name's holder in a store opened directly ("" when free). */
static void holder(anylock_client *c, const char *name, char *owner)
{
    anylock_info info;
    ck_status(anylock_inspect(c, name, &info), ANYLOCK_OK);
    snprintf(owner, ANYLOCK_ID_MAX + 1, "%s", info.held ? info.owner : "");
}

static int is_free(anylock_client *c, const char *name)
{
    char owner[ANYLOCK_ID_MAX + 1];
    holder(c, name, owner);
    return owner[0] == '\0';
}

/* A fleet of one test: a composite and the two stores opened directly, all
 * with the same prefix. */
typedef struct fleet {
    anylock_client *old, *comp, *nw;
} fleet;

static void fleet_open(fleet *f, const char *old_url, const char *new_url, const char *tag)
{
    char url[1024];
    snprintf(url, sizeof url, "%s?prefix=%s-%ld:", old_url, tag, (long)getpid());
    f->old = open_ok(url);
    snprintf(url, sizeof url, "%s?prefix=%s-%ld:", new_url, tag, (long)getpid());
    f->nw = open_ok(url);
    snprintf(url, sizeof url, "migrate://?old=%s&new=%s&prefix=%s-%ld:", old_url, new_url, tag, (long)getpid());
    f->comp = open_ok(url);
}

static void fleet_close(fleet *f)
{
    ck_status(anylock_close(f->comp), ANYLOCK_OK);
    ck_status(anylock_close(f->old), ANYLOCK_OK);
    ck_status(anylock_close(f->nw), ANYLOCK_OK);
}

/* ---- faulty://: one process-wide table of a few keys, with failures on
 * demand ---- */

static pthread_mutex_t faulty_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char key[256];
    char id[ANYLOCK_ID_MAX + 1];
} faulty_held[8];
static atomic_int fail_acquire, fail_release, fail_extend, faulty_releases;
/* The next acquire answers only after this long (a stalled store that
 * still says yes in the end), once. */
static atomic_int acquire_delay_ms;

static int faulty_find(const anylock_op *op)
{
    for (int i = 0; i < 8; i++)
        if (faulty_held[i].key[0] && !strcmp(faulty_held[i].key, op->key))
            return i;
    return -1;
}

static anylock_status faulty_open(anylock_op *op, const anylock_url *url)
{
    (void)op;
    (void)url;
    return ANYLOCK_OK;
}

static void faulty_close(anylock_op *op)
{
    (void)op;
}

static anylock_status faulty_acquire(anylock_op *op)
{
    int delay = atomic_exchange(&acquire_delay_ms, 0);
    if (delay)
        test_sleep(delay / 1000.0);
    if (atomic_load(&fail_acquire))
        return anylock_op_error(op, ANYLOCK_IO, "injected failure: the store went away");
    anylock_status st = ANYLOCK_OK;
    pthread_mutex_lock(&faulty_mu);
    int i = faulty_find(op);
    if (i >= 0) {
        st = strcmp(faulty_held[i].id, op->id) ? ANYLOCK_BUSY : ANYLOCK_ALREADY_HELD;
        if (st == ANYLOCK_BUSY && op->deadline != 0)
            st = ANYLOCK_TIMEOUT; /* this test store does not wait */
    } else {
        for (i = 0; i < 8 && faulty_held[i].key[0]; i++)
            ;
        if (i == 8) {
            st = ANYLOCK_NOMEM;
        } else {
            snprintf(faulty_held[i].key, sizeof faulty_held[i].key, "%s", op->key);
            snprintf(faulty_held[i].id, sizeof faulty_held[i].id, "%s", op->id);
        }
    }
    pthread_mutex_unlock(&faulty_mu);
    return st;
}

static anylock_status faulty_owned(anylock_op *op, int drop)
{
    anylock_status st = ANYLOCK_OK;
    pthread_mutex_lock(&faulty_mu);
    int i = faulty_find(op);
    if (i < 0 || strcmp(faulty_held[i].id, op->id))
        st = ANYLOCK_NOT_HELD;
    else if (drop)
        faulty_held[i].key[0] = '\0';
    pthread_mutex_unlock(&faulty_mu);
    return st;
}

static anylock_status faulty_release(anylock_op *op)
{
    atomic_fetch_add(&faulty_releases, 1);
    if (atomic_load(&fail_release))
        return anylock_op_error(op, ANYLOCK_IO, "injected failure: the store went away");
    return faulty_owned(op, 1);
}

static anylock_status faulty_extend(anylock_op *op)
{
    if (atomic_load(&fail_extend))
        return anylock_op_error(op, ANYLOCK_IO, "injected failure: the store went away");
    return faulty_owned(op, 0);
}

static anylock_status faulty_inspect(anylock_op *op, anylock_info *info)
{
    pthread_mutex_lock(&faulty_mu);
    int i = faulty_find(op);
    if (i >= 0) {
        info->held = 1;
        snprintf(info->owner, sizeof info->owner, "%s", faulty_held[i].id);
        info->expires_in = ANYLOCK_FOREVER;
    }
    pthread_mutex_unlock(&faulty_mu);
    return ANYLOCK_OK;
}

static anylock_status faulty_reset(anylock_op *op)
{
    pthread_mutex_lock(&faulty_mu);
    int i = faulty_find(op);
    if (i >= 0)
        faulty_held[i].key[0] = '\0';
    pthread_mutex_unlock(&faulty_mu);
    return ANYLOCK_OK;
}

/* A version-1 backend (inspect, no enumerate): version 1 keeps working. */
static const anylock_backend faulty_backend = {
    .version = 1,
    .name = "faulty",
    .state_size = 0,
    .expiry_resolution_ms = 1,
    .open = faulty_open,
    .close = faulty_close,
    .acquire = faulty_acquire,
    .release = faulty_release,
    .extend = faulty_extend,
    .inspect = faulty_inspect,
    .reset = faulty_reset,
};

static void faulty_setup(void)
{
    atomic_store(&fail_acquire, 0);
    atomic_store(&fail_release, 0);
    atomic_store(&fail_extend, 0);
    atomic_store(&faulty_releases, 0);
    atomic_store(&acquire_delay_ms, 0);
    pthread_mutex_lock(&faulty_mu);
    memset(faulty_held, 0, sizeof faulty_held);
    pthread_mutex_unlock(&faulty_mu);
}

/* ---- URLs ---- */

START_TEST(t_urls)
{
    static const struct {
        const char *url;
        anylock_status want;
        const char *says;
    } cases[] = {
        {"migrate://", ANYLOCK_URL_BAD_PARAM, "old= is missing"},
        {"migrate://?old=memory://u1", ANYLOCK_URL_BAD_PARAM, "new= is missing"},
        {"migrate://?old=memory://u1&new=memory://u1", ANYLOCK_URL_BAD_PARAM, "same store"},
        {"migrate://?old=memory://u1&new=nosuch://u2", ANYLOCK_URL_UNKNOWN_SCHEME, "new store"},
        {"migrate://?old=memory://u1%3Fprefix%3Dx:&new=memory://u2", ANYLOCK_URL_BAD_PARAM, "set prefix"},
        {"migrate://?old=memory://u1&new=memory://u2%3Fexpires%3D5", ANYLOCK_URL_BAD_PARAM, "set expires"},
        {"migrate://?old=memory://u1&new=memory://u2/path", ANYLOCK_URL_BAD_PATH, "new store"},
        {"migrate://?old=memory://u1&new=memory://u2%zz", ANYLOCK_URL_BAD_ESCAPE, NULL},
        {"migrate://?old=memory%3A%2F%2Fu1&new=memory://u2/%25zz", ANYLOCK_URL_BAD_ESCAPE, "parameter new"},
        {"migrate://host?old=memory://u1&new=memory://u2", ANYLOCK_URL_MALFORMED, "no host"},
        {"migrate://?old=memory://u1&new=memory://u2&bogus=1", ANYLOCK_URL_UNKNOWN_PARAM, "bogus"},
        {"migrate://?old=migrate%3A%2F%2F%3Fold%3Dmemory%3A%2F%2Fa%26new%3Dmemory%3A%2F%2Fb&new=memory://u2",
         ANYLOCK_URL_BAD_PARAM, "nested"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        anylock_client *c = NULL;
        anylock_status st = anylock_open(cases[i].url, &c);
        ck_assert_msg(st == cases[i].want, "%s: got %s (%s), want %s", cases[i].url, anylock_status_name(st),
                      anylock_errmsg(c), anylock_status_name(cases[i].want));
        if (cases[i].says)
            ck_assert_msg(strstr(anylock_errmsg(c), cases[i].says), "%s: message \"%s\" lacks \"%s\"",
                          cases[i].url, anylock_errmsg(c), cases[i].says);
        ck_status(anylock_close(c), ANYLOCK_OK);
    }
    /* Percent-encoded sub-URLs work, and the core's parameters apply. */
    anylock_client *c = open_ok("migrate://?old=memory%3A%2F%2Fu1&new=memory%3A%2F%2Fu2&prefix=p:&expires=2");
    ck_assert_str_eq(anylock_client_scheme(c), "migrate");
    ck_assert_str_eq(anylock_client_prefix(c), "p:");
    ck_status(anylock_close(c), ANYLOCK_OK);
}
END_TEST

/* Passwords inside the store URLs never show (faulty:// takes a user and a
 * password; memory:// refuses them). */
START_TEST(t_passwords_redacted)
{
    static const struct {
        const char *url;
        anylock_status want;
        const char *shown;
    } cases[] = {
        {"migrate://?old=faulty://al:s3cret@red1&new=faulty://bo:p%2540ss@red2&prefix=r:", ANYLOCK_OK,
         "migrate://?old=faulty://al:***@red1&new=faulty://bo:***@red2&prefix=r:"},
        {"migrate://?old=faulty%3A%2F%2Fal%3As3cret%40red1&new=memory://red2", ANYLOCK_OK,
         "migrate://?old=faulty://al:***@red1&new=memory://red2"},
        {"migrate://?old=faulty://al:s3cret@red1&new=nosuch://bo:s3cret@x", ANYLOCK_URL_UNKNOWN_SCHEME,
         "migrate://?old=faulty://al:***@red1&new=nosuch://bo:***@x"},
        {"migrate://u:longs3cret@?old=faulty://al:s3cret@red1&new=memory://red2", ANYLOCK_URL_BAD_USERINFO,
         "migrate://u:***@?old=faulty://al:***@red1&new=memory://red2"},
        {"migrate://u:s@?old=faulty://al:s3cret@red1&new=memory://red2", ANYLOCK_URL_BAD_USERINFO,
         "migrate://u:***@?old=faulty://al:***@red1&new=memory://red2"},
        {"migrate://?old=faulty://al:s3cret@red1%3Fprefix%3Dx&new=memory://red2", ANYLOCK_URL_BAD_PARAM,
         "migrate://?old=faulty://al:***@red1?prefix%3Dx&new=memory://red2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        anylock_client *c = NULL;
        anylock_status st = anylock_open(cases[i].url, &c);
        ck_assert_msg(st == cases[i].want, "%s: got %s (%s)", cases[i].url, anylock_status_name(st),
                      anylock_errmsg(c));
        ck_assert_str_eq(anylock_client_url(c), cases[i].shown);
        ck_assert_msg(!strstr(anylock_errmsg(c), "s3cret"), "message shows a password: %s", anylock_errmsg(c));
        ck_status(anylock_close(c), ANYLOCK_OK);
    }
}
END_TEST

/* ---- both stores ---- */

START_TEST(t_held_in_both)
{
    fleet f;
    fleet_open(&f, "memory://both-o", "memory://both-n", "both");
    anylock_lock *l = lock_on(f.comp, "job", 30);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    char owner[ANYLOCK_ID_MAX + 1];
    holder(f.old, "job", owner);
    ck_assert_str_eq(owner, anylock_lock_id(l));
    holder(f.nw, "job", owner);
    ck_assert_str_eq(owner, anylock_lock_id(l));
    /* A process on either URL is kept out. */
    anylock_lock *o = lock_on(f.old, "job", 30), *n = lock_on(f.nw, "job", 30);
    ck_status(anylock_try_acquire(o), ANYLOCK_BUSY);
    ck_status(anylock_try_acquire(n), ANYLOCK_BUSY);
    ck_status(anylock_extend(l, 40), ANYLOCK_OK);
    anylock_info info;
    ck_status(anylock_inspect(f.old, "job", &info), ANYLOCK_OK);
    ck_assert_msg(info.expires_in > 31 && info.expires_in <= 40, "old store expires_in %.3f", info.expires_in);
    ck_status(anylock_inspect(f.nw, "job", &info), ANYLOCK_OK);
    ck_assert_msg(info.expires_in > 31 && info.expires_in <= 40, "new store expires_in %.3f", info.expires_in);
    ck_status(anylock_release(l), ANYLOCK_OK);
    ck_assert(is_free(f.old, "job"));
    ck_assert(is_free(f.nw, "job"));
    /* The same owner id through the composite is already the holder. */
    ck_status(anylock_lock_set_id(o, anylock_lock_id(l)), ANYLOCK_OK);
    ck_status(anylock_try_acquire(o), ANYLOCK_OK);
    ck_status(anylock_try_acquire(l), ANYLOCK_ALREADY_HELD);
    ck_assert(is_free(f.nw, "job"));
    ck_status(anylock_release(o), ANYLOCK_OK);
    anylock_lock_free(l);
    anylock_lock_free(o);
    anylock_lock_free(n);
    fleet_close(&f);
}
END_TEST

START_TEST(t_second_fails_releases_first)
{
    fleet f;
    fleet_open(&f, "memory://second-o", "memory://second-n", "second");
    anylock_lock *n = lock_on(f.nw, "job", 30), *l = lock_on(f.comp, "job", 30);
    ck_status(anylock_acquire(n), ANYLOCK_OK);
    ck_status(anylock_try_acquire(l), ANYLOCK_BUSY);
    ck_assert_msg(strstr(anylock_lock_errmsg(l), "new store"), "message: %s", anylock_lock_errmsg(l));
    ck_assert(is_free(f.old, "job"));
    ck_status(anylock_lock_set_timeout(l, 0.3), ANYLOCK_OK);
    double t0 = test_now();
    ck_status(anylock_acquire(l), ANYLOCK_TIMEOUT);
    ck_assert_msg(test_now() - t0 >= 0.29, "gave up after %.3f s", test_now() - t0);
    ck_assert(is_free(f.old, "job"));
    ck_assert_int_eq(anylock_lock_held(l), 0);
    ck_status(anylock_release(n), ANYLOCK_OK);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    ck_status(anylock_release(l), ANYLOCK_OK);
    anylock_lock_free(l);
    anylock_lock_free(n);
    fleet_close(&f);
}
END_TEST

START_TEST(t_first_busy_leaves_second)
{
    fleet f;
    fleet_open(&f, "memory://first-o", "memory://first-n", "first");
    anylock_lock *o = lock_on(f.old, "job", 30), *l = lock_on(f.comp, "job", 30);
    ck_status(anylock_acquire(o), ANYLOCK_OK);
    ck_status(anylock_try_acquire(l), ANYLOCK_BUSY);
    ck_assert_msg(strstr(anylock_lock_errmsg(l), "old store"), "message: %s", anylock_lock_errmsg(l));
    ck_assert(is_free(f.nw, "job"));
    ck_status(anylock_release(o), ANYLOCK_OK);
    anylock_lock_free(l);
    anylock_lock_free(o);
    fleet_close(&f);
}
END_TEST

/* ---- a composite waiting in the new store keeps its old lock ---- */

typedef struct waiter {
    anylock_client *client;
    anylock_status status;
    atomic_int done;
} waiter;

static void *composite_waiter(void *arg)
{
    waiter *w = arg;
    anylock_lock *l = NULL;
    if (anylock_lock_new(w->client, "job", &l) != ANYLOCK_OK) {
        w->status = ANYLOCK_INTERNAL;
    } else {
        anylock_lock_set_expires(l, 0.3);
        anylock_lock_set_auto_renewal(l, 1);
        anylock_lock_set_timeout(l, 20);
        w->status = anylock_acquire(l);
        if (w->status == ANYLOCK_OK)
            w->status = anylock_release(l);
        anylock_lock_free(l);
    }
    atomic_store(&w->done, 1);
    return NULL;
}

START_TEST(t_wait_keeps_old_lock)
{
    fleet f;
    fleet_open(&f, "memory://keep-o", "memory://keep-n", "keep");
    anylock_lock *n = lock_on(f.nw, "job", 30), *o = lock_on(f.old, "job", 30);
    ck_status(anylock_acquire(n), ANYLOCK_OK);
    waiter w = {f.comp, ANYLOCK_INTERNAL, 0};
    pthread_t t;
    pthread_create(&t, NULL, composite_waiter, &w);
    /* Wait until the composite holds the old lock and waits for the new. */
    double until = test_now() + 10;
    while (is_free(f.old, "job") && test_now() < until)
        test_sleep(0.01);
    ck_assert(!is_free(f.old, "job"));
    /* Over four expiries of 0.3 s, an old-only process never gets in. */
    int got_in = 0;
    until = test_now() + 1.2;
    while (test_now() < until) {
        if (anylock_try_acquire(o) == ANYLOCK_OK) {
            got_in++;
            anylock_release(o);
        }
        test_sleep(0.03);
    }
    ck_assert_int_eq(got_in, 0);
    ck_assert_int_eq(atomic_load(&w.done), 0);
    ck_status(anylock_release(n), ANYLOCK_OK);
    pthread_join(t, NULL);
    ck_status(w.status, ANYLOCK_OK);
    ck_assert(is_free(f.old, "job"));
    ck_assert(is_free(f.nw, "job"));
    anylock_lock_free(n);
    anylock_lock_free(o);
    fleet_close(&f);
}
END_TEST

typedef struct old_only {
    anylock_client *client;
    atomic_int got; /* 1 while it holds the old store's lock */
    double released_at;
    anylock_status status;
} old_only;

static void *old_only_main(void *arg)
{
    old_only *o = arg;
    anylock_lock *l = NULL;
    if (anylock_lock_new(o->client, "job", &l) != ANYLOCK_OK)
        return NULL;
    anylock_lock_set_expires(l, 30);
    anylock_lock_set_timeout(l, 10);
    /* The handshake: start waiting once the composite holds the old lock. */
    double until = test_now() + 10;
    anylock_info info;
    while (test_now() < until && (anylock_inspect(o->client, "job", &info) != ANYLOCK_OK || !info.held))
        test_sleep(0.002);
    o->status = anylock_acquire(l);
    if (o->status == ANYLOCK_OK) {
        atomic_store(&o->got, 1);
        test_sleep(1.5);
        o->released_at = test_now();
        atomic_store(&o->got, 0);
        anylock_release(l);
    }
    anylock_lock_free(l);
    return NULL;
}

/* The new store answers yes only after the old store's lease ran out and
 * an old-only process took the lock: the composite must not return OK on
 * that lapsed lease (it extends the old lock, finds it gone, gives up the
 * new one and starts again). */
START_TEST(t_new_answers_after_old_lease)
{
    faulty_setup();
    char url[1024];
    snprintf(url, sizeof url, "memory://lapse-o?prefix=lapse-%ld:", (long)getpid());
    anylock_client *old = open_ok(url);
    snprintf(url, sizeof url, "migrate://?old=memory://lapse-o&new=faulty://lapse-n&prefix=lapse-%ld:&expires=0.5",
             (long)getpid());
    anylock_client *comp = open_ok(url);
    anylock_lock *l = NULL;
    ck_status(anylock_lock_new(comp, "job", &l), ANYLOCK_OK);
    ck_status(anylock_lock_set_timeout(l, 10), ANYLOCK_OK);
    ck_status(anylock_lock_set_auto_renewal(l, 1), ANYLOCK_OK);
    atomic_store(&acquire_delay_ms, 1500);
    /* The old-only process waits for the old lock once the composite holds
     * it, and gets it when the composite's 0.5 s lease there runs out. */
    old_only o = {old, 0, 0, ANYLOCK_INTERNAL};
    pthread_t t;
    double t0 = test_now();
    pthread_create(&t, NULL, old_only_main, &o);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    double at = test_now();
    ck_assert_msg(atomic_load(&o.got) == 0,
                  "the composite returned OK %.3f s in while an old-only process held the old lock", at - t0);
    pthread_join(t, NULL);
    ck_status(o.status, ANYLOCK_OK);
    ck_assert_msg(at >= o.released_at, "OK at %.3f s, before the old-only holder released at %.3f s", at - t0,
                  o.released_at - t0);
    anylock_lock_free(l);
    ck_status(anylock_close(comp), ANYLOCK_OK);
    ck_status(anylock_close(old), ANYLOCK_OK);
}
END_TEST

/* The wait timeout bounds the whole acquire, also while the new store keeps
 * the composite waiting and the old lock is extended between slices of the
 * wait: TIMEOUT at the deadline (not a slice or a lease later), and the old
 * store's lock is let go. */
START_TEST(t_wait_timeout_honoured)
{
    char url[1024];
    snprintf(url, sizeof url, "memory://honour-n?prefix=honour-%ld:", (long)getpid());
    anylock_client *new_side = open_ok(url);
    snprintf(url, sizeof url, "memory://honour-o?prefix=honour-%ld:", (long)getpid());
    anylock_client *old_side = open_ok(url);
    snprintf(url, sizeof url,
             "migrate://?old=memory://honour-o&new=memory://honour-n&prefix=honour-%ld:&expires=0.3", (long)getpid());
    anylock_client *comp = open_ok(url);
    anylock_lock *holder = NULL, *l = NULL, *probe = NULL;
    ck_status(anylock_lock_new(new_side, "job", &holder), ANYLOCK_OK);
    ck_status(anylock_lock_set_expires(holder, 60), ANYLOCK_OK);
    ck_status(anylock_acquire(holder), ANYLOCK_OK);
    ck_status(anylock_lock_new(comp, "job", &l), ANYLOCK_OK);
    ck_status(anylock_lock_set_timeout(l, 1.0), ANYLOCK_OK);
    ck_status(anylock_lock_set_auto_renewal(l, 1), ANYLOCK_OK);
    double t0 = test_now();
    ck_status(anylock_acquire(l), ANYLOCK_TIMEOUT);
    double took = test_now() - t0;
    ck_assert_msg(took >= 0.99, "TIMEOUT after %.3f s, before the 1 s wait", took);
    ck_assert_msg(took < 1.3, "TIMEOUT after %.3f s: the 1 s wait overshot", took);
    ck_status(anylock_lock_new(old_side, "job", &probe), ANYLOCK_OK);
    ck_status(anylock_try_acquire(probe), ANYLOCK_OK);
    anylock_lock_free(probe);
    anylock_lock_free(l);
    anylock_lock_free(holder);
    ck_status(anylock_close(comp), ANYLOCK_OK);
    ck_status(anylock_close(old_side), ANYLOCK_OK);
    ck_status(anylock_close(new_side), ANYLOCK_OK);
}
END_TEST

/* ---- mixed fleets ---- */

typedef struct arena {
    atomic_int inside, overlaps, failures;
    int counter;
} arena;

#define ITERATIONS 40

typedef struct contender {
    anylock_client *client;
    arena *arena;
} contender;

static void *contend(void *p)
{
    contender *ct = p;
    arena *ar = ct->arena;
    anylock_lock *l = NULL;
    if (anylock_lock_new(ct->client, "counter", &l) != ANYLOCK_OK) {
        atomic_fetch_add(&ar->failures, 1);
        return NULL;
    }
    anylock_lock_set_expires(l, 30);
    anylock_lock_set_timeout(l, 25);
    for (int i = 0; i < ITERATIONS; i++) {
        anylock_status st = anylock_acquire(l);
        if (st != ANYLOCK_OK) {
            fprintf(stderr, "contender on %s: acquire: %s (%s)\n", anylock_client_scheme(ct->client),
                    anylock_strerror(st), anylock_lock_errmsg(l));
            atomic_fetch_add(&ar->failures, 1);
            continue;
        }
        if (atomic_fetch_add(&ar->inside, 1) != 0)
            atomic_fetch_add(&ar->overlaps, 1);
        int v = ar->counter;
        usleep(200);
        ar->counter = v + 1;
        atomic_fetch_sub(&ar->inside, 1);
        if (anylock_release(l) != ANYLOCK_OK)
            atomic_fetch_add(&ar->failures, 1);
    }
    anylock_lock_free(l);
    return NULL;
}

/* Four threads on `a` and four on `b`, all on one counter. */
static void mixed(anylock_client *a, anylock_client *b)
{
    arena ar = {0};
    contender ca = {a, &ar}, cb = {b, &ar};
    pthread_t t[8];
    for (int i = 0; i < 8; i++)
        pthread_create(&t[i], NULL, contend, i % 2 ? &ca : &cb);
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    ck_assert_int_eq(atomic_load(&ar.failures), 0);
    ck_assert_int_eq(atomic_load(&ar.overlaps), 0);
    ck_assert_int_eq(ar.counter, 8 * ITERATIONS);
}

START_TEST(t_mixed_old_and_composite)
{
    fleet f;
    fleet_open(&f, "memory://mixo-o", "memory://mixo-n", "mixo");
    mixed(f.old, f.comp);
    ck_assert(is_free(f.old, "counter"));
    ck_assert(is_free(f.nw, "counter"));
    fleet_close(&f);
}
END_TEST

START_TEST(t_mixed_composite_and_new)
{
    fleet f;
    fleet_open(&f, "memory://mixn-o", "memory://mixn-n", "mixn");
    mixed(f.comp, f.nw);
    ck_assert(is_free(f.old, "counter"));
    ck_assert(is_free(f.nw, "counter"));
    fleet_close(&f);
}
END_TEST

/* ---- list, inspect, reset across both ---- */

typedef struct seen {
    int x, y, z, other;
    char owner_x[ANYLOCK_ID_MAX + 1], owner_y[ANYLOCK_ID_MAX + 1];
} seen;

static int collect(const anylock_info *info, void *ud)
{
    seen *s = ud;
    if (!strcmp(info->name, "x")) {
        s->x++;
        snprintf(s->owner_x, sizeof s->owner_x, "%s", info->owner);
    } else if (!strcmp(info->name, "y")) {
        s->y++;
        snprintf(s->owner_y, sizeof s->owner_y, "%s", info->owner);
    } else if (!strcmp(info->name, "z")) {
        s->z++;
    } else {
        s->other++;
    }
    return 0;
}

START_TEST(t_union)
{
    fleet f;
    fleet_open(&f, "memory://union-o", "memory://union-n", "union");
    anylock_lock *x = lock_on(f.old, "x", 30), *y = lock_on(f.nw, "y", 30), *z = lock_on(f.comp, "z", 30);
    ck_status(anylock_acquire(x), ANYLOCK_OK);
    ck_status(anylock_acquire(y), ANYLOCK_OK);
    ck_status(anylock_acquire(z), ANYLOCK_OK);
    seen s = {0};
    ck_status(anylock_list(f.comp, collect, &s), ANYLOCK_OK);
    ck_assert_int_eq(s.x, 1);
    ck_assert_int_eq(s.y, 1);
    ck_assert_int_eq(s.z, 1);
    ck_assert_int_eq(s.other, 0);
    ck_assert_str_eq(s.owner_x, anylock_lock_id(x));
    ck_assert_str_eq(s.owner_y, anylock_lock_id(y));
    anylock_info info;
    ck_status(anylock_inspect(f.comp, "y", &info), ANYLOCK_OK);
    ck_assert_int_eq(info.held, 1);
    ck_assert_str_eq(info.owner, anylock_lock_id(y));
    ck_assert_str_eq(info.name, "y");
    /* Taking x or y through the composite meets the one-store holder. */
    anylock_lock *cx = lock_on(f.comp, "x", 30), *cy = lock_on(f.comp, "y", 30);
    ck_status(anylock_try_acquire(cx), ANYLOCK_BUSY);
    ck_status(anylock_try_acquire(cy), ANYLOCK_BUSY);
    ck_assert(is_free(f.old, "y"));
    ck_status(anylock_reset(f.comp, "y"), ANYLOCK_OK);
    ck_assert(is_free(f.nw, "y"));
    size_t count = 0;
    ck_status(anylock_reset_all(f.comp, &count), ANYLOCK_OK);
    ck_assert_uint_eq(count, 2); /* x in the old store; z in both */
    memset(&s, 0, sizeof s);
    ck_status(anylock_list(f.comp, collect, &s), ANYLOCK_OK);
    ck_assert_int_eq(s.x + s.y + s.z + s.other, 0);
    anylock_lock_free(x);
    anylock_lock_free(y);
    anylock_lock_free(z);
    anylock_lock_free(cx);
    anylock_lock_free(cy);
    fleet_close(&f);
}
END_TEST

START_TEST(t_half_lost_is_released)
{
    fleet f;
    fleet_open(&f, "memory://half-o", "memory://half-n", "half");
    anylock_lock *l = lock_on(f.comp, "job", 30);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    /* Someone resets the lock in the new store only. */
    ck_status(anylock_reset(f.nw, "job"), ANYLOCK_OK);
    ck_status(anylock_extend(l, 30), ANYLOCK_NOT_HELD);
    ck_assert_msg(strstr(anylock_lock_errmsg(l), "new store"), "message: %s", anylock_lock_errmsg(l));
    ck_assert(is_free(f.old, "job"));
    ck_assert_int_eq(anylock_lock_held(l), 0);
    /* And in the old store only: release reports it, and frees the new. */
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    ck_status(anylock_reset(f.old, "job"), ANYLOCK_OK);
    ck_status(anylock_release(l), ANYLOCK_NOT_HELD);
    ck_assert(is_free(f.nw, "job"));
    anylock_lock_free(l);
    fleet_close(&f);
}
END_TEST

/* ---- a store failing mid-operation ---- */

START_TEST(t_new_store_fails)
{
    faulty_setup();
    fleet f;
    fleet_open(&f, "memory://fail-o", "faulty://", "failn");
    anylock_lock *l = lock_on(f.comp, "job", 30);
    atomic_store(&fail_acquire, 1);
    ck_status(anylock_acquire(l), ANYLOCK_IO);
    ck_assert_msg(strstr(anylock_lock_errmsg(l), "new store (faulty): injected failure"), "message: %s",
                  anylock_lock_errmsg(l));
    ck_assert(is_free(f.old, "job"));
    atomic_store(&fail_acquire, 0);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    atomic_store(&fail_extend, 1);
    ck_status(anylock_extend(l, 30), ANYLOCK_IO);
    ck_assert_msg(strstr(anylock_lock_errmsg(l), "new store"), "message: %s", anylock_lock_errmsg(l));
    atomic_store(&fail_release, 1);
    ck_status(anylock_release(l), ANYLOCK_IO);
    ck_assert_msg(strstr(anylock_lock_errmsg(l), "new store"), "message: %s", anylock_lock_errmsg(l));
    /* The old store was released all the same. */
    ck_assert(is_free(f.old, "job"));
    anylock_lock_free(l);
    fleet_close(&f);
}
END_TEST

START_TEST(t_old_store_fails)
{
    faulty_setup();
    fleet f;
    fleet_open(&f, "faulty://", "memory://fail-n", "failo");
    anylock_lock *l = lock_on(f.comp, "job", 30), *n = lock_on(f.nw, "job", 30);
    /* Rollback: the second store is busy, so the first is released. */
    ck_status(anylock_acquire(n), ANYLOCK_OK);
    ck_status(anylock_try_acquire(l), ANYLOCK_BUSY);
    ck_assert_int_eq(atomic_load(&faulty_releases), 1);
    ck_assert(is_free(f.old, "job"));
    /* A rollback that fails says the lock stays until its expiry. */
    atomic_store(&fail_release, 1);
    ck_status(anylock_try_acquire(l), ANYLOCK_BUSY);
    ck_assert_msg(strstr(anylock_lock_errmsg(l), "until its expiry"), "message: %s", anylock_lock_errmsg(l));
    ck_status(anylock_reset(f.old, "job"), ANYLOCK_OK);
    atomic_store(&fail_release, 0);
    ck_status(anylock_release(n), ANYLOCK_OK);
    /* The old store fails on release: the new one is still released. */
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    atomic_store(&fail_release, 1);
    ck_status(anylock_release(l), ANYLOCK_IO);
    ck_assert_msg(strstr(anylock_lock_errmsg(l), "old store (faulty)"), "message: %s", anylock_lock_errmsg(l));
    ck_assert(is_free(f.nw, "job"));
    /* The old store fails on acquire: nothing is taken in the new one. */
    ck_status(anylock_reset(f.old, "job"), ANYLOCK_OK);
    atomic_store(&fail_acquire, 1);
    ck_status(anylock_try_acquire(l), ANYLOCK_IO);
    ck_assert(is_free(f.nw, "job"));
    /* faulty:// cannot list, so neither can the composite, and it says so
     * without calling either store. */
    seen s = {0};
    ck_status(anylock_list(f.comp, collect, &s), ANYLOCK_UNSUPPORTED);
    ck_assert_int_eq(anylock_client_features(f.comp) & ANYLOCK_FEATURE_LIST, 0);
    ck_assert_msg(strstr(anylock_errmsg(f.comp), "not supported"), "message: %s", anylock_errmsg(f.comp));
    anylock_lock_free(l);
    anylock_lock_free(n);
    fleet_close(&f);
}
END_TEST

static Suite *composite_suite(void)
{
    Suite *s = suite_create("migrate");
    test_case tests[] = {
        {"urls", t_urls},
        {"passwords_redacted", t_passwords_redacted},
        {"held_in_both", t_held_in_both},
        {"second_fails_releases_first", t_second_fails_releases_first},
        {"first_busy_leaves_second", t_first_busy_leaves_second},
        {"wait_keeps_old_lock", t_wait_keeps_old_lock},
        {"new_answers_after_old_lease", t_new_answers_after_old_lease},
        {"wait_timeout_honoured", t_wait_timeout_honoured},
        {"mixed_old_and_composite", t_mixed_old_and_composite},
        {"mixed_composite_and_new", t_mixed_composite_and_new},
        {"union", t_union},
        {"half_lost_is_released", t_half_lost_is_released},
        {"new_store_fails", t_new_store_fails},
        {"old_store_fails", t_old_store_fails},
    };
    add_test_cases(s, tests, sizeof tests / sizeof tests[0], NULL, NULL, 120);
    return s;
}

/* ---- pairs of real stores ---- */

#if defined(ANYLOCK_WITH_SQLITE) || (defined(ANYLOCK_WITH_REDIS) && defined(ANYLOCK_WITH_MEMCACHED))
#define HAVE_PAIRS 1
#endif

#ifdef HAVE_PAIRS

enum { OLD_SIDE = 0, NEW_SIDE = 1 };

typedef struct store {
    const char *kind;     /* "sqlite", "redis", "memcached" */
    char url[600];
    test_server srv;
    int has_server;
    char dir[256];
    int can_list, can_reset_all;
    double expiry, slack;
} store;

static store pair[2];       /* old, new */
static char pair_url[2048]; /* the composite */

static int ignore_listed(const anylock_info *info, void *ud)
{
    (void)info;
    (void)ud;
    return 0;
}

/* Asks the store what it supports, rather than guessing. */
static int store_probe(store *s)
{
    char url[700];
    snprintf(url, sizeof url, "%s?prefix=probe-%ld:", s->url, (long)getpid());
    anylock_client *c = NULL;
    if (anylock_open(url, &c) != ANYLOCK_OK) {
        fprintf(stderr, "cannot open %s: %s\n", s->url, anylock_errmsg(c));
        anylock_close(c);
        return -1;
    }
    size_t n;
    s->can_list = anylock_list(c, ignore_listed, NULL) != ANYLOCK_UNSUPPORTED;
    s->can_reset_all = anylock_reset_all(c, &n) != ANYLOCK_UNSUPPORTED;
    anylock_close(c);
    return 0;
}

static int store_start(store *s, const char *kind, const char *tag)
{
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->can_list = 1;
    s->expiry = 0.5;
    s->slack = 0.3;
    if (!strcmp(kind, "sqlite")) {
        if (test_tmpdir(s->dir, sizeof s->dir))
            return -1;
        snprintf(s->url, sizeof s->url, "sqlite:///%s/%s.db", s->dir, tag);
        return store_probe(s);
    }
    if (!strcmp(kind, "memcached")) {
        /* memcached counts expiries in whole seconds: the same 3 s as its
         * own test, for the same renewal margin. */
        s->expiry = 3.0;
        s->slack = 1.5;
    }
    if (test_server_start(&s->srv, kind, NULL))
        return -1;
    s->has_server = 1;
    snprintf(s->url, sizeof s->url, "%s", s->srv.url);
    return store_probe(s);
}

static void store_stop(store *s)
{
    if (s->has_server)
        test_server_stop(&s->srv);
    if (s->dir[0])
        test_rmtree(s->dir);
}

/* A client on one side of the pair (0 old, 1 new, 2 the composite) with a
 * prefix shared by all three. */
static anylock_client *pair_client(int side, const char *tag)
{
    char url[2400];
    snprintf(url, sizeof url, "%s%cprefix=pair-%s-%ld:", side == 2 ? pair_url : pair[side].url,
             side == 2 ? '&' : '?', tag, (long)getpid());
    return open_ok(url);
}

typedef struct fleet_run {
    arena ar;
    int sides[2]; /* which sides the processes use, alternately */
    char tag[16];
} fleet_run;

#define PROCESS_ITERATIONS 15

static int fleet_process(int index, void *arg)
{
    fleet_run *fr = arg;
    int side = fr->sides[index % 2];
    char url[2400];
    /* getppid(): the test process, whose pid names the prefix. */
    snprintf(url, sizeof url, "%s%cprefix=pair-%s-%ld:", side == 2 ? pair_url : pair[side].url,
             side == 2 ? '&' : '?', fr->tag, (long)getppid());
    anylock_client *c = NULL;
    if (anylock_open(url, &c) != ANYLOCK_OK) {
        fprintf(stderr, "fleet process: open: %s\n", anylock_errmsg(c));
        anylock_close(c);
        return 1;
    }
    anylock_lock *l = NULL;
    int rc = anylock_lock_new(c, "counter", &l) != ANYLOCK_OK;
    anylock_lock_set_expires(l, 30);
    anylock_lock_set_timeout(l, 25);
    for (int i = 0; i < PROCESS_ITERATIONS && !rc; i++) {
        anylock_status st = anylock_acquire(l);
        if (st != ANYLOCK_OK) {
            fprintf(stderr, "fleet process on %s: acquire: %s (%s)\n", anylock_client_scheme(c),
                    anylock_strerror(st), anylock_lock_errmsg(l));
            atomic_fetch_add(&fr->ar.failures, 1);
            continue;
        }
        if (atomic_fetch_add(&fr->ar.inside, 1) != 0)
            atomic_fetch_add(&fr->ar.overlaps, 1);
        int v = fr->ar.counter;
        usleep(500);
        fr->ar.counter = v + 1;
        atomic_fetch_sub(&fr->ar.inside, 1);
        if (anylock_release(l) != ANYLOCK_OK)
            atomic_fetch_add(&fr->ar.failures, 1);
    }
    anylock_lock_free(l);
    anylock_close(c);
    return rc;
}

static void fleet_of_processes(int side_a, int side_b, const char *tag)
{
    fleet_run *fr = test_shared_alloc(sizeof *fr);
    ck_assert_ptr_nonnull(fr);
    fr->sides[0] = side_a;
    fr->sides[1] = side_b;
    snprintf(fr->tag, sizeof fr->tag, "%s", tag);
    int n = 8;
    int failed = test_fork_n(n, fleet_process, fr, 240);
    int failures = atomic_load(&fr->ar.failures), overlaps = atomic_load(&fr->ar.overlaps);
    ck_assert_int_eq(failed, 0);
    ck_assert_int_eq(failures, 0);
    ck_assert_int_eq(overlaps, 0);
    ck_assert_int_eq(fr->ar.counter, n * PROCESS_ITERATIONS);
    test_shared_free(fr, sizeof *fr);
}

START_TEST(t_processes_old_and_composite)
{
    fleet_of_processes(0, 2, "po");
}
END_TEST

START_TEST(t_processes_composite_and_new)
{
    fleet_of_processes(2, 1, "pn");
}
END_TEST

/* The server of one side dies while the composite holds a lock: release
 * says which store failed, and the other store is left free; an acquire
 * while it is down fails the same way and takes nothing in the other. */
START_TEST(t_server_dies)
{
    int dying = pair[NEW_SIDE].has_server ? NEW_SIDE : OLD_SIDE;
    int other = !dying;
    ck_assert(pair[dying].has_server);
    anylock_client *comp = pair_client(2, "die"), *direct = pair_client(other, "die");
    anylock_lock *l = lock_on(comp, "job", 30);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    ck_assert(!is_free(direct, "job"));
    test_server_kill(&pair[dying].srv);
    anylock_status st = anylock_release(l);
    /* OUTCOME_UNKNOWN: the request went out before the server was gone
     * (the server is not this process's child, so the kill is not waited
     * for). */
    ck_assert_msg(st == ANYLOCK_IO || st == ANYLOCK_CONNECT || st == ANYLOCK_OUTCOME_UNKNOWN, "release: %s (%s)",
                  anylock_status_name(st), anylock_lock_errmsg(l));
    ck_assert_msg(strstr(anylock_lock_errmsg(l), dying == NEW_SIDE ? "new store" : "old store"), "message: %s",
                  anylock_lock_errmsg(l));
    ck_assert(is_free(direct, "job"));
    ck_status(anylock_lock_set_timeout(l, 2), ANYLOCK_OK);
    st = anylock_acquire(l);
    ck_assert_msg(st == ANYLOCK_IO || st == ANYLOCK_CONNECT, "acquire: %s (%s)", anylock_status_name(st),
                  anylock_lock_errmsg(l));
    ck_assert(is_free(direct, "job"));
    anylock_lock_free(l);
    anylock_close(comp);
    anylock_close(direct);
}
END_TEST

static Suite *pair_suite(const char *label)
{
    Suite *s = suite_create(label);
    TCase *tc = tcase_create("processes_old_and_composite");
    tcase_set_timeout(tc, 250);
    tcase_add_test(tc, t_processes_old_and_composite);
    suite_add_tcase(s, tc);
    tc = tcase_create("processes_composite_and_new");
    tcase_set_timeout(tc, 250);
    tcase_add_test(tc, t_processes_composite_and_new);
    suite_add_tcase(s, tc);
    /* Last: it kills a server. */
    if (pair[OLD_SIDE].has_server || pair[NEW_SIDE].has_server) {
        tc = tcase_create("server_dies");
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, t_server_dies);
        suite_add_tcase(s, tc);
    }
    return s;
}

/* Runs the composite of (old_kind, new_kind) in a child process. */
/* Starts the suites of one pair of stores in a process of its own (the
 * pairs run side by side: their time goes on waiting for expiries); -1 if
 * it could not start. */
static pid_t start_pair(const char *old_kind, const char *new_kind)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    int rc = 1;
    if (store_start(&pair[OLD_SIDE], old_kind, "old") == 0 && store_start(&pair[NEW_SIDE], new_kind, "new") == 0) {
        snprintf(pair_url, sizeof pair_url, "migrate://?old=%s&new=%s", pair[OLD_SIDE].url, pair[NEW_SIDE].url);
        static char label[64];
        snprintf(label, sizeof label, "migrate %s+%s", old_kind, new_kind);
        conformance_config cfg = {
            .label = label,
            .url = pair_url,
            .excludes = 1,
            .cross_process = 1,
            .can_list = pair[OLD_SIDE].can_list && pair[NEW_SIDE].can_list,
            .can_reset_all = pair[OLD_SIDE].can_reset_all && pair[NEW_SIDE].can_reset_all,
            .expiry = pair[OLD_SIDE].expiry > pair[NEW_SIDE].expiry ? pair[OLD_SIDE].expiry : pair[NEW_SIDE].expiry,
            .slack = pair[OLD_SIDE].slack > pair[NEW_SIDE].slack ? pair[OLD_SIDE].slack : pair[NEW_SIDE].slack,
            .processes = 8,
        };
        rc = conformance_run(conformance_suite(&cfg), pair_suite(label));
    } else {
        fprintf(stderr, "cannot start the %s and %s stores\n", old_kind, new_kind);
    }
    store_stop(&pair[OLD_SIDE]);
    store_stop(&pair[NEW_SIDE]);
    fflush(NULL);
    _exit(rc);
}
#endif /* HAVE_PAIRS */

/* Whether the pair process pid failed (or never started). */
static int pair_failed(pid_t pid)
{
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return 1;
    return !WIFEXITED(status) || WEXITSTATUS(status) != 0;
}

int main(void)
{
    if (anylock_backend_register("faulty", &faulty_backend) != ANYLOCK_OK) {
        fprintf(stderr, "cannot register faulty://\n");
        return 1;
    }
    static const conformance_config memory_pair = {
        .label = "migrate memory+memory",
        .url = "migrate://?old=memory://conf-old&new=memory://conf-new",
        .excludes = 1,
        .cross_process = 0,
        .can_list = 1,
        .can_reset_all = 1,
        .expiry = 0.3,
        .slack = 0.1,
        .processes = 0,
    };
    pid_t pairs[3];
    size_t npairs = 0;
#if defined(ANYLOCK_WITH_SQLITE) && !defined(ANYLOCK_WITH_REDIS)
    /* Two files: a pair of real stores even in a build without servers. */
    pairs[npairs++] = start_pair("sqlite", "sqlite");
#endif
#if defined(ANYLOCK_WITH_SQLITE) && defined(ANYLOCK_WITH_REDIS)
    pairs[npairs++] = start_pair("sqlite", "redis");
#endif
#if defined(ANYLOCK_WITH_MEMCACHED) && defined(ANYLOCK_WITH_REDIS)
    pairs[npairs++] = start_pair("memcached", "redis");
#endif
#if defined(ANYLOCK_WITH_SQLITE) && defined(ANYLOCK_WITH_MEMCACHED)
    pairs[npairs++] = start_pair("sqlite", "memcached");
#endif
    int failed = conformance_run(conformance_suite(&memory_pair), composite_suite());
    for (size_t i = 0; i < npairs; i++)
        failed |= pair_failed(pairs[i]);
    return failed;
}
