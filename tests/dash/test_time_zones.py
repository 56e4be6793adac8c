"""Billing cycles in time zones (issue 21) in the dashboard: the policy
editor sets a window's zone (TZ) and a week's or year's anchor as text, the
tree page's inspector shows the zone, and the editor reads both back.

Needs a server with TZ (the issue 21 window and command work)."""

import re
import urllib.parse

from playwright.sync_api import expect


def submit(page, button, key, path):
    """Clicks `button` and waits for the write to land on the tree page at
    `path`; returns its `done` message."""
    landing = re.compile(rf"/trees/{re.escape(key)}\?.*\bdone=")
    with page.expect_response(lambda r: landing.search(r.url) is not None) as info:
        button.click()
    # The response came; the page's own navigation may still be loading it,
    # and a goto now would interrupt it.
    page.wait_for_url(landing)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(info.value.url).query)
    assert query.get("path") == [path], f"the write went to {info.value.url}, not to the tree at {path}"
    return query["done"][0]


def policy(dash, key, path, name):
    found = [p for p in dash.r.q("QUOTA.GET", key, path)["policies"] if p["policy"] == name]
    return found[0] if found else None


def test_a_policy_with_a_zone_is_set_through_the_form_and_shown(dash):
    page = dash.page()
    page.goto(dash.url("/trees/tz1/policy?path=team"))
    form = page.locator("#policy-form")
    form.get_by_label("Policy name", exact=True).fill("weekly")
    form.get_by_label("Metric", exact=True).fill("credits")
    form.get_by_label("Limit", exact=True).fill("70")
    # The zone counts for day, week, month and year; the anchor for week,
    # month and year.
    tz = form.locator("label", has=page.locator("input[name=tz]"))
    anchor = form.locator("label", has=page.locator("input[name=anchor]"))
    form.locator("select[name=window]").select_option("hour")
    expect(tz).to_be_hidden()
    expect(anchor).to_be_hidden()
    form.locator("select[name=window]").select_option("day")
    expect(tz).to_be_visible()
    expect(anchor).to_be_hidden()
    form.locator("select[name=window]").select_option("week")
    expect(tz).to_be_visible()
    expect(anchor).to_be_visible()
    form.get_by_label("Anchor", exact=True).fill("Sunday")
    form.get_by_label("Time zone", exact=True).fill("+05:30")
    done = submit(page, form.get_by_role("button", name="Create policy"), "tz1", "team")
    assert done == "Policy weekly set on /team.", done
    p = policy(dash, "tz1", "team", "weekly")
    assert (p["window"], p["anchor"], p["tz"]) == ("week", "sunday", "+05:30"), p
    assert p["period_end"] - p["period_start"] == 7 * 86_400_000, p

    # The inspector shows the zone and the anchor.
    page.goto(dash.url("/trees/tz1?path=team"))
    expect(page.locator(".policy-tz").first).to_contain_text("+05:30")
    expect(page.get_by_text("sunday", exact=True).first).to_be_visible()

    # The editor reads them back: saving unchanged changes nothing.
    page.goto(dash.url("/trees/tz1/policy?path=team&policy=weekly"))
    form = page.locator("#policy-form")
    expect(form.get_by_label("Anchor", exact=True)).to_have_value("sunday")
    expect(form.get_by_label("Time zone", exact=True)).to_have_value("+05:30")
    submit(page, form.get_by_role("button", name="Save policy"), "tz1", "team")
    assert policy(dash, "tz1", "team", "weekly") == p

    # A named zone shows its tzdata version.
    page.goto(dash.url("/trees/tz1/policy?path=team&policy=weekly"))
    form = page.locator("#policy-form")
    form.get_by_label("Time zone", exact=True).fill("america/new_york")
    submit(page, form.get_by_role("button", name="Save policy"), "tz1", "team")
    p = policy(dash, "tz1", "team", "weekly")
    assert p["tz"] == "America/New_York" and re.fullmatch(r"\d{4}[a-z]", p["tzdata"]), p
    page.goto(dash.url("/trees/tz1?path=team"))
    expect(page.locator(".policy-tz").first).to_contain_text(f"America/New_York (tzdata {p['tzdata']})")
