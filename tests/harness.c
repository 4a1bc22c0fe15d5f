#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Servers still running, stopped at exit. */
#define MAX_SERVERS 16
static test_server *running[MAX_SERVERS];
static int atexit_set;
/* The process that started the servers: Check forks a child per test, and
 * a child's exit() runs the atexit handlers it inherited, which must not
 * stop the parent's servers. */
static pid_t owner_pid;

static void stop_all(void)
{
    if (getpid() != owner_pid)
        return;
    for (int i = 0; i < MAX_SERVERS; i++)
        if (running[i] && running[i]->pid)
            test_server_stop(running[i]);
}

static void track(test_server *s, int on)
{
    if (!atexit_set) {
        atexit(stop_all);
        atexit_set = 1;
        owner_pid = getpid();
    }
    for (int i = 0; i < MAX_SERVERS; i++) {
        if (on && !running[i]) {
            running[i] = s;
            return;
        }
        if (!on && running[i] == s) {
            running[i] = NULL;
            return;
        }
    }
}

double test_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double test_wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void test_sleep(double seconds)
{
    struct timespec ts = {.tv_sec = (time_t)seconds, .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

int test_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

int test_wait_port(int port, int timeout_ms)
{
    double end = test_now() + timeout_ms / 1000.0;
    while (test_now() < end) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
        if (fd >= 0)
            close(fd);
        if (ok)
            return 0;
        test_sleep(0.01);
    }
    return -1;
}

int test_tmpdir(char *out, size_t size)
{
    const char *base = getenv("TMPDIR");
    snprintf(out, size, "%s/anylock-test-XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(out) ? 0 : -1;
}

void test_rmtree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char path[1024];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            struct stat st;
            if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
                test_rmtree(path);
            else
                unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

static pid_t spawn(test_server *s)
{
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    char *argv[40];
    int n = 0;
    if (!strcmp(s->kind, "redis")) {
        argv[n++] = "redis-server";
        argv[n++] = "--port";
        argv[n++] = port;
        argv[n++] = "--bind";
        argv[n++] = "127.0.0.1";
        argv[n++] = "--dir";
        argv[n++] = s->dir;
        argv[n++] = "--save";
        argv[n++] = "";
        argv[n++] = "--appendonly";
        argv[n++] = "no";
        argv[n++] = "--daemonize";
        argv[n++] = "no";
        argv[n++] = "--loglevel";
        argv[n++] = "warning";
        argv[n++] = "--logfile";
        argv[n++] = "server.log";
    } else {
        argv[n++] = "memcached";
        argv[n++] = "-p";
        argv[n++] = port;
        argv[n++] = "-l";
        argv[n++] = "127.0.0.1";
        argv[n++] = "-U";
        argv[n++] = "0";
        argv[n++] = "-m";
        argv[n++] = "64";
        if (getuid() == 0) {
            argv[n++] = "-u";
            argv[n++] = "root";
        }
    }
    char extra[sizeof s->extra];
    snprintf(extra, sizeof extra, "%s", s->extra);
    for (char *tok = strtok(extra, " "); tok && n < 38; tok = strtok(NULL, " "))
        argv[n++] = tok;
    argv[n] = NULL;

    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* The server dies with the test program, whatever kills it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        if (chdir(s->dir) != 0)
            _exit(127);
        char log[300];
        snprintf(log, sizeof log, "%s/stdout.log", s->dir);
        FILE *f = freopen(log, "a", stdout);
        (void)f;
        f = freopen(log, "a", stderr);
        (void)f;
        execvp(argv[0], argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

int test_server_restart(test_server *s)
{
    s->pid = spawn(s);
    if (s->pid < 0) {
        s->pid = 0;
        return -1;
    }
    track(s, 1);
    if (test_wait_port(s->port, 10000) != 0) {
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid)
            fprintf(stderr, "harness: %s-server exited at start (see %s/stdout.log); is it installed?\n",
                    s->kind, s->dir);
        else
            fprintf(stderr, "harness: %s did not listen on port %d within 10 s\n", s->kind, s->port);
        test_server_kill(s);
        return -1;
    }
    return 0;
}

int test_server_start(test_server *s, const char *kind, const char *extra_args)
{
    memset(s, 0, sizeof *s);
    snprintf(s->kind, sizeof s->kind, "%s", kind);
    snprintf(s->extra, sizeof s->extra, "%s", extra_args ? extra_args : "");
    if (test_tmpdir(s->dir, sizeof s->dir) != 0)
        return -1;
    s->port = test_free_port();
    snprintf(s->url, sizeof s->url, "%s://127.0.0.1:%d", kind, s->port);
    if (s->port < 0 || test_server_restart(s) != 0) {
        test_rmtree(s->dir);
        return -1;
    }
    return 0;
}

static void end(test_server *s, int sig)
{
    if (!s->pid)
        return;
    kill(s->pid, sig);
    double until = test_now() + 5;
    int status;
    while (waitpid(s->pid, &status, WNOHANG) == 0) {
        if (test_now() > until) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &status, 0);
            break;
        }
        test_sleep(0.01);
    }
    s->pid = 0;
    track(s, 0);
}

void test_server_kill(test_server *s)
{
    end(s, SIGKILL);
}

void test_server_stop(test_server *s)
{
    end(s, SIGTERM);
    if (s->dir[0])
        test_rmtree(s->dir);
    s->dir[0] = '\0';
}

void *test_shared_alloc(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    memset(p, 0, size);
    return p;
}

void test_shared_free(void *p, size_t size)
{
    munmap(p, size);
}

int test_fork_n(int n, int (*fn)(int index, void *arg), void *arg, double timeout)
{
    pid_t *pids = calloc((size_t)n, sizeof *pids);
    int failed = 0;
    for (int i = 0; i < n; i++) {
        fflush(NULL);
        pids[i] = fork();
        if (pids[i] == 0) {
            /* The child has no use for the parent's list; freeing it keeps
             * valgrind's leak check in the child quiet. */
            free(pids);
            _exit(fn(i, arg));
        }
        if (pids[i] < 0)
            failed++;
    }
    double until = test_now() + timeout;
    for (int i = 0; i < n; i++) {
        if (pids[i] <= 0)
            continue;
        int status = 0;
        while (waitpid(pids[i], &status, WNOHANG) == 0) {
            if (test_now() > until) {
                kill(pids[i], SIGKILL);
                waitpid(pids[i], &status, 0);
                break;
            }
            test_sleep(0.005);
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed++;
    }
    free(pids);
    return failed;
}
