"""Decoding without a server: unknown fields are kept, RESP2 pairs never
guessed, JSON decoded like RESP."""

from decimal import Decimal as D

from quota_client import Event, Reservation, TreeNode
from quota_client.replies import decode, decode_json


def test_unknown_fields_are_kept_in_extra():
    resp2 = [b"allowed", 1, b"denied_by", [b"a#b", b"c#d"], b"cost", [], b"new_field", [b"x", 1]]
    resp3 = {"allowed": 1, "denied_by": ["a#b", "c#d"], "cost": {}, "new_field": ["x", 1]}
    a, b = decode(Reservation, resp2), decode(Reservation, resp3)
    assert a == b and a.extra == {"new_field": ["x", 1]} and a.denied_by == ["a#b", "c#d"] and a.cost == {}
    assert a.to_dict() == {"allowed": 1, "denied_by": ["a#b", "c#d"], "cost": {}, "new_field": ["x", 1]}


def test_an_empty_map_and_an_empty_list_by_schema():
    r = decode(Reservation, ["cost", [], "held", [], "denied_by", [], "checks", []])
    assert r.cost == {} and r.held == {} and r.denied_by == [] and r.checks == []


def test_json_and_resp_decode_alike():
    text = '{"path":"/","spent":{"credits":"0.0000000001"},"children":[{"path":"a","children":[],"more":2}],"nodes":2}'
    t = decode_json(TreeNode, text)
    assert t.spent == {"credits": D("1E-10")} and t.children[0].more == 2 and t.nodes == 2
    assert t == decode(TreeNode, ["path", "/", "spent", ["credits", "0.0000000001"],
                                  "children", [["path", "a", "children", [], "more", 2]], "nodes", 2])
    e = decode_json(Event, '{"seq":5,"type":"expired","tree":"acme","held":null,"amounts":{"credits":"3"},'
                           '"meta":{"z":"1","a":"2"}}')
    assert e.seq == 5 and e.held is None and e.amounts == {"credits": D(3)} and list(e.meta) == ["z", "a"]
