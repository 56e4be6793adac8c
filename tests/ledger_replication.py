#!/usr/bin/env python3
"""The ledger stream on a replica and in the AOF equals the primary's.

Starts a primary (module, test clock, LEDGER_LEN, appendonly) and a
replica on free ports in a scratch folder, waits for the replica's sync,
then runs every kind of ledger write (commit, charge, release, expire by
the timer, grant, revoke, reset) on two trees, one with a hash tag, with
META. Then:

  - the replica's XRANGE of each ledger equals the primary's, ids included
    (the module's XADD is replicated as a stream write; QUOTA.REPLAY on the
    replica writes no entry of its own, or the replica would hold twice as
    many);
  - the primary restarted from its AOF holds the same entries (the AOF's
    QUOTA.REPLAY writes none either);
  - a ledger key of another type is refused up front (WRONGTYPE), and the
    tree is unchanged.

Usage: tests/ledger_replication.py  (exit 0 when every check holds).
The module backend only: the Lua library's twin is checked by its own tests.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

import redis

from backend import BACKEND, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE = os.path.join(ROOT, "target", "release", "libquota.so")
failures = []


def check(ok, what, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'}  {what}" + ("" if ok else f"\n      {detail}"))
    if not ok:
        failures.append(what)


def start(port, folder, *extra):
    os.makedirs(folder, exist_ok=True)
    args = ["redis-server", "--port", str(port), "--dir", folder, "--save", "", "--daemonize", "no",
            "--loadmodule", MODULE, "TEST_CLOCK", "yes", "LEDGER_LEN", "1000", *extra]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, decode_responses=True)
    for _ in range(100):
        try:
            client.ping()
            return proc, client
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    raise SystemExit(f"redis-server on {port} did not start")


def wait_until(what, test, seconds=10):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if test():
            return True
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def workload(c, key):
    c.execute_command("QUOTA.SET", key, "/", "m", "METRIC", "credits", "LIMIT", "100")
    c.execute_command("QUOTA.RESERVE", key, "PATH", "p1", "ALSO", "p2", "ID", "r1", "TTL", "1000",
                      "SERVICE", "chat", "MODEL", "mini", "META", "user", "bob", "job", "j 7",
                      "COST", "credits", "3")
    c.execute_command("QUOTA.RESERVE", key, "PATH", "p1", "ID", "r2", "TTL", "1000", "META", "user", "eve",
                      "COST", "credits", "2", "COST", "credits", "4")
    c.execute_command("QUOTA.COMMIT", key, "r1", "COST", "credits", "2")
    c.execute_command("QUOTA.RELEASE", key, "r2", "ITEM", "1")
    c.execute_command("QUOTA.CHARGE", key, "PATH", "p3", "ID", "c1", "META", "k", "v", "COST", "credits", "1.50")
    c.execute_command("QUOTA.CHARGE", key, "PATH", "p3", "ID", "c1", "COST", "credits", "1.50")  # duplicate
    c.execute_command("QUOTA.GRANT", key, "/", "m", "10", "ID", "g1")
    c.execute_command("QUOTA.REVOKE", key, "/", "m", "g1")
    c.execute_command("QUOTA.RESET", key, "/", "m")
    c.execute_command("QUOTA.RESERVE", key, "PATH", "p1", "ID", "r3", "TTL", "500", "COST", "credits", "1")


def main():
    if BACKEND == "lua":
        print("skip  the module's ledger replication (QUOTA_BACKEND=lua)")
        return 0
    work = tempfile.mkdtemp(prefix="ledger-")
    procs = []
    try:
        p_port, r_port = free_port(), free_port()
        proc, primary = start(p_port, os.path.join(work, "p"), "--appendonly", "yes")
        procs.append(proc)
        proc, replica = start(r_port, os.path.join(work, "r"), "--replicaof", "127.0.0.1", str(p_port))
        procs.append(proc)
        wait_until("the replica's sync", lambda: replica.info("replication").get("master_link_status") == "up")

        keys = ["acme", "{t1}beta"]
        ledgers = ["{acme}:ledger", "{t1}beta:ledger"]
        for key in keys:
            workload(primary, key)
        # The timer expires r2's rest and r3 (no command on the trees).
        primary.execute_command("QUOTA.DEBUG", "CLOCK", "ADVANCE", "5000")
        wait_until("the timer's expire entries", lambda: all(
            sum(1 for _, f in primary.xrange(l) if f.get("type") == "expire") == 2 for l in ledgers))
        offset = primary.info("replication")["master_repl_offset"]
        wait_until("the replica's offset", lambda: replica.info("replication")["slave_repl_offset"] >= offset)

        kinds = [f["type"] for _, f in primary.xrange(ledgers[0])]
        check(sorted(kinds) == sorted(["commit", "release", "charge", "grant", "revoke", "reset", "expire", "expire"]),
              "one entry per commit, release, charge, grant, revoke, reset and expiry", kinds)
        first = primary.xrange(ledgers[0])[0][1]
        check(list(first) == ["type", "time", "id", "paths", "service", "model", "amount:credits", "meta:user",
                              "meta:job"] and first["meta:job"] == "j 7", "a commit's fields in order", first)
        for ledger in ledgers:
            mine, theirs = primary.xrange(ledger), replica.xrange(ledger)
            check(mine == theirs and len(mine) == 8, f"the replica's {ledger} equals the primary's", (mine, theirs))

        # Restart the primary from its AOF (its replica keeps what it has).
        before = {l: primary.xrange(l) for l in ledgers}
        primary.shutdown(nosave=True)
        procs[0].wait(timeout=30)
        proc, primary = start(p_port, os.path.join(work, "p"), "--appendonly", "yes")
        procs[0] = proc
        for ledger in ledgers:
            check(primary.xrange(ledger) == before[ledger], f"{ledger} loaded from the AOF equals the one written",
                  (primary.xrange(ledger), before[ledger]))

        # A ledger key of another type: refused before anything changes.
        primary.set("{gamma}:ledger", "x")
        try:
            primary.execute_command("QUOTA.SET", "gamma", "/", "m", "METRIC", "credits", "LIMIT", "1")
            check(False, "a ledger key of another type is refused")
        except redis.ResponseError as e:
            check(str(e) == "WRONGTYPE the tree's ledger key holds another type", "WRONGTYPE", str(e))
        check(primary.exists("gamma") == 0, "nothing changed")
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)
    print("ledger replication:", "FAILED " + ", ".join(failures) if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
