"""The issue's acceptance flow, by clicks only: after the first page no URL
is typed, and nothing a person does goes through Redis. Redis is used only
to make what a platform would have made before (policies, spending through
QUOTA.CHARGE and QUOTA.RESERVE as the app does) and to check what the
clicks wrote.

- A new user with no tree yet creates the first one from the trees page:
  open a tree by its key, the empty tree's page, Add policy.
- An operator finds a tree by name, reads the statuses of its paths, edits
  a limit and sees the status change in the inspector and in the tree pane,
  adds a policy on a new path, adds a grant, watches a live event arrive,
  reads the usage chart and the top models, archives and restores a path,
  and releases a hold.
"""

import re

from playwright.sync_api import expect

TREE = "journey-acme"


def status(cls):
    return re.compile(rf"\bstatus-{cls}\b")


def node(page, path):
    """A path's row in the tree pane."""
    return page.locator(f'#tree li.node[data-path="{path}"] > .node-row')


def landed(page, path, done=None):
    """The write landed on the tree page at `path` with its message."""
    expect(page.locator("#node-path")).to_have_text(path)
    if done is not None:
        expect(page.locator(".flash-done")).to_contain_text(done)


def open_node(page, path):
    """Opens `path` from the tree pane, expanding the paths above it."""
    parts = [p for p in path.strip("/").split("/") if p]
    for i in range(1, len(parts)):
        above = "/".join(parts[:i])
        toggle = node(page, above).locator("button.toggle")
        if toggle.get_attribute("aria-expanded") != "true":
            toggle.click()
        expect(toggle).to_have_attribute("aria-expanded", "true")
    node(page, path).locator("a.name").click()
    expect(page.locator("#node-path")).to_have_text(path)


def policy_card(page, name):
    return page.locator(f'#inspector article.policy[data-policy="{name}"]')


def test_a_first_tree_from_scratch(dash):
    # First in the file: the server has no tree yet.
    page = dash.page()
    page.goto(dash.url("/trees"))
    expect(page.locator("#trees")).to_have_count(0)
    expect(page.locator("#no-trees")).to_contain_text("No tree was found")
    # The page says how a first tree is made.
    expect(page.locator("#no-trees")).to_contain_text("Open a tree by its key")
    page.locator("#tree-open").fill("t:first")
    page.get_by_role("button", name="Open").click()
    expect(page.locator("#empty-tree")).to_contain_text("No tree named “t:first” yet; add a policy to create it.")
    expect(page.locator("#node-path")).to_have_text("/")
    page.locator("#add-policy").click()
    expect(page.locator("h1")).to_have_text("New policy on /")
    form = page.locator("#policy-form")
    form.get_by_label("Policy name", exact=True).fill("monthly")
    form.get_by_label("Metric", exact=True).fill("credits")
    form.get_by_label("Limit", exact=True).fill("500")
    form.locator("select[name=window]").select_option("month")
    form.get_by_role("button", name="Create policy").click()
    landed(page, "/", "Policy monthly set on /.")
    expect(page.locator("#empty-tree")).to_have_count(0)
    expect(page.locator("#node-status")).to_have_class(status("healthy"))
    expect(policy_card(page, "monthly").locator(".limit-n")).to_have_text("500")
    p = dash.r.q("QUOTA.GET", "t:first", "/")["policies"][0]
    assert (p["policy"], p["limit"], p["window"]) == ("monthly", "500", "month"), p
    # The new tree is listed now.
    page.get_by_role("navigation").get_by_role("link", name="Trees").click()
    expect(page.locator("#trees tbody tr")).to_have_count(1)
    expect(page.locator("#trees tbody tr")).to_contain_text("t:first")


def platform(dash):
    """What a platform made before the operator came: a tree with a root
    allowance and two teams, spending (charges on two models, a live hold),
    and an old project."""
    q = dash.r.q
    q("QUOTA.SET", TREE, "/", "monthly", "METRIC", "credits", "LIMIT", "1000", "WINDOW", "month")
    q("QUOTA.SET", TREE, "team/a", "monthly", "METRIC", "credits", "LIMIT", "100", "WINDOW", "month")
    q("QUOTA.SET", TREE, "team/b", "monthly", "METRIC", "credits", "LIMIT", "100", "WINDOW", "month")
    q("QUOTA.SET", TREE, "projects/old", "monthly", "METRIC", "credits", "LIMIT", "10", "WINDOW", "month")
    q("QUOTA.CHARGE", TREE, "PATH", "team/a", "SERVICE", "chat", "MODEL", "big", "COST", "credits", "60")
    q("QUOTA.CHARGE", TREE, "PATH", "team/a", "SERVICE", "chat", "MODEL", "small", "COST", "credits", "25")
    q("QUOTA.CHARGE", TREE, "PATH", "team/b", "SERVICE", "chat", "MODEL", "small", "COST", "credits", "20.5")
    hold = q("QUOTA.RESERVE", TREE, "PATH", "team/b", "TTL", "600000", "COST", "credits", "5")
    # Another tree the search must not show.
    q("QUOTA.SET", "other-co", "/", "monthly", "METRIC", "credits", "LIMIT", "5")
    return hold["id"]


def test_the_operators_journey(dash):
    hold_id = platform(dash)
    page = dash.page()
    page.goto(dash.url("/trees"))

    # Find the tree by name and open it.
    page.locator("#tree-search").fill("journey")
    page.get_by_role("button", name="Find").click()
    rows = page.locator("#trees tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.locator(".status")).to_have_class(status("healthy"))
    rows.get_by_role("link", name=TREE).click()
    expect(page.locator(".tree-title h1")).to_have_text(TREE)

    # The statuses of several paths, in the tree pane.
    expect(node(page, "/").locator(".dot")).to_have_class(status("healthy"))
    expect(node(page, "team").locator(".dot")).to_have_class(status("none"))
    open_node(page, "team/a")
    expect(node(page, "team/a").locator(".dot")).to_have_class(status("warning"))
    expect(node(page, "team/b").locator(".dot")).to_have_class(status("healthy"))
    expect(node(page, "team/a").locator(".spend")).to_have_text("85 / 100 credits")
    dash.shot(page, "journey-tree")

    # The inspector of team/a, then Edit its limit: warning becomes over.
    expect(page.locator("#node-status")).to_have_class(status("warning"))
    card = policy_card(page, "monthly")
    expect(card.locator(".used-n")).to_have_text("85")
    card.get_by_role("link", name="Edit").click()
    expect(page.locator("h1")).to_have_text("Policy monthly on /team/a")
    page.locator("#policy-form").get_by_label("Limit", exact=True).fill("80")
    page.get_by_role("button", name="Save policy").click()
    landed(page, "team/a", "Policy monthly set on /team/a.")
    expect(page.locator("#node-status")).to_have_class(status("over"))
    expect(page.locator("#node-status")).to_have_text("over")
    expect(node(page, "team/a").locator(".dot")).to_have_class(status("over"))
    expect(node(page, "team/a").locator(".spend")).to_have_text("85 / 80 credits")
    expect(node(page, "team/b").locator(".dot")).to_have_class(status("healthy"))
    assert dash.r.q("QUOTA.GET", TREE, "team/a")["policies"][0]["limit"] == "80"

    # A grant on team/a: the allowance grows, the status improves.
    policy_card(page, "monthly").get_by_role("link", name="Add grant").click()
    form = page.locator("#grant-form")
    form.get_by_label("Amount", exact=True).fill("50")
    form.get_by_label("Note", exact=True).fill("goodwill")
    form.get_by_role("button", name="Add grant").click()
    landed(page, "team/a", "the allowance is 130 now")
    card = policy_card(page, "monthly")
    expect(card.locator(".limit-n")).to_have_text("130")
    expect(card.locator(".remaining-n")).to_have_text("45")
    expect(card.locator("table.grants tbody tr")).to_contain_text("goodwill")
    expect(page.locator("#node-status")).to_have_class(status("healthy"))
    expect(node(page, "team/a").locator(".dot")).to_have_class(status("healthy"))
    grants = dash.r.q("QUOTA.GRANTS", TREE, "team/a", "monthly")
    assert [(g["amount"], g["note"]) for g in grants] == [("50", "goodwill")], grants

    # Add policy on a new child path, from team.
    node(page, "team").locator("a.name").click()
    expect(page.locator("#node-path")).to_have_text("team")
    page.locator("#add-policy").click()
    form = page.locator("#policy-form")
    expect(form.get_by_label("Path", exact=True)).to_have_value("team")
    form.get_by_label("Path", exact=True).fill("team/c")
    form.get_by_label("Policy name", exact=True).fill("daily")
    form.get_by_label("Metric", exact=True).fill("credits")
    form.get_by_label("Limit", exact=True).fill("20")
    form.locator("select[name=window]").select_option("day")
    form.get_by_role("button", name="Create policy").click()
    landed(page, "team/c", "Policy daily set on /team/c.")
    expect(node(page, "team/c").locator(".dot")).to_have_class(status("healthy"))
    expect(node(page, "team/c").locator(".spend")).to_have_text("0 / 20 credits")
    p = dash.r.q("QUOTA.GET", TREE, "team/c")["policies"][0]
    assert (p["policy"], p["limit"], p["window"]) == ("daily", "20", "day"), p

    # Release the hold on team/b from the inspector.
    open_node(page, "team/b")
    hold = page.locator(f'#holds tr[data-hold="{hold_id}"]')
    expect(hold.locator("td.left")).to_have_text("10 m 0 s")
    expect(policy_card(page, "monthly").locator(".held-n")).to_have_text("5")
    page.once("dialog", lambda d: d.accept())
    hold.get_by_role("button", name="Release").click()
    landed(page, "team/b", f"Hold {hold_id} released.")
    expect(page.locator("#no-holds")).to_be_visible()
    expect(policy_card(page, "monthly").locator(".held-n")).to_have_text("0")
    assert dash.r.q("QUOTA.HOLDS", TREE) == []

    # Archive projects/old: gone from the tree, back with "show archived".
    open_node(page, "projects/old")
    page.once("dialog", lambda d: d.accept())
    page.locator(".node-head").get_by_role("button", name="Archive").click()
    landed(page, "projects/old", "/projects/old archived")
    expect(page.locator("#archived-badge")).to_be_visible()
    assert dash.r.q("QUOTA.GET", TREE, "projects/old").get("archived") == 1
    node(page, "/").locator("a.name").click()
    expect(page.locator("#node-path")).to_have_text("/")
    expect(node(page, "projects")).to_be_visible()
    expect(page.locator('#tree li.node[data-path="projects/old"]')).to_have_count(0)
    page.locator("#tree-filter").get_by_label("show archived").check()
    page.locator("#tree-filter").get_by_role("button", name="Filter").click()
    open_node(page, "projects/old")
    expect(node(page, "projects/old").locator(".badge.archived")).to_be_visible()
    page.locator(".node-head").get_by_role("button", name="Restore").click()
    landed(page, "projects/old", "/projects/old restored")
    expect(page.locator("#archived-badge")).to_have_count(0)
    assert "archived" not in dash.r.q("QUOTA.GET", TREE, "projects/old")

    # The events page; a charge past a threshold arrives live.
    page.locator(".tree-title .links").get_by_role("link", name="Events").click()
    expect(page.locator("#live-status")).to_have_class(re.compile(r"\bon\b"))
    page.evaluate("window.notReloaded = true")
    dash.r.q("QUOTA.CHARGE", TREE, "PATH", "team/b", "SERVICE", "chat", "MODEL", "big", "COST", "credits", "64.5")
    row = page.locator("#events tbody tr").first
    expect(row.locator(".status")).to_have_class(status("warning"))
    cells = row.locator("td")
    expect(cells.nth(3)).to_have_text("team/b")
    expect(cells.nth(6)).to_have_text("85")
    expect(cells.nth(9)).to_have_text("80%")
    assert page.evaluate("window.notReloaded === true"), "the page was reloaded"

    # The usage page: the chart's bar for this hour, the top models.
    page.get_by_role("link", name="Usage").click()
    expect(page.locator("#usage-span")).to_contain_text("By hour")
    titles = page.locator("#usage-chart g.bucket title")
    expect(titles.last).to_have_text("2026-03-14 09:00 UTC: 170 credits")
    expect(page.locator("#usage-totals")).to_contain_text("170")
    models = page.locator("#usage-models tbody tr")
    expect(models).to_have_count(2)
    expect(models.nth(0)).to_contain_text("chat/big")
    expect(models.nth(0).locator("td.num")).to_have_text("124.5")
    expect(models.nth(1)).to_contain_text("chat/small")
    expect(models.nth(1).locator("td.num")).to_have_text("45.5")
    dash.shot(page, "journey-usage")

    # Back to the tree: team/b's status shows the new charge.
    page.get_by_role("link", name=f"← {TREE}").click()
    open_node(page, "team/b")
    expect(page.locator("#node-status")).to_have_class(status("warning"))
    expect(node(page, "team/b").locator(".spend")).to_have_text("85 / 100 credits")
