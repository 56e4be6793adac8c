"""The helpers: hold(), generate_all() and follow_events().

Each is written once, as a generator that yields the calls it needs (zero-
argument callables: `lambda: q.reserve(...)`) and receives their results.
`run_sync` runs it over a sync Quota, `run_async` over an AsyncQuota (where
the callables return coroutines, awaited here). So the flows have one copy,
and the sync and async clients differ only in how they send.
"""

import inspect
import uuid
import warnings
from typing import Any, Optional, Union

import redis.exceptions

from .errors import AlreadySettled, Denied
from .items import Cost, one_item
from . import replies as R


def run_sync(gen):
    """Drive a flow with sync calls."""
    try:
        step = next(gen)
        while True:
            try:
                value = step()
            except BaseException as e:  # noqa: B902 - handed to the flow, which may re-raise
                step = gen.throw(e)
                continue
            step = gen.send(value)
    except StopIteration as stop:
        return stop.value


async def run_async(gen):
    """Drive a flow with awaited calls (plain values pass as they are)."""
    try:
        step = next(gen)
        while True:
            try:
                value = step()
                if inspect.isawaitable(value):
                    value = await value
            except BaseException as e:  # noqa: B902
                step = gen.throw(e)
                continue
            step = gen.send(value)
    except StopIteration as stop:
        return stop.value


# ----- hold() ---------------------------------------------------------------------


class HoldHandle:
    """What `with q.hold(...) as h` gives: the reservation, its id, and
    `actual(cost=… | usage=…)` to commit something else than what was held.
    After the block: `commit` (the Commit reply) or `release` (the Release
    reply)."""

    def __init__(self, tree, reservation):
        self.tree = tree
        self.reservation: R.Reservation = reservation
        self.id: str = reservation.id
        self._actual: Any = None
        self.commit: Optional[R.Commit] = None
        self.release: Optional[R.Release] = None
        self.release_error: Optional[Exception] = None

    @property
    def expired(self) -> int:
        """1 when the commit found the hold expired (see HoldExpired), else 0."""
        return int(bool(self.commit is not None and self.commit.expired))

    def actual(self, *, cost: Any = None, usage: Any = None) -> "HoldHandle":
        """The actual cost or usage to commit on exit (default: what was
        reserved)."""
        self._actual = one_item(cost, usage)
        return self


def _hold_enter(q, tree, kwargs):
    reply = yield lambda: q.reserve(tree, **kwargs)
    if not reply.allowed:
        raise Denied(reply, "QUOTA.RESERVE")
    if reply.duplicate:
        # A retry with an id reserved before (review20 F9): the body runs
        # again only while that reservation is still held (the first attempt
        # never settled it); once committed, released or expired, running it
        # again would be work nobody pays for (its commit is a duplicate).
        live = yield lambda: q.holds(tree, kwargs["path"], count=10000)
        if not any(h.id == reply.id for h in live):
            raise AlreadySettled(
                f"reservation '{reply.id}' is no longer held (committed, released or expired): "
                "hold() does not run its body again for it; a new request needs a new id", "QUOTA.RESERVE")
    return HoldHandle(tree, reply)


def _hold_exit(q, handle, failed):
    if failed:
        try:
            handle.release = yield lambda: q.release(handle.tree, handle.id)
        except Exception as e:  # the body's exception matters more; keep this one
            handle.release_error = e
        return
    actual = handle._actual
    if actual is None:
        handle.commit = yield lambda: q.commit(handle.tree, handle.id)
    elif isinstance(actual, Cost):
        handle.commit = yield lambda: q.commit(handle.tree, handle.id, cost=actual)
    else:
        handle.commit = yield lambda: q.commit(handle.tree, handle.id, usage=actual)
    if handle.commit.expired:
        # The body outlived the hold's TTL: the commit charged without the
        # hold, past any limit (all of it is overage). Say so (review20 F8).
        warnings.warn(HoldExpired(handle), stacklevel=4)


class HoldExpired(UserWarning):
    """Warned by hold() when its commit found the hold expired (the body ran
    longer than `ttl_ms`): the commit charged anyway, without the hold and
    past any limit (`handle.commit.expired` 1, all of it in `overage`).
    Raise the TTL, or `extend()` the hold (handle.id) while the body runs.
    `warnings.simplefilter("error", HoldExpired)` makes it an exception."""

    def __init__(self, handle):
        super().__init__(f"hold {handle.id!r} on {handle.tree!r} expired before its commit: charged "
                         f"without the hold, overage {handle.commit.overage}")
        self.handle = handle


class HoldContext:
    """`with q.hold(...)` (sync) or `async with q.hold(...)` (AsyncQuota)."""

    def __init__(self, q, tree, kwargs):
        if kwargs.get("items") is not None:
            raise ValueError("hold() is for one item: cost= or usage= (use generate_all() for batches)")
        mode = kwargs.get("mode")
        if mode is not None and str(mode).lower() == "dryrun":
            raise ValueError("hold() cannot hold a DRYRUN")
        self._q, self._tree, self._kwargs = q, tree, kwargs
        self._handle = None

    def __enter__(self) -> HoldHandle:
        self._handle = run_sync(_hold_enter(self._q, self._tree, self._kwargs))
        return self._handle

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        run_sync(_hold_exit(self._q, self._handle, exc_type is not None))
        return False

    async def __aenter__(self) -> HoldHandle:
        self._handle = await run_async(_hold_enter(self._q, self._tree, self._kwargs))
        return self._handle

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        await run_async(_hold_exit(self._q, self._handle, exc_type is not None))
        return False


# ----- generate_all() -------------------------------------------------------------


class Batch:
    """A Generate All batch: `preview` (the DRYRUN reply), `reservation`
    (None when nothing was reserved), `choice` ("all", "first", "stop" or
    "none" when nothing fits), and commit(i)/release(i)/extend(ttl_ms)
    (coroutines on an AsyncQuota)."""

    def __init__(self, q, tree, id, preview):
        self._q, self.tree, self.id = q, tree, id
        self.preview: R.Reservation = preview
        self.reservation: Optional[R.Reservation] = None
        self.choice: Optional[str] = None

    @property
    def reserved(self) -> int:
        """How many leading items are held (0 when none)."""
        return self.reservation.reserved if self.reservation is not None else 0

    def commit(self, i: int, *, cost: Any = None, usage: Any = None) -> Any:
        self._check(i)
        return self._q.commit(self.tree, self.id, item=i, cost=cost, usage=usage)

    def release(self, i: int) -> Any:
        self._check(i)
        return self._q.release(self.tree, self.id, item=i)

    def extend(self, ttl_ms: int) -> Any:
        if self.reservation is None:
            raise ValueError("nothing was reserved")
        return self._q.extend(self.tree, self.id, ttl_ms)

    def _check(self, i):
        if not 0 <= i < self.reserved:
            raise IndexError(f"item {i} is not held: the batch holds items 0 to {self.reserved - 1}")

    def __repr__(self):
        return f"Batch(id={self.id!r}, choice={self.choice!r}, reserved={self.reserved})"


_GENERATE_ALL_TRIES = 3


def generate_all_flow(q, tree, *, path, items, choose, id=None, ttl_ms=None, also=None, service=None,
                      model=None, meta=None):
    common = dict(path=path, also=also, service=service, model=model, meta=meta, items=items)
    batch_id = id or f"batch-{uuid.uuid4().hex[:12]}"
    for _ in range(_GENERATE_ALL_TRIES):
        # The preview carries the ID: for an id already reserved (a retry), the
        # server answers the first reservation with duplicate 1.
        preview = yield lambda: q.reserve(tree, mode="dryrun", id=batch_id, **common)
        batch = Batch(q, tree, batch_id, preview)
        if preview.duplicate:
            batch.reservation = preview
            batch.choice = "all" if preview.reserved == preview.items else "first"
            return batch
        if not preview.fits:
            batch.choice = "none"
            return batch
        if preview.fits == preview.items:
            choice, mode = "all", "all"
        else:
            if choose is None:
                raise ValueError("not every item fits: choose= must say 'first' or 'stop'")
            if isinstance(choose, str):
                choice = choose
            else:
                choice = yield lambda: choose(preview)
            if choice not in ("first", "stop"):
                raise ValueError(f"choose() answers 'first' or 'stop', not {choice!r}")
            if choice == "stop":
                batch.choice = "stop"
                return batch
            mode = "upto"
        reservation = yield lambda: q.reserve(tree, mode=mode, id=batch.id, ttl_ms=ttl_ms, **common)
        if reservation.allowed:
            batch.choice = choice
            batch.reservation = reservation
            return batch
        # Another request took the room between the preview and the
        # reservation (two round trips; review20 F11). A refusal holds
        # nothing and does not keep the id: preview again (and ask choose()
        # again when not everything fits any more).
    raise Denied(reservation, "QUOTA.RESERVE")


# ----- follow_events() ------------------------------------------------------------

_OUT, _IO = "out", "io"


def _close(p):
    close = getattr(p, "aclose", None)
    if close is None or not inspect.iscoroutinefunction(close):
        close = p.close
    if inspect.iscoroutinefunction(close) or getattr(p, "_quota_pool", None) is not None:
        return _aclose(p, close)
    return close()


async def _aclose(p, close):
    try:
        done = close()
        if inspect.isawaitable(done):
            await done
    finally:
        pool = getattr(p, "_quota_pool", None)
        if pool is not None:  # the pool made for this subscription (asyncio cluster)
            p._quota_pool = None
            await pool.disconnect()


def _fingerprint(e):
    """An event's content, `tree` aside (the channel adds it, the log does
    not): two events with one seq and different fingerprints are from two
    different logs of the key."""
    return tuple((k, v) for k, v in sorted(vars(e).items()) if k != "tree")


_REMEMBERED = 256  # fingerprints of the last events handed out


def _feed(q, tree, since, count, idle_timeout, state):
    """The catch-up protocol of README "Alerts and events": subscribe, then
    QUOTA.EVENTS SINCE last while pages are full, then live events, skipping
    what was handed out already; a Gap when the log lost events; after a
    dropped connection, all of it again. `state["pubsub"]` is the live
    subscription (the feed's close() closes it).

    A key deleted and created again starts a new log at seq 1 (review20 F2).
    The feed tells it by the log's newest seq falling below `last` (the
    catch-up reads from `last` itself, which must still be there), or by an
    event at a seq it handed out whose content differs (a live event with a
    seq <= last, or the log's event at `last`); it yields
    Gap(reset=1) and follows the new log from 0. `since` may be the last
    Event handled (not only its seq): its content then tells the logs apart
    from the start."""
    channel = f"quota:events:{tree}"
    start = since if isinstance(since, R.Event) else None
    last = start.seq if start is not None else since
    seen = {}  # seq -> fingerprint of the events handed out (the last _REMEMBERED)
    suspect = None  # a live event at a handed-out seq with other contents: that seq
    if start is not None:
        seen[start.seq] = _fingerprint(start)

    def hand_out(e):
        seen[e.seq] = _fingerprint(e)
        if len(seen) > _REMEMBERED:
            del seen[min(seen)]

    def differs(e):
        fp = seen.get(e.seq)
        return fp is not None and fp != _fingerprint(e)

    while True:
        p = state["pubsub"] = q._pubsub(tree)
        subscribed = False
        try:
            yield _IO, (lambda: p.subscribe(channel))
            while True:  # the subscription is live once confirmed
                m = yield _IO, (lambda: p.get_message(timeout=idle_timeout or 30.0))
                if m is None:
                    raise TimeoutError(f"no confirmation of SUBSCRIBE {channel}")
                if _text(m.get("type")) == "subscribe":
                    break
            subscribed = True
            caught_up = False
            while True:
                if not caught_up:
                    while True:
                        if last > 0:  # from `last` itself: it proves the log is the same one
                            page = yield _IO, (lambda: q.events(tree, since=last - 1, count=count + 1))
                            restarted = not page or (page[0].seq == last and differs(page[0]))
                            if suspect is not None and not restarted:
                                # the log, not the channel, decides: is its event at that seq
                                # still the one handed out?
                                probe = yield _IO, (lambda: q.events(tree, since=suspect - 1, count=1))
                                restarted = not probe or probe[0].seq != suspect or differs(probe[0])
                            if not restarted and page[0].seq == last:
                                page = page[1:]
                                full = len(page) == count
                            else:
                                full = len(page) == count + 1
                        else:
                            page = yield _IO, (lambda: q.events(tree, since=0, count=count))
                            restarted, full = False, len(page) == count
                        suspect = None
                        if restarted:
                            page = yield _IO, (lambda: q.events(tree, since=0, count=count))
                            yield _OUT, R.Gap(tree, last, page[0].seq if page else 1, reset=1)
                            last = 0
                            seen.clear()
                            full = len(page) == count
                        elif page and page[0].seq > last + 1:
                            yield _OUT, R.Gap(tree, last, page[0].seq)
                        for e in page:
                            if e.seq > last:
                                last = e.seq
                                e.tree = tree
                                hand_out(e)
                                yield _OUT, e
                        if not full:
                            break
                    caught_up = True
                m = yield _IO, (lambda: p.get_message(timeout=idle_timeout))
                if m is None:
                    if idle_timeout is not None:
                        return
                    continue
                kind = _text(m.get("type"))
                if kind == "subscribe":
                    # redis-py reconnected and subscribed again by itself:
                    # what was published meanwhile is only in the log.
                    caught_up = False
                    continue
                if kind != "message":
                    continue
                e = R.decode(R.Event, R.parse_json(m["data"]))
                if e.seq is None:
                    continue
                if e.seq <= last:
                    if differs(e):
                        # Not the event handed out at that seq: a new log.
                        suspect, caught_up = e.seq, False
                    elif e.seq not in seen:
                        caught_up = False  # too old to remember: the catch-up checks the log
                    continue  # else handed out already (by the catch-up)
                if e.seq > last + 1:
                    caught_up = False  # something was missed: read the log again
                    continue
                last = e.seq
                hand_out(e)
                yield _OUT, e
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            if not subscribed:
                raise  # the server cannot be reached: the caller decides (resume from feed.last)
            # a subscription that dropped: subscribe and catch up again
        state["pubsub"] = None
        try:
            yield _IO, (lambda: _close(p))
        except Exception:
            pass


def _text(v):
    return v.decode() if isinstance(v, bytes) else v


class EventFeed:
    """An iterator (sync Quota) or async iterator (AsyncQuota) of the tree's
    events after `since`, in seq order: each an `Event` (`.seq` is the cursor
    to persist; `.last` is the last one handed out), or a `Gap` where the
    log lost events. Ends after `idle_timeout` seconds without an event
    (never, by default). A subscription that drops is renewed, with a catch-up;
    a server that cannot be reached raises redis-py's ConnectionError (start
    again from `.last`). `close()` (sync) / `aclose()` (async), or leaving a
    `with` / `async with` block, unsubscribes."""

    def __init__(self, q, tree, since, count, idle_timeout):
        self._q, self.tree = q, tree
        self.last: int = since.seq if isinstance(since, R.Event) else since
        self._state = {"pubsub": None}
        self._gen = _feed(q, tree, since, count, idle_timeout, self._state)

    # sync
    def __iter__(self) -> "EventFeed":
        return self

    def __next__(self) -> Union[R.Event, R.Gap]:
        value = error = None
        while self._gen is not None:
            try:
                step = self._step(value, error)
            except BaseException:
                self.close()
                raise
            if step is None:
                break
            kind, x = step
            value = error = None
            if kind == _OUT:
                return self._handed_out(x)
            try:
                value = x()
            except Exception as e:
                error = e
            except BaseException:
                self.close()  # KeyboardInterrupt, SystemExit: unsubscribe (review20 F7)
                raise
        self.close()
        raise StopIteration

    def _handed_out(self, x: Union[R.Event, R.Gap]) -> Union[R.Event, R.Gap]:
        """What the feed yields, remembered as the cursor (a restarted log's gap: 0)."""
        if isinstance(x, R.Event):
            self.last = x.seq
        elif x.reset:
            self.last = 0
        return x

    def _step(self, value, error):
        try:
            return self._gen.throw(error) if error is not None else self._gen.send(value)
        except StopIteration:
            self._gen = None
            return None
        except BaseException:
            self._gen = None  # the flow failed: the caller closes the subscription
            raise

    def close(self) -> None:
        self._gen = None
        p, self._state["pubsub"] = self._state["pubsub"], None
        if p is not None:
            p.close()

    def __enter__(self) -> "EventFeed":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # async
    def __aiter__(self) -> "EventFeed":
        return self

    async def __anext__(self) -> Union[R.Event, R.Gap]:
        value = error = None
        while self._gen is not None:
            try:
                step = self._step(value, error)
            except BaseException:
                await self.aclose()
                raise
            if step is None:
                break
            kind, x = step
            value = error = None
            if kind == _OUT:
                return self._handed_out(x)
            try:
                value = x()
                if inspect.isawaitable(value):
                    value = await value
            except Exception as e:
                error = e
            except BaseException:
                # CancelledError (the consuming task was cancelled), …: leave
                # no subscribed connection behind (review20 F7).
                await self.aclose()
                raise
        await self.aclose()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self._gen = None
        p, self._state["pubsub"] = self._state["pubsub"], None
        if p is not None:
            await _close(p)

    async def __aenter__(self) -> "EventFeed":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
