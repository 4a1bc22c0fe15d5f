/*
 * anylock: named locks across processes and machines, on whichever store a
 * team already runs.  One API; the store is picked by a URL.
 *
 * This header is the reference documentation of the public API.
 *
 * Handles
 *   anylock_client  a connection to one store, opened from a URL.  A client
 *                   may be shared by several threads: every function taking
 *                   a client is thread-safe.
 *   anylock_lock    one named lock made from a client.  A lock handle is used
 *                   by one thread at a time (the library's renewal threads
 *                   coordinate with it internally).
 *
 * Statuses
 *   Every fallible call returns an anylock_status; ANYLOCK_OK is the only
 *   success value.  Contention (ANYLOCK_BUSY) and an elapsed wait
 *   (ANYLOCK_TIMEOUT) are statuses like any other.  A human-readable detail
 *   of the last failure is kept per lock (anylock_lock_errmsg) and per client
 *   (anylock_errmsg).  No message ever contains a password.
 *
 * Durations
 *   Durations are seconds as double, with sub-second precision.  They are
 *   converted to whole milliseconds by rounding UP (never truncated, and a
 *   positive duration never becomes 0), and a store with a coarser clock
 *   rounds up further (its documentation says so).  ANYLOCK_FOREVER means
 *   "no limit": wait forever, or never expire.  NaN, negative values and
 *   finite values above ANYLOCK_DURATION_MAX are rejected with
 *   ANYLOCK_BAD_DURATION.
 *
 * Ownership
 *   A lock is owned by an owner id.  On most stores the id is the whole
 *   truth: any handle whose id equals the holder's may release or extend the
 *   lock, whichever handle or process took it (as in python-redis-lock).  On
 *   session-bound stores (ANYLOCK_FEATURE_SESSION: the lock lives on the
 *   holder's connection or open file) only the handle that took it can.
 *
 * Blocking
 *   anylock_open() returns within the store's connect timeout.
 *   anylock_acquire() returns within the lock's wait timeout, also when the
 *   store stalls (a try-once acquire within the store's command timeout).
 *   Every other call returns within the store's command timeout.  Each
 *   store's page in docs/ gives its timeouts and their URL parameters.
 *
 * Processes
 *   A client belongs to the process that opened it.  After fork(), every
 *   call on a client (or a lock made from it) inherited from the parent
 *   answers ANYLOCK_FORKED without touching the store, so the child never
 *   talks over the parent's connections; anylock_close() and
 *   anylock_lock_free() in the child free the handles without closing the
 *   parent's connections.  Open a new client in the child.
 */
#ifndef ANYLOCK_H
#define ANYLOCK_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(ANYLOCK_BUILDING) && defined(__GNUC__)
#define ANYLOCK_EXPORT __attribute__((visibility("default")))
#else
#define ANYLOCK_EXPORT
#endif

#define ANYLOCK_VERSION_MAJOR 0
#define ANYLOCK_VERSION_MINOR 2
#define ANYLOCK_VERSION_PATCH 0
#define ANYLOCK_VERSION_STRING "0.2.0"
/* MAJOR * 1000000 + MINOR * 1000 + PATCH, to compare against (as
 * SQLITE_VERSION_NUMBER): #if ANYLOCK_VERSION_NUMBER >= 2000. */
#define ANYLOCK_VERSION_NUMBER 2000

/* Limits.  Names are at most ANYLOCK_NAME_MAX bytes of UTF-8 without control
 * characters (C0, DEL or C1); owner ids are 1 to ANYLOCK_ID_MAX printable
 * ASCII characters (0x21-0x7e); prefixes are at most ANYLOCK_PREFIX_MAX
 * bytes with the same rule as names; URLs are at most ANYLOCK_URL_MAX bytes;
 * labels (anylock_lock_set_label) at most ANYLOCK_LABEL_MAX bytes of UTF-8. */
#define ANYLOCK_NAME_MAX 1024
#define ANYLOCK_ID_MAX 64
#define ANYLOCK_PREFIX_MAX 128
#define ANYLOCK_URL_MAX 4096
#define ANYLOCK_ERRMSG_MAX 256
#define ANYLOCK_HOST_MAX 64
#define ANYLOCK_LABEL_MAX 200
/* The most permits a semaphore may have. */
#define ANYLOCK_PERMITS_MAX 100000

/* The longest finite duration accepted, in seconds (about 3 years). */
#define ANYLOCK_DURATION_MAX 1e8
/* No limit: wait forever (timeouts) or never expire (expiries). */
#define ANYLOCK_FOREVER (INFINITY)

/* Library defaults, as pylock has them; change them process-wide with
 * anylock_set_default_*(), per client in the URL query, per lock with the
 * anylock_lock_set_*() calls.  On session-bound stores locks have no expiry
 * unless one is asked for (by the URL, the process-wide default once set,
 * or the lock), since such a lock is freed when its holder goes away. */
#define ANYLOCK_DEFAULT_TIMEOUT 60.0
#define ANYLOCK_DEFAULT_EXPIRES 10.0
#define ANYLOCK_DEFAULT_PREFIX "lock:"

/*
 * The statuses.  X(NAME, value, message): the enum is ANYLOCK_NAME = value.
 * Values are fixed forever: new statuses are appended with the next value.
 */
#define ANYLOCK_STATUS_MAP(X)                                                                      \
    X(OK, 0, "success")                                                                            \
    X(BUSY, 1, "the lock is held by another owner")                                                \
    X(TIMEOUT, 2, "timed out waiting for the lock")                                                \
    X(ALREADY_HELD, 3, "this owner already holds the lock")                                        \
    X(NOT_HELD, 4, "the lock is not held by this owner")                                           \
    X(NOT_EXPIRABLE, 5, "the lock was taken without an expiry and cannot be extended")             \
    X(UNSUPPORTED, 6, "operation not supported by this backend")                                   \
    X(INVALID, 7, "invalid argument")                                                              \
    X(MISUSE, 8, "library used in an invalid order")                                               \
    X(NOMEM, 9, "out of memory")                                                                   \
    X(BAD_NAME, 10, "invalid lock name")                                                           \
    X(BAD_ID, 11, "invalid owner id")                                                              \
    X(BAD_PREFIX, 12, "invalid key prefix")                                                        \
    X(BAD_DURATION, 13, "invalid duration")                                                        \
    X(TRY_WITH_TIMEOUT, 14, "a wait timeout cannot be combined with try-once")                     \
    X(TIMEOUT_TOO_LARGE, 15, "wait timeout is longer than the expiry and auto-renewal is off")     \
    X(RENEWAL_NEEDS_EXPIRY, 16, "auto-renewal needs an expiry")                                    \
    X(URL_MALFORMED, 17, "malformed URL")                                                          \
    X(URL_NO_SCHEME, 18, "URL has no scheme")                                                      \
    X(URL_UNKNOWN_SCHEME, 19, "no backend for this URL scheme")                                    \
    X(BACKEND_DISABLED, 20, "backend not compiled into this build")                                \
    X(URL_BAD_ESCAPE, 21, "bad percent-escape in URL")                                             \
    X(URL_BAD_USERINFO, 22, "bad user or password in URL")                                         \
    X(URL_BAD_HOST, 23, "bad host in URL")                                                         \
    X(URL_BAD_PORT, 24, "bad port number in URL")                                                  \
    X(URL_BAD_PATH, 25, "bad path in URL")                                                         \
    X(URL_BAD_QUERY, 26, "malformed URL query")                                                    \
    X(URL_UNKNOWN_PARAM, 27, "unknown URL query parameter")                                        \
    X(URL_BAD_PARAM, 28, "bad value for URL query parameter")                                      \
    X(URL_TOO_LONG, 29, "URL too long")                                                            \
    X(BACKEND_EXISTS, 30, "a backend is already registered for this scheme")                       \
    X(BACKEND_INVALID, 31, "invalid backend definition")                                           \
    X(CONNECT, 32, "cannot connect to the store")                                                  \
    X(AUTH, 33, "the store refused the credentials")                                               \
    X(IO, 34, "lost connection to the store or it did not answer in time")                         \
    X(PROTOCOL, 35, "unexpected reply from the store")                                             \
    X(STORE, 36, "the store reported an error")                                                    \
    X(ACCESS, 37, "permission denied by the store")                                                \
    X(STORE_UNSAFE, 38, "the store cannot provide safe locking as configured")                     \
    X(INTERNAL, 39, "internal error")                                                              \
    X(OUTCOME_UNKNOWN, 40, "the store's answer was lost: it may or may not have done it")          \
    X(NO_TOKEN, 41, "this store does not issue fencing tokens")                                    \
    X(MODE_UNSUPPORTED, 42, "this store cannot take shared locks or semaphores")                   \
    X(MODE_CONFLICT, 43, "the name is held in another mode or with other permits")                 \
    X(FORKED, 44, "the client was opened by another process (before fork)")

typedef enum anylock_status {
#define ANYLOCK__ENUM(name, value, msg) ANYLOCK_##name = value,
    ANYLOCK_STATUS_MAP(ANYLOCK__ENUM)
#undef ANYLOCK__ENUM
        ANYLOCK_STATUS_COUNT_ /* not a status: the number of statuses */
} anylock_status;

#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
_Static_assert(ANYLOCK_STATUS_COUNT_ == ANYLOCK_FORKED + 1, "status values must be dense and in order");
#endif

typedef struct anylock_client anylock_client;
typedef struct anylock_lock anylock_lock;

/* How a lock is held.  ANYLOCK_EXCLUSIVE is one holder (the default);
 * ANYLOCK_SHARED is any number of shared holders and no exclusive one (a
 * reader-writer lock: exclusive and shared holders of one name exclude each
 * other); ANYLOCK_SEMAPHORE is at most `permits` holders at once. */
typedef enum anylock_mode { ANYLOCK_EXCLUSIVE = 0, ANYLOCK_SHARED = 1, ANYLOCK_SEMAPHORE = 2 } anylock_mode;

/* What a store can do: anylock_client_features(). */
#define ANYLOCK_FEATURE_NO_EXCLUSION 0x01u /* acquiring never excludes anyone (open://) */
#define ANYLOCK_FEATURE_SESSION 0x02u      /* a lock is freed the moment its holder's session (connection,
                                              open file) ends; an expiry is optional and enforced by the
                                              holder's process */
#define ANYLOCK_FEATURE_FAIR 0x04u         /* waiters are served in the order they came */
#define ANYLOCK_FEATURE_TOKEN 0x08u        /* fencing tokens (anylock_lock_token) */
#define ANYLOCK_FEATURE_SHARED 0x10u       /* ANYLOCK_SHARED */
#define ANYLOCK_FEATURE_SEMAPHORE 0x20u    /* ANYLOCK_SEMAPHORE */
#define ANYLOCK_FEATURE_EXTEND 0x100u      /* anylock_extend and auto-renewal of expiring locks */
#define ANYLOCK_FEATURE_INSPECT 0x200u     /* anylock_inspect, anylock_locked, anylock_owner, anylock_holders */
#define ANYLOCK_FEATURE_RESET 0x400u       /* anylock_reset */
#define ANYLOCK_FEATURE_LIST 0x800u        /* anylock_list */
#define ANYLOCK_FEATURE_RESET_ALL 0x1000u  /* anylock_reset_all */

/* What is known about one lock in the store (anylock_inspect, anylock_list).
 * Strings that came from the store may hold any bytes another client wrote:
 * use the lengths, and escape them before showing them. */
typedef struct anylock_info {
    const char *name;               /* the lock's name (without prefix); valid during the call */
    int held;                       /* 1 if anyone holds it */
    char owner[ANYLOCK_ID_MAX + 1]; /* a holder's id (the first ANYLOCK_ID_MAX bytes of it); "" when free */
    double expires_in;              /* seconds left (the last holder's, for several holders);
                                       ANYLOCK_FOREVER if no expiry; 0 when free */
    /* ---- since 0.2 ---- */
    size_t name_len;                /* bytes of name */
    size_t owner_len;               /* bytes of the stored owner value (may exceed ANYLOCK_ID_MAX) */
    anylock_mode mode;              /* how it is held */
    unsigned permits;               /* for ANYLOCK_SEMAPHORE, the number of permits; else 0 */
    unsigned holders;               /* how many hold it (anylock_holders lists them) */
    /* Who the holder (the one in owner) is, where the store keeps it:
     * "" / 0 when unknown (another client took it, or the store cannot). */
    char host[ANYLOCK_HOST_MAX + 1];
    long pid;
    double since;                   /* when it was taken, Unix time in seconds */
    char label[ANYLOCK_LABEL_MAX + 1];
} anylock_info;

/* One holder of a lock (anylock_holders).  Strings are valid during the
 * callback only. */
typedef struct anylock_holder {
    const char *id;   /* the holder's id as stored */
    size_t id_len;
    double expires_in;
    anylock_mode mode;
    unsigned permits;
    const char *host; /* "" when unknown */
    long pid;         /* 0 when unknown */
    double since;     /* 0 when unknown */
    const char *label;
} anylock_holder;

/* Called by anylock_list() once per held lock; return non-zero to stop.
 * The callback may call the library. */
typedef int (*anylock_list_fn)(const anylock_info *info, void *userdata);

/* Called by anylock_holders() once per holder; return non-zero to stop. */
typedef int (*anylock_holder_fn)(const anylock_holder *holder, void *userdata);

/*
 * Called, from one of the client's renewal threads, when a lock this handle
 * held is lost while held: its store said another owner has it or it is gone
 * (ANYLOCK_NOT_HELD); or its expiry came without a successful renewal (the
 * status of the last failed renewal, for example ANYLOCK_IO, or
 * ANYLOCK_TIMEOUT if the renewal did not answer in time); or the store told
 * the backend (a session that ended: ANYLOCK_IO or ANYLOCK_NOT_HELD).  A
 * loss is reported no later than the end of the last expiry the store
 * granted, measured on this process's monotonic clock, whatever the store is
 * doing.  anylock_lock_held() already says 0 when the callback runs, and
 * anylock_lock_errmsg() says why.
 *
 * Locks are watched for losses when they are auto-renewed, when they have a
 * lost-lock callback and an expiry (the callback then also hears of an expiry
 * that passed), and on stores that report losses themselves.
 *
 * The callback may call any function of the library on any lock, including
 * this one (anylock_lock_free() on this lock takes effect when the callback
 * returns), except anylock_close() on this lock's client, which answers
 * ANYLOCK_MISUSE.
 */
typedef void (*anylock_lost_fn)(anylock_lock *lock, anylock_status why, void *userdata);

/* ---- Library ---------------------------------------------------------- */

/* The library's version string ("0.2.0"); static storage. */
ANYLOCK_EXPORT const char *anylock_version(void);

/* The library's ANYLOCK_VERSION_NUMBER (of the library loaded, which may be
 * newer than the header compiled against). */
ANYLOCK_EXPORT int anylock_version_number(void);

/* The fixed message for a status; static storage.  Unknown values get
 * "unknown status". */
ANYLOCK_EXPORT const char *anylock_strerror(anylock_status status);

/* The status's enum name without the prefix ("BUSY"); static storage. */
ANYLOCK_EXPORT const char *anylock_status_name(anylock_status status);

/* Process-wide defaults, used by clients opened afterwards (a client takes a
 * snapshot at open).  Thread-safe.  The prefix is copied. */
ANYLOCK_EXPORT anylock_status anylock_set_default_timeout(double seconds);
ANYLOCK_EXPORT anylock_status anylock_set_default_expires(double seconds);
ANYLOCK_EXPORT anylock_status anylock_set_default_prefix(const char *prefix);

/* Parses a duration as URLs and the command line write it: a plain decimal
 * number of seconds ("1.5", no sign, exponent or hex), or "forever" /
 * "never" (ANYLOCK_FOREVER).  ANYLOCK_BAD_DURATION for anything else, or a
 * value above ANYLOCK_DURATION_MAX. */
ANYLOCK_EXPORT anylock_status anylock_parse_duration(const char *text, double *seconds);

/*
 * The default store's URL, into buf (size bytes): $ANYLOCK_URL when it is
 * set (an empty value is an error: ANYLOCK_URL_MALFORMED), else the embedded
 * SQLite database in a file private to the user, the same whatever the
 * environment (a login shell, cron, a systemd unit): <home>/.cache/anylock/
 * locks.db, where <home> is the user's home directory from the password
 * database.  The directory is created (mode 0700) if missing.
 * ANYLOCK_BACKEND_DISABLED if this build has no SQLite and no $ANYLOCK_URL;
 * ANYLOCK_ACCESS if the directory cannot be made; ANYLOCK_INVALID if buf is
 * too small.
 */
ANYLOCK_EXPORT anylock_status anylock_default_url(char *buf, size_t size);

/* ---- Logging ---------------------------------------------------------- */

typedef enum anylock_log_level {
    ANYLOCK_LOG_ERROR = 0,   /* a lock was lost */
    ANYLOCK_LOG_WARNING = 1, /* a renewal failed, a connection was lost */
    ANYLOCK_LOG_INFO = 2,    /* acquired, released, gave up waiting */
    ANYLOCK_LOG_DEBUG = 3    /* waiting, renewed, reconnected */
} anylock_log_level;

typedef enum anylock_event {
    ANYLOCK_EVENT_MESSAGE = 0,     /* anything else */
    ANYLOCK_EVENT_WAITING = 1,     /* an acquire found the lock held and waits */
    ANYLOCK_EVENT_ACQUIRED = 2,
    ANYLOCK_EVENT_NOT_ACQUIRED = 3,/* busy, timed out or failed */
    ANYLOCK_EVENT_RENEWED = 4,
    ANYLOCK_EVENT_RENEWAL_FAILED = 5,
    ANYLOCK_EVENT_LOST = 6,
    ANYLOCK_EVENT_RELEASED = 7,
    ANYLOCK_EVENT_CONNECTION = 8   /* a backend lost or remade a connection */
} anylock_event;

typedef struct anylock_log_record {
    anylock_log_level level;
    anylock_event event;
    const anylock_lock *lock; /* NULL for client-wide events */
    const char *name;         /* the lock's name, or NULL */
    const char *scheme;       /* the client's backend scheme ("redis") */
    anylock_status status;    /* for NOT_ACQUIRED, RENEWAL_FAILED, LOST; else ANYLOCK_OK */
    double expires_in;        /* ACQUIRED, RENEWED: the granted expiry; else 0 */
    const char *message;      /* a sentence; never a password */
} anylock_log_record;

typedef void (*anylock_log_fn)(const anylock_log_record *record, void *userdata);

/* Sends the library's log records of level <= max_level to fn, from
 * whichever thread the event happens on (renewal threads included); NULL
 * turns logging off (the default).  fn may call the library.  The record
 * and its strings are valid during the call only. */
ANYLOCK_EXPORT void anylock_set_log(anylock_log_fn fn, anylock_log_level max_level, void *userdata);

/* ---- Clients ------------------------------------------------------------ */

/*
 * Opens a client for the store named by url (copied):
 *   scheme://[user[:password]@]host[:port][,host[:port]...][/path][?query]
 * The scheme picks the backend.  Query parameters every backend accepts:
 *   prefix=STR     key prefix (default "lock:")
 *   timeout=SECS   default wait timeout (default 60; "forever" for no limit)
 *   expires=SECS   default expiry (default 10; "never" for no expiry)
 * plus the backend's own.  An unknown parameter is an error.
 *
 * Like sqlite3_open(), *out receives a client even when opening fails, so
 * that anylock_errmsg() can say why (and anylock_client_url() shows the URL
 * redacted, even when it did not parse); it is NULL only when memory ran
 * out.  Close it with anylock_close() in every case.  Operations on a client
 * whose open failed return the same status again.
 */
ANYLOCK_EXPORT anylock_status anylock_open(const char *url, anylock_client **out);

/* Closes a client and frees it.  Locks made from it must be freed first
 * (anylock_lock_free); a lock still open makes this call free nothing and
 * return ANYLOCK_MISUSE.  NULL is accepted and ignored. */
ANYLOCK_EXPORT anylock_status anylock_close(anylock_client *client);

/* The detail message of the last failure on this client (any thread, any of
 * its locks); "" if none.  Owned by the client, valid until its next call.
 * With several threads on one client, prefer anylock_lock_errmsg(). */
ANYLOCK_EXPORT const char *anylock_errmsg(const anylock_client *client);

/* The client's URL with every password (nested URLs' too) replaced by
 * "***"; owned by the client.  Set even when the URL did not parse. */
ANYLOCK_EXPORT const char *anylock_client_url(const anylock_client *client);

/* The backend's scheme name ("redis") and the client's key prefix; owned by
 * the client. */
ANYLOCK_EXPORT const char *anylock_client_scheme(const anylock_client *client);
ANYLOCK_EXPORT const char *anylock_client_prefix(const anylock_client *client);

/* What the client's store can do: ANYLOCK_FEATURE_* bits (0 for a client
 * whose open failed). */
ANYLOCK_EXPORT unsigned anylock_client_features(const anylock_client *client);

/* Force-frees the named lock (every holder of it), whoever holds it, and
 * wakes a waiter.  On session-bound stores see the store's page for what
 * reset can do. */
ANYLOCK_EXPORT anylock_status anylock_reset(anylock_client *client, const char *name);

/* Force-frees every lock under the client's prefix.  If count is not NULL it
 * receives how many locks were freed (where the store can tell). */
ANYLOCK_EXPORT anylock_status anylock_reset_all(anylock_client *client, size_t *count);

/* Fills *info for the named lock (info->name points to name). */
ANYLOCK_EXPORT anylock_status anylock_inspect(anylock_client *client, const char *name, anylock_info *info);

/* Calls fn for each holder of the named lock. */
ANYLOCK_EXPORT anylock_status anylock_holders(anylock_client *client, const char *name, anylock_holder_fn fn,
                                              void *userdata);

/* Calls fn for each held lock under the client's prefix, in no set order.
 * fn runs after the store was read, so it may call the library. */
ANYLOCK_EXPORT anylock_status anylock_list(anylock_client *client, anylock_list_fn fn, void *userdata);

/* Whether this build and process can open URLs of this scheme: 1 yes, 0 no. */
ANYLOCK_EXPORT int anylock_backend_available(const char *scheme);

/* ---- Locks -------------------------------------------------------------- */

/*
 * Makes a lock handle for name (copied) on client.  Nothing is sent to the
 * store.  The handle starts with the client's defaults, exclusive mode, and
 * a fresh random owner id (24 characters: standard base64 of 18 random
 * bytes).  Free it with anylock_lock_free().
 */
ANYLOCK_EXPORT anylock_status anylock_lock_new(anylock_client *client, const char *name, anylock_lock **out);

/* Releases the lock if this handle holds it (or may hold it, after an
 * ANYLOCK_OUTCOME_UNKNOWN), then frees the handle.  NULL is accepted and
 * ignored. */
ANYLOCK_EXPORT void anylock_lock_free(anylock_lock *lock);

/* Per-lock options.  They may be changed only while the handle does not hold
 * the lock (otherwise ANYLOCK_MISUSE).  Cross-checks between them are made
 * by the acquire calls. */

/* Expiry: seconds > 0, or ANYLOCK_FOREVER for a lock that never expires. */
ANYLOCK_EXPORT anylock_status anylock_lock_set_expires(anylock_lock *lock, double seconds);
/* Wait timeout for anylock_acquire(): seconds >= 0 (0 tries once), or
 * ANYLOCK_FOREVER.  A timeout set here may not exceed the expiry unless
 * auto-renewal is on (the client's default timeout is not cross-checked). */
ANYLOCK_EXPORT anylock_status anylock_lock_set_timeout(anylock_lock *lock, double seconds);
/* Owner id: 1 to ANYLOCK_ID_MAX printable ASCII characters, copied.  Two
 * handles with the same id are the same owner. */
ANYLOCK_EXPORT anylock_status anylock_lock_set_id(anylock_lock *lock, const char *id);
/* Auto-renewal: while held, the client's renewal threads extend the lock to
 * its expiry (the last one given to anylock_extend, else the lock's) before
 * it runs out: after two thirds of it, and at least the store's expiry
 * resolution and a quarter of a second before its end (a lease shorter than
 * that is renewed every third of it).  On session-bound stores a lock without expiry
 * needs no renewal (its session is kept alive) and auto-renewal is then
 * allowed and does nothing. */
ANYLOCK_EXPORT anylock_status anylock_lock_set_auto_renewal(anylock_lock *lock, int on);
/* Called when a held lock is lost (see anylock_lost_fn). */
ANYLOCK_EXPORT anylock_status anylock_lock_set_lost_callback(anylock_lock *lock, anylock_lost_fn fn, void *userdata);
/* The mode: ANYLOCK_EXCLUSIVE (default) or ANYLOCK_SHARED; ANYLOCK_SEMAPHORE
 * is set with anylock_lock_set_permits.  A store without the mode answers
 * the acquire with ANYLOCK_MODE_UNSUPPORTED. */
ANYLOCK_EXPORT anylock_status anylock_lock_set_mode(anylock_lock *lock, anylock_mode mode);
/* Makes the lock a counting semaphore of `permits` (1 to
 * ANYLOCK_PERMITS_MAX) holders at most.  Every handle of one name must use
 * the same number: a different one answers ANYLOCK_MODE_CONFLICT, as does a
 * semaphore name taken as a plain or shared lock, or the reverse. */
ANYLOCK_EXPORT anylock_status anylock_lock_set_permits(anylock_lock *lock, unsigned permits);
/* A short description of what the holder does (the command line, for the
 * anylock command), kept beside the lock with the holder's host name, pid
 * and the time it was taken where the store can keep them, and shown by
 * anylock_inspect.  UTF-8, at most ANYLOCK_LABEL_MAX bytes; NULL or "" for
 * none.  Copied. */
ANYLOCK_EXPORT anylock_status anylock_lock_set_label(anylock_lock *lock, const char *label);

/* Takes the lock, waiting up to the lock's timeout.  ANYLOCK_TIMEOUT when
 * the time ran out (ANYLOCK_BUSY if the timeout is 0); ANYLOCK_ALREADY_HELD
 * if this handle holds it already, or this owner id holds it through another
 * handle.  ANYLOCK_OUTCOME_UNKNOWN when the store's answer to the request
 * that takes the lock was lost: the handle then does not hold it, and its
 * next acquire, release or free first releases whatever the store may hold
 * for this owner. */
ANYLOCK_EXPORT anylock_status anylock_acquire(anylock_lock *lock);

/* Tries once, never waits: ANYLOCK_OK or ANYLOCK_BUSY.  A timeout set on the
 * lock with anylock_lock_set_timeout() makes this ANYLOCK_TRY_WITH_TIMEOUT. */
ANYLOCK_EXPORT anylock_status anylock_try_acquire(anylock_lock *lock);

/* Releases the lock if this owner holds it in the store, waking a waiter:
 * ANYLOCK_OK.  ANYLOCK_NOT_HELD when it does not (never taken, expired,
 * reset, taken by another owner, or reported lost: the message says which).
 * The request is sent whatever the handle believes, since any handle with
 * the holder's id may release (not on session-bound stores, where only the
 * holding handle can).  After any other failure the handle no longer holds
 * the lock: ANYLOCK_OUTCOME_UNKNOWN or ANYLOCK_IO leave the lock in the
 * store until its expiry unless a retried release succeeds. */
ANYLOCK_EXPORT anylock_status anylock_release(anylock_lock *lock);

/* Sets the lock's expiry to seconds from now (ANYLOCK_FOREVER is not
 * allowed: ANYLOCK_BAD_DURATION), sent whatever the handle believes (as for
 * release).  The new expiry is the one auto-renewal keeps from then on.
 * ANYLOCK_OK makes the handle hold the lock; ANYLOCK_NOT_HELD makes it not
 * hold it; ANYLOCK_NOT_EXPIRABLE for a lock taken without an expiry. */
ANYLOCK_EXPORT anylock_status anylock_extend(anylock_lock *lock, double seconds);

/* *locked = 1 if anyone holds the lock in the store, else 0. */
ANYLOCK_EXPORT anylock_status anylock_locked(anylock_lock *lock, int *locked);

/* Copies a current holder's id into buf (size bytes, at least
 * ANYLOCK_ID_MAX + 1 to be sure); "" if the lock is free.  A stored value
 * that does not fit answers ANYLOCK_INVALID. */
ANYLOCK_EXPORT anylock_status anylock_owner(anylock_lock *lock, char *buf, size_t size);

/* The fencing token of the acquisition this handle holds: a number that
 * is strictly greater for each successful acquisition of a name in the store
 * than for any earlier one, to hand to what the lock protects so that it can
 * refuse a holder whose lease passed (see docs/guarantees.md).
 * ANYLOCK_NOT_HELD when the handle does not hold the lock; ANYLOCK_NO_TOKEN
 * when the store does not issue tokens.  Local: no round trip. */
ANYLOCK_EXPORT anylock_status anylock_lock_token(const anylock_lock *lock, uint64_t *token);

/* Force-frees this lock's name (as anylock_reset). */
ANYLOCK_EXPORT anylock_status anylock_lock_reset(anylock_lock *lock);

/* The client this lock handle was made from. */
ANYLOCK_EXPORT anylock_client *anylock_lock_client(const anylock_lock *lock);

/* This handle's name and owner id; owned by the handle. */
ANYLOCK_EXPORT const char *anylock_lock_name(const anylock_lock *lock);
ANYLOCK_EXPORT const char *anylock_lock_id(const anylock_lock *lock);

/* 1 while this handle believes it holds the lock: acquired, not released,
 * not lost, and its expiry not yet passed on this process's clock; else 0.
 * Local state: no round trip. */
ANYLOCK_EXPORT int anylock_lock_held(const anylock_lock *lock);

/* The detail message of this lock's last failure; "" if none.  Owned by the
 * lock, valid until its next call. */
ANYLOCK_EXPORT const char *anylock_lock_errmsg(const anylock_lock *lock);

#ifdef __cplusplus
}
#endif
#endif /* ANYLOCK_H */
