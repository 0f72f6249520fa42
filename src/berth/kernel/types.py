"""Plain values the kernel layer returns (importable without pyroute2)."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv6Interface

Iface = IPv4Interface | IPv6Interface


@dataclass(frozen=True)
class LinkInfo:
    name: str
    index: int
    kind: str
    alias: str | None
    master: str | None
    mtu: int
    up: bool
    mac: str
    addresses: tuple[Iface, ...]
