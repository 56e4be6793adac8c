#!/usr/bin/env python3
"""How close the Lua library's functions come to Lua 5.1's limit of 200 local
variables alive at once in one function (LUAI_MAXVARS): past it, FUNCTION
LOAD refuses the whole library ("function at line N has more than 200 local
variables"), which happened once when two changes met. `make test-lua`
runs this on lua/quota.lua: it prints the largest count, so
whoever adds locals sees the headroom left, and fails at the limit with this
explanation rather than FUNCTION LOAD's.

It reads `luac5.1 -l -l -p` (Debian package lua5.1): for each function, each
local with the instructions where it is alive; the count is the most alive
at one instruction.
"""

import re
import shutil
import subprocess
import sys

LIMIT = 200
MARGIN = 199


def most_alive(listing):
    """[(most locals alive at once, function's lines)] from a luac listing."""
    out, where, ranges, reading = [], None, [], False

    def close():
        if ranges:
            events = sorted([(s, 1) for s, _ in ranges] + [(e, -1) for _, e in ranges], key=lambda x: (x[0], x[1]))
            alive = peak = 0
            for _, step in events:
                alive += step
                peak = max(peak, alive)
            out.append((peak, where))

    for line in listing.splitlines():
        m = re.match(r"^(main|function) <([^>]*)>", line)
        if m:
            close()
            where, ranges, reading = m.group(2), [], False
            continue
        if re.match(r"^locals \(\d+\)", line):
            reading = True
            continue
        if reading:
            m = re.match(r"^\s+\d+\s+.+?\s+(\d+)\s+(\d+)\s*$", line)
            if m:
                ranges.append((int(m.group(1)), int(m.group(2))))
            else:
                reading = False
    close()
    return out


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "lua/quota.lua"
    luac = shutil.which("luac5.1")
    if luac is None:
        print("lua-locals: luac5.1 is missing (apt-get install lua5.1; make deps installs it)")
        return 1
    res = subprocess.run([luac, "-l", "-l", "-p", path], capture_output=True, text=True)
    if res.returncode != 0:
        print(res.stderr.strip())
        return 1
    counts = most_alive(res.stdout)
    if not counts:
        print("lua-locals: read no function from the listing")
        return 1
    peak, where = max(counts)
    print(f"lua-locals: at most {peak} of {LIMIT} locals alive at once, in the function at {where} (fails above {MARGIN})")
    return 0 if peak <= MARGIN else 1


if __name__ == "__main__":
    sys.exit(main())
