"""The quota hook in a real LiteLLM proxy, model calls answered by the fake
model server, on both backends (the `env` fixture is per backend)."""

import concurrent.futures
import time
from decimal import Decimal

import litellm

from conftest import PRICES
from quota_client import NotFound

X_IN, X_OUT = Decimal(PRICES["chat/gpt-x"]["rates"]["input_tokens"]), Decimal(PRICES["chat/gpt-x"]["rates"]["output_tokens"])


def price_x(prompt, completion):
    return X_IN * prompt + X_OUT * completion


def prompt_tokens(text, model="gpt-x"):
    return litellm.token_counter(model=model, messages=[{"role": "user", "content": text}])


def spent(env, tree, path, metric="credits"):
    try:
        node = env.q.get(tree, path)
    except NotFound:
        return Decimal(0)
    return (node.spent or {}).get(metric, Decimal(0))


def held(env, tree, path="/"):
    node = env.q.get(tree, path)
    return sum((p.held or Decimal(0)) for p in (node.policies or []))


def wait_until(check, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def error_of(response):
    return response.json()["error"]


def test_allowed_call_commits_the_actual_usage(env):
    key, tree = env.key(user="alice", alias="laptop")
    env.q.set(tree, "/", "budget", metric="credits", limit=100)
    before = env.fake.requests
    r = env.chat(key, text="prompt_tokens=12 completion_tokens=30", max_tokens=100)
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] == 30
    assert env.fake.requests == before + 1
    want = price_x(12, 30)
    assert want == Decimal("0.072")
    # settled before the response left the proxy: no waiting
    for path in ("/", "users/alice", "keys/laptop"):
        node = env.q.get(tree, path)
        assert node.spent["credits"] == want, (path, node)
        assert node.spent["input_tokens"] == 12 and node.spent["output_tokens"] == 30
        assert node.spent["requests"] == 1
    root = env.q.get(tree, "/").policies[0]
    assert root.used == want and root.held == 0


def test_denial_is_429_with_quotas_message_and_charges_nothing(env):
    key, tree = env.key(user="bob")
    env.q.set(tree, "/", "budget", metric="credits", limit="0.5")
    before = env.fake.requests
    text = "prompt_tokens=5 completion_tokens=5"
    r = env.chat(key, text=text, max_tokens=1000)
    assert r.status_code == 429, r.text
    err = error_of(r)
    needed = price_x(prompt_tokens(text), 1000)
    assert err["message"] == f"not enough credits: 0.5 available at /, {needed} needed"
    assert err["provider_specific_fields"]["denied_by"] == ["/#budget"]
    assert env.fake.requests == before  # the model was never called
    assert spent(env, tree, "/") == 0 and held(env, tree) == 0
    # the same request with a small max_tokens fits
    r = env.chat(key, text=text, max_tokens=10)
    assert r.status_code == 200, r.text
    assert spent(env, tree, "users/bob") == price_x(5, 5)


def test_model_not_allowed_by_access_rules_is_429(env):
    key, tree = env.key(user="carol")
    env.q.allow(tree, "/", service="chat", model="gpt-x")
    before = env.fake.requests
    r = env.chat(key, model="gpt-y", text="x=1", max_tokens=10)
    assert r.status_code == 429, r.text
    err = error_of(r)
    assert err["message"] == "model gpt-y is not allowed at /"
    assert err["provider_specific_fields"]["denied_by"] == ["/#access"]
    assert env.fake.requests == before
    assert env.chat(key, model="gpt-x", text="x=1", max_tokens=10).status_code == 200


def test_rate_limit_rolling_window(env):
    key, tree = env.key(user="dave")
    env.q.set(tree, "users/dave", "rate", metric="requests", limit=2, window="rolling 60s")
    codes = [env.chat(key, text="y=1", max_tokens=5).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert env.q.get(tree, "users/dave").spent["requests"] == 2
    env.q.clock_advance(61_000)
    assert env.chat(key, text="y=1", max_tokens=5).status_code == 200


def test_inflight_limit(env):
    key, tree = env.key(user="erin")
    env.q.set(tree, "users/erin", "conc", metric="requests", limit=1, inflight=True)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = pool.submit(env.chat, key, text="delay=1.5 completion_tokens=3", max_tokens=5)
        assert wait_until(lambda: held(env, tree, "users/erin") > 0, 10)
        second = env.chat(key, text="z=1", max_tokens=5)
        assert slow.result().status_code == 200
    assert second.status_code == 429
    assert error_of(second)["message"] == "not enough requests: 1 of 1 in flight at users/erin, 1 needed"
    assert held(env, tree, "users/erin") == 0
    assert env.chat(key, text="z=1", max_tokens=5).status_code == 200


def test_provider_error_releases_the_hold(env):
    key, tree = env.key(user="frank")
    env.q.set(tree, "/", "budget", metric="credits", limit=100)
    r = env.chat(key, text="fail=500", max_tokens=50)
    assert r.status_code == 500, r.text
    assert wait_until(lambda: held(env, tree) == 0)
    assert spent(env, tree, "/") == 0
    assert env.q.holds(tree) == [] or not env.q.holds(tree)


def test_timeout_releases_the_hold(env):
    key, tree = env.key(user="gina")
    env.q.set(tree, "/", "budget", metric="credits", limit=100)
    t0 = time.monotonic()
    r = env.chat(key, text="delay=4", max_tokens=50, timeout=1)
    assert r.status_code >= 400, r.text
    assert time.monotonic() - t0 < 3.5
    assert wait_until(lambda: held(env, tree) == 0)
    assert spent(env, tree, "/") == 0


def test_streaming_commits_the_final_usage(env):
    key, tree = env.key(user="hana", alias="phone")
    env.q.set(tree, "/", "budget", metric="credits", limit=100)
    with env.http.stream("POST", "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                         json={"model": "gpt-x", "stream": True, "max_tokens": 200,
                               "messages": [{"role": "user", "content": "prompt_tokens=7 completion_tokens=9"}]}) as r:
        assert r.status_code == 200
        body = "".join(r.iter_text())
    assert "data: [DONE]" in body
    want = price_x(7, 9)
    # committed by the success logger once the stream ended
    assert wait_until(lambda: spent(env, tree, "users/hana") == want), env.q.get(tree, "users/hana")
    assert spent(env, tree, "keys/phone") == want
    assert wait_until(lambda: held(env, tree) == 0)


def test_users_teams_and_keys_map_to_paths(env):
    team = "mapping" + str(time.monotonic_ns())
    alice, tree = env.key(user="alice", team=team, alias="a-laptop")
    bob, _ = env.key(user="bob", team=team, alias="b-ci")
    assert env.chat(alice, text="prompt_tokens=1 completion_tokens=1", max_tokens=5).status_code == 200
    assert env.chat(bob, text="prompt_tokens=2 completion_tokens=2", max_tokens=5).status_code == 200
    assert env.chat(bob, text="prompt_tokens=3 completion_tokens=3", max_tokens=5, user="eve").status_code == 200
    assert spent(env, tree, "users/alice") == price_x(1, 1)
    assert spent(env, tree, "users/bob") == price_x(2, 2) + price_x(3, 3)
    assert spent(env, tree, "keys/a-laptop") == price_x(1, 1)
    assert spent(env, tree, "keys/b-ci") == price_x(5, 5)
    assert spent(env, tree, "end_users/eve") == price_x(3, 3)  # the request's `user` field
    assert spent(env, tree, "/") == price_x(6, 6)
    # a key without a team is charged to the fallback tree (fallbacks: team_id: none)
    ivan = "sk-user=ivan"
    before = spent(env, "team:none", "users/ivan")
    assert env.chat(ivan, text="prompt_tokens=1 completion_tokens=2", max_tokens=5).status_code == 200
    assert spent(env, "team:none", "users/ivan") == before + price_x(1, 2)
    # a budget on one user's path stops only that user
    env.q.set(tree, "users/alice", "cap", metric="credits", limit=0)
    assert env.chat(alice, text="a=1", max_tokens=5).status_code == 429
    assert env.chat(bob, text="a=1", max_tokens=5).status_code == 200


def test_missing_identity_without_fallback_is_refused(env):
    key, tree = env.key(user=None)  # a key with a team but no user: path users/{user_id} has no value
    before = env.fake.requests
    r = env.chat(key, text="a=1", max_tokens=5)
    assert r.status_code == 403, r.text
    assert "no user_id" in error_of(r)["message"]
    assert env.fake.requests == before


def test_unpriced_model_is_refused(env):
    key, _ = env.key(user="jo")
    before = env.fake.requests
    r = env.chat(key, model="gpt-unpriced", text="a=1", max_tokens=5)
    assert r.status_code == 403, r.text
    assert "no price mapping" in error_of(r)["message"]
    assert env.fake.requests == before


def test_reused_call_id_is_refused_and_charged_once(env):
    key, tree = env.key(user="kim")
    call_id = "reuse-" + str(time.monotonic_ns())
    h = {"x-litellm-call-id": call_id}
    assert env.chat(key, text="prompt_tokens=4 completion_tokens=4", max_tokens=5, headers=h).status_code == 200
    r = env.chat(key, text="prompt_tokens=4 completion_tokens=4", max_tokens=5, headers=h)
    assert r.status_code == 409, r.text
    assert spent(env, tree, "users/kim") == price_x(4, 4)
    assert held(env, tree) == 0


def test_a_failed_attempt_that_litellm_retries_is_committed_once(env):
    key, tree = env.key(user="lee")
    env.q.set(tree, "/", "budget", metric="credits", limit=100)
    before = env.fake.requests
    text = f"fail=500 fail_times=1 prompt_tokens=6 completion_tokens=8 n={time.monotonic_ns()}"
    r = env.chat(key, text=text, max_tokens=50, num_retries=2)
    assert r.status_code == 200, r.text
    assert env.fake.requests == before + 2  # the failed attempt and the retry
    assert spent(env, tree, "users/lee") == price_x(6, 8)
    assert wait_until(lambda: held(env, tree) == 0)
    assert spent(env, tree, "users/lee") == price_x(6, 8)


def test_a_burst_larger_than_the_connection_pool_waits_instead_of_failing(env):
    # In-process, against this backend's server: 60 reservations at once over 2 connections.
    import asyncio

    from fastapi import HTTPException
    from litellm.proxy._types import UserAPIKeyAuth
    from quota_litellm import Config, QuotaHook

    from conftest import QUOTA_CONFIG

    key, tree = env.key(user="burst")
    team = tree.split(":", 1)[1]
    env.q.set(tree, "/", "budget", metric="credits", limit="0.5")
    h = QuotaHook(config=Config.from_dict(dict(QUOTA_CONFIG, redis={"url": env.server.url, "max_connections": 2})))
    auth = UserAPIKeyAuth(api_key="k", user_id="burst", team_id=team)

    async def one(i):
        data = {"model": "gpt-x", "litellm_call_id": f"burst-{i}", "max_tokens": 100,
                "messages": [{"role": "user", "content": "hi"}], "metadata": {}}
        try:
            await h.async_pre_call_hook(user_api_key_dict=auth, cache=None, data=data, call_type="acompletion")
            return 200
        except HTTPException as e:
            return e.status_code

    async def burst():
        return await asyncio.gather(*(one(i) for i in range(60)))

    codes = asyncio.run(burst())
    assert set(codes) <= {200, 429}, codes
    per_call = price_x(prompt_tokens("hi"), 100)
    assert codes.count(200) == int(Decimal("0.5") // per_call)
    assert held(env, tree) == per_call * codes.count(200)


def test_a_request_without_max_tokens_is_capped_at_what_was_reserved(env):
    key, tree = env.key(user="max")
    r = env.chat(key, text="prompt_tokens=3 completion_tokens=4")
    assert r.status_code == 200, r.text
    sent = [b for b in env.fake.bodies if "completion_tokens=4" in str(b.get("messages"))][-1]
    assert sent.get("max_tokens") == 256  # default_max_tokens in the test config
    assert spent(env, tree, "users/max") == price_x(3, 4)


def test_a_client_that_leaves_mid_stream_leaves_no_hold(env):
    key, tree = env.key(user="nia")
    env.q.set(tree, "/", "budget", metric="credits", limit=100)
    with env.http.stream("POST", "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                         json={"model": "gpt-x", "stream": True, "max_tokens": 200,
                               "messages": [{"role": "user", "content": "chunk_delay=0.5 completion_tokens=9"}]}) as r:
        assert r.status_code == 200
        for _ in r.iter_lines():
            break  # the first event, then hang up
    assert wait_until(lambda: held(env, tree) == 0, 15), env.q.get(tree, "/")
    # settled either way: committed (what LiteLLM billed for the part streamed) or released
    assert spent(env, tree, "users/nia") <= price_x(prompt_tokens("chunk_delay=0.5 completion_tokens=9"), 200)


def test_text_completion_is_metered_too(env):
    key, tree = env.key(user="tex")
    r = env.http.post("/v1/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": "gpt-x", "prompt": "prompt_tokens=5 completion_tokens=6", "max_tokens": 20})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] == 6
    assert spent(env, tree, "users/tex") == price_x(5, 6)
    assert held(env, tree) == 0
