"""hold(), generate_all() and follow_events(), sync and async, on both
backends."""

import asyncio
from decimal import Decimal as D

import pytest
import redis
import redis.asyncio

from quota_client import Batch, Cost, Denied, Event, Gap, Quota, Usage

from conftest import aclose, tree_name

MODES = ["sync", "async"]


def run(server, mode, body, **kw):
    """body(q) with a sync Quota, or awaited with an AsyncQuota."""
    if mode == "sync":
        client = redis.Redis(port=server.port, **kw)
        try:
            return body(Quota(client))
        finally:
            client.close()

    async def main():
        client = redis.asyncio.Redis(port=server.port, **kw)
        try:
            return await body(Quota(client))
        finally:
            await aclose(client)

    return asyncio.run(main())


class Boom(Exception):
    pass


# ----- hold() ---------------------------------------------------------------------


def hold_checks(q, t, handles):
    """What the holds left behind (sync reads)."""
    node = q.get(t, "p")
    assert q.holds(t) == []
    return node.policy_named("cap").used


@pytest.mark.parametrize("mode", MODES)
def test_hold(servers, backend, mode):
    server = servers.single(backend)
    t = tree_name()
    check = Quota(server.redis())
    check.set(t, "p", "cap", metric="credits", limit=100)

    if mode == "sync":
        def body(q):
            with q.hold(t, path="p", cost={"credits": 30}) as h:  # commits what was reserved
                assert h.reservation.allowed == 1 and h.id and q.holds(t)[0].id == h.id
            assert h.commit.charged == {"credits": D(30)}
            with q.hold(t, path="p", cost={"credits": 30}) as h2:  # commits the actual cost
                h2.actual(cost={"credits": D("12.5")})
            assert h2.commit.charged == {"credits": D("12.5")} and h2.commit.released == {"credits": D("17.5")}
            with pytest.raises(Boom):
                with q.hold(t, path="p", cost={"credits": 30}) as h3:  # releases on an exception
                    raise Boom()
            assert h3.commit is None and h3.release.released == {"credits": D(30)}
            with pytest.raises(Denied) as info:
                with q.hold(t, path="p", cost={"credits": 1000}):
                    raise AssertionError("the body must not run")
            assert info.value.denied_by == ["p#cap"] and info.value.reply.allowed == 0
            assert "not enough credits" in info.value.message
    else:
        async def body(q):
            async with q.hold(t, path="p", cost={"credits": 30}) as h:
                assert h.reservation.allowed == 1 and (await q.holds(t))[0].id == h.id
            assert h.commit.charged == {"credits": D(30)}
            async with q.hold(t, path="p", cost={"credits": 30}) as h2:
                h2.actual(cost={"credits": D("12.5")})
            assert h2.commit.charged == {"credits": D("12.5")}
            with pytest.raises(Boom):
                async with q.hold(t, path="p", cost={"credits": 30}) as h3:
                    raise Boom()
            assert h3.release.released == {"credits": D(30)}
            with pytest.raises(Denied) as info:
                async with q.hold(t, path="p", cost={"credits": 1000}):
                    raise AssertionError("the body must not run")
            assert info.value.denied_by == ["p#cap"]

    run(server, mode, body)
    assert check.holds(t) == []
    assert check.get(t, "p").policy_named("cap").used == D("42.5")
    check.client.close()


@pytest.mark.parametrize("mode", MODES)
def test_hold_with_usage(servers, backend, mode):
    server = servers.single(backend)
    t, price = tree_name(), f"chat/h{tree_name('')[1:]}"
    check = Quota(server.redis())
    check.price_set(price, {"metric": "credits", "rates": {"input_tokens": "1/1K", "output_tokens": "2/1K"}})
    usage = {price: {"input_tokens": 1000, "output_tokens": 4000}}
    actual = {price: {"input_tokens": 1000, "output_tokens": 500}}

    if mode == "sync":
        def body(q):
            with q.hold(t, path="p", usage=usage, service="chat") as h:
                assert h.reservation.cost["credits"] == D(9)
                h.actual(usage=actual)
            return h
    else:
        async def body(q):
            async with q.hold(t, path="p", usage=usage) as h:
                h.actual(usage=Usage(price, actual[price]))
            return h

    h = run(server, mode, body)
    assert h.commit.charged == {"credits": D(2), "input_tokens": D(1000), "output_tokens": D(500)}
    assert h.commit.released["credits"] == D(7)
    check.client.close()


# ----- generate_all() ---------------------------------------------------------------


def video_items(n, price, seconds=6):
    return [Usage(price, {"video_seconds": seconds, "resolution": "1080p"}) for _ in range(n)]


@pytest.mark.parametrize("mode", MODES)
def test_generate_all(servers, backend, mode):
    server = servers.single(backend)
    t, price = tree_name(), f"video/g{tree_name('')[1:]}"
    check = Quota(server.redis())
    check.price_set(price, {"metric": "credits", "rates": {"video_seconds": "2"},
                            "multipliers": {"resolution": {"720p": "1", "1080p": "1.5"}}})
    check.set(t, "/", "monthly", metric="credits", limit=95, window="month")
    asked = []

    def choose_first(preview):
        asked.append(preview.fits)
        return "first"

    async def choose_stop(preview):
        asked.append(preview.fits)
        return "stop"

    if mode == "sync":
        def body(q):
            everything = q.generate_all(t, path="a", items=video_items(2, price), choose=None)  # 36: all fit
            assert everything.choice == "all" and everything.reserved == 2 and asked == []
            assert everything.commit(0).charged == {"credits": D(18), "video_seconds": D(6)}
            assert everything.release(1).released["credits"] == D(18)
            stopped = q.generate_all(t, path="b", items=video_items(10, price), choose=lambda p: "stop")
            assert stopped.choice == "stop" and stopped.reservation is None and stopped.reserved == 0
            first = q.generate_all(t, path="b", items=video_items(10, price), choose=choose_first, id="gen-1",
                                   ttl_ms=60000)
            assert asked == [4] and first.choice == "first" and first.reserved == 4 and first.id == "gen-1"
            assert first.preview.fits == 4 and first.preview.message.startswith("enough credits for 4 of 10 items")
            assert first.reservation.duplicate == 0
            retry = q.generate_all(t, path="b", items=video_items(10, price), choose="first", id="gen-1")
            assert retry.reservation.duplicate == 1 and retry.reservation.id == "gen-1"
            assert q.get(t).policy_named("monthly").held == D(72)  # held once
            assert first.extend(120000).id == "gen-1"
            c = first.commit(0, usage={price: {"video_seconds": 5, "resolution": "1080p"}})
            assert c.charged["credits"] == D(15)
            first.release(1)
            with pytest.raises(IndexError):
                first.commit(4)
            for i in (2, 3):
                first.commit(i)
            nothing = q.generate_all(t, path="c", items=video_items(3, price, seconds=100), choose="first")
            assert nothing.choice == "none" and nothing.reserved == 0
    else:
        async def body(q):
            everything = await q.generate_all(t, path="a", items=video_items(2, price), choose=None)
            assert everything.choice == "all" and everything.reserved == 2
            await everything.commit(0)
            await everything.release(1)
            stopped = await q.generate_all(t, path="b", items=video_items(10, price), choose=choose_stop)
            assert stopped.choice == "stop" and stopped.reservation is None and asked == [4]
            first = await q.generate_all(t, path="b", items=video_items(10, price), choose="first", id="gen-1")
            assert first.reserved == 4
            retry = await q.generate_all(t, path="b", items=video_items(10, price), choose="first", id="gen-1")
            assert retry.reservation.duplicate == 1
            assert (await q.get(t)).policy_named("monthly").held == D(72)
            await first.extend(120000)
            await first.commit(0, usage={price: {"video_seconds": 5, "resolution": "1080p"}})
            await first.release(1)
            for i in (2, 3):
                await first.commit(i)

    run(server, mode, body)
    assert check.holds(t) == []
    assert check.get(t).policy_named("monthly").used == D(18 + 15 + 18 + 18)
    check.client.close()


# ----- follow_events() --------------------------------------------------------------


FIRED = {}


def fire_warning(q, t, n):
    """n events: each charge crosses the threshold of a fresh policy."""
    for _ in range(n):
        i = FIRED[t] = FIRED.get(t, -1) + 1
        q.set(t, "/", f"w{i}", metric=f"m{i}", limit=10, warn=[50])
        q.charge(t, path="/", cost={f"m{i}": 6})


@pytest.mark.parametrize("mode", MODES)
def test_follow_events_catches_up_then_follows(servers, backend, mode):
    server = servers.single(backend)
    t = tree_name()
    admin = Quota(server.redis())
    fire_warning(admin, t, 3)  # fired while nobody listens
    assert [e.seq for e in admin.events(t)] == [1, 2, 3]

    if mode == "sync":
        def body(q):
            feed = q.follow_events(t, since=1, count=1, idle_timeout=10)  # pages of one: the catch-up repeats
            got = [next(feed), next(feed)]
            assert [e.seq for e in got] == [2, 3] and all(isinstance(e, Event) for e in got)
            assert got[0].type == "warning" and got[0].threshold == 50 and got[0].used == D(6)
            fire_warning(admin, t, 2)  # live now
            got += [next(feed), next(feed)]
            feed.close()
            return got, feed.last
    else:
        async def body(q):
            feed = q.follow_events(t, since=1, count=1, idle_timeout=10)
            got = [await feed.__anext__(), await feed.__anext__()]
            fire_warning(admin, t, 2)
            async for e in feed:
                got.append(e)
                if len(got) == 4:
                    break
            await feed.aclose()
            return got, feed.last

    got, last = run(server, mode, body)
    assert [e.seq for e in got] == [2, 3, 4, 5] and last == 5  # once each, in order, no duplicate
    assert all(e.tree == t for e in got)
    assert got[3].policy == "w4" and got[3].metric == "m4" and got[3].type == "warning"

    # Resuming from the cursor delivers what came after it, once.
    fire_warning(admin, t, 1)
    if mode == "sync":
        def resume(q):
            with q.follow_events(t, since=last, idle_timeout=10) as feed:
                return next(feed)
    else:
        async def resume(q):
            async with q.follow_events(t, since=last, idle_timeout=10) as feed:
                return await feed.__anext__()
    assert run(server, mode, resume).seq == 6
    admin.client.close()


@pytest.mark.parametrize("mode", MODES)
def test_follow_events_reports_a_wrapped_log(servers, backend, mode):
    server = servers.single(backend, events_len=5)
    t = tree_name()
    admin = Quota(server.redis())
    fire_warning(admin, t, 8)  # the log keeps the last 5: 4..8
    assert [e.seq for e in admin.events(t)] == [4, 5, 6, 7, 8]

    if mode == "sync":
        def body(q):
            feed = q.follow_events(t, since=2, idle_timeout=10)
            out = [next(feed) for _ in range(6)]
            feed.close()
            return out
    else:
        async def body(q):
            feed = q.follow_events(t, since=2, idle_timeout=10)
            out = [await feed.__anext__() for _ in range(6)]
            await feed.aclose()
            return out

    out = run(server, mode, body, protocol=3)
    assert isinstance(out[0], Gap) and out[0].last == 2 and out[0].first == 4 and out[0].lost == 1
    assert [e.seq for e in out[1:]] == [4, 5, 6, 7, 8]
    # From a cursor the log still covers, no gap.
    feed = admin.follow_events(t, since=3, idle_timeout=10)
    assert next(feed).seq == 4
    feed.close()
    admin.client.close()


@pytest.mark.parametrize("mode", MODES)
def test_follow_events_catches_up_after_a_dropped_connection(servers, backend, mode):
    server = servers.single(backend)
    t = tree_name()
    admin = Quota(server.redis())
    fire_warning(admin, t, 1)

    def drop():
        # Kill every subscriber connection: events fired now reach nobody live.
        admin.client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        fire_warning(admin, t, 2)

    if mode == "sync":
        def body(q):
            with q.follow_events(t, since=0, idle_timeout=10) as feed:
                got = [next(feed)]
                drop()
                got += [next(feed), next(feed)]
                fire_warning(admin, t, 1)  # live again
                got.append(next(feed))
            return got
    else:
        async def body(q):
            async with q.follow_events(t, since=0, idle_timeout=10) as feed:
                got = [await feed.__anext__()]
                drop()
                got += [await feed.__anext__(), await feed.__anext__()]
                fire_warning(admin, t, 1)
                got.append(await feed.__anext__())
            return got

    got = run(server, mode, body, decode_responses=True)
    assert [e.seq for e in got] == [1, 2, 3, 4]
    admin.client.close()


def test_follow_events_raises_when_the_server_is_gone():
    # Nothing listens on port 1: the feed raises redis-py's ConnectionError (no retry loop).
    q = Quota(redis.Redis(port=1), backend="module")
    with pytest.raises(redis.ConnectionError):
        next(q.follow_events("t", since=0, idle_timeout=1))
