/*
 * Prints the sizes, field offsets and constants of include/anylock.h as the
 * C compiler sees them, one "key value" per line, so that the Python
 * package's ABI-mode declarations (python/anylock/_ffi.py) are checked
 * against the real header (python/tests/test_abi.py).  Built by make, run
 * by the test.
 */
#include <stddef.h>
#include <stdio.h>

#include <anylock.h>

#define SIZE(T) printf("sizeof %s %zu\n", #T, sizeof(T))
#define OFF(T, F) printf("offsetof %s.%s %zu\n", #T, #F, offsetof(T, F))
#define FIELD(T, F) printf("sizeof %s.%s %zu\n", #T, #F, sizeof(((T *)0)->F))
#define CONST(C) printf("const %s %lld\n", #C, (long long)(C))

int main(void)
{
    SIZE(anylock_status);
    SIZE(anylock_mode);
    SIZE(anylock_log_level);
    SIZE(anylock_event);

    SIZE(anylock_info);
    OFF(anylock_info, name);
    OFF(anylock_info, held);
    OFF(anylock_info, owner);
    FIELD(anylock_info, owner);
    OFF(anylock_info, expires_in);
    OFF(anylock_info, name_len);
    OFF(anylock_info, owner_len);
    OFF(anylock_info, mode);
    OFF(anylock_info, permits);
    OFF(anylock_info, holders);
    OFF(anylock_info, host);
    FIELD(anylock_info, host);
    OFF(anylock_info, pid);
    OFF(anylock_info, since);
    OFF(anylock_info, label);
    FIELD(anylock_info, label);

    SIZE(anylock_holder);
    OFF(anylock_holder, id);
    OFF(anylock_holder, id_len);
    OFF(anylock_holder, expires_in);
    OFF(anylock_holder, mode);
    OFF(anylock_holder, permits);
    OFF(anylock_holder, host);
    OFF(anylock_holder, pid);
    OFF(anylock_holder, since);
    OFF(anylock_holder, label);

    SIZE(anylock_log_record);
    OFF(anylock_log_record, level);
    OFF(anylock_log_record, event);
    OFF(anylock_log_record, lock);
    OFF(anylock_log_record, name);
    OFF(anylock_log_record, scheme);
    OFF(anylock_log_record, status);
    OFF(anylock_log_record, expires_in);
    OFF(anylock_log_record, message);

    CONST(ANYLOCK_NAME_MAX);
    CONST(ANYLOCK_ID_MAX);
    CONST(ANYLOCK_PREFIX_MAX);
    CONST(ANYLOCK_URL_MAX);
    CONST(ANYLOCK_ERRMSG_MAX);
    CONST(ANYLOCK_HOST_MAX);
    CONST(ANYLOCK_LABEL_MAX);
    CONST(ANYLOCK_PERMITS_MAX);
    CONST(ANYLOCK_FEATURE_NO_EXCLUSION);
    CONST(ANYLOCK_FEATURE_SESSION);
    CONST(ANYLOCK_FEATURE_FAIR);
    CONST(ANYLOCK_FEATURE_TOKEN);
    CONST(ANYLOCK_FEATURE_SHARED);
    CONST(ANYLOCK_FEATURE_SEMAPHORE);
    CONST(ANYLOCK_FEATURE_EXTEND);
    CONST(ANYLOCK_FEATURE_INSPECT);
    CONST(ANYLOCK_FEATURE_RESET);
    CONST(ANYLOCK_FEATURE_LIST);
    CONST(ANYLOCK_FEATURE_RESET_ALL);
    CONST(ANYLOCK_EXCLUSIVE);
    CONST(ANYLOCK_SHARED);
    CONST(ANYLOCK_SEMAPHORE);
    CONST(ANYLOCK_LOG_ERROR);
    CONST(ANYLOCK_LOG_WARNING);
    CONST(ANYLOCK_LOG_INFO);
    CONST(ANYLOCK_LOG_DEBUG);
    CONST(ANYLOCK_VERSION_NUMBER);
    CONST(ANYLOCK_STATUS_COUNT_);
    printf("double ANYLOCK_DEFAULT_TIMEOUT %.17g\n", ANYLOCK_DEFAULT_TIMEOUT);
    printf("double ANYLOCK_DEFAULT_EXPIRES %.17g\n", ANYLOCK_DEFAULT_EXPIRES);
    printf("string ANYLOCK_DEFAULT_PREFIX %s\n", ANYLOCK_DEFAULT_PREFIX);
#define STATUS_LINE(name, value, msg) printf("status %s %d\n", #name, value);
    ANYLOCK_STATUS_MAP(STATUS_LINE)
#undef STATUS_LINE
    return 0;
}
