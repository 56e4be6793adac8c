"""Webhooks against a real HTTP receiver: the body and headers of the brief,
the signature, retries with growing gaps, Retry-After, timeouts and refused
connections, dead letters (after `attempts` failures, at once on a 4xx) and
the dashboard's replay."""

import email.utils
import json
import time

from harness import (DEAD, JOBS, QUEUE, check, free_port, key_of, rule, config, verify_signature, wait_for,
                     webhook)

SECRET_ENV = "TEST_HOOK_SECRET"
SECRET = "s3cr3t-for-tests \u00e9"


def over_event(ctx, tree="acme"):
    """Charges a fresh LIMIT 100 budget to 100: warning 80, warning 90, over.
    Returns the `over` event (with `tree`)."""
    ctx.budget(tree)
    ctx.charge(tree, 100)
    over = [e for e in ctx.events(tree) if e["type"] == "over"]
    assert len(over) == 1, f"one over event: {ctx.events(tree)}"
    return over[0]


def same_event(sent, logged):
    """The event in a body is the event as published: every field of the log
    (as text), `tree` included."""
    for k, v in logged.items():
        if v is None:
            continue
        got = sent.get(k)
        if isinstance(v, (dict, list)):
            if got != v:
                return False, k
        elif str(got) != str(v):
            return False, k
    return True, ""


def test_retries_back_off_then_deliver_signed_bodies(ctx):
    hook = ctx.receiver()
    hook.plan("/hook", [500, 500, 503])  # then 200
    ctx.set_config(config({"hook": webhook(hook.url("/hook"), secret_env=SECRET_ENV, attempts=4, backoff_ms=200,
                                           max_backoff_ms=5000)},
                          [rule("overs", "hook", events=["over"])]))
    ctx.companion(env={SECRET_ENV: SECRET})
    ev = over_event(ctx)
    key = key_of("acme", ev)
    job_id = f"hook|{key}"

    reqs = wait_for(lambda: [r for r in hook.got("/hook") if r.status == 200], "the 4th attempt is delivered")
    reqs = hook.got("/hook")
    check(len(reqs) == 4, f"4 attempts (500, 500, 503, 200): got {reqs}")
    for n, r in enumerate(reqs, 1):
        check(r.key == key, f"attempt {n}: Idempotency-Key is <tree>#<seq>@<time> {key!r}: {r.key!r}")
        check(r.headers.get("quota-attempt") == str(n), f"attempt {n}: Quota-Attempt {n}: {r.headers.get('quota-attempt')}")
        check((r.headers.get("content-type") or "").startswith("application/json"),
              f"attempt {n}: Content-Type application/json: {r.headers.get('content-type')}")
        check((r.headers.get("user-agent") or "").startswith("quota-alerts/"),
              f"attempt {n}: User-Agent quota-alerts/<version>: {r.headers.get('user-agent')}")
        ok, why = verify_signature(r.headers.get("quota-signature"), r.body, SECRET)
        check(ok, f"attempt {n}: Quota-Signature verifies with HMAC-SHA256(secret, t.body): {why}")
        b = r.json or {}
        check(b.get("id") == key, f"attempt {n}: body id is the key: {b.get('id')}")
        check(b.get("tree") == "acme" and b.get("seq") == int(ev["seq"]) and b.get("type") == "over",
              f"attempt {n}: body tree, seq, type: {b}")
        check(b.get("rules") == ["overs"], f"attempt {n}: body rules [overs]: {b.get('rules')}")
        check(b.get("destination") == "hook", f"attempt {n}: body destination: {b.get('destination')}")
        check(b.get("attempt") == n, f"attempt {n}: body attempt {n}: {b.get('attempt')}")
        ok, field = same_event(b.get("event") or {}, ev)
        check(ok, f"attempt {n}: body event is the event as published (field {field}): {b.get('event')} vs {ev}")
        extra = set(b) - {"id", "tree", "seq", "type", "rules", "destination", "attempt", "event"}
        check(not extra, f"attempt {n}: no field beyond the brief's: {extra}")
    if len(reqs) == 4:
        gaps = [reqs[i + 1].at - reqs[i].at for i in range(3)]
        want = [0.2, 0.4, 0.8]  # backoff_ms * 2^(n-1)
        for i, (g, w) in enumerate(zip(gaps, want), 1):
            check(g >= w * 0.95, f"gap after failure {i} is at least backoff_ms*2^{i - 1} = {w} s: {g:.3f} s")
            check(g < w + 1.5, f"gap after failure {i} is not far beyond {w} s: {g:.3f} s")
        check(gaps[0] < gaps[1] < gaps[2], f"the gaps grow: {[round(g, 3) for g in gaps]}")

    wait_for(lambda: ctx.r.hget(JOBS, job_id) is None and not ctx.queued(), "a delivered job leaves jobs and queue")
    sent = wait_for(lambda: [s for s in ctx.sent() if s.get("id") == job_id], "the delivery is in quota:alerts:sent")
    s = sent[0]
    check(s.get("dest") == "hook" and s.get("tree") == "acme" and s.get("seq") == int(ev["seq"])
          and s.get("type") == "over" and s.get("attempts") == 4 and isinstance(s.get("at"), int),
          f"sent entry {{id, dest, tree, seq, type, at, attempts 4}}: {s}")
    check(ctx.r.zscore(DEAD, job_id) is None, "a delivered job is not dead")
    st = ctx.status()
    check(int(st.get("delivered") or 0) >= 1, f"status delivered counts it: {st}")
    check(int(st.get("failed") or 0) >= 3, f"status failed counts the 3 failed attempts: {st}")
    # Nothing else: the warnings match no rule.
    check(len(hook.got()) == 4, f"only the over event was sent: {hook.got()}")


def test_retry_after_is_honoured_up_to_the_cap(ctx):
    hook = ctx.receiver()
    hook.plan("/ra", [(503, {"Retry-After": "1"})])
    hook.plan("/429", [(429, {"Retry-After": "1"})])
    hook.plan("/cap", [(503, {"Retry-After": "120"})])
    hook.plan("/408", [408])
    hook.plan("/capped", [500, 500, 500])
    ctx.set_config(config({
        "ra": webhook(hook.url("/ra"), backoff_ms=20, max_backoff_ms=10000),
        "r429": webhook(hook.url("/429"), backoff_ms=20, max_backoff_ms=10000),
        "cap": webhook(hook.url("/cap"), backoff_ms=20, max_backoff_ms=300),
        "r408": webhook(hook.url("/408"), backoff_ms=20, max_backoff_ms=300),
        "capped": webhook(hook.url("/capped"), attempts=4, backoff_ms=200, max_backoff_ms=250),
    }, [rule("overs", ["ra", "r429", "cap", "r408", "capped"], events=["over"])]))
    ctx.companion()
    ev = over_event(ctx)
    key = key_of("acme", ev)
    for path in ("/ra", "/429", "/cap", "/408", "/capped"):
        wait_for(lambda p=path: [r for r in hook.got(p) if r.status == 200], f"{path}: the retry is delivered")
    for path, low, high, what in (("/ra", 0.95, 5, "Retry-After: 1 (1 s, above backoff 20 ms)"),
                                  ("/429", 0.95, 5, "429 with Retry-After: 1"),
                                  ("/cap", 0.0, 3, "Retry-After: 120 capped at max_backoff_ms 300"),
                                  ("/408", 0.0, 3, "408 is retried")):
        reqs = hook.got(path)
        check(len(reqs) == 2 and all(r.key == key for r in reqs), f"{path}: two attempts of {key}: {reqs}")
        if len(reqs) == 2:
            gap = reqs[1].at - reqs[0].at
            check(low <= gap < high, f"{path}: {what}: the retry came {gap:.3f} s later, expected [{low}, {high}) s")
    reqs = hook.got("/capped")
    check(len(reqs) == 4, f"/capped: 4 attempts: {reqs}")
    if len(reqs) == 4:
        gaps = [reqs[i + 1].at - reqs[i].at for i in range(3)]
        check(gaps[0] >= 0.19 and gaps[1] >= 0.24 and gaps[2] >= 0.24 and gaps[2] < 0.7,
              f"/capped: backoff 200 ms doubling, capped at max_backoff_ms 250: gaps {[round(g, 3) for g in gaps]} "
              f"(uncapped the third would be 0.8 s)")


def test_retry_after_as_an_http_date(ctx):
    """Retry-After may be an HTTP date (RFC 9110 10.2.3) as well as seconds;
    the brief says Retry-After is honoured, not only its seconds form."""
    hook = ctx.receiver()
    hook.plan("/date", [(503, {"Retry-After": email.utils.formatdate(time.time() + 3, usegmt=True)})])
    ctx.set_config(config({"date": webhook(hook.url("/date"), backoff_ms=20, max_backoff_ms=10000)},
                          [rule("overs", "date", events=["over"])]))
    ctx.companion()
    over_event(ctx)
    wait_for(lambda: hook.delivered("/date"), "/date: the retry is delivered")
    reqs = hook.got("/date")
    gap = reqs[1].at - reqs[0].at if len(reqs) == 2 else 0
    check(len(reqs) == 2 and 1.0 <= gap < 6,
          f"Retry-After as an HTTP date 2-3 s ahead (1 s resolution): the retry came {gap:.3f} s later: {reqs}")


def test_timeouts_and_refused_connections_are_retried(ctx):
    hook = ctx.receiver()
    hook.plan("/slow", [("delay", 5)])  # the first attempt is answered after 5 s, long after timeout_ms
    closed = free_port()  # nothing listens there
    ctx.set_config(config({
        "slow": webhook(hook.url("/slow"), timeout_ms=300, backoff_ms=20, attempts=3),
        "nowhere": webhook(f"http://127.0.0.1:{closed}/hook", attempts=2, backoff_ms=20),
    }, [rule("overs", ["slow", "nowhere"], events=["over"])]))
    ctx.companion()
    ev = over_event(ctx)
    key = key_of("acme", ev)
    wait_for(lambda: [r for r in hook.got("/slow") if r.status == 200], "/slow: the attempt after the timeout is delivered")
    reqs = hook.got("/slow")
    check(len(reqs) >= 2 and reqs[1].at - reqs[0].at < 3,
          f"/slow: a second attempt follows the timeout (300 ms) well before the first is answered: {reqs}")
    check([r.headers.get("quota-attempt") for r in reqs[:2]] == ["1", "2"], f"/slow: Quota-Attempt 1, 2: {reqs}")
    job_id = f"nowhere|{key}"
    wait_for(lambda: ctx.r.zscore(DEAD, job_id) is not None, "a destination that refuses connections: dead after 2 attempts")
    job = ctx.job(job_id) or {}
    check(job.get("attempts") == 2 and job.get("last_error"), f"the dead job counts 2 attempts and says why: {job}")


def test_dead_letters_and_replay(ctx):
    hook = ctx.receiver()
    hook.always("/down", 500)
    hook.always("/bad", 400)
    hook.plan("/gone", [404])
    hook.always("/nocontent", 204)
    ctx.set_config(config({
        "down": webhook(hook.url("/down"), attempts=3, backoff_ms=20, max_backoff_ms=100),
        "bad": webhook(hook.url("/bad"), attempts=5, backoff_ms=20),
        "gone": webhook(hook.url("/gone"), attempts=5, backoff_ms=20),
        "nocontent": webhook(hook.url("/nocontent"), attempts=5, backoff_ms=20),
    }, [rule("overs", ["down", "bad", "gone", "nocontent"], events=["over"])]))
    ctx.companion()
    ev = over_event(ctx)
    key = key_of("acme", ev)

    for dest, attempts, why in (("down", 3, "500"), ("bad", 1, "400"), ("gone", 1, "404")):
        job_id = f"{dest}|{key}"
        wait_for(lambda j=job_id: ctx.r.zscore(DEAD, j) is not None, f"{job_id} goes to quota:alerts:dead")
        job = ctx.job(job_id)
        check(job is not None, f"{job_id}: the dead job's body stays in quota:alerts:jobs")
        job = job or {}
        check(job.get("attempts") == attempts, f"{job_id}: dead after {attempts} attempt(s): {job.get('attempts')}")
        check(why in str(job.get("last_error") or ""), f"{job_id}: last_error names {why}: {job.get('last_error')!r}")
        check(isinstance(job.get("died"), int) and isinstance(job.get("last_attempt"), int),
              f"{job_id}: died and last_attempt are set: {job}")
        check(job.get("id") == job_id and job.get("key") == key and job.get("dest") == dest
              and job.get("tree") == "acme" and job.get("seq") == int(ev["seq"]) and job.get("rules") == ["overs"]
              and (job.get("event") or {}).get("type") == "over",
              f"{job_id}: the job JSON of the brief: {job}")
        check(ctx.r.zscore(QUEUE, job_id) is None, f"{job_id}: a dead job is not queued")
        check(len(hook.got(f"/{dest}")) == attempts, f"/{dest}: {attempts} request(s): {hook.got(f'/{dest}')}")
    st = ctx.status()
    check(int(st.get("dead") or 0) >= 3, f"status dead counts 3: {st}")
    wait_for(lambda: ctx.r.hget(JOBS, f"nocontent|{key}") is None, "a 204 is a delivery")
    check(len(hook.got("/nocontent")) == 1 and ctx.r.zscore(DEAD, f"nocontent|{key}") is None,
          f"204 (a 2xx) delivers at the first attempt: {hook.got('/nocontent')}")

    # The receivers recover; the dashboard replays the dead letters: ZREM dead,
    # ZADD queue now, attempts 0 and died null, in one MULTI.
    hook.always("/down", None)
    hook.always("/bad", None)
    for dest in ("down", "bad"):
        job_id = f"{dest}|{key}"
        job = ctx.job(job_id)
        job["attempts"] = 0
        job["died"] = None
        pipe = ctx.r.pipeline(transaction=True)
        pipe.zrem(DEAD, job_id)
        pipe.zadd(QUEUE, {job_id: int(time.time() * 1000)})
        pipe.hset(JOBS, job_id, json.dumps(job))
        pipe.execute()
    for dest in ("down", "bad"):
        wait_for(lambda d=dest: [r for r in hook.got(f"/{d}") if r.status == 200], f"/{dest}: the replay is delivered")
        job_id = f"{dest}|{key}"
        wait_for(lambda j=job_id: ctx.r.hget(JOBS, j) is None, f"{job_id}: delivered after replay, gone from jobs")
        last = hook.got(f"/{dest}")[-1]
        check(last.headers.get("quota-attempt") == "1" and (last.json or {}).get("attempt") == 1,
              f"/{dest}: the replay counts attempts from 1 again: {last.headers.get('quota-attempt')}")
        check(last.key == key, f"/{dest}: the replay keeps the idempotency key: {last.key}")
    check([j for j in ctx.dead()] == [f"gone|{key}"], f"only the one not replayed stays dead: {ctx.dead()}")
    check(not ctx.queued(), f"nothing is left queued: {ctx.queued()}")
    sent_ids = [s.get("id") for s in ctx.sent()]
    check(f"down|{key}" in sent_ids and f"bad|{key}" in sent_ids, f"the replays are in sent: {sent_ids}")
