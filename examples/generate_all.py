#!/usr/bin/env python3
"""Generate All with quota: never start what cannot finish.

A "Generate All" button fires N generations at once. Instead of letting the
quota block some of them at random, the product treats the batch as one
transaction:

  1. preview the whole batch (QUOTA.RESERVE … DRYRUN): does it fit?
  2. if it all fits, reserve it all (ALL); if not, show the message and the
     options: generate the first `fits` items, or stop;
  3. reserve (UPTO for the first `fits`), with an ID so a retry is harmless;
  4. run the items one by one, commit each with its actual cost
     (QUOTA.COMMIT … ITEM i USAGE …) and release the ones that failed
     (QUOTA.RELEASE … ITEM i), extending the hold for long batches.

Run it against `make run` (localhost:6379):

    python3 examples/generate_all.py --setup

`--setup` creates a demo price (video/demo) and a 95-credit budget on the
tree `demo-co`. `--choice first|stop` answers the question without a prompt.
`--backend lua` talks to the Lua library (`make run-lua`) instead: the same
commands, sent as FCALL quota_x.
"""

import argparse
import os
import random
import sys
import uuid

import redis

PRICE = ('{"metric": "credits", "rates": {"video_seconds": "2"}, '
         '"multipliers": {"resolution": {"720p": "1", "1080p": "1.5"}}}')


class Quota:
    """quota's commands on a connection: `QUOTA.X key args` for the module,
    `FCALL quota_x 1 key args` for the Lua library (no key: 0 keys)."""

    def __init__(self, r, backend):
        self.r, self.lua = r, backend == "lua"

    def execute_command(self, command, *args):
        if not self.lua:
            return self.r.execute_command(command, *args)
        name = command[6:].lower()
        if name in ("price", "estimate"):
            return self.r.execute_command("FCALL", "quota_" + name, 0, *args)
        return self.r.execute_command("FCALL", "quota_" + name, 1, *args)


def as_map(reply):
    """A reply map: a dict over RESP3, a flat key/value list over RESP2."""
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[0::2], reply[1::2]))


def usage(seconds, resolution):
    return ["USAGE", "video/demo", "video_seconds", str(seconds), "resolution", resolution]


def reserve(r, tree, path, items, mode, batch_id=None, ttl_ms=None):
    args = ["QUOTA.RESERVE", tree, "PATH", path, mode]
    if batch_id:
        args += ["ID", batch_id]
    if ttl_ms:
        args += ["TTL", str(ttl_ms)]
    args.append("BRIEF")
    for item in items:
        args += item
    return as_map(r.execute_command(*args))


def generate(rng, seconds):
    """Stands in for the real generation: it sometimes fails, and a clip
    often comes out shorter than asked for."""
    if rng.random() < 0.2:
        return None
    return rng.choice([seconds, seconds, seconds - 1, seconds - 2])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=6379)
    parser.add_argument("--tree", default="demo-co")
    parser.add_argument("--path", default="projects/trailer")
    parser.add_argument("--items", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=6, help="seconds per clip")
    parser.add_argument("--choice", choices=["first", "stop"], help="answer when not everything fits")
    parser.add_argument("--setup", action="store_true", help="create the demo price and budget")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--backend", choices=["module", "lua"], default=os.environ.get("QUOTA_BACKEND", "module"))
    args = parser.parse_args()

    r = Quota(redis.Redis(host=args.host, port=args.port, decode_responses=True), args.backend)
    rng = random.Random(args.seed)
    if args.setup:
        r.execute_command("QUOTA.PRICE", "SET", "video/demo", PRICE)
        r.execute_command("QUOTA.SET", args.tree, "/", "monthly", "METRIC", "credits", "LIMIT", "95", "WINDOW", "month")

    items = [usage(args.seconds, "1080p") for _ in range(args.items)]

    # 1. Preview: nothing is held.
    preview = reserve(r, args.tree, args.path, items, "DRYRUN")
    print(f"preview: {preview['message']}")
    fits, n = preview["fits"], preview["items"]
    if fits == 0:
        print("nothing fits: ask for more credits before generating")
        return 0

    # 2. Everything, or the options.
    if fits == n:
        mode = "ALL"
    else:
        choice = args.choice
        if choice is None:
            answer = input(f"Generate the first {fits} of {n}, or stop? [first/stop] ").strip().lower()
            choice = "first" if answer.startswith("f") else "stop"
        print(f"options: generate the first {fits}, or stop -> {choice}")
        if choice == "stop":
            return 0
        mode = "UPTO"

    # 3. Reserve, idempotently: a retry with the same ID returns the same hold.
    batch_id = f"batch-{uuid.uuid4().hex[:12]}"
    held = reserve(r, args.tree, args.path, items, mode, batch_id=batch_id, ttl_ms=120_000)
    again = reserve(r, args.tree, args.path, items, mode, batch_id=batch_id, ttl_ms=120_000)
    assert again["duplicate"] == 1 and again["id"] == held["id"], "a retried reserve must not hold twice"
    print(f"reserved {held['reserved']} of {n} items as {held['id']}: {held['message']}")

    # 4. Run the items one by one and settle each with its actual cost.
    spent, failed = 0.0, 0
    for i in range(held["reserved"]):
        seconds = generate(rng, args.seconds)
        if seconds is None:
            r.execute_command("QUOTA.RELEASE", args.tree, held["id"], "ITEM", i)
            failed += 1
            print(f"  item {i}: failed, released")
            continue
        done = as_map(r.execute_command("QUOTA.COMMIT", args.tree, held["id"], "ITEM", i, *usage(seconds, "1080p")))
        charged = as_map(done["charged"])["credits"]
        spent += float(charged)  # display only; quota keeps exact decimals
        print(f"  item {i}: {seconds}s generated, charged {charged} credits")
        if i % 4 == 3:
            # Long video batches keep their hold alive while they run.
            r.execute_command("QUOTA.EXTEND", args.tree, held["id"], 120_000)

    node = as_map(r.execute_command("QUOTA.GET", args.tree, "/"))
    policy = as_map(node["policies"][0])
    print(f"done: {held['reserved'] - failed} generated, {failed} failed, {spent:g} credits charged; "
          f"budget used {policy['used']} of {policy['limit']}, held {policy['held']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
