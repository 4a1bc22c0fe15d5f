"""The ABI-mode declarations against the real header, as compiled."""
import os
import subprocess

import pytest

import anylock
from anylock import errors
from anylock._ffi import ffi, lib

from conftest import TOP_BUILDDIR


@pytest.fixture(scope="module")
def layout():
    exe = os.path.join(TOP_BUILDDIR, "python", "tests", "abi-layout")
    if not os.path.exists(exe):
        pytest.fail("%s is not built (make builds it)" % exe)
    out = subprocess.run([exe], capture_output=True, text=True, check=True).stdout
    return [line.split(" ", 2) for line in out.splitlines()]


def test_sizes_and_offsets_match_the_header(layout):
    checked = 0
    for kind, key, value in layout:
        if kind == "sizeof":
            if "." in key:
                struct, field = key.split(".")
                got = ffi.sizeof(dict(ffi.typeof(struct).fields)[field].type)
            else:
                got = ffi.sizeof(key)
        elif kind == "offsetof":
            struct, field = key.split(".")
            got = ffi.offsetof(struct, field)
        else:
            continue
        assert got == int(value), "%s %s: C says %s, the declarations %s" % (kind, key, value, got)
        checked += 1
    assert checked >= 40


def test_constants_match_the_header(layout):
    consts = {key: value for kind, key, value in layout if kind == "const"}
    for key, value in consts.items():
        if key in ("ANYLOCK_VERSION_NUMBER", "ANYLOCK_STATUS_COUNT_"):
            continue
        assert getattr(lib, key) == int(value), key
    assert lib.anylock_version_number() >= int(consts["ANYLOCK_VERSION_NUMBER"])
    assert len(errors.STATUS) == int(consts["ANYLOCK_STATUS_COUNT_"])
    doubles = {key: float(value) for kind, key, value in layout if kind == "double"}
    assert anylock.DEFAULT_TIMEOUT == doubles["ANYLOCK_DEFAULT_TIMEOUT"]
    assert anylock.DEFAULT_EXPIRES == doubles["ANYLOCK_DEFAULT_EXPIRES"]
    from anylock.client import FEATURES
    for feature, bit in FEATURES.items():
        assert bit == int(consts["ANYLOCK_FEATURE_" + feature.upper()])


def test_every_status_has_its_own_exception(layout):
    statuses = {key: int(value) for kind, key, value in layout if kind == "status"}
    assert statuses == errors.STATUS
    generic = {"INTERNAL", "BACKEND_INVALID"}
    for name, value in statuses.items():
        if name == "OK":
            continue
        cls = errors.exception_class(value)
        assert issubclass(cls, anylock.LockError)
        assert (cls is anylock.InternalError) == (name in generic), name
        e = errors.error(value, "the library's words")
        assert e.status == value and e.status_name == name and str(e) == "the library's words"
        assert str(errors.error(value)) == anylock.strerror(value)
    # The python-redis-lock names and the builtins they are caught as.
    assert issubclass(anylock.NotAcquired, RuntimeError)
    assert issubclass(anylock.AlreadyAcquired, RuntimeError)
    assert issubclass(anylock.NotExpirable, RuntimeError)
    assert issubclass(anylock.Timeout, TimeoutError)
    assert issubclass(anylock.InvalidTimeout, ValueError)
    assert issubclass(anylock.StoreError, ConnectionError)
    assert errors.exception_class(statuses["FORKED"]) is anylock.Forked
