"""The reachability matrix over IPv6: every ordered pair of endpoints probed with real ICMPv6 and TCP.

Same layout and rules as the IPv4 matrix (test_isolation_matrix.py), on networks created with
``--ipv6 --subnet fdXX::/64``: the same network reachable (unless ICC is off), other networks not, a
container on two networks reaches both, ``none`` reaches nothing, and the host reaches every container.
"""

from __future__ import annotations

import pytest

from tests.helpers import ok, serving_addresses, unexpected_reachability

pytestmark = pytest.mark.integration

SERVE = "exec nc -ll -p 7000 -e true"
NETWORKS = {"A": ("10.71.0.0/24", "fd00:71::/64", ()), "B": ("10.72.0.0/24", "fd00:72::/64", ()),
            "I": ("10.73.0.0/24", "fd00:73::/64", ("--internal",)),
            "C": ("10.74.0.0/24", "fd00:74::/64", ("-o", "com.docker.network.bridge.enable_icc=false"))}



def test_reachability_matrix_over_ipv6(bb):
    for name, (v4, v6, extra) in NETWORKS.items():
        ok(bb.berth("network", "create", "--ipv6", "--subnet", v4, "--subnet", v6, *extra, name))
    layout = {"a1": "A", "a2": "A", "b1": "B", "i1": "I", "i2": "I", "c1": "C", "c2": "C", "m": "A", "n": "none"}
    for name, net in layout.items():
        ok(bb.berth("run", "-d", "--name", name, "--network", net, "bb", "sh", "-c", SERVE))
    ok(bb.berth("network", "connect", "B", "m"))
    address = serving_addresses(bb, layout, "GlobalIPv6Address", "::1", 7000)

    assert unexpected_reachability(bb, layout, address, 7000, icc_off={"C"}) == {}
    for name, nets in address.items():
        for ip in nets.values():
            assert bb.run(["ping", "-c", "1", "-W", "1", ip]).returncode == 0, (name, ip)
