/*
 * memcached:// against real memcached servers on free loopback ports: the
 * conformance suite under the text and then the binary protocol, then what
 * is memcached's own (key mapping, server lists, expiry rounding, a killed
 * holder, a server that dies mid-wait or runs without CAS, URL parameters).
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libmemcached/memcached.h>

#include "anylock.h"
#include "conformance.h"
#include "harness.h"

/* The server shared by the conformance runs and most tests here. */
static test_server shared;

#include "check_status.h"

static anylock_client *open_url(const char *url)
{
    anylock_client *c = NULL;
    anylock_status st = anylock_open(url, &c);
    ck_assert_msg(st == ANYLOCK_OK, "open %s: %s (%s)", url, anylock_strerror(st), anylock_errmsg(c));
    return c;
}

static anylock_lock *lock_for(anylock_client *c, const char *name)
{
    anylock_lock *l = NULL;
    ck_assert_int_eq(anylock_lock_new(c, name, &l), ANYLOCK_OK);
    return l;
}

/* A direct libmemcached connection to one server, to look at raw keys. */
static memcached_st *raw_conn(int port)
{
    memcached_st *m = memcached_create(NULL);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(memcached_server_add(m, "127.0.0.1", (in_port_t)port), MEMCACHED_SUCCESS);
    return m;
}

/* The value stored under key on that server, in buf ("" when absent). */
static void raw_get(memcached_st *m, const char *key, char *buf, size_t size)
{
    size_t len = 0;
    uint32_t flags = 0;
    memcached_return_t rc;
    char *v = memcached_get(m, key, strlen(key), &len, &flags, &rc);
    buf[0] = '\0';
    if (v) {
        snprintf(buf, size, "%.*s", (int)len, v);
        free(v);
    }
}

/* ---- key mapping ---- */

START_TEST(t_key_mapping)
{
    char url[600];
    snprintf(url, sizeof url, "%s?prefix=lock:", shared.url);
    anylock_client *c = open_url(url);
    memcached_st *m = raw_conn(shared.port);
    char long_name[301], fits[246], one_more[247], fits_key[260];
    memset(long_name, 'x', 300);
    long_name[300] = '\0';
    /* "lock:" + 245 bytes is exactly memcached's 250; one more is mapped. */
    memset(fits, 'y', 245);
    fits[245] = '\0';
    memset(one_more, 'y', 246);
    one_more[246] = '\0';
    snprintf(fits_key, sizeof fits_key, "lock:%s", fits);
    struct {
        const char *name;
        const char *key; /* the memcached key the mapping rule gives */
    } cases[] = {
        {"plain", "lock:plain"},
        {"with space", "lock:~c32820b2846c8a9b8c2a690e16cf1ec0c884a4342f3360e423e9fa55965ae74d"},
        {long_name, "lock:~0df74201d12ae47a5da97c3712ec1201c82ff270fd7bd76464d4aee96f0137b7"},
        {fits, fits_key},
        {one_more, "lock:~4a7fa96ddbba17b1b2989d2653e132d2ce2101dc424abef694c561d78de168a2"},
        {"tilde~", "lock:~83adad64fbc03777cec4b9744d7fbd532cb4100f62863fa08d4453e187686e50"},
        {"caf\xc3\xa9", "lock:~63d9f0c235a101091daa0d8fdd7284820babc277739e71f8e74771240e2af3d8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        anylock_lock *a = lock_for(c, cases[i].name), *b = lock_for(c, cases[i].name);
        ck_status(anylock_acquire(a), ANYLOCK_OK);
        ck_status(anylock_try_acquire(b), ANYLOCK_BUSY);
        char value[128];
        raw_get(m, cases[i].key, value, sizeof value);
        ck_assert_msg(!strcmp(value, anylock_lock_id(a)), "name %zu: key %s holds \"%s\", want the owner id", i,
                      cases[i].key, value);
        ck_status(anylock_release(a), ANYLOCK_OK);
        raw_get(m, cases[i].key, value, sizeof value);
        ck_assert_str_eq(value, "");
        anylock_lock_free(a);
        anylock_lock_free(b);
    }
    memcached_free(m);
    anylock_close(c);
}
END_TEST

START_TEST(t_mapped_names_distinct)
{
    /* Names memcached cannot take as keys are still distinct locks: long
     * names differing only past byte 250, unicode, control-free oddities,
     * and names that look like a mapped key. */
    anylock_client *c = open_url(shared.url);
    static char n1[1001], n2[1001];
    memset(n1, 'a', 1000);
    memset(n2, 'a', 1000);
    n2[999] = 'b';
    const char *names[] = {n1, n2, "caf\xc3\xa9 lock", "caf\xc3\xa9", "with space", "with  space", "tilde~",
                           "~c32820b2846c8a9b8c2a690e16cf1ec0c884a4342f3360e423e9fa55965ae74d",
                           "\xe6\x97\xa5\xe6\x9c\xac"};
    enum { N = sizeof names / sizeof names[0] };
    anylock_lock *held[N];
    for (int i = 0; i < N; i++) {
        held[i] = lock_for(c, names[i]);
        ck_status(anylock_acquire(held[i]), ANYLOCK_OK);
    }
    for (int i = 0; i < N; i++) {
        anylock_lock *other = lock_for(c, names[i]);
        ck_status(anylock_try_acquire(other), ANYLOCK_BUSY);
        char owner[ANYLOCK_ID_MAX + 1];
        ck_status(anylock_owner(other, owner, sizeof owner), ANYLOCK_OK);
        ck_assert_str_eq(owner, anylock_lock_id(held[i]));
        anylock_lock_free(other);
    }
    for (int i = 0; i < N; i++) {
        ck_status(anylock_release(held[i]), ANYLOCK_OK);
        anylock_lock_free(held[i]);
    }
    anylock_close(c);
}
END_TEST

/* ---- protocols, URL ---- */

START_TEST(t_text_binary_interop)
{
    char url[600];
    snprintf(url, sizeof url, "%s?protocol=binary", shared.url);
    anylock_client *t = open_url(shared.url), *b = open_url(url);
    anylock_lock *a = lock_for(t, "interop"), *x = lock_for(b, "interop");
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_status(anylock_try_acquire(x), ANYLOCK_BUSY);
    ck_status(anylock_release(a), ANYLOCK_OK);
    ck_status(anylock_try_acquire(x), ANYLOCK_OK);
    ck_status(anylock_try_acquire(a), ANYLOCK_BUSY);
    anylock_lock_free(a);
    anylock_lock_free(x);
    anylock_close(t);
    anylock_close(b);
}
END_TEST

START_TEST(t_url)
{
    char url[700];
    anylock_client *c = NULL;
    snprintf(url, sizeof url, "%s?protocol=udp", shared.url);
    ck_status(anylock_open(url, &c), ANYLOCK_URL_BAD_PARAM);
    anylock_close(c);
    snprintf(url, sizeof url, "%s?poll_max=0", shared.url);
    ck_status(anylock_open(url, &c), ANYLOCK_URL_BAD_PARAM);
    anylock_close(c);
    snprintf(url, sizeof url, "%s?io_timeout=1&command_timeout=2", shared.url);
    ck_status(anylock_open(url, &c), ANYLOCK_URL_BAD_PARAM);
    anylock_close(c);
    snprintf(url, sizeof url, "%s?nosuch=1", shared.url);
    ck_status(anylock_open(url, &c), ANYLOCK_URL_UNKNOWN_PARAM);
    anylock_close(c);
    snprintf(url, sizeof url, "memcached://user:s3cr3t@127.0.0.1:%d", shared.port);
    ck_status(anylock_open(url, &c), ANYLOCK_URL_BAD_USERINFO);
    ck_assert_ptr_null(strstr(anylock_errmsg(c), "s3cr3t"));
    anylock_close(c);
    snprintf(url, sizeof url, "memcached://127.0.0.1:%d/db", shared.port);
    ck_status(anylock_open(url, &c), ANYLOCK_URL_BAD_PATH);
    anylock_close(c);
    /* Every parameter, and the memcache:// alias. */
    snprintf(url, sizeof url,
             "memcache://127.0.0.1:%d?protocol=text&connect_timeout=1.5&io_timeout=0.7&poll_max=0.05",
             shared.port);
    c = open_url(url);
    ck_assert_str_eq(anylock_client_scheme(c), "memcache");
    size_t count = 99;
    ck_status(anylock_reset_all(c, &count), ANYLOCK_UNSUPPORTED);
    anylock_close(c);
    /* No server there: a clear connect failure at open. */
    snprintf(url, sizeof url, "memcached://127.0.0.1:%d?connect_timeout=1", test_free_port());
    anylock_status st = anylock_open(url, &c);
    ck_assert_msg(st == ANYLOCK_CONNECT || st == ANYLOCK_IO, "open with no server: %s (%s)",
                  anylock_status_name(st), anylock_errmsg(c));
    anylock_close(c);
}
END_TEST

static int count_cb(const anylock_info *info, void *ud)
{
    (void)info;
    ++*(int *)ud;
    return 0;
}

START_TEST(t_list_unsupported)
{
    anylock_client *c = open_url(shared.url);
    int n = 0;
    ck_status(anylock_list(c, count_cb, &n), ANYLOCK_UNSUPPORTED);
    ck_assert_int_eq(n, 0);
    anylock_close(c);
}
END_TEST

/* ---- expiry ---- */

START_TEST(t_subsecond_rounds_up)
{
    anylock_client *c = open_url(shared.url);
    anylock_lock *a = lock_for(c, "subsecond"), *b = lock_for(c, "subsecond");
    ck_status(anylock_lock_set_expires(a, 0.2), ANYLOCK_OK);
    double t0 = test_now();
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    anylock_info info;
    ck_status(anylock_inspect(c, "subsecond", &info), ANYLOCK_OK);
    ck_assert_msg(info.held && info.expires_in > 0 && info.expires_in <= 2.1, "expires_in %.3f", info.expires_in);
    /* Rounded up to a whole second (not to 0, which would never expire, and
     * not down): still held well after 0.2 s... */
    test_sleep(0.6);
    if (test_now() - t0 < 0.95)
        ck_status(anylock_try_acquire(b), ANYLOCK_BUSY);
    /* ...and gone once the rounded expiry and memcached's second have passed. */
    ck_status(anylock_lock_set_timeout(b, 6), ANYLOCK_OK);
    ck_status(anylock_acquire(b), ANYLOCK_OK);
    double waited = test_now() - t0;
    ck_assert_msg(waited >= 0.95, "a 0.2 s expiry freed the lock after %.3f s: not rounded up to 1 s", waited);
    ck_assert_msg(waited < 4.5, "a 0.2 s expiry freed the lock only after %.3f s", waited);
    anylock_lock_free(a);
    anylock_lock_free(b);
    anylock_close(c);
}
END_TEST

START_TEST(t_killed_holder)
{
    int ready[2];
    ck_assert_int_eq(pipe(ready), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        anylock_client *c = NULL;
        anylock_lock *l = NULL;
        if (anylock_open(shared.url, &c) != ANYLOCK_OK || anylock_lock_new(c, "killed", &l) != ANYLOCK_OK ||
            anylock_lock_set_expires(l, 2) != ANYLOCK_OK || anylock_acquire(l) != ANYLOCK_OK)
            _exit(1);
        if (write(ready[1], "k", 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close(ready[1]);
    char ch = 0;
    ck_assert_int_eq(read(ready[0], &ch, 1), 1);
    close(ready[0]);
    double t0 = test_now();
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    anylock_client *c = open_url(shared.url);
    anylock_lock *l = lock_for(c, "killed");
    ck_status(anylock_try_acquire(l), ANYLOCK_BUSY);
    ck_status(anylock_lock_set_timeout(l, 10), ANYLOCK_OK);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    double waited = test_now() - t0;
    ck_assert_msg(waited >= 1.0, "the dead holder's 2 s lock was free after %.3f s", waited);
    ck_assert_msg(waited < 2 + 1.5 + 2, "the dead holder's 2 s lock was free only after %.3f s", waited);
    anylock_lock_free(l);
    anylock_close(c);
}
END_TEST

START_TEST(t_waiter_cpu)
{
    /* A waiter polls with backoff: a 2 s wait costs little CPU. */
    anylock_client *c = open_url(shared.url);
    anylock_lock *a = lock_for(c, "cpu"), *b = lock_for(c, "cpu");
    ck_status(anylock_lock_set_expires(a, 30), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_status(anylock_lock_set_timeout(b, 2), ANYLOCK_OK);
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    ck_status(anylock_acquire(b), ANYLOCK_TIMEOUT);
    getrusage(RUSAGE_SELF, &r1);
    double cpu = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) +
                 (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec + r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
    ck_assert_msg(cpu < 0.5, "waiting 2 s used %.3f s of CPU", cpu);
    anylock_lock_free(a);
    anylock_lock_free(b);
    anylock_close(c);
}
END_TEST

/* ---- several servers ---- */

START_TEST(t_two_servers)
{
    test_server s1, s2;
    ck_assert_int_eq(test_server_start(&s1, "memcached", NULL), 0);
    ck_assert_int_eq(test_server_start(&s2, "memcached", NULL), 0);
    char url[600], rev[600];
    snprintf(url, sizeof url, "memcached://127.0.0.1:%d,127.0.0.1:%d?prefix=two:", s1.port, s2.port);
    snprintf(rev, sizeof rev, "memcached://127.0.0.1:%d,127.0.0.1:%d?prefix=two:", s2.port, s1.port);
    anylock_client *c = open_url(url), *c2 = open_url(rev);
    memcached_st *m1 = raw_conn(s1.port), *m2 = raw_conn(s2.port);
    enum { N = 40 };
    anylock_lock *l[N];
    int on1 = 0, on2 = 0;
    for (int i = 0; i < N; i++) {
        char name[32], key[40], v1[128], v2[128];
        snprintf(name, sizeof name, "job-%d", i);
        l[i] = lock_for(c, name);
        ck_status(anylock_acquire(l[i]), ANYLOCK_OK);
        snprintf(key, sizeof key, "two:%s", name);
        raw_get(m1, key, v1, sizeof v1);
        raw_get(m2, key, v2, sizeof v2);
        /* Exactly one server holds each lock. */
        ck_assert_msg(!strcmp(v1, anylock_lock_id(l[i])) != !strcmp(v2, anylock_lock_id(l[i])),
                      "%s: server 1 has \"%s\", server 2 has \"%s\"", name, v1, v2);
        on1 += !strcmp(v1, anylock_lock_id(l[i]));
        on2 += !strcmp(v2, anylock_lock_id(l[i]));
        /* A client listing the servers in another order agrees. */
        anylock_lock *other = lock_for(c2, name);
        ck_status(anylock_try_acquire(other), ANYLOCK_BUSY);
        anylock_lock_free(other);
    }
    ck_assert_msg(on1 > 0 && on2 > 0, "locks not spread: %d on server 1, %d on server 2", on1, on2);
    for (int i = 0; i < N; i++) {
        ck_status(anylock_release(l[i]), ANYLOCK_OK);
        anylock_lock_free(l[i]);
    }
    memcached_free(m1);
    memcached_free(m2);
    anylock_close(c);
    anylock_close(c2);
    test_server_stop(&s1);
    test_server_stop(&s2);
}
END_TEST

static char two_url[600];

static int two_server_contender(int index, void *arg)
{
    (void)index;
    int *shared_counter = arg; /* [0] inside, [1] overlaps, [2] count */
    anylock_client *c = NULL;
    anylock_lock *l = NULL;
    if (anylock_open(two_url, &c) != ANYLOCK_OK || anylock_lock_new(c, "counter", &l) != ANYLOCK_OK)
        return 1;
    anylock_lock_set_timeout(l, 25);
    anylock_lock_set_expires(l, 30);
    int rc = 0;
    for (int i = 0; i < 10; i++) {
        if (anylock_acquire(l) != ANYLOCK_OK) {
            rc = 1;
            continue;
        }
        if (__atomic_fetch_add(&shared_counter[0], 1, __ATOMIC_SEQ_CST) != 0)
            __atomic_fetch_add(&shared_counter[1], 1, __ATOMIC_SEQ_CST);
        int v = shared_counter[2];
        usleep(300);
        shared_counter[2] = v + 1;
        __atomic_fetch_sub(&shared_counter[0], 1, __ATOMIC_SEQ_CST);
        if (anylock_release(l) != ANYLOCK_OK)
            rc = 1;
    }
    anylock_lock_free(l);
    anylock_close(c);
    return rc;
}

START_TEST(t_two_servers_contention)
{
    test_server s1, s2;
    ck_assert_int_eq(test_server_start(&s1, "memcached", NULL), 0);
    ck_assert_int_eq(test_server_start(&s2, "memcached", NULL), 0);
    snprintf(two_url, sizeof two_url, "memcached://127.0.0.1:%d,127.0.0.1:%d?protocol=binary", s1.port, s2.port);
    int *counters = test_shared_alloc(3 * sizeof(int));
    ck_assert_ptr_nonnull(counters);
    ck_assert_int_eq(test_fork_n(8, two_server_contender, counters, 120), 0);
    ck_assert_int_eq(counters[1], 0);
    ck_assert_int_eq(counters[2], 8 * 10);
    test_shared_free(counters, 3 * sizeof(int));
    test_server_stop(&s1);
    test_server_stop(&s2);
}
END_TEST

/* ---- failures ---- */

typedef struct waiter {
    anylock_client *client;
    anylock_status status;
    double done_at;
    char msg[ANYLOCK_ERRMSG_MAX];
} waiter;

static void *wait_thread(void *arg)
{
    waiter *w = arg;
    anylock_lock *l = NULL;
    if (anylock_lock_new(w->client, "midwait", &l) != ANYLOCK_OK) {
        w->status = ANYLOCK_INTERNAL;
        return NULL;
    }
    anylock_lock_set_expires(l, 30);
    anylock_lock_set_timeout(l, 20);
    w->status = anylock_acquire(l);
    w->done_at = test_now();
    snprintf(w->msg, sizeof w->msg, "%s", anylock_lock_errmsg(l));
    anylock_lock_free(l);
    return NULL;
}

static void server_dies_mid_wait(const char *protocol)
{
    test_server s;
    ck_assert_int_eq(test_server_start(&s, "memcached", NULL), 0);
    char url[600];
    snprintf(url, sizeof url, "%s?protocol=%s&command_timeout=1&connect_timeout=1", s.url, protocol);
    anylock_client *c = open_url(url), *c2 = open_url(url);
    anylock_lock *a = lock_for(c, "midwait");
    ck_status(anylock_lock_set_expires(a, 30), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    waiter w = {c2, ANYLOCK_INTERNAL, 0, ""};
    pthread_t t;
    pthread_create(&t, NULL, wait_thread, &w);
    test_sleep(0.5);
    double killed_at = test_now();
    test_server_kill(&s);
    pthread_join(t, NULL);
    ck_assert_msg(w.status == ANYLOCK_IO || w.status == ANYLOCK_CONNECT, "waiter got %s (%s)",
                  anylock_status_name(w.status), w.msg);
    ck_assert_msg(w.done_at - killed_at < 10, "the waiter noticed the dead server only after %.3f s",
                  w.done_at - killed_at);
    ck_assert_msg(strstr(w.msg, "memcached"), "message \"%s\" does not name the store", w.msg);
    /* The release fails clearly too (the lock is gone with the server). */
    anylock_status st = anylock_release(a);
    ck_assert_msg(st == ANYLOCK_IO || st == ANYLOCK_CONNECT, "release on a dead server: %s (%s)",
                  anylock_status_name(st), anylock_lock_errmsg(a));

    /* The same clients work again once the server is back (empty). */
    ck_assert_int_eq(test_server_restart(&s), 0);
    anylock_lock *b = lock_for(c2, "midwait");
    ck_status(anylock_try_acquire(b), ANYLOCK_OK);
    ck_status(anylock_try_acquire(a), ANYLOCK_BUSY);
    ck_status(anylock_release(b), ANYLOCK_OK);
    ck_status(anylock_try_acquire(a), ANYLOCK_OK);
    anylock_lock_free(a);
    anylock_lock_free(b);
    anylock_close(c);
    anylock_close(c2);
    test_server_stop(&s);
}

START_TEST(t_server_dies_mid_wait_text)
{
    server_dies_mid_wait("text");
}
END_TEST

START_TEST(t_server_dies_mid_wait_binary)
{
    server_dies_mid_wait("binary");
}
END_TEST

START_TEST(t_no_cas_server)
{
    test_server s;
    ck_assert_int_eq(test_server_start(&s, "memcached", "-C"), 0);
    const char *protocols[] = {"text", "binary"};
    for (int i = 0; i < 2; i++) {
        char url[600];
        snprintf(url, sizeof url, "%s?protocol=%s", s.url, protocols[i]);
        anylock_client *c = NULL;
        anylock_status st = anylock_open(url, &c);
        ck_assert_msg(st == ANYLOCK_STORE_UNSAFE, "%s: open on memcached -C: %s (%s)", protocols[i],
                      anylock_status_name(st), anylock_errmsg(c));
        ck_assert_msg(strstr(anylock_errmsg(c), "-C"), "message \"%s\" does not mention -C", anylock_errmsg(c));
        anylock_close(c);
    }
    /* One of two servers without CAS is enough to refuse. */
    test_server ok;
    ck_assert_int_eq(test_server_start(&ok, "memcached", NULL), 0);
    char url[600];
    snprintf(url, sizeof url, "memcached://127.0.0.1:%d,127.0.0.1:%d", ok.port, s.port);
    anylock_client *c = NULL;
    ck_status(anylock_open(url, &c), ANYLOCK_STORE_UNSAFE);
    anylock_close(c);
    test_server_stop(&ok);
    test_server_stop(&s);
}
END_TEST

static Suite *memcached_suite(void)
{
    Suite *s = suite_create("memcached");
    struct {
        const char *name;
        const TTest *test;
    } tests[] = {
        {"key_mapping", t_key_mapping},
        {"mapped_names_distinct", t_mapped_names_distinct},
        {"text_binary_interop", t_text_binary_interop},
        {"url", t_url},
        {"list_unsupported", t_list_unsupported},
        {"subsecond_rounds_up", t_subsecond_rounds_up},
        {"killed_holder", t_killed_holder},
        {"waiter_cpu", t_waiter_cpu},
        {"two_servers", t_two_servers},
        {"two_servers_contention", t_two_servers_contention},
        {"server_dies_mid_wait_text", t_server_dies_mid_wait_text},
        {"server_dies_mid_wait_binary", t_server_dies_mid_wait_binary},
        {"no_cas_server", t_no_cas_server},
    };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        TCase *tc = tcase_create(tests[i].name);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, tests[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}

/* The harness stops every server it tracks when a process exits, and Check
 * runs each test in a forked child that exits normally: without this the
 * first test would stop the shared server.  A child forgets the shared
 * server's PID, so only this process stops it. */
static void forget_shared(void)
{
    shared.pid = 0;
}

int main(void)
{
    if (test_server_start(&shared, "memcached", NULL) != 0) {
        fprintf(stderr, "cannot start memcached: it must be installed for these tests\n");
        return 1;
    }
    pthread_atfork(NULL, NULL, forget_shared);
    static char text_url[600], binary_url[600];
    snprintf(text_url, sizeof text_url, "%s?protocol=text", shared.url);
    snprintf(binary_url, sizeof binary_url, "%s?protocol=binary", shared.url);
    /* memcached keeps whole seconds and may free an item up to a second late
     * (anylock adds that second so that it is never early). */
    static const conformance_config text_cfg = {
        .label = "memcached-text",
        .url = text_url,
        .excludes = 1,
        .cross_process = 1,
        .can_list = 0,
        .can_reset_all = 0,
        /* Whole seconds: an item set for N s may go up to 1 s early (the
         * backend sends N+1).  3 s leaves renewal, due at 2/3 of the expiry,
         * a full second of margin on a loaded machine; 2 s left 0.67 s, and
         * a renewal thread delayed longer than that was seen to lose a lock
         * under ASan with parallel tests. */
        .expiry = 3,
        .slack = 1.5,
        .processes = 16,
    };
    conformance_config binary_cfg = text_cfg;
    binary_cfg.label = "memcached-binary";
    binary_cfg.url = binary_url;
    /* The suite keeps a pointer to its config: one run per protocol, one
     * after the other. */
    int rc = conformance_run(conformance_suite(&text_cfg), NULL);
    rc |= conformance_run(conformance_suite(&binary_cfg), memcached_suite());
    test_server_stop(&shared);
    return rc;
}
