"""The bridge driver's own words: what it tells a user about a network, not about its bridge device."""

from __future__ import annotations

from pathlib import Path

import pytest

from berth.drivers.base import EndpointSpec
from berth.drivers.bridge import BridgeDriver
from berth.errors import BridgeFull
from berth.model import Network


class FullKernel:
    """A kernel whose every bridge already holds its 1023 ports."""

    def veth_attach(self, *, bridge: str, **_: object) -> None:
        raise BridgeFull(f"network {bridge} is full: a Linux bridge takes at most 1023 ports")


def test_a_full_bridge_is_reported_by_the_networks_name_as_a_refusal() -> None:
    net = Network(id="f" * 64, name="shop", driver="bridge", scope="local", created="", enable_ipv6=False,
                  internal=False, attachable=False, ipam={}, options={}, labels={}, bridge="berth-fffffffff")
    spec = EndpointSpec(network=net, netns=Path("/run/berth/netns/x"), endpoint_id="e" * 64,
                        host_ifname="vethe", ifname="eth0", mac="02:42:0a:00:00:02", addresses=(),
                        gateway4=None, gateway6=None)
    with pytest.raises(BridgeFull) as caught:
        BridgeDriver(FullKernel()).add(spec)
    assert str(caught.value) == "network shop is full: a Linux bridge takes at most 1023 ports; disconnect or remove containers from it, or use another network"
    assert caught.value.status == 403
