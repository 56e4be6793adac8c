"""Tests of how the Python client answers the findings of review20
(/work/brief/review20.md) that came without a regression test, or where the
fix chose a behaviour the reviewer's test does not pin down. The reviewer's
own tests are in test_review20.py."""

import warnings

import pytest

from quota_client import AlreadySettled, HoldExpired, Quota

from conftest import tree_name


# F8: a hold that expired while the body ran is still committed (the work is
# done), but never silently: hold() warns HoldExpired and the handle says
# expired 1 (the commit reply, with its overage, is on handle.commit).
def test_F8_hold_that_expired_warns(servers, backend):
    q = Quota(servers.single(backend).redis())
    t = tree_name()
    q.set(t, "/", "cap", metric="credits", limit=100)
    with pytest.warns(HoldExpired) as caught:
        with q.hold(t, path="h", ttl_ms=1000, cost={"credits": 5}) as h:
            q.clock_advance(5000)
    assert h.expired == 1 and h.commit.expired == 1 and h.commit.overage == {"credits": 5}
    assert caught[0].message.handle is h
    with warnings.catch_warnings():
        warnings.simplefilter("error", HoldExpired)  # a caller may make it an exception
        with pytest.raises(HoldExpired):
            with q.hold(t, path="h", ttl_ms=1000, cost={"credits": 5}):
                q.clock_advance(5000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with q.hold(t, path="h", cost={"credits": 5}) as h2:  # in time: no warning
            pass
    assert h2.expired == 0


# F9: the retry of a request whose first attempt reserved but never settled
# (it crashed before its commit) still runs: the hold is live, and the
# retry's commit is the one that charges. Only a settled id is refused.
def test_F9_hold_retry_of_a_live_reservation_runs(servers, backend):
    q = Quota(servers.single(backend).redis())
    t = tree_name()
    q.set(t, "/", "cap", metric="credits", limit=100)
    first = q.reserve(t, path="p", id="req-2", cost={"credits": 10})  # the attempt that crashed
    assert first.allowed == 1
    runs = []
    with q.hold(t, path="p", id="req-2", cost={"credits": 10}) as h:
        runs.append(1)
    assert runs == [1] and h.reservation.duplicate == 1 and h.commit.duplicate == 0
    assert q.get(t).policy_named("cap").used == 10
    with pytest.raises(AlreadySettled):  # and now it is settled
        with q.hold(t, path="p", id="req-2", cost={"credits": 10}):
            runs.append(2)
    q.release(t, q.reserve(t, path="p", id="req-3", cost={"credits": 1}).id)
    with pytest.raises(AlreadySettled):  # released
        with q.hold(t, path="p", id="req-3", cost={"credits": 1}):
            runs.append(3)
    assert runs == [1]


# F4: every public method is annotated (the reviewer's test checks a few on
# Quota), and AsyncQuota's coroutine signatures, which type checkers read
# from its `if TYPE_CHECKING:` block, match _Commands' (same parameters and
# annotations, same return type wrapped in a coroutine). Checked with
# mypy --strict on a user file when written (clients/python/README.md).
def test_F4_async_signatures_match_the_sync_ones():
    import ast
    import inspect
    import typing

    import quota_client.client as client
    from quota_client import AsyncQuota

    public = [n for n, f in vars(client._Commands).items() if callable(f) and not n.startswith("_")]
    for name in public:
        hints = typing.get_type_hints(getattr(Quota, name))
        assert "return" in hints, name
    for name in ("__init__", "client", "backend"):
        f = getattr(Quota, name)
        assert "return" in typing.get_type_hints(getattr(f, "fget", f)), name
    assert "return" in typing.get_type_hints(AsyncQuota.detect)

    module = ast.parse(inspect.getsource(client))
    classes = {n.name: n for n in module.body if isinstance(n, ast.ClassDef)}
    block = next(n for n in classes["AsyncQuota"].body if isinstance(n, ast.If))
    stubs = {f.name: f for f in block.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))}
    sync = {f.name: f for f in classes["_Commands"].body if isinstance(f, ast.FunctionDef)}
    assert set(stubs) == set(public)
    for name in public:
        want_async = name not in ("hold", "follow_events")
        assert isinstance(stubs[name], ast.AsyncFunctionDef) == want_async, name
        assert ast.dump(stubs[name].args) == ast.dump(sync[name].args), name
        assert ast.dump(stubs[name].returns) == ast.dump(sync[name].returns), name


# F11: between generate_all()'s preview and its RESERVE ALL another request
# takes the room (the race, made deterministic: the reserve below charges
# first). The ALL reservation is refused; generate_all() previews again and
# asks choose() on the new preview, instead of returning choice "all" with
# nothing held. Refused every time (3 previews): Denied.
class _Racing(Quota):
    """A Quota whose non-DRYRUN reserves are preceded by another request's
    charge of `steal` credits (once each, or every time)."""

    def __init__(self, client, steal, every_time=False):
        super().__init__(client)
        self.steal, self.every_time, self.stolen = steal, every_time, 0

    def reserve(self, tree, **kw):
        if kw.get("mode") == "dryrun" or not (self.every_time or not self.stolen):
            return super().reserve(tree, **kw)
        self.stolen += 1
        self.charge(tree, path="other", cost={"credits": self.steal})
        try:
            return super().reserve(tree, **kw)
        finally:
            if self.every_time:  # the other request gives it back (a negative charge)
                self.charge(tree, path="other", cost={"credits": -self.steal})


def test_F11_generate_all_previews_again_when_the_all_reserve_is_refused(servers, backend):
    from quota_client import Denied

    t = tree_name()
    q = _Racing(servers.single(backend).redis(), steal=5)
    q.set(t, "/", "cap", metric="credits", limit=10)
    asked = []

    def choose(preview):
        asked.append((preview.fits, preview.items))
        return "first"

    batch = q.generate_all(t, path="p", items=[{"credits": 3}, {"credits": 3}], choose=choose, id="g-1")
    assert asked == [(1, 2)], "the second preview (5 left: one item fits) is what choose() saw"
    assert batch.choice == "first" and batch.reserved == 1 and batch.reservation.allowed == 1
    assert batch.preview.fits == 1 and q.holds(t)[0].id == "g-1"

    t = tree_name()
    q = _Racing(servers.single(backend).redis(), steal=50, every_time=True)
    q.set(t, "/", "cap", metric="credits", limit=100)
    with pytest.raises(Denied):  # each preview sees 100 (both fit), each ALL only 50
        q.generate_all(t, path="p", items=[{"credits": 49}, {"credits": 49}], choose="stop")
    assert q.stolen == 3 and q.holds(t) == []


# F12: on RESP3 redis-py's PubSub without a push handler logs every message
# (event payloads, META user ids included) to stderr through the
# "push_response" logger. The feed passes its own handler: nothing is logged.
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_F12_follow_events_on_resp3_logs_nothing(servers, backend, mode, caplog):
    import asyncio
    import logging

    import redis
    import redis.asyncio

    from conftest import aclose

    server = servers.single(backend)
    t = tree_name()
    q = Quota(server.redis())
    q.set(t, "/", "cap", metric="credits", limit=100)
    caplog.set_level(logging.DEBUG, logger="push_response")
    if mode == "sync":
        client = redis.Redis(port=server.port, protocol=3)
        try:
            q.charge(t, path="x", meta={"user": "u7"}, cost={"credits": 85})  # warning 80: the catch-up
            with Quota(client).follow_events(t, 0, idle_timeout=0.5) as feed:
                got = [next(feed)]  # subscribed (the confirmation is a push), caught up
                q.charge(t, path="x", meta={"user": "u7"}, cost={"credits": 10})  # warning 90: live
                got += list(feed)
        finally:
            client.close()
    else:
        async def main():
            client = redis.asyncio.Redis(port=server.port, protocol=3)
            try:
                q.charge(t, path="x", meta={"user": "u7"}, cost={"credits": 85})
                async with Quota(client).follow_events(t, 0, idle_timeout=0.5) as feed:
                    got = [await feed.__anext__()]
                    q.charge(t, path="x", meta={"user": "u7"}, cost={"credits": 10})
                    return got + [e async for e in feed]
            finally:
                await aclose(client)

        got = asyncio.run(main())
    assert [(e.seq, e.threshold) for e in got] == [(1, 80), (2, 90)]
    assert [r for r in caplog.records if r.name == "push_response"] == []


# F15: a server-wide write on a module cluster goes primary by primary; when
# one fails after others applied it, PartialWrite says which took it
# (.results) and which did not (.errors), instead of the driver's error
# alone. All failing: the first error, as for any command. (A stub cluster:
# a real one would need a primary down during the session's shared cluster.)
def test_F15_partial_server_wide_write_says_which_primaries_took_it():
    import redis.cluster
    import redis.exceptions

    from quota_client import PartialWrite

    class Node:
        def __init__(self, name):
            self.name = name

    class Cluster(redis.cluster.RedisCluster):
        def __init__(self, down):
            self.down, self.sent = down, []

        def get_primaries(self):
            return [Node("a:1"), Node("b:2"), Node("c:3")]

        def get_default_node(self):
            return Node("a:1")

        def execute_command(self, *args, target_nodes=None, **kw):
            self.sent.append((target_nodes.name, args))
            if target_nodes.name in self.down:
                raise redis.exceptions.ConnectionError(f"Error connecting to {target_nodes.name}")
            return 3 if args[:2] == ("QUOTA.PLAN", "SET") else b"OK"

    q = Quota(Cluster(down={"b:2"}), backend="module")
    with pytest.raises(PartialWrite) as info:
        q.plan_set("pro", '{"policies":[]}')
    err = info.value
    assert err.results == {"a:1": 3, "c:3": 3} and list(err.errors) == ["b:2"]
    assert isinstance(err.errors["b:2"], redis.exceptions.ConnectionError)
    assert err.command == "QUOTA.PLAN SET" and "2 of 3 primaries" in err.message
    assert [n for n, _ in q.client.sent] == ["a:1", "b:2", "c:3"]

    q = Quota(Cluster(down={"a:1", "b:2", "c:3"}), backend="module")
    with pytest.raises(redis.exceptions.ConnectionError):
        q.clock_advance(5)
    assert Quota(Cluster(down=set()), backend="module").price_set("chat/x", "{}") == "OK"


# F3, the other keywords: bytes are sent as they are wherever a text goes
# (also= as one path, not as its byte values; service=, note=, tags=, mode=).
def test_F3_bytes_keywords_are_sent_as_bytes(servers, backend):
    q = Quota(servers.single(backend).redis())
    t = tree_name()
    q.set(t, "/", "cap", metric="credits", limit=100, warn=b"50")
    r = q.reserve(t, path=b"p", also=b"m", id=b"j-2", service=b"chat", mode=b"all", cost={"credits": 1})
    assert r.allowed == 1 and r.id == "j-2"
    assert q.holds(t, "m")[0].paths == ["p", "m"]
    assert q.label(t, "p", note=b"n", tags=[b"a", b"b"]).tags == ["a", "b"]
    assert q.grant(t, "/", "cap", 5, id=b"g-1", note=b"gift").grant.id == "g-1"


# F2, resuming from the last Event (not its seq): a new feed tells a
# re-created tree's log from the old one by the event at the cursor, even
# when the new log has already reached it (here their times differ).
def test_F2_since_the_last_event_sees_a_recreated_tree(servers, backend):
    from quota_client import Gap

    server = servers.single(backend)
    q = Quota(server.redis())
    t = tree_name()
    q.set(t, "/", "cap", metric="credits", limit=100)
    q.charge(t, path="x", cost={"credits": 95})  # warnings 80, 90: seq 1, 2
    cursor = q.events(t)[-1]
    with q.follow_events(t, cursor, idle_timeout=0.5) as feed:  # the same log: nothing new
        assert list(feed) == [] and feed.last == 2
    server.redis().delete(t)
    q.clock_advance(1000)
    q.set(t, "/", "cap", metric="credits", limit=100)
    q.charge(t, path="x", cost={"credits": 95})  # the new log's seq 1, 2
    with q.follow_events(t, cursor, idle_timeout=0.5) as feed:
        got = list(feed)
    assert isinstance(got[0], Gap) and got[0].reset == 1 and (got[0].last, got[0].first) == (2, 1)
    assert [(e.seq, e.threshold) for e in got[1:]] == [(1, 80), (2, 90)]
    assert feed.last == 2
