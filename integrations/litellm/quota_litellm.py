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
import hashlib
import heapq
import itertools
import json
import logging
import os
import re
import secrets
import string
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import redis.asyncio
import redis.cluster
import redis.exceptions
import yaml
from fastapi import HTTPException

import litellm
from litellm.integrations.custom_logger import CustomLogger
from quota_client import AsyncQuota, NotFound, Quota, QuotaError

log = logging.getLogger("quota_litellm")

CONFIG_ENV = "QUOTA_LITELLM_CONFIG"
MARK = "quota_litellm_hold"  # the metadata key that carries a request's hold
FIELDS = ("user_id", "team_id", "org_id", "key_alias", "key_hash", "end_user", "model")
COMPLETION_CALLS = {"completion", "acompletion", "text_completion", "atext_completion"}
# request-body keys that make LiteLLM's router call other models than `model` (F2)
CLIENT_FALLBACKS = ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")
SEGMENT_BAD = re.compile(r"[^A-Za-z0-9_\-.:@]")
SEGMENT_OK = re.compile(r"[A-Za-z0-9\-.:@][A-Za-z0-9_\-.:@]{0,63}")  # kept as is, unless HASHED
HASHED = re.compile(r".*_[0-9a-f]{16}")  # what segment() makes of any other value
META_BAD = re.compile(r"[\x00-\x1f\x7f]")
# How long past its TTL a hold stays in the settle-once memory: a call that outlives
# ttl_ms (a long stream) is still committed, and quota charges a commit after expiry
# (`expired` 1) while it remembers the id (tombstone_ttl, 24 h by default) (F5).
KEEP_S = 86400
SETTLE_RETRY_S = 3600  # how long a commit Redis did not answer is retried in the background
MAX_LATER = 100000  # settles waiting for Redis, at most (each a few hundred bytes)
# Reserved per image part: about the most one image costs as prompt tokens (OpenAI at
# high detail 85 + 170 x 8 tiles = 1445, Anthropic about 1,600 for the largest).
DEFAULT_IMAGE_TOKENS = 1600
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
    "image_tokens": DEFAULT_IMAGE_TOKENS,
    "cap_output": True,
    "request_usage": None,
    "ttl_ms": 600000,
    "on_redis_error": "closed",
    "pricing": "auto",
    "other_calls": "refuse",
    "meta": True,
    "client_paths": "existing",
    "deny_detail": "brief",
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
    image_tokens: int
    cap_output: bool
    request_usage: Optional[str]
    ttl_ms: int
    fail_open: bool
    pricing: str
    refuse_other_calls: bool
    meta: bool
    client_paths_create: bool
    deny_detail_full: bool

    @classmethod
    def from_dict(cls, raw):
        try:
            return cls._from_dict(raw)
        except ConfigError:
            raise
        except (TypeError, ValueError, AttributeError) as e:  # ttl_ms: abc, redis: 5, …
            raise ConfigError(f"quota_litellm: bad config value: {e}") from None

    @classmethod
    def _from_dict(cls, raw):
        if raw is not None and not isinstance(raw, dict):
            raise ConfigError("quota_litellm: the config is a mapping")
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
            if not isinstance(template, str) or not template:
                raise ConfigError(f"quota_litellm: a template is a non-empty string, not {template!r}")
            template_fields(template)  # raises on a bad template
        if c["default_price"] and "/" not in string_literals(c["default_price"]):
            raise ConfigError(f"quota_litellm: default_price must be 'service/model' with a literal '/', "
                              f"not {c['default_price']!r}")
        ttl = int(c["ttl_ms"])
        if not 1 <= ttl <= 30 * 86400 * 1000:
            raise ConfigError("quota_litellm: ttl_ms is 1 ms to 30 days")
        max_tokens = int(c["default_max_tokens"])
        if max_tokens < 0:
            raise ConfigError("quota_litellm: default_max_tokens must not be negative")
        for name, v in dict(c["fallbacks"] or {}).items():
            v = str(v)
            if not re.fullmatch(r"_[A-Za-z0-9_\-.:@]{1,63}", v) or HASHED.fullmatch(v):
                # segment() never makes a segment that starts with `_`, so such a fallback
                # can never be a real value's segment (a team literally named `none`) (F13)
                raise ConfigError(f"quota_litellm: fallbacks.{name} must be a path segment starting with `_` "
                                  f"(e.g. _none), so that no real {name} can take it; not {v!r}")
        if c["deny_detail"] not in ("brief", "full"):
            raise ConfigError("quota_litellm: deny_detail is brief or full")
        if c["client_paths"] not in ("existing", "create"):
            raise ConfigError("quota_litellm: client_paths is existing or create")
        if c["client_paths"] == "existing" and any(is_client_field(n) for n in template_fields(c["tree"])):
            raise ConfigError("quota_litellm: tree uses a value the client chooses (end_user, metadata.NAME): "
                              "every value would make a tree; set client_paths: create to allow it")
        image_tokens = int(c["image_tokens"])
        if image_tokens < 0:
            raise ConfigError("quota_litellm: image_tokens must not be negative")
        return cls(
            image_tokens=image_tokens, deny_detail_full=c["deny_detail"] == "full", client_paths_create=c["client_paths"] == "create", redis_url=r["url"], redis_password=password, backend=r["backend"], cluster=bool(r["cluster"]),
            timeout_s=float(r["timeout_s"]), max_connections=int(r["max_connections"]), tree=c["tree"], path=c["path"], also=list(also),
            fallbacks={str(k): str(v) for k, v in (c["fallbacks"] or {}).items()},
            models={str(k): str(v) for k, v in (c["models"] or {}).items()},
            default_price=c["default_price"], default_max_tokens=max_tokens, cap_output=bool(c["cap_output"]),
            request_usage=c["request_usage"], ttl_ms=ttl, fail_open=c["on_redis_error"] == "open", pricing=c["pricing"],
            refuse_other_calls=c["other_calls"] == "refuse", meta=bool(c["meta"]),
        )

    @classmethod
    def from_file(cls, path):
        try:
            with open(path, encoding="utf-8") as f:
                raw = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"quota_litellm: cannot read the config {path}: {e}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"quota_litellm: the config {path} is not a mapping")
        # the file may be the hook's own, or a proxy config.yaml with a `quota:` section
        if "quota" in raw and isinstance(raw["quota"], dict):
            raw = raw["quota"]
        return cls.from_dict(raw)


def string_literals(template):
    return "".join(literal for literal, _, _, _ in string.Formatter().parse(template))


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


CLIENT_FIELDS = ("end_user",)  # and metadata.NAME: values the request body chooses


def is_client_field(name):
    return name in CLIENT_FIELDS or name.startswith("metadata.")


def client_chosen(template, values):
    """Whether a value the client chose (not a fallback) fills a field of the template."""
    return any(is_client_field(n) and values.get(n) not in (None, "") for n in template_fields(template))


class Missing(Exception):
    def __init__(self, name, template):
        super().__init__(name)
        self.name, self.template = name, template


def segment(value):
    """A value as one path segment (1-64 characters of A-Z a-z 0-9 _ - . : @), one to
    one (F7): a value of up to 64 of those characters that does not start with `_` and
    does not end with `_` and 16 hex digits (and is not `.`/`..`) is itself: `user_123`,
    `ann@example.com`. Any other becomes its first 47 characters (others as `_`), `_`
    and 16 hex digits of its SHA-256. Only that form ends so, and it names the whole
    value, so two values never share a segment; a fallback starts with `_`, which
    neither form does."""
    s = str(value)
    if SEGMENT_OK.fullmatch(s) and s not in (".", "..") and not HASHED.fullmatch(s):
        return s
    digest = hashlib.sha256(s.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return SEGMENT_BAD.sub("_", s)[:47].lstrip("_").rjust(1, "x") + "_" + digest


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
            out.append(v)  # the operator's, checked by the config: never a real value's segment
            continue
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


IMAGE_PARTS = {"image_url", "image", "input_image"}
TEXT_PARTS = {"text", "input_text"}
# Other request fields the provider bills as prompt tokens (F4): counted as the text of their JSON.
PROMPT_FIELDS = ("functions", "response_format", "tool_choice")


def count_prompt_tokens(data, call_type, image_tokens=DEFAULT_IMAGE_TOKENS):
    """An estimate of the prompt tokens the provider will bill, never knowingly low:
    the messages' text and the tool definitions (litellm.token_counter), the JSON of
    `functions`, `response_format` and `tool_choice`, and `image_tokens` for each image
    part (an upper bound: images are never downloaded here, F18). A content part of
    another type (audio, files) cannot be sized before the call: refused, 400."""
    model = data.get("model") or ""
    images = 0
    messages = data.get("messages")
    if messages is not None:
        text_messages = []
        for m in messages if isinstance(messages, list) else []:
            content = m.get("content") if isinstance(m, dict) else None
            if isinstance(content, list):
                parts = []
                for part in content:
                    kind = part.get("type") if isinstance(part, dict) else None
                    if kind in TEXT_PARTS:
                        parts.append({"type": "text", "text": str(part.get("text") or "")})
                    elif kind in IMAGE_PARTS:
                        images += 1
                    else:
                        raise refuse(400, f"quota: a content part of type {kind!r} cannot be priced before the call")
                m = dict(m, content=parts)
            text_messages.append(m)
    extra = {k: data[k] for k in PROMPT_FIELDS if data.get(k) is not None}
    try:
        if messages is not None:
            n = int(litellm.token_counter(model=model, messages=text_messages, tools=data.get("tools") or None))
        else:
            prompt = data.get("prompt")
            if isinstance(prompt, list):
                prompt = " ".join(str(p) for p in prompt)
            n = int(litellm.token_counter(model=model, text=str(prompt or "")))
        if extra:
            n += int(litellm.token_counter(model=model, text=json.dumps(extra, default=str)))
    except Exception:  # a tokenizer failure must not let the request through unpriced:
        # a token is at least one byte, so the bytes of the JSON bound the count
        every = {k: data.get(k) for k in ("messages", "prompt", "tools") + PROMPT_FIELDS}
        n = len(json.dumps(every, default=str).encode()) + 1
    return n + images * image_tokens


OUTPUT_CAPS = ("max_tokens", "max_completion_tokens")


def output_cap(data, default, cap_output):
    """The output tokens to reserve per choice, and the body made to say no more (F3).
    When the request gives both caps, the smaller is reserved and BOTH are set to it,
    whichever of the two the provider (or LiteLLM's mapping) honours. A cap that is not
    a non-negative integer is refused (400). Without either, `default`, written as
    max_tokens when cap_output is on."""
    given = []
    for key in OUTPUT_CAPS:
        v = data.get(key)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise refuse(400, f"quota: {key} must be a non-negative integer, not {v!r}")
        given.append(v)
    if not given:
        if cap_output:
            data["max_tokens"] = default  # the model may not write more than was reserved for it
        return default
    out = min(given)
    for key in OUTPUT_CAPS:
        if data.get(key) is not None:
            data[key] = out
    return out


def choices_of(data):
    """How many outputs the provider may write: `n` (chat and text completions)
    and `best_of` (text completions: generated server-side, billed, not returned).
    A value that is not a positive integer is refused (400) rather than guessed."""
    count = 1
    for key in ("n", "best_of"):
        v = data.get(key)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise refuse(400, f"quota: {key} must be a positive integer, not {v!r}")
        count = max(count, v)
    return count


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
    input_tokens: int = 0
    model: str = ""


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
        self._known: Dict[Any, float] = {}  # client-chosen nodes seen to exist (F9)
        # background settles (F11, F12): a heap of jobs run by one daemon thread
        self._later_jobs, self._later_seq = [], itertools.count()
        self._later_lock, self._later_wake = threading.Lock(), threading.Event()
        self._later_thread, self._sync = None, None
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
        return self.plan_full(user_api_key_dict, data)[:5]

    def plan_full(self, user_api_key_dict, data):
        """plan(), and the set of those paths (path, also) that a value the CLIENT
        chose (end_user, metadata.NAME) named: with client_paths: existing they are
        used only when the node exists (F9)."""
        c = self.config
        values = identity(user_api_key_dict, data)
        chosen = set()
        tree = render(c.tree, values, c.fallbacks)  # a value is one segment there too (F13)
        path = render(c.path, values, c.fallbacks)
        if client_chosen(c.path, values):
            chosen.add(path)
        also = []
        for template in c.also:
            try:
                p = render(template, values, c.fallbacks)
            except Missing:
                continue  # an ALSO path whose field is missing is left out
            if p != path and p not in also:
                also.append(p)
                if client_chosen(template, values):
                    chosen.add(p)
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
        return tree, path, also, price, meta, chosen

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
        for key in CLIENT_FALLBACKS:
            if data.get(key):
                # the router would call those models when `model` fails: models quota
                # neither priced nor judged against the access rules
                raise refuse(400, f"quota: client-side {key} are refused (the fallback model would be "
                                  f"neither priced nor checked); the proxy's own fallbacks still apply")
        try:
            tree, path, also, price, meta, chosen = self.plan_full(user_api_key_dict, data)
        except Missing as e:
            raise refuse(403, f"quota: this request has no {e.name} (template {e.template!r}) "
                              f"and the config gives no fallback")
        if price is None:
            raise refuse(403, f"quota: model {data.get('model')!r} has no price mapping "
                              f"(models: or default_price: in the quota_litellm config)")
        # The hold id is the hook's own, random per request: never the client's
        # x-litellm-call-id, so no client-chosen id can name (settle, displace,
        # repeat) another request's hold, in this tree or another (F19, F8).
        hold_id = "litellm-" + secrets.token_hex(16)
        call_id = data.get("litellm_call_id")
        if c.meta and call_id:
            v = meta_value(call_id)
            if v:
                meta["call_id"] = v
        service, model = price.split("/", 1)
        output = output_cap(data, c.default_max_tokens, c.cap_output)
        # n choices (best_of for text completions) may each write up to the cap (F1)
        values = {"input_tokens": count_prompt_tokens(data, call_type, c.image_tokens), "output_tokens": output * choices_of(data)}
        extra = {}
        if c.request_usage:
            extra[c.request_usage] = 1
            values.update(extra)
        self._prune()
        try:
            q = self.quota()
            if chosen and not c.client_paths_create:
                also = [p for p in also if p not in chosen or await self._exists(q, tree, p)]
                if path in chosen and not await self._exists(q, tree, path):
                    raise refuse(403, "quota: this request's path is named by a value the client chose, "
                                      "and quota has no such node (client_paths: existing)")
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
            # The reserve may have been applied although its reply never came (a timeout):
            # give that hold back, or it would keep budget and an INFLIGHT slot for ttl_ms (F11).
            # The id is this request's own, so the release cannot touch another request's hold.
            await self._undo_reserve(tree, hold_id)
            if c.fail_open:
                self.stats["unguarded"] += 1
                log.warning("quota_litellm: Redis unreachable (%s); fail-open: request %s goes unmetered", e, hold_id)
                return data
            log.error("quota_litellm: Redis unreachable (%s); fail-closed: request %s refused", e, hold_id)
            raise refuse(503, "quota: the quota service is unavailable; request refused")
        if not r.allowed:
            self.stats["denied"] += 1
            message = r.message or "quota: request denied"
            if not c.deny_detail_full:
                # quota's message names amounts and nodes ("0.5 available at /"): a member
                # would learn the team's balance; say what ran out only (F14)
                raise refuse(429, message.split(":", 1)[0])
            raise refuse(429, message, denied_by=list(r.denied_by or []), quota_tree=tree, quota_path=path)
        if r.duplicate:  # cannot happen with a fresh random id; never run a request on another's hold
            raise refuse(409, f"quota: hold id {hold_id} was already used")
        nonce = secrets.token_hex(12)
        self._live[hold_id] = Live(nonce=nonce, tree=tree, price=price, extra=extra, estimated=estimated,
                                   input_tokens=values["input_tokens"], model=str(data.get("model") or ""),
                                   deadline=time.monotonic() + c.ttl_ms / 1000 + KEEP_S)
        if md is None:
            md = data.setdefault("metadata", {})
        md[MARK] = f"{hold_id}|{nonce}"
        self.stats["reserved"] += 1
        return data

    async def _exists(self, q, tree, path):
        """Whether the node exists (a hit is remembered for a minute)."""
        key = (tree, path)
        hit = self._known.get(key)
        if hit is not None and hit > time.monotonic():
            return True
        try:
            await q.get(tree, path)
        except NotFound:
            return False
        if len(self._known) > 10000:
            self._known.clear()
        self._known[key] = time.monotonic() + 60
        return True

    async def _undo_reserve(self, tree, hold_id):
        """A reserve whose reply never came may have been applied: release its id
        (this request's own, so no other hold is touched), in the background (F11)."""
        self._later("release", tree, hold_id, retry_notfound=True)

    def _later(self, what, tree, hold_id, retry_notfound=False, **kwargs):
        """Settle in the background, with backoff, until Redis answers (F11, F12):
        one daemon thread per hook with its own client, so the retries outlive the
        request and its event loop, and never stall the worker's loop."""
        # a release is pointless once the hold expired (ttl_ms); a commit is charged after expiry
        until = self.config.ttl_ms / 1000 if what == "release" else SETTLE_RETRY_S
        with self._later_lock:
            if len(self._later_jobs) >= MAX_LATER:
                self.stats["errors"] += 1
                log.error("quota_litellm: %d settles already wait for Redis; the %s of %s is dropped",
                          MAX_LATER, what, hold_id)
                return
            heapq.heappush(self._later_jobs, (time.monotonic() + 0.2, next(self._later_seq),
                                              {"what": what, "tree": tree, "id": hold_id, "kwargs": kwargs,
                                               "retry_notfound": retry_notfound, "since": time.monotonic(),
                                               "until": until,
                                               "delay": 0.5}))
            if self._later_thread is None or not self._later_thread.is_alive():
                self._later_thread = threading.Thread(target=self._later_loop, name="quota-litellm-settle",
                                                      daemon=True)
                self._later_thread.start()
            self._later_wake.set()

    def _sync_quota(self):
        if self._sync is None:
            c = self.config
            t = max(5.0, c.timeout_s * 5)
            kw = dict(password=c.redis_password, socket_timeout=t, socket_connect_timeout=t)
            if c.cluster:
                client = redis.cluster.RedisCluster.from_url(c.redis_url, **kw)
            else:
                client = redis.Redis.from_url(c.redis_url, **kw)
            self._sync = Quota(client, backend=c.backend)
        return self._sync

    def _later_loop(self):
        while True:
            with self._later_lock:
                if not self._later_jobs:
                    self._later_wake.clear()
                    job = None
                else:
                    due, _, job = self._later_jobs[0]
                    if due > time.monotonic():
                        wait, job = due - time.monotonic(), None
                    else:
                        heapq.heappop(self._later_jobs)
            if job is None:
                self._later_wake.wait(wait if self._later_jobs else 60)
                self._later_wake.clear()
                continue
            self._later_try(job)

    def _later_try(self, job):
        what, tree, hold_id = job["what"], job["tree"], job["id"]
        try:
            q = self._sync_quota()
            if what == "commit":
                kwargs = job["kwargs"]
                if "estimate" in kwargs:
                    price, values = kwargs["estimate"]
                    q.commit(tree, hold_id, cost=dict(q.estimate(price, values).charges or {}))
                else:
                    q.commit(tree, hold_id, **kwargs)
            else:
                q.release(tree, hold_id)
            self.stats["committed" if what == "commit" else "released"] += 1
            return
        except QuotaError as e:
            if not (job["retry_notfound"] and isinstance(e, NotFound)):
                log.info("quota_litellm: %s of %s: %s", what, hold_id, e)
                return
            err = e
        except REDIS_DOWN as e:
            err = e
            log.warning("quota_litellm: background %s of %s failed (%s); retrying", what, hold_id, e)
        except Exception:
            log.exception("quota_litellm: background %s of %s failed", what, hold_id)
            return
        # NOTFOUND for a release after a lost reserve: the reserve may still arrive; look
        # again for a short while only
        limit = min(10, job["until"]) if isinstance(err, NotFound) else job["until"]
        if time.monotonic() - job["since"] > limit:
            if not isinstance(err, NotFound):
                self.stats["errors"] += 1
                log.error("quota_litellm: gave up the %s of %s", what, hold_id)
            return
        with self._later_lock:
            heapq.heappush(self._later_jobs, (time.monotonic() + job["delay"], next(self._later_seq), job))
            job["delay"] = min(job["delay"] * 2, 30.0)

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

    async def _settle_now(self, what, tree, hold_id, kwargs):
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

    async def _settle(self, what, tree, hold_id, **kwargs):
        for attempt in range(3):
            try:
                await self._settle_now(what, tree, hold_id, kwargs)
                return
            except REDIS_DOWN as e:  # idempotent ids make a retry harmless
                log.warning("quota_litellm: %s of %s failed (%s), attempt %d", what, hold_id, e, attempt + 1)
                await asyncio.sleep(0.05 * (attempt + 1))
            except QuotaError as e:
                log.error("quota_litellm: %s of %s refused: %s", what, hold_id, e)
                self.stats["errors"] += 1
                return
        # Redis is away: settle later rather than never (F12). A commit after the hold
        # expired is still charged (`expired` 1), so a blip does not make the call free.
        log.warning("quota_litellm: %s of %s handed to the background retries", what, hold_id)
        self._later(what, tree, hold_id, **kwargs)

    async def async_post_call_success_hook(self, data, user_api_key_dict, response):
        # Non-streaming responses are settled here, before the caller gets them.
        if not data.get("stream"):
            await self._commit(marker_of(data), response)
        return response

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        # Streaming responses (and anything the hook above did not settle):
        # LiteLLM calls this with the assembled response and its final usage.
        await self._commit(marker_of(kwargs), response_obj)

    async def async_post_call_streaming_iterator_hook(self, user_api_key_dict, response, request_data):
        """Passes the stream through, counting the text it carried. A stream that
        breaks after output was sent is committed, not released (F15): the provider
        bills the prompt and what it wrote; the hook charges the prompt as reserved and
        the output it saw (token_counter of the streamed text, at least 1 token)."""
        seen = []
        try:
            async for chunk in response:
                try:
                    for choice in getattr(chunk, "choices", None) or []:
                        text = getattr(getattr(choice, "delta", None), "content", None)
                        if text:
                            seen.append(text)
                except Exception:
                    pass
                yield chunk
        except (GeneratorExit, asyncio.CancelledError):
            raise
        except Exception:
            if seen:
                await self._commit_partial(marker_of(request_data), "".join(seen))
            raise

    async def _commit_partial(self, marker, text):
        try:
            hold_id, live = self._take(marker)
            if live is None:
                return
            try:
                out = int(litellm.token_counter(model=live.model, text=text))
            except Exception:
                out = len(text.encode())
            values = {"input_tokens": live.input_tokens, "output_tokens": max(out, 1)}
            values.update(live.extra)
            kwargs = {"estimate": (live.price, values)} if live.estimated else {"usage": {live.price: values}}
            await self._settle("commit", live.tree, hold_id, **kwargs)
        except Exception:
            self.stats["errors"] += 1
            log.exception("quota_litellm: commit of a broken stream failed")

    async def async_post_call_failure_hook(self, request_data, original_exception, user_api_key_dict,
                                           traceback_str=None):
        # The proxy's final failure of a request (after LiteLLM's own retries and
        # fallbacks): provider errors, timeouts, a stream that broke.
        await self._release(marker_of(request_data))
        return None


def _default_instance():
    """The proxy's hook. Its config is read and checked HERE, when the proxy imports
    this module at startup, so a bad config stops the proxy with the message (F6).
    Without QUOTA_LITELLM_CONFIG and without ./quota_litellm.yaml (an import outside a
    proxy, tests) it is read at the first request."""
    path = os.environ.get(CONFIG_ENV)
    if path is None and os.path.exists("quota_litellm.yaml"):
        path = "quota_litellm.yaml"
    if path is None:
        return QuotaHook()
    return QuotaHook(config=Config.from_file(path), config_path=path)


quota_hook = _default_instance()
