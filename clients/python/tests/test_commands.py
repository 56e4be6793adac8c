"""Every command once, with typed reply checks, on both backends, RESP2 and
RESP3, sync and async (the `ctx` fixture)."""

import uuid
from decimal import Decimal

import pytest

from quota_client import (AccessRules, Charge, Check, Commit, Cost, Denied, Estimate, Event, Extend, Grant,
                          GrantReply, HistoryPeriod, Hold, Labels, Node, Plan, PolicyState, Price, Release,
                          Reservation, Revoke, TreeNode, Usage, UsageReport)

from conftest import tree_name

D = Decimal


def price_name():
    return f"chat/m{uuid.uuid4().hex[:8]}"


PRICE = {"metric": "credits", "rates": {"input_tokens": "2/1M", "output_tokens": "10/1M"}, "minimum": "0.0001"}


def test_every_command(ctx):
    async def body(q):
        t, t2, pname, plan = tree_name(), tree_name(), price_name(), f"plan-{uuid.uuid4().hex[:6]}"
        # policies and rules
        assert await q.set(t, "/", "monthly", metric="credits", limit=100, window="month", warn=[50, 90],
                           low=5) == "OK"
        assert await q.set(t, "p", "cap", metric="credits", limit=D("50")) == "OK"
        assert await q.set(t, "p", "roll", metric="tokens", limit="1000", window="rolling 24h") == "OK"
        assert await q.set(t, "p", "conc", metric="requests", limit=3, inflight=True) == "OK"
        assert await q.allow(t, "p", service="chat") == 1
        assert await q.allow(t, "p", service="chat") == 0
        assert await q.deny(t, "p", service="chat", model="bad") == 1
        acc = await q.access(t, "p")
        assert isinstance(acc, AccessRules) and acc.path == "p"
        assert [(r.service, r.model) for r in acc.allow] == [("chat", None)]
        assert [(r.service, r.model) for r in acc.deny] == [("chat", "bad")]
        assert await q.deny(t, "p", service="chat", model="bad", remove=True) == 1
        lab = await q.label(t, "p", note="project p", tags=["b", "a"])
        assert isinstance(lab, Labels) and lab.note == "project p" and lab.tags == ["a", "b"]

        # price book
        assert await q.price_set(pname, PRICE) == "OK"
        assert pname in await q.price_list()
        price = await q.price_get(pname)
        assert isinstance(price, Price) and price.metric == "credits" and price.rates["output_tokens"] == "10/1M"
        assert price.minimum == D("0.0001")
        est = await q.estimate(pname, {"input_tokens": 1000, "output_tokens": 500})
        assert isinstance(est, Estimate) and est.cost == D("0.007") and est.price == pname
        assert [(l.name, l.quantity, l.rate) for l in est.lines] == [("input_tokens", D(1000), D("0.000002")),
                                                                      ("output_tokens", D(500), D("0.00001"))]
        assert est.minimum is None and est.multipliers == []
        assert est.charges == {"credits": D("0.007"), "input_tokens": D(1000), "output_tokens": D(500)}

        # spending
        r = await q.reserve(t, path="p", also=["members/u7"], service="chat", model="gpt", ttl_ms=5000,
                            meta={"user": "u7", "feature": "chat"}, cost={"credits": D("30")})
        assert isinstance(r, Reservation) and r.allowed == 1 and r.duplicate == 0 and r.items == 1
        assert r.cost == {"credits": D(30)} and r.held == {"credits": D(30)} and r.denied_by == []
        assert r.message == "reserved 30 credits"
        assert all(isinstance(c, Check) for c in r.checks) and r.checks[0].kind == "policy"
        assert {c.policy: c.pass_ for c in r.checks} == {"monthly": 1, "cap": 1}
        monthly = next(c for c in r.checks if c.policy == "monthly")
        assert monthly.period_start < monthly.period_end and monthly.remaining == D(100)

        holds = await q.holds(t)
        assert len(holds) == 1 and isinstance(holds[0], Hold)
        h = holds[0]
        assert h.id == r.id and set(h.paths) == {"p", "members/u7"} and h.held == {"credits": D(30)}
        assert dict(h.meta) == {"user": "u7", "feature": "chat"} and h.items == 1
        if ctx.backend == "module":  # the module keeps META in the order given (see the report for Lua)
            assert list(h.meta) == ["user", "feature"]

        ext = await q.extend(t, r.id, 10000)
        assert isinstance(ext, Extend) and ext.id == r.id and ext.expires_at > r.expires_at

        denied = await q.reserve(t, path="p", service="chat", cost={"credits": 25}, brief=True)
        assert denied.allowed == 0 and denied.id is None and denied.denied_by == ["p#cap"]
        assert denied.held == {} and denied.checks  # a denial always has its checks
        with pytest.raises(Denied) as info:
            denied.raise_for_denial()
        assert info.value.denied_by == ["p#cap"] and info.value.reply is denied

        c = await q.commit(t, r.id, cost={"credits": D("27.5")})
        assert isinstance(c, Commit) and c.charged == {"credits": D("27.5")} and c.released == {"credits": D("2.5")}
        assert c.overage == {} and c.over == [] and c.drawn == [] and c.expired == 0 and c.duplicate == 0
        again = await q.commit(t, r.id, cost={"credits": D("27.5")})
        assert again.duplicate == 1

        r2 = await q.reserve(t, path="p", service="chat", usage={pname: {"input_tokens": 1000}})
        assert r2.allowed and r2.cost == {"credits": D("0.002"), "input_tokens": D(1000)}
        rel = await q.release(t, r2.id)
        assert isinstance(rel, Release) and rel.released == {"credits": D("0.002"), "input_tokens": D(1000)}
        assert rel.duplicate == 0 and rel.expired == 0

        ch = await q.charge(t, path="p", service="chat", check=True, cost={"credits": 3})
        assert isinstance(ch, Charge) and ch.allowed == 1 and ch.charged == {"credits": D(3)} and ch.over == []
        ch2 = await q.charge(t, path="p", service="chat", usage=Usage(pname, {"output_tokens": 100}), brief=True)
        assert ch2.allowed and ch2.checks is None and ch2.charged["output_tokens"] == D(100)

        batch = await q.reserve(t, path="q", mode="dryrun",
                                items=[Cost(credits=10), Cost({"credits": 20}), Cost(credits=1000)])
        assert batch.allowed == 0 and batch.fits == 2 and batch.items == 3 and batch.reserved == 0
        upto = await q.reserve(t, path="q", mode="upto", id="b1",
                               items=[Cost(credits=10), Cost({"credits": 20}), Cost(credits=1000)])
        assert upto.allowed == 1 and upto.reserved == 2 and upto.id == "b1"
        assert (await q.commit(t, "b1", item=0)).charged == {"credits": D(10)}
        assert (await q.release(t, "b1", item=1)).released == {"credits": D(20)}

        # reading
        node = await q.get(t, "p")
        assert isinstance(node, Node) and node.path == "p" and node.note == "project p" and node.tags == ["a", "b"]
        assert all(isinstance(p, PolicyState) for p in node.policies)
        cap = node.policy_named("cap")
        assert cap.used == D("30.501") and cap.held == 0 and cap.remaining == D("19.499") and cap.warn == [80, 90]
        assert cap.source == "tree" and node.plan is None and node.plan_missing == 0
        assert node.policy_named("conc").inflight == 1
        assert node.policy_named("roll").window == "rolling 1d"
        assert node.access.allow[0].service == "chat" and node.access.deny == []
        root = await q.get(t)
        assert root.policy_named("monthly").low == D(5) and root.policy_named("monthly").anchor == 1

        tree = await q.tree(t)
        assert isinstance(tree, TreeNode) and tree.nodes >= 4 and tree.truncated == 0
        assert [n.path for n in tree.walk()][:2] == ["/", "members"]
        assert await q.tree(t, format="json") == tree
        shallow = await q.tree(t, depth=0)
        assert shallow.children == [] and shallow.path == "/"

        # credits
        g = await q.grant(t, "/", "monthly", D("20"), id="g1", note="promo", priority=10)
        assert isinstance(g, GrantReply) and g.duplicate == 0 and g.granted == D(20) and g.base_limit == D(100)
        assert isinstance(g.grant, Grant) and g.grant.id == "g1" and g.grant.amount == D(20) and g.grant.priority == 10
        gs = await q.grants(t, "/", "monthly")
        assert [x.id for x in gs] == ["g1"] and gs[0].note == "promo" and gs[0].expires_at == 0
        rv = await q.revoke(t, "/", "monthly", "g1")
        assert isinstance(rv, Revoke) and rv.id == "g1" and rv.removed == D(20)
        closed = await q.reset(t, "/", "monthly")
        assert isinstance(closed, HistoryPeriod) and closed.used > 0 and closed.allowance == D(100)
        hist = await q.history(t, "/", "monthly")
        assert hist == [closed]

        ev = await q.events(t)
        assert ev and all(isinstance(e, Event) for e in ev) and [e.seq for e in ev] == list(range(1, len(ev) + 1))
        assert ev[-1].type == "reset" and ev[-1].periods == 1 and ev[-1].held is None
        assert await q.events(t, since=ev[-1].seq) == []

        use = await q.usage(t, "/", by="day", group="service")
        assert isinstance(use, UsageReport) and use.by == "day" and use.total["credits"] > 0
        assert use.groups[0].name == "chat" and use.groups[0].service == "chat"
        assert use.buckets[-1].spent == use.total and all(b.spent == {} for b in use.buckets[:-1])

        assert await q.archive(t, "q") == 1 and await q.archive(t, "q") == 0
        arch = await q.reserve(t, path="q", cost={"credits": 1})
        assert arch.allowed == 0 and arch.denied_by == ["q#archived"] and arch.checks[0].kind == "archived"
        assert await q.restore(t, "q") == 1

        # plans
        version = await q.plan_set(plan, {"paths": {"members/*": {"allowance": {"metric": "credits", "limit": "5"}}}})
        assert version == 1
        assert plan in await q.plan_list()
        pg = await q.plan_get(plan)
        assert isinstance(pg, Plan) and pg.version == 1 and "members/*" in pg.paths
        assert await q.assign(t2, plan) == "OK"
        member = await q.get(t2, "/")
        assert member.plan == plan and member.plan_version == 1
        assert await q.assign(t2, None) == "OK"
        assert await q.plan_del(plan) == 1 and await q.plan_del(plan) == 0

        # removing
        assert await q.unset(t, "p", "roll") == "OK"
        assert await q.delpath(t, "members") == 2  # members and members/u7
        assert await q.access(t, "p", clear=True) == 1
        assert await q.price_del(pname) == 1

        # the test clock, and the version
        now = await q.clock_get()
        assert await q.clock_advance(1000) == now + 1000
        assert await q.clock_set(now + 2000) == now + 2000
        v = await q.version()
        assert (v is None) if ctx.backend == "module" else (v.count(".") == 2)

    ctx.run(body)


def test_every_option_reaches_the_server(ctx):
    async def body(q):
        t = tree_name()
        now = await q.clock_get()
        await q.set(t, "/", "m", metric="credits", limit=100, window="month", anchor=15, mode="block",
                    warn="70,95", rollover=150, low=D("2.5"))
        pol = (await q.get(t)).policy_named("m")
        assert (pol.anchor, pol.mode, pol.warn, pol.rollover, pol.low) == (15, "block", [70, 95], D(150), D("2.5"))
        await q.set(t, "a/x", "svc", metric="credits", limit=5, service="chat", model="gpt")
        svc = (await q.get(t, "a/x")).policy_named("svc")
        assert (svc.service, svc.model) == ("chat", "gpt")
        g1 = await q.grant(t, "/", "m", 5, duration="7d")
        assert g1.grant.expires_at == now + 7 * 86400000
        g2 = await q.grant(t, "/", "m", 5, expires=now + 1000, id="g2")
        assert g2.grant.expires_at == now + 1000 and g2.grant.id == "g2"
        g3 = await q.grant(t, "/", "m", 5, period=True)
        assert g3.grant.period == 1
        assert len(await q.grants(t, "/", "m", count=2)) == 2
        for name in ("b", "c", "d"):
            await q.label(t, f"kids/{name}", tags=["x"] if name != "c" else ["y"])
        page = await q.tree(t, "kids", depth=1, after="b")
        assert [c.path for c in page.children] == ["kids/c", "kids/d"]
        tagged = await q.tree(t, "kids", tag="y")
        assert [c.path for c in tagged.children] == ["kids/c"]
        await q.archive(t, "kids/d")
        assert [c.path for c in (await q.tree(t, "kids")).children] == ["kids/b", "kids/c"]
        assert [c.archived for c in (await q.tree(t, "kids", archived=True)).children] == [None, None, 1]
        assert (await q.tree(t, count=2)).truncated == 1
        for i in range(3):
            await q.reserve(t, path="a/x", also="kids/b", ttl_ms=1000 + i, cost={"credits": 1})
        assert len(await q.holds(t, "kids", count=2)) == 2 and await q.holds(t, "a") != []
        assert (await q.label(t, "kids/b", tags=[])).tags == []
        use = await q.usage(t, "/", since=now - 3600000, until=now, by="hour", metric="credits", service="chat",
                            model="gpt")
        assert use.by == "hour" and use.until == now
        assert len(await q.events(t, since=0, count=1)) <= 1
        with pytest.raises(ValueError):
            await q.reserve(t, path="p", cost={"credits": 1}, usage={"a/b": {"x": 1}})
        with pytest.raises(ValueError):
            await q.reserve(t, path="p", usage={"a/b": {"x": 1}, "c/d": {"x": 1}})
        with pytest.raises(ValueError):
            await q.reserve(t, path="p", model="gpt", cost={"credits": 1})

    ctx.run(body)
