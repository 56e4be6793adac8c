#!/usr/bin/env python3
"""One write that logs more events than Lua can pass to one command.

    event_burst.py --port P      (a server with the test clock; both backends)

9,000 holds come due together; the next write expires them all and logs an
`expired` event for each. The Lua library once pushed its new events with a
single `RPUSH key unpack(all)`, which Lua refuses beyond about 8,000 values:
the call failed half-way through its writes. Now the write succeeds, the log
keeps the newest events_len events in order, and the tree is intact."""

import argparse
import json
import sys

from backend import FAILURES, Redis, as_map, check

HOLDS = 9000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    r = Redis(port=args.port, decode_responses=True)
    key = "burst"
    r.execute_command("QUOTA.DEBUG", "CLOCK", "SET", "1768435200000")
    r.execute_command("QUOTA.SET", key, "/", "cap", "METRIC", "credits", "LIMIT", "1000000")
    pipe = r.pipeline(transaction=False)
    for i in range(HOLDS):
        pipe.execute_command("QUOTA.RESERVE", key, "PATH", "p", "ID", f"h{i}", "TTL", "1000", "BRIEF",
                             "COST", "credits", "1")
    replies = pipe.execute(raise_on_error=False)
    check(all(not isinstance(x, Exception) for x in replies), "9,000 reservations are placed")
    before = r.execute_command("QUOTA.EVENTS", key, "COUNT", "1")
    r.execute_command("QUOTA.DEBUG", "CLOCK", "ADVANCE", "2000")
    try:
        reply = as_map(r.execute_command("QUOTA.CHARGE", key, "PATH", "p", "BRIEF", "COST", "credits", "1"))
        check(reply.get("allowed") in (1, True), f"the write after the burst is allowed: {reply}")
    except Exception as e:  # noqa: BLE001 - the failure is what is checked
        check(False, f"the write that expires 9,000 holds fails: {e}")
    policy = as_map(as_map(r.execute_command("QUOTA.GET", key, "/"))["policies"][0])
    check(str(policy["held"]) == "0", f"every hold is given back: held {policy['held']}")
    check(str(policy["used"]) == "1", f"only the charge is used: used {policy['used']}")
    holds = r.execute_command("QUOTA.HOLDS", key, "COUNT", "10")
    check(len(holds) == 0, f"no live hold is left: {holds[:2]}")
    events = r.execute_command("QUOTA.EVENTS", key, "COUNT", "10000")
    events = [json.loads(e) if isinstance(e, str) else as_map(e) for e in events]
    seqs = [int(e["seq"]) for e in events]
    check(len(events) == 1000, f"the log keeps events_len (1000) events: {len(events)}")
    check(bool(seqs) and seqs == list(range(seqs[0], seqs[0] + len(seqs))), "the log's events are consecutive")
    check(all(e["type"] == "expired" for e in events), "the newest events are the expiries")
    check(len(before) <= 1, "the log was nearly empty before")
    if FAILURES:
        sys.exit(1)
    print(f"event burst ({HOLDS} expiries in one write): ok")


if __name__ == "__main__":
    main()
