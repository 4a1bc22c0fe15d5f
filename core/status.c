/* Status names and messages, generated from the one list in anylock.h. */
#include "internal.h"

static const char *const messages[] = {
#define ANYLOCK__MSG(name, msg) msg,
    ANYLOCK_STATUS_MAP(ANYLOCK__MSG)
#undef ANYLOCK__MSG
};

static const char *const names[] = {
#define ANYLOCK__NAME(name, msg) #name,
    ANYLOCK_STATUS_MAP(ANYLOCK__NAME)
#undef ANYLOCK__NAME
};

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
