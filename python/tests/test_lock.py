# SPDX-License-Identifier: BSD-2-Clause
"""python-redis-lock's API, and anylock's own, on every store this build has."""
import os
import threading
import time

import pytest

import anylock

from conftest import SLACK


def test_acquire_release_as_python_redis_lock(client, name):
    a = anylock.Lock(client, name, expire=30)
    b = anylock.Lock(client, name, expire=30)
    assert a.acquire(blocking=False) is True
    assert a.held and a.locked() and b.locked()
    assert a.get_owner_id() == a.id == b.get_owner_id()
    assert b.acquire(blocking=False) is False
    assert not b.held
    a.release()
    assert not a.held and not a.locked()
    assert a.get_owner_id() is None
    assert b.acquire(blocking=False) is True
    b.release()


def test_the_wait_runs_out(client, name):
    a = anylock.Lock(client, name, expire=30)
    b = anylock.Lock(client, name, expire=30)
    assert a.acquire()
    t0 = time.monotonic()
    assert b.acquire(timeout=0.4) is False
    took = time.monotonic() - t0
    assert 0.39 <= took < 5, took
    # The context manager raises instead, with the library's message.
    c = anylock.Lock(client, name, expire=30, timeout=0.2)
    with pytest.raises(anylock.Timeout) as e:
        with c:
            pytest.fail("entered a held lock")
    assert e.value.status_name == "TIMEOUT" and name in str(e.value)
    d = anylock.Lock(client, name, expire=30, timeout=0)
    with pytest.raises(anylock.Busy):
        d.__enter__()
    a.release()


def test_a_waiter_gets_the_lock_when_it_is_released(client, name):
    a = anylock.Lock(client, name, expire=30)
    assert a.acquire()
    got = []

    def waiter():
        b = anylock.Lock(client, name, expire=30)
        got.append(b.acquire(timeout=10))
        got.append(time.monotonic())
        b.release()

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.15)  # the waiter is blocked meanwhile: nothing to hand-shake with
    assert not got
    released = time.monotonic()
    a.release()
    t.join(10)
    assert got[0] is True
    assert got[1] - released < 2.0


def test_release_and_extend_only_by_the_owner(client, name):
    a = anylock.Lock(client, name, expire=30)
    b = anylock.Lock(client, name, expire=30)
    with pytest.raises(anylock.NotAcquired) as e:
        a.release()
    assert e.value.status_name == "NOT_HELD" and name in str(e.value)
    assert a.acquire()
    with pytest.raises(anylock.NotAcquired):
        b.release()
    with pytest.raises(anylock.NotAcquired):
        b.extend(60)
    assert a.held
    a.release()


def test_same_id_is_the_same_owner(client, name):
    a = anylock.Lock(client, name, expire=30, id="owned-by-this-host")
    b = anylock.Lock(client, name, expire=30, id="owned-by-this-host")
    assert a.id == "owned-by-this-host"
    assert a.acquire()
    assert b.get_owner_id() == "owned-by-this-host"
    with pytest.raises(anylock.AlreadyAcquired):
        a.acquire()
    with pytest.raises(anylock.AlreadyAcquired):
        b.acquire(blocking=False)
    if "session" not in client.features:
        b.release()  # any handle with the holder's id may release
        assert not a.locked()
    else:
        a.release()


def test_extend(client, name):
    if "extend" not in client.features:
        pytest.skip("%s cannot extend" % client.scheme)
    a = anylock.Lock(client, name, expire=5)
    assert a.acquire()
    a.extend(100)
    assert a.inspect().expires_in > 50
    a.extend()  # back to the lock's own expiry
    assert a.inspect().expires_in <= 6 + SLACK[client.scheme]
    a.release()
    with pytest.raises(anylock.NotAcquired):
        a.extend(10)
    n = anylock.Lock(client, name, expire=None)
    assert n.acquire()
    with pytest.raises(anylock.NotExpirable):
        n.extend()
    with pytest.raises(anylock.NotExpirable):
        n.extend(10)
    n.release()


def test_validation_as_python_redis_lock(client, name):
    a = anylock.Lock(client, name, expire=1)
    with pytest.raises(anylock.TimeoutNotUsable):
        a.acquire(blocking=False, timeout=1)
    with pytest.raises(anylock.TimeoutTooLarge):
        a.acquire(timeout=5)
    with pytest.raises(anylock.InvalidTimeout) as e:
        a.acquire(timeout=-1)
    assert e.value.status_name == "BAD_DURATION"
    with pytest.raises(ValueError):
        anylock.Lock(client, name, expire=-1)
    with pytest.raises(anylock.InvalidArgument) as e:
        anylock.Lock(client, name, id="has space")
    assert e.value.status_name == "BAD_ID"
    with pytest.raises(anylock.InvalidArgument):
        anylock.Lock(client, "")
    with pytest.raises(TypeError):
        anylock.Lock(client, name, expire=1, expires=2)
    # With auto-renewal a long wait is fine; without an expiry there is
    # nothing to renew.
    r = anylock.Lock(client, name, expire=1, auto_renewal=True)
    assert r.acquire(timeout=5)
    r.release()
    if "session" not in client.features:
        with pytest.raises(anylock.InvalidArgument) as e:
            anylock.Lock(client, name, expire=None, auto_renewal=True).acquire()
        assert e.value.status_name == "RENEWAL_NEEDS_EXPIRY"


def test_expiry_frees_a_crashed_holder(client, name):
    a = anylock.Lock(client, name, expire=0.5)  # taken, then never released
    assert a.acquire()
    b = anylock.Lock(client, name, expire=10)
    t0 = time.monotonic()
    assert b.acquire(timeout=0.5 + SLACK[client.scheme] + 3)
    # Not before its expiry: where the holder's own process enforces it
    # (file, postgres) it lets go a tenth early (the loss guard), counted
    # from before its acquire was sent, which t0 is after.
    assert time.monotonic() - t0 >= 0.40
    b.release()
    with pytest.raises(anylock.NotAcquired):
        a.release()


def test_reset_and_reset_all(client, name, url):
    a = anylock.Lock(client, name, expire=30)
    assert a.acquire()
    other = anylock.Lock(client, name + "-b", expire=30)
    assert other.acquire()
    anylock.Lock(client, name, expire=30).reset()
    assert not a.locked()
    with pytest.raises(anylock.NotAcquired):
        a.release()
    if "reset_all" in client.features:
        sep = "&" if "?" in url else "?"
        with anylock.Client(url + sep + "prefix=" + name + ":") as c2:
            held = [anylock.Lock(c2, "n%d" % i, expire=30) for i in range(3)]
            assert all(h.acquire() for h in held)
            assert anylock.reset_all(c2) == 3
            assert c2.list() == []
        assert other.locked()  # another prefix: untouched
    other.release()


def test_token_is_a_fencing_token(client, name):
    a = anylock.Lock(client, name, expire=30)
    with pytest.raises(anylock.NotAcquired):
        a.token
    assert a.acquire()
    if "token" not in client.features:
        with pytest.raises(anylock.NoToken) as e:
            a.token
        assert e.value.status_name == "NO_TOKEN"
        a.release()
        return
    first = a.token
    a.release()
    b = anylock.Lock(client, name, expire=30)
    assert b.acquire()
    assert b.token > first
    b.release()


def test_on_lost_runs_on_the_callback_thread(client, name):
    if "extend" not in client.features:
        pytest.skip("%s cannot renew" % client.scheme)
    lost = []
    done = threading.Event()

    def on_lost(lock, error):
        lost.append((lock, error, threading.current_thread().name, lock.held))
        done.set()

    a = anylock.Lock(client, name, expire=2, auto_renewal=True, on_lost=on_lost)
    assert a.acquire()
    client.reset(name)  # the next renewal finds it gone
    assert done.wait(10), "on_lost was not called"
    lock, error, thread, held = lost[0]
    assert lock is a and held is False
    assert isinstance(error, anylock.LockError) and error.status_name == "NOT_HELD"
    assert thread == "anylock-callbacks"
    with pytest.raises(anylock.NotAcquired) as e:
        a.release()
    assert "lost" in str(e.value)


def test_shared_locks_and_semaphores(client, name):
    r1 = anylock.Lock(client, name, expire=30, shared=True)
    r2 = anylock.SharedLock(client, name, expire=30)
    w = anylock.Lock(client, name, expire=30)
    if "shared" not in client.features:
        with pytest.raises(anylock.ModeUnsupported):
            r1.acquire()
    else:
        assert r1.acquire(blocking=False) and r2.acquire(blocking=False)
        assert w.acquire(blocking=False) is False
        info = r1.inspect()
        assert info.mode == "shared" and info.holders == 2
        assert {h.id for h in r1.holders()} == {r1.id, r2.id}
        r1.release()
        r2.release()
        assert w.acquire(blocking=False)
        w.release()
    sem = [anylock.Semaphore(client, name + "-sem", permits=2, expire=30) for _ in range(3)]
    if "semaphore" not in client.features:
        with pytest.raises(anylock.ModeUnsupported):
            sem[0].acquire()
        return
    assert sem[0].acquire(blocking=False) and sem[1].acquire(blocking=False)
    assert sem[2].acquire(blocking=False) is False
    with pytest.raises(anylock.ModeConflict):
        anylock.Semaphore(client, name + "-sem", permits=3, expire=30).acquire(blocking=False)
    sem[0].release()
    assert sem[2].acquire(blocking=False)
    sem[1].release()
    sem[2].release()


def test_inspect_shows_the_holder(client, name):
    a = anylock.Lock(client, name, expire=30, label="nightly report")
    assert a.acquire()
    info = client.inspect(name)
    assert info.held and info.owner == a.id and info.holders == 1
    assert 0 < info.expires_in <= 30 + SLACK[client.scheme]
    if info.pid:  # where the store keeps holder metadata
        assert info.pid == os.getpid() and info.label == "nightly report"
    if "list" in client.features:
        assert name in [i.name for i in client.list()]
    a.release()
    assert not client.inspect(name).held


def test_default_url_from_the_environment(url, name, monkeypatch):
    monkeypatch.setenv("ANYLOCK_URL", url)
    assert anylock.default_url() == url
    # pylock's form: the name alone, the store from the environment.
    with anylock.Lock(name, expires=60, timeout=10) as lock:
        with anylock.Client(url) as c:
            assert c.inspect(name).owner == lock.id
    with pytest.raises(TypeError):
        anylock.Lock(url)  # a URL without a name is a mistake, not a name
    monkeypatch.setenv("ANYLOCK_URL", "")
    with pytest.raises(anylock.BadURL):
        anylock.default_url()


def test_url_defaults_are_the_locks(url, name):
    sep = "&" if "?" in url else "?"
    with anylock.Client(url + sep + "timeout=0.4&expires=20") as c:
        assert (c.default_timeout, c.default_expires) == (0.4, 20.0)
        a = anylock.Lock(c, name)
        b = anylock.Lock(c, name)
        assert a.acquire()
        assert 15 < a.inspect().expires_in <= 20 + SLACK[c.scheme]
        t0 = time.monotonic()
        assert b.acquire() is False  # the URL's wait
        assert 0.35 < time.monotonic() - t0 < 4
        a.release()


def test_errors_carry_the_librarys_message():
    with pytest.raises(anylock.BadURL) as e:
        anylock.Client("nosuchscheme://x")
    assert e.value.status_name == "URL_UNKNOWN_SCHEME" and "nosuchscheme" in str(e.value)
    with pytest.raises(anylock.BadURL) as e:
        anylock.Client("memory://?nosuchparam=1")
    assert "nosuchparam" in str(e.value)
    if anylock.backend_available("redis"):
        from conftest import free_port
        with pytest.raises(anylock.StoreError) as e:
            anylock.Client("redis://user:s3cret@127.0.0.1:%d?connect_timeout=1" % free_port())
        assert e.value.status_name == "CONNECT"
        assert "s3cret" not in str(e.value) and "127.0.0.1" in str(e.value)


def test_closed_handles_and_clients(url, name):
    c = anylock.Client(url)
    a = anylock.Lock(c, name, expire=30)
    assert a.acquire()
    c.close()  # frees the handle, releasing the lock
    with pytest.raises(anylock.Closed):
        a.acquire()
    with pytest.raises(anylock.Closed):
        c.inspect(name)
    with anylock.Client(url) as c2:
        assert not c2.locked(name)
    # A collected Lock releases what it held (on the callback thread).
    with anylock.Client(url) as c3:
        b = anylock.Lock(c3, name, expire=30)
        assert b.acquire()
        del b
        deadline = time.monotonic() + 10
        while c3.locked(name) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not c3.locked(name)
