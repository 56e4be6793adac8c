"""Amounts (exact in, Decimal out) and errors by kind."""

import asyncio
import uuid
from decimal import Decimal as D

import pytest
import redis
import redis.asyncio

from quota_client import (ArityError, AsyncQuota, Conflict, Cost, EvictionRefused, InvalidAmount, LayoutError,
                          LimitExceeded, NotFound, NotLoaded, PermissionDenied, Quota, QuotaError, QuotaSyntaxError,
                          ServerError, Usage, UnknownMetric, WrongType, error_from_text)

from quota_client.client import SPECS, Spec

from conftest import aclose, tree_name

FLOAT = "amounts are exact: pass Decimal, int or str, not float"


def test_amounts_in_and_out(ctx):
    async def body(q):
        t = tree_name()
        await q.set(t, "/", "big", metric="credits", limit=D("999999999999999"))
        tiny, big = D("0.0000000001"), D("123456789.0123456789")
        for v in (tiny, big, 7, "1.25", D("1E+3"), D("2.50")):
            await q.charge(t, path="p", cost={"credits": v})
        node = await q.get(t, "p")
        assert node.spent == {"credits": tiny + big + 7 + D("1.25") + 1000 + D("2.5")}
        assert node.spent["credits"] == D("123457799.7623456790")
        ch = await q.charge(t, path="p", cost={"credits": tiny})
        assert ch.charged == {"credits": tiny} and str(ch.charged["credits"]) == "1E-10"
        assert (await q.get(t, "p")).spent["credits"].as_tuple().exponent == -10
        neg = await q.charge(t, path="p", cost={"credits": D("-0.5")})
        assert neg.charged == {"credits": D("-0.5")}

    ctx.run(body)


def test_float_is_refused_before_sending():
    # A client that cannot connect: a TypeError, not a ConnectionError, shows nothing was sent.
    q = Quota(redis.Redis(port=1), backend="module")
    calls = [
        lambda: q.reserve("t", path="p", cost={"credits": 0.1}),
        lambda: q.reserve("t", path="p", usage={"chat/x": {"input_tokens": 1.0}}),
        lambda: q.reserve("t", path="p", items=[Cost(credits=1), {"credits": 0.3}]),
        lambda: q.commit("t", "id", cost={"credits": 2.5}),
        lambda: q.charge("t", path="p", cost={"credits": 0.1 + 0.2}),
        lambda: q.set("t", "/", "x", metric="credits", limit=10.0),
        lambda: q.grant("t", "/", "x", 1.5),
        lambda: q.estimate("chat/x", {"input_tokens": 3.0}),
        lambda: q.price_set("chat/x", {"metric": "credits", "rates": {"input_tokens": 0.1}}),
        lambda: Usage("chat/x", {"n": 0.5}),
    ]
    for call in calls:
        with pytest.raises(TypeError, match="amounts are exact"):
            call()
    with pytest.raises(TypeError):
        q.extend("t", "id", 1.5)

    async def main():
        a = Quota(redis.asyncio.Redis(port=1), backend="lua")
        assert isinstance(a, AsyncQuota)
        with pytest.raises(TypeError, match=FLOAT):
            await a.reserve("t", path="p", cost={"credits": 0.1})
        await aclose(a.client)

    asyncio.run(main())


def test_every_error_kind_is_mapped(ctx):
    async def body(q):
        t = tree_name()
        await q.set(t, "/", "m", metric="credits", limit=10)
        r = await q.reserve(t, path="p", cost={"credits": 1})
        await q.commit(t, r.id)
        cases = [
            (QuotaSyntaxError, "ERR syntax:", lambda: q.set(t, "/", "m", metric="credits", limit=1, window="fortnight")),
            (QuotaSyntaxError, ("ERR unknown subcommand", "ERR syntax:"), lambda: raw(q, "price_foo", None, [])),
            (InvalidAmount, "ERR invalid amount", lambda: q.charge(t, path="p", cost={"credits": "abc"})),
            (UnknownMetric, "ERR unknown metric", lambda: q.charge(t, path="p", cost={"Bad-Metric": 1})),
            (LimitExceeded, "ERR limit:", lambda: q.set(t, "/", "w", metric="credits", limit=1, warn=list(range(1, 12)))),
            (NotFound, "NOTFOUND", lambda: q.get(t, "nowhere")),
            (Conflict, "ERR ", lambda: q.release(t, r.id)),
            (ArityError, "ERR wrong number of arguments", lambda: raw(q, "get", t, [])),
        ]
        for cls, prefix, call in cases:
            with pytest.raises(cls) as info:
                await call()
            e = info.value
            assert isinstance(e, QuotaError) and e.message.startswith(prefix), (cls, e.message)
            assert e.kind == cls.kind and e.command and e.command.startswith("QUOTA.")
        # WRONGTYPE: the key holds a string
        s = tree_name("str")
        await raw_redis(q, "SET", s, "x")
        with pytest.raises(WrongType) as info:
            await q.reserve(s, path="p", cost={"credits": 1})
        assert info.value.message.startswith("WRONGTYPE")

    ctx.run(body)


SPECS["price_foo"] = Spec("QUOTA.PRICE", ("FOO",), "quota_price_ro", False, True)


def raw(q, name, key, args):
    """A command with the arguments given, bypassing the methods' checks."""
    return q.q._call(name, key, args, lambda x: x) if hasattr(q, "q") else q._call(name, key, args, lambda x: x)


async def raw_redis(q, *args):
    client = q.q.client if hasattr(q, "q") else q.client
    v = client.execute_command(*args)
    if asyncio.iscoroutine(v):
        v = await v
    return v


def test_permission_denied(servers, backend):
    server = servers.single(backend)
    admin = server.redis()
    user = f"u{uuid.uuid4().hex[:6]}"
    # May read only its own tree: a tree write elsewhere and a price change are refused.
    admin.execute_command("ACL", "SETUSER", user, "on", ">pw", "resetkeys", "~mine", "~{mine}*", "+@all")
    q = Quota(redis.Redis(port=server.port, username=user, password="pw"))
    try:
        with pytest.raises(PermissionDenied) as info:
            q.reserve("other-tree", path="p", cost={"credits": 1})
        assert info.value.message.startswith("NOPERM") and info.value.kind == "permission"
    finally:
        q.client.close()
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()


def test_eviction_refused(servers):
    server = servers.single("module")
    admin = server.redis()
    admin.config_set("maxmemory-policy", "allkeys-lru")
    try:
        q = Quota(server.redis())
        with pytest.raises(EvictionRefused) as info:
            q.set(tree_name(), "/", "m", metric="credits", limit=1)
        assert info.value.message.startswith("ERR eviction:")
    finally:
        admin.config_set("maxmemory-policy", "noeviction")
        admin.close()


def test_not_loaded(servers):
    plain = servers.plain()
    q = Quota(plain.redis())
    with pytest.raises(NotLoaded, match="quota is not loaded on this server: load the module or run quota-load"):
        q.get("t")

    async def main():
        a = Quota(redis.asyncio.Redis(port=plain.port))
        with pytest.raises(NotLoaded):
            await a.get("t")
        await aclose(a.client)

    asyncio.run(main())


def test_error_texts_map_by_prefix():
    table = {
        "ERR wrong number of arguments for 'quota.get' command": ArityError,
        "ERR syntax: unknown WINDOW": QuotaSyntaxError,
        "ERR unknown subcommand 'X'. Try QUOTA.PRICE HELP.": QuotaSyntaxError,
        "ERR invalid amount: 'x'": InvalidAmount,
        "ERR unknown metric: 'X'": UnknownMetric,
        "ERR limit: at most 16 tags per path": LimitExceeded,
        "NOTFOUND no such path 'p'": NotFound,
        "ERR eviction: refused": EvictionRefused,
        "NOPERM this user has no permissions": PermissionDenied,
        "WRONGTYPE Operation against a key": WrongType,
        "ERR layout 6 of tree 'a' is newer than this library": LayoutError,
        "ERR EXPIRES 5 is not in the future": Conflict,
        "READONLY You can't write against a read only replica.": ServerError,
    }
    for text, cls in table.items():
        e = error_from_text(text, "QUOTA.X")
        assert type(e) is cls and e.message == text and e.command == "QUOTA.X"


def test_detection_and_forced_backend(servers, backend):
    server = servers.single(backend)
    admin = server.redis()
    user = f"u{uuid.uuid4().hex[:6]}"
    # An account that may not read the price book still finds the module; one
    # that may not call functions gets the server's NOPERM, not NotLoaded.
    refused = ["-quota.price"] if backend == "module" else ["-fcall_ro", "-fcall"]
    admin.execute_command("ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "+@all", *refused)
    q = Quota(redis.Redis(port=server.port, username=user, password="pw"))
    try:
        if backend == "module":
            assert q.backend == "module" and q.get(tree_name()).path == "/"
        else:
            with pytest.raises(PermissionDenied):
                q.get(tree_name())
    finally:
        q.client.close()
        admin.execute_command("ACL", "DELUSER", user)
    forced = Quota(server.redis(), backend=backend)
    assert forced.backend == backend and forced.get(tree_name()).policies == []
    wrong = Quota(server.redis(), backend="lua" if backend == "module" else "module")
    with pytest.raises(QuotaError):
        wrong.get(tree_name())
    with pytest.raises(ValueError):
        Quota(server.redis(), backend="rust")
    admin.close()
