#!/usr/bin/env python3
"""`meta` became a keyword in issue 18, so `QUOTA.PLAN SET` and `QUOTA.PRICE
SET` refuse it as a metric. An AOF written by the release before (or by an
AOF rewrite without RDB preamble, which writes the books as those `SET`s)
may name it: loading must keep those plans and prices, as a primary's `SET`
on a replica does. Module only (the Lua library keeps its books in hashes:
tests/lua_layout.py checks them).

  python3 tests/meta_metric_aof.py
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

import redis

from backend import FAILURES, check, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE = os.path.join(ROOT, "target", "release", "libquota.so")
PLAN = '{"paths":{"*":{"m":{"metric":"meta","limit":"5","window":"none","mode":"strict","warn":[80,90]}}},"version":1}'
PRICE = '{"metric":"meta","rates":{"tokens":"1"}}'
# Tree writes as the release before issue 18 wrote them (a stamp of four
# numbers), in its grammar: `meta` a metric, and a path in an ALSO list.
# (At this server's time: the hold must still be live when it is read.)
OLD_STAMP = f"{int(time.time() * 1000)}:60000:86400000:1000"
OLD_WRITES = [
    ["QUOTA.SET", "/", "m", "METRIC", "meta", "LIMIT", "10"],
    ["QUOTA.CHARGE", "PATH", "a", "COST", "meta", "3"],
    ["QUOTA.RESERVE", "PATH", "a", "ALSO", "meta", "ID", "h1", "TTL", "3600000", "COST", "meta", "1", "credits", "2"],
]


def resp(*args):
    out = f"*{len(args)}\r\n"
    for a in args:
        out += f"${len(a.encode())}\r\n{a}\r\n"
    return out


def main():
    workdir = tempfile.mkdtemp(prefix="quota-meta-aof-")
    os.mkdir(os.path.join(workdir, "aof"))
    with open(os.path.join(workdir, "aof", "appendonly.aof.1.base.aof"), "w", newline="") as f:
        f.write(resp("SELECT", "0") + resp("QUOTA.PLAN", "SET", "pro", PLAN)
                + resp("QUOTA.PRICE", "SET", "chat/m1", PRICE)
                + "".join(resp("QUOTA.REPLAY", "t", OLD_STAMP, *w) for w in OLD_WRITES))
    with open(os.path.join(workdir, "aof", "appendonly.aof.manifest"), "w") as f:
        f.write("file appendonly.aof.1.base.aof seq 1 type b\n")
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--dir", workdir, "--appendonly", "yes",
                             "--appenddirname", "aof", "--loadmodule", MODULE, "TEST_CLOCK", "yes"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        r = redis.Redis(port=port, decode_responses=True, socket_timeout=30)
        for _ in range(200):
            try:
                if r.ping():
                    break
            except (redis.ConnectionError, redis.BusyLoadingError):
                time.sleep(0.05)
        def get(*command):
            try:
                return r.execute_command(*command)
            except redis.ResponseError as e:
                return str(e)

        got = get("QUOTA.PLAN", "GET", "pro")
        check(got == PLAN, f"a plan on metric meta loads from the AOF: {got}")
        got = get("QUOTA.PRICE", "GET", "chat/m1")
        check(got == PRICE, f"a price on metric meta loads from the AOF: {got}")
        got = get("QUOTA.GET", "t", "/")
        node = dict(zip(got[0::2], got[1::2])) if isinstance(got, list) else {}
        policy = dict(zip(node["policies"][0][0::2], node["policies"][0][1::2])) if node.get("policies") else {}
        check(node.get("spent") == ["meta", "3"] and (policy.get("used"), policy.get("held")) == ("3", "1"),
              f"an earlier release's writes on metric meta replay from the AOF: {got}")
        got = r.execute_command("QUOTA.HOLDS", "t")
        check("meta" in str(got) and "h1" in str(got), f"with `meta` a path of an ALSO list: {got}")
        for command in (["QUOTA.PLAN", "SET", "pro", PLAN.replace('"5"', '"6"')],
                        ["QUOTA.PRICE", "SET", "chat/m2", PRICE]):
            try:
                got = r.execute_command(*command)
            except redis.ResponseError as e:
                got = str(e)
            check("is a keyword" in str(got), f"a client's {' '.join(command[:2])} still refuses it: {got}")
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{'FAILED' if FAILURES else 'passed'}: meta_metric_aof ({len(FAILURES)} failed)")
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
