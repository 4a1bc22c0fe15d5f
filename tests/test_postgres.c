/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * postgres:// against a real PostgreSQL cluster made by initdb in a
 * temporary directory and run on a free loopback port (as the postgres user
 * when the tests run as root): the whole conformance suite (16 contending
 * processes), then what is the postgres backend's own: the URL forms and
 * libpq's parameters, what the table and pg_locks show, a waiter queued in
 * the server, a SIGKILLed holder freeing the lock at once, the server
 * restarted mid-wait and mid-hold, pg_terminate_backend of a holder reported
 * as a loss, a name collision, shared locks with writer preference, holder
 * turns, a stalled server, and passwords kept out of messages.
 */
#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "anylock.h"
#include "anylock_backend.h"
#include "conformance.h"
#include "harness.h"

#include "check_status.h"

static test_server srv;

#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))

static anylock_client *open_url(const char *fmt, ...) PRINTF_LIKE(1, 2);
static anylock_client *open_url(const char *fmt, ...)
{
    char url[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(url, sizeof url, fmt, ap);
    va_end(ap);
    anylock_client *c = NULL;
    anylock_status st = anylock_open(url, &c);
    ck_assert_msg(st == ANYLOCK_OK, "open %s: %s (%s)", url, anylock_status_name(st), anylock_errmsg(c));
    return c;
}

/* A client with a prefix of its own (tag and pid), so tests never meet. */
static anylock_client *client(const char *tag)
{
    return open_url("%s?prefix=pt-%s-%ld:", srv.url, tag, (long)getpid());
}

static anylock_lock *new_lock(anylock_client *c, const char *name)
{
    anylock_lock *l = NULL;
    ck_status(anylock_lock_new(c, name, &l), ANYLOCK_OK);
    return l;
}

/* ---- a raw libpq connection ---------------------------------------------- */

static PGconn *raw(void)
{
    PGconn *pg = PQconnectdb(srv.url);
    ck_assert_msg(PQstatus(pg) == CONNECTION_OK, "raw connect: %s", PQerrorMessage(pg));
    return pg;
}

/* The first value of the first row of sql ("" if none), into buf. */
static void raw_value(PGconn *pg, char *buf, size_t size, const char *fmt, ...) PRINTF_LIKE(4, 5);
static void raw_value(PGconn *pg, char *buf, size_t size, const char *fmt, ...)
{
    char sql[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    PGresult *r = PQexec(pg, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s", sql, PQerrorMessage(pg));
    snprintf(buf, size, "%s", PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
}

static long raw_long(PGconn *pg, const char *sql)
{
    char v[64];
    raw_value(pg, v, sizeof v, "%s", sql);
    return strtol(v, NULL, 10);
}

/* The documented key of a name: the first 8 bytes of the SHA-256 of prefix
 * + name, big-endian, as a signed 64-bit number; its top `bits` bits when a
 * test narrows it. */
static int64_t key_of(const char *key, int bits)
{
    unsigned char h[32];
    anylock_sha256(key, strlen(key), h);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | h[i];
    if (bits < 64)
        v >>= 64 - bits;
    return (int64_t)v;
}

/* Waits (up to 10 s) until pg_locks shows `n` sessions waiting for an
 * advisory lock: the handshake that says a waiter is queued in the server. */
static void await_waiters(PGconn *pg, long n)
{
    double until = test_now() + 10;
    long got = -1;
    while (test_now() < until) {
        got = raw_long(pg, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted");
        if (got == n)
            return;
        test_sleep(0.01);
    }
    ck_abort_msg("%ld sessions wait for an advisory lock, not %ld", got, n);
}

/* ---- URLs --------------------------------------------------------------- */

START_TEST(t_url_forms)
{
    /* Both schemes, libpq's parameters passed through. */
    anylock_client *c = open_url("postgresql://postgres@127.0.0.1:%d/postgres?sslmode=disable&"
                                 "application_name=pt-appname&connect_timeout=3&keepalives_idle=7",
                                 srv.port);
    ck_assert_str_eq(anylock_client_scheme(c), "postgresql");
    unsigned f = anylock_client_features(c);
    ck_assert(f & ANYLOCK_FEATURE_SESSION);
    ck_assert(f & ANYLOCK_FEATURE_TOKEN);
    ck_assert(f & ANYLOCK_FEATURE_SHARED);
    ck_assert(f & ANYLOCK_FEATURE_FAIR);
    ck_assert(f & ANYLOCK_FEATURE_LIST);
    ck_assert(!(f & ANYLOCK_FEATURE_SEMAPHORE));
    anylock_lock *l = new_lock(c, "appname");
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    /* The holding session carries the application_name from the URL. */
    PGconn *pg = raw();
    char v[128];
    raw_value(pg, v, sizeof v,
              "SELECT a.application_name FROM pg_stat_activity a JOIN anylock_locks t ON t.pid = a.pid "
              "WHERE t.owner = '%s'",
              anylock_lock_id(l));
    ck_assert_str_eq(v, "pt-appname");
    PQfinish(pg);
    anylock_lock_free(l);
    anylock_close(c);

    /* A host list: the first host refuses, the second is the server. */
    int dead = test_free_port();
    c = open_url("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/postgres", dead, srv.port);
    anylock_close(c);
    /* The database in the query, as libpq allows. */
    c = open_url("postgres://127.0.0.1:%d?user=postgres&dbname=postgres", srv.port);
    anylock_close(c);
    /* A unix socket directory as the host, in the query. */
    c = open_url("postgresql:///postgres?host=%s&port=%d&user=postgres", srv.dir, srv.port);
    l = new_lock(c, "unix");
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    anylock_lock_free(l);
    anylock_close(c);
}
END_TEST

START_TEST(t_bad_urls)
{
    static const struct {
        const char *fmt;
        anylock_status want;
    } cases[] = {
        {"/postgres?sslmode=bogus", ANYLOCK_URL_BAD_PARAM},
        {"/postgres?nosuchparam=1", ANYLOCK_URL_UNKNOWN_PARAM},
        {"/postgres?replication=1", ANYLOCK_URL_UNKNOWN_PARAM},
        {"/postgres?key_bits=0", ANYLOCK_URL_BAD_PARAM},
        {"/postgres?key_bits=65", ANYLOCK_URL_BAD_PARAM},
        {"/postgres?table=Bad-Name", ANYLOCK_URL_BAD_PARAM},
        {"/postgres?schema=x;drop", ANYLOCK_URL_BAD_PARAM},
        {"/postgres?command_timeout=0", ANYLOCK_URL_BAD_PARAM},
        {"/postgres?connect_timeout=abc", ANYLOCK_URL_BAD_PARAM},
        {"/a/b", ANYLOCK_URL_BAD_PATH},
        {"/postgres?schema=nosuchschema", ANYLOCK_STORE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char url[512];
        snprintf(url, sizeof url, "postgres://postgres@127.0.0.1:%d%s", srv.port, cases[i].fmt);
        anylock_client *c = NULL;
        anylock_status st = anylock_open(url, &c);
        ck_assert_msg(st == cases[i].want, "%s: got %s (%s), want %s", url, anylock_status_name(st),
                      anylock_errmsg(c), anylock_status_name(cases[i].want));
        ck_assert_msg(strstr(anylock_errmsg(c), "postgres") || st == ANYLOCK_URL_UNKNOWN_PARAM ||
                          st == ANYLOCK_URL_BAD_PATH || st == ANYLOCK_URL_BAD_PARAM,
                      "%s: message does not name the store: %s", url, anylock_errmsg(c));
        anylock_close(c);
    }
    anylock_client *c = NULL;
    /* A role the server does not know: the credentials are refused. */
    char url[256];
    snprintf(url, sizeof url, "postgres://nosuchrole@127.0.0.1:%d/postgres", srv.port);
    ck_status(anylock_open(url, &c), ANYLOCK_AUTH);
    ck_assert_ptr_nonnull(strstr(anylock_errmsg(c), "nosuchrole"));
    anylock_close(c);
    ck_status(anylock_open(NULL, &c), ANYLOCK_INVALID);
    anylock_close(c);
}
END_TEST

START_TEST(t_dead_server_and_passwords)
{
    /* Nothing listens: CONNECT, at once, and the password is never shown,
     * whether in the user information or in libpq's password parameter. */
    int dead = test_free_port();
    char url[512];
    snprintf(url, sizeof url, "postgres://postgres:Sekr3tPw@127.0.0.1:%d/postgres?connect_timeout=2", dead);
    anylock_client *c = NULL;
    double t0 = test_now();
    ck_status(anylock_open(url, &c), ANYLOCK_CONNECT);
    ck_assert_msg(test_now() - t0 < 3, "a refused connection took %.2f s", test_now() - t0);
    ck_assert_ptr_null(strstr(anylock_errmsg(c), "Sekr3tPw"));
    ck_assert_ptr_null(strstr(anylock_client_url(c), "Sekr3tPw"));
    ck_assert_ptr_nonnull(strstr(anylock_errmsg(c), "postgres"));
    anylock_close(c);
    snprintf(url, sizeof url, "postgres://127.0.0.1:%d/postgres?user=postgres&password=Sekr3tPw&sslpassword=Sekr3tPw",
             dead);
    ck_status(anylock_open(url, &c), ANYLOCK_CONNECT);
    ck_assert_ptr_null(strstr(anylock_errmsg(c), "Sekr3tPw"));
    ck_assert_ptr_null(strstr(anylock_client_url(c), "Sekr3tPw"));
    anylock_close(c);
    /* A wrong password against the real server (trust authentication
     * accepts it) still opens, and a lock's message never shows it. */
    c = open_url("postgres://postgres:Sekr3tPw@127.0.0.1:%d/postgres?prefix=pt-pw-%ld:", srv.port, (long)getpid());
    ck_assert_ptr_null(strstr(anylock_client_url(c), "Sekr3tPw"));
    anylock_lock *a = new_lock(c, "x"), *b = new_lock(c, "x");
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_status(anylock_try_acquire(b), ANYLOCK_BUSY);
    ck_assert_ptr_null(strstr(anylock_lock_errmsg(b), "Sekr3tPw"));
    anylock_lock_free(a);
    anylock_lock_free(b);
    anylock_close(c);
}
END_TEST

/* ---- what the server shows ------------------------------------------------ */

START_TEST(t_table_and_pg_locks)
{
    anylock_client *c = client("table");
    anylock_lock *l = new_lock(c, "job");
    ck_status(anylock_lock_set_expires(l, 30), ANYLOCK_OK);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    uint64_t token = 0;
    ck_status(anylock_lock_token(l, &token), ANYLOCK_OK);
    char key[128];
    snprintf(key, sizeof key, "pt-table-%ld:job", (long)getpid());
    int64_t k = key_of(key, 64);
    PGconn *pg = raw();
    /* One row: the documented key, the name, the owner, the token, an
     * expiry, and a pid that holds exactly that advisory key. */
    char v[256];
    raw_value(pg, v, sizeof v,
              "SELECT t.owner || ' ' || t.token || ' ' || (t.expires_at > now() + interval '25 s') FROM anylock_locks t "
              "JOIN pg_locks l ON l.locktype = 'advisory' AND l.pid = t.pid AND l.granted AND l.objsubid = 1 AND "
              "l.classid = ((%" PRId64 " >> 32) & 4294967295)::oid AND l.objid = (%" PRId64 " & 4294967295)::oid "
              "WHERE t.key = %" PRId64 " AND t.name = convert_to('%s', 'UTF8')",
              k, k, k, key);
    char want[256];
    snprintf(want, sizeof want, "%s %" PRIu64 " true", anylock_lock_id(l), token);
    ck_assert_str_eq(v, want);
    ck_status(anylock_release(l), ANYLOCK_OK);
    ck_assert_int_eq(raw_long(pg, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1"), 0);
    raw_value(pg, v, sizeof v, "SELECT count(*) FROM anylock_locks WHERE key = %" PRId64, k);
    ck_assert_str_eq(v, "0");
    PQfinish(pg);
    anylock_lock_free(l);
    anylock_close(c);
}
END_TEST

START_TEST(t_stale_rows_not_held)
{
    /* A row left by a session that died is not a holder. */
    anylock_client *c = client("stale");
    PGconn *pg = raw();
    char key[128], v[64];
    snprintf(key, sizeof key, "pt-stale-%ld:ghost", (long)getpid());
    int64_t k = key_of(key, 64);
    PGresult *r = PQexec(pg, "SELECT 1");
    PQclear(r);
    char sql[512];
    snprintf(sql, sizeof sql,
             "INSERT INTO anylock_locks (slot, pid, sess, key, name, owner, mode, token) VALUES (%" PRId64 ", 999999, "
             "12345, %" PRId64 ", convert_to('%s', 'UTF8'), 'ghost-owner', 0, 1)",
             k, k, key);
    r = PQexec(pg, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s", PQerrorMessage(pg));
    PQclear(r);
    anylock_lock *l = new_lock(c, "ghost");
    int locked = 1;
    ck_status(anylock_locked(l, &locked), ANYLOCK_OK);
    ck_assert_int_eq(locked, 0);
    ck_status(anylock_try_acquire(l), ANYLOCK_OK);
    /* The acquire tidied the dead session's row away. */
    raw_value(pg, v, sizeof v, "SELECT count(*) FROM anylock_locks WHERE key = %" PRId64 " AND pid = 999999", k);
    ck_assert_str_eq(v, "0");
    PQfinish(pg);
    anylock_lock_free(l);
    anylock_close(c);
}
END_TEST

/* ---- waits ---------------------------------------------------------------- */

typedef struct waiter {
    anylock_client *client;
    const char *name;
    double timeout;
    anylock_mode mode;
    anylock_status status;
    double done_at;
    anylock_lock *keep; /* if set, the waiter keeps the lock and leaves it here */
    int keep_it;
} waiter;

static void *wait_thread(void *arg)
{
    waiter *w = arg;
    anylock_lock *l = NULL;
    if (anylock_lock_new(w->client, w->name, &l) != ANYLOCK_OK) {
        w->status = ANYLOCK_INTERNAL;
        return NULL;
    }
    anylock_lock_set_timeout(l, w->timeout);
    if (w->mode == ANYLOCK_SHARED)
        anylock_lock_set_mode(l, ANYLOCK_SHARED);
    w->status = anylock_acquire(l);
    w->done_at = test_now();
    if (w->keep_it)
        w->keep = l;
    else
        anylock_lock_free(l);
    return NULL;
}

START_TEST(t_waiter_queued_in_server)
{
    /* A waiter waits in the server's lock queue: pg_locks shows it, and it
     * gets the lock when the holder lets go. */
    anylock_client *c = client("queue");
    anylock_lock *a = new_lock(c, "job");
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    waiter w = {c, "job", 20, ANYLOCK_EXCLUSIVE, ANYLOCK_INTERNAL, 0, NULL, 0};
    pthread_t t;
    pthread_create(&t, NULL, wait_thread, &w);
    PGconn *pg = raw();
    await_waiters(pg, 1);
    /* The waiter's row is there, not counted as a holder. */
    anylock_info info;
    ck_status(anylock_inspect(c, "job", &info), ANYLOCK_OK);
    ck_assert_str_eq(info.owner, anylock_lock_id(a));
    double released = test_now();
    ck_status(anylock_release(a), ANYLOCK_OK);
    pthread_join(t, NULL);
    ck_status(w.status, ANYLOCK_OK);
    ck_assert_msg(w.done_at - released < 2, "the waiter got it %.3f s after the release", w.done_at - released);
    PQfinish(pg);
    anylock_lock_free(a);
    anylock_close(c);
}
END_TEST

static int holder_child(const char *url, const char *name, int fd)
{
    anylock_client *c = NULL;
    if (anylock_open(url, &c) != ANYLOCK_OK)
        return 1;
    anylock_lock *l = NULL;
    if (anylock_lock_new(c, name, &l) != ANYLOCK_OK || anylock_acquire(l) != ANYLOCK_OK)
        return 2;
    char ok = 'y';
    if (write(fd, &ok, 1) != 1)
        return 3;
    for (;;)
        pause();
}

START_TEST(t_sigkilled_holder)
{
    /* A holder killed with SIGKILL frees its lock at once: the session ends
     * with the process, no expiry is involved (the lock has none). */
    char url[600];
    snprintf(url, sizeof url, "%s?prefix=pt-kill-%ld:", srv.url, (long)getpid());
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    fflush(NULL);
    pid_t child = fork();
    if (child == 0) {
        close(p[0]);
        _exit(holder_child(url, "crash", p[1]));
    }
    close(p[1]);
    char ok = 0;
    ck_assert_int_eq(read(p[0], &ok, 1), 1);
    close(p[0]);
    anylock_client *c = open_url("%s", url);
    anylock_lock *l = new_lock(c, "crash");
    ck_status(anylock_try_acquire(l), ANYLOCK_BUSY);
    waiter w = {c, "crash", 30, ANYLOCK_EXCLUSIVE, ANYLOCK_INTERNAL, 0, NULL, 0};
    pthread_t t;
    pthread_create(&t, NULL, wait_thread, &w);
    PGconn *pg = raw();
    await_waiters(pg, 1);
    double killed = test_now();
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    pthread_join(t, NULL);
    ck_status(w.status, ANYLOCK_OK);
    double after = w.done_at - killed;
    printf("postgres: a waiter got the lock %.1f ms after its holder was SIGKILLed\n", after * 1000);
    ck_assert_msg(after < 1.0, "the waiter got the lock %.3f s after the holder died", after);
    PQfinish(pg);
    anylock_lock_free(l);
    anylock_close(c);
}
END_TEST

START_TEST(t_terminated_holder_reported_lost)
{
    /* pg_terminate_backend of the holding session, from outside anylock:
     * the watcher sees the session end and the callback says so. */
    anylock_client *c = client("term");
    anylock_lock *a = new_lock(c, "job"), *b = new_lock(c, "job");
    test_lost lost = {0};
    ck_status(anylock_lock_set_lost_callback(a, test_lost_record, &lost), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    PGconn *pg = raw();
    char v[64];
    raw_value(pg, v, sizeof v, "SELECT pg_terminate_backend(pid, 5000) FROM anylock_locks WHERE owner = '%s'",
              anylock_lock_id(a));
    ck_assert_str_eq(v, "t");
    test_lost_wait(&lost, 5);
    ck_assert_int_eq(atomic_load(&lost.calls), 1);
    ck_assert_int_eq(atomic_load(&lost.why), ANYLOCK_NOT_HELD);
    ck_assert_int_eq(anylock_lock_held(a), 0);
    ck_status(anylock_try_acquire(b), ANYLOCK_OK);
    ck_status(anylock_release(a), ANYLOCK_NOT_HELD);
    ck_assert_ptr_nonnull(strstr(anylock_lock_errmsg(a), "lost"));
    /* The handle works again. */
    ck_status(anylock_release(b), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_status(anylock_release(a), ANYLOCK_OK);
    PQfinish(pg);
    anylock_lock_free(a);
    anylock_lock_free(b);
    anylock_close(c);
}
END_TEST

START_TEST(t_reset_terminates_holder)
{
    /* reset ends the holder's session and returns once it is gone. */
    anylock_client *c = client("resetterm"), *c2 = client("resetterm");
    anylock_lock *a = new_lock(c, "job"), *b = new_lock(c2, "job");
    test_lost lost = {0};
    ck_status(anylock_lock_set_lost_callback(a, test_lost_record, &lost), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_status(anylock_reset(c2, "job"), ANYLOCK_OK);
    ck_status(anylock_try_acquire(b), ANYLOCK_OK);
    test_lost_wait(&lost, 5);
    ck_assert_int_eq(atomic_load(&lost.calls), 1);
    ck_assert_int_eq(atomic_load(&lost.why), ANYLOCK_NOT_HELD);
    anylock_lock_free(a);
    anylock_lock_free(b);
    anylock_close(c);
    anylock_close(c2);
}
END_TEST

START_TEST(t_server_restart)
{
    /* The server goes down (immediate shutdown: every session ends at
     * once) while one handle holds and another waits: the waiter gets a
     * clear status, the holder hears of the loss, and the same client
     * works once the server is back. */
    anylock_client *c = client("restart");
    anylock_lock *a = new_lock(c, "job");
    test_lost lost = {0};
    ck_status(anylock_lock_set_lost_callback(a, test_lost_record, &lost), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    waiter w = {c, "job", 30, ANYLOCK_EXCLUSIVE, ANYLOCK_INTERNAL, 0, NULL, 0};
    pthread_t t;
    pthread_create(&t, NULL, wait_thread, &w);
    PGconn *pg = raw();
    await_waiters(pg, 1);
    PQfinish(pg);
    double down = test_now();
    test_server_kill(&srv);
    pthread_join(t, NULL);
    ck_status(w.status, ANYLOCK_IO);
    ck_assert_msg(w.done_at - down < 5, "the waiter took %.2f s to see the server go", w.done_at - down);
    test_lost_wait(&lost, 10);
    ck_assert_int_eq(atomic_load(&lost.calls), 1);
    ck_assert_int_eq(anylock_lock_held(a), 0);
    /* While it is down: a clear status, quickly. */
    anylock_lock *b = new_lock(c, "other");
    ck_status(anylock_try_acquire(b), ANYLOCK_CONNECT);
    ck_assert_int_eq(test_server_restart(&srv), 0);
    ck_status(anylock_release(a), ANYLOCK_NOT_HELD);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_status(anylock_try_acquire(b), ANYLOCK_OK);
    anylock_lock_free(a);
    anylock_lock_free(b);
    anylock_close(c);
}
END_TEST

/* The pids of the postmaster's children (the backends and helpers). */
static int children_of(pid_t parent, pid_t *out, int max)
{
    int n = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d)) && n < max) {
        long pid = strtol(e->d_name, NULL, 10);
        if (pid <= 0)
            continue;
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = '\0';
        char *rp = strrchr(buf, ')');
        long ppid = 0;
        if (rp && sscanf(rp + 1, " %*c %ld", &ppid) == 1 && ppid == parent)
            out[n++] = (pid_t)pid;
    }
    if (d)
        closedir(d);
    return n;
}

START_TEST(t_stalled_server)
{
    /* Every PostgreSQL process stopped (SIGSTOP): a waiting acquire returns
     * by its deadline, a try-once within the command timeout; then the
     * same client works again. */
    anylock_client *c = open_url("%s?prefix=pt-stall-%ld:&command_timeout=0.5&connect_timeout=0.5", srv.url,
                                 (long)getpid());
    anylock_lock *a = new_lock(c, "job"), *b = new_lock(c, "job");
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_status(anylock_lock_set_timeout(b, 0.8), ANYLOCK_OK);
    ck_status(anylock_acquire(b), ANYLOCK_TIMEOUT);
    /* Two idle connections in the pool, for b's wait and d's try. */
    anylock_lock *d = new_lock(c, "other"), *e = new_lock(c, "other2");
    ck_status(anylock_acquire(d), ANYLOCK_OK);
    ck_status(anylock_acquire(e), ANYLOCK_OK);
    ck_status(anylock_release(d), ANYLOCK_OK);
    ck_status(anylock_release(e), ANYLOCK_OK);
    pid_t kids[64];
    int n = children_of(srv.pid, kids, 64);
    kill(srv.pid, SIGSTOP);
    for (int i = 0; i < n; i++)
        kill(kids[i], SIGSTOP);
    double t0 = test_now();
    anylock_status st = anylock_acquire(b);
    double took = test_now() - t0;
    double t1 = test_now();
    anylock_status st2 = anylock_try_acquire(d);
    double took2 = test_now() - t1;
    kill(srv.pid, SIGCONT);
    for (int i = 0; i < n; i++)
        kill(kids[i], SIGCONT);
    /* The requests were sent and their answers did not come: the sessions
     * asked may yet take the lock, until the next acquire ends them. */
    ck_status(st, ANYLOCK_OUTCOME_UNKNOWN);
    ck_assert_msg(took < 0.8 + 0.5, "a 0.8 s wait on a stalled server took %.3f s", took);
    ck_status(st2, ANYLOCK_OUTCOME_UNKNOWN);
    ck_assert_msg(took2 < 1.5, "a try-once on a stalled server took %.3f s", took2);
    ck_status(anylock_release(a), ANYLOCK_OK);
    ck_status(anylock_acquire(b), ANYLOCK_OK);
    ck_status(anylock_try_acquire(d), ANYLOCK_OK);
    anylock_lock_free(a);
    anylock_lock_free(b);
    anylock_lock_free(d);
    anylock_lock_free(e);
    anylock_close(c);
}
END_TEST

/* ---- collisions ------------------------------------------------------------- */

START_TEST(t_name_collision)
{
    /* With the key narrowed to 8 bits (a test-only parameter), two names
     * that share a key are easy to find.  While one is in use the other
     * answers STORE_UNSAFE, naming both, never a silent shared lock. */
    char prefix[64];
    snprintf(prefix, sizeof prefix, "pt-coll-%ld:", (long)getpid());
    anylock_client *c = open_url("%s?prefix=%s&key_bits=8", srv.url, prefix);
    char first[32] = "n0", second[32] = "";
    char key[128];
    snprintf(key, sizeof key, "%s%s", prefix, first);
    int64_t k = key_of(key, 8);
    for (int i = 1; i < 10000 && !second[0]; i++) {
        char cand[32];
        snprintf(cand, sizeof cand, "n%d", i);
        snprintf(key, sizeof key, "%s%s", prefix, cand);
        if (key_of(key, 8) == k)
            snprintf(second, sizeof second, "%s", cand);
    }
    ck_assert_str_ne(second, "");
    anylock_lock *a = new_lock(c, first), *b = new_lock(c, second);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_status(anylock_try_acquire(b), ANYLOCK_STORE_UNSAFE);
    ck_assert_ptr_nonnull(strstr(anylock_lock_errmsg(b), first));
    ck_assert_ptr_nonnull(strstr(anylock_lock_errmsg(b), second));
    /* A waiting acquire does not wait either. */
    ck_status(anylock_lock_set_timeout(b, 5), ANYLOCK_OK);
    double t0 = test_now();
    ck_status(anylock_acquire(b), ANYLOCK_STORE_UNSAFE);
    ck_assert_msg(test_now() - t0 < 2, "a colliding acquire waited %.2f s", test_now() - t0);
    /* A colliding name only waiting counts too: a queued on first. */
    anylock_lock *a2 = new_lock(c, first);
    waiter w = {c, first, 20, ANYLOCK_EXCLUSIVE, ANYLOCK_INTERNAL, 0, NULL, 0};
    pthread_t t;
    pthread_create(&t, NULL, wait_thread, &w);
    PGconn *pg = raw();
    await_waiters(pg, 1);
    ck_status(anylock_release(a), ANYLOCK_OK);
    pthread_join(t, NULL);
    ck_status(w.status, ANYLOCK_OK);
    /* Once first is neither held nor waited for, second may have the key. */
    ck_status(anylock_lock_set_timeout(b, 0), ANYLOCK_OK);
    ck_status(anylock_acquire(b), ANYLOCK_OK);
    ck_status(anylock_try_acquire(a2), ANYLOCK_STORE_UNSAFE);
    PQfinish(pg);
    anylock_lock_free(a);
    anylock_lock_free(a2);
    anylock_lock_free(b);
    anylock_close(c);
}
END_TEST

/* ---- shared mode -------------------------------------------------------------- */

START_TEST(t_shared_writer_preference)
{
    anylock_client *c = client("shared");
    anylock_lock *r1 = new_lock(c, "rw"), *r2 = new_lock(c, "rw"), *r3 = new_lock(c, "rw"), *x = new_lock(c, "rw");
    ck_status(anylock_lock_set_mode(r1, ANYLOCK_SHARED), ANYLOCK_OK);
    ck_status(anylock_lock_set_mode(r2, ANYLOCK_SHARED), ANYLOCK_OK);
    ck_status(anylock_lock_set_mode(r3, ANYLOCK_SHARED), ANYLOCK_OK);
    ck_status(anylock_acquire(r1), ANYLOCK_OK);
    ck_status(anylock_acquire(r2), ANYLOCK_OK);
    ck_status(anylock_try_acquire(x), ANYLOCK_BUSY);
    /* Both readers are shown. */
    int seen = 0;
    anylock_info info;
    ck_status(anylock_inspect(c, "rw", &info), ANYLOCK_OK);
    ck_assert_int_eq(info.held, 1);
    (void)seen;
    /* A writer queues; a new reader then waits behind it. */
    waiter w = {c, "rw", 20, ANYLOCK_EXCLUSIVE, ANYLOCK_INTERNAL, 0, NULL, 1};
    pthread_t t;
    pthread_create(&t, NULL, wait_thread, &w);
    PGconn *pg = raw();
    await_waiters(pg, 1);
    ck_status(anylock_try_acquire(r3), ANYLOCK_BUSY);
    ck_status(anylock_lock_set_timeout(r3, 0.3), ANYLOCK_OK);
    ck_status(anylock_acquire(r3), ANYLOCK_TIMEOUT);
    ck_status(anylock_release(r1), ANYLOCK_OK);
    ck_status(anylock_release(r2), ANYLOCK_OK);
    pthread_join(t, NULL);
    ck_status(w.status, ANYLOCK_OK);
    ck_status(anylock_lock_set_timeout(r3, 0), ANYLOCK_OK);
    ck_status(anylock_acquire(r3), ANYLOCK_BUSY);
    anylock_lock_free(w.keep);
    ck_status(anylock_acquire(r3), ANYLOCK_OK);
    PQfinish(pg);
    anylock_lock_free(r1);
    anylock_lock_free(r2);
    anylock_lock_free(r3);
    anylock_lock_free(x);
    anylock_close(c);
}
END_TEST

START_TEST(t_semaphore_unsupported)
{
    anylock_client *c = client("sem");
    anylock_lock *l = new_lock(c, "s");
    ck_status(anylock_lock_set_permits(l, 3), ANYLOCK_OK);
    ck_status(anylock_acquire(l), ANYLOCK_MODE_UNSUPPORTED);
    anylock_lock_free(l);
    anylock_close(c);
}
END_TEST

/* ---- tokens --------------------------------------------------------------------- */

/* How many advisory locks on bigint keys sessions have been granted. */
static long granted_locks(PGconn *pg)
{
    return raw_long(pg, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 AND granted");
}

/* A holder's turn: a release within it while another session waits keeps
 * the advisory lock on the holder's session (with no holder row), so that
 * another owner is kept out and the holder takes it again, with a new
 * token; the waiter gets it when the turn ends, from the client's watcher.
 * Freeing the handle ends a turn at once; with turn=0 a release hands the
 * lock to the waiter. */
START_TEST(t_holder_turn)
{
    anylock_client *c = open_url("%s?prefix=pt-turn-%ld:&turn=2.5", srv.url, (long)getpid());
    anylock_lock *a = new_lock(c, "t"), *other = new_lock(c, "t");
    PGconn *pg = raw();
    double before = test_now();
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    double after = test_now();
    uint64_t t1 = 0, t2 = 0;
    ck_status(anylock_lock_token(a, &t1), ANYLOCK_OK);
    waiter w = {c, "t", 20, ANYLOCK_EXCLUSIVE, ANYLOCK_INTERNAL, 0, NULL, 0};
    pthread_t t;
    pthread_create(&t, NULL, wait_thread, &w);
    await_waiters(pg, 1);
    ck_status(anylock_release(a), ANYLOCK_OK);
    /* Kept: granted to a session still, held by nobody's row. */
    ck_assert_int_eq(granted_locks(pg), 1);
    int locked = -1;
    ck_status(anylock_locked(other, &locked), ANYLOCK_OK);
    ck_assert_int_eq(locked, 0);
    ck_status(anylock_try_acquire(other), ANYLOCK_BUSY);
    ck_status(anylock_try_acquire(a), ANYLOCK_OK);
    ck_status(anylock_lock_token(a, &t2), ANYLOCK_OK);
    ck_assert_msg(t2 > t1, "token %" PRIu64 " after %" PRIu64, t2, t1);
    anylock_info info;
    ck_status(anylock_inspect(c, "t", &info), ANYLOCK_OK);
    ck_assert_str_eq(info.owner, anylock_lock_id(a));
    ck_status(anylock_release(a), ANYLOCK_OK);
    ck_status(anylock_try_acquire(other), ANYLOCK_BUSY);
    pthread_join(t, NULL);
    ck_status(w.status, ANYLOCK_OK);
    /* The turn ends 2.5 s after the grant's answer. */
    ck_assert_msg(w.done_at >= before + 2.5, "the waiter got it %.3f s into the turn", w.done_at - before);
    ck_assert_msg(w.done_at - (after + 2.5) < 1.5, "the waiter got it %.3f s after the turn", w.done_at - (after + 2.5));

    /* Freeing the handle within its turn lets the lock go at once. */
    before = test_now();
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    waiter w2 = {c, "t", 20, ANYLOCK_EXCLUSIVE, ANYLOCK_INTERNAL, 0, NULL, 0};
    pthread_create(&t, NULL, wait_thread, &w2);
    await_waiters(pg, 1);
    ck_status(anylock_release(a), ANYLOCK_OK);
    ck_assert_int_eq(granted_locks(pg), 1);
    anylock_lock_free(a);
    pthread_join(t, NULL);
    ck_status(w2.status, ANYLOCK_OK);
    ck_assert_msg(w2.done_at < before + 2.5, "the waiter got it %.3f s after the acquire", w2.done_at - before);
    anylock_lock_free(other);
    anylock_close(c);

    /* turn=0: the release hands the lock to the waiter, which keeps it. */
    c = open_url("%s?prefix=pt-turn0-%ld:&turn=0", srv.url, (long)getpid());
    a = new_lock(c, "t");
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    waiter w3 = {c, "t", 20, ANYLOCK_EXCLUSIVE, ANYLOCK_INTERNAL, 0, NULL, 1};
    pthread_create(&t, NULL, wait_thread, &w3);
    await_waiters(pg, 1);
    ck_status(anylock_release(a), ANYLOCK_OK);
    ck_status(anylock_try_acquire(a), ANYLOCK_BUSY);
    pthread_join(t, NULL);
    ck_status(w3.status, ANYLOCK_OK);
    ck_status(anylock_release(w3.keep), ANYLOCK_OK);
    anylock_lock_free(w3.keep);
    anylock_lock_free(a);
    PQfinish(pg);
    anylock_close(c);
}
END_TEST

START_TEST(t_tokens_increase)
{
    anylock_client *c = client("tokens");
    anylock_lock *a = new_lock(c, "t"), *b = new_lock(c, "t");
    uint64_t last = 0;
    for (int i = 0; i < 10; i++) {
        anylock_lock *l = i % 2 ? a : b;
        ck_status(anylock_acquire(l), ANYLOCK_OK);
        uint64_t tok = 0;
        ck_status(anylock_lock_token(l, &tok), ANYLOCK_OK);
        ck_assert_msg(tok > last, "token %" PRIu64 " after %" PRIu64, tok, last);
        last = tok;
        ck_status(anylock_release(l), ANYLOCK_OK);
    }
    anylock_lock_free(a);
    anylock_lock_free(b);
    anylock_close(c);
}
END_TEST

static Suite *postgres_suite(void)
{
    Suite *s = suite_create("postgres");
    test_case tests[] = {
        {"url_forms", t_url_forms},
        {"bad_urls", t_bad_urls},
        {"dead_server_and_passwords", t_dead_server_and_passwords},
        {"table_and_pg_locks", t_table_and_pg_locks},
        {"stale_rows_not_held", t_stale_rows_not_held},
        {"waiter_queued_in_server", t_waiter_queued_in_server},
        {"sigkilled_holder", t_sigkilled_holder},
        {"terminated_holder_reported_lost", t_terminated_holder_reported_lost},
        {"reset_terminates_holder", t_reset_terminates_holder},
        {"name_collision", t_name_collision},
        {"shared_writer_preference", t_shared_writer_preference},
        {"semaphore_unsupported", t_semaphore_unsupported},
        {"tokens_increase", t_tokens_increase},
        {"holder_turn", t_holder_turn},
        {"stalled_server", t_stalled_server},
        {"server_restart", t_server_restart},
    };
    add_test_cases(s, tests, sizeof tests / sizeof *tests, NULL, NULL, 120);
    return s;
}

int main(void)
{
    if (test_server_start(&srv, "postgres", NULL) != 0) {
        fprintf(stderr, "test_postgres: cannot start PostgreSQL (a missing server is a failure)\n");
        return 1;
    }
    static conformance_config cfg = {
        .label = "postgres",
        .excludes = 1,
        .cross_process = 1,
        .can_list = 1,
        .can_reset_all = 1,
        .expiry = 0.5,
        .slack = 0.3,
        .processes = 16,
    };
    cfg.url = srv.url;
    int rc = conformance_run(conformance_suite(&cfg), postgres_suite());
    test_server_stop(&srv);
    return rc;
}
