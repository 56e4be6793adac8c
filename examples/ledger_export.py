#!/usr/bin/env python3
"""Export quota's ledger to a database: SQLite (a file) or PostgreSQL.

With `ledger_len` > 0 (module: `CONFIG SET quota.ledger_len N`; Lua library:
`quota-load --set ledger_len=N`) every commit, charge, release, expiry, grant,
revoke and reset of a tree appends one entry to a Redis Stream in the tree's
slot: `{acme}:ledger` for the tree `acme`, `{t1}acme:ledger` for a key that
has a hash tag already. This program reads those streams with a consumer group
and writes one row per entry:

    python3 examples/ledger_export.py --tree acme --tree other       # ledger.sqlite3
    python3 examples/ledger_export.py --tree acme --db postgresql://user@host/billing
    python3 examples/ledger_export.py --tree acme --once              # drain and exit (cron)

Delivery is at least once, and the rows are written exactly once:
  * the table's key is (stream, entry_id) and rows go in with
    INSERT ... ON CONFLICT DO NOTHING, in one transaction per batch;
  * an entry is acknowledged (XACK) only after that transaction committed.
    A crash before the commit leaves nothing in the database and the entries
    pending; a crash after the commit and before XACK leaves them pending too,
    and writing them again changes nothing;
  * at start, the entries pending for this consumer are written first (XREADGROUP
    from 0), then those another consumer left pending for longer than
    --claim-idle ms (XAUTOCLAIM: a consumer that died), then new ones (`>`).
    So keep --consumer stable across restarts (the default is the host name) and
    give two exporters running at once different names.

An entry trimmed from the stream (MAXLEN ~ ledger_len) before it was exported is
lost to the export: the program says so on stderr, with how many (the stream's
first entry is past the group's last-delivered-id; XINFO's entries-added and
entries-read count them). Size ledger_len for the longest time the exporter may
be down.

Table `quota_ledger`: stream, entry_id, type, time (ms), id, paths (display
paths joined by `,`), service, model, item, policy, amounts (JSON object:
metric -> decimal string, exact, never a float), late, disallowed, meta (JSON
object of the request's META pairs, or NULL). On PostgreSQL amounts and meta
are jsonb (which does not keep the order of META names), late and disallowed
booleans. PostgreSQL needs psycopg 3 (`pip install "psycopg[binary]"`).

An account that may do this and nothing else (one ~pattern per tree's ledger):

    ACL SETUSER ledger-export on >secret resetchannels ~{acme}:ledger -@all
        +xgroup|create +xreadgroup +xautoclaim +xack +xinfo|stream +xinfo|groups

SIGTERM or SIGINT: the batch in hand is finished (committed and acknowledged),
then the program exits 0. Several trees are read with one XREADGROUP, which on
a cluster needs them in one slot: there, run one exporter per tree (or per
node with trees that share a hash tag).
"""

import argparse
import json
import signal
import socket
import sqlite3
import sys
import time

import redis

COLUMNS = ("stream", "entry_id", "type", "time", "id", "paths", "service", "model", "item", "policy",
           "amounts", "late", "disallowed", "meta")
TEXT_FIELDS = ("type", "id", "paths", "service", "model", "policy")
KNOWN = set(TEXT_FIELDS) | {"time", "item", "late", "disallowed"}

SQLITE_TABLE = """CREATE TABLE IF NOT EXISTS quota_ledger (
    stream TEXT NOT NULL, entry_id TEXT NOT NULL, type TEXT, time INTEGER, id TEXT, paths TEXT,
    service TEXT, model TEXT, item INTEGER, policy TEXT, amounts TEXT NOT NULL,
    late INTEGER NOT NULL, disallowed INTEGER NOT NULL, meta TEXT,
    PRIMARY KEY (stream, entry_id))"""
POSTGRES_TABLE = """CREATE TABLE IF NOT EXISTS quota_ledger (
    stream text NOT NULL, entry_id text NOT NULL, type text, time bigint, id text, paths text,
    service text, model text, item integer, policy text, amounts jsonb NOT NULL,
    late boolean NOT NULL, disallowed boolean NOT NULL, meta jsonb,
    PRIMARY KEY (stream, entry_id))"""


def ledger_key(tree):
    """The ledger stream of a tree key, in the tree's slot: a key with a hash
    tag (a `{`, then the first `}` after it, something between) gets
    `<key>:ledger`, any other key `{<key>}:ledger`."""
    start = tree.find("{")
    if start >= 0:
        end = tree.find("}", start + 1)
        if end > start + 1:
            return tree + ":ledger"
    return "{" + tree + "}:ledger"


def to_int(text):
    return int(text) if text is not None and text.lstrip("-").isdigit() else None


def to_row(stream, entry_id, fields, unknown):
    """One ledger entry (its fields as a dict, in stream order) as a row.
    Amounts stay the decimal strings the entry carries."""
    amounts, meta = {}, {}
    for name, value in fields.items():
        if name.startswith("amount:"):
            amounts[name[len("amount:"):]] = value
        elif name.startswith("meta:"):
            meta[name[len("meta:"):]] = value
        elif name not in KNOWN and name not in unknown:
            unknown.add(name)
            log(f"field '{name}' of {stream} (first at {entry_id}) has no column: not exported")
    row = {"stream": stream, "entry_id": entry_id, "time": to_int(fields.get("time")),
           "item": to_int(fields.get("item")), "amounts": json.dumps(amounts, ensure_ascii=False),
           "late": fields.get("late") == "1", "disallowed": fields.get("disallowed") == "1",
           "meta": json.dumps(meta, ensure_ascii=False) if meta else None}
    row.update({name: fields.get(name) for name in TEXT_FIELDS})
    return tuple(row[c] for c in COLUMNS)


class Database:
    """The table, in SQLite (a file path) or PostgreSQL (a postgresql:// URL)."""

    def __init__(self, target):
        self.postgres = target.startswith(("postgresql://", "postgres://"))
        if self.postgres:
            import psycopg  # only needed for PostgreSQL

            self.conn = psycopg.connect(target)
            values = ", ".join("%s::jsonb" if c in ("amounts", "meta") else "%s" for c in COLUMNS)
            table = POSTGRES_TABLE
        else:
            self.conn = sqlite3.connect(target)
            values = ", ".join("?" for _ in COLUMNS)
            table = SQLITE_TABLE
        self.insert = (f"INSERT INTO quota_ledger ({', '.join(COLUMNS)}) VALUES ({values}) "
                       "ON CONFLICT (stream, entry_id) DO NOTHING")
        self.conn.execute(table)
        self.conn.commit()

    def write(self, rows):
        """All rows in one transaction; returns once it has committed."""
        cur = self.conn.cursor()
        try:
            cur.executemany(self.insert, rows)
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        finally:
            cur.close()

    def close(self):
        self.conn.close()


def log(message):
    print(f"ledger_export: {message}", file=sys.stderr, flush=True)


class Exporter:
    def __init__(self, r, db, trees, group, consumer, batch, claim_idle):
        self.r, self.db = r, db
        self.streams = list(dict.fromkeys(ledger_key(t) for t in trees))
        self.group, self.consumer = group, consumer
        self.batch, self.claim_idle = batch, claim_idle
        self.stopping = False
        self.exported = 0
        self.unknown = set()
        self.trim_warned = {}  # stream -> its first entry when a loss was last reported

    def setup(self):
        """The group on each stream, from its first entry; MKSTREAM creates an
        empty stream when the tree has not written its ledger yet."""
        for stream in self.streams:
            try:
                self.r.xgroup_create(stream, self.group, id="0", mkstream=True)
            except redis.ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise

    def store(self, batch):
        """Write a batch, [(stream, [(id, fields), ...]), ...], in one
        transaction, then acknowledge it. An entry without fields was deleted
        from the stream while it was pending."""
        rows = []
        for stream, entries in batch:
            rows += [to_row(stream, eid, fields, self.unknown) for eid, fields in entries if fields]
            lost = [eid for eid, fields in entries if not fields]
            if lost:
                log(f"{len(lost)} pending entries of {stream} were trimmed before export: {lost[0]} …")
        if rows:
            self.db.write(rows)
        for stream, entries in batch:
            if entries:
                self.ack(stream, [eid for eid, _ in entries])
        self.exported += len(rows)
        return sum(len(entries) for _, entries in batch)

    def ack(self, stream, ids):
        self.r.xack(stream, self.group, *ids)

    def recover(self):
        """Entries delivered before but never acknowledged: this consumer's own
        (a restart), then other consumers' idle ones (a consumer that died)."""
        for stream in self.streams:
            after = "0"
            while not self.stopping:
                reply = self.r.xreadgroup(self.group, self.consumer, {stream: after}, count=self.batch)
                entries = reply[0][1] if reply else []
                if not entries:
                    break
                self.store([(stream, entries)])
                after = entries[-1][0]
            cursor = "0-0"
            while not self.stopping:
                cursor, entries, deleted = self.r.xautoclaim(stream, self.group, self.consumer, self.claim_idle,
                                                             cursor, count=self.batch)[:3]
                if deleted:
                    log(f"{len(deleted)} entries of {stream} another consumer left pending were trimmed "
                        f"before export: {deleted[0]} …")
                self.store([(stream, entries)])
                if cursor == "0-0":
                    break

    def check_trimmed(self):
        """Say so when entries were trimmed before this group read them:
        trimming removes the oldest entries, so that happened when the first
        entry left is past the group's last-delivered-id and the stream had
        more entries than it holds. The stream is read before the group (whose
        counters only grow), so a report is never a race."""
        for stream in self.streams:
            info = self.r.xinfo_stream(stream)
            first = (info.get("first-entry") or [None])[0]
            group = next(g for g in self.r.xinfo_groups(stream) if g["name"] == self.group)
            delivered, read = group["last-delivered-id"], group.get("entries-read")
            if first is None or stream_id(first) <= stream_id(delivered) or self.trim_warned.get(stream) == first:
                continue
            added, length = info.get("entries-added"), info["length"]
            if added is None:  # before Redis 7
                continue
            lost = added - length if delivered == "0-0" else None if read is None else added - read - length
            if lost is None or lost > 0:
                self.trim_warned[stream] = first
                log(f"{stream}: {lost or 'some'} entries before {first} were trimmed before this group read them: "
                    "they are not exported (raise ledger_len, or run the exporter more often)")

    def step(self, block):
        """One XREADGROUP of new entries; returns how many arrived."""
        self.check_trimmed()
        reply = self.r.xreadgroup(self.group, self.consumer, {s: ">" for s in self.streams},
                                  count=self.batch, block=block)
        return self.store(reply or [])

    def run(self, once):
        self.setup()
        self.recover()
        last_claim = time.monotonic()
        while not self.stopping:
            got = self.step(None if once else 1000)
            if once and not got:
                break
            if not once and time.monotonic() - last_claim > max(self.claim_idle / 2000, 1):
                self.recover()
                last_claim = time.monotonic()


def stream_id(text):
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--redis", default="redis://127.0.0.1:6379", help="the server holding the trees")
    ap.add_argument("--tree", action="append", required=True, help="a tree key (repeat for more trees)")
    ap.add_argument("--db", default="ledger.sqlite3", help="a SQLite file, or a postgresql:// URL")
    ap.add_argument("--group", default="ledger-export", help="the consumer group (one per destination)")
    ap.add_argument("--consumer", default=socket.gethostname(), help="this consumer's name, stable across restarts")
    ap.add_argument("--batch", type=int, default=100, help="entries per stream per read; one read is one transaction")
    ap.add_argument("--claim-idle", type=int, default=60000,
                    help="take over entries another consumer left pending this many ms")
    ap.add_argument("--once", action="store_true", help="export what is there, then exit")
    args = ap.parse_args(argv)
    if args.batch < 1 or args.claim_idle < 0:
        ap.error("--batch must be positive and --claim-idle not negative")

    stopping = []

    def stop(signum, _frame):
        stopping.append(signum)
        if exporter:
            exporter.stopping = True

    exporter = None
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    r = redis.Redis.from_url(args.redis, decode_responses=True)
    db = Database(args.db)
    exporter = Exporter(r, db, args.tree, args.group, args.consumer, args.batch, args.claim_idle)
    exporter.stopping = bool(stopping)
    backoff = 1
    try:
        while True:
            try:
                exporter.run(args.once)
                break
            except (redis.ConnectionError, redis.TimeoutError) as e:
                if args.once or exporter.stopping:
                    raise
                log(f"redis: {e}; again in {backoff} s")  # pending entries are read again after this
                time.sleep(backoff)
                backoff = min(backoff * 2, 30)
    finally:
        db.close()
    log(f"{exporter.exported} entries exported from {', '.join(exporter.streams)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
