"""`Quota` (redis-py sync) and `AsyncQuota` (redis.asyncio): one method per
quota command.

Both classes share every method of `_Commands`: a method builds the command's
arguments and hands them, with the command's name and a decoder, to
`self._call`, which runs the one flow that sends a command (`_call_flow`:
detect the backend, route, send, map errors, decode). The classes differ only
in how they run it: `Quota` with `run_sync` (the decoded reply), `AsyncQuota`
with `run_async` (a coroutine). The command table (`SPECS`) says, per command,
how it is sent to the module (`QUOTA.X key args`) and to the Lua library
(`FCALL[_RO] quota_x 1 key args`), and where it goes on a cluster.
"""

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, Iterable, List, Mapping, Optional, Tuple, Union

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.exceptions import AskError, MovedError, NoPermissionError, ResponseError, TryAgainError

from . import replies as R
from .errors import CLUSTER_ERRORS, NotLoaded, PartialWrite, from_response_error
from .helpers import Batch, EventFeed, HoldContext, generate_all_flow, run_async, run_sync
from .items import Cost, Usage, amount as _amount, as_item, integer, one_item

# Argument types (the package ships py.typed; review20 F4).
Key = Union[str, bytes]                     # a tree key
Text = Union[str, bytes]                    # a path, an id, a name
AmountIn = Union[Decimal, int, str]         # exact amounts only (a float raises TypeError)
CostIn = Union[Mapping[str, AmountIn], Cost]                       # {"credits": Decimal("30")}
UsageIn = Union[Mapping[str, Mapping[str, AmountIn]], Usage]      # {"chat/gpt-4o": {"input_tokens": 1200}}
ItemIn = Union[Cost, Usage, Mapping[str, Any]]
MetaIn = Union[Mapping[str, Text], Iterable[Tuple[Text, Text]]]
Paths = Union[Text, Iterable[Text]]
JsonIn = Union[str, bytes, Mapping[str, Any]]
SyncClient = Union[redis.Redis, redis.cluster.RedisCluster]
AsyncClient = Union[redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster]

MODULE, LUA = "module", "lua"
_REDIRECTS = (MovedError, AskError, TryAgainError)
NOT_LOADED = "quota is not loaded on this server: load the module or run quota-load"


@dataclass(frozen=True)
class Spec:
    """How a command is sent."""

    command: str          # the module command: QUOTA.RESERVE
    verb: tuple           # words after it for keyless commands: ("SET",), ("CLOCK", "GET")
    function: str         # the Lua function: quota_reserve
    keyed: bool           # takes the tree key as its one key
    read_only: bool       # FCALL_RO (the function is no-writes)
    everywhere: bool = False  # server-wide write: every primary of a (module) cluster
    book: str = None      # Lua on a cluster: the key whose node serves it

    @property
    def label(self):
        return " ".join((self.command,) + self.verb)

    def wire(self, backend, key, args):
        if backend == MODULE:
            head = [self.command, key] if self.keyed else [self.command, *self.verb]
            return head + list(args)
        call = "FCALL_RO" if self.read_only else "FCALL"
        head = [call, self.function, 1, key] if self.keyed else [call, self.function, 0, *self.verb]
        return head + list(args)


def _tree(name, ro=False):
    return Spec("QUOTA." + name.upper(), (), "quota_" + name, True, ro)


SPECS = {name: _tree(name) for name in (
    "set", "unset", "delpath", "allow", "deny", "access", "reserve", "commit", "release", "extend", "charge",
    "grant", "revoke", "reset", "assign", "label", "archive", "restore")}
SPECS.update({name: _tree(name, ro=True) for name in ("get", "tree", "holds", "history", "events", "grants", "usage")})
SPECS.update({
    "price_set": Spec("QUOTA.PRICE", ("SET",), "quota_price", False, False, True, "quota:prices"),
    "price_del": Spec("QUOTA.PRICE", ("DEL",), "quota_price", False, False, True, "quota:prices"),
    "price_get": Spec("QUOTA.PRICE", ("GET",), "quota_price_ro", False, True, False, "quota:prices"),
    "price_list": Spec("QUOTA.PRICE", ("LIST",), "quota_price_ro", False, True, False, "quota:prices"),
    "plan_set": Spec("QUOTA.PLAN", ("SET",), "quota_plan", False, False, True, "quota:plans"),
    "plan_del": Spec("QUOTA.PLAN", ("DEL",), "quota_plan", False, False, True, "quota:plans"),
    "plan_get": Spec("QUOTA.PLAN", ("GET",), "quota_plan_ro", False, True, False, "quota:plans"),
    "plan_list": Spec("QUOTA.PLAN", ("LIST",), "quota_plan_ro", False, True, False, "quota:plans"),
    "estimate": Spec("QUOTA.ESTIMATE", (), "quota_estimate", False, True, False, "quota:prices"),
    # quota_debug writes (the Lua clock is a key): FCALL, not FCALL_RO.
    "clock_set": Spec("QUOTA.DEBUG", ("CLOCK", "SET"), "quota_debug", False, False, True, "quota:clock"),
    "clock_advance": Spec("QUOTA.DEBUG", ("CLOCK", "ADVANCE"), "quota_debug", False, False, True, "quota:clock"),
    "clock_get": Spec("QUOTA.DEBUG", ("CLOCK", "GET"), "quota_debug", False, False, False, "quota:clock"),
    "version": Spec("QUOTA.VERSION", (), "quota_version", False, True),
})


# ----- decoders of simple replies -------------------------------------------------


def _text(v):
    return v.decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else v


def _ok(raw):
    return _text(raw)


def _int(raw):
    return int(_text(raw))


def _strs(raw):
    return [_text(x) for x in raw or []]


def _one(cls):
    return lambda raw: R.decode(cls, raw)


def _many(cls):
    return lambda raw: R.decode_list(cls, raw)


def _merge(results):
    """One value for a write sent to every primary."""
    values = list(results.values()) if isinstance(results, dict) else [results]
    values = [_text(v) for v in values]
    if all(v == values[0] for v in values):
        return values[0]
    if all(isinstance(v, int) for v in values):
        return max(values)
    return values[0]


# ----- argument helpers -----------------------------------------------------------


def _word(value):
    """A text argument: str and bytes are sent as they are (bytes never as
    their repr, "b'job-1'"), anything else as str(value)."""
    if isinstance(value, (str, bytes, bytearray, memoryview)):
        return value
    return str(value)


def _opt(word, value, conv=_word):
    return [] if value is None else [word, conv(value)]


def _anchor(value):
    """ANCHOR: an int (a month's day) or a text (a week's day, a year's MM-DD)."""
    if isinstance(value, (str, bytes, bytearray, memoryview)):
        return value
    return integer(value, "ANCHOR")


def _flag(word, on):
    return [word] if on else []


def _paths(also):
    if also is None:
        return []
    if isinstance(also, (str, bytes)):
        also = [also]
    out = []
    for p in also:
        out += ["ALSO", p]  # one ALSO each: a path named like a keyword stays a path
    return out


def _meta(meta):
    if not meta:
        return []
    pairs = meta.items() if isinstance(meta, dict) else meta
    out = ["META"]
    for k, v in pairs:
        out += [k, v]
    return out


def _service(service, model):
    if model is not None and service is None:
        raise ValueError("model= needs service=")
    return _opt("SERVICE", service) + _opt("MODEL", model)


def _ms(v):
    return integer(v, "a time or duration in ms")


def _count(v):
    return integer(v, "count")


_MODES = {"all": "ALL", "upto": "UPTO", "dryrun": "DRYRUN"}


def _mode(mode):
    if mode is None:
        return []
    m = _MODES.get(str(_text(mode)).lower())
    if m is None:
        raise ValueError(f"mode= is 'all', 'upto' or 'dryrun', not {mode!r}")
    return [m]


def _window(window):
    if window is None:
        return []
    parts = str(_text(window)).split()
    return ["WINDOW", *parts]


def _warn(warn):
    if warn is None:
        return []
    if isinstance(warn, (str, bytes)):
        return ["WARN", warn]
    return ["WARN", ",".join(integer(w, "a WARN percentage") for w in warn)]


def _tags(tags):
    if tags is None:
        return []
    if isinstance(tags, (str, bytes)):
        return ["TAGS", tags]
    return ["TAGS", ",".join(_text(t) for t in tags)]


def _json(value):
    """A price or plan: JSON text as is, or a dict dumped (Decimal as string)."""
    if isinstance(value, (str, bytes)):
        return value

    def default(o):
        if isinstance(o, Decimal):
            return format(o, "f")
        raise TypeError(f"{type(o).__name__} is not JSON")

    def no_floats(o):
        if isinstance(o, float):
            raise TypeError("amounts are exact: pass Decimal, int or str, not float")
        if isinstance(o, dict):
            for v in o.values():
                no_floats(v)
        if isinstance(o, (list, tuple)):
            for v in o:
                no_floats(v)

    no_floats(value)
    return json.dumps(value, default=default, separators=(",", ":"))


def _tree_path(path):
    """QUOTA.TREE reads a last argument `archived` (any case) as the ARCHIVED
    flag: a path named so is sent as `/archived` (README QUOTA.TREE), so
    tree(t, "archived") is that node, never the whole tree (review20 F1)."""
    text = _text(path)
    if isinstance(text, str) and text.lower() == "archived":
        return "/" + text
    return path


def _tree_reply(json_format):
    if json_format:
        return lambda raw: R.decode_json(R.TreeNode, raw)
    return _one(R.TreeNode)


# ----- the commands ---------------------------------------------------------------


class _Commands:
    """Every quota command as a method. The tree key is the first positional
    argument of every tree command; the rest are keywords."""

    # -- policies and rules

    def set(self, tree: Key, path: Text, policy: Text, *, metric: Text, limit: AmountIn,
            window: Optional[Text] = None, anchor: Union[int, Text, None] = None, tz: Optional[Text] = None,
            mode: Optional[Text] = None,
            warn: Union[Text, Iterable[int], None] = None, rollover: Optional[AmountIn] = None,
            service: Optional[Text] = None, model: Optional[Text] = None, low: Optional[AmountIn] = None,
            inflight: bool = False) -> str:
        """QUOTA.SET. `window`: "month", "rolling 30d", …; `anchor`: a month's
        day (15), a week's day ("sunday"), a year's start ("04-01"); `tz`:
        "America/New_York", "+05:30"; `warn`: [80, 90]."""
        args = [path, policy, "METRIC", metric, "LIMIT", _amount(limit)] + _window(window)
        args += _opt("ANCHOR", anchor, _anchor) + _opt("TZ", tz) + _opt("MODE", mode) + _warn(warn)
        args += _opt("ROLLOVER", rollover, _amount) + _service(service, model) + _opt("LOW", low, _amount)
        args += _flag("INFLIGHT", inflight)
        return self._call("set", tree, args, _ok)

    def unset(self, tree: Key, path: Text, policy: Text) -> str:
        return self._call("unset", tree, [path, policy], _ok)

    def delpath(self, tree: Key, path: Text) -> int:
        return self._call("delpath", tree, [path], _int)

    def allow(self, tree: Key, path: Text, *, service: Text, model: Optional[Text] = None,
              remove: bool = False) -> int:
        return self._call("allow", tree, [path] + _service(service, model) + _flag("REMOVE", remove), _int)

    def deny(self, tree: Key, path: Text, *, service: Text, model: Optional[Text] = None,
             remove: bool = False) -> int:
        return self._call("deny", tree, [path] + _service(service, model) + _flag("REMOVE", remove), _int)

    def access(self, tree: Key, path: Text = "/", *, clear: bool = False) -> Union[R.AccessRules, int]:
        """The node's own rules (AccessRules); with clear=True removes them
        and returns how many."""
        if clear:
            return self._call("access", tree, [path, "CLEAR"], _int)
        return self._call("access", tree, [path], _one(R.AccessRules))

    # -- spending

    def reserve(self, tree: Key, *, path: Text, also: Optional[Paths] = None, id: Optional[Text] = None,
                ttl_ms: Optional[int] = None, service: Optional[Text] = None, model: Optional[Text] = None,
                meta: Optional[MetaIn] = None, mode: Optional[Text] = None, brief: bool = False,
                cost: Optional[CostIn] = None, usage: Optional[UsageIn] = None,
                items: Optional[Iterable[ItemIn]] = None) -> R.Reservation:
        """QUOTA.RESERVE. One item with cost= ({"credits": Decimal("30")}) or
        usage= ({"chat/gpt-4o": {"input_tokens": 1200}}), or a batch with
        items=[Cost(...), Usage(...), ...]; mode="all"|"upto"|"dryrun"."""
        args = ["PATH", path] + _paths(also) + _opt("ID", id) + _opt("TTL", ttl_ms, _ms)
        args += _service(service, model) + _meta(meta) + _mode(mode) + _flag("BRIEF", brief)
        if items is not None:
            if cost is not None or usage is not None:
                raise ValueError("give items=, or cost=/usage=, not both")
            items = [as_item(i) for i in items]
            if not items:
                raise ValueError("items= is empty")
        else:
            items = [one_item(cost, usage)]
        for item in items:
            args += item.args()
        return self._call("reserve", tree, args, _one(R.Reservation))

    def commit(self, tree: Key, id: Text, *, item: Optional[int] = None, cost: Optional[CostIn] = None,
               usage: Optional[UsageIn] = None) -> R.Commit:
        """QUOTA.COMMIT: the actual cost= or usage= (default: what was
        reserved); item= settles one item of a batch."""
        args = [id] + _opt("ITEM", item, integer)
        actual = one_item(cost, usage, required=False)
        if actual is not None:
            args += actual.args()
        return self._call("commit", tree, args, _one(R.Commit))

    def release(self, tree: Key, id: Text, *, item: Optional[int] = None) -> R.Release:
        return self._call("release", tree, [id] + _opt("ITEM", item, integer), _one(R.Release))

    def extend(self, tree: Key, id: Text, ttl_ms: int) -> R.Extend:
        return self._call("extend", tree, [id, _ms(ttl_ms)], _one(R.Extend))

    def charge(self, tree: Key, *, path: Text, also: Optional[Paths] = None, id: Optional[Text] = None,
               service: Optional[Text] = None, model: Optional[Text] = None, meta: Optional[MetaIn] = None,
               check: bool = False, brief: bool = False, cost: Optional[CostIn] = None,
               usage: Optional[UsageIn] = None) -> R.Charge:
        """QUOTA.CHARGE: records usage that already happened (check=True:
        only if every strict and block policy passes)."""
        args = ["PATH", path] + _paths(also) + _opt("ID", id) + _service(service, model) + _meta(meta)
        args += _flag("CHECK", check) + _flag("BRIEF", brief) + one_item(cost, usage).args()
        return self._call("charge", tree, args, _one(R.Charge))

    # -- reading

    def get(self, tree: Key, path: Text = "/") -> R.Node:
        return self._call("get", tree, [path], _one(R.Node))

    def tree(self, tree: Key, path: Optional[Text] = None, *, depth: Optional[int] = None,
             count: Optional[int] = None, format: Optional[str] = None, tag: Optional[Text] = None,
             after: Optional[Text] = None, archived: bool = False) -> R.TreeNode:
        """QUOTA.TREE as a TreeNode; format="json" asks for the JSON form and
        decodes it to the same TreeNode."""
        if format is not None and format not in ("json", "resp"):
            raise ValueError("format= is 'json' or 'resp'")
        args = ([_tree_path(path)] if path is not None else []) + _opt("DEPTH", depth, integer)
        args += _opt("COUNT", count, _count)
        args += _opt("FORMAT", format) + _opt("TAG", tag) + _opt("AFTER", after) + _flag("ARCHIVED", archived)
        return self._call("tree", tree, args, _tree_reply(format == "json"))

    def holds(self, tree: Key, path: Optional[Text] = None, *, count: Optional[int] = None) -> List[R.Hold]:
        args = ([path] if path is not None else []) + _opt("COUNT", count, _count)
        return self._call("holds", tree, args, _many(R.Hold))

    def history(self, tree: Key, path: Text, policy: Text) -> List[R.HistoryPeriod]:
        return self._call("history", tree, [path, policy], _many(R.HistoryPeriod))

    def events(self, tree: Key, *, since: Optional[int] = None, count: Optional[int] = None) -> List[R.Event]:
        """QUOTA.EVENTS: one page of the log (see follow_events() for the
        catch-up feed)."""
        args = _opt("SINCE", since, integer) + _opt("COUNT", count, _count)
        return self._call("events", tree, args, _many(R.Event))

    def usage(self, tree: Key, path: Text = "/", *, since: Optional[int] = None, until: Optional[int] = None,
              by: Optional[Text] = None, metric: Optional[Text] = None, service: Optional[Text] = None,
              model: Optional[Text] = None, group: Optional[Text] = None) -> R.UsageReport:
        args = [path] + _opt("SINCE", since, _ms) + _opt("UNTIL", until, _ms) + _opt("BY", by)
        args += _opt("METRIC", metric) + _service(service, model) + _opt("GROUP", group)
        return self._call("usage", tree, args, _one(R.UsageReport))

    # -- credits, plans, labels

    def grant(self, tree: Key, path: Text, policy: Text, amount: AmountIn, *, id: Optional[Text] = None,
              expires: Optional[int] = None, duration: Optional[Text] = None, period: bool = False,
              priority: Optional[int] = None, note: Optional[Text] = None) -> R.GrantReply:
        """QUOTA.GRANT. Lifetime: expires= (Unix ms), duration= ("7d": FOR)
        or period=True; none: until used up."""
        args = [path, policy, _amount(amount)] + _opt("ID", id) + _opt("EXPIRES", expires, _ms)
        args += _opt("FOR", duration) + _flag("PERIOD", period) + _opt("PRIORITY", priority, integer)
        args += _opt("NOTE", note)
        return self._call("grant", tree, args, _one(R.GrantReply))

    def grants(self, tree: Key, path: Text, policy: Text, *, count: Optional[int] = None) -> List[R.Grant]:
        return self._call("grants", tree, [path, policy] + _opt("COUNT", count, _count), _many(R.Grant))

    def revoke(self, tree: Key, path: Text, policy: Text, grant_id: Text) -> R.Revoke:
        return self._call("revoke", tree, [path, policy, grant_id], _one(R.Revoke))

    def reset(self, tree: Key, path: Text, policy: Text) -> R.HistoryPeriod:
        return self._call("reset", tree, [path, policy], _one(R.HistoryPeriod))

    def assign(self, tree: Key, plan: Optional[Text]) -> str:
        """QUOTA.ASSIGN: plan=None follows no plan (NONE)."""
        return self._call("assign", tree, ["NONE" if plan is None else plan], _ok)

    def label(self, tree: Key, path: Text, *, note: Optional[Text] = None,
              tags: Union[Text, Iterable[Text], None] = None) -> R.Labels:
        """QUOTA.LABEL: note="" clears the note, tags=[] clears the tags."""
        if note is None and tags is None:
            raise ValueError("label() needs note= or tags=")
        return self._call("label", tree, [path] + _opt("NOTE", note) + _tags(tags), _one(R.Labels))

    def archive(self, tree: Key, path: Text) -> int:
        return self._call("archive", tree, [path], _int)

    def restore(self, tree: Key, path: Text) -> int:
        return self._call("restore", tree, [path], _int)

    # -- the price book, the plan book, estimates (server-wide)

    def price_set(self, name: Text, price: JsonIn) -> str:
        """price: the JSON text, or a dict (Decimal values written as strings)."""
        return self._call("price_set", None, [name, _json(price)], _ok)

    def price_get(self, name: Text) -> Optional[R.Price]:
        return self._call("price_get", None, [name], lambda raw: R.decode_json(R.Price, raw))

    def price_del(self, name: Text) -> int:
        return self._call("price_del", None, [name], _int)

    def price_list(self) -> List[str]:
        return self._call("price_list", None, [], _strs)

    def plan_set(self, name: Text, plan: JsonIn) -> int:
        """Returns the plan's version."""
        return self._call("plan_set", None, [name, _json(plan)], _int)

    def plan_get(self, name: Text) -> Optional[R.Plan]:
        return self._call("plan_get", None, [name], lambda raw: R.decode_json(R.Plan, raw))

    def plan_del(self, name: Text) -> int:
        return self._call("plan_del", None, [name], _int)

    def plan_list(self) -> List[str]:
        return self._call("plan_list", None, [], _strs)

    def estimate(self, price: Text, values: Mapping[str, AmountIn]) -> R.Estimate:
        """QUOTA.ESTIMATE "service/model" {name: value, …}."""
        if not values:
            raise ValueError("estimate() needs usage values")
        args = [price]
        for n, v in values.items():
            args += [n, _amount(v)]
        return self._call("estimate", None, args, _one(R.Estimate))

    # -- the test clock (servers loaded with TEST_CLOCK yes / quota-load --test-clock)

    def clock_set(self, ms: int) -> int:
        return self._call("clock_set", None, [_ms(ms)], _int)

    def clock_advance(self, ms: int) -> int:
        return self._call("clock_advance", None, [_ms(ms)], _int)

    def clock_get(self) -> int:
        return self._call("clock_get", None, [], _int)

    def version(self) -> Optional[str]:
        """The Lua library's version; None on the module."""
        return self._call("version", None, [], _text)

    # -- helpers (helpers.py), the same flows on both classes

    def hold(self, tree: Key, **kwargs: Any) -> HoldContext:
        """Reserve (raising Denied when refused); on a normal exit commit
        (the actual cost/usage given to the handle, else what was held), on
        an exception release and re-raise. `with` on Quota, `async with` on
        AsyncQuota:

            with q.hold("acme", path="p1", cost={"credits": 30}) as h:
                ...
                h.actual(cost={"credits": Decimal("27.5")})
        """
        return HoldContext(self, tree, kwargs)

    def generate_all(self, tree: Key, *, path: Text, items: Iterable[ItemIn],
                     choose: Union[str, Callable[[R.Reservation], Any], None], **kwargs: Any) -> Batch:
        """README "Generate All": preview (DRYRUN), reserve ALL when
        everything fits, else ask choose(preview) ("first" | "stop") and
        reserve UPTO, with an ID; returns a Batch."""
        return self._run(generate_all_flow(self, tree, path=path, items=items, choose=choose, **kwargs))

    def follow_events(self, tree: Key, since: Union[int, R.Event] = 0, *, count: int = 100,
                      idle_timeout: Optional[float] = None) -> EventFeed:
        """Every event of the tree after `since`, then live ones, in seq
        order, without duplicates; a `Gap` where the log lost events (or
        restarted: `reset` 1). `since` is a seq, or the last Event handled
        (which lets the feed tell a re-created tree's log from the old one).
        An iterator on Quota, an async iterator on AsyncQuota."""
        return EventFeed(self, tree, since, count, idle_timeout)

    # -- how a command is sent: one flow for both classes, which run it with
    # their own driver (run_sync, or run_async awaiting each call)

    def _call(self, name, key, args, decoder):
        return self._run(self._call_flow(name, key, args, decoder))

    def _detect(self):
        return self._run(self._detect_flow())

    def _detect_flow(self):
        yield self._ready
        route = _probe_route(self._r)
        try:
            yield lambda: self._exec(["QUOTA.PRICE", "LIST"], route)
            self._backend = MODULE
        except CLUSTER_ERRORS:
            raise
        except ResponseError as e:
            if isinstance(e, NoPermissionError):
                self._backend = MODULE  # there, but refused (ACL)
            elif not _module_probe_failed(e):
                # BUSY, LOADING, …: the server cannot tell now; say so, and
                # detect again on the next call (nothing is cached).
                raise from_response_error(e, "QUOTA.PRICE LIST") from None
            else:
                try:
                    yield lambda: self._exec(["FCALL_RO", "quota_version", 0], route)
                except CLUSTER_ERRORS:
                    raise
                except ResponseError as e2:
                    text = str(e2).lower()
                    if "function not found" in text or "unknown command" in text:
                        raise NotLoaded(NOT_LOADED) from None
                    raise from_response_error(e2, "FCALL_RO quota_version") from None  # NOPERM, …
                self._backend = LUA
        return self._backend

    def _call_flow(self, name, key, args, decoder):
        yield self._ready
        spec = SPECS[name]
        backend = self._backend
        if backend is None:
            backend = yield from self._detect_flow()
        if name == "version" and backend == MODULE:
            return None
        route = _route(self._r, spec, backend, key)
        wire = spec.wire(backend, key, args)
        if _everywhere(route):
            raw = yield from self._everywhere_flow(spec, wire, route["target_nodes"])
            return decoder(raw)
        try:
            try:
                raw = yield lambda: self._exec(wire, route)
            except _REDIRECTS:
                if not spec.keyed:
                    raise
                raw = yield lambda: self._exec(wire, {})  # the slot moved: redis-py follows MOVED and ASK
        except CLUSTER_ERRORS:
            raise  # redis-py's own cluster errors pass through (review20 F5)
        except ResponseError as e:
            raise from_response_error(e, spec.label) from None
        return decoder(raw)

    def _everywhere_flow(self, spec, wire, nodes):
        """A server-wide write, primary by primary (review20 F15): when some
        took it and some failed, PartialWrite says which; when all failed,
        the first error is raised as for any command."""
        results, errors = {}, {}
        for node in nodes:
            try:
                results[node.name] = yield lambda node=node: self._exec(wire, {"target_nodes": node})
            except CLUSTER_ERRORS as e:
                errors[node.name] = e
            except ResponseError as e:
                errors[node.name] = from_response_error(e, spec.label)
            except Exception as e:  # noqa: BLE001 - a connection error of one primary
                errors[node.name] = e
        if errors and not results:
            raise next(iter(errors.values()))
        if errors:
            raise PartialWrite(spec.label, results, errors)
        return _merge(results)


# ----- routing (shared) -----------------------------------------------------------


def _is_cluster(r):
    return isinstance(r, (redis.cluster.RedisCluster, redis.asyncio.cluster.RedisCluster))


def _primaries(r):
    # Explicit nodes, not the PRIMARIES flag: some redis-py versions look
    # for a key before they honour the flag.
    return list(r.get_primaries())


def _route(r, spec, backend, key):
    """execute_command's keyword arguments: where the command goes."""
    if not _is_cluster(r):
        return {}
    if spec.keyed:
        return {"target_nodes": r.get_node_from_key(key)}
    if backend == LUA and spec.book:
        # The Lua library keeps the price book, the plan book and the test
        # clock as keys: one slot, one node.
        return {"target_nodes": r.get_node_from_key(spec.book)}
    if spec.everywhere:
        return {"target_nodes": _primaries(r)}
    return {"target_nodes": r.get_default_node()}


def _everywhere(route):
    return isinstance(route.get("target_nodes"), list)


def _probe_route(r):
    return {"target_nodes": r.get_default_node()} if _is_cluster(r) else {}


def _module_probe_failed(exc):
    """Whether a QUOTA.PRICE LIST error says the module is not there (an ACL
    refusal, for one, says it is)."""
    text = str(exc).lower()
    return "unknown command" in text


def _check_backend(backend):
    if backend not in (None, MODULE, LUA):
        raise ValueError("backend= is 'module', 'lua' or None (detected)")
    return backend


# ----- sync -----------------------------------------------------------------------


class Quota(_Commands):
    """quota over a redis-py client.

    ``Quota(redis.Redis(...))`` and ``Quota(redis.cluster.RedisCluster(...))``
    give a sync client; ``Quota(redis.asyncio.Redis(...))`` (or an asyncio
    RedisCluster) returns an `AsyncQuota`, whose methods are coroutines.
    The backend is detected on first use, or forced with backend="module" or
    "lua".
    """

    def __new__(cls, client=None, *args, **kwargs):
        if cls is Quota and isinstance(client, (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster)):
            obj = object.__new__(AsyncQuota)
            obj.__init__(client, *args, **kwargs)
            return obj
        return object.__new__(cls)

    def __init__(self, client: SyncClient, *, backend: Optional[str] = None) -> None:
        if isinstance(client, (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster)):
            raise TypeError("an asyncio client: use AsyncQuota (Quota(client) returns one)")
        self._r = client
        self._backend = _check_backend(backend)

    @property
    def client(self) -> SyncClient:
        return self._r

    @property
    def backend(self) -> str:
        """"module" or "lua" (detected on first use)."""
        return self._backend or self._detect()

    def _exec(self, wire, route):
        return self._r.execute_command(*wire, **route)

    def _ready(self):
        return None

    def _pubsub(self, tree):
        # Our own push handler: without one, redis-py on RESP3 logs every
        # message (event payloads, META included) at INFO on the
        # "push_response" logger, with a handler of its own (review20 F12).
        if isinstance(self._r, redis.cluster.RedisCluster):
            node = self._r.get_node_from_key(tree)
            return _with_push_handler(self._r.pubsub, _push_passthrough, node.redis_connection.connection_pool
                                      .connection_kwargs if node.redis_connection else {}, node=node)
        return _with_push_handler(self._r.pubsub, _push_passthrough, self._r.connection_pool.connection_kwargs)

    _run = staticmethod(run_sync)


# ----- async ----------------------------------------------------------------------


if TYPE_CHECKING:
    # Type checkers see AsyncQuota's coroutine signatures (below), not the
    # sync ones of _Commands it runs at run time.
    _AsyncBase = object
else:
    _AsyncBase = _Commands


class AsyncQuota(_AsyncBase):
    """quota over redis.asyncio: every method is a coroutine (hold() is an
    `async with`, follow_events() an `async for`)."""

    def __init__(self, client: AsyncClient, *, backend: Optional[str] = None) -> None:
        if not isinstance(client, (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster)):
            raise TypeError("AsyncQuota takes a redis.asyncio client")
        self._r = client
        self._backend = _check_backend(backend)
        self._initialized = False

    @property
    def client(self) -> AsyncClient:
        return self._r

    async def detect(self) -> str:
        """The backend ("module" or "lua"), detecting it if needed."""
        return self._backend or await self._detect()

    async def _exec(self, wire, route):
        return await self._r.execute_command(*wire, **route)

    def _ready(self):
        if self._initialized:
            return None
        return self._initialize()

    async def _initialize(self):
        if isinstance(self._r, redis.asyncio.cluster.RedisCluster):
            await self._r.initialize()  # the slot map, before routing by it
        self._initialized = True

    if TYPE_CHECKING:
        # What type checkers see: the methods of _Commands as coroutines
        # (at run time they are the same methods, run by run_async).
        # Generated from _Commands' signatures; keep in step with them.
        def hold(self, tree: Key, **kwargs: Any) -> HoldContext: ...

        def follow_events(self, tree: Key, since: Union[int, R.Event] = 0, *, count: int = 100,
                          idle_timeout: Optional[float] = None) -> EventFeed: ...

        async def set(self, tree: Key, path: Text, policy: Text, *, metric: Text, limit: AmountIn,
                      window: Optional[Text] = None, anchor: Union[int, Text, None] = None,
                      tz: Optional[Text] = None, mode: Optional[Text] = None,
                      warn: Union[Text, Iterable[int], None] = None, rollover: Optional[AmountIn] = None,
                      service: Optional[Text] = None, model: Optional[Text] = None, low: Optional[AmountIn] = None,
                      inflight: bool = False) -> str: ...

        async def unset(self, tree: Key, path: Text, policy: Text) -> str: ...

        async def delpath(self, tree: Key, path: Text) -> int: ...

        async def allow(self, tree: Key, path: Text, *, service: Text, model: Optional[Text] = None,
                        remove: bool = False) -> int: ...

        async def deny(self, tree: Key, path: Text, *, service: Text, model: Optional[Text] = None,
                       remove: bool = False) -> int: ...

        async def access(self, tree: Key, path: Text = "/", *, clear: bool = False) -> Union[R.AccessRules, int]: ...

        async def reserve(self, tree: Key, *, path: Text, also: Optional[Paths] = None, id: Optional[Text] = None,
                          ttl_ms: Optional[int] = None, service: Optional[Text] = None, model: Optional[Text] = None,
                          meta: Optional[MetaIn] = None, mode: Optional[Text] = None, brief: bool = False,
                          cost: Optional[CostIn] = None, usage: Optional[UsageIn] = None,
                          items: Optional[Iterable[ItemIn]] = None) -> R.Reservation: ...

        async def commit(self, tree: Key, id: Text, *, item: Optional[int] = None, cost: Optional[CostIn] = None,
                         usage: Optional[UsageIn] = None) -> R.Commit: ...

        async def release(self, tree: Key, id: Text, *, item: Optional[int] = None) -> R.Release: ...

        async def extend(self, tree: Key, id: Text, ttl_ms: int) -> R.Extend: ...

        async def charge(self, tree: Key, *, path: Text, also: Optional[Paths] = None, id: Optional[Text] = None,
                         service: Optional[Text] = None, model: Optional[Text] = None, meta: Optional[MetaIn] = None,
                         check: bool = False, brief: bool = False, cost: Optional[CostIn] = None,
                         usage: Optional[UsageIn] = None) -> R.Charge: ...

        async def get(self, tree: Key, path: Text = "/") -> R.Node: ...

        async def tree(self, tree: Key, path: Optional[Text] = None, *, depth: Optional[int] = None,
                       count: Optional[int] = None, format: Optional[str] = None, tag: Optional[Text] = None,
                       after: Optional[Text] = None, archived: bool = False) -> R.TreeNode: ...

        async def holds(self, tree: Key, path: Optional[Text] = None, *, count: Optional[int] = None) -> List[R.Hold]: ...

        async def history(self, tree: Key, path: Text, policy: Text) -> List[R.HistoryPeriod]: ...

        async def events(self, tree: Key, *, since: Optional[int] = None, count: Optional[int] = None) -> List[R.Event]: ...

        async def usage(self, tree: Key, path: Text = "/", *, since: Optional[int] = None, until: Optional[int] = None,
                        by: Optional[Text] = None, metric: Optional[Text] = None, service: Optional[Text] = None,
                        model: Optional[Text] = None, group: Optional[Text] = None) -> R.UsageReport: ...

        async def grant(self, tree: Key, path: Text, policy: Text, amount: AmountIn, *, id: Optional[Text] = None,
                        expires: Optional[int] = None, duration: Optional[Text] = None, period: bool = False,
                        priority: Optional[int] = None, note: Optional[Text] = None) -> R.GrantReply: ...

        async def grants(self, tree: Key, path: Text, policy: Text, *, count: Optional[int] = None) -> List[R.Grant]: ...

        async def revoke(self, tree: Key, path: Text, policy: Text, grant_id: Text) -> R.Revoke: ...

        async def reset(self, tree: Key, path: Text, policy: Text) -> R.HistoryPeriod: ...

        async def assign(self, tree: Key, plan: Optional[Text]) -> str: ...

        async def label(self, tree: Key, path: Text, *, note: Optional[Text] = None,
                        tags: Union[Text, Iterable[Text], None] = None) -> R.Labels: ...

        async def archive(self, tree: Key, path: Text) -> int: ...

        async def restore(self, tree: Key, path: Text) -> int: ...

        async def price_set(self, name: Text, price: JsonIn) -> str: ...

        async def price_get(self, name: Text) -> Optional[R.Price]: ...

        async def price_del(self, name: Text) -> int: ...

        async def price_list(self) -> List[str]: ...

        async def plan_set(self, name: Text, plan: JsonIn) -> int: ...

        async def plan_get(self, name: Text) -> Optional[R.Plan]: ...

        async def plan_del(self, name: Text) -> int: ...

        async def plan_list(self) -> List[str]: ...

        async def estimate(self, price: Text, values: Mapping[str, AmountIn]) -> R.Estimate: ...

        async def clock_set(self, ms: int) -> int: ...

        async def clock_advance(self, ms: int) -> int: ...

        async def clock_get(self) -> int: ...

        async def version(self) -> Optional[str]: ...

        async def generate_all(self, tree: Key, *, path: Text, items: Iterable[ItemIn],
                               choose: Union[str, Callable[[R.Reservation], Any], None], **kwargs: Any) -> Batch: ...

    def _pubsub(self, tree):
        if isinstance(self._r, redis.asyncio.cluster.RedisCluster):
            return _node_pubsub(self._r.get_node_from_key(tree))
        return _with_push_handler(self._r.pubsub, _apush_passthrough,  # see Quota._pubsub
                                  self._r.connection_pool.connection_kwargs)

    _run = staticmethod(run_async)


def _push_passthrough(message):
    """A RESP3 Pub/Sub push handler that hands the message to get_message()
    (what redis-py does) without logging it."""
    return message


async def _apush_passthrough(message):
    return message


def _with_push_handler(make, handler, connection_kwargs, **kwargs):
    """make(**kwargs), with push_handler_func=handler on RESP3 only (redis-py
    sets it on the connection's parser, which RESP2 parsers lack)."""
    if str(connection_kwargs.get("protocol")) != "3":
        return make(**kwargs)
    try:
        return make(push_handler_func=handler, **kwargs)
    except TypeError:  # a redis-py without push_handler_func
        return make(**kwargs)


def _node_pubsub(node):
    """A PubSub on a plain asyncio client to one node of an asyncio cluster
    (which has no Pub/Sub of its own in redis-py 5), over a pool of its own
    that closing the feed disconnects (`_quota_pool`)."""
    pool = redis.asyncio.ConnectionPool(**dict(node.connection_kwargs))
    p = _with_push_handler(redis.asyncio.Redis(connection_pool=pool).pubsub, _apush_passthrough,
                           pool.connection_kwargs)
    p._quota_pool = pool
    return p


__all__ = ["Quota", "AsyncQuota", "SPECS", "Spec"]
