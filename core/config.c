/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Process-wide defaults and the validation of names, prefixes, ids and
 * durations.  Precedence, lowest first: the library's built-in defaults
 * (ANYLOCK_DEFAULT_*), the process-wide defaults set here, the client's URL
 * query, the lock's own options.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

static pthread_mutex_t defaults_mu = PTHREAD_MUTEX_INITIALIZER;
static anylock__defaults defaults = {
    .timeout_ms = (int64_t)(ANYLOCK_DEFAULT_TIMEOUT * 1000),
    .expires_ms = (int64_t)(ANYLOCK_DEFAULT_EXPIRES * 1000),
    .prefix = ANYLOCK_DEFAULT_PREFIX,
};

void anylock__defaults_get(anylock__defaults *out)
{
    pthread_mutex_lock(&defaults_mu);
    *out = defaults;
    pthread_mutex_unlock(&defaults_mu);
}

anylock_status anylock__duration_ms(double seconds, int64_t forever_value, int64_t *out, char *errbuf,
                                    const char *what)
{
    if (isnan(seconds)) {
        anylock__format(errbuf, "%s is not a number", what);
        return ANYLOCK_BAD_DURATION;
    }
    if (seconds < 0) {
        anylock__format(errbuf, "%s is negative (%g s)", what, seconds);
        return ANYLOCK_BAD_DURATION;
    }
    if (isinf(seconds)) {
        *out = forever_value;
        return ANYLOCK_OK;
    }
    if (seconds > ANYLOCK_DURATION_MAX) {
        anylock__format(errbuf, "%s of %g s is above the limit of %g s", what, seconds, ANYLOCK_DURATION_MAX);
        return ANYLOCK_BAD_DURATION;
    }
    /* Round up: a duration is never shortened.  The small slack absorbs
     * binary representation error (0.3 * 1000 is 300.00000000000006), and a
     * positive duration never becomes 0 (which would mean "try once" for a
     * timeout and, worse, "never expires" for an expiry). */
    *out = (int64_t)ceil(seconds * 1000.0 - 1e-6);
    if (*out < 1 && seconds > 0)
        *out = 1;
    return ANYLOCK_OK;
}

anylock_status anylock__duration_parse(const char *text, int64_t forever_value, int64_t *out, char *errbuf,
                                       const char *what)
{
    if (!strcmp(text, "forever") || !strcmp(text, "never")) {
        *out = forever_value;
        return ANYLOCK_OK;
    }
    /* Plain decimal only: strtod alone would take "nan", "inf", hex and
     * leading spaces. */
    size_t digits = 0, dots = 0;
    for (const char *p = text; *p; p++) {
        if (*p >= '0' && *p <= '9')
            digits++;
        else if (*p == '.')
            dots++;
        else
            digits = dots = 99;
    }
    if (digits == 0 || digits > 30 || dots > 1) {
        anylock__format(errbuf, "%s must be a number of seconds, \"forever\" or \"never\"", what);
        return ANYLOCK_BAD_DURATION;
    }
    return anylock__duration_ms(strtod(text, NULL), forever_value, out, errbuf, what);
}

/* Names, prefixes and labels: UTF-8 without control characters, C0 (below
 * U+0020), DEL or C1 (U+0080 to U+009F, such as U+0085 NEXT LINE, which
 * some terminals and log readers take for a line break). */
static anylock_status check_text(const char *text, size_t max, anylock_status bad, const char *what,
                                 char *errbuf)
{
    size_t len = strlen(text);
    if (len > max) {
        anylock__format(errbuf, "%s is %zu bytes long; the limit is %zu", what, len, max);
        return bad;
    }
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        if (s[i] < 0x20 || s[i] == 0x7f) {
            anylock__format(errbuf, "%s has a control character (0x%02x) at byte %zu", what, s[i], i);
            return bad;
        }
        size_t n = anylock__utf8_len(s + i, len - i);
        if (n == 0) {
            anylock__format(errbuf, "%s is not valid UTF-8 at byte %zu", what, i);
            return bad;
        }
        if (n == 2 && s[i] == 0xc2 && s[i + 1] < 0xa0) {
            anylock__format(errbuf, "%s has a control character (U+%04X) at byte %zu", what, s[i + 1], i);
            return bad;
        }
        i += n;
    }
    return ANYLOCK_OK;
}

anylock_status anylock__check_name(const char *name, char *errbuf)
{
    if (!name) {
        anylock__format(errbuf, "lock name is NULL");
        return ANYLOCK_BAD_NAME;
    }
    if (!*name) {
        anylock__format(errbuf, "lock name is empty");
        return ANYLOCK_BAD_NAME;
    }
    return check_text(name, ANYLOCK_NAME_MAX, ANYLOCK_BAD_NAME, "lock name", errbuf);
}

anylock_status anylock__check_prefix(const char *prefix, char *errbuf)
{
    if (!prefix) {
        anylock__format(errbuf, "prefix is NULL");
        return ANYLOCK_BAD_PREFIX;
    }
    return check_text(prefix, ANYLOCK_PREFIX_MAX, ANYLOCK_BAD_PREFIX, "prefix", errbuf);
}

anylock_status anylock__check_label(const char *label, char *errbuf)
{
    if (!label)
        return ANYLOCK_OK;
    anylock_status st = check_text(label, ANYLOCK_LABEL_MAX, ANYLOCK_INVALID, "label", errbuf);
    return st;
}

anylock_status anylock__check_id(const char *id, char *errbuf)
{
    if (!id || !*id) {
        anylock__format(errbuf, "owner id is empty");
        return ANYLOCK_BAD_ID;
    }
    size_t len = strlen(id);
    if (len > ANYLOCK_ID_MAX) {
        anylock__format(errbuf, "owner id is %zu characters long; the limit is %d", len, ANYLOCK_ID_MAX);
        return ANYLOCK_BAD_ID;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)id[i];
        if (c < 0x21 || c > 0x7e) {
            anylock__format(errbuf, "owner id has a character that is not printable ASCII (0x%02x) at %zu", c,
                            i);
            return ANYLOCK_BAD_ID;
        }
    }
    return ANYLOCK_OK;
}

anylock_status anylock__make_id(char id[ANYLOCK_ID_MAX + 1])
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char raw[18];
    if (getentropy(raw, sizeof raw) != 0)
        return ANYLOCK_INTERNAL;
    /* Standard base64 of 18 bytes: 24 characters, no padding needed. */
    for (size_t i = 0, o = 0; i < sizeof raw; i += 3) {
        unsigned v = (unsigned)raw[i] << 16 | (unsigned)raw[i + 1] << 8 | raw[i + 2];
        id[o++] = b64[(v >> 18) & 63];
        id[o++] = b64[(v >> 12) & 63];
        id[o++] = b64[(v >> 6) & 63];
        id[o++] = b64[v & 63];
        id[o] = '\0';
    }
    return ANYLOCK_OK;
}

anylock_status anylock_set_default_timeout(double seconds)
{
    int64_t ms;
    anylock_status st = anylock__duration_ms(seconds, ANYLOCK__MS_FOREVER, &ms, NULL, "timeout");
    if (st != ANYLOCK_OK)
        return st;
    pthread_mutex_lock(&defaults_mu);
    defaults.timeout_ms = ms;
    pthread_mutex_unlock(&defaults_mu);
    return ANYLOCK_OK;
}

anylock_status anylock__expiry_ms(double seconds, int64_t *out, char *errbuf)
{
    if (seconds == 0) {
        anylock__format(errbuf, "expiry must be more than 0 s (ANYLOCK_FOREVER for none)");
        return ANYLOCK_BAD_DURATION;
    }
    return anylock__duration_ms(seconds, 0, out, errbuf, "expiry");
}

anylock_status anylock_set_default_expires(double seconds)
{
    int64_t ms;
    anylock_status st = anylock__expiry_ms(seconds, &ms, NULL);
    if (st != ANYLOCK_OK)
        return st;
    pthread_mutex_lock(&defaults_mu);
    defaults.expires_ms = ms;
    defaults.expires_set = 1;
    pthread_mutex_unlock(&defaults_mu);
    return ANYLOCK_OK;
}

anylock_status anylock_set_default_prefix(const char *prefix)
{
    anylock_status st = anylock__check_prefix(prefix, NULL);
    if (st != ANYLOCK_OK)
        return st;
    pthread_mutex_lock(&defaults_mu);
    memcpy(defaults.prefix, prefix, strlen(prefix) + 1);
    pthread_mutex_unlock(&defaults_mu);
    return ANYLOCK_OK;
}

anylock_status anylock_parse_duration(const char *text, double *seconds)
{
    if (!text || !seconds)
        return ANYLOCK_INVALID;
    int64_t ms;
    anylock_status st = anylock__duration_parse(text, -1, &ms, NULL, "duration");
    if (st != ANYLOCK_OK)
        return st;
    *seconds = ms == -1 ? ANYLOCK_FOREVER : strtod(text, NULL);
    return ANYLOCK_OK;
}

/* Makes dir with mode 0700 unless it exists as a directory. */
static int make_private_dir(const char *dir)
{
    struct stat sb;
    if (mkdir(dir, 0700) == 0)
        return 0;
    if (errno == EEXIST && stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode))
        return 0;
    if (errno == EEXIST)
        errno = ENOTDIR;
    return -1;
}

/* The user's home directory, from the password database (so the same for a
 * login shell, cron and a systemd unit), else $HOME. */
static int home_dir(char *out, size_t size)
{
    struct passwd pw, *found = NULL;
    char buf[4096];
    if (getpwuid_r(getuid(), &pw, buf, sizeof buf, &found) == 0 && found && found->pw_dir &&
        found->pw_dir[0] == '/') {
        snprintf(out, size, "%s", found->pw_dir);
        return 0;
    }
    const char *home = getenv("HOME");
    if (home && home[0] == '/') {
        snprintf(out, size, "%s", home);
        return 0;
    }
    return -1;
}

anylock_status anylock_default_url(char *buf, size_t size)
{
    if (!buf || size < 2)
        return ANYLOCK_INVALID;
    buf[0] = '\0';
    const char *env = getenv("ANYLOCK_URL");
    if (env) {
        if (!*env) {
            snprintf(buf, size, "ANYLOCK_URL is set but empty: give it a URL, or unset it for the default store");
            return ANYLOCK_URL_MALFORMED;
        }
        if (strlen(env) >= size) {
            snprintf(buf, size, "ANYLOCK_URL is too long");
            return ANYLOCK_INVALID;
        }
        memcpy(buf, env, strlen(env) + 1);
        return ANYLOCK_OK;
    }
    if (!anylock_backend_available("sqlite")) {
        snprintf(buf, size, "this build has no sqlite:// backend for the default store: set ANYLOCK_URL");
        return ANYLOCK_BACKEND_DISABLED;
    }
    char home[1024], cache[1100], dir[1200];
    if (home_dir(home, sizeof home)) {
        snprintf(buf, size, "no home directory for the default store: set ANYLOCK_URL");
        return ANYLOCK_ACCESS;
    }
    snprintf(cache, sizeof cache, "%s%s.cache", home, home[strlen(home) - 1] == '/' ? "" : "/");
    snprintf(dir, sizeof dir, "%s/anylock", cache);
    if (make_private_dir(cache) || make_private_dir(dir)) {
        snprintf(buf, size, "cannot create %.200s for the default store: %s", dir, strerror(errno));
        return ANYLOCK_ACCESS;
    }
    /* sqlite:///x is relative; an absolute path takes one more slash.  The
     * path is percent-encoded but for unreserved characters and '/'. */
    static const char head[] = "sqlite:///";
    static const char tail[] = "/locks.db";
    size_t o = 0;
    char out[ANYLOCK_URL_MAX + 1];
    memcpy(out, head, sizeof head - 1);
    o = sizeof head - 1;
    for (const unsigned char *p = (const unsigned char *)dir; *p && o + 4 < sizeof out; p++) {
        int plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                    strchr("-._~/", *p);
        o += (size_t)snprintf(out + o, sizeof out - o, plain ? "%c" : "%%%02X", *p);
    }
    if (o + sizeof tail > sizeof out || o + sizeof tail > size) {
        snprintf(buf, size, "the home directory's path is too long for a URL: set ANYLOCK_URL");
        return ANYLOCK_INVALID;
    }
    memcpy(out + o, tail, sizeof tail);
    memcpy(buf, out, o + sizeof tail);
    return ANYLOCK_OK;
}
