"""Crashes and restarts: kill -9 mid-delivery loses nothing and repeats only
what was in flight (same idempotency key); a clean restart repeats nothing
(the cursor per tree in quota:alerts:cursors)."""

from harness import JOBS, check, config, counts, rule, wait_for, webhook


def every_key(ctx, *trees):
    return [k for t in trees for k in ctx.keys_of(t)]


def test_kill9_mid_delivery_loses_nothing(ctx):
    hook = ctx.receiver()
    ctx.set_config(config({"hook": webhook(hook.url("/hook"), attempts=10, backoff_ms=50, timeout_ms=5000)},
                          [rule("all", "hook")]))
    first = ctx.companion()
    for t in ("t1", "t2", "t3"):
        ctx.budget(t)
    ctx.cycle("t1")  # 4 events, delivered before the crash
    wait_for(lambda: set(every_key(ctx, "t1")) <= set(hook.keys(delivered=True)), "t1's first 4 events are delivered")
    ctx.wait_caught_up("t1")

    hook.hold()  # from now on the receiver holds every request open
    ctx.cycle("t2")
    ctx.cycle("t1")
    wait_for(lambda: hook.held.is_set(), "a delivery reaches the receiver, which holds it open")
    first.kill9()
    check(not first.alive(), "the companion is killed")
    in_flight = {r.key for r in hook.got() if r.status is None}  # held when it died
    hook.release()  # the held requests are answered now, to nobody
    # More events while no companion runs, on a tree it has not seen yet too.
    ctx.cycle("t2")
    ctx.cycle("t3")

    ctx.companion()  # waits for the lease the dead one held to run out
    trees = ("t1", "t2", "t3")
    want = every_key(ctx, *trees)
    check(len(want) == 20, f"20 events in all (t1 8, t2 8, t3 4): {len(want)}")
    wait_for(lambda: set(want) <= set(hook.keys(delivered=True)), "after the restart every event is delivered")
    ctx.wait_caught_up(*trees)
    got = counts(hook.keys(delivered=True))
    check(set(got) == set(want), f"only events of the trees were delivered: {set(got) - set(want)}")
    twice = {k: n for k, n in got.items() if n > 1}
    check(set(twice) <= in_flight,
          f"only a key in flight at the kill ({sorted(in_flight)}) may arrive twice: {twice}")
    check(all(n <= 2 for n in got.values()), f"none more than twice: {twice}")
    check(in_flight, f"some delivery was in flight at the kill: {hook.got()}")
    check(ctx.r.hlen(JOBS) == 0, f"no job is left: {ctx.r.hgetall(JOBS)}")


def test_clean_restart_delivers_nothing_twice(ctx):
    hook = ctx.receiver()
    ctx.set_config(config({"hook": webhook(hook.url("/hook"))}, [rule("all", "hook")]))
    first = ctx.companion()
    ctx.budget("acme")
    ctx.budget("beta")
    ctx.cycle("acme")
    ctx.cycle("beta")
    ctx.cycle("acme")
    wait_for(lambda: len(hook.keys(delivered=True)) >= 12, "12 events delivered")
    ctx.wait_caught_up("acme", "beta")
    cursors = ctx.cursors()
    for t in ("acme", "beta"):
        last = ctx.events(t)[-1]
        check(cursors.get(t) == f"{last['seq']}:{last['time']}", f"cursor of {t} is <seq>:<time> of its last event: {cursors}")
    first.stop()
    check(not first.alive(), "the companion stops on SIGTERM")
    check(ctx.r.get("quota:alerts:leader") is None, f"a clean stop gives the lease up: {ctx.r.get('quota:alerts:leader')}")

    ctx.companion()
    ctx.cycle("beta")
    ctx.cycle("acme")
    want = every_key(ctx, "acme", "beta")
    wait_for(lambda: set(want) <= set(hook.keys(delivered=True)), "the new events are delivered after the restart")
    ctx.wait_caught_up("acme", "beta")
    got = counts(hook.keys())
    check(len(want) == 20 and set(got) == set(want), f"20 events, each delivered: {len(want)}, {len(got)}")
    check(all(n == 1 for n in got.values()), f"none twice: {[k for k, n in got.items() if n > 1]}")


def test_a_retry_waiting_its_turn_survives_a_restart(ctx):
    hook = ctx.receiver()
    hook.plan("/hook", [500])  # then 200
    ctx.set_config(config({"hook": webhook(hook.url("/hook"), attempts=5, backoff_ms=1500, max_backoff_ms=5000)},
                          [rule("overs", "hook", events=["over"])]))
    first = ctx.companion()
    ctx.budget("acme")
    ctx.charge("acme", 100)
    key = ctx.keys_of("acme", where=lambda e: e["type"] == "over")[0]
    job_id = f"hook|{key}"
    wait_for(lambda: (ctx.job(job_id) or {}).get("attempts") == 1, "the first attempt fails and is recorded")
    job = ctx.job(job_id)
    check("500" in str(job.get("last_error")), f"last_error says 500: {job}")
    first.stop()
    ctx.companion()
    wait_for(lambda: hook.delivered("/hook"), "after the restart the retry is delivered")
    reqs = hook.got("/hook")
    check([r.headers.get("quota-attempt") for r in reqs] == ["1", "2"] and {r.key for r in reqs} == {key},
          f"the retry goes on counting (Quota-Attempt 1, 2) with the same key: {reqs}")
    wait_for(lambda: ctx.job(job_id) is None, "the delivered job leaves jobs")
