"""Who may resolve whom: names per network, and the networks each querier belongs to.

Pure data, no I/O. The engine calls the mutators synchronously as endpoints come and go, so the
next query already sees the change (nothing polls). The DNS server thread reads concurrently, so
every method takes one lock: uncontended it costs far less than a socket call, and it keeps readers
from seeing a half-applied update.

Docker's scoping rule: a container resolves a name only through networks it shares with the
target. The querier is identified by its source address on the network whose listener received the
query (``via``): container addresses are unique per network, so this is unambiguous, and from the
container every network it is attached to counts.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Iterable, NamedTuple

Addr = IPv4Address | IPv6Address

# Query types the table distinguishes (RFC 1035 §3.2.2, RFC 3596).
A, AAAA, ANY = 1, 28, 255
SHORT_ID = 12


@dataclass(frozen=True)
class _Endpoint:
    """One container on one network, with every key it answers to (lower case)."""

    container_id: str
    keys: tuple[str, ...]
    ptr_name: str
    v4: IPv4Address | None
    v6: IPv6Address | None
    upstreams: tuple[str, ...]


@dataclass
class _Network:
    name: str
    internal: bool = False
    endpoints: dict[str, _Endpoint] = field(default_factory=dict)  # container id -> endpoint
    names: dict[str, list[str]] = field(default_factory=dict)      # key -> container ids, in arrival order


class Policy(NamedTuple):
    """What may happen to a querier's question that berth cannot answer itself."""

    forward: bool                # False when every network of the querier is internal
    upstreams: tuple[str, ...]   # the container's own resolvers (``--dns``); empty: the host's


def normalize(name: str) -> str:
    """DNS names compare case-insensitively and may be written fully qualified."""
    return name.rstrip(".").lower()


class NameTable:
    """Container names, aliases and addresses per network, answering lookups scoped to the querier."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._networks: dict[str, _Network] = {}
        self._addresses: dict[Addr, dict[str, str]] = {}  # address -> network id -> container id
        self._memberships: dict[str, set[str]] = {}       # container id -> network ids
        self._turns: dict[str, int] = {}                  # key -> multi-address answers given so far
        self.generation = 0  # bumped by every change, so answer caches know when to forget

    # -- updates (engine threads) --------------------------------------------------------------

    def set_network(self, network_id: str, name: str, internal: bool) -> None:
        """Declare a network; an internal one answers its containers' names but never forwards."""
        with self._lock:
            self.generation += 1
            net = self._networks.setdefault(network_id, _Network(name))
            net.name, net.internal = name, internal

    def remove_network(self, network_id: str) -> None:
        """Forget a network and all its endpoints; a missing network is not an error."""
        with self._lock:
            self.generation += 1
            net = self._networks.pop(network_id, None)
            if net:
                for container_id in list(net.endpoints):
                    self._drop(network_id, net, container_id)

    def set_endpoint(self, network_id: str, network_name: str, container_id: str, names: Iterable[str],
                     v4: IPv4Address | None, v6: IPv6Address | None, upstreams: Iterable[str] = ()) -> None:
        """Add or replace a container's endpoint on a network.

        ``names`` are the container name first (PTR answers give it, as ``name.network``), then the
        hostname and aliases; the short id and ``<key>.<network>`` for every key are added here, as
        Docker resolves both. ``upstreams`` are the container's ``--dns`` servers, if it has any.
        """
        given = [normalize(n) for n in names if normalize(n)]
        base = list(dict.fromkeys([*given, container_id[:SHORT_ID].lower()]))
        with self._lock:
            self.generation += 1
            net = self._networks.setdefault(network_id, _Network(network_name))
            net.name = network_name
            if container_id in net.endpoints:
                self._drop(network_id, net, container_id)
            suffix = normalize(network_name)
            keys = tuple(dict.fromkeys([*base, *(f"{k}.{suffix}" for k in base)]))
            ep = _Endpoint(container_id, keys, f"{base[0]}.{suffix}", v4, v6, tuple(upstreams))
            net.endpoints[container_id] = ep
            for key in keys:
                net.names.setdefault(key, []).append(container_id)
            for address in (v4, v6):
                if address is not None:
                    self._addresses.setdefault(address, {})[network_id] = container_id
            self._memberships.setdefault(container_id, set()).add(network_id)

    def remove_endpoint(self, network_id: str, container_id: str) -> None:
        """Forget a container's endpoint on a network; a missing endpoint is not an error."""
        with self._lock:
            self.generation += 1
            net = self._networks.get(network_id)
            if net and container_id in net.endpoints:
                self._drop(network_id, net, container_id)

    def _drop(self, network_id: str, net: _Network, container_id: str) -> None:
        """Remove one endpoint from every index (caller holds the lock)."""
        ep = net.endpoints.pop(container_id)
        for key in ep.keys:
            holders = net.names[key]
            holders.remove(container_id)
            if not holders:
                del net.names[key]
                self._turns.pop(key, None)
        for address in (ep.v4, ep.v6):
            owners = self._addresses.get(address) if address is not None else None
            if owners is not None and owners.get(network_id) == container_id:
                del owners[network_id]
                if not owners:
                    del self._addresses[address]  # type: ignore[arg-type]
        member = self._memberships[container_id]
        member.discard(network_id)
        if not member:
            del self._memberships[container_id]

    # -- queries (server thread) ---------------------------------------------------------------

    def _querier(self, querier: Addr, via: str | None) -> str | None:
        """The container sending from ``querier`` (on network ``via`` when known); caller holds the lock."""
        owners = self._addresses.get(querier)
        if not owners:
            return None
        if via is not None:
            return owners.get(via)
        return next(iter(owners.values()))

    def _scope(self, querier: Addr, via: str | None) -> list[str]:
        """The querier's networks, the arrival network first, the rest in a stable order."""
        container_id = self._querier(querier, via)
        if container_id is None:
            return []
        nets = self._memberships.get(container_id, set())
        return sorted(nets, key=lambda n: (n != via, n))

    def _holders(self, scope: list[str], key: str) -> list[tuple[_Network, str]]:
        """Who answers to ``key``: the first network of ``scope`` that has it, else all that have it.

        Preferring the arrival network hands out the address the querier reaches directly.
        """
        found = []
        for i, network_id in enumerate(scope):
            net = self._networks.get(network_id)
            holders = net.names.get(key) if net else None
            if holders:
                if i == 0:
                    return [(net, c) for c in holders]  # type: ignore[misc]
                found += [(net, c) for c in holders]
        return found

    def knows(self, querier: Addr, *, via: str | None = None) -> bool:
        """Whether ``querier`` is a container berth serves (on ``via``, when given)."""
        with self._lock:
            return self._querier(querier, via) is not None

    def owns(self, querier: Addr, qname: str, *, via: str | None = None) -> bool:
        """Whether ``qname`` is a container name the querier can see (any type of record)."""
        with self._lock:
            return bool(self._holders(self._scope(querier, via), normalize(qname)))

    def lookup(self, querier: Addr, qname: str, qtype: int, *, via: str | None = None) -> list[Addr] | None:
        """Addresses of ``qname`` as ``querier`` sees them; None when the name is not berth's.

        A gives IPv4 addresses, AAAA IPv6, ANY both; other types give ``[]`` for a known name (it
        exists, without data of that type). Several addresses come back rotated by one place per
        query, so every holder of a shared alias leads in turn.
        """
        key = normalize(qname)
        with self._lock:
            holders = self._holders(self._scope(querier, via), key)
            if not holders:
                return None
            found: list[Addr] = []
            for net, container_id in holders:
                ep = net.endpoints[container_id]
                if qtype in (A, ANY) and ep.v4 is not None and ep.v4 not in found:
                    found.append(ep.v4)
                if qtype in (AAAA, ANY) and ep.v6 is not None and ep.v6 not in found:
                    found.append(ep.v6)
            if len(found) > 1:
                turn = self._turns.get(key, 0)
                self._turns[key] = turn + 1
                shift = turn % len(found)
                found = found[shift:] + found[:shift]
            return found

    def ptr(self, querier: Addr, address: Addr, *, via: str | None = None) -> str | None:
        """``name.network`` of the container holding ``address`` on a network shared with the querier."""
        with self._lock:
            owners = self._addresses.get(address, {})
            for network_id in self._scope(querier, via):
                container_id = owners.get(network_id)
                if container_id is not None:
                    return self._networks[network_id].endpoints[container_id].ptr_name
            return None

    def policy(self, querier: Addr, *, via: str | None = None) -> Policy | None:
        """How to treat the querier's other questions; None when it is not a container berth serves."""
        with self._lock:
            container_id = self._querier(querier, via)
            if container_id is None:
                return None
            nets = [self._networks[n] for n in self._memberships[container_id] if n in self._networks]
            upstreams: tuple[str, ...] = ()
            for net in nets:
                ep = net.endpoints.get(container_id)
                if ep and ep.upstreams:
                    upstreams = ep.upstreams
            return Policy(not all(n.internal for n in nets), upstreams)
