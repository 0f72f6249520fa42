"""A network's IPAM request validated and normalised, with Docker's messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any

from berth.errors import InvalidParameter

Net = IPv4Network | IPv6Network
Addr = IPv4Address | IPv6Address


@dataclass(frozen=True)
class SubnetConfig:
    subnet: Net
    ip_range: Net | None
    gateway: Addr
    gateway_given: bool = False
    aux: dict[str, Addr] = field(default_factory=dict)


def _net(value: str) -> Net:
    try:
        return ip_network(value, strict=False)
    except ValueError:
        raise InvalidParameter(f"Invalid subnet {value} : invalid CIDR address: {value}") from None


def _first_host(subnet: Net) -> Addr:
    return subnet.network_address + 1 if subnet.num_addresses > 2 else subnet.network_address


def automatic(subnet: Net) -> SubnetConfig:
    """An automatically chosen subnet: gateway is its first host address."""
    return SubnetConfig(subnet=subnet, ip_range=None, gateway=_first_host(subnet))


def normalize(configs: list[dict[str, Any]], *, enable_ipv6: bool) -> list[SubnetConfig]:
    """Validate ``IPAM.Config`` entries of a create request; host bits are dropped as Docker does."""
    out: list[SubnetConfig] = []
    for raw in configs:
        raw = raw or {}
        subnet_text = raw.get("Subnet") or ""
        if not subnet_text:
            if raw.get("Gateway") or raw.get("IPRange"):
                raise InvalidParameter("every ip-range or gateway must have a corresponding subnet")
            continue
        subnet = _net(subnet_text)
        if subnet.version == 6 and not enable_ipv6:
            raise InvalidParameter(f"IPv6 subnet {subnet} given but IPv6 is not enabled on the network (--ipv6)")
        ip_range = None
        if raw.get("IPRange"):
            ip_range = _net(raw["IPRange"])
            if ip_range.version != subnet.version or not ip_range.subnet_of(subnet):  # type: ignore[arg-type]
                raise InvalidParameter(f"no matching subnet for range {raw['IPRange']}")
        gateway: Addr
        if raw.get("Gateway"):
            try:
                gateway = ip_address(raw["Gateway"])
            except ValueError:
                raise InvalidParameter(f"invalid gateway address {raw['Gateway']}") from None
            if gateway.version != subnet.version or gateway not in subnet:
                raise InvalidParameter(f"no matching subnet for gateway {gateway}")
            if subnet.version == 4 and subnet.num_addresses > 2 and gateway in (subnet.network_address, subnet.broadcast_address):
                raise InvalidParameter(f"gateway {gateway} cannot be the network or broadcast address of {subnet}")
        else:
            gateway = _first_host(subnet)
        aux: dict[str, Addr] = {}
        for name, value in (raw.get("AuxiliaryAddresses") or {}).items():
            try:
                addr = ip_address(value)
            except ValueError:
                raise InvalidParameter(f"invalid auxiliary address {name}={value}") from None
            if addr.version != subnet.version or addr not in subnet:
                raise InvalidParameter(f"no matching subnet for aux-address {addr}")
            aux[name] = addr
        for other in out:
            if other.subnet.version == subnet.version and other.subnet.overlaps(subnet):  # type: ignore[arg-type]
                raise InvalidParameter("multiple overlapping subnet configuration is not supported")
        out.append(SubnetConfig(subnet, ip_range, gateway, bool(raw.get("Gateway")), aux))
    return out


def echo(cfg: SubnetConfig) -> dict[str, Any]:
    """The entry as Docker shows it in inspect: what was given, plus the IPv4 gateway Docker fills in."""
    item: dict[str, Any] = {"Subnet": str(cfg.subnet)}
    if cfg.ip_range is not None:
        item["IPRange"] = str(cfg.ip_range)
    if cfg.gateway_given or cfg.subnet.version == 4:
        item["Gateway"] = str(cfg.gateway)
    if cfg.aux:
        item["AuxiliaryAddresses"] = {k: str(v) for k, v in cfg.aux.items()}
    return item
