"""quota-dash run as the README's ACL accounts, on both backends: the
`dashboard` account of README "Access control (ACL)" (module) or of
lua/README.md "Access control" (Lua library), read from the READMEs as
tests/acl.py reads them, lists the t:* trees, shows a tree and its
inspector, its events live, the plans and prices, and edits a policy; the
`analyst` account with --read-only shows the same pages with no write form.
A refusal by ACL (NOPERM) is said plainly, naming the account."""

import re
import sys
import os
import urllib.parse

from playwright.sync_api import expect

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from acl import recipes  # noqa: E402


def account(dash, user):
    """Creates `user` from the backend's README recipe; returns its URL."""
    rules = recipes(dash.backend)[user]
    dash.r.execute_command("ACL", "SETUSER", user, "reset", *rules)
    password = next(r[1:] for r in rules if r.startswith(">"))
    return f"redis://{user}:{urllib.parse.quote(password)}@127.0.0.1:{dash.redis_port}"


def trees(dash):
    """What a platform made (once per server): two tenants' trees (t:*),
    one following a plan, and a tree outside the accounts' key pattern.

    The accounts may not read the test clock (QUOTA.DEBUG, the key
    quota:clock): the dashboard reads TIME, and the quota commands run as
    the account, so the test clock is set to the server's time first."""
    if getattr(dash, "acl_trees", False):
        return
    dash.acl_trees = True
    secs, micros = dash.r.time()
    dash.clock_set(secs * 1000 + micros // 1000)
    q = dash.r.q
    plan = '{"paths": {"/": {"allowance": {"metric": "credits", "limit": "500", "window": "month"}}}}'
    q("QUOTA.PLAN", "SET", "acl-std", plan)
    q("QUOTA.SET", "t:acme", "/", "monthly", "METRIC", "credits", "LIMIT", "1000", "WINDOW", "month")
    q("QUOTA.SET", "t:acme", "team/a", "monthly", "METRIC", "credits", "LIMIT", "100", "WINDOW", "month")
    q("QUOTA.CHARGE", "t:acme", "PATH", "team/a", "SERVICE", "chat", "MODEL", "m1", "COST", "credits", "85")
    q("QUOTA.RESERVE", "t:acme", "PATH", "team/a", "TTL", "600000", "COST", "credits", "1")
    q("QUOTA.ASSIGN", "t:other", "acl-std")
    q("QUOTA.SET", "x:hidden", "/", "monthly", "METRIC", "credits", "LIMIT", "5")


def no_error(page):
    expect(page.locator(".flash-error")).to_have_count(0)


def test_the_dashboard_account(dash):
    trees(dash)
    dash.restart_dash(["--redis", account(dash, "dashboard")])
    page = dash.page()
    page.goto(dash.url("/trees"))
    no_error(page)
    rows = page.locator("#trees tbody tr")
    expect(rows.filter(has_text="t:acme").locator(".status")).to_have_class(re.compile(r"\bstatus-healthy\b"))
    expect(rows.filter(has_text="t:other")).to_contain_text("acl-std")
    hidden = rows.filter(has_text="x:hidden")
    if dash.backend == "module":
        # SCAN names every tree; one outside the account's keys says why it
        # shows nothing.
        expect(hidden).to_contain_text("quota-dash's account (dashboard) may not read it")
    else:
        # The Lua library's trees are hashes: one the account may not read
        # cannot be told from any other hash, so it is not listed.
        expect(hidden).to_have_count(0)
    page.locator("#tree-search").fill("t:")
    page.get_by_role("button", name="Find").click()
    expect(rows).to_have_count(2)

    rows.get_by_role("link", name="t:acme").click()
    no_error(page)
    expect(page.locator('#tree li.node[data-path="team/a"] .dot')).to_have_class(re.compile(r"\bstatus-warning\b"))
    page.locator('#tree li.node[data-path="team/a"] a.name').click()
    expect(page.locator("#node-status")).to_have_class(re.compile(r"\bstatus-warning\b"))
    expect(page.locator("#holds tbody tr")).to_have_count(1)
    no_error(page)

    # A policy edit.
    page.locator('article.policy[data-policy="monthly"]').get_by_role("link", name="Edit").click()
    page.locator("#policy-form").get_by_label("Limit", exact=True).fill("80")
    page.get_by_role("button", name="Save policy").click()
    expect(page.locator(".flash-done")).to_have_text("Policy monthly set on /team/a.")
    expect(page.locator("#node-status")).to_have_class(re.compile(r"\bstatus-over\b"))
    assert dash.r.q("QUOTA.GET", "t:acme", "team/a")["policies"][0]["limit"] == "80"

    # Events live, usage, the plans and the prices.
    page.locator(".tree-title .links").get_by_role("link", name="Events").click()
    expect(page.locator("#live-status")).to_have_class(re.compile(r"\bon\b"))
    no_error(page)
    page.get_by_role("link", name="Usage").click()
    expect(page.locator("#usage-chart")).to_be_visible()
    no_error(page)
    page.get_by_role("navigation").get_by_role("link", name="Plans").click()
    page.get_by_role("link", name="acl-std").click()
    expect(page.locator("main")).to_contain_text("t:other")
    page.get_by_role("navigation").get_by_role("link", name="Prices").click()
    no_error(page)
    page.get_by_role("navigation").get_by_role("link", name="Events").click()
    expect(page.locator("#live-status")).to_have_class(re.compile(r"\bon\b"))

    # A write the account may not do (the price book) is refused by Redis,
    # and the form says so plainly, naming the account; nothing changes.
    page.get_by_role("navigation").get_by_role("link", name="Prices").click()
    form = page.locator("#new-price")
    form.get_by_label("Service/model").fill("chat/m1")
    form.locator("textarea[name=json]").fill('{"metric": "credits", "rates": {"input_tokens": "2/1M"}}')
    form.get_by_role("button", name="Add the price").click()
    error = form.locator(".error")
    expect(error).to_contain_text("Redis refused this to quota-dash's account (dashboard)")
    expect(error).to_contain_text("Access control")
    assert "chat/m1" not in str(dash.r.q("QUOTA.PRICE", "LIST"))


def test_the_analyst_account_with_read_only(dash):
    trees(dash)
    dash.restart_dash(["--redis", account(dash, "analyst"), "--read-only"])
    page = dash.page()
    page.goto(dash.url("/trees"))
    no_error(page)
    expect(page.locator("header .badge.readonly")).to_be_visible()
    rows = page.locator("#trees tbody tr")
    expect(rows.filter(has_text="t:acme")).to_have_count(1)
    expect(rows.filter(has_text="t:other")).to_have_count(1)
    rows.get_by_role("link", name="t:acme").click()
    no_error(page)
    # As Redis has it (the dashboard's test, run before, changed the limit).
    want = re.compile(rf"\bstatus-{dash.r.q('QUOTA.GET', 't:acme', 'team/a')['status']}\b")
    expect(page.locator('#tree li.node[data-path="team/a"] .dot')).to_have_class(want)
    page.locator('#tree li.node[data-path="team/a"] a.name').click()
    expect(page.locator("#node-status")).to_have_class(want)
    expect(page.locator("#holds tbody tr")).to_have_count(1)
    expect(page.locator("form[method=post]")).to_have_count(0)
    expect(page.locator("#add-policy")).to_have_count(0)
    page.locator(".tree-title .links").get_by_role("link", name="Events").click()
    expect(page.locator("#live-status")).to_have_class(re.compile(r"\bon\b"))
    no_error(page)
    page.get_by_role("link", name="Usage").click()
    expect(page.locator("#usage-chart")).to_be_visible()
    no_error(page)
    for nav in ("Plans", "Prices", "Events"):
        page.get_by_role("navigation").get_by_role("link", name=nav).click()
        no_error(page)
        expect(page.locator("form[method=post]")).to_have_count(0)
    page.get_by_role("navigation").get_by_role("link", name="Plans").click()
    page.get_by_role("link", name="acl-std").click()
    no_error(page)
    expect(page.locator("form[method=post]")).to_have_count(0)
    expect(page.locator("main")).to_contain_text("t:other")


def test_a_refusal_by_acl_is_said_plainly(dash):
    # An account without SCAN (the recipes before quota-dash needed it)
    # and PSUBSCRIBE: the trees page and every tree's events say what Redis
    # refused and where the recipe is.
    rules = [r for r in recipes(dash.backend)["dashboard"] if r not in ("+scan", "+psubscribe")]
    dash.r.execute_command("ACL", "SETUSER", "no-scan", "reset", *rules)
    password = next(r[1:] for r in rules if r.startswith(">"))
    dash.restart_dash(["--redis", f"redis://no-scan:{password}@127.0.0.1:{dash.redis_port}"])
    page = dash.page()
    page.goto(dash.url("/trees"))
    error = page.locator(".flash-error")
    expect(error).to_contain_text("NOPERM")
    expect(error).to_contain_text("scan")
    expect(error).to_contain_text("Redis refused this to quota-dash's account (no-scan)")
    expect(error).to_contain_text("Access control")
    # A tree outside the account's keys, opened by its key.
    page.locator("#tree-open").fill("x:hidden")
    page.get_by_role("button", name="Open").click()
    expect(page.locator(".flash-error").first).to_contain_text("quota-dash's account (no-scan)")
    # Every tree's live events: the feed is refused (502), the page says why.
    dash.ignore_errors("status of 502")
    page.get_by_role("navigation").get_by_role("link", name="Events").click()
    status = page.locator("#live-status")
    expect(status).to_have_class(re.compile(r"\boff\b"))
    expect(status).to_contain_text("the live feed could not start: NOPERM")
    expect(status).to_contain_text("quota-dash's account (no-scan)")
