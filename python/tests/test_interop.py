"""One redis server, two clients: this package and a client speaking
python-redis-lock 4.0's protocol (tests/redis_interop.py, the C tests'
helper).  They exclude each other, wake each other, and each sees the
other's owner id."""
import os
import subprocess
import sys
import threading
import time

import pytest

import anylock

from conftest import STORES, TOP_SRCDIR

pytestmark = pytest.mark.skipif("redis" not in STORES, reason="this build has no redis backend")


class Peer:
    def __init__(self, port):
        script = os.path.join(TOP_SRCDIR, "tests", "redis_interop.py")
        self.p = subprocess.Popen([sys.executable, script, "127.0.0.1", str(port)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        assert self.p.stdout.readline().strip() == "ready"

    def send(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def ask(self, line):
        self.send(line)
        return self.p.stdout.readline().strip()

    def close(self):
        try:
            self.send("quit")
            self.p.wait(10)
        finally:
            if self.p.poll() is None:
                self.p.kill()
                self.p.wait()


@pytest.fixture
def peer(servers):
    p = Peer(servers["redis"].port)
    yield p
    p.close()


@pytest.fixture
def rclient(servers):
    with anylock.Client(servers["redis"].url) as c:
        yield c


def test_python_redis_lock_waits_for_us(rclient, peer, name):
    lock = anylock.Lock(rclient, name, expire=30)
    assert lock.acquire()
    assert peer.ask("owner %s" % name) == lock.id
    assert peer.ask("acquire %s pyid 30 1" % name) == "timeout"
    # It waits on the signal key; our release wakes it.
    peer.send("acquire %s pyid 30 none" % name)
    time.sleep(0.2)  # the peer is blocked in BLPOP meanwhile: nothing to hand-shake with
    t0 = time.monotonic()
    lock.release()
    assert peer.p.stdout.readline().strip() == "acquired"
    assert time.monotonic() - t0 < 0.6  # woken, not at the end of its 1 s BLPOP
    assert lock.get_owner_id() == "pyid"
    assert lock.acquire(blocking=False) is False
    assert peer.ask("release %s pyid" % name) == "released"


def test_we_wait_for_python_redis_lock(rclient, peer, name):
    assert peer.ask("acquire %s pyid 30 none" % name) == "acquired"
    lock = anylock.Lock(rclient, name, expire=10)
    got = []
    t = threading.Thread(target=lambda: got.append((lock.acquire(timeout=10), time.monotonic())))
    t.start()
    time.sleep(0.3)
    assert not got
    released = time.monotonic()
    assert peer.ask("release %s pyid" % name) == "released"
    t.join(10)
    assert got[0][0] is True and got[0][1] - released < 1.0
    assert peer.ask("owner %s" % name) == lock.id
    assert peer.ask("release %s pyid" % name) == "notheld"
    assert peer.ask("extend %s %s 100" % (name, lock.id)) == "extended"
    lock.release()


def test_ownership_by_id_across_clients(rclient, peer, name):
    assert peer.ask("acquire %s shared-id 30 none" % name) == "acquired"
    same = anylock.Lock(rclient, name, expire=30, id="shared-id")
    with pytest.raises(anylock.AlreadyAcquired):
        same.acquire(blocking=False)
    same.extend(60)
    assert 50 < same.inspect().expires_in <= 60
    same.release()  # python-redis-lock's lock, released by its id
    assert peer.ask("owner %s" % name) == "-"
    assert peer.ask("acquire %s pyid none none" % name) == "acquired"
    forever = anylock.Lock(rclient, name, expire=30, id="pyid")
    with pytest.raises(anylock.NotExpirable):
        forever.extend(10)
    anylock.Lock(rclient, name).reset()
    assert peer.ask("owner %s" % name) == "-"


def test_a_redis_py_client_names_the_server(servers, peer, name):
    redis = pytest.importorskip("redis")  # Debian's python3-redis, installed for the C tests too
    conn = redis.StrictRedis(host="127.0.0.1", port=servers["redis"].port)
    # python-redis-lock's own form: Lock(conn, name).
    with anylock.Lock(conn, name, expire=30) as lock:
        assert conn.get("lock:" + name).decode() == lock.id
        assert peer.ask("owner %s" % name) == lock.id
    assert conn.get("lock:" + name) is None
    assert anylock.url_of_redis_client(redis.StrictRedis(host="::1", port=7, db=3, password="p@ss")) == \
        "redis://:p%40ss@[::1]:7/3"
    assert anylock.url_of_redis_client(redis.StrictRedis(unix_socket_path="/run/r.sock", db=2)) == \
        "redis+unix:///run/r.sock?db=2"
