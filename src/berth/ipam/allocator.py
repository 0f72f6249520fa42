"""Lowest-free address allocation for one subnet without scanning what is allocated.

A high-water mark walks the range once; addresses freed below it go into a min-heap, so ``allocate``
is O(log n) in the number of freed addresses and never looks at the allocated ones. It works for /64
IPv6 subnets as well, since nothing is ever materialised per address.
"""

from __future__ import annotations

import heapq
import secrets
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Iterable

from berth.errors import AddressInUse, InvalidParameter, PoolExhausted

Addr = IPv4Address | IPv6Address
Net = IPv4Network | IPv6Network


class SubnetAllocator:
    def __init__(self, subnet: Net, ip_range: Net | None = None, reserved: Iterable[Addr] = ()) -> None:
        self.subnet = subnet
        span = ip_range or subnet
        first, last = int(span.network_address), int(span.broadcast_address)
        if ip_range is None and subnet.num_addresses > 2:
            first += 1  # the network address is never handed out
            if subnet.version == 4:
                last -= 1  # nor the IPv4 broadcast address
        self._first, self._last = first, last
        self._next = first  # every address >= _next in the range is free unless claimed out of order
        self._freed: list[int] = []  # free addresses below _next
        self._used: set[int] = set()
        self._reserved = {int(a) for a in reserved}

    @property
    def allocated(self) -> int:
        return len(self._used)

    @property
    def capacity(self) -> int:
        return self._last - self._first + 1 - len([r for r in self._reserved if self._first <= r <= self._last])

    def __contains__(self, address: Addr) -> bool:
        return int(address) in self._used

    def _free(self, n: int) -> bool:
        return n not in self._used and n not in self._reserved

    def allocate(self) -> Addr:
        """The lowest free address of the range."""
        while self._freed:
            n = heapq.heappop(self._freed)
            if self._free(n):
                self._used.add(n)
                return ip_address(n)
        while self._next <= self._last:
            n = self._next
            self._next += 1
            if self._free(n):
                self._used.add(n)
                return ip_address(n)
        raise PoolExhausted(f"no available IPv{self.subnet.version} addresses on this network's address pool {self.subnet}")

    def claim(self, address: Addr) -> None:
        """Take one specific address (static ``--ip``, or an address recorded before a restart)."""
        if address.version != self.subnet.version or address not in self.subnet:
            raise InvalidParameter(f"Invalid address {address}: It does not belong to any of this network's subnets")
        n = int(address)
        if not self._free(n):
            raise AddressInUse()
        self._used.add(n)

    def release(self, address: Addr) -> None:
        n = int(address)
        if n not in self._used:
            return
        self._used.discard(n)
        if self._first <= n < self._next:
            heapq.heappush(self._freed, n)


def mac_for(ip: IPv4Address) -> str:
    """Docker 20.10's endpoint MAC: 02:42 followed by the four bytes of the IPv4 address."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)


def random_mac() -> str:
    """A locally administered unicast MAC, for endpoints without an IPv4 address."""
    raw = bytearray(secrets.token_bytes(6))
    raw[0] = (raw[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in raw)
