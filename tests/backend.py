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
