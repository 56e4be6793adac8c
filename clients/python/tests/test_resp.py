"""RESP2 and RESP3, decode_responses False and True: identical results for
every reply type, with empty and non-empty maps and lists, denied_by and
over. The same script runs step by step on twin trees, one per client
configuration, so every step sees the same (test) clock and the replies must
be equal field by field."""

import asyncio
import uuid
from decimal import Decimal as D

import pytest
import redis
import redis.asyncio

from quota_client import Cost, Quota, Usage

from conftest import aclose, tree_name

CONFIGS = [(2, False), (2, True), (3, False), (3, True)]


def script(price):
    """Steps: (label, call(q, tree)) or (label, None, call(q)) for a server-wide step run once."""
    return [
        ("set root", lambda q, t: q.set(t, "/", "monthly", metric="credits", limit=100, window="month", low=10)),
        ("set cap", lambda q, t: q.set(t, "p", "cap", metric="credits", limit=50)),
        ("set tokens", lambda q, t: q.set(t, "p", "toks", metric="input_tokens", limit=10 ** 6, service="chat")),
        ("access empty", lambda q, t: q.access(t, "p")),
        ("allow", lambda q, t: q.allow(t, "p", service="chat")),
        ("allow model", lambda q, t: q.allow(t, "p", service="img", model="pix")),
        ("access", lambda q, t: q.access(t, "p")),
        ("label", lambda q, t: q.label(t, "p", note="n", tags=["x", "y"])),
        ("label clear", lambda q, t: q.label(t, "p", note="", tags="")),
        ("reserve", lambda q, t: q.reserve(t, path="p", id="r1", service="chat", cost={"credits": 10})),
        ("reserve brief meta", lambda q, t: q.reserve(t, path="p", id="r2", service="chat", brief=True,
                                                       meta={"user": "u7"}, cost={"credits": D("5.5")})),
        ("reserve repeat", lambda q, t: q.reserve(t, path="p", id="r2", service="chat", brief=True,
                                                   cost={"credits": D("5.5")})),
        ("denied two", lambda q, t: q.reserve(t, path="p", service="chat", cost={"credits": 99})),
        ("denied access", lambda q, t: q.reserve(t, path="p", cost={"credits": 1})),
        ("usage item", lambda q, t: q.reserve(t, path="p", usage={price: {"input_tokens": 1000, "quality": "hd"}})),
        ("reserve to release", lambda q, t: q.reserve(t, path="p", id="r3", service="chat", cost={"credits": 1})),
        ("release", lambda q, t: q.release(t, "r3")),
        ("release again", lambda q, t: q.release(t, "r3")),
        ("batch upto", lambda q, t: q.reserve(t, path="b", mode="upto", id="b1", items=[Cost(credits=1), Cost(credits=500)])),
        ("release item", lambda q, t: q.release(t, "b1", item=0)),
        ("batch dryrun", lambda q, t: q.reserve(t, path="b", mode="dryrun", items=[Cost(credits=1), Cost(credits=500)])),
        ("holds", lambda q, t: q.holds(t)),
        ("holds empty", lambda q, t: q.holds(t, "nowhere")),
        ("extend", lambda q, t: q.extend(t, "r2", 30000)),
        ("commit over", lambda q, t: q.commit(t, "r2", cost={"credits": 8})),
        ("charge check denied", lambda q, t: q.charge(t, path="p", service="chat", check=True, cost={"credits": 500})),
        ("charge over", lambda q, t: q.charge(t, path="p", service="chat", cost={"credits": 45}, id="c1")),
        ("grant", lambda q, t: q.grant(t, "p", "cap", 20, id="g1", note="promo")),
        ("grants", lambda q, t: q.grants(t, "p", "cap")),
        ("grants empty", lambda q, t: q.grants(t, "/", "monthly")),
        ("charge drawn", lambda q, t: q.charge(t, path="p", service="chat", cost={"credits": 3})),
        ("history empty", lambda q, t: q.history(t, "p", "cap")),
        ("get", lambda q, t: q.get(t, "p")),
        ("member", lambda q, t: q.charge(t, path="members/u1", cost={"credits": 1})),
        ("get root", lambda q, t: q.get(t)),
        ("tree", lambda q, t: q.tree(t)),
        ("tree json", lambda q, t: q.tree(t, format="json")),
        ("tree count", lambda q, t: q.tree(t, count=1)),
        ("revoke", lambda q, t: q.revoke(t, "p", "cap", "g1")),
        ("reset", lambda q, t: q.reset(t, "p", "cap")),
        ("history", lambda q, t: q.history(t, "p", "cap")),
        ("events", lambda q, t: q.events(t)),
        ("events empty", lambda q, t: q.events(t, since=10 ** 6)),
        ("usage", lambda q, t: q.usage(t, "/", by="hour", group="model")),
        ("usage child", lambda q, t: q.usage(t, "/", group="child", metric="credits")),
        ("estimate", None, lambda q: q.estimate(price, {"input_tokens": 10, "quality": "hd"})),
        ("price get", None, lambda q: q.price_get(price)),
        ("clock", None, lambda q: q.clock_advance(61000)),
        ("late commit", lambda q, t: q.commit(t, "r1")),
        ("holds after expiry", lambda q, t: q.holds(t)),
        ("events after expiry", lambda q, t: q.events(t, since=3)),
        ("access clear", lambda q, t: q.access(t, "p", clear=True)),
        ("archive", lambda q, t: q.archive(t, "b")),
        ("restore", lambda q, t: q.restore(t, "b")),
        ("unset", lambda q, t: q.unset(t, "p", "toks")),
        ("delpath", lambda q, t: q.delpath(t, "b")),
        ("price list", None, lambda q: q.price_list()),
        ("plan set", None, lambda q: q.plan_set(price.replace("/", "-"), PLAN)),
        ("plan get", None, lambda q: q.plan_get(price.replace("/", "-"))),
        ("plan list", None, lambda q: q.plan_list()),
        ("assign", lambda q, t: q.assign(t, price.replace("/", "-"))),
        ("get with plan", lambda q, t: q.get(t, "members/u1")),
        ("assign none", lambda q, t: q.assign(t, None)),
    ]


PLAN = {"paths": {"members/*": {"allowance": {"metric": "credits", "limit": "5", "window": "month"}}}}
PRICE = {"metric": "credits", "rates": {"input_tokens": "2/1M"}, "multipliers": {"quality": {"std": "1", "hd": "2"}}}


def _assert_same(label, results):
    first = results[0]
    for (proto, dec), r in zip(CONFIGS[1:], results[1:]):
        assert r == first, f"{label}: RESP{proto} decode_responses={dec} differs from RESP2 bytes:\n{r}\n{first}"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_resp2_equals_resp3(servers, backend, mode):
    server = servers.single(backend)
    price = f"img/p{uuid.uuid4().hex[:8]}"
    base = tree_name("twin")
    trees = [f"{base}-{i}" for i in range(len(CONFIGS))]
    seen = {}

    if mode == "sync":
        clients = [redis.Redis(port=server.port, protocol=p, decode_responses=d) for p, d in CONFIGS]
        qs = [Quota(c) for c in clients]
        qs[0].price_set(price, PRICE)
        for step in script(price):
            if step[1] is None:
                if step[0] == "clock":
                    step[2](qs[0])
                    continue
                results = [step[2](q) for q in qs]
            else:
                results = [step[1](q, t) for q, t in zip(qs, trees)]
            _assert_same(step[0], results)
            seen[step[0]] = results[0]
        for c in clients:
            c.close()
    else:
        async def main():
            clients = [redis.asyncio.Redis(port=server.port, protocol=p, decode_responses=d) for p, d in CONFIGS]
            qs = [Quota(c) for c in clients]
            await qs[0].price_set(price, PRICE)
            for step in script(price):
                if step[1] is None:
                    if step[0] == "clock":
                        await step[2](qs[0])
                        continue
                    results = [await step[2](q) for q in qs]
                else:
                    results = [await step[1](q, t) for q, t in zip(qs, trees)]
                _assert_same(step[0], results)
                seen[step[0]] = results[0]
            for c in clients:
                await aclose(c)

        asyncio.run(main())

    # The script reached what it is for: empty and non-empty maps and lists.
    assert seen["release"].released == {"credits": D(1)} and seen["release again"].duplicate == 1
    assert seen["plan get"].version >= 1 and seen["get with plan"].policies[0].source == "plan"
    assert seen["access empty"].allow == [] and seen["access empty"].deny == []
    assert len(seen["access"].allow) == 2
    assert seen["label clear"].note is None and seen["label clear"].tags == []
    assert seen["denied two"].denied_by == ["/#monthly", "p#cap"] or seen["denied two"].denied_by == ["p#cap"]
    assert len(seen["denied two"].denied_by) >= 1 and seen["denied two"].held == {}
    assert seen["denied access"].denied_by == ["p#access"] and seen["denied access"].checks[0].kind == "access"
    assert seen["reserve repeat"].duplicate == 1
    assert seen["commit over"].overage == {"credits": D("2.5")} and seen["commit over"].released == {"credits": D(0)}
    assert seen["charge check denied"].charged == {} and seen["charge check denied"].allowed == 0
    assert seen["charge over"].over == ["p#cap"]
    assert seen["charge drawn"].drawn and seen["charge drawn"].drawn[0].grant == "g1"
    assert seen["grants empty"] == [] and seen["history empty"] == [] and seen["holds empty"] == []
    assert seen["history"] and seen["events"] and seen["events empty"] == []
    assert any(h.meta == {"user": "u7"} for h in seen["holds"]) and any(h.meta is None for h in seen["holds"])
    assert seen["tree"] == seen["tree json"] and seen["tree count"].truncated == 1
    assert seen["estimate"].multipliers[0].factor == D(2)
    assert seen["late commit"].expired == 1 and seen["holds after expiry"] == []
    assert any(e.type == "expired" for e in seen["events after expiry"])
    assert any(b.spent == {} for b in seen["usage"].buckets) and any(b.spent for b in seen["usage"].buckets)
