"""The driver contract: what the engine asks of a network driver.

Shaped like CNI: ``add`` (ADD) returns a result the engine stores, ``delete`` (DEL) is idempotent and
``check`` (CHECK) reports problems. Drivers never import the engine or each other; the engine hands them
a kernel object and plain data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, IPv4Interface, IPv6Interface
from pathlib import Path
from typing import Any, Protocol, Sequence

from berth.model import Network


@dataclass(frozen=True)
class EndpointSpec:
    """Everything a driver needs to plug one container interface into a network."""

    network: Network
    netns: Path
    endpoint_id: str
    host_ifname: str
    ifname: str
    mac: str
    addresses: tuple[IPv4Interface | IPv6Interface, ...]
    gateway4: IPv4Address | None
    gateway6: IPv6Address | None
    container_id: str = ""
    # What the runtime offers plugins by capability (CNI ``runtimeConfig``), e.g. ``portMappings``.
    runtime: dict[str, Any] = field(default_factory=dict)


class NetworkDriver(Protocol):
    name: str

    def validate(self, network: Network) -> None:
        """Refuse bad options before anything changes (pure)."""

    def create_network(self, network: Network, subnets: Sequence[IPv4Network | IPv6Network],
                       gateways: Sequence[IPv4Interface | IPv6Interface]) -> None:
        """Create (or restore, idempotently) the network's kernel objects."""

    def delete_network(self, network: Network, subnets: Sequence[IPv4Network | IPv6Network]) -> None:
        """Remove the network's kernel objects; missing objects count as removed."""

    def add(self, endpoint: EndpointSpec) -> dict:
        """Plug an endpoint in; return a CNI-style result (interfaces, ips)."""

    def delete(self, endpoint: EndpointSpec) -> None:
        """Unplug an endpoint; idempotent."""

    def forget(self, endpoint: EndpointSpec) -> None:
        """Drop state kept for an endpoint whose links vanished with its namespace; idempotent."""

    def check(self, endpoint: EndpointSpec) -> list[str]:
        """Problems found with an endpoint that should be in place (empty when healthy)."""
