#!/usr/bin/env python3
"""Time zones on both backends against Python's zoneinfo.

The Lua twin (lua/src/22_tz.lua, W.zone_*) and the engine (src/engine/tz.rs,
Zone) are compared with zoneinfo reading the pinned `tzdata` package
(tests/requirements.txt; never the system's zone files) for random
(zone, instant) pairs from 2000 to 2100 and every transition ±1 s of a
sample of zones: the offset, the local date, and the first instant of that
date and of the next. The expected first instant comes from the definition
(the earliest instant whose local date is that day or later), found from
zoneinfo's offsets by scanning the day's neighbourhood and bisecting each
change, not by the twins' method.

Lua: one redis-server on a free port (no module needed) with a test library
of sections 00_header, 10_decimal, 20_window, 21_tzdata and 22_tz.
Rust: the same cases go to a fixture file that the ignored engine test
`tz_fixture` reads (cargo test --release -p quota-engine tz_fixture --
--ignored, QUOTA_TZ_FIXTURE naming the file).

Also: 21_tzdata.lua embeds exactly src/engine/tzdata.txt, and W.zone_parse
takes and refuses what Zone::parse does, with the same texts.

    python3 tests/lua_tz.py [--seed N] [--random N] [--no-rust]
"""

import argparse
import datetime
import importlib.resources
import importlib.util
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import zoneinfo

import redis

from backend import free_port, lua_test_library

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
SECTIONS = ["10_decimal.lua", "20_window.lua", "21_tzdata.lua", "22_tz.lua"]
TXT = os.path.join(ROOT, "src", "engine", "tzdata.txt")
LUA_DATA = os.path.join(ROOT, "lua", "src", "21_tzdata.lua")

DAY_MS = 86_400_000
T0 = 946_684_800  # 2000-01-01T00:00Z, s
T_END = 4_133_980_800  # 2101-01-01T00:00Z, s
UTC = datetime.timezone.utc

# FCALL t_tz 0 op args...
SNIPPET = r"""
local W = nil

local OPS = {}

-- cases zone t...: per t {offset, local day, start of that day, start of the next}
OPS.cases = function(args)
    local z = W.zone_parse(args[2])
    local out = {}
    for i = 3, #args do
        local t = tonumber(args[i])
        local d = W.zone_local_day(z, t)
        out[#out + 1] = W.zone_offset(z, t)
        out[#out + 1] = d
        out[#out + 1] = W.zone_day_start(z, d)
        out[#out + 1] = W.zone_day_start(z, d + 1)
    end
    return out
end

-- parse text: the zone's name, and whether it is UTC (nil)
OPS.parse = function(args)
    local z = W.zone_parse(args[2])
    local again = W.zone_parse(W.zone_name(z))
    assert(again == z, "a zone parses back from its name to the same table")
    return { W.zone_name(z), z == nil and 1 or 0 }
end

-- gap line day...: the start of each day in a zone of one data line (not
-- in the table), as 22_tz would read it
OPS.gap = function(args)
    W.zone_parse("Etc/UTC") -- the table is split
    local lines = W.TZ.lines
    lines[#lines + 1] = args[2]
    local z = { name = "Test/Gap", data = #lines }
    local out = {}
    for i = 3, #args do
        out[#out + 1] = W.zone_day_start(z, tonumber(args[i]))
    end
    lines[#lines] = nil
    W.TZ.data[#lines + 1] = nil
    return out
end

OPS.tzdata = function(args)
    return { W.TZDATA, W.TZDATA_VERSION, W.tzdata_version() }
end

redis.register_function('t_tz', function(keys, args)
    if W == nil then
        W = build()
    end
    failure = nil
    local ok, res = pcall(OPS[args[1]], args)
    if ok then return res end
    local text = failure
    failure = nil
    if type(res) == "table" and res.err then text = res.err end
    if text == nil then
        return redis.error_reply("LUABUG " .. tostring(res))
    end
    return redis.error_reply(text)
end)
"""

FAILURES = []

# src/engine/tests_tz.rs: 23:30 +01:00 jumps to 00:30 +02:00 on 2001-06-01.
SYNTHETIC_GAP = "1o;3c;fzhi,3c"


def check(ok, what):
    if not ok:
        FAILURES.append(what)
        if len(FAILURES) <= 30:
            print("MISMATCH:", what)


def generator():
    """tools/tzdata.py as a module: its reading of the table (decode) lists
    the transitions whose neighbourhoods are tested."""
    spec = importlib.util.spec_from_file_location("tzdata_tool", os.path.join(ROOT, "tools", "tzdata.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ------------------------------------------------------------ the reference

class Reference:
    """Offsets, local dates and day starts from zoneinfo."""

    def __init__(self):
        self.zones = {}
        self.starts = {}

    def zone(self, name):
        z = self.zones.get(name)
        if z is None:
            z = self.zones[name] = zoneinfo.ZoneInfo(name)
        return z

    def offset_s(self, name, t_s):
        """Seconds east of UTC at second t_s; before 2000 the table keeps
        2000-01-01's offset (documented in tz.rs), so the reference does too."""
        if t_s < T0:
            t_s = T0
        return int(datetime.datetime.fromtimestamp(t_s, self.zone(name)).utcoffset().total_seconds())

    def offset_ms(self, name, t_ms):
        return self.offset_s(name, t_ms // 1000) * 1000

    def local_day(self, name, t_ms):
        return (t_ms + self.offset_ms(name, t_ms)) // DAY_MS

    def day_start(self, name, day):
        """The earliest instant (ms) whose local date is `day` or later.
        Offsets lie in [-12 h, +14 h], so it lies in [L - 14 h, L + 12 h]
        (L: local midnight read as UTC). The offset there is read every 20
        minutes, and each change found is bisected to its second; on each
        stretch of constant offset o from a, the first instant with
        t + o >= L is max(a, L - o)."""
        key = (name, day)
        if key in self.starts:
            return self.starts[key]
        L = day * 86_400
        lo, hi = L - 15 * 3600, L + 13 * 3600
        step = 1200
        samples = list(range(lo, hi + step, step))
        offs = [self.offset_s(name, t) for t in samples]
        stretches = [(lo, offs[0])]
        for i in range(1, len(samples)):
            if offs[i] != offs[i - 1]:
                a, b = samples[i - 1], samples[i]  # off(a) = prev, off(b) = new
                while b - a > 1:
                    m = (a + b) // 2
                    if self.offset_s(name, m) == offs[i - 1]:
                        a = m
                    else:
                        b = m
                if self.offset_s(name, b) != offs[i]:
                    raise SystemExit(f"{name}: two changes within {step} s near {b}: the reference needs a finer step")
                stretches.append((b, offs[i]))
        best = None
        for k, (a, o) in enumerate(stretches):
            end = stretches[k + 1][0] if k + 1 < len(stretches) else hi + step
            c = max(a, L - o)
            if c < end and (best is None or c < best):
                best = c
        # The definition, checked: the day (or a later one) at best, not
        # before (at the second before, and at the instant just before).
        assert (best + self.offset_s(name, best)) >= L
        assert (best - 1 + self.offset_s(name, best - 1)) < L
        self.starts[key] = best * 1000
        return best * 1000

    def row(self, name, t_ms):
        d = self.local_day(name, t_ms)
        return [self.offset_ms(name, t_ms), d, self.day_start(name, d), self.day_start(name, d + 1)]


# ------------------------------------------------------------------- cases

def cases(gen, names, rng, n_random, n_sample):
    """[(zone, t_ms)]: random pairs, then every transition of a sample of
    zones (from the table, explicit and the rule's) ±1 s and -1 ms."""
    out = []
    for _ in range(n_random):
        out.append((rng.choice(names), rng.randrange(T0 * 1000, T_END * 1000)))
    version, datas, table_names = gen.decode(open(TXT, encoding="ascii").read())
    by_name = dict(table_names)
    must = ["America/New_York", "Europe/Berlin", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe",
            "Pacific/Chatham", "Pacific/Apia", "America/Sao_Paulo", "America/St_Johns", "Antarctica/Casey",
            "Africa/Casablanca", "Asia/Beirut", "America/Santiago", "Europe/Dublin", "Asia/Gaza",
            "America/Nuuk", "Asia/Jerusalem", "Pacific/Kiritimati", "Etc/GMT+12"]
    sample = must + rng.sample([n for n in names if n not in must], n_sample)
    transitions = 0
    for name in sample:
        o0, rule, kept = datas[by_name[name]]
        start = kept[-1][0] if kept else T0
        points = [t for t, _ in kept] + [t for t, _ in gen.rule_changes(rule, start, T_END)]
        for t in points:
            transitions += 1
            for t_ms in (t * 1000 - 1000, t * 1000 - 1, t * 1000, t * 1000 + 1000):
                out.append((name, t_ms))
    return out, len(sample), transitions


def parse_rows(names, rng):
    """(text, name or None for the error)."""
    rows = [("UTC", "UTC"), ("utc", "UTC"), ("uTc", "UTC"), ("+00:00", "UTC"), ("-00:00", "UTC"),
            ("+05:30", "+05:30"), ("-03:00", "-03:00"), ("+14:00", "+14:00"), ("-14:00", "-14:00"),
            ("+00:01", "+00:01"), ("-13:59", "-13:59"), ("Etc/UTC", "Etc/UTC"), ("etc/utc", "Etc/UTC"),
            ("US/Eastern", "US/Eastern"), ("AFRICA/LAGOS", "Africa/Lagos"), ("GMT", "GMT")]
    for bad in ["+1:00", "+14:30", "+14:01", "+15:00", "+05:60", "+05:3", "05:30", "+0530", "+05:30 ", "+05-30",
                "+\u0665\u0665:30", "", "America/New York", "America/New_York/", "Mars/Olympus_Mons", "UTC ", "Z",
                "x" * 100, "\u00e9t\u00e9", "+05:30\n", "America/New_Yor\u00ea", "=0;0;"]:
        rows.append((bad, None))
    for n in names:
        if n == "UTC":
            continue
        rows.append((n, n))
        rows.append(("".join(c.upper() if rng.random() < 0.5 else c.lower() for c in n), n))
    return rows


def clip(text):
    safe = "".join(c if " " <= c <= "~" else "?" for c in text)
    return safe if len(text) <= 60 else safe[:57] + "..."


# -------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--random", type=int, default=30000, help="random (zone, instant) pairs")
    ap.add_argument("--sample", type=int, default=40, help="zones whose every transition is tested, besides the named ones")
    ap.add_argument("--no-rust", action="store_true", help="skip the engine's comparison")
    args = ap.parse_args()
    zoneinfo.reset_tzpath([])  # the pinned tzdata package, never /usr/share/zoneinfo
    started = time.time()
    rng = random.Random(args.seed)
    gen = generator()

    text = open(TXT, encoding="ascii").read()
    lua_src = open(LUA_DATA, encoding="ascii").read()
    head, sep, rest = lua_src.partition("W.TZDATA = [[\n")
    check(sep and rest.endswith("]]\n") and rest[:-3] == text, "21_tzdata.lua embeds exactly src/engine/tzdata.txt")
    version = text.split("\n", 1)[0]
    check(f'W.TZDATA_VERSION = "{version}"' in head, "21_tzdata.lua's W.TZDATA_VERSION is the table's")
    try:
        import tzdata
    except ImportError:
        raise SystemExit("lua_tz: the tzdata package is missing: python3 -m pip install -r tests/requirements.txt")
    check(tzdata.IANA_VERSION == version, f"the table is {version}, the installed tzdata package {tzdata.IANA_VERSION}"
          " (tests/requirements.txt pins the one it was made from)")
    names = [n for n, _ in gen.decode(text)[2]]
    check(sorted(names) == sorted(importlib.resources.files("tzdata").joinpath("zones").read_text().split()),
          "the table names every zone of the tzdata package")

    ref = Reference()
    all_cases, sampled, transitions = cases(gen, [n for n in names if n != "UTC"], rng, args.random, args.sample)
    by_zone = {}
    for name, t in all_cases:
        by_zone.setdefault(name, []).append(t)
    expected = {}
    for name, ts in by_zone.items():
        for t in ts:
            expected[(name, t)] = ref.row(name, t)
    ref_done = time.time()

    port = free_port()
    workdir = tempfile.mkdtemp(prefix="lua_tz_")
    server = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    lua_rows = 0
    try:
        r = redis.Redis(port=port, decode_responses=True, socket_timeout=60)
        while True:
            try:
                r.ping()
                break
            except redis.ConnectionError:
                if time.time() - started > 20 or server.poll() is not None:
                    raise SystemExit("redis-server did not start")
                time.sleep(0.05)
        r.execute_command("FUNCTION", "LOAD", "REPLACE",
                          lua_test_library("t_tz", SECTIONS, "W", SNIPPET))
        data, v, v2 = r.execute_command("FCALL", "t_tz", 0, "tzdata")
        check(data == text and v == version and v2 == version, "W.TZDATA is the table's text")

        # A gap holding midnight strictly inside (no zone of the table has
        # one): the day begins at the transition (tests_tz.rs, SYNTHETIC_GAP).
        day = (datetime.date(2001, 6, 1) - datetime.date(1970, 1, 1)).days
        got = r.execute_command("FCALL", "t_tz", 0, "gap", SYNTHETIC_GAP, day, day + 1, day + 2)
        want = [int(datetime.datetime(*when, tzinfo=UTC).timestamp()) * 1000
                for when in [(2001, 5, 31, 23), (2001, 6, 1, 22, 30), (2001, 6, 2, 22)]]
        check(got == want, f"a gap around midnight: {got}, want {want}")

        # Parsing, names and errors.
        rows = parse_rows(names, rng)
        pipe = r.pipeline(transaction=False)
        for t, _ in rows:
            pipe.execute_command("FCALL", "t_tz", 0, "parse", t)
        for (t, want), got in zip(rows, pipe.execute(raise_on_error=False)):
            if want is None:
                expect = ("syntax: unknown time zone '" + clip(t)
                          + "': use an IANA name such as Africa/Lagos or an offset such as +01:00")
                check(isinstance(got, redis.ResponseError) and str(got) == expect,
                      f"zone_parse({t!r}) = {got!r}, want the error")
            else:
                check(got == [want, 1 if want == "UTC" else 0], f"zone_parse({t!r}) = {got}, want {want}")

        # The cases, a batch of one zone's instants per call.
        pipe = r.pipeline(transaction=False)
        batches = []
        for name, ts in by_zone.items():
            for i in range(0, len(ts), 400):
                batches.append((name, ts[i:i + 400]))
                pipe.execute_command("FCALL", "t_tz", 0, "cases", name, *ts[i:i + 400])
        for (name, ts), got in zip(batches, pipe.execute(raise_on_error=False)):
            if isinstance(got, Exception):
                check(False, f"{name}: {got}")
                continue
            for k, t in enumerate(ts):
                lua_rows += 1
                want = expected[(name, t)]
                check(got[4 * k:4 * k + 4] == want, f"Lua {name} at {t}: {got[4 * k:4 * k + 4]}, zoneinfo {want}")
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    lua_done = time.time()

    rust_rows = 0
    if not args.no_rust:
        os.makedirs(os.path.join(ROOT, "target"), exist_ok=True)
        path = os.path.join(ROOT, "target", "tz_fixture.txt")
        with open(path, "w", encoding="ascii") as f:
            for (name, t), row in expected.items():
                f.write(" ".join([name, str(t)] + [str(x) for x in row]) + "\n")
        run = subprocess.run(["cargo", "test", "--release", "--locked", "-q", "-p", "quota-engine", "tz_fixture", "--",
                              "--ignored", "--nocapture"], cwd=ROOT, env=dict(os.environ, QUOTA_TZ_FIXTURE=path),
                             capture_output=True, text=True)
        out = run.stdout + run.stderr
        check(run.returncode == 0 and f"tz_fixture: {len(expected)} rows, 0 mismatches" in out,
              "Rust's tz_fixture:\n" + out[-3000:])
        rust_rows = len(expected) if run.returncode == 0 else 0

    print(f"lua_tz: {len(all_cases)} cases ({args.random} random, every transition of {sampled} zones: "
          f"{transitions}, ±1 s), {len(ref.starts)} day starts from zoneinfo; Lua {lua_rows} rows, "
          f"Rust {rust_rows} rows; {len(rows)} zone texts parsed; {len(FAILURES)} mismatches "
          f"(reference {ref_done - started:.1f}s, Lua {lua_done - ref_done:.1f}s, "
          f"Rust {time.time() - lua_done:.1f}s)")
    if not lua_rows:
        print("lua_tz: FAILED: nothing was compared")
        sys.exit(1)
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
