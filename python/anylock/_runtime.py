"""What runs behind the API: the callback thread, fork and exit.

The callback thread.  The library calls back from its own threads (a
client's renewal threads deliver lost-lock callbacks; log records come from
whichever thread the event happens on).  The C callbacks here (cffi takes the
GIL for them) only copy what they were given into a queue and return, so a
renewal thread never runs user code: a slow on_lost callback cannot delay
another lock's renewal, and user code never runs where the library holds its
own mutexes.  One Python thread of this package (a daemon, started with the
first client) takes the queue in order and runs the user's callbacks, emits
the log records to the ``anylock`` logger, and frees the handles of Lock and
Client objects the garbage collector dropped (``__del__`` may run on any
thread, even inside a callback; freeing a handle may release the lock over
the network and wait for the library's threads, so it is never done there).

Fork.  os.register_at_fork counts forks in the child; every Client
remembers the count it was opened at, and every call on a client (or a lock
of it) from another process raises Forked without touching the library or
this package's mutexes (another thread of the parent may have held one at
the fork).  The library itself also answers ANYLOCK_FORKED for such a client,
for a fork this package did not see.  Open a new Client in the child.

Exit.  At interpreter exit (atexit, so before the interpreter starts to tear
itself down): new calls are refused (Closed), a wait in progress gives up at
its next slice, the queue is drained (bounded), every handle still open is
freed (which releases what it holds) and every client closed, which stops the
library's threads: after that no C callback can come.  Should one client
still be busy past the bound (a thread stuck in a call into a store that does
not answer), it is left open; the library and the C callbacks are made
immortal (never freed), so even then no thread of the library runs into
freed memory.
"""
import atexit
import logging
import os
import queue
import threading
import weakref

from ._ffi import ffi, immortal, lib, text

logger = logging.getLogger("anylock")

# ---- fork ------------------------------------------------------------------

_fork_generation = 0


def _after_fork_in_child():
    global _fork_generation, _thread, _queue, _state_mu, _serial_mu
    _fork_generation += 1
    # The parent's callback thread does not exist here, and its queue and
    # mutexes belong to the parent's threads (one may have held a mutex at
    # the fork).  A new thread starts when a client of this process needs it.
    _thread = None
    _queue = queue.SimpleQueue()
    _state_mu = threading.Lock()
    _serial_mu = threading.Lock()


def fork_generation():
    return _fork_generation


os.register_at_fork(after_in_child=_after_fork_in_child)

# ---- the callback thread ----------------------------------------------------

_queue = queue.SimpleQueue()
_thread = None
_state_mu = threading.Lock()
closing = False
_STOP = object()


def post(item):
    """Queues (fn, args) for the callback thread, starting it if needed."""
    _ensure_thread()
    _queue.put(item)


def _ensure_thread():
    global _thread
    if _thread is not None:
        return
    with _state_mu:
        if _thread is None:
            t = threading.Thread(target=_run, args=(_queue,), name="anylock-callbacks", daemon=True)
            t.start()
            _thread = t


def _run(q):
    while True:
        item = q.get()
        if item is _STOP:
            return
        fn, args = item
        try:
            fn(*args)
        except BaseException:  # noqa: B902 - a callback's failure must not stop the thread
            logger.exception("anylock: a callback raised")


# An exception raised in a C callback on the main thread: a signal
# handler's (KeyboardInterrupt for Ctrl-C) that ran while the callback's
# Python code did.  It cannot cross the C frames; it is raised again when the
# library call returns (reraise_pending), so no Ctrl-C is lost.
_pending = None


def stash(exc):
    global _pending
    if threading.current_thread() is threading.main_thread() and _pending is None:
        _pending = exc


def reraise_pending():
    global _pending
    exc = _pending
    if exc is not None and threading.current_thread() is threading.main_thread():
        _pending = None
        raise exc


def in_callback_thread():
    return _thread is not None and threading.current_thread() is _thread


# ---- lost-lock callbacks ------------------------------------------------------

# serial -> weakref of the Lock (a serial, not the handle's address: an
# address can be reused by a newer handle while an old event is queued).
_lost_targets = {}
_serial_mu = threading.Lock()
_serial = 0


def register_lost_target(lock_obj):
    global _serial
    with _serial_mu:
        _serial += 1
        serial = _serial
    _lost_targets[serial] = weakref.ref(lock_obj)
    return serial


def unregister_lost_target(serial):
    _lost_targets.pop(serial, None)


def _deliver_lost(serial, why, message):
    ref = _lost_targets.get(serial)
    lock_obj = ref() if ref is not None else None
    if lock_obj is not None:
        lock_obj._deliver_lost(why, message)


@ffi.callback("void(anylock_lock *, anylock_status, void *)")
def _c_lost(lock_ptr, why, userdata):
    # On a renewal thread: copy and queue, nothing more.
    try:
        message = text(lib.anylock_lock_errmsg(lock_ptr))
        post((_deliver_lost, (int(ffi.cast("uintptr_t", userdata)), why, message)))
    except BaseException as e:  # noqa: B902 - never let an exception into C
        stash(e)


c_lost_callback = immortal(_c_lost)

# ---- logging ------------------------------------------------------------------

_LEVELS = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG}
EVENTS = {0: "message", 1: "waiting", 2: "acquired", 3: "not_acquired", 4: "renewed",
          5: "renewal_failed", 6: "lost", 7: "released", 8: "connection"}


def _emit_log(level, event, name, scheme, status, expires_in, message):
    logger.log(_LEVELS.get(level, logging.DEBUG), "%s", message,
               extra={"anylock_event": EVENTS.get(event, "message"), "anylock_name": name,
                      "anylock_scheme": scheme, "anylock_status": status, "anylock_expires_in": expires_in})


@ffi.callback("void(const anylock_log_record *, void *)")
def _c_log(rec, userdata):
    try:
        post((_emit_log, (rec.level, rec.event, text(rec.name) if rec.name != ffi.NULL else None,
                          text(rec.scheme), rec.status, rec.expires_in, text(rec.message))))
    except BaseException as e:  # noqa: B902 - never let an exception into C
        stash(e)


c_log_callback = immortal(_c_log)


def set_log_level(level):
    """Sends the library's records of this logging level and above to the
    ``anylock`` logger (through the callback thread); None turns it off."""
    if level is None:
        lib.anylock_set_log(ffi.NULL, 0, ffi.NULL)
        return
    if level <= logging.DEBUG:
        c_level = 3
    elif level <= logging.INFO:
        c_level = 2
    elif level <= logging.WARNING:
        c_level = 1
    else:
        c_level = 0
    _ensure_thread()
    lib.anylock_set_log(c_log_callback, c_level, ffi.NULL)


# ---- clients alive, and exit -----------------------------------------------------

clients = weakref.WeakSet()
# How long exit waits for the queue, and for a busy lock, in seconds.
EXIT_DRAIN_SECONDS = 5.0
EXIT_LOCK_WAIT_SECONDS = 5.0


def _at_exit():
    global closing
    closing = True
    lib.anylock_set_log(ffi.NULL, 0, ffi.NULL)
    t = _thread
    if t is not None and t.is_alive() and threading.current_thread() is not t:
        _queue.put(_STOP)
        t.join(EXIT_DRAIN_SECONDS)
    for client in list(clients):
        try:
            client._shutdown(EXIT_LOCK_WAIT_SECONDS)
        except BaseException:  # noqa: B902 - exit goes on for the other clients
            pass


atexit.register(_at_exit)
