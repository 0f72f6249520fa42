"""The reachability matrix: every ordered pair of endpoints probed with real packets (ICMP and TCP).

The observed matrix must equal the one derived from the rules: same network reachable (unless ICC is
off), different networks not, a container on two networks reaches both, internal networks have no
egress, ``none`` reaches nothing, the host reaches every container, and published ports are reachable
from other networks through the host.
"""

from __future__ import annotations

import pytest

from tests.helpers import ok, serving_addresses, tcp_probe, unexpected_reachability

pytestmark = pytest.mark.integration

SERVE = "exec nc -ll -p 7000 -e true"  # busybox nc: a persistent TCP listener



def test_reachability_matrix(bb):
    bb.outside()
    for args in (("--subnet", "10.61.0.0/24", "A"), ("--subnet", "10.62.0.0/24", "B"),
                 ("--internal", "--subnet", "10.63.0.0/24", "I"),
                 ("-o", "com.docker.network.bridge.enable_icc=false", "--subnet", "10.64.0.0/24", "C")):
        ok(bb.berth("network", "create", *args))
    layout = {"a1": "A", "a2": "A", "b1": "B", "i1": "I", "i2": "I", "c1": "C", "c2": "C", "m": "A", "n": "none"}
    for name, net in layout.items():
        extra = ["-p", "18080:7000"] if name == "b1" else []
        ok(bb.berth("run", "-d", "--name", name, "--network", net, *extra, "bb", "sh", "-c", SERVE))
    ok(bb.berth("network", "connect", "B", "m"))
    address = serving_addresses(bb, layout, "IPAddress", "127.0.0.1", 7000)

    assert unexpected_reachability(bb, layout, address, 7000, icc_off={"C"}) == {}

    # the host reaches every container; egress only from non-internal networks; published port from anywhere
    for name, nets in address.items():
        for ip in nets.values():
            assert bb.run(["ping", "-c", "1", "-W", "1", ip]).returncode == 0, (name, ip)
    egress = {name: bb.berth("exec", name, "ping", "-c", "1", "-W", "1", "203.0.113.2").returncode == 0
              for name in layout}
    assert egress == {n: layout[n] not in ("I", "none") for n in layout}
    for name in ("a1", "c1", "m"):
        reply = bb.berth("exec", name, *tcp_probe("203.0.113.1", 18080))
        assert reply.returncode == 0, (name, reply.stderr)
