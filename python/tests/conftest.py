# SPDX-License-Identifier: BSD-2-Clause
"""Fixtures: the stores this build has, on real servers.

redis and memcached servers are started here (once per run) on free loopback
ports, in a temporary directory, die with this process (PR_SET_PDEATHSIG) and
are stopped by PID at the end.  A missing server binary for a backend the
build has is a failure, never a skip.  The library is the one
$ANYLOCK_LIBRARY names (tests/test_python.sh points it at the build's .libs).
"""
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

import anylock

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_SRCDIR = os.environ.get("top_srcdir") or os.path.join(HERE, "..", "..")
TOP_BUILDDIR = os.environ.get("top_builddir") or TOP_SRCDIR
STORES = [s for s in ("memory", "sqlite", "file", "redis", "memcached") if anylock.backend_available(s)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _answers(port, probe, want):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(probe)
            return s.recv(64).startswith(want)
    except OSError:
        return False


class Server:
    """A real server process on a free loopback port."""

    def __init__(self, kind, argv, port, probe, want, workdir, url):
        if shutil.which(argv[0]) is None:
            pytest.fail("%s is not installed (scripts/install-deps.sh installs it)" % argv[0])
        self.kind = kind
        self.port = port
        self.url = url
        self.dir = workdir
        self.log = open(os.path.join(workdir, "server.log"), "ab")
        # Not the sanitizer runtime a sanitizer build preloads for us.
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
        self.proc = subprocess.Popen(argv, cwd=workdir, stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL,
                                     env=env, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 10
        while not _answers(self.port, probe, want):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                with open(os.path.join(workdir, "server.log"), "rb") as f:
                    tail = f.read()[-400:].decode(errors="replace")
                pytest.fail("%s did not start on port %d: %s" % (argv[0], self.port, tail))
            time.sleep(0.02)

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.log.close()


def start_redis(workdir):
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir, "--save", "",
            "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"]
    return Server("redis", argv, port, b"PING\r\n", b"+PONG", workdir, "redis://127.0.0.1:%d" % port)


def start_memcached(workdir):
    port = free_port()
    argv = ["memcached", "-p", str(port), "-l", "127.0.0.1", "-U", "0", "-m", "64"]
    if os.getuid() == 0:
        argv += ["-u", "root"]
    return Server("memcached", argv, port, b"version\r\n", b"VERSION", workdir,
                  "memcached://127.0.0.1:%d" % port)


@pytest.fixture(scope="session")
def workdir():
    d = tempfile.mkdtemp(prefix="anylock-py.")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def servers(workdir):
    """{kind: Server} for the network stores this build has (started first,
    before any test starts a thread: preexec_fn runs in the forked child)."""
    started = {}
    try:
        if "redis" in STORES:
            d = os.path.join(workdir, "redis")
            os.mkdir(d)
            started["redis"] = start_redis(d)
        if "memcached" in STORES:
            d = os.path.join(workdir, "memcached")
            os.mkdir(d)
            started["memcached"] = start_memcached(d)
        yield started
    finally:
        for s in started.values():
            s.stop()


@pytest.fixture(scope="session")
def urls(servers, workdir):
    """{store: URL} for every store this build has."""
    out = {"memory": "memory://pytest"}
    if "sqlite" in STORES:
        out["sqlite"] = "sqlite:///" + os.path.join(workdir, "locks.db")
    if "file" in STORES:
        out["file"] = "file://" + os.path.join(workdir, "file-locks")
    for kind, s in servers.items():
        out[kind] = s.url
    return out


@pytest.fixture(params=STORES)
def store(request, urls):
    """(store name, URL), once per store this build has."""
    return request.param, urls[request.param]


@pytest.fixture
def url(store):
    return store[1]


@pytest.fixture
def client(url):
    c = anylock.Client(url)
    yield c
    c.close()


@pytest.fixture
def name(request):
    """A lock name no other test uses."""
    return "py-%s-%s" % (request.node.name.split("[")[0], uuid.uuid4().hex[:8])


# How late a store may free an expired lock (memcached counts whole seconds).
SLACK = {"memory": 0.2, "sqlite": 0.3, "file": 0.3, "redis": 0.3, "memcached": 2.5}


def python_env():
    """The environment for a Python subprocess that imports anylock."""
    env = dict(os.environ)
    pkg = os.path.abspath(os.path.join(HERE, ".."))
    env["PYTHONPATH"] = pkg + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_python(code, timeout=30, **kw):
    """Runs code in a new interpreter (this one's), returning the completed
    process; fails the test if it outlives timeout."""
    return subprocess.run([sys.executable, "-c", code], env=python_env(), capture_output=True, text=True,
                          timeout=timeout, **kw)
