"""Embedded DNS: container names on shared networks, aliases, forwarding to an upstream, internal networks."""

from __future__ import annotations

import sys
import textwrap

import pytest

from tests.helpers import inspect, ok, poll

pytestmark = pytest.mark.integration

# A tiny upstream resolver for the "internet": example.test -> 198.51.100.7 (no AAAA), anything else NXDOMAIN.
UPSTREAM = textwrap.dedent("""
    import socket, struct, threading
    from ipaddress import ip_address
    from berth.dns import wire

    def reply(data):
        q = wire.parse_question(data)
        if q.name == "example.test":
            return wire.answer(data, q, [ip_address("198.51.100.7")] if q.qtype == wire.A else [])
        return wire.error(data, q, wire.NXDOMAIN)

    def tcp():
        srv = socket.create_server(("203.0.113.2", 53))
        while True:
            conn, _ = srv.accept()
            with conn:
                size = struct.unpack("!H", conn.recv(2))[0]
                data = b""
                while len(data) < size:
                    data += conn.recv(size - len(data))
                answer = reply(data)
                conn.sendall(struct.pack("!H", len(answer)) + answer)

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("203.0.113.2", 53))
    threading.Thread(target=tcp, daemon=True).start()
    print("ready", flush=True)
    while True:
        data, addr = s.recvfrom(4096)
        s.sendto(reply(data), addr)
""")


def resolve(host, container: str, name: str) -> list[str]:
    """Addresses the container's resolver gives for ``name`` (empty when it cannot resolve it).

    busybox nslookup ignores ``ndots`` and only tries search-expanded names, so the name is made absolute.
    """
    result = host.berth("exec", container, "nslookup", name + ".")
    if result.returncode != 0:
        return []
    lines = result.stdout.split("Name:", 1)[-1].splitlines() if "Name:" in result.stdout else []
    return [line.split()[-1] for line in lines if line.strip().startswith("Address")]


def test_names_aliases_and_scoping(bb):
    ok(bb.berth("network", "create", "--subnet", "10.20.0.0/24", "net1"))
    ok(bb.berth("network", "create", "--subnet", "10.40.0.0/24", "net2"))
    cid = ok(bb.berth("run", "-d", "--name", "web", "--hostname", "webhost", "--network", "net1",
                      "--network-alias", "www", "bb", "sleep", "600")).strip()
    ok(bb.berth("run", "-d", "--name", "client", "--network", "net1", "bb", "sleep", "600"))
    ok(bb.berth("run", "-d", "--name", "stranger", "--network", "net2", "bb", "sleep", "600"))
    for name in ("web", "www", "webhost", "web.net1", cid[:12]):
        assert resolve(bb, "client", name) == ["10.20.0.2"], name
    assert resolve(bb, "stranger", "web") == []  # not on a shared network: not answered from berth's table
    resolv = ok(bb.berth("exec", "client", "cat", "/etc/resolv.conf"))
    assert "nameserver 10.20.0.1" in resolv and "options ndots:0" in resolv and "search example.test" in resolv
    # what applications do: the C library's resolver, search list and all
    assert "PING web (10.20.0.2)" in ok(bb.berth("exec", "client", "ping", "-c", "1", "-W", "2", "web"))
    # PTR for a container address
    assert "web.net1" in ok(bb.berth("exec", "client", "nslookup", "10.20.0.2"))


def test_changes_are_visible_at_once(bb):
    ok(bb.berth("network", "create", "--subnet", "10.20.0.0/24", "net1"))
    ok(bb.berth("network", "create", "--subnet", "10.40.0.0/24", "net2"))
    ok(bb.berth("run", "-d", "--name", "web", "--network", "net1", "bb", "sleep", "600"))
    ok(bb.berth("run", "-d", "--name", "late", "--network", "net2", "bb", "sleep", "600"))
    assert resolve(bb, "late", "web") == []
    ok(bb.berth("network", "connect", "--alias", "newname", "net1", "late"))
    assert resolve(bb, "late", "web") == ["10.20.0.2"]
    assert resolve(bb, "web", "newname") == ["10.20.0.3"]
    ok(bb.berth("network", "disconnect", "net1", "late"))
    assert resolve(bb, "web", "late") == []
    ok(bb.berth("rm", "-f", "web"))
    ok(bb.berth("run", "-d", "--name", "probe", "--network", "net2", "bb", "sleep", "600"))
    assert resolve(bb, "probe", "web") == []


def test_one_alias_several_containers(bb):
    ok(bb.berth("network", "create", "--subnet", "10.20.0.0/24", "net1"))
    for name in ("s1", "s2"):
        ok(bb.berth("run", "-d", "--name", name, "--network", "net1", "--network-alias", "svc", "bb", "sleep", "600"))
    ok(bb.berth("run", "-d", "--name", "client", "--network", "net1", "bb", "sleep", "600"))
    assert sorted(resolve(bb, "client", "svc")) == ["10.20.0.2", "10.20.0.3"]


def test_forwarding_to_upstream_and_internal_networks(bb):
    bb.outside()
    upstream = bb.popen(["ip", "netns", "exec", "outside", sys.executable, "-c", UPSTREAM],
                        stdout=__import__("subprocess").PIPE, text=True)
    try:
        assert upstream.stdout.readline().strip() == "ready"
        ok(bb.berth("network", "create", "--subnet", "10.20.0.0/24", "net1"))
        ok(bb.berth("network", "create", "--internal", "--subnet", "10.50.0.0/24", "secret"))
        ok(bb.berth("run", "-d", "--name", "out", "--network", "net1", "bb", "sleep", "600"))
        ok(bb.berth("run", "-d", "--name", "in1", "--network", "secret", "bb", "sleep", "600"))
        ok(bb.berth("run", "-d", "--name", "in2", "--network", "secret", "bb", "sleep", "600"))
        assert resolve(bb, "out", "example.test") == ["198.51.100.7"]
        # forwarded over TCP when the client asks over TCP
        out_id = ok(bb.berth("inspect", "-f", "{{.Id}}", "out")).strip()
        tcp = ok(bb.run(["nsenter", f"--net={bb.run_root}/netns/{out_id}", sys.executable, "-c", TCP_QUERY,
                         "example.test", "10.20.0.1"]))
        assert tcp.split() == ["0", "198.51.100.7"]
        assert resolve(bb, "in1", "in2") == ["10.50.0.3"]  # internal networks still know their containers
        assert resolve(bb, "in1", "example.test") == []  # ... but never forward
    finally:
        upstream.kill()
        upstream.wait()


TCP_QUERY = textwrap.dedent("""
    import socket, struct, sys
    from berth.dns import wire
    name, server = sys.argv[1], sys.argv[2]
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\\0"
    query = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + labels + struct.pack("!HH", wire.A, 1)
    with socket.create_connection((server, 53), timeout=5) as s:
        s.sendall(struct.pack("!H", len(query)) + query)
        size = struct.unpack("!H", s.recv(2))[0]
        reply = b""
        while len(reply) < size:
            reply += s.recv(size - len(reply))
    rcode, count = reply[3] & 0x0F, struct.unpack_from("!H", reply, 6)[0]
    print(rcode, ".".join(str(b) for b in reply[-4:]) if count else "-")
""")


def test_queries_over_tcp(bb):
    ok(bb.berth("network", "create", "--subnet", "10.20.0.0/24", "net1"))
    ok(bb.berth("run", "-d", "--name", "web", "--network", "net1", "bb", "sleep", "600"))
    cid = ok(bb.berth("run", "-d", "--name", "client", "--network", "net1", "bb", "sleep", "600")).strip()
    netns = f"--net={bb.run_root}/netns/{cid}"
    # the host's Python, run inside the client container's network namespace, asks over TCP
    out = ok(bb.run(["nsenter", netns, sys.executable, "-c", TCP_QUERY, "web", "10.20.0.1"]))
    assert out.split() == ["0", "10.20.0.2"]
