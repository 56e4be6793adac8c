#!/usr/bin/env python3
"""Generates the zone rules table: src/engine/tzdata.txt and its Lua
embedding lua/src/21_tzdata.lua (the same text, byte for byte).

Run by hand; the output is committed. It downloads nothing: it reads the
TZif files of the `tzdata` PyPI package installed for this Python. To
regenerate (or move to a newer release):

    python3 -m pip install tzdata==2026.6      # IANA 2026f; pin the new one
    python3 tools/tzdata.py                    # writes both files, or refuses
    make lua && cargo test -p quota-engine tz  # and commit the three files

What the table holds, per name of the release (links included): the rules
from 2000-01-01T00:00Z on (earlier instants take the offset of that
instant): the offset then, the later transitions where the offset changes,
up to the point from which the zone's POSIX TZ rule (the TZif footer)
gives the same offsets, and that rule pre-parsed to numbers. Names with
the same data share one data line.

Format (all numbers base 36, lowercase, `-` for negatives; times and
offsets in minutes: since 2000 every offset and transition of the release
is a whole minute, which the generator checks):

    2026f                                   the IANA version
    =o0;rule;d1,o1,d2,o2,...                one line per distinct zone data
    America/New_York 1f                     one line per name: data line index
    /Noronha 1e                             (a name in the previous name's
                                            folder: America/Noronha)

- `o0`: the offset at 2000-01-01T00:00Z.
- `rule`: `std` (no daylight saving) or
  `std,dst,sm,sw,sd,st,em,ew,ed,et`: offsets, then the start and end of
  daylight saving as POSIX `Mm.w.d/time` (month 1-12, week 1-5 where 5 is
  the last, weekday 0-6 from Sunday, time in minutes, possibly negative or
  over a day; the start in local standard time, the end in local daylight
  time).
- `dN,oN`: transition N at 2000-01-01T00:00Z + d1 + ... + dN minutes, to
  offset oN. At and after the last one (or after 2000-01-01 when there is
  none) the rule gives the offset; before it, the transitions do.

Before writing, the output is read back and evaluated against Python's
zoneinfo (on this package's files) for every name: every transition of
either side ±1 s, a weekly scan and random instants from 2000 to 2100. Any
mismatch, a footer rule other than `M` rules, or two names equal but for
case stop the generator without writing.
"""

import datetime
import importlib.resources
import os
import random
import re
import struct
import sys
import zoneinfo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TXT = os.path.join(ROOT, "src", "engine", "tzdata.txt")
LUA = os.path.join(ROOT, "lua", "src", "21_tzdata.lua")

T0 = 946_684_800  # 2000-01-01T00:00:00Z
T_END = 4_133_980_800  # 2101-01-01T00:00:00Z
DAY = 86_400


def die(msg):
    sys.exit("tools/tzdata.py: " + msg)


# ------------------------------------------------------------------ TZif

def read_tzif(data):
    """(transitions [(t, utoff)], initial utoff, footer) of a TZif v2+ file."""
    if data[:4] != b"TZif" or data[4:5] not in (b"2", b"3", b"4"):
        die("not a TZif v2+ file")

    def header(off):
        return struct.unpack(">6l", data[off + 20:off + 44])

    isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt = header(0)
    off = 44 + timecnt * 5 + typecnt * 6 + charcnt + leapcnt * 8 + isstdcnt + isutcnt
    isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt = header(off)
    if leapcnt:
        die("leap seconds in TZif data")
    p = off + 44
    times = struct.unpack(">%dq" % timecnt, data[p:p + 8 * timecnt])
    p += 8 * timecnt
    idx = data[p:p + timecnt]
    p += timecnt
    types = [struct.unpack(">lBB", data[p + 6 * i:p + 6 * i + 6]) for i in range(typecnt)]
    p += 6 * typecnt + charcnt + isstdcnt + isutcnt
    footer = data[p:].decode("ascii")
    if not footer.startswith("\n"):
        die("no TZif footer")
    footer = footer[1:footer.index("\n", 1)]
    # The type of instants before the first transition: RFC 8536 3.2, type 0.
    return [(t, types[i][0]) for t, i in zip(times, idx)], types[0][0], footer


# ----------------------------------------------------------- POSIX rules

def parse_footer(footer, name):
    """(std, None) or (std, (dst, start, end)) with start/end = (m, w, d, secs)."""
    s = footer

    def abbr(s):
        if s.startswith("<"):
            return s[s.index(">") + 1:]
        m = re.match(r"[A-Za-z]{3,}", s)
        if not m:
            die(f"{name}: bad abbreviation in footer {footer!r}")
        return s[m.end():]

    def offset(s):
        m = re.match(r"([+-]?)(\d{1,3})(?::(\d{2}))?(?::(\d{2}))?", s)
        if not m:
            die(f"{name}: bad offset in footer {footer!r}")
        v = int(m.group(2)) * 3600 + int(m.group(3) or 0) * 60 + int(m.group(4) or 0)
        return (-v if m.group(1) == "-" else v), s[m.end():]

    if not s:
        die(f"{name}: empty footer")
    s = abbr(s)
    posix_std, s = offset(s)
    std = -posix_std  # POSIX counts west positive
    if not s:
        return std, None
    s = abbr(s)
    if s and s[0] not in ",;":
        posix_dst, s = offset(s)
        dst = -posix_dst
    else:
        dst = std + 3600
    if not s.startswith(","):
        die(f"{name}: footer {footer!r} has daylight saving without explicit rules")
    parts = s[1:].split(",")
    if len(parts) != 2:
        die(f"{name}: bad footer {footer!r}")

    def date(part):
        m = re.fullmatch(r"M(\d{1,2})\.(\d)\.(\d)(?:/([+-]?)(\d{1,3})(?::(\d{2}))?(?::(\d{2}))?)?", part)
        if not m:
            die(f"{name}: footer {footer!r}: only M rules are supported, not {part!r}")
        mon, week, wday = int(m.group(1)), int(m.group(2)), int(m.group(3))
        if not (1 <= mon <= 12 and 1 <= week <= 5 and 0 <= wday <= 6):
            die(f"{name}: footer {footer!r}: bad M rule {part!r}")
        secs = 7200
        if m.group(5) is not None:
            secs = int(m.group(5)) * 3600 + int(m.group(6) or 0) * 60 + int(m.group(7) or 0)
            if m.group(4) == "-":
                secs = -secs
        return (mon, week, wday, secs)

    return std, (dst, date(parts[0]), date(parts[1]))


def _dfc(y, m, d):
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((m + 9) % 12) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def year_of(days):
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    return yoe + era * 400 + (1 if mp >= 10 else 0)


MONTH_DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


def rule_day(y, mon, week, wday):
    """Days since 1970-01-01 of the `week`th `wday` of month `mon` (5: last)."""
    first = _dfc(y, mon, 1)
    wd_first = (first + 4) % 7  # 1970-01-01 was a Thursday (4)
    day = first + (wday - wd_first) % 7 + (week - 1) * 7
    dim = MONTH_DAYS[mon - 1] + (1 if mon == 2 and (y % 4 == 0 and y % 100 != 0 or y % 400 == 0) else 0)
    while day >= first + dim:
        day -= 7
    return day


def rule_events(rule, y):
    """The two transitions of year y as (utc, offset after), in rule order."""
    std, dst_part = rule
    dst, start, end = dst_part
    s = rule_day(y, *start[:3]) * DAY + start[3] - std
    e = rule_day(y, *end[:3]) * DAY + end[3] - dst
    return [(s, dst), (e, std)]


def rule_offset(rule, t):
    std, dst_part = rule
    if dst_part is None:
        return std
    y = year_of((t + std) // DAY)
    best = None
    for yy in (y - 1, y, y + 1):
        for at, o in rule_events(rule, yy):
            if at <= t and (best is None or at > best[0]):
                best = (at, o)
    return best[1]


def rule_changes(rule, a, b):
    """Instants in (a, b] where the rule's offset changes, with the new offset."""
    std, dst_part = rule
    if dst_part is None:
        return []
    out = []
    for y in range(year_of((a + std) // DAY) - 1, year_of((b + std) // DAY) + 2):
        out += [(t, o) for t, o in rule_events(rule, y) if a < t <= b]
    out.sort()
    res, cur = [], rule_offset(rule, a)
    for t, o in out:
        if o != cur:
            res.append((t, o))
            cur = o
    return res


# ---------------------------------------------------------------- trimming

def zone_data(name, raw):
    trans, first, footer = read_tzif(raw)
    rule = parse_footer(footer, name)
    # The true offset function from T0 to T_END: the TZif transitions, and
    # the footer at and after the last one (RFC 8536).
    last = trans[-1][0] if trans else None

    def true_offset(t):
        if last is None or t >= last:
            return rule_offset(rule, t)
        o = first
        for at, off in trans:
            if at <= t:
                o = off
        return o

    o0 = true_offset(T0)
    true, cur = [], o0
    for t, o in trans:
        if T0 < t and o != cur:
            if t == last and rule_offset(rule, t) != o:
                die(f"{name}: the footer disagrees with the last transition")
            true.append((t, o))
            cur = o
    for t, o in rule_changes(rule, max(T0, last if last is not None else T0), T_END):
        if o != cur:
            true.append((t, o))
            cur = o
    true = [(t, o) for t, o in true if t < T_END]
    # The earliest k from which the rule gives every offset: transitions 0..k kept.
    def rule_from(start, offset_at_start):
        if rule_offset(rule, start) != offset_at_start:
            return False
        return rule_changes(rule, start, T_END - 1) == [x for x in true if start < x[0] < T_END]

    if rule_from(T0, o0):
        kept = []
    else:
        kept = None
        for k in range(len(true)):
            if rule_from(true[k][0], true[k][1]):
                kept = true[:k + 1]
                break
        if kept is None:
            die(f"{name}: the footer never takes over before 2101")
    return o0, rule, kept


# ------------------------------------------------------------- encoding

def b36(n):
    if n < 0:
        return "-" + b36(-n)
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def minutes(secs, name):
    if secs % 60:
        die(f"{name}: {secs} s is not a whole number of minutes")
    return secs // 60


def encode(name, o0, rule, kept):
    m = lambda x: b36(minutes(x, name))  # noqa: E731
    std, dst_part = rule
    if dst_part is None:
        r = m(std)
    else:
        dst, s, e = dst_part
        r = ",".join([m(std), m(dst)] + [b36(x) for x in s[:3]] + [m(s[3])]
                     + [b36(x) for x in e[:3]] + [m(e[3])])
    ts, prev = [], T0
    for t, o in kept:
        ts += [m(t - prev), m(o)]
        prev = t
    return "=" + m(o0) + ";" + r + ";" + ",".join(ts)


def decode(text):
    """(version, [data], [(name, data index)]) read back as Rust and Lua do."""
    lines = text.split("\n")
    if lines[-1] != "":
        die("no final newline")
    version, datas, names = lines[0], [], []
    for line in lines[1:-1]:
        if line.startswith("="):
            o0, r, ts = line[1:].split(";")
            rv = [int(x, 36) for x in r.split(",")]
            if len(rv) == 1:
                rule = (rv[0] * 60, None)
            else:
                rule = (rv[0] * 60, (rv[1] * 60, tuple(rv[2:5]) + (rv[5] * 60,), tuple(rv[6:9]) + (rv[9] * 60,)))
            tv = [int(x, 36) * 60 for x in ts.split(",")] if ts else []
            kept, t = [], T0
            for i in range(0, len(tv), 2):
                t += tv[i]
                kept.append((t, tv[i + 1]))
            datas.append((int(o0, 36) * 60, rule, kept))
        else:
            name, idx = line.split(" ")
            if name.startswith("/"):
                name = names[-1][0].rsplit("/", 1)[0] + name
            names.append((name, int(idx, 36)))
    return version, datas, names


def offset_of(data, t):
    """The offset at t: what tz.rs and 22_tz.lua compute."""
    o0, rule, kept = data
    start = kept[-1][0] if kept else T0
    if t >= start:
        return rule_offset(rule, t)
    lo, hi = 0, len(kept)  # the last kept transition at or before t
    while lo < hi:
        mid = (lo + hi) // 2
        if kept[mid][0] <= t:
            lo = mid + 1
        else:
            hi = mid
    return kept[lo - 1][1] if lo else o0


# ---------------------------------------------------------------- verify

UTC = datetime.timezone.utc


def verify(text, raws):
    version, datas, names = decode(text)
    rng = random.Random(2026)
    checked = 0
    for name, idx in names:
        zi = zoneinfo.ZoneInfo(name)
        data = datas[idx]
        trans, _, _ = read_tzif(raws[name])
        points = set()
        for t, _ in data[2]:
            points.update((t - 1, t, t + 1))
        for t, _ in trans:
            if T0 - 2 <= t < T_END:
                points.update((t - 1, t, t + 1))
        start = data[2][-1][0] if data[2] else T0
        for t, _ in rule_changes(data[1], start, T_END):
            points.update((t - 1, t, t + 1))
        points.update(range(T0, T_END, 7 * DAY))
        points.update(rng.randrange(T0, T_END) for _ in range(200))
        points.update((T0 - 1, T0, 0))
        for t in points:
            want = int(datetime.datetime.fromtimestamp(t, UTC).astimezone(zi).utcoffset().total_seconds())
            if t < T0:
                # Before 2000 the table keeps the offset of 2000-01-01.
                want = int(datetime.datetime.fromtimestamp(T0, UTC).astimezone(zi).utcoffset().total_seconds())
            got = offset_of(data, t)
            if got != want:
                die(f"{name}: offset at {t} is {got} in the table, {want} in zoneinfo: nothing written")
            checked += 1
    return checked


def main():
    zoneinfo.reset_tzpath([])
    # This file is tools/tzdata.py: import the package, not this script.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.modules.pop("tzdata", None)
    import tzdata

    version = tzdata.IANA_VERSION
    root = importlib.resources.files("tzdata").joinpath("zoneinfo")
    names = sorted(importlib.resources.files("tzdata").joinpath("zones").read_text().split())
    lower = {}
    for n in names:
        if n.lower() in lower:
            die(f"{n} and {lower[n.lower()]} differ only in case")
        lower[n.lower()] = n
    raws = {}
    for n in names:
        raws[n] = root.joinpath(*n.split("/")).read_bytes()
    lines, index, refs = [], {}, []
    for n in names:
        line = encode(n, *zone_data(n, raws[n]))
        if line not in index:
            index[line] = len(lines)
            lines.append(line)
        shown = n
        if refs and "/" in n and "/" in prev and n.rsplit("/", 1)[0] == prev.rsplit("/", 1)[0]:
            shown = "/" + n.rsplit("/", 1)[1]
        refs.append(f"{shown} {b36(index[line])}")
        prev = n
    text = "\n".join([version] + lines + refs) + "\n"
    if "]]" in text:
        die("the text holds ]], which would end the Lua long string")
    checked = verify(text, raws)
    lua = ("-- ---------------------------------------------------------------------------\n"
           "-- 21_tzdata  the zone rules table (generated by tools/tzdata.py from the\n"
           "-- tzdata PyPI package; do not edit): the text of src/engine/tzdata.txt,\n"
           "-- byte for byte. 22_tz reads it (format: tools/tzdata.py).\n"
           "-- ---------------------------------------------------------------------------\n\n"
           f'W.TZDATA_VERSION = "{version}"\n'
           "W.TZDATA = [[\n" + text + "]]\n")
    with open(TXT, "w", encoding="ascii", newline="\n") as f:
        f.write(text)
    with open(LUA, "w", encoding="ascii", newline="\n") as f:
        f.write(lua)
    print(f"tzdata {version}: {len(names)} names, {len(lines)} distinct zone data, "
          f"{len(text)} bytes; {checked} offsets checked against zoneinfo")


if __name__ == "__main__":
    main()
