"""quota_litellm: quota as a LiteLLM proxy hook.

Before each model call the hook reserves the estimated cost in ONE
QUOTA.RESERVE (a USAGE item priced by quota's price book: the prompt's tokens
as litellm.token_counter counts them, the request's max_tokens as the output),
with SERVICE/MODEL, so access rules, rate and in-flight policies and budgets
are judged in the same call. A denial answers HTTP 429 with quota's message.
After a successful call it commits the actual usage from the response
(streaming too); after a failure it releases the hold; a hold nobody settles
(the proxy died) expires after its TTL.

Register it in the proxy's config.yaml:

    litellm_settings:
      callbacks: quota_litellm.quota_hook

with this file importable (on PYTHONPATH, or next to config.yaml) and its own
configuration in the YAML file named by QUOTA_LITELLM_CONFIG (see README.md).
"""

import asyncio
import logging
import os
import re
import secrets
import string
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import redis.asyncio
import redis.exceptions
import yaml
from fastapi import HTTPException

import litellm
from litellm.integrations.custom_logger import CustomLogger
from quota_client import AsyncQuota, QuotaError

log = logging.getLogger("quota_litellm")

CONFIG_ENV = "QUOTA_LITELLM_CONFIG"
MARK = "quota_litellm_hold"  # the metadata key that carries a request's hold
FIELDS = ("user_id", "team_id", "org_id", "key_alias", "key_hash", "end_user", "model")
COMPLETION_CALLS = {"completion", "acompletion", "text_completion", "atext_completion"}
SEGMENT_BAD = re.compile(r"[^A-Za-z0-9_\-.:@]")
META_BAD = re.compile(r"[\x00-\x1f\x7f]")
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError, asyncio.TimeoutError)

DEFAULTS: Dict[str, Any] = {
    "redis": {"url": "redis://127.0.0.1:6379/0", "password_env": None, "backend": None,
              "cluster": False, "timeout_s": 2.0, "max_connections": 50},
    "tree": "litellm",
    "path": "users/{user_id}",
    "also": [],
    "fallbacks": {},
    "models": {},
    "default_price": None,
    "default_max_tokens": 1024,
    "cap_output": True,
    "request_usage": None,
    "ttl_ms": 600000,
    "on_redis_error": "closed",
    "pricing": "auto",
    "other_calls": "allow",
    "meta": True,
}


class ConfigError(ValueError):
    pass


@dataclass
class Config:
    redis_url: str
    redis_password: Optional[str]
    backend: Optional[str]
    cluster: bool
    timeout_s: float
    max_connections: int
    tree: str
    path: str
    also: List[str]
    fallbacks: Dict[str, str]
    models: Dict[str, str]
    default_price: Optional[str]
    default_max_tokens: int
    cap_output: bool
    request_usage: Optional[str]
    ttl_ms: int
    fail_open: bool
    pricing: str
    refuse_other_calls: bool
    meta: bool

    @classmethod
    def from_dict(cls, raw):
        raw = dict(raw or {})
        unknown = set(raw) - set(DEFAULTS)
        if unknown:
            raise ConfigError(f"quota_litellm: unknown config keys {sorted(unknown)}")
        c = {k: raw.get(k, v) for k, v in DEFAULTS.items()}
        r = dict(DEFAULTS["redis"])
        r.update(raw.get("redis") or {})
        unknown = set(r) - set(DEFAULTS["redis"])
        if unknown:
            raise ConfigError(f"quota_litellm: unknown redis keys {sorted(unknown)}")
        password = os.environ.get(r["password_env"]) if r["password_env"] else None
        if r["password_env"] and password is None:
            raise ConfigError(f"quota_litellm: redis.password_env names {r['password_env']}, which is not set")
        if r["backend"] not in (None, "module", "lua"):
            raise ConfigError("quota_litellm: redis.backend is module, lua or left out (detected)")
        also = c["also"] or []
        if isinstance(also, str):
            also = [also]
        if c["on_redis_error"] not in ("open", "closed"):
            raise ConfigError("quota_litellm: on_redis_error is open or closed")
        if c["pricing"] not in ("auto", "usage", "estimate"):
            raise ConfigError("quota_litellm: pricing is auto, usage or estimate")
        if c["other_calls"] not in ("allow", "refuse"):
            raise ConfigError("quota_litellm: other_calls is allow or refuse")
        for name, price in dict(c["models"] or {}).items():
            if not isinstance(price, str) or price.count("/") != 1:
                raise ConfigError(f"quota_litellm: models.{name} must be 'service/model', not {price!r}")
        for template in [c["tree"], c["path"], *also] + ([c["default_price"]] if c["default_price"] else []):
            template_fields(template)  # raises on a bad template
        ttl = int(c["ttl_ms"])
        if not 1 <= ttl <= 30 * 86400 * 1000:
            raise ConfigError("quota_litellm: ttl_ms is 1 ms to 30 days")
        max_tokens = int(c["default_max_tokens"])
        if max_tokens < 0:
            raise ConfigError("quota_litellm: default_max_tokens must not be negative")
        return cls(
            redis_url=r["url"], redis_password=password, backend=r["backend"], cluster=bool(r["cluster"]),
            timeout_s=float(r["timeout_s"]), max_connections=int(r["max_connections"]), tree=c["tree"], path=c["path"], also=list(also),
            fallbacks={str(k): str(v) for k, v in (c["fallbacks"] or {}).items()},
            models={str(k): str(v) for k, v in (c["models"] or {}).items()},
            default_price=c["default_price"], default_max_tokens=max_tokens, cap_output=bool(c["cap_output"]),
            request_usage=c["request_usage"], ttl_ms=ttl, fail_open=c["on_redis_error"] == "open", pricing=c["pricing"],
            refuse_other_calls=c["other_calls"] == "refuse", meta=bool(c["meta"]),
        )

    @classmethod
    def from_file(cls, path):
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f) or {}
        # the file may be the hook's own, or a proxy config.yaml with a `quota:` section
        if "quota" in raw and isinstance(raw["quota"], dict):
            raw = raw["quota"]
        return cls.from_dict(raw)


def template_fields(template):
    out = []
    for _, name, spec, conv in string.Formatter().parse(template):
        if name is None:
            continue
        if spec or conv:
            raise ConfigError(f"quota_litellm: template {template!r}: write fields as {{name}}, no format spec")
        if name not in FIELDS and not name.startswith("metadata."):
            raise ConfigError(f"quota_litellm: template {template!r}: unknown field {{{name}}} "
                              f"(one of {', '.join(FIELDS)} or metadata.NAME)")
        out.append(name)
    return out


class Missing(Exception):
    def __init__(self, name, template):
        super().__init__(name)
        self.name, self.template = name, template


def segment(value):
    """A value as one path segment: 1-64 characters of A-Z a-z 0-9 _ - . : @."""
    s = SEGMENT_BAD.sub("_", str(value))[:64]
    return "_" if s in ("", ".", "..") else s


def render(template, values, fallbacks, clean=segment):
    out = []
    for literal, name, _, _ in string.Formatter().parse(template):
        out.append(literal)
        if name is None:
            continue
        v = values.get(name)
        if v is None or v == "":
            v = fallbacks.get(name)
        if v is None or v == "":
            raise Missing(name, template)
        out.append(clean(v))
    return "".join(out)


def identity(user_api_key_dict, data):
    """The template fields of a request (None when LiteLLM does not know one)."""
    u = user_api_key_dict
    md = metadata_of(data) or {}
    end_user = getattr(u, "end_user_id", None) or data.get("user") or md.get("user_api_key_end_user_id")
    values = {
        "user_id": getattr(u, "user_id", None),
        "team_id": getattr(u, "team_id", None),
        "org_id": getattr(u, "org_id", None),
        "key_alias": getattr(u, "key_alias", None),
        "key_hash": getattr(u, "token", None) or getattr(u, "api_key", None),
        "end_user": end_user,
        "model": data.get("model"),
    }
    requester = md.get("requester_metadata")
    if not isinstance(requester, dict):
        requester = {}
    for k, v in requester.items():
        if isinstance(v, (str, int)) and not isinstance(v, bool):
            values[f"metadata.{k}"] = str(v)
    return values


def metadata_of(data):
    """The request's proxy metadata dict (LiteLLM uses `metadata` for chat,
    `litellm_metadata` on some routes)."""
    if not isinstance(data, dict):
        return None
    for key in ("litellm_metadata", "metadata"):
        md = data.get(key)
        if isinstance(md, dict):
            return md
    return None


def marker_of(data):
    """The hold marker of request data or of a logging kwargs dict."""
    for source in (data, (data or {}).get("litellm_params") if isinstance(data, dict) else None):
        md = metadata_of(source)
        if md and isinstance(md.get(MARK), str):
            return md[MARK]
    return None


def usage_of(response):
    """(prompt_tokens, completion_tokens) of a response, or None."""
    usage = getattr(response, "usage", None)
    if usage is None and isinstance(response, dict):
        usage = response.get("usage")
    if usage is None:
        return None
    get = usage.get if isinstance(usage, dict) else (lambda k: getattr(usage, k, None))
    p, c = get("prompt_tokens"), get("completion_tokens")
    if p is None and c is None:
        return None
    return int(p or 0), int(c or 0)


def count_prompt_tokens(data, call_type):
    model = data.get("model") or ""
    try:
        if data.get("messages") is not None:
            return int(litellm.token_counter(model=model, messages=data["messages"]))
        prompt = data.get("prompt")
        if isinstance(prompt, list):
            prompt = " ".join(str(p) for p in prompt)
        return int(litellm.token_counter(model=model, text=str(prompt or "")))
    except Exception:  # a tokenizer failure must not let the request through unpriced
        text = str(data.get("messages") or data.get("prompt") or "")
        return len(text.encode()) // 2 + 1


def max_tokens_of(data, default):
    for key in ("max_completion_tokens", "max_tokens"):
        v = data.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            return v
    return default


def meta_value(v):
    v = META_BAD.sub(" ", str(v)).strip()
    b = v.encode()[:256]
    return b.decode("utf-8", "ignore") or None


@dataclass
class Live:
    """A hold this process placed and has not settled yet."""
    nonce: str
    tree: str
    price: str
    deadline: float
    extra: Dict[str, int] = field(default_factory=dict)
    estimated: bool = False


def refuse(status, message, **extra):
    detail = {"error": message}
    detail.update(extra)
    return HTTPException(status_code=status, detail=detail)


class QuotaHook(CustomLogger):
    """The LiteLLM proxy callback. One instance per proxy worker."""

    def __init__(self, config: Optional[Config] = None, config_path: Optional[str] = None):
        super().__init__()
        self._config = config
        self._config_path = config_path
        self._quotas = weakref.WeakKeyDictionary()
        self._live: Dict[str, Live] = {}
        self.stats = {"reserved": 0, "denied": 0, "committed": 0, "released": 0, "errors": 0, "unguarded": 0}

    @property
    def config(self) -> Config:
        if self._config is None:
            path = self._config_path or os.environ.get(CONFIG_ENV) or "quota_litellm.yaml"
            self._config = Config.from_file(path)
        return self._config

    def quota(self):
        """The AsyncQuota of the running event loop (LiteLLM may run logging
        callbacks on another loop than the requests: a client per loop)."""
        loop = asyncio.get_running_loop()
        q = self._quotas.get(loop)
        if q is None:
            c = self.config
            kw = dict(password=c.redis_password, socket_timeout=c.timeout_s, socket_connect_timeout=c.timeout_s)
            if c.cluster:
                client = redis.asyncio.cluster.RedisCluster.from_url(c.redis_url, max_connections=c.max_connections,
                                                                     **kw)
            else:
                # a burst of requests waits for a connection (up to timeout_s) instead of
                # failing with "Too many connections", as the default pool does past 100
                pool = redis.asyncio.BlockingConnectionPool.from_url(
                    c.redis_url, max_connections=c.max_connections, timeout=c.timeout_s, **kw)
                client = redis.asyncio.Redis(connection_pool=pool)
            q = self._quotas[loop] = AsyncQuota(client, backend=c.backend)
        return q

    # -- what a request is charged to

    def plan(self, user_api_key_dict, data):
        """(tree, path, also, price, meta) of a request; raises Missing."""
        c = self.config
        values = identity(user_api_key_dict, data)
        tree = render(c.tree, values, c.fallbacks, clean=lambda v: str(v))
        path = render(c.path, values, c.fallbacks)
        also = []
        for template in c.also:
            try:
                p = render(template, values, c.fallbacks)
            except Missing:
                continue  # an ALSO path whose field is missing is left out
            if p != path and p not in also:
                also.append(p)
        model = data.get("model") or ""
        price = c.models.get(model)
        if price is None and c.default_price:
            price = render(c.default_price, values, c.fallbacks)
        meta = {}
        if c.meta:
            for name, key in (("user", "user_id"), ("team", "team_id"), ("org", "org_id"),
                              ("key_alias", "key_alias"), ("end_user", "end_user"), ("llm_model", "model")):
                v = values.get(key)
                if v not in (None, ""):
                    v = meta_value(v)
                    if v:
                        meta[name] = v
        return tree, path, also, price, meta

    # -- before the call

    async def async_pre_call_hook(self, user_api_key_dict, cache, data, call_type):
        md = metadata_of(data)
        if md is not None:
            md.pop(MARK, None)  # only this hook sets it
        if call_type not in COMPLETION_CALLS:
            if self.config.refuse_other_calls:
                raise refuse(403, f"quota: {call_type} requests are not metered and are refused")
            return data
        c = self.config
        try:
            tree, path, also, price, meta = self.plan(user_api_key_dict, data)
        except Missing as e:
            raise refuse(403, f"quota: this request has no {e.name} (template {e.template!r}) "
                              f"and the config gives no fallback")
        if price is None:
            raise refuse(403, f"quota: model {data.get('model')!r} has no price mapping "
                              f"(models: or default_price: in the quota_litellm config)")
        hold_id = str(data.get("litellm_call_id") or "")
        if not hold_id:
            hold_id = "litellm-" + secrets.token_hex(16)
            data["litellm_call_id"] = hold_id
        service, model = price.split("/", 1)
        output = max_tokens_of(data, None)
        if output is None:
            output = c.default_max_tokens
            if c.cap_output:
                # the model may not write more than was reserved for it
                data["max_tokens"] = output
        values = {"input_tokens": count_prompt_tokens(data, call_type), "output_tokens": output}
        extra = {}
        if c.request_usage:
            extra[c.request_usage] = 1
            values.update(extra)
        self._prune()
        try:
            q = self.quota()
            estimated = await self._estimate_first(q)
            item = {"cost": await self._charges(q, price, values)} if estimated else {"usage": {price: values}}
            r = await q.reserve(tree, path=path, also=also or None, id=hold_id, ttl_ms=c.ttl_ms,
                                service=service, model=model, meta=meta or None, **item)
        except QuotaError as e:
            self.stats["errors"] += 1
            log.error("quota_litellm: QUOTA.RESERVE failed: %s", e)
            raise refuse(500, f"quota: {getattr(e, 'message', None) or e}")
        except REDIS_DOWN as e:
            self.stats["errors"] += 1
            if c.fail_open:
                self.stats["unguarded"] += 1
                log.warning("quota_litellm: Redis unreachable (%s); fail-open: request %s goes unmetered", e, hold_id)
                return data
            log.error("quota_litellm: Redis unreachable (%s); fail-closed: request %s refused", e, hold_id)
            raise refuse(503, "quota: the quota service is unavailable; request refused")
        if not r.allowed:
            self.stats["denied"] += 1
            raise refuse(429, r.message or "quota: request denied", denied_by=list(r.denied_by or []),
                         quota_tree=tree, quota_path=path)
        if r.duplicate:
            # A call id (x-litellm-call-id is the client's to choose) that was used
            # before: its reservation is not this request's, so never run it on that.
            raise refuse(409, f"quota: request id {hold_id} was already used")
        nonce = secrets.token_hex(12)
        self._live[hold_id] = Live(nonce=nonce, tree=tree, price=price, extra=extra, estimated=estimated,
                                   deadline=time.monotonic() + c.ttl_ms / 1000)
        if md is None:
            md = data.setdefault("metadata", {})
        md[MARK] = f"{hold_id}|{nonce}"
        self.stats["reserved"] += 1
        return data

    async def _estimate_first(self, q):
        """Whether to price with QUOTA.ESTIMATE and reserve COST items. The Lua
        library keeps its price book in one key, so on a cluster a USAGE item
        works only for trees on the node that serves it (lua/README.md): there
        the hook prices on that node and reserves the charges an identical
        USAGE item would make (the cost and the raw quantities), SERVICE/MODEL
        still given, so the reservation judges the same policies and rules."""
        c = self.config
        if c.pricing != "auto":
            return c.pricing == "estimate"
        return c.cluster and (c.backend or await q.detect()) == "lua"

    @staticmethod
    async def _charges(q, price, values):
        e = await q.estimate(price, values)
        return dict(e.charges or {})

    def _prune(self):
        now = time.monotonic()
        if len(self._live) > 1000 or any(v.deadline < now for v in list(self._live.values())[:16]):
            for k in [k for k, v in self._live.items() if v.deadline < now]:
                del self._live[k]

    def _take(self, marker):
        """The live hold a marker names, removed so it is settled once."""
        if not marker or "|" not in marker:
            return None, None
        hold_id, nonce = marker.rsplit("|", 1)
        live = self._live.pop(hold_id, None)  # atomic: one taker wins
        if live is None:
            return None, None
        if not secrets.compare_digest(live.nonce, nonce):
            self._live.setdefault(hold_id, live)  # not this request's: put it back
            return None, None
        return hold_id, live

    # -- after the call

    async def _commit(self, marker, response):
        try:
            await self._commit_once(marker, response)
        except Exception:  # settling must never turn a served response into an error
            self.stats["errors"] += 1
            log.exception("quota_litellm: commit failed")

    async def _commit_once(self, marker, response):
        hold_id, live = self._take(marker)
        if live is None:
            return
        usage = usage_of(response)
        kwargs = {}
        if usage is not None:
            values = {"input_tokens": usage[0], "output_tokens": usage[1]}
            values.update(live.extra)
            kwargs["usage"] = {live.price: values}
            if live.estimated:
                kwargs = {"estimate": (live.price, values)}
        # without a usage in the response, what was reserved is charged
        await self._settle("commit", live.tree, hold_id, **kwargs)

    async def _release(self, marker):
        try:
            hold_id, live = self._take(marker)
            if live is not None:
                await self._settle("release", live.tree, hold_id)
        except Exception:
            self.stats["errors"] += 1
            log.exception("quota_litellm: release failed")

    async def _settle(self, what, tree, hold_id, **kwargs):
        for attempt in range(3):
            try:
                q = self.quota()
                if what == "commit":
                    if "estimate" in kwargs:
                        price, values = kwargs["estimate"]
                        await q.commit(tree, hold_id, cost=await self._charges(q, price, values))
                    else:
                        await q.commit(tree, hold_id, **kwargs)
                else:
                    await q.release(tree, hold_id)
                self.stats["committed" if what == "commit" else "released"] += 1
                return
            except REDIS_DOWN as e:  # idempotent ids make a retry harmless
                log.warning("quota_litellm: %s of %s failed (%s), attempt %d", what, hold_id, e, attempt + 1)
                await asyncio.sleep(0.05 * (attempt + 1))
            except QuotaError as e:
                log.error("quota_litellm: %s of %s refused: %s", what, hold_id, e)
                break
        self.stats["errors"] += 1

    async def async_post_call_success_hook(self, data, user_api_key_dict, response):
        # Non-streaming responses are settled here, before the caller gets them.
        if not data.get("stream"):
            await self._commit(marker_of(data), response)
        return response

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        # Streaming responses (and anything the hook above did not settle):
        # LiteLLM calls this with the assembled response and its final usage.
        await self._commit(marker_of(kwargs), response_obj)

    async def async_post_call_failure_hook(self, request_data, original_exception, user_api_key_dict,
                                           traceback_str=None):
        # The proxy's final failure of a request (after LiteLLM's own retries and
        # fallbacks): provider errors, timeouts, a stream that broke.
        await self._release(marker_of(request_data))
        return None


def _default_instance():
    return QuotaHook()


quota_hook = _default_instance()
