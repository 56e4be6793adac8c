#!/usr/bin/env python3
"""Runs the alert companion's tests (tests/alerts/test_*.py) on the module, the
Lua library, or both.

    python3 tests/alerts/run.py [--backend module|lua|both] [-k text] [files...]

Each test function (test_* in a file, in the order written) gets a fresh
Ctx (tests/alerts/harness.py): its own redis-server with quota, and the
receivers, mailboxes and `quota-dash alerts` processes it starts, all stopped
after it. A test fails on an exception (a wait_for that timed out, an
assert) or on a check() that failed; the end of the companions' output is
printed then. A file may set BACKENDS = ("module",) (default both).

Prints PASS/FAIL per test with its time, ends with "N passed, M failed" and
exits non-zero on a failure (or when no test matched).
"""

import argparse
import glob
import os
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402  (puts tests/ on sys.path)
import backend  # noqa: E402
from backend import load_test_file, tests_of  # noqa: E402


def report(exc):
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != os.path.abspath(__file__)]
    return "".join(traceback.format_list(frames) + traceback.format_exception_only(exc))


def check_tools(backends):
    try:
        import aiosmtpd  # noqa: F401
    except ImportError as e:
        sys.exit(f"tests/alerts: aiosmtpd is missing ({e}): run make deps (tests/requirements.txt pins it)")
    needed = [harness.DASH] + [harness.MODULE if b == "module" else harness.LOADER for b in backends]
    for path in needed:
        if not os.path.exists(path):
            sys.exit(f"tests/alerts: {path} is missing: run make build")


def main():
    ap = argparse.ArgumentParser(description="The alert companion against real webhook and SMTP peers")
    ap.add_argument("--backend", choices=["module", "lua", "both"], default="both")
    ap.add_argument("-k", dest="pattern", help="only the tests whose name (or file::name) contains this")
    ap.add_argument("files", nargs="*", help="test files (default tests/alerts/test_*.py)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    backends = ["module", "lua"] if args.backend == "both" else [args.backend]
    check_tools(backends)

    files = args.files or sorted(glob.glob(os.path.join(HERE, "test_*.py")))
    modules = []
    for path in files:
        if not os.path.exists(path):
            sys.exit(f"tests/alerts: no file {path}")
        modules.append((path, load_test_file(path, "alerts_")))

    passed, failed = 0, []
    took_by_backend = {}
    for b in backends:
        started = time.monotonic()
        for path, module in modules:
            if b not in getattr(module, "BACKENDS", ("module", "lua")):
                continue
            file = os.path.splitext(os.path.basename(path))[0]
            for name, fn in tests_of(module, args.pattern, "alerts_"):
                label = f"{b} {file}::{name}"
                t = time.monotonic()
                before = len(backend.FAILURES)
                error = None
                ctx = None
                try:
                    ctx = harness.Ctx(b)
                    fn(ctx)
                except Exception as e:  # noqa: BLE001 - any exception fails the test
                    error = report(e)
                checks = backend.FAILURES[before:]
                if error is None and checks:
                    error = f"{len(checks)} check(s) failed:\n" + "\n".join(f"- {c}" for c in checks)
                if error is not None and ctx is not None and ctx.companions and "--- companion" not in error:
                    error += ctx.outputs(25)
                if ctx is not None:
                    ctx.close()
                took = time.monotonic() - t
                if error is None:
                    passed += 1
                    print(f"PASS  {b:6} {file}::{name}  ({took:.2f} s)", flush=True)
                else:
                    failed.append(label)
                    print(f"FAIL  {b:6} {file}::{name}  ({took:.2f} s)", flush=True)
                    print("      " + error.rstrip().replace("\n", "\n      "), flush=True)
        took_by_backend[b] = time.monotonic() - started

    for b, s in took_by_backend.items():
        print(f"{b}: {s:.1f} s")
    if failed:
        print("failed:\n  " + "\n  ".join(failed))
    print(f"{passed} passed, {len(failed)} failed")
    if failed or passed == 0:
        sys.exit(1)


if __name__ == "__main__":
    main()
