"""Interpreter exit with locks held, renewals running, a thread waiting and
losses being reported: no crash, no hang, the locks released."""
import subprocess
import sys
import time

import pytest

import anylock

from conftest import python_env

PROGRAM = r"""
import logging, sys, threading, anylock
logging.basicConfig(level=logging.DEBUG)
anylock.set_log_level(logging.DEBUG)
url, name = sys.argv[1], sys.argv[2]
lost = []
held = anylock.Lock(url, name, expire=0.6, auto_renewal=True, on_lost=lambda l, e: lost.append(e))
assert held.acquire()
# A daemon thread waits forever on the held lock when the interpreter exits.
waiter = anylock.Lock(url, name, expire=30, auto_renewal=True)
threading.Thread(target=lambda: waiter.acquire(timeout=None), daemon=True).start()
# Losses on their way while the interpreter exits: locks that are reset
# and whose renewal is due about now.
victims = [anylock.Lock(url, "%s-v%d" % (name, i), expire=0.3, auto_renewal=True,
                        on_lost=lambda l, e: print("lost", l.name, flush=True)) for i in range(int(sys.argv[3]))]
for v in victims:
    assert v.acquire()
with anylock.Client(url) as c:
    for v in victims:
        c.reset(v.name)
# Their renewals (every 0.2 s) find them gone about when exit begins.
threading.Event().wait(float(sys.argv[4]))
print("exiting", flush=True)
"""


@pytest.mark.parametrize("victims,delay", [(0, 0), (8, 0.15), (8, 0.19), (8, 0.22)])
def test_exit_with_everything_running(urls, name, victims, delay):
    url = urls.get("redis", urls.get("sqlite", urls["memory"]))
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-c", PROGRAM, url, name, str(victims), str(delay)], env=python_env(),
                       capture_output=True, text=True, timeout=30)
    took = time.monotonic() - t0
    assert p.returncode == 0, p.stderr[-2000:]
    assert "exiting" in p.stdout
    for bad in ("Fatal Python error", "Segmentation", "Sanitizer", "Exception ignored"):
        assert bad not in p.stderr, p.stderr[-2000:]
    assert took < 15, took
    if not url.startswith("memory"):
        with anylock.Client(url) as c:
            assert not c.locked(name), "the held lock was not released at exit"
