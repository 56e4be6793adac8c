"""Regressions for the hostile review of issue 22 (/work/brief/review22.md):
one test per finding that was fixed, each of which failed on the companion
as it was before the fix (the binary of d2135ba).

- 1: an SMTP server that accepts and never greets: every attempt ends after
  timeout_ms ("no answer within"), is retried and dead-lettered; one
  destination holds at most 8 of the 16 delivery slots, so a webhook still
  gets its event while more than 16 mails hang.
- 2: a keyspace whose SCAN outlasts the lease: the single companion keeps its
  lease through the sweep and delivers.
- 4: tree names with CR LF and UTF-8: the Idempotency-Key header is the key
  percent-encoded, the body's id the key itself, nothing injected.
- 5: addresses and From lines the mailer would refuse are refused by --check.
- 6: Redis restarted empty under a running companion: events on a new tree
  right away are delivered (not skipped as a first start's history).
- 8: --config /dev/zero or a file over 1 MiB: refused at once, never read whole.
- 9: a tree name with a newline adds no line to a mail's body.
"""

import os
import re
import resource
import socket
import subprocess
import threading
import time

from harness import (CURSORS, DASH, LEADER, SENTINEL, STATUS, WaitTimeout, check, config, mail_to, rule, wait_for,
                     webhook)

MIB = 1 << 20


def over_key(ctx, tree):
    """A fresh LIMIT 100 budget charged to 100 (warning 80, warning 90, over): the over event's key."""
    ctx.budget(tree)
    ctx.charge(tree, 100)
    return ctx.keys_of(tree, where=lambda e: e["type"] == "over")[0]


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Tarpit:
    """A TCP server that accepts every connection and never sends a byte (an
    SMTP server that never greets). Counts connections, and how many were
    open at once at most (a connection ends when the client closes it)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.accepted = 0
        self.open = 0
        self.peak = 0
        self.conns = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                self.open += 1
                self.peak = max(self.peak, self.open)
                self.conns.append(conn)
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn):
        try:
            while conn.recv(4096):
                pass  # whatever the client says, no answer
        except OSError:
            pass
        with self.lock:
            self.open -= 1

    def close(self):
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass


# ----- finding 1 ------------------------------------------------------------------------


def tarpit_beside_a_webhook(ctx, attempts, timeout_ms):
    """An SMTP tarpit as the mail destination of trees m:*, a receiver as
    the webhook of trees w:* (both for `over` events), configured; returns
    (the tarpit, the receiver)."""
    tarpit = Tarpit()
    ctx.peers.append(tarpit)
    hook = ctx.receiver()
    smtp = {"host": "127.0.0.1", "port": tarpit.port, "tls": "none", "from": "quota <alerts@example.com>"}
    ctx.set_config(config({"ops": mail_to(["ops@example.com"], attempts=attempts, backoff_ms=50,
                                          timeout_ms=timeout_ms),
                           "hook": webhook(hook.url("/hook"), timeout_ms=2000)},
                          [rule("mail", "ops", trees="m:*", events=["over"]),
                           rule("hook", "hook", trees="w:*", events=["over"])], smtp=smtp))
    return tarpit, hook


def test_an_smtp_server_that_never_answers_times_out_and_does_not_starve_webhooks(ctx):
    tarpit, hook = tarpit_beside_a_webhook(ctx, attempts=2, timeout_ms=300)
    comp = ctx.companion()
    mails = 20  # more than the 16 delivery slots
    mail_keys = [over_key(ctx, f"m:{i}") for i in range(mails)]
    wait_for(lambda: tarpit.accepted >= 1, "the first mail attempt connects to the tarpit")
    fired = time.monotonic()
    key = over_key(ctx, "w:1")
    got = wait_for(lambda: hook.delivered("/hook"), "the webhook's event is delivered while the mails hang", 3)
    took = got[0].at - fired
    check(took < 2, f"the webhook's event is delivered promptly (within 2 s), not after the mails: {took:.2f} s")
    check([r.key for r in got] == [key], f"the webhook got its event: {[r.key for r in got]} vs {key}")
    dead_then = len(ctx.dead())
    check(dead_then < mails, f"the webhook did not wait for the mails to give up: {dead_then} of {mails} dead")

    # Every mail: 2 attempts of 300 ms each, then a dead letter saying why.
    wait_for(lambda: len(ctx.dead()) == mails, f"all {mails} mails are dead letters after 2 timed-out attempts")
    for k in mail_keys:
        job = ctx.job(f"ops|{k}") or {}
        err = str(job.get("last_error"))
        check(job.get("attempts") == 2 and "no answer within" in err and "300" in err,
              f"mail {k}: 2 attempts, the error naming the timeout ('no answer within 300 ms'): {job}")
    check(tarpit.accepted >= 2 * mails, f"each attempt connected anew (a retry): {tarpit.accepted} connections")
    check(1 <= tarpit.peak <= 8, f"one destination holds at most 8 of the 16 slots: {tarpit.peak} "
          f"connections to the tarpit at once")
    out = comp.output()
    check("no answer within" in out, "the companion's output says an attempt got no answer in time")
    check(comp.alive(), f"the companion still runs: {comp.state()}")
    st = ctx.status()
    check(st.get("dead") == str(mails), f"status dead {mails}: {st}")


# ----- finding 4 ------------------------------------------------------------------------


def percent_encoded(key):
    """Every byte (UTF-8) that is not visible ASCII, and %, as %XX."""
    return "".join(chr(b) if 0x21 <= b <= 0x7E and b != 0x25 else f"%{b:02X}" for b in key.encode())


def test_hostile_tree_names_reach_a_webhook_with_a_percent_encoded_idempotency_key(ctx):
    hook = ctx.receiver()
    ctx.set_config(config({"hook": webhook(hook.url("/hook"), attempts=2)}, [rule("overs", "hook", events=["over"])]))
    ctx.companion()
    trees = ["evil\r\nX-Injected: yes", "caf\u00e9", "100%\tsure", "plain"]
    keys = {t: over_key(ctx, t) for t in trees}
    wait_for(lambda: len(hook.delivered("/hook")) >= len(trees), f"the {len(trees)} events are delivered")
    ctx.wait_caught_up(*trees)
    check(not ctx.dead(), f"no dead letters: {ctx.dead()}")
    reqs = hook.delivered("/hook")
    check(len(reqs) == len(trees), f"one request per event: {reqs}")
    by_id = {(r.json or {}).get("id"): r for r in reqs}
    for t, k in keys.items():
        r = by_id.get(k)
        check(r is not None, f"the body's id is the raw key {k!r}: {list(by_id)}")
        if r is None:
            continue
        check((r.json or {}).get("tree") == t, f"the body's tree is the name as it is: {(r.json or {}).get('tree')!r}")
        want = percent_encoded(k)
        check(r.key == want, f"Idempotency-Key for {t!r}: {r.key!r}, want {want!r}")
        check(all(0x21 <= ord(c) <= 0x7E for c in r.key or "x\x00"), f"the header is visible ASCII: {r.key!r}")
    for r in hook.got():
        check("x-injected" not in r.headers, f"no header injected by a tree name: {r.headers}")


# ----- finding 6 ------------------------------------------------------------------------


def test_redis_restarted_empty_is_not_a_first_start(ctx):
    hook = ctx.receiver()
    cfg = config({"hook": webhook(hook.url("/hook"))}, [rule("all", "hook")])
    ctx.set_config(cfg)
    comp = ctx.companion(env={"QUOTA_ALERTS_TICK_MS": "20"})
    ctx.budget("before")
    ctx.charge("before", 100)
    before = ctx.keys_of("before")
    wait_for(lambda: set(before) <= set(hook.keys(delivered=True)), "the events before the restart are delivered")

    ctx.restart_redis()
    # The operator puts the config back at once and the application goes on:
    # a new tree and its events, fired before the companion is back.
    ctx.set_config(cfg)
    ctx.budget("after")
    ctx.charge("after", 100)
    want = ctx.keys_of("after")
    check(len(want) == 3, f"warning 80, warning 90 and over on the new tree: {want}")
    wait_for(lambda: set(want) <= set(hook.keys(delivered=True)),
             "every event fired right after Redis restarted empty is delivered")
    ctx.wait_caught_up("after")
    check(sorted(hook.keys("/hook")) == sorted(before + want), f"each once: {hook.keys('/hook')}")
    check(comp.alive(), f"the companion ran through the restart: {comp.state()}")


# ----- finding 9 ------------------------------------------------------------------------


def test_a_tree_name_with_a_newline_adds_no_line_to_the_mail(ctx):
    box = ctx.mailbox()
    ctx.set_config(config({"ops": mail_to(["ops@example.com"])}, [rule("overs", "ops", events=["over"])],
                          smtp=box.smtp_config()))
    ctx.companion()
    trees = ["a\nWhat to do: pay", "evil\r\nX-Injected: yes"]
    for t in trees:
        over_key(ctx, t)
    wait_for(lambda: len(box.got()) >= 2, "both mails arrive")
    ctx.wait_caught_up(*trees)
    mails = box.got()
    check(len(mails) == 2, f"one mail per tree: {mails}")
    for m in mails:
        body = m.text
        lines = body.splitlines()
        for forged in ("What to do: pay", "X-Injected"):
            bad = [ln for ln in lines if ln.startswith(forged)]
            check(not bad, f"no line of the body starts with {forged!r} (text from a tree name):\n{body}")
        check(len([ln for ln in lines if ln.startswith("What to do:")]) == 1,
              f"one 'What to do:' line, the companion's:\n{body}")
        check("x-injected" not in {k.lower() for k in m.msg.keys()}, f"no header injected: {m.msg.keys()}")
        tree_lines = [ln for ln in lines if ln.startswith("Tree:")]
        check(len(tree_lines) == 1 and any(re.search(r"a\s+What to do: pay|evil\s+X-Injected: yes", ln)
                                           for ln in tree_lines),
              f"the Tree: line names the whole tree on one line: {tree_lines}")


# ----- finding 8 ------------------------------------------------------------------------


def _limit_memory():
    # The check must not need memory: a companion that reads the whole file
    # fails here at once, instead of eating the machine.
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def run_check(path, env=None, timeout=10):
    """`quota-dash alerts --config PATH --check`, under a 2 GiB address-space
    limit: (exit code, output, seconds)."""
    t = time.monotonic()
    full = dict(os.environ)
    full.update(env or {})
    try:
        res = subprocess.run([DASH, "alerts", "--config", path, "--check"], capture_output=True, text=True,
                             timeout=timeout, env=full, preexec_fn=_limit_memory, errors="replace")
    except subprocess.TimeoutExpired as e:
        return None, f"no answer within {timeout} s: {e.stdout!r} {e.stderr!r}", time.monotonic() - t
    return res.returncode, res.stdout + res.stderr, time.monotonic() - t


def huge_file(ctx, size=4 << 30):
    """A sparse file of `size` bytes (NULs; no disk used), over the 1 MiB limit."""
    path = os.path.join(ctx.dir, "huge.json")
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def test_config_from_dev_zero_or_a_huge_file_is_refused_without_reading_it(ctx):
    huge = huge_file(ctx)
    just_over = ctx.config_file(" " * MIB + "{}", "just-over.json")  # 1 MiB + 2 bytes
    for path, says in (("/dev/zero", "not a regular file"), (huge, "larger than"), (just_over, "larger than")):
        code, out, took = run_check(path)
        check(code == 1, f"--check {path}: exit 1, not {code}: {out[-300:]!r}")
        check(says in out and path in out, f"--check {path} says {says!r} and names the file: {out[-300:]!r}")
        check(took < 5, f"--check {path} answers at once: {took:.1f} s")

    for path, says in (("/dev/zero", "not a regular file"), (huge, "larger than")):
        comp = ctx.companion(config=path, wait=False)
        try:
            # A safety net for a companion that would read it whole.
            resource.prlimit(comp.proc.pid, resource.RLIMIT_AS, (2 << 30, 2 << 30))
        except (OSError, ValueError):
            pass
        peak = [0.0]

        def error():
            peak[0] = max(peak[0], rss_mib(comp.proc.pid))
            if peak[0] > 200:
                raise WaitTimeout(f"the companion reads {path}: {peak[0]:.0f} MiB resident")
            if not comp.alive():
                raise WaitTimeout(f"the companion exited ({comp.state()}):\n{comp.output(20)}")
            e = ctx.status().get("config_error") or ""
            return e if says in e else ""

        text = wait_for(error, f"status config_error says {path} is {says!r}")
        check(path in text, f"config_error names the file: {text!r}")
        check(comp.alive(), f"a bad config file does not stop the companion: {comp.state()}")
        check(rss_mib(comp.proc.pid) < 200 and peak[0] < 200,
              f"the companion did not read the file whole: {peak[0]:.0f} MiB resident at most")
        comp.stop()


# ----- finding 5 ------------------------------------------------------------------------


def test_check_refuses_addresses_and_from_lines_the_mailer_refuses(ctx):
    def cfg(addresses, sender):
        return config({"ops": mail_to(addresses)}, [rule("overs", "ops", events=["over"])],
                      smtp={"host": "127.0.0.1", "port": 25, "tls": "none", "from": sender})

    good = "quota <alerts@example.com>"
    for name, c, place, value in (
        ("double-dot", cfg(["ops@example.com", "a..b@example.com"], good), "email[1]", "a..b@example.com"),
        ("comma-from", cfg(["ops@example.com"], "Quota, Inc <alerts@example.com>"), "smtp.from", "Quota, Inc"),
    ):
        code, out, _ = run_check(ctx.config_file(c, f"{name}.json"))
        check(code == 1, f"--check refuses {value!r}: exit {code}: {out!r}")
        check(place in out and value in out, f"the message names the place {place!r} and the value {value!r}: {out!r}")
    code, out, _ = run_check(ctx.config_file(cfg(["ops@example.com"], '"Quota, Inc" <alerts@example.com>'),
                                             "quoted-from.json"))
    check(code == 0, f'--check takes "Quota, Inc" <alerts@example.com>: exit {code}: {out!r}')

    # The same refusal when the companion reads it from the key.
    ctx.set_config(cfg(["a..b@example.com"], good))
    comp = ctx.companion(wait=False)
    wait_for(lambda: "a..b@example.com" in (ctx.status().get("config_error") or ""),
             "status config_error names the address the mailer refuses")
    check(comp.alive(), f"the companion still runs: {comp.state()}")


# ----- finding 2 ------------------------------------------------------------------------

LEASE_MS = 300


def scan_usec(ctx):
    """Microseconds Redis spent in SCAN so far (INFO commandstats)."""
    stats = ctx.r.info("commandstats").get("cmdstat_scan") or {}
    return int(stats.get("usec", 0))


def populate(ctx, lease_ms):
    """Plain keys (the application's others) until one full SCAN for trees
    as the companion's sweep goes (COUNT 100, TYPE quotatree or hash) costs
    Redis itself at least 1.5 leases (INFO commandstats: the server's own time,
    which no client, however fast, goes below), up to 3 M keys. Returns
    (keys, seconds of Redis's time in that SCAN)."""
    kind = "quotatree" if ctx.backend == "module" else "hash"
    n = 200_000
    while True:
        ctx.r.execute_command("DEBUG", "POPULATE", n, "app")  # adds app:0 .. app:n-1
        before = scan_usec(ctx)
        cursor = 0
        while True:
            cursor, _ = ctx.r.execute_command("SCAN", cursor, "MATCH", "*", "COUNT", 100, "TYPE", kind)
            if int(cursor) == 0:
                break
        took = (scan_usec(ctx) - before) / 1e6
        if took * 1000 >= 1.5 * lease_ms or n >= 3_000_000:
            return n, took
        n = min(3_000_000, int(n * max(1.3, 1.8 * lease_ms / 1000 / max(took, 0.01))))


def test_a_sweep_longer_than_the_lease_keeps_the_lease(ctx):
    try:
        ctx.r.execute_command("DEBUG", "SLEEP", 0)
    except Exception as e:  # noqa: BLE001
        raise AssertionError(f"DEBUG is not allowed on the test's redis-server: {e}") from e
    keys, took = populate(ctx, LEASE_MS)
    hook = ctx.receiver()
    ctx.set_config(config({"hook": webhook(hook.url("/hook"))}, [rule("overs", "hook", events=["over"])]))
    # Not a first start (a companion ran here before): every event is news,
    # those fired during the first sweep too.
    ctx.r.hset(STATUS, "initialized", int(time.time() * 1000))
    started = time.monotonic()
    comp = ctx.companion(env={"QUOTA_ALERTS_LEASE_MS": str(LEASE_MS)}, wait=False)
    wait_for(lambda: ctx.r.get(LEADER) and comp.alive(), "the companion takes the lease")
    key = over_key(ctx, "acme")
    wait_for(lambda: key in hook.keys(delivered=True),
             f"an event fired after the start is delivered though a sweep ({keys} keys, SCAN costs Redis "
             f"{took:.2f} s) outlasts the {LEASE_MS} ms lease", 8)
    took_all = time.monotonic() - started
    wait_for(lambda: ctx.r.hexists(CURSORS, SENTINEL), "the sweep reaches every tree (the sentinel's cursor)", 8)
    out = comp.output()
    check("passed to another instance" not in out and "stopped delivering" not in out,
          f"the only companion never says it lost the lease:\n{out[-1500:]}")
    check(hook.keys("/hook") == [key], f"delivered once: {hook.keys('/hook')}")
    check(comp.alive(), f"the companion still runs: {comp.state()}")
    check(took * 1000 >= 1.5 * LEASE_MS, f"the keyspace is big enough that a sweep outlasts the lease: "
          f"{keys} keys, SCAN costs Redis {took:.2f} s")
    print(f"      ({keys} keys, SCAN costs Redis {took:.2f} s; delivered {took_all:.2f} s after the start)")
