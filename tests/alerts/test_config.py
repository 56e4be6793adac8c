"""Configuration from a file (--config FILE, re-read when it changes) and from
the key quota:alerts:config (picked up without a restart); a bad one is
reported in the status hash (config_error, naming the place) and does not
stop the companion."""

import time

from harness import WaitTimeout, check, config, rule, wait_for, webhook

OVERS = {"events": ["over"]}


def cfg(hook, path, **more):
    return config({"hook": webhook(hook.url(path), **more)}, [rule("overs", "hook", **OVERS)])


def error_of(ctx):
    return ctx.status().get("config_error") or ""


# How long a config change may take to be seen. The brief: QUOTA_ALERTS_TICK_MS
# is "how often due retries / config / lease are looked at", so at 50 ms a
# change is seen within a few ticks: test_a_config_change_is_seen_within_ticks
# checks that (3 s); the other tests give it the default 10 s, to test what
# follows the change.
PICKUP = 10


def wait_error(ctx, comp, *parts, timeout=PICKUP):
    """Until status config_error names every one of `parts`; the companion still runs."""
    text = wait_for(lambda: (lambda e: e if all(p in e for p in parts) else "")(error_of(ctx)),
                    f"status config_error names {parts}", timeout)
    check(comp.alive(), f"a bad config does not stop the companion: {comp.state()}")
    return text


def wait_no_error(ctx, timeout=PICKUP):
    """Until status config_error is empty: the good config written last is in force."""
    wait_for(lambda: error_of(ctx) == "", "status config_error is cleared by a good config", timeout)


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


def test_a_config_change_is_seen_within_ticks(ctx):
    """QUOTA_ALERTS_TICK_MS (50 ms here) is how often the config is looked at
    (brief): a change of the key, with nobody publishing anything, is seen
    within 3 s, as is a change of the file."""
    hook = ctx.receiver()
    ctx.set_config(cfg(hook, "/v1"))
    comp = ctx.companion()
    for n in range(2):
        t = time.monotonic()
        ctx.set_config({"destinations": {}, "rules": [rule("sync", f"nobody{n}")]})
        wait_error(ctx, comp, f"nobody{n}", timeout=3)
        check(time.monotonic() - t < 3, f"change {n + 1} of the key seen in {time.monotonic() - t:.2f} s")
    comp.stop()
    path = ctx.config_file(cfg(hook, "/v1"))
    comp = ctx.companion(config=path)
    ctx.config_file({"destinations": {}, "rules": [rule("sync", "nobody-file")]})
    wait_error(ctx, comp, "nobody-file", timeout=3)


def good(hook):
    return {"smtp": {"host": "127.0.0.1", "port": 2525, "tls": "none", "from": "quota <alerts@example.com>"},
            "destinations": {"hook": webhook(hook.url("/v1")), "ops": {"email": ["ops@example.com"]}},
            "rules": [rule("overs", "hook", events=["over"]), rule("mail", "ops", events=["low"])]}


def bad_configs(hook):
    """(what, a change of good(hook), texts the error must contain). The
    brief's bounds and refusals, one at a time."""

    def change(fn):
        c = good(hook)
        fn(c)
        return c

    dests = lambda c: c["destinations"]  # noqa: E731
    hook_dest = lambda c: c["destinations"]["hook"]  # noqa: E731
    rules = lambda c: c["rules"]  # noqa: E731
    return [
        ("an unknown destination in a rule", change(lambda c: rules(c)[1].update(to=["bill"])), ["rules[1].to", "bill"]),
        ("a literal webhook secret", change(lambda c: hook_dest(c).update(secret="x")), ["secret_env"]),
        ("a literal SMTP password", change(lambda c: c["smtp"].update(username="a", password="x")), ["password_env"]),
        ("an unknown top-level field", change(lambda c: c.update(colour="red")), ["colour"]),
        ("an unknown rule field", change(lambda c: rules(c)[0].update(tree="acme")), ["rules[0]", "tree"]),
        ("a destination name outside A-Z a-z 0-9 _ - .", change(lambda c: dests(c).update({"bad name": webhook(hook.url())})),
         ["bad name"]),
        ("a destination name of 65 characters", change(lambda c: dests(c).update({"d" * 65: webhook(hook.url())})),
         ["destinations"]),
        ("attempts 0", change(lambda c: hook_dest(c).update(attempts=0)), ["destinations.hook", "attempts"]),
        ("attempts 101", change(lambda c: hook_dest(c).update(attempts=101)), ["destinations.hook", "attempts"]),
        ("backoff_ms 9", change(lambda c: hook_dest(c).update(backoff_ms=9, max_backoff_ms=100)), ["backoff_ms"]),
        ("max_backoff_ms below backoff_ms", change(lambda c: hook_dest(c).update(backoff_ms=500, max_backoff_ms=100)),
         ["max_backoff_ms"]),
        ("max_backoff_ms above a day", change(lambda c: hook_dest(c).update(max_backoff_ms=86_400_001)),
         ["max_backoff_ms"]),
        ("timeout_ms 99", change(lambda c: hook_dest(c).update(timeout_ms=99)), ["timeout_ms"]),
        ("timeout_ms 120001", change(lambda c: hook_dest(c).update(timeout_ms=120_001)), ["timeout_ms"]),
        ("a webhook that is not http(s)", change(lambda c: hook_dest(c).update(webhook="ftp://example.com/x")),
         ["destinations.hook", "webhook"]),
        ("both webhook and email", change(lambda c: hook_dest(c).update(email=["a@example.com"])), ["destinations.hook"]),
        ("neither webhook nor email", change(lambda c: dests(c).update(empty={"attempts": 3})), ["destinations.empty"]),
        ("51 addresses", change(lambda c: dests(c)["ops"].update(email=[f"a{i}@example.com" for i in range(51)])),
         ["destinations.ops", "email"]),
        ("a secret_env that is no variable name", change(lambda c: hook_dest(c).update(secret_env="my-secret")),
         ["secret_env"]),
        ("an unknown event type", change(lambda c: rules(c)[0].update(events=["overdraft"])), ["rules[0].events"]),
        ("threshold 0", change(lambda c: rules(c)[0].update(events=["warning"], thresholds=[0])), ["rules[0].thresholds"]),
        ("threshold 101", change(lambda c: rules(c)[0].update(events=["warning"], thresholds=[101])),
         ["rules[0].thresholds"]),
        ("a rule to nobody", change(lambda c: rules(c)[0].update(to=[])), ["rules[0].to"]),
        ("two rules of one name", change(lambda c: rules(c)[1].update(name="overs")), ["rules[1]", "overs"]),
        ("101 destinations", change(lambda c: dests(c).update({f"d{i}": webhook(hook.url()) for i in range(100)})),
         ["limit"]),
        ("1001 rules", change(lambda c: rules(c).extend(rule(f"r{i}", "hook") for i in range(999))), ["limit"]),
        ("not JSON", "{ \"rules\": [", []),
    ]


def test_every_bad_config_is_reported_by_its_place_and_the_last_good_one_stays(ctx):
    hook = ctx.receiver()
    path = ctx.config_file(good(hook))
    comp = ctx.companion(config=path)
    k1 = over(ctx, "t1")
    wait_for(lambda: k1 in hook.keys("/v1"), "the good config delivers")
    previous = ""
    for what, bad, parts in bad_configs(hook):
        ctx.config_file(bad)
        try:
            text = wait_for(lambda: (lambda e: e if e and e != previous and all(p in e for p in parts) else "")(
                error_of(ctx)), f"{what}: status config_error names {parts}", timeout=3)
            previous = text
        except WaitTimeout as e:
            check(False, f"{what}: refused with a message naming {parts}: got {error_of(ctx)!r} ({str(e)[:120]})")
            # the next case must show another message
            ctx.config_file(good(hook))
            wait_no_error(ctx)
            previous = ""
        check(comp.alive(), f"{what}: the companion still runs")
    # The last good config is still in force (the companion's own log promises
    # it: "the last good one stays in force").
    k2 = over(ctx, "t2")
    wait_for(lambda: k2 in hook.keys("/v1"), "while the file is bad, the last good config delivers")
    ctx.config_file(good(hook))
    wait_no_error(ctx)


def test_backend_auto_finds_the_module_or_the_library(ctx):
    hook = ctx.receiver()
    ctx.set_config(cfg(hook, "/v1"))
    comp = ctx.companion(args=["--backend", "auto"])
    check(ctx.backend in comp.output(5).lower(), f"its output names the backend it found ({ctx.backend}):\n{comp.output(5)}")
    k1 = over(ctx, "t1")
    wait_for(lambda: k1 in hook.keys("/v1"), "it delivers with the backend it found")
