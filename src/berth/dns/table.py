"""Who may resolve whom: names per network, and the networks each querier belongs to.

A container resolves a name only through networks it shares with the target (Docker's rule). The
querier is identified by its source address, which is unique per network, and from there by its
container, so every network that container is attached to counts.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Iterable

Addr = IPv4Address | IPv6Address


@dataclass
class _Endpoint:
    container_id: str
    primary: str
    names: tuple[str, ...]
    v4: IPv4Address | None
    v6: IPv6Address | None
    upstreams: tuple[str, ...] = ()


@dataclass
class _Network:
    name: str
    internal: bool = False
    endpoints: dict[str, _Endpoint] = field(default_factory=dict)       # container id -> endpoint
    names: dict[str, list[str]] = field(default_factory=dict)           # name -> container ids


class NameTable:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._networks: dict[str, _Network] = {}
        self._by_address: dict[Addr, str] = {}                          # endpoint address -> container id
        self._memberships: dict[str, set[str]] = {}                     # container id -> network ids
        self._rotation = 0
        self.generation = 0  # bumped by every change, so answer caches know when to forget

    def set_network(self, network_id: str, name: str, internal: bool) -> None:
        with self._lock:
            self.generation += 1
            net = self._networks.setdefault(network_id, _Network(name))
            net.name, net.internal = name, internal

    def remove_network(self, network_id: str) -> None:
        with self._lock:
            self.generation += 1
            net = self._networks.pop(network_id, None)
            if net:
                for container_id in list(net.endpoints):
                    self._drop(network_id, net, container_id)

    def set_endpoint(self, network_id: str, network_name: str, container_id: str, names: Iterable[str],
                     v4: IPv4Address | None, v6: IPv6Address | None, upstreams: Iterable[str] = ()) -> None:
        """Register a container on a network under its names (plus its short id and ``name.network``)."""
        with self._lock:
            self.generation += 1
            net = self._networks.setdefault(network_id, _Network(network_name))
            if container_id in net.endpoints:
                self._drop(network_id, net, container_id)
            base = [n.lower().rstrip(".") for n in names if n]
            all_names = {*base, container_id[:12], *(f"{n}.{net.name.lower()}" for n in base)}
            primary = base[0] if base else container_id[:12]
            ep = _Endpoint(container_id, primary, tuple(sorted(all_names)), v4, v6, tuple(upstreams))
            net.endpoints[container_id] = ep
            for name in ep.names:
                net.names.setdefault(name, []).append(container_id)
            for address in (v4, v6):
                if address is not None:
                    self._by_address[address] = container_id
            self._memberships.setdefault(container_id, set()).add(network_id)

    def remove_endpoint(self, network_id: str, container_id: str) -> None:
        with self._lock:
            self.generation += 1
            net = self._networks.get(network_id)
            if net and container_id in net.endpoints:
                self._drop(network_id, net, container_id)

    def _drop(self, network_id: str, net: _Network, container_id: str) -> None:
        ep = net.endpoints.pop(container_id)
        for name in ep.names:
            holders = net.names.get(name, [])
            if container_id in holders:
                holders.remove(container_id)
            if not holders:
                net.names.pop(name, None)
        for address in (ep.v4, ep.v6):
            if address is not None and self._by_address.get(address) == container_id:
                del self._by_address[address]
        member = self._memberships.get(container_id)
        if member:
            member.discard(network_id)
            if not member:
                del self._memberships[container_id]

    def _querier_networks(self, querier: Addr) -> list[_Network]:
        container_id = self._by_address.get(querier)
        if container_id is None:
            return []
        return [self._networks[n] for n in sorted(self._memberships.get(container_id, ())) if n in self._networks]

    def knows(self, querier: Addr) -> bool:
        with self._lock:
            return querier in self._by_address

    def lookup(self, querier: Addr, name: str, version: int) -> list[Addr] | None:
        """Addresses of ``name`` for this querier (rotated per query), or None when berth does not own it."""
        with self._lock:
            found: list[Addr] = []
            owned = False
            for net in self._querier_networks(querier):
                for container_id in net.names.get(name, ()):
                    owned = True
                    ep = net.endpoints[container_id]
                    address = ep.v4 if version == 4 else ep.v6
                    if address is not None and address not in found:
                        found.append(address)
            if not owned:
                return None
            self._rotation += 1
            if found:
                shift = self._rotation % len(found)
                found = found[shift:] + found[:shift]
            return found

    def ptr(self, querier: Addr, address: Addr) -> str | None:
        """``name.network`` of the container owning ``address``, on a network the querier shares with it."""
        with self._lock:
            for net in self._querier_networks(querier):
                for ep in net.endpoints.values():
                    if address in (ep.v4, ep.v6):
                        return f"{ep.primary}.{net.name.lower()}"
            return None

    def policy(self, querier: Addr) -> tuple[bool, tuple[str, ...]]:
        """(may forward, per-container upstreams) for a querier: no forwarding if all its networks are internal."""
        with self._lock:
            nets = self._querier_networks(querier)
            container_id = self._by_address.get(querier)
            upstreams: tuple[str, ...] = ()
            for net in nets:
                ep = net.endpoints.get(container_id or "")
                if ep and ep.upstreams:
                    upstreams = ep.upstreams
            return (not nets or not all(n.internal for n in nets)), upstreams
