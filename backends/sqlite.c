/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * sqlite:///relative/path.db and sqlite:////absolute/path.db: locks kept in
 * one SQLite database file, shared by every process of one host.  No server
 * is needed, which makes this the embedded default.
 *
 * Schema (version 2, docs/sqlite.md).  One row per holder in
 * anylock_holders, keyed by (key, owner): an exclusive lock has one row, a
 * shared lock or a semaphore one row per holder.  Keys and owners are BLOBs,
 * compared byte for byte, lengths included; any stored owner value (even
 * empty, or written by another program) is a holder.  anylock_waiters is the
 * queue of waiting acquirers of each key, in arrival order: it makes waiters
 * served in turn (fair, and no collapse as waiters are added, since only
 * the waiters whose turn it is are woken), and a waiting exclusive acquirer
 * is the marker that holds back new shared ones (writer preference).
 * anylock_tokens holds one counter, advanced inside every acquiring
 * transaction: the fencing token.  Every operation is one short transaction.
 *
 * Expiry.  Expiry times are milliseconds on CLOCK_MONOTONIC, which every
 * process of a Linux host shares but which restarts at boot.  The database
 * remembers the boot id (/proc/sys/kernel/random/boot_id) it was last used
 * under; the first client opened after a reboot drops every holder that had
 * an expiry and every waiter, since they died with the old boot and their
 * times mean nothing on the new clock.  Waiters' rows expire too (a waiter
 * refreshes its own while it waits), so a waiter that died cannot hold the
 * queue up for long; one that died with its wake slot (below) is seen dead
 * at once.
 *
 * Hand-over and waking.  The transaction that frees a lock hands it to
 * the waiters whose turn it is (their holder rows, with their own token,
 * expiry and metadata from their queue entries), then wakes them, and only
 * them: each waiter takes a slot in a small shared file beside the database
 * (<db>-wake: a 32-bit futex word and a tag per slot), by an
 * open-file-description lock on the slot's byte, which the kernel drops
 * when the waiter dies, and writes its queue entry's tag in it; it sleeps
 * on a futex on its word, and the releaser increments the word and wakes it
 * after committing.  A woken waiter only reads its row.  Where that is not
 * available (not Linux, the file cannot be made, no descriptor left) a
 * waiter polls PRAGMA data_version (which changes when another connection
 * commits, and costs no I/O in WAL mode) with a short backoff capped at
 * poll_max.
 *
 * Threads.  SQLite connections are not shared between threads: calls take
 * a connection from the client's anylock_pool.  A waiting acquire keeps its
 * connection but no transaction, so other threads and processes go on.
 */
#define _GNU_SOURCE /* F_OFD_SETLK */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#endif

#include "builtin.h"
#include "sqlite_fs.h"

/* PRAGMA application_id of an anylock database: "ANYL". */
#define SQ_APPLICATION_ID 0x414E594C
/* PRAGMA user_version: the schema version this code writes and reads
 * (version 1, of anylock 0.1, is migrated in place). */
#define SQ_SCHEMA_VERSION 2

#define SQ_DEFAULT_BUSY_MS 5000
/* A writer waiting for the write lock yields for this long before it
 * sleeps. */
#define SQ_BUSY_YIELD_NS (200 * (int64_t)1000)
#define SQ_DEFAULT_POLL_MAX_MS 2
/* A holder's turn (the turn URL parameter): for this long after it was
 * handed an exclusive lock (or took it), a release does not hand the lock
 * on, and the holder may take it again, ahead of the queue. */
#define SQ_DEFAULT_TURN_MS 5
/* The slot of a turn entry: a queue entry, first in the queue, that keeps
 * the key for the holder that released it within its turn (its owner)
 * until the turn ends (its expiry). */
#define SQ_TURN_SLOT (-2)
/* Idle connections kept per client; more are closed when returned. */
#define SQ_POOL_MAX 4
/* How many expired rows each acquire deletes, so that the file stays
 * bounded however many distinct names come and go. */
#define SQ_SWEEP_LIMIT "16"
/* A waiter's row lives this long unless refreshed, which the waiter does
 * every SQ_WAITER_REFRESH_MS while it waits. */
#define SQ_WAITER_TTL_MS 3000
#define SQ_WAITER_REFRESH_MS 1000
/* A waiter with a wake slot still looks every SQ_SAFETY_MS whether the
 * data changed (a holder freed by another program, which wakes nobody) and
 * whether the waiters ahead of it are alive. */
#define SQ_SAFETY_MS 100
/* How long an acquire that ends in an error may still take to leave the
 * queue (past its deadline, at worst). */
#define SQ_LEAVE_MS 5
/* The waiters of one key read per transaction: those further back are not
 * woken by it (they are behind at least this many). */
#define SQ_QUEUE_READ 64
/* The wake file: SQ_WAKE_SLOTS slots of a 32-bit futex word and a 64-bit
 * tag; slot i is owned by whoever holds the OFD lock on byte
 * SQ_SLOT_LOCK_BASE + i, and its tag names the queue entry it serves. */
#define SQ_WAKE_SLOTS 4096
#define SQ_WAKE_BYTES (SQ_WAKE_SLOTS * (int)sizeof(sq_wslot))
#define SQ_SLOT_LOCK_BASE ((off_t)1 << 20)

enum {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_HOLDERS,
    S_WAITERS,
    S_MAX_SEQ,
    S_MIN_SEQ,
    S_ENQUEUE,
    S_REFRESH_WAITER,
    S_DEQUEUE,
    S_PUT,
    S_TOKEN_BUMP,
    S_TOKEN_GET,
    S_SWEEP,
    S_SWEEP_WAITERS,
    S_RELEASE,
    S_EXTEND,
    S_OWN,
    S_RESET,
    S_LIST,
    S_COUNT_PREFIX,
    S_DELETE_PREFIX,
    S_PREFIX_SLOTS,
    S_DATA_VERSION,
    S_GRANT,
    S_COUNT_
};

/* Live holder rows are those with expires_at = 0 or expires_at > now. */
#define LIVE "(expires_at = 0 OR expires_at > ?2)"
#define UNDER_PREFIX "key >= ?1 AND substr(key, 1, length(?1)) = ?1"

static const char *const sq_sql[S_COUNT_] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_HOLDERS] = "SELECT owner, mode, permits, expires_at, meta, token, granted_seq FROM anylock_holders"
                  " WHERE key = ?1 AND " LIVE,
    [S_WAITERS] = "SELECT seq, mode, permits, slot, expires_at, slot = -2 AND CAST(owner AS BLOB) = ?3"
                  " FROM anylock_waiters WHERE key = ?1 AND expires_at > ?2"
                  " ORDER BY seq LIMIT 64", /* SQ_QUEUE_READ */
    [S_MAX_SEQ] = "SELECT max(coalesce(max(seq), 0), 0) FROM anylock_waiters WHERE key = ?1", /* turn entries: <= 0 */
    [S_MIN_SEQ] = "SELECT coalesce(min(seq), 1) FROM anylock_waiters WHERE key = ?1",
    [S_ENQUEUE] = "INSERT INTO anylock_waiters(key, seq, owner, mode, permits, slot, expires_at, expires_ms, meta)"
                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [S_REFRESH_WAITER] = "UPDATE anylock_waiters SET expires_at = ?3 WHERE key = ?1 AND seq = ?2",
    [S_DEQUEUE] = "DELETE FROM anylock_waiters WHERE key = ?1 AND seq = ?2",
    [S_PUT] = "INSERT OR REPLACE INTO anylock_holders(key, owner, mode, permits, expires_at, token, meta)"
              " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [S_TOKEN_BUMP] = "UPDATE anylock_tokens SET last = last + 1 WHERE id = 1",
    [S_TOKEN_GET] = "SELECT last FROM anylock_tokens WHERE id = 1",
    [S_SWEEP] = "DELETE FROM anylock_holders WHERE (key, owner) IN (SELECT key, owner FROM anylock_holders"
                " WHERE expires_at > 0 AND expires_at <= ?1 LIMIT " SQ_SWEEP_LIMIT ")",
    [S_SWEEP_WAITERS] = "DELETE FROM anylock_waiters WHERE (key, seq) IN (SELECT key, seq FROM anylock_waiters"
                        " WHERE expires_at <= ?1 LIMIT " SQ_SWEEP_LIMIT ")",
    [S_RELEASE] = "DELETE FROM anylock_holders WHERE key = ?1 AND CAST(owner AS BLOB) = ?3 AND " LIVE,
    [S_EXTEND] = "UPDATE anylock_holders SET expires_at = ?4 WHERE key = ?1 AND CAST(owner AS BLOB) = ?3"
                 " AND expires_at > ?2",
    [S_OWN] = "SELECT expires_at, token, granted_seq FROM anylock_holders WHERE key = ?1 AND CAST(owner AS BLOB) = ?3"
              " AND " LIVE,
    [S_RESET] = "DELETE FROM anylock_holders WHERE key = ?1",
    [S_LIST] = "SELECT key, owner, mode, permits, expires_at, meta FROM anylock_holders WHERE " UNDER_PREFIX
               " AND " LIVE " ORDER BY key",
    [S_COUNT_PREFIX] = "SELECT count(DISTINCT key) FROM anylock_holders WHERE " UNDER_PREFIX " AND " LIVE,
    [S_DELETE_PREFIX] = "DELETE FROM anylock_holders WHERE " UNDER_PREFIX,
    [S_PREFIX_SLOTS] = "SELECT slot FROM anylock_waiters WHERE " UNDER_PREFIX " AND slot >= 0",
    [S_DATA_VERSION] = "PRAGMA data_version",
    /* A releaser hands the key over to a waiter whose turn it is: ?2 = the
     * waiter's seq, ?3 = now rounded up (ms), ?4 = its token. */
    [S_GRANT] = "INSERT OR IGNORE INTO anylock_holders(key, owner, mode, permits, expires_at, token, meta, granted_seq)"
                " SELECT key, owner, mode, permits, CASE WHEN expires_ms > 0 THEN ?3 + expires_ms ELSE 0 END, ?4,"
                " meta, seq FROM anylock_waiters WHERE key = ?1 AND seq = ?2",
};

typedef struct sq_wslot {
    uint32_t word; /* incremented (and futex-woken) to wake the owner */
    uint32_t pad;
    uint64_t tag;  /* sq_tag() of the owner's queue entry; 0: none */
} sq_wslot;

typedef struct sq_conn {
    sqlite3 *db;
    sqlite3_stmt *stmt[S_COUNT_];
    int64_t busy_deadline; /* monotonic ns: the busy handler gives up then */
    int64_t busy_since;    /* when the current wait for the write lock began */
} sq_conn;

typedef struct sq_client {
    char *path;
    char *wake_path;   /* NULL: no wake file, waiters poll */
    sq_wslot *words;   /* the wake file, mapped; NULL: none */
    int wake_fd;       /* the wake file, open, holding no slot: asks whether a slot is held */
    int64_t busy_ms;
    int64_t poll_max_ms;
    int64_t turn_ms;
    anylock_pool *pool;
} sq_client;

/* Per lock handle. */
typedef struct sq_lock {
    int64_t turn_end; /* ms: the end of the holder's turn; 0: none */
} sq_lock;

static const char *const sq_params[] = {"busy_timeout", "poll_max", "turn", NULL};

/* ---- clock ---- */

/* Rows store expiry times as whole milliseconds on the monotonic clock.  A
 * new expiry is counted from the next millisecond (rounded up) and a row is
 * live while the current millisecond (rounded down) is before it, so a lock
 * never lives less than its expiry. */
static int64_t ms_floor(int64_t ns)
{
    return ns / 1000000;
}

static int64_t ms_ceil(int64_t ns)
{
    return (ns + 999999) / 1000000;
}

static int64_t now_ms_floor(void)
{
    return ms_floor(anylock_now_ns());
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
        /* The busy handler stopped at the call's own bound (an acquire's
         * wait deadline, a renewal's lease end) or at busy_timeout. */
        if (op->deadline != 0 && op->deadline != ANYLOCK_DEADLINE_NEVER && anylock_now_ns() >= op->deadline)
            return anylock_op_error(op, ANYLOCK_TIMEOUT,
                                    "sqlite %.200s: %s: the time ran out while another program held the "
                                    "database's write lock",
                                    path, what);
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
 * throughput up.  It gives up at the connection's busy deadline, which each
 * call sets from its own bound and busy_timeout. */
static int busy_handler(void *arg, int count)
{
    sq_conn *c = arg;
    int64_t now = anylock_now_ns();
    if (now >= c->busy_deadline)
        return 0;
    if (count == 0)
        c->busy_since = now;
    if (now - c->busy_since < SQ_BUSY_YIELD_NS) {
        /* A lock transaction lasts tens of microseconds: a sleep (which
         * the kernel's timer slack makes 100 us or more) would outlast it. */
        sched_yield();
        return 1;
    }
    int64_t us = 50 << (count < 5 ? count : 5); /* 50 us .. 1.6 ms */
    us = us / 2 + (int64_t)((uint64_t)now % (uint64_t)(us + 1)); /* jitter: half to 1.5 times */
    if (us * 1000 > c->busy_deadline - now)
        us = (c->busy_deadline - now + 999) / 1000;
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    nanosleep(&ts, NULL);
    return 1;
}

/* The busy deadline for one transaction of op: busy_timeout from now, and
 * no later than op's own bound. */
static void set_bound(sq_conn *c, const sq_client *sc, const anylock_op *op)
{
    c->busy_deadline = anylock_op_io_deadline(op, sc->busy_ms);
}

static void conn_close(void *ctx, void *conn)
{
    (void)ctx;
    sq_conn *c = conn;
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
        same = rc == SQLITE_ROW && sqlite3_column_text(s, 0) &&
               !strcmp((const char *)sqlite3_column_text(s, 0), boot);
        rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    sqlite3_finalize(s);
    return rc != SQLITE_OK ? -rc : same;
}

/* The tables of schema version 2 beside anylock_meta (which version 1 has
 * already). */
#define SQ_V2_TABLES                                                                                                \
    "CREATE TABLE anylock_holders ("                                                                                \
    " key BLOB NOT NULL,"                                                                                           \
    " owner BLOB NOT NULL,"                                                                                         \
    " mode INTEGER NOT NULL DEFAULT 0," /* 0 exclusive, 1 shared, 2 semaphore */                                    \
    " permits INTEGER NOT NULL DEFAULT 0,"                                                                          \
    " expires_at INTEGER NOT NULL,"                                                                                 \
    " token INTEGER NOT NULL DEFAULT 0,"                                                                            \
    " meta BLOB,"                                                                                                   \
    " granted_seq INTEGER NOT NULL DEFAULT 0," /* the waiter's seq when handed over by a releaser */                \
    " PRIMARY KEY (key, owner)"                                                                                     \
    ") WITHOUT ROWID;"                                                                                              \
    "CREATE INDEX anylock_holders_expiry ON anylock_holders(expires_at) WHERE expires_at > 0;"                      \
    "CREATE TABLE anylock_waiters ("                                                                                \
    " key BLOB NOT NULL,"                                                                                           \
    " seq INTEGER NOT NULL,"                                                                                        \
    " owner BLOB NOT NULL,"                                                                                         \
    " mode INTEGER NOT NULL,"                                                                                       \
    " permits INTEGER NOT NULL,"                                                                                    \
    " slot INTEGER NOT NULL," /* wake slot, -1: none */                                                             \
    " expires_at INTEGER NOT NULL,"                                                                                 \
    " expires_ms INTEGER NOT NULL," /* the expiry it asks for */                                                    \
    " meta BLOB,"                                                                                 \
    " PRIMARY KEY (key, seq)"                                                                                       \
    ") WITHOUT ROWID;"                                                                                              \
    "CREATE TABLE anylock_tokens (id INTEGER PRIMARY KEY CHECK (id = 1), last INTEGER NOT NULL);"                   \
    "INSERT INTO anylock_tokens VALUES (1, 0);"

/* Checks, inside the transaction already begun, that the database is
 * anylock's, of a version this code knows, and of this boot.  With write,
 * also creates the schema in an empty database, migrates a version-1 one,
 * and forgets the rows of an older boot; without, *needs_write says whether
 * that is needed. */
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
        rc = exec(c, SQ_V2_TABLES "CREATE TABLE anylock_meta (name TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);"
                                  "PRAGMA application_id = 1095653708;" /* SQ_APPLICATION_ID */
                                  "PRAGMA user_version = 2;");          /* SQ_SCHEMA_VERSION */
        if (rc != SQLITE_OK)
            return sq_fail(op, sc, c->db, rc, "creating the schema");
    } else if (app != SQ_APPLICATION_ID) {
        return anylock_op_error(op, ANYLOCK_STORE,
                                "sqlite %.200s: the file is a SQLite database of another application "
                                "(not created by anylock); refusing to use it",
                                sc->path);
    } else if (version > SQ_SCHEMA_VERSION || version < 1) {
        return anylock_op_error(op, ANYLOCK_STORE,
                                "sqlite %.200s: schema version %lld is not one this anylock knows (1 to %d); "
                                "a newer anylock made it",
                                sc->path, (long long)version, SQ_SCHEMA_VERSION);
    } else if (version == 1) {
        /* Version 1 (anylock 0.1): anylock_locks(key, owner TEXT,
         * expires_at), one row per lock.  Its rows become exclusive
         * holders, owners byte for byte; the old table goes, so that an
         * anylock 0.1 process still running fails (no such table) instead
         * of writing rows this version would not see. */
        if (!write) {
            *needs_write = 1;
            return ANYLOCK_OK;
        }
        rc = exec(c, SQ_V2_TABLES
                  "INSERT INTO anylock_holders(key, owner, mode, permits, expires_at, token, meta)"
                  " SELECT CAST(key AS BLOB), CAST(owner AS BLOB), 0, 0, expires_at, 0, NULL FROM anylock_locks;"
                  "DROP TABLE anylock_locks;"
                  "PRAGMA user_version = 2;");
        if (rc != SQLITE_OK)
            return sq_fail(op, sc, c->db, rc, "migrating the schema from version 1");
        anylock_op_log(op, ANYLOCK_LOG_INFO, ANYLOCK_EVENT_MESSAGE,
                       "sqlite %.200s: migrated the database from schema version 1 to 2", sc->path);
    }

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
    rc = exec(c, "DELETE FROM anylock_holders WHERE expires_at > 0; DELETE FROM anylock_waiters;");
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
 * another process writes; only a new file, an older schema or a new boot
 * takes the write lock, in an IMMEDIATE transaction that checks again, so
 * that processes opening a new file at once agree. */
static anylock_status schema_setup(anylock_op *op, const sq_client *sc, sq_conn *c)
{
    for (int write = 0; write < 2; write++) {
        set_bound(c, sc, op);
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
    int64_t end = anylock_op_io_deadline(op, sc->busy_ms);
    for (;;) {
        sqlite3_stmt *s = NULL;
        set_bound(c, sc, op);
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
        if ((rc & 0xff) != SQLITE_BUSY || anylock_now_ns() >= end)
            return sq_fail(op, sc, c->db, rc, "switching to WAL mode");
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

/* Opens a new connection; with setup, also creates, migrates or checks the
 * schema.  Bounded by busy_timeout (and deadline). */
static anylock_status conn_open_setup(anylock_op *op, sq_client *sc, int setup, sq_conn **out)
{
    *out = NULL;
    sq_conn *c = calloc(1, sizeof *c);
    if (!c)
        return ANYLOCK_NOMEM;
    /* No CREATE: the file was made (mode 0600) by sq_open. */
    int rc = sqlite3_open_v2(sc->path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        anylock_status st = sq_fail(op, sc, c->db, rc, "opening the database");
        conn_close(NULL, c);
        return st;
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_handler(c->db, busy_handler, c);
    set_bound(c, sc, op);
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
        conn_close(NULL, c);
        return st;
    }
    *out = c;
    return ANYLOCK_OK;
}

static anylock_status pool_open(void *ctx, anylock_op *op, int64_t deadline, void **conn)
{
    (void)deadline; /* the busy bound comes from op, set again by each call */
    sq_conn *c = NULL;
    anylock_status st = conn_open_setup(op, ctx, 0, &c);
    *conn = c;
    return st;
}

static const anylock_pool_methods sq_pool_methods = {pool_open, conn_close, NULL};

static anylock_status conn_get(anylock_op *op, sq_client *sc, sq_conn **out)
{
    void *c = NULL;
    anylock_status st = anylock_pool_get(sc->pool, op, anylock_op_io_deadline(op, sc->busy_ms), &c);
    *out = c;
    if (st == ANYLOCK_OK)
        set_bound(*out, sc, op);
    return st;
}

static void conn_put(sq_client *sc, sq_conn *c)
{
    if (!c)
        return;
    /* Never pool a connection left inside a transaction by a failure. */
    int broken = 0;
    if (!sqlite3_get_autocommit(c->db))
        broken = exec(c, "ROLLBACK") != SQLITE_OK;
    anylock_pool_put(sc->pool, c, broken);
}

/* Steps a statement that returns no rows and resets it. */
static int step_done(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

static void finish(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

/* ?1 = key, ?2 = now (ms), ?3 = owner id: the parameters most statements
 * share. */
static void bind_kno(sqlite3_stmt *s, const anylock_op *op, int64_t now_ms)
{
    sqlite3_bind_blob(s, 1, op->key, (int)op->key_len, SQLITE_STATIC);
    if (sqlite3_bind_parameter_count(s) >= 2)
        sqlite3_bind_int64(s, 2, now_ms);
    if (sqlite3_bind_parameter_count(s) >= 3 && op->id)
        sqlite3_bind_blob(s, 3, op->id, (int)op->id_len, SQLITE_STATIC);
}

static void bind_prefix(sqlite3_stmt *s, const anylock_op *op, int64_t now_ms)
{
    /* A zero-length blob binds as X'' (not NULL) only with a non-NULL
     * pointer. */
    sqlite3_bind_blob(s, 1, op->prefix_len ? op->prefix : "", (int)op->prefix_len, SQLITE_STATIC);
    if (sqlite3_bind_parameter_count(s) >= 2)
        sqlite3_bind_int64(s, 2, now_ms);
}

/* Whether column col of s, whatever its type, is op->id byte for byte. */
static int is_own(sqlite3_stmt *s, int col, const anylock_op *op)
{
    const void *b = sqlite3_column_blob(s, col);
    size_t n = (size_t)sqlite3_column_bytes(s, col);
    return n == op->id_len && (n == 0 || (b && !memcmp(b, op->id, n)));
}

/* A stored mode, as this code reads it (anything unknown is exclusive). */
static anylock_mode stored_mode(int64_t mode, int64_t permits)
{
    if (mode == ANYLOCK_SHARED)
        return ANYLOCK_SHARED;
    if (mode == ANYLOCK_SEMAPHORE && permits >= 1)
        return ANYLOCK_SEMAPHORE;
    return ANYLOCK_EXCLUSIVE;
}

/* ---- who may take a key ---- */

/* The holders of a key (or the holders plus the waiters admitted ahead of
 * someone), as far as admission is concerned. */
typedef struct sq_group {
    unsigned n;
    anylock_mode mode;
    unsigned permits;
} sq_group;

/* Whether mode/permits conflicts with g (a semaphore name taken as a lock,
 * or the reverse, or another number of permits). */
static int conflicts(const sq_group *g, anylock_mode mode, unsigned permits)
{
    return g->n && ((g->mode == ANYLOCK_SEMAPHORE) != (mode == ANYLOCK_SEMAPHORE) ||
                    (mode == ANYLOCK_SEMAPHORE && g->permits != permits));
}

/* Whether an acquirer in mode/permits may join g now. */
static int fits(const sq_group *g, anylock_mode mode, unsigned permits)
{
    if (g->n == 0)
        return 1;
    if (conflicts(g, mode, permits))
        return 0;
    if (mode == ANYLOCK_SHARED)
        return g->mode == ANYLOCK_SHARED;
    if (mode == ANYLOCK_SEMAPHORE)
        return g->n < g->permits;
    return 0;
}

static void join(sq_group *g, anylock_mode mode, unsigned permits)
{
    g->n++;
    g->mode = mode;
    g->permits = permits;
}

typedef struct sq_waiter {
    int64_t seq;
    anylock_mode mode;
    unsigned permits;
    int slot;           /* its wake slot, -1 for none */
    int turn;           /* a turn entry (SQ_TURN_SLOT) */
    int own_turn;       /* a turn entry of op->id */
    int64_t expires_at; /* ms */
} sq_waiter;

/* What one transaction read about a key. */
typedef struct sq_view {
    sq_group holders;
    int own;                  /* op->id is among the holders */
    int64_t own_expires_at, own_token, own_granted_seq;
    int64_t first_expiry;     /* the soonest holder expiry (ms), 0 if none */
    sq_waiter q[SQ_QUEUE_READ];
    size_t nq;
} sq_view;

static int read_holders(sq_conn *c, const anylock_op *op, int64_t now_ms, sq_view *v)
{
    sqlite3_stmt *s = c->stmt[S_HOLDERS];
    bind_kno(s, op, now_ms);
    int rc;
    memset(&v->holders, 0, sizeof v->holders);
    v->own = 0;
    v->own_expires_at = v->own_token = v->own_granted_seq = 0;
    v->first_expiry = 0;
    int any_exclusive = 0, any_semaphore = 0;
    unsigned permits = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (op->id && is_own(s, 0, op)) {
            v->own = 1;
            v->own_expires_at = sqlite3_column_int64(s, 3);
            v->own_token = sqlite3_column_int64(s, 5);
            v->own_granted_seq = sqlite3_column_int64(s, 6);
        }
        anylock_mode m = stored_mode(sqlite3_column_int64(s, 1), sqlite3_column_int64(s, 2));
        if (m == ANYLOCK_EXCLUSIVE)
            any_exclusive = 1;
        if (m == ANYLOCK_SEMAPHORE) {
            any_semaphore = 1;
            permits = (unsigned)sqlite3_column_int64(s, 2);
        }
        int64_t exp = sqlite3_column_int64(s, 3);
        if (exp && (!v->first_expiry || exp < v->first_expiry))
            v->first_expiry = exp;
        v->holders.n++;
    }
    finish(s);
    v->holders.mode = any_exclusive ? ANYLOCK_EXCLUSIVE : any_semaphore ? ANYLOCK_SEMAPHORE : ANYLOCK_SHARED;
    v->holders.permits = any_semaphore && !any_exclusive ? permits : 0;
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int read_queue(sq_conn *c, const anylock_op *op, int64_t now_ms, sq_view *v)
{
    sqlite3_stmt *s = c->stmt[S_WAITERS];
    bind_kno(s, op, now_ms);
    int rc;
    v->nq = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && v->nq < SQ_QUEUE_READ) {
        sq_waiter *w = &v->q[v->nq++];
        w->seq = sqlite3_column_int64(s, 0);
        w->permits = (unsigned)sqlite3_column_int64(s, 2);
        w->mode = stored_mode(sqlite3_column_int64(s, 1), w->permits);
        int64_t slot = sqlite3_column_int64(s, 3);
        w->slot = slot >= 0 && slot < SQ_WAKE_SLOTS ? (int)slot : -1;
        w->turn = slot == SQ_TURN_SLOT;
        w->expires_at = sqlite3_column_int64(s, 4);
        w->own_turn = sqlite3_column_int(s, 5);
    }
    finish(s);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* Whether an acquirer at place in the queue (queue_place()) may take the
 * key now: every waiter ahead of it takes its turn first, in
 * order, as far as they fit; then it must fit too. */
static int admitted(const sq_view *v, int64_t place, anylock_mode mode, unsigned permits)
{
    sq_group g = v->holders;
    for (size_t i = 0; i < v->nq && v->q[i].seq < place; i++) {
        if (!fits(&g, v->q[i].mode, v->q[i].permits))
            return 0;
        join(&g, v->q[i].mode, v->q[i].permits);
    }
    /* SQ_QUEUE_READ waiters ahead, all read: there may be more. */
    if (v->nq == SQ_QUEUE_READ && v->q[v->nq - 1].seq < place)
        return 0;
    return fits(&g, mode, permits);
}

/* op->id's turn entry in v, or NULL. */
static const sq_waiter *own_turn(const sq_view *v)
{
    for (size_t i = 0; i < v->nq; i++)
        if (v->q[i].own_turn)
            return &v->q[i];
    return NULL;
}

/* Where an acquirer queued as seq (0: not queued) stands, for admitted()
 * and drop_dead_blockers(): at its turn entry if it has one (first, then),
 * else at seq, else behind the whole queue (INT64_MAX). */
static int64_t queue_place(const sq_view *v, int64_t seq)
{
    const sq_waiter *t = own_turn(v);
    return t ? t->seq : seq ? seq : INT64_MAX;
}

/* The soonest end (ms) of another holder's turn in v, 0 if none: a waiter
 * looks again then, since nobody else tells it that the turn ended. */
static int64_t turn_ahead_end(const sq_view *v)
{
    int64_t end = 0;
    for (size_t i = 0; i < v->nq; i++)
        if (v->q[i].turn && !v->q[i].own_turn && (!end || v->q[i].expires_at < end))
            end = v->q[i].expires_at;
    return end;
}

/* When (ms) an acquirer at place must look again because another holder's
 * turn ends, 0 if it need not: only when nothing but turn entries keeps it
 * out of the free key (the turn's owner may hold it now, or not come back
 * and leave it free with nobody to hand it over).  Waiters further back
 * are handed the key in turn, as ever; waking them too would cost a write
 * transaction per waiter per turn. */
static int64_t turn_wake_at(const sq_view *v, int64_t place, anylock_mode mode, unsigned permits)
{
    int64_t end = turn_ahead_end(v);
    if (!end)
        return 0;
    sq_view rest;
    memset(&rest.holders, 0, sizeof rest.holders);
    rest.nq = 0;
    for (size_t i = 0; i < v->nq; i++)
        if (!v->q[i].turn)
            rest.q[rest.nq++] = v->q[i];
    return admitted(&rest, place, mode, permits) ? end : 0;
}

/* An acquisition of op's lock at t: its turn ends with the turn entry it
 * came through (v, NULL: none), else turn_ms from now for an exclusive
 * lock. */
static void turn_begins(anylock_op *op, const sq_client *sc, const sq_view *v, int64_t t)
{
    sq_lock *l = op->lock_state;
    if (!l)
        return;
    const sq_waiter *own = v ? own_turn(v) : NULL;
    l->turn_end = own ? own->expires_at : op->mode == ANYLOCK_EXCLUSIVE && sc->turn_ms ? ms_floor(t) + sc->turn_ms : 0;
}

/* The tag of the queue entry (key, seq), as its waiter writes it in its
 * slot (FNV-1a, never 0). */
static uint64_t sq_tag(const anylock_op *op, int64_t seq)
{
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < op->key_len; i++)
        h = (h ^ (unsigned char)op->key[i]) * 1099511628211ULL;
    for (int i = 0; i < 8; i++)
        h = (h ^ (unsigned char)((uint64_t)seq >> (8 * i))) * 1099511628211ULL;
    return h | 1;
}

/* ---- wake slots ---- */

#ifdef __linux__
static void wake_slots(sq_client *sc, const int *slots, size_t n)
{
    for (size_t i = 0; sc->words && i < n; i++) {
        uint32_t *w = &sc->words[slots[i]].word;
        __atomic_add_fetch(w, 1, __ATOMIC_SEQ_CST);
        syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0);
    }
}

/* A waiter's slot: fd holds the OFD lock on its byte. */
typedef struct sq_slot {
    int fd;
    int slot;
} sq_slot;

static void slot_lock_range(struct flock *fl, short type, int slot)
{
    memset(fl, 0, sizeof *fl);
    fl->l_type = type;
    fl->l_whence = SEEK_SET;
    fl->l_start = SQ_SLOT_LOCK_BASE + slot;
    fl->l_len = 1;
}

/* Takes a free slot: 0, or -1 (then the waiter polls). */
static int slot_take(sq_client *sc, sq_slot *s)
{
    s->fd = -1;
    s->slot = -1;
    if (!sc->words)
        return -1;
    int fd = open(sc->wake_path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -1;
    unsigned start = (unsigned)((uint64_t)anylock_now_ns() / 1000 % SQ_WAKE_SLOTS);
    for (unsigned i = 0; i < SQ_WAKE_SLOTS; i++) {
        int slot = (int)((start + i) % SQ_WAKE_SLOTS);
        struct flock fl;
        slot_lock_range(&fl, F_WRLCK, slot);
        if (fcntl(fd, F_OFD_SETLK, &fl) == 0) {
            s->fd = fd;
            s->slot = slot;
            return 0;
        }
        if (errno != EAGAIN && errno != EACCES)
            break;
    }
    close(fd);
    return -1;
}

static void slot_drop(sq_client *sc, sq_slot *s)
{
    if (s->slot >= 0 && sc->words)
        __atomic_store_n(&sc->words[s->slot].tag, 0, __ATOMIC_SEQ_CST);
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    s->slot = -1;
}

/* Whether the waiter of the queue entry tagged tag still owns slot: the
 * slot is locked (asked through fd, an open file description that holds no
 * lock on it) and carries that tag (a slot a dead waiter left may have been
 * taken by another).  1 when unsure. */
static int slot_alive(const sq_client *sc, int fd, int slot, uint64_t tag)
{
    if (fd < 0 || slot < 0 || !sc->words)
        return 1;
    if (__atomic_load_n(&sc->words[slot].tag, __ATOMIC_SEQ_CST) != tag)
        return 0;
    struct flock fl;
    slot_lock_range(&fl, F_WRLCK, slot);
    if (fcntl(fd, F_OFD_GETLK, &fl) != 0)
        return 1;
    return fl.l_type != F_UNLCK;
}

static void slot_tag(sq_client *sc, const sq_slot *s, uint64_t tag)
{
    if (s->slot >= 0)
        __atomic_store_n(&sc->words[s->slot].tag, tag, __ATOMIC_SEQ_CST);
}

/* Sleeps on the slot's word while it still reads `seen`, until deadline. */
static void slot_wait(sq_client *sc, const sq_slot *s, uint32_t seen, int64_t deadline)
{
    int64_t left = deadline - anylock_now_ns();
    if (left <= 0)
        return;
    struct timespec ts = {(time_t)(left / 1000000000), (long)(left % 1000000000)};
    syscall(SYS_futex, &sc->words[s->slot].word, FUTEX_WAIT, seen, &ts, NULL, 0);
}

static uint32_t slot_word(const sq_client *sc, const sq_slot *s)
{
    return s->slot >= 0 ? __atomic_load_n(&sc->words[s->slot].word, __ATOMIC_SEQ_CST) : 0;
}
#else
typedef struct sq_slot {
    int fd;
    int slot;
} sq_slot;
static void wake_slots(sq_client *sc, const int *slots, size_t n)
{
    (void)sc, (void)slots, (void)n;
}
static int slot_take(sq_client *sc, sq_slot *s)
{
    (void)sc;
    s->fd = s->slot = -1;
    return -1;
}
static void slot_drop(sq_client *sc, sq_slot *s)
{
    (void)sc;
    s->fd = s->slot = -1;
}
static int slot_alive(const sq_client *sc, int fd, int slot, uint64_t tag)
{
    (void)sc, (void)fd, (void)slot, (void)tag;
    return 1;
}
static void slot_tag(sq_client *sc, const sq_slot *s, uint64_t tag)
{
    (void)sc, (void)s, (void)tag;
}
static void slot_wait(sq_client *sc, const sq_slot *s, uint32_t seen, int64_t deadline)
{
    (void)sc, (void)s, (void)seen, (void)deadline;
}
static uint32_t slot_word(const sq_client *sc, const sq_slot *s)
{
    (void)sc, (void)s;
    return 0;
}
#endif

/* Maps the wake file beside the database (made with the database's mode
 * and owner, as SQLite makes its -wal and -shm files).  Leaves sc->words
 * NULL where that is not possible: waiters then poll. */
static void wake_setup(anylock_op *op, sq_client *sc, sqlite3 *db)
{
#ifdef __linux__
    const char *full = sqlite3_db_filename(db, "main");
    if (!full || !full[0])
        return;
    size_t n = strlen(full);
    if (!(sc->wake_path = malloc(n + 6)))
        return;
    memcpy(sc->wake_path, full, n);
    memcpy(sc->wake_path + n, "-wake", 6);
    struct stat db_st;
    if (stat(full, &db_st) != 0)
        goto fail;
    mode_t mode = db_st.st_mode & 0777;
    int created = 1;
    int fd = open(sc->wake_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0 && errno == EEXIST) {
        created = 0;
        fd = open(sc->wake_path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    }
    if (fd < 0)
        goto fail;
    if (created) {
        if (fchmod(fd, mode) != 0) {
            /* best effort, as SQLite for its own files */
        }
        if (geteuid() == 0 && fchown(fd, db_st.st_uid, db_st.st_gid) != 0) {
            /* best effort */
        }
    }
    struct stat st;
    void *map = MAP_FAILED;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
        (st.st_size >= SQ_WAKE_BYTES || ftruncate(fd, SQ_WAKE_BYTES) == 0))
        map = mmap(NULL, SQ_WAKE_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        close(fd);
        goto fail;
    }
    sc->words = map;
    sc->wake_fd = fd;
    return;
fail:
    anylock_op_log(op, ANYLOCK_LOG_DEBUG, ANYLOCK_EVENT_MESSAGE,
                   "sqlite %.200s: no wake file (%s): waiters poll", sc->path, strerror(errno));
    free(sc->wake_path);
    sc->wake_path = NULL;
#else
    (void)op, (void)sc, (void)db;
#endif
}

/* ---- slots ---- */

static anylock_status check_filesystem(anylock_op *op, const sq_client *sc)
{
    struct statfs fs;
    if (statfs(sc->path, &fs) != 0)
        return ANYLOCK_OK; /* opening will say what is wrong */
    const char *name = "";
    switch (sq_fs_judge((long)fs.f_type, &name)) {
    case SQ_FS_REFUSE:
        return anylock_op_error(op, ANYLOCK_STORE_UNSAFE,
                                "sqlite %.200s: the file is on a network filesystem (%s), where SQLite's "
                                "locking is not safe; use a local filesystem, or redis:// or memcached:// "
                                "for locks across machines",
                                sc->path, name);
    case SQ_FS_WARN:
        anylock_op_log(op, ANYLOCK_LOG_WARNING, ANYLOCK_EVENT_MESSAGE,
                       "sqlite %.200s: the file is on a %s filesystem, which may be remote; SQLite's locking "
                       "is only safe on a local one",
                       sc->path, name);
        return ANYLOCK_OK;
    default:
        return ANYLOCK_OK;
    }
}

static anylock_status sq_open(anylock_op *op, const anylock_url *url)
{
    sq_client *sc = op->state;
    sc->wake_fd = -1;
    if (url->user || url->password)
        return anylock_op_error(op, ANYLOCK_URL_BAD_USERINFO, "sqlite:// takes no user or password");
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
    if (st == ANYLOCK_OK)
        st = anylock_url_param_ms(op, url, "turn", SQ_DEFAULT_TURN_MS, &sc->turn_ms);
    if (st != ANYLOCK_OK)
        return st;
    if (sc->poll_max_ms < 1)
        sc->poll_max_ms = 1;
    if (anylock_pool_create(&sq_pool_methods, sc, SQ_POOL_MAX, &sc->pool) != ANYLOCK_OK)
        return ANYLOCK_NOMEM;

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
    if ((st = check_filesystem(op, sc)) != ANYLOCK_OK)
        return st;

    sq_conn *c;
    st = conn_open_setup(op, sc, 1, &c);
    if (st == ANYLOCK_OK) {
        wake_setup(op, sc, c->db);
        conn_put(sc, c);
    }
    return st;
}

static void sq_close(anylock_op *op)
{
    sq_client *sc = op->state;
    anylock_pool_destroy(sc->pool);
    if (sc->words)
        munmap(sc->words, SQ_WAKE_BYTES);
    if (sc->wake_fd >= 0)
        close(sc->wake_fd);
    free(sc->wake_path);
    free(sc->path);
}

/* Reads the key's live holders and waiters (rows that expired are left to
 * the sweeps, and replaced when their owner comes again). */
static int read_view(sq_conn *c, const anylock_op *op, int64_t now_ms, sq_view *v)
{
    int rc = read_holders(c, op, now_ms, v);
    if (rc == SQLITE_OK)
        rc = read_queue(c, op, now_ms, v);
    return rc;
}

/* Puts an entry of op in op->key's queue, living until expires_at (ms),
 * and sets *seq to its seq: a waiter for op's mode that wakes through slot,
 * behind the queue; or, for slot SQ_TURN_SLOT, a turn entry ahead of it. */
static int enqueue(sq_conn *c, const anylock_op *op, int slot, int64_t expires_at, int64_t *seq)
{
    int turn = slot == SQ_TURN_SLOT;
    sqlite3_stmt *s = c->stmt[turn ? S_MIN_SEQ : S_MAX_SEQ];
    bind_kno(s, op, 0);
    int rc = sqlite3_step(s);
    int64_t at = sqlite3_column_int64(s, 0) + (turn ? -1 : 1);
    rc = rc == SQLITE_ROW ? SQLITE_OK : rc;
    finish(s);
    if (rc != SQLITE_OK)
        return rc;
    *seq = at;
    s = c->stmt[S_ENQUEUE];
    bind_kno(s, op, 0);
    sqlite3_bind_int64(s, 2, at);
    sqlite3_bind_blob(s, 3, op->id, (int)op->id_len, SQLITE_STATIC);
    sqlite3_bind_int(s, 4, (int)(turn ? ANYLOCK_EXCLUSIVE : op->mode));
    sqlite3_bind_int64(s, 5, !turn && op->mode == ANYLOCK_SEMAPHORE ? op->permits : 0);
    sqlite3_bind_int(s, 6, slot);
    sqlite3_bind_int64(s, 7, expires_at);
    sqlite3_bind_int64(s, 8, turn ? 0 : op->expires_ms);
    if (!turn && op->meta_len)
        sqlite3_bind_blob(s, 9, op->meta, (int)op->meta_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 9);
    return step_done(s);
}

static int dequeue(sq_conn *c, const anylock_op *op, int64_t seq)
{
    sqlite3_stmt *s = c->stmt[S_DEQUEUE];
    sqlite3_bind_blob(s, 1, op->key, (int)op->key_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, seq);
    return step_done(s);
}

/* Advances the token counter inside the transaction: the new token. */
static int next_token(sq_conn *c, int64_t *token)
{
    int rc = step_done(c->stmt[S_TOKEN_BUMP]);
    if (rc != SQLITE_OK)
        return rc;
    sqlite3_stmt *g = c->stmt[S_TOKEN_GET];
    rc = sqlite3_step(g);
    *token = sqlite3_column_int64(g, 0);
    rc = rc == SQLITE_ROW ? SQLITE_OK : rc == SQLITE_DONE ? SQLITE_CORRUPT : rc;
    finish(g);
    return rc;
}

/* Inside a transaction that changed op->key's holders or queue (v as it
 * is now): hands the key over to every waiter whose turn it is, in order
 * (a row in the holders, with its own token, expiry and metadata, taken
 * from its queue entry), so that it only has to read when it wakes, and
 * collects their slots to wake after the commit.  A waiter whose slot
 * nobody holds died: its entry goes.  A waiter without a slot cannot be
 * woken, so it keeps its turn and takes the key itself when it next polls.
 * The first waiter that does not fit is woken (not granted) when its mode
 * conflicts with the holders, so that it learns so.  skip_seq: the
 * caller's own entry. */
static int grant_turns(sq_client *sc, sq_conn *c, const anylock_op *op, sq_view *v, int64_t skip_seq, int64_t t,
                       int wake[SQ_QUEUE_READ], size_t *nwake)
{
    sq_group g = v->holders;
    int rc = SQLITE_OK;
    for (size_t i = 0; i < v->nq && rc == SQLITE_OK; i++) {
        const sq_waiter *w = &v->q[i];
        if (w->seq == skip_seq)
            continue;
        if (!fits(&g, w->mode, w->permits)) {
            if (*nwake == 0 && conflicts(&g, w->mode, w->permits) && w->slot >= 0)
                wake[(*nwake)++] = w->slot;
            break;
        }
        if (w->slot < 0) {
            join(&g, w->mode, w->permits);
            continue;
        }
        if (!slot_alive(sc, sc->wake_fd, w->slot, sq_tag(op, w->seq))) {
            rc = dequeue(c, op, w->seq);
            continue;
        }
        int64_t token = 0;
        rc = next_token(c, &token);
        if (rc != SQLITE_OK)
            break;
        sqlite3_stmt *s = c->stmt[S_GRANT];
        sqlite3_bind_blob(s, 1, op->key, (int)op->key_len, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, w->seq);
        sqlite3_bind_int64(s, 3, ms_ceil(t));
        sqlite3_bind_int64(s, 4, token);
        rc = step_done(s);
        if (rc != SQLITE_OK)
            break;
        if (sqlite3_changes(c->db)) {
            rc = dequeue(c, op, w->seq);
            join(&g, w->mode, w->permits);
        }
        /* (no change: its owner id holds the key already; woken, it is
         * told ALREADY_HELD) */
        wake[(*nwake)++] = w->slot;
    }
    return rc;
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

/* One acquire's place in the queue. */
typedef struct sq_wait {
    int64_t seq;         /* 0: not queued */
    int64_t refresh_at;  /* ns: when to refresh the row's expiry */
    sq_slot slot;
    uint32_t word;       /* the slot's word as read before the attempt */
    int check_ahead;     /* look for dead waiters ahead (a safety-net wake) */
    int64_t wake_at;     /* ms: a holder's expiry worth waking for, or 0 */
    int64_t version;     /* PRAGMA data_version as of the last attempt */
} sq_wait;

/* Fills op's outputs for an acquisition found in the store. */
static void granted(anylock_op *op, int64_t token, int64_t expires_at)
{
    op->token = (uint64_t)token;
    /* The store's expiry is on this host's monotonic clock: the lease
     * started exactly expires_ms before it ends. */
    op->granted_at = expires_at && op->expires_ms ? (expires_at - op->expires_ms) * 1000000 : anylock_now_ns();
}

/* Reading only: 1 if a releaser handed the key over to w (filling op), 0
 * if not, or a negative SQLite code. */
static int check_granted(sq_conn *c, anylock_op *op, const sq_wait *w)
{
    sqlite3_stmt *s = c->stmt[S_OWN];
    bind_kno(s, op, now_ms_floor());
    int rc = sqlite3_step(s);
    int yes = rc == SQLITE_ROW && sqlite3_column_int64(s, 2) == w->seq;
    if (yes)
        granted(op, sqlite3_column_int64(s, 1), sqlite3_column_int64(s, 0));
    finish(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return -rc;
    return yes;
}

/* Deletes the rows of waiters ahead whose slot nobody holds any more (they
 * died); 1 if any went. */
static int drop_dead_ahead(sq_client *sc, sq_conn *c, const anylock_op *op, sq_view *v, const sq_wait *w, int *rc)
{
    int dropped = 0;
    for (size_t i = 0; i < v->nq && v->q[i].seq < w->seq; i++) {
        if (v->q[i].slot >= 0 && v->q[i].slot != w->slot.slot && !slot_alive(sc, w->slot.fd, v->q[i].slot, sq_tag(op, v->q[i].seq))) {
            if ((*rc = dequeue(c, op, v->q[i].seq)) != SQLITE_OK)
                return dropped;
            memmove(&v->q[i], &v->q[i + 1], (v->nq - i - 1) * sizeof v->q[0]);
            v->nq--;
            i--;
            dropped = 1;
        }
    }
    return dropped;
}

/* When an acquirer at place (queue_place()) is held back by the queue: drops the
 * first waiter ahead that does not fit, as long as it died (its slot is
 * free), so that a dead waiter (a writer marker, say) holds nobody up;
 * 1 if any went. */
static int drop_dead_blockers(sq_client *sc, sq_conn *c, const anylock_op *op, sq_view *v, int64_t place, int *rc)
{
    int dropped = 0;
    for (;;) {
        sq_group g = v->holders;
        size_t i = 0;
        for (; i < v->nq && v->q[i].seq < place; i++) {
            if (!fits(&g, v->q[i].mode, v->q[i].permits))
                break;
            join(&g, v->q[i].mode, v->q[i].permits);
        }
        if (i == v->nq || v->q[i].seq >= place || v->q[i].slot < 0 ||
            slot_alive(sc, sc->wake_fd, v->q[i].slot, sq_tag(op, v->q[i].seq)))
            return dropped;
        if ((*rc = dequeue(c, op, v->q[i].seq)) != SQLITE_OK)
            return dropped;
        memmove(&v->q[i], &v->q[i + 1], (v->nq - i - 1) * sizeof v->q[0]);
        v->nq--;
        dropped = 1;
    }
}

static anylock_status conflict_error(anylock_op *op, const sq_view *v)
{
    if (v->holders.mode == ANYLOCK_SEMAPHORE && op->mode == ANYLOCK_SEMAPHORE)
        return anylock_op_error(op, ANYLOCK_MODE_CONFLICT, "lock \"%.64s\" is a semaphore of %u permits, not %u",
                                op->name, v->holders.permits, op->permits);
    return anylock_op_error(op, ANYLOCK_MODE_CONFLICT, "lock \"%.64s\" is held as %s", op->name,
                            v->holders.mode == ANYLOCK_SEMAPHORE ? "a semaphore" : "a lock, not a semaphore");
}

/* One attempt in one IMMEDIATE transaction: OK (taken now, or handed over
 * by a releaser), ALREADY_HELD, MODE_CONFLICT, BUSY (queued if waiting),
 * TIMEOUT (the deadline passed: the queue entry is gone), or an error.  On
 * any answer but BUSY the queue entry is gone. */
static anylock_status attempt(anylock_op *op, sq_client *sc, sq_conn *c, sq_wait *w)
{
    set_bound(c, sc, op);
    int rc = step_done(c->stmt[S_BEGIN]);
    if (rc != SQLITE_OK)
        return sq_fail(op, sc, c->db, rc, "acquire");
    int64_t t = anylock_now_ns();
    int64_t now = ms_floor(t);
    anylock_status st = ANYLOCK_BUSY;
    int wake[SQ_QUEUE_READ];
    size_t nwake = 0;
    int leave = 0; /* leave the queue (and let whoever is behind go on) */
    sq_view v;
    rc = read_view(c, op, now, &v);
    if (rc == SQLITE_OK && w->check_ahead && w->seq)
        drop_dead_ahead(sc, c, op, &v, w, &rc);
    unsigned permits = op->mode == ANYLOCK_SEMAPHORE ? op->permits : 0;
    int64_t place = rc == SQLITE_OK ? queue_place(&v, w->seq) : 0;
    w->wake_at = 0;
    if (rc != SQLITE_OK) {
        st = sq_fail(op, sc, c->db, rc, "acquire");
    } else if (v.own && w->seq && v.own_granted_seq == w->seq) {
        /* Handed over while we were not looking. */
        rc = step_done(c->stmt[S_COMMIT]);
        if (rc == SQLITE_OK) {
            granted(op, v.own_token, v.own_expires_at);
            turn_begins(op, sc, NULL, t);
            st = ANYLOCK_OK;
            w->seq = 0;
        } else {
            st = sq_fail(op, sc, c->db, rc, "acquire");
        }
    } else if (v.own) {
        st = anylock_op_error(op, ANYLOCK_ALREADY_HELD, "lock \"%.64s\" is already held by this owner id",
                              op->name);
        leave = 1;
    } else if (conflicts(&v.holders, op->mode, permits)) {
        st = conflict_error(op, &v);
        leave = 1;
    } else if (admitted(&v, place, op->mode, permits) ||
               (drop_dead_blockers(sc, c, op, &v, place, &rc) && rc == SQLITE_OK &&
                admitted(&v, place, op->mode, permits))) {
        int64_t token = 0;
        rc = next_token(c, &token);
        sqlite3_stmt *s = c->stmt[S_PUT];
        int64_t expires_at = op->expires_ms ? ms_ceil(t) + op->expires_ms : 0;
        if (rc == SQLITE_OK) {
            bind_kno(s, op, now);
            sqlite3_bind_blob(s, 2, op->id, (int)op->id_len, SQLITE_STATIC);
            sqlite3_bind_int(s, 3, (int)op->mode);
            sqlite3_bind_int64(s, 4, permits);
            sqlite3_bind_int64(s, 5, expires_at);
            sqlite3_bind_int64(s, 6, token);
            if (op->meta_len)
                sqlite3_bind_blob(s, 7, op->meta, (int)op->meta_len, SQLITE_STATIC);
            else
                sqlite3_bind_null(s, 7);
            rc = step_done(s);
        }
        if (rc == SQLITE_OK && w->seq)
            rc = dequeue(c, op, w->seq);
        if (rc == SQLITE_OK) {
            sqlite3_bind_int64(c->stmt[S_SWEEP], 1, now);
            rc = step_done(c->stmt[S_SWEEP]);
        }
        if (rc == SQLITE_OK) {
            sqlite3_bind_int64(c->stmt[S_SWEEP_WAITERS], 1, now);
            rc = step_done(c->stmt[S_SWEEP_WAITERS]);
        }
        /* Shared holders or permits queued behind us may come in too. */
        join(&v.holders, op->mode, permits);
        if (rc == SQLITE_OK && v.nq)
            rc = grant_turns(sc, c, op, &v, w->seq, t, wake, &nwake);
        if (rc == SQLITE_OK)
            rc = step_done(c->stmt[S_COMMIT]);
        if (rc == SQLITE_OK) {
            st = ANYLOCK_OK;
            w->seq = 0;
            op->token = (uint64_t)token;
            op->granted_at = t;
            turn_begins(op, sc, &v, t);
        } else {
            nwake = 0;
            st = sq_fail(op, sc, c->db, rc, "acquire");
        }
    } else if (rc != SQLITE_OK) {
        st = sq_fail(op, sc, c->db, rc, "acquire");
    } else if (op->deadline != 0 && op->deadline != ANYLOCK_DEADLINE_NEVER && t >= op->deadline) {
        st = ANYLOCK_TIMEOUT;
        leave = 1;
    } else if (op->deadline != 0) {
        /* Not our turn: take or keep a place in the queue. */
        if (!w->seq) {
            if (w->slot.slot < 0 && slot_take(sc, &w->slot) == 0)
                w->word = slot_word(sc, &w->slot); /* nobody can wake it before the commit */
            int64_t seq = 0;
            rc = enqueue(c, op, w->slot.slot, now + SQ_WAITER_TTL_MS, &seq);
            if (seq) {
                w->seq = seq;
                slot_tag(sc, &w->slot, sq_tag(op, seq));
            }
            w->refresh_at = t + SQ_WAITER_REFRESH_MS * (int64_t)1000000;
        } else if (t >= w->refresh_at) {
            sqlite3_stmt *s = c->stmt[S_REFRESH_WAITER];
            bind_kno(s, op, now);
            sqlite3_bind_int64(s, 2, w->seq);
            sqlite3_bind_int64(s, 3, now + SQ_WAITER_TTL_MS);
            rc = step_done(s);
            if (rc == SQLITE_OK && sqlite3_changes(c->db) == 0)
                w->seq = 0; /* our row expired (we were stopped too long): queue again next time */
            w->refresh_at = t + SQ_WAITER_REFRESH_MS * (int64_t)1000000;
        }
        /* As of this transaction: any later commit by another connection
         * changes it (ours does not). */
        if (rc == SQLITE_OK)
            rc = data_version(c, &w->version);
        if (rc == SQLITE_OK)
            rc = step_done(c->stmt[S_COMMIT]);
        if (rc != SQLITE_OK)
            st = sq_fail(op, sc, c->db, rc, "acquire");
        /* Wake for a holder's expiry or the end of a turn, which may let
         * us in. */
        int64_t turn_end = turn_wake_at(&v, queue_place(&v, w->seq), op->mode, permits);
        w->wake_at = turn_end && (!v.first_expiry || turn_end < v.first_expiry) ? turn_end : v.first_expiry;
    }
    if (leave && w->seq && !sqlite3_get_autocommit(c->db)) {
        rc = dequeue(c, op, w->seq);
        for (size_t i = 0; i < v.nq; i++)
            if (v.q[i].seq == w->seq) {
                memmove(&v.q[i], &v.q[i + 1], (v.nq - i - 1) * sizeof v.q[0]);
                v.nq--;
                break;
            }
        if (rc == SQLITE_OK)
            rc = grant_turns(sc, c, op, &v, 0, t, wake, &nwake);
        if (rc == SQLITE_OK && (rc = step_done(c->stmt[S_COMMIT])) == SQLITE_OK)
            w->seq = 0;
        else
            nwake = 0;
    }
    if (!sqlite3_get_autocommit(c->db))
        step_done(c->stmt[S_ROLLBACK]);
    wake_slots(sc, wake, nwake);
    return st;
}

/* Reading only: whether a waiter ahead of w died (its slot is free). */
static int dead_ahead(sq_client *sc, sq_conn *c, const anylock_op *op, const sq_wait *w)
{
    sq_view v;
    if (read_queue(c, op, now_ms_floor(), &v) != SQLITE_OK)
        return 0;
    for (size_t i = 0; i < v.nq && v.q[i].seq < w->seq; i++)
        if (v.q[i].slot >= 0 && v.q[i].slot != w->slot.slot && !slot_alive(sc, w->slot.fd, v.q[i].slot, sq_tag(op, v.q[i].seq)))
            return 1;
    return 0;
}

/* An acquire that ends without the lock while it may still be queued (an
 * error, or a transaction that could not start at the deadline): it was
 * perhaps handed the key meanwhile.  OK if so; else out of the queue; if
 * neither can be made sure of, OUTCOME_UNKNOWN (the core releases what may
 * be held). */
static anylock_status leave_queue(anylock_op *op, sq_client *sc, sq_conn *c, sq_wait *w, anylock_status st)
{
    int g = check_granted(c, op, w);
    if (g == 1)
        return ANYLOCK_OK;
    /* Give the write a short bound of its own (enough for another anylock
     * process's transaction, which lasts microseconds): the entry must go,
     * or a releaser may hand the key to an owner that left.  Past it, the
     * outcome is unknown. */
    c->busy_deadline = anylock_now_ns() + SQ_LEAVE_MS * (int64_t)1000000;
    int rc = step_done(c->stmt[S_BEGIN]);
    if (rc == SQLITE_OK) {
        sqlite3_stmt *s = c->stmt[S_OWN];
        bind_kno(s, op, now_ms_floor());
        rc = sqlite3_step(s);
        g = rc == SQLITE_ROW && sqlite3_column_int64(s, 2) == w->seq;
        if (g)
            granted(op, sqlite3_column_int64(s, 1), sqlite3_column_int64(s, 0));
        rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
        finish(s);
        if (rc == SQLITE_OK && !g)
            rc = dequeue(c, op, w->seq);
        if (rc == SQLITE_OK)
            rc = step_done(c->stmt[S_COMMIT]);
        if (rc != SQLITE_OK)
            step_done(c->stmt[S_ROLLBACK]);
    }
    w->seq = 0;
    if (rc == SQLITE_OK)
        return g ? ANYLOCK_OK : st;
    return anylock_op_error(op, ANYLOCK_OUTCOME_UNKNOWN,
                            "sqlite %.200s: lock \"%.64s\": could not leave the queue (%.100s): it may have been "
                            "handed to this owner",
                            sc->path, op->name, op->errbuf[0] ? op->errbuf : anylock_strerror(st));
}

static anylock_status sq_acquire(anylock_op *op)
{
    sq_client *sc = op->state;
    sq_conn *c;
    anylock_status st = conn_get(op, sc, &c);
    if (st != ANYLOCK_OK)
        return st;
    sq_wait w = {.slot = {-1, -1}};
    anylock_backoff b;
    anylock_backoff_init(&b, 1, sc->poll_max_ms);
    for (;;) {
        /* Read the word before trying, so that a wake right after the
         * attempt is not missed. */
        if (w.slot.slot >= 0)
            w.word = slot_word(sc, &w.slot);
        int rc;
        st = attempt(op, sc, c, &w);
        int64_t version = w.version;
        w.check_ahead = 0;
        if (st != ANYLOCK_BUSY || op->deadline == 0)
            break;
        uint32_t word = w.word;
        /* Wait, holding no transaction, for our turn (a wake), a commit (a
         * poll), a holder's expiry, the row's refresh, or the deadline. */
        for (;;) {
            if (w.slot.slot >= 0 && slot_word(sc, &w.slot) != word) {
                /* Woken: handed over (a read tells), or told to look. */
                int g = check_granted(c, op, &w);
                if (g == 1) {
                    turn_begins(op, sc, NULL, anylock_now_ns());
                    st = ANYLOCK_OK;
                    w.seq = 0;
                    goto out;
                }
                break;
            }
            int64_t now = anylock_now_ns();
            if (op->deadline != ANYLOCK_DEADLINE_NEVER && now >= op->deadline)
                break; /* the attempt leaves the queue and says TIMEOUT */
            if (w.wake_at && ms_floor(now) >= w.wake_at)
                break;
            if (w.seq && now >= w.refresh_at)
                break;
            int64_t until = op->deadline;
            if (w.wake_at && w.wake_at * 1000000 < until)
                until = w.wake_at * 1000000;
            if (w.seq && w.refresh_at < until)
                until = w.refresh_at;
            if (w.slot.slot >= 0) {
                int64_t safety = now + SQ_SAFETY_MS * (int64_t)1000000;
                if (safety < until)
                    until = safety;
                slot_wait(sc, &w.slot, word, until);
                if (slot_word(sc, &w.slot) != word)
                    continue;
            } else if (!anylock_backoff_wait(&b, until < op->deadline ? until : op->deadline)) {
                break;
            }
            int64_t now_version = 0;
            if ((rc = data_version(c, &now_version)) != SQLITE_OK) {
                st = sq_fail(op, sc, c->db, rc, "acquire");
                goto out;
            }
            if (now_version != version) {
                /* Something committed: another program may have freed it
                 * without waking anyone, or (polling) it was for us. */
                anylock_backoff_init(&b, 1, sc->poll_max_ms);
                if (w.slot.slot < 0)
                    break;
                version = now_version;
                int g = check_granted(c, op, &w);
                if (g == 1) {
                    turn_begins(op, sc, NULL, anylock_now_ns());
                    st = ANYLOCK_OK;
                    w.seq = 0;
                    goto out;
                }
                /* With a slot, only a look that finds it our turn is worth
                 * a write transaction. */
                sq_view v;
                int64_t nms = now_ms_floor();
                if (g < 0 || read_holders(c, op, nms, &v) != SQLITE_OK || read_queue(c, op, nms, &v) != SQLITE_OK ||
                    admitted(&v, queue_place(&v, w.seq), op->mode, op->mode == ANYLOCK_SEMAPHORE ? op->permits : 0))
                    break;
            }
            if (w.slot.slot >= 0 && w.seq && dead_ahead(sc, c, op, &w)) {
                w.check_ahead = 1;
                break;
            }
        }
    }
out:
    if (w.seq && st != ANYLOCK_OK && st != ANYLOCK_BUSY && (st = leave_queue(op, sc, c, &w, st)) == ANYLOCK_OK)
        turn_begins(op, sc, NULL, anylock_now_ns());
    slot_drop(sc, &w.slot);
    conn_put(sc, c);
    return st;
}

/* Why op->id does not hold op->key, for a NOT_HELD or NOT_EXPIRABLE answer
 * after a conditional statement changed nothing. */
static anylock_status not_held(anylock_op *op, sq_client *sc, sq_conn *c, int extending)
{
    int64_t now = now_ms_floor();
    sq_view v;
    int rc = read_holders(c, op, now, &v);
    if (rc != SQLITE_OK)
        return sq_fail(op, sc, c->db, rc, extending ? "extend" : "release");
    if (v.own && extending && v.own_expires_at == 0)
        return anylock_op_error(op, ANYLOCK_NOT_EXPIRABLE, "lock \"%.64s\" was taken without an expiry", op->name);
    return anylock_op_error(op, ANYLOCK_NOT_HELD, "lock \"%.64s\" is %s", op->name,
                            v.holders.n ? "held by another owner" : "not held (expired or reset)");
}

/* A release within op's turn (ending turn_end, ms) that left the key free
 * with waiters queued (v): the key stays op->id's until then, through a
 * turn entry first in the queue, which nobody is let in past.  The first
 * release of a turn makes the entry and wakes the first waiter, which
 * learns so when the turn ends. */
static int keep_turn(sq_conn *c, const anylock_op *op, const sq_view *v, int64_t turn_end, int wake[SQ_QUEUE_READ],
                     size_t *nwake)
{
    if (own_turn(v))
        return SQLITE_OK;
    int64_t seq;
    int rc = enqueue(c, op, SQ_TURN_SLOT, turn_end, &seq);
    for (size_t i = 0; rc == SQLITE_OK && i < v->nq; i++)
        if (v->q[i].slot >= 0) {
            wake[(*nwake)++] = v->q[i].slot;
            break;
        }
    return rc;
}

/* Runs one change to op->key's holders (stmt, bound by the caller) in a
 * transaction that also hands the key over to whoever's turn it is, then
 * wakes them; or, for a release within the holder's turn (turn_end, ms; 0:
 * none) that frees the key, keeps it for the holder (keep_turn).
 * *changes = rows changed. */
static int change_and_wake(sq_client *sc, sq_conn *c, const anylock_op *op, sqlite3_stmt *stmt, int64_t turn_end,
                           int *changes)
{
    int wake[SQ_QUEUE_READ];
    size_t nwake = 0;
    int rc = step_done(c->stmt[S_BEGIN]);
    if (rc != SQLITE_OK) {
        finish(stmt);
        return rc;
    }
    rc = step_done(stmt);
    *changes = rc == SQLITE_OK ? sqlite3_changes(c->db) : 0;
    if (rc == SQLITE_OK && *changes) {
        sq_view v;
        int64_t t = anylock_now_ns();
        rc = read_queue(c, op, ms_floor(t), &v);
        if (rc == SQLITE_OK && v.nq)
            rc = read_holders(c, op, ms_floor(t), &v);
        if (rc == SQLITE_OK && v.nq && ms_floor(t) < turn_end && v.holders.n == 0 && !turn_ahead_end(&v))
            rc = keep_turn(c, op, &v, turn_end, wake, &nwake);
        else if (rc == SQLITE_OK && v.nq)
            rc = grant_turns(sc, c, op, &v, 0, t, wake, &nwake);
    }
    if (rc == SQLITE_OK)
        rc = step_done(c->stmt[S_COMMIT]);
    if (rc != SQLITE_OK)
        step_done(c->stmt[S_ROLLBACK]);
    else
        wake_slots(sc, wake, nwake);
    return rc;
}

static anylock_status sq_release(anylock_op *op)
{
    sq_client *sc = op->state;
    sq_conn *c;
    anylock_status st = conn_get(op, sc, &c);
    if (st != ANYLOCK_OK)
        return st;
    sqlite3_stmt *s = c->stmt[S_RELEASE];
    bind_kno(s, op, now_ms_floor());
    const sq_lock *l = op->lock_state;
    int changes = 0;
    int rc = change_and_wake(sc, c, op, s, l ? l->turn_end : 0, &changes);
    if (rc != SQLITE_OK)
        st = sq_fail(op, sc, c->db, rc, "release");
    else if (changes == 0)
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
    int64_t t = anylock_now_ns();
    bind_kno(s, op, ms_floor(t));
    sqlite3_bind_int64(s, 4, ms_ceil(t) + op->expires_ms);
    int rc = step_done(s);
    if (rc != SQLITE_OK)
        st = sq_fail(op, sc, c->db, rc, "extend");
    else if (sqlite3_changes(c->db) == 0)
        st = not_held(op, sc, c, 1);
    else
        op->granted_at = t;
    conn_put(sc, c);
    return st;
}

/* Emits the holder row at the statement's current step. */
static int emit_row(anylock_emitter *em, sqlite3_stmt *s, int first_col, const char *name, size_t name_len,
                    int64_t now)
{
    int64_t permits = sqlite3_column_int64(s, first_col + 2);
    int64_t exp = sqlite3_column_int64(s, first_col + 3);
    anylock_record r = {
        .name = name,
        .name_len = name_len,
        .mode = stored_mode(sqlite3_column_int64(s, first_col + 1), permits),
        .expires_in_ms = exp ? exp - now : -1,
    };
    r.permits = r.mode == ANYLOCK_SEMAPHORE ? (unsigned)permits : 0;
    r.id = sqlite3_column_blob(s, first_col);
    r.id_len = (size_t)sqlite3_column_bytes(s, first_col);
    r.meta = sqlite3_column_blob(s, first_col + 4);
    r.meta_len = (size_t)sqlite3_column_bytes(s, first_col + 4);
    if (!r.meta)
        r.meta_len = 0;
    return anylock_emit(em, &r);
}

static anylock_status sq_enumerate(anylock_op *op, anylock_emitter *em)
{
    sq_client *sc = op->state;
    sq_conn *c;
    anylock_status st = conn_get(op, sc, &c);
    if (st != ANYLOCK_OK)
        return st;
    int64_t now = now_ms_floor();
    int rc;
    /* One read transaction for the whole enumeration. */
    sqlite3_stmt *s = c->stmt[op->name ? S_HOLDERS : S_LIST];
    if (op->name)
        bind_kno(s, op, now);
    else
        bind_prefix(s, op, now);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (op->name) {
            if (emit_row(em, s, 0, op->name, op->name_len, now))
                break;
        } else {
            const char *key = sqlite3_column_blob(s, 0);
            size_t key_len = (size_t)sqlite3_column_bytes(s, 0);
            if (key_len < op->prefix_len || !key)
                continue;
            if (emit_row(em, s, 1, key + op->prefix_len, key_len - op->prefix_len, now))
                break;
        }
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        st = sq_fail(op, sc, c->db, rc, op->name ? "inspect" : "list");
    finish(s);
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
    sqlite3_bind_blob(s, 1, op->key, (int)op->key_len, SQLITE_STATIC);
    int changes;
    int rc = change_and_wake(sc, c, op, s, 0, &changes);
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
    int64_t now = now_ms_floor();
    int wake[SQ_WAKE_SLOTS > 1024 ? 1024 : SQ_WAKE_SLOTS];
    size_t nwake = 0;
    int rc = step_done(c->stmt[S_BEGIN]);
    if (rc == SQLITE_OK) {
        sqlite3_stmt *s = c->stmt[S_COUNT_PREFIX];
        bind_prefix(s, op, now);
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            *count = (size_t)sqlite3_column_int64(s, 0);
            rc = SQLITE_OK;
        }
        finish(s);
    }
    if (rc == SQLITE_OK) {
        bind_prefix(c->stmt[S_DELETE_PREFIX], op, now);
        rc = step_done(c->stmt[S_DELETE_PREFIX]);
    }
    if (rc == SQLITE_OK) {
        /* Every waiter under the prefix looks again. */
        sqlite3_stmt *s = c->stmt[S_PREFIX_SLOTS];
        bind_prefix(s, op, now);
        while ((rc = sqlite3_step(s)) == SQLITE_ROW)
            if (nwake < sizeof wake / sizeof wake[0]) {
                int64_t slot = sqlite3_column_int64(s, 0);
                if (slot >= 0 && slot < SQ_WAKE_SLOTS)
                    wake[nwake++] = (int)slot;
            }
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
        finish(s);
    }
    if (rc == SQLITE_OK)
        rc = step_done(c->stmt[S_COMMIT]);
    if (rc != SQLITE_OK) {
        st = sq_fail(op, sc, c->db, rc, "reset_all");
        *count = 0;
    } else {
        wake_slots(sc, wake, nwake);
    }
    conn_put(sc, c);
    return st;
}

const anylock_backend anylock__sqlite_backend = {
    .version = ANYLOCK_BACKEND_VERSION,
    .name = "sqlite",
    .state_size = sizeof(sq_client),
    .flags = ANYLOCK_BACKEND_FAIR | ANYLOCK_BACKEND_TOKEN | ANYLOCK_BACKEND_SHARED | ANYLOCK_BACKEND_SEMAPHORE |
             ANYLOCK_BACKEND_LIST,
    .expiry_resolution_ms = 1,
    .params = sq_params,
    .open = sq_open,
    .close = sq_close,
    .acquire = sq_acquire,
    .release = sq_release,
    .extend = sq_extend,
    .reset = sq_reset,
    .reset_all = sq_reset_all,
    .lock_size = sizeof(sq_lock),
    .enumerate = sq_enumerate,
};
