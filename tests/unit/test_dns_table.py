"""The DNS name table: who resolves whom, with Docker's scoping, aliases, rotation and PTR."""

from __future__ import annotations

from ipaddress import ip_address

from hypothesis import given, settings
from hypothesis import strategies as st

from berth.dns.table import A, AAAA, ANY, NameTable

WEB, CLIENT, DB, OTHER = "a" * 64, "b" * 64, "c" * 64, "d" * 64
MX = 15


def ip(text: str):
    return ip_address(text)


def table() -> NameTable:
    """front: web (v4+v6, hostname webhost, alias www) and client; back (internal): db."""
    t = NameTable()
    t.set_network("n1", "front", internal=False)
    t.set_network("n2", "back", internal=True)
    t.set_endpoint("n1", "front", WEB, ["web", "webhost", "www"], ip("10.0.1.2"), ip("fd00::2"))
    t.set_endpoint("n1", "front", CLIENT, ["client"], ip("10.0.1.3"), None)
    t.set_endpoint("n2", "back", DB, ["db"], ip("10.0.2.2"), None)
    return t


ME = ip("10.0.1.3")


def test_every_name_of_a_container_resolves_on_a_shared_network():
    t = table()
    for name in ("web", "webhost", "www", WEB[:12], "web.front", "www.front", "webhost.front", "WEB.", "Web.Front."):
        assert t.lookup(ME, name, A, via="n1") == [ip("10.0.1.2")], name
        assert t.lookup(ME, name, AAAA, via="n1") == [ip("fd00::2")], name


def test_record_types_a_known_name_has_none_of_give_an_empty_answer_not_a_miss():
    t = table()
    assert t.lookup(ME, "client", AAAA, via="n1") == []
    assert t.lookup(ME, "web", MX, via="n1") == []
    assert t.lookup(ME, "web", ANY, via="n1") == [ip("10.0.1.2"), ip("fd00::2")]


def test_names_on_networks_the_querier_is_not_on_are_not_answered():
    t = table()
    assert t.lookup(ME, "db", A, via="n1") is None
    assert t.lookup(ME, "db.back", A, via="n1") is None
    assert t.lookup(ip("10.0.2.2"), "web", A, via="n2") is None
    assert t.lookup(ip("10.0.1.99"), "web", A, via="n1") is None  # not a container at all
    assert t.lookup(ME, "web.back", A, via="n1") is None  # name.network only for that network


def test_the_querier_is_the_container_holding_the_source_address_on_the_arrival_network():
    t = table()
    # 10.0.1.3 on network n2 would be someone else: arriving there, it is nobody berth knows
    assert t.lookup(ME, "web", A, via="n2") is None
    assert t.knows(ME, via="n1") and not t.knows(ME, via="n2")


def test_a_container_on_two_networks_sees_both_and_gets_the_arrival_networks_address_first():
    t = table()
    t.set_endpoint("n2", "back", CLIENT, ["client"], ip("10.0.2.3"), None)
    assert t.lookup(ME, "db", A, via="n1") == [ip("10.0.2.2")]
    t.set_endpoint("n2", "back", WEB, ["web"], ip("10.0.2.4"), None)
    assert t.lookup(ME, "web", A, via="n1") == [ip("10.0.1.2")]
    assert t.lookup(ip("10.0.2.3"), "web", A, via="n2") == [ip("10.0.2.4")]


def test_an_alias_shared_by_several_containers_answers_all_rotated_per_query():
    t = table()
    t.set_endpoint("n1", "front", OTHER, ["other", "www"], ip("10.0.1.4"), None)
    answers = [t.lookup(ME, "www", A, via="n1") for _ in range(4)]
    assert all(sorted(a) == [ip("10.0.1.2"), ip("10.0.1.4")] for a in answers)
    assert [a[0] for a in answers] == [ip("10.0.1.2"), ip("10.0.1.4"), ip("10.0.1.2"), ip("10.0.1.4")]


def test_changes_are_visible_at_once():
    t = table()
    t.set_endpoint("n1", "front", WEB, ["web"], ip("10.0.1.7"), None)  # replaced: new address, alias gone
    assert t.lookup(ME, "web", A, via="n1") == [ip("10.0.1.7")]
    assert t.lookup(ME, "www", A, via="n1") is None
    assert t.ptr(ME, ip("10.0.1.2"), via="n1") is None
    t.remove_endpoint("n1", WEB)
    assert t.lookup(ME, "web", A, via="n1") is None
    t.remove_endpoint("n1", WEB)  # already gone: fine
    t.remove_network("n1")
    assert t.lookup(ME, "client", A, via="n1") is None and not t.knows(ME)
    t.remove_network("n1")


def test_ptr_names_the_container_on_a_shared_network():
    t = table()
    assert t.ptr(ME, ip("10.0.1.2"), via="n1") == "web.front"
    assert t.ptr(ME, ip("fd00::2"), via="n1") == "web.front"
    assert t.ptr(ME, ip("10.0.2.2"), via="n1") is None
    assert t.ptr(ip("10.0.9.9"), ip("10.0.1.2"), via="n1") is None


def test_without_a_name_the_short_id_is_the_ptr_name():
    t = table()
    t.set_endpoint("n1", "front", OTHER, [], ip("10.0.1.9"), None)
    assert t.ptr(ME, ip("10.0.1.9"), via="n1") == f"{OTHER[:12]}.front"


def test_policy_forwards_unless_every_network_of_the_querier_is_internal():
    t = table()
    assert t.policy(ip("10.0.2.2"), via="n2") == (False, ())
    assert t.policy(ME, via="n1") == (True, ())
    t.set_endpoint("n1", "front", DB, ["db"], ip("10.0.1.5"), None, upstreams=["192.0.2.53"])
    assert t.policy(ip("10.0.2.2"), via="n2") == (True, ("192.0.2.53",))
    assert t.policy(ip("10.0.1.99"), via="n1") is None


def test_every_change_moves_the_generation():
    t = table()
    seen = [t.generation]
    for change in (lambda: t.set_network("n3", "x", False), lambda: t.remove_endpoint("n1", WEB),
                   lambda: t.remove_network("n3")):
        change()
        seen.append(t.generation)
    assert seen == sorted(set(seen))


ops = st.lists(st.tuples(st.sampled_from(["set", "remove"]), st.sampled_from(["n1", "n2"]),
                         st.sampled_from([WEB, DB, OTHER]), st.integers(2, 5), st.sampled_from(["x", "y"])),
               max_size=30)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_lookups_match_a_plain_model_after_any_sequence_of_changes(sequence):
    """The querier (CLIENT, on n1 and n2) sees exactly the model's holders of a name."""
    t = NameTable()
    t.set_endpoint("n1", "n1", CLIENT, ["client"], ip("10.1.0.1"), None)
    t.set_endpoint("n2", "n2", CLIENT, ["client"], ip("10.2.0.1"), None)
    model: dict[tuple[str, str], tuple[str, str]] = {}  # (network, container) -> (alias, address)
    for op, net, cid, host, alias in sequence:
        if op == "set":
            address = f"10.{net[1]}.0.{host}"
            stale = [k for k, v in model.items() if k[0] == net and v[1] == address and k[1] != cid]
            if stale:  # addresses are unique per network (IPAM's rule): skip what IPAM would refuse
                continue
            t.set_endpoint(net, net, cid, [alias], ip(address), None)
            model[(net, cid)] = (alias, address)
        else:
            t.remove_endpoint(net, cid)
            model.pop((net, cid), None)
    for alias in ("x", "y"):
        on_n1 = {v[1] for k, v in model.items() if k[0] == "n1" and v[0] == alias}
        everywhere = {v[1] for v in model.values() if v[0] == alias}
        expected = on_n1 or everywhere
        got = t.lookup(ip("10.1.0.1"), alias, A, via="n1")
        assert (got is None) == (not expected)
        assert set(map(str, got or [])) == expected
