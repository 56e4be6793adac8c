"""Catch-up and routing: events fired while the companion is down are
delivered when it starts again; a tree deleted and created again (its seq
starts again at 1) still gets its new events delivered; rules pick events by
tree glob, path prefix (whole segments), event type, policy and threshold,
checked against a reference written here; an event two rules send to one
destination goes there once."""

import fnmatch

from harness import WaitTimeout, as_map, check, config, counts, lua_command, rule, wait_for, webhook


def test_events_fired_while_down_are_delivered_on_start(ctx):
    hook = ctx.receiver()
    ctx.set_config(config({"hook": webhook(hook.url("/hook"))}, [rule("all", "hook")]))
    first = ctx.companion()
    ctx.budget("old")
    ctx.cycle("old")
    wait_for(lambda: set(ctx.keys_of("old")) <= set(hook.keys()), "the first events are delivered")
    ctx.wait_caught_up("old")
    first.stop()

    ctx.cycle("old")
    ctx.budget("new")  # a tree created while nobody watched
    ctx.cycle("new")
    ctx.cycle("new")
    check(len(hook.keys()) == 4, f"nothing is delivered while the companion is down: {hook.keys()}")
    ctx.companion()
    want = ctx.keys_of("old") + ctx.keys_of("new")
    wait_for(lambda: set(want) <= set(hook.keys()), "what fired while it was down is delivered on start")
    ctx.wait_caught_up("old", "new")
    got = counts(hook.keys())
    check(len(want) == 16 and set(got) == set(want) and all(n == 1 for n in got.values()),
          f"16 events, each once: {got}")


def test_a_tree_deleted_and_created_again_gets_its_new_events(ctx):
    hook = ctx.receiver()
    ctx.set_config(config({"hook": webhook(hook.url("/hook"))}, [rule("all", "hook")]))
    first = ctx.companion()
    delivered = []

    def phase(what):
        keys = ctx.keys_of("acme")
        delivered.extend(keys)
        wait_for(lambda: set(keys) <= set(hook.keys()), what)
        ctx.wait_caught_up("acme")

    ctx.budget("acme")
    ctx.cycle("acme")
    phase("the first life's 4 events are delivered")

    # Deleted and created again while the companion runs: seq 1.. again, later times.
    ctx.r.delete("acme")
    ctx.clock_advance(60_000)
    ctx.budget("acme")
    ctx.charge("acme", 85)
    check(ctx.events("acme")[0]["seq"] == 1, f"the new log starts at 1: {ctx.events('acme')}")
    phase("the second life's event (seq 1, below the cursor) is delivered")

    # Deleted and created again while it is down, and grown past the old cursor:
    # the event at the cursor's seq is another one (another time).
    first.stop()
    ctx.r.delete("acme")
    ctx.clock_advance(60_000)
    ctx.budget("acme")
    ctx.cycle("acme")
    ctx.cycle("acme")
    second = ctx.companion()
    phase("the third life's 8 events (seq 1-8, past the old cursor) are delivered after a restart")

    # And once more while down, with fewer events than the cursor's seq.
    second.stop()
    ctx.r.delete("acme")
    ctx.clock_advance(60_000)
    ctx.budget("acme")
    ctx.charge("acme", 95)
    ctx.companion()
    phase("the fourth life's 2 events (the log ends below the cursor) are delivered after a restart")

    got = counts(hook.keys())
    check(len(delivered) == 15 and set(got) == set(delivered), f"15 events in 4 lives: {len(delivered)} {got}")
    check(all(n == 1 for n in got.values()), f"none twice: {[k for k, n in got.items() if n > 1]}")


# ----- routing ------------------------------------------------------------------------

def slashed(path):
    """Events name a node as `team/dev` (the root as `/`); rules as `/team/dev`."""
    path = path or ""
    return path if path.startswith("/") else "/" + path


def path_matches(prefix, path):
    path = slashed(path)
    if prefix == "/":
        return True
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def matches(r, tree, ev):
    """The brief's rule semantics, written again here."""
    if not fnmatch.fnmatchcase(tree, r.get("trees", "*")):
        return False
    if not path_matches(r.get("path", "/"), ev.get("path") or ""):
        return False
    if "events" in r and ev["type"] not in r["events"]:
        return False
    if "policy" in r and ev.get("policy") != r["policy"]:
        return False
    # thresholds narrow warnings ("warning only"); the rule's other event types pass
    if "thresholds" in r and ev["type"] == "warning" and int(ev.get("threshold") or 0) not in r["thresholds"]:
        return False
    return True


def routes(rules, tree, ev):
    out = {}
    for r in rules:
        if matches(r, tree, ev):
            for d in r["to"]:
                out.setdefault(d, [])
                if r["name"] not in out[d]:
                    out[d].append(r["name"])
    return out


def test_rules_pick_events_and_one_destination_gets_an_event_once(ctx):
    hook = ctx.receiver()
    dests = ["over", "team", "wallet", "w90", "both", "users", "expired"]
    rules = [
        rule("over-acme", "over", trees="acme*", events=["over"]),
        rule("team", "team", path="/team"),
        rule("wallet-low", "wallet", trees="user:*", policy="wallet", events=["low", "grant_expired"]),
        rule("w90", "w90", events=["warning"], thresholds=[90]),
        rule("dup-a", "both", trees="acme", events=["over"]),
        rule("dup-b", ["both", "w90"], path="/", policy="monthly", events=["over", "warning"], thresholds=[90]),
        rule("dup-c", "both", trees="acme", path="/team/dev"),
        rule("users", ["users", "both"], trees="user:?", events=["warning", "over"]),
        rule("digits", "users", trees="user:[0-9][0-9]", events=["over"]),
        rule("expiries", "expired", events=["expired"]),
    ]
    ctx.set_config(config({d: webhook(hook.url(f"/{d}")) for d in dests}, rules))
    ctx.companion()

    # acme: / and /team and /teamx (not under /team) and /team/dev (under it).
    for path in ("/", "/team", "/teamx", "/team/dev"):
        ctx.r.q("QUOTA.SET", "acme", path, "monthly", "METRIC", "credits", "LIMIT", "100")
    ctx.r.q("QUOTA.SET", "acme", "/team", "daily", "METRIC", "credits", "LIMIT", "1000")
    ctx.charge("acme", 85, path="team/dev")  # warning 80 at /, /team, /team/dev
    ctx.charge("acme", 85, path="teamx")     # warning 80 at /teamx; 90 and over at /
    ctx.charge("acme", 10, path="team/dev")  # warning 90 at /team, /team/dev
    # a hold that expires: `expired` at path team, with no policy
    ctx.budget("holder")
    held = as_map(ctx.r.q("QUOTA.RESERVE", "holder", "PATH", "team", "ID", "h1", "TTL", "1000", "COST", "credits", "1"))
    check(held.get("allowed") in (1, True), f"the hold is placed: {held}")
    ctx.clock_advance(2000)
    ctx.charge("holder", 1, path="other")
    ctx.budget("acmex")
    ctx.cycle("acmex")
    ctx.budget("other", 100, "/", "wallet")
    ctx.charge("other", 100)
    # user:1 a wallet: created empty (warning, warning, over, low), then a grant and a spend to low again.
    ctx.r.q("QUOTA.SET", "user:1", "/", "wallet", "METRIC", "credits", "LIMIT", "0", "LOW", "10")
    ctx.r.q("QUOTA.GRANT", "user:1", "/", "wallet", "50", "ID", "pay_1")
    ctx.charge("user:1", 45)
    ctx.budget("user:22")
    ctx.charge("user:22", 100)

    trees = ("acme", "acmex", "other", "user:1", "user:22", "holder")
    expected = {d: {} for d in dests}
    paths_seen = set()
    for t in trees:
        for ev in ctx.events(t):
            paths_seen.add((t, slashed(ev.get("path")), ev["type"]))
            for d, names in routes(rules, t, ev).items():
                expected[d][f"{t}#{ev['seq']}@{ev['time']}"] = names
    check(any(p == "/teamx" for _, p, _ in paths_seen), f"an event at /teamx, which /team must not match: {paths_seen}")
    check(any(p == "/team/dev" for _, p, _ in paths_seen), f"an event at /team/dev: {paths_seen}")
    check(("holder", "/team", "expired") in paths_seen, f"an expired event at /team: {paths_seen}")
    check(all(expected[d] for d in dests), f"every destination expects something: {expected}")
    ctx.wait_caught_up(*trees)
    try:
        wait_for(lambda: all(set(expected[d]) <= set(hook.keys(f"/{d}")) for d in dests),
                 "every destination receives what its rules pick")
    except WaitTimeout:
        pass  # the checks below say which destination misses what
    ctx.wait_caught_up(*trees)
    for d in dests:
        got = counts(hook.keys(f"/{d}"))
        check(set(got) == set(expected[d]), f"/{d}: exactly the events its rules pick: "
              f"missing {sorted(set(expected[d]) - set(got))}, extra {sorted(set(got) - set(expected[d]))}")
        check(all(n == 1 for n in got.values()), f"/{d}: each event once: {got}")
        for req in hook.got(f"/{d}"):
            want = expected[d].get(req.key)
            have = (req.json or {}).get("rules")
            check(want is None or sorted(have or []) == sorted(want),
                  f"/{d} {req.key}: the payload lists the rules that matched {want}: {have}")


def test_a_log_that_wrapped_while_down_is_a_gap(ctx):
    """More than events_len (1000) events while the companion is down: the
    oldest are gone from the log; the rest are delivered and status gaps
    counts what was lost."""
    hook = ctx.receiver()
    ctx.set_config(config({"hook": webhook(hook.url("/hook"))}, [rule("overs", "hook", events=["over"])]))
    first = ctx.companion()
    ctx.budget("acme")
    ctx.cycle("acme")
    wait_for(lambda: hook.keys(), "the first over is delivered")
    ctx.wait_caught_up("acme")
    last = int(ctx.events("acme")[-1]["seq"])
    first.stop()
    pipe = ctx.r.pipeline(transaction=False)
    for _ in range(275):  # 1100 events: warning, warning, over, reset
        for cmd in (["QUOTA.CHARGE", "acme", "PATH", "/", "BRIEF", "COST", "credits", "100"],
                    ["QUOTA.RESET", "acme", "/", "monthly"]):
            pipe.execute_command(*(lua_command(cmd) if ctx.backend == "lua" else cmd))
    pipe.execute()
    log = ctx.events("acme")
    check(len(log) == 1000 and int(log[0]["seq"]) == last + 101, f"the log kept the newest 1000: from {log[0]['seq']}")
    ctx.companion()
    want = [k for k in ctx.keys_of("acme", where=lambda e: e["type"] == "over")]
    wait_for(lambda: set(want) <= set(hook.keys()), f"the {len(want)} overs still in the log are delivered")
    ctx.wait_caught_up("acme")
    check(len(hook.keys()) == 1 + len(want), f"only those (and the first): {len(hook.keys())}")
    check(ctx.status().get("gaps") == "100", f"status gaps counts the 100 events lost: {ctx.status().get('gaps')}")
