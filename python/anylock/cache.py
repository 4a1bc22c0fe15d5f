"""The cache-stampede helper (python-redis-lock's Django cache
``locked_get_or_set``), on any store: one caller computes a missing value,
the others wait for the lock and then read what it stored.

Where the result lives:

* ``locked_get_or_set(cache, key, compute, timeout)`` with a Django cache (any
  object with Django's ``get(key)`` / ``set(key, value, timeout=...)``):
  the result is stored in that cache, so every process sharing the cache
  shares it; the lock is taken on ``lock_url`` (default: ``default_url()``,
  i.e. $ANYLOCK_URL), which must be a store all those processes reach.
* ``locked_get_or_set(url_or_client, key, compute, timeout)``: the lock is on
  that store; the result is kept in ``results`` if given (a cache as above,
  or any dict-like: ``get`` and item assignment, no expiry), else in
  ``anylock.cache.results``, a thread-safe ResultCache private to this
  process.  In that plain form the threads of one process share results and
  the processes share the lock: across processes it serialises the work but
  each process computes its own copy once; give a shared cache to share the
  value itself.
"""
import threading
import time

from .client import Client, client_for
from .lock import Lock

_UNSET = object()


class ResultCache:
    """A thread-safe in-process mapping with optional expiry per entry, with
    Django's cache calls: get(key, default=None), set(key, value,
    timeout=None) (seconds; None keeps it until deleted), delete(key),
    clear(); and item access (d[key], d[key] = value, key in d, len(d))."""

    def __init__(self):
        self._data = {}
        self._mu = threading.Lock()

    def get(self, key, default=None):
        with self._mu:
            item = self._data.get(key)
            if item is None:
                return default
            value, until = item
            if until is not None and time.monotonic() >= until:
                del self._data[key]
                return default
            return value

    def set(self, key, value, timeout=None):
        until = None if timeout is None else time.monotonic() + timeout
        with self._mu:
            self._data[key] = (value, until)

    def delete(self, key):
        with self._mu:
            self._data.pop(key, None)

    def clear(self):
        with self._mu:
            self._data.clear()

    def __getitem__(self, key):
        marker = object()
        value = self.get(key, marker)
        if value is marker:
            raise KeyError(key)
        return value

    def __setitem__(self, key, value):
        self.set(key, value)

    def __contains__(self, key):
        marker = object()
        return self.get(key, marker) is not marker

    def __len__(self):
        with self._mu:
            now = time.monotonic()
            return sum(1 for _, until in self._data.values() if until is None or until > now)


results = ResultCache()


def _is_cache(obj):
    return callable(getattr(obj, "get", None)) and callable(getattr(obj, "set", None))


def _is_store(obj):
    return obj is None or isinstance(obj, (str, Client)) or hasattr(obj, "connection_pool")


def _read(where, key, version):
    if version is not None:
        return where.get(key, version=version)
    return where.get(key)


def _write(where, key, value, timeout, version):
    if not _is_cache(where):
        where[key] = value
        return
    kw = {}
    if timeout is not _UNSET:
        kw["timeout"] = timeout
    if version is not None:
        kw["version"] = version
    where.set(key, value, **kw)


def locked_get_or_set(cache_or_url, key, compute, timeout=_UNSET, *, results=None, lock_url=None,
                      lock_key=None, wait=None, expire=None, id=None, version=None):
    """The cached value of key, computed by compute() (once, by whichever
    caller gets the lock first) if missing.

    cache_or_url: a Django cache, or a URL / Client / redis-py client for
    the lock (see the module's documentation for where the result lives).
    timeout: how long the cache keeps the value (the cache's own default
    when omitted; None: forever).  The lock is named lock_key (default
    "get_or_set:" + key); wait is how long to wait for it (default: the
    client's timeout; Timeout if it runs out), expire its expiry (kept renewed
    while compute() runs).  compute() returning None is an error
    (ValueError), since None means "missing".  If compute() raises, the lock
    is released and the next waiter computes.
    """
    if _is_store(cache_or_url):
        client = client_for(cache_or_url)
        where = globals()["results"] if results is None else results
    elif _is_cache(cache_or_url):
        client = client_for(lock_url)
        where = cache_or_url if results is None else results
    else:
        raise TypeError("locked_get_or_set: expected a cache, a URL or a Client, not %s"
                        % type(cache_or_url).__name__)
    value = _read(where, key, version)
    if value is not None:
        return value
    options = {}
    if expire:
        options["expire"] = expire
    if (expire or client.default_expires is not None) or client.can("session"):
        options["auto_renewal"] = True
    if wait is not None:
        options["timeout"] = wait
    if id is not None:
        options["id"] = id
    lock = Lock(client, lock_key or "get_or_set:" + key, **options)
    try:
        with lock:
            # Was it stored while we waited?
            value = _read(where, key, version)
            if value is not None:
                return value
            value = compute()
            if value is None:
                raise ValueError("locked_get_or_set: compute() returned None for %r" % (key,))
            _write(where, key, value, timeout, version)
            return value
    finally:
        lock.close()
