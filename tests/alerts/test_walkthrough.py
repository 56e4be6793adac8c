"""The README walk-through: "alert me at 80 % and tell billing when the wallet
is low".

The configuration is tests/alerts/walkthrough.json as it stands, except for
where the peers listen: the test points smtp.port and the billing webhook's
host:port at its own SMTP server and HTTP receiver (the path /hooks/quota
stays). The companion runs as the README shows it:

    BILLING_HOOK_SECRET=... quota-dash alerts --config alerts.json

and COMMANDS are the redis-cli lines of the README, in order:
- a tree `acme` with a monthly budget of 100 credits (WARN defaults to 80,90);
- a prepaid wallet for user:42 that is low at 20 credits left, fed by a
  purchase of 100; created empty (LIMIT 0), it fires warning 80, warning 90,
  over and low (0 left) at once;
- 85 credits on each: acme passes 80 %, the wallet is left with 15.
Then ops@example.com has exactly one mail, acme's warning at 80: the rule
`budget-80` says `"policy": "monthly"`, without which the empty wallet's
own warning 80 at creation would mail ops too. Billing has two signed `low`
webhooks for user:42: 0 left at creation (the wallet was created empty,
which is news for billing too), then 15 left after the charge."""

import json
import os
from urllib.parse import urlsplit, urlunsplit

from harness import HERE, check, key_of, verify_signature, wait_for

SECRET = "whsec_walkthrough"

COMMANDS = [
    ["QUOTA.SET", "acme", "/", "monthly", "METRIC", "credits", "LIMIT", "100", "WINDOW", "month"],
    ["QUOTA.SET", "user:42", "/", "wallet", "METRIC", "credits", "LIMIT", "0", "LOW", "20"],
    ["QUOTA.GRANT", "user:42", "/", "wallet", "100", "ID", "pay_1001"],
    ["QUOTA.CHARGE", "acme", "PATH", "/", "COST", "credits", "85"],     # 85 of 100: warning 80, a mail to ops
    ["QUOTA.CHARGE", "user:42", "PATH", "/", "COST", "credits", "85"],  # 15 left: low, a webhook to billing
]


def test_alert_me_at_80_percent_and_tell_billing_when_the_wallet_is_low(ctx):
    with open(os.path.join(HERE, "walkthrough.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    box = ctx.mailbox()
    hook = ctx.receiver()
    cfg["smtp"]["port"] = box.port
    url = urlsplit(cfg["destinations"]["billing"]["webhook"])
    cfg["destinations"]["billing"]["webhook"] = urlunsplit(url._replace(netloc=f"127.0.0.1:{hook.port}"))
    path = ctx.config_file(cfg, "walkthrough.json")
    ctx.companion(config=path, env={"BILLING_HOOK_SECRET": SECRET})

    for cmd in COMMANDS:
        ctx.r.q(*cmd)

    acme = ctx.events("acme")
    wallet = ctx.events("user:42")
    w80 = [e for e in acme if e["type"] == "warning" and e.get("threshold") == 80]
    lows = [e for e in wallet if e["type"] == "low"]
    check(len(w80) == 1, f"acme fired warning 80 once: {acme}")
    check(len(lows) == 2 and [str(e.get("remaining")) for e in lows] == ["0", "15"],
          f"the wallet fired low at creation (0 left) and after the charge (15 left): {wallet}")
    wait_for(lambda: box.got() and len(hook.got("/hooks/quota")) >= 2, "the mail and both webhooks arrive")
    ctx.wait_caught_up("acme", "user:42")

    mails = box.got()
    check(len(mails) == 1, f"one mail, acme's warning: {mails}")
    if mails and w80:
        m = mails[0]
        check(m.rcpt_tos == ["ops@example.com"], f"to ops@example.com: {m.rcpt_tos}")
        check((m.subject or "").startswith("[quota] acme /: "), f"Subject names acme and /: {m.subject!r}")
        for text in ("acme", "monthly", "85", "100", key_of("acme", w80[0]), "budget-80"):
            check(text in m.text, f"the mail says {text!r}:\n{m.text}")
    reqs = hook.got("/hooks/quota")
    check([r.key for r in reqs] == [key_of("user:42", e) for e in lows],
          f"billing got the two lows, in order, once each: {reqs}")
    for r in reqs:
        b = r.json or {}
        ok, why = verify_signature(r.headers.get("quota-signature"), r.body, SECRET)
        check(ok, f"{r.key}: signed with BILLING_HOOK_SECRET: {why}")
        check(b.get("type") == "low" and b.get("tree") == "user:42" and b.get("rules") == ["wallet-low"]
              and b.get("destination") == "billing", f"{r.key}: a low of user:42 by wallet-low for billing: {b}")
        ev = b.get("event") or {}
        check(str(ev.get("low")) == "20" and ev.get("policy") == "wallet" and ev.get("tree") == "user:42",
              f"{r.key}: the event says the LOW amount and the policy: {ev}")
    if len(reqs) == 2:
        check(str((reqs[1].json or {}).get("event", {}).get("remaining")) == "15",
              f"the second low says 15 left: {reqs[1].json}")
