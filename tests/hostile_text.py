#!/usr/bin/env python3
"""Text from disk or a client never reaches a C string unchecked: a NUL or
a printf directive in an id, a path, a price key or a module argument is an
error (or is shown as `?`), never a crash. Run by
tests/scenarios/22_hostile_text.redis (`@python tests/hostile_text.py <check> …`).

  restore-nul   DUMP payloads with a NUL (and a printf directive) in a
                finished id, a hold id and a path, each with a valid CRC,
                given to RESTORE: refused or loaded clean, the server stays up
  module-args   on a server of its own, MODULE LOAD with a NUL or printf directives in a module
                argument: refused with a log line, the server stays up
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import redis

from backend import FAILURES, check, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _crc64_table():
    # Redis's CRC-64 (Jones polynomial, reflected, no final xor).
    poly = 0x95AC9329AC4BC9B5
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return table


CRC_TABLE = _crc64_table()


def crc64(data):
    crc = 0
    for b in data:
        crc = CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def with_crc(body):
    """A DUMP payload: the body (value and RDB version) and its CRC-64."""
    return body + crc64(body).to_bytes(8, "little")


def variants(dump, name, bad):
    """The payload with `name` replaced by `bad` (same length) at each of its
    occurrences in turn, and at all of them."""
    body = dump[:-8]
    at = []
    start = body.find(name)
    while start >= 0:
        at.append(start)
        start = body.find(name, start + 1)
    out = []
    for i in at:
        out.append(with_crc(body[:i] + bad + body[i + len(name):]))
    if len(at) > 1:
        out.append(with_crc(body.replace(name, bad)))
    return out


def restore_nul(args):
    r = redis.Redis(port=args.port, socket_timeout=30)
    # Uncompressed, so that the names can be found and replaced in the payload.
    r.config_set("rdbcompression", "no")
    r.execute_command("QUOTA.SET", "src", "pathpathpath", "p", "METRIC", "credits", "LIMIT", "100")
    r.execute_command("QUOTA.RESERVE", "src", "PATH", "pathpathpath", "ID", "liveliveid01", "COST", "credits", "5")
    r.execute_command("QUOTA.RESERVE", "src", "PATH", "pathpathpath", "ID", "finishedid01", "COST", "credits", "5")
    r.execute_command("QUOTA.COMMIT", "src", "finishedid01")
    r.execute_command("QUOTA.CHARGE", "src", "PATH", "pathpathpath", "ID", "chargedid001", "COST", "credits", "1")
    dump = r.dump("src")
    check(with_crc(dump[:-8]) == dump, "the test computes Redis's CRC-64")
    r.execute_command("RESTORE", "copy", 0, dump)
    tried = refused = 0
    for name in (b"finishedid01", b"chargedid001", b"liveliveid01", b"pathpathpath"):
        for bad in (name[:4] + b"\x00" + name[5:], name[:4] + b"%s%n" + name[8:]):
            found = variants(dump, name, bad)
            check(len(found) > 0, f"{name!r} is in the payload")
            for n, payload in enumerate(found):
                tried += 1
                try:
                    r.execute_command("RESTORE", "bad", 0, payload, "REPLACE")
                    # `%` is printable: such a name may load, and is logged
                    # and replied as it is. A NUL in the name itself (the
                    # last variant replaces every copy) never loads; one
                    # only in a stored reply may, and is replied as bytes.
                    check(b"\x00" not in bad or n < len(found) - 1, f"a payload with {bad!r} everywhere is refused")
                    for read in (["QUOTA.TREE", "bad", "FORMAT", "json"], ["QUOTA.HOLDS", "bad"],
                                 ["QUOTA.EVENTS", "bad"], ["QUOTA.GET", "bad", "/"]):
                        r.execute_command(*read)
                except redis.ResponseError:
                    refused += 1
                check(r.ping(), f"the server survives a RESTORE with {bad!r}")
    check(r.execute_command("DEBUG", "RELOAD") == b"OK", "the server reloads what it has")
    print(f"{tried} payloads with a NUL or printf directive in a name: {refused} refused, server up")
    return 0


def start_server(binary, *options):
    """A redis-server without the module on a free port, and its client."""
    port = free_port()
    folder = tempfile.mkdtemp(prefix="quota-test-")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", folder,
                             "--logfile", os.path.join(folder, "redis.log"), *options],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = redis.Redis(port=port, socket_timeout=30)
    for _ in range(500):
        try:
            if r.ping():
                return proc, r, folder
        except redis.ConnectionError:
            if proc.poll() is not None:
                break
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError(f"{binary} did not start")


def stop_server(proc, folder):
    proc.kill()
    proc.wait()
    shutil.rmtree(folder, ignore_errors=True)


def module_args(args):
    proc, r, folder = start_server(shutil.which("redis-server") or "/usr/bin/redis-server",
                                   "--enable-module-command", "yes")
    try:
        return module_args_on(r)
    finally:
        stop_server(proc, folder)


def module_args_on(r):
    module = os.environ.get("QUOTA_MODULE", os.path.join(ROOT, "target", "release", "libquota.so"))
    for bad in (["MAX_PATHS", "1\x002"], ["MAX%s%s%s%s%n", "1"], ["MAX_PATHS", "%s%s%s%s%s%n"]):
        try:
            r.execute_command("MODULE", "LOAD", module, *bad)
            check(False, f"MODULE LOAD with {bad!r} is refused")
        except redis.ResponseError:
            pass
        check(r.ping(), f"the server survives MODULE LOAD with {bad!r}")
    print("MODULE LOAD with a NUL or printf directives: refused, server up")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("check")
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    {"restore-nul": restore_nul, "module-args": module_args}[args.check](args)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
