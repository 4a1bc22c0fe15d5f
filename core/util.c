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
