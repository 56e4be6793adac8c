"""The plan book and the price book, as a person uses them: make a plan through
its form, make a tree follow it, edit it (a bad value is refused with the
command's own error and changes nothing), stop following, delete it; add a
price, read it, run the estimate calculator and read the exact cost. On the
Lua library the books are the keys quota:plans and quota:prices; the pages
behave the same."""

import json
import re

import redis
from backend import lua_command

from playwright.sync_api import expect

STARTER = {"paths": {
    "/": {"api_calls": {"metric": "api_calls", "limit": "10000", "window": "month"},
          "projects": {"metric": "projects", "limit": "5"}},
    "members/*": {"allowance": {"metric": "ai_tokens", "limit": "100000", "window": "month", "warn": [50, 80]}},
}}

PIX = {"metric": "credits",
       "rates": {"images": "4", "prompt_tokens": "0.30/1K"},
       "multipliers": {"quality": {"standard": "1", "hd": "2"}},
       "minimum": "0.01"}


def confirming(page):
    """Accepts the data-confirm questions of destructive buttons."""
    page.on("dialog", lambda d: d.accept())
    return page


def error_of(dash, *args):
    """The error a command gives, as the command says it (redis-py takes the
    leading ERR off), to compare with the page."""
    try:
        dash.r.q(*args)
    except redis.ResponseError as e:
        said = str(e)
        return said if re.match(r"[A-Z]+ ", said) else "ERR " + said
    raise AssertionError(f"{args} did not fail")


def test_a_plan_from_its_form_to_its_deletion(dash):
    dash.r.q("QUOTA.SET", "globex", "/", "own", "METRIC", "credits", "LIMIT", "10")
    page = confirming(dash.page())
    page.goto(dash.url("/plans"))
    expect(page.locator("h1")).to_have_text("Plans")
    expect(page.locator(".empty")).to_contain_text("no plan yet")

    # Bad JSON in the new plan's form: the command's error beside it, nothing made.
    form = page.locator("#new-plan")
    form.get_by_label("Name").fill("starter")
    form.locator("textarea").fill('{"paths": {')
    form.get_by_role("button", name="Create the plan").click()
    expect(form.locator(".error")).to_contain_text("plan is not valid JSON")
    assert dash.r.q("QUOTA.PLAN", "LIST") == [], "a refused plan was stored"

    form.locator("textarea").fill(json.dumps(STARTER))
    form.get_by_role("button", name="Create the plan").click()
    expect(page.locator(".flash-done")).to_have_text("plan starter created (version 1)")
    link = page.locator("#plans").get_by_role("link", name="starter", exact=True)
    expect(link).to_be_visible()
    assert dash.r.q("QUOTA.PLAN", "LIST") == ["starter"]

    # The plan reads as a table of its policies, and as JSON to edit.
    link.click()
    expect(page).to_have_url(re.compile(r"/plans/starter$"))
    expect(page.locator("h1")).to_contain_text("version 1")
    allowance = page.locator("#plan-policies tr", has_text="allowance")
    expect(allowance).to_contain_text("members/*")
    expect(allowance).to_contain_text("ai_tokens")
    expect(allowance).to_contain_text("100000")
    expect(allowance).to_contain_text("month")
    expect(allowance).to_contain_text("50, 80 %")
    expect(page.locator("#plan-policies tbody tr")).to_have_count(3)
    expect(page.locator("#edit-plan textarea")).to_have_value(re.compile(r'"allowance": \{'))

    # No tree follows it yet (globex has only its own policy).
    expect(page.locator("#followers + .empty")).to_contain_text("No tree")
    assign = page.locator("#assign-plan")
    assign.get_by_label("Tree key").fill("acme")
    assign.get_by_role("button", name="Follow starter").click()
    expect(page.locator(".flash-done")).to_have_text("acme follows plan starter now")
    followers = page.locator("#plan-followers")
    expect(followers.get_by_role("link", name="acme", exact=True)).to_be_visible()
    expect(followers).not_to_contain_text("globex")
    root = dash.r.q("QUOTA.GET", "acme", "/")
    assert root["plan"] == "starter", root
    assert sorted(p["policy"] for p in root["policies"]) == ["api_calls", "projects"], root
    assert all(p["source"] == "plan" for p in root["policies"]), root
    dash.shot(page, "plans")

    # A bad value: the command's own error beside the form, what was typed
    # kept, and the plan unchanged.
    before = dash.r.q("QUOTA.PLAN", "GET", "starter")
    textarea = page.locator("#edit-plan textarea")
    bad = textarea.input_value().replace('"limit": "100000"', '"limit": "-5"')
    assert '"-5"' in bad, "the allowance's limit is not in the textarea as expected"
    textarea.fill(bad)
    page.locator("#edit-plan").get_by_role("button", name="Save").click()
    said = error_of(dash, "QUOTA.PLAN", "SET", "starter", bad)
    expect(page.locator("#edit-plan .error")).to_have_text(said)
    assert "must not be negative" in said, said
    expect(textarea).to_have_value(bad)
    assert dash.r.q("QUOTA.PLAN", "GET", "starter") == before, "a refused save changed the plan"

    # A good value: the next version, on the page and on the trees.
    textarea.fill(bad.replace('"-5"', '"50000"'))
    page.locator("#edit-plan").get_by_role("button", name="Save").click()
    expect(page.locator(".flash-done")).to_have_text("plan starter saved: version 2")
    expect(page.locator("#plan-policies tr", has_text="allowance")).to_contain_text("50000")
    dash.r.q("QUOTA.CHARGE", "acme", "PATH", "members/u1", "COST", "ai_tokens", "10")
    member = dash.r.q("QUOTA.GET", "acme", "members/u1")
    assert [(p["policy"], p["limit"], p["source"]) for p in member["policies"]] == [("allowance", "50000", "plan")], member

    # Saving what the plan already says changes nothing.
    page.locator("#edit-plan").get_by_role("button", name="Save").click()
    expect(page.locator(".flash-done")).to_contain_text("nothing changed")
    assert json.loads(dash.r.q("QUOTA.PLAN", "GET", "starter"))["version"] == 2

    # Stop following, then delete the plan.
    followers.locator("tr", has_text="acme").get_by_role("button", name="Stop following").click()
    expect(page.locator(".flash-done")).to_have_text("acme follows no plan now")
    expect(page.locator("#plan-followers")).to_have_count(0)
    assert dash.r.q("QUOTA.GET", "acme", "/")["plan"] is None
    page.get_by_role("button", name="Delete the plan").click()
    expect(page).to_have_url(re.compile(r"/plans\?done="))
    expect(page.locator(".flash-done")).to_contain_text("plan starter deleted")
    expect(page.locator("#plans")).to_have_count(0)
    assert dash.r.q("QUOTA.PLAN", "LIST") == []


def test_trees_of_a_deleted_plan_still_show(dash):
    dash.r.q("QUOTA.PLAN", "SET", "gone", json.dumps(STARTER))
    dash.r.q("QUOTA.ASSIGN", "initech", "gone")
    dash.r.q("QUOTA.PLAN", "DEL", "gone")
    page = dash.page()
    page.goto(dash.url("/plans/gone"))
    expect(page.locator(".flash-error")).to_contain_text("has no plan gone")
    row = page.locator("#plan-followers tr", has_text="initech")
    expect(row).to_contain_text("plan missing")
    expect(page.locator("#edit-plan")).to_have_count(0)
    dash.r.q("QUOTA.ASSIGN", "initech", "NONE")


def test_followers_among_many_trees_are_found_page_by_page(dash):
    # 3000 trees: more than one page looks at (1000), so the page offers to
    # look further, and every follower is found on one page or another.
    keys = [f"t{i:04}" for i in range(3000)]
    pipe = dash.r.pipeline(transaction=False)
    for k in keys:
        args = ["QUOTA.SET", k, "/", "own", "METRIC", "credits", "LIMIT", "1"]
        pipe.execute_command(*(lua_command(args) if dash.backend == "lua" else args))
    pipe.execute()
    dash.r.q("QUOTA.PLAN", "SET", "wide", json.dumps(STARTER))
    following = {"t0007", "t1500", "t2999"}
    for k in following:
        dash.r.q("QUOTA.ASSIGN", k, "wide")
    try:
        page = dash.page()
        page.goto(dash.url("/plans/wide"))
        found, pages = set(), 0
        while True:
            pages += 1
            found |= set(page.locator("#plan-followers td:first-child a").all_inner_texts())
            further = page.get_by_role("link", name="Look further")
            if further.count() == 0 or pages > 10:
                break
            further.click()
            expect(page).to_have_url(re.compile(r"cursor="))
        assert pages > 1, "3000 trees fit one page: no 'Look further'"
        assert found == following, found
    finally:
        pipe = dash.r.pipeline(transaction=False)
        for k in keys:
            pipe.delete(k)
        pipe.execute()
        dash.r.q("QUOTA.PLAN", "DEL", "wide")


def test_a_price_and_its_estimate(dash):
    page = confirming(dash.page())
    page.goto(dash.url("/prices"))
    expect(page.locator("h1")).to_have_text("Prices")
    expect(page.locator(".empty")).to_contain_text("no entry yet")

    form = page.locator("#new-price")
    form.get_by_label("Service/model").fill("image/pix")
    form.locator("textarea").fill('{"metric": "credits", "rates": {"images": "-4"}}')
    form.get_by_role("button", name="Add the price").click()
    said = error_of(dash, "QUOTA.PRICE", "SET", "image/pix", '{"metric": "credits", "rates": {"images": "-4"}}')
    expect(form.locator(".error")).to_have_text(said)
    assert dash.r.q("QUOTA.PRICE", "LIST") == []

    form.locator("textarea").fill(json.dumps(PIX))
    form.get_by_role("button", name="Add the price").click()
    expect(page.locator(".flash-done")).to_have_text("price image/pix added")
    row = page.locator("#prices tr", has_text="image/pix")
    expect(row).to_contain_text("prompt_tokens 0.30/1K")
    expect(row).to_contain_text("quality (hd, standard)")

    row.get_by_role("link", name="image/pix").click()
    expect(page).to_have_url(re.compile(r"/prices/image/pix$"))
    expect(page.locator("#price-rates tr", has_text="prompt_tokens")).to_contain_text("0.30/1K")
    expect(page.locator("#price-multipliers tr", has_text="hd")).to_contain_text("2")
    expect(page.locator("#price-entry")).to_contain_text("0.01")

    # The calculator starts with the names the price uses.
    names = page.locator("#estimate-rows input[name=name]")
    expect(names.nth(0)).to_have_value("images")
    expect(names.nth(1)).to_have_value("prompt_tokens")
    expect(names.nth(2)).to_have_value("quality")
    values = page.locator("#estimate-rows input[name=value]")
    values.nth(0).fill("3")
    values.nth(1).fill("1234")
    values.nth(2).fill("hd")
    page.get_by_role("button", name="Estimate").click()
    # (3 × 4 + 1234 × 0.0003) × 2, exactly.
    expect(page.locator("#estimate-cost")).to_have_text("24.7404")
    reply = dash.r.q("QUOTA.ESTIMATE", "image/pix", "images", "3", "prompt_tokens", "1234", "quality", "hd")
    assert reply["cost"] == "24.7404", reply
    expect(page.locator("#estimate-result")).to_contain_text("12.3702")
    expect(page.locator("#estimate-charges tr", has_text="credits")).to_contain_text("24.7404")
    expect(page.locator("#estimate-charges tr", has_text="prompt_tokens")).to_contain_text("1234")
    dash.shot(page, "prices")

    # A row more (books.js), and an estimate the command refuses.
    before = names.count()
    page.get_by_role("button", name="Add a row").click()
    expect(names).to_have_count(before + 1)
    values.nth(2).fill("")
    page.get_by_role("button", name="Estimate").click()
    said = error_of(dash, "QUOTA.ESTIMATE", "image/pix", "images", "3", "prompt_tokens", "1234")
    expect(page.locator("#estimate-error")).to_have_text(said)
    assert "needs quality" in said, said

    # Bad JSON on save: the command's error, the entry unchanged.
    before = dash.r.q("QUOTA.PRICE", "GET", "image/pix")
    page.locator("#edit-price textarea").fill('{"metric": "credits", "rates": ')
    page.locator("#edit-price").get_by_role("button", name="Save").click()
    expect(page.locator("#edit-price .error")).to_contain_text("price is not valid JSON")
    assert dash.r.q("QUOTA.PRICE", "GET", "image/pix") == before

    page.locator("#edit-price textarea").fill(json.dumps(dict(PIX, minimum="0.5")))
    page.locator("#edit-price").get_by_role("button", name="Save").click()
    expect(page.locator(".flash-done")).to_have_text("price image/pix saved")
    expect(page.locator("#price-entry")).to_contain_text("0.5")

    page.get_by_role("button", name="Delete the price").click()
    expect(page).to_have_url(re.compile(r"/prices\?done="))
    expect(page.locator(".flash-done")).to_have_text("price image/pix deleted")
    assert dash.r.q("QUOTA.PRICE", "LIST") == []


def test_without_javascript_the_calculator_works(dash):
    # (A form POST without JavaScript comes with `Origin: null` under the
    # dashboard's Referrer-Policy no-referrer, and the guard refuses it: the
    # write forms need app.js until the guard takes Sec-Fetch-Site then.)
    dash.r.q("QUOTA.PRICE", "SET", "image/pix", json.dumps(PIX))
    context = dash.browser.new_context(java_script_enabled=False, locale="en-US", timezone_id="UTC")
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.goto(dash.url("/prices/image/pix"))
        expect(page.get_by_role("button", name="Add a row")).to_be_hidden()
        values = page.locator("#estimate-rows input[name=value]")
        expect(values).to_have_count(5)
        values.nth(0).fill("2")
        values.nth(2).fill("standard")
        page.get_by_role("button", name="Estimate").click()
        # max(0.01, 2 × 4) × 1
        expect(page.locator("#estimate-cost")).to_have_text("8")
    finally:
        context.close()
        dash.r.q("QUOTA.PRICE", "DEL", "image/pix")


def test_a_missing_price_is_a_404(dash):
    status, _, body = dash.http("/prices/chat/nothing")
    assert status == 404, status
    assert "no entry chat/nothing" in body


def test_read_only_shows_the_books_and_estimates(dash):
    dash.r.q("QUOTA.PLAN", "SET", "free", json.dumps(STARTER))
    dash.r.q("QUOTA.PRICE", "SET", "chat/gpt-x", json.dumps(
        {"metric": "credits", "rates": {"input_tokens": "2.50/1M", "output_tokens": "10/1M"}, "minimum": "0.0001"}))
    dash.restart_dash(["--read-only"])
    try:
        page = dash.page()
        page.goto(dash.url("/plans"))
        expect(page.locator("#plans").get_by_role("link", name="free")).to_be_visible()
        expect(page.locator("#new-plan")).to_have_count(0)
        page.goto(dash.url("/plans/free"))
        expect(page.locator("#plan-json")).to_contain_text('"allowance"')
        expect(page.locator("#edit-plan, #assign-plan")).to_have_count(0)
        expect(page.get_by_role("button", name="Delete the plan")).to_have_count(0)
        page.goto(dash.url("/prices/chat/gpt-x"))
        expect(page.locator("#edit-price")).to_have_count(0)
        values = page.locator("#estimate-rows input[name=value]")
        values.nth(0).fill("1000")
        values.nth(1).fill("500")
        page.get_by_role("button", name="Estimate").click()
        expect(page.locator("#estimate-cost")).to_have_text("0.0075")
        # A write sent anyway is refused by the adapter, and changes nothing.
        status, head, _ = dash.http("/plans/free/delete", method="POST", data="")
        assert status == 303 and "read-only" in head.get("location", ""), (status, head)
        assert dash.r.q("QUOTA.PLAN", "LIST") == ["free"]
    finally:
        dash.r.q("QUOTA.PLAN", "DEL", "free")
        dash.r.q("QUOTA.PRICE", "DEL", "chat/gpt-x")


def test_a_stale_plan_editor_is_refused_and_none_is_no_plan(dash):
    plan = lambda limit: json.dumps({"paths": {"/": {"c": {"metric": "credits", "limit": limit}}}})  # noqa: E731
    dash.r.q("QUOTA.PLAN", "SET", "bk16", plan("5"))
    page = dash.page()
    page.goto(dash.url("/plans/bk16"))
    form = page.locator("#edit-plan")
    # Saved unchanged: nothing changes.
    form.locator("button[type=submit]").click()
    expect(page.locator(".flash")).to_contain_text("nothing changed: plan bk16 already says that (version 1)")
    # Someone else saves meanwhile: this editor's save is refused, plainly.
    dash.r.q("QUOTA.PLAN", "SET", "bk16", plan("7"))
    text = form.locator("textarea").input_value()
    form.locator("textarea").fill(text.replace('"5"', '"6"'))
    form.locator("button[type=submit]").click()
    expect(form.locator(".error")).to_have_text(
        "plan bk16 changed since you opened it (now version 2): reload to see it")
    assert json.loads(dash.r.q("QUOTA.PLAN", "GET", "bk16"))["paths"]["/"]["c"]["limit"] == "7"
    # Reloaded, the change saves as version 3.
    page.reload()
    text = form.locator("textarea").input_value()
    form.locator("textarea").fill(text.replace('"7"', '"6"'))
    form.locator("button[type=submit]").click()
    expect(page.locator(".flash")).to_contain_text("plan bk16 saved: version 3")
    # NONE is QUOTA.ASSIGN's word for no plan: no page, no assign form, and
    # its assign is refused (the tree keeps its plan).
    dash.r.q("QUOTA.ASSIGN", "bk16t", "bk16")
    for name in ("NONE", "none"):
        status, _, body = dash.http(f"/plans/{name}")
        assert status == 404 and 'id="assign-plan"' not in body, (status, body[:200])
        status, _, body = dash.http(f"/plans/{name}/assign", "POST", {"Accept": "application/json"}, "key=bk16t")
        assert status == 422 and "none is not a plan's name" in body, body
    assert dash.r.q("QUOTA.GET", "bk16t", "/")["plan"] == "bk16"
    status, _, body = dash.http("/plans/bk16/assign", "POST", {"Accept": "application/json"}, "key=bk16t&stop=1")
    assert '"bk16t follows no plan now"' in body, body
