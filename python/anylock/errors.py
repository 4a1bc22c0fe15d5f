"""The exceptions: one class per kind of status, all under LockError.

Each exception carries the library's status (``status``: the number,
``status_name``: "NOT_HELD") and its detail message (``str(e)``), which names
the store and what failed and never shows a password.  The classes also derive
from the builtin a Python programmer would catch (``RuntimeError`` for the
python-redis-lock ones, ``TimeoutError``, ``ValueError``, ``ConnectionError``).
"""
from ._ffi import lib, text


class LockError(Exception):
    """The base class of every anylock error."""

    status = None
    status_name = None

    def __init__(self, message, status=None):
        super().__init__(message)
        if status is not None:
            self.status = status
            self.status_name = status_name(status)


# python-redis-lock's names (redis_lock.NotAcquired, ...), same bases.
class NotAcquired(LockError, RuntimeError):
    """NOT_HELD: release/extend by an owner that does not hold the lock."""


class AlreadyAcquired(LockError, RuntimeError):
    """ALREADY_HELD: this handle, or this owner id, holds the lock already."""


class NotExpirable(LockError, RuntimeError):
    """NOT_EXPIRABLE: the lock was taken without an expiry."""


class TimeoutNotUsable(LockError, RuntimeError):
    """TRY_WITH_TIMEOUT: acquire(blocking=False, timeout=...)."""


class TimeoutTooLarge(LockError, RuntimeError):
    """TIMEOUT_TOO_LARGE: a wait longer than the expiry without auto-renewal."""


class InvalidTimeout(LockError, ValueError):
    """BAD_DURATION: a negative, NaN or absurd duration."""


class Timeout(LockError, TimeoutError):
    """TIMEOUT: the wait ran out (raised by ``with lock:``; acquire() returns
    False instead, as in python-redis-lock)."""


class Busy(Timeout):
    """BUSY: held by another owner, and the wait was 0."""


class InvalidArgument(LockError, ValueError):
    """A bad name, id, prefix, option or argument."""


class BadURL(InvalidArgument):
    """The URL does not parse, or names an unknown scheme or parameter."""


class Unsupported(LockError):
    """The store (or this build) cannot do it."""


class NoToken(Unsupported):
    """NO_TOKEN: the store issues no fencing tokens."""


class ModeUnsupported(Unsupported):
    """MODE_UNSUPPORTED: the store takes no shared locks or semaphores."""


class ModeConflict(LockError):
    """MODE_CONFLICT: the name is held in another mode or with other permits."""


class StoreError(LockError, ConnectionError):
    """The store could not be reached, refused, or answered wrongly."""


class OutcomeUnknown(StoreError):
    """OUTCOME_UNKNOWN: the store's answer was lost; it may or may not have done it."""


class Misuse(LockError, RuntimeError):
    """MISUSE: the library was used in an invalid order (or, for Closed,
    a closed client)."""


class Closed(Misuse):
    """The client was closed (or the interpreter is shutting down)."""


class Forked(LockError, RuntimeError):
    """FORKED: the client was opened by the parent process before fork();
    open a new Client in the child."""


class InternalError(LockError, RuntimeError):
    """INTERNAL, or a status this package does not know."""


class OutOfMemory(LockError, MemoryError):
    """NOMEM."""


_BY_NAME = {
    "BUSY": Busy,
    "TIMEOUT": Timeout,
    "ALREADY_HELD": AlreadyAcquired,
    "NOT_HELD": NotAcquired,
    "NOT_EXPIRABLE": NotExpirable,
    "UNSUPPORTED": Unsupported,
    "INVALID": InvalidArgument,
    "MISUSE": Misuse,
    "NOMEM": OutOfMemory,
    "BAD_NAME": InvalidArgument,
    "BAD_ID": InvalidArgument,
    "BAD_PREFIX": InvalidArgument,
    "BAD_DURATION": InvalidTimeout,
    "TRY_WITH_TIMEOUT": TimeoutNotUsable,
    "TIMEOUT_TOO_LARGE": TimeoutTooLarge,
    "RENEWAL_NEEDS_EXPIRY": InvalidArgument,
    "BACKEND_DISABLED": Unsupported,
    "BACKEND_EXISTS": Misuse,
    "BACKEND_INVALID": InternalError,
    "CONNECT": StoreError,
    "AUTH": StoreError,
    "IO": StoreError,
    "PROTOCOL": StoreError,
    "STORE": StoreError,
    "ACCESS": StoreError,
    "STORE_UNSAFE": StoreError,
    "INTERNAL": InternalError,
    "OUTCOME_UNKNOWN": OutcomeUnknown,
    "NO_TOKEN": NoToken,
    "MODE_UNSUPPORTED": ModeUnsupported,
    "MODE_CONFLICT": ModeConflict,
    "FORKED": Forked,
}


def status_name(status):
    """The status's name without the prefix ("BUSY"), from the library."""
    return text(lib.anylock_status_name(status))


def strerror(status):
    """The library's fixed message for a status."""
    return text(lib.anylock_strerror(status))


def _read_statuses():
    """{name: value} of every status the loaded library knows."""
    out = {}
    value = 0
    while strerror(value) != "unknown status" and value < 1000:
        out[status_name(value)] = value
        value += 1
    return out


STATUS = _read_statuses()
OK = STATUS["OK"]


def exception_class(status):
    """The exception class for a status (LockError's subclass; InternalError
    for one this package does not know)."""
    name = status_name(status)
    if name.startswith("URL_"):
        return BadURL
    return _BY_NAME.get(name, InternalError)


def error(status, message=""):
    """An exception for status with the library's message (or the status's
    own text when there is none)."""
    return exception_class(status)(message or strerror(status), status)


def check(status, message_fn=None):
    """Raises the exception for status unless it is OK; message_fn() gives
    the detail message (read only on failure)."""
    if status != OK:
        raise error(status, message_fn() if message_fn else "")
