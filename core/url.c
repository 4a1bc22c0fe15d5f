/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The URL parser.  libcurl's URL API is the model: every defect gets its own
 * status, and the message says where it is.  The grammar is RFC 3986's,
 * narrowed to what a store address needs:
 *
 *   scheme "://" [ userinfo "@" ] [ host [ ":" port ] *( "," host [ ":" port ] ) ]
 *          [ path ] [ "?" name [ "=" value ] *( "&" name [ "=" value ] ) ]
 *
 * Userinfo, path and query parts are percent-decoded ('+' stays a plus); a
 * decoded NUL is refused.  Fragments are refused.  No message ever repeats
 * the password: the user sees the URL only in its redacted form.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int is_unreserved(int c)
{
    return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

static int is_subdelim(int c)
{
    return c && strchr("!$&'()*+,;=", c) != NULL;
}

static int is_pchar(int c)
{
    return is_unreserved(c) || is_subdelim(c) || c == ':' || c == '@' || c == '%';
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Percent-decodes src[0..n) into dst (NUL-terminated).  Returns ANYLOCK_OK,
 * or URL_BAD_ESCAPE with *bad set to the offending offset in src. */
static anylock_status decode(const char *src, size_t n, char *dst, size_t *bad)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (src[i] != '%') {
            dst[o++] = src[i];
            continue;
        }
        int hi = i + 1 < n ? hexval((unsigned char)src[i + 1]) : -1;
        int lo = i + 2 < n ? hexval((unsigned char)src[i + 2]) : -1;
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
            *bad = i;
            return ANYLOCK_URL_BAD_ESCAPE;
        }
        dst[o++] = (char)(hi << 4 | lo);
        i += 2;
    }
    dst[o] = '\0';
    return ANYLOCK_OK;
}

/* A bump allocator over one block sized for the worst case. */
typedef struct arena {
    char *p;
} arena;

static char *arena_take(arena *a, size_t n)
{
    char *r = a->p;
    a->p += n + 1;
    return r;
}

static anylock_status parse_userinfo(anylock__url *u, arena *a, const char *text, size_t start, size_t end,
                                     char *errbuf)
{
    size_t colon = end;
    for (size_t i = start; i < end; i++) {
        int c = (unsigned char)text[i];
        if (c == ':' && colon == end)
            colon = i;
        else if (!is_unreserved(c) && !is_subdelim(c) && c != '%' && c != ':') {
            anylock__format(errbuf, "bad character in the URL's user or password at offset %zu", i);
            return ANYLOCK_URL_BAD_USERINFO;
        }
    }
    size_t bad;
    char *user = arena_take(a, colon - start);
    if (decode(text + start, colon - start, user, &bad) != ANYLOCK_OK) {
        anylock__format(errbuf, "bad percent-escape in the URL's user at offset %zu", start + bad);
        return ANYLOCK_URL_BAD_ESCAPE;
    }
    u->pub.user = user;
    if (colon < end) {
        char *pw = arena_take(a, end - colon - 1);
        if (decode(text + colon + 1, end - colon - 1, pw, &bad) != ANYLOCK_OK) {
            anylock__format(errbuf, "bad percent-escape in the URL's password");
            return ANYLOCK_URL_BAD_ESCAPE;
        }
        u->pub.password = pw;
    }
    return ANYLOCK_OK;
}

static anylock_status parse_port(const char *text, size_t start, size_t end, int *port, char *errbuf)
{
    long v = 0;
    if (start == end) {
        anylock__format(errbuf, "empty port number at offset %zu", start);
        return ANYLOCK_URL_BAD_PORT;
    }
    for (size_t i = start; i < end; i++) {
        if (!isdigit((unsigned char)text[i]) || i - start >= 5) {
            /* The text is not echoed: in "user:secret/x@h" it is a password
             * that a '/' cut from its '@'. */
            anylock__format(errbuf, "bad port number at offset %zu (1 to 65535, digits only; a '/' in a "
                            "password must be written %%2F)", start);
            return ANYLOCK_URL_BAD_PORT;
        }
        v = v * 10 + (text[i] - '0');
    }
    if (v < 1 || v > 65535) {
        anylock__format(errbuf, "port number %ld is out of range (1 to 65535)", v);
        return ANYLOCK_URL_BAD_PORT;
    }
    *port = (int)v;
    return ANYLOCK_OK;
}

static anylock_status parse_host(anylock_url_host *h, arena *a, const char *text, size_t start, size_t end,
                                 char *errbuf)
{
    size_t host_end = end, host_start = start;
    size_t port_at = end;
    if (start < end && text[start] == '[') {
        const char *close = memchr(text + start, ']', end - start);
        if (!close) {
            anylock__format(errbuf, "unclosed '[' in the host at offset %zu", start);
            return ANYLOCK_URL_BAD_HOST;
        }
        host_start = start + 1;
        host_end = (size_t)(close - text);
        for (size_t i = host_start; i < host_end; i++)
            if (!isxdigit((unsigned char)text[i]) && text[i] != ':' && text[i] != '.') {
                anylock__format(errbuf, "bad character in the IPv6 address at offset %zu", i);
                return ANYLOCK_URL_BAD_HOST;
            }
        if (host_end + 1 < end && text[host_end + 1] != ':') {
            anylock__format(errbuf, "unexpected character after ']' at offset %zu", host_end + 1);
            return ANYLOCK_URL_BAD_HOST;
        }
        port_at = host_end + 1 < end ? host_end + 1 : end;
    } else {
        const char *colon = memchr(text + start, ':', end - start);
        if (colon)
            host_end = port_at = (size_t)(colon - text);
        for (size_t i = host_start; i < host_end; i++)
            if (!is_unreserved((unsigned char)text[i])) {
                anylock__format(errbuf, "bad character '%c' in the host at offset %zu", text[i], i);
                return ANYLOCK_URL_BAD_HOST;
            }
    }
    if (host_end == host_start) {
        anylock__format(errbuf, "empty host at offset %zu", start);
        return ANYLOCK_URL_BAD_HOST;
    }
    if (host_end - host_start > 253) {
        anylock__format(errbuf, "host name is %zu bytes long; the limit is 253", host_end - host_start);
        return ANYLOCK_URL_BAD_HOST;
    }
    char *host = arena_take(a, host_end - host_start);
    memcpy(host, text + host_start, host_end - host_start);
    host[host_end - host_start] = '\0';
    h->host = host;
    h->port = 0;
    if (port_at < end)
        return parse_port(text, port_at + 1, end, &h->port, errbuf);
    return ANYLOCK_OK;
}

static anylock_status parse_hosts(anylock__url *u, arena *a, const char *text, size_t start, size_t end,
                                  char *errbuf)
{
    if (start == end)
        return ANYLOCK_OK;
    size_t n = 1;
    for (size_t i = start; i < end; i++)
        n += text[i] == ',';
    u->hosts = calloc(n, sizeof *u->hosts);
    if (!u->hosts)
        return ANYLOCK_NOMEM;
    size_t from = start;
    for (size_t k = 0; k < n; k++) {
        const char *comma = memchr(text + from, ',', end - from);
        size_t to = comma ? (size_t)(comma - text) : end;
        anylock_status st = parse_host(&u->hosts[k], a, text, from, to, errbuf);
        if (st != ANYLOCK_OK)
            return st;
        from = to + 1;
    }
    u->pub.hosts = u->hosts;
    u->pub.nhosts = n;
    return ANYLOCK_OK;
}

static anylock_status parse_query(anylock__url *u, arena *a, const char *text, size_t start, size_t end,
                                  char *errbuf)
{
    if (start == end)
        return ANYLOCK_OK;
    size_t n = 1;
    for (size_t i = start; i < end; i++) {
        int c = (unsigned char)text[i];
        if (!is_pchar(c) && c != '/' && c != '?') {
            anylock__format(errbuf, "bad character '%c' in the URL query at offset %zu", c, i);
            return ANYLOCK_URL_BAD_QUERY;
        }
        n += c == '&';
    }
    u->params = calloc(n, sizeof *u->params);
    if (!u->params)
        return ANYLOCK_NOMEM;
    size_t from = start;
    size_t count = 0;
    for (size_t k = 0; k < n; k++) {
        const char *amp = memchr(text + from, '&', end - from);
        size_t to = amp ? (size_t)(amp - text) : end;
        const char *eq = memchr(text + from, '=', to - from);
        size_t name_end = eq ? (size_t)(eq - text) : to;
        if (name_end == from) {
            anylock__format(errbuf, "empty parameter name in the URL query at offset %zu", from);
            return ANYLOCK_URL_BAD_QUERY;
        }
        size_t bad;
        char *name = arena_take(a, name_end - from);
        char *value = arena_take(a, eq ? to - name_end - 1 : 0);
        value[0] = '\0';
        if (decode(text + from, name_end - from, name, &bad) != ANYLOCK_OK ||
            (eq && decode(text + name_end + 1, to - name_end - 1, value, &bad) != ANYLOCK_OK)) {
            anylock__format(errbuf, "bad percent-escape in the URL query parameter starting at offset %zu", from);
            return ANYLOCK_URL_BAD_ESCAPE;
        }
        const char **core = !strcmp(name, "prefix")    ? &u->prefix
                            : !strcmp(name, "timeout") ? &u->timeout
                            : !strcmp(name, "expires") ? &u->expires
                                                       : NULL;
        int dup = core && *core;
        for (size_t j = 0; j < count && !dup; j++)
            dup = !strcmp(u->params[j].name, name);
        if (dup) {
            anylock__format(errbuf, "URL query parameter \"%.64s\" is given twice", name);
            return ANYLOCK_URL_BAD_QUERY;
        }
        if (core) {
            *core = value;
        } else {
            u->params[count].name = name;
            u->params[count].value = value;
            count++;
        }
        from = to + 1;
    }
    u->pub.params = u->params;
    u->pub.nparams = count;
    return ANYLOCK_OK;
}

/* ---- redaction ----------------------------------------------------------
 *
 * Passwords are hidden by the text's structure alone, without needing a
 * valid URL, so that a URL that fails to parse is shown as safely as one that
 * parses.  The rules err on the side of hiding too much:
 *   - after each "://", up to the next "://" (or the end), the text before
 *     the last '@' (less the slashes it starts with: "redis:///:pw@h") is a
 *     userinfo; in it, what follows the first ':' is a password;
 *   - a query value that percent-decodes to text holding "://" is redacted
 *     the same way, decoded, and put back percent-encoded if that hid
 *     anything (so an encoded nested URL's password is hidden too);
 *   - the value of a query parameter whose name ends in "password" (any
 *     case: libpq's password and sslpassword) is a password.
 */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int nomem;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->nomem)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *g = realloc(b->p, cap);
        if (!g) {
            b->nomem = 1;
            return;
        }
        b->p = g;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static const char *find_sep(const char *s, const char *end)
{
    for (const char *p = s; p + 3 <= end; p++)
        if (p[0] == ':' && p[1] == '/' && p[2] == '/')
            return p;
    return NULL;
}

/* Text with no "://" is no URL at all ("redis:/u:pw@h"): whatever stands
 * between its first ':' and its last '@' may be a password. */
static int redact_no_scheme(sbuf *b, const char *text, size_t n)
{
    const char *end = text + n, *at = NULL;
    for (const char *p = text; p < end; p++)
        if (*p == '@')
            at = p;
    const char *colon = at ? memchr(text, ':', (size_t)(at - text)) : NULL;
    if (!colon)
        return 0;
    sb_add(b, text, (size_t)(colon + 1 - text));
    sb_add(b, "***", 3);
    sb_add(b, at, (size_t)(end - at));
    return 1;
}

/* Redacts text[0..n) by the "://" rule into b. */
static void redact_authorities(sbuf *b, const char *text, size_t n)
{
    const char *end = text + n, *from = text;
    if (!find_sep(text, end) && redact_no_scheme(b, text, n))
        return;
    for (const char *sep = find_sep(text, end); sep; sep = find_sep(from, end)) {
        const char *auth = sep + 3;
        sb_add(b, from, (size_t)(auth - from));
        from = auth;
        const char *lim = find_sep(auth, end);
        if (!lim)
            lim = end;
        const char *at = NULL;
        for (const char *p = auth; p < lim; p++)
            if (*p == '@')
                at = p;
        if (!at)
            continue;
        const char *colon = memchr(auth, ':', (size_t)(at - auth));
        if (!colon)
            continue;
        sb_add(b, auth, (size_t)(colon + 1 - auth));
        sb_add(b, "***", 3);
        from = at;
    }
    sb_add(b, from, (size_t)(end - from));
}

static int hexval(int c);

/* Percent-decodes s[0..n) into b ('+' stays); 1 if it held an escape. */
static int pct_decode(sbuf *b, const char *s, size_t n)
{
    int any = 0;
    for (size_t i = 0; i < n; i++) {
        int hi = s[i] == '%' && i + 2 < n ? hexval((unsigned char)s[i + 1]) : -1;
        int lo = hi >= 0 ? hexval((unsigned char)s[i + 2]) : -1;
        if (hi >= 0 && lo >= 0) {
            char c = (char)(hi << 4 | lo);
            sb_add(b, &c, 1);
            i += 2;
            any = 1;
        } else {
            sb_add(b, s + i, 1);
        }
    }
    return any;
}

static void pct_encode(sbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c && (isalnum(c) || strchr("-._~:/?@!$'()*,;", c))) {
            sb_add(b, (const char *)&c, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            sb_add(b, e, 3);
        }
    }
}

static void redact_into(sbuf *b, const char *text, size_t n, int depth);

/* Whether a query parameter name (name[0..n)) holds a password. */
static int secret_param(const char *name, size_t n)
{
    static const char tail[] = "password";
    size_t t = sizeof tail - 1;
    if (n < t)
        return 0;
    for (size_t i = 0; i < t; i++)
        if (tolower((unsigned char)name[n - t + i]) != tail[i])
            return 0;
    return 1;
}

/* Copies one query value, redacting a percent-encoded nested URL. */
static void redact_value(sbuf *b, const char *v, size_t n, int depth)
{
    sbuf dec = {0}, red = {0};
    if (depth < 4 && memchr(v, '%', n) && pct_decode(&dec, v, n) && !dec.nomem && dec.p && strstr(dec.p, "://")) {
        redact_into(&red, dec.p, dec.n, depth + 1);
        if (!red.nomem && red.p && strcmp(red.p, dec.p)) {
            pct_encode(b, red.p, red.n);
            free(dec.p);
            free(red.p);
            return;
        }
    }
    b->nomem |= dec.nomem | red.nomem;
    free(dec.p);
    free(red.p);
    sb_add(b, v, n);
}

static void redact_into(sbuf *b, const char *text, size_t n, int depth)
{
    /* First hide encoded nested URLs in query values, then apply the "://"
     * rule to the whole. */
    sbuf q = {0};
    const char *end = text + n;
    const char *qm = memchr(text, '?', n);
    if (!qm) {
        redact_authorities(b, text, n);
        return;
    }
    sb_add(&q, text, (size_t)(qm + 1 - text));
    for (const char *from = qm + 1; from <= end;) {
        const char *amp = memchr(from, '&', (size_t)(end - from));
        const char *to = amp ? amp : end;
        const char *eq = memchr(from, '=', (size_t)(to - from));
        const char *vs = eq ? eq + 1 : to;
        sb_add(&q, from, (size_t)(vs - from));
        if (eq && to > vs && secret_param(from, (size_t)(eq - from)))
            sb_add(&q, "***", 3);
        else
            redact_value(&q, vs, (size_t)(to - vs), depth);
        if (!amp)
            break;
        sb_add(&q, "&", 1);
        from = amp + 1;
    }
    if (q.nomem || !q.p) {
        b->nomem = 1;
    } else {
        redact_authorities(b, q.p, q.n);
    }
    free(q.p);
}

static char *redact_once(const char *text)
{
    sbuf b = {0};
    redact_into(&b, text, strlen(text), 0);
    sb_add(&b, "", 0);
    if (b.nomem) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

char *anylock__redact(const char *text)
{
    /* Hiding one part can change how the rest splits (a '&' inside a hidden
     * password no longer separates parameters), so redact again until
     * nothing changes: the result is then stable, and anything that reads
     * as a password in any of the forms is hidden. */
    char *r = redact_once(text);
    for (int round = 0; r && round < 8; round++) {
        char *again = redact_once(r);
        if (!again || !strcmp(again, r)) {
            free(again);
            return r;
        }
        free(r);
        r = again;
    }
    return r;
}

/* Replaces every copy of secret[0..slen) in msg (ANYLOCK_ERRMSG_MAX bytes)
 * with "***", truncating what no longer fits. */
static void hide(char *msg, const char *secret, size_t slen)
{
    char out[ANYLOCK_ERRMSG_MAX];
    size_t o = 0, left = strlen(msg);
    for (const char *p = msg; *p && o + 1 < sizeof out;) {
        if (left >= slen && !memcmp(p, secret, slen)) {
            for (int k = 0; k < 3 && o + 1 < sizeof out; k++)
                out[o++] = '*';
            p += slen;
            left -= slen;
        } else {
            out[o++] = *p++;
            left--;
        }
    }
    out[o] = '\0';
    memcpy(msg, out, o + 1);
}

/* Collects the secrets redact_authorities would hide in text[0..n), raw and
 * percent-decoded, and hides each in msg. */
static void scrub_in(char *msg, const char *text, size_t n, int depth)
{
    const char *end = text + n;
    if (!find_sep(text, end)) {
        const char *at = NULL;
        for (const char *p = text; p < end; p++)
            if (*p == '@')
                at = p;
        const char *colon = at ? memchr(text, ':', (size_t)(at - text)) : NULL;
        if (colon && at - colon - 1 >= 2)
            hide(msg, colon + 1, (size_t)(at - colon - 1));
    }
    for (const char *sep = find_sep(text, end); sep; sep = find_sep(sep + 3, end)) {
        const char *auth = sep + 3;
        const char *lim = find_sep(auth, end);
        if (!lim)
            lim = end;
        const char *at = NULL;
        for (const char *p = auth; p < lim; p++)
            if (*p == '@')
                at = p;
        const char *colon = at && *auth != '/' ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
        if (!colon)
            continue;
        const char *pw = colon + 1;
        size_t pwlen = (size_t)(at - pw);
        sbuf dec = {0};
        pct_decode(&dec, pw, pwlen);
        const char *forms[2] = {pw, dec.p};
        size_t lens[2] = {pwlen, dec.p ? dec.n : 0};
        for (int f = 0; f < 2; f++) {
            /* A one-character secret would erase every copy of that
             * character: such a password is not worth the garbled text. */
            if (lens[f] < 2)
                continue;
            hide(msg, forms[f], lens[f]);
        }
        free(dec.p);
    }
    /* Password query parameters, raw and decoded. */
    const char *qm = memchr(text, '?', n);
    for (const char *from = qm ? qm + 1 : end; from < end;) {
        const char *amp = memchr(from, '&', (size_t)(end - from));
        const char *to = amp ? amp : end;
        const char *eq = memchr(from, '=', (size_t)(to - from));
        if (eq && secret_param(from, (size_t)(eq - from))) {
            const char *pw = eq + 1;
            size_t pwlen = (size_t)(to - pw);
            sbuf dec = {0};
            pct_decode(&dec, pw, pwlen);
            if (pwlen >= 2)
                hide(msg, pw, pwlen);
            if (dec.p && dec.n >= 2)
                hide(msg, dec.p, dec.n);
            free(dec.p);
        }
        from = amp ? amp + 1 : end;
    }
    /* Encoded nested URLs: their decoded text holds the secrets. */
    if (depth < 4 && memchr(text, '%', n)) {
        sbuf dec = {0};
        if (pct_decode(&dec, text, n) && dec.p && !dec.nomem)
            scrub_in(msg, dec.p, dec.n, depth + 1);
        free(dec.p);
    }
}

void anylock__scrub(char *msg, const char *text)
{
    if (msg && text)
        scrub_in(msg, text, strlen(text), 0);
}

static anylock_status parse(const char *text, anylock__url *u, char *errbuf)
{
    size_t len = strlen(text);
    if (len > ANYLOCK_URL_MAX) {
        anylock__format(errbuf, "URL is %zu bytes long; the limit is %d", len, ANYLOCK_URL_MAX);
        return ANYLOCK_URL_TOO_LONG;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c <= 0x20 || c >= 0x7f) {
            anylock__format(errbuf, "URL has a space, control or non-ASCII byte at offset %zu (percent-encode it)",
                            i);
            return ANYLOCK_URL_MALFORMED;
        }
        if (c == '#') {
            anylock__format(errbuf, "URL has a fragment ('#' at offset %zu); percent-encode it as %%23", i);
            return ANYLOCK_URL_MALFORMED;
        }
    }
    const char *sep = strstr(text, "://");
    size_t slen = sep ? (size_t)(sep - text) : 0;
    if (!sep || slen == 0 || memchr(text, '/', slen) || memchr(text, '?', slen)) {
        anylock__format(errbuf, "URL must start with a scheme such as \"sqlite://\"");
        return ANYLOCK_URL_NO_SCHEME;
    }
    if (!isalpha((unsigned char)text[0]) || slen > 32) {
        anylock__format(errbuf, "bad URL scheme: it must start with a letter and have at most 32 characters");
        return ANYLOCK_URL_MALFORMED;
    }
    for (size_t i = 0; i < slen; i++) {
        int c = (unsigned char)text[i];
        if (!isalnum(c) && c != '+' && c != '-' && c != '.') {
            anylock__format(errbuf, "bad character '%c' in the URL scheme", c);
            return ANYLOCK_URL_MALFORMED;
        }
    }

    /* Every decoded piece is no longer than its source, plus a NUL each. */
    u->mem = malloc(2 * len + 16);
    if (!u->mem)
        return ANYLOCK_NOMEM;
    arena a = {u->mem};
    char *scheme = arena_take(&a, slen);
    for (size_t i = 0; i < slen; i++)
        scheme[i] = (char)tolower((unsigned char)text[i]);
    scheme[slen] = '\0';
    u->pub.scheme = scheme;

    size_t auth = slen + 3;
    size_t auth_end = auth;
    while (auth_end < len && text[auth_end] != '/' && text[auth_end] != '?')
        auth_end++;
    size_t path_end = auth_end;
    while (path_end < len && text[path_end] != '?')
        path_end++;

    size_t hosts_start = auth;
    const char *at = NULL;
    for (size_t i = auth; i < auth_end; i++)
        if (text[i] == '@')
            at = text + i;
    anylock_status st;
    if (at) {
        st = parse_userinfo(u, &a, text, auth, (size_t)(at - text), errbuf);
        if (st != ANYLOCK_OK)
            return st;
        hosts_start = (size_t)(at - text) + 1;
    }
    st = parse_hosts(u, &a, text, hosts_start, auth_end, errbuf);
    if (st != ANYLOCK_OK)
        return st;

    for (size_t i = auth_end; i < path_end; i++) {
        int c = (unsigned char)text[i];
        if (!is_pchar(c) && c != '/') {
            anylock__format(errbuf, "bad character '%c' in the URL path at offset %zu", c, i);
            return ANYLOCK_URL_BAD_PATH;
        }
    }
    size_t bad;
    char *path = arena_take(&a, path_end - auth_end);
    if (decode(text + auth_end, path_end - auth_end, path, &bad) != ANYLOCK_OK) {
        anylock__format(errbuf, "bad percent-escape in the URL path at offset %zu", auth_end + bad);
        return ANYLOCK_URL_BAD_ESCAPE;
    }
    u->pub.path = path;

    if (path_end < len) {
        st = parse_query(u, &a, text, path_end + 1, len, errbuf);
        if (st != ANYLOCK_OK)
            return st;
    }

    u->redacted = anylock__redact(text);
    if (!u->redacted)
        return ANYLOCK_NOMEM;
    u->pub.text = text;
    u->pub.redacted = u->redacted;
    return ANYLOCK_OK;
}

anylock_status anylock__url_parse(const char *text, anylock__url *u, char *errbuf)
{
    memset(u, 0, sizeof *u);
    if (!text) {
        anylock__format(errbuf, "URL is NULL");
        return ANYLOCK_INVALID;
    }
    anylock_status st = parse(text, u, errbuf);
    if (st != ANYLOCK_OK)
        anylock__url_free(u);
    return st;
}

void anylock__url_free(anylock__url *u)
{
    free(u->mem);
    free(u->hosts);
    free(u->params);
    free(u->redacted);
    memset(u, 0, sizeof *u);
}

const char *anylock_url_param_get(const anylock_url *url, const char *name)
{
    for (size_t i = 0; i < url->nparams; i++)
        if (!strcmp(url->params[i].name, name))
            return url->params[i].value;
    return NULL;
}

/* For tests/print_defaults.c only (never set otherwise): told of every
 * default a backend takes here, so that tests/test_docs.sh compares the
 * defaults the documentation states with the ones the code uses. */
void (*anylock__param_default_hook)(const char *scheme, const char *name, int64_t dflt_ms);

anylock_status anylock_url_param_ms(anylock_op *op, const anylock_url *url, const char *name, int64_t dflt,
                                    int64_t *out_ms)
{
    const char *v = anylock_url_param_get(url, name);
    if (!v) {
        if (anylock__param_default_hook)
            anylock__param_default_hook(url->scheme, name, dflt);
        *out_ms = dflt;
        return ANYLOCK_OK;
    }
    if (anylock__duration_parse(v, -1, out_ms, NULL, name) != ANYLOCK_OK || *out_ms < 0)
        return anylock_op_error(op, ANYLOCK_URL_BAD_PARAM, "URL parameter %s=%.32s is not a number of seconds",
                                name, v);
    return ANYLOCK_OK;
}
