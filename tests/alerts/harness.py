"""The alert companion under test (`quota-dash alerts`) and the real peers it
talks to, all on free loopback ports, all stopped at the end of a test.

    ctx = Ctx("module")                       # or Ctx("lua"): a fresh redis-server with quota
    hook = ctx.receiver()                     # an HTTP receiver (http.server in a thread)
    mail = ctx.mailbox()                      # an SMTP server (aiosmtpd)
    ctx.set_config({...})                     # quota:alerts:config (or ctx.config_file({...}))
    alerts = ctx.companion()                  # quota-dash alerts --redis ...; waits until it leads
    ctx.r.q("QUOTA.SET", "acme", "/", "monthly", "METRIC", "credits", "LIMIT", "100")
    ctx.charge("acme", 85)                    # fires warning 80
    wait_for(lambda: hook.keys(), "the warning reaches the receiver")
    ctx.close()

- `ctx.r`: redis-py (RESP3, decode_responses) whose `q(*args)` sends `QUOTA.X key
  args` as the backend takes it (tests/backend.py's lua_command).
- The quota clock is the test clock (module TEST_CLOCK yes; quota-load
  --test-clock), set to T0 at start: events carry quota-clock times, so
  idempotency keys are the same on every run. The companion's own due times
  are wall-clock ms (brief: "unix ms, wall clock").
- Never sleep to see what happens: `wait_for(condition, what)` polls up to
  10 s and fails naming what did not happen (with the end of the companion's
  output).
- Expectations are `check(ok, what)` from tests/backend.py: run.py counts the
  failures each test adds.
- Every Ctx has a sentinel tree (`_ready`) with events from before any
  companion: `ctx.companion()` returns once the companion holds the lease and
  has moved the sentinel's cursor (it has read the logs once, so what fires
  next is news to it). Receivers and mailboxes leave the sentinel's
  deliveries out.
- `ctx.caught_up(*trees)`: every tree's cursor is at its newest event and the
  queue is empty, so whatever the companion will deliver, it has: the point
  to check that nothing more (nothing twice) arrived.

Binaries: target/release/quota-dash, libquota.so and quota-load, or
QUOTA_DASH_BIN, QUOTA_MODULE and QUOTA_LOAD (another checkout's build).
The companion runs with QUOTA_ALERTS_LEASE_MS=1000 and QUOTA_ALERTS_TICK_MS=50
unless a test gives others.
"""

import atexit
import email
import email.policy
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
ROOT = os.path.dirname(TESTS)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

import redis  # noqa: E402

from backend import as_map, check, free_port, lua_command, start_quota_server  # noqa: E402,F401
from backend import stop_process as _stop, tail as _tail  # noqa: E402

RELEASE = os.path.join(ROOT, "target", "release")
DASH = os.environ.get("QUOTA_DASH_BIN") or os.path.join(RELEASE, "quota-dash")
MODULE = os.environ.get("QUOTA_MODULE") or os.path.join(RELEASE, "libquota.so")
LOADER = os.environ.get("QUOTA_LOAD") or os.path.join(RELEASE, "quota-load")
REDIS_SERVER = os.environ.get("QUOTA_REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"

# 2026-03-14 09:30:00 UTC, as tests/dash/harness.py.
T0 = 1773480600000
START_TIMEOUT = 15
WAIT = 10  # seconds wait_for polls by default

# The companion's keys (brief: "Redis keys").
CONFIG = "quota:alerts:config"
LEADER = "quota:alerts:leader"
CURSORS = "quota:alerts:cursors"
QUEUE = "quota:alerts:queue"
JOBS = "quota:alerts:jobs"
DEAD = "quota:alerts:dead"
SENT = "quota:alerts:sent"
STATUS = "quota:alerts:status"

COMPANION_ENV = {"QUOTA_ALERTS_LEASE_MS": "1000", "QUOTA_ALERTS_TICK_MS": "50"}

# A tree with events from before any companion started. When the companion
# has moved its cursor, it has read the logs once (its first pass: whatever
# it does with a log's past on a first start, skip it or deliver it, it has
# done): events fired after that are new for it. Receivers and mailboxes
# leave its deliveries out of what they report.
SENTINEL = "_ready"


class HarnessError(Exception):
    """A server, a peer or the companion could not be started."""


class WaitTimeout(AssertionError):
    """wait_for's condition did not hold in time."""


# The context of the test running now: wait_for adds its companions' output
# to a timeout's message.
_CURRENT = None


def wait_for(condition, what, timeout=WAIT, interval=0.02):
    """Polls `condition()` until it returns something true (returned), up to
    `timeout` seconds; then fails with `what`, the condition's last value and
    the end of the companions' output. Exceptions from the condition (a Redis
    error, a key not there yet) count as not yet."""
    deadline = time.monotonic() + timeout
    last, error = None, None
    while True:
        try:
            last = condition()
            error = None
            if last:
                return last
        except (redis.RedisError, KeyError, ValueError, TypeError, IndexError) as e:
            error = e
        if time.monotonic() > deadline:
            detail = f"last value {last!r}" if error is None else f"last error {error!r}"
            tail = _CURRENT.outputs(15) if _CURRENT is not None else ""
            raise WaitTimeout(f"not within {timeout} s: {what} ({detail}){tail}")
        time.sleep(interval)


def key_of(tree, event):
    """The idempotency key of an event (brief): <tree>#<seq>@<time>."""
    return f"{tree}#{int(event['seq'])}@{int(event['time'])}"


def _decode_event(e):
    if isinstance(e, (bytes, str)):
        return json.loads(e)
    return as_map(e) if not isinstance(e, dict) else e


# ----- redis-server with quota ---------------------------------------------------------


_DEBUG_ARGS = None


def _debug_args():
    """Redis 7 refuses DEBUG unless enable-debug-command allows it: `local`
    (loopback connections only) so a test can DEBUG POPULATE; nothing on
    older servers, which allow DEBUG and do not know the option."""
    global _DEBUG_ARGS
    if _DEBUG_ARGS is None:
        _DEBUG_ARGS = []
        try:
            out = subprocess.run([REDIS_SERVER, "--version"], capture_output=True, text=True, timeout=10).stdout
            m = re.search(r"v=(\d+)\.", out)
            if m and int(m.group(1)) >= 7:
                _DEBUG_ARGS = ["--enable-debug-command", "local"]
        except (OSError, subprocess.SubprocessError):
            pass
    return list(_DEBUG_ARGS)


class Ctx:
    """One test's world: a redis-server with quota, and whatever the test
    starts beside it (receivers, mailboxes, companions), stopped by close()."""

    def __init__(self, backend="module"):
        global _CURRENT
        if backend not in ("module", "lua"):
            raise ValueError(f"backend is module or lua, not {backend!r}")
        self.backend = backend
        self.dir = tempfile.mkdtemp(prefix="quota-alerts-test-")
        self.redis_proc = None
        self.r = None
        self.peers = []
        self.companions = []
        self._closed = False
        _CURRENT = self
        atexit.register(self.close)  # an interrupted run stops what it started too
        try:
            self._start_redis()
        except BaseException:
            self.close()
            raise

    # redis-server and quota

    @property
    def redis_url(self):
        return f"redis://127.0.0.1:{self.redis_port}"

    def _start_redis(self, port=None, sentinel=True):
        self.redis_proc, self.redis_port, self.redis_log, self.r = start_quota_server(
            self.backend, os.path.join(self.dir, "redis"), MODULE, LOADER, server=REDIS_SERVER, port=port,
            args=_debug_args(), timeout=START_TIMEOUT, error=HarnessError)
        self.clock_set(T0)
        if not sentinel:
            return
        # LIMIT 0 fires warning 80, warning 90 and over at once.
        self.r.q("QUOTA.SET", SENTINEL, "/", "sentinel", "METRIC", "credits", "LIMIT", "0")
        if not self.events(SENTINEL):
            raise HarnessError(f"the sentinel tree {SENTINEL} has no events")

    def restart_redis(self):
        """Redis restarts empty (no persistence) on the same port: the server
        is stopped, a fresh one started with quota loaded (the module, or the
        Lua library by quota-load) and the test clock at T0, with no data at
        all (no sentinel tree, no config, none of the companion's keys).
        Companions keep running and have to find their way back."""
        port = self.redis_port
        old = self.r
        _stop(self.redis_proc)
        try:
            old.close()
        except Exception:
            pass
        self._start_redis(port=port, sentinel=False)

    def clock_set(self, ms):
        return self.r.q("QUOTA.DEBUG", "CLOCK", "SET", int(ms))

    def clock_advance(self, ms):
        return self.r.q("QUOTA.DEBUG", "CLOCK", "ADVANCE", int(ms))

    # quota: what fires events

    def budget(self, tree, limit=100, path="/", policy="monthly", *more):
        """A policy without a window: WARN 80,90 by default, re-armed by RESET."""
        return self.r.q("QUOTA.SET", tree, path, policy, "METRIC", "credits", "LIMIT", limit, *more)

    def charge(self, tree, amount, path="/"):
        reply = as_map(self.r.q("QUOTA.CHARGE", tree, "PATH", path, "BRIEF", "COST", "credits", amount))
        return reply

    def reset(self, tree, path="/", policy="monthly"):
        return self.r.q("QUOTA.RESET", tree, path, policy)

    def cycle(self, tree, path="/", policy="monthly"):
        """On a LIMIT 100 budget at 0: charge 100 (warning 80, warning 90, over),
        then RESET (reset): four events."""
        self.charge(tree, 100, path)
        self.reset(tree, path, policy)

    def events(self, tree, since=0):
        """The tree's log after `since`, each event a dict with `tree` added."""
        out = []
        while True:
            batch = self.r.q("QUOTA.EVENTS", tree, "SINCE", since, "COUNT", 10000)
            batch = [_decode_event(e) for e in batch]
            for e in batch:
                e = dict(e)
                e["tree"] = tree
                out.append(e)
            if len(batch) < 10000:
                return out
            since = int(batch[-1]["seq"])

    def q_many(self, commands):
        """Many `QUOTA.X key args` (each a list or tuple) in one pipeline (no
        MULTI), as the backend takes them: their replies, in order."""
        pipe = self.r.pipeline(transaction=False)
        for args in commands:
            args = [a if isinstance(a, bytes) else str(a) for a in args]
            pipe.execute_command(*(lua_command(args) if self.backend == "lua" else args))
        return pipe.execute()

    def history(self, prefix, n, charge=100):
        """n trees `<prefix>0000` … each with a LIMIT 100 budget charged
        `charge` (100: warning 80, warning 90, over, 3 events; 85: warning 80
        alone), in a few pipelines: the trees' names."""
        trees = [f"{prefix}{i:04d}" for i in range(n)]
        for at in range(0, n, 500):
            cmds = []
            for t in trees[at:at + 500]:
                cmds.append(("QUOTA.SET", t, "/", "monthly", "METRIC", "credits", "LIMIT", 100))
                cmds.append(("QUOTA.CHARGE", t, "PATH", "/", "BRIEF", "COST", "credits", charge))
            self.q_many(cmds)
        return trees

    def subscribers(self):
        """How many connections hold a pattern subscription (the leader's
        listener on quota:events:*, once it has subscribed)."""
        return sum(1 for c in self.r.client_list() if int(c.get("psub", 0) or 0) > 0)

    def keys_of(self, tree, since=0, where=None):
        """The idempotency keys of the tree's events (those `where(event)` keeps)."""
        return [key_of(tree, e) for e in self.events(tree, since) if where is None or where(e)]

    # the companion's keys

    def status(self):
        return self.r.hgetall(STATUS)

    def cursors(self):
        return self.r.hgetall(CURSORS)

    def job(self, job_id):
        raw = self.r.hget(JOBS, job_id)
        return None if raw is None else json.loads(raw)

    def dead(self):
        return self.r.zrange(DEAD, 0, -1)

    def queued(self):
        return self.r.zrange(QUEUE, 0, -1)

    def sent(self):
        return [json.loads(x) for x in self.r.lrange(SENT, 0, -1)]

    def set_config(self, config):
        self.r.set(CONFIG, config if isinstance(config, str) else json.dumps(config))

    def config_file(self, config, name="alerts.json"):
        """Writes `config` (a dict, or text as it is) to a file of the test's dir; its path."""
        path = os.path.join(self.dir, name)
        text = config if isinstance(config, str) else json.dumps(config, indent=2)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
        return path

    def caught_up(self, *trees):
        """Every tree's cursor is at its newest event and nothing is queued:
        all that the companion will deliver, it has (a condition for wait_for)."""
        cursors = self.cursors()
        for tree in trees:
            evs = self.events(tree)
            if not evs:
                continue
            last = evs[-1]
            if cursors.get(tree) != f"{int(last['seq'])}:{int(last['time'])}":
                return False
        return not self.queued()

    def wait_caught_up(self, *trees, timeout=WAIT):
        wait_for(lambda: self.caught_up(*trees), f"the companion handles every event of {', '.join(trees)} "
                 f"(cursors {{tree: '<seq>:<time>'}} at the newest event) and its queue is empty", timeout)

    # peers and companions

    def receiver(self):
        rec = Receiver()
        self.peers.append(rec)
        return rec

    def mailbox(self, auth=None):
        """An SMTP server; with auth=(login, password) it requires AUTH (without TLS)."""
        box = Mailbox(auth)
        self.peers.append(box)
        return box

    def companion(self, args=(), env=None, wait=True, config=None, url=None):
        """Starts `quota-dash alerts --redis URL` (with --backend lua on the Lua
        library), with COMPANION_ENV and `env`; `config` is a --config FILE,
        `url` another --redis URL (an ACL account's).
        With `wait`, returns once it holds the lease and has read the logs
        once (wait_leading)."""
        comp = Companion(self, list(args), env, config, url)
        self.companions.append(comp)
        if wait:
            comp.wait_leading()
        return comp

    def outputs(self, lines=15):
        text = ""
        for i, c in enumerate(self.companions):
            text += f"\n--- companion {i} ({c.state()}), last lines:\n{c.output(lines)}"
        return text

    def close(self):
        global _CURRENT
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        for c in self.companions:
            c.stop()
        for p in self.peers:
            try:
                p.close()
            except Exception:
                pass
        if self.r is not None:
            try:
                self.r.close()
            except Exception:
                pass
        _stop(self.redis_proc)
        shutil.rmtree(self.dir, ignore_errors=True)
        if _CURRENT is self:
            _CURRENT = None


class Companion:
    """One `quota-dash alerts` process; its stdout and stderr go to a log file."""

    def __init__(self, ctx, args, env, config, url=None):
        if not os.path.exists(DASH):
            raise HarnessError(f"{DASH} is missing: make build")
        self.ctx = ctx
        self.index = len(ctx.companions)
        self.log = os.path.join(ctx.dir, f"companion-{self.index}.log")
        cmd = [DASH, "alerts", "--redis", url or ctx.redis_url]
        if ctx.backend == "lua" and "--backend" not in args and not any(a.startswith("--backend=") for a in args):
            cmd += ["--backend", "lua"]
        if config is not None:
            cmd += ["--config", config]
        cmd += args
        full = dict(os.environ)
        full.update(COMPANION_ENV)
        full.update(env or {})
        self.cmd = cmd
        with open(self.log, "ab") as log:
            log.write(f"--- {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         env=full, start_new_session=True)

    def state(self):
        code = self.proc.poll()
        return "running" if code is None else f"exited with {code}"

    def alive(self):
        return self.proc.poll() is None

    def output(self, lines=10**6):
        return _tail(self.log, lines)

    def instance(self):
        """Its instance id, as its first line of output says it ("instance ID,"), or None."""
        m = re.search(r"\binstance (\S+?),", self.output(50))
        return m.group(1) if m else None

    def wait_leading(self, timeout=WAIT):
        """Until this process holds the lease (quota:alerts:leader is its
        instance id, or, when its output does not say its id, the id of no
        companion stopped before), the status hash says initialized and names
        the leader as its instance, and the sentinel tree has a cursor (the
        logs were read once)."""
        gone = {c.instance() for c in self.ctx.companions if c is not self and not c.alive()} - {None}

        def ready():
            if not self.alive():
                raise WaitTimeout(f"the companion exited ({self.state()}):\n{self.output(20)}")
            leader = self.ctx.r.get(LEADER)
            mine = self.instance()
            if not leader or (leader != mine if mine else leader in gone):
                return False
            st = self.ctx.status()
            return (st.get("initialized") not in (None, "", "0") and st.get("instance") == leader
                    and self.ctx.r.hexists(CURSORS, SENTINEL))

        wait_for(ready, "the companion takes the lease (quota:alerts:leader), sets status initialized and "
                 f"instance, and reads the logs once (a cursor for {SENTINEL})", timeout)
        return self

    def wait_lease(self, timeout=WAIT):
        """Until this process holds the lease (quota:alerts:leader is its
        instance id) and a listener is subscribed to the events' channels;
        unlike wait_leading, not until the first sweep ends (on a first start,
        `initialized` is written only then)."""
        def ready():
            if not self.alive():
                raise WaitTimeout(f"the companion exited ({self.state()}):\n{self.output(20)}")
            mine = self.instance()
            return mine is not None and self.ctx.r.get(LEADER) == mine and self.ctx.subscribers() >= 1

        wait_for(ready, "the companion takes the lease (quota:alerts:leader is its instance) and subscribes "
                 "to quota:events:*", timeout)
        return self

    def kill9(self):
        """SIGKILL, as a crash: nothing of it runs after this returns."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self):
        """SIGTERM (a clean stop), SIGKILL after 5 s. Returns the exit code."""
        _stop(self.proc)
        return self.proc.returncode


# ----- an HTTP receiver ---------------------------------------------------------------


class Request:
    def __init__(self, path, headers, body):
        self.at = time.monotonic()
        self.wall_ms = int(time.time() * 1000)
        self.path = path
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body = body
        self.status = None  # what the receiver answered; None while held or when it could not
        try:
            self.json = json.loads(body)
        except ValueError:
            self.json = None

    @property
    def key(self):
        return self.headers.get("idempotency-key")

    def __repr__(self):
        return f"<{self.path} {self.key} attempt {self.headers.get('quota-attempt')} -> {self.status}>"


class Receiver:
    """A webhook receiver: ThreadingHTTPServer on a free port, in a thread.

    Every POST is recorded (a Request). What it answers, per path:
    `plan(path, [500, 500])` answers the next requests in order (an int is a
    status; (503, {"Retry-After": "1"}) adds headers; ("hold",) holds the
    request until release(); ("delay", seconds) answers 200 that much later),
    then 200; `always(path, status)` answers that every time until changed."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []
        self.plans = {}
        self.fixed = {}
        self.held = threading.Event()
        self.release_all = threading.Event()
        self.hold_all = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                req = Request(self.path, self.headers, body)
                with receiver.lock:
                    receiver.requests.append(req)
                    action = receiver._next(self.path)
                status, headers = 200, {}
                if action[0] == "hold":
                    receiver.held.set()
                    receiver.release_all.wait(60)
                elif action[0] == "delay":
                    receiver.release_all.wait(action[1])
                elif action[0] == "status":
                    status, headers = action[1], action[2]
                payload = b"" if status == 204 else b'{"ok":true}' if status < 300 else b'{"error":"test"}'
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    if status != 204:
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    self.wfile.flush()
                    req.status = status
                except OSError:
                    req.status = None  # the companion is gone

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _next(self, path):
        if self.hold_all:
            return ("hold",)
        plan = self.plans.get(path)
        if plan:
            step = plan.pop(0)
        elif path in self.fixed:
            step = self.fixed[path]
        else:
            step = 200
        if isinstance(step, tuple) and step[0] in ("hold", "delay"):
            return step
        if isinstance(step, tuple):
            return ("status", step[0], dict(step[1]))
        return ("status", step, {})

    def url(self, path="/hook"):
        return f"http://127.0.0.1:{self.port}{path}"

    def plan(self, path, steps):
        with self.lock:
            self.plans[path] = list(steps)

    def always(self, path, status):
        with self.lock:
            if status is None:
                self.fixed.pop(path, None)
            else:
                self.fixed[path] = status

    def hold(self, on=True):
        """From now on every request is held (not answered) until release()."""
        with self.lock:
            self.hold_all = on
            if on:
                self.release_all.clear()
                self.held.clear()

    def release(self):
        """Held requests are answered 200 (or find their connection gone)."""
        with self.lock:
            self.hold_all = False
        self.release_all.set()

    def got(self, path=None):
        """Requests received (at `path`), the sentinel tree's left out."""
        with self.lock:
            return [r for r in self.requests if (path is None or r.path == path)
                    and not (r.key or "").startswith(SENTINEL + "#")]

    def keys(self, path=None, delivered=False):
        """Idempotency keys received (with `delivered`, only those answered 2xx), in order."""
        return [r.key for r in self.got(path) if not delivered or (r.status is not None and r.status < 300)]

    def delivered(self, path=None):
        """Requests answered 2xx (at `path`)."""
        return [r for r in self.got(path) if r.status is not None and r.status < 300]

    def close(self):
        self.release_all.set()
        self.server.shutdown()
        self.server.server_close()


def verify_signature(header, body, secret, now_s=None, skew=300):
    """`Quota-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`:
    (ok, why)."""
    if not header:
        return False, "no Quota-Signature header"
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    if "t" not in parts or "v1" not in parts:
        return False, f"not t=..,v1=..: {header!r}"
    try:
        t = int(parts["t"])
    except ValueError:
        return False, f"t is not unix seconds: {header!r}"
    now_s = int(time.time()) if now_s is None else now_s
    if abs(now_s - t) > skew:
        return False, f"t={t} is not now ({now_s})"
    want = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, parts["v1"]):
        return False, f"v1 {parts['v1']} is not HMAC-SHA256(secret, t.body) {want}"
    return True, ""


# ----- an SMTP server -----------------------------------------------------------------


class Mail:
    def __init__(self, envelope):
        self.mail_from = envelope.mail_from
        self.rcpt_tos = list(envelope.rcpt_tos)
        raw = envelope.original_content or envelope.content
        self.raw = raw if isinstance(raw, bytes) else raw.encode()
        self.msg = email.message_from_bytes(self.raw, policy=email.policy.default)

    def __getitem__(self, name):
        value = self.msg[name]
        return None if value is None else str(value)

    @property
    def subject(self):
        return self["Subject"]

    @property
    def message_id(self):
        return self["Message-ID"]

    @property
    def text(self):
        part = self.msg.get_body(preferencelist=("plain",))
        return part.get_content() if part is not None else ""

    def __repr__(self):
        return f"<mail to {self.rcpt_tos} {self.subject!r}>"


class Mailbox:
    """A real SMTP server (aiosmtpd's Controller) on a free port. Mails it
    accepts go to `mails`; `refuse(n)` answers the next n DATA with 451
    (a temporary failure: the companion should retry). With auth=(login,
    password) it requires AUTH; every attempt is in `logins`."""

    def __init__(self, auth=None):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        box = self
        self.logins = []
        self.lock = threading.Lock()
        self.mails = []
        self.refused = []
        self._refuse = 0
        self._refuse_with = ""

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                with box.lock:
                    if box._refuse > 0:
                        box._refuse -= 1
                        box.refused.append(Mail(envelope))
                        return box._refuse_with
                    box.mails.append(Mail(envelope))
                return "250 2.0.0 OK"

        def authenticator(server, session, envelope, mechanism, data):
            login = data.login.decode() if isinstance(data.login, bytes) else data.login
            password = data.password.decode() if isinstance(data.password, bytes) else data.password
            with box.lock:
                box.logins.append((mechanism, login, password))
            return AuthResult(success=(login, password) == tuple(auth))

        more = {}
        if auth is not None:
            # AUTH without TLS: loopback only, and the test's own password
            more = {"authenticator": authenticator, "auth_required": True, "auth_require_tls": False}
        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, ready_timeout=10, **more)
        self.controller.start()

    def refuse(self, n, reply="451 4.3.0 try again later (test)"):
        """The next n DATA are answered `reply` (451: try again; 550: refused for good)."""
        with self.lock:
            self._refuse = n
            self._refuse_with = reply

    def got(self):
        """Mails accepted, the sentinel tree's left out."""
        with self.lock:
            return [m for m in self.mails if f" {SENTINEL} " not in (m.subject or "")]

    def smtp_config(self, **more):
        cfg = {"host": "127.0.0.1", "port": self.port, "tls": "none", "from": "quota <alerts@example.com>"}
        cfg.update(more)
        return cfg

    def close(self):
        self.controller.stop()


# ----- configs ------------------------------------------------------------------------


def webhook(url, secret_env=None, attempts=3, backoff_ms=50, max_backoff_ms=1000, timeout_ms=2000, **more):
    dest = {"webhook": url, "attempts": attempts, "backoff_ms": backoff_ms, "max_backoff_ms": max_backoff_ms,
            "timeout_ms": timeout_ms}
    if secret_env:
        dest["secret_env"] = secret_env
    dest.update(more)
    return dest


def mail_to(addresses, attempts=3, backoff_ms=50, max_backoff_ms=1000, **more):
    dest = {"email": list(addresses), "attempts": attempts, "backoff_ms": backoff_ms,
            "max_backoff_ms": max_backoff_ms}
    dest.update(more)
    return dest


def rule(name, to, **more):
    r = {"name": name, "to": list(to) if isinstance(to, (list, tuple)) else [to]}
    r.update(more)
    return r


def config(destinations, rules, smtp=None):
    cfg = {"destinations": destinations, "rules": rules}
    if smtp is not None:
        cfg["smtp"] = smtp
    return cfg


def counts(keys):
    out = {}
    for k in keys:
        out[k] = out.get(k, 0) + 1
    return out
