#!/usr/bin/env python3
"""Checks of tests/run.py itself: `@sync` and the choice of server.

- `@sync M` with no replica of M connected fails the case (it once passed:
  WAIT 0 from a fresh connection returns at once);
- `@sync M` with a replica passes, and the replica then has M's writes;
- `--server PATH` that is no executable is a usage error (exit 2).

Ends with "N passed, M failed"; exit 0 when all pass.
"""

import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join(ROOT, "tests", "run.py")

NO_REPLICA = """@server main
## a write
> SET a 1
"OK"
@sync main
"""

WITH_REPLICA = """@server main
@server replica
@replicaof replica main
## the replica has every write once @sync returns
> SET a 1
"OK"
> INCR n
1
@sync main
>replica GET a
"1"
>replica GET n
"1"
"""


def run(text, *args):
    with tempfile.NamedTemporaryFile("w", suffix=".redis", delete=False) as f:
        f.write(text)
    try:
        return subprocess.run([sys.executable, RUN, *args, f.name], capture_output=True, text=True, timeout=120)
    finally:
        os.unlink(f.name)


def main():
    results = []

    def check(ok, what, res):
        results.append(ok)
        print(f"{'ok  ' if ok else 'FAIL'}  {what}" + ("" if ok else f"\n{res.stdout[-2000:]}{res.stderr[-2000:]}"))

    res = run(NO_REPLICA)
    check(res.returncode == 1 and "has no replica connected" in res.stdout,
          "@sync with no replica connected fails the case", res)
    res = run(WITH_REPLICA)
    check(res.returncode == 0 and "1 passed, 0 failed" in res.stdout,
          "@sync with a replica passes and the replica has the writes", res)
    res = run(NO_REPLICA, "--server", "/nonexistent/redis-server")
    check(res.returncode == 2 and "no redis-server at" in res.stderr, "--server that is no executable: exit 2", res)
    failed = results.count(False)
    print(f"run.py checks: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
