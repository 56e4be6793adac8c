"""The tree page (/trees/{key}): the tree pane with each node's status,
opening and closing nodes, pages of 200 children through "N more…", the
node inspector (policies with progress bars, grants, access rules, labels,
holds with their time left), tag and archived filters, and read-only mode."""

import re

from playwright.sync_api import expect

from backend import lua_command


def node(page, path):
    """The tree pane's row of a path."""
    return page.locator(f'#tree li.node[data-path="{path}"]')


def row(page, path):
    return node(page, path).locator(":scope > .node-row")


def pipe(dash, commands):
    """Sends many QUOTA commands at once (a wide tree in one round trip)."""
    p = dash.r.pipeline(transaction=False)
    for args in commands:
        args = [str(a) for a in args]
        p.execute_command(*(lua_command(args) if dash.backend == "lua" else args))
    for reply in p.execute():
        assert not isinstance(reply, Exception), reply


def acme(dash):
    """A company with one project at each fill level: atlas healthy (50%),
    borealis warning (85%), cosmos critical (95%), delta over (120%), echo
    without a policy; a grant on the root, a hold on borealis, tags on echo."""
    if dash.r.exists("acme"):
        return
    q = dash.r.q
    q("QUOTA.SET", "acme", "/", "monthly", "METRIC", "credits", "LIMIT", "1000", "WINDOW", "month")
    for name, limit, spent in (("atlas", 300, 150), ("borealis", 200, 170), ("cosmos", 100, 95), ("delta", 50, 60)):
        q("QUOTA.SET", "acme", f"projects/{name}", "cap", "METRIC", "credits", "LIMIT", limit, "WARN", "80,90")
        q("QUOTA.CHARGE", "acme", "PATH", f"projects/{name}/members/ana", "COST", "credits", spent)
    q("QUOTA.SET", "acme", "projects/borealis", "daily-tokens", "METRIC", "tokens", "LIMIT", "50000", "WINDOW", "day",
      "SERVICE", "openai")
    q("QUOTA.CHARGE", "acme", "PATH", "projects/borealis", "SERVICE", "openai", "COST", "tokens", "12000")
    q("QUOTA.CHARGE", "acme", "PATH", "projects/echo", "COST", "credits", "5")
    q("QUOTA.SET", "acme", "members/u7", "in-flight", "METRIC", "requests", "LIMIT", "3", "INFLIGHT")
    q("QUOTA.GRANT", "acme", "/", "monthly", "200", "ID", "promo-march", "FOR", "30d", "NOTE", "spring promotion")
    q("QUOTA.LABEL", "acme", "projects/echo", "NOTE", "the research sandbox", "TAGS", "ml,beta")
    q("QUOTA.ALLOW", "acme", "projects", "SERVICE", "openai")
    q("QUOTA.DENY", "acme", "projects", "SERVICE", "openai", "MODEL", "gpt-x")
    q("QUOTA.RESERVE", "acme", "PATH", "projects/borealis", "ID", "gen-42", "TTL", "60000", "SERVICE", "openai",
      "META", "user", "bob", "COST", "credits", "4", "tokens", "2000")


def test_statuses_are_coloured(dash):
    acme(dash)
    page = dash.page()
    page.goto(dash.url("/trees/acme"))
    expect(page).to_have_title(re.compile("acme"))
    for path, status in (("/", "healthy"), ("projects/atlas", "healthy"), ("projects/borealis", "warning"),
                         ("projects/cosmos", "critical"), ("projects/delta", "over"), ("projects/echo", "none")):
        expect(row(page, path).locator(f".dot.status-{status}")).to_have_count(1)
    expect(row(page, "projects/delta").locator(".spend")).to_have_text("60 / 50 credits")
    expect(row(page, "projects/echo").locator(".spend")).to_have_text("5 credits")
    # The root is selected; its policy, the grant and the plan line.
    expect(row(page, "/")).to_have_class(re.compile("selected"))
    expect(page.locator("#plan")).to_contain_text("Follows no plan")
    card = page.locator('article.policy[data-policy="monthly"]')
    expect(card.locator(".limit-n")).to_have_text("1200")
    expect(card.locator("table.grants")).to_contain_text("promo-march")
    expect(card.locator("table.grants")).to_contain_text("spring promotion")
    dash.shot(page, "tree-root")


def test_a_node_opens_and_closes(dash):
    acme(dash)
    page = dash.page()
    page.goto(dash.url("/trees/acme"))
    # Loaded with the page: projects' children show and hide without a fetch.
    atlas = node(page, "projects/atlas")
    expect(atlas).to_be_visible()
    row(page, "projects").locator("button.toggle").click()
    expect(atlas).to_be_hidden()
    row(page, "projects").locator("button.toggle").click()
    expect(atlas).to_be_visible()
    # Below the first view: the toggle fetches the children.
    members = node(page, "projects/atlas/members")
    expect(members).to_have_count(0)
    toggle = row(page, "projects/atlas").locator("button.toggle")
    toggle.click()
    expect(members).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    toggle.click()
    expect(members).to_be_hidden()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.click()
    expect(members).to_be_visible()
    # A node without children says so.
    row(page, "projects/atlas/members").locator("button.toggle").click()
    row(page, "projects/atlas/members/ana").locator("button.toggle").click()
    expect(node(page, "projects/atlas/members/ana")).to_contain_text("no paths below")


def test_450_children_come_in_three_pages(dash):
    pipe(dash, [("QUOTA.CHARGE", "wide", "PATH", f"org/team/m{i:03d}", "BRIEF", "COST", "credits", "1")
                for i in range(450)])
    page = dash.page()
    page.goto(dash.url("/trees/wide"))
    team = node(page, "org/team")
    team.locator(":scope > .node-row button.toggle").click()
    kids = team.locator(":scope > ul.children > li.node")
    expect(kids).to_have_count(200)
    expect(kids.last).to_have_attribute("data-path", "org/team/m199")
    more = team.locator(":scope > ul.children > li.more button")
    expect(more).to_have_text("250 more…")
    more.click()
    expect(kids).to_have_count(400)
    expect(more).to_have_text("50 more…")
    more.click()
    expect(kids).to_have_count(450)
    expect(kids.last).to_have_attribute("data-path", "org/team/m449")
    expect(more).to_have_count(0)
    # In name order, none twice.
    paths = kids.evaluate_all("rows => rows.map(r => r.dataset.path)")
    assert paths == [f"org/team/m{i:03d}" for i in range(450)], paths[:5]


def test_a_big_first_child_hides_no_sibling(dash):
    # DEPTH 2 COUNT 400 visits depth first: a's 450 children would use up
    # the count before b and c; the page asks for the root's first page too.
    pipe(dash, [("QUOTA.CHARGE", "deep", "PATH", f"a/k{i:03d}", "BRIEF", "COST", "credits", "1") for i in range(450)]
         + [("QUOTA.CHARGE", "deep", "PATH", p, "BRIEF", "COST", "credits", "1") for p in ("b/x", "c")])
    page = dash.page()
    page.goto(dash.url("/trees/deep"))
    for path in ("a", "b", "c"):
        expect(node(page, path)).to_be_visible()
    a = node(page, "a")
    kids = a.locator(":scope > ul.children > li.node")
    expect(kids.first).to_be_hidden()
    row(page, "a").locator("button.toggle").click()
    expect(kids).to_have_count(398)
    expect(kids.first).to_be_visible()
    more = a.locator(":scope > ul.children > li.more button")
    expect(more).to_have_text("52 more…")
    more.click()
    expect(kids).to_have_count(450)
    row(page, "b").locator("button.toggle").click()
    expect(node(page, "b/x")).to_be_visible()


def test_the_inspector_shows_a_node(dash):
    acme(dash)
    page = dash.page()
    page.goto(dash.url("/trees/acme"))
    row(page, "projects/borealis").locator("a.name").click()
    expect(page).to_have_url(re.compile(r"path=projects%2Fborealis"))
    expect(page.locator("#node-path")).to_have_text("projects/borealis")
    expect(page.locator("#node-status")).to_have_class(re.compile("status-warning"))
    cap = page.locator('article.policy[data-policy="cap"]')
    expect(cap.locator(".status")).to_have_class(re.compile("status-warning"))
    expect(cap.locator(".used-n")).to_have_text("170")
    expect(cap.locator(".held-n")).to_have_text("4")
    expect(cap.locator(".limit-n")).to_have_text("200")
    expect(cap.locator(".remaining-n")).to_have_text("26")
    expect(cap.locator(".bar.status-warning .used")).to_have_attribute("style", "width: 85%")
    expect(cap.locator(".bar .held")).to_have_attribute("style", "left: 85%; width: 2%")
    expect(cap).to_contain_text("80%, 90%")
    tokens = page.locator('article.policy[data-policy="daily-tokens"]')
    expect(tokens.locator(".used-n")).to_have_text("12000")
    expect(tokens).to_contain_text("openai")
    expect(tokens).to_contain_text("window day")
    expect(tokens).to_contain_text(re.compile(r"2026-03-14 00:00:00 UTC – 2026-03-15 00:00:00 UTC"))
    # The write links of edit.rs's contract.
    expect(cap.get_by_role("link", name="Edit")).to_have_attribute(
        "href", "/trees/acme/policy?path=projects%2Fborealis&policy=cap")
    expect(cap.get_by_role("link", name="Add grant")).to_have_attribute(
        "href", "/trees/acme/grant?path=projects%2Fborealis&policy=cap")
    expect(cap.locator('form[action="/trees/acme/policy/reset"] button')).to_have_attribute("data-confirm", re.compile("."))
    expect(cap.locator('form[action="/trees/acme/policy/unset"] input[name="policy"]')).to_have_value("cap")
    # The hold, its META and its time left on the still test clock.
    hold = page.locator('#holds tr[data-hold="gen-42"]')
    expect(hold).to_contain_text("user=bob")
    expect(hold.locator("td.left")).to_have_text("1 m 0 s")
    expect(hold.locator('form[action="/trees/acme/hold/extend"] input[name="ttl_ms"]')).to_be_visible()
    # Access rules come from the parent's GET, not this node's.
    page.locator(".crumbs").get_by_role("link", name="projects").click()
    expect(page.locator("#access")).to_contain_text("openai")
    expect(page.locator("#access .rule-deny")).to_have_text("openai/gpt-x")
    # An INFLIGHT policy takes no grants.
    page.goto(dash.url("/trees/acme?path=members/u7"))
    flight = page.locator('article.policy[data-policy="in-flight"]')
    expect(flight).to_contain_text("counts what is held now")
    expect(flight.get_by_role("link", name="Add grant")).to_have_count(0)
    page.goto(dash.url("/trees/acme?path=projects/borealis"))
    dash.shot(page, "tree")


def test_a_hold_leaves_when_it_expires(dash):
    acme(dash)
    page = dash.page()
    page.goto(dash.url("/trees/acme?path=projects"))
    expect(page.locator('#holds tr[data-hold="gen-42"] td.left')).to_have_text("1 m 0 s")
    dash.clock_advance(30_000)
    page.reload()
    expect(page.locator('#holds tr[data-hold="gen-42"] td.left')).to_have_text("30.0 s")
    dash.clock_advance(31_000)
    dash.sweep()
    for _ in range(50):
        page.reload()
        if page.locator('#holds tr[data-hold="gen-42"]').count() == 0:
            break
        page.wait_for_timeout(100)
    expect(page.locator('#holds tr[data-hold="gen-42"]')).to_have_count(0)
    expect(page.locator("#no-holds")).to_be_visible()


def test_tags_and_archived_paths(dash):
    acme(dash)
    dash.r.q("QUOTA.ARCHIVE", "acme", "projects/delta")
    page = dash.page()
    page.goto(dash.url("/trees/acme?path=projects/echo"))
    expect(page.locator("#node-note")).to_have_text("the research sandbox")
    expect(page.locator("#node-tags .badge.tag")).to_have_text(["beta", "ml"])
    expect(row(page, "projects/echo").locator(".badge.tag")).to_have_text(["beta", "ml"])
    # An archived path is out of the tree until asked for.
    expect(node(page, "projects/delta")).to_have_count(0)
    page.locator("#tree-filter input[name=archived]").check()
    page.locator("#tree-filter button").click()
    expect(row(page, "projects/delta").locator(".badge.archived")).to_be_visible()
    row(page, "projects/delta").locator("a.name").click()
    expect(page.locator("#archived-badge")).to_be_visible()
    expect(page.get_by_role("button", name="Restore")).to_be_visible()
    # A tag filters the tree to the tagged paths and the way to them.
    page.goto(dash.url("/trees/acme?path=projects/echo"))
    page.locator("#node-tags").get_by_role("link", name="ml").click()
    expect(page).to_have_url(re.compile(r"tag=ml"))
    expect(node(page, "projects/echo")).to_be_visible()
    expect(node(page, "projects/atlas")).to_have_count(0)
    # Links keep the filter, and so do the pages fetched by the toggles.
    expect(row(page, "projects/echo").locator("a.name")).to_have_attribute("href", re.compile(r"&tag=ml"))
    expect(page.locator("#tree")).to_have_attribute("data-tag", "ml")


def test_go_to_a_path_and_missing_ones(dash):
    acme(dash)
    page = dash.page()
    page.goto(dash.url("/trees/acme"))
    page.locator("#goto-path").fill("projects/cosmos/members/ana")
    page.locator("#goto-path").press("Enter")
    expect(page.locator("#node-path")).to_have_text("projects/cosmos/members/ana")
    expect(page.locator(".crumbs")).to_contain_text("cosmos")
    response = page.goto(dash.url("/trees/acme?path=projects/nowhere"))
    assert response.status == 404, response.status
    expect(page.locator(".flash-error")).to_contain_text("NOTFOUND")
    page.goto(dash.url("/trees/nobody-yet"))
    expect(page.locator("#empty-tree")).to_contain_text("No tree named “nobody-yet” yet; add a policy to create it")
    status, _, body = dash.http("/trees/acme/children?path=projects/nowhere")
    assert status == 404 and "NOTFOUND" in body, (status, body)


def test_read_only_mode_draws_no_write_buttons(dash):
    acme(dash)
    page = dash.page()
    page.goto(dash.url("/trees/acme?path=projects/borealis"))
    expect(page.locator('#inspector form[method="post"]').first).to_be_attached()
    dash.restart_dash(["--read-only"])
    page.goto(dash.url("/trees/acme?path=projects/borealis"))
    expect(page.locator(".badge.readonly")).to_be_visible()
    expect(page.locator('article.policy[data-policy="cap"] .used-n')).to_have_text("170")
    expect(page.locator('form[method="post"]')).to_have_count(0)
    for name in ("Add policy", "Edit", "Add grant", "Edit access rules"):
        expect(page.get_by_role("link", name=name)).to_have_count(0)
    expect(page.locator('a[href*="/label?"]')).to_have_count(0)
    expect(page.get_by_role("link", name="Usage")).to_be_visible()


def test_a_tree_that_follows_a_plan(dash):
    plan = ('{"paths": {"/": {"api_calls": {"metric": "api_calls", "limit": "1000", "window": "month"}},'
            ' "members/*": {"allowance": {"metric": "ai_tokens", "limit": "10000", "window": "month"}}}}')
    dash.r.q("QUOTA.PLAN", "SET", "free", plan)
    dash.r.q("QUOTA.ASSIGN", "tenant", "free")
    dash.r.q("QUOTA.CHARGE", "tenant", "PATH", "members/u1", "COST", "ai_tokens", "9500")
    page = dash.page()
    page.goto(dash.url("/trees/tenant"))
    expect(page.locator("#plan").get_by_role("link", name="free")).to_have_attribute("href", "/plans/free")
    expect(page.locator('article.policy[data-policy="api_calls"] .badge')).to_have_text("from plan")
    row(page, "members/u1").locator("a.name").click()
    allowance = page.locator('article.policy[data-policy="allowance"]')
    expect(allowance.locator(".status")).to_have_class(re.compile("status-critical"))
    expect(allowance).to_contain_text("plan")
    dash.r.q("QUOTA.PLAN", "DEL", "free")
    page.reload()
    expect(page.locator("#plan")).to_contain_text("no longer has it")


def test_a_deep_path_is_drawn_on_the_way(dash):
    # 30 projects; p020 has 450 members. Going to m300 draws the way: the
    # projects (loaded by the first view), p020's page holding members,
    # and members' page from m300 on, with a row for the names before it.
    cmds = [("QUOTA.CHARGE", "big", "PATH", f"projects/p{i:03d}/members/m000", "BRIEF", "COST", "credits", "1")
            for i in range(30) if i != 20]
    cmds += [("QUOTA.CHARGE", "big", "PATH", f"projects/p020/members/m{i:03d}", "BRIEF", "COST", "credits", "1")
             for i in range(450)]
    pipe(dash, cmds)
    page = dash.page()
    page.goto(dash.url("/trees/big"))
    page.locator("#goto-path").fill("projects/p020/members/m300")
    page.locator("#goto-path").press("Enter")
    expect(page.locator("#node-path")).to_have_text("projects/p020/members/m300")
    selected = row(page, "projects/p020/members/m300")
    expect(selected).to_have_class(re.compile("selected"))
    expect(selected).to_be_visible()
    expect(selected.locator(".spend")).to_have_text("1 credits")
    # p020's only child is in its first page: no gap there.
    expect(node(page, "projects/p020").locator(":scope > ul.children > li.gap")).to_have_count(0)
    expect(node(page, "projects/p021")).to_be_visible()
    members = node(page, "projects/p020/members")
    kids = members.locator(":scope > ul.children > li.node")
    rows = members.locator(":scope > ul.children > li")
    expect(rows.first).to_have_text("names before m300…")
    expect(kids).to_have_count(150)
    expect(kids.first).to_have_attribute("data-path", "projects/p020/members/m300")
    expect(kids.last).to_have_attribute("data-path", "projects/p020/members/m449")
    expect(members.locator(":scope > ul.children > li.more:not(.gap)")).to_have_count(0)
    # The names before m300 come a page at a time, up to m299, none twice.
    rows.first.locator("button").click()
    expect(kids).to_have_count(350)
    gap = members.locator(":scope > ul.children > li.gap button")
    expect(gap).to_have_text("more names before m300…")
    gap.click()
    expect(kids).to_have_count(450)
    expect(gap).to_have_count(0)
    paths = kids.evaluate_all("rows => rows.map(r => r.dataset.path)")
    assert paths == [f"projects/p020/members/m{i:03d}" for i in range(450)], paths[195:205]
    # A path in the first page of its parent: that page, no gap, "more…" after it.
    page.goto(dash.url("/trees/big?path=projects/p020/members/m010"))
    expect(row(page, "projects/p020/members/m010")).to_have_class(re.compile("selected"))
    expect(members.locator(":scope > ul.children > li.gap")).to_have_count(0)
    expect(kids).to_have_count(200)
    expect(kids.first).to_have_attribute("data-path", "projects/p020/members/m000")
    expect(members.locator(":scope > ul.children > li.more button")).to_have_text("250 more…")
    # A selected node below the first view opens with its first page.
    page.goto(dash.url("/trees/big?path=projects/p005"))
    expect(node(page, "projects/p005/members")).to_be_visible()
    dash.shot(page, "tree-deep")


def test_past_periods_of_a_policy(dash):
    dash.r.q("QUOTA.SET", "hist", "team", "daily", "METRIC", "credits", "LIMIT", "100", "WINDOW", "day")
    dash.r.q("QUOTA.SET", "hist", "team", "total", "METRIC", "credits", "LIMIT", "1000")
    dash.r.q("QUOTA.CHARGE", "hist", "PATH", "team", "COST", "credits", "40")
    page = dash.page()
    page.goto(dash.url("/trees/hist?path=team"))
    daily = page.locator('article.policy[data-policy="daily"] details.history')
    expect(daily.locator("summary")).to_have_text("Past periods (0)")
    expect(daily.locator("p").first).to_be_hidden()
    daily.locator("summary").click()
    expect(daily).to_contain_text("No period has closed yet.")
    # A policy without a window has no periods to show.
    expect(page.locator('article.policy[data-policy="total"] details.history')).to_have_count(0)
    # A day later the next write closes the day.
    dash.clock_advance(86_400_000)
    dash.r.q("QUOTA.CHARGE", "hist", "PATH", "team", "COST", "credits", "5")
    page.reload()
    expect(daily.locator("summary")).to_have_text("Past periods (1)")
    daily.locator("summary").click()
    cells = daily.locator("table.periods tbody tr").first.locator("td")
    expect(cells.nth(0)).to_have_text("2026-03-14 00:00:00 UTC – 2026-03-15 00:00:00 UTC")
    expect(cells.nth(1)).to_have_text("40")
    expect(cells.nth(2)).to_have_text("100")
    expect(page.locator('article.policy[data-policy="daily"] .used-n')).to_have_text("5")


def test_a_missing_path_an_archived_parent_and_many_holds(dash):
    dash.r.q("QUOTA.SET", "tmx", "/x/y", "p", "METRIC", "credits", "LIMIT", "500")
    # A path that does not exist yet: a 404 that offers to create it.
    page = dash.page()
    response = page.goto(dash.url("/trees/tmx?path=x/new"))
    assert response.status == 404, response.status
    expect(page.locator("#missing-path h2")).to_have_text("/x/new does not exist yet")
    page.locator("#create-path").click()
    expect(page.locator("h1")).to_have_text("New policy on /x/new")
    # A path under an archived one says it is refused, with a link to it.
    dash.r.q("QUOTA.ARCHIVE", "tmx", "/x")
    page.goto(dash.url("/trees/tmx?path=x/y"))
    expect(page.locator("#archived-above")).to_contain_text("/x above it is archived")
    expect(page.locator("#archived-above a")).to_have_attribute("href", "/trees/tmx?path=x")
    dash.r.q("QUOTA.RESTORE", "tmx", "/x")
    # More live holds than the inspector lists: it says so.
    pipe(dash, [["QUOTA.RESERVE", "tmx", "PATH", "/x/y", "ID", f"h{i}", "TTL", str(60_000 + i), "COST", "credits", "1"]
                for i in range(51)])
    page.goto(dash.url("/trees/tmx?path=x/y"))
    expect(page.locator("#holds tbody tr")).to_have_count(50)
    expect(page.locator("#holds-more")).to_have_text("More than 50 live holds; the soonest to expire are shown.")
    expect(page.locator("#archived-above")).to_have_count(0)
