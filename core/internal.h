/*
 * The core's private declarations: the handles' layout, the parsed URL, and
 * the helpers shared by core/ files.  Non-static internal symbols are named
 * anylock__* and are hidden from the shared library.
 */
#ifndef ANYLOCK_INTERNAL_H
#define ANYLOCK_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>

#include "anylock.h"
#include "anylock_backend.h"

/* Internal durations are whole milliseconds.  A wait timeout of
 * ANYLOCK__MS_FOREVER waits forever; an expiry of 0 never expires. */
#define ANYLOCK__MS_FOREVER INT64_MAX

/* ---- util.c ---- */
char *anylock__strdup(const char *s);
char *anylock__strndup(const char *s, size_t n);
/* Formats into buf (ANYLOCK_ERRMSG_MAX bytes), truncating safely. */
void anylock__vformat(char *buf, const char *fmt, va_list ap)
#ifdef __GNUC__
    __attribute__((format(printf, 2, 0)))
#endif
    ;
void anylock__format(char *buf, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ---- config.c: defaults and validation ---- */
typedef struct anylock__defaults {
    int64_t timeout_ms;                    /* ANYLOCK__MS_FOREVER: wait forever */
    int64_t expires_ms;                    /* 0: never expires */
    char prefix[ANYLOCK_PREFIX_MAX + 1];
} anylock__defaults;

/* A snapshot of the process-wide defaults. */
void anylock__defaults_get(anylock__defaults *out);
/* seconds -> ms rounded up; +inf -> forever_value.  BAD_DURATION with a
 * message in errbuf (which may be NULL) for NaN, negative or too large. */
anylock_status anylock__duration_ms(double seconds, int64_t forever_value, int64_t *out, char *errbuf,
                                    const char *what);
/* An expiry: > 0, or +inf for none (0). */
anylock_status anylock__expiry_ms(double seconds, int64_t *out, char *errbuf);
/* Parses a duration written in a URL or on a command line ("1.5", "forever"). */
anylock_status anylock__duration_parse(const char *text, int64_t forever_value, int64_t *out, char *errbuf,
                                       const char *what);
anylock_status anylock__check_name(const char *name, char *errbuf);
anylock_status anylock__check_prefix(const char *prefix, char *errbuf);
anylock_status anylock__check_id(const char *id, char *errbuf);
/* Writes a fresh random owner id (24 characters + NUL) into id. */
anylock_status anylock__make_id(char id[ANYLOCK_ID_MAX + 1]);

/* ---- url.c ---- */
typedef struct anylock__url {
    anylock_url pub;         /* what the backend sees */
    const char *prefix;      /* core parameters, NULL when absent */
    const char *timeout;
    const char *expires;
    char *redacted;          /* the URL with its password replaced by "***" */
    char *mem;               /* one block holding every decoded string */
    anylock_url_host *hosts;
    anylock_url_param *params;
} anylock__url;

/* Parses text; on failure returns the status and writes a message (never
 * containing the password) into errbuf.  Free with anylock__url_free(). */
anylock_status anylock__url_parse(const char *text, anylock__url *url, char *errbuf);
void anylock__url_free(anylock__url *url);

/* ---- registry.c ---- */
typedef struct anylock__found {
    const anylock_backend *backend; /* NULL when not found */
    int disabled;                   /* known scheme, compiled out */
} anylock__found;

anylock__found anylock__registry_find(const char *scheme);

/* ---- clock.c ---- */
/* An absolute monotonic deadline for a timeout in ms (0 = try once). */
int64_t anylock__deadline(int64_t timeout_ms);
/* pthread_cond_timedwait on the monotonic clock until deadline_ns. */
int anylock__cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *mu, int64_t deadline_ns);
/* A condition variable whose timed waits use the monotonic clock. */
int anylock__cond_init(pthread_cond_t *cond);

/* ---- the handles ---- */
typedef struct anylock__renewer {
    pthread_t thread;
    int started;
    int stopping;
    pthread_cond_t wake;     /* new work, or stop */
    pthread_cond_t idle;     /* a lock's renewal finished */
    anylock_lock *head;      /* the locks being renewed */
    char errbuf[ANYLOCK_ERRMSG_MAX];
} anylock__renewer;

struct anylock_client {
    pthread_mutex_t mu;              /* guards errmsg, nlocks, the renewer and locks' shared state */
    anylock_status open_status;      /* ANYLOCK_OK once open succeeded */
    const anylock_backend *backend;  /* NULL if open failed before a backend was found */
    int backend_open;                /* backend->open was called: close must be too */
    void *state;                     /* the backend's state_size bytes */
    char *url;                       /* redacted */
    char *scheme;
    char *prefix;
    size_t prefix_len;
    int64_t timeout_ms;
    int64_t expires_ms;
    size_t nlocks;
    anylock__renewer renewer;
    char errmsg[ANYLOCK_ERRMSG_MAX];
};

struct anylock_lock {
    anylock_client *client;
    char *name;
    size_t name_len;
    char *key;                       /* prefix + name */
    size_t key_len;
    char id[ANYLOCK_ID_MAX + 1];
    size_t id_len;
    int64_t expires_ms;              /* 0: never */
    int64_t timeout_ms;              /* ANYLOCK__MS_FOREVER: forever */
    int timeout_set;                 /* set on this lock, not inherited */
    int auto_renewal;
    anylock_lost_fn lost_fn;
    void *lost_userdata;

    /* Shared with the renewal thread; guarded by client->mu. */
    int held;
    int lost;
    anylock_status lost_status;
    int renewing;                    /* the renewal thread is using this lock */
    int64_t renew_due;               /* monotonic ns */
    int64_t valid_until;             /* monotonic ns: end of the last granted expiry */
    anylock_lock *renew_next;

    char errmsg[ANYLOCK_ERRMSG_MAX];
};

/* Rounds an expiry up to the backend's resolution. */
int64_t anylock__round_expiry(const anylock_client *client, int64_t ms);
/* Fills an op for client (and lock, when not NULL). */
void anylock__op_init(anylock_op *op, anylock_client *client, const anylock_lock *lock, char *errbuf);
/* For a backend stacked on other clients (migrate://): fills op to call c's
 * backend slots on from's behalf.  Name, key, prefix, id and deadline are
 * from's; the state is c's; the expiry is rounded up to c's resolution. */
void anylock__op_forward(anylock_op *op, const anylock_client *c, const anylock_op *from, char *errbuf);
/* Records status/message of a finished call on the client. */
anylock_status anylock__client_record(anylock_client *client, anylock_status st, const char *msg);

/* ---- renewal.c ---- */
anylock_status anylock__renew_start(anylock_lock *lock);
/* Takes lock out of renewal and waits until the renewal thread is done with
 * it.  Returns whether it had been lost (and the status via *why). */
int anylock__renew_stop(anylock_lock *lock, anylock_status *why);
void anylock__renewer_shutdown(anylock_client *client);

#endif /* ANYLOCK_INTERNAL_H */
