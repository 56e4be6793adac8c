"""The README's tour runs as written (against a test server, on a fresh tree)."""

import os
import re

from conftest import tree_name

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def test_readme_tour_runs(servers, backend, capsys):
    server = servers.single(backend)
    with open(README, encoding="utf-8") as f:
        text = f.read()
    tour = re.search(r"## A tour\n\n```python\n(.*?)```", text, re.S).group(1)
    tree = tree_name("acme")
    code = tour.replace("redis.Redis()", f"redis.Redis(port={server.port})").replace('"acme"', repr(tree))
    import redis

    from quota_client import Quota

    Quota(redis.Redis(port=server.port)).price_set(
        "chat/gpt-4o", {"metric": "credits", "rates": {"input_tokens": "2.50/1M", "output_tokens": "10/1M"}})
    exec(compile(code, "README tour", "exec"), {})
    out = capsys.readouterr().out
    assert "'credits': Decimal('27.5" in out
