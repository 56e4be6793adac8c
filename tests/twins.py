#!/usr/bin/env python3
"""The map between engine rules and their Lua twins stays true both ways.

Every `Lua twin:` doc line in src/engine names Lua functions (in backticks)
that lua/src defines, and every `-- Rust twin:` line in lua/src names Rust
functions (`Type::name` or `name`, each followed by its file in parentheses)
that exist in that file. A rename on one side without the other fails here,
naming the line to fix. (No Redis needed.)"""

import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def main():
    failures = []
    lua_files = sorted(glob.glob(os.path.join(ROOT, "lua", "src", "*.lua")))
    lua = "\n".join(read(os.path.relpath(f, ROOT)) for f in lua_files)
    defined = set()
    for m in re.finditer(r"^\s*(?:local\s+)?function\s+([\w.:]+)\s*\(", lua, re.M):
        defined.add(m.group(1))
    # Tables, constants and functions assigned to names (`local W = {}`,
    # `W.is_leap = is_leap`, `local A, B = 1, 2`).
    for m in re.finditer(r"^\s*(?:local\s+)?([\w.]+(?:\s*,\s*[\w.]+)*)\s*=[^=]", lua, re.M):
        defined.update(name.strip() for name in m.group(1).split(","))
    rust_lines = 0
    for path in sorted(glob.glob(os.path.join(ROOT, "src", "engine", "**", "*.rs"), recursive=True)):
        rel = os.path.relpath(path, ROOT)
        for n, line in enumerate(read(rel).split("\n"), 1):
            m = re.search(r"^\s*//[/!]\s*Lua twin:(.*)", line)
            if not m:
                continue
            rust_lines += 1
            for name in re.findall(r"`([A-Za-z_][\w.:]*)`", m.group(1)):
                if name not in defined and not name.startswith("lua/"):
                    failures.append(f"{rel}:{n}: Lua twin `{name}` is not a function in lua/src")
    lua_lines = 0
    for path in lua_files:
        rel = os.path.relpath(path, ROOT)
        for n, line in enumerate(read(rel).split("\n"), 1):
            m = re.search(r"--\s*Rust twin:\s*(.*)", line)
            if not m:
                continue
            lua_lines += 1
            for item, file in re.findall(r"([A-Za-z_][\w:]*)(?:'s \w+)? \((src/[\w/.]+\.rs)\)", m.group(1)):
                if not os.path.exists(os.path.join(ROOT, file)):
                    failures.append(f"{rel}:{n}: {file} does not exist")
                    continue
                fn = item.split("::")[-1]
                source = read(file)
                if not re.search(r"\b(?:fn|struct|enum|const|static)\s+" + re.escape(fn) + r"\b", source):
                    failures.append(f"{rel}:{n}: {file} has no `{fn}`")
    for f in failures:
        print("FAILED:", f)
    if rust_lines == 0 or lua_lines == 0:
        print("FAILED: no twin lines found (the check ran on nothing)")
        sys.exit(1)
    print(f"twins: {rust_lines} Rust lines and {lua_lines} Lua lines checked, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
