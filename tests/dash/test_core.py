"""The dashboard's frame and server (main.rs, options.rs, web.rs, quota.rs,
trees.rs): trees 50 a page with none lost, keys a URL cannot carry, half-sent
requests closed, unknown pages, the backend checked at start, `localhost` as a
listen address."""

import html
import http.client
import json
import re
import socket
import time

from playwright.sync_api import expect


def set_trees(dash, names):
    pipe = dash.r.pipeline(transaction=False)
    for name in names:
        args = ["QUOTA.SET", name, "/", "m", "METRIC", "credits", "LIMIT", "5"]
        if dash.backend == "lua":
            from backend import lua_command
            args = lua_command(args)
        pipe.execute_command(*args)
    pipe.execute()


def test_trees_page_through_every_tree_once(dash):
    names = [f"pg{i:04d}" for i in range(430)]
    set_trees(dash, names)
    seen, url, pages = [], "/trees?q=pg", 0
    while url:
        pages += 1
        assert pages < 40, "the pages never end"
        status, _, body = dash.http(url)
        assert status == 200, status
        rows = re.findall(r'<td><a href="/trees/(pg\d+)">', body)
        assert len(rows) <= 50, f"{len(rows)} trees on one page"
        seen += rows
        more = re.search(r'href="(/trees\?q=pg&amp;cursor=[^"]*)">Look further', body)
        url = html.unescape(more.group(1)) if more else None
    assert sorted(seen) == names, f"{len(seen)} rows for {len(names)} trees, {len(set(seen))} different"


def test_dot_and_tilde_keys_open(dash):
    for key in (".", "..", "~home", "..."):
        dash.r.q("QUOTA.SET", key, "/", "m", "METRIC", "credits", "LIMIT", "5")
    page = dash.page()
    for key in (".", "..", "~home", "..."):
        page.goto(dash.url("/trees?q=" + key.replace(".", "%2E").replace("~", "%7E")))
        page.get_by_role("link", name=key, exact=True).click()
        expect(page.locator("h1")).to_have_text(key)
        page.goto(dash.url("/trees"))
        page.fill("#tree-open", key)
        page.locator("#tree-open").press("Enter")
        expect(page.locator("h1")).to_have_text(key)


def test_a_key_not_utf8_is_listed_not_dropped(dash):
    dash.r.q(b"QUOTA.SET", b"nu\xff\xfe", b"/", b"m", b"METRIC", b"credits", b"LIMIT", b"5")
    dash.r.q("QUOTA.SET", "nu-ok", "/", "m", "METRIC", "credits", "LIMIT", "5")
    status, _, body = dash.http("/trees?q=nu")
    assert status == 200
    assert "nu\\xFF\\xFE" in body, body
    assert "a key that is not UTF-8: the dashboard cannot open it" in body
    assert 'href="/trees/nu-ok"' in body


def test_unknown_pages_have_the_frame_and_a_way_back(dash):
    for url in ("/nothing", "/trees/", "/trees/a/b/c/d"):
        status, _, body = dash.http(url)
        assert status == 404, f"{url}: {status}"
        assert "No such page" in body and 'href="/trees"' in body, f"{url}: {body[:200]}"
        assert "<nav" in body, f"{url}: no page frame"


def test_login_without_a_token_goes_to_the_trees(dash):
    status, head, _ = dash.http("/login?next=/prices")
    assert status in (303, 307, 308), status
    assert head["location"] == "/prices"
    status, head, _ = dash.http("/login")
    assert head["location"] == "/trees"


def test_origin_is_compared_with_its_scheme(dash):
    dash.r.q("QUOTA.SET", "og", "/", "m", "METRIC", "credits", "LIMIT", "5")
    host = f"127.0.0.1:{dash.port}"
    data = "path=%2F&note=x"
    head = {"Host": host, "Content-Type": "application/x-www-form-urlencoded"}
    status, _, _ = dash.http("/trees/og/label", "POST", {**head, "Origin": f"evil://{host}"}, data)
    assert status == 403, status
    status, _, _ = dash.http("/trees/og/label", "POST", {**head, "Origin": f"http://{host}"}, data)
    assert status == 303, status


def test_a_half_sent_request_is_closed_and_pages_and_feeds_go_on(dash):
    dash.restart_dash(env={"QUOTA_DASH_HEADER_TIMEOUT_MS": "300"})
    dash.r.q("QUOTA.SET", "ht", "/", "m", "METRIC", "credits", "LIMIT", "5")  # no event yet
    feed = http.client.HTTPConnection("127.0.0.1", dash.port, timeout=10)
    feed.request("GET", "/trees/ht/events/stream", headers={"Accept": "text/event-stream"})
    res = feed.getresponse()
    assert res.status == 200
    half = socket.create_connection(("127.0.0.1", dash.port), timeout=10)
    started = time.monotonic()
    half.sendall(b"GET /trees HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    try:
        rest = half.recv(4096)  # blocks until the dash closes it (or answers)
    except ConnectionResetError:
        rest = b""
    waited = time.monotonic() - started
    half.close()
    assert b"200 OK" not in rest, rest
    assert waited < 8, f"a half-sent request was kept {waited:.1f} s"
    # The feed opened before is still live, and pages answer.
    dash.r.q("QUOTA.CHARGE", "ht", "PATH", "/", "COST", "credits", "6")  # the first event
    while True:
        line = res.readline()
        assert line, "the feed ended"
        if line.startswith(b"data: "):
            assert json.loads(line[6:])["seq"] == 1, line
            break
    feed.close()
    status, _, _ = dash.http("/trees/ht")
    assert status == 200


def test_the_backend_asked_for_must_be_there(dash):
    other = "lua" if dash.backend == "module" else "module"
    code, out = dash.run_dash(["--backend", other])
    assert code not in (0, None), f"--backend {other} started: {out}"
    assert "does not have the quota" in out and "--backend" in out, out
    code, out = dash.run_dash(["--backend", dash.backend], timeout=2)
    assert code is None, f"--backend {dash.backend} did not start: {out}"


def test_localhost_is_a_listen_address(dash):
    dash.restart_dash(host="localhost")
    status, _, _ = dash.http("/trees")
    assert status == 200
