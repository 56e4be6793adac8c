"""Tests of how the Python client answers the findings of review20
(/work/brief/review20.md) that came without a regression test, or where the
fix chose a behaviour the reviewer's test does not pin down. The reviewer's
own tests are in test_review20.py."""

import warnings

import pytest

from quota_client import AlreadySettled, HoldExpired, Quota

from conftest import tree_name


# F8: a hold that expired while the body ran is still committed (the work is
# done), but never silently: hold() warns HoldExpired and the handle says
# expired 1 (the commit reply, with its overage, is on handle.commit).
def test_F8_hold_that_expired_warns(servers, backend):
    q = Quota(servers.single(backend).redis())
    t = tree_name()
    q.set(t, "/", "cap", metric="credits", limit=100)
    with pytest.warns(HoldExpired) as caught:
        with q.hold(t, path="h", ttl_ms=1000, cost={"credits": 5}) as h:
            q.clock_advance(5000)
    assert h.expired == 1 and h.commit.expired == 1 and h.commit.overage == {"credits": 5}
    assert caught[0].message.handle is h
    with warnings.catch_warnings():
        warnings.simplefilter("error", HoldExpired)  # a caller may make it an exception
        with pytest.raises(HoldExpired):
            with q.hold(t, path="h", ttl_ms=1000, cost={"credits": 5}):
                q.clock_advance(5000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with q.hold(t, path="h", cost={"credits": 5}) as h2:  # in time: no warning
            pass
    assert h2.expired == 0


# F9: the retry of a request whose first attempt reserved but never settled
# (it crashed before its commit) still runs: the hold is live, and the
# retry's commit is the one that charges. Only a settled id is refused.
def test_F9_hold_retry_of_a_live_reservation_runs(servers, backend):
    q = Quota(servers.single(backend).redis())
    t = tree_name()
    q.set(t, "/", "cap", metric="credits", limit=100)
    first = q.reserve(t, path="p", id="req-2", cost={"credits": 10})  # the attempt that crashed
    assert first.allowed == 1
    runs = []
    with q.hold(t, path="p", id="req-2", cost={"credits": 10}) as h:
        runs.append(1)
    assert runs == [1] and h.reservation.duplicate == 1 and h.commit.duplicate == 0
    assert q.get(t).policy_named("cap").used == 10
    with pytest.raises(AlreadySettled):  # and now it is settled
        with q.hold(t, path="p", id="req-2", cost={"credits": 10}):
            runs.append(2)
    q.release(t, q.reserve(t, path="p", id="req-3", cost={"credits": 1}).id)
    with pytest.raises(AlreadySettled):  # released
        with q.hold(t, path="p", id="req-3", cost={"credits": 1}):
            runs.append(3)
    assert runs == [1]
