#!/usr/bin/env python3
"""META on the event channel (usage design §2): the `expired` event of a hold
placed with META, and the `disallowed` event of a CHARGE with META, are
published on quota:events:<key> as JSON objects whose `meta` object comes
right after `amounts`, its names in the order given; an event of a request
without META has no `meta`. Run by tests/scenarios/49_meta.redis, on a server
with the test clock, on both backends.
"""

import argparse
import json
import sys
import time

from backend import Redis


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    r = Redis(port=args.port, decode_responses=True)
    r.execute_command("QUOTA.DEBUG", "CLOCK", "SET", "1768435200000")
    r.execute_command("QUOTA.RESERVE", "mev", "PATH", "p", "ID", "m1", "TTL", "1000", "META", "user", "u7",
                      "request", "r-1", "feature", "chat", "BRIEF", "COST", "credits", "5")
    r.execute_command("QUOTA.RESERVE", "mev", "PATH", "p", "ID", "m2", "TTL", "2000", "BRIEF", "COST", "credits", "1")
    r.execute_command("QUOTA.ALLOW", "mev", "d", "SERVICE", "chat")
    pubsub = r.pubsub()
    pubsub.subscribe("quota:events:mev")
    deadline = time.time() + 5
    while time.time() < deadline:
        message = pubsub.get_message(timeout=1)
        if message and message["type"] == "subscribe":
            break
    r.execute_command("QUOTA.DEBUG", "CLOCK", "ADVANCE", "5000")
    try:  # a write stores the expiries (the module's timer may be first)
        r.execute_command("QUOTA.EXTEND", "mev", "no-such-hold", "1")
    except Exception:
        pass
    r.execute_command("QUOTA.CHARGE", "mev", "PATH", "d", "ID", "c1", "SERVICE", "video", "META", "user", "u9",
                      "BRIEF", "COST", "credits", "2")
    received = []
    while time.time() < deadline and len(received) < 3:
        message = pubsub.get_message(timeout=1)
        if message and message["type"] == "message":
            received.append(json.loads(message["data"], object_pairs_hook=list))
    failures = []
    if len(received) != 3:
        failures.append(f"expected 3 events, got {len(received)}: {received}")
    else:
        want = [
            ("expired", "m1", [("user", "u7"), ("request", "r-1"), ("feature", "chat")]),
            ("expired", "m2", None),
            ("disallowed", "c1", [("user", "u9")]),
        ]
        for event, (kind, ident, meta) in zip(received, want):
            fields = dict(event)
            names = [k for k, _ in event]
            if fields.get("type") != kind or fields.get("id") != ident:
                failures.append(f"expected a {kind} event of {ident}, got {event}")
                continue
            if meta is None:
                if "meta" in fields:
                    failures.append(f"{ident}: an event without META has `meta`: {event}")
                continue
            if fields.get("meta") != meta:
                failures.append(f"{ident}: meta {fields.get('meta')}, expected {meta} (in this order)")
            if "amounts" not in names or "meta" not in names or names.index("meta") != names.index("amounts") + 1:
                failures.append(f"{ident}: `meta` must come right after `amounts`: {names}")
    for f in failures:
        print("FAILED:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
