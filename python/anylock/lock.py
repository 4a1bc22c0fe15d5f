"""Lock: python-redis-lock's Lock, on any store anylock has."""
import math
import threading
import time

from . import _runtime
from ._ffi import ffi, lib, text
from .client import _duration, _Handle, _name, client_for
from .errors import (STATUS, AlreadyAcquired, Busy, Closed, Forked, LockError, NotAcquired, NotExpirable,
                     Timeout, TimeoutNotUsable, TimeoutTooLarge, error)

_OK = STATUS["OK"]
_BUSY = STATUS["BUSY"]
_TIMEOUT = STATUS["TIMEOUT"]
_NOT_HELD = STATUS["NOT_HELD"]

# A blocking acquire waits in slices, each one call into the library with
# the GIL released; between two slices Python runs its signal handlers and
# the wait sees close() or the interpreter's exit.  In the main thread (the
# only one where Python runs signal handlers) a slice is at most WAIT_SLICE
# seconds, so Ctrl-C raises KeyboardInterrupt within about that plus one
# round trip to the store; in other threads at most THREAD_WAIT_SLICE.  Each
# slice is one more try at the lock (on redis, a few small requests).
WAIT_SLICE = 0.2
THREAD_WAIT_SLICE = 1.0

_UNSET = object()


def _expiry_arg(value):
    """python-redis-lock's rule: a falsy expire is no expiry (None)."""
    if value is _UNSET:
        return _UNSET
    return value if value else None


class Lock:
    """A named lock in a store, as python-redis-lock has it::

        with Lock("redis://localhost", "report", expire=60, auto_renewal=True):
            ...

    url_or_client: a URL, a Client, a redis-py client (its server's URL), or
    None for the default store (default_url(): $ANYLOCK_URL, else a per-user
    SQLite file).  Lock("name", expires=60, timeout=10) (pylock's form, one
    positional argument) is the name on the default store.

    expire (alias expires): seconds until the store frees the lock unless it
    is renewed; None or 0 for never.  Omitted: the client's default (the
    URL's expires=, else 10 s).
    id: the owner id (1-64 printable ASCII characters; default random).
    Handles with the same id are the same owner.
    auto_renewal: keep extending the lock while held (from the library's
    renewal threads), so that the expiry only matters if this process dies.
    timeout: how long acquire() waits by default (None: forever; 0: no
    wait).  Omitted: the client's default (the URL's timeout=, else 60 s).
    on_lost: called as on_lost(lock, error) when a held lock is lost (its
    renewal failed past its expiry, it was reset, the store dropped it), on
    this package's callback thread; error is the LockError saying why.
    shared: a shared (reader) lock: shared holders coexist, exclusive ones
    exclude them.  permits: a semaphore of that many holders.
    label: a short text kept beside the lock for who inspects it.
    """

    def __init__(self, url_or_client=None, name=None, expire=_UNSET, id=None, auto_renewal=False,
                 timeout=_UNSET, *, expires=_UNSET, on_lost=None, shared=False, permits=None, label=None):
        self._handle = None
        if name is None:
            if not isinstance(url_or_client, str):
                raise TypeError("Lock() needs a name: Lock(url_or_client, name) or Lock(name)")
            if "://" in url_or_client:
                raise TypeError("Lock(%r): that is a URL; the name is missing" % (url_or_client,))
            url_or_client, name = None, url_or_client
        if expire is not _UNSET and expires is not _UNSET:
            raise TypeError("give expire or expires, not both")
        if expires is not _UNSET:
            expire = expires
        self._client = client_for(url_or_client)
        self._client._check()
        self._name = name
        self._expire = _expiry_arg(expire)
        self._timeout = timeout
        self._auto_renewal = bool(auto_renewal)
        self._on_lost = on_lost
        self._last_error = ""
        if permits is not None and shared:
            raise TypeError("a lock is shared or a semaphore, not both")

        out = ffi.new("anylock_lock **")
        raw = _name(name)
        self._client._call(lib.anylock_lock_new, raw, out)
        self._serial = _runtime.register_lost_target(self)
        self._handle = _Handle(out[0], self._serial)
        self._client._handles[self._serial] = self._handle
        try:
            if self._expire is not _UNSET:
                self._set(lib.anylock_lock_set_expires, _duration(self._expire))
            if id is not None:
                if not isinstance(id, str):
                    id = id.decode("ascii") if isinstance(id, bytes) else str(id)
                self._set(lib.anylock_lock_set_id, id.encode("ascii", "surrogateescape"))
            if self._auto_renewal:
                self._set(lib.anylock_lock_set_auto_renewal, 1)
            if timeout is not _UNSET:
                # Checked here, so that a bad value fails at construction.
                self._set(lib.anylock_lock_set_timeout, _duration(timeout))
            if shared:
                self._set(lib.anylock_lock_set_mode, 1)
            if permits is not None:
                self._set(lib.anylock_lock_set_permits, int(permits))
            if label:
                self._set(lib.anylock_lock_set_label, label.encode("utf-8"))
            if on_lost is not None:
                self._set_lost_callback()
        except BaseException:
            self.close()
            raise

    # ---- plumbing -----------------------------------------------------------

    def _call(self, fn, *args):
        """fn(lock_ptr, *args) -> status, with this handle's mutex held;
        returns the status and the lock's message ("" on success)."""
        c = self._client
        if c._gen != _runtime.fork_generation():
            raise Forked("this lock's client was opened before fork() by the parent process; open a new "
                         "Client in this process", STATUS["FORKED"])
        c._check()
        h = self._handle
        with h.mu:
            if h.ptr is None:
                raise Closed("lock %r: its handle was closed" % (self._name,), STATUS["MISUSE"])
            st = fn(h.ptr, *args)
            msg = text(lib.anylock_lock_errmsg(h.ptr), 256) if st != _OK else ""
        _runtime.reraise_pending()
        return st, msg

    def _set(self, fn, *args):
        st, msg = self._call(fn, *args)
        if st != _OK:
            raise error(st, msg)

    def _set_lost_callback(self):
        self._set(lib.anylock_lock_set_lost_callback, _runtime.c_lost_callback,
                  ffi.cast("void *", self._serial))

    def _deliver_lost(self, why, message):
        fn = self._on_lost
        if fn is not None:
            fn(self, error(why, message))

    def _effective_expire(self):
        return self._client.default_expires if self._expire is _UNSET else self._expire

    # ---- python-redis-lock's API --------------------------------------------

    def acquire(self, blocking=True, timeout=None):
        """Takes the lock: True when taken, False when the wait ran out (or,
        with blocking=False, when someone else holds it).

        timeout: seconds to wait (None: the lock's timeout, else the
        client's default; 0: do not wait).  blocking=False tries once and
        cannot have a timeout (TimeoutNotUsable).  A timeout longer than the
        expiry needs auto_renewal (TimeoutTooLarge).  AlreadyAcquired if this
        handle, or this owner id through another handle, holds it.

        The wait releases the GIL; in the main thread Ctrl-C interrupts it
        (KeyboardInterrupt) within about WAIT_SLICE seconds.
        """
        if not blocking:
            if timeout is not None:
                raise TimeoutNotUsable("lock %r: a timeout cannot be used with blocking=False" % (self._name,),
                                       STATUS["TRY_WITH_TIMEOUT"])
            wait, explicit = 0.0, True
        elif timeout is not None:
            wait, explicit = timeout, True
        elif self._timeout is not _UNSET:
            wait, explicit = self._timeout, True
        else:
            wait, explicit = self._client.default_timeout, False
        wait = _duration(wait)
        # The library checks the value (negative, NaN, absurd).
        self._check_acquire(self._call(_set_timeout_unless_held, wait))
        expire = self._effective_expire()
        if (explicit and not self._auto_renewal and expire is not None and not math.isinf(wait)
                and math.ceil(wait * 1000) > math.ceil(expire * 1000)):
            raise TimeoutTooLarge("lock %r: the wait timeout (%g s) is longer than the expiry (%g s); turn on "
                                  "auto_renewal" % (self._name, wait, expire), STATUS["TIMEOUT_TOO_LARGE"])
        deadline = time.monotonic() + wait
        # A slice may not exceed the expiry without renewal (the library
        # checks every timeout given to it against the expiry).
        cap = WAIT_SLICE if threading.current_thread() is threading.main_thread() else THREAD_WAIT_SLICE
        if not self._auto_renewal and expire is not None:
            cap = min(cap, expire)
        try:
            while True:
                left = deadline - time.monotonic()
                piece = 0.0 if wait == 0 else max(0.0, min(cap, left))
                st, msg = self._call(_acquire_for, piece)
                if st == _OK:
                    return True
                if st not in (_TIMEOUT, _BUSY):
                    self._check_acquire((st, msg))
                if wait == 0 or time.monotonic() >= deadline:
                    self._last_status = _BUSY if wait == 0 else _TIMEOUT
                    if wait == 0:
                        self._last_error = "lock %r: %s" % (self._name, msg or "held by another owner")
                    else:
                        self._last_error = "lock %r: not acquired within %g s (%s)" % (
                            self._name, wait, msg or "held by another owner")
                    return False
        except BaseException as e:
            # Interrupted (Ctrl-C, another signal's exception) after a slice
            # took the lock but before the caller heard of it: let it go.
            if (not isinstance(e, LockError) and self._handle.ptr is not None
                    and lib.anylock_lock_held(self._handle.ptr)):
                try:
                    self._call(lib.anylock_release)
                except BaseException:  # noqa: B902 - the first exception is the one to see
                    pass
            raise

    def _check_acquire(self, result):
        st, msg = result
        if st == _HELD_HERE:
            raise AlreadyAcquired("lock %r is already held by this handle (id %s)" % (self._name, self.id),
                                  STATUS["ALREADY_HELD"])
        if st != _OK:
            raise error(st, msg)

    def release(self):
        """Releases the lock; NotAcquired if this owner id does not hold it
        (never taken, expired, reset, lost: the message says which)."""
        st, msg = self._call(lib.anylock_release)
        if st != _OK:
            raise error(st, msg)

    def extend(self, expire=None):
        """Sets the lock's expiry to expire seconds from now (None: the
        lock's own expiry).  NotAcquired if this owner does not hold it,
        NotExpirable if it was taken without an expiry."""
        if expire:
            seconds = float(expire)
        else:
            seconds = self._effective_expire()
            if seconds is None:
                raise NotExpirable("lock %r has no expiry: give extend() one" % (self._name,),
                                   STATUS["NOT_EXPIRABLE"])
        st, msg = self._call(lib.anylock_extend, seconds)
        if st != _OK:
            raise error(st, msg)

    def locked(self):
        """Whether anyone holds the lock, as the store says now."""
        out = ffi.new("int *")
        st, msg = self._call(lib.anylock_locked, out)
        if st != _OK:
            raise error(st, msg)
        return bool(out[0])

    def get_owner_id(self):
        """The holder's owner id (a holder's, for shared locks), or None
        when the lock is free."""
        buf = ffi.new("char[]", 65)
        st, msg = self._call(lib.anylock_owner, buf, len(buf))
        if st == STATUS["INVALID"]:
            # A value another client stored that is no owner id: as stored.
            holders = self._client.holders(self._name)
            return holders[0].id if holders else None
        if st != _OK:
            raise error(st, msg)
        return text(buf) or None

    def reset(self):
        """Force-frees the lock, whoever holds it (every holder)."""
        self._client.reset(self._name)

    def __enter__(self):
        if not self.acquire(blocking=True):
            st = getattr(self, "_last_status", _TIMEOUT)
            cls = Busy if st == _BUSY else Timeout
            raise cls(self._last_error or "lock %r: not acquired in time" % (self._name,), st)
        return self

    def __exit__(self, exc_type=None, exc_value=None, traceback=None):
        self.release()

    # ---- anylock's own --------------------------------------------------------

    @property
    def name(self):
        return self._name

    @property
    def id(self):
        """The owner id."""
        return text(lib.anylock_lock_id(self._handle.ptr)) if self._handle.ptr is not None else None

    @property
    def client(self):
        return self._client

    @property
    def held(self):
        """Whether this handle believes it holds the lock (acquired, not
        released, not lost, not past its expiry); no round trip."""
        h = self._handle
        if h is None or h.ptr is None or self._client._gen != _runtime.fork_generation():
            return False
        return bool(lib.anylock_lock_held(h.ptr))

    @property
    def token(self):
        """The fencing token of the acquisition held: a number strictly
        greater for each acquisition of the name than for any earlier one.
        NotAcquired when not held; NoToken when the store issues none."""
        out = ffi.new("uint64_t *")
        st, msg = self._call(lib.anylock_lock_token, out)
        if st == _NOT_HELD:
            raise NotAcquired("lock %r is not held by this handle" % (self._name,), st)
        if st != _OK:
            raise error(st, msg or "lock %r: the %s store issues no fencing tokens" % (self._name,
                                                                                     self._client.scheme))
        return int(out[0])

    @property
    def on_lost(self):
        return self._on_lost

    @on_lost.setter
    def on_lost(self, fn):
        """Set while the lock is not held."""
        self._on_lost = fn
        if fn is not None:
            self._set_lost_callback()
        else:
            self._set(lib.anylock_lock_set_lost_callback, ffi.NULL, ffi.NULL)

    def inspect(self):
        """A LockInfo for this lock's name."""
        return self._client.inspect(self._name)

    def holders(self):
        return self._client.holders(self._name)

    def close(self):
        """Frees the handle now (releasing the lock if held).  Later calls
        raise Closed."""
        h = self._handle
        if h is not None:
            h.free(self._client)

    def __del__(self):
        h = getattr(self, "_handle", None)
        if h is None or h.ptr is None:
            return
        c = self._client
        if c._gen != _runtime.fork_generation():
            h.free(c)  # memory only: nothing else to do in a child
            return
        if _runtime.closing:
            return  # exit frees every handle (or leaves a busy client be)
        # Freeing may release over the network and wait for the library's
        # threads; __del__ may run on any thread: hand it over.
        try:
            _runtime.post((_Handle.free, (h, c)))
        except BaseException:  # noqa: B902 - __del__ must not raise
            pass

    def __repr__(self):
        return "<anylock.Lock %r on %s%s>" % (self._name, self._client.url, " held" if self.held else "")


# Not a status: "this handle holds it", found before asking the library
# (whose option calls refuse to run on a held handle).
_HELD_HERE = -1


def _set_timeout_unless_held(ptr, seconds):
    if lib.anylock_lock_held(ptr):
        return _HELD_HERE
    return lib.anylock_lock_set_timeout(ptr, seconds)


def _acquire_for(ptr, seconds):
    st = _set_timeout_unless_held(ptr, seconds)
    if st != _OK:
        return st
    return lib.anylock_acquire(ptr)


class Semaphore(Lock):
    """A counting semaphore: at most `permits` holders of the name at once
    (every handle of one name must say the same number)."""

    def __init__(self, url_or_client=None, name=None, permits=1, **options):
        if name is None and isinstance(url_or_client, str) and "://" not in url_or_client:
            url_or_client, name = None, url_or_client
        super().__init__(url_or_client, name, permits=permits, **options)


class SharedLock(Lock):
    """A shared (reader) lock: Lock(..., shared=True)."""

    def __init__(self, url_or_client=None, name=None, **options):
        super().__init__(url_or_client, name, shared=True, **options)

