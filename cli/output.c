/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * What the anylock command prints: error and verbose messages and run's JSON
 * events on stderr, and lock states on stdout, for people or (with --json)
 * for scripts.
 *
 * Everything that came from the store (names, owner ids, host names, labels,
 * the library's messages about them) may be any bytes another client wrote.
 * Human output escapes what could move the terminal or forge a line; JSON is
 * always valid UTF-8.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
    /* The store cannot be used from here: not reachable, refused us, its
     * answer was lost, or its backend is not in this build. */
    case ANYLOCK_CONNECT:
    case ANYLOCK_IO:
    case ANYLOCK_AUTH:
    case ANYLOCK_ACCESS:
    case ANYLOCK_BACKEND_DISABLED:
    case ANYLOCK_OUTCOME_UNKNOWN:
        return CLI_EXIT_UNAVAILABLE;
    default:
        return CLI_EXIT_SOFTWARE;
    }
}

/* ---- knowing whether the output was written ------------------------------ */

static atomic_int output_failed;
static atomic_int output_errno;
static int std_closed[3];

void cli_output_failure(void)
{
    int e = errno ? errno : EIO, zero = 0;
    atomic_compare_exchange_strong(&output_errno, &zero, e);
    atomic_store(&output_failed, 1);
}

int cli_output_failed(int *err)
{
    errno = 0;
    if (fflush(stdout) != 0 || ferror(stdout))
        cli_output_failure();
    /* A stdout that was closed at start is /dev/full now: nothing reached
     * anyone, and saying "no space" would mislead. */
    if (atomic_load(&output_failed) && std_closed[1] && atomic_load(&output_errno) == ENOSPC)
        atomic_store(&output_errno, EBADF);
    *err = atomic_load(&output_errno);
    return atomic_load(&output_failed);
}

void cli_std_fix(void)
{
    for (int fd = 0; fd < 3; fd++) {
        if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
            continue;
        std_closed[fd] = 1;
        /* Input reads nothing; output fails as it would have (so that a
         * closed stdout still counts as output not written). */
        int nfd = open(fd == 0 ? "/dev/null" : "/dev/full", fd == 0 ? O_RDONLY : O_WRONLY);
        if (nfd >= 0 && nfd != fd) {
            dup2(nfd, fd);
            close(nfd);
        }
    }
}

int cli_std_was_closed(int fd)
{
    return fd >= 0 && fd < 3 && std_closed[fd];
}

/* ---- messages on stderr ---------------------------------------------------- */

static pthread_mutex_t stderr_mu = PTHREAD_MUTEX_INITIALIZER;

/* Writes all of buf[0..n) to stderr in one write where it can, so that lines
 * from anylock's threads and its child do not interleave mid-line. */
static void write_stderr(const char *buf, size_t n)
{
    pthread_mutex_lock(&stderr_mu);
    while (n > 0) {
        ssize_t w = write(2, buf, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            cli_output_failure();
            break;
        }
        buf += w;
        n -= (size_t)w;
    }
    pthread_mutex_unlock(&stderr_mu);
}

static void vmessage(const char *fmt, va_list ap)
{
    char buf[2048];
    int n = snprintf(buf, sizeof buf, "anylock: ");
    int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m > sizeof buf - (size_t)n - 2 ? sizeof buf - (size_t)n - 2
                                                                                   : (size_t)m);
    /* The arguments were escaped; this only makes sure that no message can
     * ever be more than one line. */
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
            buf[i] = '?';
    buf[len++] = '\n';
    write_stderr(buf, len);
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
    if (!o->verbose || o->json)
        return;
    va_list ap;
    va_start(ap, fmt);
    vmessage(fmt, ap);
    va_end(ap);
}

/* ---- escaping -------------------------------------------------------------- */

/* The length of the UTF-8 sequence at s (avail bytes), and its code point in
 * *cp; 0 if the bytes there are not UTF-8 (overlong, surrogate, cut). */
static size_t utf8_decode(const unsigned char *s, size_t avail, unsigned *cp)
{
    if (avail == 0)
        return 0;
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    size_t n;
    unsigned min;
    if ((s[0] & 0xe0) == 0xc0)
        n = 2, min = 0x80;
    else if ((s[0] & 0xf0) == 0xe0)
        n = 3, min = 0x800;
    else if ((s[0] & 0xf8) == 0xf0)
        n = 4, min = 0x10000;
    else
        return 0;
    if (n > avail)
        return 0;
    unsigned c = s[0] & (0x7fu >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3fu);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return n;
}

/* Code points that are valid but must not reach a terminal or a JSON
 * consumer raw: C1 controls, line and paragraph separators, and the
 * bidirectional marks, embeddings, overrides and isolates (which can make a
 * line read as something else). */
static int unsafe_cp(unsigned cp)
{
    return (cp >= 0x80 && cp <= 0x9f) || cp == 0x200e || cp == 0x200f || (cp >= 0x2028 && cp <= 0x202e) ||
           (cp >= 0x2066 && cp <= 0x2069);
}

const char *cli_esc(char *buf, size_t size, const char *s, size_t len)
{
    if (size < 8) {
        if (size)
            buf[0] = '\0';
        return buf;
    }
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    if (!s)
        len = 0;
    for (size_t i = 0; i < len;) {
        char piece[16];
        size_t plen;
        unsigned cp = 0;
        size_t n = utf8_decode(p + i, len - i, &cp);
        if (n == 0) {
            plen = (size_t)snprintf(piece, sizeof piece, "\\x%02X", p[i]);
            n = 1;
        } else if (cp == '\\') {
            plen = (size_t)snprintf(piece, sizeof piece, "\\\\");
        } else if (cp == '\n') {
            plen = (size_t)snprintf(piece, sizeof piece, "\\n");
        } else if (cp == '\t') {
            plen = (size_t)snprintf(piece, sizeof piece, "\\t");
        } else if (cp == '\r') {
            plen = (size_t)snprintf(piece, sizeof piece, "\\r");
        } else if (cp < 0x20 || cp == 0x7f) {
            plen = (size_t)snprintf(piece, sizeof piece, "\\x%02X", cp);
        } else if (unsafe_cp(cp)) {
            plen = (size_t)snprintf(piece, sizeof piece, "\\u%04X", cp);
        } else {
            memcpy(piece, p + i, n);
            plen = n;
        }
        if (o + plen + 4 > size) {
            /* Whole pieces only, and say that it was cut. */
            memcpy(buf + o, "...", 3);
            buf[o + 3] = '\0';
            return buf;
        }
        memcpy(buf + o, piece, plen);
        o += plen;
        i += n;
    }
    buf[o] = '\0';
    return buf;
}

const char *cli_esc_str(char *buf, size_t size, const char *s)
{
    return cli_esc(buf, size, s, s ? strlen(s) : 0);
}

/* ---- JSON ---------------------------------------------------------------- */

void cli_buf_add(cli_buf *b, const char *s, size_t n)
{
    if (b->nomem)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 256;
        while (ncap < b->len + n + 1)
            ncap *= 2;
        char *p = realloc(b->p, ncap);
        if (!p) {
            b->nomem = 1;
            return;
        }
        b->p = p;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void cli_buf_printf(cli_buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        cli_buf_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

void cli_buf_free(cli_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

int cli_json_string(cli_buf *b, const char *s, size_t len)
{
    int lossy = 0;
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    if (!s)
        len = 0;
    cli_buf_add(b, "\"", 1);
    for (size_t i = 0; i < len;) {
        char piece[16];
        unsigned cp = 0;
        size_t n = utf8_decode(p + i, len - i, &cp);
        if (n == 0) {
            cli_buf_add(b, "\\ufffd", 6);
            lossy = 1;
            i++;
            continue;
        }
        if (cp == '"')
            cli_buf_add(b, "\\\"", 2);
        else if (cp == '\\')
            cli_buf_add(b, "\\\\", 2);
        else if (cp == '\n')
            cli_buf_add(b, "\\n", 2);
        else if (cp == '\r')
            cli_buf_add(b, "\\r", 2);
        else if (cp == '\t')
            cli_buf_add(b, "\\t", 2);
        else if (cp < 0x20 || cp == 0x7f || unsafe_cp(cp))
            cli_buf_add(b, piece, (size_t)snprintf(piece, sizeof piece, "\\u%04x", cp));
        else
            cli_buf_add(b, (const char *)p + i, n);
        i += n;
    }
    cli_buf_add(b, "\"", 1);
    return lossy;
}

void cli_json_field(cli_buf *b, const char *key, const char *s, size_t len)
{
    cli_buf_printf(b, "\"%s\":", key);
    if (!cli_json_string(b, s, len))
        return;
    static const char hex[] = "0123456789abcdef";
    cli_buf_printf(b, ",\"%s_hex\":\"", key);
    for (size_t i = 0; i < len; i++) {
        char h[2] = {hex[(unsigned char)s[i] >> 4], hex[(unsigned char)s[i] & 15]};
        cli_buf_add(b, h, 2);
    }
    cli_buf_add(b, "\"", 1);
}

/* ---- lock states ------------------------------------------------------------ */

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

double cli_wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The bytes of info->owner that are the stored owner value. */
static size_t owner_shown(const anylock_info *info)
{
    size_t n = info->owner_len;
    if (n > ANYLOCK_ID_MAX)
        n = ANYLOCK_ID_MAX;
    return n;
}

const char *cli_holder_phrase(char *buf, size_t size, const anylock_info *info)
{
    char id[4 * ANYLOCK_ID_MAX + 8], host[4 * ANYLOCK_HOST_MAX + 8], label[4 * ANYLOCK_LABEL_MAX + 8];
    size_t o = 0;
    if (info->owner_len == 0)
        o += (size_t)snprintf(buf, size, "an owner with an empty id");
    else if (info->owner_len > ANYLOCK_ID_MAX)
        o += (size_t)snprintf(buf, size, "%s... (an owner id of %zu bytes)",
                              cli_esc(id, sizeof id, info->owner, owner_shown(info)), info->owner_len);
    else
        o += (size_t)snprintf(buf, size, "%s", cli_esc(id, sizeof id, info->owner, owner_shown(info)));
    if (o >= size)
        return buf;
    if (!info->pid && !info->host[0] && !info->since && !info->label[0])
        return buf;
    char details[1200] = "";
    size_t d = 0;
    if (info->pid)
        d += (size_t)snprintf(details + d, sizeof details - d, "pid %ld", info->pid);
    if (info->host[0] && d < sizeof details)
        d += (size_t)snprintf(details + d, sizeof details - d, "%son %s", d ? " " : "",
                              cli_esc_str(host, sizeof host, info->host));
    if (info->since > 0 && d < sizeof details) {
        time_t t = (time_t)info->since;
        struct tm tm;
        char when[32] = "";
        if (localtime_r(&t, &tm))
            strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
        d += (size_t)snprintf(details + d, sizeof details - d, "%ssince %s", d ? " " : "", when);
    }
    if (info->label[0] && d < sizeof details)
        snprintf(details + d, sizeof details - d, "%s%s", d ? ": " : "",
                 cli_esc_str(label, sizeof label, info->label));
    snprintf(buf + o, size - o, " (%s)", details);
    return buf;
}

/* ", expires in 8.2 s" or ", never expires", and the end of the line. */
static void print_expiry(FILE *f, double expires_in)
{
    char t[32];
    if (isinf(expires_in))
        fprintf(f, ", never expires\n");
    else
        fprintf(f, ", expires in %s\n", cli_format_seconds(t, sizeof t, expires_in));
}

void cli_print_info_human(FILE *f, const anylock_info *info, int with_name)
{
    char name[4 * ANYLOCK_NAME_MAX + 8], who[2048];
    if (with_name)
        fprintf(f, "%s: ", cli_esc(name, sizeof name, info->name, info->name_len));
    if (!info->held) {
        fprintf(f, "free\n");
        return;
    }
    cli_holder_phrase(who, sizeof who, info);
    if (info->mode == ANYLOCK_SHARED)
        fprintf(f, "held shared by %u holder%s, one of them %s", info->holders, info->holders == 1 ? "" : "s", who);
    else if (info->mode == ANYLOCK_SEMAPHORE)
        fprintf(f, "held by %u of %u permits, one of them by %s", info->holders, info->permits, who);
    else
        fprintf(f, "held by %s", who);
    /* Of several holders, expires_in is the last one's, not that one's. */
    char t[32];
    if (info->holders > 1 && isinf(info->expires_in))
        fprintf(f, "; at least one of them never expires\n");
    else if (info->holders > 1)
        fprintf(f, "; the last of them expires in %s\n", cli_format_seconds(t, sizeof t, info->expires_in));
    else
        print_expiry(f, info->expires_in);
}

static const char *mode_name(anylock_mode m)
{
    return m == ANYLOCK_SHARED ? "shared" : m == ANYLOCK_SEMAPHORE ? "semaphore" : "exclusive";
}

/* owner and expires_in, of a lock's holder or of one of its holders. */
static void who_json(cli_buf *b, const anylock_info *info)
{
    if (info->held) {
        cli_json_field(b, "owner", info->owner, owner_shown(info));
        if (info->owner_len > ANYLOCK_ID_MAX)
            cli_buf_printf(b, ",\"owner_len\":%zu", info->owner_len);
    } else {
        cli_buf_add(b, "\"owner\":null", 12);
    }
    if (info->held && !isinf(info->expires_in))
        cli_buf_printf(b, ",\"expires_in\":%.3f", info->expires_in);
    else
        cli_buf_add(b, ",\"expires_in\":null", 18);
}

/* host, pid, since and label. */
static void details_json(cli_buf *b, const anylock_info *info)
{
    if (info->held && info->host[0])
        cli_json_field(b, "host", info->host, strlen(info->host));
    else
        cli_buf_add(b, "\"host\":null", 11);
    if (info->held && info->pid)
        cli_buf_printf(b, ",\"pid\":%ld", info->pid);
    else
        cli_buf_add(b, ",\"pid\":null", 11);
    if (info->held && info->since > 0)
        cli_buf_printf(b, ",\"since\":%.3f", info->since);
    else
        cli_buf_add(b, ",\"since\":null", 13);
    cli_buf_add(b, ",", 1);
    if (info->held && info->label[0])
        cli_json_field(b, "label", info->label, strlen(info->label));
    else
        cli_buf_add(b, "\"label\":null", 12);
}

void cli_info_json(cli_buf *b, const anylock_info *info)
{
    cli_json_field(b, "name", info->name, info->name_len);
    cli_buf_printf(b, ",\"held\":%s,", info->held ? "true" : "false");
    who_json(b, info);
    if (info->held) {
        cli_buf_printf(b, ",\"mode\":\"%s\",\"holders\":%u", mode_name(info->mode), info->holders);
        if (info->mode == ANYLOCK_SEMAPHORE)
            cli_buf_printf(b, ",\"permits\":%u", info->permits);
    } else {
        cli_buf_add(b, ",\"mode\":null,\"holders\":0", 24);
    }
    cli_buf_add(b, ",", 1);
    details_json(b, info);
}

void cli_holder_info(anylock_info *out, const anylock_info *lock, const anylock_holder *h)
{
    *out = *lock;
    out->owner_len = h->id_len;
    size_t n = h->id_len < ANYLOCK_ID_MAX ? h->id_len : ANYLOCK_ID_MAX;
    memcpy(out->owner, h->id, n);
    out->owner[n] = '\0';
    out->expires_in = h->expires_in;
    snprintf(out->host, sizeof out->host, "%s", h->host ? h->host : "");
    out->pid = h->pid;
    out->since = h->since;
    snprintf(out->label, sizeof out->label, "%s", h->label ? h->label : "");
}

void cli_holder_json(cli_buf *b, const anylock_info *holder)
{
    cli_buf_add(b, "{", 1);
    who_json(b, holder);
    cli_buf_add(b, ",", 1);
    details_json(b, holder);
    cli_buf_add(b, "}", 1);
}

void cli_print_holder_human(FILE *f, const anylock_info *holder)
{
    char who[2048];
    fprintf(f, "  %s", cli_holder_phrase(who, sizeof who, holder));
    print_expiry(f, holder->expires_in);
}

void cli_event(const char *event, const char *name, const cli_buf *extra)
{
    cli_buf b = {0};
    cli_buf_printf(&b, "{\"time\":%.3f,\"event\":\"%s\"", cli_wall_now(), event);
    if (name) {
        cli_buf_add(&b, ",", 1);
        cli_json_field(&b, "name", name, strlen(name));
    }
    if (extra && extra->len) {
        cli_buf_add(&b, ",", 1);
        cli_buf_add(&b, extra->p, extra->len);
    }
    cli_buf_add(&b, "}\n", 2);
    if (b.nomem)
        cli_output_failure();
    else
        write_stderr(b.p, b.len);
    cli_buf_free(&b);
}

/* ---- descriptors ------------------------------------------------------------ */

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
