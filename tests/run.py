#!/usr/bin/env python3
"""Scenario runner: redis-cli scripts with expected replies, run against
real redis-server processes that this runner starts on free ports and stops.

A scenario file (tests/scenarios/*.redis) reads like a redis-cli session:

    @server main TEST_CLOCK yes            start a server with module args
    @server main TEST_CLOCK yes -- --appendonly yes     ... and server options

    ## a reservation within every limit is allowed      a test case (a sentence)
    > QUOTA.SET acme / monthly METRIC credits LIMIT 100  a command (redis-cli -3)
    "OK"                                   the reply must equal this JSON
    > QUOTA.RESERVE acme PATH p1 COST credits 30
    ~ {"allowed": 1, "cost": {"credits": "30"}}      ... must contain this JSON
    & id = .id                             capture a field; later use $id
    = $id                                  the reply must equal a captured value
    =json $tree                            the reply is a JSON text whose value
                                           equals a captured value
    > QUOTA.SET acme / x METRIC Bad LIMIT 1
    ! ERR unknown metric                   an error starting with this text
    >@2 QUOTA.GET acme /                   the same over RESP2 (flat arrays)
    >replica QUOTA.GET acme /              a command to another server

Directives:
    @replicaof R M      make server R a replica of M and wait for the sync
    @cluster A B C      make servers (started with --cluster-enabled yes) a cluster
    @sync M             wait until every replica of M has applied M's writes
                        (each replica's slave_repl_offset reaches M's
                        master_repl_offset); fails when M has no replica
    @settle M key...    a write on each key (an EXTEND of no hold, NOTFOUND), so M
                        stores and replicates what is due now, as its timer would
                        within a tick: before comparing bytes with a replica
    @same A B cmd...    run cmd on A and B; the replies must be equal, not errors
    @restart S          stop S (SHUTDOWN, which saves as configured) and start
                        it again on the same dir and port
    @kill S             kill -9 S and start it again on the same dir and port
    @python script args run a Python script (cwd: the repository); it must exit 0.
                        $port_<server> is the port of a server, $workdir a
                        scratch folder of this scenario
    @poll               the next command is retried (up to 5 s) until its
                        expectation holds: for effects of the module's own
                        timer, never a fixed sleep
    @only module        what only the module does (its data type, INFO quota,
                        CONFIG quota.*, ...): before the first case it marks
                        the whole file, right after a case's title the case,
                        elsewhere the next command; the Lua backend skips
                        what is marked and counts skipped cases

Backends (--backend or QUOTA_BACKEND): `module` (default) loads the module
into every server; `lua` starts plain servers and loads the Functions
library with target/release/quota-load (which embeds lua/quota.lua; module
arguments become --test-clock and --set name=value; QUOTA_LIBRARY=FILE loads
FILE with --file instead, e.g. a lua/quota.lua newer than the build), and sends
`QUOTA.X key args` as `FCALL quota_x 1 key args` (`FCALL quota_x 0 args`
for the keyless PRICE, PLAN, ESTIMATE and DEBUG; PRICE and PLAN GET, LIST and
HELP go to quota_price_ro and quota_plan_ro, which replicas serve).

Containment (~) means: every key of an expected object is present with a
containing value; expected arrays match element-wise and in length. The
string "<any>" in a containment matches any one value (a stream entry's id,
which Redis takes from the wall clock, not the test clock).

What fails a case (the runner is strict so that a weak case cannot pass):
    * any expectation that does not hold, or a command whose redis-cli exits
      non-zero or prints nothing (a dead server is never a reply);
    * a capture (`& x = ...`) of an error reply, and `= $x` against an error
      reply: a baseline must be a real reply, or two equal errors would pass;
    * a capture never used (`$x`) on a later line of the file;
    * an error reply to a command that has no expectation line (write one
      when an error is expected);
    * `@same` when the replies differ or either is an error.
What fails a file:
    * a failure before its first `##` (the @server/@replicaof/@cluster setup):
      reported as the case "(setup before the first case)", and the rest of
      the file is not run;
    * a file without any `##` case.

Servers: redis-server from PATH, or the binary given with --server PATH or
QUOTA_REDIS_SERVER (a Valkey or other Redis build: `make test-compat`).

The runner prints one line per test case and ends with "N passed, M failed";
it exits non-zero when a case failed or when nothing passed.
"""

import glob
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from backend import free_port, lua_command

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE = os.environ.get("QUOTA_MODULE", os.path.join(ROOT, "target", "release", "libquota.so"))
REDIS_SERVER = os.environ.get("QUOTA_REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
LOADER = os.path.join(ROOT, "target", "release", "quota-load")
BACKEND = os.environ.get("QUOTA_BACKEND", "module")


def to_backend(argv):
    """A command as the current backend takes it."""
    return lua_command(argv) if BACKEND == "lua" else argv


class Server:
    def __init__(self, name, module_args, server_args, workdir):
        self.name = name
        self.module_args = module_args
        self.server_args = server_args
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.proc = None
        self.start()

    def start(self):
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
                "--save", "", "--appendonly", "no", "--daemonize", "no", "--enable-debug-command", "local",
                "--repl-diskless-sync-delay", "0",
                "--logfile", os.path.join(self.dir, "redis.log")]
        args += self.server_args
        if BACKEND == "module":
            args += ["--loadmodule", MODULE] + self.module_args
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server {self.name} exited at start; see {self.dir}/redis.log:\n"
                                   + self.log_tail())
            out = self.cli(["PING"], check=False)
            if out == '"PONG"':
                if BACKEND == "lua":
                    self.load_library()
                return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server {self.name} did not answer PING")

    def log_tail(self):
        try:
            with open(os.path.join(self.dir, "redis.log")) as f:
                return "".join(f.readlines()[-15:])
        except OSError:
            return ""

    def load_library(self):
        """The library, loaded the way users load it: quota-load, with the
        module arguments as --test-clock and --set."""
        args = [LOADER, f"redis://127.0.0.1:{self.port}", "--force"]
        if os.environ.get("QUOTA_LIBRARY"):
            # (Another lua/quota.lua than quota-load embeds, as lua_parity takes it.)
            args += ["--file", os.environ["QUOTA_LIBRARY"]]
        pairs = list(zip(self.module_args[::2], self.module_args[1::2]))
        for name, value in pairs:
            if name.lower() == "test_clock":
                args += ["--test-clock"] if value.lower() == "yes" else []
            else:
                args += ["--set", f"{name.lower()}={value}"]
        res = subprocess.run(args, capture_output=True, text=True, timeout=30)
        if res.returncode != 0:
            raise RuntimeError(f"quota-load failed on {self.name}: {res.stdout.strip()} {res.stderr.strip()}")

    def cli(self, argv, resp=3, check=True):
        """The reply as redis-cli --json prints it. With `check`, a redis-cli
        that exits non-zero (other than for an error reply) or prints nothing
        is a Failure: a dead server never passes for a reply."""
        cmd = [REDIS_CLI, "-p", str(self.port), f"-{resp}", "--json"] + to_backend(argv)
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        out = res.stdout.strip()
        if check and (not out or (res.returncode != 0 and not out.startswith("error:"))):
            raise Failure(f"redis-cli exited {res.returncode} on {self.name} with "
                          f"{out[-300:] or 'no reply'} {res.stderr.strip()[-300:]}".rstrip())
        return out

    def stop(self, hard=False):
        if self.proc is None:
            return
        if hard:
            self.proc.send_signal(signal.SIGKILL)
        else:
            self.cli(["SHUTDOWN"], check=False)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self, hard=False):
        self.stop(hard)
        self.start()


def parse_reply(text):
    """redis-cli --json output → Python value, errors as {"error": msg}."""
    if text.startswith("error:"):
        return {"error": json.loads(text[len("error:"):])}
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {"unparsed": text}


def contains(actual, expected):
    if expected == "<any>":
        return True
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and contains(actual[k], v) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and all(
            contains(a, e) for a, e in zip(actual, expected))
    return actual == expected


def pick(value, path):
    """'.a.b.0' → value['a']['b'][0]."""
    for part in [p for p in path.split(".") if p]:
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


class Failure(Exception):
    pass


def is_error(reply):
    return isinstance(reply, dict) and set(reply) == {"error"}


def unused_captures(lines):
    """(line number, name) of each capture `& name = ...` whose $name no
    later line of the file uses (comments aside)."""
    out = []
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line.startswith("&"):
            continue
        name = line[1:].partition("=")[0].strip()
        use = re.compile(r"\$" + re.escape(name) + r"(?![A-Za-z0-9_])")
        later = (x.strip() for x in lines[n:])
        if not any(use.search(x) for x in later if not (x.startswith("#") and not x.startswith("##"))):
            out.append((n, name))
    return out


def replication_info(server):
    """INFO replication of a server as a dict."""
    out = {}
    for line in server.cli(["INFO", "replication"], resp=2).replace("\\r\\n", "\n").splitlines():
        key, sep, value = line.strip().strip('"').partition(":")
        if sep:
            out[key] = value
    return out


class Scenario:
    def __init__(self, path, workdir):
        self.path = path
        self.workdir = workdir
        self.servers = {}
        self.default = None
        self.vars = {"workdir": workdir}
        self.results = []
        self.skipped = 0

    def substitute(self, text):
        for name, value in sorted(self.vars.items(), key=lambda kv: -len(kv[0])):
            text = text.replace("$" + name, str(value))
        return text

    def server(self, name):
        if name not in self.servers:
            raise Failure(f"no server named {name!r}")
        return self.servers[name]

    def run(self):
        with open(self.path) as f:
            lines = [line.rstrip("\n") for line in f]
        case, failure = None, None
        i = 0
        poll = False
        unused = unused_captures(lines)
        case_line = 0  # the line of the current case's title

        skip_case = case_started = skip_next = False

        if not any(line.strip().startswith("##") for line in lines):
            return [("(no case)", "a scenario file needs at least one ## case")]

        def close_case():
            nonlocal failure
            if case is None or skip_case:
                return
            if failure is None:
                mine = [(n, name) for n, name in unused if n > case_line and (n < i or i >= len(lines))]
                if mine:
                    failure = "; ".join(f"line {n}: ${name} is captured but never used" for n, name in mine)
            self.results.append((case, failure))

        try:
            while i < len(lines):
                line = lines[i].strip()
                i += 1
                if not line or (line.startswith("#") and not line.startswith("##")):
                    continue
                if line.startswith("##"):
                    close_case()
                    if case is None and failure is not None:
                        self.results.append(("(setup before the first case)", failure))
                        break
                    case, failure, skip_case = line[2:].strip(), None, False
                    case_line = i
                    case_started = skip_next = False
                    continue
                if line == "@only module":
                    if BACKEND != "module" and not skip_case:
                        if case is None:
                            return [("(whole file)", "SKIP")]
                        if not case_started:
                            skip_case = True
                            self.skipped += 1
                        else:
                            skip_next = True
                    continue
                if failure is not None or skip_case:
                    continue  # skip the rest of a failed or skipped case
                case_started = True
                if skip_next and line.startswith(">"):
                    skip_next, poll = False, False
                    while i < len(lines) and lines[i].strip() and lines[i].strip()[0] in '~!&={["0123456789-tfn':
                        i += 1
                    continue
                try:
                    if line.startswith("@"):
                        words = shlex.split(self.substitute(line[1:]))
                        if words[0] == "poll":
                            poll = True
                        else:
                            self.directive(words)
                        continue
                    if line.startswith(">"):
                        head, _, rest = line[1:].partition(" ")
                        name, _, resp = head.partition("@")
                        srv = self.server(name) if name else self.servers[self.default]
                        argv = shlex.split(self.substitute(rest))
                        resp = int(resp or 3)
                        expectations = []
                        while i < len(lines) and lines[i].strip() and lines[i].strip()[0] in '~!&={["0123456789-tfn':
                            expectations.append(lines[i].strip())
                            i += 1
                        if not expectations:
                            expectations = ["-no error"]
                        deadline = time.time() + (5 if poll else 0)
                        while True:
                            reply = parse_reply(srv.cli(argv, resp=resp))
                            try:
                                for exp in expectations:
                                    self.expect(reply, exp)
                                break
                            except Failure:
                                if time.time() >= deadline:
                                    raise
                                time.sleep(0.02)
                        poll = False
                        continue
                    raise Failure(f"cannot read line {i}: {line!r}")
                except Failure as e:
                    failure = f"line {i}: {e}"
                except (KeyError, IndexError, ValueError, RuntimeError, subprocess.TimeoutExpired) as e:
                    failure = f"line {i}: {type(e).__name__}: {e}"
            close_case()
        finally:
            for srv in self.servers.values():
                srv.stop(hard=True)
        return self.results

    def expect(self, reply, exp):
        kind, body = exp[0], self.substitute(exp[1:].strip())
        if exp == "-no error":  # a command without an expectation line
            if is_error(reply):
                raise Failure(f"a command without an expectation replied with an error: {json.dumps(reply)}")
        elif exp.startswith("=json "):
            name = exp[len("=json "):].strip().lstrip("$")
            if name not in self.vars:
                raise Failure(f"nothing captured as ${name}")
            try:
                parsed = json.loads(reply) if isinstance(reply, str) else None
            except json.JSONDecodeError:
                parsed = None
            if parsed is None:
                raise Failure(f"expected a JSON text, got {json.dumps(reply)}")
            if parsed != self.vars[name]:
                raise Failure(f"expected JSON text equal to the reply captured as ${name}:\n  {json.dumps(self.vars[name])}\n  got {json.dumps(parsed)}")
        elif kind == "!":
            if not (isinstance(reply, dict) and "error" in reply and reply["error"].startswith(body)):
                raise Failure(f"expected error {body!r}, got {json.dumps(reply)}")
        elif kind == "~":
            want = json.loads(body)
            if not contains(reply, want):
                raise Failure(f"expected a reply containing {json.dumps(want)}, got {json.dumps(reply)}")
        elif kind == "=":
            name = exp[1:].strip().lstrip("$")
            if name not in self.vars:
                raise Failure(f"nothing captured as ${name}")
            if is_error(reply):
                raise Failure(f"expected the reply captured as ${name}, got an error: {json.dumps(reply)}")
            if reply != self.vars[name]:
                raise Failure(f"expected the reply captured as ${name}:\n  {json.dumps(self.vars[name])}\n  got {json.dumps(reply)}")
        elif kind == "&":
            name, _, path = body.partition("=")
            if is_error(reply):
                raise Failure(f"cannot capture ${name.strip()} from an error reply: {json.dumps(reply)}")
            try:
                self.vars[name.strip()] = pick(reply, path.strip())
            except (KeyError, IndexError, TypeError, ValueError):
                raise Failure(f"cannot capture {path.strip()} from {json.dumps(reply)}")
        else:
            want = json.loads(self.substitute(exp))
            if reply != want:
                raise Failure(f"expected {json.dumps(want)}, got {json.dumps(reply)}")

    def sync(self, name):
        """Waits until every replica of `name` has applied its writes so far.
        WAIT from a fresh connection (redis-cli) waits for nothing: that
        connection wrote nothing, so any replica has its offset 0. So the
        primary's master_repl_offset is read once, and each replica's
        slave_repl_offset (what it has applied) is polled until it reaches
        it; replicas are the runner's servers at the ports the primary lists."""
        primary = self.server(name)
        info = replication_info(primary)
        target = int(info.get("master_repl_offset", "0"))
        ports = []
        for key, value in info.items():
            if key.startswith("slave") and key[5:].isdigit():
                fields = dict(part.split("=", 1) for part in value.split(",") if "=" in part)
                ports.append(int(fields.get("port", "0")))
        if int(info.get("connected_slaves", "0")) == 0 or not ports:
            raise Failure(f"@sync {name}: {name} has no replica connected")
        replicas = []
        for port in ports:
            replica = next((s for s in self.servers.values() if s.port == port and s.proc is not None), None)
            if replica is None:
                raise Failure(f"@sync {name}: a replica at port {port} is none of this scenario's servers")
            replicas.append(replica)
        deadline = time.time() + 10
        while True:
            behind = []
            for replica in replicas:
                r = replication_info(replica)
                applied = int(r.get("slave_repl_offset", "-1"))
                if r.get("master_link_status") != "up" or applied < target:
                    behind.append(f"{replica.name} at {applied} (link {r.get('master_link_status')})")
            if not behind:
                return
            if time.time() >= deadline:
                raise Failure(f"@sync {name}: replicas did not reach offset {target} in 10 s: {', '.join(behind)}")
            time.sleep(0.02)

    def directive(self, words):
        verb = words[0]
        if verb == "server":
            name = words[1]
            rest = words[2:]
            if "--" in rest:
                cut = rest.index("--")
                module_args, server_args = rest[:cut], rest[cut + 1:]
            else:
                module_args, server_args = rest, []
            self.servers[name] = Server(name, module_args, server_args, self.workdir)
            self.vars[f"port_{name}"] = self.servers[name].port
            if self.default is None:
                self.default = name
        elif verb == "replicaof":
            replica, primary = self.server(words[1]), self.server(words[2])
            replica.cli(["REPLICAOF", "127.0.0.1", str(primary.port)])
            deadline = time.time() + 10
            while time.time() < deadline:
                info = replica.cli(["INFO", "replication"], resp=2)
                if "master_link_status:up" in info and "master_sync_in_progress:0" in info:
                    return
                time.sleep(0.05)
            raise Failure(f"{words[1]} did not sync with {words[2]}")
        elif verb == "sync":
            self.sync(words[1])
        elif verb == "settle":
            # A write on each key stores what is due at the server's clock
            # (expired holds, forgotten ids) and replicates it, as the
            # module's timer would within a tick: reads show it without
            # storing it, so comparing bytes with a replica would race the
            # timer. An EXTEND of an id that does not exist changes nothing
            # else.
            server = self.server(words[1])
            for key in words[2:]:
                reply = server.cli(["QUOTA.EXTEND", key, "settle-no-such-hold", "1"])
                if "NOTFOUND" not in reply:
                    raise Failure(f"@settle {key}: expected NOTFOUND, got {reply}")
        elif verb == "same":
            a, b = self.server(words[1]), self.server(words[2])
            ra, rb = a.cli(words[3:]), b.cli(words[3:])
            if ra != rb:
                raise Failure(f"{words[1]} and {words[2]} differ on {' '.join(words[3:])}:\n  {ra}\n  {rb}")
            if ra.startswith("error:"):
                raise Failure(f"{' '.join(words[3:])} failed: {ra}")
        elif verb == "cluster":
            nodes = [self.server(n) for n in words[1:]]
            res = subprocess.run([REDIS_CLI, "--cluster", "create"] + [f"127.0.0.1:{n.port}" for n in nodes]
                                 + ["--cluster-replicas", "0", "--cluster-yes"], capture_output=True, text=True, timeout=60)
            if res.returncode != 0:
                raise Failure(f"cluster create failed: {res.stdout[-2000:]}{res.stderr[-2000:]}")
            deadline = time.time() + 20
            while time.time() < deadline:
                if all("cluster_state:ok" in n.cli(["CLUSTER", "INFO"], resp=2) for n in nodes):
                    return
                time.sleep(0.1)
            raise Failure("the cluster did not reach cluster_state:ok")
        elif verb == "python":
            res = subprocess.run([sys.executable] + words[1:], cwd=ROOT, capture_output=True, text=True, timeout=300)
            if res.returncode != 0:
                raise Failure(f"{' '.join(words[1:])} exited {res.returncode}:\n{res.stdout[-3000:]}{res.stderr[-3000:]}")
        elif verb in ("restart", "kill"):
            self.server(words[1]).restart(hard=(verb == "kill"))
        else:
            raise Failure(f"unknown directive @{verb}")


def main():
    global BACKEND
    argv = sys.argv[1:]
    global REDIS_SERVER
    while argv[:1] in (["--backend"], ["--server"]) and len(argv) >= 2:
        if argv[0] == "--backend":
            BACKEND = argv[1]
        else:
            REDIS_SERVER = os.environ["QUOTA_REDIS_SERVER"] = os.path.abspath(argv[1])
        argv = argv[2:]
    if not os.access(REDIS_SERVER, os.X_OK):
        print(f"no redis-server at {REDIS_SERVER}", file=sys.stderr)
        return 2
    if BACKEND not in ("module", "lua"):
        print(f"unknown backend {BACKEND!r}: use module or lua", file=sys.stderr)
        return 2
    files = argv or sorted(glob.glob(os.path.join(ROOT, "tests", "scenarios", "*.redis")))
    os.environ["QUOTA_BACKEND"] = BACKEND  # for the scripts @python runs
    if BACKEND == "lua" and not os.path.exists(LOADER):
        print(f"loader not found at {LOADER}; run `make build` first", file=sys.stderr)
        return 2
    if BACKEND == "module" and not os.path.exists(MODULE):
        print(f"module not found at {MODULE}; run `make build` first", file=sys.stderr)
        return 2
    passed = failed = skipped = 0
    started = time.time()
    for path in files:
        workdir = tempfile.mkdtemp(prefix="quota-test-")
        try:
            scenario = Scenario(path, workdir)
            results = scenario.run()
            skipped += scenario.skipped
        except Exception as e:  # a broken scenario file is a failure, not a crash
            results = [(os.path.basename(path), f"{type(e).__name__}: {e}")]
        for case, failure in results:
            if failure == "SKIP":
                skipped += 1
                print(f"skip  {os.path.basename(path)}: only the module")
                continue
            if failure is None:
                passed += 1
                print(f"ok    {os.path.basename(path)}: {case}")
            else:
                failed += 1
                print(f"FAIL  {os.path.basename(path)}: {case}\n      {failure}")
        if not any(f and f != "SKIP" for _, f in results):
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"      (server dirs kept in {workdir})")
    print(f"scenario files: {len(files)}, time: {time.time() - started:.1f}s")
    print(f"scenarios ({BACKEND}): {passed} passed, {failed} failed, {skipped} skipped (module only)")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
