/*
 * sqlite:///relative/path.db and sqlite:////absolute/path.db: locks kept in
 * one SQLite database file, shared by every process of one host.  No server
 * is needed, which makes this the embedded default.
 *
 * The database holds one row per held lock (key, owner id, expiry) in a
 * WITHOUT ROWID table keyed by the lock's key, stored as a BLOB so that keys
 * compare byte by byte and prefix ranges are exact.  Every operation is one
 * short transaction (BEGIN IMMEDIATE, or a single conditional statement).
 *
 * Expiry.  Expiry times are milliseconds on CLOCK_MONOTONIC, which every
 * process of a Linux host shares but which restarts at boot.  The database
 * remembers the boot id (/proc/sys/kernel/random/boot_id) it was last used
 * under; the first client opened after a reboot drops every row that had an
 * expiry, since its holder died with the old boot and its expiry time means
 * nothing on the new clock.  Rows without expiry stay, as they would in a
 * persistent server, until released or reset.
 *
 * Threads.  SQLite connections are not shared between threads: each client
 * keeps a small pool, and a call takes a connection for its own use (opening
 * a new one when the pool is empty).  A waiting acquire keeps its connection
 * but no transaction, so other threads and processes go on working.
 *
 * Waiting.  No server can notify a waiter.  It tells a change by PRAGMA
 * data_version, which changes when any other connection commits and costs no
 * disk I/O in WAL mode (it reads the shared-memory WAL index), and it sleeps
 * until one: on Linux on an inotify watch of the -wal file, which every
 * commit writes; elsewhere with anylock_backoff_* (short first retry, capped
 * at poll_max, jittered).  It tries the lock again when a change leaves the
 * row free or when the holder's expiry passed.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#ifdef __linux__
#include <sys/inotify.h>
#endif
#include <time.h>
#include <unistd.h>

#include "builtin.h"

/* PRAGMA application_id of an anylock database: "ANYL". */
#define SQ_APPLICATION_ID 0x414E594C
/* PRAGMA user_version: the schema version this code writes and reads. */
#define SQ_SCHEMA_VERSION 1

#define SQ_DEFAULT_BUSY_MS 5000
#define SQ_DEFAULT_POLL_MAX_MS 2
/* Idle connections kept per client; more are closed when returned. */
#define SQ_POOL_MAX 4
/* How many expired rows each acquire deletes, so that the file stays
 * bounded however many distinct names come and go. */
#define SQ_SWEEP_LIMIT "16"

enum {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_GET,
    S_PUT,
    S_SWEEP,
    S_RELEASE,
    S_EXTEND,
    S_RESET,
    S_LIST,
    S_COUNT_PREFIX,
    S_DELETE_PREFIX,
    S_DATA_VERSION,
    S_COUNT_
};

/* Keys are BLOBs: prefix ranges are byte ranges, whatever the encoding. */
static const char *const sq_sql[S_COUNT_] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_GET] = "SELECT owner, expires_at FROM anylock_locks WHERE key = ?1",
    [S_PUT] = "INSERT OR REPLACE INTO anylock_locks(key, owner, expires_at) VALUES (?1, ?2, ?3)",
    [S_SWEEP] = "DELETE FROM anylock_locks WHERE key IN (SELECT key FROM anylock_locks"
                " WHERE expires_at > 0 AND expires_at <= ?1 LIMIT " SQ_SWEEP_LIMIT ")",
    [S_RELEASE] = "DELETE FROM anylock_locks WHERE key = ?1 AND owner = ?2 AND (expires_at = 0 OR expires_at > ?3)",
    [S_EXTEND] = "UPDATE anylock_locks SET expires_at = ?4 WHERE key = ?1 AND owner = ?2 AND expires_at > ?3",
    [S_RESET] = "DELETE FROM anylock_locks WHERE key = ?1",
    [S_LIST] = "SELECT key, owner, expires_at FROM anylock_locks WHERE key >= ?1"
               " AND substr(key, 1, length(?1)) = ?1 AND (expires_at = 0 OR expires_at > ?2) ORDER BY key",
    [S_COUNT_PREFIX] = "SELECT count(*) FROM anylock_locks WHERE key >= ?1"
                       " AND substr(key, 1, length(?1)) = ?1 AND (expires_at = 0 OR expires_at > ?2)",
    [S_DELETE_PREFIX] = "DELETE FROM anylock_locks WHERE key >= ?1 AND substr(key, 1, length(?1)) = ?1",
    [S_DATA_VERSION] = "PRAGMA data_version",
};

typedef struct sq_conn {
    struct sq_conn *next;
    sqlite3 *db;
    sqlite3_stmt *stmt[S_COUNT_];
    int64_t busy_ms;
    int64_t busy_start; /* monotonic ns when the current busy wait began */
} sq_conn;

typedef struct sq_client {
    pthread_mutex_t mu; /* guards idle and nidle */
    int mu_ready;
    char *path;
    int64_t busy_ms;
    int64_t poll_max_ms;
    sq_conn *idle;
    size_t nidle;
} sq_client;

static const char *const sq_params[] = {"busy_timeout", "poll_max", NULL};

/* ---- clock ---- */

/* Rows store expiry times as whole milliseconds on the monotonic clock.  A
 * new expiry is counted from the next millisecond (rounded up) and a row is
 * live while the current millisecond (rounded down) is before it, so a lock
 * never lives less than its expiry. */
static int64_t now_ms_floor(void)
{
    return anylock_now_ns() / 1000000;
}

static int64_t now_ms_ceil(void)
{
    return (anylock_now_ns() + 999999) / 1000000;
}

/* ---- errors ---- */

/* Maps a failed SQLite call to a status with a message naming the file. */
static anylock_status sq_fail(anylock_op *op, const sq_client *sc, sqlite3 *db, int rc, const char *what)
{
    const char *path = sc->path ? sc->path : "";
    const char *detail = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    anylock_status st;
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return anylock_op_error(op, ANYLOCK_IO,
                                "sqlite %.200s: %s: the database stayed locked by another program for longer "
                                "than busy_timeout (%s)",
                                path, what, detail);
    case SQLITE_NOTADB:
        return anylock_op_error(op, ANYLOCK_STORE, "sqlite %.200s: %s: the file is not a SQLite database (%s)",
                                path, what, detail);
    case SQLITE_CORRUPT:
        return anylock_op_error(op, ANYLOCK_STORE, "sqlite %.200s: %s: the database file is corrupt (%s)", path,
                                what, detail);
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
    case SQLITE_CANTOPEN: /* the file exists (sq_open made it): its permissions forbid */
        st = ANYLOCK_ACCESS;
        break;
    case SQLITE_NOMEM:
        return anylock_op_error(op, ANYLOCK_NOMEM, "sqlite %.200s: %s: out of memory", path, what);
    case SQLITE_IOERR:
        st = ANYLOCK_IO;
        break;
    default:
        st = ANYLOCK_STORE;
        break;
    }
    return anylock_op_error(op, st, "sqlite %.200s: %s: %s", path, what, detail);
}

/* ---- connections ---- */

/* SQLite's own busy handler sleeps whole milliseconds, growing to 100 ms;
 * lock transactions last microseconds, so shorter sleeps keep contended
 * throughput up.  It gives up after busy_timeout. */
static int busy_handler(void *arg, int count)
{
    sq_conn *c = arg;
    int64_t now = anylock_now_ns();
    if (count == 0)
        c->busy_start = now;
    if (now - c->busy_start >= c->busy_ms * 1000000)
        return 0;
    int64_t us = 50 << (count < 5 ? count : 5); /* 50 us .. 1.6 ms */
    if (us > 2000)
        us = 2000;
    us = us / 2 + (int64_t)((uint64_t)now % (uint64_t)(us + 1)); /* jitter: half to 1.5 times */
    struct timespec ts = {0, (long)(us * 1000)};
    nanosleep(&ts, NULL);
    return 1;
}

static void conn_close(sq_conn *c)
{
    if (!c)
        return;
    for (int i = 0; i < S_COUNT_; i++)
        sqlite3_finalize(c->stmt[i]);
    sqlite3_close(c->db);
    free(c);
}

/* Runs one SQL text with no result rows wanted. */
static int exec(sq_conn *c, const char *sql)
{
    return sqlite3_exec(c->db, sql, NULL, NULL, NULL);
}

/* Runs a one-value query into *out (0 when there is no row). */
static int query_int(sq_conn *c, const char *sql, int64_t *out)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(c->db, sql, -1, &s, NULL);
    *out = 0;
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int64(s, 0);
            rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(s);
    return rc;
}

/* The host's boot id, or "" where the system has none. */
static void boot_id(char out[64])
{
    out[0] = 0;
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
    if (!f)
        return;
    if (!fgets(out, 64, f))
        out[0] = 0;
    fclose(f);
    out[strcspn(out, "\n")] = 0;
}

/* Reads the boot id the database was last used under: 1 if it is this
 * boot's, 0 if not, or a negative SQLite code. */
static int same_boot(sq_conn *c, const char *boot)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(c->db, "SELECT value FROM anylock_meta WHERE name = 'boot_id'", -1, &s, NULL);
    int same = 0;
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
        same = rc == SQLITE_ROW && !strcmp((const char *)sqlite3_column_text(s, 0), boot);
        rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    sqlite3_finalize(s);
    return rc != SQLITE_OK ? -rc : same;
}

/* Checks, inside the transaction already begun, that the database is
 * anylock's, of a version this code knows, and of this boot.  With write,
 * also creates the schema in an empty database and forgets the rows of an
 * older boot; without, *needs_write says whether that is needed. */
static anylock_status schema_check(anylock_op *op, const sq_client *sc, sq_conn *c, int write, int *needs_write)
{
    int64_t app = 0, version = 0, objects = 0;
    int rc;
    *needs_write = 0;
    if ((rc = query_int(c, "PRAGMA application_id", &app)) != SQLITE_OK ||
        (rc = query_int(c, "PRAGMA user_version", &version)) != SQLITE_OK ||
        (rc = query_int(c, "SELECT count(*) FROM sqlite_master", &objects)) != SQLITE_OK)
        return sq_fail(op, sc, c->db, rc, "reading the schema");
    if (app == 0 && version == 0 && objects == 0) {
        /* A new (empty) database: make it ours. */
        if (!write) {
            *needs_write = 1;
            return ANYLOCK_OK;
        }
        rc = exec(c, "CREATE TABLE anylock_locks ("
                     " key BLOB PRIMARY KEY NOT NULL,"
                     " owner TEXT NOT NULL,"
                     " expires_at INTEGER NOT NULL"
                     ") WITHOUT ROWID;"
                     "CREATE INDEX anylock_locks_expiry ON anylock_locks(expires_at) WHERE expires_at > 0;"
                     "CREATE TABLE anylock_meta (name TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);"
                     "PRAGMA application_id = 1095653708;" /* SQ_APPLICATION_ID */
                     "PRAGMA user_version = 1;");          /* SQ_SCHEMA_VERSION */
        if (rc != SQLITE_OK)
            return sq_fail(op, sc, c->db, rc, "creating the schema");
    } else if (app != SQ_APPLICATION_ID) {
        return anylock_op_error(op, ANYLOCK_STORE,
                                "sqlite %.200s: the file is a SQLite database of another application "
                                "(not created by anylock); refusing to use it",
                                sc->path);
    } else if (version > SQ_SCHEMA_VERSION || version < 1) {
        return anylock_op_error(op, ANYLOCK_STORE,
                                "sqlite %.200s: schema version %lld is not one this anylock knows (%d); "
                                "a newer anylock made it",
                                sc->path, (long long)version, SQ_SCHEMA_VERSION);
    }
    /* Migrations from older schema versions go here (needing write). */

    /* A reboot restarts the monotonic clock: rows with an expiry from an
     * older boot are dead and their times meaningless. */
    char boot[64];
    boot_id(boot);
    int same = same_boot(c, boot);
    if (same < 0)
        return sq_fail(op, sc, c->db, -same, "checking the boot id");
    if (same)
        return ANYLOCK_OK;
    if (!write) {
        *needs_write = 1;
        return ANYLOCK_OK;
    }
    sqlite3_stmt *s = NULL;
    rc = exec(c, "DELETE FROM anylock_locks WHERE expires_at > 0");
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(c->db, "INSERT OR REPLACE INTO anylock_meta(name, value) VALUES ('boot_id', ?1)", -1,
                                &s, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(s, 1, boot, -1, SQLITE_TRANSIENT);
        rc = sqlite3_step(s);
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_OK)
        return sq_fail(op, sc, c->db, rc, "recording the boot id");
    return ANYLOCK_OK;
}

/* Checks the database in a read transaction, which works even while
 * another process writes; only a new file or a new boot takes the write
 * lock, in an IMMEDIATE transaction that checks again, so that processes
 * opening a new file at once agree. */
static anylock_status schema_setup(anylock_op *op, const sq_client *sc, sq_conn *c)
{
    for (int write = 0; write < 2; write++) {
        int rc = exec(c, write ? "BEGIN IMMEDIATE" : "BEGIN");
        if (rc != SQLITE_OK)
            return sq_fail(op, sc, c->db, rc, "opening the database");
        int needs_write = 0;
        anylock_status st = schema_check(op, sc, c, write, &needs_write);
        if (st == ANYLOCK_OK && (rc = exec(c, "COMMIT")) != SQLITE_OK)
            st = sq_fail(op, sc, c->db, rc, "creating the schema");
        if (st != ANYLOCK_OK) {
            exec(c, "ROLLBACK");
            return st;
        }
        if (!needs_write)
            return ANYLOCK_OK;
    }
    return ANYLOCK_OK;
}

/* Switches the database to WAL (persistent in the file), in which readers
 * never block the writer and PRAGMA data_version is cheap. */
static anylock_status wal_setup(anylock_op *op, const sq_client *sc, sq_conn *c)
{
    int64_t start = anylock_now_ns();
    for (;;) {
        sqlite3_stmt *s = NULL;
        int rc = sqlite3_prepare_v2(c->db, "PRAGMA journal_mode = WAL", -1, &s, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_step(s);
        int wal = rc == SQLITE_ROW && !sqlite3_stricmp((const char *)sqlite3_column_text(s, 0), "wal");
        sqlite3_finalize(s);
        if (wal)
            return ANYLOCK_OK;
        if (rc == SQLITE_ROW)
            return anylock_op_error(op, ANYLOCK_STORE_UNSAFE,
                                    "sqlite %.200s: cannot switch the database to WAL mode "
                                    "(is it on a network filesystem?)",
                                    sc->path);
        /* Changing the journal mode may fail BUSY without calling the busy
         * handler while others read; retry within busy_timeout. */
        if ((rc & 0xff) != SQLITE_BUSY || anylock_now_ns() - start >= sc->busy_ms * 1000000)
            return sq_fail(op, sc, c->db, rc, "switching to WAL mode");
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

/* Opens a new connection; with setup, also creates or checks the schema. */
static anylock_status conn_open(anylock_op *op, sq_client *sc, int setup, sq_conn **out)
{
    *out = NULL;
    sq_conn *c = calloc(1, sizeof *c);
    if (!c)
        return ANYLOCK_NOMEM;
    c->busy_ms = sc->busy_ms;
    /* No CREATE: the file was made (mode 0600) by sq_open. */
    int rc = sqlite3_open_v2(sc->path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        anylock_status st = sq_fail(op, sc, c->db, rc, "opening the database");
        conn_close(c);
        return st;
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_handler(c->db, busy_handler, c);
    anylock_status st = ANYLOCK_OK;
    if (sqlite3_db_readonly(c->db, "main") == 1)
        st = anylock_op_error(op, ANYLOCK_ACCESS, "sqlite %.200s: the database file is not writable", sc->path);
    if (st == ANYLOCK_OK && setup)
        st = schema_setup(op, sc, c);
    if (st == ANYLOCK_OK && setup)
        st = wal_setup(op, sc, c);
    /* In WAL mode, NORMAL is safe from corruption; a lock table need not
     * survive a power loss (the next boot drops expiring rows anyway). */
    if (st == ANYLOCK_OK && (rc = exec(c, "PRAGMA synchronous = NORMAL")) != SQLITE_OK)
        st = sq_fail(op, sc, c->db, rc, "configuring the connection");
    for (int i = 0; st == ANYLOCK_OK && i < S_COUNT_; i++) {
        rc = sqlite3_prepare_v3(c->db, sq_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &c->stmt[i], NULL);
        if (rc != SQLITE_OK)
            st = sq_fail(op, sc, c->db, rc, "preparing statements");
    }
    if (st != ANYLOCK_OK) {
        conn_close(c);
        return st;
    }
    *out = c;
    return ANYLOCK_OK;
}

static anylock_status conn_get(anylock_op *op, sq_client *sc, sq_conn **out)
{
    pthread_mutex_lock(&sc->mu);
    sq_conn *c = sc->idle;
    if (c) {
        sc->idle = c->next;
        sc->nidle--;
    }
    pthread_mutex_unlock(&sc->mu);
    if (c) {
        *out = c;
        return ANYLOCK_OK;
    }
    return conn_open(op, sc, 0, out);
}

static void conn_put(sq_client *sc, sq_conn *c)
{
    if (!c)
        return;
    /* Never pool a connection left inside a transaction by a failure. */
    if (!sqlite3_get_autocommit(c->db))
        exec(c, "ROLLBACK");
    pthread_mutex_lock(&sc->mu);
    if (sc->nidle < SQ_POOL_MAX) {
        c->next = sc->idle;
        sc->idle = c;
        sc->nidle++;
        c = NULL;
    }
    pthread_mutex_unlock(&sc->mu);
    conn_close(c);
}

/* Steps a statement that returns no rows and resets it. */
static int step_done(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

static void bind_key(sqlite3_stmt *s, int i, const anylock_op *op)
{
    sqlite3_bind_blob(s, i, op->key, (int)op->key_len, SQLITE_STATIC);
}

static void bind_prefix(sqlite3_stmt *s, int i, const anylock_op *op)
{
    /* A zero-length blob binds as X'' (not NULL) only with a non-NULL
     * pointer. */
    sqlite3_bind_blob(s, i, op->prefix_len ? op->prefix : "", (int)op->prefix_len, SQLITE_STATIC);
}

/* Reads op->key's row: 1 with owner/expires_at filled if a live row exists,
 * 0 if none or expired, or a negative SQLite code. */
static int get_row(sq_conn *c, const anylock_op *op, int64_t now, char owner[ANYLOCK_ID_MAX + 1],
                   int64_t *expires_at)
{
    sqlite3_stmt *s = c->stmt[S_GET];
    bind_key(s, 1, op);
    int rc = sqlite3_step(s);
    int found = 0;
    if (rc == SQLITE_ROW) {
        *expires_at = sqlite3_column_int64(s, 1);
        const unsigned char *o = sqlite3_column_text(s, 0);
        snprintf(owner, ANYLOCK_ID_MAX + 1, "%s", o ? (const char *)o : "");
        found = *expires_at == 0 || *expires_at > now;
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_OK;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc != SQLITE_OK ? -rc : found;
}

/* ---- slots ---- */

static anylock_status sq_open(anylock_op *op, const anylock_url *url)
{
    sq_client *sc = op->state;
    if (pthread_mutex_init(&sc->mu, NULL))
        return ANYLOCK_NOMEM;
    sc->mu_ready = 1;
    if (url->nhosts)
        return anylock_op_error(op, ANYLOCK_URL_BAD_HOST,
                                "sqlite:// takes no host: use sqlite:///relative/path.db or "
                                "sqlite:////absolute/path.db");
    /* As SQLAlchemy: the first '/' separates the empty authority from a
     * relative path, a second one makes the path absolute. */
    const char *path = url->path[0] == '/' ? url->path + 1 : url->path;
    if (!path[0] || path[strlen(path) - 1] == '/')
        return anylock_op_error(op, ANYLOCK_URL_BAD_PATH,
                                "sqlite:// needs a file path: sqlite:///relative/path.db or "
                                "sqlite:////absolute/path.db");
    if (!strcmp(path, ":memory:"))
        return anylock_op_error(op, ANYLOCK_URL_BAD_PATH,
                                "sqlite:// needs a file shared by processes; for locks inside one "
                                "process use memory://");
    if (!(sc->path = strdup(path)))
        return ANYLOCK_NOMEM;
    struct stat sb;
    if (stat(sc->path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return anylock_op_error(op, ANYLOCK_URL_BAD_PATH, "sqlite %.200s: is a directory, not a database file",
                                sc->path);
    anylock_status st = anylock_url_param_ms(op, url, "busy_timeout", SQ_DEFAULT_BUSY_MS, &sc->busy_ms);
    if (st == ANYLOCK_OK)
        st = anylock_url_param_ms(op, url, "poll_max", SQ_DEFAULT_POLL_MAX_MS, &sc->poll_max_ms);
    if (st != ANYLOCK_OK)
        return st;
    if (sc->poll_max_ms < 1)
        sc->poll_max_ms = 1;

    /* Create a missing file ourselves, readable by its owner only whatever
     * the umask; SQLite then gives its -wal and -shm files the same mode. */
    int fd = open(sc->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        if (fchmod(fd, 0600))
            st = anylock_op_error(op, ANYLOCK_ACCESS, "sqlite %.200s: cannot set mode 0600: %s", sc->path,
                                  strerror(errno));
        close(fd);
        if (st != ANYLOCK_OK)
            return st;
    } else if (errno != EEXIST) {
        int e = errno;
        anylock_status est = e == EACCES || e == EPERM || e == EROFS ? ANYLOCK_ACCESS : ANYLOCK_CONNECT;
        return anylock_op_error(op, est, "sqlite %.200s: cannot create the database file: %s", sc->path,
                                strerror(e));
    }

    sq_conn *c;
    st = conn_open(op, sc, 1, &c);
    if (st == ANYLOCK_OK)
        conn_put(sc, c);
    return st;
}

static void sq_close(anylock_op *op)
{
    sq_client *sc = op->state;
    while (sc->idle) {
        sq_conn *c = sc->idle;
        sc->idle = c->next;
        conn_close(c);
    }
    if (sc->mu_ready)
        pthread_mutex_destroy(&sc->mu);
    free(sc->path);
}

/* One attempt in one IMMEDIATE transaction: OK, ALREADY_HELD, BUSY (with
 * the holder's expiry in *holder_expiry), or an error. */
static anylock_status try_once(anylock_op *op, sq_client *sc, sq_conn *c, int64_t *holder_expiry)
{
    int rc = step_done(c->stmt[S_BEGIN]);
    if (rc != SQLITE_OK)
        return sq_fail(op, sc, c->db, rc, "acquire");
    int64_t now = now_ms_floor();
    char owner[ANYLOCK_ID_MAX + 1];
    int64_t expires_at = 0;
    anylock_status st = ANYLOCK_OK;
    int found = get_row(c, op, now, owner, &expires_at);
    if (found < 0) {
        st = sq_fail(op, sc, c->db, -found, "acquire");
    } else if (found && !strcmp(owner, op->id)) {
        st = anylock_op_error(op, ANYLOCK_ALREADY_HELD, "lock \"%.64s\" is already held by this owner id",
                              op->name);
    } else if (found) {
        *holder_expiry = expires_at;
        st = ANYLOCK_BUSY;
    } else {
        sqlite3_stmt *s = c->stmt[S_PUT];
        bind_key(s, 1, op);
        sqlite3_bind_text(s, 2, op->id, (int)op->id_len, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, op->expires_ms ? now_ms_ceil() + op->expires_ms : 0);
        rc = step_done(s);
        if (rc == SQLITE_OK) {
            sqlite3_bind_int64(c->stmt[S_SWEEP], 1, now);
            rc = step_done(c->stmt[S_SWEEP]);
        }
        if (rc == SQLITE_OK)
            rc = step_done(c->stmt[S_COMMIT]);
        if (rc != SQLITE_OK)
            st = sq_fail(op, sc, c->db, rc, "acquire");
    }
    if (!sqlite3_get_autocommit(c->db))
        step_done(c->stmt[S_ROLLBACK]);
    return st;
}

static int data_version(sq_conn *c, int64_t *v)
{
    sqlite3_stmt *s = c->stmt[S_DATA_VERSION];
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *v = sqlite3_column_int64(s, 0);
        rc = SQLITE_OK;
    }
    sqlite3_reset(s);
    return rc;
}

/* Opens an inotify descriptor watching the database's WAL file, to which
 * every commit by any process writes: a waiter then sleeps until a commit
 * instead of polling.  -1 where that is not available (not Linux, no WAL
 * file yet, or the per-user inotify limit reached); the waiter then polls. */
static int wal_watch(sq_conn *c)
{
#ifdef __linux__
    const char *db = sqlite3_db_filename(c->db, "main");
    if (!db || !db[0])
        return -1;
    size_t n = strlen(db);
    char *wal = malloc(n + 5);
    if (!wal)
        return -1;
    memcpy(wal, db, n);
    memcpy(wal + n, "-wal", 5);
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd >= 0 && inotify_add_watch(fd, wal, IN_MODIFY) < 0) {
        close(fd);
        fd = -1;
    }
    free(wal);
    return fd;
#else
    (void)c;
    return -1;
#endif
}

/* Sleeps until the watch fires or until wake (monotonic ns); 1 if it
 * fired. */
static int wal_wait(int fd, int64_t wake)
{
    int64_t left = wake - anylock_now_ns();
    if (left <= 0)
        return 0;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, (int)((left + 999999) / 1000000)) <= 0)
        return 0;
    char buf[4096];
    while (read(fd, buf, sizeof buf) > 0)
        ;
    return 1;
}

/* With a watch, how long a waiter sleeps at most without an event: a
 * safety net only, since every commit writes the WAL file. */
#define SQ_WATCH_SAFETY_NS (100 * (int64_t)1000000)

static anylock_status sq_acquire(anylock_op *op)
{
    sq_client *sc = op->state;
    sq_conn *c;
    anylock_status st = conn_get(op, sc, &c);
    if (st != ANYLOCK_OK)
        return st;
    int watch = -2; /* -2: not tried yet; -1: unavailable, poll */
    /* A commit writes its WAL frames first and publishes them in the
     * shared-memory index after, which makes no event: when an event shows
     * no change yet, look again after 1, 2, 4 and 8 ms. */
    int64_t settle_ns = 0;
    anylock_backoff b;
    anylock_backoff_init(&b, 1, sc->poll_max_ms);
    for (;;) {
        int64_t version = 0, holder_expiry = 0;
        /* Read the version before trying, so that a release committed right
         * after our attempt is seen as a change. */
        int rc = data_version(c, &version);
        if (rc != SQLITE_OK) {
            st = sq_fail(op, sc, c->db, rc, "acquire");
            break;
        }
        st = try_once(op, sc, c, &holder_expiry);
        if (st != ANYLOCK_BUSY || op->deadline == 0)
            break;
        if (watch == -2)
            watch = wal_watch(c);
        /* Wait, holding no transaction, for a commit by someone else that
         * leaves the row free, or for the holder's expiry. */
        for (;;) {
            int64_t now = anylock_now_ns();
            if (op->deadline != ANYLOCK_DEADLINE_NEVER && now >= op->deadline) {
                st = ANYLOCK_TIMEOUT;
                goto out;
            }
            int64_t now_version = 0;
            rc = data_version(c, &now_version);
            if (rc != SQLITE_OK) {
                st = sq_fail(op, sc, c->db, rc, "acquire");
                goto out;
            }
            if (holder_expiry && now / 1000000 >= holder_expiry)
                break;
            if (now_version != version) {
                /* Something changed: look (reading only, so waiters do not
                 * queue for the write lock) before trying again. */
                version = now_version;
                char owner[ANYLOCK_ID_MAX + 1];
                int64_t expires_at = 0;
                int found = get_row(c, op, now / 1000000, owner, &expires_at);
                if (found < 0) {
                    st = sq_fail(op, sc, c->db, -found, "acquire");
                    goto out;
                }
                if (!found || !strcmp(owner, op->id))
                    break;
                holder_expiry = expires_at;
                anylock_backoff_init(&b, 1, sc->poll_max_ms);
            }
            if (watch >= 0) {
                int64_t wake = now + SQ_WATCH_SAFETY_NS;
                if (holder_expiry && holder_expiry * 1000000 < wake)
                    wake = holder_expiry * 1000000;
                if (settle_ns && now + settle_ns < wake)
                    wake = now + settle_ns;
                if (op->deadline < wake)
                    wake = op->deadline;
                if (wal_wait(watch, wake))
                    settle_ns = 1000000;
                else if (settle_ns)
                    settle_ns = settle_ns >= 8000000 ? 0 : settle_ns * 2;
            } else if (!anylock_backoff_wait(&b, op->deadline)) {
                st = ANYLOCK_TIMEOUT;
                goto out;
            }
        }
    }
out:
    if (watch >= 0)
        close(watch);
    conn_put(sc, c);
    return st;
}

/* Why op->id does not hold op->key, for a NOT_HELD or NOT_EXPIRABLE answer
 * after a conditional statement changed nothing. */
static anylock_status not_held(anylock_op *op, sq_client *sc, sq_conn *c, int extending)
{
    char owner[ANYLOCK_ID_MAX + 1];
    int64_t expires_at = 0;
    int found = get_row(c, op, now_ms_floor(), owner, &expires_at);
    if (found < 0)
        return sq_fail(op, sc, c->db, -found, extending ? "extend" : "release");
    if (found && !strcmp(owner, op->id) && extending && expires_at == 0)
        return ANYLOCK_NOT_EXPIRABLE;
    return anylock_op_error(op, ANYLOCK_NOT_HELD, "lock \"%.64s\" is %s", op->name,
                            found ? "held by another owner" : "not held (expired or reset)");
}

static anylock_status sq_release(anylock_op *op)
{
    sq_client *sc = op->state;
    sq_conn *c;
    anylock_status st = conn_get(op, sc, &c);
    if (st != ANYLOCK_OK)
        return st;
    sqlite3_stmt *s = c->stmt[S_RELEASE];
    bind_key(s, 1, op);
    sqlite3_bind_text(s, 2, op->id, (int)op->id_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, now_ms_floor());
    int rc = step_done(s);
    if (rc != SQLITE_OK)
        st = sq_fail(op, sc, c->db, rc, "release");
    else if (sqlite3_changes(c->db) == 0)
        st = not_held(op, sc, c, 0);
    conn_put(sc, c);
    return st;
}

static anylock_status sq_extend(anylock_op *op)
{
    sq_client *sc = op->state;
    sq_conn *c;
    anylock_status st = conn_get(op, sc, &c);
    if (st != ANYLOCK_OK)
        return st;
    sqlite3_stmt *s = c->stmt[S_EXTEND];
    bind_key(s, 1, op);
    sqlite3_bind_text(s, 2, op->id, (int)op->id_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, now_ms_floor());
    sqlite3_bind_int64(s, 4, now_ms_ceil() + op->expires_ms);
    int rc = step_done(s);
    if (rc != SQLITE_OK)
        st = sq_fail(op, sc, c->db, rc, "extend");
    else if (sqlite3_changes(c->db) == 0)
        st = not_held(op, sc, c, 1);
    conn_put(sc, c);
    return st;
}

static anylock_status sq_inspect(anylock_op *op, anylock_info *info)
{
    sq_client *sc = op->state;
    sq_conn *c;
    anylock_status st = conn_get(op, sc, &c);
    if (st != ANYLOCK_OK)
        return st;
    int64_t expires_at = 0;
    int64_t now_ns = anylock_now_ns();
    int found = get_row(c, op, now_ns / 1000000, info->owner, &expires_at);
    if (found < 0) {
        st = sq_fail(op, sc, c->db, -found, "inspect");
    } else if (found) {
        info->held = 1;
        info->expires_in = expires_at ? (double)(expires_at * 1000000 - now_ns) / 1e9 : ANYLOCK_FOREVER;
    } else {
        info->owner[0] = 0;
    }
    conn_put(sc, c);
    return st;
}

static anylock_status sq_reset(anylock_op *op)
{
    sq_client *sc = op->state;
    sq_conn *c;
    anylock_status st = conn_get(op, sc, &c);
    if (st != ANYLOCK_OK)
        return st;
    sqlite3_stmt *s = c->stmt[S_RESET];
    bind_key(s, 1, op);
    int rc = step_done(s);
    if (rc != SQLITE_OK)
        st = sq_fail(op, sc, c->db, rc, "reset");
    conn_put(sc, c);
    return st;
}

static anylock_status sq_reset_all(anylock_op *op, size_t *count)
{
    sq_client *sc = op->state;
    sq_conn *c;
    *count = 0;
    anylock_status st = conn_get(op, sc, &c);
    if (st != ANYLOCK_OK)
        return st;
    int rc = step_done(c->stmt[S_BEGIN]);
    if (rc == SQLITE_OK) {
        sqlite3_stmt *s = c->stmt[S_COUNT_PREFIX];
        bind_prefix(s, 1, op);
        sqlite3_bind_int64(s, 2, now_ms_floor());
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            *count = (size_t)sqlite3_column_int64(s, 0);
            rc = SQLITE_OK;
        }
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
    }
    if (rc == SQLITE_OK) {
        bind_prefix(c->stmt[S_DELETE_PREFIX], 1, op);
        rc = step_done(c->stmt[S_DELETE_PREFIX]);
    }
    if (rc == SQLITE_OK)
        rc = step_done(c->stmt[S_COMMIT]);
    if (rc != SQLITE_OK) {
        st = sq_fail(op, sc, c->db, rc, "reset_all");
        *count = 0;
    }
    conn_put(sc, c);
    return st;
}

typedef struct sq_item {
    char *name;
    anylock_info info;
} sq_item;

static anylock_status sq_list(anylock_op *op, anylock_list_fn fn, void *userdata)
{
    sq_client *sc = op->state;
    sq_conn *c;
    anylock_status st = conn_get(op, sc, &c);
    if (st != ANYLOCK_OK)
        return st;
    /* Copy first: fn runs with no statement active, so it may call the
     * library and no read transaction is held open meanwhile. */
    sq_item *items = NULL;
    size_t n = 0, cap = 0;
    int64_t now_ns = anylock_now_ns();
    sqlite3_stmt *s = c->stmt[S_LIST];
    bind_prefix(s, 1, op);
    sqlite3_bind_int64(s, 2, now_ns / 1000000);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *key = sqlite3_column_blob(s, 0);
        size_t key_len = (size_t)sqlite3_column_bytes(s, 0);
        if (key_len < op->prefix_len)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            sq_item *g = realloc(items, cap * sizeof *g);
            if (!g) {
                st = ANYLOCK_NOMEM;
                break;
            }
            items = g;
        }
        sq_item *it = &items[n];
        memset(it, 0, sizeof *it);
        it->name = strndup(key + op->prefix_len, key_len - op->prefix_len);
        if (!it->name) {
            st = ANYLOCK_NOMEM;
            break;
        }
        n++;
        const unsigned char *o = sqlite3_column_text(s, 1);
        snprintf(it->info.owner, sizeof it->info.owner, "%s", o ? (const char *)o : "");
        int64_t exp = sqlite3_column_int64(s, 2);
        it->info.held = 1;
        it->info.expires_in = exp ? (double)(exp * 1000000 - now_ns) / 1e9 : ANYLOCK_FOREVER;
    }
    if (st == ANYLOCK_OK && rc != SQLITE_DONE)
        st = sq_fail(op, sc, c->db, rc, "list");
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    conn_put(sc, c);
    int stop = 0;
    for (size_t i = 0; i < n; i++) {
        items[i].info.name = items[i].name;
        if (st == ANYLOCK_OK && !stop)
            stop = fn(&items[i].info, userdata);
        free(items[i].name);
    }
    free(items);
    return st;
}

const anylock_backend anylock__sqlite_backend = {
    .version = 1, /* TODO(v2 port) */
    .name = "sqlite",
    .state_size = sizeof(sq_client),
    .flags = 0,
    .expiry_resolution_ms = 1,
    .params = sq_params,
    .open = sq_open,
    .close = sq_close,
    .acquire = sq_acquire,
    .release = sq_release,
    .extend = sq_extend,
    .inspect = sq_inspect,
    .reset = sq_reset,
    .reset_all = sq_reset_all,
    .list = sq_list,
};
