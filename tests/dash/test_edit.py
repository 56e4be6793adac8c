"""The write forms (src/dash/src/edit.rs), used as a person would: the policy
editor creates and edits policies, a bad value shows the command's own error
beside the form and changes nothing, grants grow the allowance and revoke
takes it back, access rules come and go, labels are saved and cleared, a
path is archived and restored, a hold is released and extended, and a
read-only dashboard draws no form and refuses every write.

The tree page's inspector (tree.rs) is where most of these forms are linked
from and where a write lands; the tests open the editor pages directly and
check what a write did on the editor page again and in Redis. The one-click
buttons (archive, restore, delete path, release and extend a hold) are the
inspector's own, and the status shown on the tree page after each is
checked.
"""

import calendar
import re
import urllib.parse

from playwright.sync_api import expect


def ms_of(text):
    """`2026-04-01T00:00` (UTC) as Unix ms."""
    return calendar.timegm(tuple(map(int, re.split(r"[-T:]", text))) + (0, 0, 0)) * 1000


def submit(page, button, key, path, outcome="done"):
    """Clicks `button` and waits for the write to land on the tree page at
    `path`; returns the message it carries (`done`, or `error`). The landing
    is caught as the browser's request for it, whatever the tree page
    answers."""
    landing = re.compile(rf"/trees/{re.escape(key)}\?.*\b{outcome}=")
    with page.expect_response(lambda r: landing.search(r.url) is not None) as info:
        button.click()
    url = info.value.url
    # Until the tree page is there, Chromium shows its own page for the 404.
    expect(page).to_have_url(re.compile(f"{landing.pattern}|^chrome-error:"))
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query.get("path") == [path], f"the write went to {url}, not to the tree at {path}"
    return query[outcome][0]


def get(dash, key, path):
    return dash.r.q("QUOTA.GET", key, path)


def policy(dash, key, path, name):
    found = [p for p in get(dash, key, path)["policies"] if p["policy"] == name]
    return found[0] if found else None


def test_a_policy_is_created_on_a_new_path(dash):
    page = dash.page()
    page.goto(dash.url("/trees/ed1/policy?path=projects/p1"))
    expect(page.locator("h1")).to_have_text("New policy on /projects/p1")
    expect(page.get_by_text("/projects/p1 does not exist yet")).to_be_visible()
    form = page.locator("#policy-form")
    form.get_by_label("Policy name", exact=True).fill("monthly")
    form.get_by_label("Metric", exact=True).fill("credits")
    form.get_by_label("Limit", exact=True).fill("1000")
    # The window decides which fields count: a month takes an anchor day, a
    # rolling window a duration.
    rolling = form.locator("label", has=page.locator("input[name=rolling]"))
    anchor = form.locator("label", has=page.locator("input[name=anchor]"))
    expect(rolling).to_be_hidden()
    expect(anchor).to_be_hidden()
    form.locator("select[name=window]").select_option("month")
    expect(anchor).to_be_visible()
    expect(rolling).to_be_hidden()
    form.locator("select[name=window]").select_option("rolling")
    expect(rolling).to_be_visible()
    expect(anchor).to_be_hidden()
    form.get_by_label("Rolling duration", exact=True).fill("30d")
    form.locator("select[name=mode]").select_option("block")
    form.get_by_label("Warn at (%)", exact=True).fill("50, 75")
    form.get_by_label("Low remaining", exact=True).fill("100")
    form.get_by_label("Service", exact=True).fill("openai")
    form.get_by_label("Model", exact=True).fill("gpt-4o")
    done = submit(page, form.get_by_role("button", name="Create policy"), "ed1", "projects/p1")
    assert done == "Policy monthly set on /projects/p1.", done
    p = policy(dash, "ed1", "projects/p1", "monthly")
    assert p is not None, get(dash, "ed1", "projects/p1")
    seen = {k: p.get(k) for k in ("metric", "limit", "window", "mode", "warn", "low", "service", "model", "source")}
    assert seen == {"metric": "credits", "limit": "1000", "window": "rolling 30d", "mode": "block", "warn": [50, 75],
                    "low": "100", "service": "openai", "model": "gpt-4o", "source": "tree"}, seen

    # The editor reads it back: saving it unchanged changes nothing.
    page.goto(dash.url("/trees/ed1/policy?path=projects/p1&policy=monthly"))
    expect(page.locator("h1")).to_have_text("Policy monthly on /projects/p1")
    form = page.locator("#policy-form")
    expect(form.locator("select[name=window]")).to_have_value("rolling")
    expect(form.get_by_label("Rolling duration", exact=True)).to_have_value("30d")
    expect(form.get_by_label("Warn at (%)", exact=True)).to_have_value("50,75")
    expect(form.get_by_label("Model", exact=True)).to_have_value("gpt-4o")
    before = policy(dash, "ed1", "projects/p1", "monthly")
    submit(page, form.get_by_role("button", name="Save policy"), "ed1", "projects/p1")
    assert policy(dash, "ed1", "projects/p1", "monthly") == before


def test_a_new_limit_changes_the_status(dash):
    dash.r.q("QUOTA.SET", "ed2", "/", "monthly", "METRIC", "credits", "LIMIT", "100", "WINDOW", "month")
    dash.r.q("QUOTA.CHARGE", "ed2", "PATH", "/", "COST", "credits", "85")
    page = dash.page()
    page.goto(dash.url("/trees/ed2/policy?path=/&policy=monthly"))
    status = page.locator("#policy-status")
    expect(status).to_have_text("warning")
    expect(status).to_have_class(re.compile(r"\bstatus-warning\b"))
    expect(page.locator("#policy-form").get_by_label("Limit", exact=True)).to_have_value("100")
    dash.shot(page, "policy-editor")
    page.locator("#policy-form").get_by_label("Limit", exact=True).fill("80")
    assert submit(page, page.get_by_role("button", name="Save policy"), "ed2", "/") == "Policy monthly set on /."
    assert policy(dash, "ed2", "/", "monthly")["status"] == "over"
    page.goto(dash.url("/trees/ed2/policy?path=/&policy=monthly"))
    expect(status).to_have_text("over")
    expect(status).to_have_class(re.compile(r"\bstatus-over\b"))


def test_a_bad_value_shows_the_commands_error_and_changes_nothing(dash):
    dash.r.q("QUOTA.SET", "ed3", "/", "monthly", "METRIC", "credits", "LIMIT", "100", "WINDOW", "month")
    before = get(dash, "ed3", "/")
    page = dash.page()
    editor = dash.url("/trees/ed3/policy?path=/&policy=monthly")
    page.goto(editor)
    form = page.locator("#policy-form")
    form.get_by_label("Limit", exact=True).fill("abc")
    form.get_by_role("button", name="Save policy").click()
    error = form.locator(".error")
    expect(error).to_contain_text("ERR")
    expect(error).to_contain_text("abc")
    assert page.url == editor, f"a refused form left the editor for {page.url}"
    expect(form.get_by_label("Limit", exact=True)).to_have_value("abc")  # what was typed stays
    # A keyword in a field is that field's value, not an option: refused.
    form.get_by_label("Limit", exact=True).fill("100")
    form.get_by_label("Service", exact=True).fill("openai INFLIGHT")
    form.get_by_role("button", name="Save policy").click()
    expect(error).to_contain_text("ERR")
    assert get(dash, "ed3", "/") == before

    # Without JavaScript the page comes back with the error above the form.
    status, _, body = dash.http("/trees/ed3/policy", method="POST",
                                headers={"Content-Type": "application/x-www-form-urlencoded"},
                                data="path=%2F&policy=monthly&metric=credits&limit=abc")
    assert status == 422, f"a refused form answered {status}"
    assert 'class="error"' in body and "abc" in body, body[-2000:]
    status, _, body = dash.http("/trees/ed3/policy", method="POST",
                                headers={"Content-Type": "application/x-www-form-urlencoded"},
                                data="path=%2F&policy=&metric=credits&limit=5")
    assert status == 422 and "Give the policy a name" in body, (status, body[-2000:])
    assert get(dash, "ed3", "/") == before


def test_a_plan_policy_is_edited_as_an_exception(dash):
    plan = '{"paths": {"/": {"allowance": {"metric": "credits", "limit": "500", "window": "month"}}}}'
    dash.r.q("QUOTA.PLAN", "SET", "ed-basic", plan)
    dash.r.q("QUOTA.ASSIGN", "ed4", "ed-basic")
    page = dash.page()
    page.goto(dash.url("/trees/ed4/policy?path=/&policy=allowance"))
    expect(page.locator("#plan-note")).to_contain_text("comes from plan ed-basic")
    page.locator("#policy-form").get_by_label("Limit", exact=True).fill("700")
    submit(page, page.get_by_role("button", name="Save policy"), "ed4", "/")
    p = policy(dash, "ed4", "/", "allowance")
    assert (p["limit"], p["source"]) == ("700", "tree"), p
    # Removing the exception gives the plan's policy back.
    page.goto(dash.url("/trees/ed4/policy?path=/&policy=allowance"))
    expect(page.locator("#plan-note")).to_have_count(0)
    page.once("dialog", lambda d: d.accept())
    done = submit(page, page.get_by_role("button", name="Remove policy"), "ed4", "/")
    assert done == "Policy allowance removed from /.", done
    p = policy(dash, "ed4", "/", "allowance")
    assert (p["limit"], p["source"]) == ("500", "plan"), p


def test_a_grant_grows_the_allowance_and_revoke_takes_it_back(dash):
    dash.r.q("QUOTA.SET", "ed5", "team", "wallet", "METRIC", "credits", "LIMIT", "100", "WINDOW", "month")
    page = dash.page()
    grants = dash.url("/trees/ed5/grant?path=team&policy=wallet")
    page.goto(grants)
    expect(page.locator("#allowance")).to_have_text("100")
    expect(page.locator("#no-grants")).to_be_visible()
    form = page.locator("#grant-form")
    form.get_by_label("Amount", exact=True).fill("50")
    expires_at = form.locator("label", has=page.locator("input[name=expires]"))
    expect(expires_at).to_be_hidden()
    form.locator("select[name=expiry]").select_option("expires")
    expect(expires_at).to_be_visible()
    form.get_by_label("Expires at (UTC)", exact=True).fill("2026-04-01T00:00")
    form.get_by_label("Note", exact=True).fill("Spring promotion")
    done = submit(page, form.get_by_role("button", name="Add grant"), "ed5", "team")
    assert "added to policy wallet on /team" in done and "the allowance is 150 now" in done, done
    listed = dash.r.q("QUOTA.GRANTS", "ed5", "team", "wallet")
    assert len(listed) == 1, listed
    g = listed[0]
    assert (g["amount"], int(g["expires_at"]), g["note"]) == ("50", ms_of("2026-04-01T00:00"), "Spring promotion"), g
    assert policy(dash, "ed5", "team", "wallet")["limit"] == "150"

    page.goto(grants)
    expect(page.locator("#allowance")).to_have_text("150")
    row = page.locator("#grants tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Spring promotion")
    expect(row).to_contain_text("2026-04-01 00:00:00 UTC")
    dash.shot(page, "grant-editor")
    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name="Revoke").click()
    expect(page.locator("#no-grants")).to_be_visible()
    expect(page.locator("#allowance")).to_have_text("100")
    expect(page.locator(".flash-done")).to_contain_text(f"Grant {g['id']} revoked: 50 left the allowance.")
    assert dash.r.q("QUOTA.GRANTS", "ed5", "team", "wallet") == []
    assert policy(dash, "ed5", "team", "wallet")["limit"] == "100"

    # A date that does not parse is said plainly; a past one by the command.
    status, _, body = dash.http("/trees/ed5/grant", method="POST",
                                headers={"Content-Type": "application/x-www-form-urlencoded"},
                                data="path=team&policy=wallet&amount=5&expiry=expires&expires=2026-02-30T10%3A00")
    assert status == 422 and "is not a date and time" in body, (status, body[-2000:])
    page.goto(grants)
    form.get_by_label("Amount", exact=True).fill("5")
    form.locator("select[name=expiry]").select_option("expires")
    form.get_by_label("Expires at (UTC)", exact=True).fill("2026-01-01T00:00")
    form.get_by_role("button", name="Add grant").click()
    expect(form.locator(".error")).to_contain_text("not in the future")
    assert dash.r.q("QUOTA.GRANTS", "ed5", "team", "wallet") == []


def test_a_deny_rule_is_added_and_removed(dash):
    page = dash.page()
    page.goto(dash.url("/trees/ed6/access?path=team"))
    expect(page.locator("#no-rules")).to_be_visible()
    form = page.locator("#access-form")
    form.locator("select[name=rule]").select_option("deny")
    form.get_by_label("Service", exact=True).fill("openai")
    form.get_by_label("Model", exact=True).fill("gpt-4o")
    form.get_by_role("button", name="Add rule").click()
    row = page.locator("#rules tbody tr.rule-deny")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("openai")
    expect(row).to_contain_text("gpt-4o")
    expect(page.locator(".flash-done")).to_have_text("openai model gpt-4o added to the deny list of /team.")
    dash.shot(page, "access-rules")
    access = dash.r.q("QUOTA.ACCESS", "ed6", "team")
    assert (access["allow"], access["deny"]) == ([], [{"service": "openai", "model": "gpt-4o"}]), access
    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name="Remove").click()
    expect(page.locator("#no-rules")).to_be_visible()
    access = dash.r.q("QUOTA.ACCESS", "ed6", "team")
    assert (access["allow"], access["deny"]) == ([], []), access

    # Two rules, then clear them all.
    for rule, service in (("allow", "anthropic"), ("deny", "openai")):
        form.locator("select[name=rule]").select_option(rule)
        form.get_by_label("Service", exact=True).fill(service)
        form.get_by_role("button", name="Add rule").click()
        expect(page.locator(f"#rules tbody tr.rule-{rule}")).to_contain_text(service)
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Clear all rules").click()
    expect(page.locator("#no-rules")).to_be_visible()
    expect(page.locator(".flash-done")).to_have_text("2 access rules removed from /team.")
    access = dash.r.q("QUOTA.ACCESS", "ed6", "team")
    assert (access["allow"], access["deny"]) == ([], []), access


def test_labels_are_saved_and_cleared(dash):
    page = dash.page()
    page.goto(dash.url("/trees/ed7/label?path=team"))
    form = page.locator("#label-form")
    # Keyword-like text is the note itself, not a TAGS option.
    form.get_by_label("Note", exact=True).fill("GPU team TAGS x")
    form.get_by_label("Tags (comma-separated)", exact=True).fill("ml, gpu")
    assert submit(page, form.get_by_role("button", name="Save labels"), "ed7", "team") == "Labels of /team saved."
    node = get(dash, "ed7", "team")
    assert (node.get("note"), node.get("tags")) == ("GPU team TAGS x", ["gpu", "ml"]), node
    page.goto(dash.url("/trees/ed7/label?path=team"))
    expect(form.get_by_label("Note", exact=True)).to_have_value("GPU team TAGS x")
    expect(form.get_by_label("Tags (comma-separated)", exact=True)).to_have_value("gpu,ml")
    # A bad tag: the command's message, nothing changed.
    form.get_by_label("Tags (comma-separated)", exact=True).fill("ml,no spaces")
    form.get_by_role("button", name="Save labels").click()
    expect(form.locator(".error")).to_contain_text("ERR syntax: a tag must be")
    assert get(dash, "ed7", "team").get("tags") == ["gpu", "ml"]
    # Empty fields clear.
    form.get_by_label("Note", exact=True).fill("")
    form.get_by_label("Tags (comma-separated)", exact=True).fill("")
    done = submit(page, form.get_by_role("button", name="Save labels"), "ed7", "team")
    assert done == "The labels of /team are cleared.", done
    node = get(dash, "ed7", "team")
    assert "note" not in node and "tags" not in node, node


def inspector(dash, key, path, page=None):
    """The tree page at `path`, where the inspector draws its one-click
    buttons (archive, restore, delete path, release and extend a hold)."""
    page = page or dash.page()
    page.goto(dash.url(f"/trees/{key}?path={urllib.parse.quote(path)}"))
    expect(page.locator("#node-path")).to_have_text(path)
    return page


def confirm(page):
    """Accepts the next data-confirm question."""
    page.once("dialog", lambda d: d.accept())


def test_a_path_is_archived_restored_and_deleted(dash):
    dash.r.q("QUOTA.SET", "ed8", "projects/old", "monthly", "METRIC", "credits", "LIMIT", "10")
    dash.r.q("QUOTA.CHARGE", "ed8", "PATH", "projects/old", "COST", "credits", "9")
    page = inspector(dash, "ed8", "projects/old")
    stale = inspector(dash, "ed8", "projects/old", dash.context.new_page())
    head = page.locator(".node-head")
    expect(page.locator("#node-status")).to_have_class(re.compile(r"\bstatus-critical\b"))
    confirm(page)
    done = submit(page, head.get_by_role("button", name="Archive"), "ed8", "projects/old")
    assert done == "/projects/old archived: it and its subtree refuse new reservations and charges.", done
    assert get(dash, "ed8", "projects/old").get("archived") == 1
    expect(page.locator(".flash-done")).to_have_text(done)
    expect(page.locator("#archived-badge")).to_be_visible()
    # Its status and spend are kept while it is archived.
    expect(page.locator("#node-status")).to_have_class(re.compile(r"\bstatus-critical\b"))
    expect(head.get_by_role("button", name="Archive")).to_have_count(0)
    # A page opened before the archive still offers it: the command says so.
    confirm(stale)
    done = submit(stale, stale.locator(".node-head").get_by_role("button", name="Archive"), "ed8", "projects/old")
    assert done == "/projects/old was already archived.", done
    done = submit(page, head.get_by_role("button", name="Restore"), "ed8", "projects/old")
    assert done == "/projects/old restored: it takes requests again.", done
    assert "archived" not in get(dash, "ed8", "projects/old")
    expect(page.locator("#archived-badge")).to_have_count(0)
    expect(page.locator("#node-status")).to_have_class(re.compile(r"\bstatus-critical\b"))
    # A deleted path's tree page is gone: the write lands on its parent.
    confirm(page)
    done = submit(page, head.get_by_role("button", name="Delete path"), "ed8", "projects")
    assert done == "/projects/old removed.", done
    expect(page.locator("#node-path")).to_have_text("projects")
    expect(page.locator('#tree li.node[data-path="projects/old"]')).to_have_count(0)
    expect(page.locator("#node-status")).to_have_class(re.compile(r"\bstatus-none\b"))
    children = dash.r.q("QUOTA.TREE", "ed8", "projects", "DEPTH", "1").get("children", [])
    assert children == [], children
    # The root has no Delete path button; the command refuses it anyway,
    # and its refusal is shown as it is.
    inspector(dash, "ed8", "/", page)
    expect(page.locator(".node-head").get_by_role("button", name="Delete path")).to_have_count(0)
    status, head_, _ = dash.http("/trees/ed8/path/delete", method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"}, data="path=%2F")
    error = urllib.parse.parse_qs(urllib.parse.urlsplit(head_.get("location", "")).query).get("error", [""])[0]
    assert status == 303 and error.startswith("ERR"), (status, head_)


def test_a_hold_is_extended_and_released(dash):
    dash.r.q("QUOTA.SET", "ed9", "/", "monthly", "METRIC", "credits", "LIMIT", "100")
    dash.r.q("QUOTA.CHARGE", "ed9", "PATH", "team", "COST", "credits", "75")
    hold = dash.r.q("QUOTA.RESERVE", "ed9", "PATH", "team", "TTL", "60000", "COST", "credits", "10")
    hold_id = hold["id"]
    assert policy(dash, "ed9", "/", "monthly")["held"] == "10"
    page = inspector(dash, "ed9", "team")
    row = page.locator(f'#holds tr[data-hold="{hold_id}"]')
    expect(row.locator("td.left")).to_have_text("1 m 0 s")
    row.get_by_label("new time to live in ms").fill("3600000")
    done = submit(page, row.get_by_role("button", name="Extend"), "ed9", "team")
    assert done == f"Hold {hold_id} now expires at 2026-03-14 10:30:00 UTC.", done
    holds = dash.r.q("QUOTA.HOLDS", "ed9")
    assert [int(h["expires_at"]) for h in holds] == [dash.now_ms() + 3600000], holds
    expect(row.locator("td.left")).to_have_text("1 h 0 m")
    # Used 75 and held 10 of 100 at the root: the root is at a warning.
    inspector(dash, "ed9", "/", page)
    expect(page.locator("#node-status")).to_have_class(re.compile(r"\bstatus-warning\b"))
    confirm(page)
    done = submit(page, row.get_by_role("button", name="Release"), "ed9", "/")
    assert done == f"Hold {hold_id} released.", done
    expect(page.locator("#no-holds")).to_be_visible()
    assert policy(dash, "ed9", "/", "monthly")["held"] == "0"
    assert dash.r.q("QUOTA.HOLDS", "ed9") == []
    expect(page.locator("#inspector article.policy .held-n")).to_have_text("0")

    # A page that still shows a hold the app has released since: Release
    # says so, Extend shows the command's refusal beside the button.
    hold_id = dash.r.q("QUOTA.RESERVE", "ed9", "PATH", "team", "TTL", "60000", "COST", "credits", "1")["id"]
    inspector(dash, "ed9", "team", page)
    dash.r.q("QUOTA.RELEASE", "ed9", hold_id)
    confirm(page)
    row = page.locator(f'#holds tr[data-hold="{hold_id}"]')
    done = submit(page, row.get_by_role("button", name="Release"), "ed9", "team")
    assert done == f"Hold {hold_id} was already released.", done
    hold_id = dash.r.q("QUOTA.RESERVE", "ed9", "PATH", "team", "TTL", "60000", "COST", "credits", "1")["id"]
    inspector(dash, "ed9", "team", page)
    dash.r.q("QUOTA.RELEASE", "ed9", hold_id)
    stale = page.locator(f'#holds tr[data-hold="{hold_id}"]')
    stale.get_by_role("button", name="Extend").click()
    error = stale.locator("form.extend .error")
    expect(error).to_have_text(re.compile(r"^(NOTFOUND|ERR) "))
    assert page.url.endswith("/trees/ed9?path=team"), page.url


def test_a_read_only_dashboard_draws_no_form_and_refuses_writes(dash):
    dash.r.q("QUOTA.SET", "ed10", "/", "monthly", "METRIC", "credits", "LIMIT", "100")
    dash.restart_dash(["--read-only"])
    page = dash.page()
    for url in ("/trees/ed10/policy?path=/&policy=monthly", "/trees/ed10/grant?path=/&policy=monthly",
                "/trees/ed10/access?path=/", "/trees/ed10/label?path=/"):
        page.goto(dash.url(url))
        expect(page.locator("#read-only")).to_contain_text("read-only")
        expect(page.locator("main form")).to_have_count(0)
    before = get(dash, "ed10", "/")
    status, head, _ = dash.http("/trees/ed10/policy", method="POST",
                                headers={"Content-Type": "application/x-www-form-urlencoded"},
                                data="path=%2F&policy=monthly&metric=credits&limit=5")
    assert status == 422, status
    status, head, body = dash.http("/trees/ed10/archive", method="POST",
                                   headers={"Content-Type": "application/x-www-form-urlencoded"}, data="path=%2F")
    assert status == 303 and "read-only" in urllib.parse.unquote(head.get("location", "")), (status, head)
    status, _, body = dash.http("/trees/ed10/label", method="POST",
                                headers={"Content-Type": "application/x-www-form-urlencoded",
                                         "Accept": "application/json"}, data="path=%2F&note=x")
    assert status == 422 and "read-only" in body, (status, body)
    assert get(dash, "ed10", "/") == before


def test_the_limit_is_the_one_set_and_a_name_is_never_replaced(dash):
    # The editor offers the LIMIT the policy was set with (base_limit), not
    # the allowance grants and rollover make; path and name are its own.
    dash.r.q("QUOTA.SET", "ed9", "/", "monthly", "METRIC", "credits", "LIMIT", "100", "WINDOW", "month",
             "SERVICE", "openai")
    dash.r.q("QUOTA.GRANT", "ed9", "/", "monthly", "50", "ID", "g1")
    page = dash.page()
    page.goto(dash.url("/trees/ed9/policy?path=/&policy=monthly"))
    form = page.locator("#policy-form")
    expect(form.locator("input[name=limit]")).to_have_value("100")
    expect(form.locator("input[name=path]")).to_have_attribute("readonly", "")
    expect(form.locator("input[name=policy]")).to_have_attribute("readonly", "")
    # The new-policy form says at once that the name is taken, and saving it
    # changes nothing.
    page.goto(dash.url("/trees/ed9/policy?path=/"))
    form = page.locator("#policy-form")
    form.get_by_label("Policy name", exact=True).fill("monthly")
    expect(page.locator("#policy-exists a")).to_have_attribute("href", "/trees/ed9/policy?path=%2F&policy=monthly")
    form.get_by_label("Metric", exact=True).fill("credits")
    form.get_by_label("Limit", exact=True).fill("5")
    form.locator("button[type=submit]").click()
    expect(form.locator(".error")).to_have_text("Policy monthly already exists on /: edit it instead")
    p = policy(dash, "ed9", "/", "monthly")
    assert p["service"] == "openai" and p["window"] == "month" and p["limit"] == "150", p
    # Without JavaScript: the page comes back with a link to its editor.
    status, _, body = dash.http("/trees/ed9/policy", "POST", {},
                                "new=1&path=/&policy=monthly&metric=credits&limit=5")
    assert status == 422 and re.search(r'<a href="/trees/ed9/policy\?path=%2F&(amp|#38);policy=monthly" id="edit-existing">',
                                       body), body
    # A child path: its name, then the policy editor there.
    page.goto(dash.url("/trees/ed9?path=/"))
    page.locator("#add-child input[name=child]").fill("team-a")
    page.locator("#add-child button").click()
    expect(page.locator("h1")).to_have_text("New policy on /team-a")
