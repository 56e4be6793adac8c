#!/usr/bin/env python3
"""Differential fuzzer: the module against the Lua Functions library.

Starts two redis-servers on free ports: one with the module
(`--loadmodule target/release/libquota.so TEST_CLOCK yes`), one plain with
the library loaded by `target/release/quota-load redis://… --test-clock`
(or, with --source, lua/quota.lua itself by FUNCTION LOAD with its test
clock switched on). Sets both test clocks to the same instant, then sends
the same seeded random sequence of commands to both (`QUOTA.X key args` on
the module, `FCALL quota_x 1 key args` on the library, as tests/backend.py
maps them) and compares every reply over RESP3 (redis-py, protocol=3):
maps as dicts, arrays in order, errors by their full text (the error code
included), `QUOTA.TREE … FORMAT json` by its parsed JSON.

The sequence mixes valid and slightly invalid commands over a few trees
with paths of depth 1-4: SET (modes, windows with anchors and rolling
durations, WARN, ROLLOVER, SERVICE/MODEL), UNSET, DELPATH, GRANT, RESET,
RESERVE (batches ALL/UPTO/DRYRUN, BRIEF, ID, TTL, ALSO, COST and USAGE
items, amounts with up to 11 decimals, negative and malformed), COMMIT
(ITEM, COST/USAGE, repeated), RELEASE, EXTEND, CHARGE (CHECK, BRIEF, ID,
negative amounts), GET, TREE, HOLDS, HISTORY, EVENTS, the price book
(PRICE SET/GET/DEL/LIST, ESTIMATE) and clock moves (small steps and jumps
across hour, day and month boundaries). Reservation ids come from the
clock and a per-tree counter on both sides, so the ids a reply names are
reused by later COMMIT/RELEASE/EXTEND commands. A random mutation (an
argument dropped, doubled, swapped or replaced) turns some commands into
malformed ones.

Known and accepted differences, not exercised here:
  * map field order (compared as dicts);
  * what only the module has: INFO quota, CONFIG quota.*, DUMP/RESTORE of a
    tree, QUOTA.REPLAY/QUOTA.LOADTREE, RESP2 field order;
  * the module's active expiry timer: the library expires holds on the next
    command on the tree instead. The test clock moves only by command and
    only replies are compared, so this does not show;
  * `QUOTA.PRICE GET/LIST` goes to quota_price_ro on the Lua side;
  * a command without its key (Redis's arity error against the library's);
  * a `QUOTA.PRICE` subcommand that is not UTF-8: Redis answers an unknown
    subcommand itself and echoes its raw bytes in the error ("ERR unknown
    subcommand '\xff\xfe'. ..."), the library refuses arguments that are
    not UTF-8 (its error replies are printable ASCII);
  * a tree key with '}' but no hash tag, which the library refuses (its
    companion keys could not share the key's slot).

`--focus holds` (FocusGen) aims at holds instead: a small tree, short TTLs,
policies changing metric, filter and mode under live holds, the clock moved
to one before, exactly at and one after a known `expires_at` with reads
straight after, late commits, 10^18 totals; every fifth command it also
checks on the module that each policy's `held` equals the live holds that
match it now. `--focus plans` (PlanGen) has the trees follow plans that change under
them: PLAN SET with random and malformed plan JSON and versions, PLAN DEL
of followed plans, ASSIGN (plans, NONE, unknown), overrides of plan
policies by QUOTA.SET and UNSET back, amid reservations, charges and reads.
`--focus grants` (GrantGen) aims at credits (1.4.0): SET with LOW over
calendar, `none` and rolling windows (limits 0 included), GRANT with every
option (ids reused live and ended, EXPIRES at known instants and in the past,
FOR, PERIOD, PRIORITY, NOTE) and its errors, bursts of grants on one policy,
GRANTS, REVOKE, commits and charges (negative too) drawing from them, RESET
and HISTORY, the clock moved to one before, at and one after a grant's expiry
or a period's end, and across months. A run on an older library
(--upgrade-from before the upgrade, --flip-with throughout) sends no GRANT,
GRANTS, REVOKE or LOW (a tree with a grant is layout 4, which 1.3.0 refuses)
and compares replies without `drawn` and HISTORY's `granted`.
`--focus access` (AccessGen) aims at access rules and in-flight limits (1.5.0):
ALLOW/DENY (SERVICE, MODEL, REMOVE, in any order, their errors, bursts past
128 rules per path), ACCESS and ACCESS CLEAR, INFLIGHT policies (and the
options they refuse) turned on and off under live holds, a plan with an
in-flight policy, RESERVE (ALL/UPTO/DRYRUN, BRIEF) and CHARGE (CHECK or not)
with SERVICE/MODEL that hit and miss the rules or are absent, duplicates by
ID, commits, releases and expiry at known instants; it also checks that an
in-flight policy's `used` stays 0. `--collate` runs the Lua server under
en_US.UTF-8 (built with localedef into the run's directory when the system
lacks it), where Lua's `<` on strings is not bytewise but the library's
orderings (access rules by service and model) must be. `--pubsub` compares
what both servers publish on quota:events:* (the `disallowed` event's JSON
among them), channel by channel. A run on a library from before 1.5.0
(--upgrade-from, --flip-with) sends none of ALLOW, DENY, ACCESS or INFLIGHT
and compares check maps without `kind`; the general generator sends them too.
`--focus records` (RecordsGen) aims at META, the ledger, labels and archive
(1.6.0): LABEL, ARCHIVE/RESTORE around holds placed before, META on RESERVE
and CHARGE, TREE with TAG and ARCHIVED, HOLDS and EVENTS with `meta`, GRANT,
REVOKE and RESET; both backends run with ledger_len (100000 unless --set
gives one), and every 25 ops and at the end each tree's ledger stream is
compared entry by entry (fields, not ids); not in a run with --upgrade-from
or --flip-with, whose older library has no ledger.
`--focus usage` (UsageGen) aims at usage over time (1.6.0): RESERVE, COMMIT (late
ones too) and CHARGE (negative, past 0, CHECK, refused by DENY rules) with many
SERVICE/MODEL series or none (some whose `service/model` print alike), over `/`,
`a`, `a/b`, `a/c`, `d`, DELPATH and DEL, the
clock moved by minutes, to the next hour, by hours and days and past the hourly and
daily retention, and QUOTA.USAGE with every option (SINCE/UNTIL at bucket bounds,
retention starts and in the future, BY, METRIC, SERVICE, MODEL, GROUP) and its errors;
with `--set usage_series=3` (or 1, 2) the series past the bound go to `(other series)`
and freed slots are taken again, with `--set usage_hours=N usage_days=N` (0 too) the
retention is short or off.
`--focus cycles` (CyclesGen) aims at billing cycles (1.8.0): SET on day, week, month
and year windows with TZ (fixed offsets, IANA names in any case, links, the texts it
refuses) and week/year/month ANCHOR, clocks that start just before daylight-saving
changes and move by 23, 24 and 25 hours, days and months; GET, TREE and HISTORY show
the periods and labels. A run on a library from before 1.8.0 (--upgrade-from before the
upgrade, --flip-with throughout) sends no SET with TZ or ANCHOR and no plan with `tz` or
`anchor` (a tree that has had a zone or a week or year anchor is layout 7, which 1.7.0
refuses) and compares HISTORY without `label`; make test-lua upgrades from 1.7.0.
QUOTA_MODULE, QUOTA_LOADER and QUOTA_LIBRARY (a lua/quota.lua, loaded with
quota-load --file) run another build than this checkout's.
`--set name=value` gives both backends a setting (a module
argument, `quota-load --set`), e.g. a short event log or few holds.

    python3 tests/lua_parity.py [--seed N] [--ops N] [--source] [--max-mismatches N] [--verbose]
                                [--focus holds|plans|grants|access|usage|records|cycles] [--set NAME=VALUE ...] [--behind P]
                                [--replica]
                                [--upgrade-from LIB [--upgrade-at OP]] [--flip-with LIB [--flip-every N]]
                                [--invariants] [--collate] [--pubsub]

`--behind P` changes trees behind the library's back (DEL with companions,
RESTORE of an older DUMP, a write in another database through SWAPDB, the
library loaded again), alike on both servers, to catch caches that outlive
what they cache. `--replica` checks the Lua server's replica and AOF hold
what the primary holds. `--upgrade-from LIB` starts the Lua side on an older
library (make test-lua: 1.0.0) and upgrades it with quota-load mid-run.
`--flip-with LIB` swaps the Lua side between LIB and the current library
every --flip-every ops (a downgrade with --allow-downgrade, then back), so
each writes trees the other wrote, as in a mixed-version rollout or a
rollback (make test-lua: 1.1.0, kept as tests/fixtures/quota-1.1.0.lua).
`--invariants` checks after every command that what each Lua tree's "#"
says is due (since 1.2.0) agrees with its companion keys: the first expiry
exactly, a forget bound no forget score is below, the live hold count, and
(without --behind, which loses the index) the index of due trees; and that
its grants hash has a field for each policy with live grants and no other
(none left by UNSET, DELPATH, a new metric or a plan change), each with the
policy's count of live grants, in draw-down order, and the remembered ones
in forgetting order (GRANTS_SCRIPT).

Exits non-zero on any mismatch, printing the seed, the op index, the command
and both replies; ends with a one-line summary.
"""

import argparse
import datetime
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

import redis
from redis._parsers import _RESP3Parser

from backend import free_port, lua_command

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE = os.environ.get("QUOTA_MODULE", os.path.join(ROOT, "target", "release", "libquota.so"))
LOADER = os.environ.get("QUOTA_LOADER", os.path.join(ROOT, "target", "release", "quota-load"))
LIBRARY = os.path.join(ROOT, "lua", "quota.lua")
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

# Where the clocks start (one per seed): shortly before hour, day, month
# and year boundaries, in and out of leap years.
STARTS = [
    (2026, 1, 31, 22, 30), (2026, 12, 31, 23, 50), (2028, 2, 28, 23, 0), (2027, 3, 30, 12, 0),
    (2026, 11, 29, 23, 59), (2027, 6, 30, 0, 0),
]
MAX_TTL_MS = 30 * 86400000


class FullErrorParser(_RESP3Parser):
    """RESP3 with error replies kept whole ("ERR syntax: …", not "syntax: …")."""

    EXCEPTION_CLASSES = {}


# ----- the two servers ------------------------------------------------------------

def start_server(workdir, name, extra, env=None):
    port = free_port()
    d = os.path.join(workdir, name)
    os.makedirs(d)
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", d, "--logfile", os.path.join(d, "redis.log")] + extra,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    pool = redis.ConnectionPool(host="127.0.0.1", port=port, protocol=3, parser_class=FullErrorParser,
                                socket_timeout=60)
    client = redis.Redis(connection_pool=pool)
    deadline = time.time() + 10
    while True:
        try:
            client.ping()
            return proc, port, client
        except (redis.ConnectionError, OSError):
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise SystemExit(f"lua_parity: redis-server ({name}) did not start")
            time.sleep(0.05)


class Published:
    """--pubsub: what one server publishes on quota:events:*, by channel, as
    parsed JSON (the text when it is not JSON)."""

    def __init__(self, port):
        self.client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=60)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe("quota:events:*")
        self.pubsub.get_message(timeout=1)  # the psubscribe confirmation
        self.channels = {}

    def drain(self, wait=0.0):
        deadline = time.time() + wait
        while True:
            m = self.pubsub.get_message(timeout=0.05 if wait else 0)
            if m is None:
                if time.time() >= deadline:
                    return
                continue
            if m.get("type") != "pmessage":
                continue
            data = m["data"].decode("utf-8", "replace") if isinstance(m["data"], bytes) else m["data"]
            try:
                data = json.loads(data)
            except ValueError:
                pass
            self.channels.setdefault(m["channel"], []).append(data)


def kinds(published):
    """How many messages of each event type one server published, as text."""
    counts = {}
    for messages in published.channels.values():
        for e in messages:
            t = e.get("type") if isinstance(e, dict) else "not json"
            counts[t] = counts.get(t, 0) + 1
    return ", ".join(f"{t} {n}" for t, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def published_differ(mod, lua):
    """The two servers' published events, channel by channel: the same
    messages in the same order, but for `expired` events at the end of the
    module's (its timer publishes holds that fall due without a command; the
    library publishes them on the tree's next command). Returns the number of
    channels that differ, printing the first difference of each."""
    bad = 0
    for channel in sorted(set(mod.channels) | set(lua.channels)):
        m, l = mod.channels.get(channel, []), lua.channels.get(channel, [])
        n = min(len(m), len(l))
        at = next((i for i in range(n) if m[i] != l[i]), None)
        tail_ok = len(l) <= len(m) and all(isinstance(e, dict) and e.get("type") == "expired" for e in m[n:])
        if at is None and tail_ok:
            continue
        bad += 1
        print(f"PUBLISHED MISMATCH {channel!r}: {len(m)} messages (module) vs {len(l)} (lua)", flush=True)
        if at is not None:
            print(f"  message {at}: {diff(m[at], l[at], 'message')}\n  module: {show(m[at])}\n  lua:    {show(l[at])}",
                  flush=True)
        else:
            print(f"  after {n} alike: module {show(m[n:n + 3])}\n  lua {show(l[n:n + 3])}", flush=True)
    return bad


def collating_env(workdir):
    """--collate: an environment whose locale (en_US.UTF-8, built by
    localedef into workdir when the system has none) collates strings apart
    from their bytes ('Chat' after 'chat', '-' and '_' ignored), as a server
    started under such a LANG does: Lua's `<` on strings follows it, the
    library's orderings must not. Exits when none can be had."""
    env = dict(os.environ, LC_ALL="en_US.UTF-8")
    probe = "import locale; locale.setlocale(locale.LC_COLLATE, ''); print(locale.strcoll('a', 'B'))"

    def collates(e):
        res = subprocess.run([sys.executable, "-c", probe], env=e, capture_output=True, text=True)
        return res.returncode == 0 and res.stdout.strip().startswith("-")

    if collates(env):
        return env
    loc = os.path.join(workdir, "locale")
    if shutil.which("localedef"):
        os.makedirs(loc, exist_ok=True)
        subprocess.run(["localedef", "-i", "en_US", "-f", "UTF-8", os.path.join(loc, "en_US.UTF-8")],
                       capture_output=True)
        env["LOCPATH"] = loc
        if collates(env):
            return env
    # A run that asked for a collating locale and silently ran in C would
    # pass without testing what it names (make deps installs `locales`).
    raise SystemExit("lua_parity: --collate: no en_US.UTF-8 locale, and localedef could not build one "
                     "(apt-get install locales)")


def build_if_missing():
    if os.path.exists(MODULE) and os.path.exists(LOADER):
        return
    print("lua_parity: building (cargo build --release --locked) ...", flush=True)
    # cargo waits for its own lock if someone else is building
    res = subprocess.run(["cargo", "build", "--release", "--locked"], cwd=ROOT)
    if res.returncode != 0 or not os.path.exists(MODULE) or not os.path.exists(LOADER):
        raise SystemExit("lua_parity: the build failed")


def load_library(port, client, source, settings=(), library=None, downgrade=False):
    if source:
        assert not settings, "--set works with the loader, not with --source"
        with open(LIBRARY, encoding="utf-8") as f:
            code = f.read()
        assert code.count("local TEST_CLOCK = false") == 1, "lua/quota.lua: no single TEST_CLOCK line"
        code = code.replace("local TEST_CLOCK = false", "local TEST_CLOCK = true")
        client.execute_command("FUNCTION", "LOAD", "REPLACE", code)
        return
    sets = [a for kv in settings for a in ("--set", kv)]
    library = library or os.environ.get("QUOTA_LIBRARY")  # another checkout's lua/quota.lua
    lib = ["--file", library] if library else []
    lib += ["--allow-downgrade"] if downgrade else []
    res = subprocess.run([LOADER, f"redis://127.0.0.1:{port}", "--test-clock"] + sets + lib, capture_output=True,
                         text=True, timeout=60)
    if res.returncode != 0:
        raise SystemExit(f"lua_parity: quota-load failed: {res.stdout.strip()} {res.stderr.strip()}")


def call(client, cmd):
    try:
        return client.execute_command(*cmd)
    except redis.ResponseError as e:
        return ("error", str(e))


def norm(v):
    """A reply as plain, comparable Python: strings decoded, maps as dicts,
    booleans and numbers kept apart from integers."""
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            return ("bytes", v)
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, float):
        return ("double", v)
    if isinstance(v, dict):
        return {norm(k): norm(x) for k, x in v.items()}
    if isinstance(v, (list, set)):
        return [norm(x) for x in v]
    if isinstance(v, tuple):
        return v
    return v


PLAN_FIELDS = {"source", "plan", "plan_version", "plan_missing"}
# What grants added (1.4.0): COMMIT/CHARGE's `drawn`, HISTORY's `granted`
# (a policy map's `granted` and `low` show only once GRANT or LOW was sent,
# which a run on an older library does not send).
GRANT_FIELDS = {"drawn", "granted"}
# What access rules added (1.5.0): `kind` on every check map (the other new
# fields show only once ALLOW, DENY or INFLIGHT was sent, which a run on an
# older library does not send).
ACCESS_FIELDS = {"kind"}
# What every library before it lacks: a policy map's `base_limit` (the LIMIT
# set, shown while rollover or grants make the allowance differ).
POLICY_FIELDS = {"base_limit"}


def without_fields(v, fields):
    """A reply without `fields`, to compare with a library from before them
    (--upgrade-from, --flip-with)."""
    if isinstance(v, dict):
        return {k: without_fields(x, fields) for k, x in v.items() if k not in fields}
    if isinstance(v, list):
        return [without_fields(x, fields) for x in v]
    return v


# What every library before issue 21 (billing cycles in time zones) lacks:
# HISTORY's `label` (runs with one send no TZ and no ANCHOR: zone_command).
ZONE_FIELDS = {"label"}


def older_fields(library):
    """The reply fields library LIB (a file name with its version) lacks."""
    base = os.path.basename(library)
    if "1.4." in base:
        return ACCESS_FIELDS | POLICY_FIELDS | ZONE_FIELDS
    return ACCESS_FIELDS | POLICY_FIELDS | ZONE_FIELDS | (
        GRANT_FIELDS if "1.3." in base else PLAN_FIELDS | GRANT_FIELDS)


def zone_command(cmd):
    """SET … TZ and SET … ANCHOR, and a plan with `tz` or `anchor`: what a
    run does not send to a library from before issue 21 (1.8.0), which
    refuses TZ and words ANCHOR's errors otherwise; a tree that has had a
    zone or a week or year anchor is layout 7, which 1.7.0 refuses."""
    name = text(cmd[0]).upper()
    if name == "QUOTA.PLAN":
        return any(isinstance(a, str) and ('"tz"' in a or '"anchor"' in a) for a in cmd)
    return name == "QUOTA.SET" and any(isinstance(a, str) and a.upper() in ("TZ", "ANCHOR") for a in cmd)


def grant_command(cmd):
    """GRANT (whose meaning changed in 1.4.0), GRANTS, REVOKE and SET … LOW:
    what a run does not send to a library from before grants."""
    name = text(cmd[0]).upper()
    if name in ("QUOTA.GRANT", "QUOTA.GRANTS", "QUOTA.REVOKE"):
        return True
    return name == "QUOTA.SET" and any(isinstance(a, str) and a.upper() == "LOW" for a in cmd)


def access_command(cmd):
    """ALLOW, DENY, ACCESS, SET … INFLIGHT and a plan with an in-flight
    policy: what a run does not send to a library from before them (a tree
    with a rule or an in-flight policy is layout 5, which 1.4.0 refuses)."""
    name = text(cmd[0]).upper()
    if name in ("QUOTA.ALLOW", "QUOTA.DENY", "QUOTA.ACCESS"):
        return True
    if name == "QUOTA.PLAN":
        return any(isinstance(a, str) and "inflight" in a.lower() for a in cmd)
    return name == "QUOTA.SET" and any(isinstance(a, str) and a.upper() == "INFLIGHT" for a in cmd)


def records_command(cmd):
    """LABEL, ARCHIVE, RESTORE, META on a request, TREE with TAG, AFTER or
    ARCHIVED: what a run does not send to a library from before them (a
    tree with labels, an archived node or a hold with META is layout 6,
    which 1.5.0 refuses; AFTER is newer still)."""
    name = text(cmd[0]).upper()
    if name in ("QUOTA.LABEL", "QUOTA.ARCHIVE", "QUOTA.RESTORE"):
        return True
    words = [text(a).upper() for a in cmd[2:]]
    if name in ("QUOTA.RESERVE", "QUOTA.CHARGE"):
        return "META" in words
    return name == "QUOTA.TREE" and ("TAG" in words or "AFTER" in words or (words and words[-1] == "ARCHIVED"))


# The words of a request's grammar (RESERVE, CHARGE): where a META name
# would stand, one of them ends the META pairs.
REQUEST_WORDS = {"PATH", "ALSO", "ID", "TTL", "SERVICE", "MODEL", "ALL", "UPTO", "DRYRUN", "BRIEF", "COST",
                 "USAGE", "META", "CHECK", "ITEM"}


def option(cmd, name):
    """The value after keyword `name` in a request, or None; META pairs
    are skipped, since a META value may be any word (`META kind model`)."""
    up = [text(a).upper() for a in cmd]
    i = 0
    while i < len(up):
        if up[i] == "META":
            i += 1
            while i + 1 < len(up) and up[i] not in REQUEST_WORDS:
                i += 2
            continue
        if up[i] == name:
            return cmd[i + 1] if i + 1 < len(up) else None
        i += 1
    return None


def text(arg):
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else arg


def is_json_tree(cmd):
    if cmd[0].upper() != "QUOTA.TREE":
        return False
    up = [text(a).upper() for a in cmd]
    return any(up[i] == "FORMAT" and up[i + 1] == "JSON" for i in range(len(up) - 1))


# ----- the generator ---------------------------------------------------------------

TREES = ["acme", "user:42", "{t}beta"]
SEG1 = ["p1", "p2", "members"]
SEG2 = ["x", "y"]
SEG3 = ["u1", "u2"]
SEG4 = ["z"]
METRICS = ["credits", "tokens", "usd", "images", "input_tokens"]
BAD_METRICS = ["Credits", "cost", "1abc", "a-b", "x" * 33, "item"]
POLICIES = ["cap", "daily", "p3"]
SERVICES = ["chat", "image", "video"]
MODELS = ["gpt", "pix", "veo"]
ID_POOL = ["r1", "r2", "r3", "c1", "c2", "job-7"]
DURATIONS = ["90s", "15m", "2h", "1d", "30d", "60s", "400d", "59s", "401d", "10", "5x", "0d", "1.5h", "", "m"]

PRICES = {
    "chat/gpt": '{"metric": "credits", "rates": {"input_tokens": "2.50/1K", "output_tokens": "10/1K"}, "minimum": "0.0001"}',
    "image/pix": '{"metric": "credits", "rates": {"images": "4"}, "multipliers": {"quality": {"standard": "1", "hd": "2"}}}',
    "video/veo": ('{"metric": "usd", "rates": {"video_seconds": "0.35", "requests": "1"}, '
                  '"multipliers": {"resolution": {"720p": 1, "1080p": 1.5}}, "minimum": "0.5"}'),
    "chat/mini": '{"metric": "tokens", "rates": {"input_tokens": "1", "output_tokens": "3"}}',
}


class Gen:
    def __init__(self, rng):
        self.rng = rng
        self.ids = {t: [] for t in TREES + ["plain", "ghost", b"bin\xff"]}  # reservation ids seen in replies, per tree
        self.items = {}  # id -> items reserved

    def chance(self, p):
        return self.rng.random() < p

    def pick(self, seq):
        return self.rng.choice(seq)

    # --- values

    def path(self, bad=0.02):
        r = self.rng
        if r.random() < bad:
            return self.pick(["a//b", "..", "p1/../x", "a b", "/".join(["s"] * 17), "", "x" * 65, "p1/.", "é"])
        if r.random() < 0.15:
            return self.pick(["/", "/", ""]) if r.random() < 0.05 else "/"
        depth = r.choice([1, 1, 2, 2, 3, 4])
        segs = [self.pick(SEG1), self.pick(SEG2), self.pick(SEG3), self.pick(SEG4)][:depth]
        p = "/".join(segs)
        if r.random() < 0.1:
            p = "/" + p
        return p

    def after_name(self):
        """A name for TREE ... AFTER: a child's name, one between or beyond
        them, `archived`, or (rarely) a bad segment."""
        r = self.rng
        if r.random() < 0.05:
            return self.pick(["a/b", "", "..", ".", "x" * 65, "a b", "é", "/p1"])
        return self.pick(SEG1 + SEG2 + SEG3 + SEG4 + ["a", "b", "c", "d", "e", "p", "p0", "p10", "u", "x" * 64,
                                                      "archived", "A", "0"])

    def amount(self, neg=0.0, bad=0.03, big=0.02):
        r = self.rng
        x = r.random()
        if x < bad:
            return self.pick(["abc", "1e3", "+5", ".5", "5.", "0x10", "", " 1", "1,5", "--1", "NaN", "inf",
                              "0.12345678901", "1.00000000000", "1000000000000001", "-0"])
        if x < bad + big:
            return self.pick(["1000000000000000", "999999999999999.9999999999", "0.0000000001", "0",
                              "0.0000000000", "100000000000000"])
        sign = "-" if r.random() < neg else ""
        kind = r.random()
        if kind < 0.45:
            v = str(r.randint(0, 60))
        elif kind < 0.75:
            v = f"{r.randint(0, 40)}.{r.randint(0, 99):02d}"
        elif kind < 0.9:
            places = r.randint(1, 10)
            v = f"{r.randint(0, 9)}.{r.randint(0, 10 ** places - 1):0{places}d}"
        else:
            v = str(r.randint(60, 400))
        return sign + v

    def metric(self, bad=0.02):
        return self.pick(BAD_METRICS) if self.chance(bad) else self.pick(METRICS)

    def cost_item(self, neg=0.0, n=None):
        n = n or self.rng.choice([1, 1, 1, 2, 3])
        out = ["COST"]
        ms = self.rng.sample(METRICS, min(n, len(METRICS)))
        if self.chance(0.02):
            ms.append(ms[0])  # twice in one item
        for m in ms:
            out += [m if not self.chance(0.02) else self.pick(BAD_METRICS), self.amount(neg=neg)]
        if self.chance(0.01):
            out = ["COST"]  # empty
        return out

    def usage_item(self):
        r = self.rng
        key = self.pick(list(PRICES) + ["chat/unknown"] * 1 if r.random() < 0.05 else list(PRICES))
        out = ["USAGE", key]
        if key.startswith("chat/"):
            out += ["input_tokens", str(r.randint(0, 5000))]
            if r.random() < 0.7:
                out += ["output_tokens", str(r.randint(0, 3000))]
        elif key == "image/pix":
            out += ["images", str(r.randint(0, 4))]
            if r.random() < 0.95:
                out += ["quality", self.pick(["standard", "hd", "hd", "ultra"] if r.random() < 0.1 else ["standard", "hd"])]
        else:
            out += ["video_seconds", self.pick(["1", "2.5", "8", "0.1"]), "requests", "1"]
            if r.random() < 0.95:
                out += ["resolution", self.pick(["720p", "1080p"])]
        if r.random() < 0.03:
            out += [self.pick(["pictures", "input_tokens"]), self.pick(["1", "-1", "x"])]
        return out

    def item(self, neg=0.0):
        return self.usage_item() if self.chance(0.2) else self.cost_item(neg=neg)

    def ttl(self):
        r = self.rng.random()
        if r < 0.03:
            return self.pick(["0", "-1", "abc", str(MAX_TTL_MS + 1), "+5", "1.5", "0060000", "00000000000000000000001000"])
        if r < 0.1:
            return str(MAX_TTL_MS)
        return str(self.rng.choice([1, 500, 5000, 30000, 60000, 120000, 3600000, 86400000 * 2]))

    def some_id(self, tree):
        ids = self.ids[tree]
        r = self.rng.random()
        if ids and r < 0.85:
            if r < 0.6:
                return self.pick(ids[-3:])
            return self.pick(ids[-12:]) if r < 0.8 else self.pick(ids)
        if r < 0.94:
            return self.pick(ID_POOL)
        if r < 0.96 and any(self.ids.values()):
            other = [i for t in TREES for i in self.ids[t]]
            return self.pick(other)
        return self.pick(["nope", "bad id", "x" * 70, "19b76daa800-1"])

    def service_model(self, out):
        if self.chance(0.3):
            out += ["SERVICE", self.pick(SERVICES)]
            if self.chance(0.4):
                out += ["MODEL", self.pick(MODELS)]
        elif self.chance(0.02):
            out += ["MODEL", self.pick(MODELS)]  # MODEL without SERVICE

    # --- commands

    def c_set(self, tree):
        r = self.rng
        limit = self.amount(neg=0.02) if r.random() < 0.5 else self.pick(["100", "250", "500", "1000", "5000.5"])
        opts = [["METRIC", self.metric()], ["LIMIT", limit]]
        if r.random() < 0.6:
            w = self.pick(["none", "hour", "day", "week", "month", "month", "year", "rolling", "rolling", "fortnight"])
            if w == "rolling":
                opts.append(["WINDOW", "rolling", self.pick(DURATIONS[:5] if r.random() < 0.8 else DURATIONS)])
            else:
                opts.append(["WINDOW", w if r.random() < 0.9 else w.upper()])
            if w == "month" and r.random() < 0.5 or r.random() < 0.02:
                opts.append(["ANCHOR", self.pick(["1", "15", "28", "29", "30", "31", "31", "0", "32", "x"])])
            elif w == "week" and r.random() < 0.4:
                opts.append(["ANCHOR", self.pick(["sunday", "SUN", "wednesday", "monday", "7", "x"])])
            elif w == "year" and r.random() < 0.4:
                opts.append(["ANCHOR", self.pick(["04-01", "02-29", "12-31", "01-01", "02-30", "4-1"])])
            # a zone (issue 21): fixed offsets, which need no zone table
            if w in ("day", "week", "month", "year") and r.random() < 0.3 or r.random() < 0.01:
                opts.append(["TZ", self.pick(["+05:30", "-05:00", "+14:00", "-09:30", "+12:45", "UTC", "-00:00",
                                              "+01:00", "+1:00", "+14:30"])])
        elif r.random() < 0.02:
            opts.append(["ANCHOR", "5"])
        if r.random() < 0.4:
            opts.append(["MODE", self.pick(["strict", "block", "open", "BLOCK", "lenient"])])
        if r.random() < 0.3:
            warn = self.pick(["80,90", "50", "100", "10,20,30", "90,80,90", "75,100", "1,2,3,4,5,6,7,8,9,10"])
            if r.random() < 0.1:
                warn = self.pick(["0", "101", "50,", "a", "1,2,3,4,5,6,7,8,9,10,11", "", "050", "1000"])
            opts.append(["WARN", warn])
        calendar = any(o[0] == "WINDOW" and o[1].lower() in ("hour", "day", "week", "month", "year") for o in opts)
        if r.random() < (0.4 if calendar else 0.03):
            opts.append(["ROLLOVER", self.pick([self.amount(), "1000", "5000", "10", "100"])])
        if r.random() < 0.25:
            sm = []
            self.service_model(sm)
            if sm:
                opts.append(sm)
        if r.random() < 0.06:
            # an in-flight limit (1.5.0): mostly without a window, which it refuses
            if r.random() < 0.8:
                opts = [o for o in opts if o[0] not in ("WINDOW", "ANCHOR", "ROLLOVER")]
            opts.append([self.pick(["INFLIGHT", "INFLIGHT", "inflight"])])
        if r.random() < 0.02:
            opts.append(self.pick([["METRIC", "usd"], ["EXTRA", "1"], ["LIMIT"]]))
        if r.random() < 0.02:
            opts = [o for o in opts if o[0] not in ("METRIC", "LIMIT") or r.random() < 0.5]
        r.shuffle(opts)
        # keep SERVICE before MODEL in most commands
        out = ["QUOTA.SET", tree, self.path(), self.pick(POLICIES) if r.random() > 0.02 else "bad name"]
        if r.random() < 0.15:
            out[1:4] = ["acme", "p2", f"q{r.randint(0, 17)}"]  # up to 19 policies on one path
        for o in opts:
            out += o
        return out

    def c_huge(self, tree):
        """Totals near 10^18: 1000 items of 10^15."""
        out = ["QUOTA.RESERVE", tree, "PATH", self.path(), self.pick(["ALL", "UPTO", "DRYRUN"])]
        if self.chance(0.5):
            out += ["TTL", self.ttl()]
        for _ in range(1000):
            out += ["COST", "credits", "1000000000000000"]
        if self.chance(0.5):
            out[-1] = "999999999999999.9999999999"
        return out

    def c_unset(self, tree):
        return ["QUOTA.UNSET", tree, self.path(), self.pick(POLICIES)]

    def c_delpath(self, tree):
        return ["QUOTA.DELPATH", tree, self.path()]

    def c_grant(self, tree):
        return ["QUOTA.GRANT", tree, self.path(), self.pick(POLICIES), self.amount(neg=0.03)]

    def c_reset(self, tree):
        return ["QUOTA.RESET", tree, self.path(), self.pick(POLICIES)]

    def c_allow(self, tree, name="QUOTA.ALLOW"):
        """An access rule (1.5.0): ALLOW or DENY SERVICE s [MODEL m] [REMOVE]."""
        r = self.rng
        opts = []
        if r.random() > 0.03:
            opts.append(["SERVICE", self.pick(SERVICES) if r.random() > 0.03 else self.pick(["*", "a b", "x" * 129])])
        if r.random() < 0.45:
            opts.append(["MODEL", self.pick(MODELS) if r.random() > 0.03 else "*"])
        if r.random() < 0.25:
            opts.append(["REMOVE"])
        r.shuffle(opts)
        return [name, tree, self.path()] + [a for o in opts for a in o]

    def c_deny(self, tree):
        return self.c_allow(tree, "QUOTA.DENY")

    def c_access(self, tree):
        out = ["QUOTA.ACCESS", tree, self.path()]
        if self.chance(0.2):
            out.append(self.pick(["CLEAR", "clear"]))
        return out

    def request(self, tree, charge):
        r = self.rng
        opts = [["PATH", self.path()]]
        if r.random() < 0.3:
            also = ["ALSO", self.path()]
            if r.random() < 0.3:
                also.append(self.path())
            if r.random() < 0.02:
                also += [f"p2/x/w{k}" for k in range(r.choice([14, 15, 16]))]
            opts.append(also)
        if r.random() < (0.25 if charge else 0.3):
            opts.append(["ID", self.pick(ID_POOL) if r.random() < 0.9 else self.some_id(tree)])
        if not charge and r.random() < 0.5:
            opts.append(["TTL", self.ttl()])
        sm = []
        self.service_model(sm)
        if sm:
            opts.append(sm)
        if not charge and r.random() < 0.4:
            opts.append([self.pick(["ALL", "UPTO", "DRYRUN", "upto", "dryrun"])])
        if charge and r.random() < 0.4:
            opts.append(["CHECK"])
        if r.random() < 0.35:
            opts.append(["BRIEF"])
        if r.random() < 0.02:
            opts.append([self.pick(["CHECK", "TTL", "UPTO", "PATH", "BRIEF", "NOPE"])] +
                        ([] if r.random() < 0.5 else ["100"]))
        if r.random() < 0.03:
            opts = opts[1:]  # no PATH
        r.shuffle(opts)
        out = ["QUOTA.CHARGE" if charge else "QUOTA.RESERVE", tree]
        for o in opts:
            out += o
        if charge:
            n = 1 if r.random() < 0.97 else r.choice([0, 2])
            for _ in range(n):
                out += self.item(neg=0.25)
        else:
            n = r.choice([1, 1, 1, 1, 2, 3, 5]) if r.random() < 0.97 else r.choice([0, 12, 12, 1001])
            for _ in range(n):
                out += self.item(neg=0.02)
        return out

    def c_reserve(self, tree):
        return self.request(tree, False)

    def c_charge(self, tree):
        return self.request(tree, True)

    def c_commit(self, tree):
        r = self.rng
        out = ["QUOTA.COMMIT", tree, self.some_id(tree)]
        if r.random() < 0.3:
            out += ["ITEM", self.pick(["0", "0", "1", "2", "4", "-1", "x", "01", "4294967296"])]
        if r.random() < 0.5:
            out += self.usage_item() if r.random() < 0.2 else self.cost_item(neg=0.02)
        if r.random() < 0.02:
            out += self.pick([["ITEM", "0"], ["COST", "credits", "1"], ["BRIEF"]])
        return out

    def c_release(self, tree):
        out = ["QUOTA.RELEASE", tree, self.some_id(tree)]
        if self.chance(0.3):
            out += ["ITEM", self.pick(["0", "1", "2", "9", "x"])]
        if self.chance(0.02):
            out += ["COST", "credits", "1"]
        return out

    def c_extend(self, tree):
        out = ["QUOTA.EXTEND", tree, self.some_id(tree), self.ttl()]
        if self.chance(0.02):
            out = out[:-1]
        return out

    def c_get(self, tree):
        return ["QUOTA.GET", tree, self.path()]

    def c_tree(self, tree):
        r = self.rng
        out = ["QUOTA.TREE", tree]
        if r.random() < 0.5:
            out.append(self.path())
        opts = []
        if r.random() < 0.3:
            opts.append(["DEPTH", self.pick(["0", "1", "2", "3", "16", "17", "-1", "002", "000000000000000000000001"])])
        if r.random() < 0.3:
            opts.append(["COUNT", self.pick(["1", "2", "3", "5", "10", "0", "100000", "100001"])])
        if r.random() < 0.5:
            opts.append(["FORMAT", self.pick(["json", "json", "JSON", "resp", "xml"])])
        if r.random() < 0.2:
            opts.append([self.pick(["AFTER", "AFTER", "after"]), self.after_name()])
        if r.random() < 0.01:
            opts.append(["AFTER", self.pick(SEG1)])
        r.shuffle(opts)
        for o in opts:
            out += o
        return out

    def c_holds(self, tree):
        out = ["QUOTA.HOLDS", tree]
        if self.chance(0.6):
            out.append(self.path())
        if self.chance(0.3):
            out += ["COUNT", self.pick(["1", "2", "5", "0", "10000", "10001"])]
        return out

    def c_history(self, tree):
        return ["QUOTA.HISTORY", tree, self.path(), self.pick(POLICIES)]

    def c_events(self, tree):
        out = ["QUOTA.EVENTS", tree]
        if self.chance(0.6):
            out += ["SINCE", str(self.rng.choice([0, 1, 2, 5, 10, 20, 50, 100, 200])) if self.chance(0.95) else
                    self.pick(["18446744073709551615", "18446744073709551616", "0000000000000000000000003", "+1",
                               "9007199254740993", "-1"])]
        if self.chance(0.4):
            out += ["COUNT", self.pick(["1", "3", "10", "0", "10000", "10001"])]
        return out

    def c_price(self, tree):
        r = self.rng
        x = r.random()
        key = self.pick(list(PRICES) + ["tmp/x", "bad"])
        if x < 0.3:
            if key in PRICES and r.random() < 0.8:
                body = PRICES[key]
            else:
                body = self.pick([
                    '{"metric": "credits", "rates": {"calls": "0.1"}}',
                    '{"metric": "usd", "rates": {"input_tokens": "0.15/1M"}, "minimum": "0.01"}',
                    '{"metric": "credits", "rates": {"a": "-1"}}', "not json",
                    '{"metric": "credits", "rates": {"images": "3"}, "multipliers": {"quality": {"hd": "2.5"}}}'])
            return ["QUOTA.PRICE", "SET", key, body]
        if x < 0.5:
            return ["QUOTA.PRICE", "GET", key]
        if x < 0.6:
            return ["QUOTA.PRICE", "DEL", self.pick(["tmp/x", "tmp/x", "bad", "chat/mini"])]
        if x < 0.7:
            return ["QUOTA.PRICE", "LIST"]
        return ["QUOTA.ESTIMATE"] + self.usage_item()[1:]

    def c_clock(self, tree):
        r = self.rng.random()
        if r < 0.5:
            step = self.rng.randint(1, 3000)
        elif r < 0.75:
            step = self.rng.randint(10000, 600000)
        elif r < 0.88:
            step = self.rng.randint(3000000, 4000000)
        elif r < 0.96:
            step = self.rng.randint(80000000, 90000000)
        else:
            step = self.rng.randint(10, 40) * 86400000 + self.rng.randint(0, 86400000)
        return ["QUOTA.DEBUG", "CLOCK", "ADVANCE", str(step)]

    WEIGHTS = [
        ("set", 10), ("unset", 1), ("delpath", 1), ("grant", 3), ("reset", 2), ("reserve", 20), ("commit", 10),
        ("release", 5), ("extend", 3), ("charge", 12), ("get", 5), ("tree", 4), ("holds", 3), ("history", 2),
        ("events", 3), ("price", 3), ("clock", 6), ("del", 0.15), ("huge", 0.1), ("allow", 1), ("deny", 0.8),
        ("access", 0.7),
    ]

    def command(self):
        names = [n for n, _ in self.WEIGHTS]
        weights = [w for _, w in self.WEIGHTS]
        kind = self.rng.choices(names, weights)[0]
        tree = self.rng.choices(TREES, [5, 3, 2])[0]
        if self.chance(0.01):
            tree = self.pick(["plain", "ghost", b"bin\xff"])  # a string key; a key never written; not UTF-8
        if kind == "del":
            return ["DEL", self.pick(TREES[1:])]  # acme lives on: its event log fills
        cmd = getattr(self, "c_" + kind)(tree)
        if kind != "clock" and self.chance(0.04):
            cmd = self.mutate(cmd)
        return cmd

    def mutate(self, cmd):
        """An argument after the key dropped, doubled, swapped or replaced."""
        head, rest = cmd[:2], cmd[2:]
        if cmd[0] in ("QUOTA.PRICE", "QUOTA.ESTIMATE"):
            head, rest = cmd[:1], cmd[1:]
        if not rest:
            return cmd
        i = self.rng.randrange(len(rest))
        how = self.rng.randrange(5)
        if how == 0:
            del rest[i]
        elif how == 1:
            rest.insert(i, rest[i])
        elif how == 2:
            j = self.rng.randrange(len(rest))
            rest[i], rest[j] = rest[j], rest[i]
        elif how == 3:
            rest[i] = self.pick(["COST", "ALSO", "ITEM", "x", "-1", "0", "PATH", "USAGE", "MODEL", "WINDOW", "é",
                                 b"\xff\xfe", "a\x00b", "\u0100", "INFLIGHT", "REMOVE", "CLEAR", "SERVICE"])
        elif isinstance(rest[i], str):
            rest[i] = rest[i].lower() if rest[i] != rest[i].lower() else rest[i].upper()
        if cmd[0] == "QUOTA.PRICE" and i == 0 and rest and isinstance(rest[0], bytes):
            return cmd  # an unknown subcommand that is not UTF-8: see the accepted differences
        return head + rest

    def saw(self, cmd, reply):
        """Remembers the ids a reply names."""
        if cmd[0] == "QUOTA.RESERVE" and isinstance(reply, dict):
            rid = reply.get("id")
            if isinstance(rid, str) and rid not in self.ids[cmd[1]]:
                self.ids[cmd[1]].append(rid)


# `--focus cycles` (1.8.0): calendar windows in time zones, with week and
# year anchors. Clocks start just before daylight-saving changes.
CYCLE_STARTS = [
    (2026, 3, 8, 6, 30), (2026, 11, 1, 5, 30), (2026, 3, 29, 0, 30), (2026, 10, 25, 0, 30),
    (2026, 4, 4, 15, 0), (2028, 2, 28, 22, 0),
]
ZONES = ["UTC", "utc", "+00:00", "+01:00", "-05:30", "+05:45", "+14:00", "-12:00", "+12:45", "America/New_York",
         "Europe/Berlin", "Africa/Lagos", "Asia/Tokyo", "Australia/Lord_Howe", "Pacific/Chatham", "Asia/Kolkata",
         "america/new_york", "US/Eastern", "Pacific/Apia", "America/Sao_Paulo", "Europe/London", "Etc/UTC",
         "America/St_Johns", "Asia/Kathmandu", "Australia/Sydney", "America/Santiago"]
BAD_ZONES = ["+1:00", "+14:30", "+05:60", "Mars/Base", "", "EST5", "+0100", "Z", "é", "America/", "-15:00"]
WEEK_ANCHORS = ["monday", "sunday", "Sun", "SATURDAY", "wed", "fri", "thursday", "tuesday"]
YEAR_ANCHORS = ["04-01", "01-01", "02-29", "12-31", "07-01", "10-01", "02-28", "03-31"]
BAD_ANCHORS = ["02-30", "4-1", "13-01", "00-10", "04-31", "funday", "0", "32", "x", "1", "31", "04-01", "sunday"]


class CyclesGen(Gen):
    """Gen, with QUOTA.SET mostly on calendar windows in zones (TZ, week
    and year ANCHOR, and the texts they refuse), and the clock moved by
    hours and days across daylight-saving changes and month ends."""

    def c_set(self, tree):
        r = self.rng
        out = ["QUOTA.SET", tree, self.path(), self.pick(POLICIES)]
        out += ["METRIC", self.metric(), "LIMIT", self.pick(["10", "100", "250", "5000.5", self.amount()])]
        w = self.pick(["day", "day", "week", "week", "month", "month", "year", "year", "hour", "rolling", "none"])
        if w == "rolling":
            out += ["WINDOW", "rolling", self.pick(["60s", "1h", "1d"])]
        elif w != "none" or r.random() < 0.5:
            out += ["WINDOW", w if r.random() < 0.9 else w.upper()]
        if r.random() < 0.5:
            if r.random() < 0.9:
                a = {"week": WEEK_ANCHORS, "year": YEAR_ANCHORS}.get(w, ["1", "15", "29", "30", "31"])
                out += ["ANCHOR", self.pick(a)]
            else:
                out += ["ANCHOR", self.pick(BAD_ANCHORS)]
        if r.random() < 0.8:
            out += ["TZ", self.pick(ZONES) if r.random() < 0.93 else self.pick(BAD_ZONES)]
        if r.random() < 0.3:
            out += ["ROLLOVER", self.pick(["500", "1000", "20"])]
        if r.random() < 0.2:
            out += ["MODE", self.pick(["strict", "open", "block"])]
        if r.random() < 0.03:
            out += ["TZ", self.pick(ZONES)]  # twice
        return out

    def c_clock(self, tree):
        r = self.rng.random()
        if r < 0.35:
            step = self.rng.randint(1, 600000)
        elif r < 0.7:
            step = self.rng.choice([1800000, 3600000, 3600000 - 1, 3600000 + 1, 7200000])
        elif r < 0.9:
            step = self.rng.choice([86400000, 23 * 3600000, 25 * 3600000, 7 * 86400000]) + self.rng.randint(-2, 2)
        else:
            step = self.rng.randint(20, 400) * 86400000 + self.rng.randint(0, 86400000)
        return ["QUOTA.DEBUG", "CLOCK", "ADVANCE", str(step)]

    WEIGHTS = [(n, w * 3 if n in ("set", "history", "clock") else w) for n, w in Gen.WEIGHTS]


class FocusGen(Gen):
    """`--focus holds`: a small tree where holds, policies and the clock meet.

    Few paths (`/`, `a`, `a/b`, `a/b/c`, `d`), two metrics, small limits,
    short TTLs and rolling windows of 60 s to 15 min, so that most commands
    meet live or due holds. Aimed at: reads (GET/TREE/HOLDS/EVENTS) of a
    tree with holds due, at exactly the due millisecond, one before and one
    after (the clock is moved to a known `expires_at`); `QUOTA.SET`/`UNSET`
    changing a policy's metric, filter or mode under live holds; late
    commits (more than held, after expiry); `UPTO`/`ALL`/`DRYRUN` batches and
    their `held`; denials naming the binding policy (several policies on one
    path and its ancestors); `CHARGE … CHECK`; totals saturating at 10^18.
    """

    FPATHS = ["/", "a", "a/b", "a/b/c", "d", "a/e"]
    FMETRICS = ["credits", "tokens"]

    def __init__(self, rng, start_ms):
        super().__init__(rng)
        self.now = start_ms
        self.due = {t: [] for t in self.ids}  # tree -> expires_at values seen
        self.filters = {}  # (tree, id) -> (service, model) of the reserve
        self.queue = []

    def path(self, bad=0.0):
        return self.pick(self.FPATHS)

    def metric(self, bad=0.0):
        return self.pick(self.FMETRICS)

    def amount(self, neg=0.0, bad=0.0, big=0.0):
        r = self.rng.random()
        if r < neg:
            return "-" + str(self.rng.randint(1, 20))
        if r < 0.7:
            return str(self.rng.randint(0, 30))
        if r < 0.9:
            return f"{self.rng.randint(0, 20)}.{self.rng.randint(0, 99):02d}"
        return self.pick(["0.0000000001", "1000000000000000", "60", "100"])

    def cost_item(self, neg=0.0, n=None):
        out = ["COST"]
        for m in self.rng.sample(self.FMETRICS, self.rng.choice([1, 1, 2])):
            out += [m, self.amount(neg=neg)]
        return out

    def item(self, neg=0.0):
        return self.cost_item(neg=neg)

    def ttl(self):
        return str(self.rng.choice([1, 2, 50, 500, 1000, 3000, 30000, 60000, 90000]))

    def service_model(self, out):
        if self.chance(0.4):
            out += ["SERVICE", self.pick(["chat", "image"])]
            if self.chance(0.4):
                out += ["MODEL", self.pick(["gpt", "pix"])]

    def c_set(self, tree):
        r = self.rng
        out = ["QUOTA.SET", tree, self.path(), self.pick(["cap", "daily", "p3"]), "METRIC", self.metric(),
               "LIMIT", self.pick(["10", "25", "40", "60", "100", "0", "1000000000000000"])]
        w = self.pick(["none", "none", "hour", "rolling", "rolling"])
        if w == "rolling":
            out += ["WINDOW", "rolling", self.pick(["60s", "90s", "15m", "61s", "1001s"])]
        elif w != "none" or r.random() < 0.3:
            out += ["WINDOW", w]
        if r.random() < 0.6:
            out += ["MODE", self.pick(["strict", "strict", "block", "open"])]
        if r.random() < 0.2:
            out += ["WARN", self.pick(["50", "80,90", "100"])]
        self.service_model(out)
        return out

    def c_unset(self, tree):
        return ["QUOTA.UNSET", tree, self.path(), self.pick(["cap", "daily", "p3"])]

    def c_huge(self, tree):
        if self.chance(0.5):
            return super().c_huge(tree)
        out = ["QUOTA.CHARGE", tree, "PATH", self.path()]
        if self.chance(0.3):
            out.append("CHECK")
        for _ in range(self.rng.choice([1, 2, 1000])):
            out += ["COST", "credits", "1000000000000000"]
        return out

    def c_commit(self, tree):
        out = ["QUOTA.COMMIT", tree, self.some_id(tree)]
        if self.chance(0.3):
            out += ["ITEM", self.pick(["0", "1", "2", "4"])]
        if self.chance(0.6):
            out += self.cost_item()
        return out

    def c_events(self, tree):
        out = ["QUOTA.EVENTS", tree]
        if self.chance(0.5):
            out += ["SINCE", str(self.rng.choice([0, 1, 5, 20, 50, 100, 150, 200, 300]))]
        if self.chance(0.3):
            out += ["COUNT", self.pick(["1", "3", "10"])]
        return out

    def c_tree(self, tree):
        out = ["QUOTA.TREE", tree]
        if self.chance(0.3):
            out.append(self.path())
        if self.chance(0.6):
            out += ["FORMAT", "json"]
        return out

    def c_read(self, tree):
        return getattr(self, "c_" + self.pick(["get", "tree", "holds", "events"]))(tree)

    def c_clock(self, tree):
        r = self.rng.random()
        dues = sorted(d for d in self.due[tree] if d >= self.now)
        if dues and r < 0.6:
            # to a known expiry: one before, exactly at, or one after
            target = self.pick(dues[:4]) + self.rng.choice([-1, 0, 0, 0, 1])
            step = max(target - self.now, 0)
        elif r < 0.75:
            step = self.rng.choice([1, 1, 2, 499, 500, 1000, 1500])
        elif r < 0.85:
            # rolling windows: a bucket (1/60), the duration, one either side
            step = self.rng.choice([1000, 1016, 1017, 1500, 15000, 59999, 60000, 60001, 61000, 89999, 90000, 900000])
        elif r < 0.95:
            step = self.rng.randint(1000, 120000)
        elif r < 0.97:
            step = self.rng.choice([86400000 - 1, 86400000, 86400001])  # ids' memory
        else:
            step = 3600000 - self.now % 3600000  # exactly the next hour
        self.now += step
        # reads straight after the move, before any write stores the expiry
        self.queue += [self.c_read(tree) for _ in range(self.rng.choice([1, 2, 3]))]
        return ["QUOTA.DEBUG", "CLOCK", "ADVANCE", str(step)]

    WEIGHTS = [
        ("set", 8), ("unset", 2), ("grant", 1), ("reset", 1), ("reserve", 20), ("commit", 10),
        ("release", 3), ("extend", 3), ("charge", 8), ("read", 12), ("history", 1), ("clock", 12),
        ("huge", 0.6), ("del", 0.2),
    ]

    def command(self):
        if self.queue:
            return self.queue.pop(0)
        names = [n for n, _ in self.WEIGHTS]
        kind = self.rng.choices(names, [w for _, w in self.WEIGHTS])[0]
        tree = self.rng.choices(TREES[:2], [3, 1])[0]
        if kind == "del":
            return ["DEL", TREES[1]]
        if kind == "clock" and self.rng.random() < 0.015:
            # The clock set back (NTP, a failover to a host behind). A write
            # on each tree first stores what is due, as the module's timer
            # may have done: a hold it expired stays expired, where on the
            # library one nobody stored would be live again.
            self.now -= self.rng.choice([1, 1000, 60000, 3600000])
            self.queue += [["QUOTA.EXTEND", TREES[1], "settle", "1000"],
                           ["QUOTA.DEBUG", "CLOCK", "SET", str(self.now)], self.c_read(tree)]
            return ["QUOTA.EXTEND", TREES[0], "settle", "1000"]
        return getattr(self, "c_" + kind)(tree)

    def saw(self, cmd, reply):
        super().saw(cmd, reply)
        if cmd[0] == "QUOTA.RESERVE" and isinstance(reply, dict) and reply.get("reserved") and not reply.get("duplicate"):
            self.filters[(cmd[1], reply["id"])] = (option(cmd, "SERVICE"), option(cmd, "MODEL"))
        if cmd[0] in ("QUOTA.RESERVE", "QUOTA.EXTEND") and isinstance(reply, dict):
            at = reply.get("expires_at")
            if isinstance(at, int) and at > 0:
                self.due[cmd[1]] = (self.due[cmd[1]] + [at])[-20:]

    def held_mismatch(self, client, tree):
        """Every policy's `held` against the live holds that match it now
        (QUOTA.HOLDS, the reserve's SERVICE/MODEL, the paths and their
        ancestors), on one backend: None when they agree."""
        from decimal import Decimal
        holds = norm(call(client, ["QUOTA.HOLDS", tree, "COUNT", "10000"]))
        if not isinstance(holds, list):
            return None
        for p in self.FPATHS:
            got = norm(call(client, ["QUOTA.GET", tree, p]))
            if not isinstance(got, dict):
                continue
            for pol in got["policies"]:
                want = Decimal(0)
                for h in holds:
                    chain = set()
                    for hp in h["paths"]:
                        segs = [x for x in hp.split("/") if x]
                        chain |= {"/".join(segs[:k]) or "/" for k in range(len(segs) + 1)}
                    if (p.strip("/") or "/") not in chain:
                        continue
                    svc, mdl = self.filters.get((tree, h["id"]), (None, None))
                    if pol.get("service") is not None and (pol["service"] != svc or
                                                           pol.get("model") is not None and pol["model"] != mdl):
                        continue
                    want += Decimal(h["held"].get(pol["metric"], "0"))
                if want >= Decimal(10) ** 17:
                    continue  # near the saturation bound
                if Decimal(pol["held"]) != want:
                    return f"{tree} {p}#{pol['policy']}: held {pol['held']}, live holds matching it hold {want}"
        return None


# ----- the run -----------------------------------------------------------------------

class PlanGen(Gen):
    """`--focus plans`: trees following plans that change under them.

    A few plans (`free`, `pro`, `team`) over patterns of the generator's
    paths (`/`, `p1`, `members/*`, `*/x`, `members/u1`, `*/*/u1`, …) whose
    policies share names with the tree's own (`cap`, `daily`) so that
    overrides, UNSET back to the plan and metric changes under live holds
    happen; PLAN SET with random and malformed JSON (each error of the
    plan grammar), explicit versions (some not above the current), PLAN
    DEL of a plan trees follow, ASSIGN to plans, NONE and unknown plans,
    with the usual reservations, charges, commits, reads and clock moves
    between them.
    """

    PLAN_NAMES = ["free", "pro", "team"]
    PATTERNS = ["/", "p1", "p2", "members", "members/*", "p1/*", "*", "*/x", "members/u1", "*/*/u1", "p1/x/*",
                "/members/*", "*/*"]
    PNAMES = ["cap", "daily", "rpm", "allow", "tok"]

    def __init__(self, rng):
        super().__init__(rng)
        self.versions = {}

    def policy_json(self):
        r = self.rng
        fields = {"metric": self.pick(["credits", "credits", "tokens", "requests"] if r.random() > 0.03
                                      else ["Bad", 7, "limit"]),
                  "limit": self.pick(["50", "100", "250", "1000", "0", "12.5", 100, 7.25])}
        if r.random() < 0.6:
            fields["window"] = self.pick(["none", "hour", "day", "month", "month", "year", "week",
                                          "rolling 60s", "rolling 15m", "MONTH"])
            if fields["window"] == "month" and r.random() < 0.4:
                fields["anchor"] = self.pick([1, 15, 31])
            # Issue 21: week and year anchors as text, zones on calendar windows.
            if fields["window"] == "week" and r.random() < 0.4:
                fields["anchor"] = self.pick(["sunday", "Mon", "SATURDAY", "monday"])
            if fields["window"] == "year" and r.random() < 0.4:
                fields["anchor"] = self.pick(["04-01", "02-29", "01-01", "12-31"])
            if fields["window"].lower() in ("day", "week", "month", "year") and r.random() < 0.3:
                fields["tz"] = self.pick(["+05:30", "-03:00", "UTC", "+00:00", "America/New_York", "us/eastern",
                                          "Europe/Berlin", "Asia/Kathmandu", "Etc/UTC"])
        if r.random() < 0.3:
            fields["mode"] = self.pick(["strict", "block", "open"])
        if r.random() < 0.25:
            fields["warn"] = self.pick([[50, 80], [90], [10, 20, 30]] * 10 + [[]])
        if r.random() < 0.15 and fields.get("window", "none").lower() in ("hour", "day", "month", "year", "week"):
            fields["rollover"] = self.pick(["2000", "5000"])
        if r.random() < 0.15:
            fields["service"] = self.pick(SERVICES)
            if r.random() < 0.4:
                fields["model"] = self.pick(MODELS)
        if r.random() < 0.01:  # one bad field
            bad = self.pick([("limit", "-5"), ("limit", "abc"), ("window", "fortnight"), ("window", "rolling 5x"),
                             ("anchor", 0), ("anchor", 5), ("mode", "lenient"), ("warn", [0]), ("warn", "80"),
                             ("rollover", "1"), ("model", "gpt"), ("extra", 1), ("metric", None), ("limit", None),
                             ("limit", True), ("service", "a b"), ("tz", "Mars/Base"), ("tz", 5), ("tz", "+1:00"),
                             ("anchor", "someday"), ("anchor", "02-30")])
            if bad[1] is None:
                fields.pop(bad[0], None)
            else:
                fields[bad[0]] = bad[1]
        return fields

    def plan_json(self):
        r = self.rng
        if r.random() < 0.03:
            return self.pick(["not json", "[]", '{"paths": []}', '{"paths": {}, "extra": 1}', '{}', '{"paths": {"a//b": {}}}',
                              '{"paths": {"p1": {"bad name": {"metric": "credits", "limit": "1"}}}}',
                              '{"paths": {"p1": 5}}', '{"version": 0, "paths": {}}', '{"version": "2", "paths": {}}',
                              '{"paths": {"p1": {}, "/p1": {}}}', '{"paths": {"*/..": {}}}', '"x"',
                              '{"paths": {' + ",".join(f'"p{i}": {{}}' for i in range(65)) + '}}',
                              '{"paths": {"p1": {' + ",".join(
                                  f'"n{i}": {{"metric": "credits", "limit": "1"}}' for i in range(17)) + '}}}'])
        paths = {}
        for pattern in r.sample(self.PATTERNS, r.randint(0, 4)):
            paths[pattern] = {name: self.policy_json() for name in r.sample(self.PNAMES, r.randint(1, 3))}
        body = {"paths": paths}
        if r.random() < 0.1:
            body["version"] = self.pick([1, 2, 5, 50, 10**6])
        return json.dumps(body)

    def c_plan(self, tree):
        r = self.rng
        x = r.random()
        name = self.pick(self.PLAN_NAMES) if r.random() > 0.03 else self.pick(["none", "NONE", "a b", "x" * 65])
        if x < 0.55:
            return ["QUOTA.PLAN", "SET", name, self.plan_json()]
        if x < 0.65:
            return ["QUOTA.PLAN", "DEL", name]
        if x < 0.85:
            return ["QUOTA.PLAN", "GET", name]
        if x < 0.97:
            return ["QUOTA.PLAN", "LIST"]
        return ["QUOTA.PLAN", self.pick(["HELP", "FROB"])]

    def c_assign(self, tree):
        return ["QUOTA.ASSIGN", tree, self.pick(self.PLAN_NAMES * 3 + ["NONE", "none", "ghost", "a b"])]

    def c_set(self, tree):
        cmd = super().c_set(tree)
        if self.chance(0.4) and len(cmd) > 3:
            cmd[3] = self.pick(self.PNAMES)  # an override of a plan policy
        return cmd

    def c_unset(self, tree):
        return ["QUOTA.UNSET", tree, self.path(), self.pick(self.PNAMES + POLICIES)]

    def c_grant(self, tree):
        return ["QUOTA.GRANT", tree, self.path(), self.pick(self.PNAMES), self.amount(neg=0.03)]

    def c_reset(self, tree):
        return ["QUOTA.RESET", tree, self.path(), self.pick(self.PNAMES)]

    def c_history(self, tree):
        return ["QUOTA.HISTORY", tree, self.path(), self.pick(self.PNAMES)]

    WEIGHTS = [
        ("plan", 6), ("assign", 4), ("set", 5), ("unset", 2), ("delpath", 1), ("grant", 2), ("reset", 1),
        ("reserve", 20), ("commit", 8), ("release", 4), ("extend", 2), ("charge", 12), ("get", 8), ("tree", 5),
        ("holds", 2), ("history", 2), ("events", 2), ("clock", 6), ("del", 0.15),
    ]

    def mutate(self, cmd):
        if cmd[0] == "QUOTA.PLAN":
            return cmd  # the plan grammar's own errors are generated above
        return super().mutate(cmd)


class GrantGen(Gen):
    """`--focus grants`: credits, grants with expiry, priority and ids (SPEC §7).

    Few paths (`/`, `a`, `a/b`, `d`) and policies (`cap`, `wal`, `day`) so
    that grants, their draws and their ends meet: QUOTA.SET over calendar,
    `none` and rolling windows with small limits (0 included) and `LOW`;
    GRANT with every option (ID reused, live and ended; EXPIRES at known
    instants, past and out of range; FOR; PERIOD; the three together;
    PRIORITY; NOTE of every length and some control characters), bursts of
    grants on one policy with mixed priorities and expiries; GRANTS (COUNT),
    REVOKE of live, ended and unknown ids; reservations, commits (ITEM,
    COST), releases and charges (negative, CHECK, ID) drawing from them;
    RESET, HISTORY, GET, TREE, EVENTS; the clock moved to one before, at and
    one after a grant's `expires_at` or a period's end, by small steps and
    across months.
    """

    GPATHS = ["/", "a", "a/b", "d"]
    GPOLICIES = ["cap", "wal", "day"]
    GRANT_IDS = ["g1", "g2", "g3", "promo", "legacy", "refund-7"]
    NOTES = ["gift", "promo 2026", "é", "x" * 256, "é" * 128, "refund for order 7"]
    BAD_NOTES = ["", "a\tb", "x" * 257, "é" * 129, b"\xff\xfe", "\x7f", "line\n"]

    def __init__(self, rng, start_ms):
        super().__init__(rng)
        self.now = start_ms
        self.no_grants = False  # an older library (before 1.4.0) is on the Lua side
        self.grant_ids = {}  # (tree, path, policy) -> grant ids seen
        self.dues = {t: [] for t in self.ids}  # tree -> grant expiries and period ends seen
        self.queue = []

    def path(self, bad=0.0):
        if self.chance(0.01):
            return self.pick(["a//b", "nope/x", "é"])
        return self.pick(self.GPATHS)

    def policy(self):
        return self.pick(self.GPOLICIES) if self.chance(0.98) else self.pick(["nope", "bad name"])

    def metric(self, bad=0.0):
        return "credits" if self.chance(0.85) else "tokens"

    def amount(self, neg=0.0, bad=0.0, big=0.0):
        r = self.rng.random()
        if r < neg:
            return "-" + self.pick([str(self.rng.randint(1, 40)), "0.5", "1000"])
        if r < neg + bad:
            return self.pick(["abc", "", "1e3", "0.12345678901", "+5"])
        if r < neg + bad + big:
            return self.pick(["1000000000000000", "999999999999999.9999999999", "0.0000000001"])
        x = self.rng.random()
        if x < 0.55:
            return str(self.rng.randint(0, 40))
        if x < 0.85:
            return f"{self.rng.randint(0, 20)}.{self.rng.randint(0, 99):02d}"
        return self.pick(["100", "250", "0.0000000001", "7.1234567891"])

    def cost_item(self, neg=0.0, n=None):
        out = ["COST"]
        for m in self.rng.sample(["credits", "tokens"], self.rng.choice([1, 1, 1, 2])):
            out += [m, self.amount(neg=neg, bad=0.01, big=0.01)]
        return out

    def item(self, neg=0.0):
        return self.cost_item(neg=neg)

    def ttl(self):
        return str(self.rng.choice([50, 1000, 30000, 60000, 3600000, 86400000]))

    def service_model(self, out):
        pass

    def target(self):
        return self.pick(self.GPATHS), self.pick(self.GPOLICIES)

    # --- commands

    def c_set(self, tree):
        r = self.rng
        path, pol = self.target()
        out = ["QUOTA.SET", tree, path if r.random() > 0.01 else self.path(), pol if r.random() > 0.01 else "bad name",
               "METRIC", self.metric(), "LIMIT",
               self.pick(["0", "0", "10", "25", "50", "100", "7.5", "1000", "1000000000000000"])]
        w = self.pick(["none", "none", "hour", "day", "month", "month", "rolling", "rolling"])
        if w == "rolling":
            out += ["WINDOW", "rolling", self.pick(["60s", "15m", "2h", "1d"])]
        elif w != "none" or r.random() < 0.3:
            out += ["WINDOW", w]
        if w in ("day", "month", "hour") and r.random() < 0.3:
            out += ["ROLLOVER", self.pick(["10", "100", "1000"])]
        if r.random() < 0.5:
            out += ["MODE", self.pick(["strict", "strict", "block", "open"])]
        if r.random() < 0.2:
            out += ["WARN", self.pick(["50", "80,90", "100"])]
        if not self.no_grants and r.random() < 0.45:
            low = self.pick(["0", "5", "10", "20", "50", "0.5", "1000"]) if r.random() > 0.05 else \
                self.pick(["-1", "x", "", "1e2", "0.00000000001"])
            out += ["LOW", low]
        if r.random() < 0.02:
            out += self.pick([["LOW"], ["LOW", "5", "LOW", "6"], ["low", "3"]])
        return out

    def known_grant(self, tree, path, pol):
        ids = self.grant_ids.get((tree, path, pol), [])
        r = self.rng.random()
        if ids and r < 0.7:
            return self.pick(ids[-4:]) if r < 0.5 else self.pick(ids)
        if r < 0.85:
            return self.pick(self.GRANT_IDS)
        others = [i for k, v in self.grant_ids.items() for i in v]
        if others and r < 0.95:
            return self.pick(others)
        return self.pick(["nope", "a b", "x" * 129, "x" * 128])

    def c_grant(self, tree, path=None, pol=None):
        if self.no_grants:
            return self.c_get(tree)
        r = self.rng
        if path is None:
            path, pol = self.target()
            if r.random() < 0.02:
                path, pol = self.path(), self.policy()
        amount = self.amount(neg=0.02, bad=0.02, big=0.02) if r.random() > 0.03 else self.pick(["0", "0.0000000000"])
        out = ["QUOTA.GRANT", tree, path, pol, amount]
        opts = []
        if r.random() < 0.5:
            opts.append(["ID", self.known_grant(tree, path, pol)])
        x = r.random()
        if x < 0.3:
            if r.random() < 0.9:
                at = self.now + self.pick([1, 2, 500, 1000, 59999, 60000, 3600000, 86400000, 40 * 86400000])
                if r.random() < 0.05:
                    at = self.now - self.pick([0, 1, 1000])
                opts.append(["EXPIRES", str(at)])
            else:
                opts.append(["EXPIRES", self.pick(["0", "9007199254740991", "9007199254740992", "abc", "1.5", "-5",
                                                   "18446744073709551616"])])
        elif x < 0.5:
            opts.append(["FOR", self.pick(["60s", "90s", "15m", "2h", "1d", "30d", "400d"]) if r.random() < 0.93
                         else self.pick(["59s", "401d", "x", "10", ""])])
        elif x < 0.65:
            opts.append(["PERIOD"])
        if r.random() < 0.03:  # two of EXPIRES, FOR, PERIOD
            opts.append(self.pick([["PERIOD"], ["FOR", "1d"], ["EXPIRES", str(self.now + 5000)]]))
        if r.random() < 0.5:
            opts.append(["PRIORITY", self.pick(["0", "10", "50", "50", "90", "100"]) if r.random() < 0.93
                         else self.pick(["101", "-1", "x", "050", "1.0"])])
        if r.random() < 0.3:
            opts.append(["NOTE", self.pick(self.NOTES) if r.random() < 0.85 else self.pick(self.BAD_NOTES)])
        if r.random() < 0.03:
            opts.append(self.pick([["ID"], ["PRIORITY"], ["NOTE"], ["EXPIRES"], ["FOR"], ["BOGUS", "1"],
                                   ["PRIORITY", "1", "PRIORITY", "2"], ["NOTE", "a", "NOTE", "b"], ["ID", "x", "ID", "y"],
                                   ["period"]]))
        r.shuffle(opts)
        for o in opts:
            out += [a.lower() if isinstance(a, str) and a.isupper() and r.random() < 0.1 else a for a in o]
        return out

    def c_burst(self, tree):
        """Many grants on one policy (mixed priorities, expiries, some with
        no time limit), then a draw that crosses several of them."""
        if self.no_grants:
            return self.c_get(tree)
        path, pol = self.target()
        for _ in range(self.rng.randint(3, 25)):
            g = self.c_grant(tree, path, pol)
            self.queue.append(g)
        self.queue.append(["QUOTA.GRANTS", tree, path, pol])
        self.queue.append(["QUOTA.CHARGE", tree, "PATH", path, "COST", "credits", str(self.rng.randint(5, 300))])
        return ["QUOTA.GET", tree, path]

    def c_grants(self, tree):
        if self.no_grants:
            return self.c_get(tree)
        path, pol = self.target()
        out = ["QUOTA.GRANTS", tree, path, pol]
        if self.chance(0.3):
            out += ["COUNT", self.pick(["1", "2", "3", "10000", "0", "10001", "x"])]
        if self.chance(0.02):
            out += ["EXTRA"]
        return out

    def c_revoke(self, tree):
        if self.no_grants:
            return self.c_get(tree)
        path, pol = self.target()
        out = ["QUOTA.REVOKE", tree, path, pol, self.known_grant(tree, path, pol)]
        if self.chance(0.02):
            out += ["EXTRA"]
        return out

    def c_reset(self, tree):
        path, pol = self.target()
        return ["QUOTA.RESET", tree, path, pol]

    def c_history(self, tree):
        path, pol = self.target()
        return ["QUOTA.HISTORY", tree, path, pol]

    def c_unset(self, tree):
        path, pol = self.target()
        return ["QUOTA.UNSET", tree, path, pol]

    def c_charge(self, tree):
        r = self.rng
        out = ["QUOTA.CHARGE", tree, "PATH", self.pick(self.GPATHS)]
        if r.random() < 0.3:
            out.append("CHECK")
        if r.random() < 0.15:
            out += ["ID", self.pick(ID_POOL)]
        if r.random() < 0.1:
            out.append("BRIEF")
        out += self.cost_item(neg=0.25)
        return out

    def c_reserve(self, tree):
        r = self.rng
        out = ["QUOTA.RESERVE", tree, "PATH", self.pick(self.GPATHS)]
        if r.random() < 0.4:
            out += ["TTL", self.ttl()]
        if r.random() < 0.15:
            out += ["ID", self.pick(ID_POOL)]
        if r.random() < 0.2:
            out.append(self.pick(["UPTO", "DRYRUN", "ALL"]))
        out += self.cost_item(neg=0.01)
        return out

    def c_commit(self, tree):
        out = ["QUOTA.COMMIT", tree, self.some_id(tree)]
        if self.chance(0.2):
            out += ["ITEM", self.pick(["0", "1"])]
        if self.chance(0.6):
            out += self.cost_item(neg=0.05)
        return out

    def c_get(self, tree):
        return ["QUOTA.GET", tree, self.pick(self.GPATHS)]

    def c_tree(self, tree):
        out = ["QUOTA.TREE", tree]
        if self.chance(0.5):
            out += ["FORMAT", "json"]
        return out

    def c_events(self, tree):
        out = ["QUOTA.EVENTS", tree]
        if self.chance(0.6):
            out += ["SINCE", str(self.rng.choice([0, 1, 5, 20, 50, 100, 150, 200, 300]))]
        if self.chance(0.3):
            out += ["COUNT", self.pick(["1", "3", "10", "100"])]
        return out

    def c_read(self, tree):
        return getattr(self, "c_" + self.pick(["get", "get", "tree", "events", "grants", "history"]))(tree)

    def c_clock(self, tree):
        r = self.rng.random()
        dues = sorted(d for d in self.dues[tree] if d >= self.now)
        if dues and r < 0.45:
            # to a known grant expiry or period end: one before, exactly at, or one after
            step = max(self.pick(dues[:5]) + self.rng.choice([-1, 0, 0, 1]) - self.now, 0)
        elif r < 0.65:
            step = self.rng.choice([1, 2, 500, 1000, 30000, 60000])
        elif r < 0.8:
            step = self.rng.randint(60000, 4000000)
        elif r < 0.92:
            step = self.rng.choice([86400000 - 1, 86400000, 86400001, self.rng.randint(3600000, 90000000)])
        else:
            step = self.rng.randint(20, 70) * 86400000 + self.rng.randint(0, 86400000)  # months
        self.now += step
        # reads straight after the move, before any write applies what is due
        self.queue += [self.c_read(tree) for _ in range(self.rng.choice([0, 1, 2]))]
        return ["QUOTA.DEBUG", "CLOCK", "ADVANCE", str(step)]

    WEIGHTS = [
        ("set", 7), ("unset", 1), ("delpath", 0.5), ("grant", 14), ("burst", 1), ("grants", 5), ("revoke", 4),
        ("reset", 2), ("reserve", 10), ("commit", 7), ("release", 3), ("charge", 14), ("get", 6), ("tree", 2),
        ("history", 3), ("events", 3), ("clock", 10), ("del", 0.1),
    ]

    def command(self):
        if self.queue:
            return self.queue.pop(0)
        names = [n for n, _ in self.WEIGHTS]
        kind = self.rng.choices(names, [w for _, w in self.WEIGHTS])[0]
        tree = self.rng.choices(TREES, [5, 2, 1])[0]
        if kind == "del":
            return ["DEL", TREES[1]]
        if kind == "delpath":
            return ["QUOTA.DELPATH", tree, self.pick(["a/b", "d", "a"])]
        cmd = getattr(self, "c_" + kind)(tree)
        if kind not in ("clock", "burst") and self.chance(0.03):
            cmd = self.mutate(cmd)
        return cmd

    def saw(self, cmd, reply):
        super().saw(cmd, reply)
        if not isinstance(reply, (dict, list)) or not isinstance(cmd[1], str) or cmd[1] not in self.dues:
            return
        tree = cmd[1]
        seen = []
        if cmd[0] == "QUOTA.GRANT" and isinstance(reply, dict) and isinstance(reply.get("grant"), dict):
            g = reply["grant"]
            key = (tree, cmd[2], cmd[3])
            if isinstance(g.get("id"), str) and g["id"] not in self.grant_ids.setdefault(key, []):
                self.grant_ids[key] = (self.grant_ids[key] + [g["id"]])[-30:]
            seen.append(g.get("expires_at"))
        if cmd[0] == "QUOTA.GRANTS" and isinstance(reply, list):
            seen += [g.get("expires_at") for g in reply if isinstance(g, dict)]
        if cmd[0] in ("QUOTA.GET", "QUOTA.GRANT", "QUOTA.SET") and isinstance(reply, dict):
            for p in reply.get("policies", [reply]):
                if isinstance(p, dict):
                    seen.append(p.get("period_end"))
        for at in seen:
            if isinstance(at, int) and self.now < at < self.now + 400 * 86400000:  # not 2^53 - 1
                self.dues[tree] = (self.dues[tree] + [at])[-20:]


class UsageGen(GrantGen):
    """`--focus usage`: usage over time and QUOTA.USAGE (SPEC §9, 1.6.0).

    Paths `/`, `a`, `a/b`, `a/c`, `d` and many series (services with and
    without models, none), so that a small `usage_series` (`--set
    usage_series=3`) fills and `(other series)` takes the rest; RESERVE /
    COMMIT (late ones too) / CHARGE (negative, past 0, disallowed by access
    rules, CHECK) with SERVICE/MODEL, DELPATH and DEL of trees with usage,
    the clock moved by minutes, hours and days, past the hourly and daily
    retention (slots freed, buckets dropped); QUOTA.USAGE with every option
    (SINCE/UNTIL around known instants, in the future and before retention,
    BY, METRIC, SERVICE, MODEL, GROUP) and its errors.
    """

    GPATHS = ["/", "a", "a/b", "a/c", "d"]
    # The last three print alike under GROUP model (`or/oa/gpt`): '/' is
    # allowed in service and model names, and the groups stay apart.
    SERIES = [None, ("chat", None), ("chat", "gpt"), ("chat", "mini"), ("image", None), ("image", "pix"),
              ("video", "veo"), ("audio", None), ("embed", "e5"), ("or", "oa/gpt"), ("or/oa", "gpt"),
              ("or/oa/gpt", None)]

    def path(self, bad=0.0):
        if self.chance(0.01):
            return self.pick(["a//b", "nope/x", "é", "a/b/c"])
        return self.pick(self.GPATHS)

    def series(self, out):
        s = self.pick(self.SERIES)
        if s is not None:
            out += ["SERVICE", s[0]]
            if s[1]:
                out += ["MODEL", s[1]]
        return out

    def service_model(self, out):
        self.series(out)

    def cost_item(self, neg=0.0, n=None):
        # (in_tok and intok: bytewise '_' sorts first, a collation may not)
        out = ["COST"]
        for m in self.rng.sample(["credits", "tokens", "in_tok", "intok"], self.rng.choice([1, 1, 2, 3])):
            out += [m, self.amount(neg=neg, bad=0.01, big=0.01)]
        return out

    def c_charge(self, tree):
        r = self.rng
        out = ["QUOTA.CHARGE", tree, "PATH", self.pick(self.GPATHS)]
        if r.random() < 0.2:
            out += ["ALSO", self.pick(self.GPATHS)]
        if r.random() < 0.15:
            out.append("CHECK")
        if r.random() < 0.1:
            out += ["ID", self.pick(ID_POOL)]
        self.series(out)
        out += self.cost_item(neg=0.3)
        return out

    def c_reserve(self, tree):
        r = self.rng
        out = ["QUOTA.RESERVE", tree, "PATH", self.pick(self.GPATHS)]
        if r.random() < 0.2:
            out += ["ALSO", self.pick(self.GPATHS)]
        out += ["TTL", self.pick(["60000", "3600000", "86400000", "7200000"])]
        self.series(out)
        out += self.cost_item()
        return out

    def c_deny(self, tree):
        s = self.pick([x for x in self.SERIES if x])
        out = ["QUOTA.DENY", tree, self.pick(self.GPATHS), "SERVICE", s[0]]
        if s[1] and self.chance(0.5):
            out += ["MODEL", s[1]]
        if self.chance(0.4):
            out.append("REMOVE")
        return out

    def instant(self):
        """A time near now: bucket bounds, the retention's start, the future."""
        h, d = 3600000, 86400000
        r = self.rng.random()
        if r < 0.3:
            return self.now - self.rng.randint(0, 100) * h + self.pick([-1, 0, 0, 1, 1800000])
        if r < 0.55:
            return (self.now // d - self.rng.randint(0, 95)) * d + self.pick([-1, 0, 0, 1])
        if r < 0.65:
            return self.now + self.pick([0, 1, h, d])
        if r < 0.75:
            return (self.now // h - self.pick([47, 48, 49])) * h + self.pick([-1, 0, 1])
        if r < 0.85:
            return (self.now // d - self.pick([89, 90, 91])) * d + self.pick([-1, 0, 1])
        return self.pick([0, 1, self.now, self.now - 1])

    def c_usage(self, tree):
        r = self.rng
        out = ["QUOTA.USAGE", tree, self.path()]
        opts = []
        if r.random() < 0.4:
            opts.append(["SINCE", str(self.instant()) if r.random() > 0.03 else
                         self.pick(["-1", "x", "1.5", "18446744073709551616", "9007199254740992", ""])])
        if r.random() < 0.3:
            opts.append(["UNTIL", str(self.instant()) if r.random() > 0.03 else self.pick(["-1", "x", "01"])])
        if r.random() < 0.6:
            opts.append(["BY", self.pick(["hour", "day", "HOUR", "Day"]) if r.random() > 0.03 else
                         self.pick(["week", "", "hours"])])
        if r.random() < 0.25:
            opts.append(["METRIC", self.pick(["credits", "tokens", "usd"]) if r.random() > 0.05 else
                         self.pick(["Credits", "limit", "x" * 33])])
        if r.random() < 0.3:
            s = self.pick([x for x in self.SERIES if x] + [("nope", None), ("chat", "nope")])
            sm = ["SERVICE", s[0]]
            if s[1] and r.random() < 0.7:
                sm += ["MODEL", s[1]]
            opts.append(sm)
        elif r.random() < 0.02:
            opts.append(["MODEL", "gpt"])
        if r.random() < 0.5:
            opts.append(["GROUP", self.pick(["service", "model", "child", "tag", "MODEL"]) if r.random() > 0.03
                         else self.pick(["series", "", "children"])])
        if r.random() < 0.03:
            opts.append(self.pick([["BY", "day"], ["GROUP", "child"], ["SINCE", "0"], ["NOPE"], ["SINCE"]]))
        r.shuffle(opts)
        for o in opts:
            out += o
        return out

    def c_read(self, tree):
        return self.c_usage(tree) if self.chance(0.7) else self.c_get(tree)

    def c_clock(self, tree):
        r = self.rng.random()
        h, d = 3600000, 86400000
        if r < 0.3:
            step = self.rng.randint(1, 600000)
        elif r < 0.55:
            step = self.rng.randint(1, 5) * h + self.rng.randint(-1, 1)
        elif r < 0.7:
            step = (self.now // h + 1) * h - self.now + self.pick([-1, 0, 0, 1])  # to the next hour
        elif r < 0.82:
            step = self.rng.randint(1, 3) * d + self.rng.randint(0, d)
        elif r < 0.9:
            step = self.pick([47, 48, 49]) * h + self.rng.randint(0, h)  # past the hourly retention
        else:
            step = self.pick([30, 60, 89, 90, 91, 120]) * d + self.rng.randint(0, d)  # past the daily one
        self.now += step
        self.queue += [self.c_usage(tree) for _ in range(self.rng.choice([0, 1, 2]))]
        return ["QUOTA.DEBUG", "CLOCK", "ADVANCE", str(step)]

    WEIGHTS = [
        ("set", 3), ("unset", 0.5), ("delpath", 0.7), ("grant", 1), ("reserve", 10), ("commit", 9),
        ("release", 2), ("charge", 16), ("deny", 1), ("get", 2), ("usage", 16), ("clock", 8), ("del", 0.2),
    ]

    def command(self):
        if self.queue:
            return self.queue.pop(0)
        names = [n for n, _ in self.WEIGHTS]
        kind = self.rng.choices(names, [w for _, w in self.WEIGHTS])[0]
        tree = self.rng.choices(TREES, [5, 2, 1])[0]
        if kind == "del":
            return ["DEL", TREES[1]]
        if kind == "delpath":
            return ["QUOTA.DELPATH", tree, self.pick(["a/b", "a/c", "d", "a"])]
        cmd = getattr(self, "c_" + kind)(tree)
        if kind != "clock" and self.chance(0.03):
            cmd = self.mutate(cmd)
        return cmd


class AccessGen(FocusGen):
    """`--focus access`: access rules and in-flight limits (SPEC §8, 1.5.0).

    Few paths (`/`, `p1`, `p1/u1`, `p1/u2`, `p2`, `p2/u1`) so that rules,
    policies and holds meet on the same reaches: ALLOW and DENY with SERVICE
    and MODEL or the service alone, REMOVE, each keyword in any order and
    case, their errors (no SERVICE, MODEL alone, a keyword twice, `*`, names
    too long or with spaces, unknown words), bursts up to and past the bound of
    128 rules per path; ACCESS and ACCESS CLEAR (missing keys and paths too);
    QUOTA.SET with INFLIGHT on `requests` and `credits` (limits 0 to 5, MODE
    strict/open/block, WINDOW none and the windows it refuses, LOW, ROLLOVER,
    SERVICE/MODEL filters) and turned on and off under live holds; GRANT on
    an in-flight policy; RESERVE (ALL, UPTO, DRYRUN, BRIEF, ALSO, several
    items, short TTLs) and CHARGE (CHECK or not, BRIEF) with SERVICE and
    MODEL drawn from names that hit and miss the rules, none among them;
    the same ID sent again (denied reservations re-judged, charges answered
    as remembered); COMMIT, RELEASE, EXTEND and expiry by the clock moved to
    one before, at and one after a hold's `expires_at`; a plan whose policy is
    `"inflight": true` (and the plan errors of in-flight policies) followed
    by the trees; DELPATH, UNSET, RESET, HISTORY, GET, TREE, HOLDS and
    EVENTS (the `disallowed` event). After every GET and TREE it also checks
    that an in-flight policy's `used` is 0.
    """

    FPATHS = ["/", "p1", "p1/u1", "p1/u2", "p2", "p2/u1"]
    FMETRICS = ["requests", "credits"]
    APOLICIES = ["conc", "rpm", "cap"]
    ASERVICES = ["chat", "image", "embed"]
    AMODELS = ["gpt", "mini", "pix"]
    BAD_NAMES = ["*", "*", "a b", "x" * 129, "x" * 128, "", "é", "a\tb"]
    APLANS = ["lim", "team"]

    def __init__(self, rng, start_ms):
        super().__init__(rng, start_ms)

    def rule_path(self):
        r = self.rng.random()
        if r < 0.85:
            return self.pick(self.FPATHS)
        if r < 0.95:
            return self.pick(["p3", "p1/u3", "p2/u1/z", "/p1", "p1/"])  # new nodes, other spellings
        return self.pick(["a//b", "..", "a b", "/".join(["s"] * 17), ""])

    # Names that sort apart bytewise and by a locale's collation (case,
    # punctuation, digits): the rules' order must be the bytes' order.
    ODD_SERVICES = ["Chat", "chat-2", "chat_2", "chat.v2", "0chat", "CHAT", "chat~"]
    ODD_MODELS = ["GPT", "gpt-4o", "gpt.4", "gpt_4", "Gpt", "4o"]

    def service(self):
        x = self.rng.random()
        return self.pick(self.ASERVICES) if x < 0.87 else self.pick(self.ODD_SERVICES) if x < 0.95 \
            else self.pick(self.BAD_NAMES)

    def model(self):
        x = self.rng.random()
        return self.pick(self.AMODELS) if x < 0.87 else self.pick(self.ODD_MODELS) if x < 0.95 \
            else self.pick(self.BAD_NAMES)

    def kw(self, word):
        return word.lower() if self.chance(0.08) else word

    def service_model(self, out):
        """A request's SERVICE and MODEL: none, the service alone, or both."""
        r = self.rng.random()
        if r < 0.15:
            return
        if r < 0.17:
            out += [self.kw("MODEL"), self.pick(self.AMODELS)]  # MODEL without SERVICE
            return
        out += [self.kw("SERVICE"), self.pick(self.ASERVICES + ["video"]) if self.chance(0.93)
                else self.pick(self.ODD_SERVICES)]
        if self.chance(0.55):
            out += [self.kw("MODEL"), self.pick(self.AMODELS + ["veo"]) if self.chance(0.93)
                    else self.pick(self.ODD_MODELS)]

    # --- rules

    def c_rule(self, tree, name=None):
        r = self.rng
        name = name or self.pick(["QUOTA.ALLOW", "QUOTA.DENY"])
        opts = []
        if r.random() > 0.04:
            opts.append([self.kw("SERVICE"), self.service()])
        if r.random() < 0.5:
            opts.append([self.kw("MODEL"), self.model()])
        if r.random() < 0.35:
            opts.append([self.kw("REMOVE")])
        if r.random() < 0.04:
            opts.append(self.pick([["SERVICE", "chat"], ["MODEL", "gpt"], ["REMOVE"], ["EXTRA"], ["SERVICE"],
                                   ["MODEL"], ["INFLIGHT"], ["CLEAR"], ["ALL"]]))
        r.shuffle(opts)
        return [name, tree, self.rule_path()] + [a for o in opts for a in o]

    def c_burst(self, tree):
        """Rules up to and past the bound of 128 per path (allow and deny
        together), then requests judged against them, ACCESS and a CLEAR."""
        path = self.pick(self.FPATHS)
        n = self.rng.choice([20, 60, 127, 130])
        for i in range(n):
            cmd = "QUOTA.DENY" if i % 3 == 0 else "QUOTA.ALLOW"
            out = [cmd, tree, path, "SERVICE", f"s{i % 70}"]
            if i >= 70 or self.chance(0.3):
                out += ["MODEL", self.pick(self.AMODELS)]
            self.queue.append(out)
        self.queue.append(["QUOTA.ALLOW", tree, path, "SERVICE", "s0"])  # there already: 0 even at the bound
        self.queue.append(self.c_reserve(tree))
        self.queue.append(["QUOTA.ACCESS", tree, path])
        self.queue.append(["QUOTA.TREE", tree, "FORMAT", "json"])
        if self.chance(0.7):
            self.queue.append(["QUOTA.ACCESS", tree, path, "CLEAR"])
        return ["QUOTA.GET", tree, path]

    def c_access(self, tree):
        out = ["QUOTA.ACCESS", tree, self.rule_path() if self.chance(0.9) else self.pick(["p9", "p1/u9"])]
        x = self.rng.random()
        if x < 0.25:
            out.append(self.kw("CLEAR"))
        elif x < 0.24:
            out += self.pick([["CLEAR", "x"], ["NOPE"], ["CLEAR", "CLEAR"], ["REMOVE"]])
        return out

    # --- policies

    def c_set(self, tree):
        r = self.rng
        out = ["QUOTA.SET", tree, self.pick(self.FPATHS), self.pick(self.APOLICIES), "METRIC", self.metric(),
               "LIMIT", self.pick(["0", "1", "2", "3", "3", "5", "10", "40", "100"])]
        inflight = r.random() < 0.55
        opts = []
        x = r.random()
        if inflight:
            if x < 0.08:
                opts.append(["WINDOW", "none"])
            elif x < 0.13:
                opts.append(["WINDOW", self.pick(["day", "rolling 60s", "hour"])])
        elif x < 0.5:
            opts.append(["WINDOW"] + self.pick(["none", "hour", "rolling 60s", "rolling 90s"]).split())
        if r.random() < 0.4:
            opts.append(["MODE", self.pick(["strict", "strict", "open", "block"] if inflight or r.random() < 0.5
                                           else ["strict", "open"])])
        if r.random() < 0.15:
            opts.append(["WARN", self.pick(["50", "80,90", "100"])])
        if r.random() < (0.04 if inflight else 0.02):
            opts.append(self.pick([["LOW", "1"], ["ROLLOVER", "10"], ["ANCHOR", "5"]]))
        if r.random() < 0.25:
            f = ["SERVICE", self.pick(self.ASERVICES)]
            if r.random() < 0.4:
                f += ["MODEL", self.pick(self.AMODELS)]
            opts.append(f)
        if inflight:
            opts.append([self.kw("INFLIGHT")])
            if r.random() < 0.02:
                opts.append(["INFLIGHT"])
            if r.random() < 0.04:
                # several options it refuses at once: which error comes first
                opts += r.sample([["WINDOW", "day"], ["MODE", "block"], ["LOW", "2"], ["ROLLOVER", "5"],
                                  ["WARN", "0"], ["MODE", "lenient"]], r.randint(2, 4))
        r.shuffle(opts)
        return out + [a for o in opts for a in o]

    def c_unset(self, tree):
        return ["QUOTA.UNSET", tree, self.pick(self.FPATHS), self.pick(self.APOLICIES)]

    def c_grant(self, tree):
        return ["QUOTA.GRANT", tree, self.pick(self.FPATHS), self.pick(self.APOLICIES),
                self.pick(["1", "5", "0", "-1", "x"])]

    def c_reset(self, tree):
        return ["QUOTA.RESET", tree, self.pick(self.FPATHS), self.pick(self.APOLICIES)]

    def c_history(self, tree):
        return ["QUOTA.HISTORY", tree, self.pick(self.FPATHS), self.pick(self.APOLICIES)]

    def c_delpath(self, tree):
        return ["QUOTA.DELPATH", tree, self.pick(["p1/u1", "p1/u2", "p2", "p2/u1", "p1", "p3"])]

    # --- plans

    def plan_policy(self):
        r = self.rng
        p = {"metric": self.pick(self.FMETRICS), "limit": self.pick(["1", "2", "3", "10", "0"])}
        x = r.random()
        if x < 0.6:
            p["inflight"] = True
        elif x < 0.65:
            p["inflight"] = False
        elif x < 0.67:
            p["inflight"] = self.pick(["yes", 1, None])
        if r.random() < 0.1 or "inflight" not in p and r.random() < 0.4:
            p["window"] = self.pick(["none", "day", "rolling 60s"])
        if r.random() < 0.2:
            p["mode"] = self.pick(["strict", "open", "block"])
        if r.random() < 0.05:
            p["low"] = "1"
        if r.random() < 0.2:
            p["service"] = self.pick(self.ASERVICES)
        return p

    def c_plan(self, tree):
        r = self.rng
        name = self.pick(self.APLANS)
        if r.random() < 0.15:
            return ["QUOTA.PLAN", "GET", name]
        paths = {}
        for pattern in r.sample(["/", "p1", "p1/*", "*/u1", "p2"], r.randint(1, 3)):
            paths[pattern] = {n: self.plan_policy() for n in r.sample(["conc", "rpm", "pl"], r.randint(1, 2))}
        return ["QUOTA.PLAN", "SET", name, json.dumps({"paths": paths})]

    def c_assign(self, tree):
        return ["QUOTA.ASSIGN", tree, self.pick(self.APLANS + ["NONE"])]

    # --- requests

    def req_items(self, n, neg=0.0):
        out = []
        for _ in range(n):
            out.append("COST")
            if self.chance(0.85):
                out += ["requests", self.pick(["1", "1", "1", "2"])]
            if self.chance(0.6):
                out += ["credits", self.amount(neg=neg)]
            if out[-1] == "COST":
                out += ["requests", "1"]
        return out

    def c_reserve(self, tree):
        r = self.rng
        opts = [["PATH", self.pick(self.FPATHS) if r.random() > 0.05 else self.pick(["p3", "p1/u3/z"])]]
        if r.random() < 0.2:
            opts.append(["ALSO", self.pick(self.FPATHS)])
        sm = []
        self.service_model(sm)
        if sm:
            opts.append(sm)
        if r.random() < 0.6:
            opts.append(["TTL", self.ttl()])
        if r.random() < 0.3:
            opts.append(["ID", self.pick(ID_POOL)])
        if r.random() < 0.4:
            opts.append([self.pick(["ALL", "UPTO", "UPTO", "DRYRUN"])])
        if r.random() < 0.3:
            opts.append(["BRIEF"])
        r.shuffle(opts)
        return ["QUOTA.RESERVE", tree] + [a for o in opts for a in o] + self.req_items(r.choice([1, 1, 1, 2, 3]))

    def c_charge(self, tree):
        r = self.rng
        opts = [["PATH", self.pick(self.FPATHS)]]
        if r.random() < 0.15:
            opts.append(["ALSO", self.pick(self.FPATHS)])
        sm = []
        self.service_model(sm)
        if sm:
            opts.append(sm)
        if r.random() < 0.4:
            opts.append(["CHECK"])
        if r.random() < 0.3:
            opts.append(["ID", self.pick(ID_POOL)])
        if r.random() < 0.25:
            opts.append(["BRIEF"])
        r.shuffle(opts)
        return ["QUOTA.CHARGE", tree] + [a for o in opts for a in o] + self.req_items(1, neg=0.05)

    def c_read(self, tree):
        return getattr(self, "c_" + self.pick(["get", "get", "tree", "holds", "events", "access"]))(tree)

    def c_get(self, tree):
        return ["QUOTA.GET", tree, self.pick(self.FPATHS + ["p3"])]

    WEIGHTS = [
        ("rule", 10), ("burst", 0.12), ("access", 4), ("set", 8), ("unset", 1), ("grant", 1.2), ("reset", 0.6),
        ("history", 0.5), ("delpath", 0.6), ("plan", 1), ("assign", 1), ("reserve", 20), ("commit", 8),
        ("release", 3), ("extend", 2), ("charge", 10), ("read", 10), ("clock", 10), ("del", 0.1),
    ]

    def command(self):
        if self.queue:
            return self.queue.pop(0)
        names = [n for n, _ in self.WEIGHTS]
        kind = self.rng.choices(names, [w for _, w in self.WEIGHTS])[0]
        tree = self.rng.choices(TREES[:2], [3, 1])[0]
        if self.chance(0.01):
            tree = self.pick(["plain", "ghost"])  # a string key; a key never written
        if kind == "del":
            return ["DEL", TREES[1]]
        cmd = getattr(self, "c_" + kind)(tree)
        if kind not in ("clock", "burst") and self.chance(0.02):
            cmd = self.mutate(cmd)
        return cmd

    def broken(self, cmd, reply):
        """An in-flight policy that records usage (its `used` must stay 0):
        None when none does."""
        if cmd[0] not in ("QUOTA.GET", "QUOTA.TREE"):
            return None
        if isinstance(reply, str) and reply.startswith("{"):
            reply = json.loads(reply)
        stack = [reply]
        while stack:
            v = stack.pop()
            if isinstance(v, dict):
                if v.get("inflight") in (1, True) and v.get("used") not in (None, "0"):
                    return f"in-flight policy {v.get('policy')} has used {v.get('used')}"
                stack += list(v.values())
            elif isinstance(v, list):
                stack += v
        return None


class RecordsGen(AccessGen):
    """`--focus records`: META, the ledger, labels and archive (SPEC §9-§10, 1.6.0).

    AccessGen's paths, policies, rules and requests, with: QUOTA.LABEL (NOTE
    and TAGS alone or together, `""` clearing either, tags repeated, unsorted,
    bad, too many; NOTE too long or with control characters; neither, twice,
    unknown words; new paths), QUOTA.ARCHIVE and QUOTA.RESTORE (missing keys
    and paths, the root, an archived ancestor), holds placed before an
    archive and then committed, released, extended and expired; RESERVE and
    CHARGE with META pairs (names and values good and bad, repeated, 16 and
    17 pairs, non-ASCII and quoted values, META twice) on archived and live
    paths; TREE with TAG and ARCHIVED (with DEPTH, COUNT, FORMAT json, a
    path); GRANT, REVOKE and RESET (ledger entries); trees that follow a
    plan (labels on nodes the plan syncs); HOLDS and EVENTS (the `meta` of
    holds and `expired`/`disallowed` events). The run gives both
    backends ledger_len (100000 unless --set gives one) and every 25 ops,
    and at the end, compares each tree's ledger stream entry by entry
    (fields, not ids).
    """

    TAGS = ["prod", "staging", "team:a", "@ops", "x.y", "team-b", "archived"]
    NOTES = ["billing for acme", "é ü 中", 'say "hi" \\ back', "n"]
    META_NAMES = ["user", "req", "feature", "u_2", "z9"]
    # Values that are keywords of the request are values all the same.
    META_VALUES = ["u1", "u2", "req-7", "é-ü", 'q"uote\\x', "chat feature", "x" * 256,
                   "all", "BRIEF", "id", "Model", "check", "none", "open"]

    def __init__(self, rng, start_ms):
        super().__init__(rng, start_ms)
        self.grant_ids = {}

    def c_label(self, tree):
        r = self.rng
        opts = []
        if r.random() < 0.6:
            x = r.random()
            note = self.pick(self.NOTES) if x < 0.75 else "" if x < 0.9 else \
                self.pick(["x" * 257, "x" * 256, "a\tb", "a\nb", "\x7f"])
            opts.append([self.kw("NOTE"), note])
        if r.random() < 0.6 or not opts:
            x = r.random()
            if x < 0.65:
                tags = ",".join(r.sample(self.TAGS, r.randint(1, 3)) + (["prod"] if r.random() < 0.2 else []))
            elif x < 0.8:
                tags = ""
            elif x < 0.9:
                tags = ",".join(f"t{i}" for i in range(r.choice([16, 17, 18])))
            else:
                tags = self.pick(["a,,b", ",", "bad tag", ".", "..", "x" * 65, "x" * 64, "é", "a/b", "a,"])
            opts.append([self.kw("TAGS"), tags])
        if r.random() < 0.04:
            opts.append(self.pick([["NOTE", "again"], ["TAGS", "a"], ["EXTRA"], ["NOTE"], ["ARCHIVED"]]))
        if r.random() < 0.03:
            opts = []
        r.shuffle(opts)
        return ["QUOTA.LABEL", tree, self.rule_path()] + [a for o in opts for a in o]

    def c_archive(self, tree):
        name = self.pick(["QUOTA.ARCHIVE", "QUOTA.ARCHIVE", "QUOTA.RESTORE"])
        path = self.pick(self.FPATHS + ["p3", "p1/u9"]) if self.chance(0.95) else self.pick(["", "a b"])
        out = [name, tree, path]
        if self.chance(0.03):
            out.append("x")
        return out

    def meta(self):
        r = self.rng
        x = r.random()
        if x < 0.85:
            n = r.choice([1, 1, 2, 3])
            names = r.sample(self.META_NAMES, n)
            out = ["META"]
            for name in names:
                out += [name, self.pick(self.META_VALUES)]
            return out
        if x < 0.9:
            n = r.choice([16, 17])
            out = ["META"]
            for i in range(n):
                out += [f"k{i}", "v"]
            return out
        return self.pick([["META"], ["META", "user"], ["META", "User", "x"], ["META", "1a", "x"],
                          ["META", "x" * 33, "v"], ["META", "user", ""], ["META", "user", "a\tb"],
                          ["META", "user", "x" * 257], ["META", "user", "a", "user", "b"],
                          ["META", "user", "a", "META", "req", "b"], ["META", "metric", "x"],
                          ["META", "user", "é"]])

    def with_meta(self, cmd):
        """META among the options, or after the items (META ends a COST
        list), or after an ALSO list."""
        if self.chance(0.6):
            x = self.rng.random()
            if x < 0.25:
                return cmd + self.meta()
            up = [text(a).upper() for a in cmd]
            if x < 0.4 and "ALSO" in up:
                at = up.index("ALSO") + 2
                return cmd[:at] + self.meta() + cmd[at:]
            return cmd[:2] + self.meta() + cmd[2:]
        return cmd

    def c_reserve(self, tree):
        return self.with_meta(super().c_reserve(tree))

    def c_charge(self, tree):
        return self.with_meta(super().c_charge(tree))

    def c_grant(self, tree):
        out = ["QUOTA.GRANT", tree, self.pick(self.FPATHS), self.pick(self.APOLICIES),
               self.pick(["1", "5", "2.5", "0", "x"])]
        if self.chance(0.5):
            out += ["ID", self.pick(["g1", "g2", "g3"])]
        if self.chance(0.2):
            out += ["FOR", self.pick(["1s", "60s"])]
        return out

    def c_revoke(self, tree):
        return ["QUOTA.REVOKE", tree, self.pick(self.FPATHS), self.pick(self.APOLICIES),
                self.pick(["g1", "g2", "g3", "nope"])]

    def c_tree(self, tree):
        r = self.rng
        out = ["QUOTA.TREE", tree]
        if r.random() < 0.3:
            out.append(self.pick(self.FPATHS + ["p3"]))
        opts = []
        if r.random() < 0.5:
            opts.append(["TAG", self.pick(self.TAGS) if r.random() < 0.9 else self.pick(["bad tag", "", "x" * 65])])
        if r.random() < 0.2:
            opts.append(["DEPTH", self.pick(["0", "1", "2"])])
        if r.random() < 0.2:
            opts.append(["COUNT", self.pick(["1", "2", "3", "5"])])
        if r.random() < 0.4:
            opts.append(["FORMAT", "json"])
        if r.random() < 0.3:
            opts.append([self.kw("AFTER"), self.after_name()])
        r.shuffle(opts)
        out += [a for o in opts for a in o]
        if r.random() < 0.4:
            out.append(self.kw("ARCHIVED"))
            if r.random() < 0.05:
                out.append(self.kw("ARCHIVED"))
        return out

    def c_read(self, tree):
        return getattr(self, "c_" + self.pick(["get", "get", "tree", "tree", "holds", "events"]))(tree)

    def command(self):
        if self.queue:
            return self.queue.pop(0)
        cmd = super().command()
        if cmd[0] == "DEL":
            # The expiries due stored first (a failing write): the module's
            # timer may have written their ledger entries already, where
            # the library would drop its due holds with the tree.
            self.queue.insert(0, cmd)
            return ["QUOTA.EXTEND", cmd[1], "settle", "1000"]
        return cmd

    WEIGHTS = [
        ("label", 8), ("archive", 5), ("rule", 3), ("set", 6), ("unset", 0.5), ("grant", 2), ("revoke", 1),
        ("reset", 1), ("history", 0.3), ("delpath", 0.5), ("plan", 0.4), ("assign", 0.4), ("reserve", 20),
        ("commit", 8), ("release", 4), ("extend", 2), ("charge", 10), ("read", 12), ("clock", 10), ("del", 0.1),
    ]


def ledger_key(tree):
    """The ledger of a tree key (the hash-tag rule of usage.md §3)."""
    open_ = tree.find("{")
    if open_ >= 0:
        close = tree.find("}", open_ + 1)
        if close > open_ + 1:
            return tree + ":ledger"
    return "{" + tree + "}:ledger"


def ledgers_differ(mod, lua, label, trimmed=False):
    """Each tree's ledger on both servers, entry by entry (fields, not
    ids): the number of trees whose ledgers differ, each printed. When
    `trimmed` (a small ledger_len), only the newest entries both kept:
    XADD MAXLEN ~ trims whole stream nodes, whose size in bytes depends on
    the ids, which differ between the servers."""
    bad = 0
    for tree in TREES:
        key = ledger_key(tree)
        got = []
        for client in (mod, lua):
            try:
                got.append([[text(x) for x in fields] if isinstance(fields, list) else
                            [text(x) for kv in fields.items() for x in kv]
                            for _, fields in client.xrange(key, "-", "+")])
            except redis.ResponseError as e:
                got.append(str(e))
        if trimmed and isinstance(got[0], list) and isinstance(got[1], list):
            n = min(len(got[0]), len(got[1]))
            got = [got[0][len(got[0]) - n:], got[1][len(got[1]) - n:]]
        if got[0] != got[1]:
            bad += 1
            m, l = got
            first = next((i for i, (a, b) in enumerate(zip(m, l)) if a != b), min(len(m), len(l))) \
                if isinstance(m, list) and isinstance(l, list) else 0
            print(f"LEDGER MISMATCH {label} {key}: {len(m)} entries (module) vs {len(l)} (lua); "
                  f"first difference at entry {first}:\n  module: {m[first] if first < len(m) else None}\n"
                  f"  lua:    {l[first] if first < len(l) else None}", flush=True)
    return bad


def show(v, limit=6000):
    text = json.dumps(v, sort_keys=True, indent=1, default=repr) if not isinstance(v, str) else repr(v)
    return text if len(text) <= limit else text[:limit] + " ..."


def diff(a, b, where="reply"):
    """The first place where a and b differ, as text."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=repr):
            if k not in a:
                return f"{where}.{k}: only in lua"
            if k not in b:
                return f"{where}.{k}: only in module"
            d = diff(a[k], b[k], f"{where}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} elements (module) vs {len(b)} (lua)"
        for i, (x, y) in enumerate(zip(a, b)):
            d = diff(x, y, f"{where}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{where}: {a!r} (module) vs {b!r} (lua)"


def lua_keys_of(lua, tree):
    """The Lua side's keys of `tree`: the tree key and its companions."""
    tag = tree[tree.index("{"):tree.index("}") + 1] if "{" in tree and "}" in tree else "{" + tree + "}"
    prefix = f"{tag}quota:{tree}:"
    return [tree.encode()] + sorted(lua.scan_iter(match=prefix.replace("{", "\\{").replace("}", "\\}") + "*"))


META_SCRIPT = """
local b = redis.call('HGET', KEYS[1], '#')
if not b then return false end
local ok, m = pcall(cmsgpack.unpack, b)
if not ok or type(m) ~= 'table' then return false end
local meta = {}
for i = 1, 8 do meta[i] = tostring(m[i]) end
local e = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local f = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
return { meta, e[2] or false, f[2] or false, redis.call('HLEN', KEYS[4]),
    redis.call('ZSCORE', 'quota:due', KEYS[1]) or false }
"""


def meta_broken(lua, tree, index_kept):
    """What the Lua tree's '#' says is due, against what its companions hold
    (--invariants): the first expiry exactly, a forget bound no forget score
    is below, the live hold count, and (when nothing deleted the index
    behind the library's back) the index entry it says is there."""
    tag = tree[tree.index("{"):tree.index("}") + 1] if "{" in tree and "}" in tree else "{" + tree + "}"
    pre = f"{tag}quota:{tree}:"
    got = lua.eval(META_SCRIPT, 4, tree, pre + "expiry", pre + "forget", pre + "holds")
    if not got:
        return None
    meta, first_e, first_f, hlen, indexed_at = got
    meta = [m.decode() if isinstance(m, bytes) else m for m in meta]
    due_e, due_f, indexed, holds = meta[4:8]
    if due_e in ("nil", "false") and holds in ("nil", "false"):
        return None  # written by a library before 1.2.0
    head = float(first_e) if first_e else float("inf")
    if due_e != "false" and float(due_e) != head:
        return f"{tree}: '#' says the first expiry is {due_e}, the expiry set's first is {head}"
    if due_f != "false" and first_f and float(due_f) > float(first_f):
        return f"{tree}: '#' says nothing is forgotten before {due_f}, the forget set has {float(first_f)}"
    if holds != "false" and int(float(holds)) != hlen:
        return f"{tree}: '#' says {holds} live holds, the holds hash has {hlen}"
    if index_kept and indexed == "true":
        at = float(indexed_at) if indexed_at else float("inf")
        if at != head:
            return f"{tree}: '#' says the index of due trees has it at {head}, the index has {at}"
    return None


# The grants storage of a Lua tree against its policies (--invariants): the
# grants hash (`gen:i:id` a live grant, `gen:t:id` a remembered one) and the
# sorted sets :draw, :exp and :dead (lex order, `gen:` + fixed-width hex + id)
# hold only generations of policies with grant state (layout 4) in the tree
# (no orphans after UNSET, DELPATH, a new metric or a plan change); each
# policy has as many live grants as it says, each in the draw-down order under
# its key (priority, expiry with 0 last, seq) and, when it expires, in the
# expiry order; granted is the sum of their remaining; every remembered id is
# in the forgetting order under (ended, seq), and at most 10,000.
GRANTS_SCRIPT = """
local all = redis.call('HGETALL', KEYS[1])
if #all == 0 then
    return false  -- companions a DEL left belong to nobody until the next write
end
local ext = {}
for i = 1, #all, 2 do
    local f = all[i]
    if string.sub(f, 1, 1) ~= '#' then
        local ok, t = pcall(cmsgpack.unpack, all[i + 1])
        if ok and type(t) == 'table' and type(t[1]) == 'table' then
            for _, p in ipairs(t[1]) do
                if type(p) == 'table' and type(p[21]) == 'table' then
                    ext[tostring(p[10])] = { n = p[21][3], gx = p[21][2], name = p[1], path = f, gr = p[15],
                        live = 0, dead = 0, draw = 0, exp = 0, tomb = 0, sum = 0, minx = 0 }
                end
            end
        end
    end
end
local function hex(n)
    return string.format('%08x%08x', math.floor(n / 4294967296), n % 4294967296)
end
local function num(v)
    if type(v) == 'number' then return v end
    if type(v) == 'table' and type(v.m) == 'number' and type(v.s) == 'number' then return v.m / 10 ^ v.s end
    return nil
end
local g = redis.call('HGETALL', KEYS[2])
local live, dead = {}, {}
for i = 1, #g, 2 do
    local gen, kind, id = string.match(g[i], '^(%d+):([it]):(.+)$')
    if not gen then
        return 'unknown grants field ' .. g[i]
    end
    local p = ext[gen]
    if not p then
        return 'orphan grants field ' .. g[i]
    end
    local t = cmsgpack.unpack(g[i + 1])
    if t[1] ~= id then
        return 'field ' .. g[i] .. ' holds grant ' .. tostring(t[1])
    end
    if kind == 'i' then
        p.live = p.live + 1
        live[gen .. ':' .. string.format('%02x', t[5]) .. (t[6] == 0 and 'ffffffffffffffff' or hex(t[6])) .. hex(t[2]) .. id] = true
        if t[6] > 0 then
            live['x' .. gen .. ':' .. hex(t[6]) .. hex(t[2]) .. id] = true
            if p.minx == 0 or t[6] < p.minx then p.minx = t[6] end
        end
        local r = num(t[4])
        p.sum = (p.sum and r) and p.sum + r or nil
    else
        p.dead = p.dead + 1
        dead[gen .. ':' .. hex(t[10]) .. hex(t[2]) .. id] = true
    end
end
for _, spec in ipairs({ { KEYS[2] .. ':draw', '', 'draw' }, { KEYS[2] .. ':exp', 'x', 'exp' }, { KEYS[2] .. ':dead', 'd', 'tomb' } }) do
    for _, m in ipairs(redis.call('ZRANGE', spec[1], 0, -1)) do
        local gen = string.match(m, '^(%d+):')
        local p = gen and ext[gen]
        if not p then
            return 'orphan member of ' .. spec[3] .. ': ' .. m
        end
        local known = spec[2] == 'd' and dead[m] or live[spec[2] .. m]
        if not known then
            local extra = ''
            if spec[2] == 'd' then
                local gen2 = string.match(m, '^(%d+):')
                local id = string.sub(m, #gen2 + 34)
                local t = redis.call('HGET', KEYS[2], gen2 .. ':t:' .. id)
                extra = t and (' (remembered as ended ' .. tostring(cmsgpack.unpack(t)[10]) .. ', seq ' .. tostring(cmsgpack.unpack(t)[2]) .. ')') or ' (no record)'
                local l = redis.call('HGET', KEYS[2], gen2 .. ':i:' .. id)
                if l then extra = extra .. ' (live)' end
            end
            return 'member of ' .. spec[3] .. ' without its grant: ' .. m .. extra
        end
        p[spec[3]] = p[spec[3]] + 1
    end
end
for gen, p in pairs(ext) do
    local who = 'policy ' .. p.name .. ' at ' .. p.path .. ' (generation ' .. gen .. ')'
    if p.live ~= p.n or p.draw ~= p.n then
        return who .. ' says ' .. p.n .. ' live grants, stored ' .. p.live .. ', in draw order ' .. p.draw
    end
    local nx = 0
    for m in pairs(live) do
        if string.sub(m, 1, #gen + 2) == 'x' .. gen .. ':' then nx = nx + 1 end
    end
    if p.exp ~= nx then
        return who .. ': ' .. nx .. ' live grants expire, ' .. p.exp .. ' in expiry order'
    end
    if p.gx ~= p.minx then
        return who .. ' says next expiry ' .. p.gx .. ', its grants ' .. p.minx
    end
    if p.sum and num(p.gr) and math.abs(p.sum - num(p.gr)) > 1e-6 * math.max(1, math.abs(p.sum)) then
        return who .. ' says granted ' .. tostring(num(p.gr)) .. ', its grants hold ' .. p.sum
    end
    if p.tomb ~= p.dead or p.dead > 10000 then
        return who .. ' remembers ' .. p.dead .. ' ids, ' .. p.tomb .. ' in forgetting order'
    end
end
return false
"""


def grants_broken(lua, tree):
    """The Lua tree's grants hash against its policies (GRANTS_SCRIPT)."""
    tag = tree[tree.index("{"):tree.index("}") + 1] if "{" in tree and "}" in tree else "{" + tree + "}"
    got = lua.eval(GRANTS_SCRIPT, 2, tree, f"{tag}quota:{tree}:grants")
    return got.decode() if isinstance(got, bytes) else got


def behind_the_back(rng, mod, lua, lua_port, args, snaps, both, i):
    """One change behind the library's back, made alike on both servers (see --behind)."""
    tree = rng.choice(TREES)
    how = rng.choice(["wipe", "snap", "restore", "restore", "swapdb", "reload"])
    if args.focus == "records" and how in ("wipe", "snap", "restore"):
        # The expiries due stored first on both: the module's timer may have
        # stored them (and written their ledger entries) where the library's
        # keys still hold the due holds, which a wipe would drop without an
        # entry and a restore of a snapshot would expire into a second one.
        both(["QUOTA.EXTEND", tree, "settle", "1000"], i)
    if how == "wipe":
        mod.delete(tree)
        lua.delete(*lua_keys_of(lua, tree))
    elif how == "snap":
        snaps[tree] = (mod.dump(tree), {k: lua.dump(k) for k in lua_keys_of(lua, tree)})
    elif how == "restore" and tree in snaps:
        m, l = snaps[tree]
        mod.delete(tree)
        if m is not None:
            mod.restore(tree, 0, m)
        lua.delete(*lua_keys_of(lua, tree))
        for k, v in l.items():
            if v is not None:
                lua.restore(k, 0, v)
    elif how == "swapdb":
        for c in (mod, lua):
            c.execute_command("SWAPDB", 0, 1)
        both(["QUOTA.SET", tree, "a", "p", "METRIC", "credits", "LIMIT", "7"], i)
        both(["QUOTA.CHARGE", tree, "PATH", "a", "COST", "credits", "1"], i)
        for c in (mod, lua):
            c.execute_command("SWAPDB", 0, 1)
    elif how == "reload" and not args.source:
        library = os.environ.get("QUOTA_LIBRARY")  # the library the run started with, not the embedded one
        subprocess.run(
            [LOADER, f"redis://127.0.0.1:{lua_port}", "--test-clock", "--force"]
            + [a for kv in args.set for a in ("--set", kv)] + (["--file", library] if library else []),
            capture_output=True, timeout=60)
    if args.verbose:
        print(f"#{i} behind the back: {how} {tree}")


def dump_all(client):
    """Every key's type and content (DUMP bytes may differ by encoding: a hash
    built by other steps may be a listpack on one server, a table on the other)."""
    out = {}
    for k in client.scan_iter(count=1000):
        t = client.type(k)
        t = t.decode() if isinstance(t, bytes) else t
        if t == "hash":
            v = client.hgetall(k)
        elif t == "zset":
            v = client.zrange(k, 0, -1, withscores=True)
        elif t == "list":
            v = client.lrange(k, 0, -1)
        elif t == "set":
            v = sorted(client.smembers(k))
        elif t == "string":
            v = client.get(k)
        else:
            v = client.dump(k)
        out[k] = (t, v, client.pttl(k) > 0)
    return out


def copies_differ(workdir, name, primary, replica, procs, extra):
    """--replica: the replica's keys and those of a server started from the
    primary's AOF DUMP as the primary's. Returns the number of differences."""
    offset = primary.execute_command("WAIT", 1, 10000)
    want = dump_all(primary)
    bad = 0
    got = dump_all(replica)
    if got != want:
        keys = sorted(set(got) ^ set(want)) or sorted(k for k in want if got.get(k) != want[k])
        print(f"REPLICA MISMATCH {name} ({offset} replicas acked): {len(keys)} keys differ, e.g. {keys[:5]}", flush=True)
        bad += 1
    d = os.path.join(workdir, name + "-aof")
    shutil.copytree(os.path.join(workdir, name, "appendonlydir"), os.path.join(d, "appendonlydir"))
    port = free_port()
    proc = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                             "yes", "--dir", d, "--logfile", os.path.join(d, "redis.log")] + extra,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(proc)
    client = redis.Redis(host="127.0.0.1", port=port, protocol=3)
    deadline = time.time() + 30
    while True:
        try:
            if client.info("persistence").get("loading") == 0:
                break
        except (redis.ConnectionError, OSError, redis.exceptions.BusyLoadingError):
            pass
        if time.time() > deadline or proc.poll() is not None:
            print(f"AOF MISMATCH {name}: the server started from the AOF did not come up", flush=True)
            return bad + 1
        time.sleep(0.05)
    got = dump_all(client)
    if got != want:
        keys = sorted(set(got) ^ set(want)) or sorted(k for k in want if got.get(k) != want[k])
        print(f"AOF MISMATCH {name}: {len(keys)} keys differ, e.g. {keys[:5]}", flush=True)
        bad += 1
    if not bad:
        print(f"lua_parity: {name}: the replica and a server started from the AOF hold the primary's "
              f"{len(want)} keys", flush=True)
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=20260131)
    ap.add_argument("--ops", type=int, default=8000)
    ap.add_argument("--source", action="store_true",
                    help="FUNCTION LOAD lua/quota.lua (test clock on) instead of the library quota-load embeds")
    ap.add_argument("--max-mismatches", type=int, default=1,
                    help="stop after this many mismatches (later ones often follow from the first)")
    ap.add_argument("--verbose", action="store_true", help="print every command")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a setting on both: a module argument, quota-load --set (events_len, tombstone_ttl, ...)")
    ap.add_argument("--upgrade-from", metavar="LIB",
                    help="the Lua side starts with library LIB (e.g. 1.0.0) and is upgraded to this checkout's by "
                         "quota-load at --upgrade-at, under live trees")
    ap.add_argument("--upgrade-at", type=int, default=None, metavar="OP",
                    help="the op at which --upgrade-from upgrades (default: half of --ops)")
    ap.add_argument("--invariants", action="store_true",
                    help="after every command, check what each Lua tree's '#' says is due against its companion "
                         "keys (first expiry, forget bound, live holds, index entry)")
    ap.add_argument("--flip-with", metavar="LIB",
                    help="every --flip-every ops, load LIB in place of the current library (a downgrade) and back: "
                         "a mixed-version rollout where each library writes trees the other wrote")
    ap.add_argument("--flip-every", type=int, default=200, metavar="N")
    ap.add_argument("--behind", type=float, default=0.0, metavar="P",
                    help="before each op, with probability P, change trees behind the library's back on both "
                         "servers: DEL of a tree with its companions, a DUMP snapshot of a tree put back later "
                         "by RESTORE REPLACE, a write in another database through SWAPDB, or the library "
                         "loaded again (its caches dropped)")
    ap.add_argument("--replica", action="store_true",
                    help="the Lua server runs with AOF and a replica; at the end every key of the replica, and of "
                         "a server started from the AOF, must DUMP as the primary's")
    ap.add_argument("--pubsub", action="store_true",
                    help="subscribe to quota:events:* on both servers and compare what each published, channel by "
                         "channel (the module's trailing expired events aside)")
    ap.add_argument("--collate", action="store_true",
                    help="the Lua server runs under en_US.UTF-8 (built by localedef when missing), whose string "
                         "collation is not bytewise: orderings the library makes with Lua's < would differ")
    ap.add_argument("--focus", choices=["holds", "plans", "grants", "access", "usage", "records", "cycles"],
                    help="holds: a small tree where holds, policy changes and exact due times meet (FocusGen); "
                         "plans: trees following plans that change under them (PlanGen); grants: credits, grants "
                         "with expiry, priority and ids, their draws and ends (GrantGen); access: access rules "
                         "and in-flight limits judged on reservations and charges (AccessGen); usage: usage buckets and "
                         "QUOTA.USAGE, series past usage_series, the clock past retention (UsageGen); records: META, "
                         "labels, archive and the ledger, compared entry by entry (RecordsGen)")
    args = ap.parse_args()
    if args.pubsub and args.behind:
        # the write --behind makes through SWAPDB runs on the library's test
        # clock of the other database: its events carry another time
        ap.error("--pubsub does not go with --behind")

    build_if_missing()
    rng = random.Random(args.seed)
    starts = CYCLE_STARTS if args.focus == "cycles" else STARTS
    start = datetime.datetime(*starts[args.seed % len(starts)], tzinfo=datetime.timezone.utc)
    start_ms = int(start.timestamp()) * 1000
    gen = FocusGen(rng, start_ms) if args.focus == "holds" else PlanGen(rng) if args.focus == "plans" else \
        GrantGen(rng, start_ms) if args.focus == "grants" else AccessGen(rng, start_ms) if args.focus == "access" \
        else UsageGen(rng, start_ms) if args.focus == "usage" \
        else RecordsGen(rng, start_ms) if args.focus == "records" else CyclesGen(rng) if args.focus == "cycles" \
        else Gen(rng)
    # (A run that starts on or flips to an older library has no ledger on
    # its Lua side then: it compares no ledgers.)
    ledgers = args.focus == "records" and not (args.upgrade_from or args.flip_with)
    if ledgers and not any(kv.startswith("ledger_len=") for kv in args.set):
        args.set.append("ledger_len=100000")
    trimmed = any(kv.startswith("ledger_len=") and int(kv.split("=", 1)[1] or 0) < 100000 for kv in args.set)
    workdir = tempfile.mkdtemp(prefix="lua_parity_")
    procs = []
    mismatches = 0
    done = 0
    counts = {}
    t0 = time.time()
    try:
        module_args = ["--loadmodule", MODULE, "TEST_CLOCK", "yes"] + [a for kv in args.set for a in kv.split("=", 1)]
        # --replica copies the AOF while the primary runs. With the default
        # `appendfsync everysec` Redis postpones a write() for up to 2 s while a
        # background fsync is slow (CI disks), so the copy could miss the last
        # commands; `no` writes every event-loop turn (the page cache is enough
        # for a copy on the same machine).
        aof = ["--appendonly", "yes", "--appendfsync", "no"]
        proc, mod_port, mod = start_server(workdir, "module",
                                           aof + module_args if args.replica else module_args)
        procs.append(proc)
        env = collating_env(workdir) if args.collate else None
        proc, lua_port, lua = start_server(workdir, "lua", aof if args.replica else [], env)
        procs.append(proc)
        if env is not None:
            got = lua.eval("return tostring('a' < 'B')", 0)
            print(f"lua_parity: --collate: the Lua server runs under {env['LC_ALL']} ('a' < 'B' in Lua: "
                  f"{got.decode() if isinstance(got, bytes) else got})", flush=True)
        load_library(lua_port, lua, args.source, args.set, args.upgrade_from)
        snaps = {}
        published = (Published(mod_port), Published(lua_port)) if args.pubsub else None
        upgrade_at = args.upgrade_at if args.upgrade_at is not None else args.ops // 2
        replica = None
        if args.replica:
            proc, _, replica = start_server(workdir, "replica", ["--replicaof", "127.0.0.1", str(lua_port)])
            procs.append(proc)
            proc, _, mod_replica = start_server(workdir, "module-replica",
                                                ["--replicaof", "127.0.0.1", str(mod_port)] + module_args)
            procs.append(proc)

        # Whether the Lua side runs an older library, whose replies lack
        # the fields of `hidden`. Grants are never sent to one from before
        # them (their GRANT meant another thing), and never in a run that
        # flips back to one: a tree that had a grant is refused by it.
        older_library = bool(args.upgrade_from)
        hidden = older_fields(args.upgrade_from or args.flip_with or "")
        # Likewise access rules and in-flight policies (1.5.0); a 1.4.0 has grants.
        older = args.upgrade_from or args.flip_with or ""
        no_grants = bool(older) and "1.4." not in os.path.basename(older)
        no_access = bool(older)
        no_records = bool(older)
        # And zones and week/year anchors (1.8.0): every older library is
        # from before them.
        no_zones = bool(older)

        def both(cmd, i):
            nonlocal mismatches
            m = norm(call(mod, cmd))
            l = norm(call(lua, lua_command(cmd)))
            if is_json_tree(cmd):
                m = json.loads(m) if isinstance(m, str) else m
                l = json.loads(l) if isinstance(l, str) else l
            if older_library:
                m, l = without_fields(m, hidden), without_fields(l, hidden)
            name = cmd[0].upper()
            counts[name] = counts.get(name, 0) + 1
            if args.verbose:
                print(f"#{i} {cmd}\n   -> {json.dumps(m, sort_keys=True, default=repr)}")
            if m != l:
                mismatches += 1
                print(f"MISMATCH seed={args.seed} op={i}: {cmd}\n  first difference: {diff(m, l)}\n"
                      f"  module: {show(m)}\n  lua:    {show(l)}", flush=True)
            return m

        setup = [["QUOTA.DEBUG", "CLOCK", "SET", str(start_ms)], ["SET", "plain", "x"]]
        setup += [["QUOTA.PRICE", "SET", k, v] for k, v in PRICES.items()]
        for i, cmd in enumerate(setup):
            both(cmd, -len(setup) + i)
        for i in range(args.ops):
            if mismatches >= args.max_mismatches:
                break
            if args.upgrade_from and i == upgrade_at:
                load_library(lua_port, lua, False, args.set)
                older_library = False
                no_grants = bool(args.flip_with) and "1.4." not in os.path.basename(args.flip_with)
                no_access = bool(args.flip_with)
                no_records = bool(args.flip_with)
                no_zones = bool(args.flip_with)
                print(f"lua_parity: upgraded the library at op {i}", flush=True)
            if args.flip_with and i > 0 and i % args.flip_every == 0:
                old = (i // args.flip_every) % 2 == 1
                load_library(lua_port, lua, False, args.set, args.flip_with if old else None, downgrade=old)
                older_library = old
                if args.verbose:
                    print(f"#{i} library: {'the older ' + args.flip_with if old else 'the current one'}")
            if args.behind and rng.random() < args.behind:
                behind_the_back(rng, mod, lua, lua_port, args, snaps, both, i)
            if isinstance(gen, GrantGen):
                gen.no_grants = no_grants
            cmd = gen.command()
            if no_grants and grant_command(cmd) or no_access and access_command(cmd) or \
                    no_records and records_command(cmd) or no_zones and zone_command(cmd):
                cmd = ["QUOTA.GET", cmd[1] if len(cmd) > 1 and cmd[0] != "QUOTA.PLAN" else TREES[0], "/"]
            if published and cmd[0] == "DEL":
                # The expiries due stored first (a failing write, on both):
                # the module's timer may have published their `expired`
                # events already, where the library would drop its due
                # holds with the tree and publish nothing.
                both(["QUOTA.EXTEND", cmd[1], "settle", "1000"], i)
            reply = both(cmd, i)
            gen.saw(cmd, reply)
            if ledgers and i % 25 == 24:
                # A write on each tree stores the expiries due, whose
                # entries the module's timer may have written already.
                for t in TREES:
                    both(["QUOTA.EXTEND", t, "settle", "1000"], i)
                mismatches += ledgers_differ(mod, lua, f"seed={args.seed} op={i} after {cmd}", trimmed)
            if args.focus == "access":
                bad = gen.broken(cmd, reply)
                if bad:
                    mismatches += 1
                    print(f"INFLIGHT USED seed={args.seed} op={i} after {cmd}: {bad}", flush=True)
            if args.focus == "holds" and i % 5 == 4:
                for t in TREES[:2]:
                    bad = gen.held_mismatch(mod, t)
                    if bad:
                        mismatches += 1
                        print(f"HELD MISMATCH seed={args.seed} op={i} after {cmd}: {bad}", flush=True)
            if args.invariants:
                for t in TREES:
                    bad = meta_broken(lua, t, not args.behind) or grants_broken(lua, t)
                    if bad:
                        mismatches += 1
                        print(f"META MISMATCH seed={args.seed} op={i} after {cmd}: {bad}", flush=True)
            done += 1
            if published and i % 100 == 99:
                for p in published:
                    p.drain()
        if published:
            for p in published:
                p.drain(wait=0.3)
            mismatches += published_differ(*published)
            print(f"lua_parity: --pubsub: {sum(len(v) for v in published[0].channels.values())} messages published "
                  f"by the module, {sum(len(v) for v in published[1].channels.values())} by the library, on "
                  f"{len(published[0].channels)} channels ({kinds(published[1])})", flush=True)
        # the clocks agree at the end
        both(["QUOTA.DEBUG", "CLOCK", "GET"], args.ops)
        if ledgers:
            for t in TREES:
                both(["QUOTA.EXTEND", t, "settle", "1000"], args.ops)
            mismatches += ledgers_differ(mod, lua, f"seed={args.seed} at the end", trimmed)
        if replica is not None:
            mismatches += copies_differ(workdir, "lua", lua, replica, procs, [])
            mismatches += copies_differ(workdir, "module", mod, mod_replica, procs, module_args)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    top = ", ".join(f"{k[6:].lower() if k.startswith('QUOTA.') else k.lower()} {v}"
                    for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    print(f"lua_parity: seed {args.seed}, {done} ops, {mismatches} mismatches ({time.time() - t0:.1f}s; {top})")
    return 1 if mismatches or not done else 0


if __name__ == "__main__":
    sys.exit(main())
