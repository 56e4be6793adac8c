#!/usr/bin/env python3
"""Checks that expiry and reads stay on the paths Redis allows, run by
tests/scenarios/20_expiry_timer.redis and 21_reads_eviction.redis
(`@python tests/quiet_paths.py <check> ...`). Each check exits 0 when every
guarantee held and prints what it saw.

  pause      holds come due while clients are paused (CLIENT PAUSE WRITE, then
             ALL): the primary stays up, replicates nothing during the pause,
             and expires them after it (module)
  failover   FAILOVER back and forth with holds coming due: both servers stay
             up and end equal (module, wall clock)
  backlog    more holds due at once than one tick's budget: each tick does at
             most the budget, the rest follows on later ticks (module)
  loader-eviction  quota-load refuses a server under maxmemory-policy
             allkeys-* unless --allow-eviction (either backend)
  watch      a read of a tree with a due hold keeps WATCH, sends no tracking
             invalidation, leaves the replication offset alone, and answers
             as a write at the same time would (both backends)
  label      a QUOTA.LABEL that changes nothing writes nothing: NOTE "" or
             TAGS "" on a missing key creates no key; the same note or tags
             again leave rdb_changes_since_last_save alone (both backends)
             and, on the Lua backend, WATCH (the module opens the key of
             every write command for writing, which touches a WATCH)
"""

import argparse
import sys
import time

import redis

from backend import BACKEND, FAILURES, Redis, as_map, check


def connect(port):
    return Redis(port=port, decode_responses=True, protocol=2)


def info_quota(r, field):
    return int(r.info("quota").get(f"quota_{field}", 0))


def poll(what, predicate, seconds=5.0):
    """Waits for an effect of the module's timer (never a fixed sleep)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if predicate():
                return True
        except redis.exceptions.ConnectionError:
            pass
        time.sleep(0.02)
    check(False, what)
    return False


def held(r, key, path="/"):
    node = as_map(r.execute_command("QUOTA.GET", key, path))
    return as_map(node["policies"][0])["held"]


def repl_offset(r):
    return int(r.info("replication")["master_repl_offset"])


# ----- pause ------------------------------------------------------------------

def pause(args):
    r, replica = connect(args.port), connect(args.replica_port)
    r.execute_command("QUOTA.SET", "t", "/", "cap", "METRIC", "credits", "LIMIT", "10")
    for mode in ("WRITE", "ALL"):
        r.execute_command("QUOTA.RESERVE", "t", "PATH", "a", "TTL", "200", "COST", "credits", "1")
        r.execute_command("WAIT", "1", "2000")
        paused_before = info_quota(r, "expire_paused_ticks")
        offset = repl_offset(r)
        # The clock moves and the pause starts in one transaction, so the
        # timer cannot expire the hold in between.
        pipe = r.pipeline(transaction=True)
        pipe.execute_command("QUOTA.DEBUG", "CLOCK", "ADVANCE", "300")
        pipe.execute_command("CLIENT", "PAUSE", "400", mode)
        pipe.execute()
        if mode == "WRITE":
            # Reads still run during a write pause, and show the hold expired.
            check(held(r, "t") == "0", "a read during the pause shows the due hold as not held")
            check(r.execute_command("QUOTA.HOLDS", "t") == [], "and does not list it")
            poll(f"a timer tick comes while clients are paused ({mode})",
                 lambda: info_quota(r, "expire_paused_ticks") > paused_before)
            check(repl_offset(r) == offset, "nothing is propagated during the pause")
            r.execute_command("CLIENT", "UNPAUSE")
        else:
            # Every client waits during CLIENT PAUSE ALL; this call returns
            # when it ends.
            check(r.ping(), f"the primary answers after CLIENT PAUSE {mode}")
            check(info_quota(r, "expire_paused_ticks") > paused_before,
                  "timer ticks came while clients were paused (ALL)")
        check(r.ping(), f"the primary is up after CLIENT PAUSE {mode}")
        poll(f"the hold expires after the pause ({mode}), on the primary",
             lambda: info_quota(r, "live_holds") == 0)
        poll(f"and on the replica ({mode})", lambda: held(replica, "t") == "0" and replica.execute_command(
            "QUOTA.HOLDS", "t") == [])
        r.execute_command("WAIT", "1", "2000")
        check(r.execute_command("DEBUG", "DIGEST-VALUE", "t") == replica.execute_command("DEBUG", "DIGEST-VALUE", "t"),
              f"primary and replica are equal after the pause ({mode})")
    print("holds due during CLIENT PAUSE WRITE and ALL: server up, expired after the pause, replica equal")
    return 0


# ----- failover ---------------------------------------------------------------

def role(r):
    return r.info("replication")["role"]


def failover(args):
    servers = [connect(args.port), connect(args.replica_port)]
    ports = [args.port, args.replica_port]
    primary = 0
    servers[0].execute_command("QUOTA.SET", "f", "/", "cap", "METRIC", "credits", "LIMIT", "1000000")
    for round_no in range(args.rounds):
        p, q = servers[primary], servers[1 - primary]
        # Holds coming due over the next moments, so some are due while
        # the failover pauses clients.
        for i in range(40):
            p.execute_command("QUOTA.RESERVE", "f", "PATH", f"r{round_no}", "TTL", str(20 + 10 * i),
                              "COST", "credits", "1")
        p.execute_command("WAIT", "1", "2000")
        p.execute_command("FAILOVER", "TO", "127.0.0.1", str(ports[1 - primary]), "TIMEOUT", "5000")
        poll(f"round {round_no}: the replica becomes primary", lambda: role(q) == "master")
        poll(f"round {round_no}: the old primary follows it", lambda: role(p) == "slave")
        check(p.ping() and q.ping(), f"round {round_no}: both servers are up after FAILOVER")
        primary = 1 - primary
    p, q = servers[primary], servers[1 - primary]
    poll("the holds expire on the new primary", lambda: info_quota(p, "live_holds") == 0)
    p.execute_command("WAIT", "1", "2000")
    check(p.execute_command("DEBUG", "DIGEST-VALUE", "f") == q.execute_command("DEBUG", "DIGEST-VALUE", "f"),
          "both servers hold the same tree")
    print(f"{args.rounds} failovers with holds coming due: both servers up, trees equal")
    return 0


# ----- backlog ----------------------------------------------------------------

def backlog(args):
    r = connect(args.port)
    holds = args.holds
    r.execute_command("QUOTA.SET", "big", "/", "cap", "METRIC", "credits", "LIMIT", str(holds * 2))
    pipe = r.pipeline(transaction=False)
    for i in range(holds):
        pipe.execute_command("QUOTA.RESERVE", "big", "PATH", f"u{i % 50}", "TTL", "1000", "BRIEF",
                             "COST", "credits", "1")
        if i % 2000 == 1999:
            pipe.execute()
    pipe.execute()
    check(info_quota(r, "live_holds") >= holds, f"{holds} holds are live")
    deferred = info_quota(r, "expire_deferred_ticks")
    expired = info_quota(r, "expired_holds")
    r.execute_command("QUOTA.DEBUG", "CLOCK", "ADVANCE", "1000")
    poll("every hold expires, tick after tick", lambda: info_quota(r, "live_holds") == 0, seconds=30)
    check(info_quota(r, "expired_holds") - expired == holds, "each hold expired once")
    most = info_quota(r, "expire_tick_max")
    check(0 < most <= args.budget, f"one tick expired at most the budget ({most} <= {args.budget})")
    ticks = info_quota(r, "expire_deferred_ticks") - deferred
    check(ticks >= holds // args.budget - 1, f"the rest was continued on later ticks ({ticks} ticks left work)")
    events = r.execute_command("QUOTA.EVENTS", "big", "COUNT", "1")
    check(len(events) == 1, "the tree still answers")
    print(f"{holds} holds due at once: at most {most} per tick, {ticks} ticks continued the work")
    return 0


# ----- watch ------------------------------------------------------------------

def watch(args):
    r = connect(args.port)
    r.execute_command("QUOTA.SET", "w", "/", "cap", "METRIC", "credits", "LIMIT", "10")
    # A grant that expires with the due hold, and one that lasts.
    now = int(r.execute_command("QUOTA.DEBUG", "CLOCK", "GET"))
    r.execute_command("QUOTA.GRANT", "w", "/", "cap", "5", "ID", "soon", "EXPIRES", str(now + 100))
    r.execute_command("QUOTA.GRANT", "w", "/", "cap", "7", "ID", "kept")
    due = as_map(r.execute_command("QUOTA.RESERVE", "w", "PATH", "a", "TTL", "100", "COST", "credits", "3"))
    r.execute_command("QUOTA.RESERVE", "w", "PATH", "a", "TTL", "60000", "COST", "credits", "2")
    events_before = r.execute_command("QUOTA.EVENTS", "w")
    module = BACKEND == "module"
    # Tracking: invalidations for keys the watcher reads go to `inv`.
    inv = redis.Connection(port=args.port, decode_responses=True)
    inv.send_command("CLIENT", "ID")
    inv_id = inv.read_response()
    inv.send_command("SUBSCRIBE", "__redis__:invalidate")
    inv.read_response()
    watcher = connect(args.port)
    with watcher.pipeline(transaction=True) as pipe:
        pipe.watch("w")
        pipe.execute_command("CLIENT", "TRACKING", "on", "REDIRECT", str(inv_id))
        pipe.execute_command("QUOTA.GET", "w", "/")  # the key is now tracked
        offset = repl_offset(r) if module else None
        # The test clock moves and writes pause in one transaction, so the
        # module's timer cannot expire the hold before the read.
        p2 = r.pipeline(transaction=True)
        p2.execute_command("QUOTA.DEBUG", "CLOCK", "ADVANCE", "100")
        p2.execute_command("CLIENT", "PAUSE", "3000", "WRITE")
        p2.execute()
        try:
            node = as_map(pipe.execute_command("QUOTA.GET", "w", "/"))
            policy = as_map(node["policies"][0])
            check(policy["held"] == "2" and policy["remaining"] == "15" and policy["granted"] == "7",
                  f"a read shows the due hold as not held and the due grant gone "
                  f"(held {policy['held']}, remaining {policy['remaining']}, granted {policy['granted']})")
            tree = as_map(pipe.execute_command("QUOTA.TREE", "w"))
            check(as_map(tree["policies"][0])["held"] == "2", "QUOTA.TREE agrees")
            listed = [as_map(h)["id"] for h in pipe.execute_command("QUOTA.HOLDS", "w")]
            check(due["id"] not in listed and len(listed) == 1, "QUOTA.HOLDS leaves the due hold out")
            pipe.execute_command("QUOTA.HISTORY", "w", "/", "cap")
            grants = [as_map(g)["id"] for g in pipe.execute_command("QUOTA.GRANTS", "w", "/", "cap")]
            check(grants == ["kept"], f"QUOTA.GRANTS leaves the due grant out ({grants})")
            events = pipe.execute_command("QUOTA.EVENTS", "w")
            shown = [as_map(e) for e in events[len(events_before):]]
            check(len(shown) == 1 and shown[0]["type"] == "expired" and shown[0]["id"] == due["id"],
                  "QUOTA.EVENTS shows the expired event a write would log")
            if module:
                check(repl_offset(r) == offset, "reads propagate nothing (replication offset unchanged)")
            pipe.multi()
            pipe.execute_command("QUOTA.GET", "w", "/")
            result = pipe.execute()
            check(result is not None and len(result) == 1, "MULTI/EXEC after the reads succeeds: WATCH holds")
        except redis.exceptions.WatchError:
            check(False, "MULTI/EXEC after the reads succeeds: WATCH holds")
        finally:
            # Before the pause ends (then the timer may expire the hold,
            # which is a write and invalidates).
            # Servers that track the keys a script reads (Valkey) also track
            # the Lua library's test clock, `quota:clock`, which the test
            # itself moved: only the tree's keys matter here.
            invalidated = []
            while inv.can_read(timeout=0.3):
                message = inv.read_response()
                keys = message[2] if isinstance(message, list) and len(message) == 3 else [message]
                invalidated += [k for k in (keys or []) if k != "quota:clock"]
            check(not invalidated, f"no client-tracking invalidation was sent by the reads ({invalidated})")
            r.execute_command("CLIENT", "UNPAUSE")
    inv.disconnect()
    # The next write stores the expiry: the event the read showed, with its seq.
    r.execute_command("QUOTA.CHARGE", "w", "PATH", "a", "COST", "credits", "1")
    stored = [as_map(e) for e in r.execute_command("QUOTA.EVENTS", "w")][len(events_before):]
    check(stored[:1] == shown[:1], "the write stores the very event the read showed")
    print("reads of a due hold: WATCH kept, no invalidation, nothing propagated, same answer as a write")
    return 0


# ----- label ------------------------------------------------------------------------

def label(args):
    """QUOTA.LABEL answers the labels it leaves; one that changes nothing
    writes nothing (the module's rule, review F6), so a WATCH holds and no
    key appears."""
    r = connect(args.port)
    r.delete("lq")
    empty = {"path": "/", "note": None, "tags": []}
    for words in (["NOTE", ""], ["TAGS", ""], ["NOTE", "", "TAGS", ""]):
        got = as_map(r.execute_command("QUOTA.LABEL", "lq", "/", *words))
        check(got == empty, f"LABEL lq / {words} on a missing key answers {empty} ({got})")
        check(not r.exists("lq"), f"LABEL lq / {words} on a missing key creates no key")
    r.execute_command("QUOTA.LABEL", "lq", "a", "NOTE", "n", "TAGS", "x,y")
    r.execute_command("QUOTA.SET", "lq", "b", "cap", "METRIC", "credits", "LIMIT", "10")
    watcher = connect(args.port)

    def quiet(path, words):
        """Whether LABEL lq path words left the dirty count alone and, on
        the Lua backend, WATCH. (The module opens the key of every write
        command for writing, and Redis touches a WATCH of a key a module
        opened so, changed or not.)"""
        dirty = int(r.info("persistence")["rdb_changes_since_last_save"])
        with watcher.pipeline(transaction=True) as pipe:
            pipe.watch("lq")
            r.execute_command("QUOTA.LABEL", "lq", path, *words)
            pipe.multi()
            pipe.execute_command("PING")
            try:
                pipe.execute()
                kept = True
            except redis.exceptions.WatchError:
                kept = False
        return (kept or BACKEND == "module") and int(r.info("persistence")["rdb_changes_since_last_save"]) == dirty

    for path, words in (("a", ["NOTE", "n"]), ("a", ["TAGS", "y,x"]), ("a", ["NOTE", "n", "TAGS", "x,y,x"]),
                        ("b", ["NOTE", ""]), ("b", ["TAGS", ""]), ("/", ["NOTE", "", "TAGS", ""])):
        check(quiet(path, words), f"LABEL lq {path} {words}, which changes nothing, writes nothing")
    check(not quiet("a", ["NOTE", "m"]), "a LABEL that changes the note writes")
    check(not quiet("a", ["TAGS", "x"]), "a LABEL that changes the tags writes")
    check(not quiet("c", ["NOTE", ""]), "a LABEL of a missing path creates it")
    node = as_map(r.execute_command("QUOTA.GET", "lq", "a"))
    check(node.get("note") == "m" and node.get("tags") == ["x"], f"and the changes are kept ({node})")
    print("a QUOTA.LABEL that changes nothing writes nothing")
    return 0


# ----- loader-eviction ------------------------------------------------------------

def loader_eviction(args):
    """quota-load checks maxmemory-policy: the Lua library cannot read CONFIG
    at run time, so the loader refuses where trees may be evicted."""
    import os
    import subprocess
    loader = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "target", "release", "quota-load")
    r = redis.Redis(port=args.port, decode_responses=True)
    url = f"redis://127.0.0.1:{args.port}"
    before = r.execute_command("FUNCTION", "LIST")
    r.config_set("maxmemory-policy", "allkeys-lru")
    try:
        res = subprocess.run([loader, "--force", url], capture_output=True, text=True, timeout=30)
        check(res.returncode == 1, f"refused with exit 1 (got {res.returncode}: {res.stdout}{res.stderr})")
        check("maxmemory-policy is allkeys-lru" in res.stderr and "--allow-eviction" in res.stderr,
              f"the refusal says why and what to do: {res.stderr.strip()}")
        check(r.execute_command("FUNCTION", "LIST") == before, "nothing was loaded or replaced")
        res = subprocess.run([loader, "--force", "--allow-eviction", url], capture_output=True, text=True, timeout=30)
        check(res.returncode == 0, f"--allow-eviction loads ({res.stdout}{res.stderr})")
        check("warning" in res.stderr and "allkeys-lru" in res.stderr, "and warns")
    finally:
        r.config_set("maxmemory-policy", "noeviction")
    if BACKEND == "module":
        r.execute_command("FUNCTION", "DELETE", "quota")
    print("quota-load refuses allkeys-* without --allow-eviction, loads with a warning with it")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("check")
    parser.add_argument("--port", type=int)
    parser.add_argument("--replica-port", type=int)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--holds", type=int, default=12000)
    parser.add_argument("--budget", type=int, default=5000)
    args = parser.parse_args()
    checks = {"pause": pause, "failover": failover, "backlog": backlog, "watch": watch, "label": label,
              "loader-eviction": loader_eviction}
    if args.check not in checks:
        parser.error(f"unknown check {args.check}")
    checks[args.check](args)
    if FAILURES:
        print(f"{len(FAILURES)} failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
