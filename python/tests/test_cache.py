"""locked_get_or_set: one caller computes, the others wait for its result."""
import threading
import time

import pytest

import anylock
from anylock.cache import ResultCache


def _stampede(target, key, callers=6, compute_seconds=0.3, **kw):
    calls = []
    values = []
    errors = []
    start = threading.Barrier(callers)

    def compute():
        calls.append(threading.current_thread().name)
        time.sleep(compute_seconds)  # the expensive work
        return "value-%d" % len(calls)

    def caller():
        try:
            start.wait()
            values.append(anylock.locked_get_or_set(target, key, compute, 30, **kw))
        except BaseException as e:  # noqa: B902
            errors.append(e)

    ts = [threading.Thread(target=caller) for _ in range(callers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, errors
    return calls, values


def test_plain_form_computes_once(url, name):
    store = ResultCache()
    calls, values = _stampede(url, name, results=store)
    assert len(calls) == 1
    assert values == ["value-1"] * 6
    assert store.get(name) == "value-1"
    # Cached: no lock, no computing.
    assert anylock.locked_get_or_set(url, name, lambda: pytest.fail("computed again"), 30, results=store) == \
        "value-1"


def test_the_default_results_live_in_this_process(urls, name):
    calls, values = _stampede(urls["memory"], name)
    assert len(calls) == 1 and set(values) == {"value-1"}
    assert anylock.cache.results.get(name) == "value-1"
    anylock.cache.results.delete(name)


class DjangoLikeCache:
    """Django's cache calls (get, set with timeout) over a dict: what
    locked_get_or_set uses of a Django cache."""

    def __init__(self):
        self.data = {}
        self.timeouts = {}

    def get(self, key, default=None, version=None):
        return self.data.get((key, version), default)

    def set(self, key, value, timeout=300, version=None):
        self.data[(key, version)] = value
        self.timeouts[(key, version)] = timeout


def test_a_cache_keeps_the_result_and_the_lock_is_on_lock_url(urls, name):
    url = urls.get("sqlite", urls["memory"])
    cache = DjangoLikeCache()
    calls, values = _stampede(cache, name, lock_url=url)
    assert len(calls) == 1 and set(values) == {"value-1"}
    assert cache.data[(name, None)] == "value-1" and cache.timeouts[(name, None)] == 30
    anylock.locked_get_or_set(cache, name + "v", lambda: 1, 5, lock_url=url, version=2)
    assert cache.data[(name + "v", 2)] == 1


def test_a_failed_compute_lets_the_next_caller_compute(urls, name):
    url = urls["memory"]
    store = {}

    def boom():
        raise RuntimeError("the database is down")

    with pytest.raises(RuntimeError):
        anylock.locked_get_or_set(url, name, boom, 30, results=store)
    with anylock.Client(url) as c:
        assert not c.locked("get_or_set:" + name)
    assert anylock.locked_get_or_set(url, name, lambda: 42, results=store) == 42
    assert store[name] == 42
    with pytest.raises(ValueError):
        anylock.locked_get_or_set(url, name + "-none", lambda: None, results={})


def test_waiters_give_up_after_wait(urls, name):
    url = urls["memory"]
    holder = anylock.Lock(url, "get_or_set:" + name, expire=30)
    assert holder.acquire()
    with pytest.raises(anylock.Timeout):
        anylock.locked_get_or_set(url, name, lambda: 1, results={}, wait=0.3)
    holder.release()


def test_result_cache_expiry():
    c = ResultCache()
    c.set("a", 1, timeout=0.05)
    c["b"] = 2
    assert c.get("a") == 1 and "b" in c and len(c) == 2
    deadline = time.monotonic() + 5
    while "a" in c and time.monotonic() < deadline:
        time.sleep(0.01)
    assert c.get("a") is None and len(c) == 1
    with pytest.raises(KeyError):
        c["a"]
