/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Backends written against the backend-author header, here in the test,
 * registered at run time, each running the whole conformance suite:
 *
 *   toy1://   a version-1 backend (inspect and list, no per-lock state, no
 *             capabilities), as one written before version 2: it must keep
 *             working unchanged.
 *   session:// a version-2, session-bound store (ANYLOCK_BACKEND_SESSION):
 *             a lock lives on its holder's "session", the store reports a
 *             session that ends with anylock_lock_lost() from its own
 *             thread, and expiries are the holder's, kept by the core.
 *
 * Then what the interface itself promises: registration refuses unknown
 * versions and absurd sizes, and the session store's own behaviour (a
 * reported loss reaches the callback and frees the lock at once, no expiry
 * by default, the holder-side expiry is honoured).
 */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anylock.h"
#include "anylock_backend.h"
#include "check_status.h"
#include "conformance.h"
#include "harness.h"

/* ---- an in-process table both toys keep their locks in ---- */

#define SLOTS 64

typedef struct slot {
    int used;
    char key[256];
    char id[ANYLOCK_ID_MAX + 1];
    int64_t expires_at;        /* monotonic ns; 0: never (toy1 enforces it; session only shows it) */
    anylock_lock *holder;      /* session:// only: the handle, to report its loss */
    char meta[ANYLOCK_META_MAX];
    size_t meta_len;
} slot;

typedef struct table {
    pthread_mutex_t mu;
    pthread_cond_t changed;
    slot s[SLOTS];
} table;

static table toy1_table = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, {{0}}};
static table session_table = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, {{0}}};
static pthread_once_t conds_once = PTHREAD_ONCE_INIT;

static void init_conds(void)
{
    anylock_cond_init(&toy1_table.changed);
    anylock_cond_init(&session_table.changed);
}

static slot *find(table *t, const anylock_op *op, int expiring)
{
    for (int i = 0; i < SLOTS; i++) {
        slot *s = &t->s[i];
        if (!s->used || strcmp(s->key, op->key))
            continue;
        if (expiring && s->expires_at && s->expires_at <= anylock_now_ns()) {
            s->used = 0;
            pthread_cond_broadcast(&t->changed);
            return NULL;
        }
        return s;
    }
    return NULL;
}

static slot *take(table *t, const anylock_op *op)
{
    for (int i = 0; i < SLOTS; i++) {
        slot *s = &t->s[i];
        if (!s->used) {
            memset(s, 0, sizeof *s);
            s->used = 1;
            snprintf(s->key, sizeof s->key, "%s", op->key);
            snprintf(s->id, sizeof s->id, "%s", op->id);
            s->meta_len = op->meta_len < sizeof s->meta ? op->meta_len : 0;
            if (s->meta_len)
                memcpy(s->meta, op->meta, s->meta_len);
            return s;
        }
    }
    return NULL;
}

/* Waits in t for op->key to be free; the slot is then ours.  expiring: the
 * store frees expired slots itself (toy1). */
static anylock_status table_acquire(table *t, anylock_op *op, int expiring, slot **out)
{
    anylock_status st;
    pthread_mutex_lock(&t->mu);
    for (;;) {
        slot *s = find(t, op, expiring);
        if (!s) {
            s = take(t, op);
            st = s ? ANYLOCK_OK : ANYLOCK_NOMEM;
            if (s && op->expires_ms)
                s->expires_at = anylock_now_ns() + op->expires_ms * 1000000;
            *out = s;
            break;
        }
        if (!strcmp(s->id, op->id)) {
            st = anylock_op_error(op, ANYLOCK_ALREADY_HELD, "already held by this owner id");
            break;
        }
        if (op->deadline == 0) {
            st = ANYLOCK_BUSY;
            break;
        }
        if (op->deadline != ANYLOCK_DEADLINE_NEVER && anylock_now_ns() >= op->deadline) {
            st = ANYLOCK_TIMEOUT;
            break;
        }
        int64_t wake = op->deadline;
        if (expiring && s->expires_at && s->expires_at < wake)
            wake = s->expires_at;
        anylock_cond_wait_until(&t->changed, &t->mu, wake);
    }
    if (st != ANYLOCK_OK)
        pthread_mutex_unlock(&t->mu);
    return st; /* OK: t->mu still held, for the caller to finish the slot */
}

/* ---- toy1://: a version-1 backend ---- */

static anylock_status toy1_open(anylock_op *op, const anylock_url *url)
{
    (void)op;
    (void)url;
    pthread_once(&conds_once, init_conds);
    return ANYLOCK_OK;
}

static void toy1_close(anylock_op *op)
{
    (void)op;
}

static anylock_status toy1_acquire(anylock_op *op)
{
    slot *s;
    anylock_status st = table_acquire(&toy1_table, op, 1, &s);
    if (st == ANYLOCK_OK)
        pthread_mutex_unlock(&toy1_table.mu);
    return st;
}

/* The slot op->id holds, or NULL with a NOT_HELD answer. */
static slot *owned(table *t, anylock_op *op, int expiring, anylock_status *st)
{
    slot *s = find(t, op, expiring);
    if (!s || strcmp(s->id, op->id)) {
        *st = anylock_op_error(op, ANYLOCK_NOT_HELD, "not held by this owner");
        return NULL;
    }
    *st = ANYLOCK_OK;
    return s;
}

static anylock_status toy1_release(anylock_op *op)
{
    anylock_status st;
    pthread_mutex_lock(&toy1_table.mu);
    slot *s = owned(&toy1_table, op, 1, &st);
    if (s) {
        s->used = 0;
        pthread_cond_broadcast(&toy1_table.changed);
    }
    pthread_mutex_unlock(&toy1_table.mu);
    return st;
}

/* While set, extends of the name "hang" stall (for at most a minute), past
 * any lease: a store that hangs on one key (t_one_hung_renewal). */
static atomic_int hang_extends;

static anylock_status toy1_extend(anylock_op *op)
{
    anylock_status st;
    if (op->name && !strcmp(op->name, "hang")) {
        double until = test_now() + 60;
        while (atomic_load(&hang_extends) && test_now() < until)
            test_sleep(0.01);
    }
    pthread_mutex_lock(&toy1_table.mu);
    slot *s = owned(&toy1_table, op, 1, &st);
    if (s && !s->expires_at)
        st = ANYLOCK_NOT_EXPIRABLE;
    else if (s)
        s->expires_at = anylock_now_ns() + op->expires_ms * 1000000;
    pthread_mutex_unlock(&toy1_table.mu);
    return st;
}

static void slot_info(const slot *s, anylock_info *info)
{
    info->held = 1;
    snprintf(info->owner, sizeof info->owner, "%s", s->id);
    info->expires_in = s->expires_at ? (double)(s->expires_at - anylock_now_ns()) / 1e9 : ANYLOCK_FOREVER;
}

static anylock_status toy1_inspect(anylock_op *op, anylock_info *info)
{
    pthread_mutex_lock(&toy1_table.mu);
    slot *s = find(&toy1_table, op, 1);
    if (s)
        slot_info(s, info);
    pthread_mutex_unlock(&toy1_table.mu);
    return ANYLOCK_OK;
}

static anylock_status toy1_reset(anylock_op *op)
{
    pthread_mutex_lock(&toy1_table.mu);
    slot *s = find(&toy1_table, op, 1);
    if (s)
        s->used = 0;
    pthread_cond_broadcast(&toy1_table.changed);
    pthread_mutex_unlock(&toy1_table.mu);
    return ANYLOCK_OK;
}

static int under(const slot *s, const anylock_op *op)
{
    return s->used && !strncmp(s->key, op->prefix, op->prefix_len);
}

static anylock_status toy1_reset_all(anylock_op *op, size_t *count)
{
    *count = 0;
    pthread_mutex_lock(&toy1_table.mu);
    int64_t now = anylock_now_ns();
    for (int i = 0; i < SLOTS; i++) {
        slot *s = &toy1_table.s[i];
        if (under(s, op)) {
            *count += !s->expires_at || s->expires_at > now;
            s->used = 0;
        }
    }
    pthread_cond_broadcast(&toy1_table.changed);
    pthread_mutex_unlock(&toy1_table.mu);
    return ANYLOCK_OK;
}

static anylock_status toy1_list(anylock_op *op, anylock_list_fn fn, void *userdata)
{
    /* A version-1 list: copied first, then reported outside the mutex. */
    slot copy[SLOTS];
    int n = 0;
    pthread_mutex_lock(&toy1_table.mu);
    int64_t now = anylock_now_ns();
    for (int i = 0; i < SLOTS; i++) {
        slot *s = &toy1_table.s[i];
        if (under(s, op) && (!s->expires_at || s->expires_at > now))
            copy[n++] = *s;
    }
    pthread_mutex_unlock(&toy1_table.mu);
    for (int i = 0; i < n; i++) {
        anylock_info info;
        memset(&info, 0, sizeof info);
        slot_info(&copy[i], &info);
        info.name = copy[i].key + op->prefix_len;
        if (fn(&info, userdata))
            break;
    }
    return ANYLOCK_OK;
}

/* Exactly the version-1 struct: the fields after `list` stay zero. */
static const anylock_backend toy1 = {
    .version = 1,
    .name = "toy1",
    .expiry_resolution_ms = 1,
    .open = toy1_open,
    .close = toy1_close,
    .acquire = toy1_acquire,
    .release = toy1_release,
    .extend = toy1_extend,
    .inspect = toy1_inspect,
    .reset = toy1_reset,
    .reset_all = toy1_reset_all,
    .list = toy1_list,
};

/* ---- session://: a session-bound version-2 backend ---- */

/* What a handle keeps: the slot its session holds, if any. */
typedef struct session_lock {
    slot *held;
} session_lock;

static atomic_int sessions_ended;

static anylock_status session_open(anylock_op *op, const anylock_url *url)
{
    (void)op;
    (void)url;
    pthread_once(&conds_once, init_conds);
    return ANYLOCK_OK;
}

static anylock_status session_acquire(anylock_op *op)
{
    session_lock *sl = op->lock_state;
    slot *s;
    anylock_status st = table_acquire(&session_table, op, 0, &s);
    if (st == ANYLOCK_OK) {
        s->holder = op->lock;
        sl->held = s;
        pthread_mutex_unlock(&session_table.mu);
    }
    return st;
}

static anylock_status session_release(anylock_op *op)
{
    session_lock *sl = op->lock_state;
    anylock_status st = ANYLOCK_OK;
    pthread_mutex_lock(&session_table.mu);
    slot *s = sl->held;
    if (!s || !s->used || s->holder != op->lock)
        st = anylock_op_error(op, ANYLOCK_NOT_HELD, "this handle's session holds nothing");
    else
        s->used = 0;
    sl->held = NULL;
    pthread_cond_broadcast(&session_table.changed);
    pthread_mutex_unlock(&session_table.mu);
    return st;
}

static anylock_status session_extend(anylock_op *op)
{
    /* The expiry is the holder's (the core keeps it); the store only
     * records it for inspect. */
    session_lock *sl = op->lock_state;
    pthread_mutex_lock(&session_table.mu);
    slot *s = sl->held;
    anylock_status st = s && s->used && s->holder == op->lock ? ANYLOCK_OK : ANYLOCK_NOT_HELD;
    if (st == ANYLOCK_OK)
        s->expires_at = anylock_now_ns() + op->expires_ms * 1000000;
    pthread_mutex_unlock(&session_table.mu);
    return st;
}

/* The store ends the session holding s (a reset: NOT_HELD; a dropped
 * connection: IO): the lock is free at once and its holder is told.
 * session_table.mu held. */
static void end_session(slot *s, anylock_status status, const char *why)
{
    anylock_lock *holder = s->holder;
    s->used = 0;
    pthread_cond_broadcast(&session_table.changed);
    atomic_fetch_add(&sessions_ended, 1);
    /* From inside the store's own lock, as a backend's watcher thread would
     * (the core never calls a slot while it holds what this takes). */
    anylock_lock_lost(holder, status, "session://: the session ended (%s)", why);
}

static anylock_status session_reset(anylock_op *op)
{
    pthread_mutex_lock(&session_table.mu);
    slot *s = find(&session_table, op, 0);
    if (s)
        end_session(s, ANYLOCK_NOT_HELD, "reset");
    pthread_mutex_unlock(&session_table.mu);
    return ANYLOCK_OK;
}

static anylock_status session_reset_all(anylock_op *op, size_t *count)
{
    *count = 0;
    pthread_mutex_lock(&session_table.mu);
    for (int i = 0; i < SLOTS; i++)
        if (under(&session_table.s[i], op)) {
            end_session(&session_table.s[i], ANYLOCK_NOT_HELD, "reset-all");
            (*count)++;
        }
    pthread_mutex_unlock(&session_table.mu);
    return ANYLOCK_OK;
}

static anylock_status session_enumerate(anylock_op *op, anylock_emitter *em)
{
    pthread_mutex_lock(&session_table.mu);
    int64_t now = anylock_now_ns();
    for (int i = 0; i < SLOTS; i++) {
        slot *s = &session_table.s[i];
        if (!under(s, op) || (op->name && strcmp(s->key, op->key)))
            continue;
        anylock_record r = {
            .name = s->key + op->prefix_len,
            .name_len = strlen(s->key) - op->prefix_len,
            .id = s->id,
            .id_len = strlen(s->id),
            .expires_in_ms = !s->expires_at ? -1 : s->expires_at > now ? (s->expires_at - now) / 1000000 : 0,
            .meta = s->meta,
            .meta_len = s->meta_len,
        };
        if (anylock_emit(em, &r))
            break;
    }
    pthread_mutex_unlock(&session_table.mu);
    return ANYLOCK_OK;
}

static void session_forget(anylock_op *op)
{
    session_lock *sl = op->lock_state;
    if (sl->held)
        fprintf(stderr, "session://: forget with a held session: the core did not release it\n");
}

/* A test-only hook: the store drops the session holding key, as a server
 * would on a dropped connection. */
static void session_drop(const char *key)
{
    pthread_mutex_lock(&session_table.mu);
    for (int i = 0; i < SLOTS; i++)
        if (session_table.s[i].used && !strcmp(session_table.s[i].key, key))
            end_session(&session_table.s[i], ANYLOCK_IO, "dropped by the test");
    pthread_mutex_unlock(&session_table.mu);
}

static const anylock_backend session_backend = {
    .version = ANYLOCK_BACKEND_VERSION,
    .name = "session",
    .flags = ANYLOCK_BACKEND_SESSION | ANYLOCK_BACKEND_LIST,
    .expiry_resolution_ms = 1,
    .open = session_open,
    .close = toy1_close,
    .acquire = session_acquire,
    .release = session_release,
    .extend = session_extend,
    .reset = session_reset,
    .reset_all = session_reset_all,
    .lock_size = sizeof(session_lock),
    .enumerate = session_enumerate,
    .forget = session_forget,
};

/* ---- the interface's own promises ---- */

START_TEST(t_register_versions)
{
    anylock_backend b = toy1;
    b.version = 0;
    ck_status(anylock_backend_register("v0", &b), ANYLOCK_BACKEND_INVALID);
    b.version = ANYLOCK_BACKEND_VERSION + 1;
    ck_status(anylock_backend_register("vnext", &b), ANYLOCK_BACKEND_INVALID);
    b = session_backend;
    b.lock_size = (size_t)1 << 30;
    ck_status(anylock_backend_register("huge", &b), ANYLOCK_BACKEND_INVALID);
    b = session_backend;
    b.expiry_resolution_ms = 0;
    ck_status(anylock_backend_register("nores", &b), ANYLOCK_BACKEND_INVALID);
    /* A version-1 backend's features come from its slots. */
    anylock_client *c = NULL;
    ck_status(anylock_open("toy1://", &c), ANYLOCK_OK);
    unsigned f = anylock_client_features(c);
    ck_assert_uint_eq(f & (ANYLOCK_FEATURE_SESSION | ANYLOCK_FEATURE_TOKEN | ANYLOCK_FEATURE_SHARED), 0);
    ck_assert_uint_ne(f & ANYLOCK_FEATURE_LIST, 0);
    ck_assert_uint_ne(f & ANYLOCK_FEATURE_EXTEND, 0);
    anylock_close(c);
}
END_TEST

typedef struct lost_seen {
    atomic_int calls;
    atomic_int why;
    int held_in_callback;
} lost_seen;

static void record_lost(anylock_lock *lock, anylock_status why, void *ud)
{
    lost_seen *s = ud;
    s->held_in_callback = anylock_lock_held(lock);
    atomic_store(&s->why, (int)why);
    atomic_fetch_add(&s->calls, 1);
}

static void wait_calls(lost_seen *s, double limit)
{
    double until = test_now() + limit;
    while (!atomic_load(&s->calls) && test_now() < until)
        test_sleep(0.005);
}

/* A loss the store reports reaches the callback, frees the lock at once and
 * leaves the handle consistent. */
START_TEST(t_session_loss_reported)
{
    anylock_client *c = NULL;
    ck_status(anylock_open("session://?prefix=loss:", &c), ANYLOCK_OK);
    anylock_lock *a = NULL, *b = NULL;
    ck_status(anylock_lock_new(c, "job", &a), ANYLOCK_OK);
    ck_status(anylock_lock_new(c, "job", &b), ANYLOCK_OK);
    lost_seen seen = {0};
    ck_status(anylock_lock_set_lost_callback(a, record_lost, &seen), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_status(anylock_try_acquire(b), ANYLOCK_BUSY);
    session_drop("loss:job");
    wait_calls(&seen, 10);
    ck_assert_int_eq(atomic_load(&seen.calls), 1);
    ck_assert_int_eq(atomic_load(&seen.why), ANYLOCK_IO);
    ck_assert_int_eq(seen.held_in_callback, 0);
    ck_assert_int_eq(anylock_lock_held(a), 0);
    ck_status(anylock_try_acquire(b), ANYLOCK_OK); /* free at once */
    ck_status(anylock_release(a), ANYLOCK_NOT_HELD);
    ck_assert_msg(strstr(anylock_lock_errmsg(a), "session ended"), "message: %s", anylock_lock_errmsg(a));
    ck_status(anylock_extend(a, 5), ANYLOCK_NOT_HELD);
    /* The handle can take it again once it is free. */
    ck_status(anylock_release(b), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_assert_int_eq(anylock_lock_held(a), 1);
    anylock_lock_free(a);
    anylock_lock_free(b);
    ck_status(anylock_close(c), ANYLOCK_OK);
}
END_TEST

/* On a session store a lock needs no expiry, and renewal without one is
 * allowed; one the URL asks for is honoured by the holder's process. */
START_TEST(t_session_expiry)
{
    anylock_client *c = NULL;
    ck_status(anylock_open("session://?prefix=exp:", &c), ANYLOCK_OK);
    anylock_lock *a = NULL, *b = NULL;
    ck_status(anylock_lock_new(c, "job", &a), ANYLOCK_OK);
    ck_status(anylock_lock_new(c, "job", &b), ANYLOCK_OK);
    ck_status(anylock_lock_set_auto_renewal(a, 1), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK); /* no expiry: no RENEWAL_NEEDS_EXPIRY */
    anylock_info info;
    ck_status(anylock_inspect(c, "job", &info), ANYLOCK_OK);
    ck_assert(isinf(info.expires_in));
    ck_status(anylock_extend(a, 5), ANYLOCK_NOT_EXPIRABLE);
    ck_status(anylock_release(a), ANYLOCK_OK);
    anylock_lock_free(a);
    anylock_lock_free(b);
    anylock_close(c);

    /* An expiry from the URL: the core releases the lock at its end. */
    ck_status(anylock_open("session://?prefix=exp2:&expires=0.3", &c), ANYLOCK_OK);
    ck_status(anylock_lock_new(c, "job", &a), ANYLOCK_OK);
    ck_status(anylock_lock_new(c, "job", &b), ANYLOCK_OK);
    lost_seen seen = {0};
    ck_status(anylock_lock_set_lost_callback(a, record_lost, &seen), ANYLOCK_OK);
    double t0 = test_now();
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_status(anylock_lock_set_timeout(b, 5), ANYLOCK_OK);
    ck_status(anylock_lock_set_expires(b, 30), ANYLOCK_OK);
    ck_status(anylock_acquire(b), ANYLOCK_OK);
    double waited = test_now() - t0;
    ck_assert_msg(waited >= 0.25 && waited < 3, "the holder-side expiry of 0.3 s freed it after %.3f s", waited);
    wait_calls(&seen, 5);
    ck_assert_int_eq(atomic_load(&seen.calls), 1);
    ck_assert_int_eq(atomic_load(&seen.why), ANYLOCK_NOT_HELD);
    ck_status(anylock_release(a), ANYLOCK_NOT_HELD);
    anylock_lock_free(a);
    anylock_lock_free(b);
    ck_status(anylock_close(c), ANYLOCK_OK);
}
END_TEST

/* One lock whose renewal hangs does not delay another lock's renewal on the
 * same client: the hung one is reported lost at its lease's end, the other
 * stays held in the store for four of its leases meanwhile. */
START_TEST(t_one_hung_renewal)
{
    anylock_client *c = NULL;
    ck_status(anylock_open("toy1://?prefix=hung:", &c), ANYLOCK_OK);
    anylock_lock *hung = NULL, *steady = NULL;
    ck_status(anylock_lock_new(c, "hang", &hung), ANYLOCK_OK);
    ck_status(anylock_lock_new(c, "steady", &steady), ANYLOCK_OK);
    /* Stretched for instrumented builds, as the conformance suite's. */
    const char *scale = getenv("ANYLOCK_TEST_TIME_SCALE");
    double k = scale && atof(scale) > 1 ? atof(scale) : 1, lease = 0.6 * k;
    lost_seen hung_seen = {0}, steady_seen = {0};
    anylock_lock *both[] = {hung, steady};
    lost_seen *seen[] = {&hung_seen, &steady_seen};
    for (int i = 0; i < 2; i++) {
        ck_status(anylock_lock_set_expires(both[i], lease), ANYLOCK_OK);
        ck_status(anylock_lock_set_auto_renewal(both[i], 1), ANYLOCK_OK);
        ck_status(anylock_lock_set_lost_callback(both[i], record_lost, seen[i]), ANYLOCK_OK);
    }
    atomic_store(&hang_extends, 1);
    double t0 = test_now();
    ck_status(anylock_acquire(hung), ANYLOCK_OK);
    ck_status(anylock_acquire(steady), ANYLOCK_OK);
    wait_calls(&hung_seen, 5 * lease);
    ck_assert_int_eq(atomic_load(&hung_seen.calls), 1);
    ck_assert_msg(test_now() - t0 < lease * 1.5, "the hung lock was reported lost %.3f s in, past its %.1f s lease",
                  test_now() - t0, lease);
    /* Four leases of the steady lock while the other renewal still hangs. */
    while (test_now() - t0 < 4 * lease) {
        anylock_info info;
        ck_status(anylock_inspect(c, "steady", &info), ANYLOCK_OK);
        ck_assert_msg(info.held, "the steady lock expired in the store %.3f s in", test_now() - t0);
        test_sleep(0.05);
    }
    ck_assert_int_eq(atomic_load(&steady_seen.calls), 0);
    ck_assert_int_eq(anylock_lock_held(steady), 1);
    atomic_store(&hang_extends, 0);
    anylock_lock_free(hung); /* waits for the hung renewal to come back */
    anylock_lock_free(steady);
    ck_status(anylock_close(c), ANYLOCK_OK);
}
END_TEST

static Suite *interface_suite(void)
{
    Suite *s = suite_create("backend interface");
    TCase *tc = tcase_create("interface");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, t_register_versions);
    tcase_add_test(tc, t_session_loss_reported);
    tcase_add_test(tc, t_session_expiry);
    tcase_add_test(tc, t_one_hung_renewal);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    if (anylock_backend_register("toy1", &toy1) != ANYLOCK_OK ||
        anylock_backend_register("session", &session_backend) != ANYLOCK_OK) {
        fprintf(stderr, "cannot register the test's backends\n");
        return 1;
    }
    /* Both tables are in this process: threads only. */
    static const conformance_config v1 = {
        .label = "toy1 (version 1)",
        .url = "toy1://",
        .excludes = 1,
        .can_list = 1,
        .can_reset_all = 1,
        .no_metadata = 1, /* version 1 knows nothing of it */
        .expiry = 0.3,
        .slack = 0.1,
    };
    int failed = conformance_run(conformance_suite(&v1), NULL);
    static const conformance_config session = {
        .label = "session (version 2, session-bound)",
        .url = "session://",
        .excludes = 1,
        .can_list = 1,
        .can_reset_all = 1,
        .expiry = 0.3,
        .slack = 0.1,
    };
    failed |= conformance_run(conformance_suite(&session), interface_suite());
    return failed;
}
