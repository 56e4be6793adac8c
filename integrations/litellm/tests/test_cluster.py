"""The hook on a 3-primary Redis Cluster (`redis: {cluster: true}`), both
backends: each team's tree lives on its own slot, the hook's client routes
every command there (no MOVED), the price book is on every primary."""

import httpx
import pytest
import redis
from decimal import Decimal

from conftest import BACKENDS, PRICES, QUOTA_CONFIG
from harness import Proxy, RedisCluster, model_entry
from quota_client import Quota


@pytest.fixture(scope="module", params=BACKENDS)
def cluster_env(request, fake):
    cluster = RedisCluster(request.param)
    proxy = None
    try:
        q = Quota(redis.cluster.RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port))
        for name, price in PRICES.items():
            q.price_set(name, price)  # quota_client sends it to every primary
        proxy = Proxy(models=[model_entry("gpt-x", fake.url)],
                      quota=dict(QUOTA_CONFIG, redis={"url": cluster.url, "backend": request.param, "cluster": True}),
                      general_settings={"custom_auth": "auth_by_key.user_api_key_auth"})
        yield cluster, proxy, q
    finally:
        if proxy is not None:
            proxy.stop()
        cluster.stop()


def test_trees_on_every_slot_are_charged_without_moved(cluster_env):
    cluster, proxy, q = cluster_env
    moved = cluster.moved()
    teams = [f"c{i}" for i in range(12)]
    with httpx.Client(base_url=proxy.url, timeout=60) as http:
        for i, team in enumerate(teams):
            q.set(f"team:{team}", "/", "budget", metric="credits", limit="0.1")
            r = http.post("/v1/chat/completions", headers={"Authorization": f"Bearer sk-user=u{i},team={team}"},
                          json={"model": "gpt-x", "max_tokens": 10,
                                "messages": [{"role": "user", "content": f"prompt_tokens={i + 1} completion_tokens=2"}]})
            assert r.status_code == 200, r.text
            denied = http.post("/v1/chat/completions", headers={"Authorization": f"Bearer sk-user=u{i},team={team}"},
                               json={"model": "gpt-x", "max_tokens": 1000,
                                     "messages": [{"role": "user", "content": "x=1"}]})
            assert denied.status_code == 429, denied.text
    for i, team in enumerate(teams):
        node = q.get(f"team:{team}", f"users/u{i}")
        assert node.spent["credits"] == Decimal("0.001") * (i + 1) + Decimal("0.002") * 2
    owners = {cluster.nodes[0].client().execute_command("CLUSTER", "KEYSLOT", f"team:{t}") // 5462 for t in teams}
    assert len(owners) > 1  # the trees are spread over the primaries
    assert cluster.moved() == moved
