"""Configuration from a file (--config FILE, re-read when it changes) and from
the key quota:alerts:config (picked up without a restart); a bad one is
reported in the status hash (config_error, naming the place) and does not
stop the companion."""

from harness import check, config, rule, wait_for, webhook

OVERS = {"events": ["over"]}


def cfg(hook, path, **more):
    return config({"hook": webhook(hook.url(path), **more)}, [rule("overs", "hook", **OVERS)])


def error_of(ctx):
    return ctx.status().get("config_error") or ""


# The brief: QUOTA_ALERTS_TICK_MS is "how often due retries / config / lease
# are looked at"; at 50 ms a change is seen well within this.
PICKUP = 3


def wait_error(ctx, comp, *parts):
    """Until status config_error names every one of `parts`; the companion still runs."""
    text = wait_for(lambda: (lambda e: e if all(p in e for p in parts) else "")(error_of(ctx)),
                    f"status config_error names {parts} (a change looked at every tick)", PICKUP)
    check(comp.alive(), f"a bad config does not stop the companion: {comp.state()}")
    return text


def wait_no_error(ctx):
    """Until status config_error is empty: the good config written last is in force."""
    wait_for(lambda: error_of(ctx) == "", "status config_error is cleared by a good config", PICKUP)


def in_force(ctx, comp, good):
    """Sets `good` in the key, through a bad one first: once the error the bad
    one brought is gone again, `good` is in force (the brief gives no other
    sign that a config was read)."""
    ctx.set_config({"destinations": {}, "rules": [rule("sync", "nobody")]})
    wait_error(ctx, comp, "rules[0].to", "nobody")
    ctx.set_config(good)
    wait_no_error(ctx)


def over(ctx, tree):
    """A fresh budget charged to 100: its `over` event's key."""
    ctx.budget(tree)
    ctx.charge(tree, 100)
    ev = [e for e in ctx.events(tree) if e["type"] == "over"][0]
    return f"{tree}#{ev['seq']}@{ev['time']}"


def test_a_config_file_wins_and_is_read_again_when_it_changes(ctx):
    hook = ctx.receiver()
    path = ctx.config_file(cfg(hook, "/v1"))
    ctx.set_config(cfg(hook, "/redis"))  # a file config ignores the key
    comp = ctx.companion(config=path)
    where = ctx.status().get("config") or ""
    check(path in where or "file" in where.lower(), f"status config says it comes from the file: {where!r}")
    k1 = over(ctx, "t1")
    wait_for(lambda: k1 in hook.keys("/v1"), "the file's destination gets the event")

    ctx.config_file({"destinations": {"hook": webhook(hook.url("/v1"))},
                     "rules": [rule("overs", "hook"), rule("to-bill", "bill")]})
    wait_error(ctx, comp, "rules[1].to", "bill")
    ctx.config_file(cfg(hook, "/v2"))
    wait_no_error(ctx)
    k2 = over(ctx, "t2")
    wait_for(lambda: k2 in hook.keys("/v2"), "after the file changed, its new destination gets the next event")
    ctx.wait_caught_up("t1", "t2")
    check(hook.keys("/v1") == [k1], f"the old destination got only the first: {hook.keys('/v1')}")
    check(hook.keys("/redis") == [], f"the key's config was never used: {hook.keys('/redis')}")


def test_a_config_in_redis_changes_without_a_restart(ctx):
    hook = ctx.receiver()
    ctx.set_config(cfg(hook, "/v1"))
    comp = ctx.companion()
    where = ctx.status().get("config") or ""
    check("quota:alerts:config" in where or "redis" in where.lower(), f"status config says the key: {where!r}")
    k1 = over(ctx, "t1")
    wait_for(lambda: k1 in hook.keys("/v1"), "the key's destination gets the event")

    # A literal secret is refused: secrets come from the environment.
    ctx.set_config({"destinations": {"hook": {"webhook": hook.url("/v1"), "secret": "plain"}},
                    "rules": [rule("overs", "hook")]})
    wait_error(ctx, comp, "secret_env")
    ctx.set_config("{ not json")
    wait_for(lambda: error_of(ctx) and "secret_env" not in error_of(ctx), "status config_error now reports the bad JSON")
    check(comp.alive(), "bad JSON does not stop the companion")
    ctx.set_config({"destinations": {"hook": webhook(hook.url("/v1"), attempts=0)}, "rules": [rule("overs", "hook")]})
    wait_error(ctx, comp, "attempts")
    ctx.set_config({"destinations": {"hook": webhook(hook.url("/v1"))}, "rules": [rule("overs", "hook")],
                    "colour": "red"})
    wait_error(ctx, comp, "colour")

    ctx.set_config(cfg(hook, "/v2"))
    wait_no_error(ctx)
    k2 = over(ctx, "t2")
    wait_for(lambda: k2 in hook.keys("/v2"), "the changed key's new destination gets the next event")
    ctx.wait_caught_up("t1", "t2")
    check(hook.keys("/v1") == [k1], f"the old destination got only the first: {hook.keys('/v1')}")


def test_a_bad_config_at_start_is_reported_and_then_fixed(ctx):
    hook = ctx.receiver()
    ctx.set_config({"destinations": {"hook": webhook(hook.url("/v1"))}, "rules": [rule("overs", "bill")]})
    comp = ctx.companion(wait=False)
    wait_error(ctx, comp, "rules[0].to", "bill")
    k0 = over(ctx, "t0")  # fired while the companion runs with no usable config
    ctx.set_config(cfg(hook, "/v1"))
    wait_no_error(ctx)
    comp.wait_leading()
    k1 = over(ctx, "t1")
    wait_for(lambda: k1 in hook.keys("/v1"), "once fixed, events are delivered")
    ctx.wait_caught_up("t0", "t1")
    check(k0 in hook.keys("/v1"),
          f"an event fired after the start while the config was bad waited in its log and is delivered once "
          f"fixed: {hook.keys('/v1')}")


def test_no_config_yet_then_one_arrives(ctx):
    hook = ctx.receiver()
    comp = ctx.companion()  # no key, no file: nothing to deliver, but it runs and leads
    check(error_of(ctx) == "", f"no config is no error: {error_of(ctx)!r}")
    in_force(ctx, comp, cfg(hook, "/v1"))
    k1 = over(ctx, "t1")
    wait_for(lambda: k1 in hook.keys("/v1"), "the config set later is used")
