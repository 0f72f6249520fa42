"""Automatic subnets: the lowest free candidate from Docker's default pools.

Docker 20.10 hands pools out round robin from an in-memory index that resets at restart; berth takes
the lowest candidate that overlaps nothing (Docker's current behaviour), so the choice is reproducible
and a freed subnet is reused. Host networks and resolver addresses count as taken, which keeps a VPN's
or the LAN's range out of automatic choices.
"""

from __future__ import annotations

from bisect import bisect_left
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Iterable, Sequence

from berth.errors import PoolExhausted

Net = IPv4Network | IPv6Network


def _merged(networks: Iterable[Net]) -> tuple[list[int], list[int]]:
    """Blocked networks of one family as sorted, disjoint [start, end] intervals (two parallel lists).

    Merging lets one binary search answer "what blocks this candidate?" whatever the number of networks.
    """
    starts: list[int] = []
    ends: list[int] = []
    for start, end in sorted((int(n.network_address), int(n.broadcast_address)) for n in networks):
        if ends and start <= ends[-1] + 1:
            ends[-1] = max(ends[-1], end)
        else:
            starts.append(start)
            ends.append(end)
    return starts, ends


def _first_free(base: Net, size: int, starts: list[int], ends: list[int]) -> Net | None:
    """The lowest subnet of prefix ``size`` inside ``base`` that meets no blocked interval.

    Each blocked interval met makes the walk jump past it, so the cost is O(k log n) for k intervals
    inside ``base``, never one step per candidate (a /48 split into /64s has 65536 of them).
    """
    if size < base.prefixlen:
        return None
    step = 1 << (base.max_prefixlen - size)
    addr, last = int(base.network_address), int(base.broadcast_address)
    while addr + step - 1 <= last:
        i = bisect_left(ends, addr)  # first interval that ends at or after the candidate's start
        if i == len(starts) or starts[i] > addr + step - 1:
            return ip_network((addr, size))
        addr = (ends[i] // step + 1) * step  # next aligned candidate after the blocking interval
    return None


def pick_subnet(pools: Sequence[tuple[str, int]], in_use: Iterable[Net], reserved: Iterable[Net]) -> Net:
    """The lowest free candidate, pool by pool in order, that overlaps (even partly) no used or reserved network.

    ``in_use`` are other berth networks' subnets, ``reserved`` host networks and nameservers (/32, /128).
    """
    blocked = [*in_use, *reserved]
    bases = [(ip_network(base), size) for base, size in pools]
    version = bases[0][0].version if bases else 4
    by_family = {v: _merged(n for n in blocked if n.version == v) for v in (4, 6)}
    for base, size in bases:
        found = _first_free(base, size, *by_family[base.version])
        if found is not None:
            return found
    raise PoolExhausted(
        f"could not find an available, non-overlapping IPv{version} address pool among the defaults to assign to the network"
    )


def nameservers(resolv_conf_text: str) -> list[IPv4Address | IPv6Address]:
    """The ``nameserver`` addresses of a resolv.conf (zone suffixes dropped, malformed lines ignored)."""
    found: list[IPv4Address | IPv6Address] = []
    for line in resolv_conf_text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                found.append(ip_address(parts[1].split("%", 1)[0]))
            except ValueError:
                continue
    return found
