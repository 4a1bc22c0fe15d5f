/*
 * anylock_backend.h: how to add a store to anylock.
 *
 * A backend is a static anylock_backend struct (its vtable) registered at run
 * time under one or more URL schemes with anylock_backend_register().  The
 * built-in backends register through this same path and use nothing but
 * this header, so a third party can write anything a built-in can.
 *
 * The model is SQLite's VFS: the struct carries a version, slots are only
 * ever appended, and the core checks the version before it reads a newer
 * field or calls a newer slot.  A version-1 backend keeps working unchanged.
 * Optional slots may be NULL; the core then answers ANYLOCK_UNSUPPORTED
 * without calling the backend.
 *
 * Division of work.  The core parses and validates the URL, names, ids and
 * durations, owns lock handles and their state, computes deadlines, runs
 * auto-renewal (calling the extend slot from its renewal threads), detects
 * fork() (no slot is ever called in a process other than the one that opened
 * the client), and turns what inspect and list find into anylock_info.  A
 * backend only talks to its store.
 *
 * Per-client and per-lock state.  The core allocates state_size bytes of
 * per-client state (op->state, zeroed at open) and, from version 2,
 * lock_size bytes of per-lock state with each lock handle (op->lock_state,
 * zeroed at anylock_lock_new), as SQLite gives a file szOsFile bytes.  A
 * lock's state is handed to every slot called for that lock.
 *
 * Calls on one lock are serialised by the core: two slots never run at once
 * for the same lock handle (and so on the same op->lock_state).
 *
 * Threads.  Slots for different locks, and client-wide slots, may run
 * concurrently from several threads on the same client (including the
 * renewal threads), so a backend protects or pools what it shares.  A
 * blocking acquire must not stop other threads' calls on the same client.
 *
 * Lifecycle of a lock, as the core drives it:
 *   acquire  -> OK: held.  ANYLOCK_OUTCOME_UNKNOWN: may be held.
 *   release  -> called for every acquisition that answered OK or
 *               OUTCOME_UNKNOWN before the next acquire on the handle (also
 *               after a loss), and, on stores owned by id, for a handle that
 *               believes it holds nothing (another handle with the same id
 *               may hold it).  It must leave op->lock_state ready for the
 *               next acquire whatever the store answered.
 *   forget   -> once, when the handle is freed (after any release).
 */
#ifndef ANYLOCK_BACKEND_H
#define ANYLOCK_BACKEND_H

#include <pthread.h>
#include <stdint.h>

#include "anylock.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The vtable version this header describes.  1: the original slots.
 * 2: per-lock state, capabilities, enumerate and forget, and the op fields
 * marked "version 2". */
#define ANYLOCK_BACKEND_VERSION 2

/* A deadline that never comes (wait forever). */
#define ANYLOCK_DEADLINE_NEVER INT64_MAX

/* One host of a URL's host list. */
typedef struct anylock_url_host {
    const char *host; /* name or address; IPv6 without brackets */
    int port;         /* 0 when the URL gave none */
} anylock_url_host;

/* One query parameter, percent-decoded. */
typedef struct anylock_url_param {
    const char *name;
    const char *value; /* "" for "?name" or "?name=" */
} anylock_url_param;

/* A parsed URL.  Every string is NUL-terminated and percent-decoded. */
typedef struct anylock_url {
    const char *scheme;     /* lower-cased */
    const char *user;       /* NULL when absent */
    const char *password;   /* NULL when absent; never put it in a message */
    size_t nhosts;          /* 0 when the authority is empty ("sqlite:///x") */
    const anylock_url_host *hosts;
    const char *path;       /* "" or starts with '/' */
    size_t nparams;         /* the backend's own parameters (the core's are removed) */
    const anylock_url_param *params;
    /* ---- version 2 ---- */
    const char *text;       /* the whole URL as given (it holds the password: never show it) */
    const char *redacted;   /* the whole URL with passwords replaced by "***" */
} anylock_url;

/* The value of the named backend parameter, or NULL if the URL lacks it. */
ANYLOCK_EXPORT const char *anylock_url_param_get(const anylock_url *url, const char *name);

typedef struct anylock_op anylock_op;

/* Parses the backend parameter `name` as seconds (decimals allowed) into
 * whole milliseconds rounded up; dflt when the URL lacks it.
 * ANYLOCK_URL_BAD_PARAM, with a message in op naming the parameter, when the
 * value is not a finite number of seconds. */
ANYLOCK_EXPORT anylock_status anylock_url_param_ms(anylock_op *op, const anylock_url *url, const char *name,
                                                   int64_t dflt, int64_t *out_ms);

/* The backend flags (capabilities): the ANYLOCK_FEATURE_* bits of anylock.h
 * that describe the store.  The core derives the EXTEND, INSPECT, RESET and
 * RESET_ALL features from the slots; a version-2 backend sets
 * ANYLOCK_BACKEND_LIST when its enumerate can list every lock (op->name
 * NULL), which a version-1 backend says by having a list slot. */
#define ANYLOCK_BACKEND_NO_EXCLUSION ANYLOCK_FEATURE_NO_EXCLUSION /* (version 1) */
#define ANYLOCK_BACKEND_SESSION ANYLOCK_FEATURE_SESSION
#define ANYLOCK_BACKEND_FAIR ANYLOCK_FEATURE_FAIR
#define ANYLOCK_BACKEND_TOKEN ANYLOCK_FEATURE_TOKEN
#define ANYLOCK_BACKEND_SHARED ANYLOCK_FEATURE_SHARED
#define ANYLOCK_BACKEND_SEMAPHORE ANYLOCK_FEATURE_SEMAPHORE
#define ANYLOCK_BACKEND_LIST ANYLOCK_FEATURE_LIST

/*
 * What the core gives each slot.  Fields not used by a slot are zero.
 *
 * Deadlines are absolute times on the monotonic clock (anylock_now_ns()).
 * For acquire, op->deadline is the wait deadline: 0 = try once,
 * ANYLOCK_DEADLINE_NEVER = wait forever; every round trip of the acquire is
 * also bounded by it (anylock_op_io_deadline), so that an acquire returns by
 * its deadline even when the store stalls.  For the other slots op->deadline
 * is a bound the call must not pass (the renewal threads give the end of the
 * lock's lease), or ANYLOCK_DEADLINE_NEVER for no bound beyond the backend's
 * own command timeout.  open should return within the backend's connect
 * timeout.
 */
struct anylock_op {
    /* ---- version 1 ---- */
    void *state;         /* the backend's per-client state: state_size bytes, zeroed at open */
    const char *prefix;  /* the client's key prefix */
    size_t prefix_len;
    const char *name;    /* the lock name (NULL for client-wide slots) */
    size_t name_len;
    const char *key;     /* prefix followed by name */
    size_t key_len;
    const char *id;      /* the owner id (acquire, release, extend) */
    size_t id_len;
    int64_t expires_ms;  /* acquire, extend: the expiry, rounded up to the backend's
                            resolution; 0 = never expires (acquire only) */
    int64_t deadline;    /* see above */
    char *errbuf;        /* where anylock_op_error() writes; ANYLOCK_ERRMSG_MAX bytes */

    /* ---- version 2 (always filled; version-1 backends ignore them) ---- */
    void *lock_state;    /* lock slots: the handle's lock_size bytes */
    anylock_lock *lock;  /* lock slots: the handle, for anylock_lock_lost(); never dereference */
    anylock_mode mode;   /* acquire: how to take it (a backend without the flag for the mode
                            is never asked for it: the core answers MODE_UNSUPPORTED) */
    unsigned permits;    /* acquire (ANYLOCK_SEMAPHORE): the number of permits */
    const char *meta;    /* acquire: holder metadata to keep beside the lock and give back in
                            anylock_record.meta (opaque bytes, at most ANYLOCK_META_MAX) */
    size_t meta_len;
    uint64_t token;      /* acquire (out): the fencing token, for ANYLOCK_BACKEND_TOKEN */
    int64_t granted_at;  /* acquire, extend (out): when the request that granted the expiry was
                            sent (monotonic ns); left 0, the core uses the call's start */
    /* open (in/out): this client's values, preset from the backend struct;
     * open may change them (a composite store takes them from its stores). */
    size_t lock_size;
    unsigned flags;
    int64_t expiry_resolution_ms;
};

/* The most bytes of holder metadata (op->meta) a backend must keep. */
#define ANYLOCK_META_MAX 512

/* Records a detail message for the current call and returns status, so a
 * slot can `return anylock_op_error(op, ANYLOCK_IO, "...", ...)`.  Never put
 * a password in it. */
ANYLOCK_EXPORT anylock_status anylock_op_error(anylock_op *op, anylock_status status, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Logs a record at level for this op's lock or client (see anylock_set_log). */
ANYLOCK_EXPORT void anylock_op_log(const anylock_op *op, anylock_log_level level, anylock_event event,
                                   const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* ---- Time ---------------------------------------------------------------- */

/* The monotonic clock, in nanoseconds.  Deadlines are on this clock. */
ANYLOCK_EXPORT int64_t anylock_now_ns(void);

/* Milliseconds left until op->deadline (0 if passed; INT64_MAX if never). */
ANYLOCK_EXPORT int64_t anylock_op_ms_left(const anylock_op *op);

/* The deadline for one round trip of this call: now + timeout_ms, and no
 * later than op->deadline when that is a real deadline (neither 0 nor
 * ANYLOCK_DEADLINE_NEVER). */
ANYLOCK_EXPORT int64_t anylock_op_io_deadline(const anylock_op *op, int64_t timeout_ms);

/* Milliseconds from now until deadline_ns, rounded up (0 if it has passed,
 * INT64_MAX for ANYLOCK_DEADLINE_NEVER). */
ANYLOCK_EXPORT int64_t anylock_ms_until(int64_t deadline_ns);

/* A condition variable whose timed waits use the monotonic clock, and a wait
 * on it until deadline_ns (ANYLOCK_DEADLINE_NEVER: no limit).  Both return
 * what pthread does (0, or ETIMEDOUT for a wait that timed out). */
ANYLOCK_EXPORT int anylock_cond_init(pthread_cond_t *cond);
ANYLOCK_EXPORT int anylock_cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *mu, int64_t deadline_ns);

/*
 * Polling with capped exponential backoff and jitter, for stores that cannot
 * notify a waiter.  The first wait is `first_ms`, each next one doubles up to
 * `ceiling_ms`, each is jittered by up to +-25%, and none runs past the
 * deadline.  anylock_backoff_wait() sleeps and returns 1, or returns 0 when
 * the deadline has passed (then the caller reports ANYLOCK_TIMEOUT).
 */
typedef struct anylock_backoff {
    int64_t next_ms;
    int64_t ceiling_ms;
    uint32_t seed;
} anylock_backoff;

ANYLOCK_EXPORT void anylock_backoff_init(anylock_backoff *b, int64_t first_ms, int64_t ceiling_ms);
ANYLOCK_EXPORT int anylock_backoff_wait(anylock_backoff *b, int64_t deadline);

/* ---- Losses the store reports ------------------------------------------ */

/*
 * Tells the core that the store no longer holds lock for its owner (a
 * session ended, a lease was revoked), from any thread.  The core marks the
 * handle not held, records the message, and delivers the lost-lock callback
 * from one of its own threads.  A backend may call it for a lock from the
 * moment its acquire slot returned ANYLOCK_OK until its release slot
 * returns for that acquisition (it must make sure of the second bound, for
 * example with a mutex it also takes in release); a report for a lock the
 * core no longer believes held is ignored.  why is ANYLOCK_NOT_HELD or the
 * failure (ANYLOCK_IO for a connection that dropped).
 */
ANYLOCK_EXPORT void anylock_lock_lost(anylock_lock *lock, anylock_status why, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---- What inspect and list find ----------------------------------------- */

/*
 * One holder of one lock, as a backend found it in its store.  A lock held
 * by several holders (shared, semaphore) is several records with the same
 * name.  Strings need not be NUL-terminated and may hold any bytes; they are
 * copied by anylock_emit.
 */
typedef struct anylock_record {
    const char *name;      /* the lock name, without the prefix */
    size_t name_len;
    const char *id;        /* the holder's id as stored (may be empty or foreign) */
    size_t id_len;
    int64_t expires_in_ms; /* time left (clamp at 0); -1, and only -1: never expires */
    anylock_mode mode;
    unsigned permits;      /* for ANYLOCK_SEMAPHORE */
    const char *meta;      /* the op->meta given to the acquire, or NULL */
    size_t meta_len;
} anylock_record;

/* Where the enumerate slot sends what it finds. */
typedef struct anylock_emitter {
    /* Returns non-zero to stop (the slot then returns ANYLOCK_OK). */
    int (*emit)(void *userdata, const anylock_record *record);
    void *userdata;
} anylock_emitter;

/* Calls em->emit: 1 when the enumeration should stop, else 0.  The core's
 * emitter copies what it needs and never calls back into the backend, so a
 * backend may emit while it holds its own locks. */
ANYLOCK_EXPORT int anylock_emit(anylock_emitter *em, const anylock_record *record);

/* ---- Connection pools ---------------------------------------------------- */

/*
 * A thread-safe pool of a backend's connections (or any reusable handle):
 * a call takes an idle one or opens a new one, and gives it back; a broken
 * one is closed instead.  At most max_idle idle connections are kept.
 */
typedef struct anylock_pool anylock_pool;

typedef struct anylock_pool_methods {
    /* Opens a connection, bounded by deadline; a status with a message in
     * op on failure. */
    anylock_status (*open)(void *ctx, anylock_op *op, int64_t deadline, void **conn);
    void (*close)(void *ctx, void *conn);
    /* Optional: 0 if an idle connection is no longer usable (the server
     * closed it); it is then closed and another one taken. */
    int (*usable)(void *ctx, void *conn);
} anylock_pool_methods;

ANYLOCK_EXPORT anylock_status anylock_pool_create(const anylock_pool_methods *methods, void *ctx, size_t max_idle,
                                                  anylock_pool **out);
ANYLOCK_EXPORT anylock_status anylock_pool_get(anylock_pool *pool, anylock_op *op, int64_t deadline, void **conn);
/* Gives conn back; broken: close it rather than keep it. */
ANYLOCK_EXPORT void anylock_pool_put(anylock_pool *pool, void *conn, int broken);
/* Closes every idle connection and frees the pool (NULL is ignored). */
ANYLOCK_EXPORT void anylock_pool_destroy(anylock_pool *pool);

/* ---- Helpers -------------------------------------------------------------- */

/* SHA-256 of data (FIPS 180-4), for documented name mappings. */
ANYLOCK_EXPORT void anylock_sha256(const void *data, size_t len, unsigned char out[32]);

typedef struct anylock_backend anylock_backend;

/* ---- Stores built on other stores (migrate://) --------------------------- */

/* The slots a stacked backend can run on another client's backend. */
typedef enum anylock_slot {
    ANYLOCK_SLOT_ACQUIRE,
    ANYLOCK_SLOT_RELEASE,
    ANYLOCK_SLOT_EXTEND,
    ANYLOCK_SLOT_RESET,
    ANYLOCK_SLOT_RESET_ALL, /* arg: size_t *count */
    ANYLOCK_SLOT_ENUMERATE, /* arg: anylock_emitter * */
    ANYLOCK_SLOT_FORGET
} anylock_slot;

/*
 * Runs slot of client's backend on behalf of op (a copy the caller made of
 * its own op, with lock_state pointing to anylock_client_lock_size(client)
 * bytes of its own per-lock state, and its own errbuf): the core puts in the
 * client's per-client state, rounds the expiry up to that store's
 * resolution, checks the client's version and slots (ANYLOCK_UNSUPPORTED
 * with a message for a missing one; enumerate falls back to a version-1
 * backend's inspect and list), and calls it.  Outputs (token, granted_at)
 * are left in op.  client was opened with anylock_open() and must have no
 * lock handles of its own in use for these names.
 */
ANYLOCK_EXPORT anylock_status anylock_forward(anylock_client *client, anylock_slot slot, anylock_op *op, void *arg);

/* Checks a store URL that a stacked backend takes as its parameter `param`
 * (migrate://?old=URL): it must not set the core's prefix, timeout or
 * expires (those belong to the outer URL, so that every store sees one key
 * and one set of durations), nor be of the stacked backend's own scheme
 * `self`.  ANYLOCK_URL_BAD_PARAM with a message in op. */
ANYLOCK_EXPORT anylock_status anylock_check_store_url(anylock_op *op, const char *param, const char *url,
                                                      const char *self);

/* A client's per-lock state size, flags and expiry resolution, as its
 * backend's open left them. */
ANYLOCK_EXPORT size_t anylock_client_lock_size(const anylock_client *client);
ANYLOCK_EXPORT unsigned anylock_client_flags(const anylock_client *client);
ANYLOCK_EXPORT int64_t anylock_client_expiry_resolution_ms(const anylock_client *client);

/* For a backend that offers its own control calls (as anylock_faults.h
 * does): the backend and per-client state of a client, and the client and
 * per-lock state of a lock handle, so that such a call can check the
 * handle is one of its own.  NULL when open failed. */
ANYLOCK_EXPORT const anylock_backend *anylock_client_backend(const anylock_client *client);
ANYLOCK_EXPORT void *anylock_client_state(const anylock_client *client);
ANYLOCK_EXPORT void *anylock_lock_state(const anylock_lock *lock);

/* ---- The vtable ------------------------------------------------------------ */

struct anylock_backend {
    /* ---- version 1 ---- */
    int version;                 /* ANYLOCK_BACKEND_VERSION the backend was written for */
    const char *name;            /* short name for messages ("redis") */
    size_t state_size;           /* bytes of per-client state the core allocates */
    unsigned flags;              /* ANYLOCK_BACKEND_* (version 1 knew only NO_EXCLUSION) */
    int64_t expiry_resolution_ms;/* the store's expiry granularity (1 if exact to the ms);
                                    the core rounds expiries up to a multiple of it and renews
                                    at least this long before a lease ends */
    const char *const *params;   /* NULL-terminated names of the query parameters it
                                    accepts beyond the core's, or NULL for none */

    /* Connects or otherwise prepares op->state from url.  On failure the core
     * still calls close.  Required. */
    anylock_status (*open)(anylock_op *op, const anylock_url *url);
    /* Frees what open made.  Required (may be a no-op). */
    void (*close)(anylock_op *op);

    /* Takes op->key for op->id with op->expires_ms in op->mode, waiting until
     * op->deadline.  ANYLOCK_OK (filling op->token for a TOKEN backend, and
     * op->granted_at), ANYLOCK_BUSY (try once), ANYLOCK_TIMEOUT,
     * ANYLOCK_MODE_CONFLICT, ANYLOCK_OUTCOME_UNKNOWN (the request that takes
     * the lock was sent and its answer lost), or an error.  A key already
     * held by op->id (the same owner through another handle or process)
     * answers ANYLOCK_ALREADY_HELD at once, without waiting.  The stored
     * owner value is compared whole with the whole id; any value at all
     * (even empty) means the lock is held.  Required. */
    anylock_status (*acquire)(anylock_op *op);
    /* Frees op->key if held by op->id (and, on a SESSION backend, by this
     * handle), waking a waiter; ANYLOCK_NOT_HELD if it is not (expired,
     * reset, or another owner); ANYLOCK_OUTCOME_UNKNOWN if the request was
     * sent and its answer lost.  Required. */
    anylock_status (*release)(anylock_op *op);
    /* Sets the expiry of op->key to op->expires_ms if held by op->id;
     * ANYLOCK_NOT_HELD or ANYLOCK_NOT_EXPIRABLE.  Optional; a SESSION backend
     * without it has its expiry kept by the core alone. */
    anylock_status (*extend)(anylock_op *op);
    /* Version 1 only (a version-2 backend implements enumerate instead):
     * fills info (not info->name) for op->key. */
    anylock_status (*inspect)(anylock_op *op, anylock_info *info);
    /* Force-frees op->key (every holder) and wakes a waiter.  OK whether or
     * not it was held.  Optional. */
    anylock_status (*reset)(anylock_op *op);
    /* Force-frees every key under op->prefix; *count = how many.  Optional. */
    anylock_status (*reset_all)(anylock_op *op, size_t *count);
    /* Version 1 only: calls fn for each held lock under op->prefix. */
    anylock_status (*list)(anylock_op *op, anylock_list_fn fn, void *userdata);

    /* ---- version 2 ---- */
    size_t lock_size;            /* bytes of per-lock state the core allocates (op->lock_state) */
    /* Emits a record for each holder of op->key, or, when op->name is NULL
     * (only asked of an ANYLOCK_BACKEND_LIST backend), of every lock under
     * op->prefix (names without the prefix).  A record may come twice (the
     * core keeps one per holder).  Optional: without it inspect and list are
     * unsupported. */
    anylock_status (*enumerate)(anylock_op *op, anylock_emitter *em);
    /* The handle is being freed: free what op->lock_state holds.  Optional. */
    void (*forget)(anylock_op *op);
};

/*
 * Registers backend for the URL scheme (case-insensitive, copied; letters,
 * digits, '+', '-', '.').  The backend struct must outlive every client.
 * ANYLOCK_BACKEND_EXISTS if the scheme is taken; ANYLOCK_BACKEND_INVALID if
 * the version is not one this library knows (1 to ANYLOCK_BACKEND_VERSION),
 * a required slot is NULL, or a size is absurd.  Thread-safe.
 */
ANYLOCK_EXPORT anylock_status anylock_backend_register(const char *scheme, const anylock_backend *backend);

/* Marks scheme as known but compiled out of this build, so opening it says
 * ANYLOCK_BACKEND_DISABLED rather than ANYLOCK_URL_UNKNOWN_SCHEME. */
ANYLOCK_EXPORT anylock_status anylock_backend_register_disabled(const char *scheme);

#ifdef __cplusplus
}
#endif
#endif /* ANYLOCK_BACKEND_H */
