"""Client: one store, opened from a URL; shareable between threads."""
import collections
import math
import threading
import urllib.parse

from . import _runtime
from ._ffi import ffi, lib, text
from .errors import OK, STATUS, Closed, Forked, InvalidArgument, check, error

# The library's built-in defaults (ANYLOCK_DEFAULT_TIMEOUT / _EXPIRES; the
# ABI test checks them against the header).
DEFAULT_TIMEOUT = 60.0
DEFAULT_EXPIRES = 10.0

# The process-wide defaults as set through this package (the library takes a
# snapshot at each open; so does Client, to know a lock's wait and expiry).
_process_defaults = {"timeout": None, "expires": None}

FEATURES = {
    "no_exclusion": 0x01, "session": 0x02, "fair": 0x04, "token": 0x08, "shared": 0x10,
    "semaphore": 0x20, "extend": 0x100, "inspect": 0x200, "reset": 0x400, "list": 0x800,
    "reset_all": 0x1000,
}
MODES = {0: "exclusive", 1: "shared", 2: "semaphore"}

LockInfo = collections.namedtuple(
    "LockInfo", "name held owner expires_in mode permits holders host pid since label")
LockInfo.__doc__ = """What the store knows of one lock.  expires_in is seconds
left (None: never expires; 0 when free); mode "exclusive", "shared" or
"semaphore"; holders how many hold it; host, pid, since (Unix time) and label
describe the holder where the store keeps them (""/0/0.0 when unknown)."""

Holder = collections.namedtuple("Holder", "id expires_in mode permits host pid since label")
Holder.__doc__ = """One holder of a lock (Client.holders)."""


def _duration(seconds):
    """Python's None (no limit) as the library's ANYLOCK_FOREVER."""
    return math.inf if seconds is None else float(seconds)


def _seconds_or_none(value):
    return None if math.isinf(value) else value


def parse_duration(text_value):
    """A duration as URLs write it ("1.5", "forever", "never") in seconds;
    None for forever."""
    out = ffi.new("double *")
    check(lib.anylock_parse_duration(text_value.encode(), out),
          lambda: "bad duration %r" % (text_value,))
    return _seconds_or_none(out[0])


def set_default_timeout(seconds):
    """The wait timeout of clients opened from now on in this process (None:
    wait forever).  The URL's timeout= and a lock's own come first."""
    check(lib.anylock_set_default_timeout(_duration(seconds)), lambda: "bad timeout %r" % (seconds,))
    _process_defaults["timeout"] = seconds


def set_default_expires(seconds):
    """The expiry of locks of clients opened from now on (None: never)."""
    check(lib.anylock_set_default_expires(_duration(seconds)), lambda: "bad expiry %r" % (seconds,))
    _process_defaults["expires"] = seconds


def set_default_prefix(prefix):
    """The key prefix of clients opened from now on (default "lock:")."""
    check(lib.anylock_set_default_prefix(prefix.encode()), lambda: "bad prefix %r" % (prefix,))


def default_url():
    """The default store: $ANYLOCK_URL if set, else a per-user SQLite file
    (anylock_default_url in the C API)."""
    buf = ffi.new("char[]", 4096 + 256)
    st = lib.anylock_default_url(buf, len(buf))
    if st != OK:
        raise error(st, text(buf))
    return text(buf)


def _query(url):
    """The top-level query parameters of url (nested URLs stay encoded)."""
    if "?" not in url:
        return {}
    out = {}
    for part in url.split("?", 1)[1].split("&"):
        key, _, value = part.partition("=")
        out[urllib.parse.unquote(key)] = urllib.parse.unquote(value)
    return out


def url_of_redis_client(conn):
    """A redis:// URL for a redis-py client (redis.Redis / StrictRedis), so
    that python-redis-lock code passing its connection keeps working: the
    same server, database and credentials (the URL is the client's own; the
    connection itself is not shared)."""
    kw = dict(conn.connection_pool.connection_kwargs)
    user = kw.get("username") or ""
    password = kw.get("password") or ""
    auth = ""
    if user or password:
        auth = urllib.parse.quote(user, safe="")
        if password:
            auth += ":" + urllib.parse.quote(password, safe="")
        auth += "@"
    db = int(kw.get("db") or 0)
    if kw.get("path"):
        url = "redis+unix://%s%s" % (auth, kw["path"])
        return url + ("?db=%d" % db if db else "")
    host = kw.get("host") or "localhost"
    if ":" in host:
        host = "[%s]" % host
    return "redis://%s%s:%d/%d" % (auth, host, int(kw.get("port") or 6379), db)


class _Handle:
    """One anylock_lock*, freed once: by Lock.close(), by the callback thread
    after the Lock was collected, by Client.close() or at exit."""

    __slots__ = ("ptr", "mu", "serial", "__weakref__")

    def __init__(self, ptr, serial):
        self.ptr = ptr
        self.mu = threading.Lock()
        self.serial = serial

    def free(self, client, wait=-1):
        """Frees the handle (releasing what it holds); False if its mutex
        could not be had within wait seconds (-1: no limit)."""
        if client._gen != _runtime.fork_generation():
            # In a child after fork: the mutex may be the parent thread's;
            # the library frees only the memory.
            self._free_now(client)
            return True
        if not self.mu.acquire(timeout=wait):
            return False
        try:
            self._free_now(client)
        finally:
            self.mu.release()
        return True

    def _free_now(self, client):
        ptr, self.ptr = self.ptr, None
        if ptr is not None:
            lib.anylock_lock_free(ptr)
            _runtime.unregister_lost_target(self.serial)
            client._handles.pop(self.serial, None)


class Client:
    """A client for one store, opened from its URL (None: default_url()).

    Thread-safe: threads may share one Client and make their own locks from
    it (a lock handle serialises its own calls).  Closing it (close(), the
    end of a with block, or garbage collection) frees its locks' handles,
    releasing what they hold.
    """

    def __init__(self, url=None):
        if url is None:
            url = default_url()
        if not isinstance(url, str):
            raise TypeError("Client(url): url must be a str, not %s" % type(url).__name__)
        self._gen = _runtime.fork_generation()
        self._ptr = None
        self._closed = False
        self._handles = {}
        self._busy = 0
        self._cond = threading.Condition(threading.Lock())
        out = ffi.new("anylock_client **")
        st = lib.anylock_open(url.encode("utf-8", "surrogateescape"), out)
        ptr = out[0]
        if st != OK:
            message = text(lib.anylock_errmsg(ptr)) if ptr != ffi.NULL else ""
            lib.anylock_close(ptr)
            raise error(st, message)
        self._ptr = ptr
        self.url = text(lib.anylock_client_url(ptr))
        self.scheme = text(lib.anylock_client_scheme(ptr))
        self.prefix = text(lib.anylock_client_prefix(ptr))
        bits = lib.anylock_client_features(ptr)
        self.features = frozenset(k for k, v in FEATURES.items() if bits & v)
        self.default_timeout, self.default_expires = self._defaults(url)
        _runtime.clients.add(self)
        _runtime._ensure_thread()

    def _defaults(self, url):
        """The wait and expiry a lock of this client has unless it sets its
        own (None: forever / never), as the library computes them."""
        q = _query(url)
        if "timeout" in q:
            timeout = parse_duration(q["timeout"])
        elif _process_defaults["timeout"] is not None:
            timeout = _process_defaults["timeout"]
        else:
            timeout = DEFAULT_TIMEOUT
        if "expires" in q:
            expires = parse_duration(q["expires"])
        elif "session" in self.features and _process_defaults["expires"] is None:
            expires = None
        elif _process_defaults["expires"] is not None:
            expires = _seconds_or_none(_process_defaults["expires"])
        else:
            expires = DEFAULT_EXPIRES
        return timeout, expires

    # ---- the calls ------------------------------------------------------

    def _check(self):
        if self._gen != _runtime.fork_generation():
            raise Forked("this %s:// client was opened before fork() by the parent process; open a new "
                         "Client in this process" % self.scheme, STATUS["FORKED"])
        if self._closed or self._ptr is None:
            raise Closed("this %s:// client is closed" % self.scheme, STATUS["MISUSE"])
        if _runtime.closing and not _runtime.in_callback_thread():
            raise Closed("the interpreter is shutting down", STATUS["MISUSE"])

    def _enter(self):
        self._check()
        with self._cond:
            if self._closed:
                raise Closed("this %s:// client is closed" % self.scheme, STATUS["MISUSE"])
            self._busy += 1

    def _leave(self):
        with self._cond:
            self._busy -= 1
            if self._busy == 0:
                self._cond.notify_all()

    def _call(self, fn, *args):
        """fn(client_ptr, *args) -> status; raises on failure with the
        client's message."""
        self._enter()
        try:
            st = fn(self._ptr, *args)
            if st != OK:
                msg = text(lib.anylock_errmsg(self._ptr), 256)
        finally:
            self._leave()
        _runtime.reraise_pending()
        if st != OK:
            raise error(st, msg)

    def can(self, feature):
        """Whether the store can: "token", "shared", "semaphore", "session",
        "fair", "extend", "inspect", "reset", "list", "reset_all",
        "no_exclusion"."""
        if feature not in FEATURES:
            raise ValueError("unknown feature %r (one of %s)" % (feature, ", ".join(sorted(FEATURES))))
        return feature in self.features

    def lock(self, name, **options):
        """A Lock on this client (the options are Lock's)."""
        from .lock import Lock

        return Lock(self, name, **options)

    def reset(self, name):
        """Force-frees the named lock (every holder), whoever holds it."""
        self._call(lib.anylock_reset, _name(name))

    def reset_all(self):
        """Force-frees every lock under the client's prefix; how many."""
        count = ffi.new("size_t *")
        self._call(lib.anylock_reset_all, count)
        return int(count[0])

    def inspect(self, name):
        """A LockInfo for the named lock."""
        info = ffi.new("anylock_info *")
        raw = _name(name)
        self._call(lib.anylock_inspect, raw, info)
        return _info(info, name)

    def locked(self, name):
        """Whether anyone holds the named lock."""
        return self.inspect(name).held

    def holders(self, name):
        """Every holder of the named lock, as Holder tuples."""
        found = []
        handle = ffi.new_handle(found)
        self._call(lib.anylock_holders, _name(name), _c_holder, handle)
        return found

    def list(self):
        """Every held lock under the client's prefix, as LockInfo tuples."""
        found = []
        handle = ffi.new_handle(found)
        self._call(lib.anylock_list, _c_info, handle)
        return found

    # ---- closing --------------------------------------------------------

    def close(self):
        """Frees every lock handle of this client (releasing what they hold)
        and closes the client.  Idempotent."""
        if self._gen != _runtime.fork_generation():
            self._shutdown(0)
            return
        if self._ptr is None and not self._handles:
            return
        self._shutdown(-1)

    def _shutdown(self, wait):
        """close(), waiting at most wait seconds (-1: no limit) for each busy
        handle; leaves the client open if one stays busy."""
        forked = self._gen != _runtime.fork_generation()
        if not forked:
            with self._cond:
                self._closed = True
                if wait < 0:
                    while self._busy:
                        self._cond.wait()
                else:
                    self._cond.wait_for(lambda: self._busy == 0, wait)
                    if self._busy:
                        return
        else:
            self._closed = True
        for handle in list(self._handles.values()):
            if not handle.free(self, wait):
                return
        ptr, self._ptr = self._ptr, None
        if ptr is not None:
            lib.anylock_close(ptr)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        # On whatever thread the collector runs: close on the callback thread.
        if getattr(self, "_ptr", None) is None:
            return
        if self._gen != _runtime.fork_generation() or _runtime.closing:
            return
        try:
            _runtime.post((Client._shutdown, (self, -1)))
        except BaseException:  # noqa: B902 - __del__ must not raise
            pass

    def __repr__(self):
        state = "closed" if self._ptr is None else "open"
        return "<anylock.Client %s %s>" % (self.url, state)


def _name(name):
    if not isinstance(name, str):
        raise TypeError("a lock name is a str, not %s" % type(name).__name__)
    if "\0" in name:
        raise InvalidArgument("lock name %r contains a NUL character" % (name,), STATUS["BAD_NAME"])
    return name.encode("utf-8", "surrogateescape")


def _info(info, name=None):
    if name is None:
        name = ffi.unpack(info.name, info.name_len).decode("utf-8", "surrogateescape")
    return LockInfo(
        name=name,
        held=bool(info.held),
        owner=(ffi.string(info.owner).decode("utf-8", "surrogateescape") or None) if info.held else None,
        expires_in=_seconds_or_none(info.expires_in),
        mode=MODES.get(info.mode, "exclusive"),
        permits=int(info.permits),
        holders=int(info.holders),
        host=ffi.string(info.host).decode("utf-8", "surrogateescape"),
        pid=int(info.pid),
        since=float(info.since),
        label=ffi.string(info.label).decode("utf-8", "surrogateescape"),
    )


def _c_info_fn(info, userdata):
    try:
        ffi.from_handle(userdata).append(_info(info))
        return 0
    except BaseException as e:  # noqa: B902 - never let an exception into C
        _runtime.stash(e)
        return 1


def _c_holder_fn(h, userdata):
    try:
        ffi.from_handle(userdata).append(_holder(h))
        return 0
    except BaseException as e:  # noqa: B902 - never let an exception into C
        _runtime.stash(e)
        return 1


def _holder(h):
    return Holder(
        id=ffi.unpack(h.id, h.id_len).decode("utf-8", "surrogateescape"),
        expires_in=_seconds_or_none(h.expires_in),
        mode=MODES.get(h.mode, "exclusive"),
        permits=int(h.permits),
        host=text(h.host),
        pid=int(h.pid),
        since=float(h.since),
        label=text(h.label),
    )


_c_info = _runtime.immortal(ffi.callback("int(const anylock_info *, void *)", _c_info_fn))
_c_holder = _runtime.immortal(ffi.callback("int(const anylock_holder *, void *)", _c_holder_fn))

# ---- clients shared by URL ----------------------------------------------------

_shared = {}
_shared_mu = threading.Lock()


def shared_client(url):
    """The process's Client for url (opened on first use), so that
    Lock(url, name) does not open a connection per lock."""
    gen = _runtime.fork_generation()
    c = _shared.get(url)
    if c is not None and c._gen == gen and c._ptr is not None:
        return c
    with _shared_mu:
        c = _shared.get(url)
        if c is None or c._gen != gen or c._ptr is None:
            c = Client(url)
            _shared[url] = c
        return c


def client_for(url_or_client):
    """A Client from a Client, a URL, a redis-py client, or None (the
    default store)."""
    if isinstance(url_or_client, Client):
        return url_or_client
    if url_or_client is None:
        return shared_client(default_url())
    if isinstance(url_or_client, str):
        return shared_client(url_or_client)
    if hasattr(url_or_client, "connection_pool"):
        return shared_client(url_of_redis_client(url_or_client))
    raise TypeError("expected a URL, an anylock.Client or a redis client, not %s"
                    % type(url_or_client).__name__)


def reset_all(url_or_client=None):
    """Force-frees every lock under the store's prefix (python-redis-lock's
    reset_all); how many were freed, where the store can tell."""
    return client_for(url_or_client).reset_all()

