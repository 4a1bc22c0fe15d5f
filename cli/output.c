/*
 * What the anylock command prints: error and verbose messages on stderr, and
 * lock states on stdout, for people or (with --json) for scripts.
 */
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

int cli_exit_for(anylock_status st)
{
    switch (st) {
    case ANYLOCK_OK:
        return CLI_EXIT_OK;
    case ANYLOCK_BUSY:
    case ANYLOCK_TIMEOUT:
        return CLI_EXIT_CONFLICT;
    /* What the user typed is wrong: the command line or the URL. */
    case ANYLOCK_INVALID:
    case ANYLOCK_BAD_NAME:
    case ANYLOCK_BAD_ID:
    case ANYLOCK_BAD_PREFIX:
    case ANYLOCK_BAD_DURATION:
    case ANYLOCK_TRY_WITH_TIMEOUT:
    case ANYLOCK_TIMEOUT_TOO_LARGE:
    case ANYLOCK_RENEWAL_NEEDS_EXPIRY:
    case ANYLOCK_URL_MALFORMED:
    case ANYLOCK_URL_NO_SCHEME:
    case ANYLOCK_URL_UNKNOWN_SCHEME:
    case ANYLOCK_URL_BAD_ESCAPE:
    case ANYLOCK_URL_BAD_USERINFO:
    case ANYLOCK_URL_BAD_HOST:
    case ANYLOCK_URL_BAD_PORT:
    case ANYLOCK_URL_BAD_PATH:
    case ANYLOCK_URL_BAD_QUERY:
    case ANYLOCK_URL_UNKNOWN_PARAM:
    case ANYLOCK_URL_BAD_PARAM:
    case ANYLOCK_URL_TOO_LONG:
        return CLI_EXIT_USAGE;
    /* The store cannot be used from here: not reachable, refused us, or its
     * backend is not in this build. */
    case ANYLOCK_CONNECT:
    case ANYLOCK_IO:
    case ANYLOCK_AUTH:
    case ANYLOCK_ACCESS:
    case ANYLOCK_BACKEND_DISABLED:
        return CLI_EXIT_UNAVAILABLE;
    default:
        return CLI_EXIT_SOFTWARE;
    }
}

static void vmessage(const char *fmt, va_list ap)
{
    /* One buffer and one write, so that lines from anylock and its child do
     * not interleave mid-line. */
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "anylock: ");
    vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
    fprintf(stderr, "%s\n", buf);
    fflush(stderr);
}

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(fmt, ap);
    va_end(ap);
}

void cli_verbose(const cli_options *o, const char *fmt, ...)
{
    if (!o->verbose)
        return;
    va_list ap;
    va_start(ap, fmt);
    vmessage(fmt, ap);
    va_end(ap);
}

void cli_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':
            fputs("\\\"", f);
            break;
        case '\\':
            fputs("\\\\", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        case '\r':
            fputs("\\r", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        default:
            /* Names are UTF-8 and pass through; control characters (which
             * the library refuses in names anyway) are escaped. */
            if (*p < 0x20 || *p == 0x7f)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

const char *cli_format_seconds(char *buf, size_t size, double seconds)
{
    if (isinf(seconds))
        snprintf(buf, size, "never");
    else if (seconds < 1)
        snprintf(buf, size, "%.2f s", seconds);
    else
        snprintf(buf, size, "%.1f s", seconds);
    return buf;
}

void cli_print_info_human(FILE *f, const anylock_info *info, int with_name)
{
    char t[32];
    const char *owner = info->owner[0] ? info->owner : "an unknown owner";
    if (with_name)
        fprintf(f, "%s: ", info->name);
    if (!info->held)
        fprintf(f, "free\n");
    else if (isinf(info->expires_in))
        fprintf(f, "held by %s, never expires\n", owner);
    else
        fprintf(f, "held by %s, expires in %s\n", owner, cli_format_seconds(t, sizeof t, info->expires_in));
}

void cli_print_info_json(FILE *f, const anylock_info *info)
{
    fputs("{\"name\":", f);
    cli_json_string(f, info->name);
    fprintf(f, ",\"held\":%s,\"owner\":", info->held ? "true" : "false");
    if (info->held && info->owner[0])
        cli_json_string(f, info->owner);
    else
        fputs("null", f);
    fputs(",\"expires_in\":", f);
    if (info->held && !isinf(info->expires_in))
        fprintf(f, "%.3f", info->expires_in);
    else
        fputs("null", f);
    fputc('}', f);
}

/* The descriptors open at start, from /proc/self/fd (where there is no
 * /proc, nothing is recorded and nothing is marked). */
static int *start_fds;
static size_t nstart_fds;
static int have_snapshot;

static int fd_listed(int fd)
{
    for (size_t i = 0; i < nstart_fds; i++)
        if (start_fds[i] == fd)
            return 1;
    return 0;
}

void cli_fds_snapshot(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return;
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        int fd = atoi(e->d_name);
        if (fd == dirfd(d))
            continue;
        if (nstart_fds == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            int *p = realloc(start_fds, ncap * sizeof *p);
            if (!p)
                break;
            start_fds = p;
            cap = ncap;
        }
        start_fds[nstart_fds++] = fd;
    }
    closedir(d);
    have_snapshot = 1;
}

void cli_fds_cloexec(void)
{
    if (!have_snapshot)
        return;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        int fd = atoi(e->d_name);
        if (fd > 2 && fd != dirfd(d) && !fd_listed(fd))
            fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC);
    }
    closedir(d);
}

void cli_fds_forget(void)
{
    free(start_fds);
    start_fds = NULL;
    nstart_fds = 0;
    have_snapshot = 0;
}
