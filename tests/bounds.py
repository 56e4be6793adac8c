#!/usr/bin/env python3
"""Helpers for tests/scenarios/25_bounds_never_strand.redis, on either backend
(QUOTA_BACKEND, set by tests/run.py):

    fill --port P --key K --path PATH --amount A --times N
        QUOTA.CHARGE K PATH PATH COST credits A, N times (in one pipeline):
        brings a total near the 10^18 bound without a 30 KB command line.
    max-depth --port P --depth N
        lowers max_depth at run time: CONFIG SET quota.max_depth on the
        module; on the Lua library, where it is a load-time setting, a reload
        with quota-load --set max_depth=N (as an operator would)."""

import argparse
import os
import subprocess
import sys

from backend import BACKEND, Redis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOADER = os.path.join(ROOT, "target", "release", "quota-load")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["fill", "max-depth"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key")
    parser.add_argument("--path")
    parser.add_argument("--amount")
    parser.add_argument("--times", type=int, default=1)
    parser.add_argument("--depth", type=int)
    args = parser.parse_args()
    r = Redis(port=args.port, decode_responses=True)
    if args.what == "fill":
        pipe = r.pipeline(transaction=False)
        for _ in range(args.times):
            pipe.execute_command("QUOTA.CHARGE", args.key, "PATH", args.path, "COST", "credits", args.amount)
        pipe.execute()
    elif BACKEND == "lua":
        subprocess.run([LOADER, f"redis://127.0.0.1:{args.port}", "--force", "--test-clock",
                        "--set", f"max_depth={args.depth}"], check=True, capture_output=True)
    else:
        r.config_set("quota.max_depth", args.depth)
    return 0


if __name__ == "__main__":
    sys.exit(main())
