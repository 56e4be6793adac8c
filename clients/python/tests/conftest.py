"""Real servers for the client's tests, started once per session (lazily, by
group) and stopped at the end, also on failure: the module and the Lua
library, each with the default event log and with `events_len` 5, a plain
server without quota, and a 3-primary cluster per backend.

Every test runs against a real server; time moves with the test clock
(clock_advance), never with sleeps.
"""

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
try:
    import quota_client  # noqa: F401  (the installed package: make test-python-client)
except ImportError:
    sys.path.insert(0, os.path.dirname(HERE))  # the source tree, when not installed

MODULE = os.path.join(ROOT, "target", "release", "libquota.so")
LOADER = os.path.join(ROOT, "target", "release", "quota-load")
REDIS_SERVER = os.environ.get("QUOTA_REDIS_SERVER", "redis-server")
REDIS_CLI = os.environ.get("QUOTA_REDIS_CLI", "redis-cli")

from quota_client import AsyncQuota, Quota  # noqa: E402


def free_port():
    """A free port whose cluster bus port (port + 10000) exists too."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 <= 65535:
            return port


class Server:
    def __init__(self, backend, workdir, events_len=None, cluster=False, quota=True):
        self.backend, self.events_len, self.cluster, self.quota = backend, events_len, cluster, quota
        self.port = free_port()
        self.dir = os.path.join(workdir, f"s{self.port}")
        os.makedirs(self.dir)
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", self.dir, "--logfile", "redis.log"]
        if cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        if quota and backend == "module":
            args += ["--loadmodule", MODULE, "TEST_CLOCK", "yes"]
            if events_len:
                args += ["EVENTS_LEN", str(events_len)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_ready()

    def wait_ready(self):
        r = redis.Redis(port=self.port)
        deadline = time.time() + 20
        while True:
            try:
                r.ping()
                break
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.time() > deadline:
                    with open(os.path.join(self.dir, "redis.log")) as f:
                        log = f.read()[-2000:]
                    raise RuntimeError(f"redis-server on {self.port} did not start: {log}")
                time.sleep(0.02)  # waiting for the process, not for quota
        r.close()

    def load_lua(self, cluster=False):
        args = [LOADER, "--test-clock"]
        if self.events_len:
            args += ["--set", f"events_len={self.events_len}"]
        if cluster:
            args.append("--cluster")
        res = subprocess.run(args + [f"redis://127.0.0.1:{self.port}"], capture_output=True, text=True, timeout=60)
        if res.returncode != 0:
            raise RuntimeError(f"quota-load failed: {res.stdout} {res.stderr}")

    def redis(self, **kw):
        return redis.Redis(port=self.port, **kw)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Servers:
    """Servers by group, started on first use and stopped at session end."""

    def __init__(self):
        self.workdir = tempfile.mkdtemp(prefix="quota-pyclient-")
        self.all = []
        self.groups = {}

    def _start(self, *args, **kw):
        s = Server(*args, workdir=self.workdir, **kw)
        self.all.append(s)
        return s

    def single(self, backend, events_len=None):
        key = ("single", backend, events_len)
        if key not in self.groups:
            s = self._start(backend, events_len=events_len)
            if backend == "lua":
                s.load_lua()
            self.groups[key] = s
        return self.groups[key]

    def plain(self):
        if "plain" not in self.groups:
            self.groups["plain"] = self._start("none", quota=False)
        return self.groups["plain"]

    def cluster(self, backend):
        key = ("cluster", backend)
        if key not in self.groups:
            nodes = [self._start(backend, cluster=True) for _ in range(3)]
            res = subprocess.run([REDIS_CLI, "--cluster", "create"] + [f"127.0.0.1:{n.port}" for n in nodes]
                                 + ["--cluster-replicas", "0", "--cluster-yes"], capture_output=True, text=True,
                                 timeout=60, stdin=subprocess.DEVNULL)
            if res.returncode != 0:
                raise RuntimeError(f"cluster create failed: {res.stdout[-2000:]} {res.stderr[-2000:]}")
            deadline = time.time() + 30
            while not all(b"cluster_state:ok" in n.redis().execute_command("CLUSTER", "INFO") for n in nodes):
                if time.time() > deadline:
                    raise RuntimeError("the cluster did not reach cluster_state:ok")
                time.sleep(0.05)  # waiting for the cluster to form, not for quota
            if backend == "lua":
                nodes[0].load_lua(cluster=True)
            self.groups[key] = nodes
        return self.groups[key]

    def stop(self):
        for s in self.all:
            s.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def servers():
    s = Servers()
    try:
        yield s
    finally:
        s.stop()


async def aclose(client):
    """Close an asyncio client (aclose() since redis-py 5.0.1, close() before)."""
    close = getattr(client, "aclose", None) or client.close
    await close()


def tree_name(prefix="t"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class SyncAsAsync:
    """A sync Quota whose methods can be awaited, so that one test body
    (an `async def`) runs over Quota and AsyncQuota alike."""

    def __init__(self, q):
        self.q = q
        self.is_async = False

    def __getattr__(self, name):
        attr = getattr(self.q, name)
        if not callable(attr) or name in ("hold", "follow_events"):
            return attr

        async def call(*args, **kwargs):
            return attr(*args, **kwargs)

        return call


class Ctx:
    """One configuration: backend, RESP protocol, sync or async."""

    def __init__(self, server, backend, protocol, mode, decode=False):
        self.server, self.backend, self.protocol, self.mode, self.decode = server, backend, protocol, mode, decode

    def __repr__(self):
        return f"{self.backend}-resp{self.protocol}-{self.mode}"

    def run(self, body, **client_kw):
        kw = dict(port=self.server.port, protocol=self.protocol, decode_responses=self.decode)
        kw.update(client_kw)
        if self.mode == "sync":
            client = redis.Redis(**kw)
            try:
                q = Quota(client)
                assert isinstance(q, Quota)
                wrapped = SyncAsAsync(q)
                return asyncio.run(body(wrapped))
            finally:
                client.close()

        async def main():
            client = redis.asyncio.Redis(**kw)
            try:
                q = Quota(client)
                assert isinstance(q, AsyncQuota)
                q.is_async = True
                return await body(q)
            finally:
                await aclose(client)

        return asyncio.run(main())


CONFIGS = [(b, p, m) for b in ("module", "lua") for p in (2, 3) for m in ("sync", "async")]


@pytest.fixture(params=CONFIGS, ids=[f"{b}-resp{p}-{m}" for b, p, m in CONFIGS])
def ctx(request, servers):
    backend, protocol, mode = request.param
    return Ctx(servers.single(backend), backend, protocol, mode)


@pytest.fixture(params=["module", "lua"])
def backend(request):
    return request.param
