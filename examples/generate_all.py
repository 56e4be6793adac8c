#!/usr/bin/env python3
"""Generate All with quota: never start what cannot finish.

A "Generate All" button fires N generations at once. Instead of letting the
quota block some of them at random, the product treats the batch as one
transaction, which the Python client's `generate_all()` runs:

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
The client detects the module or the Lua library (`make run-lua`) itself;
`--backend module|lua` forces one. It uses quota_client (`pip install
./clients/python`), or the copy in clients/python when it is not installed.
"""

import argparse
import os
import random
import sys
from decimal import Decimal

try:
    import quota_client  # noqa: F401
except ImportError:  # run from a clone without installing the client
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients", "python"))

import redis

from quota_client import Quota, Usage

PRICE = {"metric": "credits", "rates": {"video_seconds": "2"},
         "multipliers": {"resolution": {"720p": "1", "1080p": "1.5"}}}


def clip(seconds, resolution="1080p"):
    return Usage("video/demo", {"video_seconds": seconds, "resolution": resolution})


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
    parser.add_argument("--backend", choices=["module", "lua"], default=os.environ.get("QUOTA_BACKEND") or None,
                        help="default: detected")
    args = parser.parse_args()

    q = Quota(redis.Redis(host=args.host, port=args.port), backend=args.backend)
    rng = random.Random(args.seed)
    if args.setup:
        q.price_set("video/demo", PRICE)
        q.set(args.tree, "/", "monthly", metric="credits", limit=95, window="month")

    def choose(preview):
        print(f"preview: {preview.message}")
        choice = args.choice
        if choice is None:
            answer = input(f"Generate the first {preview.fits} of {preview.items}, or stop? [first/stop] ")
            choice = "first" if answer.strip().lower().startswith("f") else "stop"
        print(f"options: generate the first {preview.fits}, or stop -> {choice}")
        return choice

    items = [clip(args.seconds) for _ in range(args.items)]
    # 1-3. Preview, decide, reserve (with an ID: a retry returns the same hold).
    batch = q.generate_all(args.tree, path=args.path, items=items, choose=choose, ttl_ms=120_000)
    if batch.choice == "none":
        print(f"preview: {batch.preview.message}")
        print("nothing fits: ask for more credits before generating")
        return 0
    if batch.choice == "all":
        print(f"preview: {batch.preview.message}")
    if batch.choice == "stop":
        return 0
    again = q.generate_all(args.tree, path=args.path, items=items, choose="stop", id=batch.id, ttl_ms=120_000)
    assert again.reservation.duplicate == 1 and again.reservation.id == batch.id, "a retry must not hold twice"
    held = batch.reservation
    print(f"reserved {held.reserved} of {held.items} items as {held.id}: {held.message}")

    # 4. Run the items one by one and settle each with its actual cost.
    spent, failed = Decimal(0), 0
    for i in range(batch.reserved):
        seconds = generate(rng, args.seconds)
        if seconds is None:
            batch.release(i)
            failed += 1
            print(f"  item {i}: failed, released")
            continue
        charged = batch.commit(i, usage=clip(seconds)).charged["credits"]
        spent += charged
        print(f"  item {i}: {seconds}s generated, charged {charged} credits")
        if i % 4 == 3:
            batch.extend(120_000)  # long video batches keep their hold alive while they run

    policy = q.get(args.tree, "/").policy_named("monthly")
    print(f"done: {batch.reserved - failed} generated, {failed} failed, {spent} credits charged; "
          f"budget used {policy.used} of {policy.limit}, held {policy.held}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
