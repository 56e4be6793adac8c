"""Billing cycles in time zones (issue 21): `set()` takes `tz=` and a text
`anchor=`; policies show `anchor` (an int for a month, a text for a week or a
year), `tz` and `tzdata`; history entries carry `label`. Replies of servers
without these fields decode with them None."""

import re

from quota_client import HistoryPeriod, PolicyState
from quota_client.replies import decode, decode_json

from conftest import tree_name


def test_anchor_is_an_int_or_a_text_and_old_replies_decode():
    # RESP2 pairs, RESP3 map, JSON: a month's day stays an int, a week's day a text.
    month2 = [b"policy", b"m", b"window", b"month", b"anchor", 31, b"tz", b"America/New_York", b"tzdata", b"2026f"]
    month3 = {"policy": "m", "window": "month", "anchor": 31, "tz": "America/New_York", "tzdata": "2026f"}
    month_json = '{"policy":"m","window":"month","anchor":31,"tz":"America/New_York","tzdata":"2026f"}'
    a, b, c = decode(PolicyState, month2), decode(PolicyState, month3), decode_json(PolicyState, month_json)
    assert a == b == c
    assert (a.anchor, a.tz, a.tzdata, a.extra) == (31, "America/New_York", "2026f", {})
    week = decode(PolicyState, [b"window", b"week", b"anchor", b"sunday", b"tz", b"+05:30"])
    assert (week.anchor, week.tz, week.tzdata) == ("sunday", "+05:30", None)
    year = decode_json(PolicyState, '{"window":"year","anchor":"04-01"}')
    assert (year.anchor, year.tz) == ("04-01", None)
    # A server before zones sends none of it.
    old = decode(PolicyState, {"policy": "m", "window": "month", "anchor": 1})
    assert (old.anchor, old.tz, old.tzdata, old.extra) == (1, None, None, {})
    h = decode(HistoryPeriod, [b"start", 1, b"end", 2, b"label", b"2026-11", b"used", b"3"])
    assert (h.label, h.extra) == ("2026-11", {})
    assert decode(HistoryPeriod, {"start": 1, "end": 2}).label is None


def test_set_sends_tz_and_a_text_anchor(ctx):
    """Needs a server with TZ (issue 21)."""

    async def body(q):
        t = tree_name()
        assert await q.set(t, "/", "w", metric="credits", limit=10, window="week", anchor="SUN",
                           tz="+05:30") == "OK"
        assert await q.set(t, "/", "y", metric="credits", limit=10, window="year", anchor="04-01") == "OK"
        assert await q.set(t, "/", "m", metric="credits", limit=10, window="month", anchor=31,
                           tz="america/new_york") == "OK"
        assert await q.set(t, "/", "d", metric="credits", limit=10, window="day") == "OK"
        node = await q.get(t)
        w, y, m, d = (node.policy_named(n) for n in "wymd")
        assert (w.anchor, w.tz, w.tzdata) == ("sunday", "+05:30", None)
        assert (y.anchor, y.tz, y.tzdata) == ("04-01", None, None)
        assert (m.anchor, m.tz) == (31, "America/New_York") and re.fullmatch(r"\d{4}[a-z]", m.tzdata)
        assert (d.anchor, d.tz, d.tzdata) == (None, None, None)
        for p in (w, y, m, d):
            assert p.period_start < p.period_end and not p.extra
        await q.charge(t, path="/", cost={"credits": 1})
        closed = await q.reset(t, "/", "m")
        hist = await q.history(t, "/", "m")
        assert [h.label for h in hist] == [closed.label] and re.fullmatch(r"\d{4}-\d\d-\d\d", closed.label)
        await q.reset(t, "/", "d")
        assert re.fullmatch(r"\d{4}-\d\d-\d\d", (await q.history(t, "/", "d"))[0].label)

    ctx.run(body)
