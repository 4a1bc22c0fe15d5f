/* SPDX-License-Identifier: BSD-2-Clause */
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <grp.h>
#include <pwd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Servers still running, stopped at exit. */
#define MAX_SERVERS 16
static test_server *running[MAX_SERVERS];
/* The process that started each one: Check forks a child per test, and a
 * child's exit() (a failed assertion) runs the atexit handlers it
 * inherited, which must stop the servers that test started (and remove
 * their directories) but not the parent's. */
static pid_t owner[MAX_SERVERS];
static int atexit_set;

static void stop_all(void)
{
    for (int i = 0; i < MAX_SERVERS; i++)
        if (running[i] && running[i]->pid && owner[i] == getpid())
            test_server_stop(running[i]);
}

static void track(test_server *s, int on)
{
    if (!atexit_set) {
        atexit(stop_all);
        atexit_set = 1;
    }
    for (int i = 0; i < MAX_SERVERS; i++) {
        if (on && running[i] == s) {
            owner[i] = getpid(); /* restarted, perhaps by another process */
            return;
        }
    }
    for (int i = 0; i < MAX_SERVERS; i++) {
        if (on && !running[i]) {
            running[i] = s;
            owner[i] = getpid();
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

void test_lost_record(anylock_lock *lock, anylock_status why, void *userdata)
{
    (void)lock;
    test_lost *rec = userdata;
    rec->at = test_now();
    atomic_store(&rec->why, (int)why);
    atomic_fetch_add(&rec->calls, 1);
}

int test_lost_wait(test_lost *rec, double limit)
{
    double until = test_now() + limit;
    while (!atomic_load(&rec->calls) && test_now() < until)
        test_sleep(0.005);
    return atomic_load(&rec->calls);
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

/* ---- PostgreSQL ----------------------------------------------------------
 *
 * A cluster made with initdb in the server's directory and run by the
 * postgres binary itself (not pg_ctl), so that the PID is the postmaster's.
 * PostgreSQL refuses to run as root: when the tests run as root, the
 * directory is given to the "postgres" user (Debian's package creates it)
 * and initdb and the server drop to it before exec. */

/* The directory of initdb and postgres: $ANYLOCK_PG_BINDIR, else the
 * newest /usr/lib/postgresql/N/bin (Debian's layout), else the PATH. */
static const char *pg_bindir(void)
{
    static char dir[256];
    const char *env = getenv("ANYLOCK_PG_BINDIR");
    if (env && *env)
        return env;
    if (dir[0])
        return dir;
    glob_t g;
    if (glob("/usr/lib/postgresql/*/bin/postgres", 0, NULL, &g) == 0 && g.gl_pathc > 0) {
        /* glob sorts: the last is the newest version (up to 99). */
        size_t best = 0;
        long bestv = -1;
        for (size_t i = 0; i < g.gl_pathc; i++) {
            long v = strtol(g.gl_pathv[i] + strlen("/usr/lib/postgresql/"), NULL, 10);
            if (v > bestv) {
                bestv = v;
                best = i;
            }
        }
        snprintf(dir, sizeof dir, "%.*s", (int)(strlen(g.gl_pathv[best]) - strlen("/postgres")), g.gl_pathv[best]);
    }
    globfree(&g);
    return dir;
}

/* In a child about to exec a PostgreSQL program: become the postgres user
 * when running as root.  0 on success. */
static int pg_drop_root(void)
{
    if (getuid() != 0)
        return 0;
    struct passwd *pw = getpwnam("postgres");
    if (!pw) {
        fprintf(stderr, "harness: running as root and there is no \"postgres\" user to run PostgreSQL as\n");
        return -1;
    }
    if (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0) {
        fprintf(stderr, "harness: cannot become the postgres user: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

/* Gives dir (and what is in it) to the postgres user when running as root. */
static int pg_chown(const char *dir)
{
    if (getuid() != 0)
        return 0;
    struct passwd *pw = getpwnam("postgres");
    if (!pw || chown(dir, pw->pw_uid, pw->pw_gid) != 0) {
        fprintf(stderr, "harness: cannot give %s to the postgres user\n", dir);
        return -1;
    }
    return 0;
}

/* initdb into s->dir/data, output in s->dir/initdb.log. */
static int pg_initdb(test_server *s)
{
    if (pg_chown(s->dir) != 0)
        return -1;
    char exe[512], data[300], log[300];
    snprintf(exe, sizeof exe, "%s%sinitdb", pg_bindir(), pg_bindir()[0] ? "/" : "");
    snprintf(data, sizeof data, "%s/data", s->dir);
    snprintf(log, sizeof log, "%s/initdb.log", s->dir);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (pg_drop_root() != 0)
            _exit(126);
        FILE *f = freopen(log, "a", stdout);
        (void)f;
        f = freopen(log, "a", stderr);
        (void)f;
        execlp(exe, exe, "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "-N",
               "--no-instructions", (char *)NULL);
        fprintf(stderr, "cannot run %s: %s\n", exe, strerror(errno));
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "harness: initdb failed (see %s); is postgresql installed?\n", log);
        return -1;
    }
    return 0;
}

/* Whether the postmaster says it is ready (the status line of
 * postmaster.pid), so that sessions are accepted, not only connections. */
static int pg_ready(const test_server *s)
{
    char path[300], buf[512];
    snprintf(path, sizeof path, "%s/data/postmaster.pid", s->dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, "ready") != NULL;
}

static pid_t spawn(test_server *s)
{
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    char *argv[40];
    int n = 0;
    int pg = !strcmp(s->kind, "postgres");
    char pg_exe[512], pg_data[300];
    if (pg) {
        snprintf(pg_exe, sizeof pg_exe, "%s%spostgres", pg_bindir(), pg_bindir()[0] ? "/" : "");
        snprintf(pg_data, sizeof pg_data, "%s/data", s->dir);
        argv[n++] = pg_exe;
        argv[n++] = "-D";
        argv[n++] = pg_data;
        argv[n++] = "-p";
        argv[n++] = port;
        argv[n++] = "-k";
        argv[n++] = s->dir;
        argv[n++] = "-c";
        argv[n++] = "listen_addresses=127.0.0.1";
        argv[n++] = "-c";
        argv[n++] = "max_connections=300";
        argv[n++] = "-c";
        argv[n++] = "fsync=off";
        argv[n++] = "-c";
        argv[n++] = "log_min_messages=warning";
    } else if (!strcmp(s->kind, "redis")) {
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
    } else if (!strcmp(s->kind, "etcd")) {
        static char name[16], client[64], peer[64], data[300];
        /* Static: argv points into them until the exec. */
        snprintf(name, sizeof name, "m%d", s->peer_port);
        snprintf(client, sizeof client, "http://127.0.0.1:%d", s->port);
        snprintf(peer, sizeof peer, "http://127.0.0.1:%d", s->peer_port);
        snprintf(data, sizeof data, "%s/data", s->dir);
        const char *args[] = {"etcd", "--name", name, "--data-dir", data, "--listen-client-urls", client,
                              "--advertise-client-urls", client, "--listen-peer-urls", peer,
                              "--initial-advertise-peer-urls", peer, "--initial-cluster", s->cluster,
                              "--initial-cluster-state", "new", "--initial-cluster-token", "anylock-test",
                              "--heartbeat-interval", "100", "--election-timeout", "1000", "--log-level", "warn"};
        for (size_t i = 0; i < sizeof args / sizeof *args; i++)
            argv[n++] = (char *)args[i];
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
        if (pg && pg_drop_root() != 0)
            _exit(126);
        /* The server dies with the test program, whatever kills it (set
         * after the change of user, which clears it). */
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
    int up = test_wait_port(s->port, 10000) == 0;
    if (up && !strcmp(s->kind, "postgres")) {
        double until = test_now() + 10;
        while (!pg_ready(s) && test_now() < until)
            test_sleep(0.01);
        up = pg_ready(s);
    }
    if (!up) {
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
    if (!strcmp(kind, "postgres"))
        snprintf(s->url, sizeof s->url, "postgres://postgres@127.0.0.1:%d/postgres", s->port);
    else
        snprintf(s->url, sizeof s->url, "%s://127.0.0.1:%d", kind, s->port);
    if (s->port < 0 || (!strcmp(kind, "postgres") && pg_initdb(s) != 0) || test_server_restart(s) != 0) {
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

/* PostgreSQL: SIGQUIT is the immediate shutdown (every session ends at once,
 * as in a crash), SIGINT the fast one (sessions are ended, then it stops);
 * SIGKILL would leave its backends running. */
void test_server_kill(test_server *s)
{
    end(s, !strcmp(s->kind, "postgres") ? SIGQUIT : SIGKILL);
}

void test_server_stop(test_server *s)
{
    end(s, !strcmp(s->kind, "postgres") ? SIGINT : SIGTERM);
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
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "child %d of %d (pid %ld) %s %d\n", i, n, (long)pids[i],
                    WIFEXITED(status) ? "exited with status" : "was killed by signal",
                    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
            failed++;
        }
    }
    free(pids);
    return failed;
}

/* ---- etcd clusters ------------------------------------------------------------ */

int test_http_post(int port, const char *path, const char *body, char *out, size_t size, double timeout)
{
    out[0] = '\0';
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = (time_t)timeout, .tv_usec = (suseconds_t)((timeout - (double)(time_t)timeout) * 1e6)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    char req[4096];
    int n = snprintf(req, sizeof req,
                     "POST %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s", path, strlen(body), body);
    if (n < 0 || (size_t)n >= sizeof req || write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    size_t len = 0;
    char *all = malloc(1 << 20);
    if (!all) {
        close(fd);
        return -1;
    }
    ssize_t got;
    while (len < (1 << 20) - 1 && (got = read(fd, all + len, (1 << 20) - 1 - len)) > 0)
        len += (size_t)got;
    all[len] = '\0';
    close(fd);
    int status = -1;
    if (sscanf(all, "HTTP/%*s %d", &status) != 1)
        status = -1;
    const char *b = strstr(all, "\r\n\r\n");
    snprintf(out, size, "%s", b ? b + 4 : "");
    free(all);
    return status;
}

/* The value of "field":"..." in json (the first), into out; 0 if found. */
static int json_str(const char *json, const char *field, char *out, size_t size)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":\"", field);
    const char *p = strstr(json, pat);
    if (!p)
        return -1;
    p += strlen(pat);
    const char *e = strchr(p, '"');
    if (!e || (size_t)(e - p) >= size)
        return -1;
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = '\0';
    return 0;
}

int test_etcd_leader(test_etcd *c, double timeout)
{
    double end = test_now() + timeout;
    do {
        char leader[32] = "", ids[TEST_ETCD_MAX][32];
        int agree = 1, seen = 0;
        for (int i = 0; i < c->n; i++) {
            ids[i][0] = '\0';
            if (!c->m[i].pid)
                continue;
            char body[2048], l[32];
            if (test_http_post(c->m[i].port, "/v3/maintenance/status", "{}", body, sizeof body, 0.5) != 200 ||
                json_str(body, "member_id", ids[i], sizeof ids[i]) != 0 || json_str(body, "leader", l, sizeof l) != 0) {
                agree = 0;
                continue;
            }
            if (!seen++)
                snprintf(leader, sizeof leader, "%s", l);
            else if (strcmp(leader, l))
                agree = 0;
        }
        if (agree && seen)
            for (int i = 0; i < c->n; i++)
                if (c->m[i].pid && !strcmp(ids[i], leader))
                    return i;
        test_sleep(0.05);
    } while (test_now() < end);
    return -1;
}

int test_etcd_start(test_etcd *c, int n)
{
    memset(c, 0, sizeof *c);
    if (n < 1 || n > TEST_ETCD_MAX)
        return -1;
    c->n = n;
    char cluster[400] = "";
    for (int i = 0; i < n; i++) {
        test_server *s = &c->m[i];
        snprintf(s->kind, sizeof s->kind, "etcd");
        struct stat st;
        const char *shm = "/dev/shm";
        if (stat(shm, &st) == 0 && S_ISDIR(st.st_mode) && access(shm, W_OK) == 0) {
            snprintf(s->dir, sizeof s->dir, "%s/anylock-etcd-XXXXXX", shm);
            if (!mkdtemp(s->dir))
                s->dir[0] = '\0';
        }
        if (!s->dir[0] && test_tmpdir(s->dir, sizeof s->dir) != 0)
            return -1;
        /* Ports are found free one at a time: no two may be the same. */
        for (int clash = 1; clash;) {
            s->port = test_free_port();
            s->peer_port = test_free_port();
            clash = s->port < 0 || s->peer_port < 0 || s->port == s->peer_port;
            for (int j = 0; j < i; j++)
                clash |= c->m[j].port == s->port || c->m[j].peer_port == s->port || c->m[j].port == s->peer_port ||
                         c->m[j].peer_port == s->peer_port;
        }
        snprintf(s->url, sizeof s->url, "etcd://127.0.0.1:%d", s->port);
        size_t len = strlen(cluster);
        snprintf(cluster + len, sizeof cluster - len, "%sm%d=http://127.0.0.1:%d", i ? "," : "", s->peer_port,
                 s->peer_port);
        len = strlen(c->endpoints);
        snprintf(c->endpoints + len, sizeof c->endpoints - len, "%s127.0.0.1:%d", i ? "," : "", s->port);
    }
    snprintf(c->url, sizeof c->url, "etcd://%.490s", c->endpoints);
    for (int i = 0; i < n; i++) {
        snprintf(c->m[i].cluster, sizeof c->m[i].cluster, "%s", cluster);
        if (test_server_restart(&c->m[i]) != 0) {
            test_etcd_stop(c);
            return -1;
        }
    }
    if (test_etcd_leader(c, 30) < 0) {
        fprintf(stderr, "harness: the etcd cluster elected no leader within 30 s (see %s/stdout.log)\n", c->m[0].dir);
        test_etcd_stop(c);
        return -1;
    }
    return 0;
}

void test_etcd_stop(test_etcd *c)
{
    for (int i = 0; i < c->n; i++) {
        if (c->m[i].pid)
            kill(c->m[i].pid, SIGCONT);
        test_server_stop(&c->m[i]);
    }
}

void test_etcd_kill(test_etcd *c, int i)
{
    test_server_kill(&c->m[i]);
}

int test_etcd_restart(test_etcd *c, int i)
{
    if (test_server_restart(&c->m[i]) != 0)
        return -1;
    return test_etcd_leader(c, 30) < 0 ? -1 : 0;
}

/* Whether every thread of pid is stopped (state T in /proc). */
static int all_stopped(pid_t pid)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%ld/task", (long)pid);
    DIR *d = opendir(dir);
    if (!d)
        return 1; /* gone */
    int all = 1;
    struct dirent *e;
    while (all && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[400], buf[512];
        snprintf(path, sizeof path, "%s/%s/stat", dir, e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *p = strrchr(buf, ')'); /* the state follows the command's name */
        all = p && (p[2] == 'T' || p[2] == 't');
    }
    closedir(d);
    return all;
}

int test_stop_process(pid_t pid, double limit)
{
    if (kill(pid, SIGSTOP) != 0)
        return -1;
    double until = test_now() + limit;
    while (!all_stopped(pid)) {
        if (test_now() > until)
            return -1;
        test_sleep(0.005);
    }
    return 0;
}

void test_etcd_pause(test_etcd *c, int i, int on)
{
    if (!c->m[i].pid)
        return;
    /* Stopped for sure, so that nothing the member does is counted after
     * the pause. */
    if (on)
        test_stop_process(c->m[i].pid, 5);
    else
        kill(c->m[i].pid, SIGCONT);
}
