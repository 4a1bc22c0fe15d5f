/*
 * anylock run: take the lock, run the command as a child while the library's
 * renewal thread keeps the lock alive, forward signals to the child, release
 * the lock when the child exits and exit as the child did.
 *
 * Signal handlers and the lost-lock callback only write one byte each to a
 * self-pipe; the main thread does everything else from a poll() loop.  That
 * keeps the handlers async-signal-safe and the callback (which runs on the
 * renewal thread) free of any call into the library.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* The signals anylock passes on to the child. */
static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
#define NFORWARDED (sizeof forwarded / sizeof *forwarded)

/* Bytes written to the self-pipe: a signal number, with FROM_TTY added when
 * the kernel sent it to the whole process group (the terminal's ^C), and
 * LOST_BYTE when the renewal thread reports the lock lost. */
#define LOST_BYTE 0
#define FROM_TTY 0x80

static int self_pipe[2] = {-1, -1};
static atomic_int lost_why;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_signal(int sig, siginfo_t *si, void *ctx)
{
    (void)ctx;
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
    (void)lock;
    (void)userdata;
    atomic_store(&lost_why, (int)why);
    unsigned char b = LOST_BYTE;
    ssize_t n = write(self_pipe[1], &b, 1);
    (void)n;
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

/* ---- the verbose waiting reporter -------------------------------------- */

/* While the main thread blocks in anylock_acquire(), this thread says after
 * a second that it is waiting and for whom, then again when the holder
 * changes or every ten seconds. */
typedef struct waiter {
    anylock_client *client;
    const char *name;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    double start;
} waiter;

static void *waiter_main(void *arg)
{
    waiter *w = arg;
    char last_owner[ANYLOCK_ID_MAX + 1] = "";
    double last_print = 0;
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
            (strcmp(info.owner, last_owner) || t - last_print >= 10)) {
            char e[32];
            fprintf(stderr, "anylock: waiting for \"%s\" (%.1f s so far): held by %s, %s%s\n", w->name,
                    t - w->start, info.owner[0] ? info.owner : "an unknown owner",
                    isinf(info.expires_in) ? "it never expires" : "expires in ",
                    isinf(info.expires_in) ? "" : cli_format_seconds(e, sizeof e, info.expires_in));
            snprintf(last_owner, sizeof last_owner, "%s", info.owner);
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

static anylock_status setup_lock(anylock_lock *lock, const cli_options *o, int *try_once)
{
    anylock_status st = ANYLOCK_OK;
    if (o->id)
        st = anylock_lock_set_id(lock, o->id);
    if (st == ANYLOCK_OK && !isnan(o->expires))
        st = anylock_lock_set_expires(lock, o->expires);
    if (st == ANYLOCK_OK)
        st = anylock_lock_set_auto_renewal(lock, 1);
    if (st == ANYLOCK_OK)
        st = anylock_lock_set_lost_callback(lock, on_lost, NULL);
    *try_once = !isnan(o->timeout) && o->timeout == 0;
    if (st == ANYLOCK_OK && !isnan(o->timeout) && !*try_once)
        st = anylock_lock_set_timeout(lock, o->timeout);
    return st;
}

/* Says why the lock could not be had, naming the holder if it can. */
static void report_conflict(anylock_client *c, const cli_options *o, const char *name, anylock_status st,
                            double waited)
{
    if (!o->verbose)
        return;
    anylock_info info;
    char who[ANYLOCK_ID_MAX + 32] = "another owner";
    if (anylock_inspect(c, name, &info) == ANYLOCK_OK && info.held && info.owner[0])
        snprintf(who, sizeof who, "%s", info.owner);
    if (st == ANYLOCK_BUSY)
        cli_error("\"%s\" is held by %s; not waiting (-w 0)", name, who);
    else
        cli_error("gave up on \"%s\" after %.1f s: held by %s", name, waited, who);
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

int cli_run(anylock_client *c, const cli_options *o, const char *name, char **argv)
{
    anylock_lock *lock = NULL;
    anylock_status st = anylock_lock_new(c, name, &lock);
    if (st != ANYLOCK_OK) {
        cli_error("cannot make lock \"%s\": %s", name, anylock_errmsg(c));
        return cli_exit_for(st);
    }
    if (make_pipe(self_pipe, 1)) {
        cli_error("cannot make a pipe: %s", strerror(errno));
        anylock_lock_free(lock);
        return CLI_EXIT_SOFTWARE;
    }
    int status = CLI_EXIT_SOFTWARE;
    int try_once;
    st = setup_lock(lock, o, &try_once);
    if (st != ANYLOCK_OK) {
        cli_error("lock \"%s\": %s", name, anylock_lock_errmsg(lock));
        status = cli_exit_for(st);
        goto out_lock;
    }

    char t[32];
    if (try_once)
        cli_verbose(o, "trying \"%s\" once as %s", name, anylock_lock_id(lock));
    else
        cli_verbose(o, "acquiring \"%s\" as %s (waiting at most %s)", name, anylock_lock_id(lock),
                    isnan(o->timeout) ? "the store's default timeout"
                                      : cli_format_seconds(t, sizeof t, o->timeout));
    waiter w = {.client = c, .name = name};
    pthread_t wthread;
    int waiting = o->verbose && !try_once && waiter_start(&w, &wthread) == 0;
    double t0 = now_s();
    st = try_once ? anylock_try_acquire(lock) : anylock_acquire(lock);
    double waited = now_s() - t0;
    if (waiting)
        waiter_stop(&w, wthread);
    if (st == ANYLOCK_BUSY || st == ANYLOCK_TIMEOUT) {
        report_conflict(c, o, name, st, waited);
        status = o->conflict_exit;
        goto out_lock;
    }
    if (st != ANYLOCK_OK) {
        cli_error("cannot acquire \"%s\" on %s: %s", name, anylock_client_url(c), anylock_lock_errmsg(lock));
        status = cli_exit_for(st);
        goto out_lock;
    }
    /* With -v, the lock's remaining time is looked at once per renewal
     * period: a remaining time that went up means the library's renewal
     * thread extended it (the library has no per-renewal hook). */
    double period = 0, last_left = 0, last_look = 0, next_look = 0;
    if (o->verbose) {
        anylock_info info;
        char e[32], r[32];
        if (anylock_inspect(c, name, &info) == ANYLOCK_OK && info.held && !isinf(info.expires_in)) {
            period = info.expires_in * 2 / 3;
            last_left = info.expires_in;
            last_look = now_s();
            next_look = last_look + period * 1.25;
            cli_verbose(o, "acquired \"%s\" after %.2f s; it expires in %s, renewed every %s while %s runs", name,
                        waited, cli_format_seconds(e, sizeof e, info.expires_in),
                        cli_format_seconds(r, sizeof r, period), argv[0]);
        } else {
            cli_verbose(o, "acquired \"%s\" after %.2f s", name, waited);
        }
    }

    saved_signals saved;
    install_handlers(&saved);
    int lost = 0, chld = 0, pending = 0;
    drain(0, &lost, &chld, &pending);
    if (pending) {
        /* A signal came while we waited for the lock: do not start. */
        cli_verbose(o, "signal %d before %s started; not running it", pending, argv[0]);
        status = 128 + pending;
        goto out_release;
    }
    int err_pipe[2];
    if (make_pipe(err_pipe, 0)) {
        cli_error("cannot make a pipe: %s", strerror(errno));
        goto out_release;
    }
    cli_fds_cloexec();
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
    close(err_pipe[1]);
    int exec_errno = 0;
    ssize_t n;
    while ((n = read(err_pipe[0], &exec_errno, sizeof exec_errno)) < 0 && errno == EINTR)
        ;
    close(err_pipe[0]);
    if (n > 0)
        cli_error("cannot run %s: %s", argv[0], strerror(exec_errno));
    else
        cli_verbose(o, "started %s (pid %ld)", argv[0], (long)child);

    int wstatus = 0, reaped = 0;
    double kill_at = 0;
    int reported_loss = 0;
    while (!reaped) {
        double wake = kill_at > 0 ? kill_at : 0;
        if (next_look > 0 && !lost && (wake == 0 || next_look < wake))
            wake = next_look;
        int timeout_ms = -1;
        if (wake > 0) {
            double left = wake - now_s();
            timeout_ms = left > 0 ? (int)ceil(left * 1000) : 0;
        }
        struct pollfd pfd = {.fd = self_pipe[0], .events = POLLIN};
        int pr = poll(&pfd, 1, timeout_ms);
        if (pr < 0 && errno != EINTR) {
            cli_error("poll: %s", strerror(errno));
            break;
        }
        drain(child, &lost, &chld, &pending);
        if (lost && !reported_loss) {
            reported_loss = 1;
            anylock_status why = (anylock_status)atomic_load(&lost_why);
            if (o->keep_going_on_loss) {
                cli_error("lost the lock \"%s\" (%s); letting %s finish (--keep-going-on-loss)", name,
                          anylock_strerror(why), argv[0]);
            } else {
                cli_error("lost the lock \"%s\" (%s); terminating %s (pid %ld)", name, anylock_strerror(why),
                          argv[0], (long)child);
                kill(child, SIGTERM);
                kill_at = now_s() + o->kill_after;
            }
        }
        if (next_look > 0 && !lost && now_s() >= next_look) {
            anylock_info info;
            char e[32];
            double look = now_s();
            /* Without a renewal the remaining time would have gone down by
             * the time since the last look (give or take the store's clock
             * resolution). */
            double slack = period * 0.05 > 0.02 ? period * 0.05 : 0.02;
            if (anylock_inspect(c, name, &info) == ANYLOCK_OK && info.held &&
                !strcmp(info.owner, anylock_lock_id(lock)) && info.expires_in > last_left - (look - last_look) + slack)
                cli_verbose(o, "renewed \"%s\": it expires in %s", name,
                            cli_format_seconds(e, sizeof e, info.expires_in));
            last_left = info.expires_in;
            last_look = look;
            next_look = look + period;
        }
        if (kill_at > 0 && now_s() >= kill_at) {
            cli_error("%s did not stop; killing it", argv[0]);
            kill(child, SIGKILL);
            kill_at = 0;
        }
        /* Reap whenever woken: SIGCHLD may have been coalesced. */
        pid_t r;
        while ((r = waitpid(child, &wstatus, WNOHANG)) < 0 && errno == EINTR)
            ;
        if (r == child)
            reaped = 1;
        else if (r < 0)
            break;
    }
    status = reaped ? exit_status_of(wstatus) : CLI_EXIT_SOFTWARE;
    if (reaped)
        cli_verbose(o, "%s exited with status %d", argv[0], status);

out_release:
    restore_handlers(&saved);
    {
        anylock_status rs = anylock_release(lock);
        if (rs == ANYLOCK_OK)
            cli_verbose(o, "released \"%s\"", name);
        else if (!lost)
            cli_error("releasing \"%s\": %s", name, anylock_lock_errmsg(lock));
    }
out_lock:
    anylock_lock_free(lock);
    close(self_pipe[0]);
    close(self_pipe[1]);
    self_pipe[0] = self_pipe[1] = -1;
    return status;
}
