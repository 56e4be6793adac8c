"""Errors by kind, as the README's "Errors" table lists them.

Every error the server replies becomes a `QuotaError` subclass carrying
`.kind`, `.message` (the server's full text, its prefix included) and
`.command` (the command name, such as ``QUOTA.RESERVE``). Connection errors of
redis-py pass through unchanged.
"""

import redis.exceptions as rx


class QuotaError(Exception):
    """Base class. `kind` says which row of the README's table it is."""

    kind = "error"

    def __init__(self, message, command=None):
        super().__init__(message)
        self.message = message
        self.command = command

    def __repr__(self):
        return f"{type(self).__name__}({self.message!r}, command={self.command!r})"


class ArityError(QuotaError):
    """`ERR wrong number of arguments …`"""

    kind = "arity"


class QuotaSyntaxError(QuotaError):
    """`ERR syntax: …`, `ERR unknown subcommand …`"""

    kind = "syntax"


class InvalidAmount(QuotaError):
    """`ERR invalid amount: …`"""

    kind = "invalid_amount"


class UnknownMetric(QuotaError):
    """`ERR unknown metric: …`"""

    kind = "unknown_metric"


class LimitExceeded(QuotaError):
    """`ERR limit: …` (a bound of the server was reached)"""

    kind = "limit"


class NotFound(QuotaError):
    """`NOTFOUND …`"""

    kind = "not_found"


class EvictionRefused(QuotaError):
    """`ERR eviction: …`"""

    kind = "eviction"


class PermissionDenied(QuotaError):
    """`NOPERM …` (ACL)"""

    kind = "permission"


class WrongType(QuotaError):
    """`WRONGTYPE …`"""

    kind = "wrong_type"


class LayoutError(QuotaError):
    """`ERR layout …` (the Lua library refuses a tree stored by a newer version)"""

    kind = "layout"


class Conflict(QuotaError):
    """Any other `ERR …`: a state conflict (committing a released reservation,
    deleting a held path, reusing an id, …)."""

    kind = "conflict"


class AlreadySettled(Conflict):
    """hold() with an `id=` whose reservation was committed, released or has
    expired (a retry of a finished request): the body is not run again."""


class PartialWrite(QuotaError):
    """A server-wide write (price_set/price_del, plan_set/plan_del,
    clock_set/clock_advance on a module cluster) that some primaries applied
    and others did not: `.results` (node name -> raw reply of those that
    applied it) and `.errors` (node name -> the exception of the others).
    The books now differ between primaries: retry it (a retried plan_set
    bumps the plan's version again where it was applied)."""

    kind = "partial"

    def __init__(self, command, results, errors):
        failed = ", ".join(f"{n}: {e}" for n, e in errors.items())
        super().__init__(f"{command} applied on {len(results)} of {len(results) + len(errors)} primaries; "
                         f"failed on {failed}", command)
        self.results = dict(results)
        self.errors = dict(errors)


class ServerError(QuotaError):
    """A server error of another kind (`READONLY`, `OOM`, `BUSY`, …)."""

    kind = "server"


class NotLoaded(QuotaError):
    """Neither the module nor the Lua library answers on this server."""

    kind = "not_loaded"


class Denied(QuotaError):
    """Raised only by helpers that cannot go on without a hold (`hold()`,
    `reply.raise_for_denial()`): carries the reply (`.reply`, `.denied_by`,
    `.checks`)."""

    kind = "denied"

    def __init__(self, reply, command=None):
        super().__init__(reply.message or "denied", command)
        self.reply = reply
        self.denied_by = list(reply.denied_by or [])
        self.checks = list(reply.checks or [])


# Prefixes after "ERR ", most specific first.
_ERR_KINDS = (
    ("wrong number of arguments", ArityError),
    ("syntax:", QuotaSyntaxError),
    ("unknown subcommand", QuotaSyntaxError),
    ("invalid amount", InvalidAmount),
    ("unknown metric", UnknownMetric),
    ("limit:", LimitExceeded),
    ("eviction:", EvictionRefused),
    ("layout", LayoutError),
)

_CODES = {"NOTFOUND": NotFound, "NOPERM": PermissionDenied, "WRONGTYPE": WrongType}

# Error codes redis-py strips from the text, by the exception class it raises.
_STRIPPED = (
    (rx.NoPermissionError, "NOPERM"),
    (rx.ReadOnlyError, "READONLY"),
    (rx.OutOfMemoryError, "OOM"),
    (rx.BusyLoadingError, "LOADING"),
    (rx.NoScriptError, "NOSCRIPT"),
    (rx.ExecAbortError, "EXECABORT"),
)
# Codes redis-py leaves in the text (any other text had "ERR " stripped).
_KEPT = {"NOTFOUND", "WRONGTYPE", "MOVED", "ASK", "BUSY", "CROSSSLOT", "CLUSTERDOWN", "TRYAGAIN",
         "MASTERDOWN", "NOREPLICAS", "UNBLOCKED", "BUSYGROUP", "NOGROUP", "MISCONF"}


# redis-py's cluster errors (ResponseError subclasses whose code it strips:
# CLUSTERDOWN, MASTERDOWN, TRYAGAIN, MOVED, ASK, CROSSSLOT). They say where or
# whether the cluster can serve, not what quota thinks: they pass through
# unchanged, like connection errors (review20 F5).
CLUSTER_ERRORS = (rx.ClusterError, rx.AskError, rx.TryAgainError, rx.ClusterCrossSlotError)

# Texts that say the command itself is missing: the module or the library is
# not (or no longer) loaded, or the backend was forced wrongly (review20 F10).
_ABSENT = ("unknown command", "function not found")


def error_from_text(text, command=None):
    """The QuotaError for a server error text such as ``ERR limit: …``."""
    code, _, rest = text.partition(" ")
    if code == "ERR" and rest.lower().startswith(_ABSENT):
        return NotLoaded(text, command)
    if code == "ERR":
        for prefix, cls in _ERR_KINDS:
            if rest.startswith(prefix):
                return cls(text, command)
        return Conflict(text, command)
    cls = _CODES.get(code)
    if cls is not None:
        return cls(text, command)
    return ServerError(text, command)


def server_text(exc):
    """The server's full error text for a redis-py ResponseError (redis-py
    removes the `ERR`, `NOPERM`, … prefix of some errors)."""
    text = str(exc)
    for cls, code in _STRIPPED:
        if isinstance(exc, cls):
            return f"{code} {text}"
    if text.partition(" ")[0] in _KEPT:
        return text
    return "ERR " + text


def from_response_error(exc, command=None):
    """The QuotaError for a redis-py ResponseError; redis-py's cluster errors
    (CLUSTER_ERRORS) are returned as they are."""
    if isinstance(exc, CLUSTER_ERRORS):
        return exc
    return error_from_text(server_text(exc), command)
