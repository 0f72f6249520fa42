"""Published ports: Docker's ``-p``/``-P`` semantics, kernel-only (nft map elements, no proxy process).

A binding is planned at container start (host port chosen or checked, against berth's own bindings and
against sockets of host processes), installed as one map element per port, recorded in the container's
state, and withdrawn when the container stops.

IPv6 as Docker does it: a binding without a host address is published on 0.0.0.0 and on [::] (the
same host port on both) when the container has an IPv6 address on its publishing network, and on
0.0.0.0 only when it has none; an explicit IPv6 host address binds that family alone. A binding is
DNAT, which cannot turn IPv6 into IPv4, so an IPv6 host address needs an IPv6 container address.
[::1] is refused: IPv6 has no ``route_localnet``, so a connection from ::1 can never be forwarded to
a container (Docker serves it with its userland proxy process, which berth does without).
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
ANY6 = "::"


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
    def _host_free(proto: str, host_ip: str | None, port: int, v6: bool) -> bool:
        """Is the port free for host processes too? (a bind test in the host's namespace)"""
        if proto == "sctp":
            return True
        kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
        with socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, kind) as s:
            if v6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # [::] must not count IPv4's sockets
            try:
                s.bind((host_ip or (ANY6 if v6 else ANY), port))
            except OSError as err:
                if err.errno == errno.EADDRINUSE:
                    return False
                raise InvalidParameter(f"Error starting userland proxy: listen {proto}{6 if v6 else 4} "
                                       f"{_endpoint(host_ip, v6, port)}: bind: {err.strerror.lower()}") from None
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
        # [::] joins the default only when the default is every address: a network bound to one IPv4
        # address keeps its ports off IPv6 too
        defaults = [default_ip, ANY6] if owner.ipv6 is not None and default_ip == ANY else [default_ip]
        taken = self._taken(c.id)
        planned: list[Published] = []
        for key, entries in sorted(bindings.items()):
            container_port, proto = _port_key(key)
            for entry in entries:
                explicit = entry.get("HostIp")
                targets = [self._target(ip, owner, network) for ip in ([explicit] if explicit else defaults)]
                wanted = _host_range(entry.get("HostPort") or "")
                port = self._choose(proto, targets, wanted, [*taken, *planned])
                planned += [Published(proto, bound, port, container_ip, container_port) for bound, container_ip in targets]
        return planned

    @staticmethod
    def _target(host_ip: str, owner: Attachment, network: Network | None) -> tuple[str | None, str]:
        """(host address, None for every one; container address of the same family) of one binding."""
        try:
            address = ip_address(host_ip)
        except ValueError:
            raise InvalidParameter(f"invalid IP address in port binding: {host_ip}") from None
        if address.version == 4:
            assert owner.ipv4 is not None
            return (None if address.is_unspecified else str(address)), str(owner.ipv4.ip)
        if address.is_loopback:
            raise InvalidParameter("cannot publish on [::1]: IPv6 has no route_localnet, so the kernel cannot forward "
                                   "a loopback connection to a container; publish on 127.0.0.1 or a host IPv6 address")
        if owner.ipv6 is None:
            where = f" on network {network.name}" if network else ""
            raise InvalidParameter(f"cannot publish on [{address}]: the container has no IPv6 address{where}")
        return (None if address.is_unspecified else str(address)), str(owner.ipv6.ip)

    def _choose(self, proto: str, targets: Sequence[tuple[str | None, str]], wanted: tuple[int, int] | None,
                taken: Sequence[Published]) -> int:
        """A host port free on every target (the same port on 0.0.0.0 and [::], as Docker picks it)."""
        families = [(host_ip, ":" in container_ip) for host_ip, container_ip in targets]

        def clash(port: int, host_ip: str | None, v6: bool) -> bool:
            return any(p.proto == proto and p.host_port == port and p.ipv6 == v6
                       and (p.host_ip is None or host_ip is None or p.host_ip == host_ip) for p in taken)

        def refusal(port: int) -> tuple[str | None, bool] | None:
            return next(((ip, v6) for ip, v6 in families
                         if clash(port, ip, v6) or not self._host_free(proto, ip, port, v6)), None)

        if wanted is not None and wanted[0] == wanted[1]:
            port = wanted[0]
            refused = refusal(port)
            if refused is not None:
                raise Forbidden(f"Bind for {_endpoint(refused[0], refused[1], port, brackets=False)} failed: "
                                "port is already allocated")
            return port
        low, high = wanted or self._ephemeral()
        start = low + secrets.randbelow(high - low + 1)
        for offset in range(high - low + 1):
            port = low + (start - low + offset) % (high - low + 1)
            if refusal(port) is None:
                return port
        host_ip, v6 = families[0]
        raise Forbidden(f"Bind for {_endpoint(host_ip, v6, low, brackets=False)}-{high} failed: "
                        "port is already allocated")


def _endpoint(host_ip: str | None, v6: bool, port: int, brackets: bool = True) -> str:
    """``address:port`` as Docker's messages write it: listen errors bracket IPv6, allocation errors do not."""
    address = host_ip or (ANY6 if v6 else ANY)
    return f"[{address}]:{port}" if v6 and brackets else f"{address}:{port}"
