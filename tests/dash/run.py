#!/usr/bin/env python3
"""Runs the dashboard's browser tests (tests/dash/test_*.py) on the module, the
Lua library, or both.

    python3 tests/dash/run.py [--backend module|lua|both] [-k text] [files...]

Each test file gets its own Dash (tests/dash/harness.py: redis-server, quota,
quota-dash, headless Chromium) per backend; each of its functions named
test_* is called with it, in the order of the file, with a fresh browser
context. A file may set at module level:

    BACKENDS = ("module",)         the backends it runs on (default both)
    DASH_ARGS = ["--read-only"]    options for quota-dash (default none)
    DASH_ENV = {"QUOTA_DASH_TOKEN": "t"}   its environment

A test fails on an exception (an assert, a Playwright expect or timeout) or
when its pages logged a JavaScript error (dash.js_errors). A failing test's
page is saved to target/dash-failures/<backend>-<file>-<test>.png and the
path printed, with the end of quota-dash's output. A test that changed the
dash's options (dash.restart_dash) or killed it gets the file's dash back
before the next test.

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

from harness import Dash, DashError, _tail  # noqa: E402  (puts tests/ on sys.path)
from backend import load_test_file, tests_of  # noqa: E402


def report(exc):
    """The traceback without the frames of run.py and Playwright's insides."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if f.filename != os.path.abspath(__file__) and f"{os.sep}playwright{os.sep}" not in f.filename]
    return "".join(traceback.format_list(frames) + traceback.format_exception_only(exc))


def check_tools():
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as e:
        sys.exit(f"tests/dash: Playwright for Python is missing ({e}): run make deps")
    from harness import DASH, chromium_path

    if not os.access(chromium_path(), os.X_OK):
        sys.exit(f"tests/dash: no Chromium at {chromium_path()}: run make deps (Debian's chromium)")
    if not os.path.exists(DASH):
        sys.exit(f"tests/dash: {DASH} is missing: run make build")


def main():
    ap = argparse.ArgumentParser(description="The dashboard in headless Chromium")
    ap.add_argument("--backend", choices=["module", "lua", "both"], default="both")
    ap.add_argument("-k", dest="pattern", help="only the tests whose name (or file::name) contains this")
    ap.add_argument("files", nargs="*", help="test files (default tests/dash/test_*.py)")
    args = ap.parse_args()

    # SIGTERM (make interrupted, CI's timeout) ends as an exception does:
    # every Dash stops its processes (with, atexit).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    check_tools()

    files = args.files or sorted(glob.glob(os.path.join(HERE, "test_*.py")))
    backends = ["module", "lua"] if args.backend == "both" else [args.backend]
    modules = []
    for path in files:
        if not os.path.exists(path):
            sys.exit(f"tests/dash: no file {path}")
        modules.append((path, load_test_file(path, "dash_")))

    passed, failed = 0, []
    started = time.monotonic()
    for backend in backends:
        for path, module in modules:
            if backend not in getattr(module, "BACKENDS", ("module", "lua")):
                continue
            tests = tests_of(module, args.pattern, "dash_")
            if not tests:
                continue
            file = os.path.splitext(os.path.basename(path))[0]
            dash_args = list(getattr(module, "DASH_ARGS", []))
            dash_env = dict(getattr(module, "DASH_ENV", {}))
            t0 = time.monotonic()
            try:
                dash = Dash(backend, dash_args=dash_args, env=dash_env)
            except DashError as e:
                for name, _ in tests:
                    failed.append(f"{backend} {file}::{name}")
                    print(f"FAIL  {backend:6} {file}::{name}  (could not start: see below)")
                print(f"      {e}".replace("\n", "\n      "))
                continue
            print(f"----  {backend:6} {file}: started in {time.monotonic() - t0:.2f} s")
            with dash:
                for name, fn in tests:
                    label = f"{backend} {file}::{name}"
                    t = time.monotonic()
                    error = None
                    try:
                        dash.begin_test()
                        fn(dash)
                        if dash.js_errors:
                            error = "JavaScript errors on the page:\n" + "\n".join(dash.js_errors)
                    except Exception as e:
                        error = report(e)
                    took = time.monotonic() - t
                    if error is None:
                        passed += 1
                        print(f"PASS  {backend:6} {file}::{name}  ({took:.2f} s)")
                    else:
                        failed.append(label)
                        print(f"FAIL  {backend:6} {file}::{name}  ({took:.2f} s)")
                        print("      " + error.rstrip().replace("\n", "\n      "))
                        shot = dash.failure_shot(f"{backend}-{file}-{name}")
                        if shot:
                            print(f"      screenshot: {os.path.relpath(shot)}")
                        out = _tail(dash.dash_log, 10).rstrip()
                        if out and out not in error:
                            print("      quota-dash said (last lines):\n        " + out.replace("\n", "\n        "))
                    try:
                        dash.close_context()
                        dead = dash.dash_proc.poll() is not None
                        changed = dash.dash_args != dash_args or dash.env != dash_env
                        if dead or changed or not dash.listen.startswith("127.0.0.1:"):
                            if dead and error is None:
                                print(f"      note: quota-dash exited during {name} (code {dash.dash_proc.returncode})")
                            dash.restart_dash(dash_args, dash_env)
                    except DashError as e:
                        print(f"      quota-dash could not be started again: {e}")
                        rest = tests[[n for n, _ in tests].index(name) + 1:]
                        for other, _ in rest:
                            failed.append(f"{backend} {file}::{other}")
                            print(f"FAIL  {backend:6} {file}::{other}  (not run: no dash)")
                        break

    total = passed + len(failed)
    print(f"tests/dash: {time.monotonic() - started:.1f} s")
    if failed:
        print("failed:\n  " + "\n  ".join(failed))
    if total == 0:
        print("tests/dash: no test matched")
        print("0 passed, 0 failed")
        return 1
    print(f"{passed} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
