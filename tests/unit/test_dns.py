"""The embedded DNS: who may resolve whom, and the hand-built wire answers."""

from __future__ import annotations

import struct
from ipaddress import ip_address

from berth.dns import wire
from berth.dns.server import DnsServer
from berth.dns.table import NameTable

C1, C2, C3 = "a" * 64, "b" * 64, "c" * 64


def query(name: str, qtype: int = wire.A, qid: int = 0x1234) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + struct.pack("!HH", qtype, 1)


def table() -> NameTable:
    t = NameTable()
    t.set_network("n1", "front", internal=False)
    t.set_network("n2", "back", internal=True)
    t.set_endpoint("n1", "front", C1, ["web", "webhost", "www"], ip_address("10.0.1.2"), ip_address("fd00::2"))
    t.set_endpoint("n1", "front", C2, ["client"], ip_address("10.0.1.3"), None)
    t.set_endpoint("n2", "back", C3, ["db"], ip_address("10.0.2.2"), None)
    return t


def test_names_resolve_only_through_shared_networks():
    t = table()
    me, stranger = ip_address("10.0.1.3"), ip_address("10.0.2.2")
    for name in ("web", "webhost", "www", "web.front", C1[:12]):
        assert t.lookup(me, name, 4) == [ip_address("10.0.1.2")], name
    assert t.lookup(me, "web", 6) == [ip_address("fd00::2")]
    assert t.lookup(stranger, "web", 4) is None
    assert t.lookup(me, "db", 4) is None
    assert t.ptr(me, ip_address("10.0.1.2")) == "web.front"


def test_alias_shared_by_several_containers_rotates():
    t = table()
    t.set_endpoint("n1", "front", C3, ["other", "www"], ip_address("10.0.1.4"), None)
    me = ip_address("10.0.1.3")
    first, second = t.lookup(me, "www", 4), t.lookup(me, "www", 4)
    assert sorted(first) == sorted(second) == [ip_address("10.0.1.2"), ip_address("10.0.1.4")]
    assert first != second


def test_removal_is_immediate():
    t = table()
    me = ip_address("10.0.1.3")
    t.remove_endpoint("n1", C1)
    assert t.lookup(me, "web", 4) is None
    t.remove_network("n1")
    assert t.lookup(me, "client", 4) is None and not t.knows(me)


def test_internal_only_queriers_do_not_forward():
    t = table()
    assert t.policy(ip_address("10.0.2.2"))[0] is False
    assert t.policy(ip_address("10.0.1.3"))[0] is True


def test_wire_answers_are_well_formed():
    q = query("web")
    parsed = wire.parse_question(q)
    reply = wire.answer(q, parsed, [ip_address("10.0.1.2")])
    qid, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", reply)
    assert (qid, qd, an) == (0x1234, 1, 1) and flags & 0x8000 and flags & 0x000F == 0
    assert reply.endswith(ip_address("10.0.1.2").packed)
    assert wire.reverse_name("2.1.0.10.in-addr.arpa") == ip_address("10.0.1.2")
    assert wire.error(q, parsed, wire.NXDOMAIN)[3] & 0x0F == wire.NXDOMAIN


def test_server_answers_locally_and_refuses_search_expansion_of_container_names():
    server = DnsServer(table(), upstreams=list, search=lambda: ["corp.example"])
    me = "10.0.1.3"
    reply = server.answer_locally(query("web"), me)
    assert reply is not None and reply.endswith(ip_address("10.0.1.2").packed)
    nx = server.answer_locally(query("web.corp.example"), me)
    assert nx is not None and nx[3] & 0x0F == wire.NXDOMAIN
    assert server.answer_locally(query("example.org"), me) is None  # forwarded
    internal = server.answer_locally(query("example.org"), "10.0.2.2")
    assert internal is not None and internal[3] & 0x0F == wire.SERVFAIL
