#!/usr/bin/env python3
"""Prints the state of Playwright for Python, for `make deps`:

    found    the version pinned in tests/requirements.txt, importable, and its
             driver (the Node.js program inside the wheel) runs
    missing  not installed, or another version: `pip install playwright==PIN`
    broken   the pinned version per pip, but it does not import or its driver
             does not run (files removed): pip must reinstall it

It never downloads or runs a browser (`playwright install` is never run: the
tests use Debian's chromium).
"""

import importlib.metadata
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pinned(requirements=os.path.join(ROOT, "tests", "requirements.txt")):
    with open(requirements, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"\s*playwright==([^\s#;]+)", line)
            if m:
                return m.group(1)
    sys.exit(f"{requirements} pins no playwright==X")


def state(pin):
    try:
        version = importlib.metadata.version("playwright")
    except importlib.metadata.PackageNotFoundError:
        return "missing"
    if version != pin:
        return "missing"
    try:
        import playwright.sync_api  # noqa: F401
    except Exception:
        return "broken"
    env = dict(os.environ, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")
    try:
        res = subprocess.run([sys.executable, "-m", "playwright", "--version"], capture_output=True, text=True,
                             timeout=60, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return "broken"
    if res.returncode != 0 or pin not in res.stdout:
        return "broken"
    return "found"


if __name__ == "__main__":
    print(state(pinned(*sys.argv[1:2])))
