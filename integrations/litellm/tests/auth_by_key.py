"""The test proxy's `general_settings.custom_auth`: LiteLLM's documented way
to authenticate without a database. A key names its identity:
`sk-user=alice,team=t1,alias=laptop,org=o1` (any part may be left out), so a
test makes as many users, teams and keys as it needs. `sk-master` is the
proxy admin (no team). Anything else is refused (401)."""

from fastapi import Request

from litellm.proxy._types import UserAPIKeyAuth


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    if api_key == "sk-master":
        return UserAPIKeyAuth(api_key=api_key, user_id="admin")
    if not api_key.startswith("sk-") or "=" not in api_key:
        raise Exception("unknown key")
    parts = dict(p.split("=", 1) for p in api_key[3:].split(",") if "=" in p)
    return UserAPIKeyAuth(
        api_key=api_key,
        token=api_key,
        user_id=parts.get("user"),
        team_id=parts.get("team"),
        org_id=parts.get("org"),
        key_alias=parts.get("alias"),
    )
