"""berth's DNS server on real sockets, inside a throwaway network namespace.

Each test runs in a forked child that unshares its network namespace: listeners, "containers"
(addresses on lo that queries are sent from) and the upstream resolver (a small server run here, never
a real one) all live there, and vanish with the child.
"""

from __future__ import annotations

import collections
import os
import socket
import struct
import subprocess
import threading
import traceback
from ipaddress import ip_address
from typing import Callable, Iterator

import dnslib
import pytest

from berth.dns import forward
from berth.dns.server import DnsServer
from berth.dns.table import NameTable

pytestmark = pytest.mark.integration

GW1, GW1_6, GW2 = "10.53.0.1", "fd53::1", "10.54.0.1"      # listeners: network n1 (v4 and v6), n2 (internal)
WEB, WEB6, CLIENT, CLIENT6 = "10.53.0.2", "fd53::2", "10.53.0.3", "fd53::3"
DB, STRANGER = "10.54.0.2", "10.53.0.99"
UPSTREAM, SILENT, CLOSED = "10.99.0.53", "10.99.0.54", "10.99.0.55"
ADDRESSES = [GW1, GW2, WEB, CLIENT, DB, STRANGER, UPSTREAM, SILENT, CLOSED, GW1_6, WEB6, CLIENT6]
IDS = {name: name[0] * 64 for name in ("web", "client", "db")}
UPSTREAM_PORTS: list[int] = []  # the source port of every UDP query the upstream got (in the test's child)


def in_netns(body: Callable[[], None], timeout: float = 60) -> None:
    """Run ``body`` in a forked child with its own network namespace; re-raise its failure here."""
    from berth.kernel.syscalls import CLONE_NEWNET, unshare

    outer = os.stat("/proc/self/ns/net").st_ino
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read)
            unshare(CLONE_NEWNET)
            assert os.stat("/proc/self/ns/net").st_ino != outer, "still in the caller's network namespace"
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
            for address in ADDRESSES:
                subprocess.run(["ip", "addr", "add", f"{address}/{128 if ':' in address else 32}", "dev", "lo",
                                *(["nodad"] if ":" in address else [])], check=True)
            run_upstream()
            body()
            status = 0
        except BaseException:  # noqa: BLE001 - everything goes back to the parent
            os.write(write, traceback.format_exc().encode())
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        report = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, report or f"child ended with status {status}"


# -- a resolver playing the internet ------------------------------------------------------------------

def upstream_reply(data: bytes, tcp: bool) -> bytes:
    """example.test and forged.test have one address; big.test sixty (truncated over UDP, as a 512-byte server would);
    broken.test is SERVFAIL; everything else NXDOMAIN."""
    request = dnslib.DNSRecord.parse(data)
    reply = request.reply()
    name = str(request.q.qname).rstrip(".").lower()
    if name == "example.test" and request.q.qtype == dnslib.QTYPE.A:
        reply.add_answer(dnslib.RR(name, dnslib.QTYPE.A, rdata=dnslib.A("198.51.100.7"), ttl=60))
    elif name == "forged.test":
        reply.add_answer(dnslib.RR(name, dnslib.QTYPE.A, rdata=dnslib.A("198.51.100.8"), ttl=60))
    elif name == "big.test":
        if not tcp:
            reply.header.tc = 1
        else:
            for i in range(60):
                reply.add_answer(dnslib.RR(name, dnslib.QTYPE.A, rdata=dnslib.A(f"198.51.100.{i + 1}"), ttl=60))
    elif name == "broken.test":
        reply.header.rcode = dnslib.RCODE.SERVFAIL
    else:
        reply.header.rcode = dnslib.RCODE.NXDOMAIN
    return bytes(reply.pack())


def forgeries(data: bytes) -> list[bytes]:
    """Answers to forged.test that a spoofer could send from the upstream's address: with another id,
    and with the right id but another question."""
    request = dnslib.DNSRecord.parse(data)
    wrong_id = request.reply()
    wrong_id.header.id = (request.header.id + 1) & 0xFFFF
    other = dnslib.DNSRecord.question("forgeD.test.example")
    other.header.id = request.header.id
    wrong_question = other.reply()
    out = []
    for reply in (wrong_id, wrong_question):
        reply.add_answer(dnslib.RR("forged.test", dnslib.QTYPE.A, rdata=dnslib.A("203.0.113.66"), ttl=60))
        out.append(bytes(reply.pack()))
    return out


def run_upstream() -> None:
    """UDP and TCP on UPSTREAM:53; a socket on SILENT:53 that never answers; nothing on CLOSED."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((UPSTREAM, 53))
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind((SILENT, 53))
    tcp = socket.create_server((UPSTREAM, 53))

    def serve_udp() -> None:
        while True:
            data, peer = udp.recvfrom(4096)
            UPSTREAM_PORTS.append(peer[1])
            if b"\x06forged\x04test" in data:  # answers that must be ignored come first
                for forged in forgeries(data):
                    udp.sendto(forged, peer)
            udp.sendto(upstream_reply(data, tcp=False), peer)

    def serve_tcp() -> None:
        while True:
            conn, _ = tcp.accept()
            with conn:
                data = read_framed(conn)
                reply = upstream_reply(data, tcp=True)
                conn.sendall(struct.pack("!H", len(reply)) + reply)

    for target in (serve_udp, serve_tcp):
        threading.Thread(target=target, daemon=True).start()


# -- a client -------------------------------------------------------------------------------------

def read_framed(conn: socket.socket) -> bytes:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            assert chunk, "connection closed early"
            data += chunk
        return data
    return exactly(struct.unpack("!H", exactly(2))[0])


def ask(server: str, name: str, qtype: str = "A", *, source: str = CLIENT, tcp: bool = False,
        edns: int | None = None) -> dnslib.DNSRecord:
    """One query from ``source`` (a container's address), as a stub resolver sends it."""
    request = dnslib.DNSRecord.question(name, qtype)
    if edns is not None:
        request.add_ar(dnslib.EDNS0(udp_len=edns))
    data = bytes(request.pack())
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        if tcp:
            s.settimeout(10)
            s.connect((server, 53))
            s.sendall(struct.pack("!H", len(data)) + data)
            reply = read_framed(s)
        else:
            s.settimeout(2)  # a stub resolver's retransmission: UDP may drop a datagram on a loaded machine
            for attempt in range(5):
                s.sendto(data, (server, 53))
                try:
                    reply = s.recv(65535)
                    break
                except TimeoutError:
                    if attempt == 4:
                        raise
    parsed = dnslib.DNSRecord.parse(reply)
    assert parsed.header.id == request.header.id
    return parsed


def addresses(reply: dnslib.DNSRecord) -> list[str]:
    return [str(r.rdata) for r in reply.rr]


def status(reply: dnslib.DNSRecord) -> str:
    return dnslib.RCODE.get(reply.header.rcode)


def network() -> NameTable:
    t = NameTable()
    t.set_network("n1", "front", internal=False)
    t.set_network("n2", "back", internal=True)
    t.set_endpoint("n1", "front", IDS["web"], ["web", "www"], ip_address(WEB), ip_address(WEB6))
    t.set_endpoint("n1", "front", IDS["client"], ["client"], ip_address(CLIENT), ip_address(CLIENT6))
    t.set_endpoint("n2", "back", IDS["db"], ["db"], ip_address(DB), None)
    return t


def serving(upstreams: list[str] | None = None) -> Iterator[DnsServer]:
    server = DnsServer(network(), upstreams=lambda: list(upstreams or [UPSTREAM]), timeout=0.5)
    server.start()
    try:
        server.listen("n1", ip_address(GW1))
        server.listen("n1", ip_address(GW1_6))
        server.listen("n2", ip_address(GW2))
        yield server
    finally:
        server.stop()


# -- tests --------------------------------------------------------------------------------------

def test_container_names_over_udp_tcp_and_ipv6():
    def body() -> None:
        for _ in serving():
            assert addresses(ask(GW1, "web")) == [WEB]
            assert addresses(ask(GW1, "www.front", "AAAA")) == [WEB6]
            assert addresses(ask(GW1, "web", tcp=True)) == [WEB]
            assert addresses(ask(GW1_6, "web", source=CLIENT6)) == [WEB]
            assert [str(r.rdata) for r in ask(GW1, ip_address(WEB).reverse_pointer, "PTR").rr] == ["web.front."]
            assert status(ask(GW1, "db")) == "NXDOMAIN"  # not on a shared network: forwarded, unknown there
    in_netns(body)


def test_other_names_are_forwarded_over_udp_and_tcp_with_truncation_handled():
    def body() -> None:
        for _ in serving():
            assert addresses(ask(GW1, "example.test")) == ["198.51.100.7"]
            assert addresses(ask(GW1, "example.test", tcp=True)) == ["198.51.100.7"]
            assert status(ask(GW1, "nowhere.test")) == "NXDOMAIN"
            # the upstream truncates over UDP: berth asks again over TCP and hands on what fits
            assert len(ask(GW1, "big.test", edns=4096).rr) == 60
            plain = ask(GW1, "big.test")
            assert plain.header.tc and not plain.rr  # a 512-byte client is told to come back over TCP
            assert len(ask(GW1, "big.test", tcp=True).rr) == 60
    in_netns(body)


def test_answers_from_the_upstream_with_another_id_or_question_are_ignored():
    def body() -> None:
        for _ in serving():
            assert addresses(ask(GW1, "forged.test")) == ["198.51.100.8"]
    in_netns(body)


def test_forwarded_queries_keep_changing_source_ports():
    """Sockets to an upstream are pooled, but each carries a bounded number of queries on its random port."""
    def body() -> None:
        for _ in serving():
            count = forward.POOL * forward.REOPEN + 100
            for _ in range(count):
                assert addresses(ask(GW1, "example.test")) == ["198.51.100.7"]
            ports = collections.Counter(UPSTREAM_PORTS)
            assert sum(ports.values()) == count
            assert max(ports.values()) <= forward.REOPEN
            assert len(ports) > forward.POOL
    in_netns(body)


def test_at_most_three_upstreams_are_tried_in_order():
    def body() -> None:
        for _ in serving([SILENT, CLOSED, UPSTREAM]):
            assert addresses(ask(GW1, "example.test")) == ["198.51.100.7"]
        for _ in serving([SILENT, CLOSED, SILENT, UPSTREAM]):
            assert status(ask(GW1, "example.test")) == "SERVFAIL"
    in_netns(body)


def test_servfail_from_one_upstream_moves_on_to_the_next():
    def body() -> None:
        for _ in serving([UPSTREAM, SILENT]):
            assert status(ask(GW1, "broken.test")) == "SERVFAIL"  # the last word when no one does better
    in_netns(body)


def test_internal_networks_answer_names_but_refuse_the_rest_and_strangers_are_refused():
    def body() -> None:
        for _ in serving():
            assert addresses(ask(GW2, "db", source=DB)) == [DB]
            assert status(ask(GW2, "example.test", source=DB)) == "REFUSED"
            assert status(ask(GW1, "example.test", source=STRANGER)) == "REFUSED"
            assert status(ask(GW1, "web", source=STRANGER)) == "REFUSED"
    in_netns(body)


def test_table_and_listener_changes_take_effect_when_the_call_returns():
    def body() -> None:
        for server in serving():
            server.table.set_endpoint("n1", "front", "e" * 64, ["late", "svc"], ip_address("10.53.0.5"), None)
            server.table.set_endpoint("n1", "front", IDS["web"], ["web", "svc"], ip_address(WEB), None)
            assert addresses(ask(GW1, "late")) == ["10.53.0.5"]
            firsts = {addresses(ask(GW1, "svc"))[0] for _ in range(2)}
            assert firsts == {WEB, "10.53.0.5"}  # both holders of the alias lead in turn
            server.table.remove_endpoint("n1", "e" * 64)
            assert status(ask(GW1, "late")) == "NXDOMAIN"
            server.unlisten("n2")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((GW2, 53))  # the port is free once unlisten returns
                with pytest.raises(OSError):
                    server.listen("n3", ip_address(GW2))  # and listen reports what it cannot bind
            server.listen("n2", ip_address(GW2))
            assert addresses(ask(GW2, "db", source=DB)) == [DB]
            server.listen("n2", ip_address(GW2))  # again: nothing to do
    in_netns(body)


def test_listening_before_the_address_exists():
    """Gateways may be bound before the bridge has its address (or while IPv6 DAD holds it)."""
    def body() -> None:
        for server in serving():
            server.table.set_endpoint("n4", "later", "f" * 64, ["later"], ip_address("10.55.0.2"), None)
            server.listen("n4", ip_address("10.55.0.1"))
            for address in ("10.55.0.1", "10.55.0.2"):
                subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"], check=True)
            assert addresses(ask("10.55.0.1", "later", source="10.55.0.2")) == ["10.55.0.2"]
    in_netns(body)
