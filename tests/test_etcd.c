/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * etcd:// against a real 3-member etcd cluster on free loopback ports: the
 * whole conformance suite (16 processes x 150 acquisitions; 50 under a
 * sanitizer), then what is
 * the etcd backend's own: the keys it writes, seen through the JSON API;
 * interop with `etcdctl lock`; first-come-first-served order and the
 * predecessor-only watch (no herd), seen in the server's own request
 * counters; names that continue with '/'; shared locks and semaphores; and
 * failures, each on a cluster of its own: the leader SIGKILLed during a
 * contended run, the member a client talks to SIGKILLed, two members of
 * three SIGSTOPped (no quorum), a holder SIGKILLed, a member that accepts
 * connections and never answers; auth; bad URLs.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <json-c/json.h>

#include "anylock.h"
#include "conformance.h"
#include "harness.h"

static test_etcd cl; /* shared by the tests that do not break members */

#include "check_status.h"

#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))

static anylock_client *open_url(const char *fmt, ...) PRINTF_LIKE(1, 2);
static anylock_client *open_url(const char *fmt, ...)
{
    char url[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(url, sizeof url, fmt, ap);
    va_end(ap);
    anylock_client *c = NULL;
    anylock_status st = anylock_open(url, &c);
    ck_assert_msg(st == ANYLOCK_OK, "open %s: %s (%s)", url, anylock_status_name(st), anylock_errmsg(c));
    return c;
}

static anylock_lock *new_lock(anylock_client *c, const char *name, double expires, double timeout)
{
    anylock_lock *l = NULL;
    ck_status(anylock_lock_new(c, name, &l), ANYLOCK_OK);
    ck_status(anylock_lock_set_expires(l, expires), ANYLOCK_OK);
    if (timeout >= 0)
        ck_status(anylock_lock_set_timeout(l, timeout), ANYLOCK_OK);
    return l;
}

/* ---- the JSON API, raw ------------------------------------------------------ */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void enc(const char *in, char *out)
{
    size_t n = strlen(in), o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned char)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned char)in[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)in[i + 2];
        out[o++] = b64[(v >> 18) & 63];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? b64[v & 63] : '=';
    }
    out[o] = '\0';
}

static void dec(const char *in, char *out, size_t size)
{
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (; *in && *in != '=' && o + 1 < size; in++) {
        const char *p = strchr(b64, *in);
        if (!p)
            break;
        acc = (acc << 6) | (unsigned)(p - b64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    out[o] = '\0';
}

/* POSTs to a member that is up and parses the answer. */
static json_object *api(test_etcd *c, const char *path, const char *fmt, ...) PRINTF_LIKE(3, 4);
static json_object *api(test_etcd *c, const char *path, const char *fmt, ...)
{
    char body[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    static char out[1 << 20];
    for (int i = 0; i < c->n; i++) {
        if (!c->m[i].pid)
            continue;
        int st = test_http_post(c->m[i].port, path, body, out, sizeof out, 5);
        if (st == 200) {
            json_object *j = json_tokener_parse(out);
            ck_assert_msg(j != NULL, "%s: not JSON: %.200s", path, out);
            return j;
        }
    }
    ck_abort_msg("%s: no member answered", path);
    return NULL;
}

static json_object *get(json_object *o, const char *name)
{
    json_object *v = NULL;
    return o && json_object_object_get_ex(o, name, &v) ? v : NULL;
}

static long long get_int(json_object *o, const char *name)
{
    json_object *v = get(o, name);
    return v ? strtoll(json_object_get_string(v), NULL, 10) : 0;
}

/* The keys under prefix p, as (key, value, create, lease). */
typedef struct kv {
    char key[512], value[1024];
    long long create, lease;
} kv;

static int range_prefix(test_etcd *c, const char *p, kv *out, int max)
{
    char k[1024], e[1024], pe[512];
    snprintf(pe, sizeof pe, "%s", p);
    pe[strlen(pe) - 1]++;
    enc(p, k);
    enc(pe, e);
    json_object *j = api(c, "/v3/kv/range", "{\"key\":\"%s\",\"range_end\":\"%s\",\"sort_target\":\"CREATE\"}", k, e);
    json_object *kvs = get(j, "kvs");
    int n = kvs ? (int)json_object_array_length(kvs) : 0;
    for (int i = 0; i < n && i < max; i++) {
        json_object *o = json_object_array_get_idx(kvs, (size_t)i);
        dec(json_object_get_string(get(o, "key")), out[i].key, sizeof out[i].key);
        json_object *v = get(o, "value");
        dec(v ? json_object_get_string(v) : "", out[i].value, sizeof out[i].value);
        out[i].create = get_int(o, "create_revision");
        out[i].lease = get_int(o, "lease");
    }
    json_object_put(j);
    return n;
}

static long long lease_ttl(test_etcd *c, long long lease, long long *granted)
{
    json_object *j = api(c, "/v3/lease/timetolive", "{\"ID\":\"%lld\"}", lease);
    long long ttl = get(j, "TTL") ? get_int(j, "TTL") : 0;
    if (granted)
        *granted = get_int(j, "grantedTTL");
    json_object_put(j);
    return ttl;
}

/* Waits until prefix p has n keys (a real condition, not a sleep). */
static void wait_keys(test_etcd *c, const char *p, int n)
{
    kv kvs[64];
    double end = test_now() + 20;
    while (range_prefix(c, p, kvs, 64) != n) {
        ck_assert_msg(test_now() < end, "%s never had %d keys", p, n);
        test_sleep(0.01);
    }
}

/* The sum over the members of one counter from /metrics. */
static double metric(test_etcd *c, const char *line_start)
{
    static char out[1 << 20];
    double sum = 0;
    for (int i = 0; i < c->n; i++) {
        if (!c->m[i].pid || test_http_post(c->m[i].port, "/metrics", "", out, sizeof out, 5) != 200)
            continue;
        for (char *p = strstr(out, line_start); p; p = strstr(p + 1, line_start))
            if (p == out || p[-1] == '\n')
                sum += strtod(p + strlen(line_start), NULL);
    }
    return sum;
}

/* ---- the keys ------------------------------------------------------------------- */

START_TEST(t_wire_keys)
{
    anylock_client *c = open_url("%s?prefix=wire:", cl.url);
    ck_assert_uint_eq(anylock_client_features(c) &
                          (ANYLOCK_FEATURE_FAIR | ANYLOCK_FEATURE_TOKEN | ANYLOCK_FEATURE_SHARED |
                           ANYLOCK_FEATURE_SEMAPHORE | ANYLOCK_FEATURE_LIST),
                      ANYLOCK_FEATURE_FAIR | ANYLOCK_FEATURE_TOKEN | ANYLOCK_FEATURE_SHARED |
                          ANYLOCK_FEATURE_SEMAPHORE | ANYLOCK_FEATURE_LIST);
    anylock_lock *l = new_lock(c, "a job", 5, -1);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    kv kvs[8];
    /* wire:a job/<lease hex> = owner id, and <lease hex>.meta, one lease. */
    ck_assert_int_eq(range_prefix(&cl, "wire:a job/", kvs, 8), 2);
    char hex[32];
    snprintf(hex, sizeof hex, "%llx", kvs[0].lease);
    char want[128];
    snprintf(want, sizeof want, "wire:a job/%s", hex);
    int i = strcmp(kvs[0].key, want) ? 1 : 0;
    ck_assert_str_eq(kvs[i].key, want);
    ck_assert_str_eq(kvs[i].value, anylock_lock_id(l));
    snprintf(want, sizeof want, "wire:a job/%s.meta", hex);
    ck_assert_str_eq(kvs[1 - i].key, want);
    ck_assert_msg(strstr(kvs[1 - i].value, "pid=") != NULL, "meta %s", kvs[1 - i].value);
    ck_assert_int_eq(kvs[0].lease, kvs[1].lease);
    ck_assert_int_eq(kvs[0].create, kvs[1].create);
    /* The lease's TTL is the expiry; the token is the key's create revision. */
    long long granted = 0;
    long long ttl = lease_ttl(&cl, kvs[0].lease, &granted);
    ck_assert_int_eq(granted, 5);
    ck_assert_msg(ttl >= 3 && ttl <= 5, "TTL %lld", ttl);
    uint64_t token = 0;
    ck_status(anylock_lock_token(l, &token), ANYLOCK_OK);
    ck_assert_uint_eq(token, (uint64_t)kvs[0].create);
    long long lease = kvs[0].lease;
    /* Release revokes the lease: both keys go. */
    ck_status(anylock_release(l), ANYLOCK_OK);
    ck_assert_int_eq(range_prefix(&cl, "wire:a job/", kvs, 8), 0);
    ck_assert_int_eq(lease_ttl(&cl, lease, NULL), -1);

    /* Tokens increase with every acquisition. */
    uint64_t last = token;
    for (int k = 0; k < 3; k++) {
        ck_status(anylock_acquire(l), ANYLOCK_OK);
        ck_status(anylock_lock_token(l, &token), ANYLOCK_OK);
        ck_assert_msg(token > last, "token %llu after %llu", (unsigned long long)token, (unsigned long long)last);
        last = token;
        ck_status(anylock_release(l), ANYLOCK_OK);
    }

    /* An expiry is whole seconds, rounded up; the key has no lease when it
     * never expires. */
    ck_status(anylock_lock_set_expires(l, 2.2), ANYLOCK_OK);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    range_prefix(&cl, "wire:a job/", kvs, 8);
    lease_ttl(&cl, kvs[0].lease, &granted);
    ck_assert_int_eq(granted, 3);
    ck_status(anylock_extend(l, 7), ANYLOCK_OK);
    range_prefix(&cl, "wire:a job/", kvs, 8);
    lease_ttl(&cl, kvs[0].lease, &granted);
    ck_assert_int_eq(granted, 7);
    ck_status(anylock_release(l), ANYLOCK_OK);
    ck_status(anylock_lock_set_expires(l, ANYLOCK_FOREVER), ANYLOCK_OK);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    ck_assert_int_eq(range_prefix(&cl, "wire:a job/", kvs, 8), 2);
    ck_assert_int_eq(kvs[0].lease, 0);
    ck_assert_int_eq(kvs[1].lease, 0);
    ck_status(anylock_release(l), ANYLOCK_OK);
    ck_assert_int_eq(range_prefix(&cl, "wire:a job/", kvs, 8), 0);
    /* Reset takes both keys of such a holder. */
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    ck_status(anylock_reset(c, "a job"), ANYLOCK_OK);
    ck_assert_int_eq(range_prefix(&cl, "wire:a job/", kvs, 8), 0);
    ck_status(anylock_release(l), ANYLOCK_NOT_HELD);

    /* Shared and semaphore contenders say so in their keys. */
    ck_status(anylock_lock_set_expires(l, 5), ANYLOCK_OK);
    ck_status(anylock_lock_set_mode(l, ANYLOCK_SHARED), ANYLOCK_OK);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    range_prefix(&cl, "wire:a job/", kvs, 8);
    ck_assert_msg(strstr(kvs[0].key, ".shared") || strstr(kvs[1].key, ".shared"), "%s", kvs[0].key);
    ck_status(anylock_release(l), ANYLOCK_OK);
    ck_status(anylock_lock_set_permits(l, 3), ANYLOCK_OK);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    range_prefix(&cl, "wire:a job/", kvs, 8);
    ck_assert_msg(strstr(kvs[0].key, ".sem3") || strstr(kvs[1].key, ".sem3"), "%s", kvs[0].key);
    ck_status(anylock_release(l), ANYLOCK_OK);
    anylock_lock_free(l);
    anylock_close(c);
}
END_TEST

START_TEST(t_names_with_slash)
{
    /* "a" and "a/b" are two locks although one's keys lie under the
     * other's directory. */
    anylock_client *c = open_url("%s?prefix=slash:", cl.url);
    anylock_lock *ab = new_lock(c, "a/b", 30, -1), *a = new_lock(c, "a", 30, -1), *a2 = new_lock(c, "a", 30, -1);
    ck_status(anylock_acquire(ab), ANYLOCK_OK);
    ck_status(anylock_try_acquire(a), ANYLOCK_OK);
    ck_status(anylock_try_acquire(a2), ANYLOCK_BUSY);
    anylock_info info;
    ck_status(anylock_inspect(c, "a", &info), ANYLOCK_OK);
    ck_assert_str_eq(info.owner, anylock_lock_id(a));
    ck_assert_uint_eq(info.holders, 1);
    ck_status(anylock_reset(c, "a"), ANYLOCK_OK);
    int locked = 0;
    ck_status(anylock_locked(ab, &locked), ANYLOCK_OK);
    ck_assert_int_eq(locked, 1);
    ck_status(anylock_release(a), ANYLOCK_NOT_HELD);
    ck_status(anylock_release(ab), ANYLOCK_OK);
    anylock_lock_free(ab);
    anylock_lock_free(a);
    anylock_lock_free(a2);
    anylock_close(c);
}
END_TEST

/* ---- etcdctl lock --------------------------------------------------------------- */

typedef struct child {
    pid_t pid;
    int out;
} child;

/* Runs `etcdctl lock NAME -- sh -c SCRIPT` with its stdout on a pipe. */
static child etcdctl_lock(test_etcd *c, const char *name, const char *script)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    child ch = {fork(), p[0]};
    if (ch.pid == 0) {
        setpgid(0, 0); /* so that the test can end it with its command */
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        setenv("ETCDCTL_API", "3", 1);
        char eps[600];
        snprintf(eps, sizeof eps, "--endpoints=%s", c->endpoints);
        execlp("etcdctl", "etcdctl", eps, "lock", name, "--", "sh", "-c", script, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    return ch;
}

/* Reads a line from ch within timeout seconds: 0 when it said want. */
static int child_says(child *ch, const char *want, double timeout)
{
    char buf[256];
    size_t n = 0;
    double end = test_now() + timeout;
    while (n + 1 < sizeof buf) {
        int ms = (int)((end - test_now()) * 1000);
        if (ms <= 0)
            return -1;
        struct pollfd pfd = {.fd = ch->out, .events = POLLIN};
        if (poll(&pfd, 1, ms) <= 0)
            continue;
        if (read(ch->out, buf + n, 1) != 1)
            return -1;
        if (buf[n] == '\n') {
            buf[n] = '\0';
            return strcmp(buf, want) ? -1 : 0;
        }
        n++;
    }
    return -1;
}

static void child_end(child *ch)
{
    int st;
    double end = test_now() + 10;
    while (waitpid(ch->pid, &st, WNOHANG) == 0 && test_now() < end)
        test_sleep(0.01);
    kill(-ch->pid, SIGKILL);
    waitpid(ch->pid, &st, 0);
    close(ch->out);
}

START_TEST(t_etcdctl_interop)
{
    anylock_client *c = open_url("%s", cl.url);
    /* etcdctl holds lock:ix for 1.5 s: anylock waits for it. */
    child ch = etcdctl_lock(&cl, "lock:ix", "echo held; sleep 1.5; echo done");
    ck_assert_int_eq(child_says(&ch, "held", 20), 0);
    double held_at = test_now();
    anylock_lock *l = new_lock(c, "ix", 30, 20), *t = new_lock(c, "ix", 30, -1);
    ck_status(anylock_try_acquire(t), ANYLOCK_BUSY);
    anylock_lock_free(t);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    double waited = test_now() - held_at;
    ck_assert_msg(waited >= 1.3, "anylock got the lock %.3f s after etcdctl took it for 1.5 s", waited);
    child_end(&ch);
    anylock_info info;
    ck_status(anylock_inspect(c, "ix", &info), ANYLOCK_OK);
    ck_assert_str_eq(info.owner, anylock_lock_id(l));

    /* anylock holds: etcdctl waits until it lets go. */
    ch = etcdctl_lock(&cl, "lock:ix", "echo got");
    ck_assert_int_eq(child_says(&ch, "got", 1.5), -1);
    double released_at = test_now();
    ck_status(anylock_release(l), ANYLOCK_OK);
    ck_assert_int_eq(child_says(&ch, "got", 10), 0);
    ck_assert_msg(test_now() - released_at < 5, "etcdctl took %.3f s", test_now() - released_at);
    child_end(&ch);

    /* While etcdctl holds, list shows its (empty) owner and reset frees it. */
    ch = etcdctl_lock(&cl, "lock:ix", "echo held; sleep 30");
    ck_assert_int_eq(child_says(&ch, "held", 20), 0);
    ck_status(anylock_inspect(c, "ix", &info), ANYLOCK_OK);
    ck_assert_int_eq(info.held, 1);
    ck_assert_uint_eq(info.owner_len, 0);
    ck_status(anylock_reset(c, "ix"), ANYLOCK_OK);
    ck_status(anylock_lock_set_timeout(l, 0), ANYLOCK_OK);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    kill(-ch.pid, SIGKILL);
    child_end(&ch);
    anylock_lock_free(l);
    anylock_close(c);
}
END_TEST

/* ---- order and waking --------------------------------------------------------------- */

typedef struct queued {
    const char *url;
    const char *name;
    int index;
    atomic_int *turn;  /* the order acquisitions happened in */
    int got;           /* this waiter's place */
    atomic_int *go;    /* hold until set */
    anylock_status st;
} queued;

static void *queued_thread(void *p)
{
    queued *q = p;
    anylock_client *c = NULL;
    if (anylock_open(q->url, &c) != ANYLOCK_OK) {
        q->st = ANYLOCK_INTERNAL;
        anylock_close(c);
        return NULL;
    }
    anylock_lock *l = NULL;
    anylock_lock_new(c, q->name, &l);
    anylock_lock_set_expires(l, 30);
    anylock_lock_set_timeout(l, 25);
    q->st = anylock_acquire(l);
    if (q->st == ANYLOCK_OK) {
        q->got = atomic_fetch_add(q->turn, 1);
        while (q->go && !atomic_load(q->go))
            test_sleep(0.005);
        if (!q->go)
            test_sleep(0.05);
        anylock_release(l);
    }
    anylock_lock_free(l);
    anylock_close(c);
    return NULL;
}

#define QUEUED 5

START_TEST(t_fifo_order)
{
    char url[700];
    snprintf(url, sizeof url, "%s?prefix=fifo:", cl.url);
    anylock_client *c = open_url("%s", url);
    anylock_lock *h = new_lock(c, "q", 30, -1);
    ck_status(anylock_acquire(h), ANYLOCK_OK);
    atomic_int turn = 0;
    queued q[QUEUED];
    pthread_t t[QUEUED];
    for (int i = 0; i < QUEUED; i++) {
        q[i] = (queued){url, "q", i, &turn, -1, NULL, ANYLOCK_INTERNAL};
        pthread_create(&t[i], NULL, queued_thread, &q[i]);
        /* Each waiter is in the queue (its two keys) before the next comes. */
        wait_keys(&cl, "fifo:q/", 2 * (i + 2));
    }
    ck_status(anylock_release(h), ANYLOCK_OK);
    for (int i = 0; i < QUEUED; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < QUEUED; i++) {
        ck_status(q[i].st, ANYLOCK_OK);
        ck_assert_msg(q[i].got == i, "the waiter that came %d-th got the lock %d-th", i, q[i].got);
    }
    anylock_lock_free(h);
    anylock_close(c);
}
END_TEST

#define HERD 6

START_TEST(t_no_herd)
{
    /* Six waiters; when the holder lets go, only the next one looks at the
     * queue again: the server's Range count grows by about one, not six.
     * (recheck=60: no periodic look during the test.) */
    char url[700];
    snprintf(url, sizeof url, "%s?prefix=herd:&recheck=60", cl.url);
    anylock_client *c = open_url("%s", url);
    anylock_lock *h = new_lock(c, "q", 60, -1);
    ck_status(anylock_acquire(h), ANYLOCK_OK);
    atomic_int turn = 0, go = 0;
    queued q[HERD];
    pthread_t t[HERD];
    for (int i = 0; i < HERD; i++) {
        q[i] = (queued){url, "q", i, &turn, -1, &go, ANYLOCK_INTERNAL};
        pthread_create(&t[i], NULL, queued_thread, &q[i]);
    }
    wait_keys(&cl, "herd:q/", 2 * (HERD + 1));
    test_sleep(0.3); /* every waiter's watch is set up */
    const char *ranges = "grpc_server_started_total{grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}";
    const char *watches = "grpc_server_started_total{grpc_method=\"Watch\",grpc_service=\"etcdserverpb.Watch\",grpc_type=\"bidi_stream\"}";
    double r0 = metric(&cl, ranges), w0 = metric(&cl, watches);
    ck_status(anylock_release(h), ANYLOCK_OK);
    double end = test_now() + 10;
    while (atomic_load(&turn) < 1 && test_now() < end)
        test_sleep(0.005);
    ck_assert_int_eq(atomic_load(&turn), 1);
    test_sleep(0.5);
    double r1 = metric(&cl, ranges), w1 = metric(&cl, watches);
    ck_assert_msg(r1 - r0 <= 2, "one release made %.0f reads of the queue (a herd)", r1 - r0);
    ck_assert_msg(w1 - w0 <= 1, "one release made %.0f new watches", w1 - w0);
    ck_assert_int_eq(atomic_load(&turn), 1);
    atomic_store(&go, 1);
    for (int i = 0; i < HERD; i++) {
        pthread_join(t[i], NULL);
        ck_status(q[i].st, ANYLOCK_OK);
    }
    anylock_lock_free(h);
    anylock_close(c);
}
END_TEST

START_TEST(t_waiter_gives_up_in_the_middle)
{
    /* holder, then A (gives up after 0.5 s), then B: B keeps waiting on
     * the holder when A leaves, and gets the lock when the holder lets go. */
    anylock_client *c = open_url("%s?prefix=mid:", cl.url);
    anylock_lock *h = new_lock(c, "q", 30, -1), *a = new_lock(c, "q", 30, 0.5);
    ck_status(anylock_acquire(h), ANYLOCK_OK);
    char url[700];
    snprintf(url, sizeof url, "%s?prefix=mid:", cl.url);
    atomic_int turn = 0;
    double t0 = test_now();
    ck_status(anylock_acquire(a), ANYLOCK_TIMEOUT);
    ck_assert_msg(test_now() - t0 >= 0.45 && test_now() - t0 < 3, "timed out after %.3f s", test_now() - t0);
    queued qb = {url, "q", 1, &turn, -1, NULL, ANYLOCK_INTERNAL};
    pthread_t tb;
    pthread_create(&tb, NULL, queued_thread, &qb);
    wait_keys(&cl, "mid:q/", 4);
    /* A second waiter that gives up while B waits behind... the holder */
    anylock_lock *a2 = new_lock(c, "q", 30, 0.3);
    ck_status(anylock_acquire(a2), ANYLOCK_TIMEOUT);
    test_sleep(0.3);
    ck_assert_int_eq(atomic_load(&turn), 0);
    ck_status(anylock_release(h), ANYLOCK_OK);
    pthread_join(tb, NULL);
    ck_status(qb.st, ANYLOCK_OK);
    /* Nothing is left behind by the ones that gave up. */
    wait_keys(&cl, "mid:q/", 0);
    anylock_lock_free(h);
    anylock_lock_free(a);
    anylock_lock_free(a2);
    anylock_close(c);
}
END_TEST

/* ---- modes ------------------------------------------------------------------------------- */

START_TEST(t_modes)
{
    anylock_client *c = open_url("%s?prefix=modes:", cl.url);
    anylock_lock *r1 = new_lock(c, "rw", 30, -1), *r2 = new_lock(c, "rw", 30, -1), *r3 = new_lock(c, "rw", 30, -1);
    anylock_lock *w = new_lock(c, "rw", 30, -1);
    ck_status(anylock_lock_set_mode(r1, ANYLOCK_SHARED), ANYLOCK_OK);
    ck_status(anylock_lock_set_mode(r2, ANYLOCK_SHARED), ANYLOCK_OK);
    ck_status(anylock_lock_set_mode(r3, ANYLOCK_SHARED), ANYLOCK_OK);
    ck_status(anylock_acquire(r1), ANYLOCK_OK);
    ck_status(anylock_try_acquire(r2), ANYLOCK_OK);
    ck_status(anylock_try_acquire(w), ANYLOCK_BUSY);
    anylock_info info;
    ck_status(anylock_inspect(c, "rw", &info), ANYLOCK_OK);
    ck_assert_uint_eq(info.holders, 2);
    ck_assert_int_eq(info.mode, ANYLOCK_SHARED);
    /* A writer waits; a reader that comes after it waits behind it. */
    char url[700];
    snprintf(url, sizeof url, "%s?prefix=modes:", cl.url);
    atomic_int turn = 0;
    queued qw = {url, "rw", 0, &turn, -1, NULL, ANYLOCK_INTERNAL};
    pthread_t tw;
    pthread_create(&tw, NULL, queued_thread, &qw);
    wait_keys(&cl, "modes:rw/", 6);
    ck_status(anylock_try_acquire(r3), ANYLOCK_BUSY);
    ck_status(anylock_release(r1), ANYLOCK_OK);
    ck_status(anylock_release(r2), ANYLOCK_OK);
    pthread_join(tw, NULL);
    ck_status(qw.st, ANYLOCK_OK);
    ck_status(anylock_try_acquire(r3), ANYLOCK_OK);
    ck_status(anylock_release(r3), ANYLOCK_OK);

    /* Semaphores: the N earliest hold. */
    anylock_lock *s[4];
    for (int i = 0; i < 4; i++) {
        s[i] = new_lock(c, "sem", 30, -1);
        ck_status(anylock_lock_set_permits(s[i], 3), ANYLOCK_OK);
    }
    for (int i = 0; i < 3; i++)
        ck_status(anylock_try_acquire(s[i]), ANYLOCK_OK);
    ck_status(anylock_try_acquire(s[3]), ANYLOCK_BUSY);
    ck_status(anylock_inspect(c, "sem", &info), ANYLOCK_OK);
    ck_assert_uint_eq(info.holders, 3);
    ck_assert_uint_eq(info.permits, 3);
    anylock_lock *other = new_lock(c, "sem", 30, -1);
    ck_status(anylock_lock_set_permits(other, 2), ANYLOCK_OK);
    ck_status(anylock_try_acquire(other), ANYLOCK_MODE_CONFLICT);
    ck_status(anylock_lock_set_mode(other, ANYLOCK_EXCLUSIVE), ANYLOCK_OK);
    ck_status(anylock_try_acquire(other), ANYLOCK_MODE_CONFLICT);
    ck_status(anylock_lock_set_mode(other, ANYLOCK_SHARED), ANYLOCK_OK);
    ck_status(anylock_try_acquire(other), ANYLOCK_MODE_CONFLICT);
    /* A waiting permit gets in when one is released. */
    ck_status(anylock_lock_set_timeout(s[3], 10), ANYLOCK_OK);
    ck_status(anylock_release(s[1]), ANYLOCK_OK);
    ck_status(anylock_acquire(s[3]), ANYLOCK_OK);
    ck_status(anylock_reset(c, "sem"), ANYLOCK_OK);
    ck_status(anylock_inspect(c, "sem", &info), ANYLOCK_OK);
    ck_assert_int_eq(info.held, 0);
    for (int i = 0; i < 4; i++)
        anylock_lock_free(s[i]);
    anylock_lock_free(other);
    anylock_lock_free(r1);
    anylock_lock_free(r2);
    anylock_lock_free(r3);
    anylock_lock_free(w);
    anylock_close(c);
}
END_TEST

typedef struct mixed {
    atomic_int readers, writers, max_readers, max_inside, bad;
    atomic_int failures;
} mixed;

static char mixed_url[800];

static int mixed_process(int index, void *p)
{
    mixed *m = p;
    anylock_client *c = NULL;
    if (anylock_open(mixed_url, &c) != ANYLOCK_OK) {
        anylock_close(c);
        return 1;
    }
    anylock_lock *l = NULL;
    anylock_lock_new(c, "x", &l);
    anylock_lock_set_expires(l, 30);
    anylock_lock_set_timeout(l, 25);
    int writer = index % 4 == 0;
    if (!writer)
        anylock_lock_set_mode(l, ANYLOCK_SHARED);
    for (int i = 0; i < 12; i++) {
        if (anylock_acquire(l) != ANYLOCK_OK) {
            atomic_fetch_add(&m->failures, 1);
            continue;
        }
        if (writer) {
            if (atomic_fetch_add(&m->writers, 1) != 0 || atomic_load(&m->readers) != 0)
                atomic_fetch_add(&m->bad, 1);
            usleep(2000);
            atomic_fetch_sub(&m->writers, 1);
        } else {
            int r = atomic_fetch_add(&m->readers, 1) + 1;
            if (atomic_load(&m->writers) != 0)
                atomic_fetch_add(&m->bad, 1);
            int seen = atomic_load(&m->max_readers);
            while (r > seen && !atomic_compare_exchange_weak(&m->max_readers, &seen, r)) {
            }
            usleep(5000);
            atomic_fetch_sub(&m->readers, 1);
        }
        anylock_release(l);
    }
    anylock_lock_free(l);
    anylock_close(c);
    return 0;
}

START_TEST(t_readers_writers_processes)
{
    mixed *m = test_shared_alloc(sizeof *m);
    snprintf(mixed_url, sizeof mixed_url, "%s?prefix=mixed-%ld:", cl.url, (long)getpid());
    ck_assert_int_eq(test_fork_n(12, mixed_process, m, 120), 0);
    ck_assert_int_eq(atomic_load(&m->failures), 0);
    ck_assert_int_eq(atomic_load(&m->bad), 0);
    ck_assert_msg(atomic_load(&m->max_readers) > 1, "readers never ran together");
    test_shared_free(m, sizeof *m);
}
END_TEST

static int sem_process(int index, void *p)
{
    (void)index;
    mixed *m = p;
    anylock_client *c = NULL;
    if (anylock_open(mixed_url, &c) != ANYLOCK_OK) {
        anylock_close(c);
        return 1;
    }
    anylock_lock *l = NULL;
    anylock_lock_new(c, "s", &l);
    anylock_lock_set_expires(l, 30);
    anylock_lock_set_timeout(l, 25);
    anylock_lock_set_permits(l, 3);
    for (int i = 0; i < 10; i++) {
        if (anylock_acquire(l) != ANYLOCK_OK) {
            atomic_fetch_add(&m->failures, 1);
            continue;
        }
        int r = atomic_fetch_add(&m->readers, 1) + 1;
        int seen = atomic_load(&m->max_inside);
        while (r > seen && !atomic_compare_exchange_weak(&m->max_inside, &seen, r)) {
        }
        usleep(4000);
        atomic_fetch_sub(&m->readers, 1);
        anylock_release(l);
    }
    anylock_lock_free(l);
    anylock_close(c);
    return 0;
}

START_TEST(t_semaphore_processes)
{
    mixed *m = test_shared_alloc(sizeof *m);
    snprintf(mixed_url, sizeof mixed_url, "%s?prefix=sem-%ld:", cl.url, (long)getpid());
    ck_assert_int_eq(test_fork_n(10, sem_process, m, 120), 0);
    ck_assert_int_eq(atomic_load(&m->failures), 0);
    ck_assert_msg(atomic_load(&m->max_inside) == 3, "at most %d holders at once, for 3 permits",
                  atomic_load(&m->max_inside));
    test_shared_free(m, sizeof *m);
}
END_TEST

/* ---- failures -------------------------------------------------------------------------- */

typedef struct arena {
    atomic_int inside, overlaps, failures, done;
    int counter;
} arena;

static char contend_url[800];

static int contend_process(int index, void *p)
{
    (void)index;
    arena *ar = p;
    anylock_client *c = NULL;
    if (anylock_open(contend_url, &c) != ANYLOCK_OK) {
        fprintf(stderr, "contender: open: %s\n", anylock_errmsg(c));
        anylock_close(c);
        return 1;
    }
    anylock_lock *l = NULL;
    anylock_lock_new(c, "counter", &l);
    anylock_lock_set_expires(l, 30);
    anylock_lock_set_timeout(l, 40);
    anylock_lock_set_auto_renewal(l, 1);
    for (int i = 0; i < 40; i++) {
        anylock_status st = anylock_acquire(l);
        if (st != ANYLOCK_OK) {
            fprintf(stderr, "contender: acquire: %s (%s)\n", anylock_strerror(st), anylock_lock_errmsg(l));
            atomic_fetch_add(&ar->failures, 1);
            continue;
        }
        if (atomic_fetch_add(&ar->inside, 1) != 0)
            atomic_fetch_add(&ar->overlaps, 1);
        int v = ar->counter;
        usleep(500);
        ar->counter = v + 1;
        atomic_fetch_sub(&ar->inside, 1);
        atomic_fetch_add(&ar->done, 1);
        st = anylock_release(l);
        if (st != ANYLOCK_OK && st != ANYLOCK_OUTCOME_UNKNOWN) {
            fprintf(stderr, "contender: release: %s (%s)\n", anylock_strerror(st), anylock_lock_errmsg(l));
            atomic_fetch_add(&ar->failures, 1);
        }
    }
    anylock_lock_free(l);
    anylock_close(c);
    return 0;
}

START_TEST(t_leader_killed)
{
    /* 8 processes contend; the leader is SIGKILLed when a quarter of the
     * work is done; the rest is done once a new leader is elected. */
    test_etcd own;
    ck_assert_int_eq(test_etcd_start(&own, 3), 0);
    arena *ar = test_shared_alloc(sizeof *ar);
    snprintf(contend_url, sizeof contend_url, "%s?prefix=lk:", own.url);
    fflush(NULL);
    pid_t runner = fork();
    if (runner == 0)
        _exit(test_fork_n(8, contend_process, ar, 150));
    double end = test_now() + 60;
    while (atomic_load(&ar->done) < 80 && test_now() < end)
        test_sleep(0.005);
    ck_assert_int_ge(atomic_load(&ar->done), 80);
    int leader = test_etcd_leader(&own, 10);
    ck_assert_int_ge(leader, 0);
    double killed_at = test_now();
    int done_at_kill = atomic_load(&ar->done);
    test_etcd_kill(&own, leader);
    /* Work goes on (a new leader within a few seconds). */
    while (atomic_load(&ar->done) < done_at_kill + 20 && test_now() < killed_at + 30)
        test_sleep(0.005);
    double resumed = test_now() - killed_at;
    int status = 0;
    waitpid(runner, &status, 0);
    printf("etcd: leader SIGKILLed after %d acquisitions; 20 more done %.2f s later\n", done_at_kill, resumed);
    ck_assert_msg(resumed < 15, "work resumed only %.2f s after the leader died", resumed);
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    ck_assert_int_eq(atomic_load(&ar->overlaps), 0);
    ck_assert_int_eq(atomic_load(&ar->failures), 0);
    ck_assert_int_eq(ar->counter, 8 * 40);
    test_shared_free(ar, sizeof *ar);
    test_etcd_stop(&own);
}
END_TEST

typedef struct waiting {
    anylock_client *c;
    anylock_status st;
    double at;
} waiting;

static void *wait_for_lock(void *p)
{
    waiting *w = p;
    anylock_lock *l = NULL;
    anylock_lock_new(w->c, "m", &l);
    anylock_lock_set_expires(l, 30);
    anylock_lock_set_timeout(l, 20);
    w->st = anylock_acquire(l);
    w->at = test_now();
    anylock_lock_free(l);
    return NULL;
}

START_TEST(t_client_member_killed)
{
    /* The member a client talks to is SIGKILLed: its waiter and its next
     * calls move to another member. */
    test_etcd own;
    ck_assert_int_eq(test_etcd_start(&own, 3), 0);
    anylock_client *c = open_url("%s", own.url); /* talks to member 0 first */
    char other_url[600];
    snprintf(other_url, sizeof other_url, "etcd://127.0.0.1:%d", own.m[1].port);
    anylock_client *holder = open_url("%s", other_url);
    anylock_lock *h = new_lock(holder, "m", 30, -1);
    ck_status(anylock_acquire(h), ANYLOCK_OK);
    waiting w = {c, ANYLOCK_INTERNAL, 0};
    pthread_t t;
    pthread_create(&t, NULL, wait_for_lock, &w);
    wait_keys(&own, "lock:m/", 4);
    test_sleep(0.2);
    test_etcd_kill(&own, 0);
    double killed = test_now();
    /* Let the cluster settle if member 0 was the leader. */
    ck_assert_int_ge(test_etcd_leader(&own, 15), 0);
    ck_status(anylock_release(h), ANYLOCK_OK);
    double released = test_now();
    pthread_join(t, NULL);
    ck_status(w.st, ANYLOCK_OK);
    printf("etcd: waiter on a killed member got the lock %.2f s after the release (%.2f s after the kill)\n",
           w.at - released, w.at - killed);
    ck_assert_msg(w.at - released < 8, "the waiter took %.2f s after the release", w.at - released);
    /* And plain calls go on. */
    anylock_lock *l = new_lock(c, "after", 10, -1);
    double t0 = test_now();
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    ck_status(anylock_release(l), ANYLOCK_OK);
    ck_assert_msg(test_now() - t0 < 5, "a pair took %.2f s", test_now() - t0);
    anylock_lock_free(l);
    anylock_lock_free(h);
    anylock_close(c);
    anylock_close(holder);
    test_etcd_stop(&own);
}
END_TEST

/* Releases l once the directory of "revoke:r" has n keys (a waiter
 * queued behind it). */
typedef struct releaser {
    anylock_lock *l;
    int n;
    anylock_status st;
} releaser;

static void *release_when_queued(void *p)
{
    releaser *r = p;
    kv kvs[8];
    double end = test_now() + 20;
    while (range_prefix(&cl, "revoke:r/", kvs, 8) < r->n && test_now() < end)
        test_sleep(0.01);
    r->st = anylock_release(r->l);
    return NULL;
}

/* A lease revoked from outside (an operator's `etcdctl lease revoke`)
 * takes the holder's keys with it: the holder watch reports it at once,
 * well before the renewing holder's next renewal (2 s into a 3 s expiry)
 * and also for a lock that is not renewed; another client gets the lock
 * at once, and the loser does not touch it. */
START_TEST(t_lease_revoked)
{
    anylock_client *c = open_url("%s?prefix=revoke:", cl.url), *c2 = open_url("%s?prefix=revoke:", cl.url);
    anylock_lock *h = new_lock(c, "r", 3, -1), *n = new_lock(c, "plain", 30, -1);
    ck_status(anylock_lock_set_auto_renewal(h, 1), ANYLOCK_OK);
    test_lost lost_h = {0}, lost_n = {0}, lost_t = {0}, lost_w = {0};
    ck_status(anylock_lock_set_lost_callback(h, test_lost_record, &lost_h), ANYLOCK_OK);
    ck_status(anylock_lock_set_lost_callback(n, test_lost_record, &lost_n), ANYLOCK_OK);
    ck_status(anylock_acquire(h), ANYLOCK_OK);
    ck_status(anylock_acquire(n), ANYLOCK_OK);
    kv kvs[8];
    ck_assert_int_eq(range_prefix(&cl, "revoke:r/", kvs, 8), 2);
    long long lease_h = kvs[0].lease;
    ck_assert_int_eq(range_prefix(&cl, "revoke:plain/", kvs, 8), 2);
    long long lease_n = kvs[0].lease;
    json_object_put(api(&cl, "/v3/lease/revoke", "{\"ID\":\"%lld\"}", lease_h));
    double revoked = test_now();
    json_object_put(api(&cl, "/v3/lease/revoke", "{\"ID\":\"%lld\"}", lease_n));
    ck_assert_int_eq(range_prefix(&cl, "revoke:r/", kvs, 8), 0);
    anylock_lock *t = new_lock(c2, "r", 30, -1);
    ck_status(anylock_lock_set_lost_callback(t, test_lost_record, &lost_t), ANYLOCK_OK);
    ck_status(anylock_try_acquire(t), ANYLOCK_OK);
    test_lost_wait(&lost_h, 10);
    test_lost_wait(&lost_n, 10);
    ck_assert_int_eq(atomic_load(&lost_h.calls), 1);
    ck_assert_int_eq(atomic_load(&lost_n.calls), 1);
    ck_assert_int_eq(atomic_load(&lost_h.why), ANYLOCK_NOT_HELD);
    printf("etcd: a holder heard of its revoked lease %.3f s after the revoke (expiry 3 s, renewal at 2 s)\n",
           lost_h.at - revoked);
    ck_assert_msg(lost_h.at - revoked < 1.5, "the loss was reported %.2f s after the revoke: not by the watch",
                  lost_h.at - revoked);
    ck_assert_int_eq(anylock_lock_held(h), 0);
    ck_assert_int_eq(anylock_lock_held(n), 0);
    ck_status(anylock_release(h), ANYLOCK_NOT_HELD);
    ck_status(anylock_release(n), ANYLOCK_NOT_HELD);
    /* The new holder's lock was not touched by the loser, and its own
     * release is no loss. */
    int locked = 0;
    ck_status(anylock_locked(t, &locked), ANYLOCK_OK);
    ck_assert_int_eq(locked, 1);
    /* A waiter that gets the lock is watched too: its key was created
     * before the deletions its client's stream delivered while it waited. */
    anylock_lock *w = new_lock(c, "r", 30, 20);
    ck_status(anylock_lock_set_lost_callback(w, test_lost_record, &lost_w), ANYLOCK_OK);
    pthread_t rel;
    releaser ra = {t, 4, ANYLOCK_INTERNAL};
    ck_assert_int_eq(pthread_create(&rel, NULL, release_when_queued, &ra), 0);
    ck_status(anylock_acquire(w), ANYLOCK_OK);
    pthread_join(rel, NULL);
    ck_status(ra.st, ANYLOCK_OK);
    ck_assert_int_eq(range_prefix(&cl, "revoke:r/", kvs, 8), 2);
    json_object_put(api(&cl, "/v3/lease/revoke", "{\"ID\":\"%lld\"}", kvs[0].lease));
    revoked = test_now();
    test_lost_wait(&lost_w, 10);
    ck_assert_int_eq(atomic_load(&lost_w.calls), 1);
    ck_assert_msg(lost_w.at - revoked < 1.5, "the waiter's loss was reported %.2f s after the revoke",
                  lost_w.at - revoked);
    ck_status(anylock_release(w), ANYLOCK_NOT_HELD);
    ck_status(anylock_acquire(n), ANYLOCK_OK);
    ck_status(anylock_release(n), ANYLOCK_OK);
    test_sleep(0.3); /* room for a wrong report of the releases to arrive (none may) */
    ck_assert_int_eq(atomic_load(&lost_h.calls), 1);
    ck_assert_int_eq(atomic_load(&lost_n.calls), 1);
    ck_assert_int_eq(atomic_load(&lost_t.calls), 0);
    ck_assert_int_eq(atomic_load(&lost_w.calls), 1);
    anylock_lock_free(h);
    anylock_lock_free(n);
    anylock_lock_free(t);
    anylock_lock_free(w);
    anylock_close(c);
    anylock_close(c2);
}
END_TEST

/* etcd_debugging_mvcc_events_total summed over the members: the watch
 * events they sent. */
static long long events_sent(test_etcd *c)
{
    static char out[1 << 20];
    long long sum = 0;
    for (int i = 0; i < c->n; i++) {
        if (!c->m[i].pid)
            continue;
        ck_assert_int_eq(test_http_post(c->m[i].port, "/metrics", "{}", out, sizeof out, 5), 200);
        const char *p = strstr(out, "\netcd_debugging_mvcc_events_total ");
        ck_assert_msg(p != NULL, "no etcd_debugging_mvcc_events_total in /metrics");
        sum += atoll(p + strlen("\netcd_debugging_mvcc_events_total "));
    }
    return sum;
}

/* The holder watch of a client covers the keys its locks share, not the
 * whole prefix: 40 acquire/release pairs by another client, on another
 * name, send the holder's stream none of their deletions.  Measured as the
 * events the members sent while the pairs ran, with the far lock held and
 * then not held; a watch over the prefix would get every deletion (two a
 * release: the lock key and its .meta). */
START_TEST(t_watch_range)
{
    anylock_client *far = open_url("%s?prefix=wr:", cl.url), *near = open_url("%s?prefix=wr:", cl.url);
    anylock_lock *f = new_lock(far, "far", 30, -1), *p = new_lock(near, "near", 30, -1);
    long long delta[2];
    for (int held = 1; held >= 0; held--) {
        if (held)
            ck_status(anylock_acquire(f), ANYLOCK_OK);
        /* One pair first, so that the near client's own stream runs. */
        ck_status(anylock_acquire(p), ANYLOCK_OK);
        ck_status(anylock_release(p), ANYLOCK_OK);
        long long before = events_sent(&cl);
        for (int i = 0; i < 40; i++) {
            ck_status(anylock_acquire(p), ANYLOCK_OK);
            ck_status(anylock_release(p), ANYLOCK_OK);
        }
        delta[held] = events_sent(&cl) - before;
        if (held)
            ck_status(anylock_release(f), ANYLOCK_OK);
        test_sleep(2.5); /* the far client's stream lingers 2 s after its last key */
    }
    printf("etcd: 40 pairs sent %lld watch events with another client holding a lock, %lld without\n", delta[1],
           delta[0]);
    ck_assert_msg(delta[1] - delta[0] < 40, "the far holder's stream got the near client's deletions "
                  "(%lld events with it, %lld without)", delta[1], delta[0]);
    anylock_lock_free(f);
    anylock_lock_free(p);
    anylock_close(far);
    anylock_close(near);
}
END_TEST

START_TEST(t_no_quorum)
{
    /* Two members of three stopped: nobody gets the lock, an acquire fails
     * within its timeout, and the renewing holder hears that it lost the
     * lock within its expiry; once they are back, work goes on. */
    test_etcd own;
    ck_assert_int_eq(test_etcd_start(&own, 3), 0);
    anylock_client *c = open_url("%s", own.url), *c2 = open_url("%s", own.url);
    anylock_lock *h = new_lock(c, "q", 3, -1);
    ck_status(anylock_lock_set_auto_renewal(h, 1), ANYLOCK_OK);
    test_lost lost = {0};
    ck_status(anylock_lock_set_lost_callback(h, test_lost_record, &lost), ANYLOCK_OK);
    ck_status(anylock_acquire(h), ANYLOCK_OK);
    test_etcd_pause(&own, 1, 1);
    test_etcd_pause(&own, 2, 1);
    double stopped = test_now();
    anylock_lock *w = new_lock(c2, "q", 30, 3);
    anylock_status st = anylock_acquire(w);
    double took = test_now() - stopped;
    printf("etcd: without quorum, an acquire with a 3 s timeout answered %s after %.2f s: %s\n",
           anylock_status_name(st), took, anylock_lock_errmsg(w));
    ck_assert_msg(st == ANYLOCK_IO || st == ANYLOCK_TIMEOUT || st == ANYLOCK_CONNECT, "acquire: %s",
                  anylock_status_name(st));
    ck_assert_msg(took < 3 + 1.5, "the acquire took %.2f s for a 3 s timeout", took);
    anylock_lock *t = new_lock(c2, "q", 30, -1);
    ck_assert_int_ne(anylock_try_acquire(t), ANYLOCK_OK);
    test_lost_wait(&lost, 5);
    double lost_after = lost.at - stopped;
    ck_assert_int_eq(atomic_load(&lost.calls), 1);
    ck_assert_int_eq(anylock_lock_held(h), 0);
    printf("etcd: the holder heard of the loss %.2f s after quorum was lost (expiry 3 s): %s\n", lost_after,
           anylock_status_name((anylock_status)atomic_load(&lost.why)));
    ck_assert_msg(lost_after <= 3.2, "loss reported %.2f s after, for a 3 s expiry", lost_after);
    test_etcd_pause(&own, 1, 0);
    test_etcd_pause(&own, 2, 0);
    ck_assert_int_ge(test_etcd_leader(&own, 20), 0);
    /* The holder's lease lapses (its renewals stopped); then it is free. */
    ck_status(anylock_lock_set_timeout(w, 25), ANYLOCK_OK);
    ck_status(anylock_acquire(w), ANYLOCK_OK);
    ck_status(anylock_release(w), ANYLOCK_OK);
    ck_status(anylock_release(h), ANYLOCK_NOT_HELD);
    anylock_lock_free(h);
    anylock_lock_free(w);
    anylock_lock_free(t);
    anylock_close(c);
    anylock_close(c2);
    test_etcd_stop(&own);
}
END_TEST

START_TEST(t_holder_killed)
{
    /* A holder SIGKILLed: the waiter gets in when its lease expires, not
     * before. */
    double *acquired = test_shared_alloc(sizeof *acquired);
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    char url[700];
    snprintf(url, sizeof url, "%s?prefix=killed:", cl.url);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        anylock_client *c = NULL;
        anylock_lock *l = NULL;
        if (anylock_open(url, &c) != ANYLOCK_OK || anylock_lock_new(c, "k", &l) != ANYLOCK_OK)
            _exit(1);
        anylock_lock_set_expires(l, 3);
        if (anylock_acquire(l) != ANYLOCK_OK)
            _exit(1);
        *acquired = test_now();
        if (write(p[1], "x", 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    close(p[1]);
    char x;
    ck_assert_int_eq(read(p[0], &x, 1), 1);
    close(p[0]);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    anylock_client *c = open_url("%s", url);
    anylock_lock *w = new_lock(c, "k", 30, 20);
    ck_status(anylock_acquire(w), ANYLOCK_OK);
    double after = test_now() - *acquired;
    printf("etcd: a SIGKILLed holder's lock (3 s lease) went to a waiter after %.2f s\n", after);
    ck_assert_msg(after >= 2.9, "the waiter got in after %.2f s, before the 3 s lease ended", after);
    ck_assert_msg(after < 3 + 3, "the waiter got in only after %.2f s", after);
    anylock_lock_free(w);
    anylock_close(c);
    test_shared_free(acquired, sizeof *acquired);
}
END_TEST

START_TEST(t_hung_member)
{
    /* A first "member" that accepts connections and never answers: open
     * and calls move on to a real one within their time. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(fd, 64), 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    int hung = ntohs(a.sin_port);
    double t0 = test_now();
    anylock_client *c = open_url("etcd://127.0.0.1:%d,127.0.0.1:%d?dial_timeout=2&command_timeout=2", hung,
                                 cl.m[1].port);
    ck_assert_msg(test_now() - t0 < 3, "open took %.2f s", test_now() - t0);
    anylock_lock *l = new_lock(c, "hung", 10, -1);
    t0 = test_now();
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    ck_status(anylock_release(l), ANYLOCK_OK);
    ck_assert_msg(test_now() - t0 < 3, "a pair took %.2f s", test_now() - t0);
    anylock_lock_free(l);
    anylock_close(c);
    /* Only the hung one: open fails within the dial timeout. */
    anylock_client *bad = NULL;
    t0 = test_now();
    char url[128];
    snprintf(url, sizeof url, "etcd://127.0.0.1:%d?dial_timeout=1", hung);
    anylock_status st = anylock_open(url, &bad);
    ck_assert_msg(st == ANYLOCK_IO || st == ANYLOCK_CONNECT, "open: %s", anylock_status_name(st));
    ck_assert_msg(test_now() - t0 < 2.5, "open took %.2f s", test_now() - t0);
    anylock_close(bad);
    close(fd);
}
END_TEST

/* ---- URLs and auth ------------------------------------------------------------------------- */

START_TEST(t_bad_urls)
{
    char url[700];
    anylock_client *c = NULL;
    snprintf(url, sizeof url, "etcd://127.0.0.1:%d/path", cl.m[0].port);
    ck_status(anylock_open(url, &c), ANYLOCK_URL_BAD_PATH);
    anylock_close(c);
    snprintf(url, sizeof url, "%s?bogus=1", cl.url);
    ck_status(anylock_open(url, &c), ANYLOCK_URL_UNKNOWN_PARAM);
    anylock_close(c);
    snprintf(url, sizeof url, "%s?dial_timeout=soon", cl.url);
    ck_status(anylock_open(url, &c), ANYLOCK_URL_BAD_PARAM);
    anylock_close(c);
    snprintf(url, sizeof url, "%s?command_timeout=0", cl.url);
    ck_status(anylock_open(url, &c), ANYLOCK_URL_BAD_PARAM);
    anylock_close(c);
    /* Nobody listening: CONNECT at once. */
    int port = test_free_port();
    snprintf(url, sizeof url, "etcd://127.0.0.1:%d", port);
    double t0 = test_now();
    ck_status(anylock_open(url, &c), ANYLOCK_CONNECT);
    ck_assert_msg(test_now() - t0 < 2, "took %.2f s", test_now() - t0);
    anylock_close(c);
    /* An HTTP server that is not the client API (a member's peer port). */
    snprintf(url, sizeof url, "etcd://127.0.0.1:%d", cl.m[0].peer_port);
    ck_status(anylock_open(url, &c), ANYLOCK_PROTOCOL);
    anylock_close(c);
    /* The default port is 2379. */
    ck_status(anylock_open("etcd://127.0.0.1?dial_timeout=0.5", &c), ANYLOCK_CONNECT);
    ck_assert_msg(strstr(anylock_errmsg(c), ":2379") != NULL, "%s", anylock_errmsg(c));
    anylock_close(c);
}
END_TEST

static int etcdctl(test_etcd *c, const char *args)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "ETCDCTL_API=3 etcdctl --endpoints=%s %s >/dev/null 2>&1", c->endpoints, args);
    return system(cmd);
}

START_TEST(t_auth)
{
    test_etcd own;
    ck_assert_int_eq(test_etcd_start(&own, 1), 0);
    ck_assert_int_eq(etcdctl(&own, "user add root:s3cret-pw"), 0);
    ck_assert_int_eq(etcdctl(&own, "auth enable"), 0);
    anylock_client *c = open_url("etcd://root:s3cret-pw@127.0.0.1:%d", own.m[0].port);
    anylock_lock *l = new_lock(c, "secret", 10, -1);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    anylock_info info;
    ck_status(anylock_inspect(c, "secret", &info), ANYLOCK_OK);
    ck_assert_int_eq(info.held, 1);
    ck_status(anylock_release(l), ANYLOCK_OK);
    anylock_lock_free(l);
    char redacted[128];
    snprintf(redacted, sizeof redacted, "etcd://root:***@127.0.0.1:%d", own.m[0].port);
    ck_assert_str_eq(anylock_client_url(c), redacted);
    anylock_close(c);

    char url[300];
    snprintf(url, sizeof url, "etcd://root:wrong-pw@127.0.0.1:%d", own.m[0].port);
    ck_status(anylock_open(url, &c), ANYLOCK_AUTH);
    ck_assert_msg(!strstr(anylock_errmsg(c), "wrong-pw"), "%s", anylock_errmsg(c));
    anylock_close(c);
    /* Without credentials the store says so. */
    snprintf(url, sizeof url, "etcd://127.0.0.1:%d", own.m[0].port);
    anylock_status st = anylock_open(url, &c);
    if (st == ANYLOCK_OK) {
        l = NULL;
        ck_status(anylock_lock_new(c, "secret", &l), ANYLOCK_OK);
        st = anylock_try_acquire(l);
        anylock_lock_free(l);
    }
    ck_assert_msg(st == ANYLOCK_AUTH || st == ANYLOCK_ACCESS, "%s: %s", anylock_status_name(st), anylock_errmsg(c));
    anylock_close(c);
    test_etcd_stop(&own);
}
END_TEST

static Suite *etcd_suite(void)
{
    Suite *s = suite_create("etcd");
    test_case tests[] = {
        {"wire_keys", t_wire_keys},
        {"lease_revoked", t_lease_revoked},
        {"watch_range", t_watch_range},
        {"names_with_slash", t_names_with_slash},
        {"etcdctl_interop", t_etcdctl_interop},
        {"fifo_order", t_fifo_order},
        {"no_herd", t_no_herd},
        {"waiter_gives_up_in_the_middle", t_waiter_gives_up_in_the_middle},
        {"modes", t_modes},
        {"readers_writers_processes", t_readers_writers_processes},
        {"semaphore_processes", t_semaphore_processes},
        {"holder_killed", t_holder_killed},
        {"hung_member", t_hung_member},
        {"bad_urls", t_bad_urls},
        {"leader_killed", t_leader_killed},
        {"client_member_killed", t_client_member_killed},
        {"no_quorum", t_no_quorum},
        {"auth", t_auth},
    };
    add_test_cases(s, tests, sizeof tests / sizeof tests[0], NULL, NULL, 120);
    return s;
}

int main(void)
{
    double t0 = test_now();
    if (test_etcd_start(&cl, 3) != 0) {
        fprintf(stderr, "test_etcd: cannot start a 3-member etcd cluster (a missing etcd is a failure)\n");
        return 1;
    }
    printf("test_etcd: 3-member cluster %s up in %.2f s\n", cl.url, test_now() - t0);
    static conformance_config cfg = {
        .label = "etcd",
        .excludes = 1,
        .cross_process = 1,
        .can_list = 1,
        .can_reset_all = 1,
        .expiry = 2, /* the smallest TTL the test cluster grants */
        /* etcd frees a key when the leader revokes its lease, which it
         * checks for every 0.5 s; a leader change (under load, say) gives
         * every lease its whole TTL again plus the election timeout (1 s
         * here; etcd 3.4 keeps no lease checkpoints by default). */
        .slack = 3.0,
        .processes = 16,
        .process_iterations = 150,
    };
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    /* Under a sanitizer the run looks for memory errors and races, not
     * throughput: a quarter of the acquisitions (etcd's CPU bounds them). */
    cfg.process_iterations = 50;
#endif
    cfg.url = cl.url;
    int rc = conformance_run(conformance_suite(&cfg), etcd_suite());
    test_etcd_stop(&cl);
    return rc;
}
