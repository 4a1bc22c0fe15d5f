/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * anylock: flock(1) across processes and machines.  Parses the command line,
 * opens the store, and runs one subcommand:
 *
 *   anylock [OPTIONS] run NAME COMMAND [ARG...]    (or run NAME -c 'COMMAND')
 *   anylock [OPTIONS] status NAME
 *   anylock [OPTIONS] wait NAME
 *   anylock [OPTIONS] list
 *   anylock [OPTIONS] reset NAME
 *   anylock [OPTIONS] reset-all
 *
 * cli/anylock.1 is the reference for users.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static const char synopsis[] =
    "usage: anylock [OPTIONS] run NAME COMMAND [ARG...]\n"
    "       anylock [OPTIONS] run NAME -c 'SHELL COMMAND'\n"
    "       anylock [OPTIONS] status NAME      (exit 0 held, 1 free)\n"
    "       anylock [OPTIONS] wait NAME        (until NAME is free, without taking it)\n"
    "       anylock [OPTIONS] list [--names]\n"
    "       anylock [OPTIONS] reset NAME\n"
    "       anylock [OPTIONS] reset-all\n";

static const char usage_text[] =
    "Options (before or after the subcommand; for run, before NAME):\n"
    "      --url URL               the store (default $ANYLOCK_URL, else the SQLite file\n"
    "                              ~/.cache/anylock/locks.db of this user)\n"
    "  -w, --wait, --timeout SECS  how long run and wait wait; 0 tries once; \"forever\".\n"
    "                              Unlike flock(1), anylock does NOT wait forever by\n"
    "                              default: the URL's timeout=, else 60 seconds\n"
    "  -n, --nonblock, --nb        do not wait (same as -w 0)\n"
    "  -l, --lease, --expires SECS the lock's lease: how long it outlives an anylock that\n"
    "                              dies; renewed while the command runs; \"never\" for\n"
    "                              none (then not renewed) (default: the URL's expires=,\n"
    "                              else 10)\n"
    "  -s, --shared                a shared lock (any number of shared holders, no\n"
    "                              exclusive one)\n"
    "  -x, -e, --exclusive         an exclusive lock (the default)\n"
    "      --permits N             a semaphore: at most N holders at once\n"
    "  -c, --command 'COMMAND'     run COMMAND with /bin/sh -c\n"
    "      --id ID                 the owner id (default $ANYLOCK_ID, else a fresh random id)\n"
    "  -E, --conflict-exit-code N  exit status when the lock could not be had (default 1)\n"
    "      --keep-going-on-loss    let the command finish if the lock is lost\n"
    "                              (default: terminate it)\n"
    "  -k, --kill-after SECS       after SIGTERM on loss, SIGKILL this much later (default 5)\n"
    "  -q, --quiet                 no message when run gives up; nothing on stdout for\n"
    "                              status and wait (the exit status says it)\n"
    "  -v, --verbose               say when waiting and for whom, acquired, renewed,\n"
    "                              released\n"
    "      --json                  JSON output; for run, one JSON event per line on stderr\n"
    "  -h, --help                  this help\n"
    "  -V, --version               the version and the backends of this build\n"
    "\n"
    "From flock(1): -x and -e are exclusive here too; anylock's store is --url (not -u,\n"
    "which is flock's unlock) and its lease is -l (the old -x).\n"
    "\n"
    "Exit status: run: the command's own (128+N if killed by signal N); 1 when the\n"
    "lock could not be had in time (-E). status: 0 held, 1 free. wait: 0 free, 1 still\n"
    "held. 64 usage error or bad URL; 69 store unreachable; 70 other failure; 74 the\n"
    "output could not be written; 126/127 the command cannot be run / was not found.\n";

enum {
    OPT_ID = 256,
    OPT_JSON,
    OPT_KEEP_GOING,
    OPT_URL,
    OPT_PERMITS,
    OPT_NAMES,
    OPT_UNLOCK,
    OPT_NO_FORK,
    OPT_CLOSE,
};

static const struct option long_options[] = {
    {"url", required_argument, NULL, OPT_URL},
    {"wait", required_argument, NULL, 'w'},
    {"timeout", required_argument, NULL, 'w'},
    {"nonblock", no_argument, NULL, 'n'},
    {"nb", no_argument, NULL, 'n'},
    {"lease", required_argument, NULL, 'l'},
    {"expires", required_argument, NULL, 'l'},
    {"shared", no_argument, NULL, 's'},
    {"exclusive", no_argument, NULL, 'x'},
    {"permits", required_argument, NULL, OPT_PERMITS},
    {"command", required_argument, NULL, 'c'},
    {"id", required_argument, NULL, OPT_ID},
    {"conflict-exit-code", required_argument, NULL, 'E'},
    {"keep-going-on-loss", no_argument, NULL, OPT_KEEP_GOING},
    {"kill-after", required_argument, NULL, 'k'},
    {"quiet", no_argument, NULL, 'q'},
    {"verbose", no_argument, NULL, 'v'},
    {"json", no_argument, NULL, OPT_JSON},
    {"names", no_argument, NULL, OPT_NAMES},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    /* flock(1)'s options that mean nothing here, so that a flock user hears
     * why rather than "unknown option". */
    {"unlock", no_argument, NULL, OPT_UNLOCK},
    {"no-fork", no_argument, NULL, OPT_NO_FORK},
    {"close", no_argument, NULL, OPT_CLOSE},
    {NULL, 0, NULL, 0},
};

static int usage_error(const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 1, 2)))
#endif
    ;

static int usage_error(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cli_error("%s", msg);
    fputs(synopsis, stderr);
    fputs("Try 'anylock --help' for the options.\n", stderr);
    return CLI_EXIT_USAGE;
}

/* Seconds as the command line gives them, through the library's one parser:
 * plain decimals, or "forever"/"never".  Returns 0, or a usage error's exit
 * status after saying what is wrong. */
static int parse_seconds(const char *opt, const char *s, int allow_zero, double *out)
{
    char e[256];
    if (anylock_parse_duration(s, out) != ANYLOCK_OK) {
        size_t digits = strspn(s, "0123456789.");
        if (s[0] && !s[digits])
            return usage_error("bad %s \"%s\": at most %.0f seconds (about 3 years), or \"forever\"", opt,
                               cli_esc_str(e, sizeof e, s), ANYLOCK_DURATION_MAX);
        return usage_error("bad %s \"%s\": give plain decimal seconds such as 0.5 or 30, or \"forever\" "
                           "(no sign, exponent or hex)",
                           opt, cli_esc_str(e, sizeof e, s));
    }
    if (*out == 0 && !allow_zero)
        return usage_error("bad %s \"%s\": it must be more than 0 (\"never\" for a lock that never expires)", opt,
                           cli_esc_str(e, sizeof e, s));
    return 0;
}

static int parse_count(const char *opt, const char *s, long min, long max, long *out)
{
    char *end, e[256];
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < min || v > max || s[0] == '+' || s[0] == ' ')
        return usage_error("bad %s \"%s\": give a whole number from %ld to %ld", opt, cli_esc_str(e, sizeof e, s),
                           min, max);
    *out = v;
    return 0;
}

/* Parses options from argv[1...] (argv[0] is skipped, as getopt does) and
 * returns the index of the first operand, or -1 (its exit status in
 * *status) after a usage error or --help/--version. */
static int parse_options(int argc, char **argv, int stop_at_operand, cli_options *o, int *status)
{
    const char *shortopts = stop_at_operand ? "+:w:nl:sxec:E:k:qvhVuFo" : ":w:nl:sxec:E:k:qvhVuFo";
    optind = 0; /* glibc: start afresh on this argv */
    opterr = 0;
    int c;
    long v;
    while ((c = getopt_long(argc, argv, shortopts, long_options, NULL)) != -1) {
        switch (c) {
        case OPT_URL:
            o->url = optarg;
            break;
        case 'w':
            if ((*status = parse_seconds("--wait", optarg, 1, &o->timeout)))
                return -1;
            break;
        case 'n':
            o->timeout = 0;
            break;
        case 'l':
            if ((*status = parse_seconds("--lease", optarg, 0, &o->expires)))
                return -1;
            o->expires_text = optarg;
            break;
        case 's':
            o->mode = ANYLOCK_SHARED;
            o->permits = 0;
            break;
        case 'x':
        case 'e': {
            /* anylock 0.1's -x was the lease: "-x 10" now would make 10 the
             * subcommand or the NAME.  Say so rather than run the wrong
             * thing. */
            double ignored;
            if (optind < argc && (!strcmp(argv[optind - 1], "-x") || !strcmp(argv[optind - 1], "-e")) &&
                anylock_parse_duration(argv[optind], &ignored) == ANYLOCK_OK) {
                char e[256];
                *status = usage_error("%s takes no argument: it is flock(1)'s exclusive (the default); the "
                                      "lease is -l %s",
                                      argv[optind - 1], cli_esc_str(e, sizeof e, argv[optind]));
                return -1;
            }
            o->mode = ANYLOCK_EXCLUSIVE;
            o->permits = 0;
            break;
        }
        case OPT_PERMITS:
            if ((*status = parse_count("--permits", optarg, 1, ANYLOCK_PERMITS_MAX, &v)))
                return -1;
            o->mode = ANYLOCK_SEMAPHORE;
            o->permits = (unsigned)v;
            break;
        case 'c':
            o->command = optarg;
            break;
        case 'k':
            if ((*status = parse_seconds("--kill-after", optarg, 1, &o->kill_after)))
                return -1;
            break;
        case 'E':
            if ((*status = parse_count("--conflict-exit-code", optarg, 0, 255, &v)))
                return -1;
            o->conflict_exit = (int)v;
            break;
        case OPT_ID:
            o->id = optarg;
            break;
        case 'q':
            o->quiet = 1;
            break;
        case 'v':
            o->verbose = 1;
            break;
        case OPT_JSON:
            o->json = 1;
            break;
        case OPT_NAMES:
            o->names = 1;
            break;
        case OPT_KEEP_GOING:
            o->keep_going_on_loss = 1;
            break;
        case OPT_CLOSE:
        case 'o':
            /* flock(1)'s "do not pass the lock's descriptor to the command":
             * anylock never does. */
            break;
        case 'u':
        case OPT_UNLOCK:
            *status = usage_error("-u/--unlock is flock(1)'s unlock, which anylock has no use for (the lock is "
                                  "released when the command exits, or by reset); the store is given with --url "
                                  "URL or $ANYLOCK_URL");
            return -1;
        case 'F':
        case OPT_NO_FORK:
            *status = usage_error("-F/--no-fork: anylock must stay to renew the lock while the command runs, so "
                                  "it always forks");
            return -1;
        case 'h':
            fputs(synopsis, stdout);
            fputs("\n", stdout);
            fputs(usage_text, stdout);
            *status = CLI_EXIT_OK;
            return -1;
        case 'V':
            printf("anylock %s (library %s)\nbackends:", ANYLOCK_VERSION_STRING, anylock_version());
            static const char *const schemes[] = {"sqlite", "file",    "redis",  "redis+unix", "memcached",
                                                  "postgres", "etcd", "migrate", "faults", "memory",     "open"};
            for (size_t i = 0; i < sizeof schemes / sizeof *schemes; i++)
                if (anylock_backend_available(schemes[i]))
                    printf(" %s", schemes[i]);
            printf("\n");
            *status = CLI_EXIT_OK;
            return -1;
        case ':': {
            char e[256];
            *status = usage_error("option %s needs an argument", cli_esc_str(e, sizeof e, argv[optind - 1]));
            return -1;
        }
        default: {
            char e[256], shortname[3] = {'-', (char)optopt, 0};
            const char *what = optopt ? shortname : argv[optind - 1];
            *status = usage_error("unknown option %s", cli_esc_str(e, sizeof e, what));
            return -1;
        }
        }
    }
    return optind;
}

/* The timeout= of the URL's own query (not a nested URL's, whose query is
 * percent-encoded inside a value), for wait, which polls rather than calls
 * acquire.  NAN if there is none, or it does not parse (open said so). */
static double url_timeout(const char *url)
{
    const char *q = strchr(url, '?');
    while (q) {
        q++;
        if (!strncmp(q, "timeout=", 8)) {
            char v[64];
            size_t n = strcspn(q + 8, "&#");
            if (n >= sizeof v)
                return NAN;
            memcpy(v, q + 8, n);
            v[n] = '\0';
            double t;
            return anylock_parse_duration(v, &t) == ANYLOCK_OK ? t : NAN;
        }
        q = strchr(q, '&');
    }
    return NAN;
}

/* ---- status, wait, list, reset ----------------------------------------------- */

typedef struct holder_list {
    const anylock_info *lock;
    cli_buf *json; /* NULL: one indented line per holder on stdout */
    int n;
} holder_list;

static int on_holder(const anylock_holder *h, void *userdata)
{
    holder_list *hl = userdata;
    anylock_info one;
    cli_holder_info(&one, hl->lock, h);
    if (hl->json) {
        if (hl->n)
            cli_buf_add(hl->json, ",", 1);
        cli_holder_json(hl->json, &one);
    } else {
        cli_print_holder_human(stdout, &one);
    }
    hl->n++;
    return 0;
}

/* status's answer; for a shared lock or a semaphore, each holder too (a
 * "holder_list" array in JSON, an indented line each when there are
 * several). */
static int print_info(anylock_client *c, const cli_options *o, const char *name, const anylock_info *info)
{
    if (o->quiet)
        return 0;
    int each = info->held && info->mode != ANYLOCK_EXCLUSIVE;
    cli_buf b = {0};
    holder_list hl = {info, o->json ? &b : NULL, 0};
    if (o->json) {
        cli_buf_add(&b, "{", 1);
        cli_info_json(&b, info);
        if (each) {
            size_t at = b.len;
            cli_buf_add(&b, ",\"holder_list\":[", 16);
            if (anylock_holders(c, name, on_holder, &hl) == ANYLOCK_OK)
                cli_buf_add(&b, "]", 1);
            else
                b.len = at; /* left out, as the store could not list them */
        }
        cli_buf_add(&b, "}\n", 2);
        if (b.nomem)
            cli_output_failure();
        else
            fwrite(b.p, 1, b.len, stdout);
        cli_buf_free(&b);
    } else {
        cli_print_info_human(stdout, info, 0);
        if (each && info->holders > 1 && anylock_holders(c, name, on_holder, &hl) != ANYLOCK_OK) {
            char m[1024];
            cli_error("cannot list the holders: %s", cli_esc_str(m, sizeof m, anylock_errmsg(c)));
        }
    }
    return 0;
}

static int cmd_status(anylock_client *c, const cli_options *o, const char *name)
{
    anylock_info info;
    anylock_status st = anylock_inspect(c, name, &info);
    if (st != ANYLOCK_OK) {
        char n[256], u[ANYLOCK_URL_MAX], m[1024];
        cli_error("cannot inspect \"%s\" on %s: %s", cli_esc_str(n, sizeof n, name),
                  cli_esc_str(u, sizeof u, anylock_client_url(c)), cli_esc_str(m, sizeof m, anylock_errmsg(c)));
        return cli_exit_for(st);
    }
    print_info(c, o, name, &info);
    return info.held ? CLI_EXIT_OK : CLI_EXIT_CONFLICT;
}

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Whether info is free for what wait was asked: no holder at all, or (with
 * -s) no exclusive one. */
static int free_for(const cli_options *o, const anylock_info *info)
{
    return !info->held || (o->mode == ANYLOCK_SHARED && info->mode == ANYLOCK_SHARED);
}

/* wait: polls inspect with capped, jittered backoff until the name is free
 * or the timeout passes.  No public call blocks until a name is free without
 * taking it, and taking it, even for a moment, would turn away a contender
 * that tries once. */
static int cmd_wait(anylock_client *c, const cli_options *o, const char *name, double timeout)
{
    char n[256];
    cli_esc_str(n, sizeof n, name);
    double t0 = mono_now(), delay = 0.01;
    double deadline = isinf(timeout) ? INFINITY : t0 + timeout;
    unsigned seed = (unsigned)((uintptr_t)&t0 ^ (unsigned)time(NULL));
    int said = 0;
    anylock_info info;
    for (;;) {
        anylock_status st = anylock_inspect(c, name, &info);
        if (st != ANYLOCK_OK) {
            char u[ANYLOCK_URL_MAX], m[1024];
            cli_error("cannot inspect \"%s\" on %s: %s", n, cli_esc_str(u, sizeof u, anylock_client_url(c)),
                      cli_esc_str(m, sizeof m, anylock_errmsg(c)));
            return cli_exit_for(st);
        }
        double now = mono_now();
        if (free_for(o, &info) || now >= deadline)
            break;
        if (!said) {
            char who[2048];
            cli_verbose(o, "waiting for \"%s\" to be free: held by %s", n, cli_holder_phrase(who, sizeof who, &info));
            said = 1;
        }
        double left = deadline - now;
        double jitter = 0.5 + (double)(rand_r(&seed) % 1000) / 2000.0; /* 0.5 to 1 */
        double d = delay * jitter;
        if (d > left)
            d = left;
        struct timespec ts = {(time_t)d, (long)((d - floor(d)) * 1e9)};
        while (nanosleep(&ts, &ts) && errno == EINTR)
            ;
        delay = delay * 2 > 0.5 ? 0.5 : delay * 2;
    }
    double waited = mono_now() - t0;
    int is_free = free_for(o, &info);
    if (o->json && !o->quiet) {
        cli_buf b = {0};
        cli_buf_add(&b, "{", 1);
        cli_json_field(&b, "name", name, strlen(name));
        cli_buf_printf(&b, ",\"free\":%s,\"waited\":%.3f", is_free ? "true" : "false", waited);
        if (!is_free) {
            cli_buf_add(&b, ",\"holder\":{", 11);
            cli_info_json(&b, &info);
            cli_buf_add(&b, "}", 1);
        }
        cli_buf_add(&b, "}\n", 2);
        if (b.nomem)
            cli_output_failure();
        else
            fwrite(b.p, 1, b.len, stdout);
        cli_buf_free(&b);
    } else if (!o->quiet) {
        char who[2048];
        if (is_free)
            printf("free after %.1f s\n", waited);
        else
            printf("still held after %.1f s by %s\n", waited, cli_holder_phrase(who, sizeof who, &info));
    }
    return is_free ? CLI_EXIT_OK : o->conflict_exit;
}

typedef struct list_state {
    const cli_options *o;
    size_t count;
    cli_buf json;
} list_state;

static int list_one(const anylock_info *info, void *userdata)
{
    list_state *ls = userdata;
    if (ls->o->names) {
        char name[4 * ANYLOCK_NAME_MAX + 8];
        printf("%s\n", cli_esc(name, sizeof name, info->name, info->name_len));
    } else if (ls->o->json) {
        cli_buf_add(&ls->json, ls->count ? ",\n {" : "\n {", ls->count ? 4 : 3);
        cli_info_json(&ls->json, info);
        cli_buf_add(&ls->json, "}", 1);
    } else {
        cli_print_info_human(stdout, info, 1);
    }
    ls->count++;
    return 0;
}

static int cmd_list(anylock_client *c, const cli_options *o)
{
    list_state ls = {o, 0, {0}};
    anylock_status st = anylock_list(c, list_one, &ls);
    if (st != ANYLOCK_OK) {
        char u[ANYLOCK_URL_MAX], m[1024];
        cli_error("cannot list the locks on %s: %s", cli_esc_str(u, sizeof u, anylock_client_url(c)),
                  cli_esc_str(m, sizeof m, anylock_errmsg(c)));
        cli_buf_free(&ls.json);
        return cli_exit_for(st);
    }
    /* The array is printed whole, so that a failed listing prints no half
     * array. */
    if (o->json && !o->names) {
        cli_buf_add(&ls.json, ls.count ? "\n]\n" : "]\n", ls.count ? 3 : 2);
        if (ls.json.nomem)
            cli_output_failure();
        else {
            fputs("[", stdout);
            fwrite(ls.json.p, 1, ls.json.len, stdout);
        }
    }
    cli_buf_free(&ls.json);
    char p[512];
    cli_verbose(o, "%zu lock%s held under the prefix \"%s\"", ls.count, ls.count == 1 ? "" : "s",
                cli_esc_str(p, sizeof p, anylock_client_prefix(c)));
    return CLI_EXIT_OK;
}

static int cmd_reset(anylock_client *c, const cli_options *o, const char *name)
{
    /* Who held it is for the message only: the reset itself is
     * unconditional. */
    anylock_info info;
    char n[256];
    cli_esc_str(n, sizeof n, name);
    if (anylock_inspect(c, name, &info) != ANYLOCK_OK)
        memset(&info, 0, sizeof info);
    anylock_status st = anylock_reset(c, name);
    if (st != ANYLOCK_OK) {
        char u[ANYLOCK_URL_MAX], m[1024];
        cli_error("cannot reset \"%s\" on %s: %s", n, cli_esc_str(u, sizeof u, anylock_client_url(c)),
                  cli_esc_str(m, sizeof m, anylock_errmsg(c)));
        return cli_exit_for(st);
    }
    if (o->json) {
        cli_buf b = {0};
        cli_buf_add(&b, "{", 1);
        cli_json_field(&b, "reset", name, strlen(name));
        cli_buf_printf(&b, ",\"was_held\":%s", info.held ? "true" : "false");
        if (info.held) {
            /* The holder as status shows it, without the name twice. */
            cli_buf_add(&b, ",\"was\":{", 8);
            cli_info_json(&b, &info);
            cli_buf_add(&b, "}", 1);
        }
        cli_buf_add(&b, "}\n", 2);
        if (b.nomem)
            cli_output_failure();
        else
            fwrite(b.p, 1, b.len, stdout);
        cli_buf_free(&b);
    } else if (info.held) {
        char who[2048];
        printf("reset %s (it was held by %s)\n", n, cli_holder_phrase(who, sizeof who, &info));
    } else {
        printf("reset %s (it was free)\n", n);
    }
    return CLI_EXIT_OK;
}

static int cmd_reset_all(anylock_client *c, const cli_options *o)
{
    size_t count = SIZE_MAX; /* stays so when the store cannot tell */
    char p[512];
    anylock_status st = anylock_reset_all(c, &count);
    if (st != ANYLOCK_OK) {
        char u[ANYLOCK_URL_MAX], m[1024];
        cli_error("cannot reset the locks on %s: %s", cli_esc_str(u, sizeof u, anylock_client_url(c)),
                  cli_esc_str(m, sizeof m, anylock_errmsg(c)));
        return cli_exit_for(st);
    }
    const char *prefix = anylock_client_prefix(c);
    if (o->json) {
        cli_buf b = {0};
        cli_buf_add(&b, "{", 1);
        cli_json_field(&b, "prefix", prefix, strlen(prefix));
        if (count == SIZE_MAX)
            cli_buf_add(&b, ",\"count\":null}\n", 15);
        else
            cli_buf_printf(&b, ",\"count\":%zu}\n", count);
        if (b.nomem)
            cli_output_failure();
        else
            fwrite(b.p, 1, b.len, stdout);
        cli_buf_free(&b);
    } else if (count == SIZE_MAX) {
        printf("reset every lock under the prefix \"%s\"\n", cli_esc_str(p, sizeof p, prefix));
    } else {
        printf("reset %zu lock%s under the prefix \"%s\"\n", count, count == 1 ? "" : "s",
               cli_esc_str(p, sizeof p, prefix));
    }
    return CLI_EXIT_OK;
}

/* ---- main -------------------------------------------------------------------- */

/* The one rule for output that could not be written: exit 74 instead of a
 * status that reports success or an answer (0, and 1 or -E's code for
 * status, wait and run's conflict), never instead of another failure or of
 * the command's own status. */
static int finish(int status, int answer_status, int from_command)
{
    int err = 0;
    int failed = cli_output_failed(&err);
    if (failed && !from_command && (status == CLI_EXIT_OK || status == answer_status)) {
        cli_error("cannot write the output: %s", strerror(err));
        return CLI_EXIT_IOERR;
    }
    if (failed && from_command && status == CLI_EXIT_OK)
        return CLI_EXIT_IOERR;
    return status;
}

int main(int argc, char **argv)
{
    cli_options o = {.timeout = NAN, .expires = NAN, .kill_after = 5.0, .conflict_exit = CLI_EXIT_CONFLICT};
    int status = CLI_EXIT_OK;
    cli_std_fix();

    int first = parse_options(argc, argv, 1, &o, &status);
    if (first < 0)
        return finish(status, -1, 0);
    if (first >= argc)
        return usage_error("%s", "no subcommand given");
    const char *cmd = argv[first];
    static const char *const cmds[] = {"run", "status", "wait", "list", "reset", "reset-all"};
    size_t k = 0;
    while (k < sizeof cmds / sizeof *cmds && strcmp(cmd, cmds[k]))
        k++;
    if (k == sizeof cmds / sizeof *cmds) {
        char e[256];
        return usage_error("unknown subcommand \"%s\"", cli_esc_str(e, sizeof e, cmd));
    }
    int is_run = k == 0;

    /* Options may also follow the subcommand.  run stops at NAME, so that the
     * command's own options stay the command's. */
    int sub_argc = argc - first;
    char **sub_argv = argv + first;
    int next = parse_options(sub_argc, sub_argv, is_run, &o, &status);
    if (next < 0)
        return finish(status, -1, 0);
    char **operands = sub_argv + next;
    int noperands = sub_argc - next;

    const char *name = NULL;
    char **command = NULL;
    if (is_run) {
        if (noperands < 1)
            return usage_error("%s", "run needs a lock NAME and a COMMAND");
        name = operands[0];
        /* flock(1)'s form: NAME -c 'COMMAND'. */
        if (noperands >= 2 && (!strcmp(operands[1], "-c") || !strcmp(operands[1], "--command"))) {
            if (o.command)
                return usage_error("%s", "-c given twice");
            if (noperands != 3)
                return usage_error("%s", noperands < 3 ? "-c needs a COMMAND (one argument, run with /bin/sh -c)"
                                                       : "-c takes one COMMAND argument; quote it whole");
            o.command = operands[2];
        } else if (o.command) {
            if (noperands != 1)
                return usage_error("%s", "-c takes one COMMAND; give either -c 'COMMAND' or COMMAND [ARG...]");
        } else {
            if (noperands < 2)
                return usage_error("%s", "run needs a COMMAND to run under the lock");
            command = operands + 1;
        }
    } else {
        if (o.command)
            return usage_error("-c is for run, not %s", cmd);
        if (o.names && strcmp(cmd, "list"))
            return usage_error("--names is for list, not %s", cmd);
        if (!strcmp(cmd, "status") || !strcmp(cmd, "reset") || !strcmp(cmd, "wait")) {
            if (noperands != 1)
                return usage_error(noperands ? "%s takes exactly one lock NAME" : "%s needs a lock NAME", cmd);
            name = operands[0];
        } else if (noperands != 0) {
            return usage_error("%s takes no operands", cmd);
        }
    }
    if (is_run && !o.id) {
        o.id = getenv("ANYLOCK_ID");
        if (o.id && !o.id[0])
            return usage_error("%s", "ANYLOCK_ID is set but empty: give it an owner id, or unset it for a fresh one");
    } else if (o.id && !o.id[0]) {
        return usage_error("%s", "--id is empty (an unset variable?): give an owner id, or leave --id out");
    }
    if (is_run && !isnan(o.expires) && !isinf(o.expires) && o.expires < CLI_LEASE_MIN) {
        char e[256];
        return usage_error("--lease %s is too short for run to renew: a renewal must reach the store within a "
                           "third of the lease (and the library rounds any lease up to whole milliseconds); give "
                           "at least %g, or \"never\"",
                           cli_esc_str(e, sizeof e, o.expires_text), CLI_LEASE_MIN);
    }

    /* The store: --url, else $ANYLOCK_URL, else the user's own SQLite file
     * (the same one whatever the environment: see anylock_default_url).
     * An empty one is a script's unset variable, never "the default". */
    char url_buf[ANYLOCK_URL_MAX + 1];
    if (o.url && !o.url[0])
        return usage_error("%s", "--url is empty (an unset variable?): give a URL, or leave --url out for "
                                 "$ANYLOCK_URL or the default store");
    if (!o.url) {
        anylock_status st = anylock_default_url(url_buf, sizeof url_buf);
        if (st != ANYLOCK_OK) {
            char m[1024];
            cli_error("no store: %s", cli_esc_str(m, sizeof m, url_buf));
            return cli_exit_for(st);
        }
        o.url = url_buf;
    }

    cli_fds_snapshot();
    anylock_client *c = NULL;
    anylock_status st = anylock_open(o.url, &c);
    if (st != ANYLOCK_OK) {
        /* anylock_client_url() is redacted even when the URL did not parse;
         * the library's message never holds a password either. */
        char u[ANYLOCK_URL_MAX], m[1024];
        cli_error("cannot open the store %s: %s", c ? cli_esc_str(u, sizeof u, anylock_client_url(c)) : "",
                  c ? cli_esc_str(m, sizeof m, anylock_errmsg(c)) : "out of memory");
        anylock_close(c);
        cli_fds_forget();
        return finish(st == ANYLOCK_NOMEM ? CLI_EXIT_SOFTWARE : cli_exit_for(st), -1, 0);
    }
    {
        char u[ANYLOCK_URL_MAX];
        cli_verbose(&o, "store %s", cli_esc_str(u, sizeof u, anylock_client_url(c)));
    }

    /* The wait timeout, when not given: the URL's, else the library's
     * default, so that messages and events can say it. */
    if (isnan(o.timeout))
        o.timeout = url_timeout(o.url);
    if (isnan(o.timeout))
        o.timeout = ANYLOCK_DEFAULT_TIMEOUT;

    int answer = -1, from_command = 0;
    if (is_run) {
        status = cli_run(c, &o, name, command, &from_command);
        answer = o.conflict_exit;
    } else if (!strcmp(cmd, "status")) {
        status = cmd_status(c, &o, name);
        answer = CLI_EXIT_CONFLICT;
    } else if (!strcmp(cmd, "wait")) {
        status = cmd_wait(c, &o, name, o.timeout);
        answer = o.conflict_exit;
    } else if (!strcmp(cmd, "list")) {
        status = cmd_list(c, &o);
    } else if (!strcmp(cmd, "reset")) {
        status = cmd_reset(c, &o, name);
    } else {
        status = cmd_reset_all(c, &o);
    }

    anylock_close(c);
    cli_fds_forget();
    return finish(status, answer, from_command);
}
