"""What a request spends: amounts, `Cost` and `Usage` items, and how they
become arguments."""

from decimal import Decimal

FLOAT_REFUSED = "amounts are exact: pass Decimal, int or str, not float"


def amount(v):
    """An amount as the server takes it: Decimal (written without exponent),
    int or str. A float is refused before anything is sent."""
    if isinstance(v, bool):
        raise TypeError(f"an amount is a Decimal, int or str, not {v!r}")
    if isinstance(v, float):
        raise TypeError(FLOAT_REFUSED)
    if isinstance(v, Decimal):
        if not v.is_finite():
            raise ValueError(f"an amount must be finite, not {v}")
        return format(v, "f")
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return v
    if isinstance(v, bytes):
        return v.decode()
    raise TypeError(f"an amount is a Decimal, int or str, not {type(v).__name__}")


def integer(v, what="value"):
    """A whole number argument (TTL, COUNT, times in ms)."""
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, str) and v.lstrip("-").isdigit():
            return v
        raise TypeError(f"{what} must be an int, not {v!r}")
    return str(v)


class Cost:
    """A `COST metric amount …` item: ``Cost({"credits": Decimal("30")})`` or
    ``Cost(credits=30)``."""

    __slots__ = ("amounts",)

    def __init__(self, amounts=None, **more):
        a = dict(amounts or {})
        a.update(more)
        if not a:
            raise ValueError("a Cost item needs at least one metric")
        for v in a.values():
            amount(v)  # refuse floats now, not when sent
        self.amounts = a

    def args(self):
        out = ["COST"]
        for m, v in self.amounts.items():
            out += [m, amount(v)]
        return out

    def __eq__(self, other):
        return isinstance(other, Cost) and self.amounts == other.amounts

    def __repr__(self):
        return f"Cost({self.amounts!r})"


class Usage:
    """A `USAGE service/model name value …` item, priced by the price book:
    ``Usage("chat/gpt-4o", {"input_tokens": 1200, "output_tokens": 800})``.
    Values are usage quantities (amounts) and attribute values (strings such
    as ``"1080p"``), in one mapping."""

    __slots__ = ("price", "values")

    def __init__(self, price, values=None, **more):
        if not isinstance(price, str) or "/" not in price:
            raise ValueError(f"a Usage item names a price as 'service/model', not {price!r}")
        v = dict(values or {})
        v.update(more)
        if not v:
            raise ValueError("a Usage item needs at least one usage value")
        for x in v.values():
            amount(x)
        self.price, self.values = price, v

    def args(self):
        out = ["USAGE", self.price]
        for n, v in self.values.items():
            out += [n, amount(v)]
        return out

    def __eq__(self, other):
        return isinstance(other, Usage) and (self.price, self.values) == (other.price, other.values)

    def __repr__(self):
        return f"Usage({self.price!r}, {self.values!r})"


def as_cost(cost):
    if isinstance(cost, Cost):
        return cost
    if isinstance(cost, dict):
        return Cost(cost)
    raise TypeError(f"cost= is a mapping metric -> amount (or a Cost), not {type(cost).__name__}")


def as_usage(usage):
    """usage= is ``{"service/model": {name: value, …}}`` (one entry) or a Usage."""
    if isinstance(usage, Usage):
        return usage
    if isinstance(usage, dict):
        if len(usage) != 1:
            raise ValueError("usage= names one price: {'service/model': {name: value, ...}}; "
                             "use items=[Usage(...), ...] for several items")
        (price, values), = usage.items()
        return Usage(price, values)
    raise TypeError("usage= is {'service/model': {name: value, ...}} (or a Usage)")


def one_item(cost, usage, *, required=True):
    """The item of cost= or usage= (exactly one of them)."""
    if cost is not None and usage is not None:
        raise ValueError("give cost= or usage=, not both")
    if cost is not None:
        return as_cost(cost)
    if usage is not None:
        return as_usage(usage)
    if required:
        raise ValueError("give cost= or usage=")
    return None


def as_item(x):
    if isinstance(x, (Cost, Usage)):
        return x
    if isinstance(x, dict):
        return Cost(x)
    raise TypeError(f"an item is a Cost or a Usage, not {x!r}")
