"""berth's nftables rules proven with real packets.

Each test runs in a forked child with its own network and mount namespaces (a throwaway "host"). Inside
it the test builds three berth bridges with a namespace per "container", plus an ``outside`` namespace
on 203.0.113.0/24 that has no route back to the containers' subnets: a reply from outside can only come
back if the host masqueraded the request. The rules are loaded with ``nft -j -f -``, the same JSON the
kernel layer hands to libnftables. Both bridge-netfilter modes are covered: with br_netfilter's
``bridge-nf-call-iptables`` on, bridged frames also cross the inet forward hook; with it off, only the
bridge table sees them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from ipaddress import ip_network
from pathlib import Path
from typing import Any, Callable

import pytest

from berth.firewall import rules
from berth.kernel import syscalls as sc
from tests.helpers import in_throwaway_namespaces

pytestmark = pytest.mark.integration

BR_NF = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
OUTSIDE_HOST, OUTSIDE_PEER = "203.0.113.1", "203.0.113.2"
# bridge -> (subnet prefix, containers on it)
TOPOLOGY = {"br-a": ("10.10.1", ["a1", "a2"]), "br-b": ("10.10.2", ["b1"]), "br-i": ("10.10.3", ["i1"]),
            "br-x": ("10.10.9", ["x1"])}  # br-x is somebody else's bridge: berth never hears of it
ADDR = {ns: f"{prefix}.{i + 2}" for prefix, names in TOPOLOGY.values() for i, ns in enumerate(names)}
GATEWAY = {br: f"{prefix}.1" for br, (prefix, _) in TOPOLOGY.items()}

# Answers each datagram with the address it came from, as the outside world sees it. A sender that was
# not masqueraded cannot be answered (outside has no route back): that error is the expected outcome.
ECHO_SERVER = f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("{OUTSIDE_PEER}", 9999))
while True:
    data, peer = s.recvfrom(100)
    try:
        s.sendto(peer[0].encode(), peer)
    except OSError:
        pass
"""
# Asks the echo server who it is, retrying until a deadline; prints the answer or nothing.
ECHO_CLIENT = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.5)
deadline = time.monotonic() + float(sys.argv[1])
while time.monotonic() < deadline:
    s.sendto(b"?", ("%s", 9999))
    try:
        print(s.recv(100).decode())
        break
    except OSError:
        continue
""" % OUTSIDE_PEER


def _throwaway_host(body: Callable[[], None]) -> None:
    """Run ``body`` in throwaway network and mount namespaces, with a netns directory of its own."""

    def setup_then_body() -> None:
        os.makedirs("/run/netns", exist_ok=True)
        sc.mount("tmpfs", "/run/netns", "tmpfs", 0, "mode=0755")
        body()

    in_throwaway_namespaces(setup_then_body)


def sh(*argv: str, input: str | None = None) -> str:
    result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"{' '.join(argv)}: {result.stderr}"
    return result.stdout


def nft(commands: list[dict[str, Any]]) -> None:
    """One atomic batch, as the kernel layer sends it."""
    sh("nft", "-j", "-f", "-", input=json.dumps({"nftables": commands}))


def reaches(ns: str, address: str, tries: int = 1) -> bool:
    """An ICMP echo from ``ns``; a positive check may allow a few tries (neighbour discovery)."""
    for _ in range(tries):
        probe = subprocess.run(["ip", "netns", "exec", ns, "ping", "-c1", "-W1", address], capture_output=True)
        if probe.returncode == 0:
            return True
    return False


def seen_from_outside(ns: str, wait: float) -> str:
    """The source address the outside peer sees for ``ns``'s datagram, or "" when no answer came back."""
    return sh("ip", "netns", "exec", ns, sys.executable, "-c", ECHO_CLIENT, str(wait)).strip()


def build_topology() -> None:
    sh("ip", "link", "set", "lo", "up")
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
    for br, (prefix, names) in TOPOLOGY.items():
        sh("ip", "link", "add", br, "type", "bridge")
        sh("ip", "addr", "add", f"{prefix}.1/24", "dev", br)
        sh("ip", "link", "set", br, "up")
        for ns in names:
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", f"v-{ns}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "link", "set", f"v-{ns}", "master", br, "up")
            sh("ip", "-n", ns, "addr", "add", f"{ADDR[ns]}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "route", "add", "default", "via", f"{prefix}.1")
    sh("ip", "netns", "add", "outside")
    sh("ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1", "netns", "outside")
    sh("ip", "addr", "add", f"{OUTSIDE_HOST}/24", "dev", "uplink0")
    sh("ip", "link", "set", "uplink0", "up")
    sh("ip", "-n", "outside", "addr", "add", f"{OUTSIDE_PEER}/24", "dev", "uplink1")
    sh("ip", "-n", "outside", "link", "set", "uplink1", "up")


def network(br: str, op: str, *, icc: bool = True, masquerade: bool = True, internal: bool = False) -> None:
    subnet = ip_network(f"{TOPOLOGY[br][0]}.0/24")
    nft(rules.network_elements(br, [subnet], icc=icc, masquerade=masquerade, internal=internal, op=op))  # type: ignore[arg-type]


def scenario(br_netfilter: str) -> None:
    if br_netfilter == "on":
        BR_NF.write_text("1")
    elif BR_NF.exists():
        BR_NF.write_text("0")
    build_topology()
    server = subprocess.Popen(["ip", "netns", "exec", "outside", sys.executable, "-c", ECHO_SERVER],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        nft(rules.base_ruleset())
        # Before berth knows any network, the topology routes everything: later failures are the rules' doing.
        assert reaches("a1", ADDR["b1"], tries=3) and reaches("i1", ADDR["a1"], tries=3)

        network("br-a", "add")
        network("br-b", "add", masquerade=False)
        network("br-i", "add", internal=True)

        assert reaches("a1", ADDR["a2"], tries=3), "same bridge with ICC on"
        assert not reaches("a1", ADDR["b1"]) and not reaches("b1", ADDR["a1"]), "two networks are isolated"
        assert reaches("b1", GATEWAY["br-b"], tries=3), "a container always reaches its gateway"

        assert seen_from_outside("a1", wait=10) == OUTSIDE_HOST, "egress is masqueraded"
        assert seen_from_outside("b1", wait=2) == "", "no masquerade when the network turned it off"

        assert reaches("i1", GATEWAY["br-i"], tries=3)
        assert seen_from_outside("i1", wait=2) == "", "an internal network has no egress"
        assert not reaches("i1", ADDR["a1"]) and not reaches("a1", ADDR["i1"]), "nor ingress"

        assert reaches("a1", ADDR["x1"], tries=3), "traffic to a bridge berth does not own keeps its fate"
        assert not reaches("x1", ADDR["a1"]), "no unsolicited connections into a berth network"

        # ICC off: elements swapped, rules untouched; ports of the network enter the bridge table's set.
        network("br-a", "delete")
        network("br-a", "add", icc=False)
        nft(rules.icc_off_elements("v-a1", "add") + rules.icc_off_elements("v-a2", "add"))
        assert reaches("a1", GATEWAY["br-a"], tries=3), "the gateway stays reachable with ICC off"
        assert not reaches("a1", ADDR["a2"]) and not reaches("a2", ADDR["a1"]), "same bridge with ICC off"
        assert seen_from_outside("a1", wait=10) == OUTSIDE_HOST

        # Re-installing the base rules at a restart replaces berth's rules in place and keeps the elements.
        before = sh("nft", "list", "ruleset")
        nft(rules.base_ruleset())
        assert sh("nft", "list", "ruleset") == before
        assert not reaches("a1", ADDR["b1"])

        # Teardown may be repeated, or meet elements already gone; the tables then vanish entirely.
        network("br-b", "delete", masquerade=False)
        network("br-b", "delete", masquerade=False)
        nft(rules.icc_off_elements("v-a1", "delete") * 2)
        assert reaches("a1", ADDR["b1"], tries=3), "a removed network is no longer isolated"
        nft(rules.remove_all())
        nft(rules.remove_all())
        assert "berth" not in sh("nft", "list", "tables")
        assert reaches("a1", ADDR["a2"], tries=3)
    finally:
        server.kill()
        server.wait()


@pytest.mark.parametrize("br_netfilter", ["off", "on"])
def test_isolation_icc_internal_and_masquerade_with_real_packets(br_netfilter: str) -> None:
    if br_netfilter == "on" and not BR_NF.exists():
        pytest.skip("br_netfilter is not loaded on this machine")
    _throwaway_host(lambda: scenario(br_netfilter))
