#!/usr/bin/env python3
"""Tests of quota-load, the loader of the Redis Functions library
(lua/quota.lua), against real redis-servers it starts on free ports: plain
redis-server without the module, with a password, an ACL user, TLS (with and
without client certificates) and a 3-primary cluster.

  python3 tests/loader.py            (after cargo build --release)

QUOTA_LOAD names the loader binary (default target/release/quota-load).
Exits non-zero when a check failed; ends with "N passed, N failed".
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import redis

from backend import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOADER = os.environ.get("QUOTA_LOAD", os.path.join(ROOT, "target", "release", "quota-load"))
LIBRARY = os.path.join(ROOT, "lua", "quota.lua")
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"

PASSED, FAILED = [], []


def check(ok, what, detail=""):
    (PASSED if ok else FAILED).append(what)
    print(("ok:     " if ok else "FAILED: ") + what + ("" if ok or not detail else f"\n        {detail}"))


class Server:
    """A redis-server (no module) in its own directory; stopped by stop()."""

    def __init__(self, workdir, name, args=(), tls=None):
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.tls = tls  # kwargs for redis.Redis when the server speaks only TLS
        port_args = ["--port", "0", "--tls-port", str(self.port)] if tls else ["--port", str(self.port)]
        cmd = [REDIS_SERVER, *port_args, "--bind", "127.0.0.1", "--dir", self.dir, "--save", "",
               "--appendonly", "no", "--daemonize", "no", "--logfile", os.path.join(self.dir, "redis.log"), *args]
        # A configuration error is written to stderr before the log is open.
        with open(os.path.join(self.dir, "stderr.txt"), "w") as err:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        self.admin_password = None
        for arg, val in zip(args, list(args[1:]) + [None]):
            if arg == "--requirepass":
                self.admin_password = val
        deadline = time.time() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server {name} exited at start:\n{self.log_tail()}")
            try:
                if self.client().ping():
                    return
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                pass
            if time.time() > deadline:
                raise RuntimeError(f"redis-server {name} did not answer PING:\n{self.log_tail()}")
            time.sleep(0.02)

    def client(self):
        return redis.Redis(port=self.port, password=self.admin_password, decode_responses=True, socket_timeout=10,
                           **(self.tls or {}))

    def log_tail(self):
        out = ""
        for name in ("stderr.txt", "redis.log"):
            try:
                with open(os.path.join(self.dir, name)) as f:
                    out += "".join(f.readlines()[-10:])
            except OSError:
                pass
        return out

    def url(self, scheme="redis"):
        return f"{scheme}://127.0.0.1:{self.port}"

    def version(self):
        """FCALL_RO quota_version 0, or None when the library is not there."""
        try:
            return self.client().execute_command("FCALL_RO", "quota_version", 0)
        except redis.ResponseError:
            return None

    def code(self):
        libs = self.client().execute_command("FUNCTION", "LIST", "LIBRARYNAME", "quota", "WITHCODE")
        for lib in libs:
            fields = lib if isinstance(lib, dict) else dict(zip(lib[0::2], lib[1::2]))
            if fields.get("library_name") == "quota":
                return fields.get("library_code")
        return None

    def loads(self):
        """How many FUNCTION LOAD calls the server has served."""
        stats = self.client().info("commandstats")
        return stats.get("cmdstat_function|load", {}).get("calls", 0)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def load(*args, env=None):
    full_env = {k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"}
    full_env.update(env or {})
    return subprocess.run([LOADER, *args], capture_output=True, text=True, timeout=60, env=full_env)


def shown(res):
    return f"exit {res.returncode}; stdout: {res.stdout.strip()!r}; stderr: {res.stderr.strip()!r}"


def with_version(source, version):
    return re.sub(r'local VERSION = "[^"]*"', f'local VERSION = "{version}"', source, count=1)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


# ----- the tests -------------------------------------------------------------

def test_load_and_versions(work, source, version):
    s = Server(work, "plain")
    try:
        res = load(s.url())
        check(res.returncode == 0 and f"127.0.0.1:{s.port} quota {version} (loaded; was none)" in res.stdout,
              "a fresh server gets the library and the loader prints its version", shown(res))
        check(s.client().execute_command("FCALL", "quota_version", 0) == version,
              f"FCALL quota_version 0 answers {version} after the load")
        check(s.code() == source, "the loaded code is the embedded library byte for byte")

        before = s.loads()
        res = load(s.url())
        check(res.returncode == 0 and "(up to date)" in res.stdout and s.loads() == before,
              "a second run is a no-op: 'up to date', exit 0, no FUNCTION LOAD", shown(res))

        res = load("--check", s.url())
        check(res.returncode == 0 and f"quota {version} (up to date)" in res.stdout and s.loads() == before,
              "--check prints the installed version and loads nothing", shown(res))

        res = load("--force", s.url())
        check(res.returncode == 0 and s.loads() == before + 1 and "reloaded" in res.stdout,
              "--force reloads the same version", shown(res))

        newer = with_version(source, "9.0.0")
        s.client().execute_command("FUNCTION", "LOAD", "REPLACE", newer)
        res = load(s.url())
        check(res.returncode == 1 and "newer" in res.stderr and "--allow-downgrade" in res.stderr
              and s.version() == "9.0.0",
              "a newer installed version (9.0.0) is refused with exit 1 and left in place", shown(res))

        res = load("--check", s.url())
        check(res.returncode == 0 and f"quota 9.0.0 (newer than {version})" in res.stdout,
              "--check says the installed version is newer", shown(res))

        res = load("--allow-downgrade", s.url())
        check(res.returncode == 0 and s.version() == version and "downgraded" in res.stdout,
              "--allow-downgrade replaces the newer version", shown(res))

        older = with_version(source, "0.0.1")
        s.client().execute_command("FUNCTION", "LOAD", "REPLACE", older)
        res = load(s.url())
        check(res.returncode == 0 and "(upgraded; was 0.0.1)" in res.stdout and s.version() == version,
              "an older installed version (0.0.1) is upgraded", shown(res))

        v19 = write(os.path.join(work, "v1.9.lua"), with_version(source, "1.9.0"))
        v110 = write(os.path.join(work, "v1.10.lua"), with_version(source, "1.10.0"))
        load("--allow-downgrade", "--file", v19, s.url())
        res = load("--file", v110, s.url())
        check(res.returncode == 0 and "(upgraded; was 1.9.0)" in res.stdout and s.version() == "1.10.0",
              "versions compare as numbers: 1.10.0 upgrades 1.9.0 (--file loads a given file)", shown(res))
        res = load("--file", v19, s.url())
        check(res.returncode == 1 and s.version() == "1.10.0",
              "and 1.9.0 does not replace 1.10.0", shown(res))
        load("--allow-downgrade", s.url())

        res = load("--test-clock", s.url())
        code = s.code() or ""
        check(res.returncode == 0 and "local TEST_CLOCK = true" in code and "local TEST_CLOCK = false" not in code
              and "warning" in res.stderr and "test clock" in res.stdout,
              "--test-clock loads the library with TEST_CLOCK switched on, with a warning", shown(res))
        res = load(s.url())
        check(res.returncode == 0 and "local TEST_CLOCK = false" in (s.code() or ""),
              "a plain run over the test-clock library reloads it with the clock off", shown(res))

        res = load("--print", "--test-clock")
        start = re.search(r"^local TEST_CLOCK_START = (\d+)$", res.stdout, re.M)
        check(start is not None and abs(int(start.group(1)) - time.time() * 1000) < 60000
              and res.stdout == source.replace("local TEST_CLOCK = false", "local TEST_CLOCK = true", 1)
              .replace("local TEST_CLOCK_START = 0", start.group(0), 1),
              "--print --test-clock writes the source with the test clock on, frozen at now")

        alien = "#!lua name=quota\nredis.register_function('other', function() return 1 end)\n"
        s.client().execute_command("FUNCTION", "LOAD", "REPLACE", alien)
        res = load(s.url())
        check(res.returncode == 1 and "cannot be read" in res.stderr and s.code() == alien,
              "a 'quota' library without a readable version is left alone (exit 1)", shown(res))
        res = load("--force", s.url())
        check(res.returncode == 0 and s.version() == version, "--force replaces it", shown(res))
    finally:
        s.stop()


def test_usage_and_errors(work):
    for args, why in ((["localhost:6379"], "a URL without redis://"), (["--bogus"], "an unknown option"),
                      (["--cert", "c.pem"], "--cert without --key"),
                      (["--cacert", "ca.pem", "redis://127.0.0.1:1"], "TLS options with redis://"),
                      (["--file"], "--file without a path"), (["--once"], "--once without --sweep"),
                      (["--sweep", "--test-clock"], "--sweep with an option that loads")):
        res = load(*args)
        check(res.returncode == 2 and res.stderr.startswith("quota-load: "), f"{why} is a usage error (exit 2)",
              shown(res))
    res = load("redis://127.0.0.1:1")
    check(res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1 and "127.0.0.1:1" in res.stderr,
          "an unreachable server fails with exit 1 and a one-line message", shown(res))
    bad = write(os.path.join(work, "bad.lua"), "#!lua name=other\nreturn 1\n")
    res = load("--file", bad, "redis://127.0.0.1:1")
    check(res.returncode == 1 and "not the quota library" in res.stderr,
          "--file refuses a file that is not the quota library", shown(res))
    res = load("--help")
    check(res.returncode == 0 and all(o in res.stdout for o in (
        "--file", "--check", "--cluster", "--force", "--allow-downgrade", "--test-clock", "--print", "--user",
        "--password", "--cacert", "--cert", "--key", "--insecure", "--sweep", "--once", "REDISCLI_AUTH")), "--help documents every option")


def test_several_servers(work, version):
    a, b = Server(work, "a"), Server(work, "b")
    try:
        res = load(a.url(), b.url(), a.url() + "/3")
        check(res.returncode == 0 and len(res.stdout.splitlines()) == 2 and [a.version(), b.version()] == [version] * 2,
              "several URLs load on each server once (the same server twice is one)", shown(res))
    finally:
        a.stop()
        b.stop()


def test_auth(work, version):
    s = Server(work, "auth", ["--requirepass", "s3cret"])
    try:
        res = load(s.url())
        check(res.returncode == 1 and s.version() is None and "quota-load:" in res.stderr,
              "without the password the loader fails (exit 1) and loads nothing", shown(res))
        res = load(f"redis://:s3cret@127.0.0.1:{s.port}")
        check(res.returncode == 0 and s.version() == version, "the password in the URL is used", shown(res))
        s.client().execute_command("FUNCTION", "DELETE", "quota")
        res = load(s.url(), env={"REDISCLI_AUTH": "s3cret"})
        check(res.returncode == 0 and s.version() == version, "REDISCLI_AUTH is used as the password", shown(res))
        s.client().execute_command("FUNCTION", "DELETE", "quota")
        res = load("--password", "s3cret", s.url(), env={"REDISCLI_AUTH": "wrong"})
        check(res.returncode == 0 and s.version() == version, "--password wins over REDISCLI_AUTH", shown(res))

        s.client().execute_command("ACL", "SETUSER", "deployer", "on", ">d3ploy", "-@all", "+function|load",
                                   "+function|list", "+fcall_ro", "+info", "+ping", "+client", "+hello")
        s.client().execute_command("FUNCTION", "DELETE", "quota")
        res = load("--user", "deployer", "--password", "d3ploy", s.url())
        check(res.returncode == 0 and s.version() == version,
              "an ACL user allowed only FUNCTION LOAD/LIST and FCALL_RO loads it (--user, --password)", shown(res))
        res = load(f"redis://deployer:d3ploy@127.0.0.1:{s.port}")
        check(res.returncode == 0 and "(up to date)" in res.stdout, "the ACL user in the URL works too", shown(res))
        res = load(f"redis://deployer:wrong@127.0.0.1:{s.port}")
        check(res.returncode == 1 and "d3ploy" not in res.stderr + res.stdout,
              "a wrong ACL password fails with exit 1", shown(res))
    finally:
        s.stop()


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certs(d):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=quota test CA", cwd=d)
    ext = write(os.path.join(d, "ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN=quota {name}", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.crt", "-days", "2", "-extfile", ext, cwd=d)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out", "other.crt",
            "-days", "2", "-subj", "/CN=another CA", cwd=d)
    return {n: os.path.join(d, n) for n in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key",
                                            "other.crt")}


def lacks_tls(start_error):
    """Whether a redis-server's start failure says it was built without TLS:
    up to 7.0 the tls-* options are unknown directives; from 7.2 the TLS
    connection type is missing."""
    unknown_directive = re.search(r">>> 'tls-[^\n]*\n(?:[^\n]*\n)?[^\n]*Bad directive", start_error)
    return bool(unknown_directive or "Failed finding connection listener of tls" in start_error
                or re.search(r"TLS[^\n]*not (?:built|supported|enabled)", start_error))


def test_tls(work, version):
    if not shutil.which("openssl"):
        print("SKIPPED: TLS tests: no openssl command to make certificates")
        return
    d = os.path.join(work, "certs")
    os.makedirs(d)
    c = make_certs(d)
    server_tls = ["--tls-cert-file", c["server.crt"], "--tls-key-file", c["server.key"],
                  "--tls-ca-cert-file", c["ca.crt"]]
    client_tls = {"ssl": True, "ssl_ca_certs": c["ca.crt"], "ssl_certfile": c["client.crt"],
                  "ssl_keyfile": c["client.key"]}
    try:
        s = Server(work, "tls", server_tls + ["--tls-auth-clients", "no"], tls=client_tls)
    except RuntimeError as e:
        # Skipped only when this redis-server was built without TLS; any
        # other start failure (a bad certificate, a port) is a failure.
        if lacks_tls(str(e)):
            print(f"SKIPPED: TLS tests: this redis-server was built without TLS ({e})")
            return
        raise
    try:
        res = load("--cacert", c["ca.crt"], s.url("rediss"))
        check(res.returncode == 0 and s.version() == version, "over rediss:// with --cacert the library loads",
              shown(res))
        res = load("--cacert", c["other.crt"], s.url("rediss"))
        check(res.returncode == 1 and "(up to date)" not in res.stdout,
              "a server certificate from another CA is rejected (exit 1)", shown(res))
        res = load("--insecure", s.url("rediss"))
        check(res.returncode == 0 and "(up to date)" in res.stdout,
              "--insecure connects without verifying the certificate", shown(res))
        res = load("--cacert", c["ca.crt"], s.url("redis"))
        check(res.returncode == 2, "TLS options with a redis:// URL are a usage error", shown(res))
    finally:
        s.stop()

    s = Server(work, "mtls", server_tls + ["--tls-auth-clients", "yes"], tls=client_tls)
    try:
        res = load("--cacert", c["ca.crt"], s.url("rediss"))
        check(res.returncode == 1 and s.version() is None,
              "a server requiring client certificates refuses a loader without one", shown(res))
        res = load("--cacert", c["ca.crt"], "--cert", c["client.crt"], "--key", c["client.key"], s.url("rediss"))
        check(res.returncode == 0 and s.version() == version, "with --cert and --key it loads", shown(res))
    finally:
        s.stop()

    cluster_tls = server_tls + ["--tls-auth-clients", "no", "--tls-cluster", "yes", "--cluster-enabled", "yes",
                                "--cluster-config-file", "nodes.conf"]
    nodes = [Server(work, f"tls-node{i}", cluster_tls, tls=client_tls) for i in range(3)]
    try:
        if not make_cluster(nodes, ["--tls", "--cacert", c["ca.crt"]]):
            return
        res = load("--cluster", "--cacert", c["ca.crt"], nodes[0].url("rediss"))
        got = [n.version() for n in nodes]
        check(res.returncode == 0 and res.stdout.count("(loaded; was none)") == 3 and got == [version] * 3,
              "--cluster over TLS finds the primaries' TLS ports and loads on all three", shown(res) + f" {got}")
    finally:
        for n in nodes:
            n.stop()


def make_cluster(nodes, cli_args=()):
    res = subprocess.run([REDIS_CLI, *cli_args, "--cluster", "create", *[f"127.0.0.1:{n.port}" for n in nodes],
                          "--cluster-replicas", "0", "--cluster-yes"], capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        check(False, "the cluster is created", res.stdout[-500:] + res.stderr[-500:])
        return False
    deadline = time.time() + 10
    while time.time() < deadline:
        if all(n.client().cluster("info").get("cluster_state") == "ok" for n in nodes):
            break
        time.sleep(0.1)
    return True


def test_cluster(work, source, version):
    nodes = [Server(work, f"node{i}", ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"])
             for i in range(3)]
    try:
        if not make_cluster(nodes):
            return

        res = load("--cluster", nodes[1].url())
        lines = [line for line in res.stdout.splitlines() if line.strip()]
        check(res.returncode == 0 and len(lines) == 3 and all("(loaded; was none)" in line for line in lines),
              "--cluster loads on all three primaries, one line each", shown(res))
        got = [n.version() for n in nodes]
        check(got == [version] * 3, f"FCALL_RO quota_version 0 on each primary answers {version} ({got})")

        res = load("--cluster", nodes[0].url())
        check(res.returncode == 0 and res.stdout.count("(up to date)") == 3, "a second --cluster run is a no-op",
              shown(res))

        nodes[1].client().execute_command("FUNCTION", "LOAD", "REPLACE", with_version(source, "9.0.0"))
        nodes[2].client().execute_command("FUNCTION", "LOAD", "REPLACE", with_version(source, "0.0.1"))
        res = load("--cluster", nodes[0].url())
        got = [n.version() for n in nodes]
        check(res.returncode == 1 and "newer" in res.stderr and got == [version, "9.0.0", "0.0.1"],
              "one primary with a newer version refuses the whole cluster: nothing changes anywhere",
              shown(res) + f" versions {got}")

        res = load(nodes[0].url())
        check("cluster" in res.stderr and "--cluster" in res.stderr,
              "without --cluster, a cluster node gets a note that only it is loaded", shown(res))

        res = load("--cluster", "--allow-downgrade", nodes[2].url())
        got = [n.version() for n in nodes]
        check(res.returncode == 0 and got == [version] * 3, "--cluster --allow-downgrade aligns every primary",
              shown(res))

        plain = Server(work, "notcluster")
        try:
            res = load("--cluster", plain.url())
            check(res.returncode == 1 and "not a cluster node" in res.stderr,
                  "--cluster on a server that is not a cluster node fails clearly", shown(res))
        finally:
            plain.stop()
    finally:
        for n in nodes:
            n.stop()


def main():
    if not os.access(LOADER, os.X_OK):
        print(f"no loader at {LOADER}: build it (cargo build --release --bin quota-load)")
        return 1
    started = time.time()
    # The library the loader embeds (the build's lua/quota.lua).
    res = load("--print")
    source = res.stdout
    with open(LIBRARY) as f:
        check(res.returncode == 0 and source == f.read(),
              "--print writes the embedded library, which is lua/quota.lua (else rebuild the loader)")
    m = re.search(r'^local VERSION = "([^"]+)"', source, re.M)
    if not m:
        print("the embedded library has no line local VERSION = \"...\"")
        return 1
    version = m.group(1)
    work = tempfile.mkdtemp(prefix="quota-loader-")
    try:
        for test in (lambda: test_load_and_versions(work, source, version), lambda: test_usage_and_errors(work),
                     lambda: test_several_servers(work, version),
                     lambda: test_auth(work, version), lambda: test_tls(work, version),
                     lambda: test_cluster(work, source, version)):
            try:
                test()
            except Exception as e:  # a crashed test is a failed one; go on with the others
                check(False, f"test ran to the end: {e!r}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"took {time.time() - started:.1f}s")
    print(f"loader: {len(PASSED)} passed, {len(FAILED)} failed")
    return 1 if FAILED or not PASSED else 0


if __name__ == "__main__":
    sys.exit(main())
