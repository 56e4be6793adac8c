"""Two companions on one Redis: one leads (the lease quota:alerts:leader), the
other stands by; together they deliver every event exactly once, and when the
leader dies (kill -9) the other takes over within the lease."""

from harness import LEADER, check, config, counts, rule, wait_for, webhook


def clients(ctx):
    return len(ctx.r.client_list())


def start_second(ctx):
    """A second companion, and a wait until it has connected to Redis."""
    before = clients(ctx)
    second = ctx.companion(wait=False)
    wait_for(lambda: clients(ctx) > before, "the second companion connects to Redis")
    check(second.alive(), f"the second companion runs beside the first: {second.state()}\n{second.output(10)}")
    return second


def test_two_instances_deliver_each_event_once(ctx):
    hook = ctx.receiver()
    ctx.set_config(config({"hook": webhook(hook.url("/hook"))}, [rule("all", "hook")]))
    ctx.companion()
    leader = ctx.r.get(LEADER)
    start_second(ctx)
    trees = ("a", "b", "c")
    for t in trees:
        ctx.budget(t)
    for _ in range(3):
        for t in trees:
            ctx.cycle(t)
    want = [k for t in trees for k in ctx.keys_of(t)]
    check(len(want) == 36, f"36 events: {len(want)}")
    wait_for(lambda: set(want) <= set(hook.keys()), "every event is delivered")
    ctx.wait_caught_up(*trees)
    got = counts(hook.keys())
    check(set(got) == set(want) and all(n == 1 for n in got.values()),
          f"each exactly once: {[k for k, n in got.items() if n > 1]}")
    check(ctx.r.get(LEADER) == leader, f"the first kept the lease: {leader} -> {ctx.r.get(LEADER)}")
    pttl = ctx.r.pttl(LEADER)
    check(0 < pttl <= 1000, f"the lease is a PX of QUOTA_ALERTS_LEASE_MS (1000): pttl {pttl}")
    check(all(c.alive() for c in ctx.companions), "both still run")


def test_the_standby_takes_over_when_the_leader_dies(ctx):
    hook = ctx.receiver()
    ctx.set_config(config({"hook": webhook(hook.url("/hook"))}, [rule("all", "hook")]))
    first = ctx.companion()
    leader = ctx.r.get(LEADER)
    second = start_second(ctx)
    ctx.budget("acme")
    ctx.cycle("acme")
    before = ctx.keys_of("acme")
    wait_for(lambda: set(before) <= set(hook.keys()), "the leader delivers the first events")
    ctx.wait_caught_up("acme")

    first.kill9()
    ctx.cycle("acme")  # while nobody leads
    wait_for(lambda: ctx.r.get(LEADER) not in (None, leader), "the standby takes the lease", timeout=10)
    wait_for(lambda: ctx.status().get("instance") == ctx.r.get(LEADER), "status instance names the new leader")
    ctx.cycle("acme")  # while the new one leads
    want = ctx.keys_of("acme")
    wait_for(lambda: set(want) <= set(hook.keys()), "the new leader delivers what came after the kill")
    ctx.wait_caught_up("acme")
    got = counts(hook.keys())
    check(len(want) == 12 and set(got) == set(want) and all(n == 1 for n in got.values()),
          f"12 events, each once: {got}")
    check(second.alive(), "the new leader runs")
