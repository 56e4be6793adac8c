"""The companion's keys: its writes are fenced by the lease (an instance that
lost it changes nothing), dead letters are kept up to 10000 (the oldest
dropped with their bodies), and quota:alerts:sent keeps the last 100
deliveries, newest first."""

import json
import time

from harness import DEAD, JOBS, LEADER, SENT, check, config, key_of, rule, wait_for, webhook


def test_a_lost_lease_fences_every_write(ctx):
    hook = ctx.receiver()
    ctx.set_config(config({"hook": webhook(hook.url("/hook"))}, [rule("all", "hook")]))
    comp = ctx.companion()
    mine = ctx.r.get(LEADER)
    ctx.budget("acme")
    # Someone else holds the lease for 1.5 s (as after a long pause of ours).
    ctx.r.set(LEADER, "intruder", px=1500)
    stolen_until = time.monotonic() + 1.5
    cursors_before = ctx.cursors()
    ctx.charge("acme", 100)  # warning 80, warning 90, over
    keys = ctx.keys_of("acme")
    wait_for(lambda: set(keys) <= set(hook.keys()), "once the other lease lapses, the events are delivered")
    ctx.wait_caught_up("acme")
    early = [r for r in hook.got() if r.at < stolen_until - 0.05]
    check(not early, f"nothing is delivered while another instance holds the lease: {early}")
    check(ctx.r.get(LEADER) == mine, f"the companion takes its lease back: {ctx.r.get(LEADER)}")
    check("acme" not in cursors_before, f"no cursor moved for acme before: {cursors_before}")
    check(comp.alive(), "it runs on")


def test_dead_letters_are_bounded_oldest_first(ctx):
    hook = ctx.receiver()
    hook.always("/bad", 400)
    ctx.set_config(config({"bad": webhook(hook.url("/bad"))}, [rule("overs", "bad", events=["over"])]))
    ctx.companion()
    # 10000 dead letters already, from long ago.
    pipe = ctx.r.pipeline(transaction=False)
    for i in range(10000):
        job_id = f"bad|old#{i}@1"
        pipe.zadd(DEAD, {job_id: 1000 + i})
        pipe.hset(JOBS, job_id, json.dumps({"id": job_id, "key": f"old#{i}@1", "dest": "bad", "rules": ["overs"],
                                            "tree": "old", "seq": i, "event": {"type": "over"}, "attempts": 1,
                                            "created": 1, "last_error": "400", "last_attempt": 1, "died": 1000 + i}))
    pipe.execute()
    ctx.budget("acme")
    ctx.charge("acme", 100)
    over = [e for e in ctx.events("acme") if e["type"] == "over"][0]
    job_id = f"bad|{key_of('acme', over)}"
    wait_for(lambda: ctx.r.zscore(DEAD, job_id) is not None, "the new dead letter is kept")
    wait_for(lambda: ctx.r.zcard(DEAD) == 10000, "at most 10000 dead letters are kept")
    check(ctx.r.zscore(DEAD, "bad|old#0@1") is None and ctx.r.hget(JOBS, "bad|old#0@1") is None,
          "the oldest dead letter is dropped, body and all")
    check(ctx.r.zscore(DEAD, "bad|old#1@1") is not None, "the next oldest stays")
    check(ctx.r.hlen(JOBS) == 10000, f"jobs holds the bodies of the 10000: {ctx.r.hlen(JOBS)}")


def test_sent_keeps_the_last_100_newest_first(ctx):
    hook = ctx.receiver()
    ctx.set_config(config({"hook": webhook(hook.url("/hook"))}, [rule("overs", "hook", events=["over"])]))
    ctx.companion()
    ctx.r.lpush(SENT, *[json.dumps({"id": f"hook|old#{i}@1", "dest": "hook", "tree": "old", "seq": i,
                                    "type": "over", "at": 1, "attempts": 1}) for i in range(100)])
    keys = []
    for t in ("a", "b"):
        ctx.budget(t)
        ctx.charge(t, 100)
        keys.append(key_of(t, [e for e in ctx.events(t) if e["type"] == "over"][0]))
        wait_for(lambda k=keys[-1]: k in hook.keys(), f"{t}'s over is delivered")
        ctx.wait_caught_up(t)
    sent = ctx.sent()
    check(len(sent) == 100, f"sent keeps 100: {len(sent)}")
    check([s.get("id") for s in sent[:2]] == [f"hook|{keys[1]}", f"hook|{keys[0]}"],
          f"newest first: {[s.get('id') for s in sent[:3]]}")
    check(sent[-1].get("id") == "hook|old#2@1", f"the two oldest went: {sent[-1]}")
