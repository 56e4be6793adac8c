"""The companion under the README's ACL account (section "Running it"), on
the module and, with the substitutions the README gives, on the Lua library:
it leads, reads events and delivers with nothing more."""

from harness import LEADER, check, config, rule, wait_for, webhook

MODULE_ACL = ("on >alerts-pw resetkeys ~quota:alerts:* %R~* resetchannels &quota:events:* &quota:alerts:* -@all "
              "+quota.events +quota.price|list +scan +time +psubscribe +subscribe +get +set +del +hget +hset "
              "+hsetnx +hdel +hkeys +hincrby +hgetall +hmget +zadd +zrem +zrange +zrangebyscore +zcard +lpush "
              "+ltrim +lrange +watch +unwatch +multi +exec")


def acl_rules(backend):
    rules = MODULE_ACL
    if backend == "lua":
        # "on the Lua library, +fcall_ro +function|list in place of +quota.events
        # +quota.price|list, and +hexists"
        rules = rules.replace("+quota.events +quota.price|list", "+fcall_ro +function|list") + " +hexists"
    return rules.split()


def test_the_readme_acl_account_is_enough(ctx):
    hook = ctx.receiver()
    ctx.set_config(config({"hook": webhook(hook.url("/hook"))}, [rule("overs", "hook", events=["over"])]))
    ctx.r.execute_command("ACL", "SETUSER", "alerts", *acl_rules(ctx.backend))
    url = f"redis://alerts:alerts-pw@127.0.0.1:{ctx.redis_port}"
    comp = ctx.companion(url=url)
    check(ctx.r.get(LEADER), "it holds the lease")
    ctx.budget("acme")
    ctx.charge("acme", 100)
    key = ctx.keys_of("acme", where=lambda e: e["type"] == "over")[0]
    wait_for(lambda: key in hook.keys(), "the over is delivered under the ACL account")
    ctx.wait_caught_up("acme")
    denied = [e for e in ctx.r.execute_command("ACL", "LOG") or []]
    check(not denied, f"nothing was denied (ACL LOG): {denied[:3]}")
    check(comp.alive(), "it runs on")
