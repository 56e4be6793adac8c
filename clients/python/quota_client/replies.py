"""Typed replies and their decoding.

Each reply is a dataclass whose fields are exactly the reply's field names
(`pass`, a Python keyword, is `pass_`). Fields a reply does not carry are
None; fields a newer server adds are kept, undecoded, in `extra`.

Decoding is driven by each dataclass's annotations (the schema): they say
which fields are maps metric -> amount, arrays of maps, arrays of strings,
amounts, integers. That is what makes RESP2 and RESP3 decode alike: under
RESP2 a map is a flat array, and an empty map and an empty list both arrive
as `[]`, so only the schema can tell them apart (and `denied_by`, an array of
strings, is never paired up).
"""

from __future__ import annotations

import dataclasses
import json
import keyword
import typing
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Dict, List, Optional, Union

from .errors import Denied

Amounts = Dict[str, Decimal]


def _text(v):
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).decode("utf-8", "replace")
    return v


def _pairs(raw):
    """A map reply's (key, value) pairs: a dict (RESP3, JSON) or a flat
    array (RESP2)."""
    if raw is None:
        return []
    if isinstance(raw, dict):
        return [(_text(k), v) for k, v in raw.items()]
    if isinstance(raw, (list, tuple)):
        if len(raw) % 2:
            raise ValueError(f"a map reply has an odd number of elements: {raw!r}")
        return [(_text(raw[i]), raw[i + 1]) for i in range(0, len(raw), 2)]
    raise ValueError(f"expected a map reply, got {raw!r}")


def _generic(v):
    """An unknown field: bytes become str, the rest stays as the driver gave
    it (a RESP2 map stays a flat list: without a schema it cannot be told
    from a list)."""
    v = _text(v)
    if isinstance(v, dict):
        return {_text(k): _generic(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_generic(x) for x in v]
    return v


def _decimal(v):
    v = _text(v)
    if v is None:
        return None
    if isinstance(v, Decimal):
        return v
    if isinstance(v, float):  # JSON numbers are parsed as Decimal; this is a fallback
        return Decimal(repr(v))
    return Decimal(str(v))


def _int(v):
    v = _text(v)
    if v is None:
        return None
    return int(v)


def _int_or_str(v):
    """A field that is a number or a text by kind (a policy's `anchor`: a
    month's day 31, a week's "sunday", a year's "04-01"): RESP integers and
    JSON numbers stay numbers, strings stay strings."""
    v = _text(v)
    if isinstance(v, (int, Decimal)) and not isinstance(v, bool):
        return int(v)
    return v


def _str(v):
    v = _text(v)
    return None if v is None else str(v)


_HINTS: Dict[type, Dict[str, Any]] = {}


def _hints(cls):
    h = _HINTS.get(cls)
    if h is None:
        hints = typing.get_type_hints(cls)
        h = {}
        for f in dataclasses.fields(cls):
            if f.name == "extra":
                continue
            name = f.name[:-1] if f.name.endswith("_") and keyword.iskeyword(f.name[:-1]) else f.name
            h[name] = (f.name, hints[f.name])
        _HINTS[cls] = h
    return h


def _convert(tp, v):
    if v is None:
        return None
    origin = typing.get_origin(tp)
    if origin is typing.Union:  # Optional[X], or Union[int, str, None] (an anchor)
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) > 1:
            return _int_or_str(v)
        return _convert(args[0], v)
    if tp is Decimal:
        return _decimal(v)
    if tp is int:
        return _int(v)
    if tp is str:
        return _str(v)
    if tp is Any:
        return _generic(v)
    if origin is list:
        (item,) = typing.get_args(tp)
        return [_convert(item, x) for x in v]
    if origin is dict:
        _, value = typing.get_args(tp)
        return {k: _convert(value, x) for k, x in _pairs(v)}
    if dataclasses.is_dataclass(tp):
        return decode(tp, v)
    raise TypeError(f"no decoder for {tp!r}")


def decode(cls, raw):
    """A map reply (RESP2 flat array, RESP3 map or parsed JSON) as `cls`."""
    hints = _hints(cls)
    known, extra = {}, {}
    for name, value in _pairs(raw):
        h = hints.get(name)
        if h is None:
            extra[name] = _generic(value)
        else:
            known[h[0]] = _convert(h[1], value)
    return cls(**known, extra=extra)


def decode_list(cls, raw):
    return [decode(cls, x) for x in (raw or [])]


class _Reply:
    def to_dict(self):
        """The reply as plain data (field names as the server writes them)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "extra":
                continue
            if v is not None:
                name = f.name[:-1] if f.name.endswith("_") and keyword.iskeyword(f.name[:-1]) else f.name
                out[name] = _plain(v)
        out.update(self.extra)
        return out


def _plain(v):
    if isinstance(v, _Reply):
        return v.to_dict()
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _extra():
    return field(default_factory=dict, compare=True, repr=False)


# ----- checks and draws ------------------------------------------------------------


@dataclass
class Check(_Reply):
    """One check of a reservation or charge: a policy check (`kind` policy),
    an access check (`kind` access) or an archived check (`kind` archived)."""

    kind: Optional[str] = None
    path: Optional[str] = None
    policy: Optional[str] = None
    metric: Optional[str] = None
    mode: Optional[str] = None
    window: Optional[str] = None
    limit: Optional[Decimal] = None
    used: Optional[Decimal] = None
    held: Optional[Decimal] = None
    requested: Optional[Decimal] = None
    remaining: Optional[Decimal] = None
    pass_: Optional[int] = None
    status: Optional[str] = None
    period_start: Optional[int] = None
    period_end: Optional[int] = None
    rule: Optional[str] = None
    service: Optional[str] = None
    model: Optional[str] = None
    extra: Dict[str, Any] = _extra()


@dataclass
class Draw(_Reply):
    """What one grant gave to a commit or charge."""

    path: Optional[str] = None
    policy: Optional[str] = None
    grant: Optional[str] = None
    amount: Optional[Decimal] = None
    extra: Dict[str, Any] = _extra()


class _Decision(_Reply):
    def raise_for_denial(self):
        """Raise `Denied` (carrying this reply) when `allowed` is 0; else
        return the reply."""
        if not self.allowed:
            raise Denied(self)
        return self

    def __bool__(self):
        return bool(self.allowed)


# ----- spending ----------------------------------------------------------------------


@dataclass
class Reservation(_Decision):
    """QUOTA.RESERVE. Truthy when `allowed` is 1."""

    allowed: Optional[int] = None
    id: Optional[str] = None
    expires_at: Optional[int] = None
    items: Optional[int] = None
    fits: Optional[int] = None
    reserved: Optional[int] = None
    cost: Optional[Amounts] = None
    held: Optional[Amounts] = None
    checks: Optional[List[Check]] = None
    denied_by: Optional[List[str]] = None
    message: Optional[str] = None
    duplicate: Optional[int] = None
    extra: Dict[str, Any] = _extra()


@dataclass
class Commit(_Reply):
    """QUOTA.COMMIT."""

    id: Optional[str] = None
    charged: Optional[Amounts] = None
    released: Optional[Amounts] = None
    overage: Optional[Amounts] = None
    duplicate: Optional[int] = None
    expired: Optional[int] = None
    over: Optional[List[str]] = None
    drawn: Optional[List[Draw]] = None
    extra: Dict[str, Any] = _extra()


@dataclass
class Release(_Reply):
    """QUOTA.RELEASE."""

    id: Optional[str] = None
    released: Optional[Amounts] = None
    duplicate: Optional[int] = None
    expired: Optional[int] = None
    extra: Dict[str, Any] = _extra()


@dataclass
class Extend(_Reply):
    """QUOTA.EXTEND."""

    id: Optional[str] = None
    expires_at: Optional[int] = None
    extra: Dict[str, Any] = _extra()


@dataclass
class Charge(_Decision):
    """QUOTA.CHARGE. Truthy when `allowed` is 1."""

    allowed: Optional[int] = None
    charged: Optional[Amounts] = None
    checks: Optional[List[Check]] = None
    denied_by: Optional[List[str]] = None
    message: Optional[str] = None
    over: Optional[List[str]] = None
    duplicate: Optional[int] = None
    drawn: Optional[List[Draw]] = None
    extra: Dict[str, Any] = _extra()


# ----- reading -----------------------------------------------------------------------


@dataclass
class PolicyState(_Reply):
    """A policy as QUOTA.GET and QUOTA.TREE show it."""

    policy: Optional[str] = None
    metric: Optional[str] = None
    mode: Optional[str] = None
    window: Optional[str] = None
    limit: Optional[Decimal] = None
    base_limit: Optional[Decimal] = None
    used: Optional[Decimal] = None
    held: Optional[Decimal] = None
    remaining: Optional[Decimal] = None
    status: Optional[str] = None
    warn: Optional[List[int]] = None
    #: A month's day (31), a week's day ("sunday") or a year's start ("04-01").
    anchor: Union[int, str, None] = None
    #: The zone of a calendar window when not UTC ("America/New_York", "+05:30").
    tz: Optional[str] = None
    #: The zone rules' version ("2026f"), for a named zone.
    tzdata: Optional[str] = None
    rollover: Optional[Decimal] = None
    service: Optional[str] = None
    model: Optional[str] = None
    low: Optional[Decimal] = None
    granted: Optional[Decimal] = None
    period_start: Optional[int] = None
    period_end: Optional[int] = None
    inflight: Optional[int] = None
    source: Optional[str] = None
    extra: Dict[str, Any] = _extra()


@dataclass
class AccessRule(_Reply):
    service: Optional[str] = None
    model: Optional[str] = None
    extra: Dict[str, Any] = _extra()


@dataclass
class AccessRules(_Reply):
    """QUOTA.ACCESS (with `path`), and the `access` field of a node."""

    path: Optional[str] = None
    allow: Optional[List[AccessRule]] = None
    deny: Optional[List[AccessRule]] = None
    extra: Dict[str, Any] = _extra()


@dataclass
class Node(_Reply):
    """QUOTA.GET."""

    path: Optional[str] = None
    status: Optional[str] = None
    spent: Optional[Amounts] = None
    policies: Optional[List[PolicyState]] = None
    access: Optional[AccessRules] = None
    note: Optional[str] = None
    tags: Optional[List[str]] = None
    archived: Optional[int] = None
    plan: Optional[str] = None
    plan_version: Optional[int] = None
    plan_missing: Optional[int] = None
    extra: Dict[str, Any] = _extra()

    def policy_named(self, name):
        """The policy called `name`, or None."""
        return next((p for p in self.policies or [] if p.policy == name), None)


@dataclass
class TreeNode(Node):
    """QUOTA.TREE (also with `format="json"`): a node with its `children`."""

    children: Optional[List[TreeNode]] = None
    more: Optional[int] = None
    nodes: Optional[int] = None
    truncated: Optional[int] = None
    extra: Dict[str, Any] = _extra()

    def walk(self):
        """This node and every node below it, depth first."""
        yield self
        for c in self.children or []:
            yield from c.walk()


@dataclass
class Hold(_Reply):
    """One entry of QUOTA.HOLDS."""

    id: Optional[str] = None
    paths: Optional[List[str]] = None
    expires_at: Optional[int] = None
    items: Optional[int] = None
    held: Optional[Amounts] = None
    meta: Optional[Dict[str, str]] = None
    extra: Dict[str, Any] = _extra()


@dataclass
class HistoryPeriod(_Reply):
    """One closed period (QUOTA.HISTORY), or the period QUOTA.RESET closed."""

    start: Optional[int] = None
    end: Optional[int] = None
    #: The period's first local date in the policy's zone ("2026", "2026-11",
    #: "2026-11-27", "2026-11-27T13"); None for rolling and none windows.
    label: Optional[str] = None
    used: Optional[Decimal] = None
    allowance: Optional[Decimal] = None
    rolled_over: Optional[Decimal] = None
    granted: Optional[Decimal] = None
    extra: Dict[str, Any] = _extra()


@dataclass
class Event(_Reply):
    """One event, from QUOTA.EVENTS or the channel `quota:events:<key>`
    (which adds `tree`)."""

    seq: Optional[int] = None
    type: Optional[str] = None
    time: Optional[int] = None
    tree: Optional[str] = None
    path: Optional[str] = None
    policy: Optional[str] = None
    metric: Optional[str] = None
    used: Optional[Decimal] = None
    held: Optional[Decimal] = None
    limit: Optional[Decimal] = None
    threshold: Optional[int] = None
    periods: Optional[int] = None
    rolled_over: Optional[Decimal] = None
    id: Optional[str] = None
    amounts: Optional[Amounts] = None
    remaining: Optional[Decimal] = None
    low: Optional[Decimal] = None
    grant: Optional[str] = None
    amount: Optional[Decimal] = None
    expires_at: Optional[int] = None
    meta: Optional[Dict[str, str]] = None
    rule: Optional[str] = None
    service: Optional[str] = None
    model: Optional[str] = None
    extra: Dict[str, Any] = _extra()


@dataclass
class Gap:
    """Yielded by the event feeds when events were lost: the tree's log no
    longer has the events after `last` before `first` (it wrapped while the
    consumer was away; raise `events_len` if it happens).

    With `reset` 1 the tree's log started again: the key was deleted
    (its log goes with it) and created again, so seq numbers restart at 1.
    `last` is the old log's cursor, `first` the new log's first event handed
    out next (1 when it has none yet); the cursor to persist is now 0 (the
    feed's `.last` says so)."""

    tree: str
    last: int
    first: int
    reset: int = 0

    @property
    def lost(self):
        """Events no longer in the log (for a restart: the new log's events
        before `first`)."""
        if self.reset:
            return max(self.first - 1, 0)
        return self.first - self.last - 1


# ----- credits -----------------------------------------------------------------------


@dataclass
class Grant(_Reply):
    """One grant (QUOTA.GRANTS, and `grant` of QUOTA.GRANT)."""

    id: Optional[str] = None
    amount: Optional[Decimal] = None
    remaining: Optional[Decimal] = None
    priority: Optional[int] = None
    expires_at: Optional[int] = None
    period: Optional[int] = None
    created_at: Optional[int] = None
    note: Optional[str] = None
    extra: Dict[str, Any] = _extra()


@dataclass
class GrantReply(PolicyState):
    """QUOTA.GRANT: the policy as QUOTA.GET shows it, then `grant` and
    `duplicate`."""

    grant: Optional[Grant] = None
    duplicate: Optional[int] = None
    extra: Dict[str, Any] = _extra()


@dataclass
class Revoke(_Reply):
    """QUOTA.REVOKE."""

    id: Optional[str] = None
    removed: Optional[Decimal] = None
    extra: Dict[str, Any] = _extra()


@dataclass
class Labels(_Reply):
    """QUOTA.LABEL."""

    path: Optional[str] = None
    note: Optional[str] = None
    tags: Optional[List[str]] = None
    extra: Dict[str, Any] = _extra()


# ----- usage over time -------------------------------------------------------------


@dataclass
class UsageBucket(_Reply):
    start: Optional[int] = None
    spent: Optional[Amounts] = None
    extra: Dict[str, Any] = _extra()


@dataclass
class UsageGroup(_Reply):
    name: Optional[str] = None
    service: Optional[str] = None
    model: Optional[str] = None
    spent: Optional[Amounts] = None
    extra: Dict[str, Any] = _extra()


@dataclass
class UsageReport(_Reply):
    """QUOTA.USAGE."""

    path: Optional[str] = None
    by: Optional[str] = None
    since: Optional[int] = None
    until: Optional[int] = None
    buckets: Optional[List[UsageBucket]] = None
    total: Optional[Amounts] = None
    groups: Optional[List[UsageGroup]] = None
    extra: Dict[str, Any] = _extra()


# ----- pricing and plans ----------------------------------------------------------


@dataclass
class EstimateLine(_Reply):
    name: Optional[str] = None
    quantity: Optional[Decimal] = None
    rate: Optional[Decimal] = None
    subtotal: Optional[Decimal] = None
    extra: Dict[str, Any] = _extra()


@dataclass
class Multiplier(_Reply):
    attribute: Optional[str] = None
    value: Optional[str] = None
    factor: Optional[Decimal] = None
    extra: Dict[str, Any] = _extra()


@dataclass
class Estimate(_Reply):
    """QUOTA.ESTIMATE."""

    price: Optional[str] = None
    metric: Optional[str] = None
    cost: Optional[Decimal] = None
    lines: Optional[List[EstimateLine]] = None
    subtotal: Optional[Decimal] = None
    minimum: Optional[Decimal] = None
    multipliers: Optional[List[Multiplier]] = None
    charges: Optional[Amounts] = None
    extra: Dict[str, Any] = _extra()


@dataclass
class Price(_Reply):
    """QUOTA.PRICE GET: the entry's canonical JSON, decoded. `rates` stay as
    written ("2.50/1M"); `json` is the server's text."""

    metric: Optional[str] = None
    rates: Optional[Dict[str, str]] = None
    multipliers: Optional[Dict[str, Amounts]] = None
    minimum: Optional[Decimal] = None
    json: Optional[str] = field(default=None, compare=False, repr=False)
    extra: Dict[str, Any] = _extra()


@dataclass
class Plan(_Reply):
    """QUOTA.PLAN GET: `paths` (pattern -> policy -> fields, as JSON) and
    `version`; `json` is the server's canonical text."""

    paths: Optional[Dict[str, Any]] = None
    version: Optional[int] = None
    json: Optional[str] = field(default=None, compare=False, repr=False)
    extra: Dict[str, Any] = _extra()


def parse_json(text):
    """JSON from the server, decimals kept exact."""
    return json.loads(_text(text), parse_float=Decimal)


def decode_json(cls, text):
    obj = decode(cls, parse_json(text))
    if "json" in {f.name for f in dataclasses.fields(cls)}:
        obj.json = _text(text)
    return obj
