#!/usr/bin/env python3
"""The Lua library's index of due trees and what each tree's "#" says is
due (since 1.2.0), under bounded quota_sweep calls (COUNT 1 to 3)
interleaved with writes: reservations (many at the same expiry, batches,
duplicate ids), EXTEND earlier and later, commits of single items,
releases, charges with ids, and the test clock moved to exact expiry and
tombstone boundaries. With --flip (the default runs both), library 1.1.0
(tests/fixtures/quota-1.1.0.lua) and the current one take turns every 31
commands, as in a mixed-version rollout. After every command each tree's
"#" must agree with its companion keys (lua_parity.meta_broken), and after
sweeping until `more` is 0, no tree may hold a hold that is due.

    python3 tests/sweep_mix.py [--seeds N] [--ops N]      (make test-lua)

Exit 0 when every check holds.
"""

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

import redis

from backend import free_port
from lua_parity import meta_broken

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOADER = os.path.join(ROOT, "target", "release", "quota-load")
OLD = os.path.join(ROOT, "tests", "fixtures", "quota-1.1.0.lua")
TREES = ["acme", "user:42", "{t}beta", "z"]


def tag_of(tree):
    return tree[tree.index("{"):tree.index("}") + 1] if "{" in tree and "}" in tree else "{" + tree + "}"


def load(port, old):
    args = [LOADER, f"redis://127.0.0.1:{port}", "--test-clock", "--set", "tombstone_ttl=1000", "--set",
            "max_holds=8"]
    if old:
        args += ["--file", OLD, "--allow-downgrade"]
    subprocess.run(args, capture_output=True, check=True, timeout=60)


def run(r, port, seed, ops, flip):
    rng = random.Random(seed)
    r.flushall()
    load(port, False)

    def f(name, key, *a):
        try:
            return r.execute_command("FCALL", name, 1, key, *a)
        except redis.ResponseError as e:
            return ("error", str(e))

    r.execute_command("FCALL", "quota_debug", 0, "CLOCK", "SET", 1700000000000)
    for t in TREES:
        f("quota_set", t, "/", "cap", "METRIC", "credits", "LIMIT", "1000000")
    ids = {t: [] for t in TREES}
    bad = []
    for i in range(ops):
        if flip and i % 31 == 0:
            load(port, (i // 31) % 2 == 1)
        t, k = rng.choice(TREES), rng.random()
        if k < 0.3:
            a = ["PATH", rng.choice(["a", "a/b", "c"]), "TTL", str(rng.choice([100, 200, 200, 300, 1000])),
                 "COST", "credits", "1"]
            if rng.random() < 0.4:
                a += ["ID", f"id{rng.randrange(12)}"]
            if rng.random() < 0.3:
                a += ["COST", "credits", "2", rng.choice(["ALL", "UPTO", "DRYRUN"])]
            out = f("quota_reserve", t, *a)
            if isinstance(out, list) and "id" in out and out[out.index("id") + 1]:
                ids[t].append(out[out.index("id") + 1])
        elif k < 0.4 and ids[t]:
            f("quota_extend", t, rng.choice(ids[t]), "TTL", str(rng.choice([1, 50, 100, 500, 2000])))
        elif k < 0.5 and ids[t]:
            f("quota_commit", t, rng.choice(ids[t]), *(["ITEM", str(rng.randrange(2))] if rng.random() < 0.5 else []))
        elif k < 0.57 and ids[t]:
            f("quota_release", t, rng.choice(ids[t]))
        elif k < 0.65:
            f("quota_charge", t, "PATH", "a", "ID", f"id{rng.randrange(12)}", "COST", "credits", "1")
        elif k < 0.8:
            r.execute_command("FCALL", "quota_debug", 0, "CLOCK", "ADVANCE",
                              rng.choice([1, 50, 99, 100, 101, 200, 700, 999, 1000]))
        elif k < 0.9:
            r.execute_command("FCALL", "quota_sweep", 1, "quota:due", "COUNT", rng.choice([1, 2, 3]))
        else:
            for _ in range(50):
                out = r.execute_command("FCALL", "quota_sweep", 1, "quota:due", "COUNT", 2)
                if not out[out.index("more") + 1]:
                    break
            clock = int(r.execute_command("FCALL", "quota_debug", 0, "CLOCK", "GET"))
            for tt in TREES:
                first = r.zrange(f"{tag_of(tt)}quota:{tt}:expiry", 0, 0, withscores=True)
                if first and first[0][1] <= clock:
                    bad.append(f"op {i}: {tt} has a hold due at {first[0][1]} after sweeping at {clock}")
        for tt in TREES:
            broken = meta_broken(r, tt, True)
            if broken:
                bad.append(f"op {i}: {broken}")
        if len(bad) > 3:
            break
    return bad


def deleted_holds_case(r, port):
    """The live-hold count kept in "#" (since 1.2.0) is checked against the
    holds hash before max_holds refuses: a holds hash deleted by hand (not
    supported, but 1.1.0 recovered from it) must not refuse every later
    reservation for good."""
    load(port, False)
    r.execute_command("FCALL", "quota_set", 1, "gone", "/", "cap", "METRIC", "credits", "LIMIT", "1000000")
    for _ in range(8):
        r.execute_command("FCALL", "quota_reserve", 1, "gone", "PATH", "a", "TTL", "100000", "BRIEF",
                          "COST", "credits", "1")
    r.delete("{gone}quota:gone:holds", "{gone}quota:gone:expiry")
    try:
        r.execute_command("FCALL", "quota_reserve", 1, "gone", "PATH", "a", "TTL", "100000", "BRIEF",
                          "COST", "credits", "1")
        return []
    except redis.ResponseError as e:
        return [f"a reservation after the holds hash was deleted is refused: {e}"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--ops", type=int, default=1500)
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="quota-sweep-mix-")
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
                             "--dir", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    failed = 0
    try:
        r = redis.Redis(port=port, decode_responses=True)
        for _ in range(100):
            try:
                r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        bad = deleted_holds_case(r, port)
        print(f"{'ok  ' if not bad else 'FAIL'}  max_holds counts the holds hash, not a stale count"
              + "".join(f"\n      {b}" for b in bad))
        failed += bool(bad)
        for seed in range(1, args.seeds + 1):
            for flip in (False, True):
                bad = run(r, port, seed, args.ops, flip)
                print(f"{'ok  ' if not bad else 'FAIL'}  seed {seed}{' with 1.1.0 taking turns' if flip else ''}"
                      + "".join(f"\n      {b}" for b in bad))
                failed += bool(bad)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"sweep_mix: {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
