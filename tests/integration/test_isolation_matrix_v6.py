"""The reachability matrix over IPv6: every ordered pair of endpoints probed with real ICMPv6 and TCP.

Same layout and rules as the IPv4 matrix (test_isolation_matrix.py), on networks created with
``--ipv6 --subnet fdXX::/64``: the same network reachable (unless ICC is off), other networks not, a
container on two networks reaches both, ``none`` reaches nothing, and the host reaches every container.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers import inspect, ok, poll

pytestmark = pytest.mark.integration

SERVE = "exec nc -ll -p 7000 -e true"
NETWORKS = {"A": ("10.71.0.0/24", "fd00:71::/64", ()), "B": ("10.72.0.0/24", "fd00:72::/64", ()),
            "I": ("10.73.0.0/24", "fd00:73::/64", ("--internal",)),
            "C": ("10.74.0.0/24", "fd00:74::/64", ("-o", "com.docker.network.bridge.enable_icc=false"))}


def tcp(address: str, port: int) -> list[str]:
    return ["sh", "-c", f"nc -w 1 {address} {port} </dev/null"]


def test_reachability_matrix_over_ipv6(bb):
    for name, (v4, v6, extra) in NETWORKS.items():
        ok(bb.berth("network", "create", "--ipv6", "--subnet", v4, "--subnet", v6, *extra, name))
    layout = {"a1": "A", "a2": "A", "b1": "B", "i1": "I", "i2": "I", "c1": "C", "c2": "C", "m": "A", "n": "none"}
    for name, net in layout.items():
        ok(bb.berth("run", "-d", "--name", name, "--network", net, "bb", "sh", "-c", SERVE))
    ok(bb.berth("network", "connect", "B", "m"))
    address = {}
    for name in layout:
        if name != "n":
            nets = inspect(bb, "inspect", name)[0]["NetworkSettings"]["Networks"]
            address[name] = {net: ep["GlobalIPv6Address"] for net, ep in nets.items()}
            assert all(address[name].values()), (name, nets)
    for name in address:
        poll(lambda: bb.berth("exec", name, *tcp("::1", 7000)).returncode == 0)

    networks_of = {name: set(address.get(name, {})) for name in layout}

    def expected(src: str, dst: str, net: str) -> bool:
        if src == "n":
            return False
        return net in networks_of[src] and not (net == "C" and src != dst)

    targets = [(dst, net, ip) for dst, nets in address.items() for net, ip in nets.items()]
    probes = [(src, dst, net, ip, proto) for src in layout for dst, net, ip in targets if src != dst
              for proto in ("icmp", "tcp")]

    def probe(item: tuple[str, str, str, str, str]) -> tuple[tuple[str, str, str, str], bool]:
        src, dst, net, ip, proto = item
        argv = ["ping", "-c", "1", "-W", "2", ip] if proto == "icmp" else tcp(ip, 7000)
        return (src, dst, net, proto), bb.berth("exec", src, *argv).returncode == 0

    with ThreadPoolExecutor(max_workers=12) as pool:
        observed = dict(pool.map(probe, probes))
    wrong = {k: v for k, v in observed.items() if v != expected(k[0], k[1], k[2])}
    assert wrong == {}, wrong
    for name, nets in address.items():
        for ip in nets.values():
            assert bb.run(["ping", "-c", "1", "-W", "1", ip]).returncode == 0, (name, ip)
