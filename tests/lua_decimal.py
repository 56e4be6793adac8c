#!/usr/bin/env python3
"""Differential test of the Lua port's decimals (lua/src/10_decimal.lua)
against Python's decimal module, which follows src/engine/amount.rs here.

Starts a plain redis-server on a free port (no module needed), loads a test
library (00_header + 10_decimal + the snippet below) with FUNCTION LOAD
REPLACE, runs thousands of random and edge-case operations (parse with bad
inputs and bounds, fmt, add/sub/cmp/mul/round/fit96, add overflow) in
batches, and compares every result with the reference below. Every value
the Lua side produces is also checked for its representation invariants
(normalized; the small form exactly when the mantissa is below 2^53).
Deterministic (--seed), a few seconds, exits non-zero on any mismatch.

    python3 tests/lua_decimal.py [--seed N] [--count N]
"""

import argparse
import decimal
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from decimal import Decimal

import redis

from backend import free_port, lua_test_library

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
SECTIONS = ["10_decimal.lua"]

decimal.getcontext().prec = 400
decimal.getcontext().Emax = 10000
decimal.getcontext().Emin = -10000

SNIPPET = r"""
local D
local function inv(v)
    if type(v) ~= "table" then error("not a value: " .. tostring(v)) end
    local s = v.s
    if type(s) ~= "number" or s < 0 or s ~= math.floor(s) then error("bad scale") end
    if v.m then
        local m = v.m
        if m ~= math.floor(m) or m >= 2^53 or m <= -2^53 then error("bad small mantissa " .. tostring(m)) end
        if m == 0 and s ~= 0 then error("zero with a scale") end
        if s > 0 and m % 10 == 0 then error("small not normalized") end
        if v.l then error("both forms") end
    else
        local l = v.l
        if type(l) ~= "table" or #l == 0 or l[#l] == 0 then error("bad limbs") end
        for i = 1, #l do
            if l[i] < 0 or l[i] >= 1e7 or l[i] ~= math.floor(l[i]) then error("bad limb") end
        end
        if s > 0 and l[1] % 10 == 0 then error("big not normalized") end
        local x = 0
        for i = #l, 1, -1 do x = x * 1e7 + l[i] end
        if x < 2^53 then error("big form for a small mantissa") end
    end
    return v
end

local function out(v) return D.fmt(inv(v)) end

local function run(op, a, b)
    if op == "parse" then return out(D.parse(a))
    elseif op == "parse_nn" then return out(D.parse_non_negative(a))
    elseif op == "of" then return out(D.of(a))
    elseif op == "add" then return out(D.add(inv(D.of(a)), inv(D.of(b))))
    elseif op == "add_floor" then return out(D.add_floor_zero(D.of(a), D.of(b)))
    elseif op == "plus" then return out(D.plus(D.of(a), D.of(b)))
    elseif op == "sub" then return out(D.sub(D.of(a), D.of(b)))
    elseif op == "cmp" then
        local x, y = D.of(a), D.of(b)
        local c = D.cmp(x, y)
        local e = D.eq(x, y)
        if e ~= (c == 0) then error("eq disagrees with cmp") end
        return tostring(c)
    elseif op == "mul" then return out(D.mul(D.of(a), D.of(b)))
    elseif op == "round" then return out(D.round_dp(D.of(a), tonumber(b)))
    elseif op == "fit96" then
        local r = D.fit96(D.of(a))
        if not r then return "overflow" end
        return out(r)
    elseif op == "div" then return out(D.div_pow10(D.of(a), tonumber(b)))
    elseif op == "scale" then return tostring(D.scale(D.of(a)))
    elseif op == "neg" then return out(D.neg(D.of(a)))
    elseif op == "abs" then return out(D.abs(D.of(a)))
    elseif op == "min" then return out(D.min(D.of(a), D.of(b)))
    elseif op == "max" then return out(D.max(D.of(a), D.of(b)))
    elseif op == "flags" then
        local v = D.of(a)
        return (D.is_zero(v) and "z" or "-") .. (D.is_neg(v) and "n" or "-") .. (D.gt_max_input(v) and "g" or "-")
    elseif op == "from_int" then return out(D.from_int(tonumber(a)))
    elseif op == "clip" then return D.clip(a)
    elseif op == "check" then
        local v, why = D.check(a, b == "1")
        if v then return "ok " .. out(v) end
        return "no " .. why
    end
    error("unknown op " .. op)
end

redis.register_function('t_dec', function(keys, args)
    if not D then
        D = build()
    end
    local res = {}
    for i = 1, #args, 3 do
        failure = nil
        local ok, r = pcall(run, args[i], args[i + 1], args[i + 2])
        if ok then
            res[#res + 1] = r
        elseif failure then
            -- Redis's pcall hands back the message, not the raised table:
            -- fail() leaves its text in `failure` (00_header)
            res[#res + 1] = "!" .. failure
        else
            res[#res + 1] = "!!" .. tostring(r)
        end
        failure = nil
    end
    return res
end)
"""

MAX96 = 2**96 - 1
FAILURES = []


# ----- reference ---------------------------------------------------------------

def clip(text):
    """names::clip: at most 60 characters, anything outside printable ASCII
    as '?' (error replies are printable ASCII)."""
    safe = "".join(c if " " <= c <= "~" else "?" for c in text)
    if len(text) > 60:
        return safe[:57] + "..."
    return safe


def fmt(d):
    if d == 0:
        return "0"
    d = d.normalize()
    s = format(d, "f")
    return s


def ref_check(text, non_negative):
    """amount::parse / parse_non_negative: (value, None) or (None, reason)."""
    bad = f"'{clip(text)}' is not a decimal number"
    if len(text.encode()) == 0 or len(text.encode()) > 32:
        return None, bad
    digits = text[1:] if text.startswith("-") else text
    int_part, dot, frac = digits.partition(".")

    def all_digits(s):
        return s != "" and all(c in "0123456789" for c in s)

    if not all_digits(int_part) or (dot and not all_digits(frac)):
        return None, bad
    if dot and len(frac) > 10:
        return None, f"'{clip(text)}' has more than 10 decimal places"
    mant = int(int_part + frac)
    if mant > MAX96:
        return None, bad
    value = Decimal(mant).scaleb(-len(frac))
    if text.startswith("-"):
        value = -value
    if abs(value) > 10**15:
        return None, f"'{clip(text)}' is larger than 10^15 in absolute value"
    if non_negative and value < 0:
        return None, f"'{clip(text)}' must not be negative"
    return value, None


def round_half_even_int(x):
    return int(x.to_integral_value(rounding=decimal.ROUND_HALF_EVEN))


def ref_fit96(v):
    """rust_decimal's result for an exact value v (None = overflow)."""
    if v == 0:
        return v
    sign = -1 if v < 0 else 1
    a = abs(v)
    exp = a.normalize().as_tuple().exponent
    s = max(0, -exp)
    for t in range(min(s, 28), -1, -1):
        scaled = a.scaleb(t)
        if int(scaled) > MAX96:  # floor does not fit
            continue
        r = round_half_even_int(scaled)
        if r > MAX96:
            continue
        return sign * Decimal(r).scaleb(-t)
    return None


def ref(op, a, b):
    D = Decimal
    if op in ("parse", "parse_nn"):
        v, why = ref_check(a, op == "parse_nn")
        return fmt(v) if v is not None else "!ERR invalid amount: " + why
    if op == "check":
        v, why = ref_check(a, b == "1")
        return "ok " + fmt(v) if v is not None else "no " + why
    if op == "of":
        return fmt(D(a))
    if op == "add":
        r = D(a) + D(b)
        return "!ERR limit: amount total would exceed 10^18" if abs(r) > 10**18 else fmt(r)
    if op == "add_floor":
        r = D(a) + D(b)
        if abs(r) > 10**18:
            return "!ERR limit: amount total would exceed 10^18"
        return fmt(max(r, D(0)))
    if op == "plus":
        return fmt(D(a) + D(b))
    if op == "sub":
        return fmt(D(a) - D(b))
    if op == "cmp":
        x, y = D(a), D(b)
        return str((x > y) - (x < y))
    if op == "mul":
        return fmt(D(a) * D(b))
    if op == "round":
        dp = int(b)
        v = D(a)
        if -v.normalize().as_tuple().exponent <= dp:
            return fmt(v)
        return fmt(v.quantize(D(1).scaleb(-dp), rounding=decimal.ROUND_HALF_UP))
    if op == "fit96":
        r = ref_fit96(D(a))
        return "overflow" if r is None else fmt(r)
    if op == "div":
        return fmt(D(a).scaleb(-int(b)))
    if op == "scale":
        v = D(a)
        return "0" if v == 0 else str(max(0, -v.normalize().as_tuple().exponent))
    if op == "neg":
        return fmt(-D(a))
    if op == "abs":
        return fmt(abs(D(a)))
    if op == "min":
        return fmt(min(D(a), D(b)))
    if op == "max":
        return fmt(max(D(a), D(b)))
    if op == "flags":
        v = D(a)
        return ("z" if v == 0 else "-") + ("n" if v < 0 else "-") + ("g" if abs(v) > 10**15 else "-")
    if op == "from_int":
        return fmt(D(a))
    if op == "clip":
        return clip(a)
    raise ValueError(op)


# ----- generators ----------------------------------------------------------------

def rand_digits(rng, n):
    if n <= 0:
        return ""
    return "".join(rng.choice("0123456789") for _ in range(n))


def rand_value(rng, big=False):
    """Canonical text of a random decimal, of every size class."""
    kind = rng.random()
    if kind < 0.4 and not big:
        ip = str(rng.randint(0, 10**rng.randint(1, 6)))
        fp = rand_digits(rng, rng.randint(0, 4))
    elif kind < 0.7 and not big:
        ip = str(rng.randint(0, 10**rng.randint(1, 16)))
        fp = rand_digits(rng, rng.randint(0, 10))
    elif kind < 0.85:
        # near 2^53 as a mantissa
        m = 2**53 + rng.randint(-50, 50)
        s = rng.randint(0, 12)
        t = str(m)
        ip, fp = (t[:-s], t[-s:]) if s else (t, "")
        ip = ip or "0"
    else:
        ip = str(rng.randint(0, 10**rng.randint(1, 30)))
        fp = rand_digits(rng, rng.randint(0, 28))
    d = Decimal(ip + ("." + fp if fp else ""))
    if rng.random() < 0.35:
        d = -d
    return fmt(d)


def rand_amount_text(rng):
    """Client amount text: mostly valid, often malformed or out of bounds."""
    r = rng.random()
    if r < 0.35:
        ip = rand_digits(rng, rng.randint(1, 16))
        s = ip + ("." + rand_digits(rng, rng.randint(1, 10)) if rng.random() < 0.6 else "")
        return ("-" if rng.random() < 0.3 else "") + s
    if r < 0.45:
        # bounds: 10^15 neighbours, 10 places, 32 characters, 2^96
        return rng.choice([
            "1000000000000000", "1000000000000000.0000000000", "1000000000000000.0000000001",
            "-1000000000000000", "-1000000000000000.0000000001", "999999999999999.9999999999",
            "1000000000000001", "0.0000000001", "0.00000000001", "-0.0000000001", "0.0000000000",
            "-0", "-0.0", "00000000000000000000000000000001", "000000000000000000000000000000001",
            "79228162514264337593543950335", "79228162514264337593543950336",
            "7922816251426433759354395033.5", "7922816251426433759354395033.6",
            "99999999999999999999999999999", "9999999999999999999.9999999999",
            "-9999999999999999999.9999999999", "0000000000000000000000.0000000001",
            "9007199254740993", "9007199254740992.5", "-9007199254740993.0000000001",
        ])
    if r < 0.8:
        base = rand_digits(rng, rng.randint(1, 6)) + "." + rand_digits(rng, rng.randint(1, 3))
        bad = [
            "", " 1", "1 ", "+1", ".5", "5.", "1.2.3", "1e5", "1E5", "NaN", "inf", "--1", "-", ".",
            "-.5", "1,5", "0x10", "١", "１", "1_000", "\t1", "1\n", "٣.٤", "-+1", "1-",
            "a" * 70, "é" * 61, "é" * 60, "\x01\x02", "1\x00", "\u0085x", "1" * 33, "1" * 32,
            "1" * 31 + ".", "-" + "1" * 31, "0." + "0" * 30, "12345678901234567890.1234567890",
            "x" * 58 + "\x01" * 4,
        ]
        if rng.random() < 0.5:
            return rng.choice(bad)
        i = rng.randint(0, len(base))
        return base[:i] + rng.choice(["-", ".", "e", " ", "x", "0", "é", "/"]) + base[i:]
    return rand_value(rng)


def gen_ops(rng, count):
    ops = []
    for _ in range(count):
        op = rng.choice(["parse", "parse_nn", "check", "of", "add", "add", "add_floor", "plus", "sub", "sub",
                         "cmp", "cmp", "mul", "mul", "round", "fit96", "div", "scale", "neg", "abs", "min", "max",
                         "flags", "from_int", "clip"])
        if op in ("parse", "parse_nn"):
            ops.append((op, rand_amount_text(rng), ""))
        elif op == "check":
            ops.append((op, rand_amount_text(rng), rng.choice(["0", "1"])))
        elif op == "add" or op == "add_floor":
            if rng.random() < 0.2:
                # around 10^18
                a = fmt(Decimal(10**18) - Decimal(rng.randint(0, 10**6)).scaleb(-rng.randint(0, 10)))
                if rng.random() < 0.5:
                    a = fmt(-Decimal(a))
                b = rand_value(rng)
                ops.append((op, a, b))
            else:
                ops.append((op, rand_value(rng), rand_value(rng)))
        elif op in ("plus", "sub", "cmp", "min", "max"):
            a = rand_value(rng)
            b = a if rng.random() < 0.1 else rand_value(rng)
            if rng.random() < 0.1:
                b = fmt(Decimal(a) + Decimal(rng.choice([1, -1])).scaleb(-rng.randint(0, 28)))
            ops.append((op, a, b))
        elif op == "mul":
            ops.append((op, rand_value(rng), rand_value(rng)))
        elif op == "round":
            ops.append((op, rand_value(rng), str(rng.choice([0, 1, 2, 5, 10, 10, 10, 16, 28]))))
        elif op == "fit96":
            if rng.random() < 0.5:
                m = rng.randint(1, 10**rng.randint(20, 60))
                s = rng.randint(0, 60)
                ops.append((op, fmt(Decimal(m).scaleb(-s) * rng.choice([1, -1])), ""))
            elif rng.random() < 0.5:
                # just around 2^96 mantissas with ties
                m = 2**96 * 10**rng.randint(1, 3) + rng.choice([-15, -10, -5, -1, 0, 1, 5, 10, 15, 5000, -5000])
                ops.append((op, fmt(Decimal(m).scaleb(-rng.randint(0, 35))), ""))
            else:
                ops.append((op, rand_value(rng), ""))
        elif op == "div":
            ops.append((op, rand_value(rng), str(rng.choice([0, 1, 3, 6, 10]))))
        elif op == "from_int":
            ops.append((op, str(rng.choice([0, 1, -1, rng.randint(-10**15, 10**15), 2**53 - 1, -(2**53 - 1)])), ""))
        elif op == "clip":
            ops.append((op, rand_amount_text(rng), ""))
        else:
            ops.append((op, rand_value(rng), ""))
    return ops


def edge_ops():
    ops = []
    for t in ["0", "120", "0.0125", "1.50", "-3", "-0", "0.0000000001", "1000000000000000",
              "1000000000000001", "0.00000000001", "1e5", "", " 1", "+1", ".5", "5.", "1.2.3", "NaN",
              "inf", "--1", "١"]:
        ops.append(("parse", t, ""))
        ops.append(("parse_nn", t, ""))
    ops += [("add", "0.1", "0.2"), ("add", "1000000000000000000", "0"), ("add", "1000000000000000000", "1"),
            ("add", "-1000000000000000000", "-0.0000000001"), ("add_floor", "1", "-5"),
            ("add_floor", "999999999999999999", "1"), ("add", "999999999999999999.9999999999", "0.0000000001"),
            ("add", "999999999999999999.9999999999", "0.0000000002"),
            ("round", "0.00000015", "10"), ("round", "0.000000000549", "10"), ("round", "0.00000000055", "10"),
            ("round", "-0.00000000055", "10"), ("round", "2.5", "0"), ("round", "-2.5", "0"),
            ("round", "0.4999999999999999999999999999", "0"), ("mul", "0.0000025", "1000"),
            ("mul", "1000000000000000", "1000000000000000"), ("mul", "0", "-5"), ("mul", "-2", "0.5"),
            ("fit96", "79228162514264337593543950335", ""), ("fit96", "79228162514264337593543950336", ""),
            ("fit96", "79228162514264337593543950335.5", ""), ("fit96", "7922816251426433759354395033.55", ""),
            ("fit96", "0.00000000000000000000000000005", ""), ("fit96", "0.00000000000000000000000000015", ""),
            ("fit96", "0.000000000000000000000000000051", ""),
            ("cmp", "9007199254740993", "9007199254740992"), ("cmp", "-0.5", "0.25"),
            ("scale", "1.50", ""), ("of", "-0", ""), ("of", "007.50", ""), ("from_int", "9007199254740991", ""),
            ("div", "2.5", "6"), ("div", "2500", "3"), ("clip", "x" * 61, ""), ("clip", "a\tb\u0085c", "")]
    return ops


# ----- server --------------------------------------------------------------------

def library():
    return lua_test_library("t_decimal", SECTIONS, "D", SNIPPET)


def start_server(workdir):
    port = free_port()
    server = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    r = redis.Redis(port=port, socket_timeout=60)
    started = time.time()
    while True:
        try:
            r.ping()
            return server, r
        except redis.ConnectionError:
            if time.time() - started > 10 or server.poll() is not None:
                server.kill()
                raise SystemExit("redis-server did not start")
            time.sleep(0.05)


def run_ops(r, ops, batch=500):
    results = []
    for i in range(0, len(ops), batch):
        chunk = ops[i:i + batch]
        args = []
        for op, a, b in chunk:
            args += [op, a.encode(), b.encode()]
        got = [x.decode() for x in r.execute_command("FCALL", "t_dec", 0, *args)]
        if len(got) != len(chunk):
            raise SystemExit(f"lua_decimal: {len(got)} results for a batch of {len(chunk)} operations "
                             f"(from {chunk[0]!r})")
        results += got
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=20260315)
    ap.add_argument("--count", type=int, default=20000)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    workdir = tempfile.mkdtemp(prefix="lua_decimal_")
    server = None
    t0 = time.time()
    try:
        server, r = start_server(workdir)
        r.execute_command("FUNCTION", "LOAD", "REPLACE", library())
        ops = edge_ops() + gen_ops(rng, args.count)
        got = run_ops(r, ops)
        if len(got) != len(ops) or not ops:
            raise SystemExit(f"lua_decimal: {len(got)} results for {len(ops)} operations")
        by_op = {}
        for (op, a, b), g in zip(ops, got):
            want = ref(op, a, b)
            by_op[op] = by_op.get(op, 0) + 1
            if g != want:
                FAILURES.append((op, a, b, g, want))
        for op, a, b, g, want in FAILURES[:30]:
            print(f"MISMATCH {op}({a!r}, {b!r}): lua {g!r}, reference {want!r}")
        summary = ", ".join(f"{k} {v}" for k, v in sorted(by_op.items()))
        print(f"lua_decimal: {len(ops)} operations ({summary}); {len(FAILURES)} mismatches "
              f"({time.time() - t0:.1f}s)")
    finally:
        if server:
            server.terminate()
            server.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
