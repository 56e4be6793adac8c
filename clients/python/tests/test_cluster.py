"""A 3-primary cluster per backend: every tree command goes to the node of
the tree's slot (no MOVED: `errorstat_MOVED` stays 0 on every node), and
server-wide writes reach where they must: every primary for the module; for
the Lua library, whose price book, plan book and test clock are keys, the
node that serves that key."""

import asyncio
import uuid
from decimal import Decimal as D

import pytest
import redis
import redis.asyncio.cluster
import redis.cluster

from quota_client import AsyncQuota, Quota

from conftest import aclose, tree_name


def moved(nodes):
    total = 0
    for n in nodes:
        stats = n.redis().info("errorstats")
        total += stats.get("errorstat_MOVED", {}).get("count", 0)
    return total


def work(q, trees, price):
    """Per tree: a policy, a reservation (COST and USAGE where the price is
    served), a commit, reads. Returns what the reads said."""
    out = []
    for t in trees:
        q.set(t, "/", "m", metric="credits", limit=100)
        r = q.reserve(t, path="p", cost={"credits": D("2.5")})
        assert r.allowed, r
        q.commit(t, r.id)
        assert q.get(t, "p").spent == {"credits": D("2.5")}
        assert q.holds(t) == [] and q.tree(t).nodes == 2 and q.events(t) == []
        out.append(t)
    return out


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_cluster(servers, backend, mode):
    nodes = servers.cluster(backend)
    trees = [tree_name("c") for _ in range(40)]
    price = f"chat/c{uuid.uuid4().hex[:8]}"
    body = {"metric": "credits", "rates": {"input_tokens": "1/1K"}}
    protocol = 3 if mode == "sync" else 2
    before = moved(nodes)

    if mode == "sync":
        rc = redis.cluster.RedisCluster(host="127.0.0.1", port=nodes[0].port, protocol=protocol)
        q = Quota(rc)
        assert q.backend == backend
        assert q.price_set(price, body) == "OK"
        work(q, trees, price)
        assert q.price_get(price).rates == {"input_tokens": "1/1K"}
        assert price in q.price_list()
        assert q.estimate(price, {"input_tokens": 3000}).cost == D(3)
        now = q.clock_get()
        assert q.clock_set(now) == now  # every primary's clock (module) or the clock key's node (Lua)
        assert q.clock_advance(5) == now + 5
        if backend == "module":
            assert {int(n.redis().execute_command("QUOTA.DEBUG", "CLOCK", "GET")) for n in nodes} == {now + 5}
        # the feed, subscribed on the tree's node
        t = trees[0]
        q.set(t, "/", "w", metric="e", limit=10, warn=[50])
        q.charge(t, path="/", cost={"e": 6})
        with q.follow_events(t, since=0, idle_timeout=10) as feed:
            e = next(feed)
            assert e.seq == 1 and e.type == "warning"
            q.charge(t, path="/", cost={"e": 4})  # over: live
            assert next(feed).type == "over"
        assert q.price_del(price) == 1
        q.price_set(price, body)
        rc.close()
    else:
        async def main():
            rc = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=nodes[0].port, protocol=protocol)
            q = Quota(rc)
            assert isinstance(q, AsyncQuota) and await q.detect() == backend
            assert await q.price_set(price, body) == "OK"
            for t in trees:
                await q.set(t, "/", "m", metric="credits", limit=100)
                r = await q.reserve(t, path="p", cost={"credits": D("2.5")})
                await q.commit(t, r.id)
                assert (await q.get(t, "p")).spent == {"credits": D("2.5")}
                assert await q.holds(t) == [] and (await q.tree(t)).nodes == 2
            assert (await q.estimate(price, {"input_tokens": 3000})).cost == D(3)
            assert price in await q.price_list()
            t = trees[0]
            await q.set(t, "/", "w", metric="e", limit=10, warn=[50])
            await q.charge(t, path="/", cost={"e": 6})
            async with q.follow_events(t, since=0, idle_timeout=10) as feed:
                e = await feed.__anext__()
                assert e.seq == 1 and e.type == "warning"
                await q.charge(t, path="/", cost={"e": 4})
                assert (await feed.__anext__()).type == "over"
            await aclose(rc)

        asyncio.run(main())

    assert moved(nodes) == before == 0, "a command was sent to a node that does not serve its tree"
    # Where the price went.
    books = [n.redis(decode_responses=True) for n in nodes]
    if backend == "module":
        for b in books:
            assert price in b.execute_command("QUOTA.PRICE", "LIST"), f"the price did not reach {b}"
    else:
        owner = redis.cluster.RedisCluster(host="127.0.0.1", port=nodes[0].port).keyslot("quota:prices")
        serving = [b for b in books if any(int(s[0]) <= owner <= int(s[1]) for s in
                                           [x for x in b.execute_command("CLUSTER", "SLOTS")
                                            if x[2][1] == b.connection_pool.connection_kwargs["port"]])]
        assert len(serving) == 1
        assert serving[0].hexists("quota:prices", price)
    for b in books:
        b.close()


def test_cluster_spreads_trees(servers):
    """The trees of the test land on every primary (so routing was tested)."""
    nodes = servers.cluster("module")
    rc = redis.cluster.RedisCluster(host="127.0.0.1", port=nodes[0].port)
    owners = {rc.get_node_from_key(tree_name("c")).port for _ in range(40)}
    rc.close()
    assert owners == {n.port for n in nodes}
