"""Email against a real SMTP server (aiosmtpd): one plain-text mail per event
and destination, to all its addresses, with the brief's Subject, a body naming
tree, path, policy, used/limit and what to do, a footer with the idempotency
key and the rules, and a Message-ID derived from the key (the same on a
retry)."""

import re

from harness import JOBS, check, config, key_of, mail_to, rule, wait_for


def test_a_warning_mail_names_where_how_much_and_what_to_do(ctx):
    box = ctx.mailbox()
    box.refuse(1)  # the first DATA gets 451: the mail is retried
    ctx.set_config(config({"ops": mail_to(["ops@example.com", "cto@example.com"], backoff_ms=50)},
                          [rule("usage-80", "ops", trees="*", path="/", events=["warning"], thresholds=[80])],
                          smtp=box.smtp_config()))
    ctx.companion()
    ctx.r.q("QUOTA.SET", "acme", "/team", "monthly", "METRIC", "credits", "LIMIT", "100")
    ctx.charge("acme", 85, path="team")
    warnings = [e for e in ctx.events("acme") if e["type"] == "warning"]
    check(len(warnings) == 1 and warnings[0].get("threshold") == 80, f"one warning at 80: {ctx.events('acme')}")
    ev = warnings[0]
    key = key_of("acme", ev)
    path = ev["path"]  # "team": events name nodes without the leading slash
    slashed = "/" + path.lstrip("/")
    mails = wait_for(box.got, "the warning's mail reaches the SMTP server")
    ctx.wait_caught_up("acme")
    mails = box.got()
    check(len(mails) == 1, f"one mail for one event and destination: {mails}")
    m = mails[0]
    check(sorted(m.rcpt_tos) == ["cto@example.com", "ops@example.com"], f"sent to both addresses: {m.rcpt_tos}")
    to = m["To"] or ""
    check("ops@example.com" in to and "cto@example.com" in to, f"To names both addresses: {to!r}")
    check("alerts@example.com" in (m["From"] or ""), f"From is smtp.from: {m['From']!r}")
    subject = m.subject or ""
    heads = [f"[quota] acme {p}: " for p in (slashed, path)]
    check(any(subject.startswith(h) and len(subject) > len(h) for h in heads),
          f"Subject [quota] <tree> <path>: <headline> (path {slashed} or {path}): {subject!r}")
    check("\n" not in subject, f"the Subject is one line: {subject!r}")
    check(m.msg.get_content_type() == "text/plain", f"plain text: {m.msg.get_content_type()}")
    charset = m.msg.get_content_charset() or "us-ascii"
    check(charset.lower() in ("utf-8", "us-ascii"), f"UTF-8 text: {charset}")
    body = m.text
    for what, text in (("tree", "acme"), ("path", path), ("policy", "monthly"), ("metric", "credits"),
                       ("used", "85"), ("limit", "100"), ("idempotency key", key), ("rule", "usage-80")):
        check(text in body, f"the body names the {what} ({text!r}):\n{body}")
    check(re.search(r"85(\.0+)?\s?%", body), f"the body gives the percent used (85 %):\n{body}")
    advice = re.search(r"(?im)what to do\W*(.*)$", body)
    check(advice is not None and len(advice.group(0)) > 15, f"the body says what to do:\n{body}")
    mid = m.message_id or ""
    match = re.fullmatch(r"<([^<>@\s]+)@quota-alerts>", mid)
    check(match is not None, f"Message-ID <key-sanitised@quota-alerts>: {mid!r}")
    if match:
        left = match.group(1)
        check("acme" in left and str(ev["seq"]) in left and str(ev["time"]) in left,
              f"the Message-ID is derived from the key {key!r}: {mid!r}")
    # The refused attempt was the same mail: the same Message-ID, so a
    # receiving side can drop duplicates.
    check(len(box.refused) == 1 and box.refused[0].message_id == mid,
          f"the retry after 451 keeps the Message-ID: {[r.message_id for r in box.refused]} vs {mid}")
    wait_for(lambda: ctx.r.hget(JOBS, f"ops|{key}") is None, "the delivered mail job leaves jobs")
    sent = [s for s in ctx.sent() if s.get("id") == f"ops|{key}"]
    check(len(sent) == 1 and sent[0].get("attempts") == 2, f"sent after 2 attempts: {sent}")


def test_message_ids_differ_per_event_and_trees_with_odd_names(ctx):
    box = ctx.mailbox()
    ctx.set_config(config({"ops": mail_to(["ops@example.com"])},
                          [rule("all-over", "ops", events=["over", "warning"])], smtp=box.smtp_config()))
    ctx.companion()
    trees = ["user:42", "acme corp/eu", "caf\u00e9"]
    for tree in trees:
        ctx.budget(tree)
        ctx.charge(tree, 100)
    want = {key_of(t, e) for t in trees for e in ctx.events(t) if e["type"] in ("over", "warning")}
    check(len(want) == 9, f"3 events per tree: {want}")
    wait_for(lambda: len(box.got()) >= 9, "9 mails arrive")
    ctx.wait_caught_up(*trees)
    mails = box.got()
    check(len(mails) == 9, f"exactly 9 mails: {len(mails)}")
    ids = [m.message_id for m in mails]
    check(len(set(ids)) == 9, f"9 different Message-IDs: {ids}")
    for m in mails:
        check(re.fullmatch(r"<[^<>@\s]+@quota-alerts>", m.message_id or ""), f"a valid Message-ID: {m.message_id!r}")
        subject = m.subject or ""
        check(any(subject.startswith(f"[quota] {t} /: ") for t in trees), f"Subject names the tree: {subject!r}")
    for k in want:
        tree = k.split("#")[0]
        check(any(k in m.text and tree in (m.subject or "") for m in mails), f"a mail carries the key {k!r}")


def test_smtp_login_takes_the_password_from_the_environment(ctx):
    box = ctx.mailbox(auth=("alerts", "pw-from-env"))
    ctx.set_config(config({"ops": mail_to(["ops@example.com"])}, [rule("overs", "ops", events=["over"])],
                          smtp=box.smtp_config(username="alerts", password_env="TEST_SMTP_PASSWORD")))
    ctx.companion(env={"TEST_SMTP_PASSWORD": "pw-from-env"})
    ctx.budget("acme")
    ctx.charge("acme", 100)
    wait_for(box.got, "the mail is accepted after AUTH")
    check(any((login, pw) == ("alerts", "pw-from-env") for _, login, pw in box.logins),
          f"the companion logged in as alerts with the variable's password: {box.logins}")
    check(len(box.got()) == 1, f"one mail: {box.got()}")


def test_a_permanent_smtp_refusal_is_a_dead_letter_at_once(ctx):
    box = ctx.mailbox()
    box.refuse(1, "550 5.1.1 no such mailbox (test)")
    ctx.set_config(config({"ops": mail_to(["nobody@example.com"], attempts=5)}, [rule("overs", "ops", events=["over"])],
                          smtp=box.smtp_config()))
    ctx.companion()
    ctx.budget("acme")
    ctx.charge("acme", 100)
    key = ctx.keys_of("acme", where=lambda e: e["type"] == "over")[0]
    job_id = f"ops|{key}"
    wait_for(lambda: ctx.r.zscore("quota:alerts:dead", job_id) is not None, "a 550 sends the mail job to the dead letters")
    job = ctx.job(job_id) or {}
    check(job.get("attempts") == 1 and "550" in str(job.get("last_error")), f"dead after 1 attempt, saying 550: {job}")
    check(len(box.refused) == 1 and not box.got(), f"one attempt, nothing accepted: {box.refused} {box.got()}")
