#!/usr/bin/env python3
"""make bench: quota's commands beside plain INCRBY, beside the Lua-script
approach and beside the ceiling, in the same run, on the same server.

It starts its own redis-server with the module, builds the benchmark tree
(/, search, search/qr, search/qr/canary; per level a strict monthly credits
policy and a block requests policy) and runs redis-benchmark (-c 50,
-n 200000, -P 16 and -P 1), the median of 3 runs per command. Holds get a
60 s TTL, like the Lua script's hold keys (PX 60000), so what is measured is
the reservation, not the expiry of earlier ones. The Lua Functions library
(lua/quota.lua) is loaded into the same server and its reserve and charge
run on a tree of its own built the same way. The same 8 policies also come
from a plan (QUOTA.PLAN SET bench, QUOTA.ASSIGN tp bench; quota_plan and
quota_assign for the library's tree tlp), so a reservation on a tree that
follows a plan is measured beside one on a tree with its own policies; on a
build without plans those rows are skipped with a message. Trees tg (module) and
tlg (library) have 5,000 grants (QUOTA.GRANT … ID PRIORITY [FOR 400d]) on the
reached credits policy, whose own limit is 0: a reservation there is measured
beside one on a tree without grants (its checks read the cached allowance), and
CHARGE and reserve + commit draw from a grant on every call. Trees ta (module) and
tla (library) have access rules and an in-flight limit (SPEC §8): 5 deny entries at
the root, an allow list of 20 entries at search (the project), an INFLIGHT requests
policy on search/qr/canary (the member); their reservation names SERVICE and MODEL
and passes every rule, beside the same reservation on the tree without rules (on a
build without access rules those rows are skipped with a message). The ceiling module
(bench/ceiling, target/release/libquota_ceiling.so, built by make bench) is
loaded too: CEILING.BRIEF and CEILING.FULL open the key, reply RESERVE's
BRIEF or full map and replicate a QUOTA.REPLAY-shaped command, doing no
quota work, so they are the most a quota write could reach on this server.
Every row is printed as × INCRBY, × the naive script and × the ceiling
(CEILING.FULL for full-breakdown rows, CEILING.BRIEF for the others). Then
it measures scale on both backends (reserve throughput with 10 to 100k paths and 0 to 1M
live holds; on the module, a plan-following tree among 10k trees following its plan
and 1,000 plans), memory per path with one policy on both backends, and RDB
save and load time of a 100k-path tree. Last, usage over time (SPEC §9):
memory per tree with 10 and 1,000 active paths (children of the root), each
charged by 5 models (SERVICE chat MODEL m0..m4, COST credits 1 requests 1)
once a day for 90 days and every hour of the last 48 (the test clock), which
fills every bucket the default retention keeps; with the defaults, with
smaller settings, and with usage off; and reserve + commit, CHARGE and
RESERVE BRIEF with usage on and off (CONFIG SET quota.usage_hours 0,
quota.usage_days 0) on the benchmark tree.

    python3 bench/bench.py [--quick]

This is a benchmark, not a test: it asserts nothing and prints a report.
"""

import argparse
import csv
import io
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import redis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# QUOTA_MODULE, QUOTA_CEILING, QUOTA_LIBRARY and QUOTA_LOADER measure another checkout's build.
MODULE = os.environ.get("QUOTA_MODULE", os.path.join(ROOT, "target", "release", "libquota.so"))
CEILING = os.environ.get("QUOTA_CEILING", os.path.join(ROOT, "target", "release", "libquota_ceiling.so"))
LIBRARY = os.environ.get("QUOTA_LIBRARY", os.path.join(ROOT, "lua", "quota.lua"))
LOADER = os.environ.get("QUOTA_LOADER", os.path.join(ROOT, "target", "release", "quota-load"))
PATH = "search/qr/canary"
LEVELS = ["/", "search", "search/qr", "search/qr/canary"]

# What a user would write without the module: check 4 ancestor counters
# against their limits (GET + HGET per level), increment all 4, set a hold.
NAIVE_LUA = """
local amount = tonumber(ARGV[1])
for i = 1, 4 do
  local used = tonumber(redis.call('GET', KEYS[i]) or '0')
  local limit = tonumber(redis.call('HGET', 'bench:limits', KEYS[i]) or '0')
  if used + amount > limit then return 0 end
end
for i = 1, 4 do redis.call('INCRBY', KEYS[i], amount) end
redis.call('SET', 'bench:hold:' .. ARGV[2], amount, 'PX', 60000)
return 1
"""

# Reserve and commit in one round trip: commit needs the reservation's id.
PAIR_LUA = """
local r = redis.call('QUOTA.RESERVE', KEYS[1], 'PATH', ARGV[1], 'TTL', '60000', 'BRIEF', 'COST', 'credits', '1', 'requests', '1')
return redis.call('QUOTA.COMMIT', KEYS[1], r[4])
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, *module_args, modules=True):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="quota-bench-")
        load = ["--loadmodule", MODULE, "MAX_HOLDS", "5000000", "MAX_PATHS", "1000000", *module_args,
                "--loadmodule", CEILING] if modules else []
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir, "--save", "",
             "--appendonly", "no", "--enable-debug-command", "local", "--logfile", os.path.join(self.dir, "log"),
             *load],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.r = redis.Redis(port=self.port, decode_responses=True)
        for _ in range(200):
            try:
                self.r.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self):
        try:
            self.r.shutdown(nosave=True)
        except redis.ConnectionError:
            pass
        self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


def build_tree(r, key="t", set_command=("QUOTA.SET",)):
    for level in LEVELS:
        r.execute_command(*set_command, key, level, "credits", "METRIC", "credits", "LIMIT", "1000000000000",
                          "WINDOW", "month")
        r.execute_command(*set_command, key, level, "requests", "METRIC", "requests", "LIMIT", "1000000000000",
                          "MODE", "block")


def plan_json():
    """The benchmark tree's 8 policies as a plan: one pattern per level."""
    policies = {"credits": {"metric": "credits", "limit": "1000000000000", "window": "month"},
                "requests": {"metric": "requests", "limit": "1000000000000", "mode": "block"}}
    return json.dumps({"paths": {level: policies for level in LEVELS}})


def build_plan_tree(r, key, plan_command=("QUOTA.PLAN",), assign_command=("QUOTA.ASSIGN",)):
    """A tree of the benchmark's shape whose 8 policies come from the plan
    `bench`; False (and a message) when the server has no plans."""
    try:
        r.execute_command(*plan_command, "SET", "bench", plan_json())
    except redis.ResponseError as e:
        print(f"  no plans on this server ({str(e)[:80]}): skipping the plan-following rows", file=sys.stderr)
        return False
    r.execute_command(*assign_command, key, "bench")
    return True


GRANT_COUNT = 5_000


def grant_args(i):
    """The i-th of the benchmark's grants: mixed priorities, half with a
    time limit (FOR 400d), ids g0…, each large enough to outlast the run."""
    return ["ID", f"g{i}", "PRIORITY", str(i % 101)] + (["FOR", "400d"] if i % 2 else [])


def build_grant_tree(r, key, count, set_command=("QUOTA.SET",), grant_command=("QUOTA.GRANT",)):
    """A tree of the benchmark's shape with `count` grants on the reached
    credits policy (search/qr/canary), whose own limit is 0, so that every
    charge or commit draws from a grant; False (and a message) when the
    server has no grants of this kind."""
    build_tree(r, key, set_command)
    r.execute_command(*set_command, key, PATH, "credits", "METRIC", "credits", "LIMIT", "0", "WINDOW", "month")
    try:
        r.execute_command(*grant_command, key, PATH, "credits", "1000000000", *grant_args(0))
    except redis.ResponseError as e:
        print(f"  no grants with options on this server ({str(e)[:80]}): skipping the grant rows", file=sys.stderr)
        return False
    for start in range(1, count, 1000):
        pipe = r.pipeline(transaction=False)
        for i in range(start, min(start + 1000, count)):
            pipe.execute_command(*grant_command, key, PATH, "credits", "1000000000", *grant_args(i))
        pipe.execute()
    return True


# The access rows' request: allowed at search (chat/m7), denied nowhere.
ACCESS_REQUEST = ["SERVICE", "chat", "MODEL", "m7"]
ACCESS_DENY = [("video", None), ("image", "dalle"), ("chat", "old0"), ("chat", "old1"), ("audio", None)]
ACCESS_ALLOW = [("chat", f"m{i}") for i in range(15)] + [("embed", None), ("image", "pix"), ("image", "hd"),
                                                          ("search", None), ("rerank", None)]


def build_access_tree(r, key, set_command=("QUOTA.SET",), allow_command=("QUOTA.ALLOW",),
                      deny_command=("QUOTA.DENY",)):
    """A tree of the benchmark's shape with access rules (5 deny entries at
    the root, 20 allow entries at search) and an INFLIGHT requests policy on
    the member search/qr/canary; False (and a message) when the server has
    no access rules."""
    build_tree(r, key, set_command)
    try:
        r.execute_command(*set_command, key, PATH, "inflight", "METRIC", "requests", "LIMIT", "1000000000000",
                          "INFLIGHT")
        for command, level, entries in ((deny_command, "/", ACCESS_DENY), (allow_command, "search", ACCESS_ALLOW)):
            for service, model in entries:
                r.execute_command(*command, key, level, "SERVICE", service, *(["MODEL", model] if model else []))
    except redis.ResponseError as e:
        print(f"  no access rules on this server ({str(e)[:80]}): skipping the access rows", file=sys.stderr)
        return False
    return True


def benchmark(port, command, pipeline, requests, runs):
    """Median of `runs` redis-benchmark runs: (rps, p50 ms, p99 ms). A run
    that fails (redis-benchmark stops at an error reply, such as BUSY while
    a long script runs) is reported on stderr and left out; NaN when all do."""
    results = []
    for _ in range(runs):
        done = subprocess.run(["redis-benchmark", "-p", str(port), "-c", "50", "-n", str(requests), "-P",
                               str(pipeline), "-r", "1000000", "--csv", *command],
                              capture_output=True, text=True, timeout=600)
        rows = list(csv.DictReader(io.StringIO(done.stdout)))
        if not rows:
            print(f"  redis-benchmark failed for {' '.join(command[:3])}… -P {pipeline}: "
                  f"{done.stderr.strip()[:200] or 'no output'}", file=sys.stderr)
            continue
        row = rows[-1]
        results.append((float(row["rps"]), float(row["p50_latency_ms"]), float(row["p99_latency_ms"])))
    if not results:
        return (math.nan, math.nan, math.nan)
    results.sort()
    return results[len(results) // 2]


def throughput_table(server, args):
    r = server.r
    build_tree(r)
    for level in LEVELS:
        r.hset("bench:limits", f"bench:used:{level}", 10 ** 15)
    with open(LIBRARY) as f:
        r.execute_command("FUNCTION", "LOAD", "REPLACE", f.read())
    build_tree(r, "tl", ("FCALL", "quota_set", "1"))
    plans = build_plan_tree(r, "tp")
    lua_plans = plans and build_plan_tree(r, "tlp", ("FCALL", "quota_plan", "0"), ("FCALL", "quota_assign", "1"))
    lua_count = GRANT_COUNT
    grant_rows(GRANT_COUNT, lua_count)
    started = time.time()
    grants = build_grant_tree(r, "tg", GRANT_COUNT)
    if grants:
        print(f"  {GRANT_COUNT:,} grants on the module's grant tree in {time.time() - started:.1f} s", file=sys.stderr)
    started = time.time()
    lua_grants = grants and build_grant_tree(r, "tlg", lua_count, ("FCALL", "quota_set", "1"),
                                             ("FCALL", "quota_grant", "1"))
    if lua_grants:
        print(f"  {lua_count:,} grants on the library's grant tree in {time.time() - started:.1f} s", file=sys.stderr)
    access = build_access_tree(r, "ta")
    lua_access = access and build_access_tree(r, "tla", ("FCALL", "quota_set", "1"), ("FCALL", "quota_allow", "1"),
                                              ("FCALL", "quota_deny", "1"))
    naive = r.script_load(NAIVE_LUA)
    pair = r.script_load(PAIR_LUA)
    batch = ["QUOTA.RESERVE", "t", "PATH", PATH, "TTL", "60000", "BRIEF"] + ["COST", "credits", "1"] * 100
    # The ceiling runs on the quota tree's own key with RESERVE's arguments.
    brief_args = ["t", "PATH", PATH, "TTL", "60000", "BRIEF", "COST", "credits", "1", "requests", "1"]
    full_args = ["t", "PATH", PATH, "TTL", "60000", "COST", "credits", "1", "requests", "1"]
    commands = [
        ("INCRBY", ["INCRBY", "bench:counter", "1"], 1),
        ("Lua script (4 levels)", ["EVALSHA", naive, "4"] + [f"bench:used:{l}" for l in LEVELS] + ["1", "__rand_int__"], 1),
        (CEILING_BRIEF, ["CEILING.BRIEF", *brief_args], 1),
        (CEILING_FULL, ["CEILING.FULL", *full_args], 1),
        ("QUOTA.CHARGE CHECK BRIEF", ["QUOTA.CHARGE", "t", "PATH", PATH, "CHECK", "BRIEF", "COST", "credits", "1",
                                      "requests", "1"], 1),
        ("QUOTA.RESERVE BRIEF", ["QUOTA.RESERVE", "t", "PATH", PATH, "TTL", "60000", "BRIEF", "COST", "credits", "1",
                                 "requests", "1"], 1),
        ("QUOTA.RESERVE BRIEF on a plan-following tree", ["QUOTA.RESERVE", "tp", "PATH", PATH, "TTL", "60000",
                                                          "BRIEF", "COST", "credits", "1", "requests", "1"], 1),
        (GRANT_RESERVE, ["QUOTA.RESERVE", "tg", "PATH", PATH, "TTL", "60000", "BRIEF", "COST", "credits", "1",
                         "requests", "1"], 1),
        (ACCESS_RESERVE, ["QUOTA.RESERVE", "ta", "PATH", PATH, "TTL", "60000", "BRIEF", *ACCESS_REQUEST, "COST",
                          "credits", "1", "requests", "1"], 1),
        (GRANT_CHARGE, ["QUOTA.CHARGE", "tg", "PATH", PATH, "CHECK", "BRIEF", "COST", "credits", "1",
                        "requests", "1"], 1),
        ("QUOTA.RESERVE (full reply)", ["QUOTA.RESERVE", "t", "PATH", PATH, "TTL", "60000", "COST", "credits", "1",
                                        "requests", "1"], 1),
        ("QUOTA.RESERVE 100 items", batch, 10),
        ("reserve + commit (Lua driver)", ["EVALSHA", pair, "1", "t", PATH], 1),
        (GRANT_PAIR, ["EVALSHA", pair, "1", "tg", PATH], 1),
        ("Lua library: quota_charge CHECK BRIEF", ["FCALL", "quota_charge", "1", "tl", "PATH", PATH, "CHECK", "BRIEF",
                                                   "COST", "credits", "1", "requests", "1"], 1),
        ("Lua library: quota_reserve BRIEF", ["FCALL", "quota_reserve", "1", "tl", "PATH", PATH, "TTL", "60000",
                                              "BRIEF", "COST", "credits", "1", "requests", "1"], 1),
        ("Lua library: quota_reserve BRIEF on a plan-following tree", ["FCALL", "quota_reserve", "1", "tlp", "PATH",
                                                                       PATH, "TTL", "60000", "BRIEF", "COST",
                                                                       "credits", "1", "requests", "1"], 1),
        ("Lua library: quota_reserve (full reply)", ["FCALL", "quota_reserve", "1", "tl", "PATH", PATH, "TTL",
                                                     "60000", "COST", "credits", "1", "requests", "1"], 1),
        (LUA_GRANT_RESERVE, ["FCALL", "quota_reserve", "1", "tlg", "PATH", PATH, "TTL", "60000", "BRIEF", "COST",
                             "credits", "1", "requests", "1"], 1),
        (LUA_ACCESS_RESERVE, ["FCALL", "quota_reserve", "1", "tla", "PATH", PATH, "TTL", "60000", "BRIEF",
                              *ACCESS_REQUEST, "COST", "credits", "1", "requests", "1"], 1),
        (LUA_GRANT_CHARGE, ["FCALL", "quota_charge", "1", "tlg", "PATH", PATH, "CHECK", "BRIEF", "COST", "credits",
                            "1", "requests", "1"], 1),
    ]
    # Plans (QUOTA.PLAN, quota_plan) are measured only where the build has them.
    commands = [c for c in commands if "plan-following" not in c[0]
                or (lua_plans if c[0].startswith("Lua") else plans)]
    # Grants with options (QUOTA.GRANT … ID, quota_grant) likewise.
    commands = [c for c in commands if "grants" not in c[0] or (lua_grants if c[0].startswith("Lua") else grants)]
    # Access rules and INFLIGHT (QUOTA.ALLOW, quota_allow) likewise.
    commands = [c for c in commands if "access rules" not in c[0]
                or (lua_access if c[0].startswith("Lua") else access)]
    table = {}
    for pipeline, requests in ((16, args.requests), (1, args.requests // 4)):
        for name, command, divisor in commands:
            table[(name, pipeline)] = benchmark(server.port, command, pipeline, max(requests // divisor, 1000), args.runs)
            rps, p50, p99 = table[(name, pipeline)]
            print(f"  measured {name} -P {pipeline}: {rps:,.0f} req/s", file=sys.stderr)
    floor = table[("INCRBY", 16)][0]
    lua = table[("Lua script (4 levels)", 16)][0]
    print(f"\n### -c 50, median of {args.runs}: -P 16 (server-bound) req/s and ratios; -P 1 (round trips)\n")
    print("× ceiling is against CEILING.FULL for full-breakdown rows, CEILING.BRIEF for the others.\n")
    print("| command | -P 16 req/s | × INCRBY | × script | × ceiling | p99 ms | -P 1 req/s | -P 1 p50 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, _, _ in commands:
        rps, _, p99 = table[(name, 16)]
        ceiling = table[(ceiling_of(name), 16)][0]
        rps1, p50_1, _ = table[(name, 1)]
        print(f"| {name} | {rps:,.0f} | {rps / floor:.2f} | {rps / lua:.2f} | {rps / ceiling:.2f} | {p99:.3f} "
              f"| {rps1:,.0f} | {p50_1:.3f} |".replace("nan", "failed"))
    return table


def grant_rows(count, lua_count):
    """The grant rows' names, each with the row of the same command on the
    tree without grants."""
    global GRANT_RESERVE, GRANT_CHARGE, GRANT_PAIR, LUA_GRANT_RESERVE, LUA_GRANT_CHARGE, GRANT_BASES
    GRANT_RESERVE = f"QUOTA.RESERVE BRIEF, {count:,} grants on the reached policy"
    GRANT_CHARGE = f"QUOTA.CHARGE CHECK BRIEF drawing from one of {count:,} grants"
    GRANT_PAIR = f"reserve + commit drawing from one of {count:,} grants (Lua driver)"
    LUA_GRANT_RESERVE = f"Lua library: quota_reserve BRIEF, {lua_count:,} grants on the reached policy"
    LUA_GRANT_CHARGE = f"Lua library: quota_charge CHECK BRIEF drawing from one of {lua_count:,} grants"
    GRANT_BASES = [(GRANT_RESERVE, "QUOTA.RESERVE BRIEF"), (GRANT_CHARGE, "QUOTA.CHARGE CHECK BRIEF"),
                   (GRANT_PAIR, "reserve + commit (Lua driver)"),
                   (LUA_GRANT_RESERVE, "Lua library: quota_reserve BRIEF"),
                   (LUA_GRANT_CHARGE, "Lua library: quota_charge CHECK BRIEF")]


grant_rows(GRANT_COUNT, GRANT_COUNT)

ACCESS_RESERVE = "QUOTA.RESERVE BRIEF with access rules (5 deny, 20 allow, an INFLIGHT policy)"
LUA_ACCESS_RESERVE = "Lua library: quota_reserve BRIEF with access rules (5 deny, 20 allow, an INFLIGHT policy)"
ACCESS_BASES = [(ACCESS_RESERVE, "QUOTA.RESERVE BRIEF"), (LUA_ACCESS_RESERVE, "Lua library: quota_reserve BRIEF")]

CEILING_BRIEF = "ceiling: CEILING.BRIEF"
CEILING_FULL = "ceiling: CEILING.FULL"


def ceiling_of(name):
    """The ceiling a row is measured against: the full map for full replies."""
    return CEILING_FULL if "full" in name.lower() else CEILING_BRIEF


def fill_paths(r, key, count):
    """Creates `count` paths (one policy each) in chunks of Lua loops."""
    script = """
    for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do
      redis.call('QUOTA.SET', KEYS[1], 'fill/n' .. i, 'cap', 'METRIC', 'credits', 'LIMIT', '100')
    end
    return 1
    """
    sha = r.script_load(script)
    for start in range(0, count, 5000):
        r.evalsha(sha, 1, key, start, min(start + 5000, count) - 1)


def fill_plans(r, count):
    """`count` more plans in the book, beside `bench`."""
    pipe = r.pipeline(transaction=False)
    for i in range(count):
        pipe.execute_command("QUOTA.PLAN", "SET", f"other{i}", plan_json())
    pipe.execute()


def fill_following(r, count):
    """`count` more trees following `bench`, each with a reservation made."""
    for start in range(0, count, 1000):
        pipe = r.pipeline(transaction=False)
        for i in range(start, min(start + 1000, count)):
            pipe.execute_command("QUOTA.ASSIGN", f"tenant:{i}", "bench")
            pipe.execute_command("QUOTA.CHARGE", f"tenant:{i}", "PATH", PATH, "COST", "credits", "1")
        pipe.execute()


def scale(args):
    print("\n### Scale: QUOTA.RESERVE BRIEF, -P 16, on one path of a larger tree\n")
    print("| tree | req/s |")
    print("|---|---:|")
    reserve = ["QUOTA.RESERVE", "t", "PATH", PATH, "TTL", "60000", "BRIEF", "COST", "credits", "1", "requests", "1"]
    results = {}
    for paths in (10, 10_000, 100_000):
        server = Server()
        try:
            build_tree(server.r)
            fill_paths(server.r, "t", max(paths - 5, 0))
            rps = benchmark(server.port, reserve, 16, args.requests, args.runs)[0]
            results[f"{paths} paths"] = rps
            print(f"| {paths:,} paths | {rps:,.0f} |")
        finally:
            server.stop()
    plan_reserve = ["QUOTA.RESERVE", "tp", "PATH", PATH, "TTL", "60000", "BRIEF", "COST", "credits", "1",
                    "requests", "1"]
    for trees, plans in ((1, 1), (10_000, 1_000)):
        server = Server()
        try:
            if not build_plan_tree(server.r, "tp"):
                break
            fill_plans(server.r, plans - 1)
            fill_following(server.r, trees - 1)
            rps = benchmark(server.port, plan_reserve, 16, args.requests, args.runs)[0]
            label = (f"plan-following tree, {trees:,} {'tree' if trees == 1 else 'trees'} following, "
                     f"{plans:,} {'plan' if plans == 1 else 'plans'}")
            results[label] = rps
            print(f"| {label} | {rps:,.0f} |")
        finally:
            server.stop()
    for holds in (0, 100_000, 1_000_000):
        if args.quick and holds > 100_000:
            continue
        server = Server()
        try:
            build_tree(server.r)
            if holds:
                subprocess.run(["redis-benchmark", "-p", str(server.port), "-c", "50", "-n", str(holds), "-P", "64",
                                "QUOTA.RESERVE", "t", "PATH", "held/h", "TTL", "3600000", "BRIEF", "COST", "other", "1"],
                               capture_output=True, timeout=600)
            live = server.r.info("quota")["quota_live_holds"]
            rps = benchmark(server.port, reserve, 16, args.requests, args.runs)[0]
            results[f"{holds} holds"] = rps
            print(f"| {live:,} live holds | {rps:,.0f} |")
        finally:
            server.stop()
    return results


def lua_fill(r, count, command):
    """Runs FCALL `command(i)` for i in 0..count, pipelined in chunks."""
    for start in range(0, count, 1000):
        pipe = r.pipeline(transaction=False)
        for i in range(start, min(start + 1000, count)):
            pipe.execute_command(*command(i))
        pipe.execute()


def lua_scale(args):
    """The Lua library's reserve beside tree size and live holds: what a
    reservation reads (the reached nodes, the expiry index's head) does not
    grow with either. Fills are pipelined FCALLs, so they take a while."""
    print("\n### Scale, Lua library: quota_reserve BRIEF, -P 16, on one path of a larger tree\n")
    print("| tree | req/s |")
    print("|---|---:|")
    reserve = ["FCALL", "quota_reserve", "1", "t", "PATH", PATH, "TTL", "60000", "BRIEF", "COST", "credits", "1",
               "requests", "1"]
    paths_cases = (10, 10_000) if args.quick else (10, 10_000, 100_000)
    holds_cases = (0, 10_000) if args.quick else (0, 100_000, 1_000_000)
    results = {}
    for paths, holds in [(p, 0) for p in paths_cases] + [(10, h) for h in holds_cases if h]:
        server = Server(modules=False)
        try:
            r = server.r
            # Room for the largest case: quota-load sets it in the library's
            # source, and fails if the setting is not there.
            subprocess.run([LOADER, "--file", LIBRARY, "--set", "max_holds=5000000",
                            f"redis://127.0.0.1:{server.port}"], capture_output=True, check=True, timeout=60)
            build_tree(r, set_command=("FCALL", "quota_set", "1"))
            lua_fill(r, max(paths - 5, 0), lambda i: ("FCALL", "quota_set", 1, "t", f"fill/n{i}", "cap",
                                                           "METRIC", "credits", "LIMIT", "100"))
            lua_fill(r, holds, lambda i: ("FCALL", "quota_reserve", 1, "t", "PATH", "held/h", "TTL",
                                               "3600000", "BRIEF", "COST", "other", "1"))
            lua_fill(r, 500, lambda i: reserve)  # warm: the library builds itself, caches fill
            rps = benchmark(server.port, reserve, 16, max(args.requests // 10, 2000), args.runs)[0]
            label = f"{paths:,} paths" if not holds else f"{holds:,} live holds"
            results[label] = rps
            print(f"| {label} | {rps:,.0f} |")
        finally:
            server.stop()
    return results


def memory_and_rdb(args):
    count = 100_000
    server = Server()
    try:
        r = server.r
        r.execute_command("QUOTA.SET", "big", "/", "cap", "METRIC", "credits", "LIMIT", "100")
        before = r.info("memory")["used_memory"]
        fill_paths(r, "big", count)
        after = r.info("memory")["used_memory"]
        reported = r.memory_usage("big")
        started = time.time()
        r.save()
        saved = time.time() - started
        size = os.path.getsize(os.path.join(server.dir, "dump.rdb"))
        started = time.time()
        r.execute_command("DEBUG", "RELOAD")
        reload = time.time() - started
        print(f"\n### Memory and persistence of a {count:,}-path tree (one policy per path)\n")
        print(f"- module: memory per path {(after - before) / count:,.0f} bytes (used_memory), "
              f"{reported / count:,.0f} bytes (MEMORY USAGE estimate)")
        print(f"- RDB: {size / 1e6:.1f} MB, SAVE {saved:.2f} s, DEBUG RELOAD (save + load) {reload:.2f} s, "
              f"so load ≈ {max(reload - saved, 0):.2f} s")
        result = {"bytes_per_path": (after - before) / count, "save_s": saved, "load_s": max(reload - saved, 0)}
    finally:
        server.stop()
    # The library's max_paths (100,000) counts the root too.
    lua_count = 10_000 if args.quick else 50_000
    result["lua_bytes_per_path"] = lua_memory(lua_count)
    print(f"- Lua library: memory per path {result['lua_bytes_per_path']:,.0f} bytes (used_memory, "
          f"{lua_count:,} paths set with FCALL quota_set on a server without the module)")
    return result


def lua_memory(count):
    """used_memory per path of a Lua-library tree of `count` paths, one policy each."""
    server = Server(modules=False)
    try:
        r = server.r
        with open(LIBRARY) as f:
            r.execute_command("FUNCTION", "LOAD", "REPLACE", f.read())
        r.execute_command("FCALL", "quota_set", 1, "big", "/", "cap", "METRIC", "credits", "LIMIT", "100")
        before = r.info("memory")["used_memory"]
        lua_fill(r, count, lambda i: ("FCALL", "quota_set", 1, "big", f"fill/n{i}", "cap", "METRIC", "credits",
                                      "LIMIT", "100"))
        return (r.info("memory")["used_memory"] - before) / count
    finally:
        server.stop()


USAGE_SCRIPT = """
for i = 0, tonumber(ARGV[1]) - 1 do
  for m = 0, 4 do
    redis.call(ARGV[2], KEYS[1], 'PATH', 'p' .. i, 'SERVICE', 'chat', 'MODEL', 'm' .. m,
               'COST', 'credits', '1', 'requests', '1')
  end
end
return 1
"""

# (usage_hours, usage_days, usage_series): SPEC's 48 h and 90 d, the defaults (24 h, 35 d), then smaller ones.
USAGE_SETTINGS = [(48, 90, 32), (24, 35, 32), (0, 35, 32), (0, 0, 32)]


def fill_usage(r, key, paths, charge):
    """90 days of usage on `paths` paths × 5 models: one charge per day, then
    one per hour of the last 48 hours (what retention keeps at most)."""
    sha = r.script_load(USAGE_SCRIPT)
    day, hour = 86_400_000, 3_600_000
    start = 1_768_435_200_000
    for d in range(90):
        r.execute_command("QUOTA.DEBUG", "CLOCK", "SET", start + d * day + 12 * hour)
        r.evalsha(sha, 1, key, paths, charge)
    for h in range(48):
        r.execute_command("QUOTA.DEBUG", "CLOCK", "SET", start + 90 * day + h * hour)
        r.evalsha(sha, 1, key, paths, charge)


def usage_memory(paths_counts):
    """Memory per tree (MEMORY USAGE, used_memory) under each setting."""
    rows = []
    for hours, days, series in USAGE_SETTINGS:
        server = Server("TEST_CLOCK", "yes", "USAGE_HOURS", str(hours), "USAGE_DAYS", str(days),
                        "USAGE_SERIES", str(series))
        try:
            r = server.r
            for paths in paths_counts:
                key = f"u{paths}"
                before = r.info("memory")["used_memory"]
                fill_usage(r, key, paths, "QUOTA.CHARGE")
                used = r.info("memory")["used_memory"] - before
                rows.append(((hours, days, series), paths, r.memory_usage(key), used))
        finally:
            server.stop()
    return rows


def lua_usage_memory(paths_counts):
    """The same trees on the Lua library (default settings): used_memory,
    which counts the tree key and its companions, the usage hash included."""
    server = Server(modules=False)
    try:
        r = server.r
        with open(LIBRARY) as f:
            text = f.read().replace("local TEST_CLOCK = false", "local TEST_CLOCK = true", 1)
        r.execute_command("FUNCTION", "LOAD", "REPLACE", text)
        try:
            r.execute_command("FCALL", "quota_usage", 1, "probe", "/")
        except redis.ResponseError as e:
            print(f"- Lua library: skipped (this library has no quota_usage: {e})")
            return
        day, hour = 86_400_000, 3_600_000
        start = 1_768_435_200_000
        for paths in paths_counts:
            key = f"lu{paths}"
            times = [start + d * day + 12 * hour for d in range(90)] + [start + 90 * day + h * hour for h in range(48)]
            for t in times:
                r.execute_command("FCALL", "quota_debug", 0, "CLOCK", "SET", t)
                p = r.pipeline(transaction=False)
                for i in range(paths):
                    for m in range(5):
                        p.execute_command("FCALL", "quota_charge", 1, key, "PATH", f"p{i}", "SERVICE", "chat",
                                          "MODEL", f"m{m}", "COST", "credits", "1", "requests", "1")
                p.execute()
            # The tree key and its companions, exactly (SAMPLES 0): used_memory
            # moves with the Lua interpreter's garbage too much to read a delta.
            keys = [key] + list(r.scan_iter(match="{" + key + "}quota:" + key + "*", count=1000))
            used = sum(r.memory_usage(k, samples=0) or 0 for k in keys)
            print(f"- Lua library, defaults, {paths:,} paths: {used:,} B per tree in its key and companions "
                  f"(MEMORY USAGE; {used / paths:,.0f} B per active path)")
    finally:
        server.stop()


def usage_rows(args):
    print("\n### Usage over time (SPEC §9)\n")
    try:
        probe = Server("TEST_CLOCK", "yes")
        try:
            probe.r.execute_command("QUOTA.USAGE", "probe", "/")
        finally:
            probe.stop()
    except (redis.ResponseError, RuntimeError) as e:
        print(f"- skipped: this build has no QUOTA.USAGE ({e})")
        return
    paths_counts = (10, 1000)
    rows = usage_memory(paths_counts)
    print("Trees of N active paths (children of the root), each charged by 5 models "
          "(credits and requests) once a day for 90 days and every hour of the last 48.\n")
    print("| usage_hours, usage_days, usage_series | paths | MEMORY USAGE | used_memory | per active path |")
    print("|---|---:|---:|---:|---:|")
    for settings, paths, reported, used in rows:
        print(f"| {', '.join(map(str, settings))} | {paths:,} | {reported:,} B | {used:,} B "
              f"| {used / paths:,.0f} B |")
    off = {paths: used for settings, paths, _, used in rows if settings[:2] == (0, 0)}
    for settings, paths, _, used in rows:
        if settings[:2] != (0, 0):
            cells = (paths + 1) * 5 * 2 * (settings[0] + settings[1])
            print(f"- {settings}, {paths:,} paths: usage costs {(used - off[paths]) / 1024:,.0f} KiB per tree, "
                  f"{(used - off[paths]) / cells:.1f} B per stored (bucket, series, metric) cell")
    lua_usage_memory(paths_counts if not args.quick else (10,))
    commands = [
        ("reserve + commit (Lua driver)", lambda pair: ["EVALSHA", pair, "1", "t", PATH]),
        ("QUOTA.CHARGE CHECK BRIEF", lambda _: ["QUOTA.CHARGE", "t", "PATH", PATH, "CHECK", "BRIEF", "SERVICE",
                                                "chat", "MODEL", "m1", "COST", "credits", "1", "requests", "1"]),
        ("QUOTA.RESERVE BRIEF", lambda _: ["QUOTA.RESERVE", "t", "PATH", PATH, "TTL", "60000", "BRIEF", "COST",
                                           "credits", "1", "requests", "1"]),
    ]
    results = {}
    # A fresh server and tree per command and state: live holds of one run
    # never slow the next.
    for name, command in commands:
        for state, hours, days in (("on", 24, 35), ("off", 0, 0)):
            server = Server("USAGE_HOURS", str(hours), "USAGE_DAYS", str(days))
            try:
                build_tree(server.r)
                pair = server.r.script_load(PAIR_LUA)
                results[(name, state)] = benchmark(server.port, command(pair), 16, args.requests, args.runs)[0]
            finally:
                server.stop()
    print("\n| command (-P 16, median of runs) | usage on req/s | usage off req/s | on / off |")
    print("|---|---:|---:|---:|")
    for name, _ in commands:
        on, off_rps = results[(name, "on")], results[(name, "off")]
        print(f"| {name} | {on:,.0f} | {off_rps:,.0f} | {on / off_rps:.2f} |")
    print("\n(Wall-clock rates on a shared machine are noisy: bench/profile.sh with "
          "QUOTA_ARGS='USAGE_HOURS 0 USAGE_DAYS 0' counts instructions.)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="fewer requests and one run, for a smoke test")
    parser.add_argument("--only-usage", action="store_true", help="only the usage over time rows")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.runs = 20_000, 1
    if not os.path.exists(MODULE) or not os.path.exists(CEILING):
        print("build the module and the ceiling first: make build, cargo build --release --locked -p quota-ceiling",
              file=sys.stderr)
        return 2
    print(f"# quota benchmark ({os.cpu_count()} cores, redis-benchmark -c 50 -n {args.requests})")
    if args.only_usage:
        usage_rows(args)
        return 0
    server = Server()
    try:
        table = throughput_table(server, args)
    finally:
        server.stop()
    scale(args)
    lua_scale(args)
    memory = memory_and_rdb(args)
    usage_rows(args)
    rps = {name: table[(name, 16)][0] for name, _ in table if _ == 16}
    lua = rps["Lua script (4 levels)"]
    p50 = {name: table[(name, 1)][1] for name, _ in table if _ == 1}
    goals = [
        ("QUOTA.RESERVE … BRIEF ≥ 0.6× CEILING.BRIEF", rps["QUOTA.RESERVE BRIEF"] / rps[CEILING_BRIEF], 0.6),
        ("QUOTA.CHARGE … CHECK BRIEF ≥ 0.8× CEILING.BRIEF", rps["QUOTA.CHARGE CHECK BRIEF"] / rps[CEILING_BRIEF], 0.8),
        ("full-breakdown QUOTA.RESERVE ≥ 0.9× CEILING.FULL", rps["QUOTA.RESERVE (full reply)"] / rps[CEILING_FULL], 0.9),
        ("Lua library quota_reserve … BRIEF ≥ 0.33× the script", rps["Lua library: quota_reserve BRIEF"] / lua, 0.33),
        ("Lua library quota_charge … CHECK BRIEF ≥ 0.33× the script",
         rps["Lua library: quota_charge CHECK BRIEF"] / lua, 0.33),
        ("Lua library quota_reserve … BRIEF -P 1 p50 ≤ 2× the script's (as script p50 / library p50 ≥ 0.5)",
         p50["Lua script (4 levels)"] / max(p50["Lua library: quota_reserve BRIEF"], 1e-9), 0.5),
        ("module memory per path ≤ 256 bytes (as 256 / bytes ≥ 1)", 256 / memory["bytes_per_path"], 1.0),
    ]
    print("\n### Goals (-P 16 unless said)\n")
    for name, value, goal in goals:
        print(f"- {name}: {value:.2f} {'met' if value >= goal else 'missed'}")
    for row, base in (("QUOTA.RESERVE BRIEF on a plan-following tree", "QUOTA.RESERVE BRIEF"),
                      ("Lua library: quota_reserve BRIEF on a plan-following tree", "Lua library: quota_reserve BRIEF")):
        if row in rps:
            print(f"- {row}: {rps[row] / rps[base]:.2f}× the same tree with its own policies (a report, no goal)")
    for row, base in GRANT_BASES:
        if row in rps:
            tool = "bench/profile_lua.sh" if row.startswith("Lua") else "bench/profile.sh"
            print(f"- {row}: {rps[row] / rps[base]:.2f}× the same command on a tree without grants "
                  f"(a report, no goal; {tool} with GRANTS=N counts instructions)")
    for row, base in ACCESS_BASES:
        if row in rps:
            tool = "bench/profile_lua.sh" if row.startswith("Lua") else "bench/profile.sh"
            print(f"- {row}: {rps[row] / rps[base]:.2f}× the same reservation on the tree without rules "
                  f"(a report, no goal; {tool} with ACCESS=1 counts instructions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
