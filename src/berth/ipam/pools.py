"""Automatic subnets: the lowest free candidate from Docker's default pools."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Iterable, Sequence

from berth.errors import PoolExhausted

Net = IPv4Network | IPv6Network


def _candidates(base: Net, size: int, blocked: list[Net]) -> Iterable[Net]:
    """Subnets of ``base`` of prefix ``size``, skipping whole blocked ranges instead of testing each one."""
    step = 1 << (base.max_prefixlen - size)
    start = int(base.network_address)
    end = int(base.broadcast_address)
    addr = start
    while addr <= end:
        candidate = ip_network((addr, size))
        hit = next((b for b in blocked if b.overlaps(candidate)), None)
        if hit is None:
            yield candidate
            addr += step
        else:
            # jump past the blocking network (aligned to the candidate size)
            after = int(hit.broadcast_address) + 1
            addr = max(addr + step, ((after + step - 1) // step) * step)


def pick_subnet(pools: Sequence[tuple[str, int]], in_use: Iterable[Net], reserved: Iterable[Net]) -> Net:
    """The lowest free candidate, pool by pool in order, that overlaps no used or reserved network."""
    blocked = sorted({*in_use, *reserved}, key=lambda n: (n.version, int(n.network_address)))
    version = ip_network(pools[0][0]).version if pools else 4
    for base_text, size in pools:
        base = ip_network(base_text)
        family = [b for b in blocked if b.version == base.version]
        for candidate in _candidates(base, size, family):
            return candidate
    raise PoolExhausted(
        f"could not find an available, non-overlapping IPv{version} address pool among the defaults to assign to the network"
    )


def nameservers(resolv_conf_text: str) -> list[IPv4Address | IPv6Address]:
    """The ``nameserver`` addresses of a resolv.conf (zone suffixes and garbage ignored)."""
    found: list[IPv4Address | IPv6Address] = []
    for line in resolv_conf_text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                found.append(ip_address(parts[1].split("%", 1)[0]))
            except ValueError:
                continue
    return found
