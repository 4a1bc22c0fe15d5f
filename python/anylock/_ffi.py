"""The C library through cffi's ABI mode: the declarations below mirror
include/anylock.h (tests/test_abi.py checks every size, offset and constant
against a program compiled from the real header), and the library is opened
at import, with no compiler involved.

Which library: $ANYLOCK_LIBRARY if set (a path to libanylock.so.N, or to a
directory holding it, such as a build's .libs), else the installed one as the
dynamic linker finds it (libanylock.so.0, then whatever ctypes.util finds).

Every call through `lib` releases the GIL for its duration (cffi does that
for every foreign call), so a thread waiting in the library never stops the
others.
"""
import ctypes
import ctypes.util
import os

import cffi

CDEF = r"""
#define ANYLOCK_NAME_MAX 1024
#define ANYLOCK_ID_MAX 64
#define ANYLOCK_PREFIX_MAX 128
#define ANYLOCK_URL_MAX 4096
#define ANYLOCK_ERRMSG_MAX 256
#define ANYLOCK_HOST_MAX 64
#define ANYLOCK_LABEL_MAX 200
#define ANYLOCK_PERMITS_MAX 100000

#define ANYLOCK_FEATURE_NO_EXCLUSION 0x01
#define ANYLOCK_FEATURE_SESSION 0x02
#define ANYLOCK_FEATURE_FAIR 0x04
#define ANYLOCK_FEATURE_TOKEN 0x08
#define ANYLOCK_FEATURE_SHARED 0x10
#define ANYLOCK_FEATURE_SEMAPHORE 0x20
#define ANYLOCK_FEATURE_EXTEND 0x100
#define ANYLOCK_FEATURE_INSPECT 0x200
#define ANYLOCK_FEATURE_RESET 0x400
#define ANYLOCK_FEATURE_LIST 0x800
#define ANYLOCK_FEATURE_RESET_ALL 0x1000

/* The statuses are an enum in C; its values are fixed forever and read by
 * name at run time (anylock_status_name), so an int carries them here. */
typedef int anylock_status;

typedef struct anylock_client anylock_client;
typedef struct anylock_lock anylock_lock;

typedef enum anylock_mode { ANYLOCK_EXCLUSIVE = 0, ANYLOCK_SHARED = 1, ANYLOCK_SEMAPHORE = 2 } anylock_mode;

typedef struct anylock_info {
    const char *name;
    int held;
    char owner[65];
    double expires_in;
    size_t name_len;
    size_t owner_len;
    anylock_mode mode;
    unsigned permits;
    unsigned holders;
    char host[65];
    long pid;
    double since;
    char label[201];
} anylock_info;

typedef struct anylock_holder {
    const char *id;
    size_t id_len;
    double expires_in;
    anylock_mode mode;
    unsigned permits;
    const char *host;
    long pid;
    double since;
    const char *label;
} anylock_holder;

typedef int (*anylock_list_fn)(const anylock_info *info, void *userdata);
typedef int (*anylock_holder_fn)(const anylock_holder *holder, void *userdata);
typedef void (*anylock_lost_fn)(anylock_lock *lock, anylock_status why, void *userdata);

typedef enum anylock_log_level {
    ANYLOCK_LOG_ERROR = 0, ANYLOCK_LOG_WARNING = 1, ANYLOCK_LOG_INFO = 2, ANYLOCK_LOG_DEBUG = 3
} anylock_log_level;

typedef enum anylock_event {
    ANYLOCK_EVENT_MESSAGE = 0, ANYLOCK_EVENT_WAITING = 1, ANYLOCK_EVENT_ACQUIRED = 2,
    ANYLOCK_EVENT_NOT_ACQUIRED = 3, ANYLOCK_EVENT_RENEWED = 4, ANYLOCK_EVENT_RENEWAL_FAILED = 5,
    ANYLOCK_EVENT_LOST = 6, ANYLOCK_EVENT_RELEASED = 7, ANYLOCK_EVENT_CONNECTION = 8
} anylock_event;

typedef struct anylock_log_record {
    anylock_log_level level;
    anylock_event event;
    const anylock_lock *lock;
    const char *name;
    const char *scheme;
    anylock_status status;
    double expires_in;
    const char *message;
} anylock_log_record;

typedef void (*anylock_log_fn)(const anylock_log_record *record, void *userdata);

const char *anylock_version(void);
int anylock_version_number(void);
const char *anylock_strerror(anylock_status status);
const char *anylock_status_name(anylock_status status);
anylock_status anylock_set_default_timeout(double seconds);
anylock_status anylock_set_default_expires(double seconds);
anylock_status anylock_set_default_prefix(const char *prefix);
anylock_status anylock_parse_duration(const char *text, double *seconds);
anylock_status anylock_default_url(char *buf, size_t size);
void anylock_set_log(anylock_log_fn fn, anylock_log_level max_level, void *userdata);

anylock_status anylock_open(const char *url, anylock_client **out);
anylock_status anylock_close(anylock_client *client);
const char *anylock_errmsg(const anylock_client *client);
const char *anylock_client_url(const anylock_client *client);
const char *anylock_client_scheme(const anylock_client *client);
const char *anylock_client_prefix(const anylock_client *client);
unsigned anylock_client_features(const anylock_client *client);
anylock_status anylock_reset(anylock_client *client, const char *name);
anylock_status anylock_reset_all(anylock_client *client, size_t *count);
anylock_status anylock_inspect(anylock_client *client, const char *name, anylock_info *info);
anylock_status anylock_holders(anylock_client *client, const char *name, anylock_holder_fn fn, void *userdata);
anylock_status anylock_list(anylock_client *client, anylock_list_fn fn, void *userdata);
int anylock_backend_available(const char *scheme);

anylock_status anylock_lock_new(anylock_client *client, const char *name, anylock_lock **out);
void anylock_lock_free(anylock_lock *lock);
anylock_status anylock_lock_set_expires(anylock_lock *lock, double seconds);
anylock_status anylock_lock_set_timeout(anylock_lock *lock, double seconds);
anylock_status anylock_lock_set_id(anylock_lock *lock, const char *id);
anylock_status anylock_lock_set_auto_renewal(anylock_lock *lock, int on);
anylock_status anylock_lock_set_lost_callback(anylock_lock *lock, anylock_lost_fn fn, void *userdata);
anylock_status anylock_lock_set_mode(anylock_lock *lock, anylock_mode mode);
anylock_status anylock_lock_set_permits(anylock_lock *lock, unsigned permits);
anylock_status anylock_lock_set_label(anylock_lock *lock, const char *label);
anylock_status anylock_acquire(anylock_lock *lock);
anylock_status anylock_try_acquire(anylock_lock *lock);
anylock_status anylock_release(anylock_lock *lock);
anylock_status anylock_extend(anylock_lock *lock, double seconds);
anylock_status anylock_locked(anylock_lock *lock, int *locked);
anylock_status anylock_owner(anylock_lock *lock, char *buf, size_t size);
anylock_status anylock_lock_token(const anylock_lock *lock, uint64_t *token);
anylock_status anylock_lock_reset(anylock_lock *lock);
const char *anylock_lock_name(const anylock_lock *lock);
const char *anylock_lock_id(const anylock_lock *lock);
int anylock_lock_held(const anylock_lock *lock);
const char *anylock_lock_errmsg(const anylock_lock *lock);
"""

# The oldest library these declarations fit (ANYLOCK_VERSION_NUMBER 0.2.0).
MIN_VERSION_NUMBER = 2000

ffi = cffi.FFI()
ffi.cdef(CDEF)


def _candidates():
    path = os.environ.get("ANYLOCK_LIBRARY")
    if path:
        if os.path.isdir(path):
            return [os.path.join(path, "libanylock.so.0"), os.path.join(path, "libanylock.so")]
        return [path]
    found = ctypes.util.find_library("anylock")
    return ["libanylock.so.0"] + ([found] if found else [])


def _open():
    errors = []
    for name in _candidates():
        try:
            return ffi.dlopen(name), name
        except OSError as e:
            errors.append("%s: %s" % (name, e))
    raise ImportError("anylock: cannot load the C library libanylock (%s); install it, or set "
                      "ANYLOCK_LIBRARY to its path" % "; ".join(errors))


lib, library_path = _open()

if lib.anylock_version_number() < MIN_VERSION_NUMBER:
    raise ImportError("anylock: %s is version %s; this package needs 0.2.0 or later"
                      % (library_path, ffi.string(lib.anylock_version()).decode()))


def immortal(obj):
    """Never frees obj, whatever the interpreter does at exit: the library
    and the C callbacks it may still call must outlive every thread of the
    library (a renewal thread of a client that could not be closed in time
    at exit must not jump into unmapped code).  Returns obj."""
    try:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))
    except AttributeError:  # not CPython: a reference nobody drops
        _kept.append(obj)
    return obj


_kept = []


immortal(lib)
immortal(ffi)


def text(ptr, maxlen=-1):
    """A C string as str (UTF-8, undecodable bytes escaped); '' for NULL."""
    if ptr == ffi.NULL:
        return ""
    raw = ffi.string(ptr) if maxlen < 0 else ffi.string(ptr, maxlen)
    return raw.decode("utf-8", "surrogateescape")
