/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * postgres://... and postgresql://...: session-level advisory locks, in
 * libpq's own URI form (see docs/postgres.md).
 *
 * A lock name maps to a 64-bit advisory key: the first 8 bytes of the
 * SHA-256 of prefix + name, big-endian, as a signed bigint.  A held lock is
 * a session-level advisory lock on a connection of its own, taken from the
 * client's pool and pinned to the lock until it is released, so the server
 * frees it the moment that session ends (the holder died, its connection
 * closed, or a reset terminated it).  A blocked acquire waits in the
 * server's own lock queue (pg_advisory_lock, bounded by lock_timeout), never
 * in a client poll.
 *
 * Beside the locks, a table (anylock_locks by default) has one row per
 * holder and per waiter: key, name, owner id, mode, metadata, expiry, fencing
 * token and the backend pid.  Each of anylock's sessions holds an identity
 * advisory lock (a random key in the two-integer space) for its life, and a
 * row counts only while a pg_try_advisory_lock on that key says its session
 * lives, so rows left by dead sessions are never shown as held (pg_locks,
 * which takes every lock-manager partition lock, is read only by inspect,
 * list and reset).  A few PL/pgSQL functions beside the table do each step in
 * one round trip: take (check collisions, modes and the owner, try the lock,
 * record the holder or the waiter), wait (the blocking pg_advisory_lock, then
 * record the holder and its token), release, and reset (pg_terminate_backend
 * of each holding session).  They are created, once, by the first client that
 * finds them missing.
 *
 * A watcher thread per client polls the pinned connections' sockets: a
 * connection that the server closes (a reset, pg_terminate_backend, a server
 * restart) or that fails (TCP keepalives give up) is reported through
 * anylock_lock_lost().  It also ends holders' turns: an exclusive holder's
 * release within its turn, while another session waits, keeps the lock on
 * the holder's session so that the holder's next acquire takes it again in
 * one round trip (a contended lock then changes hands once a turn, not at
 * every release); the watcher unlocks it there when the turn ends.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "builtin.h"

/* Defaults, each defined here only (docs/postgres.md lists them). */
#define DEFAULT_CONNECT_TIMEOUT_MS 5000
#define DEFAULT_COMMAND_TIMEOUT_MS 5000
#define DEFAULT_TABLE "anylock_locks"
/* A holder's turn (parameter turn), from when it was granted the lock: a
 * release within it while another session waits keeps the lock on the
 * holder's session, so that the holder's next acquire takes it again in one
 * round trip; the client's watcher lets it go when the turn ends. */
#define DEFAULT_TURN_MS 5
#define DEFAULT_APPLICATION_NAME "anylock"
#define DEFAULT_KEEPALIVES_IDLE "10"
#define DEFAULT_KEEPALIVES_INTERVAL "3"
#define DEFAULT_KEEPALIVES_COUNT "3"
#define DEFAULT_TCP_USER_TIMEOUT "20000"
/* Idle connections kept per client; more are closed when returned. */
#define POOL_IDLE_MAX 8
/* The oldest server the functions and settings work on: 14 has
 * pg_terminate_backend(pid, timeout) and idle_session_timeout. */
#define MIN_SERVER_VERSION 140000
/* A wait's lock_timeout ends this much before the deadline (at most), so
 * that the server's answer arrives in time. */
#define WAIT_MARGIN_MS 5
/* This side gives the server's answer to a wait this long past the deadline
 * before it gives up on it (a loaded server answers lock_timeout late). */
#define WAIT_GRACE_MS 50
/* A loss found within this long of the acquisition is reported again then,
 * in case the first report came before the core marked the lock held. */
#define REREPORT_MS 200

/* The settings every connection starts with (libpq's "options"): no timeout
 * of the database's may end a wait or a held lock's idle session. */
static const char session_options[] =
    "-c statement_timeout=0 -c lock_timeout=0 -c idle_in_transaction_session_timeout=0 -c idle_session_timeout=0";

/* anylock's own parameters, then libpq's connection parameters, passed
 * through (libpq checks their values).  "replication" is left out: a
 * replication connection cannot take locks. */
static const char *const pg_params[] = {
    "command_timeout", "connect_timeout", "table", "schema", "key_bits", "turn",
    /* libpq */
    "host", "hostaddr", "port", "dbname", "user", "password", "passfile", "channel_binding", "client_encoding",
    "options", "application_name", "fallback_application_name", "keepalives", "keepalives_idle",
    "keepalives_interval", "keepalives_count", "tcp_user_timeout", "sslmode", "sslcompression", "sslcert", "sslkey",
    "sslpassword", "sslrootcert", "sslcrl", "sslcrldir", "sslsni", "requirepeer", "ssl_min_protocol_version",
    "ssl_max_protocol_version", "gssencmode", "krbsrvname", "gsslib", "service", "target_session_attrs",
    "load_balance_hosts", "require_auth", "sslcertmode", "gssdelegation", "sslnegotiation", NULL};

static int is_anylock_param(const char *name)
{
    for (int i = 0; strcmp(pg_params[i], "host"); i++)
        if (!strcmp(pg_params[i], name))
            return 1;
    return 0;
}

/* ---- state ----------------------------------------------------------------- */

/* The statements every lock runs, prepared once per connection. */
enum { ST_TAKE, ST_WAIT, ST_RELEASE, ST_EXTEND, ST_HOLD };

typedef struct pconn {
    PGconn *pg;
    int broken;          /* the stream cannot be used again */
    int ended;           /* the server said it ended the session (a FATAL message) */
    int timed_out;       /* a statement got no answer in time: the session may live on */
    int64_t sess;        /* the key of the identity lock this session holds while it lives */
    unsigned prepared;   /* which of the ST_* statements are prepared on it */
    char ended_msg[160]; /* what it said */
} pconn;

typedef struct pg_state pg_state;

/* Per-lock state: the pinned connection and what the watcher needs. */
typedef struct pg_lock {
    pconn *conn;       /* pinned while held; NULL otherwise */
    int64_t slot;      /* the advisory key held */
    int mode;
    /* A session this handle gave up on while it might take the lock (its
     * answer did not come in time): the next release ends it. */
    int zombie_pid;
    int64_t zombie_slot;
    /* Guarded by the client's watcher mutex. */
    int watched;       /* in the watcher's set */
    size_t widx;       /* its index there */
    uint64_t wgen;     /* this registration's number */
    int busy;          /* a slot is using the connection: the watcher keeps off */
    int kept;          /* released within its turn: the session still holds the lock */
    int64_t turn_end;  /* when the holder's turn ends (monotonic ns) */
    int dead;          /* the connection is gone: the loss was reported */
    anylock_status lost_why;
    int64_t registered_ns, rereport_at;
    anylock_lock *lock;
    char name[68];     /* for messages */
    char lost_msg[ANYLOCK_ERRMSG_MAX];
} pg_lock;

struct pg_state {
    /* Set at open, read-only afterwards. */
    char **kw, **val;  /* libpq's keywords and values, NULL-terminated */
    size_t nkw;
    int64_t connect_timeout_ms, command_timeout_ms, turn_ms;
    int key_bits;
    char *schema;      /* as resolved at open */
    char *table;
    /* Quoted, qualified names for SQL. */
    char *q_table, *q_view, *q_seq, *q_take, *q_hold, *q_wait, *q_release, *q_release2, *q_reset, *q_alive;
    char *sql_take, *sql_hold, *sql_wait, *sql_release, *sql_extend, *sql_inspect, *sql_list, *sql_reset, *sql_zombie;
    anylock_pool *pool;

    /* The watcher. */
    pthread_mutex_t wmu;
    int wmu_init;
    pg_lock **watched;
    size_t nwatched, capwatched;
    uint64_t wgen;
    int wfd;           /* eventfd that wakes the watcher; -1 when none */
    pthread_t wthread;
    int wstarted, wstop;
};

/* ---- small helpers ------------------------------------------------------- */

static char *xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *p = malloc((size_t)n + 1);
    if (!p)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

/* The first line of a libpq message, without its "ERROR:  " decoration. */
static void first_line(char *dst, size_t size, const char *msg)
{
    if (!msg)
        msg = "";
    size_t n = strcspn(msg, "\n");
    if (n >= size)
        n = size - 1;
    memcpy(dst, msg, n);
    dst[n] = '\0';
}

/* ---- SQL ------------------------------------------------------------------ */

/*
 * The schema, with @T@ (the table), @V@ (the holders view), @S@ (the token
 * sequence) and @FT@, @FK@, @FW@, @FR@, @FR2@, @FX@, @FA@ (the take, hold, wait,
 * release, release with turns, reset and alive functions) replaced by quoted
 * names.
 *
 * The table is UNLOGGED: its rows mean something only while their sessions
 * live, and a server crash ends every session (and empties an unlogged
 * table), so its writes need no WAL flush at commit.  The token sequence is
 * logged, so that tokens keep increasing across a crash.
 *
 * A row is a holder when its token is set, a waiter when not.  Each of
 * anylock's sessions holds, for as long as it lives, an advisory lock on a
 * random key of its own in the two-integer key space (sess): a row counts
 * while that lock is held, which one pg_try_advisory_lock tells without
 * reading pg_locks (whose read stops every lock operation of the server for
 * a moment: too dear for each acquire).  What is shown (inspect, list) and
 * what reset ends is read from pg_locks itself: the view keeps holders whose
 * pid holds their slot.
 *
 * Every lookup is by slot, a plain scan of the primary key: each acquire
 * deletes and inserts rows of the same slot, and a plain index scan marks
 * the dead entries it meets so that the next one skips them (a bitmap scan,
 * which an OR of two columns would give, does not, and slows down with
 * every acquisition until VACUUM runs).
 */
static const char schema_sql[] =
    "CREATE UNLOGGED TABLE IF NOT EXISTS @T@ (\n"
    "  slot bigint NOT NULL,\n"
    "  pid integer NOT NULL,\n"
    "  sess bigint NOT NULL,\n"
    "  key bigint NOT NULL,\n"
    "  name bytea NOT NULL,\n"
    "  owner text NOT NULL,\n"
    "  mode smallint NOT NULL,\n"
    "  permits integer NOT NULL DEFAULT 0,\n"
    "  meta bytea,\n"
    "  expires_at timestamptz,\n"
    "  token bigint,\n"
    "  PRIMARY KEY (slot, pid));\n"

    "CREATE SEQUENCE IF NOT EXISTS @S@;\n"
    "CREATE OR REPLACE VIEW @V@ AS\n"
    "  SELECT t.* FROM @T@ t\n"
    "  WHERE t.token IS NOT NULL AND EXISTS (\n"
    "      SELECT 1 FROM pg_catalog.pg_locks l\n"
    "      WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted AND l.pid = t.pid\n"
    "        AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d\n"
    "                          WHERE d.datname = pg_catalog.current_database())\n"
    "        AND l.classid = ((t.slot >> 32) & 4294967295)::oid AND l.objid = (t.slot & 4294967295)::oid);\n"
    /* alive: whether the session holding identity lock p_sess lives (a try
     * that gets it proves it is gone, and gives it back at once). */
    "CREATE OR REPLACE FUNCTION @FA@(p_sess bigint) RETURNS boolean\n"
    "LANGUAGE plpgsql AS $anylock$\n"
    "BEGIN\n"
    "  IF pg_catalog.pg_try_advisory_lock((p_sess >> 32)::integer, (p_sess << 32 >> 32)::integer) THEN\n"
    "    PERFORM pg_catalog.pg_advisory_unlock((p_sess >> 32)::integer, (p_sess << 32 >> 32)::integer);\n"
    "    RETURN false;\n"
    "  END IF;\n"
    "  RETURN true;\n"
    "END\n"
    "$anylock$;\n"
    /* take: registrations of one key are serialised by a transaction-level
     * lock on the same 64 bits in the two-integer space (a different lock
     * from the bigint one), so that two names, modes or owners that meet on
     * the key see each other. */
    "CREATE OR REPLACE FUNCTION @FT@(p_key bigint, p_slot bigint, p_name bytea, p_owner text,\n"
    "    p_mode integer, p_permits integer, p_meta bytea, p_expires_ms bigint, p_queue boolean, p_sess bigint,\n"
    "    OUT status text, OUT token bigint, OUT holder text, OUT other bytea, OUT other_mode integer,\n"
    "    OUT other_permits integer)\n"
    "LANGUAGE plpgsql AS $anylock$\n"
    "DECLARE r record; got boolean;\n"
    "BEGIN\n"
    "  PERFORM pg_catalog.pg_advisory_xact_lock((p_key >> 32)::integer, (p_key << 32 >> 32)::integer);\n"
    /* Only the rows that would change the answer are looked at (and their
     * sessions checked): another name, this owner holding, another mode. */
    "  FOR r IN SELECT t.slot, t.pid, t.sess, t.name, t.owner, t.mode, t.permits FROM @T@ t\n"
    "           WHERE t.slot = p_slot AND t.pid <> pg_catalog.pg_backend_pid()\n"
    "             AND (t.name <> p_name OR (t.token IS NOT NULL AND t.owner = p_owner)\n"
    "                  OR (t.mode = 2) <> (p_mode = 2) OR (p_mode = 2 AND t.permits <> p_permits)) LOOP\n"
    "    IF NOT @FA@(r.sess) THEN\n"
    "      DELETE FROM @T@ t WHERE t.slot = r.slot AND t.pid = r.pid;\n"
    "      CONTINUE;\n"
    "    END IF;\n"
    "    IF r.name <> p_name THEN status := 'collision'; other := r.name; RETURN; END IF;\n"
    "    IF r.owner = p_owner THEN status := 'already'; RETURN; END IF;\n"
    "    status := 'mode'; other_mode := r.mode; other_permits := r.permits; RETURN;\n"
    "  END LOOP;\n"
    "  IF p_mode = 1 THEN got := pg_catalog.pg_try_advisory_lock_shared(p_slot);\n"
    "  ELSE got := pg_catalog.pg_try_advisory_lock(p_slot); END IF;\n"
    /* Holding it alone proves every other holder row of the slot stale. */
    "  IF got AND p_mode = 0 THEN\n"
    "    DELETE FROM @T@ t WHERE t.slot = p_slot AND t.pid <> pg_catalog.pg_backend_pid() AND t.token IS NOT NULL;\n"
    "  END IF;\n"
    "  IF got OR p_queue THEN\n"
    "    INSERT INTO @T@ AS t (slot, pid, sess, key, name, owner, mode, permits, meta, expires_at, token)\n"
    "    VALUES (p_slot, pg_catalog.pg_backend_pid(), p_sess, p_key, p_name, p_owner, p_mode, p_permits, p_meta,\n"
    "            CASE WHEN got AND p_expires_ms > 0\n"
    "                 THEN pg_catalog.clock_timestamp() + p_expires_ms * interval '1 millisecond' END,\n"
    "            CASE WHEN got THEN pg_catalog.nextval('@S@') END)\n"
    "    ON CONFLICT (slot, pid) DO UPDATE SET sess = EXCLUDED.sess, key = EXCLUDED.key, name = EXCLUDED.name,\n"
    "      owner = EXCLUDED.owner, mode = EXCLUDED.mode, permits = EXCLUDED.permits, meta = EXCLUDED.meta,\n"
    "      expires_at = EXCLUDED.expires_at, token = EXCLUDED.token\n"
    "    RETURNING t.token INTO token;\n"
    "  END IF;\n"
    "  IF got THEN status := 'ok'; RETURN; END IF;\n"
    "  FOR r IN SELECT t.owner, t.sess FROM @T@ t\n"
    "           WHERE t.slot = p_slot AND t.token IS NOT NULL AND t.pid <> pg_catalog.pg_backend_pid() LOOP\n"
    "    IF @FA@(r.sess) THEN holder := r.owner; EXIT; END IF;\n"
    "  END LOOP;\n"
    "  status := CASE WHEN p_queue THEN 'queued' ELSE 'busy' END;\n"
    "END\n"
    "$anylock$;\n"
    /* holder: this session holds the lock (it was granted, or kept through
     * the holder's turn): the holder's row, with a new token. */
    "CREATE OR REPLACE FUNCTION @FK@(p_key bigint, p_slot bigint, p_name bytea, p_owner text,\n"
    "    p_mode integer, p_permits integer, p_meta bytea, p_expires_ms bigint, p_sess bigint) RETURNS bigint\n"
    "LANGUAGE plpgsql AS $anylock$\n"
    "DECLARE tok bigint;\n"
    "BEGIN\n"
    "  INSERT INTO @T@ AS t (slot, pid, sess, key, name, owner, mode, permits, meta, expires_at, token)\n"
    "  VALUES (p_slot, pg_catalog.pg_backend_pid(), p_sess, p_key, p_name, p_owner, p_mode, p_permits, p_meta,\n"
    "          CASE WHEN p_expires_ms > 0\n"
    "               THEN pg_catalog.clock_timestamp() + p_expires_ms * interval '1 millisecond' END,\n"
    "          pg_catalog.nextval('@S@'))\n"
    "  ON CONFLICT (slot, pid) DO UPDATE SET sess = EXCLUDED.sess, key = EXCLUDED.key, name = EXCLUDED.name,\n"
    "    owner = EXCLUDED.owner, mode = EXCLUDED.mode, permits = EXCLUDED.permits, meta = EXCLUDED.meta,\n"
    "    expires_at = EXCLUDED.expires_at, token = EXCLUDED.token\n"
    "  RETURNING t.token INTO tok;\n"
    "  RETURN tok;\n"
    "END\n"
    "$anylock$;\n"
    /* wait: the blocking wait in the server's queue, bounded by
     * lock_timeout; then the holder's row and its token. */
    "CREATE OR REPLACE FUNCTION @FW@(p_key bigint, p_slot bigint, p_name bytea, p_owner text,\n"
    "    p_mode integer, p_permits integer, p_meta bytea, p_expires_ms bigint, p_timeout_ms bigint, p_sess bigint,\n"
    "    OUT status text, OUT token bigint)\n"
    "LANGUAGE plpgsql AS $anylock$\n"
    "BEGIN\n"
    "  PERFORM pg_catalog.set_config('lock_timeout', GREATEST(p_timeout_ms, 0)::text, true);\n"
    "  BEGIN\n"
    "    IF p_mode = 1 THEN PERFORM pg_catalog.pg_advisory_lock_shared(p_slot);\n"
    "    ELSE PERFORM pg_catalog.pg_advisory_lock(p_slot); END IF;\n"
    "  EXCEPTION WHEN lock_not_available THEN\n"
    "    DELETE FROM @T@ t WHERE t.slot = p_slot AND t.pid = pg_catalog.pg_backend_pid();\n"
    "    status := 'timeout'; RETURN;\n"
    "  END;\n"
    "  token := @FK@(p_key, p_slot, p_name, p_owner, p_mode, p_permits, p_meta, p_expires_ms, p_sess);\n"
    "  status := 'ok';\n"
    "END\n"
    "$anylock$;\n"
    "CREATE OR REPLACE FUNCTION @FR@(p_slot bigint, p_mode integer) RETURNS boolean\n"
    "LANGUAGE sql AS $anylock$\n"
    "  DELETE FROM @T@ WHERE slot = p_slot AND pid = pg_catalog.pg_backend_pid();\n"
    "  SELECT CASE WHEN p_mode = 1 THEN pg_catalog.pg_advisory_unlock_shared(p_slot)\n"
    "              ELSE pg_catalog.pg_advisory_unlock(p_slot) END;\n"
    "$anylock$;\n"
    /* release with turns: drops the holder's row; then, when p_keep and a
     * live waiter is queued, keeps the lock for the rest of the holder's
     * turn ('kept'), else lets it go ('true', or 'false' when the session
     * did not hold it).  (@FR@ stays for older clients.) */
    "CREATE OR REPLACE FUNCTION @FR2@(p_slot bigint, p_mode integer, p_keep boolean) RETURNS text\n"
    "LANGUAGE plpgsql AS $anylock$\n"
    "DECLARE n integer;\n"
    "BEGIN\n"
    "  DELETE FROM @T@ t WHERE t.slot = p_slot AND t.pid = pg_catalog.pg_backend_pid();\n"
    "  GET DIAGNOSTICS n = ROW_COUNT;\n"
    "  IF p_keep AND n > 0 AND EXISTS (SELECT 1 FROM @T@ t WHERE t.slot = p_slot AND t.token IS NULL\n"
    "                                   AND @FA@(t.sess)) THEN\n"
    "    RETURN 'kept';\n"
    "  END IF;\n"
    "  IF p_mode = 1 THEN RETURN pg_catalog.pg_advisory_unlock_shared(p_slot)::text; END IF;\n"
    "  RETURN pg_catalog.pg_advisory_unlock(p_slot)::text;\n"
    "END\n"
    "$anylock$;\n"
    /* reset: ends every session holding the name (or any name under the
     * prefix when p_name is NULL) and waits until it is gone, so that the
     * lock is free when this returns; returns how many names it freed.
     * Then it removes the rows of sessions that are gone. */
    "CREATE OR REPLACE FUNCTION @FX@(p_key bigint, p_name bytea, p_prefix bytea, p_wait_ms bigint)\n"
    "RETURNS integer LANGUAGE plpgsql AS $anylock$\n"
    "DECLARE r record; freed bytea[] := '{}'; n integer := 0;\n"
    "BEGIN\n"
    "  FOR r IN SELECT v.pid, v.name FROM @V@ v\n"
    "           WHERE v.pid <> pg_catalog.pg_backend_pid()\n"
    "             AND CASE WHEN p_name IS NOT NULL THEN v.slot = p_key AND v.name = p_name\n"
    "                 ELSE pg_catalog.substr(v.name, 1, pg_catalog.length(p_prefix)) = p_prefix END\n"
    "  LOOP\n"
    "    IF NOT pg_catalog.pg_terminate_backend(r.pid, p_wait_ms)\n"
    "       AND EXISTS (SELECT 1 FROM pg_catalog.pg_stat_get_activity(r.pid)) THEN\n"
    "      RAISE EXCEPTION 'the session (pid %) holding the lock did not end within % ms', r.pid, p_wait_ms\n"
    "        USING ERRCODE = 'lock_not_available';\n"
    "    END IF;\n"
    "    IF NOT r.name = ANY (freed) THEN freed := freed || r.name; n := n + 1; END IF;\n"
    "  END LOOP;\n"
    "  DELETE FROM @T@ t\n"
    "  WHERE CASE WHEN p_name IS NOT NULL THEN t.slot = p_key AND t.name = p_name\n"
    "        ELSE pg_catalog.substr(t.name, 1, pg_catalog.length(p_prefix)) = p_prefix END\n"
    "    AND t.pid <> pg_catalog.pg_backend_pid() AND NOT @FA@(t.sess);\n"
    "  RETURN n;\n"
    "END\n"
    "$anylock$;\n";

/* text with each @X@ replaced by the name for X; NULL when out of memory. */
static char *substitute(const char *text, const char *const names[][2], size_t nnames)
{
    size_t cap = strlen(text) * 2 + 256, n = 0;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    for (const char *p = text; *p;) {
        const char *rep = NULL;
        size_t skip = 1;
        if (*p == '@') {
            for (size_t i = 0; i < nnames; i++) {
                size_t l = strlen(names[i][0]);
                if (!strncmp(p, names[i][0], l)) {
                    rep = names[i][1];
                    skip = l;
                    break;
                }
            }
        }
        size_t add = rep ? strlen(rep) : 1;
        if (n + add + 1 > cap) {
            cap = (n + add + 1) * 2;
            char *g = realloc(out, cap);
            if (!g) {
                free(out);
                return NULL;
            }
            out = g;
        }
        if (rep)
            memcpy(out + n, rep, add);
        else
            out[n] = *p;
        n += add;
        p += skip;
    }
    out[n] = '\0';
    return out;
}

/* ---- errors ---------------------------------------------------------------- */

static anylock_status sqlstate_status(const char *state)
{
    if (!state)
        return ANYLOCK_STORE;
    if (!strncmp(state, "28", 2))
        return ANYLOCK_AUTH;
    if (!strcmp(state, "42501"))
        return ANYLOCK_ACCESS;
    if (!strncmp(state, "08", 2) || !strncmp(state, "57P", 3))
        return ANYLOCK_IO;
    return ANYLOCK_STORE;
}

/* Whether a SQLSTATE says the server ended the session (57P01 admin
 * shutdown or pg_terminate_backend, 57P02 crash shutdown, 57P03 cannot
 * connect now, 57P05 idle session timeout; and the FATAL severity). */
static int session_ended(const char *state)
{
    return state && !strncmp(state, "57P", 3);
}

static void notice_rx(void *arg, const PGresult *res)
{
    pconn *c = arg;
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    if (!sev || (strcmp(sev, "FATAL") && strcmp(sev, "PANIC")))
        return;
    /* Only the libpq thread that reads this connection gets here (the
     * watcher, or a slot that has it busy), so no lock is needed. */
    c->ended = 1;
    first_line(c->ended_msg, sizeof c->ended_msg, PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
}

/* ---- connections ----------------------------------------------------------- */

static anylock_status query(anylock_op *op, pconn *c, int64_t deadline, const char *what, const char *sql,
                            int n, const char *const *vals, const int *lens, const int *fmts, PGresult **out);

/* A random session identity key. */
static int64_t random_key(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v) {
        /* No entropy source: the time, the pid and a counter, hashed. */
        static _Atomic uint64_t counter;
        struct {
            int64_t now;
            pid_t pid;
            uint64_t n;
        } seed = {anylock_now_ns(), getpid(), ++counter};
        unsigned char h[32];
        anylock_sha256(&seed, sizeof seed, h);
        memcpy(&v, h, sizeof v);
    }
    return (int64_t)v;
}

static void conn_close(pconn *c)
{
    if (!c)
        return;
    if (c->pg)
        PQfinish(c->pg);
    free(c);
}

/* Waits for fd to be ready for events until deadline: 1 ready, 0 timed out,
 * -1 error. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t ms = anylock_ms_until(deadline);
        int t = ms > 3600 * 1000 ? 3600 * 1000 : (int)ms;
        if (deadline == ANYLOCK_DEADLINE_NEVER)
            t = 3600 * 1000;
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, t);
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return -1;
        if (r == 0 && deadline != ANYLOCK_DEADLINE_NEVER && anylock_ms_until(deadline) == 0)
            return 0;
    }
}

static size_t count_list(const char *s)
{
    if (!s || !*s)
        return 0;
    size_t n = 1;
    for (; *s; s++)
        n += *s == ',';
    return n;
}

/* The i-th element of a comma-separated list, into buf. */
static void list_item(const char *s, size_t i, char *buf, size_t size)
{
    while (i > 0 && s && *s) {
        if (*s++ == ',')
            i--;
    }
    size_t n = s ? strcspn(s, ",") : 0;
    if (n >= size)
        n = size - 1;
    if (n)
        memcpy(buf, s, n);
    buf[n] = '\0';
}

static const char *kw_get(const pg_state *s, const char *name)
{
    for (size_t i = 0; i < s->nkw; i++)
        if (!strcmp(s->kw[i], name))
            return s->val[i];
    return NULL;
}

/* How a failed connection attempt reads: AUTH when the server refused the
 * credentials, URL_BAD_PARAM when libpq refused a parameter before trying,
 * else CONNECT. */
static anylock_status connect_failure_status(const char *msg, int before_network)
{
    if (strstr(msg, "password authentication failed") || strstr(msg, "no password supplied") ||
        strstr(msg, "pg_hba.conf") || strstr(msg, "authentication failed") || strstr(msg, "password is required") ||
        (strstr(msg, "role \"") && strstr(msg, "does not exist")))
        return ANYLOCK_AUTH;
    if (before_network && (!strncmp(msg, "invalid ", 8) || strstr(msg, "could not match") ||
                           strstr(msg, "invalid connection option") || strstr(msg, "invalid integer value")))
        return ANYLOCK_URL_BAD_PARAM;
    return ANYLOCK_CONNECT;
}

/* One attempt at one connection (for host list entry `host`, or the whole
 * list when host is NULL), bounded by deadline. */
static anylock_status connect_one(anylock_op *op, pg_state *s, const char *host, const char *port,
                                  const char *hostaddr, int64_t deadline, pconn **out)
{
    const char **kw = calloc(s->nkw + 1, sizeof *kw), **val = calloc(s->nkw + 1, sizeof *val);
    pconn *c = calloc(1, sizeof *c);
    if (!kw || !val || !c) {
        free(kw);
        free(val);
        free(c);
        return anylock_op_error(op, ANYLOCK_NOMEM, "postgres: out of memory");
    }
    for (size_t i = 0; i < s->nkw; i++) {
        kw[i] = s->kw[i];
        val[i] = s->val[i];
        if (host && !strcmp(kw[i], "host"))
            val[i] = host;
        else if (port && !strcmp(kw[i], "port"))
            val[i] = port;
        else if (hostaddr && !strcmp(kw[i], "hostaddr"))
            val[i] = hostaddr;
    }
    c->pg = PQconnectStartParams(kw, val, 0);
    free(kw);
    free(val);
    if (!c->pg) {
        free(c);
        return anylock_op_error(op, ANYLOCK_NOMEM, "postgres: out of memory");
    }
    char msg[200];
    anylock_status st = ANYLOCK_OK;
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        first_line(msg, sizeof msg, PQerrorMessage(c->pg));
        st = connect_failure_status(msg, 1);
        st = anylock_op_error(op, st, "postgres: %s%s", st == ANYLOCK_URL_BAD_PARAM ? "bad connection parameter: " : "",
                              msg);
    }
    PostgresPollingStatusType ps = PGRES_POLLING_WRITING;
    while (st == ANYLOCK_OK && ps != PGRES_POLLING_OK) {
        if (ps == PGRES_POLLING_FAILED) {
            first_line(msg, sizeof msg, PQerrorMessage(c->pg));
            st = anylock_op_error(op, connect_failure_status(msg, 0), "postgres: %s", msg);
            break;
        }
        int r = wait_fd(PQsocket(c->pg), ps == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline);
        if (r == 0) {
            st = anylock_op_error(op, ANYLOCK_CONNECT, "postgres: the server (%.64s) did not complete the connection "
                                  "within the connect timeout", host ? host : kw_get(s, "host") ? kw_get(s, "host") : "default");
            break;
        }
        if (r < 0) {
            st = anylock_op_error(op, ANYLOCK_CONNECT, "postgres: poll: %s", strerror(errno));
            break;
        }
        ps = PQconnectPoll(c->pg);
    }
    if (st == ANYLOCK_OK && PQserverVersion(c->pg) < MIN_SERVER_VERSION)
        st = anylock_op_error(op, ANYLOCK_STORE, "postgres: the server is version %d; anylock needs PostgreSQL 14 or "
                              "later", PQserverVersion(c->pg) / 10000);
    if (st == ANYLOCK_OK && PQsetnonblocking(c->pg, 1) != 0)
        st = anylock_op_error(op, ANYLOCK_CONNECT, "postgres: cannot make the connection non-blocking");
    if (st != ANYLOCK_OK) {
        conn_close(c);
        return st;
    }
    PQsetNoticeReceiver(c->pg, notice_rx, c);
    /* The identity lock that says this session lives (see schema_sql). */
    c->sess = random_key();
    char hi[16], lo[16];
    snprintf(hi, sizeof hi, "%" PRId32, (int32_t)(uint32_t)((uint64_t)c->sess >> 32));
    snprintf(lo, sizeof lo, "%" PRId32, (int32_t)(uint32_t)(uint64_t)c->sess);
    const char *vals[2] = {hi, lo};
    PGresult *r;
    st = query(op, c, deadline, "starting a session", "SELECT pg_catalog.pg_advisory_lock($1::integer, $2::integer)",
               2, vals, NULL, NULL, &r);
    if (st != ANYLOCK_OK) {
        conn_close(c);
        return st;
    }
    PQclear(r);
    *out = c;
    return ANYLOCK_OK;
}

/* Opens a connection: the host list is tried in order, each host with a
 * connect timeout of its own (as libpq's connect_timeout), within deadline. */
static anylock_status pool_open(void *ctx, anylock_op *op, int64_t deadline, void **out)
{
    pg_state *s = ctx;
    const char *hosts = kw_get(s, "host"), *ports = kw_get(s, "port"), *addrs = kw_get(s, "hostaddr");
    size_t nh = count_list(hosts), np = count_list(ports), na = count_list(addrs);
    int split = nh > 1 && (np <= 1 || np == nh) && (na == 0 || na == nh);
    size_t attempts = split ? nh : 1;
    anylock_status st = ANYLOCK_CONNECT;
    for (size_t i = 0; i < attempts; i++) {
        int64_t d = anylock_now_ns() + s->connect_timeout_ms * 1000000;
        if (deadline != ANYLOCK_DEADLINE_NEVER && deadline != 0 && deadline < d)
            d = deadline;
        char h[256], p[32], a[64];
        if (split) {
            list_item(hosts, i, h, sizeof h);
            list_item(ports, np == nh ? i : 0, p, sizeof p);
            list_item(addrs, i, a, sizeof a);
        }
        pconn *c = NULL;
        st = connect_one(op, s, split ? h : NULL, split && np ? p : NULL, split && na ? a : NULL, d, &c);
        if (st == ANYLOCK_OK) {
            *out = c;
            return ANYLOCK_OK;
        }
        if (st != ANYLOCK_CONNECT || (deadline != ANYLOCK_DEADLINE_NEVER && deadline != 0 &&
                                      anylock_now_ns() >= deadline))
            break;
    }
    return st;
}

static void pool_close(void *ctx, void *conn)
{
    (void)ctx;
    conn_close(conn);
}

/* An idle connection has nothing to read: readable means the server closed
 * it (or sent a FATAL message before doing so). */
static int pool_usable(void *ctx, void *conn)
{
    (void)ctx;
    pconn *c = conn;
    struct pollfd p = {.fd = PQsocket(c->pg), .events = POLLIN};
    return !c->broken && PQstatus(c->pg) == CONNECTION_OK && poll(&p, 1, 0) == 0;
}

static const anylock_pool_methods pool_methods = {pool_open, pool_close, pool_usable};

/* ---- one statement, bounded ------------------------------------------------ */

static anylock_status await_result(anylock_op *op, pconn *c, int64_t deadline, const char *what, PGresult **out);

static anylock_status send_failed(anylock_op *op, pconn *c, const char *what)
{
    c->broken = 1;
    char msg[160];
    first_line(msg, sizeof msg, PQerrorMessage(c->pg));
    return anylock_op_error(op, ANYLOCK_IO, "postgres: %s: cannot send: %s", what, msg);
}

/*
 * Sends sql with params and reads its one result until deadline.  OK with
 * *out set (the caller clears it); else a status and message, and the
 * connection marked broken when the stream cannot be trusted.  what names
 * the step for messages.  stmt >= 0 runs it as that prepared statement of
 * the connection (prepared on its first use there); -1 unprepared.
 */
static anylock_status query_stmt(anylock_op *op, pconn *c, int64_t deadline, const char *what, int stmt,
                                 const char *sql, int n, const char *const *vals, const int *lens, const int *fmts,
                                 PGresult **out)
{
    *out = NULL;
    if (c->broken || PQstatus(c->pg) != CONNECTION_OK) {
        c->broken = 1;
        return anylock_op_error(op, ANYLOCK_IO, "postgres: %s: the connection is closed", what);
    }
    char name[24];
    if (stmt >= 0) {
        snprintf(name, sizeof name, "anylock_%d", stmt);
        if (!(c->prepared & 1u << stmt)) {
            if (!PQsendPrepare(c->pg, name, sql, n, NULL))
                return send_failed(op, c, what);
            PGresult *r;
            anylock_status st = await_result(op, c, deadline, what, &r);
            if (st != ANYLOCK_OK)
                return st;
            PQclear(r);
            c->prepared |= 1u << stmt;
        }
        if (!PQsendQueryPrepared(c->pg, name, n, vals, lens, fmts, 0))
            return send_failed(op, c, what);
    } else if (!PQsendQueryParams(c->pg, sql, n, NULL, vals, lens, fmts, 0)) {
        return send_failed(op, c, what);
    }
    return await_result(op, c, deadline, what, out);
}

static anylock_status query(anylock_op *op, pconn *c, int64_t deadline, const char *what, const char *sql,
                            int n, const char *const *vals, const int *lens, const int *fmts, PGresult **out)
{
    return query_stmt(op, c, deadline, what, -1, sql, n, vals, lens, fmts, out);
}

/* Reads the one result of what was sent, until deadline. */
static anylock_status await_result(anylock_op *op, pconn *c, int64_t deadline, const char *what, PGresult **out)
{
    *out = NULL;
    PGresult *res = NULL;
    anylock_status st = ANYLOCK_OK;
    for (;;) {
        int f = PQflush(c->pg);
        if (f < 0) {
            st = ANYLOCK_IO;
            break;
        }
        if (f == 0 && !PQisBusy(c->pg)) {
            PGresult *r = PQgetResult(c->pg);
            if (!r)
                break;
            if (res)
                PQclear(res);
            res = r;
            continue;
        }
        int w = wait_fd(PQsocket(c->pg), (short)(POLLIN | (f ? POLLOUT : 0)), deadline);
        if (w <= 0) {
            c->broken = 1;
            if (res)
                PQclear(res);
            c->timed_out = w == 0;
            if (w == 0)
                return anylock_op_error(op, ANYLOCK_IO, "postgres: %s: no answer from the server in time", what);
            return anylock_op_error(op, ANYLOCK_IO, "postgres: %s: poll: %s", what, strerror(errno));
        }
        if (!PQconsumeInput(c->pg)) {
            st = ANYLOCK_IO;
            break;
        }
    }
    if (st == ANYLOCK_OK && res && (PQresultStatus(res) == PGRES_TUPLES_OK || PQresultStatus(res) == PGRES_COMMAND_OK)) {
        *out = res;
        return ANYLOCK_OK;
    }
    char msg[200];
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (res && PQresultStatus(res) == PGRES_FATAL_ERROR)
        first_line(msg, sizeof msg, PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
    else
        first_line(msg, sizeof msg, PQerrorMessage(c->pg));
    if (session_ended(state)) {
        c->ended = 1;
        snprintf(c->ended_msg, sizeof c->ended_msg, "%.159s", msg);
    }
    if (PQstatus(c->pg) != CONNECTION_OK || !res || st != ANYLOCK_OK)
        c->broken = 1;
    st = res ? sqlstate_status(state) : ANYLOCK_IO;
    if (c->broken && st == ANYLOCK_STORE)
        st = ANYLOCK_IO;
    if (res)
        PQclear(res);
    if (c->broken && c->ended)
        return anylock_op_error(op, st, "postgres: %s: the server ended the session (%s)", what, c->ended_msg);
    if (c->broken)
        return anylock_op_error(op, st, "postgres: %s: connection lost: %s", what, msg[0] ? msg : "no message");
    return anylock_op_error(op, st, "postgres: %s: %s", what, msg);
}

/* A simple statement without parameters (setup). */
static anylock_status exec_simple(anylock_op *op, pconn *c, int64_t deadline, const char *what, const char *sql)
{
    if (!PQsendQuery(c->pg, sql)) {
        c->broken = 1;
        return anylock_op_error(op, ANYLOCK_IO, "postgres: %s: cannot send", what);
    }
    anylock_status first = ANYLOCK_OK;
    char msg[200] = "";
    for (;;) {
        int f = PQflush(c->pg);
        if (f < 0) {
            c->broken = 1;
            return anylock_op_error(op, ANYLOCK_IO, "postgres: %s: connection lost", what);
        }
        if (f == 0 && !PQisBusy(c->pg)) {
            PGresult *r = PQgetResult(c->pg);
            if (!r)
                break;
            if (PQresultStatus(r) == PGRES_FATAL_ERROR && first == ANYLOCK_OK) {
                first = sqlstate_status(PQresultErrorField(r, PG_DIAG_SQLSTATE));
                first_line(msg, sizeof msg, PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY));
            }
            PQclear(r);
            continue;
        }
        int w = wait_fd(PQsocket(c->pg), (short)(POLLIN | (f ? POLLOUT : 0)), deadline);
        if (w <= 0 || !PQconsumeInput(c->pg)) {
            c->broken = 1;
            return anylock_op_error(op, ANYLOCK_IO, "postgres: %s: %s", what,
                                    w == 0 ? "no answer from the server in time" : "connection lost");
        }
    }
    if (PQstatus(c->pg) != CONNECTION_OK)
        c->broken = 1;
    if (first != ANYLOCK_OK)
        return anylock_op_error(op, first, "postgres: %s: %s", what, msg);
    return ANYLOCK_OK;
}

/* ---- keys ------------------------------------------------------------------- */

/* The advisory key of data: the first 8 bytes of its SHA-256, big-endian,
 * keeping the top key_bits bits (64 but in tests). */
static int64_t key_of(const pg_state *s, const void *data, size_t len)
{
    unsigned char h[32];
    anylock_sha256(data, len, h);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | h[i];
    if (s->key_bits < 64)
        v >>= 64 - s->key_bits;
    return (int64_t)v;
}

/* ---- the watcher ------------------------------------------------------------ */

static void watcher_wake(pg_state *s)
{
    uint64_t one = 1;
    if (s->wfd >= 0) {
        ssize_t r = write(s->wfd, &one, sizeof one);
        (void)r;
    }
}

/* Marks l's connection dead and reports the loss (s->wmu held). */
static void report_lost(pg_state *s, pg_lock *l, anylock_status why, const char *msg)
{
    (void)s;
    if (!l->dead) {
        l->dead = 1;
        l->lost_why = why;
        snprintf(l->lost_msg, sizeof l->lost_msg, "%s", msg);
        int64_t again = l->registered_ns + (int64_t)REREPORT_MS * 1000000;
        l->rereport_at = anylock_now_ns() < again ? again : 0;
    }
    anylock_lock_lost(l->lock, l->lost_why, "%s", l->lost_msg);
}

/* Reads what the server sent on an idle pinned connection (s->wmu held):
 * anything but a NOTICE means the session is gone. */
static void check_conn(pg_state *s, pg_lock *l)
{
    pconn *c = l->conn;
    int ok = PQconsumeInput(c->pg) && PQstatus(c->pg) == CONNECTION_OK;
    if (ok && !c->ended) {
        /* A notice or a parameter change: consumed, nothing lost.  An
         * idle connection has no results to read. */
        PQisBusy(c->pg);
        return;
    }
    c->broken = 1;
    if (l->kept) {
        /* Not held (its turn is being kept): nothing lost.  The watcher
         * closes it. */
        l->dead = 1;
        return;
    }
    char msg[ANYLOCK_ERRMSG_MAX];
    if (c->ended) {
        snprintf(msg, sizeof msg, "postgres: the server ended the session holding lock \"%s\" (%.100s)", l->name,
                 c->ended_msg);
        report_lost(s, l, ANYLOCK_NOT_HELD, msg);
    } else {
        char why[160];
        first_line(why, sizeof why, PQerrorMessage(c->pg));
        snprintf(msg, sizeof msg, "postgres: lost the connection holding lock \"%s\": %.100s", l->name, why);
        report_lost(s, l, ANYLOCK_IO, msg);
    }
}

/* Lets go of a lock that a session kept through its holder's turn: unlocks
 * it there and puts the session back in the pool, or closes a session that
 * cannot be used (which lets go of the lock as well). */
static void end_turn(pg_state *s, pconn *c, int64_t slot)
{
    int ok = 0;
    if (!c->broken) {
        char errbuf[ANYLOCK_ERRMSG_MAX], key[24];
        anylock_op o = {.state = s, .errbuf = errbuf};
        snprintf(key, sizeof key, "%" PRId64, slot);
        const char *vals[1] = {key};
        PGresult *r;
        if (query(&o, c, anylock_now_ns() + s->command_timeout_ms * 1000000, "ending a turn",
                  "SELECT pg_catalog.pg_advisory_unlock($1::bigint)", 1, vals, NULL, NULL, &r) == ANYLOCK_OK) {
            ok = PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
            PQclear(r);
        }
    }
    anylock_pool_put(s->pool, c, !ok);
}

static int watch_remove_locked(pg_state *s, pg_lock *l);

/* Takes a kept lock's session out of l and the watcher's set (s->wmu held),
 * for end_turn(). */
static pconn *unkeep_locked(pg_state *s, pg_lock *l)
{
    pconn *c = l->conn;
    watch_remove_locked(s, l);
    l->conn = NULL;
    l->kept = 0;
    return c;
}

typedef struct wslot {
    pg_lock *l;
    uint64_t gen;
    size_t idx;
} wslot;

static void *watcher_main(void *arg)
{
    pg_state *s = arg;
    /* Out of memory, it watches what fits (at least the wake-up). */
    struct pollfd one, *heap_fds = NULL, *fds = &one;
    wslot one_map, *heap_map = NULL, *map = &one_map;
    size_t cap = 1;
    pthread_mutex_lock(&s->wmu);
    while (!s->wstop) {
        if (cap < s->nwatched + 1) {
            size_t nc = (s->nwatched + 1) * 2;
            struct pollfd *f = realloc(heap_fds, nc * sizeof *f);
            if (f)
                heap_fds = f;
            wslot *m = realloc(heap_map, nc * sizeof *m);
            if (m)
                heap_map = m;
            if (f && m) {
                fds = heap_fds;
                map = heap_map;
                cap = nc;
            }
        }
        size_t n = 1;
        int64_t next = ANYLOCK_DEADLINE_NEVER, now = anylock_now_ns();
        fds[0] = (struct pollfd){.fd = s->wfd, .events = POLLIN};
        pg_lock *due = NULL;
        for (size_t i = 0; i < s->nwatched && !due; i++) {
            pg_lock *l = s->watched[i];
            if (l->kept && !l->busy && (l->dead || l->turn_end <= now))
                due = l;
            else if (l->kept && !l->busy && l->turn_end < next)
                next = l->turn_end;
        }
        if (due) {
            /* A turn is over (or its session is gone): let the lock go. */
            int64_t slot = due->slot;
            pconn *c = unkeep_locked(s, due);
            pthread_mutex_unlock(&s->wmu);
            end_turn(s, c, slot);
            pthread_mutex_lock(&s->wmu);
            continue;
        }
        for (size_t i = 0; i < s->nwatched && n < cap; i++) {
            pg_lock *l = s->watched[i];
            if (l->dead) {
                if (l->rereport_at && l->rereport_at <= now) {
                    l->rereport_at = 0;
                    anylock_lock_lost(l->lock, l->lost_why, "%s", l->lost_msg);
                } else if (l->rereport_at && l->rereport_at < next) {
                    next = l->rereport_at;
                }
                continue;
            }
            if (l->busy)
                continue;
            fds[n] = (struct pollfd){.fd = PQsocket(l->conn->pg), .events = POLLIN};
            map[n] = (wslot){l, l->wgen, i};
            n++;
        }
        pthread_mutex_unlock(&s->wmu);
        int64_t ms = anylock_ms_until(next);
        int r = poll(fds, n, next == ANYLOCK_DEADLINE_NEVER ? -1 : ms > 60000 ? 60000 : (int)ms);
        pthread_mutex_lock(&s->wmu);
        if (r <= 0)
            continue;
        if (fds[0].revents) {
            uint64_t v;
            ssize_t rd = read(s->wfd, &v, sizeof v);
            (void)rd;
        }
        for (size_t k = 1; k < n; k++) {
            if (!fds[k].revents)
                continue;
            wslot w = map[k];
            /* Still the same registration, and nobody uses the connection. */
            if (w.idx >= s->nwatched || s->watched[w.idx] != w.l || w.l->wgen != w.gen || w.l->busy || w.l->dead)
                continue;
            check_conn(s, w.l);
        }
    }
    pthread_mutex_unlock(&s->wmu);
    free(heap_fds);
    free(heap_map);
    return NULL;
}

/* Adds a newly pinned lock to the watcher's set (starting the watcher), or
 * renews the registration of one taken again through its turn. */
static anylock_status watch_add(anylock_op *op, pg_state *s, pg_lock *l)
{
    pthread_mutex_lock(&s->wmu);
    anylock_status st = ANYLOCK_OK;
    if (s->wfd < 0) {
        s->wfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (s->wfd < 0)
            st = anylock_op_error(op, ANYLOCK_INTERNAL, "postgres: eventfd: %s", strerror(errno));
    }
    if (st == ANYLOCK_OK && !s->wstarted) {
        if (anylock_thread_create(&s->wthread, watcher_main, s) != 0)
            st = anylock_op_error(op, ANYLOCK_INTERNAL, "postgres: cannot start the connection watcher thread");
        else
            s->wstarted = 1;
    }
    if (st == ANYLOCK_OK && !l->watched && s->nwatched == s->capwatched) {
        size_t nc = s->capwatched ? s->capwatched * 2 : 16;
        pg_lock **g = realloc(s->watched, nc * sizeof *g);
        if (!g)
            st = anylock_op_error(op, ANYLOCK_NOMEM, "postgres: out of memory");
        else {
            s->watched = g;
            s->capwatched = nc;
        }
    }
    if (st == ANYLOCK_OK) {
        l->busy = 0;
        l->dead = 0;
        l->rereport_at = 0;
        l->registered_ns = anylock_now_ns();
        l->wgen = ++s->wgen;
        l->lock = op->lock;
        snprintf(l->name, sizeof l->name, "%.64s", op->name);
        if (!l->watched) {
            /* (A session kept through a turn is in the set already.) */
            l->watched = 1;
            l->widx = s->nwatched;
            s->watched[s->nwatched++] = l;
        }
    }
    pthread_mutex_unlock(&s->wmu);
    if (st == ANYLOCK_OK)
        watcher_wake(s);
    return st;
}

/* Takes l out of the watcher's set (s->wmu held); 1 if it was dead. */
static int watch_remove_locked(pg_state *s, pg_lock *l)
{
    if (!l->watched)
        return l->dead;
    size_t i = l->widx;
    s->watched[i] = s->watched[--s->nwatched];
    s->watched[i]->widx = i;
    l->watched = 0;
    return l->dead;
}

/* Marks the connection busy for a slot: 0, or -1 if it is dead (the loss
 * was reported; its message is in l->lost_msg). */
static int watch_busy(pg_state *s, pg_lock *l)
{
    pthread_mutex_lock(&s->wmu);
    int dead = l->dead;
    if (!dead)
        l->busy = 1;
    pthread_mutex_unlock(&s->wmu);
    return dead ? -1 : 0;
}

static void watch_idle(pg_state *s, pg_lock *l)
{
    pthread_mutex_lock(&s->wmu);
    l->busy = 0;
    pthread_mutex_unlock(&s->wmu);
    watcher_wake(s);
}

/* ---- open / close ----------------------------------------------------------- */

static anylock_status kw_set(pg_state *s, const char *name, const char *value)
{
    for (size_t i = 0; i < s->nkw; i++) {
        if (!strcmp(s->kw[i], name)) {
            char *v = strdup(value);
            if (!v)
                return ANYLOCK_NOMEM;
            free(s->val[i]);
            s->val[i] = v;
            return ANYLOCK_OK;
        }
    }
    char **k = realloc(s->kw, (s->nkw + 2) * sizeof *k);
    if (k)
        s->kw = k;
    char **v = realloc(s->val, (s->nkw + 2) * sizeof *v);
    if (v)
        s->val = v;
    if (!k || !v)
        return ANYLOCK_NOMEM;
    s->kw[s->nkw] = strdup(name);
    s->val[s->nkw] = strdup(value);
    if (!s->kw[s->nkw] || !s->val[s->nkw]) {
        free(s->kw[s->nkw]);
        free(s->val[s->nkw]);
        return ANYLOCK_NOMEM;
    }
    s->nkw++;
    s->kw[s->nkw] = NULL;
    s->val[s->nkw] = NULL;
    return ANYLOCK_OK;
}

/* An SQL identifier anylock accepts for a table or schema name. */
static int good_ident(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max || !(s[0] == '_' || (s[0] >= 'a' && s[0] <= 'z')))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(s[i] == '_' || (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')))
            return 0;
    return 1;
}

/* The libpq keywords from the URL: user, password, the host list, the
 * database, then the query's libpq parameters (which win, as in libpq's
 * URIs), then anylock's defaults for what is still unset. */
static anylock_status build_keywords(anylock_op *op, pg_state *s, const anylock_url *url)
{
    anylock_status st = ANYLOCK_OK;
    s->kw = calloc(1, sizeof *s->kw);
    s->val = calloc(1, sizeof *s->val);
    if (!s->kw || !s->val)
        return ANYLOCK_NOMEM;
    if (url->user && url->user[0])
        st = kw_set(s, "user", url->user);
    if (st == ANYLOCK_OK && url->password)
        st = kw_set(s, "password", url->password);
    if (st == ANYLOCK_OK && url->nhosts) {
        size_t hl = 1, pl = 1;
        int any_port = 0;
        for (size_t i = 0; i < url->nhosts; i++) {
            hl += strlen(url->hosts[i].host) + 1;
            pl += 7;
            any_port |= url->hosts[i].port != 0;
        }
        char *h = calloc(1, hl), *p = calloc(1, pl);
        if (!h || !p) {
            free(h);
            free(p);
            return ANYLOCK_NOMEM;
        }
        for (size_t i = 0; i < url->nhosts; i++) {
            if (i) {
                strcat(h, ",");
                strcat(p, ",");
            }
            strcat(h, url->hosts[i].host);
            if (url->hosts[i].port)
                snprintf(p + strlen(p), pl - strlen(p), "%d", url->hosts[i].port);
        }
        int has_host = 0;
        for (size_t i = 0; i < url->nhosts; i++)
            has_host |= url->hosts[i].host[0] != '\0';
        if (has_host)
            st = kw_set(s, "host", h);
        if (st == ANYLOCK_OK && any_port)
            st = kw_set(s, "port", p);
        free(h);
        free(p);
    }
    if (st == ANYLOCK_OK && url->path[0] && url->path[1]) {
        if (strchr(url->path + 1, '/'))
            return anylock_op_error(op, ANYLOCK_URL_BAD_PATH, "postgres: the path is the database name, one "
                                    "segment (\"/dbname\")");
        st = kw_set(s, "dbname", url->path + 1);
    }
    for (size_t i = 0; st == ANYLOCK_OK && i < url->nparams; i++) {
        if (is_anylock_param(url->params[i].name))
            continue;
        if (!strcmp(url->params[i].name, "options")) {
            continue; /* below, after anylock's own settings */
        }
        st = kw_set(s, url->params[i].name, url->params[i].value);
    }
    const char *user_opts = anylock_url_param_get(url, "options");
    if (st == ANYLOCK_OK) {
        char *opts = user_opts && *user_opts ? xprintf("%s %s", session_options, user_opts) : strdup(session_options);
        if (!opts)
            return ANYLOCK_NOMEM;
        st = kw_set(s, "options", opts);
        free(opts);
    }
    static const char *const defaults[][2] = {
        {"application_name", DEFAULT_APPLICATION_NAME}, {"keepalives", "1"},
        {"keepalives_idle", DEFAULT_KEEPALIVES_IDLE},   {"keepalives_interval", DEFAULT_KEEPALIVES_INTERVAL},
        {"keepalives_count", DEFAULT_KEEPALIVES_COUNT}, {"tcp_user_timeout", DEFAULT_TCP_USER_TIMEOUT},
    };
    for (size_t i = 0; st == ANYLOCK_OK && i < sizeof defaults / sizeof *defaults; i++)
        if (!kw_get(s, defaults[i][0]))
            st = kw_set(s, defaults[i][0], defaults[i][1]);
    return st == ANYLOCK_NOMEM ? anylock_op_error(op, ANYLOCK_NOMEM, "postgres: out of memory") : st;
}

/* Quoted names and the statements, once the schema is known. */
static anylock_status build_sql(pg_state *s)
{
    s->q_table = xprintf("\"%s\".\"%s\"", s->schema, s->table);
    s->q_view = xprintf("\"%s\".\"%s_v1_live\"", s->schema, s->table);
    s->q_seq = xprintf("\"%s\".\"%s_token\"", s->schema, s->table);
    s->q_take = xprintf("\"%s\".\"%s_v1_take\"", s->schema, s->table);
    s->q_wait = xprintf("\"%s\".\"%s_v1_wait\"", s->schema, s->table);
    s->q_hold = xprintf("\"%s\".\"%s_v2_hold\"", s->schema, s->table);
    s->q_release = xprintf("\"%s\".\"%s_v1_release\"", s->schema, s->table);
    s->q_release2 = xprintf("\"%s\".\"%s_v2_release\"", s->schema, s->table);
    s->q_reset = xprintf("\"%s\".\"%s_v1_reset\"", s->schema, s->table);
    s->q_alive = xprintf("\"%s\".\"%s_v1_alive\"", s->schema, s->table);
    if (!s->q_alive || !s->q_table || !s->q_view || !s->q_seq || !s->q_take || !s->q_hold || !s->q_wait ||
        !s->q_release || !s->q_release2 || !s->q_reset)
        return ANYLOCK_NOMEM;
    s->sql_take = xprintf("SELECT status, token, holder, other, other_mode, other_permits FROM "
                          "%s($1::bigint, $2::bigint, $3::bytea, $4::text, $5::integer, $6::integer, $7::bytea, "
                          "$8::bigint, $9::boolean, $10::bigint)",
                          s->q_take);
    s->sql_wait = xprintf("SELECT status, token FROM %s($1::bigint, $2::bigint, $3::bytea, $4::text, $5::integer, "
                          "$6::integer, $7::bytea, $8::bigint, $9::bigint, $10::bigint)",
                          s->q_wait);
    s->sql_hold = xprintf("SELECT %s($1::bigint, $2::bigint, $3::bytea, $4::text, $5::integer, $6::integer, "
                          "$7::bytea, $8::bigint, $9::bigint)",
                          s->q_hold);
    s->sql_release = xprintf("SELECT %s($1::bigint, $2::integer, $3::boolean)", s->q_release2);
    s->sql_extend = xprintf("UPDATE %s SET expires_at = pg_catalog.clock_timestamp() + $2::bigint * interval "
                            "'1 millisecond' WHERE slot = $1::bigint AND pid = pg_catalog.pg_backend_pid() AND "
                            "token IS NOT NULL",
                            s->q_table);
    static const char cols[] =
        "SELECT name, owner, mode, permits, meta, CASE WHEN expires_at IS NULL THEN -1 ELSE "
        "GREATEST(0, pg_catalog.ceil(EXTRACT(epoch FROM expires_at - pg_catalog.clock_timestamp()) * "
        "1000))::bigint END FROM ";
    s->sql_inspect = xprintf("%s%s WHERE slot = $1::bigint AND name = $2::bytea", cols, s->q_view);
    s->sql_list = xprintf("%s%s WHERE pg_catalog.substr(name, 1, pg_catalog.length($1::bytea)) "
                          "= $1::bytea",
                          cols, s->q_view);
    s->sql_reset = xprintf("SELECT %s($1::bigint, $2::bytea, $3::bytea, $4::bigint)", s->q_reset);
    s->sql_zombie = xprintf("SELECT pg_catalog.pg_terminate_backend(t.pid, $4::bigint) FROM %s t WHERE t.pid = "
                            "$1::integer AND t.slot = $2::bigint AND t.owner = $3::text",
                            s->q_table);
    if (!s->sql_zombie || !s->sql_take || !s->sql_hold || !s->sql_wait || !s->sql_release || !s->sql_extend || !s->sql_inspect || !s->sql_list ||
        !s->sql_reset)
        return ANYLOCK_NOMEM;
    return ANYLOCK_OK;
}

/* Finds the schema and creates the table and functions if they are
 * missing: one round trip when they are there. */
static anylock_status setup(anylock_op *op, pg_state *s, pconn *c)
{
    int64_t deadline = anylock_op_io_deadline(op, s->command_timeout_ms);
    char fn[80];
    snprintf(fn, sizeof fn, "%s_v2_release", s->table);
    const char *vals[2] = {s->schema, fn};
    PGresult *r;
    anylock_status st = query(op, c, deadline, "looking for the lock table",
                              "SELECT COALESCE($1::text, pg_catalog.current_schema()::text), "
                              "pg_catalog.to_regproc(pg_catalog.quote_ident(COALESCE($1::text, "
                              "pg_catalog.current_schema()::text)) || '.' || pg_catalog.quote_ident($2::text)) IS NOT NULL",
                              2, vals, NULL, NULL, &r);
    if (st != ANYLOCK_OK)
        return st;
    int have = 0;
    if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0)) {
        if (!s->schema)
            s->schema = strdup(PQgetvalue(r, 0, 0));
        have = PQgetvalue(r, 0, 1)[0] == 't';
    }
    PQclear(r);
    if (!s->schema)
        return anylock_op_error(op, ANYLOCK_STORE, "postgres: the session has no current schema (search_path is "
                                "empty): give one with ?schema=NAME");
    if (!good_ident(s->schema, 48))
        return anylock_op_error(op, ANYLOCK_STORE, "postgres: the current schema \"%.64s\" is not a plain lower-case "
                                "name: give one with ?schema=NAME", s->schema);
    if (build_sql(s) != ANYLOCK_OK)
        return anylock_op_error(op, ANYLOCK_NOMEM, "postgres: out of memory");
    if (have)
        return ANYLOCK_OK;
    char *body = NULL, *all = NULL;
    {
        const char *names[][2] = {{"@T@", s->q_table},      {"@V@", s->q_view},         {"@S@", s->q_seq},
                                  {"@FT@", s->q_take},     {"@FK@", s->q_hold},        {"@FW@", s->q_wait},
                                  {"@FR@", s->q_release},  {"@FR2@", s->q_release2},   {"@FX@", s->q_reset},
                                  {"@FA@", s->q_alive}};
        body = substitute(schema_sql, names, sizeof names / sizeof *names);
    }
    unsigned char h[32];
    char tag[200];
    snprintf(tag, sizeof tag, "anylock setup %s.%s", s->schema, s->table);
    anylock_sha256(tag, strlen(tag), h);
    int32_t k1 = (int32_t)((uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3]);
    int32_t k2 = (int32_t)((uint32_t)h[4] << 24 | (uint32_t)h[5] << 16 | (uint32_t)h[6] << 8 | h[7]);
    if (body)
        all = xprintf("BEGIN;\nSELECT pg_catalog.pg_advisory_xact_lock(%" PRId32 ", %" PRId32 ");\n%sCOMMIT;", k1, k2,
                      body);
    free(body);
    if (!all)
        return anylock_op_error(op, ANYLOCK_NOMEM, "postgres: out of memory");
    st = exec_simple(op, c, anylock_op_io_deadline(op, s->command_timeout_ms), "creating the lock table", all);
    free(all);
    if (st != ANYLOCK_OK && !c->broken) {
        /* Leave the connection outside any failed transaction. */
        exec_simple(op, c, anylock_op_io_deadline(op, s->command_timeout_ms), "rollback", "ROLLBACK");
    }
    return st;
}

static anylock_status pg_open(anylock_op *op, const anylock_url *url)
{
    pg_state *s = op->state;
    s->wfd = -1;
    if (pthread_mutex_init(&s->wmu, NULL) != 0)
        return anylock_op_error(op, ANYLOCK_NOMEM, "postgres: cannot make a mutex");
    s->wmu_init = 1;
    anylock_status st;
    if ((st = anylock_url_param_ms(op, url, "connect_timeout", DEFAULT_CONNECT_TIMEOUT_MS, &s->connect_timeout_ms)) ||
        (st = anylock_url_param_ms(op, url, "command_timeout", DEFAULT_COMMAND_TIMEOUT_MS, &s->command_timeout_ms)) ||
        (st = anylock_url_param_ms(op, url, "turn", DEFAULT_TURN_MS, &s->turn_ms)))
        return st;
    if (s->connect_timeout_ms <= 0 || s->command_timeout_ms <= 0)
        return anylock_op_error(op, ANYLOCK_URL_BAD_PARAM, "postgres: connect_timeout and command_timeout must be "
                                "more than 0 s");
    s->key_bits = 64;
    const char *kb = anylock_url_param_get(url, "key_bits");
    if (kb) {
        char *end;
        long v = strtol(kb, &end, 10);
        if (!*kb || *end || v < 1 || v > 64)
            return anylock_op_error(op, ANYLOCK_URL_BAD_PARAM, "postgres: key_bits must be a number from 1 to 64, "
                                    "not \"%.32s\"", kb);
        s->key_bits = (int)v;
    }
    const char *table = anylock_url_param_get(url, "table");
    if (!table)
        table = DEFAULT_TABLE;
    if (!good_ident(table, 48))
        return anylock_op_error(op, ANYLOCK_URL_BAD_PARAM, "postgres: table must be 1 to 48 lower-case letters, "
                                "digits and '_', starting with a letter or '_', not \"%.64s\"", table);
    const char *schema = anylock_url_param_get(url, "schema");
    if (schema && !good_ident(schema, 48))
        return anylock_op_error(op, ANYLOCK_URL_BAD_PARAM, "postgres: schema must be 1 to 48 lower-case letters, "
                                "digits and '_', starting with a letter or '_', not \"%.64s\"", schema);
    const char *repl = anylock_url_param_get(url, "replication");
    (void)repl;
    s->table = strdup(table);
    if (!s->table || (schema && !(s->schema = strdup(schema))))
        return anylock_op_error(op, ANYLOCK_NOMEM, "postgres: out of memory");
    st = build_keywords(op, s, url);
    if (st != ANYLOCK_OK)
        return st;
    if (anylock_pool_create(&pool_methods, s, POOL_IDLE_MAX, &s->pool) != ANYLOCK_OK)
        return anylock_op_error(op, ANYLOCK_NOMEM, "postgres: out of memory");
    /* The first connection checks the server and the table now, so that a
     * bad URL or an unreachable server is reported by open. */
    void *conn;
    st = pool_open(s, op, ANYLOCK_DEADLINE_NEVER, &conn);
    if (st != ANYLOCK_OK)
        return st;
    st = setup(op, s, conn);
    anylock_pool_put(s->pool, conn, st != ANYLOCK_OK || ((pconn *)conn)->broken);
    return st;
}

static void pg_close(anylock_op *op)
{
    pg_state *s = op->state;
    if (s->wmu_init) {
        pthread_mutex_lock(&s->wmu);
        s->wstop = 1;
        int started = s->wstarted;
        pthread_mutex_unlock(&s->wmu);
        watcher_wake(s);
        if (started)
            pthread_join(s->wthread, NULL);
        pthread_mutex_destroy(&s->wmu);
    }
    if (s->wfd >= 0)
        close(s->wfd);
    free(s->watched);
    anylock_pool_destroy(s->pool);
    for (size_t i = 0; s->kw && i < s->nkw; i++) {
        free(s->kw[i]);
        free(s->val[i]);
    }
    free(s->kw);
    free(s->val);
    free(s->schema);
    free(s->table);
    char **strs[] = {&s->q_alive, &s->q_table,    &s->q_view,     &s->q_seq,         &s->q_take,       &s->q_wait,
                     &s->q_hold,     &s->q_release2, &s->sql_hold,
                     &s->q_release,  &s->q_reset,    &s->sql_take,      &s->sql_wait,     &s->sql_release,
                     &s->sql_extend, &s->sql_inspect, &s->sql_list,     &s->sql_reset,
                     &s->sql_zombie};
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++)
        free(*strs[i]);
}

/* ---- acquire ----------------------------------------------------------------- */

typedef struct take_args {
    char key[24], slot[24], mode[4], permits[12], expires[24], extra[24], sess[24];
    const char *vals[10];
    int lens[10], fmts[10];
} take_args;

static void take_args_init(take_args *a, const anylock_op *op, int64_t key, int64_t slot, int64_t sess)
{
    memset(a, 0, sizeof *a);
    snprintf(a->key, sizeof a->key, "%" PRId64, key);
    snprintf(a->slot, sizeof a->slot, "%" PRId64, slot);
    snprintf(a->mode, sizeof a->mode, "%d", (int)op->mode);
    snprintf(a->permits, sizeof a->permits, "%u", op->mode == ANYLOCK_SEMAPHORE ? op->permits : 0u);
    snprintf(a->expires, sizeof a->expires, "%" PRId64, op->expires_ms);
    static char empty[1];
    a->vals[0] = a->key;
    a->vals[1] = a->slot;
    a->vals[2] = op->key;
    a->lens[2] = (int)op->key_len;
    a->fmts[2] = 1;
    a->vals[3] = NULL; /* the owner id, NUL-terminated below by the caller */
    a->vals[4] = a->mode;
    a->vals[5] = a->permits;
    a->vals[6] = op->meta_len ? op->meta : NULL;
    a->lens[6] = (int)op->meta_len;
    a->fmts[6] = 1;
    a->vals[7] = a->expires;
    a->vals[8] = a->extra;
    snprintf(a->sess, sizeof a->sess, "%" PRId64, sess);
    a->vals[9] = a->sess;
    (void)empty;
}

static anylock_status acquired(anylock_op *op, pg_state *s, pg_lock *l, pconn *c, int64_t slot, const char *token)
{
    op->token = (uint64_t)strtoull(token, NULL, 10);
    /* The expiry, if any, is the holder's alone (the server frees the lock
     * only when the session ends): it runs from the grant's answer. */
    op->granted_at = anylock_now_ns();
    l->conn = c;
    l->slot = slot;
    l->mode = (int)op->mode;
    anylock_status st = watch_add(op, s, l);
    if (st != ANYLOCK_OK) {
        l->conn = NULL;
        conn_close(c); /* the session's end frees the lock */
    }
    return st;
}

/* A statement that takes the lock failed (st).  When its answer did not
 * come in time the session may still take the lock for this owner until
 * the server sees the connection closed: OUTCOME_UNKNOWN, and the next
 * release ends that session. */
static anylock_status gave_up(anylock_op *op, pg_state *s, pg_lock *l, pconn *c, int64_t slot, anylock_status st)
{
    int zombie = c->timed_out && !c->ended ? PQbackendPID(c->pg) : 0;
    anylock_pool_put(s->pool, c, 1);
    if (!zombie)
        return st;
    l->zombie_pid = zombie;
    l->zombie_slot = slot;
    return anylock_op_error(op, ANYLOCK_OUTCOME_UNKNOWN, "lock \"%.64s\": the server did not answer in time; the "
                            "session asked may take it until the server sees the connection closed (the next "
                            "acquire or release ends that session)", op->name);
}

/* Ends the session an earlier acquire gave up on, if it holds or waits for
 * the lock for this owner: OK if it did, NOT_HELD if not. */
static anylock_status end_zombie(anylock_op *op, pg_state *s, pg_lock *l)
{
    void *conn;
    anylock_status st = anylock_pool_get(s->pool, op, anylock_op_io_deadline(op, s->connect_timeout_ms), &conn);
    if (st != ANYLOCK_OK)
        return st;
    pconn *c = conn;
    char pid[16], slot[24], id[ANYLOCK_ID_MAX + 1], wait[24];
    snprintf(pid, sizeof pid, "%d", l->zombie_pid);
    snprintf(slot, sizeof slot, "%" PRId64, l->zombie_slot);
    memcpy(id, op->id, op->id_len);
    id[op->id_len] = '\0';
    int64_t io = anylock_op_io_deadline(op, s->command_timeout_ms);
    snprintf(wait, sizeof wait, "%" PRId64, anylock_ms_until(io) * 4 / 5 + 1);
    const char *vals[4] = {pid, slot, id, wait};
    PGresult *r;
    st = query(op, c, io, "ending an abandoned session", s->sql_zombie, 4, vals, NULL, NULL, &r);
    if (st == ANYLOCK_OK) {
        int had = PQntuples(r) > 0;
        PQclear(r);
        l->zombie_pid = 0;
        if (!had)
            st = anylock_op_error(op, ANYLOCK_NOT_HELD, "lock \"%.64s\" is not held by this handle", op->name);
    }
    anylock_pool_put(s->pool, c, c->broken);
    return st;
}

/* The session l->conn kept the lock through the holder's turn (l->busy is
 * set): the holder's row again, in one round trip.  The turn goes on. */
static anylock_status hold_again(anylock_op *op, pg_state *s, pg_lock *l, int64_t key, int64_t slot, char *id)
{
    pconn *c = l->conn;
    take_args a;
    take_args_init(&a, op, key, slot, c->sess);
    a.vals[3] = id;
    /* The take's arguments but its 9th (whether to queue). */
    a.vals[8] = a.vals[9];
    PGresult *r;
    anylock_status st = query_stmt(op, c, anylock_op_io_deadline(op, s->command_timeout_ms), "taking the lock again",
                                   ST_HOLD, s->sql_hold, 9, a.vals, a.lens, a.fmts, &r);
    if (st == ANYLOCK_OK && (PQntuples(r) != 1 || PQgetisnull(r, 0, 0))) {
        PQclear(r);
        st = anylock_op_error(op, ANYLOCK_PROTOCOL, "postgres: unexpected answer from the hold function");
        c->broken = 1;
    }
    if (st != ANYLOCK_OK) {
        pthread_mutex_lock(&s->wmu);
        watch_remove_locked(s, l);
        l->conn = NULL;
        pthread_mutex_unlock(&s->wmu);
        return gave_up(op, s, l, c, slot, st);
    }
    st = acquired(op, s, l, c, slot, PQgetvalue(r, 0, 0));
    PQclear(r);
    watcher_wake(s);
    return st;
}

static anylock_status pg_acquire(anylock_op *op)
{
    pg_state *s = op->state;
    pg_lock *l = op->lock_state;
    if (op->mode == ANYLOCK_SEMAPHORE)
        return anylock_op_error(op, ANYLOCK_MODE_UNSUPPORTED, "postgres: semaphores are not supported");
    int64_t key = key_of(s, op->key, op->key_len);
    int64_t slot = key;
    char id[ANYLOCK_ID_MAX + 1];
    memcpy(id, op->id, op->id_len);
    id[op->id_len] = '\0';
    /* A session that kept the lock through this holder's turn takes it
     * again; one whose turn is over lets it go first. */
    pthread_mutex_lock(&s->wmu);
    int again = l->conn && l->kept && !l->dead && op->mode == ANYLOCK_EXCLUSIVE && anylock_now_ns() < l->turn_end;
    int kept = l->conn && l->kept;
    pconn *old = NULL;
    if (again) {
        l->kept = 0;
        l->busy = 1;
    } else if (l->conn)
        old = unkeep_locked(s, l);
    pthread_mutex_unlock(&s->wmu);
    if (again)
        return hold_again(op, s, l, key, slot, id);
    if (old && kept)
        end_turn(s, old, l->slot);
    else if (old)
        anylock_pool_put(s->pool, old, 1); /* never left by the core (it releases first) */

    void *conn;
    anylock_status st = anylock_pool_get(s->pool, op, anylock_op_io_deadline(op, s->connect_timeout_ms), &conn);
    if (st != ANYLOCK_OK)
        return st;
    pconn *c = conn;
    take_args a;
    take_args_init(&a, op, key, slot, c->sess);
    a.vals[3] = id;
    int queue = op->deadline != 0;
    snprintf(a.extra, sizeof a.extra, "%s", queue ? "true" : "false");
    PGresult *r;
    st = query_stmt(op, c, anylock_op_io_deadline(op, s->command_timeout_ms), "taking the lock", ST_TAKE, s->sql_take,
                    10, a.vals, a.lens, a.fmts, &r);
    if (st != ANYLOCK_OK)
        return gave_up(op, s, l, c, slot, st);
    if (PQntuples(r) != 1 || PQnfields(r) != 6) {
        PQclear(r);
        anylock_pool_put(s->pool, c, 1);
        return anylock_op_error(op, ANYLOCK_PROTOCOL, "postgres: unexpected answer from the take function");
    }
    const char *status = PQgetvalue(r, 0, 0);
    if (!strcmp(status, "ok")) {
        l->turn_end = anylock_now_ns() + s->turn_ms * 1000000;
        st = acquired(op, s, l, c, slot, PQgetvalue(r, 0, 1));
        PQclear(r);
        return st;
    }
    char holder[ANYLOCK_ID_MAX + 1];
    snprintf(holder, sizeof holder, "%s", PQgetisnull(r, 0, 2) ? "a session without a row" : PQgetvalue(r, 0, 2));
    if (!strcmp(status, "already")) {
        st = anylock_op_error(op, ANYLOCK_ALREADY_HELD, "lock \"%.64s\" is already held by this owner id", op->name);
    } else if (!strcmp(status, "collision")) {
        size_t n = 0;
        unsigned char *other = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 3), &n);
        size_t pl = op->prefix_len;
        int same_prefix = other && n >= pl && !memcmp(other, op->prefix, pl);
        st = anylock_op_error(op, ANYLOCK_STORE_UNSAFE, "postgres: lock \"%.64s\" and lock \"%.*s\" map to the same "
                              "advisory key %" PRId64 " and the other is in use; rename one of them",
                              op->name, other ? (int)(n - (same_prefix ? pl : 0) > 64 ? 64 : n - (same_prefix ? pl : 0)) : 1,
                              other ? (const char *)other + (same_prefix ? pl : 0) : "?", key);
        PQfreemem(other);
    } else if (!strcmp(status, "mode")) {
        int om = atoi(PQgetvalue(r, 0, 4));
        st = anylock_op_error(op, ANYLOCK_MODE_CONFLICT, "lock \"%.64s\" is held as %s", op->name,
                              om == ANYLOCK_SEMAPHORE ? "a semaphore" : "a lock, not a semaphore");
    } else if (!strcmp(status, "busy")) {
        st = anylock_op_error(op, ANYLOCK_BUSY, "lock \"%.64s\" is held by %s", op->name, holder);
    } else if (!strcmp(status, "queued")) {
        st = ANYLOCK_TIMEOUT;
    } else {
        st = anylock_op_error(op, ANYLOCK_PROTOCOL, "postgres: unexpected status \"%.16s\" from the take function",
                              status);
    }
    PQclear(r);
    if (st != ANYLOCK_TIMEOUT) {
        anylock_pool_put(s->pool, c, c->broken);
        return st;
    }

    /* Queued: wait in the server's queue, bounded by lock_timeout and, on
     * this side, by the deadline itself. */
    anylock_op_log(op, ANYLOCK_LOG_DEBUG, ANYLOCK_EVENT_WAITING, "waiting for \"%.64s\", held by %s", op->name, holder);
    int64_t timeout_ms = 0; /* 0: no lock_timeout */
    if (op->deadline != ANYLOCK_DEADLINE_NEVER) {
        int64_t left = anylock_op_ms_left(op);
        int64_t margin = left / 50 < WAIT_MARGIN_MS ? left / 50 : WAIT_MARGIN_MS;
        timeout_ms = left - margin;
        if (timeout_ms < 1) {
            /* No time to wait: ending the session drops the queued row. */
            anylock_pool_put(s->pool, c, 1);
            return anylock_op_error(op, ANYLOCK_TIMEOUT, "lock \"%.64s\": timed out; held by %s", op->name, holder);
        }
    }
    snprintf(a.extra, sizeof a.extra, "%" PRId64, timeout_ms);
    int64_t wait_deadline = op->deadline;
    if (wait_deadline != ANYLOCK_DEADLINE_NEVER)
        wait_deadline += (int64_t)WAIT_GRACE_MS * 1000000;
    st = query_stmt(op, c, wait_deadline, "waiting for the lock", ST_WAIT, s->sql_wait, 10, a.vals, a.lens, a.fmts, &r);
    if (st != ANYLOCK_OK)
        return gave_up(op, s, l, c, slot, st);
    if (PQntuples(r) != 1 || PQnfields(r) != 2) {
        PQclear(r);
        anylock_pool_put(s->pool, c, 1);
        return anylock_op_error(op, ANYLOCK_PROTOCOL, "postgres: unexpected answer from the wait function");
    }
    status = PQgetvalue(r, 0, 0);
    if (!strcmp(status, "ok")) {
        l->turn_end = anylock_now_ns() + s->turn_ms * 1000000;
        st = acquired(op, s, l, c, slot, PQgetvalue(r, 0, 1));
    } else if (!strcmp(status, "timeout")) {
        anylock_pool_put(s->pool, c, 0);
        st = anylock_op_error(op, ANYLOCK_TIMEOUT, "lock \"%.64s\": timed out; held by %s", op->name, holder);
    } else {
        anylock_pool_put(s->pool, c, 1);
        st = anylock_op_error(op, ANYLOCK_PROTOCOL, "postgres: unexpected status \"%.16s\" from the wait function",
                              status);
    }
    PQclear(r);
    return st;
}

/* ---- release, extend ----------------------------------------------------------- */

static anylock_status lost_status(anylock_op *op, const pg_lock *l)
{
    return anylock_op_error(op, ANYLOCK_NOT_HELD, "lock \"%.64s\" was lost: %s", op->name, l->lost_msg);
}

static anylock_status pg_release(anylock_op *op)
{
    pg_state *s = op->state;
    pg_lock *l = op->lock_state;
    if (!l->conn && l->zombie_pid)
        return end_zombie(op, s, l);
    if (!l->conn)
        return anylock_op_error(op, ANYLOCK_NOT_HELD, "lock \"%.64s\" is not held by this handle", op->name);
    pconn *c = l->conn;
    if (watch_busy(s, l) != 0) {
        pthread_mutex_lock(&s->wmu);
        watch_remove_locked(s, l);
        l->conn = NULL;
        pthread_mutex_unlock(&s->wmu);
        anylock_pool_put(s->pool, c, 1);
        return lost_status(op, l);
    }
    /* Within an exclusive holder's turn the session may keep the lock. */
    int keep = l->mode == ANYLOCK_EXCLUSIVE && s->turn_ms > 0 && anylock_now_ns() < l->turn_end;
    char slot[24], mode[4];
    snprintf(slot, sizeof slot, "%" PRId64, l->slot);
    snprintf(mode, sizeof mode, "%d", l->mode);
    const char *vals[3] = {slot, mode, keep ? "true" : "false"};
    PGresult *r;
    anylock_status st = query_stmt(op, c, anylock_op_io_deadline(op, s->command_timeout_ms), "releasing the lock",
                                   ST_RELEASE, s->sql_release, 3, vals, NULL, NULL, &r);
    int kept = st == ANYLOCK_OK && PQntuples(r) == 1 && !strcmp(PQgetvalue(r, 0, 0), "kept");
    pthread_mutex_lock(&s->wmu);
    if (kept) {
        l->kept = 1;
        l->busy = 0;
    } else {
        watch_remove_locked(s, l);
        l->conn = NULL;
    }
    pthread_mutex_unlock(&s->wmu);
    watcher_wake(s);
    if (kept) {
        PQclear(r);
        return ANYLOCK_OK;
    }
    if (st == ANYLOCK_OK) {
        int ok = PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
        PQclear(r);
        anylock_pool_put(s->pool, c, !ok);
        if (!ok)
            return anylock_op_error(op, ANYLOCK_NOT_HELD, "lock \"%.64s\": its session no longer held it", op->name);
        return ANYLOCK_OK;
    }
    int ended = c->ended;
    char why[sizeof c->ended_msg];
    snprintf(why, sizeof why, "%s", c->ended_msg);
    anylock_pool_put(s->pool, c, 1);
    if (ended)
        return anylock_op_error(op, ANYLOCK_NOT_HELD, "lock \"%.64s\" was lost: the server ended its session (%s)",
                                op->name, why);
    /* The connection is closed: the server frees the lock when it sees. */
    return st;
}

static anylock_status pg_extend(anylock_op *op)
{
    pg_state *s = op->state;
    pg_lock *l = op->lock_state;
    if (!l->conn)
        return anylock_op_error(op, ANYLOCK_NOT_HELD, "lock \"%.64s\" is not held by this handle", op->name);
    if (watch_busy(s, l) != 0)
        return lost_status(op, l);
    char slot[24], ms[24];
    snprintf(slot, sizeof slot, "%" PRId64, l->slot);
    snprintf(ms, sizeof ms, "%" PRId64, op->expires_ms);
    const char *vals[2] = {slot, ms};
    PGresult *r;
    op->granted_at = anylock_now_ns();
    anylock_status st = query_stmt(op, l->conn, anylock_op_io_deadline(op, s->command_timeout_ms),
                                   "extending the lock", ST_EXTEND, s->sql_extend, 2, vals, NULL, NULL, &r);
    if (st == ANYLOCK_OK) {
        int n = atoi(PQcmdTuples(r));
        PQclear(r);
        if (n != 1)
            st = anylock_op_error(op, ANYLOCK_NOT_HELD, "lock \"%.64s\": its row is gone (reset)", op->name);
    }
    if (st != ANYLOCK_OK && l->conn->broken) {
        /* A pinned connection that failed cannot be used again, and
         * closing it ends the session: the lock is lost. */
        char msg[ANYLOCK_ERRMSG_MAX];
        snprintf(msg, sizeof msg, "%s", op->errbuf);
        pthread_mutex_lock(&s->wmu);
        report_lost(s, l, l->conn->ended ? ANYLOCK_NOT_HELD : st, msg);
        l->busy = 0;
        pthread_mutex_unlock(&s->wmu);
        if (l->conn->ended)
            st = ANYLOCK_NOT_HELD;
        return st;
    }
    watch_idle(s, l);
    return st;
}

static void pg_forget(anylock_op *op)
{
    pg_state *s = op->state;
    pg_lock *l = op->lock_state;
    pthread_mutex_lock(&s->wmu);
    watch_remove_locked(s, l);
    pconn *c = l->conn;
    l->conn = NULL;
    l->kept = 0;
    pthread_mutex_unlock(&s->wmu);
    if (c)
        anylock_pool_put(s->pool, c, 1); /* closing it ends the session, which frees the lock */
}

/* ---- enumerate, reset ------------------------------------------------------------- */

static anylock_status pg_enumerate(anylock_op *op, anylock_emitter *em)
{
    pg_state *s = op->state;
    void *conn;
    anylock_status st = anylock_pool_get(s->pool, op, anylock_op_io_deadline(op, s->connect_timeout_ms), &conn);
    if (st != ANYLOCK_OK)
        return st;
    pconn *c = conn;
    PGresult *r;
    char key[24];
    if (op->name) {
        snprintf(key, sizeof key, "%" PRId64, key_of(s, op->key, op->key_len));
        const char *vals[2] = {key, op->key};
        int lens[2] = {0, (int)op->key_len}, fmts[2] = {0, 1};
        st = query(op, c, anylock_op_io_deadline(op, s->command_timeout_ms), "reading the lock", s->sql_inspect, 2,
                   vals, lens, fmts, &r);
    } else {
        const char *vals[1] = {op->prefix};
        int lens[1] = {(int)op->prefix_len}, fmts[1] = {1};
        st = query(op, c, anylock_op_io_deadline(op, s->command_timeout_ms), "listing the locks", s->sql_list, 1,
                   vals, lens, fmts, &r);
    }
    if (st != ANYLOCK_OK) {
        anylock_pool_put(s->pool, c, 1);
        return st;
    }
    int stop = 0;
    for (int i = 0; i < PQntuples(r) && !stop; i++) {
        size_t nlen = 0, mlen = 0;
        unsigned char *name = PQunescapeBytea((const unsigned char *)PQgetvalue(r, i, 0), &nlen);
        unsigned char *meta = PQgetisnull(r, i, 4) ? NULL
                                                   : PQunescapeBytea((const unsigned char *)PQgetvalue(r, i, 4), &mlen);
        if (!name || (!PQgetisnull(r, i, 4) && !meta)) {
            PQfreemem(name);
            PQfreemem(meta);
            st = anylock_op_error(op, ANYLOCK_NOMEM, "postgres: out of memory");
            break;
        }
        if (nlen >= op->prefix_len) {
            anylock_record rec = {
                .name = (const char *)name + op->prefix_len,
                .name_len = nlen - op->prefix_len,
                .id = PQgetvalue(r, i, 1),
                .id_len = (size_t)PQgetlength(r, i, 1),
                .expires_in_ms = strtoll(PQgetvalue(r, i, 5), NULL, 10),
                .mode = (anylock_mode)atoi(PQgetvalue(r, i, 2)),
                .permits = (unsigned)strtoul(PQgetvalue(r, i, 3), NULL, 10),
                .meta = (const char *)meta,
                .meta_len = mlen,
            };
            stop = anylock_emit(em, &rec);
        }
        PQfreemem(name);
        PQfreemem(meta);
    }
    PQclear(r);
    anylock_pool_put(s->pool, c, c->broken);
    return st;
}

static anylock_status do_reset(anylock_op *op, int all, size_t *count)
{
    pg_state *s = op->state;
    void *conn;
    anylock_status st = anylock_pool_get(s->pool, op, anylock_op_io_deadline(op, s->connect_timeout_ms), &conn);
    if (st != ANYLOCK_OK)
        return st;
    pconn *c = conn;
    char key[24], wait[24];
    snprintf(key, sizeof key, "%" PRId64, all ? (int64_t)0 : key_of(s, op->key, op->key_len));
    /* Each holder's end is awaited for most of the command timeout. */
    int64_t io = anylock_op_io_deadline(op, s->command_timeout_ms);
    int64_t wait_ms = anylock_ms_until(io) * 4 / 5;
    snprintf(wait, sizeof wait, "%" PRId64, wait_ms > 0 ? wait_ms : 1);
    const char *vals[4] = {key, all ? NULL : op->key, op->prefix, wait};
    int lens[4] = {0, all ? 0 : (int)op->key_len, (int)op->prefix_len, 0}, fmts[4] = {0, 1, 1, 0};
    PGresult *r;
    st = query(op, c, io, all ? "resetting every lock" : "resetting the lock", s->sql_reset, 4, vals, lens, fmts, &r);
    if (st == ANYLOCK_OK) {
        if (count)
            *count = PQntuples(r) == 1 ? (size_t)strtoul(PQgetvalue(r, 0, 0), NULL, 10) : 0;
        PQclear(r);
    }
    anylock_pool_put(s->pool, c, c->broken);
    return st;
}

static anylock_status pg_reset(anylock_op *op)
{
    return do_reset(op, 0, NULL);
}

static anylock_status pg_reset_all(anylock_op *op, size_t *count)
{
    *count = 0;
    return do_reset(op, 1, count);
}

const anylock_backend anylock__postgres_backend = {
    .version = ANYLOCK_BACKEND_VERSION,
    .name = "postgres",
    .state_size = sizeof(pg_state),
    .flags = ANYLOCK_BACKEND_SESSION | ANYLOCK_BACKEND_FAIR | ANYLOCK_BACKEND_TOKEN | ANYLOCK_BACKEND_SHARED |
             ANYLOCK_BACKEND_LIST,
    .expiry_resolution_ms = 1,
    .params = pg_params,
    .open = pg_open,
    .close = pg_close,
    .acquire = pg_acquire,
    .release = pg_release,
    .extend = pg_extend,
    .reset = pg_reset,
    .reset_all = pg_reset_all,
    .lock_size = sizeof(pg_lock),
    .enumerate = pg_enumerate,
    .forget = pg_forget,
};
