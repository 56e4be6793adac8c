#!/usr/bin/env python3
"""The Lua library's stored layout is a format: an upgrade must read the trees
an older library wrote.

  python3 tests/lua_layout.py                   the upgrade test (make test-lua)
  python3 tests/lua_layout.py --write v1|v3|v4|v5|v6 [--file LIB]
                                                writes tests/fixtures/lua_layout_v1.json
                                                (or _v3, _v4, _v5, _v6) from LIB (default: the library
                                                quota-load embeds)

--write builds a tree with the library it is given (holds, a multi-item hold
on two paths, history from closed periods, rollover, a rolling window,
finished and forgotten ids, events, a grant, service filters), under the test
clock, and stores in the fixture: the raw bytes of every key, the clock, and
the replies of reads (GET, TREE, HOLDS, EVENTS, HISTORY) and then of writes
(repeats of finished ids, a commit, a release, a reservation, a charge) and
of the reads after them. lua_layout_v1.json was written by the library of
commit 3ba2ff4, library 1.0.0 (layout 1: the tree's "#" field had no
version), kept as tests/fixtures/quota-1.0.0.lua:
    python3 tests/lua_layout.py --write v1 --file tests/fixtures/quota-1.0.0.lua

lua_layout_v3.json was written by library 1.3.0 (layout 3, plans), with
    python3 tests/lua_layout.py --write v3 --file lua/quota.lua
from BUILD_V3: plan "pro" at version 2 then 3, a tree following it with
members/u1 synced at version 2 (stale: its node epoch is below the tree's),
an override (members/u2's tree policy "allowance"), members/u3 given by the
plan on first use with a live hold r1, a tree policy of its own, and plan
history; a tree whose plan "gone" was deleted (plan_missing 1); a tree that
followed "pro" and follows none now; a tree behind the book ("basic"
changed since its last write); and quota:plans. Its reads (with the plan
fields) must reply exactly as recorded and change nothing, its writes
(WRITES_V3: a reservation on the stale node, a commit of r1, ...) reply as
recorded and leave every tree in layout 3. When a library after 1.3.0 adds
reply fields, strip them as without_newer_fields does for v1.

lua_layout_v4.json was written by library 1.4.0 (layout 4, grants) from
BUILD_V4 (see there); test_grants_layout checks that a tree without grants is
stored byte for byte as 1.3.0 (tests/fixtures/quota-1.3.0.lua) stores it, that
1.3.0 refuses layout 4 unchanged, and that a granted amount 1.3.0 stored reads
as the PERIOD grant "legacy". Replies of the older fixtures are compared
without the fields 1.4.0 added (granted, drawn; GRANT's grant and duplicate).

lua_layout_v5.json was written by library 1.5.0 (layout 5, access rules and
INFLIGHT policies) from BUILD_V5; test_access_layout checks that a tree
without rules or INFLIGHT is stored byte for byte as 1.4.0
(tests/fixtures/quota-1.4.0.lua) stores it and that 1.4.0 refuses layout 5
unchanged. Checks of the fixtures before 1.5.0 are compared without the
`kind` "policy" that 1.5.0 adds (without_kind).

lua_layout_v6.json was written by library 1.6.0 (layout 6: labels, archive
and META) from BUILD_V6; test_records_layout checks that a tree without them
is stored byte for byte as 1.5.0 (tests/fixtures/quota-1.5.0.lua) stores it
and that 1.5.0 refuses layout 6 unchanged.

test_cycles_layout checks that a tree without zones or week and year anchors
is stored byte for byte as 1.7.0 (tests/fixtures/quota-1.7.0.lua) stores it,
that a tree with one (QUOTA.SET's, or a plan's stored in a node) is in layout
7 (1.8.0), and that 1.7.0 refuses layout 7 unchanged.

The library of this checkout is loaded with quota-load --file lua/quota.lua
(QUOTA_LIBRARY=FILE loads another), so a build older than the checkout's
library tests the library all the same.

Every fixture's replies are compared without the `base_limit` that policy
maps show since (the LIMIT set, while rollover or grants make the allowance
differ: without_base_limit checks that it differs from `limit`).

test_corrupt_records checks that stored labels or a hold's META that no
library writes are refused with ERR layout, changing nothing.

The test restores each fixture into a fresh server, loads the library of this
checkout with quota-load, and checks every reply equals the recorded one, that
the tree's "#" field then carries layout 2 and a node written since stores its
integer amounts as plain numbers (layout 2), that a tree of
an unknown (newer) layout is refused with a clear error and left unchanged,
and that a read of an old tree changes nothing.
"""

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import redis

from backend import free_port, lua_command

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOADER = os.environ.get("QUOTA_LOAD", os.path.join(ROOT, "target", "release", "quota-load"))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
# The library of this checkout, loaded with quota-load --file (the one
# quota-load embeds is this file as of its last build).
CURRENT = os.environ.get("QUOTA_LIBRARY", os.path.join(ROOT, "lua", "quota.lua"))

# 2026-01-30 12:00 UTC: month windows close two days later.
T0 = 1769774400000
DAY = 86400000
TREE = "{acme}t"

# (clock advance in ms, command) run by --write to build the tree.
BUILD = [
    (0, ["QUOTA.SET", TREE, "/", "credits", "METRIC", "credits", "LIMIT", "1000", "WINDOW", "month", "ROLLOVER",
         "2500"]),
    (0, ["QUOTA.SET", TREE, "/", "requests", "METRIC", "requests", "LIMIT", "100", "MODE", "block", "WINDOW", "day"]),
    (0, ["QUOTA.SET", TREE, "a", "chat", "METRIC", "credits", "LIMIT", "300", "WARN", "50,75", "SERVICE", "chat"]),
    (0, ["QUOTA.SET", TREE, "a/b", "hourly", "METRIC", "credits", "LIMIT", "50", "WINDOW", "rolling", "1h"]),
    (0, ["QUOTA.SET", TREE, "a/b", "tok", "METRIC", "tokens", "LIMIT", "10.5", "MODE", "open", "WINDOW", "hour"]),
    (0, ["QUOTA.SET", TREE, "c/d/e", "cap", "METRIC", "credits", "LIMIT", "5", "WINDOW", "month", "ANCHOR", "31"]),
    (1000, ["QUOTA.CHARGE", TREE, "PATH", "a/b", "SERVICE", "chat", "COST", "credits", "12.25", "requests", "1",
            "tokens", "3"]),
    (1000, ["QUOTA.RESERVE", TREE, "PATH", "c/d/e", "ID", "old-1", "COST", "credits", "2"]),
    (0, ["QUOTA.COMMIT", TREE, "old-1", "COST", "credits", "1.5"]),
    (0, ["QUOTA.CHARGE", TREE, "PATH", "a", "ID", "old-charge", "COST", "credits", "1"]),
    (600000, ["QUOTA.CHARGE", TREE, "PATH", "a/b", "COST", "credits", "140", "tokens", "9"]),
    (0, ["QUOTA.GRANT", TREE, "/", "credits", "10"]),
    # The month and the day close: history, rollover, reset events; old ids are forgotten.
    (3 * DAY, ["QUOTA.CHARGE", TREE, "PATH", "a/b", "SERVICE", "chat", "COST", "credits", "0.0000000001"]),
    (1000, ["QUOTA.RESERVE", TREE, "PATH", "a/b", "ALSO", "c/d/e", "ID", "job-1", "TTL", "3600000", "COST", "credits",
            "1", "tokens", "2", "COST", "credits", "2.5"]),
    (1000, ["QUOTA.RESERVE", TREE, "PATH", "a", "ID", "job-2", "TTL", "5000", "SERVICE", "chat", "COST", "credits",
            "3"]),
    (0, ["QUOTA.RESERVE", TREE, "PATH", "a/b", "TTL", "7200000", "COST", "credits", "4"]),
    (0, ["QUOTA.RESERVE", TREE, "PATH", "c/d/e", "ID", "job-3", "TTL", "600000", "COST", "credits", "1"]),
    (0, ["QUOTA.COMMIT", TREE, "job-3", "COST", "credits", "0.75"]),
    (0, ["QUOTA.RESERVE", TREE, "PATH", "a/b", "ID", "job-4", "TTL", "600000", "COST", "credits", "1",
         "COST", "credits", "1"]),
    (0, ["QUOTA.RELEASE", TREE, "job-4", "ITEM", "0"]),
    (0, ["QUOTA.CHARGE", TREE, "PATH", "a/b", "ID", "charge-1", "COST", "requests", "2"]),
    (0, ["QUOTA.RESET", TREE, "a/b", "tok"]),
    # job-2 expires (an expired event, a finished id).
    (10000, ["QUOTA.CHARGE", TREE, "PATH", "/", "COST", "requests", "1"]),
]

READS = [
    ["QUOTA.GET", TREE, "/"],
    ["QUOTA.GET", TREE, "a"],
    ["QUOTA.GET", TREE, "a/b"],
    ["QUOTA.GET", TREE, "c/d/e"],
    ["QUOTA.GET", TREE, "c/d"],
    ["QUOTA.TREE", TREE, "/"],
    ["QUOTA.TREE", TREE, "/", "FORMAT", "JSON"],
    ["QUOTA.HOLDS", TREE, "/"],
    ["QUOTA.HOLDS", TREE, "c"],
    ["QUOTA.EVENTS", TREE],
    ["QUOTA.EVENTS", TREE, "SINCE", "3", "COUNT", "4"],
    ["QUOTA.HISTORY", TREE, "/", "credits"],
    ["QUOTA.HISTORY", TREE, "/", "requests"],
    ["QUOTA.HISTORY", TREE, "a/b", "tok"],
    ["QUOTA.HISTORY", TREE, "c/d/e", "cap"],
]

WRITES = [
    ["QUOTA.RESERVE", TREE, "PATH", "a", "ID", "job-2", "TTL", "5000", "SERVICE", "chat", "COST", "credits", "3"],
    ["QUOTA.RESERVE", TREE, "PATH", "c/d/e", "ID", "job-3", "COST", "credits", "1"],
    ["QUOTA.COMMIT", TREE, "job-3"],
    ["QUOTA.CHARGE", TREE, "PATH", "a/b", "ID", "charge-1", "COST", "requests", "2"],
    ["QUOTA.RELEASE", TREE, "job-4", "ITEM", "0"],
    ["QUOTA.COMMIT", TREE, "job-4", "ITEM", "1", "COST", "credits", "0.5"],
    ["QUOTA.COMMIT", TREE, "job-1", "ITEM", "0", "COST", "credits", "1", "tokens", "1"],
    ["QUOTA.RELEASE", TREE, "job-1"],
    ["QUOTA.EXTEND", TREE, "job-1", "1000"],
    ["QUOTA.RESERVE", TREE, "PATH", "a/b", "ID", "new-1", "COST", "credits", "2.5", "tokens", "1"],
    ["QUOTA.CHARGE", TREE, "PATH", "c/d/e", "CHECK", "COST", "credits", "1"],
    ["QUOTA.CHARGE", TREE, "PATH", "c/d/e", "CHECK", "COST", "credits", "100"],
    ["QUOTA.RESERVE", TREE, "PATH", "a/b", "BRIEF", "COST", "credits", "1", "requests", "1"],
    ["QUOTA.SET", TREE, "a/b/x", "small", "METRIC", "credits", "LIMIT", "1"],
    ["QUOTA.GRANT", TREE, "a", "chat", "5"],
]


# Layout 3 (library 1.3.0): trees that follow plans. Plan "pro" at version 2,
# then 3 (the shape of the module's tests/fixtures/tree-v2.bin, plus more trees).
PRO_V2 = ('{"paths": {"/": {"monthly": {"metric": "credits", "limit": "1000", "window": "month"}}, '
          '"members/*": {"allowance": {"metric": "credits", "limit": "50"}}}, "version": 2}')
PRO_V3 = PRO_V2.replace('"50"', '"80"').replace('"version": 2', '"version": 3')
BASIC_V1 = '{"paths": {"/": {"daily": {"metric": "requests", "limit": "10", "window": "day"}}}}'
BASIC_V2 = '{"paths": {"/": {"daily": {"metric": "requests", "limit": "20", "window": "day"}}}}'
GONE = '{"paths": {"*": {"seats": {"metric": "seats", "limit": "3", "mode": "open"}}}}'
P3, G3, N3, B3 = "{acme}p", "{acme}g", "{acme}n", "{acme}b"

BUILD_V3 = [
    (0, ["QUOTA.PLAN", "SET", "pro", PRO_V2]),
    (0, ["QUOTA.ASSIGN", P3, "pro"]),
    # members/u1 is synced at epoch 1 (plan version 2) and charged in two
    # months: the plan policy "monthly" has history.
    (0, ["QUOTA.CHARGE", P3, "PATH", "members/u1", "COST", "credits", "7"]),
    # An override: a tree policy with the plan policy's name.
    (0, ["QUOTA.SET", P3, "members/u2", "allowance", "METRIC", "credits", "LIMIT", "500"]),
    (3 * DAY, ["QUOTA.CHARGE", P3, "PATH", "members/u1", "ID", "c-1", "COST", "credits", "2.5"]),
    # Version 3: the tree takes it at its next write (epoch 2); members/u1
    # is not on that write's way and stays synced at epoch 1 (stale).
    (1000, ["QUOTA.PLAN", "SET", "pro", PRO_V3]),
    # members/u3 is given by the plan on first use, with a live hold on it.
    (1000, ["QUOTA.RESERVE", P3, "PATH", "members/u3", "ID", "r1", "TTL", str(DAY), "COST", "credits", "20"]),
    (0, ["QUOTA.SET", P3, "projects", "cap", "METRIC", "credits", "LIMIT", "100"]),
    # A tree whose plan was deleted keeps what it saw (plan_missing 1).
    (0, ["QUOTA.PLAN", "SET", "gone", GONE]),
    (0, ["QUOTA.ASSIGN", G3, "gone"]),
    (0, ["QUOTA.CHARGE", G3, "PATH", "team/a", "COST", "seats", "2"]),
    (0, ["QUOTA.PLAN", "DEL", "gone"]),
    # A tree that followed a plan and follows none now (its "#plan" names none).
    (0, ["QUOTA.ASSIGN", N3, "pro"]),
    (0, ["QUOTA.CHARGE", N3, "PATH", "members/x", "COST", "credits", "1"]),
    (0, ["QUOTA.ASSIGN", N3, "NONE"]),
    # A tree behind the book: "basic" changed since its last write, which
    # reads show taken and the next write takes.
    (0, ["QUOTA.PLAN", "SET", "basic", BASIC_V1]),
    (0, ["QUOTA.ASSIGN", B3, "basic"]),
    (0, ["QUOTA.CHARGE", B3, "PATH", "/", "COST", "requests", "4"]),
    (0, ["QUOTA.PLAN", "SET", "basic", BASIC_V2]),
]

READS_V3 = [
    ["QUOTA.PLAN", "LIST"],
    ["QUOTA.PLAN", "GET", "pro"],
    ["QUOTA.GET", P3, "/"],
    ["QUOTA.GET", P3, "members"],
    ["QUOTA.GET", P3, "members/u1"],
    ["QUOTA.GET", P3, "members/u2"],
    ["QUOTA.GET", P3, "members/u3"],
    ["QUOTA.GET", P3, "members/u4"],
    ["QUOTA.GET", P3, "projects"],
    ["QUOTA.TREE", P3, "/"],
    ["QUOTA.TREE", P3, "/", "FORMAT", "JSON"],
    ["QUOTA.HOLDS", P3, "/"],
    ["QUOTA.HOLDS", P3, "members/u3"],
    ["QUOTA.HISTORY", P3, "/", "monthly"],
    ["QUOTA.HISTORY", P3, "members/u1", "allowance"],
    ["QUOTA.EVENTS", P3],
    ["QUOTA.GET", G3, "/"],
    ["QUOTA.GET", G3, "team/a"],
    ["QUOTA.TREE", G3, "/"],
    ["QUOTA.EVENTS", G3],
    ["QUOTA.GET", N3, "members/x"],
    ["QUOTA.TREE", N3, "/"],
    ["QUOTA.GET", B3, "/"],
    ["QUOTA.TREE", B3, "/", "FORMAT", "JSON"],
]

WRITES_V3 = [
    # The stale node is synced (allowance 50 -> 80, usage kept) and judged.
    ["QUOTA.RESERVE", P3, "PATH", "members/u1", "ID", "r2", "COST", "credits", "70"],
    ["QUOTA.CHARGE", P3, "PATH", "members/u1", "ID", "c-1", "COST", "credits", "2.5"],
    ["QUOTA.COMMIT", P3, "r1", "COST", "credits", "15"],
    ["QUOTA.RESERVE", P3, "PATH", "members/u5", "COST", "credits", "81"],
    ["QUOTA.RESERVE", G3, "PATH", "team/b", "COST", "seats", "4"],
    ["QUOTA.CHARGE", B3, "PATH", "/", "COST", "requests", "1"],
    ["QUOTA.CHARGE", N3, "PATH", "members/x", "COST", "credits", "1"],
]

# lua_layout_v4.json: written by library 1.4.0 (layout 4, grants) with
#     python3 tests/lua_layout.py --write v4 --file lua/quota.lua
# A wallet tree: a month policy with LOW and grants of every kind (FOR,
# EXPIRES, PERIOD, PRIORITY, NOTE), draws, a grant used up and one revoked
# (remembered ids), a grant expired and one ended with its period (events
# grant_expired, low), history with granted; a rolling policy that drew; a
# finished charge whose reply drew; and a tree following a plan with LOW
# and a grant on a plan policy. Its reads must reply exactly as recorded
# and change nothing; its writes reply as recorded and keep layout 4.
W4, Q4 = "{acme}w", "{acme}q"
PLAN_V4 = ('{"paths": {"/": {"monthly": {"metric": "credits", "limit": "100", "window": "month", "low": "10"}}, '
           '"members/*": {"allowance": {"metric": "credits", "limit": "5", "low": "1"}}}}')
BUILD_V4 = [
    (0, ["QUOTA.SET", W4, "/", "wallet", "METRIC", "credits", "LIMIT", "10", "WINDOW", "month", "LOW", "5"]),
    (0, ["QUOTA.SET", W4, "a", "hourly", "METRIC", "credits", "LIMIT", "2", "WINDOW", "rolling", "1h"]),
    (0, ["QUOTA.GRANT", W4, "/", "wallet", "100", "ID", "topup-1", "NOTE", "first top-up"]),
    (0, ["QUOTA.GRANT", W4, "/", "wallet", "20", "ID", "promo", "FOR", "1d", "PRIORITY", "10"]),
    (0, ["QUOTA.GRANT", W4, "/", "wallet", "5", "ID", "month-bonus", "PERIOD"]),
    (0, ["QUOTA.GRANT", W4, "/", "wallet", "7.5", "ID", "gift", "EXPIRES", str(T0 + 3 * DAY), "PRIORITY", "0"]),
    (0, ["QUOTA.GRANT", W4, "/", "wallet", "3", "ID", "refund"]),
    (0, ["QUOTA.GRANT", W4, "a", "hourly", "4", "ID", "h1"]),
    (1000, ["QUOTA.CHARGE", W4, "PATH", "a", "ID", "c-1", "COST", "credits", "25"]),
    (1000, ["QUOTA.RESERVE", W4, "PATH", "/", "ID", "r-1", "TTL", "604800000", "COST", "credits", "4"]),
    (0, ["QUOTA.REVOKE", W4, "/", "wallet", "refund"]),
    (DAY, ["QUOTA.CHARGE", W4, "PATH", "/", "COST", "credits", "1"]),
    (2 * DAY, ["QUOTA.CHARGE", W4, "PATH", "/", "COST", "credits", "60"]),
    (0, ["QUOTA.PLAN", "SET", "wal", PLAN_V4]),
    (0, ["QUOTA.ASSIGN", Q4, "wal"]),
    (0, ["QUOTA.CHARGE", Q4, "PATH", "members/u1", "COST", "credits", "4.5"]),
    (0, ["QUOTA.GRANT", Q4, "members/u1", "allowance", "10", "ID", "x", "FOR", "7d"]),
]
READS_V4 = [
    ["QUOTA.GET", W4, "/"],
    ["QUOTA.GET", W4, "a"],
    ["QUOTA.TREE", W4, "/", "FORMAT", "JSON"],
    ["QUOTA.GRANTS", W4, "/", "wallet"],
    ["QUOTA.GRANTS", W4, "a", "hourly"],
    ["QUOTA.HISTORY", W4, "/", "wallet"],
    ["QUOTA.EVENTS", W4],
    ["QUOTA.HOLDS", W4, "/"],
    ["QUOTA.GET", Q4, "members/u1"],
    ["QUOTA.GRANTS", Q4, "members/u1", "allowance"],
    ["QUOTA.EVENTS", Q4],
]
WRITES_V4 = [
    ["QUOTA.CHARGE", W4, "PATH", "a", "ID", "c-1", "COST", "credits", "25"],
    ["QUOTA.GRANT", W4, "/", "wallet", "1", "ID", "refund"],
    ["QUOTA.GRANT", W4, "/", "wallet", "1", "ID", "topup-1"],
    ["QUOTA.REVOKE", W4, "/", "wallet", "gift"],
    ["QUOTA.GRANT", W4, "/", "wallet", "1", "ID", "gift"],
    ["QUOTA.GRANT", W4, "/", "wallet", "1", "ID", "promo"],
    ["QUOTA.REVOKE", W4, "/", "wallet", "promo"],
    ["QUOTA.COMMIT", W4, "r-1", "COST", "credits", "6"],
    ["QUOTA.CHARGE", W4, "PATH", "/", "COST", "credits", "30"],
    ["QUOTA.GRANT", W4, "/", "wallet", "50", "ID", "topup-2", "PRIORITY", "60"],
    ["QUOTA.RESET", W4, "/", "wallet"],
    ["QUOTA.CHARGE", Q4, "PATH", "members/u1", "COST", "credits", "3"],
    ["QUOTA.SET", W4, "/", "wallet", "METRIC", "credits", "LIMIT", "10", "WINDOW", "month"],
]

# lua_layout_v5.json: written by library 1.5.0 (layout 5, access rules and
# INFLIGHT) with
#     python3 tests/lua_layout.py --write v5 --file lua/quota.lua
# A tree with deny entries at the root, an allow list at a project, an
# INFLIGHT policy at a member with live holds on it (one committed), a
# CHARGE with an ID that access refused (recorded, its access checks
# remembered, `disallowed` events), denials of both rules; and a tree
# following a plan whose member policy is INFLIGHT. Its reads must reply
# exactly as recorded and change nothing; its writes reply as recorded and
# keep layout 5.
A5, B5 = "{acme}a", "{acme}b"
PLAN_V5 = ('{"paths": {"/": {"monthly": {"metric": "credits", "limit": "100", "window": "month"}}, '
           '"members/*": {"concurrent": {"metric": "requests", "limit": "2", "inflight": true}}}}')
BUILD_V5 = [
    (0, ["QUOTA.SET", A5, "/", "budget", "METRIC", "credits", "LIMIT", "100", "WINDOW", "month"]),
    (0, ["QUOTA.DENY", A5, "/", "SERVICE", "openai", "MODEL", "gpt-4o"]),
    (0, ["QUOTA.DENY", A5, "/", "SERVICE", "banned"]),
    (0, ["QUOTA.ALLOW", A5, "projects/p1", "SERVICE", "openai", "MODEL", "gpt-4o-mini"]),
    (0, ["QUOTA.ALLOW", A5, "projects/p1", "SERVICE", "anthropic"]),
    (0, ["QUOTA.SET", A5, "projects/p1/members/u7", "concurrent", "METRIC", "requests", "LIMIT", "3", "INFLIGHT"]),
    (1000, ["QUOTA.RESERVE", A5, "PATH", "projects/p1/members/u7", "ID", "r-1", "TTL", "604800000", "SERVICE",
            "anthropic", "COST", "requests", "1", "credits", "2"]),
    (0, ["QUOTA.RESERVE", A5, "PATH", "projects/p1/members/u7", "ID", "r-2", "TTL", "604800000", "SERVICE",
         "openai", "MODEL", "gpt-4o-mini", "COST", "requests", "1", "credits", "1"]),
    (0, ["QUOTA.RESERVE", A5, "PATH", "projects/p1/members/u7", "ID", "r-3", "TTL", "1000", "SERVICE",
         "anthropic", "COST", "requests", "1"]),
    (0, ["QUOTA.COMMIT", A5, "r-2", "COST", "requests", "1", "credits", "1.5"]),
    (0, ["QUOTA.RESERVE", A5, "PATH", "projects/p1/members/u7", "SERVICE", "openai", "MODEL", "gpt-4o",
         "COST", "requests", "1"]),
    (1000, ["QUOTA.CHARGE", A5, "PATH", "projects/p1", "ID", "c-1", "SERVICE", "banned", "COST", "credits", "4"]),
    (0, ["QUOTA.PLAN", "SET", "acc", PLAN_V5]),
    (0, ["QUOTA.ASSIGN", B5, "acc"]),
    (0, ["QUOTA.RESERVE", B5, "PATH", "members/u1", "ID", "b-1", "TTL", "604800000", "COST", "requests", "1"]),
]
READS_V5 = [
    ["QUOTA.GET", A5, "/"],
    ["QUOTA.GET", A5, "projects/p1/members/u7"],
    ["QUOTA.TREE", A5, "/", "FORMAT", "JSON"],
    ["QUOTA.TREE", A5, "projects"],
    ["QUOTA.ACCESS", A5, "/"],
    ["QUOTA.ACCESS", A5, "projects/p1"],
    ["QUOTA.EVENTS", A5],
    ["QUOTA.HOLDS", A5, "/"],
    ["QUOTA.GET", B5, "members/u1"],
    ["QUOTA.PLAN", "GET", "acc"],
]
WRITES_V5 = [
    ["QUOTA.CHARGE", A5, "PATH", "projects/p1", "ID", "c-1", "SERVICE", "banned", "COST", "credits", "4"],
    ["QUOTA.RESERVE", A5, "PATH", "projects/p1/members/u7", "SERVICE", "anthropic", "COST", "requests", "1"],
    ["QUOTA.RESERVE", A5, "PATH", "projects/p1/members/u7", "SERVICE", "anthropic", "COST", "requests", "1"],
    ["QUOTA.RESERVE", A5, "PATH", "projects/p1/members/u7", "COST", "requests", "1", "BRIEF"],
    ["QUOTA.CHARGE", A5, "PATH", "projects/p1/members/u7", "SERVICE", "openai", "CHECK", "COST", "credits", "1"],
    ["QUOTA.RELEASE", A5, "r-1"],
    ["QUOTA.DENY", A5, "/", "SERVICE", "banned", "REMOVE"],
    ["QUOTA.ALLOW", A5, "projects/p1", "SERVICE", "openai"],
    ["QUOTA.ACCESS", A5, "projects/p1", "CLEAR"],
    ["QUOTA.SET", A5, "projects/p1/members/u7", "concurrent", "METRIC", "requests", "LIMIT", "3"],
    ["QUOTA.RESERVE", B5, "PATH", "members/u1", "COST", "requests", "2"],
    ["QUOTA.CHARGE", B5, "PATH", "members/u1", "COST", "requests", "5"],
]

# lua_layout_v6.json: written by library 1.6.0 (layout 6: labels, archive,
# META) with
#     python3 tests/lua_layout.py --write v6 --file lua/quota.lua
# A tree with a note and tags at a project, tags on two members, an
# archived project with a hold placed before it was archived, live holds
# with META (one committed item by item, one left to expire), a CHARGE
# with META and ID, a refused reservation on the archived path; and a tree
# whose only labels were cleared (it stays in layout 6). Its reads must
# reply exactly as recorded and change nothing; its writes reply as
# recorded and keep layout 6.
L6, M6 = "{acme}l", "{acme}m"
BUILD_V6 = [
    (0, ["QUOTA.SET", L6, "/", "budget", "METRIC", "credits", "LIMIT", "100", "WINDOW", "month"]),
    (0, ["QUOTA.LABEL", L6, "projects/p1", "NOTE", "search team \"beta\"", "TAGS", "team:search,prod"]),
    (0, ["QUOTA.LABEL", L6, "projects/p1/members/u1", "TAGS", "prod"]),
    (0, ["QUOTA.LABEL", L6, "projects/p2/members/u9", "TAGS", "staging"]),
    (1000, ["QUOTA.RESERVE", L6, "PATH", "projects/p2/members/u9", "ID", "r-1", "TTL", "604800000",
            "META", "user", "u9", "feature", "chat", "COST", "credits", "2"]),
    (0, ["QUOTA.RESERVE", L6, "PATH", "projects/p1/members/u1", "ID", "r-2", "TTL", "604800000", "SERVICE",
         "openai", "META", "request", "req-\u00e9", "COST", "credits", "1", "COST", "credits", "3"]),
    (0, ["QUOTA.RESERVE", L6, "PATH", "projects/p1", "ID", "r-3", "TTL", "1000", "META", "user", "u1",
         "COST", "credits", "1"]),
    (0, ["QUOTA.COMMIT", L6, "r-2", "ITEM", "0"]),
    (0, ["QUOTA.ARCHIVE", L6, "projects/p2"]),
    (0, ["QUOTA.RESERVE", L6, "PATH", "projects/p2/members/u9", "COST", "credits", "1"]),
    (1000, ["QUOTA.CHARGE", L6, "PATH", "projects/p1", "ID", "c-1", "META", "user", "u1", "COST", "credits", "4"]),
    (1000, ["QUOTA.LABEL", M6, "a", "NOTE", "temporary"]),
    (0, ["QUOTA.LABEL", M6, "a", "NOTE", ""]),
]
READS_V6 = [
    ["QUOTA.GET", L6, "projects/p1"],
    ["QUOTA.GET", L6, "projects/p2"],
    ["QUOTA.TREE", L6, "/", "FORMAT", "JSON"],
    ["QUOTA.TREE", L6, "/", "ARCHIVED"],
    ["QUOTA.TREE", L6, "/", "TAG", "prod"],
    ["QUOTA.TREE", L6, "projects", "TAG", "staging", "ARCHIVED"],
    ["QUOTA.EVENTS", L6],
    ["QUOTA.HOLDS", L6, "/"],
    ["QUOTA.GET", M6, "a"],
]
WRITES_V6 = [
    ["QUOTA.CHARGE", L6, "PATH", "projects/p1", "ID", "c-1", "META", "user", "other", "COST", "credits", "4"],
    ["QUOTA.RESERVE", L6, "PATH", "projects/p2/members/u9", "COST", "credits", "1"],
    ["QUOTA.CHARGE", L6, "PATH", "projects/p2", "COST", "credits", "1"],
    ["QUOTA.COMMIT", L6, "r-1", "COST", "credits", "1.5"],
    ["QUOTA.COMMIT", L6, "r-2", "ITEM", "1", "COST", "credits", "2"],
    ["QUOTA.RESTORE", L6, "projects/p2"],
    ["QUOTA.RESERVE", L6, "PATH", "projects/p2/members/u9", "META", "user", "u9", "COST", "credits", "1"],
    ["QUOTA.LABEL", L6, "projects/p1", "TAGS", ""],
    ["QUOTA.RESERVE", M6, "PATH", "a", "COST", "credits", "1"],
]

FIXTURE_SPECS = {
    "v1": {"tree": TREE, "build": BUILD, "reads": READS, "writes": WRITES},
    "v3": {"tree": P3, "trees": [P3, G3, N3, B3], "build": BUILD_V3, "reads": READS_V3, "writes": WRITES_V3},
    "v4": {"tree": W4, "trees": [W4, Q4], "build": BUILD_V4, "reads": READS_V4, "writes": WRITES_V4},
    "v5": {"tree": A5, "trees": [A5, B5], "build": BUILD_V5, "reads": READS_V5, "writes": WRITES_V5},
    "v6": {"tree": L6, "trees": [L6, M6], "build": BUILD_V6, "reads": READS_V6, "writes": WRITES_V6},
}


class Server:
    def __init__(self, workdir):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", workdir, "--save", "",
             "--appendonly", "no", "--logfile", os.path.join(workdir, "log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.r = redis.Redis(port=self.port, protocol=3)
        for _ in range(200):
            try:
                self.r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)

    def load(self, library=None, downgrade=False):
        args = [LOADER, "--test-clock", "--force"] + (["--allow-downgrade"] if downgrade else [])
        args += ["--file", library or CURRENT]
        out = subprocess.run(args + [f"redis://127.0.0.1:{self.port}"], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"quota-load failed: {out.stdout}{out.stderr}")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def plain(value):
    """A reply as JSON can hold it (bytes as text, errors as {"error": text})."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, dict):
        # (Sorted: a map's order is not part of the reply.)
        return {"map": sorted(([plain(k), plain(v)] for k, v in value.items()), key=lambda kv: json.dumps(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, set):
        return sorted(plain(v) for v in value)
    if isinstance(value, Exception):
        return {"error": str(value)}
    return value


def run(r, command):
    try:
        return plain(r.execute_command(*lua_command(command)))
    except redis.ResponseError as e:
        return plain(e)


def clock(r, ms):
    r.execute_command("FCALL", "quota_debug", "0", "CLOCK", "SET", str(ms))


def tree_keys(r):
    keys = sorted(k for k in r.keys("*") if k not in (b"quota:clock",))
    return keys


def without_usage(dump):
    """A dump without the trees' usage hashes (`…:usage`, 1.6.0), which
    record usage beside the stored layout rather than in it: a library
    before 1.6.0 writes none."""
    return {k: v for k, v in dump.items() if not base64.b64decode(k).endswith(b":usage")}


def dump_keys(r):
    """Every key's raw contents, bytes as base64."""
    b64 = lambda b: base64.b64encode(b).decode()
    out = {}
    for key in tree_keys(r):
        kind = r.type(key).decode()
        if kind == "hash":
            value = {b64(f): b64(v) for f, v in sorted(r.hgetall(key).items())}
        elif kind == "zset":
            value = [[b64(m), s] for m, s in r.zrange(key, 0, -1, withscores=True)]
        elif kind == "list":
            value = [b64(v) for v in r.lrange(key, 0, -1)]
        elif kind == "string":
            value = b64(r.get(key))
        else:
            raise RuntimeError(f"unexpected key type {kind} of {key!r}")
        out[b64(key)] = {"type": kind, "value": value}
    return out


def restore_keys(r, keys):
    d = base64.b64decode
    for key, entry in keys.items():
        k, value = d(key), entry["value"]
        if entry["type"] == "hash":
            r.hset(k, mapping={d(f): d(v) for f, v in value.items()})
        elif entry["type"] == "zset":
            r.zadd(k, {d(m): s for m, s in value})
        elif entry["type"] == "list":
            r.rpush(k, *[d(v) for v in value])
        else:
            r.set(k, d(value))


def write_fixture(name, library):
    spec = FIXTURE_SPECS[name]
    workdir = tempfile.mkdtemp(prefix="quota-layout-")
    server = Server(workdir)
    try:
        server.load(library)
        r = server.r
        now = T0
        clock(r, now)
        build = []
        for advance, command in spec["build"]:
            now += advance
            clock(r, now)
            build.append([now, command, run(r, command)])
        keys = dump_keys(r)
        reads = [[c, run(r, c)] for c in spec["reads"]]
        writes = [[c, run(r, c)] for c in spec["writes"]]
        after = [[c, run(r, c)] for c in spec["reads"]]
        fixture = {"clock": now, "tree": spec["tree"], "keys": keys, "build": build, "reads": reads,
                   "writes": writes, "reads_after_writes": after}
        if "trees" in spec:
            fixture["trees"] = spec["trees"]
            fixture["library"] = plain(r.execute_command("FCALL", "quota_version", "0"))
        path = os.path.join(FIXTURES, f"lua_layout_{name}.json")
        with open(path, "w") as f:
            json.dump(fixture, f, indent=1, sort_keys=True)
            f.write("\n")
        print(f"wrote {path}: {len(keys)} keys, {len(reads)} reads, {len(writes)} writes")
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


FAILED = []


def check(ok, what, detail=""):
    print(("ok:     " if ok else "FAILED: ") + what + ("" if ok or not detail else f"\n        {detail}"))
    if not ok:
        FAILED.append(what)


# Reply fields added since the fixture was written (1.3.0: plans): a tree that
# follows no plan shows them as "tree", nil and 0; they are compared apart.
SINCE = {"source": "tree", "plan": None, "plan_version": None, "plan_missing": 0}
# And since 1.4.0 (grants): `granted` in policy maps (a legacy grant shows
# it) and history rows, `drawn` in COMMIT and CHARGE (empty on these trees:
# checked), and GRANT's `grant` and `duplicate` (stripped by compare).
SINCE_GRANTS = {"granted", "drawn"}
# And since issue 21 (billing cycles in time zones): HISTORY rows' `label`
# (the fixtures' windows are UTC, so no `tz` or `tzdata`).
SINCE_ZONES = {"label"}


def without_newer_fields(value):
    """A reply without the fields of SINCE, each checked to have its value
    for a tree that follows no plan (a FORMAT JSON text likewise)."""
    if isinstance(value, dict) and "map" in value:
        kept = []
        for k, v in value["map"]:
            if k in SINCE:
                check(v == SINCE[k], f"{k} is {SINCE[k]!r} on a tree that follows no plan ({v!r})")
            elif k == "drawn":
                check(v == [], f"nothing is drawn on a tree without grants ({v!r})")
            elif k in SINCE_GRANTS:
                pass
            elif k in SINCE_ZONES:
                check(isinstance(v, str), f"a history row's label is a text ({v!r})")
            else:
                kept.append([k, without_newer_fields(v)])
        return {"map": kept}
    if isinstance(value, list):
        return [without_newer_fields(v) for v in value]
    if isinstance(value, str) and value.startswith("{"):
        def strip(v):
            if isinstance(v, dict):
                return {k: strip(x) for k, x in v.items()
                        if k not in SINCE and k not in SINCE_GRANTS and k not in SINCE_ZONES}
            if isinstance(v, list):
                return [strip(x) for x in v]
            return v
        return json.dumps(strip(json.loads(value)), separators=(",", ":"), ensure_ascii=False)
    return value


def without_base_limit(value):
    """A reply without the `base_limit` that policy maps show since the
    dashboard's policy editor (issue 19) while the allowance differs from
    the LIMIT set; no fixture recorded it. Where it shows, it is checked to
    differ from `limit` (a FORMAT JSON text likewise)."""
    if isinstance(value, dict) and "map" in value:
        fields = dict((k, v) for k, v in value["map"])
        if "base_limit" in fields:
            check(fields["base_limit"] != fields.get("limit"),
                  f"base_limit shows only when the allowance differs ({fields['base_limit']!r}, {fields.get('limit')!r})")
        return {"map": [[k, without_base_limit(v)] for k, v in value["map"] if k != "base_limit"]}
    if isinstance(value, list):
        return [without_base_limit(v) for v in value]
    if isinstance(value, str) and value.startswith("{") and '"base_limit"' in value:
        def strip(v):
            if isinstance(v, dict):
                if "base_limit" in v:
                    check(v["base_limit"] != v.get("limit"), f"base_limit differs from limit in JSON ({v!r})")
                return {k: strip(x) for k, x in v.items() if k != "base_limit"}
            if isinstance(v, list):
                return [strip(x) for x in v]
            return v
        return json.dumps(strip(json.loads(value)), separators=(",", ":"), ensure_ascii=False)
    return value


def without_kind(value):
    """A reply without the `kind` "policy" that 1.5.0 gives every policy
    check (fixtures before 1.5.0 recorded checks without it)."""
    if isinstance(value, dict) and "map" in value:
        return {"map": [[k, without_kind(v)] for k, v in value["map"] if [k, v] != ["kind", "policy"]]}
    if isinstance(value, list):
        return [without_kind(v) for v in value]
    return value


def without_label(value):
    """A reply without HISTORY rows' `label` (SINCE_ZONES), checked to be a
    text."""
    if isinstance(value, dict) and "map" in value:
        kept = []
        for k, v in value["map"]:
            if k in SINCE_ZONES:
                check(isinstance(v, str), f"a history row's label is a text ({v!r})")
            else:
                kept.append([k, without_label(v)])
        return {"map": kept}
    if isinstance(value, list):
        return [without_label(v) for v in value]
    return value


def without_grant_fields(value):
    """A reply without the fields 1.4.0 added (SINCE_GRANTS), `drawn`
    checked to be empty."""
    if isinstance(value, dict) and "map" in value:
        kept = []
        for k, v in value["map"]:
            if k == "drawn":
                check(v == [], f"nothing is drawn on a tree without grants ({v!r})")
            elif k not in SINCE_GRANTS:
                kept.append([k, without_grant_fields(v)])
        return {"map": kept}
    if isinstance(value, list):
        return [without_grant_fields(v) for v in value]
    return value


def compare(r, pairs, label):
    for command, expected in pairs:
        got = run(r, command)
        if command[0] == "QUOTA.GRANT" and isinstance(got, dict) and "map" in got:
            got = {"map": [kv for kv in got["map"] if kv[0] not in ("grant", "duplicate")]}
        got = without_kind(without_newer_fields(without_base_limit(got)))
        check(got == expected, f"{label}: {' '.join(command)}",
              f"expected {json.dumps(expected)[:600]}\n        got      {json.dumps(got)[:600]}")


def meta_version(r, tree):
    """The layout version in the tree's "#" field (1 when it has none)."""
    lua = "local m = cmsgpack.unpack(redis.call('HGET', KEYS[1], '#')); return m[4] or 1"
    return r.eval(lua, 1, tree)


def test_fixture(name):
    with open(os.path.join(FIXTURES, f"lua_layout_{name}.json")) as f:
        fixture = json.load(f)
    workdir = tempfile.mkdtemp(prefix="quota-layout-")
    server = Server(workdir)
    try:
        server.load()
        r = server.r
        restore_keys(r, fixture["keys"])
        clock(r, fixture["clock"])
        tree = fixture["tree"]
        before = dump_keys(r)
        compare(r, fixture["reads"], f"{name} read")
        check(dump_keys(r) == before, f"{name}: reads of an old tree change nothing")
        compare(r, fixture["writes"], f"{name} write")
        compare(r, fixture["reads_after_writes"], f"{name} read after writes")
        version = meta_version(r, tree)
        current = r.execute_command("FCALL", "quota_version", "0")
        # (Layout 4 since 1.4.0: this tree has grants, its legacy ones and
        # the one its writes add.)
        check(version == 4, f"{name}: the tree's metadata says layout 4 after a write (layout {version})")
        # A node written since is in layout 2: its integer amounts are plain
        # numbers (the limit of a/b's first policy, 50), not {m, s} maps.
        limit_type = r.eval("local n = cmsgpack.unpack(redis.call('HGET', KEYS[1], '/a/b')); "
                            "return type(n[1][1][3])", 1, tree)
        check(limit_type == b"number", f"{name}: a node written after the upgrade is in layout 2 ({limit_type})")
        # Records of both layouts side by side read alike.
        check(run(r, ["QUOTA.TREE", tree, "/", "DEPTH", "16"]) == run(r, ["QUOTA.TREE", tree, "/", "DEPTH", "16"]),
              f"{name}: the upgraded tree reads the same twice (library {plain(current)})")
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def plan_epochs(r, tree, path):
    """The tree's plan epoch (from "#plan") and the epoch the node at
    `path` was last synced at (its fourth entry)."""
    lua = "local p = cmsgpack.unpack(redis.call('HGET', KEYS[1], '#plan')); " \
          "local n = cmsgpack.unpack(redis.call('HGET', KEYS[1], ARGV[1])); return {p[2], n[4] or -1}"
    return r.eval(lua, 1, tree, "/" + path.strip("/") if path != "/" else "/")


def test_plan_fixture(name):
    """Trees that follow plans, written by 1.3.0 in layout 3 (the fixture's
    "trees"), and the plan book: every read replies exactly as recorded
    (plan fields included: they were there), reads change nothing, the
    recorded writes (a reservation on the stale node, which syncs it, a
    commit of the hold on the node the plan gave) reply as recorded, and
    every tree is still in layout 3."""
    with open(os.path.join(FIXTURES, f"lua_layout_{name}.json")) as f:
        fixture = json.load(f)
    workdir = tempfile.mkdtemp(prefix="quota-layout-")
    server = Server(workdir)
    try:
        server.load()
        r = server.r
        restore_keys(r, fixture["keys"])
        clock(r, fixture["clock"])
        trees, tree = fixture["trees"], fixture["tree"]
        layouts = [meta_version(r, t) for t in trees]
        check(layouts == [3] * len(trees), f"{name}: the fixture's trees are in layout 3 ({layouts})")
        epochs = plan_epochs(r, tree, "members/u1")
        check(epochs[1] < epochs[0], f"{name}: members/u1 is stored stale (tree epoch, node epoch: {epochs})")
        holds = f"{{acme}}quota:{tree}:holds"
        check(r.hexists(holds, "r1") == 1, f"{name}: the hold r1 on members/u3, the node the plan gave, is live")
        before = dump_keys(r)
        for command, expected in fixture["reads"]:
            got = without_kind(without_grant_fields(without_label(without_base_limit(run(r, command)))))
            check(got == expected, f"{name} read: {' '.join(command)}",
                  f"expected {json.dumps(expected)[:600]}\n        got      {json.dumps(got)[:600]}")
        check(dump_keys(r) == before, f"{name}: reads of layout-3 trees and the plan book change nothing")
        for label, pairs in (("write", fixture["writes"]), ("read after writes", fixture["reads_after_writes"])):
            for command, expected in pairs:
                got = without_kind(without_grant_fields(without_label(without_base_limit(run(r, command)))))
                check(got == expected, f"{name} {label}: {' '.join(command)}",
                      f"expected {json.dumps(expected)[:600]}\n        got      {json.dumps(got)[:600]}")
        layouts = [meta_version(r, t) for t in trees]
        check(layouts == [3] * len(trees), f"{name}: the trees are in layout 3 after writes ({layouts})")
        epochs = plan_epochs(r, tree, "members/u1")
        check(epochs[1] == epochs[0], f"{name}: the write synced the stale node (tree epoch, node epoch: {epochs})")
        check(r.hexists(holds, "r1") == 0, f"{name}: the committed hold is gone")
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# Writes that fail (each is refused before it changes anything).
FAILING_WRITES = [
    ["QUOTA.SET", TREE, "a", "bad", "METRIC", "credits", "LIMIT", "x"],
    ["QUOTA.RESERVE", TREE, "PATH", "a/b", "COST", "credits", "-1"],
    ["QUOTA.CHARGE", TREE, "PATH", "a", "BOGUS"],
    ["QUOTA.COMMIT", TREE, "no-such-hold"],
    ["QUOTA.GRANT", TREE, "a", "chat", "1.5.5"],
    ["QUOTA.UNSET", TREE, "a", "no-such-policy"],
]


def test_failed_writes(name):
    """A write that fails on an old tree changes nothing: the tree stays in
    its layout, every key as it was."""
    with open(os.path.join(FIXTURES, f"lua_layout_{name}.json")) as f:
        fixture = json.load(f)
    workdir = tempfile.mkdtemp(prefix="quota-layout-")
    server = Server(workdir)
    try:
        server.load()
        r = server.r
        restore_keys(r, fixture["keys"])
        clock(r, fixture["clock"])
        before = dump_keys(r)
        for command in FAILING_WRITES:
            got = run(r, command)
            check(isinstance(got, dict) and "error" in got, f"{name}: {' '.join(command)} fails ({got})")
        after = dump_keys(r)
        changed = sorted(base64.b64decode(k) for k in set(before) | set(after) if before.get(k) != after.get(k))
        check(not changed, f"{name}: failed writes on an old tree change nothing", f"changed: {changed}")
        check(meta_version(r, fixture["tree"]) == 1, f"{name}: the tree is still in layout 1 after failed writes")
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_future_layout():
    workdir = tempfile.mkdtemp(prefix="quota-layout-")
    server = Server(workdir)
    try:
        server.load()
        r = server.r
        run(r, ["QUOTA.SET", "f", "/", "c", "METRIC", "credits", "LIMIT", "10"])
        # The "#" field of a layout this library does not know: version 99.
        r.eval("local m = cmsgpack.unpack(redis.call('HGET', KEYS[1], '#')); m[4] = 99; "
               "redis.call('HSET', KEYS[1], '#', cmsgpack.pack(m))", 1, "f")
        before = dump_keys(r)
        for command in (["QUOTA.GET", "f", "/"], ["QUOTA.RESERVE", "f", "PATH", "/", "COST", "credits", "1"],
                        ["QUOTA.TREE", "f", "/"], ["QUOTA.SET", "f", "/", "c", "METRIC", "credits", "LIMIT", "5"]):
            got = run(r, command)
            ok = isinstance(got, dict) and "error" in got and "layout 99" in got["error"]
            check(ok, f"future layout refused: {' '.join(command)} -> {got}")
        check(dump_keys(r) == before, "a tree of a future layout is left unchanged")
        # Metadata that is not this library's: refused as such (not as a newer
        # layout), for reads and writes, and left as it is.
        for name, code in [("a string", "return 'hello'"), ("a map", "return cmsgpack.pack({a = 1})"),
                           ("no generation", "return cmsgpack.pack({1})"),
                           ("no event seq", "return cmsgpack.pack({1, 1})"),
                           ("a text layout", "return cmsgpack.pack({1, 1, 1, '2'})"),
                           ("layout 0", "return cmsgpack.pack({1, 1, 1, 0})"),
                           ("layout 2.5", "return cmsgpack.pack({1, 1, 1, 2.5})")]:
            r.hset("f", "#", r.eval(code, 0))
            before = dump_keys(r)
            for command in (["QUOTA.GET", "f", "/"], ["QUOTA.CHARGE", "f", "PATH", "/", "COST", "credits", "1"]):
                got = run(r, command)
                ok = isinstance(got, dict) and "cannot read" in got.get("error", "")
                check(ok, f"metadata with {name} refused: {' '.join(command)} -> {got}")
            check(dump_keys(r) == before, f"a tree whose metadata has {name} is left unchanged")
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_older_writer():
    """Since 1.2.0 "#" also says what is due (next expiry, next forget,
    whether the index of due trees says so, live holds); 1.1.0 reads the
    first four entries and writes only those. A tree it wrote since is asked
    again, never trusted: here its write is played by cutting "#" to four
    entries while it adds a hold that expires first (as 1.1.0 would, with
    the expiry set written and "#" knowing nothing of it)."""
    workdir = tempfile.mkdtemp(prefix="quota-layout-")
    server = Server(workdir)
    try:
        server.load()
        r = server.r
        clock(r, T0)
        run(r, ["QUOTA.SET", "o", "/", "c", "METRIC", "credits", "LIMIT", "10"])
        run(r, ["QUOTA.RESERVE", "o", "PATH", "/", "ID", "late", "TTL", str(DAY), "COST", "credits", "1"])
        run(r, ["QUOTA.CHARGE", "o", "PATH", "/", "ID", "c1", "COST", "credits", "1"])
        size = r.eval("return #cmsgpack.unpack(redis.call('HGET', KEYS[1], '#'))", 1, "o")
        check(size == 8, f'"#" says what is due after a write ({size} entries)')
        run(r, ["QUOTA.RESERVE", "o", "PATH", "/", "ID", "soon", "TTL", "1000", "COST", "credits", "2"])
        cut = "local m = cmsgpack.unpack(redis.call('HGET', KEYS[1], '#')); " \
              "redis.call('HSET', KEYS[1], '#', cmsgpack.pack({m[1], m[2], m[3], m[4]}))"
        # "#" as the "late" hold alone left it, cut as 1.1.0 writes it.
        r.eval(cut, 1, "o")
        clock(r, T0 + 1000)
        held = run(r, ["QUOTA.GET", "o", "/"])
        check("soon" not in json.dumps(run(r, ["QUOTA.HOLDS", "o", "/"])),
              "a hold due on a tree 1.1.0 wrote expires on time (read)", json.dumps(held)[:300])
        run(r, ["QUOTA.CHARGE", "o", "PATH", "/", "COST", "credits", "1"])
        check(r.hexists("{o}quota:o:holds", "soon") == 0 and r.hexists("{o}quota:o:holds", "late") == 1,
              "a hold due on a tree 1.1.0 wrote expires on time (write)")
        check(r.zscore("quota:due", "o") == T0 + DAY, "the index of due trees names the next hold")
        # The charge's id is forgotten on time though "#" was cut.
        r.eval(cut, 1, "o")
        clock(r, T0 + 1000 + DAY)
        run(r, ["QUOTA.CHARGE", "o", "PATH", "/", "COST", "credits", "1"])
        check(r.hexists("{o}quota:o:done", "c1") == 0, "a finished id on a tree 1.1.0 wrote is forgotten on time")
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


PLAN_JSON = ('{"paths": {"/": {"monthly": {"metric": "credits", "limit": "100", "window": "month"}}, '
             '"members/*": {"allowance": {"metric": "credits", "limit": "5"}}}}')


def test_plan_layout():
    """Since 1.3.0 a tree that follows (or followed) a plan is stored in
    layout 3 ("#plan", plan policies, node epochs); a tree that never
    followed one stays in layout 2 byte for byte. Libraries before 1.3.0
    refuse a layout-3 tree with ERR layout and leave it as it is."""
    workdir = tempfile.mkdtemp(prefix="quota-layout-")
    server = Server(workdir)
    try:
        server.load()
        r = server.r
        clock(r, T0)
        check(run(r, ["QUOTA.PLAN", "SET", "pro", PLAN_JSON]) == 1, "a plan is set")
        run(r, ["QUOTA.SET", "n", "/", "c", "METRIC", "credits", "LIMIT", "10"])
        run(r, ["QUOTA.RESERVE", "n", "PATH", "members/u1", "COST", "credits", "1"])
        check(meta_version(r, "n") == 2, "a tree that never followed a plan is in layout 2")
        check(r.hexists("n", "#plan") == 0, "a tree that never followed a plan has no #plan")
        sizes = r.eval("local n = cmsgpack.unpack(redis.call('HGET', KEYS[1], '/')); return {#n, #n[1][1]}", 1, "n")
        check(sizes == [3, 19], f"its nodes and policies are stored as layout 2 stores them ({sizes})")
        check(run(r, ["QUOTA.ASSIGN", "p", "pro"]) == "OK", "a tree is assigned the plan")
        run(r, ["QUOTA.RESERVE", "p", "PATH", "members/u1", "COST", "credits", "1"])
        check(meta_version(r, "p") == 3, "a tree that follows a plan is in layout 3")
        check(r.hexists("p", "#plan") == 1, "a tree that follows a plan has #plan")
        got = run(r, ["QUOTA.GET", "p", "members/u1"])
        check("allowance" in json.dumps(got) and '"plan"' in json.dumps(got), f"the plan's policies read ({got})")
        run(r, ["QUOTA.ASSIGN", "q", "pro"])
        run(r, ["QUOTA.ASSIGN", "q", "NONE"])
        check(meta_version(r, "q") == 3, "a tree that followed a plan stays in layout 3")
        for version, library in (("1.2.0", "quota-1.2.0.lua"), ("1.1.0", "quota-1.1.0.lua")):
            server.load(os.path.join(FIXTURES, library), downgrade=True)
            before = dump_keys(r)
            for tree in ("p", "q"):
                for command in (["QUOTA.GET", tree, "/"], ["QUOTA.TREE", tree],
                                ["QUOTA.RESERVE", tree, "PATH", "members/u2", "COST", "credits", "1"],
                                ["QUOTA.SET", tree, "/", "c", "METRIC", "credits", "LIMIT", "5"]):
                    got = run(r, command)
                    ok = isinstance(got, dict) and got.get("error", "").startswith("layout:") and "layout 3," in got["error"]
                    check(ok, f"library {version} refuses a layout-3 tree: {' '.join(command)} -> {got}")
            check(dump_keys(r) == before, f"library {version} leaves layout-3 trees unchanged")
            got = run(r, ["QUOTA.GET", "n", "/"])
            check(isinstance(got, dict) and "error" not in got, f"library {version} reads a layout-2 tree ({got})")
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_grants_fixture(name, layout=4):
    """A layout-4 fixture (grants), or layout 5 (access rules, INFLIGHT):
    every reply exactly as recorded (checks of fixtures before 1.5.0
    without `kind`), reads change nothing, the trees stay in their layout."""
    def strip(v):
        v = without_label(without_base_limit(v))
        return without_kind(v) if layout < 5 else v
    path = os.path.join(FIXTURES, f"lua_layout_{name}.json")
    if not os.path.exists(path):
        check(False, f"{name}: {path} exists")
        return
    with open(path) as f:
        fixture = json.load(f)
    workdir = tempfile.mkdtemp(prefix="quota-layout-")
    server = Server(workdir)
    try:
        server.load()
        r = server.r
        restore_keys(r, fixture["keys"])
        clock(r, fixture["clock"])
        trees = fixture["trees"]
        check([meta_version(r, t) for t in trees] == [layout] * len(trees),
              f"{name}: the fixture's trees are in layout {layout}")
        before = dump_keys(r)
        for command, expected in fixture["reads"]:
            got = strip(run(r, command))
            check(got == expected, f"{name} read: {' '.join(command)}",
                  f"expected {json.dumps(expected)[:600]}\n        got      {json.dumps(got)[:600]}")
        check(dump_keys(r) == before, f"{name}: reads of layout-{layout} trees change nothing")
        for label, pairs in (("write", fixture["writes"]), ("read after writes", fixture["reads_after_writes"])):
            for command, expected in pairs:
                got = strip(run(r, command))
                check(got == expected, f"{name} {label}: {' '.join(command)}",
                      f"expected {json.dumps(expected)[:600]}\n        got      {json.dumps(got)[:600]}")
        check([meta_version(r, t) for t in trees] == [layout] * len(trees), f"{name}: the trees stay in layout {layout}")
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_grants_layout():
    """Since 1.4.0 a tree that has had a grant or LOW is stored in layout 4
    (policy grant state, the grants hash); every other tree is stored as
    1.3.0 stores it, byte for byte. Library 1.3.0 refuses a layout-4 tree
    with ERR layout and leaves it as it is. A granted amount 1.3.0 stored
    (the first release's GRANT) reads as one PERIOD grant "legacy"."""
    workdir = tempfile.mkdtemp(prefix="quota-layout-")
    old_dir = tempfile.mkdtemp(prefix="quota-layout-")
    server, old = Server(workdir), Server(old_dir)
    try:
        server.load()
        old.load(os.path.join(FIXTURES, "quota-1.3.0.lua"), downgrade=True)
        r, o = server.r, old.r
        same = [
            ["QUOTA.SET", "n", "/", "c", "METRIC", "credits", "LIMIT", "10", "WINDOW", "day", "ROLLOVER", "30"],
            ["QUOTA.SET", "n", "a", "r", "METRIC", "credits", "LIMIT", "5", "WINDOW", "rolling", "1h"],
            ["QUOTA.CHARGE", "n", "PATH", "a", "ID", "c1", "COST", "credits", "12"],
            ["QUOTA.RESERVE", "n", "PATH", "a", "ID", "h1", "COST", "credits", "1"],
            ["QUOTA.COMMIT", "n", "h1", "COST", "credits", "2"],
            ["QUOTA.CHARGE", "n", "PATH", "a", "COST", "credits", "-3"],
            ["QUOTA.RESET", "n", "/", "c"],
        ]
        for target in (r, o):
            clock(target, T0)
            for command in same:
                run(target, command)
            clock(target, T0 + 3 * DAY)
            run(target, ["QUOTA.CHARGE", "n", "PATH", "/", "COST", "credits", "1"])
        check(without_usage(dump_keys(r)) == dump_keys(o), "a tree without grants is stored as 1.3.0 stores it, byte for byte")
        check(meta_version(r, "n") == 2, "a tree without grants stays in layout 2")
        clock(r, T0)
        run(r, ["QUOTA.SET", "g", "/", "c", "METRIC", "credits", "LIMIT", "10", "WINDOW", "month"])
        got = run(r, ["QUOTA.GRANT", "g", "/", "c", "5", "ID", "w1", "FOR", "1d", "NOTE", "welcome"])
        check(isinstance(got, dict) and "error" not in got, f"a grant is added ({got})")
        check(meta_version(r, "g") == 4, "a tree with a grant is in layout 4")
        check(r.hexists("{g}quota:g:grants", "1:i:w1") == 1, "its grant is in the grants hash, under the generation and id")
        check(r.zcard("{g}quota:g:grants:draw") == 1 and r.zcard("{g}quota:g:grants:exp") == 1,
              "and in the draw-down and expiry orders")
        run(r, ["QUOTA.SET", "l", "/", "c", "METRIC", "credits", "LIMIT", "10", "LOW", "2"])
        check(meta_version(r, "l") == 4, "a tree with LOW is in layout 4")
        check(run(r, ["QUOTA.PLAN", "SET", "pro", PLAN_JSON]) == 1, "a plan is set")
        run(r, ["QUOTA.ASSIGN", "p", "pro"])
        run(r, ["QUOTA.RESERVE", "p", "PATH", "members/u1", "COST", "credits", "1"])
        run(r, ["QUOTA.GRANT", "p", "members/u1", "allowance", "3", "ID", "x"])
        check(meta_version(r, "p") == 4, "a tree that follows a plan and has a grant is in layout 4")
        got = json.dumps(run(r, ["QUOTA.GET", "p", "members/u1"]))
        check('"pro"' in got and '"granted", "3"' in got, f"it still follows its plan, and has the grant ({got})")
        got = run(r, ["QUOTA.GRANTS", "g", "/", "c"])
        check(json.dumps(got).count('"w1"') == 1, f"the grant reads back ({got})")
        server.load(os.path.join(FIXTURES, "quota-1.3.0.lua"), downgrade=True)
        before = dump_keys(r)
        for tree in ("g", "l", "p"):
            for command in (["QUOTA.GET", tree, "/"], ["QUOTA.CHARGE", tree, "PATH", "/", "COST", "credits", "1"]):
                got = run(r, command)
                ok = isinstance(got, dict) and got.get("error", "").startswith("layout:") and "layout 4," in got["error"]
                check(ok, f"library 1.3.0 refuses a layout-4 tree: {' '.join(command)} -> {got}")
        check(dump_keys(r) == before, "library 1.3.0 leaves layout-4 trees unchanged")
        # The first release's GRANT, stored by 1.3.0, read by 1.4.0.
        clock(o, T0)
        run(o, ["QUOTA.SET", "old", "/", "c", "METRIC", "credits", "LIMIT", "10", "WINDOW", "month"])
        run(o, ["QUOTA.GRANT", "old", "/", "c", "8"])
        run(o, ["QUOTA.CHARGE", "old", "PATH", "/", "COST", "credits", "13"])
        shown = run(o, ["QUOTA.GET", "old", "/"])
        old.load()
        got = run(o, ["QUOTA.GRANTS", "old", "/", "c"])
        legacy = got[0]["map"] if got and isinstance(got[0], dict) else []
        check(dict((k, v) for k, v in legacy).get("id") == "legacy"
              and dict((k, v) for k, v in legacy).get("remaining") == "5"
              and dict((k, v) for k, v in legacy).get("period") == 1,
              f"a stored granted amount reads as one PERIOD grant 'legacy', what usage took drawn ({got})")
        now = run(o, ["QUOTA.GET", "old", "/"])
        check(without_newer_fields(without_base_limit(now)) == without_newer_fields(shown), f"the policy reads as before ({now})")
        run(o, ["QUOTA.CHARGE", "old", "PATH", "/", "COST", "credits", "1"])
        check(meta_version(o, "old") == 4, "a tree with a legacy grant is written in layout 4")
        got = run(o, ["QUOTA.GRANTS", "old", "/", "c"])
        check(json.dumps(got).count('"4"') == 1, f"the legacy grant is drawn from and stored ({got})")
    finally:
        server.stop()
        old.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(old_dir, ignore_errors=True)


def test_access_layout():
    """Since 1.5.0 a tree that has had an access rule or an INFLIGHT policy
    is stored in layout 5 (node rules, the INFLIGHT flag); every other tree
    is stored as 1.4.0 stores it, byte for byte. Library 1.4.0 refuses a
    layout-5 tree with ERR layout and leaves it as it is."""
    workdir = tempfile.mkdtemp(prefix="quota-layout-")
    old_dir = tempfile.mkdtemp(prefix="quota-layout-")
    server, old = Server(workdir), Server(old_dir)
    try:
        server.load()
        old.load(os.path.join(FIXTURES, "quota-1.4.0.lua"), downgrade=True)
        r, o = server.r, old.r
        same = [
            ["QUOTA.SET", "n", "/", "c", "METRIC", "credits", "LIMIT", "10", "WINDOW", "day", "ROLLOVER", "30"],
            ["QUOTA.SET", "n", "a", "r", "METRIC", "credits", "LIMIT", "5", "WINDOW", "rolling", "1h", "SERVICE", "s"],
            ["QUOTA.SET", "n", "a/b", "w", "METRIC", "credits", "LIMIT", "5", "LOW", "1"],
            ["QUOTA.GRANT", "n", "a/b", "w", "3", "ID", "g1"],
            ["QUOTA.CHARGE", "n", "PATH", "a/b", "ID", "c1", "SERVICE", "s", "MODEL", "m", "COST", "credits", "12"],
            ["QUOTA.RESERVE", "n", "PATH", "a", "ID", "h1", "SERVICE", "s", "COST", "credits", "1"],
            ["QUOTA.RESERVE", "n", "PATH", "a", "ID", "h2", "COST", "credits", "100"],
            ["QUOTA.COMMIT", "n", "h1", "COST", "credits", "2"],
            ["QUOTA.CHARGE", "n", "PATH", "a", "CHECK", "COST", "credits", "100"],
            ["QUOTA.RESET", "n", "/", "c"],
        ]
        for target in (r, o):
            clock(target, T0)
            for command in same:
                run(target, command)
            clock(target, T0 + 3 * DAY)
            run(target, ["QUOTA.CHARGE", "n", "PATH", "/", "COST", "credits", "1"])
        check(without_usage(dump_keys(r)) == dump_keys(o), "a tree without rules or INFLIGHT is stored as 1.4.0 stores it, byte for byte")
        check(meta_version(r, "n") == 4, "a tree with grants and without rules stays in layout 4")
        clock(r, T0)
        check(run(r, ["QUOTA.ALLOW", "x", "/", "SERVICE", "s"]) == 1, "an allow entry is added")
        check(meta_version(r, "x") == 5, "a tree with a rule is in layout 5")
        check(run(r, ["QUOTA.ALLOW", "x", "/", "SERVICE", "s", "REMOVE"]) == 1, "and removed")
        run(r, ["QUOTA.CHARGE", "x", "PATH", "/", "COST", "credits", "1"])
        check(meta_version(r, "x") == 5, "a tree that had a rule stays in layout 5")
        run(r, ["QUOTA.SET", "i", "/", "c", "METRIC", "requests", "LIMIT", "2", "INFLIGHT"])
        check(meta_version(r, "i") == 5, "a tree with an INFLIGHT policy is in layout 5")
        check(run(r, ["QUOTA.DENY", "none", "/", "SERVICE", "s", "REMOVE"]) == 0 and r.exists("none") == 0,
              "REMOVE on a missing key creates nothing")
        check(run(r, ["QUOTA.PLAN", "SET", "acc", PLAN_V5]) == 1, "a plan with an INFLIGHT policy is set")
        run(r, ["QUOTA.ASSIGN", "p", "acc"])
        run(r, ["QUOTA.RESERVE", "p", "PATH", "members/u1", "COST", "requests", "1"])
        check(meta_version(r, "p") == 5, "a tree given an INFLIGHT policy by its plan is in layout 5")
        got = json.dumps(run(r, ["QUOTA.GET", "p", "members/u1"]))
        check('"acc"' in got and '"inflight", 1' in got, f"it still follows its plan ({got})")
        server.load(os.path.join(FIXTURES, "quota-1.4.0.lua"), downgrade=True)
        before = dump_keys(r)
        for tree in ("x", "i", "p"):
            for command in (["QUOTA.GET", tree, "/"], ["QUOTA.CHARGE", tree, "PATH", "/", "COST", "credits", "1"]):
                got = run(r, command)
                ok = isinstance(got, dict) and got.get("error", "").startswith("layout:") and "layout 5," in got["error"]
                check(ok, f"library 1.4.0 refuses a layout-5 tree: {' '.join(command)} -> {got}")
        check(dump_keys(r) == before, "library 1.4.0 leaves layout-5 trees unchanged")
    finally:
        server.stop()
        old.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(old_dir, ignore_errors=True)


def test_records_layout():
    """Since 1.6.0 a tree that has had labels, an archived node or a hold
    with META is stored in layout 6; every other tree is stored as 1.5.0
    stores it, byte for byte. Library 1.5.0 refuses a layout-6 tree with
    ERR layout and leaves it as it is."""
    workdir = tempfile.mkdtemp(prefix="quota-layout-")
    old_dir = tempfile.mkdtemp(prefix="quota-layout-")
    server, old = Server(workdir), Server(old_dir)
    try:
        server.load()
        old.load(os.path.join(FIXTURES, "quota-1.5.0.lua"), downgrade=True)
        r, o = server.r, old.r
        same = [
            ["QUOTA.SET", "n", "/", "c", "METRIC", "credits", "LIMIT", "10", "WINDOW", "day", "ROLLOVER", "30"],
            ["QUOTA.SET", "n", "a", "r", "METRIC", "credits", "LIMIT", "5", "WINDOW", "rolling", "1h", "SERVICE", "s"],
            ["QUOTA.SET", "n", "a/b", "w", "METRIC", "credits", "LIMIT", "5", "LOW", "1"],
            ["QUOTA.GRANT", "n", "a/b", "w", "3", "ID", "g1"],
            ["QUOTA.ALLOW", "n", "a", "SERVICE", "s"],
            ["QUOTA.CHARGE", "n", "PATH", "a/b", "ID", "c1", "SERVICE", "s", "MODEL", "m", "COST", "credits", "12"],
            ["QUOTA.RESERVE", "n", "PATH", "a", "ID", "h1", "SERVICE", "s", "COST", "credits", "1"],
            ["QUOTA.RESERVE", "n", "PATH", "a", "ID", "h2", "TTL", "1000", "SERVICE", "s", "COST", "credits", "1"],
            ["QUOTA.COMMIT", "n", "h1", "COST", "credits", "2"],
            ["QUOTA.RESET", "n", "/", "c"],
        ]
        for target in (r, o):
            clock(target, T0)
            for command in same:
                run(target, command)
            clock(target, T0 + 3 * DAY)
            run(target, ["QUOTA.CHARGE", "n", "PATH", "a", "SERVICE", "s", "COST", "credits", "1"])
        # (But for its usage hash, which 1.5.0 does not write.)
        check(without_usage(dump_keys(r)) == dump_keys(o), "a tree without labels, archive or META is stored as "
              "1.5.0 stores it, byte for byte (its usage hash aside)")
        check(meta_version(r, "n") == 5, "a tree with rules and without labels stays in layout 5")
        clock(r, T0)
        check(run(r, ["QUOTA.LABEL", "x", "a", "TAGS", "t"]) is not None, "a tag is given")
        check(meta_version(r, "x") == 6, "a tree with labels is in layout 6")
        run(r, ["QUOTA.LABEL", "x", "a", "TAGS", ""])
        run(r, ["QUOTA.CHARGE", "x", "PATH", "/", "COST", "credits", "1"])
        check(meta_version(r, "x") == 6, "a tree that had labels stays in layout 6")
        run(r, ["QUOTA.SET", "v", "/", "c", "METRIC", "credits", "LIMIT", "10"])
        check(run(r, ["QUOTA.ARCHIVE", "v", "/"]) == 1, "the root is archived")
        check(meta_version(r, "v") == 6, "a tree with an archived node is in layout 6")
        run(r, ["QUOTA.RESERVE", "h", "PATH", "a", "META", "user", "u1", "COST", "credits", "1"])
        check(meta_version(r, "h") == 6, "a tree with a hold with META is in layout 6")
        run(r, ["QUOTA.ALLOW", "y", "/", "SERVICE", "s"])
        run(r, ["QUOTA.LABEL", "y", "/", "NOTE", "n"])
        check(meta_version(r, "y") == 6, "a tree with rules and labels is in layout 6")
        got = run(r, ["QUOTA.RESERVE", "y", "PATH", "a", "COST", "credits", "1"])
        check(json.dumps(got).count('"access"') >= 1, f"and its rules still judge ({json.dumps(got)[:300]})")
        server.load(os.path.join(FIXTURES, "quota-1.5.0.lua"), downgrade=True)
        before = dump_keys(r)
        for tree in ("x", "v", "h", "y"):
            for command in (["QUOTA.GET", tree, "/"], ["QUOTA.CHARGE", tree, "PATH", "/", "COST", "credits", "1"]):
                got = run(r, command)
                ok = isinstance(got, dict) and got.get("error", "").startswith("layout:") and "layout 6," in got["error"]
                check(ok, f"library 1.5.0 refuses a layout-6 tree: {' '.join(command)} -> {got}")
        check(dump_keys(r) == before, "library 1.5.0 leaves layout-6 trees unchanged")
    finally:
        server.stop()
        old.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(old_dir, ignore_errors=True)


def test_cycles_layout():
    """Since 1.8.0 a tree that has had a policy whose window has a zone or
    a week or year anchor that is not the default (QUOTA.SET's, or given by
    its plan) is stored in layout 7; every other tree is stored as 1.7.0
    stores it, byte for byte (so rolling back stays possible). Library 1.7.0
    refuses a layout-7 tree with ERR layout and leaves it as it is."""
    workdir = tempfile.mkdtemp(prefix="quota-layout-")
    old_dir = tempfile.mkdtemp(prefix="quota-layout-")
    server, old = Server(workdir), Server(old_dir)
    try:
        server.load()
        old.load(os.path.join(FIXTURES, "quota-1.7.0.lua"), downgrade=True)
        r, o = server.r, old.r
        # (Windows both libraries store alike: UTC, the default week and
        # year anchors, month anchors; TZ UTC and +00:00 are no zone.)
        same = [
            ["QUOTA.SET", "n", "/", "c", "METRIC", "credits", "LIMIT", "10", "WINDOW", "day", "ROLLOVER", "30"],
            ["QUOTA.SET", "n", "a", "r", "METRIC", "credits", "LIMIT", "5", "WINDOW", "rolling", "1h", "SERVICE", "s"],
            ["QUOTA.SET", "n", "a/b", "w", "METRIC", "credits", "LIMIT", "5", "WINDOW", "week", "LOW", "1"],
            ["QUOTA.SET", "n", "a/b", "y", "METRIC", "credits", "LIMIT", "50", "WINDOW", "year"],
            ["QUOTA.SET", "n", "a/c", "m", "METRIC", "credits", "LIMIT", "50", "WINDOW", "month", "ANCHOR", "31"],
            ["QUOTA.GRANT", "n", "a/b", "w", "3", "ID", "g1"],
            ["QUOTA.ALLOW", "n", "a", "SERVICE", "s"],
            ["QUOTA.LABEL", "n", "a", "TAGS", "t"],
            ["QUOTA.CHARGE", "n", "PATH", "a/b", "ID", "c1", "SERVICE", "s", "MODEL", "m", "COST", "credits", "12"],
            ["QUOTA.RESERVE", "n", "PATH", "a", "ID", "h1", "SERVICE", "s", "META", "u", "1", "COST", "credits", "1"],
            ["QUOTA.COMMIT", "n", "h1", "COST", "credits", "2"],
            ["QUOTA.RESET", "n", "/", "c"],
        ]
        utc = [
            ["QUOTA.SET", "u", "/", "c", "METRIC", "credits", "LIMIT", "10", "WINDOW", "day", "TZ", "UTC"],
            ["QUOTA.SET", "u", "a", "w", "METRIC", "credits", "LIMIT", "10", "WINDOW", "week", "ANCHOR", "monday",
             "TZ", "+00:00"],
            ["QUOTA.SET", "u", "a", "y", "METRIC", "credits", "LIMIT", "10", "WINDOW", "year", "ANCHOR", "01-01"],
        ]
        for target in (r, o):
            clock(target, T0)
            for command in same:
                run(target, command)
            clock(target, T0 + 3 * DAY)
            run(target, ["QUOTA.CHARGE", "n", "PATH", "a", "SERVICE", "s", "COST", "credits", "1"])
        for command in utc:
            got = run(r, command)
            check(not isinstance(got, dict), f"{' '.join(command)} -> {got}")
        # (1.7.0 takes no TZ and no week or year ANCHOR: the same tree
        # without them.)
        for command in utc:
            cut = command[:command.index("WINDOW") + 2]
            run(o, cut)
        check(without_usage(dump_keys(r)) == without_usage(dump_keys(o)), "a tree without zones or week and year "
              "anchors is stored as 1.7.0 stores it, byte for byte (its usage hash aside)")
        check(meta_version(r, "n") == 6 and meta_version(r, "u") == 2,
              f"trees without zones keep their layouts ({meta_version(r, 'n')}, {meta_version(r, 'u')})")
        clock(r, T0)
        trees = {
            "z": ["QUOTA.SET", "z", "a", "c", "METRIC", "credits", "LIMIT", "10", "WINDOW", "month", "TZ",
                  "America/New_York"],
            "f": ["QUOTA.SET", "f", "/", "c", "METRIC", "credits", "LIMIT", "10", "WINDOW", "day", "TZ", "+05:30"],
            "w": ["QUOTA.SET", "w", "/", "c", "METRIC", "credits", "LIMIT", "10", "WINDOW", "week", "ANCHOR", "sunday"],
            "y": ["QUOTA.SET", "y", "/", "c", "METRIC", "credits", "LIMIT", "10", "WINDOW", "year", "ANCHOR", "04-01"],
        }
        for tree, command in trees.items():
            got = run(r, command)
            check(not isinstance(got, dict), f"{' '.join(command)} is set ({got})")
            check(meta_version(r, tree) == 7, f"a tree with {' '.join(command[-2:])} is in layout 7")
        # A tree that had one stays in layout 7, its flags kept.
        run(r, ["QUOTA.ALLOW", "w", "/", "SERVICE", "s"])
        run(r, ["QUOTA.LABEL", "w", "/", "NOTE", "n"])
        run(r, ["QUOTA.SET", "w", "/", "c", "METRIC", "credits", "LIMIT", "10", "WINDOW", "week"])
        run(r, ["QUOTA.CHARGE", "w", "PATH", "/", "COST", "credits", "1"])
        check(meta_version(r, "w") == 7, "a tree that had a week anchor stays in layout 7")
        got = run(r, ["QUOTA.RESERVE", "w", "PATH", "a", "COST", "credits", "1"])
        check(json.dumps(got).count('"access"') >= 1, f"and its rules still judge ({json.dumps(got)[:300]})")
        got = json.dumps(run(r, ["QUOTA.GET", "w", "/"]))
        check('"note"' in got and '"n"' in got, f"and its labels still show ({got[:300]})")
        lua = "local m = cmsgpack.unpack(redis.call('HGET', KEYS[1], '#')); return {tostring(m[10]), tostring(m[11])}"
        check(r.eval(lua, 1, "w") == [b"true", b"true"] and r.eval(lua, 1, "z") == [b"false", b"false"],
              "its '#' says whether it had rules (tenth) and labels (eleventh)")
        # A plan's zoned policy stored in a node's record makes the tree layout 7 too.
        plan = json.dumps({"paths": {"members/*": {"cap": {"metric": "credits", "limit": "5", "window": "day",
                                                            "tz": "Asia/Kolkata"}}}})
        check(run(r, ["QUOTA.PLAN", "SET", "zoned", plan]) == 1, "a plan with a zone is set")
        run(r, ["QUOTA.SET", "p", "/", "c", "METRIC", "credits", "LIMIT", "10"])
        run(r, ["QUOTA.ASSIGN", "p", "zoned"])
        check(meta_version(r, "p") == 3, f"a tree that follows it, with no node it gives, is in layout 3 "
              f"({meta_version(r, 'p')})")
        run(r, ["QUOTA.RESERVE", "p", "PATH", "members/u1", "COST", "credits", "1"])
        check(meta_version(r, "p") == 7, "a tree given a zoned policy by its plan is in layout 7")
        got = json.dumps(run(r, ["QUOTA.GET", "p", "members/u1"]))
        check('"zoned"' in got and "Asia/Kolkata" in got, f"it still follows its plan ({got[:300]})")
        server.load(os.path.join(FIXTURES, "quota-1.7.0.lua"), downgrade=True)
        before = dump_keys(r)
        for tree in ("z", "f", "w", "y", "p"):
            for command in (["QUOTA.GET", tree, "/"], ["QUOTA.CHARGE", tree, "PATH", "/", "COST", "credits", "1"]):
                got = run(r, command)
                ok = isinstance(got, dict) and got.get("error", "").startswith("layout:") and "layout 7," in got["error"]
                check(ok, f"library 1.7.0 refuses a layout-7 tree: {' '.join(command)} -> {got}")
        for tree in ("n", "u"):
            got = run(r, ["QUOTA.CHARGE", tree, "PATH", "a", "SERVICE", "s", "COST", "credits", "1"])
            check(isinstance(got, dict) and "error" not in got, f"library 1.7.0 still writes tree {tree} ({got})")
        after = dump_keys(r)

        def zoned(dump):
            names = [t.encode() for t in ("z", "f", "w", "y", "p")]
            return {k: v for k, v in dump.items()
                    if any(base64.b64decode(k) in (t, b"{" + t + b"}quota:" + t) or base64.b64decode(k).startswith(
                        b"{" + t + b"}quota:" + t + b":") for t in names)}
        check(len(zoned(before)) >= 5 and zoned(after) == zoned(before),
              "library 1.7.0 leaves layout-7 trees unchanged")
    finally:
        server.stop()
        old.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(old_dir, ignore_errors=True)


def test_meta_metric_upgrade():
    """`meta` became a keyword in 1.6.0 (META), so no new command takes it as
    a metric; a plan, a price and a tree that 1.5.0 stored on metric `meta`
    still read after the upgrade, and a price on it still charges it."""
    workdir = tempfile.mkdtemp(prefix="quota-layout-")
    server = Server(workdir)
    try:
        server.load(os.path.join(FIXTURES, "quota-1.5.0.lua"), downgrade=True)
        r = server.r
        clock(r, T0)
        for command in (
            ["QUOTA.PLAN", "SET", "pro", '{"paths":{"*":{"m":{"metric":"meta","limit":"5"}}}}'],
            ["QUOTA.PRICE", "SET", "chat/m1", '{"metric":"meta","rates":{"tokens":"1"}}'],
            ["QUOTA.PRICE", "SET", "chat/m2", '{"metric":"credits","rates":{"meta":"1"}}'],
            ["QUOTA.SET", "t", "/", "m", "METRIC", "meta", "LIMIT", "10"],
            ["QUOTA.CHARGE", "t", "PATH", "a", "COST", "meta", "3"],
            ["QUOTA.RESERVE", "t", "PATH", "a", "ID", "h1", "COST", "meta", "1"],
            ["QUOTA.ASSIGN", "u", "pro"],
            ["QUOTA.CHARGE", "u", "PATH", "a", "COST", "meta", "1"],
        ):
            got = run(r, command)
            check(not (isinstance(got, dict) and "error" in got), f"1.5.0 takes {' '.join(command)} -> {got}")
        reads = [
            ["QUOTA.GET", "t", "a"], ["QUOTA.GET", "u", "a"], ["QUOTA.PLAN", "GET", "pro"],
            ["QUOTA.PRICE", "GET", "chat/m1"], ["QUOTA.PRICE", "GET", "chat/m2"], ["QUOTA.HOLDS", "t"],
        ]
        before = [run(r, c) for c in reads]
        server.load()
        for command, want in zip(reads, before):
            got = run(r, command)
            check(got == want, f"after the upgrade {' '.join(command)} reads as before", f"{got} != {want}")
        got = run(r, ["QUOTA.CHARGE", "t", "PATH", "a", "USAGE", "chat/m1", "tokens", "2"])
        check(json.dumps(got).count('"meta"') >= 1 and "error" not in json.dumps(got),
              f"a price on metric meta still charges it: {got}")
        check(run(r, ["QUOTA.COMMIT", "t", "h1"]).get("error") is None, "a hold on meta commits")
        got = run(r, ["QUOTA.GET", "t", "/"])
        check('"4"' in json.dumps(got) or '"6"' in json.dumps(got), f"and spent counts it: {got}")
        got = run(r, ["QUOTA.CHARGE", "u", "PATH", "b", "COST", "credits", "1"])
        check("error" not in json.dumps(got), f"a tree following the plan on meta takes a charge: {got}")
        for command in (
            ["QUOTA.SET", "t", "/", "n", "METRIC", "meta", "LIMIT", "1"],
            ["QUOTA.PLAN", "SET", "pro", '{"paths":{"*":{"m":{"metric":"meta","limit":"6"}}}}'],
            ["QUOTA.PRICE", "SET", "chat/m3", '{"metric":"meta","rates":{"tokens":"1"}}'],
            ["QUOTA.PRICE", "SET", "chat/m3", '{"metric":"credits","rates":{"meta":"1"}}'],
        ):
            got = run(r, command)
            check(isinstance(got, dict) and "keyword" in got.get("error", ""),
                  f"a new command may not name metric meta: {' '.join(command)} -> {got}")
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# Stored rules a library never writes, as Lua code on the node's decoded
# record `t` (t[5] = {allow, deny}, each a sorted list of {service, model or
# false}): each must be refused with ERR layout, never read as other rules
# (a model-specific deny read as the whole service's, an entry dropped).
CORRUPT_RULES = [
    ("rules that are not a table", "t[5] = 'x'"),
    ("a list that is not a list", "t[5][1] = 7"),
    ("a third list", "t[5][3] = {}"),
    ("an entry that is not a table", "t[5][2] = {'s'}"),
    ("an entry of one field", "t[5][2] = {{'s'}}"),
    ("an entry of three fields", "t[5][2] = {{'s', false, 'x'}}"),
    ("a service that is not text", "t[5][2] = {{5, false}}"),
    ("a model that is neither text nor false", "t[5][2] = {{'s', 7}}"),
    ("a model that is true", "t[5][2] = {{'s', true}}"),
    ("a service with a space", "t[5][2] = {{'a b', false}}"),
    ("an empty service", "t[5][2] = {{'', false}}"),
    ("a service '*'", "t[5][2] = {{'*', false}}"),
    ("a model of 129 characters", "t[5][2] = {{'s', string.rep('m', 129)}}"),
    ("entries out of order", "t[5][2] = {{'z', false}, {'a', false}}"),
    ("a model before no model", "t[5][2] = {{'s', 'm'}, {'s', false}}"),
    ("a repeated entry", "t[5][2] = {{'a', false}, {'a', false}}"),
    ("no entry at all", "t[5] = {{}, {}}"),
    ("more than 128 entries",
     "local l = {} for i = 1, 129 do l[i] = {string.format('s%03d', i), false} end t[5][2] = l"),
]


def test_corrupt_rules():
    """A node whose stored rules no library writes (a hand edit, a bad
    restore) is refused with ERR layout by every command that reads it,
    and nothing is changed; the module refuses such a payload on load."""
    workdir = tempfile.mkdtemp(prefix="quota-layout-")
    server = Server(workdir)
    try:
        server.load()
        r = server.r
        clock(r, T0)
        commands = [
            ["QUOTA.GET", "c", "/"],
            ["QUOTA.ACCESS", "c", "/"],
            ["QUOTA.RESERVE", "c", "PATH", "a", "SERVICE", "s", "MODEL", "m", "COST", "requests", "1"],
            ["QUOTA.CHARGE", "c", "PATH", "a", "SERVICE", "s", "COST", "requests", "1"],
            ["QUOTA.ALLOW", "c", "/", "SERVICE", "z"],
        ]
        for what, edit in [("rules as the library writes them", "")] + CORRUPT_RULES:
            r.flushall()
            clock(r, T0)
            run(r, ["QUOTA.DENY", "c", "/", "SERVICE", "s", "MODEL", "m"])
            run(r, ["QUOTA.ALLOW", "c", "/", "SERVICE", "s"])
            r.eval("local t = cmsgpack.unpack(redis.call('HGET', KEYS[1], '/')) " + edit
                   + " redis.call('HSET', KEYS[1], '/', cmsgpack.pack(t))", 1, "c")
            before = dump_keys(r)
            for command in commands:
                got = run(r, command)
                refused = isinstance(got, dict) and got.get("error", "").startswith(
                    "layout: tree 'c' has a node whose access rules this library cannot read")
                if not edit:
                    check(not (isinstance(got, dict) and "error" in got), f"{what}: {' '.join(command)} -> {got}")
                    continue
                check(refused, f"{what}: refused with ERR layout: {' '.join(command)}", f"got {json.dumps(got)[:300]}")
                check(dump_keys(r) == before, f"{what}: a refused {command[0]} changes nothing")
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# Stored labels and META a library never writes, as Lua code on the decoded
# record `t` (a node: t[6] = {note or false, tags, archived}; a hold: t[12]
# = its pairs flat): each must be refused with ERR layout, never read.
CORRUPT_RECORDS = [
    ("node", "labels that are not a table", "t[6] = 'x'"),
    ("node", "empty labels", "t[6] = {false, {}, false}"),
    ("node", "a note with a control character", "t[6][1] = 'a\\nb'"),
    ("node", "a note of 257 bytes", "t[6][1] = string.rep('n', 257)"),
    ("node", "tags out of order", "t[6][2] = {'b', 'a'}"),
    ("node", "a repeated tag", "t[6][2] = {'a', 'a'}"),
    ("node", "a tag with a space", "t[6][2] = {'a b'}"),
    ("node", "17 tags", "local l = {} for i = 1, 17 do l[i] = string.format('t%02d', i) end t[6][2] = l"),
    ("node", "an archived flag that is not a boolean", "t[6][3] = 1"),
    ("hold", "META of an odd length", "t[12] = {'user'}"),
    ("hold", "empty META", "t[12] = {}"),
    ("hold", "a META name that is a keyword", "t[12] = {'cost', 'x'}"),
    ("hold", "a repeated META name", "t[12] = {'user', 'a', 'user', 'b'}"),
    ("hold", "a META value with a control character", "t[12] = {'user', 'a\\tb'}"),
    ("hold", "17 META pairs",
     "local l = {} for i = 1, 17 do l[#l + 1] = 'k' .. i l[#l + 1] = 'v' end t[12] = l"),
]


def test_corrupt_records():
    """A node whose stored labels, or a hold whose stored META, no library
    writes is refused with ERR layout by the commands that read it, and
    nothing is changed."""
    workdir = tempfile.mkdtemp(prefix="quota-layout-")
    server = Server(workdir)
    try:
        server.load()
        r = server.r
        for where, what, edit in [("node", "labels as the library writes them", ""),
                                  ("hold", "META as the library writes it", "")] + CORRUPT_RECORDS:
            r.flushall()
            clock(r, T0)
            run(r, ["QUOTA.LABEL", "c", "/", "NOTE", "n", "TAGS", "a,b"])
            run(r, ["QUOTA.RESERVE", "c", "PATH", "a", "ID", "h1", "META", "user", "u1", "COST", "credits", "1"])
            key, field = ("c", "/") if where == "node" else ("{c}quota:c:holds", "h1")
            r.eval("local t = cmsgpack.unpack(redis.call('HGET', KEYS[1], ARGV[1])) " + edit
                   + " redis.call('HSET', KEYS[1], ARGV[1], cmsgpack.pack(t))", 1, key, field)
            commands = [["QUOTA.GET", "c", "/"], ["QUOTA.LABEL", "c", "/", "TAGS", "z"]] if where == "node" else \
                [["QUOTA.HOLDS", "c"], ["QUOTA.COMMIT", "c", "h1"]]
            before = dump_keys(r)
            for command in commands:
                got = run(r, command)
                if not edit:
                    check(not (isinstance(got, dict) and "error" in got), f"{what}: {' '.join(command)} -> {got}")
                    continue
                refused = isinstance(got, dict) and got.get("error", "").startswith("layout: tree 'c' has a ")
                check(refused, f"{what}: refused with ERR layout: {' '.join(command)}", f"got {json.dumps(got)[:300]}")
                check(dump_keys(r) == before, f"{what}: a refused {command[0]} changes nothing")
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# Stored usage (the companion hash {c}quota:c:usage) a library never writes,
# as Lua code on the field's bytes `b` (nil: written as cmsgpack packs the
# decoded `t`) or on `t`: a "/<path>" record {slots, hour, hour cells, day,
# day cells}, a "b/<path>" list {hours, days}, an "h<n>/<path>" bucket's
# cells (series, metric, amount, ...). Each must be refused with ERR layout
# before anything is written (a Function does not roll back).
NOT_MSGPACK = [
    ("bytes that are no msgpack", "b = '\\255'"),
    ("a msgpack string", "b = '\\161x'"),
    ("a value and a byte more", "b = cmsgpack.pack(t) .. '\\1'"),
]
CORRUPT_USAGE_RECORDS = NOT_MSGPACK + [
    ("three numbers", "b = '\\147\\1\\2\\3'"),
    ("five empty lists", "b = '\\149\\144\\144\\144\\144\\144'"),
    ("six positions", "t[6] = 1"),
    ("an hour that is text", "t[2] = 'x'"),
    ("a day that is negative", "t[4] = -1"),
    ("a slot that is text", "t[1][1] = 's'"),
    ("a slot whose hour is text", "t[1][1][3] = 'x'"),
    ("a slot whose model is a number", "t[1][1][2] = 1"),
    ("cells not in threes", "t[3][#t[3]] = nil"),
    ("a series that is text", "t[3][1] = 'x'"),
    ("an amount that is text", "t[3][3] = '1'"),
    ("an amount with a fraction", "t[3][3] = 1.5"),
    ("a decimal of scale 99", "t[3][3] = {m = 25, s = 99}"),
    ("a decimal whose mantissa is text", "t[3][3] = {m = 'x', s = 1}"),
    ("limbs out of range", "t[3][6] = {l = {100000000}, neg = false, s = 0}"),
    ("limbs without a sign", "t[3][6] = {l = {1}, s = 0}"),
    ("day cells that are text", "t[5] = 'x'"),
]
CORRUPT_USAGE_LISTS = NOT_MSGPACK + [
    ("hours that are text", "t[1] = 'x'"),
    ("a bucket number that is text", "t[1][1] = 'x'"),
    ("no days", "t[2] = nil"),
]
CORRUPT_USAGE_CELLS = NOT_MSGPACK + [
    ("cells not in threes", "t[#t] = nil"),
    ("a metric that is a number", "t[2] = 7"),
    ("an amount that is a table of text", "t[3] = {m = 'x', s = 0}"),
]


def test_corrupt_usage():
    """A stored usage field no library writes is refused with ERR layout by
    the commands that need it (CHARGE, COMMIT, DELPATH, USAGE), and nothing
    is changed: the write checks it before its first write."""
    workdir = tempfile.mkdtemp(prefix="quota-layout-")
    server = Server(workdir)
    hour = 3600000
    # (field, edits, clock for the commands, commands that need the field)
    cases = [
        ("/a", CORRUPT_USAGE_RECORDS, T0 + 2 * hour, [
            ["QUOTA.CHARGE", "c", "PATH", "a", "SERVICE", "s", "COST", "credits", "1"],
            ["QUOTA.COMMIT", "c", "h1", "COST", "credits", "1"],
            ["QUOTA.USAGE", "c", "a", "BY", "hour"],
            ["QUOTA.USAGE", "c", "a"],
            ["QUOTA.USAGE", "c", "/", "GROUP", "child"],
        ]),
        ("b/a", CORRUPT_USAGE_LISTS, T0 + 2 * hour, [
            ["QUOTA.CHARGE", "c", "PATH", "a", "SERVICE", "s", "COST", "credits", "1"],
            ["QUOTA.COMMIT", "c", "h1", "COST", "credits", "1"],
        ]),
        ("b/d", CORRUPT_USAGE_LISTS, T0 + 2 * hour, [["QUOTA.DELPATH", "c", "d"]]),
        # (An older hour is read by a write only when the clock went back.)
        (f"h{T0 // hour}/a", CORRUPT_USAGE_CELLS, T0, [
            ["QUOTA.CHARGE", "c", "PATH", "a", "SERVICE", "s", "COST", "credits", "1"],
            ["QUOTA.COMMIT", "c", "h1", "COST", "credits", "1"],
            ["QUOTA.USAGE", "c", "a", "BY", "hour"],
        ]),
    ]
    try:
        server.load()
        r = server.r
        for field, edits, at, commands in cases:
            for what, edit in [("as the library writes it", "")] + edits:
                what = f"usage field {field}: {what}"
                r.flushall()
                clock(r, T0)
                run(r, ["QUOTA.CHARGE", "c", "PATH", "a", "ALSO", "d", "SERVICE", "s", "MODEL", "m",
                        "COST", "credits", "1"])
                run(r, ["QUOTA.RESERVE", "c", "PATH", "a", "ID", "h1", "TTL", "86400000", "SERVICE", "s",
                        "COST", "credits", "1"])
                clock(r, T0 + hour)
                # (A decimal, and an amount past 2^53: both stored forms.)
                for _ in range(10):
                    run(r, ["QUOTA.CHARGE", "c", "PATH", "a", "ALSO", "d", "SERVICE", "s",
                            "COST", "credits", "0.25", "tokens", "1000000000000000"])
                r.eval("local t = cmsgpack.unpack(redis.call('HGET', KEYS[1], ARGV[1])) local b = nil " + edit
                       + " redis.call('HSET', KEYS[1], ARGV[1], b or cmsgpack.pack(t))", 1, "{c}quota:c:usage", field)
                clock(r, at)
                before = dump_keys(r)
                for command in commands:
                    got = run(r, command)
                    if not edit:
                        check(not (isinstance(got, dict) and "error" in got), f"{what}: {' '.join(command)} -> {got}")
                        continue
                    refused = isinstance(got, dict) and got.get("error", "").startswith(
                        "layout: tree 'c' has a node whose usage this library cannot read")
                    check(refused, f"{what}: refused with ERR layout: {' '.join(command)}",
                          f"got {json.dumps(got)[:300]}")
                    check(dump_keys(r) == before, f"{what}: a refused {command[0]} changes nothing")
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main():
    args = sys.argv[1:]
    if args[:1] == ["--write"]:
        library = None
        if "--file" in args:
            library = args[args.index("--file") + 1]
        if len(args) < 2 or args[1] not in FIXTURE_SPECS:
            sys.exit(f"--write takes one of {', '.join(FIXTURE_SPECS)}")
        write_fixture(args[1], library)
        return
    for name in ("v1",):
        test_failed_writes(name)
        test_fixture(name)
    test_plan_fixture("v3")
    test_future_layout()
    test_older_writer()
    test_plan_layout()
    test_grants_layout()
    test_grants_fixture("v4")
    test_access_layout()
    test_grants_fixture("v5", layout=5)
    test_records_layout()
    test_grants_fixture("v6", layout=6)
    test_cycles_layout()
    test_corrupt_rules()
    test_corrupt_records()
    test_meta_metric_upgrade()
    test_corrupt_usage()
    print(f"{'FAILED' if FAILED else 'passed'}: lua_layout ({len(FAILED)} failed)")
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
