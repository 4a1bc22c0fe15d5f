/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The core's private declarations: the handles' layout, the parsed URL, and
 * the helpers shared by core/ files.  Non-static internal symbols are named
 * anylock__* and are hidden from the shared library.  Backends never include
 * this file: everything they need is in anylock_backend.h.
 */
#ifndef ANYLOCK_INTERNAL_H
#define ANYLOCK_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/types.h>

#include "anylock.h"
#include "anylock_backend.h"

/* Internal durations are whole milliseconds.  A wait timeout of
 * ANYLOCK__MS_FOREVER waits forever; an expiry of 0 never expires. */
#define ANYLOCK__MS_FOREVER INT64_MAX
#define ANYLOCK__NS_PER_MS 1000000LL

#ifdef __GNUC__
#define ANYLOCK__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define ANYLOCK__PRINTF(f, a)
#endif

/* ---- util.c ---- */
char *anylock__strdup(const char *s);
char *anylock__strndup(const char *s, size_t n);
/* Formats into buf (ANYLOCK_ERRMSG_MAX bytes), truncating safely. */
void anylock__vformat(char *buf, const char *fmt, va_list ap) ANYLOCK__PRINTF(2, 0);
void anylock__format(char *buf, const char *fmt, ...) ANYLOCK__PRINTF(2, 3);
/* Length of the valid UTF-8 sequence at s (n bytes available), or 0. */
size_t anylock__utf8_len(const unsigned char *s, size_t n);

/* ---- config.c: defaults and validation ---- */
typedef struct anylock__defaults {
    int64_t timeout_ms;                    /* ANYLOCK__MS_FOREVER: wait forever */
    int64_t expires_ms;                    /* 0: never expires */
    int expires_set;                       /* anylock_set_default_expires() was called */
    char prefix[ANYLOCK_PREFIX_MAX + 1];
} anylock__defaults;

/* A snapshot of the process-wide defaults. */
void anylock__defaults_get(anylock__defaults *out);
/* seconds -> ms rounded up (a positive value to at least 1 ms); +inf ->
 * forever_value.  BAD_DURATION with a message in errbuf (which may be NULL)
 * for NaN, negative or too large. */
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
anylock_status anylock__check_label(const char *label, char *errbuf);
/* Writes a fresh random owner id (24 characters + NUL) into id. */
anylock_status anylock__make_id(char id[ANYLOCK_ID_MAX + 1]);

/* ---- url.c ---- */
/* Tests only: called with each default anylock_url_param_ms() hands a
 * backend (tests/print_defaults.c sets it). */
extern void (*anylock__param_default_hook)(const char *scheme, const char *name, int64_t dflt_ms);
typedef struct anylock__url {
    anylock_url pub;         /* what the backend sees */
    const char *prefix;      /* core parameters, NULL when absent */
    const char *timeout;
    const char *expires;
    char *redacted;          /* the URL with its passwords replaced by "***" */
    char *mem;               /* one block holding every decoded string */
    anylock_url_host *hosts;
    anylock_url_param *params;
} anylock__url;

/* Parses text; on failure returns the status and writes a message (never
 * containing a password) into errbuf.  Free with anylock__url_free(). */
anylock_status anylock__url_parse(const char *text, anylock__url *url, char *errbuf);
void anylock__url_free(anylock__url *url);
/* The text with everything that could be a password replaced by "***", by
 * structure alone: it needs no valid URL.  NULL when memory ran out. */
char *anylock__redact(const char *text);
/* Replaces, in the NUL-terminated message msg (ANYLOCK_ERRMSG_MAX bytes),
 * every copy of a secret found in url text by anylock__redact's rules with
 * "***". */
void anylock__scrub(char *msg, const char *text);

/* ---- registry.c ---- */
typedef struct anylock__found {
    const anylock_backend *backend; /* NULL when not found */
    int disabled;                   /* known scheme, compiled out */
    anylock_status builtins;        /* how registering the built-ins went */
} anylock__found;

anylock__found anylock__registry_find(const char *scheme);

/* ---- clock.c ---- */
/* An absolute monotonic deadline for a timeout in ms (0 = try once). */
int64_t anylock__deadline(int64_t timeout_ms);
/* Wall-clock time in seconds. */
double anylock__wall_now(void);

/* ---- log.c ---- */
int anylock__log_enabled(anylock_log_level level);
void anylock__log(anylock_log_level level, anylock_event event, const anylock_client *c, const anylock_lock *lock,
                  anylock_status status, double expires_in, const char *fmt, ...) ANYLOCK__PRINTF(7, 8);

/* The same, from code that holds a client's mutex: the record is sent by
 * anylock__log_flush(), which the thread calls once it let the mutex go
 * (keep_lock: it still holds a reference that keeps the lock alive). */
void anylock__log_later(anylock_log_level level, anylock_event event, const anylock_client *c,
                        const anylock_lock *lock, anylock_status status, double expires_in, const char *fmt, ...)
    ANYLOCK__PRINTF(7, 8);
void anylock__log_flush(int keep_lock);

/* ---- meta.c: the holder metadata kept beside a lock ---- */
/* Encodes the holder metadata but its time into buf (ANYLOCK_META_MAX
 * bytes; at most ANYLOCK_META_MAX - 32 used); returns its length (0 if it
 * did not fit).  anylock__meta_since appends the time an acquire took it
 * (Unix time in ms) and returns the whole length. */
size_t anylock__meta_fixed(char *buf, const char *id, const char *host, long pid, const char *label);
size_t anylock__meta_since(char *buf, size_t fixed_len, int64_t since_ms);
/* Decodes meta into the holder fields, if it belongs to id; else leaves
 * them empty.  Strings go into the given buffers. */
void anylock__meta_decode(const char *meta, size_t meta_len, const char *id, size_t id_len,
                          char host[ANYLOCK_HOST_MAX + 1], long *pid, double *since,
                          char label[ANYLOCK_LABEL_MAX + 1]);

/* ---- fork detection ---- */
/* Incremented in every child process after fork(). */
unsigned anylock__fork_generation(void);
void anylock__fork_watch(void);

/* ---- the handles ---- */

/* A job for the renewal threads. */
typedef enum anylock__job_kind { JOB_RENEW, JOB_DELIVER, JOB_CLEANUP } anylock__job_kind;

typedef struct anylock__job {
    struct anylock__job *next;
    anylock__job_kind kind;
    anylock_lock *lock;
    uint64_t gen;
} anylock__job;

typedef struct anylock__renewer {
    pthread_t scheduler;
    int started;
    int stopping;
    pthread_cond_t wake;     /* the schedule changed, or stop */
    pthread_cond_t work;     /* a job was queued, or stop */
    pthread_cond_t idle;     /* a job finished */
    anylock_lock **heap;     /* timed locks, by their next due time */
    size_t nheap, capheap;
    anylock__job *jobs, *jobs_tail;
    size_t njobs;            /* jobs queued and not yet taken by a worker */
    pthread_t *workers;      /* every worker thread, joined at shutdown */
    size_t nworkers, capworkers;
    size_t nidle;            /* workers waiting for a job */
} anylock__renewer;

struct anylock_client {
    pthread_mutex_t mu;              /* guards errmsg, nlocks, the renewer and locks' shared state */
    anylock_status open_status;      /* ANYLOCK_OK once open succeeded */
    unsigned fork_gen;               /* anylock__fork_generation() at open */
    const anylock_backend *backend;  /* NULL if open failed before a backend was found */
    int backend_open;                /* backend->open was called: close must be too */
    void *state;                     /* the backend's state_size bytes */
    size_t lock_size;                /* per-lock state bytes, as open left them */
    unsigned flags;                  /* the backend's flags, as open left them */
    int64_t resolution_ms;
    char *url;                       /* redacted */
    char *scheme;
    char *prefix;
    size_t prefix_len;
    int64_t timeout_ms;
    int64_t expires_ms;
    char host[ANYLOCK_HOST_MAX + 1]; /* this machine's name, for holder metadata */
    long pid;                        /* the process that opened it (forked children refuse it) */
    int64_t wall_offset_ns;          /* the wall clock less the monotonic one, at open: when a
                                        lock was taken, for its metadata, costs no clock read */
    size_t nlocks;
    size_t nfreeing; /* of those, freed from their own callback, finished when it returns */
    anylock__renewer renewer;
    char errmsg[ANYLOCK_ERRMSG_MAX];
};

/* What a handle knows of its lock (guarded by client->mu). */
typedef enum anylock__lstate {
    LS_FREE,  /* holds nothing */
    LS_HELD,  /* acquired (or extended) and not released */
    LS_LOST,  /* was held, then lost; cleanup may still be pending */
    LS_MAYBE  /* an acquire or release whose outcome is unknown */
} anylock__lstate;

struct anylock_lock {
    anylock_client *client;
    pthread_mutex_t mu;              /* serialises slot calls on this lock; taken before client->mu */
    char *name;
    size_t name_len;
    char *key;                       /* prefix + name */
    size_t key_len;
    char id[ANYLOCK_ID_MAX + 1];
    size_t id_len;
    char *label;                     /* NULL: none */
    char *meta;                      /* holder metadata but its time, made at the first acquire
                                        after the id or label changed (NULL: to make) */
    size_t meta_len;
    int64_t expires_ms;              /* 0: never */
    int64_t timeout_ms;              /* ANYLOCK__MS_FOREVER: forever */
    int timeout_set;                 /* set on this lock, not inherited */
    int auto_renewal;
    anylock_mode mode;
    unsigned permits;
    void *backend_state;             /* the backend's lock_size bytes */

    /* Shared with the renewal threads and loss reports; guarded by client->mu. */
    anylock_lost_fn lost_fn;
    void *lost_userdata;
    anylock__lstate state;
    uint64_t gen;                    /* counts acquisitions (and adoptions) */
    int64_t lease_ms;                /* the expiry renewal keeps (rounded); 0: none */
    int64_t valid_until;             /* monotonic ns: end of the granted expiry (INT64_MAX: none) */
    int64_t lost_at;                 /* valid_until less a small guard: when it counts as lost */
    int64_t renew_due;               /* monotonic ns of the next renewal; INT64_MAX: none */
    int64_t due;                     /* when the scheduler looks at it next (its heap key) */
    uint64_t token;
    int has_token;
    int cleanup_pending;             /* a loss whose release in the store is still to do */
    anylock_status lost_status;
    anylock_status renew_status;     /* the last renewal's failure (ANYLOCK_OK if none) */
    char renew_msg[ANYLOCK_ERRMSG_MAX];
    char lost_msg[ANYLOCK_ERRMSG_MAX];
    size_t heap_index;               /* position in the renewer's heap, or SIZE_MAX */
    int renewing;                    /* a renewal job is queued or running */
    int deliver_pending;             /* the lost-lock callback is due */
    int delivering;                  /* the callback runs now */
    int jobs;                        /* queued or running jobs that name this lock */
    int dead;                        /* being freed: jobs skip it */
    int free_requested;              /* freed from its own callback: free when it returns */

    char errmsg[ANYLOCK_ERRMSG_MAX];
};

/* Rounds an expiry up to the client's resolution. */
int64_t anylock__round_expiry(const anylock_client *client, int64_t ms);
/* Fills an op for client (and lock, when not NULL). */
void anylock__op_init(anylock_op *op, anylock_client *client, anylock_lock *lock, char *errbuf);
/* Records status/message of a finished call on the client. */
anylock_status anylock__client_record(anylock_client *client, anylock_status st, const char *msg);
/* anylock_inspect, with the message (if any) also copied to errout
 * (ANYLOCK_ERRMSG_MAX bytes) when it is not NULL. */
anylock_status anylock__inspect(anylock_client *c, const char *name, anylock_info *info, char *errout);
/* ANYLOCK_FORKED (with a message in errbuf) if c belongs to another process. */
anylock_status anylock__check_process(const anylock_client *c, char *errbuf);

/* ---- records.c: what enumerate finds, gathered ---- */
typedef struct anylock__rec {
    char *name;
    size_t name_len;
    char *id;
    size_t id_len;
    int64_t expires_in_ms;
    anylock_mode mode;
    unsigned permits;
    char *meta;
    size_t meta_len;
} anylock__rec;

typedef struct anylock__gather {
    anylock__rec *recs;
    size_t n, cap;
    int nomem;
} anylock__gather;

/* An emitter that copies every record into g. */
void anylock__gather_init(anylock__gather *g, anylock_emitter *em);
void anylock__gather_free(anylock__gather *g);
/* Sorts by name and drops repeated holders. */
void anylock__gather_sort(anylock__gather *g);
/* Fills info from records [from, to) of one name (sorted). */
void anylock__gather_info(const anylock__gather *g, size_t from, size_t to, anylock_info *info);
/* Fills holder (and the strings it points to) from one record. */
void anylock__gather_holder(const anylock__rec *r, anylock_holder *h, char host[ANYLOCK_HOST_MAX + 1],
                            char label[ANYLOCK_LABEL_MAX + 1]);
/* Runs the backend's enumerate (or a version-1 backend's inspect/list) for
 * op into g. */
anylock_status anylock__enumerate(const anylock_client *c, anylock_op *op, anylock_emitter *em);

/* ---- renewal.c ---- */
/* Puts lock under watch (renewal, expiry, loss delivery) after an acquire
 * or extend; called with client->mu held. */
anylock_status anylock__watch(anylock_lock *lock);
/* Sets lock's lease (valid_until, lost_at, renew_due) from a grant at
 * granted (monotonic ns); client->mu held. */
void anylock__lease_set(anylock_lock *lock, int64_t granted, int64_t lease_ms);
/* Takes lock out of the schedule; called with client->mu held. */
void anylock__unwatch(anylock_lock *lock);
/* Marks lock lost and queues the callback and the cleanup; called with
 * client->mu held. */
void anylock__declare_lost(anylock_lock *lock, anylock_status why, const char *msg);
/* Waits (client->mu held) until no job names lock any more, after marking
 * it dead and dropping its queued jobs. */
void anylock__jobs_drain(anylock_lock *lock);
/* Whether the calling thread is delivering a lost-lock callback for c (or
 * for lock, when lock is not NULL). */
int anylock__in_callback(const anylock_client *c, const anylock_lock *lock);
/* Notes that the lost-lock callback running on this thread (if it is
 * lock's) called the library on lock; and whether it has not yet. */
void anylock__callback_calls(const anylock_lock *lock);
int anylock__callback_untouched(const anylock_lock *lock);
void anylock__renewer_shutdown(anylock_client *client);
/* Frees a lock's memory (the handle is no longer used by anyone). */
void anylock__lock_destroy(anylock_lock *lock);

#endif /* ANYLOCK_INTERNAL_H */
