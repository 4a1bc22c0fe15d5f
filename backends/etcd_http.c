/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * etcd's v3 API as JSON over HTTP/1.1 (the gRPC gateway every etcd 3.4
 * member serves at <client-url>/v3/...), with libcurl.
 *
 * Connections: a pool of curl easy handles, each keeping its connections
 * alive between calls, so a call costs one round trip on a warm client and
 * threads never share a handle.  Watches take a handle of their own (the
 * answer is a stream that never ends), driven by a curl multi handle so the
 * waiter can wait on it with a deadline.
 *
 * Members: every call goes to the member the client last found working.  A
 * member that refuses the connection, does not answer within its share of
 * the call's time (the time left divided by the members not yet tried), has
 * no leader, or is shutting down makes the call move to the next one; when
 * every member failed, the call waits a little and goes round again while
 * its deadline allows (a leader election takes about a second).  Every
 * request carries the "hasleader" metadata (the header
 * Grpc-Metadata-hasleader: true, what clientv3.WithRequireLeader sends), so
 * a member cut off from the quorum answers at once instead of stalling, and
 * a watch on it is cancelled when it loses its leader.
 *
 * Auth: with user:password@ in the URL the client authenticates for a token
 * (POST /v3/auth/authenticate) and sends it as the Authorization header; an
 * expired token is renewed once per call.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "etcd.h"

#define DEFAULT_PORT 2379
/* Idle connections kept per client. */
#define POOL_IDLE_MAX 16
/* The pause between two rounds over the members, doubling up to the
 * ceiling: enough for a leader election to finish without hammering it. */
#define ROUND_PAUSE_FIRST_MS 25
#define ROUND_PAUSE_MAX_MS 400
/* Bodies larger than this are refused (an answer listing every lock under
 * a prefix is far smaller). */
#define BODY_MAX (64u << 20)

struct etcd_http {
    etcd_endpoint *eps;
    size_t neps;
    int64_t dial_ms, command_ms;
    char *user, *password;
    anylock_pool *pool;

    pthread_mutex_t mu; /* guards current and token */
    int mu_init;
    size_t current;
    char *token;
};

/* ---- growable strings and base64 ------------------------------------------ */

static int buf_reserve(etcd_buf *b, size_t more)
{
    if (b->failed)
        return -1;
    if (b->len + more + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *g = realloc(b->s, cap);
    if (!g) {
        b->failed = 1;
        return -1;
    }
    b->s = g;
    b->cap = cap;
    return 0;
}

void etcd_buf_add(etcd_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0 || buf_reserve(b, (size_t)n) != 0)
        return;
    if ((size_t)n < sizeof small) {
        memcpy(b->s + b->len, small, (size_t)n + 1);
    } else {
        va_start(ap, fmt);
        vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t b64_into(char *out, const unsigned char *in, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = b64chars[(v >> 18) & 63];
        out[o++] = b64chars[(v >> 12) & 63];
        out[o++] = i + 1 < len ? b64chars[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? b64chars[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

void etcd_buf_b64(etcd_buf *b, const void *data, size_t len)
{
    size_t n = (len + 2) / 3 * 4;
    if (buf_reserve(b, n) != 0)
        return;
    b->len += b64_into(b->s + b->len, data, len);
}

void etcd_buf_prefix_range(etcd_buf *b, const char *prefix, size_t len)
{
    /* The key just past every key starting with prefix: its last byte that
     * is not 0xff, plus one; "\0" (etcd: to the end) when there is none. */
    char *end = malloc(len + 1);
    if (!end) {
        b->failed = 1;
        return;
    }
    memcpy(end, prefix, len);
    size_t n = len;
    while (n > 0 && (unsigned char)end[n - 1] == 0xff)
        n--;
    if (n == 0)
        end[n++] = '\0';
    else
        end[n - 1] = (char)((unsigned char)end[n - 1] + 1);
    etcd_buf_add(b, "\"key\":\"");
    etcd_buf_b64(b, len ? prefix : "", len ? len : 1);
    etcd_buf_add(b, "\",\"range_end\":\"");
    etcd_buf_b64(b, end, n);
    etcd_buf_add(b, "\"");
    free(end);
}

void etcd_buf_free(etcd_buf *b)
{
    free(b->s);
    memset(b, 0, sizeof *b);
}

char *etcd_b64(const void *data, size_t len)
{
    char *out = malloc((len + 2) / 3 * 4 + 1);
    if (out)
        b64_into(out, data, len);
    return out;
}

static int b64_val(int c)
{
    const char *p = c ? strchr(b64chars, c) : NULL;
    return p ? (int)(p - b64chars) : -1;
}

char *etcd_unb64(const char *s, size_t *len)
{
    size_t n = strlen(s);
    char *out = malloc(n / 4 * 3 + 4);
    if (!out)
        return NULL;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=')
            break;
        int v = b64_val((unsigned char)s[i]);
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    out[o] = '\0';
    *len = o;
    return out;
}

/* ---- JSON ------------------------------------------------------------------- */

json_object *etcd_get(json_object *obj, const char *name)
{
    json_object *v = NULL;
    if (!obj || !json_object_is_type(obj, json_type_object) || !json_object_object_get_ex(obj, name, &v))
        return NULL;
    return v;
}

int64_t etcd_get_int(json_object *obj, const char *name, int64_t dflt)
{
    json_object *v = etcd_get(obj, name);
    if (!v)
        return dflt;
    if (json_object_is_type(v, json_type_int))
        return json_object_get_int64(v);
    if (!json_object_is_type(v, json_type_string))
        return dflt;
    const char *s = json_object_get_string(v);
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (!*s || *end || errno) {
        /* Lease ids are int64 on the wire, but some come back as uint64
         * text; keep the bits. */
        errno = 0;
        unsigned long long u = strtoull(s, &end, 10);
        if (!*s || *end || errno || *s == '-')
            return dflt;
        return (int64_t)u;
    }
    return x;
}

/* ---- connections -------------------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
    etcd_buf *b = ud;
    size_t len = size * n;
    if (b->len + len > BODY_MAX || buf_reserve(b, len) != 0)
        return 0; /* makes curl fail the transfer */
    memcpy(b->s + b->len, data, len);
    b->len += len;
    b->s[b->len] = '\0';
    return len;
}

static void common_options(CURL *e)
{
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    /* Never through a proxy from the environment: members are addressed
     * directly. */
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
}

static anylock_status conn_open(void *ctx, anylock_op *op, int64_t deadline, void **conn)
{
    (void)ctx;
    (void)deadline;
    CURL *e = curl_easy_init();
    if (!e)
        return anylock_op_error(op, ANYLOCK_NOMEM, "etcd: cannot make an HTTP handle");
    common_options(e);
    *conn = e;
    return ANYLOCK_OK;
}

static void conn_close(void *ctx, void *conn)
{
    (void)ctx;
    curl_easy_cleanup(conn);
}

static const anylock_pool_methods pool_methods = {conn_open, conn_close, NULL};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init(void)
{
    curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- one attempt on one member ------------------------------------------------ */

typedef enum { TRY_DONE, TRY_NEXT, TRY_REAUTH } try_verdict;

static char *current_token(etcd_http *h)
{
    pthread_mutex_lock(&h->mu);
    char *t = h->token ? strdup(h->token) : NULL;
    pthread_mutex_unlock(&h->mu);
    return t;
}

static struct curl_slist *headers(const char *token)
{
    struct curl_slist *l = NULL, *n;
    const char *fixed[] = {"Content-Type: application/json", "Expect:", "Grpc-Metadata-hasleader: true"};
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) {
        if (!(n = curl_slist_append(l, fixed[i]))) {
            curl_slist_free_all(l);
            return NULL;
        }
        l = n;
    }
    if (token) {
        size_t len = strlen(token) + 32;
        char *line = malloc(len);
        if (!line) {
            curl_slist_free_all(l);
            return NULL;
        }
        snprintf(line, len, "Authorization: %s", token);
        n = curl_slist_append(l, line);
        free(line);
        if (!n) {
            curl_slist_free_all(l);
            return NULL;
        }
        l = n;
    }
    return l;
}

static long clamp_ms(int64_t ms)
{
    if (ms < 1)
        return 1;
    return ms > LONG_MAX / 2 ? LONG_MAX / 2 : (long)ms;
}

/* The error etcd answered with: status, code and message. */
static try_verdict store_error(anylock_op *op, const etcd_endpoint *ep, const char *path, long http,
                               json_object *j, anylock_status *st, etcd_reply *r)
{
    json_object *msgo = etcd_get(j, "message");
    if (!msgo)
        msgo = etcd_get(j, "error");
    const char *msg = msgo && json_object_is_type(msgo, json_type_string) ? json_object_get_string(msgo) : "";
    int code = (int)etcd_get_int(j, "code", 0);
    r->grpc_code = code;
    if (code == ETCD_GRPC_UNAUTHENTICATED || strstr(msg, "invalid auth token"))
        return TRY_REAUTH;
    if (code == ETCD_GRPC_UNAVAILABLE || code == ETCD_GRPC_DEADLINE_EXCEEDED || http == 503) {
        /* No leader, leader changed, request timed out, stopping: another
         * member (or this one after the election) can do it.  Only a
         * refusal before the request was handled is sure not to apply. */
        if (!strstr(msg, "no leader"))
            r->maybe_applied = 1;
        *st = anylock_op_error(op, ANYLOCK_IO, "etcd: %s on %.100s: %.120s", path, ep->base, msg);
        return TRY_NEXT;
    }
    if (code == ETCD_GRPC_PERMISSION_DENIED)
        *st = anylock_op_error(op, ANYLOCK_ACCESS, "etcd: %s: %.160s", path, msg);
    else if (strstr(msg, "user name is empty") || strstr(msg, "authentication failed"))
        *st = anylock_op_error(op, ANYLOCK_AUTH, "etcd: %s: %.160s", path, msg);
    else
        *st = anylock_op_error(op, ANYLOCK_STORE, "etcd: %s: %.160s", path, msg);
    return TRY_DONE;
}

static try_verdict attempt(anylock_op *op, etcd_http *h, size_t epi, const char *path, const char *body,
                           const char *token, int64_t until, anylock_status *st, etcd_reply *r)
{
    const etcd_endpoint *ep = &h->eps[epi];
    void *conn = NULL;
    *st = anylock_pool_get(h->pool, op, until, &conn);
    if (*st != ANYLOCK_OK)
        return TRY_DONE;
    CURL *e = conn;
    char url[512];
    snprintf(url, sizeof url, "%s%s", ep->base, path);
    struct curl_slist *hdrs = headers(token);
    etcd_buf in = {0};
    if (!hdrs) {
        anylock_pool_put(h->pool, conn, 0);
        *st = anylock_op_error(op, ANYLOCK_NOMEM, "etcd: out of memory");
        return TRY_DONE;
    }
    int64_t left = anylock_ms_until(until);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &in);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, clamp_ms(left));
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, clamp_ms(left < h->dial_ms ? left : h->dial_ms));
    int64_t sent_at = anylock_now_ns();
    CURLcode rc = curl_easy_perform(e);
    long http = 0, reqsize = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &http);
    curl_easy_getinfo(e, CURLINFO_REQUEST_SIZE, &reqsize);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, NULL);
    curl_slist_free_all(hdrs);
    try_verdict v = TRY_DONE;
    if (rc != CURLE_OK) {
        anylock_pool_put(h->pool, conn, 1);
        etcd_buf_free(&in);
        if (in.failed || rc == CURLE_WRITE_ERROR) {
            *st = anylock_op_error(op, ANYLOCK_NOMEM, "etcd: %s: the answer is too large or memory ran out", path);
            r->maybe_applied = 1;
            return TRY_DONE;
        }
        int connected = reqsize > 0 && rc != CURLE_COULDNT_CONNECT && rc != CURLE_COULDNT_RESOLVE_HOST;
        if (connected)
            r->maybe_applied = 1;
        if (rc == CURLE_OPERATION_TIMEDOUT)
            *st = anylock_op_error(op, ANYLOCK_IO, "etcd: %s: no answer from %.100s in time%s", path, ep->base,
                                   connected ? "" : " (connect)");
        else if (!connected)
            *st = anylock_op_error(op, ANYLOCK_CONNECT, "etcd: cannot connect to %.100s: %s", ep->base,
                                   curl_easy_strerror(rc));
        else
            *st = anylock_op_error(op, ANYLOCK_IO, "etcd: %s on %.100s: %s", path, ep->base, curl_easy_strerror(rc));
        return TRY_NEXT;
    }
    anylock_pool_put(h->pool, conn, 0);
    json_object *j = in.s ? json_tokener_parse(in.s) : NULL;
    if (!j || !json_object_is_type(j, json_type_object)) {
        if (j)
            json_object_put(j);
        *st = anylock_op_error(op, ANYLOCK_PROTOCOL, "etcd: %s on %.100s: HTTP %ld with a body that is not etcd's "
                               "JSON (is this an etcd 3.4+ client URL?)", path, ep->base, http);
        etcd_buf_free(&in);
        return TRY_DONE;
    }
    etcd_buf_free(&in);
    if (http == 200 && !etcd_get(j, "error")) {
        r->json = j;
        r->sent_at = sent_at;
        *st = ANYLOCK_OK;
        return TRY_DONE;
    }
    v = store_error(op, ep, path, http, j, st, r);
    json_object_put(j);
    return v;
}

/* ---- auth --------------------------------------------------------------------- */

static anylock_status authenticate(anylock_op *op, etcd_http *h, size_t epi, int64_t until)
{
    json_object *req = json_object_new_object();
    if (!req)
        return anylock_op_error(op, ANYLOCK_NOMEM, "etcd: out of memory");
    json_object_object_add(req, "name", json_object_new_string(h->user));
    json_object_object_add(req, "password", json_object_new_string(h->password ? h->password : ""));
    const char *body = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
    etcd_reply r = {0};
    anylock_status st;
    try_verdict v = attempt(op, h, epi, "/v3/auth/authenticate", body, NULL, until, &st, &r);
    json_object_put(req);
    (void)v;
    if (st == ANYLOCK_OK) {
        json_object *t = etcd_get(r.json, "token");
        char *tok = t && json_object_is_type(t, json_type_string) ? strdup(json_object_get_string(t)) : NULL;
        json_object_put(r.json);
        if (!tok)
            return anylock_op_error(op, ANYLOCK_PROTOCOL, "etcd: authenticate answered without a token");
        pthread_mutex_lock(&h->mu);
        free(h->token);
        h->token = tok;
        pthread_mutex_unlock(&h->mu);
        return ANYLOCK_OK;
    }
    if (r.grpc_code == ETCD_GRPC_FAILED_PRECONDITION)
        return ANYLOCK_OK; /* auth is not enabled on the cluster: no token is needed */
    if (st == ANYLOCK_STORE && r.grpc_code == ETCD_GRPC_INVALID_ARGUMENT)
        return anylock_op_error(op, ANYLOCK_AUTH, "etcd: authentication as \"%.64s\" failed (wrong user or "
                                "password)", h->user);
    return st;
}

/* ---- calls ---------------------------------------------------------------------- */

static size_t current(etcd_http *h)
{
    pthread_mutex_lock(&h->mu);
    size_t c = h->current;
    pthread_mutex_unlock(&h->mu);
    return c;
}

static void move_on(etcd_http *h, size_t failed)
{
    pthread_mutex_lock(&h->mu);
    if (h->current == failed)
        h->current = (failed + 1) % h->neps;
    pthread_mutex_unlock(&h->mu);
}

static void nap_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

anylock_status etcd_call(anylock_op *op, etcd_http *h, const char *path, const char *body, int64_t deadline,
                         etcd_reply *r)
{
    memset(r, 0, sizeof *r);
    /* The command timeout, and no later than a real deadline. */
    int64_t end = anylock_now_ns() + h->command_ms * 1000000;
    if (deadline != ANYLOCK_DEADLINE_NEVER && deadline != 0 && deadline < end)
        end = deadline;
    anylock_status st = ANYLOCK_IO;
    int reauthed = 0;
    int64_t pause = ROUND_PAUSE_FIRST_MS;
    for (;;) {
        size_t first = current(h);
        for (size_t k = 0; k < h->neps; k++) {
            size_t epi = (first + k) % h->neps;
            int64_t now = anylock_now_ns();
            if (now >= end)
                goto out;
            /* This member's share of the time left, so that a hung member
             * leaves time for the others. */
            int64_t share = (end - now) / (int64_t)(h->neps - k);
            char *token = h->user ? current_token(h) : NULL;
            try_verdict v = attempt(op, h, epi, path, body, token, now + share, &st, r);
            free(token);
            if (v == TRY_REAUTH && h->user && !reauthed) {
                reauthed = 1;
                st = authenticate(op, h, epi, end);
                if (st != ANYLOCK_OK)
                    return st;
                k--; /* the same member again, with the new token */
                continue;
            }
            if (v == TRY_REAUTH) {
                return anylock_op_error(op, ANYLOCK_AUTH, "etcd: %s: the cluster requires authentication%s", path,
                                        h->user ? " and refused the token it gave" : " (give user:password@)");
            }
            if (v == TRY_DONE)
                return st;
            move_on(h, epi);
            anylock_op_log(op, ANYLOCK_LOG_DEBUG, ANYLOCK_EVENT_CONNECTION, "%s; trying the next member",
                           op->errbuf);
        }
        /* Every member failed: wait a little (an election, a restart) and
         * go round again while the deadline allows. */
        int64_t left = anylock_ms_until(end);
        if (left <= 0)
            break;
        nap_ms(pause < left ? pause : left);
        pause = pause * 2 > ROUND_PAUSE_MAX_MS ? ROUND_PAUSE_MAX_MS : pause * 2;
    }
out:
    if (st == ANYLOCK_OK)
        st = ANYLOCK_IO;
    if (h->neps > 1) {
        /* Say that every member was tried, and what the last one said. */
        char last[ANYLOCK_ERRMSG_MAX];
        snprintf(last, sizeof last, "%s", op->errbuf);
        st = anylock_op_error(op, st, "etcd: none of the %zu members could serve it in time (no quorum?); last: "
                              "%.170s", h->neps, last);
    }
    return st;
}

int64_t etcd_command_timeout_ms(const etcd_http *h)
{
    return h->command_ms;
}

/* ---- open / close ----------------------------------------------------------------- */

anylock_status etcd_http_open(anylock_op *op, const etcd_http_config *cfg, etcd_http **out)
{
    *out = NULL;
    pthread_once(&curl_once, curl_init);
    if (curl_init_result != CURLE_OK)
        return anylock_op_error(op, ANYLOCK_INTERNAL, "etcd: libcurl failed to initialise: %s",
                                curl_easy_strerror(curl_init_result));
    const anylock_url *url = cfg->url;
    etcd_http *h = calloc(1, sizeof *h);
    if (!h)
        return anylock_op_error(op, ANYLOCK_NOMEM, "etcd: out of memory");
    *out = h;
    pthread_mutex_init(&h->mu, NULL);
    h->mu_init = 1;
    h->dial_ms = cfg->dial_timeout_ms;
    h->command_ms = cfg->command_timeout_ms;
    h->eps = calloc(url->nhosts, sizeof *h->eps);
    if (!h->eps)
        return anylock_op_error(op, ANYLOCK_NOMEM, "etcd: out of memory");
    for (size_t i = 0; i < url->nhosts; i++) {
        etcd_endpoint *ep = &h->eps[i];
        ep->host = strdup(url->hosts[i].host);
        ep->port = url->hosts[i].port ? url->hosts[i].port : DEFAULT_PORT;
        size_t n = strlen(url->hosts[i].host) + 32;
        ep->base = malloc(n);
        if (!ep->host || !ep->base)
            return anylock_op_error(op, ANYLOCK_NOMEM, "etcd: out of memory");
        int v6 = strchr(ep->host, ':') != NULL;
        snprintf(ep->base, n, "http://%s%s%s:%d", v6 ? "[" : "", ep->host, v6 ? "]" : "", ep->port);
        h->neps++;
    }
    if ((url->user && !(h->user = strdup(url->user))) || (url->password && !(h->password = strdup(url->password))))
        return anylock_op_error(op, ANYLOCK_NOMEM, "etcd: out of memory");
    if (!h->user && h->password)
        return anylock_op_error(op, ANYLOCK_URL_BAD_USERINFO, "etcd: a password needs a user name (user:password@)");
    anylock_status st = anylock_pool_create(&pool_methods, h, POOL_IDLE_MAX, &h->pool);
    if (st != ANYLOCK_OK)
        return anylock_op_error(op, st, "etcd: cannot make the connection pool");

    /* One member must answer within the dial timeout: the member's status
     * (no quorum needed, so a client can be opened during an outage), then
     * the token.  Members are tried in order, each for its share. */
    int64_t end = anylock_now_ns() + h->dial_ms * 1000000;
    for (size_t k = 0; k < h->neps; k++) {
        int64_t now = anylock_now_ns();
        if (now >= end)
            break;
        int64_t share = (end - now) / (int64_t)(h->neps - k);
        etcd_reply r = {0};
        try_verdict v = attempt(op, h, k, "/v3/maintenance/status", "{}", NULL, now + share, &st, &r);
        if (r.json)
            json_object_put(r.json);
        if (st == ANYLOCK_OK || (v == TRY_REAUTH && h->user)) {
            pthread_mutex_lock(&h->mu);
            h->current = k;
            pthread_mutex_unlock(&h->mu);
            if (!h->user)
                return ANYLOCK_OK;
            st = authenticate(op, h, k, end);
            if (st == ANYLOCK_OK || st == ANYLOCK_AUTH || st == ANYLOCK_ACCESS)
                return st;
            continue;
        }
        if (v == TRY_DONE && st != ANYLOCK_OK && st != ANYLOCK_AUTH)
            return st; /* not etcd, or etcd refusing: another member will not differ */
        if (v == TRY_REAUTH)
            return anylock_op_error(op, ANYLOCK_AUTH, "etcd: the cluster requires authentication (give "
                                    "user:password@ in the URL)");
    }
    if (st == ANYLOCK_OK || st == ANYLOCK_IO)
        st = anylock_op_error(op, st == ANYLOCK_OK ? ANYLOCK_CONNECT : st,
                              "etcd: no member answered within the dial timeout (%lld ms): %.150s",
                              (long long)h->dial_ms, op->errbuf);
    return st;
}

void etcd_http_close(etcd_http *h)
{
    if (!h)
        return;
    anylock_pool_destroy(h->pool);
    for (size_t i = 0; i < h->neps; i++) {
        free(h->eps[i].host);
        free(h->eps[i].base);
    }
    free(h->eps);
    free(h->user);
    if (h->password) {
        /* Not kept in memory longer than needed. */
        memset(h->password, 0, strlen(h->password));
        free(h->password);
    }
    free(h->token);
    if (h->mu_init)
        pthread_mutex_destroy(&h->mu);
    free(h);
}

/* ---- watches ---------------------------------------------------------------------- */

struct etcd_watch {
    etcd_http *h;
    size_t epi;
    CURLM *multi;
    CURL *easy;
    struct curl_slist *hdrs;
    char *body;
    etcd_buf in;
    size_t scan; /* bytes of in already handed out */
    int done;
    CURLcode result;
    atomic_int woken; /* etcd_watch_wakeup was called */
};

anylock_status etcd_watch_start(anylock_op *op, etcd_http *h, const char *create_body, etcd_watch **out)
{
    *out = NULL;
    etcd_watch *w = calloc(1, sizeof *w);
    if (!w)
        return anylock_op_error(op, ANYLOCK_NOMEM, "etcd: out of memory");
    w->h = h;
    w->epi = current(h);
    char *token = h->user ? current_token(h) : NULL;
    w->hdrs = headers(token);
    free(token);
    w->body = strdup(create_body);
    w->multi = curl_multi_init();
    w->easy = curl_easy_init();
    if (!w->hdrs || !w->body || !w->multi || !w->easy) {
        etcd_watch_stop(w);
        return anylock_op_error(op, ANYLOCK_NOMEM, "etcd: out of memory");
    }
    char url[512];
    snprintf(url, sizeof url, "%s/v3/watch", h->eps[w->epi].base);
    common_options(w->easy);
    curl_easy_setopt(w->easy, CURLOPT_URL, url);
    curl_easy_setopt(w->easy, CURLOPT_HTTPHEADER, w->hdrs);
    curl_easy_setopt(w->easy, CURLOPT_POSTFIELDS, w->body);
    curl_easy_setopt(w->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(w->body));
    curl_easy_setopt(w->easy, CURLOPT_WRITEDATA, &w->in);
    curl_easy_setopt(w->easy, CURLOPT_CONNECTTIMEOUT_MS, clamp_ms(h->dial_ms));
    if (curl_multi_add_handle(w->multi, w->easy) != CURLM_OK) {
        etcd_watch_stop(w);
        return anylock_op_error(op, ANYLOCK_INTERNAL, "etcd: cannot start a watch");
    }
    int running = 0;
    curl_multi_perform(w->multi, &running);
    *out = w;
    return ANYLOCK_OK;
}

/* The next complete line of the stream as JSON, or NULL. */
static json_object *next_line(etcd_watch *w, int final)
{
    while (w->scan < w->in.len) {
        char *start = w->in.s + w->scan;
        char *nl = memchr(start, '\n', w->in.len - w->scan);
        if (!nl && !final)
            return NULL;
        size_t n = nl ? (size_t)(nl - start) : w->in.len - w->scan;
        w->scan += n + (nl ? 1 : 0);
        if (n == 0)
            continue;
        char save = start[n];
        start[n] = '\0';
        json_object *j = json_tokener_parse(start);
        start[n] = save;
        if (w->scan == w->in.len) {
            w->in.len = w->scan = 0; /* everything handed out: reuse the buffer */
        }
        return j ? j : json_object_new_object(); /* a malformed line ends the wait like an error */
    }
    return NULL;
}

int etcd_watch_next(etcd_watch *w, int64_t deadline, json_object **msg)
{
    *msg = NULL;
    for (;;) {
        json_object *j = next_line(w, w->done);
        if (j) {
            *msg = j;
            return 1;
        }
        if (w->done) {
            if (w->result == CURLE_COULDNT_CONNECT || w->result == CURLE_OPERATION_TIMEDOUT)
                move_on(w->h, w->epi);
            return -1;
        }
        int64_t left = anylock_ms_until(deadline);
        if (left <= 0 || atomic_exchange(&w->woken, 0))
            return 0;
        int numfds = 0;
        if (curl_multi_poll(w->multi, NULL, 0, (int)(left > 1000 ? 1000 : left), &numfds) != CURLM_OK) {
            w->done = 1;
            w->result = CURLE_RECV_ERROR;
            continue;
        }
        int running = 0;
        curl_multi_perform(w->multi, &running);
        int q;
        CURLMsg *m;
        while ((m = curl_multi_info_read(w->multi, &q))) {
            if (m->msg == CURLMSG_DONE) {
                w->done = 1;
                w->result = m->data.result;
            }
        }
        if (w->in.failed) {
            w->done = 1;
            w->result = CURLE_WRITE_ERROR;
        }
    }
}

void etcd_watch_wakeup(etcd_watch *w)
{
    atomic_store(&w->woken, 1);
    curl_multi_wakeup(w->multi);
}

void etcd_watch_stop(etcd_watch *w)
{
    if (!w)
        return;
    if (w->multi && w->easy)
        curl_multi_remove_handle(w->multi, w->easy);
    if (w->easy)
        curl_easy_cleanup(w->easy);
    if (w->multi)
        curl_multi_cleanup(w->multi);
    curl_slist_free_all(w->hdrs);
    free(w->body);
    etcd_buf_free(&w->in);
    free(w);
}
