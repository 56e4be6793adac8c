"""Fixtures: per backend (module, Lua library) a Redis server with quota and
a real LiteLLM proxy whose deployments point at the fake model server, with
the quota hook registered. QUOTA_BACKENDS=module or lua narrows the run."""

import os
import sys
import uuid

import httpx
import pytest
import redis

HERE = os.path.dirname(os.path.abspath(__file__))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, os.path.dirname(HERE))

from harness import Proxy, RedisServer, model_entry  # noqa: E402
from fake_openai import FakeOpenAI  # noqa: E402
from quota_client import Quota  # noqa: E402

BACKENDS = [b for b in os.environ.get("QUOTA_BACKENDS", "module,lua").split(",") if b]

# The price book the tests use: exact, small numbers.
PRICES = {
    "chat/gpt-x": {"metric": "credits", "rates": {"input_tokens": "0.001", "output_tokens": "0.002", "requests": "0"}},
    "chat/gpt-y": {"metric": "credits", "rates": {"input_tokens": "0.01", "output_tokens": "0.02", "requests": "0"}},
}

QUOTA_CONFIG = {
    "tree": "team:{team_id}",
    "path": "users/{user_id}",
    "also": ["keys/{key_alias}", "end_users/{end_user}"],
    "fallbacks": {"team_id": "none"},
    "models": {"gpt-x": "chat/gpt-x", "gpt-y": "chat/gpt-y"},
    "default_max_tokens": 256,
    "request_usage": "requests",
    "ttl_ms": 60000,
    "on_redis_error": "closed",
}


@pytest.fixture(scope="session")
def fake():
    f = FakeOpenAI().start()
    yield f
    f.stop()


class Env:
    def __init__(self, backend, server, proxy, fake):
        self.backend, self.server, self.proxy, self.fake = backend, server, proxy, fake
        self.q = Quota(redis.Redis(port=server.port))
        self.http = httpx.Client(base_url=proxy.url, timeout=60)

    def key(self, user="alice", team=None, alias=None, org=None):
        """A key of a fresh team unless one is given: each test its own tree."""
        team = team or "t" + uuid.uuid4().hex[:10]
        parts = [f"user={user}"] if user else []
        parts.append(f"team={team}")
        if alias:
            parts.append(f"alias={alias}")
        if org:
            parts.append(f"org={org}")
        return "sk-" + ",".join(parts), "team:" + team

    def chat(self, key, model="gpt-x", text="", max_tokens=None, stream=False, headers=None, **extra):
        body = {"model": model, "messages": [{"role": "user", "content": text}]}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if stream:
            body["stream"] = True
        body.update(extra)
        h = {"Authorization": f"Bearer {key}"}
        h.update(headers or {})
        return self.http.post("/v1/chat/completions", json=body, headers=h)


@pytest.fixture(scope="session", params=BACKENDS)
def env(request, fake):
    server = RedisServer(request.param)
    proxy = None
    try:
        q = Quota(redis.Redis(port=server.port))
        for name, price in PRICES.items():
            q.price_set(name, price)
        proxy = Proxy(
            models=[model_entry("gpt-x", fake.url), model_entry("gpt-y", fake.url),
                    model_entry("gpt-unpriced", fake.url)],
            quota=dict(QUOTA_CONFIG, redis={"url": server.url, "backend": request.param}),
            general_settings={"custom_auth": "auth_by_key.user_api_key_auth"},
        )
        e = Env(request.param, server, proxy, fake)
        yield e
        e.http.close()
    finally:
        if proxy is not None:
            proxy.stop()
        server.stop()
