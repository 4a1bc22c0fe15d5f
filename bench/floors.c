/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The floors: the cheapest round trip each store offers, made with the
 * store's own client library, so that anylock's figures can be read as a
 * ratio to what the store and the machine allow.
 *
 *   memory://     an uncontended pthread mutex lock/unlock (what each memory://
 *                 call takes once)
 *   redis://      PING on a hiredis connection to the same server (AUTH and
 *                 SELECT as the URL says)
 *   memcached://  a get of a missing key with libmemcached on the first server
 *                 of the URL, same protocol.  memcached_version() is not used:
 *                 libmemcached answers it from a cache after the first call,
 *                 so it is no round trip at all.
 *   sqlite://     one write transaction that writes a row (BEGIN IMMEDIATE;
 *                 UPDATE of one row; COMMIT), in a database file of its own
 *                 beside the store's (so that the store's file is not
 *                 touched), with the backend's settings: WAL,
 *                 synchronous=NORMAL.  An empty transaction
 *                 writes no WAL frame and so is no floor for a lock change.
 *                 Beside it, flock(2) on a file in the same directory: the
 *                 one-host lock a user could pick instead (bench_flock_*).
 *   file://       flock(2) itself: LOCK_EX and LOCK_UN in turn on a descriptor
 *                 kept open on a file of its own in the same directory (a
 *                 floor pair is one flock(2) lock and unlock)
 *   postgres://   SELECT 1 on a libpq connection to the same server, in the
 *                 extended protocol the backend uses (each of its acquire and
 *                 release is one such round trip)
 *   etcd://       a range of a missing key (linearizable, as etcd's reads
 *                 are by default) through the JSON gateway of the first
 *                 member of the URL, with libcurl on a kept-alive
 *                 connection and the same headers the backend sends
 *
 * Beside the redis floor, bench_floor_handoffs: hand-offs made with
 * python-redis-lock's protocol on hiredis, the floor of a hand-off there.
 *
 * The URL is parsed here with a small parser of its own because the core's
 * parser is internal to the library; only the parts a floor needs are read.
 */
#include "config.h"

#include <fcntl.h>
#include <pthread.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/wait.h>

#ifdef ANYLOCK_WITH_REDIS
#include <hiredis/hiredis.h>
#endif
#ifdef ANYLOCK_WITH_MEMCACHED
#include <libmemcached/memcached.h>
#endif
#ifdef ANYLOCK_WITH_SQLITE
#include <sqlite3.h>
#endif
#ifdef ANYLOCK_WITH_POSTGRES
#include <libpq-fe.h>
#endif
#ifdef ANYLOCK_WITH_ETCD
#include <curl/curl.h>
#endif

#include "bench.h"

typedef enum floor_kind { FLOOR_MEMORY, FLOOR_REDIS, FLOOR_MEMCACHED, FLOOR_SQLITE, FLOOR_POSTGRES, FLOOR_ETCD,
                          FLOOR_FILE } floor_kind;

struct bench_floor {
    floor_kind kind;
    char command[64];
    double pair_round_trips; /* the fewest round trips of one acquire+release; NAN: not stated */
    pthread_mutex_t mu;
    int fd;     /* file:// */
    int locked; /* file://: the next round trip unlocks */
#ifdef ANYLOCK_WITH_REDIS
    redisContext *redis;
#endif
#ifdef ANYLOCK_WITH_MEMCACHED
    memcached_st *mc;
    char mc_key[64];
#endif
#ifdef ANYLOCK_WITH_SQLITE
    sqlite3 *db;
    sqlite3_stmt *begin, *write, *commit;
#endif
#ifdef ANYLOCK_WITH_POSTGRES
    PGconn *pg;
#endif
#ifdef ANYLOCK_WITH_ETCD
    CURL *curl;
    struct curl_slist *headers;
    char etcd_body[128];
#endif
};

/* The parts of a store URL the floors need, percent-decoded. */
typedef struct floor_url {
    char scheme[32];
    char user[256], password[256];
    char host[256];
    int port; /* 0 when absent */
    char path[4096];
    char query[1024];
} floor_url;

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Copies n bytes of src into dst (size bytes), decoding %XX; -1 if it does
 * not fit or an escape is bad. */
static int decode(char *dst, size_t size, const char *src, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)src[i];
        if (c == '%') {
            if (i + 2 >= n)
                return -1;
            int hi = hexval(src[i + 1]), lo = hexval(src[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = hi * 16 + lo;
            i += 2;
        }
        if (o + 1 >= size)
            return -1;
        dst[o++] = (char)c;
    }
    dst[o] = '\0';
    return 0;
}

static int parse_url(const char *url, floor_url *u, char *err, size_t errsize)
{
    memset(u, 0, sizeof *u);
    const char *sep = strstr(url, "://");
    if (!sep || (size_t)(sep - url) >= sizeof u->scheme) {
        snprintf(err, errsize, "no scheme in URL");
        return -1;
    }
    memcpy(u->scheme, url, (size_t)(sep - url));
    const char *p = sep + 3;
    const char *q = strchr(p, '?');
    const char *end = q ? q : p + strlen(p);
    if (q)
        snprintf(u->query, sizeof u->query, "%s", q + 1);
    const char *slash = memchr(p, '/', (size_t)(end - p));
    const char *auth_end = slash ? slash : end;
    const char *at = NULL;
    for (const char *c = p; c < auth_end; c++)
        if (*c == '@')
            at = c;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (decode(u->user, sizeof u->user, p, (size_t)((colon ? colon : at) - p)) != 0 ||
            (colon && decode(u->password, sizeof u->password, colon + 1, (size_t)(at - colon - 1)) != 0)) {
            snprintf(err, errsize, "bad user or password in URL");
            return -1;
        }
        p = at + 1;
    }
    /* Only the first host of a list is used: one lock name lives on one
     * server, so one server is the floor. */
    const char *host_end = p;
    while (host_end < auth_end && *host_end != ',')
        host_end++;
    const char *colon = NULL;
    if (p < host_end && *p == '[') {
        const char *rb = memchr(p, ']', (size_t)(host_end - p));
        if (!rb) {
            snprintf(err, errsize, "bad host in URL");
            return -1;
        }
        if (decode(u->host, sizeof u->host, p + 1, (size_t)(rb - p - 1)) != 0)
            return -1;
        colon = rb + 1 < host_end && rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(p, ':', (size_t)(host_end - p));
        if (decode(u->host, sizeof u->host, p, (size_t)((colon ? colon : host_end) - p)) != 0) {
            snprintf(err, errsize, "bad host in URL");
            return -1;
        }
    }
    if (colon) {
        char *e;
        long port = strtol(colon + 1, &e, 10);
        if (e != host_end || port < 1 || port > 65535) {
            snprintf(err, errsize, "bad port in URL");
            return -1;
        }
        u->port = (int)port;
    }
    if (slash && decode(u->path, sizeof u->path, slash, (size_t)(end - slash)) != 0) {
        snprintf(err, errsize, "bad path in URL");
        return -1;
    }
    return 0;
}

/* The value of query parameter name, copied into out; 0 if found. */
#if defined(ANYLOCK_WITH_REDIS) || defined(ANYLOCK_WITH_MEMCACHED)
static int query_param(const floor_url *u, const char *name, char *out, size_t size)
{
    size_t nlen = strlen(name);
    const char *p = u->query;
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len > nlen && !strncmp(p, name, nlen) && p[nlen] == '=')
            return decode(out, size, p + nlen + 1, len - nlen - 1);
        p += len + (amp ? 1 : 0);
    }
    return -1;
}
#endif

#ifdef ANYLOCK_WITH_REDIS
static int redis_open(bench_floor *f, const floor_url *u, char *err, size_t errsize)
{
    struct timeval tv = {5, 0};
    char db[32] = "";
    if (!strcasecmp(u->scheme, "redis+unix")) {
        f->redis = redisConnectUnixWithTimeout(u->path, tv);
        (void)query_param(u, "db", db, sizeof db);
    } else {
        f->redis = redisConnectWithTimeout(u->host[0] ? u->host : "127.0.0.1", u->port ? u->port : 6379, tv);
        if (u->path[0] && strcmp(u->path, "/"))
            snprintf(db, sizeof db, "%s", u->path + 1);
    }
    if (!f->redis || f->redis->err) {
        snprintf(err, errsize, "redis floor: cannot connect: %s", f->redis ? f->redis->errstr : "out of memory");
        return -1;
    }
    redisSetTimeout(f->redis, tv);
    redisReply *r = NULL;
    if (u->password[0])
        r = u->user[0] ? redisCommand(f->redis, "AUTH %s %s", u->user, u->password)
                       : redisCommand(f->redis, "AUTH %s", u->password);
    if (u->password[0] && (!r || r->type == REDIS_REPLY_ERROR)) {
        snprintf(err, errsize, "redis floor: AUTH refused");
        freeReplyObject(r);
        return -1;
    }
    freeReplyObject(r);
    r = NULL;
    if (db[0] && (!(r = redisCommand(f->redis, "SELECT %s", db)) || r->type == REDIS_REPLY_ERROR)) {
        snprintf(err, errsize, "redis floor: SELECT %s failed", db);
        freeReplyObject(r);
        return -1;
    }
    freeReplyObject(r);
    snprintf(f->command, sizeof f->command, "PING");
    return 0;
}

static int redis_round_trip(bench_floor *f, char *err, size_t errsize)
{
    redisReply *r = redisCommand(f->redis, "PING");
    int ok = r && r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "PONG");
    if (!ok)
        snprintf(err, errsize, "redis floor: PING failed: %s", f->redis->err ? f->redis->errstr : "bad reply");
    freeReplyObject(r);
    return ok ? 0 : -1;
}
#endif

#ifdef ANYLOCK_WITH_MEMCACHED
static int memcached_open(bench_floor *f, const floor_url *u, char *err, size_t errsize)
{
    char protocol[16] = "text";
    (void)query_param(u, "protocol", protocol, sizeof protocol);
    f->mc = memcached_create(NULL);
    if (!f->mc) {
        snprintf(err, errsize, "memcached floor: out of memory");
        return -1;
    }
    /* The behaviours the memcached backend sets that touch a get: no
     * Nagle's delay, CAS support (a get becomes "gets"), the URL's protocol. */
    memcached_behavior_set(f->mc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
    memcached_behavior_set(f->mc, MEMCACHED_BEHAVIOR_SUPPORT_CAS, 1);
    if (!strcasecmp(protocol, "binary"))
        memcached_behavior_set(f->mc, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
    memcached_return_t rc =
        memcached_server_add(f->mc, u->host[0] ? u->host : "127.0.0.1", (in_port_t)(u->port ? u->port : 11211));
    if (memcached_failed(rc)) {
        snprintf(err, errsize, "memcached floor: %s", memcached_strerror(f->mc, rc));
        return -1;
    }
    snprintf(f->mc_key, sizeof f->mc_key, "anylock-bench-floor-missing-%ld", (long)getpid());
    snprintf(f->command, sizeof f->command, "get (miss, %s)", strcasecmp(protocol, "binary") ? "text" : "binary");
    /* add; gets + cas (docs/memcached.md).  The holder's metadata goes out
     * with noreply over the text protocol (no round trip); over the binary
     * protocol its set and its delete are each answered. */
    f->pair_round_trips = strcasecmp(protocol, "binary") ? 3 : 5;
    return 0;
}

static int memcached_round_trip(bench_floor *f, char *err, size_t errsize)
{
    size_t len;
    uint32_t flags;
    memcached_return_t rc;
    char *v = memcached_get(f->mc, f->mc_key, strlen(f->mc_key), &len, &flags, &rc);
    free(v);
    if (rc != MEMCACHED_NOTFOUND) {
        snprintf(err, errsize, "memcached floor: get: %s", memcached_strerror(f->mc, rc));
        return -1;
    }
    return 0;
}
#endif

#ifdef ANYLOCK_WITH_SQLITE
static int sqlite_open(bench_floor *f, const floor_url *u, char *err, size_t errsize)
{
    /* The SQLAlchemy forms: sqlite:///relative.db, sqlite:////absolute.db. */
    const char *path = u->path[0] == '/' ? u->path + 1 : u->path;
    if (!path[0]) {
        snprintf(err, errsize, "sqlite floor: no file in URL");
        return -1;
    }
    char floor_path[4200];
    snprintf(floor_path, sizeof floor_path, "%s-floor.db", path);
    if (sqlite3_open_v2(floor_path, &f->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        snprintf(err, errsize, "sqlite floor: cannot open %s: %s", floor_path, f->db ? sqlite3_errmsg(f->db) : "?");
        return -1;
    }
    /* The backend's settings: a connection used by one thread at a time,
     * WAL, synchronous=NORMAL (a commit survives a process crash, which is
     * what a lock needs, without an fsync per transaction), and a busy
     * timeout so that a writer waits its turn. */
    static const char *const pragmas =
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;"
        "CREATE TABLE IF NOT EXISTS floor(k INTEGER PRIMARY KEY, v INTEGER NOT NULL);"
        "INSERT OR IGNORE INTO floor VALUES (1, 0);";
    if (sqlite3_exec(f->db, pragmas, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(f->db, "BEGIN IMMEDIATE", -1, &f->begin, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(f->db, "UPDATE floor SET v = v + 1 WHERE k = 1", -1, &f->write, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(f->db, "COMMIT", -1, &f->commit, NULL) != SQLITE_OK) {
        snprintf(err, errsize, "sqlite floor: %s: %s", floor_path, sqlite3_errmsg(f->db));
        return -1;
    }
    snprintf(f->command, sizeof f->command, "BEGIN IMMEDIATE; UPDATE a row; COMMIT");
    return 0;
}

static int sqlite_round_trip(bench_floor *f, char *err, size_t errsize)
{
    int rc1 = sqlite3_step(f->begin);
    sqlite3_reset(f->begin);
    int rcw = rc1 == SQLITE_DONE ? sqlite3_step(f->write) : SQLITE_DONE;
    sqlite3_reset(f->write);
    int rc2 = rc1 == SQLITE_DONE ? sqlite3_step(f->commit) : SQLITE_DONE;
    sqlite3_reset(f->commit);
    if (rc1 != SQLITE_DONE || rcw != SQLITE_DONE || rc2 != SQLITE_DONE) {
        snprintf(err, errsize, "sqlite floor: %s", sqlite3_errmsg(f->db));
        return -1;
    }
    return 0;
}
#endif

#ifdef ANYLOCK_WITH_POSTGRES
/* libpq takes the URL as it is, less the query parameters that are
 * anylock's own. */
static int postgres_open(bench_floor *f, const char *url, char *err, size_t errsize)
{
    static const char *const ours[] = {"prefix", "timeout", "expires", "command_timeout", "connect_timeout",
                                       "table", "schema", "key_bits", NULL};
    char conninfo[4096];
    const char *q = strchr(url, '?');
    size_t base = q ? (size_t)(q - url) : strlen(url);
    if (base >= sizeof conninfo) {
        snprintf(err, errsize, "postgres floor: URL too long");
        return -1;
    }
    memcpy(conninfo, url, base);
    size_t o = base;
    conninfo[o] = '\0';
    for (const char *p = q ? q + 1 : NULL; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        size_t nlen = strcspn(p, "=&");
        if (nlen > len)
            nlen = len;
        int mine = 0;
        for (int i = 0; ours[i]; i++)
            mine |= strlen(ours[i]) == nlen && !strncmp(ours[i], p, nlen);
        if (!mine && o + len + 2 < sizeof conninfo) {
            conninfo[o] = o == base ? '?' : '&';
            o++;
            memcpy(conninfo + o, p, len);
            o += len;
            conninfo[o] = '\0';
        }
        p += len + (amp ? 1 : 0);
    }
    f->pg = PQconnectdb(conninfo);
    if (!f->pg || PQstatus(f->pg) != CONNECTION_OK) {
        snprintf(err, errsize, "postgres floor: cannot connect: %s", f->pg ? PQerrorMessage(f->pg) : "out of memory");
        return -1;
    }
    snprintf(f->command, sizeof f->command, "SELECT 1");
    return 0;
}

static int postgres_round_trip(bench_floor *f, char *err, size_t errsize)
{
    PGresult *r = PQexecParams(f->pg, "SELECT 1", 0, NULL, NULL, NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        snprintf(err, errsize, "postgres floor: SELECT 1: %s", PQerrorMessage(f->pg));
    PQclear(r);
    return ok ? 0 : -1;
}
#endif

#ifdef ANYLOCK_WITH_ETCD
static size_t etcd_sink(char *data, size_t size, size_t n, void *ud)
{
    (void)data;
    (void)ud;
    return size * n;
}

static int etcd_open(bench_floor *f, const floor_url *u, char *err, size_t errsize)
{
    if (u->user[0]) {
        snprintf(err, errsize, "etcd floor: URLs with a user are not measured");
        return -1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    f->curl = curl_easy_init();
    const char *hs[] = {"Content-Type: application/json", "Expect:", "Grpc-Metadata-hasleader: true"};
    for (size_t i = 0; i < sizeof hs / sizeof *hs; i++)
        f->headers = curl_slist_append(f->headers, hs[i]);
    if (!f->curl || !f->headers) {
        snprintf(err, errsize, "etcd floor: out of memory");
        return -1;
    }
    char url[512];
    int v6 = strchr(u->host, ':') != NULL;
    snprintf(url, sizeof url, "http://%s%s%s:%d/v3/kv/range", v6 ? "[" : "", u->host[0] ? u->host : "127.0.0.1",
             v6 ? "]" : "", u->port ? u->port : 2379);
    /* base64 of "anylock-bench-floor-missing" */
    snprintf(f->etcd_body, sizeof f->etcd_body, "{\"key\":\"YW55bG9jay1iZW5jaC1mbG9vci1taXNzaW5n\"}");
    curl_easy_setopt(f->curl, CURLOPT_URL, url);
    curl_easy_setopt(f->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(f->curl, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(f->curl, CURLOPT_PROXY, "");
    curl_easy_setopt(f->curl, CURLOPT_HTTPHEADER, f->headers);
    curl_easy_setopt(f->curl, CURLOPT_POSTFIELDS, f->etcd_body);
    curl_easy_setopt(f->curl, CURLOPT_WRITEFUNCTION, etcd_sink);
    curl_easy_setopt(f->curl, CURLOPT_TIMEOUT_MS, 5000L);
    snprintf(f->command, sizeof f->command, "kv/range of a missing key");
    return 0;
}

static int etcd_round_trip(bench_floor *f, char *err, size_t errsize)
{
    CURLcode rc = curl_easy_perform(f->curl);
    long http = 0;
    curl_easy_getinfo(f->curl, CURLINFO_RESPONSE_CODE, &http);
    if (rc != CURLE_OK || http != 200) {
        snprintf(err, errsize, "etcd floor: range: %s (HTTP %ld)", curl_easy_strerror(rc), http);
        return -1;
    }
    return 0;
}
#endif

/* file:///dir: a file of the floor's own in dir (made by the backend when
 * anylock opens it; made here too, for a floor opened first). */
static int file_open(bench_floor *f, const floor_url *u, char *err, size_t errsize)
{
    char path[4200];
    snprintf(path, sizeof path, "%s", u->path);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/.bench-floor", u->path);
    f->fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0600);
    if (f->fd < 0) {
        snprintf(err, errsize, "file floor: cannot open %s", path);
        return -1;
    }
    snprintf(f->command, sizeof f->command, "flock(2) LOCK_EX / LOCK_UN");
    return 0;
}

static int file_round_trip(bench_floor *f, char *err, size_t errsize)
{
    if (flock(f->fd, f->locked ? LOCK_UN : LOCK_EX) != 0) {
        snprintf(err, errsize, "file floor: flock failed");
        return -1;
    }
    f->locked = !f->locked;
    return 0;
}

bench_floor *bench_floor_open(const char *url, char *err, size_t errsize)
{
    floor_url u;
    if (parse_url(url, &u, err, errsize) != 0)
        return NULL;
    bench_floor *f = calloc(1, sizeof *f);
    if (!f) {
        snprintf(err, errsize, "out of memory");
        return NULL;
    }
    int rc = -1;
    f->pair_round_trips = NAN;
    if (!strcasecmp(u.scheme, "memory")) {
        f->kind = FLOOR_MEMORY;
        pthread_mutex_init(&f->mu, NULL);
        snprintf(f->command, sizeof f->command, "mutex lock+unlock");
        rc = 0;
    }
#ifdef ANYLOCK_WITH_REDIS
    else if (!strcasecmp(u.scheme, "redis") || !strcasecmp(u.scheme, "redis+unix")) {
        f->kind = FLOOR_REDIS;
        rc = redis_open(f, &u, err, errsize);
    }
#endif
#ifdef ANYLOCK_WITH_MEMCACHED
    else if (!strcasecmp(u.scheme, "memcached") || !strcasecmp(u.scheme, "memcache")) {
        f->kind = FLOOR_MEMCACHED;
        rc = memcached_open(f, &u, err, errsize);
    }
#endif
#ifdef ANYLOCK_WITH_SQLITE
    else if (!strcasecmp(u.scheme, "sqlite")) {
        f->kind = FLOOR_SQLITE;
        rc = sqlite_open(f, &u, err, errsize);
    }
#endif
#ifdef ANYLOCK_WITH_POSTGRES
    else if (!strcasecmp(u.scheme, "postgres") || !strcasecmp(u.scheme, "postgresql")) {
        f->kind = FLOOR_POSTGRES;
        rc = postgres_open(f, url, err, errsize);
    }
#endif
#ifdef ANYLOCK_WITH_ETCD
    else if (!strcasecmp(u.scheme, "etcd")) {
        f->kind = FLOOR_ETCD;
        rc = etcd_open(f, &u, err, errsize);
    }
#endif
    else if (!strcasecmp(u.scheme, "file")) {
        f->kind = FLOOR_FILE;
        rc = file_open(f, &u, err, errsize);
    }
    else {
        snprintf(err, errsize, "no floor for %s:// in this build", u.scheme);
        free(f);
        return NULL;
    }
    if (rc != 0) {
        bench_floor_close(f);
        return NULL;
    }
    return f;
}

const char *bench_floor_command(const bench_floor *f)
{
    return f->command;
}

double bench_floor_pair_round_trips(const bench_floor *f)
{
    return f->pair_round_trips;
}

int bench_floor_trips_per_pair(const bench_floor *f)
{
    return f->kind == FLOOR_ETCD ? 3 : 2;
}

int bench_floor_round_trip(bench_floor *f, char *err, size_t errsize)
{
    switch (f->kind) {
    case FLOOR_MEMORY:
        pthread_mutex_lock(&f->mu);
        pthread_mutex_unlock(&f->mu);
        return 0;
#ifdef ANYLOCK_WITH_REDIS
    case FLOOR_REDIS:
        return redis_round_trip(f, err, errsize);
#endif
#ifdef ANYLOCK_WITH_MEMCACHED
    case FLOOR_MEMCACHED:
        return memcached_round_trip(f, err, errsize);
#endif
#ifdef ANYLOCK_WITH_SQLITE
    case FLOOR_SQLITE:
        return sqlite_round_trip(f, err, errsize);
#endif
#ifdef ANYLOCK_WITH_POSTGRES
    case FLOOR_POSTGRES:
        return postgres_round_trip(f, err, errsize);
#endif
#ifdef ANYLOCK_WITH_ETCD
    case FLOOR_ETCD:
        return etcd_round_trip(f, err, errsize);
#endif
    case FLOOR_FILE:
        return file_round_trip(f, err, errsize);
    default:
        snprintf(err, errsize, "no floor");
        return -1;
    }
}

void bench_floor_close(bench_floor *f)
{
    if (!f)
        return;
    switch (f->kind) {
    case FLOOR_MEMORY:
        pthread_mutex_destroy(&f->mu);
        break;
#ifdef ANYLOCK_WITH_REDIS
    case FLOOR_REDIS:
        if (f->redis)
            redisFree(f->redis);
        break;
#endif
#ifdef ANYLOCK_WITH_MEMCACHED
    case FLOOR_MEMCACHED:
        if (f->mc)
            memcached_free(f->mc);
        break;
#endif
#ifdef ANYLOCK_WITH_ETCD
    case FLOOR_ETCD:
        if (f->curl)
            curl_easy_cleanup(f->curl);
        curl_slist_free_all(f->headers);
        break;
#endif
#ifdef ANYLOCK_WITH_SQLITE
    case FLOOR_SQLITE:
        sqlite3_finalize(f->begin);
        sqlite3_finalize(f->write);
        sqlite3_finalize(f->commit);
        if (f->db)
            sqlite3_close(f->db);
        break;
#endif
#ifdef ANYLOCK_WITH_POSTGRES
    case FLOOR_POSTGRES:
        PQfinish(f->pg);
        break;
#endif
    case FLOOR_FILE:
        if (f->fd >= 0)
            close(f->fd);
        break;
    default:
        break;
    }
    free(f);
}

/* ---- hand-offs between two processes ------------------------------------ */

/* One side of a hand-off run between two processes: me is 0 in this
 * process and 1 in a child; in and out are the pipes from and to the other
 * side; round i's hand-off is timed from starts[i] (the holder's) to
 * ends[i] (the waiter's).  0 on success.  A side that fails returns, and
 * its pipes closing end the other's reads. */
typedef int (*pair_side)(void *arg, int me, int n, int in, int out, int64_t *starts, int64_t *ends);

/* Runs n hand-offs of side in this process and a child; each timed (us)
 * into out.  what names them in err. */
static int pair_run(pair_side side, void *arg, int n, bench_samples *out, const char *what, char *err,
                    size_t errsize)
{
    if (n < 1) {
        snprintf(err, errsize, "%s: no hand-offs to make", what);
        return -1;
    }
    int to_child[2], to_parent[2];
    size_t size = 2 * (size_t)n * sizeof(int64_t);
    int64_t *times = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (times == MAP_FAILED) {
        snprintf(err, errsize, "%s: %s", what, strerror(errno));
        return -1;
    }
    if (pipe(to_child)) {
        snprintf(err, errsize, "%s: %s", what, strerror(errno));
        munmap(times, size);
        return -1;
    }
    if (pipe(to_parent)) {
        snprintf(err, errsize, "%s: %s", what, strerror(errno));
        close(to_child[0]);
        close(to_child[1]);
        munmap(times, size);
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(to_child[1]);
        close(to_parent[0]);
        _exit(side(arg, 1, n, to_child[0], to_parent[1], times, times + n) == 0 ? 0 : 1);
    }
    close(to_child[0]);
    close(to_parent[1]);
    int rc = pid > 0 ? side(arg, 0, n, to_parent[0], to_child[1], times, times + n) : -1;
    close(to_child[1]);
    close(to_parent[0]);
    int status = 0;
    if (pid > 0 && (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0))
        rc = -1;
    for (int i = 0; rc == 0 && i < n; i++)
        bench_samples_add(out, (double)(times[n + i] - times[i]) / 1e3);
    munmap(times, size);
    if (rc != 0)
        snprintf(err, errsize, "%s failed", what);
    return rc;
}

/* ---- the hand-off of the store's own protocol --------------------------- */

#ifdef ANYLOCK_WITH_REDIS
/* python-redis-lock 4.0's release script (../shared/spec/redis-protocol.md). */
static const char pylock_unlock_lua[] =
    "if redis.call('get', KEYS[1]) ~= ARGV[1] then return 1 else "
    "redis.call('del', KEYS[2]) redis.call('lpush', KEYS[2], 1) redis.call('pexpire', KEYS[2], ARGV[2]) "
    "redis.call('del', KEYS[1]) return 0 end";

/* One run's floor hand-offs: the URL, the hold, and keys of their own. */
typedef struct pylock_run {
    const char *url;
    double hold_ms;
    char key[64], signal[64];
} pylock_run;

/* python-redis-lock's acquire: SET NX PX, and while that fails a BLPOP on
 * the signal list (1 s at a time, its expiry) and SET NX PX again. */
static int pylock_acquire(redisContext *c, const pylock_run *k, const char *id)
{
    for (;;) {
        redisReply *r = redisCommand(c, "SET %s %s NX PX 10000", k->key, id);
        if (!r || (r->type != REDIS_REPLY_STATUS && r->type != REDIS_REPLY_NIL)) {
            freeReplyObject(r);
            return -1;
        }
        int taken = r->type == REDIS_REPLY_STATUS;
        freeReplyObject(r);
        if (taken)
            return 0;
        r = redisCommand(c, "BLPOP %s 1", k->signal);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            freeReplyObject(r);
            return -1;
        }
        freeReplyObject(r);
    }
}

static int pylock_release(redisContext *c, const pylock_run *k, const char *sha, const char *id)
{
    redisReply *r = redisCommand(c, "EVALSHA %s 2 %s %s %s 1000", sha, k->key, k->signal, id);
    int ok = r && r->type == REDIS_REPLY_INTEGER && r->integer == 0;
    freeReplyObject(r);
    return ok ? 0 : -1;
}

/* A side of a redis floor hand-off run (a pair_side): side 0 holds in even
 * rounds.  A waiter says 'w' before it tries, the holder keeps the lock
 * hold_ms more and releases, noting when its release started; the waiter
 * notes when its acquire returned and says 'd'. */
static int pylock_side(void *arg, int me, int n, int in, int out, int64_t *t_start, int64_t *t_acquired)
{
    const pylock_run *k = arg;
    char err[256];
    bench_floor *f = bench_floor_open(k->url, err, sizeof err);
    if (!f)
        return -1;
    redisContext *c = f->redis;
    redisReply *r = redisCommand(c, "SCRIPT LOAD %s", pylock_unlock_lua);
    char sha[41] = "";
    if (r && r->type == REDIS_REPLY_STRING && r->len == 40)
        memcpy(sha, r->str, 41);
    freeReplyObject(r);
    char id[16];
    snprintf(id, sizeof id, "w%d", me);
    int rc = sha[0] ? 0 : -1;
    char b;
    if (rc == 0 && me == 0)
        rc = pylock_acquire(c, k, id) == 0 && write(out, "r", 1) == 1 ? 0 : -1;
    else if (rc == 0)
        rc = read(in, &b, 1) == 1 && b == 'r' ? 0 : -1;
    for (int i = 0; rc == 0 && i < n; i++) {
        if (me == i % 2) {
            if (read(in, &b, 1) != 1 || b != 'w') {
                rc = -1;
                break;
            }
            bench_sleep_ns((int64_t)(k->hold_ms * 1e6));
            t_start[i] = bench_now_ns();
            if (pylock_release(c, k, sha, id) != 0 || read(in, &b, 1) != 1 || b != 'd')
                rc = -1;
        } else {
            if (write(out, "w", 1) != 1 || pylock_acquire(c, k, id) != 0) {
                rc = -1;
                break;
            }
            t_acquired[i] = bench_now_ns();
            if (write(out, "d", 1) != 1)
                rc = -1;
        }
    }
    if (rc == 0 && me == n % 2)
        rc = pylock_release(c, k, sha, id);
    bench_floor_close(f);
    return rc;
}
#endif

int bench_floor_handoffs(const char *url, int n, double hold_ms, bench_samples *out, char *err, size_t errsize)
{
#ifdef ANYLOCK_WITH_REDIS
    if (!strncasecmp(url, "redis://", 8) || !strncasecmp(url, "redis+unix://", 13)) {
        pylock_run k = {.url = url, .hold_ms = hold_ms};
        snprintf(k.key, sizeof k.key, "lock:anylock-bench-floor-%ld", (long)getpid());
        snprintf(k.signal, sizeof k.signal, "lock-signal:anylock-bench-floor-%ld", (long)getpid());
        return pair_run(pylock_side, &k, n, out, "redis floor hand-off (python-redis-lock's protocol)", err, errsize);
    }
#else
    (void)n;
    (void)hold_ms;
    (void)out;
#endif
    (void)url;
    snprintf(err, errsize, "no floor hand-off for this store");
    return 1;
}

/* ---- flock(2): the one-host floor beside sqlite:// ------------------------- */

/* The directory of a sqlite:// URL's file, for a flock file beside it;
 * -1 when url is not a sqlite:// URL. */
static int sqlite_dir(const char *url, char *out, size_t size)
{
    floor_url u;
    char err[64];
    if (strncasecmp(url, "sqlite:", 7) || parse_url(url, &u, err, sizeof err) != 0)
        return -1;
    const char *path = u.path[0] == '/' ? u.path + 1 : u.path;
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(out, size, ".");
    else
        snprintf(out, size, "%.*s", (int)(slash - path) ? (int)(slash - path) : 1, path);
    return 0;
}

int bench_flock_path(const char *url, char *out, size_t size)
{
    char dir[4096];
    if (sqlite_dir(url, dir, sizeof dir) != 0)
        return -1;
    snprintf(out, size, "%s/anylock-bench-flock.lock", dir);
    return 0;
}

int bench_flock_pairs(const char *path, int n, bench_samples *pair, char *err, size_t errsize)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errsize, "flock floor: %s: %s", path, strerror(errno));
        return -1;
    }
    for (int i = 0; i < n; i++) {
        int64_t t0 = bench_now_ns();
        if (flock(fd, LOCK_EX) != 0 || flock(fd, LOCK_UN) != 0) {
            snprintf(err, errsize, "flock floor: %s", strerror(errno));
            close(fd);
            return -1;
        }
        if (pair && bench_samples_add(pair, (double)(bench_now_ns() - t0) / 1e3)) {
            close(fd);
            snprintf(err, errsize, "out of memory");
            return -1;
        }
    }
    close(fd);
    return 0;
}

/* One run of flock hand-offs. */
typedef struct flock_run {
    const char *path;
    double hold_ms;
} flock_run;

/* A side of flock hand-offs (a pair_side), timed as the store's are: side 0
 * holds and side 1 waits, every round.  The holder releases after the
 * waiter is blocked in flock(LOCK_EX) (it says so, then the holder keeps
 * the lock hold_ms more); from the return of the release to the waiter's
 * flock returning. */
static int flock_side(void *arg, int me, int n, int in, int out, int64_t *t_release, int64_t *t_acquired)
{
    const flock_run *fr = arg;
    int fd = open(fr->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    int rc = fd >= 0 ? 0 : -1;
    char b;
    for (int i = 0; rc == 0 && i < n; i++) {
        if (me == 1) {
            if (read(in, &b, 1) != 1 || write(out, "w", 1) != 1 || flock(fd, LOCK_EX) != 0) {
                rc = -1;
                break;
            }
            t_acquired[i] = bench_now_ns();
            if (flock(fd, LOCK_UN) != 0 || write(out, "d", 1) != 1)
                rc = -1;
        } else {
            if (flock(fd, LOCK_EX) != 0 || write(out, "g", 1) != 1 || read(in, &b, 1) != 1) {
                rc = -1;
                break;
            }
            bench_sleep_ns((int64_t)(fr->hold_ms * 1e6));
            flock(fd, LOCK_UN);
            t_release[i] = bench_now_ns();
            if (read(in, &b, 1) != 1)
                rc = -1;
        }
    }
    if (fd >= 0)
        close(fd);
    return rc;
}

int bench_flock_handoffs(const char *path, int n, double hold_ms, bench_samples *out, char *err, size_t errsize)
{
    flock_run fr = {.path = path, .hold_ms = hold_ms};
    return pair_run(flock_side, &fr, n, out, "flock hand-off", err, errsize);
}
