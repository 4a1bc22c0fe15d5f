/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * sqlite:// passes the whole conformance suite, across 16 processes, on a
 * database file in a fresh temporary directory.  The tests below cover what
 * is its own: URL forms, the new file's mode and schema, a holder killed
 * with SIGKILL, errors from unusable files and directories and from a
 * database locked by another program (the sqlite3 command), the reboot
 * rule, and the clean-up of expired rows.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/vfs.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "anylock.h"
#include "conformance.h"
#include "harness.h"

#include "check_status.h"
#include "../backends/sqlite_fs.h"

static int count_held(const anylock_info *info, void *ud)
{
    *(size_t *)ud += info->held != 0;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Upper time bounds are stretched under instrumented builds
 * ($ANYLOCK_TEST_TIME_SCALE, set by scripts/check.sh). */
static double scale(void)
{
    const char *e = getenv("ANYLOCK_TEST_TIME_SCALE");
    double v = e ? atof(e) : 1;
    return v >= 1 ? v : 1;
}

/* Each test works in its own temporary directory. */
static char tdir[512];

static void setup(void)
{
    ck_assert_int_eq(test_tmpdir(tdir, sizeof tdir), 0);
}

static void teardown(void)
{
    test_rmtree(tdir);
}

/* The URL of file `name` in the test's directory, with an optional query. */
static const char *url_of(const char *name, const char *query)
{
    static char url[1024];
    snprintf(url, sizeof url, "sqlite:///%s/%s%s%s", tdir, name, query ? "?" : "", query ? query : "");
    return url;
}

static const char *path_of(const char *name)
{
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", tdir, name);
    return path;
}

/* Opens url expecting failure with want; returns nothing, checks the
 * message names the file when path is given. */
static void open_fails(const char *url, anylock_status want, const char *path)
{
    anylock_client *c = NULL;
    anylock_status st = anylock_open(url, &c);
    ck_assert_msg(st == want, "open %s: got %s (%s), want %s", url, anylock_status_name(st), anylock_errmsg(c),
                  anylock_status_name(want));
    if (path)
        ck_assert_msg(strstr(anylock_errmsg(c), path) != NULL, "message \"%s\" does not name %s",
                      anylock_errmsg(c), path);
    anylock_close(c);
}

static int64_t query_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *s = NULL;
    ck_assert_msg(sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK, "%s: %s", sql, sqlite3_errmsg(db));
    ck_assert_int_eq(sqlite3_step(s), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

static void exec_sql(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, err ? err : "?");
    sqlite3_close(db);
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* ---- URL forms ---- */

START_TEST(t_url_forms)
{
    /* sqlite:////abs: the absolute form (tdir is absolute). */
    char url[1024];
    snprintf(url, sizeof url, "sqlite:///%s/abs.db", tdir);
    ck_assert_int_eq(url[10], '/');
    anylock_client *c = open_ok(url);
    ck_assert_str_eq(anylock_client_scheme(c), "sqlite");
    anylock_close(c);
    ck_assert_int_eq(access(path_of("abs.db"), F_OK), 0);

    /* sqlite:///rel: relative to the working directory. */
    int cwd = open(".", O_RDONLY | O_DIRECTORY);
    ck_assert_int_ge(cwd, 0);
    ck_assert_int_eq(chdir(tdir), 0);
    c = NULL;
    anylock_status st = anylock_open("sqlite:///sub.db?busy_timeout=2&poll_max=0.01", &c);
    ck_assert_int_eq(fchdir(cwd), 0);
    close(cwd);
    ck_assert_msg(st == ANYLOCK_OK, "%s", anylock_errmsg(c));
    anylock_close(c);
    ck_assert_int_eq(access(path_of("sub.db"), F_OK), 0);

    open_fails("sqlite://u:pw@/x.db", ANYLOCK_URL_BAD_USERINFO, NULL);
    open_fails("sqlite://host/x.db", ANYLOCK_URL_BAD_HOST, NULL);
    open_fails("sqlite://", ANYLOCK_URL_BAD_PATH, NULL);
    open_fails("sqlite:///", ANYLOCK_URL_BAD_PATH, NULL);
    open_fails("sqlite:///:memory:", ANYLOCK_URL_BAD_PATH, NULL);
    ck_assert_int_eq(mkdir(path_of("dir.db"), 0700), 0);
    open_fails(url_of("dir.db", NULL), ANYLOCK_URL_BAD_PATH, path_of("dir.db"));
    open_fails(url_of("p.db", "busy_timeout=soon"), ANYLOCK_URL_BAD_PARAM, NULL);
    open_fails(url_of("p.db", "poll_max=-1"), ANYLOCK_URL_BAD_PARAM, NULL);
    open_fails(url_of("p.db", "journal=wal"), ANYLOCK_URL_UNKNOWN_PARAM, NULL);
}
END_TEST

/* ---- the new file ---- */

START_TEST(t_new_file_mode_and_schema)
{
    /* Whatever the umask, the file and its WAL companions are 0600. */
    mode_t old = umask(0);
    anylock_client *c = open_ok(url_of("m.db", NULL));
    anylock_lock *l = NULL;
    ck_status(anylock_lock_new(c, "x", &l), ANYLOCK_OK);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    umask(old);
    const char *files[] = {"m.db", "m.db-wal", "m.db-shm"};
    for (int i = 0; i < 3; i++) {
        struct stat sb;
        ck_assert_msg(stat(path_of(files[i]), &sb) == 0, "%s: %s", files[i], strerror(errno));
        ck_assert_msg((sb.st_mode & 07777) == 0600, "%s has mode %o", files[i], (unsigned)(sb.st_mode & 07777));
    }
    const char *p = path_of("m.db");
    ck_assert_int_eq(query_int(p, "PRAGMA user_version"), 2);
    ck_assert_int_eq(query_int(p, "PRAGMA application_id"), 0x414E594C);
    ck_assert_int_eq(query_int(p, "SELECT count(*) FROM anylock_holders"), 1);
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open(p, &db), SQLITE_OK);
    sqlite3_stmt *s = NULL;
    ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(s), SQLITE_ROW);
    ck_assert_str_eq((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    sqlite3_close(db);
    anylock_lock_free(l);
    anylock_close(c);

    /* An existing file keeps its mode: we only choose it for new files. */
    ck_assert_int_eq(chmod(p, 0640), 0);
    c = open_ok(url_of("m.db", NULL));
    anylock_close(c);
    struct stat sb;
    ck_assert_int_eq(stat(p, &sb), 0);
    ck_assert_int_eq(sb.st_mode & 07777, 0640);
}
END_TEST

/* Many clients opening one new file at once all succeed (schema creation
 * and the switch to WAL are race-free). */
static const char *race_url;

static int open_race_child(int index, void *arg)
{
    (void)index;
    (void)arg;
    anylock_client *c = NULL;
    anylock_status st = anylock_open(race_url, &c);
    if (st != ANYLOCK_OK)
        fprintf(stderr, "open: %s\n", anylock_errmsg(c));
    anylock_close(c);
    return st != ANYLOCK_OK;
}

START_TEST(t_open_race)
{
    race_url = url_of("race.db", NULL);
    ck_assert_int_eq(test_fork_n(12, open_race_child, NULL, 60), 0);
    ck_assert_int_eq(query_int(path_of("race.db"), "PRAGMA user_version"), 2);
}
END_TEST

/* ---- errors ---- */

START_TEST(t_missing_directory)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/no/such/dir/x.db", tdir);
    char url[1100];
    snprintf(url, sizeof url, "sqlite:///%s", path);
    open_fails(url, ANYLOCK_CONNECT, path);
}
END_TEST

/* Runs fn in a child that cannot write where root could: as root, the
 * child drops to an unprivileged user first. */
static int run_unprivileged(int (*fn)(void))
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) || setuid(65534)))
            _exit(99);
        _exit(fn());
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 98;
}

static char ro_url[1200];
static char ro_path[1100];

/* 0 when opening ro_url fails with ACCESS and a message naming ro_path. */
static int open_gives_access(void)
{
    anylock_client *c = NULL;
    anylock_status st = anylock_open(ro_url, &c);
    int ok = st == ANYLOCK_ACCESS && strstr(anylock_errmsg(c), ro_path);
    if (!ok)
        fprintf(stderr, "open %s: %s (%s)\n", ro_url, anylock_status_name(st), anylock_errmsg(c));
    anylock_close(c);
    return ok ? 0 : 1;
}

START_TEST(t_read_only_directory)
{
    /* Modes that forbid writing to an unprivileged user (root is made one
     * in the child), with a world-readable path down to them. */
    char ro[900];
    snprintf(ro, sizeof ro, "%s/ro", tdir);
    ck_assert_int_eq(mkdir(ro, 0755), 0);
    ck_assert_int_eq(chmod(tdir, 0755), 0);
    snprintf(ro_path, sizeof ro_path, "%s/x.db", ro);
    snprintf(ro_url, sizeof ro_url, "sqlite:///%s", ro_path);
    /* A new file in a directory we may not write. */
    ck_assert_int_eq(chmod(ro, 0555), 0);
    ck_assert_int_eq(run_unprivileged(open_gives_access), 0);
    /* An existing database we may read but not write. */
    ck_assert_int_eq(chmod(ro, 0755), 0);
    anylock_client *c = open_ok(ro_url);
    anylock_close(c);
    ck_assert_int_eq(chmod(ro_path, 0444), 0);
    ck_assert_int_eq(chmod(ro, 0555), 0);
    ck_assert_int_eq(run_unprivileged(open_gives_access), 0);
    ck_assert_int_eq(chmod(ro, 0755), 0); /* so that teardown can remove it */
}
END_TEST

START_TEST(t_not_a_database)
{
    const char *text = "this is a text file, not a database\n";
    char big[8192];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = text[i % strlen(text)];
    write_file(path_of("text.db"), big, sizeof big);
    open_fails(url_of("text.db", NULL), ANYLOCK_STORE, path_of("text.db"));
    /* The file is left as it was. */
    struct stat sb;
    ck_assert_int_eq(stat(path_of("text.db"), &sb), 0);
    ck_assert_int_eq(sb.st_size, (off_t)sizeof big);
}
END_TEST

START_TEST(t_corrupt_database)
{
    /* A real anylock database, closed (so its WAL is checkpointed), whose
     * pages after the first are then overwritten with garbage. */
    anylock_client *c = open_ok(url_of("bad.db", NULL));
    anylock_lock *l = NULL;
    ck_status(anylock_lock_new(c, "x", &l), ANYLOCK_OK);
    ck_status(anylock_lock_set_expires(l, ANYLOCK_FOREVER), ANYLOCK_OK);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    ck_status(anylock_lock_reset(l), ANYLOCK_OK);
    anylock_lock_free(l);
    anylock_close(c);
    const char *p = path_of("bad.db");
    int64_t page = query_int(p, "PRAGMA page_size");
    struct stat sb;
    ck_assert_int_eq(stat(p, &sb), 0);
    ck_assert_int_gt(sb.st_size, page);
    int fd = open(p, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    char junk[512];
    memset(junk, 0xa5, sizeof junk);
    for (off_t off = page; off < sb.st_size; off += (off_t)sizeof junk)
        ck_assert_int_eq(pwrite(fd, junk, sizeof junk, off), (ssize_t)sizeof junk);
    close(fd);
    /* Opening reads the tables, so the damage shows at once. */
    open_fails(url_of("bad.db", NULL), ANYLOCK_STORE, p);
}
END_TEST

START_TEST(t_foreign_database)
{
    /* Another application's SQLite database is not taken over. */
    exec_sql(path_of("app.db"), "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT)");
    open_fails(url_of("app.db", NULL), ANYLOCK_STORE, path_of("app.db"));
    ck_assert_int_eq(query_int(path_of("app.db"), "SELECT count(*) FROM sqlite_master"), 1);

    /* A schema newer than this code knows is refused, not misread. */
    anylock_client *c = open_ok(url_of("new.db", NULL));
    anylock_close(c);
    exec_sql(path_of("new.db"), "PRAGMA user_version = 99");
    open_fails(url_of("new.db", NULL), ANYLOCK_STORE, path_of("new.db"));
}
END_TEST

/* Reaps the forked child pid and checks that it exited with 0 (not with a
 * failure code, and not killed by a signal). */
static void child_exits_ok(pid_t pid)
{
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d %s %d", (int)pid,
                  WIFEXITED(status) ? "exited with" : "was killed by signal",
                  WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

/* Starts the sqlite3 command on path holding an EXCLUSIVE transaction; the
 * returned pipe keeps it alive until closed. */
static FILE *sqlite3_holding(const char *path, pid_t *pid)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    fflush(NULL);
    *pid = fork();
    ck_assert_int_ge(*pid, 0);
    if (*pid == 0) {
        dup2(fds[0], 0);
        close(fds[0]);
        close(fds[1]);
        execlp("sqlite3", "sqlite3", path, (char *)NULL);
        _exit(127);
    }
    close(fds[0]);
    FILE *f = fdopen(fds[1], "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "BEGIN EXCLUSIVE;\nDELETE FROM anylock_meta WHERE 0;\n");
    fflush(f);
    /* Wait until the write lock is really taken. */
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    int locked = 0;
    for (int i = 0; i < 1000 && !locked; i++) {
        int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        locked = rc == SQLITE_BUSY;
        if (!locked)
            test_sleep(0.01);
    }
    sqlite3_close(db);
    ck_assert_msg(locked, "the sqlite3 command did not take the lock");
    return f;
}

START_TEST(t_locked_by_another_program)
{
    const char *url = url_of("held.db", "busy_timeout=0.3");
    anylock_client *c = open_ok(url);
    anylock_lock *l = NULL;
    ck_status(anylock_lock_new(c, "x", &l), ANYLOCK_OK);
    pid_t pid;
    FILE *f = sqlite3_holding(path_of("held.db"), &pid);

    double t0 = test_now();
    anylock_status st = anylock_try_acquire(l);
    double took = test_now() - t0;
    ck_assert_msg(st == ANYLOCK_IO, "try_acquire: %s (%s)", anylock_status_name(st), anylock_lock_errmsg(l));
    ck_assert_msg(strstr(anylock_lock_errmsg(l), "busy_timeout"), "%s", anylock_lock_errmsg(l));
    ck_assert_msg(took >= 0.25, "gave up after %.3f s, before busy_timeout", took);
    ck_assert_msg(took < 10, "took %.3f s", took);
    /* Reading still works in WAL mode while the writer is locked out. */
    int locked = -1;
    ck_status(anylock_locked(l, &locked), ANYLOCK_OK);
    ck_assert_int_eq(locked, 0);
    /* Opening another client only reads the schema, so it works too... */
    anylock_client *c2 = open_ok(url);
    anylock_close(c2);
    /* ...unless the file must be written: here, as after a reboot. */
    fclose(f);
    int status;
    waitpid(pid, &status, 0);
    exec_sql(path_of("held.db"), "UPDATE anylock_meta SET value = 'an-older-boot' WHERE name = 'boot_id'");
    f = sqlite3_holding(path_of("held.db"), &pid);
    open_fails(url, ANYLOCK_IO, path_of("held.db"));

    /* Once the other program lets go, everything works again. */
    fclose(f);
    waitpid(pid, &status, 0);
    ck_status(anylock_try_acquire(l), ANYLOCK_OK);
    ck_status(anylock_release(l), ANYLOCK_OK);
    anylock_lock_free(l);
    anylock_close(c);
}
END_TEST

/* ---- holders that die ---- */

START_TEST(t_sigkilled_holder)
{
    const char *url = url_of("kill.db", NULL);
    int ready[2];
    ck_assert_int_eq(pipe(ready), 0);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        anylock_client *c = NULL;
        anylock_lock *l = NULL;
        char ok = 'n';
        if (anylock_open(url, &c) == ANYLOCK_OK && anylock_lock_new(c, "job", &l) == ANYLOCK_OK &&
            anylock_lock_set_expires(l, 1.5) == ANYLOCK_OK && anylock_acquire(l) == ANYLOCK_OK)
            ok = 'y';
        if (write(ready[1], &ok, 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close(ready[1]);
    char ok = 0;
    ck_assert_int_eq(read(ready[0], &ok, 1), 1);
    close(ready[0]);
    ck_assert_int_eq(ok, 'y');
    double killed_at = test_now();
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);

    anylock_client *c = open_ok(url);
    anylock_lock *l = NULL;
    ck_status(anylock_lock_new(c, "job", &l), ANYLOCK_OK);
    ck_status(anylock_lock_set_timeout(l, 8), ANYLOCK_OK);
    ck_status(anylock_lock_set_expires(l, 10), ANYLOCK_OK);
    /* The dead holder's row is still there until its expiry passes. */
    char owner[ANYLOCK_ID_MAX + 1];
    ck_status(anylock_owner(l, owner, sizeof owner), ANYLOCK_OK);
    ck_assert_str_ne(owner, "");
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    double waited = test_now() - killed_at;
    ck_assert_msg(waited < 8, "waited %.3f s for a 1.5 s expiry", waited);
    ck_status(anylock_release(l), ANYLOCK_OK);
    anylock_lock_free(l);
    anylock_close(c);
}
END_TEST

/* Without inotify (here: no file descriptor left for one), a waiter polls
 * and still takes the lock when it is released. */
START_TEST(t_wait_without_inotify)
{
    const char *url = url_of("poll.db", "poll_max=0.005");
    anylock_client *c = open_ok(url);
    anylock_lock *l = NULL;
    ck_status(anylock_lock_new(c, "w", &l), ANYLOCK_OK);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    int ready[2];
    ck_assert_int_eq(pipe(ready), 0);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        anylock_client *c2 = NULL;
        anylock_lock *l2 = NULL;
        if (anylock_open(url, &c2) != ANYLOCK_OK || anylock_lock_new(c2, "w", &l2) != ANYLOCK_OK ||
            anylock_lock_set_expires(l2, 30) != ANYLOCK_OK || anylock_lock_set_timeout(l2, 20) != ANYLOCK_OK)
            _exit(2);
        /* Use up every descriptor: the waiting connection is already
         * open, but no inotify instance can be made. */
        while (dup(0) >= 0)
            ;
        if (inotify_init1(IN_CLOEXEC) >= 0)
            _exit(3);
        char go = 'g';
        if (write(ready[1], &go, 1) != 1)
            _exit(4);
        anylock_status st = anylock_acquire(l2);
        if (st != ANYLOCK_OK) {
            fprintf(stderr, "acquire: %s (%s)\n", anylock_status_name(st), anylock_lock_errmsg(l2));
            _exit(5);
        }
        _exit(anylock_release(l2) == ANYLOCK_OK ? 0 : 6);
    }
    close(ready[1]);
    char go = 0;
    ck_assert_int_eq(read(ready[0], &go, 1), 1);
    close(ready[0]);
    test_sleep(0.3);
    ck_status(anylock_release(l), ANYLOCK_OK);
    child_exits_ok(pid);
    anylock_lock_free(l);
    anylock_close(c);
}
END_TEST

/* After a reboot (a different boot id in the file), rows with an expiry are
 * dropped and rows without one stay. */
START_TEST(t_reboot_drops_expiring_rows)
{
    const char *url = url_of("boot.db", NULL);
    anylock_client *c = open_ok(url);
    anylock_lock *a = NULL, *b = NULL;
    ck_status(anylock_lock_new(c, "expiring", &a), ANYLOCK_OK);
    ck_status(anylock_lock_set_expires(a, 1000), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_status(anylock_lock_new(c, "forever", &b), ANYLOCK_OK);
    ck_status(anylock_lock_set_expires(b, ANYLOCK_FOREVER), ANYLOCK_OK);
    ck_status(anylock_acquire(b), ANYLOCK_OK);
    /* A client opened in the same boot keeps both. */
    anylock_client *c2 = open_ok(url);
    anylock_info info;
    ck_status(anylock_inspect(c2, "expiring", &info), ANYLOCK_OK);
    ck_assert_int_eq(info.held, 1);
    anylock_close(c2);

    exec_sql(path_of("boot.db"), "UPDATE anylock_meta SET value = 'an-older-boot' WHERE name = 'boot_id'");
    c2 = open_ok(url);
    ck_status(anylock_inspect(c2, "expiring", &info), ANYLOCK_OK);
    ck_assert_int_eq(info.held, 0);
    ck_status(anylock_inspect(c2, "forever", &info), ANYLOCK_OK);
    ck_assert_int_eq(info.held, 1);
    ck_assert(info.expires_in == ANYLOCK_FOREVER);
    anylock_close(c2);
    ck_status(anylock_release(a), ANYLOCK_NOT_HELD);
    ck_status(anylock_release(b), ANYLOCK_OK);
    anylock_lock_free(a);
    anylock_lock_free(b);
    anylock_close(c);
}
END_TEST

/* ---- growth ---- */

#define LEAKED 300

START_TEST(t_expired_rows_cleaned)
{
    const char *url = url_of("grow.db", "expires=0.05");
    const char *p = path_of("grow.db");
    anylock_client *c = open_ok(url);
    /* Rounds of LEAKED names whose holders never release (as if they had
     * died): the table stays bounded. */
    for (int round = 0; round < 3; round++) {
        anylock_lock *l[LEAKED];
        for (int i = 0; i < LEAKED; i++) {
            char name[64];
            snprintf(name, sizeof name, "r%d-n%d", round, i);
            ck_status(anylock_lock_new(c, name, &l[i]), ANYLOCK_OK);
            ck_status(anylock_acquire(l[i]), ANYLOCK_OK);
        }
        test_sleep(0.1);
        for (int i = 0; i < LEAKED; i++)
            anylock_lock_free(l[i]); /* the release finds it expired */
        int64_t rows = query_int(p, "SELECT count(*) FROM anylock_holders");
        ck_assert_msg(rows <= 2 * LEAKED, "round %d: %lld rows", round, (long long)rows);
    }
    /* Later acquires sweep what is left. */
    anylock_lock *l = NULL;
    ck_status(anylock_lock_new(c, "sweeper", &l), ANYLOCK_OK);
    ck_status(anylock_lock_set_expires(l, 10), ANYLOCK_OK);
    for (int i = 0; i < 2 * LEAKED / 16 + 2; i++) {
        ck_status(anylock_acquire(l), ANYLOCK_OK);
        ck_status(anylock_release(l), ANYLOCK_OK);
    }
    ck_assert_int_eq(query_int(p, "SELECT count(*) FROM anylock_holders"), 0);
    anylock_lock_free(l);
    anylock_close(c);
}
END_TEST

/* List and reset_all take prefixes literally: '%' and '_' are not
 * wildcards, and a prefix never matches a key it is not a prefix of. */
START_TEST(t_prefix_is_literal)
{
    char url[1100];
    snprintf(url, sizeof url, "%s", url_of("pfx.db", "prefix=a%25_"));
    anylock_client *lit = open_ok(url);
    anylock_client *other = open_ok(url_of("pfx.db", "prefix=abc"));
    anylock_client *upper = open_ok(url_of("pfx.db", "prefix=a%25%60"));
    anylock_lock *l1 = NULL, *l2 = NULL, *l3 = NULL;
    ck_status(anylock_lock_new(lit, "one", &l1), ANYLOCK_OK);
    ck_status(anylock_lock_new(other, "two", &l2), ANYLOCK_OK);
    ck_status(anylock_lock_new(upper, "three", &l3), ANYLOCK_OK);
    ck_status(anylock_acquire(l1), ANYLOCK_OK);
    ck_status(anylock_acquire(l2), ANYLOCK_OK);
    ck_status(anylock_acquire(l3), ANYLOCK_OK);
    size_t n = 99;
    ck_status(anylock_reset_all(lit, &n), ANYLOCK_OK);
    ck_assert_uint_eq(n, 1);
    int locked = -1;
    ck_status(anylock_locked(l2, &locked), ANYLOCK_OK);
    ck_assert_int_eq(locked, 1);
    ck_status(anylock_locked(l3, &locked), ANYLOCK_OK);
    ck_assert_int_eq(locked, 1);
    ck_status(anylock_release(l1), ANYLOCK_NOT_HELD);
    anylock_lock_free(l1);
    anylock_lock_free(l2);
    anylock_lock_free(l3);
    anylock_close(lit);
    anylock_close(other);
    anylock_close(upper);
}
END_TEST

/* ---- interface v2: capabilities, records, granted_at ---- */

START_TEST(t_features)
{
    anylock_client *c = open_ok(url_of("f.db", NULL));
    unsigned f = anylock_client_features(c);
    unsigned want = ANYLOCK_FEATURE_TOKEN | ANYLOCK_FEATURE_SHARED | ANYLOCK_FEATURE_SEMAPHORE | ANYLOCK_FEATURE_FAIR |
                    ANYLOCK_FEATURE_LIST | ANYLOCK_FEATURE_INSPECT | ANYLOCK_FEATURE_EXTEND | ANYLOCK_FEATURE_RESET |
                    ANYLOCK_FEATURE_RESET_ALL;
    ck_assert_msg((f & want) == want, "features %#x lack %#x", f, want & ~f);
    ck_assert_uint_eq(f & (ANYLOCK_FEATURE_SESSION | ANYLOCK_FEATURE_NO_EXCLUSION), 0);
    anylock_close(c);
}
END_TEST

/* The holder's metadata is kept with its row and shown to other clients
 * (and processes): label, pid, host, since. */
START_TEST(t_metadata)
{
    const char *url = url_of("meta.db", NULL);
    anylock_client *c = open_ok(url);
    anylock_lock *l = NULL;
    ck_status(anylock_lock_new(c, "job", &l), ANYLOCK_OK);
    ck_status(anylock_lock_set_label(l, "backup --full /srv"), ANYLOCK_OK);
    double before = (double)time(NULL) - 1;
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    anylock_client *c2 = open_ok(url);
    anylock_info info;
    ck_status(anylock_inspect(c2, "job", &info), ANYLOCK_OK);
    ck_assert_int_eq(info.held, 1);
    ck_assert_str_eq(info.owner, anylock_lock_id(l));
    ck_assert_str_eq(info.label, "backup --full /srv");
    ck_assert_int_eq(info.pid, (long)getpid());
    ck_assert_str_ne(info.host, "");
    ck_assert_msg(info.since >= before && info.since <= (double)time(NULL) + 1, "since %f", info.since);
    /* It is in the row itself, for other tools to read. */
    ck_assert_int_eq(query_int(path_of("meta.db"), "SELECT count(*) FROM anylock_holders WHERE"
                                                   " instr(CAST(meta AS TEXT), 'label=backup') > 0"),
                     1);
    anylock_close(c2);
    ck_status(anylock_release(l), ANYLOCK_OK);
    anylock_lock_free(l);
    anylock_close(c);
}
END_TEST

/* A waiter handed the lock after a long wait holds it for its whole
 * expiry: granted_at is when the store counted the lease from, not when
 * the acquire call started. */
START_TEST(t_granted_at_after_long_wait)
{
    const char *url = url_of("ga.db", NULL);
    anylock_client *c = open_ok(url);
    anylock_lock *a = NULL;
    ck_status(anylock_lock_new(c, "g", &a), ANYLOCK_OK);
    ck_status(anylock_lock_set_expires(a, 30), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    int ready[2], done[2];
    ck_assert_int_eq(pipe(ready), 0);
    ck_assert_int_eq(pipe(done), 0);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        anylock_client *c2 = NULL;
        anylock_lock *b = NULL;
        /* The client's default timeout (20 s) may exceed the lock's 1 s
         * expiry; no renewal: the point is the first lease. */
        char url2[1100];
        snprintf(url2, sizeof url2, "%s?timeout=20", url);
        if (anylock_open(url2, &c2) != ANYLOCK_OK || anylock_lock_new(c2, "g", &b) != ANYLOCK_OK ||
            anylock_lock_set_expires(b, 1.0) != ANYLOCK_OK)
            _exit(2);
        char go = 'g';
        if (write(ready[1], &go, 1) != 1)
            _exit(3);
        anylock_status st = anylock_acquire(b);
        if (st != ANYLOCK_OK)
            _exit(4);
        int held = anylock_lock_held(b);
        char r = held ? 'h' : 'n';
        if (write(done[1], &r, 1) != 1)
            _exit(5);
        _exit(anylock_release(b) == ANYLOCK_OK ? 0 : 6);
    }
    close(ready[1]);
    close(done[1]);
    char go = 0;
    ck_assert_int_eq(read(ready[0], &go, 1), 1);
    /* The waiter waits 1.5 s, longer than its own 1 s expiry. */
    test_sleep(1.5);
    ck_status(anylock_release(a), ANYLOCK_OK);
    char r = 0;
    ck_assert_int_eq(read(done[0], &r, 1), 1);
    ck_assert_msg(r == 'h', "the waiter's handle says it does not hold the lock it was just given");
    child_exits_ok(pid);
    close(ready[0]);
    close(done[0]);
    anylock_lock_free(a);
    anylock_close(c);
}
END_TEST

/* ---- bounds (issue 12 item 7) ---- */

START_TEST(t_acquire_bounded_while_write_locked)
{
    /* busy_timeout (5 s) is far above the wait timeout (1 s): the acquire
     * must still return at its deadline. */
    const char *url = url_of("bound.db", "busy_timeout=5");
    anylock_client *c = open_ok(url);
    anylock_lock *l = NULL;
    ck_status(anylock_lock_new(c, "x", &l), ANYLOCK_OK);
    ck_status(anylock_lock_set_timeout(l, 1), ANYLOCK_OK);
    pid_t pid;
    FILE *f = sqlite3_holding(path_of("bound.db"), &pid);
    double t0 = test_now();
    anylock_status st = anylock_acquire(l);
    double took = test_now() - t0;
    ck_assert_msg(st == ANYLOCK_TIMEOUT, "acquire: %s (%s)", anylock_status_name(st), anylock_lock_errmsg(l));
    ck_assert_msg(strstr(anylock_lock_errmsg(l), "write lock"), "%s", anylock_lock_errmsg(l));
    ck_assert_msg(took >= 0.95 && took < 1 + 0.8 * scale(), "a 1 s wait returned after %.3f s", took);
    fclose(f);
    int status;
    waitpid(pid, &status, 0);
    anylock_lock_free(l);
    anylock_close(c);
}
END_TEST

/* Calls other than acquire are bounded by busy_timeout. */
START_TEST(t_other_calls_bounded_by_busy_timeout)
{
    const char *url = url_of("bound2.db", "busy_timeout=0.3");
    anylock_client *c = open_ok(url);
    anylock_lock *l = NULL;
    ck_status(anylock_lock_new(c, "x", &l), ANYLOCK_OK);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    pid_t pid;
    FILE *f = sqlite3_holding(path_of("bound2.db"), &pid);
    double t0 = test_now();
    ck_status(anylock_reset(c, "y"), ANYLOCK_IO);
    ck_status(anylock_extend(l, 5), ANYLOCK_IO);
    ck_status(anylock_release(l), ANYLOCK_IO);
    double took = test_now() - t0;
    ck_assert_msg(took >= 0.8 && took < 4 * scale(), "three calls with a 0.3 s busy_timeout took %.3f s", took);
    fclose(f);
    int status;
    waitpid(pid, &status, 0);
    ck_status(anylock_release(l), ANYLOCK_OK);
    anylock_lock_free(l);
    anylock_close(c);
}
END_TEST

/* ---- owners compared whole (issue 12 item 1) ---- */

/* Puts a holder row written as another program would (owner as given by
 * the SQL expression). */
static void put_foreign(const char *file, const char *name, const char *owner_sql)
{
    char sql[1024];
    snprintf(sql, sizeof sql,
             "INSERT INTO anylock_holders(key, owner, mode, permits, expires_at) VALUES (CAST('lock:%s' AS BLOB), %s, "
             "0, 0, 0)",
             name, owner_sql);
    exec_sql(path_of(file), sql);
}

START_TEST(t_owner_compared_whole)
{
    anylock_client *c = open_ok(url_of("own.db", NULL));
    anylock_lock *l = NULL;
    ck_status(anylock_lock_new(c, "longer", &l), ANYLOCK_OK);
    ck_status(anylock_lock_set_id(l, "abcdefgh"), ANYLOCK_OK);
    /* A stored owner longer than the id, starting with it: someone else. */
    put_foreign("own.db", "longer", "CAST('abcdefghX' AS BLOB)");
    ck_status(anylock_try_acquire(l), ANYLOCK_BUSY);
    ck_status(anylock_release(l), ANYLOCK_NOT_HELD);
    ck_status(anylock_extend(l, 5), ANYLOCK_NOT_HELD);
    /* ...shorter: someone else too. */
    anylock_lock *s = NULL;
    ck_status(anylock_lock_new(c, "shorter", &s), ANYLOCK_OK);
    ck_status(anylock_lock_set_id(s, "abcdefgh"), ANYLOCK_OK);
    put_foreign("own.db", "shorter", "CAST('abcdefg' AS BLOB)");
    ck_status(anylock_try_acquire(s), ANYLOCK_BUSY);
    /* Empty, and binary with a NUL: held, never spun on, shown as held. */
    anylock_lock *e = NULL, *b = NULL;
    ck_status(anylock_lock_new(c, "empty", &e), ANYLOCK_OK);
    ck_status(anylock_lock_new(c, "binary", &b), ANYLOCK_OK);
    put_foreign("own.db", "empty", "X''");
    put_foreign("own.db", "binary", "X'00FF61'");
    double t0 = test_now();
    ck_status(anylock_try_acquire(e), ANYLOCK_BUSY);
    ck_status(anylock_try_acquire(b), ANYLOCK_BUSY);
    ck_status(anylock_lock_set_timeout(e, 0.3), ANYLOCK_OK);
    ck_status(anylock_acquire(e), ANYLOCK_TIMEOUT);
    ck_assert_msg(test_now() - t0 < 3 * scale(), "took %.3f s", test_now() - t0);
    anylock_info info;
    ck_status(anylock_inspect(c, "empty", &info), ANYLOCK_OK);
    ck_assert_int_eq(info.held, 1);
    ck_assert_uint_eq(info.owner_len, 0);
    ck_status(anylock_inspect(c, "binary", &info), ANYLOCK_OK);
    ck_assert_int_eq(info.held, 1);
    ck_assert_uint_eq(info.owner_len, 3);
    size_t listed = 0;
    ck_status(anylock_list(c, count_held, &listed), ANYLOCK_OK);
    ck_assert_uint_eq(listed, 4);
    /* The same bytes written as TEXT by another program are this owner. */
    anylock_lock *t = NULL;
    ck_status(anylock_lock_new(c, "text", &t), ANYLOCK_OK);
    ck_status(anylock_lock_set_id(t, "abcdefgh"), ANYLOCK_OK);
    put_foreign("own.db", "text", "'abcdefgh'");
    ck_status(anylock_try_acquire(t), ANYLOCK_ALREADY_HELD);
    ck_status(anylock_release(t), ANYLOCK_OK);
    ck_assert_int_eq(query_int(path_of("own.db"), "SELECT count(*) FROM anylock_holders"), 4);
    anylock_lock_free(l);
    anylock_lock_free(s);
    anylock_lock_free(e);
    anylock_lock_free(b);
    anylock_lock_free(t);
    anylock_close(c);
}
END_TEST

/* ---- fencing tokens (issue 13) ---- */

START_TEST(t_token_counter)
{
    const char *url = url_of("tok.db", NULL);
    anylock_client *c = open_ok(url);
    uint64_t last = 0;
    /* Across names and clients: one counter, strictly increasing. */
    for (int i = 0; i < 50; i++) {
        char name[32];
        snprintf(name, sizeof name, "n%d", i % 7);
        anylock_lock *l = NULL;
        ck_status(anylock_lock_new(c, name, &l), ANYLOCK_OK);
        uint64_t tok = 0;
        ck_status(anylock_lock_token(l, &tok), ANYLOCK_NOT_HELD);
        ck_status(anylock_acquire(l), ANYLOCK_OK);
        ck_status(anylock_lock_token(l, &tok), ANYLOCK_OK);
        ck_assert_msg(tok > last, "token %llu after %llu", (unsigned long long)tok, (unsigned long long)last);
        last = tok;
        ck_status(anylock_release(l), ANYLOCK_OK);
        anylock_lock_free(l);
    }
    /* A counter in the database, not one per name. */
    ck_assert_int_eq(query_int(path_of("tok.db"), "SELECT count(*) FROM anylock_tokens"), 1);
    ck_assert_int_eq(query_int(path_of("tok.db"), "SELECT last FROM anylock_tokens"), (int64_t)last);
    anylock_close(c);
}
END_TEST

/* Tokens seen inside the critical section, in the order holders came,
 * strictly increase, across processes and hand-offs. */
#define TOKEN_PROCS 8
#define TOKEN_ROUNDS 40

typedef struct token_log {
    int n;
    uint64_t tokens[TOKEN_PROCS * TOKEN_ROUNDS];
} token_log;

static const char *token_url;

static int token_child(int index, void *arg)
{
    (void)index;
    token_log *log = arg;
    anylock_client *c = NULL;
    anylock_lock *l = NULL;
    if (anylock_open(token_url, &c) != ANYLOCK_OK || anylock_lock_new(c, "fence", &l) != ANYLOCK_OK ||
        anylock_lock_set_timeout(l, 60) != ANYLOCK_OK || anylock_lock_set_expires(l, 60) != ANYLOCK_OK)
        return 1;
    for (int i = 0; i < TOKEN_ROUNDS; i++) {
        uint64_t tok = 0;
        if (anylock_acquire(l) != ANYLOCK_OK || anylock_lock_token(l, &tok) != ANYLOCK_OK)
            return 2;
        log->tokens[log->n++] = tok; /* under the lock */
        if (anylock_release(l) != ANYLOCK_OK)
            return 3;
    }
    anylock_lock_free(l);
    anylock_close(c);
    return 0;
}

START_TEST(t_token_order_across_processes)
{
    token_url = url_of("tok2.db", NULL);
    token_log *log = test_shared_alloc(sizeof *log);
    ck_assert_int_eq(test_fork_n(TOKEN_PROCS, token_child, log, 120), 0);
    ck_assert_int_eq(log->n, TOKEN_PROCS * TOKEN_ROUNDS);
    for (int i = 1; i < log->n; i++)
        ck_assert_msg(log->tokens[i] > log->tokens[i - 1], "holder %d had token %llu after %llu", i,
                      (unsigned long long)log->tokens[i], (unsigned long long)log->tokens[i - 1]);
    test_shared_free(log, sizeof *log);
}
END_TEST

/* ---- schema versions ---- */

/* A database as anylock 0.1 made it (schema version 1), with a held lock,
 * is migrated in place; the holder keeps it. */
START_TEST(t_migrate_from_v1)
{
    const char *p = path_of("old.db");
    exec_sql(p, "CREATE TABLE anylock_locks (key BLOB PRIMARY KEY NOT NULL, owner TEXT NOT NULL,"
                " expires_at INTEGER NOT NULL) WITHOUT ROWID;"
                "CREATE INDEX anylock_locks_expiry ON anylock_locks(expires_at) WHERE expires_at > 0;"
                "CREATE TABLE anylock_meta (name TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);"
                "PRAGMA application_id = 1095653708; PRAGMA user_version = 1; PRAGMA journal_mode = WAL;"
                "INSERT INTO anylock_locks VALUES (CAST('lock:kept' AS BLOB), 'old-owner-id', 0);");
    anylock_client *c = open_ok(url_of("old.db", NULL));
    ck_assert_int_eq(query_int(p, "PRAGMA user_version"), 2);
    ck_assert_int_eq(query_int(p, "SELECT count(*) FROM sqlite_master WHERE name = 'anylock_locks'"), 0);
    anylock_info info;
    ck_status(anylock_inspect(c, "kept", &info), ANYLOCK_OK);
    ck_assert_int_eq(info.held, 1);
    ck_assert_str_eq(info.owner, "old-owner-id");
    ck_assert(info.expires_in == ANYLOCK_FOREVER);
    anylock_lock *other = NULL, *same = NULL;
    ck_status(anylock_lock_new(c, "kept", &other), ANYLOCK_OK);
    ck_status(anylock_try_acquire(other), ANYLOCK_BUSY);
    ck_status(anylock_lock_new(c, "kept", &same), ANYLOCK_OK);
    ck_status(anylock_lock_set_id(same, "old-owner-id"), ANYLOCK_OK);
    ck_status(anylock_release(same), ANYLOCK_OK);
    ck_status(anylock_try_acquire(other), ANYLOCK_OK);
    uint64_t tok = 0;
    ck_status(anylock_lock_token(other, &tok), ANYLOCK_OK);
    ck_assert_uint_eq(tok, 1);
    anylock_lock_free(other);
    anylock_lock_free(same);
    anylock_close(c);
    /* Opening again finds version 2 and changes nothing. */
    c = open_ok(url_of("old.db", NULL));
    anylock_close(c);
    ck_assert_int_eq(query_int(p, "PRAGMA user_version"), 2);
}
END_TEST

/* ---- modes (issue 16) ---- */

static anylock_lock *mode_lock(anylock_client *c, const char *name, anylock_mode mode, unsigned permits)
{
    anylock_lock *l = NULL;
    ck_status(anylock_lock_new(c, name, &l), ANYLOCK_OK);
    if (mode == ANYLOCK_SEMAPHORE)
        ck_status(anylock_lock_set_permits(l, permits), ANYLOCK_OK);
    else
        ck_status(anylock_lock_set_mode(l, mode), ANYLOCK_OK);
    return l;
}

typedef struct holder_count {
    unsigned n, shared;
} holder_count;

static int count_holder(const anylock_holder *h, void *ud)
{
    holder_count *hc = ud;
    hc->n++;
    hc->shared += h->mode == ANYLOCK_SHARED;
    return 0;
}

START_TEST(t_shared_and_exclusive)
{
    anylock_client *c = open_ok(url_of("rw.db", NULL));
    anylock_lock *r1 = mode_lock(c, "rw", ANYLOCK_SHARED, 0), *r2 = mode_lock(c, "rw", ANYLOCK_SHARED, 0);
    anylock_lock *w = mode_lock(c, "rw", ANYLOCK_EXCLUSIVE, 0);
    ck_status(anylock_try_acquire(r1), ANYLOCK_OK);
    ck_status(anylock_try_acquire(r2), ANYLOCK_OK);
    ck_status(anylock_try_acquire(w), ANYLOCK_BUSY);
    holder_count hc = {0, 0};
    ck_status(anylock_holders(c, "rw", count_holder, &hc), ANYLOCK_OK);
    ck_assert_uint_eq(hc.n, 2);
    ck_assert_uint_eq(hc.shared, 2);
    anylock_info info;
    ck_status(anylock_inspect(c, "rw", &info), ANYLOCK_OK);
    ck_assert_int_eq(info.mode, ANYLOCK_SHARED);
    ck_assert_uint_eq(info.holders, 2);
    ck_status(anylock_release(r1), ANYLOCK_OK);
    ck_status(anylock_try_acquire(w), ANYLOCK_BUSY);
    ck_status(anylock_release(r2), ANYLOCK_OK);
    ck_status(anylock_try_acquire(w), ANYLOCK_OK);
    ck_status(anylock_try_acquire(r1), ANYLOCK_BUSY);
    /* Reset frees every holder. */
    ck_status(anylock_release(w), ANYLOCK_OK);
    ck_status(anylock_try_acquire(r1), ANYLOCK_OK);
    ck_status(anylock_try_acquire(r2), ANYLOCK_OK);
    ck_status(anylock_reset(c, "rw"), ANYLOCK_OK);
    ck_status(anylock_try_acquire(w), ANYLOCK_OK);
    ck_status(anylock_release(r1), ANYLOCK_NOT_HELD);
    ck_status(anylock_release(r2), ANYLOCK_NOT_HELD);
    ck_status(anylock_release(w), ANYLOCK_OK);
    anylock_lock_free(r1);
    anylock_lock_free(r2);
    anylock_lock_free(w);
    anylock_close(c);
}
END_TEST

/* In a forked child: a new client of url (in *c, which the child keeps
 * until it exits) and its lock on name, waiting for at most timeout; the
 * child exits with 2 if either fails. */
static anylock_lock *child_lock(const char *url, const char *name, double timeout, anylock_client **c)
{
    anylock_lock *l = NULL;
    if (anylock_open(url, c) != ANYLOCK_OK || anylock_lock_new(*c, name, &l) != ANYLOCK_OK ||
        anylock_lock_set_timeout(l, timeout) != ANYLOCK_OK)
        _exit(2);
    return l;
}

/* A process that waits for the exclusive lock (a writer) while readers
 * hold it; reports 'w' when its acquire call is about to start. */
static pid_t start_writer(const char *url, const char *name, int report_fd, double timeout)
{
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        anylock_client *c = NULL;
        anylock_lock *l = child_lock(url, name, timeout, &c);
        if (anylock_lock_set_expires(l, 60) != ANYLOCK_OK)
            _exit(2);
        char w = 'w';
        if (write(report_fd, &w, 1) != 1)
            _exit(3);
        anylock_status st = anylock_acquire(l);
        char r = st == ANYLOCK_OK ? 'y' : 'n';
        if (write(report_fd, &r, 1) != 1)
            _exit(4);
        _exit(st == ANYLOCK_OK && anylock_release(l) == ANYLOCK_OK ? 0 : 5);
    }
    return pid;
}

/* Waits until name has a waiter queued (the writer's marker). */
static void wait_queued(const char *file, int want)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM anylock_waiters WHERE slot != -2"); /* not turn entries */
    for (int i = 0; i < 1000; i++) {
        if (query_int(path_of(file), sql) == want)
            return;
        test_sleep(0.01);
    }
    ck_abort_msg("no waiter queued after 10 s");
}

START_TEST(t_writer_preference)
{
    const char *url = url_of("wp.db", NULL);
    anylock_client *c = open_ok(url);
    anylock_lock *r1 = mode_lock(c, "wp", ANYLOCK_SHARED, 0), *r2 = mode_lock(c, "wp", ANYLOCK_SHARED, 0);
    ck_status(anylock_try_acquire(r1), ANYLOCK_OK);
    int rep[2];
    ck_assert_int_eq(pipe(rep), 0);
    pid_t pid = start_writer(url, "wp", rep[1], 30);
    char b = 0;
    ck_assert_int_eq(read(rep[0], &b, 1), 1);
    wait_queued("wp.db", 1);
    /* A new reader waits behind the writer, though readers hold it. */
    ck_status(anylock_try_acquire(r2), ANYLOCK_BUSY);
    ck_status(anylock_lock_set_timeout(r2, 0.2), ANYLOCK_OK);
    ck_status(anylock_acquire(r2), ANYLOCK_TIMEOUT);
    /* The last reader leaves: the writer gets in, then the reader. */
    ck_status(anylock_release(r1), ANYLOCK_OK);
    ck_assert_int_eq(read(rep[0], &b, 1), 1);
    ck_assert_int_eq(b, 'y');
    child_exits_ok(pid);
    ck_status(anylock_lock_set_timeout(r2, 5), ANYLOCK_OK);
    ck_status(anylock_acquire(r2), ANYLOCK_OK);
    ck_status(anylock_release(r2), ANYLOCK_OK);
    close(rep[0]);
    close(rep[1]);
    anylock_lock_free(r1);
    anylock_lock_free(r2);
    anylock_close(c);
}
END_TEST

/* A writer that dies while waiting holds no reader back: its marker goes
 * with it (at once, as its wake slot is freed by the kernel). */
START_TEST(t_dead_writer_marker)
{
    const char *url = url_of("dw.db", NULL);
    anylock_client *c = open_ok(url);
    anylock_lock *r1 = mode_lock(c, "dw", ANYLOCK_SHARED, 0), *r2 = mode_lock(c, "dw", ANYLOCK_SHARED, 0);
    ck_status(anylock_try_acquire(r1), ANYLOCK_OK);
    int rep[2];
    ck_assert_int_eq(pipe(rep), 0);
    pid_t pid = start_writer(url, "dw", rep[1], 30);
    char b = 0;
    ck_assert_int_eq(read(rep[0], &b, 1), 1);
    wait_queued("dw.db", 1);
    ck_status(anylock_try_acquire(r2), ANYLOCK_BUSY);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    /* At once, not at the marker's own expiry (3 s): the kernel dropped
     * the dead writer's slot lock when it died. */
    ck_status(anylock_try_acquire(r2), ANYLOCK_OK);
    ck_assert_int_eq(query_int(path_of("dw.db"), "SELECT count(*) FROM anylock_waiters"), 0);
    ck_status(anylock_release(r1), ANYLOCK_OK);
    ck_status(anylock_release(r2), ANYLOCK_OK);
    close(rep[0]);
    close(rep[1]);
    anylock_lock_free(r1);
    anylock_lock_free(r2);
    anylock_close(c);
}
END_TEST

/* A share holder killed with SIGKILL frees its share at its expiry. */
START_TEST(t_dead_share_holder)
{
    const char *url = url_of("ds.db", NULL);
    int ready[2];
    ck_assert_int_eq(pipe(ready), 0);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        anylock_client *c = NULL;
        anylock_lock *l = NULL;
        char ok = 'n';
        if (anylock_open(url, &c) == ANYLOCK_OK && anylock_lock_new(c, "ds", &l) == ANYLOCK_OK &&
            anylock_lock_set_mode(l, ANYLOCK_SHARED) == ANYLOCK_OK && anylock_lock_set_expires(l, 1) == ANYLOCK_OK &&
            anylock_acquire(l) == ANYLOCK_OK)
            ok = 'y';
        if (write(ready[1], &ok, 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    char ok = 0;
    ck_assert_int_eq(read(ready[0], &ok, 1), 1);
    ck_assert_int_eq(ok, 'y');
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    double t0 = test_now();
    anylock_client *c = open_ok(url);
    anylock_lock *w = mode_lock(c, "ds", ANYLOCK_EXCLUSIVE, 0);
    ck_status(anylock_try_acquire(w), ANYLOCK_BUSY);
    ck_status(anylock_lock_set_timeout(w, 10), ANYLOCK_OK);
    ck_status(anylock_acquire(w), ANYLOCK_OK);
    ck_assert_msg(test_now() - t0 < 6 * scale(), "waited %.3f s for a 1 s share", test_now() - t0);
    ck_status(anylock_release(w), ANYLOCK_OK);
    close(ready[0]);
    close(ready[1]);
    anylock_lock_free(w);
    anylock_close(c);
}
END_TEST

START_TEST(t_semaphore)
{
    anylock_client *c = open_ok(url_of("sem.db", NULL));
    anylock_lock *s[4];
    for (int i = 0; i < 4; i++)
        s[i] = mode_lock(c, "pool", ANYLOCK_SEMAPHORE, 3);
    for (int i = 0; i < 3; i++)
        ck_status(anylock_try_acquire(s[i]), ANYLOCK_OK);
    ck_status(anylock_try_acquire(s[3]), ANYLOCK_BUSY);
    anylock_info info;
    ck_status(anylock_inspect(c, "pool", &info), ANYLOCK_OK);
    ck_assert_int_eq(info.mode, ANYLOCK_SEMAPHORE);
    ck_assert_uint_eq(info.permits, 3);
    ck_assert_uint_eq(info.holders, 3);
    /* Another number of permits, or a plain or shared lock: a conflict. */
    anylock_lock *other = mode_lock(c, "pool", ANYLOCK_SEMAPHORE, 5);
    anylock_lock *plain = mode_lock(c, "pool", ANYLOCK_EXCLUSIVE, 0);
    anylock_lock *shared = mode_lock(c, "pool", ANYLOCK_SHARED, 0);
    ck_status(anylock_try_acquire(other), ANYLOCK_MODE_CONFLICT);
    ck_status(anylock_try_acquire(plain), ANYLOCK_MODE_CONFLICT);
    ck_status(anylock_try_acquire(shared), ANYLOCK_MODE_CONFLICT);
    /* ...and the reverse. */
    anylock_lock *p2 = mode_lock(c, "plain", ANYLOCK_EXCLUSIVE, 0), *s2 = mode_lock(c, "plain", ANYLOCK_SEMAPHORE, 2);
    ck_status(anylock_try_acquire(p2), ANYLOCK_OK);
    ck_status(anylock_try_acquire(s2), ANYLOCK_MODE_CONFLICT);
    /* A waiter gets a freed permit. */
    ck_status(anylock_release(s[0]), ANYLOCK_OK);
    ck_status(anylock_try_acquire(s[3]), ANYLOCK_OK);
    /* Reset frees every holder. */
    ck_status(anylock_reset(c, "pool"), ANYLOCK_OK);
    ck_status(anylock_try_acquire(other), ANYLOCK_OK);
    for (int i = 1; i < 4; i++)
        ck_status(anylock_release(s[i]), ANYLOCK_NOT_HELD);
    ck_status(anylock_release(other), ANYLOCK_OK);
    ck_status(anylock_release(p2), ANYLOCK_OK);
    for (int i = 0; i < 4; i++)
        anylock_lock_free(s[i]);
    anylock_lock_free(other);
    anylock_lock_free(plain);
    anylock_lock_free(shared);
    anylock_lock_free(p2);
    anylock_lock_free(s2);
    anylock_close(c);
}
END_TEST

/* 12 processes on a semaphore of 3: never more than 3 inside, and 3 are
 * reached (in its first round each holder stays until 3 have been inside
 * at once, for at most 10 s, so that slow runs need no luck). */
#define SEM_PROCS 12
#define SEM_ROUNDS 15

typedef struct sem_state {
    int inside, most;
    pthread_mutex_t mu;
} sem_state;

static const char *sem_url;

static int sem_child(int index, void *arg)
{
    (void)index;
    sem_state *ss = arg;
    anylock_client *c = NULL;
    anylock_lock *l = NULL;
    if (anylock_open(sem_url, &c) != ANYLOCK_OK || anylock_lock_new(c, "sem", &l) != ANYLOCK_OK ||
        anylock_lock_set_permits(l, 3) != ANYLOCK_OK || anylock_lock_set_timeout(l, 60) != ANYLOCK_OK ||
        anylock_lock_set_expires(l, 60) != ANYLOCK_OK)
        return 1;
    for (int i = 0; i < SEM_ROUNDS; i++) {
        if (anylock_acquire(l) != ANYLOCK_OK)
            return 2;
        pthread_mutex_lock(&ss->mu);
        int in = ++ss->inside;
        if (in > ss->most)
            ss->most = in;
        pthread_mutex_unlock(&ss->mu);
        test_sleep(0.005);
        for (double until = test_now() + 10 * scale(); i == 0 && test_now() < until; test_sleep(0.001)) {
            pthread_mutex_lock(&ss->mu);
            int three = ss->most >= 3;
            pthread_mutex_unlock(&ss->mu);
            if (three)
                break;
        }
        pthread_mutex_lock(&ss->mu);
        ss->inside--;
        pthread_mutex_unlock(&ss->mu);
        if (anylock_release(l) != ANYLOCK_OK)
            return 3;
    }
    anylock_lock_free(l);
    anylock_close(c);
    return 0;
}

START_TEST(t_semaphore_processes)
{
    sem_url = url_of("semp.db", NULL);
    sem_state *ss = test_shared_alloc(sizeof *ss);
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&ss->mu, &a);
    ck_assert_int_eq(test_fork_n(SEM_PROCS, sem_child, ss, 120), 0);
    ck_assert_int_le(ss->most, 3);
    ck_assert_int_eq(ss->most, 3);
    pthread_mutex_destroy(&ss->mu);
    test_shared_free(ss, sizeof *ss);
}
END_TEST

/* A queue entry left by a dead waiter names a slot that a live waiter (of
 * another name) has taken since: the release must not hand the lock to
 * the dead entry (a ghost holder, forever for a lock without expiry). */
typedef struct ghost_waiter {
    anylock_lock *l;
    anylock_status st;
} ghost_waiter;

static void *ghost_wait(void *p)
{
    ghost_waiter *g = p;
    g->st = anylock_acquire(g->l);
    if (g->st == ANYLOCK_OK)
        anylock_release(g->l);
    return NULL;
}

START_TEST(t_stale_entry_on_reused_slot)
{
    const char *url = url_of("ghost.db", NULL);
    anylock_client *c = open_ok(url), *c2 = open_ok(url);
    anylock_lock *a = NULL, *other = NULL;
    ck_status(anylock_lock_new(c, "g", &a), ANYLOCK_OK);
    ck_status(anylock_lock_set_expires(a, ANYLOCK_FOREVER), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_status(anylock_lock_new(c, "other", &other), ANYLOCK_OK);
    ck_status(anylock_acquire(other), ANYLOCK_OK);
    /* A live waiter for "other", with its slot. */
    ghost_waiter gw = {NULL, ANYLOCK_INTERNAL};
    ck_status(anylock_lock_new(c2, "other", &gw.l), ANYLOCK_OK);
    ck_status(anylock_lock_set_timeout(gw.l, 8), ANYLOCK_OK);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, ghost_wait, &gw), 0);
    wait_queued("ghost.db", 1);
    int64_t slot = query_int(path_of("ghost.db"), "SELECT slot FROM anylock_waiters");
    ck_assert_int_ge(slot, 0);
    /* The dead waiter's entry for "g", naming that slot, not yet expired. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t later = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + 60000;
    char sql[512];
    snprintf(sql, sizeof sql,
             "INSERT INTO anylock_waiters(key, seq, owner, mode, permits, slot, expires_at, expires_ms, meta)"
             " VALUES (CAST('lock:g' AS BLOB), 1, CAST('ghost' AS BLOB), 0, 0, %lld, %lld, 0, NULL)",
             (long long)slot, (long long)later);
    exec_sql(path_of("ghost.db"), sql);
    ck_status(anylock_release(a), ANYLOCK_OK);
    anylock_info info;
    ck_status(anylock_inspect(c, "g", &info), ANYLOCK_OK);
    ck_assert_msg(!info.held, "the lock was handed to a dead waiter's entry (owner \"%s\")", info.owner);
    ck_assert_int_eq(query_int(path_of("ghost.db"), "SELECT count(*) FROM anylock_waiters WHERE owner = X'67686F7374'"),
                     0);
    ck_status(anylock_release(other), ANYLOCK_OK);
    pthread_join(t, NULL);
    ck_status(gw.st, ANYLOCK_OK);
    anylock_lock_free(gw.l);
    anylock_lock_free(a);
    anylock_lock_free(other);
    anylock_close(c2);
    anylock_close(c);
}
END_TEST

/* ---- waking (issue 18) ---- */

/* A released lock is handed to the waiting process and the waiter is woken
 * for it: hand-offs take far less than the 100 ms safety net a missed
 * wake-up would fall back to (median of 15). */
/* (turn=0: every release hands over; holder_turn tests turns.) */
START_TEST(t_handoff_wakes_waiter)
{
    const char *url = url_of("ho.db", "turn=0");
    anylock_client *c = open_ok(url);
    anylock_lock *l = NULL;
    ck_status(anylock_lock_new(c, "ho", &l), ANYLOCK_OK);
    int to_child[2], to_parent[2];
    ck_assert_int_eq(pipe(to_child), 0);
    ck_assert_int_eq(pipe(to_parent), 0);
    double *times = test_shared_alloc(16 * sizeof(double));
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        anylock_client *c2 = NULL;
        anylock_lock *l2 = child_lock(url, "ho", 5, &c2);
        for (int i = 0; i < 15; i++) {
            char b;
            if (read(to_child[0], &b, 1) != 1)
                _exit(3);
            if (write(to_parent[1], "w", 1) != 1)
                _exit(4);
            if (anylock_acquire(l2) != ANYLOCK_OK)
                _exit(5);
            times[i] = test_now() - times[i];
            if (anylock_release(l2) != ANYLOCK_OK || write(to_parent[1], "d", 1) != 1)
                _exit(6);
        }
        _exit(0);
    }
    close(to_child[0]);
    close(to_parent[1]);
    for (int i = 0; i < 15; i++) {
        char b;
        ck_status(anylock_acquire(l), ANYLOCK_OK);
        ck_assert_int_eq(write(to_child[1], "g", 1), 1);
        ck_assert_int_eq(read(to_parent[0], &b, 1), 1);
        wait_queued("ho.db", 1); /* the child found it held and waits */
        times[i] = test_now();
        ck_status(anylock_release(l), ANYLOCK_OK);
        ck_assert_int_eq(read(to_parent[0], &b, 1), 1);
    }
    child_exits_ok(pid);
    qsort(times, 15, sizeof times[0], cmp_double);
    /* (Under an instrumented build the bound cannot tell a wake-up from
     * the safety net; the plain build's can.) */
    ck_assert_msg(times[7] < 0.03 * scale(), "median hand-off %.1f ms", times[7] * 1000);
    /* The wake file is there, beside the database. */
    ck_assert_int_eq(access(path_of("ho.db-wake"), F_OK), 0);
    test_shared_free(times, 16 * sizeof(double));
    close(to_child[1]);
    close(to_parent[0]);
    anylock_lock_free(l);
    anylock_close(c);
}
END_TEST

/* A holder's turn: a release within it keeps the lock for the holder (a
 * turn entry, no hand-over), which takes it again ahead of the queue and
 * of newcomers; the first waiter takes it when the turn ends, woken for it
 * (its own refresh, every second, would come later).  With turn=0 a release
 * hands over. */
START_TEST(t_holder_turn)
{
    const char *db = path_of("tn.db");
    anylock_client *c = open_ok(url_of("tn.db", "turn=2.5"));
    anylock_lock *l = NULL, *other = NULL;
    ck_status(anylock_lock_new(c, "tn", &l), ANYLOCK_OK);
    ck_status(anylock_lock_new(c, "tn", &other), ANYLOCK_OK);
    double *shared = test_shared_alloc(sizeof(double));
    double before = test_now();
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    double after = test_now();
    char url[1024];
    snprintf(url, sizeof url, "%s", url_of("tn.db", NULL));
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        anylock_client *c2 = NULL;
        anylock_lock *l2 = child_lock(url, "tn", 8, &c2);
        if (anylock_acquire(l2) != ANYLOCK_OK)
            _exit(2);
        *shared = test_now();
        _exit(anylock_release(l2) == ANYLOCK_OK ? 0 : 3);
    }
    wait_queued("tn.db", 1);
    ck_status(anylock_release(l), ANYLOCK_OK);
    /* Free, not handed over: the turn entry keeps it. */
    ck_assert_int_eq(query_int(db, "SELECT count(*) FROM anylock_holders"), 0);
    ck_assert_int_eq(query_int(db, "SELECT count(*) FROM anylock_waiters WHERE slot = -2"), 1);
    ck_status(anylock_try_acquire(other), ANYLOCK_BUSY);
    ck_status(anylock_try_acquire(l), ANYLOCK_OK);
    ck_status(anylock_release(l), ANYLOCK_OK);
    ck_assert_int_eq(query_int(db, "SELECT count(*) FROM anylock_waiters WHERE slot = -2"), 1);
    ck_status(anylock_try_acquire(other), ANYLOCK_BUSY);
    child_exits_ok(pid);
    /* The turn ends 2.5 s after the first acquire (whole ms). */
    ck_assert_msg(*shared >= before + 2.5 - 0.002, "the waiter got in %.3f s into the turn", *shared - before);
    ck_assert_msg(*shared - (after + 2.5) < 0.25 * scale(), "the waiter got in %.3f s after the turn",
                  *shared - (after + 2.5));
    test_shared_free(shared, sizeof(double));
    anylock_lock_free(other);
    anylock_lock_free(l);
    anylock_close(c);

    /* turn=0: the release hands the lock to the waiter (its row, written
     * by the release; it lets go only when told). */
    c = open_ok(url_of("tn.db", "turn=0"));
    ck_status(anylock_lock_new(c, "tn0", &l), ANYLOCK_OK);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    int go[2];
    ck_assert_int_eq(pipe(go), 0);
    fflush(NULL);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        anylock_client *c2 = NULL;
        anylock_lock *l2 = child_lock(url, "tn0", 8, &c2);
        char b;
        if (anylock_acquire(l2) != ANYLOCK_OK)
            _exit(2);
        if (read(go[0], &b, 1) != 1)
            _exit(4);
        _exit(anylock_release(l2) == ANYLOCK_OK ? 0 : 3);
    }
    wait_queued("tn.db", 1);
    ck_status(anylock_release(l), ANYLOCK_OK);
    ck_assert_int_eq(query_int(db, "SELECT count(*) FROM anylock_holders WHERE granted_seq > 0"), 1);
    ck_status(anylock_try_acquire(l), ANYLOCK_BUSY);
    ck_assert_int_eq(write(go[1], "g", 1), 1);
    child_exits_ok(pid);
    close(go[0]);
    close(go[1]);
    anylock_lock_free(l);
    anylock_close(c);
}
END_TEST

/* Many distinct names taken and released leave the file bounded. */
START_TEST(t_file_bounded)
{
    const char *url = url_of("many.db", NULL);
    anylock_client *c = open_ok(url);
    off_t size_at_1000 = 0;
    int names = (int)(20000 / scale());
    for (int i = 0; i < names; i++) {
        char name[32];
        snprintf(name, sizeof name, "name-%d", i);
        anylock_lock *l = NULL;
        ck_status(anylock_lock_new(c, name, &l), ANYLOCK_OK);
        ck_status(anylock_acquire(l), ANYLOCK_OK);
        ck_status(anylock_release(l), ANYLOCK_OK);
        anylock_lock_free(l);
        if (i == 999) {
            struct stat sb;
            ck_assert_int_eq(stat(path_of("many.db"), &sb), 0);
            size_at_1000 = sb.st_size;
        }
    }
    anylock_close(c);
    struct stat sb;
    ck_assert_int_eq(stat(path_of("many.db"), &sb), 0);
    ck_assert_msg(sb.st_size <= size_at_1000 + 64 * 1024, "the file grew from %lld to %lld bytes",
                  (long long)size_at_1000, (long long)sb.st_size);
    ck_assert_int_eq(query_int(path_of("many.db"), "SELECT count(*) FROM anylock_holders"), 0);
    ck_assert_int_eq(query_int(path_of("many.db"), "SELECT count(*) FROM anylock_waiters"), 0);
}
END_TEST

/* ---- filesystems (network filesystems are refused) ---- */

START_TEST(t_filesystem_table)
{
    const char *name = NULL;
    ck_assert_int_eq(sq_fs_judge(0x6969, &name), SQ_FS_REFUSE);
    ck_assert_str_eq(name, "NFS");
    ck_assert_int_eq(sq_fs_judge((long)0xFF534D42L, &name), SQ_FS_REFUSE);
    ck_assert_int_eq(sq_fs_judge((long)(int32_t)0xFF534D42L, &name), SQ_FS_REFUSE); /* sign-extended */
    ck_assert_int_eq(sq_fs_judge((long)0xFE534D42L, &name), SQ_FS_REFUSE);
    ck_assert_int_eq(sq_fs_judge(0x517B, NULL), SQ_FS_REFUSE);
    ck_assert_int_eq(sq_fs_judge(0x01021997, NULL), SQ_FS_REFUSE); /* 9p */
    ck_assert_int_eq(sq_fs_judge(0x00C36400, NULL), SQ_FS_REFUSE); /* ceph */
    ck_assert_int_eq(sq_fs_judge(0x65735546, &name), SQ_FS_WARN);
    ck_assert_str_eq(name, "FUSE");
    ck_assert_int_eq(sq_fs_judge(0xEF53, NULL), SQ_FS_LOCAL);      /* ext4 */
    ck_assert_int_eq(sq_fs_judge(0x01021994, NULL), SQ_FS_LOCAL);  /* tmpfs */
    ck_assert_int_eq(sq_fs_judge(0x9123683E, NULL), SQ_FS_LOCAL);  /* btrfs */
    ck_assert_int_eq(sq_fs_judge(0x58465342, NULL), SQ_FS_LOCAL);  /* xfs */
    ck_assert_int_eq(sq_fs_judge(0x794C7630, NULL), SQ_FS_LOCAL);  /* overlayfs */
    /* The filesystem the test runs on, and tmpfs, are accepted. */
    struct statfs fs;
    ck_assert_int_eq(statfs(tdir, &fs), 0);
    ck_assert_int_ne(sq_fs_judge((long)fs.f_type, NULL), SQ_FS_REFUSE);
    if (statfs("/dev/shm", &fs) == 0 && sq_fs_judge((long)fs.f_type, NULL) == SQ_FS_LOCAL) {
        char shm[512];
        snprintf(shm, sizeof shm, "/dev/shm/anylock-test-%ld", (long)getpid());
        ck_assert_int_eq(mkdir(shm, 0700), 0);
        char url[600];
        snprintf(url, sizeof url, "sqlite:///%s/x.db", shm);
        anylock_client *c = open_ok(url);
        anylock_close(c);
        test_rmtree(shm);
    }
}
END_TEST

static Suite *sqlite_suite(void)
{
    Suite *s = suite_create("sqlite");
    test_case tests[] = {
        {"url_forms", t_url_forms},
        {"new_file_mode_and_schema", t_new_file_mode_and_schema},
        {"open_race", t_open_race},
        {"missing_directory", t_missing_directory},
        {"read_only_directory", t_read_only_directory},
        {"not_a_database", t_not_a_database},
        {"corrupt_database", t_corrupt_database},
        {"foreign_database", t_foreign_database},
        {"locked_by_another_program", t_locked_by_another_program},
        {"sigkilled_holder", t_sigkilled_holder},
        {"wait_without_inotify", t_wait_without_inotify},
        {"reboot_drops_expiring_rows", t_reboot_drops_expiring_rows},
        {"expired_rows_cleaned", t_expired_rows_cleaned},
        {"prefix_is_literal", t_prefix_is_literal},
        {"features", t_features},
        {"metadata", t_metadata},
        {"granted_at_after_long_wait", t_granted_at_after_long_wait},
        {"acquire_bounded_while_write_locked", t_acquire_bounded_while_write_locked},
        {"other_calls_bounded_by_busy_timeout", t_other_calls_bounded_by_busy_timeout},
        {"owner_compared_whole", t_owner_compared_whole},
        {"token_counter", t_token_counter},
        {"token_order_across_processes", t_token_order_across_processes},
        {"migrate_from_v1", t_migrate_from_v1},
        {"shared_and_exclusive", t_shared_and_exclusive},
        {"writer_preference", t_writer_preference},
        {"dead_writer_marker", t_dead_writer_marker},
        {"dead_share_holder", t_dead_share_holder},
        {"semaphore", t_semaphore},
        {"semaphore_processes", t_semaphore_processes},
        {"stale_entry_on_reused_slot", t_stale_entry_on_reused_slot},
        {"handoff_wakes_waiter", t_handoff_wakes_waiter},
        {"holder_turn", t_holder_turn},
        {"file_bounded", t_file_bounded},
        {"filesystem_table", t_filesystem_table},
    };
    add_test_cases(s, tests, sizeof tests / sizeof tests[0], setup, teardown, 120);
    return s;
}

static char dir[512];
static char url[1024];

int main(void)
{
    if (test_tmpdir(dir, sizeof dir)) {
        fprintf(stderr, "cannot make a temporary directory\n");
        return 1;
    }
    snprintf(url, sizeof url, "sqlite:///%s/locks.db", dir);
    static conformance_config cfg = {
        .label = "sqlite",
        .excludes = 1,
        .cross_process = 1,
        .can_list = 1,
        .can_reset_all = 1,
        .expiry = 0.5,
        .slack = 0.3,
        .processes = 16,
        /* A waiter is woken by the releaser; without that wake-up it would
         * find the release only at its 100 ms safety-net look. */
        .wake_within = 0.06,
    };
    cfg.url = url;
    int rc = conformance_run(conformance_suite(&cfg), sqlite_suite());
    test_rmtree(dir);
    return rc;
}
