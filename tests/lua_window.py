#!/usr/bin/env python3
"""Differential test of the Lua port's windows (lua/src/20_window.lua)
against the module (src/engine/window.rs, src/commands/policy.rs).

Starts one redis-server on a free port with the module (TEST_CLOCK yes),
loads a test library (00_header + 20_window + the snippet below) with
FUNCTION LOAD REPLACE, and compares, for many windows and times, the
module's QUOTA.GET fields (window, anchor, period_start, period_end) and
QUOTA.SET error texts with the Lua functions' results. Also checks the pure
functions (civil dates, durations, clip) against tables and Python's
datetime. Exits non-zero on any mismatch.

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
SECTIONS = ["10_decimal.lua", "20_window.lua"]

# The test entry point: FCALL t_win 0 op args...
SNIPPET = r"""
local W = nil

local function opt(s)
    if s == nil or s == "" then return nil end
    return s
end

local function window_of(args, first)
    local anchor = opt(args[first + 1])
    return W.parse(args[first], anchor and tonumber(anchor), opt(args[first + 2]))
end

local OPS = {}

-- period name anchor duration t...: per t {index, start, end, span_start, span_end}
OPS.period = function(args)
    local w = window_of(args, 2)
    local back = W.decode(W.encode(w))
    assert(back and W.encode(back) == W.encode(w) and W.label(back) == W.label(w), "encode round trip")
    local out = { W.label(w), W.anchor(w) or -1, W.encode(w), W.bucket_ms(w) or -1 }
    for i = 5, #args do
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
    end
    return out
end

-- expired duration b now b now ...: per pair 1 when usage in bucket b has dropped out at now
OPS.expired = function(args)
    local w = W.parse("rolling", nil, args[2])
    local out = {}
    for i = 3, #args, 2 do
        out[#out + 1] = W.expired_bucket(w, tonumber(args[i]), tonumber(args[i + 1])) and 1 or 0
    end
    return out
end

-- set arg...: the WINDOW/ANCHOR part of QUOTA.SET's keyword loop
OPS.set = function(args)
    local name, anchor, duration
    local seen = {}
    local i = 2
    while i <= #args do
        local word = string.upper(args[i])
        i = i + 1
        if word ~= "WINDOW" and word ~= "ANCHOR" then
            fail("ERR syntax: unknown argument '" .. W.clip(args[i - 1]) .. "' in QUOTA.SET")
        end
        if seen[word] then
            fail("ERR syntax: " .. word .. " given twice in QUOTA.SET")
        end
        seen[word] = true
        if word == "WINDOW" then
            name, duration, i = W.read_window(args, i, "QUOTA.SET")
        else
            anchor, i = W.read_anchor(args, i, "QUOTA.SET")
        end
    end
    local w = W.from_set(name, anchor, duration)
    return { W.label(w), W.anchor(w) or -1, W.encode(w) }
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
    return [p["window"].encode(), p.get("anchor", -1)]


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
                    ("r1e5", "nil"), ("hh", "nil")]:
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

def windows():
    out = [("hour", None, None), ("day", None, None), ("week", None, None), ("month", None, None),
           ("year", None, None), ("none", None, None), ("MONTH", None, None), ("Week", None, None)]
    out += [("month", d, None) for d in range(1, 32)]
    out += [("rolling", None, d) for d in ["60s", "1m", "61s", "90s", "119s", "15m", "59m", "1h", "7h", "24h",
                                           "7d", "30d", "31d", "400d", "9600h", "0090s", "3599s", "86399s"]]
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


def test_periods(r, rng):
    all_times = times(rng)
    cases = 0
    for n, (name, anchor, duration) in enumerate(windows()):
        ts = all_times if name != "rolling" else all_times[::3]
        tail = ["WINDOW", name] + ([duration] if duration else []) + (["ANCHOR", str(anchor)] if anchor else [])
        lua = call(r, "period", name, "" if anchor is None else str(anchor), duration or "", *ts)
        if isinstance(lua, tuple):
            check(False, f"{tail}: Lua error {lua}")
            continue
        label, lanchor, code, bucket = lua[:4]
        pipe = r.pipeline(transaction=False)
        for k, t in enumerate(ts):
            key = f"w{n}:{k}"
            pipe.execute_command("QUOTA.DEBUG", "CLOCK", "SET", str(t))
            pipe.execute_command("QUOTA.SET", key, "/", "p", "METRIC", "credits", "LIMIT", "1", *tail)
            pipe.execute_command("QUOTA.GET", key, "/")
            pipe.delete(key)
        replies = pipe.execute(raise_on_error=False)
        for k, t in enumerate(ts):
            index, start, end, span_start, span_end = lua[4 + 5 * k:9 + 5 * k]
            got = replies[4 * k + 2]
            if isinstance(got, Exception):
                check(False, f"{tail} at {t}: module error {got}")
                continue
            p = got["policies"][0]
            cases += 1
            what = f"{tail} at t={t}"
            check(p["window"] == label, f"{what}: label {label!r}, module {p['window']!r}")
            check(p.get("anchor", -1) == lanchor, f"{what}: anchor {lanchor}, module {p.get('anchor')}")
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
    return cases


def test_lua_only(r):
    """Properties the module cannot show directly: index arithmetic, and the
    period of a start and of end - 1."""
    def period(name, anchor, ts):
        out = call(r, "period", name, str(anchor or ""), "", *ts)
        return [tuple(out[4 + 5 * k:7 + 5 * k]) for k in range(len(ts))]

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
    ]
    for name, anchor, t, start, end in rows:
        got = period(name, anchor, [t, start, end - 1])
        for (_, s, e), tt in zip(got, [t, start, end - 1]):
            check((s, e) == (start, end), f"{name} {anchor} at {tt}: {(s, e)}, want {(start, end)}")


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
    ]


def test_errors(r, raw):
    n = 0
    for tail in error_tails():
        want = module_set(r, raw, tail)
        got = raw("FCALL", "t_win", 0, "set", *tail)
        if isinstance(got, list):
            got = got[:2]
        check(got == want, f"QUOTA.SET ... {tail!r}: Lua {got!r}, module {want!r}")
        n += 1
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=20260101)
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
        print(f"lua_window: {cases} period cases, {errors} argument cases, "
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
