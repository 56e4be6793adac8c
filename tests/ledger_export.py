#!/usr/bin/env python3
"""The ledger, end to end: quota writes it, examples/ledger_export.py exports
it to SQLite and to a real PostgreSQL server, exactly once per entry.

For each backend (the module, then the Lua library) a redis-server starts on a
free port with the test clock; the test drives commits, charges (with META,
negative, refused by access rules), releases, expiries (the clock moves: the
module's timer, `quota-load --sweep --once` on Lua), a late commit, grants, a
revoke and a reset on two trees (`acme` and `{t1}acme`), and checks every
entry of the stream and every row of both databases: types, amounts as exact
decimal strings (summed as NUMERIC in PostgreSQL), META. Then it crashes the
exporter: before XACK after a commit, in the middle of a batch before the
commit (rerun by another consumer, which takes the entries over with
XAUTOCLAIM), and with kill -9 while it runs; every rerun must leave each
entry once in the table (no duplicate, no gap) and nothing pending. SIGTERM
ends a running exporter cleanly; entries trimmed before export are reported.
The exporter runs as the ACL account its docstring gives (the ledger keys and
the stream commands it sends, nothing else).

PostgreSQL: the test runs initdb and pg_ctl (Debian's postgresql package,
/usr/lib/postgresql/N/bin) in a temporary folder, on a unix socket there only
(no TCP port), as the user postgres when run as root; it stops it at the end,
on failure too. psycopg 3 talks to it (tests/requirements.txt).

    python3 tests/ledger_export.py [--backend module|lua|both] [--db sqlite|postgres|both]

Ends with "N passed, M failed" and exits non-zero on a failure.
"""

import argparse
import atexit
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from decimal import Decimal

import redis

from backend import free_port, lua_command

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE = os.path.join(ROOT, "target", "release", "libquota.so")
LOADER = os.path.join(ROOT, "target", "release", "quota-load")
EXPORTER = os.path.join(ROOT, "examples", "ledger_export.py")
T0 = 1700000000000
TREES = ["acme", "{t1}acme"]
STREAMS = ["{acme}:ledger", "{t1}acme:ledger"]

passed, failed = 0, []


def check(ok, what, detail=""):
    global passed
    if ok:
        passed += 1
        print(f"ok    {what}")
    else:
        failed.append(what)
        print(f"FAIL  {what}" + (f"\n      {detail}" if detail else ""))
    return ok


# ----- PostgreSQL ------------------------------------------------------------------

class Postgres:
    """A throwaway PostgreSQL server: initdb in a temporary folder, listening
    on a unix socket in that folder only."""

    def __init__(self, workdir):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
        if not bins:
            raise SystemExit("ledger_export: no PostgreSQL server (make deps installs Debian's postgresql)")
        self.bin = os.path.dirname(bins[-1])
        self.dir = os.path.join(workdir, "pg")
        os.makedirs(self.dir)
        self.as_user = []
        if os.geteuid() == 0:  # initdb refuses root: run the server as postgres
            shutil.chown(workdir, "postgres")
            shutil.chown(self.dir, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.port = free_port()
        self.data = os.path.join(self.dir, "data")
        self.started = False
        self.run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        self.run("pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "log"), "-w", "-t", "30", "-o",
                 f"-k {self.dir} -p {self.port} -c listen_addresses='' -c fsync=off", "start")
        self.started = True
        atexit.register(self.stop)

    def run(self, tool, *args):
        res = subprocess.run(self.as_user + [os.path.join(self.bin, tool), *args], capture_output=True, text=True,
                             timeout=60)
        if res.returncode != 0:
            raise SystemExit(f"ledger_export: {tool} failed: {res.stdout}{res.stderr}")

    def url(self, database="postgres"):
        return f"postgresql://postgres@/{database}?host={self.dir}&port={self.port}"

    def create(self, database):
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        return self.url(database)

    def stop(self):
        if self.started:
            self.started = False
            self.run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")


# ----- redis-server and quota ----------------------------------------------------------

class Quota:
    """A redis-server with the module or with the Lua library, test clock on."""

    def __init__(self, workdir, backend):
        self.backend = backend
        self.dir = os.path.join(workdir, backend)
        os.makedirs(self.dir)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        extra = ["--loadmodule", MODULE, "TEST_CLOCK", "yes"] if backend == "module" else []
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir, "--logfile", os.path.join(self.dir, "redis.log")] + extra,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        atexit.register(self.stop)
        self.r = redis.Redis(port=self.port, decode_responses=True, protocol=3, socket_timeout=30)
        deadline = time.time() + 10
        while True:
            try:
                self.r.ping()
                break
            except redis.ConnectionError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise SystemExit(f"ledger_export: redis-server ({backend}) did not start")
                time.sleep(0.05)
        if backend == "lua":
            self.load()

    def load(self, *sets):
        args = [LOADER, self.url, "--test-clock"] + [a for s in sets for a in ("--set", s)]
        res = subprocess.run(args, capture_output=True, text=True, timeout=60)
        if res.returncode != 0:
            raise SystemExit(f"ledger_export: quota-load failed: {res.stdout}{res.stderr}")

    def __call__(self, *args):
        args = [str(a) for a in args]
        return self.r.execute_command(*(lua_command(args) if self.backend == "lua" else args))

    def quiet(self, *args):
        """A command that may be refused: it must not write the ledger either way."""
        try:
            self(*args)
        except redis.ResponseError:
            pass

    def ledger_len(self, n):
        if self.backend == "module":
            self.r.config_set("quota.ledger_len", n)
        else:
            self.load(f"ledger_len={n}")

    def advance(self, ms):
        self("QUOTA.DEBUG", "CLOCK", "ADVANCE", ms)

    def expire(self, stream, count):
        """The hold(s) due now expire on their own: the module's timer (polled,
        it ticks on its own), one sweep of the Lua library's companion."""
        if self.backend == "lua":
            res = subprocess.run([LOADER, "--sweep", "--once", self.url], capture_output=True, text=True, timeout=60)
            if res.returncode != 0:
                raise SystemExit(f"ledger_export: quota-load --sweep failed: {res.stdout}{res.stderr}")
        deadline = time.time() + 5
        while time.time() < deadline:
            if sum(1 for _, f in self.r.xrange(stream) if f.get("type") == "expire") >= count:
                return
            time.sleep(0.02)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


# ----- the exporter ---------------------------------------------------------------

# Runs the exporter with one of its functions replaced so that the process
# dies (os._exit: no cleanup, like kill -9) at a chosen point.
CRASHING = """
import os, sys
sys.path.insert(0, {examples!r})
import ledger_export as m
mode, when = sys.argv[1], int(sys.argv[2])
calls = [0]
if mode == "before-ack":          # the n-th batch is committed, then the process dies
    real_ack = m.Exporter.ack
    def ack(self, stream, ids):
        calls[0] += 1
        if calls[0] == when:
            os._exit(9)
        real_ack(self, stream, ids)
    m.Exporter.ack = ack
elif mode == "slow":              # each batch waits n ms before it is written (kill -9 lands mid-run)
    real_write = m.Database.write
    def write(self, rows):
        import time
        time.sleep(when / 1000)
        real_write(self, rows)
    m.Database.write = write
else:                             # mid-write: half of the n-th batch inserted, not committed
    real_write = m.Database.write
    def write(self, rows):
        calls[0] += 1
        if calls[0] == when:
            self.conn.cursor().executemany(self.insert, rows[:len(rows) // 2])
            os._exit(9)
        real_write(self, rows)
    m.Database.write = write
sys.exit(m.main(sys.argv[3:]))
""".format(examples=os.path.join(ROOT, "examples"))


# The account examples/ledger_export.py documents, for the two trees.
ACCOUNT = ["on", ">export-pw", "resetchannels", "~{acme}:ledger", "~{t1}acme:ledger", "-@all", "+xgroup|create",
           "+xreadgroup", "+xautoclaim", "+xack", "+xinfo|stream", "+xinfo|groups"]


def exporter_args(q, db, group, consumer="c1", batch=50, extra=()):
    url = q.url.replace("redis://", "redis://ledger-export:export-pw@")
    args = ["--redis", url, "--db", db, "--group", group, "--consumer", consumer, "--batch", str(batch)]
    for tree in TREES:
        args += ["--tree", tree]
    return args + list(extra)


def export(q, db, group, consumer="c1", batch=50, extra=("--once",), crash=None):
    """Run the exporter to its end; returns (exit code, stderr)."""
    args = exporter_args(q, db, group, consumer, batch, extra)
    cmd = [sys.executable, EXPORTER] + args if crash is None else \
        [sys.executable, "-c", CRASHING, crash[0], str(crash[1])] + args
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return res.returncode, res.stderr


def stream_id(text):
    ms, _, seq = text.partition("-")
    return int(ms), int(seq)


def rows(db):
    """Every row of the table, normalized: amounts and meta as dicts, late and
    disallowed as booleans; ordered by stream, then entry id."""
    if db.startswith("postgresql://"):
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(db, row_factory=dict_row) as conn:
            got = conn.execute("SELECT * FROM quota_ledger").fetchall()
    else:
        import sqlite3

        conn = sqlite3.connect(db)
        conn.row_factory = sqlite3.Row
        got = [dict(r) for r in conn.execute("SELECT * FROM quota_ledger")]
        conn.close()
        for r in got:
            r["amounts"] = json.loads(r["amounts"])
            r["meta"] = json.loads(r["meta"]) if r["meta"] is not None else None
            r["late"], r["disallowed"] = bool(r["late"]), bool(r["disallowed"])
    return sorted(got, key=lambda r: (r["stream"], stream_id(r["entry_id"])))


def count(db):
    if db.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(db) as conn:
            return conn.execute("SELECT count(*) FROM quota_ledger").fetchone()[0]
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT count(*) FROM quota_ledger").fetchone()[0]
    finally:
        conn.close()


def pending(q, group):
    return sum(q.r.xpending(s, group)["pending"] for s in STREAMS if q.r.exists(s))


def exact_copy(q, db, group, what):
    """The table holds each entry of both streams once, and nothing else, and
    the group has nothing pending."""
    want = [(s, eid) for s in STREAMS for eid, _ in q.r.xrange(s)]
    got = [(r["stream"], r["entry_id"]) for r in rows(db)]
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    check(got == want and not pending(q, group), what,
          f"{len(want)} entries, {len(got)} rows, missing {missing[:3]}, not in the stream {extra[:3]}, "
          f"{pending(q, group)} pending")


# ----- the commands and the entries they must write ------------------------------------

def drive(q):
    """Commands on `acme` and `{t1}acme`; returns the entries each stream must
    hold, in order, as rows without stream and entry_id."""
    q("QUOTA.DEBUG", "CLOCK", "SET", T0)
    q("QUOTA.SET", "acme", "/", "monthly", "METRIC", "credits", "LIMIT", "1000")
    q("QUOTA.SET", "acme", "/", "tokens", "METRIC", "tokens", "LIMIT", "1000000")
    q("QUOTA.SET", "{t1}acme", "/", "monthly", "METRIC", "credits", "LIMIT", "10")
    q("QUOTA.CHARGE", "acme", "PATH", "teams/a", "COST", "credits", "1")  # before the ledger is on: no entry
    q.ledger_len(100000)
    want = []

    def entry(type_, time_, paths, amounts, id_=None, service=None, model=None, item=None, policy=None,
              late=False, disallowed=False, meta=None):
        want.append({"type": type_, "time": time_, "id": id_, "paths": paths, "service": service, "model": model,
                     "item": item, "policy": policy, "amounts": amounts, "late": late, "disallowed": disallowed,
                     "meta": meta})

    t = T0
    q("QUOTA.RESERVE", "acme", "PATH", "teams/a", "ALSO", "users/u1", "ID", "r1", "SERVICE", "chat", "MODEL", "m1",
      "META", "user", "u1", "request", "req-1", "COST", "credits", "10.5", "tokens", "100")
    q("QUOTA.COMMIT", "acme", "r1", "COST", "credits", "7.250", "tokens", "80")
    entry("commit", t, "teams/a,users/u1", {"credits": "7.25", "tokens": "80"}, "r1", "chat", "m1",
          meta={"user": "u1", "request": "req-1"})
    q.advance(10)
    t += 10
    q("QUOTA.CHARGE", "acme", "PATH", "teams/a", "ID", "c1", "SERVICE", "chat", "META", "user", "u2",
      "COST", "credits", "3.10")
    entry("charge", t, "teams/a", {"credits": "3.1"}, "c1", "chat", meta={"user": "u2"})
    q("QUOTA.CHARGE", "acme", "PATH", "teams/a", "COST", "credits", "-1.5")
    entry("charge", t, "teams/a", {"credits": "-1.5"})
    q("QUOTA.RESERVE", "acme", "PATH", "teams/b", "ID", "r2", "META", "feature", "résumé ✓", "COST", "credits", "5")
    q("QUOTA.RELEASE", "acme", "r2")
    entry("release", t, "teams/b", {"credits": "5"}, "r2", meta={"feature": "résumé ✓"})
    q("QUOTA.RESERVE", "acme", "PATH", "teams/a", "ID", "r3", "SERVICE", "img", "COST", "credits", "2",
      "COST", "credits", "3")
    q("QUOTA.COMMIT", "acme", "r3", "ITEM", "1", "COST", "credits", "2.5")
    entry("commit", t, "teams/a", {"credits": "2.5"}, "r3", "img", item=1)
    q("QUOTA.RELEASE", "acme", "r3", "ITEM", "0")
    entry("release", t, "teams/a", {"credits": "2"}, "r3", "img", item=0)
    q.quiet("QUOTA.COMMIT", "acme", "r3", "ITEM", "0")  # released already: nothing
    # Expiries: the hold's expires_at is the entry's time.
    q("QUOTA.RESERVE", "acme", "PATH", "users/u3", "ID", "r4", "TTL", "1000", "META", "user", "u3",
      "COST", "credits", "4", "tokens", "0.001")
    q.advance(2000)
    q.expire("{acme}:ledger", 1)
    entry("expire", t + 1000, "users/u3", {"credits": "4", "tokens": "0.001"}, "r4", meta={"user": "u3"})
    t += 2000
    q.quiet("QUOTA.RELEASE", "acme", "r4")  # expired already: gives nothing back, no entry
    q("QUOTA.RESERVE", "acme", "PATH", "users/u4", "ID", "r5", "TTL", "1000", "COST", "credits", "6")
    q.advance(2000)
    q.expire("{acme}:ledger", 2)
    entry("expire", t + 1000, "users/u4", {"credits": "6"}, "r5")
    t += 2000
    q("QUOTA.COMMIT", "acme", "r5", "COST", "credits", "6")
    entry("commit", t, "users/u4", {"credits": "6"}, "r5", late=True)
    # Access rules: a charge they refuse is still recorded (no CHECK), marked.
    q("QUOTA.DENY", "acme", "teams/c", "SERVICE", "video")
    q("QUOTA.CHARGE", "acme", "PATH", "teams/c", "SERVICE", "video", "MODEL", "v2", "COST", "credits", "2")
    entry("charge", t, "teams/c", {"credits": "2"}, service="video", model="v2", disallowed=True)
    denied = q("QUOTA.CHARGE", "acme", "PATH", "teams/c", "SERVICE", "video", "CHECK", "COST", "credits", "2")
    check(denied["allowed"] == 0, f"{q.backend}: a CHECK charge access rules refuse is denied (and not in the ledger)")
    # A commit charging nothing still lists its metrics.
    q("QUOTA.RESERVE", "acme", "PATH", "teams/a", "ID", "r6", "COST", "credits", "1")
    q("QUOTA.COMMIT", "acme", "r6", "COST", "credits", "0")
    entry("commit", t, "teams/a", {"credits": "0"}, "r6")
    q.quiet("QUOTA.COMMIT", "acme", "r6")  # a duplicate: no entry
    # Grants, a revoke, a reset.
    q.advance(5)
    t += 5
    q("QUOTA.GRANT", "acme", "/", "monthly", "50", "ID", "g1", "NOTE", "promo")
    entry("grant", t, "/", {"credits": "50"}, "g1", policy="monthly")
    q("QUOTA.REVOKE", "acme", "/", "monthly", "g1")
    entry("revoke", t, "/", {"credits": "50"}, "g1", policy="monthly")
    used = next(p["used"] for p in q("QUOTA.GET", "acme", "/")["policies"] if p["policy"] == "monthly")
    q("QUOTA.RESET", "acme", "/", "monthly")
    entry("reset", t, "/", {"credits": used}, policy="monthly")
    check(Decimal(used) == Decimal("20.35"), f"{q.backend}: the period closed by the reset used 20.35 credits", used)

    other = []
    q("QUOTA.CHARGE", "{t1}acme", "PATH", "p", "ID", "x1", "META", "user", "u9", "COST", "credits", "0.000001")
    other.append({"type": "charge", "time": t, "id": "x1", "paths": "p", "service": None, "model": None,
                  "item": None, "policy": None, "amounts": {"credits": "0.000001"}, "late": False,
                  "disallowed": False, "meta": {"user": "u9"}})
    return {"{acme}:ledger": want, "{t1}acme:ledger": other}


def entry_as_row(fields):
    """A stream entry's fields as the row the exporter must write."""
    amounts = {k[7:]: v for k, v in fields.items() if k.startswith("amount:")}
    meta = {k[5:]: v for k, v in fields.items() if k.startswith("meta:")}
    return {"type": fields.get("type"), "time": int(fields["time"]), "id": fields.get("id"),
            "paths": fields.get("paths"), "service": fields.get("service"), "model": fields.get("model"),
            "item": int(fields["item"]) if "item" in fields else None, "policy": fields.get("policy"),
            "amounts": amounts, "late": fields.get("late") == "1", "disallowed": fields.get("disallowed") == "1",
            "meta": meta or None}


FIELD_ORDER = ["type", "time", "id", "paths", "service", "model", "item", "policy", "amount:", "late",
               "disallowed", "meta:"]


def field_rank(name):
    return FIELD_ORDER.index(name.split(":")[0] + ":" if ":" in name else name)


# ----- the cases -------------------------------------------------------------------

def backend_cases(q, dbs):
    b = q.backend
    q.r.execute_command("ACL", "SETUSER", "ledger-export", "reset", *ACCOUNT)
    want = drive(q)
    for stream, entries in want.items():
        got = q.r.xrange(stream)
        check([entry_as_row(f) for _, f in got] == entries, f"{b}: {stream} holds the {len(entries)} entries "
              "the commands wrote, field by field", f"\n      got  {[entry_as_row(f) for _, f in got]}"
              f"\n      want {entries}")
        names = [list(f) for _, f in got]
        check(all([field_rank(n) for n in ns] == sorted(field_rank(n) for n in ns) for ns in names),
              f"{b}: {stream}: fields come in the design's order", names)
    for name, db in dbs.items():
        code, err = export(q, db, f"g-{name}")
        check(code == 0, f"{b}/{name}: the exporter drains both streams and exits 0 (--once)", err)
        got = rows(db)
        for stream, entries in want.items():
            ids = [eid for eid, _ in q.r.xrange(stream)]
            mine = [r for r in got if r["stream"] == stream]
            check([r["entry_id"] for r in mine] == ids, f"{b}/{name}: one row per entry of {stream}, keyed by its id")
            plain = [{k: v for k, v in r.items() if k not in ("stream", "entry_id")} for r in mine]
            check(plain == entries, f"{b}/{name}: every row of {stream} is its entry: type, time, ids, paths, "
                  "amounts as decimal strings, late, disallowed, META", f"\n      got  {plain}\n      want {entries}")
        exact_copy(q, db, f"g-{name}", f"{b}/{name}: nothing pending after the export")
        lag = [g["lag"] for s in STREAMS for g in q.r.xinfo_groups(s) if g["name"] == f"g-{name}"]
        check(lag == [0, 0], f"{b}/{name}: the group has read everything (lag 0)", str(lag))
        code, err = export(q, db, f"g-{name}")
        check(code == 0 and len(rows(db)) == len(got), f"{b}/{name}: a second run adds nothing", err)
        if name == "postgres":
            import psycopg

            with psycopg.connect(db) as conn:
                total = conn.execute("SELECT sum((amounts->>'credits')::numeric) FROM quota_ledger "
                                     "WHERE stream = '{acme}:ledger' AND type IN ('commit', 'charge')").fetchone()[0]
                kinds = conn.execute("SELECT DISTINCT jsonb_typeof(value) FROM quota_ledger, "
                                     "jsonb_each(amounts)").fetchall()
                user = conn.execute("SELECT entry_id FROM quota_ledger WHERE meta->>'user' = 'u2'").fetchall()
            check(total + 1 == Decimal("20.35"), f"{b}/postgres: commits and charges sum to the reset's 20.35 as "
                  "NUMERIC (+1 charged before the ledger was on)", str(total))
            check(kinds == [("string",)], f"{b}/postgres: amounts are JSON strings, never numbers", str(kinds))
            check(len(user) == 1, f"{b}/postgres: META is queryable (meta->>'user')")

    # Crashes. Fresh entries on both trees, then each database in turn.
    with q.r.pipeline(transaction=False) as p:
        for i in range(400):
            tree = TREES[i % 7 == 0]
            args = ["QUOTA.CHARGE", tree, "PATH", f"load/u{i % 13}", "ID", f"load-{i}", "SERVICE", "chat",
                    "META", "n", str(i), "COST", "credits", f"0.{i:03d}"]
            p.execute_command(*(lua_command(args) if b == "lua" else args))
        p.execute()
    for name, db in dbs.items():
        group = f"g-{name}"
        before = len(rows(db))
        code, _ = export(q, db, group, batch=40, crash=("before-ack", 3))
        left = [(s, e["message_id"]) for s in STREAMS for e in q.r.xpending_range(s, group, "-", "+", 1000)]
        in_db = {(r["stream"], r["entry_id"]) for r in rows(db)}
        check(code == 9 and left and set(left) <= in_db,
              f"{b}/{name}: a crash after the commit, before XACK, leaves the batch written and pending",
              f"exit {code}, {len(left)} pending, {len(set(left) - in_db)} of them not written")
        code, err = export(q, db, group, batch=40)
        exact_copy(q, db, group, f"{b}/{name}: the same consumer's rerun writes the pending batch again: "
                   "no duplicate, no gap")
        check(code == 0 and len(rows(db)) == before + 400, f"{b}/{name}: all 400 new entries are there", err)

    with q.r.pipeline(transaction=False) as p:
        for i in range(300):
            args = ["QUOTA.CHARGE", TREES[i % 2], "PATH", "more", "META", "n", str(i), "COST", "tokens", "1"]
            p.execute_command(*(lua_command(args) if b == "lua" else args))
        p.execute()
    for name, db in dbs.items():
        group = f"g-{name}"
        code, _ = export(q, db, group, batch=30, crash=("mid-write", 4))
        left = [(s, e["message_id"]) for s in STREAMS for e in q.r.xpending_range(s, group, "-", "+", 1000)]
        in_db = {(r["stream"], r["entry_id"]) for r in rows(db)}
        check(code == 9 and left and not set(left) & in_db,
              f"{b}/{name}: a crash in the middle of a batch leaves none of it written, all of it pending",
              f"exit {code}, {len(left)} pending, {len(set(left) & in_db)} of them written")
        code, err = export(q, db, group, consumer="c2", batch=30)
        check(code == 0 and pending(q, group) > 0, f"{b}/{name}: another consumer leaves a live one's entries "
              "alone (--claim-idle 60000)", err)
        code, err = export(q, db, group, consumer="c2", batch=30, extra=("--once", "--claim-idle", "0"))
        exact_copy(q, db, group, f"{b}/{name}: another consumer takes the dead one's entries over (XAUTOCLAIM): "
                   "no duplicate, no gap")

    # kill -9 while it runs, then SIGTERM.
    for name, db in dbs.items():
        group = f"g-{name}"
        with q.r.pipeline(transaction=False) as p:
            for i in range(1500):
                args = ["QUOTA.CHARGE", TREES[i % 3 == 0], "PATH", "kill", "COST", "credits", "0.5"]
                p.execute_command(*(lua_command(args) if b == "lua" else args))
            p.execute()
        before = count(db)
        todo = sum(q.r.xlen(s) for s in STREAMS) - before
        # Slowed down (5 ms a batch of 5) so that the kill lands part way.
        proc = subprocess.Popen([sys.executable, "-c", CRASHING, "slow", "5"] + exporter_args(q, db, group, batch=5),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 30
        while time.time() < deadline and count(db) < before + 200:
            time.sleep(0.01)
        proc.kill()
        proc.communicate()
        partial = count(db) - before
        check(200 <= partial < todo, f"{b}/{name}: kill -9 stops the exporter part way ({partial} of {todo} written)")
        code, err = export(q, db, group, batch=50)
        exact_copy(q, db, group, f"{b}/{name}: the rerun after kill -9: no duplicate, no gap")

        proc = subprocess.Popen([sys.executable, EXPORTER] + exporter_args(q, db, group, batch=50),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        q("QUOTA.CHARGE", "acme", "PATH", "term", "META", "n", f"last-{name}", "COST", "credits", "1")
        deadline = time.time() + 20
        while time.time() < deadline and not any(r["meta"] == {"n": f"last-{name}"} for r in rows(db)):
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        check(proc.returncode == 0 and "exported" in err, f"{b}/{name}: a running exporter (blocked in XREADGROUP) "
              "exports a new entry at once and ends cleanly on SIGTERM", f"exit {proc.returncode}: {err}")
        exact_copy(q, db, group, f"{b}/{name}: nothing pending after SIGTERM")

    # Entries trimmed before an export are reported, not silently skipped.
    q.ledger_len(10)
    for i in range(300):
        q("QUOTA.CHARGE", "acme", "PATH", "trim", "COST", "credits", "1")
    db = next(iter(dbs.values()))
    info = q.r.xinfo_stream("{acme}:ledger")
    lost = info["entries-added"] - info["length"]
    code, err = export(q, db, "g-late")
    reported = f"{{acme}}:ledger: {lost} entries before" in err and "{t1}acme:ledger: " not in err
    check(code == 0 and lost > 0 and reported,
          f"{b}: the {lost} entries trimmed (ledger_len 10) before a new group read them are reported", err)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=["module", "lua", "both"], default="both")
    ap.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    args = ap.parse_args()
    t0 = time.time()
    workdir = tempfile.mkdtemp(prefix="quota_ledger_")
    atexit.register(shutil.rmtree, workdir, True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # atexit stops the servers
    pg = Postgres(workdir) if args.db in ("postgres", "both") else None
    for backend in (["module", "lua"] if args.backend == "both" else [args.backend]):
        q = Quota(workdir, backend)
        dbs = {}
        if args.db in ("sqlite", "both"):
            dbs["sqlite"] = os.path.join(workdir, f"{backend}.sqlite3")
        if pg:
            dbs["postgres"] = pg.create(f"ledger_{backend}")
        try:
            backend_cases(q, dbs)
        finally:
            q.stop()
    if pg:
        pg.stop()
    print(f"ledger_export: {time.time() - t0:.1f}s")
    print(f"{passed} passed, {len(failed)} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
