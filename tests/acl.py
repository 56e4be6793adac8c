#!/usr/bin/env python3
"""The ACL recipes of the README, each run as written against a live server:
for every account, what it must be allowed AND what must be refused.

The recipes are read from the documentation itself, so the README cannot
drift from what is tested: the `ACL SETUSER` lines of README.md's "Access
control" section for the module, of lua/README.md's for the Lua library
(QUOTA_BACKEND picks which). Run by tests/scenarios/23_acl.redis:

  python3 tests/acl.py --port N     every recipe of the backend, and (module)
                                    read commands under %R~ key permissions,
                                    QUOTA.PRICE|SET and |DEL taken away alone

Trees are `t:acme` and `t:other`, as in the recipes.
"""

import argparse
import os
import re
import shlex
import subprocess
import sys

import redis

from backend import BACKEND, FAILURES, KEYLESS, check

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOADER = os.path.join(ROOT, "target", "release", "quota-load")
# Redis refuses a command or key with NOPERM (its text differs between
# versions); inside a function (Lua), a key with "... can't access ..."
# (7.0) or NOPERM (7.2+), and a function with the write flag under FCALL_RO
# with "... write flag ... _ro ...".
DENIED = ("NOPERM", "no permissions", "can't access", "write flag")

POLICY = ["METRIC", "credits", "LIMIT", "1000"]
PRICE = '{"metric": "credits", "rates": {"input_tokens": "2/1M"}}'
PLAN = '{"paths": {"members/*": {"allowance": {"metric": "credits", "limit": "50"}}}}'

# What each check sends, as QUOTA.X with {k} for the tree key and {id} for
# a reservation made for the check beforehand.
CALLS = {
    "reserve": ["QUOTA.RESERVE", "{k}", "PATH", "a", "COST", "credits", "1"],
    "commit": ["QUOTA.COMMIT", "{k}", "{id}"],
    "release": ["QUOTA.RELEASE", "{k}", "{id}"],
    "extend": ["QUOTA.EXTEND", "{k}", "{id}", "60000"],
    "charge": ["QUOTA.CHARGE", "{k}", "PATH", "a", "COST", "credits", "1"],
    "get": ["QUOTA.GET", "{k}", "/"],
    "tree": ["QUOTA.TREE", "{k}"],
    "holds": ["QUOTA.HOLDS", "{k}"],
    "history": ["QUOTA.HISTORY", "{k}", "/", "p"],
    "events": ["QUOTA.EVENTS", "{k}"],
    "set": ["QUOTA.SET", "{k}", "b", "q"] + POLICY,
    "unset": ["QUOTA.UNSET", "{k}", "/", "spare"],
    "grant": ["QUOTA.GRANT", "{k}", "/", "p", "1"],
    "grants": ["QUOTA.GRANTS", "{k}", "/", "p"],
    "revoke": ["QUOTA.REVOKE", "{k}", "/", "p", "acl-grant"],
    "reset": ["QUOTA.RESET", "{k}", "/", "p"],
    # rules on a path no check reserves on: they must not refuse the others
    "allow": ["QUOTA.ALLOW", "{k}", "ruled", "SERVICE", "chat"],
    "deny": ["QUOTA.DENY", "{k}", "ruled", "SERVICE", "image", "MODEL", "pix"],
    "access": ["QUOTA.ACCESS", "{k}", "/"],
    "delpath": ["QUOTA.DELPATH", "{k}", "gone"],
    "price-get": ["QUOTA.PRICE", "GET", "chat/m"],
    "price-list": ["QUOTA.PRICE", "LIST"],
    "price-set": ["QUOTA.PRICE", "SET", "chat/n", PRICE],
    "price-del": ["QUOTA.PRICE", "DEL", "chat/n"],
    "estimate": ["QUOTA.ESTIMATE", "chat/m", "input_tokens", "1000"],
    "plain-get": ["GET", "{k}:cache"],
    "debug": ["QUOTA.DEBUG", "CLOCK", "GET"],
    "plan-get": ["QUOTA.PLAN", "GET", "std"],
    "plan-list": ["QUOTA.PLAN", "LIST"],
    "plan-set": ["QUOTA.PLAN", "SET", "tmp", PLAN.replace('"50"', '"60"')],
    "plan-del": ["QUOTA.PLAN", "DEL", "tmp"],
    "assign": ["QUOTA.ASSIGN", "{k}", "NONE"],
    "usage": ["QUOTA.USAGE", "{k}", "/", "BY", "hour"],
    "label": ["QUOTA.LABEL", "{k}", "shelf", "NOTE", "acl", "TAGS", "x,y"],
    "archive": ["QUOTA.ARCHIVE", "{k}", "shelf"],
    "restore": ["QUOTA.RESTORE", "{k}", "shelf"],
    # What quota-dash sends besides the quota commands: SCAN to list the
    # trees, TIME for the clock.
    "scan": ["SCAN", "0", "MATCH", "t:*", "COUNT", "10"],
    "time": ["TIME"],
}
TREE_CALLS = {"reserve", "commit", "release", "extend", "charge", "get", "tree", "holds", "history", "events",
              "grants", "usage", "set", "unset", "grant", "revoke", "reset", "delpath", "assign", "allow", "deny",
              "access", "label", "archive", "restore"}
READS = ["get", "tree", "holds", "history", "events", "grants", "usage"]
SPENDING = ["reserve", "commit", "release", "extend", "charge"]
# QUOTA.ACCESS is a write command (its CLEAR writes): it goes with the rules;
# so do the labels and the archive (on the path `shelf`, which nothing spends on).
POLICIES = ["set", "unset", "grant", "revoke", "reset", "delpath", "allow", "deny", "access", "label", "archive",
            "restore"]
PRICE_READS = ["price-get", "price-list", "estimate"]
PRICE_WRITES = ["price-set", "price-del"]
PLAN_READS = ["plan-get", "plan-list"]
PLAN_WRITES = ["plan-set", "plan-del"]
# What quota-dash needs besides the quota commands (the dashboard's and the
# analyst's accounts, README "Access control").
DASH = ["scan", "time"]

# Per account and backend: (allowed on t:acme, allowed on t:other, allowed
# keyless, refused on t:acme, refused on t:other, refused keyless).
EXPECT = {
    "module": {
        "svc-acme": (SPENDING + READS, [], PRICE_READS, POLICIES + ["assign", "plain-get"], SPENDING + READS,
                     PRICE_WRITES + PLAN_READS + PLAN_WRITES + ["debug"] + DASH),
        "gateway": (SPENDING + ["get", "holds"], SPENDING + ["get", "holds"], PRICE_READS,
                    POLICIES + ["assign", "tree", "grants", "plain-get"], POLICIES + ["assign"],
                    PRICE_WRITES + PLAN_READS + PLAN_WRITES + ["debug"] + DASH),
        "dashboard": (READS + POLICIES + ["assign"], READS + POLICIES + ["assign"], PRICE_READS + PLAN_READS + DASH,
                      SPENDING, SPENDING, PRICE_WRITES + PLAN_WRITES + ["debug"]),
        # Run with quota-dash --read-only: reads the plans too.
        "analyst": (READS, READS, PRICE_READS + PLAN_READS + DASH, SPENDING + POLICIES + ["assign", "plain-get"],
                    SPENDING + POLICIES + ["assign"], PRICE_WRITES + PLAN_WRITES + ["debug"]),
        "pricing": ([], [], PRICE_READS + PRICE_WRITES + PLAN_READS + PLAN_WRITES,
                    READS + SPENDING + POLICIES + ["assign"], READS, ["debug"] + DASH),
    },
    # Functions cannot be told apart by ACL: the Lua library's accounts
    # differ by keys (and FCALL_RO for the analyst).
    "lua": {
        "svc-acme": (SPENDING + READS + POLICIES + ["assign"], [], PRICE_READS + PLAN_READS + ["time"], ["plain-get"],
                     SPENDING + READS + POLICIES + ["assign"], PRICE_WRITES + PLAN_WRITES + ["scan"]),
        "gateway": (SPENDING + READS + POLICIES + ["assign"], SPENDING + READS + ["assign"],
                    PRICE_READS + PLAN_READS + ["time"], ["plain-get"], [], PRICE_WRITES + PLAN_WRITES + ["scan"]),
        "dashboard": (SPENDING + READS + POLICIES + ["assign"], READS + POLICIES + ["assign"],
                      PRICE_READS + PLAN_READS + DASH, ["plain-get"], [], PRICE_WRITES + PLAN_WRITES),
        "analyst": (READS, READS, PRICE_READS + PLAN_READS + DASH, SPENDING + POLICIES + ["assign", "plain-get"],
                    SPENDING + POLICIES + ["assign"], PRICE_WRITES + PLAN_WRITES),
        "pricing": ([], [], PRICE_READS + PRICE_WRITES + PLAN_READS + PLAN_WRITES + ["time"],
                    READS + SPENDING + POLICIES + ["assign"], READS, ["scan"]),
        # quota-load --sweep's account: FCALL on every tree, no FCALL_RO.
        "sweeper": (SPENDING + POLICIES, SPENDING + POLICIES, ["time"], READS + ["plain-get"], READS,
                    PRICE_READS + PRICE_WRITES + ["scan"]),
    },
}

# Functions that only read: sent with FCALL_RO, which every Lua account
# has (the analyst only that).
LUA_READS = {"quota_get", "quota_tree", "quota_holds", "quota_history", "quota_events", "quota_grants", "quota_usage",
             "quota_price_ro", "quota_plan_ro", "quota_estimate"}


def recipes(backend):
    """The `ACL SETUSER` lines of the backend's README section, by user."""
    if backend == "lua":
        path, heading = os.path.join(ROOT, "lua", "README.md"), "## Access control"
    else:
        path, heading = os.path.join(ROOT, "README.md"), "## Access control"
    with open(path) as f:
        text = f.read()
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    section = text[start:end if end >= 0 else len(text)]
    found = {}
    for line in section.splitlines():
        if re.match(r"^ACL SETUSER \S+ ", line.strip()):
            words = shlex.split(line.strip())
            found[words[2]] = words[3:]
    return found


def to_wire(call):
    """A QUOTA.X call as the backend takes it."""
    if BACKEND != "lua" or not call[0].startswith("QUOTA."):
        return call
    name = call[0][6:].lower()
    function = "quota_" + name
    if name in ("price", "plan") and call[1] in ("GET", "LIST", "HELP"):
        function = f"quota_{name}_ro"
    keyless = name.upper() in KEYLESS
    fcall = "FCALL_RO" if function in LUA_READS else "FCALL"
    return [fcall, function, "0" if keyless else "1"] + call[1:]


def refused(client, call):
    """None when allowed (any other error is a failure of the check), else
    the refusal's text."""
    try:
        client.execute_command(*to_wire(call))
        return None
    except redis.exceptions.NoPermissionError as e:
        return f"NOPERM {e}"
    except redis.ResponseError as e:
        text = str(e)
        if any(d.lower() in text.lower() for d in DENIED):
            return text
        return f"unexpected error: {text}"


def setup(admin, user, round_=""):
    """Fresh state for one account's checks: both trees with a policy, a
    spare policy and a path to delete, one reservation each, a grant to
    revoke (a revoked one answers again: removed 0), a price."""
    ids = {}
    for key in ("t:acme", "t:other"):
        admin.execute_command(*to_wire(["QUOTA.SET", key, "/", "p"] + POLICY))
        admin.execute_command(*to_wire(["QUOTA.SET", key, "/", "spare"] + POLICY))
        admin.execute_command(*to_wire(["QUOTA.SET", key, "gone", "g"] + POLICY))
        admin.execute_command(*to_wire(["QUOTA.UNSET", key, "gone", "g"]))
        admin.execute_command(*to_wire(["QUOTA.GRANT", key, "/", "p", "5", "ID", "acl-grant"]))
        admin.execute_command(*to_wire(["QUOTA.LABEL", key, "shelf", "NOTE", "for ARCHIVE and RESTORE"]))
        hold = f"{user}{round_}-{key[2:]}"
        admin.execute_command(*to_wire(["QUOTA.RESERVE", key, "PATH", "a", "ID", hold, "COST", "credits", "1"]))
        ids[key] = hold
    admin.execute_command(*to_wire(["QUOTA.PRICE", "SET", "chat/m", PRICE]))
    admin.execute_command(*to_wire(["QUOTA.PRICE", "SET", "chat/n", PRICE]))
    admin.execute_command(*to_wire(["QUOTA.PLAN", "SET", "std", PLAN]))
    admin.execute_command(*to_wire(["QUOTA.PLAN", "SET", "tmp", PLAN]))
    return ids


def run_checks(admin, port, user, rules, expect, round_=""):
    admin.execute_command("ACL", "SETUSER", user, "reset", *rules)
    password = next((r[1:] for r in rules if r.startswith(">")), None)
    client = redis.Redis(port=port, username=user, password=password, decode_responses=True, socket_timeout=30)
    allow_acme, allow_other, allow_keyless, deny_acme, deny_other, deny_keyless = expect
    ids = setup(admin, user, round_)
    plan = [(n, "t:acme", True) for n in allow_acme] + [(n, "t:other", True) for n in allow_other]
    plan += [(n, None, True) for n in allow_keyless]
    plan += [(n, "t:acme", False) for n in deny_acme] + [(n, "t:other", False) for n in deny_other]
    plan += [(n, None, False) for n in deny_keyless]
    # Settle-and-release calls need their own reservation each; run the
    # ones that remove things last so the others find what they need.
    order = {"commit": 1, "release": 2, "delpath": 3, "unset": 3, "price-del": 3, "plan-del": 3}
    plan.sort(key=lambda p: order.get(p[0], 0))
    for name, key, allowed in plan:
        call = [a.replace("{k}", key or "") for a in CALLS[name]]
        if "{id}" in call:
            hold = ids[key]
            if name in ("commit", "release"):
                hold = f"{ids[key]}-{name}"
                admin.execute_command(*to_wire(["QUOTA.RESERVE", key, "PATH", "a", "ID", hold, "COST", "credits",
                                                "1"]))
            call = [a.replace("{id}", hold) for a in call]
        why = refused(client, call)
        where = f" on {key}" if key else ""
        if allowed:
            check(why is None, f"{BACKEND} {user}: {name}{where} is allowed ({why})")
        else:
            check(why is not None and not why.startswith("unexpected"), f"{BACKEND} {user}: {name}{where} is refused"
                  + (f" ({why})" if why else " (it ran)"))
    client.close()
    return len(plan)


def channels(admin, port, user, rules, allowed, denied, command="SUBSCRIBE"):
    """SUBSCRIBE (or PSUBSCRIBE) to each channel (pattern): allowed ones
    answer, denied ones NOPERM."""
    password = next((r[1:] for r in rules if r.startswith(">")), None)
    for channel, want in [(c, True) for c in allowed] + [(c, False) for c in denied]:
        r = redis.Redis(port=port, username=user, password=password, socket_timeout=30)
        conn = r.connection_pool.get_connection("SUBSCRIBE")
        try:
            conn.send_command(command, channel)
            conn.read_response()
            ok = True
        except redis.ResponseError:
            ok = False
        finally:
            conn.disconnect()
            r.close()
        check(ok == want, f"{BACKEND} {user}: {command} {channel} is {'allowed' if want else 'refused'}")


def key_specs(admin, port):
    """The module's read commands declare their key read-only: a user with
    only %R~t:acme runs them on t:acme, and no write."""
    admin.execute_command("ACL", "SETUSER", "reader", "reset", "on", ">reader-pw", "%R~t:acme", "+@all")
    setup(admin, "reader")
    client = redis.Redis(port=port, username="reader", password="reader-pw", decode_responses=True)
    for name in READS:
        call = [a.replace("{k}", "t:acme") for a in CALLS[name]]
        check(refused(client, call) is None, f"%R~t:acme: {name} is allowed")
    for name in ["reserve", "charge", "set", "grant", "revoke", "reset", "allow", "deny", "access", "label",
                 "archive", "restore"]:
        call = [a.replace("{k}", "t:acme") for a in CALLS[name]]
        check(refused(client, call) is not None, f"%R~t:acme: {name} is refused")
    client.close()


def price_subcommands(admin, port):
    """QUOTA.PRICE's verbs are subcommands: a rule can take SET and DEL
    away from an account that has the rest (a first-argument rule, all a
    plain command offers, can only add)."""
    try:
        admin.execute_command("ACL", "SETUSER", "no-prices", "reset", "on", ">no-prices-pw", "~*", "+@all",
                              "-quota.price|set", "-quota.price|del")
    except redis.ResponseError as e:
        check(False, f"-quota.price|set is a valid rule ({e})")
        return
    client = redis.Redis(port=port, username="no-prices", password="no-prices-pw", decode_responses=True)
    for name in PRICE_READS + ["get"]:
        call = [a.replace("{k}", "t:acme") for a in CALLS[name]]
        check(refused(client, call) is None, f"-quota.price|set: {name} is allowed")
    for name in PRICE_WRITES:
        check(refused(client, CALLS[name]) is not None, f"-quota.price|set: {name} is refused")
    client.close()


def lua_idle_expiry(admin, port, found, round_=""):
    """Lua: a hold made by a writing account is swept when its tree is idle
    (lua/README.md "Expiry on idle trees"): the account's write records it
    in the index quota:due, even as the first call after the library was
    loaded (nothing cached yet), and quota_sweep then expires it."""
    code = admin.execute_command("FUNCTION", "LIST", "WITHCODE", "LIBRARYNAME", "quota")[0]
    code = dict(zip(code[::2], code[1::2]))["library_code"]
    for user in ("svc-acme", "gateway", "dashboard"):
        if user not in found:
            continue
        rules = found[user]
        admin.execute_command("ACL", "SETUSER", user, "reset", *rules)
        password = next((r[1:] for r in rules if r.startswith(">")), None)
        client = redis.Redis(port=port, username=user, password=password, decode_responses=True)
        admin.delete("quota:due")
        admin.execute_command("FUNCTION", "LOAD", "REPLACE", code)  # a fresh library: nothing cached
        hold = f"{user}{round_}-idle"
        try:
            client.execute_command("FCALL", "quota_reserve", "1", "t:acme", "PATH", "a", "ID", hold, "TTL", "1000",
                                   "COST", "credits", "1")
        except redis.ResponseError as e:
            check(False, f"lua {user}: reserve on t:acme runs ({e})")
            continue
        finally:
            client.close()
        check(admin.zscore("quota:due", "t:acme") is not None,
              f"lua {user}: its hold on t:acme is in the index quota:due (else the sweep never expires it)")
        admin.execute_command("FCALL", "quota_debug", "0", "CLOCK", "ADVANCE", "1000")
        # Swept as the README runs it: quota-load --sweep with the sweeper's account.
        sweeper = found.get("sweeper", [])
        # (+ the test clock, a key: the server runs with TEST_CLOCK yes.)
        admin.execute_command("ACL", "SETUSER", "sweeper", "reset", *sweeper, "%R~quota:clock", "+get")
        password = next((r[1:] for r in sweeper if r.startswith(">")), "")
        res = subprocess.run([LOADER, "--sweep", "--once", f"redis://sweeper:{password}@127.0.0.1:{port}"],
                             capture_output=True, text=True, timeout=60)
        check(res.returncode == 0 and "1 holds expired" in res.stdout,
              f"lua {user}: quota-load --sweep as the sweeper expires its idle hold ({res.stdout}{res.stderr})")


def lua_sweeper_refused(admin, port, found):
    """Lua: a tree the sweeper's account may not open (named outside its
    key patterns) fails the sweep loudly and stays in the index; it is not
    dropped as if it were no tree, which would leave its holds unswept."""
    if "sweeper" not in found:
        return
    sweeper = found["sweeper"]
    admin.execute_command("ACL", "SETUSER", "sweeper", "reset", *sweeper, "%R~quota:clock", "+get")
    password = next((r[1:] for r in sweeper if r.startswith(">")), "")
    admin.delete("quota:due")
    admin.execute_command("FCALL", "quota_set", "1", "elsewhere", "/", "p", *POLICY)
    admin.execute_command("FCALL", "quota_reserve", "1", "elsewhere", "PATH", "a", "TTL", "1000", "COST", "credits", "1")
    admin.execute_command("FCALL", "quota_debug", "0", "CLOCK", "ADVANCE", "1000")
    res = subprocess.run([LOADER, "--sweep", "--once", f"redis://sweeper:{password}@127.0.0.1:{port}"],
                         capture_output=True, text=True, timeout=60)
    check(res.returncode != 0 and "elsewhere" in res.stderr,
          f"lua sweeper: a tree it may not open fails the sweep, naming it ({res.returncode} {res.stdout}{res.stderr})")
    check(admin.zscore("quota:due", "elsewhere") is not None, "lua sweeper: that tree stays in the index")


def following(admin, port, found):
    """Every recipe account works on a tree that follows a plan as on any
    other, also right after a plan change (reads view it, writes adopt it).
    Lua: the plan book is the key quota:plans, so the accounts need
    %R~quota:plans; one without gets a refusal naming that key (not an
    internal error) on a following tree, and trees that follow no plan
    stay open to it."""
    plan = '{"paths": {"/": {"planned": {"metric": "credits", "limit": "%s"}}}}'
    admin.execute_command(*to_wire(["QUOTA.PLAN", "SET", "acl-plan", plan % "1000000"]))
    admin.execute_command(*to_wire(["QUOTA.ASSIGN", "t:acme", "acl-plan"]))
    admin.execute_command(*to_wire(["QUOTA.SET", "t:other", "/", "p"] + POLICY))
    uses = {"svc-acme": ["reserve", "charge", "get"], "gateway": ["reserve", "charge", "get"],
            "dashboard": ["get", "tree", "set"], "analyst": ["get", "tree", "holds"]}
    for version, (user, names) in enumerate(uses.items(), start=2):
        if user not in found:
            continue
        admin.execute_command(*to_wire(["QUOTA.PLAN", "SET", "acl-plan", plan % (1000000 + version)]))
        rules = found[user]
        admin.execute_command("ACL", "SETUSER", user, "reset", *rules)
        password = next((r[1:] for r in rules if r.startswith(">")), None)
        client = redis.Redis(port=port, username=user, password=password, decode_responses=True)
        for name in names:
            call = [a.replace("{k}", "t:acme") for a in CALLS[name]]
            why = refused(client, call)
            check(why is None, f"{BACKEND} {user}: {name} on t:acme, which follows a changed plan, is allowed ({why})")
        client.close()
    if BACKEND != "lua" or "gateway" not in found:
        return
    rules = [r for r in found["gateway"] if "quota:plans" not in r]
    admin.execute_command("ACL", "SETUSER", "no-plans", "reset", *rules)
    password = next((r[1:] for r in rules if r.startswith(">")), None)
    client = redis.Redis(port=port, username="no-plans", password=password, decode_responses=True)
    for name in ["reserve", "get"]:
        why = refused(client, [a.replace("{k}", "t:acme") for a in CALLS[name]])
        check(why is not None and "quota:plans" in why,
              f"lua: without %R~quota:plans, {name} on a following tree is refused naming quota:plans ({why})")
        why = refused(client, [a.replace("{k}", "t:other") for a in CALLS[name]])
        check(why is None, f"lua: without %R~quota:plans, {name} on a tree that follows no plan is allowed ({why})")
    client.close()


def ledger_on(admin, port):
    """The ledger on (SPEC §9): CONFIG SET on the module, a reload of the
    library with --set on Lua (the test clock kept)."""
    if BACKEND == "module":
        admin.config_set("quota.ledger_len", 1000)
        return
    res = subprocess.run([LOADER, f"redis://127.0.0.1:{port}", "--test-clock", "--set", "ledger_len=1000"],
                         capture_output=True, text=True, timeout=60)
    check(res.returncode == 0, f"quota-load --set ledger_len=1000 ({res.stdout}{res.stderr})")


def ledger_accounts(admin, port, found, expect):
    """With the ledger on, every recipe still allows and refuses what it did,
    and the writes of the accounts reach the ledger stream: the module writes
    it itself (no ACL check, so the module's recipes name no ledger key); a
    Lua function writes it as its caller, so the library's recipes name
    `~{t:acme}:ledger` (and XADD, TYPE). A Lua account without the ledger key
    is refused (NOPERM, naming no internal error) before anything changes."""
    ledger_on(admin, port)
    total = 0
    for user, rules in found.items():
        if user in expect:
            total += run_checks(admin, port, user, rules, expect[user], "-ledger")
    for key in ("t:acme", "t:other"):
        types = {f["type"] for _, f in admin.xrange("{" + key + "}:ledger")}
        # No "revoke": the recipes revoke `acl-grant` again, which the first
        # pass ended, and a revoke that removes nothing writes no entry.
        check({"commit", "charge", "release", "grant", "reset"} <= types,
              f"{BACKEND}: with the ledger on, the accounts' writes on {key} are in {{{key}}}:ledger ({sorted(types)})")
    if BACKEND == "lua" and "svc-acme" in found:
        rules = [r for r in found["svc-acme"] if ":ledger" not in r]
        check(len(rules) < len(found["svc-acme"]), "lua: the svc-acme recipe names its tree's ledger key")
        admin.execute_command("ACL", "SETUSER", "no-ledger", "reset", *rules)
        password = next((r[1:] for r in rules if r.startswith(">")), None)
        client = redis.Redis(port=port, username="no-ledger", password=password, decode_responses=True)
        before = admin.execute_command("FCALL_RO", "quota_get", "1", "t:acme", "/")
        for name in ["charge", "reserve", "grant"]:
            why = refused(client, [a.replace("{k}", "t:acme") for a in CALLS[name]])
            check(why is not None and not why.startswith("unexpected"),
                  f"lua: without ~{{t:acme}}:ledger, {name} on t:acme is refused ({why})")
        after = admin.execute_command("FCALL_RO", "quota_get", "1", "t:acme", "/")
        check(before == after, "lua: ... and the refused calls changed nothing")
        client.close()
        lua_idle_expiry(admin, port, found, "-ledger")
        types = {f["type"] for _, f in admin.xrange("{t:acme}:ledger")}
        check("expire" in types, "lua: the sweeper's expiries are in the ledger")
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    admin = redis.Redis(port=args.port, decode_responses=True, socket_timeout=30)
    found = recipes(BACKEND)
    expect = EXPECT[BACKEND]
    check(set(found) == set(expect), f"the README's {BACKEND} recipes are {sorted(expect)}, found {sorted(found)}")
    total = 0
    for user, rules in found.items():
        if user in expect:
            total += run_checks(admin, args.port, user, rules, expect[user])
    if "svc-acme" in found:
        channels(admin, args.port, "svc-acme", found["svc-acme"], ["quota:events:t:acme"], ["quota:events:t:other"])
    if "dashboard" in found:
        channels(admin, args.port, "dashboard", found["dashboard"], ["quota:events:t:acme", "quota:events:t:other"],
                 ["other"])
        # "every tree and its events": one pattern subscription, as a
        # dashboard that does not know every tree's name subscribes.
        channels(admin, args.port, "dashboard", found["dashboard"], ["quota:events:*"], ["other*"], "PSUBSCRIBE")
    if "analyst" in found:
        # quota-dash --read-only with the analyst's account shows events live too.
        channels(admin, args.port, "analyst", found["analyst"], ["quota:events:t:acme"], ["other"])
        channels(admin, args.port, "analyst", found["analyst"], ["quota:events:*"], ["other*"], "PSUBSCRIBE")
    if BACKEND == "lua":
        lua_idle_expiry(admin, args.port, found)
        lua_sweeper_refused(admin, args.port, found)
    following(admin, args.port, found)
    if BACKEND == "module":
        key_specs(admin, args.port)
        price_subcommands(admin, args.port)
    total += ledger_accounts(admin, args.port, found, expect)
    print(f"{len(found)} {BACKEND} recipes, {total} calls (ledger off, then on): each allowed or refused as documented")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
