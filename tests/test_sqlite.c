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
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "anylock.h"
#include "conformance.h"
#include "harness.h"

#include "check_status.h"

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

static anylock_client *open_ok(const char *url)
{
    anylock_client *c = NULL;
    anylock_status st = anylock_open(url, &c);
    ck_assert_msg(st == ANYLOCK_OK, "open %s: %s (%s)", url, anylock_status_name(st), anylock_errmsg(c));
    return c;
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
    int status = 0;
    waitpid(pid, &status, 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "waiter exited with %d", WEXITSTATUS(status));
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

static Suite *sqlite_suite(void)
{
    Suite *s = suite_create("sqlite");
    struct {
        const char *name;
        const TTest *test;
    } tests[] = {
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
    };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        TCase *tc = tcase_create(tests[i].name);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, tests[i].test);
        suite_add_tcase(s, tc);
    }
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
    };
    cfg.url = url;
    int rc = conformance_run(conformance_suite(&cfg), sqlite_suite());
    test_rmtree(dir);
    return rc;
}
