/* SPDX-License-Identifier: BSD-2-Clause */
/* Small string and message helpers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

char *anylock__strndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

char *anylock__strdup(const char *s)
{
    return anylock__strndup(s, strlen(s));
}

void anylock__vformat(char *buf, const char *fmt, va_list ap)
{
    if (!buf)
        return;
    int n = vsnprintf(buf, ANYLOCK_ERRMSG_MAX, fmt, ap);
    if (n < 0)
        buf[0] = '\0';
}

void anylock__format(char *buf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    anylock__vformat(buf, fmt, ap);
    va_end(ap);
}

size_t anylock__utf8_len(const unsigned char *s, size_t avail)
{
    if (avail == 0)
        return 0;
    if (s[0] < 0x80)
        return 1;
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
    unsigned cp = s[0] & (0x7f >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

anylock_status anylock_op_error(anylock_op *op, anylock_status status, const char *fmt, ...)
{
    if (op && op->errbuf) {
        va_list ap;
        va_start(ap, fmt);
        anylock__vformat(op->errbuf, fmt, ap);
        va_end(ap);
    }
    return status;
}
