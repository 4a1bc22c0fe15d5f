/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * anylock run: take the lock, run the command as a child while the library's
 * renewal threads keep the lock alive, forward signals to the child, release
 * the lock when the child exits and exit as the child did.
 *
 * Signal handlers and the lost-lock callback only write one byte each to a
 * self-pipe; the main thread does everything else from a poll() loop, and
 * never calls the library while the child runs, so that a store that stalls
 * cannot delay what the loop does (terminating the child when the lock is
 * lost, forwarding signals).  What happens to the lock (acquired, renewed,
 * renewal failed) is heard from the library's structured log, on its own
 * threads, and written from there.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* The signals anylock passes on to the child. */
static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
#define NFORWARDED (sizeof forwarded / sizeof *forwarded)

/* Bytes written to the self-pipe: a signal number, with FROM_TTY added when
 * the kernel sent it to the whole process group (the terminal's ^C), and
 * LOST_BYTE when the library reports the lock lost. */
#define LOST_BYTE 0
#define FROM_TTY 0x80

static int self_pipe[2] = {-1, -1};

/* What the library's threads tell the main thread and the log handler.
 * Static, as the log handler may still be running on another thread just
 * after it is unset. */
typedef struct run_ctx {
    const cli_options *o;
    const anylock_lock *lock;
    char name[4 * 256];  /* escaped, for messages */
    const char *raw_name;
    pthread_mutex_t mu;
    anylock_status lost_why;
    char lost_msg[1024]; /* escaped */
    double granted;      /* the expiry the acquire was granted, seconds */
    pid_t child;         /* the command while it runs and is not reaped, else 0 */
    int terminated;      /* on_lost sent it SIGTERM */
} run_ctx;

static run_ctx ctx = {.mu = PTHREAD_MUTEX_INITIALIZER};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_signal(int sig, siginfo_t *si, void *uctx)
{
    (void)uctx;
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (si && si->si_code == SI_KERNEL)
        b |= FROM_TTY;
    ssize_t n = write(self_pipe[1], &b, 1);
    (void)n; /* a full pipe already holds enough to wake the loop */
    errno = saved;
}

static void on_lost(anylock_lock *lock, anylock_status why, void *userdata)
{
    run_ctx *x = userdata;
    pthread_mutex_lock(&x->mu);
    x->lost_why = why;
    const char *m = anylock_lock_errmsg(lock);
    cli_esc_str(x->lost_msg, sizeof x->lost_msg, m && m[0] ? m : anylock_strerror(why));
    pthread_mutex_unlock(&x->mu);
    /* The main thread hears of it first (so that whatever wakes it, the
     * child's exit included, finds the loss already in the pipe)... */
    unsigned char b = LOST_BYTE;
    ssize_t n = write(self_pipe[1], &b, 1);
    (void)n;
    /* ... and the command is stopped from here, at once, rather than after
     * the main thread wakes: the lease is ending.  Under x->mu the child
     * cannot be reaped (and its pid reused) meanwhile. */
    pthread_mutex_lock(&x->mu);
    if (x->child > 0 && !x->o->keep_going_on_loss && !x->terminated) {
        kill(x->child, SIGTERM);
        x->terminated = 1;
    }
    pthread_mutex_unlock(&x->mu);
}

/* The library's log records about this lock, from whichever thread. */
static void on_log(const anylock_log_record *r, void *userdata)
{
    run_ctx *x = userdata;
    if (r->lock && r->lock != x->lock)
        return;
    const cli_options *o = x->o;
    char e[32], m[1024];
    cli_buf b = {0};
    switch (r->event) {
    case ANYLOCK_EVENT_ACQUIRED:
        pthread_mutex_lock(&x->mu);
        x->granted = r->expires_in;
        pthread_mutex_unlock(&x->mu);
        break;
    case ANYLOCK_EVENT_RENEWED:
        if (o->json) {
            cli_buf_printf(&b, "\"expires_in\":%.3f", r->expires_in);
            cli_event("renewed", x->raw_name, &b);
        } else {
            cli_verbose(o, "renewed \"%s\": it expires in %s", x->name,
                        cli_format_seconds(e, sizeof e, r->expires_in));
        }
        break;
    case ANYLOCK_EVENT_RENEWAL_FAILED:
        if (o->json) {
            cli_buf_printf(&b, "\"status\":\"%s\",", anylock_status_name(r->status));
            cli_json_field(&b, "message", r->message, strlen(r->message));
            cli_event("renewal_failed", x->raw_name, &b);
        } else {
            cli_verbose(o, "renewing \"%s\" failed (%s); retrying until its lease ends", x->name,
                        cli_esc_str(m, sizeof m, r->message));
        }
        break;
    case ANYLOCK_EVENT_CONNECTION:
        if (o->json) {
            cli_json_field(&b, "message", r->message, strlen(r->message));
            cli_event("connection", NULL, &b);
        } else {
            cli_verbose(o, "%s", cli_esc_str(m, sizeof m, r->message));
        }
        break;
    default:
        /* Waiting, giving up, the loss and the release are reported by the
         * main thread, which knows more about them. */
        break;
    }
    cli_buf_free(&b);
}

static int make_pipe(int fds[2], int nonblock)
{
    if (pipe(fds))
        return -1;
    for (int i = 0; i < 2; i++) {
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
        if (nonblock)
            fcntl(fds[i], F_SETFL, O_NONBLOCK);
    }
    return 0;
}

/* "held by WHO, expires in 8.2 s" for info into buf. */
static const char *held_phrase(char *buf, size_t size, const anylock_info *info)
{
    char who[2048], t[32];
    if (!info->held) {
        snprintf(buf, size, "it is free now");
        return buf;
    }
    cli_holder_phrase(who, sizeof who, info);
    if (isinf(info->expires_in))
        snprintf(buf, size, "held by %s, never expires", who);
    else
        snprintf(buf, size, "held by %s, expires in %s", who, cli_format_seconds(t, sizeof t, info->expires_in));
    return buf;
}

static void holder_json(cli_buf *b, const anylock_info *info)
{
    cli_buf_add(b, "\"holder\":", 9);
    if (!info->held) {
        cli_buf_add(b, "null", 4);
        return;
    }
    cli_buf_add(b, "{", 1);
    cli_info_json(b, info);
    cli_buf_add(b, "}", 1);
}

/* ---- the verbose waiting reporter -------------------------------------- */

/* While the main thread blocks in anylock_acquire(), this thread says again
 * for whom it waits when the holder changes, or every ten seconds. */
typedef struct waiter {
    anylock_client *client;
    const char *name;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    double start;
    char last_owner[ANYLOCK_ID_MAX + 1];
} waiter;

static void *waiter_main(void *arg)
{
    waiter *w = arg;
    double last_print = w->start;
    pthread_mutex_lock(&w->mu);
    double next = w->start + 1.0;
    while (!w->done) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        double wait = next - ((double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
        if (wait > 0) {
            ts.tv_sec += (time_t)wait;
            ts.tv_nsec += (long)((wait - floor(wait)) * 1e9);
            if (ts.tv_nsec >= 1000000000L)
                ts.tv_sec++, ts.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&w->cv, &w->mu, &ts);
            continue;
        }
        pthread_mutex_unlock(&w->mu);
        anylock_info info;
        double t = now_s();
        if (anylock_inspect(w->client, w->name, &info) == ANYLOCK_OK && info.held &&
            (strcmp(info.owner, w->last_owner) || t - last_print >= 10)) {
            char held[3072];
            cli_error("waiting for \"%s\" (%.1f s so far): %s", ctx.name, t - w->start,
                      held_phrase(held, sizeof held, &info));
            snprintf(w->last_owner, sizeof w->last_owner, "%s", info.owner);
            last_print = t;
        }
        pthread_mutex_lock(&w->mu);
        next = t + 1.0;
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static int waiter_start(waiter *w, pthread_t *thread)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&w->mu, NULL);
    w->done = 0;
    w->start = now_s();
    if (pthread_create(thread, NULL, waiter_main, w)) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        return -1;
    }
    return 0;
}

static void waiter_stop(waiter *w, pthread_t thread)
{
    pthread_mutex_lock(&w->mu);
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(thread, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

/* ---- taking the lock ---------------------------------------------------- */

/* Appends s to the label at *o, quoted as a shell would need it, with
 * characters a label may not hold (controls, bytes that are not UTF-8)
 * replaced by '?'.  Returns 0 once the label is full. */
static int label_add(char *label, size_t *o, const char *s, int quote)
{
    int plain = *s != '\0' || !quote;
    for (const char *p = s; quote && *p; p++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%", *p))
            plain = 0;
    char tmp[ANYLOCK_LABEL_MAX * 2 + 8];
    size_t n = 0;
    if (*o)
        tmp[n++] = ' ';
    if (!plain)
        tmp[n++] = '\'';
    for (const unsigned char *p = (const unsigned char *)s; *p && n < sizeof tmp - 6;) {
        size_t len = 1;
        if (*p >= 0x80) {
            /* Keep whole UTF-8 sequences (valid ones: the library checks). */
            len = (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3 : (*p & 0xf8) == 0xf0 ? 4 : 0;
            for (size_t i = 1; i < len; i++)
                if ((p[i] & 0xc0) != 0x80)
                    len = 0;
        }
        if (len == 0 || *p < 0x20 || *p == 0x7f || (p[0] == 0xc2 && p[1] < 0xa0)) {
            tmp[n++] = '?';
            p += len ? len : 1;
            continue;
        }
        if (*p == '\'' && !plain) {
            memcpy(tmp + n, "'\\''", 4);
            n += 4;
            p++;
            continue;
        }
        memcpy(tmp + n, p, len);
        n += len;
        p += len;
    }
    if (!plain)
        tmp[n++] = '\'';
    if (*o + n > ANYLOCK_LABEL_MAX) {
        /* Cut on a character boundary and say so. */
        size_t room = ANYLOCK_LABEL_MAX - 3 > *o ? ANYLOCK_LABEL_MAX - 3 - *o : 0;
        while (room > 0 && ((unsigned char)tmp[room] & 0xc0) == 0x80)
            room--;
        memcpy(label + *o, tmp, room);
        *o += room;
        memcpy(label + *o, "...", 3);
        *o += 3;
        label[*o] = '\0';
        return 0;
    }
    memcpy(label + *o, tmp, n);
    *o += n;
    label[*o] = '\0';
    return 1;
}

/* The command line, as the holder's label: what someone seeing the lock held
 * needs to recognise it. */
static void make_label(char label[ANYLOCK_LABEL_MAX + 1], char **argv, int quote)
{
    size_t o = 0;
    label[0] = '\0';
    for (char **a = argv; *a; a++)
        if (!label_add(label, &o, *a, quote))
            break;
}

static anylock_status setup_lock(anylock_lock *lock, const cli_options *o, const char *label)
{
    anylock_status st = ANYLOCK_OK;
    if (o->id)
        st = anylock_lock_set_id(lock, o->id);
    if (st == ANYLOCK_OK && o->mode == ANYLOCK_SHARED)
        st = anylock_lock_set_mode(lock, ANYLOCK_SHARED);
    if (st == ANYLOCK_OK && o->mode == ANYLOCK_SEMAPHORE)
        st = anylock_lock_set_permits(lock, o->permits);
    if (st == ANYLOCK_OK)
        st = anylock_lock_set_label(lock, label);
    if (st == ANYLOCK_OK && !isnan(o->expires))
        st = anylock_lock_set_expires(lock, o->expires);
    /* A lock that never expires has nothing to renew. */
    if (st == ANYLOCK_OK)
        st = anylock_lock_set_auto_renewal(lock, !isinf(o->expires));
    if (st == ANYLOCK_OK)
        st = anylock_lock_set_lost_callback(lock, on_lost, &ctx);
    return st;
}

/* Says that the lock is held and that run waits for it. */
static void announce_waiting(anylock_client *c, const cli_options *o)
{
    if (!o->json && !o->verbose)
        return;
    anylock_info info;
    int known = anylock_inspect(c, ctx.raw_name, &info) == ANYLOCK_OK;
    char t[32], held[3072];
    if (o->json) {
        cli_buf b = {0};
        if (isinf(o->timeout))
            cli_buf_add(&b, "\"timeout\":null,", 15);
        else
            cli_buf_printf(&b, "\"timeout\":%.3f,", o->timeout);
        if (known)
            holder_json(&b, &info);
        else
            cli_buf_add(&b, "\"holder\":null", 13);
        cli_event("waiting", ctx.raw_name, &b);
        cli_buf_free(&b);
    } else {
        cli_verbose(o, "waiting for \"%s\" (at most %s): %s", ctx.name,
                    isinf(o->timeout) ? "forever" : cli_format_seconds(t, sizeof t, o->timeout),
                    known ? held_phrase(held, sizeof held, &info) : "held");
    }
}

/* Takes the lock: once without waiting (so that a wait can be announced
 * the moment it starts), then, if it is held, waiting for what is left of
 * the timeout.  *renews is cleared when the lock turns out to have no
 * expiry (the URL's expires=never). */
static anylock_status take(anylock_client *c, anylock_lock *lock, const cli_options *o, double *waited,
                           int *renews)
{
    double t0 = now_s();
    anylock_status st = anylock_try_acquire(lock);
    if (st == ANYLOCK_RENEWAL_NEEDS_EXPIRY) {
        /* The expiry came from the URL (expires=never): run it without
         * renewal, as --lease never would. */
        *renews = 0;
        anylock_lock_set_auto_renewal(lock, 0);
        st = anylock_try_acquire(lock);
    }
    int try_once = !isnan(o->timeout) && o->timeout == 0;
    if (st != ANYLOCK_BUSY || try_once) {
        *waited = now_s() - t0;
        return st;
    }
    announce_waiting(c, o);
    if (!isnan(o->timeout) && !isinf(o->timeout)) {
        double left = o->timeout - (now_s() - t0);
        if (left <= 0) {
            *waited = now_s() - t0;
            return ANYLOCK_TIMEOUT;
        }
        st = anylock_lock_set_timeout(lock, left);
    } else if (isinf(o->timeout)) {
        st = anylock_lock_set_timeout(lock, ANYLOCK_FOREVER);
    }
    if (st != ANYLOCK_OK)
        return st;
    waiter w = {.client = c, .name = ctx.raw_name};
    pthread_t wthread;
    int reporting = o->verbose && !o->json && waiter_start(&w, &wthread) == 0;
    st = anylock_acquire(lock);
    if (reporting)
        waiter_stop(&w, wthread);
    *waited = now_s() - t0;
    return st;
}

/* Says why the lock could not be had, and who holds it, unless -q. */
static void report_conflict(anylock_client *c, const cli_options *o, anylock_status st, double waited)
{
    if (o->quiet && !o->json)
        return;
    anylock_info info;
    int known = anylock_inspect(c, ctx.raw_name, &info) == ANYLOCK_OK;
    if (o->json) {
        cli_buf b = {0};
        cli_buf_printf(&b, "\"status\":\"%s\",\"waited\":%.3f,", anylock_status_name(st), waited);
        if (known)
            holder_json(&b, &info);
        else
            cli_buf_add(&b, "\"holder\":null", 13);
        cli_event("gave_up", ctx.raw_name, &b);
        cli_buf_free(&b);
    }
    /* With --json the event says it all, for whatever reads stderr. */
    if (o->quiet || o->json)
        return;
    char held[3072];
    const char *why = known ? held_phrase(held, sizeof held, &info) : "held by another owner";
    if (st == ANYLOCK_BUSY)
        cli_error("\"%s\" is %s; not waiting (-n)", ctx.name, why);
    else
        cli_error("gave up on \"%s\" after %.1f s: %s", ctx.name, waited, why);
}

/* Says "WHAT "NAME": MESSAGE" (and the JSON event) for a failure. */
static void report_failure(const char *event, anylock_status st, const char *what, const char *arg)
{
    char m[1024];
    cli_esc_str(m, sizeof m, arg);
    cli_error("%s \"%s\": %s", what, ctx.name, m);
    if (ctx.o->json) {
        cli_buf b = {0};
        cli_buf_printf(&b, "\"status\":\"%s\",", anylock_status_name(st));
        cli_json_field(&b, "message", arg, strlen(arg));
        cli_event(event, ctx.raw_name, &b);
        cli_buf_free(&b);
    }
}

/* ---- running the child -------------------------------------------------- */

typedef struct saved_signals {
    struct sigaction old[NFORWARDED];
    int caught[NFORWARDED]; /* 0 where the signal was ignored when we started */
    struct sigaction old_chld;
} saved_signals;

static void install_handlers(saved_signals *s)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < NFORWARDED; i++) {
        sigaction(forwarded[i], NULL, &s->old[i]);
        /* A signal ignored when anylock started (a background job of a
         * shell ignores INT and QUIT) stays ignored, for anylock and for the
         * child, as a shell would leave it. */
        s->caught[i] = s->old[i].sa_handler != SIG_IGN;
        if (s->caught[i])
            sigaction(forwarded[i], &sa, NULL);
    }
    sa.sa_flags |= SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, &s->old_chld);
}

static void restore_handlers(const saved_signals *s)
{
    for (size_t i = 0; i < NFORWARDED; i++)
        if (s->caught[i])
            sigaction(forwarded[i], &s->old[i], NULL);
    sigaction(SIGCHLD, &s->old_chld, NULL);
}

/* Tells the command which lock it runs under: ANYLOCK_NAME, ANYLOCK_ID and,
 * where the store issues them, ANYLOCK_TOKEN (the fencing token to hand to
 * what the command writes; docs/guarantees.md).  Set in this process just
 * before the fork, since the child may make no such calls. */
static void export_lock(const anylock_lock *lock)
{
    setenv("ANYLOCK_NAME", anylock_lock_name(lock), 1);
    setenv("ANYLOCK_ID", anylock_lock_id(lock), 1);
    uint64_t token;
    if (anylock_lock_token(lock, &token) == ANYLOCK_OK) {
        char t[32];
        snprintf(t, sizeof t, "%llu", (unsigned long long)token);
        setenv("ANYLOCK_TOKEN", t, 1);
    } else {
        unsetenv("ANYLOCK_TOKEN");
    }
}

/* In the child between fork and exec: only async-signal-safe calls. */
static void child_exec(char **argv, const saved_signals *s, pid_t parent, int die_with_parent, int err_fd)
{
    for (size_t i = 0; i < NFORWARDED; i++)
        if (s->caught[i])
            sigaction(forwarded[i], &s->old[i], NULL);
    sigaction(SIGCHLD, &s->old_chld, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* A standard descriptor that was closed when anylock started is closed
     * for the command too. */
    for (int fd = 0; fd < 3; fd++)
        if (cli_std_was_closed(fd))
            close(fd);
    /* If anylock dies without a chance to stop the child (SIGKILL), its
     * lock expires; the child should not go on working unlocked. */
    if (die_with_parent) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(CLI_EXIT_SOFTWARE);
    }
    execvp(argv[0], argv);
    int e = errno;
    ssize_t n = write(err_fd, &e, sizeof e);
    (void)n;
    _exit(e == ENOENT ? CLI_EXIT_NOT_FOUND : CLI_EXIT_CANNOT_EXEC);
}

/* A descriptor that becomes readable when the child exits (Linux 5.3), or
 * -1. */
static int pidfd_of(pid_t pid)
{
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0); /* close-on-exec by itself */
#else
    (void)pid;
    return -1;
#endif
}

static int exit_status_of(int wstatus)
{
    if (WIFEXITED(wstatus))
        return WEXITSTATUS(wstatus);
    if (WIFSIGNALED(wstatus))
        return 128 + WTERMSIG(wstatus);
    return CLI_EXIT_SOFTWARE;
}

/* Reads every byte waiting in the self-pipe; for each, *lost is set, or the
 * signal is forwarded to child (or, before there is a child, remembered in
 * *pending). */
static void drain(pid_t child, int *lost, int *chld, int *pending)
{
    unsigned char buf[64];
    ssize_t n;
    while ((n = read(self_pipe[0], buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            int sig = buf[i] & ~FROM_TTY;
            if (buf[i] == LOST_BYTE)
                *lost = 1;
            else if (sig == SIGCHLD)
                *chld = 1;
            else if (child <= 0)
                *pending = sig;
            /* The terminal sent ^C (or a hangup) to its whole foreground
             * process group, the child included: sending it again would make
             * the child see it twice. */
            else if (!(buf[i] & FROM_TTY))
                kill(child, sig);
        }
    }
}

static void report_lost(const cli_options *o, const char *cmd, pid_t child, int exited)
{
    pthread_mutex_lock(&ctx.mu);
    anylock_status why = ctx.lost_why;
    char msg[1024];
    memcpy(msg, ctx.lost_msg, sizeof msg);
    pthread_mutex_unlock(&ctx.mu);
    if (o->json) {
        cli_buf b = {0};
        cli_buf_printf(&b, "\"status\":\"%s\",", anylock_status_name(why));
        cli_json_field(&b, "message", msg, strlen(msg));
        cli_buf_printf(&b, ",\"action\":\"%s\",\"pid\":%ld",
                       exited ? "none" : o->keep_going_on_loss ? "keep-going" : "terminate", (long)child);
        cli_event("lost", ctx.raw_name, &b);
        cli_buf_free(&b);
        return;
    }
    if (exited)
        cli_error("lost the lock \"%s\" (%s) as %s exited", ctx.name, msg[0] ? msg : anylock_strerror(why), cmd);
    else if (o->keep_going_on_loss)
        cli_error("lost the lock \"%s\" (%s); letting %s finish (--keep-going-on-loss)", ctx.name,
                  msg[0] ? msg : anylock_strerror(why), cmd);
    else
        cli_error("lost the lock \"%s\" (%s); terminating %s (pid %ld)", ctx.name,
                  msg[0] ? msg : anylock_strerror(why), cmd, (long)child);
}

int cli_run(anylock_client *c, const cli_options *o, const char *name, char **argv, int *from_command)
{
    *from_command = 0;
    char *shell_argv[] = {"/bin/sh", "-c", (char *)o->command, NULL};
    if (o->command)
        argv = shell_argv;
    char label[ANYLOCK_LABEL_MAX + 1];
    /* -c's command line is shown as written; an argument vector is quoted
     * as a shell would need it. */
    if (o->command)
        make_label(label, argv + 2, 0);
    else
        make_label(label, argv, 1);
    char cmd[256];
    cli_esc_str(cmd, sizeof cmd, o->command ? "sh" : argv[0]);

    ctx.o = o;
    ctx.raw_name = name;
    cli_esc_str(ctx.name, sizeof ctx.name, name);
    ctx.lost_msg[0] = '\0';
    ctx.granted = 0;
    ctx.child = 0;
    ctx.terminated = 0;

    anylock_lock *lock = NULL;
    anylock_status st = anylock_lock_new(c, name, &lock);
    if (st != ANYLOCK_OK) {
        report_failure("failed", st, "cannot make lock", anylock_errmsg(c));
        return cli_exit_for(st);
    }
    ctx.lock = lock;
    if (o->verbose || o->json)
        anylock_set_log(on_log, ANYLOCK_LOG_DEBUG, &ctx);
    if (make_pipe(self_pipe, 1)) {
        cli_error("cannot make a pipe: %s", strerror(errno));
        anylock_set_log(NULL, ANYLOCK_LOG_ERROR, NULL);
        anylock_lock_free(lock);
        return CLI_EXIT_SOFTWARE;
    }
    int status = CLI_EXIT_SOFTWARE;
    int renews = !isinf(o->expires);
    st = setup_lock(lock, o, label);
    if (st != ANYLOCK_OK) {
        report_failure("failed", st, "lock", anylock_lock_errmsg(lock));
        status = cli_exit_for(st);
        goto out_lock;
    }

    double waited = 0;
    st = take(c, lock, o, &waited, &renews);
    if (st == ANYLOCK_BUSY || st == ANYLOCK_TIMEOUT) {
        report_conflict(c, o, st, waited);
        status = o->conflict_exit;
        goto out_lock;
    }
    if (st != ANYLOCK_OK) {
        char u[ANYLOCK_URL_MAX], m[1024];
        cli_error("cannot acquire \"%s\" on %s: %s", ctx.name, cli_esc_str(u, sizeof u, anylock_client_url(c)),
                  cli_esc_str(m, sizeof m, anylock_lock_errmsg(lock)));
        if (o->json) {
            cli_buf b = {0};
            cli_buf_printf(&b, "\"status\":\"%s\",", anylock_status_name(st));
            cli_json_field(&b, "message", anylock_lock_errmsg(lock), strlen(anylock_lock_errmsg(lock)));
            cli_event("failed", name, &b);
            cli_buf_free(&b);
        }
        status = cli_exit_for(st);
        goto out_lock;
    }
    pthread_mutex_lock(&ctx.mu);
    double granted = ctx.granted;
    pthread_mutex_unlock(&ctx.mu);
    {
        char e[32], id[256];
        uint64_t token = 0;
        int has_token = anylock_lock_token(lock, &token) == ANYLOCK_OK;
        if (o->json) {
            cli_buf b = {0};
            const char *lid = anylock_lock_id(lock);
            cli_json_field(&b, "id", lid, strlen(lid));
            cli_buf_printf(&b, ",\"waited\":%.3f,", waited);
            if (granted > 0 && !isinf(granted))
                cli_buf_printf(&b, "\"expires_in\":%.3f", granted);
            else
                cli_buf_add(&b, "\"expires_in\":null", 17);
            cli_buf_printf(&b, ",\"renewed\":%s", renews && granted > 0 && !isinf(granted) ? "true" : "false");
            if (has_token)
                cli_buf_printf(&b, ",\"token\":%llu", (unsigned long long)token);
            cli_event("acquired", name, &b);
            cli_buf_free(&b);
        } else if (granted > 0 && !isinf(granted)) {
            cli_verbose(o, "acquired \"%s\" as %s after %.2f s; it expires in %s, renewed while %s runs", ctx.name,
                        cli_esc_str(id, sizeof id, anylock_lock_id(lock)), waited,
                        cli_format_seconds(e, sizeof e, granted), cmd);
        } else {
            cli_verbose(o, "acquired \"%s\" as %s after %.2f s; it never expires, so it is not renewed", ctx.name,
                        cli_esc_str(id, sizeof id, anylock_lock_id(lock)), waited);
        }
    }

    saved_signals saved;
    install_handlers(&saved);
    int lost = 0, chld = 0, pending = 0;
    drain(0, &lost, &chld, &pending);
    if (pending) {
        /* A signal came between the acquire and now: do not start. */
        cli_verbose(o, "signal %d before %s started; not running it", pending, cmd);
        status = 128 + pending;
        goto out_release;
    }
    int err_pipe[2];
    if (make_pipe(err_pipe, 0)) {
        cli_error("cannot make a pipe: %s", strerror(errno));
        goto out_release;
    }
    cli_fds_cloexec();
    export_lock(lock);
    pid_t parent = getpid();
    pid_t child = fork();
    if (child < 0) {
        cli_error("cannot fork: %s", strerror(errno));
        close(err_pipe[0]);
        close(err_pipe[1]);
        goto out_release;
    }
    if (child == 0)
        child_exec(argv, &saved, parent, !o->keep_going_on_loss, err_pipe[1]);
    pthread_mutex_lock(&ctx.mu);
    ctx.child = child;
    pthread_mutex_unlock(&ctx.mu);
    close(err_pipe[1]);
    int exec_errno = 0;
    ssize_t n;
    while ((n = read(err_pipe[0], &exec_errno, sizeof exec_errno)) < 0 && errno == EINTR)
        ;
    close(err_pipe[0]);
    if (n > 0) {
        cli_error("cannot run %s: %s", cmd, strerror(exec_errno));
    } else if (o->json) {
        cli_buf b = {0};
        cli_buf_printf(&b, "\"pid\":%ld,", (long)child);
        cli_json_field(&b, "command", label, strlen(label));
        cli_event("started", name, &b);
        cli_buf_free(&b);
    } else {
        cli_verbose(o, "started %s (pid %ld)", cmd, (long)child);
    }

    int wstatus = 0, reaped = 0;
    double kill_at = 0;
    int reported_loss = 0;
    /* The child's exit is watched on a pidfd where there is one, so that it
     * does not depend on which thread SIGCHLD is delivered to (the library's
     * threads may take it, and an instrumented build may hold a handler
     * back until that thread wakes); elsewhere the loop also looks every
     * second. */
    int child_fd = pidfd_of(child);
    while (!reaped) {
        int timeout_ms = child_fd >= 0 ? -1 : 1000;
        if (kill_at > 0) {
            double left = kill_at - now_s();
            int kill_ms = left > 0 ? (int)ceil(left * 1000) : 0;
            if (timeout_ms < 0 || kill_ms < timeout_ms)
                timeout_ms = kill_ms;
        }
        struct pollfd pfd[2] = {{.fd = self_pipe[0], .events = POLLIN}, {.fd = child_fd, .events = POLLIN}};
        int pr = poll(pfd, child_fd >= 0 ? 2 : 1, timeout_ms);
        if (pr < 0 && errno != EINTR) {
            cli_error("poll: %s", strerror(errno));
            break;
        }
        drain(child, &lost, &chld, &pending);
        if (lost && !reported_loss) {
            reported_loss = 1;
            if (!o->keep_going_on_loss) {
                /* The child first, the words after (on_lost has sent the
                 * SIGTERM unless the loss came before the child). */
                pthread_mutex_lock(&ctx.mu);
                if (!ctx.terminated)
                    kill(child, SIGTERM);
                ctx.terminated = 1;
                pthread_mutex_unlock(&ctx.mu);
                kill_at = isinf(o->kill_after) ? 0 : now_s() + o->kill_after;
            }
            report_lost(o, cmd, child, 0);
        }
        if (kill_at > 0 && now_s() >= kill_at) {
            cli_error("%s did not stop; killing it", cmd);
            kill(child, SIGKILL);
            kill_at = 0;
        }
        /* Look whenever woken (SIGCHLD may have been coalesced); reap only
         * once on_lost can no longer signal the pid. */
        siginfo_t si;
        memset(&si, 0, sizeof si);
        int wr;
        while ((wr = waitid(P_PID, (id_t)child, &si, WEXITED | WNOHANG | WNOWAIT)) < 0 && errno == EINTR)
            ;
        if (wr < 0)
            break;
        if (si.si_pid == child) {
            pthread_mutex_lock(&ctx.mu);
            ctx.child = 0;
            pthread_mutex_unlock(&ctx.mu);
            while (waitpid(child, &wstatus, 0) < 0 && errno == EINTR)
                ;
            reaped = 1;
        }
    }
    if (child_fd >= 0)
        close(child_fd);
    /* A loss that came as the command exited is still said. */
    drain(0, &lost, &chld, &pending);
    if (lost && !reported_loss)
        report_lost(o, cmd, child, 1);
    status = reaped ? exit_status_of(wstatus) : CLI_EXIT_SOFTWARE;
    *from_command = reaped;
    if (reaped && o->json) {
        cli_buf b = {0};
        cli_buf_printf(&b, "\"pid\":%ld,", (long)child);
        if (WIFEXITED(wstatus))
            cli_buf_printf(&b, "\"exit_code\":%d,\"signal\":null", WEXITSTATUS(wstatus));
        else
            cli_buf_printf(&b, "\"exit_code\":null,\"signal\":%d", WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0);
        cli_buf_printf(&b, ",\"status\":%d", status);
        cli_event("exited", name, &b);
        cli_buf_free(&b);
    } else if (reaped) {
        cli_verbose(o, "%s exited with status %d", cmd, status);
    }

out_release:
    restore_handlers(&saved);
    {
        anylock_status rs = anylock_release(lock);
        if (rs == ANYLOCK_OK) {
            if (o->json)
                cli_event("released", name, NULL);
            else
                cli_verbose(o, "released \"%s\"", ctx.name);
        } else if (!lost) {
            report_failure("release_failed", rs, "releasing", anylock_lock_errmsg(lock));
        }
    }
out_lock:
    anylock_set_log(NULL, ANYLOCK_LOG_ERROR, NULL);
    anylock_lock_free(lock);
    close(self_pipe[0]);
    close(self_pipe[1]);
    self_pipe[0] = self_pipe[1] = -1;
    return status;
}
