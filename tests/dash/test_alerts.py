"""The Alerts section: the companion's status (none running: how to start one),
the configuration editor (a bad configuration is refused with the parser's
message and saves nothing, a good one lists its rules and destinations, a
stale editor is refused, a file configuration is read-only), the dead
letters (replay one into the queue, delete one, a stale delete keeps the
replayed job) and read-only mode. No companion runs: its keys are written
here as it writes them (alerts/store.rs)."""

import json
import re
import time

import redis
from harness import T0
from playwright.sync_api import expect

CONFIG = "quota:alerts:config"
STATUS = "quota:alerts:status"
JOBS = "quota:alerts:jobs"
QUEUE = "quota:alerts:queue"
DEAD = "quota:alerts:dead"
SENT = "quota:alerts:sent"
CHANNEL = "quota:alerts:config-changed"

GOOD = {
    "destinations": {
        "billing": {"webhook": "https://billing.example.com/hooks/quota", "secret_env": "BILLING_HOOK_SECRET",
                    "attempts": 5, "backoff_ms": 2000},
        "ops": {"email": ["ops@example.com", "cto@example.com"]},
    },
    "smtp": {"host": "mail.example.com", "port": 587, "tls": "starttls", "from": "quota <alerts@example.com>"},
    "rules": [
        {"name": "usage-80", "trees": "*", "path": "/", "events": ["warning"], "thresholds": [80], "to": ["ops"]},
        {"name": "wallet-low", "trees": "user:*", "events": ["low", "grant_expired"], "policy": "wallet",
         "to": ["billing", "ops"]},
    ],
}


def now_ms():
    return int(time.time() * 1000)


def clean(dash):
    keys = dash.r.keys("quota:alerts:*")
    if keys:
        dash.r.delete(*keys)


def companion(dash, config="key quota:alerts:config", age_ms=500, **counters):
    """A status hash as a companion that beat `age_ms` ago writes it."""
    fields = {"instance": "box:4242:0000beef", "heartbeat": now_ms() - age_ms, "lease_ms": 10000,
              "config": config, "config_error": "", "delivered": 0, "failed": 0, "dead": 0, "gaps": 0}
    fields.update(counters)
    dash.r.hset(STATUS, mapping=fields)


def job(tree, seq, dest="billing", kind="low", died=None, error="HTTP 500 Internal Server Error", attempts=5):
    t = 1773480000000 + seq * 1000
    key = f"{tree}#{seq}@{t}"
    event = {"type": kind, "tree": tree, "seq": seq, "time": t, "path": "/", "policy": "wallet",
             "metric": "credits", "remaining": "4", "low": "20"}
    return {"id": f"{dest}|{key}", "key": key, "dest": dest, "rules": ["wallet-low"], "tree": tree, "seq": seq,
            "event": event, "attempts": attempts, "created": t, "last_error": error,
            "last_attempt": died, "died": died}


def bury(dash, *jobs):
    """Dead letters as the companion leaves them: the body in jobs, the id in dead."""
    for j in jobs:
        dash.r.hset(JOBS, j["id"], json.dumps(j))
        dash.r.zadd(DEAD, {j["id"]: j["died"]})


def editor_save(page, text):
    form = page.locator("#edit-config")
    form.locator("textarea[name=text]").fill(text)
    form.get_by_role("button", name="Save").click()
    return form


def test_no_companion_says_how_to_start_one(dash):
    clean(dash)
    page = dash.page()
    page.goto(dash.url("/trees"))
    page.locator("header nav").get_by_role("link", name="Alerts", exact=True).click()
    expect(page).to_have_url(re.compile(r"/alerts$"))
    expect(page.locator("header nav a.on")).to_have_text("Alerts")
    box = page.locator("#no-companion")
    expect(box).to_contain_text("No companion is running: no event is delivered.")
    expect(page.locator("#companion")).to_contain_text(
        f"quota-dash alerts --redis redis://127.0.0.1:{dash.redis_port}/0")
    # No configuration yet: the editor holds the example, which parses.
    expect(page.locator(".empty").first).to_contain_text("No configuration yet")
    expect(page.locator("#edit-config textarea")).to_have_value(re.compile(r'"wallet-low"'))
    # A companion that stopped: its last heartbeat is older than its lease.
    companion(dash, age_ms=65_000)
    page.reload()
    expect(box).to_contain_text("The last heartbeat, from box:4242:0000beef, is 1 m 5 s old")
    companion(dash, age_ms=300, delivered=7, failed=3, dead=1, gaps=2)
    page.reload()
    expect(page.locator("#no-companion")).to_have_count(0)
    expect(page.locator("#companion")).to_contain_text("running instance box:4242:0000beef delivers")
    expect(page.locator("#counters tbody td")).to_have_text(["7", "3", "1", "2", "0", "0"])


def test_a_configuration_through_the_editor(dash):
    clean(dash)
    page = dash.page()
    page.goto(dash.url("/alerts"))
    # A rule that names no destination: the parser's own message, nothing saved.
    bad = json.loads(json.dumps(GOOD))
    bad["rules"][1]["to"] = ["bill"]
    form = editor_save(page, json.dumps(bad, indent=2))
    expect(form.locator(".error")).to_have_text('rules[1].to[0]: no destination named "bill" (nothing was saved)')
    assert dash.r.get(CONFIG) is None
    form = editor_save(page, '{"destinations": {"x": {"webhook": "https://x.example", "secret": "hunter2"}}}')
    expect(form.locator(".error")).to_contain_text("secrets come from the environment")
    assert dash.r.get(CONFIG) is None
    # A good one: saved as typed, the companion told on its channel.
    listener = redis.Redis(port=dash.redis_port, decode_responses=True)  # RESP2: no push-message prints
    pubsub = listener.pubsub()
    pubsub.subscribe(CHANNEL)
    text = json.dumps(GOOD, indent=2)
    editor_save(page, text)
    expect(page.locator(".flash-done")).to_have_text(
        "configuration saved: 2 rules, 2 destinations (no companion is running to use it)")
    assert dash.r.get(CONFIG) == text
    deadline = time.monotonic() + 5
    message = None
    while message is None and time.monotonic() < deadline:
        m = pubsub.get_message(timeout=1)
        if m and m.get("type") == "message":
            message = m
    pubsub.close()
    listener.close()
    assert message and message["channel"] == CHANNEL, message
    rules = page.locator("#rules tbody tr")
    expect(rules).to_have_count(2)
    expect(rules.nth(0).locator("td")).to_have_text(["usage-80", "*", "/", "warning", "", "80 %", "ops"])
    expect(rules.nth(1).locator("td")).to_have_text(
        ["wallet-low", "user:*", "/", "low, grant_expired", "wallet", "", "billing, ops"])
    dests = page.locator("#destinations tbody tr")
    expect(dests).to_have_count(2)
    expect(dests.nth(0).locator("td")).to_have_text(
        ["billing", "webhook", "https://billing.example.com/hooks/quota", "$BILLING_HOOK_SECRET", "5",
         "2.0 s doubling, at most 5 m 0 s", "10.0 s"])
    expect(dests.nth(1).locator("td").nth(2)).to_have_text("ops@example.com, cto@example.com")
    expect(page.locator("#smtp")).to_contain_text("mail.example.com:587 (STARTTLS)")
    # The editor holds the saved text; saving it again changes nothing.
    expect(page.locator("#edit-config textarea")).to_have_value(text)
    page.locator("#edit-config").get_by_role("button", name="Save").click()
    expect(page.locator(".flash-done")).to_have_text("nothing changed: the configuration already says that")
    # A stale editor: the key changed since the page was loaded.
    page.goto(dash.url("/alerts"))
    elsewhere = json.dumps({"rules": []})
    dash.r.set(CONFIG, elsewhere)
    form = editor_save(page, text.replace('"usage-80"', '"usage-90"'))
    expect(form.locator(".error")).to_contain_text("the configuration changed since you opened this page")
    assert dash.r.get(CONFIG) == elsewhere
    page.reload()
    expect(page.locator(".empty").first).to_have_text("No rule: no event goes anywhere.")
    # What the companion refuses, it says in its status; the page shows it.
    companion(dash, config_error='rules[0].to: required: the destinations to send to')
    page.reload()
    expect(page.locator("#config-error")).to_contain_text("rules[0].to: required")


def test_a_file_configuration_is_read_only(dash):
    clean(dash)
    # The companion writes the file's text in its status (the file may be on
    # another machine): the page shows it, and its rules.
    companion(dash, config="file /etc/quota/alerts.json", config_text=json.dumps(GOOD, indent=2))
    page = dash.page()
    page.goto(dash.url("/alerts"))
    expect(page.locator("#companion")).to_contain_text("Configuration: the file /etc/quota/alerts.json.")
    expect(page.locator("#config-file")).to_contain_text("change it there")
    expect(page.locator("#config-json")).to_contain_text('"usage-80"')
    expect(page.get_by_role("cell", name="usage-80", exact=True)).to_have_count(1)
    expect(page.locator("#edit-config")).to_have_count(0)
    status, head, _ = dash.http("/alerts/config", "POST", {"Content-Type": "application/x-www-form-urlencoded"},
                                "loaded=none&text=%7B%7D")
    assert status == 303 and "file" in head.get("location", ""), (status, head)
    assert dash.r.get(CONFIG) is None
    # No companion runs any more: the editor changes the key, for the next one.
    companion(dash, config="file /etc/quota/alerts.json", age_ms=60_000)
    page.reload()
    expect(page.locator("#companion")).to_contain_text("one started without --config reads the key")
    expect(page.locator("#edit-config")).to_have_count(1)


def test_dead_letters_replay_and_delete(dash):
    clean(dash)
    dash.r.set(CONFIG, json.dumps(GOOD, indent=2))
    companion(dash, delivered=41, failed=12, dead=3)
    base = T0 - 3_600_000  # times shown only: the screenshots do not depend on the day
    a = job("user:42", 7, died=base)
    b = job("user:42", 8, died=base + 60_000, error="HTTP 410 Gone")
    c = job("user:7", 3, dest="ops", kind="grant_expired", died=base + 120_000,
            error="SMTP 550 mailbox unavailable")
    bury(dash, a, b, c)
    # The overview: deliveries, the queue, the dead count.
    dash.r.lpush(SENT, json.dumps({"id": "ops|acme#12@1773480000000", "dest": "ops", "tree": "acme", "seq": 12,
                                   "type": "warning", "at": base + 30_000, "attempts": 1}))
    q = job("acme", 13, dest="ops", kind="over", error="connection refused", attempts=2)
    q["last_attempt"] = base + 200_000
    dash.r.hset(JOBS, q["id"], json.dumps(q))
    dash.r.zadd(QUEUE, {q["id"]: T0 + 60_000})
    page = dash.page()
    page.goto(dash.url("/alerts"))
    expect(page.locator("#sent tbody tr td").nth(1)).to_have_text("ops")
    expect(page.locator("#queue tbody tr td")).to_have_text(
        [re.compile(r"UTC$"), "ops", "acme", "13", "over", "2", re.compile(r"UTC$"), "connection refused"])
    expect(page.locator("#counters tbody td").nth(5)).to_have_text("3")
    dash.shot(page, "alerts")
    page.get_by_role("link", name="Dead letters (3)").click()
    rows = page.locator("#dead tbody tr")
    expect(rows).to_have_count(3)
    # Newest first, with the tree linked and the event's fields.
    expect(rows.nth(0)).to_have_attribute("data-id", c["id"])
    expect(rows.nth(0).get_by_role("link", name="user:7")).to_have_attribute("href", "/trees/user:7".replace(":", "%3A"))
    expect(rows.nth(0).locator("td.last-error")).to_have_text("SMTP 550 mailbox unavailable")
    expect(rows.nth(2)).to_contain_text("remaining: 4")
    dash.shot(page, "alerts-dead")
    page.on("dialog", lambda d: d.accept())
    # Replay one: it goes to the queue, due now, its attempts from 0.
    page.locator(f'#dead tr[data-id="{b["id"]}"]').get_by_role("button", name="Replay").click()
    expect(page.locator(".flash-done")).to_have_text("1 dead letter queued again")
    expect(rows).to_have_count(2)
    assert dash.r.zscore(QUEUE, b["id"]) is not None and dash.r.zscore(DEAD, b["id"]) is None
    replayed = json.loads(dash.r.hget(JOBS, b["id"]))
    assert replayed["attempts"] == 0 and replayed["died"] is None, replayed
    # Delete one: gone from dead and jobs.
    page.locator(f'#dead tr[data-id="{a["id"]}"]').get_by_role("button", name="Delete").click()
    expect(page.locator(".flash-done")).to_have_text("1 dead letter deleted")
    expect(rows).to_have_count(1)
    assert dash.r.zscore(DEAD, a["id"]) is None and dash.r.hget(JOBS, a["id"]) is None
    # A stale Delete of the replayed one (now queued) changes nothing.
    status, head, _ = dash.http("/alerts/dead/delete", "POST",
                                {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
                                "id=" + b["id"].replace("|", "%7C").replace("#", "%23").replace(":", "%3A"))
    assert status == 200, status
    assert dash.r.hget(JOBS, b["id"]) is not None and dash.r.zscore(QUEUE, b["id"]) is not None
    # All of them, after a confirmation.
    bury(dash, a)
    page.reload()
    expect(rows).to_have_count(2)
    page.get_by_role("button", name="Delete all").click()
    expect(page.locator(".flash-done")).to_have_text("2 dead letters deleted")
    expect(page.locator("main .empty")).to_have_text("No dead letters.")
    assert dash.r.zcard(DEAD) == 0 and dash.r.hget(JOBS, c["id"]) is None
    bury(dash, a, c)
    page.reload()
    page.get_by_role("button", name="Replay all").click()
    expect(page.locator(".flash-done")).to_have_text("2 dead letters queued again")
    assert dash.r.zcard(DEAD) == 0 and dash.r.zcard(QUEUE) == 4


def test_dead_letters_are_paged(dash):
    clean(dash)
    base = now_ms() - 86_400_000
    bury(dash, *[job(f"t{i:03}", i, died=base + i * 1000) for i in range(1, 121)])
    page = dash.page()
    page.goto(dash.url("/alerts/dead"))
    rows = page.locator("#dead tbody tr")
    expect(rows).to_have_count(50)
    expect(rows.nth(0).get_by_role("link")).to_have_text("t120")
    page.get_by_role("link", name="Older").click()
    expect(page).to_have_url(re.compile(r"/alerts/dead\?start=50$"))
    expect(rows.nth(0).get_by_role("link")).to_have_text("t070")
    page.get_by_role("link", name="Older").click()
    expect(rows).to_have_count(20)
    expect(page.get_by_role("link", name="Older")).to_have_count(0)
    page.get_by_role("link", name="Newer").click()
    expect(page).to_have_url(re.compile(r"/alerts/dead\?start=50$"))


def test_read_only_shows_no_forms_and_refuses_writes(dash):
    clean(dash)
    dash.r.set(CONFIG, json.dumps(GOOD))
    d = job("user:42", 9, died=now_ms())
    bury(dash, d)
    dash.restart_dash(["--read-only"])
    page = dash.page()
    page.goto(dash.url("/alerts"))
    expect(page.locator("#read-only")).to_contain_text("read-only")
    expect(page.locator("#config-json")).to_contain_text('"wallet-low"')
    expect(page.locator("#rules tbody tr")).to_have_count(2)
    expect(page.locator("main form")).to_have_count(0)
    page.goto(dash.url("/alerts/dead"))
    expect(page.locator("#dead tbody tr")).to_have_count(1)
    expect(page.locator("main form")).to_have_count(0)
    for path, data in (("/alerts/dead/replay", "all=1"), ("/alerts/dead/delete", "all=1"),
                       ("/alerts/config", "loaded=x&text=%7B%7D")):
        status, head, _ = dash.http(path, "POST", {"Content-Type": "application/x-www-form-urlencoded"}, data)
        assert status == 303 and "read-only" in head.get("location", ""), (path, status, head)
    assert dash.r.zcard(DEAD) == 1 and dash.r.get(CONFIG) == json.dumps(GOOD)
