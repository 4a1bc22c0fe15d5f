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
 *                   by one thread at a time (the library's renewal thread
 *                   coordinates with it internally).
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
 *   converted to whole milliseconds by rounding UP (never truncated), and a
 *   store with a coarser clock rounds up further (its documentation says so).
 *   ANYLOCK_FOREVER means "no limit": wait forever, or never expire.  NaN,
 *   negative values and finite values above ANYLOCK_DURATION_MAX are
 *   rejected with ANYLOCK_BAD_DURATION.
 *
 * Blocking
 *   anylock_open() may block up to the store's connect timeout.
 *   anylock_acquire() blocks up to the lock's wait timeout (forever if that is
 *   ANYLOCK_FOREVER).  Every other call performs at most a few round trips to
 *   the store and blocks at most for the store's command timeout.
 */
#ifndef ANYLOCK_H
#define ANYLOCK_H

#include <math.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(ANYLOCK_BUILDING) && defined(__GNUC__)
#define ANYLOCK_EXPORT __attribute__((visibility("default")))
#else
#define ANYLOCK_EXPORT
#endif

#define ANYLOCK_VERSION_MAJOR 0
#define ANYLOCK_VERSION_MINOR 1
#define ANYLOCK_VERSION_PATCH 0
#define ANYLOCK_VERSION_STRING "0.1.0"

/* Limits.  Names are at most ANYLOCK_NAME_MAX bytes of UTF-8 without control
 * characters; owner ids are 1 to ANYLOCK_ID_MAX printable ASCII characters
 * (0x21-0x7e); prefixes are at most ANYLOCK_PREFIX_MAX bytes with the same
 * rule as names; URLs are at most ANYLOCK_URL_MAX bytes. */
#define ANYLOCK_NAME_MAX 1024
#define ANYLOCK_ID_MAX 64
#define ANYLOCK_PREFIX_MAX 128
#define ANYLOCK_URL_MAX 4096
#define ANYLOCK_ERRMSG_MAX 256

/* The longest finite duration accepted, in seconds (about 3 years). */
#define ANYLOCK_DURATION_MAX 1e8
/* No limit: wait forever (timeouts) or never expire (expiries). */
#define ANYLOCK_FOREVER (INFINITY)

/* Library defaults, as pylock has them; change them process-wide with
 * anylock_set_default_*(), per client in the URL query, per lock with the
 * anylock_lock_set_*() calls. */
#define ANYLOCK_DEFAULT_TIMEOUT 60.0
#define ANYLOCK_DEFAULT_EXPIRES 10.0
#define ANYLOCK_DEFAULT_PREFIX "lock:"

/*
 * The statuses.  X(NAME, message): the enum is ANYLOCK_NAME, numbered in this
 * order.  Values are never renumbered: new statuses are appended.
 */
#define ANYLOCK_STATUS_MAP(X)                                                                      \
    X(OK, "success")                                                                               \
    X(BUSY, "the lock is held by another owner")                                                   \
    X(TIMEOUT, "timed out waiting for the lock")                                                   \
    X(ALREADY_HELD, "this lock handle already holds the lock")                                     \
    X(NOT_HELD, "the lock is not held by this owner")                                              \
    X(NOT_EXPIRABLE, "the lock was taken without an expiry and cannot be extended")                \
    X(UNSUPPORTED, "operation not supported by this backend")                                      \
    X(INVALID, "invalid argument")                                                                 \
    X(MISUSE, "library used in an invalid order")                                                  \
    X(NOMEM, "out of memory")                                                                      \
    X(BAD_NAME, "invalid lock name")                                                               \
    X(BAD_ID, "invalid owner id")                                                                  \
    X(BAD_PREFIX, "invalid key prefix")                                                            \
    X(BAD_DURATION, "invalid duration")                                                            \
    X(TRY_WITH_TIMEOUT, "a wait timeout cannot be combined with try-once")                         \
    X(TIMEOUT_TOO_LARGE, "wait timeout is longer than the expiry and auto-renewal is off")         \
    X(RENEWAL_NEEDS_EXPIRY, "auto-renewal needs an expiry")                                        \
    X(URL_MALFORMED, "malformed URL")                                                              \
    X(URL_NO_SCHEME, "URL has no scheme")                                                          \
    X(URL_UNKNOWN_SCHEME, "no backend for this URL scheme")                                        \
    X(BACKEND_DISABLED, "backend not compiled into this build")                                    \
    X(URL_BAD_ESCAPE, "bad percent-escape in URL")                                                 \
    X(URL_BAD_USERINFO, "bad user or password in URL")                                             \
    X(URL_BAD_HOST, "bad host in URL")                                                             \
    X(URL_BAD_PORT, "bad port number in URL")                                                      \
    X(URL_BAD_PATH, "bad path in URL")                                                             \
    X(URL_BAD_QUERY, "malformed URL query")                                                        \
    X(URL_UNKNOWN_PARAM, "unknown URL query parameter")                                            \
    X(URL_BAD_PARAM, "bad value for URL query parameter")                                          \
    X(URL_TOO_LONG, "URL too long")                                                                \
    X(BACKEND_EXISTS, "a backend is already registered for this scheme")                           \
    X(BACKEND_INVALID, "invalid backend definition")                                               \
    X(CONNECT, "cannot connect to the store")                                                      \
    X(AUTH, "the store refused the credentials")                                                   \
    X(IO, "lost connection to the store or it did not answer in time")                             \
    X(PROTOCOL, "unexpected reply from the store")                                                 \
    X(STORE, "the store reported an error")                                                        \
    X(ACCESS, "permission denied by the store")                                                    \
    X(STORE_UNSAFE, "the store cannot provide safe locking as configured")                         \
    X(INTERNAL, "internal error")

typedef enum anylock_status {
#define ANYLOCK__ENUM(name, msg) ANYLOCK_##name,
    ANYLOCK_STATUS_MAP(ANYLOCK__ENUM)
#undef ANYLOCK__ENUM
        ANYLOCK_STATUS_COUNT_ /* not a status: the number of statuses */
} anylock_status;

typedef struct anylock_client anylock_client;
typedef struct anylock_lock anylock_lock;

/* What is known about one lock in the store (anylock_inspect, anylock_list). */
typedef struct anylock_info {
    const char *name;               /* the lock's name (without prefix); valid during the call */
    int held;                       /* 1 if someone holds it */
    char owner[ANYLOCK_ID_MAX + 1]; /* holder's id; "" when free or unknown */
    double expires_in;              /* seconds left; ANYLOCK_FOREVER if no expiry; 0 when free */
} anylock_info;

/* Called by anylock_list() once per held lock; return non-zero to stop. */
typedef int (*anylock_list_fn)(const anylock_info *info, void *userdata);

/* Called from the client's renewal thread when an auto-renewed lock is lost:
 * ANYLOCK_NOT_HELD when the store says another owner has it or it is gone,
 * or the status of the last failed renewal (for example ANYLOCK_IO) once the
 * expiry has passed without a successful renewal.  The callback must not
 * call anylock_release()/anylock_lock_free() on this lock or close its
 * client; it may record the loss for the lock's thread to act on. */
typedef void (*anylock_lost_fn)(anylock_lock *lock, anylock_status why, void *userdata);

/* ---- Library ---------------------------------------------------------- */

/* The library's version string ("0.1.0"); static storage. */
ANYLOCK_EXPORT const char *anylock_version(void);

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
 * that anylock_errmsg() can say why; it is NULL only when memory ran out.
 * Close it with anylock_close() in every case.  Operations on a client whose
 * open failed return the same status again.
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

/* The client's URL with any password replaced by "***"; owned by the client. */
ANYLOCK_EXPORT const char *anylock_client_url(const anylock_client *client);

/* The backend's scheme name ("redis") and the client's key prefix; owned by
 * the client. */
ANYLOCK_EXPORT const char *anylock_client_scheme(const anylock_client *client);
ANYLOCK_EXPORT const char *anylock_client_prefix(const anylock_client *client);

/* Force-frees the named lock whoever holds it, and wakes one waiter. */
ANYLOCK_EXPORT anylock_status anylock_reset(anylock_client *client, const char *name);

/* Force-frees every lock under the client's prefix.  If count is not NULL it
 * receives how many locks were freed (where the store can tell). */
ANYLOCK_EXPORT anylock_status anylock_reset_all(anylock_client *client, size_t *count);

/* Fills *info for the named lock (info->name points to name). */
ANYLOCK_EXPORT anylock_status anylock_inspect(anylock_client *client, const char *name, anylock_info *info);

/* Calls fn for each held lock under the client's prefix, in no set order. */
ANYLOCK_EXPORT anylock_status anylock_list(anylock_client *client, anylock_list_fn fn, void *userdata);

/* Whether this build and process can open URLs of this scheme: 1 yes, 0 no. */
ANYLOCK_EXPORT int anylock_backend_available(const char *scheme);

/* ---- Locks -------------------------------------------------------------- */

/*
 * Makes a lock handle for name (copied) on client.  Nothing is sent to the
 * store.  The handle starts with the client's defaults and a fresh random
 * owner id (24 characters: standard base64 of 18 random bytes).  Free it
 * with anylock_lock_free().
 */
ANYLOCK_EXPORT anylock_status anylock_lock_new(anylock_client *client, const char *name, anylock_lock **out);

/* Releases the lock if this handle holds it, then frees the handle.  NULL is
 * accepted and ignored. */
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
/* Auto-renewal: while held, the client's renewal thread extends the lock to
 * its full expiry every two thirds of the expiry. */
ANYLOCK_EXPORT anylock_status anylock_lock_set_auto_renewal(anylock_lock *lock, int on);
/* Called when an auto-renewed lock is lost (see anylock_lost_fn). */
ANYLOCK_EXPORT anylock_status anylock_lock_set_lost_callback(anylock_lock *lock, anylock_lost_fn fn, void *userdata);

/* Takes the lock, waiting up to the lock's timeout.  ANYLOCK_TIMEOUT when
 * the time ran out (ANYLOCK_BUSY if the timeout is 0); ANYLOCK_ALREADY_HELD
 * if this handle holds it already. */
ANYLOCK_EXPORT anylock_status anylock_acquire(anylock_lock *lock);

/* Tries once, never waits: ANYLOCK_OK or ANYLOCK_BUSY.  A timeout set on the
 * lock with anylock_lock_set_timeout() makes this ANYLOCK_TRY_WITH_TIMEOUT. */
ANYLOCK_EXPORT anylock_status anylock_try_acquire(anylock_lock *lock);

/* Releases the lock if this owner still holds it, waking one waiter.
 * ANYLOCK_NOT_HELD if the handle does not hold it, or the store says its
 * expiry passed or another owner has it now (the handle is then not held). */
ANYLOCK_EXPORT anylock_status anylock_release(anylock_lock *lock);

/* Sets the held lock's expiry to seconds from now (ANYLOCK_FOREVER is not
 * allowed: ANYLOCK_BAD_DURATION).  ANYLOCK_NOT_HELD as for release;
 * ANYLOCK_NOT_EXPIRABLE for a lock taken without an expiry. */
ANYLOCK_EXPORT anylock_status anylock_extend(anylock_lock *lock, double seconds);

/* *locked = 1 if anyone holds the lock in the store, else 0. */
ANYLOCK_EXPORT anylock_status anylock_locked(anylock_lock *lock, int *locked);

/* Copies the current holder's id into buf (size bytes, at least
 * ANYLOCK_ID_MAX + 1 to be sure); "" if the lock is free. */
ANYLOCK_EXPORT anylock_status anylock_owner(anylock_lock *lock, char *buf, size_t size);

/* Force-frees this lock's name (as anylock_reset). */
ANYLOCK_EXPORT anylock_status anylock_lock_reset(anylock_lock *lock);

/* This handle's name and owner id; owned by the handle. */
ANYLOCK_EXPORT const char *anylock_lock_name(const anylock_lock *lock);
ANYLOCK_EXPORT const char *anylock_lock_id(const anylock_lock *lock);

/* 1 while this handle believes it holds the lock (acquired, not released,
 * not reported lost by renewal), else 0.  Local state: no round trip. */
ANYLOCK_EXPORT int anylock_lock_held(const anylock_lock *lock);

/* The detail message of this lock's last failure; "" if none.  Owned by the
 * lock, valid until its next call. */
ANYLOCK_EXPORT const char *anylock_lock_errmsg(const anylock_lock *lock);

#ifdef __cplusplus
}
#endif
#endif /* ANYLOCK_H */
