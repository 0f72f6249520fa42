"""Plain data shared by the engine, the drivers and the API layer.

Frozen dataclasses only: they are what the store records and what the drivers receive, so nothing
below the engine can change state behind its back.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface
from typing import Any


def new_id() -> str:
    """A 64-hex identifier, shown as 12 characters like Docker's."""
    return secrets.token_hex(32)


def now_rfc3339() -> str:
    """Current UTC time in Docker's RFC3339Nano form (microsecond precision, ``Z`` suffix)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Network:
    """A network as recorded in the store. ``ipam`` is the request as Docker echoes it in inspect."""

    id: str
    name: str
    driver: str
    scope: str
    created: str
    enable_ipv6: bool
    internal: bool
    attachable: bool
    ipam: dict[str, Any]
    options: dict[str, str]
    labels: dict[str, str]
    bridge: str | None = None
    builtin: bool = False
    user_subnets: bool = False  # Docker allows a static --ip only on networks whose subnets the user chose

    def option(self, key: str, default: str) -> str:
        return self.options.get(key, default)


@dataclass(frozen=True)
class Attachment:
    """A container's membership of a network: requested settings plus, while running, its endpoint."""

    container_id: str
    network_id: str
    seq: int
    aliases: tuple[str, ...] = ()
    ipv4_request: str = ""
    ipv6_request: str = ""
    endpoint_id: str | None = None
    ifname: str | None = None
    host_ifname: str | None = None
    ipv4: IPv4Interface | None = None
    ipv6: IPv6Interface | None = None
    mac: str | None = None
    gateway4: IPv4Address | None = None
    gateway6: IPv6Address | None = None

    @property
    def active(self) -> bool:
        return self.endpoint_id is not None


@dataclass(frozen=True)
class ExternalEndpoint:
    """An endpoint berth made in a network namespace it does not own: a CNI runtime's ``ADD``.

    Kept apart from ``Container`` on purpose: berth did not create the namespace or any process in it,
    so nothing may start, stop, remove or tear down that namespace; only the endpoint is berth's. The
    ``attachment`` carries the endpoint as for a container (its ``container_id`` is ``CNI_CONTAINERID``,
    its ``ifname`` is ``CNI_IFNAME``), so the drivers, IPAM and DNS treat both alike.
    """

    netns: str
    name: str
    cni_network: str
    attachment: Attachment

    @property
    def container_id(self) -> str:
        return self.attachment.container_id

    @property
    def ifname(self) -> str:
        return self.attachment.ifname or ""


@dataclass(frozen=True)
class ContainerState:
    status: str = "created"  # created | running | exited | removing
    pid: int = 0
    monitor_pid: int = 0
    exit_code: int = 0
    started_at: str = "0001-01-01T00:00:00Z"
    finished_at: str = "0001-01-01T00:00:00Z"
    error: str = ""
    ports: list[list[Any]] = field(default_factory=list)  # published: [proto, host_ip|None, host_port, ip, port]

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    image: str
    image_id: str
    created: str
    config: dict[str, Any]
    host_config: dict[str, Any]
    state: ContainerState = field(default_factory=ContainerState)

    @property
    def network_mode(self) -> str:
        return self.host_config.get("NetworkMode") or "default"

    @property
    def hostname(self) -> str:
        return self.config.get("Hostname") or self.id[:12]
