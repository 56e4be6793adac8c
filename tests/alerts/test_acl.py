"""The companion under the README's ACL account (section "Running it"), on
each backend: the `ACL SETUSER alerts …` lines are read from README.md (the
first for the module, the second for the Lua library), so the README and
this test cannot drift apart. With nothing more, it leads, reads events and
delivers."""

import os
import shlex

from harness import LEADER, ROOT, check, config, rule, wait_for, webhook


def readme_acl(backend):
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.startswith("ACL SETUSER alerts ")]
    assert len(lines) == 2, f"README.md has two ACL SETUSER alerts lines (module, Lua): {lines}"
    return shlex.split(lines[0 if backend == "module" else 1])[3:]


def test_the_readme_acl_account_is_enough(ctx):
    hook = ctx.receiver()
    ctx.set_config(config({"hook": webhook(hook.url("/hook"))}, [rule("overs", "hook", events=["over"])]))
    ctx.r.execute_command("ACL", "SETUSER", "alerts", *readme_acl(ctx.backend))
    url = f"redis://alerts:alerts-pw@127.0.0.1:{ctx.redis_port}"
    comp = ctx.companion(url=url)
    check(ctx.r.get(LEADER), "it holds the lease")
    ctx.budget("acme")
    ctx.charge("acme", 100)
    key = ctx.keys_of("acme", where=lambda e: e["type"] == "over")[0]
    wait_for(lambda: key in hook.keys(), "the over is delivered under the ACL account")
    ctx.wait_caught_up("acme")
    denied = [(e.get("object"), e.get("reason")) for e in ctx.r.execute_command("ACL", "LOG") or []]
    # The companion asks QUOTA.DEBUG CLOCK GET (on the Lua library FCALL
    # quota_debug) once at start to learn the clock; the account need not
    # allow it (a refusal is the answer).
    probe = "QUOTA.DEBUG" if ctx.backend == "module" else "FCALL"
    check(not [d for d in denied if (d[0] or "").upper() != probe],
          f"nothing else was denied (ACL LOG): {denied}")
    check(comp.alive(), "it runs on")
