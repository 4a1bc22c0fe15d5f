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

#include <stdint.h>
#include <sys/types.h>

typedef struct test_server {
    char kind[16];    /* "redis" or "memcached" */
    pid_t pid;        /* 0 when stopped */
    int port;
    char dir[256];    /* its temporary directory */
    char url[512];    /* e.g. redis://127.0.0.1:PORT */
    char extra[256];  /* extra arguments, space-separated, kept for restarts */
} test_server;

/* Starts a server of kind ("redis" or "memcached") with optional extra
 * arguments (space-separated, may be NULL).  Returns 0 once it accepts
 * connections; -1 with a message on stderr otherwise. */
int test_server_start(test_server *s, const char *kind, const char *extra_args);
/* Stops it (SIGTERM, then SIGKILL after 5 s) and waits for it. */
void test_server_stop(test_server *s);
/* Stops it abruptly (SIGKILL). */
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

/* Shared memory visible to forked children (MAP_SHARED|MAP_ANONYMOUS). */
void *test_shared_alloc(size_t size);
void test_shared_free(void *p, size_t size);

/* Forks n children that each run fn(index, arg) and exit with its return
 * value; waits for all (up to timeout seconds, then kills them).  Returns
 * the number of children that failed (non-zero exit or killed). */
int test_fork_n(int n, int (*fn)(int index, void *arg), void *arg, double timeout);

#endif
