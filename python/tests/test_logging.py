"""The library's log records reach the "anylock" logger."""
import logging
import threading
import time

import anylock


class Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []
        self.changed = threading.Condition()

    def emit(self, record):
        with self.changed:
            self.records.append(record)
            self.changed.notify_all()

    def wait_for(self, pred, seconds=10):
        with self.changed:
            return self.changed.wait_for(lambda: any(pred(r) for r in self.records), seconds)


def test_log_records_reach_the_logger(urls, name):
    h = Collect()
    log = logging.getLogger("anylock")
    log.addHandler(h)
    old = log.level
    log.setLevel(logging.DEBUG)
    anylock.set_log_level(logging.DEBUG)
    try:
        lock = anylock.Lock(urls["memory"], name, expire=0.3, auto_renewal=True)
        assert lock.acquire()
        assert h.wait_for(lambda r: r.anylock_event == "acquired" and r.anylock_name == name)
        # Renewals are logged from the library's renewal thread.
        assert h.wait_for(lambda r: r.anylock_event == "renewed" and r.anylock_name == name)
        lock.release()
        assert h.wait_for(lambda r: r.anylock_event == "released" and r.levelno == logging.INFO)
        rec = [r for r in h.records if r.anylock_event == "acquired"][0]
        assert name in rec.getMessage() and rec.anylock_scheme == "memory"
    finally:
        anylock.set_log_level(None)
        log.removeHandler(h)
        log.setLevel(old)
    n = len(h.records)
    with anylock.Lock(urls["memory"], name, expire=1):
        pass
    time.sleep(0.1)  # nothing is to arrive: there is no event to wait for
    assert len(h.records) == n
