"""The backend the Python tests talk to: the module (`QUOTA.X key args`) or
the Lua library (`FCALL quota_x 1 key args`), chosen by QUOTA_BACKEND, which
tests/run.py sets for the scripts it runs. Clients from here translate
commands, so a test is written once for both. Also what every test script
needs to start servers and build test libraries."""

import os
import socket

import redis
from redis.client import Pipeline
from redis.cluster import RedisCluster

BACKEND = os.environ.get("QUOTA_BACKEND", "module")
KEYLESS = {"PRICE", "PLAN", "ESTIMATE", "DEBUG"}


# Failed expectations of a check script: `check` records and prints each,
# and the script exits non-zero when any is recorded.
FAILURES = []


def check(ok, what):
    if not ok:
        FAILURES.append(what)
        print("FAILED:", what)


def as_map(reply):
    """A map reply as a dict, whether RESP3 gave a dict or RESP2 a flat list."""
    return reply if isinstance(reply, dict) else dict(zip(reply[0::2], reply[1::2]))


def _text(arg):
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


def lua_command(args):
    """`QUOTA.X key args` as the Lua library takes it: `FCALL quota_x 1 key
    args`, with no key for the keyless PRICE, PLAN, ESTIMATE and DEBUG (and for
    a command given without its key); PRICE and PLAN GET, LIST and HELP go to
    the read-only quota_price_ro and quota_plan_ro, which replicas serve. Other
    commands stay as they are."""
    args = list(args)
    if not args or not _text(args[0]).upper().startswith("QUOTA."):
        return args
    name = _text(args[0])[6:].upper()
    function = "quota_" + name.lower()
    if name in ("PRICE", "PLAN") and len(args) > 1 and _text(args[1]).upper() in ("GET", "LIST", "HELP"):
        function = function + "_ro"
    keys = "0" if name in KEYLESS or len(args) < 2 else "1"
    return ["FCALL", function, keys] + args[1:]


def translate(args):
    """`QUOTA.X key args` as the backend chosen by QUOTA_BACKEND takes it."""
    return lua_command(args) if BACKEND == "lua" else args


def free_port():
    """A free port whose cluster bus port (port + 10000) exists too."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 <= 65535:
            return port


def lua_test_library(name, sections, exports, snippet):
    """A Functions library named `name` for testing sections of lua/src:
    00_header, then `sections` as the body of build() (as 05_open does: the
    standard libraries exist only while a function runs) returning
    `exports`, then `snippet`, which registers functions that build on their
    first call."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def read(section):
        with open(os.path.join(root, "lua", "src", section), encoding="utf-8") as f:
            return f.read()

    header = read("00_header.lua").split("\n", 1)[1]
    parts = [f"#!lua name={name}", header, "local function build()"] + [read(s) for s in sections]
    parts += [f"return {exports}", "end", snippet]
    return "\n".join(parts)


class TranslatingPipeline(Pipeline):
    def execute_command(self, *args, **kwargs):
        return super().execute_command(*translate(args), **kwargs)


class Redis(redis.Redis):
    def execute_command(self, *args, **options):
        return super().execute_command(*translate(args), **options)

    def pipeline(self, transaction=True, shard_hint=None):
        return TranslatingPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)


class Cluster(RedisCluster):
    def execute_command(self, *args, **kwargs):
        return super().execute_command(*translate(args), **kwargs)


def tail(path, lines=20):
    """The last `lines` lines of a log file ("" when it cannot be read)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


class QuotaRedis(redis.Redis):
    """redis-py with `q(*args)`: `QUOTA.X key args` sent as `backend` takes it."""

    backend = "module"

    def q(self, *args):
        args = [a if isinstance(a, bytes) else str(a) for a in args]
        return self.execute_command(*(lua_command(args) if self.backend == "lua" else args))


def start_quota_server(backend, rdir, module, loader, server="redis-server", port=None, args=(),
                       timeout=15, error=RuntimeError):
    """A redis-server in `rdir` (made if missing) with quota: the module with
    TEST_CLOCK, or the Lua library loaded by `quota-load --test-clock`, on
    `port` (a free one by default), in its own process group. Returns the
    process, the port, the log's path and a QuotaRedis (RESP3, text) for it;
    raises `error` with the log's end when it does not start in `timeout` s."""
    import subprocess
    import time
    if backend == "module" and not os.path.exists(module):
        raise error(f"{module} is missing: make build")
    if backend == "lua" and not os.path.exists(loader):
        raise error(f"{loader} is missing: make build")
    port = port or free_port()
    os.makedirs(rdir, exist_ok=True)
    log = os.path.join(rdir, "redis.log")
    extra = ["--loadmodule", module, "TEST_CLOCK", "yes"] if backend == "module" else []
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", rdir, "--logfile", log] + list(args) + extra,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    client = QuotaRedis(port=port, decode_responses=True, protocol=3, socket_timeout=30)
    client.backend = backend
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise error(f"redis-server ({backend}) did not start:\n{tail(log)}")
            time.sleep(0.02)
    if backend == "lua":
        res = subprocess.run([loader, f"redis://127.0.0.1:{port}", "--test-clock"], capture_output=True, text=True,
                             timeout=60)
        if res.returncode != 0:
            raise error(f"quota-load failed: {res.stdout}{res.stderr}")
    return proc, port, log, client


def load_test_file(path, prefix):
    """A test file as a module named `<prefix><file name>`."""
    import importlib.util
    name = prefix + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tests_of(module, pattern, prefix):
    """The test_* functions of a module loaded by load_test_file, in the
    order they are written; with `pattern`, those whose name or
    `file::name` contains it."""
    found = []
    for name, fn in vars(module).items():
        if name.startswith("test_") and callable(fn) and getattr(fn, "__module__", None) == module.__name__:
            if pattern is None or pattern in name or pattern in f"{module.__name__[len(prefix):]}::{name}":
                found.append((name, fn))
    return found


def stop_process(proc, timeout=5):
    """SIGTERM to the process group of `proc` (started with
    start_new_session), SIGKILL when it lingers past `timeout` s."""
    import signal
    import subprocess
    if proc is None or proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue
