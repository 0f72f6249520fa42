"""A network's IPAM request validated and normalised, with Docker's messages.

Docker splits these checks between its CLI (``no matching subnet for …``) and its daemon (``Invalid
subnet …``, ``failed to allocate gateway …``); berth makes them all in the daemon so that every API
client gets them, with the same words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any, Iterable

from berth.errors import Forbidden, InvalidParameter

Net = IPv4Network | IPv6Network
Addr = IPv4Address | IPv6Address


@dataclass(frozen=True)
class SubnetConfig:
    """One validated subnet of a network; ``gateway_given`` says whether the user chose the gateway."""

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


def _unusable(subnet: Net) -> set[Addr]:
    """Addresses Docker's allocator keeps for itself: the network address and the IPv4 broadcast."""
    if subnet.num_addresses <= 2:
        return set()
    return {subnet.network_address, subnet.broadcast_address} if subnet.version == 4 else {subnet.network_address}


def automatic(subnet: Net) -> SubnetConfig:
    """An automatically chosen subnet: gateway is its first host address."""
    return SubnetConfig(subnet=subnet, ip_range=None, gateway=_first_host(subnet))


def _address(value: str, what: str) -> Addr:
    try:
        return ip_address(value)
    except ValueError:
        raise InvalidParameter(f"invalid {what}: invalid address") from None


def _gateway(raw: dict[str, Any], subnet: Net) -> Addr:
    if not raw.get("Gateway"):
        return _first_host(subnet)
    gateway = _address(raw["Gateway"], f"gateway {raw['Gateway']}")
    if gateway.version != subnet.version or gateway not in subnet:
        raise InvalidParameter(f"no matching subnet for gateway {gateway}")
    if gateway in _unusable(subnet):
        raise InvalidParameter(f"failed to allocate gateway ({gateway}): Address already in use")
    return gateway


def _aux(raw: dict[str, Any], subnet: Net, gateway: Addr) -> dict[str, Addr]:
    aux: dict[str, Addr] = {}
    taken = _unusable(subnet) | {gateway}
    for name, value in (raw.get("AuxiliaryAddresses") or {}).items():
        addr = _address(str(value), f"auxiliary address {name}")
        if addr.version != subnet.version or addr not in subnet:
            raise InvalidParameter(f"no matching subnet for aux-address {addr}")
        if addr in taken:
            raise InvalidParameter(f"failed to allocate secondary ip address ({name}:{addr}): Address already in use")
        taken.add(addr)
        aux[name] = addr
    return aux


def _one(raw: dict[str, Any], enable_ipv6: bool) -> SubnetConfig:
    subnet = _net(raw["Subnet"])
    if subnet.version == 6 and not enable_ipv6:
        # Docker 20.10 silently ignores such a subnet; saying so is kinder than dropping it.
        raise InvalidParameter(f"IPv6 subnet {subnet} given but IPv6 is not enabled on the network")
    ip_range = None
    if raw.get("IPRange"):
        ip_range = _net(raw["IPRange"])
        if ip_range.version != subnet.version or not ip_range.subnet_of(subnet):  # type: ignore[arg-type]
            raise InvalidParameter(f"no matching subnet for range {raw['IPRange']}")
    gateway = _gateway(raw, subnet)
    return SubnetConfig(subnet, ip_range, gateway, bool(raw.get("Gateway")), _aux(raw, subnet, gateway))


def normalize(configs: list[dict[str, Any]], *, enable_ipv6: bool) -> list[SubnetConfig]:
    """Validate ``IPAM.Config`` entries of a create request; host bits are dropped as Docker does.

    Entries without a subnet are requests for an automatic one and are left to the caller, unless they
    carry a gateway, range or aux address, which would have nothing to belong to.
    """
    out: list[SubnetConfig] = []
    for raw in configs:
        raw = raw or {}
        if not raw.get("Subnet"):
            if raw.get("Gateway") or raw.get("IPRange"):
                raise InvalidParameter("every ip-range or gateway must have a corresponding subnet")
            orphans = list((raw.get("AuxiliaryAddresses") or {}).values())
            if orphans:
                raise InvalidParameter(f"no matching subnet for aux-address {orphans[0]}")
            continue
        cfg = _one(raw, enable_ipv6)
        if overlaps([cfg], out):
            raise InvalidParameter("multiple overlapping subnet configuration is not supported")
        out.append(cfg)
    return out


def _subnet(item: SubnetConfig | Net) -> Net:
    return item.subnet if isinstance(item, SubnetConfig) else item


def overlaps(a: Iterable[SubnetConfig | Net], b: Iterable[SubnetConfig | Net]) -> bool:
    """Does any subnet of ``a`` share an address with any subnet of ``b`` (same family, partial overlap counts)?"""
    b_nets = [_subnet(x) for x in b]
    return any(
        x.version == y.version and x.overlaps(y)  # type: ignore[arg-type]
        for x in map(_subnet, a) for y in b_nets
    )


def check_pool_free(configs: Iterable[SubnetConfig], taken: Iterable[SubnetConfig | Net]) -> None:
    """Refuse user-given subnets that overlap another network's, with Docker's message (HTTP 403)."""
    if overlaps(configs, taken):
        raise Forbidden("Pool overlaps with other one on this address space")


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
