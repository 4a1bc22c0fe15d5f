/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Holder metadata: who holds a lock, kept by the backend beside it as one
 * opaque string, written and read only here.  The format (docs/guarantees.md
 * documents it for other tools) is ASCII:
 *
 *   anylock/1;id=ID;pid=PID;host=HOST;label=LABEL;since=UNIXTIME
 *
 * where HOST and LABEL are percent-encoded (every byte outside 0x21-0x7e,
 * and '%', ';' and '='), PID is decimal and UNIXTIME is seconds with
 * milliseconds.  Fields may come in any order; unknown ones are skipped.  The
 * id ties the metadata to its holder: metadata whose id is not the record's
 * (left behind by a holder that another client replaced) is ignored.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char magic[] = "anylock/1";

static size_t put_encoded(char *out, size_t o, size_t max, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int plain = *p > 0x20 && *p < 0x7f && *p != '%' && *p != ';' && *p != '=';
        if (o + (plain ? 1 : 3) >= max)
            break;
        if (plain) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    return o;
}

/* The part that changes with each acquire ("since") goes last, so that the
 * rest is made once per handle (anylock__meta_fixed) and only this is
 * written per acquire. */
#define SINCE_MAX 32

size_t anylock__meta_fixed(char *buf, const char *id, const char *host, long pid, const char *label)
{
    size_t max = ANYLOCK_META_MAX - SINCE_MAX;
    int n = snprintf(buf, max, "%s;id=%s;pid=%ld;host=", magic, id, pid);
    if (n < 0 || (size_t)n >= max)
        return 0;
    size_t o = put_encoded(buf, (size_t)n, max, host);
    if (label && *label && o + 7 < max) {
        memcpy(buf + o, ";label=", 7);
        o = put_encoded(buf, o + 7, max, label);
    }
    buf[o] = '\0';
    return o;
}

size_t anylock__meta_since(char *buf, size_t fixed_len, int64_t since_ms)
{
    if (!fixed_len)
        return 0;
    /* By hand: this runs on every acquire, and printf is most of its cost. */
    char digits[24];
    int n = 0;
    uint64_t v = since_ms > 0 ? (uint64_t)since_ms : 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v || n < 4);
    char *p = buf + fixed_len;
    memcpy(p, ";since=", 7);
    p += 7;
    for (int i = n - 1; i >= 3; i--)
        *p++ = digits[i];
    *p++ = '.';
    for (int i = 2; i >= 0; i--)
        *p++ = digits[i];
    *p = '\0';
    return (size_t)(p - buf);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decodes v[0..n) into out (size bytes), dropping it all if it is not valid
 * UTF-8 free of control characters. */
static void get_decoded(const char *v, size_t n, char *out, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < size; i++) {
        int c = (unsigned char)v[i];
        if (c == '%' && i + 2 < n && hexval((unsigned char)v[i + 1]) >= 0 && hexval((unsigned char)v[i + 2]) >= 0) {
            c = hexval((unsigned char)v[i + 1]) << 4 | hexval((unsigned char)v[i + 2]);
            i += 2;
        }
        out[o++] = (char)c;
    }
    out[o] = '\0';
    const unsigned char *s = (const unsigned char *)out;
    for (size_t i = 0; i < o;) {
        size_t len = anylock__utf8_len(s + i, o - i);
        if (len == 0 || s[i] < 0x20 || s[i] == 0x7f || (len == 2 && s[i] == 0xc2 && s[i + 1] < 0xa0)) {
            out[0] = '\0';
            return;
        }
        i += len;
    }
}

void anylock__meta_decode(const char *meta, size_t meta_len, const char *id, size_t id_len,
                          char host[ANYLOCK_HOST_MAX + 1], long *pid, double *since,
                          char label[ANYLOCK_LABEL_MAX + 1])
{
    host[0] = label[0] = '\0';
    *pid = 0;
    *since = 0;
    size_t mlen = sizeof magic - 1;
    if (!meta || meta_len < mlen || memcmp(meta, magic, mlen) || (meta_len > mlen && meta[mlen] != ';'))
        return;
    char h[ANYLOCK_HOST_MAX + 1] = "", l[ANYLOCK_LABEL_MAX + 1] = "";
    long p = 0;
    double t = 0;
    int id_ok = 0;
    for (size_t i = mlen; i < meta_len;) {
        size_t start = i + 1, end = start;
        while (end < meta_len && meta[end] != ';')
            end++;
        const char *eq = memchr(meta + start, '=', end - start);
        if (eq) {
            size_t klen = (size_t)(eq - (meta + start));
            const char *v = eq + 1;
            size_t vlen = (size_t)(meta + end - v);
            char num[32];
            snprintf(num, sizeof num, "%.*s", (int)(vlen < 31 ? vlen : 31), v);
            if (klen == 2 && !memcmp(meta + start, "id", 2))
                id_ok = vlen == id_len && !memcmp(v, id, id_len);
            else if (klen == 4 && !memcmp(meta + start, "host", 4))
                get_decoded(v, vlen, h, sizeof h);
            else if (klen == 5 && !memcmp(meta + start, "label", 5))
                get_decoded(v, vlen, l, sizeof l);
            else if (klen == 3 && !memcmp(meta + start, "pid", 3))
                p = strtol(num, NULL, 10);
            else if (klen == 5 && !memcmp(meta + start, "since", 5))
                t = strtod(num, NULL);
        }
        i = end;
    }
    if (!id_ok)
        return;
    memcpy(host, h, sizeof h);
    memcpy(label, l, sizeof l);
    *pid = p > 0 ? p : 0;
    *since = t > 0 && t < 1e12 ? t : 0;
}
