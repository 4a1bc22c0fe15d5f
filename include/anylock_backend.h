/*
 * anylock_backend.h: how to add a store to anylock.
 *
 * A backend is a static anylock_backend struct (its vtable) registered at run
 * time under one or more URL schemes with anylock_backend_register().  The
 * built-in backends register through this same path.
 *
 * The model is SQLite's VFS: the struct carries a version, slots are only
 * ever appended, and the core checks the version before it calls a newer
 * slot.  Optional slots may be NULL; the core then answers
 * ANYLOCK_UNSUPPORTED without calling the backend.
 *
 * Division of work.  The core parses and validates the URL, names, ids and
 * durations, owns lock handles and their state, computes deadlines, and runs
 * auto-renewal (calling the extend slot from its renewal thread).  A backend
 * only talks to its store.  Locks carry no backend state: everything a slot
 * needs is in the anylock_op it is given.
 *
 * Threads.  Every slot may be called concurrently from several threads on
 * the same client (including the renewal thread), so a backend protects or
 * pools what it shares.  A blocking acquire must not stop other threads'
 * calls on the same client.
 */
#ifndef ANYLOCK_BACKEND_H
#define ANYLOCK_BACKEND_H

#include <stdint.h>

#include "anylock.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The vtable version this header describes. */
#define ANYLOCK_BACKEND_VERSION 1

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
} anylock_url;

/* The value of the named backend parameter, or NULL if the URL lacks it. */
ANYLOCK_EXPORT const char *anylock_url_param_get(const anylock_url *url, const char *name);

typedef struct anylock_op anylock_op;

/* What the core gives each slot.  Fields not used by a slot are zero. */
/* Parses the backend parameter `name` as seconds (decimals allowed) into
 * whole milliseconds rounded up; dflt when the URL lacks it.
 * ANYLOCK_URL_BAD_PARAM, with a message in op naming the parameter, when the
 * value is not a finite number of seconds. */
ANYLOCK_EXPORT anylock_status anylock_url_param_ms(anylock_op *op, const anylock_url *url, const char *name,
                                                   int64_t dflt, int64_t *out_ms);

struct anylock_op {
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
    int64_t deadline;    /* acquire: monotonic deadline in ns (anylock_now_ns());
                            0 = try once; ANYLOCK_DEADLINE_NEVER = wait forever */
    char *errbuf;        /* where anylock_op_error() writes; ANYLOCK_ERRMSG_MAX bytes */
};

/* Records a detail message for the current call and returns status, so a
 * slot can `return anylock_op_error(op, ANYLOCK_IO, "...", ...)`. */
ANYLOCK_EXPORT anylock_status anylock_op_error(anylock_op *op, anylock_status status, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* The monotonic clock, in nanoseconds.  Deadlines are on this clock. */
ANYLOCK_EXPORT int64_t anylock_now_ns(void);

/* Milliseconds left until op->deadline (0 if passed; INT64_MAX if never). */
ANYLOCK_EXPORT int64_t anylock_op_ms_left(const anylock_op *op);

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

/* Backend flags. */
#define ANYLOCK_BACKEND_NO_EXCLUSION 0x1u /* acquiring never excludes anyone (open://) */

typedef struct anylock_backend anylock_backend;

struct anylock_backend {
    /* ---- version 1 ---- */
    int version;                 /* ANYLOCK_BACKEND_VERSION the backend was written for */
    const char *name;            /* short name for messages ("redis") */
    size_t state_size;           /* bytes of per-client state the core allocates */
    unsigned flags;              /* ANYLOCK_BACKEND_* */
    int64_t expiry_resolution_ms;/* the store's expiry granularity (1 if exact to the ms);
                                    the core rounds expiries up to a multiple of it */
    const char *const *params;   /* NULL-terminated names of the query parameters it
                                    accepts beyond the core's, or NULL for none */

    /* Connects or otherwise prepares op->state from url.  On failure the core
     * still calls close.  Required. */
    anylock_status (*open)(anylock_op *op, const anylock_url *url);
    /* Frees what open made.  Required (may be a no-op). */
    void (*close)(anylock_op *op);

    /* Takes op->key for op->id with op->expires_ms, waiting until
     * op->deadline.  ANYLOCK_OK, ANYLOCK_BUSY (try once), ANYLOCK_TIMEOUT, or
     * an error.  A key already held by op->id (the same owner through another
     * handle or process) answers ANYLOCK_ALREADY_HELD at once, without
     * waiting.  Required. */
    anylock_status (*acquire)(anylock_op *op);
    /* Frees op->key if held by op->id, waking a waiter; ANYLOCK_NOT_HELD if
     * it is not (expired, reset, or another owner).  Required. */
    anylock_status (*release)(anylock_op *op);
    /* Sets the expiry of op->key to op->expires_ms if held by op->id;
     * ANYLOCK_NOT_HELD or ANYLOCK_NOT_EXPIRABLE.  Optional. */
    anylock_status (*extend)(anylock_op *op);
    /* Fills info (not info->name) for op->key.  Optional. */
    anylock_status (*inspect)(anylock_op *op, anylock_info *info);
    /* Force-frees op->key and wakes a waiter.  OK whether or not it was held.
     * Optional. */
    anylock_status (*reset)(anylock_op *op);
    /* Force-frees every key under op->prefix; *count = how many.  Optional. */
    anylock_status (*reset_all)(anylock_op *op, size_t *count);
    /* Calls fn for each held lock under op->prefix (info->name without the
     * prefix); stops early, returning OK, when fn returns non-zero.
     * Optional. */
    anylock_status (*list)(anylock_op *op, anylock_list_fn fn, void *userdata);
    /* ---- version 2 slots go here ---- */
};

/*
 * Registers backend for the URL scheme (case-insensitive, copied; letters,
 * digits, '+', '-', '.').  The backend struct must outlive every client.
 * ANYLOCK_BACKEND_EXISTS if the scheme is taken; ANYLOCK_BACKEND_INVALID if
 * the version is unknown, a required slot is NULL or state_size is absurd.
 * Thread-safe.
 */
ANYLOCK_EXPORT anylock_status anylock_backend_register(const char *scheme, const anylock_backend *backend);

/* Marks scheme as known but compiled out of this build, so opening it says
 * ANYLOCK_BACKEND_DISABLED rather than ANYLOCK_URL_UNKNOWN_SCHEME. */
ANYLOCK_EXPORT anylock_status anylock_backend_register_disabled(const char *scheme);

#ifdef __cplusplus
}
#endif
#endif /* ANYLOCK_BACKEND_H */
