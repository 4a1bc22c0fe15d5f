/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The test harness: real servers on free loopback ports, temporary
 * directories, and helpers for many-process contention.
 *
 * Servers are started in a fresh temporary directory, on a port found free
 * by binding to 127.0.0.1:0, and are stopped by their PID (also at exit, and
 * if the test program dies of a signal the servers notice their parent is
 * gone: they are started with PR_SET_PDEATHSIG).  A missing server binary is
 * a test failure, never a skip.
 */
#ifndef ANYLOCK_TEST_HARNESS_H
#define ANYLOCK_TEST_HARNESS_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "anylock.h"

typedef struct test_server {
    char kind[16];    /* "redis", "memcached" or "postgres" */
    pid_t pid;        /* 0 when stopped */
    int port;
    char dir[256];    /* its temporary directory */
    char url[512];    /* e.g. redis://127.0.0.1:PORT */
    char extra[256];  /* extra arguments, space-separated, kept for restarts */
    /* etcd members: the peer port and the cluster's --initial-cluster. */
    int peer_port;
    char cluster[400];
} test_server;

/* Starts a server of kind ("redis", "memcached" or "postgres") with optional
 * extra arguments (space-separated, may be NULL; "-c name=value" for
 * postgres).  Returns 0 once it accepts connections (for postgres, once the
 * postmaster says it is ready); -1 with a message on stderr otherwise.
 * postgres: a fresh cluster made by initdb in the server's directory (as
 * the "postgres" user when running as root), url
 * postgres://postgres@127.0.0.1:PORT/postgres, trust authentication. */
int test_server_start(test_server *s, const char *kind, const char *extra_args);
/* Stops it (SIGTERM, for postgres SIGINT, then SIGKILL after 5 s), waits
 * for it and removes its directory. */
void test_server_stop(test_server *s);
/* Stops it abruptly (SIGKILL; for postgres SIGQUIT, the immediate
 * shutdown, which ends every session at once). */
void test_server_kill(test_server *s);
/* Starts it again on the same port (after stop or kill). */
int test_server_restart(test_server *s);

/* A free TCP port on 127.0.0.1. */
int test_free_port(void);
/* Waits until 127.0.0.1:port accepts a connection; 0 on success. */
int test_wait_port(int port, int timeout_ms);

/* A fresh temporary directory (mkdtemp under $TMPDIR or /tmp), removed with
 * everything in it by test_rmtree. */
int test_tmpdir(char *out, size_t size);
void test_rmtree(const char *dir);

/* The monotonic clock in seconds. */
double test_now(void);
/* The wall clock (Unix time) in seconds. */
double test_wall_now(void);
void test_sleep(double seconds);

/* What a lost-lock callback saw: pass test_lost_record as the callback and
 * a test_lost as its userdata. */
typedef struct test_lost {
    atomic_int calls;
    atomic_int why; /* the last call's status */
    double at;      /* test_now() of the last call (read it after calls) */
} test_lost;
void test_lost_record(anylock_lock *lock, anylock_status why, void *userdata);
/* Waits until rec has seen a call, at most limit seconds; the calls seen. */
int test_lost_wait(test_lost *rec, double limit);

/* SIGSTOPs pid and returns once every thread of it is stopped (a stop
 * takes effect when each thread next runs): 0, or -1 if that took more
 * than limit seconds. */
int test_stop_process(pid_t pid, double limit);

/* Shared memory visible to forked children (MAP_SHARED|MAP_ANONYMOUS). */
void *test_shared_alloc(size_t size);
void test_shared_free(void *p, size_t size);

/* Forks n children that each run fn(index, arg) and exit with its return
 * value; waits for all (up to timeout seconds, then kills them).  Returns
 * the number of children that failed (non-zero exit or killed). */
int test_fork_n(int n, int (*fn)(int index, void *arg), void *arg, double timeout);

/*
 * A real etcd cluster of 1 to TEST_ETCD_MAX members on free loopback ports
 * (client and peer URLs on 127.0.0.1), each in a temporary directory (on
 * /dev/shm when there is one: etcd syncs its log on every write), started
 * with a 100 ms heartbeat and a 1 s election timeout (so the smallest lease
 * TTL is 2 s and a lost leader is replaced within about 2 s).  Members
 * started inside a Check test die with the test's process (PDEATHSIG), so
 * a test that kills and restarts members starts a cluster of its own.
 */
#define TEST_ETCD_MAX 3

typedef struct test_etcd {
    int n;
    test_server m[TEST_ETCD_MAX];
    char url[512];       /* etcd://127.0.0.1:C1,127.0.0.1:C2,... */
    char endpoints[512]; /* 127.0.0.1:C1,... (etcdctl --endpoints) */
} test_etcd;

/* Starts n members and waits until they agree on a leader; 0 on success. */
int test_etcd_start(test_etcd *c, int n);
void test_etcd_stop(test_etcd *c);
/* SIGKILLs member i. */
void test_etcd_kill(test_etcd *c, int i);
/* Starts member i again (same ports and data) and waits for a leader. */
int test_etcd_restart(test_etcd *c, int i);
/* SIGSTOP (on = 1: returns once every thread of it is stopped) or SIGCONT
 * (on = 0) member i. */
void test_etcd_pause(test_etcd *c, int i, int on);
/* The index of the member that is leader, as the running members agree,
 * waiting up to timeout seconds; -1 if none. */
int test_etcd_leader(test_etcd *c, double timeout);

/* POSTs body to http://127.0.0.1:port/path (HTTP/1.0); the answer's body
 * into out (NUL-terminated).  Returns the HTTP status, or -1. */
int test_http_post(int port, const char *path, const char *body, char *out, size_t size, double timeout);

#endif
