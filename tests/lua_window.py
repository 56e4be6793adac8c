#!/usr/bin/env python3
"""Differential test of the Lua port's windows (lua/src/20_window.lua)
against the module (src/engine/window.rs, src/commands/policy.rs).

Starts one redis-server on a free port with the module (TEST_CLOCK yes),
loads a test library (00_header + 20_window + the snippet below) with
FUNCTION LOAD REPLACE, and compares, for many windows and times, the
module's QUOTA.GET fields (window, anchor, period_start, period_end) and
QUOTA.SET error texts with the Lua functions' results. Also checks the pure
functions (civil dates, durations, clip) against tables and Python's
datetime. Windows in a zone (TZ, issue 21) and week/year anchors: fixed
offsets always; named zones when both backends have the zone table
(lua/src/22_tz.lua), then also against Python's zoneinfo with the pinned
tzdata package (tests/requirements.txt), computed here from the definition
(docs: the brief's "Calendar periods in a zone") over random instants in
2000-2100. Exits non-zero on any mismatch.

    python3 tests/lua_window.py [--seed N] [--keep-going]
"""

import argparse
import datetime
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import redis

from backend import free_port, lua_test_library

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE = os.environ.get("QUOTA_MODULE", os.path.join(ROOT, "target", "release", "libquota.so"))
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
# The zone table and its functions, once they are part of the library.
SECTIONS = ["10_decimal.lua", "20_window.lua"] + [
    s for s in ["21_tzdata.lua", "22_tz.lua"] if os.path.exists(os.path.join(ROOT, "lua", "src", s))]

# The test entry point: FCALL t_win 0 op args...
SNIPPET = r"""
local W = nil

local function opt(s)
    if s == nil or s == "" then return nil end
    return s
end

local function window_of(args, first)
    return W.parse(args[first], opt(args[first + 1]), opt(args[first + 2]), opt(args[first + 3]))
end

local function shown(w)
    return W.anchor_shown(w) or -1, W.tz_name(w) or "UTC", W.tz_named(w) and W.tzdata_version() or ""
end

local OPS = {}

-- period name anchor duration tz t...: {label, anchor, tz, tzdata, encoding,
-- bucket}, then per t {index, start, end, span_start, span_end, start's label}
OPS.period = function(args)
    local w = window_of(args, 2)
    local back = W.decode(W.encode(w))
    assert(back and W.encode(back) == W.encode(w) and W.label(back) == W.label(w), "encode round trip")
    for _, t in ipairs({ 0, 86400000 * 12345 + 1, 4102444800000 }) do
        local s1, e1 = W.period_of(w, t)
        local s2, e2 = W.period_of(back, t)
        assert(s1 == s2 and e1 == e2, "decoded window, same periods")
    end
    local a, z, v = shown(w)
    assert(W.anchor_shown(back) == W.anchor_shown(w) and W.tz_name(back) == W.tz_name(w), "decoded anchor and zone")
    local out = { W.label(w), a, z, v, W.encode(w), W.bucket_ms(w) or -1 }
    for i = 6, #args do
        local t = tonumber(args[i])
        local s, e = W.period_of(w, t)
        local a, b = -1, -1
        if W.is_rolling(w) then
            a, b = W.rolling_span(w, t)
        end
        out[#out + 1] = W.index_of(w, t)
        out[#out + 1] = s
        out[#out + 1] = e
        out[#out + 1] = a
        out[#out + 1] = b
        out[#out + 1] = W.period_label(w, s, e) or ""
    end
    return out
end

-- expired duration b now b now ...: per pair 1 when usage in bucket b has dropped out at now
OPS.expired = function(args)
    local w = W.parse("rolling", nil, args[2], nil)
    local out = {}
    for i = 3, #args, 2 do
        out[#out + 1] = W.expired_bucket(w, tonumber(args[i]), tonumber(args[i + 1])) and 1 or 0
    end
    return out
end

-- set arg...: the WINDOW/ANCHOR/TZ part of QUOTA.SET's keyword loop
OPS.set = function(args)
    local name, anchor, duration, tz
    local seen = {}
    local i = 2
    while i <= #args do
        local word = string.upper(args[i])
        i = i + 1
        if word ~= "WINDOW" and word ~= "ANCHOR" and word ~= "TZ" then
            fail("ERR syntax: unknown argument '" .. W.clip(args[i - 1]) .. "' in QUOTA.SET")
        end
        if seen[word] then
            fail("ERR syntax: " .. word .. " given twice in QUOTA.SET")
        end
        seen[word] = true
        if word == "WINDOW" then
            name, duration, i = W.read_window(args, i, "QUOTA.SET")
        elseif word == "TZ" then
            tz = args[i]
            if tz == nil then
                fail("ERR wrong number of arguments for 'quota.set' command: missing a zone after TZ")
            end
            i = i + 1
        else
            anchor, i = W.read_anchor(args, i, "QUOTA.SET")
        end
    end
    local w = W.from_set(name, anchor, duration, tz)
    local a, z = shown(w)
    return { W.label(w), a, z, W.encode(w) }
end

-- zone name: the zone's name as shown, or "UTC"
OPS.zone = function(args)
    local zone = W.zone_parse(args[2])
    return zone and W.zone_name(zone) or "UTC"
end

OPS.civil = function(args)
    local out = {}
    for i = 2, #args do
        local y, m, d = W.civil_from_days(tonumber(args[i]))
        out[#out + 1] = y
        out[#out + 1] = m
        out[#out + 1] = d
        out[#out + 1] = W.days_from_civil(y, m, d)
    end
    return out
end

OPS.dfc = function(args)
    return W.days_from_civil(tonumber(args[2]), tonumber(args[3]), tonumber(args[4]))
end

OPS.dur = function(args)
    local ms = W.parse_duration(args[2])
    return { ms, W.format_duration(ms) }
end

OPS.fmt = function(args)
    return W.format_duration(tonumber(args[2]))
end

OPS.clip = function(args)
    return W.clip(args[2])
end

OPS.decode = function(args)
    local w = W.decode(args[2])
    if w == nil then return "nil" end
    return W.encode(w) .. " " .. W.label(w)
end

-- As 90_register's guarded(): fail()'s text (Redis's pcall hands back a
-- message, not the raised table), made printable ASCII.
redis.register_function('t_win', function(keys, args)
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
    text = string.gsub(string.gsub(text, "[\192-\255][\128-\191]*", "?"), "[^ -~]", "?")
    return redis.error_reply(text)
end)
"""

DAY = 86_400_000
HOUR = 3_600_000
FAILURES = []


def check(ok, what):
    if not ok:
        FAILURES.append(what)
        print("MISMATCH:", what)


def at(y, m, d, h=0):
    return (datetime.date(y, m, d) - datetime.date(1970, 1, 1)).days * DAY + h * HOUR


def build_module():
    if os.path.exists(MODULE):
        return
    print("building the module (cargo build --release) ...")
    subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)


def library():
    return lua_test_library("t_window", SECTIONS, "W", SNIPPET)


def call(r, *args):
    try:
        return r.execute_command("FCALL", "t_win", 0, *args)
    except redis.ResponseError as e:
        return ("error", str(e))


class Raw:
    """A bare RESP2 connection: error replies byte for byte (redis-py
    decodes them lossily and strips their prefix)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            self.buf += self.sock.recv(65536)
        head, self.buf = self.buf.split(b"\r\n", 1)
        return head

    def reply(self):
        head = self.line()
        kind, rest = head[:1], head[1:]
        if kind == b"-":
            return ("error", rest)
        if kind == b"+":
            return rest
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self.buf += self.sock.recv(65536)
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if kind == b"*":
            return [self.reply() for _ in range(int(rest))]
        raise ValueError(head)

    def __call__(self, *args):
        parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        out = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        self.sock.sendall(out)
        return self.reply()


def module_set(r, raw, tail):
    got = raw("QUOTA.SET", "kerr", "/", "p", "METRIC", "credits", "LIMIT", "1", *tail)
    if isinstance(got, tuple):
        return got
    g = r.execute_command("QUOTA.GET", "kerr", "/")
    p = g["policies"][0]
    r.delete("kerr")
    anchor = p.get("anchor", -1)
    return [p["window"].encode(), anchor.encode() if isinstance(anchor, str) else anchor, p.get("tz", "UTC").encode()]


# ---------------------------------------------------------------- pure tables

def wire(text):
    """The bytes of an error reply: printable ASCII, any other character as ?
    (names::clip and commands::ascii_safe)."""
    return bytes(ord(c) if " " <= c <= "~" else ord("?") for c in text)


def test_pure(r, raw):
    # civil dates against Python's proleptic Gregorian calendar (years 1..9999)
    lo = datetime.date(1, 1, 1).toordinal() - datetime.date(1970, 1, 1).toordinal()
    hi = datetime.date(9999, 12, 31).toordinal() - datetime.date(1970, 1, 1).toordinal()
    rng = random.Random(7)
    days = [lo, lo + 1, hi, hi - 1, -1, 0, 1, 59, 365, 10_957, 19_000, 20_000, 100_000]
    days += list(range(-800, 800))
    for y in (1600, 1700, 1900, 2000, 2024, 2100, 2400):
        base = datetime.date(y, 2, 27).toordinal() - 719_163
        days += list(range(base - 3, base + 6))
    days += [rng.randint(lo, hi) for _ in range(3000)]
    out = []
    for i in range(0, len(days), 500):
        out += call(r, "civil", *days[i:i + 500])
    for k, n in enumerate(days):
        y, m, d, back = out[4 * k:4 * k + 4]
        want = datetime.date.fromordinal(n + 719_163)
        check((y, m, d) == (want.year, want.month, want.day), f"civil_from_days({n}) = {(y, m, d)}, want {want}")
        check(back == n, f"days_from_civil(civil_from_days({n})) = {back}")
    # beyond datetime's range: round trips only
    for n in [-3_000_000, -719_468, -719_469, -146_097 * 5 - 1, 5_000_000, 100_000_000, -100_000_000]:
        y, m, d, back = call(r, "civil", n)
        check(back == n and 1 <= m <= 12 and 1 <= d <= 31, f"civil round trip {n}: {(y, m, d, back)}")
    check(call(r, "dfc", 1970, 1, 1) == 0, "epoch")
    check(call(r, "dfc", 2000, 3, 1) - call(r, "dfc", 2000, 2, 28) == 2, "2000 is a leap year")
    check(call(r, "dfc", 2100, 3, 1) - call(r, "dfc", 2100, 2, 28) == 1, "2100 is not")
    check(call(r, "dfc", 0, 3, 1) - call(r, "dfc", 0, 2, 28) == 2, "year 0 is a leap year")
    check(call(r, "dfc", -1, 1, 1) == -719_893, "year -1")

    # durations: text -> (ms, label) or None for an error
    rows = {
        "90s": (90_000, "90s"), "15m": (900_000, "15m"), "24h": (DAY, "1d"), "30d": (30 * DAY, "30d"),
        "60s": (60_000, "1m"), "1m": (60_000, "1m"), "400d": (400 * DAY, "400d"), "9600h": (400 * DAY, "400d"),
        "576000m": (400 * DAY, "400d"), "34560000s": (400 * DAY, "400d"), "000000060s": (60_000, "1m"),
        "61s": (61_000, "61s"), "25h": (25 * HOUR, "25h"), "1441m": (1441 * 60_000, "1441m"),
        "59s": None, "401d": None, "9601h": None, "34560001s": None, "0000000060s": None, "999999999d": None,
        "10": None, "1.5h": None, "h": None, "-5m": None, "+5m": None, "5é": None, "é": None, "": None,
        "30D": None, "5 m": None, " 5m": None, "5ms": None, "0d": None, "1w": None, "5m\x00": None,
    }
    for text, want in rows.items():
        got = call(r, "dur", text)
        if want is None:
            got = raw("FCALL", "t_win", 0, "dur", text.encode())
            expect = wire("ERR syntax: invalid duration '" + text.replace("\x00", "?")
                          + "': use a whole number with s, m, h or d, from 60s to 400d")
            check(got == ("error", expect), f"duration {text!r}: {got}, want {expect}")
        else:
            check(got == [want[0], want[1]], f"duration {text!r}: {got}, want {want}")
    for ms, label in [(90_000, "90s"), (1500, "1500ms"), (0, "0d"), (7 * DAY, "7d"), (HOUR * 36, "36h"),
                      (61_000, "61s"), (120_000, "2m"), (1, "1ms")]:
        check(call(r, "fmt", ms) == label, f"format_duration({ms})")

    # clip (names::clip)
    for text, want in [("abc", "abc"), ("a\x01b\x7f", "a?b?"), ("x\u0085y\u00a0", "x?y?"),
                       ("é" * 60, "?" * 60), ("é" * 61, "?" * 57 + "..."), ("\x01" * 61, "?" * 57 + "..."),
                       ("a" * 60, "a" * 60), ("a" * 100, "a" * 57 + "..."), ("a b~", "a b~"),
                       ("\U0001F600x", "?x"), ("\u0100", "?")]:
        check(call(r, "clip", text) == want, f"clip({text!r}) = {call(r, 'clip', text)!r}")

    # decode refuses what encode never makes
    for s, want in [("n", "n none"), ("h", "h hour"), ("m31", "m31 month"), ("r90000", "r90000 rolling 90s"),
                    ("m0", "nil"), ("m32", "nil"), ("m01", "nil"), ("r", "nil"), ("x", "nil"), ("", "nil"),
                    ("r1e5", "nil"), ("hh", "nil"),
                    # old encodings decode as before; anchors and zones
                    ("w", "w week"), ("y", "y year"), ("d", "d day"), ("m1", "m1 month"),
                    ("w7", "w7 week"), ("w2", "w2 week"), ("w1", "nil"), ("w8", "nil"), ("w0", "nil"), ("w07", "nil"),
                    ("y0401", "y0401 year"), ("y0229", "y0229 year"), ("y1231", "y1231 year"), ("y0101", "nil"),
                    ("y0230", "nil"), ("y0431", "nil"), ("y1301", "nil"), ("y0001", "nil"), ("y401", "nil"),
                    ("y00401", "nil"), ("m31@+05:30", "m31@+05:30 month"), ("d@+05:30", "d@+05:30 day"),
                    ("w7@-14:00", "w7@-14:00 week"), ("y0401@+01:00", "y0401@+01:00 year"), ("y@-00:30", "y@-00:30 year"),
                    ("h@+05:30", "nil"), ("n@+05:30", "nil"), ("r90000@+05:30", "nil"), ("d@", "nil"),
                    ("d@UTC", "nil"), ("d@+00:00", "nil"), ("d@+5:30", "nil"), ("d@+15:00", "nil"),
                    ("d@Mars/Olympus_Mons", "nil"), ("d@+05:30@+05:30", "nil"), ("@+05:30", "nil")]:
        check(call(r, "decode", s) == want, f"decode({s!r}) = {call(r, 'decode', s)}")


# ------------------------------------------------- the rolling-window reference
# A bucket is duration // 60 ms (at least 1). Usage in bucket b drops out
# once the whole bucket is older than the duration: (b + 1) * bucket +
# duration <= now. A window shows the span of the buckets that count.

def ref_bucket(duration_ms):
    return max(duration_ms // 60, 1)


def ref_expired(duration_ms, b, now):
    return (b + 1) * ref_bucket(duration_ms) + duration_ms <= now


def ref_span(duration_ms, now):
    bucket = ref_bucket(duration_ms)
    return max(now - duration_ms, 0) // bucket * bucket, (now // bucket + 1) * bucket


def test_rolling(r, rng):
    """W.expired_bucket against the reference, and the reference against
    the rule itself: usage charged at t counts at every time up to t +
    duration and has dropped out by t + duration + one bucket."""
    cases = 0
    durations = [f"{s}s" for s in range(60, 181)] + ["59m", "61m", "7h", "25h", "13d", "400d"]
    for text in durations:
        ms = call(r, "dur", text)[0]
        bucket = ref_bucket(ms)
        pairs = []
        for t in [0, 1, bucket - 1, bucket, 7 * bucket + bucket // 2] + [rng.randint(0, 2 ** 42) for _ in range(4)]:
            b = t // bucket
            for now in [t, t + ms // 2, t + ms - 1, t + ms, t + ms + 1, t + ms + bucket - 1, t + ms + bucket]:
                want = ref_expired(ms, b, now)
                check(want == (now >= (b + 1) * bucket + ms), f"reference rule {text} {b} {now}")
                if now <= t + ms:
                    check(not want, f"rolling {text}: usage charged at {t} drops out early at {now}")
                if now >= t + ms + bucket:
                    check(want, f"rolling {text}: usage charged at {t} still counts at {now}")
                pairs.append((b, now, want))
        got = call(r, "expired", text, *[x for b, now, _ in pairs for x in (b, now)])
        for (b, now, want), g in zip(pairs, got):
            cases += 1
            check(g == int(want), f"rolling {text}: Lua expired_bucket({b}, {now}) = {g}, reference {int(want)}")
    return cases


# ------------------------------------------------------- periods vs the module

FIXED_ZONES = ["+05:30", "-05:00", "+14:00", "-14:00", "+00:45", "-09:30", "+12:45", "+01:00", "-00:01", "+13:59"]
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def windows(rng):
    """(name, anchor text, duration, zone text) of the windows compared."""
    out = [("hour", None, None, None), ("day", None, None, None), ("week", None, None, None),
           ("month", None, None, None), ("year", None, None, None), ("none", None, None, None),
           ("MONTH", None, None, None), ("Week", None, None, None)]
    out += [("month", str(d), None, None) for d in range(1, 32)]
    out += [("rolling", None, d, None) for d in ["60s", "1m", "61s", "90s", "119s", "15m", "59m", "1h", "7h", "24h",
                                                 "7d", "30d", "31d", "400d", "9600h", "0090s", "3599s", "86399s"]]
    # week and year anchors, UTC and fixed offsets
    out += [("week", day, None, None) for day in WEEKDAYS + ["SUN", "Wed"]]
    out += [("year", a, None, None) for a in ["01-01", "04-01", "02-29", "02-28", "03-01", "12-31", "07-15"]]
    for tz in FIXED_ZONES + ["UTC", "+00:00"]:
        out += [("day", None, None, tz), ("week", rng.choice(WEEKDAYS), None, tz),
                ("month", str(rng.randint(1, 31)), None, tz), ("month", str(rng.randint(28, 31)), None, tz),
                ("year", rng.choice(["01-01", "04-01", "02-29", "10-31"]), None, tz)]
    return out


def times(rng):
    ts = {0, 1, 999, DAY - 1, DAY, 3 * DAY, 4 * DAY - 1, 4 * DAY, 5 * DAY, 7 * DAY, 11 * DAY,
          31 * DAY - 1, 31 * DAY, 365 * DAY, 2 ** 40, 2 ** 44, 2 ** 48 + 12345, 2 ** 52 - 1, 2 ** 52 + 3,
          at(9999, 12, 31, 23) + HOUR - 1}
    for y in (1970, 1971, 1999, 2000, 2023, 2024, 2025, 2026, 2027, 2028, 2099, 2100, 2101, 2400):
        for m in range(1, 13):
            for d in {1, 27, 28, 29, 30, 31}:
                if d <= [31, 29 if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 28, 31, 30, 31, 30, 31,
                         31, 30, 31, 30, 31][m - 1]:
                    ts.add(at(y, m, d) + rng.choice([0, 0, -1, 1, HOUR * 23, DAY - 1]))
        ts.add(at(y, 1, 1) - 1)
        ts.add(at(y, 12, 31, 23) + HOUR - 1)
    # Monday boundaries
    for k in range(20):
        monday = at(2026, 11, 16) + rng.randint(-3000, 3000) * 7 * DAY
        ts.update({monday - 1, monday, monday + 1})
    ts.update(rng.randint(0, at(2200, 1, 1)) for _ in range(150))
    ts.update(rng.randint(0, 2 ** 53 - 1) for _ in range(20))
    return sorted(t for t in ts if t >= 0)


def lua_period(r, name, anchor, duration, tz, ts):
    """The Lua window's header and, per time, (index, start, end,
    span_start, span_end, label), or an error tuple."""
    out = call(r, "period", name, anchor or "", duration or "", tz or "", *ts)
    if isinstance(out, tuple):
        return out, []
    return out[:6], [tuple(out[6 + 6 * k:12 + 6 * k]) for k in range(len(ts))]


def module_periods(r, tail, ts, prefix):
    """QUOTA.GET's policy after QUOTA.SET ... tail at each time."""
    pipe = r.pipeline(transaction=False)
    for k, t in enumerate(ts):
        key = f"{prefix}:{k}"
        pipe.execute_command("QUOTA.DEBUG", "CLOCK", "SET", str(t))
        pipe.execute_command("QUOTA.SET", key, "/", "p", "METRIC", "credits", "LIMIT", "1", *tail)
        pipe.execute_command("QUOTA.GET", key, "/")
        pipe.delete(key)
    replies = pipe.execute(raise_on_error=False)
    out = []
    for k in range(len(ts)):
        got = replies[4 * k + 2]
        out.append(got if isinstance(got, Exception) else got["policies"][0])
    return out


def compare_header(what, p, head):
    label, lanchor, ltz, ltzdata = head[:4]
    check(p["window"] == label, f"{what}: label {label!r}, module {p['window']!r}")
    check(p.get("anchor", -1) == lanchor, f"{what}: anchor {lanchor!r}, module {p.get('anchor')!r}")
    check(p.get("tz", "UTC") == ltz, f"{what}: tz {ltz!r}, module {p.get('tz')!r}")
    check(p.get("tzdata", "") == ltzdata, f"{what}: tzdata {ltzdata!r}, module {p.get('tzdata')!r}")
    keys = list(p)
    if "tz" in p:
        check(keys[keys.index("tz") - 1] in ("anchor", "warn"), f"{what}: tz follows anchor (or warn): {keys}")
    if "tzdata" in p:
        check(keys[keys.index("tzdata") - 1] == "tz", f"{what}: tzdata follows tz: {keys}")


def test_periods(r, rng):
    all_times = times(rng)
    cases = 0
    for n, (name, anchor, duration, tz) in enumerate(windows(rng)):
        ts = all_times if name != "rolling" and tz is None and anchor is None else all_times[::3]
        tail = (["WINDOW", name] + ([duration] if duration else []) + (["ANCHOR", anchor] if anchor else [])
                + (["TZ", tz] if tz else []))
        head, lua = lua_period(r, name, anchor, duration, tz, ts)
        if isinstance(head, tuple):
            check(False, f"{tail}: Lua error {head}")
            continue
        code, bucket = head[4], head[5]
        for k, (t, p) in enumerate(zip(ts, module_periods(r, tail, ts, f"w{n}"))):
            index, start, end, span_start, span_end, _ = lua[k]
            if isinstance(p, Exception):
                check(False, f"{tail} at {t}: module error {p}")
                continue
            cases += 1
            what = f"{tail} at t={t}"
            compare_header(what, p, head)
            if name == "none":
                check("period_start" not in p, f"{what}: module shows a period for none")
            elif name == "rolling":
                check((p["period_start"], p["period_end"]) == (span_start, span_end),
                      f"{what}: rolling span {(span_start, span_end)}, module {(p['period_start'], p['period_end'])}")
                ms = int(code[1:])
                check(bucket == ref_bucket(ms), f"{what}: bucket {bucket}, reference {ref_bucket(ms)}")
                check((span_start, span_end) == ref_span(ms, t),
                      f"{what}: rolling span {(span_start, span_end)}, reference {ref_span(ms, t)}")
            else:
                check((p["period_start"], p["period_end"]) == (start, end),
                      f"{what}: period {(start, end)}, module {(p['period_start'], p['period_end'])}")
                check(start <= t < end or (start == 0 and t < end), f"{what}: {t} outside [{start}, {end})")
        if tz is not None or anchor is not None:
            # the reference (fixed offsets: exact without zoneinfo)
            unit, a = ref_window(name, anchor)
            zone = RefZone(tz or "UTC")
            for k, t in enumerate(ts):
                if t > at(2400, 1, 1):
                    continue
                want = ref_period(zone, unit, a, t)
                got = lua[k][1:3]
                check(tuple(got) == want, f"{tail} at t={t}: Lua {got}, reference {want}")
                check(lua[k][5] == ref_label(zone, unit, a, want[0]),
                      f"{tail} at t={t}: label {lua[k][5]!r}, reference {ref_label(zone, unit, a, want[0])!r}")
    return cases


def test_lua_only(r):
    """Properties the module cannot show directly: index arithmetic, and the
    period of a start and of end - 1."""
    def period(name, anchor, ts, tz=None):
        _, out = lua_period(r, name, str(anchor or ""), None, tz, ts)
        return [x[:3] for x in out]

    (i0, _, _), (i1, _, _) = period("month", 31, [at(2026, 1, 31), at(2030, 1, 31)])
    check(i1 - i0 == 48, "48 months from 2026-01-31 to 2030-01-31")
    (i0, _, _), (i1, _, _) = period("hour", None, [at(2026, 1, 1), at(2027, 1, 1)])
    check(i1 - i0 == 365 * 24, "hours in 2026")
    rows = [
        ("hour", None, at(2026, 3, 1, 5) + 1234, at(2026, 3, 1, 5), at(2026, 3, 1, 6)),
        ("day", None, at(2026, 12, 31, 23), at(2026, 12, 31), at(2027, 1, 1)),
        ("week", None, at(2026, 11, 19, 12), at(2026, 11, 16), at(2026, 11, 23)),
        ("week", None, at(2026, 11, 16), at(2026, 11, 16), at(2026, 11, 23)),
        ("week", None, at(2026, 11, 15, 23), at(2026, 11, 9), at(2026, 11, 16)),
        ("month", None, at(2026, 1, 31, 23), at(2026, 1, 1), at(2026, 2, 1)),
        ("year", None, at(2028, 2, 29), at(2028, 1, 1), at(2029, 1, 1)),
        ("month", 15, at(2026, 3, 14, 23), at(2026, 2, 15), at(2026, 3, 15)),
        ("month", 15, at(2026, 3, 15), at(2026, 3, 15), at(2026, 4, 15)),
        ("month", 31, at(2026, 2, 10), at(2026, 1, 31), at(2026, 2, 28)),
        ("month", 31, at(2026, 2, 28), at(2026, 2, 28), at(2026, 3, 31)),
        ("month", 31, at(2028, 2, 28), at(2028, 1, 31), at(2028, 2, 29)),
        ("month", 31, at(2028, 3, 30), at(2028, 2, 29), at(2028, 3, 31)),
        ("month", 31, at(2026, 4, 30, 1), at(2026, 4, 30), at(2026, 5, 31)),
        ("month", 30, at(2026, 3, 1), at(2026, 2, 28), at(2026, 3, 30)),
        ("month", 29, at(2026, 2, 28, 12), at(2026, 2, 28), at(2026, 3, 29)),
        ("month", 28, at(2026, 2, 27), at(2026, 1, 28), at(2026, 2, 28)),
        ("month", 31, at(2026, 12, 31), at(2026, 12, 31), at(2027, 1, 31)),
        ("week", None, 0, 0, 4 * DAY),
        ("week", "sunday", at(2026, 11, 19, 12), at(2026, 11, 15), at(2026, 11, 22)),
        ("year", "04-01", at(2026, 3, 31, 23), at(2025, 4, 1), at(2026, 4, 1)),
        ("year", "02-29", at(2027, 3, 1), at(2027, 2, 28), at(2028, 2, 29)),
    ]
    for name, anchor, t, start, end in rows:
        got = period(name, anchor, [t, start, end - 1])
        for (_, s, e), tt in zip(got, [t, start, end - 1]):
            check((s, e) == (start, end), f"{name} {anchor} at {tt}: {(s, e)}, want {(start, end)}")
    # +05:30: a day begins at 18:30 UTC the day before
    got = period("day", None, [at(2026, 3, 1, 20)], "+05:30")
    check(got[0][1:] == (at(2026, 3, 1, 18) + 30 * 60_000, at(2026, 3, 2, 18) + 30 * 60_000), f"+05:30 day: {got}")


# --------------------------------------------- the zone reference (zoneinfo)
# Periods in a zone, computed here from the definition with Python's
# zoneinfo and the pinned tzdata package (never the system's zone files):
# local_day(t) = floor((t + offset(t)) / day); a date's first instant is the
# least candidate c with c + offset(c) >= date * day, among date * day - o
# for each offset o in effect within two days of it and each transition
# there; the offset before 2000-01-01T00:00Z is the one in effect then.

EPOCH_2000 = 946_684_800_000


class RefZone:
    def __init__(self, name):
        self.name = name
        self.trans = []  # (t_ms, offset_ms after), sorted
        if name.upper() == "UTC" or name[0] in "+-":
            if name.upper() == "UTC":
                self.base = 0
            else:
                sign = -1 if name[0] == "-" else 1
                self.base = sign * (int(name[1:3]) * 60 + int(name[4:6])) * 60_000
            return
        import bisect
        import zoneinfo
        zoneinfo.reset_tzpath([])
        zi = zoneinfo.ZoneInfo(name)

        def off(t_ms):
            dt = datetime.datetime.fromtimestamp(t_ms // 1000, datetime.timezone.utc).astimezone(zi)
            return int(dt.utcoffset().total_seconds()) * 1000
        self.base = off(EPOCH_2000)
        step = 3 * 3600_000
        t, o = EPOCH_2000, self.base
        end = at(2102, 1, 1)
        while t < end:
            n = t + step
            on = off(n)
            if on != o:
                lo, hi = t // 1000, n // 1000  # transitions are whole seconds
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if off(mid * 1000) == o:
                        lo = mid
                    else:
                        hi = mid
                self.trans.append((hi * 1000, off(hi * 1000)))
                if off(n) != self.trans[-1][1]:  # a second change within the step
                    t = hi * 1000
                    o = self.trans[-1][1]
                    continue
            t, o = n, on
        self.times = [x[0] for x in self.trans]
        self.bisect = bisect.bisect_right

    def offset(self, t):
        if not self.trans:
            return self.base
        i = self.bisect(self.times, t)
        return self.base if i == 0 else self.trans[i - 1][1]

    def local_day(self, t):
        return (t + self.offset(t)) // DAY

    def day_start(self, d):
        L = d * DAY
        offsets = {self.offset(L - 2 * DAY)}
        cands = []
        if self.trans:
            i = self.bisect(self.times, L - 2 * DAY)
            while i < len(self.trans) and self.times[i] <= L + 2 * DAY:
                offsets.add(self.trans[i][1])
                cands.append(self.times[i])
                i += 1
        cands += [L - o for o in offsets]
        return min(c for c in cands if c + self.offset(c) >= L)


def ref_window(name, anchor):
    unit = name.lower()
    if anchor is None:
        return unit, 101 if unit == "year" else 1
    if unit == "week":
        return unit, [w[:3] for w in WEEKDAYS].index(anchor.lower()[:3]) + 1
    if unit == "year":
        return unit, int(anchor[:2]) * 100 + int(anchor[3:])
    return unit, int(anchor)


def ref_days_in_month(y, m):
    return [31, 29 if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 28, 31, 30, 31, 30, 31, 31, 30, 31,
            30, 31][m - 1]


def ref_days(y, m, d):
    return datetime.date(y, m, d).toordinal() - 719_163


def ref_first_day(unit, a, i):
    if unit == "day":
        return i
    if unit == "week":
        return i * 7 - 3 + (a - 1)
    if unit == "month":
        y, m = divmod(i, 12)
        return ref_days(y, m + 1, min(a, ref_days_in_month(y, m + 1)))
    m, d = divmod(a, 100)
    return ref_days(i, m, min(d, ref_days_in_month(i, m)))


def ref_start(zone, unit, a, i):
    return max(zone.day_start(ref_first_day(unit, a, i)), 0)


def ref_period(zone, unit, a, t):
    d = zone.local_day(t)
    date = datetime.date.fromordinal(d + 719_163)
    i = {"day": d, "week": (d + 3 - (a - 1)) // 7, "month": date.year * 12 + date.month - 1,
         "year": date.year}[unit]
    if ref_first_day(unit, a, i) > d:
        i -= 1
    if ref_start(zone, unit, a, i + 1) <= t:
        i += 1
    return ref_start(zone, unit, a, i), ref_start(zone, unit, a, i + 1)


def ref_label(zone, unit, a, start):
    date = datetime.date.fromordinal(zone.local_day(start) + 719_163)
    if unit == "year" and a == 101:
        return f"{date.year:04d}"
    if unit == "month" and a == 1:
        return f"{date.year:04d}-{date.month:02d}"
    return date.isoformat()


NAMED_ZONES = ["America/New_York", "US/Eastern", "Europe/Berlin", "Europe/London", "Europe/Dublin", "Asia/Kolkata",
               "Asia/Kathmandu", "Australia/Lord_Howe", "Pacific/Chatham", "Pacific/Apia", "America/Sao_Paulo",
               "America/Santiago", "Asia/Beirut", "Africa/Casablanca", "Africa/Lagos", "Asia/Tokyo",
               "Pacific/Kiritimati", "Pacific/Pago_Pago", "America/St_Johns", "Asia/Tehran", "America/Havana",
               "Antarctica/Troll", "Pacific/Norfolk", "America/Nuuk", "Asia/Gaza", "Etc/UTC", "Etc/GMT+12",
               "America/Caracas", "Europe/Moscow", "Pacific/Fakaofo", "America/Scoresbysund", "Australia/Adelaide",
               "Asia/Pyongyang", "America/Asuncion", "Pacific/Easter", "Europe/Kyiv"]


def named_zones_available(r):
    """Whether both backends know named zones (the zone table has landed)."""
    try:
        r.execute_command("QUOTA.SET", "probe", "/", "p", "METRIC", "credits", "LIMIT", "1", "WINDOW", "day",
                          "TZ", "America/New_York")
        r.delete("probe")
        module = True
    except redis.ResponseError:
        module = False
    lua = call(r, "zone", "America/New_York") == "America/New_York"
    check(module == lua, f"named zones: module {module}, Lua {lua}")
    return module and lua


def test_named_zones(r, rng, instants):
    """Module, Lua and the zoneinfo reference over random instants in
    2000-2100 and near each zone's transitions and midnights."""
    import zoneinfo
    zoneinfo.reset_tzpath([])
    import tzdata
    extra = sorted(zoneinfo.available_timezones())
    zones = NAMED_ZONES + rng.sample(extra, 24)
    per_window = max(instants // (len(zones) * 4), 20)
    cases = 0
    lo, hi = at(2000, 1, 1), at(2100, 1, 1)
    for n, name in enumerate(zones):
        zone = RefZone(name)
        near = [x[0] + dt for x in zone.trans if lo <= x[0] < hi for dt in (-1, 0, 1, HOUR)]
        for unit, anchor in [("day", None), ("week", rng.choice(WEEKDAYS)), ("month", str(rng.randint(1, 31))),
                             ("year", rng.choice(["01-01", "04-01", "02-29", "12-31", "10-01"]))]:
            ts = [rng.randint(lo, hi) for _ in range(per_window // 2)]
            ts += rng.sample(near, min(len(near), per_window // 4))
            u, a = ref_window(unit, anchor)
            # instants at period boundaries
            starts = []
            for t in rng.sample(ts, min(len(ts), per_window // 8)):
                s, e = ref_period(zone, u, a, t)
                starts += [s, s - 1, e - 1, e]
            ts = sorted(set(t for t in ts + starts if t >= 0))
            tz = name.upper() if rng.random() < 0.2 else name
            tail = ["WINDOW", unit] + (["ANCHOR", anchor] if anchor else []) + ["TZ", tz]
            head, lua = lua_period(r, unit, anchor, None, tz, ts)
            if isinstance(head, tuple):
                check(False, f"{tail}: Lua error {head}")
                continue
            check(head[2] == name, f"{tail}: Lua tz {head[2]!r}, want {name!r}")
            check(head[3] == tzdata.IANA_VERSION, f"{tail}: tzdata {head[3]!r}, package {tzdata.IANA_VERSION!r}")
            mod = module_periods(r, tail, ts, f"z{n}{unit}")
            for k, t in enumerate(ts):
                want = ref_period(zone, u, a, t)
                what = f"{tail} at t={t}"
                cases += 1
                check(tuple(lua[k][1:3]) == want, f"{what}: Lua {lua[k][1:3]}, reference {want}")
                check(lua[k][5] == ref_label(zone, u, a, want[0]),
                      f"{what}: label {lua[k][5]!r}, reference {ref_label(zone, u, a, want[0])!r}")
                p = mod[k]
                if isinstance(p, Exception):
                    check(False, f"{what}: module error {p}")
                    continue
                compare_header(what, p, head)
                check((p["period_start"], p["period_end"]) == want,
                      f"{what}: module {(p['period_start'], p['period_end'])}, reference {want}")
    return cases


# ------------------------------------------------------------ errors vs module

def error_tails():
    long_name = "fortnight" * 10
    return [
        ["WINDOW", "fortnight"], ["WINDOW", "month", "ANCHOR", "0"], ["WINDOW", "month", "ANCHOR", "32"],
        ["WINDOW", "month", "ANCHOR", "+5"], ["WINDOW", "month", "ANCHOR", "-1"], ["WINDOW", "month", "ANCHOR", "x"],
        ["WINDOW", "month", "ANCHOR", ""], ["WINDOW", "month", "ANCHOR", "007"], ["WINDOW", "month", "ANCHOR", "031"],
        ["WINDOW", "month", "ANCHOR", "0000000000000000000000031"], ["WINDOW", "month", "ANCHOR", "99999999999999999999999"],
        ["WINDOW", "month", "ANCHOR", "5.0"], ["WINDOW", "month", "ANCHOR", " 5"], ["ANCHOR", "5"],
        ["ANCHOR", "5", "WINDOW", "month"], ["ANCHOR", "5", "WINDOW", "week"], ["WINDOW", "day", "ANCHOR", "3"],
        ["WINDOW", "none", "ANCHOR", "3"], ["WINDOW", "none"], ["WINDOW", "NONE"], ["WINDOW", "rolling"],
        ["WINDOW", "ROLLING"], ["WINDOW"], ["ANCHOR"], ["WINDOW", "month", "ANCHOR"],
        ["WINDOW", "rolling", "59s"], ["WINDOW", "rolling", "401d"], ["WINDOW", "rolling", "10"],
        ["WINDOW", "rolling", "1.5h"], ["WINDOW", "rolling", "h"], ["WINDOW", "rolling", "-5m"],
        ["WINDOW", "rolling", "5é"], ["WINDOW", "rolling", "é"], ["WINDOW", "rolling", ""],
        ["WINDOW", "rolling", "30D"], ["WINDOW", "rolling", "x" * 70], ["WINDOW", "rolling", "3\x010m"],
        ["WINDOW", "rolling", "30d", "ANCHOR", "3"], ["ANCHOR", "3", "WINDOW", "rolling", "30d"],
        ["WINDOW", "Rolling", "15m"], ["WINDOW", "rolling", "ANCHOR", "5"], ["WINDOW", "rolling", "WINDOW"],
        ["WINDOW", long_name], ["WINDOW", "é" * 61], ["WINDOW", "é" * 60], ["WINDOW", "mon\u0085th"],
        ["WINDOW", "mon\x01th"], ["WINDOW", "MoNtH", "anchor", "31"], ["WINDOW", "day", "WINDOW", "week"],
        ["ANCHOR", "3", "ANCHOR", "4"], ["WINDOW", "hour", "bogus"], ["WINDOW", "month\x00"],
        ["WINDOW", "rolling", "400d"], ["WINDOW", "rolling", "9600h"], ["WINDOW", "rolling", "576001m"],
        ["WINDOW", "ﬁ"], ["WINDOW", "İ"], ["WINDOW", "K"], ["WINDOW", "\U0001F600" * 3],
        ["WINDOW", "a\r\nb\x00" + "x" * 70], ["WINDOW", "rolling", "\x00\r\n" + "é" * 70],
        ["WINDOW", "x" * 56 + "\U0001F600" * 5], ["WINDOW", "x" * 57 + "\U0001F600" * 4],
        # week and year anchors, TZ (issue 21)
        ["WINDOW", "week", "ANCHOR", "sunday"], ["WINDOW", "week", "ANCHOR", "SUN"], ["WINDOW", "week", "ANCHOR", "mon"],
        ["WINDOW", "week", "ANCHOR", "su"], ["WINDOW", "week", "ANCHOR", "7"], ["WINDOW", "week", "ANCHOR", "sundays"],
        ["WINDOW", "week", "ANCHOR", "sünday"], ["WINDOW", "week", "ANCHOR", ""], ["WINDOW", "year", "ANCHOR", "04-01"],
        ["WINDOW", "year", "ANCHOR", "02-29"], ["WINDOW", "year", "ANCHOR", "01-01"], ["WINDOW", "year", "ANCHOR", "02-30"],
        ["WINDOW", "year", "ANCHOR", "04-31"], ["WINDOW", "year", "ANCHOR", "13-01"], ["WINDOW", "year", "ANCHOR", "4-1"],
        ["WINDOW", "year", "ANCHOR", "00-01"], ["WINDOW", "year", "ANCHOR", "04-00"], ["WINDOW", "year", "ANCHOR", "0401"],
        ["WINDOW", "year", "ANCHOR", "04-01 "], ["WINDOW", "year", "ANCHOR", "٠٤-٠١"], ["WINDOW", "year", "ANCHOR", "+4-01"],
        ["WINDOW", "month", "ANCHOR", "04-01"], ["WINDOW", "month", "ANCHOR", "sunday"], ["WINDOW", "hour", "ANCHOR", "1"],
        ["WINDOW", "day", "TZ", "+05:30"], ["WINDOW", "day", "TZ", "utc"], ["WINDOW", "day", "TZ", "UTC"],
        ["WINDOW", "day", "TZ", "+00:00"], ["WINDOW", "day", "TZ", "-00:00"], ["WINDOW", "day", "TZ", "+14:00"],
        ["WINDOW", "day", "TZ", "-14:00"], ["WINDOW", "day", "TZ", "+14:01"], ["WINDOW", "day", "TZ", "+14:30"],
        ["WINDOW", "day", "TZ", "+05:60"], ["WINDOW", "day", "TZ", "+1:00"], ["WINDOW", "day", "TZ", "05:00"],
        ["WINDOW", "day", "TZ", "+05:00 "], ["WINDOW", "day", "TZ", "+0500"], ["WINDOW", "day", "TZ", ""],
        ["WINDOW", "day", "TZ", "é" * 70], ["WINDOW", "day", "TZ", "Mars/Olympus_Mons"], ["WINDOW", "day", "TZ"],
        ["WINDOW", "hour", "TZ", "UTC"], ["WINDOW", "none", "TZ", "UTC"], ["TZ", "+01:00"],
        ["WINDOW", "rolling", "1h", "TZ", "+01:00"], ["TZ", "+01:00", "WINDOW", "rolling", "1h"],
        ["WINDOW", "day", "TZ", "UTC", "TZ", "UTC"], ["WINDOW", "week", "ANCHOR", "sun", "TZ", "-09:30"],
        ["WINDOW", "year", "ANCHOR", "04-01", "TZ", "+01:00"], ["WINDOW", "month", "ANCHOR", "31", "TZ", "+12:45"],
        ["WINDOW", "fortnight", "ANCHOR", "x", "TZ", "y"], ["WINDOW", "day", "ANCHOR", "3", "TZ", "bogus"],
        ["WINDOW", "month", "ANCHOR", "0", "TZ", "bogus"], ["WINDOW", "rolling", "1h", "ANCHOR", "x", "TZ", "y"],
        ["WINDOW", "rolling", "1x", "TZ", "y"], ["WINDOW", "week", "TZ", "America/New_York"],
        ["WINDOW", "day", "TZ", "america/new_york"], ["WINDOW", "day", "TZ", "US/Eastern"],
        ["WINDOW", "day", "TZ", "Etc/UTC"], ["WINDOW", "day", "TZ", "Europe/London"],
    ]


def test_errors(r, raw):
    n = 0
    for tail in error_tails():
        want = module_set(r, raw, tail)
        got = raw("FCALL", "t_win", 0, "set", *tail)
        if isinstance(got, list):
            got = got[:3]
        check(got == want, f"QUOTA.SET ... {tail!r}: Lua {got!r}, module {want!r}")
        n += 1
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=20260101)
    ap.add_argument("--instants", type=int, default=40_000, help="named-zone instants compared")
    args = ap.parse_args()
    build_module()
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="lua_window_")
    server = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir, "--loadmodule", MODULE, "TEST_CLOCK", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    started = time.time()
    try:
        r = redis.Redis(port=port, decode_responses=True, protocol=3, socket_timeout=60)
        while True:
            try:
                r.ping()
                break
            except redis.ConnectionError:
                if time.time() - started > 10 or server.poll() is not None:
                    raise SystemExit("redis-server did not start")
                time.sleep(0.05)
        r.execute_command("FUNCTION", "LOAD", "REPLACE", library())
        raw = Raw(port)
        test_pure(r, raw)
        test_lua_only(r)
        cases = test_periods(r, random.Random(args.seed))
        cases += test_rolling(r, random.Random(args.seed))
        errors = test_errors(r, raw)
        named = "named zones: not available yet (no zone table), skipped"
        if named_zones_available(r):
            zoned = test_named_zones(r, random.Random(args.seed), args.instants)
            named = f"{zoned} named-zone cases against zoneinfo"
            cases += zoned
        print(f"lua_window: {cases} period cases, {errors} argument cases, {named}, "
              f"{len(FAILURES)} mismatches ({time.time() - started:.1f}s)")
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    if not cases or not errors:
        print("lua_window: FAILED: nothing was compared")
        sys.exit(1)
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
