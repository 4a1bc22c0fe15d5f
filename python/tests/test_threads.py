"""Threads sharing one Client, and the GIL released during waits."""
import threading
import time

import anylock


def test_threads_sharing_a_client_exclude_each_other(client, name):
    threads, rounds = 6, 15
    counter = [0]
    inside = [0]
    overlaps = []
    errors = []

    def worker():
        try:
            lock = anylock.Lock(client, name, expire=30)
            for _ in range(rounds):
                with lock:
                    inside[0] += 1
                    if inside[0] != 1:
                        overlaps.append(inside[0])
                    v = counter[0]
                    time.sleep(0.0005)  # a read-modify-write that a second holder would break
                    counter[0] = v + 1
                    inside[0] -= 1
        except BaseException as e:  # noqa: B902
            errors.append(e)

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, errors
    assert not overlaps
    assert counter[0] == threads * rounds


def test_a_wait_releases_the_gil(client, name, monkeypatch):
    # One slice of 1 s: were the GIL held during the call into the library,
    # this thread would stop for about that long.
    monkeypatch.setattr(anylock.lock, "THREAD_WAIT_SLICE", 1.0)
    holder = anylock.Lock(client, name, expire=30)
    assert holder.acquire()
    result = []
    waiter = threading.Thread(target=lambda: result.append(anylock.Lock(client, name, expire=30)
                                                           .acquire(timeout=1.0)))
    waiter.start()
    last = t0 = time.monotonic()
    longest = 0.0
    while waiter.is_alive() and last - t0 < 10:
        now = time.monotonic()  # pure Python: runs only while the waiter does not hold the GIL
        longest = max(longest, now - last)
        last = now
    waiter.join()
    assert result == [False]
    assert last - t0 >= 0.9
    assert longest < 0.5, "this thread stood still for %.3f s while the other waited" % longest
    holder.release()


def test_one_lock_object_used_by_several_threads(client, name):
    # A handle serialises its own calls: no crash, consistent answers.
    lock = anylock.Lock(client, name, expire=30)
    results = []

    def worker():
        for _ in range(20):
            try:
                got = lock.acquire(blocking=False)
            except anylock.AlreadyAcquired:
                got = "already"
            results.append(got)
            if got is True:
                lock.release()

    ts = [threading.Thread(target=worker) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert len(results) == 80
    assert set(results) <= {True, False, "already"}
    assert not lock.held
