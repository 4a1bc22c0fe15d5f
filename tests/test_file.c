/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * file:// passes the whole conformance suite, across 16 processes, in a
 * fresh temporary directory.  The tests below cover what is its own: URL
 * forms and bad URLs, directory and file modes, the name mapping, flock(1)
 * interoperability both ways (and under contention with anylock), a holder
 * killed with SIGKILL, the unlink race, the network-filesystem check, what
 * reset can and cannot do, fork(), shared locks and writer preference,
 * semaphores, tokens, the holder-enforced expiry, and holder metadata.
 */
#define _GNU_SOURCE /* pipe2 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../backends/builtin.h"
#include "anylock.h"
#include "conformance.h"
#include "harness.h"

#include "check_status.h"

static char tdir[512];

static void setup(void)
{
    ck_assert_int_eq(test_tmpdir(tdir, sizeof tdir), 0);
}

static void teardown(void)
{
    test_rmtree(tdir);
}

/* file://TDIR/sub[?query] */
static const char *url_of(const char *sub, const char *query)
{
    static char url[1024];
    snprintf(url, sizeof url, "file://%s/%s%s%s", tdir, sub, query ? "?" : "", query ? query : "");
    return url;
}

static const char *path_of(const char *rel)
{
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", tdir, rel);
    return path;
}

static void open_fails(const char *url, anylock_status want, const char *needle)
{
    anylock_client *c = NULL;
    anylock_status st = anylock_open(url, &c);
    ck_assert_msg(st == want, "open %s: got %s (%s), want %s", url, anylock_status_name(st), anylock_errmsg(c),
                  anylock_status_name(want));
    if (needle)
        ck_assert_msg(strstr(anylock_errmsg(c), needle), "message \"%s\" lacks \"%s\"", anylock_errmsg(c), needle);
    anylock_close(c);
}

static anylock_lock *lock_of(anylock_client *c, const char *name)
{
    anylock_lock *l = NULL;
    ck_status(anylock_lock_new(c, name, &l), ANYLOCK_OK);
    return l;
}

static mode_t mode_of(const char *path)
{
    struct stat sb;
    ck_assert_msg(stat(path, &sb) == 0, "%s: %s", path, strerror(errno));
    return sb.st_mode & 07777;
}

static ino_t ino_of(const char *path)
{
    struct stat sb;
    ck_assert_msg(stat(path, &sb) == 0, "%s: %s", path, strerror(errno));
    return sb.st_ino;
}

/* The names in dir (not "." or ".."), sorted, joined by spaces. */
static const char *dir_names(const char *dir)
{
    static char out[8192];
    char *names[256];
    int n = 0;
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    struct dirent *de;
    while ((de = readdir(d)) && n < 256)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            names[n++] = strdup(de->d_name);
    closedir(d);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (strcmp(names[j], names[i]) < 0) {
                char *t = names[i];
                names[i] = names[j];
                names[j] = t;
            }
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (i)
            strncat(out, " ", sizeof out - strlen(out) - 1);
        strncat(out, names[i], sizeof out - strlen(out) - 1);
        free(names[i]);
    }
    return out;
}

/* ---- running flock(1) ---- */

typedef struct child {
    pid_t pid;
    int to;   /* its stdin */
    int from; /* its stdout */
} child;

/* Starts `flock OPTS PATH sh -c SCRIPT` with pipes on stdin and stdout. */
static child flock_start(const char *opts, const char *path, const char *script)
{
    int in[2], out[2];
    ck_assert_int_eq(pipe2(in, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
    fflush(NULL);
    child ch;
    ch.pid = fork();
    ck_assert_int_ge(ch.pid, 0);
    if (ch.pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        if (opts && *opts)
            execlp("flock", "flock", opts, path, "sh", "-c", script, (char *)NULL);
        else
            execlp("flock", "flock", path, "sh", "-c", script, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    ch.to = in[1];
    ch.from = out[0];
    return ch;
}

/* Reads a line from the child within seconds: 1 if one came. */
static int child_line(child *ch, double seconds, char *buf, size_t size)
{
    size_t n = 0;
    double until = test_now() + seconds;
    while (n + 1 < size) {
        int left = (int)((until - test_now()) * 1000);
        if (left < 0)
            break;
        struct pollfd p = {.fd = ch->from, .events = POLLIN};
        if (poll(&p, 1, left) <= 0)
            break;
        ssize_t r = read(ch->from, buf + n, 1);
        if (r <= 0)
            break;
        if (buf[n] == '\n') {
            buf[n] = '\0';
            return 1;
        }
        n++;
    }
    buf[n] = '\0';
    return 0;
}

/* Lets the child's script finish (EOF on its stdin) and reaps it: its exit
 * status. */
static int child_end(child *ch)
{
    close(ch->to);
    int status = 0;
    waitpid(ch->pid, &status, 0);
    close(ch->from);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Runs flock(1) with args; its exit status. */
static int flock_run(const char *a1, const char *a2, const char *a3, const char *a4)
{
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        execlp("flock", "flock", a1, a2, a3, a4, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) != 127, "flock(1) could not be run");
    return WEXITSTATUS(status);
}

/* ---- URLs ---- */

START_TEST(t_url_forms)
{
    /* A missing directory is made, with its parents, mode 0700. */
    anylock_client *c = open_ok(url_of("a/b/locks", NULL));
    ck_assert_str_eq(anylock_client_scheme(c), "file");
    unsigned f = anylock_client_features(c);
    ck_assert_uint_eq(f & (ANYLOCK_FEATURE_SESSION | ANYLOCK_FEATURE_SHARED | ANYLOCK_FEATURE_SEMAPHORE |
                           ANYLOCK_FEATURE_TOKEN | ANYLOCK_FEATURE_LIST | ANYLOCK_FEATURE_RESET |
                           ANYLOCK_FEATURE_RESET_ALL | ANYLOCK_FEATURE_INSPECT | ANYLOCK_FEATURE_EXTEND),
                      ANYLOCK_FEATURE_SESSION | ANYLOCK_FEATURE_SHARED | ANYLOCK_FEATURE_SEMAPHORE |
                          ANYLOCK_FEATURE_TOKEN | ANYLOCK_FEATURE_LIST | ANYLOCK_FEATURE_RESET |
                          ANYLOCK_FEATURE_RESET_ALL | ANYLOCK_FEATURE_INSPECT | ANYLOCK_FEATURE_EXTEND);
    ck_assert_uint_eq(f & (ANYLOCK_FEATURE_FAIR | ANYLOCK_FEATURE_NO_EXCLUSION), 0);
    anylock_close(c);
    ck_assert_uint_eq(mode_of(path_of("a/b/locks")), 0700);
    ck_assert_uint_eq(mode_of(path_of("a/b")), 0700);
    /* Trailing slashes and file://localhost/ are the same directory. */
    char url[1100];
    snprintf(url, sizeof url, "file://localhost%s/a/b/locks//", tdir);
    c = open_ok(url);
    anylock_lock *l = lock_of(c, "x");
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    ck_assert_int_eq(access(path_of("a/b/locks/x"), F_OK), 0);
    anylock_lock_free(l);
    anylock_close(c);
    /* A session store: a lock has no expiry unless one is asked for. */
    c = open_ok(url_of("d", NULL));
    l = lock_of(c, "x");
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    anylock_info info;
    ck_status(anylock_inspect(c, "x", &info), ANYLOCK_OK);
    ck_assert(info.expires_in == ANYLOCK_FOREVER);
    anylock_lock_free(l);
    anylock_close(c);
}
END_TEST

START_TEST(t_bad_urls)
{
    open_fails("file://", ANYLOCK_URL_BAD_PATH, "file:///path/to/dir");
    open_fails("file:///", ANYLOCK_URL_BAD_PATH, NULL);
    open_fails("file://host/tmp/x", ANYLOCK_URL_BAD_HOST, "no host");
    open_fails("file://localhost:8080/tmp/x", ANYLOCK_URL_BAD_HOST, NULL);
    open_fails("file://user:secret@/tmp/x", ANYLOCK_URL_BAD_USERINFO, NULL);
    open_fails(url_of("d", "access=everyone"), ANYLOCK_URL_BAD_PARAM, "access=");
    open_fails(url_of("d", "network=maybe"), ANYLOCK_URL_BAD_PARAM, "network=");
    open_fails(url_of("d", "mode=group"), ANYLOCK_URL_UNKNOWN_PARAM, NULL);
    open_fails(url_of("d", "expires=soon"), ANYLOCK_URL_BAD_PARAM, NULL);
    /* The directory is a file. */
    FILE *f = fopen(path_of("plain"), "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    open_fails(url_of("plain", NULL), ANYLOCK_URL_BAD_PATH, path_of("plain"));
    open_fails(url_of("plain/sub", NULL), ANYLOCK_URL_BAD_PATH, NULL);
    /* A path too long for any file name in it. */
    char *big = malloc(3901);
    memset(big, 'p', 3900);
    big[0] = '/';
    big[3900] = '\0';
    char url[4000];
    snprintf(url, sizeof url, "file://%s", big);
    open_fails(url, ANYLOCK_URL_BAD_PATH, "too long");
    free(big);
}
END_TEST

/* ---- modes ---- */

START_TEST(t_access_modes)
{
    /* Whatever the umask, each access= gives its modes to what it makes. */
    mode_t old = umask(077);
    struct {
        const char *query;
        mode_t dir, file;
    } cases[] = {{NULL, 0700, 0600}, {"access=user", 0700, 0600}, {"access=group", 02770, 0660},
                 {"access=all", 01777, 0666}};
    for (int i = 0; i < 4; i++) {
        char sub[32];
        snprintf(sub, sizeof sub, "m%d", i);
        anylock_client *c = open_ok(url_of(sub, cases[i].query));
        anylock_lock *l = lock_of(c, "x");
        ck_status(anylock_acquire(l), ANYLOCK_OK);
        char p[1100];
        snprintf(p, sizeof p, "%s", path_of(sub));
        ck_assert_msg(mode_of(p) == cases[i].dir, "%s: dir %o", sub, (unsigned)mode_of(p));
        snprintf(p, sizeof p, "%s/.anylock", path_of(sub));
        ck_assert_msg(mode_of(p) == cases[i].dir, "%s: .anylock %o", sub, (unsigned)mode_of(p));
        snprintf(p, sizeof p, "%s/x", path_of(sub));
        ck_assert_msg(mode_of(p) == cases[i].file, "%s: lock file %o", sub, (unsigned)mode_of(p));
        snprintf(p, sizeof p, "%s/.anylock/x", path_of(sub));
        ck_assert_msg(mode_of(p) == cases[i].file, "%s: record file %o", sub, (unsigned)mode_of(p));
        anylock_lock_free(l);
        anylock_close(c);
    }
    umask(old);
    /* An existing directory keeps its mode: only what is made is chosen. */
    ck_assert_int_eq(mkdir(path_of("mine"), 0755), 0);
    anylock_client *c = open_ok(url_of("mine", "access=group"));
    anylock_close(c);
    ck_assert_uint_eq(mode_of(path_of("mine")), 0755);
}
END_TEST

/* Runs fn in a child as an unprivileged user (when root); its exit status. */
static int run_unprivileged(int (*fn)(void))
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) || setuid(65534)))
            _exit(99);
        _exit(fn());
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 98;
}

static char other_url[1100];

/* Another user, in a directory made with access=user: no records for it. */
static int other_user_acquire(void)
{
    anylock_client *c = NULL;
    anylock_lock *l = NULL;
    if (anylock_open(other_url, &c) != ANYLOCK_OK || anylock_lock_new(c, "x", &l) != ANYLOCK_OK)
        return 2;
    anylock_status st = anylock_try_acquire(l);
    int ok = st == ANYLOCK_ACCESS && strstr(anylock_lock_errmsg(l), ".anylock");
    if (!ok)
        fprintf(stderr, "other user: %s (%s)\n", anylock_status_name(st), anylock_lock_errmsg(l));
    anylock_lock_free(l);
    anylock_close(c);
    return ok ? 0 : 1;
}

/* The same with access=all: it may lock, and is shown as the holder. */
static int other_user_shares(void)
{
    anylock_client *c = NULL;
    anylock_lock *l = NULL;
    if (anylock_open(other_url, &c) != ANYLOCK_OK || anylock_lock_new(c, "y", &l) != ANYLOCK_OK ||
        anylock_lock_set_id(l, "nobody-1") != ANYLOCK_OK)
        return 2;
    anylock_status st = anylock_try_acquire(l);
    if (st != ANYLOCK_OK) {
        fprintf(stderr, "other user: %s (%s)\n", anylock_status_name(st), anylock_lock_errmsg(l));
        return 1;
    }
    anylock_info info;
    int ok = anylock_inspect(c, "y", &info) == ANYLOCK_OK && !strcmp(info.owner, "nobody-1");
    anylock_lock_free(l);
    anylock_close(c);
    return ok ? 0 : 3;
}

START_TEST(t_other_users)
{
    ck_assert_int_eq(chmod(tdir, 0755), 0);
    /* access=user: the directory is this user's alone; another user that can
     * still open it (here: made world-writable by hand) gets ACCESS, not a
     * lock it could not show. */
    anylock_client *c = open_ok(url_of("u", NULL));
    anylock_lock *l = lock_of(c, "x");
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    anylock_lock_free(l);
    anylock_close(c);
    ck_assert_int_eq(chmod(path_of("u"), 0777), 0);
    ck_assert_int_eq(chmod(path_of("u/x"), 0644), 0);
    snprintf(other_url, sizeof other_url, "%s", url_of("u", NULL));
    ck_assert_int_eq(run_unprivileged(other_user_acquire), 0);
    /* access=all: every user may lock, in a sticky directory, as /run/lock. */
    c = open_ok(url_of("all", "access=all"));
    anylock_close(c);
    snprintf(other_url, sizeof other_url, "%s", url_of("all", "access=all"));
    ck_assert_int_eq(run_unprivileged(other_user_shares), 0);
}
END_TEST

/* ---- names ---- */

typedef struct names_seen {
    char names[32][1100];
    int n;
} names_seen;

static int collect_names(const anylock_info *info, void *ud)
{
    names_seen *s = ud;
    if (s->n < 32)
        snprintf(s->names[s->n++], sizeof s->names[0], "%s", info->name);
    return 0;
}

static int seen(const names_seen *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->names[i], name))
            return 1;
    return 0;
}

START_TEST(t_name_mapping)
{
    anylock_client *c = open_ok(url_of("names", NULL));
    char longname[1025];
    memset(longname, 'n', 1024);
    longname[1024] = '\0';
    char slashy[400];
    memset(slashy, 'q', sizeof slashy);
    memcpy(slashy, "a/", 2);
    slashy[250] = '\0'; /* 250 bytes: its escaped form is 253, still a file name */
    struct {
        const char *name;
        const char *file; /* NULL: "%#" and a hash */
    } cases[] = {
        {"job", "job"},
        {"caf\xc3\xa9 \xe2\x82\xac-1.lock", "caf\xc3\xa9 \xe2\x82\xac-1.lock"},
        {".hidden", ".hidden"},
        {"a/b", "%a%2Fb"},
        {"/", "%%2F"},
        {".", "%."},
        {"..", "%.."},
        {"../escape", "%..%2Fescape"},
        {"%41", "%%2541"},
        {".anylock", "%.anylock"},
        {longname, NULL},
    };
    size_t n = sizeof cases / sizeof cases[0];
    anylock_lock *l[16];
    for (size_t i = 0; i < n; i++) {
        l[i] = lock_of(c, cases[i].name);
        ck_status(anylock_acquire(l[i]), ANYLOCK_OK);
        if (cases[i].file) {
            char p[1200];
            snprintf(p, sizeof p, "%s/%s", path_of("names"), cases[i].file);
            ck_assert_msg(access(p, F_OK) == 0, "%s: no file %s", cases[i].name, cases[i].file);
        }
    }
    anylock_lock *sl = lock_of(c, slashy);
    ck_status(anylock_acquire(sl), ANYLOCK_OK);
    /* Nothing outside the directory. */
    ck_assert_int_ne(access(path_of("escape"), F_OK), 0);
    /* The long name is a hash, 66 bytes. */
    const char *files = dir_names(path_of("names"));
    const char *h = strstr(files, "%#");
    ck_assert_ptr_nonnull(h);
    ck_assert_int_eq((int)strcspn(h, " "), 66);
    /* list gives every name back, the hashed one too. */
    names_seen s = {.n = 0};
    ck_status(anylock_list(c, collect_names, &s), ANYLOCK_OK);
    ck_assert_int_eq(s.n, (int)n + 1);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(seen(&s, cases[i].name), "list lacks \"%.40s\"", cases[i].name);
    ck_assert(seen(&s, slashy));
    /* A foreign file whose name no anylock name maps to is not listed. */
    int fd = open(path_of("names/%zz"), O_CREAT | O_WRONLY, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(flock(fd, LOCK_EX), 0);
    s.n = 0;
    ck_status(anylock_list(c, collect_names, &s), ANYLOCK_OK);
    ck_assert_int_eq(s.n, (int)n + 1);
    close(fd);
    for (size_t i = 0; i < n; i++)
        anylock_lock_free(l[i]);
    anylock_lock_free(sl);
    anylock_close(c);
}
END_TEST

START_TEST(t_plain_name_no_extra_files)
{
    /* A plain name is DIR/NAME, and nothing else appears beside it (the
     * records are in .anylock/). */
    anylock_client *c = open_ok(url_of("plain", NULL));
    anylock_lock *l = lock_of(c, "backup");
    ck_status(anylock_lock_set_mode(l, ANYLOCK_SHARED), ANYLOCK_OK);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    ck_assert_str_eq(dir_names(path_of("plain")), ".anylock backup");
    ck_assert_str_eq(dir_names(path_of("plain/.anylock")), ".anylock backup"); /* the token counter, a record */
    /* The lock file is never written. */
    struct stat sb;
    ck_assert_int_eq(stat(path_of("plain/backup"), &sb), 0);
    ck_assert_int_eq(sb.st_size, 0);
    anylock_lock_free(l);
    anylock_close(c);
}
END_TEST

START_TEST(t_prefixes)
{
    /* The default prefix stands for none; another one is part of the file
     * name, and list and reset-all keep to it. */
    anylock_client *dflt = open_ok(url_of("p", NULL));
    anylock_client *expl = open_ok(url_of("p", "prefix=lock:"));
    anylock_client *app = open_ok(url_of("p", "prefix=app/"));
    anylock_lock *a = lock_of(dflt, "job"), *b = lock_of(expl, "job"), *x = lock_of(app, "job");
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_status(anylock_try_acquire(b), ANYLOCK_BUSY); /* the same file */
    ck_status(anylock_acquire(x), ANYLOCK_OK);
    ck_assert_int_eq(access(path_of("p/job"), F_OK), 0);
    ck_assert_int_eq(access(path_of("p/%app%2Fjob"), F_OK), 0);
    names_seen s = {.n = 0};
    ck_status(anylock_list(app, collect_names, &s), ANYLOCK_OK);
    ck_assert_int_eq(s.n, 1);
    ck_assert_str_eq(s.names[0], "job");
    size_t count = 0;
    ck_status(anylock_reset_all(app, &count), ANYLOCK_OK);
    ck_assert_uint_eq(count, 1);
    int locked = 0;
    ck_status(anylock_locked(a, &locked), ANYLOCK_OK);
    ck_assert_int_eq(locked, 1);
    anylock_lock_free(a);
    anylock_lock_free(b);
    anylock_lock_free(x);
    anylock_close(dflt);
    anylock_close(expl);
    anylock_close(app);
}
END_TEST

/* ---- flock(1) ---- */

START_TEST(t_flock_waits_for_anylock)
{
    anylock_client *c = open_ok(url_of("i", NULL));
    anylock_lock *l = lock_of(c, "job");
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    const char *p = path_of("i/job");
    ck_assert_int_eq(flock_run("-n", p, "true", NULL), 1);
    ck_assert_int_eq(flock_run("-s", "-n", p, "true"), 1);
    /* A blocking flock(1) waits until anylock lets go. */
    child ch = flock_start(NULL, p, "echo got");
    char line[64];
    ck_assert_msg(!child_line(&ch, 0.5, line, sizeof line), "flock(1) ran while anylock held the lock");
    ck_status(anylock_release(l), ANYLOCK_OK);
    ck_assert_msg(child_line(&ch, 10, line, sizeof line), "flock(1) never got the lock");
    ck_assert_str_eq(line, "got");
    ck_assert_int_eq(child_end(&ch), 0);
    /* Shared anylock holders let flock -s in, and keep flock out. */
    ck_status(anylock_lock_set_mode(l, ANYLOCK_SHARED), ANYLOCK_OK);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    ck_assert_int_eq(flock_run("-s", "-n", p, "true"), 0);
    ck_assert_int_eq(flock_run("-n", p, "true", NULL), 1);
    anylock_lock_free(l);
    ck_assert_int_eq(flock_run("-n", p, "true", NULL), 0);
    anylock_close(c);
}
END_TEST

START_TEST(t_anylock_waits_for_flock)
{
    anylock_client *c = open_ok(url_of("j", NULL));
    const char *p = path_of("j/job");
    child ch = flock_start(NULL, p, "echo ready; read x || true");
    char line[64];
    ck_assert(child_line(&ch, 10, line, sizeof line));
    anylock_lock *l = lock_of(c, "job");
    ck_status(anylock_try_acquire(l), ANYLOCK_BUSY);
    /* Held by someone who wrote no record: shown held, owner unknown. */
    anylock_info info;
    ck_status(anylock_inspect(c, "job", &info), ANYLOCK_OK);
    ck_assert_int_eq(info.held, 1);
    ck_assert_str_eq(info.owner, "");
    ck_assert_int_eq(info.mode, ANYLOCK_EXCLUSIVE);
    /* A waiting acquire gets it as soon as flock(1)'s command ends. */
    ck_status(anylock_lock_set_timeout(l, 0.3), ANYLOCK_OK);
    ck_status(anylock_acquire(l), ANYLOCK_TIMEOUT);
    ck_status(anylock_lock_set_timeout(l, 20), ANYLOCK_OK);
    close(ch.to);
    ch.to = open("/dev/null", O_RDONLY);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    ck_assert_int_eq(child_end(&ch), 0);
    ck_status(anylock_release(l), ANYLOCK_OK);
    /* flock -s: anylock's shared acquire joins it, its exclusive one waits. */
    ch = flock_start("-s", p, "echo ready; read x || true");
    ck_assert(child_line(&ch, 10, line, sizeof line));
    ck_status(anylock_inspect(c, "job", &info), ANYLOCK_OK);
    ck_assert_int_eq(info.mode, ANYLOCK_SHARED);
    anylock_lock *e = lock_of(c, "job");
    ck_status(anylock_try_acquire(e), ANYLOCK_BUSY);
    anylock_lock *r = lock_of(c, "job");
    ck_status(anylock_lock_set_mode(r, ANYLOCK_SHARED), ANYLOCK_OK);
    ck_status(anylock_try_acquire(r), ANYLOCK_OK);
    anylock_lock_free(r);
    ck_assert_int_eq(child_end(&ch), 0);
    ck_status(anylock_try_acquire(e), ANYLOCK_OK);
    anylock_lock_free(e);
    anylock_lock_free(l);
    anylock_close(c);
}
END_TEST

/* anylock processes and flock(1) shells increment one counter file, each
 * under the lock: not one increment may be lost. */
#define MIX_ANYLOCK 6
#define MIX_SHELLS 4
#define MIX_ROUNDS 25

static char mix_url[1100];
static char mix_counter[1100];

static int mix_child(int index, void *arg)
{
    (void)arg;
    if (index >= MIX_ANYLOCK) {
        char script[4608];
        snprintf(script, sizeof script,
                 "i=0; while [ $i -lt %d ]; do flock %s/job sh -c 'v=$(cat %s); echo $((v+1)) >%s' || exit 1;"
                 " i=$((i+1)); done",
                 MIX_ROUNDS, path_of("mix"), mix_counter, mix_counter);
        execlp("sh", "sh", "-c", script, (char *)NULL);
        return 127;
    }
    anylock_client *c = NULL;
    anylock_lock *l = NULL;
    if (anylock_open(mix_url, &c) != ANYLOCK_OK || anylock_lock_new(c, "job", &l) != ANYLOCK_OK ||
        anylock_lock_set_timeout(l, 60) != ANYLOCK_OK)
        return 2;
    for (int i = 0; i < MIX_ROUNDS; i++) {
        if (anylock_acquire(l) != ANYLOCK_OK)
            return 3;
        FILE *f = fopen(mix_counter, "r");
        long v = 0;
        if (f) {
            if (fscanf(f, "%ld", &v) != 1)
                v = 0;
            fclose(f);
        }
        usleep(300);
        f = fopen(mix_counter, "w");
        if (!f)
            return 4;
        fprintf(f, "%ld\n", v + 1);
        fclose(f);
        if (anylock_release(l) != ANYLOCK_OK)
            return 5;
    }
    anylock_lock_free(l);
    anylock_close(c);
    return 0;
}

START_TEST(t_flock_mixed_contention)
{
    snprintf(mix_url, sizeof mix_url, "%s", url_of("mix", NULL));
    snprintf(mix_counter, sizeof mix_counter, "%s", path_of("counter"));
    anylock_close(open_ok(mix_url)); /* makes the directory */
    FILE *f = fopen(mix_counter, "w");
    fprintf(f, "0\n");
    fclose(f);
    ck_assert_int_eq(test_fork_n(MIX_ANYLOCK + MIX_SHELLS, mix_child, NULL, 120), 0);
    f = fopen(mix_counter, "r");
    long v = -1;
    ck_assert_int_eq(fscanf(f, "%ld", &v), 1);
    fclose(f);
    ck_assert_int_eq(v, (MIX_ANYLOCK + MIX_SHELLS) * MIX_ROUNDS);
}
END_TEST

/* ---- holders that die ---- */

/* Forks a child that takes name on url (exclusive, with expires seconds, 0
 * for none) and then waits forever; returns once it holds it. */
static pid_t holder_child(const char *url, const char *name, double expires)
{
    int ready[2];
    ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(ready[0]);
        anylock_client *c = NULL;
        anylock_lock *l = NULL;
        char ok = 'n';
        if (anylock_open(url, &c) == ANYLOCK_OK && anylock_lock_new(c, name, &l) == ANYLOCK_OK &&
            (expires == 0 || anylock_lock_set_expires(l, expires) == ANYLOCK_OK) &&
            anylock_lock_set_label(l, "holder-child") == ANYLOCK_OK && anylock_acquire(l) == ANYLOCK_OK)
            ok = 'y';
        if (write(ready[1], &ok, 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close(ready[1]);
    char ok = 0;
    ck_assert_int_eq(read(ready[0], &ok, 1), 1);
    close(ready[0]);
    ck_assert_int_eq(ok, 'y');
    return pid;
}

typedef struct waiter {
    anylock_client *c;
    const char *name;
    anylock_mode mode;
    double timeout;
    anylock_status st;
    double at;
    anylock_lock *lock; /* kept, held, when keep */
    int keep;
} waiter;

static void *waiter_main(void *arg)
{
    waiter *w = arg;
    anylock_lock *l = NULL;
    if (anylock_lock_new(w->c, w->name, &l) != ANYLOCK_OK) {
        w->st = ANYLOCK_INTERNAL;
        return NULL;
    }
    anylock_lock_set_mode(l, w->mode);
    anylock_lock_set_timeout(l, w->timeout);
    w->st = anylock_acquire(l);
    w->at = test_now();
    if (w->keep)
        w->lock = l;
    else
        anylock_lock_free(l);
    return NULL;
}

START_TEST(t_sigkilled_holder_frees_at_once)
{
    const char *url = url_of("kill", NULL);
    /* Once a killed holder is reaped, nothing of it is left: tried once,
     * its lock is free.  (Children are forked before this process starts
     * threads of its own.) */
    int status;
    pid_t pid = holder_child(url, "job2", 60);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    /* An expiry of 60 s: the waiter must not need it. */
    pid = holder_child(url, "job", 60);
    anylock_client *c = open_ok(url);
    anylock_lock *l = lock_of(c, "job2");
    ck_status(anylock_try_acquire(l), ANYLOCK_OK);
    anylock_lock_free(l);
    anylock_info info;
    ck_status(anylock_inspect(c, "job", &info), ANYLOCK_OK);
    ck_assert_int_eq(info.held, 1);
    ck_assert_int_eq(info.pid, pid);
    ck_assert_str_eq(info.label, "holder-child");
    ck_assert_msg(info.expires_in > 55 && info.expires_in <= 60, "expires_in %.3f", info.expires_in);
    waiter w = {c, "job", ANYLOCK_EXCLUSIVE, 30, ANYLOCK_INTERNAL, 0, NULL, 0};
    pthread_t t;
    pthread_create(&t, NULL, waiter_main, &w);
    test_sleep(0.2); /* let it block in the kernel (it gets the lock either way) */
    double killed = test_now();
    kill(pid, SIGKILL);
    pthread_join(t, NULL);
    ck_status(w.st, ANYLOCK_OK);
    waitpid(pid, &status, 0);
    double waited = w.at - killed;
    printf("file: a waiter had the lock %.1f ms after its holder was SIGKILLed\n", waited * 1000);
    ck_assert_msg(waited < 1.0, "the waiter took %.3f s (expiry 60 s): the kill did not free the lock", waited);
    anylock_close(c);
}
END_TEST

/* ---- the unlink race ---- */

/* A child that acquires job and reports each step on a pipe: 'g' when it
 * holds it; it releases when its stdin closes. */
typedef struct racer {
    pid_t pid;
    int to, from;
} racer;

static racer racer_start(const char *url)
{
    int in[2], out[2];
    ck_assert_int_eq(pipe2(in, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
    fflush(NULL);
    racer r;
    r.pid = fork();
    ck_assert_int_ge(r.pid, 0);
    if (r.pid == 0) {
        close(in[1]);
        close(out[0]);
        anylock_client *c = NULL;
        anylock_lock *l = NULL;
        if (anylock_open(url, &c) != ANYLOCK_OK || anylock_lock_new(c, "job", &l) != ANYLOCK_OK ||
            anylock_lock_set_timeout(l, 60) != ANYLOCK_OK)
            _exit(2);
        char go;
        if (read(in[0], &go, 1) != 1 || write(out[1], "w", 1) != 1)
            _exit(3);
        if (anylock_acquire(l) != ANYLOCK_OK)
            _exit(4);
        if (write(out[1], "g", 1) != 1)
            _exit(5);
        char x;
        while (read(in[0], &x, 1) > 0)
            ;
        int rc = anylock_release(l) == ANYLOCK_OK ? 0 : 6;
        anylock_lock_free(l);
        anylock_close(c);
        _exit(rc);
    }
    close(in[0]);
    close(out[1]);
    r.to = in[1];
    r.from = out[0];
    return r;
}

/* Lets the racer go for the lock; returns once it is about to acquire. */
static void racer_go(racer *r)
{
    ck_assert_int_eq(write(r->to, "g", 1), 1);
    char x = 0;
    ck_assert_int_eq(read(r->from, &x, 1), 1);
    ck_assert_int_eq(x, 'w');
}

/* 1 if the racer says it holds the lock within seconds. */
static int racer_got(racer *r, double seconds)
{
    struct pollfd p = {.fd = r->from, .events = POLLIN};
    if (poll(&p, 1, (int)(seconds * 1000)) <= 0)
        return 0;
    char x = 0;
    return read(r->from, &x, 1) == 1 && x == 'g';
}

static int racer_end(racer *r)
{
    close(r->to);
    int status = 0;
    waitpid(r->pid, &status, 0);
    close(r->from);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 100;
}

/* Whether some process waits in the kernel for a flock on inode ino
 * (/proc/locks shows waiters with "->"). */
static int someone_waits_on(ino_t ino)
{
    FILE *f = fopen("/proc/locks", "r");
    ck_assert_ptr_nonnull(f);
    char line[512];
    int found = 0;
    char needle[64];
    snprintf(needle, sizeof needle, ":%lu ", (unsigned long)ino);
    while (fgets(line, sizeof line, f))
        if (strstr(line, "->") && strstr(line, "FLOCK") && strstr(line, needle))
            found = 1;
    fclose(f);
    return found;
}

START_TEST(t_unlink_race)
{
    /* H holds the file; W waits on it in the kernel.  A script removes the
     * file (as `flock F cmd; rm -f F` scripts do) and flock(1) X goes for the
     * path, which is a new file now.  Whichever of W and X gets the new file
     * first, the other must wait: W never counts the removed file's lock as
     * the lock (it wakes on the removal and goes for the new file too; had it
     * been granted the old inode, its check of the inode would send it
     * there). */
    const char *url = url_of("race", NULL);
    racer w = racer_start(url); /* forked before this process has threads */
    anylock_client *c = open_ok(url);
    anylock_lock *h = lock_of(c, "job");
    ck_status(anylock_acquire(h), ANYLOCK_OK);
    const char *p = path_of("race/job");
    ino_t old = ino_of(p);
    racer_go(&w);
    double until = test_now() + 10;
    while (!someone_waits_on(old) && test_now() < until)
        test_sleep(0.005);
    if (!someone_waits_on(old)) {
        int status = 0;
        pid_t gone = waitpid(w.pid, &status, WNOHANG);
        ck_abort_msg("the waiter never waited in the kernel (%s, status %d)", gone ? "it exited" : "it runs",
                     WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
    ck_assert_int_eq(unlink(p), 0);
    child x = flock_start(NULL, p, "echo ready; read x || true");
    char line[64];
    int x_first = child_line(&x, 10, line, sizeof line);
    int w_first = !x_first && racer_got(&w, 10);
    ck_assert_msg(x_first || w_first, "neither the waiter nor flock(1) got the new file");
    /* H lets go of the removed file: that must not give it to W. */
    ck_status(anylock_release(h), ANYLOCK_NOT_HELD); /* its file was removed */
    if (x_first) {
        ck_assert_msg(!racer_got(&w, 0.5), "the waiter held the lock while flock(1) held the new file");
        ck_assert_int_eq(child_end(&x), 0);
        ck_assert_msg(racer_got(&w, 10), "the waiter never got the new file");
        ck_assert_int_eq(racer_end(&w), 0);
    } else {
        ck_assert_msg(!child_line(&x, 0.5, line, sizeof line), "flock(1) ran while the waiter held the new file");
        ck_assert_int_eq(racer_end(&w), 0);
        ck_assert_msg(child_line(&x, 10, line, sizeof line), "flock(1) never got the new file");
        ck_assert_int_eq(child_end(&x), 0);
    }
    printf("file: unlink race: %s got the new file first\n", x_first ? "flock(1)" : "the waiter");
    anylock_lock_free(h);
    anylock_close(c);
}
END_TEST

/* Many rounds of the race: each holder removes the lock file before it lets
 * go, as `flock F cmd; rm -f F` scripts do, so waiters keep waking on
 * removed inodes; an overlap detector shared by all must never see two
 * holders. */
#define RACE_PROCS 8
#define RACE_ROUNDS 25

typedef struct race_arena {
    atomic_int inside, overlaps, failures, rounds;
} race_arena;

static char race_url[1100];
static char race_path[1100];

static int race_child(int index, void *arg)
{
    (void)index;
    race_arena *ar = arg;
    anylock_client *c = NULL;
    anylock_lock *l = NULL;
    if (anylock_open(race_url, &c) != ANYLOCK_OK || anylock_lock_new(c, "job", &l) != ANYLOCK_OK ||
        anylock_lock_set_timeout(l, 60) != ANYLOCK_OK)
        return 2;
    for (int i = 0; i < RACE_ROUNDS; i++) {
        anylock_status st = anylock_acquire(l);
        if (st != ANYLOCK_OK) {
            fprintf(stderr, "race: %s (%s)\n", anylock_status_name(st), anylock_lock_errmsg(l));
            atomic_fetch_add(&ar->failures, 1);
            continue;
        }
        if (atomic_fetch_add(&ar->inside, 1) != 0)
            atomic_fetch_add(&ar->overlaps, 1);
        usleep(300);
        atomic_fetch_sub(&ar->inside, 1);
        atomic_fetch_add(&ar->rounds, 1);
        unlink(race_path);
        st = anylock_release(l); /* NOT_HELD: its own file is gone */
        if (st != ANYLOCK_OK && st != ANYLOCK_NOT_HELD)
            atomic_fetch_add(&ar->failures, 1);
    }
    anylock_lock_free(l);
    anylock_close(c);
    return 0;
}

START_TEST(t_unlink_race_many)
{
    snprintf(race_url, sizeof race_url, "%s", url_of("race2", NULL));
    snprintf(race_path, sizeof race_path, "%s", path_of("race2/job"));
    race_arena *ar = test_shared_alloc(sizeof *ar);
    ck_assert_int_eq(test_fork_n(RACE_PROCS, race_child, ar, 120), 0);
    ck_assert_int_eq(atomic_load(&ar->failures), 0);
    ck_assert_int_eq(atomic_load(&ar->overlaps), 0);
    ck_assert_int_eq(atomic_load(&ar->rounds), RACE_PROCS * RACE_ROUNDS);
    test_shared_free(ar, sizeof *ar);
}
END_TEST

/* ---- network filesystems ---- */

START_TEST(t_network_filesystems)
{
    const char *name = NULL;
    ck_assert_int_eq(anylock__file_fs_verdict(0x6969, &name), ANYLOCK__FS_NETWORK);
    ck_assert_str_eq(name, "NFS");
    ck_assert_int_eq(anylock__file_fs_verdict(0xFF534D42UL, &name), ANYLOCK__FS_NETWORK);
    ck_assert_int_eq(anylock__file_fs_verdict(0xFE534D42UL, &name), ANYLOCK__FS_NETWORK);
    ck_assert_int_eq(anylock__file_fs_verdict(0x517B, &name), ANYLOCK__FS_NETWORK);
    ck_assert_int_eq(anylock__file_fs_verdict(0x01021997, &name), ANYLOCK__FS_NETWORK);
    ck_assert_int_eq(anylock__file_fs_verdict(0x00C36400, &name), ANYLOCK__FS_NETWORK);
    ck_assert_int_eq(anylock__file_fs_verdict(0x65735546, &name), ANYLOCK__FS_FUSE);
    ck_assert_int_eq(anylock__file_fs_verdict(0xEF53, &name), ANYLOCK__FS_LOCAL);     /* ext4 */
    ck_assert_int_eq(anylock__file_fs_verdict(0x01021994, &name), ANYLOCK__FS_LOCAL); /* tmpfs */
    ck_assert_int_eq(anylock__file_fs_verdict(0x9123683E, &name), ANYLOCK__FS_LOCAL); /* btrfs */
    ck_assert_int_eq(anylock__file_fs_verdict(0x58465342, &name), ANYLOCK__FS_LOCAL); /* xfs */
    /* The real statfs path, on the local filesystems this machine has. */
    anylock_client *c = open_ok(url_of("net", "network=refuse"));
    anylock_close(c);
    c = open_ok(url_of("net", "network=allow"));
    anylock_close(c);
    char shm[600];
    snprintf(shm, sizeof shm, "file:///dev/shm/anylock-test-%ld", (long)getpid());
    c = open_ok(shm);
    anylock_lock *l = lock_of(c, "x");
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    anylock_lock_free(l);
    anylock_close(c);
    test_rmtree(shm + strlen("file://"));
}
END_TEST

/* ---- reset ---- */

START_TEST(t_reset_held)
{
    /* A held lock: reset removes its file.  The holder (no expiry, no
     * renewal) hears of it at once, through its watcher; a new acquirer
     * gets a new file. */
    anylock_client *c = open_ok(url_of("r", NULL)), *c2 = open_ok(url_of("r", NULL));
    anylock_lock *a = lock_of(c, "job");
    test_lost lost = {0};
    ck_status(anylock_lock_set_lost_callback(a, test_lost_record, &lost), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    const char *p = path_of("r/job");
    double t0 = test_now();
    ck_status(anylock_reset(c2, "job"), ANYLOCK_OK);
    ck_assert_int_ne(access(p, F_OK), 0);
    test_lost_wait(&lost, 10);
    ck_assert_int_eq(atomic_load(&lost.calls), 1);
    ck_assert_int_eq(atomic_load(&lost.why), ANYLOCK_NOT_HELD);
    printf("file: the holder heard of the reset after %.1f ms\n", (test_now() - t0) * 1000);
    ck_assert_int_eq(anylock_lock_held(a), 0);
    ck_status(anylock_release(a), ANYLOCK_NOT_HELD);
    anylock_lock *b = lock_of(c2, "job");
    ck_status(anylock_try_acquire(b), ANYLOCK_OK);
    ck_assert_int_eq(access(p, F_OK), 0); /* a new file (its inode number may be the old one's, reused) */
    anylock_lock_free(b);
    anylock_lock_free(a);
    anylock_close(c);
    anylock_close(c2);
}
END_TEST

START_TEST(t_reset_free_leaves_file)
{
    /* A free lock: reset leaves its file alone (removing it could let two
     * flock(1) users in), and says nothing was held. */
    anylock_client *c = open_ok(url_of("f", NULL));
    anylock_lock *a = lock_of(c, "job");
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_status(anylock_release(a), ANYLOCK_OK);
    const char *p = path_of("f/job");
    ino_t ino = ino_of(p);
    ck_status(anylock_reset(c, "job"), ANYLOCK_OK);
    ck_assert_uint_eq(ino_of(p), ino);
    /* reset-all counts the held ones and leaves the free files. */
    anylock_lock *b = lock_of(c, "other");
    ck_status(anylock_acquire(b), ANYLOCK_OK);
    size_t count = 0;
    ck_status(anylock_reset_all(c, &count), ANYLOCK_OK);
    ck_assert_uint_eq(count, 1);
    ck_assert_uint_eq(ino_of(p), ino);
    ck_assert_int_ne(access(path_of("f/other"), F_OK), 0);
    anylock_lock_free(a);
    anylock_lock_free(b);
    anylock_close(c);
}
END_TEST

START_TEST(t_reset_cannot_stop_flock)
{
    /* What reset cannot do: a flock(1) holder keeps its lock on the removed
     * file and goes on running, unaware; a new holder runs beside it. */
    anylock_client *c = open_ok(url_of("g", NULL));
    const char *p = path_of("g/job");
    child ch = flock_start(NULL, p, "echo ready; read x || true; echo still-running");
    char line[64];
    ck_assert(child_line(&ch, 10, line, sizeof line));
    ck_status(anylock_reset(c, "job"), ANYLOCK_OK);
    anylock_lock *l = lock_of(c, "job");
    ck_status(anylock_try_acquire(l), ANYLOCK_OK);
    ck_assert_int_eq(kill(ch.pid, 0), 0);
    ck_assert_int_eq(write(ch.to, "\n", 1), 1);
    ck_assert(child_line(&ch, 10, line, sizeof line));
    ck_assert_str_eq(line, "still-running");
    ck_assert_int_eq(child_end(&ch), 0);
    anylock_lock_free(l);
    anylock_close(c);
}
END_TEST

START_TEST(t_reset_wakes_semaphore_and_shared_waiters)
{
    /* A waiting writer woken by a reset of the shared holders' file. */
    anylock_client *c = open_ok(url_of("w", NULL)), *c2 = open_ok(url_of("w", NULL));
    anylock_lock *r = lock_of(c, "job");
    ck_status(anylock_lock_set_mode(r, ANYLOCK_SHARED), ANYLOCK_OK);
    ck_status(anylock_acquire(r), ANYLOCK_OK);
    waiter w = {c2, "job", ANYLOCK_EXCLUSIVE, 30, ANYLOCK_INTERNAL, 0, NULL, 0};
    pthread_t t;
    pthread_create(&t, NULL, waiter_main, &w);
    test_sleep(0.2);
    double t0 = test_now();
    ck_status(anylock_reset(c2, "job"), ANYLOCK_OK);
    pthread_join(t, NULL);
    ck_status(w.st, ANYLOCK_OK);
    ck_assert_msg(w.at - t0 < 5, "the writer took %.3f s after the reset", w.at - t0);
    anylock_lock_free(r);
    anylock_close(c);
    anylock_close(c2);
}
END_TEST

/* ---- fork ---- */

START_TEST(t_fork)
{
    const char *url = url_of("fork", NULL);
    anylock_client *c = open_ok(url), *c2 = open_ok(url);
    anylock_lock *l = lock_of(c, "job"), *other = lock_of(c2, "job");
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    /* A child forked while the lock is held has the descriptor; the core
     * refuses every call there. */
    int go[2];
    ck_assert_int_eq(pipe2(go, O_CLOEXEC), 0);
    fflush(NULL);
    pid_t kid = fork();
    ck_assert_int_ge(kid, 0);
    if (kid == 0) {
        close(go[1]);
        int rc = anylock_release(l) == ANYLOCK_FORKED ? 0 : 1;
        char x;
        while (read(go[0], &x, 1) > 0)
            ;
        /* Report by exec: what the child inherited stays the parent's (the
         * core frees no backend state in a child), and under valgrind an
         * exec ends the image without calling that a leak. */
        execlp("sh", "sh", "-c", rc ? "exit 1" : "exit 0", (char *)NULL);
        _exit(2);
    }
    close(go[0]);
    /* Release in the parent frees it at once, the child's copy
     * notwithstanding (LOCK_UN applies to the shared file description). */
    ck_status(anylock_release(l), ANYLOCK_OK);
    ck_status(anylock_try_acquire(other), ANYLOCK_OK);
    ck_status(anylock_release(other), ANYLOCK_OK);
    close(go[1]);
    int status = 0;
    waitpid(kid, &status, 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child's call was not refused");
    anylock_lock_free(l);
    anylock_lock_free(other);
    anylock_close(c);
    anylock_close(c2);
}
END_TEST

/* A process that takes job, forks a child (which execs `sleep` when exec,
 * else just waits) and reports both pids. */
static void forking_holder(const char *url, int exec, pid_t *holder, pid_t *kid)
{
    int p[2];
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    fflush(NULL);
    *holder = fork();
    ck_assert_int_ge(*holder, 0);
    if (*holder == 0) {
        close(p[0]);
        anylock_client *c = NULL;
        anylock_lock *l = NULL;
        if (anylock_open(url, &c) != ANYLOCK_OK || anylock_lock_new(c, "job", &l) != ANYLOCK_OK ||
            anylock_acquire(l) != ANYLOCK_OK)
            _exit(2);
        pid_t k = fork();
        if (k == 0) {
            if (exec)
                execlp("sleep", "sleep", "60", (char *)NULL);
            for (;;)
                pause();
        }
        if (write(p[1], &k, sizeof k) != (ssize_t)sizeof k)
            _exit(3);
        for (;;)
            pause();
    }
    close(p[1]);
    ck_assert_int_eq(read(p[0], kid, sizeof *kid), (ssize_t)sizeof *kid);
    close(p[0]);
}

START_TEST(t_fork_child_keeps_lock)
{
    const char *url = url_of("fork2", NULL);
    anylock_client *c = open_ok(url);
    anylock_lock *l = lock_of(c, "job");
    /* A forked child that did not exec keeps the lock alive after its
     * parent, the holder, dies... */
    pid_t holder, kid;
    int status;
    forking_holder(url, 0, &holder, &kid);
    kill(holder, SIGKILL);
    waitpid(holder, &status, 0);
    ck_status(anylock_try_acquire(l), ANYLOCK_BUSY);
    /* ...until it exits. */
    kill(kid, SIGKILL);
    double until = test_now() + 10;
    anylock_status st;
    while ((st = anylock_try_acquire(l)) == ANYLOCK_BUSY && test_now() < until)
        test_sleep(0.01); /* the orphan is reaped by init, not by us */
    ck_status(st, ANYLOCK_OK);
    anylock_lock_free(l);
    anylock_close(c); /* its threads end: the next children are forked from one thread */
    /* A child that execs does not: the descriptors are close-on-exec. */
    forking_holder(url, 1, &holder, &kid);
    c = open_ok(url);
    l = lock_of(c, "job");
    until = test_now() + 10;
    char exe[64], target[256] = "";
    snprintf(exe, sizeof exe, "/proc/%ld/exe", (long)kid);
    while (test_now() < until) { /* until the child has exec'd */
        ssize_t n = readlink(exe, target, sizeof target - 1);
        target[n > 0 ? n : 0] = '\0';
        if (strstr(target, "sleep"))
            break;
        test_sleep(0.005);
    }
    ck_assert_msg(strstr(target, "sleep"), "the child never exec'd sleep");
    kill(holder, SIGKILL);
    waitpid(holder, &status, 0);
    ck_assert_int_eq(kill(kid, 0), 0);
    ck_status(anylock_try_acquire(l), ANYLOCK_OK);
    kill(kid, SIGKILL);
    anylock_lock_free(l);
    anylock_close(c);
}
END_TEST

/* ---- shared locks and writer preference ---- */

START_TEST(t_writer_preference)
{
    anylock_client *c = open_ok(url_of("rw", NULL));
    anylock_lock *r1 = lock_of(c, "job"), *r2 = lock_of(c, "job");
    ck_status(anylock_lock_set_mode(r1, ANYLOCK_SHARED), ANYLOCK_OK);
    ck_status(anylock_lock_set_mode(r2, ANYLOCK_SHARED), ANYLOCK_OK);
    ck_status(anylock_acquire(r1), ANYLOCK_OK);
    ck_status(anylock_try_acquire(r2), ANYLOCK_OK); /* readers share */
    ck_status(anylock_release(r2), ANYLOCK_OK);
    anylock_info info;
    ck_status(anylock_inspect(c, "job", &info), ANYLOCK_OK);
    ck_assert_int_eq(info.mode, ANYLOCK_SHARED);
    ck_assert_uint_eq(info.holders, 1);
    /* A writer waits for r1... */
    waiter w = {c, "job", ANYLOCK_EXCLUSIVE, 30, ANYLOCK_INTERNAL, 0, NULL, 1};
    pthread_t t;
    pthread_create(&t, NULL, waiter_main, &w);
    /* ...and from the moment it waits (it holds the gate), a new reader
     * waits behind it although flock(2) alone would let it in. */
    double until = test_now() + 10;
    anylock_status st;
    while ((st = anylock_try_acquire(r2)) == ANYLOCK_OK && test_now() < until) {
        ck_status(anylock_release(r2), ANYLOCK_OK);
        test_sleep(0.005);
    }
    ck_status(st, ANYLOCK_BUSY);
    waiter w2 = {c, "job", ANYLOCK_SHARED, 30, ANYLOCK_INTERNAL, 0, NULL, 0};
    pthread_t t2;
    pthread_create(&t2, NULL, waiter_main, &w2);
    test_sleep(0.2);
    ck_status(anylock_release(r1), ANYLOCK_OK);
    pthread_join(t, NULL);
    ck_status(w.st, ANYLOCK_OK);
    test_sleep(0.1);
    double released = test_now();
    anylock_lock_free(w.lock);
    pthread_join(t2, NULL);
    ck_status(w2.st, ANYLOCK_OK);
    ck_assert_msg(w2.at >= released, "the reader got in before the waiting writer was done");
    anylock_lock_free(r1);
    anylock_lock_free(r2);
    anylock_close(c);
}
END_TEST

/* Readers that overlap without a gap: with flock(2) alone a writer would
 * wait for ever; with the gate it waits for the readers inside only. */
static atomic_int readers_stop;

static void *reader_loop(void *arg)
{
    anylock_client *c = arg;
    anylock_lock *l = NULL;
    if (anylock_lock_new(c, "job", &l) != ANYLOCK_OK)
        return NULL;
    anylock_lock_set_mode(l, ANYLOCK_SHARED);
    anylock_lock_set_timeout(l, 30);
    while (!atomic_load(&readers_stop)) {
        if (anylock_acquire(l) != ANYLOCK_OK)
            break;
        test_sleep(0.05);
        anylock_release(l);
    }
    anylock_lock_free(l);
    return NULL;
}

START_TEST(t_writer_not_starved)
{
    anylock_client *c = open_ok(url_of("starve", NULL));
    atomic_store(&readers_stop, 0);
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        pthread_create(&t[i], NULL, reader_loop, c);
        test_sleep(0.0125);
    }
    test_sleep(0.2);
    anylock_lock *wl = lock_of(c, "job");
    ck_status(anylock_lock_set_timeout(wl, 10), ANYLOCK_OK);
    double t0 = test_now();
    ck_status(anylock_acquire(wl), ANYLOCK_OK);
    double waited = test_now() - t0;
    printf("file: a writer among 4 overlapping readers (50 ms each) waited %.1f ms\n", waited * 1000);
    ck_assert_msg(waited < 3, "the writer waited %.3f s for readers that hold 50 ms each", waited);
    anylock_lock_free(wl);
    atomic_store(&readers_stop, 1);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    anylock_close(c);
}
END_TEST

/* ---- semaphores ---- */

#define SEM_PROCS 8
#define SEM_ROUNDS 8

typedef struct sem_arena {
    atomic_int inside, most, failures;
} sem_arena;

static char sem_url[1100];
static unsigned sem_permits;

static int sem_child(int index, void *arg)
{
    (void)index;
    sem_arena *ar = arg;
    anylock_client *c = NULL;
    anylock_lock *l = NULL;
    if (anylock_open(sem_url, &c) != ANYLOCK_OK || anylock_lock_new(c, "pool", &l) != ANYLOCK_OK ||
        anylock_lock_set_permits(l, sem_permits) != ANYLOCK_OK || anylock_lock_set_timeout(l, 60) != ANYLOCK_OK)
        return 2;
    for (int i = 0; i < SEM_ROUNDS; i++) {
        anylock_status st = anylock_acquire(l);
        if (st != ANYLOCK_OK) {
            fprintf(stderr, "semaphore: %s (%s)\n", anylock_status_name(st), anylock_lock_errmsg(l));
            atomic_fetch_add(&ar->failures, 1);
            continue;
        }
        int now = atomic_fetch_add(&ar->inside, 1) + 1;
        int most = atomic_load(&ar->most);
        while (now > most && !atomic_compare_exchange_weak(&ar->most, &most, now))
            ;
        usleep(20000);
        atomic_fetch_sub(&ar->inside, 1);
        if (anylock_release(l) != ANYLOCK_OK)
            atomic_fetch_add(&ar->failures, 1);
    }
    anylock_lock_free(l);
    anylock_close(c);
    return 0;
}

START_TEST(t_semaphore)
{
    snprintf(sem_url, sizeof sem_url, "%s", url_of("sem", NULL));
    unsigned ns[] = {1, 3};
    for (int k = 0; k < 2; k++) {
        sem_permits = ns[k];
        sem_arena *ar = test_shared_alloc(sizeof *ar);
        ck_assert_int_eq(test_fork_n(SEM_PROCS, sem_child, ar, 120), 0);
        ck_assert_int_eq(atomic_load(&ar->failures), 0);
        ck_assert_int_eq(atomic_load(&ar->most), (int)ns[k]);
        test_shared_free(ar, sizeof *ar);
    }
    /* Mixed modes on one name. */
    anylock_client *c = open_ok(sem_url);
    anylock_lock *a = lock_of(c, "pool"), *b = lock_of(c, "pool"), *p = lock_of(c, "pool");
    ck_status(anylock_lock_set_permits(a, 2), ANYLOCK_OK);
    ck_status(anylock_lock_set_permits(b, 3), ANYLOCK_OK);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_status(anylock_try_acquire(b), ANYLOCK_MODE_CONFLICT);
    ck_status(anylock_try_acquire(p), ANYLOCK_MODE_CONFLICT);
    ck_status(anylock_lock_set_mode(p, ANYLOCK_SHARED), ANYLOCK_OK);
    ck_status(anylock_try_acquire(p), ANYLOCK_MODE_CONFLICT);
    anylock_info info;
    ck_status(anylock_inspect(c, "pool", &info), ANYLOCK_OK);
    ck_assert_int_eq(info.mode, ANYLOCK_SEMAPHORE);
    ck_assert_uint_eq(info.permits, 2);
    ck_status(anylock_release(a), ANYLOCK_OK);
    ck_status(anylock_try_acquire(p), ANYLOCK_OK);
    ck_status(anylock_try_acquire(b), ANYLOCK_MODE_CONFLICT);
    anylock_lock_free(a);
    anylock_lock_free(b);
    anylock_lock_free(p);
    anylock_close(c);
}
END_TEST

START_TEST(t_semaphore_sigkilled_permit)
{
    /* A dead permit holder's permit is free at once; a waiter gets it. */
    const char *url = url_of("semk", NULL);
    int ready[2];
    ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        anylock_client *c = NULL;
        anylock_lock *l = NULL;
        char ok = 'n';
        if (anylock_open(url, &c) == ANYLOCK_OK && anylock_lock_new(c, "pool", &l) == ANYLOCK_OK &&
            anylock_lock_set_permits(l, 1) == ANYLOCK_OK && anylock_acquire(l) == ANYLOCK_OK)
            ok = 'y';
        if (write(ready[1], &ok, 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close(ready[1]);
    char ok = 0;
    ck_assert_int_eq(read(ready[0], &ok, 1), 1);
    ck_assert_int_eq(ok, 'y');
    anylock_client *c = open_ok(url);
    anylock_lock *l = lock_of(c, "pool");
    ck_status(anylock_lock_set_permits(l, 1), ANYLOCK_OK);
    ck_status(anylock_try_acquire(l), ANYLOCK_BUSY);
    anylock_lock_free(l);
    waiter w = {c, "pool", ANYLOCK_SEMAPHORE, 30, ANYLOCK_INTERNAL, 0, NULL, 0};
    (void)w;
    /* waiter_main sets a mode, not permits: wait here instead. */
    l = lock_of(c, "pool");
    ck_status(anylock_lock_set_permits(l, 1), ANYLOCK_OK);
    ck_status(anylock_lock_set_timeout(l, 30), ANYLOCK_OK);
    double t0 = test_now();
    kill(pid, SIGKILL);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    double waited = test_now() - t0;
    ck_assert_msg(waited < 2, "the permit came %.3f s after its holder was killed", waited);
    int status;
    waitpid(pid, &status, 0);
    anylock_lock_free(l);
    anylock_close(c);
}
END_TEST

/* ---- tokens, expiry, metadata ---- */

START_TEST(t_tokens)
{
    anylock_client *c = open_ok(url_of("tok", NULL)), *c2 = open_ok(url_of("tok", NULL));
    anylock_lock *a = lock_of(c, "job"), *b = lock_of(c2, "job");
    uint64_t last = 0, t = 0;
    for (int i = 0; i < 5; i++) {
        anylock_lock *l = i % 2 ? a : b;
        ck_status(anylock_acquire(l), ANYLOCK_OK);
        ck_status(anylock_lock_token(l, &t), ANYLOCK_OK);
        ck_assert_msg(t > last, "token %llu after %llu", (unsigned long long)t, (unsigned long long)last);
        last = t;
        ck_status(anylock_release(l), ANYLOCK_OK);
    }
    /* Another name, and a reset (a new lock file), go on with the store's
     * one sequence. */
    anylock_lock *o = lock_of(c, "other");
    ck_status(anylock_acquire(o), ANYLOCK_OK);
    ck_status(anylock_lock_token(o, &t), ANYLOCK_OK);
    ck_assert(t > last);
    last = t;
    anylock_lock_free(o);
    ck_status(anylock_acquire(a), ANYLOCK_OK);
    ck_status(anylock_reset(c2, "job"), ANYLOCK_OK);
    ck_status(anylock_acquire(b), ANYLOCK_OK);
    ck_status(anylock_lock_token(b, &t), ANYLOCK_OK);
    ck_assert(t > last + 1);
    anylock_lock_free(a);
    anylock_lock_free(b);
    anylock_close(c);
    anylock_close(c2);
}
END_TEST

START_TEST(t_expiry_is_the_holders)
{
    /* An expiry is enforced by the holder's own process: a holder stopped
     * (SIGSTOP) past it keeps the lock, and lets go once it runs again. */
    const char *url = url_of("exp", NULL);
    pid_t pid = holder_child(url, "job", 0.5);
    kill(pid, SIGSTOP);
    anylock_client *c = open_ok(url);
    anylock_lock *l = lock_of(c, "job");
    test_sleep(1.2);
    ck_status(anylock_try_acquire(l), ANYLOCK_BUSY);
    anylock_info info;
    ck_status(anylock_inspect(c, "job", &info), ANYLOCK_OK);
    ck_assert(info.held && info.expires_in == 0); /* its expiry has passed */
    kill(pid, SIGCONT);
    ck_status(anylock_lock_set_timeout(l, 10), ANYLOCK_OK);
    double t0 = test_now();
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    ck_assert_msg(test_now() - t0 < 5, "the resumed holder kept its expired lock %.3f s", test_now() - t0);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    anylock_lock_free(l);
    anylock_close(c);
}
END_TEST

START_TEST(t_extend_and_inspect)
{
    anylock_client *c = open_ok(url_of("ext", NULL));
    anylock_lock *l = lock_of(c, "job");
    ck_status(anylock_lock_set_expires(l, 5), ANYLOCK_OK);
    ck_status(anylock_lock_set_label(l, "nightly backup"), ANYLOCK_OK);
    ck_status(anylock_acquire(l), ANYLOCK_OK);
    ck_status(anylock_extend(l, 100), ANYLOCK_OK);
    anylock_info info;
    ck_status(anylock_inspect(c, "job", &info), ANYLOCK_OK);
    ck_assert_msg(info.expires_in > 95 && info.expires_in <= 100, "expires_in %.3f", info.expires_in);
    ck_assert_int_eq(info.pid, getpid());
    ck_assert_str_eq(info.label, "nightly backup");
    ck_assert_str_eq(info.owner, anylock_lock_id(l));
    /* After a reset, extend (what renewal does) says the lock is gone. */
    anylock_client *c2 = open_ok(url_of("ext", NULL));
    ck_status(anylock_reset(c2, "job"), ANYLOCK_OK);
    ck_status(anylock_extend(l, 100), ANYLOCK_NOT_HELD);
    anylock_lock_free(l);
    anylock_close(c);
    anylock_close(c2);
}
END_TEST

static Suite *file_suite(void)
{
    Suite *s = suite_create("file");
    test_case tests[] = {
        {"url_forms", t_url_forms},
        {"bad_urls", t_bad_urls},
        {"access_modes", t_access_modes},
        {"other_users", t_other_users},
        {"name_mapping", t_name_mapping},
        {"plain_name_no_extra_files", t_plain_name_no_extra_files},
        {"prefixes", t_prefixes},
        {"flock_waits_for_anylock", t_flock_waits_for_anylock},
        {"anylock_waits_for_flock", t_anylock_waits_for_flock},
        {"flock_mixed_contention", t_flock_mixed_contention},
        {"sigkilled_holder_frees_at_once", t_sigkilled_holder_frees_at_once},
        {"unlink_race", t_unlink_race},
        {"unlink_race_many", t_unlink_race_many},
        {"network_filesystems", t_network_filesystems},
        {"reset_held", t_reset_held},
        {"reset_free_leaves_file", t_reset_free_leaves_file},
        {"reset_cannot_stop_flock", t_reset_cannot_stop_flock},
        {"reset_wakes_waiters", t_reset_wakes_semaphore_and_shared_waiters},
        {"fork", t_fork},
        {"fork_child_keeps_lock", t_fork_child_keeps_lock},
        {"writer_preference", t_writer_preference},
        {"writer_not_starved", t_writer_not_starved},
        {"semaphore", t_semaphore},
        {"semaphore_sigkilled_permit", t_semaphore_sigkilled_permit},
        {"tokens", t_tokens},
        {"expiry_is_the_holders", t_expiry_is_the_holders},
        {"extend_and_inspect", t_extend_and_inspect},
    };
    add_test_cases(s, tests, sizeof tests / sizeof tests[0], setup, teardown, 120);
    return s;
}

static char dir[512];
static char url[1024];

int main(void)
{
    if (test_tmpdir(dir, sizeof dir)) {
        fprintf(stderr, "cannot make a temporary directory\n");
        return 1;
    }
    snprintf(url, sizeof url, "file://%s/locks", dir);
    static conformance_config cfg = {
        .label = "file",
        .excludes = 1,
        .cross_process = 1,
        .can_list = 1,
        .can_reset_all = 1,
        .expiry = 0.5,
        .slack = 0.3,
        .processes = 16,
    };
    cfg.url = url;
    int rc = conformance_run(conformance_suite(&cfg), file_suite());
    test_rmtree(dir);
    return rc;
}
