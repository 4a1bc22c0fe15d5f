/* SPDX-License-Identifier: BSD-2-Clause */
/* Status names and messages, generated from the one list in anylock.h. */
#include "internal.h"

static const char *const messages[] = {
#define ANYLOCK__MSG(name, value, msg) [value] = msg,
    ANYLOCK_STATUS_MAP(ANYLOCK__MSG)
#undef ANYLOCK__MSG
};

static const char *const names[] = {
#define ANYLOCK__NAME(name, value, msg) [value] = #name,
    ANYLOCK_STATUS_MAP(ANYLOCK__NAME)
#undef ANYLOCK__NAME
};

_Static_assert(sizeof messages / sizeof *messages == ANYLOCK_STATUS_COUNT_, "one message per status");

const char *anylock_strerror(anylock_status status)
{
    if ((unsigned)status >= (unsigned)ANYLOCK_STATUS_COUNT_)
        return "unknown status";
    return messages[status];
}

const char *anylock_status_name(anylock_status status)
{
    if ((unsigned)status >= (unsigned)ANYLOCK_STATUS_COUNT_)
        return "UNKNOWN";
    return names[status];
}

const char *anylock_version(void)
{
    return ANYLOCK_VERSION_STRING;
}

int anylock_version_number(void)
{
    return ANYLOCK_VERSION_NUMBER;
}
