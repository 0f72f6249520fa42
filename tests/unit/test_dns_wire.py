"""What berth's DNS puts on the wire: hand-built answers read back by an independent parser (dnslib),
and the server's reply to each kind of question (no sockets: ``DnsServer.respond``)."""

from __future__ import annotations

import struct
from ipaddress import ip_address

import dnslib
import pytest

from berth.dns import wire
from berth.dns.server import DnsServer
from berth.dns.table import NameTable

WEB, CLIENT, DB = "a" * 64, "b" * 64, "c" * 64
ME = "10.0.1.3"


def query(name: str, qtype: str = "A", *, edns: int | None = None, qid: int = 0x1234) -> bytes:
    q = dnslib.DNSRecord.question(name, qtype)
    q.header.id = qid
    if edns is not None:
        q.add_ar(dnslib.EDNS0(udp_len=edns))
    return bytes(q.pack())


def parse(reply: bytes) -> dnslib.DNSRecord:
    return dnslib.DNSRecord.parse(reply)


def rcode(reply: bytes) -> str:
    return dnslib.RCODE.get(parse(reply).header.rcode)


def server(search: list[str] | None = None) -> DnsServer:
    t = NameTable()
    t.set_network("n1", "front", internal=False)
    t.set_network("n2", "back", internal=True)
    t.set_endpoint("n1", "front", WEB, ["web", "www"], ip_address("10.0.1.2"), ip_address("fd00::2"))
    t.set_endpoint("n1", "front", CLIENT, ["client"], ip_address(ME), None)
    t.set_endpoint("n2", "back", DB, ["db"], ip_address("10.0.2.2"), None)
    return DnsServer(t, upstreams=lambda: ["192.0.2.53"], search=lambda: search or [])


# -- wire -----------------------------------------------------------------------------------------

def test_question_is_read_case_insensitively_with_its_edns_size():
    q = wire.parse_question(query("WeB.Front.", "AAAA", edns=4096))
    assert (q.name, q.qtype, q.qclass, q.id, q.edns, q.udp_limit) == ("web.front", wire.AAAA, 1, 0x1234, True, 4096)
    assert wire.parse_question(query("web")).udp_limit == 512
    assert wire.parse_question(query("web", edns=100)).udp_limit == 512  # below 512 means 512 (RFC 6891)


@pytest.mark.parametrize("message", [
    b"\x00\x01",                                                    # short
    struct.pack("!HHHHHH", 1, 0x8100, 1, 0, 0, 0) + b"\x03web\x00\x00\x01\x00\x01",  # a response
    struct.pack("!HHHHHH", 1, 0x0100, 2, 0, 0, 0) + b"\x03web\x00\x00\x01\x00\x01",  # two questions
    struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01",     # compressed question
    struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\x09web\x00",                   # label runs off the end
])
def test_malformed_queries_are_rejected(message):
    with pytest.raises(wire.WireError):
        wire.parse_question(message)


def test_a_dot_inside_a_label_cannot_pass_for_two_labels():
    message = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\x09web.front\x00\x00\x01\x00\x01"
    assert wire.parse_question(message).name == "web\\.front"


def test_answers_read_back_as_sent():
    data = query("web", "A")
    reply = parse(wire.answer(data, wire.parse_question(data), [ip_address("10.0.1.2"), ip_address("10.0.1.4")]))
    assert reply.header.id == 0x1234 and reply.header.qr and reply.header.aa and reply.header.rd and reply.header.ra
    assert [(str(r.rname), r.rtype, str(r.rdata), r.ttl) for r in reply.rr] == [
        ("web.", wire.A, "10.0.1.2", 0), ("web.", wire.A, "10.0.1.4", 0)]
    data6 = query("web", "AAAA", edns=1232)
    reply6 = parse(wire.answer(data6, wire.parse_question(data6), [ip_address("fd00::2")]))
    assert [str(r.rdata) for r in reply6.rr] == ["fd00::2"]
    assert [r.rtype for r in reply6.ar] == [wire.OPT]  # an EDNS query gets an OPT record back (RFC 6891)


def test_ptr_answer_and_reverse_names():
    data = query("2.1.0.10.in-addr.arpa", "PTR")
    reply = parse(wire.answer_ptr(data, wire.parse_question(data), "web.front"))
    assert [str(r.rdata) for r in reply.rr] == ["web.front."]
    assert wire.reverse_name("2.1.0.10.in-addr.arpa") == ip_address("10.0.1.2")
    assert wire.reverse_name(ip_address("fd00::2").reverse_pointer) == ip_address("fd00::2")
    for name in ("1.0.10.in-addr.arpa", "x.1.0.10.in-addr.arpa", "300.1.0.10.in-addr.arpa", "web.front"):
        assert wire.reverse_name(name) is None


def test_too_big_for_udp_means_truncated_with_the_question_kept():
    data = query("svc")
    q = wire.parse_question(data)
    many = [ip_address(f"10.0.3.{i}") for i in range(1, 41)]  # 40 x 16 bytes > 512
    full = wire.answer(data, q, many)
    cut = wire.fit(full, q, q.udp_limit)
    assert len(full) > 512 >= len(cut) and wire.truncated(cut)
    assert parse(cut).q.qname == "svc." and not parse(cut).rr
    assert wire.fit(full, q, wire.TCP_MAX) == full


# -- server answers -------------------------------------------------------------------------------

def test_container_names_are_answered_from_the_table():
    s = server()
    reply = s.respond(query("www.front", "A"), ME, "n1")
    assert [str(r.rdata) for r in parse(reply).rr] == ["10.0.1.2"]
    assert [str(r.rdata) for r in parse(s.respond(query("web", "AAAA"), ME, "n1")).rr] == ["fd00::2"]
    assert str(parse(s.respond(query("2.1.0.10.in-addr.arpa", "PTR"), ME, "n1")).rr[0].rdata) == "web.front."
    empty = parse(s.respond(query("client", "AAAA"), ME, "n1"))
    assert empty.header.rcode == 0 and not empty.rr


def test_other_names_are_handed_over_for_forwarding():
    q = server().respond(query("example.org", "A"), ME, "n1")
    assert isinstance(q, wire.Question) and q.name == "example.org"
    assert isinstance(server().respond(query("9.9.0.10.in-addr.arpa", "PTR"), ME, "n1"), wire.Question)


def test_internal_networks_refuse_what_they_cannot_answer():
    s = server()
    assert rcode(s.respond(query("example.org"), "10.0.2.2", "n2")) == "REFUSED"
    assert [str(r.rdata) for r in parse(s.respond(query("db"), "10.0.2.2", "n2")).rr] == ["10.0.2.2"]


def test_strangers_get_refused_so_a_gateway_is_no_open_resolver():
    s = server()
    assert rcode(s.respond(query("example.org"), "10.0.1.99", "n1")) == "REFUSED"
    assert rcode(s.respond(query("web"), "10.0.1.99", "n1")) == "REFUSED"
    assert rcode(s.respond(query("web"), ME, "n2")) == "REFUSED"  # right address, wrong network


def test_search_domain_expansions_of_container_names_are_nxdomain_at_once():
    s = server(search=["corp.example"])
    assert rcode(s.respond(query("web.corp.example"), ME, "n1")) == "NXDOMAIN"
    assert isinstance(s.respond(query("intranet.corp.example"), ME, "n1"), wire.Question)


def test_broken_and_unsupported_messages():
    s = server()
    garbage = struct.pack("!HHHHHH", 9, 0x0100, 1, 0, 0, 0) + b"\x09web"
    assert rcode(s.respond(garbage, ME, "n1")) == "FORMERR"
    notify = struct.pack("!HHHHHH", 9, 0x2000, 1, 0, 0, 0) + b"\x03web\x00\x00\x06\x00\x01"
    assert rcode(s.respond(notify, ME, "n1")) == "NOTIMP"
    answer = s.respond(query("web"), ME, "n1")
    assert s.respond(answer, ME, "n1") == b""  # a response is never answered
    assert s.respond(b"\x00", ME, "n1") == b""
    badvers = dnslib.DNSRecord.question("web")
    badvers.add_ar(dnslib.EDNS0(version=1))
    reply = parse(s.respond(bytes(badvers.pack()), ME, "n1"))
    assert reply.header.rcode == 0 and reply.ar[0].ttl >> 24 == 1  # extended rcode BADVERS = 16


def test_repeated_questions_never_outlive_a_table_change():
    s = server()
    first = s.respond(query("web", qid=1), ME, "n1")
    again = s.respond(query("web", qid=2), ME, "n1")
    assert parse(again).header.id == 2 and first[2:] == again[2:]
    s.table.set_endpoint("n1", "front", WEB, ["web"], ip_address("10.0.1.7"), None)
    assert [str(r.rdata) for r in parse(s.respond(query("web"), ME, "n1")).rr] == ["10.0.1.7"]
    s.table.remove_endpoint("n1", WEB)
    assert isinstance(s.respond(query("web"), ME, "n1"), wire.Question)


def test_a_big_alias_is_truncated_over_udp_and_whole_over_tcp():
    s = server()
    for i in range(40):
        s.table.set_endpoint("n1", "front", f"{i:064x}", [f"s{i}", "svc"], ip_address(f"10.0.1.{100 + i}"), None)
    udp = s.respond(query("svc"), ME, "n1")
    assert wire.truncated(udp) and len(udp) <= 512
    tcp = parse(s.respond(query("svc"), ME, "n1", tcp=True))
    assert len(tcp.rr) == 40
    big = parse(s.respond(query("svc", edns=4096), ME, "n1"))
    assert len(big.rr) == 40
