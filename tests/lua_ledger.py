#!/usr/bin/env python3
"""The Lua library's ledger (usage.md §3): what only the library does with it.

  python3 tests/lua_ledger.py          (make test-lua)

lua_parity.py --focus records compares the ledger entries of both backends
command by command; this checks what it cannot: the library loaded with
`quota-load --set ledger_len=N` writes one stream entry per commit,
charge, release, expiry, grant, revoke and reset to `{<key>}:ledger` (or
`<key>:ledger` for a key with a hash tag) and nothing with ledger_len 0;
`quota_sweep` writes the `expire` entries of the holds it expires; a ledger
key of another type makes every write on the tree fail with WRONGTYPE
before anything changes (reads still answer), and `quota_sweep` then
expires the tree's holds without entries; an account without the ledger key,
or that may read it but not write it, or may not run XADD, gets NOPERM,
again before anything changes (reads need none of it); an XADD that fails
after the checks loses its entry with a warning in the log, the command
applied and answered; and a replica holds the
primary's entries with the primary's ids (effects replication).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

import redis

from backend import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOADER = os.environ.get("QUOTA_LOAD", os.path.join(ROOT, "target", "release", "quota-load"))
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
T0 = 1769774400000
FAILED = []


def check(ok, what, detail=""):
    print(("ok:     " if ok else "FAILED: ") + what + ("" if ok or not detail else f"\n        {detail}"))
    if not ok:
        FAILED.append(what)


class Server:
    def __init__(self, workdir, name, extra=()):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", workdir, "--save", "",
             "--appendonly", "no", "--logfile", os.path.join(workdir, name + ".log"), *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.r = redis.Redis(port=self.port, protocol=3, decode_responses=True)
        for _ in range(200):
            try:
                self.r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)

    def load(self, *settings):
        args = [LOADER, "--test-clock", "--force"] + [a for s in settings for a in ("--set", s)]
        out = subprocess.run(args + [f"redis://127.0.0.1:{self.port}"], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"quota-load failed: {out.stdout}{out.stderr}")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def fcall(r, name, key, *args):
    try:
        return r.execute_command("FCALL", "quota_" + name, 1, key, *args)
    except redis.ResponseError as e:
        return e


def entries(r, key):
    return [fields for _, fields in r.xrange(key, "-", "+")]


def snapshot(r):
    """Every key but the clock, dumped."""
    return {k: r.dump(k) for k in sorted(r.keys("*")) if k != "quota:clock"}


def clock(r, ms):
    r.execute_command("FCALL", "quota_debug", "0", "CLOCK", "SET", str(ms))


def build(r, key):
    """One of each entry: commit, charge, release, expire, grant, revoke,
    reset (in that order)."""
    clock(r, T0)
    fcall(r, "set", key, "/", "c", "METRIC", "credits", "LIMIT", "100", "WINDOW", "month")
    fcall(r, "reserve", key, "PATH", "a", "ID", "h1", "SERVICE", "chat", "MODEL", "gpt", "META", "user", "u1",
          "COST", "credits", "5")
    fcall(r, "commit", key, "h1", "COST", "credits", "3")
    fcall(r, "charge", key, "PATH", "a", "ALSO", "b", "ID", "c1", "COST", "credits", "2", "tokens", "0")
    fcall(r, "reserve", key, "PATH", "b", "ID", "h2", "COST", "credits", "1", "COST", "credits", "2")
    fcall(r, "release", key, "h2", "ITEM", "1")
    fcall(r, "reserve", key, "PATH", "b", "ID", "h3", "TTL", "1000", "META", "feature", "chat", "COST", "credits", "4")
    clock(r, T0 + 2000)
    fcall(r, "grant", key, "/", "c", "10", "ID", "g1")
    fcall(r, "revoke", key, "/", "c", "g1")
    fcall(r, "reset", key, "/", "c")


EXPECTED = [
    {"type": "commit", "time": str(T0), "id": "h1", "paths": "a", "service": "chat", "model": "gpt",
     "amount:credits": "3", "meta:user": "u1"},
    {"type": "charge", "time": str(T0), "id": "c1", "paths": "a,b", "amount:credits": "2", "amount:tokens": "0"},
    {"type": "release", "time": str(T0), "id": "h2", "paths": "b", "item": "1", "amount:credits": "2"},
    {"type": "expire", "time": str(T0 + 1000), "id": "h3", "paths": "b", "amount:credits": "4", "meta:feature": "chat"},
    {"type": "grant", "time": str(T0 + 2000), "id": "g1", "paths": "/", "policy": "c", "amount:credits": "10"},
    {"type": "revoke", "time": str(T0 + 2000), "id": "g1", "paths": "/", "policy": "c", "amount:credits": "10"},
    {"type": "reset", "time": str(T0 + 2000), "paths": "/", "policy": "c", "amount:credits": "5"},
]


def main():
    workdir = tempfile.mkdtemp(prefix="quota-ledger-")
    servers = []
    try:
        primary = Server(workdir, "primary")
        servers.append(primary)
        r = primary.r
        primary.load()
        build(r, "off")
        check(not r.exists("{off}:ledger"), "ledger_len 0 (the default): no ledger key is written")

        primary.load("ledger_len=1000")
        replica = Server(workdir, "replica", ["--replicaof", "127.0.0.1", str(primary.port)])
        servers.append(replica)
        for key, ledger in (("acme", "{acme}:ledger"), ("{t1}acme", "{t1}acme:ledger")):
            build(r, key)
            got = entries(r, ledger)
            check(got == EXPECTED, f"{key}: one entry per commit, charge, release, expiry, grant, revoke, reset in "
                  f"{ledger}", f"got {got}")
            got = [list(e) for e in got]
            check(got == [list(e) for e in EXPECTED], f"{key}: fields in the order of usage.md §3", f"got {got}")
        check(r.xinfo_stream("{acme}:ledger")["length"] == 7, "nothing for reads, denials or duplicates")
        fcall(r, "commit", "acme", "h1")
        fcall(r, "charge", "acme", "PATH", "a", "ID", "c1", "COST", "credits", "2")
        fcall(r, "charge", "acme", "PATH", "a", "CHECK", "COST", "credits", "1000")
        fcall(r, "get", "acme", "/")
        check(r.xlen("{acme}:ledger") == 7, "repeats, a refused CHECK and reads add no entry")

        # quota_sweep writes the entries of the holds it expires.
        fcall(r, "reserve", "idle", "PATH", "x", "ID", "s1", "TTL", "1000", "META", "user", "u2", "COST", "credits", "1")
        clock(r, T0 + 10000)
        r.execute_command("FCALL", "quota_sweep", 1, "quota:due")
        got = entries(r, "{idle}:ledger")
        check(got == [{"type": "expire", "time": str(T0 + 3000), "id": "s1", "paths": "x", "amount:credits": "1",
                       "meta:user": "u2"}], "quota_sweep writes the expire entry of a hold it expires", f"got {got}")

        # A ledger key of another type: writes refused before any change.
        r.set("{wrong}:ledger", "x")
        fcall(r, "set", "wrong", "/", "c", "METRIC", "credits", "LIMIT", "100")
        check(not r.exists("wrong"), "a write on a tree with a wrong-typed ledger creates nothing")
        r.delete("{wrong}:ledger")
        fcall(r, "set", "wrong", "/", "c", "METRIC", "credits", "LIMIT", "100")
        fcall(r, "reserve", "wrong", "PATH", "a", "ID", "w1", "TTL", "1000", "COST", "credits", "1")
        r.set("{wrong}:ledger", "x")
        before = snapshot(r)
        for cmd in (["reserve", "PATH", "a", "COST", "credits", "1"], ["commit", "w1"], ["release", "w1"],
                    ["charge", "PATH", "a", "COST", "credits", "1"], ["grant", "/", "c", "1"],
                    ["set", "/", "d", "METRIC", "credits", "LIMIT", "1"], ["label", "a", "TAGS", "t"]):
            got = fcall(r, cmd[0], "wrong", *cmd[1:])
            check(str(got) == "WRONGTYPE the tree's ledger key holds another type",
                  f"a wrong-typed ledger key refuses {cmd[0]} ({got})")
        check(snapshot(r) == before, "and nothing changed")
        got = fcall(r, "get", "wrong", "a")
        check(not isinstance(got, redis.ResponseError), f"reads still answer ({str(got)[:80]})")
        clock(r, T0 + 20000)
        got = r.execute_command("FCALL", "quota_sweep", 1, "quota:due")
        check(got.get("expired") == 1 and r.get("{wrong}:ledger") == "x",
              f"quota_sweep expires its holds and skips the entries ({got})")
        check(fcall(r, "holds", "wrong") == [], "the hold is gone")

        # An account without the ledger key: NOPERM before anything changes.
        r.delete("{wrong}:ledger")
        r.execute_command("ACL", "SETUSER", "svc", "on", ">pw", "resetkeys", "~wrong", "~{wrong}quota:wrong:*",
                          "~quota:clock", "resetchannels", "&quota:events:wrong", "+@all")
        svc = redis.Redis(port=primary.port, protocol=3, decode_responses=True, username="svc", password="pw")
        before = snapshot(r)
        got = fcall(svc, "reserve", "wrong", "PATH", "a", "COST", "credits", "1")
        # (Servers word it differently: "NOPERM ...", "... can't access at
        # least one of the keys ..." on Redis 7.0.)
        text = str(got).lower()
        check(isinstance(got, redis.exceptions.NoPermissionError)
              or (isinstance(got, redis.ResponseError) and ("noperm" in text or "permission" in text
                                                             or "can't access" in text)),
              f"without the ledger key: NOPERM ({got})")
        check(snapshot(r) == before, "and nothing changed")
        r.execute_command("ACL", "SETUSER", "svc", "~{wrong}:ledger")
        got = fcall(svc, "charge", "wrong", "PATH", "a", "COST", "credits", "1")
        check(not isinstance(got, redis.ResponseError) and r.xlen("{wrong}:ledger") == 1,
              f"with it (~{{wrong}}:ledger), the charge is recorded ({str(got)[:80]})")

        # A writer that may read the ledger key but not write it (%R~), or
        # may not run XADD: NOPERM before anything changes (the library asks
        # ACL first, as the XADD comes after the tree's writes and a Function
        # does not roll back); reads still answer.
        r.execute_command("ACL", "SETUSER", "rou", "on", ">pw", "+@all", "~al2", "~{al2}quota:*", "~quota:*",
                          "%R~{al2}:ledger", "&*")
        r.execute_command("ACL", "SETUSER", "nox", "on", ">pw", "+@all", "-xadd", "~*", "&*")
        fcall(r, "set", "al2", "/", "c", "METRIC", "credits", "LIMIT", "100")
        fcall(r, "reserve", "al2", "PATH", "a", "ID", "r1", "COST", "credits", "1")
        fcall(r, "charge", "al2", "PATH", "a", "SERVICE", "s", "COST", "credits", "1")
        for user in ("rou", "nox"):
            u = redis.Redis(port=primary.port, protocol=3, decode_responses=True, username=user, password="pw")
            before = snapshot(r)
            for cmd in (["charge", "PATH", "a", "ID", "c1", "SERVICE", "s", "COST", "credits", "1"],
                        ["reserve", "PATH", "a", "COST", "credits", "1"], ["commit", "r1"], ["release", "r1"],
                        ["grant", "/", "c", "1"], ["set", "/", "d", "METRIC", "credits", "LIMIT", "1"],
                        ["label", "a", "TAGS", "t"], ["archive", "a"]):
                got = fcall(u, cmd[0], "al2", *cmd[1:])
                # (redis-py keeps NOPERM as the error's class.)
                check(isinstance(got, redis.exceptions.NoPermissionError)
                      and str(got) == "this account may not append to the tree's ledger '{al2}:ledger': give it "
                      "~{al2}:ledger and +xadd (lua/README.md, access control)",
                      f"{user}: a writer that may not XADD the ledger gets NOPERM for {cmd[0]} ({got})")
            check(snapshot(r) == before, f"{user}: and nothing changed")
            for cmd in (["get", "a"], ["holds"], ["usage", "a"]):
                got = fcall(u, cmd[0], "al2", *cmd[1:])
                check(not isinstance(got, redis.ResponseError), f"{user}: {cmd[0]} still answers ({str(got)[:80]})")
            got = u.execute_command("FCALL_RO", "quota_usage", 1, "al2", "a")
            check(not isinstance(got, redis.ResponseError), f"{user}: FCALL_RO quota_usage answers")

        # An XADD that fails after the checks (a stream whose last id cannot
        # grow) loses the entry with the module's warning in the log; the
        # command is applied and answered (tests/scenarios/50_ledger_xadd_fails
        # compares the replies with the module's).
        r.execute_command("XADD", "{xl}:ledger", "18446744073709551615-18446744073709551615", "f", "v")
        got = fcall(r, "charge", "xl", "PATH", "a", "ID", "c1", "BRIEF", "COST", "credits", "5")
        check(not isinstance(got, redis.ResponseError) and got.get("allowed") == 1,
              f"a charge whose XADD fails is answered ({got})")
        check(fcall(r, "get", "xl", "a")["spent"] == {"credits": "5"} and r.xlen("{xl}:ledger") == 1,
              "and applied, its entry lost")
        with open(os.path.join(workdir, "primary.log")) as log:
            check("quota: a ledger entry was not written: XADD failed" in log.read(),
                  "the server's log says so, in the module's words")

        # The replica holds the primary's entries, ids included.
        keys = ("{acme}:ledger", "{t1}acme:ledger", "{idle}:ledger", "{wrong}:ledger")
        same = lambda key: replica.r.xrange(key, "-", "+") == r.xrange(key, "-", "+")
        # (The replica syncs in its own time: waited for, up to a minute, on
        # a busy machine.)
        for _ in range(600):
            try:
                if all(same(k) for k in keys):
                    break
            except redis.ResponseError:  # still loading its first sync
                pass
            time.sleep(0.1)
        for key in keys:
            check(same(key), f"the replica's {key} is the primary's, ids included")
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{'FAILED' if FAILED else 'passed'}: lua_ledger ({len(FAILED)} failed)")
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
