# SPDX-License-Identifier: BSD-2-Clause
"""fork() after open: the child's inherited clients fail cleanly (Forked);
a new client in the child works; the parent's are untouched."""
import json
import os
import signal

import anylock
from anylock._ffi import lib
from anylock.errors import STATUS

from conftest import run_python


def _in_child(fn):
    """Runs fn() in a forked child; returns what it returned (JSON)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            # A child that hangs (on a mutex its parent's thread held at the
            # fork) is killed, and the test fails, rather than waiting for ever.
            signal.alarm(20)
            out = fn()
            os.write(w, json.dumps(out).encode())
        except BaseException as e:  # noqa: B902
            os.write(w, json.dumps({"error": repr(e)}).encode())
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status), "the child died of signal %d" % os.WTERMSIG(status)
    return json.loads(data)


def test_inherited_clients_refuse_and_new_ones_work(url, name, store):
    parent_client = anylock.Client(url)
    held = anylock.Lock(parent_client, name, expire=30, auto_renewal=True)
    assert held.acquire()
    other = anylock.Lock(url, name + "-shared")  # a client shared by URL

    def child():
        out = {}
        for what, call in (("acquire", lambda: held.acquire(blocking=False)),
                           ("release", held.release),
                           ("inspect", lambda: parent_client.inspect(name)),
                           ("shared", lambda: other.acquire(blocking=False))):
            try:
                call()
                out[what] = "no error"
            except anylock.Forked as e:
                out[what] = e.status_name
        # The library answers the same for a call this package did not stop.
        out["library"] = lib.anylock_acquire(held._handle.ptr)
        out["held"] = held.held
        # A new client in the child works, also through the URL cache.
        with anylock.Client(url) as mine:
            lock = anylock.Lock(mine, name + "-child", expire=30)
            out["new"] = lock.acquire(blocking=False)
            lock.release()
            if store[0] != "memory":
                out["sees_parent"] = mine.inspect(name).owner == held.id
        fresh = anylock.Lock(url, name + "-child2", expire=30)
        out["new_shared"] = fresh.acquire(blocking=False)
        fresh.release()
        return out

    out = _in_child(child)
    assert out.get("error") is None, out
    assert out["acquire"] == out["release"] == out["inspect"] == out["shared"] == "FORKED"
    assert out["library"] == STATUS["FORKED"]
    assert out["held"] is False
    assert out["new"] is True and out["new_shared"] is True
    if store[0] != "memory":
        assert out["sees_parent"] is True
    # The parent's lock, client and connections are as they were.
    assert held.held and held.get_owner_id() == held.id
    held.release()
    assert other.acquire(blocking=False)
    other.release()
    parent_client.close()


def test_a_child_exits_cleanly_with_inherited_locks(urls, name):
    url = urls.get("redis", urls["memory"])
    code = ("import os, sys, anylock\n"
            "lock = anylock.Lock(%r, %r, expire=2, auto_renewal=True, on_lost=lambda l, e: None)\n"
            "assert lock.acquire()\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    try:\n"
            "        lock.release()\n"
            "    except anylock.Forked as e:\n"
            "        print('child:', e.status_name, e, flush=True)\n"
            "    sys.exit(0)  # atexit runs: the inherited handles are only freed\n"
            "_, status = os.waitpid(pid, 0)\n"
            "print('child exit', status, flush=True)\n"
            "print('parent holds', lock.held, lock.get_owner_id() == lock.id, flush=True)\n"
            "lock.release()\n" % (url, name))
    p = run_python(code, timeout=30)
    assert p.returncode == 0, p.stderr
    assert "child: FORKED" in p.stdout and "opened before fork()" in p.stdout
    assert "child exit 0" in p.stdout
    assert "parent holds True True" in p.stdout
