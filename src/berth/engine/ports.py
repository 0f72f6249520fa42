"""Published ports: Docker's ``-p``/``-P`` semantics, kernel-only (nft map elements, no proxy process).

A binding is planned at container start (host port chosen or checked, against berth's own bindings and
against sockets of host processes), installed as one map element per port, recorded in the container's
state, and withdrawn when the container stops.
"""

from __future__ import annotations

import errno
import secrets
import socket
from ipaddress import ip_address
from typing import Any, Iterable, Sequence

from berth.drivers import options as opts
from berth.engine.context import EngineContext
from berth.errors import Forbidden, InvalidParameter
from berth.firewall.rules import Published
from berth.model import Attachment, Container, Network

ANY = "0.0.0.0"


def _port_key(key: str) -> tuple[int, str]:
    port, _, proto = key.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp", "sctp") or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidParameter(f"invalid port specification: {key!r}")
    return int(port), proto


def _host_range(text: str) -> tuple[int, int] | None:
    if not text:
        return None
    low, _, high = text.partition("-")
    try:
        lo, hi = int(low), int(high or low)
    except ValueError:
        raise InvalidParameter(f"invalid hostPort: {text}") from None
    if not 0 < lo <= hi < 65536:
        raise InvalidParameter(f"invalid hostPort: {text}")
    return lo, hi


def as_records(ports: Iterable[Published]) -> list[list[Any]]:
    return [[p.proto, p.host_ip, p.host_port, p.container_ip, p.container_port] for p in ports]


def from_records(records: Iterable[Sequence[Any]]) -> list[Published]:
    return [Published(str(r[0]), r[1], int(r[2]), str(r[3]), int(r[4])) for r in records]


class Ports:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    def _taken(self, exclude: str) -> list[Published]:
        return [p for c in self.ctx.store.containers() if c.state.running and c.id != exclude
                for p in from_records(c.state.ports)]

    def _ephemeral(self) -> tuple[int, int]:
        try:
            low, high = self.ctx.kernel.sysctl_get("net.ipv4.ip_local_port_range").split()
            return int(low), int(high)
        except (ValueError, OSError):
            return 32768, 60999

    @staticmethod
    def _host_free(proto: str, host_ip: str | None, port: int) -> bool:
        """Is the port free for host processes too? (a bind test in the host's namespace)"""
        kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
        if proto == "sctp":
            return True
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((host_ip or ANY, port))
            except OSError as err:
                if err.errno == errno.EADDRINUSE:
                    return False
                raise InvalidParameter(
                    f"Error starting userland proxy: listen {proto}4 {host_ip or ANY}:{port}: bind: {err.strerror.lower()}"
                ) from None
        return True

    def plan(self, c: Container, owner: Attachment | None, network: Network | None) -> list[Published]:
        """The container's bindings, with host ports chosen; refused with Docker's message on a conflict."""
        host_config = c.host_config
        bindings: dict[str, list[dict[str, str]]] = {k: list(v or [{}]) for k, v in
                                                     (host_config.get("PortBindings") or {}).items()}
        if host_config.get("PublishAllPorts"):
            for key in c.config.get("ExposedPorts") or {}:
                bindings.setdefault(key, [{}])
        if not bindings:
            return []
        if owner is None or owner.ipv4 is None:
            raise Forbidden("cannot publish ports: the container has no IPv4 address on a bridge network")
        default_ip = (network.options.get(opts.HOST_BINDING_IPV4) if network else None) or ANY
        taken = self._taken(c.id)
        planned: list[Published] = []
        for key, entries in sorted(bindings.items()):
            container_port, proto = _port_key(key)
            for entry in entries:
                host_ip = entry.get("HostIp") or default_ip
                try:
                    if ip_address(host_ip).version == 6:
                        continue  # IPv6 publishing is not implemented yet; IPv4 carries the binding
                except ValueError:
                    raise InvalidParameter(f"invalid IP address in port binding: {host_ip}") from None
                wanted = _host_range(entry.get("HostPort") or "")
                bound = None if host_ip == ANY else host_ip
                port = self._choose(proto, bound, wanted, [*taken, *planned])
                planned.append(Published(proto, bound, port, str(owner.ipv4.ip), container_port))
        return planned

    def _choose(self, proto: str, host_ip: str | None, wanted: tuple[int, int] | None,
                taken: Sequence[Published]) -> int:
        def clash(port: int) -> bool:
            return any(p.proto == proto and p.host_port == port and (p.host_ip is None or host_ip is None
                                                                        or p.host_ip == host_ip) for p in taken)

        if wanted is not None and wanted[0] == wanted[1]:
            port = wanted[0]
            if clash(port) or not self._host_free(proto, host_ip, port):
                raise Forbidden(f"Bind for {host_ip or ANY}:{port} failed: port is already allocated")
            return port
        low, high = wanted or self._ephemeral()
        start = low + secrets.randbelow(high - low + 1)
        for offset in range(high - low + 1):
            port = low + (start - low + offset) % (high - low + 1)
            if not clash(port) and self._host_free(proto, host_ip, port):
                return port
        raise Forbidden(f"Bind for {host_ip or ANY}:{low}-{high} failed: port is already allocated")
