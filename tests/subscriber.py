#!/usr/bin/env python3
"""A subscriber on quota:events:<key> receives each event as JSON.

Subscribes, charges past a threshold from another connection, and checks
the message it receives. Run by tests/scenarios/14_events.redis.
"""

import argparse
import json
import sys
import time

from backend import Redis


def published(r, channel, commands, count):
    """Subscribes to `channel`, runs `commands` (argument lists) on `r`,
    and returns the first `count` messages published there, decoded from
    JSON (fewer if they do not all arrive within 5 s)."""
    pubsub = r.pubsub()
    pubsub.subscribe(channel)
    deadline = time.time() + 5
    while time.time() < deadline:
        message = pubsub.get_message(timeout=1)
        if message and message["type"] == "subscribe":
            break
    for command in commands:
        r.execute_command(*command)
    received = []
    while time.time() < deadline and len(received) < count:
        message = pubsub.get_message(timeout=1)
        if message and message["type"] == "message":
            received.append(json.loads(message["data"]))
    return received


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    r = Redis(port=args.port, decode_responses=True)
    received = published(r, "quota:events:sub", [
        ("QUOTA.SET", "sub", "teams/t1", "cap", "METRIC", "credits", "LIMIT", "10", "WARN", "50"),
        ("QUOTA.CHARGE", "sub", "PATH", "teams/t1/u1", "COST", "credits", "6"),
    ], 1)
    if not received:
        print("no event received")
        return 1
    event = received[0]
    want = {"seq": 1, "type": "warning", "tree": "sub", "path": "teams/t1", "policy": "cap",
            "metric": "credits", "used": "6", "held": "0", "limit": "10", "threshold": 50}
    wrong = {k: (event.get(k), v) for k, v in want.items() if event.get(k) != v}
    if wrong or not isinstance(event.get("time"), int):
        print("unexpected event:", event, "differences (got, want):", wrong)
        return 1
    logged = r.execute_command("QUOTA.EVENTS", "sub")
    if len(logged) != 1:
        print("the log should hold the published event:", logged)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
