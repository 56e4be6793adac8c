"""The dashboard starts, serves its pages and assets, and guards itself: a
listen address beyond loopback needs a token, and then every request does."""

import re

from playwright.sync_api import expect


def test_root_goes_to_the_trees(dash):
    status, head, _ = dash.http("/")
    assert status == 303, f"GET / answered {status}, expected 303"
    assert head.get("location", "").endswith("/trees"), f"GET / goes to {head.get('location')!r}"


def test_trees_page(dash):
    page = dash.page()
    page.goto(dash.url("/"))
    expect(page).to_have_url(re.compile(r"/trees$"))
    expect(page).to_have_title(re.compile("Trees"))
    expect(page.locator("h1")).to_contain_text("Trees")
    nav = page.locator("header nav")
    for name in ("Trees", "Plans", "Prices", "Events"):
        expect(nav.get_by_role("link", name=name, exact=True)).to_be_visible()
    # The page's own stylesheet is the one under /assets/, and it applied.
    expect(page.locator('link[rel="stylesheet"][href^="/assets/app.css"]')).to_have_count(1)
    dash.shot(page, "trees-empty")


def test_a_tree_is_listed(dash):
    dash.r.q("QUOTA.SET", "smoke", "/", "monthly", "METRIC", "credits", "LIMIT", "100")
    page = dash.page()
    page.goto(dash.url("/trees"))
    link = page.get_by_role("link", name="smoke", exact=True)
    expect(link).to_be_visible()
    link.click()
    expect(page).to_have_url(re.compile(r"/trees/smoke(\?.*)?$"))


def test_assets_are_served(dash):
    status, head, body = dash.http("/assets/app.css")
    assert status == 200, f"/assets/app.css answered {status}"
    assert head.get("content-type", "").startswith("text/css"), f"app.css is {head.get('content-type')!r}"
    assert body.strip(), "app.css is empty"
    status, head, _ = dash.http("/assets/app.js")
    assert status == 200, f"/assets/app.js answered {status}"
    assert "javascript" in head.get("content-type", ""), f"app.js is {head.get('content-type')!r}"
    status, _, _ = dash.http("/assets/nothing.css")
    assert status == 404, f"/assets/nothing.css answered {status}, expected 404"


def test_a_foreign_host_is_refused(dash):
    # Without a token only loopback names may be in Host (DNS rebinding).
    status, _, _ = dash.http("/trees", headers={"Host": f"attacker.example:{dash.port}"})
    assert 400 <= status < 500, f"Host attacker.example answered {status}, expected a refusal (4xx)"
    status, _, _ = dash.http("/trees", headers={"Host": f"localhost:{dash.port}"})
    assert status == 200, f"Host localhost answered {status}"


def test_beyond_loopback_needs_a_token(dash):
    code, out = dash.run_dash([], host="0.0.0.0")
    assert code not in (0, None), f"quota-dash --listen 0.0.0.0 without a token: exit {code}\n{out}"
    assert "--token" in out, f"the refusal does not mention --token:\n{out}"


def test_a_token_guards_every_request(dash):
    dash.restart_dash(["--token", "T0ken-smoke"], host="0.0.0.0")
    status, _, _ = dash.http("/trees")
    assert status == 401, f"no token: {status}, expected 401"
    status, _, _ = dash.http("/trees", headers={"Authorization": "Bearer wrong"})
    assert status == 401, f"a wrong token: {status}, expected 401"
    status, _, _ = dash.http("/trees", headers={"Authorization": "Bearer T0ken-smoke"})
    assert status == 200, f"Bearer T0ken-smoke: {status}, expected 200"
    # The same from the environment.
    dash.restart_dash([], env={"QUOTA_DASH_TOKEN": "env-token"}, host="0.0.0.0")
    status, _, _ = dash.http("/trees")
    assert status == 401, f"no token (QUOTA_DASH_TOKEN set): {status}, expected 401"
    status, _, _ = dash.http("/trees", headers={"Authorization": "Bearer env-token"})
    assert status == 200, f"Bearer env-token: {status}, expected 200"
