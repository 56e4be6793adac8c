"""The hook in-process (no proxy): its config, templates, and what it does
when Redis cannot be reached (on_redis_error closed / open)."""

import asyncio

import pytest
from fastapi import HTTPException

from harness import free_port
from litellm.proxy._types import UserAPIKeyAuth
from quota_litellm import MARK, Config, ConfigError, QuotaHook, render, segment


def hook(**over):
    raw = {"redis": {"url": f"redis://127.0.0.1:{free_port()}/0", "timeout_s": 0.5},
           "tree": "{team_id}", "path": "users/{user_id}", "models": {"gpt-x": "chat/gpt-x"}}
    raw.update(over)
    return QuotaHook(config=Config.from_dict(raw))


def request():
    return {"model": "gpt-x", "litellm_call_id": "c1", "max_tokens": 5,
            "messages": [{"role": "user", "content": "hi"}], "metadata": {}}


def pre_call(h, data):
    auth = UserAPIKeyAuth(api_key="k", user_id="u1", team_id="t1")
    return asyncio.run(h.async_pre_call_hook(user_api_key_dict=auth, cache=None, data=data, call_type="acompletion"))


def test_redis_down_fail_closed_refuses_with_503():
    with pytest.raises(HTTPException) as e:
        pre_call(hook(), request())
    assert e.value.status_code == 503
    assert "unavailable" in e.value.detail["error"]


def test_redis_down_fail_open_lets_the_call_through_unmetered():
    h = hook(on_redis_error="open")
    data = pre_call(h, request())
    assert MARK not in data["metadata"]
    assert h.stats["unguarded"] == 1


def test_a_client_cannot_plant_a_hold_marker():
    h = hook(on_redis_error="open")
    data = request()
    data["metadata"][MARK] = "someone-elses-hold|guess"
    data = pre_call(h, data)
    assert MARK not in data["metadata"]


def test_templates_and_segments():
    assert segment("a/b c") == "a_b_c" and segment("..") == "_" and len(segment("x" * 100)) == 64
    assert render("users/{user_id}", {"user_id": "ann@example.com"}, {}) == "users/ann@example.com"
    assert render("teams/{team_id}", {"team_id": None}, {"team_id": "none"}) == "teams/none"
    with pytest.raises(ConfigError):
        Config.from_dict({"path": "users/{nobody}"})
    with pytest.raises(ConfigError):
        Config.from_dict({"on_redis_error": "maybe"})
    with pytest.raises(ConfigError):
        Config.from_dict({"modles": {}})
    with pytest.raises(ConfigError):
        Config.from_dict({"models": {"gpt-x": "gpt-x"}})


def test_identity_fields_from_litellm():
    from quota_litellm import identity

    import hashlib

    auth = UserAPIKeyAuth(api_key="sk-abc", user_id="u1", team_id="t1", org_id="o1", key_alias="ci")
    hashed = hashlib.sha256(b"sk-abc").hexdigest()  # LiteLLM keeps keys hashed
    data = {"model": "gpt-x", "user": "eve",
            "metadata": {"requester_metadata": {"project": "p 7", "nested": {"no": 1}}}}
    v = identity(auth, data)
    assert (v["user_id"], v["team_id"], v["org_id"], v["key_alias"], v["key_hash"], v["end_user"], v["model"]) == \
        ("u1", "t1", "o1", "ci", hashed, "eve", "gpt-x")
    assert v["metadata.project"] == "p 7" and "metadata.nested" not in v
    assert render("projects/{metadata.project}", v, {}) == "projects/p_7"


def test_settling_never_raises_into_the_response():
    # A hold placed, then Redis gone: the commit logs and counts, the response stands.
    from quota_litellm import Live

    h = hook()
    h._live["c9"] = Live(nonce="n", tree="t", price="chat/gpt-x", deadline=1e18)
    data = {"metadata": {MARK: "c9|n"}}

    class Response:
        usage = {"prompt_tokens": 1, "completion_tokens": 2}

    out = asyncio.run(h.async_post_call_success_hook(data=data, user_api_key_dict=None, response=Response()))
    assert isinstance(out, Response)
    assert h.stats["errors"] == 1 and "c9" not in h._live
