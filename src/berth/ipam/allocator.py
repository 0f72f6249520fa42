"""Lowest-free address allocation for one subnet without scanning what is allocated.

A high-water mark walks the dynamic range once; addresses freed below it go into a min-heap, so
``allocate`` is O(log n) in the number of freed addresses and never looks at the allocated ones. Nothing
is materialised per address, so a /64 costs what a /24 costs.

Docker's rules (libnetwork's bitmask allocator): the subnet's network address, and for IPv4 its
broadcast address, are never handed out nor claimable, even when ``--ip-range`` covers them; the first
address of an ``--ip-range`` that is not the subnet's network address *is* handed out; a static address
may lie anywhere in the subnet, inside the range or not.
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
    """Addresses of one subnet: dynamic ones from ``ip_range`` (else the subnet), static ones anywhere in it.

    ``reserved`` are the gateway and auxiliary addresses; ``network`` names the owner as Docker does in
    its exhaustion message (``"name (id)"``), the subnet is named when it is empty.
    """

    def __init__(self, subnet: Net, ip_range: Net | None = None, reserved: Iterable[Addr] = (),
                 *, network: str = "") -> None:
        self.subnet = subnet
        self.ip_range = ip_range
        self._network = network or str(subnet)
        self._reserved = {int(a) for a in reserved if a.version == subnet.version and a in subnet}
        if subnet.num_addresses > 2:
            self._reserved.add(int(subnet.network_address))
            if subnet.version == 4:
                self._reserved.add(int(subnet.broadcast_address))
        span = ip_range or subnet
        self._first, self._last = int(span.network_address), int(span.broadcast_address)
        self._next = self._first  # addresses >= _next in the range are free unless claimed out of order
        self._freed: list[int] = []  # min-heap of released addresses below _next
        self._in_heap: set[int] = set()  # keeps a release/claim/release cycle from growing the heap
        self._used: set[int] = set()

    @property
    def allocated(self) -> int:
        """How many addresses are taken (dynamic and static; gateway and aux not counted)."""
        return len(self._used)

    @property
    def capacity(self) -> int:
        """How many addresses ``allocate`` could ever hand out (the dynamic range minus reserved ones)."""
        reserved_in_range = sum(1 for r in self._reserved if self._first <= r <= self._last)
        return self._last - self._first + 1 - reserved_in_range

    def __contains__(self, address: object) -> bool:
        return isinstance(address, (IPv4Address, IPv6Address)) and address.version == self.subnet.version \
            and int(address) in self._used

    def _free(self, n: int) -> bool:
        return n not in self._used and n not in self._reserved

    def allocate(self) -> Addr:
        """The lowest free address of the dynamic range."""
        while self._freed:
            n = heapq.heappop(self._freed)
            self._in_heap.discard(n)
            if self._free(n):
                self._used.add(n)
                return ip_address(n)
        while self._next <= self._last:
            n = self._next
            self._next += 1
            if self._free(n):
                self._used.add(n)
                return ip_address(n)
        raise PoolExhausted(
            f"no available IPv{self.subnet.version} addresses on this network's address pools: {self._network}"
        )

    def claim(self, address: Addr) -> None:
        """Take one specific address: a static ``--ip``, or an address recorded before a restart."""
        if address.version != self.subnet.version or address not in self.subnet:
            raise InvalidParameter(f"Invalid address {address}: It does not belong to any of this network's subnets")
        n = int(address)
        if not self._free(n):
            raise AddressInUse()
        self._used.add(n)

    def release(self, address: Addr) -> None:
        """Give an address back; releasing one that is not taken does nothing (teardown may repeat)."""
        n = int(address)
        if address.version != self.subnet.version or n not in self._used:
            return
        self._used.discard(n)
        if self._first <= n < self._next and n not in self._in_heap:
            heapq.heappush(self._freed, n)
            self._in_heap.add(n)


def mac_for(ip: IPv4Address) -> str:
    """Docker 20.10's endpoint MAC: 02:42 followed by the four bytes of the IPv4 address."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)


def random_mac() -> str:
    """A locally administered unicast MAC, for endpoints without an IPv4 address to derive one from."""
    raw = bytearray(secrets.token_bytes(6))
    raw[0] = (raw[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in raw)
