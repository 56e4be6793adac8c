"""Usage over time and live events, as a person sees them: the usage page's
chart, totals and top tables after charges on two models and two paths,
today and the last 7 days (the test clock moves a day); a tree's events page
that gets a warning row while it is open, events that fired while no page
was open, and the page of every tree's events. The feeds are bounded."""

import datetime
import http.client
import json
import re
import time

from playwright.sync_api import expect

from backend import lua_command

DAY = 86_400_000
HOUR = 3_600_000


def charge(dash, key, path, amount, service=None, model=None, metric="credits"):
    args = ["QUOTA.CHARGE", key, "PATH", path]
    if service:
        args += ["SERVICE", service]
        if model:
            args += ["MODEL", model]
    dash.r.q(*args, "COST", metric, amount)


def open_feed(dash, path, headers=None):
    """A live feed read outside the browser: (connection, response)."""
    conn = http.client.HTTPConnection("127.0.0.1", dash.port, timeout=10)
    conn.request("GET", path, headers={"Accept": "text/event-stream", **(headers or {})})
    return conn, conn.getresponse()


def read_events(res, n):
    """The next n events of a feed (blocks until they come; the socket's
    timeout fails the test if they do not)."""
    events = []
    while len(events) < n:
        line = res.readline()
        assert line, f"the feed ended after {len(events)} events"
        if line.startswith(b"data: "):
            events.append(json.loads(line[6:]))
    return events


# ----- events -----------------------------------------------------------------


def test_feeds_are_bounded(dash):
    # First in the file: no page of another test holds a feed yet.
    open_ = []
    try:
        for _ in range(64):
            conn, res = open_feed(dash, "/events/stream")
            assert res.status == 200, f"feed {len(open_) + 1} answered {res.status}"
            open_.append(conn)
        conn, res = open_feed(dash, "/events/stream")
        body = res.read().decode()
        conn.close()
        assert res.status == 503, f"the 65th feed answered {res.status}, expected 503"
        assert "64 live event feeds are open" in body, body
        status, _, body = dash.http("/trees/acme/events/stream")
        assert status == 503, f"a tree's 65th feed answered {status}"
    finally:
        for conn in open_:
            conn.close()
    # The clients went away: their places are given back (the dash sees
    # the connections close; wait for that, at most 10 s).
    deadline = time.monotonic() + 10
    while True:
        conn, res = open_feed(dash, "/events/stream")
        conn.close()
        if res.status == 200:
            break
        assert time.monotonic() < deadline, "the closed feeds were not given back"
    page = dash.page()
    page.goto(dash.url("/events"))
    expect(page.locator("#live-status")).to_have_class(re.compile(r"\bon\b"))


def test_a_warning_arrives_live(dash):
    dash.r.q("QUOTA.SET", "live", "/", "monthly", "METRIC", "credits", "LIMIT", "100")
    page = dash.page()
    page.goto(dash.url("/trees/live/events"))
    expect(page.locator("#events-empty")).to_be_visible()
    expect(page.locator("#live-status")).to_have_class(re.compile(r"\bon\b"))
    page.evaluate("window.notReloaded = true")
    charge(dash, "live", "team/a", "85")
    row = page.locator("#events tbody tr").first
    expect(row).to_contain_text("warning")
    expect(row.locator(".status")).to_have_class(re.compile("status-warning"))
    cells = row.locator("td")
    expect(cells.nth(0)).to_have_text("1")
    expect(cells.nth(1)).to_have_text("2026-03-14 09:30:00 UTC")
    expect(cells.nth(3)).to_have_text("/")
    expect(cells.nth(4)).to_have_text("monthly")
    expect(cells.nth(6)).to_have_text("85")
    expect(cells.nth(8)).to_have_text("100")
    expect(cells.nth(9)).to_have_text("80%")
    expect(page.locator("#events-empty")).to_be_hidden()
    # The second threshold: the newest row on top, the first one below it.
    charge(dash, "live", "team/a", "6")
    expect(page.locator("#events tbody tr")).to_have_count(2)
    expect(page.locator("#events tbody tr").first.locator("td").nth(9)).to_have_text("90%")
    assert page.evaluate("window.notReloaded === true"), "the page was reloaded"


def hide(page, hidden):
    """As the browser does when the tab is hidden or shown again."""
    page.evaluate("""(h) => {
        Object.defineProperty(document, "hidden", { configurable: true, get: () => h });
        document.dispatchEvent(new Event("visibilitychange"));
    }""", hidden)


def test_tabs_share_a_feed_and_a_hidden_tab_lets_it_go(dash):
    dash.r.q("QUOTA.SET", "share", "/", "m", "METRIC", "credits", "LIMIT", "100", "WARN", "10,20,30,40")
    one, two = dash.page(), dash.page()
    for page in (one, two):
        page.goto(dash.url("/trees/share/events"))
        expect(page.locator("#live-status")).to_have_class(re.compile(r"\bon\b"))
    # The second tab takes its events from the first one's feed.
    expect(two.locator("#live-status")).to_contain_text("shared with another tab")
    charge(dash, "share", "/", "11")
    for page in (one, two):
        expect(page.locator("#events tbody tr")).to_have_count(1)
    # The first tab hidden: it lets the feed go, the second opens its own.
    hide(one, True)
    expect(one.locator("#live-status")).to_contain_text("Paused while this tab is hidden")
    expect(two.locator("#live-status")).not_to_contain_text("shared")
    charge(dash, "share", "/", "10")
    for page in (one, two):
        expect(page.locator("#events tbody tr")).to_have_count(2)
    # Both hidden: no feed; what fires meanwhile follows when one is shown.
    hide(two, True)
    expect(two.locator("#live-status")).to_contain_text("Paused")
    charge(dash, "share", "/", "10")
    page = two
    hide(page, False)
    expect(page.locator("#events tbody tr")).to_have_count(3)
    expect(page.locator("#events tbody tr").first.locator("td").nth(9)).to_have_text("30%")
    hide(one, False)
    expect(one.locator("#events tbody tr")).to_have_count(3)


def test_event_text_is_shown_as_text(dash):
    # A hold's META comes from a client: shown as text, never as HTML.
    dash.r.q("QUOTA.SET", "meta", "/", "monthly", "METRIC", "credits", "LIMIT", "100")
    page = dash.page()
    page.goto(dash.url("/trees/meta/events"))
    expect(page.locator("#live-status")).to_have_class(re.compile(r"\bon\b"))
    dash.r.q("QUOTA.RESERVE", "meta", "PATH", "a", "ID", "r1", "TTL", "1000", "META", "user", "<img src=x onerror=alert(1)>",
             "COST", "credits", "5")
    dash.clock_advance(2000)
    dash.sweep()
    row = page.locator("#events tbody tr").first
    expect(row).to_contain_text("expired")
    expect(row.locator("td.details")).to_contain_text("meta user <img src=x onerror=alert(1)>")
    expect(row.locator("img")).to_have_count(0)


def test_events_fired_while_away_are_shown_on_load(dash):
    dash.r.q("QUOTA.SET", "away", "/", "monthly", "METRIC", "credits", "LIMIT", "100")
    charge(dash, "away", "x", "85")
    charge(dash, "away", "x", "10")
    page = dash.page()
    page.goto(dash.url("/trees/away/events"))
    rows = page.locator("#events tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator("td").nth(9)).to_have_text("90%")
    expect(rows.nth(1).locator("td").nth(9)).to_have_text("80%")
    expect(page.locator("#live-status")).to_have_class(re.compile(r"\bon\b"))
    # Live after the catch-up: the over event of this charge, once.
    charge(dash, "away", "x", "5")
    expect(rows.first).to_contain_text("over")
    expect(rows).to_have_count(3)


def test_the_feed_catches_up_from_a_seq(dash):
    dash.r.q("QUOTA.SET", "seqs", "/", "monthly", "METRIC", "credits", "LIMIT", "100", "WARN", "10,20,30,40")
    for _ in range(4):
        charge(dash, "seqs", "x", "10")
    conn, res = open_feed(dash, "/trees/seqs/events/stream?since=1")
    try:
        assert res.status == 200
        assert [e["seq"] for e in read_events(res, 3)] == [2, 3, 4]
        charge(dash, "seqs", "x", "60")  # over: seq 5, live
        ev = read_events(res, 1)[0]
        assert (ev["seq"], ev["type"], ev["tree"]) == (5, "over", "seqs"), ev
    finally:
        conn.close()
    # A browser that reconnects says what it saw last (Last-Event-ID).
    conn, res = open_feed(dash, "/trees/seqs/events/stream?since=0", {"Last-Event-ID": "4"})
    try:
        assert [e["seq"] for e in read_events(res, 1)] == [5]
    finally:
        conn.close()
    status, _, body = dash.http("/trees/seqs/events/stream?since=abc")
    assert status == 400 and "whole number" in body, (status, body)


def test_a_long_log_shows_its_last_page(dash):
    # 150 refused-but-recorded charges: 150 `disallowed` events; the page
    # shows the newest 100, and goes live after the last.
    dash.r.q("QUOTA.DENY", "busy", "/", "SERVICE", "video")
    for _ in range(150):
        charge(dash, "busy", "x", "1", "video")
    page = dash.page()
    page.goto(dash.url("/trees/busy/events"))
    rows = page.locator("#events tbody tr")
    expect(rows).to_have_count(100)
    expect(rows.first.locator("td").first).to_have_text("150")
    expect(rows.last.locator("td").first).to_have_text("51")
    expect(rows.first.locator("td.details")).to_have_text("rule deny · service video · amounts credits 1")
    expect(page.locator("#live-status")).to_have_class(re.compile(r"\bon\b"))
    charge(dash, "busy", "x", "1", "video")
    expect(rows.first.locator("td").first).to_have_text("151")
    expect(rows).to_have_count(101)


def test_every_tree_on_the_events_page(dash):
    for key in ("north", "south"):
        dash.r.q("QUOTA.SET", key, "/", "monthly", "METRIC", "credits", "LIMIT", "10", "WARN", "50")
    page = dash.page()
    page.goto(dash.url("/events"))
    expect(page.locator("header nav a.on")).to_have_text("Events")
    expect(page.locator("#live-status")).to_have_class(re.compile(r"\bon\b"))
    charge(dash, "north", "a", "8.5")
    charge(dash, "south", "b", "9.5")
    rows = page.locator("#events tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator("td").first).to_have_text("south")
    expect(rows.nth(1).locator("td").first).to_have_text("north")
    rows.nth(0).get_by_role("link", name="south").click()
    expect(page).to_have_url(re.compile(r"/trees/south/events$"))
    expect(page.locator("#events tbody tr")).to_have_count(1)


def wrapped_log(dash, key, n):
    """n `disallowed` events on a tree, sent at once: more than events_len
    (1000) and the log keeps only the newest 1000."""
    dash.r.q("QUOTA.DENY", key, "/", "SERVICE", "video")
    p = dash.r.pipeline(transaction=False)
    for _ in range(n):
        args = ["QUOTA.CHARGE", key, "PATH", "x", "SERVICE", "video", "COST", "credits", "1"]
        p.execute_command(*(lua_command(args) if dash.backend == "lua" else args))
    for reply in p.execute():
        assert not isinstance(reply, Exception), reply


def test_older_events_and_a_wrapped_log(dash):
    wrapped_log(dash, "wrap", 1150)
    page = dash.page()
    page.goto(dash.url("/trees/wrap/events"))
    rows = page.locator("#events tbody tr")
    expect(rows).to_have_count(100)
    expect(rows.last.locator("td").first).to_have_text("1051")
    expect(page.locator("#log-wrapped")).to_have_text(
        "Older events were dropped from the log: events_len keeps the last 1000 (the oldest kept is seq 151).")
    expect(page.locator("#live-status")).to_have_class(re.compile(r"\bon\b"))
    # Older events come below, 100 at a time, the page still live.
    page.locator("#older-link").click()
    expect(rows).to_have_count(200)
    expect(rows.last.locator("td").first).to_have_text("951")
    page.locator("#older-link").click()
    expect(rows).to_have_count(300)
    expect(rows.last.locator("td").first).to_have_text("851")
    charge(dash, "wrap", "x", "1", "video")
    expect(rows.first.locator("td").first).to_have_text("1151")
    seqs = rows.evaluate_all("rows => rows.map(r => Number(r.dataset.seq))")
    assert seqs == list(range(1151, 850, -1)), seqs[:3]
    # The page of the oldest kept (1151 pushed 151 out): no older link, a
    # link back to the live page.
    page.goto(dash.url("/trees/wrap/events?before=251"))
    expect(rows).to_have_count(99)
    expect(rows.first.locator("td").first).to_have_text("250")
    expect(rows.last.locator("td").first).to_have_text("152")
    expect(page.locator("#older-link")).to_have_count(0)
    expect(page.locator("#live-status")).to_have_count(0)
    page.get_by_role("link", name="Newest events (live)").click()
    expect(page.locator("#live-status")).to_have_class(re.compile(r"\bon\b"))
    status, _, body = dash.http("/trees/wrap/events?before=x")
    assert status == 400 and "whole number" in body, (status, body)


def test_the_feed_says_what_the_log_lost(dash):
    wrapped_log(dash, "lost", 1100)
    # A browser away since seq 40: the log keeps 101 to 1100.
    conn, res = open_feed(dash, "/trees/lost/events/stream?since=40")
    try:
        assert res.status == 200
        line = res.readline()
        while not line.startswith(b"event: "):
            line = res.readline()
        assert line.strip() == b"event: gap", line
        assert json.loads(res.readline()[6:]) == {"from": 41, "to": 100}
        assert [e["seq"] for e in read_events(res, 2)] == [101, 102]
    finally:
        conn.close()
    # The page's feed, as if it had been away since seq 40.
    page = dash.page()
    page.route(re.compile(r".*/events/stream\?since=\d+$"),
               lambda route: route.continue_(url=re.sub(r"since=\d+", "since=40", route.request.url)))
    page.goto(dash.url("/trees/lost/events"))
    expect(page.locator("#feed-gap")).to_have_text(
        "Events 41 to 100 were dropped from the log before this page caught up (events_len keeps only the newest): "
        "they are not shown.")
    expect(page.locator("#events tbody tr")).to_have_count(100)


# ----- usage ------------------------------------------------------------------


def bucket_titles(page):
    return page.locator("#usage-chart g.bucket title").all_text_contents()


def test_usage_today_and_seven_days(dash):
    charge(dash, "shop", "proj/a", "12.5", "chat", "m1")
    charge(dash, "shop", "proj/b", "7.25", "chat", "m2")
    charge(dash, "shop", "proj/b", "3", "image", "sdxl")
    page = dash.page()
    page.goto(dash.url("/trees/shop/usage?path=proj"))
    expect(page.locator(".tabs a.on")).to_have_text("Today")
    expect(page.locator("#usage-span")).to_contain_text("By hour, from 2026-03-14 00:00:00 UTC")
    # One bar per hour since midnight; the 09:00 one has the exact amount.
    expect(page.locator("#usage-chart g.bucket")).to_have_count(10)
    expect(page.locator("#usage-chart rect.col")).to_have_count(1)
    assert "2026-03-14 09:00 UTC: 22.75 credits" in bucket_titles(page)
    expect(page.locator("#usage-chart text.ylabel").first).to_have_text("22.75")
    expect(page.locator("#usage-totals")).to_contain_text("22.75")
    models = page.locator("#usage-models tbody tr")
    expect(models).to_have_count(3)
    expect(models.nth(0)).to_contain_text("chat/m1")
    expect(models.nth(0).locator("td.num")).to_have_text("12.5")
    expect(models.nth(1)).to_contain_text("chat/m2")
    expect(models.nth(1).locator("td.num")).to_have_text("7.25")
    paths = page.locator("#usage-paths tbody tr")
    expect(paths.nth(0)).to_contain_text("proj/a")
    expect(paths.nth(0).locator("td.num")).to_have_text("12.5")
    expect(paths.nth(1)).to_contain_text("proj/b")
    expect(paths.nth(1).locator("td.num")).to_have_text("10.25")
    # Filter by service.
    page.locator("#usage-filter input[name=service]").fill("chat")
    page.locator("#usage-filter button[type=submit]").click()
    expect(page.locator("#usage-totals")).to_contain_text("19.75")
    expect(page.locator("#usage-services tbody tr")).to_have_count(1)
    expect(page.locator("#usage-models tbody tr")).to_have_count(2)
    assert "2026-03-14 09:00 UTC: 19.75 credits" in bucket_titles(page)
    # A model's row filters by its service and model.
    page.locator("#usage-models").get_by_role("link", name="chat/m2").click()
    expect(page.locator("#usage-totals")).to_contain_text("7.25")
    # 7 days: one bar a day, today's the only one with spend.
    page.goto(dash.url("/trees/shop/usage?path=proj"))
    page.locator(".tabs").get_by_role("link", name="7 d").click()
    expect(page.locator("#usage-chart g.bucket")).to_have_count(7)
    expect(page.locator("#usage-chart rect.col")).to_have_count(1)
    assert bucket_titles(page)[-1] == "2026-03-14: 22.75 credits"
    # A day later, 7 d shows two days.
    dash.clock_advance(DAY)
    charge(dash, "shop", "proj/a", "5", "chat", "m1")
    page.reload()
    expect(page.locator("#usage-chart rect.col")).to_have_count(2)
    titles = bucket_titles(page)
    assert titles[0] == "2026-03-09: 0 credits", titles
    assert titles[-2:] == ["2026-03-14: 22.75 credits", "2026-03-15: 5 credits"], titles
    expect(page.locator("#usage-totals")).to_contain_text("27.75")
    # Today is the new day only.
    page.locator(".tabs").get_by_role("link", name="Today").click()
    expect(page.locator("#usage-totals")).to_contain_text("5")
    expect(page.locator("#usage-chart rect.col")).to_have_count(1)


def test_usage_chart_reads_well(dash):
    # Spend through a day, a refund in one hour (a negative bucket).
    dash.clock_advance(2 * DAY)
    now = dash.now_ms()
    dash.clock_advance(DAY - now % DAY)  # midnight
    amounts = ["12", "30.5", "8", "44", "20", "-6", "26", "15.25", "38", "9", "51", "17"]
    for i, a in enumerate(amounts):
        charge(dash, "chart", "web", a, "chat", "gpt-4o" if i % 2 else "gpt-4o-mini")
        charge(dash, "chart", "api", "4", "image", "sdxl")
        if i < len(amounts) - 1:
            dash.clock_advance(2 * HOUR)
    page = dash.page()
    page.goto(dash.url("/trees/chart/usage"))
    expect(page.locator("#usage-chart rect.col-neg")).to_have_count(1)
    expect(page.locator("#usage-chart rect.col-pos")).to_have_count(11)
    assert any(t.endswith(": -2 credits") for t in bucket_titles(page)), bucket_titles(page)
    dash.shot(page, "analytics")


def test_usage_errors_are_said_plainly(dash):
    charge(dash, "errs", "a", "1", "chat", "m1")
    page = dash.page()
    page.goto(dash.url("/trees/errs/usage?range=custom&since=2026-03-20&until=2026-03-10"))
    expect(page.locator("#usage-error")).to_have_text("ERR syntax: SINCE is after UNTIL")
    page.goto(dash.url("/trees/errs/usage?range=custom&since=2026-02-30"))
    expect(page.locator("#usage-error")).to_contain_text("“2026-02-30” is not a date")
    page.goto(dash.url("/trees/errs/usage?model=m1"))
    expect(page.locator("#usage-error")).to_contain_text("choose the service too")
    page.goto(dash.url("/trees/errs/usage?path=nope"))
    expect(page.locator("#usage-error")).to_have_text("NOTFOUND no such path 'nope'")
    # Dates mean a span between them, whatever the select says.
    today = datetime.datetime.fromtimestamp(dash.now_ms() / 1000, datetime.timezone.utc).strftime("%Y-%m-%d")
    page.goto(dash.url(f"/trees/errs/usage?range=today&since={today}&until={today}"))
    expect(page.locator("#usage-span")).to_contain_text(f"By day, from {today} to")
    expect(page.locator("#usage-chart g.bucket")).to_have_count(1)
    assert bucket_titles(page) == [f"{today}: 1 credits"], bucket_titles(page)
    # Nothing spent in a span.
    page.goto(dash.url("/trees/errs/usage?range=custom&since=2026-03-01&until=2026-03-02"))
    expect(page.locator("#usage-empty")).to_have_text("Nothing was spent in this span.")
    expect(page.locator("#usage-chart")).to_have_count(0)


# ----- last: it moves the clock a day -------------------------------------------


def test_events_page_reads_well(dash):
    # A day's events of a tree: a hold that expired, two warnings, the over,
    # and the next day's reset, the last ones arriving live.
    dash.r.q("QUOTA.SET", "acme", "/", "daily", "METRIC", "credits", "LIMIT", "100", "WINDOW", "day")
    dash.r.q("QUOTA.RESERVE", "acme", "PATH", "team/web", "ID", "req-81", "TTL", "1000", "META", "user", "u7",
             "COST", "credits", "3")
    dash.clock_advance(2000)
    dash.sweep()
    page = dash.page()
    page.goto(dash.url("/trees/acme/events"))
    expect(page.locator("#events tbody tr")).to_have_count(1)
    expect(page.locator("#live-status")).to_have_class(re.compile(r"\bon\b"))
    charge(dash, "acme", "team/web", "85", "chat", "gpt-4o")
    charge(dash, "acme", "team/bot", "7", "chat", "gpt-4o-mini")
    charge(dash, "acme", "team/bot", "8", "chat", "gpt-4o-mini")
    dash.clock_advance(DAY)
    charge(dash, "acme", "team/web", "1", "chat", "gpt-4o")
    rows = page.locator("#events tbody tr")
    expect(rows).to_have_count(5)
    expect(rows.first).to_contain_text("reset")
    expect(rows.nth(1)).to_contain_text("over")
    expect(rows.nth(4)).to_contain_text("expired")
    expect(rows.nth(4).locator("td.details")).to_have_text("id req-81 · amounts credits 3 · meta user u7")
    dash.shot(page, "events")
