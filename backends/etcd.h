/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * What the etcd:// backend's two halves share: etcd_http.c speaks etcd's v3
 * JSON API (the gRPC gateway) over HTTP with libcurl, to whichever member of
 * the cluster answers; etcd.c builds the lock recipe on it.
 */
#ifndef ANYLOCK_ETCD_H
#define ANYLOCK_ETCD_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "anylock_backend.h"

/* gRPC status codes etcd answers with (in the gateway's "code" field). */
#define ETCD_GRPC_INVALID_ARGUMENT 3
#define ETCD_GRPC_DEADLINE_EXCEEDED 4
#define ETCD_GRPC_NOT_FOUND 5
#define ETCD_GRPC_PERMISSION_DENIED 7
#define ETCD_GRPC_FAILED_PRECONDITION 9
#define ETCD_GRPC_UNAVAILABLE 14
#define ETCD_GRPC_UNAUTHENTICATED 16

typedef struct etcd_endpoint {
    char *host;
    int port;
    char *base; /* "http://host:port" (IPv6 hosts in brackets) */
} etcd_endpoint;

typedef struct etcd_http etcd_http;

/* What the transport is opened with. */
typedef struct etcd_http_config {
    const anylock_url *url;
    int64_t dial_timeout_ms;    /* one TCP connect to one member */
    int64_t command_timeout_ms; /* one call, all members tried included */
} etcd_http_config;

/* Opens the transport: endpoints from url (default port 2379), a pool of
 * keep-alive connections, and, with a user in the URL, an auth token.
 * Checks that a member answers, within the dial timeout. */
anylock_status etcd_http_open(anylock_op *op, const etcd_http_config *cfg, etcd_http **out);
void etcd_http_close(etcd_http *h);

/* The outcome of one call beyond its status. */
typedef struct etcd_reply {
    json_object *json;  /* the answer's body (put with json_object_put); NULL on failure */
    int grpc_code;      /* etcd's error code when the status is ANYLOCK_STORE etc., else 0 */
    int maybe_applied;  /* an attempt was sent and its answer lost: it may have been applied */
    int64_t sent_at;    /* monotonic ns just before the attempt that answered was sent */
} etcd_reply;

/*
 * POSTs body (JSON) to path ("/v3/kv/range") on the current member and
 * parses the answer.  A member that cannot be reached, does not answer in
 * its share of the time, has no leader, or is shutting down makes the call
 * move to the next member; each member is tried at most once, and the whole
 * call ends by deadline (absolute monotonic ns; ANYLOCK_DEADLINE_NEVER: the
 * command timeout from now).  An expired auth token is renewed once.  An
 * error etcd answered with is ANYLOCK_STORE, ANYLOCK_ACCESS or
 * ANYLOCK_AUTH with r->grpc_code set and a message in op.
 */
anylock_status etcd_call(anylock_op *op, etcd_http *h, const char *path, const char *body, int64_t deadline,
                         etcd_reply *r);

/* The command timeout, as given in the URL or its default. */
int64_t etcd_command_timeout_ms(const etcd_http *h);

/* ---- watches ------------------------------------------------------------- */

typedef struct etcd_watch etcd_watch;

/* Starts a watch stream (POST /v3/watch with create_body) on the current
 * member, without waiting for anything. */
anylock_status etcd_watch_start(anylock_op *op, etcd_http *h, const char *create_body, etcd_watch **out);

/* Waits until the stream has a message or deadline: 1 and *msg (put it)
 * for a message, 0 when the deadline came first, or a negative value when
 * the stream ended or failed (then the caller looks again with a range). */
int etcd_watch_next(etcd_watch *w, int64_t deadline, json_object **msg);
/* Makes a wait in etcd_watch_next (in another thread) return 0 now. */
void etcd_watch_wakeup(etcd_watch *w);
void etcd_watch_stop(etcd_watch *w);

/* ---- the holder watch (etcd_holders.c) ------------------------------------- */

/* One key a handle holds, while the watch looks after it (in the handle's
 * per-lock state; fields are the watch's). */
typedef struct etcd_held {
    struct etcd_held *prev, *next;
    anylock_lock *lock;
    char *key;
    size_t key_len;
    size_t dir_len;      /* of its name's directory, <prefix><name>/, which starts the key */
    int64_t rev;         /* the key's create revision: a deletion after it is ours */
    int64_t need_from;   /* the first revision a stream must deliver for it */
    int64_t joined_ns;
    int64_t rereport_at; /* after a loss found this soon after the join, when to say it again */
    int lost;
    char name[68];
} etcd_held;

typedef struct etcd_holders etcd_holders;

/* The watch of one client (its thread starts with the first key). */
anylock_status etcd_holders_open(anylock_op *op, etcd_http *h, etcd_holders **out);
void etcd_holders_close(etcd_holders *hs);
/* Looks after key, which op's lock holds since its creation at revision
 * rev: its deletion is reported through anylock_lock_lost() until
 * etcd_holders_remove().  Best effort: without memory or a thread, the
 * lock's renewal still finds the loss. */
void etcd_holders_add(etcd_holders *hs, const anylock_op *op, etcd_held *e, const char *key, size_t key_len,
                      int64_t rev);
/* Stops looking after e (no report for it once this returns); a no-op for
 * an e that was never added. */
void etcd_holders_remove(etcd_holders *hs, etcd_held *e);

/* ---- values ---------------------------------------------------------------- */

/* Standard base64 (etcd's bytes fields). */
char *etcd_b64(const void *data, size_t len);
/* Decodes s into a new buffer (NUL-terminated, *len bytes); NULL on bad
 * input or no memory. */
char *etcd_unb64(const char *s, size_t *len);

/* A member of obj, or NULL. */
json_object *etcd_get(json_object *obj, const char *name);
/* An int64 field that the gateway writes as a string (or a number); dflt
 * when absent or malformed.  Proto3 JSON leaves out zero values. */
int64_t etcd_get_int(json_object *obj, const char *name, int64_t dflt);

/* A growable string for request bodies. */
typedef struct etcd_buf {
    char *s;
    size_t len, cap;
    int failed; /* out of memory */
} etcd_buf;

void etcd_buf_add(etcd_buf *b, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Appends the base64 of data. */
void etcd_buf_b64(etcd_buf *b, const void *data, size_t len);
/* Appends "key":..,"range_end":.. for every key starting with prefix (all
 * keys for an empty one). */
void etcd_buf_prefix_range(etcd_buf *b, const char *prefix, size_t len);
void etcd_buf_free(etcd_buf *b);

#endif
