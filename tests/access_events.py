#!/usr/bin/env python3
"""A subscriber on quota:events:<key> receives each `disallowed` event as
JSON, with `tree`, in the order QUOTA.EVENTS lists them (access design §5).

Subscribes, records a CHARGE (without CHECK) that the rules of two nodes
refuse and that crosses a warning threshold, and checks the three messages:
the two `disallowed` events in charge-set order, then the `warning`. Run by
tests/scenarios/44_access.redis on both backends.
"""

import argparse
import json
import sys

from backend import Redis
from subscriber import published


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    r = Redis(port=args.port, decode_responses=True)
    received = published(r, "quota:events:pubacc", [
        ("QUOTA.SET", "pubacc", "/", "cap", "METRIC", "credits", "LIMIT", "10", "WARN", "50"),
        ("QUOTA.DENY", "pubacc", "/", "SERVICE", "video"),
        ("QUOTA.ALLOW", "pubacc", "teams/t1", "SERVICE", "chat"),
        ("QUOTA.CHARGE", "pubacc", "PATH", "teams/t1/u1", "ID", "c-9", "SERVICE", "video", "MODEL", "sora",
         "COST", "credits", "6"),
    ], 3)
    common = {"tree": "pubacc", "policy": None, "metric": None, "used": None, "held": None, "limit": None,
              "service": "video", "model": "sora", "id": "c-9", "amounts": {"credits": "6"}}
    want = [
        dict(common, seq=1, type="disallowed", path="/", rule="deny"),
        dict(common, seq=2, type="disallowed", path="teams/t1", rule="allow"),
        {"seq": 3, "type": "warning", "tree": "pubacc", "path": "/", "policy": "cap", "metric": "credits",
         "used": "6", "held": "0", "limit": "10", "threshold": 50},
    ]
    for event in received:
        event.pop("time", None)
    if received != want:
        print(f"expected {json.dumps(want)}\n     got {json.dumps(received)}")
        return 1
    logged = r.execute_command("QUOTA.EVENTS", "pubacc")
    if len(logged) != 3:
        print(f"QUOTA.EVENTS lists {len(logged)} events, not 3")
        return 1
    print("ok: disallowed events published as JSON, in order, before the warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
