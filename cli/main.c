/*
 * anylock: flock(1) across processes and machines.  Parses the command line,
 * opens the store, and runs one subcommand:
 *
 *   anylock [OPTIONS] run NAME COMMAND [ARG...]
 *   anylock [OPTIONS] status NAME
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
#include <sys/stat.h>

#include "cli.h"

static const char synopsis[] =
    "usage: anylock [OPTIONS] run NAME COMMAND [ARG...]\n"
    "       anylock [OPTIONS] status NAME\n"
    "       anylock [OPTIONS] list\n"
    "       anylock [OPTIONS] reset NAME\n"
    "       anylock [OPTIONS] reset-all\n";

static const char usage_text[] =
    "Options (before or after the subcommand, before NAME for run):\n"
    "  -u, --url URL              the store (default $ANYLOCK_URL, else a per-user SQLite file)\n"
    "  -w, --timeout SECONDS      how long run waits for the lock; 0 tries once; \"forever\"\n"
    "                             (default: the URL's timeout=, else 60)\n"
    "  -x, --expires SECONDS      the lock's expiry; run renews it while the command runs\n"
    "                             (default: the URL's expires=, else 10)\n"
    "      --id ID                the owner id (default: a fresh random id)\n"
    "  -E, --conflict-exit-code N exit status when the lock could not be had (default 1)\n"
    "      --keep-going-on-loss   let the command finish if the lock is lost\n"
    "                             (default: terminate it)\n"
    "  -k, --kill-after SECONDS   after SIGTERM on loss, SIGKILL this much later (default 5)\n"
    "  -v, --verbose              say when waiting, acquired, renewed, released\n"
    "      --json                 machine-readable output (status, list, reset, reset-all)\n"
    "  -h, --help                 this help\n"
    "  -V, --version              the version and the backends of this build\n"
    "\n"
    "Exit status: the command's own for run (128+N if killed by signal N); 1 when the\n"
    "lock could not be had in time (-E); 64 usage error or bad URL; 69 store unreachable;\n"
    "70 other failure; 126/127 the command cannot be run / was not found.\n";

enum { OPT_ID = 256, OPT_JSON, OPT_KEEP_GOING };

static const struct option long_options[] = {
    {"url", required_argument, NULL, 'u'},
    {"timeout", required_argument, NULL, 'w'},
    {"expires", required_argument, NULL, 'x'},
    {"id", required_argument, NULL, OPT_ID},
    {"conflict-exit-code", required_argument, NULL, 'E'},
    {"keep-going-on-loss", no_argument, NULL, OPT_KEEP_GOING},
    {"kill-after", required_argument, NULL, 'k'},
    {"verbose", no_argument, NULL, 'v'},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

static int usage_error(const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 1, 2)))
#endif
    ;

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("anylock: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n", stderr);
    fputs(synopsis, stderr);
    fputs("Try 'anylock --help' for the options.\n", stderr);
    return CLI_EXIT_USAGE;
}

/* Seconds as the command line gives them: a decimal number, or "forever"
 * (also "never", "inf") for no limit. */
static int parse_seconds(const char *s, int allow_zero, double *out)
{
    if (!strcmp(s, "forever") || !strcmp(s, "never") || !strcmp(s, "inf")) {
        *out = ANYLOCK_FOREVER;
        return 0;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v) || v < 0 || (v == 0 && !allow_zero) ||
        v > ANYLOCK_DURATION_MAX)
        return -1;
    *out = v;
    return 0;
}

/* Parses options from argv[1...] (argv[0] is skipped, as getopt does) and
 * returns the index of the first operand, or -1 after a usage error (its
 * exit status in *status). */
static int parse_options(int argc, char **argv, int stop_at_operand, cli_options *o, int *status)
{
    const char *shortopts = stop_at_operand ? "+:u:w:x:E:k:vhV" : ":u:w:x:E:k:vhV";
    optind = 0; /* glibc: start afresh on this argv */
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, shortopts, long_options, NULL)) != -1) {
        switch (c) {
        case 'u':
            o->url = optarg;
            break;
        case 'w':
            if (parse_seconds(optarg, 1, &o->timeout)) {
                *status = usage_error("bad timeout \"%s\": give seconds (decimals allowed) or \"forever\"", optarg);
                return -1;
            }
            break;
        case 'x':
            if (parse_seconds(optarg, 0, &o->expires)) {
                *status = usage_error("bad expiry \"%s\": give seconds more than 0 (decimals allowed)", optarg);
                return -1;
            }
            break;
        case 'k':
            if (parse_seconds(optarg, 1, &o->kill_after)) {
                *status = usage_error("bad --kill-after \"%s\": give seconds (decimals allowed)", optarg);
                return -1;
            }
            break;
        case 'E': {
            char *end;
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (end == optarg || *end || errno || v < 0 || v > 255) {
                *status = usage_error("bad exit code \"%s\": give a number from 0 to 255", optarg);
                return -1;
            }
            o->conflict_exit = (int)v;
            break;
        }
        case OPT_ID:
            o->id = optarg;
            break;
        case 'v':
            o->verbose = 1;
            break;
        case OPT_JSON:
            o->json = 1;
            break;
        case OPT_KEEP_GOING:
            o->keep_going_on_loss = 1;
            break;
        case 'h':
            fputs(synopsis, stdout);
            fputs("\n", stdout);
            fputs(usage_text, stdout);
            *status = CLI_EXIT_OK;
            return -1;
        case 'V':
            printf("anylock %s (library %s)\nbackends:", ANYLOCK_VERSION_STRING, anylock_version());
            static const char *const schemes[] = {"sqlite", "file", "redis", "redis+unix", "memcached", "etcd", "migrate", "memory", "open"};
            for (size_t i = 0; i < sizeof schemes / sizeof *schemes; i++)
                if (anylock_backend_available(schemes[i]))
                    printf(" %s", schemes[i]);
            printf("\n");
            *status = CLI_EXIT_OK;
            return -1;
        case ':':
            *status = usage_error("option %s needs an argument", argv[optind - 1]);
            return -1;
        default:
            *status = usage_error("unknown option %s", argv[optind - 1]);
            return -1;
        }
    }
    return optind;
}

/* Appends s to buf percent-escaped as a URL path (only unreserved characters
 * and '/' stay as they are). */
static int append_path(char *buf, size_t size, const char *s)
{
    size_t n = strlen(buf);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                    strchr("-._~/", *p);
        if (n + 4 >= size)
            return -1;
        n += (size_t)snprintf(buf + n, size - n, plain ? "%c" : "%%%02X", *p);
    }
    return 0;
}

/* Makes dir (and, if parent_too, its parent) with mode 0700 if missing. */
static int make_dir(const char *dir, int parent_too)
{
    if (parent_too) {
        char parent[4096];
        snprintf(parent, sizeof parent, "%s", dir);
        char *slash = strrchr(parent, '/');
        if (slash && slash != parent) {
            *slash = '\0';
            if (mkdir(parent, 0700) && errno != EEXIST)
                return -1;
        }
    }
    if (mkdir(dir, 0700) && errno != EEXIST)
        return -1;
    return 0;
}

/* The default store: the embedded SQLite database in a per-user file,
 * $XDG_RUNTIME_DIR/anylock/locks.db (private to the user, gone at logout),
 * else $XDG_CACHE_HOME/anylock/locks.db, else ~/.cache/anylock/locks.db. */
static int default_url(char *url, size_t size)
{
    char dir[4096];
    struct stat st;
    const char *run = getenv("XDG_RUNTIME_DIR");
    const char *cache = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    int parent_too = 0;
    if (run && run[0] == '/' && stat(run, &st) == 0 && S_ISDIR(st.st_mode))
        snprintf(dir, sizeof dir, "%s/anylock", run);
    else if (cache && cache[0] == '/')
        snprintf(dir, sizeof dir, "%s/anylock", cache), parent_too = 1;
    else if (home && home[0] == '/')
        snprintf(dir, sizeof dir, "%s/.cache/anylock", home), parent_too = 1;
    else {
        cli_error("no store given: set ANYLOCK_URL or use -u URL (neither XDG_RUNTIME_DIR nor HOME is set)");
        return CLI_EXIT_USAGE;
    }
    if (make_dir(dir, parent_too)) {
        cli_error("cannot create %s: %s", dir, strerror(errno));
        return CLI_EXIT_SOFTWARE;
    }
    /* sqlite:///x is relative; an absolute path takes one more slash. */
    snprintf(url, size, "sqlite:///");
    if (append_path(url, size, dir) || append_path(url, size, "/locks.db")) {
        cli_error("the path %s is too long for a URL", dir);
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}

static int cmd_status(anylock_client *c, const cli_options *o, const char *name)
{
    anylock_info info;
    anylock_status st = anylock_inspect(c, name, &info);
    if (st != ANYLOCK_OK) {
        cli_error("cannot inspect \"%s\" on %s: %s", name, anylock_client_url(c), anylock_errmsg(c));
        return cli_exit_for(st);
    }
    if (o->json) {
        cli_print_info_json(stdout, &info);
        putchar('\n');
    } else {
        cli_print_info_human(stdout, &info, 0);
    }
    return CLI_EXIT_OK;
}

typedef struct list_state {
    const cli_options *o;
    size_t count;
} list_state;

static int list_one(const anylock_info *info, void *userdata)
{
    list_state *ls = userdata;
    if (ls->o->json) {
        fputs(ls->count ? ",\n " : "\n ", stdout);
        cli_print_info_json(stdout, info);
    } else {
        cli_print_info_human(stdout, info, 1);
    }
    ls->count++;
    return 0;
}

static int cmd_list(anylock_client *c, const cli_options *o)
{
    list_state ls = {o, 0};
    if (o->json)
        fputs("[", stdout);
    anylock_status st = anylock_list(c, list_one, &ls);
    if (o->json)
        fputs(ls.count ? "\n]\n" : "]\n", stdout);
    fflush(stdout);
    if (st != ANYLOCK_OK) {
        cli_error("cannot list the locks on %s: %s", anylock_client_url(c), anylock_errmsg(c));
        return cli_exit_for(st);
    }
    cli_verbose(o, "%zu lock%s held under the prefix \"%s\"", ls.count, ls.count == 1 ? "" : "s",
                anylock_client_prefix(c));
    return CLI_EXIT_OK;
}

static int cmd_reset(anylock_client *c, const cli_options *o, const char *name)
{
    /* Who held it is for the message only: the reset itself is
     * unconditional. */
    anylock_info info;
    if (anylock_inspect(c, name, &info) != ANYLOCK_OK)
        info.held = 0, info.owner[0] = '\0';
    anylock_status st = anylock_reset(c, name);
    if (st != ANYLOCK_OK) {
        cli_error("cannot reset \"%s\" on %s: %s", name, anylock_client_url(c), anylock_errmsg(c));
        return cli_exit_for(st);
    }
    if (o->json) {
        fputs("{\"reset\":", stdout);
        cli_json_string(stdout, name);
        fprintf(stdout, ",\"was_held\":%s,\"owner\":", info.held ? "true" : "false");
        if (info.held && info.owner[0])
            cli_json_string(stdout, info.owner);
        else
            fputs("null", stdout);
        fputs("}\n", stdout);
    } else if (info.held) {
        printf("reset %s (it was held by %s)\n", name, info.owner[0] ? info.owner : "an unknown owner");
    } else {
        printf("reset %s (it was free)\n", name);
    }
    return CLI_EXIT_OK;
}

static int cmd_reset_all(anylock_client *c, const cli_options *o)
{
    size_t count = SIZE_MAX; /* stays so when the store cannot tell */
    anylock_status st = anylock_reset_all(c, &count);
    if (st != ANYLOCK_OK) {
        cli_error("cannot reset the locks on %s: %s", anylock_client_url(c), anylock_errmsg(c));
        return cli_exit_for(st);
    }
    if (o->json) {
        fputs("{\"prefix\":", stdout);
        cli_json_string(stdout, anylock_client_prefix(c));
        if (count == SIZE_MAX)
            fputs(",\"count\":null}\n", stdout);
        else
            fprintf(stdout, ",\"count\":%zu}\n", count);
    } else if (count == SIZE_MAX) {
        printf("reset every lock under the prefix \"%s\"\n", anylock_client_prefix(c));
    } else {
        printf("reset %zu lock%s under the prefix \"%s\"\n", count, count == 1 ? "" : "s",
               anylock_client_prefix(c));
    }
    return CLI_EXIT_OK;
}

int main(int argc, char **argv)
{
    cli_options o = {.timeout = NAN, .expires = NAN, .kill_after = 5.0, .conflict_exit = CLI_EXIT_CONFLICT};
    int status = CLI_EXIT_OK;

    int first = parse_options(argc, argv, 1, &o, &status);
    if (first < 0)
        return status;
    if (first >= argc)
        return usage_error("%s", "no subcommand given");
    const char *cmd = argv[first];
    int is_run = !strcmp(cmd, "run");
    if (!is_run && strcmp(cmd, "status") && strcmp(cmd, "list") && strcmp(cmd, "reset") && strcmp(cmd, "reset-all"))
        return usage_error("unknown subcommand \"%s\"", cmd);

    /* Options may also follow the subcommand.  run stops at NAME, so that the
     * command's own options stay the command's. */
    int sub_argc = argc - first;
    char **sub_argv = argv + first;
    int next = parse_options(sub_argc, sub_argv, is_run, &o, &status);
    if (next < 0)
        return status;
    char **operands = sub_argv + next;
    int noperands = sub_argc - next;

    const char *name = NULL;
    if (is_run) {
        if (noperands < 1)
            return usage_error("%s", "run needs a lock NAME and a COMMAND");
        if (noperands < 2)
            return usage_error("%s", "run needs a COMMAND to run under the lock");
        name = operands[0];
    } else if (!strcmp(cmd, "status") || !strcmp(cmd, "reset")) {
        if (noperands != 1)
            return usage_error(noperands ? "%s takes exactly one lock NAME" : "%s needs a lock NAME", cmd);
        name = operands[0];
    } else if (noperands != 0) {
        return usage_error("%s takes no operands", cmd);
    }

    char url_buf[ANYLOCK_URL_MAX + 1];
    if (!o.url)
        o.url = getenv("ANYLOCK_URL");
    if (!o.url || !o.url[0]) {
        status = default_url(url_buf, sizeof url_buf);
        if (status != CLI_EXIT_OK)
            return status;
        o.url = url_buf;
    }

    cli_fds_snapshot();
    anylock_client *c = NULL;
    anylock_status st = anylock_open(o.url, &c);
    if (st != ANYLOCK_OK) {
        /* The URL is printed only in the library's redacted form, and only
         * once it has parsed. */
        const char *shown = anylock_client_url(c);
        cli_error("cannot open the store%s%s: %s", shown[0] ? " " : "", shown, anylock_errmsg(c));
        anylock_close(c);
        return cli_exit_for(st);
    }
    cli_verbose(&o, "store %s", anylock_client_url(c));

    if (is_run)
        status = cli_run(c, &o, name, operands + 1);
    else if (!strcmp(cmd, "status"))
        status = cmd_status(c, &o, name);
    else if (!strcmp(cmd, "list"))
        status = cmd_list(c, &o);
    else if (!strcmp(cmd, "reset"))
        status = cmd_reset(c, &o, name);
    else
        status = cmd_reset_all(c, &o);

    anylock_close(c);
    cli_fds_forget();
    if (fflush(stdout) != 0 && status == CLI_EXIT_OK) {
        cli_error("cannot write the output: %s", strerror(errno));
        status = CLI_EXIT_SOFTWARE;
    }
    return status;
}
