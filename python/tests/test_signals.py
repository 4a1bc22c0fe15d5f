"""Ctrl-C (SIGINT) interrupts a blocking acquire within a bounded time."""
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import anylock

from conftest import python_env


def test_keyboard_interrupt_during_a_wait(client, name):
    holder = anylock.Lock(client, name, expire=30)
    assert holder.acquire()
    waiter = anylock.Lock(client, name, expire=30, auto_renewal=True)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        waiter.acquire(timeout=None)  # waits forever but for the signal
    took = time.monotonic() - t0
    timer.join()
    assert 0.25 < took < 0.3 + anylock.WAIT_SLICE + 2.0, took
    assert not waiter.held
    assert holder.get_owner_id() == holder.id
    holder.release()
    assert waiter.acquire(blocking=False)  # the handle still works
    waiter.release()


def test_ctrl_c_in_a_program_waiting_for_a_lock(urls, name):
    # A real program, its default SIGINT handling, the lock held by us.
    url = urls.get("sqlite", urls["memory"])
    if url.startswith("memory"):
        pytest.skip("needs a store shared between processes")
    holder = anylock.Lock(url, name, expire=30)
    assert holder.acquire()
    code = ("import anylock, sys\n"
            "lock = anylock.Lock(%r, %r, expire=30, auto_renewal=True)\n"
            "print('waiting', flush=True)\n"
            "lock.acquire(timeout=None)\n"
            "print('acquired', flush=True)\n" % (url, name))
    p = subprocess.Popen([sys.executable, "-c", code], env=python_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "waiting\n"
        with anylock.Client(url) as c:  # the waiter is blocked: nothing to hand-shake with
            time.sleep(0.3)
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=10)
        took = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert "KeyboardInterrupt" in err and "acquired" not in out, err
    assert p.returncode != 0
    assert took < anylock.WAIT_SLICE + 3.0, took
    assert holder.get_owner_id() == holder.id
    holder.release()
    c.close()


def test_an_interrupt_inside_a_callback_is_not_lost(client, name, monkeypatch):
    # A signal handler's exception raised while a C callback's Python code
    # runs on the main thread (a log record emitted from inside acquire):
    # it cannot cross the C frames, so it is raised when the call returns.
    from anylock import _runtime

    def interrupted(item):
        raise KeyboardInterrupt

    holder = anylock.Lock(client, name, expire=30)
    waiter = anylock.Lock(client, name, expire=30)
    assert holder.acquire()
    anylock.set_log_level(10)
    try:
        monkeypatch.setattr(_runtime, "post", interrupted)
        with pytest.raises(KeyboardInterrupt):
            waiter.acquire(timeout=0.3)
        monkeypatch.undo()
        holder.release()
        monkeypatch.setattr(_runtime, "post", interrupted)
        with pytest.raises(KeyboardInterrupt):
            waiter.acquire()  # taken, then interrupted: let go again
        monkeypatch.undo()
    finally:
        anylock.set_log_level(None)
    assert not waiter.held
    assert not client.locked(name)
