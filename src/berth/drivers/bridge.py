"""The bridge driver: a Linux bridge per network, a veth pair per endpoint, nft set elements.

Per-network firewall state is a handful of set elements (bridge name, subnets), so creating a network
or attaching an endpoint never appends a rule (design.md §5).
"""

from __future__ import annotations

from ipaddress import IPv4Interface, IPv4Network, IPv6Interface, IPv6Network
from typing import Any, Sequence

from berth.config import KERNEL_MARK_PREFIX
from berth.drivers import options as opts
from berth.drivers.base import EndpointSpec
from berth.errors import BridgeFull
from berth.firewall import rules
from berth.model import Network


class BridgeDriver:
    name = "bridge"

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel

    def validate(self, network: Network) -> None:
        opts.validate(network.options)

    def _elements(self, network: Network, subnets: Sequence[IPv4Network | IPv6Network], op: str) -> list[dict]:
        assert network.bridge
        return rules.network_elements(
            network.bridge,
            list(subnets),
            icc=opts.flag(network.options, opts.ENABLE_ICC, True),
            masquerade=opts.flag(network.options, opts.ENABLE_MASQUERADE, True),
            internal=network.internal,
            op=op,  # type: ignore[arg-type]
        )

    def create_network(self, network: Network, subnets: Sequence[IPv4Network | IPv6Network],
                       gateways: Sequence[IPv4Interface | IPv6Interface]) -> None:
        assert network.bridge
        self.kernel.bridge_ensure(
            network.bridge,
            alias=KERNEL_MARK_PREFIX + network.id,
            mtu=opts.mtu(network.options),
            addresses=list(gateways),
        )
        mark = KERNEL_MARK_PREFIX + network.id
        try:
            # published ports reached on 127.0.0.1 are DNATed to a container behind this bridge: the
            # kernel must accept a loopback source leaving through it (set on berth's bridges only)
            self.kernel.sysctl_set(f"net.ipv4.conf.{network.bridge}.route_localnet", "1")
            self.kernel.nft(self._elements(network, subnets, "add"))
            self.kernel.docker_user_allow(network.bridge, mark)
        except Exception:
            self.kernel.nft(self._elements(network, subnets, "delete"))
            self.kernel.link_delete(network.bridge)
            raise

    def delete_network(self, network: Network, subnets: Sequence[IPv4Network | IPv6Network]) -> None:
        assert network.bridge
        self.kernel.docker_user_revoke(network.bridge, KERNEL_MARK_PREFIX + network.id)
        self.kernel.nft(self._elements(network, subnets, "delete"))
        self.kernel.link_delete(network.bridge)

    def _icc(self, network: Network) -> bool:
        return opts.flag(network.options, opts.ENABLE_ICC, True)

    def add(self, endpoint: EndpointSpec) -> dict:
        network = endpoint.network
        assert network.bridge
        try:
            self.kernel.veth_attach(
                netns=endpoint.netns,
                host_name=endpoint.host_ifname,
                alias=f"{KERNEL_MARK_PREFIX}{network.id}:{endpoint.endpoint_id}",
                bridge=network.bridge,
                ifname=endpoint.ifname,
                mac=endpoint.mac,
                mtu=opts.mtu(network.options),
                addresses=list(endpoint.addresses),
                gateway4=endpoint.gateway4,
                gateway6=endpoint.gateway6,
            )
        except BridgeFull:  # the user knows the network by its name, not by its bridge's
            raise BridgeFull(f"network {network.name} is full: a Linux bridge takes at most 1023 ports; disconnect or remove containers from it, or use another network") from None
        if not self._icc(network):
            try:
                self.kernel.nft(rules.icc_off_elements(endpoint.host_ifname, "add"))
            except Exception:
                self.kernel.netns_link_delete(endpoint.netns, endpoint.ifname)
                raise
        return {
            "interfaces": [
                {"name": network.bridge},
                {"name": endpoint.host_ifname},
                {"name": endpoint.ifname, "mac": endpoint.mac, "sandbox": str(endpoint.netns)},
            ],
            "ips": [{"address": str(a), "interface": 2} for a in endpoint.addresses],
        }

    def delete(self, endpoint: EndpointSpec) -> None:
        """Unplug; ``endpoint.gateway4``/``gateway6``, when set, are the default routes the namespace
        takes over from this endpoint (set in the same kernel round trip as the link's deletion)."""
        self.kernel.netns_link_delete(endpoint.netns, endpoint.ifname, gateway4=endpoint.gateway4,
                                      gateway6=endpoint.gateway6)
        self.forget(endpoint)

    def forget(self, endpoint: EndpointSpec) -> None:
        """Drop an endpoint's firewall state once its link is gone (its namespace was deleted)."""
        if not self._icc(endpoint.network):
            self.kernel.nft(rules.icc_off_elements(endpoint.host_ifname, "delete"))

    def check(self, endpoint: EndpointSpec) -> list[str]:
        problems = []
        host = self.kernel.link_get(endpoint.host_ifname)
        if host is None:
            problems.append(f"host interface {endpoint.host_ifname} is missing")
        elif host.master != endpoint.network.bridge:
            problems.append(f"host interface {endpoint.host_ifname} is not on bridge {endpoint.network.bridge}")
        inside = {link.name: link for link in self.kernel.netns_links(endpoint.netns)}
        link = inside.get(endpoint.ifname)
        if link is None:
            problems.append(f"container interface {endpoint.ifname} is missing")
        else:
            for address in endpoint.addresses:
                if address not in link.addresses:
                    problems.append(f"container interface {endpoint.ifname} lacks address {address}")
        return problems
