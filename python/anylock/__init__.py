"""anylock: named locks across processes and machines, on whichever store
you run, picked by a URL (sqlite://, redis://, memcached://, memory://, ...).

    import anylock
    with anylock.Lock("redis://127.0.0.1", "nightly-report", expire=60, auto_renewal=True):
        ...  # nobody else runs this at the same time

python-redis-lock's API (Lock, acquire/release/extend/locked/get_owner_id/
reset, reset_all, NotAcquired, AlreadyAcquired, ...) over the C library
libanylock, loaded through cffi; see Lock, Client and locked_get_or_set.
"""
from ._ffi import lib, library_path, text
from ._runtime import set_log_level
from .cache import ResultCache, locked_get_or_set
from .client import (DEFAULT_EXPIRES, DEFAULT_TIMEOUT, Client, Holder, LockInfo, default_url, parse_duration,
                     reset_all, set_default_expires, set_default_prefix, set_default_timeout,
                     url_of_redis_client)
from .errors import (STATUS, AlreadyAcquired, BadURL, Busy, Closed, Forked, InternalError, InvalidArgument,
                     InvalidTimeout, LockError, Misuse, ModeConflict, ModeUnsupported, NoToken, NotAcquired,
                     NotExpirable, OutcomeUnknown, OutOfMemory, StoreError, Timeout, TimeoutNotUsable,
                     TimeoutTooLarge, Unsupported, exception_class, status_name, strerror)
from .lock import THREAD_WAIT_SLICE, WAIT_SLICE, Lock, Semaphore, SharedLock

__version__ = "0.2.0"


def library_version():
    """The loaded libanylock's version string."""
    return text(lib.anylock_version())


def backend_available(scheme):
    """Whether this build of the library can open URLs of this scheme."""
    return bool(lib.anylock_backend_available(scheme.encode()))


__all__ = [
    "AlreadyAcquired", "BadURL", "Busy", "Client", "Closed", "DEFAULT_EXPIRES", "DEFAULT_TIMEOUT", "Forked",
    "Holder", "InternalError", "InvalidArgument", "InvalidTimeout", "Lock", "LockError", "LockInfo", "Misuse",
    "ModeConflict", "ModeUnsupported", "NoToken", "NotAcquired", "NotExpirable", "OutOfMemory",
    "OutcomeUnknown", "ResultCache", "STATUS", "Semaphore", "SharedLock", "StoreError", "THREAD_WAIT_SLICE",
    "Timeout", "TimeoutNotUsable", "TimeoutTooLarge", "Unsupported", "WAIT_SLICE", "backend_available",
    "default_url", "exception_class", "library_path", "library_version", "locked_get_or_set",
    "parse_duration", "reset_all", "set_default_expires", "set_default_prefix", "set_default_timeout",
    "set_log_level", "status_name", "strerror", "url_of_redis_client",
]
