"""Reviewer's tests (review 19, /work/brief/review19.md): each test proves one
finding (F<n>) and FAILS while the finding is open. They assert what the
dashboard should do; the finding's text says what it does instead.
"""

import re
import urllib.parse

from playwright.sync_api import expect


def enc(s):
    return urllib.parse.quote(s, safe="")


def form_fields(html_text, form_id):
    """The named fields of a form as a browser would send them (inputs,
    ticked checkboxes, selected options)."""
    import html as h

    form = re.search(rf'<form[^>]*id="{form_id}".*?</form>', html_text, re.S).group(0)
    fields = {}
    for m in re.finditer(r"<input[^>]*>", form):
        t = m.group(0)
        n = re.search(r'name="([^"]+)"', t)
        v = re.search(r'value="([^"]*)"', t)
        if n and ('type="checkbox"' not in t or "checked" in t):
            fields[n.group(1)] = h.unescape(v.group(1)) if v else ""
    for m in re.finditer(r'<select name="([^"]+)".*?</select>', form, re.S):
        s = re.search(r'<option value="([^"]*)" selected', m.group(0))
        fields[m.group(1)] = s.group(1) if s else ""
    return fields


# F1: open redirect through `next` with a TAB ("/\t/evil" is "//evil" to a browser).
def test_f1_next_cannot_leave_the_dashboard(dash):
    dash.r.q("QUOTA.SET", "f1", "/", "m", "METRIC", "credits", "LIMIT", "10")
    page = dash.page()
    page.goto(dash.url("/trees/f1/label?path=/&next=" + enc("/\t/example.invalid/x")))
    page.route("**/*", lambda route: route.fulfill(status=200, body="elsewhere")
               if "example.invalid" in route.request.url else route.continue_())
    page.fill("#label-form input[name=note]", "hello")
    page.locator("#label-form button[type=submit]").click()
    page.wait_for_url(re.compile(r"done="))
    assert page.url.startswith("http://127.0.0.1:"), f"after saving, the browser is at {page.url}"
    # The login form of token mode emits the same Location (CSP happens to stop it in Chromium).
    status, head, _ = dash.http("/login", "POST", {"Origin": dash.url("").rstrip("/")},
                                "token=x&next=" + enc("/\t/example.invalid/x"))
    assert "\t" not in head.get("location", ""), head.get("location")


# F2: a `next` with a newline: the write happens, then a bare 500.
def test_f2_a_bad_next_is_refused_before_writing(dash):
    dash.r.q("QUOTA.SET", "f2", "/", "m", "METRIC", "credits", "LIMIT", "10")
    status, _, body = dash.http("/trees/f2/label", "POST", {},
                                "path=/&note=written&next=" + enc("/a\nb"))
    assert status != 500, f"500: {body}"


# F3: the policy editor prefills limit = allowance - granted, which keeps the
# rolled-over amount: saving without an edit raises the limit.
def test_f3_saving_an_unchanged_policy_keeps_its_limit(dash):
    dash.clock_set(1773480600000)  # 2026-03-14
    dash.r.delete("f3")
    dash.r.q("QUOTA.SET", "f3", "/", "m", "METRIC", "credits", "LIMIT", "100", "WINDOW", "month",
             "ROLLOVER", "1000")
    dash.r.q("QUOTA.CHARGE", "f3", "PATH", "/", "COST", "credits", "30")
    dash.clock_advance(20 * 86_400_000)  # April: 70 rolled over
    dash.r.q("QUOTA.GRANT", "f3", "/", "m", "50", "ID", "g1")
    before = dash.r.q("QUOTA.GET", "f3", "/")["policies"][0]
    _, _, body = dash.http("/trees/f3/policy?path=/&policy=m")
    fields = form_fields(body, "policy-form")
    assert fields["limit"] == "100", f"the editor offers limit {fields['limit']} for a policy set with LIMIT 100"
    dash.http("/trees/f3/policy", "POST", {"Accept": "application/json"}, urllib.parse.urlencode(fields))
    after = dash.r.q("QUOTA.GET", "f3", "/")["policies"][0]
    assert after["limit"] == before["limit"], f"saved unchanged: allowance {before['limit']} -> {after['limit']}"


def restart_redis(dash):
    """Stops redis-server and starts it again on the same port (data gone,
    quota loaded again), as a Redis restart or failover does."""
    import os
    import subprocess
    import time

    import harness

    harness._stop(dash.redis_proc)
    rdir = os.path.join(dash.dir, "redis")
    extra = ["--loadmodule", harness.MODULE, "TEST_CLOCK", "yes"] if dash.backend == "module" else []
    dash.redis_proc = subprocess.Popen(
        ["redis-server", "--port", str(dash.redis_port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", rdir, "--logfile", dash.redis_log] + extra,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 15
    while True:
        try:
            dash.r.ping()
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    if dash.backend == "lua":
        subprocess.run([harness.LOADER, dash.redis_url, "--test-clock"], check=True, capture_output=True)
    dash.clock_set(harness.T0)


# F4: the dashboard never reconnects to Redis: after a restart every page is
# "Redis did not answer as expected: broken pipe" until quota-dash is restarted.
def test_f4_the_dashboard_reconnects_after_a_redis_restart(dash):
    dash.ignore_errors("502", "events/stream", "EventSource")
    dash.r.q("QUOTA.SET", "f4", "/", "m", "METRIC", "credits", "LIMIT", "10")
    assert dash.http("/trees/f4")[0] == 200
    try:
        restart_redis(dash)
        _f4_after_restart(dash)
    finally:
        dash.restart_dash()  # the next tests get a dashboard that works


def _f4_after_restart(dash):
    dash.r.q("QUOTA.SET", "f4", "/", "m", "METRIC", "credits", "LIMIT", "10")
    status = body = None
    for _ in range(3):  # a first failure while reconnecting would be fair
        status, _, body = dash.http("/trees/f4")
        if status == 200:
            break
    assert status == 200, f"{status}: {re.findall(r'role=.alert.>([^<]*)', body)}"
    page = dash.page()
    page.goto(dash.url("/trees/f4/events"))
    expect(page.locator("#live-status")).not_to_have_class(re.compile("error|closed|down"))


# F5: a token with a space, ';' or a non-ASCII letter is accepted at start,
# but the cookie cannot carry it: signing in with the right token loops
# back to the sign-in page forever.
def test_f5_any_accepted_token_can_sign_in(dash):
    # Fixed by refusing at start what a cookie or a header could not carry,
    # and by a session cookie that is an HMAC of the token, never the token.
    for bad in ("pass word;with=semi", "pässwörd-sehr-lang"):
        code, out = dash.run_dash(["--token", bad])
        assert code not in (0, None), f"a token {bad!r} was accepted at start"
        assert "printable ASCII" in out, out
    token = "T0ken;with,punct=!"
    dash.restart_dash(["--token", token])
    page = dash.page()
    page.goto(dash.url("/trees"))
    page.fill("input[name=token]", token)
    with page.expect_navigation():
        page.click("form[action='/login'] button[type=submit]")
    assert "/login" not in page.url, "the right token does not sign in"
    cookies = page.context.cookies()
    assert cookies and all(token not in c["value"] for c in cookies), "the cookie carries the token itself"


# F6: "50 a page": the trees page shows a whole SCAN batch (up to ~1000 rows,
# one QUOTA.GET each, all at once).
def test_f6_trees_come_fifty_a_page(dash):
    pipe = dash.r.pipeline(transaction=False)
    for i in range(300):
        args = ["QUOTA.SET", f"f6bulk{i:04d}", "/", "m", "METRIC", "credits", "LIMIT", "5"]
        if dash.backend == "lua":
            from backend import lua_command
            args = lua_command(args)
        pipe.execute_command(*args)
    pipe.execute()
    _, _, body = dash.http("/trees?q=f6bulk")
    rows = re.findall(r'<td><a href="/trees/f6bulk', body)
    assert len(rows) <= 50, f"{len(rows)} trees on one page"


# F7: trees named "." or ".." cannot be opened: tree_url keeps the dots, and
# a browser resolves /trees/.. to / (and /trees/. to /trees/, an empty 404).
def test_f7_a_tree_named_dot_dot_opens(dash):
    dash.r.q("QUOTA.SET", "..", "/", "m", "METRIC", "credits", "LIMIT", "5")
    page = dash.page()
    page.goto(dash.url("/trees?q=.."))
    page.get_by_role("link", name="..", exact=True).click()
    page.wait_for_load_state()
    expect(page.locator("h1")).to_have_text("..")


# F8: the flash banner takes any text from the URL: a link can make the
# dashboard itself say anything in its error banner.
def test_f8_the_banner_says_only_what_the_dashboard_said(dash):
    dash.r.q("QUOTA.SET", "f8", "/", "m", "METRIC", "credits", "LIMIT", "5")
    text = "Your session expired: sign in again at https://example.invalid"
    _, _, body = dash.http("/trees/f8?error=" + enc(text))
    assert text not in body, "a link's own text shown as the dashboard's error"


# F9: "Go to path" of a path that does not exist yet is a dead end (an error
# page with only Back), though a policy there would create it.
def test_f9_a_missing_path_offers_to_create_it(dash):
    dash.r.q("QUOTA.SET", "f9", "/", "m", "METRIC", "credits", "LIMIT", "5")
    page = dash.page()
    page.goto(dash.url("/trees/f9"))
    page.fill("#goto-path", "team/new")
    page.locator("form.goto button").click()
    page.wait_for_load_state()
    expect(page.locator("a[href*='/policy?path=']")).to_have_count(1)


# F10: a tree key that is not UTF-8 is never listed and cannot be opened.
def test_f10_a_binary_tree_key_is_listed_and_said_unopenable(dash):
    # Decided: keys that are not UTF-8 are listed, bytes shown as \xFF, and
    # said to be beyond the dashboard (README, the dashboard's limits), not
    # dropped silently; opening them stays unsupported and answers plainly.
    dash.r.q(b"QUOTA.SET", b"f10\xff\xfe", b"/", b"m", b"METRIC", b"credits", b"LIMIT", b"5")
    _, _, body = dash.http("/trees?q=f10")
    assert "f10\\xFF\\xFE" in body, "the tree is not listed"
    assert "not UTF-8" in body, "the listing does not say why it cannot be opened"
    status, _, body = dash.http("/trees/f10%FF%FE")
    assert status in (400, 404), f"{status}: {body[:100]}"


# F11: web::bar computes used * 100 / limit with rust_decimal operators, which
# panic on overflow: a tiny limit and a big use (an open policy) make the
# tree page answer nothing at all (the handler panics, the connection drops).
def test_f11_a_tiny_limit_and_a_big_use_do_not_crash_the_tree_page(dash):
    dash.r.q("QUOTA.SET", "f11", "/", "m", "METRIC", "credits", "LIMIT", "0.0000000001", "MODE", "open")
    pipe = dash.r.pipeline(transaction=False)
    for _ in range(100):
        args = ["QUOTA.CHARGE", "f11", "PATH", "/", "COST", "credits", "1000000000000000"]
        if dash.backend == "lua":
            from backend import lua_command
            args = lua_command(args)
        pipe.execute_command(*args)
    pipe.execute()
    assert dash.r.q("QUOTA.GET", "f11", "/")["policies"][0]["used"] == "100000000000000000"
    try:
        status, _, _ = dash.http("/trees/f11")
    except Exception as e:  # the connection closed without an answer
        raise AssertionError(f"no answer from /trees/f11: {e!r}")
    assert status == 200, status


# F12: the assign form of /plans/NONE (or /plans/none) sends QUOTA.ASSIGN key
# NONE: the tree leaves its plan, and the page says it "follows plan NONE now".
def test_f12_assigning_plan_none_does_not_say_it_follows_it(dash):
    import json

    dash.r.q("QUOTA.PLAN", "SET", "f12plan", json.dumps({"paths": {"/": {"c": {"metric": "credits", "limit": "5"}}}}))
    dash.r.q("QUOTA.ASSIGN", "f12", "f12plan")
    _, _, body = dash.http("/plans/NONE/assign", "POST", {"Accept": "application/json"}, "key=f12")
    plan = dash.r.q("QUOTA.GET", "f12", "/").get("plan")
    assert not (plan is None and "follows plan NONE" in body), f"tree left its plan; the page said {body}"


# F14: "Add policy" with the name of a policy the path already has silently
# replaces it: its window, WARN, SERVICE filter and LOW are gone.
def test_f14_adding_a_policy_does_not_replace_one_of_the_same_name(dash):
    dash.r.delete("f14")
    dash.r.q("QUOTA.SET", "f14", "/", "monthly", "METRIC", "credits", "LIMIT", "100", "WINDOW", "month",
             "WARN", "50", "SERVICE", "openai", "LOW", "10")
    page = dash.page()
    page.goto(dash.url("/trees/f14"))
    page.locator("#add-policy").click()
    page.fill("#policy-form input[name=policy]", "monthly")
    page.fill("#policy-form input[name=metric]", "credits")
    page.fill("#policy-form input[name=limit]", "5")
    page.locator("#policy-form button[type=submit]").click()
    page.wait_for_load_state()
    page.wait_for_timeout(500)
    p = dash.r.q("QUOTA.GET", "f14", "/")["policies"][0]
    assert p.get("service") == "openai" and p.get("window") == "month", \
        f"the existing policy was replaced by the new one: {p}"


# F16: the plan editor saves without the version it showed: a change another
# person saved meanwhile is overwritten without a word (lost update), though
# QUOTA.PLAN SET refuses a version that is not above the current one.
def test_f16_a_stale_plan_editor_does_not_overwrite_a_newer_plan(dash):
    import json

    plan = lambda limit: json.dumps({"paths": {"/": {"c": {"metric": "credits", "limit": limit}}}})  # noqa: E731
    dash.r.q("QUOTA.PLAN", "SET", "f16", plan("5"))
    _, _, body = dash.http("/plans/f16")
    form = re.search(r'<form[^>]*method="post"[^>]*action="/plans/f16"[^>]*>.*?</form>', body, re.S).group(0)
    import html as h
    fields = {"json": h.unescape(re.search(r"<textarea[^>]*>(.*?)</textarea>", form, re.S).group(1)),
              "version": re.search(r'name="version" value="([^"]*)"', form).group(1)}
    dash.r.q("QUOTA.PLAN", "SET", "f16", plan("7"))  # someone else, meanwhile: version 2
    fields["json"] = fields["json"].replace('"5"', '"6"')  # this editor's change
    dash.http("/plans/f16", "POST", {"Accept": "application/json"}, urllib.parse.urlencode(fields))
    now = json.loads(dash.r.q("QUOTA.PLAN", "GET", "f16"))
    assert now["paths"]["/"]["c"]["limit"] == "7", f"the other person's change was overwritten: {now}"


# F17: with the README's own ACL account for the dashboard ("ACL SETUSER
# dashboard …"), the trees page cannot list trees (NOPERM scan), the usage
# page fails (NOPERM time), a plan's followers cannot be found, and holds show
# a time left of 56 years (the clock read failed and counts as 0).
def test_f17_the_readme_acl_account_runs_the_dashboard(dash):
    import os
    import shlex

    if dash.backend != "module":
        return  # the README's recipe is the module's (QUOTA.* commands)
    readme = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")
    line = [x for x in open(readme, encoding="utf-8") if x.startswith("ACL SETUSER dashboard ")][0]
    dash.r.execute_command(*shlex.split(line))
    dash.r.q("QUOTA.SET", "t:f17", "/", "m", "METRIC", "credits", "LIMIT", "100")
    dash.r.q("QUOTA.RESERVE", "t:f17", "PATH", "/", "ID", "h1", "TTL", "60000", "COST", "credits", "1")
    dash.restart_dash(["--redis", f"redis://dashboard:dashboard-pw@127.0.0.1:{dash.redis_port}"])
    problems = []
    for url in ("/trees?q=f17", "/trees/t:f17/usage", "/plans"):
        status, _, body = dash.http(url)
        problems += [f"{url}: {m}" for m in re.findall(r"NOPERM[^<]*", body)]
    _, _, body = dash.http("/trees/t:f17")
    if re.search(r"\d{4,} d \d+ h", body):
        problems.append("/trees/t:f17: a 60 s hold shows " + re.search(r"\d{4,} d \d+ h", body).group(0) + " left")
    assert not problems, "\n".join(problems)


# F18: each events page holds one of the browser's 6 HTTP/1.1 connections to
# the dashboard for as long as it is open: with 6 events tabs open, every
# other page of the dashboard in that browser hangs.
def test_f18_six_events_tabs_leave_the_dashboard_usable(dash):
    dash.r.q("QUOTA.SET", "f18", "/", "m", "METRIC", "credits", "LIMIT", "10")
    for _ in range(6):
        p = dash.page()
        p.goto(dash.url("/trees/f18/events"))
        p.locator("#live-status.on").wait_for()
    page = dash.page()
    try:
        page.goto(dash.url("/trees/f18"), timeout=8000)
    except Exception as e:
        raise AssertionError(f"a 7th tab of the dashboard does not load: {str(e).splitlines()[0]}")


# F3 again, without rollover: a grant partly used this period stays in GET's
# limit but not in `granted`, so the editor offers limit + what was used of it.
def test_f3b_a_partly_used_grant_does_not_raise_the_limit(dash):
    dash.r.delete("f3b")
    dash.r.q("QUOTA.SET", "f3b", "/", "m", "METRIC", "credits", "LIMIT", "100")
    dash.r.q("QUOTA.GRANT", "f3b", "/", "m", "50", "ID", "g1")
    dash.r.q("QUOTA.CHARGE", "f3b", "PATH", "/", "COST", "credits", "120")
    _, _, body = dash.http("/trees/f3b/policy?path=/&policy=m")
    limit = form_fields(body, "policy-form")["limit"]
    assert limit == "100", f"the editor offers limit {limit} for a policy set with LIMIT 100"


# F20: a path below an archived one is refused every reservation and charge,
# but its inspector says "healthy" and nothing about the archived ancestor.
def test_f20_a_path_under_an_archived_one_says_so(dash):
    dash.r.q("QUOTA.SET", "f20", "/x/y", "p", "METRIC", "credits", "LIMIT", "5")
    dash.r.q("QUOTA.ARCHIVE", "f20", "/x")
    page = dash.page()
    page.goto(dash.url("/trees/f20?path=/x/y"))
    expect(page.locator("#inspector")).to_contain_text("archived")
