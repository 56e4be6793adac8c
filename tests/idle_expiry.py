#!/usr/bin/env python3
"""A hold on an idle tree expires on time: its `expired` event is stored
(QUOTA.EVENTS) and published on quota:events:<key> with no command on the
tree. The module's timer does it; on the Lua library (QUOTA_BACKEND=lua)
`quota-load --sweep --once` does, called here as its loop would.

    idle_expiry.py clock --port P          one server with the test clock:
                                           the clock moves, nothing else
    idle_expiry.py cluster --ports A,B,C   three primaries, real time: trees
                                           on every node expire; each index
                                           key shares its trees' slot

Run by tests/scenarios/29_idle_expiry.redis. Exit 0 when every check holds.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

import redis

from backend import BACKEND, Cluster, Redis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOADER = os.path.join(ROOT, "target", "release", "quota-load")

failures = []


def check(ok, what, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'}  {what}" + ("" if ok else f"\n      {detail}"))
    if not ok:
        failures.append(what)


def sweep(urls, cluster=False):
    """One pass of the Lua library's companion (nothing on the module)."""
    if BACKEND != "lua":
        return ""
    args = [LOADER, "--sweep", "--once"] + (["--cluster"] if cluster else []) + urls
    res = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise SystemExit(f"quota-load --sweep --once failed: {res.stdout}{res.stderr}")
    return res.stdout


def subscribe(client, channels):
    pubsub = client.pubsub()
    pubsub.subscribe(*channels)
    deadline = time.time() + 5
    confirmed = 0
    while time.time() < deadline and confirmed < len(channels):
        message = pubsub.get_message(timeout=1)
        if message and message["type"] == "subscribe":
            confirmed += 1
    return pubsub


def expired_events(pubsub, want, deadline, poke=None):
    """Messages of type `expired` until `want` arrived or the deadline;
    `poke` runs between reads (a sweep pass)."""
    got = []
    while time.time() < deadline and len(got) < want:
        if poke:
            poke()
        message = pubsub.get_message(timeout=0.2)
        while message:
            if message["type"] == "message":
                event = json.loads(message["data"])
                if event.get("type") == "expired":
                    got.append(event)
            message = pubsub.get_message(timeout=0)
    return got


def clock_case(port):
    r = Redis(port=port, decode_responses=True)
    url = f"redis://127.0.0.1:{port}"
    pubsub = subscribe(r, ["quota:events:idle"])
    r.execute_command("QUOTA.SET", "idle", "/", "cap", "METRIC", "credits", "LIMIT", "100")
    r.execute_command("QUOTA.DEBUG", "CLOCK", "SET", "1700000000000")
    hold = r.execute_command("QUOTA.RESERVE", "idle", "PATH", "a/b", "COST", "credits", "7", "TTL", "1000")
    hold = dict(zip(hold[::2], hold[1::2])) if isinstance(hold, list) else hold
    hold_id = hold["id"]

    out = sweep([url])
    none_yet = expired_events(pubsub, 1, time.time() + 0.3)
    check(not none_yet, "nothing expires before the TTL, sweep or not", f"{none_yet} {out}")

    r.execute_command("QUOTA.DEBUG", "CLOCK", "ADVANCE", "1000")
    out = sweep([url])
    if BACKEND == "lua":
        check("1 holds expired" in out, "one sweep pass expires the due hold", out)
    got = expired_events(pubsub, 1, time.time() + 5)
    check(len(got) == 1 and got[0].get("id") == hold_id and got[0].get("tree") == "idle"
          and got[0].get("amounts") == {"credits": "7"} and got[0].get("time") == 1700000001000,
          "the expired event is published with no command on the tree", got)

    if BACKEND == "lua":
        # Stored, not only seen: the event list key holds it before any read.
        check(r.llen("{idle}quota:idle:events") == 1, "the sweep stored the event in the tree's event list")
        check(r.zcard("quota:due") == 0, "the tree left the index: it has no hold any more")
    events = r.execute_command("QUOTA.EVENTS", "idle")
    kinds = [dict(zip(e[::2], e[1::2])) if isinstance(e, list) else e for e in events]
    check([e.get("type") for e in kinds] == ["expired"] and kinds[0].get("id") == hold_id,
          "QUOTA.EVENTS has the expired event", kinds)
    usage = r.execute_command("QUOTA.GET", "idle", "/")
    check("'held', '0'" in str(usage) or "'held': '0'" in str(usage), "the hold no longer counts", usage)

    again = sweep([url])
    if BACKEND == "lua":
        check("0 holds expired" in again, "a second sweep finds nothing", again)
        # Bounded: COUNT above the bound is refused; the key must be an index.
        for args, text in ((["quota:due", "COUNT", "1001"], "syntax: COUNT must be an integer from 1 to 1000"),
                           (["idle"], "syntax: quota_sweep takes the index key")):
            try:
                r.execute_command("FCALL", "quota_sweep", "1", *args)
                check(False, f"quota_sweep {' '.join(args)} is refused")
            except redis.ResponseError as e:
                check(str(e).startswith(text), f"quota_sweep {' '.join(args)} is refused", str(e))
        bound_case(r)
        lost_index_case(r, url)


def lost_index_case(r, url):
    """Lua: a tree the index of due trees lost (restored from a DUMP on
    another server, or the index deleted by hand) is indexed again by its
    next write, even one that leaves its first due time as it was, so the
    sweep expires it with no further command on the tree."""
    r.execute_command("QUOTA.SET", "moved", "/", "cap", "METRIC", "credits", "LIMIT", "100")
    now = int(r.execute_command("QUOTA.DEBUG", "CLOCK", "GET"))
    r.execute_command("QUOTA.RESERVE", "moved", "PATH", "a", "BRIEF", "TTL", "1000", "COST", "credits", "1")
    keys = ["moved"] + [k for k in r.keys("{moved}quota:moved:*")]
    dumps = {k: r.dump(k) for k in keys}
    r.delete(*keys, "quota:due")
    for k, blob in dumps.items():
        r.restore(k, 0, blob)
    # A later hold: the tree's first due time stays the first hold's.
    r.execute_command("QUOTA.RESERVE", "moved", "PATH", "a", "BRIEF", "TTL", "5000", "COST", "credits", "1")
    check(r.zscore("quota:due", "moved") == now + 1000, "the write indexes the restored tree again",
          r.zrange("quota:due", 0, -1, withscores=True))
    r.execute_command("QUOTA.DEBUG", "CLOCK", "ADVANCE", "2000")
    out = sweep([url])
    check(r.hlen("{moved}quota:moved:holds") == 1, "the sweep expires the restored tree's due hold", out)


def bound_case(r):
    """Lua: one quota_sweep call does at most SWEEP_MAX_HOLDS (1,000) units
    of work: released holds AND finished ids forgotten on the trees it opens
    count, so a call stays short however many ids ran out meanwhile."""
    r.execute_command("QUOTA.DEBUG", "CLOCK", "SET", "1800000000000")
    trees = ["bound1", "bound2"]
    for tree in trees:
        r.execute_command("QUOTA.SET", tree, "/", "cap", "METRIC", "credits", "LIMIT", "1000000")
        pipe = r.pipeline(transaction=False)
        for i in range(700):
            pipe.execute_command("QUOTA.CHARGE", tree, "PATH", "a", "ID", f"c{i}", "COST", "credits", "1")
        pipe.execute()
        # Due after the charges' ids are forgotten (TOMBSTONE_TTL, a day).
        r.execute_command("QUOTA.RESERVE", tree, "PATH", "a", "COST", "credits", "1", "TTL", "86400100")
    r.execute_command("QUOTA.DEBUG", "CLOCK", "ADVANCE", "86400200")
    done = [f"{{{t}}}quota:{t}:done" for t in trees]
    before = sum(r.hlen(k) for k in done)
    reply = r.execute_command("FCALL", "quota_sweep", "1", "quota:due", "COUNT", "1000")
    reply = dict(zip(reply[::2], reply[1::2]))
    # An expired hold's id is remembered: it adds one done entry.
    forgot = before + reply["expired"] - sum(r.hlen(k) for k in done)
    check(before == 1400 and reply["expired"] + forgot <= 1000,
          "one quota_sweep call releases and forgets at most 1,000 in all",
          f"{before} ids, {forgot} forgotten, {reply}")
    rounds = 0
    while reply["more"] and rounds < 10:
        reply = dict(zip(*[iter(r.execute_command("FCALL", "quota_sweep", "1", "quota:due"))] * 2))
        rounds += 1
    expired = [e for t in trees for e in r.execute_command("QUOTA.EVENTS", t)]
    check(len(expired) == 2 and r.zcard("quota:due") == 0, "the calls that follow finish the work",
          f"{expired} {r.zcard('quota:due')}")


def cluster_case(ports):
    nodes = [redis.Redis(port=p, decode_responses=True) for p in ports]
    c = Cluster(host="127.0.0.1", port=ports[0], decode_responses=True)
    trees = [f"t:idle{i}" for i in range(9)]  # t:*: the sweeper recipe's trees
    owners = {}
    for tree in trees:
        slot = nodes[0].execute_command("CLUSTER", "KEYSLOT", tree)
        owners[tree] = next(n for n in nodes if any(
            s[0] <= slot <= s[1] and int(s[2][1]) == n.connection_pool.connection_kwargs["port"]
            for s in n.execute_command("CLUSTER", "SLOTS")))
    check(len({id(n) for n in owners.values()}) == len(nodes), "the trees are spread over every primary")
    pubsub = subscribe(nodes[0], [f"quota:events:{t}" for t in trees])
    for tree in trees:
        c.execute_command("QUOTA.SET", tree, "/", "cap", "METRIC", "credits", "LIMIT", "10")
        c.execute_command("QUOTA.RESERVE", tree, "PATH", "x", "COST", "credits", "1", "TTL", "300")

    if BACKEND == "lua":
        # Each tree's index is in the tree's slot, on the tree's node.
        for tree in trees:
            owner = owners[tree]
            index = [k for k in owner.scan_iter(match="quota:due*")
                     if owner.zscore(k, tree) is not None]
            same = len(index) == 1 and (owner.execute_command("CLUSTER", "KEYSLOT", index[0])
                                        == owner.execute_command("CLUSTER", "KEYSLOT", tree))
            check(same, f"{tree}: its index key is in its slot", index)

    urls = [f"redis://127.0.0.1:{ports[0]}"]
    if BACKEND == "lua":
        # As lua/README.md runs it: with the sweeper account of its recipes.
        with open(os.path.join(ROOT, "lua", "README.md")) as f:
            line = next(x for x in f if x.startswith("ACL SETUSER sweeper "))
        rules = shlex.split(line)[3:]
        for node in nodes:
            node.execute_command("ACL", "SETUSER", "sweeper", "reset", *rules)
        password = next(r[1:] for r in rules if r.startswith(">"))
        urls = [f"redis://sweeper:{password}@127.0.0.1:{ports[0]}"]
    got = expired_events(pubsub, len(trees), time.time() + 10, poke=lambda: sweep(urls, cluster=True))
    check(sorted(e.get("tree") for e in got) == trees,
          "every idle tree on every primary publishes its expired event", got)
    for tree in trees:
        events = c.execute_command("QUOTA.EVENTS", tree)
        check(len(events) == 1, f"{tree}: QUOTA.EVENTS has the expired event", events)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("case", choices=["clock", "cluster"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--ports")
    args = parser.parse_args()
    if args.case == "clock":
        clock_case(args.port)
    else:
        cluster_case([int(p) for p in args.ports.split(",")])
    print(f"idle_expiry {args.case} ({BACKEND}): {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
