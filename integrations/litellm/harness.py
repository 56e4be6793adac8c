"""Processes the hook's tests and the overspend measurement start: a Redis
server with quota (module or Lua library), the fake model server, and a real
LiteLLM proxy (`litellm --config …`, no database) on free ports. Every
process started here is stopped by `stop()` (also on failure)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import redis
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RELEASE = os.path.join(ROOT, "target", "release")
sys.path.insert(0, os.path.join(HERE, "tests"))

from fake_openai import FakeOpenAI  # noqa: E402


def free_port():
    """A free port whose cluster bus port (port + 10000) exists too."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 <= 65535:
            return port


def wait_for(check, timeout, what):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as e:  # not up yet
            last = e
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not come up in {timeout}s ({last})")


class RedisServer:
    """redis-server with quota: the module (`--loadmodule … TEST_CLOCK yes`) or
    a plain server and `quota-load --test-clock` (Lua)."""

    def __init__(self, backend, test_clock=True, cluster=False):
        self.backend = backend
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="quota-litellm-redis-")
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.dir]
        if cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        if backend == "module":
            args += ["--loadmodule", os.path.join(RELEASE, "libquota.so")] + (["TEST_CLOCK", "yes"] if test_clock else [])
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        try:
            wait_for(lambda: redis.Redis(port=self.port).ping(), 10, "redis-server")
            if backend == "lua" and not cluster:
                subprocess.run([os.path.join(RELEASE, "quota-load")] + (["--test-clock"] if test_clock else [])
                               + [f"redis://127.0.0.1:{self.port}"], check=True, stdout=subprocess.DEVNULL)
        except Exception:
            self.stop()
            raise

    def client(self):
        return redis.Redis(port=self.port, decode_responses=False)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisCluster:
    """Three cluster-enabled primaries with quota, formed by `redis-cli --cluster
    create`; the Lua library is loaded on every primary (`quota-load --cluster`)."""

    def __init__(self, backend):
        self.backend = backend
        self.nodes = []
        try:
            for _ in range(3):
                self.nodes.append(RedisServer(backend, cluster=True))
            res = subprocess.run(["redis-cli", "--cluster", "create"] + [f"127.0.0.1:{n.port}" for n in self.nodes]
                                 + ["--cluster-replicas", "0", "--cluster-yes"], capture_output=True, text=True)
            if res.returncode != 0:
                raise RuntimeError(f"cluster create failed: {res.stdout[-2000:]} {res.stderr[-2000:]}")
            wait_for(lambda: all(b"cluster_state:ok" in n.client().execute_command("CLUSTER", "INFO")
                                 for n in self.nodes), 20, "cluster_state:ok")
            if backend == "lua":
                subprocess.run([os.path.join(RELEASE, "quota-load"), "--cluster", "--test-clock",
                                f"redis://127.0.0.1:{self.nodes[0].port}"], check=True, stdout=subprocess.DEVNULL)
        except Exception:
            self.stop()
            raise
        self.url = f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def moved(self):
        """errorstat_MOVED summed over the primaries."""
        total = 0
        for n in self.nodes:
            stats = n.client().info("errorstats")
            total += int((stats.get("errorstat_MOVED") or {}).get("count", 0))
        return total

    def stop(self):
        for n in self.nodes:
            n.stop()


def model_entry(name, api_base, extra=None):
    params = {"model": f"openai/{name}", "api_base": api_base, "api_key": "fake-key"}
    params.update(extra or {})
    return {"model_name": name, "litellm_params": params}


class Proxy:
    """A LiteLLM proxy process: `litellm --config config.yaml --port P`.
    `settings` is the config's litellm_settings/general_settings/router_settings,
    `quota` (optional) the hook's config, written to quota_litellm.yaml and named
    by QUOTA_LITELLM_CONFIG."""

    def __init__(self, models, quota=None, litellm_settings=None, general_settings=None,
                 router_settings=None, startup_timeout=90):
        self.dir = tempfile.mkdtemp(prefix="quota-litellm-proxy-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        ls = {"num_retries": 0, "request_timeout": 30, "telemetry": False}
        ls.update(litellm_settings or {})
        if quota is not None:
            ls["callbacks"] = "quota_litellm.quota_hook"
        gs = {"master_key": "sk-master"}
        gs.update(general_settings or {})
        config = {"model_list": models, "litellm_settings": ls, "general_settings": gs}
        if router_settings:
            config["router_settings"] = router_settings
        self.config_path = os.path.join(self.dir, "config.yaml")
        with open(self.config_path, "w") as f:
            yaml.safe_dump(config, f)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([HERE, os.path.join(HERE, "tests"), env.get("PYTHONPATH", "")])
        env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
        env["LITELLM_TELEMETRY"] = "False"
        env.pop("DATABASE_URL", None)
        if quota is not None:
            qpath = os.path.join(self.dir, "quota_litellm.yaml")
            with open(qpath, "w") as f:
                yaml.safe_dump(quota, f)
            env["QUOTA_LITELLM_CONFIG"] = qpath
        self.log_path = os.path.join(self.dir, "proxy.log")
        self.log = open(self.log_path, "wb")
        litellm_bin = os.path.join(os.path.dirname(sys.executable), "litellm")
        self.proc = subprocess.Popen(
            [litellm_bin, "--config", self.config_path, "--host", "127.0.0.1", "--port", str(self.port),
             "--num_workers", "1"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=self.dir, start_new_session=True)
        try:
            import httpx
            wait_for(lambda: self._alive(httpx), startup_timeout, f"litellm proxy (log {self.log_path})")
        except Exception:
            print(self.tail(), file=sys.stderr)
            self.stop()
            raise

    def _alive(self, httpx):
        if self.proc.poll() is not None:
            raise RuntimeError(f"proxy exited with {self.proc.returncode}:\n{self.tail()}")
        return httpx.get(self.url + "/health/liveliness", timeout=1).status_code == 200

    def tail(self, n=60):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def chat_body(model, directives, max_tokens=None, stream=False, **extra):
    body = {"model": model, "messages": [{"role": "user", "content": directives}]}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if stream:
        body["stream"] = True
    body.update(extra)
    return body


def dumps(obj):
    return json.dumps(obj, indent=2, default=str)
