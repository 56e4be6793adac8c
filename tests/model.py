#!/usr/bin/env python3
"""An independent reference for the accounting rules, checked against both
backends: a small Python model of strict, block and open policies over a
chain of paths (/, a, a/b, a/b/c and a sibling d), with reserve, commit,
release, charge (with and without CHECK) and hold expiry at a test clock.

tests/lua_parity.py compares the module with the Lua library, so a rule both
get wrong the same way passes there. Here each seeded random sequence is
sent to a module server and to a Lua-library server (started on free ports
as lua_parity.py starts them), and every reply's accounting fields and every
policy's used and held (QUOTA.GET on each path after each command) must
equal what the model computes from the rules in README.md:

  * a request that takes something (amount > 0) passes a strict policy when
    used + held + amount <= limit, a block policy when used < limit, an open
    one always; a zero or negative amount passes every policy;
  * RESERVE holds the amount on every policy of the path and its ancestors
    when all pass, else holds nothing and names the failing ones in
    denied_by; CHARGE records at once (usage never below zero), refused with
    CHECK when a strict or block policy fails;
  * COMMIT charges the actual amount (default: the reserved one) and gives
    back the rest of a live hold; a hold past its expiry (now >= expires_at)
    holds nothing, a late commit charges the amount anyway (expired 1), a
    release after expiry gives nothing back and a commit after that is
    refused; repeats answer duplicate 1 and charge nothing;
  * a released hold cannot be committed, a committed one cannot be released.

    python3 tests/model.py [--seed N] [--sequences N] [--ops N] [--backend module|lua|both]

Exits non-zero on any difference, printing the seed, the sequence, the
command, the backend, the reply and the model's expectation; ends with a
one-line summary.
"""

import argparse
import random
import shutil
import sys
import tempfile
import time
from decimal import Decimal

from backend import lua_command
from lua_parity import MODULE, build_if_missing, call, load_library, norm, start_server

CHAIN = ["/", "a", "a/b", "a/b/c", "d"]
MODES = ["strict", "block", "open"]
ZERO = Decimal(0)


def ancestors(path):
    """The path and its ancestors, root first ("/" is the root)."""
    if path == "/":
        return ["/"]
    parts = path.split("/")
    return ["/"] + ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def text(d):
    """An amount as replies write it: no trailing zeros."""
    d = Decimal(d)
    if d == 0:
        return "0"
    s = format(d.normalize(), "f")
    return s


def amount_of(costs):
    """The credits in a metric -> amount map of a reply (absent: 0)."""
    if not isinstance(costs, dict):
        return None
    return Decimal(costs.get("credits", "0"))


class Model:
    def __init__(self, rng):
        self.now = 0
        # path -> [name, mode, limit, used]; held is computed from the holds
        self.policies = {}
        for path in CHAIN:
            if rng.random() < 0.85:
                self.policies[path] = [f"p{CHAIN.index(path)}", rng.choice(MODES), Decimal(rng.randint(15, 120)), ZERO]
        # id -> dict(path, amount, expires_at, state: live|committed|released, first: first commit reply)
        self.holds = {}

    def live(self, hold):
        return hold["state"] == "live" and self.now < hold["expires_at"]

    def held(self, path):
        return sum((h["amount"] for h in self.holds.values()
                    if self.live(h) and path in ancestors(h["path"])), ZERO)

    def failing(self, path, amount, modes=("strict", "block")):
        """path#policy of each policy on the path's chain that does not admit
        taking `amount`."""
        if amount <= 0:
            return []
        out = []
        for p in ancestors(path):
            if p not in self.policies:
                continue
            name, mode, limit, used = self.policies[p]
            if mode not in modes:
                continue
            if mode == "strict" and used + self.held(p) + amount > limit or mode == "block" and used >= limit:
                out.append(f"{p}#{name}")
        return sorted(out)

    def charge_chain(self, path, amount):
        for p in ancestors(path):
            if p in self.policies:
                self.policies[p][3] = max(ZERO, self.policies[p][3] + amount)


class Run:
    def __init__(self, servers, seed, sequence, verbose):
        self.servers = servers  # [(name, client, translate)]
        self.seed, self.sequence, self.verbose = seed, sequence, verbose
        self.differences = 0
        self.commands = 0

    def send(self, cmd):
        """The command on every backend: [(backend, reply)]."""
        return [self.send_one(n, cmd) for n in range(len(self.servers))]

    def send_one(self, n, cmd):
        """The command on the n-th backend: (backend, reply)."""
        name, client, translate = self.servers[n]
        self.commands += 1
        reply = norm(call(client, translate(cmd)))
        if self.verbose:
            print(f"{name}: {' '.join(map(str, cmd))} -> {reply}")
        return name, reply

    def differ(self, cmd, backend, reply, want):
        self.differences += 1
        print(f"DIFFERENCE seed={self.seed} sequence={self.sequence} on {backend}: {' '.join(map(str, cmd))}\n"
              f"  reply: {reply}\n  model: {want}", flush=True)

    def expect(self, cmd, replies, want):
        """`want` maps a field to its expected value, or is ("error",)."""
        for backend, reply in replies:
            if want == ("error",):
                if not (isinstance(reply, tuple) and reply[0] == "error"):
                    self.differ(cmd, backend, reply, "an error")
                continue
            if not isinstance(reply, dict):
                self.differ(cmd, backend, reply, want)
                continue
            got = {}
            for field in want:
                value = reply.get(field)
                if field in ("charged", "released", "cost"):
                    value = amount_of(value)
                elif field == "denied_by" and isinstance(value, list):
                    value = sorted(value)
                got[field] = value
            if got != want:
                self.differ(cmd, backend, {k: reply.get(k) for k in want}, want)


def sequence(run, rng, key, ops):
    m = Model(rng)
    start = 1_900_000_000_000 + rng.randrange(10 ** 9)
    run.send(["QUOTA.DEBUG", "CLOCK", "SET", str(start)])
    run.send(["DEL", key])
    m.now = start
    for path, (name, mode, limit, _) in m.policies.items():
        cmd = ["QUOTA.SET", key, path, name, "METRIC", "credits", "LIMIT", text(limit), "MODE", mode]
        for backend, reply in run.send(cmd):
            if reply != "OK":
                run.differ(cmd, backend, reply, "OK")
    ids = []  # ids as both backends named them: one list per backend, the same position

    def amount(low=0, high=40):
        a = Decimal(rng.randint(low, high))
        return a + Decimal("0.5") if rng.random() < 0.2 else a

    for _ in range(ops):
        roll = rng.random()
        path = rng.choice(CHAIN)
        if roll < 0.3:
            x = amount()
            ttl = rng.choice([500, 1000, 3000, 10000])
            cmd = ["QUOTA.RESERVE", key, "PATH", path, "TTL", str(ttl), "COST", "credits", text(x)]
            failing = m.failing(path, x)
            replies = run.send(cmd)
            run.expect(cmd, replies, {"allowed": 0 if failing else 1, "denied_by": failing})
            if not failing:
                reply_ids = [r.get("id") if isinstance(r, dict) else None for _, r in replies]
                ids.append(reply_ids)
                m.holds[len(ids) - 1] = {"path": path, "amount": x, "expires_at": m.now + ttl, "state": "live",
                                         "first": None}
        elif roll < 0.5 and ids:
            k = rng.randrange(len(ids))
            h = m.holds[k]
            actual = amount() if rng.random() < 0.7 else None
            cost = ["COST", "credits", text(actual)] if actual is not None else []
            y = h["amount"] if actual is None else actual
            sent = [["QUOTA.COMMIT", key, ids[k][n]] + cost for n in range(len(run.servers))]
            if h["state"] == "committed":
                want = {"duplicate": 1, "charged": h["first"]}
            elif h["state"] == "released":
                want = ("error",)
            elif m.live(h):
                want = {"duplicate": 0, "expired": 0, "charged": y, "released": max(ZERO, h["amount"] - y)}
                h["state"], h["first"] = "committed", y
                m.charge_chain(h["path"], y)
            else:  # expired, never released: a late commit charges without the hold
                want = {"duplicate": 0, "expired": 1, "charged": y, "released": ZERO}
                h["state"], h["first"] = "committed", y
                m.charge_chain(h["path"], y)
            for n, cmd in enumerate(sent):
                run.expect(cmd, [run.send_one(n, cmd)], want)
        elif roll < 0.6 and ids:
            k = rng.randrange(len(ids))
            h = m.holds[k]
            if h["state"] == "committed":
                want = ("error",)
            elif h["state"] == "released":
                want = {"duplicate": 1}
            elif m.live(h):
                want = {"duplicate": 0, "expired": 0, "released": h["amount"]}
                h["state"] = "released"
            else:
                want = {"duplicate": 0, "expired": 1, "released": ZERO}
                h["state"] = "released"
            for n in range(len(run.servers)):
                cmd = ["QUOTA.RELEASE", key, ids[k][n]]
                run.expect(cmd, [run.send_one(n, cmd)], want)
        elif roll < 0.85:
            x = amount(-10, 40)
            check = rng.random() < 0.5
            cmd = ["QUOTA.CHARGE", key, "PATH", path] + (["CHECK"] if check else []) + ["COST", "credits", text(x)]
            failing = m.failing(path, x)
            allowed = not (check and failing)
            replies = run.send(cmd)
            run.expect(cmd, replies, {"allowed": 1 if allowed else 0, "denied_by": failing,
                                      "charged": x if allowed else ZERO})
            if allowed:
                m.charge_chain(path, x)
        else:
            step = rng.choice([100, 400, 1000, 2500, 6000])
            live = [h["expires_at"] for h in m.holds.values() if m.live(h)]
            if live and rng.random() < 0.5:
                # to a hold's expiry, or a millisecond either side of it
                step = max(1, rng.choice(live) - m.now + rng.choice([-1, 0, 0, 1]))
            replies = run.send(["QUOTA.DEBUG", "CLOCK", "ADVANCE", str(step)])
            m.now += step
            for backend, reply in replies:
                if reply != m.now:
                    run.differ(["QUOTA.DEBUG", "CLOCK", "ADVANCE", step], backend, reply, m.now)
        # every policy's used and held, after every command
        for p, (name, mode, limit, used) in m.policies.items():
            cmd = ["QUOTA.GET", key, p]
            want = {"used": text(used), "held": text(m.held(p))}
            for backend, reply in run.send(cmd):
                pols = reply.get("policies") if isinstance(reply, dict) else None
                got = next(({"used": q.get("used"), "held": q.get("held")} for q in pols or []
                            if isinstance(q, dict) and q.get("policy") == name), None)
                if got != want:
                    run.differ(cmd, backend, got, want)
        if run.differences:
            return


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=20261126)
    ap.add_argument("--sequences", type=int, default=12)
    ap.add_argument("--ops", type=int, default=150)
    ap.add_argument("--backend", choices=["module", "lua", "both"], default="both")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    build_if_missing()
    workdir = tempfile.mkdtemp(prefix="quota_model_")
    procs, servers = [], []
    t0 = time.time()
    run = None
    try:
        if args.backend in ("module", "both"):
            proc, _, mod = start_server(workdir, "module", ["--loadmodule", MODULE, "TEST_CLOCK", "yes"])
            procs.append(proc)
            servers.append(("module", mod, lambda c: c))
        if args.backend in ("lua", "both"):
            proc, port, lua = start_server(workdir, "lua", [])
            procs.append(proc)
            load_library(port, lua, False)
            servers.append(("lua", lua, lua_command))
        run = Run(servers, args.seed, 0, args.verbose)
        rng = random.Random(args.seed)
        for s in range(args.sequences):
            run.sequence = s
            sequence(run, rng, f"model{s}", args.ops)
            if run.differences:
                break
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    backends = ", ".join(name for name, _, _ in servers)
    done = run.commands if run else 0
    print(f"model: seed {args.seed}, {args.sequences} sequences, {done} commands on {backends}, "
          f"{run.differences if run else 'no'} differences from the model ({time.time() - t0:.1f}s)")
    return 1 if run is None or run.differences or not done else 0


if __name__ == "__main__":
    sys.exit(main())
