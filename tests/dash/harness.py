"""The dashboard under test: a redis-server with quota (the module, or the Lua
library), target/release/quota-dash against it, and a headless Chromium
driven by Playwright, all on free loopback ports, all stopped at the end.

    with Dash("module") as dash:            # or Dash("lua")
        dash.r.q("QUOTA.SET", "acme", "/", "monthly", "METRIC", "credits", "LIMIT", "100")
        page = dash.page()
        page.goto(dash.url("/trees/acme"))
        expect(page.locator(".status-healthy")).to_be_visible()
        dash.shot(page, "tree")              # docs/screenshots/tree.png with SCREENSHOTS=1

- `dash.r`: redis-py (RESP3, decode_responses) whose `q(*args)` sends
  `QUOTA.X key args` as the backend takes it (tests/backend.py's lua_command),
  so a test is written once for both backends.
- The quota clock is the test clock (module TEST_CLOCK yes; quota-load
  --test-clock), set to T0 at start: `dash.clock_advance(ms)`, `dash.now_ms()`.
  Never sleep to let time pass.
- `dash.page()`: a new page (default timeout 10 s) in the current test's
  browser context (tests/dash/run.py gives each test a fresh context, so
  cookies do not leak from one test to the next).
- Browser console errors and uncaught page errors are collected in
  `dash.js_errors`; run.py fails a test that leaves any. An HTTP 4xx answer
  (a refused form posted by fetch, a 401) is not a JS error: it goes to
  `dash.http_errors`. `dash.ignore_errors("text")` ignores the current test's
  errors containing that text (a test that restarts the dash on purpose).
- `dash.restart_dash(args, env)`: the dash again, with other options, on the
  same port. `dash.run_dash(args)`: a dash that should refuse to start (its
  exit code and output).

The quota-dash binary is target/release/quota-dash, or QUOTA_DASH_BIN (to try
the harness itself against a stand-in). Chromium is Debian's (apt package
`chromium`, make deps installs it), or CHROMIUM=path; Playwright never
downloads a browser of its own here.
"""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(TESTS)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

from backend import free_port, start_quota_server, stop_process as _stop, tail as _tail  # noqa: E402,F401

MODULE = os.path.join(ROOT, "target", "release", "libquota.so")
LOADER = os.path.join(ROOT, "target", "release", "quota-load")
DASH = os.environ.get("QUOTA_DASH_BIN") or os.path.join(ROOT, "target", "release", "quota-dash")
SCREENSHOTS = os.path.join(ROOT, "docs", "screenshots")
# Where run.py leaves a failing test's screenshot: it must outlive the temp dir.
FAILURES = os.path.join(ROOT, "target", "dash-failures")

# 2026-03-14 09:30:00 UTC: every run starts at the same time, so pages and
# screenshots do not depend on the day the tests run.
T0 = 1773480600000

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

START_TIMEOUT = 15  # seconds for redis-server or quota-dash to answer


def chromium_path():
    """Debian's Chromium: CHROMIUM, else `chromium` on PATH, else /usr/bin/chromium."""
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


# No proxy from the environment: everything here is on loopback.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)


class DashError(Exception):
    """The servers or the browser could not be started."""


class Dash:
    def __init__(self, backend="module", dash_args=(), env=None, browser=True):
        if backend not in ("module", "lua"):
            raise ValueError(f"backend is module or lua, not {backend!r}")
        self.backend = backend
        self.dash_args = list(dash_args)
        self.env = dict(env or {})
        self.dir = tempfile.mkdtemp(prefix="quota-dash-test-")
        self.redis_proc = None
        self.dash_proc = None
        self.dash_log = os.path.join(self.dir, "dash.log")
        self.r = None
        self._pw = None
        self.browser = None
        self.context = None
        self.last_page = None
        self.js_errors = []
        self.http_errors = []
        self._ignored = []
        self._closed = False
        atexit.register(self.close)
        try:
            self._start_redis()
            self.port = free_port()
            self.listen = f"127.0.0.1:{self.port}"
            self._start_dash()
            if browser:
                self._start_browser()
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # ----- redis-server and quota -------------------------------------------------

    @property
    def redis_url(self):
        return f"redis://127.0.0.1:{self.redis_port}"

    def _start_redis(self):
        self.redis_proc, self.redis_port, self.redis_log, self.r = start_quota_server(
            self.backend, os.path.join(self.dir, "redis"), MODULE, LOADER, timeout=START_TIMEOUT, error=DashError)
        self.clock_set(T0)

    def clock_set(self, ms):
        self.r.q("QUOTA.DEBUG", "CLOCK", "SET", int(ms))

    def clock_advance(self, ms):
        """Moves the quota clock (no sleeping); returns the new time."""
        return self.r.q("QUOTA.DEBUG", "CLOCK", "ADVANCE", int(ms))

    def now_ms(self):
        return int(self.r.q("QUOTA.DEBUG", "CLOCK", "GET"))

    def sweep(self):
        """Holds due now expire: the module's timer does it on its own (poll the
        page or Redis for it); the Lua library needs one `quota-load --sweep`."""
        if self.backend == "lua":
            res = subprocess.run([LOADER, "--sweep", "--once", self.redis_url], capture_output=True, text=True,
                                 timeout=60)
            if res.returncode != 0:
                raise DashError(f"quota-load --sweep failed: {res.stdout}{res.stderr}")

    # ----- quota-dash -------------------------------------------------------------

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"

    def _dash_command(self, args, listen):
        return [DASH, "--redis", self.redis_url, "--listen", listen] + list(args)

    def _dash_env(self, env):
        full = dict(os.environ)
        full.pop("QUOTA_DASH_TOKEN", None)  # only what the test gives
        full.setdefault("RUST_BACKTRACE", "1")
        full.update(env)
        return full

    def _start_dash(self):
        if not os.path.exists(DASH):
            raise DashError(f"{DASH} is missing: make build")
        with open(self.dash_log, "ab") as log:
            log.write(f"--- {' '.join(self._dash_command(self.dash_args, self.listen))}\n".encode())
            log.flush()
            self.dash_proc = subprocess.Popen(
                self._dash_command(self.dash_args, self.listen), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, env=self._dash_env(self.env), start_new_session=True)
        self.wait_dash()

    def wait_dash(self):
        """Polls GET / until the dash answers (any HTTP status: a 401 of token
        mode is an answer), up to START_TIMEOUT seconds."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.dash_proc.poll() is not None:
                raise DashError(f"quota-dash exited with {self.dash_proc.returncode}:\n{_tail(self.dash_log)}")
            try:
                with _OPENER.open(self.url("/"), timeout=2):
                    return
            except urllib.error.HTTPError:
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                raise DashError(f"quota-dash did not answer on {self.url('/')}:\n{_tail(self.dash_log)}")
            time.sleep(0.02)

    def restart_dash(self, args=None, env=None, host="127.0.0.1"):
        """Stops the dash and starts it again on the same port, with `args`
        and `env` instead of the current ones (None keeps them), listening
        on `host` (0.0.0.0: beyond loopback; dash.url() still goes to
        127.0.0.1)."""
        _stop(self.dash_proc)
        if args is not None:
            self.dash_args = list(args)
        if env is not None:
            self.env = dict(env)
        self.listen = f"{host}:{self.port}"
        self._start_dash()

    def run_dash(self, args, env=None, host="127.0.0.1", timeout=10):
        """Another quota-dash, on a free port of `host`, that should refuse to
        start: returns (exit code, stdout + stderr). One still running after
        `timeout` seconds is stopped and reported with exit code None."""
        proc = subprocess.Popen(
            self._dash_command(args, f"{host}:{free_port()}"), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self._dash_env(env or {}),
            start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
            return proc.returncode, out.decode("utf-8", "replace")
        except subprocess.TimeoutExpired:
            _stop(proc)
            out, _ = proc.communicate()
            return None, out.decode("utf-8", "replace")

    def http(self, path, method="GET", headers=None, data=None):
        """One request to the dash outside the browser, redirects not followed:
        (status, headers with lower-case names, body text)."""
        if isinstance(data, str):
            data = data.encode()
        req = urllib.request.Request(self.url(path), data=data, method=method, headers=headers or {})
        try:
            with _OPENER.open(req, timeout=10) as res:
                status, head, body = res.status, res.headers, res.read()
        except urllib.error.HTTPError as e:
            status, head, body = e.code, e.headers, e.read()
        return status, {k.lower(): v for k, v in head.items()}, body.decode("utf-8", "replace")

    def dash_output(self):
        """What quota-dash printed so far (all its runs)."""
        return _tail(self.dash_log, 10**6)

    # ----- the browser ------------------------------------------------------------

    def _start_browser(self):
        from playwright.sync_api import expect, sync_playwright

        # expect() waits as long as a page's own steps do (its default is 5 s):
        # two cores shared by many processes are slow at times.
        expect.set_options(timeout=10_000)

        exe = chromium_path()
        if not os.access(exe, os.X_OK):
            raise DashError(f"no Chromium at {exe}: make deps installs Debian's chromium")
        # Playwright keeps the browser's profile (its user data dir) in the
        # driver's temp dir: ours, removed at the end, fresh for each Dash.
        profile = os.path.join(self.dir, "browser")
        os.makedirs(profile)
        saved = {k: os.environ.get(k) for k in ("TMPDIR", "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD")}
        os.environ["TMPDIR"] = profile
        os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
        try:
            self._pw = sync_playwright().start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.browser = self._pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True,
                                                handle_sigint=False, handle_sigterm=False, handle_sighup=False)

    def new_context(self):
        """A fresh browser context (no cookies, no storage) for what follows;
        the previous one is closed. run.py calls it before each test."""
        self.close_context()
        self.context = self.browser.new_context(viewport={"width": 1280, "height": 800},
                                                locale="en-US", timezone_id="UTC")
        self.context.set_default_timeout(10_000)
        self.context.set_default_navigation_timeout(10_000)
        return self.context

    def close_context(self):
        if self.context is not None:
            try:
                self.context.close()
            except Exception:
                pass
            self.context = None
            self.last_page = None

    def begin_test(self):
        """Before each test (run.py): a fresh context, no errors collected."""
        self.new_context()
        self.js_errors = []
        self.http_errors = []
        self._ignored = []

    def page(self):
        """A new page (default timeout 10 s) whose console errors and page
        errors are collected in js_errors."""
        if self.browser is None:
            raise DashError("this Dash was started without a browser")
        if self.context is None:
            self.new_context()
        page = self.context.new_page()
        page.set_default_timeout(10_000)
        page.on("console", lambda msg: msg.type == "error" and self._console_error(page, msg.text))
        page.on("pageerror", lambda err: self._error(f"{page.url}: uncaught {err}"))
        self.last_page = page
        return page

    def _console_error(self, page, text):
        # "Failed to load resource: the server responded with a status of 422 (...)"
        if "the server responded with a status of 4" in text:
            self.http_errors.append(f"{page.url}: {text}")
        else:
            self._error(f"{page.url}: console: {text}")

    def _error(self, what):
        if not any(s in what for s in self._ignored):
            self.js_errors.append(what)

    def ignore_errors(self, *substrings):
        """This test's console and page errors containing one of these are
        not failures (e.g. the EventSource of a dash restarted on purpose)."""
        self._ignored.extend(substrings)
        self.js_errors = [e for e in self.js_errors if not any(s in e for s in substrings)]

    def shot(self, page, name):
        """A full-page screenshot: docs/screenshots/<name>.png when
        SCREENSHOTS=1 (the README's images), else in the temp dir. Returns
        its path."""
        folder = SCREENSHOTS if os.environ.get("SCREENSHOTS") == "1" else os.path.join(self.dir, "shots")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{name}.png")
        page.screenshot(path=path, full_page=True, animations="disabled")
        return path

    def failure_shot(self, name):
        """The last page as it is now, kept in target/dash-failures (run.py,
        on a failure). None when there is no page or it cannot be taken."""
        if self.last_page is None or self.last_page.is_closed():
            return None
        os.makedirs(FAILURES, exist_ok=True)
        path = os.path.join(FAILURES, f"{name}.png")
        try:
            self.last_page.screenshot(path=path, full_page=True, timeout=5_000)
        except Exception:
            return None
        return path

    # ----- the end ----------------------------------------------------------------

    def close(self):
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        self.close_context()
        for step in (lambda: self.browser and self.browser.close(), lambda: self._pw and self._pw.stop()):
            try:
                step()
            except Exception:
                pass
        self.browser = self._pw = None
        _stop(self.dash_proc)
        if self.r is not None:
            try:
                self.r.close()
            except Exception:
                pass
        _stop(self.redis_proc)
        shutil.rmtree(self.dir, ignore_errors=True)
