#!/usr/bin/env python3
"""A batch hold against concurrent spending.

A 10-item batch (150 credits) is held on a 200-credit strict budget while 8
other clients reserve, commit and CHECK-charge on the same ancestors as fast
as they can. The batch must always complete (every item commits against its
hold), the others must be denied once the 50 credits outside the batch are
gone, usage must equal the sum of acknowledged charges and never exceed the
budget, and no hold may be left behind.

Run by tests/scenarios/13_generate_all.redis: `--port` is a server with the module.
"""

import argparse
import sys
import threading
from decimal import Decimal

from backend import Redis, as_map

LIMIT = Decimal(200)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rounds", type=int, default=150)
    args = parser.parse_args()

    def client():
        return Redis(port=args.port, decode_responses=True)

    setup = client()
    setup.execute_command("QUOTA.SET", "race", "/", "budget", "METRIC", "credits", "LIMIT", str(LIMIT))
    setup.execute_command("QUOTA.SET", "race", "projects", "all", "METRIC", "credits", "LIMIT", str(LIMIT))

    batch = client()
    items = []
    for _ in range(10):
        items += ["COST", "credits", "15"]
    held = as_map(batch.execute_command("QUOTA.RESERVE", "race", "PATH", "projects/batch", "TTL", "600000", "BRIEF", *items))
    assert held["allowed"] == 1 and held["reserved"] == 10, held

    charged = []  # acknowledged amounts, appended by every client
    batch_charged = []
    lock = threading.Lock()
    errors = []

    def spender(n):
        r = client()
        try:
            for k in range(args.rounds):
                path = f"projects/p{n}"
                if k % 2 == 0:
                    res = as_map(r.execute_command("QUOTA.RESERVE", "race", "PATH", path, "BRIEF", "COST", "credits", "10"))
                    if res["allowed"]:
                        done = as_map(r.execute_command("QUOTA.COMMIT", "race", res["id"]))
                        with lock:
                            charged.append(Decimal(as_map(done["charged"])["credits"]))
                else:
                    res = as_map(r.execute_command("QUOTA.CHARGE", "race", "PATH", path, "CHECK", "BRIEF", "COST", "credits", "5"))
                    if res["allowed"]:
                        with lock:
                            charged.append(Decimal(as_map(res["charged"])["credits"]))
        except Exception as e:  # surfaced below as a failure
            errors.append(repr(e))

    def settle():
        try:
            for i in range(10):
                # Each clip cost a little less than its estimate.
                done = as_map(batch.execute_command("QUOTA.COMMIT", "race", held["id"], "ITEM", str(i), "COST", "credits", "14"))
                assert done["duplicate"] == 0 and done["expired"] == 0, done
                with lock:
                    charged.append(Decimal(as_map(done["charged"])["credits"]))
                    batch_charged.append(Decimal(as_map(done["charged"])["credits"]))
        except Exception as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=spender, args=(n,)) for n in range(8)]
    threads.append(threading.Thread(target=settle))
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    if errors:
        print("client errors:", errors)
        return 1
    node = as_map(setup.execute_command("QUOTA.GET", "race", "/"))
    policy = as_map(node["policies"][0])
    used, held_now = Decimal(policy["used"]), Decimal(policy["held"])
    holds = setup.execute_command("QUOTA.HOLDS", "race")
    total = sum(charged, Decimal(0))
    others = total - sum(batch_charged, Decimal(0))
    print(f"batch of 10 completed; {len(charged) - 10} other charges acknowledged; used {used} of {LIMIT}")
    checks = [
        (len(batch_charged) == 10, "every item of the batch committed against its hold"),
        (used == total, f"used {used} equals the acknowledged charges {total}"),
        (used <= LIMIT, f"used {used} stays within {LIMIT}"),
        (held_now == 0 and not holds, f"no hold left behind (held {held_now}, holds {holds})"),
        # Outside the batch: the 50 never held, plus the 1 each item gave back.
        (others <= 60, f"the others spent {others}, no more than the batch left them (60)"),
        (len(charged) - 10 < 8 * args.rounds, "some of the others were denied"),
    ]
    failed = [why for ok, why in checks if not ok]
    for why in failed:
        print("FAILED:", why)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
